/*
 * Unit tests for escape stripping (src/common/ansi.c): the SGR colours and
 * erase-line sequences GCC and Clang put around diagnostics, OSC 8
 * hyperlinks with either terminator, sequences cut off at the end of the
 * buffer, and text without escapes, which must come out byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "ansi.h"

/* Strips in (n bytes) and checks the result is exactly want. */
static void check_strip_n(const char *in, size_t n, const char *want)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, in, n), 0);
	ansi_strip(&b);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data, want, b.len);
	/* The buffer stays a C string. */
	if (n > 0)
		assert_int_equal(b.data[b.len], '\0');
	buf_free(&b);
}

static void check_strip(const char *in, const char *want) { check_strip_n(in, strlen(in), want); }

static void test_sgr(void **state)
{
	/* What GCC prints for an error with colour always on. */
	check_strip("\033[01m\033[Ka.c:1:1:\033[m\033[K \033[01;31m\033[Kerror: \033[m\033[Kexpected ';'\n",
		    "a.c:1:1: error: expected ';'\n");
	check_strip("\033[0m", "");
	check_strip("\033[1;38;5;196mred\033[0m", "red");
	check_strip("a\033[mb\033[31mc", "abc");
	/* Private parameters ('?' is a parameter byte, not a final one). */
	check_strip("x\033[?25ly", "xy");
}

static void test_erase_line(void **state)
{
	check_strip("\033[K", "");
	check_strip("one\033[Ktwo\033[2K", "onetwo");
}

static void test_osc8_bel(void **state)
{
	check_strip("see \033]8;;https://gcc.gnu.org/onlinedocs/gcc/Warning-Options.html#index-Wunused\a"
		    "-Wunused\033]8;;\a here",
		    "see -Wunused here");
}

static void test_osc8_st(void **state)
{
	check_strip("[\033]8;;https://clang.llvm.org/docs\033\\-Wall\033]8;;\033\\]", "[-Wall]");
	/* An OSC URL may hold ESC-free bytes that look like CSI parts. */
	check_strip("\033]8;;file:///x[1m\033\\t\033]8;;\033\\", "t");
}

static void test_cut_off(void **state)
{
	check_strip("abc\033", "abc");
	check_strip("abc\033[", "abc");
	check_strip("abc\033[01;3", "abc");
	check_strip("abc\033]8;;https://exa", "abc");
	check_strip("abc\033]8;;https://example.com\033", "abc");
	check_strip("\033[31", "");
}

static void test_plain_untouched(void **state)
{
	static const char text[] = "a.c: In function 'main':\n\ta.c:3:5: warning: \xe2\x80\x98x\xe2\x80\x99 unused [-Wunused]\n";
	check_strip(text, text);
	/* A NUL in the data is data, not the end. */
	static const char with_nul[] = { 'a', '\0', 'b' };
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, with_nul, sizeof(with_nul)), 0);
	ansi_strip(&b);
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, with_nul, 3);
	buf_free(&b);
}

static void test_empty(void **state)
{
	/* Never filled: data is NULL. */
	struct buf b;
	buf_init(&b, 0);
	ansi_strip(&b);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	check_strip_n("", 0, "");
	/* Allocated but empty. */
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "x"), 0);
	buf_reset(&b);
	ansi_strip(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.data[0], '\0');
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sgr),
		cmocka_unit_test(test_erase_line),
		cmocka_unit_test(test_osc8_bel),
		cmocka_unit_test(test_osc8_st),
		cmocka_unit_test(test_cut_off),
		cmocka_unit_test(test_plain_untouched),
		cmocka_unit_test(test_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
