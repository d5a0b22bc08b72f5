//! Per-session rate limits, request ids and tracing, and the Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{AppState, Bounded};

/// Token buckets keyed by session (or by `login:` + session).
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<Bounded<(f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_sec: per_minute.max(0.0) / 60.0,
            burst: burst.max(1.0),
            buckets: Mutex::new(Bounded::new(100_000)),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn check(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, last)) = b.get_mut(key) {
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * self.per_sec).min(self.burst);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        } else {
            b.insert(key.to_string(), (self.burst - 1.0, now));
            true
        }
    }

    /// Seconds until `key` has a token again.
    pub fn retry_after(&self) -> u64 {
        if self.per_sec <= 0.0 {
            60
        } else {
            (1.0 / self.per_sec).ceil() as u64
        }
    }
}

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counters and histograms, rendered in the Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub tokens_generated: AtomicU64,
    /// Microseconds spent generating.
    pub generation_us: AtomicU64,
    pub llm_busy_fallbacks: AtomicU64,
    pub shed: AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = l.entry(route.to_string()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The text exposition.
    pub fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        out.push_str("# HELP hotline_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE hotline_http_requests_total counter\n");
        for ((m, r, s), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "hotline_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP hotline_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE hotline_http_request_duration_seconds histogram\n");
        for (r, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (b, c) in BUCKETS.iter().zip(&h.counts) {
                out.push_str(&format!(
                    "hotline_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {c}\n"
                ));
            }
            out.push_str(&format!(
                "hotline_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}\n\
                 hotline_http_request_duration_seconds_sum{{route=\"{r}\"}} {}\n\
                 hotline_http_request_duration_seconds_count{{route=\"{r}\"}} {}\n",
                h.count, h.sum, h.count
            ));
        }
        let llm_used = state.settings.llm_queue.max(1) - state.llm_gate.available_permits();
        let inflight = state.settings.max_inflight.max(1) - state.inflight.available_permits();
        let tokens = self.tokens_generated.load(Ordering::Relaxed);
        let secs = self.generation_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!(
            "# HELP hotline_llm_queue_depth LLM jobs admitted (running or waiting).\n\
             # TYPE hotline_llm_queue_depth gauge\nhotline_llm_queue_depth {llm_used}\n\
             # HELP hotline_inflight_requests Requests being answered.\n\
             # TYPE hotline_inflight_requests gauge\nhotline_inflight_requests {inflight}\n\
             # HELP hotline_llm_tokens_total Tokens generated.\n\
             # TYPE hotline_llm_tokens_total counter\nhotline_llm_tokens_total {tokens}\n\
             # HELP hotline_llm_generation_seconds_total Time spent generating.\n\
             # TYPE hotline_llm_generation_seconds_total counter\n\
             hotline_llm_generation_seconds_total {secs}\n\
             # HELP hotline_llm_tokens_per_second Mean generation speed so far.\n\
             # TYPE hotline_llm_tokens_per_second gauge\nhotline_llm_tokens_per_second {}\n\
             # HELP hotline_llm_busy_fallbacks_total Answers left retrieval-only because the LLM queue was full.\n\
             # TYPE hotline_llm_busy_fallbacks_total counter\nhotline_llm_busy_fallbacks_total {}\n\
             # HELP hotline_shed_total Requests refused with 503 because too many were in flight.\n\
             # TYPE hotline_shed_total counter\nhotline_shed_total {}\n",
            if secs > 0.0 { tokens as f64 / secs } else { 0.0 },
            self.llm_busy_fallbacks.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
        ));
        out
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Request id (taken from `X-Request-Id` when a proxy set one), a tracing span with the
/// method, route and status (never bodies or query strings), latency metrics, and the
/// security headers every response carries.
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| format!("{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state.metrics.observe(&method, &route, status, secs);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms = secs * 1e3, "request failed");
        } else {
            tracing::debug!(status, ms = secs * 1e3, "request done");
        }
    });
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' \
             'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(&state),
    )
        .into_response()
}

/// A slot among the requests being answered, or 503 + Retry-After.
pub fn admit(state: &AppState) -> super::ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.inflight.clone().try_acquire_owned().map_err(|_| {
        state.metrics.shed.fetch_add(1, Ordering::Relaxed);
        super::ApiError::busy("overloaded", 2)
    })
}

/// The session's rate limit, or 429 + Retry-After.
pub fn rate(state: &AppState, key: &str) -> super::ApiResult<()> {
    if state.limiter.check(key) {
        Ok(())
    } else {
        let mut e = super::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "訊息送出太頻繁，請稍候再試。",
        );
        e.retry_after = Some(state.limiter.retry_after());
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_refuse() {
        let l = RateLimiter::new(0.0, 3.0);
        assert!(l.check("a") && l.check("a") && l.check("a"));
        assert!(!l.check("a"));
        assert!(l.check("b"), "buckets are per key");
    }
}
