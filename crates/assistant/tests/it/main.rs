mod answers;
mod ask;
mod extract;
mod fuzz;
mod ingest;
