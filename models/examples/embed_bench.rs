//! Embedding throughput on the bundled guides: 4-bit weights vs f32 weights, same run.
//! `cargo run --release -p models --example embed_bench -- MODEL.gguf corpus/guides`

use std::time::Instant;

use models::{E5Embedder, EmbedderConfig, TextKind};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = std::path::Path::new(&args[1]);
    let mut texts = Vec::new();
    for e in std::fs::read_dir(&args[2]).unwrap() {
        let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
        texts.extend(
            t.split("\n\n")
                .filter(|p| p.chars().count() > 30)
                .map(str::to_string),
        );
    }
    texts.truncate(128);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for dequantize in [false, true] {
        let e = E5Embedder::load(
            model,
            "bench",
            EmbedderConfig {
                dequantize,
                ..Default::default()
            },
        )
        .unwrap();
        let tokens: usize = refs
            .iter()
            .map(|t| e.token_count(t, TextKind::Passage))
            .sum();
        let t0 = Instant::now();
        e.embed(&refs, TextKind::Passage).unwrap();
        let s = t0.elapsed().as_secs_f64();
        println!(
            "dequantize={dequantize}: {} passages, {tokens} tokens, {s:.2}s, {:.0} tokens/s",
            refs.len(),
            tokens as f64 / s
        );
    }
}
