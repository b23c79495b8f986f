/*
 * Unit tests for the host end of the agent stream (src/worker/agent_conn.c)
 * against a fake guest on a socketpair: the hello rules (first, alone,
 * network_ok, in time), a whole exec (inputs arrive intact, stdio, a result,
 * chunked outputs), two execs answered out of order, and every kind of
 * hostile frame, each of which must break the connection with a reason
 * instead of being believed: bad flag byte, oversize length, undecodable
 * body, unknown fields, unknown exec id, host-only kinds, a second hello,
 * stdio on another fd or over the budget, a second result, more outputs
 * than requested, unrequested or duplicated outputs, outputs before the
 * result, outputs longer or shorter than announced, a guest that closes,
 * stays silent or stops reading.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "agent_conn.h"
#include "frame.h"

static void send_frame(int fd, const Hpcc__V1__AgentFrame *f)
{
	size_t len = hpcc__v1__agent_frame__get_packed_size(f);
	uint8_t *b = malloc(len + 1);
	assert_non_null(b);
	hpcc__v1__agent_frame__pack(f, b);
	assert_int_equal(frame_write(fd, b, len), 0);
	free(b);
}

static void send_hello(int fd, bool network_ok, unsigned vcpus)
{
	Hpcc__V1__AgentHello h = HPCC__V1__AGENT_HELLO__INIT;
	h.version = "test";
	h.vcpus = vcpus;
	h.network_ok = network_ok;
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HELLO;
	f.hello = &h;
	send_frame(fd, &f);
}

static void send_stdio(int fd, uint64_t id, unsigned which, const char *text)
{
	Hpcc__V1__StdioChunk s = HPCC__V1__STDIO_CHUNK__INIT;
	s.fd = which;
	s.data.data = (uint8_t *)text;
	s.data.len = strlen(text);
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_STDIO;
	f.stdio = &s;
	send_frame(fd, &f);
}

static void send_result(int fd, uint64_t id, int code, unsigned n_outputs)
{
	Hpcc__V1__ExecResult r = HPCC__V1__EXEC_RESULT__INIT;
	r.exit_code = code;
	r.n_outputs = n_outputs;
	r.duration_us = 1234;
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_RESULT;
	f.result = &r;
	send_frame(fd, &f);
}

static void send_output(int fd, uint64_t id, const char *path, uint64_t size, const char *data, bool last)
{
	Hpcc__V1__FileChunk c = HPCC__V1__FILE_CHUNK__INIT;
	c.path = (char *)path;
	c.size = size;
	c.data.data = (uint8_t *)data;
	c.data.len = strlen(data);
	c.last = last;
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_OUTPUT;
	f.output = &c;
	send_frame(fd, &f);
}

/* Reads one exec's header and its inputs; returns the exec id and checks
 * that the inputs are the ones the test sends. */
static uint64_t read_exec(int fd)
{
	uint8_t *b = NULL;
	size_t len = 0;
	assert_int_equal(frame_read(fd, FRAME_MAX_DEFAULT, &b, &len), 0);
	Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, len, b);
	free(b);
	assert_non_null(f);
	assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_HEADER);
	uint64_t id = f->exec_id;
	assert_string_equal(f->header->argv[0], "gcc");
	assert_string_equal(f->header->staging, "/srv/staging/exec-1");
	unsigned n = f->header->n_inputs;
	hpcc__v1__agent_frame__free_unpacked(f, NULL);
	size_t got = 0;
	unsigned files = 0;
	while (files < n) {
		assert_int_equal(frame_read(fd, FRAME_MAX_DEFAULT, &b, &len), 0);
		f = hpcc__v1__agent_frame__unpack(NULL, len, b);
		free(b);
		assert_non_null(f);
		assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_INPUT);
		assert_int_equal(f->exec_id, id);
		got += f->input->data.len;
		if (f->input->last)
			files++;
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
	/* The big input spans two chunks. */
	assert_int_equal(got, AGENT_CHUNK_MAX + 10 + 3);
	return id;
}

enum mode {
	GOOD,
	BAD_FLAG, OVERSIZE, UNDECODABLE, UNKNOWN_FIELD, UNKNOWN_ID, HOST_KIND, SECOND_HELLO, STDIO_FD3,
	STDIO_OVER_BUDGET, SECOND_RESULT, TOO_MANY_OUTPUTS, UNREQUESTED_OUTPUT, DUPLICATE_OUTPUT,
	OUTPUT_BEFORE_RESULT, OUTPUT_TOO_LONG, OUTPUT_TOO_SHORT, CLOSE, SILENT, BAD_EXIT,
};

struct guest {
	int fd;
	enum mode mode;
};

static void *guest_main(void *arg)
{
	struct guest *g = arg;
	int fd = g->fd;
	send_hello(fd, true, 2);
	uint64_t id = read_exec(fd);
	static const uint8_t bad_flag[] = { 1, 0, 0, 0, 1, 0 };
	static const uint8_t oversize[] = { 0, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t undecodable[] = { 0, 0, 0, 0, 3, 0xff, 0xff, 0xff };
	/* AgentFrame{exec_id, stdio{fd 1}} plus an unknown field 99 (varint). */
	uint8_t unknown[] = { 0, 0, 0, 0, 9, 0x08, (uint8_t)id, 0x2a, 0x02, 0x08, 0x01, 0x98, 0x06, 0x01 };
	switch (g->mode) {
	case GOOD:
		send_stdio(fd, id, 2, "warning: x\n");
		send_stdio(fd, id, 1, "out");
		send_result(fd, id, 0, 2);
		send_output(fd, id, "root/a.o", 6, "obj", false);
		send_output(fd, id, "", 0, "ect", true);
		send_output(fd, id, "tmp/deps.d", 5, "a.o: ", true);
		break;
	case BAD_FLAG: assert_int_equal(write(fd, bad_flag, sizeof(bad_flag)), sizeof(bad_flag)); break;
	case OVERSIZE: assert_int_equal(write(fd, oversize, sizeof(oversize)), sizeof(oversize)); break;
	case UNDECODABLE: assert_int_equal(write(fd, undecodable, sizeof(undecodable)), sizeof(undecodable)); break;
	case UNKNOWN_FIELD: assert_int_equal(write(fd, unknown, sizeof(unknown)), sizeof(unknown)); break;
	case UNKNOWN_ID: send_result(fd, id + 100, 0, 0); break;
	case HOST_KIND: {
		Hpcc__V1__Cancel c = HPCC__V1__CANCEL__INIT;
		Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
		f.exec_id = id;
		f.kind_case = HPCC__V1__AGENT_FRAME__KIND_CANCEL;
		f.cancel = &c;
		send_frame(fd, &f);
		break;
	}
	case SECOND_HELLO: send_hello(fd, true, 2); break;
	case STDIO_FD3: send_stdio(fd, id, 3, "x"); break;
	case STDIO_OVER_BUDGET: send_stdio(fd, id, 2, "0123456789abcdefghijklmnopqrstuvwxyz"); break;
	case SECOND_RESULT: send_result(fd, id, 0, 1); send_result(fd, id, 0, 0); break;
	case TOO_MANY_OUTPUTS: send_result(fd, id, 0, 3); break;
	case UNREQUESTED_OUTPUT:
		send_result(fd, id, 0, 1);
		send_output(fd, id, "root/../../etc/passwd", 1, "x", true);
		break;
	case DUPLICATE_OUTPUT:
		send_result(fd, id, 0, 2);
		send_output(fd, id, "root/a.o", 1, "x", true);
		send_output(fd, id, "root/a.o", 1, "x", true);
		break;
	case OUTPUT_BEFORE_RESULT: send_output(fd, id, "root/a.o", 1, "x", true); break;
	case OUTPUT_TOO_LONG:
		send_result(fd, id, 0, 1);
		send_output(fd, id, "root/a.o", 2, "xyz", true);
		break;
	case OUTPUT_TOO_SHORT:
		send_result(fd, id, 0, 1);
		send_output(fd, id, "root/a.o", 5, "xy", true);
		break;
	case BAD_EXIT: send_result(fd, id, -5, 0); break;
	case CLOSE: break;
	case SILENT: {
		char c;
		(void)read(fd, &c, 1); /* until the host gives up */
		break;
	}
	}
	if (g->mode != SILENT && g->mode != CLOSE) {
		char c;
		/* Keep the stream open until the host has judged what it got. */
		(void)read(fd, &c, 1);
	}
	close(fd);
	return NULL;
}

static char big[AGENT_CHUNK_MAX + 10];

static int run_exec(enum mode mode, struct agent_exec_reply *reply, char *why, size_t why_len)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct guest g = { .fd = sv[1], .mode = mode };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, guest_main, &g), 0);
	struct agent_conn *c = NULL;
	struct agent_hello_info hello;
	struct error err = { 0 };
	assert_int_equal(agent_conn_open(sv[0], 2000, &c, &hello, &err), 0);
	assert_int_equal(hello.vcpus, 2);
	assert_string_equal(hello.version, "test");
	agent_conn_set_margin(c, 300);
	const char *argv[] = { "gcc", "-c", "a.c", NULL };
	const char *outputs[] = { "root/a.o", "tmp/deps.d", NULL };
	struct agent_input in[] = {
		{ .path = "root/big.h", .data = big, .size = sizeof(big) },
		{ .path = "root/a.c", .data = "abc", .size = 3 },
	};
	struct agent_exec_request rq = {
		.argv = argv, .staging = "/srv/staging/exec-1", .cwd = "", .timeout_ms = 100, .max_output = 30,
		.outputs = outputs, .inputs = in, .n_inputs = 2,
	};
	int r = agent_conn_exec(c, &rq, reply, &err);
	if (r < 0) {
		assert_true(agent_conn_broken(c, why, why_len));
		/* Nothing more runs on a broken stream. */
		struct agent_exec_reply again;
		assert_int_equal(agent_conn_exec(c, &rq, &again, &err), -EPIPE);
	}
	agent_conn_close(c);
	pthread_join(t, NULL);
	return r;
}

static void test_good_exec(void **state)
{
	struct agent_exec_reply reply;
	char why[256] = "";
	assert_int_equal(run_exec(GOOD, &reply, why, sizeof(why)), 0);
	assert_int_equal(reply.exit_code, 0);
	assert_int_equal(reply.duration_us, 1234);
	assert_int_equal(reply.err.len, 11);
	assert_memory_equal(reply.err.data, "warning: x\n", 11);
	assert_int_equal(reply.out.len, 3);
	assert_int_equal(reply.n_files, 2);
	assert_string_equal(reply.files[0].path, "root/a.o");
	assert_int_equal(reply.files[0].data.len, 6);
	assert_memory_equal(reply.files[0].data.data, "object", 6);
	assert_string_equal(reply.files[1].path, "tmp/deps.d");
	agent_exec_reply_free(&reply);
}

static void expect_broken(enum mode mode, const char *reason)
{
	struct agent_exec_reply reply;
	char why[256] = "";
	int r = run_exec(mode, &reply, why, sizeof(why));
	assert_true(r < 0);
	if (!strstr(why, reason))
		fail_msg("mode %d: broke with \"%s\", expected \"%s\"", mode, why, reason);
}

static void test_hostile_frames(void **state)
{
	expect_broken(BAD_FLAG, "non-zero flag byte");
	expect_broken(OVERSIZE, "length over the cap");
	expect_broken(UNDECODABLE, "does not decode");
	expect_broken(UNKNOWN_FIELD, "unknown fields");
	expect_broken(UNKNOWN_ID, "not waiting");
	expect_broken(HOST_KIND, "only the host sends");
	expect_broken(SECOND_HELLO, "a second hello");
	expect_broken(STDIO_FD3, "other than 1 or 2");
	expect_broken(STDIO_OVER_BUDGET, "more stdout/stderr");
	expect_broken(SECOND_RESULT, "a second result");
	expect_broken(TOO_MANY_OUTPUTS, "more outputs than requested");
	expect_broken(UNREQUESTED_OUTPUT, "not requested");
	expect_broken(DUPLICATE_OUTPUT, "twice");
	expect_broken(OUTPUT_BEFORE_RESULT, "before the result");
	expect_broken(OUTPUT_TOO_LONG, "longer than its announced size");
	expect_broken(OUTPUT_TOO_SHORT, "shorter than its announced size");
	expect_broken(BAD_EXIT, "exit code out of range");
	expect_broken(CLOSE, "closed the stream");
	expect_broken(SILENT, "no answer within");
}

/* Hello rules, each on a fresh socketpair. */
static int open_with(void (*guest)(int fd), int timeout_ms)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	guest(sv[1]);
	struct agent_conn *c = NULL;
	struct error err = { 0 };
	int r = agent_conn_open(sv[0], timeout_ms, &c, NULL, &err);
	agent_conn_close(c);
	close(sv[1]);
	return r;
}

static void g_network(int fd) { send_hello(fd, false, 2); }
static void g_result_first(int fd) { send_result(fd, 0, 0, 0); }
static void g_silent(int fd) { (void)fd; }
/* A hello and another frame in one write, so that they arrive together:
 * the bytes after the hello must be refused. */
static void g_trailing(int fd)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_hello(sv[0], true, 2);
	send_stdio(sv[0], 1, 1, "x");
	uint8_t both[256];
	ssize_t n = read(sv[1], both, sizeof(both));
	assert_true(n > 0 && n < (ssize_t)sizeof(both));
	assert_int_equal(write(fd, both, (size_t)n), n);
	close(sv[0]);
	close(sv[1]);
}
static void g_zero_cpus(int fd) { send_hello(fd, true, 0); }
static void g_ok(int fd) { send_hello(fd, true, 1); }

static void test_hello(void **state)
{
	assert_int_equal(open_with(g_ok, 1000), 0);
	assert_int_equal(open_with(g_network, 1000), -EPROTO);
	assert_int_equal(open_with(g_result_first, 1000), -EPROTO);
	assert_int_equal(open_with(g_silent, 200), -ETIMEDOUT);
	assert_int_equal(open_with(g_zero_cpus, 1000), -EPROTO);
	assert_int_equal(open_with(g_trailing, 1000), -EPROTO);
}

/* Two execs share the stream; the guest answers the second one first. */
struct two {
	int fd;
};

static uint64_t read_header_only(int fd)
{
	uint8_t *b = NULL;
	size_t len = 0;
	assert_int_equal(frame_read(fd, FRAME_MAX_DEFAULT, &b, &len), 0);
	Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, len, b);
	free(b);
	assert_non_null(f);
	assert_int_equal(f->kind_case, HPCC__V1__AGENT_FRAME__KIND_HEADER);
	uint64_t id = f->exec_id;
	hpcc__v1__agent_frame__free_unpacked(f, NULL);
	return id;
}

static void *two_guest(void *arg)
{
	int fd = ((struct two *)arg)->fd;
	send_hello(fd, true, 2);
	uint64_t a = read_header_only(fd), b = read_header_only(fd);
	send_result(fd, b, 7, 0);
	send_stdio(fd, a, 1, "first");
	send_result(fd, a, 3, 0);
	char c;
	(void)read(fd, &c, 1);
	close(fd);
	return NULL;
}

struct runner {
	struct agent_conn *c;
	int r, exit_code;
	char out[16];
};

static void *run_one(void *arg)
{
	struct runner *x = arg;
	const char *argv[] = { "gcc", NULL };
	struct agent_exec_request rq = { .argv = argv, .staging = "/s/e", .timeout_ms = 5000, .max_output = 100 };
	struct agent_exec_reply reply;
	struct error err = { 0 };
	x->r = agent_conn_exec(x->c, &rq, &reply, &err);
	if (x->r == 0) {
		x->exit_code = reply.exit_code;
		snprintf(x->out, sizeof(x->out), "%.*s", (int)reply.out.len, reply.out.data ? reply.out.data : "");
		agent_exec_reply_free(&reply);
	}
	return NULL;
}

static void test_two_execs_out_of_order(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct two g = { .fd = sv[1] };
	pthread_t gt;
	assert_int_equal(pthread_create(&gt, NULL, two_guest, &g), 0);
	struct agent_conn *c = NULL;
	struct error err = { 0 };
	assert_int_equal(agent_conn_open(sv[0], 2000, &c, NULL, &err), 0);
	struct runner a = { .c = c }, b = { .c = c };
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, run_one, &a), 0);
	usleep(50000); /* a's header goes first */
	assert_int_equal(pthread_create(&tb, NULL, run_one, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.r, 0);
	assert_int_equal(b.r, 0);
	assert_int_equal(a.exit_code, 3);
	assert_string_equal(a.out, "first");
	assert_int_equal(b.exit_code, 7);
	assert_false(agent_conn_broken(c, NULL, 0));
	agent_conn_close(c);
	pthread_join(gt, NULL);
}

/* A guest that never reads: the host's send is bounded by the exec's
 * deadline, and the stream is declared broken. */
static void *deaf_guest(void *arg)
{
	int fd = *(int *)arg;
	send_hello(fd, true, 1);
	usleep(2000000);
	close(fd);
	return NULL;
}

static void test_guest_stops_reading(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, deaf_guest, &sv[1]), 0);
	struct agent_conn *c = NULL;
	struct error err = { 0 };
	assert_int_equal(agent_conn_open(sv[0], 2000, &c, NULL, &err), 0);
	agent_conn_set_margin(c, 300);
	size_t n = 16u << 20;
	char *data = calloc(1, n);
	const char *argv[] = { "gcc", NULL };
	struct agent_input in = { .path = "root/big.c", .data = data, .size = n };
	struct agent_exec_request rq = { .argv = argv, .staging = "/s/e", .timeout_ms = 100, .max_output = 10,
					 .inputs = &in, .n_inputs = 1 };
	struct agent_exec_reply reply;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(agent_conn_exec(c, &rq, &reply, &err), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(ms < 1500);
	char why[256];
	assert_true(agent_conn_broken(c, why, sizeof(why)));
	assert_non_null(strstr(why, "stopped reading"));
	agent_conn_close(c);
	pthread_join(t, NULL);
	free(data);
}

int main(void)
{
	memset(big, 'x', sizeof(big));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_exec),
		cmocka_unit_test(test_hostile_frames),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_two_execs_out_of_order),
		cmocka_unit_test(test_guest_stops_reading),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
