mod analytics;
mod answers;
mod ask;
mod eligibility;
mod extract;
mod fuzz;
mod ingest;
mod mydata;
mod server;
mod throttle;
mod voice;

/// The repository root (bundled corpus, forms, taxonomy, rules).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An extractor over the bundled forms and taxonomy, without models.
pub fn bundled_extractor() -> assistant::intake::extract::Extractor {
    let root = repo_root();
    assistant::intake::extract::Extractor::new(
        knowledge::load_forms(&root.join("corpus/forms")).unwrap(),
        std::sync::Arc::new(knowledge::Taxonomy::load(&root.join("corpus/cases")).unwrap()),
    )
}

/// What a scripted test model reports after a reply.
pub fn scripted_stats(
    prompt_tokens: usize,
    generated_tokens: usize,
) -> models::llm::GenerationStats {
    models::llm::GenerationStats {
        prompt_tokens,
        reused_prompt_tokens: 0,
        generated_tokens,
        prefill_ms: 1.0,
        first_token_ms: 1.0,
        generation_ms: 1.0,
        finish: models::llm::FinishReason::Stop,
    }
}
