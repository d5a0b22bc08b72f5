//! A MyData platform sandbox: behaves like the platform's test environment for a service
//! provider (SP). The flow follows the platform's documented online-service mode:
//!
//! 1. the SP redirects the resident to `GET /service/{client_id}/{base64(ds1:ds2)}/{tx_id}?returnUrl=…`;
//! 2. the resident verifies their identity with a method every requested dataset accepts
//!    (自然人憑證, TW FidO, 健保卡, 雙證件: simulated with the sandbox's test credentials);
//! 3. the consent page lists the datasets, their providers and fields, and the SP's purpose;
//! 4. on consent the browser returns to `returnUrl?code=200&tx_id=…&permission_ticket=…`
//!    (the real platform sends the ticket to the SP's server; the sandbox hands it over in the
//!    callback, which is all an SP needs to test);
//! 5. the SP's server calls `GET /service/data` with `tx_id` and `permission_ticket` headers:
//!    401 when its address is not on the allow-list, 403 for a wrong ticket or an expired
//!    transfer, 429 with `Retry-After` while a provider has not delivered yet (tax data 60 min,
//!    land data 5 min: configurable), 201 when already downloaded, 200 with the package.
//!
//! The package is a ZIP with one folder per dataset (`data.json`, `manifest.json` with each
//! file's SHA-256, `manifest.sig`: the provider's Ed25519 signature over the manifest),
//! encrypted for the SP with AES-256-GCM under a key derived from its client secret and the
//! transaction (`nonce ‖ ciphertext`). Providers' public keys are at `GET /providers/keys`.
//! Files are deleted once downloaded, or after the retention time (8 hours by default).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::extract::{ConnectInfo, Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The most datasets one request may ask for (integration rule, seed 003).
pub const MAX_DATASETS: usize = 5;

#[derive(Debug, Clone, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub provider: String,
    pub methods: Vec<String>,
    pub delay_s: u64,
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Deserialize)]
struct DatasetsFile {
    dataset: Vec<Dataset>,
}

/// A registered service provider.
#[derive(Debug, Clone, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    /// Shown on the consent page.
    pub purpose: String,
    /// Callback URLs must start with this.
    pub return_url_prefix: String,
    /// Addresses allowed to call `/service/data`.
    pub allowed_ips: Vec<String>,
}

/// A virtual resident: records by dataset.
#[derive(Debug, Clone, Deserialize)]
pub struct Resident {
    pub id_number: String,
    #[serde(default)]
    pub datasets: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct ResidentsFile {
    resident: Vec<Resident>,
}

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub datasets: Vec<Dataset>,
    pub residents: Vec<Resident>,
    pub clients: Vec<Client>,
    /// Test credential per identity method (the platform's test area uses fixed ones).
    pub credentials: BTreeMap<String, String>,
    /// Multiplies every provider delay (0.0 in tests for immediate, 1.0 real).
    pub delay_scale: f64,
    /// How long an undownloaded package is kept.
    pub retention: Duration,
    /// Seed of the providers' signing keys.
    pub signing_seed: String,
}

impl Config {
    /// Catalogue and residents from the project's data files.
    pub fn from_files(datasets: &Path, residents: &Path) -> anyhow::Result<Config> {
        let d: DatasetsFile = toml::from_str(&std::fs::read_to_string(datasets)?)?;
        let r: ResidentsFile = toml::from_str(&std::fs::read_to_string(residents)?)?;
        let credentials = [
            ("自然人憑證", "123456"),
            ("TW FidO", "fido-approve"),
            ("健保卡", "nhi-pass"),
            ("雙證件", "second-id-ok"),
        ]
        .into_iter()
        .map(|(m, c)| (m.to_string(), c.to_string()))
        .collect();
        Ok(Config {
            datasets: d.dataset,
            residents: r.resident,
            clients: Vec::new(),
            credentials,
            delay_scale: 1.0,
            retention: Duration::from_secs(8 * 3600),
            signing_seed: "mydata-sandbox".into(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Identify,
    Consent {
        resident: String,
    },
    Granted {
        resident: String,
        ticket: String,
        ready: Instant,
    },
    Refused,
    Downloaded,
    Purged,
}

struct Tx {
    client: String,
    datasets: Vec<String>,
    return_url: String,
    created: Instant,
    step: Step,
    failures: u32,
}

/// A line of the sandbox's own log (what an auditor of the platform would see).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub tx_id: String,
    pub what: String,
}

pub struct Sandbox {
    cfg: Config,
    txs: Mutex<HashMap<String, Tx>>,
    events: Mutex<Vec<Event>>,
}

pub type Shared = Arc<Sandbox>;

impl Sandbox {
    pub fn new(cfg: Config) -> Shared {
        Arc::new(Sandbox {
            cfg,
            txs: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
        })
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }

    fn log(&self, tx: &str, what: impl Into<String>) {
        self.events.lock().expect("events").push(Event {
            tx_id: tx.to_string(),
            what: what.into(),
        });
    }

    fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.cfg.datasets.iter().find(|d| d.name == name)
    }

    /// The provider's signing key (derived from the sandbox seed and the provider's name).
    pub fn provider_key(&self, provider: &str) -> SigningKey {
        let seed: [u8; 32] = Sha256::digest(format!("{}|{provider}", self.cfg.signing_seed)).into();
        SigningKey::from_bytes(&seed)
    }
}

/// The key an SP's package is encrypted with.
pub fn package_key(client_secret: &str, tx_id: &str) -> [u8; 32] {
    Sha256::digest(format!("mydata-sandbox|{client_secret}|{tx_id}")).into()
}

/// Builds the encrypted package for a resident's datasets.
pub fn build_package(
    sandbox: &Sandbox,
    resident: &Resident,
    datasets: &[String],
    client_secret: &str,
    tx_id: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts: zip::write::SimpleFileOptions = zip::write::SimpleFileOptions::default();
    for name in datasets {
        let ds = sandbox
            .dataset(name)
            .ok_or_else(|| anyhow::anyhow!("unknown dataset {name}"))?;
        let record = resident.datasets.get(name).cloned().unwrap_or_default();
        let data = serde_json::to_vec(&serde_json::json!({
            "dataset": name,
            "provider": ds.provider,
            "found": resident.datasets.contains_key(name),
            "data": record,
        }))?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "dataset": name,
            "provider": ds.provider,
            "files": { "data.json": hex::encode(Sha256::digest(&data)) },
        }))?;
        let sig = sandbox.provider_key(&ds.provider).sign(&manifest);
        for (file, bytes) in [
            ("data.json", data),
            ("manifest.json", manifest),
            ("manifest.sig", sig.to_bytes().to_vec()),
        ] {
            zip.start_file(format!("{name}/{file}"), opts)?;
            std::io::Write::write_all(&mut zip, &bytes)?;
        }
    }
    let plain = zip.finish()?.into_inner();
    let cipher = Aes256Gcm::new_from_slice(&package_key(client_secret, tx_id))
        .map_err(|e| anyhow::anyhow!("key: {e}"))?;
    let nonce_bytes: [u8; 12] = rand::random();
    let mut out = nonce_bytes.to_vec();
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plain.as_slice())
            .map_err(|e| anyhow::anyhow!("encrypt: {e}"))?,
    );
    Ok(out)
}

/// The sandbox's routes.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/service/{client_id}/{datasets}/{tx_id}", get(start))
        .route("/service/{tx_id}/verify", post(verify))
        .route("/service/{tx_id}/consent", post(consent))
        .route("/service/data", get(data))
        .route("/providers/keys", get(provider_keys))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh-Hant-TW\"><meta charset=\"utf-8\"><title>{title}</title>\
         <body><h1>MyData 測試環境：{title}</h1>{body}</body></html>"
    ))
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        page("無法處理", &format!("<p role=\"alert\">{message}</p>")),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(rename = "returnUrl")]
    return_url: String,
}

async fn start(
    State(s): State<Shared>,
    UrlPath((client_id, encoded, tx_id)): UrlPath<(String, String, String)>,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(client) = s.cfg.clients.iter().find(|c| c.client_id == client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "服務代碼未註冊（client_id 不存在）",
        );
    };
    if !q.return_url.starts_with(&client.return_url_prefix) {
        return error_page(StatusCode::BAD_REQUEST, "回傳網址與服務登記的網址不符");
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(&encoded));
    let Ok(Ok(list)) = decoded.map(String::from_utf8) else {
        return error_page(StatusCode::BAD_REQUEST, "資料集參數無法解讀");
    };
    let datasets: Vec<String> = list
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    if datasets.is_empty() || datasets.len() > MAX_DATASETS {
        s.log(
            &tx_id,
            format!("refused: {} datasets requested", datasets.len()),
        );
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "一次申請的資料集須為1到{MAX_DATASETS}個（本次{}個）",
                datasets.len()
            ),
        );
    }
    if let Some(bad) = datasets.iter().find(|d| s.dataset(d).is_none()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("資料集「{}」不存在", esc(bad)),
        );
    }
    let mut txs = s.txs.lock().expect("txs");
    if txs.contains_key(&tx_id) {
        drop(txs);
        s.log(&tx_id, "refused: transaction id reused");
        return error_page(StatusCode::CONFLICT, "交易序號已使用過，請重新申請");
    }
    let methods: Vec<&String> = s
        .cfg
        .credentials
        .keys()
        .filter(|m| {
            datasets
                .iter()
                .all(|d| s.dataset(d).is_some_and(|ds| ds.methods.contains(m)))
        })
        .collect();
    txs.insert(
        tx_id.clone(),
        Tx {
            client: client_id,
            datasets: datasets.clone(),
            return_url: q.return_url,
            created: Instant::now(),
            step: Step::Identify,
            failures: 0,
        },
    );
    drop(txs);
    s.log(&tx_id, format!("started: {}", datasets.join(",")));
    let options: String = methods
        .iter()
        .map(|m| format!("<option value=\"{0}\">{0}</option>", esc(m)))
        .collect();
    page(
        "身分驗證",
        &format!(
            "<p>「{}」申請取用您的資料，請先驗證身分。</p>\
             <form method=\"post\" action=\"/service/{}/verify\">\
             <label>驗證方式 <select name=\"method\">{options}</select></label>\
             <label>身分證統一編號 <input name=\"id_number\"></label>\
             <label>憑證密碼或驗證碼 <input name=\"secret\" type=\"password\"></label>\
             <button>驗證</button></form>",
            esc(&client.name),
            esc(&tx_id)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct VerifyForm {
    method: String,
    id_number: String,
    secret: String,
}

async fn verify(
    State(s): State<Shared>,
    UrlPath(tx_id): UrlPath<String>,
    Form(f): Form<VerifyForm>,
) -> Response {
    let mut txs = s.txs.lock().expect("txs");
    let Some(tx) = txs.get_mut(&tx_id) else {
        return error_page(StatusCode::NOT_FOUND, "查無此交易");
    };
    if tx.step != Step::Identify {
        return error_page(StatusCode::CONFLICT, "此交易已完成身分驗證");
    }
    if tx.failures >= 5 {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "驗證失敗次數過多，請15分鐘後再試",
        );
    }
    let accepted = tx.datasets.iter().all(|d| {
        s.dataset(d)
            .is_some_and(|ds| ds.methods.contains(&f.method))
    });
    if !accepted {
        return error_page(
            StatusCode::FORBIDDEN,
            "所選驗證方式的安全等級不足以取用這些資料集",
        );
    }
    let resident = s
        .cfg
        .residents
        .iter()
        .find(|r| r.id_number.eq_ignore_ascii_case(f.id_number.trim()));
    let ok = resident.is_some() && s.cfg.credentials.get(&f.method) == Some(&f.secret);
    if !ok {
        tx.failures += 1;
        let n = tx.failures;
        drop(txs);
        s.log(&tx_id, format!("identity check failed ({n})"));
        return error_page(StatusCode::UNAUTHORIZED, "身分驗證失敗，請確認證號與密碼");
    }
    let resident = resident.map(|r| r.id_number.clone()).unwrap_or_default();
    tx.step = Step::Consent { resident };
    let client = s
        .cfg
        .clients
        .iter()
        .find(|c| c.client_id == tx.client)
        .cloned();
    let rows: String = tx
        .datasets
        .iter()
        .filter_map(|d| s.dataset(d))
        .map(|d| {
            format!(
                "<li>{}（{}）：{}</li>",
                esc(&d.name),
                esc(&d.provider),
                esc(&d.fields.join("、"))
            )
        })
        .collect();
    drop(txs);
    s.log(&tx_id, format!("identity verified by {}", f.method));
    let (name, purpose) = client.map(|c| (c.name, c.purpose)).unwrap_or_default();
    page(
        "同意傳送",
        &format!(
            "<p>服務：{}</p><p>目的：{}</p><ul>{rows}</ul><p>本次同意僅限本次申辦使用。</p>\
             <form method=\"post\" action=\"/service/{}/consent\">\
             <button name=\"agree\" value=\"yes\">同意傳送</button>\
             <button name=\"agree\" value=\"no\">不同意傳送</button></form>",
            esc(&name),
            esc(&purpose),
            esc(&tx_id)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct ConsentForm {
    agree: String,
}

async fn consent(
    State(s): State<Shared>,
    UrlPath(tx_id): UrlPath<String>,
    Form(f): Form<ConsentForm>,
) -> Response {
    let mut txs = s.txs.lock().expect("txs");
    let Some(tx) = txs.get_mut(&tx_id) else {
        return error_page(StatusCode::NOT_FOUND, "查無此交易");
    };
    let Step::Consent { resident } = tx.step.clone() else {
        return error_page(StatusCode::CONFLICT, "此交易不在等待同意的狀態");
    };
    let sep = if tx.return_url.contains('?') {
        '&'
    } else {
        '?'
    };
    if f.agree != "yes" {
        tx.step = Step::Refused;
        let url = format!("{}{sep}code=403&tx_id={tx_id}", tx.return_url);
        drop(txs);
        s.log(&tx_id, "consent refused");
        return Redirect::to(&url).into_response();
    }
    let delay = tx
        .datasets
        .iter()
        .filter_map(|d| s.dataset(d))
        .map(|d| d.delay_s)
        .max()
        .unwrap_or(0);
    let ready = Instant::now() + Duration::from_secs_f64(delay as f64 * s.cfg.delay_scale);
    let ticket = hex::encode(rand::random::<[u8; 16]>());
    tx.step = Step::Granted {
        resident,
        ticket: ticket.clone(),
        ready,
    };
    let url = format!(
        "{}{sep}code=200&tx_id={tx_id}&permission_ticket={ticket}",
        tx.return_url
    );
    drop(txs);
    s.log(&tx_id, "consent given");
    Redirect::to(&url).into_response()
}

async fn data(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (tx_id, ticket) = (h("tx_id"), h("permission_ticket"));
    let json = |status: StatusCode, code: u16, message: &str| {
        (
            status,
            Json(serde_json::json!({"code": code, "message": message})),
        )
            .into_response()
    };
    let mut txs = s.txs.lock().expect("txs");
    let Some(tx) = txs.get_mut(&tx_id) else {
        return json(
            StatusCode::FORBIDDEN,
            403,
            "tx_id 或 permission_ticket 不正確",
        );
    };
    let Some(client) = s.cfg.clients.iter().find(|c| c.client_id == tx.client) else {
        return json(StatusCode::FORBIDDEN, 403, "服務不存在");
    };
    if !client
        .allowed_ips
        .iter()
        .any(|ip| *ip == peer.ip().to_string())
    {
        drop(txs);
        s.log(&tx_id, "refused: address not on the allow-list");
        return json(
            StatusCode::UNAUTHORIZED,
            401,
            "來源 IP 不在服務登記的白名單內",
        );
    }
    if tx.created.elapsed() > s.cfg.retention && !matches!(tx.step, Step::Downloaded | Step::Purged)
    {
        tx.step = Step::Purged;
    }
    match tx.step.clone() {
        Step::Downloaded => json(StatusCode::CREATED, 201, "資料已下載過，檔案已刪除"),
        Step::Purged => json(StatusCode::FORBIDDEN, 403, "檔案已逾保存期限並刪除"),
        Step::Granted {
            resident,
            ticket: t,
            ready,
        } => {
            if t != ticket {
                drop(txs);
                s.log(&tx_id, "refused: wrong permission ticket");
                return json(
                    StatusCode::FORBIDDEN,
                    403,
                    "tx_id 或 permission_ticket 不正確",
                );
            }
            let now = Instant::now();
            if now < ready {
                let wait = (ready - now).as_secs().max(1);
                let mut r = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    429,
                    "資料提供者尚未完成，請稍後再試",
                );
                if let Ok(v) = wait.to_string().parse() {
                    r.headers_mut().insert("retry-after", v);
                }
                return r;
            }
            let Some(res) = s.cfg.residents.iter().find(|r| r.id_number == resident) else {
                return json(StatusCode::GATEWAY_TIMEOUT, 504, "資料提供者均無法提供資料");
            };
            match build_package(&s, res, &tx.datasets, &client.client_secret, &tx_id) {
                Ok(bytes) => {
                    tx.step = Step::Downloaded;
                    drop(txs);
                    s.log(&tx_id, "downloaded; files deleted");
                    (
                        StatusCode::OK,
                        [("content-type", "application/octet-stream")],
                        bytes,
                    )
                        .into_response()
                }
                Err(e) => json(StatusCode::GATEWAY_TIMEOUT, 504, &e.to_string()),
            }
        }
        _ => json(StatusCode::FORBIDDEN, 403, "民眾尚未同意傳送或已拒絕"),
    }
}

async fn provider_keys(State(s): State<Shared>) -> Json<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for d in &s.cfg.datasets {
        let pk = s.provider_key(&d.provider).verifying_key();
        keys.insert(
            d.provider.clone(),
            base64::engine::general_purpose::STANDARD.encode(pk.to_bytes()),
        );
    }
    Json(keys)
}

/// Serves the sandbox on `addr` until the process ends.
pub async fn serve(state: Shared, addr: SocketAddr) -> anyhow::Result<()> {
    serve_on(state, tokio::net::TcpListener::bind(addr).await?).await
}

/// Serves the sandbox on a bound listener (tests bind port 0).
pub async fn serve_on(state: Shared, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
