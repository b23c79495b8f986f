/*
 * Unit tests for struct error (src/common/error.c): the first error wins,
 * messages are folded onto one line and truncated safely, a non-negative code
 * becomes -EIO, and a NULL report is allowed everywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "error.h"

static void test_set(void **state)
{
	struct error err = { 0 };
	assert_int_equal(error_set(&err, -ENOENT, "%s:%d: %s", "file.c", 12, "missing"), -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "file.c:12: missing");
}

static void test_first_error_wins(void **state)
{
	struct error err = { 0 };
	assert_int_equal(error_set(&err, -ENOENT, "root cause"), -ENOENT);
	/* A later failure returns its own code but leaves the report alone. */
	assert_int_equal(error_set(&err, -EIO, "consequence"), -EIO);
	assert_int_equal(error_set(&err, 0, "another"), -EIO);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "root cause");
}

static void test_clear(void **state)
{
	struct error err = { 0 };
	error_set(&err, -EPERM, "first");
	error_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	assert_int_equal(error_set(&err, -EACCES, "second"), -EACCES);
	assert_int_equal(err.code, -EACCES);
	assert_string_equal(err.msg, "second");
	error_clear(NULL);
}

static void test_newline_folding(void **state)
{
	struct error err = { 0 };
	error_set(&err, -EINVAL, "line1\nline2\r\nline3\r%s", "\nend\n");
	assert_string_equal(err.msg, "line1 line2  line3  end ");
	assert_null(strchr(err.msg, '\n'));
	assert_null(strchr(err.msg, '\r'));
}

static void test_code_default(void **state)
{
	struct error err = { 0 };
	assert_int_equal(error_set(&err, 0, "zero"), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_string_equal(err.msg, "zero");

	error_clear(&err);
	/* A positive errno (a common slip) is not taken as success either. */
	assert_int_equal(error_set(&err, ENOENT, "positive"), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_string_equal(err.msg, "positive");
}

static void test_null_report(void **state)
{
	assert_int_equal(error_set(NULL, -ENOMEM, "ignored %d", 1), -ENOMEM);
	assert_int_equal(error_set(NULL, 0, "ignored"), -EIO);
}

static void test_truncation(void **state)
{
	char long_text[2000];
	for (size_t i = 0; i < sizeof(long_text) - 1; i++)
		long_text[i] = (char)('a' + i % 26);
	long_text[sizeof(long_text) - 1] = '\0';
	struct error err = { 0 };
	assert_int_equal(error_set(&err, -E2BIG, "%s\n", long_text), -E2BIG);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_memory_equal(err.msg, long_text, sizeof(err.msg) - 1);
	assert_int_equal(err.msg[sizeof(err.msg) - 1], '\0');
}

static void test_empty_message(void **state)
{
	struct error err = { 0 };
	const char *empty = "";
	assert_int_equal(error_set(&err, -EINVAL, "%s", empty), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "");
	/* An empty message still counts as the first error. */
	error_set(&err, -EIO, "later");
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_newline_folding),
		cmocka_unit_test(test_code_default),
		cmocka_unit_test(test_null_report),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_empty_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
