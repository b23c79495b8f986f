/*
 * Unit tests for the scheduler's reuse of recently signed routing tokens
 * (src/scheduler/issued.c): only the exact (tenant, image, worker, access
 * token) finds a token, only within ISSUED_REUSE_S of its issue, and never
 * one that would outlive what the caller allows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "issued.h"

#define IMG "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static int get(struct issued_cache *c, const struct digest *k, int64_t now, int64_t max, int64_t *exp)
{
	struct buf b;
	buf_init(&b, 4096);
	int r = issued_get(c, k, now, max, &b, exp);
	if (r == 1) {
		assert_int_equal(b.len, 5);
		assert_memory_equal(b.data, "TOKEN", 5);
	}
	buf_free(&b);
	return r;
}

static void test_reuse_rules(void **state)
{
	struct issued_cache *c;
	assert_int_equal(issued_new(&c), 0);
	struct digest k, other_worker, other_access, other_tenant, shifted;
	assert_int_equal(issued_key("acme", IMG, "w1", "ACCESS", &k), 0);
	assert_int_equal(issued_key("acme", IMG, "w2", "ACCESS", &other_worker), 0);
	assert_int_equal(issued_key("acme", IMG, "w1", "ACCESS2", &other_access), 0);
	assert_int_equal(issued_key("acme2", IMG, "w1", "ACCESS", &other_tenant), 0);
	/* Length-prefixed: moving a character between fields changes the key. */
	assert_int_equal(issued_key("acm", IMG, "ew1", "ACCESS", &shifted), 0);
	assert_memory_not_equal(k.b, shifted.b, DIGEST_LEN);
	int64_t exp = 0;
	assert_int_equal(get(c, &k, 1000, 2000, &exp), 0);
	issued_put(c, &k, "TOKEN", 5, 1000, 1300);
	assert_int_equal(get(c, &k, 1000, 1300, &exp), 1);
	assert_int_equal(exp, 1300);
	assert_int_equal(get(c, &k, 1000 + ISSUED_REUSE_S, 1400, &exp), 1);
	assert_int_equal(get(c, &k, 1000 + ISSUED_REUSE_S + 1, 1400, &exp), 0);
	/* Never past what the caller allows (its access token expires earlier). */
	assert_int_equal(get(c, &k, 1010, 1299, &exp), 0);
	/* Not before its issue time (a clock stepped back). */
	assert_int_equal(get(c, &k, 999, 2000, &exp), 0);
	assert_int_equal(get(c, &other_worker, 1010, 2000, &exp), 0);
	assert_int_equal(get(c, &other_access, 1010, 2000, &exp), 0);
	assert_int_equal(get(c, &other_tenant, 1010, 2000, &exp), 0);
	/* Empty and oversized tokens are not kept. */
	issued_put(c, &other_worker, "", 0, 1000, 1300);
	assert_int_equal(get(c, &other_worker, 1010, 2000, &exp), 0);
	issued_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reuse_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
