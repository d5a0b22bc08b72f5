//! Administrators: guides (list, upload, re-index with progress), accounts, the audit and
//! transfer logs, eval reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{create_user, Role, Session};
use super::{ApiError, ApiResult, AppState};

/// A background job's progress.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub state: &'static str,
    pub done: usize,
    pub total: usize,
    pub message: String,
}

#[derive(Default, Clone)]
pub struct Jobs(Arc<Mutex<HashMap<String, Job>>>);

impl Jobs {
    fn set(&self, id: &str, job: Job) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), job);
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            f(j);
        }
    }

    /// A new running job (its id, for `GET /api/admin/jobs/{id}`).
    pub(crate) fn start(&self, message: &str) -> String {
        let id = hex::encode(rand::random::<[u8; 6]>());
        self.set(
            &id,
            Job {
                state: "running",
                done: 0,
                total: 0,
                message: message.into(),
            },
        );
        id
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// `GET /api/admin/guides`.
pub async fn guides(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    s.require(Role::Admin)?;
    let kb = state.kb.read().await;
    Ok(Json(
        kb.retriever
            .titles()
            .into_iter()
            .map(|(doc_id, title)| {
                let bureau = kb
                    .retriever
                    .chunks_of(&doc_id)
                    .first()
                    .and_then(|c| c.bureau.clone());
                serde_json::json!({"doc_id": doc_id, "title": title, "bureau": bureau})
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct Upload {
    filename: String,
    content: String,
}

/// A safe file name for an uploaded guide.
fn upload_name(name: &str) -> ApiResult<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let ok_ext = [".md", ".json", ".html"].iter().any(|e| base.ends_with(e));
    let ok_chars = base
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok_ext || !ok_chars || base.starts_with('.') || base.len() > 100 {
        return Err(ApiError::bad_request(
            "檔名只能使用英數字與 . _ -，副檔名為 .md、.json 或 .html。",
        ));
    }
    Ok(base.to_string())
}

/// `POST /api/admin/guides`: checks the guide loads, saves it among the uploads, and
/// re-indexes (only what changed is embedded again).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<Upload>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.require(Role::Admin)?;
    let name = upload_name(&req.filename)?;
    // Parse it on its own first: a broken file is refused and nothing changes.
    let tmp = tempfile_in(&state.settings.uploads_dir)?;
    let probe = tmp.join(&name);
    std::fs::write(&probe, &req.content).map_err(ApiError::internal)?;
    let loaded = knowledge::load_path(&probe, &knowledge::LoadOptions::default());
    let _ = std::fs::remove_dir_all(&tmp);
    match loaded {
        Ok(l) if l.problems.is_empty() && !l.documents.is_empty() => {}
        Ok(l) => {
            let why = l
                .problems
                .first()
                .map(|p| p.message.clone())
                .unwrap_or_else(|| "檔案中沒有可用的服務說明".into());
            return Err(ApiError::bad_request(format!("無法讀取這份說明：{why}")));
        }
        Err(e) => return Err(ApiError::bad_request(format!("無法讀取這份說明：{e}"))),
    }
    // The database is where uploads live (every instance follows it); this instance's copy
    // is brought up to date at once, the others within `server.guide_sync_secs`.
    let (db, dir, content) = (
        state.db.clone(),
        state.settings.uploads_dir.clone(),
        req.content,
    );
    let actor = s.actor();
    let stored = name.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        db.put_guide(&stored, &content, &actor)?;
        db.audit(&actor, "guide.upload", &stored)?;
        crate::kb::sync_uploads(&db, &dir)?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let job = start_reindex(&state);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"job": job}))))
}

/// `DELETE /api/admin/guides/{name}`: removes an uploaded guide (the bundled ones are part of
/// the release) from every instance.
pub async fn delete_upload(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.require(Role::Admin)?;
    let (db, dir, actor) = (
        state.db.clone(),
        state.settings.uploads_dir.clone(),
        s.actor(),
    );
    let removed = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let removed = db.delete_guide(&name)?;
        if removed {
            db.audit(&actor, "guide.delete", &name)?;
            crate::kb::sync_uploads(&db, &dir)?;
        }
        Ok(removed)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    if !removed {
        return Err(ApiError::not_found("沒有這份上傳的說明。"));
    }
    let job = start_reindex(&state);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"job": job}))))
}

fn tempfile_in(dir: &std::path::Path) -> ApiResult<std::path::PathBuf> {
    let p = dir.parent().unwrap_or(dir).join(format!(
        ".upload-{}",
        hex::encode(rand::random::<[u8; 6]>())
    ));
    std::fs::create_dir_all(&p).map_err(ApiError::internal)?;
    Ok(p)
}

/// `POST /api/admin/reindex`.
pub async fn reindex(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.require(Role::Admin)?;
    state.db.audit(&s.actor(), "reindex", "-")?;
    let job = start_reindex(&state);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"job": job}))))
}

/// Re-ingests the corpus paths in the background. Answers keep being served from the current
/// index until the job takes the write lock for the swap-in.
pub(crate) fn start_reindex(state: &Arc<AppState>) -> String {
    let id = state.jobs.start("等待中");
    let (st, jid) = (state.clone(), id.clone());
    tokio::spawn(async move { reindex_job(&st, &jid).await });
    id
}

/// Re-ingests the corpus paths as job `jid`; true when it succeeded. The slow part, embedding
/// what changed, runs beside the answers (under the read lock); the write lock is taken only to
/// swap the prepared sections in, so questions wait for milliseconds, not for the embedding.
pub(crate) async fn reindex_job(st: &Arc<AppState>, jid: &str) -> bool {
    let progress = {
        let (jobs, jid) = (st.jobs.clone(), jid.to_string());
        move |done, total| {
            jobs.update(&jid, |j| {
                j.done = done;
                j.total = total;
                j.message = "建立索引中".into();
            })
        }
    };
    let outcome: Result<crate::kb::IngestOutcome, String> = async {
        let (loaded, prepared) = {
            let kb = st.kb.read().await;
            let paths = kb.paths.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                crate::kb::load(&paths, &knowledge::LoadOptions::default())
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let prepared = kb
                .retriever
                .prepare(&loaded.docs, &progress)
                .await
                .map_err(|e| e.to_string())?;
            (loaded, prepared)
        };
        let mut kb = st.kb.write().await;
        match Arc::get_mut(&mut kb.retriever) {
            Some(r) => crate::kb::ingest_loaded(r, loaded, prepared, &progress)
                .await
                .map_err(|e| e.to_string()),
            None => Err("索引正在使用中，請稍後再試".to_string()),
        }
    }
    .await;
    match outcome {
        Ok(o) => {
            st.jobs.update(jid, |j| {
                j.state = "done";
                j.message = format!(
                    "完成：新增 {}、更新 {}、未變 {}、移除 {} 份；{} 份有問題",
                    o.report.added,
                    o.report.updated,
                    o.report.unchanged,
                    o.report.removed,
                    o.problems.len()
                );
            });
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "re-index failed");
            st.jobs.update(jid, |j| {
                j.state = "failed";
                j.message = format!("失敗：{e}");
            });
            false
        }
    }
}

/// `GET /api/admin/jobs/{id}`.
pub async fn job(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    s.require(Role::Admin)?;
    state
        .jobs
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("找不到這個工作。"))
}

#[derive(Deserialize)]
pub struct NewUser {
    username: String,
    password: String,
    role: Role,
}

/// `POST /api/admin/users`: creates an agent or administrator (or resets a password).
pub async fn add_user(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<NewUser>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    s.require(Role::Admin)?;
    let db = state.db.clone();
    let (name, pw, role) = (req.username.clone(), req.password, req.role);
    tokio::task::spawn_blocking(move || create_user(&db, &name, &pw, role))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.db.audit(
        &s.actor(),
        "user.create",
        &format!("{}:{}", role.as_str(), req.username),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"username": req.username, "role": role})),
    ))
}

/// `GET /api/admin/audit`.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<crate::store::AuditRow>>> {
    s.require(Role::Admin)?;
    Ok(Json(state.db.audit_rows(500)?))
}

/// `GET /api/admin/login-locks`: accounts and client addresses locked after failed logins.
pub async fn login_locks(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<crate::store::LoginLock>>> {
    s.require(Role::Admin)?;
    let t = crate::store::now();
    Ok(Json(state.db.call(move |db| db.login_locks(t)).await?))
}

#[derive(Deserialize)]
pub struct LiftLock {
    key: String,
}

/// `POST /api/admin/login-locks/lift`: an administrator lifts a lock (audited).
pub async fn lift_login_lock(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<LiftLock>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require(Role::Admin)?;
    let key = req.key.clone();
    let lifted = state.db.call(move |db| db.lift_login_lock(&key)).await?;
    if !lifted {
        return Err(ApiError::not_found("沒有這個登入鎖定。"));
    }
    state.db.audit(&s.actor(), "login_lock.lift", &req.key)?;
    Ok(Json(serde_json::json!({"lifted": req.key})))
}

/// `GET /api/admin/transfers`: the MyData transfer log (subjects as keyed hashes).
pub async fn transfers(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<crate::mydata::log::TransferRecord>>> {
    s.require(Role::Admin)?;
    let log = state.transfer_log.clone();
    let rows = tokio::task::spawn_blocking(move || log.recent(500))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(rows))
}

/// `GET /api/admin/eval`: the reports `eval` wrote (Markdown and JSON).
pub async fn eval_reports(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<serde_json::Value>> {
    s.require(Role::Admin)?;
    let mut reports = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&state.settings.eval_reports) {
        let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for p in files {
            let ext_ok = p.extension().is_some_and(|e| e == "md" || e == "json");
            if !ext_ok {
                continue;
            }
            if let Ok(content) = std::fs::read_to_string(&p) {
                reports.push(serde_json::json!({
                    "name": p.file_name().map(|n| n.to_string_lossy().to_string()),
                    "content": content.chars().take(200_000).collect::<String>(),
                }));
            }
        }
    }
    Ok(Json(serde_json::json!({"reports": reports})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_cannot_escape_the_directory() {
        assert_eq!(upload_name("new-guide.md").unwrap(), "new-guide.md");
        assert_eq!(upload_name("../../etc/x.md").unwrap(), "x.md");
        assert!(upload_name("guide.sh").is_err());
        assert!(upload_name(".hidden.md").is_err());
        assert!(upload_name("敬老卡.md").is_err());
    }
}
