//! The converter and the encoder on a tiny random model, checked against a plain-loop
//! reference forward pass written here from the BERT equations.

use models::convert::e5s_to_gguf;
use models::e5s::{dequantize_q4_0, E5sFile, RawDType};
use models::testing::tiny_e5s;
use models::{E5Embedder, EmbedderConfig, TextKind};

fn tensor(f: &E5sFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap_or_else(|| panic!("{name}"));
    match t.dtype {
        RawDType::F32 => t
            .data
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        RawDType::Q4_0 => dequantize_q4_0(&t.data),
    }
}

fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for i in 0..x.len() {
        x[i] = (x[i] - mean) * inv * w[i] + b[i];
    }
}

/// y = W x + b with W stored [out, in].
fn linear(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    let nin = x.len();
    b.iter()
        .enumerate()
        .map(|(o, bias)| bias + (0..nin).map(|i| w[o * nin + i] * x[i]).sum::<f32>())
        .collect()
}

fn erf(x: f32) -> f32 {
    // Abramowitz–Stegun 7.1.26 is too coarse; integrate numerically instead.
    let n = 2000;
    let h = x as f64 / n as f64;
    let mut s = 0.0;
    for i in 0..=n {
        let t = i as f64 * h;
        let c = if i == 0 || i == n { 0.5 } else { 1.0 };
        s += c * (-t * t).exp();
    }
    (s * h * 2.0 / std::f64::consts::PI.sqrt()) as f32
}

fn reference_embed(f: &E5sFile, ids: &[u32]) -> Vec<f32> {
    let hp = f.hparams;
    let (h, nh) = (hp.hidden, hp.heads);
    let hd = h / nh;
    let word = tensor(f, "emb.word");
    let pos = tensor(f, "emb.pos");
    let typ = tensor(f, "emb.type");
    let mut x: Vec<Vec<f32>> = ids
        .iter()
        .enumerate()
        .map(|(t, &id)| {
            let mut r: Vec<f32> = (0..h)
                .map(|i| word[id as usize * h + i] + pos[t * h + i] + typ[i])
                .collect();
            layer_norm(
                &mut r,
                &tensor(f, "emb.ln.w"),
                &tensor(f, "emb.ln.b"),
                hp.eps,
            );
            r
        })
        .collect();
    for l in 0..hp.layers {
        let g = |p: &str| tensor(f, &format!("l{l}.{p}"));
        let q: Vec<Vec<f32>> = x.iter().map(|r| linear(&g("q.w"), &g("q.b"), r)).collect();
        let k: Vec<Vec<f32>> = x.iter().map(|r| linear(&g("k.w"), &g("k.b"), r)).collect();
        let v: Vec<Vec<f32>> = x.iter().map(|r| linear(&g("v.w"), &g("v.b"), r)).collect();
        let n = x.len();
        let mut ctx = vec![vec![0f32; h]; n];
        for t in 0..n {
            for head in 0..nh {
                let s: Vec<f32> = (0..n)
                    .map(|u| {
                        (0..hd)
                            .map(|e| q[t][head * hd + e] * k[u][head * hd + e])
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for u in 0..n {
                    for d in 0..hd {
                        ctx[t][head * hd + d] += e[u] / z * v[u][head * hd + d];
                    }
                }
            }
        }
        for t in 0..n {
            let a = linear(&g("ao.w"), &g("ao.b"), &ctx[t]);
            x[t].iter_mut().zip(&a).for_each(|(xi, ai)| *xi += ai);
            layer_norm(&mut x[t], &g("aln.w"), &g("aln.b"), hp.eps);
            let mid: Vec<f32> = linear(&g("fi.w"), &g("fi.b"), &x[t])
                .into_iter()
                .map(|v| 0.5 * v * (1.0 + erf(v / std::f32::consts::SQRT_2)))
                .collect();
            let o = linear(&g("fo.w"), &g("fo.b"), &mid);
            x[t].iter_mut().zip(&o).for_each(|(xi, oi)| *xi += oi);
            layer_norm(&mut x[t], &g("oln.w"), &g("oln.b"), hp.eps);
        }
    }
    let mut mean = vec![0f32; h];
    for r in &x {
        mean.iter_mut()
            .zip(r)
            .for_each(|(m, v)| *m += v / x.len() as f32);
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    mean.iter().map(|v| v / norm).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
        / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn load_tiny(dir: &tempfile::TempDir, seed: u64) -> (E5sFile, E5Embedder) {
    let image = tiny_e5s(seed);
    // Round-trip through the on-disk E5S1 format first, as setup does.
    let reparsed = E5sFile::parse(&image.to_bytes()).expect("tiny image parses");
    assert_eq!(reparsed, image);
    let gguf = e5s_to_gguf(&reparsed).expect("convert");
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, gguf).unwrap();
    let emb = E5Embedder::load(&path, "tiny", EmbedderConfig::default()).expect("load");
    (image, emb)
}

#[test]
fn converted_tiny_model_matches_reference_forward() {
    let dir = tempfile::tempdir().unwrap();
    let (image, emb) = load_tiny(&dir, 7);
    assert_eq!(emb.dim(), 64);
    for text in ["敬老卡怎麼申請？", "路燈不亮", "我媽70歲"] {
        let got = emb.embed(&[text], TextKind::Query).unwrap().remove(0);
        let mut ids = vec![0u32];
        ids.extend(emb.tokenizer().encode(&format!("query: {text}")));
        ids.push(2);
        let want = reference_embed(&image, &ids);
        let cos = cosine(&got, &want);
        // Candle quantises activations to 8 bits inside the Q4_0 matmul; the reference does not.
        assert!(cos > 0.995, "{text}: cosine {cos}");
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn batching_and_padding_do_not_change_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let (_, emb) = load_tiny(&dir, 11);
    let texts = ["敬老卡", "路燈不亮怎麼辦？我媽", "申請"];
    let together = emb.embed(&texts, TextKind::Passage).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let alone = emb.embed(&[t], TextKind::Passage).unwrap().remove(0);
        assert!(cosine(&alone, &together[i]) > 0.9999, "{t}");
    }
    // Query and passage prefixes give different vectors for the same text.
    let q = emb.embed(&["敬老卡"], TextKind::Query).unwrap().remove(0);
    assert!(cosine(&q, &together[0]) < 0.9999);
}

#[test]
fn long_texts_are_windowed_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (_, emb) = load_tiny(&dir, 3);
    // 16 positions → 14 content tokens per window; this text needs several windows.
    let long = "敬老卡申請".repeat(8);
    let head = "敬老卡申請".repeat(2);
    let a = emb
        .embed(&[long.as_str()], TextKind::Passage)
        .unwrap()
        .remove(0);
    let b = emb
        .embed(&[head.as_str()], TextKind::Passage)
        .unwrap()
        .remove(0);
    assert_eq!(a.len(), 64);
    assert!(a.iter().all(|v| v.is_finite()));
    assert!(cosine(&a, &b) < 0.9999, "the tail must contribute");
}

#[test]
fn a_truncated_gguf_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = e5s_to_gguf(&tiny_e5s(1)).unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, &gguf[..gguf.len() / 2]).unwrap();
    let err = E5Embedder::load(&path, "x", EmbedderConfig::default())
        .err()
        .expect("must fail");
    let msg = format!("{err}");
    assert!(msg.contains("broken.gguf"), "{msg}");
    let missing = E5Embedder::load(
        &dir.path().join("nope.gguf"),
        "x",
        EmbedderConfig::default(),
    )
    .err()
    .unwrap();
    assert!(
        format!("{missing}").contains("assistant setup"),
        "{missing}"
    );
}

#[test]
fn packed_engine_agrees_with_the_candle_path_and_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let image = tiny_e5s(21);
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, e5s_to_gguf(&image).unwrap()).unwrap();
    let load = |engine| {
        E5Embedder::load(
            &path,
            "tiny",
            EmbedderConfig {
                engine,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let packed = load(models::EmbedEngine::Packed);
    let candle = load(models::EmbedEngine::Candle);
    // Enough texts of mixed length that the batched (tiled) product runs, and a long one
    // that is windowed.
    let long = "路燈不亮怎麼辦".repeat(6);
    let mut texts = vec!["敬老卡", "路燈不亮怎麼辦？我媽", long.as_str()];
    texts.extend(["垃圾車", "低收入戶補助", "公園", "停車費"].iter().copied());
    let a = packed.embed(&texts, TextKind::Passage).unwrap();
    let b = candle.embed(&texts, TextKind::Passage).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let c = cosine(&a[i], &b[i]);
        assert!(c > 0.999, "{t}: packed vs candle cosine {c}");
        let mut ids = vec![0u32];
        ids.extend(packed.tokenizer().encode(&format!("passage: {t}")));
        ids.push(2);
        if ids.len() <= 16 {
            let r = cosine(&a[i], &reference_embed(&image, &ids));
            assert!(r > 0.995, "{t}: packed vs reference cosine {r}");
        }
    }
    // A batch and one text alone give the same vector (no padding to leak in).
    let alone = packed
        .embed(&[texts[1]], TextKind::Passage)
        .unwrap()
        .remove(0);
    assert!(cosine(&alone, &a[1]) > 0.9999);
}
