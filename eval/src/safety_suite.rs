//! `eval safety --cases triage.jsonl`: the safety triage on labelled messages
//! (`{"id", "text", "rule": id or null}`): whether danger is detected (precision, recall), the
//! right rule first, and how many ordinary messages raise an alert — by the rules alone, and
//! with the similarity vote at each threshold of `--sweep` (or the configured one).

use std::path::PathBuf;

use anyhow::Context;
use assistant::answer::safety::{unit, Triage};
use assistant::app::App;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct SafetyArgs {
    /// JSONL `{"id", "text", "rule"}`; `rule` null for a message with no danger now.
    #[arg(long)]
    cases: PathBuf,
    /// Also score these similarity thresholds (comma-separated), e.g. 0.90,0.92,0.94.
    #[arg(long)]
    sweep: Option<String>,
    /// Add the questions of an answer gold file: its emergency rows as dangers (any rule),
    /// every other row as an ordinary message that must raise no alert.
    #[arg(long)]
    answers_gold: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    text: String,
    rule: Option<String>,
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    right_rule: usize,
    positives: usize,
}

impl Counts {
    fn figures(&self) -> Value {
        let p = self.tp as f64 / (self.tp + self.fp).max(1) as f64;
        let r = self.tp as f64 / (self.tp + self.fn_).max(1) as f64;
        json!({
            "precision": p,
            "recall": r,
            "false_alarms": self.fp,
            "missed": self.fn_,
            "right_rule": self.right_rule as f64 / self.positives.max(1) as f64,
        })
    }
}

fn count(cases: &[Case], fired: &[Option<String>]) -> Counts {
    let mut c = Counts::default();
    for (case, got) in cases.iter().zip(fired) {
        match (&case.rule, got) {
            (Some(want), Some(g)) => {
                c.tp += 1;
                c.positives += 1;
                if want == g || want == "*" {
                    c.right_rule += 1;
                }
            }
            (Some(_), None) => {
                c.fn_ += 1;
                c.positives += 1;
            }
            (None, Some(_)) => c.fp += 1,
            (None, None) => {}
        }
    }
    c
}

pub fn run(app: &App, a: &SafetyArgs) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(&a.cases)
        .with_context(|| format!("reading {}", a.cases.display()))?;
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    let mut cases = cases;
    if let Some(p) = &a.answers_gold {
        for row in eval::correctness::read_gold(p)? {
            cases.push(Case {
                id: row.id,
                text: row.q,
                rule: (row.expect == eval::correctness::Expect::Emergency).then(|| "*".into()),
            });
        }
    }
    let rules_only = Triage::load(&app.settings.paths.safety)?;
    let triage = app.triage()?;
    let embedder = app.embedder()?;
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let vectors: Vec<Vec<f32>> = embedder
        .embed_queries(&texts)
        .map_err(|e| anyhow::anyhow!("embedding: {e}"))?
        .into_iter()
        .map(unit)
        .collect();
    let by_rules: Vec<Option<String>> = cases
        .iter()
        .map(|c| {
            rules_only
                .check_rules(&c.text)
                .into_iter()
                .next()
                .map(|a| a.rule)
        })
        .collect();
    let rules = count(&cases, &by_rules);
    println!(
        "{:<22} {:>9} {:>7} {:>12} {:>7} {:>10}",
        "", "precision", "recall", "false alarms", "missed", "right rule"
    );
    let line = |name: &str, c: &Counts| {
        let f = c.figures();
        println!(
            "{:<22} {:>9.3} {:>7.3} {:>12} {:>7} {:>10.3}",
            name,
            f["precision"].as_f64().unwrap_or(0.0),
            f["recall"].as_f64().unwrap_or(0.0),
            c.fp,
            c.fn_,
            f["right_rule"].as_f64().unwrap_or(0.0)
        );
    };
    line("rules", &rules);
    let mut thresholds = vec![app.settings.answer.safety_similarity];
    if let Some(s) = &a.sweep {
        for t in s.split(',') {
            thresholds.push(t.trim().parse().context("--sweep takes numbers")?);
        }
    }
    let mut sweep = serde_json::Map::new();
    let mut configured = Value::Null;
    for (i, &t) in thresholds.iter().enumerate() {
        let fired: Vec<Option<String>> = cases
            .iter()
            .zip(&vectors)
            .zip(&by_rules)
            .map(|((c, v), r)| {
                r.clone()
                    .or_else(|| triage.check_similar_at(&c.text, v, t).map(|a| a.rule))
            })
            .collect();
        let c = count(&cases, &fired);
        line(&format!("rules + similarity {t:.2}"), &c);
        if i == 0 {
            configured = c.figures();
        } else {
            sweep.insert(format!("{t:.2}"), c.figures());
        }
    }
    Ok(json!({
        "n": cases.len(),
        "rules": rules.figures(),
        "with_similarity": configured,
        "threshold": app.settings.answer.safety_similarity,
        "precision": configured["precision"],
        "recall": configured["recall"],
        "sweep": sweep,
        "ids_missed": cases.iter().zip(&by_rules).filter(|(c, r)| c.rule.is_some() && r.is_none()).map(|(c, _)| c.id.clone()).collect::<Vec<_>>().len(),
    }))
}
