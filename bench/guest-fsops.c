// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * guest-fsops: the timed file operations of the journal benchmark (bench/journal.sh runs it in
 * the guest, on vexfs and on ext4 alike).
 *
 *   guest-fsops create DIR N SIZE          N x (open O_CREAT|O_EXCL, write SIZE bytes, fsync, close)
 *   guest-fsops touch DIR N                N x (open O_CREAT|O_EXCL, close): the rename storm's files
 *   guest-fsops rename DIR_A DIR_B N C     C cycles over the N files DIR_A/f%05d (touch made them):
 *                                          each cycle renames every file once, f%05d <-> r%05d, even
 *                                          i within DIR_A, odd i across between DIR_A and DIR_B; so
 *                                          N * C renames, neither directory above N entries
 *   guest-fsops xattr DIR VECS.fvecs N     N x (open O_CREAT|O_EXCL, setxattr user.vexfs.embedding
 *                                          = row i of VECS, fsync, close): a durable embedding
 *   guest-fsops syncfs PATH                syncfs of the filesystem holding PATH
 *   guest-fsops run CMD [ARGS...]          runs CMD (stdout to /dev/null) and waits for it
 *
 * Each prints one line: "TIME SECONDS OPS" (wall time of the whole loop, CLOCK_MONOTONIC, and the
 * number of operations), and exits 0; or a message naming the failed call and exits 1. The loops
 * have no per-operation timing: the guest's clocksource ticks every 4 ms, so only phases of a
 * second or more are timed, and ratios come from the same phase on both filesystems.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "vexfs.h"

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "guest-fsops: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

static void die_errno(const char *call, const char *path)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s %s", call, path);
	die(msg, strerror(errno));
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long parse_count(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 10000000)
		die("not a count", s);
	return v;
}

static void path_of(char *out, size_t size, const char *dir, const char *prefix, long i)
{
	if ((size_t)snprintf(out, size, "%s/%s%05ld", dir, prefix, i) >= size)
		die("path too long", dir);
}

static void write_all(int fd, const char *buf, size_t n, const char *path)
{
	while (n) {
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die_errno("write", path);
		buf += w;
		n -= (size_t)w;
	}
}

static void report(double t0, long ops)
{
	printf("TIME %.6f %ld\n", now() - t0, ops);
}

static int cmd_create(const char *dir, long n, long size)
{
	char path[4096];
	char *buf = malloc(size ? (size_t)size : 1);
	double t0;

	if (!buf)
		die("out of memory", NULL);
	t0 = now();
	for (long i = 0; i < n; i++) {
		int fd;

		/* Different bytes in every file, so nothing can be shared or compressed away. */
		for (long j = 0; j < size; j++)
			buf[j] = (char)('a' + (i * 7 + j * 13) % 26);
		path_of(path, sizeof(path), dir, "f", i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die_errno("open", path);
		write_all(fd, buf, (size_t)size, path);
		if (fsync(fd))
			die_errno("fsync", path);
		if (close(fd))
			die_errno("close", path);
	}
	report(t0, n);
	free(buf);
	return 0;
}

static int cmd_touch(const char *dir, long n)
{
	char path[4096];
	double t0 = now();

	for (long i = 0; i < n; i++) {
		int fd;

		path_of(path, sizeof(path), dir, "f", i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die_errno("open", path);
		if (close(fd))
			die_errno("close", path);
	}
	report(t0, n);
	return 0;
}

static int cmd_rename(const char *a, const char *b, long n, long cycles)
{
	char from[4096], to[4096];
	double t0 = now();

	for (long c = 0; c < cycles; c++) {
		/* Even cycles: f in A -> r (odd i: in B); odd cycles back. */
		const char *src_pre = c % 2 ? "r" : "f", *dst_pre = c % 2 ? "f" : "r";
		const char *src_odd = c % 2 ? b : a, *dst_odd = c % 2 ? a : b;

		for (long i = 0; i < n; i++) {
			path_of(from, sizeof(from), i % 2 ? src_odd : a, src_pre, i);
			path_of(to, sizeof(to), i % 2 ? dst_odd : a, dst_pre, i);
			if (rename(from, to))
				die_errno("rename", from);
		}
	}
	report(t0, n * cycles);
	return 0;
}

/* Rows 0..n-1 of an .fvecs file, each as dim little-endian float32 (the xattr's format). */
static unsigned char *read_rows(const char *path, long n, uint32_t *dim)
{
	int fd = open(path, O_RDONLY);
	unsigned char *out;
	size_t row;

	if (fd < 0)
		die_errno("open", path);
	if (read(fd, dim, 4) != 4 || *dim == 0 || *dim > 65536)
		die(path, "not an .fvecs file");
	row = 4 * (size_t)*dim;
	out = malloc((size_t)n * row + 1);
	if (!out)
		die("out of memory", NULL);
	if (lseek(fd, 0, SEEK_SET) < 0)
		die_errno("lseek", path);
	for (long i = 0; i < n; i++) {
		uint32_t d;

		if (read(fd, &d, 4) != 4 || d != *dim)
			die(path, "fewer rows than asked, or rows of different widths");
		if (read(fd, out + (size_t)i * row, row) != (ssize_t)row)
			die(path, "short row");
	}
	close(fd);
	return out;
}

static int cmd_xattr(const char *dir, const char *fvecs, long n)
{
	char path[4096];
	uint32_t dim;
	unsigned char *rows = read_rows(fvecs, n, &dim);
	size_t row = 4 * (size_t)dim;
	double t0 = now();

	for (long i = 0; i < n; i++) {
		int fd;

		path_of(path, sizeof(path), dir, "e", i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die_errno("open", path);
		if (fsetxattr(fd, VEXFS_XATTR_EMBEDDING, rows + (size_t)i * row, row, 0))
			die_errno("fsetxattr", path);
		if (fsync(fd))
			die_errno("fsync", path);
		if (close(fd))
			die_errno("close", path);
	}
	report(t0, n);
	free(rows);
	return 0;
}

static int cmd_syncfs(const char *path)
{
	int fd = open(path, O_RDONLY);
	double t0;

	if (fd < 0)
		die_errno("open", path);
	t0 = now();
	if (syncfs(fd))
		die_errno("syncfs", path);
	report(t0, 1);
	close(fd);
	return 0;
}

static int cmd_run(char **argv)
{
	double t0 = now();
	int status;
	pid_t pid = fork();

	if (pid < 0)
		die_errno("fork", argv[0]);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null < 0 || dup2(null, 1) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die_errno("waitpid", argv[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "guest-fsops: %s exited with status %d\n", argv[0],
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return 1;
	}
	report(t0, 1);
	return 0;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	if (!strcmp(c, "create") && argc == 5)
		return cmd_create(argv[2], parse_count(argv[3]), parse_count(argv[4]));
	if (!strcmp(c, "touch") && argc == 4)
		return cmd_touch(argv[2], parse_count(argv[3]));
	if (!strcmp(c, "rename") && argc == 6)
		return cmd_rename(argv[2], argv[3], parse_count(argv[4]), parse_count(argv[5]));
	if (!strcmp(c, "xattr") && argc == 5)
		return cmd_xattr(argv[2], argv[3], parse_count(argv[4]));
	if (!strcmp(c, "syncfs") && argc == 3)
		return cmd_syncfs(argv[2]);
	if (!strcmp(c, "run") && argc >= 3)
		return cmd_run(argv + 2);
	fprintf(stderr, "usage: guest-fsops create DIR N SIZE | touch DIR N | rename A B N CYCLES |"
			" xattr DIR VECS.fvecs N | syncfs PATH | run CMD [ARGS...]\n");
	return 2;
}
