//! Speech with the real whisper model (the asset `assistant setup` converts from the registry's
//! CTranslate2 weights): the converted file loads and transcribes a spoken report, call
//! sessions cope with silence, noise and telephone audio, and the WebSocket call stream gives
//! partial and final events and a case with the right category.
//!
//! Speech is synthesised by Debian's espeak-ng (`cmn-latn-pinyin`), from text written here.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use assistant::http::{self as server, Role};
use assistant::store::Db;
use e2e_tests::{espeak_pcm16, Client as Browser};
use serde_json::json;
use voice::{CallSession, Encoding, StreamConfig, StreamEvent, Transcriber, WhisperConfig};

/// Two sentences espeak renders well enough for whisper base to catch 路燈 (short or dense
/// sentences come out garbled: espeak's Mandarin is far from a person's).
const REPORT: &str = "我家門口的路燈壞了。公園的路燈一直閃爍。";

/// The report as 16 kHz samples (espeak's 22,050 Hz through the product's resampler).
fn report_16k(pad_ms: usize) -> Vec<f32> {
    let (rate, pcm) = espeak_pcm16(REPORT, pad_ms);
    voice::audio::resample(&pcm_to_f32(&pcm), rate, 16_000)
}

fn f32_to_pcm(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}

/// The installed whisper model (fails with the setup command when it is missing).
fn transcriber() -> Arc<Transcriber> {
    static T: OnceLock<Arc<Transcriber>> = OnceLock::new();
    T.get_or_init(|| {
        let cache = models::assets::AssetCache::new(models::assets::default_cache_root());
        let model = cache
            .require(&models::assets::WHISPER)
            .unwrap_or_else(|e| panic!("{e} — run `assistant setup` first (scripts/test does)"));
        Arc::new(Transcriber::load(WhisperConfig::new(model.path)).unwrap())
    })
    .clone()
}

fn pcm_to_f32(pcm: &[u8]) -> Vec<f32> {
    pcm.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect()
}

/// G.711 μ-law encoding of a 16-bit sample (what a telephone gateway sends).
fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = sample as i32;
    let sign: u8 = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(32_635) + BIAS;
    let mut exponent = 7u8;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = ((s >> (exponent + 3)) & 0x0f) as u8;
    !(sign | (exponent << 4) | mantissa)
}

#[test]
fn mulaw_test_encoder_round_trips_through_the_decoder() {
    for s in [-32_000i16, -1000, -8, 0, 8, 1000, 12_345, 32_000] {
        let back = voice::audio::mulaw_to_linear(mulaw(s)) as i32;
        assert!(
            (back - s as i32).abs() <= (s as i32).abs() / 16 + 8,
            "{s} → {back}"
        );
    }
}

#[test]
fn the_converted_model_transcribes_a_spoken_report_in_traditional_chinese() {
    let t = transcriber();
    let audio = report_16k(300);
    let out = t.transcribe(&audio).unwrap();
    assert!(out.text.contains("路燈"), "{out:?}");
    assert!(!voice::text::is_simplified(&out.text), "{out:?}");
    let last = out.segments.last().unwrap();
    assert!(out.segments[0].start_ms < 1000, "{out:?}");
    assert!(
        last.end_ms > 3000 && last.end_ms as f64 <= audio.len() as f64 / 16.0,
        "{out:?}"
    );
    // A truncated copy of the model is refused with the fix, not a crash.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.bin");
    let bytes = std::fs::read(&t.config().model_path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = Transcriber::load(WhisperConfig::new(&cut)).unwrap_err();
    assert!(err.to_string().contains("assistant setup --force"), "{err}");
}

fn finals(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Final { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn call_sessions_handle_telephone_audio_silence_noise_and_hang_ups() {
    let t = transcriber();
    // 8 kHz μ-law, as a telephone gateway sends it, in 20 ms frames.
    let audio = report_16k(500);
    let at8k: Vec<u8> = voice::audio::resample(&audio, 16_000, 8000)
        .iter()
        .map(|&s| mulaw((s * 32767.0) as i16))
        .collect();
    let mut s = CallSession::new(t.clone(), StreamConfig::new(Encoding::MuLaw, 8000));
    let mut events = Vec::new();
    for frame in at8k.chunks(160) {
        events.extend(s.push_bytes(frame, true).unwrap());
    }
    // A second of line silence closes the utterance.
    for _ in 0..60 {
        events.extend(s.push_bytes(&[0xff; 160], true).unwrap());
    }
    let f = finals(&events);
    assert!(
        !f.is_empty() && f.len() <= 2,
        "one final a sentence: {events:?}"
    );
    // Telephone bandwidth costs synthetic speech more than a person's (路燈 comes out as 爐燈
    // or 如燈): the lamp is still heard.
    assert!(f.concat().contains('燈'), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Partial { .. })),
        "partials while speaking: {events:?}"
    );

    // Silence only: no transcript, a notice that the line is quiet.
    let mut s = CallSession::new(t.clone(), StreamConfig::new(Encoding::Pcm16Le, 16_000));
    let silence = vec![0u8; 16_000 * 2];
    let mut events = Vec::new();
    for _ in 0..12 {
        events.extend(s.push_bytes(&silence, true).unwrap());
    }
    events.extend(s.finish().unwrap());
    assert!(finals(&events).is_empty(), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Notice { code, .. } if code == "silence")),
        "{events:?}"
    );

    // Steady noise: nothing is transcribed as speech.
    let mut seed = 11u32;
    let noise: Vec<u8> = (0..16_000 * 6)
        .flat_map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (((seed >> 16) as i16) / 6).to_le_bytes()
        })
        .collect();
    let mut s = CallSession::new(t.clone(), StreamConfig::new(Encoding::Pcm16Le, 16_000));
    let mut events = s.push_bytes(&noise, true).unwrap();
    events.extend(s.finish().unwrap());
    assert!(finals(&events).is_empty(), "{events:?}");

    // A hang-up in the middle of speaking: what was said so far is still transcribed.
    let mut s = CallSession::new(t, StreamConfig::new(Encoding::Pcm16Le, 16_000));
    let pcm = f32_to_pcm(&report_16k(300));
    let half = &pcm[..pcm.len() * 3 / 4 / 2 * 2];
    // Odd byte counts (half a sample) are carried to the next frame.
    let mut events = s.push_bytes(&half[..1001], false).unwrap();
    events.extend(s.push_bytes(&half[1001..], false).unwrap());
    events.extend(s.finish().unwrap());
    let f = finals(&events);
    assert!(!f.is_empty(), "{events:?}");
    assert!(f.concat().contains("路燈"), "{events:?}");
}

#[test]
fn a_call_streamed_over_the_websocket_gives_partials_finals_and_a_case_with_the_right_category() {
    let srv = crate::server::start_full(
        |s| s.api_keys = vec!["pbx-key-1".into()],
        None,
        None,
        Db::memory().unwrap(),
        Some(transcriber()),
    );
    server::auth::create_user(&srv.state.db, "agent01", "agent-password-1", Role::Agent).unwrap();

    // Residents may not stream calls; bad formats are refused before the upgrade.
    let resident = Browser::open(&srv.base);
    assert_eq!(resident.call_stream("", None).err().map(|e| e.0), Some(401));
    let mut agent = Browser::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let (status, body) = agent.call_stream("format=opus", None).err().unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("pcm16"), "{body}");
    assert_eq!(
        agent.call_stream("rate=96000", None).err().map(|e| e.0),
        Some(400)
    );

    // The report in real-time 20 ms frames of 16 kHz PCM.
    let pcm = f32_to_pcm(&report_16k(700));
    let mut call = agent.call_stream("format=pcm16&rate=16000", None).unwrap();
    call.play(&pcm, 32_000, 20, 1.0);
    call.end(Duration::from_secs(120));
    let kinds: Vec<&str> = call
        .events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"ready"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert!(!call.of("partial").is_empty(), "{kinds:?}");
    let finals = call.of("final");
    assert!(!finals.is_empty(), "{:?}", call.events);
    let said: String = finals.iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(said.contains("路燈"), "{finals:?}");
    let analysis = call.of("analysis");
    let last = analysis.last().expect("an analysis after the final");
    assert_eq!(last["case"]["category"], "路燈不亮或損壞", "{last}");
    assert_eq!(last["case"]["bureau"], "工務局", "{last}");
    assert!(
        !last["answer"]["citations"].as_array().unwrap().is_empty(),
        "{last}"
    );
    let end = call.of("end")[0].clone();
    assert_eq!(end["status"], "ended");
    let transcript = end["transcript"].as_str().unwrap().to_string();
    assert!(transcript.contains("路燈"));
    // The agent files the case from the call's transcript.
    let case = agent.post("/api/cases", &json!({"text": transcript}));
    assert_eq!(case.status, 201, "{}", case.body);
    assert_eq!(case.json()["category"], "路燈不亮或損壞");
    // The call is kept with its transcript.
    let calls = agent.get("/api/calls").json();
    assert_eq!(calls[0]["id"], end["call_id"]);
    assert_eq!(calls[0]["status"], "ended");

    // A PBX with an API key streams 8 kHz μ-law and drops the connection mid-sentence: the
    // part spoken before the drop is transcribed and kept.
    let pbx = Browser::new(&srv.base);
    assert_eq!(
        pbx.call_stream("format=mulaw", Some("wrong"))
            .err()
            .map(|e| e.0),
        Some(401)
    );
    let mut call = pbx
        .call_stream("format=mulaw&rate=8000", Some("pbx-key-1"))
        .unwrap();
    let at8k: Vec<u8> = voice::audio::resample(&report_16k(300), 16_000, 8000)
        .iter()
        .map(|&s| mulaw((s * 32767.0) as i16))
        .collect();
    call.play(&at8k[..at8k.len() * 3 / 4], 8000, 20, 4.0);
    // A garbled control message gets an error event, not a dropped call.
    call.send_text("hello");
    std::thread::sleep(Duration::from_millis(300));
    call.poll();
    assert!(
        call.of("error").iter().any(|e| e["code"] == "bad_message"),
        "{:?}",
        call.events
    );
    call.drop_connection();
    let mut kept = None;
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(100));
        let calls = agent.get("/api/calls").json();
        if let Some(c) = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == "dropped")
        {
            kept = Some(c.clone());
            break;
        }
    }
    let kept = kept.expect("the dropped call is saved");
    assert!(
        kept["transcript"].as_str().unwrap().contains('燈'),
        "{kept}"
    );
}

#[test]
fn an_asterisk_audiosocket_call_is_transcribed_and_kept_for_the_console() {
    use std::io::Write;
    let srv = crate::server::start_full(
        |_| {},
        None,
        None,
        Db::memory().unwrap(),
        Some(transcriber()),
    );
    server::auth::create_user(&srv.state.db, "agent01", "agent-password-1", Role::Agent).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let state = srv.state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            server::serve_audiosocket(state, l).await;
        });
    });

    // Asterisk's framing: kind, big-endian length, payload. UUID, then 20 ms of 8 kHz signed
    // linear audio a frame, then hang-up.
    let frame = |kind: u8, payload: &[u8]| -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let uuid: [u8; 16] = *b"\x12\x34asterisk-call!";
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(&frame(0x01, &uuid)).unwrap();
    let at8k = f32_to_pcm(&voice::audio::resample(&report_16k(500), 16_000, 8000));
    for chunk in at8k.chunks(320) {
        conn.write_all(&frame(0x10, chunk)).unwrap();
    }
    conn.write_all(&frame(0x00, &[])).unwrap();

    let mut agent = Browser::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let id = format!("call-{}", hex_lower(&uuid));
    let mut found = None;
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(100));
        let calls = agent.get("/api/calls").json();
        if let Some(c) = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id.as_str() && c["status"] == "ended")
        {
            found = Some(c.clone());
            break;
        }
    }
    let call = found.expect("the AudioSocket call is saved when it hangs up");
    assert_eq!(call["source"], "audiosocket");
    assert!(
        call["transcript"].as_str().unwrap().contains('燈'),
        "{call}"
    );
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
