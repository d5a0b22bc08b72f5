//! The MyData pre-fill flow over HTTP: the consent screen, the redirect to the platform, the
//! callback (single-use `tx_id`, tied to the session that started it), the draft the resident
//! reviews, corrects and submits or abandons, and the resident's own transfer log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Session;
use super::{ApiError, ApiResult, AppState};
use crate::mydata::client::{percent_encode, ConsentScreen};
use crate::mydata::service::{Draft, PrefillService};
use crate::store::now;

fn service(state: &AppState) -> ApiResult<Arc<PrefillService>> {
    state.mydata.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mydata_off",
            "本市尚未開放 MyData 帶入資料，請直接填寫申請表。",
        )
    })
}

fn form<'a>(state: &'a AppState, name: &str) -> ApiResult<&'a knowledge::FormSchema> {
    state
        .extractor
        .form(name)
        .map_err(|_| ApiError::not_found("找不到這項申辦服務。"))
}

/// `GET /api/forms`.
pub async fn forms(State(state): State<Arc<AppState>>) -> Json<Vec<serde_json::Value>> {
    Json(
        state
            .extractor
            .forms()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "title": f.title,
                    "mydata": state.mydata.is_some() && ConsentScreen::for_form(f).is_ok(),
                })
            })
            .collect(),
    )
}

/// `GET /api/mydata/consent/{form}`: what the resident is asked to agree to.
pub async fn consent(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<ConsentScreen>> {
    let f = form(&state, &name)?;
    ConsentScreen::for_form(f)
        .map(Json)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Deserialize)]
pub struct Start {
    form: String,
}

/// `POST /api/mydata/start`: remembers the transaction for this session and returns where to
/// send the browser.
pub async fn start(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<Start>,
) -> ApiResult<Json<serde_json::Value>> {
    let svc = service(&state)?;
    super::limits::rate(&state, &s)?;
    let f = form(&state, &req.form)?.clone();
    let tx = hex::encode(rand::random::<[u8; 16]>());
    let (_, url) = svc
        .begin(&f, &tx, &state.callback_url())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (key, tx2, name) = (s.key.clone(), tx.clone(), f.name.clone());
    state
        .db
        .call(move |db| db.insert_pending_mydata(&tx2, &key, &name, now()))
        .await?;
    Ok(Json(serde_json::json!({"redirect": url})))
}

fn to_apply(query: &str) -> Response {
    Redirect::to(&format!("/apply?{query}")).into_response()
}

/// Back to the application page with a message for the resident.
fn apply_error(message: &str) -> Response {
    to_apply(&format!("error={}", percent_encode(message)))
}

/// `GET /mydata/callback?code=&tx_id=&permission_ticket=`: the platform sends the browser
/// back here. The transaction must be pending for this very session and is used once.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Ok(svc) = service(&state) else {
        return apply_error("本市尚未開放 MyData 帶入資料。");
    };
    let tx = q.get("tx_id").cloned().unwrap_or_default();
    let key = s.key.clone();
    let tx2 = tx.clone();
    // Take the pending row (single use, one atomic statement): a replayed or foreign tx_id
    // finds nothing.
    let pending = state
        .db
        .call(move |db| db.take_pending_mydata(&tx2, &key))
        .await;
    let form_name = match pending {
        Ok(Some(f)) => f,
        Ok(None) => {
            let _ = state.db.audit(
                &s.actor(),
                "mydata.callback_refused",
                "unknown or used tx_id",
            );
            return apply_error("這筆授權已使用過、已逾時或不屬於您的瀏覽器，請重新申請。");
        }
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let Ok(f) = form(&state, &form_name).cloned() else {
        return apply_error("找不到這項申辦服務。");
    };
    let draft_id = hex::encode(rand::random::<[u8; 12]>());
    let did = draft_id.clone();
    let svc2 = svc.clone();
    let done =
        tokio::task::spawn_blocking(move || svc2.complete(&f, None, &q, now() as u64, &did)).await;
    match done {
        Ok(Ok(c)) => {
            let bound = svc
                .drafts
                .bind(&c.draft.id, &s.key)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    state
                        .db
                        .bind_session_subject(&s.key, &c.subject)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = bound {
                return ApiError::internal(e).into_response();
            }
            let _ = state.db.audit(&s.actor(), "mydata.prefill", &c.draft.id);
            to_apply(&format!("draft={}", c.draft.id))
        }
        Ok(Err(e)) => {
            let _ = state.db.audit(&s.actor(), "mydata.failed", &form_name);
            apply_error(&e.to_string())
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The draft, if it belongs to this session.
async fn owned(state: &AppState, s: &Session, id: &str) -> ApiResult<(Arc<PrefillService>, Draft)> {
    let svc = service(state)?;
    let (svc2, id2) = (svc.clone(), id.to_string());
    let (owner, draft) = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((svc2.drafts.owner(&id2)?, svc2.drafts.get(&id2)?))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    match (owner, draft) {
        (Some(o), Some(d)) if o == s.key => Ok((svc, d)),
        _ => Err(ApiError::not_found("找不到這份申請。")),
    }
}

fn draft_view(state: &AppState, d: &Draft) -> serde_json::Value {
    let f = state.extractor.form(&d.form).ok();
    let fields: Vec<serde_json::Value> = f
        .map(|f| {
            f.fields
                .iter()
                .map(|spec| {
                    let v = d.values.get(&spec.name);
                    serde_json::json!({
                        "name": spec.name,
                        "label": spec.label,
                        "value": v.map(|v| v.value.clone()),
                        "source": v.map(|v| v.source.clone()),
                        "provenance": v.and_then(|v| v.provenance.clone()),
                        "required": spec.required,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "id": d.id,
        "form": d.form,
        "title": f.map(|f| f.title.clone()),
        "status": d.status,
        "expires": d.expires,
        "fields": fields,
    })
}

/// `GET /api/drafts/{id}`.
pub async fn get_draft(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, d) = owned(&state, &s, &id).await?;
    Ok(Json(draft_view(&state, &d)))
}

#[derive(Deserialize)]
pub struct FieldUpdate {
    name: String,
    value: serde_json::Value,
}

/// `POST /api/drafts/{id}/fields`: the resident corrects or adds a value.
pub async fn set_field(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
    super::Body(req): super::Body<FieldUpdate>,
) -> ApiResult<Json<serde_json::Value>> {
    let (svc, d) = owned(&state, &s, &id).await?;
    let f = form(&state, &d.form)?;
    if !f.fields.iter().any(|x| x.name == req.name) {
        return Err(ApiError::bad_request("這份申請沒有這個欄位。"));
    }
    if req.value.to_string().chars().count() > 500 {
        return Err(ApiError::bad_request("欄位內容太長。"));
    }
    let d = tokio::task::spawn_blocking(move || svc.drafts.correct(&id, &req.name, req.value))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("找不到這份申請。"))?;
    Ok(Json(draft_view(&state, &d)))
}

async fn close(
    state: Arc<AppState>,
    s: Session,
    id: String,
    submit: bool,
) -> ApiResult<Json<serde_json::Value>> {
    let (svc, d) = owned(&state, &s, &id).await?;
    if d.status != crate::mydata::service::DraftStatus::Open {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "closed",
            "這份申請已送出或已結束。",
        ));
    }
    let id2 = id.clone();
    let svc2 = svc.clone();
    let sent = tokio::task::spawn_blocking(move || {
        if submit {
            svc2.drafts.submit(&id2)
        } else {
            svc2.drafts.abandon(&id2)
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("找不到這份申請。"))?;
    let action = if submit {
        "draft.submit"
    } else {
        "draft.abandon"
    };
    state.db.audit(&s.actor(), action, &id)?;
    let after = svc
        .drafts
        .get(&id)
        .map_err(ApiError::internal)?
        .unwrap_or(sent.clone());
    let mut view = draft_view(&state, &after);
    if submit {
        // The receipt: what was sent, shown once and not kept in the draft.
        view["submitted"] = draft_view(&state, &sent)["fields"].clone();
    }
    Ok(Json(view))
}

/// `POST /api/drafts/{id}/submit`: the application is sent; its MyData values are deleted.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    close(state, s, id, true).await
}

/// `POST /api/drafts/{id}/abandon`: every value is deleted.
pub async fn abandon(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    close(state, s, id, false).await
}

/// `GET /api/mydata/log`: the transfers about the resident this session verified as (through
/// the platform's identity check); nothing for anyone else.
pub async fn my_log(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let Some(subject) = s.subject.clone() else {
        return Ok(Json(Vec::new()));
    };
    let log = state.transfer_log.clone();
    let rows = tokio::task::spawn_blocking(move || log.for_subject_hash(&subject))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                serde_json::json!({
                    "time": r.time, "kind": r.kind, "counterpart": r.counterpart,
                    "form": r.form, "datasets": r.datasets, "success": r.success,
                    "reason": r.reason,
                })
            })
            .collect(),
    ))
}
