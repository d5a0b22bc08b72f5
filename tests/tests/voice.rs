//! Spoken 1999 reports through the real binary's call stream: espeak-ng (Debian,
//! `cmn-latn-pinyin`) speaks reports written here, the audio goes over the WebSocket as a PBX
//! would send it (8 kHz μ-law would lose more of the synthetic voice; 22,050 Hz PCM as espeak
//! writes it), and the intake fields that come out are scored against what was said.
//!
//! espeak's Mandarin is far harder to recognise than a person (whisper base reaches 9% CER on
//! human recordings, see `eval asr`), so this is a score with a floor, not an exact match.

use std::time::Duration;

use e2e_tests::{espeak_pcm16, Client, Server};

/// (what the caller says, the category it must be filed under, the bureau).
const REPORTS: &[(&str, &str, &str)] = &[
    (
        "我家門口的路燈壞了。公園的路燈一直閃爍。",
        "路燈不亮或損壞",
        "工務局",
    ),
    (
        "馬路上有一個大坑洞。機車騎過去很危險。",
        "市區道路坑洞處理",
        "工務局",
    ),
    ("路邊有一棵大樹倒了。擋住了馬路。", "路樹處理", "工務局"),
    (
        "隔壁的卡拉OK很吵。每天晚上都唱到半夜。",
        "場所與設施噪音舉發",
        "環境保護局",
    ),
    ("紅綠燈壞掉了。號誌一直不會變。", "交通號誌異常", "交通局"),
];

#[test]
fn spoken_reports_streamed_to_the_server_come_out_as_cases() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    srv.add_user("agent01", "agent-password-1", "agent");
    let mut agent = Client::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let ready = agent.get("/readyz").json();
    assert!(
        ready["voice"].is_string(),
        "the server loaded whisper: {ready}"
    );

    let (mut category_hits, mut bureau_hits, mut transcribed) = (0, 0, 0);
    for (text, category, bureau) in REPORTS {
        let (rate, pcm) = espeak_pcm16(text, 600);
        let mut call = agent
            .call_stream(&format!("format=pcm16&rate={rate}"), None)
            .unwrap();
        // Twice real time: partials are skipped when whisper is behind, finals never are.
        call.play(&pcm, rate as usize * 2, 40, 2.0);
        call.end(Duration::from_secs(180));
        let end = call.of("end")[0].clone();
        let said = end["transcript"].as_str().unwrap_or_default().to_string();
        let got = call
            .of("analysis")
            .last()
            .map(|a| (a["case"]["category"].clone(), a["case"]["bureau"].clone()));
        if !said.trim().is_empty() {
            transcribed += 1;
        }
        let (c, b) = got.unwrap_or_default();
        category_hits += usize::from(c == *category);
        bureau_hits += usize::from(b == *bureau);
        println!("{text} → {} → {c} / {b}", said.replace('\n', " "));
    }
    let n = REPORTS.len();
    println!(
        "spoken reports: {transcribed}/{n} transcribed, category {category_hits}/{n}, bureau {bureau_hits}/{n}"
    );
    assert!(transcribed >= n - 1, "{transcribed}/{n} transcribed");
    assert!(category_hits >= 3, "category {category_hits}/{n}");
    assert!(bureau_hits >= category_hits, "bureau follows category");
}
