//! Exact-search latency of the embedded flat store, to check it remains the right default:
//! `cargo run --release -p retrieval --example flat_bench -- [N] [DIM]` (default 20000 × 384).

use std::time::Instant;

use retrieval::{FlatStore, SearchFilter, VectorPoint, VectorStore};

fn unit(seed: &mut u64, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, dim) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(384),
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let store = FlatStore::in_memory(dim);
    let points = (0..n)
        .map(|i| VectorPoint {
            chunk_id: format!("c{i}"),
            doc_id: format!("d{}", i / 2),
            bureau: Some(if i % 3 == 0 { "社會局" } else { "工務局" }.to_string()),
            category: None,
            vector: unit(&mut seed, dim),
        })
        .collect();
    store.upsert(points).await.unwrap();
    let queries: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut seed, dim)).collect();
    for (label, filter) in [
        ("no filter", SearchFilter::default()),
        (
            "bureau filter",
            SearchFilter {
                bureau: Some("社會局".into()),
                category: None,
            },
        ),
    ] {
        let mut ms = Vec::new();
        for q in &queries {
            let t = Instant::now();
            let hits = store.search(q, 50, &filter).await.unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(hits.len(), 50);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{n} × {dim}, top 50, {label}: p50 {:.3} ms, p99 {:.3} ms",
            ms[ms.len() / 2],
            ms[ms.len() * 99 / 100]
        );
    }
}
