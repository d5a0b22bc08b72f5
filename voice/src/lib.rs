//! Voice: audio decoding and resampling (WAV and other common formats through symphonia, raw
//! 8 kHz telephone μ-law/A-law), voice-activity detection, whisper transcription (whisper-rs,
//! Traditional Chinese output) and streaming call sessions that turn live audio frames into
//! partial and final transcript events.
//!
//! This crate depends on no other crate of the workspace. The whisper model is a ggml file
//! (`models` converts the registry's CTranslate2 weights into one); any ggml whisper file works.

pub mod audio;
pub mod silero;
pub mod stream;
pub mod text;
pub mod vad;
pub mod whisper;

pub use audio::{decode_bytes, decode_file, Audio, AudioError, Encoding};
pub use stream::{CallSession, StreamConfig, StreamEvent};
pub use text::to_traditional;
pub use vad::{Vad, VadConfig};
pub use whisper::{Segment, Transcriber, Transcript, WhisperConfig, WhisperError};

/// The sample rate whisper takes, and every decoded `Audio` has.
pub const SAMPLE_RATE: u32 = 16_000;
