/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vexfs float32 distance kernels: one C source, compiled both into the kernel module (Kbuild,
 * with $(CC_FLAGS_FPU)) and into the userspace tools (core/build.rs, the cc crate), with the
 * same compiler (clang), the same -O2 and -ffp-contract=off, so the same implementation gives
 * bit-identical distances on both sides.
 *
 * Metrics (the on-disk `vec_metric`, core::format::superblock::Metric):
 *   0 = l2      sum (q[i] - v[i])^2                     (squared Euclidean)
 *   1 = cosine  1 - q.v / (sqrt(|q|^2) * sqrt(|v|^2))   (1.0 when |q|^2, |v|^2 or that
 *               product of square roots is 0 in f32)
 *   2 = ip      1 - q.v
 * out[i] receives the IEEE-754 bit pattern of distance(q, vecs[i]). A NaN result (possible only
 * from overflowing inputs, e.g. inf - inf in a dot product, or an unknown metric) is always
 * written as the positive quiet NaN 0x7fc00000, which sorts after +inf under the order-preserving
 * key map of core::distance::key_from_bits.
 *
 * q and every vecs[i] hold dim floats; no alignment is required (unaligned loads), 32-byte
 * alignment is merely faster. The result never depends on the vectors' addresses, on n or on
 * the position of a vector in the batch: only on (implementation, metric, dim, q, v).
 *
 * Floating point runs only between kernel_fpu_begin() and kernel_fpu_end() in the kernel
 * (kmod/fpu.c), which also resets MXCSR to its default: round to nearest, no FTZ/DAZ, the same
 * as a userspace process.
 *
 * Reduction order (fixed, see each file):
 *   scalar: one float accumulator, i = 0, 1, ..., dim-1, no FMA.
 *   sse2:   4 accumulators of 4 lanes over 16-float blocks, then 4-float blocks into acc 0,
 *           then the last dim % 4 floats (zero padded) into acc 1; sum (a0+a1)+(a2+a3), then
 *           lanes (0+2)+(1+3). Multiply and add are separately rounded.
 *   avx2:   4 accumulators of 8 lanes over 32-float blocks with FMA, then 8-float blocks into
 *           acc 0, then the last dim % 8 floats (masked load, zero padded) into acc 1; sum
 *           (a0+a1)+(a2+a3), then the two 128-bit halves lo+hi, then lanes (0+2)+(1+3).
 *   avx512: the avx2 order, bit for bit, with a0|a1 and a2|a3 each in one 16-lane register
 *           (see distance_avx512.c): its results equal avx2's.
 */
#ifndef VEXFS_DISTANCE_H
#define VEXFS_DISTANCE_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint32_t u32;
typedef int8_t s8;
typedef uint8_t u8;
#endif

#define VEXFS_METRIC_L2 0u
#define VEXFS_METRIC_COSINE 1u
#define VEXFS_METRIC_IP 2u

/* Implementation ids, as returned by vexfs_c_dist_impl() and core::distance::Impl. */
#define VEXFS_DIST_SCALAR 0u
#define VEXFS_DIST_SSE2 1u
#define VEXFS_DIST_AVX2 2u
#define VEXFS_DIST_AVX512 3u

/* The canonical NaN written for every NaN result. */
#define VEXFS_DIST_NAN_BITS 0x7fc00000u

/*
 * Each needs the FPU (kernel_fpu_begin()) in the kernel; the avx2 one also needs AVX2 and FMA,
 * the avx512 one AVX2, FMA and AVX-512 F, BW and VL (with the ZMM and opmask state enabled).
 */
void vexfs_dist_scalar(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		       u32 *out);
void vexfs_dist_sse2(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		     u32 *out);
void vexfs_dist_avx2(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		     u32 *out);
void vexfs_dist_avx512(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		       u32 *out);

/*
 * A vector that crosses a block boundary, summed in place: its first `split` floats at v, the
 * rest (dim - split) at w. split is a multiple of 8 with 0 < split < dim (a vector slot is
 * 32-byte aligned, so a block ends after a multiple of 8 of its floats: no 4- or 8-float load
 * straddles the two parts). The result is the bits the batch function of the same
 * implementation gives for the contiguous vector: the same operations in the same order, only
 * the addresses differ (avx512 uses the avx2 form, whose bits its batch function equals).
 */
u32 vexfs_dist_split_scalar(u32 metric, const float *q, const float *v, const float *w, u32 split,
			    u32 dim);
u32 vexfs_dist_split_sse2(u32 metric, const float *q, const float *v, const float *w, u32 split,
			  u32 dim);
u32 vexfs_dist_split_avx2(u32 metric, const float *q, const float *v, const float *w, u32 split,
			  u32 dim);

/*
 * The batch functions above over vectors of which some cross a block: vecs[i] alone when
 * tails[i] is NULL, else the two parts vecs[i] (splits[i] floats) and tails[i] (as
 * vexfs_dist_split_*). out[i] is what the batch function gives for the contiguous vector; a
 * split that is not a multiple of 8 in 1 .. dim - 1 gives VEXFS_DIST_NAN_BITS (nothing read).
 */
void vexfs_dist_mixed_scalar(u32 metric, const float *q, const float *const *vecs,
			     const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out);
void vexfs_dist_mixed_sse2(u32 metric, const float *q, const float *const *vecs,
			   const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out);
void vexfs_dist_mixed_avx2(u32 metric, const float *q, const float *const *vecs,
			   const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out);
void vexfs_dist_mixed_avx512(u32 metric, const float *q, const float *const *vecs,
			     const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out);

/*
 * SQ8 code distances (core::sq8): q and every vecs[i] hold len signed bytes, len a multiple of
 * 32 (the code stride; the padding past the dimension is zero in both). out[i] receives the
 * order-preserving key of the distance between the codes, exact integers (so every
 * implementation gives the same keys):
 *   l2      sum (q[i] - v[i])^2
 *   ip      2^31 - sum q[i] v[i]
 *   cosine  key_from_bits(1 - dot / (sqrt(qq) * sqrt(vv))) in f32 from the exact integer sums
 *           dot, qq = |q|^2 and vv = |v|^2 (1.0 when qq or vv is 0)
 *   other   0xffffffff
 * len <= 4096 keeps every sum inside 31 bits. Each needs the FPU in the kernel (vector
 * registers; the cosine finish is float); the avx2 one also needs AVX2, the avx512 one what
 * vexfs_dist_avx512 needs.
 */
void vexfs_code_dist_scalar(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			    u32 *out);
void vexfs_code_dist_sse2(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			  u32 *out);
void vexfs_code_dist_avx2(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			  u32 *out);
void vexfs_code_dist_avx512(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			    u32 *out);

/*
 * PQ (core::pq; Jegou et al., TPAMI 2011): one implementation (distance_pq.c) for every
 * CPU, so the same bits in the kernel and the tools. Each needs the FPU in the kernel.
 *
 * vexfs_pq_table: for the dsub floats q (one sub-vector of a query or of a vector to encode)
 * and n centroids of dsub floats each, contiguous at cents (centroid k at cents + k * dsub): prim[k] = bits of |q - c|^2 (l2) or of q.c
 * (cosine, ip); norm[k] = bits of |c|^2 (cosine, ip) or 0 (l2). Returns the bits of |q|^2.
 *
 * vexfs_pq_dist: table holds 2 * m * 256 + m words: prim of sub-quantiser j, centroid c at
 * j * 256 + c, norm at m * 256 + j * 256 + c, and |q_j|^2 at 2 * m * 256 + j. codes[k] holds m
 * bytes (a centroid per sub-quantiser). out[k] = key (core::distance::key_from_bits) of
 *   l2      sum_j prim[j][c_j]                               (summed in j order, float)
 *   ip      1 - sum_j prim[j][c_j]
 *   cosine  1 - dot / (sqrt(sum_j qq_j) sqrt(sum_j norm[j][c_j]))   (as vexfs_cosine_bits)
 *   other   0xffffffff
 */
u32 vexfs_pq_table(u32 metric, const float *q, const float *cents, u32 n, u32 dsub, u32 *prim,
		   u32 *norm);
void vexfs_pq_dist(u32 metric, const u32 *table, u32 m, const u8 *const *codes, u32 n, u32 *out);

/*
 * Integer only, callable without the FPU: 0 if all dim floats (given as their bit patterns)
 * are finite, else the index + 1 of the first NaN or infinity.
 */
static inline u32 vexfs_first_nonfinite(const u32 *bits, u32 dim)
{
	u32 i;

	for (i = 0; i < dim; i++)
		if ((bits[i] & 0x7f800000u) == 0x7f800000u)
			return i + 1;
	return 0;
}

#ifdef VEXFS_DISTANCE_IMPL
/* Float helpers shared by the implementation files (all built with FPU flags). */

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
/* sqrtss: correctly rounded like sqrtf, but never a libm call (errno) in either build. */
static inline float vexfs_sqrtf(float x)
{
	return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x)));
}
#else
static inline float vexfs_sqrtf(float x)
{
	return __builtin_sqrtf(x);
}
#endif

static inline u32 vexfs_f32_bits(float x)
{
	union {
		float f;
		u32 u;
	} c;

	c.f = x;
	/* Any NaN becomes the one positive quiet NaN: it sorts last and is the same everywhere. */
	if ((c.u & 0x7fffffffu) > 0x7f800000u)
		return VEXFS_DIST_NAN_BITS;
	return c.u;
}

/* 1 - dot / (qnorm * sqrt(vv)), where qnorm = sqrt(|q|^2) was computed once per batch. */
static inline u32 vexfs_cosine_bits(float dot, float qnorm, float vv)
{
	float denom;

	if (qnorm == 0.0f || vv == 0.0f)
		return vexfs_f32_bits(1.0f);
	denom = qnorm * vexfs_sqrtf(vv);
	if (denom == 0.0f)
		return vexfs_f32_bits(1.0f);
	return vexfs_f32_bits(1.0f - dot / denom);
}
/* Sums over i = 0 .. dim - 1 in order, one accumulator, multiply and add separately rounded:
 * the scalar reference (distance_scalar.c) and every PQ sum (distance_pq.c). */
static inline float vexfs_l2_in_order(const float *q, const float *v, u32 dim)
{
	float acc = 0.0f;
	u32 i;

	for (i = 0; i < dim; i++) {
		float d = q[i] - v[i];

		acc = acc + d * d;
	}
	return acc;
}

static inline float vexfs_dot_in_order(const float *q, const float *v, u32 dim)
{
	float acc = 0.0f;
	u32 i;

	for (i = 0; i < dim; i++)
		acc = acc + q[i] * v[i];
	return acc;
}

/* core::distance::key_from_bits. */
static inline u32 vexfs_key_from_bits(u32 bits)
{
	return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/* The key of a code distance from its exact sums (see vexfs_code_dist_scalar). */
static inline u32 vexfs_code_key(u32 metric, int l2, int dot, int qq, int vv)
{
	float denom;

	switch (metric) {
	case VEXFS_METRIC_L2:
		return (u32)l2;
	case VEXFS_METRIC_IP:
		return 0x80000000u - (u32)dot;
	case VEXFS_METRIC_COSINE:
		if (qq == 0 || vv == 0)
			return vexfs_key_from_bits(vexfs_f32_bits(1.0f));
		denom = vexfs_sqrtf((float)qq) * vexfs_sqrtf((float)vv);
		if (denom == 0.0f)
			return vexfs_key_from_bits(vexfs_f32_bits(1.0f));
		return vexfs_key_from_bits(vexfs_f32_bits(1.0f - (float)dot / denom));
	default:
		return 0xffffffffu;
	}
}

/* Asks for the cache lines of the n floats at p (a hint: never faults, reads nothing). */
static inline void vexfs_prefetch_floats(const float *p, u32 n)
{
	u32 i;

	for (i = 0; i < n; i += 16)
		__builtin_prefetch(p + i);
}

/*
 * A vector of a mixed batch (vexfs_dist_mixed_avx2/avx512) as its parts: float i at base + i,
 * base v below sp and w_base from sp on, w_base being the second part's address less sp floats
 * (an address only: never dereferenced below sp). A whole vector has sp = dim, w_base = v.
 */
struct vexfs_parts {
	const float *v;
	uintptr_t w_base;
	u32 sp;
};

/* The address of float i of p (v or w_base by a mask, not a branch). */
static inline const float *vexfs_part_at(const struct vexfs_parts *p, u32 i)
{
	uintptr_t second = (uintptr_t)0 - (uintptr_t)(i >= p->sp);
	uintptr_t base = (uintptr_t)p->v ^ (((uintptr_t)p->v ^ p->w_base) & second);

	return (const float *)(base + (uintptr_t)i * sizeof(float));
}

/* The parts of vector k of a mixed batch. */
static inline void vexfs_parts_of(struct vexfs_parts *p, const float *const *vecs,
				  const float *const *tails, const u32 *splits, u32 k, u32 dim)
{
	p->v = vecs[k];
	p->sp = tails[k] ? splits[k] : dim;
	p->w_base = tails[k] ? (uintptr_t)tails[k] - (uintptr_t)splits[k] * sizeof(float) :
			       (uintptr_t)vecs[k];
}

/* Whole vectors vexfs_dist_whole gathers per call of the batch function. */
#define VEXFS_MIXED_RUN 32

typedef void (*vexfs_dist_batch_fn)(u32, const float *, const float *const *, u32, u32, u32 *);
typedef u32 (*vexfs_dist_split_fn)(u32, const float *, const float *, const float *, u32, u32);

/* Whether vexfs_dist_mixed_* may read split vector k (see distance.h's declarations). */
static inline int vexfs_split_ok(const u32 *splits, u32 k, u32 dim)
{
	return splits[k] != 0 && splits[k] % 8 == 0 && splits[k] < dim;
}

/* The first half of vexfs_dist_mixed_*: the lines of the split vectors asked for, then the
 * whole vectors (tails[k] NULL) gathered into batches for `batch` (its result depends neither
 * on n nor on a vector's place in the batch, so its multi-vector passes stay full) while they
 * arrive. Returns whether any vector is split. */
static inline int vexfs_dist_whole(vexfs_dist_batch_fn batch, u32 metric, const float *q,
				   const float *const *vecs, const float *const *tails,
				   const u32 *splits, u32 n, u32 dim, u32 *out)
{
	const float *whole[VEXFS_MIXED_RUN];
	u32 at[VEXFS_MIXED_RUN], res[VEXFS_MIXED_RUN];
	u32 k, j, m = 0;
	int any = 0;

	for (k = 0; k < n; k++)
		if (tails[k] && vexfs_split_ok(splits, k, dim)) {
			vexfs_prefetch_floats(vecs[k], splits[k]);
			vexfs_prefetch_floats(tails[k], dim - splits[k]);
		}
	for (k = 0; k < n; k++) {
		if (tails[k]) {
			any = 1;
			continue;
		}
		whole[m] = vecs[k];
		at[m++] = k;
		if (m == VEXFS_MIXED_RUN) {
			batch(metric, q, whole, m, dim, res);
			for (j = 0; j < m; j++)
				out[at[j]] = res[j];
			m = 0;
		}
	}
	if (m) {
		batch(metric, q, whole, m, dim, res);
		for (j = 0; j < m; j++)
			out[at[j]] = res[j];
	}
	return any;
}

/* The body of vexfs_dist_mixed_* but avx512's: the whole vectors by `batch`, then each split
 * one by `split_fn` (a split the loads could straddle: NaN bits, never read). */
static inline void vexfs_dist_mixed(vexfs_dist_batch_fn batch, vexfs_dist_split_fn split_fn,
				    u32 metric, const float *q, const float *const *vecs,
				    const float *const *tails, const u32 *splits, u32 n, u32 dim,
				    u32 *out)
{
	u32 k;

	if (!vexfs_dist_whole(batch, metric, q, vecs, tails, splits, n, dim, out))
		return;
	for (k = 0; k < n; k++) {
		if (!tails[k])
			continue;
		if (vexfs_split_ok(splits, k, dim))
			out[k] = split_fn(metric, q, vecs[k], tails[k], splits[k], dim);
		else
			out[k] = VEXFS_DIST_NAN_BITS;
	}
}
#endif /* VEXFS_DISTANCE_IMPL */

#endif /* VEXFS_DISTANCE_H */
