//! `eval benefits --cases profiles.jsonl`: benefit suggestions from residents'
//! self-descriptions (`{"id", "text", "eligible": [ids], "plausible": [ids], "not": [ids]}`):
//! recall of the eligible and plausible benefits, the clearly-not-applicable ones suggested
//! (absurd suggestions), and whether benefits the text fully supports are marked eligible.

use std::path::PathBuf;

use assistant::app::App;
use assistant::eligibility::{facts_from_text, suggest, Status};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct BenefitsArgs {
    #[arg(long)]
    cases: PathBuf,
    /// Assessment date (ISO).
    #[arg(long, default_value = "2026-12-01")]
    on: String,
    /// Print every profile's suggestions.
    #[arg(long)]
    verbose: bool,
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    text: String,
    #[serde(default)]
    eligible: Vec<String>,
    #[serde(default)]
    plausible: Vec<String>,
    #[serde(default)]
    not: Vec<String>,
}

pub fn run(app: &App, a: &BenefitsArgs) -> anyhow::Result<Value> {
    let profiles: Vec<Profile> = eval::queries::read_rows(&a.cases, "a profile", |_| Ok(()))?;
    let book = app.benefit_rules()?;
    let extractor = app.extractor(false)?;
    let (mut wanted, mut found, mut absurd, mut absurd_free) = (0usize, 0usize, 0usize, 0usize);
    let (mut full, mut full_eligible, mut suggested_total) = (0usize, 0usize, 0usize);
    for p in &profiles {
        let (facts, _) = facts_from_text(&p.text, &extractor, &a.on);
        let got = suggest(&book, &facts, &a.on);
        suggested_total += got.len();
        let ids: Vec<&str> = got.iter().map(|s| s.benefit.as_str()).collect();
        let want: Vec<&String> = p.eligible.iter().chain(&p.plausible).collect();
        wanted += want.len();
        let hit = want.iter().filter(|w| ids.contains(&w.as_str())).count();
        found += hit;
        let bad: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|i| p.not.iter().any(|n| n == i))
            .collect();
        absurd += bad.len();
        if bad.is_empty() {
            absurd_free += 1;
        }
        full += p.eligible.len();
        full_eligible += p
            .eligible
            .iter()
            .filter(|e| {
                got.iter()
                    .any(|s| &s.benefit == *e && s.status == Status::Eligible)
            })
            .count();
        let missed: Vec<&&String> = want.iter().filter(|w| !ids.contains(&w.as_str())).collect();
        if a.verbose || !bad.is_empty() || !missed.is_empty() {
            println!(
                "{:<5} missed {:?}  wrongly suggested {:?}\n      「{}」\n      facts {}",
                p.id,
                missed,
                bad,
                p.text,
                serde_json::to_string(&facts).unwrap_or_default()
            );
        }
    }
    let n = profiles.len() as f64;
    let recall = found as f64 / wanted.max(1) as f64;
    println!(
        "profiles {}  recall of eligible+plausible {:.3}  clearly-not suggested {}  profiles with no absurd suggestion {:.3}  eligible marked eligible {:.3}",
        profiles.len(),
        recall,
        absurd,
        absurd_free as f64 / n,
        full_eligible as f64 / full.max(1) as f64
    );
    Ok(json!({
        "n": profiles.len(),
        "recall": recall,
        "not_suggested": absurd,
        "absurd_free_share": absurd_free as f64 / n,
        "eligible_marked_eligible": full_eligible as f64 / full.max(1) as f64,
        "suggestions_per_profile": suggested_total as f64 / n,
    }))
}
