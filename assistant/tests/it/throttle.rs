//! Throttles a client cannot dodge, over real sockets: a client that drops its cookies meets
//! the per-address bucket; failed logins lock the account and the address across sessions
//! until an administrator lifts them; behind a trusted proxy `X-Forwarded-For` separates
//! residents, while the same header from anyone else changes nothing.

use std::time::Duration;

use assistant::http::{auth::create_user, Role};
use serde_json::json;

use crate::server::start;

/// One request from a client with no cookie jar (every request is a new session).
fn cookieless(
    base: &str,
    path: &str,
    body: serde_json::Value,
    forwarded: Option<&str>,
) -> (u16, Option<String>, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut r = agent
        .post(&format!("{base}{path}"))
        .set("Content-Type", "application/json");
    if let Some(f) = forwarded {
        r = r.set("X-Forwarded-For", f);
    }
    match r.send_string(&body.to_string()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (
            r.status(),
            r.header("retry-after").map(String::from),
            r.into_string().unwrap_or_default(),
        ),
        Err(e) => panic!("transport: {e}"),
    }
}

fn ask(base: &str, forwarded: Option<&str>) -> u16 {
    cookieless(
        base,
        "/api/ask",
        json!({"message": "敬老卡要去哪裡辦"}),
        forwarded,
    )
    .0
}

#[test]
fn a_client_that_drops_its_cookies_is_throttled_by_its_address() {
    let srv = start(
        |s| {
            s.rate_per_minute = 0.0;
            s.rate_burst = 3.0;
            s.address_rate_per_minute = 0.0;
            s.address_rate_burst = 6.0;
        },
        None,
        None,
    );
    let statuses: Vec<u16> = (0..9).map(|_| ask(&srv.base, None)).collect();
    // Every request is a fresh session (its own bucket of 3), but the address allows 6.
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429, 429, 429],
        "{statuses:?}"
    );
    let (status, retry, body) =
        cookieless(&srv.base, "/api/ask", json!({"message": "敬老卡"}), None);
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() > 0));
    assert!(body.contains("rate_limited"), "{body}");
}

#[test]
fn failed_logins_lock_the_account_and_address_across_sessions_until_lifted() {
    let srv = start(
        |s| {
            s.trusted_proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
            s.login_max_failures = 5;
            s.login_lock_minutes = 15;
        },
        None,
        None,
    );
    let db = srv.state.db.clone();
    create_user(&db, "agent01", "agent-password-1", Role::Agent).unwrap();
    create_user(&db, "admin01", "admin-password-1", Role::Admin).unwrap();
    let attacker = Some("203.0.113.50");
    let login = |user: &str, pw: &str, from: Option<&str>| {
        cookieless(
            &srv.base,
            "/api/login",
            json!({"username": user, "password": pw}),
            from,
        )
    };
    // Four wrong passwords get 401; the fifth locks the account and the address.
    for i in 0..4 {
        let (status, _, body) = login("agent01", &format!("wrong-{i}"), attacker);
        assert_eq!(status, 401, "{body}");
    }
    let (status, retry, body) = login("agent01", "wrong-4", attacker);
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("900"));
    assert!(body.contains("login_locked"), "{body}");
    // The right password, from a new session and another address, is refused too.
    let (status, retry, body) = login("agent01", "agent-password-1", Some("198.51.100.7"));
    assert_eq!(status, 429, "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() > 800);
    // The attacker's address is locked for every account.
    let (status, _, _) = login("admin01", "admin-password-1", attacker);
    assert_eq!(status, 429);

    // An administrator (from elsewhere) sees both locks in the audit trail and lifts them.
    let mut admin = e2e_tests::Client::open(&srv.base);
    let r = admin.login("admin01", "admin-password-1");
    assert_eq!(r.status, 200, "{}", r.body);
    let locks = admin.get("/api/admin/login-locks").json();
    let keys: Vec<&str> = locks
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"user:agent01"), "{keys:?}");
    assert!(keys.contains(&"addr:203.0.113.50"), "{keys:?}");
    let audit = admin.get("/api/admin/audit").body;
    assert!(audit.contains("login_locked"), "{audit}");
    assert!(!audit.contains("wrong-"), "passwords are never logged");
    let r = admin.post(
        "/api/admin/login-locks/lift",
        &json!({"key": "user:agent01"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = admin.post(
        "/api/admin/login-locks/lift",
        &json!({"key": "user:agent01"}),
    );
    assert_eq!(r.status, 404, "a lifted lock is gone");
    let (status, _, body) = login("agent01", "agent-password-1", Some("198.51.100.7"));
    assert_eq!(status, 200, "{body}");
    // The address stays locked until lifted as well.
    let (status, _, _) = login("agent01", "agent-password-1", attacker);
    assert_eq!(status, 429);
}

#[test]
fn forwarded_for_separates_residents_only_behind_a_trusted_proxy() {
    let tight = |s: &mut assistant::config::ServerSettings| {
        s.rate_per_minute = 0.0;
        s.rate_burst = 100.0;
        s.address_rate_per_minute = 0.0;
        s.address_rate_burst = 3.0;
    };
    // Behind our proxy (127.0.0.1 is trusted): two residents, two buckets.
    let proxied = start(
        |s| {
            tight(s);
            s.trusted_proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        },
        None,
        None,
    );
    let a: Vec<u16> = (0..4)
        .map(|_| ask(&proxied.base, Some("198.51.100.1")))
        .collect();
    assert_eq!(a, [200, 200, 200, 429], "{a:?}");
    assert_eq!(ask(&proxied.base, Some("198.51.100.2")), 200);
    // A client claiming an address before the proxy's hop gains nothing: the proxy's hop counts.
    assert_eq!(ask(&proxied.base, Some("10.9.9.9, 198.51.100.1")), 429);

    // No trusted proxy: the header is the client's own claim and is ignored.
    let direct = start(tight, None, None);
    let spoofed: Vec<u16> = (0..4)
        .map(|i| ask(&direct.base, Some(&format!("198.51.100.{}", 10 + i))))
        .collect();
    assert_eq!(spoofed, [200, 200, 200, 429], "{spoofed:?}");
}
