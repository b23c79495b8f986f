/*
 * Unit tests for the capped buffers (src/common/buf.c): the cap is exact
 * (max bytes fit, max + 1 do not), a failed append leaves the buffer as it
 * was, growth keeps the data and the trailing NUL, and the length-prefixed
 * encodings used for hashing produce exactly the documented bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "buf.h"

static void test_init_defaults(void **state)
{
	struct buf b;
	buf_init(&b, 0);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	assert_int_equal(b.max, BUF_DEFAULT_MAX);
	buf_init(&b, 123);
	assert_int_equal(b.max, 123);
	buf_free(&b);
	assert_int_equal(b.max, 123);
}

static void test_cap_exact(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456789");
	/* The cap is on len; the NUL terminator fits on top of it. */
	assert_true(b.alloc <= 11);
	assert_int_equal(buf_reserve(&b, 0), 0);
	assert_int_equal(buf_append_char(&b, 'x'), -EFBIG);
	assert_int_equal(buf_append(&b, "x", 1), -EFBIG);
	assert_int_equal(buf_append_str(&b, "x"), -EFBIG);
	assert_int_equal(buf_reserve(&b, 1), -EFBIG);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456789");
	/* Appending nothing at the cap is fine. */
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_int_equal(b.len, 10);
}

static void test_cap_one_shot(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "0123456789A", 11), -EFBIG);
	assert_int_equal(b.len, 0);
	/* The cap is checked before any allocation. */
	assert_null(b.data);
	assert_int_equal(buf_reserve(&b, 11), -EFBIG);
	assert_int_equal(buf_reserve(&b, 10), 0);
	assert_int_equal(buf_append(&b, "01234", 5), 0);
	assert_int_equal(buf_reserve(&b, 6), -EFBIG);
	assert_int_equal(buf_reserve(&b, 5), 0);
	/* Huge requests must not wrap around. */
	assert_int_equal(buf_reserve(&b, SIZE_MAX), -EFBIG);
	assert_int_equal(buf_reserve(&b, SIZE_MAX - 4), -EFBIG);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "01234");
}

static void test_default_cap(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_reserve(&b, BUF_DEFAULT_MAX + 1), -EFBIG);
	assert_null(b.data);
	/* A zeroed struct (max 0) also gets the default cap. */
	struct buf z = { 0 };
	assert_int_equal(buf_reserve(&z, BUF_DEFAULT_MAX + 1), -EFBIG);
	assert_int_equal(buf_append(&z, "ab", 2), 0);
	assert_string_equal(z.data, "ab");
	buf_free(&z);
}

static void test_growth(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < 100000; i++) {
		assert_int_equal(buf_append_char(&b, (char)('a' + i % 26)), 0);
		assert_true(b.alloc >= b.len + 1);
	}
	assert_int_equal(b.len, 100000);
	for (size_t i = 0; i < 100000; i++)
		assert_int_equal(b.data[i], 'a' + i % 26);
	assert_int_equal(b.data[b.len], '\0');
	/* Growth doubles, so the allocation stays within twice the need. */
	assert_true(b.alloc <= 2 * (b.len + 1));
}

static void test_growth_clamped_to_cap(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 1000);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_append_char(&b, 'z'), 0);
	assert_int_equal(b.len, 1000);
	/* Doubling would give 1024; the allocation never exceeds max + 1. */
	assert_int_equal(b.alloc, 1001);
	assert_int_equal(buf_append_char(&b, 'z'), -EFBIG);
}

static void test_append_str_and_char(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "hello"), 0);
	assert_int_equal(buf_append_char(&b, ' '), 0);
	assert_int_equal(buf_append_str(&b, ""), 0);
	assert_int_equal(buf_append_str(&b, "world"), 0);
	assert_int_equal(b.len, 11);
	assert_string_equal(b.data, "hello world");
	/* Binary data with NUL bytes is kept as is. */
	assert_int_equal(buf_append(&b, "\0x\0", 3), 0);
	assert_int_equal(b.len, 14);
	assert_memory_equal(b.data, "hello world\0x\0", 15);
}

static void test_printf(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_printf(&b, "%d-%s-%c", 42, "abc", 'z'), 0);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "42-abc-z");
	assert_int_equal(buf_printf(&b, "/%05u", 7u), 0);
	assert_string_equal(b.data, "42-abc-z/00007");
	assert_int_equal(b.len, 14);

	/* A long expansion grows the buffer. */
	assert_int_equal(buf_printf(&b, "%1000s", "e"), 0);
	assert_int_equal(b.len, 1014);
	assert_int_equal(b.data[1013], 'e');
	assert_int_equal(b.data[1012], ' ');
	assert_int_equal(b.data[1014], '\0');
}

static void test_printf_empty(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	const char *empty = "";
	assert_int_equal(buf_printf(&b, "%s", empty), 0);
	assert_int_equal(b.len, 0);
	assert_non_null(b.data);
	assert_string_equal(b.data, "");
}

static void test_printf_cap(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 8);
	assert_int_equal(buf_printf(&b, "%s", "1234"), 0);
	assert_int_equal(buf_printf(&b, "%d", 12345), -EFBIG);
	assert_int_equal(b.len, 4);
	assert_string_equal(b.data, "1234");
	assert_int_equal(buf_printf(&b, "%d", 5678), 0);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "12345678");
	assert_int_equal(buf_printf(&b, "%s", "x"), -EFBIG);
	assert_string_equal(b.data, "12345678");
}

static void test_u64_little_endian(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_u64(&b, UINT64_C(0x0102030405060708)), 0);
	assert_int_equal(buf_append_u64(&b, 0), 0);
	assert_int_equal(buf_append_u64(&b, UINT64_MAX), 0);
	static const unsigned char want[24] = {
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	assert_int_equal(b.len, 24);
	assert_memory_equal(b.data, want, sizeof(want));
}

static void test_length_prefixed(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_lp(&b, "ab", 2), 0);
	assert_int_equal(buf_append_lp_str(&b, "xyz"), 0);
	assert_int_equal(buf_append_lp_str(&b, ""), 0);
	assert_int_equal(buf_append_lp_str(&b, NULL), 0);
	assert_int_equal(buf_append_lp(&b, NULL, 0), 0);
	static const unsigned char want[] = {
		2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b',
		3, 0, 0, 0, 0, 0, 0, 0, 'x', 'y', 'z',
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
}

static void test_length_prefixed_unambiguous(void **state)
{
	/* ("ab", "c") and ("a", "bc") must encode differently. */
	_cleanup_buf_ struct buf x, y;
	buf_init(&x, 0);
	buf_init(&y, 0);
	assert_int_equal(buf_append_lp_str(&x, "ab"), 0);
	assert_int_equal(buf_append_lp_str(&x, "c"), 0);
	assert_int_equal(buf_append_lp_str(&y, "a"), 0);
	assert_int_equal(buf_append_lp_str(&y, "bc"), 0);
	assert_int_equal(x.len, y.len);
	assert_true(memcmp(x.data, y.data, x.len) != 0);
}

static void test_length_prefixed_cap(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_append_lp(&b, "ab", 2), 0);
	assert_int_equal(b.len, 10);
	buf_reset(&b);
	/* The prefix alone would fit but the payload would not: nothing is
	 * written, so no half record is left behind. */
	assert_int_equal(buf_append_lp(&b, "abc", 3), -EFBIG);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_append_lp(&b, "abc", SIZE_MAX - 3), -EFBIG);
	assert_int_equal(b.len, 0);
}

static void test_steal_empty(void **state)
{
	struct buf b;
	buf_init(&b, 77);
	char *s = buf_steal(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 77);
	buf_free(&b);
}

static void test_steal_after_reset(void **state)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "garbage"), 0);
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	char *s = buf_steal(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	buf_free(&b);
}

static void test_steal_content(void **state)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "content"), 0);
	char *s = buf_steal(&b);
	assert_string_equal(s, "content");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	assert_int_equal(b.max, BUF_DEFAULT_MAX);
	/* The buffer is usable again after a steal. */
	assert_int_equal(buf_append_str(&b, "again"), 0);
	assert_string_equal(b.data, "again");
	free(s);
	buf_free(&b);
}

static void test_reset_keeps_allocation(void **state)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "abcdef"), 0);
	char *data = b.data;
	size_t alloc = b.alloc;
	buf_reset(&b);
	assert_ptr_equal(b.data, data);
	assert_int_equal(b.alloc, alloc);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	/* Reset of a never-used buffer is harmless. */
	struct buf z;
	buf_init(&z, 0);
	buf_reset(&z);
	assert_null(z.data);
}

static void test_free_twice_and_null(void **state)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "x"), 0);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	buf_free(NULL);
}

/* A failed append is remembered: a key built from unchecked appends can
 * tell it lost a part, even when later, smaller appends succeed. */
static void test_error_is_sticky(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 8);
	assert_int_equal(b.error, 0);
	assert_int_equal(buf_append(&b, "0123456789", 10), -EFBIG);
	assert_int_equal(buf_append(&b, "ab", 2), 0);
	assert_int_equal(b.len, 2);
	assert_int_equal(b.error, -EFBIG);
	buf_reset(&b);
	assert_int_equal(b.error, 0);
	buf_free(&b);
	assert_int_equal(b.error, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_defaults),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_cap_exact),
		cmocka_unit_test(test_cap_one_shot),
		cmocka_unit_test(test_default_cap),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_growth_clamped_to_cap),
		cmocka_unit_test(test_append_str_and_char),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_printf_empty),
		cmocka_unit_test(test_printf_cap),
		cmocka_unit_test(test_u64_little_endian),
		cmocka_unit_test(test_length_prefixed),
		cmocka_unit_test(test_length_prefixed_unambiguous),
		cmocka_unit_test(test_length_prefixed_cap),
		cmocka_unit_test(test_steal_empty),
		cmocka_unit_test(test_steal_after_reset),
		cmocka_unit_test(test_steal_content),
		cmocka_unit_test(test_reset_keeps_allocation),
		cmocka_unit_test(test_free_twice_and_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
