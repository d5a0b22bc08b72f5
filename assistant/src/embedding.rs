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

/// Query embeddings of `texts`, read from `cache_dir` when an earlier run stored them for the
/// same embedder and the same texts (file `{name}-{key}.f32`), else computed and stored there.
/// Exemplar and example sets change rarely; embedding them at every start costs seconds.
pub fn queries_cached(
    embedder: &dyn retrieval::Embedder,
    texts: &[&str],
    cache_dir: Option<&Path>,
    name: &str,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(embedder.id());
        for t in texts {
            h.update(t.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..8])
    };
    let dim = embedder.dim();
    let cache = cache_dir.map(|d| d.join(format!("{name}-{key}.f32")));
    let cached = cache
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .filter(|b| b.len() == texts.len() * dim * 4);
    if let Some(bytes) = cached {
        return Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect::<Vec<f32>>()
            .chunks(dim)
            .map(|c| c.to_vec())
            .collect());
    }
    let mut v = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        v.extend(
            embedder
                .embed_queries(batch)
                .map_err(|e| anyhow::anyhow!("embedding the {name}: {e}"))?,
        );
    }
    if let Some(p) = &cache {
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        // Written aside and renamed, so an instance starting beside this one never reads half.
        let tmp = p.with_extension(format!("f32.{}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, p)) {
            tracing::warn!(error = %e, name, "an embedding cache was not written");
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its calls; vectors are the text's length and byte sum.
    struct Counting(AtomicUsize);
    impl retrieval::Embedder for Counting {
        fn id(&self) -> String {
            "counting".into()
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
            self.embed_queries(texts)
        }
        fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError> {
            Ok(self.embed_queries(&[text])?.remove(0))
        }
        fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, t.bytes().map(f32::from).sum()])
                .collect())
        }
    }

    #[test]
    fn cached_embeddings_are_reused_for_the_same_texts_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting(AtomicUsize::new(0));
        let texts = ["路燈不亮", "敬老卡"];
        let a = queries_cached(&e, &texts, Some(dir.path()), "t").unwrap();
        let b = queries_cached(&e, &texts, Some(dir.path()), "t").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            e.0.load(Ordering::SeqCst),
            2,
            "the second call read the cache"
        );
        // Other texts are another file; a damaged file is recomputed, not trusted.
        queries_cached(&e, &["育兒津貼"], Some(dir.path()), "t").unwrap();
        assert_eq!(e.0.load(Ordering::SeqCst), 3);
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"short").unwrap();
        }
        assert_eq!(
            queries_cached(&e, &texts, Some(dir.path()), "t").unwrap(),
            a
        );
        assert_eq!(e.0.load(Ordering::SeqCst), 5);
    }
}
