/*
 * Unit tests for the worker's per-tenant stores (src/worker/cas.c): which
 * tenant names are accepted; blob, action and direct-manifest round trips;
 * that a blob whose bytes do not match its digest is refused and leaves
 * nothing on disk; that a blob damaged on disk (a flipped byte, or another
 * blob's valid entry copied over it) reads as missing and is removed; that
 * tenants never see each other's entries; that a bad tenant name is -EINVAL
 * for every call and creates nothing; and that cas_gc brings each tenant's
 * store under its budget, counting the bytes actually on disk. Each test
 * gets its own state directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cas.h"
#include "digest.h"
#include "error.h"
#include "fs.h"

#define MAX_READ ((size_t)1 << 20)

struct fixture {
	char *dir;
	struct cas *cas;
};

static int open_cas(void **state, uint64_t max)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/hpcc-test-cas-XXXXXX";
	if (!f || !mkdtemp(tmpl) || !(f->dir = strdup(tmpl)))
		return -1;
	struct error err = { 0 };
	if (cas_open(f->dir, max, &f->cas, &err) < 0) {
		testutil_rm_rf(f->dir);
		return -1;
	}
	*state = f;
	return 0;
}

static int setup(void **state) { return open_cas(state, (uint64_t)1 << 30); }

static int setup_small(void **state) { return open_cas(state, 64 * 1024); }

static int teardown(void **state)
{
	struct fixture *f = *state;
	cas_close(f->cas);
	testutil_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct digest digest_of(const void *data, size_t n)
{
	struct digest d;
	assert_int_equal(digest_bytes(data, n, &d), 0);
	return d;
}

/* <dir>/tenants/<tenant>/store/<hh>/<rest>.<kind>, as store.c lays it out. */
static char *entry_path(const struct fixture *f, const char *tenant, const struct digest *d, char kind)
{
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(d, hex);
	char *p = NULL;
	assert_true(asprintf(&p, "%s/tenants/%s/store/%.2s/%s.%c", f->dir, tenant, hex, hex + 2, kind) > 0);
	return p;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static uint64_t sum_bytes, sum_files;

static int add_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F) {
		sum_bytes += (uint64_t)st->st_size;
		sum_files++;
	}
	return 0;
}

/* Bytes and files under a tenant's store directory. */
static uint64_t store_bytes(const struct fixture *f, const char *tenant, uint64_t *ret_files)
{
	char *dir = NULL;
	assert_true(asprintf(&dir, "%s/tenants/%s/store", f->dir, tenant) > 0);
	sum_bytes = sum_files = 0;
	nftw(dir, add_entry, 16, FTW_PHYS);
	free(dir);
	if (ret_files)
		*ret_files = sum_files;
	return sum_bytes;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		p[i] = (uint8_t)(s >> 32);
	}
}

/* ---- tenant names ------------------------------------------------------ */

static void test_tenant_names(void **state)
{
	(void)state;
	char max[66];
	memset(max, 'a', 64);
	max[64] = '\0';
	assert_true(cas_tenant_name_ok(max));
	max[64] = 'a';
	max[65] = '\0';
	assert_false(cas_tenant_name_ok(max));

	static const char *const good[] = { "acme", "a", "A-b_c.9", "x.y", "a..", "0", "team-42_prod" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!cas_tenant_name_ok(good[i]))
			fail_msg("'%s' is refused", good[i]);
	static const char *const bad[] = {
		"", ".", "..", ".hidden", "a/b", "/a", "a/", "../a", "a b", "a\tb", "a\\b", "a:b", "a*", "~a",
		"a$b", "a;b", "a\nb", "caf\xc3\xa9", "a%2fb", "a@b", "a+b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cas_tenant_name_ok(bad[i]))
			fail_msg("'%s' is accepted", bad[i]);
	assert_false(cas_tenant_name_ok(NULL));
}

/* ---- blobs ------------------------------------------------------------- */

static void test_blob_round_trip(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "int main(void) { return 0; }\n";
	struct digest d = digest_of(data, sizeof(data) - 1);
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);

	assert_false(cas_has_blob(f->cas, "acme", &d));
	assert_int_equal(cas_get_blob(f->cas, "acme", &d, MAX_READ, &out), -ENOENT);
	assert_int_equal(cas_put_blob(f->cas, "acme", &d, data, sizeof(data) - 1), 0);
	assert_true(cas_has_blob(f->cas, "acme", &d));
	/* ret is emptied first, not appended to. */
	buf_append_str(&out, "stale");
	assert_int_equal(cas_get_blob(f->cas, "acme", &d, MAX_READ, &out), 0);
	assert_int_equal(out.len, sizeof(data) - 1);
	assert_memory_equal(out.data, data, out.len);

	/* Storing it again is harmless. */
	assert_int_equal(cas_put_blob(f->cas, "acme", &d, data, sizeof(data) - 1), 0);
	assert_int_equal(cas_get_blob(f->cas, "acme", &d, MAX_READ, &out), 0);
	assert_int_equal(out.len, sizeof(data) - 1);

	/* The empty blob and a large incompressible one. */
	struct digest empty = digest_of("", 0);
	assert_int_equal(cas_put_blob(f->cas, "acme", &empty, "", 0), 0);
	assert_int_equal(cas_get_blob(f->cas, "acme", &empty, MAX_READ, &out), 0);
	assert_int_equal(out.len, 0);
	size_t n = 300 * 1024;
	uint8_t *big = malloc(n);
	assert_non_null(big);
	fill_random(big, n, 1);
	struct digest bd = digest_of(big, n);
	assert_int_equal(cas_put_blob(f->cas, "acme", &bd, big, n), 0);
	assert_int_equal(cas_get_blob(f->cas, "acme", &bd, MAX_READ, &out), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, big, n);
	free(big);
}

static void test_put_blob_wrong_digest(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "the real bytes";
	struct digest claimed = digest_of("other bytes", 11);
	assert_int_equal(cas_put_blob(f->cas, "acme", &claimed, data, sizeof(data) - 1), -EBADMSG);
	assert_false(cas_has_blob(f->cas, "acme", &claimed));
	struct digest real = digest_of(data, sizeof(data) - 1);
	assert_false(cas_has_blob(f->cas, "acme", &real));
	uint64_t files;
	store_bytes(f, "acme", &files);
	assert_int_equal(files, 0);
}

/* Flips one byte of the payload area of the entry file. */
static void flip_byte(const char *path, off_t where)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	if (where < 0)
		where += st.st_size;
	assert_true(where >= 0 && where < st.st_size);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, where), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, where), 1);
	close(fd);
}

static void test_get_blob_corrupt_on_disk(void **state)
{
	struct fixture *f = *state;
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	uint8_t data[4096];
	fill_random(data, sizeof(data), 2);
	struct digest d = digest_of(data, sizeof(data));

	/* A byte flipped anywhere: in the frame, at its end, in the header. */
	static const off_t places[] = { -100, -1, 20 };
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		assert_int_equal(cas_put_blob(f->cas, "acme", &d, data, sizeof(data)), 0);
		char *path = entry_path(f, "acme", &d, 'b');
		assert_true(exists(path));
		flip_byte(path, places[i]);
		buf_append_str(&out, "stale");
		assert_int_equal(cas_get_blob(f->cas, "acme", &d, MAX_READ, &out), -ENOENT);
		if (exists(path))
			fail_msg("a blob corrupted at %lld is still on disk", (long long)places[i]);
		assert_false(cas_has_blob(f->cas, "acme", &d));
		free(path);
	}

	/* Another blob's entry, valid in itself, copied over this one: only
	 * the CAS's own check of the name can catch it. */
	static const char other[] = "some other content";
	struct digest od = digest_of(other, sizeof(other) - 1);
	assert_int_equal(cas_put_blob(f->cas, "acme", &d, data, sizeof(data)), 0);
	assert_int_equal(cas_put_blob(f->cas, "acme", &od, other, sizeof(other) - 1), 0);
	char *path = entry_path(f, "acme", &d, 'b');
	char *other_path = entry_path(f, "acme", &od, 'b');
	_cleanup_buf_ struct buf file;
	buf_init(&file, 0);
	assert_int_equal(fs_read_file(other_path, 1 << 20, &file), 0);
	assert_int_equal(fs_write_atomic(path, file.data, file.len, 0600, false), 0);
	assert_int_equal(cas_get_blob(f->cas, "acme", &d, MAX_READ, &out), -ENOENT);
	assert_false(exists(path));
	/* The other blob is untouched. */
	assert_int_equal(cas_get_blob(f->cas, "acme", &od, MAX_READ, &out), 0);
	assert_int_equal(out.len, sizeof(other) - 1);
	free(path);
	free(other_path);
}

static void test_tenants_isolated(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "tenant a's secret header";
	struct digest d = digest_of(data, sizeof(data) - 1);
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);

	assert_int_equal(cas_put_blob(f->cas, "a", &d, data, sizeof(data) - 1), 0);
	assert_true(cas_has_blob(f->cas, "a", &d));
	assert_false(cas_has_blob(f->cas, "b", &d));
	assert_int_equal(cas_get_blob(f->cas, "b", &d, MAX_READ, &out), -ENOENT);
	assert_false(cas_has_blob(f->cas, "A", &d));
	assert_false(cas_has_blob(f->cas, "a.", &d));

	struct digest key = digest_of("action", 6);
	assert_int_equal(cas_put_action(f->cas, "a", &key, "result-a", 8), 0);
	assert_int_equal(cas_get_action(f->cas, "b", &key, MAX_READ, &out), -ENOENT);
	assert_int_equal(cas_put_direct(f->cas, "a", &key, "manifest-a", 10, NULL, NULL, 0), 0);
	assert_int_equal(cas_get_direct(f->cas, "b", &key, MAX_READ, &out), -ENOENT);

	/* B's own entries under the same keys do not disturb A's. */
	assert_int_equal(cas_put_action(f->cas, "b", &key, "result-b", 8), 0);
	assert_int_equal(cas_get_action(f->cas, "a", &key, MAX_READ, &out), 0);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, "result-a", 8);
	assert_int_equal(cas_get_action(f->cas, "b", &key, MAX_READ, &out), 0);
	assert_memory_equal(out.data, "result-b", 8);
}

static void test_actions_and_direct(void **state)
{
	struct fixture *f = *state;
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	struct digest key = digest_of("key", 3);
	static const char result[] = "\x08\x01\x12\x00 an ActionResult";
	static const char manifest[] = "\x0a\x00 a DirectManifest";

	assert_int_equal(cas_get_action(f->cas, "acme", &key, MAX_READ, &out), -ENOENT);
	assert_int_equal(cas_get_direct(f->cas, "acme", &key, MAX_READ, &out), -ENOENT);
	assert_int_equal(cas_put_action(f->cas, "acme", &key, result, sizeof(result)), 0);
	/* Same key, other kinds: still missing. */
	assert_int_equal(cas_get_direct(f->cas, "acme", &key, MAX_READ, &out), -ENOENT);
	assert_false(cas_has_blob(f->cas, "acme", &key));
	assert_int_equal(cas_put_direct(f->cas, "acme", &key, manifest, sizeof(manifest), NULL, NULL, 0), 0);

	buf_append_str(&out, "stale");
	assert_int_equal(cas_get_action(f->cas, "acme", &key, MAX_READ, &out), 0);
	assert_int_equal(out.len, sizeof(result));
	assert_memory_equal(out.data, result, sizeof(result));
	buf_append_str(&out, "stale");
	assert_int_equal(cas_get_direct(f->cas, "acme", &key, MAX_READ, &out), 0);
	assert_int_equal(out.len, sizeof(manifest));
	assert_memory_equal(out.data, manifest, sizeof(manifest));

	/* A newer result replaces the old one. */
	assert_int_equal(cas_put_action(f->cas, "acme", &key, "newer", 5), 0);
	assert_int_equal(cas_get_action(f->cas, "acme", &key, MAX_READ, &out), 0);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.data, "newer", 5);
}

/* Files and directories anywhere below dir. */
static size_t n_nodes;

static int count_node(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)st;
	(void)flag;
	(void)ftw;
	n_nodes++;
	return 0;
}

static size_t count_nodes(const char *dir)
{
	n_nodes = 0;
	nftw(dir, count_node, 16, FTW_PHYS);
	return n_nodes;
}

static void test_invalid_tenant(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "x";
	struct digest d = digest_of(data, 1);
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	size_t before = count_nodes(f->dir);
	static const char *const bad[] = { "", "..", ".", "../evil", "a/b", "/tmp", ".hidden", "a b" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *t = bad[i];
		assert_false(cas_has_blob(f->cas, t, &d));
		assert_int_equal(cas_put_blob(f->cas, t, &d, data, 1), -EINVAL);
		assert_int_equal(cas_get_blob(f->cas, t, &d, MAX_READ, &out), -EINVAL);
		assert_int_equal(cas_put_action(f->cas, t, &d, data, 1), -EINVAL);
		assert_int_equal(cas_get_action(f->cas, t, &d, MAX_READ, &out), -EINVAL);
		assert_int_equal(cas_put_direct(f->cas, t, &d, data, 1, NULL, NULL, 0), -EINVAL);
		assert_int_equal(cas_get_direct(f->cas, t, &d, MAX_READ, &out), -EINVAL);
	}
	assert_false(cas_has_blob(f->cas, NULL, &d));
	assert_int_equal(cas_put_blob(f->cas, NULL, &d, data, 1), -EINVAL);
	assert_int_equal(cas_get_action(f->cas, NULL, &d, MAX_READ, &out), -EINVAL);
	/* Nothing was created, inside the state directory or beside it. */
	assert_int_equal(count_nodes(f->dir), before);
	char *evil = NULL;
	assert_true(asprintf(&evil, "%s/evil", f->dir) > 0);
	assert_false(exists(evil));
	free(evil);
}

static void test_open_failure(void **state)
{
	struct fixture *f = *state;
	char *file = NULL;
	assert_true(asprintf(&file, "%s/plain-file", f->dir) > 0);
	assert_int_equal(fs_write_atomic(file, "x", 1, 0600, false), 0);
	struct cas *c = NULL;
	struct error err = { 0 };
	assert_true(cas_open(file, 0, &c, &err) < 0);
	assert_null(c);
	assert_true(err.msg[0] != '\0');
	free(file);
	cas_close(NULL);
}

/* ---- eviction ---------------------------------------------------------- */

/* Writes blobs, actions and manifests of 2 KiB each (incompressible, so a
 * file is about as big as its payload) well past a 64 KiB budget. */
static void fill_tenant(struct fixture *f, const char *tenant, size_t count, uint64_t seed)
{
	uint8_t data[2048];
	for (size_t i = 0; i < count; i++) {
		fill_random(data, sizeof(data), seed * 100000 + i);
		struct digest d = digest_of(data, sizeof(data));
		switch (i % 4) {
		case 0:
		case 1:
			assert_int_equal(cas_put_blob(f->cas, tenant, &d, data, sizeof(data)), 0);
			break;
		case 2:
			assert_int_equal(cas_put_action(f->cas, tenant, &d, data, sizeof(data)), 0);
			break;
		default:
			assert_int_equal(cas_put_direct(f->cas, tenant, &d, data, sizeof(data), NULL, NULL, 0), 0);
			break;
		}
	}
}

static void test_eviction(void **state)
{
	struct fixture *f = *state;
	const uint64_t budget = 64 * 1024;
	fill_tenant(f, "big", 200, 1);
	fill_tenant(f, "small", 8, 2);
	uint64_t small_files, small_before = store_bytes(f, "small", &small_files);
	assert_int_equal(small_files, 8);
	assert_true(small_before < budget);

	assert_int_equal(cas_gc(f->cas), 0);
	uint64_t files, bytes = store_bytes(f, "big", &files);
	if (bytes > budget)
		fail_msg("tenant 'big' holds %llu bytes in %llu files after cas_gc; its budget is %llu",
			 (unsigned long long)bytes, (unsigned long long)files, (unsigned long long)budget);
	assert_true(files > 0);
	/* A tenant under its budget keeps everything. */
	assert_int_equal(store_bytes(f, "small", &small_files), small_before);
	assert_int_equal(small_files, 8);

	/* The newest blob survived; the oldest one did not. */
	uint8_t data[2048];
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	fill_random(data, sizeof(data), 100000 + 197);
	struct digest newest = digest_of(data, sizeof(data));
	assert_int_equal(cas_get_blob(f->cas, "big", &newest, MAX_READ, &out), 0);
	fill_random(data, sizeof(data), 100000 + 0);
	struct digest oldest = digest_of(data, sizeof(data));
	assert_false(cas_has_blob(f->cas, "big", &oldest));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenant_names),
		cmocka_unit_test_setup_teardown(test_blob_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_blob_wrong_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_blob_corrupt_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenants_isolated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_actions_and_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_tenant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eviction, setup_small, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
