//! `eval intake --cases dev.jsonl`: what the agent sees for a call (`{"id", "text",
//! "case_type": "諮詢"|"通報"|"陳情", "category": name|null}`): case-type accuracy, questions
//! left without a dispatch category, the category's accuracy on reports and complaints, its
//! abstentions, and a reliability table of the calibrated confidence. `--fit` refits the
//! calibration (Platt scaling on the top score and its margin) and prints a 5-fold
//! cross-validated reliability table, so the table is not read off the data it was fitted on.

use std::path::PathBuf;

use assistant::app::App;
use assistant::intake::{case_view, category_confidence, CaseType, CATEGORY_ABSTAIN_BELOW};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct IntakeArgs {
    #[arg(long)]
    cases: PathBuf,
    /// Refit the category calibration and report it cross-validated.
    #[arg(long)]
    fit: bool,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    text: String,
    case_type: String,
    category: Option<String>,
}

/// One labelled report: the classifier's top score, margin and whether the top was right.
struct Point {
    s1: f32,
    margin: f32,
    right: bool,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Logistic regression on (s1, margin) by gradient descent (a few hundred points).
fn fit(points: &[&Point]) -> [f32; 3] {
    let mut w = [0f32; 3];
    for _ in 0..4000 {
        let mut g = [0f32; 3];
        for p in points {
            let y = if p.right { 1.0 } else { 0.0 };
            let e = sigmoid(w[0] + w[1] * p.s1 + w[2] * p.margin) - y;
            g[0] += e;
            g[1] += e * p.s1;
            g[2] += e * p.margin;
        }
        let n = points.len().max(1) as f32;
        for i in 0..3 {
            // A little L2 keeps the weights sane on small sets.
            w[i] -= 0.5 * (g[i] / n + 0.01 * w[i]);
        }
    }
    w
}

/// Reliability table: per confidence bin, count, mean confidence and accuracy.
fn reliability(pairs: &[(f32, bool)]) -> Vec<Value> {
    let bins = [
        (0.0, 0.5),
        (0.5, 0.6),
        (0.6, 0.7),
        (0.7, 0.8),
        (0.8, 0.9),
        (0.9, 1.01),
    ];
    bins.iter()
        .map(|(lo, hi)| {
            let inside: Vec<&(f32, bool)> =
                pairs.iter().filter(|(c, _)| c >= lo && c < hi).collect();
            let n = inside.len();
            let mean = inside.iter().map(|(c, _)| *c as f64).sum::<f64>() / n.max(1) as f64;
            let acc = inside.iter().filter(|(_, r)| *r).count() as f64 / n.max(1) as f64;
            println!(
                "  {:.1}–{:.1}  n {:>3}  mean confidence {:.2}  accuracy {:.2}",
                lo,
                hi.min(1.0),
                n,
                mean,
                acc
            );
            json!({"from": lo, "to": hi.min(1.0), "n": n, "mean_confidence": mean, "accuracy": acc})
        })
        .collect()
}

pub fn run(app: &App, a: &IntakeArgs) -> anyhow::Result<Value> {
    let rows: Vec<Row> = eval::queries::read_rows(&a.cases, "a call row", |_| Ok(()))?;
    let extractor = app.extractor(true)?;
    let (mut type_right, mut inquiries, mut inquiries_clean) = (0usize, 0usize, 0usize);
    let (mut dispatched, mut chosen, mut chosen_right, mut abstained) = (0usize, 0, 0, 0);
    let mut points = Vec::new();
    let mut confusion = std::collections::BTreeMap::<(String, String), usize>::new();
    for r in &rows {
        let ex = extractor.extract("case_report", &r.text)?;
        let view = case_view(&extractor, &ex, &r.text);
        let got = view.case_type.label();
        *confusion
            .entry((r.case_type.clone(), got.to_string()))
            .or_default() += 1;
        if got == r.case_type {
            type_right += 1;
        } else {
            println!("{:<5} type {} → {}  「{}」", r.id, r.case_type, got, r.text);
        }
        if r.case_type == CaseType::Inquiry.label() {
            inquiries += 1;
            if view.category.is_none() {
                inquiries_clean += 1;
            }
        }
        if let Some(want) = &r.category {
            dispatched += 1;
            let top = ex.alternatives.first().map(|x| x.0.as_str());
            points.push(Point {
                s1: ex.alternatives.first().map_or(0.0, |x| x.1),
                margin: ex.alternatives.first().map_or(0.0, |x| x.1)
                    - ex.alternatives.get(1).map_or(0.0, |x| x.1),
                right: top == Some(want.as_str()),
            });
            match &view.category {
                Some(c) => {
                    chosen += 1;
                    if c == want {
                        chosen_right += 1;
                    } else {
                        println!(
                            "{:<5} category {} → {} ({:.2})  「{}」",
                            r.id,
                            want,
                            c,
                            view.category_confidence.unwrap_or(0.0),
                            r.text
                        );
                    }
                }
                None if view.abstained => abstained += 1,
                None => {}
            }
        }
    }
    println!("case type (want → got):");
    for ((w, g), n) in &confusion {
        println!("  {w} → {g}: {n}");
    }
    let top1 = points.iter().filter(|p| p.right).count() as f64 / points.len().max(1) as f64;
    println!("\ncategory reliability (shipped calibration, on this set):");
    let shipped: Vec<(f32, bool)> = points
        .iter()
        .map(|p| {
            (
                category_confidence(&[("a".into(), p.s1), ("b".into(), p.s1 - p.margin)]),
                p.right,
            )
        })
        .collect();
    let table = reliability(&shipped);
    let mut fitted = Value::Null;
    if a.fit {
        // 5-fold cross-validated confidences, then the weights fitted on everything.
        let mut cv = Vec::new();
        for k in 0..5 {
            let train: Vec<&Point> = points
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 != k)
                .map(|(_, p)| p)
                .collect();
            let w = fit(&train);
            for (i, p) in points.iter().enumerate() {
                if i % 5 == k {
                    cv.push((sigmoid(w[0] + w[1] * p.s1 + w[2] * p.margin), p.right));
                }
            }
        }
        println!("\ncategory reliability (refitted, 5-fold cross-validated):");
        let cv_table = reliability(&cv);
        let all: Vec<&Point> = points.iter().collect();
        let w = fit(&all);
        println!(
            "\nfitted CATEGORY_CALIBRATION = [{:.3}, {:.3}, {:.3}]",
            w[0], w[1], w[2]
        );
        fitted = json!({"weights": w, "cv_reliability": cv_table});
    }
    let n = rows.len() as f64;
    let high: Vec<&(f32, bool)> = shipped.iter().filter(|(c, _)| *c >= 0.9).collect();
    let summary = json!({
        "n": rows.len(),
        "case_type_accuracy": type_right as f64 / n,
        "inquiries_without_category": inquiries_clean as f64 / inquiries.max(1) as f64,
        "category_top1": top1,
        "category_chosen_accuracy": chosen_right as f64 / chosen.max(1) as f64,
        "category_abstained": abstained as f64 / dispatched.max(1) as f64,
        "accuracy_at_0_9": high.iter().filter(|(_, r)| *r).count() as f64 / high.len().max(1) as f64,
        "abstain_below": CATEGORY_ABSTAIN_BELOW,
        "reliability": table,
        "fit": fitted,
    });
    println!(
        "case type {:.3}  questions without a category {:.3}  category top-1 {:.3}, when chosen {:.3}, abstained {:.3}",
        type_right as f64 / n,
        inquiries_clean as f64 / inquiries.max(1) as f64,
        top1,
        chosen_right as f64 / chosen.max(1) as f64,
        abstained as f64 / dispatched.max(1) as f64
    );
    Ok(summary)
}
