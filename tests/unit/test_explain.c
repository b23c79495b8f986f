/*
 * Unit tests for explain records (src/cache/explain.c) and the report
 * (src/client/explain.c, linked in here). Records written by hand check the
 * report: an image change (remote mode), a changed/added/removed flag, a
 * header's first changed line from kept contents, added and removed headers,
 * an old content no longer kept, a hit, no record and damaged records. The
 * engine driven with a real gcc checks the record rule: a miss after a miss
 * is still compared with the last hit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "explain.h"
#include "fs.h"
#include "proc.h"
#include "store.h"

#define GCC "/usr/bin/gcc"

/* command_explain (not tested here) loads the configuration through
 * commands.c, which this binary does not link. */
struct config;
int command_load_config(struct config *cfg);
int command_load_config(struct config *cfg)
{
	(void)cfg;
	return -1;
}

/* ---- records by hand --------------------------------------------------- */

static void put_payload(const char *dir, enum store_kind kind, const struct digest *key, const void *p, size_t n)
{
	_cleanup_free_ char *edir = path_join(dir, "explain");
	struct store s;
	assert_int_equal(store_init(&s, edir, 0, 1), 0);
	assert_int_equal(store_put(&s, kind, key, p, n, NULL), 0);
	store_free(&s);
}

static struct digest put_blob(const char *dir, const char *text)
{
	struct digest d;
	assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
	put_payload(dir, STORE_BLOB, &d, text, strlen(text));
	return d;
}

static struct digest digest_of(const char *text)
{
	struct digest d;
	assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
	return d;
}

struct entry_spec {
	int kind;
	bool remote;
	struct digest toolchain, action;
	const char *flags[8];
	const char *paths[8];
	struct digest digests[8];
};

/* Builds an entry from a spec; everything points into spec (and statics). */
struct entry_mem {
	Hpcc__Local__ExplainEntry e;
	Hpcc__Local__ExplainFlag f[8], *fp[8];
	Hpcc__Local__ExplainInput in[8], *ip[8];
};

static void entry_from(struct entry_mem *m, struct entry_spec *s, int64_t t)
{
	hpcc__local__explain_entry__init(&m->e);
	m->e.time = t;
	m->e.kind = s->kind;
	m->e.remote = s->remote;
	m->e.toolchain = (ProtobufCBinaryData){ DIGEST_LEN, s->toolchain.b };
	m->e.action_digest = (ProtobufCBinaryData){ DIGEST_LEN, s->action.b };
	m->e.output_digest = (ProtobufCBinaryData){ DIGEST_LEN, s->action.b };
	m->e.compiler = (char *)"/usr/bin/gcc";
	m->e.cwd = (char *)"/p";
	m->e.root = (char *)"/p";
	m->e.source = (char *)"a.c";
	for (size_t i = 0; i < 8 && s->flags[i]; i++) {
		hpcc__local__explain_flag__init(&m->f[i]);
		m->f[i].flag = (char *)s->flags[i];
		m->fp[i] = &m->f[i];
		m->e.n_flags++;
	}
	m->e.flags = m->fp;
	for (size_t i = 0; i < 8 && s->paths[i]; i++) {
		hpcc__local__explain_input__init(&m->in[i]);
		m->in[i].path = (char *)s->paths[i];
		m->in[i].rooted = true;
		m->in[i].digest = (ProtobufCBinaryData){ DIGEST_LEN, s->digests[i].b };
		m->ip[i] = &m->in[i];
		m->e.n_inputs++;
	}
	m->e.inputs = m->ip;
}

static void put_record(const char *dir, const char *object, struct entry_spec *latest, struct entry_spec *ref)
{
	struct entry_mem l, r;
	entry_from(&l, latest, 2000000000);
	if (ref)
		entry_from(&r, ref, 1900000000);
	Hpcc__Local__ExplainRecord rec = HPCC__LOCAL__EXPLAIN_RECORD__INIT;
	rec.object = (char *)object;
	rec.latest = &l.e;
	rec.reference = ref ? &r.e : NULL;
	size_t n = hpcc__local__explain_record__get_packed_size(&rec);
	_cleanup_free_ uint8_t *p = malloc(n);
	assert_non_null(p);
	hpcc__local__explain_record__pack(&rec, p);
	struct digest k;
	assert_int_equal(explain_record_key(object, &k), 0);
	put_payload(dir, STORE_RESULT, &k, p, n);
}

/* The report for object (absolute) into a string; *ret_r the return. */
static char *report(const char *dir, const char *object, bool json, int *ret_r)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	*ret_r = explain_report(dir, object, json, &out);
	buf_append_char(&out, '\0');
	return buf_steal(&out);
}

static void assert_has(const char *text, const char *want)
{
	if (!strstr(text, want))
		fail_msg("missing \"%s\" in:\n%s", want, text);
}

static void test_image_changed(void **state)
{
	const char *dir = *state;
	struct digest a = digest_of("image a"), b = digest_of("image b"), src = digest_of("int x;\n");
	struct entry_spec ref = { .kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT, .remote = true, .toolchain = a,
				  .action = digest_of("1"), .flags = { "-O2" }, .paths = { "a.c", "inc/x.h" },
				  .digests = { src, src } };
	struct entry_spec lat = ref;
	lat.kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE;
	lat.toolchain = b;
	lat.action = digest_of("2");
	put_record(dir, "/p/a.o", &lat, &ref);
	int r;
	_cleanup_free_ char *text = report(dir, "/p/a.o", false, &r);
	assert_int_equal(r, 0);
	char da[DIGEST_STR_LEN + 1], db[DIGEST_STR_LEN + 1], want[200];
	digest_to_string(&a, da);
	digest_to_string(&b, db);
	snprintf(want, sizeof(want), "  image changed: %s -> %s\n", da, db);
	assert_has(text, want);
	assert_has(text, "last hit");
	assert_has(text, "2 inputs compared, 2 identical");
	assert_null(strstr(text, "flag"));
	assert_null(strstr(text, "compiler changed"));

	/* The same toolchain in local mode is a compiler, named with its path. */
	ref.remote = lat.remote = false;
	put_record(dir, "/p/a.o", &lat, &ref);
	_cleanup_free_ char *local = report(dir, "/p/a.o", false, &r);
	snprintf(want, sizeof(want), "compiler changed: /usr/bin/gcc (%s) -> /usr/bin/gcc (%s)", da, db);
	assert_has(local, want);
	assert_null(strstr(local, "image changed"));
}

static void test_flags_and_lines(void **state)
{
	const char *dir = *state;
	struct digest tc = digest_of("gcc");
	struct digest src = put_blob(dir, "int x;\n");
	struct digest c1 = put_blob(dir, "#pragma once\n#define A 1\n#define BUFSZ 4096\n");
	struct digest c2 = put_blob(dir, "#pragma once\n#define A 1\n#define BUFSZ 8192\n");
	struct digest gone = digest_of("never kept\n"), now = put_blob(dir, "kept now\n");
	struct digest same = put_blob(dir, "same\n");
	struct digest nl1 = put_blob(dir, "one\ntwo\n"), nl2 = put_blob(dir, "one\ntwo");
	struct entry_spec ref = { .kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT, .toolchain = tc, .action = digest_of("1"),
				  .flags = { "-DLEVEL=1", "-O2", "-Iinc", "-fno-PIC" },
				  .paths = { "a.c", "inc/config.h", "inc/old.h", "inc/g.h", "inc/same.h", "inc/nl.h" },
				  .digests = { src, c1, same, gone, same, nl1 } };
	struct entry_spec lat = { .kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__MISS, .toolchain = tc, .action = digest_of("2"),
				  .flags = { "-DLEVEL=2", "-O3", "-Iinc", "-fPIC", "-Wall" },
				  .paths = { "a.c", "inc/config.h", "inc/extra.h", "inc/g.h", "inc/same.h", "inc/nl.h" },
				  .digests = { src, c2, same, now, same, nl2 } };
	put_record(dir, "/p/a.o", &lat, &ref);
	int r;
	_cleanup_free_ char *text = report(dir, "/p/a.o", false, &r);
	assert_int_equal(r, 0);
	assert_has(text, "  flag changed: -DLEVEL=1 -> -DLEVEL=2\n");
	assert_has(text, "  flag changed: -O2 -> -O3\n");
	assert_has(text, "  flag changed: -fno-PIC -> -fPIC\n");
	assert_has(text, "  flag added: -Wall\n");
	assert_null(strstr(text, "-Iinc"));
	assert_has(text, "  header changed: inc/config.h, first changed line 3:\n"
			 "    was: #define BUFSZ 4096\n    now: #define BUFSZ 8192\n");
	assert_has(text, "  header added: inc/extra.h\n");
	assert_has(text, "  header removed: inc/old.h\n");
	assert_has(text, "  header changed: inc/g.h, line unknown (old content no longer kept)\n");
	assert_has(text, "  header changed: inc/nl.h (the same lines: only line endings or the final newline differ)\n");
	assert_has(text, "  7 inputs compared, 2 identical\n");
	assert_has(text, "/p/a.o does not exist any more");

	_cleanup_free_ char *json = report(dir, "/p/a.o", true, &r);
	assert_int_equal(r, 0);
	assert_has(json, "\"status\": \"changed\"");
	assert_has(json, "{\"kind\": \"flag_changed\", \"what\": \"-DLEVEL\", \"was\": \"-DLEVEL=1\", \"now\": \"-DLEVEL=2\"}");
	assert_has(json, "\"line\": 3");
}

static void test_hit_none_damaged(void **state)
{
	const char *dir = *state;
	struct digest tc = digest_of("gcc"), src = digest_of("int x;\n");
	struct entry_spec hit = { .kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT, .toolchain = tc, .action = digest_of("1"),
				  .flags = { "-O2" }, .paths = { "a.c" }, .digests = { src } };
	put_record(dir, "/p/a.o", &hit, NULL);
	int r;
	_cleanup_free_ char *text = report(dir, "/p/a.o", false, &r);
	assert_int_equal(r, 0);
	assert_has(text, "/p/a.o was served from the cache (hit at ");
	assert_has(text, "nothing changed since the compile that stored it (1 inputs)");

	/* The same inputs as the last hit, compiled again: the result left. */
	struct entry_spec miss = hit;
	miss.kind = HPCC__LOCAL__EXPLAIN_ENTRY__KIND__MISS;
	put_record(dir, "/p/a.o", &miss, &hit);
	_cleanup_free_ char *ev = report(dir, "/p/a.o", false, &r);
	assert_has(ev, "no longer in the cache");

	_cleanup_free_ char *none = report(dir, "/p/b.o", false, &r);
	assert_int_equal(r, -ENOENT);
	assert_has(none, "no record of /p/b.o");

	/* A payload that is not a record, and a record of another object. */
	struct digest k;
	assert_int_equal(explain_record_key("/p/c.o", &k), 0);
	put_payload(dir, STORE_RESULT, &k, "\xff\xff\xff\xff garbage", 13);
	_cleanup_free_ char *bad = report(dir, "/p/c.o", false, &r);
	assert_int_equal(r, -EBADMSG);
	assert_has(bad, "is damaged");
	_cleanup_free_ char *gone = report(dir, "/p/c.o", false, &r);
	assert_int_equal(r, -ENOENT);
	put_record(dir, "/p/a.o", &hit, NULL);
	_cleanup_free_ char *path_a = explain_record_path(dir, "/p/a.o"), *path_d = explain_record_path(dir, "/p/d.o");
	_cleanup_free_ char *dd = strdup(path_d);
	*strrchr(dd, '/') = '\0';
	assert_int_equal(fs_mkdir_p(dd, 0700), 0);
	assert_int_equal(rename(path_a, path_d), 0);
	_cleanup_free_ char *other = report(dir, "/p/d.o", false, &r);
	assert_int_equal(r, -EBADMSG);

	/* Garbage bytes in the file itself (the store's header check). */
	put_record(dir, "/p/a.o", &hit, NULL);
	FILE *fp = fopen(path_a, "w");
	assert_non_null(fp);
	fputs("not a store entry at all", fp);
	fclose(fp);
	_cleanup_free_ char *raw = report(dir, "/p/a.o", false, &r);
	assert_int_equal(r, -EBADMSG);
}

/* explain/ stays under its cap: the oldest files go first, to 90 %. */
static void test_cap_evicts_oldest(void **state)
{
	const char *dir = *state;
	assert_int_equal(explain_cap(0), (uint64_t)256 << 20);
	assert_int_equal(explain_cap(1000), EXPLAIN_MIN_CAP);
	assert_int_equal(explain_cap((uint64_t)10 << 30), ((uint64_t)10 << 30) / 20);
	enum { N = 20, SIZE = 1 << 20 };
	struct digest d[N];
	_cleanup_free_ char *data = malloc(SIZE);
	assert_non_null(data);
	for (int i = 0; i < N; i++) {
		for (size_t k = 0; k < SIZE; k++)
			data[k] = (char)(rand() & 0xff);  /* incompressible: 1 MiB on disk each */
		assert_int_equal(digest_bytes(data, SIZE, &d[i]), 0);
		put_payload(dir, STORE_BLOB, &d[i], data, SIZE);
		char hex[DIGEST_HEX_LEN + 1];
		digest_to_hex(&d[i], hex);
		_cleanup_free_ char *p = NULL;
		assert_true(asprintf(&p, "%s/explain/store/%.2s/%s.b", dir, hex, hex + 2) > 0);
		struct timespec times[2] = { { 1000000000 + i, 0 }, { 1000000000 + i, 0 } };
		assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	}
	struct explain *x = NULL;
	assert_int_equal(explain_open(dir, 1000, &x), 0);
	assert_int_equal(explain_maintain(x, false), 0);  /* size unknown, no scan asked: nothing */
	struct buf b;
	buf_init(&b, EXPLAIN_BLOB_MAX + 1);
	assert_int_equal(explain_blob_get(dir, &d[0], &b), 0);
	buf_free(&b);
	assert_int_equal(explain_maintain(x, true), 0);
	/* 16 MiB cap, 90 %: 14 of the 20 files stay, the newest ones. */
	for (int i = 0; i < N; i++) {
		buf_init(&b, EXPLAIN_BLOB_MAX + 1);
		int r = explain_blob_get(dir, &d[i], &b);
		buf_free(&b);
		if (i == 0)
			continue;  /* read above: used lately, so kept */
		assert_int_equal(r, i < N - 13 ? -ENOENT : 0);
	}
	explain_free(x);
}

/* ---- the record rule, through the engine ---------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static void compile(struct engine *e, const char *cwd, const char *define, enum engine_action want)
{
	char *argv[] = { (char *)GCC, (char *)"-c", (char *)"a.c", (char *)"-o", (char *)"a.o", (char *)define, NULL };
	struct engine_request req = { .argc = 6, .argv = argv, .compiler_path = GCC, .cwd = cwd, .prefix_map = true };
	struct engine_result res;
	assert_int_equal(engine_lookup(e, &req, &res), 0);
	assert_int_equal(res.action, want);
	if (res.action == ENGINE_RUN) {
		assert_int_equal(chdir(cwd), 0);
		struct proc_result pr;
		assert_int_equal(proc_run_capture(strv_argv(&res.run_argv), NULL, ENGINE_MAX_CAPTURE, false, &pr), 0);
		struct output_file *outs = NULL;
		size_t n = 0;
		assert_int_equal(engine_complete(e, res.job, pr.status, &pr.out, &pr.err, false, &outs, &n), 0);
		res.job = NULL;
		output_files_free(outs, n);
		proc_result_free(&pr);
	}
	engine_result_free(&res);
}

static void test_rule_keeps_last_hit(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *proj = path_join(dir, "p"), *cache = path_join(dir, "cache");
	_cleanup_free_ char *cfgfile = path_join(dir, "config"), *marker = path_join(proj, ".hpcc");
	_cleanup_free_ char *src = path_join(proj, "a.c"), *obj = path_join(proj, "a.o");
	_cleanup_free_ char *start = getcwd(NULL, 0);
	assert_int_equal(fs_mkdir_p(proj, 0755), 0);
	write_file(marker, "");
	write_file(cfgfile, "[cache]\n");
	write_file(src, "int f(void) { return LEVEL; }\n");
	struct timespec t = { 0, 60 * 1000 * 1000 };
	nanosleep(&t, NULL);
	setenv("HPCC_CONFIG", cfgfile, 1);
	setenv("HPCC_DIR", cache, 1);
	struct config cfg;
	struct error err = { 0 };
	assert_int_equal(config_load(&cfg, NULL, &err), 0);
	struct engine *e = NULL;
	assert_int_equal(engine_new(&cfg, true, &e, &err), 0);
	compile(e, proj, "-DLEVEL=1", ENGINE_RUN);
	compile(e, proj, "-DLEVEL=1", ENGINE_HIT);
	compile(e, proj, "-DLEVEL=2", ENGINE_RUN);
	compile(e, proj, "-DLEVEL=3", ENGINE_RUN);
	int r;
	_cleanup_free_ char *text = report(cache, obj, false, &r);
	assert_int_equal(r, 0);
	/* Compared with the last hit (LEVEL=1), not the miss in between. */
	assert_has(text, "; last hit ");
	assert_has(text, "  flag changed: -DLEVEL=1 -> -DLEVEL=3\n");
	assert_has(text, "2 inputs compared, 2 identical");  /* a.c and stdc-predef.h */

	/* The source's content is kept: its first changed line is shown. */
	compile(e, proj, "-DLEVEL=3", ENGINE_HIT);
	write_file(src, "int f(void) { return LEVEL + 1; }\n");
	nanosleep(&t, NULL);
	compile(e, proj, "-DLEVEL=3", ENGINE_RUN);
	_cleanup_free_ char *text2 = report(cache, obj, false, &r);
	assert_has(text2, "  source changed: a.c, first changed line 1:\n"
			  "    was: int f(void) { return LEVEL; }\n    now: int f(void) { return LEVEL + 1; }\n");
	assert_null(strstr(text2, "flag"));
	assert_int_equal(engine_flush(e), 0);
	engine_free(e);
	config_free(&cfg);
	unsetenv("HPCC_CONFIG");
	unsetenv("HPCC_DIR");
	assert_int_equal(chdir(start), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_image_changed, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_flags_and_lines, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_hit_none_damaged, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_cap_evicts_oldest, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_rule_keeps_last_hit, testutil_setup_tmpdir, testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
