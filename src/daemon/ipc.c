/*
 * Socket framing between the wrapper and the daemon (see ipc.h), and the
 * rule for where the socket lives: under $XDG_RUNTIME_DIR/hpcc/ when that is
 * set (a per-user 0700 tmpfs), else in the cache directory; a path too long
 * for sockaddr_un falls back to a per-uid 0700 directory under /tmp. The file
 * name carries a hash of the cache directory, so each cache has its daemon.
 */
#include "ipc.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "buf.h"
#include "fs.h"
#include "macro.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == ECONNRESET ? -EPIPE : negative_errno();
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_full(int fd, uint8_t *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			struct pollfd pfd = { fd, POLLIN, 0 };
			int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return negative_errno();
			}
			if (r == 0)
				return -ETIMEDOUT;
		}
		ssize_t got = read(fd, p, n);
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return negative_errno();
		}
		if (got == 0)
			return -ECONNRESET;
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

int ipc_send(int fd, const ipc_envelope *env)
{
	size_t n = hpcc__local__envelope__get_packed_size(env);
	if (n > IPC_MAX_MESSAGE)
		return -EFBIG;
	_cleanup_free_ uint8_t *msg = malloc(n + 4);
	if (!msg)
		return -ENOMEM;
	msg[0] = (uint8_t)(n >> 24);
	msg[1] = (uint8_t)(n >> 16);
	msg[2] = (uint8_t)(n >> 8);
	msg[3] = (uint8_t)n;
	hpcc__local__envelope__pack(env, msg + 4);
	return write_full(fd, msg, n + 4);
}

int ipc_recv(int fd, int timeout_ms, size_t max, ipc_envelope **ret)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	uint8_t hdr[4];
	int r = read_full(fd, hdr, 4, deadline);
	if (r < 0)
		return r;
	size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (n > max || n > IPC_MAX_MESSAGE)
		return -EBADMSG;
	_cleanup_free_ uint8_t *body = malloc(n ? n : 1);
	if (!body)
		return -ENOMEM;
	r = read_full(fd, body, n, deadline);
	if (r < 0)
		return r;
	ipc_envelope *env = hpcc__local__envelope__unpack(NULL, n, body);
	if (!env)
		return -EBADMSG;
	*ret = env;
	return 0;
}

void ipc_envelope_free(ipc_envelope *env)
{
	if (env)
		hpcc__local__envelope__free_unpacked(env, NULL);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

char *ipc_socket_path(const char *cache_dir, const char *configured)
{
	if (configured && *configured)
		return strdup(configured);
	char *path = NULL;
	unsigned long long h = fnv1a(cache_dir);
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (xdg && *xdg && xdg[0] == '/') {
		if (asprintf(&path, "%s/hpcc/%016llx.sock", xdg, h) < 0)
			return NULL;
	} else if (asprintf(&path, "%s/daemon.sock", cache_dir) < 0)
		return NULL;
	if (strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path))
		return path;
	free(path);
	if (asprintf(&path, "/tmp/hpcc-%u/%016llx.sock", (unsigned)getuid(), h) < 0)
		return NULL;
	return path;
}
