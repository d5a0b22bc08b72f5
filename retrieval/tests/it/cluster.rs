//! A three-node Qdrant cluster on loopback ports (three shards, two copies of each): points
//! upserted, then the node the store talks to is killed (SIGKILL) under a query and write
//! load. Every query must still be answered, and answered right (each query is a stored
//! vector, which must come back first); every upsert acknowledged during the outage must be
//! found afterwards. The node is restarted and must catch up: once every replica is active
//! again, another node is killed, so the shards the restarted node shares with it are served
//! from the restarted node's copy alone, and every point is looked up once more.
//!
//! Figures (queries answered, failures, latency while the node is down, catch-up time) are
//! printed for the issue notes: `cargo test -p retrieval --test it cluster -- --nocapture`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use retrieval::qdrant::QdrantStore;
use retrieval::{QdrantConfig, SearchFilter, VectorPoint, VectorStore};

use testkit::qdrant::Cluster;

const DIM: usize = 16;

/// A deterministic, well-spread unit vector per point number.
fn vector(i: usize) -> Vec<f32> {
    let mut s = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn point(i: usize) -> VectorPoint {
    VectorPoint {
        chunk_id: format!("doc{}#{}", i / 10, i % 10),
        doc_id: format!("doc{}", i / 10),
        bureau: Some(["工務局", "社會局", "環境保護局"][i % 3].into()),
        category: None,
        vector: vector(i),
    }
}

/// Looks point `i` up by its own vector: it must come back first.
async fn finds(store: &QdrantStore, i: usize) -> Result<bool, retrieval::Error> {
    let hits = store
        .search(&vector(i), 3, &SearchFilter::default())
        .await?;
    Ok(hits.first().map(|h| h.chunk_id.as_str()) == Some(point(i).chunk_id.as_str()))
}

fn config(cluster: &Cluster, first: usize) -> QdrantConfig {
    let n = cluster.nodes.len();
    QdrantConfig {
        peers: (1..n)
            .map(|k| cluster.nodes[(first + k) % n].url())
            .collect(),
        replication_factor: 2,
        shard_number: 3,
        timeout_secs: 5,
        ..QdrantConfig::new(cluster.nodes[first].url(), "guides")
    }
}

/// The error with every cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_under_load_loses_no_query_and_no_acknowledged_write() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    // Talks to node 1 first, the one that will be killed.
    let store = Arc::new(
        QdrantStore::connect(&config(&cluster, 1), DIM)
            .await
            .unwrap(),
    );
    let before = 300;
    let points: Vec<VectorPoint> = (0..before).map(point).collect();
    for batch in points.chunks(100) {
        store.upsert(batch.to_vec()).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), before);
    let replicas = cluster.replicas("guides");
    let active = |r: &[(u64, u64, String)]| r.iter().filter(|x| x.2 == "Active").count();
    assert!(active(&replicas) >= 6, "{replicas:?}");

    // Query load: one task looking points up in a loop, one writing new points.
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (store, stop, killed, failures, wrong) = (
            store.clone(),
            stop.clone(),
            killed.clone(),
            failures.clone(),
            wrong.clone(),
        );
        tokio::spawn(async move {
            let (mut during, mut total, mut i) = (Vec::new(), 0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match finds(&store, i % before).await {
                    Ok(true) => {}
                    Ok(false) => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if failures.load(Ordering::Relaxed) < 3 {
                            eprintln!("query failed: {}", chain(&e));
                        }
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if killed.load(Ordering::Relaxed) {
                    during.push(t.elapsed());
                }
                total += 1;
                i += 7;
            }
            (total, during)
        })
    };
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut next = before;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<VectorPoint> = (next..next + 5).map(point).collect();
                match store.upsert(batch).await {
                    Ok(()) => acked.extend(next..next + 5),
                    Err(e) => eprintln!("upsert not acknowledged: {}", chain(&e)),
                }
                next += 5;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, next - before)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes[1].kill();
    killed.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let (total, mut during) = reader.await.unwrap();
    let (acked, attempted) = writer.await.unwrap();
    during.sort();
    eprintln!(
        "[cluster] node 1 killed: {total} queries in all, {} while it was down \
         (p50 {:?}, p95 {:?}, max {:?}), {} failed, {} wrong; upserts: {} of {attempted} \
         acknowledged; store now talks to {}",
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.95),
        during.last().copied().unwrap_or_default(),
        failures.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        acked.len(),
        store.current_node(),
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every query answered");
    assert_eq!(
        wrong.load(Ordering::Relaxed),
        0,
        "every query answered right"
    );
    assert!(!during.is_empty(), "queries ran while the node was down");
    assert!(acked.len() >= 10, "writes went on during the outage");
    assert_ne!(store.current_node(), cluster.nodes[1].url());
    for &i in &acked {
        assert!(
            finds(&store, i).await.unwrap(),
            "acknowledged point {i} lost"
        );
    }

    // Back up: its replicas catch up from the others.
    let outage = killed_at.elapsed();
    let t = Instant::now();
    cluster.nodes[1].restart();
    let ready = t.elapsed();
    let catch_up = cluster.wait_for(
        |c| {
            let r = c.replicas("guides");
            r.len() >= 18 && r.iter().all(|x| x.2 == "Active")
        },
        "every replica to be active again",
    );
    eprintln!(
        "[cluster] node 1 down for {outage:?}; restarted and ready (/readyz) in {ready:?}, \
         every replica active {catch_up:?} later"
    );
    // Node 0 goes: what it shared with node 1 is now served from node 1's copy alone.
    let (p0, p1) = (cluster.peer_id(0), cluster.peer_id(1));
    let replicas = cluster.replicas("guides");
    let on = |peer| {
        let mut s: Vec<u64> = replicas
            .iter()
            .filter(|r| r.1 == peer)
            .map(|r| r.0)
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let shared: Vec<u64> = on(p0).into_iter().filter(|s| on(p1).contains(s)).collect();
    assert!(
        !shared.is_empty(),
        "nodes 0 and 1 share a shard: {replicas:?}"
    );
    cluster.nodes[0].kill();
    let survivors = QdrantStore::connect(&config(&cluster, 1), DIM)
        .await
        .unwrap();
    let all: Vec<usize> = (0..before).chain(acked.iter().copied()).collect();
    let mut lost = Vec::new();
    for &i in &all {
        if !finds(&survivors, i).await.unwrap() {
            lost.push(i);
        }
    }
    assert!(lost.is_empty(), "not found after the catch-up: {lost:?}");
    eprintln!(
        "[cluster] node 0 killed after the catch-up: all {} points found through nodes 1 and 2",
        all.len()
    );
}
