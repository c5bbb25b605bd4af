// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs PQ tables and code distances (core::pq; see distance.h): one implementation for every
 * CPU, compiled into the kernel module (Kbuild, FPU flags) and the tools (core/build.rs), so
 * tables, keys and codes are the same bits everywhere. Each centroid's sums run over its
 * components in order, multiply and add separately rounded (-ffp-contract=off); on x86 four
 * centroids go through the four lanes of an SSE register at once, each lane doing exactly the
 * scalar loop's operations in the scalar loop's order, so the bits are the scalar loop's
 * (image/tests/pq.rs checks them against a model of that order).
 */
#define VEXFS_DISTANCE_IMPL
#include "distance.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static float vexfs_bits_f32(u32 u)
{
	union {
		float f;
		u32 u;
	} c;

	c.u = u;
	return c.f;
}

u32 vexfs_pq_table(u32 metric, const float *q, const float *cents, u32 n, u32 dsub, u32 *prim,
		   u32 *norm)
{
	u32 k = 0;

#if defined(__SSE2__)
	for (; k + 4 <= n; k += 4) {
		const float *c0 = cents + k * dsub, *c1 = c0 + dsub, *c2 = c1 + dsub, *c3 = c2 + dsub;
		__m128 acc = _mm_setzero_ps(), accn = _mm_setzero_ps();
		float a[4], b[4];
		u32 t, l;

		for (t = 0; t < dsub; t++) {
			__m128 qv = _mm_set1_ps(q[t]);
			__m128 cv = _mm_set_ps(c3[t], c2[t], c1[t], c0[t]);

			if (metric == VEXFS_METRIC_L2) {
				__m128 d = _mm_sub_ps(qv, cv);

				acc = _mm_add_ps(acc, _mm_mul_ps(d, d));
			} else {
				acc = _mm_add_ps(acc, _mm_mul_ps(qv, cv));
				accn = _mm_add_ps(accn, _mm_mul_ps(cv, cv));
			}
		}
		_mm_storeu_ps(a, acc);
		_mm_storeu_ps(b, accn);
		for (l = 0; l < 4; l++) {
			prim[k + l] = vexfs_f32_bits(a[l]);
			norm[k + l] = metric == VEXFS_METRIC_L2 ? 0 : vexfs_f32_bits(b[l]);
		}
	}
#endif
	for (; k < n; k++) {
		const float *c = cents + k * dsub;

		if (metric == VEXFS_METRIC_L2) {
			prim[k] = vexfs_f32_bits(vexfs_l2_in_order(q, c, dsub));
			norm[k] = 0;
		} else {
			prim[k] = vexfs_f32_bits(vexfs_dot_in_order(q, c, dsub));
			norm[k] = vexfs_f32_bits(vexfs_dot_in_order(c, c, dsub));
		}
	}
	return vexfs_f32_bits(vexfs_dot_in_order(q, q, dsub));
}

void vexfs_pq_dist(u32 metric, const u32 *table, u32 m, const u8 *const *codes, u32 n, u32 *out)
{
	const u32 *prim = table, *norm = table + m * 256u, *qq = table + 2u * m * 256u;
	float qnorm = 0.0f;
	u32 j, k;

	if (metric == VEXFS_METRIC_COSINE) {
		for (j = 0; j < m; j++)
			qnorm = qnorm + vexfs_bits_f32(qq[j]);
		qnorm = vexfs_sqrtf(qnorm);
	}
	for (k = 0; k < n; k++) {
		const u8 *c = codes[k];
		float p = 0.0f, nn = 0.0f;

		for (j = 0; j < m; j++)
			p = p + vexfs_bits_f32(prim[j * 256u + c[j]]);
		switch (metric) {
		case VEXFS_METRIC_L2:
			out[k] = vexfs_key_from_bits(vexfs_f32_bits(p));
			break;
		case VEXFS_METRIC_IP:
			out[k] = vexfs_key_from_bits(vexfs_f32_bits(1.0f - p));
			break;
		case VEXFS_METRIC_COSINE:
			for (j = 0; j < m; j++)
				nn = nn + vexfs_bits_f32(norm[j * 256u + c[j]]);
			out[k] = vexfs_key_from_bits(vexfs_cosine_bits(p, qnorm, nn));
			break;
		default:
			out[k] = 0xffffffffu;
			break;
		}
	}
}
