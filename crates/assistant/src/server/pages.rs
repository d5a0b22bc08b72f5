//! The pages, compiled into the binary (no separate front-end build).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the resident chat.
pub async fn resident() -> Response {
    html(include_str!("pages/resident.html"))
}

/// `/apply`: MyData pre-filled applications.
pub async fn apply() -> Response {
    html(include_str!("pages/apply.html"))
}

/// `/console`: the agent console (the page asks for a login).
pub async fn console() -> Response {
    html(include_str!("pages/console.html"))
}

/// `/admin`.
pub async fn admin() -> Response {
    html(include_str!("pages/admin.html"))
}

/// `/login`.
pub async fn login() -> Response {
    html(include_str!("pages/login.html"))
}

/// Anything else.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "找不到這個頁面。", "code": "not_found"})),
    )
        .into_response()
}
