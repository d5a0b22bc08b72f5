//! Silero VAD v6 (MIT), the 16 kHz model: a learned STFT (a 256-tap convolution, stride 128),
//! four small convolutions, one 128-unit LSTM cell and a sigmoid, run on 512-sample chunks
//! (32 ms) with 64 samples of the previous chunk as context. Weights are the
//! `silero_vad_16k.safetensors` of PyPI `silero-vad==6.2.3` (15 f32 tensors, 1.2 MB); the forward
//! pass follows the reference `tinygrad_model.py` shipped beside them. Written as plain loops: the
//! whole network is ~0.6 M multiply-adds a chunk, less than a tensor library's dispatch costs.

use std::collections::HashMap;
use std::path::Path;

/// Samples per chunk (32 ms at 16 kHz).
pub const CHUNK: usize = 512;
const CONTEXT: usize = 64;
const N_FFT: usize = 256;
const STRIDE: usize = 128;
const BINS: usize = N_FFT / 2 + 1;
const HIDDEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SileroError {
    #[error("cannot read the Silero VAD weights {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the Silero VAD weights are not the v6 16 kHz model: {0}")]
    Format(String),
}

/// A 1-D convolution's weights: `[out][in][k]` flattened, and the bias.
#[derive(Debug, Clone)]
struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
}

impl Conv {
    /// `x` is `[c_in][len]`; returns `[c_out][len_out]`, ReLU applied when asked.
    fn forward(&self, x: &[Vec<f32>], stride: usize, pad: usize, relu: bool) -> Vec<Vec<f32>> {
        let len = x[0].len();
        let out_len = (len + 2 * pad - self.k) / stride + 1;
        let mut out = vec![vec![0f32; out_len]; self.c_out];
        for (o, row) in out.iter_mut().enumerate() {
            for (t, y) in row.iter_mut().enumerate() {
                let mut acc = self.b.get(o).copied().unwrap_or(0.0);
                for (i, xi) in x.iter().enumerate().take(self.c_in) {
                    let w = &self.w[(o * self.c_in + i) * self.k..][..self.k];
                    for (j, wj) in w.iter().enumerate() {
                        let p = (t * stride + j) as isize - pad as isize;
                        if p >= 0 && (p as usize) < len {
                            acc += wj * xi[p as usize];
                        }
                    }
                }
                *y = if relu { acc.max(0.0) } else { acc };
            }
        }
        out
    }
}

/// The model's weights (shared by every stream).
#[derive(Debug, Clone)]
pub struct SileroModel {
    stft: Vec<f32>,
    convs: [Conv; 4],
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b: Vec<f32>,
    final_w: Vec<f32>,
    final_b: f32,
}

/// One stream's state: the LSTM's `h` and `c` and the last 64 samples.
#[derive(Debug, Clone)]
pub struct SileroState {
    h: Vec<f32>,
    c: Vec<f32>,
    context: Vec<f32>,
}

impl Default for SileroState {
    fn default() -> Self {
        SileroState {
            h: vec![0.0; HIDDEN],
            c: vec![0.0; HIDDEN],
            context: vec![0.0; CONTEXT],
        }
    }
}

/// A tensor's shape and values.
type Tensor = (Vec<usize>, Vec<f32>);

/// Reads a safetensors file's f32 tensors.
fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or("shorter than a safetensors header")?
            .try_into()
            .map_err(|_| "bad header")?,
    ) as usize;
    let header: serde_json::Value = serde_json::from_slice(
        bytes
            .get(8..8 + n)
            .ok_or("the header runs past the end of the file")?,
    )
    .map_err(|e| format!("header: {e}"))?;
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (name, t) in header.as_object().ok_or("header is not an object")? {
        if name == "__metadata__" {
            continue;
        }
        if t["dtype"] != "F32" {
            return Err(format!("{name} is {}, not F32", t["dtype"]));
        }
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .ok_or(format!("{name} has no shape"))?
            .iter()
            .map(|d| d.as_u64().unwrap_or(0) as usize)
            .collect();
        let off = &t["data_offsets"];
        let (a, b) = (
            off[0].as_u64().unwrap_or(0) as usize,
            off[1].as_u64().unwrap_or(0) as usize,
        );
        let raw = data
            .get(a..b)
            .ok_or(format!("{name} runs past the end of the file"))?;
        if raw.len() != shape.iter().product::<usize>() * 4 {
            return Err(format!("{name}: {} bytes for shape {shape:?}", raw.len()));
        }
        let v = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name.clone(), (shape, v));
    }
    Ok(out)
}

impl SileroModel {
    pub fn load(path: &Path) -> Result<SileroModel, SileroError> {
        let bytes = std::fs::read(path).map_err(|e| SileroError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        SileroModel::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SileroModel, SileroError> {
        let mut t = read_safetensors(bytes).map_err(SileroError::Format)?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Vec<f32>, SileroError> {
            let (s, v) = t
                .remove(name)
                .ok_or_else(|| SileroError::Format(format!("no tensor {name}")))?;
            if s != shape {
                return Err(SileroError::Format(format!(
                    "{name} has shape {s:?}, expected {shape:?}"
                )));
            }
            Ok(v)
        };
        let stft = take("stft_conv.weight", &[2 * BINS, 1, N_FFT])?;
        let mut conv = |i: usize, c_in: usize, c_out: usize| -> Result<Conv, SileroError> {
            Ok(Conv {
                w: take(&format!("conv{i}.weight"), &[c_out, c_in, 3])?,
                b: take(&format!("conv{i}.bias"), &[c_out])?,
                c_in,
                c_out,
                k: 3,
            })
        };
        let convs = [
            conv(1, BINS, 128)?,
            conv(2, 128, 64)?,
            conv(3, 64, 64)?,
            conv(4, 64, 128)?,
        ];
        let w_ih = take("lstm_cell.weight_ih", &[4 * HIDDEN, HIDDEN])?;
        let w_hh = take("lstm_cell.weight_hh", &[4 * HIDDEN, HIDDEN])?;
        let b_ih = take("lstm_cell.bias_ih", &[4 * HIDDEN])?;
        let b_hh = take("lstm_cell.bias_hh", &[4 * HIDDEN])?;
        let final_w = take("final_conv.weight", &[1, HIDDEN, 1])?;
        let final_b = take("final_conv.bias", &[1])?[0];
        Ok(SileroModel {
            stft,
            convs,
            w_ih,
            w_hh,
            b: b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect(),
            final_w,
            final_b,
        })
    }

    /// The probability that `chunk` (512 samples, 16 kHz) is speech; advances `state`.
    pub fn forward(&self, state: &mut SileroState, chunk: &[f32]) -> f32 {
        // Context + chunk, then reflect-padded by 64 on the right: 640 samples, 4 STFT frames.
        let mut x = Vec::with_capacity(CONTEXT + CHUNK + CONTEXT);
        x.extend_from_slice(&state.context);
        x.extend(
            chunk
                .iter()
                .copied()
                .chain(std::iter::repeat(0.0))
                .take(CHUNK),
        );
        let n = x.len();
        for i in 0..CONTEXT {
            x.push(x[n - 2 - i]);
        }
        state.context.copy_from_slice(&x[n - CONTEXT..n]);
        let frames = (x.len() - N_FFT) / STRIDE + 1;
        let mut mag = vec![vec![0f32; frames]; BINS];
        for t in 0..frames {
            let window = &x[t * STRIDE..t * STRIDE + N_FFT];
            let dot = |row: usize| -> f32 {
                self.stft[row * N_FFT..(row + 1) * N_FFT]
                    .iter()
                    .zip(window)
                    .map(|(a, b)| a * b)
                    .sum()
            };
            for (f, m) in mag.iter_mut().enumerate() {
                let (re, im) = (dot(f), dot(BINS + f));
                m[t] = (re * re + im * im).sqrt();
            }
        }
        let x = self.convs[0].forward(&mag, 1, 1, true);
        let x = self.convs[1].forward(&x, 2, 1, true);
        let x = self.convs[2].forward(&x, 2, 1, true);
        let x = self.convs[3].forward(&x, 1, 1, true);
        let input: Vec<f32> = x.iter().map(|row| row[0]).collect();
        // LSTM cell, gates in PyTorch's order: input, forget, cell, output.
        let mut gates = self.b.clone();
        for (g, out) in gates.iter_mut().enumerate() {
            let wi = &self.w_ih[g * HIDDEN..(g + 1) * HIDDEN];
            let wh = &self.w_hh[g * HIDDEN..(g + 1) * HIDDEN];
            *out += wi.iter().zip(&input).map(|(a, b)| a * b).sum::<f32>()
                + wh.iter().zip(&state.h).map(|(a, b)| a * b).sum::<f32>();
        }
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        for j in 0..HIDDEN {
            let (i, f, g, o) = (
                sigmoid(gates[j]),
                sigmoid(gates[HIDDEN + j]),
                gates[2 * HIDDEN + j].tanh(),
                sigmoid(gates[3 * HIDDEN + j]),
            );
            state.c[j] = f * state.c[j] + i * g;
            state.h[j] = o * state.c[j].tanh();
        }
        let logit = self.final_b
            + self
                .final_w
                .iter()
                .zip(&state.h)
                .map(|(w, h)| w * h.max(0.0))
                .sum::<f32>();
        sigmoid(logit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: &[(&str, &[usize])] = &[
        ("stft_conv.weight", &[258, 1, 256]),
        ("conv1.weight", &[128, 129, 3]),
        ("conv1.bias", &[128]),
        ("conv2.weight", &[64, 128, 3]),
        ("conv2.bias", &[64]),
        ("conv3.weight", &[64, 64, 3]),
        ("conv3.bias", &[64]),
        ("conv4.weight", &[128, 64, 3]),
        ("conv4.bias", &[128]),
        ("lstm_cell.weight_ih", &[512, 128]),
        ("lstm_cell.weight_hh", &[512, 128]),
        ("lstm_cell.bias_ih", &[512]),
        ("lstm_cell.bias_hh", &[512]),
        ("final_conv.weight", &[1, 128, 1]),
        ("final_conv.bias", &[1]),
    ];

    struct Lcg(u32);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((self.0 >> 8) as f64 / 16_777_216.0 - 0.5) as f32
        }
    }

    /// A safetensors file of the model's shapes filled from an LCG (the same numbers the
    /// reference script draws).
    fn lcg_weights() -> Vec<u8> {
        let mut r = Lcg(12_345);
        let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
        for (name, shape) in SHAPES {
            let scale = if name.starts_with("stft") { 0.05 } else { 0.2 };
            let start = data.len();
            for _ in 0..shape.iter().product::<usize>() {
                data.extend_from_slice(&(r.next() * scale).to_le_bytes());
            }
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let h = serde_json::Value::Object(header).to_string();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn signal(n: usize) -> Vec<f32> {
        let mut r = Lcg(7);
        (0..n)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                (0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 0.2 * (2.0 * std::f64::consts::PI * 1230.0 * t).sin()
                    + 0.1 * r.next() as f64) as f32
            })
            .collect()
    }

    fn run(model: &SileroModel) -> Vec<f32> {
        let mut state = SileroState::default();
        signal(3 * CHUNK)
            .chunks(CHUNK)
            .map(|c| model.forward(&mut state, c))
            .collect()
    }

    #[test]
    fn the_forward_pass_matches_the_reference_implementation() {
        // Expected values from the wheel's tinygrad_model.py on the same weights and signal.
        let model = SileroModel::from_bytes(&lcg_weights()).unwrap();
        let got = run(&model);
        let want = [0.496_141_23, 0.497_294_25, 0.497_966_86];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 2e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn the_real_weights_when_installed() {
        let Some(path) = std::env::var_os("SILERO_VAD_WEIGHTS").map(std::path::PathBuf::from)
        else {
            eprintln!("SKIPPED: set SILERO_VAD_WEIGHTS to the v6 safetensors to run this");
            return;
        };
        let got = run(&SileroModel::load(&path).unwrap());
        // tinygrad_model.py with silero_vad_16k.safetensors (silero-vad 6.2.3) on the signal.
        let want = [0.042_982_44, 0.024_682_797, 0.008_607_83];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn files_that_are_not_the_model_are_refused_with_the_reason() {
        let e = SileroModel::from_bytes(b"junk").unwrap_err().to_string();
        assert!(e.contains("not the v6 16 kHz model"), "{e}");
        let mut bytes = lcg_weights();
        bytes.truncate(bytes.len() - 100);
        let e = SileroModel::from_bytes(&bytes).unwrap_err().to_string();
        assert!(e.contains("past the end"), "{e}");
    }
}
