//! Section-aware chunking: a chunk never spans two sections, long sections are split at
//! paragraph and then sentence boundaries, and each chunk knows its guide, section and heading.

use serde::{Deserialize, Serialize};

use crate::document::{Document, SectionKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkConfig {
    /// Target maximum characters of section text per chunk.
    pub max_chars: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig { max_chars: 600 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `{doc_id}#{section}.{part}`, stable while the document is unchanged.
    pub id: String,
    pub doc_id: String,
    pub doc_title: String,
    pub title_indexed: bool,
    pub bureau: Option<String>,
    pub category: Option<String>,
    pub section: SectionKind,
    pub heading: String,
    pub text: String,
}

impl Chunk {
    /// The text a search engine should match: title (when indexed), heading and body.
    pub fn search_text(&self) -> String {
        let mut s = String::new();
        if self.title_indexed {
            s.push_str(&self.doc_title);
            s.push('\n');
        }
        if !matches!(self.section, SectionKind::Answer | SectionKind::Overview) {
            s.push_str(&self.heading);
            s.push('\n');
        }
        s.push_str(&self.text);
        s
    }
}

pub fn chunk_document(doc: &Document, cfg: &ChunkConfig) -> Vec<Chunk> {
    let mut out = Vec::new();
    for (si, section) in doc.sections.iter().enumerate() {
        let mut text = section.text.clone();
        // Aliases help the overview match the words residents use.
        if section.kind == SectionKind::Overview && !doc.aliases.is_empty() {
            text = format!("{text}\n（又稱：{}）", doc.aliases.join("、"));
        }
        for (pi, piece) in split_text(&text, cfg.max_chars).into_iter().enumerate() {
            out.push(Chunk {
                id: format!("{}#{si}.{pi}", doc.id),
                doc_id: doc.id.clone(),
                doc_title: doc.title.clone(),
                title_indexed: doc.title_indexed,
                bureau: doc.bureau.clone(),
                category: doc.category.clone(),
                section: section.kind,
                heading: section.heading.clone(),
                text: piece,
            });
        }
    }
    out
}

/// Splits text into pieces of at most `max` characters, preferring paragraph, then sentence,
/// then hard boundaries.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(20);
    if text.chars().count() <= max {
        return vec![text.to_string()];
    }
    let mut units: Vec<String> = Vec::new();
    for para in text.split('\n') {
        if para.chars().count() <= max {
            units.push(para.to_string());
            continue;
        }
        let mut cur = String::new();
        for ch in para.chars() {
            cur.push(ch);
            if matches!(ch, '。' | '！' | '？' | '；' | '!' | '?' | ';') {
                units.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            units.push(cur);
        }
    }
    // Hard-split any unit still too long.
    let units: Vec<String> = units
        .into_iter()
        .flat_map(|u| {
            let chars: Vec<char> = u.chars().collect();
            chars
                .chunks(max)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for u in units {
        let sep = if cur.is_empty() || cur.ends_with(['。', '！', '？', '；']) {
            ""
        } else {
            "\n"
        };
        if cur.chars().count() + sep.chars().count() + u.chars().count() > max && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            cur.push_str(&u);
        } else {
            cur.push_str(sep);
            cur.push_str(&u);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Scope, Section, SourceFormat};

    #[test]
    fn long_sections_split_at_sentences_within_limit() {
        let text = "第一句話說明資格。".repeat(30);
        let parts = split_text(&text, 100);
        assert!(parts.len() >= 3);
        for p in &parts {
            assert!(p.chars().count() <= 100, "{}", p.chars().count());
            assert!(p.ends_with('。'), "{p}");
        }
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn chunks_never_span_sections() {
        let doc = Document {
            id: "g".into(),
            title: "敬老卡".into(),
            title_indexed: true,
            aliases: vec!["老人卡".into()],
            bureau: Some("社會局".into()),
            category: None,
            scope: Scope::City,
            city_specific: vec![],
            sources: vec![],
            last_reviewed: None,
            url: None,
            mydata_datasets: vec![],
            format: SourceFormat::Guide,
            sections: vec![
                Section {
                    kind: SectionKind::Overview,
                    heading: "概要".into(),
                    text: "說明。".into(),
                },
                Section {
                    kind: SectionKind::Documents,
                    heading: "應備文件".into(),
                    text: "身分證。".repeat(200),
                },
            ],
        };
        let chunks = chunk_document(&doc, &ChunkConfig { max_chars: 300 });
        assert_eq!(chunks[0].section, SectionKind::Overview);
        assert!(chunks[0].text.contains("老人卡"));
        assert!(chunks.len() >= 4);
        assert!(chunks[1..]
            .iter()
            .all(|c| c.section == SectionKind::Documents));
        assert_eq!(chunks[1].id, "g#1.0");
        assert!(chunks[1].search_text().starts_with("敬老卡\n應備文件\n"));
    }
}
