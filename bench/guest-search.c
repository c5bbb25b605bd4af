// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * guest-search: the kernel side of the search benchmark (bench/guest.sh runs it in the guest).
 *
 *   guest-search MNT DIR QUERY.fvecs GT.ivecs EF[,EF...] [-k K] [-p PASSES] [-d PREFIX] [-t T] [-c]
 *
 * With -c every search asks for VEXFS_SEARCH_CODE_DISTANCES (ranked by the codes' distances,
 * no float32 vector read; the "kernel" lines then say "code_distances": 1).
 *
 * Every row of QUERY.fvecs goes through VEXFS_IOC_SEARCH (include/vexfs.h) on the vexfs mounted
 * at MNT, once per pass, for each EF. Each ioctl is timed alone (TSC, see calibrate_tsc); the pass with
 * the shortest total is kept, and its per-query latencies give p50 and p99 (nearest rank).
 * Before the first EF an untimed pass at the largest EF warms the caches.
 *
 * DIR holds the imported files DIR/0, DIR/1, ... (vexctl import): row i of the base set is the
 * file DIR/i, so a result's inode number names its row and recall@K is computed against the
 * first K ids of each GT row. With -d, the first pass's results go to PREFIX-EF.txt, one line
 * per result "QUERY RANK INO CHUNK DISTANCE-BITS" (hex), the format of bench_search's dump, so
 * the two can be compared byte for byte.
 *
 * With -t T (T > 1), each EF then runs 3 x PASSES passes with T threads searching at once
 * (pthreads, one fd shared), the threads taking the next query from a shared counter: a pass is
 * timed whole (TSC, from before the threads start to after they end) and its results must equal
 * the single-thread first pass's ("identical"). Each follows a pass of the same harness with 1
 * thread, so that the two compare like with like (the same timing and overheads, the same moment
 * of a noisy host); the best of each is kept. The passes are short, hence three times as many.
 *
 * The "kernel" line also gives the index cache's work over the single-thread timed passes
 * (VEXFS_IOC_INDEX_MEM before and after them): 4 KiB block reads per query, the hit rate, and
 * the bytes held at the end (all -1 with a module that lacks the call); and those reads per query
 * per vector region (VEXFS_IOC_INDEX_READS: "region_reads_per_query", left out with a module that
 * lacks that call).
 *
 * Output: one line per EF ("side": "kernel"), with -t two more per EF ("side": "kernel-mt",
 * "threads" 1 and T),
 * each "BENCH " then a JSON object; and a first line with the index's VEXFS_IOC_STATS. Exit
 * status 0, or 1 with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "vexfs.h"

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "guest-search: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		die("out of memory", NULL);
	return p;
}

/* An .fvecs/.ivecs file as 32-bit words: *rows rows of *width words. */
static uint32_t *read_vecs(const char *path, size_t *rows, size_t *width)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	unsigned char *b;
	uint32_t *out;
	size_t off = 0, done = 0, r = 0, w = 0, n;

	if (fd < 0 || fstat(fd, &st) < 0)
		die(path, strerror(errno));
	n = (size_t)st.st_size;
	b = xmalloc(n);
	while (done < n) {
		ssize_t got = read(fd, b + done, n - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			die(path, "short read");
		done += (size_t)got;
	}
	close(fd);
	if (n < 4)
		die(path, "empty");
	memcpy(&w, b, 4);
	w &= 0xffffffffu;
	if (w == 0 || n % (4 + 4 * w))
		die(path, "not an .fvecs/.ivecs file of one width");
	r = n / (4 + 4 * w);
	out = xmalloc(r * w * 4);
	for (size_t i = 0; i < r; i++) {
		uint32_t d;

		memcpy(&d, b + off, 4);
		if (d != w)
			die(path, "rows of different widths");
		memcpy(out + i * w, b + off + 4, 4 * w);
		off += 4 + 4 * w;
	}
	free(b);
	*rows = r;
	*width = w;
	return out;
}

struct inorow {
	uint64_t ino;
	uint32_t row;
};

static int cmp_inorow(const void *a, const void *b)
{
	const struct inorow *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Row of inode `ino`, or -1. */
static long row_of(const struct inorow *map, size_t n, uint64_t ino)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (map[mid].ino == ino)
			return map[mid].row;
		if (map[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * The guest's CLOCK_MONOTONIC ticks in jiffies (4 ms) under the test kernel's config, too coarse
 * for one search, so searches are timed with the TSC (under QEMU TCG: the host's clock, scaled),
 * calibrated here against CLOCK_MONOTONIC from one tick edge to another about a second later.
 */
static double tsc_per_ns;

static void calibrate_tsc(void)
{
	uint64_t a = mono_ns(), b, t0, t1, ns0, ns1, prev;

	while ((b = mono_ns()) == a)
		;
	t0 = __rdtsc();
	ns0 = prev = b;
	for (;;) {
		uint64_t c = mono_ns();

		if (c != prev && c - ns0 >= 1000000000u) {
			t1 = __rdtsc();
			ns1 = c;
			break;
		}
		prev = c;
	}
	tsc_per_ns = (double)(t1 - t0) / (double)(ns1 - ns0);
}

static uint64_t now_ns(void)
{
	return (uint64_t)((double)__rdtsc() / tsc_per_ns);
}

/* VEXFS_SEARCH_CODE_DISTANCES with -c, else 0. */
static __u32 search_flags;

/* One VEXFS_IOC_SEARCH of `query` (dim words) for k results at ef into res; *count gets how
 * many. Returns 0, or the errno. */
static int search_one(int fd, const uint32_t *query, size_t dim, size_t k, unsigned long ef,
		      struct vexfs_search_result *res, uint32_t *count)
{
	struct vexfs_search s;

	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	s.flags = search_flags;
	s.dim = (__u32)dim;
	s.k = (__u32)k;
	s.ef_search = (__u32)ef;
	s.query = (__u64)(uintptr_t)query;
	s.results = (__u64)(uintptr_t)res;
	if (ioctl(fd, VEXFS_IOC_SEARCH, &s) < 0)
		return errno;
	*count = s.count;
	return 0;
}

/* One thread of a threaded pass: the next query of *next (shared) at ef, until none is left. */
struct worker {
	pthread_t tid;
	int fd;
	size_t *next, nq, dim, k;
	unsigned long ef;
	const uint32_t *queries;
	struct vexfs_search_result *res;
	uint32_t *counts;
	int err;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	while (!w->err) {
		size_t q = __atomic_fetch_add(w->next, 1, __ATOMIC_RELAXED);

		if (q >= w->nq)
			break;
		w->err = search_one(w->fd, w->queries + q * w->dim, w->dim, w->k, w->ef, w->res + q * w->k,
				    &w->counts[q]);
	}
	return NULL;
}

/* One threaded pass of every query at ef by `threads` threads (at most 64); returns its wall
 * time in ns. Dies on an error. */
static uint64_t threaded_pass(int fd, unsigned long threads, size_t nq, size_t dim, size_t k,
			      unsigned long ef, const uint32_t *queries, struct vexfs_search_result *res,
			      uint32_t *counts)
{
	struct worker w[64];
	size_t next = 0;
	uint64_t t0 = now_ns();

	for (unsigned long t = 0; t < threads; t++) {
		w[t] = (struct worker){ .fd = fd, .next = &next, .nq = nq, .dim = dim, .k = k, .ef = ef,
					.queries = queries, .res = res, .counts = counts };
		if (pthread_create(&w[t].tid, NULL, work, &w[t]) != 0)
			die("pthread_create", NULL);
	}
	for (unsigned long t = 0; t < threads; t++) {
		pthread_join(w[t].tid, NULL);
		if (w[t].err)
			die("VEXFS_IOC_SEARCH (threaded)", strerror(w[t].err));
	}
	return now_ns() - t0;
}

/* Nearest-rank percentile of sorted values. */
/* VEXFS_IOC_INDEX_MEM now; *ok set to 0 when the module lacks it. */
static struct vexfs_index_mem index_mem(int fd, int *ok)
{
	struct vexfs_index_mem m = { .size = sizeof(m) };

	if (ioctl(fd, VEXFS_IOC_INDEX_MEM, &m) < 0) {
		memset(&m, 0, sizeof(m));
		*ok = 0;
	}
	return m;
}

/* VEXFS_IOC_INDEX_READS now (the device reads per vector region); *ok set to 0 when the module
 * lacks it. */
static struct vexfs_index_reads index_reads(int fd, int *ok)
{
	struct vexfs_index_reads r = { .size = sizeof(r) };

	if (ioctl(fd, VEXFS_IOC_INDEX_READS, &r) < 0) {
		memset(&r, 0, sizeof(r));
		*ok = 0;
	}
	return r;
}

static uint64_t pct(const uint64_t *sorted, size_t n, unsigned p)
{
	size_t r = (n * p + 99) / 100;

	return sorted[r ? r - 1 : 0];
}

int main(int argc, char **argv)
{
	const char *mnt, *dir, *qpath, *gpath, *prefix = NULL;
	unsigned long k = 10, passes = 2, threads = 1;
	size_t nq, dim, ng, gw, nmap = 0, cap = 1024;
	uint32_t *queries, *gt;
	struct inorow *map;
	unsigned long efs[64];
	size_t nef = 0;
	struct vexfs_stats st;
	int fd, opt;
	char path[4096];

	while ((opt = getopt(argc, argv, "k:p:d:t:c")) != -1) {
		switch (opt) {
		case 'c': search_flags = VEXFS_SEARCH_CODE_DISTANCES; break;
		case 't': threads = strtoul(optarg, NULL, 10); break;
		case 'k': k = strtoul(optarg, NULL, 10); break;
		case 'p': passes = strtoul(optarg, NULL, 10); break;
		case 'd': prefix = optarg; break;
		default: die("usage: guest-search MNT DIR QUERY.fvecs GT.ivecs EF[,EF...] [-k K] [-p PASSES] [-d PREFIX] [-t T] [-c]", NULL);
		}
	}
	if (argc - optind != 5)
		die("usage: guest-search MNT DIR QUERY.fvecs GT.ivecs EF[,EF...] [-k K] [-p PASSES] [-d PREFIX] [-t T] [-c]", NULL);
	mnt = argv[optind];
	dir = argv[optind + 1];
	qpath = argv[optind + 2];
	gpath = argv[optind + 3];
	for (char *s = argv[optind + 4], *e; *s && nef < 64; s = *e ? e + 1 : e) {
		efs[nef++] = strtoul(s, &e, 10);
		if (e == s || (*e && *e != ','))
			die("bad EF list", argv[optind + 4]);
	}
	if (k == 0 || k > VEXFS_MAX_K || passes == 0 || nef == 0 || threads == 0 || threads > 64)
		die("bad -k, -p, -t or EF list", NULL);

	calibrate_tsc();
	fd = open(mnt, O_RDONLY);
	if (fd < 0)
		die(mnt, strerror(errno));
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	if (ioctl(fd, VEXFS_IOC_STATS, &st) < 0)
		die("VEXFS_IOC_STATS", strerror(errno));
	printf("BENCH {\"side\": \"kernel-stats\", \"dim\": %u, \"vectors\": %llu, \"capacity\": %llu, "
	       "\"levels\": %u, \"bytes_on_disk\": %llu, \"distance_impl\": \"%s\", \"tsc_mhz\": %.3f}\n",
	       st.dim, (unsigned long long)st.vectors, (unsigned long long)st.capacity, st.levels,
	       (unsigned long long)st.bytes_on_disk,
	       st.distance_impl == VEXFS_DIST_AVX512 ? "avx512" :
	       st.distance_impl == VEXFS_DIST_AVX2 ? "avx2" :
	       st.distance_impl == VEXFS_DIST_SSE2 ? "sse2" : "scalar", tsc_per_ns * 1e3);
	fflush(stdout);

	queries = read_vecs(qpath, &nq, &dim);
	gt = read_vecs(gpath, &ng, &gw);
	if (dim != st.dim)
		die("the queries' dimension is not the filesystem's", qpath);
	if (ng != nq || gw < k)
		die("the ground truth does not match the queries (rows, or fewer than K ids)", gpath);

	/* Inode -> row, from DIR/0, DIR/1, ... until the first missing one. */
	map = xmalloc(cap * sizeof(*map));
	for (;;) {
		struct stat fst;

		snprintf(path, sizeof(path), "%s/%zu", dir, nmap);
		if (stat(path, &fst) < 0)
			break;
		if (nmap == cap) {
			cap *= 2;
			map = realloc(map, cap * sizeof(*map));
			if (!map)
				die("out of memory", NULL);
		}
		map[nmap].ino = fst.st_ino;
		map[nmap].row = (uint32_t)nmap;
		nmap++;
	}
	if (nmap == 0)
		die("no imported files", dir);
	qsort(map, nmap, sizeof(*map), cmp_inorow);

	struct vexfs_search_result *res = xmalloc(nq * k * sizeof(*res));
	struct vexfs_search_result *first = xmalloc(nq * k * sizeof(*res));
	uint32_t *counts = xmalloc(nq * sizeof(*counts));
	uint64_t *lat = xmalloc(nq * sizeof(*lat));
	uint64_t *best_lat = xmalloc(nq * sizeof(*lat));
	unsigned long maxef = 0;

	for (size_t e = 0; e < nef; e++)
		maxef = efs[e] > maxef ? efs[e] : maxef;

	/* One search pass; returns its total time (sum of the timed ioctls). */
#define PASS(EF, TIMES)                                                                          \
	({                                                                                       \
		uint64_t tot = 0;                                                                \
		for (size_t q = 0; q < nq; q++) {                                                \
			uint64_t t0 = now_ns();                                                  \
			int err = search_one(fd, queries + q * dim, dim, k, (EF), res + q * k,  \
					     &counts[q]);                                        \
			if (err)                                                                 \
				die("VEXFS_IOC_SEARCH", strerror(err));                          \
			uint64_t dt = now_ns() - t0;                                             \
			(TIMES)[q] = dt;                                                         \
			tot += dt;                                                               \
		}                                                                                \
		tot;                                                                             \
	})

	(void)PASS(maxef < k ? k : maxef, lat); /* warm-up, untimed */

	for (size_t e = 0; e < nef; e++) {
		unsigned long ef = efs[e];
		uint64_t best = UINT64_MAX, first_tot = 0;
		size_t hits = 0, unstable = 0;

		if (ef < k)
			continue;
		int mem_ok = 1;
		struct vexfs_index_mem m0 = index_mem(fd, &mem_ok);
		int reads_ok = 1;
		struct vexfs_index_reads r0 = index_reads(fd, &reads_ok);

		for (unsigned long p = 0; p < passes; p++) {
			uint64_t tot = PASS(ef, lat);

			if (p == 0) {
				first_tot = tot;
				memcpy(first, res, nq * k * sizeof(*res));
				for (size_t q = 0; q < nq; q++) {
					for (size_t i = 0; i < counts[q] && i < k; i++) {
						long r = row_of(map, nmap, res[q * k + i].ino);

						for (size_t j = 0; r >= 0 && j < k; j++)
							if (gt[q * gw + j] == (uint32_t)r) {
								hits++;
								break;
							}
					}
				}
				if (prefix) {
					snprintf(path, sizeof(path), "%s-%lu.txt", prefix, ef);
					FILE *f = fopen(path, "w");

					if (!f)
						die(path, strerror(errno));
					for (size_t q = 0; q < nq; q++)
						for (size_t i = 0; i < counts[q] && i < k; i++) {
							uint32_t bits;

							memcpy(&bits, &res[q * k + i].distance, 4);
							fprintf(f, "%zu %zu %llu %u %08x\n", q, i,
								(unsigned long long)res[q * k + i].ino,
								res[q * k + i].chunk, bits);
						}
					if (fclose(f) != 0)
						die(path, strerror(errno));
				}
			} else if (memcmp(first, res, nq * k * sizeof(*res))) {
				unstable++;
			}
			if (tot < best) {
				best = tot;
				memcpy(best_lat, lat, nq * sizeof(*lat));
			}
		}
		(void)first_tot;
		struct vexfs_index_mem m1 = index_mem(fd, &mem_ok);
		struct vexfs_index_reads r1 = index_reads(fd, &reads_ok);
		double searches = (double)nq * (double)passes;
		char regions[256] = "";

		if (reads_ok)
			snprintf(regions, sizeof(regions),
				 ", \"region_reads_per_query\": {\"bitmap\": %.2f, \"map\": %.2f, \"data\": %.2f, "
				 "\"hnsw\": %.2f, \"codes\": %.2f}",
				 (double)(r1.bitmap_reads - r0.bitmap_reads) / searches,
				 (double)(r1.map_reads - r0.map_reads) / searches,
				 (double)(r1.data_reads - r0.data_reads) / searches,
				 (double)(r1.hnsw_reads - r0.hnsw_reads) / searches,
				 (double)(r1.codes_reads - r0.codes_reads) / searches);
		double reads_pq = mem_ok ? (double)(m1.block_reads - m0.block_reads) / searches : -1;
		uint64_t lookups = (m1.cache_hits - m0.cache_hits) + (m1.cache_misses - m0.cache_misses);
		double hit_rate = mem_ok && lookups ? (double)(m1.cache_hits - m0.cache_hits) / (double)lookups : -1;
		double held = mem_ok ? (double)m1.mem_bytes : -1;

		if (threads > 1) {
			unsigned long counts_of[2] = { 1, threads }, mt_passes = 3 * passes;
			uint64_t mt_best[2] = { UINT64_MAX, UINT64_MAX };
			int identical = 1;

			for (unsigned long p = 0; p < mt_passes; p++) {
				for (int i = 0; i < 2; i++) {
					uint64_t dt = threaded_pass(fd, counts_of[i], nq, dim, k, ef, queries, res,
								    counts);

					mt_best[i] = dt < mt_best[i] ? dt : mt_best[i];
					identical &= !memcmp(first, res, nq * k * sizeof(*res));
				}
			}
			for (int i = 0; i < 2; i++)
				printf("BENCH {\"side\": \"kernel-mt\", \"threads\": %lu, \"ef\": %lu, \"k\": %lu, "
				       "\"queries\": %zu, \"passes\": %lu, \"qps\": %.1f, \"identical\": %s}\n",
				       counts_of[i], ef, k, nq, mt_passes, (double)nq * 1e9 / (double)mt_best[i],
				       identical ? "true" : "false");
		}
		qsort(best_lat, nq, sizeof(*best_lat), cmp_u64);
		printf("BENCH {\"side\": \"kernel\", \"ef\": %lu, \"k\": %lu, \"queries\": %zu, \"passes\": %lu, "
		       "\"recall\": %.4f, \"qps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, "
		       "\"unstable_passes\": %zu, \"block_reads_per_query\": %.2f, \"cache_hit_rate\": %.4f, "
		       "\"mem_bytes\": %.0f, \"code_distances\": %d%s}\n",
		       ef, k, nq, passes, (double)hits / (double)(nq * k), (double)nq * 1e9 / (double)best,
		       pct(best_lat, nq, 50) / 1e3, pct(best_lat, nq, 99) / 1e3,
		       (double)best / (double)nq / 1e3, unstable, reads_pq, hit_rate, held, search_flags != 0,
		       regions);
		fflush(stdout);
	}
	close(fd);
	return 0;
}
