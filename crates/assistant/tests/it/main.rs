mod answers;
mod ask;
mod eligibility;
mod extract;
mod fuzz;
mod ingest;
mod mydata;
