//! The HTTP service (`assistant serve`): the resident chat page and its streaming API, the
//! agent console (suggested answers, case intake, dispatch), the administrator's pages, the
//! MyData pre-fill routes, an OpenAI-compatible endpoint over the grounded pipeline, and
//! health, readiness, metrics and OpenAPI. One [`router`] builds it all from an [`AppState`].
//!
//! Load is bounded at three points: token buckets per session and per client address (429), a
//! cap on requests being
//! answered at once (503 + `Retry-After`), and a small queue in front of the LLM; when that
//! queue is full, chat answers stay retrieval-only (the extractive, cited answer) instead of
//! waiting, so residents keep getting answers while generation is saturated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::{RwLock, Semaphore};

use crate::answer::safety::Triage;
use crate::answer::walkthrough::Walkthrough;
use crate::answer::{AnswerConfig, Answerer};
use crate::config::ServerSettings;
use crate::intake::Extractor;
use crate::mydata::service::{DraftStore, PrefillService};
use crate::mydata::{client::MyDataClient, log::TransferLog};
use crate::store::Db;
use models::llm::ChatModel;
use retrieval::Retriever;

mod admin;
mod analytics;
pub mod auth;
mod calls;
mod cases;
mod chat;
mod health;
pub mod limits;
pub mod metrics;
mod mydata_routes;
mod openai;
pub mod openapi;
mod pages;

pub use calls::serve_audiosocket;

pub use auth::Role;

/// The knowledge base the answers come from (swapped while re-indexing).
pub struct Kb {
    pub retriever: Arc<Retriever>,
    /// Corpus paths ingested (bundled guides, uploads).
    pub paths: Vec<PathBuf>,
}

/// Everything a request handler needs.
pub struct AppState {
    pub settings: ServerSettings,
    pub answer_config: AnswerConfig,
    pub kb: Arc<RwLock<Kb>>,
    pub llm: Option<Arc<dyn ChatModel>>,
    pub walkthroughs: Vec<Walkthrough>,
    pub extractor: Arc<Extractor>,
    /// Which bureau answers a question or complaint that has no dispatch category.
    pub router: Option<Arc<crate::intake::route::Router>>,
    /// The safety triage every answer runs first.
    pub triage: Option<Arc<Triage>>,
    /// Service and status names for the claim check.
    pub entities: Vec<String>,
    /// (name, guide id) for the guides' titles and aliases.
    pub names: Vec<(String, String)>,
    /// The benefit rules (「您可能可以申請」 in the chat and the console).
    pub benefits: Arc<knowledge::benefits::Rulebook>,

    pub db: Db,
    pub secret: Vec<u8>,
    pub mydata: Option<Arc<PrefillService>>,
    /// MyData talks to the bundled sandbox (synthetic residents), not the real platform.
    pub mydata_sandbox: bool,
    /// The transfer log (also without MyData configured, for the admin page and the purge).
    pub transfer_log: TransferLog,
    pub metrics: metrics::Metrics,
    /// Requests per session.
    pub limiter: limits::RateLimiter,
    /// Requests per client address (a client that drops its cookies keeps its address).
    pub addr_limiter: limits::RateLimiter,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub inflight: Arc<Semaphore>,
    pub llm_gate: Arc<Semaphore>,
    pub jobs: admin::Jobs,
    /// Speech recognition for calls (None when voice is off or its model is unavailable).
    pub voice: Option<Arc<voice::Transcriber>>,
    pub voice_settings: crate::voice::VoiceSettings,
    /// Calls being transcribed at once.
    pub calls: Arc<Semaphore>,
    /// The case history for decision support (loaded on first use, following the database).
    pub history: Arc<std::sync::RwLock<crate::analytics::History>>,
}

/// What [`AppState::new`] is built from.
pub struct Parts {
    pub settings: ServerSettings,
    pub answer_config: AnswerConfig,
    pub retriever: Retriever,
    pub corpus_paths: Vec<PathBuf>,
    pub llm: Option<Arc<dyn ChatModel>>,
    pub walkthroughs: Vec<Walkthrough>,
    pub extractor: Extractor,
    pub router: Option<Arc<crate::intake::route::Router>>,
    pub triage: Option<Arc<Triage>>,
    pub entities: Vec<String>,
    pub names: Vec<(String, String)>,
    pub benefits: Arc<knowledge::benefits::Rulebook>,
    pub db: Db,
    pub secret: Vec<u8>,
    pub mydata: Option<MyDataClient>,
    pub mydata_sandbox: bool,
    pub voice: Option<Arc<voice::Transcriber>>,
    pub voice_settings: crate::voice::VoiceSettings,
}

impl AppState {
    pub fn new(p: Parts) -> Arc<AppState> {
        let transfer_log =
            TransferLog::new(p.db.clone(), &auth::derive(&p.secret, b"transfer-log"));
        let mydata = p.mydata.map(|client| {
            Arc::new(PrefillService {
                client,
                log: transfer_log.clone(),
                drafts: DraftStore::new(p.db.clone()),
            })
        });
        Arc::new(AppState {
            inflight: Arc::new(Semaphore::new(p.settings.max_inflight.max(1))),
            llm_gate: Arc::new(Semaphore::new(p.settings.llm_queue.max(1))),
            limiter: limits::RateLimiter::new(p.settings.rate_per_minute, p.settings.rate_burst),
            addr_limiter: limits::RateLimiter::new(
                p.settings.address_rate_per_minute,
                p.settings.address_rate_burst,
            ),
            trusted_proxies: p.settings.trusted_proxies.clone(),
            settings: p.settings,
            answer_config: p.answer_config,
            kb: Arc::new(RwLock::new(Kb {
                retriever: Arc::new(p.retriever),
                paths: p.corpus_paths,
            })),
            llm: p.llm,
            walkthroughs: p.walkthroughs,
            history: Arc::new(std::sync::RwLock::new(crate::analytics::History::new(
                p.extractor.taxonomy(),
            ))),
            extractor: Arc::new(p.extractor),
            router: p.router,
            triage: p.triage,
            entities: p.entities,
            names: p.names,
            benefits: p.benefits,
            db: p.db,
            secret: p.secret,
            mydata,
            mydata_sandbox: p.mydata_sandbox,
            transfer_log,
            metrics: metrics::Metrics::default(),
            jobs: admin::Jobs::default(),
            calls: Arc::new(Semaphore::new(p.voice_settings.max_calls.max(1))),
            voice: p.voice,
            voice_settings: p.voice_settings,
        })
    }

    /// The answer pipeline over `retriever` with the state's triage and entities.
    pub fn answerer(&self, retriever: Arc<Retriever>, llm: Option<Arc<dyn ChatModel>>) -> Answerer {
        let a = Answerer::new(retriever, llm, self.answer_config.clone())
            .with_entities(self.entities.clone())
            .with_names(self.names.clone());
        match &self.triage {
            Some(t) => a.with_triage(t.clone()),
            None => a,
        }
    }

    /// Where the platform sends the browser back.
    pub fn callback_url(&self) -> String {
        let base = self
            .settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.settings.addr));
        format!("{}/mydata/callback", base.trim_end_matches('/'))
    }
}

/// An error response: `{"error": "中文訊息", "code": "machine_code"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure of ours: logged with its cause, shown without it.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "系統發生錯誤，請稍後再試；急事請撥打1999。",
        )
    }

    pub fn busy(code: &'static str, retry_after: u64) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: format!("目前使用人數較多，請於 {retry_after} 秒後再試。"),
            retry_after: Some(retry_after),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({"error": self.message, "code": self.code})),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        r
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The whole service.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let mut r = axum::Router::new();
    for route in openapi::routes() {
        let handler = if route.path == "/api/analytics/import" {
            // A year of dispatch records is tens of megabytes.
            route.handler.layer(axum::extract::DefaultBodyLimit::max(
                analytics::IMPORT_MAX_BYTES,
            ))
        } else {
            route.handler
        };
        r = r.route(route.path, handler);
    }
    r.fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::session_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::client_addr,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_body_bytes,
        ))
        .with_state(state)
}

/// Reads the server secret, creating it (random, mode 0600) on first start.
pub fn load_or_create_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) if b.len() >= 32 => return Ok(b),
        Ok(_) => anyhow::bail!(
            "the server key {} is too short; delete it to create a new one (sessions and the \
             transfer log's subject hashes change)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let key: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, &key)?;
    f.sync_all()?;
    Ok(key.to_vec())
}

/// Runs the periodic purges: expired drafts' MyData values, old transfer-log rows, old
/// conversations and calls, idle sessions, stale MyData transactions and login failures.
pub fn purge(state: &AppState) -> anyhow::Result<()> {
    let now = crate::store::now();
    if let Some(m) = &state.mydata {
        let n = m.drafts.purge_expired(now as u64)?;
        if n > 0 {
            tracing::info!(drafts = n, "purged expired MyData values");
        }
    }
    let keep = u64::from(state.settings.transfer_log_days.max(366)) * 86_400;
    let n = state.transfer_log.purge_older_than(now as u64, keep)?;
    if n > 0 {
        tracing::info!(
            rows = n,
            "purged transfer-log rows older than the retention"
        );
    }
    state.db.purge_old(
        now - i64::from(state.settings.conversation_days) * 86_400,
        now - i64::from(state.settings.session_hours) * 3600,
        now - 3600,
    )?;
    Ok(())
}

/// Serves on a bound listener until Ctrl-C / SIGTERM, purging hourly (`App::serve` binds the
/// configured address; tests bind port 0).
pub async fn serve_on(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    if let Some(addr) = state.voice_settings.audiosocket_addr.as_deref() {
        if state.voice.is_some() {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the AudioSocket listener {addr}"))?;
            tracing::info!(addr, "AudioSocket listener");
            tokio::spawn(calls::serve_audiosocket(state.clone(), l));
        }
    }
    let purger = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let s = state.clone();
                match tokio::task::spawn_blocking(move || purge(&s)).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "purge failed"),
                    Err(e) => tracing::error!(error = %e, "purge panicked"),
                    Ok(Ok(())) => {}
                }
            }
        })
    };
    let syncer = (state.settings.guide_sync_secs > 0).then(|| {
        let state = state.clone();
        tokio::spawn(follow_uploaded_guides(state))
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    purger.abort();
    if let Some(t) = syncer {
        t.abort();
    }
    r.context("serving HTTP")
}

/// Every `server.guide_sync_secs`, brings this instance's copy of the uploaded guides in line
/// with the database and re-indexes when another instance added, replaced or removed one.
async fn follow_uploaded_guides(state: Arc<AppState>) {
    let every = std::time::Duration::from_secs(state.settings.guide_sync_secs);
    // Set when the folder changed but the index has not caught up (a failed re-index is tried
    // again next round).
    let mut pending = false;
    loop {
        tokio::time::sleep(every).await;
        let (db, dir) = (state.db.clone(), state.settings.uploads_dir.clone());
        match tokio::task::spawn_blocking(move || crate::kb::sync_uploads(&db, &dir)).await {
            Ok(Ok(sync)) if sync.changed() => {
                tracing::info!(
                    written = sync.written,
                    removed = sync.removed,
                    "uploaded guides changed elsewhere; re-indexing"
                );
                pending = true;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "following the uploaded guides failed"),
            Err(e) => tracing::error!(error = %e, "following the uploaded guides panicked"),
        }
        if pending {
            let jid = state.jobs.start("等待中");
            pending = !admin::reindex_job(&state, &jid).await;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// In-memory cache of recent values keyed by string (bounded, oldest evicted).
pub(crate) struct Bounded<V> {
    map: HashMap<String, V>,
    order: std::collections::VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: Default::default(),
            cap,
        }
    }

    pub(crate) fn insert(&mut self, k: String, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(crate) fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.map.get_mut(k)
    }
}

/// A JSON body whose rejections (malformed JSON, wrong fields, too large, wrong content type)
/// answer in the API's error format, in Chinese.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                "請以 JSON 格式送出（Content-Type: application/json）。",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_fields",
                format!("欄位不正確：{}", e.body_text()),
            )),
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::bad_request("請求內容不是正確的 JSON。"))
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "送出的內容太大。",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "無法讀取請求：{}",
                e.body_text()
            ))),
        }
    }
}
