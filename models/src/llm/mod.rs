//! Text generation: a local GGUF decoder on candle (Qwen2 and Llama families through our own
//! decoder with a reusable KV cache, Gemma 3 through candle-transformers) and an
//! OpenAI-compatible remote backend, both behind [`ChatModel`].
//!
//! The caller never trusts what comes out of here: the answer pipeline in `assistant` checks
//! every generated statement against the passages it gave the model.

mod attend;
mod constrain;
mod decoder;
mod detok;
mod fast;
mod local;
mod remote;
mod template;

pub use constrain::{vocabulary_bytes, Grammar, JsonObjectGrammar, ValueSpec};
pub use decoder::{Arch, Decoder, DecoderEngine, DecoderOptions, KvCache, PrefillWeights};
pub use detok::TextStream;
pub use local::{load_tokenizer, LocalLlm, LocalLlmConfig, TokenStream};
pub use remote::{RemoteConfig, RemoteLlm};
pub use template::ChatTemplate;

use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationParams {
    pub max_tokens: usize,
    /// `0` means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling; ignored when greedy.
    pub top_p: Option<f64>,
    pub seed: u64,
    /// Penalty on tokens already generated (1.0 = none); small models loop without it.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Extra stop strings (the template's end-of-turn tokens always stop).
    pub stop: Vec<String>,
    /// Keep generating through end-of-turn tokens (benchmarks only).
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-turn token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The consumer asked to stop (e.g. the client disconnected).
    Cancelled,
}

/// Figures from one generation, for benchmarks and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries came from the prefix cache.
    pub reused_prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Time to process the prompt (not counting reused tokens).
    pub prefill_ms: f64,
    /// From the call to the first generated text piece.
    pub first_token_ms: f64,
    /// Time spent generating after the first token.
    pub generation_ms: f64,
    pub finish: FinishReason,
}

impl GenerationStats {
    /// Prompt tokens processed per second (excluding reused ones).
    pub fn prefill_tokens_per_s(&self) -> f64 {
        let n = (self.prompt_tokens - self.reused_prompt_tokens) as f64;
        if self.prefill_ms > 0.0 {
            n * 1000.0 / self.prefill_ms
        } else {
            0.0
        }
    }
    /// Generated tokens per second after the first one.
    pub fn generation_tokens_per_s(&self) -> f64 {
        if self.generated_tokens > 1 && self.generation_ms > 0.0 {
            (self.generated_tokens - 1) as f64 * 1000.0 / self.generation_ms
        } else {
            0.0
        }
    }
}

/// A chat model: local or remote. Implementations are shared between requests.
pub trait ChatModel: Send + Sync {
    /// Short description for logs and reports (`qwen2 local (…gguf)`, `remote http://…`).
    fn describe(&self) -> String;

    /// Generates the assistant's reply to `messages`, handing each new piece of text to
    /// `on_text` as soon as it is decoded. `on_text` returns `false` to cancel.
    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> crate::Result<GenerationStats>;

    /// Tokens `text` takes in this model's vocabulary (estimated for remote models).
    fn count_tokens(&self, text: &str) -> usize;

    /// Generates a reply whose bytes follow `grammar` (schema-constrained decoding); returns
    /// the text. Backends that cannot mask tokens return an error.
    fn chat_constrained(
        &self,
        _messages: &[ChatMessage],
        _params: &GenerationParams,
        _grammar: Box<dyn Grammar>,
    ) -> crate::Result<(String, GenerationStats)> {
        Err(crate::Error::Unsupported {
            what: "schema-constrained decoding",
            backend: self.describe(),
        })
    }

    /// Processes `system` so later requests starting with it skip that work. A no-op where
    /// the backend has no such cache.
    fn warm_prefix(&self, _system: &str) -> crate::Result<()> {
        Ok(())
    }
}
