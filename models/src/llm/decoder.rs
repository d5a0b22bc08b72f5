//! A quantised decoder-only transformer for the Llama-shaped GGUF families (Qwen2: biased
//! Q/K/V projections and NeoX rotary embedding; Llama, Mistral and their Traditional-Chinese
//! fine-tunes such as TAIDE and Breeze: interleaved rotary embedding).
//!
//! Written here rather than taken from candle-transformers so that the KV cache is a value
//! the caller owns ([`KvCache`]): a fixed system prompt is processed once and its cache cloned
//! into every request (the tensors are reference-counted, so a clone costs nothing), and the
//! prompt can be processed through dequantised weights with a dense GEMM while generation stays
//! on the quantised ones.

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The supported architectures of this decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Qwen2,
    Llama,
}

impl Arch {
    /// The architecture named by GGUF's `general.architecture`, when this decoder runs it.
    pub fn from_gguf_name(name: &str) -> Option<Arch> {
        match name {
            "qwen2" => Some(Arch::Qwen2),
            "llama" | "mistral" => Some(Arch::Llama),
            _ => None,
        }
    }
}

/// Which weights process a multi-token prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefillWeights {
    /// The quantised weights (vector dot products per row).
    Quantized,
    /// Dequantised f32 copies multiplied with a blocked GEMM (about 4 bytes per parameter of
    /// extra memory: ~1.4 GB for a 0.5B model).
    #[default]
    F32,
    /// Dequantised f16 copies (half the memory of `F32`).
    F16,
}

/// Which code runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderEngine {
    /// This crate's integer kernels ([`crate::quant`]): weights converted once at load, no f32
    /// copy (`requantize_q8` and `prefill` do not apply).
    #[default]
    Fast,
    /// candle's quantised matmuls and tensor operations (the earlier path, kept to measure
    /// against and for GGUF shapes the fast kernels do not take).
    Candle,
}

/// Load-time choices that trade memory for speed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DecoderOptions {
    pub engine: DecoderEngine,
    /// Re-quantise Q4_0/Q4_1/Q5_0/Q5_1 matrices to Q8_0 on load (candle's Q5 kernels are
    /// scalar; Q8_0 has SIMD kernels). Costs a few seconds at load.
    pub requantize_q8: bool,
    pub prefill: PrefillWeights,
    /// Prompts (or prompt chunks) at least this long use the prefill weights.
    pub prefill_min_tokens: usize,
    /// Longest prompt chunk processed at once (bounds the attention matrix).
    pub prefill_chunk: usize,
    /// Cap on the rotary tables (and so on prompt + reply length).
    pub max_context: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            engine: DecoderEngine::Fast,
            requantize_q8: true,
            prefill: PrefillWeights::F32,
            prefill_min_tokens: 8,
            prefill_chunk: 512,
            max_context: 8192,
        }
    }
}

/// Per-layer attention keys and values of everything processed so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// The fast engine's keys and values (plain vectors, grown in place).
    fast: Vec<super::fast::LayerKv>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `n` positions (a shared prefix of a new prompt).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        if n >= self.len {
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.narrow(2, 0, n)?;
            *v = v.narrow(2, 0, n)?;
        }
        for (k, v) in &mut self.fast {
            let per_pos = k.len() / self.len;
            k.truncate(n * per_pos);
            v.truncate(n * per_pos);
        }
        if n == 0 {
            self.layers.clear();
            self.fast.clear();
        }
        self.len = n;
        Ok(())
    }
}

struct Linear {
    q: QMatMul,
    dense: Option<Tensor>,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor, prefill: bool) -> Result<Tensor> {
        let y = match (&self.dense, prefill) {
            (Some(w), true) if w.dtype() == DType::F16 => x
                .to_dtype(DType::F16)?
                .broadcast_matmul(&w.t()?)?
                .to_dtype(DType::F32)?,
            (Some(w), true) => x.broadcast_matmul(&w.t()?)?,
            _ => self.q.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The loaded model.
pub struct Decoder(Inner);

enum Inner {
    Fast(Box<super::fast::FastDecoder>),
    Candle(Box<CandleDecoder>),
}

impl Decoder {
    /// Loads the model from a parsed GGUF whose architecture is `arch`, on the engine the
    /// options name (the fast one falls back to candle for shapes its kernels do not take).
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        arch: Arch,
        opts: DecoderOptions,
    ) -> Result<Decoder> {
        if opts.engine == DecoderEngine::Fast {
            let p = match arch {
                Arch::Qwen2 => "qwen2",
                Arch::Llama => "llama",
            };
            let u = |k: &str| -> Result<usize> {
                Ok(meta(ct, &format!("{p}.{k}"))?.to_u32()? as usize)
            };
            let n_head = u("attention.head_count")?;
            let eps = meta(ct, &format!("{p}.attention.layer_norm_rms_epsilon"))?.to_f32()?;
            let theta = meta(ct, &format!("{p}.rope.freq_base"))
                .and_then(|v| Ok(v.to_f32()?))
                .unwrap_or(10_000.0);
            match super::fast::FastDecoder::load(
                ct,
                reader,
                arch,
                p,
                n_head,
                u("attention.head_count_kv").unwrap_or(n_head),
                u("block_count")?,
                u("context_length").unwrap_or(4096).min(opts.max_context),
                eps,
                theta,
                opts.prefill_chunk,
            ) {
                Ok(d) => return Ok(Decoder(Inner::Fast(Box::new(d)))),
                Err(e @ Error::Format { .. }) => {
                    tracing::warn!(error = %e, "the fast decoder does not take this model; using candle");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Decoder(Inner::Candle(Box::new(CandleDecoder::load(
            ct, reader, arch, opts,
        )?))))
    }

    /// Longest sequence the rotary tables cover.
    pub fn max_context(&self) -> usize {
        match &self.0 {
            Inner::Fast(d) => d.max_context(),
            Inner::Candle(d) => d.max_context(),
        }
    }

    /// Which engine runs it.
    pub fn engine(&self) -> DecoderEngine {
        match &self.0 {
            Inner::Fast(_) => DecoderEngine::Fast,
            Inner::Candle(_) => DecoderEngine::Candle,
        }
    }

    /// Runs `tokens` after what `cache` holds, in chunks, and returns the logits (f32, length
    /// `vocab`) for the position after the last token.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        if cache.len + tokens.len() > self.max_context() {
            return Err(Error::ContextTooLong {
                tokens: cache.len + tokens.len(),
                limit: self.max_context(),
            });
        }
        match &self.0 {
            Inner::Fast(d) => {
                let logits = d.forward(tokens, &mut cache.fast, cache.len)?;
                cache.len += tokens.len();
                let n = logits.len();
                Ok(Tensor::from_vec(logits, n, &Device::Cpu)?)
            }
            Inner::Candle(d) => d.forward(tokens, cache),
        }
    }
}

struct CandleDecoder {
    arch: Arch,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f64,
    opts: DecoderOptions,
}

struct Loader<'a, R> {
    ct: &'a gguf_file::Content,
    reader: &'a mut R,
    device: &'a Device,
    opts: &'a DecoderOptions,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        Ok(self.ct.tensor(self.reader, name, self.device)?)
    }

    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }

    fn f32(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(self.device)?)
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        let mut qt = self.qtensor(&format!("{name}.weight"))?;
        let slow = matches!(
            qt.dtype(),
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
        );
        if self.opts.requantize_q8 && slow {
            qt = QTensor::quantize(&qt.dequantize(self.device)?, GgmlDType::Q8_0)?;
        }
        let dense = match self.opts.prefill {
            PrefillWeights::Quantized => None,
            PrefillWeights::F32 => Some(qt.dequantize(self.device)?),
            PrefillWeights::F16 => Some(qt.dequantize_f16(self.device)?),
        };
        let bias_name = format!("{name}.bias");
        let bias = if self.has(&bias_name) {
            Some(self.f32(&bias_name)?)
        } else {
            None
        };
        Ok(Linear {
            q: QMatMul::from_qtensor(qt)?,
            dense,
            bias,
        })
    }
}

fn meta<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata.get(key).ok_or_else(|| Error::Format {
        path: Default::default(),
        format: "GGUF",
        reason: format!("metadata key `{key}` is missing"),
    })
}

impl CandleDecoder {
    /// Loads the model from a parsed GGUF whose architecture is `arch`.
    fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        arch: Arch,
        opts: DecoderOptions,
    ) -> Result<CandleDecoder> {
        let device = Device::Cpu;
        let p = match arch {
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
        };
        let u =
            |k: &str| -> Result<usize> { Ok(meta(ct, &format!("{p}.{k}"))?.to_u32()? as usize) };
        let n_head = u("attention.head_count")?;
        let n_kv_head = u("attention.head_count_kv").unwrap_or(n_head);
        let hidden = u("embedding_length")?;
        let n_layers = u("block_count")?;
        let context = u("context_length").unwrap_or(4096).min(opts.max_context);
        let eps = meta(ct, &format!("{p}.attention.layer_norm_rms_epsilon"))?.to_f32()? as f64;
        let theta = meta(ct, &format!("{p}.rope.freq_base"))
            .and_then(|v| Ok(v.to_f32()?))
            .unwrap_or(10_000.0);
        let head_dim = hidden / n_head;

        let mut l = Loader {
            ct,
            reader,
            device: &device,
            opts: &opts,
        };
        let embed = Arc::new(l.qtensor("token_embd.weight")?);
        let norm = l.f32("output_norm.weight")?;
        let output = if l.has("output.weight") {
            QMatMul::from_qtensor(l.qtensor("output.weight")?)?
        } else {
            QMatMul::from_arc(embed.clone())?
        };
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let b = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: l.f32(&format!("{b}.attn_norm.weight"))?,
                wq: l.linear(&format!("{b}.attn_q"))?,
                wk: l.linear(&format!("{b}.attn_k"))?,
                wv: l.linear(&format!("{b}.attn_v"))?,
                wo: l.linear(&format!("{b}.attn_output"))?,
                ffn_norm: l.f32(&format!("{b}.ffn_norm.weight"))?,
                gate: l.linear(&format!("{b}.ffn_gate"))?,
                up: l.linear(&format!("{b}.ffn_up"))?,
                down: l.linear(&format!("{b}.ffn_down"))?,
            });
        }
        let inv: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f32 / head_dim as f32))
            .collect();
        let inv = Tensor::new(inv.as_slice(), &device)?;
        let pos = Tensor::arange(0, context as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((context, 1))?;
        let freqs = pos.matmul(&inv.reshape((1, head_dim / 2))?)?;
        Ok(CandleDecoder {
            arch,
            embed,
            layers,
            norm,
            output,
            cos: freqs.cos()?,
            sin: freqs.sin()?,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            opts,
        })
    }

    fn max_context(&self) -> usize {
        self.cos.dims()[0]
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let mut logits = None;
        for chunk in tokens.chunks(self.opts.prefill_chunk.max(1)) {
            logits = Some(self.forward_chunk(chunk, cache)?);
        }
        Ok(logits.expect("at least one chunk"))
    }

    fn rope(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        Ok(match self.arch {
            Arch::Qwen2 => candle_nn::rotary_emb::rope(x, &cos, &sin)?,
            Arch::Llama => candle_nn::rotary_emb::rope_i(x, &cos, &sin)?,
        })
    }

    fn forward_chunk(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let device = Device::Cpu;
        let seq = tokens.len();
        let pos = cache.len;
        let prefill = seq >= self.opts.prefill_min_tokens;
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let ids = Tensor::new(tokens, &device)?;
        let mut x = self.embed.embedding(&ids)?.unsqueeze(0)?;
        let mask = if seq > 1 {
            let kv = pos + seq;
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (seq, kv), &device)?)
        } else {
            None
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps as f32)?;
            let q = layer.wq.forward(&h, prefill)?;
            let k = layer.wk.forward(&h, prefill)?;
            let v = layer.wv.forward(&h, prefill)?;
            let q = q
                .reshape((1, seq, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = k
                .reshape((1, seq, self.n_kv_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = v
                .reshape((1, seq, self.n_kv_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = self.rope(&q, pos)?;
            let k = self.rope(&k, pos)?;
            let (k, v) = match slot.take() {
                Some((ck, cv)) => (Tensor::cat(&[&ck, &k], 2)?, Tensor::cat(&[&cv, &v], 2)?),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            let rep = self.n_head / self.n_kv_head;
            let k = candle_transformers::utils::repeat_kv(k, rep)?.contiguous()?;
            let v = candle_transformers::utils::repeat_kv(v, rep)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y =
                att.matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((1, seq, self.n_head * self.head_dim))?;
            let y = layer.wo.forward(&y, prefill)?;
            x = (x + y)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.eps as f32)?;
            let g = candle_nn::ops::silu(&layer.gate.forward(&h, prefill)?)?;
            let u = layer.up.forward(&h, prefill)?;
            let y = layer.down.forward(&(g * u)?, prefill)?;
            x = (x + y)?;
        }
        cache.len += seq;
        let last = x.i((.., seq - 1, ..))?.contiguous()?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.eps as f32)?;
        let logits = self.output.forward(&last)?.squeeze(0)?;
        Ok(logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .i(..)?
            .contiguous()?)
    }
}
