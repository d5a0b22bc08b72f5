//! `eval answer --gold PATH`: what the resident reads, scored row by row (EVAL.md): facts that
//! must be shown, claims that must not be, emergencies with their number, hand-offs and
//! refusals. In process through the same pipeline as the server (`App::answerer`), or against
//! a running server's `POST /api/ask` with `--url`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use assistant::answer::{Answer, AnswerKind, AskContext};
use assistant::app::App;
use eval::correctness::{read_gold, score, Expect, GoldRow, Shown};
use eval::metrics::percentile;
use serde_json::{json, Value};

use crate::answer_suite::AnswerArgs;

/// One row's outcome.
struct Outcome {
    shown: Shown,
    /// The answer's first part (what a resident reads before 「詳細說明」).
    lead: String,
    lead_chars: usize,
    first_visible_ms: f64,
    total_ms: f64,
    cited_docs: Vec<String>,
    raw: Value,
}

fn from_answer(a: &Answer) -> Outcome {
    Outcome {
        shown: Shown {
            answer: a.answer.clone(),
            handed_off: a.handoff,
            refused: a.kind == AnswerKind::Refused,
            emergency: a.kind == AnswerKind::Emergency,
        },
        lead: a.lead.clone(),
        lead_chars: a.lead.chars().count(),
        first_visible_ms: a.timings.first_visible_ms,
        total_ms: a.timings.total_ms,
        cited_docs: a.citations.iter().map(|c| c.doc_id.clone()).collect(),
        raw: serde_json::to_value(a).unwrap_or_default(),
    }
}

fn from_server(v: Value, elapsed_ms: f64) -> Outcome {
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    Outcome {
        shown: Shown {
            answer: v["answer"].as_str().unwrap_or_default().to_string(),
            handed_off: v["handoff"].as_bool().unwrap_or(false),
            refused: kind == "refused",
            emergency: kind == "emergency",
        },
        lead: v["lead"].as_str().unwrap_or_default().to_string(),
        lead_chars: v["lead"].as_str().unwrap_or_default().chars().count(),
        // Through the server, the first visible answer is the whole reply of `/api/ask`.
        first_visible_ms: elapsed_ms,
        total_ms: elapsed_ms,
        cited_docs: v["citations"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["doc_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        raw: v,
    }
}

fn ask_server(agent: &ureq::Agent, url: &str, q: &str) -> anyhow::Result<(Value, f64)> {
    let t = Instant::now();
    for attempt in 0..5 {
        match agent
            .post(&format!("{}/api/ask", url.trim_end_matches('/')))
            .send_json(json!({"message": q}))
        {
            Ok(r) => {
                let v: Value = r.into_json()?;
                return Ok((v, t.elapsed().as_secs_f64() * 1e3));
            }
            Err(ureq::Error::Status(429 | 503, r)) if attempt < 4 => {
                let wait = r
                    .header("retry-after")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(2u64);
                std::thread::sleep(Duration::from_secs(wait.min(30)));
            }
            Err(e) => return Err(anyhow::anyhow!("asking {url}: {e}")),
        }
    }
    anyhow::bail!("{url} kept refusing with 429/503")
}

pub async fn run(app: &App, a: &AnswerArgs, gold_path: &Path) -> anyhow::Result<Value> {
    let mut gold = read_gold(gold_path)?;
    if let Some(n) = a.set.limit {
        gold.truncate(n);
    }
    if gold.is_empty() {
        anyhow::bail!("{} has no rows", gold_path.display());
    }
    let with_llm = match a.llm.as_str() {
        "off" => false,
        "on" => true,
        other => anyhow::bail!("--llm {other}: with --gold, on or off"),
    };
    // One run over the rows: `--llm-limit` (the LLM's share elsewhere) is a limit here too.
    if let (true, Some(n)) = (with_llm, a.llm_limit) {
        gold.truncate(n);
    }
    let mut out = a
        .answers_out
        .as_ref()
        .map(std::fs::File::create)
        .transpose()?;
    let mut outcomes = Vec::with_capacity(gold.len());
    match &a.url {
        Some(url) => {
            // A client with no cookie jar would meet the address limit of a server with default
            // settings: keep one session, paced by Retry-After.
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build();
            for (i, row) in gold.iter().enumerate() {
                let (v, ms) = ask_server(&agent, url, &row.q)?;
                outcomes.push(from_server(v, ms));
                progress(i, gold.len());
            }
        }
        None => {
            let corpus = match &a.set.corpus {
                Some(c) => c.clone(),
                None => app.settings.paths.corpus.clone(),
            };
            let r = crate::open_index(app, &a.set, &corpus).await?;
            let answerer = app.answerer(r, !with_llm)?;
            answerer.warm_up()?;
            for (i, row) in gold.iter().enumerate() {
                let ans = answerer
                    .answer(&row.q, &AskContext::default(), &mut |_| {})
                    .await
                    .with_context(|| format!("row {}", row.id))?;
                outcomes.push(from_answer(&ans));
                progress(i, gold.len());
            }
        }
    }
    report(&gold, &outcomes, with_llm, a.url.as_deref(), &mut out)
}

fn progress(i: usize, n: usize) {
    if (i + 1).is_multiple_of(25) {
        eprintln!("  {}/{n}", i + 1);
    }
}

fn report(
    gold: &[GoldRow],
    outcomes: &[Outcome],
    with_llm: bool,
    url: Option<&str>,
    out: &mut Option<std::fs::File>,
) -> anyhow::Result<Value> {
    let mut per: BTreeMap<Expect, (usize, usize)> = BTreeMap::new();
    let (mut correct, mut wrong, mut false_handoff, mut answer_rows, mut cites_doc, mut with_doc) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut leads, mut visible, mut total) = (Vec::new(), Vec::new(), Vec::new());
    // Answer rows answered correctly whose lead alone shows every fact (the answer first).
    let (mut lead_rows, mut lead_has_facts) = (0usize, 0usize);
    let mut lead_misses: Vec<String> = Vec::new();
    println!("failures (id, expected → what was shown):");
    for (row, o) in gold.iter().zip(outcomes) {
        let v = score(row, &o.shown);
        let e = per.entry(row.expect).or_default();
        e.0 += 1;
        if v.correct {
            correct += 1;
            e.1 += 1;
        }
        if v.wrong_claim {
            wrong += 1;
        }
        if row.expect == Expect::Answer {
            answer_rows += 1;
            if o.shown.handed_off || o.shown.refused {
                false_handoff += 1;
            }
            if let Some(d) = &row.doc {
                with_doc += 1;
                if o.cited_docs.contains(d) {
                    cites_doc += 1;
                }
            }
            if !o.shown.handed_off {
                leads.push(o.lead_chars as f64);
            }
            if v.correct && !row.must.is_empty() {
                lead_rows += 1;
                let in_lead = row
                    .must
                    .iter()
                    .all(|alts| alts.iter().any(|a| o.lead.contains(a.as_str())));
                if in_lead {
                    lead_has_facts += 1;
                } else {
                    lead_misses.push(format!(
                        "  {:<6} {}  lead 「{}」",
                        row.id,
                        row.q,
                        o.lead.replace('\n', " ")
                    ));
                }
            }
        }
        visible.push(o.first_visible_ms);
        total.push(o.total_ms);
        if !v.correct {
            let shown: String = o.shown.answer.chars().take(70).collect();
            println!(
                "  {:<6} {:<9} → {}{}{}  「{}」",
                row.id,
                row.expect.name(),
                if o.shown.handed_off {
                    "handed off "
                } else {
                    ""
                },
                if v.missing.is_empty() {
                    String::new()
                } else {
                    format!("missing {:?} ", v.missing)
                },
                if v.matched.is_empty() {
                    String::new()
                } else {
                    format!("WRONG {:?} ", v.matched)
                },
                shown.replace('\n', " ")
            );
        }
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                json!({"id": row.id, "q": row.q, "expect": row.expect, "verdict": v, "answer": o.raw})
            )?;
        }
    }
    if !lead_misses.is_empty() {
        println!("\ncorrect, but the fact is only under 詳細說明 (not in the lead):");
        for m in &lead_misses {
            println!("{m}");
        }
    }
    let n = gold.len() as f64;
    let rate = |e: Expect| per.get(&e).map(|(n, c)| *c as f64 / (*n).max(1) as f64);
    println!("\n{:<10} {:>5} {:>8}", "expect", "n", "correct");
    for (e, (k, c)) in &per {
        println!(
            "{:<10} {:>5} {:>8.3}",
            e.name(),
            k,
            *c as f64 / (*k).max(1) as f64
        );
    }
    let summary = json!({
        "n": gold.len(),
        "correct": correct as f64 / n,
        "wrong_claims": wrong,
        "answer_correct": rate(Expect::Answer),
        "emergency_correct": rate(Expect::Emergency),
        "handoff_correct": rate(Expect::Handoff),
        "refuse_correct": rate(Expect::Refuse),
        "false_handoff": false_handoff as f64 / answer_rows.max(1) as f64,
        "cites_expected_doc": cites_doc as f64 / with_doc.max(1) as f64,
        "fact_in_lead": lead_has_facts as f64 / lead_rows.max(1) as f64,
        "lead_chars_p50": percentile(&leads, 50.0),
        "lead_chars_p90": percentile(&leads, 90.0),
        "first_visible_p50_ms": percentile(&visible, 50.0),
        "first_visible_p95_ms": percentile(&visible, 95.0),
        "p50_ms": percentile(&total, 50.0),
        "p95_ms": percentile(&total, 95.0),
        "llm": with_llm,
        "via": url.unwrap_or("in-process"),
    });
    println!(
        "correct {:.3}  wrong claims {}  false hand-offs {:.3}  lead p50 {:.0} chars  first visible p50 {:.0} ms",
        correct as f64 / n,
        wrong,
        false_handoff as f64 / answer_rows.max(1) as f64,
        percentile(&leads, 50.0),
        percentile(&visible, 50.0)
    );
    Ok(summary)
}
