/*
 * The fixture and client helpers of test_service.c: a real worker (worker.ini
 * in a temporary directory, self-signed certificate, Ed25519 token key,
 * runtime unsafe-local) served on a thread, a pinned channel to it, and
 * small wrappers that build, pack and send WorkerService requests and count
 * what the worker stored. Header-only, so the test stays one binary.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "action.h"
#include "buf.h"
#include "digest.h"
#include "fs.h"
#include "remote.pb-c.h"
#include "rpc.h"
#include "service.h"
#include "testutil.h"
#include "token.h"
#include "worker.pb-c.h"
#include "worker_config.h"
#include "x509.h"

#define M_PROBE "/hpcc.v1.WorkerService/Probe"
#define M_FIND_MISSING "/hpcc.v1.WorkerService/FindMissing"
#define M_UPLOAD "/hpcc.v1.WorkerService/Upload"
#define M_EXECUTE "/hpcc.v1.WorkerService/Execute"

#define IMG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define IMG_OTHER "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define WORKER_ID "w1"
#define MAX_BLOB ((size_t)1 << 20)
#define MAX_MESSAGE ((size_t)2 << 20)
#define CALL_MS 20000

static const char source_ok[] = "int f(void){return 1;}\n";
static const char source_bad[] = "int f(void){return x;}\n";
static const char header[] = "#define A 1\n";

/* The worker and the client, shared by every test of the group. */
static struct {
	char *dir;          /* the temporary directory of the whole fixture */
	char *tenants_dir;  /* <dir>/state/tenants */
	char *staging_dir;  /* <dir>/state/staging */
	struct token_key *key;        /* signs tokens the worker accepts */
	struct token_key *other_key;  /* signs tokens it must refuse */
	struct worker *worker;
	pthread_t thread;
	int run_result;
	struct rpc_channel *ch;
	char evil_path[128];  /* a file no request may create */
} fx;

/* ---- small helpers ----------------------------------------------------- */

static inline int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t n_found;

static inline int count_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)st;
	(void)ftw;
	if (flag == FTW_F || flag == FTW_SL || flag == FTW_SLN)
		n_found++;
	return 0;
}

/* Files (anything but directories) below dir; 0 when it does not exist. */
static inline size_t count_files(const char *dir)
{
	n_found = 0;
	nftw(dir, count_entry, 16, FTW_PHYS);
	return n_found;
}

static inline size_t stored_files(void) { return count_files(fx.tenants_dir); }

/* Entries left in the staging base directory (exec-* directories). */
static inline size_t staging_leftovers(void)
{
	struct stat st;
	if (stat(fx.staging_dir, &st) < 0)
		return 0;
	size_t n = 0;
	DIR *d = opendir(fx.staging_dir);
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* A status message a person can read in a log: not empty, one line, printable. */
static inline void assert_one_line(const struct rpc_status *st)
{
	size_t n = strlen(st->msg);
	if (n == 0 || strchr(st->msg, '\n') || strchr(st->msg, '\r'))
		fail_msg("status %d has no one-line message: '%s'", st->code, st->msg);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)st->msg[i] < 0x20)
			fail_msg("status message has a control character: '%s'", st->msg);
}

static inline void assert_status(const struct rpc_status *st, int code, const char *substring)
{
	if (st->code != code)
		fail_msg("expected status %d, got %d: '%s'", code, st->code, st->msg);
	if (code != GRPC_STATUS_OK)
		assert_one_line(st);
	if (substring && !strstr(st->msg, substring))
		fail_msg("status message '%s' does not mention '%s'", st->msg, substring);
}

static inline void assert_refused_auth(const struct rpc_status *st)
{
	print_message("  -> %d: %s\n", st->code, st->msg);
	if (st->code != GRPC_STATUS_PERMISSION_DENIED && st->code != GRPC_STATUS_UNAUTHENTICATED)
		fail_msg("expected a refusal, got %d: '%s'", st->code, st->msg);
	assert_one_line(st);
}

/* Packs any protobuf-c message into out (emptied first). */
static inline void pack(const ProtobufCMessage *m, struct buf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(n ? n : 1);
	assert_non_null(p);
	assert_int_equal(protobuf_c_message_pack(m, p), n);
	buf_reset(out);
	assert_int_equal(buf_append(out, p, n), 0);
	free(p);
}

static inline ProtobufCBinaryData bin(const void *data, size_t n)
{
	return (ProtobufCBinaryData){ .len = n, .data = (uint8_t *)data };
}

static inline uint8_t *find_bytes(uint8_t *hay, size_t n, const void *needle, size_t m)
{
	return memmem(hay, n, needle, m);
}

/* ---- tokens ------------------------------------------------------------ */

static inline void issue_with(const struct token_key *key, const char *tenant, const char *image, const char *worker,
		       int64_t issued_at, int ttl, struct buf *ret)
{
	struct token_claims c = { .issued_at = issued_at, .expires_at = issued_at + ttl };
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	snprintf(c.image_digest, sizeof(c.image_digest), "%s", image);
	snprintf(c.worker_id, sizeof(c.worker_id), "%s", worker);
	buf_init(ret, TOKEN_MAX_SIZE);
	assert_int_equal(token_issue(key, &c, ret), 0);
}

/* A token the worker accepts, for tenant. */
static inline void issue(const char *tenant, struct buf *ret)
{
	issue_with(fx.key, tenant, IMG, WORKER_ID, (int64_t)time(NULL), 300, ret);
}

/* ---- actions ----------------------------------------------------------- */

#define SPEC_MAX_INPUTS 4

/* An action and everything its protobuf structs point at. Must not move
 * once spec_init has run. */
struct spec {
	Hpcc__V1__Action action;
	Hpcc__V1__Command cmd;
	Hpcc__V1__Arg args[4];
	Hpcc__V1__Arg *arg_ptrs[4];
	Hpcc__V1__Arg source, output;
	Hpcc__V1__InputFile inputs[SPEC_MAX_INPUTS];
	Hpcc__V1__InputFile *input_ptrs[SPEC_MAX_INPUTS];
	struct digest digests[SPEC_MAX_INPUTS];
	const char *texts[SPEC_MAX_INPUTS];
	char *env[2];
};

static inline void spec_set_input(struct spec *s, size_t i, const char *path, const char *text)
{
	hpcc__v1__input_file__init(&s->inputs[i]);
	assert_int_equal(digest_bytes(text, strlen(text), &s->digests[i]), 0);
	s->inputs[i].path = (char *)path;
	s->inputs[i].digest = bin(s->digests[i].b, DIGEST_LEN);
	s->inputs[i].size = strlen(text);
	s->texts[i] = text;
	s->input_ptrs[i] = &s->inputs[i];
}

/* gcc -Iinc -x c -c a.c -o a.o, with a.c and inc/a.h as the manifest. */
static inline void spec_init(struct spec *s, const char *source_text)
{
	memset(s, 0, sizeof(*s));
	hpcc__v1__action__init(&s->action);
	hpcc__v1__command__init(&s->cmd);
	hpcc__v1__arg__init(&s->args[0]);
	s->args[0].flag = "-I";
	s->args[0].kind = HPCC__V1__PATH_KIND__PATH_RELATIVE;
	s->args[0].path = "inc";
	s->arg_ptrs[0] = &s->args[0];
	hpcc__v1__arg__init(&s->source);
	s->source.kind = HPCC__V1__PATH_KIND__PATH_RELATIVE;
	s->source.path = "a.c";
	hpcc__v1__arg__init(&s->output);
	s->output.kind = HPCC__V1__PATH_KIND__PATH_RELATIVE;
	s->output.path = "a.o";
	s->cmd.compiler = "gcc";
	s->cmd.family = 1;
	s->cmd.language = 0;
	s->cmd.n_args = 1;
	s->cmd.args = s->arg_ptrs;
	s->cmd.cwd = "";
	s->cmd.source = &s->source;
	s->cmd.output = &s->output;
	spec_set_input(s, 0, "a.c", source_text);
	spec_set_input(s, 1, "inc/a.h", header);
	s->action.image_digest = IMG;
	s->action.command = &s->cmd;
	s->action.n_inputs = 2;
	s->action.inputs = s->input_ptrs;
	s->action.mode = HPCC__V1__SOURCE_MODE__MODE_CAS;
}

static inline void pack_execute(const struct buf *tok, struct spec *s, struct buf *out)
{
	Hpcc__V1__ExecuteRequest req = HPCC__V1__EXECUTE_REQUEST__INIT;
	req.token = bin(tok->data, tok->len);
	req.action = &s->action;
	pack(&req.base, out);
}

/* ---- calls ------------------------------------------------------------- */

static inline void call_raw(const char *method, const void *req, size_t n, struct rpc_status *st, struct buf *reply)
{
	buf_init(reply, MAX_MESSAGE + 1024);
	memset(st, 0, sizeof(*st));
	assert_int_equal(rpc_unary(fx.ch, method, req, n, CALL_MS, reply, st), 0);
}

/* Sends each of msgs as one message of an Upload stream. */
static inline void upload_raw(const struct buf *msgs, size_t n, struct rpc_status *st, struct buf *reply)
{
	struct rpc_stream *s = NULL;
	buf_init(reply, 4096);
	memset(st, 0, sizeof(*st));
	assert_int_equal(rpc_stream_open(fx.ch, M_UPLOAD, CALL_MS, &s), 0);
	for (size_t i = 0; i < n; i++)
		if (rpc_stream_send(s, msgs[i].data, msgs[i].len) < 0)
			break;  /* refused: finish says why */
	assert_int_equal(rpc_stream_finish(s, reply, st), 0);
	rpc_stream_free(s);
}

static inline void upload_chunks(Hpcc__V1__UploadChunk *const *chunks, size_t n, struct rpc_status *st,
				 struct buf *reply)
{
	struct buf *msgs = calloc(n ? n : 1, sizeof(*msgs));
	assert_non_null(msgs);
	for (size_t i = 0; i < n; i++) {
		buf_init(&msgs[i], 0);
		pack(&chunks[i]->base, &msgs[i]);
	}
	upload_raw(msgs, n, st, reply);
	for (size_t i = 0; i < n; i++)
		buf_free(&msgs[i]);
	free(msgs);
}

/* Uploads texts (zstd, one chunk each) with tok; returns the reply's counts. */
static inline void upload_texts(const struct buf *tok, const char *const *texts, size_t n, struct rpc_status *st,
			 uint32_t *ret_stored)
{
	Hpcc__V1__UploadChunk *chunks = calloc(n, sizeof(*chunks));
	Hpcc__V1__UploadChunk **ptrs = calloc(n, sizeof(*ptrs));
	struct buf *storage = calloc(n, sizeof(*storage));
	assert_true(chunks && ptrs && storage);
	for (size_t i = 0; i < n; i++) {
		Hpcc__V1__Blob b;
		buf_init(&storage[i], 0);
		assert_int_equal(blob_pack(texts[i], strlen(texts[i]), 3, &b, &storage[i]), 0);
		hpcc__v1__upload_chunk__init(&chunks[i]);
		if (i == 0)
			chunks[i].token = bin(tok->data, tok->len);
		chunks[i].digest = b.digest;
		chunks[i].size = b.size;
		chunks[i].zstd = b.zstd;
		chunks[i].data = b.data;
		chunks[i].last = true;
		ptrs[i] = &chunks[i];
	}
	struct buf reply;
	upload_chunks(ptrs, n, st, &reply);
	if (st->code == GRPC_STATUS_OK && ret_stored) {
		Hpcc__V1__UploadReply *rep = hpcc__v1__upload_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		assert_non_null(rep);
		*ret_stored = rep->stored + rep->already_present;
		hpcc__v1__upload_reply__free_unpacked(rep, NULL);
	}
	buf_free(&reply);
	for (size_t i = 0; i < n; i++)
		buf_free(&storage[i]);
	free(storage);
	free(ptrs);
	free(chunks);
}

static inline void upload_spec(const struct buf *tok, const struct spec *s)
{
	struct rpc_status st;
	uint32_t n = 0;
	upload_texts(tok, s->texts, s->action.n_inputs, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(n, s->action.n_inputs);
}

/* Executes; returns the unpacked reply when the status is OK, else NULL. */
static inline Hpcc__V1__ExecuteReply *execute(const struct buf *tok, struct spec *s, struct rpc_status *st)
{
	struct buf msg, reply;
	buf_init(&msg, 0);
	pack_execute(tok, s, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, st, &reply);
	Hpcc__V1__ExecuteReply *rep = NULL;
	if (st->code == GRPC_STATUS_OK) {
		rep = hpcc__v1__execute_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		assert_non_null(rep);
		assert_non_null(rep->result);
	}
	buf_free(&msg);
	buf_free(&reply);
	return rep;
}

/* Probes; *ret_found says whether the action cache had it. ret_result
 * (may be NULL) gets the unpacked reply. */
static inline void probe_key(const struct buf *tok, const struct digest *key, bool direct, struct rpc_status *st,
		      bool *ret_found, size_t *ret_request_size, Hpcc__V1__ProbeReply **ret_reply)
{
	Hpcc__V1__ProbeRequest req = HPCC__V1__PROBE_REQUEST__INIT;
	req.token = bin(tok->data, tok->len);
	if (direct)
		req.direct_key = bin(key->b, DIGEST_LEN);
	else
		req.action_digest = bin(key->b, DIGEST_LEN);
	struct buf msg, reply;
	buf_init(&msg, 0);
	pack(&req.base, &msg);
	if (ret_request_size)
		*ret_request_size = msg.len;
	call_raw(M_PROBE, msg.data, msg.len, st, &reply);
	if (st->code == GRPC_STATUS_OK) {
		Hpcc__V1__ProbeReply *rep = hpcc__v1__probe_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		assert_non_null(rep);
		*ret_found = rep->found;
		if (rep->found)
			assert_non_null(rep->result);
		if (ret_reply)
			*ret_reply = rep;
		else
			hpcc__v1__probe_reply__free_unpacked(rep, NULL);
	}
	buf_free(&msg);
	buf_free(&reply);
}

static inline void probe(const struct buf *tok, const struct digest *action, struct rpc_status *st, bool *ret_found,
		  size_t *ret_request_size, Hpcc__V1__ProbeReply **ret_reply)
{
	probe_key(tok, action, false, st, ret_found, ret_request_size, ret_reply);
}

/* The direct key of a spec whose source is a.c (inputs[0]). */
static inline void spec_direct_key(const struct spec *s, struct digest *ret)
{
	assert_int_equal(action_direct_key(&s->action, "a.c", &s->digests[0], ret), 0);
}

/* FindMissing for digests; returns how many the worker says are missing. */
static inline size_t find_missing(const struct buf *tok, const struct digest *digests, size_t n, struct rpc_status *st)
{
	Hpcc__V1__FindMissingRequest req = HPCC__V1__FIND_MISSING_REQUEST__INIT;
	ProtobufCBinaryData *ds = calloc(n ? n : 1, sizeof(*ds));
	assert_non_null(ds);
	for (size_t i = 0; i < n; i++)
		ds[i] = bin(digests[i].b, DIGEST_LEN);
	req.token = bin(tok->data, tok->len);
	req.n_digests = n;
	req.digests = ds;
	struct buf msg, reply;
	buf_init(&msg, 0);
	pack(&req.base, &msg);
	call_raw(M_FIND_MISSING, msg.data, msg.len, st, &reply);
	size_t missing = SIZE_MAX;
	if (st->code == GRPC_STATUS_OK) {
		Hpcc__V1__FindMissingReply *rep =
			hpcc__v1__find_missing_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		assert_non_null(rep);
		missing = rep->n_missing;
		hpcc__v1__find_missing_reply__free_unpacked(rep, NULL);
	}
	free(ds);
	buf_free(&msg);
	buf_free(&reply);
	return missing;
}

static inline void unpack_blob(const Hpcc__V1__Blob *b, struct buf *out)
{
	struct error err = { 0 };
	buf_init(out, 0);
	if (blob_unpack(b, BLOB_MAX_SIZE, out, &err) < 0)
		fail_msg("a blob of the reply does not unpack: %s", err.msg);
}

static inline void assert_no_evil_file(void)
{
	struct stat st;
	assert_int_equal(stat("/tmp/evil.o", &st), -1);
	assert_int_equal(stat(fx.evil_path, &st), -1);
}

/* ---- fixture ----------------------------------------------------------- */

static inline void *worker_thread(void *arg)
{
	(void)arg;
	fx.run_result = worker_run(fx.worker);
	return NULL;
}

static inline int write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
	_cleanup_free_ char *path = path_join(dir, name);
	return path ? fs_write_atomic(path, text, strlen(text), mode, false) : -ENOMEM;
}

static inline int group_setup(void **state)
{
	(void)state;
	rpc_global_init();
	if (testutil_setup_tmpdir((void **)&fx.dir) < 0)
		return -1;
	fx.tenants_dir = path_join(fx.dir, "state/tenants");
	fx.staging_dir = path_join(fx.dir, "state/staging");
	snprintf(fx.evil_path, sizeof(fx.evil_path), "/tmp/hpcc-service-evil-%ld", (long)getpid());
	unlink(fx.evil_path);

	struct error err = { 0 };
	char *cert = NULL, *key = NULL;
	const char *names[] = { "localhost" }, *ips[] = { "127.0.0.1" };
	if (x509_self_signed("hpcc-worker-test", names, 1, ips, 1, 1, &cert, &key, &err) < 0)
		return -1;
	char pin[DIGEST_STR_LEN + 1];
	int r = x509_fingerprint_pem(cert, pin);
	if (r == 0)
		r = write_text(fx.dir, "cert.pem", cert, 0644);
	if (r == 0)
		r = write_text(fx.dir, "key.pem", key, 0600);
	free(cert);
	free(key);
	if (r < 0)
		return -1;

	_cleanup_free_ char *pub = path_join(fx.dir, "token-verify.pem");
	if (token_key_generate(&fx.key) < 0 || token_key_generate(&fx.other_key) < 0 ||
	    token_key_save_public(fx.key, pub, &err) < 0)
		return -1;

	char ini[1024];
	snprintf(ini, sizeof(ini),
		 "[worker]\nid = " WORKER_ID "\nlisten = 127.0.0.1:0\ndir = state\ncert = cert.pem\nkey = key.pem\n"
		 "token_key = token-verify.pem\nimages = " IMG "\nmax_calls = 16\n"
		 "[limits]\nmax_blob = 1M\nmax_message = 2M\nexec_timeout = 30\n"
		 /* Quotas (test_service.c, section 11): only these tenants have any. */
		 "tenant = quota-up upload_quota=4K upload_window=2s\n"
		 "tenant = quota-ex max_execs_per_tenant=1\n"
		 "tenant = quota-cas cas_quota=24K\n"
		 "[runtime]\nkind = unsafe-local\nallow_unsafe_local = true\n");
	_cleanup_free_ char *ini_path = path_join(fx.dir, "worker.ini");
	if (!ini_path || write_text(fx.dir, "worker.ini", ini, 0600) < 0)
		return -1;
	struct worker_config cfg;
	if (worker_config_load(ini_path, &cfg, &err) < 0) {
		fprintf(stderr, "worker.ini: %s\n", err.msg);
		return -1;
	}
	if (cfg.max_blob != MAX_BLOB || cfg.max_message != MAX_MESSAGE)
		return -1;
	if (worker_new(&cfg, &fx.worker, &err) < 0) {
		fprintf(stderr, "worker_new: %s\n", err.msg);
		return -1;
	}
	if (pthread_create(&fx.thread, NULL, worker_thread, NULL) != 0)
		return -1;

	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", worker_port(fx.worker));
	/* The client may send more than the worker takes: the cap under test is the worker's. */
	struct rpc_channel_config cc = { .target = target, .pin = pin, .max_message = (size_t)8 << 20 };
	if (rpc_channel_new(&cc, &fx.ch, &err) < 0) {
		fprintf(stderr, "rpc_channel_new: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static inline int group_teardown(void **state)
{
	(void)state;
	rpc_channel_free(fx.ch);
	if (fx.worker) {
		worker_stop(fx.worker);
		pthread_join(fx.thread, NULL);
		worker_free(fx.worker);
	}
	token_key_free(fx.key);
	token_key_free(fx.other_key);
	free(fx.tenants_dir);
	free(fx.staging_dir);
	testutil_teardown_tmpdir((void **)&fx.dir);
	unlink(fx.evil_path);
	rpc_global_shutdown();
	return 0;
}

/* The worker removes an exec's staging directory just after it answered:
 * give it a moment. */
static inline size_t staging_leftovers_settled(void)
{
	size_t n = staging_leftovers();
	for (int64_t end = now_ms() + 3000; n > 0 && now_ms() < end; n = staging_leftovers()) {
		struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return n;
}

/* Every test ends with no staging directory left and nothing written outside. */
static inline int test_teardown(void **state)
{
	(void)state;
	assert_int_equal(staging_leftovers_settled(), 0);
	assert_no_evil_file();
	return 0;
}
