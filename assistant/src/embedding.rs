//! Plugs the `models` e5 embedder into `retrieval`'s [`retrieval::Embedder`] trait.

use std::path::Path;
use std::sync::Arc;

use models::assets::{AssetCache, EMBEDDER};
use models::{E5Embedder, EmbedderConfig, TextKind};
use retrieval::BoxError;

pub struct E5 {
    inner: E5Embedder,
}

impl retrieval::Embedder for E5 {
    fn id(&self) -> String {
        self.inner.id().to_string()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.inner.embed(texts, TextKind::Passage)?)
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError> {
        Ok(self.inner.embed(&[text], TextKind::Query)?.remove(0))
    }
    fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.inner.embed(texts, TextKind::Query)?)
    }
}

/// Loads the embedder: from `path` when configured, else the verified asset in the cache.
/// A missing or corrupt file fails with a message naming `assistant setup`.
pub fn load_embedder(
    cache_root: &Path,
    path: Option<&Path>,
    config: EmbedderConfig,
) -> anyhow::Result<Arc<dyn retrieval::Embedder>> {
    let (path, sha) = match path {
        Some(p) => (p.to_path_buf(), models::assets::sha256_file(p)?),
        None => {
            let verified = AssetCache::new(cache_root).require(&EMBEDDER)?;
            (verified.path, verified.sha256)
        }
    };
    let id = format!("multilingual-e5-small@{}", &sha[..12]);
    let inner = E5Embedder::load(&path, id, config)?;
    Ok(Arc::new(E5 { inner }))
}
