//! The evaluation harness: gold sets, metrics and reports, driving `assistant` as a library.
//! Suites follow `EVAL.md`: a human-readable table, then one JSON object as the last line.

pub mod correctness;
pub mod metrics;
pub mod queries;
pub mod report;
