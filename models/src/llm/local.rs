//! The local backend: a GGUF model and its `tokenizer.json`, run on candle's CPU kernels in a
//! thread pool of configurable size, with the KV cache of the last system prompt kept for reuse.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_gemma3;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::constrain::{vocabulary_bytes, Grammar};
use super::decoder::{Arch, Decoder, DecoderOptions, KvCache};
use super::detok::TextStream;
use super::template::ChatTemplate;
use super::{ChatMessage, ChatModel, FinishReason, GenerationParams, GenerationStats, Role};
use crate::error::{Error, Result};

/// What to load and how to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalLlmConfig {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    /// Overrides the template detected from the GGUF metadata.
    #[serde(default)]
    pub template: Option<ChatTemplate>,
    /// Threads for the matrix kernels; `0` = one per core. Under CPU contention fewer threads
    /// can be faster (idle workers spin).
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub decoder: DecoderOptions,
}

enum Engine {
    Decoder(Box<Decoder>),
    Gemma3(Box<quantized_gemma3::ModelWeights>),
}

/// Where a generation is: the attention state after the tokens processed so far.
#[derive(Clone)]
enum State {
    Kv(KvCache),
    Gemma(Box<quantized_gemma3::ModelWeights>, usize),
}

impl State {
    fn len(&self) -> usize {
        match self {
            State::Kv(c) => c.len(),
            State::Gemma(_, n) => *n,
        }
    }
}

/// A local GGUF chat model.
pub struct LocalLlm {
    engine: Engine,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    pool: rayon::ThreadPool,
    threads: usize,
    prefix: Mutex<Option<(Vec<u32>, State)>>,
    describe: String,
    /// Each token's bytes, built on the first constrained generation.
    vocab: OnceLock<Vec<Option<Vec<u8>>>>,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        reason: e.to_string(),
    }
}

impl LocalLlm {
    /// Loads the model and tokenizer. Errors name the file and what is wrong with it.
    pub fn load(config: &LocalLlmConfig) -> Result<LocalLlm> {
        let path = &config.model;
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let ct = gguf_file::Content::read(&mut reader).map_err(|e| Error::Format {
            path: path.clone(),
            format: "GGUF",
            reason: e.to_string(),
        })?;
        let arch_name = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let jinja = ct
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let eos = ct
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok());
        let template = config
            .template
            .unwrap_or_else(|| ChatTemplate::detect(jinja.as_deref(), &arch_name));
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("llm-{i}"))
            .build()
            .map_err(|e| Error::Format {
                path: path.clone(),
                format: "thread pool",
                reason: e.to_string(),
            })?;
        let bad = |reason: String| Error::Format {
            path: path.clone(),
            format: "GGUF",
            reason,
        };
        let engine = pool.install(|| -> Result<Engine> {
            if let Some(arch) = Arch::from_gguf_name(&arch_name) {
                Ok(Engine::Decoder(Box::new(
                    Decoder::load(&ct, &mut reader, arch, config.decoder.clone())
                        .map_err(|e| bad(e.to_string()))?,
                )))
            } else if arch_name.starts_with("gemma") {
                Ok(Engine::Gemma3(Box::new(
                    quantized_gemma3::ModelWeights::from_gguf(ct, &mut reader, &Device::Cpu)
                        .map_err(|e| bad(e.to_string()))?,
                )))
            } else {
                Err(bad(format!(
                    "architecture `{arch_name}` is not supported (qwen2, llama, mistral, gemma3 are)"
                )))
            }
        })?;
        let tokenizer = load_tokenizer(&config.tokenizer)?;
        let mut stop_ids: Vec<u32> = template
            .stop_tokens()
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        stop_ids.extend(eos);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        if stop_ids.is_empty() {
            return Err(Error::Tokenizer {
                reason: format!(
                    "{} knows none of the end-of-turn tokens {:?}",
                    config.tokenizer.display(),
                    template.stop_tokens()
                ),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(LocalLlm {
            engine,
            tokenizer,
            template,
            stop_ids,
            pool,
            threads,
            prefix: Mutex::new(None),
            describe: format!("{arch_name} local ({name}, {threads} threads)"),
            vocab: OnceLock::new(),
        })
    }

    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// Which code runs the model: `fast`, `candle` (the decoder's engines) or `gemma3`.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Decoder(d) => match d.engine() {
                super::decoder::DecoderEngine::Fast => "fast",
                super::decoder::DecoderEngine::Candle => "candle",
            },
            Engine::Gemma3(_) => "gemma3",
        }
    }

    /// Drops the cached system-prompt state (benchmarks measure a cold prompt with it).
    pub fn forget_prefix(&self) {
        *self.prefix.lock().expect("prefix lock") = None;
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text` (special-token strings such as `<|im_start|>` become their ids;
    /// nothing is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    fn step(&self, state: &mut State, tokens: &[u32]) -> Result<Tensor> {
        self.pool.install(|| match (&self.engine, state) {
            (Engine::Decoder(d), State::Kv(cache)) => d.forward(tokens, cache),
            (Engine::Gemma3(_), State::Gemma(model, pos)) => {
                let x = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
                let logits = model.forward(&x, *pos)?;
                *pos += tokens.len();
                Ok(logits.flatten_all()?)
            }
            _ => unreachable!("a state always matches its engine"),
        })
    }

    fn fresh_state(&self) -> State {
        match &self.engine {
            Engine::Decoder(_) => State::Kv(KvCache::default()),
            // The engine's copy never runs, so its cache is always empty.
            Engine::Gemma3(m) => State::Gemma(m.clone(), 0),
        }
    }

    /// The state after `prefix` tokens, and whether it came from the cache (otherwise it is
    /// computed now and kept for the next request).
    fn primed(&self, prefix: &[u32]) -> Result<(State, bool)> {
        if let Some((toks, st)) = self.prefix.lock().expect("prefix lock").as_ref() {
            if toks == prefix {
                return Ok((st.clone(), true));
            }
        }
        let mut st = self.fresh_state();
        self.step(&mut st, prefix)?;
        *self.prefix.lock().expect("prefix lock") = Some((prefix.to_vec(), st.clone()));
        Ok((st, false))
    }

    /// Like [`LocalLlm::stream`], with every token constrained by `grammar`; generation stops
    /// when the grammar is complete.
    pub fn stream_constrained(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        grammar: Box<dyn Grammar>,
    ) -> Result<TokenStream<'_>> {
        let mut stream = self.stream(messages, params)?;
        stream.grammar = Some(grammar);
        Ok(stream)
    }

    /// Starts generating the reply to `messages`: processes the prompt (reusing the cached
    /// system-prompt state when it matches) and returns the stream of text pieces.
    pub fn stream(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
    ) -> Result<TokenStream<'_>> {
        let started = Instant::now();
        let prompt = self.encode(&self.template.render(messages))?;
        let system = messages
            .iter()
            .find(|m| m.role == Role::System)
            .and_then(|m| self.template.system_prefix(&m.content));
        let mut reused = 0;
        let mut state = None;
        if let Some(prefix) = system {
            let ptoks = self.encode(&prefix)?;
            if ptoks.len() < prompt.len() && prompt.starts_with(&ptoks) {
                let (st, cached) = self.primed(&ptoks)?;
                if cached {
                    reused = st.len();
                }
                state = Some(st);
            }
        }
        let mut state = state.unwrap_or_else(|| self.fresh_state());
        let already = state.len();
        let prefill_start = Instant::now();
        let logits = self.step(&mut state, &prompt[already..])?;
        let prefill_ms = if reused > 0 {
            prefill_start.elapsed().as_secs_f64() * 1000.0
        } else {
            started.elapsed().as_secs_f64() * 1000.0
        };
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match params.top_p {
                Some(p) => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                None => Sampling::All {
                    temperature: params.temperature,
                },
            }
        };
        Ok(TokenStream {
            llm: self,
            state,
            logits: Some(logits),
            pending: None,
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            params: params.clone(),
            generated: Vec::new(),
            detok: TextStream::new(),
            text: String::new(),
            finish: None,
            started,
            first_piece: None,
            grammar: None,
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                reused_prompt_tokens: reused,
                generated_tokens: 0,
                prefill_ms,
                first_token_ms: 0.0,
                generation_ms: 0.0,
                finish: FinishReason::Stop,
            },
        })
    }
}

/// Loads a Hugging Face `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return Err(Error::io(
            "opening",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    Tokenizer::from_file(path).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        format: "tokenizer.json",
        reason: e.to_string(),
    })
}

/// Text pieces of a reply as they are generated. Dropping the stream stops generation.
pub struct TokenStream<'a> {
    llm: &'a LocalLlm,
    state: State,
    logits: Option<Tensor>,
    /// A sampled token not yet fed to the model (fed lazily, so a piece is released before
    /// the next forward pass).
    pending: Option<u32>,
    processor: LogitsProcessor,
    params: GenerationParams,
    generated: Vec<u32>,
    detok: TextStream,
    text: String,
    finish: Option<FinishReason>,
    started: Instant,
    first_piece: Option<Instant>,
    grammar: Option<Box<dyn Grammar>>,
    stats: GenerationStats,
}

impl TokenStream<'_> {
    /// Stops generating (the consumer went away).
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
        }
    }

    /// The text generated so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Token ids generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.generated
    }

    /// Figures so far (final once the stream has ended).
    pub fn stats(&self) -> GenerationStats {
        let mut s = self.stats.clone();
        s.generated_tokens = self.generated.len();
        s.finish = self.finish.unwrap_or(FinishReason::Length);
        if let Some(first) = self.first_piece {
            s.first_token_ms = (first - self.started).as_secs_f64() * 1000.0;
            s.generation_ms = first.elapsed().as_secs_f64() * 1000.0;
        }
        s
    }

    fn emit(&mut self, piece: String) -> Option<Result<String>> {
        if piece.is_empty() {
            return None;
        }
        let before = self.text.len();
        self.text.push_str(&piece);
        let cut = self
            .params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        let piece = match cut {
            Some(cut) => {
                // A stop string ends the reply; text before it that was already released
                // stays released, the rest is dropped.
                self.finish = Some(FinishReason::Stop);
                let p = self.text.get(before..cut).unwrap_or_default().to_string();
                self.text.truncate(cut);
                p
            }
            None => piece,
        };
        if self.first_piece.is_none() {
            self.first_piece = Some(Instant::now());
        }
        if piece.is_empty() {
            None
        } else {
            Some(Ok(piece))
        }
    }

    fn flush(&mut self) -> Option<Result<String>> {
        match self.detok.finish(&self.llm.tokenizer) {
            Ok(Some(p)) => self.emit(p),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn advance(&mut self) -> Result<Option<String>> {
        loop {
            if self.finish.is_some() {
                return Ok(None);
            }
            if let Some(t) = self.pending.take() {
                let logits = self.llm.step(&mut self.state, &[t])?;
                self.logits = Some(logits);
            }
            if self.generated.len() >= self.params.max_tokens {
                self.finish = Some(FinishReason::Length);
                return Ok(None);
            }
            let logits = self.logits.take().expect("logits after every step");
            let logits = if self.params.repeat_penalty != 1.0 && !self.generated.is_empty() {
                let start = self
                    .generated
                    .len()
                    .saturating_sub(self.params.repeat_last_n);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    self.params.repeat_penalty,
                    &self.generated[start..],
                )?
            } else {
                logits
            };
            let next = match self.grammar.as_mut() {
                None => self.processor.sample(&logits)?,
                Some(grammar) => {
                    if grammar.is_complete() {
                        self.finish = Some(FinishReason::Stop);
                        return Ok(None);
                    }
                    let vocab = self
                        .llm
                        .vocab
                        .get_or_init(|| vocabulary_bytes(&self.llm.tokenizer));
                    let mut values = logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
                    let mut any = false;
                    for (id, v) in values.iter_mut().enumerate() {
                        match vocab.get(id).and_then(|b| b.as_deref()) {
                            Some(bytes) if grammar.allows(bytes) => any = true,
                            _ => *v = f32::NEG_INFINITY,
                        }
                    }
                    if !any {
                        self.finish = Some(FinishReason::Stop);
                        return Ok(None);
                    }
                    let masked = Tensor::from_vec(values, logits.shape(), logits.device())?;
                    let next = self.processor.sample(&masked)?;
                    if let Some(bytes) = vocab.get(next as usize).and_then(|b| b.as_deref()) {
                        grammar.advance(bytes);
                    }
                    next
                }
            };
            if !self.params.ignore_eos && self.llm.stop_ids.contains(&next) {
                self.finish = Some(FinishReason::Stop);
                return Ok(None);
            }
            self.generated.push(next);
            self.pending = Some(next);
            if let Some(piece) = self.detok.push(&self.llm.tokenizer, next)? {
                return Ok(Some(piece));
            }
        }
    }
}

impl Iterator for TokenStream<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        loop {
            let was_running = self.finish.is_none();
            match self.advance() {
                Ok(Some(piece)) => {
                    if let Some(out) = self.emit(piece) {
                        return Some(out);
                    }
                    if self.finish.is_some() {
                        return None;
                    }
                }
                Ok(None) => {
                    // Release a held-back partial character once, when generation ends
                    // (not after a cancel or a stop string).
                    if was_running && self.finish != Some(FinishReason::Cancelled) {
                        return self.flush();
                    }
                    return None;
                }
                Err(e) => {
                    self.finish = Some(FinishReason::Cancelled);
                    return Some(Err(e));
                }
            }
        }
    }
}

impl ChatModel for LocalLlm {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let mut stream = self.stream(messages, params)?;
        while let Some(piece) = stream.next() {
            if !on_text(&piece?) {
                stream.cancel();
                break;
            }
        }
        Ok(stream.stats())
    }

    fn chat_constrained(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        grammar: Box<dyn Grammar>,
    ) -> Result<(String, GenerationStats)> {
        let mut stream = self.stream_constrained(messages, params, grammar)?;
        for piece in stream.by_ref() {
            piece?;
        }
        Ok((stream.text().to_string(), stream.stats()))
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.encode(text).map_or(text.chars().count(), |t| t.len())
    }

    fn warm_prefix(&self, system: &str) -> Result<()> {
        if let Some(prefix) = self.template.system_prefix(system) {
            let toks = self.encode(&prefix)?;
            if !toks.is_empty() {
                self.primed(&toks)?;
            }
        }
        Ok(())
    }
}
