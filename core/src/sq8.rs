//! SQ8: scalar quantisation of the vectors to one signed byte per component, for the HNSW
//! traversal of a filesystem made with the incompat feature `SQ8` (`mkfs.vexfs --quant sq8`).
//!
//! Each component `x` of a vector becomes the code `clamp(round(x * 2^shift), -127, 127)`
//! (round half away from zero), with one power-of-two scale for the whole filesystem: the
//! superblock's `sq8_shift`, chosen at mkfs from the largest component magnitude of the imported
//! vectors ([`shift_for_max`]). A power of two keeps the quantisation exact and integer-only:
//! [`quantise`] works on the float bit patterns, so the kernel computes codes without the FPU and
//! every build gives the same bytes.
//!
//! Codes live in the vector codes region: `code_stride` bytes per slot ([`code_stride_for`]:
//! `dim` rounded up to 32, the padding zero), [`codes_per_block`] per block, none crossing a
//! block boundary. Distances between codes are integers, exact on every implementation (the C
//! kernels `vexfs_code_dist_*` in `core/csrc`): squared Euclidean on the codes for `l2`, the
//! negated dot product for `ip`, and `1 - cos` of the codes (float, in the FPU section) for
//! `cosine`. A search walks the graph on these distances, then re-ranks the `2k` nearest of its
//! candidate list with the float32 distances of the full vectors
//! (`crate::vindex::SQ8_RERANK_PER_K`), so the distances it returns are exact; the codes only
//! steer the walk, as in DiskANN's in-memory codes (Subramanya et al., NeurIPS 2019). The graph
//! is built on code distances as well (inserts and repairs), as FAISS's `IndexHNSWSQ` builds
//! its graph.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use crate::format::superblock::{Region, Superblock};
use crate::format::BLOCK_SIZE_U64;

/// Smallest `sq8_shift` (codes of `x * 2^-64`).
pub const MIN_SHIFT: i32 = -64;
/// Largest `sq8_shift` (codes of `x * 2^64`).
pub const MAX_SHIFT: i32 = 64;
/// The shift of a filesystem made with no vector to train on: components in `[-0.992, 0.992]`
/// keep their value (unit-norm embeddings always do), with a step of `2^-7`.
pub const DEFAULT_SHIFT: i32 = 7;
/// The largest code magnitude.
pub const CODE_MAX: u32 = 127;

/// Bytes per slot in the vector codes region for `dim` components: `dim` rounded up to 32
/// (the AVX2 kernels read 32 bytes at a time; the padding is zero).
pub const fn code_stride_for(dim: u32) -> u64 {
    (dim as u64).div_ceil(32).saturating_mul(32)
}

/// Codes of `stride` bytes one block holds, none crossing a block boundary (at least 1).
pub const fn codes_per_block(stride: u64) -> u64 {
    match BLOCK_SIZE_U64.checked_div(stride) {
        Some(n) if n > 0 => n,
        _ => 1,
    }
}

/// Blocks of the vector codes region for `capacity` slots of dimension `dim`.
pub const fn code_region_blocks(capacity: u64, dim: u32) -> u64 {
    // checked_div and checked_rem: no division panic path (per >= 1 anyway), which the
    // kernel's objtool would flag.
    let per = codes_per_block(code_stride_for(dim));
    match (capacity.checked_div(per), capacity.checked_rem(per)) {
        (Some(q), Some(r)) => q.saturating_add(if r != 0 { 1 } else { 0 }),
        _ => capacity,
    }
}

/// Where the codes of a filesystem with SQ8 lie: the vector codes region's first block, and
/// how its codes pack into blocks ([`code_stride_for`], [`codes_per_block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeGeometry {
    /// First block of the vector codes region (a device block number).
    pub start: u64,
    /// Bytes per code ([`code_stride_for`] of the dimension: a multiple of 32, at most 4096
    /// for a validated superblock).
    pub stride: usize,
    /// Codes per block (at least 1).
    pub per_block: u64,
}

impl CodeGeometry {
    /// The geometry of `sb`'s codes; `None` when it keeps none (no `SQ8` feature).
    pub fn new(sb: &Superblock) -> Option<CodeGeometry> {
        if !sb.has_sq8() {
            return None;
        }
        let stride = code_stride_for(sb.vec_dim);
        Some(CodeGeometry {
            start: sb.region(Region::VecCodes).start,
            // At most 4096 for a validated dim (and never above u64's range anyway).
            stride: usize::try_from(stride).unwrap_or(usize::MAX),
            per_block: codes_per_block(stride),
        })
    }

    /// Where the code of vector slot `slot` lies: the device block number holding it
    /// (`start + slot / per_block`) and the byte offset of its first byte in that block
    /// (`(slot % per_block) * stride`); its `stride` bytes never cross the block's end.
    /// `None` when a figure overflows (never for a validated superblock and a slot below its
    /// capacity). Checked arithmetic only: no panic path for the kernel's objtool to flag.
    pub fn pos(&self, slot: u64) -> Option<(u64, usize)> {
        let blk = slot.checked_div(self.per_block).and_then(|b| self.start.checked_add(b))?;
        let off = slot
            .checked_rem(self.per_block)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| i.checked_mul(self.stride))?;
        Some((blk, off))
    }
}

/// Where the code of vector slot `slot` of `sb` lies: (device block number, byte offset of the
/// code's first byte in that block), as [`CodeGeometry::pos`]; the code is
/// [`code_stride_for`]`(sb.vec_dim)` bytes long. `None` when `sb` keeps no codes (no `SQ8`
/// feature) or a figure overflows. For one-off look-ups; a loop over slots keeps a
/// [`CodeGeometry`].
pub fn code_pos(sb: &Superblock, slot: u64) -> Option<(u64, usize)> {
    CodeGeometry::new(sb)?.pos(slot)
}

/// The magnitude of the code of the float with bit pattern `bits` at `shift`, before clamping
/// to [`CODE_MAX`] (saturating at `u32::MAX`), and its sign. Zeros and subnormals give 0 for
/// every shift in range; infinities and NaNs (never stored: vectors are finite) saturate.
fn magnitude(bits: u32, shift: i32) -> (u32, bool) {
    let neg = bits & 0x8000_0000 != 0;
    let exp = (bits >> 23) & 0xff;
    if exp == 0 {
        return (0, neg);
    }
    if exp == 0xff {
        return (u32::MAX, neg);
    }
    let mant = (bits & 0x7f_ffff) | 0x80_0000;
    // |x| * 2^shift = mant * 2^t with t = exp - 150 + shift: in [-214, 169], exact in i32.
    let t = (exp as i32).saturating_sub(150).saturating_add(shift);
    if t >= 0 {
        // At least mant >= 2^23: far above every code.
        return (u32::MAX, neg);
    }
    let sh = t.unsigned_abs();
    if sh > 24 {
        // mant * 2^-sh < 2^24 * 2^-25 = 1/2: rounds to 0.
        return (0, neg);
    }
    // sh in 1..=24: mant + 2^(sh-1) < 2^25, and the shift rounds half away from zero.
    let half = 1u32 << sh.saturating_sub(1);
    (mant.saturating_add(half) >> sh, neg)
}

/// The code of one component (float bit pattern `bits`) at `shift`.
pub fn code(bits: u32, shift: i32) -> i8 {
    let (mag, neg) = magnitude(bits, shift);
    // min(CODE_MAX) keeps it in 0..=127: the conversion and the negation are exact.
    let m = i8::try_from(mag.min(CODE_MAX)).unwrap_or(i8::MAX);
    if neg {
        m.saturating_neg()
    } else {
        m
    }
}

/// Writes the codes of `vector` (float bit patterns) at `shift` into `out` as bytes (two's
/// complement), one per component, and zeroes the rest of `out` (the padding of a code of
/// [`code_stride_for`] bytes). Components past `out`'s length are dropped (callers size `out`
/// to at least the dimension). Integer only: the kernel runs it without the FPU.
pub fn quantise(vector: &[u32], shift: i32, out: &mut [u8]) {
    let mut v = vector.iter();
    for o in out.iter_mut() {
        *o = match v.next() {
            Some(&bits) => code(bits, shift) as u8,
            None => 0,
        };
    }
}

/// The largest shift in [`MIN_SHIFT`]`..=`[`MAX_SHIFT`] at which a component of magnitude
/// `max_bits` (the float bit pattern of the largest `|x|` among the vectors, sign ignored) is
/// coded without clamping; [`DEFAULT_SHIFT`] for a zero (no vector, or only zeros). Integer
/// only.
pub fn shift_for_max(max_bits: u32) -> i32 {
    let bits = max_bits & 0x7fff_ffff;
    if bits == 0 {
        return DEFAULT_SHIFT;
    }
    let mut s = MAX_SHIFT;
    while s > MIN_SHIFT && magnitude(bits, s).0 > CODE_MAX {
        s = s.saturating_sub(1);
    }
    s
}

/// The bit pattern of the largest component magnitude of `vector` (float bit patterns,
/// finite): what [`shift_for_max`] takes, folded over every vector with `max`. Integer only
/// (the magnitudes of finite floats order as their bit patterns without the sign).
pub fn max_abs_bits(vector: &[u32]) -> u32 {
    vector.iter().map(|&b| b & 0x7fff_ffff).max().unwrap_or(0)
}

/// The binary32 bit pattern nearest to `n * 2^e`, rounding half to even as an FPU does: `+-inf`
/// past the largest finite float, subnormals (or a signed zero) below the smallest normal,
/// `+0.0` for `n == 0`. Integer only (the kernel needs no FPU section for it). `e` outside
/// `-1000..=1000` saturates to an infinity or a zero.
#[allow(clippy::cast_possible_truncation)] // values bounded as commented at each cast
pub fn f32_bits_scaled(n: i128, e: i32) -> u32 {
    if n == 0 {
        return 0;
    }
    let sign = if n < 0 { 0x8000_0000u32 } else { 0 };
    let mag = n.unsigned_abs();
    let e = i64::from(e.clamp(-1000, 1000));
    // mag has `len` bits (1..=128): the value lies in [2^(len-1+e), 2^(len+e)).
    let len = i64::from(128u32.saturating_sub(mag.leading_zeros()));
    let exp = len.saturating_sub(1).saturating_add(e);
    if exp > 127 {
        return sign | 0x7f80_0000;
    }
    // Significant bits the result keeps: 24 for a normal, fewer below 2^-126.
    let keep = if exp >= -126 { 24 } else { 24i64.saturating_sub((-126i64).saturating_sub(exp)) };
    if keep < 0 {
        // Below half the smallest subnormal (2^-150): rounds to zero.
        return sign;
    }
    let drop = len.saturating_sub(keep);
    let m: u128 = if drop <= 0 {
        // Exact: at most 24 bits shifted left by at most 24.
        mag << drop.saturating_neg().clamp(0, 24) as u32
    } else {
        // drop in 1..=128 (keep >= 0, len <= 128).
        let d = drop.clamp(1, 128) as u32;
        let kept = mag.checked_shr(d).unwrap_or(0);
        let rem = if d >= 128 { mag } else { mag & ((1u128 << d).wrapping_sub(1)) };
        let half = 1u128 << d.saturating_sub(1);
        if rem > half || (rem == half && kept & 1 == 1) {
            kept.saturating_add(1)
        } else {
            kept
        }
    };
    if exp < -126 {
        // A subnormal: its bits are the significand (a carry into 2^23 makes it the smallest
        // normal, which is the same pattern). m <= 2^23 here.
        return sign | (m.min(0x0080_0000) as u32);
    }
    // A normal: m in [2^23, 2^24], 2^24 after a carry.
    let (m, exp) = if m >= 1 << 24 { (m >> 1, exp.saturating_add(1)) } else { (m, exp) };
    if exp > 127 {
        return sign | 0x7f80_0000;
    }
    // exp in -126..=127: the biased exponent is 1..=254; m - 2^23 < 2^23.
    let biased = exp.saturating_add(127).clamp(1, 254) as u32;
    sign | (biased << 23) | ((m as u32) & 0x007f_ffff)
}

/// The distance key ([`crate::distance::key_from_bits`]) of the float distance an SQ8 code
/// key stands for, for a search that returns the codes' distances instead of re-ranking
/// (`VEXFS_SEARCH_CODE_DISTANCES`): the code distance scaled back by the filesystem's
/// `shift`, in binary32 rounded half to even, integer only. `l2`: `key * 2^(-2 shift)` (the
/// squared distance between the codes' values); `ip`: `1 - dot * 2^(-2 shift)` with `dot =
/// 2^31 - key` (the codes' dot product); `cosine`: the key itself (the code kernels already
/// give `1 - cos` of the codes as a float key). Monotone in `key` for each metric, so the
/// codes' order stays (ties may appear where floats round alike). An unknown metric gives
/// `u32::MAX`.
pub fn code_dist_key(metric: u32, shift: i32, key: u32) -> u32 {
    use crate::distance::{key_from_bits, METRIC_COSINE, METRIC_IP, METRIC_L2};
    /// The bits of 1.0 (a literal: no float value in kernel code).
    const ONE_BITS: u32 = 0x3f80_0000;
    // shift in MIN_SHIFT..=MAX_SHIFT (checked at mount): t in -128..=128.
    let t = shift.clamp(MIN_SHIFT, MAX_SHIFT).saturating_mul(-2);
    match metric {
        METRIC_L2 => key_from_bits(f32_bits_scaled(i128::from(key), t)),
        METRIC_IP => {
            // The codes' dot product, |dot| < 2^31 (dim * 127^2).
            let dot = i128::from(0x8000_0000u32.wrapping_sub(key) as i32);
            let bits = if dot == 0 {
                ONE_BITS
            } else if t >= 0 {
                // 1 - dot * 2^t. Past 2^41 the 1 only decides a rounding as any value below
                // the dropped bits would (|1 - dot * 2^t| >= 2^41: its last kept bit is at 2^18
                // or above, and both 1 and 2^(t - 41) lie below 2^t and below half of it), so
                // it is taken at the scale 2^(t - 41): the same rounding.
                let (s, e) = if t <= 41 { (t, 0) } else { (41, t.saturating_sub(41)) };
                f32_bits_scaled(1i128.saturating_sub(dot.saturating_mul(1i128 << s.clamp(0, 41))), e)
            } else if t >= -100 {
                // (2^u - dot) * 2^-u, u = -t in 1..=100: exact in i128.
                let u = t.saturating_neg().clamp(1, 100);
                f32_bits_scaled((1i128 << u).saturating_sub(dot), t)
            } else {
                // |dot * 2^t| < 2^-69: 1 - it rounds to 1.0.
                ONE_BITS
            };
            key_from_bits(bits)
        }
        METRIC_COSINE => key,
        _ => u32::MAX,
    }
}

/// The distance key between two codes of equal length, as the C kernels compute it
/// (`vexfs_code_dist_*`): the reference for their tests. `l2`: the sum of squared differences;
/// `ip`: `2^31 - dot`; `cosine`: the key of the float bits of `1 - dot / (sqrt(qq) sqrt(vv))`
/// (1 when a norm is 0), in f32 as the kernels do it; an unknown metric gives `u32::MAX`.
#[cfg(any(test, feature = "std"))]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)] // i64 sums of i8 products: exact
pub fn code_key(metric: u32, q: &[u8], v: &[u8]) -> u32 {
    use crate::distance::{key_from_bits, METRIC_COSINE, METRIC_IP, METRIC_L2};
    let (mut l2, mut dot, mut qq, mut vv) = (0i64, 0i64, 0i64, 0i64);
    for (&a, &b) in q.iter().zip(v) {
        let (a, b) = (i64::from(a as i8), i64::from(b as i8));
        l2 += (a - b) * (a - b);
        dot += a * b;
        qq += a * a;
        vv += b * b;
    }
    match metric {
        METRIC_L2 => l2 as u32,
        METRIC_IP => 0x8000_0000u32.wrapping_sub(dot as i32 as u32),
        METRIC_COSINE => {
            let d = if qq == 0 || vv == 0 {
                1.0f32
            } else {
                let denom = (qq as f32).sqrt() * (vv as f32).sqrt();
                if denom == 0.0 {
                    1.0
                } else {
                    1.0 - dot as f32 / denom
                }
            };
            let bits = if d.is_nan() { crate::distance::NAN_BITS } else { d.to_bits() };
            key_from_bits(bits)
        }
        _ => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::cast_possible_truncation)]
    #![allow(clippy::arithmetic_side_effects)]
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// The code by float arithmetic: round half away from zero, clamped.
    fn by_float(x: f32, shift: i32) -> i8 {
        let y = (x as f64) * 2f64.powi(shift);
        y.round().clamp(-127.0, 127.0) as i8
    }

    #[test]
    fn codes_equal_float_rounding() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut xs: Vec<f32> = [0.0f32, -0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 126.5, 127.49, 127.5, 1e-40, 3.0e38].to_vec();
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (seed >> 40) as f32 / (1u64 << 24) as f32;
            let e = ((seed >> 8) % 40) as i32 - 20;
            let s = if seed & 1 == 0 { 1.0 } else { -1.0 };
            xs.push(s * u * 2f32.powi(e));
        }
        for shift in [MIN_SHIFT, -3, 0, 1, 5, 7, 9, 20, MAX_SHIFT] {
            for &x in &xs {
                assert_eq!(code(x.to_bits(), shift), by_float(x, shift), "x {x:e} shift {shift}");
            }
        }
    }

    #[test]
    fn quantise_pads_with_zeros() {
        let v: Vec<u32> = [0.5f32, -0.25, 1.0].iter().map(|x| x.to_bits()).collect();
        let mut out = [0xaau8; 32];
        quantise(&v, 7, &mut out);
        assert_eq!(&out[..3], &[64u8, (-32i8) as u8, 127]);
        assert!(out[3..].iter().all(|&b| b == 0));
    }

    #[test]
    fn shift_is_the_largest_without_clamping() {
        for x in [1e-30f32, 0.001, 0.3, 0.49, 0.5, 0.9921875, 0.9922, 1.0, 7.0, 1e20] {
            let s = shift_for_max(x.to_bits());
            assert!(magnitude(x.to_bits(), s).0 <= CODE_MAX, "{x} at {s}");
            if s < MAX_SHIFT {
                assert!(magnitude(x.to_bits(), s + 1).0 > CODE_MAX, "{x} at {}", s + 1);
            }
        }
        assert_eq!(shift_for_max(0), DEFAULT_SHIFT);
        assert_eq!(shift_for_max(0.9921875f32.to_bits()), 7);
        assert_eq!(shift_for_max(0.3f32.to_bits()), 8);
    }

    /// Every implementation of the C code kernels gives the reference keys, bit for bit, on
    /// random codes and on the extremes (every byte -127 or 127), for every metric and length.
    #[cfg(feature = "std")]
    #[test]
    fn every_impl_gives_the_reference_keys() {
        use crate::distance::{code_distances, Impl};
        let mut seed = 99u64;
        let mut byte = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % 255) as i32 - 127
        };
        for len in [32usize, 64, 96, 384, 1024, 4096] {
            let q: Vec<u8> = (0..len).map(|_| byte() as i8 as u8).collect();
            let mut vecs: Vec<Vec<u8>> = (0..70).map(|_| (0..len).map(|_| byte() as i8 as u8).collect()).collect();
            vecs.push(vec![127u8; len]);
            vecs.push(vec![(-127i8) as u8; len]);
            vecs.push(vec![0u8; len]);
            vecs.push(q.clone());
            let refs: Vec<&[u8]> = vecs.iter().map(|v| v.as_slice()).collect();
            for metric in 0..3 {
                let want: Vec<u32> = vecs.iter().map(|v| code_key(metric, &q, v)).collect();
                for imp in Impl::ALL.into_iter().filter(|i| i.is_available()) {
                    let mut out = vec![0u32; vecs.len()];
                    code_distances(imp, metric, &q, &refs, &mut out).unwrap();
                    assert_eq!(out, want, "{} metric {metric} len {len}", imp.name());
                }
            }
        }
    }

    #[test]
    fn strides_and_blocks() {
        assert_eq!(code_stride_for(1), 32);
        assert_eq!(code_stride_for(384), 384);
        assert_eq!(code_stride_for(100), 128);
        assert_eq!(code_stride_for(4096), 4096);
        assert_eq!(codes_per_block(384), 10);
        assert_eq!(codes_per_block(4096), 1);
        assert_eq!(code_region_blocks(25, 384), 3);
        assert_eq!(code_region_blocks(0, 384), 0);
    }

    #[test]
    fn code_positions() {
        let g = CodeGeometry { start: 100, stride: 384, per_block: codes_per_block(384) };
        assert_eq!(g.pos(0), Some((100, 0)));
        assert_eq!(g.pos(9), Some((100, 9 * 384)));
        assert_eq!(g.pos(13), Some((101, 3 * 384)));
        // Overflows and a zero per_block (never from `new`) give None, not a panic.
        assert_eq!(CodeGeometry { start: u64::MAX, ..g }.pos(10), None);
        assert_eq!(CodeGeometry { per_block: 0, ..g }.pos(1), None);
        assert_eq!(CodeGeometry { stride: usize::MAX, ..g }.pos(2), None);
    }

    /// `n * 2^e` rounded by the FPU: exact in f64 (|n| < 2^53, the exponent in f64's range),
    /// then one rounding to f32.
    fn scaled_by_float(n: i64, e: i32) -> u32 {
        (((n as f64) * 2f64.powi(e)) as f32).to_bits()
    }

    #[test]
    fn scaled_floats_round_as_the_fpu() {
        let mut seed = 0x0bad_cafe_1234_5678u64;
        let mut cases: Vec<(i64, i32)> = vec![
            (1, 0),
            (-1, 0),
            (3, -1),
            ((1 << 24) + 1, 0),
            ((1 << 24) + 3, 0),
            ((1 << 25) + 2, 0),
            ((1 << 25) + 6, 0),
            ((1 << 24) - 1, 104),
            ((1 << 24) - 1, 105),
            (1, 127),
            (1, 128),
            (1, -149),
            (1, -150),
            (3, -151),
            (1, -151),
            ((1 << 23) + 1, -150),
            ((1 << 24) - 1, -150),
            ((1 << 24) - 1, -149),
            (-(1 << 52) - 1, -200),
            (i64::MAX >> 11, 70),
            (12345, -140),
        ];
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let bits = ((seed >> 58) % 54) as u32; // 0..=53 significant bits (exact in f64)
            let n = ((seed >> 11) & ((1u64 << 53) - 1)) >> (53 - bits.clamp(1, 53));
            let n = if seed & 1 == 0 { n as i64 } else { -(n as i64) };
            let e = ((seed >> 3) % 360) as i32 - 200;
            cases.push((n, e));
        }
        for (n, e) in cases {
            let want = scaled_by_float(n, e);
            let want = if n == 0 { 0 } else { want };
            assert_eq!(f32_bits_scaled(i128::from(n), e), want, "{n} * 2^{e}");
        }
        assert_eq!(f32_bits_scaled(0, 5), 0);
        assert_eq!(f32_bits_scaled(i128::MAX, 0), 0x7f00_0000); // 2^127 - 1 rounds to 2^127
        assert_eq!(f32_bits_scaled(i128::MAX, 1), 0x7f80_0000);
        assert_eq!(f32_bits_scaled(-i128::MAX, -127), 0xbf80_0000); // -(2^127 - 1) * 2^-127 = -1.0
        assert_eq!(f32_bits_scaled(1, -2000), 0);
        assert_eq!(f32_bits_scaled(-1, 2000), 0xff80_0000);
    }

    #[test]
    fn code_distances_as_floats() {
        use crate::distance::{bits_from_key, METRIC_COSINE, METRIC_IP, METRIC_L2};
        let as_f32 = |k: u32| f32::from_bits(bits_from_key(k));
        // l2: the integer distance over 2^(2 shift).
        assert_eq!(as_f32(code_dist_key(METRIC_L2, 7, 0)), 0.0);
        assert_eq!(as_f32(code_dist_key(METRIC_L2, 7, 16384)), 1.0);
        assert_eq!(as_f32(code_dist_key(METRIC_L2, 8, 3 << 16)), 3.0);
        assert_eq!(as_f32(code_dist_key(METRIC_L2, -2, 5)), 80.0);
        // ip: 1 - dot / 2^(2 shift), dot = 2^31 - key.
        let ip =
            |shift: i32, dot: i32| as_f32(code_dist_key(METRIC_IP, shift, 0x8000_0000u32.wrapping_sub(dot as u32)));
        assert_eq!(ip(7, 0), 1.0);
        assert_eq!(ip(7, 16384), 0.0);
        assert_eq!(ip(7, -16384), 2.0);
        assert_eq!(ip(7, 8192), 0.5);
        assert_eq!(ip(64, 5), 1.0);
        assert_eq!(ip(-64, 1), f32::NEG_INFINITY);
        assert_eq!(ip(-30, -1), (1.0f64 + 2f64.powi(60)) as f32);
        // Against the FPU where f64 holds the value exactly.
        let mut seed = 7u64;
        for _ in 0..100_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let shift = ((seed >> 40) % 30) as i32 - 10; // -10..=19: 1 - dot * 2^-2s exact in f64
            let dot = ((seed >> 8) as u32 % 4_000_001) as i32 - 2_000_000;
            let want = (1.0f64 - f64::from(dot) * 2f64.powi(-2 * shift)) as f32;
            assert_eq!(ip(shift, dot).to_bits(), want.to_bits(), "dot {dot} shift {shift}");
            let l2 = (seed >> 20) as u32 % 30_000_000;
            let want = (f64::from(l2) * 2f64.powi(-2 * shift)) as f32;
            assert_eq!(as_f32(code_dist_key(METRIC_L2, shift, l2)).to_bits(), want.to_bits(), "l2 {l2} shift {shift}");
        }
        // Past 2^41 the scaled form rounds as the exact value would: checked against f64 where
        // it holds the value (dot * 2^t with few significant bits, the 1 within 53 bits).
        for (dot, shift) in [(1i32, -21), (-3, -21), ((1 << 24) + 1, -20), (5, -25)] {
            let want = (1.0f64 - f64::from(dot) * 2f64.powi(-2 * shift)) as f32;
            assert_eq!(ip(shift, dot).to_bits(), want.to_bits(), "dot {dot} shift {shift}");
        }
        // Where f64 cannot hold it, by hand: 1 + (2^24 + 1) 2^42 = 2^66 + 2^42 + 1 lies just
        // above the tie between 2^66 and 2^66 + 2^43 (f64 would round it onto the tie, then
        // to even: 2^66), and 1 - (2^24 + 1) 2^42 just inside it.
        assert_eq!(ip(-21, -((1 << 24) + 1)).to_bits(), (193 << 23) | 1);
        assert_eq!(ip(-21, (1 << 24) + 1).to_bits(), 0x8000_0000 | (193 << 23));
        // Monotone in the key (what keeps the walk's order), for l2 and ip (keys from 1: key 0
        // would be a dot product of -2^31, which no code reaches).
        for metric in [METRIC_L2, METRIC_IP] {
            let mut last = 0u32;
            for k in (1..u32::MAX - 70_000).step_by(65_537) {
                let d = code_dist_key(metric, 7, k);
                assert!(d >= last, "metric {metric} key {k}");
                last = d;
            }
        }
        assert_eq!(code_dist_key(METRIC_COSINE, 7, 12345), 12345);
        assert_eq!(code_dist_key(9, 7, 1), u32::MAX);
    }
}
