//! Liveness and readiness.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the index is open with guides, the database answers, the LLM (if any) is
/// loaded.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    // Re-indexing swaps the prepared sections in under the write lock: not ready for that
    // moment. The vector store is asked too: with Qdrant, an instance that reaches no node
    // cannot answer and should leave the balancer's rotation.
    let (guides, vectors) = match state.kb.try_read() {
        Ok(kb) => (
            Some(kb.retriever.titles().len()),
            kb.retriever.num_vectors().await.ok(),
        ),
        Err(_) => (None, None),
    };
    let db = state.db.version().ok();
    let ready = guides.is_some_and(|g| g > 0) && vectors.is_some_and(|v| v > 0) && db.is_some();
    let body = serde_json::json!({
        "ready": ready,
        "guides": guides,
        "vectors": vectors,
        "schema_version": db,
        "llm": state.llm.as_ref().map(|l| l.describe()),
        "mydata": state.mydata.is_some(),
        "mydata_platform": state.mydata.as_ref().map(|_| if state.mydata_sandbox { "sandbox" } else { "platform" }),
        "voice": state.voice.as_ref().map(|v| v.config().model_path.display().to_string()),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
