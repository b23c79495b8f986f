/*
 * Unit tests for zstd helpers (src/common/compress.c): round trips, and the
 * guarantees of bounded decompression: a frame that claims or produces more
 * than max_out is refused without allocating it, corrupt, truncated or padded
 * input is -EBADMSG, and on any error the output buffer keeps its length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY  /* ZSTD_getFrameHeader */
#include <zstd.h>

#include "compress.h"

/* A fixed-seed generator, so that failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint8_t rng_byte(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint8_t)(rng_state >> 24);
}

static void fill_random(void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)p)[i] = rng_byte();
}

static void fill_compressible(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44] ^ (char)((i >> 16) & 1);
}

/* Decompresses and checks that a failure left out exactly as it was. */
static int decompress_checked(const void *data, size_t n, size_t max_out, struct buf *out)
{
	size_t len = out->len;
	char *copy = len ? malloc(len) : NULL;
	if (len) {
		assert_non_null(copy);
		memcpy(copy, out->data, len);
	}
	int r = decompress_zstd(data, n, max_out, out);
	if (r < 0) {
		assert_int_equal(out->len, len);
		if (len)
			assert_memory_equal(out->data, copy, len);
		if (out->data)
			assert_int_equal(out->data[out->len], '\0');
	}
	free(copy);
	return r;
}

/* Runs one streaming step and appends what it produced to out. */
static size_t stream_step(ZSTD_CCtx *cctx, ZSTD_inBuffer *in, ZSTD_EndDirective mode, struct buf *out)
{
	char chunk[64 * 1024];
	ZSTD_outBuffer o = { chunk, sizeof(chunk), 0 };
	size_t left = ZSTD_compressStream2(cctx, &o, in, mode);
	assert_false(ZSTD_isError(left));
	assert_int_equal(buf_append(out, chunk, o.pos), 0);
	return left;
}

/* A frame whose header has no content size, as streaming producers write. */
static void compress_streaming(const void *data, size_t n, struct buf *out)
{
	size_t start = out->len;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	assert_non_null(cctx);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
	/* Feed everything with "continue" first: ending in the same call as
	 * the data would let zstd learn the size and write it. */
	ZSTD_inBuffer in = { data, n, 0 };
	while (in.pos < in.size)
		stream_step(cctx, &in, ZSTD_e_continue, out);
	ZSTD_inBuffer none = { NULL, 0, 0 };
	while (stream_step(cctx, &none, ZSTD_e_end, out) != 0)
		;
	ZSTD_freeCCtx(cctx);
	assert_int_equal(ZSTD_getFrameContentSize(out->data + start, out->len - start), ZSTD_CONTENTSIZE_UNKNOWN);
}

static void test_round_trip_empty(void **state)
{
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd("", 0, COMPRESS_DEFAULT_LEVEL, &z), 0);
	assert_true(z.len > 0);
	assert_int_equal(ZSTD_getFrameContentSize(z.data, z.len), 0);
	assert_int_equal(decompress_zstd(z.data, z.len, 0, &out), 0);
	assert_int_equal(out.len, 0);
}

static void test_round_trip_small(void **state)
{
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(buf_append_str(&z, "prefix"), 0);
	assert_int_equal(compress_zstd("hello, world", 12, COMPRESS_DEFAULT_LEVEL, &z), 0);
	/* compress appends after what was there */
	assert_memory_equal(z.data, "prefix", 6);
	const char *frame = z.data + 6;
	size_t frame_len = z.len - 6;
	assert_int_equal(ZSTD_getFrameContentSize(frame, frame_len), 12);

	/* decompress appends too, and keeps the NUL after the data */
	assert_int_equal(buf_append_str(&out, "X"), 0);
	assert_int_equal(decompress_zstd(frame, frame_len, 12, &out), 0);
	assert_int_equal(out.len, 13);
	assert_string_equal(out.data, "Xhello, world");
}

static void test_frame_has_checksum(void **state)
{
	_cleanup_buf_ struct buf z;
	buf_init(&z, 0);
	assert_int_equal(compress_zstd("abc", 3, COMPRESS_DEFAULT_LEVEL, &z), 0);
	ZSTD_frameHeader h;
	assert_int_equal(ZSTD_getFrameHeader(&h, z.data, z.len), 0);
	assert_int_equal(h.checksumFlag, 1);
	assert_int_equal(h.frameContentSize, 3);
}

static void test_round_trip_10mb(void **state)
{
	size_t n = 10 << 20;
	char *data = malloc(n);
	assert_non_null(data);
	fill_compressible(data, n);
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, n, COMPRESS_DEFAULT_LEVEL, &z), 0);
	assert_true(z.len < n / 20);
	assert_int_equal(decompress_zstd(z.data, z.len, n, &out), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, data, n);

	/* One byte under the claimed size is refused from the header alone. */
	buf_reset(&out);
	assert_int_equal(decompress_checked(z.data, z.len, n - 1, &out), -EFBIG);
	assert_int_equal(out.len, 0);

	/* An output buffer capped at exactly the size is enough. */
	struct buf exact;
	buf_init(&exact, n);
	assert_int_equal(decompress_zstd(z.data, z.len, n, &exact), 0);
	assert_int_equal(exact.len, n);
	assert_memory_equal(exact.data, data, n);
	buf_free(&exact);
	free(data);
}

static void test_output_buffer_cap(void **state)
{
	/* out's own cap is a limit too: output that fits it exactly is
	 * accepted, one byte more is -EFBIG, whatever the frame header says. */
	static const size_t sizes[] = { 1, 2, 1000, 128 * 1024, 128 * 1024 + 1, (1 << 20) + 7 };
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		size_t n = sizes[i];
		char *data = malloc(n);
		assert_non_null(data);
		fill_compressible(data, n);
		for (int streaming = 0; streaming < 2; streaming++) {
			_cleanup_buf_ struct buf z;
			buf_init(&z, 0);
			if (streaming)
				compress_streaming(data, n, &z);
			else
				assert_int_equal(compress_zstd(data, n, 1, &z), 0);
			struct buf out;
			buf_init(&out, n);
			assert_int_equal(decompress_checked(z.data, z.len, SIZE_MAX, &out), 0);
			assert_int_equal(out.len, n);
			assert_memory_equal(out.data, data, n);
			buf_free(&out);
			if (n > 1) {
				buf_init(&out, n - 1);
				assert_int_equal(decompress_checked(z.data, z.len, SIZE_MAX, &out), -EFBIG);
				assert_int_equal(out.len, 0);
				buf_free(&out);
			}
		}
		free(data);
	}
}

static void test_round_trip_levels(void **state)
{
	char data[50000];
	fill_compressible(data, sizeof(data));
	fill_random(data + 20000, 5000);
	static const int levels[] = { -5, 1, 3, 19 };
	for (size_t i = 0; i < ARRAY_SIZE(levels); i++) {
		_cleanup_buf_ struct buf z, out;
		buf_init(&z, 0);
		buf_init(&out, 0);
		assert_int_equal(compress_zstd(data, sizeof(data), levels[i], &z), 0);
		assert_int_equal(decompress_zstd(z.data, z.len, sizeof(data), &out), 0);
		assert_int_equal(out.len, sizeof(data));
		assert_memory_equal(out.data, data, sizeof(data));
	}
}

static void test_compress_output_cap(void **state)
{
	char data[1000];
	fill_random(data, sizeof(data));
	_cleanup_buf_ struct buf z;
	buf_init(&z, 10);
	assert_int_equal(buf_append_str(&z, "ab"), 0);
	assert_int_equal(compress_zstd(data, sizeof(data), 1, &z), -EFBIG);
	assert_int_equal(z.len, 2);
	assert_string_equal(z.data, "ab");
}

static void test_claimed_size_over_max(void **state)
{
	char data[1000];
	memset(data, 'a', sizeof(data));
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, sizeof(data), 1, &z), 0);
	assert_int_equal(buf_append_str(&out, "keep"), 0);
	assert_int_equal(decompress_checked(z.data, z.len, 999, &out), -EFBIG);
	assert_int_equal(decompress_checked(z.data, z.len, 0, &out), -EFBIG);
	assert_string_equal(out.data, "keep");
	assert_int_equal(decompress_checked(z.data, z.len, 1000, &out), 0);
	assert_int_equal(out.len, 1004);
}

static void test_unknown_size_bomb(void **state)
{
	/* 64 MiB of zeros compress to almost nothing; with no size in the
	 * header, only the streaming cap stops it. */
	size_t n = 64 << 20;
	char *zeros = calloc(1, n);
	assert_non_null(zeros);
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	compress_streaming(zeros, n, &z);
	free(zeros);
	assert_true(z.len < 1 << 20);

	assert_int_equal(buf_append_str(&out, "keep"), 0);
	size_t max_out = 1 << 20;
	assert_int_equal(decompress_checked(z.data, z.len, max_out, &out), -EFBIG);
	assert_string_equal(out.data, "keep");
	/* The refusal came early: the buffer never grew near the full size
	 * (it doubles, so it may reach twice the cap plus one chunk). */
	assert_true(out.alloc <= 2 * (max_out + 4 + 128 * 1024 + 1));
}

static void test_unknown_size_within_max(void **state)
{
	static const size_t sizes[] = { 1, 1000, 128 * 1024, 128 * 1024 + 1, 3 * 128 * 1024, 1 << 20 };
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		size_t n = sizes[i];
		char *data = malloc(n);
		assert_non_null(data);
		fill_compressible(data, n);
		_cleanup_buf_ struct buf z, out;
		buf_init(&z, 0);
		buf_init(&out, 0);
		compress_streaming(data, n, &z);
		/* Exactly max_out bytes is allowed; one more is not. */
		assert_int_equal(decompress_checked(z.data, z.len, n, &out), 0);
		assert_int_equal(out.len, n);
		assert_memory_equal(out.data, data, n);
		buf_reset(&out);
		assert_int_equal(decompress_checked(z.data, z.len, n - 1, &out), -EFBIG);
		assert_int_equal(out.len, 0);
		free(data);
	}
}

static void check_truncations(const struct buf *z, size_t max_out, struct buf *out)
{
	size_t cuts[] = { z->len - 1, z->len - 4, z->len - 5, z->len / 2, 20, 6, 5, 4, 3, 1, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(cuts); i++)
		assert_int_equal(decompress_checked(z->data, cuts[i], max_out, out), -EBADMSG);
}

static void test_truncated(void **state)
{
	size_t n = 100000;
	char *data = malloc(n);
	assert_non_null(data);
	fill_compressible(data, n);
	fill_random(data + 50000, 10000);
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, n, 1, &z), 0);
	assert_true(z.len > 100);
	assert_int_equal(buf_append_str(&out, "keep"), 0);
	check_truncations(&z, n, &out);
	assert_int_equal(decompress_checked(NULL, 0, n, &out), -EBADMSG);
	assert_string_equal(out.data, "keep");

	/* The same for a frame without a size in its header. */
	buf_reset(&z);
	compress_streaming(data, n, &z);
	check_truncations(&z, n, &out);
	assert_string_equal(out.data, "keep");
	free(data);
}

static void test_trailing_garbage(void **state)
{
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd("payload", 7, 1, &z), 0);
	size_t frame_len = z.len;
	assert_int_equal(buf_append_char(&z, 'x'), 0);
	assert_int_equal(decompress_checked(z.data, z.len, 100, &out), -EBADMSG);
	assert_int_equal(out.len, 0);

	/* Two frames back to back are not "exactly one frame" either. */
	z.len = frame_len;
	assert_int_equal(compress_zstd("second", 6, 1, &z), 0);
	assert_int_equal(decompress_checked(z.data, z.len, 100, &out), -EBADMSG);
	assert_int_equal(out.len, 0);

	/* Without the extra bytes, it is fine. */
	assert_int_equal(decompress_checked(z.data, frame_len, 100, &out), 0);
	assert_string_equal(out.data, "payload");
}

static void test_random_bytes(void **state)
{
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	for (int round = 0; round < 50; round++) {
		unsigned char junk[4096];
		size_t n = 1 + rng_byte() * 16u;
		fill_random(junk, n);
		assert_int_equal(decompress_checked(junk, n, 1 << 20, &out), -EBADMSG);
		assert_int_equal(out.len, 0);
	}
	/* A valid magic number followed by junk. */
	unsigned char junk[256];
	fill_random(junk, sizeof(junk));
	static const unsigned char magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
	memcpy(junk, magic, 4);
	junk[4] = 0x04;  /* frame header: checksum, no size, window follows */
	assert_true(decompress_checked(junk, sizeof(junk), 1 << 20, &out) < 0);
	assert_int_equal(out.len, 0);
}

static void test_corrupt_incompressible(void **state)
{
	/* Random data is stored raw, so a flipped byte is only noticed by the
	 * content checksum. */
	unsigned char data[4096];
	fill_random(data, sizeof(data));
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, sizeof(data), 1, &z), 0);
	z.data[z.len / 2] ^= 0x01;
	assert_int_equal(buf_append_str(&out, "keep"), 0);
	assert_int_equal(decompress_checked(z.data, z.len, sizeof(data), &out), -EBADMSG);
	assert_string_equal(out.data, "keep");
}

static void test_corrupt_checksum(void **state)
{
	char data[20000];
	fill_compressible(data, sizeof(data));
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, sizeof(data), 1, &z), 0);
	/* The last four bytes are the checksum itself. */
	z.data[z.len - 1] ^= 0x80;
	assert_int_equal(decompress_checked(z.data, z.len, sizeof(data), &out), -EBADMSG);
	assert_int_equal(out.len, 0);
	z.data[z.len - 1] ^= 0x80;
	assert_int_equal(decompress_checked(z.data, z.len, sizeof(data), &out), 0);
	assert_int_equal(out.len, sizeof(data));
}

static void test_corrupt_compressible(void **state)
{
	char data[20000];
	fill_compressible(data, sizeof(data));
	_cleanup_buf_ struct buf z, out;
	buf_init(&z, 0);
	buf_init(&out, 0);
	assert_int_equal(compress_zstd(data, sizeof(data), 1, &z), 0);
	/* Every single-byte flip past the header must be caught one way or
	 * another (a flip in the header may only change the claimed size). */
	for (size_t i = 6; i < z.len; i++) {
		z.data[i] ^= 0x10;
		int r = decompress_checked(z.data, z.len, sizeof(data), &out);
		if (r == 0) {
			/* Accepted only if the output is still right. */
			assert_int_equal(out.len, sizeof(data));
			assert_memory_equal(out.data, data, sizeof(data));
		} else {
			assert_true(r == -EBADMSG || r == -EFBIG);
		}
		buf_reset(&out);
		z.data[i] ^= 0x10;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_empty),
		cmocka_unit_test(test_round_trip_small),
		cmocka_unit_test(test_frame_has_checksum),
		cmocka_unit_test(test_round_trip_10mb),
		cmocka_unit_test(test_output_buffer_cap),
		cmocka_unit_test(test_round_trip_levels),
		cmocka_unit_test(test_compress_output_cap),
		cmocka_unit_test(test_claimed_size_over_max),
		cmocka_unit_test(test_unknown_size_bomb),
		cmocka_unit_test(test_unknown_size_within_max),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_corrupt_incompressible),
		cmocka_unit_test(test_corrupt_checksum),
		cmocka_unit_test(test_corrupt_compressible),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
