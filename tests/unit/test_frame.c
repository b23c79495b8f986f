/*
 * Unit tests for the worker <-> agent framing (src/common/frame.c): the
 * header's byte layout, the incremental decoder fed one byte at a time and
 * several frames at once, the exact maximum and one byte over it (refused
 * before any body memory is set aside), a non-zero flag byte, sticky
 * errors, zero-length frames, and the blocking frame_write/frame_read pair
 * over a socketpair, including EOF inside a frame and a non-blocking
 * writer that has to wait for its reader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"

/* header + body in one malloc'd buffer. */
static uint8_t *make_frame(const void *body, uint32_t len, size_t *ret_len)
{
	uint8_t *p = malloc(FRAME_HEADER_LEN + len + 1);
	assert_non_null(p);
	frame_encode_header(p, len);
	if (len)
		memcpy(p + FRAME_HEADER_LEN, body, len);
	*ret_len = FRAME_HEADER_LEN + len;
	return p;
}

static void test_header_layout(void **state)
{
	uint8_t hdr[FRAME_HEADER_LEN];

	frame_encode_header(hdr, 0x01020304u);
	assert_memory_equal(hdr, ((uint8_t[]){ 0, 1, 2, 3, 4 }), FRAME_HEADER_LEN);
	frame_encode_header(hdr, 0);
	assert_memory_equal(hdr, ((uint8_t[]){ 0, 0, 0, 0, 0 }), FRAME_HEADER_LEN);
	frame_encode_header(hdr, UINT32_MAX);
	assert_memory_equal(hdr, ((uint8_t[]){ 0, 0xff, 0xff, 0xff, 0xff }), FRAME_HEADER_LEN);
}

static void test_feed_byte_by_byte(void **state)
{
	struct frame_decoder d;
	size_t n;
	uint8_t *f = make_frame("hello, agent", 12, &n);

	frame_decoder_init(&d, 64);
	for (size_t i = 0; i < n; i++) {
		assert_false(d.ready);
		assert_int_equal(frame_decoder_feed(&d, f + i, 1), 1);
	}
	assert_true(d.ready);
	assert_int_equal(d.body_len, 12);
	assert_memory_equal(d.body, "hello, agent", 12);
	/* Feeding while a frame is ready takes nothing. */
	assert_int_equal(frame_decoder_feed(&d, f, n), 0);
	frame_decoder_next(&d);
	assert_false(d.ready);
	/* The same decoder takes the next frame. */
	assert_int_equal(frame_decoder_feed(&d, f, n), (ssize_t)n);
	assert_true(d.ready);
	frame_decoder_free(&d);
	free(f);
}

static void test_several_frames_in_one_feed(void **state)
{
	const char *bodies[] = { "one", "", "three three", "4" };
	uint8_t buf[256];
	size_t len = 0, off = 0;
	struct frame_decoder d;

	for (size_t i = 0; i < 4; i++) {
		frame_encode_header(buf + len, (uint32_t)strlen(bodies[i]));
		memcpy(buf + len + FRAME_HEADER_LEN, bodies[i], strlen(bodies[i]));
		len += FRAME_HEADER_LEN + strlen(bodies[i]);
	}
	frame_decoder_init(&d, 64);
	for (size_t i = 0; i < 4; i++) {
		ssize_t used = frame_decoder_feed(&d, buf + off, len - off);
		/* It stops exactly at the end of each frame. */
		assert_int_equal(used, FRAME_HEADER_LEN + strlen(bodies[i]));
		assert_true(d.ready);
		assert_int_equal(d.body_len, strlen(bodies[i]));
		if (d.body_len)
			assert_memory_equal(d.body, bodies[i], d.body_len);
		off += (size_t)used;
		frame_decoder_next(&d);
	}
	assert_int_equal(off, len);
	assert_int_equal(frame_decoder_feed(&d, buf, 0), 0);
	assert_false(d.ready);
	frame_decoder_free(&d);
}

static void test_exact_max(void **state)
{
	uint8_t body[100];
	struct frame_decoder d;
	size_t n;
	uint8_t *f;

	memset(body, 'x', sizeof(body));
	f = make_frame(body, sizeof(body), &n);
	frame_decoder_init(&d, sizeof(body));
	assert_int_equal(frame_decoder_feed(&d, f, n), (ssize_t)n);
	assert_true(d.ready);
	assert_true(d.body_cap <= sizeof(body));
	assert_memory_equal(d.body, body, sizeof(body));
	frame_decoder_free(&d);
	free(f);
}

static void test_max_plus_one_refused_before_body(void **state)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame_decoder d;

	frame_decoder_init(&d, 100);
	frame_encode_header(hdr, 101);
	assert_int_equal(frame_decoder_feed(&d, hdr, 4), 4);
	assert_int_equal(frame_decoder_feed(&d, hdr + 4, 1), -EMSGSIZE);
	assert_null(d.body);
	assert_int_equal(d.body_cap, 0);
	/* Sticky. */
	assert_int_equal(frame_decoder_feed(&d, hdr, 1), -EMSGSIZE);
	frame_decoder_free(&d);

	/* A hostile 4 GiB length is refused the same way. */
	frame_decoder_init(&d, FRAME_MAX_DEFAULT);
	frame_encode_header(hdr, UINT32_MAX);
	assert_int_equal(frame_decoder_feed(&d, hdr, sizeof(hdr)), -EMSGSIZE);
	assert_null(d.body);
	frame_decoder_free(&d);
}

static void test_nonzero_flag(void **state)
{
	uint8_t f[FRAME_HEADER_LEN + 1] = { 1, 0, 0, 0, 1, 'x' };
	struct frame_decoder d;

	frame_decoder_init(&d, 100);
	assert_int_equal(frame_decoder_feed(&d, f, sizeof(f)), -EPROTO);
	assert_false(d.ready);
	assert_int_equal(frame_decoder_feed(&d, f, sizeof(f)), -EPROTO);
	frame_decoder_free(&d);

	f[0] = 0x80;
	frame_decoder_init(&d, 100);
	assert_int_equal(frame_decoder_feed(&d, f, sizeof(f)), -EPROTO);
	frame_decoder_free(&d);
}

static void test_zero_length_frame(void **state)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame_decoder d;

	frame_decoder_init(&d, 0); /* even a decoder that takes no body */
	frame_encode_header(hdr, 0);
	assert_int_equal(frame_decoder_feed(&d, hdr, sizeof(hdr)), FRAME_HEADER_LEN);
	assert_true(d.ready);
	assert_int_equal(d.body_len, 0);
	frame_decoder_next(&d);
	frame_encode_header(hdr, 1);
	assert_int_equal(frame_decoder_feed(&d, hdr, sizeof(hdr)), -EMSGSIZE);
	frame_decoder_free(&d);
}

static void socketpair_or_fail(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_write_read_socketpair(void **state)
{
	int sv[2];
	uint8_t *body = NULL;
	size_t len = 0;

	socketpair_or_fail(sv);
	assert_int_equal(frame_write(sv[0], "abc", 3), 0);
	assert_int_equal(frame_write(sv[0], "", 0), 0);
	assert_int_equal(frame_read(sv[1], 16, &body, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(body, "abc", 3);
	free(body);
	assert_int_equal(frame_read(sv[1], 16, &body, &len), 0);
	assert_int_equal(len, 0);
	free(body);
	/* Clean EOF before any byte. */
	close(sv[0]);
	assert_int_equal(frame_read(sv[1], 16, &body, &len), -EPIPE);
	close(sv[1]);

	/* Over the reader's maximum, and a non-zero flag. */
	socketpair_or_fail(sv);
	assert_int_equal(frame_write(sv[0], "0123456789", 10), 0);
	assert_int_equal(frame_read(sv[1], 9, &body, &len), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
	socketpair_or_fail(sv);
	assert_int_equal(write(sv[0], "\x01\0\0\0\x01x", 6), 6);
	assert_int_equal(frame_read(sv[1], 9, &body, &len), -EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* frame_write refuses a length that does not fit the header. */
	assert_int_equal(frame_write(-1, "", (size_t)UINT32_MAX + 1), -EMSGSIZE);
}

static void test_read_eof_inside_frame(void **state)
{
	int sv[2];
	uint8_t *body = NULL;
	size_t len = 0;

	/* Inside the header. */
	socketpair_or_fail(sv);
	assert_int_equal(write(sv[0], "\0\0\0", 3), 3);
	close(sv[0]);
	assert_int_equal(frame_read(sv[1], 100, &body, &len), -EIO);
	close(sv[1]);

	/* Inside the body. */
	socketpair_or_fail(sv);
	assert_int_equal(write(sv[0], "\0\0\0\0\x0a" "abc", 8), 8);
	close(sv[0]);
	assert_int_equal(frame_read(sv[1], 100, &body, &len), -EIO);
	close(sv[1]);
}

struct writer {
	int fd;
	const uint8_t *p;
	size_t len;
	int r;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	w->r = frame_write(w->fd, w->p, w->len);
	return NULL;
}

static void test_large_frame_nonblocking_writer(void **state)
{
	const size_t big = 3u << 20; /* far more than a socket buffer */
	uint8_t *data = malloc(big), *body = NULL;
	struct writer w;
	pthread_t t;
	size_t len = 0;
	int sv[2];

	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	socketpair_or_fail(sv);
	/* A non-blocking writer must wait for room, not fail with EAGAIN. */
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	w = (struct writer){ .fd = sv[0], .p = data, .len = big, .r = 1 };
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	usleep(20000);
	assert_int_equal(frame_read(sv[1], FRAME_MAX_DEFAULT, &body, &len), 0);
	pthread_join(t, NULL);
	assert_int_equal(w.r, 0);
	assert_int_equal(len, big);
	assert_memory_equal(body, data, big);
	free(body);

	/* The incremental decoder takes the same bytes in odd-sized pieces. */
	{
		struct frame_decoder d;
		uint8_t *f;
		size_t n, off = 0, step = 1;

		f = malloc(big + FRAME_HEADER_LEN);
		assert_non_null(f);
		frame_encode_header(f, (uint32_t)big);
		memcpy(f + FRAME_HEADER_LEN, data, big);
		n = big + FRAME_HEADER_LEN;
		frame_decoder_init(&d, FRAME_MAX_DEFAULT);
		while (off < n) {
			size_t take = step < n - off ? step : n - off;
			ssize_t used = frame_decoder_feed(&d, f + off, take);
			assert_int_equal(used, (ssize_t)take);
			off += take;
			step = step * 3 + 1;
		}
		assert_true(d.ready);
		assert_memory_equal(d.body, data, big);
		frame_decoder_free(&d);
		free(f);
	}
	close(sv[0]);
	close(sv[1]);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_layout),
		cmocka_unit_test(test_feed_byte_by_byte),
		cmocka_unit_test(test_several_frames_in_one_feed),
		cmocka_unit_test(test_exact_max),
		cmocka_unit_test(test_max_plus_one_refused_before_body),
		cmocka_unit_test(test_nonzero_flag),
		cmocka_unit_test(test_zero_length_frame),
		cmocka_unit_test(test_write_read_socketpair),
		cmocka_unit_test(test_read_eof_inside_frame),
		cmocka_unit_test(test_large_frame_nonblocking_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
