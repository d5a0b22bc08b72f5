//! The answer pipeline and multi-turn chat over the bundled guides, with a cheap character
//! n-gram embedder (so the suite runs in seconds) and two kinds of model: a scripted one that
//! returns crafted replies (grounded, invented amount, unknown citation, Simplified script,
//! refusal) and a tiny random-weight GGUF model through the real local generation path.

use std::path::Path;
use std::sync::{Arc, Mutex};

use assistant::answer::chat::{Chat, Conversation};
use assistant::answer::{AnswerConfig, AnswerKind, Answerer, AskContext};
use knowledge::{LoadOptions, SectionKind};
use models::llm::{
    ChatMessage, ChatModel, DecoderOptions, GenerationParams, GenerationStats, LocalLlm,
    LocalLlmConfig,
};
use retrieval::{BoxError, Embedder, Retriever, RetrieverConfig};

/// Hashed character uni- and bigrams, L2-normalised: similar wording → similar vectors.
pub(crate) struct NgramEmbedder;

impl NgramEmbedder {
    fn embed(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; 256];
        let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        for w in chars.windows(2) {
            let h = (w[0] as u32).wrapping_mul(31).wrapping_add(w[1] as u32);
            v[(h % 256) as usize] += 1.0;
        }
        for c in &chars {
            v[(*c as u32 % 256) as usize] += 0.5;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter().map(|x| x / n).collect()
    }
}

impl Embedder for NgramEmbedder {
    fn id(&self) -> String {
        "ngram-test".into()
    }
    fn dim(&self) -> usize {
        256
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(texts.iter().map(|t| Self::embed(t)).collect())
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError> {
        Ok(Self::embed(text))
    }
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) async fn knowledge_base() -> Arc<Retriever> {
    let mut r = Retriever::open(None, Arc::new(NgramEmbedder), RetrieverConfig::default())
        .await
        .unwrap();
    assistant::kb::ingest(
        &mut r,
        &[repo().join("corpus/guides")],
        &LoadOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    Arc::new(r)
}

pub(crate) fn config() -> AnswerConfig {
    AnswerConfig {
        // The n-gram embedder's cosines are not e5's: hand-off thresholds are tested with the
        // real model (tests/it/ask.rs).
        min_similarity: 0.0,
        strong_similarity: 0.0,
        ..AnswerConfig::default()
    }
}

/// A model that replies with a fixed text and records the prompt it was given.
pub(crate) struct Scripted {
    reply: String,
    prompts: Mutex<Vec<Vec<ChatMessage>>>,
}

impl Scripted {
    pub(crate) fn new(reply: &str) -> Arc<Scripted> {
        Arc::new(Scripted {
            reply: reply.into(),
            prompts: Mutex::new(Vec::new()),
        })
    }
}

impl ChatModel for Scripted {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn chat(
        &self,
        messages: &[ChatMessage],
        _params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> models::Result<GenerationStats> {
        self.prompts.lock().unwrap().push(messages.to_vec());
        for ch in self.reply.chars() {
            if !on_text(&ch.to_string()) {
                break;
            }
        }
        Ok(crate::scripted_stats(100, self.reply.chars().count()))
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }
}

async fn ask_with(reply: &str, question: &str) -> (assistant::answer::Answer, Arc<Scripted>) {
    let kb = knowledge_base().await;
    let model = Scripted::new(reply);
    let answerer = Answerer::new(kb, Some(model.clone()), config());
    let mut drafts = 0;
    let mut tokens = String::new();
    let a = answerer
        .answer(question, &AskContext::default(), &mut |e| match e {
            assistant::answer::AnswerEvent::Draft(d) => {
                drafts += 1;
                assert_eq!(d.kind, AnswerKind::Extractive);
            }
            assistant::answer::AnswerEvent::Token(t) => tokens.push_str(t),
        })
        .await
        .unwrap();
    assert_eq!(
        drafts, 1,
        "the extractive draft is shown before the LLM runs"
    );
    assert_eq!(tokens, reply, "the LLM's text streams through");
    (a, model)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_extractive_answer_cites_the_sections_the_question_asks_about() {
    let answerer = Answerer::new(knowledge_base().await, None, config());
    let a = answerer
        .answer("敬老卡要帶什麼證件？", &AskContext::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert_eq!(a.doc_id.as_deref(), Some("senior-card"));
    assert!(a.grounded && !a.handoff);
    assert_eq!(a.citations[0].section, SectionKind::Documents.label());
    assert!(a.answer.contains("[1]"));
    assert!(a.answer.contains("身分證"), "{}", a.answer);
    assert!(a.llm.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grounded_llm_answer_is_kept_converted_to_taiwan_traditional() {
    let (a, model) = ask_with("请携带身份证[1]", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Generated, "{:?}", a.llm);
    // The rephrasing replaces the lead; the guide's sections stay under it.
    assert_eq!(a.lead, "請攜帶身分證[1]");
    assert!(
        a.answer.starts_with("請攜帶身分證[1]\n\n詳細說明"),
        "{}",
        a.answer
    );
    assert!(a.grounded);
    assert_eq!(a.citations[0].number, 1);
    let clauses = &a.llm.as_ref().unwrap().clauses;
    assert_eq!(clauses.len(), 1);
    assert_eq!(clauses[0].passage, Some(1), "{clauses:?}");
    // The prompt carried numbered passages and the question.
    let prompts = model.prompts.lock().unwrap();
    let user = &prompts[0][1].content;
    assert!(user.contains("[1]《敬老卡"), "{user}");
    assert!(user.ends_with("民眾問題：敬老卡要帶什麼證件？"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invented_amount_falls_back_to_the_extractive_answer() {
    let (a, _) = ask_with("請攜帶身分證並繳交手續費987元[1]", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert!(!a.answer.contains("987"));
    let llm = a.llm.unwrap();
    assert!(!llm.accepted);
    assert!(llm.reason.unwrap().contains("grounding"));
}

#[tokio::test(flavor = "multi_thread")]
async fn citing_a_passage_that_was_not_given_falls_back() {
    let (a, _) = ask_with("請攜帶身分證[9]", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert!(!a.llm.unwrap().accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncited_or_refusing_reply_falls_back() {
    let (a, _) = ask_with("您只要帶著證件去就可以了。", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert_eq!(a.llm.unwrap().reason.as_deref(), Some("no citation"));
    let (a, _) = ask_with("資料中沒有這項資訊", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert!(!a.llm.unwrap().accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_personal_data_is_handed_off_without_retrieval() {
    let model = Scripted::new("0912345678[1]");
    let answerer = Answerer::new(knowledge_base().await, Some(model.clone()), config());
    let a = answerer
        .answer(
            "市長的手機號碼是多少？",
            &AskContext::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(a.handoff);
    assert_eq!(a.kind, AnswerKind::Handoff);
    assert!(a.answer.contains("1999"));
    assert!(a.citations.is_empty());
    assert!(
        model.prompts.lock().unwrap().is_empty(),
        "the model never ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_random_model_runs_through_the_real_generation_path_and_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = models::testing::tiny_llm(dir.path(), "qwen2", 3).unwrap();
    let llm = LocalLlm::load(&LocalLlmConfig {
        model,
        tokenizer,
        template: None,
        threads: 1,
        decoder: DecoderOptions::default(),
    })
    .unwrap();
    let answerer = Answerer::new(
        knowledge_base().await,
        Some(Arc::new(llm)),
        AnswerConfig {
            max_tokens: 24,
            passage_tokens: 200,
            ..config()
        },
    );
    answerer.warm_up().unwrap();
    let a = answerer
        .answer("路燈不亮要怎麼報修？", &AskContext::default(), &mut |_| {})
        .await
        .unwrap();
    let llm = a.llm.expect("the model ran");
    let stats = llm.stats.expect("generation stats");
    assert!(stats.generated_tokens > 0);
    assert!(
        stats.reused_prompt_tokens > 0,
        "the system prompt's cache was reused"
    );
    // Random text has no valid citation: the resident keeps the extractive answer.
    assert!(!llm.accepted);
    assert_eq!(a.kind, AnswerKind::Extractive);
    assert_eq!(a.doc_id.as_deref(), Some("streetlight-repair"));
}

async fn chat_env() -> (Answerer, Vec<assistant::answer::walkthrough::Walkthrough>) {
    let answerer = Answerer::new(knowledge_base().await, None, config());
    let wts =
        assistant::answer::walkthrough::load_dir(&repo().join("corpus/walkthroughs")).unwrap();
    (answerer, wts)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_question_is_answered_about_the_previous_service() {
    let (answerer, wts) = chat_env().await;
    let chat = Chat {
        answerer: &answerer,
        walkthroughs: &wts,
    };
    let mut conv = Conversation::default();
    let first = chat
        .reply(&mut conv, "我媽70歲要怎麼辦敬老卡？", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(first.doc_id.as_deref(), Some("senior-card"));
    // The answer offers the guided walk-through for this service.
    assert!(conv.offered.is_some());
    let second = chat
        .reply(&mut conv, "那要帶什麼？", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(second.doc_id.as_deref(), Some("senior-card"));
    assert_eq!(second.citations[0].section, SectionKind::Documents.label());
    assert_eq!(conv.exchanges.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guided_walk_through_asks_step_by_step_and_can_be_left() {
    let (answerer, wts) = chat_env().await;
    let chat = Chat {
        answerer: &answerer,
        walkthroughs: &wts,
    };
    let mut conv = Conversation::default();
    let a = chat
        .reply(&mut conv, "請一步一步引導我辦敬老卡", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(a.kind, AnswerKind::Walkthrough);
    assert!(conv.walkthrough.is_some());
    assert!(a.answer.contains('？'), "{}", a.answer);
    let b = chat
        .reply(&mut conv, "第一次申請", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(b.kind, AnswerKind::Walkthrough);
    assert_ne!(a.answer, b.answer, "the next question");
    let c = chat.reply(&mut conv, "結束", &mut |_| {}).await.unwrap();
    assert!(c.answer.contains("已結束引導"));
    assert!(conv.walkthrough.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_question_fitting_several_services_gets_a_clarifying_question() {
    let (answerer, wts) = chat_env().await;
    let chat = Chat {
        answerer: &answerer,
        walkthroughs: &wts,
    };
    let mut conv = Conversation::default();
    let a = chat
        .reply(&mut conv, "補助要怎麼申請", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(a.kind, AnswerKind::Clarify, "{}", a.answer);
    let (_, options) = conv.clarifying.clone().expect("options kept");
    assert!(options.len() >= 2);
    let b = chat.reply(&mut conv, "2", &mut |_| {}).await.unwrap();
    assert_eq!(b.doc_id.as_deref(), Some(options[1].doc_id.as_str()));
    assert_eq!(b.kind, AnswerKind::Extractive);
}

#[tokio::test(flavor = "multi_thread")]
async fn passages_are_cut_to_the_token_budget() {
    let model = Scripted::new("請攜帶身分證[1]");
    for budget in [1usize, 45, 60, 90] {
        let answerer = Answerer::new(
            knowledge_base().await,
            Some(model.clone()),
            AnswerConfig {
                passage_tokens: budget,
                ..config()
            },
        );
        answerer
            .answer(
                "低收入戶申請要準備哪些文件？",
                &AskContext::default(),
                &mut |_| {},
            )
            .await
            .unwrap();
        let prompts = model.prompts.lock().unwrap();
        let user = &prompts.last().unwrap()[1].content;
        let passages: Vec<&str> = user.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(passages.len(), 1, "later passages do not fit: {user}");
        // The scripted model counts one token per character; the first passage is cut to
        // the budget (never below 40 characters), plus its label.
        let body = passages[0].split_once('：').unwrap().1;
        assert!(
            body.chars().count() <= budget.max(41) + 1,
            "{budget}: {} chars",
            body.chars().count()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_copied_from_a_passage_without_its_marker_is_attributed_and_kept() {
    let kb = knowledge_base().await;
    let documents = kb
        .chunks_of("senior-card")
        .into_iter()
        .find(|c| c.section == SectionKind::Documents)
        .unwrap()
        .text
        .clone();
    let line = documents
        .lines()
        .map(|l| l.trim_start_matches("- ").trim())
        .find(|l| l.chars().count() >= 8)
        .unwrap()
        .to_string();
    let (a, _) = ask_with(&line, "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Generated, "{:?}", a.llm);
    assert_eq!(a.lead, format!("{line}[1]"));
    // An echoed question is not an answer.
    let (a, _) = ask_with("敬老卡要帶什麼證件？[1]", "敬老卡要帶什麼證件？").await;
    assert_eq!(a.kind, AnswerKind::Extractive);
}

async fn named_env() -> Answerer {
    let loaded =
        knowledge::load_path(&repo().join("corpus/guides"), &LoadOptions::default()).unwrap();
    let names = assistant::answer::guide_names(loaded.documents.iter().map(|d| &d.document));
    Answerer::new(knowledge_base().await, None, config()).with_names(names)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_most_guides_mention_is_the_channel_not_the_service() {
    let a = named_env().await;
    // 「生小孩補助」 is the birth allowance's own name: it picks the guide.
    assert_eq!(
        a.named_guide("請問生小孩有補助嗎 大概多少錢").as_deref(),
        Some("birth-allowance")
    );
    assert_eq!(
        a.named_guide("急難救助送件以後要多久才會核下來").as_deref(),
        Some("emergency-relief")
    );
    // 「MyData」 and 「1999」 are titles of guides too, but most guides mention them: the
    // question goes through them and is about something else.
    assert_eq!(
        a.named_guide("在手機上用MyData驗證一定要接讀卡機嗎？"),
        None
    );
    assert_eq!(a.named_guide("國道上有坑洞，1999也可以報嗎"), None);
    assert_eq!(
        a.named_guide("我們大樓中庭的燈壞了，1999會派人來修嗎"),
        None
    );
    let ans = a
        .answer(
            "國道上有坑洞，1999也可以報嗎",
            &AskContext::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        ans.doc_id.as_deref(),
        Some("road-pothole-report"),
        "{}",
        ans.answer
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_outside_city_guides_is_answered_where_the_corpus_has_it() {
    // The bundled guides have nothing on films: handed off whatever retrieval finds.
    let a = Answerer::new(knowledge_base().await, None, config());
    let ans = a
        .answer(
            "市立電影館的借閱證要帶什麼證件",
            &AskContext::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(ans.handoff, "{}", ans.answer);
    // A corpus with a guide about the film archive answers it from that guide.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("film-archive-card.md"),
        "+++\nid = \"film-archive-card\"\ntitle = \"市立電影館借閱證\"\nbureau = \"文化局\"\n\
         category = \"文化\"\n+++\n\n市立電影館的借閱證已經停辦，改為申辦電影館之友會員卡。\n\n\
         ## 應備文件\n\n本人身分證正本，未成年人另附法定代理人同意書。\n",
    )
    .unwrap();
    let mut r = Retriever::open(None, Arc::new(NgramEmbedder), RetrieverConfig::default())
        .await
        .unwrap();
    assistant::kb::ingest(
        &mut r,
        &[dir.path().to_path_buf()],
        &LoadOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let a = Answerer::new(Arc::new(r), None, config());
    let ans = a
        .answer(
            "市立電影館的借閱證要帶什麼證件",
            &AskContext::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(!ans.handoff, "{}", ans.answer);
    assert_eq!(ans.doc_id.as_deref(), Some("film-archive-card"));
    assert!(ans.answer.contains("身分證"), "{}", ans.answer);
}
