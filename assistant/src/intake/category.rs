//! 1999 case intake: which dispatch category a report belongs to. Colloquial reports rarely use
//! the official words, so three signals are combined: the taxonomy's keywords (residents'
//! phrasings, longest match, negation-aware), character-bigram similarity to each category's
//! description and examples, and — when an embedder is given — e5 similarity to the examples.

use knowledge::Taxonomy;
use std::collections::HashMap;
use std::sync::Arc;

use super::extract::scan::Text;

/// A category with its score and the span of the strongest keyword.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub name: String,
    pub score: f32,
    pub evidence: Option<(usize, usize)>,
}

struct Dense {
    embedder: Arc<dyn retrieval::Embedder>,
    /// (category index, unit vector) per example.
    examples: Vec<(usize, Vec<f32>)>,
}

/// Weights of the three signals (chosen on the case_report dev set: dense weight 0.5–2 and
/// bigram weight 1.5–3 all score within one case of each other).
const KEYWORD_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 1.5;
const DENSE_WEIGHT: f32 = 1.0;
const DENSE_TEMPERATURE: f32 = 0.02;

pub struct Classifier {
    taxonomy: Arc<Taxonomy>,
    /// (keyword, category index), longest first.
    keywords: Vec<(String, usize)>,
    /// Unit TF-IDF bigram vector per category.
    profiles: Vec<HashMap<String, f32>>,
    idf: HashMap<String, f32>,
    dense: Option<Dense>,
}

/// Character unigrams and bigrams (CJK only: digits and punctuation say nothing here).
fn bigrams(text: &str) -> HashMap<String, f32> {
    let cs: Vec<char> = text
        .chars()
        .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c) || c.is_ascii_alphabetic())
        .collect();
    let mut m = HashMap::new();
    for n in 1..=2 {
        for w in cs.windows(n) {
            *m.entry(w.iter().collect::<String>()).or_insert(0.0) += 1.0;
        }
    }
    m
}

fn normalise(v: &mut HashMap<String, f32>) {
    let n = v.values().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.values_mut().for_each(|x| *x /= n);
    }
}

impl Classifier {
    pub fn new(taxonomy: Arc<Taxonomy>) -> Classifier {
        let mut keywords: Vec<(String, usize)> = taxonomy
            .categories
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.keywords
                    .iter()
                    .chain(std::iter::once(&c.name))
                    .chain(c.former_names.iter())
                    .map(move |k| (k.clone(), i))
            })
            .collect();
        keywords.sort_by_key(|(k, _)| std::cmp::Reverse(k.chars().count()));
        let docs: Vec<HashMap<String, f32>> = taxonomy
            .categories
            .iter()
            .map(|c| {
                let mut text = format!("{} {}", c.name, c.description);
                for e in c.examples.iter().chain(c.keywords.iter()) {
                    text.push(' ');
                    text.push_str(e);
                }
                bigrams(&text)
            })
            .collect();
        let n = docs.len().max(1) as f32;
        let mut df: HashMap<String, f32> = HashMap::new();
        for d in &docs {
            for k in d.keys() {
                *df.entry(k.clone()).or_insert(0.0) += 1.0;
            }
        }
        let idf: HashMap<String, f32> = df
            .into_iter()
            .map(|(k, d)| (k, (n / d).ln() + 0.1))
            .collect();
        let profiles = docs
            .into_iter()
            .map(|d| {
                let mut v: HashMap<String, f32> = d
                    .into_iter()
                    .map(|(k, c)| {
                        let w = (1.0 + c.ln()) * idf[&k];
                        (k, w)
                    })
                    .collect();
                normalise(&mut v);
                v
            })
            .collect();
        Classifier {
            taxonomy,
            keywords,
            profiles,
            idf,
            dense: None,
        }
    }

    /// Embeds every category's examples for the dense signal.
    pub fn with_embedder(
        mut self,
        embedder: Arc<dyn retrieval::Embedder>,
    ) -> anyhow::Result<Classifier> {
        let mut texts = Vec::new();
        let mut owners = Vec::new();
        for (i, c) in self.taxonomy.categories.iter().enumerate() {
            for e in c.examples.iter().chain(std::iter::once(&c.description)) {
                texts.push(e.as_str());
                owners.push(i);
            }
        }
        let vecs = embedder
            .embed_passages(&texts)
            .map_err(|e| anyhow::anyhow!("embedding the category examples: {e}"))?;
        let examples = owners.into_iter().zip(vecs).collect();
        self.dense = Some(Dense { embedder, examples });
        Ok(self)
    }

    /// Categories ranked for `text`, best first (empty when nothing points anywhere).
    pub fn classify(&self, text: &str) -> Vec<Scored> {
        let n = self.taxonomy.categories.len();
        let mut score = vec![0f32; n];
        let mut evidence: Vec<Option<(usize, usize, f32)>> = vec![None; n];
        let t = Text::new(text);
        let mut i = 0;
        while i < t.len() {
            match self.keywords.iter().find(|(k, _)| t.at(i, k)) {
                Some((k, c)) => {
                    let len = k.chars().count();
                    let neg = ["沒有", "不是", "並非"].iter().any(|w| t.ends_at(i, w));
                    if !neg {
                        let w = (len as f32).powf(1.2);
                        score[*c] += KEYWORD_WEIGHT * w / 4.0;
                        if evidence[*c].is_none_or(|(_, _, b)| w > b) {
                            evidence[*c] = Some((i, i + len, w));
                        }
                    }
                    i += len;
                }
                None => i += 1,
            }
        }
        let mut q: HashMap<String, f32> = bigrams(text)
            .into_iter()
            .filter_map(|(k, c)| self.idf.get(&k).map(|idf| (k, (1.0 + c.ln()) * idf)))
            .collect();
        normalise(&mut q);
        for (c, p) in self.profiles.iter().enumerate() {
            let cos: f32 = q.iter().filter_map(|(k, v)| p.get(k).map(|w| v * w)).sum();
            score[c] += BIGRAM_WEIGHT * cos;
        }
        if let Some(d) = &self.dense {
            if let Ok(v) = d.embedder.embed_query(text) {
                let mut best = vec![f32::MIN; n];
                for (c, e) in &d.examples {
                    let cos: f32 = v.iter().zip(e).map(|(a, b)| a * b).sum();
                    best[*c] = best[*c].max(cos);
                }
                // e5 cosines sit in a narrow band: a sharp softmax over each category's
                // nearest example.
                let top = best.iter().cloned().fold(f32::MIN, f32::max);
                let temp = DENSE_TEMPERATURE;
                let e: Vec<f32> = best.iter().map(|b| ((b - top) / temp).exp()).collect();
                let sum: f32 = e.iter().sum();
                for c in 0..n {
                    score[c] += DENSE_WEIGHT * e[c] / sum;
                }
            }
        }
        let mut out: Vec<Scored> = (0..n)
            .filter(|&c| score[c] > 0.05)
            .map(|c| Scored {
                name: self.taxonomy.categories[c].name.clone(),
                score: score[c],
                evidence: evidence[c].map(|(s, e, _)| (s, e)),
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }
}
