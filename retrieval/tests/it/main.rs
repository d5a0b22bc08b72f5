mod cluster;
mod engine;
mod qdrant;
mod qdrant_node;
mod util;
