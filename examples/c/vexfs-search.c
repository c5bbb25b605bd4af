// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * vexfs-search PATH QUERY.fvecs ROW K
 *
 * The K nearest embeddings of a mounted vexfs to row ROW of QUERY.fvecs, through
 * VEXFS_IOC_SEARCH: one line per result, nearest first, "INO CHUNK DISTANCE" (the inode number
 * of the file, which of its embeddings, the distance in the filesystem's metric). PATH is any
 * file or directory of the mount.
 *
 * A minimal user of the ioctl ABI, with nothing but include/vexfs.h and libc.
 *
 * Exit status: 0; the errno of the failed call (e.g. 22 for EINVAL, 25 for ENOTTY when PATH is not
 * on a vexfs); EINVAL for a bad command line or query file, with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vexfs.h"

static const char *prog = "vexfs-search";

/* Prints "vexfs-search: WHAT: strerror" and exits with the errno. */
static void die_errno(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(err));
	exit(err ? err : 1);
}

/* Prints a message about the command line or the input and exits with EINVAL. */
static void die_input(const char *msg, const char *arg)
{
	fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "", arg ? arg : "");
	exit(EINVAL);
}

static unsigned long parse_uint(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		die_input(what, s);
	return v;
}

/* Reads all of `len` bytes at `off`; 0 if the file ends before. */
static int read_at(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die_errno("reading the query file", errno);
		}
		if (n == 0)
			return 0;
		done += (size_t)n;
	}
	return 1;
}

/* Row `row` of an .fvecs file (per row: int32 dim, then dim float32); sets *dim. */
static float *read_row(const char *path, unsigned long row, __u32 *dim)
{
	int32_t d, d_row;
	float *v;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		die_errno(path, errno);
	if (!read_at(fd, &d, sizeof(d), 0) || d <= 0 || d > (1 << 20))
		die_input("not an .fvecs file (bad dimension in row 0)", path);
	off_t off = (off_t)row * (off_t)(4 + 4 * (size_t)d);
	if (!read_at(fd, &d_row, sizeof(d_row), off))
		die_input("the query file has no such row", path);
	if (d_row != d)
		die_input("the rows of the query file differ in dimension", path);
	v = malloc(4 * (size_t)d);
	if (!v)
		die_errno("malloc", ENOMEM);
	if (!read_at(fd, v, 4 * (size_t)d, off + 4))
		die_input("the query file is truncated", path);
	close(fd);
	*dim = (__u32)d;
	return v;
}

int main(int argc, char **argv)
{
	struct vexfs_search s;
	struct vexfs_search_result *res;
	__u32 dim, i;
	float *query;
	unsigned long row, k;
	int fd;

	if (argc != 5) {
		fprintf(stderr, "usage: %s PATH QUERY.fvecs ROW K\n", prog);
		return EINVAL;
	}
	row = parse_uint(argv[3], "ROW is not a row number");
	k = parse_uint(argv[4], "K is not a number");
	if (k == 0 || k > VEXFS_MAX_K)
		die_input("K must be 1 to VEXFS_MAX_K (1024)", argv[4]);
	query = read_row(argv[2], row, &dim);
	res = calloc(k, sizeof(*res));
	if (!res)
		die_errno("calloc", ENOMEM);

	fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		die_errno(argv[1], errno);

	memset(&s, 0, sizeof(s)); /* flags and reserved fields must be zero */
	s.size = sizeof(s);
	s.dim = dim;
	s.k = (__u32)k;
	s.ef_search = 0; /* the kernel's default, max(k, 64) */
	s.query = (__u64)(uintptr_t)query;
	s.results = (__u64)(uintptr_t)res;
	if (ioctl(fd, VEXFS_IOC_SEARCH, &s) < 0)
		die_errno("VEXFS_IOC_SEARCH", errno);

	for (i = 0; i < s.count && i < k; i++)
		printf("%llu %u %.9g\n", (unsigned long long)res[i].ino, res[i].chunk,
		       (double)res[i].distance);
	if (fflush(stdout) != 0)
		die_errno("writing the results", errno);
	close(fd);
	free(res);
	free(query);
	return 0;
}
