//! Float32 distances between a query and a batch of vectors, computed by the C kernels of
//! `core/csrc/distance_*.c`: the same source the kernel module compiles (with `CC_FLAGS_FPU`),
//! built here by `build.rs` with the same clang, `-O2` and `-ffp-contract=off`, so for the same
//! [`Impl`] userspace and the kernel produce bit-identical distances.
//!
//! Metrics are the on-disk `vec_metric` values ([`crate::format::superblock::Metric`]):
//! [`METRIC_L2`] `sum (q - v)^2`, [`METRIC_COSINE`] `1 - q.v / (|q| |v|)` (1.0 when either
//! norm is 0), [`METRIC_IP`] `1 - q.v`. A NaN result (only possible when the sums overflow, e.g.
//! `inf - inf`) is always the positive quiet NaN [`NAN_BITS`], whose key sorts after `+inf`.
//!
//! This module is also compiled into the kernel as source: everything outside the
//! `#[cfg(feature = "std")]` items is integer only (the kernel cannot link float arithmetic).
//! Distances travel as `u32` bit patterns and are compared as [`key_from_bits`] keys.
//!
//! # Reduction orders (each fixed for a given `dim`, see the C files)
//! - [`Impl::Scalar`]: one accumulator, index order, multiply and add separately rounded.
//! - [`Impl::Sse2`]: 4 accumulators x 4 lanes over 16-float blocks, 4-float blocks into
//!   accumulator 0, the `dim % 4` tail (zero padded) into accumulator 1, then
//!   `(a0 + a1) + (a2 + a3)` and lanes `(0 + 2) + (1 + 3)`.
//! - [`Impl::Avx2`]: the same with 8 lanes, 32-float blocks, FMA, and halves `lo + hi` before
//!   the 4-lane step.
//! - [`Impl::Avx512`]: [`Impl::Avx2`]'s order, bit for bit: accumulators 0|1 and 2|3 each in
//!   one 16-lane register for the 32-float blocks, then the AVX2 steps on their halves. Its
//!   results equal AVX2's, so a machine with AVX-512 and one without compute the same bits.
//!
//! # Accuracy
//! The tests re-derive each order in Rust and require bit equality with the C code, and bound
//! every implementation against an f64 computation (`reference` in the tests). With
//! `u = 2^-24`, `n = dim`, `t = 2^-149` (the smallest subnormal) and `d` the result:
//! - l2: `|d - exact| <= (n + 4) u S + 4 n t`, `S = sum (q_i - v_i)^2` (a relative bound);
//! - ip: `|d - exact| <= (n + 4) u S + 2 u |d| + 4 n t`, `S = sum |q_i v_i|`;
//! - cosine: `|d - exact| <= (2n + 8) u + 4 n t / (|q| |v|)` while both squared norms lie in
//!   `[2^-100, 2^100]` (beyond that they near the ends of f32's range, lose precision or
//!   overflow, and the result is what the f32 arithmetic gives: 1.0 once one underflows to 0).
//!
//! Two implementations differ by at most twice the bound. On uniform `[-1, 1)` data at
//! `dim = 384` the observed errors are far smaller: about `1e-7 S` (scalar l2: `1e-6 S`).

/// Squared Euclidean distance.
pub const METRIC_L2: u32 = 0;
/// Cosine distance `1 - cos`.
pub const METRIC_COSINE: u32 = 1;
/// Inner-product distance `1 - q.v`.
pub const METRIC_IP: u32 = 2;

/// The one NaN the kernels output (positive quiet NaN): sorts after every other distance.
pub const NAN_BITS: u32 = 0x7fc0_0000;

/// Order-preserving map from an IEEE-754 binary32 bit pattern to a `u32` key: for floats
/// `a < b` implies `key(a) < key(b)`, `-0.0` sorts just before `+0.0`, `-inf` first, `+inf`
/// after every finite value and positive NaNs after `+inf`. Integer only.
pub const fn key_from_bits(bits: u32) -> u32 {
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Inverse of [`key_from_bits`].
pub const fn bits_from_key(key: u32) -> u32 {
    if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    }
}

/// Index of the first NaN or infinity among float bit patterns, or `None` when all are finite
/// (integer only, so the kernel can validate vectors before entering an FPU section). The C
/// header has the same check as `vexfs_first_nonfinite` (returning index + 1, 0 if none).
pub fn first_nonfinite(bits: &[u32]) -> Option<usize> {
    bits.iter().position(|&b| b & 0x7f80_0000 == 0x7f80_0000)
}

/// An implementation of the distance kernels; the discriminant is the C `VEXFS_DIST_*` id that
/// `vexfs_c_distances` takes in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Impl {
    /// Portable scalar reference.
    Scalar = 0,
    /// SSE2, available on every x86_64 CPU.
    Sse2 = 1,
    /// AVX2 with FMA, chosen when the CPU (and OS) supports both.
    Avx2 = 2,
    /// AVX-512 F/BW/VL beside AVX2 and FMA, chosen when the CPU (and OS) supports them all:
    /// the same results as [`Impl::Avx2`], bit for bit, in registers twice as wide.
    Avx512 = 3,
}

impl Impl {
    /// Every implementation, in id order.
    pub const ALL: [Impl; 4] = [Impl::Scalar, Impl::Sse2, Impl::Avx2, Impl::Avx512];

    /// The implementation with C id `id`.
    pub const fn from_u32(id: u32) -> Option<Impl> {
        match id {
            0 => Some(Impl::Scalar),
            1 => Some(Impl::Sse2),
            2 => Some(Impl::Avx2),
            3 => Some(Impl::Avx512),
            _ => None,
        }
    }

    /// Name used in benchmarks and tool output: `scalar`, `sse2`, `avx2`, `avx512`.
    pub const fn name(self) -> &'static str {
        match self {
            Impl::Scalar => "scalar",
            Impl::Sse2 => "sse2",
            Impl::Avx2 => "avx2",
            Impl::Avx512 => "avx512",
        }
    }
}

/// A distance kernel passed to the vector index as a value: the kernel's FPU glue
/// (`kmod/pins.rs`) or an [`Impl`] in userspace. The index hands it raw pointers because the
/// vectors sit inside borrowed blocks or bounce buffers, possibly unaligned for `f32` slices.
pub trait DistanceKernel {
    /// `out[i]` = float bits of the `metric` distance from `q` to the `dim` floats at `vecs[i]`,
    /// for `i < min(vecs.len(), out.len())`. An unknown metric gives [`NAN_BITS`].
    ///
    /// # Safety
    /// `q` and every `vecs[i]` point at `dim` readable, 4-byte aligned `u32`s (float bit
    /// patterns) that stay valid and unchanged for the call.
    unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]);

    /// As [`Self::distances`], for vectors of which some cross a block boundary and are read
    /// in place in two parts: `vecs[i]` alone when `tails[i]` is null, else its first
    /// `splits[i]` floats at `vecs[i]` and the other `dim - splits[i]` at `tails[i]`
    /// (`vexfs_dist_mixed_*` in `core/csrc/distance.h`). `out[i]` is exactly what
    /// [`Self::distances`] gives for the whole vector (the same operations in the same order).
    /// A split vector whose `splits[i]` is not a multiple of 8 in `1..dim` gives [`NAN_BITS`].
    /// For `i < min(vecs.len(), tails.len(), splits.len(), out.len())`.
    ///
    /// # Safety
    /// `q` points at `dim` readable, 4-byte aligned `u32`s; each `vecs[i]` at `dim` of them
    /// when `tails[i]` is null, else at `splits[i]` and `tails[i]` at `dim - splits[i]`; all
    /// valid and unchanged for the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn distances_split(
        &self,
        metric: u32,
        dim: u32,
        q: *const u32,
        vecs: &[*const u32],
        tails: &[*const u32],
        splits: &[u32],
        out: &mut [u32],
    );

    /// `out[i]` = the key of the `metric` distance between the SQ8 code `q` and the code at
    /// `vecs[i]` (`crate::sq8`; `vexfs_code_dist_*` in `core/csrc/distance.h`), for
    /// `i < min(vecs.len(), out.len())`: exact integers, the same on every implementation. An
    /// unknown metric gives `u32::MAX`.
    ///
    /// # Safety
    /// `q` and every `vecs[i]` point at `len` readable bytes (`len` a multiple of 32, at most
    /// 4096) that stay valid and unchanged for the call.
    unsafe fn code_distances(&self, metric: u32, len: u32, q: *const u8, vecs: &[*const u8], out: &mut [u32]);

    /// PQ table entries (`crate::pq`; `vexfs_pq_table` in `core/csrc/distance.h`, one
    /// implementation for every CPU): for the `dsub` floats `q` and the centroids at `cents`
    /// (contiguous, `dsub` floats each, centroid `k` at `cents + k * dsub`), `prim[k]` = float
    /// bits of `|q - c|^2` (`l2`) or `q.c` (`cosine`, `ip`), `norm[k]` = bits of `|c|^2` (0 for
    /// `l2`), for `k < min(prim.len(), norm.len())`. Returns the bits of `|q|^2`.
    ///
    /// At most a block of centroids per call: `min(prim.len(), norm.len()) * dsub <= 1024`;
    /// past it every entry, and the result, are NaN bits (the kernel's FPU sections stay
    /// short; userspace refuses the same).
    ///
    /// # Safety
    /// `q` points at `dsub` (1 to 1024) and `cents` at `min(prim.len(), norm.len()) * dsub`
    /// readable, 4-byte aligned `u32`s that stay valid and unchanged for the call.
    unsafe fn pq_table(
        &self,
        metric: u32,
        dsub: u32,
        q: *const u32,
        cents: *const u32,
        prim: &mut [u32],
        norm: &mut [u32],
    ) -> u32;

    /// `out[k]` = the key of the PQ distance from the query whose `table` it is (`2 * m * 256 +
    /// m` words, `crate::pq`) to the `m`-byte code at `codes[k]` (`vexfs_pq_dist`), for
    /// `k < min(codes.len(), out.len())`. An unknown metric or an `m` outside 1..=256 gives
    /// `u32::MAX`.
    ///
    /// # Safety
    /// `table` points at `2 * m * 256 + m` readable `u32`s and every `codes[k]` at `m` readable
    /// bytes, valid and unchanged for the call.
    unsafe fn pq_distances(&self, metric: u32, m: u32, table: *const u32, codes: &[*const u8], out: &mut [u32]);
}

#[cfg(feature = "std")]
pub use userspace::*;

#[cfg(feature = "std")]
mod userspace {
    use super::{key_from_bits, Impl, METRIC_IP};
    use core::fmt;

    pub(super) mod ffi {
        extern "C" {
            pub fn vexfs_dist_scalar(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_sse2(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_avx2(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_avx512(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            pub fn vexfs_dist_mixed_scalar(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                tails: *const *const f32,
                splits: *const u32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_mixed_sse2(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                tails: *const *const f32,
                splits: *const u32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_mixed_avx2(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                tails: *const *const f32,
                splits: *const u32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_dist_mixed_avx512(
                metric: u32,
                q: *const f32,
                vecs: *const *const f32,
                tails: *const *const f32,
                splits: *const u32,
                n: u32,
                dim: u32,
                out: *mut u32,
            );
            pub fn vexfs_code_dist_scalar(
                metric: u32,
                q: *const u8,
                vecs: *const *const u8,
                n: u32,
                len: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_code_dist_sse2(
                metric: u32,
                q: *const u8,
                vecs: *const *const u8,
                n: u32,
                len: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_code_dist_avx2(
                metric: u32,
                q: *const u8,
                vecs: *const *const u8,
                n: u32,
                len: u32,
                out: *mut u32,
            );
            #[cfg(target_arch = "x86_64")]
            pub fn vexfs_code_dist_avx512(
                metric: u32,
                q: *const u8,
                vecs: *const *const u8,
                n: u32,
                len: u32,
                out: *mut u32,
            );
            pub fn vexfs_pq_table(
                metric: u32,
                q: *const u32,
                cents: *const u32,
                n: u32,
                dsub: u32,
                prim: *mut u32,
                norm: *mut u32,
            ) -> u32;
            pub fn vexfs_pq_dist(
                metric: u32,
                table: *const u32,
                m: u32,
                codes: *const *const u8,
                n: u32,
                out: *mut u32,
            );
        }
    }

    /// Why [`distances`] refused its arguments (all are caller bugs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DistanceError {
        /// `vecs[index]` has `found` components, the query `expected`.
        DimMismatch {
            /// Position of the vector in `vecs`.
            index: usize,
            /// Components of the query.
            expected: usize,
            /// Components of the vector.
            found: usize,
        },
        /// `out` has room for `out` results, `vecs` holds `vecs` vectors.
        OutLen {
            /// Length of `out`.
            out: usize,
            /// Length of `vecs`.
            vecs: usize,
        },
        /// Not [`super::METRIC_L2`], [`super::METRIC_COSINE`] or [`super::METRIC_IP`].
        UnknownMetric(u32),
        /// This CPU cannot run the implementation.
        Unsupported(Impl),
        /// The query is longer than `u32::MAX` components.
        TooLong(usize),
    }

    impl fmt::Display for DistanceError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match *self {
                Self::DimMismatch { index, expected, found } => {
                    write!(f, "vector {index} has {found} components, the query {expected}")
                }
                Self::OutLen { out, vecs } => {
                    write!(f, "output holds {out} results for {vecs} vectors")
                }
                Self::UnknownMetric(m) => write!(f, "unknown metric {m}"),
                Self::Unsupported(imp) => {
                    write!(f, "this CPU cannot run the {} distance kernels", imp.name())
                }
                Self::TooLong(len) => write!(f, "query of {len} components is too long"),
            }
        }
    }

    impl std::error::Error for DistanceError {}

    impl Impl {
        /// Whether this CPU can run the implementation.
        pub fn is_available(self) -> bool {
            match self {
                Impl::Scalar => true,
                #[cfg(target_arch = "x86_64")]
                Impl::Sse2 => true,
                #[cfg(target_arch = "x86_64")]
                Impl::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx512 => {
                    Impl::Avx2.is_available()
                        && std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                }
                #[cfg(not(target_arch = "x86_64"))]
                Impl::Sse2 | Impl::Avx2 | Impl::Avx512 => false,
            }
        }
    }

    /// The fastest implementation this CPU runs: AVX-512 if present, else AVX2+FMA, else SSE2 —
    /// except under QEMU's software emulation (TCG), where AVX2 code runs several times slower
    /// than SSE2 in practice. The kernel makes the same choice (`vexfs_c_dist_impl`; but AVX2
    /// on Skylake-X, whose clock drops under 512-bit code), so a search in userspace and in
    /// the kernel on the same machine computes the same bits (AVX-512 computes AVX2's, so a
    /// choice between those two never changes a result).
    pub fn best_impl() -> Impl {
        if Impl::Avx512.is_available() && !under_qemu_tcg() {
            Impl::Avx512
        } else if Impl::Avx2.is_available() && !under_qemu_tcg() {
            Impl::Avx2
        } else if Impl::Sse2.is_available() {
            Impl::Sse2
        } else {
            Impl::Scalar
        }
    }

    /// Whether the CPU is QEMU's TCG emulator: hypervisor CPUID leaf 0x40000000 signature
    /// "TCGTCGTCGTCG".
    #[allow(unused_unsafe)] // __cpuid is safe in newer Rust, unsafe in 1.78.
    pub fn under_qemu_tcg() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: cpuid is always available on x86_64.
            let l1 = unsafe { core::arch::x86_64::__cpuid(1) };
            if l1.ecx & (1 << 31) == 0 {
                return false;
            }
            // SAFETY: as above; the hypervisor leaf exists when bit 31 of leaf 1 ECX is set.
            let h = unsafe { core::arch::x86_64::__cpuid(0x4000_0000) };
            let mut sig = [0u8; 12];
            sig[..4].copy_from_slice(&h.ebx.to_le_bytes());
            sig[4..8].copy_from_slice(&h.ecx.to_le_bytes());
            sig[8..].copy_from_slice(&h.edx.to_le_bytes());
            &sig == b"TCGTCGTCGTCG"
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Vectors handed to the C code per call: their pointers live in a stack array.
    const BATCH: usize = 64;

    /// Whether the SQ8 kernels take codes of `len` bytes: a multiple of 32 (their stride, see
    /// `crate::sq8`) of at most 4096, which keeps every sum inside 31 bits.
    const fn code_len_ok(len: usize) -> bool {
        len % 32 == 0 && len <= 4096
    }

    /// `out[i]` = bit pattern of the `metric` distance from `q` to `vecs[i]`, computed by `imp`.
    /// Every vector must have `q.len()` components and `out.len()` must equal `vecs.len()`.
    pub fn distances(imp: Impl, metric: u32, q: &[f32], vecs: &[&[f32]], out: &mut [u32]) -> Result<(), DistanceError> {
        if metric > METRIC_IP {
            return Err(DistanceError::UnknownMetric(metric));
        }
        if out.len() != vecs.len() {
            return Err(DistanceError::OutLen { out: out.len(), vecs: vecs.len() });
        }
        if let Some((index, v)) = vecs.iter().enumerate().find(|(_, v)| v.len() != q.len()) {
            return Err(DistanceError::DimMismatch { index, expected: q.len(), found: v.len() });
        }
        if !imp.is_available() {
            return Err(DistanceError::Unsupported(imp));
        }
        let dim = u32::try_from(q.len()).map_err(|_| DistanceError::TooLong(q.len()))?;
        let mut ptrs = [core::ptr::null::<f32>(); BATCH];
        for (vs, os) in vecs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            for (p, v) in ptrs.iter_mut().zip(vs) {
                *p = v.as_ptr();
            }
            // BATCH fits in u32.
            let n = vs.len() as u32;
            // SAFETY: `q` and each of the first `n` pointers in `ptrs` point to `dim` readable
            // floats (lengths checked above, the slices outlive the call); `os` has room for `n`
            // results (`os.len() == vs.len()`); the metric is known and `imp` available.
            unsafe { raw_distances(imp, metric, dim, q.as_ptr(), ptrs.as_ptr(), n, os.as_mut_ptr()) };
        }
        Ok(())
    }

    /// The C kernel of `imp` on `n` vectors. The C code reads and writes nothing else and
    /// keeps no pointer.
    ///
    /// # Safety
    /// `q` and `vecs[0..n]` point at `dim` readable floats, `out` at `n` writable words,
    /// `metric` is at most [`METRIC_IP`] and `imp.is_available()`.
    unsafe fn raw_distances(
        imp: Impl,
        metric: u32,
        dim: u32,
        q: *const f32,
        vecs: *const *const f32,
        n: u32,
        out: *mut u32,
    ) {
        // SAFETY: the caller's promises are the C functions' requirements.
        unsafe {
            match imp {
                Impl::Scalar => ffi::vexfs_dist_scalar(metric, q, vecs, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Sse2 => ffi::vexfs_dist_sse2(metric, q, vecs, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx2 => ffi::vexfs_dist_avx2(metric, q, vecs, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx512 => ffi::vexfs_dist_avx512(metric, q, vecs, n, dim, out),
                #[cfg(not(target_arch = "x86_64"))]
                Impl::Sse2 | Impl::Avx2 | Impl::Avx512 => unreachable!("is_available() is false"),
            }
        }
    }

    /// The C mixed kernel of `imp` (whole and split vectors, `vexfs_dist_mixed_*`) on `n`
    /// vectors (see [`raw_distances`]).
    ///
    /// # Safety
    /// `q` points at `dim` readable floats; for `i < n`, `vecs[i]` at `dim` of them when
    /// `tails[i]` is null, else at `splits[i]` and `tails[i]` at `dim - splits[i]`; `out` at
    /// `n` writable words; `metric` is at most [`METRIC_IP`] and `imp.is_available()`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn raw_mixed(
        imp: Impl,
        metric: u32,
        dim: u32,
        q: *const f32,
        vecs: *const *const f32,
        tails: *const *const f32,
        splits: *const u32,
        n: u32,
        out: *mut u32,
    ) {
        // SAFETY: the caller's promises are the C functions' requirements.
        unsafe {
            match imp {
                Impl::Scalar => ffi::vexfs_dist_mixed_scalar(metric, q, vecs, tails, splits, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Sse2 => ffi::vexfs_dist_mixed_sse2(metric, q, vecs, tails, splits, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx2 => ffi::vexfs_dist_mixed_avx2(metric, q, vecs, tails, splits, n, dim, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx512 => ffi::vexfs_dist_mixed_avx512(metric, q, vecs, tails, splits, n, dim, out),
                #[cfg(not(target_arch = "x86_64"))]
                Impl::Sse2 | Impl::Avx2 | Impl::Avx512 => unreachable!("is_available() is false"),
            }
        }
    }

    /// The C SQ8 code kernel of `imp` on `n` codes (see [`raw_distances`]).
    ///
    /// # Safety
    /// `q` and `vecs[0..n]` point at `len` readable bytes, `len` a multiple of 32 of at most
    /// 4096, `out` at `n` writable words, `metric` is at most [`METRIC_IP`] and
    /// `imp.is_available()`.
    unsafe fn raw_code_distances(
        imp: Impl,
        metric: u32,
        len: u32,
        q: *const u8,
        vecs: *const *const u8,
        n: u32,
        out: *mut u32,
    ) {
        // SAFETY: the caller's promises are the C functions' requirements.
        unsafe {
            match imp {
                Impl::Scalar => ffi::vexfs_code_dist_scalar(metric, q, vecs, n, len, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Sse2 => ffi::vexfs_code_dist_sse2(metric, q, vecs, n, len, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx2 => ffi::vexfs_code_dist_avx2(metric, q, vecs, n, len, out),
                #[cfg(target_arch = "x86_64")]
                Impl::Avx512 => ffi::vexfs_code_dist_avx512(metric, q, vecs, n, len, out),
                #[cfg(not(target_arch = "x86_64"))]
                Impl::Sse2 | Impl::Avx2 | Impl::Avx512 => unreachable!("is_available() is false"),
            }
        }
    }

    impl super::DistanceKernel for Impl {
        // The index's hot path (a call per neighbour list): the pointers go to the C code as
        // they are, with only the checks the C code cannot make (metric, CPU, code length).
        unsafe fn distances(&self, metric: u32, dim: u32, q: *const u32, vecs: &[*const u32], out: &mut [u32]) {
            let n = vecs.len().min(out.len());
            let Some(os) = out.get_mut(..n) else { return };
            if metric > METRIC_IP || !self.is_available() {
                // Validated superblocks and `best_impl` give neither: the kernels' answer for
                // an unknown metric.
                os.fill(super::NAN_BITS);
                return;
            }
            for (vs, os) in vecs.chunks(BATCH).zip(os.chunks_mut(BATCH)) {
                // SAFETY: the trait's contract (`q` and each `vs[i]` point at `dim` readable
                // floats for the call); `os` has room for `vs.len()` (at most BATCH) results;
                // the metric is known and `self` available (checked above).
                unsafe {
                    raw_distances(*self, metric, dim, q.cast(), vs.as_ptr().cast(), vs.len() as u32, os.as_mut_ptr())
                };
            }
        }

        unsafe fn distances_split(
            &self,
            metric: u32,
            dim: u32,
            q: *const u32,
            vecs: &[*const u32],
            tails: &[*const u32],
            splits: &[u32],
            out: &mut [u32],
        ) {
            let n = vecs.len().min(tails.len()).min(splits.len()).min(out.len());
            let (Some(vs), Some(ts), Some(ss), Some(os)) =
                (vecs.get(..n), tails.get(..n), splits.get(..n), out.get_mut(..n))
            else {
                return;
            };
            if metric > METRIC_IP || !self.is_available() {
                os.fill(super::NAN_BITS);
                return;
            }
            for (((vs, ts), ss), os) in
                vs.chunks(BATCH).zip(ts.chunks(BATCH)).zip(ss.chunks(BATCH)).zip(os.chunks_mut(BATCH))
            {
                // SAFETY: the trait's contract (each `vs[i]`, with `ts[i]` when split, points at
                // the vector's floats for the call); the four chunks have the same length (the
                // slices were cut to `n`), at most BATCH; the metric is known and `self`
                // available (checked above).
                unsafe {
                    raw_mixed(
                        *self,
                        metric,
                        dim,
                        q.cast(),
                        vs.as_ptr().cast(),
                        ts.as_ptr().cast(),
                        ss.as_ptr(),
                        vs.len() as u32,
                        os.as_mut_ptr(),
                    )
                };
            }
        }

        unsafe fn code_distances(&self, metric: u32, len: u32, q: *const u8, vecs: &[*const u8], out: &mut [u32]) {
            let n = vecs.len().min(out.len());
            let Some(os) = out.get_mut(..n) else { return };
            if metric > METRIC_IP || !code_len_ok(len as usize) || !self.is_available() {
                // An unknown metric, a bad length or an unavailable `self`: the kernels'
                // answer for an unknown metric.
                os.fill(u32::MAX);
                return;
            }
            for (vs, os) in vecs.chunks(BATCH).zip(os.chunks_mut(BATCH)) {
                // SAFETY: the trait's contract (`q` and each `vs[i]` point at `len` readable
                // bytes for the call); `os` has room for `vs.len()` results; the metric, the
                // length and `self` are checked above.
                unsafe { raw_code_distances(*self, metric, len, q, vs.as_ptr(), vs.len() as u32, os.as_mut_ptr()) };
            }
        }

        unsafe fn pq_table(
            &self,
            metric: u32,
            dsub: u32,
            q: *const u32,
            cents: *const u32,
            prim: &mut [u32],
            norm: &mut [u32],
        ) -> u32 {
            let n = prim.len().min(norm.len());
            if dsub == 0 || dsub > 1024 || n > (1024 / dsub) as usize {
                prim.fill(super::NAN_BITS);
                norm.fill(super::NAN_BITS);
                return super::NAN_BITS;
            }
            // SAFETY: the trait's contract (`q`: `dsub` readable words, `cents`: `n * dsub`);
            // `prim` and `norm` hold at least `n` words. One C implementation for every `Impl`.
            unsafe { ffi::vexfs_pq_table(metric, q, cents, n as u32, dsub, prim.as_mut_ptr(), norm.as_mut_ptr()) }
        }

        unsafe fn pq_distances(&self, metric: u32, m: u32, table: *const u32, codes: &[*const u8], out: &mut [u32]) {
            let n = codes.len().min(out.len());
            if m == 0 || m > 256 {
                out.fill(u32::MAX);
                return;
            }
            // SAFETY: the trait's contract (`table`: `2 * m * 256 + m` words, `codes[k]`: `m`
            // bytes); `out` holds at least `n` words. One C implementation for every `Impl`.
            unsafe { ffi::vexfs_pq_dist(metric, table, m, codes.as_ptr(), n as u32, out.as_mut_ptr()) }
        }
    }

    /// `out[i]` = the key of the `metric` distance between the SQ8 codes `q` and `vecs[i]`
    /// (`crate::sq8`), computed by `imp`. Every code must have `q.len()` bytes, a multiple of 32
    /// of at most 4096 (the code stride), and `out.len()` must equal `vecs.len()`.
    pub fn code_distances(
        imp: Impl,
        metric: u32,
        q: &[u8],
        vecs: &[&[u8]],
        out: &mut [u32],
    ) -> Result<(), DistanceError> {
        if metric > METRIC_IP {
            return Err(DistanceError::UnknownMetric(metric));
        }
        if out.len() != vecs.len() {
            return Err(DistanceError::OutLen { out: out.len(), vecs: vecs.len() });
        }
        if let Some((index, v)) = vecs.iter().enumerate().find(|(_, v)| v.len() != q.len()) {
            return Err(DistanceError::DimMismatch { index, expected: q.len(), found: v.len() });
        }
        if !code_len_ok(q.len()) {
            return Err(DistanceError::TooLong(q.len()));
        }
        if !imp.is_available() {
            return Err(DistanceError::Unsupported(imp));
        }
        let mut ptrs = [core::ptr::null::<u8>(); BATCH];
        for (vs, os) in vecs.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            for (p, v) in ptrs.iter_mut().zip(vs) {
                *p = v.as_ptr();
            }
            // BATCH and 4096 fit in u32.
            let (n, len) = (vs.len() as u32, q.len() as u32);
            // SAFETY: `q` and each of the first `n` pointers in `ptrs` point to `len` readable
            // bytes (lengths checked above, the slices outlive the call); `os` has room for `n`
            // results; the metric, the length and `imp` are checked above.
            unsafe { raw_code_distances(imp, metric, len, q.as_ptr(), ptrs.as_ptr(), n, os.as_mut_ptr()) };
        }
        Ok(())
    }

    /// Like [`distances`], then each result turned into its [`key_from_bits`] key.
    pub fn distance_keys(
        imp: Impl,
        metric: u32,
        q: &[f32],
        vecs: &[&[f32]],
        out: &mut [u32],
    ) -> Result<(), DistanceError> {
        distances(imp, metric, q, vecs, out)?;
        for o in out.iter_mut() {
            *o = key_from_bits(*o);
        }
        Ok(())
    }

    /// The `metric` distance between `a` and `b` computed by `imp`.
    ///
    /// # Panics
    /// If [`distances`] refuses the arguments (different lengths, unknown metric, `imp` not
    /// available on this CPU).
    pub fn distance(imp: Impl, metric: u32, a: &[f32], b: &[f32]) -> f32 {
        let mut out = [0u32];
        if let Err(e) = distances(imp, metric, a, &[b], &mut out) {
            panic!("vexfs distance: {e}");
        }
        f32::from_bits(out[0])
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    //! Every implementation against an f64 computation (with the error bound of its summation),
    //! against a bit-exact Rust model of its documented reduction order, and against the scalar
    //! reference; over dims 1..=70 and 128, 384, 1536, 4096 and edge-value inputs.
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]

    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Unit roundoff of f32.
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    /// Smallest positive subnormal f32: the absolute error of one underflowing operation.
    const TINY: f64 = 1.401_298_464_324_817e-45;
    const METRICS: [u32; 3] = [METRIC_L2, METRIC_COSINE, METRIC_IP];

    fn dims() -> Vec<usize> {
        (1..=70).chain([128, 384, 1536, 4096]).collect()
    }

    fn impls() -> Vec<Impl> {
        let v: Vec<Impl> = Impl::ALL.into_iter().filter(|i| i.is_available()).collect();
        if !v.contains(&Impl::Avx2) {
            std::eprintln!("note: this CPU has no AVX2+FMA: the avx2 kernels are not tested here");
        }
        if !v.contains(&Impl::Avx512) {
            std::eprintln!("note: this CPU has no AVX-512 F/BW/VL: the avx512 kernels are not tested here");
        }
        v
    }

    /// splitmix64: deterministic test data without dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u32 << 23) as f32 - 1.0
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Uniform,
        Zeros,
        Negative,
        Large,
        Small,
        Subnormal,
        /// Magnitudes from 2^-140 (subnormal) to 2^50, both signs.
        Wide,
        /// Small integers: every sum is exact, so all implementations agree bit for bit.
        Ints,
    }
    const KINDS: [Kind; 8] =
        [Kind::Uniform, Kind::Zeros, Kind::Negative, Kind::Large, Kind::Small, Kind::Subnormal, Kind::Wide, Kind::Ints];

    fn make(kind: Kind, dim: usize, rng: &mut Rng) -> Vec<f32> {
        (0..dim)
            .map(|_| match kind {
                Kind::Uniform => rng.unit(),
                Kind::Zeros => 0.0,
                Kind::Negative => -rng.unit().abs() - f32::EPSILON,
                Kind::Large => rng.unit() * 1e15,
                Kind::Small => rng.unit() * 1e-15,
                Kind::Subnormal => f32::from_bits((rng.next() as u32) & 0x807f_ffff),
                Kind::Wide => {
                    let e = (rng.next() % 191) as i32 - 140;
                    rng.unit() * 2f32.powi(e)
                }
                Kind::Ints => ((rng.next() % 41) as i32 - 20) as f32,
            })
            .collect()
    }

    fn run(imp: Impl, metric: u32, q: &[f32], vecs: &[&[f32]]) -> Vec<u32> {
        let mut out = vec![0u32; vecs.len()];
        distances(imp, metric, q, vecs, &mut out).unwrap();
        out
    }

    // ---- the f64 reference and the error bounds ---------------------------------------------

    /// Exact-enough f64 distance and the bound on |f32 result - it| for any of the three
    /// summation orders (each sums n terms with depth <= n, one rounding per operation):
    ///   l2:     (n + 4) u S + 4 n TINY,               S = sum (q - v)^2
    ///   ip:     (n + 4) u S + 2 u |d| + 4 n TINY,     S = sum |q v|
    ///   cosine: (2n + 8) u + 4 n TINY / (|q| |v|)     (S <= |q||v| by Cauchy-Schwarz)
    /// `None` for cosine when a squared norm is outside [2^-100, 2^100]: near the ends of f32's
    /// range, where cosine is defined by the f32 arithmetic rather than by the f64 value.
    fn reference(metric: u32, q: &[f32], v: &[f32]) -> Option<(f64, f64)> {
        let n = q.len() as f64;
        let pairs = q.iter().zip(v).map(|(&a, &b)| (a as f64, b as f64));
        match metric {
            METRIC_L2 => {
                let s: f64 = pairs.map(|(a, b)| (a - b) * (a - b)).sum();
                Some((s, (n + 4.0) * U * s + 4.0 * n * TINY))
            }
            METRIC_IP => {
                let dot: f64 = pairs.clone().map(|(a, b)| a * b).sum();
                let s: f64 = pairs.map(|(a, b)| (a * b).abs()).sum();
                let d = 1.0 - dot;
                Some((d, (n + 4.0) * U * s + 2.0 * U * d.abs() + 4.0 * n * TINY))
            }
            _ => {
                let dot: f64 = pairs.clone().map(|(a, b)| a * b).sum();
                let qq: f64 = q.iter().map(|&a| a as f64 * a as f64).sum();
                let vv: f64 = v.iter().map(|&a| a as f64 * a as f64).sum();
                let ok = |x: f64| (2f64.powi(-100)..=2f64.powi(100)).contains(&x);
                if !ok(qq) || !ok(vv) {
                    return None;
                }
                let norms = qq.sqrt() * vv.sqrt();
                Some((1.0 - dot / norms, (2.0 * n + 8.0) * U + 4.0 * n * TINY / norms))
            }
        }
    }

    #[test]
    fn every_impl_within_its_error_bound_of_f64() {
        let mut rng = Rng(1);
        let mut worst = [[0f64; 3]; Impl::ALL.len()];
        for imp in impls() {
            for dim in dims() {
                for kind in KINDS {
                    let q = make(kind, dim, &mut rng);
                    let vs: Vec<Vec<f32>> = (0..3).map(|_| make(kind, dim, &mut rng)).collect();
                    let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                    for metric in METRICS {
                        let got = run(imp, metric, &q, &refs);
                        for (v, &bits) in vs.iter().zip(&got) {
                            let Some((exact, tol)) = reference(metric, &q, v) else {
                                continue;
                            };
                            let d = f32::from_bits(bits) as f64;
                            let err = (d - exact).abs();
                            assert!(
                                err <= tol,
                                "{} metric {metric} dim {dim} {kind:?}: got {d:e}, f64 {exact:e}, error {err:e} > bound {tol:e}",
                                imp.name()
                            );
                            if tol > 0.0 && matches!(kind, Kind::Uniform) {
                                let w = &mut worst[imp as usize][metric as usize];
                                *w = w.max(err / tol);
                            }
                        }
                    }
                }
            }
        }
        std::eprintln!("worst error / bound on uniform data [impl][metric]: {worst:?}");
    }

    /// Observed error against f64 at dim 384 on uniform [-1, 1) data, printed with --nocapture:
    /// relative to `sum (q-v)^2` for l2, to `sum |q v|` for ip, absolute for cosine.
    #[test]
    fn observed_error_at_dim_384() {
        let mut rng = Rng(384);
        for imp in impls() {
            for metric in METRICS {
                let mut worst = 0f64;
                for _ in 0..1000 {
                    let q = make(Kind::Uniform, 384, &mut rng);
                    let v = make(Kind::Uniform, 384, &mut rng);
                    let (exact, _) = reference(metric, &q, &v).unwrap();
                    let scale = match metric {
                        METRIC_L2 => exact,
                        METRIC_IP => q.iter().zip(&v).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum(),
                        _ => 1.0,
                    };
                    let d = distance(imp, metric, &q, &v) as f64;
                    worst = worst.max((d - exact).abs() / scale);
                }
                std::eprintln!("{} metric {metric}: max scaled error vs f64 at dim 384: {worst:.2e}", imp.name());
                // Tens of u at most, far below the (n + 4) u = 2.3e-5 bound.
                assert!(worst < 64.0 * U, "{worst:e}");
            }
        }
    }

    #[test]
    fn simd_agrees_with_scalar_within_twice_the_bound() {
        let mut rng = Rng(2);
        for imp in impls().into_iter().filter(|&i| i != Impl::Scalar) {
            for dim in dims() {
                for kind in KINDS {
                    let q = make(kind, dim, &mut rng);
                    let vs: Vec<Vec<f32>> = (0..4).map(|_| make(kind, dim, &mut rng)).collect();
                    let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                    for metric in METRICS {
                        let simd = run(imp, metric, &q, &refs);
                        let scalar = run(Impl::Scalar, metric, &q, &refs);
                        for ((v, &a), &b) in vs.iter().zip(&simd).zip(&scalar) {
                            let (a, b) = (f32::from_bits(a) as f64, f32::from_bits(b) as f64);
                            match reference(metric, &q, v) {
                                Some((_, tol)) => assert!(
                                    (a - b).abs() <= 2.0 * tol,
                                    "{} vs scalar, metric {metric} dim {dim} {kind:?}: {a:e} vs {b:e}",
                                    imp.name()
                                ),
                                // Cosine of (nearly) underflowing or overflowing vectors: both finite.
                                None => assert!(a.is_finite() && b.is_finite()),
                            }
                            if matches!(kind, Kind::Ints | Kind::Zeros) && metric != METRIC_COSINE {
                                assert_eq!(a, b, "exact sums must agree bit for bit");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn edge_values_give_exact_results_everywhere() {
        for imp in impls() {
            for dim in dims() {
                let zeros = vec![0f32; dim];
                let ones = vec![1f32; dim];
                let sub: Vec<f32> = (0..dim)
                    .map(|i| f32::from_bits(1 + i as u32 * 977) * if i % 2 == 0 { 1.0 } else { -1.0 })
                    .collect();
                let d = |m, a: &[f32], b: &[f32]| distance(imp, m, a, b).to_bits();
                // Zero vectors: l2 0, cosine 1 (zero norm), ip 1.
                assert_eq!(d(METRIC_L2, &zeros, &zeros), 0f32.to_bits());
                assert_eq!(d(METRIC_COSINE, &zeros, &ones), 1f32.to_bits());
                assert_eq!(d(METRIC_COSINE, &ones, &zeros), 1f32.to_bits());
                assert_eq!(d(METRIC_IP, &zeros, &ones), 1f32.to_bits());
                // Identical vectors: l2 exactly +0.
                assert_eq!(d(METRIC_L2, &ones, &ones), 0f32.to_bits());
                // Exact integer sums.
                assert_eq!(d(METRIC_L2, &ones, &zeros), (dim as f32).to_bits());
                assert_eq!(d(METRIC_IP, &ones, &ones), (1.0 - dim as f32).to_bits());
                // Subnormals: every product underflows to 0, so l2 0, ip 1 and cosine 1 (the
                // squared norms are 0 in f32 even though the vectors are not).
                assert_eq!(d(METRIC_L2, &sub, &zeros), 0f32.to_bits());
                assert_eq!(d(METRIC_IP, &sub, &sub), 1f32.to_bits());
                assert_eq!(d(METRIC_COSINE, &sub, &sub), 1f32.to_bits());
                // Overflow: +inf for l2; inf - inf is NaN, always the canonical positive one.
                let big = vec![f32::MAX; dim];
                let nbig = vec![-f32::MAX; dim];
                assert_eq!(d(METRIC_L2, &big, &nbig), f32::INFINITY.to_bits());
                if dim >= 2 {
                    let mut alt = big.clone();
                    alt[1] = -f32::MAX;
                    let mut q = big.clone();
                    q[1] = f32::MAX;
                    assert_eq!(d(METRIC_IP, &q, &alt), NAN_BITS);
                }
                // Cosine of overflowing norms is some number or the canonical NaN, never a NaN
                // with another sign or payload.
                let c = d(METRIC_COSINE, &big, &big);
                assert!(!f32::from_bits(c).is_nan() || c == NAN_BITS, "{c:#x}");
            }
        }
    }

    #[test]
    fn unknown_metric_and_bad_arguments_are_refused() {
        let q = [1.0f32, 2.0];
        let v: &[f32] = &[1.0, 2.0];
        let short: &[f32] = &[1.0];
        let mut out = [0u32; 2];
        assert_eq!(distances(Impl::Scalar, 3, &q, &[v], &mut out[..1]), Err(DistanceError::UnknownMetric(3)));
        assert_eq!(distances(Impl::Scalar, 0, &q, &[v], &mut out), Err(DistanceError::OutLen { out: 2, vecs: 1 }));
        assert_eq!(
            distances(Impl::Scalar, 0, &q, &[v, short], &mut out),
            Err(DistanceError::DimMismatch { index: 1, expected: 2, found: 1 })
        );
        assert_eq!(distances(best_impl(), 0, &q, &[], &mut []), Ok(()));
        // The C entry points themselves write canonical NaNs for an unknown metric.
        for imp in impls() {
            let mut res = [0u32; 1];
            let p = [v.as_ptr()];
            let (q, p, o) = (q.as_ptr(), p.as_ptr(), res.as_mut_ptr());
            use super::userspace::ffi;
            // SAFETY: one vector of two floats, one output slot; `imp` is available.
            unsafe {
                match imp {
                    Impl::Scalar => ffi::vexfs_dist_scalar(7, q, p, 1, 2, o),
                    #[cfg(target_arch = "x86_64")]
                    Impl::Sse2 => ffi::vexfs_dist_sse2(7, q, p, 1, 2, o),
                    #[cfg(target_arch = "x86_64")]
                    Impl::Avx2 => ffi::vexfs_dist_avx2(7, q, p, 1, 2, o),
                    #[cfg(target_arch = "x86_64")]
                    Impl::Avx512 => ffi::vexfs_dist_avx512(7, q, p, 1, 2, o),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => unreachable!(),
                }
            }
            assert_eq!(res[0], NAN_BITS);
        }
    }

    #[test]
    #[should_panic(expected = "vector 0 has 1 components, the query 2")]
    fn distance_panics_clearly_on_mismatch() {
        distance(Impl::Scalar, METRIC_L2, &[1.0, 2.0], &[1.0]);
    }

    // ---- determinism: the bits depend only on (impl, metric, dim, q, v) -----------------------

    #[test]
    fn results_are_deterministic_and_independent_of_batch_and_alignment() {
        let mut rng = Rng(3);
        for imp in impls() {
            for dim in dims() {
                let q = make(Kind::Uniform, dim, &mut rng);
                let vs: Vec<Vec<f32>> = (0..69).map(|_| make(Kind::Uniform, dim, &mut rng)).collect();
                let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                for metric in METRICS {
                    let a = run(imp, metric, &q, &refs);
                    assert_eq!(a, run(imp, metric, &q, &refs), "same call twice");
                    // Reversed batch order, one at a time, and misaligned copies (offset by 1..7
                    // floats) give the same bits for each vector.
                    let rev: Vec<&[f32]> = refs.iter().rev().copied().collect();
                    let mut b = run(imp, metric, &q, &rev);
                    b.reverse();
                    assert_eq!(a, b, "batch order");
                    for (i, v) in vs.iter().enumerate().step_by(7) {
                        let off = 1 + i % 7;
                        let mut buf = vec![0f32; dim + off];
                        buf[off..].copy_from_slice(v);
                        let mut qbuf = vec![0f32; dim + 8 - off];
                        qbuf[8 - off..].copy_from_slice(&q);
                        let one = distance(imp, metric, &qbuf[8 - off..], &buf[off..]).to_bits();
                        assert_eq!(one, a[i], "{} metric {metric} dim {dim} vector {i} misaligned", imp.name());
                    }
                }
            }
        }
    }

    // ---- bit-exact models of the documented reduction orders -----------------------------------

    /// One accumulator step: `acc + a*b` (two roundings) or `fma(a, b, acc)` (one).
    fn step(acc: f32, a: f32, b: f32, fma: bool) -> f32 {
        if fma {
            a.mul_add(b, acc)
        } else {
            acc + a * b
        }
    }

    /// The sum of `term(i)` products for i < n in the order of the C file with `lanes` lanes
    /// (0 = the scalar file): see the comments at the top of distance_sse2.c/distance_avx2.c.
    fn model_sum(lanes: usize, fma: bool, n: usize, term: &dyn Fn(usize) -> (f32, f32)) -> f32 {
        if lanes == 0 {
            return (0..n).fold(0.0f32, |acc, i| {
                let (a, b) = term(i);
                step(acc, a, b, false)
            });
        }
        let mut acc = [[0f32; 8]; 4];
        let mut i = 0;
        while i + 4 * lanes <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                for (l, x) in a.iter_mut().enumerate().take(lanes) {
                    let (p, r) = term(i + k * lanes + l);
                    *x = step(*x, p, r, fma);
                }
            }
            i += 4 * lanes;
        }
        while i + lanes <= n {
            for (l, x) in acc[0].iter_mut().enumerate().take(lanes) {
                let (p, r) = term(i + l);
                *x = step(*x, p, r, fma);
            }
            i += lanes;
        }
        for (l, x) in acc[1].iter_mut().enumerate().take(lanes) {
            let (p, r) = if i + l < n { term(i + l) } else { (0.0, 0.0) };
            *x = step(*x, p, r, fma);
        }
        let mut s = [0f32; 8];
        for (l, x) in s.iter_mut().enumerate().take(lanes) {
            *x = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
        }
        if lanes == 8 {
            for l in 0..4 {
                s[l] += s[l + 4];
            }
        }
        (s[0] + s[2]) + (s[1] + s[3])
    }

    fn canon(x: f32) -> u32 {
        if x.is_nan() {
            NAN_BITS
        } else {
            x.to_bits()
        }
    }

    fn model(imp: Impl, metric: u32, q: &[f32], v: &[f32]) -> u32 {
        let (lanes, fma) = match imp {
            Impl::Scalar => (0, false),
            Impl::Sse2 => (4, false),
            Impl::Avx2 | Impl::Avx512 => (8, true),
        };
        let n = q.len();
        let dot = |a: &[f32], b: &[f32]| model_sum(lanes, fma, n, &|i| (a[i], b[i]));
        match metric {
            METRIC_L2 => canon(model_sum(lanes, fma, n, &|i| {
                let d = q[i] - v[i];
                (d, d)
            })),
            METRIC_IP => canon(1.0 - dot(q, v)),
            _ => {
                let (qn, vv) = (dot(q, q).sqrt(), dot(v, v));
                if qn == 0.0 || vv == 0.0 {
                    return canon(1.0);
                }
                let denom = qn * vv.sqrt();
                if denom == 0.0 {
                    return canon(1.0);
                }
                canon(1.0 - dot(q, v) / denom)
            }
        }
    }

    #[test]
    fn each_impl_matches_the_model_of_its_documented_order_bit_for_bit() {
        let mut rng = Rng(4);
        for imp in impls() {
            for dim in dims() {
                for kind in KINDS {
                    let q = make(kind, dim, &mut rng);
                    let vs: Vec<Vec<f32>> = (0..2).map(|_| make(kind, dim, &mut rng)).collect();
                    let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                    for metric in METRICS {
                        let got = run(imp, metric, &q, &refs);
                        for (v, &g) in vs.iter().zip(&got) {
                            let m = model(imp, metric, &q, v);
                            assert_eq!(
                                g,
                                m,
                                "{} metric {metric} dim {dim} {kind:?}: C {g:#x}, model {m:#x}",
                                imp.name()
                            );
                        }
                    }
                }
            }
        }
    }

    // ---- no read past the end of a vector (SSE2 tail loads, AVX2 masked loads) ------------------

    #[cfg(target_os = "linux")]
    #[test]
    fn vectors_ending_at_an_unmapped_page_are_read_safely() {
        use core::ffi::c_void;
        extern "C" {
            fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void;
            fn mprotect(addr: *mut c_void, len: usize, prot: i32) -> i32;
            fn munmap(addr: *mut c_void, len: usize) -> i32;
        }
        const PAGE: usize = 4096;
        // PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS (Linux values).
        // SAFETY: a fresh private anonymous mapping of two pages; the second is made
        // inaccessible, and only the first is used below, through slices inside it.
        let base = unsafe { mmap(core::ptr::null_mut(), 2 * PAGE, 3, 0x22, -1, 0) } as *mut f32;
        assert!(!base.is_null() && base as isize != -1);
        // SAFETY: the second page belongs to the mapping made above.
        assert_eq!(unsafe { mprotect(base.cast::<u8>().add(PAGE).cast(), PAGE, 0) }, 0);
        let mut rng = Rng(5);
        for dim in 1..=70 {
            let src_q = make(Kind::Uniform, dim, &mut rng);
            let src_v = make(Kind::Uniform, dim, &mut rng);
            // SAFETY: q and v are both inside the first page (2 * 70 floats < 1024), v ends
            // exactly at its end; nothing else aliases the mapping.
            let (q, v) = unsafe {
                let v = core::slice::from_raw_parts_mut(base.add(PAGE / 4 - dim), dim);
                let q = core::slice::from_raw_parts_mut(base.add(PAGE / 4 - 2 * dim - 1), dim);
                (q, v)
            };
            q.copy_from_slice(&src_q);
            v.copy_from_slice(&src_v);
            for imp in impls() {
                for metric in METRICS {
                    let at_end = distance(imp, metric, q, v).to_bits();
                    assert_eq!(at_end, distance(imp, metric, &src_q, &src_v).to_bits());
                    let swapped = distance(imp, metric, v, q).to_bits();
                    assert_eq!(swapped, distance(imp, metric, &src_v, &src_q).to_bits());
                }
            }
        }
        // SAFETY: unmaps the mapping made above; no slice into it is used after this.
        unsafe { munmap(base.cast(), 2 * PAGE) };
    }

    // ---- keys ---------------------------------------------------------------------------------

    #[test]
    fn key_order_is_the_ieee_total_order() {
        let specials = [
            f32::NEG_INFINITY,
            -f32::MAX,
            -1e30,
            -1.0,
            -f32::MIN_POSITIVE,
            -1e-45,
            -0.0,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            0.5,
            1.0,
            3.0e38,
            f32::MAX,
            f32::INFINITY,
        ];
        let keys: Vec<u32> = specials.iter().map(|x| key_from_bits(x.to_bits())).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:x?}");
        assert!(key_from_bits(NAN_BITS) > key_from_bits(f32::INFINITY.to_bits()));
        let mut rng = Rng(6);
        let mut pick = || {
            let r = rng.next();
            // Half the time a random bit pattern, half a nearby pair-friendly float.
            if r & 1 == 0 {
                (r >> 32) as u32
            } else {
                (rng.unit() * 1e3).to_bits()
            }
        };
        for _ in 0..200_000 {
            let (a, b) = (pick(), pick());
            assert_eq!(bits_from_key(key_from_bits(a)), a);
            let (fa, fb) = (f32::from_bits(a), f32::from_bits(b));
            assert_eq!(key_from_bits(a).cmp(&key_from_bits(b)), fa.total_cmp(&fb), "{a:#x} {b:#x}");
            if fa < fb {
                assert!(key_from_bits(a) < key_from_bits(b));
            }
        }
        for k in [0u32, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff] {
            assert_eq!(key_from_bits(bits_from_key(k)), k);
        }
    }

    #[test]
    fn distance_keys_sort_like_distances() {
        let mut rng = Rng(7);
        let q = make(Kind::Uniform, 16, &mut rng);
        let vs: Vec<Vec<f32>> = (0..50).map(|_| make(Kind::Uniform, 16, &mut rng)).collect();
        let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
        for metric in METRICS {
            let mut bits = vec![0; 50];
            let mut keys = vec![0; 50];
            distances(best_impl(), metric, &q, &refs, &mut bits).unwrap();
            distance_keys(best_impl(), metric, &q, &refs, &mut keys).unwrap();
            let mut by_float: Vec<usize> = (0..50).collect();
            by_float.sort_by(|&a, &b| f32::from_bits(bits[a]).total_cmp(&f32::from_bits(bits[b])));
            let mut by_key: Vec<usize> = (0..50).collect();
            by_key.sort_by_key(|&i| keys[i]);
            assert_eq!(by_float, by_key);
        }
    }

    #[test]
    fn first_nonfinite_finds_nan_and_inf_only() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(first_nonfinite(&bits(&[0.0, -0.0, 1.0, f32::MAX, -f32::MAX, 1e-45])), None);
        assert_eq!(first_nonfinite(&bits(&[1.0, f32::INFINITY, f32::NAN])), Some(1));
        assert_eq!(first_nonfinite(&bits(&[1.0, 2.0, f32::NEG_INFINITY])), Some(2));
        assert_eq!(first_nonfinite(&bits(&[-f32::NAN])), Some(0));
        assert_eq!(first_nonfinite(&[0x7f80_0001]), Some(0));
        assert_eq!(first_nonfinite(&[]), None);
    }

    #[test]
    fn best_impl_is_available_and_impl_ids_match_c() {
        assert!(best_impl().is_available());
        assert!(Impl::Scalar.is_available());
        for imp in Impl::ALL {
            assert_eq!(Impl::from_u32(imp as u32), Some(imp));
        }
        assert_eq!(Impl::from_u32(4), None);
    }

    /// The index's entry (the `DistanceKernel` impl, raw pointers straight to the C code) gives
    /// the safe functions' results, and the documented answers for what it refuses.
    #[test]
    fn kernel_trait_matches_the_checked_functions() {
        let mut rng = Rng(12);
        for imp in impls() {
            for dim in [1usize, 31, 384] {
                let q = make(Kind::Uniform, dim, &mut rng);
                let vs: Vec<Vec<f32>> = (0..70).map(|_| make(Kind::Uniform, dim, &mut rng)).collect();
                let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                let ptrs: Vec<*const u32> = vs.iter().map(|v| v.as_ptr().cast()).collect();
                for metric in [METRIC_L2, METRIC_COSINE, METRIC_IP, 7] {
                    let mut got = vec![0u32; 70];
                    // SAFETY: q and every vector hold dim floats and outlive the call.
                    unsafe { DistanceKernel::distances(&imp, metric, dim as u32, q.as_ptr().cast(), &ptrs, &mut got) };
                    let want = if metric == 7 { vec![NAN_BITS; 70] } else { run(imp, metric, &q, &refs) };
                    assert_eq!(got, want, "{} metric {metric} dim {dim}", imp.name());
                }
            }
            let qc = vec![3u8; 64];
            let codes: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 64]).collect();
            let cp: Vec<*const u8> = codes.iter().map(|c| c.as_ptr()).collect();
            let cr: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
            let mut want = vec![0u32; 5];
            code_distances(imp, METRIC_L2, &qc, &cr, &mut want).unwrap();
            assert_eq!(want[0], 9 * 64);
            for (metric, len, expect) in [(METRIC_L2, 64, Some(&want)), (7, 64, None), (METRIC_L2, 48, None)] {
                let mut got = vec![0u32; 5];
                // SAFETY: q and every code hold 64 bytes (len is at most that) and outlive the call.
                unsafe { DistanceKernel::code_distances(&imp, metric, len, qc.as_ptr(), &cp, &mut got) };
                match expect {
                    Some(w) => assert_eq!(&got, w),
                    None => assert_eq!(got, vec![u32::MAX; 5], "metric {metric} len {len}"),
                }
            }
        }
    }

    /// A vector read in two parts (one crossing a block boundary) gets the bits of the whole
    /// vector: every implementation, metric and data kind, dims 9..=70 (the tails of every
    /// length after every block size), 104 and 384, every split a multiple of 8, with split
    /// vectors at many places of batches that mix them with whole ones, all at one split or
    /// each at its own. Splits that the
    /// loads could straddle are refused (NaN bits) without a read.
    #[test]
    fn split_vectors_give_the_bits_of_whole_ones() {
        // More than the C code gathers per batch call (VEXFS_MIXED_RUN) and than a call of
        // the trait's userspace implementation takes (BATCH).
        const N: usize = 70;
        let mut rng = Rng(77);
        let dims: Vec<usize> = (9..=70).chain([104, 384]).collect();
        for imp in impls() {
            for kind in [Kind::Uniform, Kind::Wide, Kind::Ints] {
                for &dim in &dims {
                    let q = make(kind, dim, &mut rng);
                    let vs: Vec<Vec<f32>> = (0..N).map(|_| make(kind, dim, &mut rng)).collect();
                    let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                    // The vectors that `is_split` picks read in two parts, vector i split at
                    // `at(i)`, the parts in separate buffers; the bits must be the whole ones.
                    let check = |metric: u32,
                                 want: &[u32],
                                 is_split: &dyn Fn(usize) -> bool,
                                 at: &dyn Fn(usize) -> usize| {
                        let heads: Vec<Vec<f32>> = vs.iter().enumerate().map(|(i, v)| v[..at(i)].to_vec()).collect();
                        let rests: Vec<Vec<f32>> = vs.iter().enumerate().map(|(i, v)| v[at(i)..].to_vec()).collect();
                        let ptrs: Vec<*const u32> = (0..N)
                            .map(|i| if is_split(i) { heads[i].as_ptr() } else { vs[i].as_ptr() }.cast())
                            .collect();
                        let tails: Vec<*const u32> = (0..N)
                            .map(|i| if is_split(i) { rests[i].as_ptr().cast() } else { core::ptr::null() })
                            .collect();
                        let splits: Vec<u32> = (0..N).map(|i| at(i) as u32).collect();
                        let mut got = vec![0u32; N];
                        // SAFETY: q holds dim floats; each whole vector dim, each split one
                        // splits[i] at its head and the rest at its tail; all outlive the call.
                        unsafe {
                            DistanceKernel::distances_split(
                                &imp,
                                metric,
                                dim as u32,
                                q.as_ptr().cast(),
                                &ptrs,
                                &tails,
                                &splits,
                                &mut got,
                            )
                        };
                        got == want
                    };
                    for metric in METRICS {
                        let want = run(imp, metric, &q, &refs);
                        for split in (8..dim).step_by(8) {
                            // A third of the vectors split, two in a row sometimes, the last
                            // one too, all at `split`.
                            let is_split = |i: usize| i % 3 == 1 || i % 7 == 2 || i == N - 1;
                            assert!(
                                check(metric, &want, &is_split, &|_| split),
                                "{} {kind:?} metric {metric} dim {dim} split {split}",
                                imp.name()
                            );
                        }
                        // Three vectors in four split, each at its own split (the passes of
                        // several vectors move each one to its second part at its own block),
                        // multiples of 32 among them when the dim allows.
                        let max = (dim - 1) / 8;
                        let is_split = |i: usize| i % 4 != 0 || i == N - 1;
                        let at = |i: usize| 8 * (1 + (i * 5 + i / 3) % max);
                        assert!(
                            check(metric, &want, &is_split, &at),
                            "{} {kind:?} metric {metric} dim {dim} mixed splits",
                            imp.name()
                        );
                    }
                }
            }
            // Refused splits: not a multiple of 8, zero, the whole vector or past it.
            let dim = 40usize;
            let q = make(Kind::Uniform, dim, &mut rng);
            let v = make(Kind::Uniform, dim, &mut rng);
            for split in [0u32, 4, 12, 40, 48] {
                let mut got = [0u32; 1];
                // SAFETY: a refused split reads nothing; q and v hold dim floats anyway.
                unsafe {
                    DistanceKernel::distances_split(
                        &imp,
                        METRIC_L2,
                        dim as u32,
                        q.as_ptr().cast(),
                        &[v.as_ptr().cast()],
                        &[v.as_ptr().cast()],
                        &[split],
                        &mut got,
                    )
                };
                assert_eq!(got, [NAN_BITS], "{} split {split}", imp.name());
            }
        }
    }

    /// AVX-512 promises AVX2's bits: for every dim, data kind and metric, batches of 1 to 9
    /// vectors (the 4-vector passes, the single-vector rest, and both mixed) and codes.
    #[test]
    fn avx512_computes_avx2_bits() {
        if !Impl::Avx512.is_available() {
            std::eprintln!("note: this CPU has no AVX-512 F/BW/VL: nothing to compare");
            return;
        }
        let mut rng = Rng(11);
        for dim in dims() {
            for kind in KINDS {
                let q = make(kind, dim, &mut rng);
                let vs: Vec<Vec<f32>> = (0..9).map(|_| make(kind, dim, &mut rng)).collect();
                let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
                for metric in METRICS {
                    for n in 1..=refs.len() {
                        let a = run(Impl::Avx2, metric, &q, &refs[..n]);
                        let b = run(Impl::Avx512, metric, &q, &refs[..n]);
                        assert_eq!(a, b, "metric {metric} dim {dim} {kind:?} batch of {n}");
                    }
                }
            }
        }
        for len in (32..=4096).step_by(32).filter(|l| *l <= 256 || l % 1024 == 0 || *l == 384) {
            let code = |rng: &mut Rng| (0..len).map(|_| (rng.next() >> 56) as u8).collect::<Vec<u8>>();
            let mut q = code(&mut rng);
            let mut vs: Vec<Vec<u8>> = (0..9).map(|_| code(&mut rng)).collect();
            // Extremes: every byte -128 or 127 (the largest sums), and all zero.
            q[..len / 2].fill(0x80);
            vs[0].fill(0x7f);
            vs[1].fill(0x80);
            vs[2].fill(0);
            let refs: Vec<&[u8]> = vs.iter().map(|v| v.as_slice()).collect();
            for metric in METRICS {
                for n in 1..=refs.len() {
                    let mut a = vec![0u32; n];
                    let mut b = vec![0u32; n];
                    code_distances(Impl::Avx2, metric, &q, &refs[..n], &mut a).unwrap();
                    code_distances(Impl::Avx512, metric, &q, &refs[..n], &mut b).unwrap();
                    assert_eq!(a, b, "codes: metric {metric} len {len} batch of {n}");
                }
            }
        }
    }
}
