//! `eval answer`: runs the whole answering pipeline on gold queries (EVAL.md): the share of
//! answers citing a relevant document, answers with facts found in none of their cited
//! passages, the hand-off rate, and latency (total, first visible answer, first LLM token).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assistant::answer::grounding::{self, Passage};
use assistant::answer::{
    allowed, cited_text, Answer, AnswerConfig, AnswerKind, Answerer, AskContext,
};
use assistant::app::App;
use eval::metrics::percentile;
use eval::queries::GoldQuery;
use serde_json::{json, Value};

use crate::{open_eval_set, EvalSet};

#[derive(clap::Args)]
pub struct AnswerArgs {
    /// Gold correctness rows (`{"id", "q", "expect", "doc", "must", "must_not"}`): scores what
    /// the resident reads. The corpus defaults to the bundled guides.
    #[arg(long)]
    pub(crate) gold: Option<PathBuf>,
    /// With `--gold`: ask a running server (`POST URL/api/ask`) instead of the pipeline in
    /// process.
    #[arg(long, requires = "gold")]
    pub(crate) url: Option<String>,
    #[command(flatten)]
    pub(crate) set: EvalSet,
    /// `on`: the configured LLM; `off`: extractive answers only; `both`: extractive first,
    /// then with the LLM (the headline figures are the LLM run's, the other under
    /// "extractive").
    #[arg(long, default_value = "on")]
    pub(crate) llm: String,
    /// Run the LLM on at most N of the queries (the extractive run covers all).
    #[arg(long)]
    pub(crate) llm_limit: Option<usize>,
    /// Write every answer as JSONL here.
    #[arg(long)]
    pub(crate) answers_out: Option<PathBuf>,
}

/// The text of what an answer cites, as the grounding check sees it.
fn cited_passages(answerer: &Answerer, a: &Answer) -> Vec<String> {
    let r = answerer.retriever();
    a.citations
        .iter()
        .map(|c| match r.chunk(&c.chunk_id) {
            Some(ch) => cited_text(&ch.doc_title, &ch.text),
            None => r
                .chunks_of(&c.doc_id)
                .iter()
                .map(|ch| ch.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect()
}

struct Run {
    figures: Value,
    rows: Vec<(String, f64)>,
}

async fn run_once(
    answerer: &Answerer,
    gold: &[GoldQuery],
    label: &str,
    out: &mut Option<std::fs::File>,
) -> anyhow::Result<Run> {
    use std::io::Write;
    let (mut cites, mut violations, mut handoffs, mut generated) = (0usize, 0usize, 0usize, 0usize);
    // Fact recall against the gold answer (the relevant document's text): its numbers, dates,
    // phones, URLs and document names, normalised, found among the shown answer's.
    let (mut facts_total, mut facts_found) = (0usize, 0usize);
    let (mut total, mut visible, mut first_tok, mut ttft_prompt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, q) in gold.iter().enumerate() {
        let a = answerer
            .answer(&q.query, &AskContext::default(), &mut |_| {})
            .await?;
        let relevant: HashSet<&String> = q.relevant.iter().collect();
        if a.citations.iter().any(|c| relevant.contains(&c.doc_id)) {
            cites += 1;
        }
        if a.handoff {
            handoffs += 1;
        }
        let r = answerer.retriever();
        let gold_text: String = q
            .relevant
            .iter()
            .flat_map(|d| r.chunks_of(d))
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let shown: HashSet<String> = grounding::extract_facts(&a.answer)
            .into_iter()
            .map(|f| f.normalized)
            .collect();
        let wanted: HashSet<String> = grounding::extract_facts(&gold_text)
            .into_iter()
            .map(|f| f.normalized)
            .collect();
        facts_total += wanted.len();
        facts_found += wanted.iter().filter(|f| shown.contains(*f)).count();
        if a.kind == AnswerKind::Generated {
            generated += 1;
        }
        // Independent of the pipeline's own check: every fact of the shown answer must be in
        // the documents it cites (the question itself may be repeated).
        let texts = cited_passages(answerer, &a);
        let passages: Vec<Passage<'_>> = texts
            .iter()
            .zip(&a.citations)
            .map(|(t, c)| Passage {
                number: c.number,
                text: t,
            })
            .collect();
        let report = grounding::check(&a.answer, &passages, &allowed(&q.query));
        if report.unsupported().next().is_some() {
            violations += 1;
        }
        total.push(a.timings.total_ms);
        visible.push(a.timings.first_visible_ms);
        if let Some(t) = a.timings.llm_first_token_ms {
            first_tok.push(t);
        }
        if let Some(stats) = a.llm.as_ref().and_then(|l| l.stats.as_ref()) {
            ttft_prompt.push(stats.prompt_tokens as f64);
        }
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                json!({"run": label, "id": q.id, "query": q.query, "relevant": q.relevant,
                    "unsupported": report.unsupported().collect::<Vec<_>>(), "answer": a})
            )?;
        }
        if (i + 1) % 10 == 0 {
            eprintln!("  [{label}] {}/{}", i + 1, gold.len());
        }
    }
    let n = gold.len() as f64;
    let mut figures = json!({
        "n": gold.len(),
        "cites_relevant": cites as f64 / n,
        "fact_recall": facts_found as f64 / facts_total.max(1) as f64,
        "grounding_violations": violations,
        "handoff_rate": handoffs as f64 / n,
        "p50_ms": percentile(&total, 50.0),
        "p95_ms": percentile(&total, 95.0),
        "first_visible_p50_ms": percentile(&visible, 50.0),
        "first_visible_p95_ms": percentile(&visible, 95.0),
    });
    if !first_tok.is_empty() {
        figures["llm_first_token_p50_ms"] = json!(percentile(&first_tok, 50.0));
        figures["llm_first_token_p95_ms"] = json!(percentile(&first_tok, 95.0));
        figures["llm_prompt_tokens_p50"] = json!(percentile(&ttft_prompt, 50.0));
        figures["llm_accepted_rate"] = json!(generated as f64 / n);
    }
    println!(
        "{label:<10} n {:>4}  cites_relevant {:.4}  violations {}  handoff {:.4}  p50 {:.0} ms  p95 {:.0} ms  first visible p50 {:.0} ms{}",
        gold.len(),
        cites as f64 / n,
        violations,
        handoffs as f64 / n,
        percentile(&total, 50.0),
        percentile(&total, 95.0),
        percentile(&visible, 50.0),
        if first_tok.is_empty() {
            String::new()
        } else {
            format!(
                "  first LLM token p50 {:.0} ms  LLM accepted {:.2}",
                percentile(&first_tok, 50.0),
                generated as f64 / n
            )
        }
    );
    Ok(Run {
        rows: vec![
            ("cites_relevant".into(), cites as f64 / n),
            ("handoff_rate".into(), handoffs as f64 / n),
            (
                "llm_accepted".into(),
                if first_tok.is_empty() {
                    0.0
                } else {
                    generated as f64 / n
                },
            ),
        ],
        figures,
    })
}

pub async fn run(app: &App, a: &AnswerArgs, report: Option<&Path>) -> anyhow::Result<Value> {
    if let Some(gold) = &a.gold {
        return crate::gold_suite::run(app, a, gold).await;
    }
    let (r, gold) = open_eval_set(app, &a.set).await?;
    let r = Arc::new(r);
    let config: AnswerConfig = app.settings.answer.clone();
    let mut out = a
        .answers_out
        .as_ref()
        .map(std::fs::File::create)
        .transpose()?;
    let (extractive, with_llm) = match a.llm.as_str() {
        "off" => (true, false),
        "on" => (false, true),
        "both" => (true, true),
        other => anyhow::bail!("--llm {other}: expected on, off or both"),
    };
    let mut rows = Vec::new();
    let mut summary = None;
    let mut ex_figures = None;
    if extractive {
        let answerer = Answerer::new(r.clone(), None, config.clone());
        let run = run_once(&answerer, &gold, "extractive", &mut out).await?;
        rows.push(("extractive".to_string(), run.rows));
        ex_figures = Some(run.figures);
    }
    if with_llm {
        let llm = app.llm()?;
        let Some(llm) = llm else {
            anyhow::bail!(
                "--llm {} but the configuration has llm.backend = \"off\"",
                a.llm
            );
        };
        eprintln!("model: {}", llm.describe());
        let answerer = Answerer::new(r.clone(), Some(llm.clone()), config.clone());
        answerer.warm_up()?;
        let n = a.llm_limit.unwrap_or(gold.len()).min(gold.len());
        let mut run = run_once(&answerer, &gold[..n], "llm", &mut out).await?;
        run.figures["model"] = json!(llm.describe());
        rows.push(("llm".to_string(), run.rows));
        summary = Some(run.figures);
    }
    let mut summary = match (summary, ex_figures.clone()) {
        (Some(mut s), Some(ex)) => {
            s["extractive"] = ex;
            s
        }
        (Some(s), None) => s,
        (None, Some(ex)) => ex,
        (None, None) => unreachable!("at least one run"),
    };
    summary["llm"] = json!(with_llm);
    if let Some(dir) = report {
        let path = eval::report::write_html(
            dir,
            "answer",
            &rows,
            &[
                ("corpus".into(), a.set.corpus()?.display().to_string()),
                (
                    "queries".into(),
                    format!("{} ({})", a.set.queries()?, gold.len()),
                ),
            ],
        )?;
        eprintln!("report: {}", path.display());
    }
    Ok(summary)
}
