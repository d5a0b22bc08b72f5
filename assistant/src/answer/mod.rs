//! The answer pipeline: question → retrieval → an extractive, cited answer built from the
//! matched guide's sections (always, within the retrieval time) → optionally the LLM's
//! rewrite from the same numbered passages → the grounding check → Traditional Chinese
//! (Taiwan) → the answer, or a polite hand-off when the guides don't cover the question.
//!
//! The extractive answer is the floor: the resident sees it first, and whenever the LLM's text
//! fails the grounding check, it is what they keep. [`chat`] adds conversations (follow-ups,
//! clarifying questions) and [`walkthrough`] the guided, step-by-step applications.

pub mod chat;
pub mod claims;
pub mod grounding;
pub mod lead;
pub mod safety;
pub mod scope;
pub mod walkthrough;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use knowledge::{Chunk, SectionKind};
use models::llm::{ChatMessage, ChatModel, GenerationParams, GenerationStats};
use retrieval::{Retriever, SearchHit, SearchOptions};
use serde::{Deserialize, Serialize};

use grounding::Passage;
use lead::GENERIC_WORDS;
use safety::{Alert, Triage};

/// What the resident is told when the assistant will not answer.
pub const HANDOFF_TEXT: &str = "這個問題建議撥打1999由專人為您服務。";
pub const PRIVACY_TEXT: &str =
    "基於個人資料保護，我無法提供任何人的手機、住址、身分證號碼等個人資料。";

/// Settings of the answer pipeline (`[answer]` in the configuration).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Sections retrieved per question.
    pub retrieve_k: usize,
    /// Most passages given to the LLM (and cited by the extractive answer).
    pub max_passages: usize,
    /// Most of those passages given to the LLM.
    pub llm_passages: usize,
    /// Token budget for the passages in the LLM prompt.
    pub passage_tokens: usize,
    /// Characters of one passage shown in the extractive answer.
    pub extract_chars: usize,
    /// Longest lead (the short answer shown first), in characters; its first sentence is
    /// always kept.
    pub lead_chars: usize,
    /// Below this score the best sentence is not about the question: hand off.
    pub min_lead_score: f32,
    /// The safety triage's similarity vote: the e5 cosine to an exemplar that raises an alert.
    pub safety_similarity: f32,
    /// Below this cosine similarity of the best section (e5), the question is taken as not
    /// covered by the guides and handed off.
    pub min_similarity: f32,
    /// Below this similarity, the question's words must also appear in the matched guide…
    pub strong_similarity: f32,
    /// …at least this share of them (words of two or more characters).
    pub min_coverage: f32,
    /// Generation settings for the LLM's answer.
    pub max_tokens: usize,
    pub temperature: f64,
    pub repeat_penalty: f32,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            retrieve_k: 8,
            max_passages: 4,
            llm_passages: 3,
            passage_tokens: 450,
            extract_chars: 600,
            lead_chars: 120,
            min_lead_score: 0.05,
            safety_similarity: 0.93,
            min_similarity: 0.80,
            strong_similarity: 0.88,
            min_coverage: 0.34,
            max_tokens: 120,
            temperature: 0.0,
            repeat_penalty: 1.1,
        }
    }
}

/// A cited source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// The `[n]` used in the answer text.
    pub number: usize,
    pub doc_id: String,
    /// The cited section (`doc#section.part`); empty where a whole guide is cited.
    #[serde(default)]
    pub chunk_id: String,
    pub title: String,
    /// Section label (申請資格, 應備文件, …) or the section heading.
    pub section: String,
    pub snippet: String,
}

/// How the answer was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Sentences copied from the guides, with citations.
    Extractive,
    /// The LLM's text, which passed the grounding check.
    Generated,
    /// Not answered: the resident is referred to a person.
    Handoff,
    /// A question back to the resident (ambiguous question).
    Clarify,
    /// A step of a guided walk-through.
    Walkthrough,
    /// Danger now: the number to call and the first steps, nothing else.
    Emergency,
    /// Instructions inside the question, or a request the service never fulfils: refused
    /// with a pointer to 1999.
    Refused,
}

/// What became of the LLM's attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlmOutcome {
    pub accepted: bool,
    /// Why it was rejected (grounding violations, no citation, refusal, error).
    pub reason: Option<String>,
    /// The rejected or accepted text (after S→T conversion).
    pub text: String,
    pub stats: Option<GenerationStats>,
    /// Each clause of the reply and the source sentence that supports it (or why none does).
    #[serde(default)]
    pub clauses: Vec<claims::ClauseSupport>,
}

/// Milliseconds spent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub retrieval_ms: f64,
    /// When the first answer text (the extractive one) was ready.
    pub first_visible_ms: f64,
    pub llm_first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// The answer to one question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Everything the resident reads: the lead, then the details.
    pub answer: String,
    /// The short answer alone (one to three source sentences, with their markers).
    #[serde(default)]
    pub lead: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    pub grounded: bool,
    pub kind: AnswerKind,
    /// The bureau responsible, when known.
    pub bureau: Option<String>,
    /// The document the answer is about (for follow-up questions).
    pub doc_id: Option<String>,
    /// Best section's cosine similarity.
    pub confidence: f32,
    /// How well the lead's best sentence matches the question (words, section, kind of fact).
    #[serde(default)]
    pub lead_score: f32,
    pub timings: Timings,
    pub llm: Option<LlmOutcome>,
    /// The safety triage's alert, when the message showed danger.
    #[serde(default)]
    pub alert: Option<Alert>,
}

impl Answer {
    /// A reply with no sources (hand-off, clarification, walk-through question).
    pub fn plain(kind: AnswerKind, text: impl Into<String>) -> Answer {
        Answer {
            answer: text.into(),
            lead: String::new(),
            citations: Vec::new(),
            handoff: matches!(kind, AnswerKind::Handoff | AnswerKind::Refused),
            grounded: true,
            kind,
            bureau: None,
            doc_id: None,
            confidence: 0.0,
            lead_score: 0.0,
            timings: Timings::default(),
            llm: None,
            alert: None,
        }
    }
}

/// Events while an answer is produced, for streaming front-ends.
pub enum AnswerEvent<'a> {
    /// The extractive answer (or the hand-off), ready right after retrieval.
    Draft(&'a Answer),
    /// A piece of the LLM's text as it is generated (not yet checked).
    Token(&'a str),
}

/// Conversation context for one question.
#[derive(Debug, Clone, Default)]
pub struct AskContext {
    /// Text added to the retrieval query (e.g. the topic of the previous turn).
    pub query_prefix: Option<String>,
    /// Prefer this document when it is among the results.
    pub prefer_doc: Option<String>,
}

/// The pipeline over one knowledge base and an optional LLM.
pub struct Answerer {
    retriever: Arc<Retriever>,
    llm: Option<Arc<dyn ChatModel>>,
    config: AnswerConfig,
    /// Set by the caller to stop generation (the client went away).
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    triage: Option<Arc<Triage>>,
    entities: Vec<String>,
    /// (normalised name, guide id): the names residents use for each guide.
    names: Vec<(String, String)>,
    /// Every name of each guide (title and aliases, any length), folded: the guide's topic,
    /// which says nothing about which of its sentences answers.
    topics: HashMap<String, Vec<String>>,
}

/// The fixed system prompt (kept identical across requests so its KV cache is reused).
pub const SYSTEM_PROMPT: &str = "你是臺灣某市政府1999市民熱線的線上客服助理。規則：\
1. 只能根據使用者訊息中編號的參考資料回答，不可以加入資料以外的事實、數字、金額、日期、電話、網址或文件名稱。\
2. 每一句話的句尾都要標註出處編號，例如[1]。\
3. 使用繁體中文（臺灣用語），先直接回答問題（可以或不可以、金額、地點、期限、文件），一到兩句、80字以內，不要重複問題。\
4. 參考資料不足以回答時，只回答「資料中沒有這項資訊」。\n\
範例：\n\
參考資料：\n\
[1]《公園綠地認養》辦理方式：填寫認養申請書，連同認養計畫送公園管理處審核。\n\
民眾問題：我想認養社區旁邊的公園，要怎麼做？\n\
回答：請填寫認養申請書，連同認養計畫送公園管理處審核[1]。";

const INTENTS: &[(&[&str], SectionKind)] = &[
    (
        &[
            "帶什麼",
            "帶哪些",
            "要帶",
            "準備什麼",
            "準備哪些",
            "文件",
            "證件",
            "應備",
            "資料要",
        ],
        SectionKind::Documents,
    ),
    (
        &[
            "資格",
            "條件",
            "符合",
            "可以申請嗎",
            "能申請嗎",
            "能不能申請",
            "誰可以",
            "幾歲",
        ],
        SectionKind::Eligibility,
    ),
    (
        &[
            "哪裡", "地點", "地址", "去哪", "在哪", "窗口", "櫃台", "櫃檯",
        ],
        SectionKind::Location,
    ),
    (
        &[
            "費用",
            "多少錢",
            "收費",
            "免費",
            "規費",
            "要錢",
            "付費",
            "付錢",
            "錢嗎",
            "收錢",
            "工本費",
            "要繳",
        ],
        SectionKind::Fees,
    ),
    (
        &["多久", "幾天", "期限", "何時", "什麼時候", "截止"],
        SectionKind::ProcessingTime,
    ),
    (
        &[
            "怎麼辦",
            "如何辦",
            "如何申請",
            "怎麼申請",
            "流程",
            "步驟",
            "線上申請",
            "網路申請",
            "申請方式",
            "辦理方式",
        ],
        SectionKind::HowToApply,
    ),
    (
        &["哪個單位", "哪個機關", "承辦", "誰負責", "主管機關"],
        SectionKind::Agency,
    ),
    (&["法規", "法律依據", "依據"], SectionKind::LegalBasis),
];

/// The guide sections a question asks about, in the order asked.
pub fn intents(question: &str) -> Vec<SectionKind> {
    let mut out = Vec::new();
    for (cues, kind) in INTENTS {
        if cues.iter().any(|c| question.contains(c)) && !out.contains(kind) {
            out.push(*kind);
        }
    }
    out
}

const PERSON_WORDS: &[&str] = &[
    "市長",
    "副市長",
    "局長",
    "處長",
    "議員",
    "里長",
    "立委",
    "總統",
    "院長",
    "主任",
    "科長",
    "鄰居",
    "同事",
    "前夫",
    "前妻",
    "某人",
    "別人",
    "他人",
    "這個人",
    "那個人",
    "老師",
    "醫生",
    "先生",
    "小姐",
    "承辦人",
];
const PERSONAL_DATA: &[&str] = &[
    "手機",
    "私人電話",
    "住家電話",
    "家裡電話",
    "住址",
    "住在哪",
    "家住",
    "身分證字號",
    "身分證號",
    "個資",
    "生日",
    "薪水",
    "病歷",
    "車牌",
];

/// Whether the question asks for a person's private data (手機, 住址, ID number …).
pub fn asks_personal_data(question: &str) -> bool {
    let q: String = question.chars().filter(|c| !c.is_whitespace()).collect();
    let data = PERSONAL_DATA.iter().any(|w| q.contains(w));
    // Asking about one's own data (「查詢我的個資」) is not asking about someone else.
    let own = ["我的", "自己的", "本人的"].iter().any(|w| q.contains(w));
    let person = PERSON_WORDS.iter().any(|w| q.contains(w))
        || ["他的", "她的"].iter().any(|w| q.contains(w))
        || (!own && ["查詢", "查某"].iter().any(|w| q.contains(w)));
    data && person
}

/// Verbs of asking for a service: what follows them is what the question is about.
const APPLY_VERBS: &[&str] = &[
    "申請", "請領", "申辦", "辦理", "辦", "領", "抽", "加入", "參加",
];

/// Whether `q` asks to apply for `name` (「還能申請租屋補貼嗎」 asks for 租屋補貼): the words right
/// after an asking verb are mostly the name's (the same share as naming a guide at all). A verb
/// saying what one already has (「有在領」「已領」「曾申請」) does not ask.
fn asks_to_apply_for(q: &str, name: &str) -> bool {
    let g = lead::bigram_set(name);
    let len = name.chars().count() + 2;
    let has_already = |i: usize| q[..i].ends_with(['在', '已', '有', '曾']);
    !g.is_empty()
        && APPLY_VERBS.iter().any(|v| {
            q.match_indices(v)
                .filter(|(i, _)| !has_already(*i))
                .any(|(i, _)| {
                    let after: String = q[i + v.len()..].chars().take(len).collect();
                    g.intersection(&lead::bigram_set(&after)).count() * 4 >= g.len() * 3
                })
        })
}

fn dense_similarity(hit: &SearchHit) -> Option<f32> {
    hit.contributions
        .iter()
        .find(|c| c.source == "dense")
        .map(|c| c.raw_score)
}

fn section_name(c: &Chunk) -> String {
    match c.section {
        SectionKind::Faq | SectionKind::Other if !c.heading.is_empty() => c.heading.clone(),
        _ => c.section.label().to_string(),
    }
}

/// Cuts `text` to about `max` characters at a sentence or line end.
pub fn trim_text(text: &str, max: usize) -> String {
    let clean: String = text
        .lines()
        .map(|l| {
            let t = l.trim();
            let t = t
                .strip_prefix("- ")
                .or_else(|| t.strip_prefix("* "))
                .map(|r| format!("・{r}"))
                .unwrap_or_else(|| t.to_string());
            t
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut = 0;
    for (i, (b, ch)) in clean.char_indices().enumerate() {
        if i >= max {
            break;
        }
        if matches!(ch, '。' | '\n' | '；' | '！' | '？') {
            cut = b + ch.len_utf8();
        }
    }
    if cut == 0 {
        // No sentence end: cut at the limit, but never inside a number, phone or URL.
        cut = clean
            .char_indices()
            .nth(max)
            .map(|(b, _)| b)
            .unwrap_or(clean.len());
        while let Some(prev) = clean[..cut].chars().next_back() {
            if prev.is_ascii_alphanumeric() || "-./:#%,：（）()－".contains(prev) {
                cut -= prev.len_utf8();
            } else {
                break;
            }
        }
    }
    format!("{}…", clean[..cut].trim_end())
}

fn snippet(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one.chars().take(80).collect();
    if one.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// Traditional Chinese (Taiwan phrasing) for model output (shared with transcription).
use knowledge::text::to_traditional;

/// The passages chosen for one question.
struct Selection<'a> {
    chunks: Vec<&'a Chunk>,
    doc_id: String,
    title: String,
    bureau: Option<String>,
    /// The second guide a comparison question names (its best section is among `chunks`).
    other_doc: Option<String>,
}

/// Words that ask to compare two services or whether both apply.
const COMPARE: &[&str] = &[
    "差在哪",
    "差別",
    "差異",
    "不同",
    "比較",
    "哪個好",
    "哪個比較",
    "還是",
    "同時",
    "一起領",
    "都可以",
    "兩個",
    "跟",
    "和",
];

/// What happens to a question before retrieval.
enum Screen {
    /// Answered at once with this reply.
    Reply(AnswerKind, String),
    /// Answer this question instead (instructions removed), without the LLM.
    Rewritten(String),
    Pass,
}

impl Answerer {
    pub fn new(
        retriever: Arc<Retriever>,
        llm: Option<Arc<dyn ChatModel>>,
        config: AnswerConfig,
    ) -> Answerer {
        Answerer {
            retriever,
            llm,
            config,
            cancel: None,
            triage: None,
            entities: Vec::new(),
            names: Vec::new(),
            topics: HashMap::new(),
        }
    }

    /// Stops generating as soon as `flag` is set (the extractive answer stands).
    pub fn with_cancel(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Answerer {
        self.cancel = Some(flag);
        self
    }

    /// Runs the safety triage first on every question.
    pub fn with_triage(mut self, triage: Arc<Triage>) -> Answerer {
        self.triage = Some(triage);
        self
    }

    /// The names of services and household statuses (guide titles and aliases) the claim
    /// check keeps apart.
    pub fn with_entities(mut self, entities: Vec<String>) -> Answerer {
        self.entities = entities;
        self
    }

    /// The names residents use for each guide (titles and aliases of four or more characters
    /// that are not a household status), so a question that names one service is answered from
    /// that guide when retrieval also finds it.
    pub fn with_names(mut self, names: Vec<(String, String)>) -> Answerer {
        self.topics = HashMap::new();
        for (n, d) in &names {
            self.topics
                .entry(d.clone())
                .or_default()
                .push(knowledge::text::fold_for_matching(n));
        }
        self.names = names
            .into_iter()
            .map(|(n, d)| (knowledge::text::fold_for_matching(&n), d))
            .filter(|(n, _)| {
                n.chars().count() >= 4 && !["低收入戶", "中低收入戶"].contains(&n.as_str())
            })
            .collect();
        self
    }

    /// The one guide the question names: three quarters or more of a name's character bigrams
    /// are in the question (「生小孩有補助」 names 「生小孩補助」). A name that more than a fifth
    /// of the other guides mention (「MyData」「1999」) is what the question goes through, not
    /// the service it asks about (「在手機上用MyData驗證一定要接讀卡機嗎」 is for the identity
    /// guide, 「國道上有坑洞，1999也可以報嗎」 for the pothole one): it names no guide.
    pub fn named_guide(&self, question: &str) -> Option<String> {
        let q = knowledge::text::fold_for_matching(question);
        let qg = lead::bigram_set(&q);
        let said: Vec<(&str, &str)> = self
            .names
            .iter()
            .filter(|(n, _)| {
                let g = lead::bigram_set(n);
                !g.is_empty() && g.intersection(&qg).count() * 4 >= g.len() * 3
            })
            .map(|(n, d)| (n.as_str(), d.as_str()))
            .collect();
        let mut docs: Vec<&str> = said.iter().map(|(_, d)| *d).collect();
        docs.sort_unstable();
        docs.dedup();
        if docs.len() > 1 {
            // Two guides named (「住進社會住宅了，還能申請租屋補貼嗎」): the question is about the
            // one it asks to apply for.
            let asked: Vec<&str> = self
                .names
                .iter()
                .filter(|(n, d)| docs.contains(&d.as_str()) && asks_to_apply_for(&q, n))
                .map(|(_, d)| d.as_str())
                .collect();
            return match asked.split_first() {
                Some((first, rest)) if rest.iter().all(|d| d == first) => Some(first.to_string()),
                _ => None,
            };
        }
        let generic = |n: &str, d: &str| self.mentions(n, d) * 5 > self.retriever.num_documents();
        said.iter()
            .find(|(n, d)| !generic(n, d))
            .map(|(_, d)| d.to_string())
    }

    /// Whether a document of the corpus has one of the (folded) words in its title.
    fn has_title_with(&self, words: &[String]) -> bool {
        self.retriever.titles().iter().any(|(_, t)| {
            let t = knowledge::text::fold_for_matching(t);
            words.iter().any(|w| t.contains(w.as_str()))
        })
    }

    /// How many guides other than `own` mention the (folded) name in their text.
    fn mentions(&self, name: &str, own: &str) -> usize {
        self.retriever
            .chunks()
            .filter(|c| {
                c.doc_id != own && knowledge::text::fold_for_matching(&c.text).contains(name)
            })
            .map(|c| c.doc_id.as_str())
            .collect::<HashSet<&str>>()
            .len()
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn retriever(&self) -> &Retriever {
        &self.retriever
    }

    pub fn llm(&self) -> Option<&Arc<dyn ChatModel>> {
        self.llm.as_ref()
    }

    pub fn config(&self) -> &AnswerConfig {
        &self.config
    }

    pub fn triage(&self) -> Option<&Arc<Triage>> {
        self.triage.as_ref()
    }

    /// Share of the question's words (two or more characters, not generic) found in the
    /// document's text; a longer word also counts when the text has it without its first or
    /// last character (「舊沙發」 in a guide about 「沙發」).
    pub fn coverage(&self, question: &str, doc_id: &str) -> f32 {
        let asked: HashSet<String> = retrieval::tokenizer::terms(question)
            .into_iter()
            .filter(|t| t.chars().count() >= 2 && !GENERIC_WORDS.contains(&t.as_str()))
            .collect();
        if asked.is_empty() {
            return 1.0;
        }
        let doc: String = self
            .retriever
            .chunks_of(doc_id)
            .iter()
            .map(|c| retrieval::normalize::normalize(&c.search_text()))
            .collect::<Vec<_>>()
            .join("\n");
        let found = |t: &String| {
            let cs: Vec<char> = t.chars().collect();
            doc.contains(t.as_str())
                || (cs.len() >= 3
                    && (doc.contains(&cs[1..].iter().collect::<String>())
                        || doc.contains(&cs[..cs.len() - 1].iter().collect::<String>())))
        };
        asked.iter().filter(|t| found(t)).count() as f32 / asked.len() as f32
    }

    /// Processes the system prompt so the first question does not pay for it.
    pub fn warm_up(&self) -> anyhow::Result<()> {
        if let Some(llm) = &self.llm {
            llm.warm_prefix(SYSTEM_PROMPT)?;
        }
        Ok(())
    }

    fn select<'a>(
        &'a self,
        question: &str,
        hits: &'a [SearchHit],
        ctx: &AskContext,
    ) -> Option<Selection<'a>> {
        let top = hits.first()?;
        let doc_id = ctx
            .prefer_doc
            .clone()
            .filter(|d| self.retriever.has_document(d))
            .unwrap_or_else(|| top.chunk.doc_id.clone());
        let doc_chunks = self.retriever.chunks_of(&doc_id);
        let first = doc_chunks.first()?;
        let (title, bureau) = (first.doc_title.clone(), first.bureau.clone());
        let asked = intents(question);
        let mut chosen: Vec<&Chunk> = Vec::new();
        let push = |c: &'a Chunk, chosen: &mut Vec<&'a Chunk>| {
            if !chosen.iter().any(|x| x.id == c.id) {
                chosen.push(c);
            }
        };
        if top.chunk.section == SectionKind::Answer && ctx.prefer_doc.is_none() {
            // An FAQ corpus: one answer per document. Give the best answer of each of the
            // closest documents (the resident, or the LLM, picks the one that fits).
            let floor = top.score * 0.6;
            let mut docs: Vec<&str> = Vec::new();
            for h in hits.iter().filter(|h| h.score >= floor) {
                if !docs.contains(&h.chunk.doc_id.as_str()) {
                    docs.push(&h.chunk.doc_id);
                    push(&h.chunk, &mut chosen);
                }
            }
        }
        // The best-ranked FAQ entry of the document answers the exact question; then the
        // sections the question asks about; then what retrieval ranked highest.
        if let Some(h) = hits
            .iter()
            .take(3)
            .find(|h| h.chunk.doc_id == doc_id && h.chunk.section == SectionKind::Faq)
        {
            if asked.is_empty() {
                push(&h.chunk, &mut chosen);
            }
        }
        for kind in &asked {
            for c in doc_chunks.iter().filter(|c| c.section == *kind) {
                push(c, &mut chosen);
            }
        }
        for h in hits.iter().filter(|h| h.chunk.doc_id == doc_id) {
            push(&h.chunk, &mut chosen);
        }
        if chosen.is_empty() {
            for c in doc_chunks.iter().take(2) {
                push(c, &mut chosen);
            }
        }
        chosen.truncate(self.config.max_passages.max(1));
        // A question comparing two services (or asking whether both apply) gets the best
        // section of the second guide too, when retrieval ranks it close.
        let mut other_doc = None;
        if COMPARE.iter().any(|w| question.contains(w)) && top.chunk.section != SectionKind::Answer
        {
            if let Some(h) = hits
                .iter()
                .take(6)
                .find(|h| h.chunk.doc_id != doc_id && h.score >= top.score * 0.5)
            {
                if self.coverage(question, &h.chunk.doc_id) >= self.config.min_coverage {
                    other_doc = Some(h.chunk.doc_id.clone());
                    push(&h.chunk, &mut chosen);
                }
            }
        }
        Some(Selection {
            chunks: chosen,
            doc_id,
            title,
            bureau,
            other_doc,
        })
    }

    fn citations(&self, sel: &Selection<'_>) -> Vec<Citation> {
        sel.chunks
            .iter()
            .enumerate()
            .map(|(i, c)| Citation {
                number: i + 1,
                doc_id: c.doc_id.clone(),
                chunk_id: c.id.clone(),
                title: c.doc_title.clone(),
                section: section_name(c),
                snippet: snippet(&c.text),
            })
            .collect()
    }

    /// The details under the lead: the chosen sections, each cited.
    fn details(&self, sel: &Selection<'_>) -> String {
        let mut out = format!("詳細說明（{}", sel.title);
        if let Some(b) = &sel.bureau {
            out.push_str(&format!("，{b}"));
        }
        out.push_str("）：\n");
        let mut others = false;
        for (i, c) in sel.chunks.iter().enumerate() {
            if c.doc_id != sel.doc_id {
                if !others {
                    out.push_str("\n其他可能相關的說明：\n");
                    others = true;
                }
                out.push_str(&format!(
                    "・{}：\n{}[{}]\n",
                    c.doc_title,
                    trim_text(&c.text, self.config.extract_chars / 2),
                    i + 1
                ));
                continue;
            }
            let body = trim_text(&c.text, self.config.extract_chars);
            if c.section != SectionKind::Answer {
                out.push_str(&format!("【{}】\n", section_name(c)));
            }
            out.push_str(&body);
            out.push_str(&format!("[{}]\n", i + 1));
        }
        out.trim_end().to_string()
    }

    /// The lead: the sentences that answer what was asked, each with its citation marker;
    /// empty when no sentence is about the question.
    fn lead<'a>(&'a self, question: &str, sel: &mut Selection<'a>) -> (String, f32) {
        // Cues and words are Traditional (「敬老卡几岁可以办」 asks the age too).
        let question = &to_traditional(question);
        let intents = intents(question);
        let mut q = lead::Query::new(question, &intents);
        // The guide's own names match every one of its sentences: they do not pick one.
        let mut topic: Vec<String> = self.topics.get(&sel.doc_id).cloned().unwrap_or_default();
        if let Some(c) = sel.chunks.iter().find(|c| c.doc_id == sel.doc_id) {
            topic.push(knowledge::text::fold_for_matching(&c.doc_title));
        }
        let named = q.set_topic(&topic);
        // The words that said which section is wanted (「證件」 in 「要帶什麼證件」) do not
        // pick a sentence within it.
        let cues: Vec<String> = INTENTS
            .iter()
            .filter(|(_, kind)| intents.contains(kind))
            .flat_map(|(cues, _)| cues.iter())
            .filter(|c| question.contains(**c))
            .map(|c| c.to_string())
            .collect();
        q.drop_terms(&cues);
        // FAQ corpora: one answer per document, so the lead comes from the best one; a guide's
        // lead may come from any of its sections (the section is then cited and shown).
        let pool: Vec<&Chunk> =
            if sel.chunks.first().map(|c| c.section) == Some(SectionKind::Answer) {
                sel.chunks.iter().take(1).copied().collect()
            } else {
                self.retriever.chunks_of(&sel.doc_id)
            };
        let mut scored = lead::score(&q, &pool);
        let best = scored.first().map(|s| s.score).unwrap_or(0.0);
        if let Some(other) = &sel.other_doc {
            let extra: Vec<&Chunk> = sel
                .chunks
                .iter()
                .filter(|c| &c.doc_id == other)
                .copied()
                .collect();
            if let Some(s) = lead::score(&q, &extra).into_iter().next() {
                scored.insert(1.min(scored.len()), s);
            }
        }
        let mut chosen = lead::choose(&scored, self.config.lead_chars);
        if sel.other_doc.is_some() {
            // Both guides' sentences stay, whatever their scores.
            for s in scored.iter().take(2) {
                if !chosen.iter().any(|c| c.sentence.text == s.sentence.text) {
                    chosen.push(s.clone());
                }
            }
        }
        // The sections the lead quotes are cited first.
        for s in chosen.iter().rev() {
            if !sel.chunks.iter().any(|x| x.id == s.sentence.chunk.id) {
                sel.chunks.insert(0, s.sentence.chunk);
            }
        }
        sel.chunks.truncate(self.config.max_passages.max(1) + 1);
        let number = |c: &Chunk| {
            sel.chunks
                .iter()
                .position(|x| x.id == c.id)
                .map(|i| i + 1)
                .unwrap_or(1)
        };
        let text = chosen
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // An introduction followed by its first item keeps its colon; the item cites.
                let continued = chosen.get(i + 1).is_some_and(|n| {
                    n.sentence.chunk.id == s.sentence.chunk.id
                        && n.sentence.index == s.sentence.index + 1
                });
                if continued && lead::introduces(&s.sentence.text) {
                    return s.sentence.text.clone();
                }
                let t = s.sentence.text.trim_end_matches(['：', ':']);
                let t = if t.ends_with(['。', '！', '？', '；']) {
                    t.to_string()
                } else {
                    format!("{t}。")
                };
                // The marker goes before the closing punctuation: 「…65歲[1]。」.
                let (body, end) = t.split_at(t.len() - '。'.len_utf8());
                format!("{body}[{}]{end}", number(s.sentence.chunk))
            })
            .collect::<String>();
        // A question that names the guide is about it even when nothing else it says picks a
        // sentence (the lead then follows the question's intent or opens the guide).
        let best = if named > 0 {
            best.max(self.config.min_lead_score)
        } else {
            best
        };
        (text, best)
    }

    fn prompt(&self, question: &str, sel: &Selection<'_>, lead: &str) -> (String, Vec<String>) {
        let llm = self.llm.as_ref().expect("prompt only with an LLM");
        let mut budget = self.config.passage_tokens;
        let mut texts = Vec::new();
        let mut body = String::from("參考資料：\n");
        for (i, c) in sel
            .chunks
            .iter()
            .take(self.config.llm_passages.max(1))
            .enumerate()
        {
            let mut text = c.text.trim().to_string();
            let mut tokens = llm.count_tokens(&text);
            if i > 0 && tokens > budget {
                // Later passages are given whole or not at all.
                break;
            }
            // The first passage is cut to fit, shrinking strictly each round.
            let mut max_chars = text.chars().count();
            while tokens > budget && max_chars > 40 {
                max_chars = (max_chars * budget.max(1) / tokens.max(1))
                    .min(max_chars - max_chars / 8 - 1)
                    .max(40);
                text = trim_text(c.text.trim(), max_chars);
                tokens = llm.count_tokens(&text);
            }
            budget = budget.saturating_sub(tokens);
            body.push_str(&format!(
                "[{}]《{}》{}：{}\n",
                i + 1,
                c.doc_title,
                section_name(c),
                text
            ));
            texts.push(text);
        }
        if !lead.is_empty() {
            body.push_str(&format!("\n最相關的句子：{lead}\n"));
        }
        body.push_str(&format!("\n民眾問題：{question}"));
        (body, texts)
    }

    /// Safety, language, manipulation, privacy and scope, before retrieval.
    fn screen(&self, question: &str) -> Screen {
        // Instructions first: what remains of a manipulated message is screened like any
        // question (it may be in English, or ask for someone's data).
        let (question, rewritten) = match scope::manipulation(question) {
            Some(m) => match m.question {
                Some(q) => (q, true),
                None => return Screen::Reply(AnswerKind::Refused, scope::REFUSAL.into()),
            },
            None => (question.to_string(), false),
        };
        if scope::is_foreign(&question) {
            return if scope::foreign_emergency(&question) {
                Screen::Reply(AnswerKind::Emergency, scope::ENGLISH_EMERGENCY.into())
            } else {
                Screen::Reply(AnswerKind::Handoff, scope::ENGLISH_REPLY.into())
            };
        }
        if asks_personal_data(&question) {
            return Screen::Reply(AnswerKind::Handoff, format!("{PRIVACY_TEXT}{HANDOFF_TEXT}"));
        }
        let topics = scope::out_of_scope(&question);
        if !topics.is_empty() && !self.has_title_with(&topics) {
            return Screen::Reply(AnswerKind::Handoff, HANDOFF_TEXT.into());
        }
        if rewritten {
            Screen::Rewritten(question)
        } else {
            Screen::Pass
        }
    }

    /// A reply with no sources, shown at once.
    fn plain_reply(
        &self,
        kind: AnswerKind,
        text: String,
        alert: Option<Alert>,
        started: Instant,
        on_event: &mut (dyn FnMut(AnswerEvent<'_>) + Send),
    ) -> Answer {
        let mut a = Answer::plain(kind, text);
        a.lead = a.answer.clone();
        a.alert = alert;
        a.timings.first_visible_ms = ms(started);
        a.timings.total_ms = a.timings.first_visible_ms;
        on_event(AnswerEvent::Draft(&a));
        a
    }

    /// Answers one question. `on_event` sees the draft (extractive) answer as soon as it
    /// exists and the LLM's text as it streams.
    pub async fn answer(
        &self,
        question: &str,
        ctx: &AskContext,
        on_event: &mut (dyn FnMut(AnswerEvent<'_>) + Send),
    ) -> anyhow::Result<Answer> {
        let started = Instant::now();
        let question = question.trim();
        if question.is_empty() {
            anyhow::bail!("the question is empty");
        }
        // One embedding of the question serves the safety vote and retrieval.
        let vector = self.retriever.embed_query(question).await.ok();
        let unit_vector = vector.as_ref().map(|v| safety::unit(v.clone()));
        let alert = self
            .triage
            .as_ref()
            .and_then(|t| t.check(question, unit_vector.as_deref()));
        // Life in danger now: the number and the first steps, nothing else. Protection,
        // report-type hazards and advice lead with their alert, then the guide's answer.
        if let Some(a) = alert.as_ref().filter(|a| a.alone) {
            let text = a.text();
            return Ok(self.plain_reply(AnswerKind::Emergency, text, alert, started, on_event));
        }
        let (question, vector, use_llm) = match self.screen(question) {
            Screen::Reply(kind, text) => {
                return Ok(self.plain_reply(kind, text, alert, started, on_event));
            }
            Screen::Rewritten(q) => {
                let v = self.retriever.embed_query(&q).await.ok();
                (q, v, false)
            }
            Screen::Pass => (question.to_string(), vector, true),
        };
        let question = question.as_str();
        let query = match &ctx.query_prefix {
            Some(p) => format!("{p} {question}"),
            None => question.to_string(),
        };
        let hits = self
            .retriever
            .search_embedded(
                &query,
                if ctx.query_prefix.is_some() {
                    None
                } else {
                    vector.as_deref()
                },
                &SearchOptions {
                    k: self.config.retrieve_k,
                    ..Default::default()
                },
            )
            .await?;
        let retrieval_ms = ms(started);
        // The best dense similarity among the first hits (fusion may put a BM25 match first).
        let confidence = hits
            .iter()
            .take(3)
            .filter_map(dense_similarity)
            .fold(0.0, f32::max);
        // A guide the question names, when retrieval finds it too, is the one to answer from.
        let named = ctx
            .prefer_doc
            .is_none()
            .then(|| self.named_guide(question))
            .flatten()
            .filter(|d| hits.iter().any(|h| &h.chunk.doc_id == d));
        let ctx = &match &named {
            Some(d) => AskContext {
                prefer_doc: Some(d.clone()),
                ..ctx.clone()
            },
            None => ctx.clone(),
        };
        let covered = ctx.prefer_doc.is_some()
            || confidence >= self.config.strong_similarity
            || (confidence >= self.config.min_similarity
                && hits.first().is_some_and(|h| {
                    self.coverage(question, &h.chunk.doc_id) >= self.config.min_coverage
                }));
        tracing::debug!(
            confidence,
            covered,
            named = ?named,
            coverage = hits
                .first()
                .map(|h| self.coverage(question, &h.chunk.doc_id))
                .unwrap_or(0.0),
            "retrieved"
        );
        let sel = if covered {
            self.select(question, &hits, ctx)
        } else {
            None
        };
        let mut sel = sel;
        let lead = sel.as_mut().map(|s| self.lead(question, s));
        let lead_score = lead.as_ref().map(|l| l.1).unwrap_or(0.0);
        let Some((sel, (lead, _))) = sel
            .zip(lead)
            .filter(|(_, (l, score))| !l.is_empty() && *score >= self.config.min_lead_score)
        else {
            let mut a = self.plain_reply(
                AnswerKind::Handoff,
                with_alert(alert.as_ref(), HANDOFF_TEXT),
                alert,
                started,
                on_event,
            );
            a.confidence = confidence;
            a.lead_score = lead_score;
            a.timings.retrieval_ms = retrieval_ms;
            return Ok(a);
        };

        let citations = self.citations(&sel);
        let details = self.details(&sel);
        let lead = with_alert(alert.as_ref(), &lead);
        let text = format!("{lead}\n\n{details}");
        let sources: Vec<String> = sel
            .chunks
            .iter()
            .map(|c| cited_text(&c.doc_title, &c.text))
            .collect();
        let report = grounding::check(&text, &numbered(&sources), &allowed(question));
        let mut answer = Answer {
            answer: text,
            lead,
            citations,
            handoff: false,
            grounded: report.is_grounded(),
            kind: AnswerKind::Extractive,
            bureau: sel.bureau.clone(),
            doc_id: Some(sel.doc_id.clone()),
            confidence,
            lead_score,
            timings: Timings {
                retrieval_ms,
                first_visible_ms: ms(started),
                llm_first_token_ms: None,
                total_ms: 0.0,
            },
            llm: None,
            alert,
        };
        on_event(AnswerEvent::Draft(&answer));
        if let Some(llm) = self.llm.clone().filter(|_| use_llm) {
            let outcome = self.rephrase(
                &llm,
                question,
                &sel,
                &mut answer,
                details,
                started,
                on_event,
            );
            answer.llm = Some(outcome);
        }
        answer.timings.total_ms = ms(started);
        Ok(answer)
    }

    /// The LLM rephrases the lead; the rephrasing replaces it only when every clause is
    /// supported by a cited sentence and the facts check passes.
    #[allow(clippy::too_many_arguments)]
    fn rephrase(
        &self,
        llm: &Arc<dyn ChatModel>,
        question: &str,
        sel: &Selection<'_>,
        answer: &mut Answer,
        details: String,
        started: Instant,
        on_event: &mut (dyn FnMut(AnswerEvent<'_>) + Send),
    ) -> LlmOutcome {
        let (user, texts) = self.prompt(question, sel, &answer.lead);
        let messages = [ChatMessage::system(SYSTEM_PROMPT), ChatMessage::user(user)];
        let params = GenerationParams {
            max_tokens: self.config.max_tokens,
            temperature: self.config.temperature,
            repeat_penalty: self.config.repeat_penalty,
            // Echoes of the prompt's format end the reply.
            stop: vec![
                "\n[".into(),
                "參考資料".into(),
                "民眾問題".into(),
                "最相關".into(),
            ],
            ..GenerationParams::default()
        };
        let mut raw = String::new();
        let llm_started = Instant::now();
        let mut first_token: Option<f64> = None;
        let result = tokio::task::block_in_place(|| {
            llm.chat(&messages, &params, &mut |piece| {
                if first_token.is_none() {
                    first_token = Some(ms(started));
                }
                raw.push_str(piece);
                on_event(AnswerEvent::Token(piece));
                !degenerate(&raw) && !self.cancelled()
            })
        });
        answer.timings.llm_first_token_ms = first_token;
        let given_texts: Vec<String> = texts
            .iter()
            .zip(&sel.chunks)
            .map(|(t, c)| cited_text(&c.doc_title, t))
            .collect();
        let given = numbered(&given_texts);
        let outcome = match result {
            Ok(stats) => {
                let mut text = to_traditional(raw.trim());
                if grounding::citations(&text).is_empty() {
                    if let Some(n) = copied_from(&text, &given_texts) {
                        // A reply copied from one passage without its marker: cite it.
                        text.push_str(&format!("[{n}]"));
                    }
                }
                let report = grounding::check(&text, &given, &allowed(question));
                let sources: Vec<claims::Source<'_>> = sel
                    .chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| claims::Source {
                        number: i + 1,
                        title: &c.doc_title,
                        text: &c.text,
                    })
                    .collect();
                let clauses = claims::check(&text, &sources, question, &self.entities);
                let plain = grounding::strip_citations(&text);
                let reason = if text.is_empty() {
                    Some("empty".to_string())
                } else if text.contains("資料中沒有") {
                    Some("the model found no answer in the passages".to_string())
                } else if plain.trim_end().ends_with(['？', '?']) {
                    Some("the reply is a question, not an answer".to_string())
                } else if report.cited.is_empty() {
                    Some("no citation".to_string())
                } else if !report.is_grounded() {
                    Some(format!("grounding: {:?}", report.violations))
                } else {
                    clauses.iter().find(|c| c.problem.is_some()).map(|c| {
                        format!(
                            "clause 「{}」: {}",
                            c.clause,
                            c.problem.clone().unwrap_or_default()
                        )
                    })
                };
                if reason.is_none() {
                    let passages: Vec<&str> = sel.chunks.iter().map(|c| c.text.as_str()).collect();
                    let text = spell_as_sources(&text, &passages);
                    answer.lead = with_alert(answer.alert.as_ref(), &text);
                    answer.answer = format!("{}\n\n{details}", answer.lead);
                    answer.kind = AnswerKind::Generated;
                    answer.grounded = true;
                }
                LlmOutcome {
                    accepted: reason.is_none(),
                    reason,
                    text,
                    stats: Some(stats),
                    clauses,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "generation failed; keeping the extractive answer");
                LlmOutcome {
                    accepted: false,
                    reason: Some(format!("error: {e}")),
                    text: String::new(),
                    stats: None,
                    clauses: Vec::new(),
                }
            }
        };
        tracing::debug!(
            accepted = outcome.accepted,
            llm_ms = llm_started.elapsed().as_millis() as u64,
            "llm answer checked"
        );
        outcome
    }
}

/// Characters that matching folds together but a reader sees as a slip: (the form Taiwan's
/// guides use, its variant). A kept reply takes the cited passages' spelling: 「裡長」 becomes
/// 「里長」 where the guide writes 里長 (but 「這裡」 stays), and 説 is always 說.
const VARIANTS: &[(char, char)] = &[('里', '裡'), ('說', '説'), ('裡', '里')];

/// `text` with each variant character spelled as the passages spell it next to the same
/// neighbour (a bigram the passages have, and the text's own bigram they do not).
pub fn spell_as_sources(text: &str, passages: &[&str]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let has = |a: char, b: char| {
        let bigram: String = [a, b].iter().collect();
        passages.iter().any(|p| p.contains(&bigram))
    };
    let mut out = chars.clone();
    for (i, &c) in chars.iter().enumerate() {
        if c == '説' {
            out[i] = '說';
            continue;
        }
        for &(want, variant) in VARIANTS {
            if c != variant {
                continue;
            }
            let next = chars.get(i + 1).copied();
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let by_next = next.is_some_and(|n| has(want, n) && !has(c, n));
            let by_prev = prev.is_some_and(|p| has(p, want) && !has(p, c));
            if by_next || by_prev {
                out[i] = want;
            }
        }
    }
    out.into_iter().collect()
}

/// The names the claim check keeps apart: each guide's title (before any 「（」) and its
/// aliases of three or more characters, and the household statuses benefits depend on.
pub fn entities<'a>(docs: impl Iterator<Item = &'a knowledge::Document>) -> Vec<String> {
    let mut out: Vec<String> = [
        "低收入戶",
        "中低收入戶",
        "弱勢家庭",
        "一般家庭",
        "特殊境遇家庭",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for d in docs {
        let base = d.title.split(['（', '(']).next().unwrap_or_default().trim();
        for name in std::iter::once(base).chain(d.aliases.iter().map(String::as_str)) {
            if name.chars().count() >= 3 && !out.iter().any(|x| x == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// (name, guide id) for every guide's title (before any 「（」) and aliases.
pub fn guide_names<'a>(
    docs: impl Iterator<Item = &'a knowledge::Document>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in docs {
        let base = d.title.split(['（', '(']).next().unwrap_or_default().trim();
        out.push((base.to_string(), d.id.clone()));
        for a in &d.aliases {
            out.push((a.clone(), d.id.clone()));
        }
    }
    out
}

/// A report-type hazard's alert (what to do now) before the answer.
fn with_alert(alert: Option<&Alert>, text: &str) -> String {
    match alert {
        Some(a) => format!("{}\n\n{text}", a.text()),
        None => text.to_string(),
    }
}

/// The passage (1-based) a reply was copied from: at least 80% of the reply's character
/// bigrams occur in it.
pub fn copied_from(reply: &str, passages: &[String]) -> Option<usize> {
    let grams = |t: &str| -> Vec<(char, char)> {
        let cs: Vec<char> = t.chars().filter(|c| !c.is_whitespace()).collect();
        cs.windows(2).map(|w| (w[0], w[1])).collect()
    };
    let reply_grams = grams(reply);
    if reply_grams.len() < 4 {
        return None;
    }
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pg: HashSet<(char, char)> = grams(p).into_iter().collect();
            let hit = reply_grams.iter().filter(|g| pg.contains(g)).count();
            (i + 1, hit as f64 / reply_grams.len() as f64)
        })
        .filter(|(_, share)| *share >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n)
}

/// Whether generated text has started repeating itself (a small model's failure mode): the
/// line being written, once 12 characters long, already appeared earlier. Generation stops
/// there; the grounding check then judges what was written.
pub fn degenerate(text: &str) -> bool {
    let Some((before, current)) = text.rsplit_once('\n') else {
        return false;
    };
    let current = current.trim();
    current.chars().count() >= 12 && before.contains(current)
}

/// A cited section as the grounding check reads it: the guide's title and the section text.
pub fn cited_text(title: &str, text: &str) -> String {
    format!("{title}\n{text}")
}

/// Source texts as the passages `[1]`, `[2]`, … in order.
pub fn numbered(texts: &[String]) -> Vec<Passage<'_>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Passage {
            number: i + 1,
            text: t,
        })
        .collect()
}

/// What an answer may say beyond its sources: the resident's own question and the product's
/// fixed hand-off sentences.
pub fn allowed(question: &str) -> [&str; 3] {
    [question, HANDOFF_TEXT, PRIVACY_TEXT]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_reply_is_spelled_as_its_sources() {
        let guide = ["行動不便的長者可請里長或里幹事協助代辦。請到這裡的服務台說明狀況。"];
        assert_eq!(
            spell_as_sources("可請裡長或里幹事協助代辦，打 1999 説明位置", &guide),
            "可請里長或里幹事協助代辦，打 1999 說明位置"
        );
        // 裡 where it means "inside" stays, and so does a variant the sources do not decide.
        assert_eq!(spell_as_sources("這裡的服務台", &guide), "這裡的服務台");
        assert_eq!(spell_as_sources("家裡有人", &guide), "家裡有人");
    }

    #[test]
    fn the_guide_asked_for_is_the_one_after_the_verb() {
        let q = "我已經住進社會住宅了，還能申請租屋補貼嗎";
        assert!(asks_to_apply_for(q, "租屋補貼"));
        assert!(!asks_to_apply_for(q, "社會住宅"));
        let q = "我有在領租金補貼，還能抽社宅嗎";
        assert!(asks_to_apply_for(q, "社宅") && !asks_to_apply_for(q, "租金補貼"));
        assert!(!asks_to_apply_for("敬老卡遺失怎麼辦", "敬老卡"));
    }

    #[test]
    fn intents_follow_the_question() {
        assert_eq!(intents("那要帶什麼？"), vec![SectionKind::Documents]);
        assert_eq!(
            intents("要去哪裡辦？費用多少錢？"),
            vec![SectionKind::Location, SectionKind::Fees]
        );
        assert!(intents("敬老卡是什麼").is_empty());
    }

    #[test]
    fn personal_data_requests_are_recognised() {
        assert!(asks_personal_data("市長的手機號碼是多少？"));
        assert!(asks_personal_data("可以告訴我里長住在哪嗎"));
        assert!(asks_personal_data("幫我查隔壁鄰居的身分證字號"));
        assert!(!asks_personal_data("區公所的電話是多少？"));
        assert!(!asks_personal_data("手機可以申請敬老卡嗎"));
    }

    #[test]
    fn trimming_cuts_at_a_sentence_end_and_marks_the_cut() {
        let t = "第一句很長的說明。第二句也很長的說明。第三句。";
        let cut = trim_text(t, 12);
        assert_eq!(cut, "第一句很長的說明。…");
        assert_eq!(trim_text("- 身分證\n- 印章", 50), "・身分證\n・印章");
        // A hard cut never splits a phone number or a URL.
        assert_eq!(trim_text("請撥打專線0800-009-609洽詢", 10), "請撥打專線…");
        assert_eq!(trim_text("網址https://www.gov.tw/a", 8), "網址…");
    }

    #[test]
    fn a_reply_copied_from_one_passage_is_attributed_to_it() {
        let passages = vec![
            "路燈故障請撥打1999通報。".to_string(),
            "敬老卡請攜帶身分證與照片到區公所申請。".to_string(),
        ];
        assert_eq!(
            copied_from("請攜帶身分證與照片到區公所申請", &passages),
            Some(2)
        );
        assert_eq!(copied_from("請帶健保卡去醫院掛號看診", &passages), None);
        assert_eq!(copied_from("好", &passages), None);
    }

    #[test]
    fn repeated_lines_are_detected() {
        assert!(degenerate(
            "敬老卡是市政府發給長者的票證。\n\n敬老卡是市政府發給長者的"
        ));
        assert!(!degenerate("請帶身分證[1]\n請帶照片[2]"));
        assert!(!degenerate("沒有換行的一段很長很長很長的文字"));
    }

    #[test]
    fn model_output_is_converted_to_taiwan_traditional() {
        assert_eq!(to_traditional("软件和信息"), "軟體和資訊");
        assert_eq!(to_traditional("身分證"), "身分證");
        assert_eq!(to_traditional("请携带身份证"), "請攜帶身分證");
        assert_eq!(to_traditional("土地使用分區管制"), "土地使用分區管制");
    }
}
