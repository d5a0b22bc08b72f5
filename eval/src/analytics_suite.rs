//! `eval analytics --data taipei_1999_dispatch_2015_2026.csv.gz`: decision support on the real
//! case history.
//!
//! - **Import**: time and peak memory of importing the file into an empty SQLite database
//!   (and PostgreSQL with `--database-url`), the counts by reason, and a second import that
//!   must add nothing.
//! - **Queries**: `counts` over the whole history, random groupings and filters, p50/p95 on
//!   the in-memory history the server uses, against the same monthly counts as a SQL GROUP BY.
//! - **Spikes**: spikes injected into the real history (on evaluation days spread over the
//!   last two years, a few category × district cells get `max(5, 2λ)` extra cases, about
//!   three times their baseline λ); precision and recall of the detector over every cell of
//!   those days. A flag on a cell nothing was injected into counts as a false alarm, though
//!   some are real spikes of the history: precision is a lower bound.

use std::path::PathBuf;
use std::time::Instant;

use assistant::analytics::{self, spikes, By, Filter, History};
use assistant::app::App;
use assistant::store::Db;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct AnalyticsArgs {
    /// A 1999 dispatch CSV or `.csv.gz`.
    #[arg(long)]
    data: PathBuf,
    /// Also import into this PostgreSQL database (its `case_records` table is emptied first).
    #[arg(long)]
    database_url: Option<String>,
    /// Evaluation days for the spike injection.
    #[arg(long, default_value_t = 120)]
    days: usize,
    /// Cells injected per evaluation day.
    #[arg(long, default_value_t = 5)]
    cells: usize,
    #[arg(long, default_value_t = 300)]
    queries: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn import(db: &Db, app: &App, data: &std::path::Path) -> anyhow::Result<(Value, f64)> {
    let taxonomy = knowledge::taxonomy::Taxonomy::load(&app.settings.paths.cases)?;
    let started = Instant::now();
    let r = analytics::import::import_file(db, &taxonomy, data, &mut |_, _| {})?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("  {} ({secs:.1} s)", r.summary());
    Ok((serde_json::to_value(&r)?, secs))
}

pub fn run(app: &App, a: &AnalyticsArgs) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("eval-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("history.db");
    let db = Db::open(&path)?;
    let rss_before = peak_rss_mb();
    eprintln!("import into SQLite:");
    let (first, import_s) = import(&db, app, &a.data)?;
    let import_peak_mb = peak_rss_mb();
    eprintln!("import again:");
    let (second, reimport_s) = import(&db, app, &a.data)?;
    let mut out = json!({
        "import_rows": first["rows"],
        "import_added": first["added"],
        "import_duplicates": first["duplicates"],
        "import_repaired": first["repaired"],
        "import_renamed": first["renamed"],
        "import_skipped": first["skipped"],
        "import_s": import_s,
        "import_peak_rss_mb": import_peak_mb,
        "rss_before_import_mb": rss_before,
        "reimport_added": second["added"],
        "reimport_s": reimport_s,
    });
    if let Some(url) = &a.database_url {
        let pg = Db::connect_postgres(url)?;
        pg.batch("DELETE FROM case_records")?;
        eprintln!("import into PostgreSQL:");
        let (p1, s1) = import(&pg, app, &a.data)?;
        let (p2, s2) = import(&pg, app, &a.data)?;
        out["postgres_import_added"] = p1["added"].clone();
        out["postgres_import_s"] = json!(s1);
        out["postgres_reimport_added"] = p2["added"].clone();
        out["postgres_reimport_s"] = json!(s2);
    }

    // The history the server keeps.
    let taxonomy = knowledge::taxonomy::Taxonomy::load(&app.settings.paths.cases)?;
    let mut h = History::new(&taxonomy);
    let started = Instant::now();
    h.refresh(&db)?;
    out["history_load_s"] = json!(started.elapsed().as_secs_f64());
    out["history_records"] = json!(h.len());
    out["peak_rss_mb"] = json!(peak_rss_mb());
    let (first_day, last_day) = h
        .span()
        .ok_or_else(|| anyhow::anyhow!("nothing imported"))?;

    // counts: random groupings and filters over the whole history.
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let bys = [
        By::Day,
        By::Week,
        By::Month,
        By::Hour,
        By::Weekday,
        By::WeekdayHour,
        By::District,
        By::Village,
        By::Category,
    ];
    let mut times = Vec::new();
    for _ in 0..a.queries {
        let by = *bys.choose(&mut rng).expect("groupings");
        let mut f = Filter::default();
        if rng.gen_bool(0.5) {
            f.category = h.categories().choose(&mut rng).cloned();
        }
        if rng.gen_bool(0.5) {
            f.district = h.districts().choose(&mut rng).cloned();
        }
        if rng.gen_bool(0.5) {
            let from = rng.gen_range(first_day..last_day);
            f.from = Some(from);
            f.to = Some(rng.gen_range(from..=last_day));
        }
        let t = Instant::now();
        std::hint::black_box(h.counts(&f, by));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut whole = Vec::new();
    let mut sql = Vec::new();
    let ymd = |d: i64| {
        let (y, m, dd) = analytics::civil_from_days(d);
        y * 10_000 + m * 100 + dd
    };
    for _ in 0..10 {
        let t = Instant::now();
        let mem = h.counts(&Filter::default(), By::Month);
        whole.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let rows = db.monthly_case_counts_sql(ymd(first_day), ymd(last_day))?;
        sql.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            rows.iter().map(|r| r.1 as u64).sum::<u64>() == mem.iter().map(|r| r.1).sum::<u64>(),
            "the in-memory monthly counts differ from SQL's"
        );
    }
    out["counts_p50_ms"] = json!(percentile(&mut times.clone(), 0.5));
    out["counts_p95_ms"] = json!(percentile(&mut times, 0.95));
    out["monthly_whole_history_ms"] = json!(percentile(&mut whole, 0.5));
    out["monthly_whole_history_sql_ms"] = json!(percentile(&mut sql, 0.5));

    // Spikes injected into the real history.
    let span = (last_day - first_day) as usize;
    let window = 730.min(span.saturating_sub(spikes::HISTORY_DAYS + 1));
    let days: Vec<i64> = (0..a.days)
        .map(|i| last_day - (i * window / a.days.max(1)) as i64)
        .collect();
    let mut settings: Vec<spikes::Thresholds> = Vec::new();
    for r in [2.0, 2.5, 3.0] {
        for p in [1e-3, 1e-4, 1e-6] {
            settings.push(spikes::Thresholds {
                min_ratio: r,
                max_p: p,
                min_z: 0.0,
                ..spikes::DEFAULT
            });
        }
        for z in [3.0, 4.0, 5.0] {
            settings.push(spikes::Thresholds {
                min_ratio: r,
                max_p: 1.0,
                min_z: z,
                ..spikes::DEFAULT
            });
        }
    }
    if !settings.contains(&spikes::DEFAULT) {
        settings.push(spikes::DEFAULT);
    }
    // (tp, fp, fn) per setting
    let mut tally = vec![(0u64, 0u64, 0u64); settings.len()];
    let mut injected_total = 0u64;
    for &d in &days {
        let cells = h.daily_cells(d, spikes::HISTORY_DAYS + 1);
        let mut keys: Vec<(u8, u8)> = cells
            .iter()
            .filter(|(_, s)| s[..spikes::HISTORY_DAYS].iter().any(|&x| x > 0))
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        let chosen: Vec<(u8, u8)> = keys.choose_multiple(&mut rng, a.cells).copied().collect();
        for (k, series) in &cells {
            let (history, today) = series.split_at(spikes::HISTORY_DAYS);
            let injected = chosen.contains(k);
            let mut today = today[0];
            if injected {
                let lambda = spikes::baseline(history);
                today += (2.0 * lambda).ceil().max(5.0) as u32;
                injected_total += 1;
            }
            for (i, t) in settings.iter().enumerate() {
                let flagged = spikes::assess_with(today, history, *t).is_some();
                match (flagged, injected) {
                    (true, true) => tally[i].0 += 1,
                    (true, false) => tally[i].1 += 1,
                    (false, true) => tally[i].2 += 1,
                    _ => {}
                }
            }
        }
    }
    let pr = |(tp, fp, fnn): (u64, u64, u64)| {
        (
            tp as f64 / (tp + fp).max(1) as f64,
            tp as f64 / (tp + fnn).max(1) as f64,
        )
    };
    eprintln!(
        "spikes injected: {injected_total} on {} days; min_ratio, max_p, min_z → precision / recall / false alarms a day",
        days.len()
    );
    let mut sweep = Vec::new();
    for (s, t) in settings.iter().zip(&tally) {
        let (p, r) = pr(*t);
        eprintln!(
            "  {:.1}, {:.0e}, {:.0}: {p:.3} / {r:.3} / {:.2}",
            s.min_ratio,
            s.max_p,
            s.min_z,
            t.1 as f64 / days.len() as f64
        );
        sweep.push(json!({"min_ratio": s.min_ratio, "max_p": s.max_p, "min_z": s.min_z, "precision": p, "recall": r, "false_alarms_per_day": t.1 as f64 / days.len() as f64}));
        if *s == spikes::DEFAULT {
            out["spike_precision"] = json!(p);
            out["spike_recall"] = json!(r);
            out["spike_false_alarms_per_day"] = json!(t.1 as f64 / days.len() as f64);
        }
    }
    out["spikes_injected"] = json!(injected_total);
    out["spike_days"] = json!(days.len());
    out["spike_sweep"] = json!(sweep);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
