/*
 * Unit tests for the worker's shared tier (src/worker/tier.c) against a fake
 * S3 on loopback (http_testserver.h, path style): writes go behind and
 * arrive encoded; reads check everything and a damaged object is deleted and
 * never returned; an old object read is rewritten once (its age refreshed
 * at most once a day), a young one never; local hits (tier_touch) write a
 * missing object back once; a failing S3 makes the tier answer "miss" at
 * once and drop writes until the down period ends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "http_testserver.h"
#include "tier.h"

#define MAX_OBJECTS 32

struct object {
	char key[1024];
	struct buf data;
};

struct fake {
	struct testserver server;
	pthread_mutex_t lock;
	struct object objects[MAX_OBJECTS];
	size_t n;
	int64_t mtime;        /* Last-Modified of every object */
	int fail_status;      /* non-zero: every request gets it */
	unsigned gets, puts, heads, deletes;
};

static struct object *find(struct fake *f, const char *key)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->objects[i].key, key) == 0)
			return &f->objects[i];
	return NULL;
}

static enum testserver_action handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	struct fake *f = userdata;
	pthread_mutex_lock(&f->lock);
	char target[1024];
	snprintf(target, sizeof(target), "%s", req->target);
	const char *key = strncmp(target, "/bucket/", 8) == 0 ? target + 8 : "";
	if (f->fail_status) {
		testserver_reply(out, f->fail_status, "application/xml", "<Error><Code>SlowDown</Code></Error>");
		pthread_mutex_unlock(&f->lock);
		return TESTSERVER_ANSWER;
	}
	struct object *o = find(f, key);
	char date[64];
	time_t mt = (time_t)f->mtime;
	struct tm tm;
	gmtime_r(&mt, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (strcmp(req->method, "PUT") == 0) {
		f->puts++;
		if (!o && f->n < MAX_OBJECTS) {
			o = &f->objects[f->n++];
			snprintf(o->key, sizeof(o->key), "%s", key);
			buf_init(&o->data, 1 << 20);
		}
		buf_reset(&o->data);
		buf_append(&o->data, req->body, req->body_len);
		testserver_reply(out, 200, "application/xml", "");
	} else if (strcmp(req->method, "DELETE") == 0) {
		f->deletes++;
		if (o) {
			buf_free(&o->data);
			*o = f->objects[--f->n];
		}
		buf_printf(out, "HTTP/1.1 204 X\r\nConnection: close\r\n\r\n");
	} else if (!o) {
		if (strcmp(req->method, "GET") == 0)
			f->gets++;
		else
			f->heads++;
		testserver_reply(out, 404, "application/xml", "<Error><Code>NoSuchKey</Code></Error>");
	} else if (strcmp(req->method, "HEAD") == 0) {
		f->heads++;
		buf_printf(out, "HTTP/1.1 200 X\r\nLast-Modified: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", date,
			   o->data.len);
	} else {
		f->gets++;
		buf_printf(out, "HTTP/1.1 200 X\r\nLast-Modified: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", date,
			   o->data.len);
		buf_append(out, o->data.data, o->data.len);
	}
	pthread_mutex_unlock(&f->lock);
	return TESTSERVER_ANSWER;
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->mtime = (int64_t)time(NULL);
	assert_int_equal(testserver_start(&f->server, handler, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	testserver_stop(&f->server);
	for (size_t i = 0; i < f->n; i++)
		buf_free(&f->objects[i].data);
	free(f);
	return 0;
}

static struct tier *open_tier(struct fake *f, int down_ms)
{
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", f->server.port);
	struct tier_config tc = {
		.s3 = { .endpoint = endpoint, .region = "us-east-1", .bucket = "bucket", .path_style = true,
			.access_key = "AK", .secret_key = "SK", .timeout_ms = 2000 },
		.connections = 2,
		.down_ms = down_ms,
	};
	struct tier *t = NULL;
	struct error err = { 0 };
	assert_int_equal(tier_open(&tc, &t, &err), 0);
	return t;
}

static unsigned count(struct fake *f, unsigned *what)
{
	pthread_mutex_lock(&f->lock);
	unsigned n = *what;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static struct digest digest_of(const char *s)
{
	struct digest d;
	assert_int_equal(digest_bytes(s, strlen(s), &d), 0);
	return d;
}

static void test_put_get(void **state)
{
	struct fake *f = *state;
	struct tier *t = open_tier(f, 0);
	struct digest key = digest_of("action"), blob = digest_of("blob bytes");
	struct buf got;
	buf_init(&got, 1 << 20);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), -ENOENT);
	tier_put(t, S3OBJ_AC, "alice", &key, "result", 6);
	tier_put(t, S3OBJ_CAS, "alice", &blob, "blob bytes", 10);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->puts), 2);
	char name[S3OBJ_KEY_MAX];
	s3obj_key(S3OBJ_AC, "alice", &key, name);
	pthread_mutex_lock(&f->lock);
	struct object *o = find(f, name);
	assert_non_null(o);
	assert_memory_equal(o->data.data, S3OBJ_MAGIC, 8);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	assert_int_equal(got.len, 6);
	assert_memory_equal(got.data, "result", 6);
	assert_int_equal(tier_get(t, S3OBJ_CAS, "alice", &blob, 1024, &got), 0);
	assert_int_equal(got.len, 10);
	assert_memory_equal(got.data, "blob bytes", 10);
	/* Another tenant, another kind: not there. */
	assert_int_equal(tier_get(t, S3OBJ_AC, "bob", &key, 1024, &got), -ENOENT);
	assert_int_equal(tier_get(t, S3OBJ_CAS, "bob", &blob, 1024, &got), -ENOENT);
	assert_int_equal(tier_get(t, S3OBJ_DM, "alice", &key, 1024, &got), -ENOENT);
	/* Larger than the reader takes, or than its buffer holds: a miss,
	 * and the object is left for others. */
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 3, &got), -ENOENT);
	struct buf small;
	buf_init(&small, 4);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &small), -ENOENT);
	buf_free(&small);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	struct tier_stats st;
	tier_get_stats(t, &st);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.puts, 2);
	assert_int_equal(st.corrupt, 0);
	tier_close(t);
	buf_free(&got);
}

static void test_damaged_deleted(void **state)
{
	struct fake *f = *state;
	struct tier *t = open_tier(f, 0);
	struct digest key = digest_of("action");
	tier_put(t, S3OBJ_AC, "alice", &key, "result bytes", 12);
	assert_int_equal(tier_flush(t, 5000), 0);
	char name[S3OBJ_KEY_MAX];
	s3obj_key(S3OBJ_AC, "alice", &key, name);
	pthread_mutex_lock(&f->lock);
	struct object *o = find(f, name);
	o->data.data[o->data.len - 3] ^= 1;
	pthread_mutex_unlock(&f->lock);
	struct buf got;
	buf_init(&got, 1 << 20);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), -ENOENT);
	assert_int_equal(got.len, 0);
	pthread_mutex_lock(&f->lock);
	assert_null(find(f, name));  /* deleted */
	pthread_mutex_unlock(&f->lock);
	/* An object copied to another key is refused too. */
	struct digest other = digest_of("other action");
	tier_put(t, S3OBJ_AC, "alice", &key, "result bytes", 12);
	assert_int_equal(tier_flush(t, 5000), 0);
	char other_name[S3OBJ_KEY_MAX];
	s3obj_key(S3OBJ_AC, "alice", &other, other_name);
	pthread_mutex_lock(&f->lock);
	o = find(f, name);
	struct object *copy = &f->objects[f->n++];
	snprintf(copy->key, sizeof(copy->key), "%s", other_name);
	buf_init(&copy->data, 1 << 20);
	buf_append(&copy->data, o->data.data, o->data.len);
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &other, 1024, &got), -ENOENT);
	struct tier_stats st;
	tier_get_stats(t, &st);
	assert_int_equal(st.corrupt, 2);
	assert_int_equal(st.hits, 0);
	tier_close(t);
	buf_free(&got);
}

static void test_refresh_once(void **state)
{
	struct fake *f = *state;
	struct tier *t = open_tier(f, 0);
	struct digest key = digest_of("action");
	tier_put(t, S3OBJ_AC, "alice", &key, "result", 6);
	assert_int_equal(tier_flush(t, 5000), 0);
	tier_close(t);
	/* A new worker (nothing remembered), reading a young object: no write. */
	t = open_tier(f, 0);
	struct buf got;
	buf_init(&got, 1 << 20);
	unsigned puts = count(f, &f->puts);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->puts), puts);
	tier_close(t);
	/* Two days old: the first hit writes it again, the second does not. */
	pthread_mutex_lock(&f->lock);
	f->mtime = (int64_t)time(NULL) - 2 * 86400;
	pthread_mutex_unlock(&f->lock);
	t = open_tier(f, 0);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->puts), puts + 1);
	/* Local hits of it (tier_touch) within the day: nothing more. */
	tier_touch(t, S3OBJ_AC, "alice", &key, "result", 6);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->puts), puts + 1);
	struct tier_stats st;
	tier_get_stats(t, &st);
	assert_int_equal(st.refreshed, 1);
	tier_close(t);
	buf_free(&got);
}

static void test_touch_writes_missing(void **state)
{
	struct fake *f = *state;
	struct tier *t = open_tier(f, 0);
	struct digest key = digest_of("only on the local disk");
	/* A local hit of a result S3 does not have: HEAD, then one write. */
	tier_touch(t, S3OBJ_AC, "alice", &key, "a result", 8);
	tier_touch(t, S3OBJ_AC, "alice", &key, "a result", 8);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->heads), 1);
	assert_int_equal(count(f, &f->puts), 1);
	struct buf got;
	buf_init(&got, 1 << 20);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	assert_memory_equal(got.data, "a result", 8);
	/* Manifests and blobs are not refreshed from local copies. */
	tier_touch(t, S3OBJ_DM, "alice", &key, "manifest", 8);
	tier_touch(t, S3OBJ_CAS, "alice", &key, "blob", 4);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->heads), 1);
	assert_int_equal(count(f, &f->puts), 1);
	tier_close(t);
	buf_free(&got);
}

static void test_down(void **state)
{
	struct fake *f = *state;
	struct tier *t = open_tier(f, 1500);
	struct digest key = digest_of("action");
	pthread_mutex_lock(&f->lock);
	f->fail_status = 503;
	pthread_mutex_unlock(&f->lock);
	struct buf got;
	buf_init(&got, 1 << 20);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), -ENOENT);
	unsigned before = testserver_requests(&f->server);
	/* Down: no request at all, writes dropped. */
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), -ENOENT);
	assert_int_equal(tier_get(t, S3OBJ_CAS, "alice", &key, 1024, &got), -ENOENT);
	tier_put(t, S3OBJ_AC, "alice", &key, "result", 6);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(testserver_requests(&f->server), before);
	assert_int_equal(count(f, &f->puts), 0);
	struct tier_stats st;
	tier_get_stats(t, &st);
	assert_true(st.skipped >= 2);
	assert_int_equal(st.dropped, 1);
	pthread_mutex_lock(&f->lock);
	f->fail_status = 0;
	pthread_mutex_unlock(&f->lock);
	/* Back after the down period: the dropped write was not remembered,
	 * so a local hit writes it now. */
	struct timespec ts = { 1, 600 * 1000000L };
	nanosleep(&ts, NULL);
	tier_touch(t, S3OBJ_AC, "alice", &key, "result", 6);
	assert_int_equal(tier_flush(t, 5000), 0);
	assert_int_equal(count(f, &f->puts), 1);
	assert_int_equal(tier_get(t, S3OBJ_AC, "alice", &key, 1024, &got), 0);
	tier_close(t);
	buf_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_touch_writes_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_down, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
