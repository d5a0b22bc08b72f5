//! `eval asr`: character error rate of whisper on a manifest of recordings (EVAL.md), the
//! real-time factor, and the share of outputs that came out in Simplified script.
//!
//! CER counts edits after both sides are normalised the same way: Traditional script, Arabic
//! numbers read out in Chinese (references spell numbers in characters), punctuation and spaces
//! removed. RTF is transcription time over audio duration with the configured thread count.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use assistant::app::App;
use serde_json::{json, Value};
use voice::text::{edit_distance, normalize_for_cer};

#[derive(clap::Args)]
pub struct AsrArgs {
    /// TSV with a header and the columns `file` and `transcript`.
    #[arg(long)]
    manifest: PathBuf,
    /// Directory the `file` column is relative to.
    #[arg(long)]
    audio_dir: PathBuf,
    /// A ggml whisper model (default: the configured one, else the installed asset).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads per transcription (default: voice.threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Transcribe without the initial prompt (to measure what it does).
    #[arg(long)]
    no_prompt: bool,
    /// Encode the full 30 s window instead of one trimmed to the audio.
    #[arg(long)]
    full_window: bool,
    /// Pass each recording through a telephone line first (8 kHz, G.711 μ-law, back to 16 kHz).
    #[arg(long)]
    telephone: bool,
    /// Beam width of the decoder (default: voice.beam_size; 1 is greedy).
    #[arg(long)]
    beam: Option<usize>,
    /// Only the first N recordings.
    #[arg(long)]
    limit: Option<usize>,
    /// Print each recording's reference and output.
    #[arg(long)]
    verbose: bool,
}

pub fn run(app: &App, args: &AsrArgs) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{} has no `{name}` column", args.manifest.display()))
    };
    let (file_col, text_col) = (col("file")?, col("transcript")?);
    let mut items: Vec<(String, String)> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f.get(file_col).unwrap_or(&"").to_string(),
                f.get(text_col).unwrap_or(&"").to_string(),
            )
        })
        .collect();
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    anyhow::ensure!(!items.is_empty(), "the manifest lists no recordings");

    let voice_settings = &app.settings.voice;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => voice_settings.model_file(&app.cache_root())?,
    };
    let mut config = voice_settings.whisper_config(model.clone());
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    if args.no_prompt {
        config.prompt.clear();
    }
    config.trim_audio_ctx = !args.full_window;
    if let Some(b) = args.beam {
        config.beam_size = b.max(1);
    }
    let beam = config.beam_size;
    let threads = config.threads;
    let transcriber = voice::Transcriber::load(config)?;

    let (mut edits, mut ref_chars, mut converted) = (0usize, 0usize, 0usize);
    let (mut audio_secs, mut compute_secs) = (0f64, 0f64);
    let mut worst: Vec<(f64, String, String, String)> = Vec::new();
    for (file, reference) in &items {
        let path = args.audio_dir.join(file);
        let mut audio = voice::decode_file(&path, voice_settings.max_file_secs)
            .with_context(|| format!("decoding {}", path.display()))?;
        if args.telephone {
            audio.samples = voice::audio::telephone_band(&audio.samples, voice::SAMPLE_RATE);
        }
        let started = Instant::now();
        let t = transcriber.transcribe(&audio.samples)?;
        compute_secs += started.elapsed().as_secs_f64();
        audio_secs += audio.duration_secs();
        if t.converted {
            converted += 1;
        }
        let r = normalize_for_cer(reference);
        let h = normalize_for_cer(&t.text);
        let e = edit_distance(&r, &h);
        edits += e;
        ref_chars += r.len();
        let cer = e as f64 / r.len().max(1) as f64;
        if args.verbose {
            println!("{file}\t{cer:.3}\t{reference}\t{}", t.text);
        }
        worst.push((cer, file.clone(), reference.clone(), t.text));
    }
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("worst recordings (CER, reference → output):");
    for (cer, file, r, h) in worst.iter().take(5) {
        println!("  {cer:.2}  {file}  {r} → {h}");
    }
    let n = items.len();
    let cer = edits as f64 / ref_chars.max(1) as f64;
    let rtf = compute_secs / audio_secs.max(1e-9);
    println!(
        "asr: {n} recordings{}, {audio_secs:.1} s of audio, model {}, {threads} threads, beam {beam}: CER {:.2}% ({edits} edits / {ref_chars} chars), RTF {rtf:.3}, {converted} outputs needed S→T",
        if args.telephone { " through a telephone line (8 kHz μ-law)" } else { "" },
        model.display(),
        cer * 100.0
    );
    Ok(json!({
        "n": n,
        "cer": cer,
        "rtf": rtf,
        "simplified_share": converted as f64 / n as f64,
        "threads": threads,
        "beam": beam,
        "telephone": args.telephone,
        "audio_secs": audio_secs,
    }))
}
