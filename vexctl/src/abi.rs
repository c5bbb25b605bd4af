//! Rust mirror of the vexfs ioctl ABI, version 1: `include/vexfs.h` is the source of truth.
//!
//! Every struct here is `#[repr(C)]` with the header's field names, order and types; the test at
//! the bottom compares them with bindgen's reading of the header (sizes, alignments, every field's
//! offset and type, every constant) and the ioctl numbers with what a C compiler makes of the
//! header's `_IOW`/`_IOWR` macros (see `build.rs`), so the two cannot drift apart silently.
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

/// The ioctl "type" byte of every vexfs ioctl.
pub const VEXFS_IOCTL_MAGIC: u32 = 0xE7;
/// Version of the ABI this file mirrors.
pub const VEXFS_ABI_VERSION: u32 = 1;

/// Largest `k` of one search.
pub const VEXFS_MAX_K: u32 = 1024;
/// Largest `ef_search` of one search.
pub const VEXFS_MAX_EF: u32 = 4096;
/// Most embeddings (chunks) one file can carry.
pub const VEXFS_MAX_CHUNKS: u32 = 1020;

/// [`VexfsStats::metric`]: squared Euclidean distance.
pub const VEXFS_METRIC_L2: u32 = 0;
/// [`VexfsStats::metric`]: 1 - cosine similarity.
pub const VEXFS_METRIC_COSINE: u32 = 1;
/// [`VexfsStats::metric`]: 1 - inner product.
pub const VEXFS_METRIC_IP: u32 = 2;

/// [`VexfsSetEmbeddings::flags`]: drop the file's chunks past `first_chunk + count`.
pub const VEXFS_SET_TRUNCATE: u32 = 1 << 0;

/// The xattr holding chunk 0 as raw little-endian `f32` (`dim * 4` bytes). (vexctl uses the
/// ioctls; mirrored so that the ABI test covers every name of the header.)
#[allow(dead_code)]
pub const VEXFS_XATTR_EMBEDDING: &str = "user.vexfs.embedding";

/// Argument of [`VEXFS_IOC_SET_EMBEDDINGS`]: sets chunks `first_chunk .. first_chunk + count` of
/// the file, replacing those that exist, atomically (all or none). `first_chunk` must not leave a
/// gap (at most the file's current chunk count). The file must be open for writing (EBADF) on a
/// read-write mount (EROFS).
///
/// Errors: EINVAL (dim differs from the filesystem's, count 0, NaN/Inf, bad flags/reserved, a
/// gap), E2BIG (count or `first_chunk + count` above [`VEXFS_MAX_CHUNKS`]), ENOSPC (no free vector
/// slot), EISDIR (a directory).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsSetEmbeddings {
    /// `size_of::<VexfsSetEmbeddings>()` = 64.
    pub size: u32,
    /// `VEXFS_SET_*`.
    pub flags: u32,
    /// Components per vector: must equal the filesystem's.
    pub dim: u32,
    /// Chunk of the first vector.
    pub first_chunk: u32,
    /// Vectors at `vectors`.
    pub count: u32,
    /// Zero.
    pub reserved0: u32,
    /// User pointer: `count * dim` `f32`.
    pub vectors: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// Argument of [`VEXFS_IOC_GET_EMBEDDINGS`]: copies up to `count` vectors from `first_chunk` on
/// into `vectors`; on return `count` is the number copied and `total` the file's chunk count.
///
/// Errors: EINVAL (dim differs, bad flags/reserved), ERANGE (`first_chunk > total`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsGetEmbeddings {
    /// 64.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// In: must equal the filesystem's.
    pub dim: u32,
    /// In: the first chunk to copy.
    pub first_chunk: u32,
    /// In: capacity of `vectors`, in vectors; out: vectors copied.
    pub count: u32,
    /// Out: chunks the file carries.
    pub total: u32,
    /// User pointer: room for `count * dim` `f32`.
    pub vectors: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// Argument of [`VEXFS_IOC_REMOVE_EMBEDDINGS`]: removes every embedding of the file (a file
/// without any is not an error). Needs write access (EBADF, EROFS) like SET.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsRemoveEmbeddings {
    /// 48.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// Zero.
    pub reserved: [u64; 5],
}

/// One search result (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VexfsSearchResult {
    /// Inode number of the file.
    pub ino: u64,
    /// Which embedding of the file.
    pub chunk: u32,
    /// In the filesystem's metric (squared for l2).
    pub distance: f32,
}

/// Argument of [`VEXFS_IOC_SEARCH`]: the `k` nearest embeddings to `query`, nearest first, with
/// HNSW candidate list `ef_search` (0: the default, `max(k, 64)`). On return `count` holds the
/// number of results written (fewer than `k` when the filesystem holds fewer vectors).
///
/// Errors: EINVAL (dim differs, `k == 0`, `k > VEXFS_MAX_K`, `ef_search` below `k` or above
/// [`VEXFS_MAX_EF`], NaN/Inf in the query, bad flags/reserved).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsSearch {
    /// 64.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// Components of the query.
    pub dim: u32,
    /// Results wanted, 1 ..= [`VEXFS_MAX_K`].
    pub k: u32,
    /// Candidate list size, `k ..= VEXFS_MAX_EF`, or 0 for the default.
    pub ef_search: u32,
    /// Out: results written.
    pub count: u32,
    /// User pointer: `dim` `f32`.
    pub query: u64,
    /// User pointer: room for `k` [`VexfsSearchResult`].
    pub results: u64,
    /// Zero.
    pub reserved: [u64; 3],
}

/// Argument of [`VEXFS_IOC_STATS`]: the index and its parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsStats {
    /// 88.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// Components per vector (fixed at mkfs).
    pub dim: u32,
    /// `VEXFS_METRIC_*` (fixed at mkfs).
    pub metric: u32,
    /// HNSW `m` (level 0 keeps `2m` links).
    pub m: u32,
    /// HNSW candidate list size while inserting.
    pub ef_construction: u32,
    /// Embeddings in the index.
    pub vectors: u64,
    /// Removed but not yet purged from the graph.
    pub deleted: u64,
    /// Vector slots.
    pub capacity: u64,
    /// Levels of the graph (entry point's level + 1; 0 when empty).
    pub levels: u32,
    /// Slot of the entry point ([`VEXFS_NO_ENTRY_POINT`] when empty).
    pub entry_point: u32,
    /// Bytes of the vector and index regions.
    pub bytes_on_disk: u64,
    /// `VEXFS_DIST_*`: the float32 distance kernel the filesystem uses.
    pub distance_impl: u32,
    /// Zero.
    pub reserved0: u32,
    /// Zero.
    pub reserved: [u64; 2],
}

/// [`VexfsStats::distance_impl`]: portable scalar code. The kernel is picked at mount as the
/// fastest the CPU runs (timed), so results are bit-identical to a userspace run of the same one.
pub const VEXFS_DIST_SCALAR: u32 = 0;
/// [`VexfsStats::distance_impl`]: SSE2.
pub const VEXFS_DIST_SSE2: u32 = 1;
/// [`VexfsStats::distance_impl`]: AVX2 + FMA.
pub const VEXFS_DIST_AVX2: u32 = 2;

/// [`VexfsStats::entry_point`] of an empty index.
pub const VEXFS_NO_ENTRY_POINT: u32 = 0xffff_ffff;

// The sizes the header's comments promise (the test below checks the header itself).
const _: () = assert!(size_of::<VexfsSetEmbeddings>() == 64);
const _: () = assert!(size_of::<VexfsGetEmbeddings>() == 64);
const _: () = assert!(size_of::<VexfsRemoveEmbeddings>() == 48);
const _: () = assert!(size_of::<VexfsSearchResult>() == 16);
const _: () = assert!(size_of::<VexfsSearch>() == 64);
const _: () = assert!(size_of::<VexfsStats>() == 88);

/// `_IOW(VEXFS_IOCTL_MAGIC, 1, struct vexfs_set_embeddings)`.
pub const VEXFS_IOC_SET_EMBEDDINGS: ioctl_num_type =
    nix::request_code_write!(VEXFS_IOCTL_MAGIC, 1, size_of::<VexfsSetEmbeddings>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 2, struct vexfs_get_embeddings)`.
pub const VEXFS_IOC_GET_EMBEDDINGS: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, 2, size_of::<VexfsGetEmbeddings>());
/// `_IOW(VEXFS_IOCTL_MAGIC, 3, struct vexfs_remove_embeddings)`.
pub const VEXFS_IOC_REMOVE_EMBEDDINGS: ioctl_num_type =
    nix::request_code_write!(VEXFS_IOCTL_MAGIC, 3, size_of::<VexfsRemoveEmbeddings>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 4, struct vexfs_search)`.
pub const VEXFS_IOC_SEARCH: ioctl_num_type =
    nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, 4, size_of::<VexfsSearch>());
/// `_IOWR(VEXFS_IOCTL_MAGIC, 5, struct vexfs_stats)`.
pub const VEXFS_IOC_STATS: ioctl_num_type = nix::request_code_readwrite!(VEXFS_IOCTL_MAGIC, 5, size_of::<VexfsStats>());

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
        // The same numbers written out, as strace and the kernel log print them.
        assert_eq!(ours(VEXFS_IOC_SET_EMBEDDINGS), 0x4040_e701);
        assert_eq!(ours(VEXFS_IOC_GET_EMBEDDINGS), 0xc040_e702);
        assert_eq!(ours(VEXFS_IOC_REMOVE_EMBEDDINGS), 0x4030_e703);
        assert_eq!(ours(VEXFS_IOC_SEARCH), 0xc040_e704);
        assert_eq!(ours(VEXFS_IOC_STATS), 0xc058_e705);
    }

    #[test]
    fn metric_names() {
        assert_eq!(metric_name(VEXFS_METRIC_L2).unwrap().0, "l2");
        assert_eq!(metric_name(VEXFS_METRIC_COSINE).unwrap().0, "cosine");
        assert_eq!(metric_name(VEXFS_METRIC_IP).unwrap().0, "ip");
        assert_eq!(metric_name(3), None);
        assert_eq!(distance_impl_name(VEXFS_DIST_AVX2).unwrap().0, "avx2");
        assert_eq!(distance_impl_name(3), None);
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
