/*
 * Unit tests for string vectors (src/common/strv.c): items are copied, the
 * vector is NULL-terminated after every change (it is handed to execv as is),
 * insertion keeps the order, and the item cap is exact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "strv.h"

static void assert_strv(const struct strv *s, const char *const *want, size_t n)
{
	assert_int_equal(s->n, n);
	assert_non_null(s->v);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(s->v[i], want[i]);
	assert_null(s->v[n]);
	assert_true(s->alloc >= n + 1);
}

/* Leaves freed, non-zero memory of the size of a small vector on the heap,
 * so that a vector that forgot its terminator is likely to show garbage
 * (under AddressSanitizer fresh memory is never zero anyway). */
static void dirty_heap(void)
{
	for (size_t size = 8; size <= 512; size *= 2) {
		void *p = malloc(size);
		assert_non_null(p);
		memset(p, 0xa5, size);
		free(p);
	}
}

static void test_push_copies(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	char item[] = "gcc";
	assert_int_equal(strv_push(&s, item), 0);
	item[0] = 'X';
	assert_int_equal(strv_push(&s, "-c"), 0);
	assert_int_equal(strv_push(&s, ""), 0);
	static const char *const want[] = { "gcc", "-c", "" };
	assert_strv(&s, want, 3);
}

static void test_push_many_terminated(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	for (int i = 0; i < 1000; i++) {
		dirty_heap();
		assert_int_equal(strv_pushf(&s, "arg%d", i), 0);
		assert_int_equal(s.n, (size_t)i + 1);
		assert_null(s.v[s.n]);
	}
	for (int i = 0; i < 1000; i++) {
		char want[16];
		snprintf(want, sizeof(want), "arg%d", i);
		assert_string_equal(s.v[i], want);
	}
}

static void test_pushf(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	assert_int_equal(strv_pushf(&s, "-I%s/%d", "inc", 7), 0);
	assert_int_equal(strv_pushf(&s, "%s", ""), 0);
	static const char *const want[] = { "-Iinc/7", "" };
	assert_strv(&s, want, 2);
}

static void test_push_take(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	char *p = strdup("owned");
	assert_non_null(p);
	assert_int_equal(strv_push_take(&s, p), 0);
	assert_ptr_equal(s.v[0], p);
	/* A NULL item is what a failed strdup gives: reported as -ENOMEM. */
	assert_int_equal(strv_push_take(&s, NULL), -ENOMEM);
	assert_int_equal(s.n, 1);
	assert_null(s.v[1]);
}

static void test_insert_into_empty(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	dirty_heap();
	assert_int_equal(strv_insert(&s, 0, "only"), 0);
	static const char *const want[] = { "only" };
	assert_strv(&s, want, 1);
}

static void test_insert_positions(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	assert_int_equal(strv_push(&s, "b"), 0);
	assert_int_equal(strv_push(&s, "d"), 0);
	assert_int_equal(strv_insert(&s, 0, "a"), 0);
	assert_int_equal(strv_insert(&s, 2, "c"), 0);
	assert_int_equal(strv_insert(&s, 4, "e"), 0);
	static const char *const want[] = { "a", "b", "c", "d", "e" };
	assert_strv(&s, want, 5);
	assert_int_equal(strv_insert(&s, 6, "x"), -EINVAL);
	assert_int_equal(strv_insert(&s, SIZE_MAX, "x"), -EINVAL);
	assert_strv(&s, want, 5);
}

static void test_insert_across_growth(void **state)
{
	/* Inserting at the front while the array grows keeps every item. */
	_cleanup_strv_ struct strv s = { 0 };
	for (int i = 0; i < 100; i++) {
		char item[16];
		snprintf(item, sizeof(item), "%d", i);
		dirty_heap();
		assert_int_equal(strv_insert(&s, 0, item), 0);
		assert_null(s.v[s.n]);
	}
	for (int i = 0; i < 100; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d", 99 - i);
		assert_string_equal(s.v[i], want);
	}
}

static void test_extend(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	char *items[] = { "x", "y", "z" };
	assert_int_equal(strv_extend(&s, items, 0), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(strv_push(&s, "w"), 0);
	assert_int_equal(strv_extend(&s, items, 3), 0);
	assert_int_equal(strv_extend(&s, items + 1, 1), 0);
	static const char *const want[] = { "w", "x", "y", "z", "y" };
	assert_strv(&s, want, 5);
	/* Copies, not the caller's pointers. */
	assert_ptr_not_equal(s.v[1], items[0]);
}

static void test_argv_empty(void **state)
{
	struct strv s = { 0 };
	char *const *argv = strv_argv(&s);
	assert_non_null(argv);
	assert_null(argv[0]);
	strv_free(&s);
}

static void test_argv(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	assert_int_equal(strv_push(&s, "cc"), 0);
	assert_int_equal(strv_push(&s, "-v"), 0);
	char *const *argv = strv_argv(&s);
	assert_ptr_equal(argv, s.v);
	assert_string_equal(argv[0], "cc");
	assert_string_equal(argv[1], "-v");
	assert_null(argv[2]);
}

static void test_free_resets(void **state)
{
	struct strv s = { 0 };
	assert_int_equal(strv_push(&s, "a"), 0);
	strv_free(&s);
	assert_null(s.v);
	assert_int_equal(s.n, 0);
	assert_int_equal(s.alloc, 0);
	strv_free(&s);
	strv_free(NULL);
	/* Reusable after free. */
	assert_int_equal(strv_push(&s, "b"), 0);
	assert_string_equal(s.v[0], "b");
	strv_free(&s);
}

static void test_cap_exact(void **state)
{
	_cleanup_strv_ struct strv s = { 0 };
	for (size_t i = 0; i < STRV_MAX_ITEMS; i++)
		assert_int_equal(strv_push(&s, "x"), 0);
	assert_int_equal(s.n, STRV_MAX_ITEMS);
	assert_int_equal(strv_push(&s, "x"), -E2BIG);
	assert_int_equal(strv_pushf(&s, "%d", 1), -E2BIG);
	/* push_take frees the item it could not keep (checked by ASan). */
	assert_int_equal(strv_push_take(&s, strdup("y")), -E2BIG);
	assert_int_equal(strv_insert(&s, 0, "x"), -E2BIG);
	char *items[] = { "z" };
	assert_int_equal(strv_extend(&s, items, 1), -E2BIG);
	assert_int_equal(s.n, STRV_MAX_ITEMS);
	assert_null(s.v[STRV_MAX_ITEMS]);
	assert_string_equal(s.v[0], "x");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_push_copies),
		cmocka_unit_test(test_push_many_terminated),
		cmocka_unit_test(test_pushf),
		cmocka_unit_test(test_push_take),
		cmocka_unit_test(test_insert_into_empty),
		cmocka_unit_test(test_insert_positions),
		cmocka_unit_test(test_insert_across_growth),
		cmocka_unit_test(test_extend),
		cmocka_unit_test(test_argv_empty),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_free_resets),
		cmocka_unit_test(test_cap_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
