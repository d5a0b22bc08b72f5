//! Claim-level grounding of a generated reply: every clause must be supported by one sentence
//! of a cited source. A clause is supported when
//! - its content words are covered by the sentence (or the guide's title),
//! - it has the same polarity (a 不/不能/無法/不用/免/未滿… in one must be in the other),
//! - every condition word it uses (以上/以下/未滿/滿/須/必須/才/只要/除非/擇一…) is in the sentence,
//! - every service or status it names (育兒津貼, 中低收入戶 …) is named by the sentence,
//! - every number is in the sentence, and the number the sentence attaches to one of the
//!   clause's words is not dropped (「最低生活費1.5倍」 → 「最低生活費」 alone is a wrong claim),
//! - and it is not an echo of the question.
//!
//! The number/date/phone check of [`super::grounding`] still runs on the whole reply.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::lead::{content_terms, split};

/// Markers of a negative statement.
const NEGATIONS: &[&str] = &[
    "不能",
    "不可",
    "不可以",
    "不用",
    "不必",
    "不會",
    "不需",
    "不需要",
    "無法",
    "沒有",
    "未滿",
    "免",
    "不得",
    "不是",
    "不受",
    "不再",
    "不予",
    "不包括",
    "不含",
    "非",
    "不符",
    "不行",
    "沒辦法",
    "不提供",
    "不開放",
    "禁止",
    "無須",
    "毋須",
];

/// Words that carry a condition or a limit.
const CONDITIONS: &[&str] = &[
    "以上", "以下", "未滿", "滿", "超過", "不到", "須", "必須", "才", "只要", "除非", "擇一",
    "同時", "只能", "僅", "至少", "最多", "以內", "前", "後", "一次", "每月", "每年",
];

/// Words a reply may add around a source's facts without claiming anything new: addressing
/// the resident and telling them to do what the source says.
const FRAMING: &[&str] = &[
    "請您",
    "請",
    "您可以",
    "您",
    "你",
    "記得",
    "攜帶",
    "帶著",
    "準備",
    "前往",
    "到",
    "去",
    "辦理",
    "提出",
    "申請時",
    "要",
    "就",
    "喔",
    "哦",
    "唷",
];

fn without_framing(s: &str) -> String {
    let mut out = s.to_string();
    for w in FRAMING {
        out = out.replace(w, "");
    }
    out
}

/// One clause of a reply and the source sentence that supports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClauseSupport {
    pub clause: String,
    /// `[n]` of the supporting passage and its sentence.
    pub passage: Option<usize>,
    pub sentence: Option<String>,
    /// Why no sentence supports it.
    pub problem: Option<String>,
}

/// A cited passage as the clause check reads it.
pub struct Source<'a> {
    pub number: usize,
    pub title: &'a str,
    pub text: &'a str,
}

fn negative(s: &str) -> bool {
    NEGATIONS.iter().any(|n| s.contains(n))
}

fn numbers(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || (c == '.' && !cur.is_empty()) {
            cur.push(c);
        } else if c == ',' && !cur.is_empty() {
            continue;
        } else if !cur.is_empty() {
            out.push(cur.trim_end_matches('.').to_string());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(cur.trim_end_matches('.').to_string());
    }
    out
}

fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

fn strip_commas(s: &str) -> String {
    s.chars().filter(|c| *c != ',').collect()
}

/// Cuts a reply into clauses (citation markers removed), merging fragments too short to claim
/// anything into the next clause.
pub fn clauses(reply: &str) -> Vec<String> {
    let plain = super::grounding::strip_citations(reply);
    let mut out: Vec<String> = Vec::new();
    let mut carry = String::new();
    for piece in plain.split(['。', '！', '？', '；', '\n', '，', '!', '?', ';']) {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        carry.push_str(piece);
        let content = carry.chars().filter(|c| c.is_alphanumeric()).count();
        if content >= 6 {
            out.push(std::mem::take(&mut carry));
        } else {
            carry.push('，');
        }
    }
    let rest = carry.trim_end_matches('，').trim().to_string();
    if !rest.is_empty() {
        match out.last_mut() {
            Some(last) if rest.chars().filter(|c| c.is_alphanumeric()).count() < 6 => {
                last.push('，');
                last.push_str(&rest);
            }
            _ => out.push(rest),
        }
    }
    out
}

fn bigrams(s: &str) -> HashSet<(char, char)> {
    let cs: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).collect();
    cs.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Why `sentence` does not support `clause`, or `None` when it does.
fn unsupported(clause: &str, sentence: &str, title: &str, entities: &[String]) -> Option<String> {
    let c = knowledge::text::fold_for_matching(clause);
    let s = knowledge::text::fold_for_matching(sentence);
    let t = knowledge::text::fold_for_matching(title);
    let claimed = without_framing(&c);
    let terms = content_terms(&claimed);
    if !terms.is_empty() {
        let covered = terms
            .iter()
            .filter(|w| s.contains(w.as_str()) || t.contains(w.as_str()))
            .count();
        if (covered as f32) < 0.8 * terms.len() as f32 {
            return Some(format!(
                "words not in the source ({covered}/{})",
                terms.len()
            ));
        }
    }
    let cg = bigrams(&claimed);
    if !cg.is_empty() {
        let sg = bigrams(&format!("{s}{t}"));
        let share = cg.intersection(&sg).count() as f32 / cg.len() as f32;
        if share < 0.45 {
            return Some(format!("wording not in the source ({share:.2})"));
        }
    }
    if negative(&c) != negative(&s) {
        return Some("the opposite polarity of the source".into());
    }
    for w in CONDITIONS {
        if c.contains(w) && !s.contains(w) {
            return Some(format!("condition 「{w}」 not in the source"));
        }
    }
    for e in entities {
        let e = knowledge::text::fold_for_matching(e);
        // An entity named in the clause but not by the sentence, unless a longer entity of the
        // sentence contains it (中低收入戶 contains 低收入戶).
        if c.contains(e.as_str()) && !s.contains(e.as_str()) && !t.contains(e.as_str()) {
            return Some(format!("「{e}」 is not what the source is about"));
        }
        if s.contains(e.as_str()) && !c.contains(e.as_str()) {
            // The clause uses a shorter name inside the sentence's longer one: 低收入戶 said
            // where the sentence is about 中低收入戶.
            if entities
                .iter()
                .map(|x| knowledge::text::fold_for_matching(x))
                .any(|x| x.len() < e.len() && e.contains(x.as_str()) && c.contains(x.as_str()))
            {
                return Some(format!("the source is about 「{e}」"));
            }
        }
    }
    let sn: Vec<String> = numbers(&strip_commas(&s));
    for n in numbers(&strip_commas(&c)) {
        if !sn.contains(&n) {
            return Some(format!("{n} is not in the source"));
        }
    }
    // A number the sentence attaches to a word the clause also uses must not be dropped
    // (「最低生活費1.5倍以下」 said as 「最低生活費以下」).
    let s_chars: Vec<char> = strip_commas(&s).chars().collect();
    let c_plain = strip_commas(&c);
    let mut i = 0;
    while i < s_chars.len() {
        if s_chars[i].is_ascii_digit() && (i == 0 || !s_chars[i - 1].is_ascii_digit()) {
            let anchor: String = s_chars[i.saturating_sub(3)..i].iter().collect();
            let number: String = s_chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == '.')
                .collect();
            if anchor.chars().count() == 3 && anchor.chars().all(is_cjk) {
                for (pos, _) in c_plain.match_indices(anchor.as_str()) {
                    let after = &c_plain[pos + anchor.len()..];
                    if !after.starts_with(number.trim_end_matches('.')) {
                        return Some(format!("drops 「{anchor}{number}」 of the source"));
                    }
                }
            }
            i += number.chars().count().max(1);
        } else {
            i += 1;
        }
    }
    None
}

/// Checks every clause of `reply` against the sentences of `sources`. `entities` are the names
/// of services and household statuses the guides use.
pub fn check(
    reply: &str,
    sources: &[Source<'_>],
    question: &str,
    entities: &[String],
) -> Vec<ClauseSupport> {
    let q = knowledge::text::fold_for_matching(question);
    let qg = bigrams(&q);
    let asked: Vec<String> = entities
        .iter()
        .map(|e| knowledge::text::fold_for_matching(e))
        .filter(|e| q.contains(e.as_str()))
        .collect();
    clauses(reply)
        .into_iter()
        .map(|clause| {
            let c = knowledge::text::fold_for_matching(&clause);
            let cg = bigrams(&without_framing(&c));
            let reject = |problem: String| ClauseSupport {
                clause: clause.clone(),
                passage: None,
                sentence: None,
                problem: Some(problem),
            };
            // The question said back, however well it matches a source, answers nothing.
            if !cg.is_empty() && cg.intersection(&qg).count() as f32 / cg.len() as f32 >= 0.7 {
                return reject("an echo of the question".into());
            }
            if clause.trim_end().ends_with(['？', '?']) {
                return reject("a question, not an answer".into());
            }
            // A different service or status than the one asked about (低收入戶 asked,
            // 中低收入戶 answered).
            let named: Vec<String> = entities
                .iter()
                .map(|e| knowledge::text::fold_for_matching(e))
                .filter(|e| c.contains(e.as_str()))
                .filter(|e| !named_inside(e, &c, entities))
                .collect();
            if !asked.is_empty()
                && !named.is_empty()
                && !named
                    .iter()
                    .any(|n| asked.iter().any(|a| a == n || a.contains(n.as_str())))
            {
                return reject(format!("about 「{}」, not what was asked", named[0]));
            }
            // The sentences most like the clause decide: the best one must support it.
            let mut ranked: Vec<(f32, usize, String, &str)> = sources
                .iter()
                .flat_map(|src| {
                    let cg = cg.clone();
                    split(src.text).into_iter().map(move |sentence| {
                        let sg = bigrams(&knowledge::text::fold_for_matching(&sentence));
                        let share = if cg.is_empty() {
                            0.0
                        } else {
                            cg.intersection(&sg).count() as f32 / cg.len() as f32
                        };
                        (share, src.number, sentence, src.title)
                    })
                })
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let best = ranked.first().map(|r| r.0).unwrap_or(0.0);
            let mut first_problem = None;
            for (share, number, sentence, title) in ranked.iter().take(3) {
                if *share + 0.05 < best {
                    break;
                }
                match unsupported(&clause, sentence, title, entities) {
                    None => {
                        return ClauseSupport {
                            clause: clause.clone(),
                            passage: Some(*number),
                            sentence: Some(sentence.clone()),
                            problem: None,
                        }
                    }
                    Some(p) => {
                        first_problem.get_or_insert(p);
                    }
                }
            }
            reject(first_problem.unwrap_or_else(|| "no source sentence".into()))
        })
        .collect()
}

/// Whether `e` occurs in `text` only inside a longer entity (低收入戶 inside 中低收入戶).
fn named_inside(e: &str, text: &str, entities: &[String]) -> bool {
    let longer: Vec<String> = entities
        .iter()
        .map(|x| knowledge::text::fold_for_matching(x))
        .filter(|x| x.len() > e.len() && x.contains(e) && text.contains(x.as_str()))
        .collect();
    !longer.is_empty()
        && text.matches(e).count()
            <= longer
                .iter()
                .map(|l| text.matches(l.as_str()).count())
                .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities() -> Vec<String> {
        ["育兒津貼", "托育補助", "低收入戶", "中低收入戶", "敬老卡"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn verdicts(reply: &str, source: &str, question: &str) -> Vec<Option<String>> {
        check(
            reply,
            &[Source {
                number: 1,
                title: "托育補助（公共托育及準公共托育）",
                text: source,
            }],
            question,
            &entities(),
        )
        .into_iter()
        .map(|c| c.problem)
        .collect()
    }

    #[test]
    fn a_flipped_yes_no_is_rejected() {
        let source = "孩子送到公共化托育時，政府會按月補助部分托育費用。領托育補助就不能再領育兒津貼，兩者擇一。";
        let v = verdicts(
            "育兒津貼和托育補助可以同時領[1]。",
            source,
            "育兒津貼跟托育補助可以同時領嗎",
        );
        assert!(v[0].is_some(), "{v:?}");
        let v = verdicts(
            "領托育補助就不能再領育兒津貼，兩者擇一[1]。",
            source,
            "育兒津貼跟托育補助可以同時領嗎",
        );
        assert!(v.iter().all(Option::is_none), "{v:?}");
    }

    #[test]
    fn a_swapped_entity_and_a_dropped_condition_are_rejected() {
        let low = Source {
            number: 1,
            title: "低收入戶資格申請",
            text: "家庭總收入平均分配全家人口，每人每月在最低生活費以下。",
        };
        let middle = Source {
            number: 2,
            title: "中低收入戶資格申請",
            text: "家庭總收入平均每人每月在最低生活費1.5倍以下。",
        };
        let out = check(
            "中低收入戶的家庭收入在最低生活費以下[1]。",
            &[low, middle],
            "中低收入戶跟低收入戶差在哪裡",
            &entities(),
        );
        assert!(out[0].problem.is_some(), "{out:?}");
        let low = Source {
            number: 1,
            title: "低收入戶資格申請",
            text: "家庭總收入平均分配全家人口，每人每月在最低生活費以下。",
        };
        let out = check(
            "低收入戶的家庭收入每人每月在最低生活費以下[1]。",
            &[low],
            "中低收入戶跟低收入戶差在哪裡",
            &entities(),
        );
        assert!(out[0].problem.is_none(), "{out:?}");
    }

    #[test]
    fn echoes_and_invented_facts_are_rejected() {
        let source = "大型廢棄物請先打電話預約清潔隊，在約定時間放到指定地點。";
        let v = verdicts("舊沙發要丟怎麼處理？[1]。", source, "舊沙發要丟怎麼處理");
        assert_eq!(v[0].as_deref(), Some("an echo of the question"));
        let v = verdicts("明天台北會下雨[1]。", source, "明天台北會下雨嗎");
        assert!(v[0].is_some());
        let v = verdicts("請先打電話預約清潔隊，費用500元[1]。", source, "沙發怎麼丟");
        assert!(v.iter().any(Option::is_some), "{v:?}");
        let v = verdicts("請先打電話預約清潔隊[1]。", source, "沙發怎麼丟");
        assert!(v.iter().all(Option::is_none), "{v:?}");
    }
}
