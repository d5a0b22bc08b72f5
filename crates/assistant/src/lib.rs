//! The product: the 1999 assistant's knowledge base (configuration, model setup and health
//! checks, ingestion of service guides, hybrid search) and its grounded answers (extractive
//! composer, LLM rewrite under a grounding check, hand-off, multi-turn chat and guided
//! walk-throughs), used by the `assistant` binary and by `eval`.

pub mod answer;
pub mod chat;
pub mod config;
pub mod eligibility;
pub mod embedding;
pub mod extract;
pub mod grounding;
pub mod kb;
pub mod llm;
pub mod mydata;
pub mod route;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod voice;
pub mod walkthrough;
