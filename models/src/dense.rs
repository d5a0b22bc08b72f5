//! f32 building blocks for the packed e5 encoder: a strided GEMM for attention (the `gemm`
//! crate, whose AVX-512 kernels are picked at run time), and row-wise layer norm, softmax and
//! GELU, each one pass over memory (16 values a step where the CPU has AVX-512).

use rayon::prelude::*;

/// Products below this many multiply-adds run on the calling thread (rayon's dispatch costs
/// more than it saves).
const PARALLEL_MACS: usize = 1 << 20;

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
// SAFETY: users only write through it to regions no other task touches (see each use).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a closure that calls this captures the whole `SyncPtr`, which is `Sync`,
    /// where one that reads the field would capture the bare pointer, which is not).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A strided read-only matrix view: element `(r, c)` is at `ptr[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            offset: 0,
            rs: cols,
            cs: 1,
        }
    }

    /// Checks that a `rows × cols` matrix through this view stays inside `data`.
    fn check(&self, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(last < self.data.len(), "matrix view out of bounds");
    }
}

/// `out[m × n] (row stride out_rs, at out_off) = a[m × k] · b[k × n]`, single-threaded or on
/// the current rayon pool.
///
/// # Safety
/// `out` must be valid for writes of the `m × n` block at `out_off` with row stride `out_rs`,
/// and no other thread may touch that block during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    out: SyncPtr,
    out_off: usize,
    out_rs: usize,
    parallel: bool,
) {
    a.check(m, k);
    b.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    let par = if parallel && m * n * k >= PARALLEL_MACS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views were bounds-checked above; the caller vouches for `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.0.add(out_off),
            1,
            out_rs as isize,
            false,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Applies `f` to each `cols`-long row, in parallel when there are many.
pub(crate) fn for_rows(data: &mut [f32], cols: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    if data.len() >= 64 * 1024 {
        data.par_chunks_mut(cols).for_each(&f);
    } else {
        data.chunks_mut(cols).for_each(f);
    }
}

/// In-place layer norm of one row: `(x - mean) / sqrt(var + eps) * w + b`.
pub(crate) fn layer_norm(row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// `e^x` to about 2 ulp for |x| < 87, in plain arithmetic the compiler vectorises (libm's is
/// a call per value).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // The integer `n` read from the bits (a float → int cast would stop vectorisation).
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // Cody–Waite: ln 2 in two parts, so `r` keeps its low bits.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67 + r * (0.041_666_5 + r * (0.008_333_67 + r * 0.001_394_3)))));
    f32::from_bits(((ni + 127) as u32) << 23) * p
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn fast_erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - t * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))))
            * fast_exp(-a * a);
    y.copysign(x)
}

/// `out = silu(g) · u` (a gated feed-forward's activation).
pub(crate) fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(g.len() == u.len() && u.len() == out.len());
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `wide` checks; lengths are equal (asserted).
        unsafe { simd::silu_mul(g, u, out) };
        return;
    }
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + fast_exp(-g)) * u;
    }
}

/// Whether the AVX-512 builds of the element-wise loops may run.
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[inline(always)]
fn gelu_body(row: &mut [f32]) {
    for v in row {
        *v = (fast_erf(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *v;
    }
}

/// In-place GELU (the exact, erf form BERT uses).
pub(crate) fn gelu_erf(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `wide` checks.
        unsafe { simd::gelu(row) };
        return;
    }
    gelu_body(row)
}

/// In-place softmax of `scale · row`.
pub(crate) fn softmax_scaled(row: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has the features `wide` checks.
        unsafe { simd::softmax(row, scale) };
        return;
    }
    softmax_body(row, scale)
}

/// Sums with 16 independent accumulators (vectorisable; a single running sum is not).
#[inline(always)]
fn lanes_sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lanes_max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = v.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

#[inline(always)]
fn softmax_body(row: &mut [f32], scale: f32) {
    let max = lanes_max(row);
    for v in row.iter_mut() {
        *v = fast_exp((*v - max) * scale);
    }
    let inv = 1.0 / lanes_sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The same element-wise functions in AVX-512, 16 values a step (the compiler does not
/// vectorise the scalar forms).
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    const MAGIC: f32 = 12_582_912.0;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(
            _mm512_min_ps(x, _mm512_set1_ps(88.0)),
            _mm512_set1_ps(-87.0),
        );
        let t = _mm512_fmadd_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
            _mm512_set1_ps(MAGIC),
        );
        let n = _mm512_sub_ps(t, _mm512_set1_ps(MAGIC));
        let ni = _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(MAGIC.to_bits() as i32),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(0.001_394_3);
        for c in [0.008_333_67, 0.041_666_5, 0.166_666_67, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
            ni,
            _mm512_set1_epi32(127),
        )));
        _mm512_mul_ps(p, scale)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn gelu16(x: __m512) -> __m512 {
        let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_abs_ps(z);
        let t = _mm512_div_ps(
            _mm512_set1_ps(1.0),
            _mm512_fmadd_ps(a, _mm512_set1_ps(0.327_591_1), _mm512_set1_ps(1.0)),
        );
        let mut p = _mm512_set1_ps(1.061_405_4);
        for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
        }
        let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
        let y = _mm512_fnmadd_ps(_mm512_mul_ps(t, p), e, _mm512_set1_ps(1.0));
        // erf has the sign of z.
        let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
        let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
        _mm512_mul_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(0.5)),
            _mm512_add_ps(erf, _mm512_set1_ps(1.0)),
        )
    }

    fn tail_mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// # Safety
    /// AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu(row: &mut [f32]) {
        let p = row.as_mut_ptr();
        let mut i = 0;
        while i < row.len() {
            let m = tail_mask(row.len() - i);
            let x = _mm512_maskz_loadu_ps(m, p.add(i));
            _mm512_mask_storeu_ps(p.add(i), m, gelu16(x));
            i += 16;
        }
    }

    /// # Safety
    /// AVX-512 F; the three slices have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
        let mut i = 0;
        let n = out.len();
        let one = _mm512_set1_ps(1.0);
        while i < n {
            let m = tail_mask(n - i);
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(i));
            let uv = _mm512_maskz_loadu_ps(m, u.as_ptr().add(i));
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), gv));
            let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, _mm512_mul_ps(s, uv));
            i += 16;
        }
    }

    /// # Safety
    /// AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax(row: &mut [f32], scale: f32) {
        let p = row.as_mut_ptr();
        let n = row.len();
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < n {
            let m = tail_mask(n - i);
            let x = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), m, p.add(i));
            mx = _mm512_max_ps(mx, x);
            i += 16;
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let sc = _mm512_set1_ps(scale);
        let mut sum = _mm512_setzero_ps();
        i = 0;
        while i < n {
            let m = tail_mask(n - i);
            let x = _mm512_maskz_loadu_ps(m, p.add(i));
            let e = exp(_mm512_mul_ps(_mm512_sub_ps(x, max), sc));
            let e = _mm512_maskz_mov_ps(m, e);
            sum = _mm512_add_ps(sum, e);
            _mm512_mask_storeu_ps(p.add(i), m, e);
            i += 16;
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        i = 0;
        while i < n {
            let m = tail_mask(n - i);
            let x = _mm512_maskz_loadu_ps(m, p.add(i));
            _mm512_mask_storeu_ps(p.add(i), m, _mm512_mul_ps(x, inv));
            i += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_into_matches_a_naive_product_through_strided_views() {
        let (m, k, n) = (37, 70, 23);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        // `b` read transposed out of an `n × k` buffer, as attention reads keys.
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
            .collect();
        let bt = View {
            data: &w,
            offset: 0,
            rs: 1,
            cs: k,
        };
        let mut out = vec![0f32; m * n];
        // SAFETY: `out` is an `m × n` buffer owned here.
        unsafe {
            gemm_into(
                m,
                n,
                k,
                View::rows(&a, k),
                bt,
                SyncPtr(out.as_mut_ptr()),
                0,
                n,
                true,
            )
        };
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| a[r * k + i] * w[c * k + i]).sum();
                assert!((out[r * n + c] - want).abs() < 1e-3, "({r},{c})");
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row = vec![1.0, 3.0, 2.0, -50.0];
        let mut scalar = row.clone();
        softmax_scaled(&mut row, 0.5);
        softmax_body(&mut scalar, 0.5);
        for (a, b) in row.iter().zip(&scalar) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[2] && row[2] > row[0] && row[3] < 1e-9);
    }

    #[test]
    fn fast_exp_and_gelu_match_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.04;
            let (got, want) = (fast_exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4e-7 * want.max(1e-30),
                "exp({x}): {got} vs {want}"
            );
            let mut g = [x; 19];
            gelu_erf(&mut g);
            let mut scalar = [x];
            gelu_body(&mut scalar);
            assert!((g[18] - scalar[0]).abs() <= 1e-6 * (1.0 + x.abs()));
            let exact = (candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0)
                * 0.5
                * x;
            assert!(
                (g[0] - exact).abs() <= 1e-6 * (1.0 + x.abs()),
                "gelu({x}): {} vs {exact}",
                g[0]
            );
        }
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
    }

    #[test]
    fn silu_mul_matches_its_definition() {
        let g: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 9.0).collect();
        let u: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.1).collect();
        let mut out = vec![0f32; 37];
        silu_mul(&g, &u, &mut out);
        for i in 0..37 {
            let want = g[i] / (1.0 + (-g[i]).exp()) * u[i];
            assert!((out[i] - want).abs() <= 1e-5 * (1.0 + want.abs()), "{i}");
        }
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut row = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut row, &[1.0; 4], &[0.5; 4], 0.0);
        assert!((row.iter().sum::<f32>() / 4.0 - 0.5).abs() < 1e-6);
        let var = row.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f32>() / 4.0;
        assert!((var - 1.0).abs() < 1e-5);
    }
}
