/*
 * Unit tests for the scheduler's worker table and routing
 * (src/scheduler/registry.c): report validation, stale and forgotten
 * workers, image filtering, weighted rendezvous (deterministic, spread by
 * weight, minimal movement when a worker leaves), stickiness, and that two
 * independent tables fed the same reports route alike (replicas).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"

#define IMG_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define IMG_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define FP "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char *const both[] = { IMG_A, IMG_B };
static const char *const only_a[] = { IMG_A };

/* The session each worker id got at its last registration (heartbeats echo it). */
static struct {
	char id[TOKEN_NAME_MAX + 1];
	uint8_t session[REGISTRY_SESSION_SIZE];
} sessions[64];

static uint8_t *session_of(const char *id)
{
	for (size_t i = 0; i < 64; i++)
		if (strcmp(sessions[i].id, id) == 0 || !sessions[i].id[0]) {
			snprintf(sessions[i].id, sizeof(sessions[i].id), "%s", id);
			return sessions[i].session;
		}
	fail_msg("too many workers");
	return NULL;
}

static void add(struct registry *r, const char *id, unsigned capacity, const char *const *images, size_t n,
		int64_t now)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "10.0.0.%zu:7070", strlen(id));
	struct registry_report rep = { .worker_id = id, .address = addr, .cert_fingerprint = FP, .capacity = capacity,
				       .free_capacity = capacity, .images = images, .n_images = n };
	assert_int_equal(registry_register(r, &rep, now, session_of(id)), 0);
}

static void beat(struct registry *r, const char *id, unsigned free_capacity, const char *const *images, size_t n,
		 const struct registry_active *active, size_t n_active, int64_t now, int expect)
{
	struct registry_report rep = { .worker_id = id, .free_capacity = free_capacity, .images = images,
				       .n_images = n, .active = active, .n_active = n_active,
				       .session = session_of(id), .session_len = REGISTRY_SESSION_SIZE };
	assert_int_equal(registry_heartbeat(r, &rep, now), expect);
}

static const char *route(struct registry *r, const char *tenant, const char *image, bool sticky, int64_t now)
{
	static struct registry_choice c;
	if (registry_route(r, tenant, image, sticky, now, &c) < 0)
		return NULL;
	return c.worker_id;
}

static void test_malformed_reports(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	const char *bad_image[] = { "sha256:AAAA" };
	struct registry_report cases[] = {
		{ .worker_id = "", .address = "h:1", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = ".hidden", .address = "h:1", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w/1", .address = "h:1", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "h", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "h:0", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "h:70000", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "h x:1", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "unix:sock:80", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "unix-abstract:x:80", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "dns://8.8.8.8/h:80", .cert_fingerprint = FP, .capacity = 1 },
		{ .worker_id = "w", .address = "h:1", .cert_fingerprint = "md5:00", .capacity = 1 },
		{ .worker_id = "w", .address = "h:1", .cert_fingerprint = FP, .capacity = 0 },
		{ .worker_id = "w", .address = "h:1", .cert_fingerprint = FP, .capacity = REGISTRY_MAX_CAPACITY + 1 },
		{ .worker_id = "w", .address = "h:1", .cert_fingerprint = FP, .capacity = 1, .images = bad_image,
		  .n_images = 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(registry_register(r, &cases[i], 0, session_of("x")), -EINVAL);
	size_t healthy;
	assert_int_equal(registry_count(r, 0, &healthy), 0);
	/* A heartbeat from a worker never registered asks it to register. */
	beat(r, "w", 1, only_a, 1, NULL, 0, 0, -ENOENT);
	struct registry_active bad_active = { "t/../x", IMG_A };
	add(r, "w", 4, only_a, 1, 0);
	beat(r, "w", 1, only_a, 1, &bad_active, 1, 0, -EINVAL);
	registry_free(r);
}

static void test_image_filter_and_stale(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	add(r, "wa", 4, only_a, 1, 0);
	assert_null(route(r, "t", IMG_B, true, 0));
	assert_string_equal(route(r, "t", IMG_A, true, 0), "wa");
	/* Silent past the stale time: not routed to, but still known. */
	assert_string_equal(route(r, "t", IMG_A, true, 1500), "wa");
	assert_null(route(r, "t", IMG_A, true, 1501));
	size_t healthy;
	assert_int_equal(registry_count(r, 1501, &healthy), 1);
	assert_int_equal(healthy, 0);
	/* A heartbeat brings it back. */
	beat(r, "wa", 4, both, 2, NULL, 0, 2000, 0);
	assert_string_equal(route(r, "t", IMG_B, true, 2000), "wa");
	/* Forgotten after ten stale times: it must register again. */
	beat(r, "wa", 4, both, 2, NULL, 0, 2000 + 10 * 1500 + 1, -ENOENT);
	assert_int_equal(registry_count(r, 20000, NULL), 0);
	registry_free(r);
}

/* By name (hpcc reproduce): that worker or nothing, whoever the rendezvous
 * would pick, and only while it is healthy and holds the image. */
static void test_route_to(void **state)
{
	struct registry *r;
	struct registry_choice c;
	assert_int_equal(registry_new(1500, &r), 0);
	add(r, "wa", 4, only_a, 1, 0);
	add(r, "wbb", 4, both, 2, 0);
	for (int i = 0; i < 2; i++) {
		const char *id = i ? "wbb" : "wa";
		assert_int_equal(registry_route_to(r, id, IMG_A, 0, &c), 0);
		assert_string_equal(c.worker_id, id);
		assert_string_equal(c.address, i ? "10.0.0.3:7070" : "10.0.0.2:7070");
	}
	assert_int_equal(registry_route_to(r, "wa", IMG_B, 0, &c), -ENOENT);   /* not its image */
	assert_int_equal(registry_route_to(r, "wz", IMG_A, 0, &c), -ENOENT);   /* unknown */
	assert_int_equal(registry_route_to(r, "wa", IMG_A, 1501, &c), -ENOENT); /* stale */
	registry_free(r);
}

static void test_rendezvous_spread_and_movement(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	const char *ids[] = { "w1", "w2", "w3", "w4" };
	for (size_t i = 0; i < 4; i++)
		add(r, ids[i], 8, only_a, 1, 0);
	enum { N = 2000 };
	static char before[N][TOKEN_NAME_MAX + 1];
	size_t counts[4] = { 0 };
	for (int k = 0; k < N; k++) {
		char tenant[32];
		snprintf(tenant, sizeof(tenant), "tenant-%d", k);
		const char *w = route(r, tenant, IMG_A, false, 0);
		assert_non_null(w);
		snprintf(before[k], sizeof(before[k]), "%s", w);
		/* Deterministic: the same question, the same answer. */
		assert_string_equal(route(r, tenant, IMG_A, false, 0), before[k]);
		counts[w[1] - '1']++;
	}
	/* Equal weights: each worker gets about a quarter (500 ± 100). */
	for (size_t i = 0; i < 4; i++)
		assert_true(counts[i] > 400 && counts[i] < 600);
	/* w4 goes silent: only its pairs move. */
	for (size_t i = 0; i < 3; i++)
		beat(r, ids[i], 8, only_a, 1, NULL, 0, 1000, 0);
	size_t moved = 0;
	for (int k = 0; k < N; k++) {
		char tenant[32];
		snprintf(tenant, sizeof(tenant), "tenant-%d", k);
		const char *w = route(r, tenant, IMG_A, false, 2000);
		assert_string_not_equal(w, "w4");
		if (strcmp(before[k], "w4") != 0)
			assert_string_equal(w, before[k]);
		else
			moved++;
	}
	assert_int_equal(moved, counts[3]);
	registry_free(r);
}

static void test_weight_by_free_capacity(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	add(r, "big", 30, only_a, 1, 0);
	add(r, "small", 10, only_a, 1, 0);
	size_t big = 0;
	enum { N = 4000 };
	for (int k = 0; k < N; k++) {
		char tenant[32];
		snprintf(tenant, sizeof(tenant), "t%d", k);
		big += strcmp(route(r, tenant, IMG_A, false, 0), "big") == 0;
	}
	/* 3:1 weights: about 75 %. */
	assert_true(big > N * 70 / 100 && big < N * 80 / 100);
	/* A full worker is chosen only when every worker is full. */
	beat(r, "big", 0, only_a, 1, NULL, 0, 100, 0);
	for (int k = 0; k < 200; k++) {
		char tenant[32];
		snprintf(tenant, sizeof(tenant), "t%d", k);
		assert_string_equal(route(r, tenant, IMG_A, false, 100), "small");
	}
	beat(r, "small", 0, only_a, 1, NULL, 0, 100, 0);
	assert_non_null(route(r, "t1", IMG_A, false, 100));
	registry_free(r);
}

static void test_sticky(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	add(r, "w1", 8, both, 2, 0);
	add(r, "w2", 8, both, 2, 0);
	const char *natural = route(r, "acme", IMG_A, true, 0);
	const char *other = strcmp(natural, "w1") == 0 ? "w2" : "w1";
	char other_id[8];
	snprintf(other_id, sizeof(other_id), "%s", other);
	/* The other worker already runs a VM for (acme, A): sticky routing prefers it. */
	struct registry_active vm = { "acme", IMG_A };
	beat(r, other_id, 8, both, 2, &vm, 1, 10, 0);
	struct registry_choice c;
	assert_int_equal(registry_route(r, "acme", IMG_A, true, 10, &c), 0);
	assert_string_equal(c.worker_id, other_id);
	assert_true(c.sticky_hit);
	/* Not for another pair, and not when the tenant is not sticky. */
	assert_int_equal(registry_route(r, "acme", IMG_A, false, 10, &c), 0);
	assert_string_not_equal(c.worker_id, other_id);
	assert_false(c.sticky_hit);
	/* A full worker is not sticky. */
	beat(r, other_id, 0, both, 2, &vm, 1, 20, 0);
	assert_int_equal(registry_route(r, "acme", IMG_A, true, 20, &c), 0);
	assert_false(c.sticky_hit);
	registry_free(r);
}

/* Two scheduler replicas hear the same workers in a different order and answer alike. */
static void test_replicas_agree(void **state)
{
	struct registry *r1, *r2;
	assert_int_equal(registry_new(1500, &r1), 0);
	assert_int_equal(registry_new(1500, &r2), 0);
	const char *ids[] = { "alpha", "beta", "gamma", "delta", "epsilon" };
	for (size_t i = 0; i < 5; i++) {
		add(r1, ids[i], 4 + (unsigned)i, both, 2, 0);
		add(r2, ids[4 - i], 4 + (unsigned)(4 - i), both, 2, 5);
	}
	for (int k = 0; k < 500; k++) {
		char tenant[32];
		snprintf(tenant, sizeof(tenant), "tenant%d", k);
		const char *img = k % 2 ? IMG_A : IMG_B;
		char a[TOKEN_NAME_MAX + 1];
		snprintf(a, sizeof(a), "%s", route(r1, tenant, img, true, 10));
		assert_string_equal(a, route(r2, tenant, img, true, 10));
	}
	registry_free(r1);
	registry_free(r2);
}

/* Anyone with the worker token could try to take a live worker's id over. */
static void test_takeover_refused(void **state)
{
	struct registry *r;
	assert_int_equal(registry_new(1500, &r), 0);
	memset(sessions, 0, sizeof(sessions));
	add(r, "victim", 4, only_a, 1, 0);
	uint8_t real[REGISTRY_SESSION_SIZE];
	memcpy(real, session_of("victim"), sizeof(real));
	const char *other_fp = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	struct registry_report imp = { .worker_id = "victim", .address = "203.0.113.9:7070",
				       .cert_fingerprint = other_fp, .capacity = 8, .images = only_a, .n_images = 1 };
	uint8_t s2[REGISTRY_SESSION_SIZE];
	assert_int_equal(registry_register(r, &imp, 500, s2), -EEXIST);
	struct registry_choice c;
	assert_int_equal(registry_route(r, "t", IMG_A, false, 600, &c), 0);
	assert_string_equal(c.address, "10.0.0.6:7070");
	/* A heartbeat that does not carry the registration's session keeps nothing alive. */
	uint8_t wrong[REGISTRY_SESSION_SIZE] = { 0 };
	struct registry_report hb = { .worker_id = "victim", .free_capacity = 4, .images = only_a, .n_images = 1,
				      .session = wrong, .session_len = sizeof(wrong) };
	assert_int_equal(registry_heartbeat(r, &hb, 700), -ENOENT);
	hb.session_len = 0;
	assert_int_equal(registry_heartbeat(r, &hb, 700), -ENOENT);
	beat(r, "victim", 4, only_a, 1, NULL, 0, 1000, 0);
	/* The same worker re-registering (same address and certificate) gets a new session. */
	add(r, "victim", 4, only_a, 1, 1200);
	assert_memory_not_equal(real, session_of("victim"), sizeof(real));
	hb.session = real;
	hb.session_len = sizeof(real);
	assert_int_equal(registry_heartbeat(r, &hb, 1300), -ENOENT);
	/* Once the registered worker is stale, another may take the id (a re-installed host). */
	assert_int_equal(registry_register(r, &imp, 1200 + 1501, s2), 0);
	assert_int_equal(registry_route(r, "t", IMG_A, false, 2800, &c), 0);
	assert_string_equal(c.address, "203.0.113.9:7070");
	registry_free(r);
}

static void test_hash_unit(void **state)
{
	double u = registry_hash_unit("t", IMG_A, "w");
	assert_true(u > 0 && u < 1);
	assert_true(u == registry_hash_unit("t", IMG_A, "w"));
	/* A known answer: the top 53 bits of SHA-256("t\0" IMG_A "\0w"), so that two scheduler replicas, or a
	 * scheduler before and after an upgrade, route alike. */
	assert_true(u == (6177562042905922.0 + 0.5) / 9007199254740992.0);
	/* The separator matters: ("ab", "c") and ("a", "bc") differ. */
	assert_true(registry_hash_unit("ab", "c", "w") != registry_hash_unit("a", "bc", "w"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_reports),
		cmocka_unit_test(test_image_filter_and_stale),
		cmocka_unit_test(test_route_to),
		cmocka_unit_test(test_rendezvous_spread_and_movement),
		cmocka_unit_test(test_weight_by_free_capacity),
		cmocka_unit_test(test_sticky),
		cmocka_unit_test(test_replicas_agree),
		cmocka_unit_test(test_hash_unit),
		cmocka_unit_test(test_takeover_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
