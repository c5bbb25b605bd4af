// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs distance kernels, SSE2 (every x86_64 CPU): 4 accumulators of 4 lanes, no FMA.
 *
 * Fixed reduction order for every dim (never dependent on addresses, n or batch position):
 *   1. 16-float blocks: block j adds lanes into a0, a1, a2, a3 (floats 0-3, 4-7, 8-11, 12-15);
 *   2. remaining whole 4-float blocks, each into a0;
 *   3. the last dim % 4 floats, zero padded to 4 lanes, into a1 (adding +0 changes nothing);
 *   4. s = (a0 + a1) + (a2 + a3); then (s0 + s2) + (s1 + s3).
 */
#define VEXFS_DISTANCE_IMPL
#include "distance.h"
#include <emmintrin.h>

/* Floats p[0..r) with r < 4, zero padded; reads nothing past p + r. */
static inline __m128 load_tail(const float *p, u32 r)
{
	switch (r) {
	case 3:
		return _mm_setr_ps(p[0], p[1], p[2], 0.0f);
	case 2:
		return _mm_setr_ps(p[0], p[1], 0.0f, 0.0f);
	case 1:
		return _mm_setr_ps(p[0], 0.0f, 0.0f, 0.0f);
	default:
		return _mm_setzero_ps();
	}
}

static inline float hsum4(__m128 a0, __m128 a1, __m128 a2, __m128 a3)
{
	__m128 s = _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));			/* s0+s2, s1+s3 */
	s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));		/* (s0+s2)+(s1+s3) */
	return _mm_cvtss_f32(s);
}

/*
 * While one vector is summed, its successor in the batch is prefetched, one 64-byte line per
 * 16-float block (HNSW neighbours are scattered in memory). The last vector "prefetches" itself.
 */
static inline void prefetch_line(const float *next, u32 i)
{
	_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
}

static float l2_sse2(const float *q, const float *v, u32 dim, const float *next)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	__m128 d0, d1, d2, d3;
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		prefetch_line(next, i);
		d0 = _mm_sub_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(v + i));
		d1 = _mm_sub_ps(_mm_loadu_ps(q + i + 4), _mm_loadu_ps(v + i + 4));
		d2 = _mm_sub_ps(_mm_loadu_ps(q + i + 8), _mm_loadu_ps(v + i + 8));
		d3 = _mm_sub_ps(_mm_loadu_ps(q + i + 12), _mm_loadu_ps(v + i + 12));
		a0 = _mm_add_ps(a0, _mm_mul_ps(d0, d0));
		a1 = _mm_add_ps(a1, _mm_mul_ps(d1, d1));
		a2 = _mm_add_ps(a2, _mm_mul_ps(d2, d2));
		a3 = _mm_add_ps(a3, _mm_mul_ps(d3, d3));
	}
	for (; i + 4 <= dim; i += 4) {
		d0 = _mm_sub_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(v + i));
		a0 = _mm_add_ps(a0, _mm_mul_ps(d0, d0));
	}
	d1 = _mm_sub_ps(load_tail(q + i, dim - i), load_tail(v + i, dim - i));
	a1 = _mm_add_ps(a1, _mm_mul_ps(d1, d1));
	return hsum4(a0, a1, a2, a3);
}

static float dot_sse2(const float *q, const float *v, u32 dim, const float *next)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		prefetch_line(next, i);
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(v + i)));
		a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(q + i + 4), _mm_loadu_ps(v + i + 4)));
		a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(q + i + 8), _mm_loadu_ps(v + i + 8)));
		a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(q + i + 12), _mm_loadu_ps(v + i + 12)));
	}
	for (; i + 4 <= dim; i += 4)
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(v + i)));
	a1 = _mm_add_ps(a1, _mm_mul_ps(load_tail(q + i, dim - i), load_tail(v + i, dim - i)));
	return hsum4(a0, a1, a2, a3);
}

/* q.v and v.v in one pass over v, each with the same order as dot_sse2(). */
static void dot_norm_sse2(const float *q, const float *v, u32 dim, const float *next,
			  float *dot, float *vv)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	__m128 b0 = _mm_setzero_ps(), b1 = _mm_setzero_ps();
	__m128 b2 = _mm_setzero_ps(), b3 = _mm_setzero_ps();
	__m128 v0, v1, v2, v3;
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		prefetch_line(next, i);
		v0 = _mm_loadu_ps(v + i);
		v1 = _mm_loadu_ps(v + i + 4);
		v2 = _mm_loadu_ps(v + i + 8);
		v3 = _mm_loadu_ps(v + i + 12);
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), v0));
		a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(q + i + 4), v1));
		a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(q + i + 8), v2));
		a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(q + i + 12), v3));
		b0 = _mm_add_ps(b0, _mm_mul_ps(v0, v0));
		b1 = _mm_add_ps(b1, _mm_mul_ps(v1, v1));
		b2 = _mm_add_ps(b2, _mm_mul_ps(v2, v2));
		b3 = _mm_add_ps(b3, _mm_mul_ps(v3, v3));
	}
	for (; i + 4 <= dim; i += 4) {
		v0 = _mm_loadu_ps(v + i);
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), v0));
		b0 = _mm_add_ps(b0, _mm_mul_ps(v0, v0));
	}
	v1 = load_tail(v + i, dim - i);
	a1 = _mm_add_ps(a1, _mm_mul_ps(load_tail(q + i, dim - i), v1));
	b1 = _mm_add_ps(b1, _mm_mul_ps(v1, v1));
	*dot = hsum4(a0, a1, a2, a3);
	*vv = hsum4(b0, b1, b2, b3);
}

void vexfs_dist_sse2(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		     u32 *out)
{
	const float *next;
	float qnorm, dot, vv;
	u32 k;

	switch (metric) {
	case VEXFS_METRIC_L2:
		for (k = 0; k < n; k++) {
			next = vecs[k + 1 < n ? k + 1 : k];
			out[k] = vexfs_f32_bits(l2_sse2(q, vecs[k], dim, next));
		}
		break;
	case VEXFS_METRIC_COSINE:
		qnorm = vexfs_sqrtf(dot_sse2(q, q, dim, q));
		for (k = 0; k < n; k++) {
			next = vecs[k + 1 < n ? k + 1 : k];
			dot_norm_sse2(q, vecs[k], dim, next, &dot, &vv);
			out[k] = vexfs_cosine_bits(dot, qnorm, vv);
		}
		break;
	case VEXFS_METRIC_IP:
		for (k = 0; k < n; k++) {
			next = vecs[k + 1 < n ? k + 1 : k];
			out[k] = vexfs_f32_bits(1.0f - dot_sse2(q, vecs[k], dim, next));
		}
		break;
	default:
		for (k = 0; k < n; k++)
			out[k] = VEXFS_DIST_NAN_BITS;
		break;
	}
}

/*
 * The forms of l2_sse2, dot_sse2 and dot_norm_sse2 for a vector that crosses a block: floats
 * 0 .. split - 1 at v, the rest at w (split a multiple of 4: every 4-float load lies in one
 * part). The same operations in the same order: the same bits as for the whole vector.
 */
#define AT(i) ((i) < split ? v + (i) : w + ((i) - split))

static float l2_sse2_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	__m128 d0, d1, d2, d3;
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		d0 = _mm_sub_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(AT(i)));
		d1 = _mm_sub_ps(_mm_loadu_ps(q + i + 4), _mm_loadu_ps(AT(i + 4)));
		d2 = _mm_sub_ps(_mm_loadu_ps(q + i + 8), _mm_loadu_ps(AT(i + 8)));
		d3 = _mm_sub_ps(_mm_loadu_ps(q + i + 12), _mm_loadu_ps(AT(i + 12)));
		a0 = _mm_add_ps(a0, _mm_mul_ps(d0, d0));
		a1 = _mm_add_ps(a1, _mm_mul_ps(d1, d1));
		a2 = _mm_add_ps(a2, _mm_mul_ps(d2, d2));
		a3 = _mm_add_ps(a3, _mm_mul_ps(d3, d3));
	}
	for (; i + 4 <= dim; i += 4) {
		d0 = _mm_sub_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(AT(i)));
		a0 = _mm_add_ps(a0, _mm_mul_ps(d0, d0));
	}
	d1 = _mm_sub_ps(load_tail(q + i, dim - i), load_tail(AT(i), dim - i));
	a1 = _mm_add_ps(a1, _mm_mul_ps(d1, d1));
	return hsum4(a0, a1, a2, a3);
}

static float dot_sse2_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(AT(i))));
		a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(q + i + 4), _mm_loadu_ps(AT(i + 4))));
		a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(q + i + 8), _mm_loadu_ps(AT(i + 8))));
		a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(q + i + 12), _mm_loadu_ps(AT(i + 12))));
	}
	for (; i + 4 <= dim; i += 4)
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), _mm_loadu_ps(AT(i))));
	a1 = _mm_add_ps(a1, _mm_mul_ps(load_tail(q + i, dim - i), load_tail(AT(i), dim - i)));
	return hsum4(a0, a1, a2, a3);
}

static void dot_norm_sse2_split(const float *q, const float *v, const float *w, u32 split,
				u32 dim, float *dot, float *vv)
{
	__m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
	__m128 a2 = _mm_setzero_ps(), a3 = _mm_setzero_ps();
	__m128 b0 = _mm_setzero_ps(), b1 = _mm_setzero_ps();
	__m128 b2 = _mm_setzero_ps(), b3 = _mm_setzero_ps();
	__m128 v0, v1, v2, v3;
	u32 i = 0;

	for (; i + 16 <= dim; i += 16) {
		v0 = _mm_loadu_ps(AT(i));
		v1 = _mm_loadu_ps(AT(i + 4));
		v2 = _mm_loadu_ps(AT(i + 8));
		v3 = _mm_loadu_ps(AT(i + 12));
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), v0));
		a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(q + i + 4), v1));
		a2 = _mm_add_ps(a2, _mm_mul_ps(_mm_loadu_ps(q + i + 8), v2));
		a3 = _mm_add_ps(a3, _mm_mul_ps(_mm_loadu_ps(q + i + 12), v3));
		b0 = _mm_add_ps(b0, _mm_mul_ps(v0, v0));
		b1 = _mm_add_ps(b1, _mm_mul_ps(v1, v1));
		b2 = _mm_add_ps(b2, _mm_mul_ps(v2, v2));
		b3 = _mm_add_ps(b3, _mm_mul_ps(v3, v3));
	}
	for (; i + 4 <= dim; i += 4) {
		v0 = _mm_loadu_ps(AT(i));
		a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(q + i), v0));
		b0 = _mm_add_ps(b0, _mm_mul_ps(v0, v0));
	}
	v1 = load_tail(AT(i), dim - i);
	a1 = _mm_add_ps(a1, _mm_mul_ps(load_tail(q + i, dim - i), v1));
	b1 = _mm_add_ps(b1, _mm_mul_ps(v1, v1));
	*dot = hsum4(a0, a1, a2, a3);
	*vv = hsum4(b0, b1, b2, b3);
}

#undef AT

u32 vexfs_dist_split_sse2(u32 metric, const float *q, const float *v, const float *w, u32 split,
			  u32 dim)
{
	float dot, vv;

	switch (metric) {
	case VEXFS_METRIC_L2:
		return vexfs_f32_bits(l2_sse2_split(q, v, w, split, dim));
	case VEXFS_METRIC_COSINE:
		dot_norm_sse2_split(q, v, w, split, dim, &dot, &vv);
		return vexfs_cosine_bits(dot, vexfs_sqrtf(dot_sse2(q, q, dim, q)), vv);
	case VEXFS_METRIC_IP:
		return vexfs_f32_bits(1.0f - dot_sse2_split(q, v, w, split, dim));
	default:
		return VEXFS_DIST_NAN_BITS;
	}
}

void vexfs_dist_mixed_sse2(u32 metric, const float *q, const float *const *vecs,
			   const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	vexfs_dist_mixed(vexfs_dist_sse2, vexfs_dist_split_sse2, metric, q, vecs, tails, splits, n,
			 dim, out);
}

/*
 * SQ8 code distances, 16 bytes at a time: bytes widened to 16-bit lanes (unpack with
 * themselves, then an arithmetic shift), pmaddwd into 32-bit sums. Integer sums are exact,
 * so the keys equal the scalar ones whatever the order.
 */
static inline void widen16(__m128i x, __m128i *lo, __m128i *hi)
{
	*lo = _mm_srai_epi16(_mm_unpacklo_epi8(x, x), 8);
	*hi = _mm_srai_epi16(_mm_unpackhi_epi8(x, x), 8);
}

static inline int hsum_epi32(__m128i s)
{
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
	return _mm_cvtsi128_si32(s);
}

void vexfs_code_dist_sse2(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			  u32 *out)
{
	__m128i ql, qh, vl, vh, dl, dh, s0, s1, s2;
	const s8 *v, *next;
	int qq;
	u32 i, k;

	s0 = _mm_setzero_si128();
	for (i = 0; i + 16 <= len; i += 16) {
		widen16(_mm_loadu_si128((const __m128i *)(q + i)), &ql, &qh);
		s0 = _mm_add_epi32(s0, _mm_add_epi32(_mm_madd_epi16(ql, ql), _mm_madd_epi16(qh, qh)));
	}
	qq = hsum_epi32(s0);
	for (k = 0; k < n; k++) {
		v = vecs[k];
		next = vecs[k + 1 < n ? k + 1 : k];
		s0 = _mm_setzero_si128();
		s1 = _mm_setzero_si128();
		s2 = _mm_setzero_si128();
		for (i = 0; i + 16 <= len; i += 16) {
			if ((i & 63) == 0)
				_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
			widen16(_mm_loadu_si128((const __m128i *)(q + i)), &ql, &qh);
			widen16(_mm_loadu_si128((const __m128i *)(v + i)), &vl, &vh);
			if (metric == VEXFS_METRIC_L2) {
				dl = _mm_sub_epi16(ql, vl);
				dh = _mm_sub_epi16(qh, vh);
				s0 = _mm_add_epi32(s0, _mm_madd_epi16(dl, dl));
				s0 = _mm_add_epi32(s0, _mm_madd_epi16(dh, dh));
			} else {
				s1 = _mm_add_epi32(s1, _mm_madd_epi16(ql, vl));
				s1 = _mm_add_epi32(s1, _mm_madd_epi16(qh, vh));
				s2 = _mm_add_epi32(s2, _mm_madd_epi16(vl, vl));
				s2 = _mm_add_epi32(s2, _mm_madd_epi16(vh, vh));
			}
		}
		out[k] = vexfs_code_key(metric, hsum_epi32(s0), hsum_epi32(s1), qq, hsum_epi32(s2));
	}
}
