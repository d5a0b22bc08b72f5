//! Chooses and loads the chat model: the local GGUF installed by `assistant setup` (or one a
//! city configures), a remote OpenAI-compatible server, or none (extractive answers only).

use std::path::PathBuf;
use std::sync::Arc;

use models::assets::{AssetCache, LLM, LLM_TOKENIZER, OPTIONAL_LLMS};
use models::llm::{
    ChatModel, ChatTemplate, DecoderEngine, DecoderOptions, LocalLlm, LocalLlmConfig,
    PrefillWeights, RemoteConfig, RemoteLlm,
};
use serde::Deserialize;

/// Which backend writes answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LlmBackend {
    #[default]
    Local,
    Remote,
    /// Extractive answers only.
    Off,
}

/// `[llm]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub backend: LlmBackend,
    /// Which installed model: `qwen2.5-coder-0.5b` (the default asset) or one of the optional
    /// ones `assistant setup --model NAME` installs (`qwen2.5-coder-1.5b`).
    pub asset: String,
    /// A GGUF to use instead of the installed asset (Qwen2, Llama/Mistral, Gemma 3 families).
    pub model: Option<PathBuf>,
    /// Its `tokenizer.json` (required with `model`).
    pub tokenizer: Option<PathBuf>,
    /// Overrides the chat template detected from the GGUF.
    pub template: Option<ChatTemplate>,
    /// Threads for generation; 0 = one per core.
    pub threads: usize,
    /// Which code runs a local model: `fast` (this project's integer kernels, default) or
    /// `candle` (the earlier path, where `requantize_q8` and `prefill` apply).
    pub engine: DecoderEngine,
    /// Re-quantise Q4/Q5 matrices to Q8_0 at load (faster kernels in candle).
    pub requantize_q8: bool,
    /// Weights used to process prompts.
    pub prefill: PrefillWeights,
    pub remote: Option<RemoteConfig>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            backend: LlmBackend::Local,
            asset: "qwen2.5-coder-0.5b".into(),
            model: None,
            tokenizer: None,
            template: None,
            threads: 0,
            engine: DecoderEngine::Fast,
            requantize_q8: true,
            prefill: PrefillWeights::F32,
            remote: None,
        }
    }
}

impl LlmSettings {
    /// The local model's configuration, with the installed assets verified when no paths are
    /// configured (a missing or corrupt file names `assistant setup`).
    pub fn local_config(&self, cache_root: &std::path::Path) -> anyhow::Result<LocalLlmConfig> {
        let (model, tokenizer) = match (&self.model, &self.tokenizer) {
            (Some(m), Some(t)) => (m.clone(), t.clone()),
            (Some(_), None) => {
                anyhow::bail!(
                    "llm.model is set but llm.tokenizer is not: give the model's tokenizer.json"
                )
            }
            _ => {
                let cache = AssetCache::new(cache_root);
                let spec = match OPTIONAL_LLMS.iter().find(|(n, _)| *n == self.asset) {
                    Some((_, spec)) => spec,
                    None if self.asset == "qwen2.5-coder-0.5b" => &LLM,
                    None => anyhow::bail!(
                        "llm.asset = {:?} is not a model setup installs (qwen2.5-coder-0.5b, {})",
                        self.asset,
                        OPTIONAL_LLMS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                (
                    cache.require(spec)?.path,
                    cache.require(&LLM_TOKENIZER)?.path,
                )
            }
        };
        Ok(LocalLlmConfig {
            model,
            tokenizer,
            template: self.template,
            threads: self.threads,
            decoder: DecoderOptions {
                engine: self.engine,
                requantize_q8: self.requantize_q8,
                prefill: self.prefill,
                ..DecoderOptions::default()
            },
        })
    }

    /// Loads the configured backend (`None` when it is off).
    pub fn load(&self, cache_root: &std::path::Path) -> anyhow::Result<Option<Arc<dyn ChatModel>>> {
        match self.backend {
            LlmBackend::Off => Ok(None),
            LlmBackend::Remote => {
                let Some(remote) = self.remote.clone() else {
                    anyhow::bail!("llm.backend = \"remote\" needs an [llm.remote] section with base_url and model");
                };
                Ok(Some(Arc::new(RemoteLlm::new(remote)?)))
            }
            LlmBackend::Local => {
                let config = self.local_config(cache_root)?;
                let llm = LocalLlm::load(&config)?;
                tracing::info!(model = %llm.describe(), "chat model loaded");
                Ok(Some(Arc::new(llm)))
            }
        }
    }
}
