//! Attention of one new token (generation) over the cached keys and values, query heads grouped
//! by the key/value head they share: each cached key and value is read once for the group, not
//! once a query head. Qwen2.5's query heads come six or seven to a key/value head, and at a few
//! hundred positions the per-head loop spent its time re-reading the cache (the 1.5B's cache
//! is 1.5 MB a layer at 700 positions in f32, more than a core's L2).
//!
//! The cache holds f16 (as llama.cpp's does by default): a token at 600 positions reads 17 MB
//! of it instead of 34 across the 1.5B's layers, and a long conversation's cache takes half
//! the memory; the kernels widen 16 values with one instruction as they load them.

use half::f16;

use crate::dense;

/// One layer's cache: position `j`'s key for key/value head `h` is
/// `k[j·stride + h·hd..][..hd]`, its value the same in `v`.
#[derive(Clone, Copy)]
pub(super) struct Cache<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub stride: usize,
    pub hd: usize,
    pub len: usize,
}

/// Query heads handled together by one call of the vector kernels (a group larger than this is
/// split; its parts read the cache once each).
pub(super) const MAX_GROUP: usize = 8;

/// Softmax-weighted sum over every cached position for the `q.len() / hd` query heads in `q`
/// (contiguous, `hd` values each), all of which read key/value head `kvh`; writes the heads'
/// outputs into `out` (same layout as `q`). `scores` is scratch.
pub(super) fn attend_group(
    q: &[f32],
    cache: Cache<'_>,
    kvh: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (hd, len) = (cache.hd, cache.len);
    let g = q.len() / hd;
    assert!(g * hd == q.len() && out.len() == q.len() && (1..=MAX_GROUP).contains(&g));
    assert!(len > 0 && (kvh + 1) * hd <= cache.stride);
    let last = (len - 1) * cache.stride + (kvh + 1) * hd;
    assert!(last <= cache.k.len() && last <= cache.v.len());
    scores.clear();
    scores.resize(g * len, 0.0);
    #[cfg(target_arch = "x86_64")]
    if simd::available() && hd.is_multiple_of(32) {
        let k = cache.k[kvh * hd..].as_ptr() as *const u16;
        let v = cache.v[kvh * hd..].as_ptr() as *const u16;
        // SAFETY: the CPU was checked; every position's `hd` values at `j·stride` from `k`
        // and `v` are inside the cache (asserted above); `scores` holds `g × len` values and
        // `out` and `q` `g × hd`.
        unsafe {
            simd::scores(g, q.as_ptr(), k, cache.stride, hd, len, scores.as_mut_ptr());
            for row in scores.chunks_mut(len) {
                dense::softmax_scaled(row, scale);
            }
            simd::mix(
                g,
                scores.as_ptr(),
                v,
                cache.stride,
                hd,
                len,
                out.as_mut_ptr(),
            );
        }
        return;
    }
    for (i, row) in scores.chunks_mut(len).enumerate() {
        let qh = &q[i * hd..(i + 1) * hd];
        for (j, s) in row.iter_mut().enumerate() {
            let at = j * cache.stride + kvh * hd;
            *s = qh
                .iter()
                .zip(&cache.k[at..at + hd])
                .map(|(a, b)| a * b.to_f32())
                .sum();
        }
        dense::softmax_scaled(row, scale);
        let o = &mut out[i * hd..(i + 1) * hd];
        o.fill(0.0);
        for (j, p) in row.iter().enumerate() {
            let at = j * cache.stride + kvh * hd;
            for (o, v) in o.iter_mut().zip(&cache.v[at..at + hd]) {
                *o += p * v.to_f32();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // heads and lanes are indexed in step, as in the math
mod simd {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            std::env::var_os("HOTLINE_NO_SIMD").is_none() && is_x86_feature_detected!("avx512f")
        })
    }

    /// 16 f16 values at `p` as f32.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn wide(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    /// Calls `$f::<G>($args)` for the run-time group size `$g` (1 to 8).
    macro_rules! by_group {
        ($g:expr, $f:ident($($a:expr),*)) => {
            match $g {
                1 => $f::<1>($($a),*),
                2 => $f::<2>($($a),*),
                3 => $f::<3>($($a),*),
                4 => $f::<4>($($a),*),
                5 => $f::<5>($($a),*),
                6 => $f::<6>($($a),*),
                7 => $f::<7>($($a),*),
                _ => $f::<8>($($a),*),
            }
        };
    }

    /// `s[i·len + j] = q_i · k_j` for the `g` query heads.
    ///
    /// # Safety
    /// AVX-512 F; `hd` a multiple of 16; `q` holds `g × hd` values, `s` `g × len`, and `k`
    /// `hd` values at `j·stride` for every `j < len`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(
        g: usize,
        q: *const f32,
        k: *const u16,
        stride: usize,
        hd: usize,
        len: usize,
        s: *mut f32,
    ) {
        by_group!(g, scores_g(q, k, stride, hd, len, s))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn scores_g<const G: usize>(
        q: *const f32,
        k: *const u16,
        stride: usize,
        hd: usize,
        len: usize,
        s: *mut f32,
    ) {
        for j in 0..len {
            let kr = k.add(j * stride);
            // Two accumulators a head: the chains of FMAs are half as long.
            let mut acc = [[_mm512_setzero_ps(); 2]; G];
            let mut c = 0;
            while c < hd {
                let half = (c / 16) % 2;
                let kv = wide(kr.add(c));
                for i in 0..G {
                    let qv = _mm512_loadu_ps(q.add(i * hd + c));
                    acc[i][half] = _mm512_fmadd_ps(qv, kv, acc[i][half]);
                }
                c += 16;
            }
            for i in 0..G {
                *s.add(i * len + j) = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
            }
        }
    }

    /// `out[i·hd..][..hd] = Σ_j p[i·len + j] · v_j` for the `g` query heads.
    ///
    /// # Safety
    /// AVX-512 F; `hd` a multiple of 32; `p` holds `g × len` values, `out` `g × hd`, and `v`
    /// `hd` values at `j·stride` for every `j < len`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn mix(
        g: usize,
        p: *const f32,
        v: *const u16,
        stride: usize,
        hd: usize,
        len: usize,
        out: *mut f32,
    ) {
        by_group!(g, mix_g(p, v, stride, hd, len, out))
    }

    /// 32 dimensions a pass: the group's accumulators (2 a head) stay in registers.
    #[target_feature(enable = "avx512f")]
    unsafe fn mix_g<const G: usize>(
        p: *const f32,
        v: *const u16,
        stride: usize,
        hd: usize,
        len: usize,
        out: *mut f32,
    ) {
        let mut c = 0;
        while c < hd {
            let mut acc = [[_mm512_setzero_ps(); 2]; G];
            for j in 0..len {
                let vr = v.add(j * stride + c);
                let (v0, v1) = (wide(vr), wide(vr.add(16)));
                for i in 0..G {
                    let w = _mm512_set1_ps(*p.add(i * len + j));
                    acc[i][0] = _mm512_fmadd_ps(w, v0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(w, v1, acc[i][1]);
                }
            }
            for i in 0..G {
                _mm512_storeu_ps(out.add(i * hd + c), acc[i][0]);
                _mm512_storeu_ps(out.add(i * hd + c + 16), acc[i][1]);
            }
            c += 32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formula in f64, one head at a time.
    fn naive(q: &[f32], cache: Cache<'_>, kvh: usize, scale: f32) -> Vec<f32> {
        let hd = cache.hd;
        let mut out = Vec::new();
        for qh in q.chunks(hd) {
            let s: Vec<f64> = (0..cache.len)
                .map(|j| {
                    let k = &cache.k[j * cache.stride + kvh * hd..][..hd];
                    qh.iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * b.to_f64())
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let total: f64 = e.iter().sum();
            for c in 0..hd {
                let o: f64 = (0..cache.len)
                    .map(|j| e[j] / total * cache.v[j * cache.stride + kvh * hd + c].to_f64())
                    .sum();
                out.push(o as f32);
            }
        }
        out
    }

    #[test]
    fn grouped_heads_match_the_per_head_formula() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Head sizes of the bundled models (64, 128), one the vector path leaves to the loop
        // (48), group sizes 1 to 8, a single position and a few hundred.
        for &(hd, nkv, g, len) in &[
            (64, 2, 7, 1),
            (64, 2, 7, 300),
            (128, 2, 6, 257),
            (128, 4, 1, 33),
            (128, 1, 8, 120),
            (48, 2, 3, 50),
            (32, 3, 5, 17),
        ] {
            let stride = nkv * hd;
            let k: Vec<f16> = (0..len * stride)
                .map(|_| f16::from_f32(rnd() * 2.0))
                .collect();
            let v: Vec<f16> = (0..len * stride).map(|_| f16::from_f32(rnd())).collect();
            let q: Vec<f32> = (0..g * hd).map(|_| rnd()).collect();
            let cache = Cache {
                k: &k,
                v: &v,
                stride,
                hd,
                len,
            };
            let kvh = nkv - 1;
            let scale = 1.0 / (hd as f32).sqrt();
            let want = naive(&q, cache, kvh, scale);
            let mut out = vec![f32::NAN; g * hd];
            let mut scores = Vec::new();
            attend_group(&q, cache, kvh, scale, &mut scores, &mut out);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "hd {hd} group {g} len {len}: value {i} is {a}, want {b}"
                );
            }
        }
    }
}
