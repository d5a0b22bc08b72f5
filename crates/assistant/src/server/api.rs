//! Residents' chat (streaming) and questions, the guides behind citations, hand-off to a person;
//! agents' live assist, case intake and dispatch; health and readiness.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use knowledge::SectionKind;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::auth::{Role, Session};
use super::{limits, ApiError, ApiResult, AppState};
use crate::answer::{Answer, AnswerEvent, AnswerKind, Answerer, AskContext, Citation};
use crate::chat::{Chat, Conversation};
use crate::store::{now, params, Row};

/// The answer as pages and API clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerView {
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    pub grounded: bool,
    pub kind: AnswerKind,
    pub bureau: Option<String>,
    pub doc_id: Option<String>,
}

impl From<&Answer> for AnswerView {
    fn from(a: &Answer) -> Self {
        AnswerView {
            answer: a.answer.clone(),
            citations: a.citations.clone(),
            handoff: a.handoff,
            grounded: a.grounded,
            kind: a.kind,
            bureau: a.bureau.clone(),
            doc_id: a.doc_id.clone(),
        }
    }
}

/// Checks a resident's message: not empty, not too long.
pub(super) fn message(state: &AppState, text: &str) -> ApiResult<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::bad_request("請輸入您的問題。"));
    }
    let n = t.chars().count();
    if n > state.settings.max_message_chars {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
            format!(
                "訊息太長（{n} 字），請精簡到 {} 字以內。",
                state.settings.max_message_chars
            ),
        ));
    }
    Ok(t.to_string())
}

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

/// Follow-up questions the guide can answer and the reply did not cover.
pub(super) fn follow_ups(retriever: &retrieval::Retriever, a: &Answer) -> Vec<String> {
    let Some(doc) = &a.doc_id else {
        return Vec::new();
    };
    if a.handoff || a.kind == AnswerKind::Walkthrough {
        return Vec::new();
    }
    let present: Vec<SectionKind> = retriever.chunks_of(doc).iter().map(|c| c.section).collect();
    let cited: Vec<&str> = a.citations.iter().map(|c| c.section.as_str()).collect();
    [
        (SectionKind::Documents, "要準備哪些文件？"),
        (SectionKind::HowToApply, "要怎麼申請？"),
        (SectionKind::Location, "要去哪裡辦？"),
        (SectionKind::Eligibility, "誰可以申請？"),
        (SectionKind::Fees, "需要費用嗎？"),
        (SectionKind::ProcessingTime, "要多久才會好？"),
    ]
    .iter()
    .filter(|(k, _)| present.contains(k) && !cited.contains(&k.label()))
    .map(|(_, q)| q.to_string())
    .take(3)
    .collect()
}

#[derive(Deserialize)]
pub struct ChatRequest {
    message: String,
    #[serde(default)]
    conversation_id: Option<String>,
}

#[derive(Serialize)]
struct Final<'a> {
    #[serde(flatten)]
    answer: AnswerView,
    follow_ups: Vec<String>,
    llm_status: &'a str,
    conversation_id: &'a str,
}

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event("error"))
}

/// Loads the session's conversation, or starts one.
async fn conversation(
    state: &AppState,
    s: &Session,
    id: Option<String>,
) -> ApiResult<(String, Conversation)> {
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        let key = s.key.clone();
        let lookup = id.clone();
        let row: Option<String> = state
            .db
            .call(move |db| {
                Ok(db
                    .query_one(
                        "SELECT state FROM conversations WHERE id = ?1 AND session = ?2",
                        params![lookup, key],
                    )?
                    .map(|r| r.text(0)))
            })
            .await?;
        // An unknown or expired id (purged, another browser's) starts a new conversation.
        if let Some(json) = row {
            return Ok((id, serde_json::from_str(&json).unwrap_or_default()));
        }
    }
    Ok((
        hex::encode(rand::random::<[u8; 12]>()),
        Conversation::default(),
    ))
}

fn save_conversation(
    state: &AppState,
    session: &str,
    id: &str,
    conv: &Conversation,
) -> crate::store::Result<()> {
    let json = serde_json::to_string(conv).unwrap_or_default();
    let t = now();
    state
        .db
        .execute(
            "INSERT INTO conversations (id, session, state, handoff, created, updated) \
             VALUES (?1, ?2, ?3, 0, ?4, ?4) ON CONFLICT (id) DO UPDATE SET \
             state = excluded.state, updated = excluded.updated",
            params![id, session, json, t],
        )
        .map(|_| ())
}

/// `POST /api/chat`: Server-Sent Events `meta`, `draft` (the extractive answer at once),
/// `token` (the LLM's text as generated, unchecked), `final` (the checked answer with
/// follow-up suggestions), or `error`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<ChatRequest>,
) -> ApiResult<Response> {
    let msg = message(&state, &req.message)?;
    limits::rate(&state, &s.key)?;
    let permit = limits::admit(&state)?;
    let (conv_id, conv) = conversation(&state, &s, req.conversation_id).await?;
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let _ = tx.send(event(
        "meta",
        &serde_json::json!({"conversation_id": conv_id}),
    ));
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = run_chat(&state, &s.key, &conv_id, conv, &msg, &tx).await {
            tracing::error!(error = %e, "chat failed");
            let _ = tx.send(event(
                "error",
                &serde_json::json!({"error": "系統暫時無法回答，請稍後再試；急事請撥打1999。"}),
            ));
        }
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The answerer for one request: with the LLM when a queue slot is free.
pub(super) fn answerer_for(
    state: &AppState,
    retriever: Arc<retrieval::Retriever>,
    want_llm: bool,
) -> (
    Answerer,
    Option<tokio::sync::OwnedSemaphorePermit>,
    &'static str,
) {
    let (llm, permit, status) = match (&state.llm, want_llm) {
        (Some(llm), true) => match state.llm_gate.clone().try_acquire_owned() {
            Ok(p) => (Some(llm.clone()), Some(p), "pending"),
            Err(_) => {
                state
                    .metrics
                    .llm_busy_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
                (None, None, "busy")
            }
        },
        _ => (None, None, "off"),
    };
    (
        Answerer::new(retriever, llm, state.answer_config.clone()),
        permit,
        status,
    )
}

pub(super) fn record_generation(state: &AppState, a: &Answer) {
    if let Some(stats) = a.llm.as_ref().and_then(|l| l.stats.as_ref()) {
        state
            .metrics
            .tokens_generated
            .fetch_add(stats.generated_tokens as u64, Ordering::Relaxed);
        state.metrics.generation_us.fetch_add(
            ((stats.first_token_ms - stats.prefill_ms).max(0.0) * 1e3 + stats.generation_ms * 1e3)
                as u64,
            Ordering::Relaxed,
        );
    }
}

pub(super) fn llm_status(initial: &'static str, a: &Answer) -> &'static str {
    match (&a.llm, initial) {
        (Some(l), _) if l.accepted => "accepted",
        (Some(_), _) => "rejected",
        (None, "pending") => "off",
        (None, s) => s,
    }
}

async fn run_chat(
    state: &Arc<AppState>,
    session: &str,
    conv_id: &str,
    mut conv: Conversation,
    msg: &str,
    tx: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let kb = state.kb.clone().read_owned().await;
    let (answerer, _llm_permit, initial) =
        answerer_for(state, kb.retriever.clone(), state.settings.chat_llm);
    let cancel = Arc::new(AtomicBool::new(false));
    let answerer = answerer.with_cancel(cancel.clone());
    let chat = Chat {
        answerer: &answerer,
        walkthroughs: &state.walkthroughs,
    };
    let a = chat
        .reply(&mut conv, msg, &mut |ev| {
            let sent = match ev {
                AnswerEvent::Draft(a) => tx.send(event("draft", &AnswerView::from(a))),
                AnswerEvent::Token(t) => tx.send(event("token", &serde_json::json!({"text": t}))),
            };
            if sent.is_err() {
                // The client went away: stop generating.
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .await?;
    drop(_llm_permit);
    record_generation(state, &a);
    {
        let (st, session, id, conv) = (
            state.clone(),
            session.to_string(),
            conv_id.to_string(),
            conv,
        );
        tokio::task::spawn_blocking(move || save_conversation(&st, &session, &id, &conv)).await??;
    }
    let fin = Final {
        follow_ups: follow_ups(&kb.retriever, &a),
        answer: AnswerView::from(&a),
        llm_status: llm_status(initial, &a),
        conversation_id: conv_id,
    };
    let _ = tx.send(event("final", &fin));
    Ok(())
}

#[derive(Deserialize)]
pub struct AskRequest {
    message: String,
}

/// `POST /api/ask`: one question, one JSON answer (as `assistant ask --json`).
pub async fn ask(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<AskRequest>,
) -> ApiResult<Json<Answer>> {
    let msg = message(&state, &req.message)?;
    limits::rate(&state, &s.key)?;
    let _permit = limits::admit(&state)?;
    let kb = state.kb.clone().read_owned().await;
    let (answerer, permit, _) = answerer_for(&state, kb.retriever.clone(), state.settings.chat_llm);
    let a = answerer
        .answer(&msg, &AskContext::default(), &mut |_| {})
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    record_generation(&state, &a);
    Ok(Json(a))
}

#[derive(Serialize)]
pub struct GuideSection {
    chunk_id: String,
    section: String,
    text: String,
}

/// `GET /api/guides/{doc_id}`: the whole guide, for a citation to open.
pub async fn guide(
    State(state): State<Arc<AppState>>,
    Path(doc_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let kb = state.kb.read().await;
    let chunks = kb.retriever.chunks_of(&doc_id);
    let Some(first) = chunks.first() else {
        return Err(ApiError::not_found("找不到這份服務說明。"));
    };
    let sections: Vec<GuideSection> = chunks
        .iter()
        .map(|c| GuideSection {
            chunk_id: c.id.clone(),
            section: if c.heading.is_empty() {
                c.section.label().to_string()
            } else {
                c.heading.clone()
            },
            text: c.text.clone(),
        })
        .collect();
    Ok(Json(serde_json::json!({
        "doc_id": doc_id,
        "title": first.doc_title,
        "bureau": first.bureau,
        "sections": sections,
    })))
}

#[derive(Deserialize)]
pub struct HandoffRequest {
    conversation_id: String,
}

/// `POST /api/handoff`: flags the conversation for an agent.
pub async fn handoff(
    State(state): State<Arc<AppState>>,
    s: Session,
    super::Body(req): super::Body<HandoffRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let (key, id) = (s.key.clone(), req.conversation_id.clone());
    let n = state
        .db
        .call(move |db| {
            db.execute(
                "UPDATE conversations SET handoff = 1, updated = ?3 WHERE id = ?1 AND session = ?2",
                params![id, key, now()],
            )
        })
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("找不到這段對話，請先提出問題。"));
    }
    state
        .db
        .audit(&s.actor(), "handoff", &req.conversation_id)?;
    Ok(Json(serde_json::json!({
        "message": "已通知專人接手這段對話，請稍候；若情況緊急，請直接撥打1999。"
    })))
}

/// `GET /api/handoffs` (agents): conversations waiting for a person.
pub async fn handoffs(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    s.require(Role::Agent)?;
    let rows: Vec<(String, i64, String)> = state
        .db
        .call(|db| {
            Ok(db
                .query(
                    "SELECT id, updated, state FROM conversations WHERE handoff = 1 \
                     ORDER BY updated DESC LIMIT 100",
                    &[],
                )?
                .into_iter()
                .map(|r| (r.text(0), r.int(1), r.text(2)))
                .collect())
        })
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, t, json)| {
                let conv: Conversation = serde_json::from_str(&json).unwrap_or_default();
                serde_json::json!({
                    "conversation_id": id,
                    "time": t,
                    "last_question": conv.exchanges.last().map(|e| e.question.clone()),
                })
            })
            .collect(),
    ))
}

/// `GET /api/conversations/{id}` (agents).
pub async fn conversation_view(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require(Role::Agent)?;
    let lookup = id.clone();
    let json: Option<String> = state
        .db
        .call(move |db| {
            Ok(db
                .query_one(
                    "SELECT state FROM conversations WHERE id = ?1",
                    params![lookup],
                )?
                .map(|r| r.text(0)))
        })
        .await?;
    let Some(json) = json else {
        return Err(ApiError::not_found("找不到這段對話。"));
    };
    state.db.audit(&s.actor(), "conversation.view", &id)?;
    let conv: Conversation = serde_json::from_str(&json).unwrap_or_default();
    Ok(Json(
        serde_json::json!({"id": id, "exchanges": conv.exchanges}),
    ))
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
) -> ApiResult<Json<crate::extract::Extraction>> {
    let text = long_text(&state, &req.text)?;
    limits::rate(&state, &s.key)?;
    let _permit = limits::admit(&state)?;
    let ex = state.extractor.clone();
    let out = tokio::task::spawn_blocking(move || ex.extract(&req.schema, &text))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(out))
}

#[derive(Serialize)]
struct CaseField {
    name: String,
    label: String,
    value: serde_json::Value,
    confidence: f32,
    evidence: Option<String>,
}

fn case_view(state: &AppState, ex: &crate::extract::Extraction) -> serde_json::Value {
    let form = state.extractor.form(&ex.schema).ok();
    let label = |name: &str| {
        form.and_then(|f| f.fields.iter().find(|x| x.name == name))
            .map(|x| x.label.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let category = ex
        .fields
        .get("category")
        .and_then(|v| v.value.as_str())
        .map(String::from);
    let tax = state.extractor.taxonomy();
    let bureau_of = |c: &str| {
        tax.categories
            .iter()
            .find(|x| x.name == c)
            .map(|x| x.bureau.clone())
    };
    let fields: Vec<CaseField> = ex
        .fields
        .iter()
        .map(|(k, v)| CaseField {
            name: k.clone(),
            label: label(k),
            value: v.value.clone(),
            confidence: v.confidence,
            evidence: v.evidence.clone(),
        })
        .collect();
    serde_json::json!({
        "category": category,
        "bureau": ex.bureau,
        "fields": fields,
        "alternatives": ex.alternatives.iter().map(|(c, score)| serde_json::json!({
            "category": c, "bureau": bureau_of(c), "score": score
        })).collect::<Vec<_>>(),
        "problems": ex.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>(),
        "follow_ups": ex.follow_ups.iter().map(|f| f.question.clone()).collect::<Vec<_>>(),
    })
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

/// The assist for what a caller said so far: the latest utterance is the question (suggested
/// answer with sources), the whole call is the case (fields, category, bureau).
pub(crate) async fn analyse_call(state: &AppState, text: String) -> ApiResult<serde_json::Value> {
    let question: String = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text)
        .chars()
        .take(state.settings.max_message_chars)
        .collect();
    let kb = state.kb.clone().read_owned().await;
    let answerer = Answerer::new(kb.retriever.clone(), None, state.answer_config.clone());
    let a = answerer
        .answer(&question, &AskContext::default(), &mut |_| {})
        .await
        .map_err(ApiError::internal)?;
    let ex = state.extractor.clone();
    let case = tokio::task::spawn_blocking(move || ex.extract("case_report", &text))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(serde_json::json!({
        "answer": AnswerView::from(&a),
        "case": case_view(state, &case),
    }))
}

/// A 1999 case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub created: i64,
    pub updated: i64,
    pub status: String,
    pub category: Option<String>,
    pub bureau: Option<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
    pub created_by: String,
}

fn read_case(r: &Row) -> Case {
    Case {
        id: r.text(0),
        created: r.int(1),
        updated: r.int(2),
        status: r.text(3),
        category: r.opt_text(4),
        bureau: r.opt_text(5),
        fields: serde_json::from_str(&r.text(6)).unwrap_or_default(),
        summary: r.text(7),
        created_by: r.text(8),
    }
}

const CASE_COLUMNS: &str =
    "id, created, updated, status, category, bureau, fields, summary, created_by";

async fn load_case(state: &AppState, id: &str) -> ApiResult<Case> {
    let id = id.to_string();
    state
        .db
        .call(move |db| {
            Ok(db
                .query_one(
                    &format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1"),
                    params![id],
                )?
                .map(|r| read_case(&r)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("找不到這個案件。"))
}

async fn store_case(state: &AppState, case: &Case) -> ApiResult<()> {
    let c2 = case.clone();
    state
        .db
        .call(move |db| {
            db.execute(
                &format!(
                    "INSERT INTO cases ({CASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, \
                     status = excluded.status, category = excluded.category, \
                     bureau = excluded.bureau, fields = excluded.fields"
                ),
                params![
                    c2.id,
                    c2.created,
                    c2.updated,
                    c2.status,
                    c2.category,
                    c2.bureau,
                    serde_json::to_string(&c2.fields).unwrap_or_default(),
                    c2.summary,
                    c2.created_by
                ],
            )
        })
        .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct NewCase {
    text: String,
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
    let t = now();
    let case = Case {
        id: format!("C{}-{}", t, hex::encode(rand::random::<[u8; 3]>())),
        created: t,
        updated: t,
        status: "draft".into(),
        category: out
            .fields
            .get("category")
            .and_then(|v| v.value.as_str())
            .map(String::from),
        bureau: out.bureau.clone(),
        fields: out.values(),
        summary: text.chars().take(200).collect(),
        created_by: s.actor(),
    };
    store_case(&state, &case).await?;
    state.db.audit(&s.actor(), "case.create", &case.id)?;
    Ok((StatusCode::CREATED, Json(case)))
}

#[derive(Deserialize)]
pub struct ConfirmCase {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    bureau: Option<String>,
    #[serde(default)]
    fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /api/cases/{id}/confirm` (agents): the agent's corrections; the case is confirmed.
pub async fn confirm_case(
    State(state): State<Arc<AppState>>,
    s: Session,
    Path(id): Path<String>,
    super::Body(req): super::Body<ConfirmCase>,
) -> ApiResult<Json<Case>> {
    s.require(Role::Agent)?;
    let mut case = load_case(&state, &id).await?;
    if case.status == "dispatched" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_dispatched",
            "案件已派工，無法再修改。",
        ));
    }
    let tax = state.extractor.taxonomy();
    if let Some(cat) = req.category.filter(|c| !c.is_empty()) {
        let Some(known) = tax.categories.iter().find(|c| c.name == cat) else {
            return Err(ApiError::bad_request(format!(
                "沒有「{cat}」這個案件類別。"
            )));
        };
        if req.bureau.is_none() {
            case.bureau = Some(known.bureau.clone());
        }
        case.category = Some(cat);
    }
    if let Some(b) = req.bureau.filter(|b| !b.trim().is_empty()) {
        case.bureau = Some(b.trim().to_string());
    }
    if let Some(f) = req.fields {
        for (k, v) in f {
            case.fields.insert(k, v);
        }
    }
    case.status = "confirmed".into();
    case.updated = now();
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
    if case.status != "confirmed" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_confirmed",
            "請先確認案件內容再派工。",
        ));
    }
    if let Some(b) = req.bureau.filter(|b| !b.trim().is_empty()) {
        case.bureau = Some(b.trim().to_string());
    }
    if case.bureau.is_none() {
        return Err(ApiError::bad_request("請選擇派工單位。"));
    }
    case.status = "dispatched".into();
    case.updated = now();
    store_case(&state, &case).await?;
    state.db.audit(
        &s.actor(),
        "case.dispatch",
        &format!("{} → {}", case.id, case.bureau.clone().unwrap_or_default()),
    )?;
    Ok(Json(case))
}

/// `GET /api/cases` (agents): the latest cases.
pub async fn list_cases(
    State(state): State<Arc<AppState>>,
    s: Session,
) -> ApiResult<Json<Vec<Case>>> {
    s.require(Role::Agent)?;
    let rows = state
        .db
        .call(|db| {
            Ok(db
                .query(
                    &format!(
                        "SELECT {CASE_COLUMNS} FROM cases ORDER BY created DESC, id DESC LIMIT 200"
                    ),
                    &[],
                )?
                .iter()
                .map(read_case)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(rows))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the index is open with guides, the database answers, the LLM (if any) is
/// loaded.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let guides = match state.kb.try_read() {
        Ok(kb) => Some(kb.retriever.titles().len()),
        // Re-indexing: still serving from the old index once it is done.
        Err(_) => None,
    };
    let db = state.db.version().ok();
    let ready = guides.is_some_and(|g| g > 0) && db.is_some();
    let body = serde_json::json!({
        "ready": ready,
        "guides": guides,
        "schema_version": db,
        "llm": state.llm.as_ref().map(|l| l.describe()),
        "mydata": state.mydata.is_some(),
        "voice": state.voice.as_ref().map(|v| v.config().model_path.display().to_string()),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
