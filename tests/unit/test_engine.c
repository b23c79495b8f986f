/*
 * Unit tests for the cache engine (src/cache/engine.c with keys.c, inputs.c
 * and results.c) driven the way the wrapper drives it: engine_lookup on a
 * real gcc command, running the RUN command with proc_run_capture in the
 * compile's directory, engine_complete, then looking up again. Checks that
 * a repeat is a hit with the same object bytes, that a changed -D or header
 * is a miss, that an old header content hits again (manifest candidates),
 * that a second checkout under its own project root hits (root-relative
 * keys) with the bytes a plain compile there produces, that without a root
 * the directory is part of the key, and the counters in the stats file.
 * The cache lives in a temporary directory, configured through HPCC_CONFIG
 * (a file with defaults only) and HPCC_DIR.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "fs.h"
#include "proc.h"
#include "stats.h"

#define GCC "/usr/bin/gcc"

struct fixture {
	char *dir;
	char *cache;
	char *start_cwd;
	struct config cfg;
	struct engine *engine;
};

static const char *const hpcc_env[] = {
	"HPCC_MAX_SIZE", "HPCC_COMPRESSION_LEVEL", "HPCC_DIRECT_MODE", "HPCC_DISABLE", "HPCC_PREFIX_MAP",
	"HPCC_DAEMON", "HPCC_DAEMON_IDLE_TIMEOUT", "HPCC_SOCKET", "HPCC_LOG_FILE", "HPCC_LOG_LEVEL",
};


static char *path_in(const struct fixture *f, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
	return p;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void write_in(const struct fixture *f, const char *name, const char *text)
{
	_cleanup_free_ char *p = path_in(f, name);
	write_file(p, text);
}

static void mkdir_in(const struct fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f, name);
	assert_int_equal(fs_mkdir_p(p, 0755), 0);
}

/* Files written in the last 20 ms count as modified during the compile
 * (the kernel's file clock is coarse): let them age a little. */
static void settle(void)
{
	struct timespec t = { 0, 60 * 1000 * 1000 };
	nanosleep(&t, NULL);
}

/* A project: <name>/.hpcc (unless rooted is false), src/a.c, include/a.h. */
static void make_project(const struct fixture *f, const char *name, bool rooted, const char *header)
{
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/src", name);
	mkdir_in(f, sub);
	snprintf(sub, sizeof(sub), "%s/include", name);
	mkdir_in(f, sub);
	if (rooted) {
		snprintf(sub, sizeof(sub), "%s/.hpcc", name);
		write_in(f, sub, "");
	}
	snprintf(sub, sizeof(sub), "%s/src/a.c", name);
	write_in(f, sub,
		 "#include \"a.h\"\n"
		 "int value(void) { return A_VALUE + X; }\n"
		 "const char *where(void) { return __FILE__; }\n");
	snprintf(sub, sizeof(sub), "%s/include/a.h", name);
	write_in(f, sub, header);
}

static void fixture_free(struct fixture *f)
{
	if (!f)
		return;
	if (f->start_cwd)
		(void)chdir(f->start_cwd);
	engine_free(f->engine);
	config_free(&f->cfg);
	if (f->dir)
		testutil_rm_rf(f->dir);
	unsetenv("HPCC_CONFIG");
	unsetenv("HPCC_DIR");
	free(f->start_cwd);
	free(f->cache);
	free(f->dir);
	free(f);
}

static int setup_fixture(struct fixture *f)
{
	char tmpl[] = "/tmp/hpcc-test-engine-XXXXXX";
	if (!mkdtemp(tmpl) || !(f->dir = strdup(tmpl)) || !(f->start_cwd = getcwd(NULL, 0)))
		return -1;
	_cleanup_free_ char *config = NULL;
	if (asprintf(&f->cache, "%s/cache", f->dir) < 0 || asprintf(&config, "%s/config", f->dir) < 0)
		return -1;
	/* Defaults only. Not an empty file: fs_read_fd leaves the buffer of
	 * an empty file unterminated, and the config parser then reads
	 * whatever the heap held (reported; a fix belongs in fs.c). */
	_cleanup_close_ int fd = open(config, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	static const char comment[] = "; hpcc unit test: all defaults\n";
	if (fd < 0 || write(fd, comment, sizeof(comment) - 1) != (ssize_t)sizeof(comment) - 1)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(hpcc_env); i++)
		unsetenv(hpcc_env[i]);
	setenv("HPCC_CONFIG", config, 1);
	setenv("HPCC_DIR", f->cache, 1);
	struct error err = { 0 };
	if (config_load(&f->cfg, NULL, &err) < 0) {
		print_error("config: %s\n", err.msg);
		return -1;
	}
	if (engine_new(&f->cfg, true, &f->engine, &err) < 0) {
		print_error("engine: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	if (setup_fixture(f) < 0) {
		/* cmocka runs no teardown after a failed setup. */
		fixture_free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_free(*state);
	return 0;
}

struct outcome {
	enum engine_action action;
	struct buf object;   /* a.o as the compile left it, or as the hit gave it */
	struct buf depfile;  /* the .d the caller is to write, if any */
	struct buf err;      /* stderr, as run or replayed */
};

static void outcome_free(struct outcome *o)
{
	buf_free(&o->object);
	buf_free(&o->depfile);
	buf_free(&o->err);
}

static void take_outputs(struct output_file *outs, size_t n, const char *obj_name, struct outcome *o)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(outs[i].path);
		struct buf *dst = strcmp(outs[i].path, obj_name) == 0 ? &o->object :
				  len > 2 && strcmp(outs[i].path + len - 2, ".d") == 0 ? &o->depfile :
											 NULL;
		if (!dst)
			fail_msg("unexpected output %s", outs[i].path);
		assert_int_equal(buf_append(dst, outs[i].data.data, outs[i].data.len), 0);
	}
}

/* One compile in project/src through the engine, as the wrapper does it. */
static void compile(struct fixture *f, const char *project, char **argv, struct outcome *o)
{
	*o = (struct outcome){ 0 };
	buf_init(&o->object, 1 << 24);
	buf_init(&o->depfile, 1 << 20);
	buf_init(&o->err, 1 << 20);
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/src", project);
	_cleanup_free_ char *cwd = path_in(f, sub);
	int argc = 0;
	while (argv[argc])
		argc++;
	struct engine_request req = {
		.argc = argc,
		.argv = argv,
		.compiler_path = GCC,
		.cwd = cwd,
		.env = NULL,
		.n_env = 0,
		.stderr_is_tty = false,
		.prefix_map = true,
	};
	struct engine_result res;
	assert_int_equal(engine_lookup(f->engine, &req, &res), 0);
	o->action = res.action;
	if (res.action == ENGINE_HIT) {
		take_outputs(res.outputs, res.n_outputs, "a.o", o);
		assert_int_equal(buf_append(&o->err, res.err.data, res.err.len), 0);
	} else if (res.action == ENGINE_RUN) {
		assert_non_null(res.job);
		assert_int_equal(chdir(cwd), 0);
		struct proc_result pr;
		int r = proc_run_capture(strv_argv(&res.run_argv), NULL, ENGINE_MAX_CAPTURE, false, &pr);
		assert_int_equal(chdir(f->start_cwd), 0);
		assert_int_equal(r, 0);
		struct output_file *outs = NULL;
		size_t n = 0;
		r = engine_complete(f->engine, res.job, pr.status, &pr.out, &pr.err, pr.out_passed || pr.err_passed,
				    &outs, &n);
		res.job = NULL;
		assert_int_equal(r, 0);
		take_outputs(outs, n, "a.o", o);
		output_files_free(outs, n);
		assert_int_equal(buf_append(&o->err, pr.err.data, pr.err.len), 0);
		if (proc_exit_code(pr.status) == 0) {
			_cleanup_free_ char *obj = NULL;
			assert_true(asprintf(&obj, "%s/a.o", cwd) > 0);
			assert_int_equal(fs_read_file(obj, 1 << 24, &o->object), 0);
		}
		proc_result_free(&pr);
	} else
		fail_msg("fallback: %s", res.reason ? res.reason : "?");
	engine_result_free(&res);
}

static struct stats read_stats(struct fixture *f)
{
	assert_int_equal(engine_flush(f->engine), 0);
	_cleanup_free_ char *path = NULL;
	assert_true(asprintf(&path, "%s/stats", f->cache) > 0);
	struct stats s;
	assert_int_equal(stats_read_file(path, &s), 0);
	return s;
}

static void assert_same_bytes(const struct buf *a, const struct buf *b)
{
	assert_true(a->len > 0);
	assert_int_equal(a->len, b->len);
	assert_memory_equal(a->data, b->data, a->len);
}

#define ARGV(...) ((char *[]){ (char *)GCC, __VA_ARGS__, NULL })
#define HEADER_1 "#define A_VALUE 1\n"
#define HEADER_2 "#define A_VALUE 22\n"

static void test_miss_then_hit(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1);
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=1", "-O1");
	struct outcome first, second;
	compile(f, "p1", argv, &first);
	assert_int_equal(first.action, ENGINE_RUN);
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_MISS], 1);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 0);
	assert_int_equal(s.v[STAT_FILES_STORED], 1);
	/* A result and a manifest. */
	assert_int_equal(s.v[STAT_CACHE_FILES], 2);
	assert_true(s.v[STAT_CACHE_SIZE] > 0);

	compile(f, "p1", argv, &second);
	assert_int_equal(second.action, ENGINE_HIT);
	assert_same_bytes(&first.object, &second.object);
	s = read_stats(f);
	assert_int_equal(s.v[STAT_MISS], 1);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 1);
	assert_int_equal(s.v[STAT_FILES_STORED], 1);
	assert_int_equal(s.v[STAT_CACHE_FILES], 2);
	outcome_free(&first);
	outcome_free(&second);

	/* The object the hit gives is what the compile made: check the size
	 * counter against the store on disk too. */
	uint64_t size, files, evicted;
	struct store st;
	assert_int_equal(store_init(&st, f->cache, 0, 1), 0);
	assert_int_equal(store_cleanup(&st, UINT64_MAX, &size, &files, &evicted), 0);
	store_free(&st);
	s = read_stats(f);
	assert_int_equal(files, 2);
	assert_int_equal((int64_t)size, s.v[STAT_CACHE_SIZE]);
}

static void test_changed_define_is_miss(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1);
	settle();
	struct outcome o1, o2, o3;
	compile(f, "p1", ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=1"), &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	compile(f, "p1", ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=2"), &o2);
	assert_int_equal(o2.action, ENGINE_RUN);
	/* Different code, so different objects. */
	assert_true(o1.object.len != o2.object.len || memcmp(o1.object.data, o2.object.data, o1.object.len) != 0);
	/* Both are cached now, each under its own key. */
	compile(f, "p1", ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=1"), &o3);
	assert_int_equal(o3.action, ENGINE_HIT);
	assert_same_bytes(&o1.object, &o3.object);
	outcome_free(&o3);
	compile(f, "p1", ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=2"), &o3);
	assert_int_equal(o3.action, ENGINE_HIT);
	assert_same_bytes(&o2.object, &o3.object);
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_MISS], 2);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 2);
	outcome_free(&o1);
	outcome_free(&o2);
	outcome_free(&o3);
}

static void test_changed_header_is_miss(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1);
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=0");
	struct outcome o1, o2, o3;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);

	write_in(f, "p1/include/a.h", HEADER_2);
	settle();
	compile(f, "p1", argv, &o2);
	assert_int_equal(o2.action, ENGINE_RUN);
	assert_true(o1.object.len != o2.object.len || memcmp(o1.object.data, o2.object.data, o1.object.len) != 0);
	compile(f, "p1", argv, &o3);
	assert_int_equal(o3.action, ENGINE_HIT);
	assert_same_bytes(&o2.object, &o3.object);
	outcome_free(&o3);

	/* Back to the old header: the manifest still has that candidate. */
	write_in(f, "p1/include/a.h", HEADER_1);
	settle();
	compile(f, "p1", argv, &o3);
	assert_int_equal(o3.action, ENGINE_HIT);
	assert_same_bytes(&o1.object, &o3.object);
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_MISS], 2);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 2);
	/* Two results, one manifest (same source, same arguments). */
	assert_int_equal(s.v[STAT_CACHE_FILES], 3);
	outcome_free(&o1);
	outcome_free(&o2);
	outcome_free(&o3);
}

/* A plain compile, without hpcc, in project/src. */
static void plain_compile(struct fixture *f, const char *project, char **argv, struct buf *ret)
{
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/src", project);
	_cleanup_free_ char *cwd = path_in(f, sub);
	assert_int_equal(chdir(cwd), 0);
	struct proc_result pr;
	int r = proc_run_capture(argv, NULL, ENGINE_MAX_CAPTURE, false, &pr);
	assert_int_equal(chdir(f->start_cwd), 0);
	assert_int_equal(r, 0);
	assert_int_equal(proc_exit_code(pr.status), 0);
	proc_result_free(&pr);
	_cleanup_free_ char *obj = NULL;
	assert_true(asprintf(&obj, "%s/plain.o", cwd) > 0);
	buf_init(ret, 1 << 24);
	assert_int_equal(fs_read_file(obj, 1 << 24, ret), 0);
}

static void test_other_checkout_hits(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1);
	make_project(f, "checkouts/second", true, HEADER_1);
	settle();
	/* With debug info, which records the directory unless mapped. */
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=3", "-g");
	struct outcome o1, o2;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	compile(f, "checkouts/second", argv, &o2);
	assert_int_equal(o2.action, ENGINE_HIT);
	assert_same_bytes(&o1.object, &o2.object);

	/* And the hit is what a plain compile in the second checkout makes
	 * with the prefix map hpcc adds. */
	_cleanup_free_ char *root = path_in(f, "checkouts/second");
	_cleanup_free_ char *map = NULL;
	assert_true(asprintf(&map, "-ffile-prefix-map=%s=.", root) > 0);
	struct buf plain;
	plain_compile(f, "checkouts/second", ARGV("-c", "a.c", "-o", "plain.o", "-I../include", "-DX=3", "-g", map),
		      &plain);
	/* The object names itself nowhere, so the -o name does not matter. */
	assert_same_bytes(&plain, &o2.object);
	buf_free(&plain);
	outcome_free(&o1);
	outcome_free(&o2);
}

static void test_no_root_keys_on_directory(void **state)
{
	struct fixture *f = *state;
	make_project(f, "free1", false, HEADER_1);
	make_project(f, "free2", false, HEADER_1);
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=4");
	struct outcome o1, o2, o3;
	compile(f, "free1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	compile(f, "free2", argv, &o2);
	assert_int_equal(o2.action, ENGINE_RUN);
	compile(f, "free1", argv, &o3);
	assert_int_equal(o3.action, ENGINE_HIT);
	assert_same_bytes(&o1.object, &o3.object);
	outcome_free(&o1);
	outcome_free(&o2);
	outcome_free(&o3);
}

static void test_depfile_on_miss_and_hit(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1);
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=5", "-MD");
	struct outcome o1, o2;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	assert_true(o1.depfile.len > 0);
	assert_non_null(strstr(o1.depfile.data, "a.o:"));
	assert_non_null(strstr(o1.depfile.data, "a.c"));
	assert_non_null(strstr(o1.depfile.data, "../include/a.h"));
	compile(f, "p1", argv, &o2);
	assert_int_equal(o2.action, ENGINE_HIT);
	assert_same_bytes(&o1.object, &o2.object);
	assert_same_bytes(&o1.depfile, &o2.depfile);
	outcome_free(&o1);
	outcome_free(&o2);
}

static void test_failed_compile_not_cached(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, "#define A_VALUE syntax error here\n");
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=6");
	struct outcome o1, o2;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	assert_true(o1.err.len > 0);
	compile(f, "p1", argv, &o2);
	assert_int_equal(o2.action, ENGINE_RUN);
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_UNCACHEABLE_COMPILE_FAILED], 2);
	assert_int_equal(s.v[STAT_MISS], 0);
	assert_int_equal(s.v[STAT_CACHE_FILES], 0);
	outcome_free(&o1);
	outcome_free(&o2);
}

static void test_time_macros_not_cached(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, "#define A_VALUE (int)sizeof(__TIME__)\n");
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=7");
	struct outcome o1, o2;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	compile(f, "p1", argv, &o2);
	assert_int_equal(o2.action, ENGINE_RUN);
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_UNCACHEABLE_TIME_MACROS], 2);
	assert_int_equal(s.v[STAT_MISS], 0);
	outcome_free(&o1);
	outcome_free(&o2);
}

static void test_warnings_replayed(void **state)
{
	struct fixture *f = *state;
	make_project(f, "p1", true, HEADER_1 "static int unused_thing;\n");
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=8", "-Wall");
	struct outcome o1, o2;
	compile(f, "p1", argv, &o1);
	assert_int_equal(o1.action, ENGINE_RUN);
	assert_non_null(strstr(o1.err.data, "unused_thing"));
	compile(f, "p1", argv, &o2);
	assert_int_equal(o2.action, ENGINE_HIT);
	/* Stored with colour (hpcc asks for it always), replayed byte for byte. */
	assert_same_bytes(&o1.err, &o2.err);
	assert_non_null(strstr(o2.err.data, "\033["));
	outcome_free(&o1);
	outcome_free(&o2);
}

/* Finds the one store entry of the given kind ('r' or 'm') and its key. */
static void find_entry(struct fixture *f, char kind, struct digest *ret)
{
	_cleanup_free_ char *store = NULL;
	assert_true(asprintf(&store, "%s/store", f->cache) > 0);
	DIR *top = opendir(store);
	assert_non_null(top);
	int found = 0;
	struct dirent *de;
	while ((de = readdir(top))) {
		if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		assert_true(asprintf(&sub, "%s/%s", store, de->d_name) > 0);
		DIR *d = opendir(sub);
		assert_non_null(d);
		struct dirent *e;
		while ((e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if (n != 64 || e->d_name[63] != kind || e->d_name[62] != '.')
				continue;
			char hex[DIGEST_HEX_LEN + 1];
			memcpy(hex, de->d_name, 2);
			memcpy(hex + 2, e->d_name, 62);
			hex[DIGEST_HEX_LEN] = '\0';
			assert_int_equal(digest_parse(hex, ret), 0);
			found++;
		}
		closedir(d);
	}
	closedir(top);
	assert_int_equal(found, 1);
}

/* The size and file counters must follow the store when the engine drops
 * an entry that passes the store's checks but does not parse. */
static void check_unparseable_entry(struct fixture *f, char kind)
{
	make_project(f, "p1", true, HEADER_1);
	settle();
	char **argv = ARGV("-c", "a.c", "-o", "a.o", "-I../include", "-DX=9");
	struct outcome o;
	compile(f, "p1", argv, &o);
	assert_int_equal(o.action, ENGINE_RUN);
	outcome_free(&o);

	/* Counters on disk first, so that the delta below applies to them. */
	struct stats s = read_stats(f);
	assert_int_equal(s.v[STAT_CACHE_FILES], 2);

	/* A well-formed store entry whose payload is not protobuf. */
	struct digest key;
	find_entry(f, kind, &key);
	struct store st;
	assert_int_equal(store_init(&st, f->cache, 0, 1), 0);
	struct stats delta = { 0 };
	assert_int_equal(store_put(&st, (enum store_kind)kind, &key, "\xff\xff\xff\xff", 4, &delta), 0);
	delta.v[STAT_FILES_STORED] = 0;
	char *stats_path = NULL;
	assert_true(asprintf(&stats_path, "%s/stats", f->cache) > 0);
	assert_int_equal(stats_add_file(stats_path, &delta), 0);
	free(stats_path);

	/* Look up (a miss now), and give the job up without storing. */
	int argc = 0;
	while (argv[argc])
		argc++;
	char *cwd = path_in(f, "p1/src");
	struct engine_request req = { .argc = argc, .argv = argv, .compiler_path = GCC, .cwd = cwd, .prefix_map = true };
	struct engine_result res;
	assert_int_equal(engine_lookup(f->engine, &req, &res), 0);
	free(cwd);
	assert_int_equal(res.action, ENGINE_RUN);
	engine_abandon(f->engine, res.job);
	res.job = NULL;
	engine_result_free(&res);

	s = read_stats(f);
	assert_int_equal(s.v[STAT_CORRUPT_ENTRIES], 1);
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&st, UINT64_MAX, &size, &files, &evicted), 0);
	store_free(&st);
	assert_int_equal(files, 1);
	/* Fails while results.c drops the delta of its store_remove calls. */
	assert_int_equal(s.v[STAT_CACHE_FILES], (int64_t)files);
	assert_int_equal(s.v[STAT_CACHE_SIZE], (int64_t)size);
}

static void test_unparseable_result(void **state) { check_unparseable_entry(*state, 'r'); }

static void test_unparseable_manifest(void **state) { check_unparseable_entry(*state, 'm'); }

int main(void)
{
	struct stat st;
	if (stat(GCC, &st) != 0) {
		fprintf(stderr, "no %s: skipping\n", GCC);
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_define_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_header_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_checkout_hits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_root_keys_on_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depfile_on_miss_and_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_compile_not_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_macros_not_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warnings_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unparseable_result, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unparseable_manifest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
