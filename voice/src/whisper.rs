//! Speech recognition with whisper.cpp (through `whisper-rs`): Mandarin, a Traditional-Chinese
//! domain prompt, output converted to Traditional (Taiwan), segment timestamps.
//!
//! `Transcriber::transcribe` blocks (it is CPU work); async callers run it on a blocking thread.
//! A small pool of decoder states lets that many transcriptions run at once.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::text::{clean_segment, is_simplified, to_traditional};
use crate::SAMPLE_RATE;

/// The prompt that steers whisper to Traditional Chinese and the hotline's vocabulary.
pub const DEFAULT_PROMPT: &str = "以下是臺灣市民撥打1999市民熱線的通話內容。";

#[derive(Debug, Clone)]
pub struct WhisperConfig {
    /// A ggml whisper model file.
    pub model_path: PathBuf,
    pub language: String,
    pub prompt: String,
    /// Threads per transcription.
    pub threads: usize,
    /// Transcriptions that can run at once (decoder states kept in memory).
    pub workers: usize,
    /// Encode only as much of the 30 s window as the audio needs (plus `audio_ctx_margin`
    /// positions); much faster on short utterances.
    pub trim_audio_ctx: bool,
    pub audio_ctx_margin: usize,
    /// Beam width of the decoder; 1 decodes greedily.
    pub beam_size: usize,
}

impl WhisperConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        WhisperConfig {
            model_path: model_path.into(),
            language: "zh".into(),
            prompt: DEFAULT_PROMPT.into(),
            threads: 2,
            workers: 1,
            trim_audio_ctx: true,
            audio_ctx_margin: 256,
            beam_size: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    #[error(
        "the whisper model {path} is missing; run `assistant setup` (or set voice.model_path)"
    )]
    Missing { path: String },
    #[error("{path} is not a ggml whisper model ({reason}); run `assistant setup --force` or point voice.model_path at a ggml whisper file")]
    NotGgml { path: String, reason: String },
    #[error("whisper could not load {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("transcription failed: {0}")]
    Run(String),
}

/// One recognised stretch of speech, times relative to the audio's start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// A transcription: the segments (Traditional Chinese), their joined text, and whether
/// whisper's own output needed Simplified → Traditional conversion.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Transcript {
    pub segments: Vec<Segment>,
    pub text: String,
    pub converted: bool,
    /// whisper's probability that the audio holds no speech (of the first segment).
    pub no_speech_prob: f32,
}

pub struct Transcriber {
    config: WhisperConfig,
    ctx: WhisperContext,
    prompt_tokens: Vec<i32>,
    states: Mutex<Vec<WhisperState>>,
    available: Condvar,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("model", &self.config.model_path)
            .finish()
    }
}

/// Checks that a file looks like a ggml whisper model before handing it to C code.
fn check_model_file(path: &Path) -> Result<(), WhisperError> {
    use std::io::Read;
    let p = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|_| WhisperError::Missing { path: p.clone() })?;
    let mut head = [0u8; 48];
    f.read_exact(&mut head).map_err(|_| WhisperError::NotGgml {
        path: p.clone(),
        reason: "shorter than a header".into(),
    })?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if magic != 0x6767_6d6c {
        return Err(WhisperError::NotGgml {
            path: p,
            reason: format!("magic {magic:#010x}"),
        });
    }
    // whisper.cpp trusts the header's sizes; refuse implausible ones before it allocates.
    let field =
        |i: usize| i32::from_le_bytes(head[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes"));
    let (n_vocab, n_audio_layer, n_text_layer, n_mels) = (field(0), field(4), field(8), field(9));
    if !(51_000..=52_000).contains(&n_vocab)
        || !(1..=64).contains(&n_audio_layer)
        || !(1..=64).contains(&n_text_layer)
        || !(n_mels == 80 || n_mels == 128)
    {
        return Err(WhisperError::NotGgml {
            path: p,
            reason: format!(
                "implausible header: {n_vocab} tokens, {n_audio_layer}/{n_text_layer} layers, {n_mels} mels"
            ),
        });
    }
    Ok(())
}

/// Routes whisper.cpp's log lines into `tracing` (debug level) instead of stderr, once.
fn quiet_whisper_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

impl Transcriber {
    pub fn load(config: WhisperConfig) -> Result<Transcriber, WhisperError> {
        quiet_whisper_logs();
        check_model_file(&config.model_path)?;
        let path = config.model_path.display().to_string();
        let ctx = WhisperContext::new_with_params(
            &config.model_path,
            WhisperContextParameters::default(),
        )
        .map_err(|e| WhisperError::Load {
            path: path.clone(),
            reason: format!("{e} (the file may be truncated; run `assistant setup --force`)"),
        })?;
        let prompt_tokens = if config.prompt.is_empty() {
            Vec::new()
        } else {
            ctx.tokenize(&config.prompt, 224)
                .map_err(|e| WhisperError::Load {
                    path: path.clone(),
                    reason: format!("tokenizing the prompt: {e}"),
                })?
        };
        let mut states = Vec::new();
        for _ in 0..config.workers.max(1) {
            states.push(ctx.create_state().map_err(|e| WhisperError::Load {
                path: path.clone(),
                reason: format!("creating a decoder state: {e}"),
            })?);
        }
        Ok(Transcriber {
            config,
            ctx,
            prompt_tokens,
            states: Mutex::new(states),
            available: Condvar::new(),
        })
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// Transcribes 16 kHz mono audio. Blocks; waits for a free decoder state when all are busy.
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, WhisperError> {
        // whisper.cpp needs at least a second of input; pad short audio with silence.
        let min = SAMPLE_RATE as usize + SAMPLE_RATE as usize / 10;
        let padded;
        let audio: &[f32] = if samples.len() < min {
            let mut p = samples.to_vec();
            p.resize(min, 0.0);
            padded = p;
            &padded
        } else {
            samples
        };
        let mut state = {
            let mut pool = self.states.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                pool = self.available.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = self.run(&mut state, audio);
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
        self.available.notify_one();
        result
    }

    fn run(&self, state: &mut WhisperState, audio: &[f32]) -> Result<Transcript, WhisperError> {
        let secs = audio.len() as f64 / SAMPLE_RATE as f64;
        let strategy = if self.config.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.config.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.config.threads.max(1) as i32);
        params.set_language(Some(&self.config.language));
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_no_context(true);
        if !self.prompt_tokens.is_empty() {
            params.set_tokens(&self.prompt_tokens);
        }
        if self.config.trim_audio_ctx && secs < 29.0 {
            // 50 encoder positions a second of audio.
            let ctx = (secs * 50.0).ceil() as usize + self.config.audio_ctx_margin;
            params.set_audio_ctx(ctx.min(1500) as i32);
            // A cap on tokens against repetition loops on a shortened window.
            params.set_max_tokens((16.0 + secs * 12.0) as i32);
        }
        state
            .full(params, audio)
            .map_err(|e| WhisperError::Run(e.to_string()))?;
        let mut transcript = Transcript::default();
        let n = state.full_n_segments();
        for i in 0..n {
            let Some(seg) = state.get_segment(i) else {
                continue;
            };
            if i == 0 {
                transcript.no_speech_prob = seg.no_speech_probability();
            }
            let raw = seg
                .to_str_lossy()
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let Some(raw) = clean_segment(&raw, &self.config.prompt) else {
                continue;
            };
            let raw = raw.as_str();
            if is_simplified(raw) {
                transcript.converted = true;
            }
            let text = to_traditional(raw);
            // whisper's timestamps are in 10 ms units.
            let clamp = |t: i64| ((t.max(0) as u64) * 10).min((secs * 1000.0) as u64);
            transcript.segments.push(Segment {
                start_ms: clamp(seg.start_timestamp()),
                end_ms: clamp(seg.end_timestamp()),
                text,
            });
        }
        transcript.text = transcript
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("");
        Ok(transcript)
    }

    /// The model's token count, for diagnostics.
    pub fn n_vocab(&self) -> i32 {
        self.ctx.n_vocab()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_foreign_model_files_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            Transcriber::load(WhisperConfig::new(dir.path().join("nope.bin"))).unwrap_err();
        assert!(matches!(missing, WhisperError::Missing { .. }));
        assert!(missing.to_string().contains("assistant setup"));
        let gguf = dir.path().join("model.gguf");
        std::fs::write(&gguf, [b"GGUF".as_slice(), &[0u8; 60]].concat()).unwrap();
        let err = Transcriber::load(WhisperConfig::new(&gguf)).unwrap_err();
        assert!(matches!(err, WhisperError::NotGgml { .. }), "{err}");
        assert!(err.to_string().contains("setup --force"));
        // A ggml magic with a nonsense header is refused before whisper.cpp reads it.
        let bad = dir.path().join("bad.bin");
        let bytes: Vec<u8> = [0x6c, 0x6d, 0x67, 0x67]
            .into_iter()
            .chain([1u8; 60])
            .collect();
        std::fs::write(&bad, bytes).unwrap();
        let err = Transcriber::load(WhisperConfig::new(&bad)).unwrap_err();
        assert!(err.to_string().contains("implausible header"), "{err}");
    }
}
