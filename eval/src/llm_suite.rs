//! `eval llm`: speed of the local model on a fixed grounded prompt — prompt processing and
//! generation tokens/s, time to the first token with and without the cached system prompt —
//! and, given a `llama-bench` binary, llama.cpp's figures on the same GGUF and thread count
//! in the same run.

use std::path::PathBuf;
use std::process::Command;

use assistant::answer::SYSTEM_PROMPT;
use assistant::app::App;
use models::llm::{ChatMessage, GenerationParams, LocalLlm, PrefillWeights};
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
) -> anyhow::Result<Value> {
    let out = Command::new(bin)
        .args(["-m"])
        .arg(model)
        .args([
            "-t",
            &threads.to_string(),
            "-p",
            &p.to_string(),
            "-n",
            &n.to_string(),
            "-r",
            "1",
            "-o",
            "json",
        ])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "llama-bench failed: {}",
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
    if a.no_requantize {
        config.decoder.requantize_q8 = false;
    }
    let t0 = std::time::Instant::now();
    let llm = LocalLlm::load(&config)?;
    let load_s = t0.elapsed().as_secs_f64();
    let threads = llm.threads();
    let user = user_message(&llm, a.prompt_tokens)?;
    let msgs = [ChatMessage::system(SYSTEM_PROMPT), ChatMessage::user(user)];
    let params = GenerationParams {
        max_tokens: a.gen_tokens,
        ignore_eos: true,
        repeat_penalty: 1.0,
        ..GenerationParams::default()
    };
    // Cold: nothing cached, the whole prompt is processed; then generation.
    let mut cold = llm.stream(&msgs, &params)?;
    for piece in &mut cold {
        piece?;
    }
    let cold = cold.stats();
    // Warm: the system prompt's KV cache is reused (its first call above primed it).
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
    println!(
        "candle ({threads} threads, prefill {:?}, q8 {}): load {load_s:.1} s; prompt {} tokens at {:.1} tok/s; first token {:.0} ms cold, {:.0} ms with {} cached tokens; generation {:.1} tok/s over {} tokens",
        config.decoder.prefill,
        config.decoder.requantize_q8,
        cold.prompt_tokens,
        cold.prefill_tokens_per_s(),
        cold.first_token_ms,
        warm.first_token_ms,
        warm.reused_prompt_tokens,
        cold.generation_tokens_per_s(),
        cold.generated_tokens
    );
    let mut summary = json!({
        "model": config.model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "threads": threads,
        "prefill_weights": format!("{:?}", config.decoder.prefill).to_lowercase(),
        "requantize_q8": config.decoder.requantize_q8,
        "load_s": load_s,
        "prompt_tokens": cold.prompt_tokens,
        "gen_tokens": cold.generated_tokens,
        "prefill_tok_s": cold.prefill_tokens_per_s(),
        "gen_tok_s": cold.generation_tokens_per_s(),
        "ttft_cold_ms": cold.first_token_ms,
        "ttft_warm_ms": warm.first_token_ms,
        "reused_prompt_tokens": warm.reused_prompt_tokens,
    });
    let llama_bench = a
        .llama_bench
        .clone()
        .or_else(|| std::env::var_os("LLAMA_BENCH").map(PathBuf::from));
    match &llama_bench {
        Some(bin) => {
            let lc = llama_cpp(
                bin,
                &config.model,
                threads,
                cold.prompt_tokens,
                a.gen_tokens,
            )?;
            let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|t| ours / t);
            let rp = ratio(cold.prefill_tokens_per_s(), lc["prefill_tok_s"].as_f64());
            let rg = ratio(cold.generation_tokens_per_s(), lc["gen_tok_s"].as_f64());
            println!(
                "llama.cpp ({threads} threads): prompt {:.1} tok/s, generation {:.1} tok/s; candle/llama.cpp = {:.2}× prefill, {:.2}× generation",
                lc["prefill_tok_s"].as_f64().unwrap_or(0.0),
                lc["gen_tok_s"].as_f64().unwrap_or(0.0),
                rp.unwrap_or(0.0),
                rg.unwrap_or(0.0)
            );
            summary["llama_cpp"] = lc;
            summary["ratio_prefill"] = json!(rp);
            summary["ratio_generation"] = json!(rg);
        }
        None => println!("llama.cpp: not measured (pass --llama-bench PATH or set LLAMA_BENCH)"),
    }
    Ok(summary)
}
