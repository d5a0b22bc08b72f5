//! The vector store trait and the embedded default: an exact (flat) store kept in memory and
//! persisted to one checksummed file. Exact search over a few thousand 384-d vectors takes well
//! under a millisecond; an ANN index only pays off far beyond this corpus size.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::{ChunkHit, SearchFilter};

/// One stored vector with the payload filters need.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPoint {
    pub chunk_id: String,
    pub doc_id: String,
    pub bureau: Option<String>,
    pub category: Option<String>,
    pub vector: Vec<f32>,
}

#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Backend name for messages (`flat`, `qdrant`).
    fn name(&self) -> &'static str;
    /// Inserts or replaces points (by chunk id).
    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<()>;
    /// Removes every point of these documents.
    async fn delete_docs(&self, doc_ids: &[String]) -> Result<()>;
    /// Removes everything.
    async fn clear(&self) -> Result<()>;
    /// Nearest points by cosine similarity (vectors are unit length), best first.
    async fn search(&self, query: &[f32], k: usize, filter: &SearchFilter)
        -> Result<Vec<ChunkHit>>;
    async fn count(&self) -> Result<usize>;
    /// Makes all changes durable.
    async fn flush(&self) -> Result<()>;
}

const MAGIC: &[u8; 4] = b"HVS1";

/// The embedded exact store.
pub struct FlatStore {
    path: Option<PathBuf>,
    dim: usize,
    points: RwLock<Vec<VectorPoint>>,
}

impl FlatStore {
    pub fn in_memory(dim: usize) -> Self {
        FlatStore {
            path: None,
            dim,
            points: RwLock::new(Vec::new()),
        }
    }

    /// Opens (or starts) the store file. A damaged file is an error, never a silent partial load.
    pub fn open(path: &Path, dim: usize) -> Result<Self> {
        let points = if path.exists() {
            let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
            decode(&bytes, dim).map_err(|reason| Error::CorruptVectors {
                path: path.to_path_buf(),
                reason,
            })?
        } else {
            Vec::new()
        };
        Ok(FlatStore {
            path: Some(path.to_path_buf()),
            dim,
            points: RwLock::new(points),
        })
    }

    /// Every stored point.
    pub fn into_points(self) -> Vec<VectorPoint> {
        self.points.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn check_dim(&self, got: usize) -> Result<()> {
        check_dim(self.dim, got)
    }
}

/// The dimension check every store applies to what it is given.
pub(crate) fn check_dim(expected: usize, got: usize) -> Result<()> {
    if got != expected {
        return Err(Error::Dimension { expected, got });
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(points: &[VectorPoint], dim: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * (dim * 4 + 64) + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(points.len() as u64).to_le_bytes());
    for p in points {
        put_str(&mut out, &p.chunk_id);
        put_str(&mut out, &p.doc_id);
        put_str(&mut out, p.bureau.as_deref().unwrap_or(""));
        put_str(&mut out, p.category.as_deref().unwrap_or(""));
        for v in &p.vector {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or("truncated record")?;
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "invalid text in record".into())
    }
}

fn decode(bytes: &[u8], dim: usize) -> std::result::Result<Vec<VectorPoint>, String> {
    if bytes.len() < 52 || &bytes[..4] != MAGIC {
        return Err("not a vector store file".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("checksum mismatch (truncated or modified)".into());
    }
    let mut r = Reader { buf: body, pos: 4 };
    let _version = r.u32()?;
    let file_dim = r.u32()? as usize;
    if file_dim != dim {
        return Err(format!("built for dimension {file_dim}, expected {dim}"));
    }
    let count = u64::from_le_bytes(r.take(8)?.try_into().unwrap()) as usize;
    let mut points = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let chunk_id = r.string()?;
        let doc_id = r.string()?;
        let bureau = Some(r.string()?).filter(|s| !s.is_empty());
        let category = Some(r.string()?).filter(|s| !s.is_empty());
        let vector = r
            .take(dim * 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        points.push(VectorPoint {
            chunk_id,
            doc_id,
            bureau,
            category,
            vector,
        });
    }
    Ok(points)
}

fn matches(p: &VectorPoint, f: &SearchFilter) -> bool {
    f.bureau
        .as_ref()
        .is_none_or(|b| p.bureau.as_ref() == Some(b))
        && f.category
            .as_ref()
            .is_none_or(|c| p.category.as_ref() == Some(c))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four accumulators let the compiler vectorise the loop.
    let mut acc = [0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[async_trait]
impl VectorStore for FlatStore {
    fn name(&self) -> &'static str {
        "flat"
    }

    async fn upsert(&self, new: Vec<VectorPoint>) -> Result<()> {
        for p in &new {
            self.check_dim(p.vector.len())?;
        }
        let ids: std::collections::HashSet<&str> =
            new.iter().map(|p| p.chunk_id.as_str()).collect();
        let mut points = self.points.write().expect("vector store lock");
        points.retain(|p| !ids.contains(p.chunk_id.as_str()));
        points.extend(new);
        Ok(())
    }

    async fn delete_docs(&self, doc_ids: &[String]) -> Result<()> {
        let ids: std::collections::HashSet<&str> = doc_ids.iter().map(String::as_str).collect();
        self.points
            .write()
            .expect("vector store lock")
            .retain(|p| !ids.contains(p.doc_id.as_str()));
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.points.write().expect("vector store lock").clear();
        Ok(())
    }

    async fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<ChunkHit>> {
        self.check_dim(query.len())?;
        let points = self.points.read().expect("vector store lock");
        let mut scored: Vec<(f32, usize)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| matches(p, filter))
            .map(|(i, p)| (dot(query, &p.vector), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(k);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .map(|(score, i)| ChunkHit {
                chunk_id: points[i].chunk_id.clone(),
                doc_id: points[i].doc_id.clone(),
                score,
            })
            .collect())
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.points.read().expect("vector store lock").len())
    }

    async fn flush(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = encode(&self.points.read().expect("vector store lock"), self.dim);
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, doc: &str, bureau: Option<&str>, v: [f32; 3]) -> VectorPoint {
        VectorPoint {
            chunk_id: id.into(),
            doc_id: doc.into(),
            bureau: bureau.map(Into::into),
            category: None,
            vector: v.to_vec(),
        }
    }

    #[tokio::test]
    async fn exact_search_filters_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.bin");
        let s = FlatStore::open(&path, 3).unwrap();
        s.upsert(vec![
            p("a#0", "a", Some("社會局"), [1.0, 0.0, 0.0]),
            p("b#0", "b", Some("工務局"), [0.8, 0.6, 0.0]),
            p("c#0", "c", Some("社會局"), [0.0, 0.0, 1.0]),
        ])
        .await
        .unwrap();
        let hits = s
            .search(&[0.6, 0.8, 0.0], 2, &SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.chunk_id.as_str()).collect::<Vec<_>>(),
            ["b#0", "a#0"]
        );
        let f = SearchFilter {
            bureau: Some("社會局".into()),
            ..Default::default()
        };
        let hits = s.search(&[0.6, 0.8, 0.0], 5, &f).await.unwrap();
        assert_eq!(
            hits.iter().map(|h| h.chunk_id.as_str()).collect::<Vec<_>>(),
            ["a#0", "c#0"]
        );
        s.delete_docs(&["a".into()]).await.unwrap();
        s.flush().await.unwrap();
        let reopened = FlatStore::open(&path, 3).unwrap();
        assert_eq!(reopened.count().await.unwrap(), 2);
        let hits = reopened
            .search(&[1.0, 0.0, 0.0], 1, &SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(hits[0].chunk_id, "b#0");
        assert!(matches!(
            reopened
                .upsert(vec![VectorPoint {
                    vector: vec![1.0],
                    ..p("x", "x", None, [0.0; 3])
                }])
                .await,
            Err(Error::Dimension {
                expected: 3,
                got: 1
            })
        ));
    }

    #[tokio::test]
    async fn a_damaged_file_is_reported_not_half_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.bin");
        let s = FlatStore::open(&path, 3).unwrap();
        s.upsert(vec![p("a#0", "a", None, [1.0, 0.0, 0.0])])
            .await
            .unwrap();
        s.flush().await.unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&path, bytes).unwrap();
        let err = FlatStore::open(&path, 3).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(FlatStore::open(&path, 4).is_err());
    }
}
