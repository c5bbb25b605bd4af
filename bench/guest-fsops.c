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
 * The POSIX benchmark (bench/posix.sh) adds:
 *
 *   guest-fsops touch DIR N MAX_SECS       as touch, stopping early once MAX_SECS have passed; OPS is
 *                                          the number of files made
 *   guest-fsops seqwrite FILE MIB          open O_CREAT|O_EXCL, MIB x write 1 MiB, fsync, close;
 *                                          OPS is the bytes written
 *   guest-fsops seqread FILE               read to the end in 1 MiB reads, checking every 4 KiB
 *                                          block's stamp (below); OPS is the bytes read
 *   guest-fsops parwrite DIR P MIB         P processes at once, process i writing DIR/w%05d (i) as
 *                                          seqwrite does; timed from their common start to the last
 *                                          exit; OPS is the bytes of all P
 *   guest-fsops ilwrite DIR P MIB          one process writing P files DIR/w%05d at once: 1 MiB to
 *                                          each in turn, MIB rounds, then fsync and close each; the
 *                                          same data as parwrite; OPS is the bytes of all P
 *   guest-fsops randread FILE N SEED       N x pread of 4 KiB at distinct block-aligned offsets
 *                                          (a seeded random permutation of the file's blocks),
 *                                          each block's stamp checked; needs N <= the blocks
 *   guest-fsops readdir DIR [stat MAX_SECS] getdents64 of the whole directory ("." and ".." not
 *                                          counted); with "stat", then fstatat of every entry in a
 *                                          seeded random order, timed apart, stopping once MAX_SECS
 *                                          have passed (0: no limit): a second line "TIME SECONDS
 *                                          ENTRIES_STATED" (the random order makes a stopped run's
 *                                          rate that of the whole directory, not of its start)
 *   guest-fsops tsc-mhz                    the TSC's rate, MHz, measured against CLOCK_MONOTONIC
 *                                          over 2 s (run on the host: see FSOPS_TSC_MHZ)
 *
 * Data written by seqwrite and parwrite: one random 1 MiB pattern, with the first 8 bytes of each
 * 4 KiB block replaced by a stamp naming the file (0 for seqwrite, i + 1 for parwrite's process
 * i) and the block, so a read that returns the wrong block or a hole is caught.
 *
 * Each prints one line: "TIME SECONDS OPS" (wall time of the whole loop and the number of
 * operations), and exits 0; or a message naming the failed call and exits 1. The loops have no
 * per-operation timing: the guest's clocksource ticks every 4 ms, so only phases of a second or
 * more are timed, and ratios come from the same phase on both filesystems. The clock is
 * CLOCK_MONOTONIC, or, when FSOPS_TSC_MHZ is set, the TSC at that rate: under QEMU TCG the guest
 * reads the host's TSC, which keeps real time when the guest's jiffies lose ticks on a busy host
 * (bench/wal-tool.c); bench/posix.sh measures the rate on the host with `tsc-mhz`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

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

static double mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* TSC ticks per microsecond (FSOPS_TSC_MHZ), or 0: CLOCK_MONOTONIC. */
static double tsc_mhz;

static double now(void)
{
	if (tsc_mhz > 0)
		return (double)__rdtsc() / tsc_mhz / 1e6;
	return mono();
}

/* TSC ticks per microsecond, from one CLOCK_MONOTONIC tick edge to another `secs` later. */
static int cmd_tsc_mhz(double secs)
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
	printf("%.3f\n", (double)(t1 - t0) / ((c - b) * 1e6));
	return 0;
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

/* max_secs 0: no limit. The clock is read every 64 files. */
static int cmd_touch(const char *dir, long n, long max_secs)
{
	char path[4096];
	double t0 = now();
	long i;

	for (i = 0; i < n; i++) {
		int fd;

		if (max_secs && i % 64 == 0 && now() - t0 >= (double)max_secs)
			break;

		path_of(path, sizeof(path), dir, "f", i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die_errno("open", path);
		if (close(fd))
			die_errno("close", path);
	}
	report(t0, i);
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

#define BLOCK 4096
#define CHUNK (1 << 20)

static uint64_t stamp_of(long file, long block)
{
	return 0x5645584653000000ULL ^ ((uint64_t)file << 40) ^ (uint64_t)block;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The 1 MiB pattern of seqwrite and parwrite: random bytes (a fixed seed). */
static char *pattern(void)
{
	char *buf = malloc(CHUNK);
	uint64_t s = 0x9e3779b97f4a7c15ULL;

	if (!buf)
		die("out of memory", NULL);
	for (size_t i = 0; i < CHUNK; i += 8) {
		uint64_t v = xorshift(&s);

		memcpy(buf + i, &v, 8);
	}
	return buf;
}

static void check_stamp(const char *buf, long file, long block, const char *path)
{
	uint64_t got, want = stamp_of(file, block);

	memcpy(&got, buf, 8);
	if (got != want) {
		char msg[256];

		snprintf(msg, sizeof(msg), "block %ld: stamp %016llx, expected %016llx", block,
			 (unsigned long long)got, (unsigned long long)want);
		die(path, msg);
	}
}

/* Writes mib MiB of stamped data to a new file, fsyncs and closes it; returns 0 or dies. */
static void write_file(const char *path, long file, long mib, char *buf)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);

	if (fd < 0)
		die_errno("open", path);
	for (long m = 0; m < mib; m++) {
		for (long b = 0; b < CHUNK / BLOCK; b++) {
			uint64_t st = stamp_of(file, m * (CHUNK / BLOCK) + b);

			memcpy(buf + b * BLOCK, &st, 8);
		}
		write_all(fd, buf, CHUNK, path);
	}
	if (fsync(fd))
		die_errno("fsync", path);
	if (close(fd))
		die_errno("close", path);
}

static int cmd_seqwrite(const char *path, long mib)
{
	char *buf = pattern();
	double t0 = now();

	write_file(path, 0, mib, buf);
	report(t0, mib * CHUNK);
	free(buf);
	return 0;
}

static int cmd_seqread(const char *path)
{
	char *buf = malloc(CHUNK);
	long total = 0;
	double t0;
	int fd;

	if (!buf)
		die("out of memory", NULL);
	t0 = now();
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die_errno("open", path);
	for (;;) {
		ssize_t r = read(fd, buf, CHUNK);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die_errno("read", path);
		if (r == 0)
			break;
		/* 1 MiB reads of a file of whole MiB: each read is whole unless the file is not. */
		if (r % BLOCK)
			die(path, "a read not a whole number of blocks");
		for (ssize_t o = 0; o < r; o += BLOCK)
			check_stamp(buf + o, 0, (total + o) / BLOCK, path);
		total += r;
	}
	if (close(fd))
		die_errno("close", path);
	report(t0, total);
	free(buf);
	return 0;
}

static int cmd_parwrite(const char *dir, long procs, long mib)
{
	char *buf = pattern();
	char path[4096];
	int go[2];
	double t0;

	if (pipe(go))
		die_errno("pipe", dir);
	for (long i = 0; i < procs; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die_errno("fork", dir);
		if (pid == 0) {
			char c;

			close(go[1]);
			/* Wait for the start: the parent closes the pipe, read returns 0. */
			while (read(go[0], &c, 1) < 0 && errno == EINTR)
				;
			path_of(path, sizeof(path), dir, "w", i);
			write_file(path, i + 1, mib, buf);
			_exit(0);
		}
	}
	close(go[0]);
	t0 = now();
	close(go[1]);
	for (long i = 0; i < procs; i++) {
		int status;

		while (wait(&status) < 0)
			if (errno != EINTR)
				die_errno("wait", dir);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			die("a writer failed", dir);
	}
	report(t0, procs * mib * CHUNK);
	free(buf);
	return 0;
}

static int cmd_ilwrite(const char *dir, long procs, long mib)
{
	char *buf = pattern();
	char path[4096];
	int *fds = calloc((size_t)procs + 1, sizeof(*fds));
	double t0;

	if (!fds)
		die("out of memory", NULL);
	t0 = now();
	for (long i = 0; i < procs; i++) {
		path_of(path, sizeof(path), dir, "w", i);
		fds[i] = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fds[i] < 0)
			die_errno("open", path);
	}
	for (long m = 0; m < mib; m++) {
		for (long i = 0; i < procs; i++) {
			for (long b = 0; b < CHUNK / BLOCK; b++) {
				uint64_t st = stamp_of(i + 1, m * (CHUNK / BLOCK) + b);

				memcpy(buf + b * BLOCK, &st, 8);
			}
			write_all(fds[i], buf, CHUNK, dir);
		}
	}
	for (long i = 0; i < procs; i++) {
		if (fsync(fds[i]))
			die_errno("fsync", dir);
		if (close(fds[i]))
			die_errno("close", dir);
	}
	report(t0, procs * mib * CHUNK);
	free(fds);
	free(buf);
	return 0;
}

static int cmd_randread(const char *path, long n, long seed)
{
	char buf[BLOCK];
	struct stat st;
	uint64_t s = 0x2545f4914f6cdd1dULL ^ (uint64_t)seed;
	long blocks, *order;
	double t0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		die_errno("open", path);
	if (fstat(fd, &st))
		die_errno("fstat", path);
	blocks = (long)(st.st_size / BLOCK);
	if (n > blocks)
		die(path, "fewer blocks than reads asked");
	order = malloc((size_t)blocks * sizeof(*order));
	if (!order)
		die("out of memory", NULL);
	/* Fisher-Yates: the first n of a random permutation, so no block is read twice. */
	for (long i = 0; i < blocks; i++)
		order[i] = i;
	for (long i = 0; i < n; i++) {
		long j = i + (long)(xorshift(&s) % (uint64_t)(blocks - i)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	t0 = now();
	for (long i = 0; i < n; i++) {
		ssize_t r = pread(fd, buf, BLOCK, (off_t)order[i] * BLOCK);

		if (r < 0 && errno == EINTR) {
			i--;
			continue;
		}
		if (r != BLOCK)
			die_errno("pread", path);
		check_stamp(buf, 0, order[i], path);
	}
	report(t0, n);
	close(fd);
	free(order);
	return 0;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int cmd_readdir(const char *dir, int do_stat, long max_secs)
{
	static char dbuf[1 << 16];
	size_t cap = 1024, used = 0, count = 0;
	char *names = malloc(do_stat ? 64 * cap : 1);
	size_t *offs = malloc((do_stat ? cap : 1) * sizeof(*offs));
	double t0 = now();
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (!names || !offs)
		die("out of memory", NULL);
	if (fd < 0)
		die_errno("open", dir);
	for (;;) {
		long r = syscall(SYS_getdents64, fd, dbuf, sizeof(dbuf));

		if (r < 0)
			die_errno("getdents64", dir);
		if (r == 0)
			break;
		for (long o = 0; o < r;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(dbuf + o);
			size_t len = strlen(d->d_name);

			o += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			if (do_stat) {
				if (count == cap) {
					cap *= 2;
					offs = realloc(offs, cap * sizeof(*offs));
					names = realloc(names, 64 * cap);
					if (!offs || !names)
						die("out of memory", NULL);
				}
				if (used + len + 1 > 64 * cap)
					die(dir, "names too long");
				offs[count] = used;
				memcpy(names + used, d->d_name, len + 1);
				used += len + 1;
			}
			count++;
		}
	}
	report(t0, (long)count);
	if (do_stat) {
		uint64_t s = 0x853c49e6748fea9bULL;
		struct stat st;
		size_t i;

		for (i = count; i > 1; i--) {
			size_t j = (size_t)(xorshift(&s) % i), t = offs[i - 1];

			offs[i - 1] = offs[j];
			offs[j] = t;
		}
		t0 = now();
		for (i = 0; i < count; i++) {
			if (max_secs && i % 64 == 0 && now() - t0 >= (double)max_secs)
				break;
			if (fstatat(fd, names + offs[i], &st, AT_SYMLINK_NOFOLLOW))
				die_errno("fstatat", names + offs[i]);
		}
		report(t0, (long)i);
	}
	close(fd);
	free(names);
	free(offs);
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
	const char *mhz = getenv("FSOPS_TSC_MHZ");

	if (mhz && *mhz) {
		tsc_mhz = strtod(mhz, NULL);
		if (!(tsc_mhz > 1 && tsc_mhz < 100000))
			die("FSOPS_TSC_MHZ is not a rate in MHz", mhz);
	}
	if (!strcmp(c, "create") && argc == 5)
		return cmd_create(argv[2], parse_count(argv[3]), parse_count(argv[4]));
	if (!strcmp(c, "touch") && (argc == 4 || argc == 5))
		return cmd_touch(argv[2], parse_count(argv[3]), argc == 5 ? parse_count(argv[4]) : 0);
	if (!strcmp(c, "seqwrite") && argc == 4)
		return cmd_seqwrite(argv[2], parse_count(argv[3]));
	if (!strcmp(c, "seqread") && argc == 3)
		return cmd_seqread(argv[2]);
	if (!strcmp(c, "parwrite") && argc == 5)
		return cmd_parwrite(argv[2], parse_count(argv[3]), parse_count(argv[4]));
	if (!strcmp(c, "ilwrite") && argc == 5)
		return cmd_ilwrite(argv[2], parse_count(argv[3]), parse_count(argv[4]));
	if (!strcmp(c, "randread") && argc == 5)
		return cmd_randread(argv[2], parse_count(argv[3]), parse_count(argv[4]));
	if (!strcmp(c, "readdir") && argc == 3)
		return cmd_readdir(argv[2], 0, 0);
	if (!strcmp(c, "readdir") && argc == 5 && !strcmp(argv[3], "stat"))
		return cmd_readdir(argv[2], 1, parse_count(argv[4]));
	if (!strcmp(c, "tsc-mhz") && argc == 2)
		return cmd_tsc_mhz(2.0);
	if (!strcmp(c, "rename") && argc == 6)
		return cmd_rename(argv[2], argv[3], parse_count(argv[4]), parse_count(argv[5]));
	if (!strcmp(c, "xattr") && argc == 5)
		return cmd_xattr(argv[2], argv[3], parse_count(argv[4]));
	if (!strcmp(c, "syncfs") && argc == 3)
		return cmd_syncfs(argv[2]);
	if (!strcmp(c, "run") && argc >= 3)
		return cmd_run(argv + 2);
	fprintf(stderr, "usage: guest-fsops create DIR N SIZE | touch DIR N | rename A B N CYCLES |"
			" xattr DIR VECS.fvecs N | syncfs PATH | run CMD [ARGS...] | touch DIR N MAX_SECS |"
			" seqwrite FILE MIB | seqread FILE | parwrite DIR P MIB | ilwrite DIR P MIB |"
			" randread FILE N SEED |"
			" readdir DIR [stat MAX_SECS] | tsc-mhz\n");
	return 2;
}
