//! `assistant ask` end to end with the real default models (installed by the README's test
//! command): a grounded, cited answer from the local LLM (or its extractive fallback), and
//! hand-offs for personal data and for questions the guides do not cover.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const GUIDES: &[&str] = &[
    "senior-card",
    "streetlight-repair",
    "bulky-waste-pickup",
    "low-income-household",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin(index: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_assistant"));
    // The configuration's paths (safety rules, forms, taxonomy) are relative to the repository.
    c.current_dir(repo())
        .arg("--config")
        .arg(repo().join("config"))
        .arg("--index")
        .arg(index)
        // Shorter replies keep the suite quick on a 2-core machine.
        .env("ASSISTANT__ANSWER__MAX_TOKENS", "96")
        .env("ASSISTANT__ANSWER__PASSAGE_TOKENS", "400");
    c
}

fn ask(index: &Path, question: &str, llm: bool) -> Value {
    let mut c = bin(index);
    c.args(["ask", "--json", question]);
    if !llm {
        c.arg("--no-llm");
    }
    let out = c.output().expect("run assistant");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn answers_are_cited_grounded_or_handed_off_with_the_real_models() {
    let corpus = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    for g in GUIDES {
        std::fs::copy(
            repo().join("corpus/guides").join(format!("{g}.md")),
            corpus.path().join(format!("{g}.md")),
        )
        .unwrap();
    }
    let out = bin(index.path())
        .arg("ingest")
        .arg(corpus.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With the LLM: whatever it writes, what comes out is cited and grounded.
    let a = ask(index.path(), "我媽70歲要怎麼辦敬老卡？要帶什麼？", true);
    assert_eq!(a["handoff"], false, "{a}");
    assert_eq!(a["grounded"], true, "{a}");
    assert_eq!(a["citations"][0]["doc_id"], "senior-card", "{a}");
    for key in ["title", "section", "snippet"] {
        assert!(a["citations"][0][key]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
    let llm = &a["llm"];
    assert!(
        llm["stats"]["generated_tokens"].as_u64().unwrap() > 0,
        "{a}"
    );
    let kind = a["kind"].as_str().unwrap();
    assert!(kind == "generated" || kind == "extractive", "{a}");
    if kind == "generated" {
        assert_eq!(llm["accepted"], true);
        assert!(a["answer"].as_str().unwrap().contains('['));
    }

    // Extractive only.
    let a = ask(index.path(), "路燈不亮要怎麼報修？", false);
    assert_eq!(a["kind"], "extractive");
    assert_eq!(a["citations"][0]["doc_id"], "streetlight-repair");

    // Someone's private data, and a question no guide covers: hand-off, no sources.
    for q in ["市長的手機號碼是多少？", "今天天氣如何？"] {
        let a = ask(index.path(), q, false);
        assert_eq!(a["handoff"], true, "{q}: {a}");
        assert!(a["answer"]
            .as_str()
            .unwrap()
            .contains("這個問題建議撥打1999由專人為您服務"));
        assert_eq!(a["citations"].as_array().unwrap().len(), 0);
    }
}
