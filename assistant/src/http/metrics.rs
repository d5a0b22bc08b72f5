//! Request ids, tracing spans, latency and the Prometheus metrics (`GET /metrics`), and the
//! security headers every response carries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;

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
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        self.render_load(&mut out, state);
        out
    }

    fn render_requests(&self, out: &mut String) {
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
    }

    fn render_latency(&self, out: &mut String) {
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
    }

    /// Gauges and counters of load: LLM queue, requests in flight, generation, shedding.
    fn render_load(&self, out: &mut String, state: &AppState) {
        let llm_used = state.settings.llm_queue.max(1) - state.llm_gate.available_permits();
        let inflight = state.settings.max_inflight.max(1) - state.inflight.available_permits();
        let tokens = self.tokens_generated.load(Ordering::Relaxed);
        let secs = self.generation_us.load(Ordering::Relaxed) as f64 / 1e6;
        let speed = if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        };
        let series: [(&str, &str, &str, String); 7] = [
            (
                "hotline_llm_queue_depth",
                "gauge",
                "LLM jobs admitted (running or waiting).",
                llm_used.to_string(),
            ),
            (
                "hotline_inflight_requests",
                "gauge",
                "Requests being answered.",
                inflight.to_string(),
            ),
            (
                "hotline_llm_tokens_total",
                "counter",
                "Tokens generated.",
                tokens.to_string(),
            ),
            (
                "hotline_llm_generation_seconds_total",
                "counter",
                "Time spent generating.",
                secs.to_string(),
            ),
            (
                "hotline_llm_tokens_per_second",
                "gauge",
                "Mean generation speed so far.",
                speed.to_string(),
            ),
            (
                "hotline_llm_busy_fallbacks_total",
                "counter",
                "Answers left retrieval-only because the LLM queue was full.",
                self.llm_busy_fallbacks.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hotline_shed_total",
                "counter",
                "Requests refused with 503 because too many were in flight.",
                self.shed.load(Ordering::Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, value) in series {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
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
