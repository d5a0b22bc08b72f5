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

/// Loads every path, then brings the index in line with what loaded. Files with problems are
/// reported and skipped; what was indexed from them before is kept.
pub async fn ingest(
    retriever: &mut Retriever,
    paths: &[PathBuf],
    opts: &LoadOptions,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> anyhow::Result<IngestOutcome> {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let mut files = 0;
    let mut empty = 0;
    let mut scope = Vec::new();
    for p in paths {
        let canon = p
            .canonicalize()
            .with_context(|| format!("corpus path {} does not exist", p.display()))?;
        let mut loaded = load_path(&canon, opts)?;
        files += loaded.files;
        empty += loaded.empty;
        docs.append(&mut loaded.documents);
        problems.append(&mut loaded.problems);
        scope.push(canon);
    }
    let keep: HashSet<PathBuf> = problems.iter().map(|p| p.path.clone()).collect();
    let report = retriever.ingest(docs, &scope, &keep, progress).await?;
    Ok(IngestOutcome {
        report,
        problems,
        files,
        empty,
    })
}
