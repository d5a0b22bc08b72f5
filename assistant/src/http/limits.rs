//! Load limits: token buckets per session and per client address (429 + `Retry-After`), the cap
//! on requests answered at once (503 + `Retry-After`), and where the client address comes from.
//!
//! The address is the TCP peer. Behind a reverse proxy it is taken from `X-Forwarded-For` only
//! when the peer is one of `server.trusted_proxies`, and then it is the nearest hop that is not
//! a trusted proxy: a header sent by anyone else changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Session;
use super::{AppState, Bounded};

/// The client's address as the limits see it (put in the request extensions by
/// [`client_addr`]; absent for in-process requests that have no socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

/// The client address of a request from `peer` with the given `X-Forwarded-For` values.
pub fn resolve_client(peer: IpAddr, forwarded: &[&str], trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Hops are appended left to right; walk back from the proxy nearest to us.
    let hops: Vec<IpAddr> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|h| !trusted.contains(h))
        .copied()
        .unwrap_or(peer)
}

/// Middleware: records the [`ClientAddr`].
pub async fn client_addr(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = resolve_client(peer.ip(), &forwarded, &state.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(ip.to_string()));
    }
    next.run(req).await
}

/// Token buckets keyed by session or by client address.
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

/// A slot among the requests being answered, or 503 + Retry-After.
pub fn admit(state: &AppState) -> super::ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.inflight.clone().try_acquire_owned().map_err(|_| {
        state.metrics.shed.fetch_add(1, Ordering::Relaxed);
        super::ApiError::busy("overloaded", 2)
    })
}

/// The session's and the client address's rate limits, or 429 + Retry-After. A client that
/// drops its cookies gets a new session each time but keeps its address.
pub fn rate(state: &AppState, session: &Session) -> super::ApiResult<()> {
    let by_session = state.limiter.check(&session.key);
    let by_addr = session
        .addr
        .as_ref()
        .is_none_or(|a| state.addr_limiter.check(a));
    if by_session && by_addr {
        Ok(())
    } else {
        let mut e = super::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "訊息送出太頻繁，請稍候再試。",
        );
        e.retry_after = Some(if by_session {
            state.addr_limiter.retry_after()
        } else {
            state.limiter.retry_after()
        });
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

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = [proxy];
        // Anyone else's header is ignored.
        assert_eq!(resolve_client(peer, &["1.2.3.4"], &trusted), peer);
        // Behind the proxy: the hop it saw, not what the client claimed before it.
        assert_eq!(
            resolve_client(proxy, &["6.6.6.6, 198.51.100.7"], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(resolve_client(proxy, &[], &trusted), proxy);
        // Chained trusted proxies are skipped.
        assert_eq!(
            resolve_client(proxy, &["198.51.100.7", "10.0.0.5"], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
