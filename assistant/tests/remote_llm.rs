//! `[llm] backend = "remote"` against a real OpenAI-compatible server: llama.cpp's
//! `llama-server` (from `../shared/tools`) serving the product's own GGUF (Qwen2.5-Coder-0.5B,
//! installed by `assistant setup`). Streaming, cancellation (the server stops generating when
//! the client goes), a timeout, a server killed mid-reply (an error, never a reply cut short
//! taken as whole), and the answer pipeline on top (the real e5 embedder over the bundled
//! guides): the grounding check decides, and when the server dies the resident keeps the
//! extractive answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assistant::answer::{AnswerEvent, AnswerKind, Answerer, AskContext};
use models::assets::{default_cache_root, AssetCache, LLM};
use models::llm::{
    ChatMessage, ChatModel, FinishReason, GenerationParams, RemoteConfig, RemoteLlm,
};
use testkit::llama::LlamaServer;

/// One llama-server at a time: the tests share two cores with the rest of the suite, and a
/// model generating beside another one would only test the machine's patience.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// llama-server with the product's GGUF (the guard keeps the others waiting), or a skip when
/// `../shared` is absent.
fn server() -> Option<(LlamaServer, std::sync::MutexGuard<'static, ()>)> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let gguf = AssetCache::new(default_cache_root())
        .require(&LLM)
        .unwrap_or_else(|e| panic!("{e} (the README's test command runs setup first)"))
        .path;
    LlamaServer::start(&gguf, 2).map(|s| (s, guard))
}

fn remote(server: &LlamaServer, timeout_s: u64) -> RemoteLlm {
    RemoteLlm::new(RemoteConfig {
        base_url: server.base_url(),
        model: "qwen2.5-coder-0.5b".into(),
        api_key: None,
        timeout_s,
    })
    .unwrap()
}

fn counting(max_tokens: usize) -> (Vec<ChatMessage>, GenerationParams) {
    (
        vec![
            ChatMessage::system("你是一個會數數的助理。"),
            ChatMessage::user("請從1開始一直數到500，用逗號分開，不要停。"),
        ],
        GenerationParams {
            max_tokens,
            temperature: 0.0,
            ..GenerationParams::default()
        },
    )
}

/// Polls `ok` for up to 30 seconds.
fn eventually(what: &str, ok: impl Fn() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_real_server_streams_the_reply_piece_by_piece_with_usage() {
    let Some((server, _one)) = server() else {
        return;
    };
    let llm = remote(&server, 300);
    let (messages, params) = counting(24);
    let mut pieces = Vec::new();
    let stats = llm
        .chat(&messages, &params, &mut |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    let text: String = pieces.concat();
    assert!(pieces.len() >= 5, "streamed in pieces: {pieces:?}");
    assert!(text.contains('1') && text.contains('2'), "{text}");
    assert_eq!(stats.finish, FinishReason::Length, "{text}");
    assert_eq!(stats.generated_tokens, 24);
    assert!(stats.prompt_tokens > 10, "{stats:?}");
    assert!(stats.first_token_ms > 0.0);
}

#[test]
fn a_cancelled_reply_stops_the_server_generating() {
    let Some((server, _one)) = server() else {
        return;
    };
    let llm = remote(&server, 300);
    let (messages, params) = counting(1500);
    let before = server.tokens_predicted();
    let mut seen = 0;
    let stats = llm
        .chat(&messages, &params, &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!(stats.finish, FinishReason::Cancelled);
    assert_eq!(seen, 3);
    // The connection closed with the reply: the slot goes idle long before 1,500 tokens.
    eventually("the slot to go idle", || !server.busy());
    let predicted = server.tokens_predicted() - before;
    assert!(
        predicted < 500,
        "{predicted} tokens generated after the cancel"
    );
    // And the server takes the next request.
    let (messages, params) = counting(4);
    let stats = llm.chat(&messages, &params, &mut |_| true).unwrap();
    assert_eq!(stats.generated_tokens, 4);
}

#[test]
fn a_reply_slower_than_the_timeout_is_an_error() {
    let Some((server, _one)) = server() else {
        return;
    };
    let llm = remote(&server, 1);
    let (messages, params) = counting(3000);
    let mut text = String::new();
    let err = llm
        .chat(&messages, &params, &mut |p| {
            text.push_str(p);
            true
        })
        .expect_err("3,000 tokens take longer than a second");
    let msg = err.to_string();
    assert!(msg.contains(&server.base_url()), "names the server: {msg}");
    assert!(
        msg.to_lowercase().contains("timed out") || msg.contains("timeout"),
        "{msg}"
    );
}

#[test]
fn a_server_killed_mid_reply_is_an_error_not_a_short_reply() {
    let Some((server, _one)) = server() else {
        return;
    };
    let server = Mutex::new(server);
    let llm = remote(&server.lock().unwrap(), 300);
    let (messages, params) = counting(1500);
    let mut pieces = 0;
    let result = llm.chat(&messages, &params, &mut |_| {
        pieces += 1;
        if pieces == 3 {
            server.lock().unwrap().kill();
        }
        true
    });
    let err = result.expect_err("the reply was cut off");
    assert!(pieces >= 3);
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1"), "{msg}");
}

/// The product's answer pipeline over the bundled guides (a copy of the end-to-end tests'
/// cached index, real embedder and thresholds) with `llm`.
async fn answerer(llm: Arc<dyn ChatModel>) -> (Answerer, tempfile::TempDir) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let app = assistant::app::App::from_config_dir(&root.join("config")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    e2e_tests::copy_dir(&e2e_tests::prepared_index(), dir.path());
    let retriever = assistant::kb::open(
        app.embedder().unwrap(),
        &app.settings.retrieval,
        Some(dir.path()),
    )
    .await
    .unwrap();
    assert!(retriever.num_chunks() > 100);
    let answerer = Answerer::new(Arc::new(retriever), Some(llm), app.settings.answer.clone());
    (answerer, dir)
}

#[tokio::test(flavor = "multi_thread")]
// The guard only keeps the other tests' servers waiting; each test has its own runtime.
#[allow(clippy::await_holding_lock)]
async fn answers_through_a_real_server_pass_the_grounding_check_or_fall_back() {
    let Some((server, _one)) = server() else {
        return;
    };
    let (a, _index) = answerer(Arc::new(remote(&server, 300))).await;
    for q in ["敬老卡要去哪裡申請？", "路燈不亮要怎麼報修？"] {
        let mut draft = None;
        let mut streamed = String::new();
        let answer = a
            .answer(q, &AskContext::default(), &mut |e| match e {
                AnswerEvent::Draft(d) => draft = Some(d.lead.clone()),
                AnswerEvent::Token(t) => streamed.push_str(t),
            })
            .await
            .unwrap();
        let draft = draft.expect("the extractive draft comes first");
        let outcome = answer.llm.as_ref().expect("the model ran");
        assert!(outcome.stats.is_some(), "{q}: {:?}", outcome.reason);
        assert!(!streamed.is_empty(), "{q}: the reply streamed");
        if outcome.accepted {
            // Kept only when grounded: every clause supported, citations present.
            assert_eq!(answer.kind, AnswerKind::Generated);
            assert!(answer.grounded);
            assert!(outcome.clauses.iter().all(|c| c.problem.is_none()));
            assert!(answer.lead.contains('['), "{q}: {}", answer.lead);
        } else {
            assert_eq!(answer.lead, draft, "{q}: rejected ({:?})", outcome.reason);
            assert_eq!(answer.kind, AnswerKind::Extractive);
        }
        eprintln!(
            "[remote] {q} → accepted {} ({:?}); first token {:.0} ms",
            outcome.accepted,
            outcome.reason,
            outcome
                .stats
                .as_ref()
                .map(|s| s.first_token_ms)
                .unwrap_or(0.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
// The guard only keeps the other tests' servers waiting; each test has its own runtime.
#[allow(clippy::await_holding_lock)]
async fn the_extractive_answer_stays_when_the_server_dies_mid_answer() {
    let Some((server, _one)) = server() else {
        return;
    };
    let base = server.base_url();
    let server = Arc::new(Mutex::new(server));
    let (a, _index) = answerer(Arc::new(
        RemoteLlm::new(RemoteConfig {
            base_url: base,
            model: "qwen2.5-coder-0.5b".into(),
            api_key: None,
            timeout_s: 300,
        })
        .unwrap(),
    ))
    .await;
    let killed = AtomicBool::new(false);
    let mut draft = None;
    let answer = a
        .answer(
            "敬老卡要去哪裡申請？",
            &AskContext::default(),
            &mut |e| match e {
                AnswerEvent::Draft(d) => draft = Some((d.lead.clone(), d.kind)),
                AnswerEvent::Token(_) => {
                    if !killed.swap(true, Ordering::Relaxed) {
                        server.lock().unwrap().kill();
                    }
                }
            },
        )
        .await
        .unwrap();
    assert!(
        killed.load(Ordering::Relaxed),
        "the model had started replying"
    );
    let (lead, kind) = draft.unwrap();
    assert_eq!(kind, AnswerKind::Extractive);
    assert_eq!(answer.kind, AnswerKind::Extractive);
    assert_eq!(
        answer.lead, lead,
        "the resident keeps the extractive answer"
    );
    assert!(!answer.citations.is_empty());
    let outcome = answer.llm.unwrap();
    assert!(!outcome.accepted);
    assert!(
        outcome.reason.as_deref().unwrap_or("").starts_with("error"),
        "{:?}",
        outcome.reason
    );
}
