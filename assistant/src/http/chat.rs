//! Residents' chat (streaming) and single questions, the guides behind citations, and the
//! hand-off to a person (with the agents' view of waiting conversations).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::auth::{Role, Session};
use super::{limits, ApiError, ApiResult, AppState};
use crate::answer::chat::{Chat, Conversation};
use crate::answer::{Answer, AnswerEvent, Answerer, AskContext};

/// The answer as pages and API clients see it: the answer without its internals
/// (confidence, timings, the LLM's attempt).
pub fn answer_view(a: &Answer) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for internal in ["confidence", "timings", "llm"] {
            m.remove(internal);
        }
    }
    v
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

#[derive(Deserialize)]
pub struct ChatRequest {
    message: String,
    #[serde(default)]
    conversation_id: Option<String>,
}

#[derive(Serialize)]
struct Final<'a> {
    #[serde(flatten)]
    answer: serde_json::Value,
    follow_ups: Vec<String>,
    /// 「您可能可以申請」: benefits for a resident who described their situation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    benefits: Vec<crate::eligibility::Offered>,
    /// A report of a problem already reported and open: 「已有民眾通報，處理中」.
    #[serde(skip_serializing_if = "Option::is_none")]
    already_reported: Option<&'static str>,
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
        let (key, lookup) = (s.key.clone(), id.clone());
        let row = state
            .db
            .call(move |db| db.conversation_of(&lookup, &key))
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
    state.db.save_conversation(id, session, &json)
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
    limits::rate(&state, &s)?;
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
    (state.answerer(retriever, llm), permit, status)
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

/// The benefits to offer for what a resident (or caller) said about themself.
pub(super) fn offered(state: &AppState, text: &str) -> Vec<crate::eligibility::Offered> {
    let on = crate::eligibility::today();
    let (facts, heard) = crate::eligibility::facts_from_text(text, &state.extractor, &on);
    crate::eligibility::offer(
        &state.benefits,
        state.extractor.forms(),
        &facts,
        &heard,
        text,
        &on,
    )
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
                AnswerEvent::Draft(a) => tx.send(event("draft", &answer_view(a))),
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
    super::analytics::note_gap(state, msg, &a);
    {
        let (st, session, id, conv) = (
            state.clone(),
            session.to_string(),
            conv_id.to_string(),
            conv,
        );
        tokio::task::spawn_blocking(move || save_conversation(&st, &session, &id, &conv)).await??;
    }
    // No benefit list under an emergency or a refusal.
    let benefits = if a.alert.is_none() && a.kind != crate::answer::AnswerKind::Refused {
        let (st, text) = (state.clone(), msg.to_string());
        tokio::task::spawn_blocking(move || offered(&st, &text)).await?
    } else {
        Vec::new()
    };
    // A resident reporting a problem someone already reported hears that it is being handled.
    let already_reported = if a.alert.is_none() && a.kind != crate::answer::AnswerKind::Refused {
        let (ex, text) = (state.extractor.clone(), msg.to_string());
        let view = tokio::task::spawn_blocking(move || {
            ex.extract("case_report", &text)
                .map(|x| crate::intake::case_view(&ex, &x, &text))
        })
        .await??;
        let known = super::cases::known_cases(state, msg, &view)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        (!known.is_empty()).then_some("已有民眾通報相同的問題，市府正在處理中，感謝您的通報。")
    } else {
        None
    };
    let fin = Final {
        already_reported,
        benefits,
        follow_ups: crate::answer::chat::follow_ups(&kb.retriever, &a),
        answer: answer_view(&a),
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
    limits::rate(&state, &s)?;
    let _permit = limits::admit(&state)?;
    let kb = state.kb.clone().read_owned().await;
    let (answerer, permit, _) = answerer_for(&state, kb.retriever.clone(), state.settings.chat_llm);
    let a = answerer
        .answer(&msg, &AskContext::default(), &mut |_| {})
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    record_generation(&state, &a);
    super::analytics::note_gap(&state, &msg, &a);
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
    let found = state
        .db
        .call(move |db| db.request_handoff(&id, &key))
        .await?;
    if !found {
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
    let rows = state.db.call(|db| db.handoffs(100)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|h| {
                let conv: Conversation = serde_json::from_str(&h.state).unwrap_or_default();
                serde_json::json!({
                    "conversation_id": h.id,
                    "time": h.updated,
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
    let json = state.db.call(move |db| db.conversation(&lookup)).await?;
    let Some(json) = json else {
        return Err(ApiError::not_found("找不到這段對話。"));
    };
    state.db.audit(&s.actor(), "conversation.view", &id)?;
    let conv: Conversation = serde_json::from_str(&json).unwrap_or_default();
    Ok(Json(
        serde_json::json!({"id": id, "exchanges": conv.exchanges}),
    ))
}
