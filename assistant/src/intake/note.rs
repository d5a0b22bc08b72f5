//! The after-call note: a short structured summary of a call for the case record (who called,
//! what, where, when, danger, what the agent promised, what is still open), every line taken
//! from the call's own words (with its span) or from the fields already read. The agent edits it
//! before it is stored with the case.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use super::CaseView;

/// One line of the note.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoteLine {
    pub label: &'static str,
    pub text: String,
    /// Character span in the call text the line quotes, when it quotes one.
    pub span: Option<(usize, usize)>,
}

/// The note: its lines and the same as editable text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallNote {
    pub lines: Vec<NoteLine>,
    pub text: String,
}

fn re(cell: &'static OnceLock<Regex>, p: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(p).expect("valid pattern"))
}

/// The call's sentences with their character offsets.
fn clauses(call: &str) -> Vec<(usize, usize, &str)> {
    split(call, &['。', '！', '？', '!', '?', '\n', '；', ';'])
}

/// The call's comma-separated phrases (a time or a promise is one phrase of a sentence).
fn phrases(call: &str) -> Vec<(usize, usize, &str)> {
    split(
        call,
        &['。', '！', '？', '!', '?', '\n', '；', ';', '，', ','],
    )
}

fn split<'a>(call: &'a str, seps: &[char]) -> Vec<(usize, usize, &'a str)> {
    let mut out = Vec::new();
    let mut start_byte = 0;
    let mut start_char = 0;
    let mut chars = 0;
    for (i, c) in call.char_indices() {
        chars += 1;
        if seps.contains(&c) {
            let s = &call[start_byte..i];
            if !s.trim().is_empty() {
                out.push((start_char, chars - 1, s));
            }
            start_byte = i + c.len_utf8();
            start_char = chars;
        }
    }
    let s = &call[start_byte..];
    if !s.trim().is_empty() {
        out.push((start_char, chars, s));
    }
    out
}

fn quote(c: (usize, usize, &str)) -> (String, Option<(usize, usize)>) {
    let lead = c.2.len() - c.2.trim_start().len();
    let start = c.0 + c.2[..lead].chars().count();
    let text = c.2.trim();
    (
        text.to_string(),
        Some((start, start + text.chars().count())),
    )
}

fn field<'a>(view: &'a CaseView, name: &str) -> Option<&'a super::CaseField> {
    view.fields.iter().find(|f| f.name == name)
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join("、"),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The note of a call from its text and the case read from it.
pub fn call_note(call: &str, view: &CaseView) -> CallNote {
    static GREETING: OnceLock<Regex> = OnceLock::new();
    static WHEN: OnceLock<Regex> = OnceLock::new();
    static PROMISE: OnceLock<Regex> = OnceLock::new();
    let cl = clauses(call);
    let ph = phrases(call);
    let mut lines = Vec::new();
    let mut push = |label, text: String, span| {
        lines.push(NoteLine { label, text, span });
    };

    // Who called.
    let name = field(view, "caller.name").map(|f| value_text(&f.value));
    let phone = field(view, "caller.phone").map(|f| value_text(&f.value));
    let who = match (name, phone) {
        (Some(n), Some(p)) => format!("{n}（{p}）"),
        (Some(n), None) => format!("{n}（未留電話）"),
        (None, Some(p)) => format!("未留姓名（{p}）"),
        (None, None) => "未留姓名與電話".to_string(),
    };
    push("來電者", who, None);

    // What: the type and category, then the first clause that says something.
    let kind = match (&view.category, view.abstained) {
        (Some(c), _) => format!("{}：{c}", view.case_type.label()),
        (None, true) => format!("{}：類別待選擇", view.case_type.label()),
        (None, false) => view.case_type.label().to_string(),
    };
    push("類型", kind, None);
    let greeting = re(
        &GREETING,
        r"^[\s，,]*(?:喂|你好|您好|哈囉|請問一下|不好意思|那個|嗯|呃)*[\s，,]*$",
    );
    if let Some(c) = cl
        .iter()
        .find(|c| !greeting.is_match(c.2) && c.2.trim().chars().count() >= 6)
    {
        let (t, s) = quote(*c);
        push("事由", t, s);
    }

    // Where.
    let place: Vec<String> = ["district", "road", "pole_numbers"]
        .iter()
        .filter_map(|k| field(view, k))
        .map(|f| match f.name.as_str() {
            "pole_numbers" => format!("桿號 {}", value_text(&f.value)),
            _ => value_text(&f.value),
        })
        .filter(|s| !s.is_empty())
        .collect();
    push(
        "地點",
        if place.is_empty() {
            "未提及".into()
        } else {
            place.join(" ")
        },
        None,
    );

    // When: the first clause that says it.
    let when = re(
        &WHEN,
        r"(今天|昨天|前天|剛剛|剛才|早上|中午|下午|晚上|半夜|凌晨|上週|上禮拜|這幾天|這禮拜|每天|已經[^，。]{0,6}(?:天|週|禮拜|星期|個月)|\d{1,2}點|[一二兩三四五六七八九十]+(?:天|個禮拜|週)了)",
    );
    match ph.iter().find(|c| when.is_match(c.2)) {
        Some(c) => {
            let (t, s) = quote(*c);
            push("時間", t, s);
        }
        None => push("時間", "未提及".into(), None),
    }

    // Danger.
    let hazard = match field(view, "hazard") {
        Some(f) if f.value == serde_json::Value::Bool(true) => format!(
            "有{}",
            f.evidence
                .as_deref()
                .map(|e| format!("（「{e}」）"))
                .unwrap_or_default()
        ),
        Some(f) if f.value == serde_json::Value::Bool(false) => "無".into(),
        _ => "未提及".into(),
    };
    push("危險", hazard, None);

    // What the agent said would happen.
    let promise = re(
        &PROMISE,
        r"(我們會|我會|會幫您|會幫你|會請|將會|會派|派人|轉給|轉交|通知您|回電|盡快|儘快|馬上處理)",
    );
    let promised: Vec<(String, Option<(usize, usize)>)> = ph
        .iter()
        .filter(|c| promise.is_match(c.2))
        .map(|c| quote(*c))
        .collect();
    if promised.is_empty() {
        push("承諾事項", "無".into(), None);
    } else {
        for (t, s) in promised {
            push("承諾事項", t, s);
        }
    }

    // Still open.
    push(
        "待辦",
        if view.follow_ups.is_empty() {
            "無".into()
        } else {
            view.follow_ups.join("；")
        },
        None,
    );

    let text = lines
        .iter()
        .map(|l| format!("{}：{}", l.label, l.text))
        .collect::<Vec<_>>()
        .join("\n");
    CallNote { lines, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_keep_character_offsets() {
        let call = "喂，你好。我家巷口的路燈不亮，已經三天了！";
        let cl = clauses(call);
        let ph = phrases(call);
        assert_eq!(cl.len(), 2);
        let (t, s) = quote(cl[1]);
        assert_eq!(t, "我家巷口的路燈不亮，已經三天了");
        let (a, b) = s.unwrap();
        let quoted: String = call.chars().skip(a).take(b - a).collect();
        assert_eq!(quoted, t);
        let (t, s) = quote(*ph.last().unwrap());
        assert_eq!(t, "已經三天了");
        let (a, b) = s.unwrap();
        assert_eq!(call.chars().skip(a).take(b - a).collect::<String>(), t);
    }
}
