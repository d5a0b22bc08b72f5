//! Integer matrix products for quantised weights, written for the CPUs the hotline runs on.
//!
//! Every weight is `s·u − m` for an unsigned code `u`, with a scale `s` and an offset `m`
//! constant over a sub-block of a row. The layouts ([`Packing`]): per-block ones, where each
//! block of 32 weights has an f16 scale and offset — [`Packing::U4`] (two codes a byte: Q4_0
//! converts exactly), [`Packing::U5`] (the same plus a plane of fifth bits: Q5_0) and
//! [`Packing::U8`] (one code a byte: Q8_0; any other type is re-quantised to 8 bits per
//! block) — and the k-quant ones, which keep llama.cpp's two-level scales so that a token
//! reads about the bytes the GGUF holds: [`Packing::K4`] (Q4_K; 148 bytes per 256 weights
//! against the file's 144, the 6-bit sub-block scales and mins one a byte: unpacking the file's
//! 12 bytes in the one-token kernel cost more time on one thread than the 4 bytes saved) and
//! [`Packing::K6`] (Q6_K, the file's 210 bytes).
//! Activations are quantised per block of 32 to `i8` with an f32 scale, and the sums of each
//! block and half-block are kept, so `dot = Σ s·d·Σ u·q − Σ m·d·Σ q`: unsigned codes times
//! signed activations is exactly what AVX-512 VNNI's `vpdpbusd` multiplies, 64 products an
//! instruction. A scalar path computes the same sums where that instruction set is missing
//! (and checks the fast one in tests).

use half::f16;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::team::Team;

pub const BLOCK: usize = 32;
/// A k-quant super-block: one f16 scale (and min) over 256 weights.
const SUPER: usize = 256;
/// Blocks whose scales are combined in one vector (16 lanes of f32).
const GROUP: usize = 16;

/// How a [`QMat`] stores its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Two 4-bit codes a byte; per 128 weights, byte `i` holds weight `i` (low nibble) and
    /// weight `64 + i` (high nibble).
    U4,
    /// As `U4`, plus one bit a weight in a separate plane (bit `i` of a row's word `w` is
    /// bit 4 of weight `64·w + i`).
    U5,
    /// One 8-bit code a byte.
    U8,
    /// Q4_K: codes as `U4`; per 256 weights an f16 scale `d` and min `dmin`, per block of 32
    /// a 6-bit scale `a` and min `b` (a weight is `d·a·u − dmin·b`). 4.625 bits a weight.
    K4,
    /// Q6_K: nibbles as `U4` plus bits 4 and 5 of each code, 64 bytes per 256 weights: byte
    /// `i` holds those of weights `i`, `64 + i`, `128 + i` and `192 + i` in its bit pairs 0–1,
    /// 2–3, 4–5 and 6–7 (so that one vector load and a shift give 64 codes' high bits); per
    /// 256 weights an f16 scale `d`, per 16 an `i8` scale `a` (a weight is `d·a·(u − 32)`).
    /// 6.56 bits a weight.
    K6,
}

impl Packing {
    /// Codes two a byte (with the high bits, if any, in planes).
    fn nibbles(self) -> bool {
        self != Packing::U8
    }

    /// Bit planes above the nibbles.
    fn planes(self) -> usize {
        match self {
            Packing::U5 => 1,
            Packing::K6 => 2,
            _ => 0,
        }
    }

    /// Weights over which scale and offset are constant.
    fn sub_len(self) -> usize {
        if self == Packing::K6 {
            16
        } else {
            BLOCK
        }
    }

    /// Whether `scale` and `offset` are per 256-weight super-block (the k-quants).
    fn two_level(self) -> bool {
        matches!(self, Packing::K4 | Packing::K6)
    }
}

/// A quantised `rows × cols` matrix (a linear layer's `out × in` weight).
#[derive(Debug, Clone)]
pub struct QMat {
    pub rows: usize,
    pub cols: usize,
    pub packing: Packing,
    codes: Vec<u8>,
    /// The bits above the nibbles ([`Packing::planes`] a weight). [`Packing::U5`]: per row and
    /// 64-weight word `w`, bit `i` is bit 4 of weight `64·w + i`. [`Packing::K6`]: the bytes
    /// its doc describes, byte `8·w + k` of a row in bits `8·k..8·k + 8` of its word `w`.
    high: Vec<u64>,
    /// Scales (f16 bits): per row and block, or per row and super-block for the k-quants.
    scale: Vec<u16>,
    /// Offsets, laid out as `scale`. Empty when every offset is `offset_ratio × scale`
    /// (symmetric sources: Q8_0's codes are centred on 128, Q5_0's on 16, Q4_0's on 8, Q6_K's
    /// on 32 — there applied to the sub-block's scale), which saves two bytes a block.
    offset: Vec<u16>,
    offset_ratio: Option<f32>,
    /// k-quants' sub-block scales: [`Packing::K4`] one 6-bit value a block, [`Packing::K6`]
    /// one `i8` per 16 weights.
    sub_scale: Vec<u8>,
    /// [`Packing::K4`]'s 6-bit mins, one a block.
    sub_min: Vec<u8>,
}

/// Activations of one or more rows (tokens), quantised per block.
#[derive(Debug, Clone, Default)]
pub struct QActs {
    pub rows: usize,
    pub cols: usize,
    /// Blocks per row, padded to a whole group so vector loads need no mask.
    stride_blocks: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    /// `d · Σ q` per block.
    sum: Vec<f32>,
    /// `d · Σ q` per half-block (16 values; [`Packing::K6`]'s sub-blocks).
    half: Vec<f32>,
    /// For many rows, the same values in groups of 32 rows laid out for
    /// [`simd::tile`]: per group and block, `[4-value step][row][4 values]` codes, then the
    /// 32 rows' scales, sums and half-block sums.
    tiles: Vec<i8>,
    tile_d: Vec<f32>,
    tile_sum: Vec<f32>,
    tile_half: Vec<f32>,
}

/// One activation row's codes, scales, sums and half-block sums, as `fill` hands them out.
type RowParts<'a> = (
    ((&'a mut [i8], &'a mut [f32]), &'a mut [f32]),
    &'a mut [f32],
);

/// Rows from which the tiled product (no horizontal sums) is used.
const TILE_MIN_ROWS: usize = 8;
const TILE_ROWS: usize = 32;

impl QActs {
    /// Quantises `rows × cols` activations (`cols` a multiple of 32).
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> QActs {
        let mut a = QActs::default();
        a.fill(x, rows, cols);
        a
    }

    /// As [`QActs::quantize`], reusing this value's buffers.
    pub fn fill(&mut self, x: &[f32], rows: usize, cols: usize) {
        assert_eq!(x.len(), rows * cols);
        assert_eq!(
            cols % BLOCK,
            0,
            "activation length must be a multiple of 32"
        );
        let nb = cols / BLOCK;
        let stride_blocks = nb.div_ceil(GROUP) * GROUP;
        self.rows = rows;
        self.cols = cols;
        self.stride_blocks = stride_blocks;
        // A tiled copy from an earlier, larger fill must not outlive it.
        self.tiles.clear();
        self.q.clear();
        self.q.resize(rows * stride_blocks * BLOCK, 0);
        self.d.clear();
        self.d.resize(rows * stride_blocks, 0.0);
        self.sum.clear();
        self.sum.resize(rows * stride_blocks, 0.0);
        self.half.clear();
        self.half.resize(rows * stride_blocks * 2, 0.0);
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            let one_row = |(r, (((q, d), sum), half)): (usize, RowParts<'_>)| {
                for b in 0..nb {
                    let src = &x[r * cols + b * BLOCK..r * cols + (b + 1) * BLOCK];
                    // SAFETY: the CPU has AVX-512 (checked); `src` is 32 values and the
                    // destination block is 32 bytes inside this row of `q`.
                    let (bd, lo, hi) =
                        unsafe { simd::quantize_block(src, q[b * BLOCK..].as_mut_ptr()) };
                    d[b] = bd;
                    sum[b] = bd * (lo + hi) as f32;
                    half[2 * b] = bd * lo as f32;
                    half[2 * b + 1] = bd * hi as f32;
                }
            };
            let row_len = stride_blocks * BLOCK;
            if rows >= TILE_MIN_ROWS {
                self.q
                    .par_chunks_mut(row_len)
                    .zip(self.d.par_chunks_mut(stride_blocks))
                    .zip(self.sum.par_chunks_mut(stride_blocks))
                    .zip(self.half.par_chunks_mut(2 * stride_blocks))
                    .enumerate()
                    .for_each(one_row);
            } else {
                self.q
                    .chunks_mut(row_len)
                    .zip(self.d.chunks_mut(stride_blocks))
                    .zip(self.sum.chunks_mut(stride_blocks))
                    .zip(self.half.chunks_mut(2 * stride_blocks))
                    .enumerate()
                    .for_each(one_row);
            }
            if rows >= TILE_MIN_ROWS {
                self.build_tiles();
            }
            return;
        }
        for r in 0..rows {
            for b in 0..nb {
                let src = &x[r * cols + b * BLOCK..r * cols + (b + 1) * BLOCK];
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                let at = (r * stride_blocks + b) * BLOCK;
                let mut s = [0i32; 2];
                for (j, (o, v)) in self.q[at..at + BLOCK].iter_mut().zip(src).enumerate() {
                    let q = (v * inv).round().clamp(-127.0, 127.0) as i8;
                    *o = q;
                    s[j / 16] += q as i32;
                }
                let k = r * stride_blocks + b;
                self.d[k] = d;
                self.sum[k] = d * (s[0] + s[1]) as f32;
                self.half[2 * k] = d * s[0] as f32;
                self.half[2 * k + 1] = d * s[1] as f32;
            }
        }
    }

    /// Builds the tiled copy (see `tiles`).
    fn build_tiles(&mut self) {
        let nb = self.cols / BLOCK;
        let groups = self.rows.div_ceil(TILE_ROWS);
        self.tiles.clear();
        self.tiles.resize(groups * nb * BLOCK * TILE_ROWS, 0);
        self.tile_d.clear();
        self.tile_d.resize(groups * nb * TILE_ROWS, 0.0);
        self.tile_sum.clear();
        self.tile_sum.resize(groups * nb * TILE_ROWS, 0.0);
        self.tile_half.clear();
        self.tile_half.resize(groups * nb * 2 * TILE_ROWS, 0.0);
        let sb = self.stride_blocks;
        let rows = self.rows;
        let (q, d, sum, half) = (&self.q, &self.d, &self.sum, &self.half);
        self.tiles
            .par_chunks_mut(nb * BLOCK * TILE_ROWS)
            .zip(self.tile_d.par_chunks_mut(nb * TILE_ROWS))
            .zip(self.tile_sum.par_chunks_mut(nb * TILE_ROWS))
            .zip(self.tile_half.par_chunks_mut(nb * 2 * TILE_ROWS))
            .enumerate()
            .for_each(|(g, (((tiles, td), ts), th))| {
                for lane in 0..TILE_ROWS.min(rows - g * TILE_ROWS) {
                    let r = g * TILE_ROWS + lane;
                    for b in 0..nb {
                        let src = &q[(r * sb + b) * BLOCK..(r * sb + b + 1) * BLOCK];
                        let base = b * BLOCK * TILE_ROWS;
                        for step in 0..BLOCK / 4 {
                            let at = base + step * 4 * TILE_ROWS + lane * 4;
                            tiles[at..at + 4].copy_from_slice(&src[step * 4..step * 4 + 4]);
                        }
                        td[b * TILE_ROWS + lane] = d[r * sb + b];
                        ts[b * TILE_ROWS + lane] = sum[r * sb + b];
                        for h in 0..2 {
                            th[(2 * b + h) * TILE_ROWS + lane] = half[2 * (r * sb + b) + h];
                        }
                    }
                }
            });
    }

    fn row(&self, r: usize) -> ActRow<'_> {
        let sb = self.stride_blocks;
        ActRow {
            q: &self.q[r * sb * BLOCK..(r + 1) * sb * BLOCK],
            d: &self.d[r * sb..(r + 1) * sb],
            sum: &self.sum[r * sb..(r + 1) * sb],
            half: &self.half[2 * r * sb..2 * (r + 1) * sb],
        }
    }
}

#[derive(Clone, Copy)]
struct ActRow<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sum: &'a [f32],
    half: &'a [f32],
}

fn f16_bits(v: f32) -> u16 {
    f16::from_f32(v).to_bits()
}

fn f16_val(b: u16) -> f32 {
    f16::from_bits(b).to_f32()
}

/// Source formats converted without loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Q4_0,
    Q4K,
    Q5_0,
    Q8_0,
    Q6K,
}

/// One row as a source hands it over, before packing: unpacked codes, then the scales and
/// offsets as the layout keeps them (per block, or per super-block with the sub-blocks'
/// integer scales and mins).
struct RowBuf {
    codes: Vec<u8>,
    scale: Vec<f32>,
    offset: Vec<f32>,
    sub_scale: Vec<u8>,
    sub_min: Vec<u8>,
}

impl QMat {
    fn empty(rows: usize, cols: usize, packing: Packing) -> Result<QMat> {
        let unit = match packing {
            Packing::U4 | Packing::U5 => 128,
            Packing::U8 => 2 * BLOCK,
            Packing::K4 | Packing::K6 => SUPER,
        };
        if cols == 0 || !cols.is_multiple_of(unit) {
            return Err(Error::Format {
                path: Default::default(),
                format: "quantised matrix",
                reason: format!("rows of {cols} values are not a multiple of {unit}"),
            });
        }
        let per_row = if packing.nibbles() { cols / 2 } else { cols };
        let mut m = QMat {
            rows,
            cols,
            packing,
            codes: vec![0; rows * per_row],
            high: vec![0; rows * cols / 64 * packing.planes()],
            scale: Vec::new(),
            offset: Vec::new(),
            offset_ratio: None,
            sub_scale: Vec::new(),
            sub_min: Vec::new(),
        };
        m.scale = vec![0; rows * m.scales_per_row()];
        m.offset = m.scale.clone();
        m.sub_scale = vec![0; rows * m.subs_per_row()];
        if packing == Packing::K4 {
            m.sub_min = m.sub_scale.clone();
        }
        Ok(m)
    }

    /// Entries of `scale` (and `offset`) a row.
    fn scales_per_row(&self) -> usize {
        if self.packing.two_level() {
            self.cols / SUPER
        } else {
            self.cols / BLOCK
        }
    }

    /// Entries of `sub_scale` a row.
    fn subs_per_row(&self) -> usize {
        if self.packing.two_level() {
            self.cols / self.packing.sub_len()
        } else {
            0
        }
    }

    fn row_bytes(&self) -> usize {
        if self.packing.nibbles() {
            self.cols / 2
        } else {
            self.cols
        }
    }

    fn code(&self, row: usize, col: usize) -> u8 {
        let rb = self.row_bytes();
        if !self.packing.nibbles() {
            return self.codes[row * rb + col];
        }
        let (chunk, i) = (col / 128, col % 128);
        let b = self.codes[row * rb + chunk * 64 + (i % 64)];
        let mut u = if i < 64 { b & 0x0F } else { b >> 4 };
        if self.packing == Packing::K6 {
            let (k, i) = ((col % SUPER) / 64, col % 64);
            let w = self.high[row * self.cols / 32 + col / SUPER * 8 + i / 8];
            let byte = (w >> (8 * (i % 8))) as u8;
            return u | ((byte >> (2 * k)) & 3) << 4;
        }
        let planes = self.packing.planes();
        for p in 0..planes {
            let w = self.high[(row * self.cols / 64 + col / 64) * planes + p];
            u |= (((w >> (col % 64)) & 1) as u8) << (4 + p);
        }
        u
    }

    /// The scale and offset of row `row`'s sub-block `s` (of [`Packing::sub_len`] weights).
    fn sub_params(&self, row: usize, s: usize) -> (f32, f32) {
        match self.packing {
            Packing::U4 | Packing::U5 | Packing::U8 => {
                let k = row * self.cols / BLOCK + s;
                let sc = f16_val(self.scale[k]);
                match self.offset_ratio {
                    Some(ratio) => (sc, ratio * sc),
                    None => (sc, f16_val(self.offset[k])),
                }
            }
            Packing::K4 => {
                let sup = row * self.cols / SUPER + s / (SUPER / BLOCK);
                let k = row * self.cols / BLOCK + s;
                (
                    f16_val(self.scale[sup]) * self.sub_scale[k] as f32,
                    f16_val(self.offset[sup]) * self.sub_min[k] as f32,
                )
            }
            Packing::K6 => {
                let sup = row * self.cols / SUPER + s / 16;
                let k = row * self.cols / 16 + s;
                let sc = f16_val(self.scale[sup]) * self.sub_scale[k] as i8 as f32;
                (sc, self.offset_ratio.unwrap_or(0.0) * sc)
            }
        }
    }

    /// Converts raw GGML blocks (`rows × cols` values, row-major) without loss: Q4_0 to
    /// [`Packing::U4`] and Q5_0 to [`Packing::U5`] when rows are whole 128-value chunks,
    /// Q4_K to [`Packing::K4`], Q6_K to [`Packing::K6`], everything else to [`Packing::U8`].
    pub fn from_ggml(src: Source, data: &[u8], rows: usize, cols: usize) -> Result<QMat> {
        let packing = match src {
            // Rows that are not whole 128-value chunks keep one code a byte.
            Source::Q4_0 if cols.is_multiple_of(128) => Packing::U4,
            Source::Q5_0 if cols.is_multiple_of(128) => Packing::U5,
            Source::Q4K => Packing::K4,
            Source::Q6K => Packing::K6,
            _ => Packing::U8,
        };
        let (block_vals, block_bytes) = match src {
            Source::Q4_0 => (32, 18),
            Source::Q5_0 => (32, 22),
            Source::Q8_0 => (32, 34),
            Source::Q4K => (256, 144),
            Source::Q6K => (256, 210),
        };
        let bad = || Error::Format {
            path: Default::default(),
            format: "quantised matrix",
            reason: format!("{src:?} data of {} bytes for {rows} × {cols}", data.len()),
        };
        if !cols.is_multiple_of(block_vals) || data.len() != rows * cols / block_vals * block_bytes
        {
            return Err(bad());
        }
        let per_row = cols / block_vals;
        let ratio = match src {
            Source::Q8_0 => Some(128.0),
            Source::Q5_0 => Some(16.0),
            Source::Q4_0 => Some(8.0),
            Source::Q6K => Some(32.0),
            Source::Q4K => None,
        };
        QMat::build(rows, cols, packing, ratio, |r, out| {
            for b in 0..per_row {
                let at = (r * per_row + b) * block_bytes;
                let blk = &data[at..at + block_bytes];
                let base = b * block_vals;
                let c = &mut out.codes[base..base + block_vals];
                match src {
                    Source::Q8_0 | Source::Q4_0 | Source::Q5_0 => {
                        let d = f16_val(u16::from_le_bytes([blk[0], blk[1]]));
                        out.scale[base / BLOCK] = d;
                        match src {
                            Source::Q8_0 => {
                                for j in 0..32 {
                                    c[j] = (blk[2 + j] as i8 as i16 + 128) as u8;
                                }
                            }
                            Source::Q4_0 => {
                                for j in 0..16 {
                                    c[j] = blk[2 + j] & 0x0F;
                                    c[j + 16] = blk[2 + j] >> 4;
                                }
                            }
                            _ => {
                                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                                for j in 0..16 {
                                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                                    c[j] = (blk[6 + j] & 0x0F) | h0;
                                    c[j + 16] = (blk[6 + j] >> 4) | h1;
                                }
                            }
                        }
                    }
                    Source::Q4K => {
                        out.scale[b] = f16_val(u16::from_le_bytes([blk[0], blk[1]]));
                        out.offset[b] = f16_val(u16::from_le_bytes([blk[2], blk[3]]));
                        let qs = &blk[16..144];
                        for sub in 0..8 {
                            let (sc, mn) = scale_min_k4(sub, &blk[4..16]);
                            out.sub_scale[8 * b + sub] = sc;
                            out.sub_min[8 * b + sub] = mn;
                            // Chunk of 64: low nibbles are its first 32 values, high the rest.
                            let q = &qs[(sub / 2) * 32..(sub / 2) * 32 + 32];
                            for (l, &byte) in q.iter().enumerate() {
                                c[sub * 32 + l] =
                                    if sub % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                            }
                        }
                    }
                    Source::Q6K => {
                        out.scale[b] = f16_val(u16::from_le_bytes([blk[208], blk[209]]));
                        out.sub_scale[16 * b..16 * b + 16].copy_from_slice(&blk[192..208]);
                        q6k_codes(&blk[..192], c);
                    }
                }
            }
        })
    }

    /// Quantises f32 weights to 8 bits per block of 32 (min to max in 255 steps).
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Result<QMat> {
        assert_eq!(w.len(), rows * cols);
        QMat::build(rows, cols, Packing::U8, None, |r, out| {
            quantize_row_u8(
                &w[r * cols..(r + 1) * cols],
                &mut out.codes,
                &mut out.scale,
                &mut out.offset,
            )
        })
    }

    /// Builds a matrix row by row, rows in parallel: `row(r, buf)` fills row `r`'s unpacked
    /// codes and its scales and offsets as the layout keeps them (see [`RowBuf`]).
    fn build(
        rows: usize,
        cols: usize,
        packing: Packing,
        offset_ratio: Option<f32>,
        row: impl Fn(usize, &mut RowBuf) + Sync,
    ) -> Result<QMat> {
        const CHUNK: usize = 256;
        let proto = QMat::empty(1, cols, packing)?;
        let parts: Vec<QMat> = (0..rows.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let (r0, r1) = (c * CHUNK, ((c + 1) * CHUNK).min(rows));
                let mut m = QMat::empty(r1 - r0, cols, packing).expect("width checked above");
                if offset_ratio.is_some() {
                    m.offset = Vec::new();
                    m.offset_ratio = offset_ratio;
                }
                let mut buf = RowBuf {
                    codes: vec![0; cols],
                    scale: vec![0.0; proto.scale.len()],
                    offset: vec![0.0; proto.scale.len()],
                    sub_scale: vec![0; proto.sub_scale.len()],
                    sub_min: vec![0; proto.sub_min.len()],
                };
                for r in r0..r1 {
                    row(r, &mut buf);
                    m.pack_row(r - r0, &buf);
                }
                m
            })
            .collect();
        let mut out = QMat::empty(0, cols, packing)?;
        if offset_ratio.is_some() {
            out.offset = Vec::new();
            out.offset_ratio = offset_ratio;
        }
        for p in parts {
            out.stack(p);
        }
        Ok(out)
    }

    /// Writes row `r` from its unpacked form.
    fn pack_row(&mut self, r: usize, buf: &RowBuf) {
        let ns = self.scales_per_row();
        for (i, &v) in buf.scale.iter().enumerate() {
            self.scale[r * ns + i] = f16_bits(v);
        }
        if self.offset_ratio.is_none() {
            for (i, &v) in buf.offset.iter().enumerate() {
                self.offset[r * ns + i] = f16_bits(v);
            }
        }
        let nsub = self.subs_per_row();
        self.sub_scale[r * nsub..(r + 1) * nsub].copy_from_slice(&buf.sub_scale);
        if !self.sub_min.is_empty() {
            self.sub_min[r * nsub..(r + 1) * nsub].copy_from_slice(&buf.sub_min);
        }
        let rb = self.row_bytes();
        let codes = &buf.codes;
        let dst = &mut self.codes[r * rb..(r + 1) * rb];
        if !self.packing.nibbles() {
            dst.copy_from_slice(codes);
            return;
        }
        for (c, out) in dst.chunks_mut(64).enumerate() {
            let src = &codes[c * 128..(c + 1) * 128];
            for j in 0..64 {
                out[j] = (src[j] & 0x0F) | (src[64 + j] << 4);
            }
        }
        if self.packing == Packing::K6 {
            let words = &mut self.high[r * self.cols / 32..(r + 1) * self.cols / 32];
            words.fill(0);
            for (sb, c) in codes.chunks(SUPER).enumerate() {
                for i in 0..64 {
                    let byte =
                        (0..4).fold(0u8, |acc, k| acc | ((c[64 * k + i] >> 4) & 3) << (2 * k));
                    words[sb * 8 + i / 8] |= (byte as u64) << (8 * (i % 8));
                }
            }
            return;
        }
        let planes = self.packing.planes();
        let words = self.cols / 64;
        for w in 0..words {
            for p in 0..planes {
                self.high[(r * words + w) * planes + p] = codes[w * 64..(w + 1) * 64]
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (j, &u)| {
                        acc | (((u >> (4 + p)) & 1) as u64) << j
                    });
            }
        }
    }

    /// Whether [`QMat::stack`] takes `other`.
    pub fn can_stack(&self, other: &QMat) -> bool {
        self.packing == other.packing
            && self.cols == other.cols
            && self.offset_ratio == other.offset_ratio
    }

    /// Appends `other`'s rows (same layout and width) below this matrix's.
    pub fn stack(&mut self, other: QMat) {
        assert!(self.can_stack(&other));
        self.rows += other.rows;
        self.codes.extend(other.codes);
        self.high.extend(other.high);
        self.scale.extend(other.scale);
        self.offset.extend(other.offset);
        self.sub_scale.extend(other.sub_scale);
        self.sub_min.extend(other.sub_min);
    }

    /// The same matrix with one code a byte (twice the memory of [`Packing::U4`], no
    /// unpacking in the batched product; the embedder's 21 M weights are worth it). The
    /// k-quants have no exact per-block form: they are re-quantised to 8 bits.
    pub fn to_u8(&self) -> QMat {
        match self.packing {
            Packing::U8 => self.clone(),
            Packing::K4 | Packing::K6 => {
                let w: Vec<f32> = (0..self.rows)
                    .flat_map(|r| self.dequantize_row(r))
                    .collect();
                QMat::from_f32(&w, self.rows, self.cols).expect("k-quant rows are whole blocks")
            }
            Packing::U4 | Packing::U5 => {
                let mut codes = Vec::with_capacity(self.rows * self.cols);
                for r in 0..self.rows {
                    codes.extend((0..self.cols).map(|c| self.code(r, c)));
                }
                QMat {
                    packing: Packing::U8,
                    codes,
                    high: Vec::new(),
                    ..self.clone()
                }
            }
        }
    }

    /// The weights as f32 (tests, and the rare caller that needs a dense copy).
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        let l = self.packing.sub_len();
        (0..self.cols)
            .map(|c| {
                let (sc, of) = self.sub_params(row, c / l);
                sc * self.code(row, c) as f32 - of
            })
            .collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.codes.len()
            + 8 * self.high.len()
            + 2 * (self.scale.len() + self.offset.len())
            + self.sub_scale.len()
            + self.sub_min.len()
    }

    /// `out[t][r] = Σ_c w[r][c] · x[t][c]` for every row `t` of `x`, rows of `self` split
    /// across the current rayon pool. `out` is `x.rows × self.rows`, row-major.
    pub fn matmul(&self, x: &QActs, out: &mut [f32]) {
        self.check_shapes(x, out);
        let threads = rayon::current_num_threads();
        // Enough chunks to balance, few enough that dispatch stays cheap.
        let chunk = self.rows.div_ceil(threads * 4).max(16);
        let dst = crate::dense::SyncPtr(out.as_mut_ptr());
        let body = |start: usize| {
            let end = (start + chunk).min(self.rows);
            // SAFETY: each task writes only columns `start..end` of every output row, which no
            // other task writes; `out` outlives the parallel loop.
            unsafe { self.rows_into(x, start, end, dst, self.rows) };
        };
        if self.rows <= chunk || threads == 1 {
            (0..self.rows).step_by(chunk).for_each(body);
        } else {
            (0..self.rows).into_par_iter().step_by(chunk).for_each(body);
        }
    }

    /// As [`QMat::matmul`], on `team` when `x` is a few rows (a generated token), split as
    /// [`Split`] says. Many rows go to rayon.
    pub fn matmul_on(&self, x: &QActs, out: &mut [f32], team: &Team) {
        if !x.tiles.is_empty() || team.threads() == 1 {
            return self.matmul(x, out);
        }
        self.check_shapes(x, out);
        let split = Split::new(self.rows, team.threads(), self.bytes() / self.rows.max(1));
        let dst = crate::dense::SyncPtr(out.as_mut_ptr());
        team.run(split.tasks(), &|i| {
            let (start, end) = split.range(i);
            // SAFETY: as in `matmul`: task `i` alone writes columns `start..end`.
            unsafe { self.rows_into(x, start, end, dst, self.rows) };
        });
    }

    fn check_shapes(&self, x: &QActs, out: &[f32]) {
        assert_eq!(
            x.cols, self.cols,
            "activation length differs from the matrix"
        );
        assert_eq!(out.len(), x.rows * self.rows);
    }

    /// Computes weight rows `start..end` for every activation row.
    ///
    /// # Safety
    /// `dst` must point to an `x.rows × n_out` buffer whose columns `start..end` no one else
    /// touches during the call.
    unsafe fn rows_into(
        &self,
        x: &QActs,
        start: usize,
        end: usize,
        dst: crate::dense::SyncPtr,
        n_out: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if !x.tiles.is_empty() && simd::available() {
            // SAFETY: as this function's contract; the CPU was checked.
            unsafe { self.rows_into_tiled(x, start, end, dst, n_out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if x.rows == 1 && simd::available() {
            // SAFETY: as this function's contract (row 0 of `dst` holds `n_out ≥ end` values);
            // the CPU was checked.
            unsafe { simd::dot_range1(self, start, end, x.row(0), dst.0) };
            return;
        }
        const TILE: usize = 4;
        let mut t = 0;
        while t < x.rows {
            let nt = (x.rows - t).min(TILE);
            let acts: Vec<ActRow<'_>> = (t..t + nt).map(|i| x.row(i)).collect();
            for r in start..end {
                let mut res = [0f32; TILE];
                self.dot_rows(r, &acts, &mut res[..nt]);
                for (i, v) in res[..nt].iter().enumerate() {
                    // SAFETY: in bounds (`t + i < x.rows`, `r < n_out`); column `r` is ours.
                    unsafe { *dst.0.add((t + i) * n_out + r) = *v };
                }
            }
            t += nt;
        }
    }

    /// The tiled product: four weight rows at a time against 32 activation rows, lanes =
    /// activation rows, so no horizontal sums. Activation rows go in ranges of 512 (their
    /// codes stay in L2) with every weight row of the task inside.
    ///
    /// # Safety
    /// As [`QMat::rows_into`]; the CPU must have what `simd` needs.
    #[cfg(target_arch = "x86_64")]
    unsafe fn rows_into_tiled(
        &self,
        x: &QActs,
        start: usize,
        end: usize,
        dst: crate::dense::SyncPtr,
        n_out: usize,
    ) {
        const R: usize = simd::TILE_W;
        const SPAN: usize = 16;
        let nb = self.cols / BLOCK;
        let rb = self.row_bytes();
        let l = self.packing.sub_len();
        let ns = self.cols / l;
        let groups = x.rows.div_ceil(TILE_ROWS);
        let mut unpacked = vec![0u8; R * self.cols];
        let mut sc = vec![0f32; R * ns];
        let mut of = vec![0f32; R * ns];
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + SPAN).min(groups);
            let mut r0 = start;
            while r0 < end {
                let nr = (end - r0).min(R);
                // Rows past the end repeat the last one (their results are dropped).
                let rows: [usize; R] = std::array::from_fn(|i| r0 + i.min(nr - 1));
                let codes: [&[u8]; R] = if self.packing.nibbles() {
                    for (i, &r) in rows.iter().enumerate() {
                        // SAFETY: the CPU was checked by the caller; the row is `cols` wide.
                        unsafe {
                            simd::unpack_row(self, r, &mut unpacked[i * self.cols..][..self.cols])
                        };
                    }
                    std::array::from_fn(|i| &unpacked[i * self.cols..(i + 1) * self.cols])
                } else {
                    rows.map(|r| &self.codes[r * rb..(r + 1) * rb])
                };
                for (i, &r) in rows.iter().enumerate() {
                    for s in 0..ns {
                        (sc[i * ns + s], of[i * ns + s]) = self.sub_params(r, s);
                    }
                }
                for g in g0..g1 {
                    let mut res = [[0f32; TILE_ROWS]; R];
                    let xq = &x.tiles[g * nb * BLOCK * TILE_ROWS..];
                    let xd = &x.tile_d[g * nb * TILE_ROWS..];
                    // SAFETY: the CPU was checked by the caller; the slices hold what `tile`
                    // reads (it asserts their lengths).
                    unsafe {
                        if l == BLOCK {
                            let xs = &x.tile_sum[g * nb * TILE_ROWS..];
                            simd::tile::<1>(&codes, &sc, &of, self.cols, xq, xd, xs, &mut res)
                        } else {
                            let xs = &x.tile_half[g * nb * 2 * TILE_ROWS..];
                            simd::tile::<2>(&codes, &sc, &of, self.cols, xq, xd, xs, &mut res)
                        }
                    };
                    let lanes = (x.rows - g * TILE_ROWS).min(TILE_ROWS);
                    for lane in 0..lanes {
                        let t = g * TILE_ROWS + lane;
                        for (i, row) in res.iter().enumerate().take(nr) {
                            // SAFETY: in bounds; column `r0 + i` is this task's.
                            unsafe { *dst.0.add(t * n_out + r0 + i) = row[lane] };
                        }
                    }
                }
                r0 += nr;
            }
            g0 = g1;
        }
    }

    fn dot_rows(&self, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            // SAFETY: the CPU has the instruction sets `simd` is compiled for (checked above).
            unsafe { simd::dot_rows(self, r, acts, out) };
            return;
        }
        self.dot_rows_scalar(r, acts, out);
    }

    fn dot_rows_scalar(&self, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        let l = self.packing.sub_len();
        for (a, o) in acts.iter().zip(out.iter_mut()) {
            let mut acc = 0f32;
            for s in 0..self.cols / l {
                let mut dot = 0i32;
                for j in s * l..(s + 1) * l {
                    dot += self.code(r, j) as i32 * a.q[j] as i32;
                }
                let (sc, of) = self.sub_params(r, s);
                let b = s * l / BLOCK;
                let xsum = if l == BLOCK { a.sum[b] } else { a.half[s] };
                acc += sc * a.d[b] * dot as f32 - of * xsum;
            }
            *o = acc;
        }
    }
}

/// How [`QMat::matmul_on`] splits a one-token product among a team: the first seven eighths of
/// the rows in one contiguous span a thread, so that each streams one run of memory (tasks of
/// 32 KB taken in turn from a shared counter broke every thread's stream every 32 KB, the
/// hardware prefetcher starting over and the software prefetch running into the other
/// thread's rows: 1.5B generation at two threads 24.4 → 27.7 tok/s on an AMD EPYC, with the
/// rows split evenly), then the last eighth in pieces of [`Split::PIECE_BYTES`] that whichever
/// thread is ahead takes, so that a thread slowed by the machine's other load does not keep
/// the rest waiting.
#[derive(Debug, Clone, Copy)]
struct Split {
    rows: usize,
    /// Rows in the spans (`span` a task, the last shorter).
    head: usize,
    span: usize,
    head_tasks: usize,
    piece: usize,
}

impl Split {
    const PIECE_BYTES: usize = 64 << 10;

    fn new(rows: usize, threads: usize, row_bytes: usize) -> Split {
        let tail = rows / 8;
        let piece = (Self::PIECE_BYTES / row_bytes.max(1)).clamp(1, tail.max(1));
        let head = rows - tail;
        let span = head.div_ceil(threads.max(1)).max(1);
        Split {
            rows,
            head,
            span,
            head_tasks: head.div_ceil(span),
            piece,
        }
    }

    fn tasks(&self) -> usize {
        self.head_tasks + (self.rows - self.head).div_ceil(self.piece)
    }

    /// Task `i`'s rows.
    fn range(&self, i: usize) -> (usize, usize) {
        if i < self.head_tasks {
            (i * self.span, ((i + 1) * self.span).min(self.head))
        } else {
            let start = self.head + (i - self.head_tasks) * self.piece;
            (start, (start + self.piece).min(self.rows))
        }
    }
}

/// One row of f32 weights to 8-bit codes, per block of 32 from its min to its max.
fn quantize_row_u8(row: &[f32], codes: &mut [u8], scale: &mut [f32], offset: &mut [f32]) {
    for (b, src) in row.chunks(BLOCK).enumerate() {
        let lo = src.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Round the scale and offset to f16 first, then pick codes against them.
        let s = f16::from_f32((hi - lo) / 255.0).to_f32();
        let off = f16::from_f32(-lo).to_f32();
        (scale[b], offset[b]) = (s, off);
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        for (j, v) in src.iter().enumerate() {
            codes[b * BLOCK + j] = ((v + off) * inv).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// One ggml Q6_K block's 256 codes (0 to 63, the value plus 32) from its 128 bytes of low
/// parts and 64 of high parts.
fn q6k_codes(blk: &[u8], c: &mut [u8]) {
    let (ql, qh) = blk.split_at(128);
    for half in 0..2 {
        let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
        let c = &mut c[128 * half..];
        for l in 0..32 {
            c[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            c[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            c[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            c[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
}

/// Q4_K's packed 6-bit scale and min of sub-block `j`.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // lanes and rows are indexed in step, as in the math
mod simd {
    use std::arch::x86_64::*;

    use super::{f16_val, ActRow, Packing, QMat, BLOCK, GROUP, SUPER};

    pub fn available() -> bool {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            std::env::var_os("HOTLINE_NO_SIMD").is_none()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
        })
    }

    /// Lane `l` → `k·j + l / (16 / k)` for `j` in `0..16 / k`: which of 16 scales a lane of
    /// 4-product sums needs, when a vector of 64 weights spans `k` sub-blocks.
    const fn lanes(k: usize) -> [[i32; 16]; 8] {
        let mut t = [[0i32; 16]; 8];
        let mut j = 0;
        while j < 16 / k {
            let mut l = 0;
            while l < 16 {
                t[j][l] = (k * j + l / (16 / k)) as i32;
                l += 1;
            }
            j += 1;
        }
        t
    }

    /// Blocks of 32: the pair `(2j, 2j + 1)` in a vector of 64 weights.
    const PAIRS: [[i32; 16]; 8] = lanes(2);
    /// Sub-blocks of 16: four in a vector of 64 weights.
    const QUADS: [[i32; 16]; 8] = lanes(4);
    /// How far ahead of the codes being multiplied the one-token product asks for more: the
    /// hardware prefetcher alone leaves the loop waiting on memory (it streams at ~8 GB/s
    /// a core where a plain read loop reaches ~15).
    const AHEAD: usize = 4096;

    /// Lane `l` → `l / 2`: a block's activation scale for each of its two sub-blocks.
    const DUP: [i32; 16] = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7];

    /// The codes of 128 weights of a nibble layout, chunk `c` of a row (`codes` and `high`
    /// point at the row's first byte and word): the first 64 and the last 64, one a byte.
    ///
    /// # Safety
    /// AVX-512 F/BW; the chunk lies inside the row.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn nibbles(
        packing: Packing,
        codes: *const u8,
        high: *const u64,
        c: usize,
    ) -> (__m512i, __m512i) {
        let raw = _mm512_loadu_si512(codes.add(c * 64) as *const _);
        let low = _mm512_set1_epi8(0x0F);
        let mut lo = _mm512_and_si512(raw, low);
        let mut hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
        match packing {
            Packing::U5 => {
                let bit4 = _mm512_set1_epi8(0x10);
                lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(high.add(2 * c).read(), bit4));
                hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi8(high.add(2 * c + 1).read(), bit4));
            }
            Packing::K6 => {
                // The super-block's 64 bytes of high bits; chunk `c` is its first or second half.
                let h = _mm512_loadu_si512(high.add(8 * (c / 2)) as *const _);
                let bits = _mm512_set1_epi8(0x30);
                let (a, b) = if c.is_multiple_of(2) {
                    (_mm512_slli_epi16(h, 4), _mm512_slli_epi16(h, 2))
                } else {
                    (h, _mm512_srli_epi16(h, 2))
                };
                lo = _mm512_or_si512(lo, _mm512_and_si512(a, bits));
                hi = _mm512_or_si512(hi, _mm512_and_si512(b, bits));
            }
            _ => {}
        }
        (lo, hi)
    }

    /// `acc` plus 128 weights' codes (`lo`: the first 64, `hi`: the rest) times the
    /// activation codes at `q`, each lane's 4-product sum scaled by the lane of `s` that
    /// `idx.0` (first 64) or `idx.1` picks. Two accumulators, one a half: the two FMAs do not
    /// wait on each other (with one, a 4-cycle FMA latency twice per 64 bytes of codes bounded
    /// a one-token product to ~8 bytes a cycle).
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI; `q` holds 128 values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot128(
        (acc0, acc1): (__m512, __m512),
        (lo, hi): (__m512i, __m512i),
        q: *const i8,
        idx: (__m512i, __m512i),
        s: __m512,
    ) -> (__m512, __m512) {
        let x0 = _mm512_loadu_si512(q as *const _);
        let x1 = _mm512_loadu_si512(q.add(64) as *const _);
        let d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x0);
        let d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, x1);
        (
            _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(d0),
                _mm512_permutexvar_ps(idx.0, s),
                acc0,
            ),
            _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(d1),
                _mm512_permutexvar_ps(idx.1, s),
                acc1,
            ),
        )
    }

    /// Row `r` of a nibble layout unpacked to one code a byte (`dst`: `m.cols` bytes).
    ///
    /// # Safety
    /// AVX-512 F/BW; `m` is a nibble layout.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn unpack_row(m: &QMat, r: usize, dst: &mut [u8]) {
        assert!(m.packing.nibbles() && dst.len() == m.cols && r < m.rows);
        let codes = m.codes.as_ptr().add(r * m.row_bytes());
        let high = m
            .high
            .as_ptr()
            .wrapping_add(r * m.cols / 64 * m.packing.planes());
        for c in 0..m.cols / 128 {
            let (lo, hi) = nibbles(m.packing, codes, high, c);
            _mm512_storeu_si512(dst.as_mut_ptr().add(c * 128) as *mut _, lo);
            _mm512_storeu_si512(dst.as_mut_ptr().add(c * 128 + 64) as *mut _, hi);
        }
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI; `acts` rows hold `m.cols` values padded to
    /// a whole group; at most 4 rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn dot_rows(m: &QMat, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        match (m.packing, acts.len()) {
            (Packing::K6, 1) => dot_rows_k6::<1>(m, r, acts, out),
            (Packing::K6, 2) => dot_rows_k6::<2>(m, r, acts, out),
            (Packing::K6, 3) => dot_rows_k6::<3>(m, r, acts, out),
            (Packing::K6, _) => dot_rows_k6::<4>(m, r, acts, out),
            (Packing::K4, 1) => dot_rows_k4::<1>(m, r, acts, out),
            (Packing::K4, 2) => dot_rows_k4::<2>(m, r, acts, out),
            (Packing::K4, 3) => dot_rows_k4::<3>(m, r, acts, out),
            (Packing::K4, _) => dot_rows_k4::<4>(m, r, acts, out),
            (Packing::U8, _) => dot_rows_p::<{ Packing::U8 as u8 }>(m, r, acts, out),
            (Packing::U4, _) => dot_rows_p::<{ Packing::U4 as u8 }>(m, r, acts, out),
            (Packing::U5, _) => dot_rows_p::<{ Packing::U5 as u8 }>(m, r, acts, out),
        }
    }

    /// [`dot_rows_n`] for each activation count, packing `P` a constant (no per-step branch
    /// on the layout in the inner loop).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows_p<const P: u8>(m: &QMat, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        match acts.len() {
            1 => dot_rows_n::<1, P>(m, r, acts, out),
            2 => dot_rows_n::<2, P>(m, r, acts, out),
            3 => dot_rows_n::<3, P>(m, r, acts, out),
            _ => dot_rows_n::<4, P>(m, r, acts, out),
        }
    }

    /// The packing whose discriminant is `p`.
    const fn packing(p: u8) -> Packing {
        match p {
            x if x == Packing::U8 as u8 => Packing::U8,
            x if x == Packing::U4 as u8 => Packing::U4,
            x if x == Packing::U5 as u8 => Packing::U5,
            x if x == Packing::K4 as u8 => Packing::K4,
            _ => Packing::K6,
        }
    }

    /// The per-block layouts.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows_n<const NT: usize, const P: u8>(
        m: &QMat,
        r: usize,
        acts: &[ActRow<'_>],
        out: &mut [f32],
    ) {
        let nt = NT;
        let pk = const { packing(P) };
        debug_assert_eq!(pk, m.packing);
        let nb = m.cols / BLOCK;
        let codes = m.codes.as_ptr().add(r * m.row_bytes());
        let high = m.high.as_ptr().wrapping_add(r * m.cols / 64 * pk.planes());
        let mut acc = [(_mm512_setzero_ps(), _mm512_setzero_ps()); NT];
        let mut accm = [_mm512_setzero_ps(); NT];
        let idx: [__m512i; 8] =
            std::array::from_fn(|j| _mm512_loadu_si512(PAIRS[j].as_ptr() as *const _));
        let mut g = 0;
        while g < nb {
            let n = (nb - g).min(GROUP);
            let (sv, mv) = group_scales(m, r, g, n);
            let mut s = [_mm512_setzero_ps(); NT];
            for t in 0..nt {
                let a = acts[t];
                s[t] = _mm512_mul_ps(sv, _mm512_loadu_ps(a.d.as_ptr().add(g)));
                accm[t] = _mm512_fmadd_ps(mv, _mm512_loadu_ps(a.sum.as_ptr().add(g)), accm[t]);
            }
            if pk == Packing::U8 {
                for j in 0..n / 2 {
                    let col = (g + 2 * j) * BLOCK;
                    _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(col + AHEAD) as *const i8);
                    let w = _mm512_loadu_si512(codes.add(col) as *const _);
                    for t in 0..nt {
                        let x = _mm512_loadu_si512(acts[t].q.as_ptr().add(col) as *const _);
                        let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
                        let sc = _mm512_permutexvar_ps(idx[j], s[t]);
                        let (a0, a1) = acc[t];
                        acc[t] = (a1, _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), sc, a0));
                    }
                }
            } else {
                // 128 weights (4 blocks) a 64-byte load: low nibbles, then high nibbles.
                for c in 0..n / 4 {
                    let col = (g + 4 * c) * BLOCK;
                    _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(col / 2 + AHEAD) as *const i8);
                    let (lo, hi) = nibbles(pk, codes, high, col / 128);
                    for t in 0..nt {
                        let q = acts[t].q.as_ptr().add(col);
                        acc[t] = dot128(acc[t], (lo, hi), q, (idx[2 * c], idx[2 * c + 1]), s[t]);
                    }
                }
            }
            g += n;
        }
        for t in 0..nt {
            let (a0, a1) = acc[t];
            out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), accm[t]));
        }
    }

    /// Row `r`'s scales and offsets (`(scale, offset)`, one lane a block) for the `n` blocks of
    /// group `g` (lanes past `n` zero), per-block layouts.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn group_scales(m: &QMat, r: usize, g: usize, n: usize) -> (__m512, __m512) {
        let mask: __mmask16 = if n == GROUP { 0xFFFF } else { (1u16 << n) - 1 };
        let scales = m.scale.as_ptr().add(r * m.scales_per_row());
        let offsets = m.offset.as_ptr().wrapping_add(r * m.scales_per_row());
        let sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, scales.add(g) as *const i16));
        let mv = match m.offset_ratio {
            Some(ratio) => _mm512_mul_ps(sv, _mm512_set1_ps(ratio)),
            None => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, offsets.add(g) as *const i16)),
        };
        (sv, mv)
    }

    /// The one-token product: activation row `a` against weight rows `start..end`, written to
    /// `out[start..end]`, the layout a constant and the loop over rows inside the kernel (a
    /// row of 1,536 weights is only 12 steps of 128, so calling a kernel per row, with its
    /// setup and the layout's branches, was a large share of the time: 1.5B generation 15.2 →
    /// 18.5 tok/s on one thread on an AMD EPYC). Two rows a pass, sharing the activation
    /// loads, were much slower there (10.7 tok/s).
    ///
    /// # Safety
    /// As [`dot_rows`]; `out` holds `end` values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn dot_range1(m: &QMat, start: usize, end: usize, a: ActRow<'_>, out: *mut f32) {
        match m.packing {
            Packing::U4 => range1_p::<{ Packing::U4 as u8 }>(m, start, end, a, out),
            Packing::U5 => range1_p::<{ Packing::U5 as u8 }>(m, start, end, a, out),
            Packing::K4 => {
                for r in start..end {
                    let mut o = [0f32];
                    dot_rows_k4::<1>(m, r, std::slice::from_ref(&a), &mut o);
                    out.add(r).write(o[0]);
                }
            }
            Packing::K6 => {
                for r in start..end {
                    out.add(r).write(row_k6_x1(m, r, &a));
                }
            }
            Packing::U8 => range1_p::<{ Packing::U8 as u8 }>(m, start, end, a, out),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn range1_p<const P: u8>(
        m: &QMat,
        start: usize,
        end: usize,
        a: ActRow<'_>,
        out: *mut f32,
    ) {
        for r in start..end {
            out.add(r).write(row_x1::<P>(m, r, &a));
        }
    }

    /// Row `r` of any layout but [`Packing::K6`] against one activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn row_x1<const P: u8>(m: &QMat, r: usize, a: &ActRow<'_>) -> f32 {
        let mut o = [0f32];
        dot_rows_n::<1, P>(m, r, std::slice::from_ref(a), &mut o);
        o[0]
    }

    /// Row `r` of [`Packing::K6`] against one activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn row_k6_x1(m: &QMat, r: usize, a: &ActRow<'_>) -> f32 {
        let mut o = [0f32];
        dot_rows_k6::<1>(m, r, std::slice::from_ref(a), &mut o);
        o[0]
    }

    /// [`Packing::K4`] a super-block at a time (the generic loop's groups of 16 blocks span two
    /// super-blocks and a run-time block count): its 8 scales and mins in half a vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows_k4<const NT: usize>(
        m: &QMat,
        r: usize,
        acts: &[ActRow<'_>],
        out: &mut [f32],
    ) {
        let nt = NT;
        let nsup = m.cols / SUPER;
        let codes = m.codes.as_ptr().add(r * m.row_bytes());
        let scales = m.scale.as_ptr().add(r * nsup);
        let mins = m.offset.as_ptr().add(r * nsup);
        let subs = m.sub_scale.as_ptr().add(r * nsup * 8);
        let sub_mins = m.sub_min.as_ptr().add(r * nsup * 8);
        let idx: [__m512i; 4] =
            std::array::from_fn(|j| _mm512_loadu_si512(PAIRS[j].as_ptr() as *const _));
        let mut acc = [(_mm512_setzero_ps(), _mm512_setzero_ps()); NT];
        let mut accm = [_mm256_setzero_ps(); NT];
        let eight =
            |p: *const u8| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const _)));
        for sb in 0..nsup {
            let sv = _mm256_mul_ps(
                eight(subs.add(sb * 8)),
                _mm256_set1_ps(f16_val(scales.add(sb).read())),
            );
            let mv = _mm256_mul_ps(
                eight(sub_mins.add(sb * 8)),
                _mm256_set1_ps(f16_val(mins.add(sb).read())),
            );
            let mut s = [_mm512_setzero_ps(); NT];
            for t in 0..nt {
                let ad = _mm256_loadu_ps(acts[t].d.as_ptr().add(sb * 8));
                s[t] = _mm512_castps256_ps512(_mm256_mul_ps(sv, ad));
                let xs = _mm256_loadu_ps(acts[t].sum.as_ptr().add(sb * 8));
                accm[t] = _mm256_fmadd_ps(mv, xs, accm[t]);
            }
            for c in 0..2 {
                let col = sb * SUPER + c * 128;
                _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(col / 2 + AHEAD) as *const i8);
                let (lo, hi) = nibbles(Packing::K4, codes, std::ptr::null(), col / 128);
                for t in 0..nt {
                    let q = acts[t].q.as_ptr().add(col);
                    acc[t] = dot128(acc[t], (lo, hi), q, (idx[2 * c], idx[2 * c + 1]), s[t]);
                }
            }
        }
        for t in 0..nt {
            let (a0, a1) = acc[t];
            let m = _mm512_castps256_ps512(accm[t]);
            let m = _mm512_maskz_mov_ps(0x00FF, m);
            out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), m));
        }
    }

    /// [`Packing::K6`]: per super-block, 16 sub-block scales in one vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows_k6<const NT: usize>(
        m: &QMat,
        r: usize,
        acts: &[ActRow<'_>],
        out: &mut [f32],
    ) {
        let nt = NT;
        let nsup = m.cols / SUPER;
        let codes = m.codes.as_ptr().add(r * m.row_bytes());
        let high = m.high.as_ptr().add(r * m.cols / 64 * 2);
        let scales = m.scale.as_ptr().add(r * nsup);
        let subs = m.sub_scale.as_ptr().add(r * nsup * 16);
        let centre = _mm512_set1_ps(m.offset_ratio.unwrap_or(0.0));
        let dup = _mm512_loadu_si512(DUP.as_ptr() as *const _);
        let idx: [__m512i; 4] =
            std::array::from_fn(|j| _mm512_loadu_si512(QUADS[j].as_ptr() as *const _));
        let mut acc = [(_mm512_setzero_ps(), _mm512_setzero_ps()); NT];
        let mut accm = [_mm512_setzero_ps(); NT];
        for sb in 0..nsup {
            let a = _mm_loadu_si128(subs.add(sb * 16) as *const _);
            let sv = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a)),
                _mm512_set1_ps(f16_val(scales.add(sb).read())),
            );
            let mv = _mm512_mul_ps(sv, centre);
            let mut s = [_mm512_setzero_ps(); NT];
            for t in 0..nt {
                let ad = _mm512_castps256_ps512(_mm256_loadu_ps(acts[t].d.as_ptr().add(sb * 8)));
                s[t] = _mm512_mul_ps(sv, _mm512_permutexvar_ps(dup, ad));
                let xh = _mm512_loadu_ps(acts[t].half.as_ptr().add(sb * 16));
                accm[t] = _mm512_fmadd_ps(mv, xh, accm[t]);
            }
            for c in 0..2 {
                let col = sb * SUPER + c * 128;
                _mm_prefetch::<_MM_HINT_T0>(codes.wrapping_add(col / 2 + AHEAD) as *const i8);
                // The bit planes: a quarter of a byte a weight, so half as far ahead.
                let planes = (high as *const u8).wrapping_add(col / 4 + AHEAD / 2);
                _mm_prefetch::<_MM_HINT_T0>(planes as *const i8);
                let (lo, hi) = nibbles(Packing::K6, codes, high, col / 128);
                for t in 0..nt {
                    let q = acts[t].q.as_ptr().add(col);
                    acc[t] = dot128(acc[t], (lo, hi), q, (idx[2 * c], idx[2 * c + 1]), s[t]);
                }
            }
        }
        for t in 0..nt {
            let (a0, a1) = acc[t];
            out[t] = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(a0, a1), accm[t]));
        }
    }

    /// Weight rows per tiled step.
    pub const TILE_W: usize = 4;

    /// `TILE_W` weight rows (unpacked codes; per-sub-block scales and offsets, `TILE_W ×
    /// sub-blocks`, `SUBS` sub-blocks a block) against one group of 32 activation rows in the
    /// tiled layout (two vectors of 16); `xsum` holds the activations' sums per sub-block.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `x` holds this group's blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile<const SUBS: usize>(
        codes: &[&[u8]; TILE_W],
        scale: &[f32],
        offset: &[f32],
        cols: usize,
        x: &[i8],
        xd: &[f32],
        xsum: &[f32],
        out: &mut [[f32; 32]; TILE_W],
    ) {
        let nb = cols / BLOCK;
        let ns = nb * SUBS;
        assert!(x.len() >= nb * BLOCK * 32 && xd.len() >= nb * 32 && xsum.len() >= ns * 32);
        assert!(scale.len() >= TILE_W * ns && offset.len() >= TILE_W * ns);
        for c in codes {
            assert!(c.len() >= cols);
        }
        let cp: [*const u8; TILE_W] = codes.map(|c| c.as_ptr());
        let mut xp = x.as_ptr();
        let mut acc0 = [_mm512_setzero_ps(); TILE_W];
        let mut acc1 = [_mm512_setzero_ps(); TILE_W];
        for b in 0..nb {
            let d0 = _mm512_loadu_ps(xd.as_ptr().add(b * 32));
            let d1 = _mm512_loadu_ps(xd.as_ptr().add(b * 32 + 16));
            for h in 0..SUBS {
                let mut a0 = [_mm512_setzero_si512(); TILE_W];
                let mut a1 = [_mm512_setzero_si512(); TILE_W];
                let col = b * BLOCK + h * (BLOCK / SUBS);
                for step in 0..BLOCK / 4 / SUBS {
                    let x0 = _mm512_loadu_si512(xp as *const _);
                    let x1 = _mm512_loadu_si512(xp.add(64) as *const _);
                    xp = xp.add(128);
                    for i in 0..TILE_W {
                        let w = (cp[i].add(col + step * 4) as *const i32).read_unaligned();
                        let w = _mm512_set1_epi32(w);
                        a0[i] = _mm512_dpbusd_epi32(a0[i], w, x0);
                        a1[i] = _mm512_dpbusd_epi32(a1[i], w, x1);
                    }
                }
                let k = b * SUBS + h;
                let s0 = _mm512_loadu_ps(xsum.as_ptr().add(k * 32));
                let s1 = _mm512_loadu_ps(xsum.as_ptr().add(k * 32 + 16));
                for i in 0..TILE_W {
                    let s = _mm512_set1_ps(*scale.get_unchecked(i * ns + k));
                    let o = _mm512_set1_ps(*offset.get_unchecked(i * ns + k));
                    let f0 = _mm512_mul_ps(d0, s);
                    let f1 = _mm512_mul_ps(d1, s);
                    acc0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0[i]), f0, acc0[i]);
                    acc0[i] = _mm512_fnmadd_ps(o, s0, acc0[i]);
                    acc1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1[i]), f1, acc1[i]);
                    acc1[i] = _mm512_fnmadd_ps(o, s1, acc1[i]);
                }
            }
        }
        for i in 0..TILE_W {
            _mm512_storeu_ps(out[i].as_mut_ptr(), acc0[i]);
            _mm512_storeu_ps(out[i].as_mut_ptr().add(16), acc1[i]);
        }
    }

    /// Quantises 32 values to `i8` at `dst` (round to nearest even, as the scalar path's
    /// `round` differs only on exact halves); returns the scale and the sums of the codes of
    /// the first and the second 16.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL; `src` holds 32 values and `dst` has room for 32 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_block(src: &[f32], dst: *mut i8) -> (f32, i32, i32) {
        debug_assert_eq!(src.len(), 32);
        let a = _mm512_loadu_ps(src.as_ptr());
        let b = _mm512_loadu_ps(src.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        let d = amax / 127.0;
        let inv = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv));
        let qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, inv));
        _mm_storeu_si128(dst as *mut __m128i, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm512_cvtsepi32_epi8(qb));
        (d, _mm512_reduce_add_epi32(qa), _mm512_reduce_add_epi32(qb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn naive(w: &QMat, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * w.rows];
        for t in 0..rows {
            for r in 0..w.rows {
                let wr = w.dequantize_row(r);
                out[t * w.rows + r] = wr
                    .iter()
                    .zip(&x[t * w.cols..(t + 1) * w.cols])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        out
    }

    /// Every row of `m` dequantised is within `tol(want)` of `want` (row-major, `m.cols` wide).
    fn assert_rows_close(m: &QMat, want: &[f32], tol: impl Fn(f32) -> f32) {
        for r in 0..m.rows {
            let row = &want[r * m.cols..(r + 1) * m.cols];
            for (a, b) in m.dequantize_row(r).iter().zip(row) {
                assert!((a - b).abs() <= tol(*b), "row {r}: {a} vs {b}");
            }
        }
    }

    fn check(m: &QMat, seed: u64) {
        let mut s = seed;
        for rows in [1, 3, 6, 8, 21, 40] {
            let x: Vec<f32> = (0..rows * m.cols).map(|_| lcg(&mut s)).collect();
            let qa = QActs::quantize(&x, rows, m.cols);
            let mut got = vec![0f32; rows * m.rows];
            m.matmul(&qa, &mut got);
            let want = naive(m, &x, rows);
            // The scalar path over the same codes must agree with the SIMD one exactly in
            // integer sums, so within float rounding.
            for t in 0..rows {
                let mut scalar = vec![0f32; 1];
                for r in 0..m.rows {
                    m.dot_rows_scalar(r, &[qa.row(t)], &mut scalar);
                    let g = got[t * m.rows + r];
                    assert!(
                        (g - scalar[0]).abs() <= 1e-3 * (1.0 + g.abs()),
                        "simd {g} vs scalar {}",
                        scalar[0]
                    );
                    // 8-bit activations: error well under 1% of the row's magnitude.
                    let w = want[t * m.rows + r];
                    let mag: f32 = m.dequantize_row(r).iter().map(|v| v.abs()).sum::<f32>();
                    assert!((g - w).abs() <= 0.01 * mag, "row {r}: {g} vs exact {w}");
                }
            }
        }
    }

    /// A random `rows × cols` matrix in a GGML type, and its values as candle decodes them.
    fn ggml(
        dtype: candle_core::quantized::GgmlDType,
        rows: usize,
        cols: usize,
        seed: u64,
    ) -> (Vec<u8>, Vec<f32>) {
        use candle_core::{quantized::QTensor, Device, Tensor};
        let mut s = seed;
        // Rows of different magnitudes, one with a large outlier.
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| lcg(&mut s) * (1.0 + (i / cols) as f32 * 0.3) + if i == 7 { 9.0 } else { 0.0 })
            .collect();
        let t = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q.data().unwrap().into_owned(), want)
    }

    #[test]
    fn k_quants_keep_their_own_layouts_and_decode_as_candle_does() {
        use candle_core::quantized::GgmlDType;
        // 768 columns: one whole group of 16 blocks and a group of 8 in the row kernel.
        for (dtype, src, packing, bits) in [
            (GgmlDType::Q6K, Source::Q6K, Packing::K6, 6.5625),
            (GgmlDType::Q4K, Source::Q4K, Packing::K4, 4.625),
        ] {
            let (rows, cols) = (13, 768);
            let (raw, want) = ggml(dtype, rows, cols, 23);
            let m = QMat::from_ggml(src, &raw, rows, cols).unwrap();
            assert_eq!(m.packing, packing);
            assert_eq!(
                m.bytes() as f64 * 8.0 / (rows * cols) as f64,
                bits,
                "{dtype:?}"
            );
            assert_rows_close(&m, &want, |b| 1e-6 * b.abs() + 1e-7);
            check(&m, 12);
            // Stacked matrices keep each part's rows.
            let mut two = m.clone();
            two.stack(m.clone());
            assert_eq!(two.dequantize_row(rows + 4), m.dequantize_row(4));
            check(&two, 13);
            // The 8-bit copy (the embedder's layout) re-quantises closely.
            let u8m = m.to_u8();
            assert_eq!(u8m.packing, Packing::U8);
            for r in [0, 12] {
                let range = want[r * cols..(r + 1) * cols]
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()));
                for (a, b) in u8m.dequantize_row(r).iter().zip(&want[r * cols..]) {
                    assert!(
                        (a - b).abs() <= 2.0 * range / 255.0,
                        "{dtype:?} row {r}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_team_split_covers_every_row_once_in_order() {
        for &(rows, threads, row_bytes) in &[
            (1536, 2, 864),
            (151_936, 2, 1260),
            (8960, 3, 864),
            (7, 2, 100),
            (1, 4, 100),
            (9, 16, 1 << 20),
        ] {
            let s = Split::new(rows, threads, row_bytes);
            let mut next = 0;
            for i in 0..s.tasks() {
                let (a, b) = s.range(i);
                assert!(
                    a == next && b > a,
                    "{rows} rows, {threads} threads: task {i} is {a}..{b}"
                );
                next = b;
            }
            assert_eq!(next, rows);
            // One span a thread before the shared pieces.
            assert!(s.head_tasks <= threads);
        }
    }

    #[test]
    fn reused_activations_forget_the_tiled_copy() {
        let mut s = 2;
        let (rows, cols) = (24, 128);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let m = QMat::from_f32(&w, rows, cols).unwrap();
        let big: Vec<f32> = (0..40 * cols).map(|_| lcg(&mut s)).collect();
        let small: Vec<f32> = (0..cols).map(|_| lcg(&mut s)).collect();
        let mut acts = QActs::default();
        acts.fill(&big, 40, cols);
        let mut out = vec![0f32; 40 * rows];
        m.matmul(&acts, &mut out);
        acts.fill(&small, 1, cols);
        let mut got = vec![0f32; rows];
        m.matmul(&acts, &mut got);
        let want = naive(&m, &small, 1);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 0.05, "{g} vs {w}");
        }
    }

    #[test]
    fn u8_from_f32_matches_the_exact_product() {
        let mut s = 5;
        let (rows, cols) = (37, 896);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s) * 0.1).collect();
        let m = QMat::from_f32(&w, rows, cols).unwrap();
        assert_rows_close(&m, &w, |_| 0.2 / 255.0 + 1e-4);
        check(&m, 9);
    }

    #[test]
    fn q4_0_converts_exactly_and_multiplies() {
        let mut s = 11;
        let (rows, cols) = (19, 384);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let raw = crate::e5s::quantize_q4_0(&w);
        let m = QMat::from_ggml(Source::Q4_0, &raw, rows, cols).unwrap();
        assert_eq!(m.packing, Packing::U4);
        let want = crate::e5s::dequantize_q4_0(&raw);
        assert_rows_close(&m, &want, |b| 1e-3 * b.abs().max(1e-3));
        check(&m, 3);
        let u8m = m.to_u8();
        assert_eq!(u8m.dequantize_row(5), m.dequantize_row(5));
        check(&u8m, 3);
    }

    #[test]
    fn q8_0_and_q5_0_and_q4_k_blocks_convert_exactly() {
        // Hand-built blocks with known values.
        let d = f16::from_f32(0.5).to_bits().to_le_bytes();
        // Q8_0: codes -128..-97 and so on.
        let mut q8 = Vec::new();
        for b in 0..4 {
            q8.extend_from_slice(&d);
            q8.extend((0..32).map(|j| (j as i8 * 3 - 40 + b as i8) as u8));
        }
        let m = QMat::from_ggml(Source::Q8_0, &q8, 1, 128).unwrap();
        let row = m.dequantize_row(0);
        assert_eq!(row[0], 0.5 * -40.0);
        assert_eq!(row[33], 0.5 * (3.0 - 40.0 + 1.0));
        // Q5_0: value j = ((qs nibble) | high bit) - 16.
        let mut q5 = Vec::new();
        for _ in 0..2 {
            q5.extend_from_slice(&d);
            q5.extend_from_slice(&0x8000_0001u32.to_le_bytes()); // bits 0 and 31 set
            q5.extend((0..16).map(|j| (j as u8) | (((15 - j) as u8) << 4)));
        }
        let m = QMat::from_ggml(Source::Q5_0, &q5, 1, 64).unwrap();
        assert_eq!(m.packing, Packing::U8);
        let row = m.dequantize_row(0);
        assert_eq!(row[0], 0.5 * (0.0 + 16.0 - 16.0)); // high bit 0 set → 16
        assert_eq!(row[1], 0.5 * (1.0 - 16.0));
        assert_eq!(row[31], 0.5 * (0.0 + 16.0 - 16.0)); // bit 31: the high bit of value 31
        assert_eq!(row[16], 0.5 * (15.0 - 16.0));
        check(&m, 4);
        // Rows of whole 128-value chunks keep five bits a weight; 37 rows of random blocks.
        let mut s = 17;
        let mut q5 = Vec::new();
        for _ in 0..37 * 4 {
            q5.extend_from_slice(
                &f16::from_f32(lcg(&mut s).abs() * 0.1)
                    .to_bits()
                    .to_le_bytes(),
            );
            q5.extend((0..20).map(|_| (lcg(&mut s) * 1000.0) as i32 as u8));
        }
        let m5 = QMat::from_ggml(Source::Q5_0, &q5, 37, 128).unwrap();
        assert_eq!(m5.packing, Packing::U5);
        let m8 = m5.to_u8();
        for r in [0, 20, 36] {
            assert_eq!(m5.dequantize_row(r), m8.dequantize_row(r));
        }
        check(&m5, 8);
        // Q4_K: d = 1, dmin = 0.25, sub-block j has scale j + 1 and min j.
        let mut blk = Vec::new();
        blk.extend_from_slice(&f16::from_f32(1.0).to_bits().to_le_bytes());
        blk.extend_from_slice(&f16::from_f32(0.25).to_bits().to_le_bytes());
        let mut scales = [0u8; 12];
        for j in 0..8u8 {
            let (sc, mn) = (j + 1, j);
            if j < 4 {
                scales[j as usize] = sc;
                scales[j as usize + 4] = mn;
            } else {
                scales[j as usize + 4] = (sc & 0xF) | ((mn & 0xF) << 4);
            }
        }
        blk.extend_from_slice(&scales);
        blk.extend((0..128).map(|i| ((i % 16) as u8) | (((i * 7 % 16) as u8) << 4)));
        let m = QMat::from_ggml(Source::Q4K, &blk, 1, 256).unwrap();
        assert_eq!(m.packing, Packing::K4);
        let row = m.dequantize_row(0);
        // Value 0: sub-block 0 (scale 1, min 0), code 0.
        assert_eq!(row[0], 0.0);
        // Value 40: chunk 0, high nibble of byte 8 → sub-block 1 (scale 2, min 0.25).
        assert_eq!(row[40], 2.0 * ((8 * 7 % 16) as f32) - 0.25);
        // Value 70: chunk 1 low nibble of byte 32 + 6 → sub-block 2 (scale 3, min 0.5).
        assert_eq!(row[70], 3.0 * ((38 % 16) as f32) - 0.5);
        check(&m, 6);
    }
}
