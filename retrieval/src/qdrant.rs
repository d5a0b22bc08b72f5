//! The Qdrant backend, for cities that outgrow one machine: the same [`VectorStore`] contract
//! over Qdrant's gRPC API (`qdrant-client`). Point ids are derived from chunk ids; the payload
//! carries `chunk_id`, `doc_id`, `bureau` and `category`, each with a keyword payload index for
//! filtering.
//!
//! In a cluster every node answers every request (it forwards to the shards' replicas), so the
//! store is given the node it normally talks to (`url`) and the others (`peers`): a request
//! that cannot reach its node is sent to the next one, and that node stays the current one.
//! Writes wait until applied (`wait = true`), so an upsert that returned is on a replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::{
    value::Kind, vectors_config, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter,
    PayloadSchemaType, PointStruct, Query, QueryPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::vector::{check_dim, VectorPoint, VectorStore};
use crate::{ChunkHit, SearchFilter};

/// Where the vectors live when `retrieval.vectors.backend = "qdrant"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// The gRPC address of the node this instance talks to (`http://host:6334`).
    pub url: String,
    /// The other nodes of a cluster, tried in turn when the current one cannot be reached.
    #[serde(default)]
    pub peers: Vec<String>,
    pub collection: String,
    #[serde(default)]
    pub api_key: Option<String>,
    /// Copies of each shard, applied when the collection is created (2 or more in a cluster,
    /// so that losing a node loses nothing).
    #[serde(default = "one")]
    pub replication_factor: u32,
    /// Shards, applied when the collection is created.
    #[serde(default = "one")]
    pub shard_number: u32,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn one() -> u32 {
    1
}

fn default_timeout() -> u64 {
    10
}

impl QdrantConfig {
    /// One node, one shard, one copy.
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        QdrantConfig {
            url: url.into(),
            peers: Vec::new(),
            collection: collection.into(),
            api_key: None,
            replication_factor: 1,
            shard_number: 1,
            timeout_secs: default_timeout(),
        }
    }
}

/// The payload fields searches filter on; each gets a keyword index.
pub const INDEXED_FIELDS: [&str; 3] = ["doc_id", "bureau", "category"];

pub struct QdrantStore {
    nodes: Vec<(String, Qdrant)>,
    current: AtomicUsize,
    config: QdrantConfig,
    dim: usize,
}

fn err(op: &'static str) -> impl FnOnce(QdrantError) -> Error {
    move |e| Error::VectorStore {
        store: "qdrant",
        op,
        source: Box::new(e),
    }
}

/// Whether the request did not reach a working node (so another node may answer it), as
/// opposed to the server refusing it.
fn unreachable(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => true,
            // qdrant-client's channel pool reports a refused connection this way.
            tonic::Code::Internal => status.message().starts_with("Failed to connect"),
            _ => false,
        },
        _ => false,
    }
}

/// A stable 64-bit point id for a chunk id.
pub fn point_id(chunk_id: &str) -> u64 {
    let d = Sha256::digest(chunk_id.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// An exact match on a string payload field. Spelled out because `Condition::matches` with a
/// `String` sends a full-text match when the value contains whitespace, and Qdrant answers that
/// by terms: `doc_id` "a b" would also match "a b c" and "b a".
fn keyword(field: &str, value: &str) -> Condition {
    Condition::matches(field, MatchValue::Keyword(value.to_string()))
}

fn filter_of(f: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if let Some(b) = &f.bureau {
        must.push(keyword("bureau", b));
    }
    if let Some(c) = &f.category {
        must.push(keyword("category", c));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

fn distance_name(d: i32) -> &'static str {
    match Distance::try_from(d) {
        Ok(Distance::Cosine) => "Cosine",
        Ok(Distance::Dot) => "Dot",
        Ok(Distance::Euclid) => "Euclid",
        Ok(Distance::Manhattan) => "Manhattan",
        _ => "unknown",
    }
}

impl QdrantStore {
    /// Connects and makes sure the collection exists with the embedder's dimension and cosine
    /// distance (an existing collection made for other vectors is an error that says so) and
    /// with the payload indexes.
    pub async fn connect(config: &QdrantConfig, dim: usize) -> Result<Self> {
        let mut nodes = Vec::new();
        for url in std::iter::once(&config.url).chain(&config.peers) {
            let client = Qdrant::from_url(url)
                .api_key(config.api_key.clone())
                .timeout(Duration::from_secs(config.timeout_secs))
                .connect_timeout(Duration::from_secs(config.timeout_secs.min(5)))
                .skip_compatibility_check()
                .build()
                .map_err(err("connecting"))?;
            nodes.push((url.clone(), client));
        }
        let store = QdrantStore {
            nodes,
            current: AtomicUsize::new(0),
            config: config.clone(),
            dim,
        };
        store.ensure_collection().await?;
        Ok(store)
    }

    /// The node requests go to now (changes when one cannot be reached).
    pub fn current_node(&self) -> &str {
        &self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()].0
    }

    /// Runs `f` against the current node, then each other node in turn while the failure is
    /// that the node could not be reached.
    async fn call<'a, T, F, Fut>(&'a self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn(&'a Qdrant) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, QdrantError>>,
    {
        let start = self.current.load(Ordering::Relaxed);
        let n = self.nodes.len();
        let mut last = None;
        for i in 0..n {
            let at = (start + i) % n;
            match f(&self.nodes[at].1).await {
                Ok(v) => {
                    if i > 0 {
                        tracing::warn!(node = %self.nodes[at].0, "qdrant: switched to another node");
                        self.current.store(at, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(e) if unreachable(&e) && i + 1 < n => {
                    tracing::warn!(node = %self.nodes[at].0, error = %e, op, "qdrant node unreachable");
                    last = Some(e);
                }
                Err(e) => return Err(err(op)(e)),
            }
        }
        Err(err(op)(last.expect("at least one node")))
    }

    async fn ensure_collection(&self) -> Result<()> {
        let name = self.config.collection.as_str();
        let exists = self
            .call("checking the collection", |c| c.collection_exists(name))
            .await?;
        if !exists {
            let created = self
                .call("creating the collection", |c| {
                    c.create_collection(
                        CreateCollectionBuilder::new(name)
                            .vectors_config(VectorParamsBuilder::new(
                                self.dim as u64,
                                Distance::Cosine,
                            ))
                            .replication_factor(self.config.replication_factor)
                            .shard_number(self.config.shard_number),
                    )
                })
                .await;
            // Another instance may have created it in between.
            if let Err(e) = created {
                let now = self
                    .call("checking the collection", |c| c.collection_exists(name))
                    .await?;
                if !now {
                    return Err(e);
                }
            }
        }
        let info = self
            .call("reading the collection", |c| c.collection_info(name))
            .await?
            .result
            .unwrap_or_default();
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref());
        match params {
            Some(vectors_config::Config::Params(p))
                if p.size as usize == self.dim && p.distance == Distance::Cosine as i32 => {}
            Some(vectors_config::Config::Params(p)) => {
                return Err(Error::Collection {
                    collection: name.to_string(),
                    reason: format!(
                        "it holds {}-dimensional {} vectors, but the embedder makes \
                         {}-dimensional Cosine vectors",
                        p.size,
                        distance_name(p.distance),
                        self.dim
                    ),
                });
            }
            _ => {
                return Err(Error::Collection {
                    collection: name.to_string(),
                    reason: "it uses named vectors; this store needs one unnamed vector"
                        .to_string(),
                });
            }
        }
        for field in INDEXED_FIELDS {
            let has = info
                .payload_schema
                .get(field)
                .is_some_and(|s| s.data_type == PayloadSchemaType::Keyword as i32);
            if !has {
                self.call("creating a payload index", |c| {
                    c.create_field_index(
                        CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword)
                            .wait(true),
                    )
                })
                .await?;
            }
        }
        Ok(())
    }
}

fn payload_str(
    p: &std::collections::HashMap<String, qdrant_client::qdrant::Value>,
    key: &str,
) -> String {
    match p.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            check_dim(self.dim, p.vector.len())?;
            let mut payload = Payload::new();
            payload.insert("chunk_id", p.chunk_id.clone());
            payload.insert("doc_id", p.doc_id);
            payload.insert("bureau", p.bureau.unwrap_or_default());
            payload.insert("category", p.category.unwrap_or_default());
            structs.push(PointStruct::new(point_id(&p.chunk_id), p.vector, payload));
        }
        let name = self.config.collection.as_str();
        self.call("upserting points", |c| {
            c.upsert_points(UpsertPointsBuilder::new(name, structs.clone()).wait(true))
        })
        .await?;
        Ok(())
    }

    async fn delete_docs(&self, doc_ids: &[String]) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        let name = self.config.collection.as_str();
        let filter = Filter::should(doc_ids.iter().map(|d| keyword("doc_id", d)));
        self.call("deleting points", |c| {
            c.delete_points(
                DeletePointsBuilder::new(name)
                    .points(filter.clone())
                    .wait(true),
            )
        })
        .await?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        let name = self.config.collection.as_str();
        self.call("dropping the collection", |c| c.delete_collection(name))
            .await?;
        self.ensure_collection().await
    }

    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<ChunkHit>> {
        check_dim(self.dim, query.len())?;
        let mut req = QueryPointsBuilder::new(&self.config.collection)
            .query(Query::new_nearest(query.to_vec()))
            .limit(k as u64)
            .with_payload(true);
        if let Some(f) = filter_of(filter) {
            req = req.filter(f);
        }
        let req = req.build();
        let resp = self.call("querying", |c| c.query(req.clone())).await?;
        Ok(resp
            .result
            .into_iter()
            .map(|p| ChunkHit {
                chunk_id: payload_str(&p.payload, "chunk_id"),
                doc_id: payload_str(&p.payload, "doc_id"),
                score: p.score,
            })
            .collect())
    }

    async fn count(&self) -> Result<usize> {
        let name = self.config.collection.as_str();
        let resp = self
            .call("counting points", |c| {
                c.count(CountPointsBuilder::new(name).exact(true))
            })
            .await?;
        Ok(resp.result.map(|r| r.count as usize).unwrap_or(0))
    }

    async fn flush(&self) -> Result<()> {
        // Every write waits for Qdrant to apply it.
        Ok(())
    }
}
