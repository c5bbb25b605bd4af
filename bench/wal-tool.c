// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * wal-tool: the vector write-ahead log benchmark's tool (bench/wal.sh). One source, built twice:
 * natively for the host commands, static for the guest ones.
 *
 * Host:
 *   wal-tool gen BASE.fvecs N SIGMA SEED OUT.fvecs
 *       N rows made from the real vectors of BASE (nb rows): row r is a copy of base row r % nb;
 *       copy 0 (r < nb) is the real vector unchanged, later copies get Gaussian noise of standard
 *       deviation SIGMA per component (splitmix64 seeded by SEED and r, Box-Muller) and are
 *       scaled back to unit length. Prints one JSON object with the figures.
 *   wal-tool gt BASE.fvecs QUERIES.fvecs K OUT.ivecs
 *       the exact K nearest rows of BASE to each query (squared L2, ties to the lower row).
 *   wal-tool tsc-mhz
 *       the TSC's rate in MHz, measured against CLOCK_MONOTONIC over 2 s: for WAL_TSC_MHZ.
 * Guest (vexfs mounted):
 *   wal-tool set DIR VECS.fvecs COUNT PER wal|now
 *       ceil(COUNT / PER) files DIR/0, DIR/1, ...: file j is created (O_CREAT|O_TRUNC) and gets
 *       rows j*PER .. j*PER+PER-1 of VECS as chunks 0, 1, ... in one VEXFS_IOC_SET_EMBEDDINGS
 *       (VEXFS_SET_TRUNCATE, and VEXFS_SET_INDEX_NOW with `now`), then is closed. VECS is read
 *       into memory first (untimed). Each SET is timed alone, and the whole loop.
 *   wal-tool search DIR PER QUERIES.fvecs GT.ivecs K EF SECS catchup
 *   wal-tool search DIR PER QUERIES.fvecs GT.ivecs K EF PASSES after [SUBSET]
 *       k-NN searches through VEXFS_IOC_SEARCH on the vexfs holding DIR (files made by `set`
 *       with the same PER: a result's inode names its file j, its chunk c the row j*PER+c), each
 *       timed alone, with recall@K against the first K ids of each GT row.
 *       `catchup`: the queries in order, round and round, each one issued only while vectors
 *       are pending (VEXFS_IOC_STATS just before it), for at most SECS seconds; a line per block
 *       of 100 queries (latency against the pending count), then the summary.
 *       `after`: PASSES passes over every query; the recall also over the first SUBSET queries
 *       (those the catch-up searches covered).
 *   wal-tool run CMD [ARGS...]
 *       runs CMD (stdout to /dev/null) and times it: "TIME SECS T_START T_END".
 *   wal-tool pending PATH
 *       prints the pending count of the vexfs holding PATH.
 *   wal-tool now
 *       prints the time on the clock below, in seconds.
 *
 * The clock: the guest's CLOCK_MONOTONIC ticks in jiffies (4 ms, clocksource refined-jiffies),
 * too coarse for one SET or one search, and it loses time when the host is too busy to deliver
 * the guest's timer ticks (seen: 25% slow over a burst while other guests ran). Under QEMU TCG
 * the guest's RDTSC reads the host's TSC, so every time here is the TSC divided by WAL_TSC_MHZ,
 * the host's TSC rate that bench/wal.sh measures (`wal-tool tsc-mhz`) and passes on: real time,
 * whatever the guest's ticks do. Without WAL_TSC_MHZ the rate is calibrated against
 * CLOCK_MONOTONIC over a second, as bench/guest-search.c does. Times "t" are seconds from an
 * arbitrary origin, the same for every process of one boot. Output: lines "BENCH " + one JSON
 * object. Exit status 0, or 1 with a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "vexfs.h"

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "wal-tool: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

static void die_errno(const char *call, const char *path)
{
	char msg[4200];

	snprintf(msg, sizeof(msg), "%s %s", call, path);
	die(msg, strerror(errno));
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		die("out of memory", NULL);
	return p;
}

static long parse_count(const char *s, long min)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (errno || e == s || *e || v < min)
		die("not a count", s);
	return v;
}

/* An .fvecs/.ivecs file as 32-bit words: *rows rows of *width words (the width checked per row). */
static uint32_t *read_vecs(const char *path, size_t *rows, size_t *width)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint32_t *out, w = 0;
	size_t n, r, row_bytes;
	unsigned char *b;

	if (fd < 0 || fstat(fd, &st) < 0)
		die_errno("open", path);
	n = (size_t)st.st_size;
	if (n < 4)
		die(path, "empty");
	b = xmalloc(n);
	for (size_t done = 0; done < n;) {
		ssize_t got = read(fd, b + done, n - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			die(path, "short read");
		done += (size_t)got;
	}
	close(fd);
	memcpy(&w, b, 4);
	row_bytes = 4 + 4 * (size_t)w;
	if (w == 0 || w > 65536 || n % row_bytes)
		die(path, "not an .fvecs/.ivecs file of one width");
	r = n / row_bytes;
	out = xmalloc(r * w * 4);
	for (size_t i = 0; i < r; i++) {
		uint32_t d;

		memcpy(&d, b + i * row_bytes, 4);
		if (d != w)
			die(path, "rows of different widths");
		memcpy(out + i * w, b + i * row_bytes + 4, 4 * (size_t)w);
	}
	free(b);
	*rows = r;
	*width = w;
	return out;
}

static void write_vecs(const char *path, const void *data, size_t rows, size_t width)
{
	FILE *f = fopen(path, "wb");
	uint32_t w = (uint32_t)width;

	if (!f)
		die_errno("create", path);
	for (size_t i = 0; i < rows; i++)
		if (fwrite(&w, 4, 1, f) != 1 || fwrite((const char *)data + i * width * 4, 4, width, f) != width)
			die_errno("write", path);
	if (fclose(f) != 0)
		die_errno("close", path);
}

/* ---------------------------------------------------------------------------------------------
 * Host: the burst's vectors and their ground truth.
 */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A uniform double in (0, 1). */
static double unit(uint64_t *s)
{
	return ((double)(splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
}

static int cmd_gen(int argc, char **argv)
{
	size_t nb, dim;
	float *base, *out;
	long n;
	double sigma, moved = 0, moved_max = 0;
	uint64_t seed;
	long perturbed = 0;

	if (argc != 7)
		die("usage: wal-tool gen BASE.fvecs N SIGMA SEED OUT.fvecs", NULL);
	base = (float *)read_vecs(argv[2], &nb, &dim);
	n = parse_count(argv[3], 1);
	sigma = strtod(argv[4], NULL);
	seed = (uint64_t)parse_count(argv[5], 0);
	if (!(sigma >= 0 && sigma < 1))
		die("SIGMA must be in [0, 1)", argv[4]);
	out = xmalloc((size_t)n * dim * sizeof(float));
	for (long r = 0; r < n; r++) {
		const float *v = base + (size_t)(r % (long)nb) * dim;
		float *o = out + (size_t)r * dim;

		if ((size_t)r < nb) {
			memcpy(o, v, dim * sizeof(float));
			continue;
		}
		uint64_t s = seed * 0x100000001b3ull ^ (uint64_t)r;
		double norm = 0, d2 = 0;
		double *tmp = xmalloc(dim * sizeof(double));

		for (size_t i = 0; i < dim; i += 2) {
			/* Box-Muller: two normal deviates per pair of uniforms. */
			double u1 = unit(&s), u2 = unit(&s), rad = sqrt(-2 * log(u1));

			tmp[i] = v[i] + sigma * rad * cos(2 * M_PI * u2);
			if (i + 1 < dim)
				tmp[i + 1] = v[i + 1] + sigma * rad * sin(2 * M_PI * u2);
		}
		for (size_t i = 0; i < dim; i++)
			norm += tmp[i] * tmp[i];
		norm = sqrt(norm);
		for (size_t i = 0; i < dim; i++) {
			o[i] = (float)(tmp[i] / norm);
			d2 += ((double)o[i] - v[i]) * ((double)o[i] - v[i]);
		}
		free(tmp);
		moved += sqrt(d2);
		moved_max = sqrt(d2) > moved_max ? sqrt(d2) : moved_max;
		perturbed++;
	}
	write_vecs(argv[6], out, (size_t)n, dim);
	printf("{\"rows\": %ld, \"dim\": %zu, \"base_rows\": %zu, \"copies\": %ld, \"sigma\": %g, \"seed\": %llu, "
	       "\"perturbed\": %ld, \"mean_moved\": %.4f, \"max_moved\": %.4f}\n",
	       n, dim, nb, (n + (long)nb - 1) / (long)nb, sigma, (unsigned long long)seed, perturbed,
	       perturbed ? moved / (double)perturbed : 0.0, moved_max);
	return 0;
}

static float l2sq(const float *a, const float *b, size_t dim)
{
	float acc[8] = { 0 };
	size_t i = 0;

	for (; i + 8 <= dim; i += 8)
		for (size_t j = 0; j < 8; j++) {
			float d = a[i + j] - b[i + j];

			acc[j] += d * d;
		}
	for (; i < dim; i++) {
		float d = a[i] - b[i];

		acc[0] += d * d;
	}
	return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static int cmd_gt(int argc, char **argv)
{
	size_t nb, dim, nq, qdim;
	float *base, *q;
	long k;
	uint32_t *out;
	float *bd;

	if (argc != 6)
		die("usage: wal-tool gt BASE.fvecs QUERIES.fvecs K OUT.ivecs", NULL);
	base = (float *)read_vecs(argv[2], &nb, &dim);
	q = (float *)read_vecs(argv[3], &nq, &qdim);
	k = parse_count(argv[4], 1);
	if (qdim != dim)
		die("queries and base differ in dimension", argv[3]);
	if ((size_t)k > nb)
		die("K above the base rows", argv[4]);
	out = xmalloc(nq * (size_t)k * 4);
	bd = xmalloc((size_t)k * sizeof(float));
	for (size_t i = 0; i < nq; i++) {
		uint32_t *ids = out + i * (size_t)k;
		long have = 0;

		for (size_t r = 0; r < nb; r++) {
			float d = l2sq(q + i * dim, base + r * dim, dim);
			long at;

			if (have == k && d >= bd[k - 1])
				continue;
			at = have < k ? have++ : k - 1;
			while (at > 0 && bd[at - 1] > d) {
				bd[at] = bd[at - 1];
				ids[at] = ids[at - 1];
				at--;
			}
			bd[at] = d;
			ids[at] = (uint32_t)r;
		}
	}
	write_vecs(argv[5], out, nq, (size_t)k);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Timing.
 */

static double mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* TSC ticks per microsecond, from one CLOCK_MONOTONIC tick edge to another `secs` later. */
static double measure_tsc(double secs)
{
	double a = mono(), b, c, prev;
	uint64_t t0, t1;

	while ((b = mono()) == a)
		;
	t0 = __rdtsc();
	prev = b;
	for (;;) {
		c = mono();
		if (c != prev && c - b >= secs) {
			t1 = __rdtsc();
			break;
		}
		prev = c;
	}
	return (double)(t1 - t0) / ((c - b) * 1e6);
}

static double tsc_per_us;
static const char *clock_name = "tsc";

/*
 * The clock of every figure: the TSC at WAL_TSC_MHZ (the host's rate, measured there by
 * `wal-tool tsc-mhz`: under QEMU TCG the guest reads the host's TSC), else calibrated here
 * against CLOCK_MONOTONIC over a second.
 */
static void init_clock(void)
{
	const char *env = getenv("WAL_TSC_MHZ");

	if (tsc_per_us > 0)
		return;
	if (env && *env) {
		tsc_per_us = strtod(env, NULL);
		if (!(tsc_per_us > 1 && tsc_per_us < 100000))
			die("WAL_TSC_MHZ is not a rate in MHz", env);
		clock_name = "tsc-host";
		return;
	}
	tsc_per_us = measure_tsc(1.0);
	clock_name = "tsc-calibrated";
}

/* Seconds on the TSC clock (an arbitrary origin, the same for every process of one boot). */
static double now_s(void)
{
	return (double)__rdtsc() / tsc_per_us / 1e6;
}

static double us_since(uint64_t t0)
{
	return (double)(__rdtsc() - t0) / tsc_per_us;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values. */
static double pct(const double *sorted, size_t n, unsigned p)
{
	size_t r = (n * p + 99) / 100;

	return n ? sorted[r ? r - 1 : 0] : 0;
}

static struct vexfs_stats stats_of(int fd)
{
	struct vexfs_stats st;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	if (ioctl(fd, VEXFS_IOC_STATS, &st) < 0)
		die("VEXFS_IOC_STATS", strerror(errno));
	return st;
}

static int cmd_set(int argc, char **argv)
{
	size_t rows, dim, files;
	uint32_t *vecs;
	long count, per;
	int now;
	double *lat, t0, t1, ack_total = 0;
	char path[4096];
	int dfd;
	struct vexfs_stats st;

	if (argc != 7 || (strcmp(argv[6], "wal") && strcmp(argv[6], "now")))
		die("usage: wal-tool set DIR VECS.fvecs COUNT PER wal|now", NULL);
	count = parse_count(argv[4], 1);
	per = parse_count(argv[5], 1);
	now = !strcmp(argv[6], "now");
	if (per > VEXFS_MAX_CHUNKS)
		die("PER above VEXFS_MAX_CHUNKS", argv[5]);
	vecs = read_vecs(argv[3], &rows, &dim);
	if ((size_t)count > rows)
		die("COUNT above the rows of VECS", argv[4]);
	if (mkdir(argv[2], 0755) < 0 && errno != EEXIST)
		die_errno("mkdir", argv[2]);
	dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		die_errno("open", argv[2]);
	init_clock();
	files = ((size_t)count + (size_t)per - 1) / (size_t)per;
	lat = xmalloc(files * sizeof(double));
	t0 = now_s();
	for (size_t j = 0; j < files; j++) {
		size_t first = j * (size_t)per, n = (size_t)count - first < (size_t)per ? (size_t)count - first : (size_t)per;
		struct vexfs_set_embeddings s;
		int fd;
		uint64_t c0;

		snprintf(path, sizeof(path), "%s/%zu", argv[2], j);
		fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0)
			die_errno("create", path);
		memset(&s, 0, sizeof(s));
		s.size = sizeof(s);
		s.flags = VEXFS_SET_TRUNCATE | (now ? VEXFS_SET_INDEX_NOW : 0);
		s.dim = (__u32)dim;
		s.first_chunk = 0;
		s.count = (__u32)n;
		s.vectors = (__u64)(uintptr_t)(vecs + first * dim);
		c0 = __rdtsc();
		if (ioctl(fd, VEXFS_IOC_SET_EMBEDDINGS, &s) < 0)
			die_errno("VEXFS_IOC_SET_EMBEDDINGS", path);
		lat[j] = us_since(c0);
		ack_total += lat[j];
		if (close(fd) < 0)
			die_errno("close", path);
	}
	t1 = now_s();
	st = stats_of(dfd);
	close(dfd);
	qsort(lat, files, sizeof(double), cmp_double);
	printf("BENCH {\"tool\": \"set\", \"mode\": \"%s\", \"vectors\": %ld, \"per_set\": %ld, \"sets\": %zu, "
	       "\"secs\": %.3f, \"set_secs\": %.3f, \"set_p50_ms\": %.3f, \"set_p99_ms\": %.3f, \"set_max_ms\": %.3f, "
	       "\"pending\": %u, \"vectors_after\": %llu, \"t_start\": %.3f, \"t_end\": %.3f, \"tsc_mhz\": %.1f, "
	       "\"clock\": \"%s\"}\n",
	       now ? "now" : "wal", count, per, files, t1 - t0, ack_total / 1e6, pct(lat, files, 50) / 1e3,
	       pct(lat, files, 99) / 1e3, lat[files - 1] / 1e3, st.pending, (unsigned long long)st.vectors, t0, t1,
	       tsc_per_us, clock_name);
	return 0;
}

struct inofile {
	uint64_t ino;
	uint32_t file;
};

static int cmp_inofile(const void *a, const void *b)
{
	const struct inofile *x = a, *y = b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static long file_of(const struct inofile *map, size_t n, uint64_t ino)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (map[mid].ino == ino)
			return map[mid].file;
		if (map[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* One search: fills res, returns the latency in microseconds and adds its hits to *hits. */
static double search_one(int fd, const uint32_t *query, size_t dim, long k, long ef, const uint32_t *gt_row,
			 const struct inofile *map, size_t nmap, long per, struct vexfs_search_result *res,
			 size_t *hits)
{
	struct vexfs_search s;
	uint64_t c0;
	double us;

	memset(&s, 0, sizeof(s));
	s.size = sizeof(s);
	s.dim = (__u32)dim;
	s.k = (__u32)k;
	s.ef_search = (__u32)ef;
	s.query = (__u64)(uintptr_t)query;
	s.results = (__u64)(uintptr_t)res;
	c0 = __rdtsc();
	if (ioctl(fd, VEXFS_IOC_SEARCH, &s) < 0)
		die("VEXFS_IOC_SEARCH", strerror(errno));
	us = us_since(c0);
	for (size_t i = 0; i < s.count && i < (size_t)k; i++) {
		long f = file_of(map, nmap, res[i].ino);
		uint64_t row = (uint64_t)f * (uint64_t)per + res[i].chunk;

		for (long j = 0; f >= 0 && res[i].chunk < (uint32_t)per && j < k; j++)
			if (gt_row[j] == row) {
				(*hits)++;
				break;
			}
	}
	return us;
}

/* One BENCH line of latency figures: the n values of lat are sorted here. */
static void print_lat(const char *head, double *lat, size_t n, size_t hits, long k, const char *tail)
{
	double sum = 0;

	qsort(lat, n, sizeof(double), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += lat[i];
	printf("BENCH {%s, \"queries\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, "
	       "\"max_us\": %.1f, \"recall\": %.4f%s}\n",
	       head, n, pct(lat, n, 50), pct(lat, n, 99), n ? sum / (double)n : 0, n ? lat[n - 1] : 0,
	       n ? (double)hits / (double)(n * (size_t)k) : 0, tail);
	fflush(stdout);
}

static int cmd_search(int argc, char **argv)
{
	const char *dir;
	size_t nq, dim, ng, gw, nmap = 0, cap = 1024, subset = 0;
	uint32_t *queries, *gt;
	long per, k, ef, limit;
	int catchup, fd;
	struct inofile *map;
	struct vexfs_stats st;
	char path[4096], head[512], tail[256];

	if ((argc != 10 && argc != 11) || (strcmp(argv[9], "catchup") && strcmp(argv[9], "after")))
		die("usage: wal-tool search DIR PER QUERIES.fvecs GT.ivecs K EF SECS catchup | "
		    "wal-tool search DIR PER QUERIES.fvecs GT.ivecs K EF PASSES after [SUBSET]", NULL);
	dir = argv[2];
	per = parse_count(argv[3], 1);
	k = parse_count(argv[6], 1);
	ef = parse_count(argv[7], 1);
	limit = parse_count(argv[8], 1);
	catchup = !strcmp(argv[9], "catchup");
	if (argc == 11)
		subset = (size_t)parse_count(argv[10], 1);
	if (k > VEXFS_MAX_K || ef < k || ef > VEXFS_MAX_EF)
		die("bad K or EF", NULL);
	queries = read_vecs(argv[4], &nq, &dim);
	gt = read_vecs(argv[5], &ng, &gw);
	if (ng != nq || gw < (size_t)k)
		die("the ground truth does not match the queries (rows, or fewer than K ids)", argv[5]);
	if (subset > nq)
		subset = nq;
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die_errno("open", dir);
	st = stats_of(fd);
	if (st.dim != dim)
		die("the queries' dimension is not the filesystem's", argv[4]);

	/* Inode -> file index, from DIR/0, DIR/1, ... until the first missing one. */
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
		map[nmap].file = (uint32_t)nmap;
		nmap++;
	}
	if (nmap == 0)
		die("no files", dir);
	qsort(map, nmap, sizeof(*map), cmp_inofile);
	init_clock();

	struct vexfs_search_result *res = xmalloc((size_t)k * sizeof(*res));

	if (catchup) {
		/*
		 * Queries in order, round and round, each issued only while vectors are pending (the
		 * count read just before it), for at most `limit` seconds. Blocks of 100 queries
		 * trace latency against the pending count.
		 */
		enum { BLOCK = 100 };
		size_t cap_all = 4096, n = 0, hits = 0, bhits = 0, nb = 0;
		double *all = xmalloc(cap_all * sizeof(double)), blk[BLOCK], t0 = now_s(), tb = t0;
		uint32_t pend, first_pend = 0, last_pend = 0, bpend = 0;

		for (;;) {
			size_t q = n % nq;

			pend = stats_of(fd).pending;
			if (pend == 0 || now_s() - t0 >= (double)limit)
				break;
			if (n == 0)
				first_pend = pend;
			if (nb == 0) {
				bpend = pend;
				tb = now_s();
			}
			last_pend = pend;
			if (n == cap_all) {
				cap_all *= 2;
				all = realloc(all, cap_all * sizeof(double));
				if (!all)
					die("out of memory", NULL);
			}
			size_t h = 0;

			all[n] = search_one(fd, queries + q * dim, dim, k, ef, gt + q * gw, map, nmap, per, res, &h);
			blk[nb++] = all[n];
			hits += h;
			bhits += h;
			n++;
			if (nb == BLOCK) {
				snprintf(head, sizeof(head),
					 "\"tool\": \"search-block\", \"first\": %zu, \"pending_start\": %u, "
					 "\"pending_end\": %u, \"t_start\": %.3f, \"t_end\": %.3f",
					 n - BLOCK, bpend, pend, tb, now_s());
				print_lat(head, blk, BLOCK, bhits, k, "");
				nb = 0;
				bhits = 0;
			}
		}
		snprintf(head, sizeof(head),
			 "\"tool\": \"search\", \"mode\": \"catchup\", \"k\": %ld, \"ef\": %ld, \"limit_secs\": %ld, "
			 "\"secs\": %.3f, \"distinct_queries\": %zu, \"pending_first\": %u, \"pending_last\": %u, "
			 "\"pending_after\": %u, \"t_start\": %.3f, \"t_end\": %.3f",
			 k, ef, limit, now_s() - t0, n < nq ? n : nq, first_pend, last_pend, pend, t0, now_s());
		print_lat(head, all, n, hits, k, "");
		close(fd);
		return 0;
	}

	/* After the catch-up: `limit` passes over every query; recall also over the first `subset`. */
	double *lat = xmalloc(nq * limit * sizeof(double));
	size_t hits = 0, sub_hits = 0;
	uint32_t pend0 = stats_of(fd).pending;
	double t0 = now_s();

	for (long p = 0; p < limit; p++) {
		for (size_t q = 0; q < nq; q++) {
			size_t h = 0;

			lat[(size_t)p * nq + q] =
				search_one(fd, queries + q * dim, dim, k, ef, gt + q * gw, map, nmap, per, res, &h);
			hits += h;
			if (q < subset)
				sub_hits += h;
		}
	}
	snprintf(head, sizeof(head),
		 "\"tool\": \"search\", \"mode\": \"after\", \"k\": %ld, \"ef\": %ld, \"passes\": %ld, "
		 "\"secs\": %.3f, \"pending_start\": %u, \"pending_end\": %u",
		 k, ef, limit, now_s() - t0, pend0, stats_of(fd).pending);
	snprintf(tail, sizeof(tail), ", \"subset\": %zu, \"subset_recall\": %.4f", subset,
		 subset ? (double)sub_hits / (double)(subset * (size_t)k * (size_t)limit) : 0);
	print_lat(head, lat, nq * (size_t)limit, hits, k, tail);
	close(fd);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	double t0, t1;
	pid_t pid;
	int status;

	if (argc < 3)
		die("usage: wal-tool run CMD [ARGS...]", NULL);
	init_clock();
	t0 = now_s();
	pid = fork();
	if (pid < 0)
		die("fork", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid", strerror(errno));
	t1 = now_s();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "wal-tool: %s exited with status %d\n", argv[2],
			WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 1;
	}
	printf("TIME %.3f %.3f %.3f\n", t1 - t0, t0, t1);
	return 0;
}

static int cmd_pending(int argc, char **argv)
{
	int fd;

	if (argc != 3)
		die("usage: wal-tool pending PATH", NULL);
	fd = open(argv[2], O_RDONLY);
	if (fd < 0)
		die_errno("open", argv[2]);
	printf("%u\n", stats_of(fd).pending);
	close(fd);
	return 0;
}

static int cmd_now(void)
{
	init_clock();
	printf("%.3f\n", now_s());
	return 0;
}

static int cmd_tsc_mhz(void)
{
	printf("%.3f\n", measure_tsc(2.0));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2) {
		if (!strcmp(argv[1], "gen"))
			return cmd_gen(argc, argv);
		if (!strcmp(argv[1], "gt"))
			return cmd_gt(argc, argv);
		if (!strcmp(argv[1], "set"))
			return cmd_set(argc, argv);
		if (!strcmp(argv[1], "search"))
			return cmd_search(argc, argv);
		if (!strcmp(argv[1], "run"))
			return cmd_run(argc, argv);
		if (!strcmp(argv[1], "pending"))
			return cmd_pending(argc, argv);
		if (!strcmp(argv[1], "now") && argc == 2)
			return cmd_now();
		if (!strcmp(argv[1], "tsc-mhz") && argc == 2)
			return cmd_tsc_mhz();
	}
	die("usage: wal-tool gen|gt|tsc-mhz|set|search|run|pending|now ... (see the comment at the top of bench/wal-tool.c)", NULL);
	return 1;
}
