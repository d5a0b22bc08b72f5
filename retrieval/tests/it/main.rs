mod engine;
mod qdrant;
mod qdrant_server;
mod util;
