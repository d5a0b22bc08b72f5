//! `eval llm`: speed of the local model on a fixed grounded prompt — prompt processing and
//! generation tokens/s, time to the first token with and without the cached system prompt —
//! and, given a `llama-bench` binary, llama.cpp's figures on the same GGUF and thread count
//! in the same run.

use std::path::PathBuf;
use std::process::Command;

use assistant::answer::SYSTEM_PROMPT;
use assistant::app::App;
use models::llm::{ChatMessage, DecoderEngine, GenerationParams, LocalLlm, PrefillWeights};
use serde_json::{json, Value};

/// The fixed material of the benchmark prompt: a bundled guide.
const GUIDE: &str = include_str!("../../corpus/guides/senior-card.md");

#[derive(clap::Args)]
pub struct LlmArgs {
    /// Prompt length in tokens (system prompt included).
    #[arg(long, default_value_t = 600)]
    prompt_tokens: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Threads (default: the configured `llm.threads`, 0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Prompt-processing weights: quantized, f32 or f16 (default: configured).
    #[arg(long)]
    prefill: Option<String>,
    /// Keep the GGUF's Q5_0 matrices as they are (no Q8_0 re-quantisation).
    #[arg(long)]
    no_requantize: bool,
    /// A llama.cpp `llama-bench` binary to measure the same GGUF with (or `$LLAMA_BENCH`).
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// Decoder engine: fast (default: configured) or candle.
    #[arg(long)]
    engine: Option<String>,
    /// Measurements, this decoder and llama.cpp alternating; figures are min/median/max.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

/// (min, median, max).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn spread_json(v: &[f64]) -> Value {
    let (lo, med, hi) = spread(v);
    json!({"min": lo, "median": med, "max": hi, "runs": v})
}

/// The process's peak resident memory (kB), from /proc.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Builds the user message so the whole prompt is about `target` tokens.
fn user_message(llm: &LocalLlm, target: usize) -> anyhow::Result<String> {
    let body: String = GUIDE
        .split("+++")
        .last()
        .unwrap_or(GUIDE)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let question = "\n\n民眾問題：我媽70歲要怎麼辦敬老卡？要帶什麼？";
    let render = |n: usize| -> String {
        let part: String = body.chars().take(n).collect();
        format!("參考資料：\n[1]《敬老卡（敬老愛心卡）申請》{part}{question}")
    };
    let count = |n: usize| -> anyhow::Result<usize> {
        let msgs = [
            ChatMessage::system(SYSTEM_PROMPT),
            ChatMessage::user(render(n)),
        ];
        Ok(llm.encode(&llm.template().render(&msgs))?.len())
    };
    let (mut lo, mut hi) = (0usize, body.chars().count());
    if count(hi)? < target {
        anyhow::bail!("the fixed material is shorter than {target} tokens");
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if count(mid)? <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(render(lo))
}

fn llama_cpp(
    bin: &PathBuf,
    model: &std::path::Path,
    threads: usize,
    p: usize,
    n: usize,
    depth: usize,
) -> anyhow::Result<Value> {
    let args = [
        "-t".to_string(),
        threads.to_string(),
        "-d".into(),
        depth.to_string(),
        "-p".into(),
        p.to_string(),
        "-n".into(),
        n.to_string(),
        "-r".into(),
        "1".into(),
        "-o".into(),
        "json".into(),
    ];
    let command = format!(
        "{} -m {} {}",
        bin.display(),
        model.display(),
        args.join(" ")
    );
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(&args)
        .output()?;
    if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(4) {
        anyhow::bail!(
            "{} died with SIGILL: it was built for an instruction this CPU lacks; \
             `scripts/llama-tools {}` builds llama.cpp for this CPU and prints its directory",
            bin.display(),
            model.display()
        );
    }
    if !out.status.success() {
        anyhow::bail!(
            "llama-bench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
    }
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let mut pp = None;
    let mut tg = None;
    for r in &rows {
        let ts = r["avg_ts"].as_f64();
        if r["n_prompt"].as_u64().unwrap_or(0) > 0 {
            pp = ts;
        } else if r["n_gen"].as_u64().unwrap_or(0) > 0 {
            tg = ts;
        }
    }
    Ok(json!({
        "prefill_tok_s": pp,
        "gen_tok_s": tg,
        "build": rows.first().map(|r| r["build_commit"].clone()),
        "command": command,
    }))
}

pub fn run(app: &App, a: &LlmArgs) -> anyhow::Result<Value> {
    let mut config = app.settings.llm.local_config(&app.cache_root())?;
    if let Some(t) = a.threads {
        config.threads = t;
    }
    if let Some(p) = &a.prefill {
        config.decoder.prefill = match p.as_str() {
            "quantized" => PrefillWeights::Quantized,
            "f32" => PrefillWeights::F32,
            "f16" => PrefillWeights::F16,
            other => anyhow::bail!("--prefill {other}: expected quantized, f32 or f16"),
        };
    }
    if let Some(e) = &a.engine {
        config.decoder.engine = match e.as_str() {
            "fast" => DecoderEngine::Fast,
            "candle" => DecoderEngine::Candle,
            other => anyhow::bail!("--engine {other}: expected fast or candle"),
        };
    }
    if a.no_requantize {
        config.decoder.requantize_q8 = false;
    }
    let t0 = std::time::Instant::now();
    let llm = LocalLlm::load(&config)?;
    let load_s = t0.elapsed().as_secs_f64();
    let rss_after_load_kb = peak_rss_kb();
    let threads = llm.threads();
    let engine = llm.engine_name();
    let user = user_message(&llm, a.prompt_tokens)?;
    let msgs = [ChatMessage::system(SYSTEM_PROMPT), ChatMessage::user(user)];
    let params = GenerationParams {
        max_tokens: a.gen_tokens,
        ignore_eos: true,
        repeat_penalty: 1.0,
        ..GenerationParams::default()
    };
    let llama_bench = a
        .llama_bench
        .clone()
        .or_else(|| std::env::var_os("LLAMA_BENCH").map(PathBuf::from));
    let (mut pre, mut gen, mut cold_ms, mut warm_ms) = (vec![], vec![], vec![], vec![]);
    let (mut lc_pre, mut lc_gen, mut r_pre, mut r_gen) = (vec![], vec![], vec![], vec![]);
    let mut last_lc = Value::Null;
    let (mut last_deep, mut lc_gen0) = (Value::Null, vec![]);
    let (mut prompt_tokens, mut reused) = (0, 0);
    for run in 0..a.runs.max(1) {
        // Cold: the whole prompt is processed (a fresh prefix cache), then generation.
        llm.forget_prefix();
        let mut cold = llm.stream(&msgs, &params)?;
        for piece in &mut cold {
            piece?;
        }
        let cold = cold.stats();
        // Warm: the system prompt's KV cache is reused (the cold call primed it).
        let mut warm = llm.stream(
            &msgs,
            &GenerationParams {
                max_tokens: 1,
                ..params.clone()
            },
        )?;
        for piece in &mut warm {
            piece?;
        }
        let warm = warm.stats();
        prompt_tokens = cold.prompt_tokens;
        reused = warm.reused_prompt_tokens;
        pre.push(cold.prefill_tokens_per_s());
        gen.push(cold.generation_tokens_per_s());
        cold_ms.push(cold.first_token_ms);
        warm_ms.push(warm.first_token_ms);
        println!(
            "run {}: {engine} ({threads} threads): prompt {} tokens at {:.1} tok/s; first token {:.0} ms cold, {:.0} ms with {} cached tokens; generation {:.1} tok/s over {} tokens",
            run + 1,
            cold.prompt_tokens,
            cold.prefill_tokens_per_s(),
            cold.first_token_ms,
            warm.first_token_ms,
            warm.reused_prompt_tokens,
            cold.generation_tokens_per_s(),
            cold.generated_tokens
        );
        if let Some(bin) = &llama_bench {
            // Prompt speed and generation on an empty cache (llama-bench's defaults), then
            // generation after the same prompt length as ours (`-d`): ours generates after the
            // prompt, so that is the like-for-like figure and the one the ratio uses.
            let lc = llama_cpp(
                bin,
                &config.model,
                threads,
                cold.prompt_tokens,
                a.gen_tokens,
                0,
            )?;
            let deep = llama_cpp(
                bin,
                &config.model,
                threads,
                0,
                a.gen_tokens,
                cold.prompt_tokens,
            )?;
            let (p, g0, g) = (
                lc["prefill_tok_s"].as_f64().unwrap_or(f64::NAN),
                lc["gen_tok_s"].as_f64().unwrap_or(f64::NAN),
                deep["gen_tok_s"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "run {}: llama.cpp ({threads} threads): prompt {p:.1} tok/s, generation {g:.1} tok/s after {} prompt tokens ({g0:.1} on an empty cache); ours/llama.cpp = {:.2}× prefill, {:.2}× generation",
                run + 1,
                cold.prompt_tokens,
                cold.prefill_tokens_per_s() / p,
                cold.generation_tokens_per_s() / g
            );
            lc_pre.push(p);
            lc_gen.push(g);
            lc_gen0.push(g0);
            last_deep = deep;
            r_pre.push(cold.prefill_tokens_per_s() / p);
            r_gen.push(cold.generation_tokens_per_s() / g);
            last_lc = lc;
        }
    }
    let peak_kb = peak_rss_kb();
    let (_, p50, _) = spread(&pre);
    let (_, g50, _) = spread(&gen);
    let (_, c50, _) = spread(&cold_ms);
    let (_, w50, _) = spread(&warm_ms);
    println!(
        "{engine} ({threads} threads, median of {} runs): load {load_s:.1} s; prompt {prompt_tokens} tokens at {p50:.1} tok/s; first token {c50:.0} ms cold, {w50:.0} ms with {reused} cached tokens; generation {g50:.1} tok/s; peak RSS {} MB after load, {} MB at the end",
        pre.len(),
        rss_after_load_kb.unwrap_or(0) / 1024,
        peak_kb.unwrap_or(0) / 1024,
    );
    let mut summary = json!({
        "model": config.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "engine": engine,
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "prefill_tok_s": spread_json(&pre),
        "gen_tok_s": spread_json(&gen),
        "ttft_cold_ms": spread_json(&cold_ms),
        "ttft_warm_ms": spread_json(&warm_ms),
        "reused_prompt_tokens": reused,
        "peak_rss_kb_after_load": rss_after_load_kb,
        "peak_rss_kb": peak_kb,
    });
    if llama_bench.is_some() {
        let (a0, a1, a2) = spread(&r_pre);
        let (b0, b1, b2) = spread(&r_gen);
        println!(
            "llama.cpp ({threads} threads, median): prompt {:.1} tok/s, generation {:.1} tok/s after the prompt ({:.1} on an empty cache); ours/llama.cpp over {} alternating runs: prefill {a1:.2}× (min {a0:.2}, max {a2:.2}), generation {b1:.2}× (min {b0:.2}, max {b2:.2})",
            spread(&lc_pre).1,
            spread(&lc_gen).1,
            spread(&lc_gen0).1,
            r_pre.len()
        );
        println!(
            "llama-bench commands: {}; {}",
            last_lc["command"].as_str().unwrap_or(""),
            last_deep["command"].as_str().unwrap_or("")
        );
        summary["llama_cpp"] = json!({
            "prefill_tok_s": spread_json(&lc_pre),
            "gen_tok_s": spread_json(&lc_gen),
            "gen_tok_s_empty_cache": spread_json(&lc_gen0),
            "command": last_lc["command"],
            "command_generation": last_deep["command"],
            "build": last_lc["build"],
        });
        summary["ratio_prefill"] = spread_json(&r_pre);
        summary["ratio_generation"] = spread_json(&r_gen);
    } else {
        println!("llama.cpp: not measured (pass --llama-bench PATH or set LLAMA_BENCH)");
    }
    Ok(summary)
}
