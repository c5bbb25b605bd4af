// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs distance kernels, AVX-512 (built with -mavx512f -mavx512bw -mavx512vl -mavx2 -mfma;
 * called only when the CPU has AVX-512 F, BW and VL besides AVX2 and FMA, and the OS saves the
 * ZMM and opmask state).
 *
 * The float kernels compute exactly the arithmetic of distance_avx2.c, in registers twice as
 * wide, so every result is bit-identical to the AVX2 one (the tests check it on every dim and
 * batch size): AVX2 keeps four 8-lane accumulators a0..a3 fed by floats 0-7, 8-15, 16-23 and
 * 24-31 of each 32-float block; here one 16-lane accumulator A holds a0 (lanes 0-7) and a1
 * (lanes 8-15) and B holds a2 and a3, fed by floats 0-15 and 16-31 of the block with the same
 * fused multiply-adds lane for lane. After the 32-float blocks the four 8-lane halves are
 * taken out and the AVX2 steps 2-4 run on them unchanged (8-float blocks into a0, the masked
 * tail into a1, the fixed final sum). l2 and ip take four vectors per pass, sharing the loads
 * of q; cosine one.
 *
 * The SQ8 code kernels sum exact integers (any order gives the same keys): each 32-byte chunk
 * of a code is sign-extended to 32 16-bit lanes (vpmovsxbw zmm), subtracted or multiplied
 * pairwise into 32-bit sums (vpmaddwd); four codes per pass share the extension of q.
 */
#define VEXFS_DISTANCE_IMPL
#include "distance.h"
#include <immintrin.h>

/* hsum8 of distance_avx2.c: s = (a0 + a1) + (a2 + a3); lo + hi; then (t0 + t2) + (t1 + t3). */
static inline float hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
	__m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
	__m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));

	t = _mm_add_ps(t, _mm_movehl_ps(t, t));
	t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 0x55));
	return _mm_cvtss_f32(t);
}

static inline __m256 lo8(__m512 x)
{
	return _mm512_castps512_ps256(x);
}

static inline __m256 hi8(__m512 x)
{
	return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
}

/* The low r < 8 floats at p, zeros above; nothing past p + r is read. */
static inline __m256 tail8(const float *p, u32 r)
{
	return _mm256_maskz_loadu_ps((__mmask8)((1u << r) - 1u), p);
}

/* Two 64-byte lines of the 32-float block at i of the vector summed next. */
static inline void prefetch_lines(const float *next, u32 i)
{
	_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
	_mm_prefetch((const char *)(next + i + 16), _MM_HINT_T0);
}

/* AVX2 steps 2-4 for l2 from float i on, given A = a0|a1 and B = a2|a3 after the blocks. */
static float l2_rest(const float *q, const float *v, u32 i, u32 dim, __m512 A, __m512 B)
{
	__m256 a0 = lo8(A), a1 = hi8(A), a2 = lo8(B), a3 = hi8(B), d;

	for (; i + 8 <= dim; i += 8) {
		d = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i));
		a0 = _mm256_fmadd_ps(d, d, a0);
	}
	d = _mm256_sub_ps(tail8(q + i, dim - i), tail8(v + i, dim - i));
	a1 = _mm256_fmadd_ps(d, d, a1);
	return hsum8(a0, a1, a2, a3);
}

/* The same for a dot product. */
static float dot_rest(const float *q, const float *v, u32 i, u32 dim, __m512 A, __m512 B)
{
	__m256 a0 = lo8(A), a1 = hi8(A), a2 = lo8(B), a3 = hi8(B);

	for (; i + 8 <= dim; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(v + i), a0);
	a1 = _mm256_fmadd_ps(tail8(q + i, dim - i), tail8(v + i, dim - i), a1);
	return hsum8(a0, a1, a2, a3);
}

static float l2_x1(const float *q, const float *v, u32 dim, const float *next)
{
	__m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps(), d;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		d = _mm512_sub_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(v + i));
		A = _mm512_fmadd_ps(d, d, A);
		d = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(v + i + 16));
		B = _mm512_fmadd_ps(d, d, B);
	}
	return l2_rest(q, v, i, dim, A, B);
}

static float dot_x1(const float *q, const float *v, u32 dim, const float *next)
{
	__m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps();
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		A = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(v + i), A);
		B = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(v + i + 16), B);
	}
	return dot_rest(q, v, i, dim, A, B);
}

/*
 * Four vectors per pass: v[j] gets exactly the arithmetic of l2_x1()/dot_x1() (its own A and
 * B, the same blocks and rest), so its bits do not depend on its neighbours in the batch.
 * next[j] is prefetched while v[j] is summed.
 */
static void l2_x4(const float *q, const float *const *v, u32 dim, const float *const *next,
		  float *out)
{
	__m512 A[4], B[4], q0, q1, d;
	u32 i = 0, j;

	for (j = 0; j < 4; j++)
		A[j] = B[j] = _mm512_setzero_ps();
	for (; i + 32 <= dim; i += 32) {
		q0 = _mm512_loadu_ps(q + i);
		q1 = _mm512_loadu_ps(q + i + 16);
		for (j = 0; j < 4; j++) {
			prefetch_lines(next[j], i);
			d = _mm512_sub_ps(q0, _mm512_loadu_ps(v[j] + i));
			A[j] = _mm512_fmadd_ps(d, d, A[j]);
			d = _mm512_sub_ps(q1, _mm512_loadu_ps(v[j] + i + 16));
			B[j] = _mm512_fmadd_ps(d, d, B[j]);
		}
	}
	for (j = 0; j < 4; j++)
		out[j] = l2_rest(q, v[j], i, dim, A[j], B[j]);
}

static void dot_x4(const float *q, const float *const *v, u32 dim, const float *const *next,
		   float *out)
{
	__m512 A[4], B[4], q0, q1;
	u32 i = 0, j;

	for (j = 0; j < 4; j++)
		A[j] = B[j] = _mm512_setzero_ps();
	for (; i + 32 <= dim; i += 32) {
		q0 = _mm512_loadu_ps(q + i);
		q1 = _mm512_loadu_ps(q + i + 16);
		for (j = 0; j < 4; j++) {
			prefetch_lines(next[j], i);
			A[j] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(v[j] + i), A[j]);
			B[j] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(v[j] + i + 16), B[j]);
		}
	}
	for (j = 0; j < 4; j++)
		out[j] = dot_rest(q, v[j], i, dim, A[j], B[j]);
}

/* q.v and v.v in one pass over v, each in dot_x1()'s order (dot_norm_avx2 of the AVX2 file). */
static void dot_norm_x1(const float *q, const float *v, u32 dim, const float *next, float *dot,
			float *vv)
{
	__m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps();
	__m512 C = _mm512_setzero_ps(), D = _mm512_setzero_ps(), v0, v1;
	__m256 a0, a1, a2, a3, b0, b1, b2, b3, w;
	u32 i = 0;

	for (; i + 32 <= dim; i += 32) {
		prefetch_lines(next, i);
		v0 = _mm512_loadu_ps(v + i);
		v1 = _mm512_loadu_ps(v + i + 16);
		A = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), v0, A);
		B = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), v1, B);
		C = _mm512_fmadd_ps(v0, v0, C);
		D = _mm512_fmadd_ps(v1, v1, D);
	}
	a0 = lo8(A), a1 = hi8(A), a2 = lo8(B), a3 = hi8(B);
	b0 = lo8(C), b1 = hi8(C), b2 = lo8(D), b3 = hi8(D);
	for (; i + 8 <= dim; i += 8) {
		w = _mm256_loadu_ps(v + i);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), w, a0);
		b0 = _mm256_fmadd_ps(w, w, b0);
	}
	w = tail8(v + i, dim - i);
	a1 = _mm256_fmadd_ps(tail8(q + i, dim - i), w, a1);
	b1 = _mm256_fmadd_ps(w, w, b1);
	*dot = hsum8(a0, a1, a2, a3);
	*vv = hsum8(b0, b1, b2, b3);
}

/* Vector k + 4 of the batch, or the last one: what to prefetch while summing vector k. */
static inline const float *ahead(const float *const *vecs, u32 n, u32 k)
{
	return vecs[k + 4 < n ? k + 4 : n - 1];
}

void vexfs_dist_avx512(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		       u32 *out)
{
	const float *next[4];
	float qnorm, dot, vv, d[4];
	u32 k, j;

	switch (metric) {
	case VEXFS_METRIC_L2:
	case VEXFS_METRIC_IP:
		for (k = 0; k + 4 <= n; k += 4) {
			for (j = 0; j < 4; j++)
				next[j] = ahead(vecs, n, k + j);
			if (metric == VEXFS_METRIC_L2)
				l2_x4(q, vecs + k, dim, next, d);
			else
				dot_x4(q, vecs + k, dim, next, d);
			for (j = 0; j < 4; j++)
				out[k + j] = vexfs_f32_bits(metric == VEXFS_METRIC_L2 ? d[j] : 1.0f - d[j]);
		}
		for (; k < n; k++) {
			if (metric == VEXFS_METRIC_L2)
				out[k] = vexfs_f32_bits(l2_x1(q, vecs[k], dim, ahead(vecs, n, k)));
			else
				out[k] = vexfs_f32_bits(1.0f - dot_x1(q, vecs[k], dim, ahead(vecs, n, k)));
		}
		break;
	case VEXFS_METRIC_COSINE:
		qnorm = vexfs_sqrtf(dot_x1(q, q, dim, q));
		for (k = 0; k < n; k++) {
			dot_norm_x1(q, vecs[k], dim, vecs[k + 1 < n ? k + 1 : k], &dot, &vv);
			out[k] = vexfs_cosine_bits(dot, qnorm, vv);
		}
		break;
	default:
		for (k = 0; k < n; k++)
			out[k] = VEXFS_DIST_NAN_BITS;
		break;
	}
}

/*
 * Vectors that cross a block, summed in place (vexfs_dist_mixed_avx512): vector j's first sp[j]
 * floats at v[j], the rest at w[j]. Float i of it is at base(j, i) + i, base v below sp and
 * w - sp from sp on (w_base; struct vexfs_parts in distance.h).
 *
 * The passes of four (l2_x4p, dot_x4p) take the vectors in batch order as l2_x4 and dot_x4 do,
 * with the same arithmetic lane for lane (so the bits of the whole vector), the four after them
 * prefetched meanwhile; each vector's base moves from v to w_base at the 32-float block where
 * its sp falls (one select per vector and block, no branch: a branch or a segment loop per
 * split cost about 10% in a microbenchmark at 384-d, where a quarter of the vectors cross a
 * block).
 * That needs sp to be a multiple of 32 (always at 384-d and 768-d, whose slots start on
 * 512-byte boundaries); a vector split elsewhere goes alone through the avx2 form, whose bits
 * equal this file's.
 */
/* l2_rest and dot_rest over parts (8-float loads: sp a multiple of 8 keeps each in one). */
static float l2_rest_s(const float *q, const struct vexfs_parts *p, u32 i, u32 dim, __m512 A,
		       __m512 B)
{
	__m256 a0 = lo8(A), a1 = hi8(A), a2 = lo8(B), a3 = hi8(B), d;

	for (; i + 8 <= dim; i += 8) {
		d = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(vexfs_part_at(p, i)));
		a0 = _mm256_fmadd_ps(d, d, a0);
	}
	d = _mm256_sub_ps(tail8(q + i, dim - i), tail8(vexfs_part_at(p, i), dim - i));
	a1 = _mm256_fmadd_ps(d, d, a1);
	return hsum8(a0, a1, a2, a3);
}

static float dot_rest_s(const float *q, const struct vexfs_parts *p, u32 i, u32 dim, __m512 A,
			__m512 B)
{
	__m256 a0 = lo8(A), a1 = hi8(A), a2 = lo8(B), a3 = hi8(B);

	for (; i + 8 <= dim; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(vexfs_part_at(p, i)), a0);
	a1 = _mm256_fmadd_ps(tail8(q + i, dim - i), tail8(vexfs_part_at(p, i), dim - i), a1);
	return hsum8(a0, a1, a2, a3);
}

/* l2_x4 over parts, next[j] prefetched as l2_x4 prefetches it. */
static void l2_x4p(const float *q, const struct vexfs_parts *p, u32 dim,
		   const struct vexfs_parts *next, float *out)
{
	__m512 A[4], B[4], q0, q1, d;
	uintptr_t b[4], nb[4];
	u32 i, j, blocks = dim & ~31u;

	for (j = 0; j < 4; j++) {
		A[j] = B[j] = _mm512_setzero_ps();
		b[j] = (uintptr_t)p[j].v;
		nb[j] = (uintptr_t)next[j].v;
	}
	for (i = 0; i < blocks; i += 32) {
		q0 = _mm512_loadu_ps(q + i);
		q1 = _mm512_loadu_ps(q + i + 16);
		for (j = 0; j < 4; j++) {
			const float *v, *nv;

			b[j] = i == p[j].sp ? p[j].w_base : b[j];
			nb[j] = i == next[j].sp ? next[j].w_base : nb[j];
			v = (const float *)b[j] + i;
			nv = (const float *)nb[j] + i;
			prefetch_lines(nv, 0);
			d = _mm512_sub_ps(q0, _mm512_loadu_ps(v));
			A[j] = _mm512_fmadd_ps(d, d, A[j]);
			d = _mm512_sub_ps(q1, _mm512_loadu_ps(v + 16));
			B[j] = _mm512_fmadd_ps(d, d, B[j]);
		}
	}
	for (j = 0; j < 4; j++)
		out[j] = l2_rest_s(q, &p[j], i, dim, A[j], B[j]);
}

/* dot_x4 over parts, as l2_x4p. */
static void dot_x4p(const float *q, const struct vexfs_parts *p, u32 dim,
		    const struct vexfs_parts *next, float *out)
{
	__m512 A[4], B[4], q0, q1;
	uintptr_t b[4], nb[4];
	u32 i, j, blocks = dim & ~31u;

	for (j = 0; j < 4; j++) {
		A[j] = B[j] = _mm512_setzero_ps();
		b[j] = (uintptr_t)p[j].v;
		nb[j] = (uintptr_t)next[j].v;
	}
	for (i = 0; i < blocks; i += 32) {
		q0 = _mm512_loadu_ps(q + i);
		q1 = _mm512_loadu_ps(q + i + 16);
		for (j = 0; j < 4; j++) {
			const float *v, *nv;

			b[j] = i == p[j].sp ? p[j].w_base : b[j];
			nb[j] = i == next[j].sp ? next[j].w_base : nb[j];
			v = (const float *)b[j] + i;
			nv = (const float *)nb[j] + i;
			prefetch_lines(nv, 0);
			A[j] = _mm512_fmadd_ps(q0, _mm512_loadu_ps(v), A[j]);
			B[j] = _mm512_fmadd_ps(q1, _mm512_loadu_ps(v + 16), B[j]);
		}
	}
	for (j = 0; j < 4; j++)
		out[j] = 1.0f - dot_rest_s(q, &p[j], i, dim, A[j], B[j]);
}

/* l2_x1 and dot_x1 over parts (the last vectors of a batch), next prefetched. */
static float x1p(u32 metric, const float *q, const struct vexfs_parts *p, u32 dim,
		 const struct vexfs_parts *next)
{
	__m512 A = _mm512_setzero_ps(), B = _mm512_setzero_ps(), d0, d1;
	uintptr_t b = (uintptr_t)p->v, nb = (uintptr_t)next->v;
	u32 i, blocks = dim & ~31u;

	for (i = 0; i < blocks; i += 32) {
		const float *v, *nv;

		b = i == p->sp ? p->w_base : b;
		nb = i == next->sp ? next->w_base : nb;
		v = (const float *)b + i;
		nv = (const float *)nb + i;
		prefetch_lines(nv, 0);
		if (metric == VEXFS_METRIC_L2) {
			d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(v));
			A = _mm512_fmadd_ps(d0, d0, A);
			d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(v + 16));
			B = _mm512_fmadd_ps(d1, d1, B);
		} else {
			A = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(v), A);
			B = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(v + 16), B);
		}
	}
	if (metric == VEXFS_METRIC_L2)
		return l2_rest_s(q, p, i, dim, A, B);
	return 1.0f - dot_rest_s(q, p, i, dim, A, B);
}

void vexfs_dist_mixed_avx512(u32 metric, const float *q, const float *const *vecs,
			     const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	struct vexfs_parts p[8];
	u32 at[8], k, j, m = 0;
	float d[4];

	if (metric != VEXFS_METRIC_L2 && metric != VEXFS_METRIC_IP) {
		vexfs_dist_mixed(vexfs_dist_avx512, vexfs_dist_split_avx2, metric, q, vecs, tails,
				 splits, n, dim, out);
		return;
	}
	/* In batch order, through a window of eight: when it is full, the first four are summed
	 * with the last four prefetched, and the last four move up. */
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
		if (m < 8)
			continue;
		if (metric == VEXFS_METRIC_L2)
			l2_x4p(q, p, dim, p + 4, d);
		else
			dot_x4p(q, p, dim, p + 4, d);
		for (j = 0; j < 4; j++) {
			out[at[j]] = vexfs_f32_bits(d[j]);
			p[j] = p[j + 4];
			at[j] = at[j + 4];
		}
		m = 4;
	}
	/* What is left: a pass of four if there are more than four, the rest one by one, each
	 * with its successor prefetched. */
	if (m > 4) {
		if (metric == VEXFS_METRIC_L2)
			l2_x4p(q, p, dim, p + 4, d);
		else
			dot_x4p(q, p, dim, p + 4, d);
		for (j = 0; j < 4; j++)
			out[at[j]] = vexfs_f32_bits(d[j]);
		for (j = 0; j + 4 < m; j++) {
			p[j] = p[j + 4];
			at[j] = at[j + 4];
		}
		m -= 4;
	}
	for (j = 0; j < m; j++)
		out[at[j]] = vexfs_f32_bits(x1p(metric, q, &p[j], dim, &p[j + 1 < m ? j + 1 : j]));
}
/* ---- SQ8 codes ------------------------------------------------------------------------------ */

/* The 32 signed bytes at p as 32 16-bit lanes. */
static inline __m512i widen(const s8 *p)
{
	return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}

/* Four codes per pass: l2 sums (metric l2) or dot and |v|^2 sums (cosine, ip) of each. */
static void code_x4(u32 metric, const s8 *q, const s8 *const *v, u32 len,
		    const s8 *const *next, int *l2_or_dot, int *vv)
{
	__m512i a[4], b[4], x, y, d;
	u32 i, j;

	for (j = 0; j < 4; j++)
		a[j] = b[j] = _mm512_setzero_si512();
	for (i = 0; i < len; i += 32) {
		x = widen(q + i);
		for (j = 0; j < 4; j++) {
			if ((i & 63) == 0)
				_mm_prefetch((const char *)(next[j] + i), _MM_HINT_T0);
			y = widen(v[j] + i);
			if (metric == VEXFS_METRIC_L2) {
				d = _mm512_sub_epi16(x, y);
				a[j] = _mm512_add_epi32(a[j], _mm512_madd_epi16(d, d));
			} else {
				a[j] = _mm512_add_epi32(a[j], _mm512_madd_epi16(x, y));
				b[j] = _mm512_add_epi32(b[j], _mm512_madd_epi16(y, y));
			}
		}
	}
	for (j = 0; j < 4; j++) {
		l2_or_dot[j] = _mm512_reduce_add_epi32(a[j]);
		vv[j] = _mm512_reduce_add_epi32(b[j]);
	}
}

static void code_x1(u32 metric, const s8 *q, const s8 *v, u32 len, const s8 *next,
		    int *l2_or_dot, int *vv)
{
	__m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512(), x, y, d;
	u32 i;

	for (i = 0; i < len; i += 32) {
		if ((i & 63) == 0)
			_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
		x = widen(q + i);
		y = widen(v + i);
		if (metric == VEXFS_METRIC_L2) {
			d = _mm512_sub_epi16(x, y);
			a = _mm512_add_epi32(a, _mm512_madd_epi16(d, d));
		} else {
			a = _mm512_add_epi32(a, _mm512_madd_epi16(x, y));
			b = _mm512_add_epi32(b, _mm512_madd_epi16(y, y));
		}
	}
	*l2_or_dot = _mm512_reduce_add_epi32(a);
	*vv = _mm512_reduce_add_epi32(b);
}

static inline const s8 *code_ahead(const s8 *const *vecs, u32 n, u32 k)
{
	return vecs[k + 4 < n ? k + 4 : n - 1];
}

void vexfs_code_dist_avx512(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			    u32 *out)
{
	const s8 *next[4];
	int s[4], vv[4], qq, unused;
	u32 k, j;

	if (metric > VEXFS_METRIC_IP) {
		for (k = 0; k < n; k++)
			out[k] = 0xffffffffu;
		return;
	}
	code_x1(VEXFS_METRIC_IP, q, q, len, q, &unused, &qq);
	for (k = 0; k + 4 <= n; k += 4) {
		for (j = 0; j < 4; j++)
			next[j] = code_ahead(vecs, n, k + j);
		code_x4(metric, q, vecs + k, len, next, s, vv);
		for (j = 0; j < 4; j++)
			out[k + j] = vexfs_code_key(metric, s[j], s[j], qq, vv[j]);
	}
	for (; k < n; k++) {
		code_x1(metric, q, vecs[k], len, code_ahead(vecs, n, k), &s[0], &vv[0]);
		out[k] = vexfs_code_key(metric, s[0], s[0], qq, vv[0]);
	}
}
