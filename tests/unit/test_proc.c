/*
 * Unit tests for child processes (src/common/proc.c): stdout and stderr are
 * captured apart, exit statuses and signals map to shell exit codes, the cap
 * empties the capture and either drops or passes through the rest, a child
 * that fills both pipes at once does not deadlock, and spawn failures come
 * back as a negative errno. Children are /bin/sh scripts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "proc.h"

/* A deadlock must fail the test, not hang the suite. */
#define TEST_TIMEOUT_SECONDS 60

static int run_sh(const char *script, size_t cap, bool passthrough, struct proc_result *res)
{
	char *const argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)script, NULL };
	return proc_run_capture(argv, NULL, cap, passthrough, res);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int setup_alarm(void **state)
{
	alarm(TEST_TIMEOUT_SECONDS);
	return 0;
}

static int teardown_alarm(void **state)
{
	alarm(0);
	return 0;
}

static void test_capture_separately(void **state)
{
	struct proc_result res;
	assert_int_equal(run_sh("echo out; echo err >&2", 1 << 20, false, &res), 0);
	assert_true(WIFEXITED(res.status));
	assert_int_equal(WEXITSTATUS(res.status), 0);
	assert_int_equal(proc_exit_code(res.status), 0);
	assert_int_equal(res.out.len, 4);
	assert_string_equal(res.out.data, "out\n");
	assert_int_equal(res.err.len, 4);
	assert_string_equal(res.err.data, "err\n");
	assert_false(res.out_passed);
	assert_false(res.err_passed);
	proc_result_free(&res);
	proc_result_free(&res);
}

static void test_no_output(void **state)
{
	struct proc_result res;
	assert_int_equal(run_sh("true", 100, false, &res), 0);
	assert_int_equal(proc_exit_code(res.status), 0);
	assert_int_equal(res.out.len, 0);
	assert_int_equal(res.err.len, 0);
	assert_false(res.out_passed);
	assert_false(res.err_passed);
	proc_result_free(&res);
}

static void test_binary_output(void **state)
{
	struct proc_result res;
	assert_int_equal(run_sh("printf 'a\\000b\\377'", 100, false, &res), 0);
	assert_int_equal(res.out.len, 4);
	assert_memory_equal(res.out.data, "a\0b\377", 4);
	proc_result_free(&res);
}

static void test_exit_codes(void **state)
{
	static const struct {
		const char *script;
		int code;
	} cases[] = {
		{ "exit 0", 0 },
		{ "exit 1", 1 },
		{ "exit 3", 3 },
		{ "exit 255", 255 },
		{ "false", 1 },
		{ "kill -KILL $$", 128 + SIGKILL },
		{ "kill -TERM $$", 128 + SIGTERM },
		{ "kill -SEGV $$", 128 + SIGSEGV },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct proc_result res;
		assert_int_equal(run_sh(cases[i].script, 100, false, &res), 0);
		if (proc_exit_code(res.status) != cases[i].code)
			fail_msg("'%s': exit code %d, want %d", cases[i].script, proc_exit_code(res.status),
				 cases[i].code);
		proc_result_free(&res);
	}

	struct proc_result res;
	assert_int_equal(run_sh("kill -KILL $$", 100, false, &res), 0);
	assert_true(WIFSIGNALED(res.status));
	assert_int_equal(WTERMSIG(res.status), SIGKILL);
	proc_result_free(&res);
}

static void test_exit_code_of_statuses(void **state)
{
	/* Wait statuses as Linux encodes them. */
	assert_int_equal(proc_exit_code(0), 0);
	assert_int_equal(proc_exit_code(42 << 8), 42);
	assert_int_equal(proc_exit_code(SIGINT), 128 + SIGINT);
	assert_int_equal(proc_exit_code(SIGABRT | 0x80), 128 + SIGABRT);  /* with core dump */
	assert_int_equal(proc_exit_code((SIGSTOP << 8) | 0x7f), 1);       /* stopped */
}

static void test_cap_exact_fits(void **state)
{
	struct proc_result res;
	assert_int_equal(run_sh("printf 0123456789; printf abcde >&2", 10, false, &res), 0);
	assert_false(res.out_passed);
	assert_int_equal(res.out.len, 10);
	assert_string_equal(res.out.data, "0123456789");
	assert_false(res.err_passed);
	assert_string_equal(res.err.data, "abcde");
	proc_result_free(&res);
}

static void test_cap_drops(void **state)
{
	struct proc_result res;
	/* The first part fits, the second overflows. */
	assert_int_equal(run_sh("printf 01234; sleep 0.1; printf 56789X; echo small >&2", 10, false, &res), 0);
	assert_int_equal(proc_exit_code(res.status), 0);
	assert_true(res.out_passed);
	assert_int_equal(res.out.len, 0);
	assert_false(res.err_passed);
	assert_string_equal(res.err.data, "small\n");
	proc_result_free(&res);

	/* Much more than the cap, on stderr. */
	assert_int_equal(run_sh("head -c 100000 /dev/zero >&2; exit 7", 1000, false, &res), 0);
	assert_int_equal(proc_exit_code(res.status), 7);
	assert_true(res.err_passed);
	assert_int_equal(res.err.len, 0);
	assert_false(res.out_passed);
	assert_int_equal(res.out.len, 0);
	proc_result_free(&res);
}

static void test_cap_zero(void **state)
{
	struct proc_result res;
	assert_int_equal(run_sh("printf x", 0, false, &res), 0);
	assert_true(res.out_passed);
	assert_int_equal(res.out.len, 0);
	assert_false(res.err_passed);
	proc_result_free(&res);
}

/* Runs script with passthrough, our fds 1 and 2 redirected to files, and
 * returns what reached them. */
static void run_passthrough(const char *script, size_t cap, struct proc_result *res, struct buf *got_out,
			    struct buf *got_err)
{
	char out_path[] = "/tmp/hpcc-test-proc-out-XXXXXX", err_path[] = "/tmp/hpcc-test-proc-err-XXXXXX";
	int out_fd = mkostemp(out_path, O_CLOEXEC), err_fd = mkostemp(err_path, O_CLOEXEC);
	assert_true(out_fd >= 0);
	assert_true(err_fd >= 0);
	fflush(stdout);
	fflush(stderr);
	int saved_out = fcntl(1, F_DUPFD_CLOEXEC, 3), saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
	assert_true(saved_out >= 0);
	assert_true(saved_err >= 0);
	dup2(out_fd, 1);
	dup2(err_fd, 2);
	int r = run_sh(script, cap, true, res);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	assert_int_equal(r, 0);

	for (int i = 0; i < 2; i++) {
		int fd = i ? err_fd : out_fd;
		struct buf *b = i ? got_err : got_out;
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		char tmp[65536];
		ssize_t n;
		while ((n = read(fd, tmp, sizeof(tmp))) > 0)
			assert_int_equal(buf_append(b, tmp, (size_t)n), 0);
		assert_int_equal(n, 0);
		close(fd);
	}
	unlink(out_path);
	unlink(err_path);
}

static void test_cap_passthrough(void **state)
{
	struct proc_result res;
	_cleanup_buf_ struct buf got_out, got_err;
	buf_init(&got_out, 0);
	buf_init(&got_err, 0);
	/* stdout overflows in two writes; stderr stays within the cap. */
	run_passthrough("printf 0123456789; sleep 0.1; printf abcdefghij; sleep 0.1; printf KLM; printf warn >&2", 15,
			&res, &got_out, &got_err);
	assert_int_equal(proc_exit_code(res.status), 0);
	/* Everything reached our stdout, in order, and nothing was kept. */
	assert_true(res.out_passed);
	assert_int_equal(res.out.len, 0);
	assert_int_equal(got_out.len, 23);
	assert_string_equal(got_out.data, "0123456789abcdefghijKLM");
	/* The stream within its cap was captured and not passed on. */
	assert_false(res.err_passed);
	assert_string_equal(res.err.data, "warn");
	assert_int_equal(got_err.len, 0);
	proc_result_free(&res);
}

static void test_cap_passthrough_large(void **state)
{
	struct proc_result res;
	_cleanup_buf_ struct buf got_out, got_err;
	buf_init(&got_out, 0);
	buf_init(&got_err, 0);
	run_passthrough("i=0; while [ $i -lt 2000 ]; do echo line$i; echo eline$i >&2; i=$((i+1)); done", 1000, &res,
			&got_out, &got_err);
	assert_true(res.out_passed);
	assert_true(res.err_passed);
	assert_int_equal(res.out.len, 0);
	assert_int_equal(res.err.len, 0);
	/* Rebuild the expected output and compare byte for byte. */
	_cleanup_buf_ struct buf want_out, want_err;
	buf_init(&want_out, 0);
	buf_init(&want_err, 0);
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(buf_printf(&want_out, "line%d\n", i), 0);
		assert_int_equal(buf_printf(&want_err, "eline%d\n", i), 0);
	}
	assert_int_equal(got_out.len, want_out.len);
	assert_memory_equal(got_out.data, want_out.data, want_out.len);
	assert_int_equal(got_err.len, want_err.len);
	assert_memory_equal(got_err.data, want_err.data, want_err.len);
	proc_result_free(&res);
}

static void test_both_pipes_full(void **state)
{
	/* Far more than a pipe holds, first all on stderr and then all on
	 * stdout, then both at once: a parent that read one pipe to its end
	 * before the other would deadlock. */
	struct proc_result res;
	assert_int_equal(run_sh("head -c 1048576 /dev/zero >&2; head -c 1048577 /dev/zero", 4 << 20, false, &res), 0);
	assert_int_equal(proc_exit_code(res.status), 0);
	assert_int_equal(res.err.len, 1048576);
	assert_int_equal(res.out.len, 1048577);
	assert_false(res.out_passed);
	assert_false(res.err_passed);
	for (size_t i = 0; i < res.out.len; i++)
		if (res.out.data[i] != 0)
			fail_msg("stdout byte %zu is %d", i, res.out.data[i]);
	proc_result_free(&res);

	assert_int_equal(run_sh("head -c 3000000 /dev/zero & head -c 2000000 /dev/zero >&2; wait", 4 << 20, false, &res),
			 0);
	assert_int_equal(proc_exit_code(res.status), 0);
	assert_int_equal(res.out.len, 3000000);
	assert_int_equal(res.err.len, 2000000);
	proc_result_free(&res);
}

static void test_spawn_failures(void **state)
{
	struct proc_result res = { .status = 1234 };
	char *const missing[] = { (char *)"/nonexistent/hpcc-test-program", NULL };
	assert_int_equal(proc_run_capture(missing, NULL, 100, false, &res), -ENOENT);
	assert_int_equal(res.status, 1234);

	/* A file without execute permission (root needs an x bit too). */
	char path[] = "/tmp/hpcc-test-proc-noexec-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\necho hi\n", 18), 18);
	close(fd);
	assert_int_equal(chmod(path, 0644), 0);
	char *const noexec[] = { path, NULL };
	int r = proc_run_capture(noexec, NULL, 100, false, &res);
	unlink(path);
	assert_int_equal(r, -EACCES);
	assert_int_equal(res.status, 1234);

	/* argv[0] is a path: no search of $PATH. */
	char *const bare[] = { (char *)"sh", (char *)"-c", (char *)"true", NULL };
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(cwd >= 0);
	assert_int_equal(chdir("/"), 0);
	r = proc_run_capture(bare, NULL, 100, false, &res);
	assert_int_equal(fchdir(cwd), 0);
	close(cwd);
	assert_int_equal(r, -ENOENT);
}

static void test_environment(void **state)
{
	struct proc_result res;
	char *const argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)"echo \"[$HPCC_PROC_TEST]\"", NULL };
	char *const envp[] = { (char *)"HPCC_PROC_TEST=given", NULL };
	assert_int_equal(proc_run_capture(argv, envp, 100, false, &res), 0);
	assert_string_equal(res.out.data, "[given]\n");
	proc_result_free(&res);

	setenv("HPCC_PROC_TEST", "inherited", 1);
	assert_int_equal(proc_run_capture(argv, NULL, 100, false, &res), 0);
	unsetenv("HPCC_PROC_TEST");
	assert_string_equal(res.out.data, "[inherited]\n");
	proc_result_free(&res);

	char *const empty[] = { NULL };
	assert_int_equal(proc_run_capture(argv, empty, 100, false, &res), 0);
	assert_string_equal(res.out.data, "[]\n");
	proc_result_free(&res);
}

static void test_no_fd_leaks(void **state)
{
	int before = count_fds();
	for (int i = 0; i < 20; i++) {
		struct proc_result res;
		assert_int_equal(run_sh("echo x; echo y >&2", 1 << 10, false, &res), 0);
		proc_result_free(&res);
	}
	char *const missing[] = { (char *)"/nonexistent/hpcc-test-program", NULL };
	struct proc_result res;
	assert_int_equal(proc_run_capture(missing, NULL, 100, false, &res), -ENOENT);
	assert_int_equal(count_fds(), before);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_alarm, teardown_alarm)
	const struct CMUnitTest tests[] = {
		T(test_capture_separately),
		T(test_no_output),
		T(test_binary_output),
		T(test_exit_codes),
		cmocka_unit_test(test_exit_code_of_statuses),
		T(test_cap_exact_fits),
		T(test_cap_drops),
		T(test_cap_zero),
		T(test_cap_passthrough),
		T(test_cap_passthrough_large),
		T(test_both_pipes_full),
		T(test_spawn_failures),
		T(test_environment),
		T(test_no_fd_leaks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
