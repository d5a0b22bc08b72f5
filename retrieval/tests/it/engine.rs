//! The retriever end to end on small guide corpora: idempotent ingest, updates and removals,
//! broken files, filters, fusion explanations, and rebuilds when the embedder or the files change.

use std::sync::Arc;

use knowledge::{load_path, LoadOptions};
use retrieval::{Mode, Retriever, RetrieverConfig, SearchFilter, SearchOptions};

use crate::util::{
    edit_streetlight_and_delete_bulky_waste, ingest_dir, write_corpus, CharEmbedder,
};

fn embedder(version: &'static str) -> Arc<CharEmbedder> {
    Arc::new(CharEmbedder { dim: 64, version })
}

#[tokio::test]
async fn ingesting_the_same_corpus_twice_changes_nothing() {
    let corpus = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let mut r = Retriever::open(
        Some(index.path()),
        embedder("v1"),
        RetrieverConfig::default(),
    )
    .await
    .unwrap();
    let first = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((first.added, first.unchanged, first.removed), (3, 0, 0));
    assert!(first.chunks_embedded >= 5);
    let second = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(
        (
            second.added,
            second.updated,
            second.unchanged,
            second.removed,
            second.chunks_embedded
        ),
        (0, 0, 3, 0, 0)
    );
    drop(r);
    // Also after reopening from disk.
    let mut r = Retriever::open(
        Some(index.path()),
        embedder("v1"),
        RetrieverConfig::default(),
    )
    .await
    .unwrap();
    assert!(r.rebuilt().is_none());
    let third = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((third.unchanged, third.chunks_embedded), (3, 0));
    let hits = r
        .search("敬老卡要帶什麼", &SearchOptions::default())
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "senior-card");
}

#[tokio::test]
async fn edits_and_deletions_update_only_what_changed() {
    let corpus = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let mut r = Retriever::open(None, embedder("v1"), RetrieverConfig::default())
        .await
        .unwrap();
    ingest_dir(&mut r, corpus.path()).await;
    edit_streetlight_and_delete_bulky_waste(corpus.path());
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(
        (rep.added, rep.updated, rep.unchanged, rep.removed),
        (0, 1, 1, 1)
    );
    assert_eq!(r.num_documents(), 2);
    let hits = r
        .search(
            "大型家具清運",
            &SearchOptions {
                mode: Mode::Bm25,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.chunk.doc_id != "bulky-waste"),
        "removed document still found"
    );
    let hits = r
        .search(
            "路燈桿號在哪裡",
            &SearchOptions {
                mode: Mode::Bm25,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(hits[0].chunk.text.contains("金屬牌"));
    assert!(
        !hits.iter().any(|h| h.chunk.text.contains("三日內")),
        "old version still indexed"
    );
}

#[tokio::test]
async fn a_broken_file_is_reported_and_keeps_what_it_indexed_before() {
    let corpus = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let mut r = Retriever::open(None, embedder("v1"), RetrieverConfig::default())
        .await
        .unwrap();
    ingest_dir(&mut r, corpus.path()).await;
    std::fs::write(
        corpus.path().join("senior-card.md"),
        "+++\nid = \"senior-card\nbroken",
    )
    .unwrap();
    let loaded = load_path(corpus.path(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.problems.len(), 1);
    assert!(loaded.problems[0].path.ends_with("senior-card.md"));
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((rep.removed, rep.unchanged), (0, 2));
    assert_eq!(r.num_documents(), 3);
}

#[tokio::test]
async fn filters_and_explanations() {
    let corpus = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let mut r = Retriever::open(None, embedder("v1"), RetrieverConfig::default())
        .await
        .unwrap();
    ingest_dir(&mut r, corpus.path()).await;
    let opts = SearchOptions {
        k: 10,
        mode: Mode::Hybrid,
        filter: SearchFilter {
            bureau: Some("工務局".into()),
            category: None,
        },
    };
    let hits = r.search("報修 申請", &opts).await.unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|h| h.chunk.bureau.as_deref() == Some("工務局")));
    let hits = r
        .search("路燈不亮", &SearchOptions::default())
        .await
        .unwrap();
    let top = &hits[0];
    assert_eq!(top.chunk.doc_id, "streetlight");
    let sources: Vec<&str> = top.contributions.iter().map(|c| c.source).collect();
    // Both retrievers, and the margin boost when BM25 alone singles the guide out.
    assert_eq!(sources[..2], ["bm25", "dense"]);
    assert!(
        sources[2..].iter().all(|s| *s == "bm25-margin"),
        "{sources:?}"
    );
    let sum: f64 = top.contributions.iter().map(|c| c.rrf).sum();
    assert!((sum - top.score).abs() < 1e-12);
    // Simplified and full-width queries find the same guide.
    let hits = r
        .search(
            "路灯不亮",
            &SearchOptions {
                mode: Mode::Bm25,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "streetlight");
}

#[tokio::test]
async fn another_embedder_or_damaged_files_rebuild_the_index() {
    let corpus = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    {
        let mut r = Retriever::open(
            Some(index.path()),
            embedder("v1"),
            RetrieverConfig::default(),
        )
        .await
        .unwrap();
        ingest_dir(&mut r, corpus.path()).await;
    }
    let mut r = Retriever::open(
        Some(index.path()),
        embedder("v2"),
        RetrieverConfig::default(),
    )
    .await
    .unwrap();
    let why = r.rebuilt().expect("must rebuild").to_string();
    assert!(why.contains("embedder"), "{why}");
    assert_eq!(r.num_documents(), 0);
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(rep.added, 3);
    drop(r);

    // Truncate the vector file: detected on open, rebuilt, not half-loaded.
    let vectors = index.path().join("vectors.bin");
    let bytes = std::fs::read(&vectors).unwrap();
    std::fs::write(&vectors, &bytes[..bytes.len() / 2]).unwrap();
    let mut r = Retriever::open(
        Some(index.path()),
        embedder("v2"),
        RetrieverConfig::default(),
    )
    .await
    .unwrap();
    assert!(
        r.rebuilt().unwrap().contains("damaged"),
        "{:?}",
        r.rebuilt()
    );
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(rep.added, 3);
    let hits = r
        .search(
            "敬老卡",
            &SearchOptions {
                mode: Mode::Dense,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "senior-card");
}

#[tokio::test]
async fn a_tokenizer_change_rebuilds_bm25_in_place_without_re_embedding() {
    let corpus = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    {
        let mut r = Retriever::open(
            Some(index.path()),
            embedder("v1"),
            RetrieverConfig::default(),
        )
        .await
        .unwrap();
        ingest_dir(&mut r, corpus.path()).await;
    }
    // Pretend the index was built by an older tokenizer.
    let meta_path = index.path().join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["tokenizer"] = "jieba-old".into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let mut r = Retriever::open(
        Some(index.path()),
        embedder("v1"),
        RetrieverConfig::default(),
    )
    .await
    .unwrap();
    assert!(
        r.rebuilt().unwrap().contains("tokenizer"),
        "{:?}",
        r.rebuilt()
    );
    assert!(!r.emptied());
    assert_eq!(r.num_documents(), 3);
    let hits = r
        .search(
            "路燈不亮",
            &SearchOptions {
                mode: Mode::Bm25,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "streetlight");
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((rep.unchanged, rep.chunks_embedded), (3, 0));
}

/// Counts the passages it embeds (around the character embedder).
struct Counting {
    inner: CharEmbedder,
    passages: std::sync::atomic::AtomicUsize,
}

impl retrieval::Embedder for Counting {
    fn id(&self) -> String {
        self.inner.id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, retrieval::BoxError> {
        self.passages
            .fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
        self.inner.embed_passages(texts)
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, retrieval::BoxError> {
        self.inner.embed_query(text)
    }
}

#[tokio::test]
async fn a_prepared_ingest_embeds_nothing_while_it_holds_the_index() {
    use std::sync::atomic::Ordering;
    let corpus = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let counting = Arc::new(Counting {
        inner: CharEmbedder {
            dim: 64,
            version: "prepared",
        },
        passages: Default::default(),
    });
    let mut r = Retriever::open(None, counting.clone(), RetrieverConfig::default())
        .await
        .unwrap();
    ingest_dir(&mut r, corpus.path()).await;
    let first = counting.passages.load(Ordering::Relaxed);
    assert_eq!(first, r.num_chunks());
    // One guide edited, one deleted: only the edited one's sections are prepared.
    edit_streetlight_and_delete_bulky_waste(corpus.path());
    let loaded = load_path(corpus.path(), &LoadOptions::default()).unwrap();
    let prepared = r.prepare(&loaded.documents, &|_, _| {}).await.unwrap();
    let streetlight = loaded
        .documents
        .iter()
        .find(|d| d.document.id == "streetlight")
        .unwrap();
    let sections = knowledge::chunk_document(&streetlight.document, &Default::default()).len();
    assert_eq!(prepared.len(), sections);
    let after_prepare = counting.passages.load(Ordering::Relaxed);
    assert_eq!(after_prepare - first, sections);
    let report = r
        .ingest_prepared(
            loaded.documents,
            &[corpus.path().to_path_buf()],
            &Default::default(),
            &|_, _| {},
            prepared,
        )
        .await
        .unwrap();
    assert_eq!((report.updated, report.removed), (1, 1));
    assert_eq!(
        counting.passages.load(Ordering::Relaxed),
        after_prepare,
        "nothing embedded under the write lock"
    );
    let dense = SearchOptions {
        k: 3,
        mode: Mode::Dense,
        filter: SearchFilter::default(),
    };
    let hits = r.search("路燈桿號在哪裡", &dense).await.unwrap();
    assert_eq!(hits[0].chunk.doc_id, "streetlight");
    assert!(hits[0].chunk.text.contains("金屬牌"));
}
