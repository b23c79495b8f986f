/*
 * Unit tests for the eviction of the shared S3 tier (src/worker/tier_gc.c)
 * against a fake S3 on the in-test HTTP server (http_testserver.h): a
 * ListObjectsV2 that pages through a sorted object set with continuation
 * tokens (a few keys a page, so every run crosses pages) and a DELETE that
 * records the keys it removes. Checked: the age budget deletes exactly the
 * objects older than it; the size budget deletes oldest first (ties by
 * key) down to the budget; each tenant gets its own budget from the
 * callback and the report lists tenants by name; keys hpcc did not make are
 * counted and never deleted; a dry run sends no DELETE; a listing that fails
 * on any page, that passes max_objects or that makes no progress deletes
 * nothing; a failed delete is counted and the others go on; and
 * `hpcc worker gc` end to end from a worker.ini.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>

#include "fs.h"
#include "http_testserver.h"
#include "s3.h"
#include "s3obj.h"
#include "testutil.h"
#include "tier_gc.h"

#define NOW ((int64_t)1700000000)
#define DAY ((int64_t)86400)
#define MAX_OBJECTS 64
#define KEY_LEN 256

struct fake_object {
	char key[KEY_LEN];   /* relative to the prefix "pre/" */
	uint64_t size;
	int64_t mtime;
};

struct fixture {
	struct testserver server;
	pthread_mutex_t lock;
	struct fake_object objects[MAX_OBJECTS];   /* sorted by key, as S3 lists */
	size_t n_objects;
	char deleted[MAX_OBJECTS][1024];           /* in the order of the DELETEs (as sent) */
	size_t n_deleted;
	unsigned lists, deletes;
	size_t page_size;
	int list_status;          /* non-zero: every list answers this */
	unsigned list_ok_pages;   /* with list_status: pages answered before failing */
	bool endless_empty;       /* every list: a truncated page without keys */
	char fail_delete[KEY_LEN];  /* a DELETE of this key answers 403 */
	char last_list_target[1024];
	char tenants_asked[8][S3OBJ_TENANT_MAX + 1];
	size_t n_tenants_asked;
};

static void answer_list(struct fixture *f, const char *target, struct buf *out)
{
	size_t start = 0;
	const char *tok = strstr(target, "continuation-token=p");
	if (tok)
		start = strtoul(tok + 20, NULL, 10);
	/* Only what the client asked for: everything under pre/v1/. */
	assert_non_null(strstr(target, "prefix=pre%2Fv1%2F"));
	_cleanup_buf_ struct buf xml;
	buf_init(&xml, 0);
	buf_printf(&xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>bkt</Name>");
	size_t i = start, n = 0;
	for (; i < f->n_objects && n < f->page_size; i++) {
		if (strncmp(f->objects[i].key, "v1/", 3) != 0)
			continue;
		char when[64];
		struct tm tm;
		time_t t = (time_t)f->objects[i].mtime;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
		buf_printf(&xml, "<Contents><Key>pre/%s</Key><LastModified>%s</LastModified><Size>%llu</Size></Contents>",
			   f->objects[i].key, when, (unsigned long long)f->objects[i].size);
		n++;
	}
	while (i < f->n_objects && strncmp(f->objects[i].key, "v1/", 3) != 0)
		i++;
	if (f->endless_empty)
		buf_printf(&xml, "<IsTruncated>true</IsTruncated><NextContinuationToken>p0</NextContinuationToken>");
	else if (i < f->n_objects)
		buf_printf(&xml, "<IsTruncated>true</IsTruncated><NextContinuationToken>p%zu</NextContinuationToken>", i);
	else
		buf_printf(&xml, "<IsTruncated>false</IsTruncated>");
	buf_printf(&xml, "</ListBucketResult>");
	assert_int_equal(xml.error, 0);
	testserver_reply(out, 200, "application/xml", xml.data);
}

static enum testserver_action handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	struct fixture *f = userdata;
	char target[sizeof(req->target)];
	memcpy(target, req->target, sizeof(target));
	pthread_mutex_lock(&f->lock);
	if (strcmp(req->method, "GET") == 0 && strstr(target, "list-type=2")) {
		f->lists++;
		memcpy(f->last_list_target, target, sizeof(f->last_list_target));
		if (f->list_status && f->lists > f->list_ok_pages)
			testserver_reply(out, f->list_status, "application/xml",
					 "<Error><Code>SlowDown</Code><Message>m</Message></Error>");
		else if (f->endless_empty)
			testserver_reply(out, 200, "application/xml",
					 "<ListBucketResult><IsTruncated>true</IsTruncated>"
					 "<NextContinuationToken>p0</NextContinuationToken></ListBucketResult>");
		else
			answer_list(f, target, out);
	} else if (strcmp(req->method, "DELETE") == 0 && strncmp(target, "/bkt/pre/", 9) == 0) {
		const char *key = target + 9;
		f->deletes++;
		if (strcmp(key, f->fail_delete) == 0) {
			testserver_reply(out, 403, "application/xml",
					 "<Error><Code>AccessDenied</Code><Message>m</Message></Error>");
		} else {
			if (f->n_deleted < MAX_OBJECTS)
				snprintf(f->deleted[f->n_deleted++], sizeof(f->deleted[0]), "%s", key);
			buf_printf(out, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
		}
	} else {
		testserver_reply(out, 400, "application/xml", "<Error><Code>Unexpected</Code></Error>");
	}
	pthread_mutex_unlock(&f->lock);
	return TESTSERVER_ANSWER;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	pthread_mutex_init(&f->lock, NULL);
	f->page_size = 2;
	if (testserver_start(&f->server, handler, f) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testserver_stop(&f->server);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static struct s3_client *client(struct fixture *f)
{
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", f->server.port);
	struct s3_config cfg = { .endpoint = endpoint, .region = "eu-west-1", .bucket = "bkt", .prefix = "pre/",
				 .path_style = true, .access_key = "AKTEST", .secret_key = "secret",
				 .timeout_ms = 5000, .retries = 0, .backoff_ms = 10 };
	struct s3_client *c = NULL;
	struct error err = { 0 };
	if (s3_client_new(&cfg, &c, &err) < 0)
		fail_msg("%s", err.msg);
	return c;
}

/* The key of an object of ours: its digest is seed repeated. */
static void make_key(const char *tenant, enum s3obj_kind kind, uint8_t seed, char out[KEY_LEN])
{
	struct digest d;
	memset(d.b, seed, sizeof(d.b));
	char key[S3OBJ_KEY_MAX];
	assert_int_equal(s3obj_key(kind, tenant, &d, key), 0);
	snprintf(out, KEY_LEN, "%s", key);
}

/* Adds an object under its raw key, keeping the set sorted. */
static void add_raw(struct fixture *f, const char *key, uint64_t size, int64_t mtime)
{
	assert_true(f->n_objects < MAX_OBJECTS);
	size_t i = f->n_objects;
	while (i > 0 && strcmp(f->objects[i - 1].key, key) > 0) {
		f->objects[i] = f->objects[i - 1];
		i--;
	}
	f->objects[i] = (struct fake_object){ .size = size, .mtime = mtime };
	snprintf(f->objects[i].key, KEY_LEN, "%s", key);
	f->n_objects++;
}

static void add(struct fixture *f, const char *tenant, enum s3obj_kind kind, uint8_t seed, uint64_t size,
		int64_t mtime)
{
	char key[KEY_LEN];
	make_key(tenant, kind, seed, key);
	add_raw(f, key, size, mtime);
}

static bool was_deleted(struct fixture *f, const char *tenant, enum s3obj_kind kind, uint8_t seed)
{
	char key[KEY_LEN];
	make_key(tenant, kind, seed, key);
	for (size_t i = 0; i < f->n_deleted; i++)
		if (strcmp(f->deleted[i], key) == 0)
			return true;
	return false;
}

struct budget {
	const char *tenant;   /* NULL: every other tenant */
	uint64_t size, age;
};

/* The budget callback: a NULL-tenant-terminated table. */
static void budget_fn(void *user, const char *tenant, uint64_t *ret_size, uint64_t *ret_age)
{
	const struct budget *b = user;
	for (; b->tenant && strcmp(b->tenant, tenant) != 0; b++)
		;
	*ret_size = b->size;
	*ret_age = b->age;
}

static int run_gc(struct fixture *f, const struct budget *budgets, bool dry_run, size_t max_objects,
		  struct tier_gc_report *rep, struct error *err)
{
	struct s3_client *c = client(f);
	struct tier_gc_options o = { .now = NOW, .dry_run = dry_run, .max_objects = max_objects,
				     .budget = budgets ? budget_fn : NULL, .user = (void *)budgets };
	int r = tier_gc(c, &o, rep, err);
	s3_client_free(c);
	return r;
}

static const struct tier_gc_tenant *find_tenant(const struct tier_gc_report *rep, const char *name)
{
	for (size_t i = 0; i < rep->n_tenants; i++)
		if (strcmp(rep->tenants[i].tenant, name) == 0)
			return &rep->tenants[i];
	fail_msg("tenant %s is not in the report", name);
	return NULL;
}

static void test_age_budget(void **state)
{
	struct fixture *f = *state;
	add(f, "alice", S3OBJ_CAS, 1, 10, NOW - 100 * DAY);
	add(f, "alice", S3OBJ_AC, 2, 20, NOW - 30 * DAY - 1);
	add(f, "alice", S3OBJ_DM, 3, 40, NOW - 30 * DAY);      /* exactly the age: stays */
	add(f, "alice", S3OBJ_CAS, 4, 80, NOW - 29 * DAY);
	add(f, "alice", S3OBJ_CAS, 5, 160, NOW - DAY);
	const struct budget b[] = { { NULL, 0, 30 * DAY } };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (run_gc(f, b, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(f->lists, 3);   /* 5 keys, 2 a page */
	assert_non_null(strstr(f->last_list_target, "continuation-token=p4"));
	assert_int_equal(f->n_deleted, 2);
	assert_true(was_deleted(f, "alice", S3OBJ_CAS, 1));
	assert_true(was_deleted(f, "alice", S3OBJ_AC, 2));
	assert_int_equal(rep.listed, 5);
	assert_int_equal(rep.foreign, 0);
	assert_int_equal(rep.n_tenants, 1);
	const struct tier_gc_tenant *t = &rep.tenants[0];
	assert_string_equal(t->tenant, "alice");
	assert_int_equal(t->objects, 5);
	assert_int_equal(t->bytes, 310);
	assert_int_equal(t->deleted_age, 2);
	assert_int_equal(t->deleted_size, 0);
	assert_int_equal(t->bytes_deleted, 30);
	assert_int_equal(t->delete_errors, 0);
	assert_int_equal(rep.first_delete_error.code, 0);
	tier_gc_report_free(&rep);
	tier_gc_report_free(&rep);   /* harmless twice */
	tier_gc_report_free(NULL);
}

/* bob's objects for the size tests: 500 bytes, a tie at 4 days between
 * cas/03.. and ac/09.. (ac sorts first as a key). */
static void add_bob(struct fixture *f)
{
	add(f, "bob", S3OBJ_CAS, 1, 100, NOW - 5 * DAY);
	add(f, "bob", S3OBJ_CAS, 3, 100, NOW - 4 * DAY);
	add(f, "bob", S3OBJ_AC, 9, 100, NOW - 4 * DAY);
	add(f, "bob", S3OBJ_DM, 2, 100, NOW - 2 * DAY);
	add(f, "bob", S3OBJ_CAS, 4, 100, NOW - DAY);
}

static void test_size_budget(void **state)
{
	struct fixture *f = *state;
	add_bob(f);
	const struct budget b[] = { { NULL, 350, 0 } };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (run_gc(f, b, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	/* 500 -> 400 -> 300 <= 350: the oldest, then the tie's first key. */
	assert_int_equal(f->n_deleted, 2);
	char key[KEY_LEN];
	make_key("bob", S3OBJ_CAS, 1, key);
	assert_string_equal(f->deleted[0], key);
	make_key("bob", S3OBJ_AC, 9, key);
	assert_string_equal(f->deleted[1], key);
	const struct tier_gc_tenant *t = find_tenant(&rep, "bob");
	assert_int_equal(t->objects, 5);
	assert_int_equal(t->bytes, 500);
	assert_int_equal(t->deleted_age, 0);
	assert_int_equal(t->deleted_size, 2);
	assert_int_equal(t->bytes_deleted, 200);
	tier_gc_report_free(&rep);

	/* Already within the budget: nothing goes. */
	f->n_deleted = 0;
	const struct budget roomy[] = { { NULL, 500, 0 } };
	if (run_gc(f, roomy, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(f->n_deleted, 0);
	tier_gc_report_free(&rep);
}

static void record_tenant(void *user, const char *tenant, uint64_t *ret_size, uint64_t *ret_age)
{
	struct fixture *f = user;
	assert_true(f->n_tenants_asked < ARRAY_SIZE(f->tenants_asked));
	snprintf(f->tenants_asked[f->n_tenants_asked++], sizeof(f->tenants_asked[0]), "%s", tenant);
	static const struct budget b[] = {
		{ "alice", 0, 10 * DAY },          /* age only */
		{ "bob", 150, 0 },                 /* size only */
		{ "dave", 50, 7 * DAY },           /* both */
		{ NULL, 0, 0 },                    /* carol: none */
	};
	budget_fn((void *)b, tenant, ret_size, ret_age);
}

static void test_tenant_budgets(void **state)
{
	struct fixture *f = *state;
	f->page_size = 3;
	for (uint8_t i = 1; i <= 3; i++) {
		const int64_t age = (int64_t)i * 5 * DAY;   /* 5, 10 and 15 days */
		add(f, "dave", S3OBJ_CAS, i, 60, NOW - age);
		add(f, "carol", S3OBJ_CAS, i, 1000, NOW - 100 * age);
		add(f, "bob", S3OBJ_AC, i, 100, NOW - age);
		add(f, "alice", S3OBJ_DM, i, 1000, NOW - age);
	}
	struct s3_client *c = client(f);
	struct tier_gc_options o = { .now = NOW, .budget = record_tenant, .user = f };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (tier_gc(c, &o, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	s3_client_free(c);
	/* The callback is asked once per tenant; the report is by name. */
	assert_int_equal(f->n_tenants_asked, 4);
	assert_int_equal(rep.n_tenants, 4);
	static const char *const names[] = { "alice", "bob", "carol", "dave" };
	for (size_t i = 0; i < 4; i++) {
		assert_string_equal(rep.tenants[i].tenant, names[i]);
		assert_string_equal(f->tenants_asked[i], names[i]);
		assert_int_equal(rep.tenants[i].objects, 3);
	}
	/* alice: older than 10 days (15 days; 10 days is not older). */
	assert_true(was_deleted(f, "alice", S3OBJ_DM, 3));
	assert_false(was_deleted(f, "alice", S3OBJ_DM, 2));
	assert_int_equal(rep.tenants[0].deleted_age, 1);
	/* bob: 300 bytes down to 150: the two oldest. */
	assert_true(was_deleted(f, "bob", S3OBJ_AC, 3));
	assert_true(was_deleted(f, "bob", S3OBJ_AC, 2));
	assert_false(was_deleted(f, "bob", S3OBJ_AC, 1));
	assert_int_equal(rep.tenants[1].deleted_size, 2);
	/* carol: no budget, nothing goes however old. */
	assert_int_equal(rep.tenants[2].deleted_age + rep.tenants[2].deleted_size, 0);
	/* dave: age takes 10 and 15 days, then size the last (60 > 50). */
	assert_int_equal(rep.tenants[3].deleted_age, 2);
	assert_int_equal(rep.tenants[3].deleted_size, 1);
	assert_int_equal(rep.tenants[3].bytes_deleted, 180);
	assert_true(was_deleted(f, "dave", S3OBJ_CAS, 1));
	assert_int_equal(f->n_deleted, 6);
	tier_gc_report_free(&rep);
}

static void test_foreign_never_deleted(void **state)
{
	struct fixture *f = *state;
	char ours[KEY_LEN], hex[DIGEST_HEX_LEN + 1], k[KEY_LEN * 2];
	make_key("alice", S3OBJ_CAS, 0xab, ours);
	const char *h = ours + strlen("v1/alice/cas/ab/");
	memcpy(hex, h, DIGEST_HEX_LEN);
	hex[DIGEST_HEX_LEN] = '\0';
	const int64_t old = NOW - 1000 * DAY;
	add_raw(f, ours, 10, old);
	add_raw(f, "v1/alice/tmp/file", 1 << 30, old);
	add_raw(f, "v1/alice/cas/cd/abababababababababababababababababababababababababababababababab", 1 << 30, old);
	snprintf(k, sizeof(k), "v1/alice/cas/AB/%s", hex);
	for (char *p = k + 16; *p; p++)
		*p = *p == 'a' ? 'A' : *p == 'b' ? 'B' : *p;   /* upper-case hex is not our spelling */
	add_raw(f, k, 1 << 30, old);
	snprintf(k, sizeof(k), "%s/extra", ours);
	add_raw(f, k, 1 << 30, old);
	add_raw(f, "v1/alice/cas/ab/abab", 1 << 30, old);
	snprintf(k, sizeof(k), "v1/.hidden/cas/ab/%s", hex);
	add_raw(f, k, 1 << 30, old);
	snprintf(k, sizeof(k), "v1/bad~tenant/cas/ab/%s", hex);
	add_raw(f, k, 1 << 30, old);
	add_raw(f, "v1/", 1 << 30, old);
	add_raw(f, "v2/alice/cas/ab/x", 1 << 30, old);    /* not under v1/: not even listed */
	add_raw(f, "other", 1 << 30, old);
	const struct budget b[] = { { NULL, 1, 1 } };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (run_gc(f, b, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(f->n_deleted, 1);
	assert_string_equal(f->deleted[0], ours);
	assert_int_equal(f->deletes, 1);
	assert_int_equal(rep.listed, 9);
	assert_int_equal(rep.foreign, 8);
	assert_int_equal(rep.n_tenants, 1);
	assert_int_equal(rep.tenants[0].objects, 1);
	assert_int_equal(rep.tenants[0].bytes, 10);   /* foreign bytes are not alice's */
	assert_int_equal(rep.tenants[0].deleted_age, 1);
	tier_gc_report_free(&rep);
}

static void test_dry_run(void **state)
{
	struct fixture *f = *state;
	add_bob(f);
	add(f, "alice", S3OBJ_CAS, 1, 7, NOW - 100 * DAY);
	const struct budget b[] = { { NULL, 350, 30 * DAY } };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (run_gc(f, b, true, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(f->deletes, 0);
	/* The report says what would go. */
	const struct tier_gc_tenant *alice = find_tenant(&rep, "alice"), *bob = find_tenant(&rep, "bob");
	assert_int_equal(alice->deleted_age, 1);
	assert_int_equal(alice->bytes_deleted, 7);
	assert_int_equal(bob->deleted_size, 2);
	assert_int_equal(bob->bytes_deleted, 200);
	tier_gc_report_free(&rep);
}

static void test_list_failure(void **state)
{
	struct fixture *f = *state;
	for (uint8_t i = 1; i <= 6; i++)
		add(f, "alice", S3OBJ_CAS, i, 100, NOW - 100 * DAY);
	const struct budget b[] = { { NULL, 1, 1 } };
	/* 503 on every attempt (retries 0): the client's error, nothing deleted. */
	f->list_status = 503;
	struct tier_gc_report rep = { .listed = 12345 };
	struct error err = { 0 };
	assert_int_equal(run_gc(f, b, false, 0, &rep, &err), -EAGAIN);
	assert_int_equal(err.code, -EAGAIN);
	assert_non_null(strstr(err.msg, "S3 list"));
	assert_null(strchr(err.msg, '\n'));
	assert_int_equal(f->lists, 1);
	assert_int_equal(f->deletes, 0);
	assert_int_equal(rep.listed, 12345);   /* not written on failure */
	assert_null(rep.tenants);

	/* The first page is fine, the second fails: still nothing deleted. */
	f->lists = 0;
	f->list_ok_pages = 1;
	err = (struct error){ 0 };
	assert_int_equal(run_gc(f, b, false, 0, &rep, &err), -EAGAIN);
	assert_int_equal(f->lists, 2);
	assert_int_equal(f->deletes, 0);

	/* A listing that never ends without keys is refused. */
	f->list_status = 0;
	f->endless_empty = true;
	f->lists = 0;
	err = (struct error){ 0 };
	assert_int_equal(run_gc(f, b, false, 0, &rep, &err), -EBADMSG);
	assert_int_equal(f->lists, TIER_GC_EMPTY_PAGES_MAX);
	assert_int_equal(f->deletes, 0);
}

static void test_delete_failure(void **state)
{
	struct fixture *f = *state;
	add_bob(f);
	add(f, "alice", S3OBJ_CAS, 1, 10, NOW - 100 * DAY);
	add(f, "alice", S3OBJ_CAS, 2, 10, NOW - 90 * DAY);
	add(f, "alice", S3OBJ_CAS, 3, 10, NOW - 80 * DAY);
	make_key("alice", S3OBJ_CAS, 2, f->fail_delete);
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	const struct budget age[] = { { NULL, 0, 30 * DAY } };
	if (run_gc(f, age, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(was_deleted(f, "alice", S3OBJ_CAS, 1));
	assert_true(was_deleted(f, "alice", S3OBJ_CAS, 3));
	const struct tier_gc_tenant *alice = find_tenant(&rep, "alice");
	assert_int_equal(alice->deleted_age, 2);
	assert_int_equal(alice->bytes_deleted, 20);
	assert_int_equal(alice->delete_errors, 1);
	assert_int_equal(rep.first_delete_error.code, -EACCES);
	assert_non_null(strstr(rep.first_delete_error.msg, f->fail_delete));
	tier_gc_report_free(&rep);

	/* By size: the oldest cannot go and still counts, so the three next
	 * oldest go (500 bytes, budget 250: 400, 300, 200). */
	f->n_deleted = f->deletes = 0;
	make_key("bob", S3OBJ_CAS, 1, f->fail_delete);
	const struct budget size[] = { { "bob", 250, 0 }, { NULL, 0, 0 } };
	if (run_gc(f, size, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	const struct tier_gc_tenant *bob = find_tenant(&rep, "bob");
	assert_int_equal(bob->delete_errors, 1);
	assert_int_equal(bob->deleted_size, 3);
	assert_int_equal(bob->bytes_deleted, 300);
	assert_true(was_deleted(f, "bob", S3OBJ_AC, 9));
	assert_true(was_deleted(f, "bob", S3OBJ_CAS, 3));
	assert_true(was_deleted(f, "bob", S3OBJ_DM, 2));
	assert_false(was_deleted(f, "bob", S3OBJ_CAS, 4));
	assert_int_equal(f->deletes, 4);
	tier_gc_report_free(&rep);
}

static void test_max_objects(void **state)
{
	struct fixture *f = *state;
	for (uint8_t i = 1; i <= 5; i++)
		add(f, "alice", S3OBJ_CAS, i, 100, NOW - 100 * DAY);
	add_raw(f, "v1/alice/foreign", 100, NOW - 100 * DAY);   /* foreign keys count as listed */
	const struct budget b[] = { { NULL, 1, 1 } };
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	assert_int_equal(run_gc(f, b, false, 5, &rep, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "5"));
	assert_int_equal(f->deletes, 0);
	err = (struct error){ 0 };
	if (run_gc(f, b, false, 6, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(f->deletes, 5);
	assert_int_equal(rep.listed, 6);
	tier_gc_report_free(&rep);
}

static void test_empty(void **state)
{
	struct fixture *f = *state;
	struct tier_gc_report rep = { 0 };
	struct error err = { 0 };
	if (run_gc(f, NULL, false, 0, &rep, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(rep.n_tenants, 0);
	assert_int_equal(rep.listed, 0);
	assert_int_equal(f->lists, 1);
	tier_gc_report_free(&rep);
}

/* Runs tier_gc_main with stdout into a file; its exit status, the output in *ret_out. */
static int run_main(const char *dir, char **argv, char **ret_out)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	_cleanup_free_ char *out_path = NULL;
	assert_true(asprintf(&out_path, "%s/stdout", dir) > 0);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_true(dup2(fd, STDOUT_FILENO) >= 0);
	close(fd);
	int r = tier_gc_main(argc, argv);
	fflush(stdout);
	assert_true(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(out_path, 1 << 20, &b), 0);
	*ret_out = buf_steal(&b);
	return r;
}

static void test_main(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/hpcc-gc-XXXXXX";
	assert_non_null(mkdtemp(dir));
	const int64_t now = (int64_t)time(NULL);
	add(f, "alice", S3OBJ_CAS, 1, 10, now - 40 * DAY);
	add(f, "alice", S3OBJ_CAS, 2, 10, now - DAY);
	add(f, "bob", S3OBJ_CAS, 1, 100, now - 3 * DAY);
	add(f, "bob", S3OBJ_CAS, 2, 100, now - 2 * DAY);
	add(f, "bob", S3OBJ_CAS, 3, 100, now - DAY);
	add_raw(f, "v1/bob/notes.txt", 5, now - 400 * DAY);
	setenv("AWS_ACCESS_KEY_ID", "AKTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
	unsetenv("HPCC_WORKER_CONFIG");

	static const char worker[] = "[worker]\nid = w1\nlisten = 127.0.0.1:7070\ndir = state\ncert = cert.pem\n"
				     "key = key.pem\ntoken_key = routing.pub\n"
				     "images = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
	_cleanup_free_ char *ini = NULL, *path = NULL, *plain = NULL, *plain_path = NULL;
	assert_true(asprintf(&ini, "%s[s3]\nendpoint = http://127.0.0.1:%d\nregion = eu-west-1\nbucket = bkt\n"
			     "prefix = pre/\nmax_age = 30d\ntenant_budget = bob 150 0\n", worker, f->server.port) > 0);
	assert_true(asprintf(&path, "%s/worker.ini", dir) > 0);
	assert_int_equal(fs_write_atomic(path, ini, strlen(ini), 0600, false), 0);

	/* A dry run first: nothing goes. */
	char *dry[] = { "gc", "--config", path, "--dry-run", NULL };
	_cleanup_free_ char *out = NULL;
	assert_int_equal(run_main(dir, dry, &out), 0);
	assert_int_equal(f->deletes, 0);
	assert_non_null(strstr(out, "deleted-by-age"));
	assert_non_null(strstr(out, "dry run"));

	/* For real, with the config from $HPCC_WORKER_CONFIG. */
	setenv("HPCC_WORKER_CONFIG", path, 1);
	char *real[] = { "gc", NULL };
	_cleanup_free_ char *out2 = NULL;
	assert_int_equal(run_main(dir, real, &out2), 0);
	unsetenv("HPCC_WORKER_CONFIG");
	assert_int_equal(f->n_deleted, 3);
	assert_true(was_deleted(f, "alice", S3OBJ_CAS, 1));   /* max_age */
	assert_true(was_deleted(f, "bob", S3OBJ_CAS, 1));     /* bob's 150 bytes */
	assert_true(was_deleted(f, "bob", S3OBJ_CAS, 2));
	/* One line per tenant and a total, numbers as they are. */
	assert_non_null(strstr(out2, "\nalice "));
	assert_non_null(strstr(out2, "\nbob "));
	assert_non_null(strstr(out2, "\ntotal "));
	assert_non_null(strstr(out2, "1 keys under v1/ not made by hpcc"));
	assert_null(strstr(out2, "dry run"));
	char total[128];
	snprintf(total, sizeof(total), "%-6s  %10d  %15d  %14d  %15d  %15d\n", "total", 5, 320, 1, 2, 210);
	assert_non_null(strstr(out2, total));

	/* A failed delete: exit status 1 after the report. */
	make_key("alice", S3OBJ_CAS, 1, f->fail_delete);
	char *cfg[] = { "gc", "--config", path, NULL };
	_cleanup_free_ char *out3 = NULL;
	assert_int_equal(run_main(dir, cfg, &out3), 1);
	assert_non_null(strstr(out3, "\ntotal "));

	/* Without [s3] there is nothing to collect. */
	assert_true(asprintf(&plain_path, "%s/plain.ini", dir) > 0);
	assert_int_equal(fs_write_atomic(plain_path, worker, strlen(worker), 0600, false), 0);
	char *none[] = { "gc", "--config", plain_path, NULL };
	_cleanup_free_ char *out4 = NULL;
	assert_int_equal(run_main(dir, none, &out4), 1);
	assert_string_equal(out4, "");

	char *help[] = { "gc", "--help", NULL };
	_cleanup_free_ char *out5 = NULL;
	assert_int_equal(run_main(dir, help, &out5), 0);
	assert_non_null(strstr(out5, "usage: hpcc worker gc"));
	char *bad[] = { "gc", "extra", NULL };
	_cleanup_free_ char *out6 = NULL;
	assert_int_equal(run_main(dir, bad, &out6), 2);
	testutil_rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_age_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_budgets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_never_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_main, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
