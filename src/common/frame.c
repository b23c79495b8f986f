/*
 * gRPC length-prefixed framing for the worker <-> agent stream (frame.h).
 * libc only: the static agent links this file alone. The incremental
 * decoder keeps at most one frame; it checks the flag byte and the length
 * as soon as the 5-byte header is complete, so a hostile length is refused
 * before any memory is set aside for the body.
 */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

void frame_decoder_init(struct frame_decoder *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max;
}

void frame_decoder_free(struct frame_decoder *d)
{
	if (!d)
		return;
	free(d->body);
	d->body = NULL;
	d->body_cap = d->body_len = d->body_have = 0;
	d->hdr_have = 0;
	d->ready = false;
}

void frame_encode_header(uint8_t hdr[FRAME_HEADER_LEN], uint32_t len)
{
	hdr[0] = 0;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

static uint32_t header_length(const uint8_t hdr[FRAME_HEADER_LEN])
{
	return (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 8 | (uint32_t)hdr[4];
}

/* Checks a complete header; 0 with *ret_len, or the negative errno. */
static int header_check(const uint8_t hdr[FRAME_HEADER_LEN], size_t max, size_t *ret_len)
{
	uint32_t len;

	if (hdr[0] != 0)
		return -EPROTO;
	len = header_length(hdr);
	if (len > max)
		return -EMSGSIZE;
	*ret_len = len;
	return 0;
}

/* Makes room for a body of len bytes. The buffer grows by doubling, never
 * past the decoder's maximum, and is kept for the next frames. */
static int body_reserve(struct frame_decoder *d, size_t len)
{
	size_t cap;
	uint8_t *p;

	if (len <= d->body_cap)
		return 0;
	cap = d->body_cap ? d->body_cap : 4096;
	while (cap < len && cap <= SIZE_MAX / 2)
		cap *= 2;
	if (cap < len)
		cap = len;
	if (cap > d->max) /* len <= max was checked */
		cap = d->max;
	p = realloc(d->body, cap);
	if (!p)
		return -ENOMEM;
	d->body = p;
	d->body_cap = cap;
	return 0;
}

ssize_t frame_decoder_feed(struct frame_decoder *d, const void *p, size_t n)
{
	const uint8_t *in = p;
	size_t used = 0;

	if (d->error)
		return d->error;
	while (used < n && !d->ready) {
		if (d->hdr_have < FRAME_HEADER_LEN) {
			size_t take = FRAME_HEADER_LEN - d->hdr_have;
			size_t len = 0;
			int r;

			if (take > n - used)
				take = n - used;
			memcpy(d->hdr + d->hdr_have, in + used, take);
			d->hdr_have += take;
			used += take;
			if (d->hdr_have < FRAME_HEADER_LEN)
				break;
			r = header_check(d->hdr, d->max, &len);
			if (r == 0)
				r = body_reserve(d, len);
			if (r < 0) {
				d->error = r;
				return r;
			}
			d->body_len = len;
			d->body_have = 0;
			d->ready = len == 0;
		} else {
			size_t take = d->body_len - d->body_have;

			if (take > n - used)
				take = n - used;
			memcpy(d->body + d->body_have, in + used, take);
			d->body_have += take;
			used += take;
			d->ready = d->body_have == d->body_len;
		}
	}
	return (ssize_t)used;
}

void frame_decoder_next(struct frame_decoder *d)
{
	d->ready = false;
	d->hdr_have = 0;
	d->body_len = d->body_have = 0;
}

/* Waits until a non-blocking fd takes more bytes; a blocking fd never
 * gets here. */
static int wait_writable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	for (;;) {
		int r = poll(&pfd, 1, -1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends the header and body with the deadline's rules (see frame.h). */
static int write_frame(int fd, const void *body, size_t len, int64_t deadline_ms)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct iovec iov[2];
	int iovcnt = 2, first = 0;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	frame_encode_header(hdr, (uint32_t)len);
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = len };
	while (first < iovcnt) {
		ssize_t w;
		if (deadline_ms >= 0) {
			/* Never block inside the send: wait for room with poll,
			 * whose timeout the deadline bounds. */
			struct msghdr m = { .msg_iov = iov + first, .msg_iovlen = (size_t)(iovcnt - first) };
			w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		} else
			w = writev(fd, iov + first, iovcnt - first);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (deadline_ms < 0) {
					int r = wait_writable(fd);
					if (r < 0)
						return r;
					continue;
				}
				int64_t left = deadline_ms - monotonic_ms();
				if (left <= 0)
					return -ETIMEDOUT;
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
				if (r < 0 && errno != EINTR)
					return -errno;
				continue;
			}
			return -errno;
		}
		/* Skip what was written, across both buffers. */
		while (first < iovcnt && (size_t)w >= iov[first].iov_len) {
			w -= (ssize_t)iov[first].iov_len;
			first++;
		}
		if (first < iovcnt) {
			iov[first].iov_base = (uint8_t *)iov[first].iov_base + w;
			iov[first].iov_len -= (size_t)w;
		}
	}
	return 0;
}

int frame_write(int fd, const void *body, size_t len)
{
	return write_frame(fd, body, len, -1);
}

int frame_write_deadline(int fd, const void *body, size_t len, int64_t deadline_ms)
{
	return write_frame(fd, body, len, deadline_ms < 0 ? 0 : deadline_ms);
}

/* Reads exactly n bytes; returns how many arrived before EOF (< n only at
 * EOF), or a negative errno. */
static ssize_t read_full(int fd, uint8_t *p, size_t n)
{
	size_t have = 0;

	while (have < n) {
		ssize_t r = read(fd, p + have, n - have);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		have += (size_t)r;
	}
	return (ssize_t)have;
}

int frame_read(int fd, size_t max, uint8_t **ret, size_t *ret_len)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	uint8_t *body;
	size_t len = 0;
	ssize_t got;
	int r;

	got = read_full(fd, hdr, sizeof(hdr));
	if (got < 0)
		return (int)got;
	if (got == 0)
		return -EPIPE;
	if ((size_t)got < sizeof(hdr))
		return -EIO;
	r = header_check(hdr, max, &len);
	if (r < 0)
		return r;
	body = malloc(len ? len : 1);
	if (!body)
		return -ENOMEM;
	got = read_full(fd, body, len);
	if (got < 0 || (size_t)got < len) {
		free(body);
		return got < 0 ? (int)got : -EIO;
	}
	*ret = body;
	*ret_len = len;
	return 0;
}
