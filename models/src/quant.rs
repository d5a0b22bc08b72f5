//! Integer matrix products for quantised weights, written for the CPUs the hotline runs on.
//!
//! Every weight matrix is held in one of two layouts, each row in blocks of 32 weights with an
//! f16 scale `s` and an f16 offset `m` (a weight is `s·u − m` for an unsigned code `u`):
//! [`Packing::U4`] (two codes a byte: Q4_0 and Q4_K convert exactly), [`Packing::U5`] (the
//! same plus a plane of fifth bits: Q5_0 converts exactly) and [`Packing::U8`]
//! (one code a byte: Q8_0 and Q5_0 convert exactly; any other type is re-quantised to 8 bits
//! per block). Activations are quantised per block of 32 to `i8` with an f32 scale, and the
//! block sums are kept, so
//! `dot = Σ_b s_b·d_b·Σ u·q − Σ_b m_b·d_b·Σ q`: unsigned codes times signed activations is
//! exactly what AVX-512 VNNI's `vpdpbusd` multiplies, 64 products an instruction. A scalar
//! path computes the same sums where that instruction set is missing (and checks the fast one
//! in tests).

use half::f16;
use rayon::prelude::*;

use crate::error::{Error, Result};

pub const BLOCK: usize = 32;
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
}

/// A quantised `rows × cols` matrix (a linear layer's `out × in` weight).
#[derive(Debug, Clone)]
pub struct QMat {
    pub rows: usize,
    pub cols: usize,
    pub packing: Packing,
    codes: Vec<u8>,
    /// [`Packing::U5`]'s fifth bits, `rows × cols / 64` words.
    high: Vec<u64>,
    /// Per row, per block: scale and offset (f16 bits), `rows × blocks`.
    scale: Vec<u16>,
    /// Empty when every offset is `offset_ratio × scale` (symmetric sources: Q8_0's codes
    /// are centred on 128, Q5_0's on 16, Q4_0's on 8), which saves two bytes a block.
    offset: Vec<u16>,
    offset_ratio: Option<f32>,
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
    /// For many rows, the same values in groups of 32 rows laid out for
    /// [`simd::tile`]: per group and block, `[4-value step][row][4 values]` codes, then the
    /// 32 rows' scales and sums.
    tiles: Vec<i8>,
    tile_d: Vec<f32>,
    tile_sum: Vec<f32>,
}

/// One activation row's codes, scales and sums, as `fill` hands them out.
type RowParts<'a> = ((&'a mut [i8], &'a mut [f32]), &'a mut [f32]);

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
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            let one_row = |(r, ((q, d), sum)): (usize, RowParts<'_>)| {
                for b in 0..nb {
                    let src = &x[r * cols + b * BLOCK..r * cols + (b + 1) * BLOCK];
                    // SAFETY: the CPU has AVX-512 (checked); `src` is 32 values and the
                    // destination block is 32 bytes inside this row of `q`.
                    let (bd, bsum) =
                        unsafe { simd::quantize_block(src, q[b * BLOCK..].as_mut_ptr()) };
                    d[b] = bd;
                    sum[b] = bsum;
                }
            };
            let row_len = stride_blocks * BLOCK;
            if rows >= TILE_MIN_ROWS {
                self.q
                    .par_chunks_mut(row_len)
                    .zip(self.d.par_chunks_mut(stride_blocks))
                    .zip(self.sum.par_chunks_mut(stride_blocks))
                    .enumerate()
                    .for_each(one_row);
            } else {
                self.q
                    .chunks_mut(row_len)
                    .zip(self.d.chunks_mut(stride_blocks))
                    .zip(self.sum.chunks_mut(stride_blocks))
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
                let mut s = 0i32;
                for (o, v) in self.q[at..at + BLOCK].iter_mut().zip(src) {
                    let q = (v * inv).round().clamp(-127.0, 127.0) as i8;
                    *o = q;
                    s += q as i32;
                }
                self.d[r * stride_blocks + b] = d;
                self.sum[r * stride_blocks + b] = d * s as f32;
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
        let sb = self.stride_blocks;
        let rows = self.rows;
        let (q, d, sum) = (&self.q, &self.d, &self.sum);
        self.tiles
            .par_chunks_mut(nb * BLOCK * TILE_ROWS)
            .zip(self.tile_d.par_chunks_mut(nb * TILE_ROWS))
            .zip(self.tile_sum.par_chunks_mut(nb * TILE_ROWS))
            .enumerate()
            .for_each(|(g, ((tiles, td), ts))| {
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
        }
    }
}

#[derive(Clone, Copy)]
struct ActRow<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sum: &'a [f32],
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
    /// Re-quantised to 8 bits per block of 32 (its 16-value sub-blocks have their own scales).
    Q6K,
}

impl QMat {
    fn empty(rows: usize, cols: usize, packing: Packing) -> Result<QMat> {
        let unit = match packing {
            Packing::U4 | Packing::U5 => 128,
            Packing::U8 => 2 * BLOCK,
        };
        if cols == 0 || !cols.is_multiple_of(unit) {
            return Err(Error::Format {
                path: Default::default(),
                format: "quantised matrix",
                reason: format!("rows of {cols} values are not a multiple of {unit}"),
            });
        }
        let per_row = match packing {
            Packing::U4 | Packing::U5 => cols / 2,
            Packing::U8 => cols,
        };
        let high = match packing {
            Packing::U5 => vec![0; rows * cols / 64],
            _ => Vec::new(),
        };
        let nb = cols / BLOCK;
        Ok(QMat {
            rows,
            cols,
            packing,
            codes: vec![0; rows * per_row],
            high,
            scale: vec![0; rows * nb],
            offset: vec![0; rows * nb],
            offset_ratio: None,
        })
    }

    fn row_bytes(&self) -> usize {
        match self.packing {
            Packing::U4 | Packing::U5 => self.cols / 2,
            Packing::U8 => self.cols,
        }
    }

    fn code(&self, row: usize, col: usize) -> u8 {
        let rb = self.row_bytes();
        match self.packing {
            Packing::U8 => self.codes[row * rb + col],
            Packing::U4 | Packing::U5 => {
                let (chunk, i) = (col / 128, col % 128);
                let b = self.codes[row * rb + chunk * 64 + (i % 64)];
                let low = if i < 64 { b & 0x0F } else { b >> 4 };
                if self.packing == Packing::U5 {
                    let w = self.high[row * self.cols / 64 + col / 64];
                    low | ((((w >> (col % 64)) & 1) as u8) << 4)
                } else {
                    low
                }
            }
        }
    }

    /// Converts raw GGML blocks (`rows × cols` values, row-major) without loss: 4-bit types to
    /// [`Packing::U4`] when rows are whole 128-value chunks, everything else to
    /// [`Packing::U8`].
    pub fn from_ggml(src: Source, data: &[u8], rows: usize, cols: usize) -> Result<QMat> {
        let packing = match src {
            // Rows that are not whole 128-value chunks keep one code a byte.
            Source::Q4_0 | Source::Q4K if cols.is_multiple_of(128) => Packing::U4,
            Source::Q5_0 if cols.is_multiple_of(128) => Packing::U5,
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
        if src == Source::Q6K {
            return QMat::build(rows, cols, packing, None, |r, codes, scale, offset| {
                let mut row = vec![0f32; cols];
                for b in 0..per_row {
                    let at = (r * per_row + b) * block_bytes;
                    dequantize_q6k(
                        &data[at..at + block_bytes],
                        &mut row[b * 256..(b + 1) * 256],
                    );
                }
                quantize_row_u8(&row, codes, scale, offset);
            });
        }
        let ratio = match src {
            Source::Q8_0 => Some(128.0),
            Source::Q5_0 => Some(16.0),
            Source::Q4_0 => Some(8.0),
            Source::Q4K | Source::Q6K => None,
        };
        QMat::build(rows, cols, packing, ratio, |r, codes, scale, offset| {
            for b in 0..per_row {
                let at = (r * per_row + b) * block_bytes;
                let blk = &data[at..at + block_bytes];
                let d = f16_val(u16::from_le_bytes([blk[0], blk[1]]));
                let base = b * block_vals;
                let c = &mut codes[base..base + block_vals];
                match src {
                    Source::Q8_0 => {
                        (scale[base / BLOCK], offset[base / BLOCK]) = (d, 128.0 * d);
                        for j in 0..32 {
                            c[j] = (blk[2 + j] as i8 as i16 + 128) as u8;
                        }
                    }
                    Source::Q4_0 => {
                        (scale[base / BLOCK], offset[base / BLOCK]) = (d, 8.0 * d);
                        for j in 0..16 {
                            c[j] = blk[2 + j] & 0x0F;
                            c[j + 16] = blk[2 + j] >> 4;
                        }
                    }
                    Source::Q5_0 => {
                        (scale[base / BLOCK], offset[base / BLOCK]) = (d, 16.0 * d);
                        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                        for j in 0..16 {
                            let h0 = (((qh >> j) << 4) & 0x10) as u8;
                            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                            c[j] = (blk[6 + j] & 0x0F) | h0;
                            c[j + 16] = (blk[6 + j] >> 4) | h1;
                        }
                    }
                    Source::Q6K => unreachable!("handled above"),
                    Source::Q4K => {
                        let dmin = f16_val(u16::from_le_bytes([blk[2], blk[3]]));
                        let scales = &blk[4..16];
                        let qs = &blk[16..144];
                        for chunk in 0..4 {
                            let q = &qs[chunk * 32..chunk * 32 + 32];
                            for half in 0..2 {
                                let (sc, mn) = scale_min_k4(2 * chunk + half, scales);
                                let col0 = chunk * 64 + half * 32;
                                let blk_i = (base + col0) / BLOCK;
                                (scale[blk_i], offset[blk_i]) = (d * sc as f32, dmin * mn as f32);
                                for (l, &byte) in q.iter().enumerate() {
                                    c[col0 + l] = if half == 0 { byte & 0x0F } else { byte >> 4 };
                                }
                            }
                        }
                    }
                }
            }
        })
    }

    /// Quantises f32 weights to 8 bits per block of 32 (min to max in 255 steps).
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Result<QMat> {
        assert_eq!(w.len(), rows * cols);
        QMat::build(rows, cols, Packing::U8, None, |r, codes, scale, offset| {
            quantize_row_u8(&w[r * cols..(r + 1) * cols], codes, scale, offset)
        })
    }

    /// Builds a matrix row by row, rows in parallel: `row(r, codes, scales, offsets)` fills
    /// row `r`'s unpacked codes (`cols`) and per-block scales and offsets.
    fn build(
        rows: usize,
        cols: usize,
        packing: Packing,
        offset_ratio: Option<f32>,
        row: impl Fn(usize, &mut [u8], &mut [f32], &mut [f32]) + Sync,
    ) -> Result<QMat> {
        const CHUNK: usize = 256;
        QMat::empty(0, cols, packing)?;
        let nb = cols / BLOCK;
        let parts: Vec<QMat> = (0..rows.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let (r0, r1) = (c * CHUNK, ((c + 1) * CHUNK).min(rows));
                let mut m = QMat::empty(r1 - r0, cols, packing).expect("width checked above");
                if offset_ratio.is_some() {
                    m.offset = Vec::new();
                    m.offset_ratio = offset_ratio;
                }
                let mut codes = vec![0u8; cols];
                let (mut sc, mut of) = (vec![0f32; nb], vec![0f32; nb]);
                for r in r0..r1 {
                    row(r, &mut codes, &mut sc, &mut of);
                    m.pack_row(r - r0, &codes, &sc, &of);
                }
                m
            })
            .collect();
        let mut out = QMat::empty(0, cols, packing)?;
        out.offset_ratio = offset_ratio;
        for p in parts {
            out.stack(p);
        }
        Ok(out)
    }

    /// Writes row `r` from its unpacked codes and f32 block scales and offsets.
    fn pack_row(&mut self, r: usize, codes: &[u8], scale: &[f32], offset: &[f32]) {
        let nb = self.cols / BLOCK;
        for b in 0..nb {
            self.scale[r * nb + b] = f16_bits(scale[b]);
            if self.offset_ratio.is_none() {
                self.offset[r * nb + b] = f16_bits(offset[b]);
            }
        }
        let rb = self.row_bytes();
        let dst = &mut self.codes[r * rb..(r + 1) * rb];
        match self.packing {
            Packing::U8 => dst.copy_from_slice(codes),
            Packing::U4 | Packing::U5 => {
                for (c, out) in dst.chunks_mut(64).enumerate() {
                    let src = &codes[c * 128..(c + 1) * 128];
                    for j in 0..64 {
                        out[j] = (src[j] & 0x0F) | (src[64 + j] << 4);
                    }
                }
                if self.packing == Packing::U5 {
                    let words = self.cols / 64;
                    for (w, word) in self.high[r * words..(r + 1) * words].iter_mut().enumerate() {
                        *word = codes[w * 64..(w + 1) * 64]
                            .iter()
                            .enumerate()
                            .fold(0u64, |acc, (j, &u)| acc | (((u >> 4) & 1) as u64) << j);
                    }
                }
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
        assert!(other.packing == self.packing && other.cols == self.cols);
        assert_eq!(other.offset_ratio, self.offset_ratio);
        self.rows += other.rows;
        self.codes.extend(other.codes);
        self.high.extend(other.high);
        self.scale.extend(other.scale);
        self.offset.extend(other.offset);
    }

    /// The same matrix with one code a byte (twice the memory of [`Packing::U4`], no
    /// unpacking in the batched product; the embedder's 21 M weights are worth it).
    pub fn to_u8(&self) -> QMat {
        if self.packing == Packing::U8 {
            return self.clone();
        }
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

    /// The weights as f32 (tests, and the rare caller that needs a dense copy).
    pub fn dequantize_row(&self, row: usize) -> Vec<f32> {
        let nb = self.cols / BLOCK;
        (0..self.cols)
            .map(|c| {
                let b = row * nb + c / BLOCK;
                f16_val(self.scale[b]) * self.code(row, c) as f32 - self.block_offset(b)
            })
            .collect()
    }

    /// The offset of block `k` (row-major over `rows × blocks`).
    fn block_offset(&self, k: usize) -> f32 {
        match self.offset_ratio {
            Some(ratio) => ratio * f16_val(self.scale[k]),
            None => f16_val(self.offset[k]),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.codes.len() + 8 * self.high.len() + 2 * (self.scale.len() + self.offset.len())
    }

    /// `out[t][r] = Σ_c w[r][c] · x[t][c]` for every row `t` of `x`, rows of `self` split
    /// across the current rayon pool. `out` is `x.rows × self.rows`, row-major.
    pub fn matmul(&self, x: &QActs, out: &mut [f32]) {
        assert_eq!(
            x.cols, self.cols,
            "activation length differs from the matrix"
        );
        assert_eq!(out.len(), x.rows * self.rows);
        let threads = rayon::current_num_threads();
        // Enough chunks to balance, few enough that dispatch stays cheap.
        let chunk = self.rows.div_ceil(threads * 4).max(16);
        let dst = crate::dense::SyncPtr(out.as_mut_ptr());
        let n_out = self.rows;
        let body = |start: usize| {
            let end = (start + chunk).min(self.rows);
            // SAFETY: each task writes only columns `start..end` of every output row, which no
            // other task writes; `out` outlives the parallel loop.
            unsafe { self.rows_into(x, start, end, dst, n_out) };
        };
        if self.rows <= chunk || threads == 1 {
            (0..self.rows).step_by(chunk).for_each(body);
        } else {
            (0..self.rows).into_par_iter().step_by(chunk).for_each(body);
        }
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
        let groups = x.rows.div_ceil(TILE_ROWS);
        let mut unpacked = vec![0u8; R * self.cols];
        let mut sc = vec![0f32; R * nb];
        let mut of = vec![0f32; R * nb];
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + SPAN).min(groups);
            let mut r0 = start;
            while r0 < end {
                let nr = (end - r0).min(R);
                // Rows past the end repeat the last one (their results are dropped).
                let rows: [usize; R] = std::array::from_fn(|i| r0 + i.min(nr - 1));
                let codes: [&[u8]; R] = match self.packing {
                    Packing::U8 => rows.map(|r| &self.codes[r * rb..(r + 1) * rb]),
                    Packing::U4 | Packing::U5 => {
                        for (i, &r) in rows.iter().enumerate() {
                            let dst = &mut unpacked[i * self.cols..(i + 1) * self.cols];
                            let src = &self.codes[r * rb..(r + 1) * rb];
                            for (c, chunk) in src.chunks(64).enumerate() {
                                for (j, &byte) in chunk.iter().enumerate() {
                                    dst[c * 128 + j] = byte & 0x0F;
                                    dst[c * 128 + 64 + j] = byte >> 4;
                                }
                            }
                            if self.packing == Packing::U5 {
                                let words =
                                    &self.high[r * self.cols / 64..(r + 1) * self.cols / 64];
                                for (w, &bits) in words.iter().enumerate() {
                                    for j in 0..64 {
                                        dst[w * 64 + j] |= (((bits >> j) & 1) as u8) << 4;
                                    }
                                }
                            }
                        }
                        std::array::from_fn(|i| &unpacked[i * self.cols..(i + 1) * self.cols])
                    }
                };
                for (i, &r) in rows.iter().enumerate() {
                    for b in 0..nb {
                        sc[i * nb + b] = f16_val(self.scale[r * nb + b]);
                        of[i * nb + b] = self.block_offset(r * nb + b);
                    }
                }
                for g in g0..g1 {
                    let mut res = [[0f32; TILE_ROWS]; R];
                    // SAFETY: the CPU was checked by the caller; the slices hold what `tile`
                    // reads (it asserts their lengths).
                    unsafe {
                        simd::tile(
                            &codes,
                            &sc,
                            &of,
                            self.cols,
                            &x.tiles[g * nb * BLOCK * TILE_ROWS..],
                            &x.tile_d[g * nb * TILE_ROWS..],
                            &x.tile_sum[g * nb * TILE_ROWS..],
                            &mut res,
                        )
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
        let nb = self.cols / BLOCK;
        for (a, o) in acts.iter().zip(out.iter_mut()) {
            let mut acc = 0f32;
            for b in 0..nb {
                let mut s = 0i32;
                for j in 0..BLOCK {
                    s += self.code(r, b * BLOCK + j) as i32 * a.q[b * BLOCK + j] as i32;
                }
                let k = r * nb + b;
                acc += f16_val(self.scale[k]) * a.d[b] * s as f32 - self.block_offset(k) * a.sum[b];
            }
            *o = acc;
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

/// One ggml Q6_K block (256 values: 4-bit low parts, 2-bit high parts, 16 signed 8-bit
/// sub-block scales, an f16 scale) to f32.
fn dequantize_q6k(blk: &[u8], out: &mut [f32]) {
    let (ql, rest) = blk.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let (sc, d) = rest.split_at(16);
    let d = f16_val(u16::from_le_bytes([d[0], d[1]]));
    for half in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
        let y = &mut out[128 * half..128 * (half + 1)];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
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

    use super::{ActRow, Packing, QMat, BLOCK, GROUP};

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

    /// Lane → block index for the pair of blocks `(2j, 2j + 1)` of a group.
    const PAIRS: [[i32; 16]; 8] = {
        let mut t = [[0i32; 16]; 8];
        let mut j = 0;
        while j < 8 {
            let mut l = 0;
            while l < 16 {
                t[j][l] = (2 * j + l / 8) as i32;
                l += 1;
            }
            j += 1;
        }
        t
    };

    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI; `acts` rows hold `m.cols` values padded to
    /// a whole group; at most 4 rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn dot_rows(m: &QMat, r: usize, acts: &[ActRow<'_>], out: &mut [f32]) {
        match acts.len() {
            1 => dot_rows_n::<1>(m, r, acts, out),
            2 => dot_rows_n::<2>(m, r, acts, out),
            3 => dot_rows_n::<3>(m, r, acts, out),
            _ => dot_rows_n::<4>(m, r, acts, out),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn dot_rows_n<const NT: usize>(
        m: &QMat,
        r: usize,
        acts: &[ActRow<'_>],
        out: &mut [f32],
    ) {
        let nt = NT;
        let nb = m.cols / BLOCK;
        let rb = m.row_bytes();
        let codes = m.codes.as_ptr().add(r * rb);
        let scales = m.scale.as_ptr().add(r * nb);
        let offsets = m.offset.as_ptr().wrapping_add(r * nb);
        let ratio = _mm512_set1_ps(m.offset_ratio.unwrap_or(0.0));
        let mut acc = [_mm512_setzero_ps(); NT];
        let mut accm = [_mm512_setzero_ps(); NT];
        let idx: [__m512i; 8] =
            std::array::from_fn(|j| _mm512_loadu_si512(PAIRS[j].as_ptr() as *const _));
        let low = _mm512_set1_epi8(0x0F);
        let mut g = 0;
        while g < nb {
            let n = (nb - g).min(GROUP);
            let mask: __mmask16 = if n == GROUP { 0xFFFF } else { (1u16 << n) - 1 };
            let sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, scales.add(g) as *const i16));
            let mv = if m.offset_ratio.is_some() {
                _mm512_mul_ps(sv, ratio)
            } else {
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, offsets.add(g) as *const i16))
            };
            let mut s = [_mm512_setzero_ps(); NT];
            for t in 0..nt {
                let a = acts[t];
                s[t] = _mm512_mul_ps(sv, _mm512_loadu_ps(a.d.as_ptr().add(g)));
                accm[t] = _mm512_fmadd_ps(mv, _mm512_loadu_ps(a.sum.as_ptr().add(g)), accm[t]);
            }
            match m.packing {
                Packing::U8 => {
                    for j in 0..n / 2 {
                        let col = (g + 2 * j) * BLOCK;
                        let w = _mm512_loadu_si512(codes.add(col) as *const _);
                        for t in 0..nt {
                            let x = _mm512_loadu_si512(acts[t].q.as_ptr().add(col) as *const _);
                            let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
                            let sc = _mm512_permutexvar_ps(idx[j], s[t]);
                            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), sc, acc[t]);
                        }
                    }
                }
                Packing::U4 | Packing::U5 => {
                    let fifth = m.packing == Packing::U5;
                    let high = if fifth {
                        m.high.as_ptr().add(r * m.cols / 64)
                    } else {
                        std::ptr::null()
                    };
                    let bit4 = _mm512_set1_epi8(0x10);
                    // 128 weights (4 blocks) a 64-byte load: low nibbles, then high nibbles.
                    for c in 0..n / 4 {
                        let col = (g + 4 * c) * BLOCK;
                        let raw = _mm512_loadu_si512(codes.add(col / 2) as *const _);
                        let mut lo = _mm512_and_si512(raw, low);
                        let mut hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
                        if fifth {
                            let h0 = high.add(col / 64).read();
                            let h1 = high.add(col / 64 + 1).read();
                            lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(h0, bit4));
                            hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi8(h1, bit4));
                        }
                        for t in 0..nt {
                            let q = acts[t].q.as_ptr().add(col);
                            let x0 = _mm512_loadu_si512(q as *const _);
                            let x1 = _mm512_loadu_si512(q.add(64) as *const _);
                            let d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, x0);
                            let d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, x1);
                            let s0 = _mm512_permutexvar_ps(idx[2 * c], s[t]);
                            let s1 = _mm512_permutexvar_ps(idx[2 * c + 1], s[t]);
                            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), s0, acc[t]);
                            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), s1, acc[t]);
                        }
                    }
                }
            }
            g += n;
        }
        for t in 0..nt {
            out[t] = _mm512_reduce_add_ps(acc[t]) - _mm512_reduce_add_ps(accm[t]);
        }
    }

    /// Weight rows per tiled step.
    pub const TILE_W: usize = 4;

    /// `TILE_W` weight rows (unpacked codes; per-block scales and offsets, `TILE_W × blocks`)
    /// against one group of 32 activation rows in the tiled layout (two vectors of 16).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `x` holds this group's blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
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
        assert!(x.len() >= nb * BLOCK * 32 && xd.len() >= nb * 32 && xsum.len() >= nb * 32);
        assert!(scale.len() >= TILE_W * nb && offset.len() >= TILE_W * nb);
        for c in codes {
            assert!(c.len() >= cols);
        }
        let cp: [*const u8; TILE_W] = codes.map(|c| c.as_ptr());
        let mut xp = x.as_ptr();
        let mut acc0 = [_mm512_setzero_ps(); TILE_W];
        let mut acc1 = [_mm512_setzero_ps(); TILE_W];
        for b in 0..nb {
            let mut a0 = [_mm512_setzero_si512(); TILE_W];
            let mut a1 = [_mm512_setzero_si512(); TILE_W];
            let col = b * BLOCK;
            for step in 0..BLOCK / 4 {
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
            let d0 = _mm512_loadu_ps(xd.as_ptr().add(b * 32));
            let d1 = _mm512_loadu_ps(xd.as_ptr().add(b * 32 + 16));
            let s0 = _mm512_loadu_ps(xsum.as_ptr().add(b * 32));
            let s1 = _mm512_loadu_ps(xsum.as_ptr().add(b * 32 + 16));
            for i in 0..TILE_W {
                let s = _mm512_set1_ps(*scale.get_unchecked(i * nb + b));
                let o = _mm512_set1_ps(*offset.get_unchecked(i * nb + b));
                acc0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0[i]), _mm512_mul_ps(d0, s), acc0[i]);
                acc0[i] = _mm512_fnmadd_ps(o, s0, acc0[i]);
                acc1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1[i]), _mm512_mul_ps(d1, s), acc1[i]);
                acc1[i] = _mm512_fnmadd_ps(o, s1, acc1[i]);
            }
        }
        for i in 0..TILE_W {
            _mm512_storeu_ps(out[i].as_mut_ptr(), acc0[i]);
            _mm512_storeu_ps(out[i].as_mut_ptr().add(16), acc1[i]);
        }
    }

    /// Quantises 32 values to `i8` at `dst` (round to nearest even, as the scalar path's
    /// `round` differs only on exact halves); returns the scale and `scale · Σ q`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL; `src` holds 32 values and `dst` has room for 32 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_block(src: &[f32], dst: *mut i8) -> (f32, f32) {
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
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
        (d, d * sum as f32)
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

    #[test]
    fn q6_k_decodes_as_candle_does_and_requantises_closely() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let mut s = 23;
        let (rows, cols) = (5, 512);
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let t = candle_core::Tensor::from_vec(w, (rows, cols), &candle_core::Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q6K).unwrap();
        let want: Vec<f32> = q
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let data = q.data().unwrap();
        let mut got = vec![0f32; 256];
        dequantize_q6k(&data[210..420], &mut got);
        assert_eq!(&got[..], &want[256..512]);
        let m = QMat::from_ggml(Source::Q6K, &data, rows, cols).unwrap();
        assert_eq!(m.packing, Packing::U8);
        assert_rows_close(&m, &want, |_| 2.0 / 255.0 + 1e-3);
        check(&m, 12);
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
