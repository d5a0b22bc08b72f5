//! Bureau routing: which bureau answers a question or handles a complaint. Learned from labelled
//! questions (the FAQ's entries: question, answer, answering bureau) and the bureaus' duty
//! descriptions, with two signals: a multinomial naive Bayes over character 1–3-grams (answers
//! and duties count less than questions) and, when an embedder is given, a k-nearest-neighbour
//! vote over e5 embeddings of the labelled questions. Both support leaving one entry out, which
//! the `route` eval uses to score an entry's own question.

use std::collections::HashMap;
use std::sync::Arc;

/// One labelled example.
#[derive(Debug, Clone)]
pub struct RouteExample {
    pub question: String,
    /// Supporting text (the FAQ answer); may be empty.
    pub answer: String,
    pub label: String,
}

/// Tunables (defaults tuned on the Kaohsiung FAQ dev split, leave-one-out).
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    pub answer_weight: f32,
    pub duty_weight: f32,
    pub alpha: f64,
    pub knn: usize,
    /// Mixing weight of the dense vote against naive Bayes.
    pub dense_mix: f64,
    /// Softmax temperature of the naive-Bayes log-probabilities, per query n-gram.
    pub nb_temperature: f64,
    /// Softmax temperature of the neighbours' cosine similarities.
    pub dense_temperature: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            answer_weight: 0.1,
            duty_weight: 0.5,
            alpha: 0.01,
            knn: 10,
            dense_mix: 0.3,
            nb_temperature: 0.5,
            dense_temperature: 0.01,
        }
    }
}

fn grams(text: &str) -> HashMap<String, f32> {
    let cs: Vec<char> = text
        .chars()
        .filter(|c| {
            !c.is_whitespace()
                && !c.is_ascii_punctuation()
                && !"，。、？！：；「」（）".contains(*c)
        })
        .collect();
    let mut m = HashMap::new();
    for n in 1..=3 {
        for w in cs.windows(n) {
            *m.entry(w.iter().collect::<String>()).or_insert(0.0) += 1.0;
        }
    }
    m
}

struct Dense {
    embedder: Arc<dyn retrieval::Embedder>,
    vectors: Vec<Vec<f32>>,
}

pub struct Router {
    labels: Vec<String>,
    /// Per example: label index and weighted features.
    examples: Vec<(usize, HashMap<String, f32>)>,
    class_counts: Vec<HashMap<String, f32>>,
    class_totals: Vec<f32>,
    class_docs: Vec<f32>,
    vocab: f64,
    dense: Option<Dense>,
    cfg: RouterConfig,
    source: (Vec<RouteExample>, Vec<(String, String)>),
}

/// A ranked bureau.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub bureau: String,
    pub probability: f64,
}

impl Router {
    /// Learns from `examples` and `duties` (bureau label, description of its duties).
    pub fn train(
        examples: &[RouteExample],
        duties: &[(String, String)],
        embedder: Option<Arc<dyn retrieval::Embedder>>,
        cfg: RouterConfig,
    ) -> anyhow::Result<Router> {
        let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        labels.sort();
        labels.dedup();
        let index: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let n = labels.len();
        let mut class_counts = vec![HashMap::new(); n];
        let mut class_totals = vec![0f32; n];
        let mut class_docs = vec![0f32; n];
        let mut vocab = std::collections::HashSet::new();
        let mut feats = Vec::new();
        for e in examples {
            let c = index[e.label.as_str()];
            let mut f = grams(&e.question);
            for (g, k) in grams(&e.answer) {
                *f.entry(g).or_insert(0.0) += cfg.answer_weight * k;
            }
            for (g, k) in &f {
                *class_counts[c].entry(g.clone()).or_insert(0.0) += k;
                class_totals[c] += k;
                vocab.insert(g.clone());
            }
            class_docs[c] += 1.0;
            feats.push((c, f));
        }
        for (label, duty) in duties {
            if let Some(&c) = index.get(label.as_str()) {
                for (g, k) in grams(duty) {
                    *class_counts[c].entry(g.clone()).or_insert(0.0) += cfg.duty_weight * k;
                    class_totals[c] += cfg.duty_weight * k;
                    vocab.insert(g);
                }
            }
        }
        let dense = match embedder {
            Some(embedder) => {
                let mut vectors = Vec::with_capacity(examples.len());
                for batch in examples.chunks(32) {
                    let texts: Vec<&str> = batch.iter().map(|q| q.question.as_str()).collect();
                    vectors.extend(
                        embedder
                            .embed_queries(&texts)
                            .map_err(|e| anyhow::anyhow!("embedding routing examples: {e}"))?,
                    );
                }
                Some(Dense { embedder, vectors })
            }
            None => None,
        };
        Ok(Router {
            labels,
            examples: feats,
            class_counts,
            class_totals,
            class_docs,
            vocab: vocab.len() as f64,
            dense,
            cfg,
            source: (examples.to_vec(), duties.to_vec()),
        })
    }

    /// The same router with other settings, reusing the embeddings (for tuning sweeps).
    pub fn with_config(&self, cfg: RouterConfig) -> anyhow::Result<Router> {
        let mut r = Router::train(&self.source.0, &self.source.1, None, cfg)?;
        r.dense = self.dense.as_ref().map(|d| Dense {
            embedder: d.embedder.clone(),
            vectors: d.vectors.clone(),
        });
        Ok(r)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Ranks the bureaus for `text`.
    pub fn route(&self, text: &str) -> anyhow::Result<Vec<Routed>> {
        let v = match &self.dense {
            Some(d) => Some(
                d.embedder
                    .embed_query(text)
                    .map_err(|e| anyhow::anyhow!("embedding: {e}"))?,
            ),
            None => None,
        };
        Ok(self.rank(text, v.as_deref(), None))
    }

    /// Ranks the bureaus for example `i`'s own question, as if the router had never seen it.
    pub fn route_held_out(&self, i: usize, question: &str) -> Vec<Routed> {
        let v = self.dense.as_ref().map(|d| d.vectors[i].clone());
        self.rank(question, v.as_deref(), Some(i))
    }

    fn rank(&self, text: &str, vector: Option<&[f32]>, exclude: Option<usize>) -> Vec<Routed> {
        let n = self.labels.len();
        let q = grams(text);
        let qn: f32 = q.values().sum();
        let (ex_class, ex_feats) = match exclude {
            Some(i) => (Some(self.examples[i].0), Some(&self.examples[i].1)),
            None => (None, None),
        };
        let mut logp = vec![f64::NEG_INFINITY; n];
        for (c, lp) in logp.iter_mut().enumerate() {
            let own = ex_class == Some(c);
            let docs = self.class_docs[c] - if own { 1.0 } else { 0.0 };
            if docs <= 0.0 {
                continue;
            }
            let mut total = self.class_totals[c] as f64;
            if own {
                total -= ex_feats.map_or(0.0, |f| f.values().sum::<f32>()) as f64;
            }
            let denom = (total + self.cfg.alpha * self.vocab).ln();
            let mut s = (docs as f64).ln();
            for (g, k) in &q {
                let mut cnt = self.class_counts[c].get(g).copied().unwrap_or(0.0) as f64;
                if own {
                    cnt -= ex_feats.and_then(|f| f.get(g)).copied().unwrap_or(0.0) as f64;
                }
                s += *k as f64 * ((cnt.max(0.0) + self.cfg.alpha).ln() - denom);
            }
            *lp = s;
        }
        let temp = self.cfg.nb_temperature * (qn.max(1.0) as f64);
        let p_nb = softmax(&logp, temp);
        let mut p = p_nb.clone();
        if let (Some(d), Some(v)) = (&self.dense, vector) {
            let mut sims: Vec<(f32, usize)> = d
                .vectors
                .iter()
                .enumerate()
                .filter(|(j, _)| Some(*j) != exclude)
                .map(|(j, e)| {
                    (
                        v.iter().zip(e).map(|(a, b)| a * b).sum::<f32>(),
                        self.examples[j].0,
                    )
                })
                .collect();
            sims.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut votes = vec![0f64; n];
            for (s, c) in sims.iter().take(self.cfg.knn) {
                votes[*c] += ((*s as f64 - 1.0) / self.cfg.dense_temperature).exp();
            }
            let sum: f64 = votes.iter().sum();
            if sum > 0.0 {
                for c in 0..n {
                    p[c] =
                        (1.0 - self.cfg.dense_mix) * p_nb[c] + self.cfg.dense_mix * votes[c] / sum;
                }
            }
        }
        let mut out: Vec<Routed> = (0..n)
            .map(|c| Routed {
                bureau: self.labels[c].clone(),
                probability: p[c],
            })
            .collect();
        out.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        out
    }
}

/// Routing examples from the city's own knowledge: every guide (title and aliases, with its
/// summary) and each of its FAQ questions under the guide's bureau, and every 1999 category's
/// examples under the category's bureau.
pub fn examples_from_knowledge(
    docs: &[knowledge::Document],
    taxonomy: &knowledge::Taxonomy,
) -> Vec<RouteExample> {
    let mut out = Vec::new();
    for d in docs {
        let Some(bureau) = d.bureau.clone() else {
            continue;
        };
        let summary = d
            .sections
            .iter()
            .find(|s| s.kind == knowledge::SectionKind::Overview)
            .map(|s| s.text.clone())
            .unwrap_or_default();
        out.push(RouteExample {
            question: std::iter::once(d.title.as_str())
                .chain(d.aliases.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            answer: summary,
            label: bureau.clone(),
        });
        for s in d
            .sections
            .iter()
            .filter(|s| s.kind == knowledge::SectionKind::Faq)
        {
            out.push(RouteExample {
                question: s.heading.clone(),
                answer: s.text.clone(),
                label: bureau.clone(),
            });
        }
    }
    for c in &taxonomy.categories {
        for e in &c.examples {
            out.push(RouteExample {
                question: e.clone(),
                answer: c.description.clone(),
                label: c.bureau.clone(),
            });
        }
    }
    out
}

fn softmax(logp: &[f64], temperature: f64) -> Vec<f64> {
    let max = logp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logp
        .iter()
        .map(|l| {
            if l.is_finite() {
                ((l - max) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let s: f64 = e.iter().sum();
    e.into_iter()
        .map(|x| if s > 0.0 { x / s } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(q: &str, label: &str) -> RouteExample {
        RouteExample {
            question: q.into(),
            answer: String::new(),
            label: label.into(),
        }
    }

    #[test]
    fn naive_bayes_routes_and_leaves_one_out() {
        let examples = vec![
            ex("勞保老年給付怎麼申請", "勞工局"),
            ex("公司積欠工資怎麼辦", "勞工局"),
            ex("資遣費怎麼計算", "勞工局"),
            ex("狂犬病疫苗哪裡打", "衛生局"),
            ex("流感疫苗接種地點", "衛生局"),
            ex("登革熱孳生源清除", "衛生局"),
        ];
        let r = Router::train(
            &examples,
            &[("勞工局".into(), "勞資爭議、工資、資遣".into())],
            None,
            RouterConfig::default(),
        )
        .unwrap();
        assert_eq!(r.route("老闆不發工資").unwrap()[0].bureau, "勞工局");
        assert_eq!(r.route("哪裡可以打疫苗").unwrap()[0].bureau, "衛生局");
        // Held out, the entry's own words do not count for its class.
        let held = r.route_held_out(3, "狂犬病疫苗哪裡打");
        assert_eq!(held[0].bureau, "衛生局");
        let total: f64 = held.iter().map(|r| r.probability).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
