/*
 * The agent's one stream to the host: a virtio-serial port found by name
 * (QEMU), a vsock connection accepted on a port (Firecracker), or, in test
 * mode, a Unix socket connection. Also the queue of encoded frames waiting
 * for the stream: the serving loop never blocks on a write, so a host that
 * reads slowly only slows the producers (stdio pipes, output files), which
 * stop above a high-water mark.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#define VIRTIO_PORTS_DIR "/sys/class/virtio-ports"
#define CHANNEL_RETRY_MS 10

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Reads a small sysfs attribute, without its trailing newline. */
static int read_attr(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

static bool port_entry_ok(const char *name)
{
	if (strncmp(name, "vport", 5) != 0 || strlen(name) > 32)
		return false;
	for (const char *p = name + 5; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == 'p'))
			return false;
	return true;
}

/* One scan of the virtio ports: 0 and an open fd, or -ENOENT. */
static int virtio_find(const char *port_name, int *ret_fd)
{
	DIR *d = opendir(VIRTIO_PORTS_DIR);
	struct dirent *de;
	int r = -ENOENT;

	if (!d)
		return -ENOENT;
	while ((de = readdir(d)) != NULL) {
		char path[128], name[128];

		if (!port_entry_ok(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s/name", VIRTIO_PORTS_DIR, de->d_name);
		if (read_attr(path, name, sizeof(name)) < 0 || strcmp(name, port_name) != 0)
			continue;
		snprintf(path, sizeof(path), "/dev/%s", de->d_name);
		int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		r = fd < 0 ? -errno : 0;
		if (fd >= 0)
			*ret_fd = fd;
		break;
	}
	closedir(d);
	return r;
}

int channel_open_virtio(const char *port_name, int timeout_ms, int *ret_fd, char *why, size_t why_len)
{
	int64_t deadline = agent_now_us() + (int64_t)timeout_ms * 1000;
	int r;

	/* The port's sysfs entry and its devtmpfs node appear when the
	 * virtio driver probes; retry briefly rather than race it. */
	for (;;) {
		r = virtio_find(port_name, ret_fd);
		if (r == 0)
			return 0;
		if (agent_now_us() >= deadline)
			break;
		sleep_ms(CHANNEL_RETRY_MS);
	}
	snprintf(why, why_len, "no usable virtio port named '%s' under %s: %s", port_name, VIRTIO_PORTS_DIR,
		 strerror(-r));
	return r;
}

int channel_wait_host(int fd, int timeout_ms)
{
	int64_t deadline = agent_now_us() + (int64_t)timeout_ms * 1000;

	/* A virtio port reports POLLHUP for as long as nothing is connected
	 * to the host end; writes would block and reads return EOF. */
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, 0);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0 || (n > 0 && !(p.revents & (POLLHUP | POLLERR | POLLNVAL))))
			return 0;
		if (agent_now_us() >= deadline)
			return -ETIMEDOUT;
		sleep_ms(CHANNEL_RETRY_MS);
	}
}

/* Waits for one connection on a listening socket and closes it. */
static int accept_one(int lfd, int timeout_ms, int *ret_fd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int n, fd;

	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ETIMEDOUT;
	if (n < 0)
		return -errno;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int channel_open_vsock(unsigned port, int timeout_ms, int *ret_fd, char *why, size_t why_len)
{
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	if (lfd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot create a vsock socket: %s", strerror(-r));
		return r;
	}
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot listen on vsock port %u: %s", port, strerror(-r));
		close(lfd);
		return r;
	}
	r = accept_one(lfd, timeout_ms, ret_fd);
	close(lfd);
	if (r < 0)
		snprintf(why, why_len, "no host connection on vsock port %u: %s", port, strerror(-r));
	return r;
}

int channel_open_unix(const char *path, int timeout_ms, int *ret_fd, char *why, size_t why_len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int lfd, r;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(why, why_len, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot create a Unix socket: %s", strerror(-r));
		return r;
	}
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot listen on %s: %s", path, strerror(-r));
		close(lfd);
		return r;
	}
	r = accept_one(lfd, timeout_ms, ret_fd);
	close(lfd);
	unlink(path); /* one connection only */
	if (r < 0)
		snprintf(why, why_len, "no connection on %s: %s", path, strerror(-r));
	return r;
}

static int outq_reserve(struct outq *q, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (q->cap - q->end >= n)
		return 0;
	if (q->start > 0) { /* slide the pending bytes to the front */
		memmove(q->buf, q->buf + q->start, q->end - q->start);
		q->end -= q->start;
		q->start = 0;
		if (q->cap - q->end >= n)
			return 0;
	}
	cap = q->cap ? q->cap : 64 * 1024;
	while (cap - q->end < n)
		cap *= 2;
	p = realloc(q->buf, cap);
	if (!p)
		return -ENOMEM;
	q->buf = p;
	q->cap = cap;
	return 0;
}

int outq_frame(struct outq *q, const Hpcc__V1__AgentFrame *f)
{
	size_t len = hpcc__v1__agent_frame__get_packed_size(f);
	int r;

	if (len > FRAME_MAX_DEFAULT)
		return -EMSGSIZE;
	r = outq_reserve(q, FRAME_HEADER_LEN + len);
	if (r < 0)
		return r;
	frame_encode_header(q->buf + q->end, (uint32_t)len);
	hpcc__v1__agent_frame__pack(f, q->buf + q->end + FRAME_HEADER_LEN);
	q->end += FRAME_HEADER_LEN + len;
	return 0;
}

size_t outq_pending(const struct outq *q)
{
	return q->end - q->start;
}

int outq_flush(struct outq *q, int fd)
{
	while (q->start < q->end) {
		ssize_t w = write(fd, q->buf + q->start, q->end - q->start);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		q->start += (size_t)w;
	}
	q->start = q->end = 0;
	return 0;
}

void outq_free(struct outq *q)
{
	free(q->buf);
	*q = (struct outq){ 0 };
}
