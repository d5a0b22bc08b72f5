//! Converts the `E5S1` image into a GGUF file that candle loads: BERT tensors under llama.cpp's
//! names (Q4_0 weight matrices kept quantised, everything else f32) and the unigram tokenizer
//! with its normalisation map in the metadata, so one file carries the whole embedder.

use std::io::Cursor;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::e5s::{E5sFile, RawDType};
use crate::error::Result;

/// Bumped whenever the GGUF layout written here changes; part of the embedder's identity.
pub const GGUF_LAYOUT_VERSION: u32 = 1;

pub(crate) mod keys {
    pub const ARCH: &str = "general.architecture";
    pub const NAME: &str = "general.name";
    pub const LAYOUT: &str = "e5.layout_version";
    pub const HIDDEN: &str = "bert.embedding_length";
    pub const LAYERS: &str = "bert.block_count";
    pub const HEADS: &str = "bert.attention.head_count";
    pub const FF: &str = "bert.feed_forward_length";
    pub const CONTEXT: &str = "bert.context_length";
    pub const EPS: &str = "bert.attention.layer_norm_epsilon";
    pub const POOLING: &str = "bert.pooling_type";
    pub const TOK_MODEL: &str = "tokenizer.ggml.model";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const SCORES: &str = "tokenizer.ggml.scores";
    pub const BOS: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS: &str = "tokenizer.ggml.eos_token_id";
    pub const PAD: &str = "tokenizer.ggml.padding_token_id";
    pub const UNK: &str = "tokenizer.ggml.unknown_token_id";
    pub const NORM_CP: &str = "tokenizer.e5.normalizer.codepoints";
    pub const NORM_LEN: &str = "tokenizer.e5.normalizer.lengths";
    pub const NORM_OUT: &str = "tokenizer.e5.normalizer.replacements";
}

/// Maps an `E5S1` tensor name to its GGUF (llama.cpp BERT) name.
pub fn gguf_name(e5_name: &str) -> Option<String> {
    let fixed = match e5_name {
        "emb.word" => Some("token_embd.weight"),
        "emb.pos" => Some("position_embd.weight"),
        "emb.type" => Some("token_types.weight"),
        "emb.ln.w" => Some("token_embd_norm.weight"),
        "emb.ln.b" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = e5_name.strip_prefix('l')?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, wb) = rest.rsplit_once('.')?;
    let part = match part {
        "q" => "attn_q",
        "k" => "attn_k",
        "v" => "attn_v",
        "ao" => "attn_output",
        "aln" => "attn_output_norm",
        "fi" => "ffn_up",
        "fo" => "ffn_down",
        "oln" => "layer_output_norm",
        _ => return None,
    };
    let wb = match wb {
        "w" => "weight",
        "b" => "bias",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}.{wb}"))
}

/// The 2-D (or 1-D) shape of a tensor, rows first.
fn shape_of(file: &E5sFile, e5_name: &str, n: usize) -> Vec<usize> {
    let h = &file.hparams;
    let is_weight = e5_name.ends_with(".w") && !e5_name.contains("ln");
    match e5_name {
        "emb.word" => vec![h.vocab_rows, h.hidden],
        "emb.pos" => vec![h.max_positions, h.hidden],
        "emb.type" => vec![h.type_vocab, h.hidden],
        _ if is_weight && e5_name.ends_with("fi.w") => vec![h.ff, h.hidden],
        _ if is_weight && e5_name.ends_with("fo.w") => vec![h.hidden, h.ff],
        _ if is_weight => vec![h.hidden, h.hidden],
        _ => vec![n],
    }
}

/// Writes the GGUF image for `file` and returns its bytes.
pub fn e5s_to_gguf(file: &E5sFile) -> Result<Vec<u8>> {
    use gguf_file::Value;
    let h = &file.hparams;
    let dev = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(file.tensors.len());
    for t in &file.tensors {
        let name = gguf_name(&t.name).ok_or_else(|| {
            candle_core::Error::Msg(format!("unexpected tensor `{}` in E5S1 image", t.name))
        })?;
        let dims = shape_of(file, &t.name, t.n_elements);
        if dims.iter().product::<usize>() != t.n_elements {
            return Err(candle_core::Error::Msg(format!(
                "tensor `{}` has {} elements, expected shape {dims:?}",
                t.name, t.n_elements
            ))
            .into());
        }
        let dtype = match t.dtype {
            RawDType::F32 => GgmlDType::F32,
            RawDType::Q4_0 => GgmlDType::Q4_0,
        };
        tensors.push((name, qtensor_from_ggml(dtype, &t.data, dims, &dev)?));
    }

    let v = &file.vocab;
    let mut norm_cp = Vec::with_capacity(file.normalizer.len());
    let mut norm_len = Vec::with_capacity(file.normalizer.len());
    let mut norm_out = Vec::new();
    for (cp, outs) in &file.normalizer {
        norm_cp.push(Value::U32(*cp));
        norm_len.push(Value::U32(outs.len() as u32));
        norm_out.extend(outs.iter().map(|&o| Value::U32(o)));
    }
    let meta: Vec<(&str, Value)> = vec![
        (keys::ARCH, Value::String("bert".into())),
        (keys::NAME, Value::String("multilingual-e5-small".into())),
        (keys::LAYOUT, Value::U32(GGUF_LAYOUT_VERSION)),
        (keys::HIDDEN, Value::U32(h.hidden as u32)),
        (keys::LAYERS, Value::U32(h.layers as u32)),
        (keys::HEADS, Value::U32(h.heads as u32)),
        (keys::FF, Value::U32(h.ff as u32)),
        (keys::CONTEXT, Value::U32(h.max_positions as u32)),
        (keys::EPS, Value::F32(h.eps)),
        (keys::POOLING, Value::U32(1)),
        (keys::TOK_MODEL, Value::String("unigram".into())),
        (
            keys::TOKENS,
            Value::Array(v.pieces.iter().map(|p| Value::String(p.clone())).collect()),
        ),
        (
            keys::SCORES,
            Value::Array(v.scores.iter().map(|&s| Value::F32(s)).collect()),
        ),
        (keys::BOS, Value::U32(v.bos)),
        (keys::EOS, Value::U32(v.eos)),
        (keys::PAD, Value::U32(v.pad)),
        (keys::UNK, Value::U32(v.unk)),
        (keys::NORM_CP, Value::Array(norm_cp)),
        (keys::NORM_LEN, Value::Array(norm_len)),
        (keys::NORM_OUT, Value::Array(norm_out)),
    ];
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta_refs, &tensor_refs)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_follow_llama_cpp_bert() {
        assert_eq!(gguf_name("l11.fo.w").unwrap(), "blk.11.ffn_down.weight");
        assert_eq!(
            gguf_name("l0.aln.b").unwrap(),
            "blk.0.attn_output_norm.bias"
        );
        assert_eq!(gguf_name("emb.word").unwrap(), "token_embd.weight");
        assert!(gguf_name("l0.zz.w").is_none());
        assert!(gguf_name("x").is_none());
    }
}
