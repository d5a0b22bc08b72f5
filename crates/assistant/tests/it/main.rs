mod answers;
mod ask;
mod eligibility;
mod extract;
mod fuzz;
mod ingest;
mod mydata;
mod server;

/// The repository root (bundled corpus, forms, taxonomy, rules).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An extractor over the bundled forms and taxonomy, without models.
pub fn bundled_extractor() -> assistant::extract::Extractor {
    let root = repo_root();
    assistant::extract::Extractor::new(
        knowledge::load_forms(&root.join("corpus/forms")).unwrap(),
        std::sync::Arc::new(knowledge::Taxonomy::load(&root.join("corpus/cases")).unwrap()),
    )
}
