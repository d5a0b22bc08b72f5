//! The answer first, short: the one to three sentences of a guide that answer what was asked,
//! taken verbatim (a table row becomes 「列：欄 值，欄 值」 with the table's own words).
//!
//! Every sentence of the candidate sections is scored against the question: the question's
//! content words it contains (weighted by how rare they are in the guide) and their character
//! bigrams, the section the question asks about (文件, 資格, 地點, 費用, 期限, 方式 …), the kind of
//! fact asked (an amount, an age, a duration, yes or no), and whether the sentence opens the
//! answer of a guide FAQ whose question is close to the resident's. The best sentence leads;
//! the next ones join while they add something and the lead stays short.

use std::collections::{HashMap, HashSet};

use knowledge::{Chunk, SectionKind};

/// A sentence of a guide with where it comes from.
#[derive(Debug, Clone)]
pub struct Sentence<'a> {
    pub text: String,
    pub chunk: &'a Chunk,
    /// Position within its chunk.
    pub index: usize,
}

/// Characters that end a sentence.
const ENDS: &[char] = &['。', '！', '？', '；', '!', '?'];

/// Strips list markers and emphasis from a line of guide Markdown.
fn clean_line(line: &str) -> String {
    let mut t = line.trim();
    for p in ["- ", "* ", "・", "‧"] {
        if let Some(r) = t.strip_prefix(p) {
            t = r.trim_start();
        }
    }
    // "1. ", "2、", "(1)", "（1）"
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && digits <= 2 {
        let rest = &t[digits..];
        for p in [". ", "、", "."] {
            if let Some(r) = rest.strip_prefix(p) {
                t = r.trim_start();
                break;
            }
        }
    }
    for (open, close) in [("(", ")"), ("（", "）")] {
        if let Some(r) = t.strip_prefix(open) {
            if let Some((n, rest)) = r.split_once(close) {
                if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
                    t = rest.trim_start();
                }
            }
        }
    }
    t.replace("**", "")
}

fn table_cells(line: &str) -> Option<Vec<String>> {
    let l = line.trim();
    if !l.starts_with('|') {
        return None;
    }
    Some(
        l.trim_matches('|')
            .split('|')
            .map(|c| c.trim().replace("**", ""))
            .collect(),
    )
}

/// A chunk's text as sentences: prose cut at sentence ends, list items one each, table rows
/// as 「first cell：header value，header value」.
pub fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in text.lines() {
        if let Some(cells) = table_cells(line) {
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
            {
                continue; // the separator row
            }
            match &header {
                None => header = Some(cells),
                Some(h) => {
                    let mut s = cells.first().cloned().unwrap_or_default();
                    let rest: Vec<String> = cells
                        .iter()
                        .enumerate()
                        .skip(1)
                        .map(|(i, c)| match h.get(i) {
                            Some(name) if !name.is_empty() => format!("{name} {c}"),
                            _ => c.clone(),
                        })
                        .collect();
                    if !rest.is_empty() {
                        s.push('：');
                        s.push_str(&rest.join("，"));
                    }
                    out.push(s);
                }
            }
            continue;
        }
        header = None;
        let line = clean_line(line);
        // The aliases the loader adds to a guide's overview are for search, not answers.
        if line.is_empty() || line.starts_with("（又稱") {
            continue;
        }
        let mut cur = String::new();
        for c in line.chars() {
            cur.push(c);
            if ENDS.contains(&c) {
                let s = cur.trim().to_string();
                if s.chars().count() > 1 {
                    out.push(s);
                }
                cur.clear();
            }
        }
        let s = cur.trim().to_string();
        if s.chars().count() > 1 {
            out.push(s);
        }
    }
    out
}

/// What kind of fact a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Amount,
    Age,
    Duration,
    YesNo,
    Other,
}

/// The kind of fact asked, from the question's wording.
pub fn asked(question: &str) -> Asked {
    let q = question;
    let has = |ws: &[&str]| ws.iter().any(|w| q.contains(w));
    if has(&[
        "多少錢",
        "多少元",
        "幾元",
        "金額",
        "領多少",
        "補助多少",
        "給多少",
        "多少點",
        "幾點",
        "多少",
    ]) && !has(&["多少天", "多少時間", "多久"])
    {
        Asked::Amount
    } else if has(&["幾歲", "年紀", "年齡"]) {
        Asked::Age
    } else if has(&[
        "多久",
        "幾天",
        "多少天",
        "什麼時候",
        "何時",
        "期限",
        "截止",
        "幾個月",
    ]) {
        Asked::Duration
    } else if has(&[
        "可以",
        "能不能",
        "能否",
        "是否",
        "會不會",
        "有沒有",
        "要不要",
        "需不需要",
        "嗎",
        "是不是",
    ]) {
        Asked::YesNo
    } else {
        Asked::Other
    }
}

/// 「我今年60歲了，應該可以辦了吧」: an age said in a question that asks nothing else (no
/// section intent) asks about the age limit; 「我媽70歲要怎麼辦」 asks how.
fn states_an_age(q: &str) -> bool {
    let cs: Vec<char> = q.chars().collect();
    cs.windows(2)
        .any(|w| w[1] == '歲' && (w[0].is_ascii_digit() || "一二三四五六七八九十".contains(w[0])))
}

fn answers_kind(s: &str, kind: Asked) -> bool {
    let digit = s.chars().any(|c| c.is_ascii_digit());
    match kind {
        Asked::Amount => (digit || s.contains('萬')) && (s.contains('元') || s.contains('點')),
        Asked::Age => s.contains('歲'),
        Asked::Duration => {
            (digit || s.contains(['一', '二', '兩', '三', '半']))
                && ["天", "週", "個月", "年", "日", "工作天", "小時"]
                    .iter()
                    .any(|u| s.contains(u))
        }
        Asked::YesNo => [
            "可以",
            "不能",
            "不可",
            "不用",
            "不必",
            "免",
            "須",
            "必須",
            "需要",
            "不需",
            "無法",
            "擇一",
            "只能",
            "才能",
            "不會",
            "會",
            "沒有",
            "不受",
            "不包括",
            "包括",
        ]
        .iter()
        .any(|w| s.contains(w)),
        Asked::Other => false,
    }
}

/// Character bigrams of the CJK and alphanumeric characters of `s`.
fn bigrams(s: &str) -> HashSet<(char, char)> {
    let cs: Vec<char> = s
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| if c == '臺' { '台' } else { c })
        .collect();
    cs.windows(2).map(|w| (w[0], w[1])).collect()
}

/// The character bigrams of `s` (for name matching).
pub fn bigram_set(s: &str) -> HashSet<(char, char)> {
    bigrams(s)
}

fn jaccard(a: &HashSet<(char, char)>, b: &HashSet<(char, char)>) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.intersection(b).count() as f32 / a.union(b).count() as f32
}

/// Words that carry no topic: asking words, politeness, pronouns, time (also ignored by the
/// answerer's coverage check).
pub const GENERIC_WORDS: &[&str] = &[
    "今天",
    "明天",
    "昨天",
    "現在",
    "目前",
    "請問",
    "可以",
    "怎麼",
    "如何",
    "什麼",
    "需要",
    "我們",
    "你們",
    "他們",
    "一下",
    "知道",
    "哪裡",
    "多少",
    "時候",
    "還是",
    "是否",
    "幫忙",
    "謝謝",
    "你好",
    "您好",
    "想要",
    "告訴",
    "推薦",
    "有沒有",
    "為什麼",
    "應該",
];

/// More question scaffolding that picks no sentence.
const QUESTION_WORDS: &[&str] = &[
    "不知道",
    "要怎麼",
    "怎麼辦",
    "怎樣",
    "能不能",
    "是不是",
    "會不會",
    "一個",
    "這個",
    "那個",
    "我的",
    "我家",
    "我們家",
    "申請",
    "辦理",
    "請問一下",
    "問一下",
    "想問",
    "想請問",
];

/// The question's content words (two or more characters, not generic).
pub fn content_terms(question: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    retrieval::tokenizer::terms(question)
        .into_iter()
        .filter(|t| {
            t.chars().count() >= 2
                && !GENERIC_WORDS.contains(&t.as_str())
                && !QUESTION_WORDS.contains(&t.as_str())
        })
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// One scored sentence.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    pub sentence: Sentence<'a>,
    pub score: f32,
}

/// How a question relates to candidate sentences.
pub struct Query<'q> {
    pub text: &'q str,
    pub intents: &'q [SectionKind],
    /// The guide's own names (see [`Query::set_topic`]).
    topic: Vec<String>,
    terms: Vec<String>,
    grams: HashSet<(char, char)>,
    kind: Asked,
}

impl<'q> Query<'q> {
    pub fn new(text: &'q str, intents: &'q [SectionKind]) -> Query<'q> {
        let terms = content_terms(text);
        let grams = terms.iter().flat_map(|t| bigrams(t)).collect();
        let kind = match asked(text) {
            Asked::YesNo | Asked::Other if intents.is_empty() && states_an_age(text) => Asked::Age,
            k => k,
        };
        Query {
            text,
            intents,
            topic: Vec::new(),
            terms,
            grams,
            kind,
        }
    }

    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// Drops the terms that only name the guide (「敬老卡」 in 「敬老卡要去哪裡辦」): within
    /// that guide they match every sentence, so what is asked (哪裡) decides.
    /// Returns how many of the question's terms named the guide.
    pub fn set_topic(&mut self, names: &[String]) -> usize {
        let folded: Vec<String> = self
            .terms
            .iter()
            .map(|t| knowledge::text::fold_for_matching(t))
            .collect();
        let keep: Vec<bool> = folded
            .iter()
            .map(|t| !names.iter().any(|n| n.contains(t.as_str())))
            .collect();
        let mut i = 0;
        self.terms.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.grams = self.terms.iter().flat_map(|t| bigrams(t)).collect();
        self.topic = names.to_vec();
        keep.iter().filter(|k| !**k).count()
    }

    /// Drops the terms inside any of `words` (the intent cues the question used).
    pub fn drop_terms(&mut self, words: &[String]) {
        self.terms
            .retain(|t| !words.iter().any(|w| w.contains(t.as_str())));
        self.grams = self.terms.iter().flat_map(|t| bigrams(t)).collect();
    }

    /// `s` without the guide's names: what a FAQ question asks beyond naming the service.
    fn without_topic(&self, s: &str) -> String {
        let mut out = knowledge::text::fold_for_matching(s);
        for n in &self.topic {
            if n.chars().count() >= 2 {
                out = out.replace(n.as_str(), " ");
            }
        }
        out
    }
}

/// Weight of a guide FAQ's question's closeness to the resident's (its answer is written for
/// that question).
const FAQ_HEADING_WEIGHT: f32 = 2.0;

/// How close (character-bigram Jaccard) a guide FAQ's question must be to the resident's for
/// its answer's opening verdict to be shown.
const VERDICT_HEADING_SIMILARITY: f32 = 0.3;

/// Words a FAQ answer opens with to answer its own question.
const VERDICTS: &[&str] = &[
    "可以",
    "不可以",
    "不行",
    "不能",
    "不會",
    "會",
    "是的",
    "是",
    "不是",
    "不用",
    "不必",
    "需要",
    "不需要",
    "要",
    "沒有",
    "有",
    "對",
    "不對",
    "能",
    "當然可以",
    "一般不行",
    "原則上可以",
    "原則上不行",
    "通常可以",
    "通常不行",
    "不一定",
];

/// The rest of a sentence that opens with a bare verdict (「不行，入住社會住宅的人不能…」
/// → 「入住社會住宅的人不能…」), `Some("")` for a verdict alone (「不會。」).
fn strip_verdict(s: &str) -> Option<&str> {
    VERDICTS
        .iter()
        .filter(|v| s.starts_with(**v))
        .map(|v| &s[v.len()..])
        .filter(|rest| rest.is_empty() || rest.starts_with(['，', '。', ',', '！', '；', '、']))
        .map(|rest| rest.trim_start_matches(['，', '。', ',', '！', '；', '、']))
        .max_by_key(|rest| std::cmp::Reverse(rest.len()))
}

/// Whether a sentence introduces what follows it (ends with a colon).
pub fn introduces(s: &str) -> bool {
    s.ends_with(['：', ':'])
}

/// Every sentence of `chunks`, scored for `q`, best first.
pub fn score<'a>(q: &Query<'_>, chunks: &[&'a Chunk]) -> Vec<Scored<'a>> {
    // FAQ questions are compared without the guide's names, which all of them share.
    let q_grams = bigrams(&retrieval::normalize::normalize(&q.without_topic(q.text)));
    let heading_grams = |c: &Chunk| {
        bigrams(&retrieval::normalize::normalize(
            &q.without_topic(&c.heading),
        ))
    };
    let mut sentences: Vec<Sentence<'a>> = Vec::new();
    for c in chunks {
        // A guide FAQ's answer opens with a verdict on *its* question (「不行，…」「不會。」):
        // said to another question it can be the wrong answer. Unless the FAQ's question is
        // close to the resident's, a bare verdict is dropped and a verdict opening a
        // sentence is cut off (the rest of the sentence is the guide's own words).
        let own_question = c.section == SectionKind::Faq
            && jaccard(&heading_grams(c), &q_grams) >= VERDICT_HEADING_SIMILARITY;
        for (index, text) in split(&c.text).into_iter().enumerate() {
            let text = if c.section == SectionKind::Faq && index == 0 && !own_question {
                match strip_verdict(&text) {
                    Some(rest) if rest.chars().count() >= 6 => rest.to_string(),
                    Some(_) => continue,
                    None => text,
                }
            } else {
                text
            };
            sentences.push(Sentence {
                text,
                chunk: c,
                index,
            });
        }
    }
    // Rarer words in this guide say more about which sentence is meant.
    let norm: Vec<String> = sentences
        .iter()
        .map(|s| retrieval::normalize::normalize(&s.text))
        .collect();
    // A longer word also matches without its first or last character (「舊沙發」 ~ 「沙發」).
    let has = |s: &str, t: &str| {
        let cs: Vec<char> = t.chars().collect();
        s.contains(t)
            || (cs.len() >= 3
                && (s.contains(&cs[1..].iter().collect::<String>())
                    || s.contains(&cs[..cs.len() - 1].iter().collect::<String>())))
    };
    let mut df: HashMap<&str, usize> = HashMap::new();
    for t in &q.terms {
        df.insert(t.as_str(), norm.iter().filter(|s| has(s, t)).count());
    }
    let n = sentences.len().max(1) as f32;
    let idf = |t: &str| (1.0 + n / (1.0 + *df.get(t).unwrap_or(&0) as f32)).ln();
    let total_idf: f32 = q.terms.iter().map(|t| idf(t)).sum::<f32>().max(1e-3);
    let mut out: Vec<Scored<'a>> = sentences
        .into_iter()
        .zip(&norm)
        .map(|(s, sn)| {
            let lexical: f32 = q
                .terms
                .iter()
                .filter(|t| has(sn, t))
                .map(|t| idf(t))
                .sum::<f32>()
                / total_idf;
            let sg = bigrams(sn);
            let gram_share = if q.grams.is_empty() {
                0.0
            } else {
                q.grams.intersection(&sg).count() as f32 / q.grams.len() as f32
            };
            let mut score = 1.5 * lexical + 0.8 * gram_share;
            let section = s.chunk.section;
            if q.intents.contains(&section) {
                score += 1.0;
            } else if !q.intents.is_empty() && section != SectionKind::Faq {
                score -= 0.3;
            }
            if q.kind != Asked::Other && answers_kind(&s.text, q.kind) {
                score += match q.kind {
                    Asked::YesNo => 0.3,
                    _ => 0.6,
                };
            }
            if section == SectionKind::Faq {
                // A guide FAQ whose question is close to the resident's: its answer opens
                // with the direct answer.
                let heading = jaccard(&heading_grams(s.chunk), &q_grams);
                score += FAQ_HEADING_WEIGHT * heading * if s.index == 0 { 1.0 } else { 0.5 };
            }
            if section == SectionKind::Overview && s.index == 0 && q.intents.is_empty() {
                score += 0.2;
            }
            // An example of how to describe something (「例如「每天晚上 11 點後 KTV 低音很重」」)
            // shares the resident's words without answering them.
            if s.text.contains("例如「") || s.text.contains("例如：「") {
                score -= 0.6;
            }
            // A legal preamble (「依據「…」規定略以：」) says nothing by itself.
            if introduces(&s.text) && s.text.contains("略以") {
                score -= 1.0;
            }
            let len = s.text.chars().count();
            if len > 90 {
                score -= 0.2;
            }
            if len < 6 {
                score -= 0.5;
            }
            // Earlier sentences of a section state its rule; later ones its exceptions.
            score -= 0.02 * s.index.min(10) as f32;
            Scored { sentence: s, score }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// The lead: the best sentence, then up to two more that score close to it, add something new
/// and keep the lead within `max_chars` (the first sentence is always kept).
pub fn choose<'a>(scored: &[Scored<'a>], max_chars: usize) -> Vec<Scored<'a>> {
    let Some(best) = scored.first() else {
        return Vec::new();
    };
    let mut chosen = vec![best.clone()];
    let mut used = best.sentence.text.chars().count();
    // A sentence that introduces a list (「應備證件如下：」) is followed by its first items.
    while chosen.len() < 3 && introduces(&chosen[chosen.len() - 1].sentence.text) {
        let last = &chosen[chosen.len() - 1].sentence;
        let next = scored
            .iter()
            .find(|s| s.sentence.chunk.id == last.chunk.id && s.sentence.index == last.index + 1);
        match next {
            Some(n) if used + n.sentence.text.chars().count() <= max_chars => {
                used += n.sentence.text.chars().count();
                chosen.push(n.clone());
            }
            _ => break,
        }
    }
    for s in scored.iter().skip(1).take(8) {
        if chosen.len() >= 3 || s.score < best.score * 0.75 || s.score <= 0.3 {
            break;
        }
        if chosen.iter().any(|c| c.sentence.text == s.sentence.text) {
            continue;
        }
        let len = s.sentence.text.chars().count();
        if used + len > max_chars {
            continue;
        }
        let g = bigrams(&s.sentence.text);
        if chosen
            .iter()
            .any(|c| jaccard(&bigrams(&c.sentence.text), &g) > 0.5)
        {
            continue;
        }
        used += len;
        chosen.push(s.clone());
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_lists_and_tables_become_sentences() {
        let text = "- 設籍本市、年滿65歲的長者。原住民長者多放寬到55歲起申請。\n\
                    1. 臨櫃申請：攜帶證件。\n\
                    | 家戶身分 | 準公共托育 | 公共化托育 |\n|---|---|---|\n\
                    | 一般家庭 | 13,000元 | 7,000元 |\n\
                    **可以打 1999 做什麼：**";
        assert_eq!(
            split(text),
            [
                "設籍本市、年滿65歲的長者。",
                "原住民長者多放寬到55歲起申請。",
                "臨櫃申請：攜帶證件。",
                "一般家庭：準公共托育 13,000元，公共化托育 7,000元",
                "可以打 1999 做什麼：",
            ]
        );
    }

    #[test]
    fn a_faq_verdict_is_cut_unless_its_question_is_the_residents() {
        assert_eq!(
            strip_verdict("不行，入住社會住宅的人不能重複領取。"),
            Some("入住社會住宅的人不能重複領取。")
        );
        assert_eq!(strip_verdict("不會。"), Some(""));
        assert_eq!(strip_verdict("會員資格另計。"), None);
        assert_eq!(strip_verdict("可以到區公所辦。"), None);
    }

    #[test]
    fn a_line_introducing_a_list_is_not_the_answer() {
        let chunk = Chunk {
            id: "d#0.0".into(),
            doc_id: "d".into(),
            doc_title: "停班停課".into(),
            title_indexed: false,
            bureau: None,
            category: None,
            section: SectionKind::Answer,
            heading: "居住地與上班地點不同，如何認定？".into(),
            text: "依據「天然災害停止上班及上課作業辦法」規定略以：\n\
                   一、居住地區停止上班而服務機關照常上班時，給予停止上班登記。"
                .into(),
        };
        let q = Query::new("天然災害停止上班及上課，居住地與上班地點不同怎麼認定", &[]);
        let scored = score(&q, &[&chunk]);
        assert!(
            scored[0].sentence.text.starts_with("一、居住地區"),
            "{:?}",
            scored[0].sentence.text
        );
        // A list's introduction is followed by its first item.
        let list = Chunk {
            text: "應備證件如下：\n(一)申請書一份。\n(二)身分證影本。".into(),
            ..chunk.clone()
        };
        let q = Query::new("要準備哪些證件", &[]);
        let lead: Vec<String> = choose(&score(&q, &[&list]), 120)
            .into_iter()
            .map(|s| s.sentence.text)
            .collect();
        assert_eq!(
            lead[..2],
            ["應備證件如下：", "(一)申請書一份。"],
            "{lead:?}"
        );
    }

    #[test]
    fn the_kind_of_fact_asked() {
        assert_eq!(asked("大概多少錢"), Asked::Amount);
        assert_eq!(asked("幾歲可以辦"), Asked::Age);
        assert_eq!(asked("審核要多久"), Asked::Duration);
        assert_eq!(asked("可以同時領嗎"), Asked::YesNo);
        assert_eq!(asked("要去哪裡辦"), Asked::Other);
    }
}
