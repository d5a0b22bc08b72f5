//! Load: N concurrent chat clients against a running server for a fixed time, each behaving
//! like the resident page (session, CSRF token, `POST /api/chat` read to the end of the
//! stream, waiting `Retry-After` when told to). Reports throughput, latency to the first
//! answer event and to the end of the stream (p50/p99), and every status seen; the only
//! acceptable errors are 503s that carry `Retry-After`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use eval::metrics::percentile;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The server (`http://127.0.0.1:8080`).
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
}

const QUESTIONS: &[&str] = &[
    "我媽70歲要怎麼辦敬老卡？",
    "育兒津貼怎麼申請？",
    "路燈不亮要怎麼報修？",
    "低收入戶要準備什麼文件？",
    "身心障礙證明要去哪裡辦？",
    "垃圾車幾點來？大型家具怎麼丟？",
    "樓下很吵可以檢舉嗎？",
    "重陽敬老禮金什麼時候發？",
    "社會住宅怎麼申請？",
    "學雜費減免需要什麼資格？",
];

struct Reply {
    status: u16,
    retry_after: Option<u64>,
    cookie: Option<String>,
    body: String,
    first_event: Option<Duration>,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
async fn request(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Reply> {
    let started = Instant::now();
    let mut s = TcpStream::connect(host).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut first_event = None;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if first_event.is_none() && raw.windows(12).any(|w| w == b"event: draft") {
            first_event = Some(started.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut retry_after = None;
    let mut cookie = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "retry-after" => retry_after = v.trim().parse().ok(),
                "set-cookie" => cookie = v.trim().split(';').next().map(String::from),
                _ => {}
            }
        }
    }
    Ok(Reply {
        status,
        retry_after,
        cookie,
        body: body.to_string(),
        first_event,
    })
}

#[derive(Default)]
struct Tally {
    ok_total: Vec<f64>,
    ok_first: Vec<f64>,
    statuses: BTreeMap<String, u64>,
    shed_without_retry_after: u64,
    incomplete_streams: u64,
}

async fn client(host: String, n: usize, deadline: Instant, tally: Arc<Mutex<Tally>>) {
    let mut session: Option<(String, String)> = None;
    let mut i = n;
    while Instant::now() < deadline {
        if session.is_none() {
            match request(&host, "GET", "/api/session", &[], None).await {
                Ok(r) if r.status == 200 => {
                    let csrf = serde_json::from_str::<Value>(&r.body)
                        .ok()
                        .and_then(|v| v["csrf"].as_str().map(String::from));
                    if let (Some(c), Some(t)) = (r.cookie, csrf) {
                        session = Some((c, t));
                    }
                }
                Ok(r) => {
                    *tally
                        .lock()
                        .await
                        .statuses
                        .entry(format!("session {}", r.status))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_secs(r.retry_after.unwrap_or(1))).await;
                    continue;
                }
                Err(e) => {
                    *tally
                        .lock()
                        .await
                        .statuses
                        .entry(format!("io {}", e.kind()))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let Some((cookie, csrf)) = session.clone() else {
            continue;
        };
        let body = json!({"message": QUESTIONS[i % QUESTIONS.len()]}).to_string();
        i += 1;
        let started = Instant::now();
        let r = request(
            &host,
            "POST",
            "/api/chat",
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            Some(&body),
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        let mut t = tally.lock().await;
        match r {
            Ok(r) => {
                *t.statuses.entry(r.status.to_string()).or_default() += 1;
                match r.status {
                    200 if r.body.contains("event: final") => {
                        t.ok_total.push(secs);
                        if let Some(f) = r.first_event {
                            t.ok_first.push(f.as_secs_f64());
                        }
                    }
                    200 => t.incomplete_streams += 1,
                    503 => {
                        if r.retry_after.is_none() {
                            t.shed_without_retry_after += 1;
                        }
                        drop(t);
                        let wait = r.retry_after.unwrap_or(1).min(5);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    _ => {}
                }
            }
            Err(e) => {
                *t.statuses.entry(format!("io {}", e.kind())).or_default() += 1;
            }
        }
    }
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<Value> {
    let host = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    anyhow::ensure!(
        !host.contains('/') && !args.url.starts_with("https://"),
        "--url must be http://HOST:PORT"
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| tokio::spawn(client(host.clone(), n, deadline, tally.clone())))
        .collect();
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let t = tally.lock().await;
    let ok = t.ok_total.len() as u64;
    let errors_other: u64 = t
        .statuses
        .iter()
        .filter(|(k, _)| k.as_str() != "200" && k.as_str() != "503")
        .map(|(_, n)| n)
        .sum();
    let shed = t.statuses.get("503").copied().unwrap_or(0);
    Ok(json!({
        "clients": args.clients,
        "seconds": elapsed,
        "answers": ok,
        "throughput_per_s": ok as f64 / elapsed,
        "total_p50_ms": percentile(&t.ok_total, 50.0) * 1e3,
        "total_p99_ms": percentile(&t.ok_total, 99.0) * 1e3,
        "first_event_p50_ms": percentile(&t.ok_first, 50.0) * 1e3,
        "first_event_p99_ms": percentile(&t.ok_first, 99.0) * 1e3,
        "statuses": t.statuses,
        "shed_503": shed,
        "shed_without_retry_after": t.shed_without_retry_after,
        "incomplete_streams": t.incomplete_streams,
        "errors_other_than_503": errors_other + t.incomplete_streams + t.shed_without_retry_after,
    }))
}
