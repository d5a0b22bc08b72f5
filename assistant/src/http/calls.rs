//! Live calls: audio in over a WebSocket (or Asterisk's AudioSocket over TCP), transcript events
//! out, and after each finished utterance the agent's assist (suggested answer with sources,
//! case fields, bureau) on the whole call so far.
//!
//! ## WebSocket framing (`GET /api/calls/stream`)
//! Query: `format` = `pcm16` (signed 16-bit little-endian, default) | `mulaw` | `alaw`; `rate` =
//! sample rate in Hz (default 16000 for PCM, 8000 for G.711; 8000–48000). Authentication: an
//! agent's session cookie, or `Authorization: Bearer KEY` with a key from `server.api_keys`
//! (a PBX or media gateway).
//! - client → server: binary messages of raw audio (any size; 20–100 ms is typical), and the
//!   text message `{"type":"end"}` when the call ends (closing the socket also ends it).
//! - server → client, text messages of JSON:
//!   `{"type":"ready","call_id","format","rate"}`,
//!   `{"type":"partial","utterance","start_ms","text"}` (the utterance so far),
//!   `{"type":"final","utterance","start_ms","end_ms","text"}`,
//!   `{"type":"analysis","utterance","transcript","answer","case"}` (as `POST /api/assist`),
//!   `{"type":"notice","code","message"}` (silence, clipping, unclear audio),
//!   `{"type":"error","code","message"}`,
//!   `{"type":"end","call_id","transcript","status"}`.
//!
//! Every call's transcript is saved (table `calls`) as utterances finish, so a dropped
//! connection keeps what was said; calls are purged with conversations.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use voice::{CallSession, Encoding, StreamConfig, StreamEvent};

use super::auth::{Role, Session};
use super::{ApiError, ApiResult, AppState};

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    format: Option<String>,
    rate: Option<u32>,
}

/// The encoding and rate of a stream, checked.
pub fn stream_config(format: Option<&str>, rate: Option<u32>) -> ApiResult<StreamConfig> {
    let encoding = match format {
        None => Encoding::Pcm16Le,
        Some(f) => Encoding::parse(f).ok_or_else(|| {
            ApiError::bad_request(format!(
                "不支援的音訊格式「{f}」；請用 pcm16、mulaw 或 alaw。"
            ))
        })?,
    };
    let rate = rate.unwrap_or(match encoding {
        Encoding::Pcm16Le => voice::SAMPLE_RATE,
        _ => 8000,
    });
    if !(8000..=48_000).contains(&rate) {
        return Err(ApiError::bad_request(format!(
            "取樣率 {rate} Hz 不在 8000–48000 Hz 範圍內。"
        )));
    }
    Ok(StreamConfig::new(encoding, rate))
}

/// A new call's id.
fn call_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut b);
    format!("call-{}", hex::encode(b))
}

/// `GET /api/calls/stream` (WebSocket upgrade).
pub async fn stream(
    State(state): State<Arc<AppState>>,
    s: Session,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let by_key =
        !state.settings.api_keys.is_empty() && super::openai::authorised(&state, &headers).is_ok();
    if !by_key {
        s.require(Role::Agent)?;
    }
    let transcriber = state.voice.clone().ok_or_else(voice_off)?;
    let config = stream_config(q.format.as_deref(), q.rate)?;
    let permit = state.calls.clone().try_acquire_owned().map_err(|_| {
        let mut e = ApiError::busy("too_many_calls", 5);
        e.message = "同時轉寫的通話已達上限，請稍後再試。".into();
        e
    })?;
    let taken_by = if by_key { "pbx".to_string() } else { s.actor() };
    Ok(ws
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            run_socket(state, socket, transcriber, config, taken_by).await;
            drop(permit);
        }))
}

fn voice_off() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "voice_off",
        "語音辨識未啟用（請執行 `assistant setup` 安裝語音模型，並確認 voice.enabled）。",
    )
}

/// What the audio worker is told.
enum Input {
    Audio(Vec<u8>),
    End,
}

/// Runs a call's `CallSession` on its own thread: audio in through `rx`, events out through
/// `tx`. Audio that queued up while whisper was busy is taken together, and no partial is
/// transcribed while more is waiting, so a slow machine skips partials instead of lagging.
fn spawn_worker(
    transcriber: Arc<voice::Transcriber>,
    config: StreamConfig,
    tx: mpsc::UnboundedSender<Value>,
) -> std_mpsc::Sender<Input> {
    let (in_tx, in_rx) = std_mpsc::channel::<Input>();
    std::thread::Builder::new()
        .name("call-audio".into())
        .spawn(move || {
            let mut session = CallSession::new(transcriber, config);
            let send = |events: Vec<StreamEvent>| {
                for e in events {
                    let _ = tx.send(serde_json::to_value(e).unwrap_or_default());
                }
            };
            let mut ended = false;
            while !ended {
                let Ok(first) = in_rx.recv() else { break };
                let mut bytes = Vec::new();
                let take = |i: Input, bytes: &mut Vec<u8>| match i {
                    Input::Audio(b) => {
                        bytes.extend_from_slice(&b);
                        false
                    }
                    Input::End => true,
                };
                ended = take(first, &mut bytes);
                while !ended {
                    match in_rx.try_recv() {
                        Ok(i) => ended = take(i, &mut bytes),
                        Err(_) => break,
                    }
                }
                // A partial only when nothing else is waiting.
                let idle = !ended && matches!(in_rx.try_recv(), Err(std_mpsc::TryRecvError::Empty));
                match session.push_bytes(&bytes, idle) {
                    Ok(events) => send(events),
                    Err(e) => {
                        tracing::error!(error = %e, "transcription failed");
                        let _ = tx.send(json!({"type": "error", "code": "asr_failed", "message": "語音辨識發生錯誤，已保留先前的逐字稿。"}));
                    }
                }
            }
            // Hang-up or dropped connection: the utterance in progress still counts.
            match session.finish() {
                Ok(events) => send(events),
                Err(e) => tracing::error!(error = %e, "transcription failed at the end of a call"),
            }
            let _ = tx.send(json!({"type": "worker_done"}));
        })
        .expect("spawning the call audio thread");
    in_tx
}

/// Saves the call's transcript (insert or update).
async fn save_call(
    state: &AppState,
    id: &str,
    status: &str,
    source: &str,
    transcript: &str,
    taken_by: &str,
) {
    let now = crate::store::now();
    let (db, id, status, source, transcript, taken_by) = (
        state.db.clone(),
        id.to_string(),
        status.to_string(),
        source.to_string(),
        transcript.to_string(),
        taken_by.to_string(),
    );
    let r = db
        .call(move |db| db.save_call(&id, now, &status, &source, &transcript, &taken_by))
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "saving a call transcript failed");
    }
}

/// The call's events after each final: the transcript so far and the assist on it.
async fn analysis(state: &AppState, utterance: u64, transcript: &str) -> Value {
    match super::cases::analyse_call(state, transcript.to_string()).await {
        Ok(mut v) => {
            v["type"] = json!("analysis");
            v["utterance"] = json!(utterance);
            v["transcript"] = json!(transcript);
            v
        }
        Err(e) => json!({"type": "error", "code": e.code, "message": e.message}),
    }
}

/// Drives one call over a WebSocket.
async fn run_socket(
    state: Arc<AppState>,
    mut socket: WebSocket,
    transcriber: Arc<voice::Transcriber>,
    config: StreamConfig,
    taken_by: String,
) {
    let id = call_id();
    let bytes_per_sec = (config.sample_rate as usize * config.encoding.bytes_per_sample()) as u64;
    let max_bytes = state.voice_settings.max_call_minutes * 60 * bytes_per_sec;
    let ready = json!({
        "type": "ready",
        "call_id": id,
        "format": format!("{:?}", config.encoding).to_lowercase(),
        "rate": config.sample_rate,
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let audio = spawn_worker(transcriber, config, tx);
    if socket
        .send(Message::Text(ready.to_string().into()))
        .await
        .is_err()
    {
        let _ = audio.send(Input::End);
        return;
    }
    tracing::info!(call = %id, "call stream started");
    let mut transcript = String::new();
    let mut received = 0u64;
    let mut client_gone = false;
    let mut ending = false;
    let mut status = "ended";
    loop {
        tokio::select! {
            msg = socket.recv(), if !client_gone && !ending => match msg {
                Some(Ok(Message::Binary(b))) => {
                    received += b.len() as u64;
                    if received > max_bytes {
                        let _ = socket.send(Message::Text(json!({"type": "notice", "code": "call_too_long", "message": format!("通話超過 {} 分鐘，轉寫已停止。", state.voice_settings.max_call_minutes)}).to_string().into())).await;
                        ending = true;
                        let _ = audio.send(Input::End);
                    } else {
                        let _ = audio.send(Input::Audio(b.to_vec()));
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "end" {
                        ending = true;
                        let _ = audio.send(Input::End);
                    } else {
                        let _ = socket.send(Message::Text(json!({"type": "error", "code": "bad_message", "message": "無法辨識的控制訊息；音訊請以二進位訊息傳送，結束請送 {\"type\":\"end\"}。"}).to_string().into())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Hang-up or a dropped connection: finish what was said.
                    client_gone = true;
                    status = "dropped";
                    let _ = audio.send(Input::End);
                }
                Some(Ok(_)) => {}
            },
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if ev["type"] == "worker_done" {
                    break;
                }
                if !client_gone {
                    let _ = socket.send(Message::Text(ev.to_string().into())).await;
                }
                if ev["type"] == "final" {
                    transcript.push_str(ev["text"].as_str().unwrap_or_default());
                    transcript.push('\n');
                    save_call(&state, &id, "live", "websocket", &transcript, &taken_by).await;
                    if !client_gone {
                        let a = analysis(&state, ev["utterance"].as_u64().unwrap_or(0), &transcript).await;
                        let _ = socket.send(Message::Text(a.to_string().into())).await;
                    }
                }
            }
        }
    }
    save_call(&state, &id, status, "websocket", &transcript, &taken_by).await;
    tracing::info!(call = %id, status, "call stream ended");
    if !client_gone {
        let end = json!({"type": "end", "call_id": id, "transcript": transcript, "status": status});
        let _ = socket.send(Message::Text(end.to_string().into())).await;
        let _ = socket.send(Message::Close(None)).await;
    }
}

/// `GET /api/calls`: the latest calls with their transcripts.
pub async fn list(State(state): State<Arc<AppState>>, s: Session) -> ApiResult<axum::Json<Value>> {
    s.require(Role::Agent)?;
    let calls = state
        .db
        .call(|db| db.recent_calls(50))
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!(calls)))
}

/// Asterisk AudioSocket (`AudioSocket(uuid,host:port)` in the dialplan): frames of a type byte,
/// a big-endian u16 length and the payload; 0x01 the call's UUID, 0x10 audio (signed 16-bit
/// little-endian, 8 kHz mono), 0x00 hang-up, 0xff an error. Each call is transcribed like a
/// WebSocket stream and saved in `calls` (source `audiosocket`) for the console.
pub async fn serve_audiosocket(state: Arc<AppState>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = audiosocket_call(state, conn).await {
                tracing::warn!(error = %e, "AudioSocket call ended with an error");
            }
        });
    }
}

async fn audiosocket_call(
    state: Arc<AppState>,
    mut conn: tokio::net::TcpStream,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let Some(transcriber) = state.voice.clone() else {
        return Ok(());
    };
    let Ok(_permit) = state.calls.clone().try_acquire_owned() else {
        tracing::warn!("AudioSocket call refused: too many calls");
        return Ok(());
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let audio = spawn_worker(transcriber, StreamConfig::new(Encoding::Pcm16Le, 8000), tx);
    let mut id = call_id();
    let mut transcript = String::new();
    let mut status = "ended";
    let mut reading = true;
    let mut header = [0u8; 3];
    loop {
        tokio::select! {
            r = conn.read_exact(&mut header), if reading => {
                if r.is_err() {
                    status = "dropped";
                    reading = false;
                    let _ = audio.send(Input::End);
                    continue;
                }
                let len = u16::from_be_bytes([header[1], header[2]]) as usize;
                let mut payload = vec![0u8; len];
                if conn.read_exact(&mut payload).await.is_err() {
                    status = "dropped";
                    reading = false;
                    let _ = audio.send(Input::End);
                    continue;
                }
                match header[0] {
                    0x01 if len == 16 => id = format!("call-{}", hex::encode(&payload)),
                    0x10 => { let _ = audio.send(Input::Audio(payload)); }
                    0x00 => { reading = false; let _ = audio.send(Input::End); }
                    0xff => { status = "dropped"; reading = false; let _ = audio.send(Input::End); }
                    _ => {}
                }
            }
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if ev["type"] == "worker_done" {
                    break;
                }
                if ev["type"] == "final" {
                    transcript.push_str(ev["text"].as_str().unwrap_or_default());
                    transcript.push('\n');
                    save_call(&state, &id, "live", "audiosocket", &transcript, "pbx").await;
                }
            }
        }
    }
    save_call(&state, &id, status, "audiosocket", &transcript, "pbx").await;
    Ok(())
}
