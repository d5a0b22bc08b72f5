//! Tiny models for tests: a deterministic random `E5S1` image with a small vocabulary, so the
//! converter, tokenizer and encoder mechanics are exercised without the real weights.

use crate::e5s::{quantize_q4_0, E5sFile, Hparams, RawDType, RawTensor, Vocab};

/// xorshift64*: deterministic, dependency-free pseudo-random numbers for test weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Pieces of the tiny vocabulary: specials, the metaspace, some Chinese words and characters.
pub const TINY_PIECES: &[&str] = &[
    "<s>",
    "<pad>",
    "</s>",
    "<unk>",
    "▁",
    "query",
    ":",
    "passage",
    "▁query",
    "▁passage",
    "敬老",
    "卡",
    "敬",
    "老",
    "路燈",
    "不",
    "亮",
    "申請",
    "怎麼",
    "辦",
    "？",
    "的",
    "我",
    "媽",
    "歲",
    "7",
    "0",
    "▁a",
    "b",
    "c",
];

/// A random `E5S1` image: hidden 64, 2 layers, 4 heads, ff 128, 16 positions.
pub fn tiny_e5s(seed: u64) -> E5sFile {
    let hp = Hparams {
        hidden: 64,
        layers: 2,
        heads: 4,
        ff: 128,
        vocab_rows: TINY_PIECES.len() + 2,
        max_positions: 16,
        type_vocab: 2,
        eps: 1e-12,
    };
    let mut rng = Rng::new(seed);
    let mut f32_tensor = |name: &str, n: usize, scale: f32, offset: f32| RawTensor {
        name: name.to_string(),
        dtype: RawDType::F32,
        n_elements: n,
        data: (0..n)
            .flat_map(|_| (offset + scale * rng.next_f32()).to_le_bytes())
            .collect(),
    };
    let mut tensors = vec![
        f32_tensor("emb.pos", hp.max_positions * hp.hidden, 0.1, 0.0),
        f32_tensor("emb.type", hp.type_vocab * hp.hidden, 0.1, 0.0),
        f32_tensor("emb.ln.w", hp.hidden, 0.1, 1.0),
        f32_tensor("emb.ln.b", hp.hidden, 0.1, 0.0),
    ];
    for l in 0..hp.layers {
        for (part, n) in [
            ("q.b", hp.hidden),
            ("k.b", hp.hidden),
            ("v.b", hp.hidden),
            ("ao.b", hp.hidden),
            ("fi.b", hp.ff),
            ("fo.b", hp.hidden),
        ] {
            tensors.push(f32_tensor(&format!("l{l}.{part}"), n, 0.05, 0.0));
        }
        for part in ["aln", "oln"] {
            tensors.push(f32_tensor(&format!("l{l}.{part}.w"), hp.hidden, 0.1, 1.0));
            tensors.push(f32_tensor(&format!("l{l}.{part}.b"), hp.hidden, 0.1, 0.0));
        }
    }
    let mut q4 = |name: String, n: usize, scale: f32| {
        let vals: Vec<f32> = (0..n).map(|_| scale * rng.next_f32()).collect();
        RawTensor {
            name,
            dtype: RawDType::Q4_0,
            n_elements: n,
            data: quantize_q4_0(&vals),
        }
    };
    tensors.push(q4("emb.word".into(), hp.vocab_rows * hp.hidden, 1.0));
    for l in 0..hp.layers {
        for part in ["q", "k", "v", "ao"] {
            tensors.push(q4(format!("l{l}.{part}.w"), hp.hidden * hp.hidden, 0.25));
        }
        tensors.push(q4(format!("l{l}.fi.w"), hp.ff * hp.hidden, 0.25));
        tensors.push(q4(format!("l{l}.fo.w"), hp.hidden * hp.ff, 0.2));
    }
    let scores = TINY_PIECES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i < 4 {
                0.0
            } else {
                -1.0 - p.chars().count() as f32 * 0.1 - (i as f32) * 0.01
            }
        })
        .collect();
    E5sFile {
        version: 1,
        hparams: hp,
        vocab: Vocab {
            pieces: TINY_PIECES.iter().map(|s| s.to_string()).collect(),
            scores,
            bos: 0,
            eos: 2,
            pad: 1,
            unk: 3,
        },
        normalizer: vec![(0xFF1F, vec!['？' as u32]), (0x3000, vec![' ' as u32])],
        tensors,
    }
}

/// GPT-2's byte → printable character map used by byte-level BPE vocabularies.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut out = vec!['\0'; 256];
    for &b in &printable {
        out[b as usize] = char::from_u32(b).expect("printable byte");
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            out[b as usize] = char::from_u32(256 + n).expect("mapped byte");
            n += 1;
        }
    }
    printable.clear();
    out
}

/// Special tokens of the tiny chat model, after the 256 byte tokens.
pub const TINY_LLM_SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A byte-level BPE `tokenizer.json` with the 256 byte tokens (no merges: one token per
/// byte, so every Chinese character is three tokens) and ChatML's special tokens.
pub fn tiny_tokenizer_json() -> String {
    let chars = byte_chars();
    let vocab: serde_json::Map<String, serde_json::Value> = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = TINY_LLM_SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// Writes a tiny chat model with random weights in the real GGUF layout (`arch` is `qwen2`,
/// with Q/K/V biases, or `llama`) and its tokenizer; returns `(model, tokenizer)` paths.
/// Some matrices are Q5_0 (re-quantised on load), others Q8_0, norms and biases f32.
pub fn tiny_llm(
    dir: &std::path::Path,
    arch: &str,
    seed: u64,
) -> crate::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    let (hidden, heads, kv_heads, ffn, layers) = (64usize, 4usize, 2usize, 128usize, 2usize);
    let head_dim = hidden / heads;
    let vocab = 256 + TINY_LLM_SPECIALS.len();
    let mut rng = Rng::new(seed);
    let dev = Device::Cpu;
    let mut tensor = |shape: &[usize], dtype: GgmlDType, scale: f32| -> crate::Result<QTensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.next_f32() * scale).collect();
        let t = Tensor::from_vec(data, shape, &dev)?;
        Ok(QTensor::quantize(&t, dtype)?)
    };
    let ones = |n: usize| -> crate::Result<QTensor> {
        Ok(QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &dev)?,
            GgmlDType::F32,
        )?)
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            tensor(&[vocab, hidden], GgmlDType::Q8_0, 1.0)?,
        ),
        ("output_norm.weight".into(), ones(hidden)?),
        (
            "output.weight".into(),
            tensor(&[vocab, hidden], GgmlDType::Q8_0, 0.5)?,
        ),
    ];
    for i in 0..layers {
        let b = format!("blk.{i}");
        let kv = kv_heads * head_dim;
        tensors.push((format!("{b}.attn_norm.weight"), ones(hidden)?));
        tensors.push((format!("{b}.ffn_norm.weight"), ones(hidden)?));
        tensors.push((
            format!("{b}.attn_q.weight"),
            tensor(&[hidden, hidden], GgmlDType::Q5_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.attn_k.weight"),
            tensor(&[kv, hidden], GgmlDType::Q8_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.attn_v.weight"),
            tensor(&[kv, hidden], GgmlDType::Q8_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.attn_output.weight"),
            tensor(&[hidden, hidden], GgmlDType::Q8_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.ffn_gate.weight"),
            tensor(&[ffn, hidden], GgmlDType::Q8_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.ffn_up.weight"),
            tensor(&[ffn, hidden], GgmlDType::Q5_0, 0.3)?,
        ));
        tensors.push((
            format!("{b}.ffn_down.weight"),
            tensor(&[hidden, ffn], GgmlDType::Q8_0, 0.3)?,
        ));
        if arch == "qwen2" {
            tensors.push((
                format!("{b}.attn_q.bias"),
                tensor(&[hidden], GgmlDType::F32, 0.1)?,
            ));
            tensors.push((
                format!("{b}.attn_k.bias"),
                tensor(&[kv], GgmlDType::F32, 0.1)?,
            ));
            tensors.push((
                format!("{b}.attn_v.bias"),
                tensor(&[kv], GgmlDType::F32, 0.1)?,
            ));
        }
    }
    use gguf_file::Value as V;
    let key = |k: &str| format!("{arch}.{k}");
    let meta: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String(arch.into())),
        (key("block_count"), V::U32(layers as u32)),
        (key("embedding_length"), V::U32(hidden as u32)),
        (key("feed_forward_length"), V::U32(ffn as u32)),
        (key("attention.head_count"), V::U32(heads as u32)),
        (key("attention.head_count_kv"), V::U32(kv_heads as u32)),
        (key("context_length"), V::U32(4096)),
        (key("attention.layer_norm_rms_epsilon"), V::F32(1e-6)),
        (key("rope.freq_base"), V::F32(10_000.0)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(256 + 2)),
    ];
    let model = dir.join(format!("tiny-{arch}.gguf"));
    let mut f =
        std::fs::File::create(&model).map_err(|e| crate::Error::io("creating", &model, e))?;
    let meta_refs: Vec<(&str, &V)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    let tokenizer = dir.join("tiny-tokenizer.json");
    std::fs::write(&tokenizer, tiny_tokenizer_json())
        .map_err(|e| crate::Error::io("writing", &tokenizer, e))?;
    Ok((model, tokenizer))
}
