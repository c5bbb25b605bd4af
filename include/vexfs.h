/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * vexfs ioctl ABI, version 1: embeddings on files and k-nearest-neighbour search.
 *
 * Every ioctl works on any open file or directory of a mounted vexfs. Argument structs start
 * with `size` (the caller's sizeof, so the struct can grow: a larger size whose extra bytes are
 * not all zero fails with E2BIG, a smaller one with EINVAL) and `flags`; every `reserved`
 * field must be zero (else EINVAL); unknown flag bits give EINVAL. User memory is passed as
 * __u64 pointers (cast from a pointer; never dereferenced directly by the kernel). `size` above
 * 4096 gives E2BIG. Fields marked "out" are written by the kernel; their input is ignored.
 *
 * Vectors are float32 in the CPU's (little-endian) byte order, exactly `dim` components, the
 * dimension fixed at mkfs time; NaN and infinite components are refused (EINVAL).
 *
 * Errors common to all: EFAULT (bad user pointer), ENOTTY (not a vexfs file: the ioctl went to
 * another filesystem), EUCLEAN (the index on disk is corrupt; a log line names the problem).
 */
#ifndef _UAPI_LINUX_VEXFS_H
#define _UAPI_LINUX_VEXFS_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define VEXFS_IOCTL_MAGIC 0xE7
#define VEXFS_ABI_VERSION 1

/* Largest k of one search, and largest ef_search. */
#define VEXFS_MAX_K 1024
#define VEXFS_MAX_EF 4096
/* Most embeddings (chunks) one file can carry. */
#define VEXFS_MAX_CHUNKS 1020

/* Metric values reported by VEXFS_IOC_STATS (fixed at mkfs). */
#define VEXFS_METRIC_L2 0     /* squared Euclidean distance */
#define VEXFS_METRIC_COSINE 1 /* 1 - cosine similarity */
#define VEXFS_METRIC_IP 2     /* 1 - inner product */

/* vexfs_set_embeddings.flags: drop the file's chunks past first_chunk + count. */
#define VEXFS_SET_TRUNCATE (1u << 0)
/* vexfs_set_embeddings.flags: link the vectors into the HNSW graph before returning. Without
 * it, a SET stores them in the vector write-ahead log (pending, durable when the call returns,
 * found by every search at once by an exact scan) and the filesystem's index worker links them
 * in the background (docs/DURABILITY.md). */
#define VEXFS_SET_INDEX_NOW (1u << 1)

/*
 * VEXFS_IOC_SET_EMBEDDINGS: sets chunks first_chunk .. first_chunk + count - 1 of the file,
 * replacing those that exist, atomically (all or none), durably when it returns. first_chunk must not leave a gap
 * (first_chunk <= the file's current chunk count). Only regular files carry embeddings: a
 * directory gives EISDIR (before the next check). The file must be open for writing (EBADF) on
 * a read-write mount (EROFS). REMOVE follows the same rules.
 * Errors: EINVAL (dim differs from the filesystem's, count 0, NaN/Inf, bad flags/reserved,
 * a gap), E2BIG (count or first_chunk + count above VEXFS_MAX_CHUNKS), ENOSPC (no free vector
 * slot), EISDIR (a directory).
 */
struct vexfs_set_embeddings {
	__u32 size;        /* sizeof(struct vexfs_set_embeddings) = 64 */
	__u32 flags;       /* VEXFS_SET_* */
	__u32 dim;         /* components per vector: must equal the filesystem's */
	__u32 first_chunk; /* chunk of the first vector */
	__u32 count;       /* vectors at `vectors` */
	__u32 reserved0;
	__u64 vectors;     /* user pointer: count * dim float32 */
	__u64 reserved[4];
};

/*
 * VEXFS_IOC_GET_EMBEDDINGS: copies up to `count` vectors from first_chunk on into `vectors`;
 * on return `count` is the number copied and `total` the file's chunk count (count 0 asks
 * only for total). The file must be open for reading (EBADF), as for read(2).
 * Errors: EINVAL (dim differs, bad flags/reserved), ERANGE (first_chunk > total), EBADF.
 */
struct vexfs_get_embeddings {
	__u32 size;        /* 64 */
	__u32 flags;       /* 0 */
	__u32 dim;         /* in: must equal the filesystem's */
	__u32 first_chunk; /* in */
	__u32 count;       /* in: capacity of `vectors` in vectors; out: vectors copied */
	__u32 total;       /* out: chunks the file carries */
	__u64 vectors;     /* user pointer: room for count * dim float32 */
	__u64 reserved[4];
};

/*
 * VEXFS_IOC_REMOVE_EMBEDDINGS: removes every embedding of the file (a file without any is not
 * an error). Needs write access (EBADF, EROFS) like SET.
 */
struct vexfs_remove_embeddings {
	__u32 size;  /* 48 */
	__u32 flags; /* 0 */
	__u64 reserved[5];
};

/* One search result: 16 bytes. */
struct vexfs_search_result {
	__u64 ino;      /* inode number of the file */
	__u32 chunk;    /* which embedding of the file */
	float distance; /* in the filesystem's metric (squared for l2) */
};

/* vexfs_search.flags: rank by the SQ8 or PQ codes' distances and return those, reading no
 * float32 vector (no re-rank): for an index whose codes and links fit its memory budget
 * (index_mem=) while its vectors do not. The distances are then approximate (SQ8: the codes'
 * distance scaled back to the vectors' units; PQ: the table distance) and recall is the
 * codes' (below the exact ranking's at the same ef_search); vectors not yet linked keep exact
 * distances, and so does a search that a caller's permissions narrow down to the exhaustive
 * scan (which reads every vector). EOPNOTSUPP on a filesystem without codes (mkfs.vexfs
 * --quant none); a module older than the flag refuses it with EINVAL. */
#define VEXFS_SEARCH_CODE_DISTANCES (1u << 0)

/*
 * VEXFS_IOC_SEARCH: the k nearest embeddings to `query`, nearest first, with HNSW candidate
 * list ef_search (0 = the default, max(k, 64)). On return `count` holds the number of results
 * written (fewer than k when the filesystem holds fewer vectors).
 *
 * Results are only files the caller may read: inode_permission(MAY_READ) on the file's inode
 * with the caller's credentials (mode bits, ACLs, security modules), and a link left (a removed
 * file is never a result). Search permission on the directories of the file's paths is not
 * asked: the index knows inodes, not paths (a file may have several through hard links), so a
 * file readable by its own mode is found even in a directory the caller cannot search; give
 * such a file a mode that hides it. A caller with CAP_DAC_READ_SEARCH in the filesystem's user
 * namespace (init_user_ns: vexfs is not mountable from a user namespace) gets every file
 * without these checks. The search goes on until it has k readable results or none is left:
 * when the HNSW run finds too few, it runs again with ef_search doubled, up to VEXFS_MAX_EF,
 * then scans every vector exactly, so a caller who may read few files pays for it in time
 * (interruptible by a fatal signal: EINTR). With nothing filtered out, the answer is the
 * same as a privileged caller's.
 * Errors: EINVAL (dim differs, k == 0, k > VEXFS_MAX_K, ef_search below k or above
 * VEXFS_MAX_EF, NaN/Inf in the query, bad flags/reserved), EOPNOTSUPP
 * (VEXFS_SEARCH_CODE_DISTANCES without codes), EINTR.
 */
struct vexfs_search {
	__u32 size;      /* 64 */
	__u32 flags;     /* VEXFS_SEARCH_CODE_DISTANCES or 0 */
	__u32 dim;       /* components of the query */
	__u32 k;         /* results wanted, 1 .. VEXFS_MAX_K */
	__u32 ef_search; /* candidate list size, k .. VEXFS_MAX_EF, or 0 */
	__u32 count;     /* out: results written */
	__u64 query;     /* user pointer: dim float32 */
	__u64 results;   /* user pointer: room for k struct vexfs_search_result */
	__u64 reserved[3];
};

/* VEXFS_IOC_STATS: the index and its parameters (every field after `flags` but the reserved
 * ones is out). */
struct vexfs_stats {
	__u32 size;            /* 88 */
	__u32 flags;           /* 0 */
	__u32 dim;
	__u32 metric;          /* VEXFS_METRIC_* */
	__u32 m;               /* HNSW m (level 0 keeps 2m links) */
	__u32 ef_construction;
	__u64 vectors;         /* embeddings searchable: in the graph or pending */
	__u64 deleted;         /* removed but not yet purged from the graph */
	__u64 capacity;        /* vector slots */
	__u32 levels;          /* levels of the graph (entry point's level + 1; 0 when empty) */
	__u32 entry_point;     /* slot of the entry point (0xffffffff when empty) */
	__u64 bytes_on_disk;   /* bytes of the vector and index regions */
	__u32 distance_impl;   /* VEXFS_DIST_*: the float kernel the filesystem uses */
	__u32 pending;         /* of `vectors`, those not yet linked into the graph (the worker's queue) */
	__u64 reserved[2];
};

/* VEXFS_IOC_INDEX_MEM: the memory the index holds and its cache's counts since mount (every
 * field after `flags` is out). The index's blocks (vector bitmap, map, data, HNSW links, SQ8
 * codes) are held in the buffer cache once read, within the mount option index_mem=SIZE
 * (bytes, K/M/G suffixes) when given: past it the least recently used block is given back and
 * its page dropped from the page cache. Without it, the blocks are given back under memory
 * pressure (a shrinker). A block not held is a miss, taken from the buffer cache, and read
 * from the device when not there either; the blocks of a node's neighbours are read ahead
 * before their distances are computed. */
struct vexfs_index_mem {
	__u32 size;           /* 64 */
	__u32 flags;          /* 0 */
	__u64 mem_bytes;      /* bytes of index blocks held now (4096 per block) */
	__u64 mem_budget;     /* index_mem= in bytes (0: no cap) */
	__u64 cache_hits;     /* reads of a block the index held */
	__u64 cache_misses;   /* reads of a block it did not hold */
	__u64 block_reads;    /* 4 KiB blocks read from the device (for a miss, or read ahead) */
	__u64 readaheads;     /* of those, read ahead (a node's neighbours, before their distances) */
	__u64 evictions;      /* blocks given back (over the budget, or to the shrinker) */
};

/* VEXFS_IOC_INDEX_READS: the 4 KiB blocks read from the device since mount, per vector region
 * (the five counts are out; `reserved` must be zero): the split of vexfs_index_mem.block_reads (read ahead
 * included), which says where a search's reads go under an index_mem= budget: the codes and
 * links a walk reads, or the float32 vectors of a re-rank (none for a search with
 * VEXFS_SEARCH_CODE_DISTANCES on SQ8 codes). With node records (PQ) the data region holds each
 * vector with its level-0 links. */
struct vexfs_index_reads {
	__u32 size;           /* 64 */
	__u32 flags;          /* 0 */
	__u64 bitmap_reads;   /* vector bitmap */
	__u64 map_reads;      /* vector map (slot owners) */
	__u64 data_reads;     /* vector data (float32 vectors, or node records) */
	__u64 hnsw_reads;     /* HNSW header and link records */
	__u64 codes_reads;    /* SQ8 codes, or the PQ codebook and codes */
	__u64 reserved[2];
};

/* vexfs_stats.distance_impl: the distance kernels, picked by CPUID as the fastest the CPU runs
 * (SSE2 under QEMU's software emulation), so results are bit-identical to a userspace run of
 * the same kernels. AVX-512 computes AVX2's bits. */
#define VEXFS_DIST_SCALAR 0
#define VEXFS_DIST_SSE2 1
#define VEXFS_DIST_AVX2 2 /* AVX2 + FMA */
#define VEXFS_DIST_AVX512 3 /* AVX-512 F/BW/VL + AVX2 + FMA: the same bits as AVX2 */

#define VEXFS_IOC_SET_EMBEDDINGS _IOW(VEXFS_IOCTL_MAGIC, 1, struct vexfs_set_embeddings)
#define VEXFS_IOC_GET_EMBEDDINGS _IOWR(VEXFS_IOCTL_MAGIC, 2, struct vexfs_get_embeddings)
#define VEXFS_IOC_REMOVE_EMBEDDINGS _IOW(VEXFS_IOCTL_MAGIC, 3, struct vexfs_remove_embeddings)
#define VEXFS_IOC_SEARCH _IOWR(VEXFS_IOCTL_MAGIC, 4, struct vexfs_search)
#define VEXFS_IOC_STATS _IOWR(VEXFS_IOCTL_MAGIC, 5, struct vexfs_stats)
#define VEXFS_IOC_INDEX_MEM _IOWR(VEXFS_IOCTL_MAGIC, 6, struct vexfs_index_mem)
#define VEXFS_IOC_INDEX_READS _IOWR(VEXFS_IOCTL_MAGIC, 7, struct vexfs_index_reads)

/* The xattr holding chunk 0 as raw little-endian float32 (dim * 4 bytes). */
#define VEXFS_XATTR_EMBEDDING "user.vexfs.embedding"

#endif /* _UAPI_LINUX_VEXFS_H */
