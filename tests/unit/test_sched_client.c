/*
 * Tests of the worker's registration with schedulers (src/worker/
 * sched_client.c, started by src/worker/service.c). A fake scheduler runs
 * in the test on src/rpc's server with a real self-signed certificate; it
 * records every RegisterWorker and Heartbeat and answers as told (a key to
 * hand out, an interval, UNAUTHENTICATED, reregister). A real worker
 * (unsafe-local, no token_key of its own) is started against it for each
 * test. Checked: what a registration carries (address with the bound port,
 * the worker certificate's pin, capacity, images, worker token), heartbeats
 * at the interval with free capacity, a new registration after
 * reregister=true, no registration past a wrong pin, retries without a
 * crash after UNAUTHENTICATED (logged once), that routing tokens verify
 * with the key a scheduler handed out (and any of several schedulers'
 * keys, and worker.ini's own key when both are configured) but not with
 * another key or a key that was replaced, that calls before any key get
 * UNAVAILABLE, and that worker_stop ends everything within a second.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "fs.h"
#include "log.h"
#include "rpc.h"
#include "sched_client.h"
#include "scheduler.pb-c.h"
#include "service.h"
#include "testutil.h"
#include "token.h"
#include "worker.pb-c.h"
#include "worker_config.h"
#include "x509.h"

#define IMG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define WORKER_ID "w1"
#define WORKER_TOKEN "worker-token-for-the-tests-0123"
#define CAPACITY 3  /* [runtime] max_parallel below */
#define MAX_RECORDED 256

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static char *log_path;  /* the whole group logs here */

/* ---- the fake scheduler -------------------------------------------------- */

struct fake {
	struct rpc_server *server;
	pthread_t thread;
	int port;
	char pin[DIGEST_STR_LEN + 1];
	pthread_mutex_t lock;
	/* behaviour, set by the test */
	int register_code;         /* GRPC_STATUS_OK or a refusal */
	bool reregister_next;      /* the next heartbeat answers reregister = true */
	unsigned interval_ms;
	struct token_key *key;     /* its public half is handed out */
	/* what arrived */
	unsigned n_register, n_register_ok, n_heartbeat;
	char reg_token[128], reg_id[64], reg_address[300], reg_fingerprint[80];
	unsigned reg_capacity;
	char reg_images[4][80];
	size_t reg_n_images;
	int64_t reg_ms[MAX_RECORDED];
	int64_t hb_ms[MAX_RECORDED];
	unsigned hb_free[MAX_RECORDED];
	size_t hb_n_images[MAX_RECORDED], hb_n_vms[MAX_RECORDED];
	char hb_token[128], hb_id[64];
};

static void fake_reply(struct rpc_call *c, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *out = malloc(n ? n : 1);
	if (!out) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	protobuf_c_message_pack(m, out);
	rpc_call_send(c, out, n);
	rpc_call_finish(c, GRPC_STATUS_OK, NULL);
	free(out);
}

static void fake_register(struct rpc_call *c, void *user)
{
	struct fake *f = user;
	struct buf msg;
	buf_init(&msg, 64 * 1024);
	if (rpc_call_recv(c, &msg) <= 0) {
		buf_free(&msg);
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request");
		return;
	}
	Hpcc__V1__RegisterWorkerRequest *req =
		hpcc__v1__register_worker_request__unpack(NULL, msg.len, (uint8_t *)msg.data);
	buf_free(&msg);
	if (!req) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed");
		return;
	}
	pthread_mutex_lock(&f->lock);
	if (f->n_register < MAX_RECORDED)
		f->reg_ms[f->n_register] = now_ms();
	f->n_register++;
	snprintf(f->reg_token, sizeof(f->reg_token), "%s", req->worker_token);
	snprintf(f->reg_id, sizeof(f->reg_id), "%s", req->worker_id);
	snprintf(f->reg_address, sizeof(f->reg_address), "%s", req->address);
	snprintf(f->reg_fingerprint, sizeof(f->reg_fingerprint), "%s", req->cert_fingerprint);
	f->reg_capacity = req->capacity;
	f->reg_n_images = req->n_images;
	for (size_t i = 0; i < req->n_images && i < 4; i++)
		snprintf(f->reg_images[i], sizeof(f->reg_images[i]), "%s", req->images[i]);
	int code = f->register_code;
	char *pem = NULL;
	if (code == GRPC_STATUS_OK && token_key_public_pem(f->key, &pem) == 0)
		f->n_register_ok++;
	else if (code == GRPC_STATUS_OK)
		code = GRPC_STATUS_INTERNAL;
	unsigned interval = f->interval_ms;
	pthread_mutex_unlock(&f->lock);
	hpcc__v1__register_worker_request__free_unpacked(req, NULL);
	if (code != GRPC_STATUS_OK) {
		rpc_call_finish(c, code, "worker 'w1': wrong worker token");
		return;
	}
	Hpcc__V1__RegisterWorkerReply rep = HPCC__V1__REGISTER_WORKER_REPLY__INIT;
	rep.routing_key_public_pem.data = (uint8_t *)pem;
	rep.routing_key_public_pem.len = strlen(pem);
	rep.heartbeat_interval_ms = interval;
	fake_reply(c, &rep.base);
	free(pem);
}

static void fake_heartbeat(struct rpc_call *c, void *user)
{
	struct fake *f = user;
	struct buf msg;
	buf_init(&msg, 64 * 1024);
	if (rpc_call_recv(c, &msg) <= 0) {
		buf_free(&msg);
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "no request");
		return;
	}
	Hpcc__V1__HeartbeatRequest *req = hpcc__v1__heartbeat_request__unpack(NULL, msg.len, (uint8_t *)msg.data);
	buf_free(&msg);
	if (!req) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed");
		return;
	}
	pthread_mutex_lock(&f->lock);
	unsigned i = f->n_heartbeat++;
	if (i < MAX_RECORDED) {
		f->hb_ms[i] = now_ms();
		f->hb_free[i] = req->free_capacity;
		f->hb_n_images[i] = req->n_images;
		f->hb_n_vms[i] = req->n_active_vms;
	}
	snprintf(f->hb_token, sizeof(f->hb_token), "%s", req->worker_token);
	snprintf(f->hb_id, sizeof(f->hb_id), "%s", req->worker_id);
	Hpcc__V1__HeartbeatReply rep = HPCC__V1__HEARTBEAT_REPLY__INIT;
	rep.reregister = f->reregister_next;
	f->reregister_next = false;
	pthread_mutex_unlock(&f->lock);
	hpcc__v1__heartbeat_request__free_unpacked(req, NULL);
	fake_reply(c, &rep.base);
}

static const struct rpc_method fake_methods[] = {
	{ "/hpcc.v1.SchedulerService/RegisterWorker", fake_register },
	{ "/hpcc.v1.SchedulerService/Heartbeat", fake_heartbeat },
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	rpc_server_run(f->server);
	return NULL;
}

static struct fake *fake_start(unsigned interval_ms)
{
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	pthread_mutex_init(&f->lock, NULL);
	f->register_code = GRPC_STATUS_OK;
	f->interval_ms = interval_ms;
	assert_int_equal(token_key_generate(&f->key), 0);
	char *cert = NULL, *key = NULL;
	struct error err = { 0 };
	const char *names[] = { "localhost" }, *ips[] = { "127.0.0.1" };
	assert_int_equal(x509_self_signed("fake-scheduler", names, 1, ips, 1, 1, &cert, &key, &err), 0);
	assert_int_equal(x509_fingerprint_pem(cert, f->pin), 0);
	struct rpc_server_config sc = { .listen = "127.0.0.1:0", .cert_pem = cert, .key_pem = key, .max_calls = 8 };
	if (rpc_server_new(&sc, fake_methods, ARRAY_SIZE(fake_methods), f, &f->server, &err) < 0)
		fail_msg("fake scheduler: %s", err.msg);
	free(cert);
	free(key);
	f->port = rpc_server_port(f->server);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

static void fake_stop(struct fake *f)
{
	rpc_server_shutdown(f->server);
	pthread_join(f->thread, NULL);
	rpc_server_free(f->server);
	token_key_free(f->key);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static unsigned fake_count(struct fake *f, const unsigned *counter)
{
	pthread_mutex_lock(&f->lock);
	unsigned n = *counter;
	pthread_mutex_unlock(&f->lock);
	return n;
}

/* Waits until *counter reaches n; false after ms. */
static bool fake_wait(struct fake *f, const unsigned *counter, unsigned n, int ms)
{
	for (int64_t end = now_ms() + ms; now_ms() < end; sleep_ms(5))
		if (fake_count(f, counter) >= n)
			return true;
	return fake_count(f, counter) >= n;
}

/* ---- the worker ------------------------------------------------------------ */

struct wfix {
	char *dir;
	char cert_pin[DIGEST_STR_LEN + 1];
	struct worker *worker;
	pthread_t thread;
	bool running;
	struct rpc_channel *ch;
	struct token_key *static_key;  /* worker.ini's token_key, when the test asks for one */
};

static void *worker_main(void *arg)
{
	struct wfix *wf = arg;
	worker_run(wf->worker);
	return NULL;
}

static void write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
	_cleanup_free_ char *path = path_join(dir, name);
	assert_non_null(path);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), mode, false), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* A worker whose [scheduler] section is sched (address, pin lines); with
 * static_key, worker.ini also names a token_key of its own. */
static void worker_start(struct wfix *wf, const char *sched, bool static_key, unsigned retry_ms)
{
	memset(wf, 0, sizeof(*wf));
	assert_int_equal(testutil_setup_tmpdir((void **)&wf->dir), 0);
	char *cert = NULL, *key = NULL;
	struct error err = { 0 };
	const char *names[] = { "localhost" }, *ips[] = { "127.0.0.1" };
	assert_int_equal(x509_self_signed("hpcc-worker-test", names, 1, ips, 1, 1, &cert, &key, &err), 0);
	assert_int_equal(x509_fingerprint_pem(cert, wf->cert_pin), 0);
	write_text(wf->dir, "cert.pem", cert, 0644);
	write_text(wf->dir, "key.pem", key, 0600);
	free(cert);
	free(key);
	write_text(wf->dir, "worker.token", WORKER_TOKEN "\n", 0600);
	if (static_key) {
		_cleanup_free_ char *pub = path_join(wf->dir, "token-verify.pem");
		assert_int_equal(token_key_generate(&wf->static_key), 0);
		assert_int_equal(token_key_save_public(wf->static_key, pub, &err), 0);
	}
	char ini[2048];
	snprintf(ini, sizeof(ini),
		 "[worker]\nid = " WORKER_ID "\nlisten = 127.0.0.1:0\ndir = state\ncert = cert.pem\nkey = key.pem\n"
		 "images = " IMG "\nmax_calls = 16\n%s"
		 "[runtime]\nkind = unsafe-local\nallow_unsafe_local = true\nmax_parallel = %d\n"
		 "[scheduler]\n%sworker_token_file = worker.token\n",
		 static_key ? "token_key = token-verify.pem\n" : "", CAPACITY, sched);
	write_text(wf->dir, "worker.ini", ini, 0600);
	_cleanup_free_ char *ini_path = path_join(wf->dir, "worker.ini");
	struct worker_config cfg;
	if (worker_config_load(ini_path, &cfg, &err) < 0)
		fail_msg("worker.ini: %s", err.msg);
	cfg.sched_retry_ms = retry_ms;
	if (worker_new(&cfg, &wf->worker, &err) < 0)
		fail_msg("worker_new: %s", err.msg);
	assert_int_equal(pthread_create(&wf->thread, NULL, worker_main, wf), 0);
	wf->running = true;
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", worker_port(wf->worker));
	struct rpc_channel_config cc = { .target = target, .pin = wf->cert_pin };
	assert_int_equal(rpc_channel_new(&cc, &wf->ch, &err), 0);
}

/* worker_stop and the end of worker_run; returns how long they took. */
static int64_t worker_halt(struct wfix *wf)
{
	int64_t start = now_ms();
	if (wf->running) {
		worker_stop(wf->worker);
		pthread_join(wf->thread, NULL);
		wf->running = false;
	}
	return now_ms() - start;
}

static void worker_end(struct wfix *wf)
{
	worker_halt(wf);
	rpc_channel_free(wf->ch);
	worker_free(wf->worker);
	token_key_free(wf->static_key);
	testutil_teardown_tmpdir((void **)&wf->dir);
}

static void sched_line(char *out, size_t n, const struct fake *const *f, size_t count)
{
	size_t len = (size_t)snprintf(out, n, "address =");
	for (size_t i = 0; i < count; i++)
		len += (size_t)snprintf(out + len, n - len, " 127.0.0.1:%d", f[i]->port);
	len += (size_t)snprintf(out + len, n - len, "\npin =");
	for (size_t i = 0; i < count; i++)
		len += (size_t)snprintf(out + len, n - len, " %s", f[i]->pin);
	snprintf(out + len, n - len, "\n");
}

/* A Probe of the worker with a token signed by key (expires_in may be negative). */
static void probe_with(struct wfix *wf, const struct token_key *key, int64_t issued_ago, struct rpc_status *st)
{
	int64_t now = (int64_t)time(NULL);
	struct token_claims c = { .issued_at = now - issued_ago, .expires_at = now - issued_ago + 300 };
	snprintf(c.tenant, sizeof(c.tenant), "tenant-a");
	snprintf(c.image_digest, sizeof(c.image_digest), "%s", IMG);
	snprintf(c.worker_id, sizeof(c.worker_id), "%s", WORKER_ID);
	struct buf tok;
	buf_init(&tok, TOKEN_MAX_SIZE);
	assert_int_equal(token_issue(key, &c, &tok), 0);
	uint8_t action[DIGEST_LEN] = { 1, 2, 3 };
	Hpcc__V1__ProbeRequest req = HPCC__V1__PROBE_REQUEST__INIT;
	req.token.data = (uint8_t *)tok.data;
	req.token.len = tok.len;
	req.action_digest.data = action;
	req.action_digest.len = DIGEST_LEN;
	size_t n = hpcc__v1__probe_request__get_packed_size(&req);
	uint8_t *msg = malloc(n);
	assert_non_null(msg);
	hpcc__v1__probe_request__pack(&req, msg);
	struct buf reply;
	buf_init(&reply, 1 << 20);
	memset(st, 0, sizeof(*st));
	assert_int_equal(rpc_unary(wf->ch, "/hpcc.v1.WorkerService/Probe", msg, n, 10000, &reply, st), 0);
	free(msg);
	buf_free(&reply);
	buf_free(&tok);
}

static void assert_probe(struct wfix *wf, const struct token_key *key, int code, const char *substring)
{
	struct rpc_status st;
	probe_with(wf, key, 0, &st);
	if (st.code != code || (substring && !strstr(st.msg, substring)))
		fail_msg("probe: expected %d '%s', got %d '%s'", code, substring ? substring : "", st.code, st.msg);
}

/* Waits (up to 2 s) until a token signed by key is accepted: the fake counts
 * its reply when it sends it, the worker installs the key a moment later. */
static void await_key(struct wfix *wf, const struct token_key *key)
{
	struct rpc_status st = { 0 };
	for (int i = 0; i < 100; i++) {
		probe_with(wf, key, 0, &st);
		if (st.code == GRPC_STATUS_OK)
			return;
		usleep(20 * 1000);
	}
	fail_msg("the worker never accepted the scheduler's key: %d '%s'", st.code, st.msg);
}

/* ---- the log --------------------------------------------------------------- */

static size_t log_size(void)
{
	struct stat st;
	return stat(log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* How often needle occurs in the log after offset `from`. */
static unsigned log_count(size_t from, const char *needle)
{
	struct buf b;
	buf_init(&b, 16 << 20);
	assert_int_equal(fs_read_file(log_path, 16 << 20, &b), 0);
	unsigned n = 0;
	for (const char *p = b.data + (from < b.len ? from : b.len); (p = strstr(p, needle)); p += strlen(needle))
		n++;
	buf_free(&b);
	return n;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_registration_fields(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	assert_true(fake_wait(f, &f->n_register_ok, 1, 5000));
	pthread_mutex_lock(&f->lock);
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%d", worker_port(wf.worker));
	/* listen 127.0.0.1:0: the port the worker bound is what clients dial. */
	assert_string_equal(f->reg_address, address);
	assert_string_equal(f->reg_fingerprint, wf.cert_pin);
	assert_string_equal(f->reg_id, WORKER_ID);
	assert_string_equal(f->reg_token, WORKER_TOKEN);
	assert_int_equal(f->reg_capacity, CAPACITY);
	assert_int_equal(f->reg_n_images, 1);
	assert_string_equal(f->reg_images[0], IMG);
	pthread_mutex_unlock(&f->lock);
	worker_end(&wf);
	fake_stop(f);
}

static void test_heartbeats(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	assert_true(fake_wait(f, &f->n_heartbeat, 6, 5000));
	pthread_mutex_lock(&f->lock);
	/* The first heartbeat comes one interval after the registration,
	 * then one per interval: neither a storm nor a gap that would get
	 * the worker dropped (1.5 intervals). */
	int64_t first = f->hb_ms[0] - f->reg_ms[0];
	print_message("  registration -> heartbeat %lld ms, heartbeats:", (long long)first);
	assert_true(first >= 150 && first <= 300);
	for (unsigned i = 1; i < 6; i++) {
		int64_t gap = f->hb_ms[i] - f->hb_ms[i - 1];
		print_message(" %lld", (long long)gap);
		assert_true(gap >= 150 && gap <= 300);
	}
	print_message(" ms\n");
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(f->hb_free[i], CAPACITY);  /* nothing compiles */
		assert_int_equal(f->hb_n_images[i], 1);
		assert_int_equal(f->hb_n_vms[i], 0);        /* unsafe-local has no VMs */
	}
	assert_string_equal(f->hb_token, WORKER_TOKEN);
	assert_string_equal(f->hb_id, WORKER_ID);
	/* One registration: heartbeats that succeed do not re-register. */
	assert_int_equal(f->n_register, 1);
	pthread_mutex_unlock(&f->lock);
	worker_end(&wf);
	fake_stop(f);
}

static void test_reregister(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	assert_true(fake_wait(f, &f->n_heartbeat, 1, 5000));
	size_t from = log_size();
	pthread_mutex_lock(&f->lock);
	f->reregister_next = true;
	unsigned hb = f->n_heartbeat;
	pthread_mutex_unlock(&f->lock);
	assert_true(fake_wait(f, &f->n_register_ok, 2, 5000));
	pthread_mutex_lock(&f->lock);
	/* At once, not an interval later. */
	int64_t delay = f->reg_ms[1] - f->hb_ms[hb];
	pthread_mutex_unlock(&f->lock);
	print_message("  reregister -> RegisterWorker in %lld ms\n", (long long)delay);
	assert_true(delay < 150);
	assert_true(fake_wait(f, &f->n_heartbeat, hb + 3, 5000));
	assert_int_equal(fake_count(f, &f->n_register), 2);
	assert_int_equal(log_count(from, "asks the worker to register again"), 1);
	worker_end(&wf);
	fake_stop(f);
}

static void test_wrong_pin(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	char sched[512];
	snprintf(sched, sizeof(sched), "address = 127.0.0.1:%d\npin = sha256:%064d\n", f->port, 0);
	size_t from = log_size();
	struct wfix wf;
	worker_start(&wf, sched, false, 50);
	sleep_ms(1000);
	/* The handshake failed: not one byte of a request reached the scheduler. */
	assert_int_equal(fake_count(f, &f->n_register), 0);
	assert_int_equal(fake_count(f, &f->n_heartbeat), 0);
	char needle[128];
	snprintf(needle, sizeof(needle), "scheduler 127.0.0.1:%d: registration failed (UNAVAILABLE", f->port);
	/* Logged once, though retried many times. */
	assert_int_equal(log_count(from, needle), 1);
	assert_true(log_count(from, "does not match the pinned fingerprint") >= 1);
	/* Without a key, calls are UNAVAILABLE: clients compile locally. */
	assert_probe(&wf, f->key, GRPC_STATUS_UNAVAILABLE, "worker not yet registered with a scheduler");
	worker_end(&wf);
	fake_stop(f);
}

static void test_unauthenticated(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	f->register_code = GRPC_STATUS_UNAUTHENTICATED;
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	size_t from = log_size();
	struct wfix wf;
	worker_start(&wf, sched, false, 50);
	/* Retried with backoff (50, 100, 200, 400 ms ...), not given up. */
	assert_true(fake_wait(f, &f->n_register, 4, 3000));
	assert_int_equal(fake_count(f, &f->n_register_ok), 0);
	assert_int_equal(fake_count(f, &f->n_heartbeat), 0);
	assert_int_equal(log_count(from, "refused the worker token"), 1);
	assert_probe(&wf, f->key, GRPC_STATUS_UNAVAILABLE, "not yet registered");
	/* The operator fixes the scheduler: the worker registers and serves. */
	pthread_mutex_lock(&f->lock);
	f->register_code = GRPC_STATUS_OK;
	pthread_mutex_unlock(&f->lock);
	assert_true(fake_wait(f, &f->n_register_ok, 1, 5000));
	await_key(&wf, f->key);
	assert_true(fake_wait(f, &f->n_heartbeat, 1, 5000));
	worker_end(&wf);
	fake_stop(f);
}

static void test_token_keys(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	assert_true(fake_wait(f, &f->n_register_ok, 1, 5000));
	await_key(&wf, f->key);
	struct token_key *other = NULL, *next = NULL, *first = NULL;
	assert_int_equal(token_key_generate(&other), 0);
	assert_int_equal(token_key_generate(&next), 0);
	pthread_mutex_lock(&f->lock);
	first = f->key;
	pthread_mutex_unlock(&f->lock);
	assert_probe(&wf, first, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, other, GRPC_STATUS_PERMISSION_DENIED, "signature");
	/* The key the token names is the one whose verdict counts: an
	 * expired token says so. */
	struct rpc_status st;
	probe_with(&wf, first, 400, &st);
	assert_int_equal(st.code, GRPC_STATUS_PERMISSION_DENIED);
	assert_non_null(strstr(st.msg, "expired"));

	/* The scheduler restarts with another key: after the new
	 * registration, tokens of the new key pass and fresh ones of the old
	 * key do not. */
	size_t from = log_size();
	pthread_mutex_lock(&f->lock);
	f->key = next;  /* first stays with the test, to sign old tokens */
	f->reregister_next = true;
	pthread_mutex_unlock(&f->lock);
	assert_true(fake_wait(f, &f->n_register_ok, 2, 5000));
	sleep_ms(50);  /* the reply reaches the worker after the fake counted it */
	assert_probe(&wf, next, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, first, GRPC_STATUS_PERMISSION_DENIED, "signature");
	assert_int_equal(log_count(from, "replacing"), 1);
	token_key_free(first);
	token_key_free(other);
	worker_end(&wf);
	fake_stop(f);
}

static void test_static_key_and_scheduler_key(void **state)
{
	(void)state;
	struct fake *f = fake_start(200);
	f->register_code = GRPC_STATUS_UNAUTHENTICATED;
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const[]){ f }, 1);
	struct wfix wf;
	worker_start(&wf, sched, true, 50);
	/* worker.ini's own key works before any scheduler answered. */
	assert_probe(&wf, wf.static_key, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, f->key, GRPC_STATUS_PERMISSION_DENIED, "signature");
	pthread_mutex_lock(&f->lock);
	f->register_code = GRPC_STATUS_OK;
	pthread_mutex_unlock(&f->lock);
	assert_true(fake_wait(f, &f->n_register_ok, 1, 5000));
	await_key(&wf, f->key);
	/* Both, once the scheduler handed its key out. */
	assert_probe(&wf, f->key, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, wf.static_key, GRPC_STATUS_OK, NULL);
	struct rpc_status st;
	probe_with(&wf, wf.static_key, 400, &st);
	assert_int_equal(st.code, GRPC_STATUS_PERMISSION_DENIED);
	assert_non_null(strstr(st.msg, "expired"));
	worker_end(&wf);
	fake_stop(f);
}

static void test_several_schedulers(void **state)
{
	(void)state;
	struct fake *f[2] = { fake_start(200), fake_start(300) };
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const *)f, 2);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	for (size_t i = 0; i < 2; i++) {
		assert_true(fake_wait(f[i], &f[i]->n_register_ok, 1, 5000));
		assert_true(fake_wait(f[i], &f[i]->n_heartbeat, 2, 5000));
	}
	sleep_ms(50);
	struct token_key *other = NULL;
	assert_int_equal(token_key_generate(&other), 0);
	assert_probe(&wf, f[0]->key, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, f[1]->key, GRPC_STATUS_OK, NULL);
	assert_probe(&wf, other, GRPC_STATUS_PERMISSION_DENIED, NULL);
	token_key_free(other);
	/* One replica goes away: the other keeps its heartbeats. */
	unsigned hb = fake_count(f[1], &f[1]->n_heartbeat);
	fake_stop(f[0]);
	assert_true(fake_wait(f[1], &f[1]->n_heartbeat, hb + 3, 5000));
	assert_int_equal(fake_count(f[1], &f[1]->n_register), 1);
	worker_end(&wf);
	fake_stop(f[1]);
}

static void test_stop_is_prompt(void **state)
{
	(void)state;
	/* A long interval: the threads are asleep when the stop comes. */
	struct fake *f[2] = { fake_start(60000), fake_start(200) };
	char sched[512];
	sched_line(sched, sizeof(sched), (const struct fake *const *)f, 2);
	struct wfix wf;
	worker_start(&wf, sched, false, 0);
	assert_true(fake_wait(f[0], &f[0]->n_register_ok, 1, 5000));
	assert_true(fake_wait(f[1], &f[1]->n_heartbeat, 2, 5000));
	int64_t took = worker_halt(&wf);
	print_message("  worker_stop and the end of worker_run: %lld ms\n", (long long)took);
	assert_true(took < 1000);
	/* Nothing is sent once it returned. */
	unsigned n0 = fake_count(f[1], &f[1]->n_heartbeat) + fake_count(f[1], &f[1]->n_register);
	sleep_ms(500);
	assert_int_equal(fake_count(f[1], &f[1]->n_heartbeat) + fake_count(f[1], &f[1]->n_register), n0);
	worker_end(&wf);
	fake_stop(f[0]);
	fake_stop(f[1]);

	/* A worker stopped before any scheduler was reached. */
	struct fake *g = fake_start(200);
	snprintf(sched, sizeof(sched), "address = 127.0.0.1:%d\npin = sha256:%064d\n", g->port, 0);
	worker_start(&wf, sched, false, 0);
	sleep_ms(100);
	took = worker_halt(&wf);
	assert_true(took < 1000);
	worker_end(&wf);
	fake_stop(g);
}

static void test_load_vms(void **state)
{
	(void)state;
	struct sched_load l = { 0 };
	assert_int_equal(sched_load_add_vm(&l, "a", IMG), 0);
	assert_int_equal(sched_load_add_vm(&l, "a", IMG), 0);  /* the same pair once */
	assert_int_equal(sched_load_add_vm(&l, "b", IMG), 0);
	char long_tenant[TOKEN_NAME_MAX + 2];
	memset(long_tenant, 't', sizeof(long_tenant) - 1);
	long_tenant[sizeof(long_tenant) - 1] = '\0';
	assert_int_equal(sched_load_add_vm(&l, long_tenant, IMG), 0);  /* dropped */
	assert_int_equal(l.n_vms, 2);
	for (unsigned i = 0; i < 2 * SCHED_MAX_ACTIVE_VMS; i++) {
		char t[16];
		snprintf(t, sizeof(t), "t%u", i);
		assert_int_equal(sched_load_add_vm(&l, t, IMG), 0);
	}
	assert_int_equal(l.n_vms, SCHED_MAX_ACTIVE_VMS);
	sched_load_free(&l);
	/* No key at all. */
	struct error err = { 0 };
	assert_int_equal(sched_client_verify(NULL, NULL, "x", 1, NULL, 0, NULL, &err), -EAGAIN);
	assert_non_null(strstr(err.msg, "not yet registered"));
}

static int group_setup(void **state)
{
	(void)state;
	rpc_global_init();
	char tmpl[] = "/tmp/hpcc-sched-client-log-XXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0)
		return -1;
	close(fd);
	log_path = strdup(tmpl);
	log_open(log_path, LOG_INFO);
	return log_path ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	log_close();
	unlink(log_path);
	free(log_path);
	rpc_global_shutdown();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registration_fields),
		cmocka_unit_test(test_heartbeats),
		cmocka_unit_test(test_reregister),
		cmocka_unit_test(test_wrong_pin),
		cmocka_unit_test(test_unauthenticated),
		cmocka_unit_test(test_token_keys),
		cmocka_unit_test(test_static_key_and_scheduler_key),
		cmocka_unit_test(test_several_schedulers),
		cmocka_unit_test(test_stop_is_prompt),
		cmocka_unit_test(test_load_vms),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
