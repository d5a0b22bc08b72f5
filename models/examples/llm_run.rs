//! Runs one prompt through a local GGUF model and prints the reply and its speed figures.
//!
//! `cargo run --release -p models --example llm_run -- MODEL.gguf TOKENIZER.json THREADS
//! [fast|quantized|f32|f16] [q8|asis] "question"` (`fast`: the integer kernels; the others
//! run candle with those prompt weights)

use std::io::Write;

use models::llm::{
    ChatMessage, DecoderEngine, DecoderOptions, GenerationParams, LocalLlm, LocalLlmConfig,
    PrefillWeights,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, tokenizer, threads, prefill, requant, question] = args.as_slice() else {
        anyhow::bail!("usage: llm_run MODEL TOKENIZER THREADS PREFILL REQUANT QUESTION");
    };
    let decoder = DecoderOptions {
        engine: if prefill == "fast" {
            DecoderEngine::Fast
        } else {
            DecoderEngine::Candle
        },
        prefill: match prefill.as_str() {
            "quantized" => PrefillWeights::Quantized,
            "f16" => PrefillWeights::F16,
            _ => PrefillWeights::F32,
        },
        requantize_q8: requant == "q8",
        ..DecoderOptions::default()
    };
    let t = std::time::Instant::now();
    let llm = LocalLlm::load(&LocalLlmConfig {
        model: model.into(),
        tokenizer: tokenizer.into(),
        template: None,
        threads: threads.parse()?,
        decoder,
    })?;
    eprintln!("loaded in {:.1} s", t.elapsed().as_secs_f64());
    let system =
        "你是市政府1999市民熱線的助理。只根據提供的資料，用繁體中文簡短回答，並用[1]標示出處。";
    let params = GenerationParams {
        max_tokens: 48,
        ..GenerationParams::default()
    };
    for round in 0..2 {
        let msgs = [
            ChatMessage::system(system),
            ChatMessage::user(question.as_str()),
        ];
        let mut stream = llm.stream(&msgs, &params)?;
        for piece in &mut stream {
            print!("{}", piece?);
            std::io::stdout().flush()?;
        }
        println!();
        let s = stream.stats();
        println!(
            "round {round}: prompt {} (reused {}) prefill {:.0} ms = {:.1} tok/s; first token {:.0} ms; gen {} tokens {:.1} tok/s",
            s.prompt_tokens,
            s.reused_prompt_tokens,
            s.prefill_ms,
            s.prefill_tokens_per_s(),
            s.first_token_ms,
            s.generated_tokens,
            s.generation_tokens_per_s()
        );
    }
    Ok(())
}
