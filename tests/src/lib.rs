//! End-to-end tests across crates (a spawned server, a real browser, the MyData sandbox, audio)
//! live here as the service, MyData and voice issues land. The knowledge-base flow is covered
//! end to end by `crates/assistant/tests/it` (the real binary with the real embedder).
