/*
 * Tests of hpcc-agent (src/agent/) in its test mode: the real binary
 * serves a Unix socket with "/" as the compilers' root (the host's own gcc
 * runs, as a compile uid of the exec's own from a range this process picks),
 * and this file plays the host, frame by frame, with protobuf-c. Covered:
 * the hello; a compile whose object equals a plain gcc -c byte for byte;
 * the pinned environment, user and priority; stderr and exit code of a
 * failing compile; two execs interleaved on one stream; the vCPU queue and
 * the "busy" limit; timeout; output cap, also against sparse outputs whose
 * sizes wrap a 64-bit sum; cancel; a process one exec leaves behind, which
 * must neither touch another exec's files nor outlive its own exec; staging
 * parents that another user could change; frames for an exec whose outputs
 * are being sent; an output that shrinks while it is sent; a host that
 * writes without reading; every hostile input we could think of (paths,
 * headers, chunk order, sizes, symlinked and FIFO outputs, unknown and
 * duplicate ids, n_inputs mismatches) and the framing errors that make the
 * agent stop. After each test the agent must not have crashed and every
 * staging directory must be gone.
 *
 * With HPCC_TEST_AGENT_SOCKET set, one more test drives an agent that
 * already runs behind that socket instead of spawning one: the boot test
 * (guest/agent-boot-test.sh) points it at QEMU's chardev socket; with
 * HPCC_TEST_AGENT_GCC also set, that test compiles with the image's gcc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "frame.h"
#include "testutil.h"

#define READ_TIMEOUT_MS 60000
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_FILES 8

struct agent_proc {
	pid_t pid;
	int fd;
	unsigned uid_base; /* the agent's compile uids start here */
	char dir[64];      /* test directory, removed at the end */
	char stage[96];    /* parent of every staging directory of the test */
};

struct reply {
	uint64_t id;
	bool have_result, complete;
	int exit_code;
	bool timed_out, truncated;
	char *error;
	int64_t duration_us;
	uint32_t n_outputs;
	char *out, *err;
	size_t out_len, err_len;
	struct {
		char *path;
		uint8_t *data;
		size_t len, size;
		bool executable, done;
	} files[MAX_FILES];
	size_t n_files;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *agent_binary(void)
{
	static char path[4096];
	const char *b = getenv("HPCC_TEST_BUILDDIR");

	if (!b)
		return NULL;
	snprintf(path, sizeof(path), "%s/hpcc-agent", b);
	return path;
}

static int connect_unix(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t end = now_ms() + timeout_ms;

	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		if (now_ms() > end)
			return -1;
		usleep(10000);
	}
}

static Hpcc__V1__AgentFrame *read_frame(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	Hpcc__V1__AgentFrame *f;
	uint8_t *body = NULL;
	size_t len = 0;

	assert_int_equal(poll(&p, 1, READ_TIMEOUT_MS), 1);
	assert_int_equal(frame_read(fd, FRAME_MAX_DEFAULT, &body, &len), 0);
	f = hpcc__v1__agent_frame__unpack(NULL, len, body);
	free(body);
	assert_non_null(f);
	return f;
}

static void send_frame(int fd, Hpcc__V1__AgentFrame *f)
{
	size_t len = hpcc__v1__agent_frame__get_packed_size(f);
	uint8_t *buf = malloc(len ? len : 1);

	assert_non_null(buf);
	hpcc__v1__agent_frame__pack(f, buf);
	assert_int_equal(frame_write(fd, buf, len), 0);
	free(buf);
}

static unsigned expect_hello(int fd, unsigned vcpus)
{
	Hpcc__V1__AgentFrame *f = read_frame(fd);
	unsigned got;

	assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_HELLO);
	assert_int_equal(f->exec_id, 0);
	assert_true(f->hello->network_ok);
	assert_string_equal(f->hello->version, HPCC_VERSION);
	if (vcpus)
		assert_int_equal(f->hello->vcpus, vcpus);
	else
		assert_true(f->hello->vcpus >= 1);
	got = f->hello->vcpus;
	hpcc__v1__agent_frame__free_unpacked(f, NULL);
	return got;
}

/* The agent kills every process of its compile uids at the end of each
 * run: each test process takes a range of its own, far from the uids of
 * real users and of the usual subordinate ranges (100000 + 65536 * n), so
 * that agents of tests running side by side never meet. */
static unsigned test_uid_base(void)
{
	return 1000000000u + (unsigned)(getpid() % 400000) * 2048u;
}

static void start_agent_opts(struct agent_proc *p, unsigned vcpus, bool quiet)
{
	const char *bin = agent_binary();
	char sock[128], n[16], base[16];

	if (geteuid() != 0)
		skip();
	assert_non_null(bin);
	snprintf(p->dir, sizeof(p->dir), "/tmp/hpcc-agent-test-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	/* The compile user must be able to reach its staging directory. */
	assert_int_equal(chmod(p->dir, 0755), 0);
	snprintf(p->stage, sizeof(p->stage), "%s/stage", p->dir);
	snprintf(sock, sizeof(sock), "%s/agent.sock", p->dir);
	snprintf(n, sizeof(n), "%u", vcpus);
	p->uid_base = test_uid_base();
	snprintf(base, sizeof(base), "%u", p->uid_base);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		if (quiet) { /* a test that makes the agent log an error per frame */
			int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
			if (fd >= 0)
				dup2(fd, 2);
		}
		execl(bin, bin, "--serve-unix", sock, "--root", "/", "--vcpus", n, "--uid-base", base, (char *)NULL);
		_exit(127);
	}
	p->fd = connect_unix(sock, 10000);
	assert_true(p->fd >= 0);
	expect_hello(p->fd, vcpus);
}

static void start_agent(struct agent_proc *p, unsigned vcpus)
{
	start_agent_opts(p, vcpus, false);
}

/* Waits for the agent to exit; its exit status, or -1 if it was killed. */
static int wait_agent(struct agent_proc *p, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid)
			break;
		if (now_ms() > end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &status, 0);
			fail_msg("the agent did not exit within %d ms", timeout_ms);
		}
		usleep(5000);
	}
	p->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Every staging directory is gone. */
static void assert_staging_clean(struct agent_proc *p)
{
	assert_int_equal(count_entries(p->stage), 0);
}

/* Closes the stream: the agent exits 0, leaving no staging directory. */
static void stop_agent(struct agent_proc *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (p->pid > 0)
		assert_int_equal(wait_agent(p, 20000), 0);
	assert_staging_clean(p);
	testutil_rm_rf(p->dir);
}

static char *staging_name(struct agent_proc *p, const char *name)
{
	char *s = NULL;
	assert_true(asprintf(&s, "%s/%s", p->stage, name) > 0);
	return s;
}

struct header_spec {
	const char *const *argv;
	const char *const *outputs;
	const char *env;      /* one entry or NULL */
	const char *cwd;
	const char *staging;  /* absolute */
	unsigned n_inputs;
	unsigned timeout_ms;  /* default 60 s */
	uint64_t max_output;  /* default 16 MiB */
};

static size_t strv_len(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static void send_header(int fd, uint64_t id, const struct header_spec *s)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__ExecHeader h = HPCC__V1__EXEC_HEADER__INIT;
	char *env[1] = { (char *)s->env };

	h.n_argv = strv_len(s->argv);
	h.argv = (char **)s->argv;
	h.n_env = s->env ? 1 : 0;
	h.env = env;
	h.cwd = (char *)(s->cwd ? s->cwd : "");
	h.timeout_ms = s->timeout_ms ? s->timeout_ms : 60000;
	h.max_output = s->max_output ? s->max_output : 16u << 20;
	h.n_outputs = strv_len(s->outputs);
	h.outputs = (char **)s->outputs;
	h.n_inputs = s->n_inputs;
	h.staging = (char *)s->staging;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HEADER;
	f.header = &h;
	send_frame(fd, &f);
}

/* One FileChunk; path and size only when first. */
static void send_chunk(int fd, uint64_t id, const char *path, uint64_t size, const void *data, size_t len, bool last,
		       bool executable)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__FileChunk c = HPCC__V1__FILE_CHUNK__INIT;

	c.path = (char *)(path ? path : "");
	c.size = size;
	c.data.data = (uint8_t *)data;
	c.data.len = len;
	c.last = last;
	c.executable = executable;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_INPUT;
	f.input = &c;
	send_frame(fd, &f);
}

static void send_file(int fd, uint64_t id, const char *path, const char *text)
{
	send_chunk(fd, id, path, strlen(text), text, strlen(text), true, false);
}

static void send_cancel(int fd, uint64_t id)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__Cancel c = HPCC__V1__CANCEL__INIT;

	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_CANCEL;
	f.cancel = &c;
	send_frame(fd, &f);
}

static void append(char **buf, size_t *len, const uint8_t *p, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	assert_non_null(*buf);
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void reply_take(struct reply *r, const Hpcc__V1__AgentFrame *f)
{
	switch (f->kind_case) {
	case HPCC__V1__AGENT_FRAME__KIND_STDIO:
		assert_false(r->have_result);
		assert_true(f->stdio->fd == 1 || f->stdio->fd == 2);
		if (f->stdio->fd == 1)
			append(&r->out, &r->out_len, f->stdio->data.data, f->stdio->data.len);
		else
			append(&r->err, &r->err_len, f->stdio->data.data, f->stdio->data.len);
		break;
	case HPCC__V1__AGENT_FRAME__KIND_RESULT:
		assert_false(r->have_result);
		r->have_result = true;
		r->exit_code = f->result->exit_code;
		r->timed_out = f->result->timed_out;
		r->truncated = f->result->output_truncated;
		r->duration_us = f->result->duration_us;
		r->n_outputs = f->result->n_outputs;
		r->error = f->result->error[0] ? strdup(f->result->error) : NULL;
		assert_true(r->n_outputs <= MAX_FILES);
		r->complete = r->n_outputs == 0;
		break;
	case HPCC__V1__AGENT_FRAME__KIND_OUTPUT: {
		const Hpcc__V1__FileChunk *c = f->output;
		assert_true(r->have_result);
		if (r->n_files == 0 || r->files[r->n_files - 1].done) {
			assert_true(r->n_files < r->n_outputs);
			assert_true(c->path[0] != '\0');
			r->files[r->n_files].path = strdup(c->path);
			r->files[r->n_files].size = c->size;
			r->files[r->n_files].executable = c->executable;
			r->n_files++;
		} else if (c->path[0])
			assert_string_equal(c->path, r->files[r->n_files - 1].path);
		{
			char *buf = (char *)r->files[r->n_files - 1].data;
			append(&buf, &r->files[r->n_files - 1].len, c->data.data, c->data.len);
			r->files[r->n_files - 1].data = (uint8_t *)buf;
		}
		assert_true(r->files[r->n_files - 1].len <= r->files[r->n_files - 1].size);
		if (c->last) {
			assert_int_equal(r->files[r->n_files - 1].len, r->files[r->n_files - 1].size);
			r->files[r->n_files - 1].done = true;
			r->complete = r->n_files == r->n_outputs;
		}
		break;
	}
	default:
		fail_msg("unexpected frame kind %d from the agent", (int)f->kind_case);
	}
}

/* Reads frames until every reply is complete; frames must belong to them. */
static void collect(int fd, struct reply *rs, size_t n)
{
	for (;;) {
		size_t done = 0;
		Hpcc__V1__AgentFrame *f;
		struct reply *r = NULL;

		for (size_t i = 0; i < n; i++)
			done += rs[i].complete;
		if (done == n)
			return;
		f = read_frame(fd);
		for (size_t i = 0; i < n; i++)
			if (rs[i].id == f->exec_id)
				r = &rs[i];
		if (!r)
			fail_msg("a frame for exec %llu, which the test does not wait for", (unsigned long long)f->exec_id);
		assert_false(r->complete);
		reply_take(r, f);
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
}

static void reply_free(struct reply *r)
{
	free(r->error);
	free(r->out);
	free(r->err);
	for (size_t i = 0; i < r->n_files; i++) {
		free(r->files[i].path);
		free(r->files[i].data);
	}
	memset(r, 0, sizeof(*r));
}

static struct reply wait_reply(int fd, uint64_t id)
{
	struct reply r = { .id = id };
	collect(fd, &r, 1);
	return r;
}

/* Reads frames, filing each under its reply, until rs[which] is complete
 * (the others may still be open). */
static void collect_until(int fd, struct reply *rs, size_t n, size_t which)
{
	while (!rs[which].complete) {
		Hpcc__V1__AgentFrame *f = read_frame(fd);
		struct reply *r = NULL;

		for (size_t i = 0; i < n; i++)
			if (rs[i].id == f->exec_id)
				r = &rs[i];
		if (!r)
			fail_msg("a frame for exec %llu, which the test does not wait for", (unsigned long long)f->exec_id);
		assert_false(r->complete);
		reply_take(r, f);
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
}

/* A field of /proc/<pid>/status ("State", "Uid"), or NULL if the process
 * is gone. */
static char *proc_status_field(const char *pid, const char *key)
{
	char path[64], line[256];
	char *value = NULL;
	size_t klen = strlen(key);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	while (!value && fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			value = strdup(line + klen + 1 + strspn(line + klen + 1, " \t"));
	fclose(f);
	return value;
}

/* True if pid is gone or a zombie (its parent has not reaped it yet). */
static bool proc_dead(pid_t pid)
{
	char name[16], *state;
	bool dead;

	snprintf(name, sizeof(name), "%d", (int)pid);
	state = proc_status_field(name, "State");
	dead = !state || state[0] == 'Z' || state[0] == 'X';
	free(state);
	return dead;
}

/* How many processes that are not zombies have uid as their real uid. */
static size_t live_processes_of(unsigned uid)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char *uids, *state;
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		uids = proc_status_field(de->d_name, "Uid");
		state = proc_status_field(de->d_name, "State");
		if (uids && state && strtoul(uids, NULL, 10) == uid && state[0] != 'Z' && state[0] != 'X')
			n++;
		free(uids);
		free(state);
	}
	closedir(d);
	return n;
}

/* An error result for id whose message contains want. */
static void expect_error(int fd, uint64_t id, const char *want)
{
	struct reply r = wait_reply(fd, id);

	if (!r.error || !strstr(r.error, want))
		fail_msg("exec %llu: expected an error with '%s', got '%s'", (unsigned long long)id, want,
			 r.error ? r.error : "(none)");
	assert_int_equal(r.exit_code, 127);
	assert_int_equal(r.n_outputs, 0);
	reply_free(&r);
}

/* A trivial exec that must work: proves the agent is still serving. */
static void expect_alive(struct agent_proc *p, uint64_t id)
{
	const char *argv[] = { "sh", "-c", "echo alive", NULL };
	char *stg = staging_name(p, "alive");
	struct header_spec s = { .argv = argv, .staging = stg };
	struct reply r;

	send_header(p->fd, id, &s);
	r = wait_reply(p->fd, id);
	assert_null(r.error);
	assert_int_equal(r.exit_code, 0);
	assert_string_equal(r.out, "alive\n");
	reply_free(&r);
	free(stg);
}

static const char tiny_c[] = "int twice(int x) { return 2 * x; }\n"
			     "const char *where(void) { return __FILE__; }\n";

/* gcc -c in dir, as the host would run it. */
static void plain_gcc(const char *dir, const char *const *args)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		if (chdir(dir) < 0)
			_exit(126);
		execvp("gcc", (char *const *)args);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0, n;

	assert_non_null(f);
	do {
		cap += 65536;
		buf = realloc(buf, cap);
		assert_non_null(buf);
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	*ret_len = len;
	return buf;
}

static void test_hello(void **state)
{
	struct agent_proc p;

	start_agent(&p, 2);
	stop_agent(&p);
}

static void test_compile_matches_plain_gcc(void **state)
{
	struct agent_proc p;
	char *stg, *map = NULL, *plain_dir = NULL, *plain_c = NULL, *plain_o = NULL;
	const char *outputs[] = { "root/sub/a.o", NULL };
	struct reply r;
	uint8_t *want;
	size_t want_len;
	FILE *f;

	start_agent(&p, 2);
	stg = staging_name(&p, "exec-Ab12Cd");
	assert_true(asprintf(&map, "-ffile-prefix-map=%s/root=.", stg) > 0);
	{
		const char *argv[] = { "gcc", "-O2", "-g", map, "-c", "a.c", "-o", "a.o", NULL };
		struct header_spec s = { .argv = argv, .outputs = outputs, .cwd = "sub", .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 1, &s);
		/* Two chunks, the second without a path. */
		send_chunk(p.fd, 1, "root/sub/a.c", strlen(tiny_c), tiny_c, 10, false, false);
		send_chunk(p.fd, 1, NULL, 0, tiny_c + 10, strlen(tiny_c) - 10, true, false);
	}
	r = wait_reply(p.fd, 1);
	assert_null(r.error);
	assert_int_equal(r.exit_code, 0);
	assert_false(r.timed_out);
	assert_false(r.truncated);
	assert_true(r.duration_us > 0);
	assert_int_equal(r.n_outputs, 1);
	assert_string_equal(r.files[0].path, "root/sub/a.o");

	/* The same compile on the host, in a project of its own (plain/ for
	 * root/, in its sub/), with the same prefix map for that project. */
	assert_true(asprintf(&plain_dir, "%s/plain", p.dir) > 0);
	assert_int_equal(mkdir(plain_dir, 0755), 0);
	assert_true(asprintf(&plain_c, "%s/sub", plain_dir) > 0);
	assert_int_equal(mkdir(plain_c, 0755), 0);
	free(plain_c);
	assert_true(asprintf(&plain_c, "%s/sub/a.c", plain_dir) > 0);
	assert_true(asprintf(&plain_o, "%s/sub/a.o", plain_dir) > 0);
	f = fopen(plain_c, "w");
	assert_non_null(f);
	fputs(tiny_c, f);
	fclose(f);
	free(map);
	assert_true(asprintf(&map, "-ffile-prefix-map=%s=.", plain_dir) > 0);
	{
		const char *args[] = { "gcc", "-O2", "-g", map, "-c", "a.c", "-o", "a.o", NULL };
		char *sub = NULL;
		assert_true(asprintf(&sub, "%s/sub", plain_dir) > 0);
		plain_gcc(sub, args);
		free(sub);
	}
	want = slurp(plain_o, &want_len);
	assert_int_equal(r.files[0].len, want_len);
	assert_memory_equal(r.files[0].data, want, want_len);
	free(want);
	reply_free(&r);
	stop_agent(&p);
	free(stg);
	free(map);
	free(plain_dir);
	free(plain_c);
	free(plain_o);
}

static void test_pinned_environment_and_user(void **state)
{
	const char *argv[] = { "sh", "-c",
			       "echo \"$PATH|$LC_ALL|$TZ|$HOME|$TMPDIR|$SOURCE_DATE_EPOCH|$(id -u):$(id -g)|$(pwd)\";"
			       "test -w \"$TMPDIR\" && echo tmp-writable; id -G; echo nice=$(nice);"
			       "stat -c %a:%u ../ . ../tmp; echo done",
			       NULL };
	const char *outputs[] = { "tmp/t.txt", NULL };
	struct agent_proc p;
	char *stg, *want = NULL;
	struct reply r;

	start_agent(&p, 1);
	stg = staging_name(&p, "env");
	{
		struct header_spec s = { .argv = argv, .outputs = outputs, .staging = stg, .env = "SOURCE_DATE_EPOCH=1234",
					 .cwd = "." };
		send_header(p.fd, 7, &s);
	}
	r = wait_reply(p.fd, 7);
	assert_null(r.error);
	assert_int_equal(r.exit_code, 0);
	/* The first exec gets the first compile uid, as its gid too and
	 * with no supplementary groups; it runs at nice 10. The staging
	 * directory is root's (0711), root/ and tmp/ the exec's own (0700). */
	assert_true(asprintf(&want,
			     "/usr/local/bin:/usr/bin:/bin|C|UTC|%s/tmp|%s/tmp|1234|%u:%u|%s/root\n"
			     "tmp-writable\n%u\nnice=10\n711:0\n700:%u\n700:%u\ndone\n",
			     stg, stg, p.uid_base, p.uid_base, stg, p.uid_base, p.uid_base, p.uid_base) > 0);
	assert_string_equal(r.out, want);
	reply_free(&r);
	free(want);

	/* Without SOURCE_DATE_EPOCH it is 0; an output under tmp/ comes back. */
	{
		const char *argv2[] = { "sh", "-c", "echo $SOURCE_DATE_EPOCH; echo hi > \"$TMPDIR/t.txt\"", NULL };
		struct header_spec s = { .argv = argv2, .outputs = outputs, .staging = stg };
		send_header(p.fd, 8, &s);
	}
	r = wait_reply(p.fd, 8);
	assert_null(r.error);
	assert_string_equal(r.out, "0\n");
	assert_int_equal(r.n_outputs, 1);
	assert_string_equal(r.files[0].path, "tmp/t.txt");
	assert_int_equal(r.files[0].len, 3);
	assert_memory_equal(r.files[0].data, "hi\n", 3);
	reply_free(&r);
	stop_agent(&p);
	free(stg);
}

static void test_failing_compile(void **state)
{
	const char *argv[] = { "gcc", "-c", "bad.c", "-o", "bad.o", NULL };
	const char *outputs[] = { "root/bad.o", NULL };
	struct agent_proc p;
	char *stg;
	struct reply r;

	start_agent(&p, 2);
	stg = staging_name(&p, "bad");
	{
		struct header_spec s = { .argv = argv, .outputs = outputs, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 3, &s);
		send_file(p.fd, 3, "root/bad.c", "int f(void) { return }\n");
	}
	r = wait_reply(p.fd, 3);
	assert_null(r.error); /* the compiler ran: its failure is not the agent's */
	assert_int_equal(r.exit_code, 1);
	assert_int_equal(r.n_outputs, 0);
	assert_non_null(r.err);
	assert_non_null(strstr(r.err, "error"));
	assert_null(r.out);
	reply_free(&r);

	/* A command that does not exist is the agent's failure. */
	{
		const char *argv2[] = { "no-such-compiler-xyz", "-c", "a.c", NULL };
		struct header_spec s = { .argv = argv2, .staging = stg };
		send_header(p.fd, 4, &s);
		expect_error(p.fd, 4, "cannot run the command");
	}
	/* So is a working directory that does not exist. */
	{
		const char *argv3[] = { "true", NULL };
		struct header_spec s = { .argv = argv3, .staging = stg, .cwd = "no/such/dir" };
		send_header(p.fd, 5, &s);
		expect_error(p.fd, 5, "working directory");
	}
	stop_agent(&p);
	free(stg);
}

static void test_interleaved_execs(void **state)
{
	const char *argv[] = { "gcc", "-c", "a.c", "-o", "a.o", NULL };
	const char *outputs[] = { "root/a.o", NULL };
	const char *src1 = "int one(void) { return 1; }\n", *src2 = "int two(void) { return 2; }\n";
	struct reply rs[2] = { { .id = 11 }, { .id = 12 } };
	struct agent_proc p;
	char *stg1, *stg2;

	start_agent(&p, 2);
	stg1 = staging_name(&p, "exec-1");
	stg2 = staging_name(&p, "exec-2");
	{
		struct header_spec s1 = { .argv = argv, .outputs = outputs, .staging = stg1, .n_inputs = 2 };
		struct header_spec s2 = { .argv = argv, .outputs = outputs, .staging = stg2, .n_inputs = 2 };
		send_header(p.fd, 11, &s1);
		send_header(p.fd, 12, &s2);
		send_chunk(p.fd, 12, "root/a.c", strlen(src2), src2, 5, false, false);
		send_chunk(p.fd, 11, "root/a.c", strlen(src1), src1, 3, false, false);
		send_chunk(p.fd, 12, "root/a.c", 0, src2 + 5, strlen(src2) - 5, true, false);
		send_chunk(p.fd, 11, NULL, 0, src1 + 3, strlen(src1) - 3, true, false);
		send_file(p.fd, 11, "root/inc/x.h", "/* x */\n");
		send_file(p.fd, 12, "root/inc/y.h", "/* y */\n");
	}
	collect(p.fd, rs, 2);
	for (int i = 0; i < 2; i++) {
		assert_null(rs[i].error);
		assert_int_equal(rs[i].exit_code, 0);
		assert_int_equal(rs[i].n_outputs, 1);
		assert_true(rs[i].files[0].len > 0);
	}
	/* Different sources, different objects. */
	assert_true(rs[0].files[0].len != rs[1].files[0].len ||
		    memcmp(rs[0].files[0].data, rs[1].files[0].data, rs[0].files[0].len) != 0);
	reply_free(&rs[0]);
	reply_free(&rs[1]);
	stop_agent(&p);
	free(stg1);
	free(stg2);
}

static void test_queue_and_busy(void **state)
{
	const char *sleeper[] = { "sh", "-c", "sleep 0.4", NULL };
	struct reply rs[2] = { { .id = 21 }, { .id = 22 } };
	struct agent_proc p;
	char *stg[6];
	int64_t t0;

	start_agent(&p, 1);
	for (int i = 0; i < 6; i++) {
		char name[16];
		snprintf(name, sizeof(name), "q%d", i);
		stg[i] = staging_name(&p, name);
	}
	/* One vCPU: the second run waits for the first. */
	t0 = now_ms();
	for (int i = 0; i < 2; i++) {
		struct header_spec s = { .argv = sleeper, .staging = stg[i] };
		send_header(p.fd, 21 + (uint64_t)i, &s);
	}
	collect(p.fd, rs, 2);
	assert_true(now_ms() - t0 >= 780);
	for (int i = 0; i < 2; i++) {
		assert_null(rs[i].error);
		assert_int_equal(rs[i].exit_code, 0);
		reply_free(&rs[i]);
	}
	/* At most 4 live execs per vCPU: the fifth header is refused. */
	for (int i = 0; i < 5; i++) {
		struct header_spec s = { .argv = sleeper, .staging = stg[i], .n_inputs = 1 };
		send_header(p.fd, 30 + (uint64_t)i, &s);
	}
	expect_error(p.fd, 34, "busy");
	for (int i = 0; i < 4; i++) {
		send_cancel(p.fd, 30 + (uint64_t)i);
		expect_error(p.fd, 30 + (uint64_t)i, "cancelled");
	}
	expect_alive(&p, 40);
	stop_agent(&p);
	for (int i = 0; i < 6; i++)
		free(stg[i]);
}

static void test_timeout(void **state)
{
	const char *argv[] = { "sleep", "5", NULL };
	struct agent_proc p;
	char *stg;
	struct reply r;
	int64_t t0;

	start_agent(&p, 2);
	stg = staging_name(&p, "slow");
	{
		struct header_spec s = { .argv = argv, .staging = stg, .timeout_ms = 300 };
		t0 = now_ms();
		send_header(p.fd, 9, &s);
	}
	r = wait_reply(p.fd, 9);
	assert_true(now_ms() - t0 < 3000);
	assert_null(r.error);
	assert_true(r.timed_out);
	assert_int_equal(r.exit_code, 128 + SIGKILL);
	assert_true(r.duration_us >= 300000);
	reply_free(&r);

	/* A process that leaves its group behind and keeps the pipe open
	 * does not hold the result back. */
	{
		const char *argv2[] = { "sh", "-c", "(sleep 30 &) ; echo started", NULL };
		struct header_spec s = { .argv = argv2, .staging = stg, .timeout_ms = 20000 };
		t0 = now_ms();
		send_header(p.fd, 10, &s);
		r = wait_reply(p.fd, 10);
		assert_true(now_ms() - t0 < 5000);
		assert_int_equal(r.exit_code, 0);
		assert_string_equal(r.out, "started\n");
		reply_free(&r);
	}
	stop_agent(&p);
	free(stg);
}

static void test_output_cap(void **state)
{
	const char *chatty[] = { "sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo done >&2", NULL };
	const char *big[] = { "sh", "-c", "echo 12345; head -c 5000 /dev/zero > big; echo x > small", NULL };
	const char *outputs[] = { "root/big", "root/small", NULL };
	struct agent_proc p;
	char *stg;
	struct reply r;

	start_agent(&p, 2);
	stg = staging_name(&p, "cap");
	{
		struct header_spec s = { .argv = chatty, .staging = stg, .max_output = 1000 };
		send_header(p.fd, 1, &s);
	}
	r = wait_reply(p.fd, 1);
	assert_null(r.error);
	assert_true(r.truncated);
	assert_true(r.out_len + r.err_len <= 1000);
	assert_int_equal(r.exit_code, 0);
	reply_free(&r);

	/* Outputs over what is left of the budget: none is sent. */
	{
		struct header_spec s = { .argv = big, .outputs = outputs, .staging = stg, .max_output = 4000 };
		send_header(p.fd, 2, &s);
	}
	r = wait_reply(p.fd, 2);
	assert_null(r.error);
	assert_true(r.truncated);
	assert_int_equal(r.n_outputs, 0);
	assert_string_equal(r.out, "12345\n");
	reply_free(&r);

	/* Exactly within the budget: both come back, stdout counted. */
	{
		struct header_spec s = { .argv = big, .outputs = outputs, .staging = stg, .max_output = 5008 };
		send_header(p.fd, 3, &s);
	}
	r = wait_reply(p.fd, 3);
	assert_false(r.truncated);
	assert_int_equal(r.n_outputs, 2);
	assert_int_equal(r.files[0].len, 5000);
	assert_string_equal(r.files[1].path, "root/small");
	reply_free(&r);

	/* An output over one chunk (1 MiB) arrives in several chunks. */
	{
		const char *huge[] = { "sh", "-c", "head -c 2500000 /dev/urandom > big", NULL };
		const char *out1[] = { "root/big", NULL };
		struct header_spec s = { .argv = huge, .outputs = out1, .staging = stg, .max_output = 3000000 };
		send_header(p.fd, 4, &s);
	}
	r = wait_reply(p.fd, 4);
	assert_int_equal(r.n_outputs, 1);
	assert_int_equal(r.files[0].len, 2500000);
	reply_free(&r);
	stop_agent(&p);
	free(stg);
}

static void test_hostile_paths(void **state)
{
	static const char *const bad_inputs[] = {
		"../x", "/abs", "root/../../x", "tmp/x", "root/./x", "root//x", "root/", "root", "x", "root/a/..",
	};
	const char *argv[] = { "true", NULL };
	struct agent_proc p;
	char *stg;
	uint64_t id = 100;

	start_agent(&p, 2);
	stg = staging_name(&p, "hostile");
	for (size_t i = 0; i < ARRAY_SIZE(bad_inputs); i++, id++) {
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, id, &s);
		send_file(p.fd, id, bad_inputs[i], "x");
		expect_error(p.fd, id, "");
		/* Late chunks of a failed exec are dropped quietly. */
		send_file(p.fd, id, "root/late.c", "x");
	}
	/* The same file twice. */
	{
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 2 };
		send_header(p.fd, id, &s);
		send_file(p.fd, id, "root/a.c", "x");
		send_file(p.fd, id, "root/a.c", "y");
		expect_error(p.fd, id++, "cannot create input root/a.c");
	}
	/* A file below a name that is already a file. */
	{
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 2 };
		send_header(p.fd, id, &s);
		send_file(p.fd, id, "root/a.c", "x");
		send_file(p.fd, id, "root/a.c/b.c", "y");
		expect_error(p.fd, id++, "cannot create input");
	}
	/* Bad headers: each refused with a reason, nothing created. */
	{
		const char *slash[] = { "/bin/true", NULL };
		const char *empty[] = { "", NULL };
		const char *bad_out[] = { "etc/passwd", NULL };
		const char *bad_out2[] = { "root/../x", NULL };
		const char *dup_out[] = { "root/a", "root/a", NULL };
		char *long_staging = NULL;
		struct {
			struct header_spec s;
			const char *want;
		} cases[] = {
			{ { .argv = slash, .staging = stg }, "bare command name" },
			{ { .argv = empty, .staging = stg }, "bare command name" },
			{ { .argv = NULL, .staging = stg }, "argv has 0 entries" },
			{ { .argv = argv, .staging = stg, .env = "LD_PRELOAD=/x.so" }, "environment refused" },
			{ { .argv = argv, .staging = stg, .env = "SOURCE_DATE_EPOCH=12a" }, "environment refused" },
			{ { .argv = argv, .staging = stg, .cwd = "../x" }, "'..'" },
			{ { .argv = argv, .staging = stg, .cwd = "/etc" }, "absolute" },
			{ { .argv = argv, .staging = stg, .outputs = bad_out }, "not under root/ or tmp/" },
			{ { .argv = argv, .staging = stg, .outputs = bad_out2 }, "'..'" },
			{ { .argv = argv, .staging = stg, .outputs = dup_out }, "twice" },
			{ { .argv = argv, .staging = "relative/x" }, "not an absolute path" },
			{ { .argv = argv, .staging = "/" }, "not an absolute path" },
			{ { .argv = argv, .staging = "/tmp/../etc" }, "not normalised" },
			{ { .argv = argv, .staging = "/tmp//x" }, "not normalised" },
			{ { .argv = argv, .staging = "/tmp/x/" }, "not normalised" },
			{ { .argv = argv, .staging = "/tmp/a b" }, "character outside" },
			{ { .argv = argv, .staging = "/proc/self" }, "under /proc" },
			{ { .argv = argv, .staging = "/dev/shm/x" }, "under /dev" },
			{ { .argv = argv, .staging = "/sys" }, "under /sys" },
			{ { .argv = argv, .staging = stg, .n_inputs = 70000 }, "inputs announced" },
		};
		assert_true(asprintf(&long_staging, "/tmp/%0300d", 0) > 0);
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++, id++) {
			send_header(p.fd, id, &cases[i].s);
			expect_error(p.fd, id, cases[i].want);
		}
		{ /* timeout 0, which send_header() would replace */
			Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
			Hpcc__V1__ExecHeader h = HPCC__V1__EXEC_HEADER__INIT;
			h.n_argv = 1;
			h.argv = (char **)argv;
			h.staging = stg;
			f.exec_id = id;
			f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HEADER;
			f.header = &h;
			send_frame(p.fd, &f);
			expect_error(p.fd, id++, "timeout_ms is 0");
		}
		{
			struct header_spec s = { .argv = argv, .staging = long_staging };
			send_header(p.fd, id, &s);
			expect_error(p.fd, id++, "not an absolute path");
		}
		free(long_staging);
	}
	assert_staging_clean(&p);
	expect_alive(&p, id++);
	stop_agent(&p);
	free(stg);
}

static void test_hostile_outputs(void **state)
{
	const char *link_out[] = { "sh", "-c", "ln -s /etc/passwd a.o; ln -s /etc sub; mkfifo fifo; mkdir d", NULL };
	const char *outputs[] = { "root/a.o", "root/sub/passwd", "root/fifo", "root/d", "root/missing", NULL };
	const char *swap_dir[] = { "sh", "-c", "mkdir real; echo secret > real/o; mv real real2; ln -s /etc real",
				   NULL };
	const char *outputs2[] = { "root/real/o", "root/real/passwd", NULL };
	struct agent_proc p;
	char *stg;
	struct reply r;

	start_agent(&p, 2);
	stg = staging_name(&p, "outs");
	{
		struct header_spec s = { .argv = link_out, .outputs = outputs, .staging = stg };
		send_header(p.fd, 1, &s);
	}
	r = wait_reply(p.fd, 1);
	/* Symlinks, FIFOs and directories simply do not exist as outputs. */
	assert_null(r.error);
	assert_int_equal(r.exit_code, 0);
	assert_int_equal(r.n_outputs, 0);
	reply_free(&r);

	{
		struct header_spec s = { .argv = swap_dir, .outputs = outputs2, .staging = stg };
		send_header(p.fd, 2, &s);
	}
	r = wait_reply(p.fd, 2);
	assert_null(r.error);
	assert_int_equal(r.n_outputs, 0);
	reply_free(&r);
	stop_agent(&p);
	free(stg);
}

static void test_chunk_order(void **state)
{
	const char *argv[] = { "true", NULL };
	struct agent_proc p;
	char *stg;

	start_agent(&p, 2);
	stg = staging_name(&p, "order");
	{ /* Two files interleaved within one exec. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 2 };
		send_header(p.fd, 1, &s);
		send_chunk(p.fd, 1, "root/a.c", 4, "ab", 2, false, false);
		send_chunk(p.fd, 1, "root/b.c", 4, "cd", 2, false, false);
		expect_error(p.fd, 1, "interleaved");
		send_chunk(p.fd, 1, NULL, 0, "ef", 2, true, false); /* late: dropped */
	}
	{ /* More bytes than announced. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 2, &s);
		send_chunk(p.fd, 2, "root/a.c", 3, "abcd", 4, true, false);
		expect_error(p.fd, 2, "larger than");
	}
	{ /* Fewer bytes than announced. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 3, &s);
		send_chunk(p.fd, 3, "root/a.c", 5, "abcd", 4, true, false);
		expect_error(p.fd, 3, "shorter");
	}
	{ /* A continuation chunk with no file started. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 4, &s);
		send_chunk(p.fd, 4, NULL, 0, "ab", 2, true, false);
		expect_error(p.fd, 4, "without a path");
	}
	{ /* An input file over the limit. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 5, &s);
		send_chunk(p.fd, 5, "root/a.c", 1ull << 40, "ab", 2, false, false);
		expect_error(p.fd, 5, "over the limit");
	}
	{ /* A frame only the agent sends. */
		Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
		Hpcc__V1__StdioChunk sc = HPCC__V1__STDIO_CHUNK__INIT;
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 6, &s);
		f.exec_id = 6;
		f.kind_case = HPCC__V1__AGENT_FRAME__KIND_STDIO;
		f.stdio = &sc;
		send_frame(p.fd, &f);
		expect_error(p.fd, 6, "unexpected frame");
	}
	{ /* An executable input keeps its mode; the exec sees it. */
		const char *run[] = { "sh", "-c", "./tool.sh", NULL };
		struct header_spec s = { .argv = run, .staging = stg, .n_inputs = 1 };
		struct reply r;
		send_header(p.fd, 7, &s);
		send_chunk(p.fd, 7, "root/tool.sh", 22, "#!/bin/sh\necho tool-ok", 22, true, true);
		r = wait_reply(p.fd, 7);
		assert_null(r.error);
		assert_string_equal(r.out, "tool-ok\n");
		reply_free(&r);
	}
	expect_alive(&p, 8);
	stop_agent(&p);
	free(stg);
}

static void test_unknown_and_duplicate_ids(void **state)
{
	const char *argv[] = { "true", NULL };
	const char *sleeper[] = { "sleep", "30", NULL };
	struct agent_proc p;
	char *stg, *stg2;

	start_agent(&p, 2);
	stg = staging_name(&p, "dup");
	stg2 = staging_name(&p, "dup2");
	send_file(p.fd, 99, "root/a.c", "x");
	expect_error(p.fd, 99, "unknown exec");
	send_cancel(p.fd, 98);
	expect_error(p.fd, 98, "unknown exec");
	{ /* id 0 is the hello's */
		struct header_spec s = { .argv = argv, .staging = stg };
		send_header(p.fd, 0, &s);
		expect_error(p.fd, 0, "reserved");
	}
	{ /* A second header for a live exec ends it. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 5, &s);
		send_header(p.fd, 5, &s);
		expect_error(p.fd, 5, "second header");
	}
	{ /* ... also while it runs. */
		struct header_spec s = { .argv = sleeper, .staging = stg };
		send_header(p.fd, 6, &s);
		send_header(p.fd, 6, &s);
		expect_error(p.fd, 6, "second header");
	}
	{ /* Two live execs may not share a staging directory. */
		struct header_spec s = { .argv = argv, .staging = stg2, .n_inputs = 1 };
		send_header(p.fd, 7, &s);
		send_header(p.fd, 8, &s);
		expect_error(p.fd, 8, "in use");
		/* ... nor nest one inside the other, either way round. */
		{
			char *inner = NULL, *outer = strdup(p.stage);
			struct header_spec in = { .argv = argv, .n_inputs = 1 }, out = in;
			assert_true(asprintf(&inner, "%s/inner", stg2) > 0);
			in.staging = inner;
			out.staging = outer;
			send_header(p.fd, 9, &in);
			expect_error(p.fd, 9, "in use");
			send_header(p.fd, 10, &out);
			expect_error(p.fd, 10, "in use");
			free(inner);
			free(outer);
		}
		send_cancel(p.fd, 7);
		expect_error(p.fd, 7, "cancelled");
	}
	/* A finished id may be used again. */
	expect_alive(&p, 5);
	expect_alive(&p, 5);
	stop_agent(&p);
	free(stg);
	free(stg2);
}

static void test_n_inputs_mismatch(void **state)
{
	const char *argv[] = { "sleep", "2", NULL };
	struct agent_proc p;
	char *stg;

	start_agent(&p, 2);
	stg = staging_name(&p, "count");
	{ /* Fewer inputs than announced: refused at the exec's deadline. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 2, .timeout_ms = 400 };
		send_header(p.fd, 1, &s);
		send_file(p.fd, 1, "root/a.c", "x");
		expect_error(p.fd, 1, "only 1 of 2 inputs");
	}
	{ /* More inputs than announced: the run is stopped. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 1 };
		send_header(p.fd, 2, &s);
		send_file(p.fd, 2, "root/a.c", "x");
		send_file(p.fd, 2, "root/b.c", "y");
		expect_error(p.fd, 2, "after all 1 inputs");
	}
	expect_alive(&p, 3);
	stop_agent(&p);
	free(stg);
}

static void test_cancel(void **state)
{
	const char *argv[] = { "sh", "-c", "echo started; sleep 30", NULL };
	struct agent_proc p;
	char *stg;
	int64_t t0;

	start_agent(&p, 2);
	stg = staging_name(&p, "cancel");
	{
		struct header_spec s = { .argv = argv, .staging = stg };
		Hpcc__V1__AgentFrame *f;
		send_header(p.fd, 1, &s);
		/* Wait until it runs. */
		f = read_frame(p.fd);
		assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_STDIO);
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
		t0 = now_ms();
		send_cancel(p.fd, 1);
		expect_error(p.fd, 1, "cancelled");
		assert_true(now_ms() - t0 < 2000);
		/* A second cancel, for a finished exec: nothing. */
		send_cancel(p.fd, 1);
	}
	{ /* Cancel while staging. */
		struct header_spec s = { .argv = argv, .staging = stg, .n_inputs = 3 };
		send_header(p.fd, 2, &s);
		send_file(p.fd, 2, "root/a.c", "x");
		send_cancel(p.fd, 2);
		expect_error(p.fd, 2, "cancelled");
	}
	assert_staging_clean(&p);
	expect_alive(&p, 3);
	stop_agent(&p);
	free(stg);
}

/* The review's scenario: exec A leaves a process in a session of its own
 * that, a second later, overwrites exec B's input, while B (running at the
 * same time) waits two seconds and then reads it. A's leftover must be dead
 * by the time A's result arrives (its pid comes back in A's output), and
 * could not have written into B's files anyway: every exec has its own uid. */
static void test_leftover_cannot_touch_other_exec(void **state)
{
	const char *argv_b[] = { "sh", "-c", "sleep 2; cat in.c; id -u", NULL };
	const char *outputs_a[] = { "tmp/pid", NULL };
	struct reply rs[2] = { { .id = 1 }, { .id = 2 } };
	struct agent_proc p;
	char *stg_a, *stg_b, *cmd_a = NULL;
	unsigned uid_a, uid_b;
	pid_t leftover;

	start_agent(&p, 2);
	stg_a = staging_name(&p, "exec-A");
	stg_b = staging_name(&p, "exec-B");
	{
		struct header_spec s = { .argv = argv_b, .staging = stg_b, .n_inputs = 1 };
		send_header(p.fd, 1, &s);
		send_file(p.fd, 1, "root/in.c", "int honest;\n");
	}
	assert_true(asprintf(&cmd_a,
			     "setsid sh -c 'sleep 1; echo tampered > %s/root/in.c; echo tampered >> %s/root/in.c' "
			     "</dev/null >/dev/null 2>&1 & echo $! > \"$TMPDIR/pid\"; id -u",
			     stg_b, stg_b) > 0);
	{
		const char *argv_a[] = { "sh", "-c", cmd_a, NULL };
		struct header_spec s = { .argv = argv_a, .outputs = outputs_a, .staging = stg_a };
		send_header(p.fd, 2, &s);
	}
	/* A ends at once; B still sleeps. */
	collect_until(p.fd, rs, 2, 1);
	assert_false(rs[0].have_result);
	assert_null(rs[1].error);
	assert_int_equal(rs[1].exit_code, 0);
	assert_int_equal(rs[1].n_outputs, 1);
	leftover = (pid_t)strtol((const char *)rs[1].files[0].data, NULL, 10);
	assert_true(leftover > 1);
	uid_a = (unsigned)strtoul(rs[1].out, NULL, 10);
	assert_true(uid_a >= p.uid_base && uid_a < p.uid_base + 2048);
	assert_true(proc_dead(leftover));
	assert_int_equal(live_processes_of(uid_a), 0);

	collect(p.fd, rs, 2);
	assert_null(rs[0].error);
	assert_int_equal(rs[0].exit_code, 0);
	assert_non_null(rs[0].out);
	assert_memory_equal(rs[0].out, "int honest;\n", strlen("int honest;\n"));
	uid_b = (unsigned)strtoul(rs[0].out + strlen("int honest;\n"), NULL, 10);
	assert_true(uid_b >= p.uid_base && uid_b != uid_a);
	reply_free(&rs[0]);
	reply_free(&rs[1]);

	/* Once no run is active, a leftover dies just the same; its uid
	 * then serves the next exec. */
	{
		const char *argv[] = { "sh", "-c", "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $!", NULL };
		struct header_spec s = { .argv = argv, .staging = stg_a };
		struct reply r;
		send_header(p.fd, 3, &s);
		r = wait_reply(p.fd, 3);
		assert_int_equal(r.exit_code, 0);
		leftover = (pid_t)strtol(r.out, NULL, 10);
		assert_true(leftover > 1);
		assert_true(proc_dead(leftover));
		reply_free(&r);
	}
	expect_alive(&p, 4);
	stop_agent(&p);
	free(cmd_a);
	free(stg_a);
	free(stg_b);
}

/* Outputs whose sizes add up past 2^64 (sparse files on a tmpfs, which
 * allows 2^63 - 1 bytes): the sum must not wrap below the budget. */
static void test_sparse_outputs_over_budget(void **state)
{
	const char *argv[] = { "sh", "-c", "truncate -s 9223372036854775807 a b && echo ab > c", NULL };
	const char *outputs[] = { "root/a", "root/b", "root/c", NULL };
	const char *one[] = { "root/a", NULL };
	struct agent_proc p;
	char *mnt = NULL, *stg = NULL;
	struct reply r;

	start_agent(&p, 2);
	assert_true(asprintf(&mnt, "%s/sparse", p.dir) > 0);
	assert_int_equal(mkdir(mnt, 0755), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "mode=0755,size=16m") < 0) {
		stop_agent(&p);
		free(mnt);
		skip(); /* no mount allowed here */
	}
	assert_true(asprintf(&stg, "%s/x", mnt) > 0);
	{
		struct header_spec s = { .argv = argv, .outputs = outputs, .staging = stg };
		send_header(p.fd, 1, &s);
	}
	r = wait_reply(p.fd, 1);
	assert_null(r.error);
	assert_int_equal(r.exit_code, 0);
	assert_true(r.truncated);
	assert_int_equal(r.n_outputs, 0);
	reply_free(&r);
	{
		struct header_spec s = { .argv = argv, .outputs = one, .staging = stg };
		send_header(p.fd, 2, &s);
	}
	r = wait_reply(p.fd, 2);
	assert_true(r.truncated);
	assert_int_equal(r.n_outputs, 0);
	reply_free(&r);
	expect_alive(&p, 3);
	assert_int_equal(count_entries(mnt), 0);
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	stop_agent(&p);
	free(mnt);
	free(stg);
}

/* Starts an exec whose one output (root/big, 20 MB) is far larger than
 * what the agent queues, and reads up to its result: the agent then waits,
 * with the exec's outputs half sent, until the test reads on. */
static void start_big_output(struct agent_proc *p, uint64_t id, const char *stg, struct reply *r)
{
	const char *argv[] = { "sh", "-c", "head -c 20000000 /dev/zero > big", NULL };
	const char *outputs[] = { "root/big", NULL };
	struct header_spec s = { .argv = argv, .outputs = outputs, .staging = stg, .max_output = 32u << 20 };

	*r = (struct reply){ .id = id };
	send_header(p->fd, id, &s);
	while (!r->have_result) {
		Hpcc__V1__AgentFrame *f = read_frame(p->fd);
		assert_int_equal(f->exec_id, id);
		reply_take(r, f);
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
	assert_null(r->error);
	assert_int_equal(r->n_outputs, 1);
}

/* Once the result is out, the outputs follow it to the end: a second
 * header, an input chunk, a frame of the wrong kind or a cancel for the
 * exec are ignored, not answered with a second result. */
static void test_frames_while_sending(void **state)
{
	struct agent_proc p;
	char *stg;
	struct reply r;

	start_agent(&p, 2);
	stg = staging_name(&p, "sending");
	start_big_output(&p, 1, stg, &r);
	{
		const char *argv[] = { "true", NULL };
		struct header_spec s = { .argv = argv, .staging = stg };
		Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
		Hpcc__V1__StdioChunk sc = HPCC__V1__STDIO_CHUNK__INIT;
		send_header(p.fd, 1, &s);
		send_file(p.fd, 1, "root/late.c", "x");
		f.exec_id = 1;
		f.kind_case = HPCC__V1__AGENT_FRAME__KIND_STDIO;
		f.stdio = &sc;
		send_frame(p.fd, &f);
		send_cancel(p.fd, 1);
	}
	collect(p.fd, &r, 1);
	assert_int_equal(r.files[0].len, 20000000);
	assert_int_equal(r.files[0].size, 20000000);
	reply_free(&r);
	expect_alive(&p, 2);
	stop_agent(&p);
	free(stg);
}

/* An output that shrinks after the result announced its size (here the
 * test truncates it, as root; no process of the exec is left to do it):
 * the agent never sends a short file as if it were complete, it stops. */
static void test_output_shrinks_while_sent(void **state)
{
	struct agent_proc p;
	char *stg, *big = NULL;
	struct reply r;
	size_t got = 0;

	start_agent(&p, 2);
	stg = staging_name(&p, "shrink");
	start_big_output(&p, 1, stg, &r);
	assert_true(asprintf(&big, "%s/root/big", stg) > 0);
	assert_int_equal(truncate(big, 1000), 0);
	for (;;) {
		struct pollfd pf = { .fd = p.fd, .events = POLLIN };
		Hpcc__V1__AgentFrame *f;
		uint8_t *body = NULL;
		size_t len = 0;

		assert_int_equal(poll(&pf, 1, READ_TIMEOUT_MS), 1);
		if (frame_read(p.fd, FRAME_MAX_DEFAULT, &body, &len) < 0)
			break; /* the agent stopped */
		f = hpcc__v1__agent_frame__unpack(NULL, len, body);
		free(body);
		assert_non_null(f);
		assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_OUTPUT);
		assert_false(f->output->last);
		got += f->output->data.len;
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
	assert_true(got < 20000000);
	assert_int_equal(wait_agent(&p, 10000), 1);
	close(p.fd);
	p.fd = -1;
	assert_staging_clean(&p);
	testutil_rm_rf(p.dir);
	reply_free(&r);
	free(big);
	free(stg);
}

/* Staging parents that someone other than root could change are refused:
 * world-writable (not sticky), owned by another user, or made by another
 * user inside a sticky directory before the agent got there. Sticky,
 * root-owned directories like /tmp are fine. */
static void test_staging_parents_root_only(void **state)
{
	static const struct {
		const char *dir;
		mode_t mode;
		uid_t owner;
		const char *staging;
	} bad[] = {
		{ "ww", 0777, 0, "ww/x" },
		{ "ww2", 0777, 0, "ww2/sub/x" },
		{ "other", 0755, 12345, "other/x" },
		{ "sticky/evil", 0755, 12345, "sticky/evil/x" },
		{ "group", 0775, 0, "group/x" },
	};
	const char *argv[] = { "sh", "-c", "echo ok", NULL };
	struct agent_proc p;
	uint64_t id = 1;
	char *path = NULL;

	start_agent(&p, 2);
	assert_true(asprintf(&path, "%s/sticky", p.dir) > 0);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(chmod(path, 01777), 0);
	free(path);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++, id++) {
		struct header_spec s = { .argv = argv };
		char *stg = NULL;
		assert_true(asprintf(&path, "%s/%s", p.dir, bad[i].dir) > 0);
		assert_int_equal(mkdir(path, 0755), 0);
		assert_int_equal(chmod(path, bad[i].mode), 0);
		assert_int_equal(chown(path, bad[i].owner, bad[i].owner), 0);
		assert_true(asprintf(&stg, "%s/%s", p.dir, bad[i].staging) > 0);
		s.staging = stg;
		send_header(p.fd, id, &s);
		expect_error(p.fd, id, "not root's alone");
		/* Nothing was made in it. */
		assert_int_equal(count_entries(path), 0);
		free(path);
		free(stg);
	}
	{
		struct header_spec s = { .argv = argv };
		char *stg = NULL;
		struct reply r;
		assert_true(asprintf(&stg, "%s/sticky/fine/x", p.dir) > 0);
		s.staging = stg;
		send_header(p.fd, id, &s);
		r = wait_reply(p.fd, id++);
		assert_null(r.error);
		assert_string_equal(r.out, "ok\n");
		reply_free(&r);
		free(stg);
	}
	expect_alive(&p, id);
	stop_agent(&p);
}

/* A host that sends without reading: every cancel for an unknown id earns
 * an error result, and the agent must stop reading once its queue is at
 * the cap (8 MiB) instead of growing it. Then the host reads: every frame
 * is answered, and the agent serves on. */
static void test_host_not_reading(void **state)
{
	const size_t n = 300000;
	size_t frame_len[2], off = 0, answered = 0, stalled_at = 0;
	uint8_t *stream, frame[32];
	struct agent_proc p;
	int fl;

	start_agent_opts(&p, 1, true);
	/* All cancels, for ids 1000000.. (same encoded length each). */
	{
		Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
		Hpcc__V1__Cancel c = HPCC__V1__CANCEL__INIT;
		f.kind_case = HPCC__V1__AGENT_FRAME__KIND_CANCEL;
		f.cancel = &c;
		f.exec_id = 1000000;
		frame_len[0] = hpcc__v1__agent_frame__get_packed_size(&f);
		frame_len[1] = FRAME_HEADER_LEN + frame_len[0];
		stream = malloc(n * frame_len[1]);
		assert_non_null(stream);
		for (size_t i = 0; i < n; i++) {
			f.exec_id = 1000000 + i;
			assert_int_equal(hpcc__v1__agent_frame__get_packed_size(&f), frame_len[0]);
			frame_encode_header(frame, (uint32_t)frame_len[0]);
			hpcc__v1__agent_frame__pack(&f, frame + FRAME_HEADER_LEN);
			memcpy(stream + i * frame_len[1], frame, frame_len[1]);
		}
	}
	fl = fcntl(p.fd, F_GETFL);
	assert_int_equal(fcntl(p.fd, F_SETFL, fl | O_NONBLOCK), 0);
	/* Write only, until no byte has been taken for 2 s. */
	while (off < n * frame_len[1]) {
		struct pollfd pf = { .fd = p.fd, .events = POLLOUT };
		ssize_t w = write(p.fd, stream + off, n * frame_len[1] - off);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		assert_true(w < 0 && (errno == EAGAIN || errno == EINTR));
		if (poll(&pf, 1, 2000) == 0) {
			stalled_at = off;
			break;
		}
	}
	if (!stalled_at)
		fail_msg("the agent read all %zu frames without anyone reading its answers", n);
	printf("# the agent stopped reading after %zu of %zu bytes\n", stalled_at, n * frame_len[1]);
	/* Now both ways, until every cancel is answered. */
	while (answered < n) {
		struct pollfd pf = { .fd = p.fd, .events = POLLIN | (off < n * frame_len[1] ? POLLOUT : 0) };
		assert_int_equal(poll(&pf, 1, READ_TIMEOUT_MS), 1);
		if (pf.revents & POLLOUT) {
			ssize_t w = write(p.fd, stream + off, n * frame_len[1] - off);
			if (w > 0)
				off += (size_t)w;
		}
		if (pf.revents & POLLIN) {
			Hpcc__V1__AgentFrame *f;
			assert_int_equal(fcntl(p.fd, F_SETFL, fl), 0);
			f = read_frame(p.fd);
			assert_int_equal(fcntl(p.fd, F_SETFL, fl | O_NONBLOCK), 0);
			assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_RESULT);
			assert_int_equal(f->exec_id, 1000000 + answered);
			assert_non_null(strstr(f->result->error, "unknown exec"));
			answered++;
			hpcc__v1__agent_frame__free_unpacked(f, NULL);
		}
	}
	assert_int_equal(fcntl(p.fd, F_SETFL, fl), 0);
	free(stream);
	expect_alive(&p, 1);
	stop_agent(&p);
}

/* Sends raw bytes, then expects the agent to stop with a non-zero status
 * (after cleaning up the staging directory of a live exec). */
static void expect_framing_error(const void *bytes, size_t n)
{
	const char *argv[] = { "sleep", "30", NULL };
	struct agent_proc p;
	char *stg;

	start_agent(&p, 2);
	stg = staging_name(&p, "live");
	{
		struct header_spec s = { .argv = argv, .staging = stg };
		send_header(p.fd, 1, &s);
	}
	assert_int_equal(write(p.fd, bytes, n), (ssize_t)n);
	assert_int_not_equal(wait_agent(&p, 10000), 0);
	close(p.fd);
	p.fd = -1;
	assert_staging_clean(&p);
	testutil_rm_rf(p.dir);
	free(stg);
}

static void test_oversize_frame(void **state)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	frame_encode_header(hdr, FRAME_MAX_DEFAULT + 1);
	expect_framing_error(hdr, sizeof(hdr));
}

static void test_nonzero_flag(void **state)
{
	expect_framing_error("\x01\0\0\0\x02\x08\x01", 7);
}

static void test_garbage(void **state)
{
	/* Field 1 with wire type 7, which does not exist. */
	expect_framing_error("\0\0\0\0\x04\x0f\xff\xff\xff", 9);
}

static void test_eof_inside_frame(void **state)
{
	struct agent_proc p;

	start_agent(&p, 1);
	assert_int_equal(write(p.fd, "\0\0\0\0\x10" "abc", 8), 8);
	close(p.fd);
	p.fd = -1;
	assert_int_not_equal(wait_agent(&p, 10000), 0);
	testutil_rm_rf(p.dir);
}

/* The boot test: one exec against an agent that runs in a VM. */
static void test_guest(void **state)
{
	const char *sock = getenv("HPCC_TEST_AGENT_SOCKET");
	const char *argv[] = { "hpcc-test-prog", "out.txt", NULL };
	const char *outputs[] = { "root/out.txt", NULL };
	struct header_spec s = { .argv = argv, .outputs = outputs, .n_inputs = 1,
				 .staging = "/var/lib/hpcc/worker/staging/exec-Ab12Cd" };
	int64_t t0 = now_ms(), t1;
	struct timespec rt;
	struct reply r;
	unsigned vcpus;
	int fd;

	if (!sock)
		skip();
	fd = connect_unix(sock, 30000);
	assert_true(fd >= 0);
	vcpus = expect_hello(fd, 0);
	t1 = now_ms();
	clock_gettime(CLOCK_REALTIME, &rt);
	printf("# hello-realtime-ms %lld\n", (long long)rt.tv_sec * 1000 + rt.tv_nsec / 1000000);
	printf("# hello: %u vCPUs, %lld ms after connecting\n", vcpus, (long long)(t1 - t0));
	send_header(fd, 1, &s);
	send_file(fd, 1, "root/in.txt", "input from the host\n");
	r = wait_reply(fd, 1);
	printf("# exec: %lld ms round trip, %lld us in the guest\n", (long long)(now_ms() - t1),
	       (long long)r.duration_us);
	if (r.error)
		fail_msg("guest exec failed: %s", r.error);
	if (r.out)
		printf("# guest stdout: %s", r.out);
	if (r.err)
		printf("# guest stderr: %s", r.err);
	assert_int_equal(r.exit_code, 0);
	assert_int_equal(r.n_outputs, 1);
	assert_non_null(r.out);
	/* The test program reports what it sees; see agent-boot-test.sh.
	 * The first exec of the VM gets the first compile uid. */
	assert_non_null(strstr(r.out, "uid=100000 gid=100000 groups=0"));
	assert_non_null(strstr(r.out, "nice=10"));
	assert_non_null(strstr(r.out, "staging-private"));
	assert_non_null(strstr(r.out, "input=input from the host"));
	assert_non_null(strstr(r.out, "hostname=hpcc"));
	assert_non_null(strstr(r.out, "no-proc"));
	assert_non_null(strstr(r.out, "image-readonly"));
	assert_non_null(strstr(r.out, "devnull-ok"));
	assert_non_null(strstr(r.out, "cwd=/var/lib/hpcc/worker/staging/exec-Ab12Cd/root"));
	assert_non_null(strstr(r.out, "staging-tmpfs"));
	assert_non_null(strstr(r.out, "chrooted"));
	assert_non_null(strstr(r.out, "stdin-empty"));
	assert_non_null(strstr(r.out, "fds-closed"));
	assert_non_null(strstr(r.out, "no-inet"));
	assert_non_null(strstr(r.out, "tmpdir-ok"));
	assert_non_null(strstr(r.out, "tmp-readonly"));
	assert_non_null(strstr(r.out, "no-shm"));
	assert_int_equal(r.files[0].len, strlen("written in the guest\n"));
	assert_memory_equal(r.files[0].data, "written in the guest\n", r.files[0].len);
	reply_free(&r);

	/* A second exec, with a timeout, to see the slot come back. */
	{
		const char *argv2[] = { "hpcc-test-prog", "--sleep", NULL };
		struct header_spec s2 = { .argv = argv2, .staging = "/tmp/exec-2", .timeout_ms = 500 };
		send_header(fd, 2, &s2);
		r = wait_reply(fd, 2);
		assert_null(r.error);
		assert_true(r.timed_out);
		reply_free(&r);
	}
	/* The image holds /evil -> /etc: a staging path through it is
	 * refused, not followed. */
	{
		const char *argv3[] = { "hpcc-test-prog", "x", NULL };
		struct header_spec s3 = { .argv = argv3, .staging = "/evil/exec-3" };
		send_header(fd, 3, &s3);
		expect_error(fd, 3, "cannot create the parents");
	}
	/* The first staging directory is free again: the same path works. */
	{
		const char *argv4[] = { "hpcc-test-prog", "out.txt", NULL };
		struct header_spec s4 = { .argv = argv4, .outputs = outputs, .n_inputs = 1, .staging = s.staging };
		send_header(fd, 4, &s4);
		send_file(fd, 4, "root/in.txt", "again\n");
		r = wait_reply(fd, 4);
		assert_null(r.error);
		assert_non_null(strstr(r.out, "input=again"));
		printf("# second exec: %lld us in the guest\n", (long long)r.duration_us);
		reply_free(&r);
	}
	/* A process that leaves its session behind does not survive its
	 * exec, even while another exec runs, and cannot reach that exec's
	 * files meanwhile: exec 60 reads its input after 2 s; exec 61 leaves
	 * a process that tries to overwrite that input after 1 s; exec 62
	 * checks that the leftover is gone. */
	{
		const char *argv_b[] = { "hpcc-test-prog", "--cat-later", NULL };
		const char *argv_a[] = { "hpcc-test-prog", "--daemon", "/tmp/exec-6b/root/in.txt", NULL };
		struct header_spec sb = { .argv = argv_b, .staging = "/tmp/exec-6b", .n_inputs = 1 };
		struct header_spec sa = { .argv = argv_a, .staging = "/tmp/exec-6" };
		struct reply rs[3] = { { .id = 60 }, { .id = 61 }, { .id = 62 } };
		char pid[16];

		send_header(fd, 60, &sb);
		send_file(fd, 60, "root/in.txt", "honest\n");
		send_header(fd, 61, &sa);
		collect_until(fd, rs, 3, 1);
		assert_null(rs[1].error);
		assert_int_equal(rs[1].exit_code, 0);
		assert_non_null(rs[1].out);
		snprintf(pid, sizeof(pid), "%ld", strtol(rs[1].out, NULL, 10));
		{
			const char *argv_c[] = { "hpcc-test-prog", "--check-straggler", pid, NULL };
			struct header_spec sc = { .argv = argv_c, .staging = "/tmp/exec-7" };
			send_header(fd, 62, &sc);
		}
		collect(fd, rs, 3);
		assert_null(rs[2].error);
		assert_non_null(rs[2].out);
		assert_string_equal(rs[2].out, "straggler-gone\n");
		assert_null(rs[0].error);
		assert_non_null(rs[0].out);
		assert_string_equal(rs[0].out, "input=honest\n");
		for (int i = 0; i < 3; i++)
			reply_free(&rs[i]);
	}
	/* The smallest exec: fork, chroot, exec, exit, reap, result. */
	for (uint64_t id = 5; id < 8; id++) {
		const char *argv5[] = { "hpcc-test-prog", "--true", NULL };
		struct header_spec s5 = { .argv = argv5, .staging = "/tmp/exec-5" };
		int64_t t = now_ms();
		send_header(fd, id, &s5);
		r = wait_reply(fd, id);
		assert_null(r.error);
		assert_int_equal(r.exit_code, 0);
		printf("# trivial exec: %lld ms round trip, %lld us in the guest\n", (long long)(now_ms() - t),
		       (long long)r.duration_us);
		reply_free(&r);
	}
	close(fd);
}

/* The boot test with a real toolchain image: gcc in the guest (no /proc,
 * uid 65534, tmpfs staging) gives the object a plain gcc -c gives here,
 * when both use the same prefix map for their own project directory. */
static void test_guest_gcc(void **state)
{
	const char *sock = getenv("HPCC_TEST_AGENT_SOCKET");
	const char *stg = "/var/lib/hpcc/worker/staging/exec-Gcc001";
	const char *outputs[] = { "root/sub/a.o", NULL };
	char *map = NULL, dir[] = "/tmp/hpcc-agent-gcc-XXXXXX", *sub = NULL, *path = NULL;
	struct reply r;
	uint8_t *want;
	size_t want_len;
	int64_t t;
	FILE *f;
	int fd;

	if (!sock)
		skip();
	fd = connect_unix(sock, 30000);
	assert_true(fd >= 0);
	expect_hello(fd, 0);
	assert_true(asprintf(&map, "-ffile-prefix-map=%s/root=.", stg) > 0);
	{
		const char *argv[] = { "gcc", "-O2", "-g", map, "-c", "a.c", "-o", "a.o", NULL };
		struct header_spec s = { .argv = argv, .outputs = outputs, .cwd = "sub", .staging = stg, .n_inputs = 1,
					 .timeout_ms = 300000 };
		t = now_ms();
		send_header(fd, 1, &s);
		send_file(fd, 1, "root/sub/a.c", tiny_c);
	}
	r = wait_reply(fd, 1);
	printf("# gcc -O2 -g -c in the guest: %lld ms round trip, %lld us in the guest\n", (long long)(now_ms() - t),
	       (long long)r.duration_us);
	if (r.error || r.exit_code != 0)
		fail_msg("gcc in the guest: %s, exit %d, stderr %s", r.error ? r.error : "ran", r.exit_code,
			 r.err ? r.err : "");
	assert_int_equal(r.n_outputs, 1);

	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&sub, "%s/sub", dir) > 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_true(asprintf(&path, "%s/a.c", sub) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(tiny_c, f);
	fclose(f);
	free(map);
	assert_true(asprintf(&map, "-ffile-prefix-map=%s=.", dir) > 0);
	{
		const char *args[] = { "gcc", "-O2", "-g", map, "-c", "a.c", "-o", "a.o", NULL };
		plain_gcc(sub, args);
	}
	free(path);
	assert_true(asprintf(&path, "%s/a.o", sub) > 0);
	want = slurp(path, &want_len);
	assert_int_equal(r.files[0].len, want_len);
	assert_memory_equal(r.files[0].data, want, want_len);
	printf("# the guest's object equals the host's plain gcc -c (%zu bytes)\n", want_len);
	free(want);
	reply_free(&r);
	testutil_rm_rf(dir);
	free(map);
	free(sub);
	free(path);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest guest[] = {
		cmocka_unit_test(test_guest),
	};
	const struct CMUnitTest guest_gcc[] = {
		cmocka_unit_test(test_guest_gcc),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_compile_matches_plain_gcc),
		cmocka_unit_test(test_pinned_environment_and_user),
		cmocka_unit_test(test_failing_compile),
		cmocka_unit_test(test_interleaved_execs),
		cmocka_unit_test(test_queue_and_busy),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_output_cap),
		cmocka_unit_test(test_hostile_paths),
		cmocka_unit_test(test_hostile_outputs),
		cmocka_unit_test(test_chunk_order),
		cmocka_unit_test(test_unknown_and_duplicate_ids),
		cmocka_unit_test(test_n_inputs_mismatch),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_leftover_cannot_touch_other_exec),
		cmocka_unit_test(test_sparse_outputs_over_budget),
		cmocka_unit_test(test_frames_while_sending),
		cmocka_unit_test(test_output_shrinks_while_sent),
		cmocka_unit_test(test_staging_parents_root_only),
		cmocka_unit_test(test_host_not_reading),
		cmocka_unit_test(test_oversize_frame),
		cmocka_unit_test(test_nonzero_flag),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_eof_inside_frame),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("HPCC_TEST_AGENT_SOCKET") && getenv("HPCC_TEST_AGENT_GCC"))
		return cmocka_run_group_tests(guest_gcc, NULL, NULL);
	if (getenv("HPCC_TEST_AGENT_SOCKET"))
		return cmocka_run_group_tests(guest, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
