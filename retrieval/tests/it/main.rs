mod cluster;
mod engine;
mod qdrant;
mod util;
