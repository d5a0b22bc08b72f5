//! `eval`: accuracy and latency suites (see EVAL.md). Every suite prints a table and, as its
//! last line, one JSON object; `--min KEY=VALUE` makes it exit 1 when a figure falls short.

mod analytics_suite;
mod answer_suite;
mod asr_suite;
mod benefits_suite;
mod duplicates_suite;
mod extract_suite;
mod gold_suite;
mod intake_suite;
mod llm_suite;
mod load_suite;
mod route_suite;
mod safety_suite;
mod vad_suite;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use assistant::app::App;
use clap::{Parser, Subcommand};
use eval::metrics::{percentile, recall_at, reciprocal_rank};
use eval::queries::{faq_questions, read_ids, read_jsonl, GoldQuery};
use knowledge::LoadOptions;
use retrieval::engine::rank_documents;
use retrieval::{Mode, Retriever, SearchOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(
    name = "eval",
    about = "Accuracy and latency suites for the 1999 assistant"
)]
struct Cli {
    /// Configuration directory of the assistant.
    #[arg(long, global = true, default_value = "config")]
    config: PathBuf,
    /// Exit 1 when a figure of the last-line JSON is below VALUE (repeatable).
    #[arg(long = "min", global = true, value_parser = parse_min)]
    min: Vec<(String, f64)>,
    /// Exit 1 when a figure of the last-line JSON is above VALUE (repeatable).
    #[arg(long = "max", global = true, value_parser = parse_min)]
    max: Vec<(String, f64)>,
    /// Also write an HTML report into this directory.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Retrieval recall@k, MRR and latency.
    Retrieval(RetrievalArgs),
    /// The full answering pipeline: citations, grounding, hand-off rate, latency.
    Answer(answer_suite::AnswerArgs),
    /// LLM speed: prompt processing and generation tokens/s, time to first token; with
    /// llama.cpp's figures on the same GGUF and thread count when `--llama-bench` is given.
    Llm(llm_suite::LlmArgs),
    /// Form-field extraction: per-field precision, recall and F1 on labelled cases.
    Extract(extract_suite::ExtractArgs),
    /// Bureau routing: accuracy and macro F1 (leave-one-out on the FAQ's own questions).
    Route(route_suite::RouteArgs),
    /// Load on a running server: concurrent chat clients, throughput, p50/p99, statuses.
    Load(load_suite::LoadArgs),
    /// Speech recognition: character error rate, real-time factor, Simplified-output share.
    Asr(asr_suite::AsrArgs),
    /// Voice-activity detection: the energy VAD against Silero VAD v6 on the recordings mixed
    /// into babble and music.
    Vad(vad_suite::VadArgs),
    /// Safety triage: danger detected (precision, recall), the right rule, false alarms.
    Safety(safety_suite::SafetyArgs),
    /// Benefit suggestions from self-descriptions: recall, absurd suggestions, eligibility.
    Benefits(benefits_suite::BenefitsArgs),
    /// Agent assist: case type, questions without a dispatch category, the category's
    /// accuracy, abstentions and calibration.
    Intake(intake_suite::IntakeArgs),
    /// Duplicate reports: precision and recall of finding a report of the same pole (the
    /// quoted pole numbers as truth, hidden from the matcher).
    Duplicates(duplicates_suite::DuplicatesArgs),
    /// Decision support on a real 1999 dispatch file: import time, memory and idempotence,
    /// counts latency, spike detection precision/recall on injected spikes.
    Analytics(analytics_suite::AnalyticsArgs),
}

#[derive(clap::Args)]
struct RetrievalArgs {
    #[command(flatten)]
    set: EvalSet,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// bm25, dense, hybrid, or `all` (all three; each mode's figures under "modes").
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Also sweep the fusion settings (RRF k × BM25 weight, dense weight 1) on these queries
    /// and print recall@5 / MRR for each: how the configured defaults were chosen (dev split).
    #[arg(long)]
    sweep: bool,
}

fn parse_min(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    let v: f64 = v.parse().map_err(|_| format!("`{v}` is not a number"))?;
    Ok((k.to_string(), v))
}

fn main() -> ExitCode {
    assistant::telemetry::init("warn");
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let app = App::from_config_dir(&cli.config)?;
    let app = &app;
    let summary = match cli.suite {
        Suite::Retrieval(args) => retrieval_suite(app, &args, cli.report.as_deref()).await?,
        Suite::Answer(args) => answer_suite::run(app, &args, cli.report.as_deref()).await?,
        Suite::Llm(args) => llm_suite::run(app, &args)?,
        Suite::Extract(args) => extract_suite::run(app, &args).await?,
        Suite::Route(args) => route_suite::run(app, &args).await?,
        Suite::Load(args) => load_suite::run(&args).await?,
        Suite::Asr(args) => tokio::task::block_in_place(|| asr_suite::run(app, &args))?,
        Suite::Vad(args) => tokio::task::block_in_place(|| vad_suite::run(app, &args))?,
        Suite::Safety(args) => tokio::task::block_in_place(|| safety_suite::run(app, &args))?,
        Suite::Benefits(args) => benefits_suite::run(app, &args)?,
        Suite::Intake(args) => tokio::task::block_in_place(|| intake_suite::run(app, &args))?,
        Suite::Duplicates(args) => duplicates_suite::run(&args)?,
        Suite::Analytics(args) => tokio::task::block_in_place(|| analytics_suite::run(app, &args))?,
    };
    println!("{}", serde_json::to_string(&summary)?);
    let mut failed = false;
    let bounds = cli
        .min
        .iter()
        .map(|b| (b, true))
        .chain(cli.max.iter().map(|b| (b, false)));
    for ((key, bound), lower) in bounds {
        match summary.get(key).and_then(Value::as_f64) {
            Some(v) if (lower && v >= *bound) || (!lower && v <= *bound) => {}
            Some(v) => {
                let op = if lower { "<" } else { ">" };
                eprintln!("FAIL: {key} = {v:.4} {op} {bound}");
                failed = true;
            }
            None => {
                eprintln!("FAIL: no figure `{key}` in the summary");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn cache_key(corpus: &Path, index_questions: bool, app: &App) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    let meta =
        std::fs::metadata(corpus).with_context(|| format!("reading {}", corpus.display()))?;
    if meta.is_file() {
        h.update(std::fs::read(corpus)?);
    } else {
        // A folder by its path inside the checkout (`corpus/guides`), so a fresh clone elsewhere
        // reuses the entry; ingesting updates it to the folder's contents.
        let path = corpus.canonicalize()?;
        let cwd = std::env::current_dir()?.canonicalize()?;
        h.update(
            path.strip_prefix(&cwd)
                .unwrap_or(&path)
                .to_string_lossy()
                .as_bytes(),
        );
    }
    h.update([index_questions as u8]);
    h.update(app.settings.retrieval.chunk.max_chars.to_le_bytes());
    Ok(hex::encode(&h.finalize()[..8]))
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Bm25 => "bm25",
        Mode::Dense => "dense",
        Mode::Hybrid => "hybrid",
    }
}

/// Inputs shared by the suites that run over a corpus and gold queries.
#[derive(clap::Args)]
pub(crate) struct EvalSet {
    /// The corpus (default for `answer --gold`: the bundled guides).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// JSONL gold queries, or `faq-questions` to use the FAQ's own questions.
    #[arg(long)]
    pub queries: Option<String>,
    /// Ids file restricting `faq-questions` (one url per line).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Index FAQ questions together with their answers.
    #[arg(long)]
    pub index_questions: bool,
    /// Index directory; by default a cache entry keyed by the corpus and options, so a second
    /// run re-embeds nothing.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Build a throwaway in-memory index instead.
    #[arg(long, conflicts_with = "index")]
    pub fresh: bool,
    /// Evaluate at most N queries.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl EvalSet {
    pub fn corpus(&self) -> anyhow::Result<&Path> {
        self.corpus
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("give --corpus PATH"))
    }

    pub fn queries(&self) -> anyhow::Result<&str> {
        self.queries
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("give --queries PATH (or faq-questions)"))
    }
}

/// Opens (building or updating) the index over `corpus`: the cache entry keyed by the corpus
/// and options unless `--index` or `--fresh` says otherwise.
pub(crate) async fn open_index(app: &App, a: &EvalSet, corpus: &Path) -> anyhow::Result<Retriever> {
    let mut index_dir = match (&a.index, a.fresh) {
        (_, true) => None,
        (Some(d), _) => Some(d.clone()),
        (None, false) => Some(app.cache_root().join("eval-index").join(cache_key(
            corpus,
            a.index_questions,
            app,
        )?)),
    };
    let t0 = Instant::now();
    let options = LoadOptions {
        index_questions: a.index_questions,
    };
    let progress = |done: usize, total: usize| {
        if total > 0 && (done == total || done.is_multiple_of(256)) {
            eprintln!("  indexed {done}/{total} sections");
        }
    };
    let corpus_paths = [corpus.to_path_buf()];
    if let (Some(cache), None, false) = (&index_dir, &a.index, a.fresh) {
        if app.settings.retrieval.vectors != retrieval::VectorBackend::Flat {
            // The cache entry stays on the embedded store; a copy of it is moved to the
            // configured one (its vectors copied, nothing embedded again).
            let mut flat = app.settings.retrieval.clone();
            flat.vectors = retrieval::VectorBackend::Flat;
            let mut r = assistant::kb::open(app.embedder()?, &flat, Some(cache)).await?;
            assistant::kb::ingest(&mut r, &corpus_paths, &options, &progress).await?;
            drop(r);
            let moved = cache.with_extension("moved");
            let _ = std::fs::remove_dir_all(&moved);
            copy_dir(cache, &moved)?;
            index_dir = Some(moved);
        }
    }
    let mut r: Retriever = app.retriever(index_dir.as_deref()).await?;
    let out = assistant::kb::ingest(&mut r, &corpus_paths, &options, &progress).await?;
    for p in &out.problems {
        eprintln!("  ⚠ {p}");
    }
    eprintln!(
        "index: {} documents, {} sections ({} added, {} unchanged) in {:.1}s",
        r.num_documents(),
        r.num_chunks(),
        out.report.added,
        out.report.unchanged,
        t0.elapsed().as_secs_f64()
    );
    Ok(r)
}

/// Copies an index directory (without tantivy's writer lock).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else if e.file_name() != ".tantivy-writer.lock" {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Loads the gold queries and opens the index over the corpus; keeps only queries whose
/// relevant documents are in the corpus.
pub(crate) async fn open_eval_set(
    app: &App,
    a: &EvalSet,
) -> anyhow::Result<(Retriever, Vec<GoldQuery>)> {
    let corpus = a.corpus()?;
    let queries = a.queries()?;
    let mut gold: Vec<GoldQuery> = if queries == "faq-questions" {
        let ids = a.split.as_deref().map(read_ids).transpose()?;
        faq_questions(corpus, ids.as_ref())?
    } else {
        if a.split.is_some() {
            bail!("--split applies to `--queries faq-questions` only");
        }
        read_jsonl(Path::new(queries))?
    };
    if let Some(n) = a.limit {
        gold.truncate(n);
    }
    if gold.is_empty() {
        bail!("no queries to evaluate");
    }
    let r = open_index(app, a, corpus).await?;
    let before = gold.len();
    gold.retain(|q| q.relevant.iter().any(|d| r.has_document(d)));
    if gold.len() < before {
        eprintln!(
            "  {} queries skipped: none of their relevant documents is in the corpus",
            before - gold.len()
        );
    }
    if gold.is_empty() {
        bail!("no query has a relevant document in the corpus");
    }
    Ok((r, gold))
}

async fn retrieval_suite(
    app: &App,
    a: &RetrievalArgs,
    report: Option<&Path>,
) -> anyhow::Result<Value> {
    let modes: Vec<Mode> = if a.mode == "all" {
        vec![Mode::Bm25, Mode::Dense, Mode::Hybrid]
    } else {
        vec![a.mode.parse().map_err(anyhow::Error::msg)?]
    };
    let (r, gold) = open_eval_set(app, &a.set).await?;
    let depth = a.k.max(10);
    let mut per_mode = BTreeMap::new();
    let mut rows = Vec::new();
    println!(
        "{:<7} {:>5} {:>9} {:>9} {:>10} {:>7} {:>8} {:>8}",
        "mode", "n", "recall@1", "recall@5", "recall@10", "mrr", "p50_ms", "p99_ms"
    );
    for &mode in &modes {
        let opts = SearchOptions {
            k: depth * 3,
            mode,
            ..Default::default()
        };
        let (mut r1, mut r5, mut r10, mut rr) = (0.0, 0.0, 0.0, 0.0);
        let mut lat = Vec::with_capacity(gold.len());
        for q in &gold {
            let rel: HashSet<String> = q.relevant.iter().cloned().collect();
            let t = Instant::now();
            let hits = r.search(&q.query, &opts).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let mut ranked = rank_documents(&hits);
            ranked.truncate(depth);
            r1 += recall_at(&ranked, &rel, 1);
            r5 += recall_at(&ranked, &rel, 5);
            r10 += recall_at(&ranked, &rel, 10);
            rr += reciprocal_rank(&ranked[..ranked.len().min(a.k)], &rel);
        }
        let n = gold.len() as f64;
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        println!(
            "{:<7} {:>5} {:>9.4} {:>9.4} {:>10.4} {:>7.4} {:>8.1} {:>8.1}",
            mode_name(mode),
            gold.len(),
            r1 / n,
            r5 / n,
            r10 / n,
            rr / n,
            p50,
            p99
        );
        rows.push((
            mode_name(mode).to_string(),
            vec![
                ("recall@1".to_string(), r1 / n),
                ("recall@5".to_string(), r5 / n),
                ("recall@10".to_string(), r10 / n),
                ("mrr".to_string(), rr / n),
            ],
        ));
        per_mode.insert(
            mode_name(mode).to_string(),
            json!({
                "n": gold.len(),
                "recall@1": r1 / n,
                "recall@5": r5 / n,
                "recall@10": r10 / n,
                "mrr": rr / n,
                "p50_ms": p50,
                "p99_ms": p99,
            }),
        );
    }
    if a.sweep {
        sweep(&r, &gold, depth).await?;
    }
    // The headline figures are the last mode's (hybrid when running all).
    let last = mode_name(*modes.last().expect("at least one mode"));
    let mut summary = per_mode[last].clone();
    summary["mode"] = json!(last);
    if per_mode.len() > 1 {
        summary["modes"] = json!(per_mode);
    }
    if let Some(dir) = report {
        let path = eval::report::write_html(
            dir,
            "retrieval",
            &rows,
            &[
                ("corpus".into(), a.set.corpus()?.display().to_string()),
                (
                    "queries".into(),
                    format!("{} ({} judged)", a.set.queries()?, gold.len()),
                ),
            ],
        )?;
        eprintln!("report: {}", path.display());
    }
    Ok(summary)
}

/// Fuses the stored BM25 and dense lists under a grid of settings (no re-embedding per cell).
async fn sweep(r: &Retriever, gold: &[GoldQuery], depth: usize) -> anyhow::Result<()> {
    use retrieval::fusion::{rrf, RankedList};
    use retrieval::ChunkHit;
    let n = r.candidates();
    let mut lists = Vec::with_capacity(gold.len());
    for q in gold {
        let mut per = Vec::new();
        for mode in [Mode::Bm25, Mode::Dense] {
            let opts = SearchOptions {
                k: n,
                mode,
                ..Default::default()
            };
            let hits: Vec<ChunkHit> = r
                .search(&q.query, &opts)
                .await?
                .into_iter()
                .map(|h| ChunkHit {
                    chunk_id: h.chunk.id,
                    doc_id: h.chunk.doc_id,
                    score: h.score as f32,
                })
                .collect();
            per.push(hits);
        }
        lists.push(per);
    }
    eprintln!("sweep: rrf_k × bm25_weight (dense weight 1.0) → recall@5 / mrr");
    for k in [5.0, 10.0, 20.0, 30.0, 60.0, 100.0] {
        let mut line = format!("  k={k:<5}");
        for w in [0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0] {
            let (mut r5, mut rr) = (0.0, 0.0);
            for (q, per) in gold.iter().zip(&lists) {
                let fused = rrf(
                    &[
                        RankedList {
                            name: "bm25",
                            weight: w,
                            hits: &per[0],
                        },
                        RankedList {
                            name: "dense",
                            weight: 1.0,
                            hits: &per[1],
                        },
                    ],
                    k,
                );
                let mut seen = HashSet::new();
                let ranked: Vec<String> = fused
                    .into_iter()
                    .filter(|f| seen.insert(f.doc_id.clone()))
                    .map(|f| f.doc_id)
                    .take(depth)
                    .collect();
                let rel: HashSet<String> = q.relevant.iter().cloned().collect();
                r5 += recall_at(&ranked, &rel, 5);
                rr += reciprocal_rank(&ranked, &rel);
            }
            let m = gold.len() as f64;
            line.push_str(&format!("  w={w}: {:.4}/{:.4}", r5 / m, rr / m));
        }
        eprintln!("{line}");
    }
    Ok(())
}
