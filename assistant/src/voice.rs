//! Voice settings and the whisper transcriber the CLI, the server and `eval asr` share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use models::assets::{AssetCache, WHISPER};
use serde::Deserialize;
use voice::{Transcriber, WhisperConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceSettings {
    /// Transcription on (the `/api/calls/stream` endpoint and `assistant transcribe`).
    pub enabled: bool,
    /// A ggml whisper model to use instead of the installed asset (any whisper.cpp model file).
    pub model_path: Option<PathBuf>,
    /// Threads per transcription.
    pub threads: usize,
    /// Transcriptions that can run at once.
    pub workers: usize,
    pub language: String,
    /// The initial prompt (Traditional Chinese and hotline vocabulary steer the output).
    pub prompt: String,
    /// Beam width of whisper's decoder; 1 decodes greedily (see the issue notes for the
    /// measured difference).
    pub beam_size: usize,
    /// Longest audio file accepted, in seconds.
    pub max_file_secs: f64,
    /// Longest live call, in minutes (the stream is closed with a notice after it).
    pub max_call_minutes: u64,
    /// Calls streamed at once; more are refused with a clear error.
    pub max_calls: usize,
    /// An Asterisk AudioSocket listener (`127.0.0.1:9092`); off when empty.
    pub audiosocket_addr: Option<String>,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            enabled: true,
            model_path: None,
            threads: 2,
            workers: 1,
            language: "zh".into(),
            prompt: voice::whisper::DEFAULT_PROMPT.into(),
            beam_size: 1,
            max_file_secs: 600.0,
            max_call_minutes: 60,
            max_calls: 8,
            audiosocket_addr: None,
        }
    }
}

impl VoiceSettings {
    /// The model file: the configured one, else the verified asset in the cache (a missing or
    /// corrupt asset fails with a message naming `assistant setup`).
    pub fn model_file(&self, cache_root: &Path) -> anyhow::Result<PathBuf> {
        match &self.model_path {
            Some(p) => Ok(p.clone()),
            None => Ok(AssetCache::new(cache_root).require(&WHISPER)?.path),
        }
    }

    pub fn whisper_config(&self, model: PathBuf) -> WhisperConfig {
        let mut c = WhisperConfig::new(model);
        c.threads = self.threads.max(1);
        c.workers = self.workers.max(1);
        c.language = self.language.clone();
        c.prompt = self.prompt.clone();
        c.beam_size = self.beam_size.max(1);
        c
    }

    pub fn load(&self, cache_root: &Path) -> anyhow::Result<Arc<Transcriber>> {
        let model = self.model_file(cache_root)?;
        Ok(Arc::new(Transcriber::load(self.whisper_config(model))?))
    }
}
