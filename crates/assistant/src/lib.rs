//! The product: for now the knowledge-base side of the 1999 assistant — configuration, model
//! setup and health checks, ingestion of service guides, and hybrid search — used by the
//! `assistant` binary and by `eval`. Later issues add answers, extraction, MyData and the server.

pub mod config;
pub mod embedding;
pub mod grounding;
pub mod kb;
pub mod telemetry;
pub mod walkthrough;
