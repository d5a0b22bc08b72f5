//! The multilingual-e5 sentence embedder: a BERT encoder whose weight matrices stay Q4_0 in
//! memory (candle's quantised matmul), mean pooling over the attention mask and L2
//! normalisation, with the e5 `query: ` / `passage: ` prefixes.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use rayon::prelude::*;
use tracing::instrument;

use crate::convert::keys;
use crate::dense;
use crate::e5s::{Hparams, Vocab};
use crate::error::{Error, Result};
use crate::quant::{self, QActs, QMat};
use crate::unigram::UnigramTokenizer;

/// Which side of the retrieval pair a text is on (e5 prefixes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Query,
    Passage,
}

impl TextKind {
    fn prefix(self) -> &'static str {
        match self {
            TextKind::Query => "query: ",
            TextKind::Passage => "passage: ",
        }
    }
}

/// How the encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedEngine {
    /// Sequences packed back to back with no padding: one f32 GEMM per projection over every
    /// token of the batch, attention per sequence and head, layer norm, bias and GELU fused
    /// into single passes.
    #[default]
    Packed,
    /// The earlier path: padded batches through candle's tensor operations (kept to measure
    /// against; `embed_bench` runs both).
    Candle,
}

/// Settings for [`E5Embedder`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    /// Upper bound on `batch × padded length` tokens per forward pass (memory bound).
    pub max_batch_tokens: usize,
    /// Expand the encoder's Q4_0 weight matrices to f32 at load (≈85 MB more memory; the
    /// 250k-row token table stays 4-bit). f32 GEMM is faster than the 4-bit dot-product path
    /// for batched passages on CPU; measure with `eval embed-bench`.
    pub dequantize: bool,
    pub engine: EmbedEngine,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig {
            max_batch_tokens: 4096,
            dequantize: true,
            engine: EmbedEngine::Packed,
        }
    }
}

struct Linear {
    w: QMatMul,
    b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.w.forward(x)?.broadcast_add(&self.b)
    }
}

/// One encoder layer's weights as plain f32 rows for the packed engine.
struct PackedLayer {
    /// Q, K and V stacked: `3·hidden × hidden`; the 4-bit codes as stored, one a byte.
    qkv_w: QMat,
    qkv_b: Vec<f32>,
    o_w: QMat,
    o_b: Vec<f32>,
    attn_norm: (Vec<f32>, Vec<f32>),
    up_w: QMat,
    up_b: Vec<f32>,
    down_w: QMat,
    down_b: Vec<f32>,
    out_norm: (Vec<f32>, Vec<f32>),
}

fn floats(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

impl PackedLayer {
    /// `raw(part)` gives a projection's GGUF tensor; the candle layer gives the small ones.
    fn load(l: &Layer, raw: &mut dyn FnMut(&str) -> Result<QTensor>) -> Result<Self> {
        let qmat = |parts: &[QTensor]| -> Result<QMat> {
            let cols = parts[0].shape().dims2()?.1;
            let rows: usize = parts
                .iter()
                .map(|p| p.shape().dims2().map(|d| d.0))
                .sum::<candle_core::Result<usize>>()?;
            if parts.iter().all(|p| p.dtype() == GgmlDType::Q4_0) {
                let mut data = Vec::new();
                for p in parts {
                    data.extend_from_slice(&p.data()?);
                }
                Ok(QMat::from_ggml(quant::Source::Q4_0, &data, rows, cols)?.to_u8())
            } else {
                let mut w = Vec::with_capacity(rows * cols);
                for p in parts {
                    w.extend(floats(&p.dequantize(&Device::Cpu)?)?);
                }
                QMat::from_f32(&w, rows, cols)
            }
        };
        let mut qkv_b = floats(&l.q.b)?;
        qkv_b.extend(floats(&l.k.b)?);
        qkv_b.extend(floats(&l.v.b)?);
        Ok(PackedLayer {
            qkv_w: qmat(&[raw("attn_q")?, raw("attn_k")?, raw("attn_v")?])?,
            qkv_b,
            o_w: qmat(&[raw("attn_output")?])?,
            o_b: floats(&l.o.b)?,
            attn_norm: (floats(&l.attn_norm.w)?, floats(&l.attn_norm.b)?),
            up_w: qmat(&[raw("ffn_up")?])?,
            up_b: floats(&l.up.b)?,
            down_w: qmat(&[raw("ffn_down")?])?,
            down_b: floats(&l.down.b)?,
            out_norm: (floats(&l.out_norm.w)?, floats(&l.out_norm.b)?),
        })
    }
}

/// `x[rows × k] · wᵀ + bias` through the integer kernels.
fn qlinear(x: &[f32], rows: usize, w: &QMat, bias: &[f32], acts: &mut QActs) -> Vec<f32> {
    acts.fill(x, rows, w.cols);
    let mut out = vec![0f32; rows * w.rows];
    w.matmul(acts, &mut out);
    dense::for_rows(&mut out, w.rows, |row| {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    });
    out
}

struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xn.broadcast_mul(&self.w)?.broadcast_add(&self.b)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A loaded e5 encoder with its tokenizer.
pub struct E5Embedder {
    hp: Hparams,
    tokenizer: UnigramTokenizer,
    word: QTensor,
    pos: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    /// The same layers as f32 rows when the engine is [`EmbedEngine::Packed`] (the candle
    /// layers then hold no weight matrices of their own).
    packed: Vec<PackedLayer>,
    pos_rows: Vec<f32>,
    token_type_row: Vec<f32>,
    emb_norm_rows: (Vec<f32>, Vec<f32>),
    device: Device,
    config: EmbedderConfig,
    id: String,
}

fn meta_u32(c: &gguf_file::Content, key: &str) -> std::result::Result<u32, String> {
    c.metadata
        .get(key)
        .ok_or_else(|| format!("metadata `{key}` missing"))?
        .to_u32()
        .map_err(|e| format!("metadata `{key}`: {e}"))
}

fn meta_array<'a>(
    c: &'a gguf_file::Content,
    key: &str,
) -> std::result::Result<&'a Vec<gguf_file::Value>, String> {
    c.metadata
        .get(key)
        .ok_or_else(|| format!("metadata `{key}` missing"))?
        .to_vec()
        .map_err(|e| format!("metadata `{key}`: {e}"))
}

fn u32_array(c: &gguf_file::Content, key: &str) -> std::result::Result<Vec<u32>, String> {
    meta_array(c, key)?
        .iter()
        .map(|v| v.to_u32().map_err(|e| format!("metadata `{key}`: {e}")))
        .collect()
}

impl E5Embedder {
    /// Loads a GGUF written by [`crate::convert::e5s_to_gguf`]. `id` names the embedder in index
    /// metadata (model name plus file checksum), so an index built by another model is detected.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn load(path: &Path, id: impl Into<String>, config: EmbedderConfig) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingAsset {
                name: "embedder".into(),
                path: path.to_path_buf(),
            },
            _ => Error::io("opening", path, e),
        })?;
        // SAFETY: the file is opened read-only and only read through this map; the asset cache
        // replaces model files by atomic rename, never by writing into an existing file.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mapping", path, e))?;
        let bad = |reason: String| Error::Format {
            path: path.to_path_buf(),
            format: "e5 GGUF",
            reason,
        };
        let mut reader = std::io::Cursor::new(&map[..]);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| bad(e.to_string()))?;
        let arch = content
            .metadata
            .get(keys::ARCH)
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "bert" {
            return Err(bad(format!("architecture `{arch}`, expected `bert`")));
        }
        let hp = Hparams {
            hidden: meta_u32(&content, keys::HIDDEN).map_err(bad)? as usize,
            layers: meta_u32(&content, keys::LAYERS).map_err(bad)? as usize,
            heads: meta_u32(&content, keys::HEADS).map_err(bad)? as usize,
            ff: meta_u32(&content, keys::FF).map_err(bad)? as usize,
            vocab_rows: 0,
            max_positions: meta_u32(&content, keys::CONTEXT).map_err(bad)? as usize,
            type_vocab: 0,
            eps: content
                .metadata
                .get(keys::EPS)
                .and_then(|v| v.to_f32().ok())
                .ok_or_else(|| bad("layer-norm epsilon missing".into()))?,
        };
        let pieces = meta_array(&content, keys::TOKENS)
            .map_err(bad)?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let scores = meta_array(&content, keys::SCORES)
            .map_err(bad)?
            .iter()
            .map(|v| v.to_f32())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if pieces.len() != scores.len() || pieces.is_empty() {
            return Err(bad("tokenizer pieces and scores differ in length".into()));
        }
        let cps = u32_array(&content, keys::NORM_CP).map_err(bad)?;
        let lens = u32_array(&content, keys::NORM_LEN).map_err(bad)?;
        let outs = u32_array(&content, keys::NORM_OUT).map_err(bad)?;
        if cps.len() != lens.len() || lens.iter().map(|&l| l as usize).sum::<usize>() != outs.len()
        {
            return Err(bad("normaliser table is inconsistent".into()));
        }
        let mut normalizer = Vec::with_capacity(cps.len());
        let mut at = 0usize;
        for (cp, len) in cps.into_iter().zip(lens) {
            normalizer.push((cp, outs[at..at + len as usize].to_vec()));
            at += len as usize;
        }
        let vocab = Vocab {
            pieces,
            scores,
            bos: meta_u32(&content, keys::BOS).map_err(bad)?,
            eos: meta_u32(&content, keys::EOS).map_err(bad)?,
            pad: meta_u32(&content, keys::PAD).map_err(bad)?,
            unk: meta_u32(&content, keys::UNK).map_err(bad)?,
        };
        let tokenizer = UnigramTokenizer::new(vocab, normalizer);

        let device = Device::Cpu;
        let mut get = |name: &str| -> Result<QTensor> {
            content
                .tensor(&mut reader, name, &device)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))
        };
        let eps = hp.eps as f64;
        let word = get("token_embd.weight")?;
        let pos = get("position_embd.weight")?.dequantize(&device)?;
        let token_type = get("token_types.weight")?.dequantize(&device)?.get(0)?;
        let emb_norm = Norm {
            w: get("token_embd_norm.weight")?.dequantize(&device)?,
            b: get("token_embd_norm.bias")?.dequantize(&device)?,
            eps,
        };
        let mut layers = Vec::with_capacity(hp.layers);
        for l in 0..hp.layers {
            let mut lin = |part: &str| -> Result<Linear> {
                let w = get(&format!("blk.{l}.{part}.weight"))?;
                let w = if config.dequantize || config.engine == EmbedEngine::Packed {
                    QMatMul::Tensor(w.dequantize(&device)?)
                } else {
                    QMatMul::from_qtensor(w)?
                };
                Ok(Linear {
                    w,
                    b: get(&format!("blk.{l}.{part}.bias"))?.dequantize(&device)?,
                })
            };
            let q = lin("attn_q")?;
            let k = lin("attn_k")?;
            let v = lin("attn_v")?;
            let o = lin("attn_output")?;
            let up = lin("ffn_up")?;
            let down = lin("ffn_down")?;
            let mut norm = |part: &str| -> Result<Norm> {
                Ok(Norm {
                    w: get(&format!("blk.{l}.{part}.weight"))?.dequantize(&device)?,
                    b: get(&format!("blk.{l}.{part}.bias"))?.dequantize(&device)?,
                    eps,
                })
            };
            let attn_norm = norm("attn_output_norm")?;
            let out_norm = norm("layer_output_norm")?;
            layers.push(Layer {
                attn_norm,
                out_norm,
                q,
                k,
                v,
                o,
                up,
                down,
            });
        }
        let mut packed = Vec::new();
        if config.engine == EmbedEngine::Packed {
            for (l, layer) in layers.iter_mut().enumerate() {
                packed.push(PackedLayer::load(layer, &mut |part| {
                    get(&format!("blk.{l}.{part}.weight"))
                })?);
                // The packed copy is the one used; keep only the small candle tensors.
                for lin in [
                    &mut layer.q,
                    &mut layer.k,
                    &mut layer.v,
                    &mut layer.o,
                    &mut layer.up,
                    &mut layer.down,
                ] {
                    lin.w = QMatMul::Tensor(Tensor::zeros(1, DType::F32, &device)?);
                }
            }
        }
        let pos_rows = floats(&pos)?;
        let token_type_row = floats(&token_type)?;
        let emb_norm_rows = (floats(&emb_norm.w)?, floats(&emb_norm.b)?);
        Ok(E5Embedder {
            hp,
            tokenizer,
            word,
            pos,
            token_type,
            emb_norm,
            layers,
            packed,
            pos_rows,
            token_type_row,
            emb_norm_rows,
            device,
            config,
            id: id.into(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dim(&self) -> usize {
        self.hp.hidden
    }

    pub fn tokenizer(&self) -> &UnigramTokenizer {
        &self.tokenizer
    }

    /// Number of model tokens (with `<s>`/`</s>`, before windowing) for a text.
    pub fn token_count(&self, text: &str, kind: TextKind) -> usize {
        self.tokenizer
            .encode(&format!("{}{text}", kind.prefix()))
            .len()
            + 2
    }

    /// Embeds texts; each result is L2-normalised and `dim()` long. Texts longer than the
    /// model's 512 positions are split into windows whose mean-pooled vectors are averaged,
    /// weighted by their token counts (as the reference engine does).
    #[instrument(skip_all, fields(n = texts.len(), kind = ?kind))]
    pub fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let window = self.hp.max_positions - 2;
        // (text index, token ids with specials, weight)
        let mut windows: Vec<(usize, Vec<u32>, f32)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let content = self.tokenizer.encode(&format!("{}{text}", kind.prefix()));
            let chunks: Vec<&[u32]> = if content.is_empty() {
                vec![&[][..]]
            } else {
                content.chunks(window).collect()
            };
            for chunk in chunks {
                let mut ids = Vec::with_capacity(chunk.len() + 2);
                ids.push(self.tokenizer.vocab().bos);
                ids.extend_from_slice(chunk);
                ids.push(self.tokenizer.vocab().eos);
                windows.push((i, ids, chunk.len().max(1) as f32));
            }
        }
        // Longest first, so batches pad little.
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&w| std::cmp::Reverse(windows[w].1.len()));
        let h = self.hp.hidden;
        let mut sums = vec![vec![0f32; h]; texts.len()];
        let mut weights = vec![0f32; texts.len()];
        let mut start = 0;
        while start < order.len() {
            let end = match self.config.engine {
                EmbedEngine::Candle => {
                    // Padded to the longest: `per_batch × longest` tokens.
                    let max_len = windows[order[start]].1.len();
                    let per_batch = (self.config.max_batch_tokens / max_len).max(1);
                    (start + per_batch).min(order.len())
                }
                EmbedEngine::Packed => {
                    // No padding: as many sequences as the real tokens allow.
                    let mut end = start;
                    let mut tokens = 0;
                    while end < order.len()
                        && (end == start
                            || tokens + windows[order[end]].1.len() <= self.config.max_batch_tokens)
                    {
                        tokens += windows[order[end]].1.len();
                        end += 1;
                    }
                    end
                }
            };
            let batch: Vec<&[u32]> = order[start..end]
                .iter()
                .map(|&w| windows[w].1.as_slice())
                .collect();
            let pooled = match self.config.engine {
                EmbedEngine::Candle => self.forward_pooled(&batch)?,
                EmbedEngine::Packed => self.forward_packed(&batch)?,
            };
            for (row, &w) in pooled.iter().zip(&order[start..end]) {
                let (ti, _, weight) = &windows[w];
                for (s, x) in sums[*ti].iter_mut().zip(row) {
                    *s += weight * x;
                }
                weights[*ti] += weight;
            }
            start = end;
        }
        Ok(sums
            .into_iter()
            .zip(weights)
            .map(|(mut v, w)| {
                let inv = if w > 0.0 { 1.0 / w } else { 1.0 };
                v.iter_mut().for_each(|x| *x *= inv);
                let norm = v.iter().map(|x| x * x).sum::<f32>().max(1e-12).sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect())
    }

    /// Runs sequences packed back to back (no padding) and returns each one's mean-pooled
    /// hidden state.
    fn forward_packed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let (h, nh) = (self.hp.hidden, self.hp.heads);
        let hd = h / nh;
        let ff = self.hp.ff;
        let total: usize = batch.iter().map(|s| s.len()).sum();
        if total == 0 || batch.iter().any(|s| s.is_empty()) {
            return Err(Error::EmptyInput);
        }
        let mut starts = Vec::with_capacity(batch.len());
        let mut ids = Vec::with_capacity(total);
        for seq in batch {
            starts.push(ids.len());
            ids.extend_from_slice(seq);
        }
        let ids_t = Tensor::from_vec(ids, total, &self.device)?;
        let mut x = floats(&self.word.embedding(&ids_t)?)?;
        let (nw, nb) = &self.emb_norm_rows;
        let eps = self.hp.eps;
        for (seq, &start) in batch.iter().zip(&starts) {
            for p in 0..seq.len() {
                let row = &mut x[(start + p) * h..(start + p + 1) * h];
                let pos = &self.pos_rows[p * h..(p + 1) * h];
                for ((v, a), t) in row.iter_mut().zip(pos).zip(&self.token_type_row) {
                    *v += a + t;
                }
                dense::layer_norm(row, nw, nb, eps);
            }
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let tasks: Vec<(usize, usize, usize)> = batch
            .iter()
            .zip(&starts)
            .flat_map(|(s, &start)| (0..nh).map(move |head| (start, s.len(), head)))
            .collect();
        let mut ctx = vec![0f32; total * h];
        let mut acts = QActs::default();
        for layer in &self.packed {
            let qkv = qlinear(&x, total, &layer.qkv_w, &layer.qkv_b, &mut acts);
            let out = dense::SyncPtr(ctx.as_mut_ptr());
            tasks.par_iter().for_each(|&(start, len, head)| {
                let mut scores = vec![0f32; len * len];
                let q = dense::View {
                    data: &qkv,
                    offset: start * 3 * h + head * hd,
                    rs: 3 * h,
                    cs: 1,
                };
                // Kᵀ: element (d, j) is key j's d-th value.
                let kt = dense::View {
                    data: &qkv,
                    offset: start * 3 * h + h + head * hd,
                    rs: 1,
                    cs: 3 * h,
                };
                let v = dense::View {
                    data: &qkv,
                    offset: start * 3 * h + 2 * h + head * hd,
                    rs: 3 * h,
                    cs: 1,
                };
                // SAFETY: `scores` is local; each task writes only its own sequence's rows
                // and its own head's columns of `ctx`, which no other task touches.
                unsafe {
                    dense::gemm_into(
                        len,
                        len,
                        hd,
                        q,
                        kt,
                        dense::SyncPtr(scores.as_mut_ptr()),
                        0,
                        len,
                        false,
                    );
                    scores
                        .chunks_mut(len)
                        .for_each(|r| dense::softmax_scaled(r, scale));
                    dense::gemm_into(
                        len,
                        hd,
                        len,
                        dense::View::rows(&scores, len),
                        v,
                        out,
                        start * h + head * hd,
                        h,
                        false,
                    );
                }
            });
            let mut a = qlinear(&ctx, total, &layer.o_w, &layer.o_b, &mut acts);
            let (w, b) = &layer.attn_norm;
            a.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
            dense::for_rows(&mut a, h, |row| dense::layer_norm(row, w, b, eps));
            x = a;
            let mut mid = qlinear(&x, total, &layer.up_w, &layer.up_b, &mut acts);
            dense::for_rows(&mut mid, ff, dense::gelu_erf);
            let mut f = qlinear(&mid, total, &layer.down_w, &layer.down_b, &mut acts);
            let (w, b) = &layer.out_norm;
            f.iter_mut().zip(&x).for_each(|(f, x)| *f += x);
            dense::for_rows(&mut f, h, |row| dense::layer_norm(row, w, b, eps));
            x = f;
        }
        Ok(batch
            .iter()
            .zip(&starts)
            .map(|(seq, &start)| {
                let mut mean = vec![0f32; h];
                for row in x[start * h..(start + seq.len()) * h].chunks(h) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let inv = 1.0 / seq.len() as f32;
                mean.iter_mut().for_each(|m| *m *= inv);
                mean
            })
            .collect())
    }

    /// Runs one padded batch and returns each sequence's mean-pooled hidden state.
    fn forward_pooled(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let l = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        if l == 0 {
            return Err(Error::EmptyInput);
        }
        let (hd, nh, h) = (
            self.hp.hidden / self.hp.heads,
            self.hp.heads,
            self.hp.hidden,
        );
        let mut ids = vec![self.tokenizer.vocab().pad; b * l];
        let mut mask = vec![0f32; b * l];
        for (i, seq) in batch.iter().enumerate() {
            ids[i * l..i * l + seq.len()].copy_from_slice(seq);
            mask[i * l..i * l + seq.len()]
                .iter_mut()
                .for_each(|m| *m = 1.0);
        }
        let dev = &self.device;
        let ids = Tensor::from_vec(ids, (b, l), dev)?;
        let mask = Tensor::from_vec(mask, (b, l), dev)?;
        let x = self.word.embedding(&ids)?;
        let x = x
            .broadcast_add(&self.pos.narrow(0, 0, l)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive attention bias: 0 for real tokens, a large negative number for padding.
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((b, l, nh, hd))?.transpose(1, 2)?.contiguous()
            };
            let q = split(layer.q.forward(&x)?)?;
            let k = split(layer.k.forward(&x)?)?;
            let v = split(layer.v.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let max = scores.max_keepdim(D::Minus1)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, l, h))?;
            let attn = layer.o.forward(&ctx)?;
            x = layer.attn_norm.forward(&(x + attn)?)?;
            let mid = layer.up.forward(&x)?.gelu_erf()?;
            let ffn = layer.down.forward(&mid)?;
            x = layer.out_norm.forward(&(x + ffn)?)?;
        }
        let m = mask.unsqueeze(2)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?;
        let pooled = summed.broadcast_div(&counts)?.to_dtype(DType::F32)?;
        Ok(pooled.to_vec2::<f32>()?)
    }
}
