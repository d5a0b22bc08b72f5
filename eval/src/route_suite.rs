//! `eval route`: bureau-routing accuracy and macro F1 (EVAL.md). The router learns from the FAQ
//! entries of the train split (question, answer, bureau), the bureau duty descriptions and the
//! routing lexicon (`corpus/routing/bureaus.toml`, as the product does); `--cases faq-questions`
//! scores the FAQ's own questions leave-one-out.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Context};
use assistant::app::App;
use assistant::intake::route::{RouteExample, Router, RouterConfig};
use eval::queries::read_ids;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct RouteArgs {
    /// The Kaohsiung FAQ JSON (`[{text, title, url, html}]`).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Ids (urls) of the entries the router may learn from.
    #[arg(long)]
    pub train_split: PathBuf,
    /// JSONL `{"id", "text", "label"}`, or `faq-questions`.
    #[arg(long)]
    pub cases: String,
    /// With `faq-questions`: which entries' questions to score (default: the train split).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Bureau duty descriptions (`[{bureau_name, administrative_duties}]`); by default
    /// `bureauData_kaohsiung_departments.json` next to the corpus, if present.
    #[arg(long)]
    pub duties: Option<PathBuf>,
    /// The routing lexicon (`bureaus.toml`); by default the configured `paths.routing`;
    /// `none` routes without it.
    #[arg(long)]
    pub lexicon: Option<String>,
    /// Use the e5 embedder (`on`) or naive Bayes alone (`off`).
    #[arg(long, default_value = "on")]
    pub dense: String,
    /// Print each misrouted case.
    #[arg(long)]
    pub errors: bool,
    /// Also sweep the router's settings (leave-one-out accuracy per setting): how the defaults
    /// were chosen (dev split only).
    #[arg(long)]
    pub sweep: bool,
}

#[derive(Deserialize)]
struct FaqEntry {
    text: String,
    title: String,
    url: String,
    #[serde(default)]
    html: String,
}

#[derive(Deserialize)]
struct Duty {
    bureau_name: String,
    #[serde(default)]
    administrative_duties: String,
}

#[derive(Deserialize)]
struct Case {
    id: Value,
    text: String,
    label: String,
}

pub async fn run(app: &App, a: &RouteArgs) -> anyhow::Result<Value> {
    let raw = std::fs::read_to_string(&a.corpus)
        .with_context(|| format!("reading {}", a.corpus.display()))?;
    let entries: Vec<FaqEntry> = serde_json::from_str(&raw)
        .with_context(|| format!("{} is not the FAQ JSON format", a.corpus.display()))?;
    let train_ids = read_ids(&a.train_split)?;
    let mut seen = HashSet::new();
    let train: Vec<(String, RouteExample)> = entries
        .iter()
        .filter(|e| train_ids.contains(e.url.trim()) && seen.insert(e.url.trim().to_string()))
        .filter(|e| !e.text.trim().is_empty() && !e.title.trim().is_empty())
        .map(|e| {
            (
                e.url.trim().to_string(),
                RouteExample {
                    question: e.text.trim().to_string(),
                    answer: knowledge::html::html_to_text(&e.html),
                    label: e.title.trim().to_string(),
                },
            )
        })
        .collect();
    if train.is_empty() {
        bail!(
            "no FAQ entry of {} is in the train split",
            a.corpus.display()
        );
    }
    let labels: HashSet<&str> = train.iter().map(|(_, e)| e.label.as_str()).collect();
    let duties_path = a.duties.clone().or_else(|| {
        let p = a
            .corpus
            .with_file_name("bureauData_kaohsiung_departments.json");
        p.exists().then_some(p)
    });
    let mut duties = Vec::new();
    if let Some(p) = &duties_path {
        let d: Vec<Duty> = serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("{} is not a duties JSON", p.display()))?;
        for d in d {
            // Duty names are short (勞工局); labels carry the city prefix (高雄市政府勞工局).
            if let Some(l) = labels.iter().find(|l| l.ends_with(d.bureau_name.as_str())) {
                duties.push((l.to_string(), d.administrative_duties));
            }
        }
    }
    let embedder = if a.dense == "on" {
        Some(app.embedder()?)
    } else {
        None
    };
    let t0 = std::time::Instant::now();
    let examples: Vec<RouteExample> = train.iter().map(|(_, e)| e.clone()).collect();
    let mut router = Router::train_cached(
        &examples,
        &duties,
        embedder,
        RouterConfig::default(),
        Some(&app.cache_root().join("routing")),
    )?;
    let lexicon = match a.lexicon.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(app.settings.paths.routing.join("bureaus.toml")),
    };
    if let Some(p) = &lexicon {
        router = router.with_lexicon(&knowledge::routing::BureauLexicon::load(p)?);
    }
    eprintln!(
        "router: {} examples, {} bureaus, {} duty descriptions, lexicon {}, trained in {:.1}s",
        examples.len(),
        router.labels().len(),
        duties.len(),
        lexicon
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        t0.elapsed().as_secs_f64()
    );
    if a.sweep && a.cases == "faq-questions" {
        let mut best = (0.0, RouterConfig::default());
        for answer_weight in [0.05, 0.1] {
            for nb_temperature in [0.1, 0.25, 0.5] {
                for dense_mix in [0.3, 0.5, 0.7] {
                    for knn in [5, 10, 20] {
                        for dense_temperature in [0.01, 0.02, 0.05] {
                            let cfg = RouterConfig {
                                answer_weight,
                                nb_temperature,
                                dense_mix,
                                knn,
                                dense_temperature,
                                ..RouterConfig::default()
                            };
                            let r = router.with_config(cfg)?;
                            let ok = train
                                .iter()
                                .enumerate()
                                .filter(|(i, (_, e))| {
                                    r.route_held_out(*i, &e.question).first().map(|x| &x.bureau)
                                        == Some(&e.label)
                                })
                                .count();
                            let acc = ok as f64 / train.len() as f64;
                            if acc > best.0 {
                                best = (acc, cfg);
                            }
                            eprintln!("sweep answer_weight={answer_weight} nb_t={nb_temperature} mix={dense_mix} knn={knn} dense_t={dense_temperature}: {acc:.4}");
                        }
                    }
                }
            }
        }
        eprintln!("best {:.4}: {:?}", best.0, best.1);
    }
    // (id, gold, predicted)
    let mut results: Vec<(String, String, String)> = Vec::new();
    // Per case: the top bureau's probability and whether it was right (what the console shows
    // only above `assistant::intake::route::SHOW_AT`).
    let mut confidence: Vec<(f64, bool)> = Vec::new();
    if a.cases == "faq-questions" {
        let split = a.split.as_deref().map(read_ids).transpose()?;
        for (i, (id, e)) in train.iter().enumerate() {
            if split.as_ref().is_some_and(|s| !s.contains(id)) {
                continue;
            }
            let top = router.route_held_out(i, &e.question);
            confidence.push((
                top.first().map_or(0.0, |r| r.probability),
                top.first().is_some_and(|r| r.bureau == e.label),
            ));
            results.push((
                id.clone(),
                e.label.clone(),
                top.first().map(|r| r.bureau.clone()).unwrap_or_default(),
            ));
        }
    } else {
        let text =
            std::fs::read_to_string(&a.cases).with_context(|| format!("reading {}", a.cases))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let c: Case = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a case", a.cases, n + 1))?;
            let top = router.route(&c.text)?;
            let id =
                c.id.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| c.id.to_string());
            confidence.push((
                top.first().map_or(0.0, |r| r.probability),
                top.first().is_some_and(|r| r.bureau == c.label),
            ));
            results.push((
                id,
                c.label,
                top.first().map(|r| r.bureau.clone()).unwrap_or_default(),
            ));
        }
    }
    if results.is_empty() {
        bail!("no cases to route");
    }
    let n = results.len();
    let correct = results.iter().filter(|(_, g, p)| g == p).count();
    let mut per: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for (id, g, p) in &results {
        if g == p {
            per.entry(g).or_default().0 += 1.0;
        } else {
            per.entry(p).or_default().1 += 1.0;
            per.entry(g).or_default().2 += 1.0;
            if a.errors {
                eprintln!("✗ {id}: {g} → {p}");
            }
        }
    }
    println!(
        "{:<28} {:>5} {:>6} {:>6} {:>6}",
        "bureau", "n", "P", "R", "F1"
    );
    let mut f1s = Vec::new();
    for (b, (tp, fp, fn_)) in &per {
        let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let r = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        if tp + fn_ > 0.0 {
            f1s.push(f);
            println!("{b:<28} {:>5} {p:>6.3} {r:>6.3} {f:>6.3}", tp + fn_);
        }
    }
    let accuracy = correct as f64 / n as f64;
    let macro_f1 = f1s.iter().sum::<f64>() / f1s.len().max(1) as f64;
    println!("{n} cases, accuracy {accuracy:.3}, macro F1 {macro_f1:.3}");
    let at = assistant::intake::route::SHOW_AT;
    let shown: Vec<bool> = confidence
        .iter()
        .filter(|(p, _)| *p >= at)
        .map(|(_, ok)| *ok)
        .collect();
    let coverage = shown.len() as f64 / n as f64;
    let shown_accuracy = shown.iter().filter(|ok| **ok).count() as f64 / shown.len().max(1) as f64;
    println!(
        "top bureau at probability ≥ {at} (what the console shows): {:.1}% of cases, right {:.3}",
        coverage * 100.0,
        shown_accuracy
    );
    Ok(json!({"n": n, "accuracy": accuracy, "macro_f1": macro_f1,
        "shown_share": coverage, "shown_accuracy": shown_accuracy}))
}
