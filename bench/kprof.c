/*
 * kprof: a small sampling profiler of the kernel for the QEMU guest, which has no perf(1).
 *
 *   kprof [-F HZ] [-n TOP] [-u SYMS] -- CMD [ARG...]
 *
 * Runs CMD and samples every CPU with the cpu-clock software event (perf_event_open(2),
 * PERF_COUNT_SW_CPU_CLOCK: no PMU needed, so it works under TCG) at HZ samples per second of
 * CPU time (default 4000), kernel mode only, each sample with its kernel call chain. Then prints
 * three tables of the TOP (default 40) kernel functions, symbolised through /proc/kallsyms (run as
 * root so that the addresses are not hidden; module functions carry their [module]):
 *   self       samples whose instruction pointer is in the function
 *   by caller  the same, split by the first other function up the call chain (lock internals
 *              passed over: a spinning waiter is charged to the function that took the lock)
 *   inclusive  samples with the function anywhere in the call chain (counted once per sample)
 * and the count of samples and of samples lost (ring buffer full). Exit status: CMD's, or 1 if
 * the profiler itself failed. Used by hand to find where a benchmark row's time goes
 * (bench/posix-run.sh's phases); the figures are samples, so only their ratios mean anything.
 *
 * With -u SYMS, user mode is sampled too and its addresses are named from SYMS, the `nm -n`
 * listing of CMD (a static executable linked at fixed addresses, not PIE: its symbols are where
 * nm says), marked [user]: the two sides of a call (the ioctl and the same code in a process)
 * profiled alike. User call chains are not followed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CPUS 64
#define RING_PAGES 512 /* data pages per CPU: 2 MiB */
#define MAX_CHAIN 64

struct sym {
	uint64_t addr;
	char *name;
};

static struct sym *syms;
static size_t nsyms;
static uint64_t *self_n, *incl_n;

/* (function, caller) pairs of the samples: the first other function up the chain. */
#define PAIRS 4096
static struct pair {
	long fn, caller;
	uint64_t n;
} pairs[PAIRS];
static uint64_t samples, lost, unknown;

static void die(const char *what)
{
	fprintf(stderr, "kprof: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int by_addr(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Adds the text symbols of `path` ("ADDR TYPE NAME [MODULE]" lines: /proc/kallsyms, nm -n), each
 * with `tag` when the line has no module of its own. */
static void load_file(const char *path, const char *tag)
{
	FILE *f = fopen(path, "r");
	char line[512];
	static size_t cap;
	if (!f)
		die(path);
	while (fgets(line, sizeof line, f)) {
		unsigned long long a;
		char t, name[256], mod[128] = "";
		int n = sscanf(line, "%llx %c %255s %127s", &a, &t, name, mod);
		if (n == 3 && tag) {
			snprintf(mod, sizeof mod, "%s", tag);
			n = 4;
		}
		if (n < 3 || (t != 't' && t != 'T') || a == 0)
			continue;
		if (nsyms == cap) {
			cap = cap ? 2 * cap : 65536;
			syms = realloc(syms, cap * sizeof *syms);
			if (!syms)
				die("realloc");
		}
		syms[nsyms].addr = a;
		if (n == 4) {
			size_t len = strlen(name) + strlen(mod) + 2;
			syms[nsyms].name = malloc(len);
			if (!syms[nsyms].name)
				die("malloc");
			snprintf(syms[nsyms].name, len, "%s %s", name, mod);
		} else {
			syms[nsyms].name = strdup(name);
		}
		nsyms++;
	}
	fclose(f);
}

/* Text symbols of /proc/kallsyms and of `user` (NULL: none), sorted by address. */
static void load_syms(const char *user)
{
	load_file("/proc/kallsyms", NULL);
	if (user)
		load_file(user, "[user]");
	if (nsyms == 0) {
		errno = ENOENT;
		die("no text symbols in /proc/kallsyms (not root?)");
	}
	qsort(syms, nsyms, sizeof *syms, by_addr);
	self_n = calloc(nsyms, sizeof *self_n);
	incl_n = calloc(nsyms, sizeof *incl_n);
	if (!self_n || !incl_n)
		die("calloc");
}

/* Index of the symbol holding `ip`, or -1. */
static long find_sym(uint64_t ip)
{
	size_t lo = 0, hi = nsyms;
	if (nsyms == 0 || ip < syms[0].addr)
		return -1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (syms[mid].addr <= ip)
			lo = mid;
		else
			hi = mid;
	}
	return (long)lo;
}

/* The lock's own functions, passed over when naming who waited for a lock. */
static int lock_internal(const char *name)
{
	static const char *const pre[] = { "__mutex", "mutex_", "_raw_spin", "osq_", "rwsem_", "down_", "__down",
					   "__rwsem" };
	for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
		if (!strncmp(name, pre[i], strlen(pre[i])))
			return 1;
	return 0;
}

struct ring {
	int fd;
	struct perf_event_mmap_page *meta;
	unsigned char *data;
	uint64_t size;
};

static void record(const unsigned char *rec, uint64_t nr, const uint64_t *ips)
{
	long seen[MAX_CHAIN];
	int nseen = 0;
	(void)rec;
	samples++;
	/* ips[0] is the sampled instruction pointer; the chain that follows may repeat it and
	 * carries PERF_CONTEXT_* markers (above -4096), skipped. */
	long s = find_sym(ips[0]);
	if (s < 0) {
		unknown++;
		return;
	}
	self_n[s]++;
	long caller = -1;
	for (uint64_t i = 1; i < nr && i < MAX_CHAIN && caller < 0; i++) {
		long k = ips[i] >= (uint64_t)-4096 ? -1 : find_sym(ips[i]);
		if (k >= 0 && k != s && !lock_internal(syms[k].name))
			caller = k;
	}
	for (size_t h = ((size_t)s * 31 + (size_t)(caller + 1)) % PAIRS, tries = 0; tries < PAIRS;
	     h = (h + 1) % PAIRS, tries++) {
		if (pairs[h].n == 0 || (pairs[h].fn == s && pairs[h].caller == caller)) {
			pairs[h].fn = s;
			pairs[h].caller = caller;
			pairs[h].n++;
			break;
		}
	}
	for (uint64_t i = 0; i < nr && i < MAX_CHAIN; i++) {
		if (ips[i] >= (uint64_t)-4096)
			continue;
		long k = find_sym(ips[i]);
		int dup = 0;
		if (k < 0)
			continue;
		for (int j = 0; j < nseen; j++)
			dup |= seen[j] == k;
		if (!dup && nseen < MAX_CHAIN) {
			seen[nseen++] = k;
			incl_n[k]++;
		}
	}
}

/* Consumes the records written to `r` since the last call. */
static void drain(struct ring *r)
{
	uint64_t head = __atomic_load_n(&r->meta->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = r->meta->data_tail;
	unsigned char rec[16384];
	while (tail < head) {
		struct perf_event_header h;
		for (size_t i = 0; i < sizeof h; i++)
			((unsigned char *)&h)[i] = r->data[(tail + i) % r->size];
		if (h.size < sizeof h || h.size > sizeof rec)
			break;
		for (size_t i = 0; i < h.size; i++)
			rec[i] = r->data[(tail + i) % r->size];
		if (h.type == PERF_RECORD_SAMPLE) {
			/* PERF_SAMPLE_IP | PERF_SAMPLE_CALLCHAIN: u64 ip; u64 nr; u64 ips[nr]. */
			uint64_t ip, nr;
			memcpy(&ip, rec + sizeof h, 8);
			memcpy(&nr, rec + sizeof h + 8, 8);
			if (sizeof h + 16 + nr * 8 <= h.size) {
				uint64_t ips[MAX_CHAIN + 1];
				uint64_t n = nr < MAX_CHAIN ? nr : MAX_CHAIN;
				ips[0] = ip;
				memcpy(ips + 1, rec + sizeof h + 16, n * 8);
				record(rec, n + 1, ips);
			}
		} else if (h.type == PERF_RECORD_LOST) {
			uint64_t n;
			memcpy(&n, rec + sizeof h + 8, 8);
			lost += n;
		}
		tail += h.size;
	}
	__atomic_store_n(&r->meta->data_tail, tail, __ATOMIC_RELEASE);
}

static void top(const char *title, const uint64_t *n, int count)
{
	printf("%s (of %llu samples):\n", title, (unsigned long long)samples);
	for (int k = 0; k < count; k++) {
		size_t best = 0;
		uint64_t bn = 0;
		for (size_t i = 0; i < nsyms; i++)
			if (n[i] > bn) {
				bn = n[i];
				best = i;
			}
		if (bn == 0)
			break;
		printf("  %6.2f%% %8llu  %s\n", 100.0 * (double)bn / (double)(samples ? samples : 1),
		       (unsigned long long)bn, syms[best].name);
		((uint64_t *)n)[best] = 0;
	}
}

static void top_pairs(int count)
{
	printf("self, by caller (of %llu samples):\n", (unsigned long long)samples);
	for (int k = 0; k < count; k++) {
		size_t best = 0;
		uint64_t bn = 0;
		for (size_t i = 0; i < PAIRS; i++)
			if (pairs[i].n > bn) {
				bn = pairs[i].n;
				best = i;
			}
		if (bn == 0)
			break;
		printf("  %6.2f%% %8llu  %s  <-  %s\n", 100.0 * (double)bn / (double)(samples ? samples : 1),
		       (unsigned long long)bn, syms[pairs[best].fn].name,
		       pairs[best].caller >= 0 ? syms[pairs[best].caller].name : "?");
		pairs[best].n = 0;
	}
}

int main(int argc, char **argv)
{
	int hz = 4000, ntop = 40, i = 1;
	const char *user = NULL;
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (!strcmp(argv[i], "-F") && i + 1 < argc)
			hz = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			ntop = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-u") && i + 1 < argc)
			user = argv[++i];
		else {
			fprintf(stderr, "usage: kprof [-F HZ] [-n TOP] [-u SYMS] -- CMD [ARG...]\n");
			return 1;
		}
	}
	if (i + 1 >= argc || hz <= 0 || ntop <= 0) {
		fprintf(stderr, "usage: kprof [-F HZ] [-n TOP] [-u SYMS] -- CMD [ARG...]\n");
		return 1;
	}
	char **cmd = argv + i + 1;
	load_syms(user);

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1 || ncpu > MAX_CPUS)
		ncpu = ncpu < 1 ? 1 : MAX_CPUS;
	struct ring rings[MAX_CPUS];
	long pg = sysconf(_SC_PAGESIZE);
	for (long c = 0; c < ncpu; c++) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof a);
		a.size = sizeof a;
		a.type = PERF_TYPE_SOFTWARE;
		a.config = PERF_COUNT_SW_CPU_CLOCK;
		a.sample_period = 1000000000ull / (unsigned)hz;
		a.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_CALLCHAIN;
		a.exclude_user = !user;
		a.exclude_callchain_user = 1;
		a.disabled = 1;
		a.wakeup_events = 64;
		int fd = (int)syscall(SYS_perf_event_open, &a, -1, (int)c, -1, 0);
		if (fd < 0)
			die("perf_event_open");
		void *m = mmap(NULL, (size_t)(RING_PAGES + 1) * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			die("mmap");
		rings[c] = (struct ring){ fd, m, (unsigned char *)m + pg, (uint64_t)RING_PAGES * pg };
	}
	for (long c = 0; c < ncpu; c++)
		if (ioctl(rings[c].fd, PERF_EVENT_IOC_ENABLE, 0) < 0)
			die("PERF_EVENT_IOC_ENABLE");

	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execvp(cmd[0], cmd);
		perror("kprof: exec");
		_exit(127);
	}
	int status = 0;
	for (;;) {
		struct pollfd p[MAX_CPUS];
		for (long c = 0; c < ncpu; c++)
			p[c] = (struct pollfd){ .fd = rings[c].fd, .events = POLLIN };
		poll(p, (nfds_t)ncpu, 100);
		for (long c = 0; c < ncpu; c++)
			drain(&rings[c]);
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			die("waitpid");
	}
	for (long c = 0; c < ncpu; c++) {
		ioctl(rings[c].fd, PERF_EVENT_IOC_DISABLE, 0);
		drain(&rings[c]);
	}
	printf("kprof: %llu samples, %llu lost, %llu outside known symbols\n", (unsigned long long)samples,
	       (unsigned long long)lost, (unsigned long long)unknown);
	top("self", self_n, ntop);
	top_pairs(ntop);
	top("inclusive", incl_n, ntop);
	fflush(stdout);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
