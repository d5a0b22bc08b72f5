//! The retriever: owns the index directory (BM25 index, vector store, manifest and the
//! versions they were built with), ingests documents idempotently and answers searches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use knowledge::{chunk_document, Chunk, ChunkConfig, LoadedDocument};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::error::{Error, Result};
use crate::fusion::{rrf, RankedList};
use crate::lexical::LexicalIndex;
use crate::qdrant::{QdrantConfig, QdrantStore};
use crate::tokenizer::tokenizer_version;
use crate::vector::{FlatStore, VectorPoint, VectorStore};
use crate::{Contribution, Embedder, Mode, SearchFilter};

/// Bumped when the on-disk layout of an index changes.
const SCHEMA_VERSION: u32 = 1;

/// Which vector store backs dense retrieval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum VectorBackend {
    /// The embedded exact store in the index directory.
    #[default]
    Flat,
    /// A Qdrant server (or cluster) over gRPC.
    Qdrant(QdrantConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrieverConfig {
    /// RRF constant `k`: larger flattens the rank curve.
    pub rrf_k: f64,
    /// Candidates taken from each retriever before fusion.
    pub candidates: usize,
    pub bm25_weight: f64,
    pub dense_weight: f64,
    /// Passages per embedding call.
    pub embed_batch: usize,
    pub chunk: ChunkConfig,
    pub vectors: VectorBackend,
    /// Hybrid mode: re-rank the fused top `rerank_depth` by their RRF score (scaled to the
    /// best) plus `rerank_dense` × the dense cosine, so a near paraphrase that the dense
    /// retriever ranks first is not pushed down by BM25 (0: plain RRF).
    pub rerank_dense: f64,
    pub rerank_depth: usize,
    /// Hybrid mode: a section BM25 scores `bm25_margin_ratio` × above every other guide's
    /// (the question names the service) gets this added to its fused score, so a dense
    /// near-miss does not outvote it (0: off).
    pub bm25_margin_weight: f64,
    pub bm25_margin_ratio: f64,
}

impl Default for RetrieverConfig {
    fn default() -> Self {
        RetrieverConfig {
            rrf_k: 10.0,
            candidates: 50,
            bm25_weight: 0.4,
            dense_weight: 1.0,
            embed_batch: 32,
            chunk: ChunkConfig::default(),
            vectors: VectorBackend::Flat,
            rerank_dense: 0.0,
            rerank_depth: 10,
            bm25_margin_weight: 0.05,
            bm25_margin_ratio: 2.0,
        }
    }
}

/// The versions an index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IndexMeta {
    schema: u32,
    tokenizer: String,
    embedder: String,
    dim: usize,
    chunking: usize,
    vectors: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestEntry {
    hash: String,
    source: PathBuf,
    chunks: Vec<Chunk>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    docs: BTreeMap<String, ManifestEntry>,
}

/// Passage vectors embedded ahead of an ingest ([`Retriever::prepare`]), by section text.
#[derive(Debug, Default)]
pub struct Prepared(HashMap<String, Vec<f32>>);

impl Prepared {
    /// Sections embedded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub chunks_embedded: usize,
}

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub k: usize,
    pub mode: Mode,
    pub filter: SearchFilter,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            mode: Mode::Hybrid,
            filter: SearchFilter::default(),
        }
    }
}

/// A ranked section with its score and, for `--explain`, what each retriever contributed.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub chunk: Chunk,
    pub score: f64,
    pub contributions: Vec<Contribution>,
}

pub struct Retriever {
    dir: Option<PathBuf>,
    lexical: LexicalIndex,
    vectors: Box<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    config: RetrieverConfig,
    manifest: Manifest,
    chunks: HashMap<String, Chunk>,
    /// Why the index was rebuilt on open, if it was.
    rebuilt: Option<String>,
    /// Whether that rebuild emptied it (everything must be ingested again).
    emptied: bool,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))
}

impl Retriever {
    /// Opens the index in `dir` (created if absent), or an in-memory one when `dir` is `None`.
    /// An index built with another tokenizer, embedder or layout, or one whose files are
    /// damaged, is wiped and rebuilt empty (see [`Retriever::rebuilt`]), never mixed.
    pub async fn open(
        dir: Option<&Path>,
        embedder: Arc<dyn Embedder>,
        config: RetrieverConfig,
    ) -> Result<Self> {
        let backend_name = match &config.vectors {
            VectorBackend::Flat => "flat".to_string(),
            // The collection, not the node: instances reach a cluster through different nodes,
            // and a node's address may change without the vectors changing.
            VectorBackend::Qdrant(q) => format!("qdrant:{}", q.collection),
        };
        let meta = IndexMeta {
            schema: SCHEMA_VERSION,
            tokenizer: tokenizer_version(),
            embedder: embedder.id(),
            dim: embedder.dim(),
            chunking: config.chunk.max_chars,
            vectors: backend_name,
        };
        let Some(dir) = dir else {
            let vectors: Box<dyn VectorStore> = Self::open_vectors(None, &config, meta.dim).await?;
            vectors.clear().await?;
            return Ok(Retriever {
                dir: None,
                lexical: LexicalIndex::in_memory()?,
                vectors,
                embedder,
                config,
                manifest: Manifest::default(),
                chunks: HashMap::new(),
                rebuilt: None,
                emptied: false,
            });
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let meta_path = dir.join("meta.json");
        let mut lexical_only = false;
        let mut move_vectors = false;
        // A rebuild because this directory is damaged (not because the vectors changed) leaves
        // a shared store's collection alone: other instances are answering from it, and the
        // re-ingest upserts the same points again.
        let shared_store = config.vectors != VectorBackend::Flat;
        let mut local_damage = false;
        let mut rebuilt = match std::fs::read(&meta_path) {
            Err(_) if !dir.join("manifest.json").exists() => None,
            Err(_) => {
                local_damage = true;
                Some("index metadata missing".to_string())
            }
            Ok(bytes) => match serde_json::from_slice::<IndexMeta>(&bytes) {
                Ok(old) if old == meta => None,
                Ok(old) => {
                    // Only the tokenizer changed: the vectors stay valid, so rebuild the BM25
                    // index from the stored sections instead of re-embedding everything.
                    lexical_only = IndexMeta {
                        tokenizer: meta.tokenizer.clone(),
                        ..old.clone()
                    } == meta;
                    // Only the vector store changed, from the embedded one: its vectors are
                    // copied to the new store instead of embedding everything again.
                    move_vectors = old.vectors == "flat"
                        && dir.join("vectors.bin").exists()
                        && IndexMeta {
                            vectors: meta.vectors.clone(),
                            ..old.clone()
                        } == meta;
                    if move_vectors {
                        None
                    } else {
                        Some(describe_change(&old, &meta))
                    }
                }
                Err(_) => {
                    local_damage = true;
                    Some("index metadata unreadable".to_string())
                }
            },
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Only the tokenizer changed: the vectors stay valid, so the BM25 index is rebuilt
            // from the stored sections instead of re-embedding everything.
            let in_place = lexical_only && attempt == 1;
            if rebuilt.is_some() {
                tracing::warn!(
                    reason = rebuilt.as_deref().unwrap_or(""),
                    in_place,
                    "rebuilding the index"
                );
                let stale: &[&str] = if in_place {
                    &["lexical"]
                } else {
                    &["lexical", "vectors.bin", "manifest.json", "meta.json"]
                };
                for name in stale {
                    let p = dir.join(name);
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
            match Self::open_parts(dir, &config, &meta).await {
                Ok((mut lexical, vectors, manifest)) => {
                    // A shared store that holds nothing while this index lists sections: a new
                    // or emptied cluster. Everything is ingested again.
                    if shared_store
                        && attempt == 1
                        && rebuilt.is_none()
                        && !move_vectors
                        && manifest.docs.values().any(|e| !e.chunks.is_empty())
                        && vectors.count().await? == 0
                    {
                        rebuilt = Some("the vector store holds none of the index's vectors".into());
                        lexical_only = false;
                        continue;
                    }
                    if move_vectors && attempt == 1 {
                        if let Err(e) =
                            Self::move_flat_vectors(dir, meta.dim, vectors.as_ref()).await
                        {
                            if !is_damage(&e) {
                                return Err(e);
                            }
                            rebuilt = Some(format!("the vectors could not be moved: {e:#}"));
                            lexical_only = false;
                            local_damage = true;
                            continue;
                        }
                    }
                    if in_place {
                        for c in manifest.docs.values().flat_map(|e| &e.chunks) {
                            lexical.add(c)?;
                        }
                        lexical.commit()?;
                    } else if rebuilt.is_some() && !(shared_store && local_damage) {
                        vectors.clear().await?;
                    }
                    write_atomic(&meta_path, &serde_json::to_vec_pretty(&meta).expect("meta"))?;
                    let chunks = manifest
                        .docs
                        .values()
                        .flat_map(|e| e.chunks.iter().map(|c| (c.id.clone(), c.clone())))
                        .collect();
                    return Ok(Retriever {
                        dir: Some(dir.to_path_buf()),
                        lexical,
                        vectors,
                        embedder,
                        config,
                        manifest,
                        chunks,
                        emptied: rebuilt.is_some() && !in_place,
                        rebuilt: rebuilt.map(|r| {
                            if in_place {
                                format!("{r} (BM25 index rebuilt in place)")
                            } else {
                                r
                            }
                        }),
                    });
                }
                Err(e) if attempt == 1 && is_damage(&e) => {
                    rebuilt = Some(format!("index files damaged: {e:#}"));
                    lexical_only = false;
                    local_damage = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies the embedded store's vectors (`vectors.bin`) into `to` and removes the file:
    /// moving an index to Qdrant re-embeds nothing. Upserts are idempotent, so instances that
    /// share a collection may all do it.
    async fn move_flat_vectors(dir: &Path, dim: usize, to: &dyn VectorStore) -> Result<()> {
        let path = dir.join("vectors.bin");
        let points = FlatStore::open(&path, dim)?.into_points();
        let n = points.len();
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            to.upsert(points.by_ref().take(256).collect()).await?;
        }
        to.flush().await?;
        std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        tracing::info!(points = n, to = to.name(), "moved the index's vectors");
        Ok(())
    }

    async fn open_parts(
        dir: &Path,
        config: &RetrieverConfig,
        meta: &IndexMeta,
    ) -> Result<(LexicalIndex, Box<dyn VectorStore>, Manifest)> {
        let lexical = LexicalIndex::open_or_create(&dir.join("lexical"))?;
        let vectors = Self::open_vectors(Some(dir), config, meta.dim).await?;
        let mpath = dir.join("manifest.json");
        let manifest = match std::fs::read(&mpath) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Manifest {
                path: mpath.clone(),
                source,
            })?,
            Err(_) => Manifest::default(),
        };
        Ok((lexical, vectors, manifest))
    }

    async fn open_vectors(
        dir: Option<&Path>,
        config: &RetrieverConfig,
        dim: usize,
    ) -> Result<Box<dyn VectorStore>> {
        Ok(match &config.vectors {
            VectorBackend::Flat => match dir {
                Some(d) => Box::new(FlatStore::open(&d.join("vectors.bin"), dim)?),
                None => Box::new(FlatStore::in_memory(dim)),
            },
            VectorBackend::Qdrant(q) => Box::new(QdrantStore::connect(q, dim).await?),
        })
    }

    /// Why the index was rebuilt when it was opened (another tokenizer or embedder, damage).
    pub fn rebuilt(&self) -> Option<&str> {
        self.rebuilt.as_deref()
    }

    /// True when opening had to empty the index (another embedder or layout, damaged files).
    pub fn emptied(&self) -> bool {
        self.emptied
    }

    pub fn vector_backend(&self) -> &'static str {
        self.vectors.name()
    }

    /// Points in the vector store (a request to the server for Qdrant): what `/readyz` checks.
    pub async fn num_vectors(&self) -> Result<usize> {
        self.vectors.count().await
    }

    pub fn num_documents(&self) -> usize {
        self.manifest.docs.len()
    }

    pub fn num_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Candidates each retriever contributes before fusion.
    pub fn candidates(&self) -> usize {
        self.config.candidates
    }

    pub fn has_document(&self, id: &str) -> bool {
        self.manifest.docs.contains_key(id)
    }

    pub fn chunk(&self, id: &str) -> Option<&Chunk> {
        self.chunks.get(id)
    }

    /// A document's sections in document order.
    pub fn chunks_of(&self, doc_id: &str) -> Vec<&Chunk> {
        let mut out: Vec<&Chunk> = self
            .chunks
            .values()
            .filter(|c| c.doc_id == doc_id)
            .collect();
        out.sort_by_key(|c| chunk_order(&c.id));
        out
    }

    /// Every chunk, in no particular order.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.values()
    }

    /// Every document's id and title, sorted by id.
    pub fn titles(&self) -> Vec<(String, String)> {
        let mut seen = std::collections::BTreeMap::new();
        for c in self.chunks.values() {
            seen.entry(c.doc_id.clone())
                .or_insert_with(|| c.doc_title.clone());
        }
        seen.into_iter().collect()
    }

    /// Brings the index in line with `docs`. Unchanged documents (same content hash) cost
    /// nothing; changed ones are replaced; documents previously ingested from a file under one
    /// of `scope` but absent now are removed, except those from `keep_sources` (files that
    /// failed to load this time: a broken file never deletes what was indexed from it).
    #[instrument(skip_all, fields(docs = docs.len()))]
    pub async fn ingest(
        &mut self,
        docs: Vec<LoadedDocument>,
        scope: &[PathBuf],
        keep_sources: &HashSet<PathBuf>,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<IngestReport> {
        self.ingest_prepared(docs, scope, keep_sources, progress, Prepared::default())
            .await
    }

    /// Embeds the sections an ingest of `docs` would add or replace, without changing the
    /// index: a server does this slow part while it keeps answering, then takes its write lock
    /// only for [`Retriever::ingest_prepared`], which embeds nothing that was prepared.
    pub async fn prepare(
        &self,
        docs: &[LoadedDocument],
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<Prepared> {
        let mut seen = HashSet::new();
        let mut texts = Vec::new();
        for d in docs {
            if !seen.insert(d.document.id.as_str()) {
                continue;
            }
            let hash = d.document.content_hash();
            if self
                .manifest
                .docs
                .get(&d.document.id)
                .is_some_and(|e| e.hash == hash)
            {
                continue;
            }
            texts.extend(
                chunk_document(&d.document, &self.config.chunk)
                    .iter()
                    .map(Chunk::search_text),
            );
        }
        let mut prepared = Prepared::default();
        progress(0, texts.len());
        for batch in texts.chunks(self.config.embed_batch.max(1)) {
            let vectors = self.embed_batch(batch.to_vec()).await?;
            prepared.0.extend(batch.iter().cloned().zip(vectors));
            progress(prepared.0.len(), texts.len());
        }
        Ok(prepared)
    }

    /// Passage vectors for `texts`, checked for the embedder's dimension.
    async fn embed_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let embedder = self.embedder.clone();
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed_passages(&refs)
        })
        .await?
        .map_err(Error::Embed)?;
        if let Some(v) = vectors.iter().find(|v| v.len() != self.embedder.dim()) {
            return Err(Error::Dimension {
                expected: self.embedder.dim(),
                got: v.len(),
            });
        }
        Ok(vectors)
    }

    /// [`Retriever::ingest`] with vectors embedded beforehand ([`Retriever::prepare`]); sections
    /// whose text is not among them are embedded here.
    pub async fn ingest_prepared(
        &mut self,
        docs: Vec<LoadedDocument>,
        scope: &[PathBuf],
        keep_sources: &HashSet<PathBuf>,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
        mut prepared: Prepared,
    ) -> Result<IngestReport> {
        let mut report = IngestReport::default();
        let mut present = HashSet::new();
        let mut to_index: Vec<(LoadedDocument, String)> = Vec::new();
        let mut replaced: Vec<String> = Vec::new();
        for d in docs {
            let id = d.document.id.clone();
            if !present.insert(id.clone()) {
                continue;
            }
            let hash = d.document.content_hash();
            match self.manifest.docs.get(&id) {
                Some(e) if e.hash == hash => {
                    report.unchanged += 1;
                    if e.source != d.source {
                        if let Some(e) = self.manifest.docs.get_mut(&id) {
                            e.source = d.source.clone();
                        }
                    }
                }
                Some(_) => {
                    report.updated += 1;
                    replaced.push(id);
                    to_index.push((d, hash));
                }
                None => {
                    report.added += 1;
                    to_index.push((d, hash));
                }
            }
        }
        let removed: Vec<String> = self
            .manifest
            .docs
            .iter()
            .filter(|(id, e)| {
                !present.contains(*id)
                    && scope.iter().any(|s| e.source.starts_with(s))
                    && !keep_sources.contains(&e.source)
            })
            .map(|(id, _)| id.clone())
            .collect();
        report.removed = removed.len();

        let gone: Vec<String> = replaced.iter().chain(&removed).cloned().collect();
        for id in &gone {
            self.lexical.delete_doc(id)?;
            if let Some(e) = self.manifest.docs.remove(id) {
                for c in e.chunks {
                    self.chunks.remove(&c.id);
                }
            }
        }
        if !gone.is_empty() {
            self.vectors.delete_docs(&gone).await?;
        }

        let mut new_chunks: Vec<Chunk> = Vec::new();
        let mut entries = Vec::new();
        for (d, hash) in to_index {
            // Defensive: a stale manifest (crash before it was written) must not duplicate.
            self.lexical.delete_doc(&d.document.id)?;
            let chunks = chunk_document(&d.document, &self.config.chunk);
            new_chunks.extend(chunks.iter().cloned());
            entries.push((
                d.document.id.clone(),
                ManifestEntry {
                    hash,
                    source: d.source,
                    chunks,
                },
            ));
        }
        let fresh: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
        if !fresh.is_empty() {
            self.vectors.delete_docs(&fresh).await?;
        }
        let total = new_chunks.len();
        progress(0, total);
        for batch in new_chunks.chunks(self.config.embed_batch.max(1)) {
            let texts: Vec<String> = batch.iter().map(Chunk::search_text).collect();
            let missing: Vec<String> = texts
                .iter()
                .filter(|t| !prepared.0.contains_key(*t))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let vectors = self.embed_batch(missing.clone()).await?;
                prepared.0.extend(missing.into_iter().zip(vectors));
            }
            let mut points = Vec::with_capacity(batch.len());
            for (c, t) in batch.iter().zip(&texts) {
                let v = prepared.0.get(t).cloned().expect("embedded above");
                if v.len() != self.embedder.dim() {
                    return Err(Error::Dimension {
                        expected: self.embedder.dim(),
                        got: v.len(),
                    });
                }
                self.lexical.add(c)?;
                points.push(VectorPoint {
                    chunk_id: c.id.clone(),
                    doc_id: c.doc_id.clone(),
                    bureau: c.bureau.clone(),
                    category: c.category.clone(),
                    vector: v,
                });
            }
            self.vectors.upsert(points).await?;
            report.chunks_embedded += batch.len();
            progress(report.chunks_embedded, total);
        }
        for (id, e) in entries {
            for c in &e.chunks {
                self.chunks.insert(c.id.clone(), c.clone());
            }
            self.manifest.docs.insert(id, e);
        }
        self.lexical.commit()?;
        self.vectors.flush().await?;
        if let Some(dir) = &self.dir {
            let bytes = serde_json::to_vec(&self.manifest).expect("manifest serialises");
            write_atomic(&dir.join("manifest.json"), &bytes)?;
        }
        Ok(report)
    }

    /// The embedder the index was built with.
    pub fn embedder(&self) -> Arc<dyn Embedder> {
        self.embedder.clone()
    }

    /// The query's embedding (on a blocking thread).
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let embedder = self.embedder.clone();
        let q = query.to_string();
        tokio::task::spawn_blocking(move || embedder.embed_query(&q))
            .await?
            .map_err(Error::Embed)
    }

    /// Ranked sections for a query.
    pub async fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        self.search_embedded(query, None, opts).await
    }

    /// Ranked sections for a query whose embedding the caller already has (from
    /// [`Retriever::embed_query`]), so one question is embedded once.
    #[instrument(skip_all, fields(k = opts.k, mode = ?opts.mode))]
    pub async fn search_embedded(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        opts: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        let n = self.config.candidates.max(opts.k);
        let bm25 = if opts.mode != Mode::Dense {
            self.lexical.search(query, n, &opts.filter)?
        } else {
            Vec::new()
        };
        let dense = if opts.mode != Mode::Bm25 {
            let v = match vector {
                Some(v) => v.to_vec(),
                None => self.embed_query(query).await?,
            };
            self.vectors.search(&v, n, &opts.filter).await?
        } else {
            Vec::new()
        };
        let lists = [
            RankedList {
                name: "bm25",
                weight: self.config.bm25_weight,
                hits: &bm25,
            },
            RankedList {
                name: "dense",
                weight: self.config.dense_weight,
                hits: &dense,
            },
        ];
        let fused = rrf(&lists, self.config.rrf_k);
        let mut hits: Vec<SearchHit> = fused
            .into_iter()
            .filter_map(|f| {
                let chunk = self.chunks.get(&f.chunk_id)?.clone();
                let score = match opts.mode {
                    Mode::Hybrid => f.score,
                    _ => f
                        .contributions
                        .first()
                        .map(|c| c.raw_score as f64)
                        .unwrap_or(0.0),
                };
                Some(SearchHit {
                    chunk,
                    score,
                    contributions: f.contributions,
                })
            })
            .collect();
        if opts.mode == Mode::Hybrid && self.config.bm25_margin_weight > 0.0 {
            boost_bm25_margin(
                &mut hits,
                self.config.bm25_margin_weight,
                self.config.bm25_margin_ratio,
            );
        }
        if opts.mode == Mode::Hybrid && self.config.rerank_dense > 0.0 {
            rerank_dense(
                &mut hits,
                self.config.rerank_dense,
                self.config.rerank_depth,
            );
        }
        hits.truncate(opts.k);
        Ok(hits)
    }
}

/// When BM25's best section scores at least `ratio` × the best section of any other
/// document (the question names that service), adds `weight` to it and re-sorts: RRF alone
/// sees ranks, not such a margin.
pub fn boost_bm25_margin(hits: &mut [SearchHit], weight: f64, ratio: f64) {
    let raw = |h: &SearchHit| {
        h.contributions
            .iter()
            .find(|c| c.source == "bm25")
            .map(|c| c.raw_score as f64)
    };
    let Some((top, top_raw)) = hits
        .iter()
        .enumerate()
        .filter_map(|(i, h)| raw(h).map(|r| (i, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return;
    };
    let doc = hits[top].chunk.doc_id.clone();
    let runner_up = hits
        .iter()
        .filter(|h| h.chunk.doc_id != doc)
        .filter_map(raw)
        .fold(0.0, f64::max);
    if top_raw >= ratio * runner_up {
        hits[top].score += weight;
        // Shown in the explanation, so the contributions still add up to the score.
        hits[top].contributions.push(crate::Contribution {
            source: "bm25-margin",
            rank: 1,
            raw_score: (top_raw / runner_up.max(1e-9)).min(f32::MAX as f64) as f32,
            rrf: weight,
        });
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    }
}

/// Re-orders the first `depth` fused hits by RRF score (scaled to the best) plus `weight` ×
/// the dense cosine; a hit the dense retriever did not return counts as its lowest cosine.
pub fn rerank_dense(hits: &mut [SearchHit], weight: f64, depth: usize) {
    let depth = depth.min(hits.len());
    if depth < 2 {
        return;
    }
    let cos = |h: &SearchHit| {
        h.contributions
            .iter()
            .find(|c| c.source == "dense")
            .map(|c| c.raw_score as f64)
    };
    let floor = hits[..depth]
        .iter()
        .filter_map(cos)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let best = hits[0].score.max(1e-9);
    let key = |h: &SearchHit| h.score / best + weight * cos(h).unwrap_or(floor);
    let mut top: Vec<(f64, SearchHit)> =
        hits[..depth].iter().map(|h| (key(h), h.clone())).collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (slot, (_, h)) in hits[..depth].iter_mut().zip(top) {
        *slot = h;
    }
}

/// `(section, part)` from a chunk id `doc#section.part`.
fn chunk_order(id: &str) -> (usize, usize) {
    let tail = id.rsplit('#').next().unwrap_or_default();
    let mut it = tail.split('.').map(|n| n.parse().unwrap_or(usize::MAX));
    (
        it.next().unwrap_or(usize::MAX),
        it.next().unwrap_or(usize::MAX),
    )
}

/// Document ids in rank order, each once (best section first).
pub fn rank_documents(hits: &[SearchHit]) -> Vec<String> {
    let mut seen = HashSet::new();
    hits.iter()
        .filter(|h| seen.insert(h.chunk.doc_id.clone()))
        .map(|h| h.chunk.doc_id.clone())
        .collect()
}

fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::CorruptVectors { .. }
            | Error::Manifest { .. }
            | Error::Index(_)
            | Error::OpenDirectory(_)
    )
}

fn describe_change(old: &IndexMeta, new: &IndexMeta) -> String {
    let mut parts = Vec::new();
    if old.schema != new.schema {
        parts.push(format!("layout {} → {}", old.schema, new.schema));
    }
    if old.tokenizer != new.tokenizer {
        parts.push(format!("tokenizer {} → {}", old.tokenizer, new.tokenizer));
    }
    if old.embedder != new.embedder || old.dim != new.dim {
        parts.push(format!("embedder {} → {}", old.embedder, new.embedder));
    }
    if old.chunking != new.chunking {
        parts.push(format!("chunk size {} → {}", old.chunking, new.chunking));
    }
    if old.vectors != new.vectors {
        parts.push(format!("vector store {} → {}", old.vectors, new.vectors));
    }
    format!(
        "index was built with a different configuration: {}",
        parts.join(", ")
    )
}
