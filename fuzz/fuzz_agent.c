/*
 * The host-to-guest byte stream, as the agent (src/agent/) reads it: the
 * input is everything a host writes to the guest. The agent's own serve
 * loop (agent_serve: frame decoder, AgentFrame decode, exec headers, input
 * chunks, cancels, staging directories) runs on one end of a socketpair;
 * this target writes the input to the other end, reads and discards what
 * the agent answers (a host that does not read would only stall it), and
 * closes. The compilers' root is an empty directory: a header that gets
 * as far as starting its command forks a child that finds nothing to run,
 * so no input can execute anything.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[] = "/tmp/hpcc-fuzz-agent.XXXXXX";
static int root_fd = -1;

struct host {
	int fd;
	const uint8_t *data;
	size_t size;
};

/* Writes the input, then half-closes; the agent's replies are read by the
 * caller's thread meanwhile. */
static void *host_main(void *arg)
{
	struct host *h = arg;
	const uint8_t *p = h->data;
	size_t n = h->size;
	while (n > 0) {
		ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
	shutdown(h->fd, SHUT_WR);
	return NULL;
}

static void *drain_main(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
	}
}

/* Removes what the input left under the root: the parents of staging
 * directories that a header named (the agent keeps those; it removes the
 * staging directories themselves). */
static void clear_root(void)
{
	DIR *d = fdopendir(dup(root_fd));
	if (!d)
		abort();
	rewinddir(d); /* the offset is shared with root_fd */
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			(void)tree_remove_at(root_fd, de->d_name, 0);
	closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (root_fd < 0) {
		if (!mkdtemp(root) || chmod(root, 0755) < 0)
			abort();
		root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (root_fd < 0)
			abort();
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	struct agent a = {
		.root = root,
		.root_fd = root_fd,
		.boot = false,
		.vcpus = 2,
		.chan = sv[0],
		.sigfd = -1,
		.uid_base = AGENT_UID_BASE,
	};
	struct host h = { sv[1], data, size };
	pthread_t writer, reader;
	int dup_fd = dup(sv[1]);
	if (dup_fd < 0 || pthread_create(&writer, NULL, host_main, &h) != 0 ||
	    pthread_create(&reader, NULL, drain_main, &dup_fd) != 0)
		abort();
	(void)agent_serve(&a);
	close(sv[0]);
	pthread_join(writer, NULL);
	pthread_join(reader, NULL);
	close(sv[1]);
	close(dup_fd);
	clear_root();
	return 0;
}
