/*
 * Unit tests for the wrapper <-> daemon framing (src/daemon/ipc.c), over a
 * socketpair: a round trip of every envelope kind field by field, a message
 * larger than the socket buffer, and every way a peer can misbehave — a
 * length over the cap, a body cut short, bytes that are not protobuf,
 * silence past the deadline, a trickle that outlasts it — plus the rules for
 * where the socket lives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "macro.h"

#define RECV_MAX ((size_t)16 << 20)

struct pair {
	int a, b;
};

static int setup_pair(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));
	int fds[2];
	if (!p || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
		return -1;
	p->a = fds[0];
	p->b = fds[1];
	*state = p;
	return 0;
}

static int teardown_pair(void **state)
{
	struct pair *p = *state;
	if (p->a >= 0)
		close(p->a);
	if (p->b >= 0)
		close(p->b);
	free(p);
	return 0;
}

static void close_a(struct pair *p)
{
	assert_int_equal(close(p->a), 0);
	p->a = -1;
}

static void write_raw(int fd, const void *data, size_t n)
{
	assert_int_equal(write(fd, data, n), (ssize_t)n);
}

static void write_length(int fd, uint32_t n)
{
	uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	write_raw(fd, h, 4);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends env on one end and receives it on the other. */
static ipc_envelope *round_trip(struct pair *p, const ipc_envelope *env)
{
	assert_int_equal(ipc_send(p->a, env), 0);
	ipc_envelope *got = NULL;
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), 0);
	assert_non_null(got);
	assert_int_equal(got->msg_case, env->msg_case);
	return got;
}

static void assert_bytes(const ProtobufCBinaryData *b, const void *want, size_t n)
{
	assert_int_equal(b->len, n);
	if (n)
		assert_memory_equal(b->data, want, n);
}

/* --- round trips --- */

static void test_compile_request(void **state)
{
	char *argv[] = { (char *)"gcc", (char *)"-c", (char *)"a b.c", (char *)"-o", (char *)"", (char *)"\xc3\xa9" };
	char *env[] = { (char *)"LANG=C", (char *)"SOURCE_DATE_EPOCH=1" };
	Hpcc__Local__CompileRequest req = HPCC__LOCAL__COMPILE_REQUEST__INIT;
	req.n_argv = ARRAY_SIZE(argv);
	req.argv = argv;
	req.compiler_path = (char *)"/usr/bin/gcc";
	req.cwd = (char *)"/home/u/src";
	req.n_env = ARRAY_SIZE(env);
	req.env = env;
	req.umask = 022;
	req.stderr_is_tty = true;
	req.prefix_map = true;
	req.binary_id = (char *)"sha256:abc";
	ipc_envelope env_msg = HPCC__LOCAL__ENVELOPE__INIT;
	env_msg.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMPILE;
	env_msg.compile = &req;

	ipc_envelope *got = round_trip(*state, &env_msg);
	const Hpcc__Local__CompileRequest *r = got->compile;
	assert_int_equal(r->n_argv, ARRAY_SIZE(argv));
	for (size_t i = 0; i < ARRAY_SIZE(argv); i++)
		assert_string_equal(r->argv[i], argv[i]);
	assert_string_equal(r->compiler_path, "/usr/bin/gcc");
	assert_string_equal(r->cwd, "/home/u/src");
	assert_int_equal(r->n_env, 2);
	assert_string_equal(r->env[0], "LANG=C");
	assert_string_equal(r->env[1], "SOURCE_DATE_EPOCH=1");
	assert_int_equal(r->umask, 022);
	assert_true(r->stderr_is_tty);
	assert_true(r->prefix_map);
	assert_string_equal(r->binary_id, "sha256:abc");
	ipc_envelope_free(got);
}

static void test_compile_reply(void **state)
{
	static const uint8_t object[] = { 0x7f, 'E', 'L', 'F', 0, 0, 1, 0xff };
	Hpcc__Local__OutputFile o1 = HPCC__LOCAL__OUTPUT_FILE__INIT, o2 = HPCC__LOCAL__OUTPUT_FILE__INIT;
	o1.path = (char *)"a.o";
	o1.data = (ProtobufCBinaryData){ sizeof(object), (uint8_t *)object };
	o2.path = (char *)"/abs/a.d";
	o2.data = (ProtobufCBinaryData){ 5, (uint8_t *)"a.o:\n" };
	Hpcc__Local__OutputFile *outputs[] = { &o1, &o2 };
	char *run[] = { (char *)"/usr/bin/gcc", (char *)"-MD" };
	Hpcc__Local__CompileReply rep = HPCC__LOCAL__COMPILE_REPLY__INIT;
	rep.action = HPCC__LOCAL__COMPILE_REPLY__ACTION__HIT;
	rep.n_outputs = 2;
	rep.outputs = outputs;
	rep.stdout_data = (ProtobufCBinaryData){ 3, (uint8_t *)"out" };
	rep.stderr_data = (ProtobufCBinaryData){ 9, (uint8_t *)"\033[31mw\033[m" };
	rep.exit_code = -3;
	rep.n_run_argv = 2;
	rep.run_argv = run;
	rep.color = true;
	rep.reason = (char *)"why";
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMPILE_REPLY;
	env.compile_reply = &rep;

	ipc_envelope *got = round_trip(*state, &env);
	const Hpcc__Local__CompileReply *r = got->compile_reply;
	assert_int_equal(r->action, HPCC__LOCAL__COMPILE_REPLY__ACTION__HIT);
	assert_int_equal(r->n_outputs, 2);
	assert_string_equal(r->outputs[0]->path, "a.o");
	assert_bytes(&r->outputs[0]->data, object, sizeof(object));
	assert_string_equal(r->outputs[1]->path, "/abs/a.d");
	assert_bytes(&r->outputs[1]->data, "a.o:\n", 5);
	assert_bytes(&r->stdout_data, "out", 3);
	assert_bytes(&r->stderr_data, "\033[31mw\033[m", 9);
	assert_int_equal(r->exit_code, -3);
	assert_int_equal(r->n_run_argv, 2);
	assert_string_equal(r->run_argv[0], "/usr/bin/gcc");
	assert_string_equal(r->run_argv[1], "-MD");
	assert_true(r->color);
	assert_string_equal(r->reason, "why");
	ipc_envelope_free(got);

	/* Each action value survives, FALLBACK (0, the default) included. */
	static const int actions[] = {
		HPCC__LOCAL__COMPILE_REPLY__ACTION__FALLBACK, HPCC__LOCAL__COMPILE_REPLY__ACTION__RUN,
		HPCC__LOCAL__COMPILE_REPLY__ACTION__RESTART,
	};
	for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
		Hpcc__Local__CompileReply small = HPCC__LOCAL__COMPILE_REPLY__INIT;
		small.action = actions[i];
		env.compile_reply = &small;
		got = round_trip(*state, &env);
		assert_int_equal(got->compile_reply->action, actions[i]);
		assert_int_equal(got->compile_reply->n_outputs, 0);
		ipc_envelope_free(got);
	}
}

static void test_job_done(void **state)
{
	Hpcc__Local__JobDone done = HPCC__LOCAL__JOB_DONE__INIT;
	done.wait_status = 1 << 8;
	done.stdout_data = (ProtobufCBinaryData){ 2, (uint8_t *)"o\0" };
	done.stderr_data = (ProtobufCBinaryData){ 1, (uint8_t *)"e" };
	done.output_passed = true;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_DONE;
	env.done = &done;
	ipc_envelope *got = round_trip(*state, &env);
	assert_int_equal(got->done->wait_status, 256);
	assert_bytes(&got->done->stdout_data, "o\0", 2);
	assert_bytes(&got->done->stderr_data, "e", 1);
	assert_true(got->done->output_passed);
	ipc_envelope_free(got);
}

static void test_job_done_reply(void **state)
{
	Hpcc__Local__OutputFile o = HPCC__LOCAL__OUTPUT_FILE__INIT;
	o.path = (char *)"dir/x.d";
	o.data = (ProtobufCBinaryData){ 12, (uint8_t *)"x.o: x.c x.h" };
	Hpcc__Local__OutputFile *outputs[] = { &o };
	Hpcc__Local__JobDoneReply rep = HPCC__LOCAL__JOB_DONE_REPLY__INIT;
	rep.n_outputs = 1;
	rep.outputs = outputs;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_DONE_REPLY;
	env.done_reply = &rep;
	ipc_envelope *got = round_trip(*state, &env);
	assert_int_equal(got->done_reply->n_outputs, 1);
	assert_string_equal(got->done_reply->outputs[0]->path, "dir/x.d");
	assert_bytes(&got->done_reply->outputs[0]->data, "x.o: x.c x.h", 12);
	ipc_envelope_free(got);

	/* No outputs at all. */
	Hpcc__Local__JobDoneReply none = HPCC__LOCAL__JOB_DONE_REPLY__INIT;
	env.done_reply = &none;
	got = round_trip(*state, &env);
	assert_int_equal(got->done_reply->n_outputs, 0);
	ipc_envelope_free(got);
}

static void test_command_and_reply(void **state)
{
	char *args[] = { (char *)"--json", (char *)"" };
	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	cmd.name = (char *)"stats";
	cmd.n_args = 2;
	cmd.args = args;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	ipc_envelope *got = round_trip(*state, &env);
	assert_string_equal(got->command->name, "stats");
	assert_int_equal(got->command->n_args, 2);
	assert_string_equal(got->command->args[0], "--json");
	assert_string_equal(got->command->args[1], "");
	ipc_envelope_free(got);

	Hpcc__Local__CommandReply rep = HPCC__LOCAL__COMMAND_REPLY__INIT;
	rep.code = 2;
	rep.text = (char *)"no daemon\n";
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND_REPLY;
	env.command_reply = &rep;
	got = round_trip(*state, &env);
	assert_int_equal(got->command_reply->code, 2);
	assert_string_equal(got->command_reply->text, "no daemon\n");
	ipc_envelope_free(got);
}

static void test_empty_envelope(void **state)
{
	struct pair *p = *state;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	assert_int_equal(ipc_send(p->a, &env), 0);
	ipc_envelope *got = NULL;
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), 0);
	assert_int_equal(got->msg_case, HPCC__LOCAL__ENVELOPE__MSG__NOT_SET);
	ipc_envelope_free(got);
	/* A zero length on the wire is the same thing. */
	write_length(p->a, 0);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), 0);
	assert_int_equal(got->msg_case, HPCC__LOCAL__ENVELOPE__MSG__NOT_SET);
	ipc_envelope_free(got);
	ipc_envelope_free(NULL);
}

/* Several messages back to back are read one at a time. */
static void test_back_to_back(void **state)
{
	struct pair *p = *state;
	Hpcc__Local__CommandReply rep = HPCC__LOCAL__COMMAND_REPLY__INIT;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND_REPLY;
	env.command_reply = &rep;
	for (int i = 0; i < 5; i++) {
		rep.code = i;
		assert_int_equal(ipc_send(p->a, &env), 0);
	}
	for (int i = 0; i < 5; i++) {
		ipc_envelope *got = NULL;
		assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), 0);
		assert_int_equal(got->command_reply->code, i);
		ipc_envelope_free(got);
	}
}

struct sender {
	int fd;
	const ipc_envelope *env;
	int result;
	int delay_ms;
	pthread_t signal_target;
	bool send_signal;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	if (s->send_signal) {
		struct timespec t = { 0, 50 * 1000 * 1000 };
		nanosleep(&t, NULL);
		pthread_kill(s->signal_target, SIGUSR1);
	}
	if (s->delay_ms) {
		struct timespec t = { s->delay_ms / 1000, (long)(s->delay_ms % 1000) * 1000 * 1000 };
		nanosleep(&t, NULL);
	}
	s->result = ipc_send(s->fd, s->env);
	return NULL;
}

/* Larger than any socket buffer: sender and receiver must interleave. */
static void test_large_message(void **state)
{
	struct pair *p = *state;
	size_t n = 6 << 20;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 13));
	Hpcc__Local__JobDone done = HPCC__LOCAL__JOB_DONE__INIT;
	done.stderr_data = (ProtobufCBinaryData){ n, data };
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_DONE;
	env.done = &done;
	struct sender s = { .fd = p->a, .env = &env, .result = 1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
	ipc_envelope *got = NULL;
	int r = ipc_recv(p->b, 10000, RECV_MAX, &got);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r, 0);
	assert_int_equal(s.result, 0);
	assert_bytes(&got->done->stderr_data, data, n);
	ipc_envelope_free(got);

	/* The same message against a cap just below its size. */
	size_t packed = hpcc__local__envelope__get_packed_size(&env);
	s = (struct sender){ .fd = p->a, .env = &env, .result = 1 };
	assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
	got = NULL;
	r = ipc_recv(p->b, 10000, packed - 1, &got);
	/* The receiver gives up at the header; the sender sees the close. */
	close(p->b);
	p->b = -1;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r, -EBADMSG);
	assert_null(got);
	assert_int_equal(s.result, -EPIPE);
	free(data);
}

/* --- misbehaving peers --- */

static void test_length_over_max(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	write_length(p->a, 101);
	assert_int_equal(ipc_recv(p->b, 1000, 100, &got), -EBADMSG);
	assert_null(got);

	/* Over the absolute cap, whatever the caller allows. */
	write_length(p->a, 0xffffffffu);
	assert_int_equal(ipc_recv(p->b, 1000, SIZE_MAX, &got), -EBADMSG);
	write_length(p->a, (uint32_t)IPC_MAX_MESSAGE + 1);
	assert_int_equal(ipc_recv(p->b, 1000, SIZE_MAX, &got), -EBADMSG);
	assert_null(got);

	/* Exactly max is fine. */
	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	cmd.name = (char *)"x";
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	size_t n = hpcc__local__envelope__get_packed_size(&env);
	assert_int_equal(ipc_send(p->a, &env), 0);
	assert_int_equal(ipc_recv(p->b, 1000, n, &got), 0);
	assert_string_equal(got->command->name, "x");
	ipc_envelope_free(got);
}

static void test_truncated_then_eof(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	write_length(p->a, 100);
	write_raw(p->a, "\x0a\x05hello", 7);
	assert_int_equal(shutdown(p->a, SHUT_WR), 0);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -ECONNRESET);
	assert_null(got);
}

static void test_truncated_header_then_eof(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	write_raw(p->a, "\0\0", 2);
	close_a(p);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -ECONNRESET);
	assert_null(got);
}

static void test_clean_eof(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	close_a(p);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -ECONNRESET);
	assert_int_equal(ipc_recv(p->b, -1, RECV_MAX, &got), -ECONNRESET);
	assert_null(got);
}

static void test_garbage_protobuf(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	/* Field 31, wire type 7: no such wire type. */
	write_length(p->a, 5);
	write_raw(p->a, "\xff\xff\xff\xff\x0f", 5);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -EBADMSG);
	assert_null(got);
	/* A length-delimited field longer than the message. */
	write_length(p->a, 2);
	write_raw(p->a, "\x0a\x10", 2);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -EBADMSG);
	/* A nested CompileRequest whose argv is not valid. */
	write_length(p->a, 4);
	write_raw(p->a, "\x0a\x02\x0a\x05", 4);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), -EBADMSG);
	assert_null(got);

	/* The stream stays usable after a bad message that was read whole. */
	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	cmd.name = (char *)"after";
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	assert_int_equal(ipc_send(p->a, &env), 0);
	assert_int_equal(ipc_recv(p->b, 1000, RECV_MAX, &got), 0);
	assert_string_equal(got->command->name, "after");
	ipc_envelope_free(got);
}

static void test_timeout_no_data(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	int64_t t0 = now_ms();
	assert_int_equal(ipc_recv(p->b, 200, RECV_MAX, &got), -ETIMEDOUT);
	int64_t elapsed = now_ms() - t0;
	assert_true(elapsed >= 195);
	assert_true(elapsed < 1000);
	assert_null(got);

	/* Zero: gives up at once. */
	t0 = now_ms();
	assert_int_equal(ipc_recv(p->b, 0, RECV_MAX, &got), -ETIMEDOUT);
	assert_true(now_ms() - t0 < 100);
}

static void test_timeout_partial(void **state)
{
	struct pair *p = *state;
	ipc_envelope *got = NULL;
	/* Half a header, then silence. */
	write_raw(p->a, "\0\0", 2);
	int64_t t0 = now_ms();
	assert_int_equal(ipc_recv(p->b, 200, RECV_MAX, &got), -ETIMEDOUT);
	int64_t elapsed = now_ms() - t0;
	assert_true(elapsed >= 195 && elapsed < 1000);
}

struct trickle {
	int fd;
	const uint8_t *data;
	size_t n;
	long gap_ms;
};

static void *trickle_main(void *arg)
{
	struct trickle *tr = arg;
	for (size_t i = 0; i < tr->n; i++) {
		struct timespec t = { 0, tr->gap_ms * 1000 * 1000 };
		nanosleep(&t, NULL);
		if (write(tr->fd, tr->data + i, 1) != 1)
			break;
	}
	return NULL;
}

/* The deadline covers the whole message, not each read nor each part: a
 * message whose header and body each come within the timeout, one byte
 * every 50 ms, still times out as a whole. */
static void test_timeout_trickle(void **state)
{
	struct pair *p = *state;
	/* An Envelope holding Command { name: "a" }. */
	static const uint8_t msg[] = { 0, 0, 0, 5, 0x2a, 0x03, 0x0a, 0x01, 'a' };
	struct trickle tr = { p->a, msg, sizeof(msg), 50 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, trickle_main, &tr), 0);
	ipc_envelope *got = NULL;
	int64_t t0 = now_ms();
	int r = ipc_recv(p->b, 300, RECV_MAX, &got);
	int64_t elapsed = now_ms() - t0;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r, -ETIMEDOUT);
	assert_null(got);
	assert_true(elapsed >= 295 && elapsed < 1000);

	/* The same bytes with time enough: the message is good. */
	int fds[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
	tr.fd = fds[0];
	assert_int_equal(pthread_create(&t, NULL, trickle_main, &tr), 0);
	r = ipc_recv(fds[1], 5000, RECV_MAX, &got);
	assert_int_equal(pthread_join(t, NULL), 0);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(r, 0);
	assert_int_equal(got->msg_case, HPCC__LOCAL__ENVELOPE__MSG_COMMAND);
	assert_string_equal(got->command->name, "a");
	ipc_envelope_free(got);
}

static void on_usr1(int sig) {}

static void *signal_only_main(void *arg)
{
	struct sender *s = arg;
	struct timespec t = { 0, 50 * 1000 * 1000 };
	nanosleep(&t, NULL);
	pthread_kill(s->signal_target, SIGUSR1);
	return NULL;
}

/* A signal during the wait neither fails the read nor resets the deadline. */
static void test_signal_during_wait(void **state)
{
	struct pair *p = *state;
	struct sigaction sa = { .sa_handler = on_usr1 }, old;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;  /* no SA_RESTART: poll returns EINTR */
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	cmd.name = (char *)"after-signal";
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	struct sender s = { .fd = p->a, .env = &env, .delay_ms = 150, .send_signal = true,
			    .signal_target = pthread_self(), .result = 1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
	ipc_envelope *got = NULL;
	int r = ipc_recv(p->b, 2000, RECV_MAX, &got);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r, 0);
	assert_int_equal(s.result, 0);
	assert_string_equal(got->command->name, "after-signal");
	ipc_envelope_free(got);

	/* With a signal and no data, the deadline still holds. */
	s = (struct sender){ .fd = -1, .signal_target = pthread_self() };
	int64_t t0 = now_ms();
	pthread_t t2;
	assert_int_equal(pthread_create(&t2, NULL, signal_only_main, &s), 0);
	r = ipc_recv(p->b, 300, RECV_MAX, &got);
	int64_t elapsed = now_ms() - t0;
	assert_int_equal(pthread_join(t2, NULL), 0);
	assert_int_equal(r, -ETIMEDOUT);
	assert_true(elapsed >= 295 && elapsed < 1500);
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

static void test_send_to_closed_peer(void **state)
{
	struct pair *p = *state;
	assert_int_equal(close(p->b), 0);
	p->b = -1;
	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	ipc_envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	/* No SIGPIPE either: the test would die of it. */
	assert_int_equal(ipc_send(p->a, &env), -EPIPE);
}

/* --- socket path --- */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static char *saved_xdg;

static int save_env(void **state)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	saved_xdg = x ? strdup(x) : NULL;
	return 0;
}

static int restore_env(void **state)
{
	if (saved_xdg)
		setenv("XDG_RUNTIME_DIR", saved_xdg, 1);
	else
		unsetenv("XDG_RUNTIME_DIR");
	free(saved_xdg);
	saved_xdg = NULL;
	return 0;
}

static void assert_path(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_socket_path_xdg(void **state)
{
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	char want[256];
	snprintf(want, sizeof(want), "/run/user/1000/hpcc/%016llx.sock", (unsigned long long)fnv1a("/home/u/.cache/hpcc"));
	assert_path(ipc_socket_path("/home/u/.cache/hpcc", NULL), want);
	assert_path(ipc_socket_path("/home/u/.cache/hpcc", ""), want);
	/* Each cache directory has its own socket. */
	char *other = ipc_socket_path("/home/u/.cache/hpcc2", NULL);
	assert_non_null(other);
	assert_string_not_equal(other, want);
	free(other);
}

static void test_socket_path_no_xdg(void **state)
{
	unsetenv("XDG_RUNTIME_DIR");
	assert_path(ipc_socket_path("/home/u/.cache/hpcc", NULL), "/home/u/.cache/hpcc/daemon.sock");
	/* Empty or relative: not usable. */
	setenv("XDG_RUNTIME_DIR", "", 1);
	assert_path(ipc_socket_path("/c", NULL), "/c/daemon.sock");
	setenv("XDG_RUNTIME_DIR", "run/user/1000", 1);
	assert_path(ipc_socket_path("/c", NULL), "/c/daemon.sock");
}

static void test_socket_path_too_long(void **state)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);  /* 108 on Linux */
	char fallback[128];
	char dir[512];

	unsetenv("XDG_RUNTIME_DIR");
	/* "<dir>/daemon.sock" exactly max - 1 long fits (with its NUL). */
	size_t n = max - 1 - strlen("/daemon.sock");
	memset(dir, 'd', n);
	dir[0] = '/';
	dir[n] = '\0';
	char want[600];
	snprintf(want, sizeof(want), "%s/daemon.sock", dir);
	assert_int_equal(strlen(want), max - 1);
	assert_path(ipc_socket_path(dir, NULL), want);

	/* One more byte does not. */
	dir[n] = 'd';
	dir[n + 1] = '\0';
	snprintf(fallback, sizeof(fallback), "/tmp/hpcc-%u/%016llx.sock", (unsigned)getuid(),
		 (unsigned long long)fnv1a(dir));
	assert_path(ipc_socket_path(dir, NULL), fallback);

	/* A long XDG_RUNTIME_DIR falls back the same way. */
	char xdg[300];
	memset(xdg, 'x', 200);
	xdg[0] = '/';
	xdg[200] = '\0';
	setenv("XDG_RUNTIME_DIR", xdg, 1);
	snprintf(fallback, sizeof(fallback), "/tmp/hpcc-%u/%016llx.sock", (unsigned)getuid(),
		 (unsigned long long)fnv1a("/c"));
	assert_path(ipc_socket_path("/c", NULL), fallback);
}

static void test_socket_path_configured(void **state)
{
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	assert_path(ipc_socket_path("/c", "/srv/hpcc.sock"), "/srv/hpcc.sock");
	unsetenv("XDG_RUNTIME_DIR");
	assert_path(ipc_socket_path("/c", "/srv/hpcc.sock"), "/srv/hpcc.sock");
	/* Even a long one: the user asked for it. */
	char longp[300];
	memset(longp, 'p', 250);
	longp[0] = '/';
	longp[250] = '\0';
	assert_path(ipc_socket_path("/c", longp), longp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_compile_request, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_compile_reply, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_job_done, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_job_done_reply, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_command_and_reply, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_empty_envelope, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_back_to_back, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_large_message, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_length_over_max, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_truncated_then_eof, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_truncated_header_then_eof, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_clean_eof, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_garbage_protobuf, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_timeout_no_data, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_timeout_partial, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_timeout_trickle, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_signal_during_wait, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_send_to_closed_peer, setup_pair, teardown_pair),
		cmocka_unit_test_setup_teardown(test_socket_path_xdg, save_env, restore_env),
		cmocka_unit_test_setup_teardown(test_socket_path_no_xdg, save_env, restore_env),
		cmocka_unit_test_setup_teardown(test_socket_path_too_long, save_env, restore_env),
		cmocka_unit_test_setup_teardown(test_socket_path_configured, save_env, restore_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
