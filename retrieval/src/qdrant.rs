//! The Qdrant backend, for cities that outgrow one machine: the same [`VectorStore`] contract
//! over Qdrant's gRPC API (`qdrant-client`). Point ids are derived from chunk ids; the payload
//! carries `chunk_id`, `doc_id`, `bureau` and `category` for filtering.

use async_trait::async_trait;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::{
    value::Kind, Condition, CountPointsBuilder, CreateCollectionBuilder, DeletePointsBuilder,
    Distance, Filter, PointStruct, Query, QueryPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::vector::{check_dim, VectorPoint, VectorStore};
use crate::{ChunkHit, SearchFilter};

pub struct QdrantStore {
    client: Qdrant,
    collection: String,
    dim: usize,
}

fn err(op: &'static str) -> impl FnOnce(qdrant_client::QdrantError) -> Error {
    move |e| Error::VectorStore {
        store: "qdrant",
        op,
        source: Box::new(e),
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

impl QdrantStore {
    /// Connects and makes sure the collection exists with the embedder's dimension (cosine).
    pub async fn connect(
        url: &str,
        api_key: Option<String>,
        collection: &str,
        dim: usize,
    ) -> Result<Self> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .skip_compatibility_check()
            .build()
            .map_err(err("connecting"))?;
        let store = QdrantStore {
            client,
            collection: collection.to_string(),
            dim,
        };
        store.ensure_collection().await?;
        Ok(store)
    }

    async fn ensure_collection(&self) -> Result<()> {
        let exists = self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(err("checking the collection"))?;
        if !exists {
            self.client
                .create_collection(
                    CreateCollectionBuilder::new(&self.collection).vectors_config(
                        VectorParamsBuilder::new(self.dim as u64, Distance::Cosine),
                    ),
                )
                .await
                .map_err(err("creating the collection"))?;
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
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true))
            .await
            .map_err(err("upserting points"))?;
        Ok(())
    }

    async fn delete_docs(&self, doc_ids: &[String]) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        let filter = Filter::should(doc_ids.iter().map(|d| keyword("doc_id", d)));
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(err("deleting points"))?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.client
            .delete_collection(&self.collection)
            .await
            .map_err(err("dropping the collection"))?;
        self.ensure_collection().await
    }

    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<ChunkHit>> {
        check_dim(self.dim, query.len())?;
        let mut req = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(query.to_vec()))
            .limit(k as u64)
            .with_payload(true);
        if let Some(f) = filter_of(filter) {
            req = req.filter(f);
        }
        let resp = self.client.query(req).await.map_err(err("querying"))?;
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
        let resp = self
            .client
            .count(CountPointsBuilder::new(&self.collection).exact(true))
            .await
            .map_err(err("counting points"))?;
        Ok(resp.result.map(|r| r.count as usize).unwrap_or(0))
    }

    async fn flush(&self) -> Result<()> {
        // Every write waits for Qdrant to apply it.
        Ok(())
    }
}
