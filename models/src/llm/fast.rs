//! The decoder on this crate's own kernels ([`crate::quant`]): every weight matrix converted
//! once at load, without loss for the types GGUF chat models use (Q4_0, Q5_0, Q8_0, Q4_K,
//! Q6_K; any other type re-quantised to 8 bits per block of 32), activations quantised per
//! block, and the whole step in plain loops over preallocated buffers — no tensor graph, no
//! f32 copy of the weights. A prompt chunk uses the tiled product on rayon, which reads each
//! weight once for 32 tokens; one token uses the row product on a [`Team`] of spinning
//! threads.

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::attend;
use super::decoder::Arch;
use crate::dense::{self, SyncPtr, View};
use crate::error::{Error, Result};
use crate::quant::{QActs, QMat, Source};
use crate::team::Team;

/// Several matrices applied to the same input, outputs side by side (Q|K|V, gate|up).
struct Proj {
    parts: Vec<QMat>,
    bias: Option<Vec<f32>>,
    out: usize,
}

impl Proj {
    fn new(mut parts: Vec<QMat>, bias: Option<Vec<f32>>) -> Proj {
        // Matrices that share a layout are stacked into one (one parallel pass instead of
        // several; in decoding each pass pays a thread hand-off).
        let mut merged: Vec<QMat> = Vec::new();
        for m in parts.drain(..) {
            match merged.last_mut() {
                Some(last) if last.can_stack(&m) => last.stack(m),
                _ => merged.push(m),
            }
        }
        let out = merged.iter().map(|m| m.rows).sum();
        Proj {
            parts: merged,
            bias,
            out,
        }
    }

    /// `x` (`rows × cols`, quantised) → `rows × out`.
    fn run(&self, x: &QActs, out: &mut Vec<f32>, scratch: &mut Vec<f32>, team: &Team) {
        out.clear();
        out.resize(x.rows * self.out, 0.0);
        if self.parts.len() == 1 {
            self.parts[0].matmul_on(x, out, team);
        } else {
            let mut col = 0;
            for m in &self.parts {
                scratch.clear();
                scratch.resize(x.rows * m.rows, 0.0);
                m.matmul_on(x, scratch, team);
                for t in 0..x.rows {
                    out[t * self.out + col..t * self.out + col + m.rows]
                        .copy_from_slice(&scratch[t * m.rows..(t + 1) * m.rows]);
                }
                col += m.rows;
            }
        }
        if let Some(b) = &self.bias {
            for row in out.chunks_mut(self.out) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.parts.iter().map(QMat::bytes).sum()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    qkv: Proj,
    wo: Proj,
    ffn_norm: Vec<f32>,
    gate_up: Proj,
    down: Proj,
}

/// Keys and values of one layer, `[position][kv head][head dim]`, in f16 (see `attend`).
pub(crate) type LayerKv = (Vec<f16>, Vec<f16>);

pub(crate) struct FastDecoder {
    arch: Arch,
    embed: QTensor,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: QMat,
    /// `[position][head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    context: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    hidden: usize,
    ff: usize,
    eps: f32,
    chunk: usize,
    /// Threads for one-token steps (the loading pool's size).
    team: Team,
}

fn to_qmat(t: &QTensor) -> Result<QMat> {
    let (rows, cols) = t.shape().dims2()?;
    let src = match t.dtype() {
        GgmlDType::Q4_0 => Some(Source::Q4_0),
        GgmlDType::Q4K => Some(Source::Q4K),
        GgmlDType::Q5_0 => Some(Source::Q5_0),
        GgmlDType::Q8_0 => Some(Source::Q8_0),
        GgmlDType::Q6K => Some(Source::Q6K),
        _ => None,
    };
    match src {
        Some(s) => QMat::from_ggml(s, &t.data()?, rows, cols),
        None => {
            let w = t
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            QMat::from_f32(&w, rows, cols)
        }
    }
}

fn floats(t: &QTensor) -> Result<Vec<f32>> {
    Ok(t.dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl FastDecoder {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        arch: Arch,
        prefix: &str,
        n_head: usize,
        n_kv_head: usize,
        n_layers: usize,
        context: usize,
        eps: f32,
        theta: f32,
        chunk: usize,
    ) -> Result<FastDecoder> {
        let dev = Device::Cpu;
        let mut get = |name: &str| -> Result<QTensor> { Ok(ct.tensor(reader, name, &dev)?) };
        let embed = get("token_embd.weight")?;
        let (_, hidden) = embed.shape().dims2()?;
        let head_dim = hidden / n_head;
        let norm = floats(&get("output_norm.weight")?)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            to_qmat(&get("output.weight")?)?
        } else {
            to_qmat(&embed)?
        };
        let mut layers = Vec::with_capacity(n_layers);
        let mut ff = 0;
        for i in 0..n_layers {
            let b = format!("blk.{i}");
            let mut mat = |n: &str| -> Result<QMat> { to_qmat(&get(&format!("{b}.{n}.weight"))?) };
            let (q, k, v) = (mat("attn_q")?, mat("attn_k")?, mat("attn_v")?);
            let wo = mat("attn_output")?;
            let (gate, up, down) = (mat("ffn_gate")?, mat("ffn_up")?, mat("ffn_down")?);
            ff = gate.rows;
            let bias = if ct.tensor_infos.contains_key(&format!("{b}.attn_q.bias")) {
                let mut all = floats(&get(&format!("{b}.attn_q.bias"))?)?;
                all.extend(floats(&get(&format!("{b}.attn_k.bias"))?)?);
                all.extend(floats(&get(&format!("{b}.attn_v.bias"))?)?);
                Some(all)
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: floats(&get(&format!("{b}.attn_norm.weight"))?)?,
                qkv: Proj::new(vec![q, k, v], bias),
                wo: Proj::new(vec![wo], None),
                ffn_norm: floats(&get(&format!("{b}.ffn_norm.weight"))?)?,
                gate_up: Proj::new(vec![gate, up], None),
                down: Proj::new(vec![down], None),
            });
        }
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(context * half);
        let mut sin = Vec::with_capacity(context * half);
        for p in 0..context {
            for i in 0..half {
                let inv = 1.0 / theta.powf((2 * i) as f32 / head_dim as f32);
                let a = p as f32 * inv;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let d = FastDecoder {
            arch,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            context,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            ff,
            eps,
            chunk: chunk.max(1),
            team: Team::new(rayon::current_num_threads()),
        };
        tracing::debug!(
            prefix,
            weights_mb = d.weight_bytes() / 1_000_000,
            "decoder loaded on the integer kernels"
        );
        Ok(d)
    }

    fn weight_bytes(&self) -> usize {
        self.output.bytes()
            + self
                .layers
                .iter()
                .map(|l| l.qkv.bytes() + l.wo.bytes() + l.gate_up.bytes() + l.down.bytes())
                .sum::<usize>()
    }

    pub(crate) fn max_context(&self) -> usize {
        self.context
    }

    /// Runs `tokens` after the `pos` positions in `kv`; returns the logits after the last.
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        kv: &mut Vec<LayerKv>,
        pos: usize,
    ) -> Result<Vec<f32>> {
        if kv.len() != self.layers.len() {
            kv.clear();
            kv.resize(self.layers.len(), (Vec::new(), Vec::new()));
        }
        let mut at = pos;
        let mut last = Vec::new();
        for chunk in tokens.chunks(self.chunk) {
            last = self.forward_chunk(chunk, kv, at)?;
            at += chunk.len();
        }
        Ok(last)
    }

    fn forward_chunk(&self, tokens: &[u32], kv: &mut [LayerKv], pos: usize) -> Result<Vec<f32>> {
        let t = tokens.len();
        let (h, hd) = (self.hidden, self.head_dim);
        let (nh, nkv) = (self.n_head, self.n_kv_head);
        let q_w = nh * hd;
        let kv_w = nkv * hd;
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self
            .embed
            .embedding(&ids)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if x.len() != t * h {
            return Err(Error::EmptyInput);
        }
        let mut acts = QActs::default();
        let mut normed = vec![0f32; t * h];
        let (mut a, mut b, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        let mut ctx = vec![0f32; t * q_w];
        for (layer, (kc, vc)) in self.layers.iter().zip(kv.iter_mut()) {
            self.rms_norm(&x, &layer.attn_norm, &mut normed);
            acts.fill(&normed, t, h);
            layer.qkv.run(&acts, &mut a, &mut scratch, &self.team);
            let row = q_w + 2 * kv_w;
            for i in 0..t {
                let r = &mut a[i * row..(i + 1) * row];
                let (q, rest) = r.split_at_mut(q_w);
                let (k, v) = rest.split_at_mut(kv_w);
                for head in q.chunks_mut(hd).chain(k.chunks_mut(hd)) {
                    self.rope(head, pos + i);
                }
                for (cache, new) in [(&mut *kc, &*k), (&mut *vc, &*v)] {
                    let at = cache.len();
                    cache.resize(at + new.len(), f16::ZERO);
                    cache[at..].convert_from_f32_slice(new);
                }
            }
            self.attention(&a, row, t, pos, kc, vc, &mut ctx);
            acts.fill(&ctx, t, q_w);
            layer.wo.run(&acts, &mut b, &mut scratch, &self.team);
            x.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            self.rms_norm(&x, &layer.ffn_norm, &mut normed);
            acts.fill(&normed, t, h);
            layer.gate_up.run(&acts, &mut a, &mut scratch, &self.team);
            let f = self.ff;
            let mut mid = vec![0f32; t * f];
            for i in 0..t {
                let (g, u) = a[i * 2 * f..(i + 1) * 2 * f].split_at(f);
                dense::silu_mul(g, u, &mut mid[i * f..(i + 1) * f]);
            }
            acts.fill(&mid, t, f);
            layer.down.run(&acts, &mut b, &mut scratch, &self.team);
            x.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
        }
        let mut last = x[(t - 1) * h..].to_vec();
        let mut out = vec![0f32; h];
        self.rms_norm(&last, &self.norm, &mut out);
        last.copy_from_slice(&out);
        acts.fill(&last, 1, h);
        let mut logits = vec![0f32; self.output.rows];
        self.output.matmul_on(&acts, &mut logits, &self.team);
        Ok(logits)
    }

    fn rms_norm(&self, x: &[f32], w: &[f32], out: &mut [f32]) {
        let h = self.hidden.min(w.len());
        for (xr, or) in x.chunks(h).zip(out.chunks_mut(h)) {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
            let inv = 1.0 / (ms + self.eps).sqrt();
            for ((o, v), w) in or.iter_mut().zip(xr).zip(w) {
                *o = v * inv * w;
            }
        }
    }

    fn rope(&self, head: &mut [f32], pos: usize) {
        let half = self.head_dim / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        match self.arch {
            Arch::Qwen2 => {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (x0, x1) = (a[i], b[i]);
                    a[i] = x0 * cos[i] - x1 * sin[i];
                    b[i] = x1 * cos[i] + x0 * sin[i];
                }
            }
            Arch::Llama => {
                for i in 0..half {
                    let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = x0 * cos[i] - x1 * sin[i];
                    head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }

    /// Causal attention of the chunk's `t` queries (in `qkv`, rows of `row` values, queries
    /// first) over every cached position; writes `t × heads·head_dim` into `ctx`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        qkv: &[f32],
        row: usize,
        t: usize,
        pos: usize,
        kc: &[f16],
        vc: &[f16],
        ctx: &mut [f32],
    ) {
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        let kv_w = nkv * hd;
        let total = pos + t;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let out = SyncPtr(ctx.as_mut_ptr());
        let q_w = nh * hd;
        if t == 1 {
            // One query (generation): the query heads of a key/value head together, so that
            // each cached key and value is read once for them (see `attend`). With more
            // threads than key/value heads, a group is split so that every thread has work.
            let cache = attend::Cache {
                k: kc,
                v: vc,
                stride: kv_w,
                hd,
                len: total,
            };
            let parts = self
                .team
                .threads()
                .div_ceil(nkv)
                .max(group.div_ceil(attend::MAX_GROUP))
                .min(group);
            let per = group.div_ceil(parts);
            let parts = group.div_ceil(per);
            self.team.run(nkv * parts, &|task| {
                let (kvh, part) = (task / parts, task % parts);
                let first = kvh * group + part * per;
                let heads = per.min((kvh + 1) * group - first);
                let q = &qkv[first * hd..(first + heads) * hd];
                let mut o = vec![0f32; heads * hd];
                attend::attend_group(q, cache, kvh, scale, &mut Vec::new(), &mut o);
                // SAFETY: this task alone writes heads `first..first + heads` of `ctx`, which
                // are inside it (`nh · hd` values).
                unsafe {
                    std::ptr::copy_nonoverlapping(o.as_ptr(), out.get().add(first * hd), o.len())
                };
            });
            return;
        }
        // Many queries (a prompt): the products run on f32 copies of the cache (converted once
        // a layer and chunk, a small cost beside the products).
        let widen = |c: &[f16]| {
            let mut w = vec![0f32; c.len()];
            c.convert_to_f32_slice(&mut w);
            w
        };
        let (kc, vc) = (&widen(kc)[..], &widen(vc)[..]);
        let per_head = |head: usize| {
            let kvh = head / group;
            let mut scores = vec![0f32; t * total];
            let q = View {
                data: qkv,
                offset: head * hd,
                rs: row,
                cs: 1,
            };
            let kt = View {
                data: kc,
                offset: kvh * hd,
                rs: 1,
                cs: kv_w,
            };
            let v = View {
                data: vc,
                offset: kvh * hd,
                rs: kv_w,
                cs: 1,
            };
            // SAFETY: `scores` is local; each head writes only its own columns of `ctx`.
            unsafe {
                dense::gemm_into(
                    t,
                    total,
                    hd,
                    q,
                    kt,
                    SyncPtr(scores.as_mut_ptr()),
                    0,
                    total,
                    false,
                );
                for (i, r) in scores.chunks_mut(total).enumerate() {
                    let seen = pos + i + 1;
                    dense::softmax_scaled(&mut r[..seen], scale);
                    r[seen..].iter_mut().for_each(|v| *v = 0.0);
                }
                dense::gemm_into(
                    t,
                    hd,
                    total,
                    View::rows(&scores, total),
                    v,
                    out,
                    head * hd,
                    q_w,
                    false,
                );
            }
        };
        if nh > 1 && total * t >= 64 {
            (0..nh).into_par_iter().for_each(per_head);
        } else {
            (0..nh).for_each(per_head);
        }
    }
}
