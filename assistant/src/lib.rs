//! The product: the 1999 assistant, wired from configuration in one place ([`app`]).
//!
//! - [`answer`]: answering residents and agents from the guides (composer, grounding, chat,
//!   guided walk-throughs).
//! - [`intake`]: 1999 case intake (form extraction with spans, case category, bureau routing,
//!   cases and their status).
//! - [`mydata`]: consented MyData pre-fill; [`eligibility`]: benefit suggestions and review.
//! - [`store`]: the database and every SQL statement; [`http`]: the server (thin handlers) and
//!   its pages; [`cli`]: the command line.
//! - [`kb`], [`embedding`], [`llm`], [`voice`]: the knowledge base and the models plugged in.
//!
//! Dependencies run downward: `http` and `cli` call the domain modules and `store`; the
//! domain modules never import `http`, `cli` or [`app`], and each library section takes its own
//! settings, never the whole [`config::Settings`].

pub mod analytics;
pub mod answer;
pub mod app;
pub mod cli;
pub mod config;
pub mod eligibility;
pub mod embedding;
pub mod http;
pub mod intake;
pub mod kb;
pub mod llm;
pub mod mydata;
pub mod store;
pub mod telemetry;
pub mod voice;
