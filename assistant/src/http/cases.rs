//! Agents' side of a call: form extraction, the live assist (suggested answer and case fields),
//! and cases from draft to dispatch.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::{Role, Session};
use super::chat::answer_view;
use super::{limits, ApiError, ApiResult, AppState};
use crate::intake::{
    self,
    case::{Case, CaseError, Corrections},
};
use crate::store::now;

fn long_text(state: &AppState, text: &str) -> ApiResult<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::bad_request("請提供要解析的內容。"));
    }
    let n = t.chars().count();
    if n > state.settings.max_text_chars {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text_too_long",
            format!(
                "內容太長（{n} 字），上限 {} 字。",
                state.settings.max_text_chars
            ),
        ));
    }
    Ok(t.to_string())
}

#[derive(Deserialize)]
pub struct ExtractRequest {
    #[serde(default = "default_schema")]
    schema: String,
    text: String,
}

fn default_schema() -> String {
    "case_report".into()
}

/// `POST /api/extract`: form fields from a description.
pub async fn extract(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<ExtractRequest>,
) -> ApiResult<Json<crate::intake::Extraction>> {
    let text = long_text(&state, &req.text)?;
    limits::rate(&state, &s)?;
    let _permit = limits::admit(&state)?;
    let ex = state.extractor.clone();
    let out = tokio::task::spawn_blocking(move || ex.extract(&req.schema, &text))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct AssistRequest {
    text: String,
}

/// `POST /api/assist` (agents, during a call): the suggested answer with sources (extractive:
/// at once) and the case fields read so far.
pub async fn assist(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<AssistRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require(Role::Agent)?;
    let text = long_text(&state, &req.text)?;
    let _permit = limits::admit(&state)?;
    Ok(Json(analyse_call(&state, text).await?))
}

/// The assist as JSON (the console's and the call stream's `analysis`).
pub(super) async fn analyse_call(state: &AppState, text: String) -> ApiResult<serde_json::Value> {
    let kb = state.kb.clone().read_owned().await;
    let answerer = state.answerer(kb.retriever.clone(), None);
    let call = text.clone();
    let a = intake::assist(
        &answerer,
        state.extractor.clone(),
        text,
        state.settings.max_message_chars,
    )
    .await
    .map_err(ApiError::internal)?;
    // What the caller appears eligible for, from everything said so far.
    let benefits = if a.alert.is_none() {
        let (st, call) = (state.benefits.clone(), call.clone());
        let extractor = state.extractor.clone();
        tokio::task::spawn_blocking(move || {
            let on = crate::eligibility::today();
            let (facts, heard) = crate::eligibility::facts_from_text(&call, &extractor, &on);
            crate::eligibility::offer(&st, extractor.forms(), &facts, &heard, &call, &on)
        })
        .await
        .map_err(ApiError::internal)?
    } else {
        Vec::new()
    };
    // No dispatch category (a question, or an unsure report): which bureaus answer it, when
    // the router is sure enough to say (else nothing: an agent reads a shown bureau as a fact).
    let routing = match (&state.router, a.case.category.is_none()) {
        (Some(router), true) => {
            use crate::intake::route::{SHOW_ALTERNATIVES_AT, SHOW_AT};
            let (router, text) = (router.clone(), call.clone());
            let ranked = tokio::task::spawn_blocking(move || router.route(&text))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            if ranked.first().is_some_and(|r| r.probability >= SHOW_AT) {
                ranked
                    .into_iter()
                    .take(3)
                    .filter(|r| r.probability >= SHOW_ALTERNATIVES_AT)
                    .collect()
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let known = known_cases(state, &call, &a.case).await?;
    let note = crate::intake::note::call_note(&call, &a.case);
    Ok(serde_json::json!({
        "answer": answer_view(&a.answer),
        "note": note,
        "case": a.case,
        "alert": a.alert,
        "cues": a.cues,
        "routing": routing,
        "benefits": benefits,
        "known": known,
    }))
}

async fn load_case(state: &AppState, id: &str) -> ApiResult<Case> {
    let id = id.to_string();
    state
        .db
        .call(move |db| db.case(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("找不到這個案件。"))
}

async fn store_case(state: &AppState, case: &Case) -> ApiResult<()> {
    let c = case.clone();
    state.db.call(move |db| db.save_case(&c)).await?;
    Ok(())
}

fn case_error(e: CaseError) -> ApiError {
    let code = match e {
        CaseError::AlreadyDispatched => "already_dispatched",
        CaseError::NotConfirmed => "not_confirmed",
        CaseError::NoBureau | CaseError::UnknownCategory(_) => {
            return ApiError::bad_request(e.to_string())
        }
    };
    ApiError::new(StatusCode::CONFLICT, code, e.to_string())
}

#[derive(Deserialize)]
pub struct NewCase {
    text: String,
    /// The after-call note as the agent edited it.
    #[serde(default)]
    note: Option<String>,
}

/// The longest after-call note kept.
const NOTE_MAX_CHARS: usize = 2000;

fn call_note(note: Option<&str>) -> ApiResult<Option<String>> {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() > NOTE_MAX_CHARS => Err(ApiError::bad_request(format!(
            "通話摘要最多 {NOTE_MAX_CHARS} 字。"
        ))),
        other => Ok(other.map(String::from)),
    }
}

/// `POST /api/cases` (agents): a draft case from what the caller said.
pub async fn create_case(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<NewCase>,
) -> ApiResult<(StatusCode, Json<Case>)> {
    s.require(Role::Agent)?;
    let text = long_text(&state, &req.text)?;
    let ex = state.extractor.clone();
    let t2 = text.clone();
    let out = tokio::task::spawn_blocking(move || ex.extract("case_report", &t2))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let category = out
        .fields
        .get("category")
        .and_then(|v| v.value.as_str())
        .map(String::from);
    let mut fields = out.values();
    if let Some(n) = call_note(req.note.as_deref())? {
        fields.insert("call_note".into(), serde_json::Value::String(n));
    }
    let case = Case::draft(
        now(),
        category,
        out.bureau.clone(),
        fields,
        &text,
        s.actor(),
    );
    store_case(&state, &case).await?;
    state.db.audit(&s.actor(), "case.create", &case.id)?;
    Ok((StatusCode::CREATED, Json(case)))
}

/// `POST /api/cases/{id}/confirm` (agents): the agent's corrections; the case is confirmed.
pub async fn confirm_case(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
    super::Body(req): super::Body<Corrections>,
) -> ApiResult<Json<Case>> {
    s.require(Role::Agent)?;
    let mut case = load_case(&state, &id).await?;
    let tax = state.extractor.taxonomy();
    let bureau_of = |cat: &str| {
        tax.categories
            .iter()
            .find(|c| c.name == cat)
            .map(|c| c.bureau.clone())
    };
    case.confirm(req, now(), bureau_of).map_err(case_error)?;
    store_case(&state, &case).await?;
    state.db.audit(&s.actor(), "case.confirm", &case.id)?;
    Ok(Json(case))
}

#[derive(Deserialize)]
pub struct Dispatch {
    #[serde(default)]
    bureau: Option<String>,
}

/// `POST /api/cases/{id}/dispatch` (agents): sends a confirmed case to a bureau.
pub async fn dispatch_case(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
    super::Body(req): super::Body<Dispatch>,
) -> ApiResult<Json<Case>> {
    s.require(Role::Agent)?;
    let mut case = load_case(&state, &id).await?;
    case.dispatch(req.bureau, now()).map_err(case_error)?;
    store_case(&state, &case).await?;
    // The dispatched case joins the history the analytics read.
    if let Some(r) = crate::analytics::record_of_case(&case, state.extractor.taxonomy()) {
        let db = state.db.clone();
        db.call(move |db| db.add_case_records(&[r])).await?;
    }
    state.db.audit(
        &s.actor(),
        "case.dispatch",
        &format!("{} → {}", case.id, case.bureau.clone().unwrap_or_default()),
    )?;
    Ok(Json(case))
}

#[derive(Deserialize)]
pub struct NoteUpdate {
    note: String,
}

/// `POST /api/cases/{id}/note` (agents): the after-call note as the agent edited it.
pub async fn save_note(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
    super::Body(req): super::Body<NoteUpdate>,
) -> ApiResult<Json<Case>> {
    s.require(Role::Agent)?;
    let mut case = load_case(&state, &id).await?;
    match call_note(Some(&req.note))? {
        Some(n) => case
            .fields
            .insert("call_note".into(), serde_json::Value::String(n)),
        None => case.fields.remove("call_note"),
    };
    case.updated = now();
    store_case(&state, &case).await?;
    state.db.audit(&s.actor(), "case.note", &case.id)?;
    Ok(Json(case))
}

/// `POST /api/cases/{id}/reports` (agents): a repeat report of this case, linked instead of
/// creating a duplicate.
pub async fn link_report(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Case>> {
    s.require(Role::Agent)?;
    let mut case = load_case(&state, &id).await?;
    case.add_report(now());
    store_case(&state, &case).await?;
    state.db.audit(
        &s.actor(),
        "case.link_report",
        &format!("{} (reports {})", case.id, case.reports),
    )?;
    Ok(Json(case))
}

/// `GET /api/cases` (agents): the latest cases.
pub async fn list_cases(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<Case>>> {
    s.require(Role::Agent)?;
    let rows = state.db.call(|db| db.recent_cases(200)).await?;
    Ok(Json(rows))
}

/// The earlier cases that report the same problem as `call` (read as `case`): the same pole;
/// the same place, category and words lately. Empty for a question.
pub(super) async fn known_cases(
    state: &AppState,
    call: &str,
    case: &crate::intake::CaseView,
) -> ApiResult<Vec<serde_json::Value>> {
    Ok(if case.case_type.dispatched() {
        let cases = state.db.call(|db| db.recent_cases(500)).await?;
        let field = |k: &str| {
            case.fields
                .iter()
                .find(|f| f.name == k)
                .and_then(|f| f.value.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let new = crate::intake::duplicates::Report {
            district: field("district"),
            place: field("road"),
            description: crate::intake::duplicates::without_poles(call),
            at: now() / 60,
            // The poles the extractor read (any length), else seven-digit numbers said.
            poles: case
                .fields
                .iter()
                .find(|f| f.name == "pole_numbers")
                .and_then(|f| f.value.as_array())
                .map(|v| {
                    v.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_else(|| crate::intake::duplicates::pole_numbers(call)),
        };
        crate::intake::duplicates::earlier_cases(&new, case.category.as_deref(), &cases)
            .into_iter()
            .take(3)
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "status": c.status.as_str(),
                    "category": c.category,
                    "created": c.created,
                    "reports": c.reports,
                })
            })
            .collect::<Vec<_>>()
    } else {
        Vec::new()
    })
}
