//! The service provider's side of a MyData transfer: the consent screen built from a form
//! schema, the redirect to the platform, and the fetch of the package with the wait-and-retry
//! the platform requires, every provider signature and the encryption checked before a single
//! value is used.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use knowledge::FormSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Records;

/// The most datasets one service may request.
pub const MAX_DATASETS: usize = 5;

/// What the resident is asked to agree to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsentScreen {
    pub form: String,
    pub title: String,
    pub purpose: String,
    /// Days the pre-filled values are kept if the application is not submitted.
    pub retention_days: u32,
    /// Each dataset with the form fields it fills (zh-TW labels).
    pub datasets: Vec<(String, Vec<String>)>,
}

impl ConsentScreen {
    /// The consent screen for a form: only datasets that fill at least one of its fields.
    pub fn for_form(form: &FormSchema) -> Result<ConsentScreen, MyDataError> {
        let mut datasets: Vec<(String, Vec<String>)> = Vec::new();
        for d in &form.mydata {
            let fields: Vec<String> = form
                .fields
                .iter()
                .filter(|f| f.mydata.as_ref().is_some_and(|m| &m.dataset == d))
                .map(|f| f.label.clone())
                .collect();
            if !fields.is_empty() {
                datasets.push((d.clone(), fields));
            }
        }
        if datasets.is_empty() {
            return Err(MyDataError::NothingToRequest(form.name.clone()));
        }
        if datasets.len() > MAX_DATASETS {
            return Err(MyDataError::TooManyDatasets(datasets.len()));
        }
        Ok(ConsentScreen {
            form: form.name.clone(),
            title: form.title.clone(),
            purpose: form
                .purpose
                .clone()
                .unwrap_or_else(|| format!("辦理{}", form.title)),
            retention_days: form.retention_days.unwrap_or(30),
            datasets,
        })
    }

    pub fn dataset_names(&self) -> Vec<String> {
        self.datasets.iter().map(|(d, _)| d.clone()).collect()
    }
}

/// Why a transfer failed (zh-TW for the agent or resident; the log keeps the kind).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MyDataError {
    #[error("表單 {0} 沒有可由 MyData 帶入的欄位")]
    NothingToRequest(String),
    #[error("一次最多申請 {MAX_DATASETS} 個資料集（本次 {0} 個）")]
    TooManyDatasets(usize),
    #[error("本服務的主機不在 MyData 白名單內（401）")]
    NotAllowed,
    #[error("MyData 拒絕提供資料：{0}")]
    Refused(String),
    #[error("這筆資料已經下載過，檔案已刪除（201）；請民眾重新同意")]
    AlreadyDownloaded,
    #[error("資料提供者在 {0} 秒內未完成，請稍後再試")]
    NotReady(u64),
    #[error("資料提供者均無法提供資料（504）")]
    Unavailable,
    #[error("資料無法解密（金鑰不符或內容遭竄改）")]
    Decrypt,
    #[error("資料集「{0}」的簽章驗證失敗，已拒收")]
    BadSignature(String),
    #[error("收到未申請的資料集「{0}」，已拒收")]
    Unexpected(String),
    #[error("MyData 連線失敗：{0}")]
    Http(String),
    #[error("資料格式錯誤：{0}")]
    Format(String),
}

/// Connection settings for the platform (or the sandbox).
#[derive(Debug, Clone)]
pub struct MyDataClient {
    pub base_url: String,
    pub client_id: String,
    client_secret: String,
    provider_keys: BTreeMap<String, VerifyingKey>,
    /// How long `fetch` waits for slow providers before giving up.
    pub max_wait: Duration,
    agent: ureq::Agent,
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a query value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn package_key(client_secret: &str, tx_id: &str) -> [u8; 32] {
    Sha256::digest(format!("mydata-sandbox|{client_secret}|{tx_id}")).into()
}

impl MyDataClient {
    pub fn new(base_url: &str, client_id: &str, client_secret: &str) -> MyDataClient {
        MyDataClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            provider_keys: BTreeMap::new(),
            max_wait: Duration::from_secs(120),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .redirects(0)
                .build(),
        }
    }

    /// Trusts these providers' public keys (base64 Ed25519), as published by the platform.
    pub fn trust_providers(&mut self, keys: &BTreeMap<String, String>) -> Result<(), MyDataError> {
        for (provider, b64) in keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| MyDataError::Format(e.to_string()))?;
            let arr: [u8; 32] = bytes
                .try_into()
                .map_err(|_| MyDataError::Format(format!("{provider} 的公鑰長度不對")))?;
            let key =
                VerifyingKey::from_bytes(&arr).map_err(|e| MyDataError::Format(e.to_string()))?;
            self.provider_keys.insert(provider.clone(), key);
        }
        Ok(())
    }

    /// Fetches the providers' keys from the platform (`GET /providers/keys`).
    pub fn load_provider_keys(&mut self) -> Result<(), MyDataError> {
        let body = self
            .agent
            .get(&format!("{}/providers/keys", self.base_url))
            .call()
            .map_err(|e| MyDataError::Http(e.to_string()))?
            .into_string()
            .map_err(|e| MyDataError::Http(e.to_string()))?;
        let keys: BTreeMap<String, String> =
            serde_json::from_str(&body).map_err(|e| MyDataError::Format(e.to_string()))?;
        self.trust_providers(&keys)
    }

    /// Where to send the resident's browser to verify and consent.
    pub fn authorize_url(
        &self,
        screen: &ConsentScreen,
        tx_id: &str,
        return_url: &str,
    ) -> Result<String, MyDataError> {
        let names = screen.dataset_names();
        if names.len() > MAX_DATASETS {
            return Err(MyDataError::TooManyDatasets(names.len()));
        }
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(names.join(":"));
        Ok(format!(
            "{}/service/{}/{encoded}/{tx_id}?returnUrl={}",
            self.base_url,
            self.client_id,
            percent_encode(return_url)
        ))
    }

    /// Downloads and opens the package for a consented transfer, waiting (as the platform
    /// asks, with `Retry-After`) for slow providers up to `max_wait`.
    pub fn fetch(
        &self,
        tx_id: &str,
        ticket: &str,
        requested: &[String],
    ) -> Result<Records, MyDataError> {
        let started = Instant::now();
        loop {
            let resp = self
                .agent
                .get(&format!("{}/service/data", self.base_url))
                .set("tx_id", tx_id)
                .set("permission_ticket", ticket)
                .call();
            let (status, r) = match resp {
                Ok(r) => (r.status(), r),
                Err(ureq::Error::Status(code, r)) => (code, r),
                Err(e) => return Err(MyDataError::Http(e.to_string())),
            };
            match status {
                200 => {
                    let mut bytes = Vec::new();
                    r.into_reader()
                        .take(64 << 20)
                        .read_to_end(&mut bytes)
                        .map_err(|e| MyDataError::Http(e.to_string()))?;
                    return self.open_package(tx_id, &bytes, requested);
                }
                201 => return Err(MyDataError::AlreadyDownloaded),
                401 => return Err(MyDataError::NotAllowed),
                429 => {
                    let wait = r
                        .header("retry-after")
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(10)
                        .max(1);
                    if started.elapsed() + Duration::from_secs(wait) > self.max_wait {
                        return Err(MyDataError::NotReady(wait));
                    }
                    std::thread::sleep(Duration::from_secs(wait));
                }
                504 => return Err(MyDataError::Unavailable),
                _ => {
                    let message = r
                        .into_string()
                        .ok()
                        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["message"].as_str().map(String::from))
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    return Err(MyDataError::Refused(message));
                }
            }
        }
    }

    /// Decrypts the package, checks each dataset's manifest hash and provider signature, and
    /// returns the records of the requested datasets (anything else is refused).
    pub fn open_package(
        &self,
        tx_id: &str,
        bytes: &[u8],
        requested: &[String],
    ) -> Result<Records, MyDataError> {
        if bytes.len() < 13 {
            return Err(MyDataError::Decrypt);
        }
        let cipher = Aes256Gcm::new_from_slice(&package_key(&self.client_secret, tx_id))
            .map_err(|_| MyDataError::Decrypt)?;
        let plain = cipher
            .decrypt(Nonce::from_slice(&bytes[..12]), &bytes[12..])
            .map_err(|_| MyDataError::Decrypt)?;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(plain))
            .map_err(|e| MyDataError::Format(e.to_string()))?;
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for i in 0..zip.len() {
            let mut f = zip
                .by_index(i)
                .map_err(|e| MyDataError::Format(e.to_string()))?;
            let mut buf = Vec::new();
            f.by_ref()
                .take(16 << 20)
                .read_to_end(&mut buf)
                .map_err(|e| MyDataError::Format(e.to_string()))?;
            files.insert(f.name().to_string(), buf);
        }
        let mut records = Records::new();
        let datasets: std::collections::BTreeSet<&str> = files
            .keys()
            .filter_map(|k| k.split_once('/').map(|(d, _)| d))
            .collect();
        for d in datasets {
            if !requested.iter().any(|r| r == d) {
                return Err(MyDataError::Unexpected(d.to_string()));
            }
            let get = |name: &str| {
                files
                    .get(&format!("{d}/{name}"))
                    .ok_or_else(|| MyDataError::BadSignature(d.to_string()))
            };
            let (data, manifest, sig) = (
                get("data.json")?,
                get("manifest.json")?,
                get("manifest.sig")?,
            );
            let m: serde_json::Value =
                serde_json::from_slice(manifest).map_err(|e| MyDataError::Format(e.to_string()))?;
            let provider = m["provider"].as_str().unwrap_or_default();
            let key = self
                .provider_keys
                .get(provider)
                .ok_or_else(|| MyDataError::BadSignature(d.to_string()))?;
            let sig: [u8; 64] = sig
                .as_slice()
                .try_into()
                .map_err(|_| MyDataError::BadSignature(d.to_string()))?;
            key.verify(manifest, &Signature::from_bytes(&sig))
                .map_err(|_| MyDataError::BadSignature(d.to_string()))?;
            if m["files"]["data.json"].as_str() != Some(hex::encode(Sha256::digest(data)).as_str())
            {
                return Err(MyDataError::BadSignature(d.to_string()));
            }
            let v: serde_json::Value =
                serde_json::from_slice(data).map_err(|e| MyDataError::Format(e.to_string()))?;
            if let Some(obj) = v["data"].as_object() {
                records.insert(d.to_string(), obj.clone());
            }
        }
        Ok(records)
    }
}
