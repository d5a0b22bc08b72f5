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
