//! The vexfs ioctl ABI, version 1, for vexctl: `include/vexfs.h` is the source of truth.
//!
//! The `#[repr(C)]` structs and the constants are [`vexfs_core::abi`]'s, the very definitions
//! the kernel module compiles in, re-exported here; this file adds the ioctl numbers (as nix
//! computes them) and names for the metric and distance-kernel values. The test at the bottom
//! compares the structs and constants with bindgen's reading of the header (sizes, alignments,
//! every field's offset and type, every constant) and the ioctl numbers with what a C compiler
//! makes of the header's `_IOW`/`_IOWR` macros (see `build.rs`), so the header, the kernel and
//! vexctl cannot drift apart silently.
//!
//! The rules the header states for every call: `size` is the caller's `sizeof` (larger with a
//! non-zero tail: E2BIG; smaller: EINVAL), every `reserved` field is zero and unknown `flags` bits
//! are refused (EINVAL), user memory is passed as a `u64` holding the pointer, and vectors are
//! `dim` native-endian `f32` components, never NaN or infinite (EINVAL). Errors common to all
//! calls: EFAULT (bad pointer), ENOTTY (not a vexfs file), EUCLEAN (corrupt index on disk).
//!
//! The calls themselves, with safe signatures, are in [`crate::ioctl`].

use std::mem::size_of;

use nix::sys::ioctl::ioctl_num_type;
pub use vexfs_image::vexfs_core::abi::*;

/// `_IOW(VEXFS_IOCTL_MAGIC, 1, struct vexfs_set_embeddings)`.
pub const VEXFS_IOC_SET_EMBEDDINGS: ioctl_num_type =
    nix::request_code_write!(VEXFS_IOCTL_MAGIC, NR_SET_EMBEDDINGS, size_of::<VexfsSetEmbeddings>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 2, struct vexfs_get_embeddings)`.
pub const VEXFS_IOC_GET_EMBEDDINGS: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, NR_GET_EMBEDDINGS, size_of::<VexfsGetEmbeddings>());
/// `_IOW(VEXFS_IOCTL_MAGIC, 3, struct vexfs_remove_embeddings)`.
pub const VEXFS_IOC_REMOVE_EMBEDDINGS: ioctl_num_type =
    nix::request_code_write!(VEXFS_IOCTL_MAGIC, NR_REMOVE_EMBEDDINGS, size_of::<VexfsRemoveEmbeddings>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 4, struct vexfs_search)`.
pub const VEXFS_IOC_SEARCH: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, NR_SEARCH, size_of::<VexfsSearch>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 5, struct vexfs_stats)`.
pub const VEXFS_IOC_STATS: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, NR_STATS, size_of::<VexfsStats>());

/// `_IOWR(VEXFS_IOCTL_MAGIC, 6, struct vexfs_index_mem)`.
pub const VEXFS_IOC_INDEX_MEM: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, NR_INDEX_MEM, size_of::<VexfsIndexMem>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 7, struct vexfs_index_reads)`.
pub const VEXFS_IOC_INDEX_READS: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, NR_INDEX_READS, size_of::<VexfsIndexReads>());

/// The name and meaning of a `VEXFS_METRIC_*` value.
pub fn metric_name(metric: u32) -> Option<(&'static str, &'static str)> {
    match metric {
        VEXFS_METRIC_L2 => Some(("l2", "squared Euclidean distance")),
        VEXFS_METRIC_COSINE => Some(("cosine", "1 - cosine similarity")),
        VEXFS_METRIC_IP => Some(("ip", "1 - inner product")),
        _ => None,
    }
}

/// The name and meaning of a `VEXFS_DIST_*` value.
pub fn distance_impl_name(d: u32) -> Option<(&'static str, &'static str)> {
    match d {
        VEXFS_DIST_SCALAR => Some(("scalar", "portable C")),
        VEXFS_DIST_SSE2 => Some(("sse2", "SSE2")),
        VEXFS_DIST_AVX2 => Some(("avx2", "AVX2 + FMA")),
        VEXFS_DIST_AVX512 => Some(("avx512", "AVX-512 F/BW/VL, AVX2's bits")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_IOC(dir, type, nr, size)` of the generic Linux layout (x86, arm, riscv, ...):
    /// nr bits 0-7, type 8-15, size 16-29, dir 30-31 (write = 1, read = 2).
    fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
        let size = u32::try_from(size).unwrap();
        assert!(size < 1 << 14);
        (dir << 30) | (size << 16) | (VEXFS_IOCTL_MAGIC << 8) | nr
    }
    const IOC_WRITE: u32 = 1;
    const IOC_READ: u32 = 2;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "riscv64"))]
    fn ioctl_numbers_by_ioc_arithmetic() {
        let ours = |n: ioctl_num_type| n as u32;
        assert_eq!(ours(VEXFS_IOC_SET_EMBEDDINGS), ioc(IOC_WRITE, 1, 64));
        assert_eq!(ours(VEXFS_IOC_GET_EMBEDDINGS), ioc(IOC_READ | IOC_WRITE, 2, 64));
        assert_eq!(ours(VEXFS_IOC_REMOVE_EMBEDDINGS), ioc(IOC_WRITE, 3, 48));
        assert_eq!(ours(VEXFS_IOC_SEARCH), ioc(IOC_READ | IOC_WRITE, 4, 64));
        assert_eq!(ours(VEXFS_IOC_STATS), ioc(IOC_READ | IOC_WRITE, 5, 88));
        assert_eq!(ours(VEXFS_IOC_INDEX_MEM), ioc(IOC_READ | IOC_WRITE, 6, 64));
        assert_eq!(ours(VEXFS_IOC_INDEX_READS), ioc(IOC_READ | IOC_WRITE, 7, 64));
        // The same numbers written out, as strace and the kernel log print them.
        assert_eq!(ours(VEXFS_IOC_SET_EMBEDDINGS), 0x4040_e701);
        assert_eq!(ours(VEXFS_IOC_GET_EMBEDDINGS), 0xc040_e702);
        assert_eq!(ours(VEXFS_IOC_REMOVE_EMBEDDINGS), 0x4030_e703);
        assert_eq!(ours(VEXFS_IOC_SEARCH), 0xc040_e704);
        assert_eq!(ours(VEXFS_IOC_STATS), 0xc058_e705);
        assert_eq!(ours(VEXFS_IOC_INDEX_MEM), 0xc040_e706);
        assert_eq!(ours(VEXFS_IOC_INDEX_READS), 0xc040_e707);
    }

    #[test]
    fn metric_names() {
        assert_eq!(metric_name(VEXFS_METRIC_L2).unwrap().0, "l2");
        assert_eq!(metric_name(VEXFS_METRIC_COSINE).unwrap().0, "cosine");
        assert_eq!(metric_name(VEXFS_METRIC_IP).unwrap().0, "ip");
        assert_eq!(metric_name(3), None);
        assert_eq!(distance_impl_name(VEXFS_DIST_AVX2).unwrap().0, "avx2");
        assert_eq!(distance_impl_name(VEXFS_DIST_AVX512).unwrap().0, "avx512");
        assert_eq!(distance_impl_name(4), None);
    }

    /// What bindgen read from include/vexfs.h (generated by build.rs).
    #[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all, clippy::pedantic)]
    mod header {
        include!(concat!(env!("OUT_DIR"), "/vexfs_bindgen.rs"));
    }

    /// Requires both closures to name fields of one type: a compile error otherwise.
    fn same_field_type<A, B, F>(_ours: fn(&A) -> &F, _header: fn(&B) -> &F) {}

    // Tests generated by build.rs from the header: for every struct, its size, alignment and
    // each field's offset and type; every integer and string constant; every VEXFS_IOC_* number
    // as the C compiler computes it. A field, constant or ioctl that the header has and this file
    // lacks is a compile error of these tests; a different value or layout is a failure.
    include!(concat!(env!("OUT_DIR"), "/abi_checks.rs"));
}
