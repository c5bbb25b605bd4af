//! The ioctl ABI of `include/vexfs.h`, version 1, as `#[repr(C)]` structs: the one Rust
//! definition that the kernel module (which compiles this file in as source) and `vexctl`
//! share. The header stays the source of truth: vexctl's tests compare every struct's size,
//! alignment, field offsets and field types, and every constant, with bindgen's reading of it.
//!
//! The rules the header states for every call: `size` is the caller's `sizeof` (larger with a
//! non-zero tail: E2BIG; smaller: EINVAL; above [`MAX_ARG_SIZE`]: E2BIG), every `reserved`
//! field is zero and unknown `flags` bits are refused (EINVAL), user memory is passed as a
//! `u64` holding the pointer, and vectors are `dim` native-endian `f32` components, never NaN
//! or infinite (EINVAL). Errors common to all calls: EFAULT (bad pointer), ENOTTY (not a vexfs
//! file), EUCLEAN (corrupt index on disk).
//!
//! Nothing reinterprets memory as these structs: [`Arg::decode`] reads one field by field from
//! the bytes copied in, in the CPU's byte order, and [`Arg::encode`] writes one back the same
//! way, so the kernel needs no `unsafe` to take them from user memory.

use core::mem::size_of;

/// The ioctl "type" byte of every vexfs ioctl.
pub const VEXFS_IOCTL_MAGIC: u32 = 0xE7;
/// Version of the ABI.
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
/// [`VexfsSetEmbeddings::flags`]: link the vectors into the HNSW graph before returning
/// (without it they are stored pending, searchable at once by an exact scan, and linked by the
/// index worker).
pub const VEXFS_SET_INDEX_NOW: u32 = 1 << 1;

/// [`VexfsSearch::flags`]: rank by the SQ8 or PQ codes' distances and return those, reading
/// no float32 vector (no re-rank): for an index whose codes and links fit its memory budget
/// while its vectors do not. Distances are then approximate (SQ8: the codes' distance scaled
/// back to the vectors' units; PQ: the table distance); vectors not yet linked keep exact ones,
/// and so does a search that the caller's permissions narrow down to the exhaustive scan
/// (which reads every vector). `EOPNOTSUPP` on a filesystem without codes (`mkfs.vexfs --quant
/// none`); a module older than the flag refuses it with `EINVAL`.
pub const VEXFS_SEARCH_CODE_DISTANCES: u32 = 1 << 0;

/// [`VexfsStats::distance_impl`]: portable scalar code. The kernels are picked by CPUID as the
/// fastest the CPU runs, so results are bit-identical to a userspace run of the same ones.
pub const VEXFS_DIST_SCALAR: u32 = 0;
/// [`VexfsStats::distance_impl`]: SSE2.
pub const VEXFS_DIST_SSE2: u32 = 1;
/// [`VexfsStats::distance_impl`]: AVX2 + FMA.
pub const VEXFS_DIST_AVX2: u32 = 2;
/// [`VexfsStats::distance_impl`]: AVX-512 F/BW/VL with AVX2 and FMA; the same bits as AVX2.
pub const VEXFS_DIST_AVX512: u32 = 3;

/// [`VexfsStats::entry_point`] of an empty index.
pub const VEXFS_NO_ENTRY_POINT: u32 = 0xffff_ffff;

/// The xattr holding chunk 0 as raw little-endian `f32` (`dim * 4` bytes).
pub const VEXFS_XATTR_EMBEDDING: &str = "user.vexfs.embedding";

/// Largest `size` an argument struct may declare (E2BIG above).
pub const MAX_ARG_SIZE: usize = 4096;

/// `_IOC_NR` of `VEXFS_IOC_SET_EMBEDDINGS` (`_IOW`, [`VexfsSetEmbeddings`]).
pub const NR_SET_EMBEDDINGS: u32 = 1;
/// `_IOC_NR` of `VEXFS_IOC_GET_EMBEDDINGS` (`_IOWR`, [`VexfsGetEmbeddings`]).
pub const NR_GET_EMBEDDINGS: u32 = 2;
/// `_IOC_NR` of `VEXFS_IOC_REMOVE_EMBEDDINGS` (`_IOW`, [`VexfsRemoveEmbeddings`]).
pub const NR_REMOVE_EMBEDDINGS: u32 = 3;
/// `_IOC_NR` of `VEXFS_IOC_SEARCH` (`_IOWR`, [`VexfsSearch`]).
pub const NR_SEARCH: u32 = 4;
/// `_IOC_NR` of `VEXFS_IOC_STATS` (`_IOWR`, [`VexfsStats`]).
pub const NR_STATS: u32 = 5;
/// `_IOC_NR` of `VEXFS_IOC_INDEX_MEM` (`_IOWR`, [`VexfsIndexMem`]).
pub const NR_INDEX_MEM: u32 = 6;
/// `_IOC_NR` of `VEXFS_IOC_INDEX_READS` (`_IOWR`, [`VexfsIndexReads`]).
pub const NR_INDEX_READS: u32 = 7;

/// Argument of `VEXFS_IOC_SET_EMBEDDINGS`: sets chunks `first_chunk .. first_chunk + count` of
/// the file, replacing those that exist, atomically (all or none). `first_chunk` must not leave a
/// gap (at most the file's current chunk count). The file must be open for writing (EBADF) on a
/// read-write mount (EROFS); a directory gives EISDIR (before that check).
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

/// Argument of `VEXFS_IOC_GET_EMBEDDINGS`: copies up to `count` vectors from `first_chunk` on
/// into `vectors`; on return `count` is the number copied and `total` the file's chunk count
/// (`count` 0 asks only for `total`).
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

/// Argument of `VEXFS_IOC_REMOVE_EMBEDDINGS`: removes every embedding of the file (a file
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

/// One search result (16 bytes). The kernel never handles the `f32`: it writes the distance's
/// bits with [`VexfsSearchResult::encode_bits`].
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[cfg_attr(any(test, feature = "std"), derive(Debug, PartialEq))]
pub struct VexfsSearchResult {
    /// Inode number of the file.
    pub ino: u64,
    /// Which embedding of the file.
    pub chunk: u32,
    /// In the filesystem's metric (squared for l2).
    pub distance: f32,
}

/// Argument of `VEXFS_IOC_SEARCH`: the `k` nearest embeddings to `query`, nearest first, with
/// HNSW candidate list `ef_search` (0: the default, `max(k, 64)`). On return `count` holds the
/// number of results written (fewer than `k` when the filesystem holds fewer vectors).
///
/// Errors: EINVAL (dim differs, `k == 0`, `k > VEXFS_MAX_K`, `ef_search` below `k` or above
/// [`VEXFS_MAX_EF`], NaN/Inf in the query, bad flags/reserved), EOPNOTSUPP
/// ([`VEXFS_SEARCH_CODE_DISTANCES`] without codes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsSearch {
    /// 64.
    pub size: u32,
    /// [`VEXFS_SEARCH_CODE_DISTANCES`] or zero.
    pub flags: u32,
    /// Components of the query.
    pub dim: u32,
    /// Results wanted, 1 ..= [`VEXFS_MAX_K`].
    pub k: u32,
    /// Candidate list size, `k ..= VEXFS_MAX_EF`, or 0 for the default.
    pub ef_search: u32,
    /// Out: results written (input ignored).
    pub count: u32,
    /// User pointer: `dim` `f32`.
    pub query: u64,
    /// User pointer: room for `k` [`VexfsSearchResult`].
    pub results: u64,
    /// Zero.
    pub reserved: [u64; 3],
}

/// Argument of `VEXFS_IOC_STATS`: the index and its parameters (every field after `flags` but
/// the reserved ones is out, its input ignored).
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
    /// Embeddings searchable: in the graph or pending.
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
    /// Of `vectors`, those not yet linked into the graph (the index worker's queue).
    pub pending: u32,
    /// Zero.
    pub reserved: [u64; 2],
}

/// Argument of `VEXFS_IOC_INDEX_MEM`: the memory the index holds and its cache's counts since
/// mount (every field after `flags` is out, its input ignored). The index's blocks (vector
/// bitmap, map, data, HNSW links, SQ8 codes) are held in the buffer cache once read, within
/// the `index_mem=` budget when the mount has one; a block not held is taken from the buffer
/// cache (a miss), and read from the device when the cache does not have it either (the blocks
/// of a node's neighbours are read ahead, before their distances are computed).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsIndexMem {
    /// 64.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// Bytes of the index's blocks held now (4096 per block).
    pub mem_bytes: u64,
    /// The `index_mem=` budget in bytes (0: no cap; the shrinker gives blocks back under
    /// memory pressure).
    pub mem_budget: u64,
    /// Reads of a block the index held, since mount.
    pub cache_hits: u64,
    /// Reads of a block it did not hold (taken from the buffer cache), since mount.
    pub cache_misses: u64,
    /// 4 KiB blocks read from the device (for a miss, or read ahead), since mount.
    pub block_reads: u64,
    /// Of `block_reads`, those read ahead (a node's neighbours, before their distances).
    pub readaheads: u64,
    /// Blocks given back (over the budget, or to the shrinker), since mount.
    pub evictions: u64,
}

/// Argument of `VEXFS_IOC_INDEX_READS`: the 4 KiB blocks read from the device since mount, per
/// vector region (the five counts are out, their input ignored; `reserved` must be zero, else
/// EINVAL, as unknown `flags`): the split of
/// [`VexfsIndexMem::block_reads`] (read ahead included), which says where a search's reads go
/// under an `index_mem=` budget: the codes and links a walk reads, or the float32 vectors of a
/// re-rank (none for a search by the codes' distances on SQ8 codes). The regions are those of
/// `docs/FORMAT.md`; with node records the data region holds the level-0 links too.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VexfsIndexReads {
    /// 64.
    pub size: u32,
    /// Zero.
    pub flags: u32,
    /// Blocks of the vector bitmap read.
    pub bitmap_reads: u64,
    /// Blocks of the vector map (slot owners) read.
    pub map_reads: u64,
    /// Blocks of the vector data region (float32 vectors, or node records) read.
    pub data_reads: u64,
    /// Blocks of the HNSW region (header, level-0 and upper-level link records) read.
    pub hnsw_reads: u64,
    /// Blocks of the codes region (SQ8 codes, or the PQ codebook and codes) read.
    pub codes_reads: u64,
    /// Zero.
    pub reserved: [u64; 2],
}

// The sizes the header's comments promise (vexctl's tests check the header itself); with
// only u32 and u64 fields in declaration order, they also say there is no padding, so the
// field-by-field codecs below visit exactly the bytes of the C layout.
const _: () = assert!(size_of::<VexfsSetEmbeddings>() == 64);
const _: () = assert!(size_of::<VexfsGetEmbeddings>() == 64);
const _: () = assert!(size_of::<VexfsRemoveEmbeddings>() == 48);
const _: () = assert!(size_of::<VexfsSearchResult>() == 16);
const _: () = assert!(size_of::<VexfsSearch>() == 64);
const _: () = assert!(size_of::<VexfsStats>() == 88);
const _: () = assert!(size_of::<VexfsIndexMem>() == 64);
const _: () = assert!(size_of::<VexfsIndexReads>() == 64);

/// Reads native-endian fields off the front of a byte slice.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (v, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_ne_bytes(*v))
    }

    fn u64(&mut self) -> Option<u64> {
        let (v, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_ne_bytes(*v))
    }

    fn u64s<const N: usize>(&mut self) -> Option<[u64; N]> {
        let mut out = [0u64; N];
        for o in out.iter_mut() {
            *o = self.u64()?;
        }
        Some(out)
    }
}

/// Writes native-endian fields at the front of a byte slice.
struct Wr<'a>(&'a mut [u8]);

impl Wr<'_> {
    fn u32(&mut self, v: u32) -> Option<()> {
        let (head, rest) = core::mem::take(&mut self.0).split_first_chunk_mut::<4>()?;
        *head = v.to_ne_bytes();
        self.0 = rest;
        Some(())
    }

    fn u64(&mut self, v: u64) -> Option<()> {
        let (head, rest) = core::mem::take(&mut self.0).split_first_chunk_mut::<8>()?;
        *head = v.to_ne_bytes();
        self.0 = rest;
        Some(())
    }

    fn u64s(&mut self, v: &[u64]) -> Option<()> {
        v.iter().try_for_each(|&x| self.u64(x))
    }
}

/// An ioctl argument struct: its v1 size and its codec over the bytes of its C layout.
pub trait Arg: Sized {
    /// Bytes of the v1 struct (its `sizeof`).
    const SIZE: usize;
    /// The struct from the first [`Self::SIZE`] bytes of `b` (the CPU's byte order); `None` if
    /// `b` is shorter.
    fn decode(b: &[u8]) -> Option<Self>;
    /// Writes the struct into the first [`Self::SIZE`] bytes of `out`; `None` (nothing
    /// meaningful written) if `out` is shorter.
    fn encode(&self, out: &mut [u8]) -> Option<()>;
}

impl Arg for VexfsSetEmbeddings {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsSetEmbeddings {
            size: r.u32()?,
            flags: r.u32()?,
            dim: r.u32()?,
            first_chunk: r.u32()?,
            count: r.u32()?,
            reserved0: r.u32()?,
            vectors: r.u64()?,
            reserved: r.u64s()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u32(self.dim)?;
        w.u32(self.first_chunk)?;
        w.u32(self.count)?;
        w.u32(self.reserved0)?;
        w.u64(self.vectors)?;
        w.u64s(&self.reserved)
    }
}

impl Arg for VexfsGetEmbeddings {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsGetEmbeddings {
            size: r.u32()?,
            flags: r.u32()?,
            dim: r.u32()?,
            first_chunk: r.u32()?,
            count: r.u32()?,
            total: r.u32()?,
            vectors: r.u64()?,
            reserved: r.u64s()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u32(self.dim)?;
        w.u32(self.first_chunk)?;
        w.u32(self.count)?;
        w.u32(self.total)?;
        w.u64(self.vectors)?;
        w.u64s(&self.reserved)
    }
}

impl Arg for VexfsRemoveEmbeddings {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsRemoveEmbeddings { size: r.u32()?, flags: r.u32()?, reserved: r.u64s()? })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u64s(&self.reserved)
    }
}

impl Arg for VexfsSearch {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsSearch {
            size: r.u32()?,
            flags: r.u32()?,
            dim: r.u32()?,
            k: r.u32()?,
            ef_search: r.u32()?,
            count: r.u32()?,
            query: r.u64()?,
            results: r.u64()?,
            reserved: r.u64s()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u32(self.dim)?;
        w.u32(self.k)?;
        w.u32(self.ef_search)?;
        w.u32(self.count)?;
        w.u64(self.query)?;
        w.u64(self.results)?;
        w.u64s(&self.reserved)
    }
}

impl Arg for VexfsStats {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsStats {
            size: r.u32()?,
            flags: r.u32()?,
            dim: r.u32()?,
            metric: r.u32()?,
            m: r.u32()?,
            ef_construction: r.u32()?,
            vectors: r.u64()?,
            deleted: r.u64()?,
            capacity: r.u64()?,
            levels: r.u32()?,
            entry_point: r.u32()?,
            bytes_on_disk: r.u64()?,
            distance_impl: r.u32()?,
            pending: r.u32()?,
            reserved: r.u64s()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u32(self.dim)?;
        w.u32(self.metric)?;
        w.u32(self.m)?;
        w.u32(self.ef_construction)?;
        w.u64(self.vectors)?;
        w.u64(self.deleted)?;
        w.u64(self.capacity)?;
        w.u32(self.levels)?;
        w.u32(self.entry_point)?;
        w.u64(self.bytes_on_disk)?;
        w.u32(self.distance_impl)?;
        w.u32(self.pending)?;
        w.u64s(&self.reserved)
    }
}

impl Arg for VexfsIndexMem {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsIndexMem {
            size: r.u32()?,
            flags: r.u32()?,
            mem_bytes: r.u64()?,
            mem_budget: r.u64()?,
            cache_hits: r.u64()?,
            cache_misses: r.u64()?,
            block_reads: r.u64()?,
            readaheads: r.u64()?,
            evictions: r.u64()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u64s(&[
            self.mem_bytes,
            self.mem_budget,
            self.cache_hits,
            self.cache_misses,
            self.block_reads,
            self.readaheads,
            self.evictions,
        ])
    }
}

impl VexfsSearchResult {
    /// Bytes of one result.
    pub const SIZE: usize = size_of::<Self>();

    /// Writes the result `(ino, chunk, distance)` into the first [`Self::SIZE`] bytes of `out`,
    /// the distance given as its float bits (the kernel never handles an `f32`). `None` if
    /// `out` is shorter.
    pub fn encode_bits(ino: u64, chunk: u32, distance_bits: u32, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u64(ino)?;
        w.u32(chunk)?;
        w.u32(distance_bits)
    }
}

impl Arg for VexfsIndexReads {
    const SIZE: usize = size_of::<Self>();

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Rd(b);
        Some(VexfsIndexReads {
            size: r.u32()?,
            flags: r.u32()?,
            bitmap_reads: r.u64()?,
            map_reads: r.u64()?,
            data_reads: r.u64()?,
            hnsw_reads: r.u64()?,
            codes_reads: r.u64()?,
            reserved: r.u64s()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut w = Wr(out);
        w.u32(self.size)?;
        w.u32(self.flags)?;
        w.u64s(&[self.bitmap_reads, self.map_reads, self.data_reads, self.hnsw_reads, self.codes_reads])?;
        w.u64s(&self.reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// Bytes `at .. at + N` of `b`.
    fn at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        b.get(at..at + N).unwrap().try_into().unwrap()
    }

    /// Each field's value lands at the field's offset in the C layout, and decoding gives the
    /// struct back.
    #[test]
    fn codecs_follow_the_layout() {
        let s = VexfsSearch {
            size: 1,
            flags: 2,
            dim: 3,
            k: 4,
            ef_search: 5,
            count: 6,
            query: 7 << 40,
            results: 8 << 40,
            reserved: [9, 10, 11],
        };
        let mut b = [0u8; VexfsSearch::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsSearch, k))), 4);
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsSearch, count))), 6);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsSearch, results))), 8 << 40);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsSearch, reserved) + 16)), 11);
        assert_eq!(VexfsSearch::decode(&b), Some(s));

        let s = VexfsStats {
            size: 88,
            flags: 1,
            dim: 2,
            metric: 3,
            m: 4,
            ef_construction: 5,
            vectors: 6,
            deleted: 7,
            capacity: 8,
            levels: 9,
            entry_point: 10,
            bytes_on_disk: 11,
            distance_impl: 12,
            pending: 13,
            reserved: [14, 15],
        };
        let mut b = [0u8; VexfsStats::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsStats, entry_point))), 10);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsStats, bytes_on_disk))), 11);
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsStats, distance_impl))), 12);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsStats, reserved) + 8)), 15);
        assert_eq!(VexfsStats::decode(&b), Some(s));

        let s = VexfsIndexMem {
            size: 64,
            flags: 1,
            mem_bytes: 2,
            mem_budget: 3,
            cache_hits: 4,
            cache_misses: 5,
            block_reads: 6,
            readaheads: 7,
            evictions: 8,
        };
        let mut b = [0u8; VexfsIndexMem::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexMem, mem_bytes))), 2);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexMem, block_reads))), 6);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexMem, evictions))), 8);
        assert_eq!(VexfsIndexMem::decode(&b), Some(s));

        let s = VexfsIndexReads {
            size: 64,
            flags: 1,
            bitmap_reads: 2,
            map_reads: 3,
            data_reads: 4,
            hnsw_reads: 5,
            codes_reads: 6,
            reserved: [7, 8],
        };
        let mut b = [0u8; VexfsIndexReads::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexReads, map_reads))), 3);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexReads, data_reads))), 4);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexReads, codes_reads))), 6);
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsIndexReads, reserved) + 8)), 8);
        assert_eq!(VexfsIndexReads::decode(&b), Some(s));

        let s = VexfsSetEmbeddings {
            size: 64,
            flags: 1,
            dim: 2,
            first_chunk: 3,
            count: 4,
            reserved0: 5,
            vectors: 6 << 40,
            reserved: [7, 8, 9, 10],
        };
        let mut b = [0u8; VexfsSetEmbeddings::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsSetEmbeddings, vectors))), 6 << 40);
        assert_eq!(VexfsSetEmbeddings::decode(&b), Some(s));

        let s = VexfsGetEmbeddings {
            size: 64,
            flags: 1,
            dim: 2,
            first_chunk: 3,
            count: 4,
            total: 5,
            vectors: 6 << 40,
            reserved: [7, 8, 9, 10],
        };
        let mut b = [0u8; VexfsGetEmbeddings::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsGetEmbeddings, total))), 5);
        assert_eq!(VexfsGetEmbeddings::decode(&b), Some(s));

        let s = VexfsRemoveEmbeddings { size: 48, flags: 1, reserved: [2, 3, 4, 5, 6] };
        let mut b = [0u8; VexfsRemoveEmbeddings::SIZE];
        s.encode(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsRemoveEmbeddings, reserved) + 32)), 6);
        assert_eq!(VexfsRemoveEmbeddings::decode(&b), Some(s));
    }

    #[test]
    fn search_result_bits() {
        let mut b = [0u8; VexfsSearchResult::SIZE];
        VexfsSearchResult::encode_bits(42, 7, 1.5f32.to_bits(), &mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(at(&b, offset_of!(VexfsSearchResult, ino))), 42);
        assert_eq!(u32::from_ne_bytes(at(&b, offset_of!(VexfsSearchResult, chunk))), 7);
        assert_eq!(f32::from_ne_bytes(at(&b, offset_of!(VexfsSearchResult, distance))), 1.5);
    }

    #[test]
    fn short_buffers_are_refused() {
        assert_eq!(VexfsSearch::decode(&[0u8; 63]), None);
        assert_eq!(VexfsStats::default().encode(&mut [0u8; 87]), None);
        assert_eq!(VexfsSearchResult::encode_bits(1, 2, 3, &mut [0u8; 15]), None);
    }
}
