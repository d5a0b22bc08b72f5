//! Knowledge-base operations shared by the CLI, the eval harness and the server: opening the
//! index with an embedder, and ingesting corpus paths.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use knowledge::{load_path, LoadOptions, LoadProblem};
use retrieval::{Embedder, IngestReport, Retriever, RetrieverConfig};

/// Opens the retriever over `index_dir` (or in memory when `None`) with `embedder`.
pub async fn open(
    embedder: Arc<dyn Embedder>,
    config: &RetrieverConfig,
    index_dir: Option<&Path>,
) -> anyhow::Result<Retriever> {
    let r = Retriever::open(index_dir, embedder, config.clone())
        .await
        .with_context(|| match index_dir {
            Some(d) => format!("opening the index at {}", d.display()),
            None => "opening an in-memory index".to_string(),
        })?;
    if let Some(reason) = r.rebuilt() {
        tracing::warn!(
            reason,
            "the index was rebuilt; everything will be re-ingested"
        );
    }
    Ok(r)
}

/// The outcome of ingesting some paths.
#[derive(Debug)]
pub struct IngestOutcome {
    pub report: IngestReport,
    pub problems: Vec<LoadProblem>,
    pub files: usize,
    pub empty: usize,
}

/// The guides under some corpus paths, loaded and checked, ready to ingest.
pub struct Loaded {
    pub docs: Vec<knowledge::LoadedDocument>,
    pub problems: Vec<LoadProblem>,
    pub files: usize,
    pub empty: usize,
    scope: Vec<PathBuf>,
}

/// Loads every path (files with problems are reported and skipped).
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> anyhow::Result<Loaded> {
    let mut out = Loaded {
        docs: Vec::new(),
        problems: Vec::new(),
        files: 0,
        empty: 0,
        scope: Vec::new(),
    };
    for p in paths {
        let canon = p
            .canonicalize()
            .with_context(|| format!("corpus path {} does not exist", p.display()))?;
        let mut loaded = load_path(&canon, opts)?;
        out.files += loaded.files;
        out.empty += loaded.empty;
        out.docs.append(&mut loaded.documents);
        out.problems.append(&mut loaded.problems);
        out.scope.push(canon);
    }
    Ok(out)
}

/// Loads every path, then brings the index in line with what loaded. Files with problems are
/// reported and skipped; what was indexed from them before is kept.
pub async fn ingest(
    retriever: &mut Retriever,
    paths: &[PathBuf],
    opts: &LoadOptions,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> anyhow::Result<IngestOutcome> {
    let loaded = load(paths, opts)?;
    ingest_loaded(retriever, loaded, retrieval::Prepared::default(), progress).await
}

/// Brings the index in line with guides loaded by [`load`], with vectors embedded beforehand
/// by [`Retriever::prepare`] where there are some.
pub async fn ingest_loaded(
    retriever: &mut Retriever,
    loaded: Loaded,
    prepared: retrieval::Prepared,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> anyhow::Result<IngestOutcome> {
    let keep: HashSet<PathBuf> = loaded.problems.iter().map(|p| p.path.clone()).collect();
    let report = retriever
        .ingest_prepared(loaded.docs, &loaded.scope, &keep, progress, prepared)
        .await?;
    Ok(IngestOutcome {
        report,
        problems: loaded.problems,
        files: loaded.files,
        empty: loaded.empty,
    })
}

/// What [`sync_uploads`] changed in the uploads folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadSync {
    /// Files from before guides were kept in the database, stored there now.
    pub imported: usize,
    pub written: usize,
    pub removed: usize,
}

impl UploadSync {
    pub fn changed(&self) -> bool {
        self.written + self.removed > 0
    }
}

/// Marks an uploads folder that has been brought in line with the database once: from then on
/// the database decides, and a file it lacks is removed instead of imported.
const SYNCED_MARK: &str = ".synced-from-database";

/// Whether `name` is an uploaded guide's file (what `POST /api/admin/guides` accepts).
pub fn is_guide_file(name: &str) -> bool {
    !name.starts_with('.') && [".md", ".json", ".html"].iter().any(|e| name.ends_with(e))
}

/// Brings the uploads folder `dir` in line with the uploaded guides in the database: writes new
/// and changed files (atomically), removes files the database no longer has. The first time
/// (no mark in the folder) files the database lacks are uploads from before guides were kept
/// there, and are stored in it instead. Cheap when nothing changed (one query, the folder's
/// files hashed): every instance runs it every `server.guide_sync_secs`.
pub fn sync_uploads(db: &crate::store::Db, dir: &Path) -> anyhow::Result<UploadSync> {
    use crate::store::guide_digest;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut local = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type()?.is_file() && is_guide_file(&name) {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            local.insert(name, (guide_digest(&text), text));
        }
    }
    let mut out = UploadSync::default();
    let mark = dir.join(SYNCED_MARK);
    let mut stored: std::collections::BTreeMap<String, String> =
        db.guide_digests()?.into_iter().collect();
    if !mark.exists() {
        for (name, (digest, text)) in &local {
            if !stored.contains_key(name) {
                db.put_guide(name, text, "import")?;
                stored.insert(name.clone(), digest.clone());
                out.imported += 1;
            }
        }
    }
    for (name, digest) in &stored {
        if local.get(name).map(|(d, _)| d) == Some(digest) {
            continue;
        }
        // Deleted between the two queries: the next round removes the file.
        let Some(text) = db.guide_content(name)? else {
            continue;
        };
        let path = dir.join(name);
        let part = dir.join(format!(".{name}.part"));
        std::fs::write(&part, &text)
            .and_then(|_| std::fs::rename(&part, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        out.written += 1;
    }
    for name in local.keys().filter(|n| !stored.contains_key(*n)) {
        let path = dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        out.removed += 1;
    }
    if !mark.exists() {
        std::fs::write(
            &mark,
            "uploaded guides are kept in the database; this folder follows it\n",
        )
        .with_context(|| format!("writing {}", mark.display()))?;
    }
    Ok(out)
}
