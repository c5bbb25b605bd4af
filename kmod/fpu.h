/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel's entry to the float32 distance kernels of core/csrc/distance_*.c. fpu.c is built
 * WITHOUT FPU flags and brackets every call with kernel_fpu_begin()/kernel_fpu_end(); Rust
 * passes pointers and receives u32 bit patterns, never float values.
 */
#ifndef VEXFS_FPU_H
#define VEXFS_FPU_H

#include <linux/types.h>

/*
 * The best implementation on this CPU: 3 (AVX-512 F/BW/VL besides AVX2+FMA, with the ZMM state
 * enabled by the OS; AVX2's bits), 2 (AVX2+FMA, with YMM state) or 1 (SSE2, always there on
 * x86_64; chosen under QEMU's TCG). 0 is the scalar reference, never returned but accepted.
 */
u32 vexfs_c_dist_impl(void);

/*
 * out[i] = bit pattern of distance(metric, q, vecs[i]) for i < n, each vector dim floats, the
 * same bits userspace computes with the same impl (core::distance). With tails non-NULL (and
 * splits), vector i with tails[i] non-NULL is read in two parts: splits[i] floats at vecs[i],
 * the rest at tails[i] (a vector that crosses a block; vexfs_dist_mixed_* of
 * core/csrc/distance.h: the bits of the whole vector, NaN bits for a split that is not a
 * multiple of 8 in 1 .. dim - 1). Task context only, and
 * not inside another FPU section (otherwise it warns once and writes NaN bits). Runs with
 * preemption disabled and must not sleep; long batches are split into several FPU sections.
 * Every pointer must be to mapped kernel memory (no page faults allowed inside). An impl the
 * CPU cannot run is downgraded to SSE2 with a warning; an unknown metric gives NaN bits.
 */
void vexfs_c_distances(u32 impl, u32 metric, const float *q, const float *const *vecs,
		       const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out);

/*
 * out[i] = key of the SQ8 code distance (core/csrc/distance.h, vexfs_code_dist_*) between the
 * codes q and vecs[i], len bytes each (a multiple of 32, at most 4096), for i < n: exact
 * integers, the same on every implementation and in userspace. Same context rules as
 * vexfs_c_distances(); an impl the CPU cannot run is downgraded to SSE2 with a warning; a bad
 * len or an unknown metric gives 0xffffffff.
 */
void vexfs_c_code_distances(u32 impl, u32 metric, const s8 *q, const s8 *const *vecs, u32 n,
			    u32 len, u32 *out);

/*
 * PQ (core/csrc/distance.h, vexfs_pq_table): the table entries of n centroids of dsub floats,
 * contiguous at cents (n * dsub at most 1024: one codebook block), for the sub-vector q; returns
 * the bits of |q|^2. Same context rules as
 * vexfs_c_distances(); a bad dsub writes NaN bits.
 */
u32 vexfs_c_pq_table(u32 metric, const float *q, const float *cents, u32 n, u32 dsub, u32 *prim,
		     u32 *norm);

/*
 * PQ code distances (vexfs_pq_dist): the keys from the query's table (2 * m * 256 + m words,
 * m at most 256) to the m-byte codes codes[k], for k < n. Same context rules as
 * vexfs_c_distances(); a bad m gives 0xffffffff.
 */
void vexfs_c_pq_distances(u32 metric, const u32 *table, u32 m, const u8 *const *codes, u32 n,
			  u32 *out);

#endif /* VEXFS_FPU_H */
