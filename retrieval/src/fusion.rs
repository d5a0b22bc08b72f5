//! Reciprocal Rank Fusion: `score(d) = Σ_lists w_list / (k + rank_list(d))`, ranks from 1.
//! Robust to the two lists' incomparable score scales (BM25 vs cosine).

use std::collections::HashMap;

use crate::{ChunkHit, Contribution};

/// One ranked list to fuse.
pub struct RankedList<'a> {
    pub name: &'static str,
    pub weight: f64,
    pub hits: &'a [ChunkHit],
}

/// A fused result with what each list contributed.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk_id: String,
    pub doc_id: String,
    pub score: f64,
    pub contributions: Vec<Contribution>,
}

pub fn rrf(lists: &[RankedList<'_>], k: f64) -> Vec<Fused> {
    let mut by_id: HashMap<&str, Fused> = HashMap::new();
    let mut first_seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
        for (i, hit) in list.hits.iter().enumerate() {
            let rank = i + 1;
            let part = list.weight / (k + rank as f64);
            first_seen
                .entry(hit.chunk_id.as_str())
                .or_insert((rank, li));
            let e = by_id.entry(hit.chunk_id.as_str()).or_insert_with(|| Fused {
                chunk_id: hit.chunk_id.clone(),
                doc_id: hit.doc_id.clone(),
                score: 0.0,
                contributions: Vec::new(),
            });
            e.score += part;
            e.contributions.push(Contribution {
                source: list.name,
                rank,
                raw_score: hit.score,
                rrf: part,
            });
        }
    }
    let mut out: Vec<Fused> = by_id.into_values().collect();
    // Ties break by best single rank, then by list order, then id: deterministic.
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| first_seen[a.chunk_id.as_str()].cmp(&first_seen[b.chunk_id.as_str()]))
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ids: &[&str]) -> Vec<ChunkHit> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| ChunkHit {
                chunk_id: id.to_string(),
                doc_id: id.to_string(),
                score: 10.0 - i as f32,
            })
            .collect()
    }

    #[test]
    fn agreement_beats_a_single_top_rank() {
        let a = hits(&["x", "y", "z"]);
        let b = hits(&["y", "w", "x"]);
        let fused = rrf(
            &[
                RankedList {
                    name: "bm25",
                    weight: 1.0,
                    hits: &a,
                },
                RankedList {
                    name: "dense",
                    weight: 1.0,
                    hits: &b,
                },
            ],
            60.0,
        );
        let ids: Vec<&str> = fused.iter().map(|f| f.chunk_id.as_str()).collect();
        assert_eq!(ids, ["y", "x", "w", "z"]);
        let y = &fused[0];
        assert!((y.score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(y.contributions.len(), 2);
        assert_eq!(y.contributions[0].rank, 2);
    }

    #[test]
    fn small_k_favours_top_ranks_and_weights_apply() {
        let a = hits(&["x", "y"]);
        let b = hits(&["y", "x"]);
        let fused = rrf(
            &[
                RankedList {
                    name: "bm25",
                    weight: 2.0,
                    hits: &a,
                },
                RankedList {
                    name: "dense",
                    weight: 1.0,
                    hits: &b,
                },
            ],
            1.0,
        );
        assert_eq!(fused[0].chunk_id, "x");
    }
}
