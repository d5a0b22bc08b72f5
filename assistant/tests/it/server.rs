//! The HTTP service end to end over real sockets: an in-process server (the bundled guides with
//! the cheap n-gram embedder, scripted models) driven by a cookie-keeping HTTP client like a
//! browser's. Chat streaming with citations and a follow-up turn, the JSON API, CSRF, limits
//! and back-pressure, staff logins and case intake to dispatch, the OpenAI-compatible endpoint,
//! the MyData flow against the sandbox, admin uploads, and the route table.

use std::sync::Arc;
use std::time::Duration;

use assistant::answer::AnswerConfig;
use assistant::config::ServerSettings;
use assistant::http::{self as server, AppState, Parts, Role};
use assistant::store::Db;
use knowledge::LoadOptions;
use models::llm::{ChatMessage, ChatModel, GenerationParams, GenerationStats};
use retrieval::{Retriever, RetrieverConfig};
use serde_json::{json, Value};

use crate::answers::{NgramEmbedder, Scripted};
// A browser: keeps the session cookie and sends the CSRF token (shared with the e2e tests).
use e2e_tests::{events, Client as Browser};

pub(crate) struct TestServer {
    pub base: String,
    pub state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

/// Starts a server on a free port with `tweak`ed settings.
pub(crate) fn start(
    tweak: impl FnOnce(&mut ServerSettings),
    llm: Option<Arc<dyn ChatModel>>,
    mydata: Option<assistant::mydata::client::MyDataClient>,
) -> TestServer {
    start_with(tweak, llm, mydata, Db::memory().unwrap())
}

/// As [`start`], on the given database.
pub(crate) fn start_with(
    tweak: impl FnOnce(&mut ServerSettings),
    llm: Option<Arc<dyn ChatModel>>,
    mydata: Option<assistant::mydata::client::MyDataClient>,
    db: Db,
) -> TestServer {
    start_full(tweak, llm, mydata, db, None)
}

/// As [`start_with`], with speech recognition.
pub(crate) fn start_full(
    tweak: impl FnOnce(&mut ServerSettings),
    llm: Option<Arc<dyn ChatModel>>,
    mydata: Option<assistant::mydata::client::MyDataClient>,
    db: Db,
    voice: Option<Arc<voice::Transcriber>>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = ServerSettings {
        uploads_dir: dir.path().join("uploads"),
        // The tests that pass a model exercise its streaming and checking.
        chat_llm: llm.is_some(),
        ..ServerSettings::default()
    };
    tweak(&mut settings);
    let (tx, rx) = std::sync::mpsc::channel();
    let root = crate::repo_root();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut r = Retriever::open(None, Arc::new(NgramEmbedder), RetrieverConfig::default())
                .await
                .unwrap();
            std::fs::create_dir_all(&settings.uploads_dir).unwrap();
            let paths = vec![root.join("corpus/guides"), settings.uploads_dir.clone()];
            assistant::kb::ingest(&mut r, &paths, &LoadOptions::default(), &|_, _| {})
                .await
                .unwrap();
            let state = AppState::new(Parts {
                settings,
                answer_config: AnswerConfig {
                    // The n-gram embedder's cosines are not e5's (see answers.rs).
                    min_similarity: 0.0,
                    strong_similarity: 0.0,
                    ..AnswerConfig::default()
                },
                retriever: r,
                corpus_paths: paths,
                llm,
                walkthroughs: assistant::answer::walkthrough::load_dir(
                    &root.join("corpus/walkthroughs"),
                )
                .unwrap(),
                extractor: crate::bundled_extractor(),
                // Naive Bayes and the routing lexicon (the e5 neighbours need e5).
                router: Some(Arc::new(bundled_router(&root))),
                // The rules only: the similarity vote needs e5 (the e2e tests run it).
                triage: Some(Arc::new(
                    assistant::answer::safety::Triage::load(&root.join("corpus/safety")).unwrap(),
                )),
                entities: Vec::new(),
                names: Vec::new(),
                benefits: Arc::new(
                    knowledge::benefits::Rulebook::load(&root.join("corpus/benefits")).unwrap(),
                ),
                db,
                secret: b"test-secret-test-secret-test-secret".to_vec(),
                mydata,
                mydata_sandbox: false,
                voice,
                voice_settings: Default::default(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tx.send((format!("http://{addr}"), state.clone())).unwrap();
            server::serve_on(state, listener).await.unwrap();
        });
    });
    let (base, state) = rx.recv_timeout(Duration::from_secs(120)).unwrap();
    TestServer {
        base,
        state,
        _dir: dir,
    }
}

/// The product's router over the bundled guides, taxonomy and routing lexicon, without e5.
fn bundled_router(root: &std::path::Path) -> assistant::intake::route::Router {
    use assistant::intake::route::{examples_from_knowledge, Router};
    let loaded =
        knowledge::load_path(&root.join("corpus/guides"), &LoadOptions::default()).unwrap();
    let docs: Vec<knowledge::Document> = loaded.documents.into_iter().map(|d| d.document).collect();
    let taxonomy = knowledge::Taxonomy::load(&root.join("corpus/cases")).unwrap();
    let lexicon =
        knowledge::routing::BureauLexicon::load(&root.join("corpus/routing/bureaus.toml")).unwrap();
    Router::train(
        &examples_from_knowledge(&docs, &taxonomy),
        &[],
        None,
        Default::default(),
    )
    .unwrap()
    .with_lexicon(&lexicon)
}

fn names(ev: &[(String, Value)]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (n, _) in ev {
        if out.last() != Some(&n.as_str()) {
            out.push(n);
        }
    }
    out
}

/// A model that waits before replying (to hold the LLM queue).
struct Slow(Duration);

impl ChatModel for Slow {
    fn describe(&self) -> String {
        "slow".into()
    }
    fn chat(
        &self,
        _: &[ChatMessage],
        _: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> models::Result<GenerationStats> {
        std::thread::sleep(self.0);
        on_text("資料中沒有這項資訊");
        Ok(crate::scripted_stats(1, 1))
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn chat_streams_the_draft_tokens_and_final_answer_with_citations_and_follows_up() {
    // The model's text is streamed but refused by the grounding check: the final answer is
    // the cited extractive one, never the unchecked text.
    let srv = start(|_| {}, Some(Scripted::new("資料中沒有這項資訊")), None);
    let mut b = Browser::open(&srv.base);
    let r = b.post("/api/chat", &json!({"message": "我媽70歲要怎麼辦敬老卡？"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers["content-type"].starts_with("text/event-stream"));
    let ev = events(&r.body);
    assert_eq!(
        names(&ev),
        ["meta", "draft", "token", "final"],
        "{}",
        r.body
    );
    let fin = &ev.last().unwrap().1;
    assert_eq!(fin["llm_status"], "rejected");
    assert_eq!(fin["kind"], "extractive");
    assert!(!fin["answer"].as_str().unwrap().contains("資料中沒有"));
    let cites = fin["citations"].as_array().unwrap();
    assert!(!cites.is_empty());
    assert!(
        cites
            .iter()
            .any(|c| c["title"].as_str().unwrap().contains("敬老")),
        "{fin}"
    );
    let doc = fin["doc_id"].as_str().unwrap().to_string();
    assert!(fin["follow_ups"].as_array().is_some());

    // The citation opens its guide.
    let g = b.get(&format!(
        "/api/guides/{}",
        cites[0]["doc_id"].as_str().unwrap()
    ));
    assert_eq!(g.status, 200);
    let g = g.json();
    assert!(g["sections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["chunk_id"] == cites[0]["chunk_id"]));

    // A follow-up in the same conversation stays on the topic.
    let conv = ev[0].1["conversation_id"].as_str().unwrap().to_string();
    let r = b.post(
        "/api/chat",
        &json!({"message": "那要帶什麼？", "conversation_id": conv}),
    );
    let ev = events(&r.body);
    let fin = &ev.last().unwrap().1;
    assert_eq!(fin["conversation_id"], conv.as_str());
    assert_eq!(fin["doc_id"], doc.as_str(), "{fin}");
    assert!(
        fin["citations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "應備文件"),
        "{fin}"
    );

    // Another browser cannot continue (or read) this conversation: it gets a new one.
    let mut other = Browser::open(&srv.base);
    let r = other.post(
        "/api/chat",
        &json!({"message": "那要帶什麼？", "conversation_id": conv}),
    );
    let ev = events(&r.body);
    assert_ne!(ev[0].1["conversation_id"], conv.as_str());

    // A plain question gets no benefit list; a resident describing their situation does,
    // each with its guide and, where the form pre-fills from MyData, the application.
    assert!(fin.get("benefits").is_none(), "{fin}");
    let r = b.post(
        "/api/chat",
        &json!({"message": "我今年67歲，一個人住在臺北市，是中低收入戶，想知道可以申請什麼"}),
    );
    let ev = events(&r.body);
    let fin = &ev.last().unwrap().1;
    let offered: Vec<&str> = fin["benefits"]
        .as_array()
        .unwrap_or_else(|| panic!("{fin}"))
        .iter()
        .map(|b| b["benefit"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"senior-card"), "{offered:?}");
    assert!(offered.contains(&"senior-living-allowance"), "{offered:?}");
    assert!(
        !offered
            .iter()
            .any(|b| b.starts_with("childcare") || b.contains("student")),
        "{offered:?}"
    );
    let card = fin["benefits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["benefit"] == "senior-card")
        .unwrap();
    assert_eq!(card["status"], "eligible");
    assert_eq!(card["apply_form"], "senior_card");
    assert_eq!(b.get("/api/guides/senior-card").status, 200);

    // Hand-off flags the conversation for agents.
    let r = b.post("/api/handoff", &json!({"conversation_id": conv}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("1999"));
    let r = other.post("/api/handoff", &json!({"conversation_id": conv}));
    assert_eq!(r.status, 404, "only the owner can hand off");
}

#[test]
fn ask_answers_with_the_cli_json_shape_and_bad_input_gets_clear_errors() {
    let srv = start(
        |s| {
            s.max_body_bytes = 4096;
            s.rate_per_minute = 0.0;
            s.rate_burst = 4.0;
        },
        None,
        None,
    );
    let mut b = Browser::open(&srv.base);
    let r = b.post("/api/ask", &json!({"message": "育兒津貼怎麼申請？"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let a = r.json();
    for key in ["answer", "citations", "handoff", "grounded"] {
        assert!(a.get(key).is_some(), "{key} missing: {a}");
    }
    let c = &a["citations"][0];
    for key in ["doc_id", "title", "section", "snippet"] {
        assert!(c.get(key).is_some(), "{key} missing: {c}");
    }

    // Malformed JSON, wrong fields, wrong content type, too long, too large: JSON errors.
    let r = b.post_raw("/api/ask", "application/json", "{\"message\": ");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "bad_request");
    let r = b.post("/api/ask", &json!({"msg": "x"}));
    assert_eq!(r.status, 422);
    let r = b.post_raw("/api/ask", "text/plain", "hello");
    assert_eq!(r.status, 415);
    let r = b.post("/api/ask", &json!({"message": "長".repeat(501)}));
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("500"));
    let r = b.post("/api/ask", &json!({"message": "x".repeat(5000)}));
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "too_large");

    // CSRF: a request with the cookie but without the token is refused.
    let token = b.csrf.take();
    let r = b.post("/api/ask", &json!({"message": "敬老卡"}));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "csrf");
    b.csrf = token;

    // The session's burst (4 with no refill; one was spent above) runs out: 429 + Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(b.post("/api/ask", &json!({"message": "敬老卡"})).status);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "{statuses:?}");
    let r = b.post("/api/ask", &json!({"message": "敬老卡"}));
    assert!(r.headers.contains_key("retry-after"));
}

#[test]
fn a_full_llm_queue_leaves_answers_retrieval_only_and_a_full_server_sheds_with_503() {
    let slow =
        |ms| -> Option<Arc<dyn ChatModel>> { Some(Arc::new(Slow(Duration::from_millis(ms)))) };
    let hold = |base: &str, path: &'static str| {
        let base = base.to_string();
        std::thread::spawn(move || {
            let mut b = Browser::open(&base);
            b.post(path, &json!({"message": "敬老卡要帶什麼？"}))
        })
    };
    // One LLM slot, taken by a slow generation: the next chat is answered at once, cited,
    // retrieval-only.
    let srv = start(|s| s.llm_queue = 1, slow(2500), None);
    let first = hold(&srv.base, "/api/chat");
    std::thread::sleep(Duration::from_millis(800));
    let mut b = Browser::open(&srv.base);
    let started = std::time::Instant::now();
    let r = b.post("/api/chat", &json!({"message": "育兒津貼怎麼申請？"}));
    let waited = started.elapsed();
    let fin = events(&r.body).last().unwrap().1.clone();
    assert_eq!(fin["llm_status"], "busy", "{fin}");
    assert!(!fin["citations"].as_array().unwrap().is_empty());
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    assert_eq!(first.join().unwrap().status, 200);
    let m = Browser::new(&srv.base).get("/metrics").body;
    assert!(m.contains("hotline_llm_busy_fallbacks_total 1"), "{m}");

    // Two requests in flight at most: the third gets 503 with Retry-After.
    let srv = start(
        |s| {
            s.llm_queue = 2;
            s.max_inflight = 2;
        },
        slow(2500),
        None,
    );
    let held = [hold(&srv.base, "/api/ask"), hold(&srv.base, "/api/ask")];
    std::thread::sleep(Duration::from_millis(800));
    let mut b = Browser::open(&srv.base);
    let r = b.post("/api/ask", &json!({"message": "敬老卡"}));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.json()["code"], "overloaded");
    for h in held {
        assert_eq!(h.join().unwrap().status, 200);
    }
    let m = Browser::new(&srv.base).get("/metrics").body;
    assert!(m.contains("hotline_shed_total 1"), "{m}");
}

#[test]
fn agents_take_a_case_from_intake_to_dispatch_and_residents_cannot() {
    case_flow(Db::memory().unwrap());
}

fn case_flow(db: Db) {
    let srv = start_with(|_| {}, None, None, db);
    server::auth::create_user(&srv.state.db, "agent01", "agent-password-1", Role::Agent).unwrap();
    let mut resident = Browser::open(&srv.base);
    let r = resident.post("/api/cases", &json!({"text": "路燈不亮"}));
    assert_eq!(r.status, 401);
    assert_eq!(resident.get("/api/cases").status, 401);

    let mut agent = Browser::open(&srv.base);
    assert_eq!(agent.login("agent01", "wrong-password").status, 401);
    let r = agent.login("agent01", "agent-password-1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["role"], "agent");
    assert_eq!(agent.get("/api/session").json()["role"], "agent");

    let call = "我在大安區復興南路一段的路口，編號12345的路燈不亮已經三天了，電話0912345678";
    let a = agent.post("/api/assist", &json!({"text": call}));
    assert_eq!(a.status, 200, "{}", a.body);
    let a = a.json();
    assert_eq!(a["case"]["category"], "路燈不亮或損壞", "{a}");
    assert_eq!(a["case"]["bureau"], "工務局");
    assert_eq!(a["case"]["case_type"], "通報", "{a}");
    // A report with its category needs no routing: the category names the bureau.
    assert_eq!(a["routing"], json!([]), "{a}");
    // A question gets its answer and no dispatch category (the agent can still pick one).
    for question in [
        "我媽媽住在信義區，她今年七十歲了，想問敬老卡要怎麼辦",
        "我想問一下育兒津貼，我小孩上個月出生，是第二胎",
    ] {
        let q = agent.post("/api/assist", &json!({"text": question})).json();
        assert_eq!(q["case"]["case_type"], "諮詢", "{q}");
        // The bureau that answers it, from the router.
        assert_eq!(q["routing"][0]["bureau"], "社會局", "{q}");
        assert!(q["case"]["category"].is_null(), "{q}");
        assert!(q["case"]["bureau"].is_null(), "{q}");
        assert!(
            !q["case"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == "category"),
            "{q}"
        );
    }

    // The after-call note: every line from the call's words or the fields read from them.
    let a = agent
        .post(
            "/api/assist",
            &json!({"text": format!("{call}。昨天晚上就不亮了，很暗很危險。好的，我們會盡快派人去修。")}),
        )
        .json();
    let note = a["note"]["text"].as_str().unwrap_or_else(|| panic!("{a}"));
    for line in [
        "來電者：未留姓名（0912345678）",
        "類型：通報：路燈不亮或損壞",
        "地點：大安區 復興南路一段",
        "時間：編號12345的路燈不亮已經三天了",
        "承諾事項：我們會盡快派人去修",
    ] {
        assert!(note.contains(line), "missing {line}: {note}");
    }
    let quoted = a["note"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "時間")
        .unwrap()
        .clone();
    let (from, to) = (
        quoted["span"][0].as_u64().unwrap() as usize,
        quoted["span"][1].as_u64().unwrap() as usize,
    );
    let transcript = format!("{call}。昨天晚上就不亮了，很暗很危險。好的，我們會盡快派人去修。");
    let span: String = transcript.chars().skip(from).take(to - from).collect();
    assert_eq!(span, quoted["text"].as_str().unwrap());

    let edited = format!("{note}\n（專員補充：民眾希望修好後回電）");
    let r = agent.post("/api/cases", &json!({"text": call, "note": edited}));
    assert_eq!(r.status, 201, "{}", r.body);
    let case = r.json();
    let id = case["id"].as_str().unwrap().to_string();
    assert_eq!(case["fields"]["call_note"], edited.as_str());
    let r = agent.post(
        &format!("/api/cases/{id}/note"),
        &json!({"note": "x".repeat(2001)}),
    );
    assert_eq!(r.status, 400, "an overlong note is refused");
    let r = agent.post(
        &format!("/api/cases/{id}/note"),
        &json!({"note": "改過的摘要"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fields"]["call_note"], "改過的摘要");
    assert_eq!(case["status"], "draft");
    assert_eq!(case["category"], "路燈不亮或損壞");
    // A second caller reports the same pole: the console shows the first case.
    let again = agent
        .post(
            "/api/assist",
            &json!({"text": "復興南路一段路口那支編號12345的路燈還是不亮，晚上很暗"}),
        )
        .json();
    let known: Vec<&str> = again["known"]
        .as_array()
        .unwrap_or_else(|| panic!("{again}"))
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(known, [case["id"].as_str().unwrap()], "{again}");
    // Another pole elsewhere is not the same problem.
    let other = agent
        .post(
            "/api/assist",
            &json!({"text": "信義區松仁路的路燈編號99887不亮"}),
        )
        .json();
    assert!(other["known"].as_array().unwrap().is_empty(), "{other}");
    // A resident reporting it in the chat hears that it is already being handled.
    let mut resident = Browser::open(&srv.base);
    let r = resident.post(
        "/api/chat",
        &json!({"message": "復興南路一段路口編號12345的路燈不亮，麻煩派人來修"}),
    );
    let ev = events(&r.body);
    let fin = &ev.last().unwrap().1;
    assert!(
        fin["already_reported"]
            .as_str()
            .is_some_and(|t| t.contains("已有民眾通報")),
        "{fin}"
    );
    assert_eq!(case["fields"]["district"], "大安區", "{case}");

    // Dispatch before confirmation is refused.
    let r = agent.post(&format!("/api/cases/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 409);
    // The agent corrects the category (the bureau follows) and confirms.
    let r = agent.post(
        &format!("/api/cases/{id}/confirm"),
        &json!({"category": "市區道路坑洞處理", "fields": {"road": "復興南路一段"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["status"], "confirmed");
    assert_eq!(c["fields"]["road"], "復興南路一段");
    let unknown = agent.post(
        &format!("/api/cases/{id}/confirm"),
        &json!({"category": "外星人"}),
    );
    assert_eq!(unknown.status, 400);
    let r = agent.post(
        &format!("/api/cases/{id}/dispatch"),
        &json!({"bureau": "工務局"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "dispatched");
    let list = agent.get("/api/cases").json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "dispatched");
    assert_eq!(list[0]["reports"], 1);
    // The second caller's report is linked to the case instead of becoming another one; a
    // resident cannot do that.
    let r = agent.post(&format!("/api/cases/{id}/reports"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let linked = r.json();
    assert_eq!(
        (linked["reports"].as_i64(), linked["status"].as_str()),
        (Some(2), Some("dispatched"))
    );
    assert!(
        resident
            .post(&format!("/api/cases/{id}/reports"), &json!({}))
            .status
            >= 401
    );
    assert_eq!(agent.get("/api/cases").json()[0]["reports"], 2);

    // Agents are not administrators; the audit log has the case's history.
    assert_eq!(agent.get("/api/admin/audit").status, 403);
    server::auth::create_user(&srv.state.db, "boss", "admin-password-1", Role::Admin).unwrap();
    let mut admin = Browser::open(&srv.base);
    admin.login("boss", "admin-password-1");
    let audit = admin.get("/api/admin/audit").json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"].as_str().unwrap_or_default().starts_with(&id))
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "case.link_report",
            "case.dispatch",
            "case.confirm",
            "case.note",
            "case.create"
        ]
    );
    // Logging out ends the staff session.
    assert_eq!(agent.post("/api/logout", &json!({})).status, 204);
    assert_eq!(agent.get("/api/cases").status, 401);
}

#[test]
fn the_openai_compatible_endpoint_answers_a_standard_client_payload() {
    let srv = start(|s| s.api_keys = vec!["k-123".into()], None, None);
    let agent = ureq::AgentBuilder::new().build();
    let payload = json!({
        "model": "hotline-grounded",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "敬老卡要準備什麼文件？"}
        ],
        "temperature": 0.2,
        "stream": false
    });
    let url = format!("{}/v1/chat/completions", srv.base);
    match agent
        .post(&url)
        .set("Content-Type", "application/json")
        .send_string(&payload.clone().to_string())
    {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("no key must give 401, got {:?}", other.map(|r| r.status())),
    }
    let r: Value = serde_json::from_str(
        &agent
            .post(&url)
            .set("Authorization", "Bearer k-123")
            .set("Content-Type", "application/json")
            .send_string(&payload.to_string())
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("[1]"), "{content}");
    assert!(!r["citations"].as_array().unwrap().is_empty());
    assert!(r["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let mut streaming = payload;
    streaming["stream"] = json!(true);
    let body = agent
        .post(&url)
        .set("Authorization", "Bearer k-123")
        .set("Content-Type", "application/json")
        .send_string(&streaming.to_string())
        .unwrap()
        .into_string()
        .unwrap();
    let ev = events(&body);
    assert_eq!(ev.last().unwrap().1, Value::String("[DONE]".into()));
    let text: String = ev
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, content, "the stream carries the same checked answer");
    assert_eq!(ev[0].1["choices"][0]["delta"]["role"], "assistant");
    let models: Value = serde_json::from_str(
        &agent
            .get(&format!("{}/v1/models", srv.base))
            .set("Authorization", "Bearer k-123")
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(models["data"][0]["id"], "hotline-grounded");
}

#[test]
fn the_route_table_health_readiness_metrics_and_pages_are_served() {
    let srv = start(|_| {}, None, None);
    let mut b = Browser::new(&srv.base);
    assert_eq!(b.get("/healthz").body, "ok");
    let ready = b.get("/readyz");
    assert_eq!(ready.status, 200);
    assert!(ready.json()["guides"].as_u64().unwrap() >= 40);
    let doc = b.get("/api/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for r in server::openapi::routes() {
        assert!(
            paths[r.path].get(r.method).is_some(),
            "{} {}",
            r.method,
            r.path
        );
    }
    assert!(paths["/api/chat"]["post"]["requestBody"].is_object());
    for page in ["/", "/apply", "/console", "/admin", "/login"] {
        let r = b.get(page);
        assert_eq!(r.status, 200, "{page}");
        assert!(r.headers["content-type"].starts_with("text/html"));
        assert!(r.body.contains("lang=\"zh-Hant-TW\""), "{page}");
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert!(r.headers.contains_key("x-request-id"));
    }
    assert_eq!(b.get("/nope").status, 404);
    let m = b.get("/metrics").body;
    assert!(
        m.contains(
            "hotline_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{m}"
    );
    assert!(m.contains("hotline_http_request_duration_seconds_bucket{route=\"/readyz\""));
    assert!(m.contains("hotline_llm_queue_depth 0"));
}

#[test]
fn mydata_prefill_over_the_server_consent_callback_draft_submit_and_own_log() {
    mydata_flow(Db::memory().unwrap());
}

fn mydata_flow(db: Db) {
    use crate::mydata::{browser, client, sandbox};
    let (mbase, _sb) = sandbox(|cfg| cfg.clients[0].return_url_prefix = "http://127.0.0.1:".into());
    let srv = start_with(|_| {}, None, Some(client(&mbase)), db);
    let mut b = Browser::open(&srv.base);
    let forms = b.get("/api/forms").json();
    assert!(forms
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "senior_card" && f["mydata"] == true));
    let consent = b.get("/api/mydata/consent/senior_card").json();
    assert!(consent["datasets"].as_array().unwrap().len() <= 5);
    assert!(consent["purpose"].as_str().is_some());

    let r = b.post("/api/mydata/start", &json!({"form": "senior_card"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.json()["redirect"].as_str().unwrap().to_string();
    assert!(url.contains("returnUrl=http%3A%2F%2F127.0.0.1"), "{url}");
    // The elder verifies and consents at the platform; the browser comes back.
    let cb = browser(&url, "E223451057", "123456", true).unwrap();
    let query: String = cb
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let back = b.get(&format!("/mydata/callback?{query}"));
    assert!(
        back.status == 303 || back.status == 302 || back.status == 307,
        "{}",
        back.status
    );
    let location = back.headers["location"].clone();
    let draft_id = location
        .strip_prefix("/apply?draft=")
        .expect(&location)
        .to_string();

    let d = b.get(&format!("/api/drafts/{draft_id}")).json();
    assert_eq!(d["status"], "open");
    let field = |d: &Value, name: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    let name = field(&d, "elder.name");
    assert_eq!(name["value"], "高秀英", "{d}");
    assert_eq!(name["source"], "mydata");
    assert!(name["provenance"]
        .as_str()
        .unwrap()
        .starts_with("資料來源：MyData"));

    // Another browser sees neither the draft nor the log; a replayed callback is refused.
    let mut other = Browser::open(&srv.base);
    assert_eq!(other.get(&format!("/api/drafts/{draft_id}")).status, 404);
    assert_eq!(other.get("/api/mydata/log").json(), json!([]));
    let replay = b.get(&format!("/mydata/callback?{query}"));
    assert!(replay.headers["location"].starts_with("/apply?error="));

    // The resident corrects a value and submits: MyData values are gone from the draft.
    let r = b.post(
        &format!("/api/drafts/{draft_id}/fields"),
        &json!({"name": "applicant.phone", "value": "0912345678"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(field(&r.json(), "applicant.phone")["source"], "resident");
    let r = b.post(&format!("/api/drafts/{draft_id}/submit"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = r.json();
    assert_eq!(sent["status"], "submitted");
    assert!(sent["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["value"].is_null()));
    assert!(sent["submitted"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "elder.name" && f["value"] == "高秀英"));
    assert_eq!(
        b.post(&format!("/api/drafts/{draft_id}/submit"), &json!({}))
            .status,
        409
    );

    // The resident's own log: the consent and the transfer, nothing else.
    let log = b.get("/api/mydata/log").json();
    let kinds: Vec<(&str, bool)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["success"].as_bool().unwrap()))
        .collect();
    assert_eq!(kinds, [("consent", true), ("transfer", true)]);
    assert!(
        log[0].get("subject").is_none(),
        "the hash is not shown to residents"
    );

    // A refusal at the platform comes back as a clear error and leaves no draft.
    let r = b.post("/api/mydata/start", &json!({"form": "childcare_allowance"}));
    let url = r.json()["redirect"].as_str().unwrap().to_string();
    let cb = browser(&url, "A223451044", "123456", false).unwrap();
    let query: String = cb
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let back = b.get(&format!("/mydata/callback?{query}"));
    assert!(
        back.headers["location"].starts_with("/apply?error="),
        "{:?}",
        back.headers
    );
}

#[test]
fn administrators_upload_a_guide_and_it_is_answerable_after_the_reindex() {
    let srv = start(|_| {}, None, None);
    server::auth::create_user(&srv.state.db, "boss", "admin-password-1", Role::Admin).unwrap();
    let mut admin = Browser::open(&srv.base);
    assert_eq!(admin.login("boss", "admin-password-1").status, 200);
    let before = admin
        .get("/api/admin/guides")
        .json()
        .as_array()
        .unwrap()
        .len();
    let bad = admin.post(
        "/api/admin/guides",
        &json!({"filename": "../evil.sh", "content": "x"}),
    );
    assert_eq!(bad.status, 400);
    let guide = "+++\nid = \"rooftop-garden\"\ntitle = \"屋頂綠化補助\"\nbureau = \"都市發展局\"\n\
        category = \"補助\"\nscope = \"city\"\n+++\n\n補助市民在自家屋頂種植花草。\n\n## 申請資格\n\n\
        設籍本市且屋齡十年以上的建物所有權人。\n\n## 應備文件\n\n申請書、建物權狀影本、屋頂現況照片三張。\n";
    let r = admin.post(
        "/api/admin/guides",
        &json!({"filename": "rooftop-garden.md", "content": guide}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = r.json()["job"].as_str().unwrap().to_string();
    let mut state = Value::Null;
    for _ in 0..100 {
        state = admin.get(&format!("/api/admin/jobs/{job}")).json();
        if state["state"] != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state["state"], "done", "{state}");
    let after = admin.get("/api/admin/guides").json();
    assert_eq!(after.as_array().unwrap().len(), before + 1);
    let mut b = Browser::open(&srv.base);
    let a = b
        .post(
            "/api/ask",
            &json!({"message": "屋頂綠化補助要準備什麼文件？"}),
        )
        .json();
    assert!(
        a["answer"].as_str().unwrap().contains("屋頂現況照片"),
        "{a}"
    );
    assert_eq!(b.get("/api/admin/guides").status, 401);
}

/// The same migrations and flows on a real PostgreSQL (`scripts/test` starts Debian's server
/// and sets `TEST_DATABASE_URL`).
#[test]
fn postgres_runs_the_same_migrations_case_flow_and_mydata_flow() {
    let url = e2e_tests::scratch_postgres();
    let db = Db::connect_postgres(&url).unwrap();
    assert_eq!(db.backend(), "postgres");
    assert_eq!(
        db.version().unwrap(),
        assistant::store::MIGRATIONS.len() as i64
    );
    // Reconnecting applies nothing twice.
    let again = Db::connect_postgres(&url).unwrap();
    assert_eq!(
        again.version().unwrap(),
        assistant::store::MIGRATIONS.len() as i64
    );
    // The server drops our connection (a restart, a fail-over): the call caught in it fails,
    // the next one connects again.
    {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = current_user AND pid <> pg_backend_pid()",
            )
            .unwrap();
    }
    let _ = db.guide_digests();
    assert!(db.guide_digests().unwrap().is_empty());
    // Uploaded guides: replaced in place (ON CONFLICT), listed by digest, removed.
    db.put_guide("a.md", "# 一", "admin").unwrap();
    db.put_guide("a.md", "# 二", "admin").unwrap();
    assert_eq!(
        db.guide_digests().unwrap(),
        [("a.md".to_string(), assistant::store::guide_digest("# 二"))]
    );
    assert_eq!(db.guide_content("a.md").unwrap().as_deref(), Some("# 二"));
    assert!(db.delete_guide("a.md").unwrap());
    assert!(!db.delete_guide("a.md").unwrap());
    crate::analytics::import_flow(db.clone());
    case_flow(db.clone());
    mydata_flow(db.clone());
    let rows = db.audit_rows(100).unwrap();
    assert!(rows.iter().any(|r| r.action == "case.dispatch"));
    assert!(rows.iter().any(|r| r.action == "draft.submit"));
}

/// A model that emits a piece every 50 ms for 10 s and records how many it was allowed to emit.
struct Dripping(std::sync::Mutex<Option<usize>>);

impl ChatModel for Dripping {
    fn describe(&self) -> String {
        "dripping".into()
    }
    fn chat(
        &self,
        _: &[ChatMessage],
        _: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> models::Result<GenerationStats> {
        let mut n = 0;
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(50));
            n += 1;
            if !on_text("好") {
                break;
            }
        }
        *self.0.lock().unwrap() = Some(n);
        Ok(crate::scripted_stats(1, n))
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn generation_stops_when_the_client_disconnects() {
    use std::io::{Read, Write};
    let model = Arc::new(Dripping(std::sync::Mutex::new(None)));
    let srv = start(|_| {}, Some(model.clone()), None);
    let host = srv.base.trim_start_matches("http://").to_string();
    let body = json!({"message": "敬老卡要帶什麼？"}).to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST /api/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until the first generated piece arrives, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: token") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let started = std::time::Instant::now();
    let emitted = loop {
        if let Some(n) = *model.0.lock().unwrap() {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "generation never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        emitted < 100,
        "generation went on after the client left: {emitted} pieces"
    );
}
