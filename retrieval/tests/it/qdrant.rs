//! The Qdrant backend against a real Qdrant server (`qdrant_node`, 1.18 from `../shared/tools`):
//! upserts with payloads, cosine-ordered search with chunk and document ids restored, payload
//! filters and their indexes, deleting documents, counting, clearing, the collection checked at
//! connect, an index moved from the embedded store without re-embedding, the same rankings as
//! the embedded store, and the whole retriever on top of it.

use std::sync::Arc;

use retrieval::qdrant::QdrantStore;
use retrieval::{
    Error, Mode, QdrantConfig, Retriever, RetrieverConfig, SearchFilter, SearchOptions,
    VectorBackend, VectorPoint, VectorStore,
};

use crate::util::{
    edit_streetlight_and_delete_bulky_waste, ingest_dir, write_corpus, CharEmbedder,
};
use testkit::qdrant::Node;

fn point(
    chunk: &str,
    doc: &str,
    bureau: Option<&str>,
    category: Option<&str>,
    v: &[f32],
) -> VectorPoint {
    VectorPoint {
        chunk_id: chunk.into(),
        doc_id: doc.into(),
        bureau: bureau.map(Into::into),
        category: category.map(Into::into),
        vector: v.to_vec(),
    }
}

fn ids(hits: &[retrieval::ChunkHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk_id.as_str()).collect()
}

fn no_filter() -> SearchFilter {
    SearchFilter::default()
}

fn bureau(b: &str) -> SearchFilter {
    SearchFilter {
        bureau: Some(b.into()),
        category: None,
    }
}

fn category(c: &str) -> SearchFilter {
    SearchFilter {
        bureau: None,
        category: Some(c.into()),
    }
}

/// A real server for this test, or a skip (see `qdrant_node::binary`).
macro_rules! qdrant {
    () => {
        match Node::start() {
            Some(n) => n,
            None => return,
        }
    };
}

async fn connect(url: &str, collection: &str, dim: usize) -> retrieval::Result<QdrantStore> {
    QdrantStore::connect(&QdrantConfig::new(url, collection), dim).await
}

/// Four points over three documents; stored vectors need not be unit length (cosine).
async fn seeded(url: &str, collection: &str) -> QdrantStore {
    let store = connect(url, collection, 3).await.unwrap();
    store
        .upsert(vec![
            point("a#0.0", "a", Some("社會局"), Some("福利"), &[1.0, 0.0, 0.0]),
            point("a#1.0", "a", Some("社會局"), Some("福利"), &[0.0, 2.0, 0.0]),
            point("b#0.0", "b", Some("工務局"), Some("道路"), &[1.6, 1.2, 0.0]),
            point("c#0.0", "c", Some("社會局"), None, &[0.0, 0.0, 1.0]),
        ])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn search_is_cosine_ordered_with_ids_restored() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    assert_eq!(store.name(), "qdrant");
    assert_eq!(store.count().await.unwrap(), 4);

    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &no_filter())
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["b#0.0", "a#1.0", "a#0.0", "c#0.0"]);
    let docs: Vec<&str> = hits.iter().map(|h| h.doc_id.as_str()).collect();
    assert_eq!(docs, ["b", "a", "a", "c"]);
    let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
    for (got, want) in scores.iter().zip([0.96, 0.8, 0.6, 0.0]) {
        assert!((got - want).abs() < 1e-5, "scores {scores:?}");
    }

    // The limit is sent and honoured.
    let hits = store
        .search(&[0.6, 0.8, 0.0], 2, &no_filter())
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["b#0.0", "a#1.0"]);
}

#[tokio::test]
async fn bureau_and_category_filters_restrict_the_search() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &bureau("社會局"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["a#1.0", "a#0.0", "c#0.0"]);
    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &bureau("工務局"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["b#0.0"]);
    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &category("福利"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["a#1.0", "a#0.0"]);
    let both = SearchFilter {
        bureau: Some("社會局".into()),
        category: Some("道路".into()),
    };
    assert!(store
        .search(&[0.6, 0.8, 0.0], 10, &both)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search(&[0.6, 0.8, 0.0], 10, &bureau("環境保護局"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn upserting_a_chunk_again_replaces_its_point() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    // Same chunk id, same point id: the point moves instead of being duplicated.
    store
        .upsert(vec![point(
            "c#0.0",
            "c",
            Some("工務局"),
            None,
            &[0.6, 0.8, 0.0],
        )])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
    let hits = store
        .search(&[0.6, 0.8, 0.0], 1, &no_filter())
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["c#0.0"]);
    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &bureau("社會局"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["a#1.0", "a#0.0"]);
    // An empty batch sends nothing and changes nothing.
    store.upsert(Vec::new()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
}

#[tokio::test]
async fn delete_docs_removes_every_point_of_those_documents() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    store.delete_docs(&["a".into()]).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
    let hits = store
        .search(&[0.6, 0.8, 0.0], 10, &no_filter())
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["b#0.0", "c#0.0"]);
    // Several documents at once (a `should` filter), one of them unknown.
    store
        .delete_docs(&["b".into(), "c".into(), "missing".into()])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 0);
    store.delete_docs(&[]).await.unwrap();
}

#[tokio::test]
async fn ids_and_labels_with_spaces_match_exactly() {
    // A string with whitespace turned into `Condition::matches` becomes a full-text match,
    // which Qdrant answers by terms (without a text index: every term a substring). Document
    // ids (a guide's front matter) and categories may contain spaces; matching must be exact.
    let node = qdrant!();
    let url = node.url();
    let store = connect(&url, "guides", 3).await.unwrap();
    store
        .upsert(vec![
            point(
                "pothole guide#0.0",
                "pothole guide",
                None,
                Some("road works"),
                &[1.0, 0.0, 0.0],
            ),
            point(
                "pothole guide v2#0.0",
                "pothole guide v2",
                None,
                Some("road works extra"),
                &[0.0, 1.0, 0.0],
            ),
            point(
                "guide pothole#0.0",
                "guide pothole",
                None,
                Some("works road"),
                &[0.0, 0.0, 1.0],
            ),
        ])
        .await
        .unwrap();
    let hits = store
        .search(&[1.0, 1.0, 1.0], 10, &category("road works"))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["pothole guide#0.0"]);
    store.delete_docs(&["pothole guide".into()]).await.unwrap();
    let mut left: Vec<String> = store
        .search(&[1.0, 1.0, 1.0], 10, &no_filter())
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.doc_id)
        .collect();
    left.sort();
    assert_eq!(left, ["guide pothole", "pothole guide v2"]);
}

#[tokio::test]
async fn clear_empties_and_keeps_the_collection_usable() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    store.clear().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(store
        .search(&[0.6, 0.8, 0.0], 10, &no_filter())
        .await
        .unwrap()
        .is_empty());
    // Re-created with the same dimension.
    store
        .upsert(vec![point("d#0.0", "d", None, None, &[0.0, 1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    store.flush().await.unwrap();
}

#[tokio::test]
async fn collections_are_reused_and_kept_apart() {
    let node = qdrant!();
    let url = node.url();
    let first = seeded(&url, "guides").await;
    // Connecting again finds the collection and its points; it is not re-created.
    let again = connect(&url, "guides", 3).await.unwrap();
    assert_eq!(again.count().await.unwrap(), 4);
    let other = connect(&url, "faq", 3).await.unwrap();
    assert_eq!(other.count().await.unwrap(), 0);
    other.clear().await.unwrap();
    assert_eq!(first.count().await.unwrap(), 4);
}

#[tokio::test]
async fn dimension_mismatches_are_errors() {
    let node = qdrant!();
    let url = node.url();
    let store = seeded(&url, "guides").await;
    let short = store
        .upsert(vec![point("x#0.0", "x", None, None, &[1.0, 0.0])])
        .await;
    assert!(
        matches!(
            short,
            Err(Error::Dimension {
                expected: 3,
                got: 2
            })
        ),
        "{short:?}"
    );
    let long = store.search(&[1.0, 0.0, 0.0, 0.0], 5, &no_filter()).await;
    assert!(
        matches!(
            long,
            Err(Error::Dimension {
                expected: 3,
                got: 4
            })
        ),
        "{long:?}"
    );
    assert_eq!(store.count().await.unwrap(), 4);

    // A store configured for another dimension over the existing collection is refused at
    // connect, saying what the collection holds and what to do; nothing is changed.
    let err = connect(&url, "guides", 4)
        .await
        .err()
        .expect("wrong dimension");
    assert!(
        matches!(&err, Error::Collection { collection, .. } if collection == "guides"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("holds 3-dimensional Cosine vectors")
            && msg.contains("makes 4-dimensional")
            && msg.contains("retrieval.vectors.collection"),
        "{msg}"
    );
    assert_eq!(store.count().await.unwrap(), 4);
}

#[tokio::test]
async fn a_collection_with_another_distance_is_refused_at_connect() {
    use qdrant_client::qdrant::{CreateCollectionBuilder, Distance, VectorParamsBuilder};
    let node = qdrant!();
    let url = node.url();
    let raw = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    raw.create_collection(
        CreateCollectionBuilder::new("dots")
            .vectors_config(VectorParamsBuilder::new(3, Distance::Dot)),
    )
    .await
    .unwrap();
    let err = connect(&url, "dots", 3).await.err().expect("dot product");
    assert!(
        err.to_string().contains("3-dimensional Dot vectors"),
        "{err}"
    );
}

#[tokio::test]
async fn filtered_fields_have_keyword_indexes() {
    use qdrant_client::qdrant::PayloadSchemaType;
    let node = qdrant!();
    let url = node.url();
    let _store = seeded(&url, "guides").await;
    let raw = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let info = raw.collection_info("guides").await.unwrap().result.unwrap();
    for field in retrieval::qdrant::INDEXED_FIELDS {
        let schema = info
            .payload_schema
            .get(field)
            .unwrap_or_else(|| panic!("no index on {field}: {:?}", info.payload_schema));
        assert_eq!(
            schema.data_type,
            PayloadSchemaType::Keyword as i32,
            "{field}"
        );
        assert_eq!(schema.points, Some(4), "{field}: every point indexed");
    }
    // An index dropped behind our back is created again at the next connect.
    raw.delete_field_index(
        qdrant_client::qdrant::DeleteFieldIndexCollectionBuilder::new("guides", "bureau")
            .wait(true),
    )
    .await
    .unwrap();
    let _again = connect(&url, "guides", 3).await.unwrap();
    let info = raw.collection_info("guides").await.unwrap().result.unwrap();
    assert!(info.payload_schema.contains_key("bureau"));
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_hang() {
    // Bind and drop a listener to get a port nobody serves.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = connect(&format!("http://127.0.0.1:{port}"), "guides", 3)
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        matches!(
            err,
            Error::VectorStore {
                store: "qdrant",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The three test guides in a folder, an empty index directory and a 32-dimensional embedder.
fn setup(version: &'static str) -> (tempfile::TempDir, tempfile::TempDir, Arc<CharEmbedder>) {
    let corpus = tempfile::tempdir().unwrap();
    write_corpus(corpus.path());
    let embedder = Arc::new(CharEmbedder { dim: 32, version });
    (corpus, tempfile::tempdir().unwrap(), embedder)
}

/// A retriever over the index in `dir` with its vectors in `collection` on the server at `url`.
async fn open_on(
    dir: &std::path::Path,
    embedder: &Arc<CharEmbedder>,
    url: &str,
    collection: &str,
) -> Retriever {
    Retriever::open(Some(dir), embedder.clone(), qdrant_config(url, collection))
        .await
        .unwrap()
}

fn qdrant_config(url: &str, collection: &str) -> RetrieverConfig {
    RetrieverConfig {
        vectors: VectorBackend::Qdrant(QdrantConfig::new(url, collection)),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_retriever_runs_dense_search_over_qdrant() {
    let node = qdrant!();
    let url = node.url();
    let (corpus, index, embedder) = setup("qdrant");
    let mut r = open_on(index.path(), &embedder, &url, "hotline").await;
    assert_eq!(r.vector_backend(), "qdrant");
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(rep.added, 3);
    // One point per chunk reached the server.
    let probe = connect(&url, "hotline", 32).await.unwrap();
    assert_eq!(probe.count().await.unwrap(), r.num_chunks());

    let dense = |filter: SearchFilter| SearchOptions {
        k: 5,
        mode: Mode::Dense,
        filter,
    };
    for (query, doc) in [
        ("敬老卡要怎麼申請", "senior-card"),
        ("路燈不亮要報修", "streetlight"),
        ("大型家具清運", "bulky-waste"),
    ] {
        let hits = r.search(query, &dense(no_filter())).await.unwrap();
        assert_eq!(hits[0].chunk.doc_id, doc, "{query}");
        assert_eq!(hits[0].contributions[0].source, "dense");
    }
    let hits = r
        .search("路燈不亮要報修", &dense(bureau("社會局")))
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|h| h.chunk.bureau.as_deref() == Some("社會局")));

    // An edited guide replaces its points; a deleted one loses them.
    edit_streetlight_and_delete_bulky_waste(corpus.path());
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((rep.updated, rep.removed), (1, 1));
    assert_eq!(probe.count().await.unwrap(), r.num_chunks());
    let hits = r
        .search("路燈桿號在哪裡", &dense(no_filter()))
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "streetlight");
    assert!(hits[0].chunk.text.contains("金屬牌"));
    drop(r);

    // Reopened with the same configuration: the collection is kept and nothing re-embedded.
    let mut r = open_on(index.path(), &embedder, &url, "hotline").await;
    assert!(r.rebuilt().is_none());
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((rep.unchanged, rep.chunks_embedded), (2, 0));
    let hits = r
        .search("敬老卡要怎麼申請", &dense(no_filter()))
        .await
        .unwrap();
    assert_eq!(hits[0].chunk.doc_id, "senior-card");
    drop(r);

    // Another embedder over the same index: rebuilt, and the collection cleared with it.
    let other = Arc::new(CharEmbedder {
        dim: 32,
        version: "qdrant-v2",
    });
    let r = open_on(index.path(), &other, &url, "hotline").await;
    assert!(r.rebuilt().is_some());
    assert_eq!(probe.count().await.unwrap(), 0);
}

#[tokio::test]
async fn an_embedded_index_moves_to_qdrant_without_embedding_again() {
    let node = qdrant!();
    let url = node.url();
    let (corpus, index, embedder) = setup("move");
    let queries = [
        "敬老卡要怎麼申請",
        "路燈不亮要報修",
        "大型家具清運",
        "家裡的舊沙發要丟",
        "社會局",
        "晚上路口很暗",
    ];
    let dense = SearchOptions {
        k: 5,
        mode: Mode::Dense,
        filter: no_filter(),
    };
    let ranking = |hits: Vec<retrieval::SearchHit>| -> Vec<(String, f64)> {
        hits.into_iter()
            .map(|h| (h.chunk.id, h.contributions[0].raw_score as f64))
            .collect()
    };
    let mut flat_rankings = Vec::new();
    {
        let mut r = Retriever::open(Some(index.path()), embedder.clone(), Default::default())
            .await
            .unwrap();
        ingest_dir(&mut r, corpus.path()).await;
        for q in queries {
            flat_rankings.push(ranking(r.search(q, &dense).await.unwrap()));
        }
    }
    let mut r = open_on(index.path(), &embedder, &url, "moved").await;
    assert!(r.rebuilt().is_none(), "{:?}", r.rebuilt());
    assert!(!index.path().join("vectors.bin").exists());
    let probe = connect(&url, "moved", 32).await.unwrap();
    assert_eq!(probe.count().await.unwrap(), r.num_chunks());
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!((rep.unchanged, rep.chunks_embedded), (3, 0));
    // The same sections in the same order with the same cosines (HNSW is exact at this size).
    for (q, flat) in queries.iter().zip(&flat_rankings) {
        let got = ranking(r.search(q, &dense).await.unwrap());
        assert_eq!(got.len(), flat.len(), "{q}");
        for ((gid, gs), (fid, fs)) in got.iter().zip(flat) {
            assert!((gs - fs).abs() < 1e-4, "{q}: {got:?} vs {flat:?}");
            // Ties may come in either order; otherwise the ids agree.
            assert!(
                gid == fid || flat.iter().any(|(i, s)| i == gid && (s - gs).abs() < 1e-4),
                "{q}: {got:?} vs {flat:?}"
            );
        }
    }
}

#[tokio::test]
async fn one_instance_rebuilding_a_damaged_index_leaves_the_shared_collection_alone() {
    let node = qdrant!();
    let url = node.url();
    // Two instances, each with its own index directory, one collection.
    let (corpus, a_dir, embedder) = setup("shared");
    let b_dir = tempfile::tempdir().unwrap();
    let mut a = open_on(a_dir.path(), &embedder, &url, "shared").await;
    ingest_dir(&mut a, corpus.path()).await;
    let mut b = open_on(b_dir.path(), &embedder, &url, "shared").await;
    ingest_dir(&mut b, corpus.path()).await;
    let probe = connect(&url, "shared", 32).await.unwrap();
    let n = probe.count().await.unwrap();
    assert_eq!(n, a.num_chunks());
    drop(b);
    // B's directory is damaged: B rebuilds and re-ingests, A keeps answering throughout.
    std::fs::write(b_dir.path().join("meta.json"), b"{not json").unwrap();
    let mut b = open_on(b_dir.path(), &embedder, &url, "shared").await;
    assert!(b.rebuilt().is_some());
    assert_eq!(
        probe.count().await.unwrap(),
        n,
        "the collection was not cleared"
    );
    let dense = SearchOptions {
        k: 3,
        mode: Mode::Dense,
        filter: no_filter(),
    };
    let hits = a.search("路燈不亮要報修", &dense).await.unwrap();
    assert_eq!(hits[0].chunk.doc_id, "streetlight");
    let rep = ingest_dir(&mut b, corpus.path()).await;
    assert_eq!(rep.added, 3);
    assert_eq!(
        probe.count().await.unwrap(),
        n,
        "the same points upserted again"
    );
}

#[tokio::test]
async fn an_index_pointed_at_an_empty_cluster_is_ingested_again() {
    let first = qdrant!();
    let (corpus, index, embedder) = setup("new-cluster");
    let mut r = open_on(index.path(), &embedder, &first.url(), "guides").await;
    ingest_dir(&mut r, corpus.path()).await;
    drop(r);
    // The same collection name on another (empty) server: not taken as up to date.
    let second = qdrant!();
    let mut r = open_on(index.path(), &embedder, &second.url(), "guides").await;
    assert!(
        r.rebuilt().is_some_and(|why| why.contains("holds none")),
        "{:?}",
        r.rebuilt()
    );
    let rep = ingest_dir(&mut r, corpus.path()).await;
    assert_eq!(rep.added, 3);
    let probe = connect(&second.url(), "guides", 32).await.unwrap();
    assert_eq!(probe.count().await.unwrap(), r.num_chunks());
    // A node address that changes with the vectors in place is not a rebuild.
    drop(r);
    let same = format!("http://localhost:{}", second.grpc);
    let r = open_on(index.path(), &embedder, &same, "guides").await;
    assert!(r.rebuilt().is_none(), "{:?}", r.rebuilt());
}
