// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * vexfs-abi-check VEXFS_DIR OTHER_FILE
 *
 * Issues every kind of bad vexfs ioctl that include/vexfs.h documents and checks that each fails
 * with its documented errno, and that the good ones around them succeed: one line per case,
 * "PASS name: ERRNO" or "FAIL name: expected ERRNO, got ERRNO". Each bad call changes exactly one
 * thing of an otherwise valid call, so that the errno can only come from that one thing.
 *
 * VEXFS_DIR: a directory of a mounted, writable vexfs; the checks create the file
 * VEXFS_DIR/abi-check.scratch, give it embeddings, and remove both at the end (the index's
 * live vector count is the same afterwards). OTHER_FILE: a file on another filesystem (tmpfs),
 * for ENOTTY.
 *
 * Exit status: 0 if every case passed, 1 if any failed, 2 if the checks could not be set up.
 * Uses only include/vexfs.h and libc.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vexfs.h"

static int passed, failed;

static const char *errname(int e)
{
	static char other[32];

	switch (e) {
	case 0: return "success";
	case EINVAL: return "EINVAL";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case ERANGE: return "ERANGE";
	case ENOTTY: return "ENOTTY";
	case EISDIR: return "EISDIR";
	case EFAULT: return "EFAULT";
	case EROFS: return "EROFS";
	case ENOSPC: return "ENOSPC";
	case EUCLEAN: return "EUCLEAN";
	case ENOENT: return "ENOENT";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOMEM: return "ENOMEM";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENODATA: return "ENODATA";
	case EIO: return "EIO";
	}
	snprintf(other, sizeof(other), "errno %d", e);
	return other;
}

static void report(const char *name, int got, int want)
{
	if (got == want) {
		printf("PASS %s: %s\n", name, errname(want));
		passed++;
	} else {
		printf("FAIL %s: expected %s, got %s\n", name, errname(want), errname(got));
		failed++;
	}
}

/* A condition checked after a call (a returned count, a vector read back). */
static void report_true(const char *name, int ok, const char *detail)
{
	if (ok) {
		printf("PASS %s\n", name);
		passed++;
	} else {
		printf("FAIL %s: %s\n", name, detail);
		failed++;
	}
}

/* Runs one ioctl: 0 on success, else its errno. */
static int call(int fd, unsigned long cmd, void *arg)
{
	errno = 0;
	return ioctl(fd, cmd, arg) == 0 ? 0 : (errno ? errno : -1);
}

#define CHECK(name, fd, cmd, arg, want) report(name, call(fd, cmd, arg), want)

static void setup_failed(const char *what)
{
	fprintf(stderr, "vexfs-abi-check: cannot set up: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* The argument structs followed by 8 more bytes: a caller with a newer, larger struct. */
struct set_big { struct vexfs_set_embeddings a; __u64 tail; };
struct get_big { struct vexfs_get_embeddings a; __u64 tail; };
struct remove_big { struct vexfs_remove_embeddings a; __u64 tail; };
struct search_big { struct vexfs_search a; __u64 tail; };
struct stats_big { struct vexfs_stats a; __u64 tail; };

static __u32 dim;
static float *vec;      /* one valid vector */
static float *many;     /* room for VEXFS_MAX_CHUNKS + 1 valid vectors */
static float *bad;      /* one vector with a NaN or infinity */
static float *readback; /* room for 2 vectors */
static struct vexfs_search_result *results; /* room for VEXFS_MAX_K + 1 results */

static struct vexfs_set_embeddings set_arg(__u32 first, __u32 count, const float *v)
{
	struct vexfs_set_embeddings a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.dim = dim;
	a.first_chunk = first;
	a.count = count;
	a.vectors = (__u64)(uintptr_t)v;
	return a;
}

static struct vexfs_get_embeddings get_arg(__u32 first, __u32 count)
{
	struct vexfs_get_embeddings a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.dim = dim;
	a.first_chunk = first;
	a.count = count;
	a.vectors = (__u64)(uintptr_t)readback;
	return a;
}

static struct vexfs_remove_embeddings remove_arg(void)
{
	struct vexfs_remove_embeddings a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	return a;
}

static struct vexfs_search search_arg(__u32 k, __u32 ef, const float *q)
{
	struct vexfs_search a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.dim = dim;
	a.k = k;
	a.ef_search = ef;
	a.query = (__u64)(uintptr_t)q;
	a.results = (__u64)(uintptr_t)results;
	return a;
}

static struct vexfs_stats stats_arg(void)
{
	struct vexfs_stats a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	return a;
}

/* The scratch file's chunk count (GET into `readback`), or -1 if GET fails. */
static long chunks_of(int fd)
{
	struct vexfs_get_embeddings g = get_arg(0, 1);

	return call(fd, VEXFS_IOC_GET_EMBEDDINGS, &g) ? -1 : (long)g.total;
}

static void check_set(int rw, int ro, int dirfd)
{
	struct vexfs_set_embeddings a;
	struct set_big big;

	a = set_arg(0, 1, vec);
	a.dim = dim + 1;
	CHECK("set: dim differs from the filesystem's", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, 0, vec);
	CHECK("set: count 0", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, 1, vec);
	a.flags = 1u << 2;
	CHECK("set: unknown flag bit 2", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, 1, vec);
	a.flags = VEXFS_SET_INDEX_NOW;
	CHECK("set: VEXFS_SET_INDEX_NOW", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, 0);
	a = set_arg(0, 1, vec);
	a.flags = 1u << 31;
	CHECK("set: unknown flag bit 31", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, 1, vec);
	a.reserved0 = 1;
	CHECK("set: reserved0 non-zero", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, 1, vec);
	a.reserved[3] = 1;
	CHECK("set: reserved[3] non-zero", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	bad[1] = NAN;
	a = set_arg(0, 1, bad);
	CHECK("set: NaN component", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	bad[1] = -INFINITY;
	a = set_arg(0, 1, bad);
	CHECK("set: -Inf component", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(2, 1, vec);
	CHECK("set: first_chunk 2 leaves a gap after 1 chunk", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	a = set_arg(0, VEXFS_MAX_CHUNKS + 1, many);
	CHECK("set: count VEXFS_MAX_CHUNKS + 1", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, E2BIG);
	a = set_arg(1, VEXFS_MAX_CHUNKS, many);
	CHECK("set: first_chunk 1 + count VEXFS_MAX_CHUNKS", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, E2BIG);
	a = set_arg(0, 1, vec);
	a.size = sizeof(a) - 8;
	CHECK("set: size 8 bytes too small", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EINVAL);
	big.a = set_arg(0, 1, vec);
	big.a.size = sizeof(big);
	big.tail = 1;
	CHECK("set: size 8 bytes larger, non-zero tail", rw, VEXFS_IOC_SET_EMBEDDINGS, &big, E2BIG);
	a = set_arg(0, 1, vec);
	CHECK("set: file open read-only", ro, VEXFS_IOC_SET_EMBEDDINGS, &a, EBADF);
	/* A directory is necessarily open read-only: EISDIR is the only documented answer that a
	 * SET on a directory can ever give, so it must take precedence over EBADF. */
	a = set_arg(0, 1, vec);
	CHECK("set: on a directory", dirfd, VEXFS_IOC_SET_EMBEDDINGS, &a, EISDIR);
	a = set_arg(0, 1, (const float *)(uintptr_t)8);
	CHECK("set: unmapped vectors pointer", rw, VEXFS_IOC_SET_EMBEDDINGS, &a, EFAULT);
}

static void check_get(int ro, long total)
{
	struct vexfs_get_embeddings a;
	struct get_big big;

	a = get_arg(0, 1);
	a.dim = dim + 1;
	CHECK("get: dim differs from the filesystem's", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, EINVAL);
	a = get_arg(0, 1);
	a.flags = 1;
	CHECK("get: unknown flag", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, EINVAL);
	a = get_arg(0, 1);
	a.reserved[0] = 1;
	CHECK("get: reserved[0] non-zero", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, EINVAL);
	a = get_arg((__u32)total + 1, 1);
	CHECK("get: first_chunk past total", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, ERANGE);
	a = get_arg((__u32)total, 1);
	CHECK("get: first_chunk == total (nothing to copy)", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, 0);
	report_true("get: first_chunk == total copies 0, reports the total",
		    a.count == 0 && a.total == total, "wrong count or total");
	a = get_arg(0, 1);
	a.size = sizeof(a) - 8;
	CHECK("get: size 8 bytes too small", ro, VEXFS_IOC_GET_EMBEDDINGS, &a, EINVAL);
	big.a = get_arg(0, 1);
	big.a.size = sizeof(big);
	big.tail = 1;
	CHECK("get: size 8 bytes larger, non-zero tail", ro, VEXFS_IOC_GET_EMBEDDINGS, &big, E2BIG);
	big.tail = 0;
	CHECK("get: size 8 bytes larger, zero tail", ro, VEXFS_IOC_GET_EMBEDDINGS, &big, 0);
}

static void check_remove(int ro)
{
	struct vexfs_remove_embeddings a = remove_arg();

	CHECK("remove: file open read-only", ro, VEXFS_IOC_REMOVE_EMBEDDINGS, &a, EBADF);
}

static void check_remove_rw(int rw)
{
	struct vexfs_remove_embeddings a;
	struct remove_big big;

	a = remove_arg();
	a.flags = 1;
	CHECK("remove: unknown flag", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &a, EINVAL);
	a = remove_arg();
	a.reserved[4] = 1;
	CHECK("remove: reserved[4] non-zero", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &a, EINVAL);
	a = remove_arg();
	a.size = sizeof(a) - 8;
	CHECK("remove: size 8 bytes too small", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &a, EINVAL);
	big.a = remove_arg();
	big.a.size = sizeof(big);
	big.tail = 1;
	CHECK("remove: size 8 bytes larger, non-zero tail", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &big, E2BIG);
}

static void check_search(int fd)
{
	struct vexfs_search a;
	struct search_big big;

	a = search_arg(10, 0, vec);
	CHECK("search: k 10, default ef", fd, VEXFS_IOC_SEARCH, &a, 0);
	report_true("search: count within 1 .. k", a.count >= 1 && a.count <= 10, "bad count");
	a = search_arg(VEXFS_MAX_K, 0, vec);
	CHECK("search: k VEXFS_MAX_K", fd, VEXFS_IOC_SEARCH, &a, 0);
	a = search_arg(10, VEXFS_MAX_EF, vec);
	CHECK("search: ef VEXFS_MAX_EF", fd, VEXFS_IOC_SEARCH, &a, 0);
	a = search_arg(10, 10, vec);
	CHECK("search: ef == k", fd, VEXFS_IOC_SEARCH, &a, 0);

	a = search_arg(10, 0, vec);
	a.dim = dim - 1;
	CHECK("search: dim differs from the filesystem's", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(0, 0, vec);
	CHECK("search: k 0", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(VEXFS_MAX_K + 1, 0, vec);
	CHECK("search: k VEXFS_MAX_K + 1", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(10, 9, vec);
	CHECK("search: ef below k", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(10, VEXFS_MAX_EF + 1, vec);
	CHECK("search: ef VEXFS_MAX_EF + 1", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	bad[1] = NAN;
	a = search_arg(10, 0, bad);
	CHECK("search: NaN in the query", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	bad[1] = INFINITY;
	a = search_arg(10, 0, bad);
	CHECK("search: +Inf in the query", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(10, 0, vec);
	a.flags = 1u << 1;
	CHECK("search: unknown flag", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(10, 0, vec);
	a.flags = VEXFS_SEARCH_CODE_DISTANCES;
	CHECK("search: code distances without codes", fd, VEXFS_IOC_SEARCH, &a, EOPNOTSUPP);
	a = search_arg(10, 0, vec);
	a.reserved[2] = 1;
	CHECK("search: reserved[2] non-zero", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	a = search_arg(10, 0, vec);
	a.size = sizeof(a) - 8;
	CHECK("search: size 8 bytes too small", fd, VEXFS_IOC_SEARCH, &a, EINVAL);
	big.a = search_arg(10, 0, vec);
	big.a.size = sizeof(big);
	big.tail = 1;
	CHECK("search: size 8 bytes larger, non-zero tail", fd, VEXFS_IOC_SEARCH, &big, E2BIG);
	big.tail = 0;
	CHECK("search: size 8 bytes larger, zero tail", fd, VEXFS_IOC_SEARCH, &big, 0);
	a = search_arg(10, 0, (const float *)(uintptr_t)8);
	CHECK("search: unmapped query pointer", fd, VEXFS_IOC_SEARCH, &a, EFAULT);
}

static void check_stats(int fd)
{
	struct vexfs_stats a;
	struct stats_big big;

	a = stats_arg();
	a.flags = 1;
	CHECK("stats: unknown flag", fd, VEXFS_IOC_STATS, &a, EINVAL);
	a = stats_arg();
	a.pending = 7;
	CHECK("stats: pending is output only", fd, VEXFS_IOC_STATS, &a, 0);
	report_true("stats: pending counts at most the vectors", a.pending <= a.vectors, "pending > vectors");
	a = stats_arg();
	a.reserved[1] = 1;
	CHECK("stats: reserved[1] non-zero", fd, VEXFS_IOC_STATS, &a, EINVAL);
	a = stats_arg();
	a.size = sizeof(a) - 8;
	CHECK("stats: size 8 bytes too small", fd, VEXFS_IOC_STATS, &a, EINVAL);
	big.a = stats_arg();
	big.a.size = sizeof(big);
	big.tail = 1;
	CHECK("stats: size 8 bytes larger, non-zero tail", fd, VEXFS_IOC_STATS, &big, E2BIG);
	big.tail = 0;
	CHECK("stats: size 8 bytes larger, zero tail", fd, VEXFS_IOC_STATS, &big, 0);
	report_true("stats: larger struct gets the same dim", big.a.dim == dim, "dim differs");
}

static struct vexfs_index_reads reads_arg(void)
{
	struct vexfs_index_reads a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	return a;
}

/* VEXFS_IOC_INDEX_READS: bad input refused; its region counts add up to the block reads
 * VEXFS_IOC_INDEX_MEM reports just before and just after (nothing else reads meanwhile but
 * the index worker, idle here: hence the bounds, not an equality). */
static void check_index_reads(int fd)
{
	struct vexfs_index_reads a;
	struct vexfs_index_mem before, after;
	unsigned long long sum;

	a = reads_arg();
	a.flags = 1;
	CHECK("index_reads: unknown flag", fd, VEXFS_IOC_INDEX_READS, &a, EINVAL);
	a = reads_arg();
	a.reserved[1] = 1;
	CHECK("index_reads: reserved[1] non-zero", fd, VEXFS_IOC_INDEX_READS, &a, EINVAL);
	a = reads_arg();
	a.size = sizeof(a) - 8;
	CHECK("index_reads: size 8 bytes too small", fd, VEXFS_IOC_INDEX_READS, &a, EINVAL);
	memset(&before, 0, sizeof(before));
	before.size = sizeof(before);
	after = before;
	CHECK("index_mem: before index_reads", fd, VEXFS_IOC_INDEX_MEM, &before, 0);
	a = reads_arg();
	a.data_reads = 1ULL << 60; /* output only */
	CHECK("index_reads: the counts", fd, VEXFS_IOC_INDEX_READS, &a, 0);
	CHECK("index_mem: after index_reads", fd, VEXFS_IOC_INDEX_MEM, &after, 0);
	sum = a.bitmap_reads + a.map_reads + a.data_reads + a.hnsw_reads + a.codes_reads;
	report_true("index_reads: the regions add up to block_reads",
		    sum >= before.block_reads && sum <= after.block_reads, "sum outside block_reads");
}

static void check_other_fs(const char *path)
{
	struct vexfs_stats st = stats_arg();
	struct vexfs_search s = search_arg(10, 0, vec);
	struct vexfs_get_embeddings g = get_arg(0, 1);
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		setup_failed(path);
	CHECK("stats: file of another filesystem", fd, VEXFS_IOC_STATS, &st, ENOTTY);
	CHECK("search: file of another filesystem", fd, VEXFS_IOC_SEARCH, &s, ENOTTY);
	CHECK("get: file of another filesystem", fd, VEXFS_IOC_GET_EMBEDDINGS, &g, ENOTTY);
	close(fd);
}

int main(int argc, char **argv)
{
	char scratch[4096];
	struct vexfs_stats st = stats_arg();
	struct vexfs_set_embeddings s;
	struct set_big sbig;
	struct remove_big rbig;
	struct vexfs_remove_embeddings r;
	long vectors_before, total;
	size_t i;
	int dirfd, rw, ro;

	if (argc != 3) {
		fprintf(stderr, "usage: vexfs-abi-check VEXFS_DIR OTHER_FILE\n");
		return 2;
	}
	dirfd = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (dirfd < 0)
		setup_failed(argv[1]);
	if (call(dirfd, VEXFS_IOC_STATS, &st) != 0)
		setup_failed("VEXFS_IOC_STATS on VEXFS_DIR");
	dim = st.dim;
	vectors_before = (long)st.vectors;
	printf("vexfs: dim %u, metric %u, %llu vectors\n", dim, st.metric,
	       (unsigned long long)st.vectors);
	if (dim < 2)
		setup_failed("the checks need a dimension of at least 2");

	vec = calloc(dim, sizeof(float));
	bad = calloc(dim, sizeof(float));
	readback = calloc(2 * (size_t)dim, sizeof(float));
	many = calloc((size_t)(VEXFS_MAX_CHUNKS + 1) * dim, sizeof(float));
	results = calloc(VEXFS_MAX_K + 1, sizeof(*results));
	if (!vec || !bad || !readback || !many || !results)
		setup_failed("calloc");
	for (i = 0; i < dim; i++)
		vec[i] = bad[i] = 0.25f + (float)(i % 7) * 0.125f;
	for (i = 0; i < (size_t)(VEXFS_MAX_CHUNKS + 1) * dim; i++)
		many[i] = vec[i % dim];

	snprintf(scratch, sizeof(scratch), "%s/abi-check.scratch", argv[1]);
	rw = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (rw < 0)
		setup_failed(scratch);
	ro = open(scratch, O_RDONLY);
	if (ro < 0)
		setup_failed(scratch);

	/* The scratch file gets one embedding; every failing SET below must leave it so. */
	s = set_arg(0, 1, vec);
	s.flags = VEXFS_SET_TRUNCATE;
	CHECK("set: one vector, truncate", rw, VEXFS_IOC_SET_EMBEDDINGS, &s, 0);
	total = chunks_of(ro);
	report_true("get: the file carries 1 chunk", total == 1, "chunk count is not 1");
	report_true("get: chunk 0 reads back as set", memcmp(readback, vec, dim * sizeof(float)) == 0,
		    "vector differs");

	check_set(rw, ro, dirfd);
	report_true("set: the failed calls changed nothing",
		    chunks_of(ro) == 1 && memcmp(readback, vec, dim * sizeof(float)) == 0,
		    "chunk count or vector changed");
	check_get(ro, total);
	check_remove(ro);
	check_search(dirfd);
	check_stats(dirfd);
	check_index_reads(dirfd);
	check_other_fs(argv[2]);
	check_remove_rw(rw);
	report_true("remove: the failed calls changed nothing", chunks_of(ro) == 1, "chunks changed");

	/* A larger struct with a zero tail is accepted: two chunks, then remove them all. */
	sbig.a = set_arg(0, 2, many);
	sbig.a.size = sizeof(sbig);
	sbig.tail = 0;
	CHECK("set: size 8 bytes larger, zero tail (2 chunks)", rw, VEXFS_IOC_SET_EMBEDDINGS, &sbig, 0);
	report_true("get: the file carries 2 chunks", chunks_of(ro) == 2, "chunk count is not 2");
	rbig.a = remove_arg();
	rbig.a.size = sizeof(rbig);
	rbig.tail = 0;
	CHECK("remove: size 8 bytes larger, zero tail", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &rbig, 0);
	report_true("get: no chunk left", chunks_of(ro) == 0, "chunks left");
	r = remove_arg();
	CHECK("remove: a file without embeddings", rw, VEXFS_IOC_REMOVE_EMBEDDINGS, &r, 0);

	st = stats_arg();
	CHECK("stats: after the checks", dirfd, VEXFS_IOC_STATS, &st, 0);
	report_true("stats: live vector count as before", (long)st.vectors == vectors_before,
		    "vector count changed");

	close(ro);
	close(rw);
	if (unlink(scratch) != 0)
		setup_failed(scratch);
	close(dirfd);
	printf("vexfs-abi-check: %d cases, %d failures\n", passed + failed, failed);
	return failed ? 1 : 0;
}
