mod ingest;
mod answers;
mod ask;
