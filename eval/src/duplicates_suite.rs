//! `eval duplicates --csv taipei_streetlight_repair_reports_2024.csv`: how well the matcher
//! (`assistant::intake::duplicates`) finds a report of the same pole among the same district's
//! reports of the previous days, from the place and the description alone. Truth: the pole
//! number the resident quoted (reports quoting exactly one); the numbers are masked before the
//! matcher reads the text. Precision and recall over every (report, earlier report) pair inside
//! the window.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use assistant::intake::duplicates::{
    minutes, pole_numbers, same_problem, without_poles, Report, WINDOW_MINUTES,
};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct DuplicatesArgs {
    /// The streetlight reports (查報序號,行政區,查報地點,故障情形,查報日期).
    #[arg(long)]
    csv: PathBuf,
    /// Print the missed and the wrongly matched pairs.
    #[arg(long)]
    errors: bool,
}

pub fn run(a: &DuplicatesArgs) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(&a.csv).with_context(|| format!("reading {}", a.csv.display()))?;
    let rows = crate::extract_suite::read_csv(&text);
    let mut by_district: BTreeMap<String, Vec<(String, Report)>> = BTreeMap::new();
    let (mut n, mut skipped) = (0usize, 0usize);
    for r in rows.iter().skip(1) {
        let [id, district, place, description, date] = &r[..] else {
            skipped += 1;
            continue;
        };
        let Some(at) = minutes(date.trim()) else {
            skipped += 1;
            continue;
        };
        n += 1;
        by_district
            .entry(district.trim().to_string())
            .or_default()
            .push((
                id.clone(),
                Report {
                    district: district.trim().to_string(),
                    place: without_poles(place),
                    description: without_poles(description),
                    at,
                    poles: pole_numbers(&format!("{place} {description}")),
                },
            ));
    }
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut with_one_pole = 0usize;
    for reports in by_district.values_mut() {
        reports.sort_by_key(|(_, r)| r.at);
        for (i, (id_a, ra)) in reports.iter().enumerate() {
            if ra.poles.len() != 1 {
                continue;
            }
            with_one_pole += 1;
            for (id_b, rb) in reports[..i].iter().rev() {
                if ra.at - rb.at > WINDOW_MINUTES {
                    break;
                }
                if rb.poles.len() != 1 {
                    continue;
                }
                let same = ra.poles == rb.poles;
                let said = same_problem(ra, rb, false);
                match (said, same) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    (false, false) => continue,
                }
                if a.errors && said != same {
                    println!(
                        "{} {id_a} ~ {id_b}: 「{}」「{}」 / 「{}」「{}」",
                        if said { "wrong" } else { "missed" },
                        ra.place.trim(),
                        ra.description.replace('\n', " "),
                        rb.place.trim(),
                        rb.description.replace('\n', " ")
                    );
                }
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    println!(
        "reports {n} (skipped {skipped}), quoting one pole {with_one_pole}; window {} days: same-pole pairs {}, found {tp}, wrongly matched {fp}: precision {precision:.3} recall {recall:.3}",
        WINDOW_MINUTES / 1440,
        tp + fn_
    );
    Ok(json!({
        "reports": n,
        "skipped": skipped,
        "reports_with_one_pole": with_one_pole,
        "window_days": WINDOW_MINUTES / 1440,
        "same_pole_pairs": tp + fn_,
        "true_positives": tp,
        "false_positives": fp,
        "precision": precision,
        "recall": recall,
    }))
}
