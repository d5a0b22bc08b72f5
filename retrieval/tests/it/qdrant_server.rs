//! A stand-in Qdrant server for the tests: the gRPC services `qdrant-client` 1.20 generates
//! (`Qdrant`, `Collections`, `Points`), served by tonic on a loopback port over in-memory state.
//!
//! It checks our use of Qdrant's wire protocol (the messages we send, filters, point ids), not
//! Qdrant itself. Only what `retrieval::qdrant::QdrantStore` uses is implemented, following
//! Qdrant's documented semantics: health check; collection create (one unnamed cosine vector),
//! exists and delete; upsert, delete by id list or filter, nearest-neighbour query over dense
//! vectors, and count. Filters support `must`, `should` and `must_not` over field matches:
//! `keyword` (exact, or any element of a list), `keywords` (any of) and `text`, which without a
//! full-text index Qdrant answers as "every whitespace-separated term is a substring". Anything
//! else is refused with `UNIMPLEMENTED` (or `INVALID_ARGUMENT`) so a test can never pass on a
//! request the stand-in silently misread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use qdrant_client::qdrant::{self as q, condition::ConditionOneOf, point_id::PointIdOptions};
use qdrant_client::qdrant::{
    points_selector::PointsSelectorOneOf, r#match::MatchValue, value::Kind,
};
use tonic::{Request, Response, Status};

type Rpc<T> = Result<Response<T>, Status>;
type Payload = HashMap<String, q::Value>;

struct Collection {
    dim: usize,
    points: HashMap<PointIdOptions, (Vec<f32>, Payload)>,
}

/// The server's state: collections by name.
#[derive(Clone, Default)]
struct Stand {
    collections: Arc<Mutex<HashMap<String, Collection>>>,
}

/// Starts the stand-in on `127.0.0.1:0` and returns its url (`http://127.0.0.1:PORT`).
pub async fn spawn() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let stand = Stand::default();
    let router = tonic::transport::Server::builder()
        .add_service(QdrantServer::new(stand.clone()))
        .add_service(CollectionsServer::new(stand.clone()))
        .add_service(PointsServer::new(stand));
    tokio::spawn(async move {
        router
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("stand-in qdrant server");
    });
    format!("http://{addr}")
}

fn unimplemented<T>(rpc: &str) -> Rpc<T> {
    Err(Status::unimplemented(format!(
        "{rpc} is not implemented by the stand-in"
    )))
}

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("the stand-in does not support {what}"))
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("Not found: Collection `{name}` doesn't exist!"))
}

fn dim_error(expected: usize, got: usize) -> Status {
    Status::invalid_argument(format!(
        "Wrong input: Vector dimension error: expected dim: {expected}, got {got}"
    ))
}

fn done<T>(message: T) -> Rpc<T> {
    Ok(Response::new(message))
}

fn updated() -> Rpc<q::PointsOperationResponse> {
    done(q::PointsOperationResponse {
        result: Some(q::UpdateResult {
            operation_id: Some(0),
            status: q::UpdateStatus::Completed as i32,
        }),
        time: 0.0,
        usage: None,
    })
}

fn id_of(id: Option<q::PointId>) -> Result<PointIdOptions, Status> {
    id.and_then(|i| i.point_id_options)
        .ok_or_else(|| Status::invalid_argument("a point without an id"))
}

/// The dense vector of an upserted point: `Vector.vector = Dense` since 1.16, the deprecated
/// `Vector.data` before.
#[allow(deprecated)]
fn dense_of(vectors: Option<q::Vectors>) -> Result<Vec<f32>, Status> {
    use q::vectors::VectorsOptions;
    match vectors.and_then(|v| v.vectors_options) {
        Some(VectorsOptions::Vector(v)) => match v.vector {
            Some(q::vector::Vector::Dense(d)) => Ok(d.data),
            Some(_) => Err(unsupported("vectors other than dense")),
            None if v.indices.is_none() && !v.data.is_empty() => Ok(v.data),
            None => Err(Status::invalid_argument("a point without a dense vector")),
        },
        Some(VectorsOptions::Vectors(_)) => Err(unsupported("named vectors")),
        None => Err(Status::invalid_argument("a point without vectors")),
    }
}

/// The payload values a match is compared with: a string, or the strings of a list.
fn strings(v: Option<&q::Value>) -> Vec<&str> {
    match v.and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => vec![s.as_str()],
        Some(Kind::ListValue(l)) => l
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn condition_holds(c: &q::Condition, payload: &Payload) -> Result<bool, Status> {
    match &c.condition_one_of {
        Some(ConditionOneOf::Field(f)) => {
            let value = match f.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
                Some(m) => m,
                None => return Err(unsupported("field conditions other than match")),
            };
            let values = strings(payload.get(&f.key));
            Ok(match value {
                MatchValue::Keyword(k) => values.contains(&k.as_str()),
                MatchValue::Keywords(ks) => ks.strings.iter().any(|k| values.contains(&k.as_str())),
                MatchValue::Text(t) => values
                    .iter()
                    .any(|v| t.split_whitespace().all(|term| v.contains(term))),
                _ => return Err(unsupported("this match kind")),
            })
        }
        Some(ConditionOneOf::Filter(f)) => filter_holds(Some(f), payload),
        Some(_) => Err(unsupported("conditions other than field matches")),
        None => Err(Status::invalid_argument("an empty condition")),
    }
}

/// Qdrant's filter semantics: every `must`, at least one `should` (when any), no `must_not`.
fn filter_holds(filter: Option<&q::Filter>, payload: &Payload) -> Result<bool, Status> {
    let Some(f) = filter else {
        return Ok(true);
    };
    if f.min_should.is_some() {
        return Err(unsupported("min_should"));
    }
    for c in &f.must {
        if !condition_holds(c, payload)? {
            return Ok(false);
        }
    }
    for c in &f.must_not {
        if condition_holds(c, payload)? {
            return Ok(false);
        }
    }
    if f.should.is_empty() {
        return Ok(true);
    }
    for c in &f.should {
        if condition_holds(c, payload)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 {
        0.0
    } else {
        dot / n
    }
}

fn id_order(id: &PointIdOptions) -> (u64, &str) {
    match id {
        PointIdOptions::Num(n) => (*n, ""),
        PointIdOptions::Uuid(u) => (u64::MAX, u.as_str()),
    }
}

impl Stand {
    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Collection) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut all = self.collections.lock().expect("stand-in state");
        f(all.get_mut(name).ok_or_else(|| not_found(name))?)
    }
}

#[tonic::async_trait]
impl Qdrant for Stand {
    async fn health_check(&self, _: Request<q::HealthCheckRequest>) -> Rpc<q::HealthCheckReply> {
        done(q::HealthCheckReply {
            title: "qdrant stand-in".into(),
            version: "1.20.0".into(),
            commit: None,
        })
    }
}

#[tonic::async_trait]
impl Collections for Stand {
    async fn create(
        &self,
        req: Request<q::CreateCollection>,
    ) -> Rpc<q::CollectionOperationResponse> {
        let req = req.into_inner();
        let params = match req.vectors_config.and_then(|c| c.config) {
            Some(q::vectors_config::Config::Params(p)) => p,
            Some(_) => return Err(unsupported("named vectors")),
            None => {
                return Err(Status::invalid_argument(
                    "a collection without vectors_config",
                ))
            }
        };
        if params.distance != q::Distance::Cosine as i32 {
            return Err(unsupported("distances other than cosine"));
        }
        if params.size == 0 {
            return Err(Status::invalid_argument("vector size must be positive"));
        }
        let mut all = self.collections.lock().expect("stand-in state");
        if all.contains_key(&req.collection_name) {
            return Err(Status::already_exists(format!(
                "Wrong input: Collection `{}` already exists!",
                req.collection_name
            )));
        }
        all.insert(
            req.collection_name,
            Collection {
                dim: params.size as usize,
                points: HashMap::new(),
            },
        );
        done(q::CollectionOperationResponse {
            result: true,
            time: 0.0,
        })
    }

    async fn delete(
        &self,
        req: Request<q::DeleteCollection>,
    ) -> Rpc<q::CollectionOperationResponse> {
        let name = req.into_inner().collection_name;
        let removed = self
            .collections
            .lock()
            .expect("stand-in state")
            .remove(&name)
            .is_some();
        done(q::CollectionOperationResponse {
            result: removed,
            time: 0.0,
        })
    }

    async fn collection_exists(
        &self,
        req: Request<q::CollectionExistsRequest>,
    ) -> Rpc<q::CollectionExistsResponse> {
        let name = req.into_inner().collection_name;
        let exists = self
            .collections
            .lock()
            .expect("stand-in state")
            .contains_key(&name);
        done(q::CollectionExistsResponse {
            result: Some(q::CollectionExists { exists }),
            time: 0.0,
        })
    }

    async fn get(
        &self,
        _: Request<q::GetCollectionInfoRequest>,
    ) -> Rpc<q::GetCollectionInfoResponse> {
        unimplemented("Collections/Get")
    }

    async fn list(&self, _: Request<q::ListCollectionsRequest>) -> Rpc<q::ListCollectionsResponse> {
        unimplemented("Collections/List")
    }

    async fn update(&self, _: Request<q::UpdateCollection>) -> Rpc<q::CollectionOperationResponse> {
        unimplemented("Collections/Update")
    }

    async fn update_aliases(
        &self,
        _: Request<q::ChangeAliases>,
    ) -> Rpc<q::CollectionOperationResponse> {
        unimplemented("Collections/UpdateAliases")
    }

    async fn list_collection_aliases(
        &self,
        _: Request<q::ListCollectionAliasesRequest>,
    ) -> Rpc<q::ListAliasesResponse> {
        unimplemented("Collections/ListCollectionAliases")
    }

    async fn list_aliases(&self, _: Request<q::ListAliasesRequest>) -> Rpc<q::ListAliasesResponse> {
        unimplemented("Collections/ListAliases")
    }

    async fn collection_cluster_info(
        &self,
        _: Request<q::CollectionClusterInfoRequest>,
    ) -> Rpc<q::CollectionClusterInfoResponse> {
        unimplemented("Collections/CollectionClusterInfo")
    }

    async fn update_collection_cluster_setup(
        &self,
        _: Request<q::UpdateCollectionClusterSetupRequest>,
    ) -> Rpc<q::UpdateCollectionClusterSetupResponse> {
        unimplemented("Collections/UpdateCollectionClusterSetup")
    }

    async fn create_shard_key(
        &self,
        _: Request<q::CreateShardKeyRequest>,
    ) -> Rpc<q::CreateShardKeyResponse> {
        unimplemented("Collections/CreateShardKey")
    }

    async fn delete_shard_key(
        &self,
        _: Request<q::DeleteShardKeyRequest>,
    ) -> Rpc<q::DeleteShardKeyResponse> {
        unimplemented("Collections/DeleteShardKey")
    }

    async fn list_shard_keys(
        &self,
        _: Request<q::ListShardKeysRequest>,
    ) -> Rpc<q::ListShardKeysResponse> {
        unimplemented("Collections/ListShardKeys")
    }
}

#[tonic::async_trait]
impl Points for Stand {
    async fn upsert(&self, req: Request<q::UpsertPoints>) -> Rpc<q::PointsOperationResponse> {
        let req = req.into_inner();
        if req.update_filter.is_some() {
            return Err(unsupported("conditional upserts"));
        }
        self.with(&req.collection_name, |c| {
            // Validate the whole batch before applying any of it, as Qdrant does.
            let mut batch = Vec::with_capacity(req.points.len());
            for p in req.points {
                let id = id_of(p.id)?;
                let vector = dense_of(p.vectors)?;
                if vector.len() != c.dim {
                    return Err(dim_error(c.dim, vector.len()));
                }
                batch.push((id, (vector, p.payload)));
            }
            c.points.extend(batch);
            Ok(())
        })?;
        updated()
    }

    async fn delete(&self, req: Request<q::DeletePoints>) -> Rpc<q::PointsOperationResponse> {
        let req = req.into_inner();
        let selector = req
            .points
            .and_then(|s| s.points_selector_one_of)
            .ok_or_else(|| Status::invalid_argument("a delete without a points selector"))?;
        self.with(&req.collection_name, |c| {
            match selector {
                PointsSelectorOneOf::Points(list) => {
                    for id in list.ids {
                        c.points.remove(&id_of(Some(id))?);
                    }
                }
                PointsSelectorOneOf::Filter(f) => {
                    let mut doomed = Vec::new();
                    for (id, (_, payload)) in &c.points {
                        if filter_holds(Some(&f), payload)? {
                            doomed.push(id.clone());
                        }
                    }
                    for id in doomed {
                        c.points.remove(&id);
                    }
                }
            }
            Ok(())
        })?;
        updated()
    }

    async fn count(&self, req: Request<q::CountPoints>) -> Rpc<q::CountResponse> {
        let req = req.into_inner();
        let count = self.with(&req.collection_name, |c| {
            let mut n = 0u64;
            for (_, payload) in c.points.values() {
                if filter_holds(req.filter.as_ref(), payload)? {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        done(q::CountResponse {
            result: Some(q::CountResult { count }),
            time: 0.0,
            usage: None,
        })
    }

    async fn query(&self, req: Request<q::QueryPoints>) -> Rpc<q::QueryResponse> {
        use q::{query::Variant as QueryVariant, vector_input::Variant as InputVariant};
        let req = req.into_inner();
        if !req.prefetch.is_empty() || req.using.is_some() || req.lookup_from.is_some() {
            return Err(unsupported("prefetch, named vectors or lookup_from"));
        }
        if req.offset.is_some() || req.score_threshold.is_some() {
            return Err(unsupported("offset or score_threshold"));
        }
        let query = match req.query.and_then(|q| q.variant) {
            Some(QueryVariant::Nearest(input)) => match input.variant {
                Some(InputVariant::Dense(d)) => d.data,
                _ => return Err(unsupported("nearest queries other than a dense vector")),
            },
            _ => return Err(unsupported("queries other than nearest")),
        };
        let with_payload = match req.with_payload.and_then(|w| w.selector_options) {
            None => false,
            Some(q::with_payload_selector::SelectorOptions::Enable(on)) => on,
            Some(_) => return Err(unsupported("payload include/exclude selectors")),
        };
        let limit = req.limit.unwrap_or(10) as usize;
        let result = self.with(&req.collection_name, |c| {
            if query.len() != c.dim {
                return Err(dim_error(c.dim, query.len()));
            }
            let mut scored = Vec::new();
            for (id, (vector, payload)) in &c.points {
                if filter_holds(req.filter.as_ref(), payload)? {
                    scored.push((cosine(&query, vector), id, payload));
                }
            }
            scored.sort_by(|a, b| {
                b.0.total_cmp(&a.0)
                    .then_with(|| id_order(a.1).cmp(&id_order(b.1)))
            });
            Ok(scored
                .into_iter()
                .take(limit)
                .map(|(score, id, payload)| q::ScoredPoint {
                    id: Some(q::PointId {
                        point_id_options: Some(id.clone()),
                    }),
                    payload: if with_payload {
                        payload.clone()
                    } else {
                        HashMap::new()
                    },
                    score,
                    ..Default::default()
                })
                .collect())
        })?;
        done(q::QueryResponse {
            result,
            time: 0.0,
            usage: None,
        })
    }

    async fn get(&self, _: Request<q::GetPoints>) -> Rpc<q::GetResponse> {
        unimplemented("Points/Get")
    }

    async fn update_vectors(
        &self,
        _: Request<q::UpdatePointVectors>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/UpdateVectors")
    }

    async fn delete_vectors(
        &self,
        _: Request<q::DeletePointVectors>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/DeleteVectors")
    }

    async fn set_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/SetPayload")
    }

    async fn overwrite_payload(
        &self,
        _: Request<q::SetPayloadPoints>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/OverwritePayload")
    }

    async fn delete_payload(
        &self,
        _: Request<q::DeletePayloadPoints>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/DeletePayload")
    }

    async fn clear_payload(
        &self,
        _: Request<q::ClearPayloadPoints>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/ClearPayload")
    }

    async fn create_field_index(
        &self,
        _: Request<q::CreateFieldIndexCollection>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/CreateFieldIndex")
    }

    async fn delete_field_index(
        &self,
        _: Request<q::DeleteFieldIndexCollection>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/DeleteFieldIndex")
    }

    async fn create_vector_name(
        &self,
        _: Request<q::CreateVectorNameRequest>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/CreateVectorName")
    }

    async fn delete_vector_name(
        &self,
        _: Request<q::DeleteVectorNameRequest>,
    ) -> Rpc<q::PointsOperationResponse> {
        unimplemented("Points/DeleteVectorName")
    }

    async fn search(&self, _: Request<q::SearchPoints>) -> Rpc<q::SearchResponse> {
        unimplemented("Points/Search")
    }

    async fn search_batch(&self, _: Request<q::SearchBatchPoints>) -> Rpc<q::SearchBatchResponse> {
        unimplemented("Points/SearchBatch")
    }

    async fn search_groups(
        &self,
        _: Request<q::SearchPointGroups>,
    ) -> Rpc<q::SearchGroupsResponse> {
        unimplemented("Points/SearchGroups")
    }

    async fn scroll(&self, _: Request<q::ScrollPoints>) -> Rpc<q::ScrollResponse> {
        unimplemented("Points/Scroll")
    }

    async fn recommend(&self, _: Request<q::RecommendPoints>) -> Rpc<q::RecommendResponse> {
        unimplemented("Points/Recommend")
    }

    async fn recommend_batch(
        &self,
        _: Request<q::RecommendBatchPoints>,
    ) -> Rpc<q::RecommendBatchResponse> {
        unimplemented("Points/RecommendBatch")
    }

    async fn recommend_groups(
        &self,
        _: Request<q::RecommendPointGroups>,
    ) -> Rpc<q::RecommendGroupsResponse> {
        unimplemented("Points/RecommendGroups")
    }

    async fn discover(&self, _: Request<q::DiscoverPoints>) -> Rpc<q::DiscoverResponse> {
        unimplemented("Points/Discover")
    }

    async fn discover_batch(
        &self,
        _: Request<q::DiscoverBatchPoints>,
    ) -> Rpc<q::DiscoverBatchResponse> {
        unimplemented("Points/DiscoverBatch")
    }

    async fn update_batch(&self, _: Request<q::UpdateBatchPoints>) -> Rpc<q::UpdateBatchResponse> {
        unimplemented("Points/UpdateBatch")
    }

    async fn query_batch(&self, _: Request<q::QueryBatchPoints>) -> Rpc<q::QueryBatchResponse> {
        unimplemented("Points/QueryBatch")
    }

    async fn query_groups(&self, _: Request<q::QueryPointGroups>) -> Rpc<q::QueryGroupsResponse> {
        unimplemented("Points/QueryGroups")
    }

    async fn facet(&self, _: Request<q::FacetCounts>) -> Rpc<q::FacetResponse> {
        unimplemented("Points/Facet")
    }

    async fn search_matrix_pairs(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Rpc<q::SearchMatrixPairsResponse> {
        unimplemented("Points/SearchMatrixPairs")
    }

    async fn search_matrix_offsets(
        &self,
        _: Request<q::SearchMatrixPoints>,
    ) -> Rpc<q::SearchMatrixOffsetsResponse> {
        unimplemented("Points/SearchMatrixOffsets")
    }
}
