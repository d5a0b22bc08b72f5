//! Sessions, roles and CSRF protection.
//!
//! Every browser gets a random session id in an `HttpOnly`, `SameSite=Lax` cookie. Residents
//! are anonymous: their session needs no row (a row is written only once a MyData transfer ties
//! it to a subject); agents and administrators sign in with argon2-hashed passwords, which
//! rotates the session id and writes a row holding the role. The database keeps only the
//! SHA-256 of session ids. The CSRF token is an HMAC of the session id under the server secret;
//! any state-changing request that carries the cookie must echo it in `X-CSRF-Token`.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiResult, AppState};
use crate::store::{now, Db};

pub const COOKIE: &str = "sid";

/// Who is making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Resident,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "resident" => Some(Role::Resident),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The request's session (put in the request extensions by [`session_layer`]).
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the session id: what the database stores and rows are owned by.
    pub key: String,
    pub csrf: String,
    pub role: Role,
    pub username: Option<String>,
    /// The MyData subject (keyed hash) this session's transfers were about.
    pub subject: Option<String>,
    /// The client's address (the peer, or the first untrusted hop of `X-Forwarded-For` behind a
    /// trusted proxy); `None` in-process (no socket).
    pub addr: Option<String>,
    /// The cookie was just created (sent back with the response).
    fresh_id: Option<String>,
}

impl Session {
    /// Refuses a request below `role`.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            return Ok(());
        }
        Err(if self.role == Role::Resident {
            ApiError::new(StatusCode::UNAUTHORIZED, "login_required", "請先登入。")
        } else {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", "您的帳號沒有這項權限。")
        })
    }

    /// Who to write in the audit log.
    pub fn actor(&self) -> String {
        match &self.username {
            Some(u) => format!("{}:{u}", self.role.as_str()),
            None => format!("resident:{}", &self.key[..12]),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| ApiError::internal("session layer missing"))
    }
}

/// HMAC of `label` under the server secret (hex).
pub fn derive(secret: &[u8], label: &[u8]) -> Vec<u8> {
    crate::mydata::log::hmac(secret, label).into_bytes()
}

fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn csrf_for(secret: &[u8], id: &str) -> String {
    let mut t = crate::mydata::log::hmac(secret, format!("csrf|{id}").as_bytes());
    t.truncate(32);
    t
}

fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn load(
    state: &AppState,
    id: &str,
    fresh: bool,
    addr: Option<String>,
) -> crate::store::Result<Session> {
    let key = hash_id(id);
    let row = if fresh { None } else { state.db.session(&key)? };
    let (role, username, subject) = match row {
        Some(r) => (
            Role::parse(&r.role).unwrap_or(Role::Resident),
            r.username,
            r.subject,
        ),
        None => (Role::Resident, None, None),
    };
    Ok(Session {
        csrf: csrf_for(&state.secret, id),
        key,
        role,
        username,
        subject,
        addr,
        fresh_id: fresh.then(|| id.to_string()),
    })
}

fn set_cookie(state: &AppState, id: &str, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if state.settings.secure_cookies {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

/// Paths that take no session (machine clients, probes).
fn sessionless(path: &str) -> bool {
    path.starts_with("/v1/")
        || path.starts_with("/static/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Attaches the [`Session`], creates one for new browsers, and checks the CSRF token.
pub async fn session_layer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if sessionless(req.uri().path()) {
        return next.run(req).await;
    }
    let existing = cookie_value(req.headers(), COOKIE);
    let (id, fresh) = match existing {
        Some(id) => (id, false),
        None => (new_id(), true),
    };
    let addr = req
        .extensions()
        .get::<super::limits::ClientAddr>()
        .map(|a| a.0.clone());
    let session = match load(&state, &id, fresh, addr) {
        Ok(s) => s,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if mutating && !fresh {
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "頁面已過期，請重新整理後再試一次。",
            )
            .into_response();
        }
    }
    let fresh_id = session.fresh_id.clone();
    req.extensions_mut().insert(session);
    let mut resp = next.run(req).await;
    // A handler that rotated or cleared the session set its own cookie.
    if let Some(id) = fresh_id {
        if !resp.headers().contains_key(header::SET_COOKIE) {
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(&state, &id, None));
        }
    }
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Creates or replaces an account.
pub fn create_user(db: &Db, username: &str, password: &str, role: Role) -> anyhow::Result<()> {
    let name = username.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        anyhow::bail!("帳號只能使用英數字與 . _ -，最多 64 字");
    }
    if password.chars().count() < 10 {
        anyhow::bail!("密碼至少 10 個字元");
    }
    if role == Role::Resident {
        anyhow::bail!("居民不需要帳號");
    }
    let hash = hash_password(password)?;
    db.upsert_user(name, &hash, role.as_str())?;
    Ok(())
}

/// On first run (no accounts), creates `admin` with a random password and returns it.
pub fn bootstrap_admin(db: &Db) -> anyhow::Result<Option<String>> {
    if db.user_count()? > 0 {
        return Ok(None);
    }
    let pw: String = {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::thread_rng();
        (0..16)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    create_user(db, "admin", &pw, Role::Admin)?;
    db.audit("system", "bootstrap_admin", "admin")?;
    Ok(Some(pw))
}

#[derive(Serialize)]
pub struct SessionInfo {
    csrf: String,
    role: Role,
    username: Option<String>,
    mydata: bool,
    /// MyData runs against the bundled test sandbox (the pages say so).
    mydata_sandbox: bool,
}

/// `GET /api/session`.
pub async fn session_info(State(state): State<Arc<AppState>>, s: Session) -> Json<SessionInfo> {
    Json(SessionInfo {
        csrf: s.csrf,
        role: s.role,
        username: s.username,
        mydata: state.mydata.is_some(),
        mydata_sandbox: state.mydata.is_some() && state.mydata_sandbox,
    })
}

#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/login`: verifies the password and rotates the session id. Failures are counted
/// per account and per client address; after `login_max_failures` within
/// `login_lock_minutes`, both are locked for that long: every attempt, even with the right
/// password, gets 429 with `Retry-After` (and the lock is in the audit log, listed for
/// administrators, who can lift it).
pub async fn login(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(body): super::Body<Login>,
) -> ApiResult<Response> {
    super::limits::rate(&state, &s)?;
    let name = body.username.trim().to_string();
    let addr = s.addr.clone().unwrap_or_else(|| "in-process".into());
    let (user_key, addr_key) = (format!("user:{name}"), format!("addr:{addr}"));
    let t = now();
    let locked = {
        let (u, a) = (user_key.clone(), addr_key.clone());
        state
            .db
            .call(move |db| db.login_locked_until(&[&u, &a], t))
            .await?
    };
    if let Some(until) = locked {
        return Err(login_locked(until - t));
    }
    let lookup = name.clone();
    let row = state.db.call(move |db| db.user(&lookup)).await?;
    let password = body.password;
    let ok = match &row {
        Some(u) => {
            let hash = u.password_hash.clone();
            tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    let role = row
        .as_ref()
        .and_then(|u| Role::parse(&u.role))
        .filter(|_| ok);
    let Some(role) = role else {
        return Err(login_failed(&state, &name, &addr, &user_key, &addr_key).await?);
    };
    let id = new_id();
    let key = hash_id(&id);
    let uname = name.clone();
    state
        .db
        .call(move |db| {
            db.clear_login_failures(&uname)?;
            db.insert_staff_session(&key, role.as_str(), &uname)
        })
        .await?;
    state
        .db
        .audit(&format!("{}:{name}", role.as_str()), "login", "-")?;
    let mut resp = Json(serde_json::json!({
        "role": role,
        "username": name,
        "csrf": csrf_for(&state.secret, &id),
    }))
    .into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, &id, None));
    Ok(resp)
}

fn login_locked(secs: i64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "login_locked",
        format!(
            "登入失敗次數過多，已暫停登入，請於 {} 分鐘後再試，或請管理員解除。",
            (secs + 59) / 60
        ),
    );
    e.retry_after = Some(secs.max(1) as u64);
    e
}

/// Records a failed login, locks the account and the address once they reach the limit, and
/// returns the error to send (401, or 429 when this failure locked).
async fn login_failed(
    state: &AppState,
    name: &str,
    addr: &str,
    user_key: &str,
    addr_key: &str,
) -> ApiResult<ApiError> {
    let window = i64::from(state.settings.login_lock_minutes) * 60;
    let max = i64::from(state.settings.login_max_failures.max(1));
    let t = now();
    let (n, a, uk, ak) = (
        name.to_string(),
        addr.to_string(),
        user_key.to_string(),
        addr_key.to_string(),
    );
    let locked = state
        .db
        .call(move |db| {
            let (by_user, by_addr) = db.record_login_failure(&n, &a, t - window)?;
            let mut locked = Vec::new();
            for (key, count) in [(uk, by_user), (ak, by_addr)] {
                if count >= max {
                    db.lock_login(&key, t + window, count)?;
                    locked.push(key);
                }
            }
            Ok(locked)
        })
        .await?;
    // The account name is what someone typed: audited, never the password.
    state
        .db
        .audit(&format!("login:{name}"), "login_failed", "-")?;
    for key in &locked {
        state.db.audit("system", "login_locked", key)?;
    }
    Ok(if locked.is_empty() {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "帳號或密碼不正確。",
        )
    } else {
        login_locked(window)
    })
}

/// `POST /api/logout`.
pub async fn logout(State(state): State<Arc<AppState>>, s: Session) -> ApiResult<Response> {
    let key = s.key.clone();
    state.db.call(move |db| db.delete_session(&key)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, &new_id(), Some(0)));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn cookies_are_parsed_strictly() {
        let mut h = axum::http::HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; sid={id}")).unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE).as_deref(), Some(id.as_str()));
        h.insert(header::COOKIE, HeaderValue::from_static("sid=short"));
        assert_eq!(cookie_value(&h, COOKIE), None);
    }
}
