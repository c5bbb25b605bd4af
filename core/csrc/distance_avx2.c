// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs distance kernels, AVX2 + FMA (built with -mavx2 -mfma; called only when the CPU has
 * both and the OS saves YMM state): 4 accumulators of 8 lanes, fused multiply-add.
 *
 * Fixed reduction order for every dim (never dependent on addresses, n or batch position):
 *   1. 32-float blocks: floats 0-7, 8-15, 16-23, 24-31 of a block fma into a0, a1, a2, a3;
 *   2. remaining whole 8-float blocks, each into a0;
 *   3. the last dim % 8 floats, masked load (zero padded, reads nothing past the end), into a1
 *      (the zero lanes add +0 and change nothing);
 *   4. s = (a0 + a1) + (a2 + a3); t = low half + high half; then (t0 + t2) + (t1 + t3).
 * For l2 the difference q - v is rounded, then fma(d, d, acc): one rounding per element less
 * than the scalar and SSE2 code, so results differ from those in the last bits (tests bound it).
 * l2 and ip take the vectors two at a time (l2_avx2_x2, dot_avx2_x2) with the same per-vector
 * arithmetic; an odd last vector goes through the single-vector function.
 */
#define VEXFS_DISTANCE_IMPL
#include "distance.h"
#include <immintrin.h>

/* mask_tab + 8 - r: r lanes of all-ones, then zeros (the maskload mask for r < 8 floats). */
static const int mask_tab[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };

static inline __m256i tail_mask(u32 r)
{
	return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - r));
}

static inline float hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
	__m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
	__m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));

	t = _mm_add_ps(t, _mm_movehl_ps(t, t));			/* t0+t2, t1+t3 */
	t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 0x55));		/* (t0+t2)+(t1+t3) */
	return _mm_cvtss_f32(t);
}

/*
 * While one vector is summed, its successor in the batch is prefetched, two 64-byte lines per
 * 32-float block (HNSW neighbours are scattered in memory). The last vector "prefetches" itself.
 */
static inline void prefetch_lines(const float *next, u32 i)
{
	_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
	_mm_prefetch((const char *)(next + i + 16), _MM_HINT_T0);
}

static float l2_avx2(const float *q, const float *v, u32 dim, const float *next)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 d0, d1, d2, d3;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i));
		d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(v + i + 8));
		d2 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 16), _mm256_loadu_ps(v + i + 16));
		d3 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 24), _mm256_loadu_ps(v + i + 24));
		a0 = _mm256_fmadd_ps(d0, d0, a0);
		a1 = _mm256_fmadd_ps(d1, d1, a1);
		a2 = _mm256_fmadd_ps(d2, d2, a2);
		a3 = _mm256_fmadd_ps(d3, d3, a3);
	}
	for (; i + 8 <= dim; i += 8) {
		d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i));
		a0 = _mm256_fmadd_ps(d0, d0, a0);
	}
	m = tail_mask(dim - i);
	d1 = _mm256_sub_ps(_mm256_maskload_ps(q + i, m), _mm256_maskload_ps(v + i, m));
	a1 = _mm256_fmadd_ps(d1, d1, a1);
	return hsum8(a0, a1, a2, a3);
}

static float dot_avx2(const float *q, const float *v, u32 dim, const float *next)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i), a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(v + i + 8), a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), _mm256_loadu_ps(v + i + 16), a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), _mm256_loadu_ps(v + i + 24), a3);
	}
	for (; i + 8 <= dim; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i), a0);
	m = tail_mask(dim - i);
	a1 = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, m), _mm256_maskload_ps(v + i, m), a1);
	return hsum8(a0, a1, a2, a3);
}

/*
 * Two vectors per pass, sharing the loads of q (load ports are the limit: ~20% faster than
 * two single passes). Each vector gets exactly the arithmetic of l2_avx2()/dot_avx2() (its
 * own four accumulators, same blocks, same tail, same final sum), so its bits do not depend
 * on whether it was paired.
 */
static void l2_avx2_x2(const float *q, const float *v, const float *w, u32 dim,
		       const float *next_v, const float *next_w, float *dv, float *dw)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 q0, q1, q2, q3, d;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next_v, i);
		prefetch_lines(next_w, i);
		q0 = _mm256_loadu_ps(q + i);
		q1 = _mm256_loadu_ps(q + i + 8);
		q2 = _mm256_loadu_ps(q + i + 16);
		q3 = _mm256_loadu_ps(q + i + 24);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(v + i));
		a0 = _mm256_fmadd_ps(d, d, a0);
		d = _mm256_sub_ps(q1, _mm256_loadu_ps(v + i + 8));
		a1 = _mm256_fmadd_ps(d, d, a1);
		d = _mm256_sub_ps(q2, _mm256_loadu_ps(v + i + 16));
		a2 = _mm256_fmadd_ps(d, d, a2);
		d = _mm256_sub_ps(q3, _mm256_loadu_ps(v + i + 24));
		a3 = _mm256_fmadd_ps(d, d, a3);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(w + i));
		b0 = _mm256_fmadd_ps(d, d, b0);
		d = _mm256_sub_ps(q1, _mm256_loadu_ps(w + i + 8));
		b1 = _mm256_fmadd_ps(d, d, b1);
		d = _mm256_sub_ps(q2, _mm256_loadu_ps(w + i + 16));
		b2 = _mm256_fmadd_ps(d, d, b2);
		d = _mm256_sub_ps(q3, _mm256_loadu_ps(w + i + 24));
		b3 = _mm256_fmadd_ps(d, d, b3);
	}
	for (; i + 8 <= dim; i += 8) {
		q0 = _mm256_loadu_ps(q + i);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(v + i));
		a0 = _mm256_fmadd_ps(d, d, a0);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(w + i));
		b0 = _mm256_fmadd_ps(d, d, b0);
	}
	m = tail_mask(dim - i);
	q1 = _mm256_maskload_ps(q + i, m);
	d = _mm256_sub_ps(q1, _mm256_maskload_ps(v + i, m));
	a1 = _mm256_fmadd_ps(d, d, a1);
	d = _mm256_sub_ps(q1, _mm256_maskload_ps(w + i, m));
	b1 = _mm256_fmadd_ps(d, d, b1);
	*dv = hsum8(a0, a1, a2, a3);
	*dw = hsum8(b0, b1, b2, b3);
}

static void dot_avx2_x2(const float *q, const float *v, const float *w, u32 dim,
			const float *next_v, const float *next_w, float *dv, float *dw)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 q0, q1, q2, q3;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next_v, i);
		prefetch_lines(next_w, i);
		q0 = _mm256_loadu_ps(q + i);
		q1 = _mm256_loadu_ps(q + i + 8);
		q2 = _mm256_loadu_ps(q + i + 16);
		q3 = _mm256_loadu_ps(q + i + 24);
		a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(v + i), a0);
		a1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(v + i + 8), a1);
		a2 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(v + i + 16), a2);
		a3 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(v + i + 24), a3);
		b0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(w + i), b0);
		b1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(w + i + 8), b1);
		b2 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(w + i + 16), b2);
		b3 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(w + i + 24), b3);
	}
	for (; i + 8 <= dim; i += 8) {
		q0 = _mm256_loadu_ps(q + i);
		a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(v + i), a0);
		b0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(w + i), b0);
	}
	m = tail_mask(dim - i);
	q1 = _mm256_maskload_ps(q + i, m);
	a1 = _mm256_fmadd_ps(q1, _mm256_maskload_ps(v + i, m), a1);
	b1 = _mm256_fmadd_ps(q1, _mm256_maskload_ps(w + i, m), b1);
	*dv = hsum8(a0, a1, a2, a3);
	*dw = hsum8(b0, b1, b2, b3);
}

/* q.v and v.v in one pass over v, each with the same order as dot_avx2(). */
static void dot_norm_avx2(const float *q, const float *v, u32 dim, const float *next,
			  float *dot, float *vv)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 v0, v1, v2, v3;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		v0 = _mm256_loadu_ps(v + i);
		v1 = _mm256_loadu_ps(v + i + 8);
		v2 = _mm256_loadu_ps(v + i + 16);
		v3 = _mm256_loadu_ps(v + i + 24);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), v0, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), v1, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), v2, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), v3, a3);
		b0 = _mm256_fmadd_ps(v0, v0, b0);
		b1 = _mm256_fmadd_ps(v1, v1, b1);
		b2 = _mm256_fmadd_ps(v2, v2, b2);
		b3 = _mm256_fmadd_ps(v3, v3, b3);
	}
	for (; i + 8 <= dim; i += 8) {
		v0 = _mm256_loadu_ps(v + i);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), v0, a0);
		b0 = _mm256_fmadd_ps(v0, v0, b0);
	}
	m = tail_mask(dim - i);
	v1 = _mm256_maskload_ps(v + i, m);
	a1 = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, m), v1, a1);
	b1 = _mm256_fmadd_ps(v1, v1, b1);
	*dot = hsum8(a0, a1, a2, a3);
	*vv = hsum8(b0, b1, b2, b3);
}

/* Vector k + 2 of the batch, or the last one: what to prefetch while summing vector k. */
static inline const float *ahead(const float *const *vecs, u32 n, u32 k)
{
	return vecs[k + 2 < n ? k + 2 : n - 1];
}

void vexfs_dist_avx2(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		     u32 *out)
{
	float qnorm, dot, vv, d0, d1;
	u32 k;

	switch (metric) {
	case VEXFS_METRIC_L2:
		for (k = 0; k + 2 <= n; k += 2) {
			l2_avx2_x2(q, vecs[k], vecs[k + 1], dim, ahead(vecs, n, k),
				   ahead(vecs, n, k + 1), &d0, &d1);
			out[k] = vexfs_f32_bits(d0);
			out[k + 1] = vexfs_f32_bits(d1);
		}
		if (k < n)
			out[k] = vexfs_f32_bits(l2_avx2(q, vecs[k], dim, vecs[k]));
		break;
	case VEXFS_METRIC_COSINE:
		qnorm = vexfs_sqrtf(dot_avx2(q, q, dim, q));
		for (k = 0; k < n; k++) {
			dot_norm_avx2(q, vecs[k], dim, vecs[k + 1 < n ? k + 1 : k], &dot, &vv);
			out[k] = vexfs_cosine_bits(dot, qnorm, vv);
		}
		break;
	case VEXFS_METRIC_IP:
		for (k = 0; k + 2 <= n; k += 2) {
			dot_avx2_x2(q, vecs[k], vecs[k + 1], dim, ahead(vecs, n, k),
				    ahead(vecs, n, k + 1), &d0, &d1);
			out[k] = vexfs_f32_bits(1.0f - d0);
			out[k + 1] = vexfs_f32_bits(1.0f - d1);
		}
		if (k < n)
			out[k] = vexfs_f32_bits(1.0f - dot_avx2(q, vecs[k], dim, vecs[k]));
		break;
	default:
		for (k = 0; k < n; k++)
			out[k] = VEXFS_DIST_NAN_BITS;
		break;
	}
}

/*
 * The forms of l2_avx2, dot_avx2 and dot_norm_avx2 for a vector that crosses a block: floats
 * 0 .. split - 1 at v, the rest at w (split a multiple of 8: every 8-float load, the masked
 * tail too, lies in one part). The same operations in the same order: the same bits as for the
 * whole vector, here and in the avx512 file (whose results equal these).
 */
#define AT(i) ((i) < split ? v + (i) : w + ((i) - split))

static float l2_avx2_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 d0, d1, d2, d3;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(AT(i)));
		d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(AT(i + 8)));
		d2 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 16), _mm256_loadu_ps(AT(i + 16)));
		d3 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 24), _mm256_loadu_ps(AT(i + 24)));
		a0 = _mm256_fmadd_ps(d0, d0, a0);
		a1 = _mm256_fmadd_ps(d1, d1, a1);
		a2 = _mm256_fmadd_ps(d2, d2, a2);
		a3 = _mm256_fmadd_ps(d3, d3, a3);
	}
	for (; i + 8 <= dim; i += 8) {
		d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(AT(i)));
		a0 = _mm256_fmadd_ps(d0, d0, a0);
	}
	m = tail_mask(dim - i);
	d1 = _mm256_sub_ps(_mm256_maskload_ps(q + i, m), _mm256_maskload_ps(AT(i), m));
	a1 = _mm256_fmadd_ps(d1, d1, a1);
	return hsum8(a0, a1, a2, a3);
}

static float dot_avx2_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(AT(i)), a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(AT(i + 8)), a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), _mm256_loadu_ps(AT(i + 16)), a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), _mm256_loadu_ps(AT(i + 24)), a3);
	}
	for (; i + 8 <= dim; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(AT(i)), a0);
	m = tail_mask(dim - i);
	a1 = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, m), _mm256_maskload_ps(AT(i), m), a1);
	return hsum8(a0, a1, a2, a3);
}

static void dot_norm_avx2_split(const float *q, const float *v, const float *w, u32 split,
				u32 dim, float *dot, float *vv)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 v0, v1, v2, v3;
	__m256i m;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		v0 = _mm256_loadu_ps(AT(i));
		v1 = _mm256_loadu_ps(AT(i + 8));
		v2 = _mm256_loadu_ps(AT(i + 16));
		v3 = _mm256_loadu_ps(AT(i + 24));
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), v0, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), v1, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), v2, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), v3, a3);
		b0 = _mm256_fmadd_ps(v0, v0, b0);
		b1 = _mm256_fmadd_ps(v1, v1, b1);
		b2 = _mm256_fmadd_ps(v2, v2, b2);
		b3 = _mm256_fmadd_ps(v3, v3, b3);
	}
	for (; i + 8 <= dim; i += 8) {
		v0 = _mm256_loadu_ps(AT(i));
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), v0, a0);
		b0 = _mm256_fmadd_ps(v0, v0, b0);
	}
	m = tail_mask(dim - i);
	v1 = _mm256_maskload_ps(AT(i), m);
	a1 = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, m), v1, a1);
	b1 = _mm256_fmadd_ps(v1, v1, b1);
	*dot = hsum8(a0, a1, a2, a3);
	*vv = hsum8(b0, b1, b2, b3);
}

#undef AT

u32 vexfs_dist_split_avx2(u32 metric, const float *q, const float *v, const float *w, u32 split,
			  u32 dim)
{
	float dot, vv;

	switch (metric) {
	case VEXFS_METRIC_L2:
		return vexfs_f32_bits(l2_avx2_split(q, v, w, split, dim));
	case VEXFS_METRIC_COSINE:
		dot_norm_avx2_split(q, v, w, split, dim, &dot, &vv);
		return vexfs_cosine_bits(dot, vexfs_sqrtf(dot_avx2(q, q, dim, q)), vv);
	case VEXFS_METRIC_IP:
		return vexfs_f32_bits(1.0f - dot_avx2_split(q, v, w, split, dim));
	default:
		return VEXFS_DIST_NAN_BITS;
	}
}

/*
 * Batches that mix whole vectors and vectors crossing a block (vexfs_dist_mixed_avx2), l2 and
 * ip: the vectors in batch order, two per pass as vexfs_dist_avx2 takes them, with the same
 * arithmetic (so the bits of the whole vector) and the next two prefetched meanwhile, each as
 * its parts (struct vexfs_parts in distance.h). In the 32-float blocks the base moves at the block where
 * sp falls (a select per vector and block, no branch), which needs sp to be a multiple of 32
 * (always at 384-d and 768-d); the 8-float rest and the tail select per load. A vector split
 * elsewhere goes alone through vexfs_dist_split_avx2.
 */
/* l2_avx2_x2 over the parts of p[0] and p[1]; next[0] and next[1] prefetched. */
static void l2_avx2_x2p(const float *q, const struct vexfs_parts *p,
			const struct vexfs_parts *next, u32 dim, float *dv, float *dw)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 q0, q1, q2, q3, d;
	__m256i m;
	uintptr_t bv = (uintptr_t)p[0].v, bw = (uintptr_t)p[1].v;
	uintptr_t nv = (uintptr_t)next[0].v, nw = (uintptr_t)next[1].v;
	const float *v, *w;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		bv = i == p[0].sp ? p[0].w_base : bv;
		bw = i == p[1].sp ? p[1].w_base : bw;
		nv = i == next[0].sp ? next[0].w_base : nv;
		nw = i == next[1].sp ? next[1].w_base : nw;
		v = (const float *)bv + i;
		w = (const float *)bw + i;
		prefetch_lines((const float *)nv, i);
		prefetch_lines((const float *)nw, i);
		q0 = _mm256_loadu_ps(q + i);
		q1 = _mm256_loadu_ps(q + i + 8);
		q2 = _mm256_loadu_ps(q + i + 16);
		q3 = _mm256_loadu_ps(q + i + 24);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(v));
		a0 = _mm256_fmadd_ps(d, d, a0);
		d = _mm256_sub_ps(q1, _mm256_loadu_ps(v + 8));
		a1 = _mm256_fmadd_ps(d, d, a1);
		d = _mm256_sub_ps(q2, _mm256_loadu_ps(v + 16));
		a2 = _mm256_fmadd_ps(d, d, a2);
		d = _mm256_sub_ps(q3, _mm256_loadu_ps(v + 24));
		a3 = _mm256_fmadd_ps(d, d, a3);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(w));
		b0 = _mm256_fmadd_ps(d, d, b0);
		d = _mm256_sub_ps(q1, _mm256_loadu_ps(w + 8));
		b1 = _mm256_fmadd_ps(d, d, b1);
		d = _mm256_sub_ps(q2, _mm256_loadu_ps(w + 16));
		b2 = _mm256_fmadd_ps(d, d, b2);
		d = _mm256_sub_ps(q3, _mm256_loadu_ps(w + 24));
		b3 = _mm256_fmadd_ps(d, d, b3);
	}
	for (; i + 8 <= dim; i += 8) {
		q0 = _mm256_loadu_ps(q + i);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(vexfs_part_at(&p[0], i)));
		a0 = _mm256_fmadd_ps(d, d, a0);
		d = _mm256_sub_ps(q0, _mm256_loadu_ps(vexfs_part_at(&p[1], i)));
		b0 = _mm256_fmadd_ps(d, d, b0);
	}
	m = tail_mask(dim - i);
	q1 = _mm256_maskload_ps(q + i, m);
	d = _mm256_sub_ps(q1, _mm256_maskload_ps(vexfs_part_at(&p[0], i), m));
	a1 = _mm256_fmadd_ps(d, d, a1);
	d = _mm256_sub_ps(q1, _mm256_maskload_ps(vexfs_part_at(&p[1], i), m));
	b1 = _mm256_fmadd_ps(d, d, b1);
	*dv = hsum8(a0, a1, a2, a3);
	*dw = hsum8(b0, b1, b2, b3);
}

/* dot_avx2_x2 over parts, as l2_avx2_x2p. */
static void dot_avx2_x2p(const float *q, const struct vexfs_parts *p,
			 const struct vexfs_parts *next, u32 dim, float *dv, float *dw)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	__m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
	__m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
	__m256 q0, q1, q2, q3;
	__m256i m;
	uintptr_t bv = (uintptr_t)p[0].v, bw = (uintptr_t)p[1].v;
	uintptr_t nv = (uintptr_t)next[0].v, nw = (uintptr_t)next[1].v;
	const float *v, *w;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		bv = i == p[0].sp ? p[0].w_base : bv;
		bw = i == p[1].sp ? p[1].w_base : bw;
		nv = i == next[0].sp ? next[0].w_base : nv;
		nw = i == next[1].sp ? next[1].w_base : nw;
		v = (const float *)bv + i;
		w = (const float *)bw + i;
		prefetch_lines((const float *)nv, i);
		prefetch_lines((const float *)nw, i);
		q0 = _mm256_loadu_ps(q + i);
		q1 = _mm256_loadu_ps(q + i + 8);
		q2 = _mm256_loadu_ps(q + i + 16);
		q3 = _mm256_loadu_ps(q + i + 24);
		a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(v), a0);
		a1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(v + 8), a1);
		a2 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(v + 16), a2);
		a3 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(v + 24), a3);
		b0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(w), b0);
		b1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(w + 8), b1);
		b2 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(w + 16), b2);
		b3 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(w + 24), b3);
	}
	for (; i + 8 <= dim; i += 8) {
		q0 = _mm256_loadu_ps(q + i);
		a0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vexfs_part_at(&p[0], i)), a0);
		b0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vexfs_part_at(&p[1], i)), b0);
	}
	m = tail_mask(dim - i);
	q1 = _mm256_maskload_ps(q + i, m);
	a1 = _mm256_fmadd_ps(q1, _mm256_maskload_ps(vexfs_part_at(&p[0], i), m), a1);
	b1 = _mm256_fmadd_ps(q1, _mm256_maskload_ps(vexfs_part_at(&p[1], i), m), b1);
	*dv = hsum8(a0, a1, a2, a3);
	*dw = hsum8(b0, b1, b2, b3);
}

/* One pass of two over p[0] and p[1] (next prefetched), results to out[at[0]], out[at[1]]. */
static void x2p(u32 metric, const float *q, const struct vexfs_parts *p,
		const struct vexfs_parts *next, u32 dim, const u32 *at, u32 *out)
{
	float d0, d1;

	if (metric == VEXFS_METRIC_L2) {
		l2_avx2_x2p(q, p, next, dim, &d0, &d1);
	} else {
		dot_avx2_x2p(q, p, next, dim, &d0, &d1);
		d0 = 1.0f - d0;
		d1 = 1.0f - d1;
	}
	out[at[0]] = vexfs_f32_bits(d0);
	out[at[1]] = vexfs_f32_bits(d1);
}

void vexfs_dist_mixed_avx2(u32 metric, const float *q, const float *const *vecs,
			   const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	struct vexfs_parts p[4];
	u32 at[4], k, m = 0;

	if (metric != VEXFS_METRIC_L2 && metric != VEXFS_METRIC_IP) {
		vexfs_dist_mixed(vexfs_dist_avx2, vexfs_dist_split_avx2, metric, q, vecs, tails,
				 splits, n, dim, out);
		return;
	}
	/* Through a window of four: when full, the first two are summed with the last two
	 * prefetched, and those move up. */
	for (k = 0; k < n; k++) {
		if (tails[k] && !vexfs_split_ok(splits, k, dim)) {
			out[k] = VEXFS_DIST_NAN_BITS;
			continue;
		}
		if (tails[k] && splits[k] % 32) {
			out[k] = vexfs_dist_split_avx2(metric, q, vecs[k], tails[k], splits[k], dim);
			continue;
		}
		vexfs_parts_of(&p[m], vecs, tails, splits, k, dim);
		at[m++] = k;
		if (m < 4)
			continue;
		x2p(metric, q, p, p + 2, dim, at, out);
		p[0] = p[2];
		p[1] = p[3];
		at[0] = at[2];
		at[1] = at[3];
		m = 2;
	}
	/* The last two or three: a pass of two (the third prefetched), then a pass of the last
	 * one with itself (its bits are its own). */
	if (m >= 2) {
		struct vexfs_parts nx[2] = { p[m - 1], p[m - 1] };

		x2p(metric, q, p, nx, dim, at, out);
		if (m == 3) {
			p[0] = p[2];
			at[0] = at[2];
		}
		m -= 2;
	}
	if (m == 1) {
		p[1] = p[0];
		at[1] = at[0];
		x2p(metric, q, p, p, dim, at, out);
	}
}

/*
 * SQ8 code distances, 32 bytes at a time: each 16-byte half sign-extended to 16-bit lanes
 * (vpmovsxbw), vpmaddwd into 32-bit sums; the vector after this one prefetched line by line.
 * Integer sums are exact, so the keys equal the scalar ones whatever the order.
 */
static inline int hsum8_epi32(__m256i s)
{
	__m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));

	t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
	t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
	return _mm_cvtsi128_si32(t);
}

static int code_l2_avx2(const s8 *q, const s8 *v, u32 len, const s8 *next)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
	__m256i x, y, d0, d1;
	u32 i;

	for (i = 0; i + 32 <= len; i += 32) {
		if ((i & 63) == 0)
			_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
		x = _mm256_loadu_si256((const __m256i *)(q + i));
		y = _mm256_loadu_si256((const __m256i *)(v + i));
		d0 = _mm256_sub_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)),
				      _mm256_cvtepi8_epi16(_mm256_castsi256_si128(y)));
		d1 = _mm256_sub_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)),
				      _mm256_cvtepi8_epi16(_mm256_extracti128_si256(y, 1)));
		a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(d0, d0));
		a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(d1, d1));
	}
	return hsum8_epi32(_mm256_add_epi32(a0, a1));
}

static void code_dot_avx2(const s8 *q, const s8 *v, u32 len, const s8 *next, int *dot, int *vv)
{
	__m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
	__m256i x0, x1, y0, y1, x, y;
	u32 i;

	for (i = 0; i + 32 <= len; i += 32) {
		if ((i & 63) == 0)
			_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
		x = _mm256_loadu_si256((const __m256i *)(q + i));
		y = _mm256_loadu_si256((const __m256i *)(v + i));
		x0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x));
		x1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1));
		y0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(y));
		y1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(y, 1));
		a = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_madd_epi16(x0, y0), _mm256_madd_epi16(x1, y1)));
		b = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_madd_epi16(y0, y0), _mm256_madd_epi16(y1, y1)));
	}
	*dot = hsum8_epi32(a);
	*vv = hsum8_epi32(b);
}

void vexfs_code_dist_avx2(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			  u32 *out)
{
	const s8 *next;
	int dot, vv, qq, unused;
	u32 k;

	code_dot_avx2(q, q, len, q, &unused, &qq);
	for (k = 0; k < n; k++) {
		next = vecs[k + 1 < n ? k + 1 : k];
		if (metric == VEXFS_METRIC_L2) {
			out[k] = (u32)code_l2_avx2(q, vecs[k], len, next);
		} else {
			code_dot_avx2(q, vecs[k], len, next, &dot, &vv);
			out[k] = vexfs_code_key(metric, 0, dot, qq, vv);
		}
	}
}
