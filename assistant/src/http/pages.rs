//! The pages (`assistant/static/`), compiled into the binary (no separate front-end build).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

fn html(body: &'static str) -> Response {
    asset("text/html; charset=utf-8", body)
}

/// `/`: the resident chat.
pub async fn resident() -> Response {
    html(include_str!("../../static/resident.html"))
}

/// `/apply`: MyData pre-filled applications.
pub async fn apply() -> Response {
    html(include_str!("../../static/apply.html"))
}

/// `/console`: the agent console (the page asks for a login).
pub async fn console() -> Response {
    html(include_str!("../../static/console.html"))
}

/// `/admin`.
pub async fn admin() -> Response {
    html(include_str!("../../static/admin.html"))
}

/// `/analytics`.
pub async fn analytics() -> Response {
    html(include_str!("../../static/analytics.html"))
}

/// `/login`.
pub async fn login() -> Response {
    html(include_str!("../../static/login.html"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/static/common.js`: the API client, DOM helpers and guide dialog every page shares.
pub async fn common_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/common.js"),
    )
}

/// `/static/common.css`: the styles every page shares.
pub async fn common_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/common.css"),
    )
}

/// Anything else.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "找不到這個頁面。", "code": "not_found"})),
    )
        .into_response()
}
