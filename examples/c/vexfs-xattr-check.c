// SPDX-License-Identifier: MIT
/*
 * vexfs-xattr-check FILE DIM: checks the user.vexfs.embedding xattr of a vexfs file against
 * its ioctls: the xattr reads as chunk 0 (raw little-endian float32), listxattr names it,
 * setting it sets chunk 0, bad sizes and short buffers get EINVAL / ERANGE, another user.
 * attribute is stored apart from it, removing it removes the embeddings. FILE must be a regular file without embeddings. Prints PASS/FAIL per
 * case; exits 1 if any failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "vexfs.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "PASS" : "FAIL", what);
	if (!ok)
		failures++;
}

static int get_chunks(int fd, unsigned dim, float *out, unsigned cap)
{
	struct vexfs_get_embeddings g = { .size = sizeof(g), .dim = dim, .count = cap,
					  .vectors = (unsigned long)out };

	if (ioctl(fd, VEXFS_IOC_GET_EMBEDDINGS, &g))
		return -errno;
	return (int)g.total;
}

int main(int argc, char **argv)
{
	const char *path, *name = VEXFS_XATTR_EMBEDDING;
	unsigned dim, i;
	float *v, *w;
	char list[256];
	ssize_t n;
	int fd;

	if (argc != 3)
		return fprintf(stderr, "usage: vexfs-xattr-check FILE DIM\n"), 2;
	path = argv[1];
	dim = (unsigned)atoi(argv[2]);
	v = calloc(dim, sizeof(float));
	w = calloc(dim + 1, sizeof(float));
	for (i = 0; i < dim; i++)
		v[i] = (float)(i % 7) - 3.0f + 0.25f * (float)i / (float)dim;
	fd = open(path, O_RDWR);
	if (fd < 0)
		return perror(path), 1;

	check(getxattr(path, name, w, dim * 4) < 0 && errno == ENODATA, "get without embedding: ENODATA");
	check(listxattr(path, list, sizeof(list)) == 0, "list without embedding: empty");
	check(setxattr(path, name, v, dim * 4 - 4, 0) < 0 && errno == EINVAL, "set with dim - 1 floats: EINVAL");
	check(setxattr(path, name, v, dim * 4, XATTR_REPLACE) < 0 && errno == ENODATA, "replace without embedding: ENODATA");
	check(setxattr(path, name, v, dim * 4, XATTR_CREATE) == 0, "create: success");
	check(setxattr(path, name, v, dim * 4, XATTR_CREATE) < 0 && errno == EEXIST, "create again: EEXIST");
	check(getxattr(path, name, NULL, 0) == (ssize_t)dim * 4, "size query: dim * 4");
	check(getxattr(path, name, w, dim * 4 - 1) < 0 && errno == ERANGE, "short buffer: ERANGE");
	n = getxattr(path, name, w, dim * 4);
	check(n == (ssize_t)dim * 4 && !memcmp(v, w, dim * 4), "get: the bytes set");
	memset(w, 0, dim * 4);
	check(get_chunks(fd, dim, w, 1) == 1 && !memcmp(v, w, dim * 4), "ioctl GET: chunk 0 is the xattr");
	n = listxattr(path, list, sizeof(list));
	check(n == (ssize_t)strlen(name) + 1 && !strcmp(list, name), "list: names " VEXFS_XATTR_EMBEDDING);
	/* Other user. attributes are stored apart (format v3's xattr block): chunk 0 stays. */
	check(getxattr(path, "user.other", w, dim * 4) < 0 && errno == ENODATA, "other user xattr unset: ENODATA");
	check(setxattr(path, "user.other", "x", 1, 0) == 0, "other user xattr: set");
	n = listxattr(path, list, sizeof(list));
	check(n == (ssize_t)(strlen(name) + 1 + strlen("user.other") + 1), "list: the embedding and user.other");
	memset(w, 0, dim * 4);
	check(get_chunks(fd, dim, w, 1) == 1 && !memcmp(v, w, dim * 4), "chunk 0 unchanged by user.other");
	check(removexattr(path, "user.other") == 0, "other user xattr: removed");
	v[0] = 42.0f;
	check(setxattr(path, name, v, dim * 4, XATTR_REPLACE) == 0, "replace: success");
	check(get_chunks(fd, dim, w, 1) == 1 && w[0] == 42.0f, "ioctl GET sees the new chunk 0");
	check(removexattr(path, name) == 0, "remove: success");
	check(get_chunks(fd, dim, w, 1) == 0, "no embedding left");
	check(removexattr(path, name) < 0 && errno == ENODATA, "remove again: ENODATA");
	printf("vexfs-xattr-check: %d failures\n", failures);
	return failures ? 1 : 0;
}
