/*
 * Unit tests for the runtime registry and the unsafe-local runtime
 * (src/worker/runtime.c, src/worker/runtime_unsafe_local.c): it refuses to
 * open unless enabled, accepts only compiler names from the grammar, builds
 * an object byte-identical to a plain compile with its own prefix map, keeps
 * the test process's environment (CPATH) away from the compiler, captures
 * and caps stdout and stderr, reports exit codes, kills a hung compile at the
 * deadline without leaving a zombie, and bounds concurrent execs. The
 * compiles use the host's gcc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "proc.h"
#include "runtime.h"
#include "staging.h"
#include "testutil.h"

/* A hang must fail the test, not the suite's timeout. */
#define TEST_TIMEOUT_SECONDS 60

struct fixture {
	char *tmpdir;
	char *base;
	void *rt;
};

static char *join(const char *a, const char *b)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", a ? a : "", b ? b : "") > 0);
	return p;
}

static int setup(void **state)
{
	alarm(TEST_TIMEOUT_SECONDS);
	struct fixture *f = calloc(1, sizeof(*f));
	void *dir = NULL;
	if (!f || testutil_setup_tmpdir(&dir) < 0)
		return -1;
	f->tmpdir = dir;
	f->base = join(f->tmpdir, "staging");
	struct runtime_config cfg = { .allow_unsafe_local = true, .max_parallel = 2 };
	struct error err = { 0 };
	if (runtime_unsafe_local.open(&cfg, &f->rt, &err) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	runtime_unsafe_local.close(f->rt);
	void *dir = f->tmpdir;
	testutil_teardown_tmpdir(&dir);
	free(f->base);
	free(f);
	alarm(0);
	return 0;
}

static struct staging *new_staging(struct fixture *f)
{
	struct staging *s = NULL;
	assert_int_equal(staging_create(f->base, &s, NULL), 0);
	return s;
}

static void put(struct staging *s, const char *relpath, const char *text)
{
	struct error err = { 0 };
	assert_int_equal(staging_write_file(s, relpath, text, strlen(text), false, &err), 0);
}

static char *prefix_map(const char *dir)
{
	char *p = NULL;
	assert_true(asprintf(&p, "-ffile-prefix-map=%s=.", dir) > 0);
	return p;
}

static int run(struct fixture *f, struct staging *s, const char *const *argv, const char *cwd, int timeout_ms,
	       size_t cap, struct runtime_result *res, struct error *err)
{
	struct runtime_exec x = {
		.argv = argv,
		.staging = s,
		.cwd = cwd,
		.timeout_ms = timeout_ms,
		.max_stdout = cap,
		.max_stderr = cap,
	};
	return runtime_unsafe_local.exec(f->rt, &x, res, err);
}

static void assert_no_children(void)
{
	errno = 0;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char source[] = "#include \"inc/lib.h\"\n"
			     "int twice(int x) { return LIB_FACTOR * x; }\n"
			     "const char *where(void) { return __FILE__; }\n";
static const char header[] = "#define LIB_FACTOR 2\n";

static void test_registry(void **state)
{
	assert_ptr_equal(runtime_find("unsafe-local"), &runtime_unsafe_local);
	assert_string_equal(runtime_unsafe_local.name, "unsafe-local");
	assert_null(runtime_find("qemu-nonexistent"));
	assert_null(runtime_find(NULL));
	runtime_unsafe_local.close(NULL);
	runtime_result_free(NULL);
}

static void test_open_refusals(void **state)
{
	void *rt = NULL;
	struct error err = { 0 };
	struct runtime_config off = { 0 };
	assert_int_equal(runtime_unsafe_local.open(&off, &rt, &err), -EPERM);
	assert_non_null(strstr(err.msg, "without isolation"));
	assert_non_null(strstr(err.msg, "allow_unsafe_local = true"));
	assert_null(rt);
	const char *bad_paths[] = { "bin:/usr/bin", "/usr/bin::/bin", "/usr/bin/../sbin", "/usr/./bin", "", ":" };
	for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		struct runtime_config cfg = { .allow_unsafe_local = true, .search_path = bad_paths[i] };
		assert_int_equal(runtime_unsafe_local.open(&cfg, &rt, NULL), -EINVAL);
	}
	struct runtime_config neg = { .allow_unsafe_local = true, .max_parallel = -1 };
	assert_int_equal(runtime_unsafe_local.open(&neg, &rt, NULL), -EINVAL);
	assert_true(runtime_search_path_ok("/usr/local/bin:/usr/bin:/bin"));
	assert_true(runtime_search_path_ok("/"));
	assert_true(runtime_search_path_ok("/opt/gcc-13.2/bin"));
	assert_null(rt);
}

static void test_compiler_names(void **state)
{
	const char *good[] = { "gcc", "g++", "cc", "c++", "clang", "clang++", "g++-12", "gcc-12.2.0", "clang-16",
			       "x86_64-linux-gnu-gcc-12", "x86_64-linux-gnu-g++", "aarch64-unknown-linux-gnu-clang++-17",
			       "arm-none-eabi-gcc" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(runtime_compiler_name_ok(good[i]));
	char too_long[80];
	memset(too_long, 'a', sizeof(too_long));
	memcpy(too_long + sizeof(too_long) - 5, "-gcc", 5);
	const char *bad[] = { "/bin/gcc", "gcc;rm", "python3", "../gcc", "", "gcc-", "gcc-12-", "gcc-x", "gcc-.1",
			      "-gcc", "x86_64-gcc", "x86_64-linux-gcc", "a-b-c-d-e-gcc", "X86_64-linux-gnu-gcc",
			      "gcc 12", "gcc\n", "cpp", "ld", "gcc-12-gcc", too_long };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(runtime_compiler_name_ok(bad[i]));
	assert_false(runtime_compiler_name_ok(NULL));
}

static void test_exec_refusals(void **state)
{
	struct fixture *f = *state;
	struct staging *s = new_staging(f);
	put(s, "a.c", "int x;\n");
	const char *names[] = { "/bin/gcc", "gcc;rm", "python3", "../gcc", "sh" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *argv[] = { names[i], "-c", "a.c", NULL };
		struct runtime_result res;
		struct error err = { 0 };
		assert_int_equal(run(f, s, argv, "", 5000, 4096, &res, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "compiler name"));
	}
	const char *argv[] = { "gcc", "-c", "a.c", NULL };
	struct runtime_result res;
	struct error err = { 0 };
	/* Unsafe or missing working directories. */
	assert_int_equal(run(f, s, argv, "../", 5000, 4096, &res, NULL), -EINVAL);
	assert_int_equal(run(f, s, argv, "/tmp", 5000, 4096, &res, NULL), -EINVAL);
	assert_int_equal(run(f, s, argv, "missing", 5000, 4096, &res, NULL), -ENOENT);
	assert_int_equal(run(f, s, argv, "a.c", 5000, 4096, &res, NULL), -ENOTDIR);
	assert_int_equal(run(f, s, argv, "", 0, 4096, &res, NULL), -EINVAL);
	/* Only SOURCE_DATE_EPOCH may be passed in. */
	const char *bad_env[][3] = { { "LD_PRELOAD=/tmp/x.so", NULL, NULL },
				     { "SOURCE_DATE_EPOCH=1x", NULL, NULL },
				     { "SOURCE_DATE_EPOCH=", NULL, NULL },
				     { "SOURCE_DATE_EPOCH=1", "SOURCE_DATE_EPOCH=2", NULL },
				     { "PATH=/tmp", NULL, NULL } };
	for (size_t i = 0; i < sizeof(bad_env) / sizeof(bad_env[0]); i++) {
		struct runtime_exec x = { .argv = argv, .env = bad_env[i], .staging = s, .timeout_ms = 5000 };
		assert_int_equal(runtime_unsafe_local.exec(f->rt, &x, &res, &err), -EINVAL);
	}
	/* A compiler name that passes the grammar but is not installed. */
	const char *absent[] = { "riscv64-hpcc_test-linux-gcc-99", NULL };
	error_clear(&err);
	assert_int_equal(run(f, s, absent, "", 5000, 4096, &res, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not found"));
	assert_no_children();
	staging_destroy(s);
}

static void test_compile_matches_plain(void **state)
{
	struct fixture *f = *state;
	struct staging *s = new_staging(f);
	put(s, "src/a.c", source);
	put(s, "src/inc/lib.h", header);
	char *map = prefix_map(staging_root(s));
	const char *argv[] = { "gcc", "-g", "-O1", "-c", "a.c", "-o", "a.o", map, NULL };
	struct runtime_result res;
	struct error err = { 0 };
	assert_int_equal(run(f, s, argv, "src", 10000, 1 << 16, &res, &err), 0);
	assert_int_equal(res.exit_code, 0);
	assert_false(res.timed_out);
	assert_int_equal(res.err.len, 0);
	assert_int_equal(res.out.len, 0);
	assert_non_null(res.out.data);
	assert_true(res.duration_us > 0);
	runtime_result_free(&res);
	struct buf obj;
	buf_init(&obj, 0);
	assert_int_equal(staging_read_file(s, "src/a.o", 1 << 20, &obj, &err), 0);
	assert_true(obj.len > 0);

	/* The same compile done plainly elsewhere, with its own prefix map. */
	char *plain = join(f->tmpdir, "plain");
	char *plain_src = join(plain, "src");
	char *plain_inc = join(plain, "src/inc");
	assert_int_equal(fs_mkdir_p(plain_inc, 0755), 0);
	char *p = join(plain_src, "a.c");
	assert_int_equal(fs_write_atomic(p, source, strlen(source), 0644, false), 0);
	free(p);
	p = join(plain_inc, "lib.h");
	assert_int_equal(fs_write_atomic(p, header, strlen(header), 0644, false), 0);
	free(p);
	char *script = NULL;
	assert_true(asprintf(&script, "cd '%s' && exec gcc -g -O1 -c a.c -o a.o '-ffile-prefix-map=%s=.'", plain_src,
			     plain) > 0);
	char *const sh[] = { (char *)"/bin/sh", (char *)"-c", script, NULL };
	char *const envp[] = { (char *)"PATH=/usr/local/bin:/usr/bin:/bin", (char *)"LC_ALL=C", NULL };
	struct proc_result pres;
	assert_int_equal(proc_run_capture(sh, envp, 1 << 16, false, &pres), 0);
	assert_int_equal(proc_exit_code(pres.status), 0);
	proc_result_free(&pres);
	struct buf ref;
	buf_init(&ref, 0);
	p = join(plain_src, "a.o");
	assert_int_equal(fs_read_file(p, 1 << 20, &ref), 0);
	free(p);
	assert_int_equal(obj.len, ref.len);
	assert_memory_equal(obj.data, ref.data, obj.len);
	/* The staging root does not appear in the object. */
	assert_null(memmem(obj.data, obj.len, staging_root(s), strlen(staging_root(s))));
	buf_free(&obj);
	buf_free(&ref);
	free(script);
	free(plain);
	free(plain_src);
	free(plain_inc);
	free(map);
	assert_no_children();
	staging_destroy(s);
}

static void test_environment_is_not_inherited(void **state)
{
	struct fixture *f = *state;
	/* A header that only CPATH from the test's own environment can find. */
	char *cpath = join(f->tmpdir, "cpath");
	assert_int_equal(mkdir(cpath, 0755), 0);
	char *h = join(cpath, "only_in_cpath.h");
	assert_int_equal(fs_write_atomic(h, "int from_cpath;\n", 16, 0644, false), 0);
	assert_int_equal(setenv("CPATH", cpath, 1), 0);

	struct staging *s = new_staging(f);
	put(s, "a.c", "#include <only_in_cpath.h>\nint main(void) { return from_cpath; }\n");
	/* Proof that the header is reachable through CPATH for a plain compile. */
	char *script = NULL;
	assert_true(asprintf(&script, "exec gcc -fsyntax-only '%s/a.c'", staging_root(s)) > 0);
	char *const sh[] = { (char *)"/bin/sh", (char *)"-c", script, NULL };
	struct proc_result pres;
	assert_int_equal(proc_run_capture(sh, NULL, 1 << 16, false, &pres), 0);
	assert_int_equal(proc_exit_code(pres.status), 0);
	proc_result_free(&pres);

	/* A variable that breaks any gcc that sees it: the compile below fails
	 * on the missing header alone. */
	assert_int_equal(setenv("GCC_EXEC_PREFIX", "/nonexistent/", 1), 0);
	const char *argv[] = { "gcc", "-fsyntax-only", "a.c", NULL };
	struct runtime_result res;
	assert_int_equal(run(f, s, argv, ".", 10000, 1 << 16, &res, NULL), 0);
	assert_int_equal(res.exit_code, 1);
	assert_non_null(strstr(res.err.data, "only_in_cpath.h"));
	assert_null(strstr(res.err.data, "cc1"));
	runtime_result_free(&res);

	/* SOURCE_DATE_EPOCH is passed on, and stdout is captured. */
	put(s, "date.c", "const char *d = __DATE__ \" \" __TIME__;\n");
	const char *env[] = { "SOURCE_DATE_EPOCH=0", NULL };
	const char *pp[] = { "gcc", "-E", "-P", "date.c", NULL };
	struct runtime_exec x = { .argv = pp, .env = env, .staging = s, .timeout_ms = 10000,
				  .max_stdout = 4096, .max_stderr = 4096 };
	assert_int_equal(runtime_unsafe_local.exec(f->rt, &x, &res, NULL), 0);
	assert_int_equal(res.exit_code, 0);
	assert_non_null(strstr(res.out.data, "\"Jan  1 1970\" \" \" \"00:00:00\""));
	runtime_result_free(&res);

	unsetenv("CPATH");
	unsetenv("GCC_EXEC_PREFIX");
	free(script);
	free(cpath);
	free(h);
	assert_no_children();
	staging_destroy(s);
}

static void test_stderr_capture_and_exit_codes(void **state)
{
	struct fixture *f = *state;
	struct staging *s = new_staging(f);
	put(s, "warn.c", "#warning hpcc-test-warning\nint x;\n");
	put(s, "bad.c", "int main( {\n");
	const char *warn[] = { "gcc", "-c", "warn.c", NULL };
	struct runtime_result res;
	assert_int_equal(run(f, s, warn, "", 10000, 1 << 16, &res, NULL), 0);
	assert_int_equal(res.exit_code, 0);
	assert_non_null(strstr(res.err.data, "hpcc-test-warning"));
	assert_false(res.stderr_truncated);
	runtime_result_free(&res);

	assert_int_equal(run(f, s, warn, "", 10000, 16, &res, NULL), 0);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(res.err.len, 16);
	assert_true(res.stderr_truncated);
	runtime_result_free(&res);

	assert_int_equal(run(f, s, warn, "", 10000, 0, &res, NULL), 0);
	assert_int_equal(res.err.len, 0);
	assert_non_null(res.err.data);
	assert_true(res.stderr_truncated);
	runtime_result_free(&res);

	const char *bad[] = { "gcc", "-c", "bad.c", NULL };
	assert_int_equal(run(f, s, bad, "", 10000, 1 << 16, &res, NULL), 0);
	assert_int_equal(res.exit_code, 1);
	assert_false(res.timed_out);
	assert_non_null(strstr(res.err.data, "error"));
	runtime_result_free(&res);
	assert_no_children();
	staging_destroy(s);
}

static void test_timeout_kills_group(void **state)
{
	struct fixture *f = *state;
	struct staging *s = new_staging(f);
	/* cc1 blocks opening a FIFO that nobody writes. */
	char *fifo = join(staging_root(s), "fifo.h");
	assert_int_equal(mkfifo(fifo, 0644), 0);
	put(s, "hang.c", "#include \"fifo.h\"\n");
	const char *argv[] = { "gcc", "-c", "hang.c", NULL };
	struct runtime_result res;
	int64_t t0 = now_ms();
	assert_int_equal(run(f, s, argv, "", 1000, 4096, &res, NULL), 0);
	int64_t elapsed = now_ms() - t0;
	assert_true(res.timed_out);
	assert_int_equal(res.exit_code, 128 + SIGKILL);
	assert_true(elapsed >= 1000);
	assert_true(elapsed < 2000);
	runtime_result_free(&res);
	assert_no_children();
	/* cc1, the grandchild that held the FIFO open, is gone too: a FIFO
	 * without a reader refuses a non-blocking writer. */
	errno = 0;
	assert_int_equal(open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC), -1);
	assert_int_equal(errno, ENXIO);
	free(fifo);
	staging_destroy(s);
}

struct job {
	struct fixture *f;
	int index;
	int rc;
	int exit_code;
	size_t obj_len;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	struct staging *s = NULL;
	j->rc = staging_create(j->f->base, &s, NULL);
	if (j->rc < 0)
		return NULL;
	char src[128];
	snprintf(src, sizeof(src), "int job%d(int x) { return x * %d; }\n", j->index, j->index + 1);
	j->rc = staging_write_file(s, "j.c", src, strlen(src), false, NULL);
	const char *argv[] = { "gcc", "-O2", "-c", "j.c", "-o", "j.o", NULL };
	struct runtime_exec x = { .argv = argv, .staging = s, .timeout_ms = 20000,
				  .max_stdout = 4096, .max_stderr = 4096 };
	struct runtime_result res;
	if (j->rc == 0)
		j->rc = runtime_unsafe_local.exec(j->f->rt, &x, &res, NULL);
	if (j->rc == 0) {
		j->exit_code = res.exit_code;
		runtime_result_free(&res);
		struct buf obj;
		buf_init(&obj, 0);
		j->rc = staging_read_file(s, "j.o", 1 << 20, &obj, NULL);
		j->obj_len = obj.len;
		buf_free(&obj);
	}
	staging_destroy(s);
	return NULL;
}

static void test_parallel_execs(void **state)
{
	struct fixture *f = *state;
	pthread_t threads[4];
	struct job jobs[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct job){ .f = f, .index = i, .rc = -1 };
		assert_int_equal(pthread_create(&threads[i], NULL, job_run, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(jobs[i].rc, 0);
		assert_int_equal(jobs[i].exit_code, 0);
		assert_true(jobs[i].obj_len > 0);
	}
	assert_no_children();
}

struct held_exec {
	void *rt;
	struct staging *s;
	int rc;
	struct runtime_result res;
};

static void *held_exec_run(void *arg)
{
	struct held_exec *h = arg;
	const char *argv[] = { "gcc", "-c", "hold.c", NULL };
	struct runtime_exec x = { .argv = argv, .staging = h->s, .timeout_ms = 20000, .max_stdout = 4096,
				  .max_stderr = 4096 };
	h->rc = runtime_unsafe_local.exec(h->rt, &x, &h->res, NULL);
	return NULL;
}

static void test_slot_limit(void **state)
{
	struct fixture *f = *state;
	void *rt = NULL;
	struct runtime_config cfg = { .allow_unsafe_local = true, .max_parallel = 1 };
	assert_int_equal(runtime_unsafe_local.open(&cfg, &rt, NULL), 0);
	struct staging *s = new_staging(f);
	char *fifo = join(staging_root(s), "fifo.h");
	assert_int_equal(mkfifo(fifo, 0644), 0);
	put(s, "hold.c", "#include \"fifo.h\"\nint held;\n");
	put(s, "quick.c", "int quick;\n");

	/* The one slot is held by a compile that waits on the FIFO for as long
	 * as the test keeps the write end open without writing. */
	struct held_exec h = { .rt = rt, .s = s, .rc = -1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, held_exec_run, &h), 0);
	int wfd = -1;
	for (int i = 0; i < 1000 && wfd < 0; i++) {
		wfd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);  /* ENXIO until cc1 opened it */
		if (wfd < 0)
			usleep(10000);
	}
	assert_true(wfd >= 0);

	/* A second exec cannot get a slot, and gives up at its deadline. */
	const char *argv[] = { "gcc", "-c", "quick.c", NULL };
	struct runtime_exec x = { .argv = argv, .staging = s, .timeout_ms = 300, .max_stdout = 64,
				  .max_stderr = 64 };
	struct runtime_result res;
	struct error err = { 0 };
	int64_t t0 = now_ms();
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, &err), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 300);
	assert_non_null(strstr(err.msg, "slot"));

	/* Releasing the FIFO lets the first compile finish, and frees the slot. */
	close(wfd);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(h.rc, 0);
	assert_int_equal(h.res.exit_code, 0);
	assert_false(h.res.timed_out);
	runtime_result_free(&h.res);
	x.timeout_ms = 10000;
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, NULL), 0);
	assert_int_equal(res.exit_code, 0);
	runtime_result_free(&res);
	free(fifo);
	staging_destroy(s);
	runtime_unsafe_local.close(rt);
	assert_no_children();
}

static void put_host_script(const char *dir, const char *name, const char *text)
{
	char *p = join(dir, name);
	assert_int_equal(fs_write_atomic(p, text, strlen(text), 0755, false), 0);
	assert_int_equal(chmod(p, 0755), 0);
	free(p);
}

/* Fake compilers in a search path of the test's own show what the child
 * gets: exactly the environment, the working directory, the limits and
 * stdin; how a failed execve is reported; and that a process the compiler
 * leaves behind in its group does not hold the exec up. */
static void test_fake_compilers(void **state)
{
	struct fixture *f = *state;
	char *bin = join(f->tmpdir, "fakebin");
	assert_int_equal(mkdir(bin, 0755), 0);
	char *gcc = join(bin, "gcc");
	assert_int_equal(symlink("/usr/bin/env", gcc), 0);
	put_host_script(bin, "cc", "#!/bin/sh\n"
				   "echo \"cwd=$(pwd)\"\n"
				   "echo \"limits=$(ulimit -t) $(ulimit -f) $(ulimit -c)\"\n"
				   "echo \"stdin=$(/bin/cat)\"\n"
				   "echo \"args=$*\"\n"
				   "echo oops >&2\n"
				   "exit 3\n");
	put_host_script(bin, "c++", "#!/nonexistent/interpreter\n");
	put_host_script(bin, "clang", "#!/bin/sh\n/bin/sleep 30 &\necho started\n");
	void *rt = NULL;
	struct runtime_config cfg = { .allow_unsafe_local = true, .search_path = bin, .max_parallel = 1 };
	assert_int_equal(runtime_unsafe_local.open(&cfg, &rt, NULL), 0);
	struct staging *s = new_staging(f);
	assert_int_equal(staging_mkdir(s, "sub/dir", NULL), 0);
	assert_int_equal(setenv("HPCC_TEST_MARKER", "leaked", 1), 0);

	const char *env_argv[] = { "gcc", NULL };
	const char *sde[] = { "SOURCE_DATE_EPOCH=1700000000", NULL };
	struct runtime_exec x = { .argv = env_argv, .env = sde, .staging = s, .timeout_ms = 5000,
				  .max_stdout = 1 << 16, .max_stderr = 1 << 16 };
	struct runtime_result res;
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, NULL), 0);
	assert_int_equal(res.exit_code, 0);
	char *want = NULL;
	assert_true(asprintf(&want, "PATH=%s\nLC_ALL=C\nTZ=UTC\nHOME=%s\nTMPDIR=%s\nSOURCE_DATE_EPOCH=1700000000\n", bin,
			     staging_tmp(s), staging_tmp(s)) > 0);
	assert_string_equal(res.out.data, want);
	free(want);
	runtime_result_free(&res);

	const char *cc_argv[] = { "cc", "-c", "a b.c", NULL };
	x = (struct runtime_exec){ .argv = cc_argv, .staging = s, .cwd = "sub/dir", .timeout_ms = 5000,
				   .max_stdout = 1 << 16, .max_stderr = 1 << 16 };
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, NULL), 0);
	assert_int_equal(res.exit_code, 3);
	assert_false(res.timed_out);
	assert_true(asprintf(&want, "cwd=%s/sub/dir\nlimits=6 2097152 0\nstdin=\nargs=-c a b.c\n", staging_root(s)) > 0);
	assert_string_equal(res.out.data, want);
	assert_string_equal(res.err.data, "oops\n");
	free(want);
	runtime_result_free(&res);

	const char *bad_argv[] = { "c++", NULL };
	x.argv = bad_argv;
	struct error err = { 0 };
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "cannot start"));

	const char *bg_argv[] = { "clang", NULL };
	x.argv = bg_argv;
	x.timeout_ms = 10000;
	int64_t t0 = now_ms();
	assert_int_equal(runtime_unsafe_local.exec(rt, &x, &res, NULL), 0);
	assert_true(now_ms() - t0 < 2000);
	assert_int_equal(res.exit_code, 0);
	assert_false(res.timed_out);
	assert_string_equal(res.out.data, "started\n");
	runtime_result_free(&res);

	unsetenv("HPCC_TEST_MARKER");
	runtime_unsafe_local.close(rt);
	staging_destroy(s);
	free(bin);
	free(gcc);
	assert_no_children();
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_registry),
		T(test_open_refusals),
		T(test_compiler_names),
		T(test_exec_refusals),
		T(test_compile_matches_plain),
		T(test_environment_is_not_inherited),
		T(test_stderr_capture_and_exit_codes),
		T(test_timeout_kills_group),
		T(test_parallel_execs),
		T(test_slot_limit),
		T(test_fake_compilers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
