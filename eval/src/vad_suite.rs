//! `eval vad`: the energy VAD against Silero VAD v6 on the team's 79 recordings mixed into
//! noise: multi-talker babble (four other recordings of the set, looped, at random offsets) and
//! music (synthesised: chords with harmonics, bass, kick and hi-hat at 120 bpm; no music
//! recordings are at hand), each at two signal-to-noise ratios, and a quiet line as the
//! baseline. Each mixture is 1.5 s of noise, the recording over the noise, 1.5 s of noise.
//!
//! Truth on a 10 ms grid: from the recording's first to its last frame within 30 dB of its
//! loudest (its pauses count as speech: the segmenter should keep an utterance whole). Scores:
//! speech recall (truth frames inside a detected segment) and false alarms (noise-only frames
//! inside one, leaving out 0.3 s before the speech and 0.7 s after it, where either detector's
//! hang-over legitimately runs on). Both detectors end a segment after ~0.6 s of non-speech.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use assistant::app::App;
use serde_json::{json, Value};
use voice::silero::{SileroModel, SileroState, CHUNK};
use voice::vad::{Vad, VadConfig, VadEvent, FRAME};

#[derive(clap::Args)]
pub struct VadArgs {
    /// TSV with a header and a `file` column.
    #[arg(long)]
    manifest: PathBuf,
    /// Directory the `file` column is relative to.
    #[arg(long)]
    audio_dir: PathBuf,
    /// The Silero v6 safetensors (default: the `silero-vad` asset, fetched from PyPI if missing).
    #[arg(long)]
    silero: Option<PathBuf>,
    /// Silero's speech threshold (a segment opens at it and closes 0.15 below it).
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
}

const SR: usize = 16_000;
const CELL: usize = 160; // 10 ms
const PAD: usize = 3 * SR / 2;

struct Lcg(u32);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((self.0 >> 8) as f64 / 16_777_216.0 - 0.5) as f32
    }
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// The recording's speech span in 10 ms cells: first to last cell within 30 dB of the loudest.
fn speech_span(clip: &[f32]) -> (usize, usize) {
    let levels: Vec<f32> = clip.chunks(CELL).map(voice::vad::level_db).collect();
    let peak = levels.iter().copied().fold(f32::MIN, f32::max);
    let first = levels.iter().position(|l| *l > peak - 30.0).unwrap_or(0);
    let last = levels.iter().rposition(|l| *l > peak - 30.0).unwrap_or(0);
    (first, last + 1)
}

/// Synthetic music: a I–vi–IV–V progression, one chord a beat at 120 bpm, five harmonics a
/// note, a bass line, a kick on each beat and a hi-hat on the off-beats.
fn music(len: usize, seed: u32) -> Vec<f32> {
    let mut r = Lcg(seed);
    let chords: [[f32; 3]; 4] = [
        [261.6, 329.6, 392.0],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
        [196.0, 246.9, 293.7],
    ];
    let beat = SR / 2;
    let mut out = vec![0f32; len];
    for (i, y) in out.iter_mut().enumerate() {
        let b = i / beat;
        let t = (i % beat) as f32 / SR as f32;
        let chord = chords[(b / 2) % 4];
        let env = (t / 0.01).min(1.0) * (-t / 0.3).exp();
        let mut v = 0.0;
        for f in chord {
            for h in 1..=5 {
                v += (2.0 * std::f32::consts::PI * f * h as f32 * i as f32 / SR as f32).sin()
                    / h as f32;
            }
        }
        v *= 0.15 * env;
        v += 0.3 * (2.0 * std::f32::consts::PI * chord[0] / 2.0 * i as f32 / SR as f32).sin();
        v += 0.6 * (2.0 * std::f32::consts::PI * 60.0 * t).sin() * (-t / 0.08).exp();
        let off = ((i + beat / 2) % beat) as f32 / SR as f32;
        v += 0.4 * r.next() * (-off / 0.03).exp();
        *y = v;
    }
    out
}

/// Babble: four other recordings looped from random offsets, summed.
fn babble(clips: &[Vec<f32>], skip: usize, len: usize, seed: u32) -> Vec<f32> {
    let mut r = Lcg(seed);
    let mut out = vec![0f32; len];
    for k in 1..=4 {
        let c = &clips[(skip + k * 7) % clips.len()];
        let start = ((r.next() + 0.5) * c.len() as f32) as usize;
        for (i, y) in out.iter_mut().enumerate() {
            *y += c[(start + i) % c.len()];
        }
    }
    out
}

/// Segments from the energy VAD, as one flag per 10 ms cell.
fn energy_cells(x: &[f32]) -> Vec<bool> {
    let mut vad = Vad::new(VadConfig::default());
    let mut frames: Vec<bool> = Vec::new();
    for f in x.chunks(FRAME) {
        let event = vad.push(f);
        frames.push(vad.in_speech());
        let n = frames.len();
        match event {
            VadEvent::Start { frames_back } => {
                frames[n.saturating_sub(frames_back)..].fill(true);
            }
            VadEvent::End { frames_back } => {
                frames[n.saturating_sub(frames_back)..].fill(false);
            }
            VadEvent::None => {}
        }
    }
    (0..x.len() / CELL)
        .map(|c| frames.get(c * CELL / FRAME).copied().unwrap_or(false))
        .collect()
}

/// Segments from Silero's probabilities: open at `on`, close after 19 chunks (0.6 s) below
/// `on − 0.15`, as one flag per 10 ms cell.
fn silero_cells(model: &SileroModel, x: &[f32], on: f32) -> Vec<bool> {
    let mut state = SileroState::default();
    let (mut chunks, mut speaking, mut quiet) = (Vec::new(), false, 0usize);
    for c in x.chunks(CHUNK) {
        let p = model.forward(&mut state, c);
        chunks.push(false);
        let n = chunks.len();
        if speaking {
            if p < on - 0.15 {
                quiet += 1;
                if quiet >= 19 {
                    speaking = false;
                    chunks[n - quiet..].fill(false);
                    quiet = 0;
                    continue;
                }
            } else {
                quiet = 0;
            }
            chunks[n - 1] = true;
        } else if p >= on {
            speaking = true;
            quiet = 0;
            chunks[n - 1] = true;
        }
    }
    (0..x.len() / CELL)
        .map(|c| chunks.get(c * CELL / CHUNK).copied().unwrap_or(false))
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Score {
    hit: usize,
    speech: usize,
    alarm: usize,
    noise: usize,
    secs: f64,
    audio: f64,
}

impl Score {
    fn add(&mut self, cells: &[bool], span: (usize, usize), secs: f64, audio: f64) {
        for (i, d) in cells.iter().enumerate() {
            if i >= span.0 && i < span.1 {
                self.speech += 1;
                self.hit += *d as usize;
            } else if i + 30 < span.0 || i >= span.1 + 70 {
                self.noise += 1;
                self.alarm += *d as usize;
            }
        }
        self.secs += secs;
        self.audio += audio;
    }
    fn recall(&self) -> f64 {
        self.hit as f64 / self.speech.max(1) as f64
    }
    fn false_alarm(&self) -> f64 {
        self.alarm as f64 / self.noise.max(1) as f64
    }
}

pub fn run(app: &App, args: &VadArgs) -> anyhow::Result<Value> {
    let weights = match &args.silero {
        Some(p) => p.clone(),
        None => {
            let cache = models::assets::AssetCache::new(app.cache_root());
            let source = models::assets::PackageSource::Registries {
                python: std::env::var("ASSISTANT_PYTHON").unwrap_or_else(|_| "python3".into()),
                npm: "npm".into(),
            };
            match cache.setup(&models::assets::SILERO_VAD, &source, false)? {
                models::assets::SetupOutcome::AlreadyPresent(p)
                | models::assets::SetupOutcome::Installed(p) => p,
            }
        }
    };
    let model = SileroModel::load(&weights)?;
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = header
        .iter()
        .position(|h| *h == "file")
        .context("the manifest has no `file` column")?;
    let mut clips = Vec::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let f = l.split('\t').nth(col).unwrap_or_default();
        let path = args.audio_dir.join(f);
        clips.push(
            voice::decode_file(&path, 600.0)
                .with_context(|| format!("decoding {}", path.display()))?
                .samples,
        );
    }
    anyhow::ensure!(clips.len() >= 5, "need at least 5 recordings for babble");

    let conditions: [(&str, Option<f32>); 5] = [
        ("quiet", None),
        ("babble_10db", Some(10.0)),
        ("babble_5db", Some(5.0)),
        ("music_10db", Some(10.0)),
        ("music_5db", Some(5.0)),
    ];
    let mut summary = serde_json::Map::new();
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9}   (speech recall / false alarms on noise-only stretches)",
        "condition", "energy R", "energy FA", "silero R", "silero FA"
    );
    let (mut e_cost, mut s_cost) = (Score::default(), Score::default());
    for (name, snr) in conditions {
        let (mut e, mut s) = (Score::default(), Score::default());
        for (i, clip) in clips.iter().enumerate() {
            let len = PAD + clip.len() + PAD;
            let seed = 1_000 + i as u32;
            let mut noise = match name.split('_').next() {
                Some("babble") => babble(&clips, i, len, seed),
                Some("music") => music(len, seed),
                _ => {
                    let mut r = Lcg(seed);
                    (0..len).map(|_| r.next() * 0.001).collect()
                }
            };
            let (a, b) = speech_span(clip);
            let speech_rms = rms(&clip[a * CELL..(b * CELL).min(clip.len())]);
            if let Some(snr) = snr {
                let g = speech_rms / rms(&noise).max(1e-9) / 10f32.powf(snr / 20.0);
                noise.iter_mut().for_each(|v| *v *= g);
            }
            let mut x = noise;
            for (j, v) in clip.iter().enumerate() {
                x[PAD + j] += v;
            }
            let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            if peak > 0.99 {
                x.iter_mut().for_each(|v| *v *= 0.99 / peak);
            }
            let span = (PAD / CELL + a, PAD / CELL + b);
            let audio = x.len() as f64 / SR as f64;
            let t = Instant::now();
            let ec = energy_cells(&x);
            e.add(&ec, span, t.elapsed().as_secs_f64(), audio);
            let t = Instant::now();
            let sc = silero_cells(&model, &x, args.threshold);
            s.add(&sc, span, t.elapsed().as_secs_f64(), audio);
        }
        println!(
            "{name:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            e.recall(),
            e.false_alarm(),
            s.recall(),
            s.false_alarm()
        );
        for (k, v) in [
            ("energy_recall", e.recall()),
            ("energy_false_alarm", e.false_alarm()),
            ("silero_recall", s.recall()),
            ("silero_false_alarm", s.false_alarm()),
        ] {
            summary.insert(format!("{name}.{k}"), json!(v));
        }
        e_cost.secs += e.secs;
        e_cost.audio += e.audio;
        s_cost.secs += s.secs;
        s_cost.audio += s.audio;
    }
    let (er, sr) = (e_cost.secs / e_cost.audio, s_cost.secs / s_cost.audio);
    println!(
        "compute per second of audio (one thread): energy {:.2} ms, silero {:.2} ms",
        er * 1e3,
        sr * 1e3
    );
    summary.insert("energy_rtf".into(), json!(er));
    summary.insert("silero_rtf".into(), json!(sr));
    summary.insert("n".into(), json!(clips.len()));
    Ok(Value::Object(summary))
}
