// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs distance kernels, scalar reference: one float accumulator, elements in index order,
 * multiply and add separately rounded (-ffp-contract=off). Without -ffast-math the compiler
 * may not reassociate these sums, so this order is the one executed in every build.
 * The SIMD files are tested against this one (core/src/distance.rs).
 */
#define VEXFS_DISTANCE_IMPL
#include "distance.h"

void vexfs_dist_scalar(u32 metric, const float *q, const float *const *vecs, u32 n, u32 dim,
		       u32 *out)
{
	float qnorm;
	u32 k;

	switch (metric) {
	case VEXFS_METRIC_L2:
		for (k = 0; k < n; k++)
			out[k] = vexfs_f32_bits(vexfs_l2_in_order(q, vecs[k], dim));
		break;
	case VEXFS_METRIC_COSINE:
		qnorm = vexfs_sqrtf(vexfs_dot_in_order(q, q, dim));
		for (k = 0; k < n; k++)
			out[k] = vexfs_cosine_bits(vexfs_dot_in_order(q, vecs[k], dim), qnorm,
						   vexfs_dot_in_order(vecs[k], vecs[k], dim));
		break;
	case VEXFS_METRIC_IP:
		for (k = 0; k < n; k++)
			out[k] = vexfs_f32_bits(1.0f - vexfs_dot_in_order(q, vecs[k], dim));
		break;
	default:
		for (k = 0; k < n; k++)
			out[k] = VEXFS_DIST_NAN_BITS;
		break;
	}
}

/* SQ8 code distances: one pass over the bytes, exact integer sums (see distance.h). */
void vexfs_code_dist_scalar(u32 metric, const s8 *q, const s8 *const *vecs, u32 n, u32 len,
			    u32 *out)
{
	int l2, dot, qq = 0, vv, a, b;
	u32 i, k;

	for (i = 0; i < len; i++)
		qq += q[i] * q[i];
	for (k = 0; k < n; k++) {
		l2 = 0;
		dot = 0;
		vv = 0;
		for (i = 0; i < len; i++) {
			a = q[i];
			b = vecs[k][i];
			l2 += (a - b) * (a - b);
			dot += a * b;
			vv += b * b;
		}
		out[k] = vexfs_code_key(metric, l2, dot, qq, vv);
	}
}

/* Float i of a vector split after `split` floats: the first part at v, the rest at w. */
static inline float at_split(const float *v, const float *w, u32 split, u32 i)
{
	return i < split ? v[i] : w[i - split];
}

/* vexfs_l2_in_order and vexfs_dot_in_order of a split vector: the same sums, in order. */
static float l2_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	float acc = 0.0f;
	u32 i;

	for (i = 0; i < dim; i++) {
		float d = q[i] - at_split(v, w, split, i);

		acc = acc + d * d;
	}
	return acc;
}

static float dot_split(const float *q, const float *v, const float *w, u32 split, u32 dim)
{
	float acc = 0.0f;
	u32 i;

	for (i = 0; i < dim; i++)
		acc = acc + q[i] * at_split(v, w, split, i);
	return acc;
}

static float norm_split(const float *v, const float *w, u32 split, u32 dim)
{
	float acc = 0.0f, x;
	u32 i;

	for (i = 0; i < dim; i++) {
		x = at_split(v, w, split, i);
		acc = acc + x * x;
	}
	return acc;
}

u32 vexfs_dist_split_scalar(u32 metric, const float *q, const float *v, const float *w, u32 split,
			    u32 dim)
{
	switch (metric) {
	case VEXFS_METRIC_L2:
		return vexfs_f32_bits(l2_split(q, v, w, split, dim));
	case VEXFS_METRIC_COSINE:
		return vexfs_cosine_bits(dot_split(q, v, w, split, dim),
					 vexfs_sqrtf(vexfs_dot_in_order(q, q, dim)),
					 norm_split(v, w, split, dim));
	case VEXFS_METRIC_IP:
		return vexfs_f32_bits(1.0f - dot_split(q, v, w, split, dim));
	default:
		return VEXFS_DIST_NAN_BITS;
	}
}

void vexfs_dist_mixed_scalar(u32 metric, const float *q, const float *const *vecs,
			     const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	vexfs_dist_mixed(vexfs_dist_scalar, vexfs_dist_split_scalar, metric, q, vecs, tails, splits,
			 n, dim, out);
}
