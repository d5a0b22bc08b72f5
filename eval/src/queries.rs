//! Gold query sets: JSONL `{"id", "query", "relevant": [doc_id, ...]}`, or the FAQ's own
//! questions restricted to a split (`faq-questions --split IDS`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GoldQuery {
    pub id: String,
    pub query: String,
    pub relevant: Vec<String>,
}

/// The rows of a JSONL file (blank lines skipped), each checked by `check`; errors name the
/// file and line, and `what` a row should be.
pub fn read_rows<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    check: impl Fn(&T) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: T = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not {what}", path.display(), i + 1))?;
        check(&row).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(row);
    }
    Ok(out)
}

pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<GoldQuery>> {
    read_rows(path, "a query object", |q: &GoldQuery| {
        if q.relevant.is_empty() {
            bail!("query `{}` lists no relevant documents", q.id);
        }
        Ok(())
    })
}

pub fn read_ids(path: &Path) -> anyhow::Result<HashSet<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[derive(Deserialize)]
struct FaqEntry {
    text: String,
    url: String,
}

/// The FAQ's questions as queries, each relevant to its own entry, limited to `split`.
pub fn faq_questions(
    corpus: &Path,
    split: Option<&HashSet<String>>,
) -> anyhow::Result<Vec<GoldQuery>> {
    let text =
        std::fs::read_to_string(corpus).with_context(|| format!("reading {}", corpus.display()))?;
    let entries: Vec<FaqEntry> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the FAQ JSON format", corpus.display()))?;
    let mut seen = HashSet::new();
    Ok(entries
        .into_iter()
        .filter(|e| split.is_none_or(|s| s.contains(e.url.trim())))
        .filter(|e| !e.text.trim().is_empty() && seen.insert(e.url.trim().to_string()))
        .map(|e| GoldQuery {
            id: e.url.trim().to_string(),
            query: e.text.trim().to_string(),
            relevant: vec![e.url.trim().to_string()],
        })
        .collect())
}
