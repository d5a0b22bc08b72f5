//! Converts OpenAI whisper weights in CTranslate2 format (faster-whisper's `model.bin`, binary
//! version 6, plus its `vocabulary.json`) into the ggml file whisper.cpp loads: hparams, the
//! Slaney mel filter bank computed here, the byte-level vocabulary, and the tensors under
//! whisper.cpp's names with CTranslate2's fused attention projections split apart.
//!
//! The layout follows whisper.cpp's `convert-pt-to-ggml.py`: weight matrices (2-D and the
//! convolutions) stay float16; vectors, the convolution biases (as `[1, n]`) and the positional
//! embeddings are float32.

use std::collections::BTreeMap;

use half::f16;

/// `ggml` in little-endian: the magic of whisper.cpp's model files.
const GGML_MAGIC: u32 = 0x6767_6d6c;

/// One CTranslate2 variable: its shape and raw little-endian data.
#[derive(Debug, Clone)]
pub struct Ct2Var<'a> {
    pub dims: Vec<usize>,
    pub dtype: Ct2DType,
    pub data: &'a [u8],
}

/// CTranslate2's data types (the `u8` stored after the shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2DType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Ct2DType::F32,
            1 => Ct2DType::I8,
            2 => Ct2DType::I16,
            3 => Ct2DType::I32,
            4 => Ct2DType::F16,
            5 => Ct2DType::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2DType::I8 => 1,
            Ct2DType::I16 | Ct2DType::F16 | Ct2DType::Bf16 => 2,
            Ct2DType::F32 | Ct2DType::I32 => 4,
        }
    }
}

/// A parsed CTranslate2 `model.bin` (borrowing the file's bytes).
#[derive(Debug)]
pub struct Ct2Model<'a> {
    pub spec: String,
    pub revision: u32,
    pub vars: BTreeMap<String, Ct2Var<'a>>,
    /// `alias → target` (e.g. the output projection tied to the token embedding).
    pub aliases: BTreeMap<String, String>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at byte {} while reading {what} ({n} bytes wanted, {} left)",
                self.pos,
                self.bytes.len() - self.pos
            ));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A u16-length string with a trailing NUL.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

impl<'a> Ct2Model<'a> {
    /// Parses a CTranslate2 model file (binary version 6).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u32("the version")?;
        if version != 6 {
            return Err(format!("binary version {version}, expected 6"));
        }
        let spec = r.string("the spec name")?;
        let revision = r.u32("the spec revision")?;
        let count = r.u32("the variable count")? as usize;
        let mut vars = BTreeMap::new();
        for i in 0..count {
            let name = r.string("a variable name")?;
            let rank = r.u8("a rank")? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(r.u32("a dimension")? as usize);
            }
            let code = r.u8("a data type")?;
            let dtype = Ct2DType::from_u8(code)
                .ok_or_else(|| format!("{name}: unknown data type {code}"))?;
            let nbytes = r.u32("a byte count")? as usize;
            let elements: usize = dims.iter().product::<usize>().max(1);
            if elements * dtype.size() != nbytes {
                return Err(format!(
                    "{name}: {nbytes} bytes for shape {dims:?} of {dtype:?} (variable {i} of {count})"
                ));
            }
            let data = r.take(nbytes, &name)?;
            vars.insert(name, Ct2Var { dims, dtype, data });
        }
        let mut aliases = BTreeMap::new();
        if r.pos < bytes.len() {
            let n = r.u32("the alias count")? as usize;
            for _ in 0..n {
                let alias = r.string("an alias")?;
                let target = r.string("an alias target")?;
                aliases.insert(alias, target);
            }
        }
        if r.pos != bytes.len() {
            return Err(format!(
                "{} unexpected bytes after the aliases",
                bytes.len() - r.pos
            ));
        }
        Ok(Ct2Model {
            spec,
            revision,
            vars,
            aliases,
        })
    }

    fn var(&self, name: &str) -> Result<&Ct2Var<'a>, String> {
        self.vars
            .get(name)
            .or_else(|| self.aliases.get(name).and_then(|t| self.vars.get(t)))
            .ok_or_else(|| format!("missing variable {name}"))
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        let v = self.var(name)?;
        Ok(match v.dtype {
            Ct2DType::I8 => v.data[0] as i8 as i64,
            Ct2DType::I16 => i16::from_le_bytes([v.data[0], v.data[1]]) as i64,
            Ct2DType::I32 => {
                i32::from_le_bytes([v.data[0], v.data[1], v.data[2], v.data[3]]) as i64
            }
            other => return Err(format!("{name} is {other:?}, expected an integer")),
        })
    }

    fn count_layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.vars
                    .keys()
                    .any(|k| k.starts_with(&format!("{prefix}/layer_{i}/")))
            })
            .count()
    }
}

/// whisper.cpp's hyperparameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: u32,
    pub n_audio_ctx: u32,
    pub n_audio_state: u32,
    pub n_audio_head: u32,
    pub n_audio_layer: u32,
    pub n_text_ctx: u32,
    pub n_text_state: u32,
    pub n_text_head: u32,
    pub n_text_layer: u32,
    pub n_mels: u32,
}

/// The mel filter bank whisper uses (`librosa.filters.mel(sr, n_fft, n_mels)`: Slaney mel
/// scale, Slaney area normalisation), row-major `n_mels × (n_fft/2 + 1)`.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    fn hz_to_mel(f: f64) -> f64 {
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() / logstep
        } else {
            f / f_sp
        }
    }
    fn mel_to_hz(m: f64) -> f64 {
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if m >= min_log_mel {
            min_log_hz * (logstep * (m - min_log_mel)).exp()
        } else {
            f_sp * m
        }
    }
    let n_freq = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|i| i as f64 * (sample_rate / 2.0) / (n_freq - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * n_freq];
    for m in 0..n_mels {
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        let (d0, d1) = (mel_f[m + 1] - mel_f[m], mel_f[m + 2] - mel_f[m + 1]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / d0;
            let upper = (mel_f[m + 2] - f) / d1;
            out[m * n_freq + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    out
}

/// GPT-2's byte-level alphabet, inverted: the printable character standing for each byte → byte.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.iter()
        .zip(&cs)
        .map(|(&b, &c)| (char::from_u32(c).expect("valid code point"), b as u8))
        .collect()
}

/// The byte strings of the ordinary tokens: every entry of `vocabulary.json` before
/// `<|endoftext|>` (whisper.cpp adds the special tokens itself).
pub fn byte_level_vocabulary(vocabulary_json: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let tokens: Vec<String> = serde_json::from_slice(vocabulary_json)
        .map_err(|e| format!("vocabulary.json is not a list of strings: {e}"))?;
    let end = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .ok_or("vocabulary.json has no <|endoftext|>")?;
    let decoder = byte_decoder();
    tokens[..end]
        .iter()
        .map(|t| {
            t.chars()
                .map(|c| {
                    decoder.get(&c).copied().ok_or_else(|| {
                        format!("token {t:?} has a character outside the byte alphabet")
                    })
                })
                .collect()
        })
        .collect()
}

struct GgmlWriter {
    out: Vec<u8>,
    tensors: usize,
}

impl GgmlWriter {
    fn i32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes one tensor. `dims` are in row-major (PyTorch) order; ggml takes them reversed.
    /// `data` is float16; `f32` converts it.
    fn tensor(&mut self, name: &str, dims: &[usize], data: &[u8], f32_out: bool) {
        self.i32(dims.len() as u32);
        self.i32(name.len() as u32);
        self.i32(if f32_out { 0 } else { 1 });
        for d in dims.iter().rev() {
            self.i32(*d as u32);
        }
        self.out.extend_from_slice(name.as_bytes());
        if f32_out {
            for c in data.chunks_exact(2) {
                let v = f16::from_le_bytes([c[0], c[1]]).to_f32();
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            self.out.extend_from_slice(data);
        }
        self.tensors += 1;
    }
}

/// The rows `[from, to)` of a row-major float16 matrix (or vector, with `cols = 1`).
fn rows<'a>(var: &Ct2Var<'a>, from: usize, to: usize) -> &'a [u8] {
    let cols: usize = var.dims.iter().skip(1).product::<usize>().max(1);
    &var.data[from * cols * 2..to * cols * 2]
}

/// The result of a conversion: the ggml bytes and what went into them.
#[derive(Debug)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub hparams: WhisperHparams,
    pub tensors: usize,
    pub tokens: usize,
}

/// Converts a CTranslate2 whisper model and its vocabulary into whisper.cpp's ggml format.
pub fn ct2_whisper_to_ggml(model_bin: &[u8], vocabulary_json: &[u8]) -> Result<Converted, String> {
    let m = Ct2Model::parse(model_bin)?;
    if !m.spec.starts_with("WhisperSpec") {
        return Err(format!("spec {:?}, expected WhisperSpec", m.spec));
    }
    for v in m.vars.values() {
        if !v.dims.is_empty() && v.dtype != Ct2DType::F16 {
            return Err(format!(
                "weights are {:?}; this converter takes float16 models",
                v.dtype
            ));
        }
    }
    let embed = m.var("decoder/embeddings/weight")?;
    let enc_pos = m.var("encoder/position_encodings/encodings")?;
    let dec_pos = m.var("decoder/position_encodings/encodings")?;
    let conv1 = m.var("encoder/conv1/weight")?;
    let h = WhisperHparams {
        n_vocab: embed.dims[0] as u32,
        n_audio_ctx: enc_pos.dims[0] as u32,
        n_audio_state: enc_pos.dims[1] as u32,
        n_audio_head: m.int("encoder/num_heads")? as u32,
        n_audio_layer: m.count_layers("encoder") as u32,
        n_text_ctx: dec_pos.dims[0] as u32,
        n_text_state: dec_pos.dims[1] as u32,
        n_text_head: m.int("decoder/num_heads")? as u32,
        n_text_layer: m.count_layers("decoder") as u32,
        n_mels: conv1.dims[1] as u32,
    };
    if h.n_audio_layer == 0 || h.n_text_layer == 0 {
        return Err("no encoder or decoder layers".into());
    }
    let tokens = byte_level_vocabulary(vocabulary_json)?;
    if tokens.len() >= h.n_vocab as usize {
        return Err(format!(
            "{} ordinary tokens for an embedding of {} rows",
            tokens.len(),
            h.n_vocab
        ));
    }

    let mut w = GgmlWriter {
        out: Vec::with_capacity(model_bin.len() + (4 << 20)),
        tensors: 0,
    };
    w.i32(GGML_MAGIC);
    for v in [
        h.n_vocab,
        h.n_audio_ctx,
        h.n_audio_state,
        h.n_audio_head,
        h.n_audio_layer,
        h.n_text_ctx,
        h.n_text_state,
        h.n_text_head,
        h.n_text_layer,
        h.n_mels,
        1, // ftype: float16 weights
    ] {
        w.i32(v);
    }
    let (n_fft, n_freq) = (400usize, 201usize);
    let filters = mel_filters(16_000.0, n_fft, h.n_mels as usize);
    w.i32(h.n_mels);
    w.i32(n_freq as u32);
    for f in &filters {
        w.out.extend_from_slice(&f.to_le_bytes());
    }
    w.i32(tokens.len() as u32);
    for t in &tokens {
        w.i32(t.len() as u32);
        w.out.extend_from_slice(t);
    }

    // Plain copies: (ggml name, CT2 name). Vectors become f32; matrices stay f16.
    let copy = |w: &mut GgmlWriter, name: &str, ct2: &str| -> Result<(), String> {
        let v = m.var(ct2)?;
        w.tensor(name, &v.dims, v.data, v.dims.len() < 2);
        Ok(())
    };
    let layer_norm = |w: &mut GgmlWriter, name: &str, ct2: &str| -> Result<(), String> {
        copy(w, &format!("{name}.weight"), &format!("{ct2}/gamma"))?;
        copy(w, &format!("{name}.bias"), &format!("{ct2}/beta"))
    };
    let linear = |w: &mut GgmlWriter, name: &str, ct2: &str| -> Result<(), String> {
        copy(w, &format!("{name}.weight"), &format!("{ct2}/weight"))?;
        copy(w, &format!("{name}.bias"), &format!("{ct2}/bias"))
    };
    // A fused projection [parts × n, in] split into its parts. The key bias is dropped: adding
    // the same vector to every key shifts all scores of a query equally, so softmax attention
    // does not depend on it (and it is zero in whisper), and whisper.cpp has no tensor for it.
    let attention = |w: &mut GgmlWriter, p: &str, ct2: &str, fused: &str, names: &[&str]| {
        let qualified: Vec<String> = names.iter().map(|n| format!("{p}.{n}")).collect();
        let weight = m.var(&format!("{ct2}/{fused}/weight"))?;
        let n = weight.dims[0] / names.len();
        for (i, q) in qualified.iter().enumerate() {
            let wd = rows(weight, i * n, (i + 1) * n);
            w.tensor(&format!("{q}.weight"), &[n, weight.dims[1]], wd, false);
            if !q.ends_with(".key") {
                let bias = m.var(&format!("{ct2}/{fused}/bias"))?;
                w.tensor(
                    &format!("{q}.bias"),
                    &[n],
                    rows(bias, i * n, (i + 1) * n),
                    true,
                );
            }
        }
        Ok::<(), String>(())
    };

    // Encoder.
    w.tensor(
        "encoder.positional_embedding",
        &enc_pos.dims,
        enc_pos.data,
        true,
    );
    for c in ["conv1", "conv2"] {
        let wt = m.var(&format!("encoder/{c}/weight"))?;
        w.tensor(&format!("encoder.{c}.weight"), &wt.dims, wt.data, false);
        let b = m.var(&format!("encoder/{c}/bias"))?;
        w.tensor(&format!("encoder.{c}.bias"), &[b.dims[0], 1], b.data, true);
    }
    for l in 0..h.n_audio_layer {
        let p = format!("encoder.blocks.{l}");
        let c = format!("encoder/layer_{l}");
        attention(
            &mut w,
            &format!("{p}.attn"),
            &format!("{c}/self_attention"),
            "linear_0",
            &["query", "key", "value"],
        )?;
        linear(
            &mut w,
            &format!("{p}.attn.out"),
            &format!("{c}/self_attention/linear_1"),
        )?;
        layer_norm(
            &mut w,
            &format!("{p}.attn_ln"),
            &format!("{c}/self_attention/layer_norm"),
        )?;
        linear(&mut w, &format!("{p}.mlp.0"), &format!("{c}/ffn/linear_0"))?;
        linear(&mut w, &format!("{p}.mlp.2"), &format!("{c}/ffn/linear_1"))?;
        layer_norm(
            &mut w,
            &format!("{p}.mlp_ln"),
            &format!("{c}/ffn/layer_norm"),
        )?;
    }
    layer_norm(&mut w, "encoder.ln_post", "encoder/layer_norm")?;

    // Decoder.
    w.tensor(
        "decoder.positional_embedding",
        &dec_pos.dims,
        dec_pos.data,
        true,
    );
    w.tensor(
        "decoder.token_embedding.weight",
        &embed.dims,
        embed.data,
        false,
    );
    for l in 0..h.n_text_layer {
        let p = format!("decoder.blocks.{l}");
        let c = format!("decoder/layer_{l}");
        attention(
            &mut w,
            &format!("{p}.attn"),
            &format!("{c}/self_attention"),
            "linear_0",
            &["query", "key", "value"],
        )?;
        linear(
            &mut w,
            &format!("{p}.attn.out"),
            &format!("{c}/self_attention/linear_1"),
        )?;
        layer_norm(
            &mut w,
            &format!("{p}.attn_ln"),
            &format!("{c}/self_attention/layer_norm"),
        )?;
        linear(
            &mut w,
            &format!("{p}.cross_attn.query"),
            &format!("{c}/attention/linear_0"),
        )?;
        attention(
            &mut w,
            &format!("{p}.cross_attn"),
            &format!("{c}/attention"),
            "linear_1",
            &["key", "value"],
        )?;
        linear(
            &mut w,
            &format!("{p}.cross_attn.out"),
            &format!("{c}/attention/linear_2"),
        )?;
        layer_norm(
            &mut w,
            &format!("{p}.cross_attn_ln"),
            &format!("{c}/attention/layer_norm"),
        )?;
        linear(&mut w, &format!("{p}.mlp.0"), &format!("{c}/ffn/linear_0"))?;
        linear(&mut w, &format!("{p}.mlp.2"), &format!("{c}/ffn/linear_1"))?;
        layer_norm(
            &mut w,
            &format!("{p}.mlp_ln"),
            &format!("{c}/ffn/layer_norm"),
        )?;
    }
    layer_norm(&mut w, "decoder.ln", "decoder/layer_norm")?;

    Ok(Converted {
        tensors: w.tensors,
        bytes: w.out,
        hparams: h,
        tokens: tokens.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_filters_match_librosa_slaney() {
        // Values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (whisper's
        // mel_filters.npz): each row is a triangle with Slaney area normalisation.
        let f = mel_filters(16_000.0, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        // Row 0 is the single bin at 40 Hz; row 40 spans bins 42–44 (librosa's values).
        let row0 = &f[..201];
        assert_eq!(row0[0], 0.0);
        assert!((row0[1] - 0.024_862_594).abs() < 1e-7, "{}", row0[1]);
        assert!(row0[2..].iter().all(|&v| v == 0.0));
        let row40 = &f[40 * 201..41 * 201];
        let nonzero: Vec<usize> = (0..201).filter(|&k| row40[k] > 0.0).collect();
        assert_eq!(nonzero, vec![42, 43, 44]);
        assert!((row40[43] - 0.014_735_566).abs() < 1e-7, "{}", row40[43]);
        // The last row covers the top of the spectrum and nothing reaches the Nyquist bin.
        let last = &f[79 * 201..];
        assert_eq!(last[200], 0.0);
        assert!(last[190..200].iter().any(|&v| v > 0.0));
        // Slaney normalisation gives every triangle unit area in Hz, so with 40 Hz bins each
        // wide enough row sums to about 1/40.
        for r in 20..80 {
            let sum: f32 = f[r * 201..(r + 1) * 201].iter().sum();
            assert!((sum - 0.025).abs() < 0.003, "row {r}: {sum}");
        }
    }

    #[test]
    fn byte_level_tokens_decode_to_raw_bytes() {
        let json = br#"["!", "\u0120the", "\u00e5\u013e\u00b0", "\u0100", "<|endoftext|>", "<|startoftranscript|>"]"#;
        let v = byte_level_vocabulary(json).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], b"!");
        assert_eq!(v[1], b" the");
        assert_eq!(v[2], "地".as_bytes());
        assert_eq!(v[3], vec![0u8]);
        assert!(byte_level_vocabulary(br#"["a"]"#).is_err());
    }

    /// A tiny CT2 whisper file (1 encoder and 1 decoder layer, width 4, 2 mels) built here.
    fn tiny_ct2() -> Vec<u8> {
        let mut vars: Vec<(String, Vec<usize>, u8, Vec<u8>)> = Vec::new();
        let mut counter = 0u16;
        let mut f16s = |dims: &[usize]| -> Vec<u8> {
            let n: usize = dims.iter().product();
            (0..n)
                .flat_map(|_| {
                    counter += 1;
                    f16::from_f32(counter as f32 / 64.0).to_le_bytes()
                })
                .collect()
        };
        let d = 4;
        let mut add = |name: &str, dims: &[usize]| {
            let data = f16s(dims);
            vars.push((name.to_string(), dims.to_vec(), 4, data));
        };
        add("encoder/conv1/weight", &[d, 2, 3]);
        add("encoder/conv1/bias", &[d]);
        add("encoder/conv2/weight", &[d, d, 3]);
        add("encoder/conv2/bias", &[d]);
        add("encoder/position_encodings/encodings", &[6, d]);
        add("decoder/position_encodings/encodings", &[5, d]);
        add("decoder/embeddings/weight", &[8, d]);
        for side in ["encoder", "decoder"] {
            let c = format!("{side}/layer_0");
            add(&format!("{c}/self_attention/linear_0/weight"), &[3 * d, d]);
            add(&format!("{c}/self_attention/linear_0/bias"), &[3 * d]);
            add(&format!("{c}/self_attention/linear_1/weight"), &[d, d]);
            add(&format!("{c}/self_attention/linear_1/bias"), &[d]);
            for ln in ["self_attention/layer_norm", "ffn/layer_norm"] {
                add(&format!("{c}/{ln}/gamma"), &[d]);
                add(&format!("{c}/{ln}/beta"), &[d]);
            }
            add(&format!("{c}/ffn/linear_0/weight"), &[2 * d, d]);
            add(&format!("{c}/ffn/linear_0/bias"), &[2 * d]);
            add(&format!("{c}/ffn/linear_1/weight"), &[d, 2 * d]);
            add(&format!("{c}/ffn/linear_1/bias"), &[d]);
            add(&format!("{side}/layer_norm/gamma"), &[d]);
            add(&format!("{side}/layer_norm/beta"), &[d]);
        }
        let c = "decoder/layer_0/attention";
        add(&format!("{c}/layer_norm/gamma"), &[d]);
        add(&format!("{c}/layer_norm/beta"), &[d]);
        add(&format!("{c}/linear_0/weight"), &[d, d]);
        add(&format!("{c}/linear_0/bias"), &[d]);
        add(&format!("{c}/linear_1/weight"), &[2 * d, d]);
        add(&format!("{c}/linear_1/bias"), &[2 * d]);
        add(&format!("{c}/linear_2/weight"), &[d, d]);
        add(&format!("{c}/linear_2/bias"), &[d]);
        for side in ["encoder", "decoder"] {
            vars.push((
                format!("{side}/num_heads"),
                vec![],
                2,
                2i16.to_le_bytes().to_vec(),
            ));
        }
        let s = |out: &mut Vec<u8>, t: &str| {
            out.extend_from_slice(&((t.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
            out.push(0);
        };
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        s(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in &vars {
            s(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&1u32.to_le_bytes());
        s(&mut out, "decoder/projection/weight");
        s(&mut out, "decoder/embeddings/weight");
        out
    }

    /// One tensor read back: name, ggml dims, type (0 f32, 1 f16), values.
    type ReadTensor = (String, Vec<u32>, u32, Vec<f32>);

    /// Reads a ggml whisper file back: hparams, then each tensor.
    fn read_ggml(b: &[u8]) -> (Vec<u32>, Vec<ReadTensor>) {
        let u = |p: &mut usize| {
            let v = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
            *p += 4;
            v
        };
        let mut p = 0;
        assert_eq!(u(&mut p), GGML_MAGIC);
        let hp: Vec<u32> = (0..11).map(|_| u(&mut p)).collect();
        let (nm, nf) = (u(&mut p), u(&mut p));
        p += (nm * nf * 4) as usize;
        let nt = u(&mut p);
        for _ in 0..nt {
            let l = u(&mut p);
            p += l as usize;
        }
        let mut ts = Vec::new();
        while p < b.len() {
            let (nd, nl, ty) = (u(&mut p), u(&mut p), u(&mut p));
            let ne: Vec<u32> = (0..nd).map(|_| u(&mut p)).collect();
            let name = String::from_utf8(b[p..p + nl as usize].to_vec()).unwrap();
            p += nl as usize;
            let n: u32 = ne.iter().product();
            let vals: Vec<f32> = if ty == 0 {
                (0..n as usize)
                    .map(|i| f32::from_le_bytes(b[p + 4 * i..p + 4 * i + 4].try_into().unwrap()))
                    .collect()
            } else {
                (0..n as usize)
                    .map(|i| f16::from_le_bytes([b[p + 2 * i], b[p + 2 * i + 1]]).to_f32())
                    .collect()
            };
            p += n as usize * if ty == 0 { 4 } else { 2 };
            ts.push((name, ne, ty, vals));
        }
        (hp, ts)
    }

    #[test]
    fn converts_a_tiny_ct2_model_with_split_attention_and_whisper_cpp_names() {
        let ct2 = tiny_ct2();
        let model = Ct2Model::parse(&ct2).unwrap();
        let vocab = br#"["a", "b", "c", "<|endoftext|>"]"#;
        let conv = ct2_whisper_to_ggml(&ct2, vocab).unwrap();
        assert_eq!(
            conv.hparams,
            WhisperHparams {
                n_vocab: 8,
                n_audio_ctx: 6,
                n_audio_state: 4,
                n_audio_head: 2,
                n_audio_layer: 1,
                n_text_ctx: 5,
                n_text_state: 4,
                n_text_head: 2,
                n_text_layer: 1,
                n_mels: 2,
            }
        );
        assert_eq!(conv.tokens, 3);
        let (hp, ts) = read_ggml(&conv.bytes);
        assert_eq!(hp[10], 1, "ftype f16");
        let get = |n: &str| {
            ts.iter()
                .find(|t| t.0 == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        // Every tensor whisper.cpp creates for 1+1 layers, and nothing else (no key biases).
        let names: std::collections::BTreeSet<&str> = ts.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names.len(), ts.len(), "no duplicates");
        assert_eq!(ts.len(), (5 + 15 + 2) + (2 + 24 + 2));
        assert!(!names.iter().any(|n| n.contains("key.bias")));
        // The fused Q,K,V rows land in query, key, value in order.
        let fused = model
            .var("encoder/layer_0/self_attention/linear_0/weight")
            .unwrap();
        let val =
            |v: &Ct2Var, i: usize| f16::from_le_bytes([v.data[2 * i], v.data[2 * i + 1]]).to_f32();
        let q = get("encoder.blocks.0.attn.query.weight");
        let k = get("encoder.blocks.0.attn.key.weight");
        let v = get("encoder.blocks.0.attn.value.weight");
        assert_eq!(q.1, vec![4, 4]);
        assert_eq!(q.3[0], val(fused, 0));
        assert_eq!(k.3[0], val(fused, 16));
        assert_eq!(v.3[15], val(fused, 47));
        let vb = get("encoder.blocks.0.attn.value.bias");
        let fused_b = model
            .var("encoder/layer_0/self_attention/linear_0/bias")
            .unwrap();
        assert_eq!(vb.2, 0, "biases are f32");
        assert_eq!(vb.3[0], val(fused_b, 8));
        // Cross attention: query from linear_0, key/value from the fused linear_1.
        let ckv = model
            .var("decoder/layer_0/attention/linear_1/weight")
            .unwrap();
        assert_eq!(
            get("decoder.blocks.0.cross_attn.value.weight").3[0],
            val(ckv, 16)
        );
        // Conv bias as [1, n] f32; conv weight 3-D f16 with reversed dims.
        let cb = get("encoder.conv1.bias");
        assert_eq!((cb.1.clone(), cb.2), (vec![1, 4], 0));
        let cw = get("encoder.conv1.weight");
        assert_eq!((cw.1.clone(), cw.2), (vec![3, 2, 4], 1));
        assert_eq!(get("decoder.positional_embedding").2, 0);
        assert_eq!(get("decoder.token_embedding.weight").1, vec![4, 8]);
        // A truncated file is refused with a reason, not a panic.
        let err = ct2_whisper_to_ggml(&ct2[..ct2.len() / 2], vocab).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
