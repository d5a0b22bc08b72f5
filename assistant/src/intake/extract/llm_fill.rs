//! The LLM step of extraction: required fields the rules left empty are asked of the LLM with
//! schema-constrained decoding (a JSON object whose keys are those fields and whose values can
//! only be of the field's type, an option of its enum, or null). A value is kept only when it
//! passes the field's validator and, for values copied from the text (names, numbers, dates,
//! addresses), when it is found in the text; it carries a lower confidence than rule values.

use knowledge::validate::{date_iso, phone_digits, taiwan_id};
use knowledge::{FieldKind, FieldSpec, FormSchema};
use models::llm::{ChatMessage, ChatModel, GenerationParams, JsonObjectGrammar, ValueSpec};
use std::sync::Arc;

use super::scan::Text;
use super::{Extraction, FieldValue, Problem, Source};

const SYSTEM: &str = "你是市政府表單的填寫助手。只根據民眾說的話填寫指定欄位：照抄原文中的值，\
原文沒有提到的欄位一律填 null，不可以猜測或編造。";

pub struct LlmFiller {
    model: Arc<dyn ChatModel>,
    max_tokens: usize,
}

impl LlmFiller {
    pub fn new(model: Arc<dyn ChatModel>) -> LlmFiller {
        LlmFiller {
            model,
            max_tokens: 160,
        }
    }

    fn spec(field: &FieldSpec) -> Option<ValueSpec> {
        Some(match field.kind {
            FieldKind::Name => ValueSpec::String { max_bytes: 15 },
            FieldKind::IdNumber | FieldKind::Phone => ValueSpec::String { max_bytes: 24 },
            FieldKind::Date => ValueSpec::String { max_bytes: 40 },
            FieldKind::Address => ValueSpec::String { max_bytes: 120 },
            FieldKind::Road | FieldKind::District => ValueSpec::String { max_bytes: 30 },
            FieldKind::Enum => ValueSpec::Enum(field.options.clone()),
            FieldKind::Integer => ValueSpec::Integer { max_digits: 2 },
            _ => return None,
        })
    }

    /// Asks for the required fields still missing in `out`.
    pub fn fill(&self, form: &FormSchema, t: &Text, text: &str, out: &mut Extraction) {
        let missing: Vec<&FieldSpec> = form
            .fields
            .iter()
            .filter(|f| f.required && !out.fields.contains_key(&f.name))
            .filter(|f| Self::spec(f).is_some())
            .collect();
        if missing.is_empty() {
            return;
        }
        let keys: Vec<(String, ValueSpec)> = missing
            .iter()
            .filter_map(|f| Some((f.name.clone(), Self::spec(f)?)))
            .collect();
        let fields_desc: String = missing
            .iter()
            .map(|f| {
                let opts = if f.options.is_empty() {
                    String::new()
                } else {
                    format!("（{}）", f.options.join("、"))
                };
                format!("- {}：{}{opts}\n", f.name, f.label)
            })
            .collect();
        let messages = [
            ChatMessage::system(SYSTEM),
            ChatMessage::user(format!(
                "表單：{}\n民眾說：「{text}」\n請填寫這些欄位：\n{fields_desc}",
                form.title
            )),
        ];
        let params = GenerationParams {
            max_tokens: self.max_tokens,
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..GenerationParams::default()
        };
        let grammar = Box::new(JsonObjectGrammar::new(&keys));
        let reply = match self.model.chat_constrained(&messages, &params, grammar) {
            Ok((reply, _)) => reply,
            Err(e) => {
                tracing::warn!(error = %e, "constrained extraction unavailable");
                return;
            }
        };
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(&reply)
        else {
            tracing::warn!(
                chars = reply.chars().count(),
                "constrained extraction returned no object"
            );
            return;
        };
        for f in missing {
            let Some(v) = obj.get(&f.name).filter(|v| !v.is_null()) else {
                continue;
            };
            match accept(f, v, t) {
                Ok(Some(fv)) => {
                    out.fields.insert(f.name.clone(), fv);
                }
                Ok(None) => {}
                Err(message) => out.problems.push(Problem {
                    field: Some(f.name.clone()),
                    span: None,
                    message,
                }),
            }
        }
    }
}

/// Text folded for matching: half width, no spaces or dashes.
fn fold(s: &str) -> String {
    Text::new(s)
        .chars
        .into_iter()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '(' | ')'))
        .collect::<String>()
        .to_uppercase()
}

/// Where `needle` occurs in the text (character span), after folding both.
fn locate(t: &Text, needle: &str) -> Option<(usize, usize)> {
    let n = fold(needle);
    if n.is_empty() {
        return None;
    }
    let nc: Vec<char> = n.chars().collect();
    let skip = |c: char| c.is_whitespace() || matches!(c, '-' | '(' | ')');
    for s in 0..t.len() {
        let (mut i, mut k) = (s, 0);
        while i < t.len() && k < nc.len() {
            let c = t.chars[i].to_uppercase().next().unwrap_or(t.chars[i]);
            if skip(c) && k > 0 {
                i += 1;
                continue;
            }
            if c != nc[k] {
                break;
            }
            i += 1;
            k += 1;
        }
        if k == nc.len() {
            return Some((s, i));
        }
    }
    None
}

/// Validates one LLM value; `Ok(None)` drops it silently (not found in the text).
fn accept(f: &FieldSpec, v: &serde_json::Value, t: &Text) -> Result<Option<FieldValue>, String> {
    let value = |value: serde_json::Value, span: Option<(usize, usize)>| {
        Some(FieldValue {
            value,
            span,
            evidence: span.map(|(s, e)| t.slice(s, e)),
            source: Source::Llm,
            confidence: 0.5,
        })
    };
    match (f.kind, v) {
        (FieldKind::Enum, serde_json::Value::String(s)) if f.options.contains(s) => {
            Ok(value(v.clone(), None))
        }
        (FieldKind::Integer, serde_json::Value::Number(n)) => Ok(value(serde_json::json!(n), None)),
        (kind, serde_json::Value::String(s)) => {
            let Some(span) = locate(t, s) else {
                return Ok(None);
            };
            let normalised = match kind {
                FieldKind::IdNumber => match taiwan_id(s) {
                    Ok((id, _)) => id,
                    Err(e) => return Err(format!("{}：{e}", f.label)),
                },
                FieldKind::Phone => match phone_digits(s) {
                    Some(p) => p,
                    None => return Err(format!("{}「{s}」不是有效的電話號碼", f.label)),
                },
                FieldKind::Date => match date_iso(s) {
                    Some(d) => d,
                    None => return Ok(None),
                },
                _ => t.slice(span.0, span.1),
            };
            Ok(value(normalised.into(), Some(span)))
        }
        _ => Ok(None),
    }
}
