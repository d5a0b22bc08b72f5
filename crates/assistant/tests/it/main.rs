mod answers;
mod ask;
mod ingest;
