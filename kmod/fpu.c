// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs FPU glue: the only caller of the float distance kernels (core/csrc/distance_*.c, the
 * only objects of the module built with FPU flags). This file is built with the kernel's
 * default -mno-sse -mno-avx, so the compiler cannot put vector registers to use here, outside
 * a kernel_fpu_begin()/kernel_fpu_end() section (the pattern of lib/test_fpu_glue.c).
 */
#include <linux/bug.h>
#include <linux/fpu.h>
#include <linux/minmax.h>
#include <linux/string.h>
#include <asm/cpufeature.h>
#include <asm/cpu_device_id.h>
#include <asm/processor.h>
#include "fpu.h"
#include "../core/csrc/distance.h"

/*
 * Floats handled in one FPU section (preemption is off inside): 256 Ki floats is ~1 MiB of
 * vectors, some tens of microseconds. The results do not depend on the split.
 */
#define VEXFS_FPU_CHUNK_FLOATS (256u * 1024u)

/*
 * QEMU's software CPU (TCG) announces itself with the hypervisor signature "TCGTCGTCGTCG".
 * It emulates AVX2, but the index runs several times slower with it than with SSE2 there
 * (measured: 500 inserts of 384-d vectors, 31 s against 3.7 s), so SSE2 is chosen.
 */
static bool vexfs_under_qemu_tcg(void)
{
	u32 eax, sig[3];

	if (!boot_cpu_has(X86_FEATURE_HYPERVISOR))
		return false;
	cpuid(0x40000000, &eax, &sig[0], &sig[1], &sig[2]);
	return !memcmp(sig, "TCGTCGTCGTCG", 12);
}

/* AVX2 and FMA, with the YMM state saved by the kernel (boot_cpu_has: no CPUID instruction). */
static bool vexfs_has_avx2(void)
{
	return boot_cpu_has(X86_FEATURE_AVX2) && boot_cpu_has(X86_FEATURE_FMA) &&
	       boot_cpu_has(X86_FEATURE_OSXSAVE) &&
	       cpu_has_xfeatures(XFEATURE_MASK_SSE | XFEATURE_MASK_YMM, NULL);
}

/* That, and AVX-512 F/BW/VL with the ZMM and opmask state (as the x86 crypto glue checks). */
static bool vexfs_has_avx512(void)
{
	return vexfs_has_avx2() && boot_cpu_has(X86_FEATURE_AVX512F) &&
	       boot_cpu_has(X86_FEATURE_AVX512BW) && boot_cpu_has(X86_FEATURE_AVX512VL) &&
	       cpu_has_xfeatures(XFEATURE_MASK_SSE | XFEATURE_MASK_YMM | XFEATURE_MASK_AVX512, NULL);
}

/*
 * The kernels to use on this CPU (once per mount): AVX-512 (the same bits as AVX2), else AVX2
 * + FMA, else SSE2; SSE2 under TCG. Userspace makes the same choice (core::distance::best_impl)
 * but on Skylake-X, which lowers the clock of a core running 512-bit instructions so much that
 * the kernel's own AVX-512 code avoids it there (arch/x86/crypto/poly1305_glue.c): the module
 * keeps to AVX2 on it, which computes the same bits.
 */
u32 vexfs_c_dist_impl(void)
{
	if (vexfs_under_qemu_tcg())
		return VEXFS_DIST_SSE2;
	if (vexfs_has_avx512() && boot_cpu_data.x86_vfm != INTEL_SKYLAKE_X)
		return VEXFS_DIST_AVX512;
	if (vexfs_has_avx2())
		return VEXFS_DIST_AVX2;
	return VEXFS_DIST_SSE2;
}

/*
 * The implementation to run for the one asked: an unknown id, or one this CPU cannot run (a
 * caller's bug, warned once), falls back to SSE2. Feature bits only, so cheap per call.
 */
static u32 vexfs_runnable_impl(u32 impl)
{
	if (impl > VEXFS_DIST_AVX512)
		return VEXFS_DIST_SSE2;
	if (WARN_ON_ONCE((impl == VEXFS_DIST_AVX512 && !vexfs_has_avx512()) ||
			 (impl == VEXFS_DIST_AVX2 && !vexfs_has_avx2())))
		return VEXFS_DIST_SSE2;
	return impl;
}

static void vexfs_dist_run(u32 impl, u32 metric, const float *q, const float *const *vecs,
			   const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	switch (impl) {
	case VEXFS_DIST_AVX512:
		if (tails)
			vexfs_dist_mixed_avx512(metric, q, vecs, tails, splits, n, dim, out);
		else
			vexfs_dist_avx512(metric, q, vecs, n, dim, out);
		break;
	case VEXFS_DIST_AVX2:
		if (tails)
			vexfs_dist_mixed_avx2(metric, q, vecs, tails, splits, n, dim, out);
		else
			vexfs_dist_avx2(metric, q, vecs, n, dim, out);
		break;
	case VEXFS_DIST_SSE2:
		if (tails)
			vexfs_dist_mixed_sse2(metric, q, vecs, tails, splits, n, dim, out);
		else
			vexfs_dist_sse2(metric, q, vecs, n, dim, out);
		break;
	default:
		if (tails)
			vexfs_dist_mixed_scalar(metric, q, vecs, tails, splits, n, dim, out);
		else
			vexfs_dist_scalar(metric, q, vecs, n, dim, out);
		break;
	}
}

void vexfs_c_distances(u32 impl, u32 metric, const float *q, const float *const *vecs,
		       const float *const *tails, const u32 *splits, u32 n, u32 dim, u32 *out)
{
	u32 chunk, done, m, i;

	impl = vexfs_runnable_impl(impl);
	if (WARN_ON_ONCE(!irq_fpu_usable())) {
		for (i = 0; i < n; i++)
			out[i] = VEXFS_DIST_NAN_BITS;
		return;
	}
	chunk = dim ? VEXFS_FPU_CHUNK_FLOATS / dim : n;
	if (chunk == 0)
		chunk = 1;
	for (done = 0; done < n; done += m) {
		m = min(chunk, n - done);
		kernel_fpu_begin();
		vexfs_dist_run(impl, metric, q, vecs + done, tails ? tails + done : NULL,
			       tails ? splits + done : NULL, m, dim, out + done);
		kernel_fpu_end();
	}
}

static void vexfs_code_dist_run(u32 impl, u32 metric, const s8 *q, const s8 *const *vecs,
				u32 n, u32 len, u32 *out)
{
	switch (impl) {
	case VEXFS_DIST_AVX512:
		vexfs_code_dist_avx512(metric, q, vecs, n, len, out);
		break;
	case VEXFS_DIST_AVX2:
		vexfs_code_dist_avx2(metric, q, vecs, n, len, out);
		break;
	case VEXFS_DIST_SSE2:
		vexfs_code_dist_sse2(metric, q, vecs, n, len, out);
		break;
	default:
		vexfs_code_dist_scalar(metric, q, vecs, n, len, out);
		break;
	}
}

void vexfs_c_code_distances(u32 impl, u32 metric, const s8 *q, const s8 *const *vecs, u32 n,
			    u32 len, u32 *out)
{
	u32 chunk, done, m, i;

	impl = vexfs_runnable_impl(impl);
	if (len == 0 || len % 32 || len > 4096 || WARN_ON_ONCE(!irq_fpu_usable())) {
		for (i = 0; i < n; i++)
			out[i] = 0xffffffffu;
		return;
	}
	/* Codes are a quarter of the floats' bytes: the same bytes per FPU section. */
	chunk = VEXFS_FPU_CHUNK_FLOATS * 4 / len;
	if (chunk == 0)
		chunk = 1;
	for (done = 0; done < n; done += m) {
		m = min(chunk, n - done);
		kernel_fpu_begin();
		vexfs_code_dist_run(impl, metric, q, vecs + done, m, len, out + done);
		kernel_fpu_end();
	}
}

u32 vexfs_c_pq_table(u32 metric, const float *q, const float *cents, u32 n, u32 dsub, u32 *prim,
		     u32 *norm)
{
	u32 qq, i;

	if (dsub == 0 || dsub > 1024 || n > 1024 / dsub || WARN_ON_ONCE(!irq_fpu_usable())) {
		for (i = 0; i < n; i++)
			prim[i] = norm[i] = VEXFS_DIST_NAN_BITS;
		return VEXFS_DIST_NAN_BITS;
	}
	/* At most one block of centroids (1024 floats): well within one section's budget. */
	kernel_fpu_begin();
	qq = vexfs_pq_table(metric, q, cents, n, dsub, prim, norm);
	kernel_fpu_end();
	return qq;
}

void vexfs_c_pq_distances(u32 metric, const u32 *table, u32 m, const u8 *const *codes, u32 n,
			  u32 *out)
{
	u32 chunk, done, k, i;

	if (m == 0 || m > 256 || WARN_ON_ONCE(!irq_fpu_usable())) {
		for (i = 0; i < n; i++)
			out[i] = 0xffffffffu;
		return;
	}
	/* Two table reads per sub-quantiser and code: bound the section like the floats. */
	chunk = VEXFS_FPU_CHUNK_FLOATS / (2 * m);
	if (chunk == 0)
		chunk = 1;
	for (done = 0; done < n; done += k) {
		k = min(chunk, n - done);
		kernel_fpu_begin();
		vexfs_pq_dist(metric, table, m, codes + done, k, out + done);
		kernel_fpu_end();
	}
}
