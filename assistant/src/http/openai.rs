//! An OpenAI-compatible `POST /v1/chat/completions` over the grounded pipeline, so existing
//! chat front-ends and SDKs can use the assistant. The reply is the checked answer (cited,
//! grounded, or the hand-off): when streaming, it is sent in chunks once checked, never the
//! model's unchecked text. Citations ride along in an extra `citations` field.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::chat::{answerer_for, record_generation};
use super::{limits, ApiError, ApiResult, AppState};
use crate::answer::AskContext;

pub const MODEL_ID: &str = "hotline-grounded";

#[derive(Deserialize)]
pub struct Message {
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        // Content parts: [{"type": "text", "text": "..."}].
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

pub(crate) fn authorised(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    if state.settings.api_keys.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if state.settings.api_keys.iter().any(|k| k == given) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "API 金鑰不正確。",
        ))
    }
}

/// `GET /v1/models`.
pub async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorised(&state, &headers)?;
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "city-1999"}],
    })))
}

/// `POST /v1/chat/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    super::Body(req): super::Body<CompletionRequest>,
) -> ApiResult<Response> {
    authorised(&state, &headers)?;
    let question = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .ok_or_else(|| ApiError::bad_request("messages 中沒有 user 訊息。"))?;
    let question = super::chat::message(&state, &question)?;
    let _permit = limits::admit(&state)?;
    let kb = state.kb.clone().read_owned().await;
    let (answerer, permit, _) = answerer_for(&state, kb.retriever.clone(), state.settings.chat_llm);
    let a = answerer
        .answer(&question, &AskContext::default(), &mut |_| {})
        .await
        .map_err(ApiError::internal)?;
    drop(permit);
    record_generation(&state, &a);
    let created = crate::store::now();
    let id = format!("chatcmpl-{}", hex::encode(rand::random::<[u8; 12]>()));
    let model = req.model.unwrap_or_else(|| MODEL_ID.to_string());
    let prompt_tokens = question.chars().count();
    let completion_tokens = a.answer.chars().count();
    if !req.stream {
        return Ok(Json(serde_json::json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": a.answer},
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "citations": a.citations,
            "handoff": a.handoff,
            "grounded": a.grounded,
            "alert": a.alert,
        }))
        .into_response());
    }
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        Event::default().data(
            serde_json::json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string(),
        )
    };
    let mut events = vec![chunk(serde_json::json!({"role": "assistant"}), None)];
    let chars: Vec<char> = a.answer.chars().collect();
    for piece in chars.chunks(16) {
        events.push(chunk(
            serde_json::json!({"content": piece.iter().collect::<String>()}),
            None,
        ));
    }
    events.push(chunk(serde_json::json!({}), Some("stop")));
    events.push(
        Event::default().data(
            serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "citations": a.citations})
            .to_string(),
        ),
    );
    events.push(Event::default().data("[DONE]"));
    let stream = tokio_stream::iter(events.into_iter().map(Ok::<_, Infallible>));
    Ok(Sse::new(stream).into_response())
}
