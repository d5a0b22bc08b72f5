//! Hybrid retrieval over service guides: a jieba tokenizer for tantivy and a BM25 index on disk,
//! dense retrieval through an [`Embedder`] into a [`VectorStore`] (the embedded exact store by
//! default, Qdrant by configuration), and Reciprocal Rank Fusion with explainable scores.
//!
//! Depends on `knowledge` for documents. It defines the embedder trait it needs instead of
//! depending on `models`, so its tests never compile candle; `assistant` plugs the real model in.

pub mod engine;
pub mod error;
pub mod fusion;
pub mod lexical;
pub mod normalize;
pub mod qdrant;
pub mod tokenizer;
pub mod vector;

use serde::{Deserialize, Serialize};

pub use engine::{
    IngestReport, Prepared, Retriever, RetrieverConfig, SearchHit, SearchOptions, VectorBackend,
};
pub use error::{BoxError, Error, Result};
pub use qdrant::QdrantConfig;
pub use vector::{FlatStore, VectorPoint, VectorStore};

/// Turns text into unit-length vectors (e5 conventions: distinct query and passage encodings).
pub trait Embedder: Send + Sync {
    /// Identifies model and weights; an index built with another embedder is rebuilt.
    fn id(&self) -> String;
    fn dim(&self) -> usize;
    fn embed_passages(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, BoxError>;
    fn embed_query(&self, text: &str) -> std::result::Result<Vec<f32>, BoxError>;
    /// Several queries at once (batched where the model allows).
    fn embed_queries(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, BoxError> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
}

/// A scored chunk from one retriever.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    pub chunk_id: String,
    pub doc_id: String,
    pub score: f32,
}

/// Restricts a search to one bureau and/or one service category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchFilter {
    pub bureau: Option<String>,
    pub category: Option<String>,
}

/// What one retriever contributed to a fused score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub source: &'static str,
    pub rank: usize,
    pub raw_score: f32,
    pub rrf: f64,
}

/// Which retrievers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bm25,
    Dense,
    #[default]
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bm25" => Ok(Mode::Bm25),
            "dense" => Ok(Mode::Dense),
            "hybrid" => Ok(Mode::Hybrid),
            other => Err(format!("unknown mode `{other}` (bm25, dense or hybrid)")),
        }
    }
}
