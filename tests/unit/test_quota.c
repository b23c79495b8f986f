/*
 * Unit tests for the per-tenant quotas (src/worker/quota.c) and the CAS's
 * hard cap that uses them (src/worker/cas.c): the upload window fills,
 * refuses with a message naming the limit, the tenant, the figure and the
 * wait, charges nothing when it refuses, and rolls over; refunds go back
 * only into the window they were charged to; compile slots are never over
 * the limit under eight threads and all come back; tenant lines parse or
 * name the bad key; refusals are counted and their log lines capped; and a
 * tenant's CAS cap evicts first and refuses only what retained entries
 * leave no room for, storing nothing of a refused blob.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cas.h"
#include "digest.h"
#include "fs.h"
#include "log.h"
#include "quota.h"

#define KIB 1024ull

static struct quota *new_quota(uint64_t upload, uint64_t window_s, unsigned execs, uint64_t cas)
{
	struct quota_limits l = { .upload_bytes = upload, .upload_window_s = window_s, .execs = execs, .cas_bytes = cas };
	struct quota *q = NULL;
	assert_int_equal(quota_new(&l, &q), 0);
	return q;
}

static void test_upload_window(void **state)
{
	(void)state;
	struct quota *q = new_quota(64 * KIB, 60, 0, 0);
	struct error err = { 0 };
	int64_t t0 = 1000000;
	assert_int_equal(quota_upload_charge(q, "alpha", 40 * KIB, t0, &err), 0);
	assert_int_equal(quota_upload_charge(q, "alpha", 24 * KIB, t0 + 1000, &err), 0);
	/* Full: one more byte is refused, 12 s before the window ends. */
	assert_int_equal(quota_upload_charge(q, "alpha", 1, t0 + 48000, &err), -EDQUOT);
	assert_string_equal(err.msg, "tenant alpha: upload quota 64 KiB per 60 s reached; retry in 12 s");
	/* Another tenant has its own window. */
	error_clear(&err);
	assert_int_equal(quota_upload_charge(q, "beta", 64 * KIB, t0 + 48000, &err), 0);
	/* The window rolls over 60 s after its first charge: empty again. */
	assert_int_equal(quota_upload_charge(q, "alpha", 1, t0 + 59999, &err), -EDQUOT);
	error_clear(&err);
	assert_int_equal(quota_upload_charge(q, "alpha", 64 * KIB, t0 + 60000, &err), 0);
	assert_int_equal(quota_upload_charge(q, "alpha", 1, t0 + 60001, &err), -EDQUOT);
	error_clear(&err);
	/* A blob larger than the whole quota never fits, and is told so. */
	assert_int_equal(quota_upload_charge(q, "gamma", 65 * KIB, t0, &err), -EDQUOT);
	assert_non_null(strstr(err.msg, "never fits"));
	/* A refused charge charged nothing: gamma still has all of it. */
	error_clear(&err);
	assert_int_equal(quota_upload_charge(q, "gamma", 64 * KIB, t0, &err), 0);
	struct quota_stats st;
	quota_get_stats(q, &st);
	assert_int_equal(st.refused[QUOTA_UPLOAD], 4);
	assert_int_equal(st.refused[QUOTA_EXECS], 0);
	quota_free(q);
}

/* QUOTA_MAX_TENANTS entries in use: a new tenant is refused until one
 * of them is idle (its window over, no compile running, no limits of its
 * own), then takes that entry. */
static void test_tenant_entries_recycled(void **state)
{
	(void)state;
	struct quota *q = new_quota(64 * KIB, 60, 0, 0);
	struct error err = { 0 };
	int64_t t0 = 1000000;
	char name[32];
	for (int i = 0; i < QUOTA_MAX_TENANTS; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		assert_int_equal(quota_upload_charge(q, name, KIB, t0, &err), 0);
	}
	assert_int_equal(quota_upload_charge(q, "newcomer", KIB, t0 + 1000, &err), -EDQUOT);
	error_clear(&err);
	/* One entry busy compiling is never taken; the others' windows end. */
	assert_int_equal(quota_exec_acquire(q, "t0", &err), 0);
	assert_int_equal(quota_upload_charge(q, "newcomer", KIB, t0 + 60000, &err), 0);
	/* Its own window: a full quota's worth is there. */
	assert_int_equal(quota_upload_charge(q, "newcomer", 63 * KIB, t0 + 60001, &err), 0);
	assert_int_equal(quota_upload_charge(q, "newcomer", 1, t0 + 60002, &err), -EDQUOT);
	quota_exec_release(q, "t0");
	quota_free(q);
}

static void test_upload_refund(void **state)
{
	(void)state;
	struct quota *q = new_quota(10 * KIB, 10, 0, 0);
	struct error err = { 0 };
	int64_t t0 = 5000;
	assert_int_equal(quota_upload_charge(q, "alpha", 10 * KIB, t0, &err), 0);
	/* Refunded (the blob was already there): the room is back. */
	quota_upload_refund(q, "alpha", 4 * KIB, t0);
	assert_int_equal(quota_upload_charge(q, "alpha", 4 * KIB, t0 + 10, &err), 0);
	assert_int_equal(quota_upload_charge(q, "alpha", 1, t0 + 20, &err), -EDQUOT);
	error_clear(&err);
	/* A refund of a charge from a window that ended gives nothing to the new one. */
	assert_int_equal(quota_upload_charge(q, "alpha", 10 * KIB, t0 + 10000, &err), 0);
	quota_upload_refund(q, "alpha", 10 * KIB, t0 + 9999);
	assert_int_equal(quota_upload_charge(q, "alpha", 1, t0 + 10001, &err), -EDQUOT);
	error_clear(&err);
	/* Unlimited (0): anything goes; a refund never goes below zero. */
	struct quota *free_q = new_quota(0, 60, 0, 0);
	assert_int_equal(quota_upload_charge(free_q, "alpha", (uint64_t)1 << 40, t0, &err), 0);
	quota_upload_refund(free_q, "alpha", (uint64_t)1 << 41, t0);
	quota_upload_refund(free_q, "nobody", 5, t0);
	quota_free(free_q);
	quota_free(q);
}

static void test_tenant_overrides(void **state)
{
	(void)state;
	struct quota *q = new_quota(64 * KIB, 60, 4, 1 << 20);
	struct quota_limits l;
	char tenant[QUOTA_TENANT_MAX + 1], why[160];
	quota_get_limits(q, "anyone", &l);
	assert_int_equal(l.upload_bytes, 64 * KIB);
	assert_int_equal(l.execs, 4);
	/* Keys not named keep the defaults. */
	assert_int_equal(quota_parse_tenant_line("alpha  upload_quota=1K\tmax_execs_per_tenant=1", tenant, &l, why,
						 sizeof(why)), 0);
	assert_string_equal(tenant, "alpha");
	assert_int_equal(l.upload_bytes, KIB);
	assert_int_equal(l.execs, 1);
	assert_int_equal(l.upload_window_s, 60);
	assert_int_equal(l.cas_bytes, 1 << 20);
	assert_int_equal(quota_set_tenant(q, tenant, &l), 0);
	assert_int_equal(quota_parse_tenant_line("beta cas_quota=0 upload_window=2m", tenant, &l, why, sizeof(why)), 0);
	assert_int_equal(l.cas_bytes, 0);
	assert_int_equal(l.upload_window_s, 120);
	assert_int_equal(quota_set_tenant(q, tenant, &l), 0);
	assert_int_equal(quota_cas_cap(q, "beta"), 0);
	assert_int_equal(quota_cas_cap(q, "gamma"), 1 << 20);
	struct error err = { 0 };
	assert_int_equal(quota_upload_charge(q, "alpha", 2 * KIB, 0, &err), -EDQUOT);
	assert_non_null(strstr(err.msg, "tenant alpha: upload quota 1 KiB per 60 s"));
	error_clear(&err);
	assert_int_equal(quota_upload_charge(q, "gamma", 2 * KIB, 0, &err), 0);

	/* Bad lines: each reason names what is wrong; *inout is untouched. */
	static const struct {
		const char *line, *why;
	} bad[] = {
		{ "", "tenant name" },
		{ "../x upload_quota=1K", "tenant name" },
		{ "alpha upload_quota", "is not one of" },
		{ "alpha uploads=1K", "is not one of" },
		{ "alpha upload_quota=lots", "upload_quota 'lots' is not a size" },
		{ "alpha upload_window=0s", "upload_window '0s' is not a duration" },
		{ "alpha max_execs_per_tenant=70000", "max_execs_per_tenant '70000'" },
		{ "alpha cas_quota=1G cas_quota=2G", "cas_quota given twice" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct quota_limits keep = { .upload_bytes = 7 };
		why[0] = '\0';
		assert_int_equal(quota_parse_tenant_line(bad[i].line, tenant, &keep, why, sizeof(why)), -EINVAL);
		if (!strstr(why, bad[i].why))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].line, why, bad[i].why);
		assert_int_equal(keep.upload_bytes, 7);
	}
	char longline[QUOTA_LINE_MAX + 16];
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	assert_int_equal(quota_parse_tenant_line(longline, tenant, &l, why, sizeof(why)), -EINVAL);
	quota_free(q);
}

/* ---- compile slots under threads ----------------------------------------- */

#define THREADS 8
#define ROUNDS 3000
#define SLOTS 3

struct slot_run {
	struct quota *q;
	unsigned inside, max_inside;
	unsigned long acquired, refused;
};

static void *slot_thread(void *arg)
{
	struct slot_run *s = arg;
	unsigned long acquired = 0, refused = 0;
	for (int i = 0; i < ROUNDS; i++) {
		struct error err = { 0 };
		if (quota_exec_acquire(s->q, "alpha", &err) < 0) {
			refused++;
			continue;
		}
		acquired++;
		unsigned now = __atomic_add_fetch(&s->inside, 1, __ATOMIC_SEQ_CST);
		unsigned seen = __atomic_load_n(&s->max_inside, __ATOMIC_SEQ_CST);
		while (now > seen && !__atomic_compare_exchange_n(&s->max_inside, &seen, now, false, __ATOMIC_SEQ_CST,
								  __ATOMIC_SEQ_CST))
			;
		if (i % 7 == 0)
			usleep(10);
		__atomic_sub_fetch(&s->inside, 1, __ATOMIC_SEQ_CST);
		quota_exec_release(s->q, "alpha");
	}
	__atomic_add_fetch(&s->acquired, acquired, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->refused, refused, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_exec_slots_threads(void **state)
{
	(void)state;
	struct slot_run s = { .q = new_quota(0, 60, SLOTS, 0) };
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, slot_thread, &s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_true(s.max_inside <= SLOTS);
	assert_true(s.max_inside >= 1);
	assert_int_equal(s.acquired + s.refused, THREADS * ROUNDS);
	/* Every slot came back. */
	assert_int_equal(quota_exec_running(s.q, "alpha"), 0);
	struct quota_stats st;
	quota_get_stats(s.q, &st);
	assert_int_equal(st.refused[QUOTA_EXECS], s.refused);

	/* At the limit: refused with the figure; another tenant unaffected;
	 * a release without an acquire never wraps the count around. */
	struct error err = { 0 };
	for (int i = 0; i < SLOTS; i++)
		assert_int_equal(quota_exec_acquire(s.q, "alpha", &err), 0);
	assert_int_equal(quota_exec_acquire(s.q, "alpha", &err), -EDQUOT);
	assert_non_null(strstr(err.msg, "tenant alpha: exec quota 3 compiles at once reached"));
	error_clear(&err);
	assert_int_equal(quota_exec_acquire(s.q, "beta", &err), 0);
	quota_exec_release(s.q, "beta");
	for (int i = 0; i < SLOTS + 2; i++)
		quota_exec_release(s.q, "alpha");
	assert_int_equal(quota_exec_running(s.q, "alpha"), 0);
	quota_exec_release(s.q, "nobody");
	assert_int_equal(quota_exec_acquire(s.q, "alpha", &err), 0);
	quota_exec_release(s.q, "alpha");
	quota_free(s.q);
	quota_free(NULL);
}

/* A flood of refusals: all counted, only a few lines logged. */
static void test_refusal_log_capped(void **state)
{
	char *dir = NULL;
	(void)state;
	assert_int_equal(testutil_setup_tmpdir((void **)&dir), 0);
	_cleanup_free_ char *log_path = path_join(dir, "worker.log");
	log_open(log_path, LOG_INFO);
	struct quota *q = new_quota(1, 60, 0, 0);
	for (int i = 0; i < 1000; i++) {
		struct error err = { 0 };
		assert_int_equal(quota_upload_charge(q, "alpha", 2, 0, &err), -EDQUOT);
	}
	struct error cas_err = { 0 };
	error_set(&cas_err, -EDQUOT, "tenant alpha: CAS quota test");
	quota_refused(q, QUOTA_CAS, &cas_err);
	log_close();
	struct quota_stats st;
	quota_get_stats(q, &st);
	assert_int_equal(st.refused[QUOTA_UPLOAD], 1000);
	assert_int_equal(st.refused[QUOTA_CAS], 1);
	_cleanup_buf_ struct buf text;
	buf_init(&text, 1 << 20);
	assert_int_equal(fs_read_file(log_path, 1 << 20, &text), 0);
	assert_int_equal(buf_append_char(&text, '\0'), 0);
	int lines = 0;
	for (const char *p = text.data; (p = strstr(p, "refused: tenant alpha: upload quota")); p++)
		lines++;
	assert_int_equal(lines, 5);
	assert_non_null(strstr(text.data, "refused: tenant alpha: CAS quota test"));
	quota_free(q);
	testutil_teardown_tmpdir((void **)&dir);
}

/* ---- the CAS's hard cap ---------------------------------------------------- */

/* Incompressible bytes, so that the store's zstd does not shrink them. */
static void random_bytes(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static int put_random(struct cas *c, const char *tenant, size_t n, uint32_t seed, struct digest *ret)
{
	uint8_t *p = malloc(n);
	assert_non_null(p);
	random_bytes(p, n, seed);
	assert_int_equal(digest_bytes(p, n, ret), 0);
	int r = cas_put_blob(c, tenant, ret, p, n);
	free(p);
	return r;
}

static void test_cas_cap(void **state)
{
	char *dir = NULL;
	(void)state;
	assert_int_equal(testutil_setup_tmpdir((void **)&dir), 0);
	struct cas *c = NULL;
	struct error err = { 0 };
	assert_int_equal(cas_open(dir, 0, &c, &err), 0);
	struct quota *q = new_quota(0, 60, 0, 64 * KIB);
	struct quota_limits big = { .upload_window_s = 60, .cas_bytes = 1 << 20 };
	assert_int_equal(quota_set_tenant(q, "roomy", &big), 0);
	cas_set_quota(c, q);
	/* Everything retained ([audit] retain): nothing may be evicted. */
	cas_set_retain(c, 3600);
	struct digest d[4];
	assert_int_equal(put_random(c, "alpha", 30 * KIB, 1, &d[0]), 0);
	assert_int_equal(put_random(c, "alpha", 30 * KIB, 2, &d[1]), 0);
	/* The third does not fit, and is not stored at all. */
	assert_int_equal(put_random(c, "alpha", 30 * KIB, 3, &d[2]), -EDQUOT);
	assert_false(cas_has_blob(c, "alpha", &d[2]));
	assert_true(cas_has_blob(c, "alpha", &d[0]) && cas_has_blob(c, "alpha", &d[1]));
	assert_true(cas_tenant_size(c, "alpha") <= 64 * KIB);
	cas_quota_message(c, "alpha", 30 * KIB, &err);
	assert_non_null(strstr(err.msg, "tenant alpha: CAS quota 64 KiB reached"));
	assert_non_null(strstr(err.msg, "retry in"));
	/* Another tenant, with a cap of its own, is unaffected. */
	assert_int_equal(put_random(c, "roomy", 30 * KIB, 3, &d[3]), 0);
	assert_int_equal(put_random(c, "beta", 30 * KIB, 3, &d[3]), 0);
	struct quota_stats st;
	quota_get_stats(q, &st);
	assert_int_equal(st.refused[QUOTA_CAS], 1);

	/* Without retention, eviction makes room first: the write goes through
	 * and the tenant stays under its cap. (A write over the cap scans the
	 * store at most once a second: the next second.) */
	cas_set_retain(c, 0);
	usleep(1100 * 1000);
	assert_int_equal(put_random(c, "alpha", 30 * KIB, 3, &d[2]), 0);
	assert_true(cas_has_blob(c, "alpha", &d[2]));
	assert_true(cas_tenant_size(c, "alpha") <= 64 * KIB);
	/* A blob larger than the cap itself is refused whatever is evicted. */
	assert_int_equal(put_random(c, "alpha", 65 * KIB, 4, &d[3]), -EDQUOT);
	assert_false(cas_has_blob(c, "alpha", &d[3]));
	cas_close(c);
	quota_free(q);
	testutil_teardown_tmpdir((void **)&dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upload_window),
		cmocka_unit_test(test_upload_refund),
		cmocka_unit_test(test_tenant_entries_recycled),
		cmocka_unit_test(test_tenant_overrides),
		cmocka_unit_test(test_exec_slots_threads),
		cmocka_unit_test(test_refusal_log_capped),
		cmocka_unit_test(test_cas_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
