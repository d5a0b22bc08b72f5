//! A live call: audio frames in, transcript events out.
//!
//! Frames are decoded (16-bit PCM or G.711 at any rate), resampled to 16 kHz, cut into 30 ms VAD
//! frames and collected into utterances. While someone speaks, the utterance so far is
//! transcribed every `partial_every_ms` (a `Partial` event the agent sees grow); when they pause
//! (or an utterance reaches `max_utterance_ms`) it is transcribed once more and becomes `Final`.
//! `finish` flushes an utterance cut off by a hang-up or a dropped connection, so nothing said
//! is lost.
//!
//! `CallSession` is synchronous: the server runs it on a blocking thread and feeds it whatever
//! audio arrived meanwhile, so a slow machine skips partials instead of falling behind.

use std::sync::Arc;

use crate::audio::{resample, Encoding};
use crate::vad::{level_db, Vad, VadConfig, VadEvent, FRAME};
use crate::whisper::{Transcriber, WhisperError};
use crate::SAMPLE_RATE;

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub encoding: Encoding,
    pub sample_rate: u32,
    pub vad: VadConfig,
    /// Audio kept from before the detected start of speech (soft onsets).
    pub pre_roll_ms: u64,
    pub partial_every_ms: u64,
    pub max_utterance_ms: u64,
    /// A `Notice` after this much audio without speech.
    pub silence_notice_ms: u64,
    /// Finals whose whisper no-speech probability is above this and that are short are
    /// treated as noise, not speech.
    pub no_speech_threshold: f32,
}

impl StreamConfig {
    pub fn new(encoding: Encoding, sample_rate: u32) -> StreamConfig {
        StreamConfig {
            encoding,
            sample_rate,
            vad: VadConfig::default(),
            pre_roll_ms: 300,
            partial_every_ms: 1500,
            max_utterance_ms: 20_000,
            silence_notice_ms: 10_000,
            no_speech_threshold: 0.6,
        }
    }
}

/// What a call session reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The utterance being spoken, so far (replaced by later partials and by its final).
    Partial {
        utterance: usize,
        start_ms: u64,
        text: String,
    },
    /// A finished utterance.
    Final {
        utterance: usize,
        start_ms: u64,
        end_ms: u64,
        text: String,
    },
    /// Something the agent should know that is not an error (long silence, clipping, noise).
    Notice { code: String, message: String },
}

pub struct CallSession {
    transcriber: Arc<Transcriber>,
    config: StreamConfig,
    vad: Vad,
    /// Undecoded bytes left over from the last frame (half a sample).
    carry: Vec<u8>,
    /// Decoded audio at the source rate waiting to be resampled.
    source: Vec<f32>,
    /// 16 kHz samples not yet given to the VAD (less than a frame).
    pending: Vec<f32>,
    /// Recent 16 kHz audio kept for the pre-roll.
    history: std::collections::VecDeque<f32>,
    /// The utterance in progress.
    utterance: Vec<f32>,
    utterance_start: u64,
    last_partial_len: usize,
    /// Samples of 16 kHz audio consumed so far.
    position: u64,
    silent_since: u64,
    silence_noticed: bool,
    clipped_frames: usize,
    clipping_noticed: bool,
    finals: usize,
    /// The finals so far, joined (the call's transcript).
    transcript: String,
}

impl CallSession {
    pub fn new(transcriber: Arc<Transcriber>, config: StreamConfig) -> CallSession {
        CallSession {
            transcriber,
            vad: Vad::new(config.vad.clone()),
            config,
            carry: Vec::new(),
            source: Vec::new(),
            pending: Vec::new(),
            history: std::collections::VecDeque::new(),
            utterance: Vec::new(),
            utterance_start: 0,
            last_partial_len: 0,
            position: 0,
            silent_since: 0,
            silence_noticed: false,
            clipped_frames: 0,
            clipping_noticed: false,
            finals: 0,
            transcript: String::new(),
        }
    }

    /// The call's transcript so far (finished utterances).
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Milliseconds of audio received.
    pub fn position_ms(&self) -> u64 {
        self.position * 1000 / SAMPLE_RATE as u64
    }

    fn ms(samples: u64) -> u64 {
        samples * 1000 / SAMPLE_RATE as u64
    }

    /// Feeds raw bytes in the session's encoding. `partials` allows a partial transcription in
    /// this call (the server passes false while more audio is already queued).
    pub fn push_bytes(
        &mut self,
        bytes: &[u8],
        partials: bool,
    ) -> Result<Vec<StreamEvent>, WhisperError> {
        let bps = self.config.encoding.bytes_per_sample();
        self.carry.extend_from_slice(bytes);
        let whole = self.carry.len() / bps * bps;
        let mut decoded = Vec::with_capacity(whole / bps);
        self.config
            .encoding
            .decode(&self.carry[..whole], &mut decoded);
        self.carry.drain(..whole);
        self.push_samples(&decoded, partials)
    }

    /// Feeds decoded samples at the session's source rate.
    pub fn push_samples(
        &mut self,
        samples: &[f32],
        partials: bool,
    ) -> Result<Vec<StreamEvent>, WhisperError> {
        let rate = self.config.sample_rate;
        if rate == SAMPLE_RATE {
            self.pending.extend_from_slice(samples);
        } else {
            // Resample in blocks of whole 10 ms so block edges stay aligned; the sinc filter's
            // edge effect at block boundaries is below the line noise of telephone audio.
            self.source.extend_from_slice(samples);
            let block = (rate / 100) as usize;
            let take = self.source.len() / block * block;
            if take > 0 {
                let out = resample(&self.source[..take], rate, SAMPLE_RATE);
                self.pending.extend(out);
                self.source.drain(..take);
            }
        }
        let mut events = Vec::new();
        let frames = self.pending.len() / FRAME;
        let pending = std::mem::take(&mut self.pending);
        for f in pending.chunks_exact(FRAME).take(frames) {
            self.frame(f, &mut events)?;
        }
        self.pending = pending[frames * FRAME..].to_vec();
        if partials && self.vad.in_speech() {
            let step = (self.config.partial_every_ms * SAMPLE_RATE as u64 / 1000) as usize;
            if self.utterance.len() >= self.last_partial_len + step {
                self.last_partial_len = self.utterance.len();
                let t = self.transcriber.transcribe(&self.utterance)?;
                if !t.text.is_empty() {
                    events.push(StreamEvent::Partial {
                        utterance: self.finals,
                        start_ms: Self::ms(self.utterance_start),
                        text: t.text,
                    });
                }
            }
        }
        Ok(events)
    }

    fn frame(&mut self, f: &[f32], events: &mut Vec<StreamEvent>) -> Result<(), WhisperError> {
        let start_of_frame = self.position;
        self.position += f.len() as u64;
        if f.iter().filter(|s| s.abs() >= 0.99).count() > f.len() / 20 {
            self.clipped_frames += 1;
            if self.clipped_frames >= 10 && !self.clipping_noticed {
                self.clipping_noticed = true;
                events.push(StreamEvent::Notice {
                    code: "clipping".into(),
                    message: "來電音量過大、聲音失真，辨識可能不準確。".into(),
                });
            }
        }
        let event = self.vad.push(f);
        if self.vad.in_speech() || matches!(event, VadEvent::End { .. }) {
            self.utterance.extend_from_slice(f);
        }
        match event {
            VadEvent::Start { frames_back } => {
                // The opening frames and the pre-roll before them come from the history.
                let keep = frames_back * FRAME
                    + (self.config.pre_roll_ms * SAMPLE_RATE as u64 / 1000) as usize;
                let from = self.history.len().saturating_sub(keep);
                let mut u: Vec<f32> = self.history.iter().skip(from).copied().collect();
                u.extend_from_slice(f);
                self.utterance_start = start_of_frame + f.len() as u64 - u.len() as u64;
                self.utterance = u;
                self.last_partial_len = 0;
                self.silence_noticed = false;
            }
            VadEvent::End { .. } => {
                self.finish_utterance(events)?;
                self.silent_since = self.position;
            }
            VadEvent::None => {
                let max = (self.config.max_utterance_ms * SAMPLE_RATE as u64 / 1000) as usize;
                if self.vad.in_speech() && self.utterance.len() >= max {
                    self.finish_utterance(events)?;
                    // Speech goes on: the next utterance starts here.
                    self.utterance_start = self.position;
                } else if !self.vad.in_speech() {
                    let quiet = Self::ms(self.position - self.silent_since);
                    if quiet >= self.config.silence_notice_ms && !self.silence_noticed {
                        self.silence_noticed = true;
                        let what = if level_db(f) < -60.0 {
                            "無聲音"
                        } else {
                            "只有背景雜音"
                        };
                        events.push(StreamEvent::Notice {
                            code: "silence".into(),
                            message: format!(
                                "已 {} 秒{what}，請確認來電者是否仍在線上。",
                                quiet / 1000
                            ),
                        });
                    }
                }
            }
        }
        self.history.extend(f.iter().copied());
        let cap = SAMPLE_RATE as usize; // one second
        if self.history.len() > cap {
            let excess = self.history.len() - cap;
            self.history.drain(..excess);
        }
        Ok(())
    }

    fn finish_utterance(&mut self, events: &mut Vec<StreamEvent>) -> Result<(), WhisperError> {
        let audio = std::mem::take(&mut self.utterance);
        self.last_partial_len = 0;
        if audio.len() < FRAME * 5 {
            return Ok(());
        }
        let t = self.transcriber.transcribe(&audio)?;
        let secs = audio.len() as f32 / SAMPLE_RATE as f32;
        let text = t.text.trim().to_string();
        // Noise that got past the VAD: whisper is sure there is no speech, or invents the
        // subtitle credits it learnt from silent video ends.
        let hallucination = ["字幕", "訂閱", "點贊", "點讚", "謝謝觀看", "感謝觀看"]
            .iter()
            .any(|h| text.contains(h));
        if text.is_empty()
            || hallucination
            || (t.no_speech_prob > self.config.no_speech_threshold && secs < 3.0)
        {
            events.push(StreamEvent::Notice {
                code: "unclear".into(),
                message: "有一段聲音無法辨識為語音（可能是雜音）。".into(),
            });
            return Ok(());
        }
        let start_ms = Self::ms(self.utterance_start);
        let end_ms = start_ms + (audio.len() as u64 * 1000 / SAMPLE_RATE as u64);
        self.transcript.push_str(&text);
        events.push(StreamEvent::Final {
            utterance: self.finals,
            start_ms,
            end_ms,
            text,
        });
        self.finals += 1;
        Ok(())
    }

    /// Ends the call: the utterance in progress (cut off by a hang-up or a dropped socket) is
    /// transcribed and reported as final.
    pub fn finish(&mut self) -> Result<Vec<StreamEvent>, WhisperError> {
        let mut events = Vec::new();
        // Whatever is left below a frame is padded into one last frame.
        if !self.source.is_empty() {
            let out = resample(
                &std::mem::take(&mut self.source),
                self.config.sample_rate,
                SAMPLE_RATE,
            );
            self.pending.extend(out);
        }
        if !self.pending.is_empty() {
            let mut last = std::mem::take(&mut self.pending);
            last.resize(FRAME, 0.0);
            self.frame(&last, &mut events)?;
        }
        if !self.utterance.is_empty() {
            self.finish_utterance(&mut events)?;
        }
        Ok(events)
    }
}
