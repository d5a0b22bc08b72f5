//! Audio input: files in common formats (WAV, FLAC, MP3, Ogg Vorbis; decoded by symphonia, pure
//! Rust), raw telephone streams (16-bit PCM, 8-bit G.711 μ-law and A-law), down-mixing to mono
//! and resampling to 16 kHz with a windowed-sinc filter.
//!
//! Damaged input loses as little as possible: a truncated file yields the audio before the
//! damage plus a warning; undecodable packets are skipped and counted.

use std::path::Path;

use crate::SAMPLE_RATE;

/// Audio ready for whisper: mono f32 in [-1, 1] at 16 kHz, plus what was noticed on the way.
#[derive(Debug, Clone, Default)]
pub struct Audio {
    pub samples: Vec<f32>,
    /// The input's own sample rate and channel count.
    pub source_rate: u32,
    pub source_channels: usize,
    /// Problems that did not stop decoding (truncation, skipped packets, clipping).
    pub warnings: Vec<String>,
}

impl Audio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / SAMPLE_RATE as f64
    }
}

/// Why audio could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the audio is empty")]
    Empty,
    #[error("unsupported or unrecognised audio format ({0})")]
    Unsupported(String),
    #[error("the audio is damaged and nothing could be decoded ({0})")]
    Corrupt(String),
    #[error("sample rate {0} Hz is outside 4000–192000 Hz")]
    BadRate(u32),
    #[error("the audio is {secs:.0} s long; the limit is {limit:.0} s")]
    TooLong { secs: f64, limit: f64 },
}

/// Raw sample encodings a telephone gateway or PBX sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Signed 16-bit little-endian linear PCM.
    Pcm16Le,
    /// ITU-T G.711 μ-law, one byte a sample.
    MuLaw,
    /// ITU-T G.711 A-law, one byte a sample.
    ALaw,
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "pcm16" | "pcm16le" | "s16le" | "slin" | "linear16" => Some(Encoding::Pcm16Le),
            "mulaw" | "ulaw" | "pcmu" | "g711u" => Some(Encoding::MuLaw),
            "alaw" | "pcma" | "g711a" => Some(Encoding::ALaw),
            _ => None,
        }
    }

    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Pcm16Le => 2,
            Encoding::MuLaw | Encoding::ALaw => 1,
        }
    }

    /// Decodes whole samples from `bytes`; a trailing partial sample is ignored (the caller
    /// keeps it for the next frame).
    pub fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Encoding::Pcm16Le => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0),
            ),
            Encoding::MuLaw => {
                out.extend(bytes.iter().map(|&b| mulaw_to_linear(b) as f32 / 32768.0))
            }
            Encoding::ALaw => out.extend(bytes.iter().map(|&b| alaw_to_linear(b) as f32 / 32768.0)),
        }
    }
}

/// G.711 μ-law → 16-bit linear.
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// 16-bit linear → G.711 μ-law (the segment search of the ITU-T reference encoder, with its
/// clip at 32,635 and bias of 0x84).
pub fn linear_to_mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let s = sample as i32;
    let sign = if s < 0 { 0x80u8 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    let exponent = (7 - (magnitude as u32).leading_zeros().saturating_sub(17).min(7)) as u8;
    let mantissa = ((magnitude >> (exponent as i32 + 3)) & 0x0f) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// What a 16 kHz recording sounds like after a telephone line: down to 8 kHz (the band above
/// 3.8 kHz is gone), G.711 μ-law companding (8 bits a sample), and back up to `rate`.
pub fn telephone_band(samples: &[f32], rate: u32) -> Vec<f32> {
    let narrow = resample(samples, rate, 8_000);
    let coded: Vec<f32> = narrow
        .iter()
        .map(|&x| {
            let linear = (x.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
            mulaw_to_linear(linear_to_mulaw(linear)) as f32 / 32_768.0
        })
        .collect();
    resample(&coded, 8_000, rate)
}

/// G.711 A-law → 16-bit linear.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = (a >> 4) & 0x07;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

/// Reads and decodes an audio file.
pub fn decode_file(path: &Path, max_secs: f64) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    decode_bytes(bytes, ext.as_deref(), max_secs)
}

/// Decodes an encoded audio file held in memory (`ext` is a format hint such as `wav`).
pub fn decode_bytes(bytes: Vec<u8>, ext: Option<&str>, max_secs: f64) -> Result<Audio, AudioError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
    use symphonia::core::errors::Error as SymError;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Unsupported(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let declared_frames = track.codec_params.n_frames;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(e.to_string()))?;

    let mut mono: Vec<f32> = Vec::new();
    let mut warnings = Vec::new();
    let mut skipped = 0usize;
    let mut frames = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                warnings.push(format!("stopped reading at a damaged part: {e}"));
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                rate = spec.rate;
                channels = spec.channels.count().max(1);
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                let s = sb.samples();
                frames += (s.len() / channels) as u64;
                mono.extend(
                    s.chunks_exact(channels)
                        .map(|f| f.iter().sum::<f32>() / channels as f32),
                );
                if rate > 0 && mono.len() as f64 / rate as f64 > max_secs {
                    return Err(AudioError::TooLong {
                        secs: mono.len() as f64 / rate as f64,
                        limit: max_secs,
                    });
                }
            }
            Err(SymError::DecodeError(_)) => skipped += 1,
            Err(SymError::IoError(_)) => {
                warnings.push("the file ends inside a packet".into());
                break;
            }
            Err(e) => return Err(AudioError::Corrupt(e.to_string())),
        }
    }
    if skipped > 0 {
        warnings.push(format!("{skipped} damaged packets skipped"));
    }
    if let Some(declared) = declared_frames {
        if frames + (rate as u64 / 100) < declared {
            warnings.push(format!(
                "the file is truncated: {:.2} s of the declared {:.2} s decoded",
                frames as f64 / rate.max(1) as f64,
                declared as f64 / rate.max(1) as f64
            ));
        }
    }
    if mono.is_empty() {
        return Err(if skipped > 0 {
            AudioError::Corrupt(format!("{skipped} packets, none decodable"))
        } else {
            AudioError::Empty
        });
    }
    if !(4000..=192_000).contains(&rate) {
        return Err(AudioError::BadRate(rate));
    }
    let samples = resample(&mono, rate, SAMPLE_RATE);
    if let Some(w) = clipping_warning(&samples) {
        warnings.push(w);
    }
    Ok(Audio {
        samples,
        source_rate: rate,
        source_channels: channels,
        warnings,
    })
}

/// A warning when more than 1% of samples sit at full scale (the caller was too loud, or the
/// line overdriven): recognition suffers and the agent should know why.
pub fn clipping_warning(samples: &[f32]) -> Option<String> {
    if samples.is_empty() {
        return None;
    }
    let clipped = samples.iter().filter(|s| s.abs() >= 0.99).count();
    let share = clipped as f64 / samples.len() as f64;
    (share > 0.01).then(|| format!("{:.1}% of the audio is clipped", share * 100.0))
}

/// Resamples mono audio with a Hann-windowed sinc low-pass (16 zero crossings each side,
/// cut-off just below the lower Nyquist frequency). Equal rates return a copy.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let cutoff = 0.95 * ratio.min(1.0); // relative to the input's Nyquist
    let half_width = 16.0 / cutoff; // input samples each side
    let out_len = ((input.len() as f64) * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for j in 0..out_len {
        let centre = j as f64 / ratio;
        let lo = (centre - half_width).ceil().max(0.0) as usize;
        let hi = ((centre + half_width).floor() as usize).min(input.len() - 1);
        let (mut acc, mut norm) = (0.0f64, 0.0f64);
        for (i, &x) in input.iter().enumerate().take(hi + 1).skip(lo) {
            let t = i as f64 - centre;
            let sinc = if t.abs() < 1e-9 {
                1.0
            } else {
                let a = std::f64::consts::PI * t * cutoff;
                a.sin() / a
            };
            let window = 0.5 + 0.5 * (std::f64::consts::PI * t / half_width).cos();
            let k = sinc * window;
            acc += x as f64 * k;
            norm += k;
        }
        out.push(if norm.abs() > 1e-12 {
            (acc / norm) as f32
        } else {
            0.0
        });
    }
    out
}

/// Writes 16 kHz mono f32 samples as a 16-bit PCM WAV (tests and tools).
pub fn wav_bytes(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    /// Amplitude of `freq` in `x` (a single-bin DFT).
    fn amplitude(x: &[f32], freq: f64, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let a = 2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64;
            re += s as f64 * a.cos();
            im += s as f64 * a.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn resampling_keeps_in_band_tones_and_removes_aliases() {
        // 1 kHz survives 44.1k → 16k and 8k → 16k with its amplitude; 10 kHz is above the
        // 16 kHz rate's band and must vanish rather than fold down.
        let a = resample(&tone(1000.0, 44_100, 1.0), 44_100, 16_000);
        assert_eq!(a.len(), 16_000);
        assert!((amplitude(&a[1000..15000], 1000.0, 16_000) - 0.5).abs() < 0.02);
        let b = resample(&tone(1000.0, 8_000, 1.0), 8_000, 16_000);
        assert_eq!(b.len(), 16_000);
        assert!((amplitude(&b[1000..15000], 1000.0, 16_000) - 0.5).abs() < 0.02);
        let c = resample(&tone(10_000.0, 48_000, 1.0), 48_000, 16_000);
        // 10 kHz would alias to 6 kHz without the low-pass.
        assert!(amplitude(&c[1000..15000], 6000.0, 16_000) < 0.01);
    }

    #[test]
    fn g711_decoding_matches_the_reference_tables() {
        // ITU-T G.711 reference values.
        assert_eq!(mulaw_to_linear(0xff), 0);
        assert_eq!(mulaw_to_linear(0x7f), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        let mut out = Vec::new();
        Encoding::Pcm16Le.decode(&[0x00, 0x40, 0x00, 0xc0, 0x11], &mut out);
        assert_eq!(out, vec![0.5, -0.5]);
        // The encoder inverts the decoder on every code (0x7f and 0xff both mean 0).
        for byte in 0..=255u8 {
            let back = linear_to_mulaw(mulaw_to_linear(byte));
            let expected = if byte == 0x7f { 0xff } else { byte };
            assert_eq!(back, expected, "code {byte:#04x}");
        }
        // And quantises within half a step of the segment it falls in.
        for s in [-32_768i16, -20_000, -1_000, -5, 0, 7, 300, 4_000, 32_767] {
            let q = mulaw_to_linear(linear_to_mulaw(s)) as i32;
            let step = (q.abs() + 0x84) / 16 + 1;
            assert!(
                (q - (s as i32).clamp(-32_635, 32_635)).abs() <= step,
                "{s} → {q}"
            );
        }
    }

    #[test]
    fn the_telephone_band_keeps_speech_frequencies_and_drops_the_top() {
        let low = tone(1_000.0, 16_000, 1.0);
        let high = tone(6_000.0, 16_000, 1.0);
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        let (l, h) = (telephone_band(&low, 16_000), telephone_band(&high, 16_000));
        assert_eq!(l.len(), low.len());
        // A 1 kHz tone passes nearly unchanged (μ-law noise is ~38 dB down); 6 kHz is gone.
        let err: Vec<f32> = l.iter().zip(&low).map(|(a, b)| a - b).collect();
        assert!(rms(&err[400..15_600]) < 0.05 * rms(&low), "{}", rms(&err));
        assert!(rms(&h[400..15_600]) < 0.02 * rms(&high), "{}", rms(&h));
    }

    #[test]
    fn wav_round_trip_truncation_and_garbage() {
        let samples = tone(440.0, 8_000, 2.0);
        let wav = wav_bytes(&samples, 8_000);
        let a = decode_bytes(wav.clone(), Some("wav"), 600.0).unwrap();
        assert_eq!((a.source_rate, a.source_channels), (8_000, 1));
        assert_eq!(a.samples.len(), 32_000);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        // Cut in the middle of the data: the first half decodes, with a warning.
        let cut = decode_bytes(wav[..wav.len() / 2].to_vec(), Some("wav"), 600.0).unwrap();
        assert!(cut.samples.len() > 15_000 && cut.samples.len() < 17_000);
        assert!(
            cut.warnings.iter().any(|w| w.contains("truncated")),
            "{:?}",
            cut.warnings
        );
        assert!(matches!(
            decode_bytes(Vec::new(), None, 600.0),
            Err(AudioError::Empty)
        ));
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(decode_bytes(garbage, None, 600.0).is_err());
        assert!(matches!(
            decode_bytes(wav, Some("wav"), 1.0),
            Err(AudioError::TooLong { .. })
        ));
        let loud: Vec<f32> = tone(440.0, 16_000, 1.0)
            .iter()
            .map(|s| (s * 4.0).clamp(-1.0, 1.0))
            .collect();
        let clipped = decode_bytes(wav_bytes(&loud, 16_000), Some("wav"), 600.0).unwrap();
        assert!(clipped.warnings.iter().any(|w| w.contains("clipped")));
    }
}
