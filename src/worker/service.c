/*
 * WorkerService handlers (see service.h). Every request is decoded with a
 * size cap, must re-encode to the very bytes received (no embedded NULs, no
 * unknown fields), carries a routing token that must verify for this worker
 * and one of its images, and only ever touches the namespace of the tenant
 * named by that token. Digests from the client are recomputed: uploaded
 * blobs are hashed before they are stored, and the action digest is derived
 * here from the action received. A probe reads only results this worker
 * stored itself.
 */
#include "service.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>

#include "action.h"
#include "audit.h"
#include "cas.h"
#include "depfile.h"
#include "fs.h"
#include "log.h"
#include "quota.h"
#include "rpc.h"
#include "image_store.h"
#include "runtime.h"
#include "sched_client.h"
#include "staging.h"
#include "tier.h"
#include "tier_gc.h"
#include "token.h"
#include "worker.pb-c.h"
#include "worker_init.h"
#include "x509.h"

#define MAX_CAPTURE ((size_t)8 << 20)
#define MAX_FIND_MISSING 100000
#define MAX_DEPFILE ((size_t)16 << 20)
#define MAX_INPUT_BYTES ((uint64_t)2 << 30)  /* all inputs of one action */
#define DIRECT_MAX_CANDIDATES 16
#define DIRECT_MAX_SIZE ((size_t)16 << 20)

#define VERIFIED_TOKENS 64

struct verified_token {
	bool used;
	struct digest digest;
	struct token_claims claims;
};

struct worker {
	struct worker_config cfg;
	pthread_mutex_t verified_lock;
	struct verified_token verified[VERIFIED_TOKENS];
	size_t verified_next;
	struct cas *cas;
	struct token_key *token_key;
	const struct runtime_ops *rt;
	void *rt_state;
	char *staging_dir;
	char *audit_dir;
	struct audit_log *audit;     /* NULL: [audit] enabled = false (bench only) */
	struct rpc_server *server;
	struct sched_client *sched;  /* NULL without [scheduler] */
	unsigned capacity;           /* compiles at once, as told to the scheduler */
	unsigned running;            /* compiles running now (atomic) */
	unsigned searches;           /* AuditRows calls reading the log now (atomic) */
	struct tier *tier;           /* NULL without [s3] */
	struct quota *quota;         /* [limits] per tenant (quota.h) */
	/* The background collection of the shared tier ([s3] gc_interval). */
	pthread_t gc_thread;
	bool gc_started, gc_stop;
	pthread_mutex_t gc_lock;
	pthread_cond_t gc_cond;
};

static int tier_setup(struct worker *w, struct error *err);
static void tier_stop(struct worker *w);

/* ---- shared checks ----------------------------------------------------- */

static int64_t now_s(void) { return (int64_t)time(NULL); }

/* A client sends the same token with every call for its few minutes of
 * life: tokens that verified are remembered by digest (a signature check
 * costs more than the rest of a probe), and only their expiry is checked
 * again. */
static bool verified_lookup(struct worker *w, const struct digest *d, struct token_claims *claims)
{
	bool found = false;
	pthread_mutex_lock(&w->verified_lock);
	for (size_t i = 0; i < VERIFIED_TOKENS && !found; i++) {
		if (w->verified[i].used && digest_equal(&w->verified[i].digest, d)) {
			*claims = w->verified[i].claims;
			found = true;
		}
	}
	pthread_mutex_unlock(&w->verified_lock);
	return found;
}

static void verified_add(struct worker *w, const struct digest *d, const struct token_claims *claims)
{
	pthread_mutex_lock(&w->verified_lock);
	size_t slot = w->verified_next++ % VERIFIED_TOKENS;
	w->verified[slot].used = true;
	w->verified[slot].digest = *d;
	w->verified[slot].claims = *claims;
	pthread_mutex_unlock(&w->verified_lock);
}

/* Verifies a routing token for this worker; fills *claims. */
static int authorize(struct worker *w, const ProtobufCBinaryData *tok, struct token_claims *claims, struct error *err)
{
	if (tok->len == 0)
		return error_set(err, -ENOKEY, "no routing token");
	if (tok->len > TOKEN_MAX_SIZE)
		return error_set(err, -E2BIG, "the routing token is too large");
	struct digest d;
	int64_t now = now_s();
	int r = digest_bytes(tok->data, tok->len, &d);
	if (r < 0)
		return error_set(err, r, "cannot digest the routing token");
	if (verified_lookup(w, &d, claims)) {
		if (claims->expires_at <= now)
			return error_set(err, -EKEYEXPIRED, "token expired %lld s ago", (long long)(now - claims->expires_at));
		return 0;
	}
	struct token_expect expect = { .worker_id = w->cfg.id };
	r = sched_client_verify(w->sched, w->token_key, tok->data, tok->len, &expect, now, claims, err);
	if (r < 0)
		return r;
	if (!worker_config_serves(&w->cfg, claims->image_digest))
		return error_set(err, -EACCES, "this worker does not serve image %s", claims->image_digest);
	if (!cas_tenant_name_ok(claims->tenant))
		return error_set(err, -EACCES, "bad tenant name in token");
	verified_add(w, &d, claims);
	return 0;
}

/* No token or an unreadable one: UNAUTHENTICATED; a token that does not
 * allow this: PERMISSION_DENIED; no key yet to check it (no scheduler
 * answered so far): UNAVAILABLE, so that the client compiles locally. */
static int auth_status(int r)
{
	return r == -EAGAIN ? GRPC_STATUS_UNAVAILABLE :
	       r == -ENOKEY || r == -E2BIG || r == -EBADMSG ? GRPC_STATUS_UNAUTHENTICATED : GRPC_STATUS_PERMISSION_DENIED;
}

static void finish_error(struct rpc_call *c, int code, const struct error *err, const char *what);

/* Receives, decodes (capped, canonical: see action_canonical) and
 * authorizes the one request of a unary call. Returns the message, to free
 * with protobuf_c_message_free_unpacked, or NULL when the call has already
 * been answered with an error. Every request keeps its routing token in a
 * field named "token". */
static ProtobufCMessage *receive_request(struct worker *w, struct rpc_call *c, const ProtobufCMessageDescriptor *desc,
					 size_t max, const char *what, struct token_claims *claims, size_t *ret_len)
{
	_cleanup_buf_ struct buf msg;
	buf_init(&msg, max);
	char text[160];
	if (rpc_call_recv(c, &msg) <= 0) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "expected one request message");
		return NULL;
	}
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, msg.len, (uint8_t *)msg.data);
	if (!m || !action_canonical(m, msg.len)) {
		if (m)
			protobuf_c_message_free_unpacked(m, NULL);
		snprintf(text, sizeof(text), "malformed %s (not protobuf, a NUL in a string, or an unknown field)", what);
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, text);
		return NULL;
	}
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, "token");
	const ProtobufCBinaryData *tok = (const ProtobufCBinaryData *)((const char *)m + f->offset);
	struct error err = { 0 };
	int r = authorize(w, tok, claims, &err);
	if (r < 0) {
		snprintf(text, sizeof(text), "%s refused", what);
		finish_error(c, auth_status(r), &err, text);
		protobuf_c_message_free_unpacked(m, NULL);
		return NULL;
	}
	if (ret_len)
		*ret_len = msg.len;
	return m;
}

/* A call over one of the tenant's limits: RESOURCE_EXHAUSTED with the
 * quota's message (limit, tenant, figure, when to retry). Not logged here:
 * the quota module logs refusals, rate-limited. */
static void finish_quota(struct rpc_call *c, const struct error *err, const char *what)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "%s: %s", what, err->msg);
	rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

static void finish_error(struct rpc_call *c, int code, const struct error *err, const char *what)
{
	char msg[600];
	/* err->msg is one printable line (error_set), whatever the client sent. */
	snprintf(msg, sizeof(msg), "%s: %s", what, err->msg[0] ? err->msg : "failed");
	log_info("%s %s", rpc_call_peer(c), msg);
	rpc_call_finish(c, code, msg);
}

/* ---- audit rows -------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The audit row of one answer (DESIGN §5), durable before the answer goes
 * out: a worker that cannot record an answer does not give it. The flags
 * and source columns come from the action when the request has one, else
 * from what the result recorded when it was produced (a probe hit, maybe
 * of a result another worker produced). *ret_line: the row as written
 * (NULL with the audit off). */
static int audit_answer(struct worker *w, const struct token_claims *claims, const struct digest *action,
			const char *flags, const char *source, const Hpcc__V1__ActionResult *res, const char *cache,
			int64_t duration_ms, char **ret_line, struct error *err)
{
	*ret_line = NULL;
	if (!w->audit)
		return 0;
	char src[DIGEST_STR_LEN + 1] = "-", output[DIGEST_STR_LEN + 1] = "-", act[DIGEST_STR_LEN + 1];
	struct digest d;
	if (source)
		snprintf(src, sizeof(src), "%s", source);
	else if (res->audit_source.len == DIGEST_LEN) {
		memcpy(d.b, res->audit_source.data, DIGEST_LEN);
		digest_to_string(&d, src);
	}
	if (res->n_outputs > 0 && res->outputs[0]->blob && res->outputs[0]->blob->digest.len == DIGEST_LEN) {
		memcpy(d.b, res->outputs[0]->blob->digest.data, DIGEST_LEN);
		digest_to_string(&d, output);
	}
	digest_to_string(action, act);
	struct audit_row row = {
		.image = claims->image_digest,
		.source_digest = src,
		.flags = flags ? flags : res->audit_flags && res->audit_flags[0] ? res->audit_flags : "-",
		.output_digest = output,
		.tenant = claims->tenant,
		.worker = w->cfg.id,
		.vm = res->runtime && res->runtime[0] ? res->runtime : "-",
		.duration_ms = duration_ms,
		.exit_code = res->exit_code,
		.action_digest = act,
		.cache = cache,
	};
	return audit_append(w->audit, &row, ret_line, err);
}

/* ---- Probe ------------------------------------------------------------- */

/* Appends one length-delimited protobuf field (tag byte, varint, bytes). */
static void append_field(struct buf *b, uint8_t tag, const void *data, size_t n)
{
	uint8_t head[16] = { tag };
	size_t len = 1;
	for (uint64_t v = n;; v >>= 7) {
		head[len++] = (uint8_t)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0);
		if (v < 0x80)
			break;
	}
	buf_append(b, head, len);
	buf_append(b, data, n);
}

static void handle_probe(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	struct token_claims claims;
	size_t received = 0;
	Hpcc__V1__ProbeRequest *req = (Hpcc__V1__ProbeRequest *)receive_request(
		w, c, &hpcc__v1__probe_request__descriptor, 64 * 1024, "probe", &claims, &received);
	if (!req)
		return;
	int r;
	bool direct = req->action_digest.len == 0;
	const ProtobufCBinaryData *k = direct ? &req->direct_key : &req->action_digest;
	if (k->len != DIGEST_LEN || (direct ? req->action_digest.len : req->direct_key.len) != 0) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "a probe names one 32-byte action digest or direct key");
		hpcc__v1__probe_request__free_unpacked(req, NULL);
		return;
	}
	struct digest d;
	memcpy(d.b, k->data, DIGEST_LEN);
	int64_t started = now_ms();
	/* Measured here, where it arrives: tens of bytes plus the token. */
	log_info("probe %s from tenant %s: request %zu bytes (token %zu)", rpc_call_peer(c), claims.tenant, received,
		 req->token.len);
	hpcc__v1__probe_request__free_unpacked(req, NULL);

	_cleanup_buf_ struct buf reply, manifest_bytes, result;
	buf_init(&reply, (size_t)w->cfg.max_message);
	buf_init(&manifest_bytes, DIRECT_MAX_SIZE + 1);
	buf_init(&result, (size_t)w->cfg.max_message);
	Hpcc__V1__DirectManifest *m = NULL;
	if (direct) {
		/* The candidates, and the result of the newest one inline: the
		 * usual hit is this one round trip. */
		if (cas_get_direct(w->cas, claims.tenant, &d, DIRECT_MAX_SIZE, &manifest_bytes) == 0)
			m = hpcc__v1__direct_manifest__unpack(NULL, manifest_bytes.len, (uint8_t *)manifest_bytes.data);
		if (m && m->n_candidates > 0 && m->candidates[m->n_candidates - 1]->action_digest.len == DIGEST_LEN)
			memcpy(d.b, m->candidates[m->n_candidates - 1]->action_digest.data, DIGEST_LEN);
		else
			memset(d.b, 0, DIGEST_LEN);
	}
	/* Room in the reply for the candidates, however small max_message is. */
	size_t room = (size_t)w->cfg.max_message > 2 * DIRECT_MAX_SIZE ? (size_t)w->cfg.max_message - DIRECT_MAX_SIZE - 64 :
									   (size_t)w->cfg.max_message / 2;
	r = digest_is_zero(&d) ? -ENOENT : cas_get_action(w->cas, claims.tenant, &d, room, &result);
	if (r < 0 && r != -ENOENT) {
		if (m)
			hpcc__v1__direct_manifest__free_unpacked(m, NULL);
		rpc_call_finish(c, GRPC_STATUS_INTERNAL, "the action cache could not be read");
		return;
	}
	/* A result that goes out is an answer: its row first. */
	_cleanup_free_ char *row = NULL;
	if (r == 0) {
		struct error err = { 0 };
		Hpcc__V1__ActionResult *ar = hpcc__v1__action_result__unpack(NULL, result.len, (uint8_t *)result.data);
		if (!ar)
			r = -ENOENT;  /* not readable: not served */
		else if (audit_answer(w, &claims, &d, NULL, NULL, ar, "hit", now_ms() - started, &row, &err) < 0) {
			hpcc__v1__action_result__free_unpacked(ar, NULL);
			if (m)
				hpcc__v1__direct_manifest__free_unpacked(m, NULL);
			log_error("%s", err.msg);
			rpc_call_finish(c, GRPC_STATUS_UNAVAILABLE, "the worker cannot write its audit log");
			return;
		}
		if (ar)
			hpcc__v1__action_result__free_unpacked(ar, NULL);
	}
	/* ProbeReply{found, result, candidates, audit_row}, encoded by hand
	 * around the stored bytes rather than parsed and re-packed. */
	if (r == 0) {
		static const uint8_t found[] = { 0x08, 0x01 };
		buf_append(&reply, found, sizeof(found));
		append_field(&reply, 0x12, result.data, result.len);
	}
	for (size_t i = 0; m && i < m->n_candidates; i++) {
		size_t len = hpcc__v1__direct_candidate__get_packed_size(m->candidates[i]);
		_cleanup_free_ uint8_t *cb = malloc(len ? len : 1);
		if (cb) {
			hpcc__v1__direct_candidate__pack(m->candidates[i], cb);
			append_field(&reply, 0x1a, cb, len);
		}
	}
	if (m)
		hpcc__v1__direct_manifest__free_unpacked(m, NULL);
	if (row)
		append_field(&reply, 0x22, row, strlen(row));
	if (reply.error) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "result too large");
		return;
	}
	rpc_call_send(c, reply.data, reply.len);
	rpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* ---- FindMissing ------------------------------------------------------- */

static void handle_find_missing(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	struct token_claims claims;
	Hpcc__V1__FindMissingRequest *req = (Hpcc__V1__FindMissingRequest *)receive_request(
		w, c, &hpcc__v1__find_missing_request__descriptor, (size_t)MAX_FIND_MISSING * 40 + 4096,
		"find-missing", &claims, NULL);
	if (!req)
		return;
	Hpcc__V1__FindMissingReply rep = HPCC__V1__FIND_MISSING_REPLY__INIT;
	if (req->n_digests <= MAX_FIND_MISSING)
		rep.missing = calloc(req->n_digests ? req->n_digests : 1, sizeof(*rep.missing));
	if (!rep.missing) {
		free(rep.missing);
		hpcc__v1__find_missing_request__free_unpacked(req, NULL);
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many digests");
		return;
	}
	for (size_t i = 0; i < req->n_digests; i++) {
		struct digest d;
		if (req->digests[i].len != DIGEST_LEN) {
			free(rep.missing);
			hpcc__v1__find_missing_request__free_unpacked(req, NULL);
			rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "a digest is 32 bytes");
			return;
		}
		memcpy(d.b, req->digests[i].data, DIGEST_LEN);
		if (!cas_has_blob(w->cas, claims.tenant, &d))
			rep.missing[rep.n_missing++] = req->digests[i];
	}
	size_t len = hpcc__v1__find_missing_reply__get_packed_size(&rep);
	_cleanup_free_ uint8_t *out = malloc(len ? len : 1);
	if (out) {
		hpcc__v1__find_missing_reply__pack(&rep, out);
		rpc_call_send(c, out, len);
		rpc_call_finish(c, GRPC_STATUS_OK, NULL);
	} else
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	free(rep.missing);
	hpcc__v1__find_missing_request__free_unpacked(req, NULL);
}

/* ---- Upload ------------------------------------------------------------ */

static void handle_upload(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	size_t max_compressed = (size_t)w->cfg.max_blob + (size_t)(w->cfg.max_blob >> 7) + 4096;
	_cleanup_buf_ struct buf msg, data, plain;
	buf_init(&msg, (size_t)w->cfg.max_message);
	buf_init(&data, max_compressed);
	buf_init(&plain, (size_t)w->cfg.max_blob + 1);
	struct token_claims claims;
	bool authorized = false;
	struct digest cur = { 0 };
	uint64_t cur_size = 0;
	bool cur_zstd = false, in_blob = false;
	/* The blob being received is charged to the tenant's upload window
	 * when it starts (its declared, uncompressed size), and refunded if it
	 * is not stored after all. */
	uint64_t charged = 0;
	int64_t charged_at = 0;
	Hpcc__V1__UploadReply rep = HPCC__V1__UPLOAD_REPLY__INIT;
	struct error err = { 0 };
	int code = GRPC_STATUS_OK;
	for (;;) {
		int r = rpc_call_recv(c, &msg);
		if (r == 0)
			break;
		if (r < 0) {
			code = r == -EFBIG ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_CANCELLED;
			error_set(&err, r, "the stream broke off");
			break;
		}
		Hpcc__V1__UploadChunk *ch = hpcc__v1__upload_chunk__unpack(NULL, msg.len, (uint8_t *)msg.data);
		if (!ch || !action_canonical(&ch->base, msg.len)) {
			if (ch)
				hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
			code = GRPC_STATUS_INVALID_ARGUMENT;
			error_set(&err, -EBADMSG, "malformed chunk");
			break;
		}
		if (!authorized) {
			r = authorize(w, &ch->token, &claims, &err);
			if (r < 0) {
				hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
				code = auth_status(r);
				break;
			}
			authorized = true;
		}
		if (!in_blob) {
			if (ch->digest.len != DIGEST_LEN || ch->size > w->cfg.max_blob) {
				code = ch->digest.len != DIGEST_LEN ? GRPC_STATUS_INVALID_ARGUMENT :
								       GRPC_STATUS_RESOURCE_EXHAUSTED;
				error_set(&err, -EINVAL, ch->digest.len != DIGEST_LEN ? "a digest is 32 bytes" :
					  "a blob of %llu bytes is over the limit of %llu", (unsigned long long)ch->size,
					  (unsigned long long)w->cfg.max_blob);
				hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
				break;
			}
			memcpy(cur.b, ch->digest.data, DIGEST_LEN);
			cur_size = ch->size;
			cur_zstd = ch->zstd;
			in_blob = true;
			buf_reset(&data);
			if (!cas_has_blob(w->cas, claims.tenant, &cur)) {
				charged_at = now_ms();
				if (quota_upload_charge(w->quota, claims.tenant, cur_size, charged_at, &err) < 0) {
					hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
					code = GRPC_STATUS_RESOURCE_EXHAUSTED;
					break;
				}
				charged = cur_size;
			}
		} else if ((ch->digest.len && (ch->digest.len != DIGEST_LEN || memcmp(ch->digest.data, cur.b, DIGEST_LEN))) ||
			   (ch->size && ch->size != cur_size)) {
			hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
			code = GRPC_STATUS_INVALID_ARGUMENT;
			error_set(&err, -EINVAL, "a chunk of another blob before the last one ended");
			break;
		}
		r = buf_append(&data, ch->data.data, ch->data.len);
		bool last = ch->last;
		hpcc__v1__upload_chunk__free_unpacked(ch, NULL);
		if (r < 0) {
			code = GRPC_STATUS_RESOURCE_EXHAUSTED;
			error_set(&err, r, "a blob is larger than the limit");
			break;
		}
		if (!last)
			continue;
		in_blob = false;
		Hpcc__V1__Blob b = HPCC__V1__BLOB__INIT;
		b.digest.data = cur.b;
		b.digest.len = DIGEST_LEN;
		b.size = cur_size;
		b.zstd = cur_zstd;
		b.data.data = (uint8_t *)data.data;
		b.data.len = data.len;
		/* The bytes are hashed here before anything is stored. */
		if ((r = blob_unpack(&b, (size_t)w->cfg.max_blob, &plain, &err)) < 0) {
			code = r == -EFBIG ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT;
			break;
		}
		if (cas_has_blob(w->cas, claims.tenant, &cur))
			rep.already_present++;
		else if ((r = cas_put_blob(w->cas, claims.tenant, &cur, plain.data, plain.len)) < 0) {
			code = r == -EDQUOT ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL;
			if (r == -EDQUOT)
				cas_quota_message(w->cas, claims.tenant, plain.len, &err);
			else
				error_set(&err, r, "storing a blob: %s", strerror(-r));
			break;
		} else {
			rep.stored++;
			charged = 0;
		}
		if (charged) {
			quota_upload_refund(w->quota, claims.tenant, charged, charged_at);
			charged = 0;
		}
	}
	if (charged)
		quota_upload_refund(w->quota, claims.tenant, charged, charged_at);
	if (code == GRPC_STATUS_OK && in_blob) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		error_set(&err, -EINVAL, "the stream ended inside a blob");
	}
	if (code == GRPC_STATUS_OK && !authorized) {
		code = GRPC_STATUS_UNAUTHENTICATED;
		error_set(&err, -EACCES, "no routing token");
	}
	if (code != GRPC_STATUS_OK) {
		if (err.code == -EDQUOT)
			finish_quota(c, &err, "upload refused");
		else
			finish_error(c, code, &err, "upload refused");
		return;
	}
	uint8_t out[32];
	size_t len = hpcc__v1__upload_reply__pack(&rep, out);
	rpc_call_send(c, out, len);
	rpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* ---- Execute ----------------------------------------------------------- */

struct exec_state {
	struct staging *staging;
	struct runtime_input *inputs; /* what a microVM runtime ships */
	struct strv rt_outputs;       /* what it brings back: root/..., tmp/deps.d */
	struct runtime_result rr;
	struct strv out_paths;
	struct buf files[2];
	struct buf store[4];          /* compressed bytes behind the result's blobs */
	Hpcc__V1__Blob blobs[4];
	Hpcc__V1__OutputFile outs[2];
	Hpcc__V1__OutputFile *out_ptrs[2];
	Hpcc__V1__Dependency *deps;
	Hpcc__V1__Dependency **dep_ptrs;
	struct depfile df;
	struct strv dep_paths;
	struct strv canonical;
};

static void exec_state_free(struct exec_state *x)
{
	free(x->inputs);
	strv_free(&x->rt_outputs);
	if (x->staging)
		staging_destroy(x->staging);
	runtime_result_free(&x->rr);
	strv_free(&x->out_paths);
	for (size_t i = 0; i < ARRAY_SIZE(x->files); i++)
		buf_free(&x->files[i]);
	for (size_t i = 0; i < ARRAY_SIZE(x->store); i++)
		buf_free(&x->store[i]);
	free(x->deps);
	free(x->dep_ptrs);
	depfile_free(&x->df);
	strv_free(&x->dep_paths);
	strv_free(&x->canonical);
}

/* The compile's own dependency list, spelled as the compiler spelled it
 * (the staging root taken off rooted absolute paths), and in x->canonical
 * the root-relative paths of the files under the root that it read. */
static int collect_deps(struct exec_state *x, const char *root, const char *cwd, const char *depfile,
			Hpcc__V1__ActionResult *res)
{
	_cleanup_buf_ struct buf text;
	buf_init(&text, MAX_DEPFILE + 1);
	int r = fs_read_file(depfile, MAX_DEPFILE, &text);
	if (r < 0 || (r = depfile_parse(text.data ? text.data : "", text.len, &x->df)) < 0)
		return r;
	size_t n = x->df.deps.n;
	x->deps = calloc(n ? n : 1, sizeof(*x->deps));
	x->dep_ptrs = calloc(n ? n : 1, sizeof(*x->dep_ptrs));
	if (!x->deps || !x->dep_ptrs)
		return -ENOMEM;
	_cleanup_free_ char *cwd_abs = cwd[0] ? path_join(root, cwd) : strdup(root);
	if (!cwd_abs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *spelled = x->df.deps.v[i];
		const char *under = spelled[0] == '/' ? path_under(spelled, root) : NULL;
		_cleanup_free_ char *abs = path_join(cwd_abs, spelled);
		if (!abs)
			return -ENOMEM;
		const char *rel = path_under(abs, root);
		if ((r = strv_push(&x->dep_paths, under ? under : spelled)) < 0 ||
		    (rel && (r = strv_push(&x->canonical, rel)) < 0))
			return r;
		hpcc__v1__dependency__init(&x->deps[i]);
		x->deps[i].path = x->dep_paths.v[i];
		x->deps[i].rooted = under != NULL;
		x->dep_ptrs[i] = &x->deps[i];
	}
	res->n_dependencies = n;
	res->dependencies = x->dep_ptrs;
	return 0;
}

/* Adds this compile to the direct manifest of its command and source: the
 * inputs it actually read, and its action digest. At most
 * DIRECT_MAX_CANDIDATES, newest last; a lost race between two writers
 * loses a candidate, never correctness. */
static void remember_direct(struct worker *w, const char *tenant, const Hpcc__V1__Action *a,
			    const struct digest *action, const struct exec_state *x, const void *result, size_t result_len)
{
	_cleanup_free_ char *source = action_rooted_path(a->command, a->command->source);
	const Hpcc__V1__InputFile *src = NULL;
	for (size_t i = 0; source && i < a->n_inputs && !src; i++)
		if (strcmp(a->inputs[i]->path, source) == 0)
			src = a->inputs[i];
	struct digest sd, key;
	if (!src)
		return;
	memcpy(sd.b, src->digest.data, DIGEST_LEN);
	if (action_direct_key(a, source, &sd, &key) < 0)
		return;
	_cleanup_buf_ struct buf old_bytes;
	buf_init(&old_bytes, DIRECT_MAX_SIZE + 1);
	Hpcc__V1__DirectManifest *old = NULL;
	/* The local copy only: the reply is waiting (this runs before it is sent). */
	if (cas_get_direct_local(w->cas, tenant, &key, DIRECT_MAX_SIZE, &old_bytes) == 0)
		old = hpcc__v1__direct_manifest__unpack(NULL, old_bytes.len, (uint8_t *)old_bytes.data);
	size_t keep = old ? old->n_candidates : 0;
	_cleanup_free_ Hpcc__V1__DirectCandidate **cands = calloc(keep + 1, sizeof(*cands));
	_cleanup_free_ Hpcc__V1__InputFile **read = calloc(a->n_inputs + 1, sizeof(*read));
	Hpcc__V1__DirectCandidate fresh = HPCC__V1__DIRECT_CANDIDATE__INIT;
	Hpcc__V1__DirectManifest m = HPCC__V1__DIRECT_MANIFEST__INIT;
	if (cands && read) {
		size_t skip = keep >= DIRECT_MAX_CANDIDATES ? keep - DIRECT_MAX_CANDIDATES + 1 : 0;
		for (size_t i = skip; i < keep; i++) {
			const ProtobufCBinaryData *ad = &old->candidates[i]->action_digest;
			if (ad->len == DIGEST_LEN && memcmp(ad->data, action->b, DIGEST_LEN) == 0)
				continue;
			cands[m.n_candidates++] = old->candidates[i];
		}
		for (size_t i = 0; i < a->n_inputs; i++)
			for (size_t k = 0; k < x->canonical.n; k++)
				if (strcmp(a->inputs[i]->path, x->canonical.v[k]) == 0) {
					read[fresh.n_inputs++] = a->inputs[i];
					break;
				}
		fresh.inputs = read;
		fresh.action_digest.data = (uint8_t *)action->b;
		fresh.action_digest.len = DIGEST_LEN;
		cands[m.n_candidates++] = &fresh;
		m.candidates = cands;
		size_t len = hpcc__v1__direct_manifest__get_packed_size(&m);
		_cleanup_free_ uint8_t *packed = len <= DIRECT_MAX_SIZE ? malloc(len ? len : 1) : NULL;
		if (packed) {
			hpcc__v1__direct_manifest__pack(&m, packed);
			cas_put_direct(w->cas, tenant, &key, packed, len, action, result, result_len);
		}
	}
	if (old)
		hpcc__v1__direct_manifest__free_unpacked(old, NULL);
}

/* Stages the inputs: CAS blobs (re-verified as they are read), or the one
 * preprocessed file that came with the request. */
static int stage_inputs(struct worker *w, const char *tenant, const Hpcc__V1__ExecuteRequest *req,
			struct staging *s, size_t *ret_missing, struct error *err)
{
	const Hpcc__V1__Action *a = req->action;
	_cleanup_buf_ struct buf data;
	buf_init(&data, (size_t)w->cfg.max_blob + 1);
	uint64_t total = 0;
	size_t missing = 0;
	int r;
	if (a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED) {
		if (a->n_inputs != 1 || !req->preprocessed)
			return error_set(err, -EINVAL, "preprocessed mode takes exactly one input, sent inline");
		if ((r = blob_unpack(req->preprocessed, (size_t)w->cfg.max_blob, &data, err)) < 0)
			return r;
		if (req->preprocessed->digest.len != DIGEST_LEN ||
		    memcmp(req->preprocessed->digest.data, a->inputs[0]->digest.data, DIGEST_LEN) != 0 ||
		    data.len != a->inputs[0]->size)
			return error_set(err, -EINVAL, "the preprocessed source does not match the manifest");
		/* Kept like an uploaded input, for `hpcc reproduce` (which sends
		 * no source); cas_put_blob re-checks the digest. It is an upload:
		 * charged to the tenant's window. Over the tenant's CAS cap it is
		 * not kept (that action cannot be reproduced), but the compile
		 * runs: it needs nothing from the store. */
		struct digest d;
		memcpy(d.b, a->inputs[0]->digest.data, DIGEST_LEN);
		if (!req->skip_cache && !cas_has_blob(w->cas, tenant, &d)) {
			int64_t at = now_ms();
			if ((r = quota_upload_charge(w->quota, tenant, data.len, at, err)) < 0)
				return r;
			if ((r = cas_put_blob(w->cas, tenant, &d, data.data, data.len)) < 0) {
				quota_upload_refund(w->quota, tenant, data.len, at);
				log_info("tenant %s: preprocessed source not kept for reproduce: %s", tenant,
					 r == -EDQUOT ? "over the CAS cap" : strerror(-r));
			}
		}
		return staging_write_file(s, a->inputs[0]->path, data.data, data.len, false, err);
	}
	for (size_t i = 0; i < a->n_inputs; i++) {
		const Hpcc__V1__InputFile *f = a->inputs[i];
		struct digest d;
		memcpy(d.b, f->digest.data, DIGEST_LEN);
		if ((total += f->size) > MAX_INPUT_BYTES)
			return error_set(err, -EFBIG, "the inputs exceed %llu bytes", (unsigned long long)MAX_INPUT_BYTES);
		r = cas_get_blob(w->cas, tenant, &d, (size_t)w->cfg.max_blob, &data);
		if (r == -ENOENT) {
			missing++;
			continue;
		}
		if (r < 0)
			return error_set(err, r, "reading a blob: %s", strerror(-r));
		if (data.len != f->size)
			return error_set(err, -EINVAL, "input %.200s: size does not match its blob", f->path);
		if (missing == 0 && (r = staging_write_file(s, f->path, data.data, data.len, f->executable, err)) < 0)
			return r;
	}
	*ret_missing = missing;
	return missing ? error_set(err, -ENOENT, "%zu input blobs are missing", missing) : 0;
}

static int parent_dirs(struct staging *s, const struct strv *paths, struct error *err)
{
	for (size_t i = 0; i < paths->n; i++) {
		_cleanup_free_ char *dir = strdup(paths->v[i]);
		char *slash = dir ? strrchr(dir, '/') : NULL;
		if (!dir)
			return -ENOMEM;
		if (!slash)
			continue;
		*slash = '\0';
		int r = staging_mkdir(s, dir, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Runs an action: 0 with *res filled (any exit code), or an error status. */
static int execute(struct worker *w, const char *tenant, const Hpcc__V1__ExecuteRequest *req,
		   const struct digest *action, struct exec_state *x, Hpcc__V1__ActionResult *res, int *ret_code,
		   struct error *err)
{
	const Hpcc__V1__Action *a = req->action;
	const Hpcc__V1__Command *cmd = a->command;
	size_t missing = 0;
	int r = staging_create(w->staging_dir, &x->staging, err);
	if (r < 0) {
		*ret_code = GRPC_STATUS_INTERNAL;
		return r;
	}
	if ((r = stage_inputs(w, tenant, req, x->staging, &missing, err)) < 0) {
		*ret_code = missing ? GRPC_STATUS_FAILED_PRECONDITION :
			    r == -EFBIG || r == -EDQUOT ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT;
		return r;
	}
	*ret_code = GRPC_STATUS_INVALID_ARGUMENT;
	if ((r = action_output_paths(cmd, &x->out_paths)) < 0 || (r = parent_dirs(x->staging, &x->out_paths, err)) < 0 ||
	    (r = staging_mkdir(x->staging, cmd->cwd, err)) < 0)
		return r < 0 && !err->code ? error_set(err, r, "staging: %s", strerror(-r)) : r;
	const char *root = staging_root(x->staging);
	_cleanup_strv_ struct strv argv = { 0 };
	_cleanup_free_ char *depfile = path_join(staging_tmp(x->staging), "deps.d");
	/* A preprocessed source reads nothing else: no dependency list. */
	bool preprocessed = a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	if (!depfile || (r = action_argv(cmd, preprocessed, root, &argv)) < 0 ||
	    (!preprocessed && ((r = strv_push(&argv, "-MD")) < 0 || (r = strv_push(&argv, "-MF")) < 0 ||
			       (r = strv_push(&argv, depfile)) < 0)) ||
	    (r = strv_pushf(&argv, "-ffile-prefix-map=%s=.", root)) < 0 ||
	    (r = strv_push(&argv, cmd->family == 2 ? "-fcolor-diagnostics" : "-fdiagnostics-color=always")) < 0) {
		*ret_code = GRPC_STATUS_INTERNAL;
		return error_set(err, -ENOMEM, "out of memory");
	}
	_cleanup_strv_ struct strv env = { 0 };
	if ((r = strv_extend(&env, cmd->env, cmd->n_env)) < 0)
		return error_set(err, r, "out of memory");
	/* A runtime that runs the compiler elsewhere ships the staged inputs
	 * and brings back the outputs and the dependency list. */
	if (!(x->inputs = calloc(a->n_inputs ? a->n_inputs : 1, sizeof(*x->inputs))))
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < a->n_inputs; i++)
		x->inputs[i] = (struct runtime_input){ .path = a->inputs[i]->path, .executable = a->inputs[i]->executable };
	for (size_t i = 0; i < x->out_paths.n; i++)
		if ((r = strv_pushf(&x->rt_outputs, "root/%s", x->out_paths.v[i])) < 0)
			return error_set(err, r, "out of memory");
	if (!preprocessed && (r = strv_push(&x->rt_outputs, "tmp/deps.d")) < 0)
		return error_set(err, r, "out of memory");
	struct runtime_exec rx = {
		.argv = (const char *const *)argv.v,
		.env = (const char *const *)env.v,
		.staging = x->staging,
		.cwd = cmd->cwd,
		.timeout_ms = (int)w->cfg.exec_timeout * 1000,
		.max_stdout = MAX_CAPTURE,
		.max_stderr = MAX_CAPTURE,
		.tenant = tenant,
		.image = a->image_digest,
		.inputs = x->inputs,
		.n_inputs = a->n_inputs,
		.outputs = (const char *const *)x->rt_outputs.v,
		.max_output_file = (size_t)w->cfg.max_blob,
	};
	if ((r = w->rt->exec(w->rt_state, &rx, &x->rr, err)) < 0) {
		/* -EDQUOT: the tenant's VMs were all busy for [limits] vm_wait. */
		*ret_code = r == -EINVAL ? GRPC_STATUS_INVALID_ARGUMENT :
			    r == -EDQUOT ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
		if (r == -EDQUOT)
			quota_refused(w->quota, QUOTA_VMS, err);
		return r;
	}
	*ret_code = GRPC_STATUS_INTERNAL;
	res->exit_code = x->rr.exit_code;
	res->worker_id = w->cfg.id;
	res->runtime = x->rr.vm[0] ? x->rr.vm : (char *)w->rt->name;
	res->duration_ms = x->rr.duration_us / 1000;
	res->action_digest.data = (uint8_t *)action->b;
	res->action_digest.len = DIGEST_LEN;
	if ((r = blob_pack(x->rr.out.data, x->rr.out.len, 3, &x->blobs[0], &x->store[0])) < 0 ||
	    (r = blob_pack(x->rr.err.data, x->rr.err.len, 3, &x->blobs[1], &x->store[1])) < 0)
		return error_set(err, r, "compressing output: %s", strerror(-r));
	res->stdout_data = &x->blobs[0];
	res->stderr_data = &x->blobs[1];
	if (x->rr.exit_code != 0 || x->rr.timed_out || x->rr.stdout_truncated || x->rr.stderr_truncated)
		return 0;
	for (size_t i = 0; i < x->out_paths.n && i < ARRAY_SIZE(x->files); i++) {
		buf_init(&x->files[i], (size_t)w->cfg.max_blob + 1);
		if ((r = staging_read_file(x->staging, x->out_paths.v[i], (size_t)w->cfg.max_blob, &x->files[i], err)) < 0)
			return r;
		if ((r = blob_pack(x->files[i].data, x->files[i].len, 3, &x->blobs[2 + i], &x->store[2 + i])) < 0)
			return error_set(err, r, "compressing output: %s", strerror(-r));
		hpcc__v1__output_file__init(&x->outs[i]);
		x->outs[i].path = x->out_paths.v[i];
		x->outs[i].kind = HPCC__V1__PATH_KIND__PATH_ROOTED;
		x->outs[i].blob = &x->blobs[2 + i];
		x->out_ptrs[i] = &x->outs[i];
	}
	res->n_outputs = x->out_paths.n < 2 ? x->out_paths.n : 2;
	res->outputs = x->out_ptrs;
	if (!preprocessed && (r = collect_deps(x, root, cmd->cwd, depfile, res)) < 0)
		return error_set(err, r, "the compiler's dependency list: %s", strerror(-r));
	return 0;
}

/* One argument as a POSIX shell reads it back: bare when it holds only
 * safe characters, else in single quotes ('\'' for a quote). */
static int append_shell_word(struct buf *b, const char *s)
{
	static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%+,-./:=@_";
	if (*s && strspn(s, safe) == strlen(s))
		return buf_append_str(b, s);
	int r = buf_append_char(b, '\'');
	for (; r == 0 && *s; s++)
		r = *s == '\'' ? buf_append_str(b, "'\\''") : buf_append_char(b, *s);
	return r == 0 ? buf_append_char(b, '\'') : r;
}

/* The command as the audit row's flags column shows it: root-relative,
 * shell-quoted (argument boundaries survive), one line once escaped. Built
 * before the compile runs, so that a command too long for a row is refused
 * instead of run without one. */
static int audit_flags(const Hpcc__V1__Action *a, struct buf *ret, struct error *err)
{
	bool preprocessed = a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	_cleanup_strv_ struct strv argv = { 0 };
	int r = action_argv(a->command, preprocessed, ".", &argv);
	for (size_t i = 0; r == 0 && i < argv.n; i++)
		if ((r = i ? buf_append_char(ret, ' ') : 0) == 0)
			r = append_shell_word(ret, argv.v[i]);
	if (r == 0)
		r = buf_append_char(ret, '\0');
	if (r < 0)
		return error_set(err, -E2BIG, "the command is too long for an audit row (at most %d bytes)",
				 AUDIT_FLAGS_MAX);
	return 0;
}

/* The source: the input at the source argument's root-relative path (the
 * only input in preprocessed mode); NULL when there is none. */
static const Hpcc__V1__InputFile *action_source(const Hpcc__V1__Action *a)
{
	const Hpcc__V1__Command *cmd = a->command;
	bool preprocessed = a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	_cleanup_free_ char *src_path = NULL;
	if (cmd->source && cmd->source->path)
		src_path = cmd->source->kind == HPCC__V1__PATH_KIND__PATH_RELATIVE && cmd->cwd && cmd->cwd[0] ?
				   path_join(cmd->cwd, cmd->source->path) : strdup(cmd->source->path);
	for (size_t i = 0; i < a->n_inputs; i++) {
		const Hpcc__V1__InputFile *f = a->inputs[i];
		if ((preprocessed || (src_path && strcmp(f->path, src_path) == 0)) && f->digest.len == DIGEST_LEN)
			return f;
	}
	return NULL;
}

/* Keeps what `hpcc reproduce` needs to run this action again: the action
 * on this disk (a preprocessed source was kept when it was staged); the
 * blobs it read stay for [audit] retain (cas_set_retain). */
static void retain_action(struct worker *w, const char *tenant, const Hpcc__V1__Action *a, const struct digest *action)
{
	size_t len = hpcc__v1__action__get_packed_size(a);
	_cleanup_free_ uint8_t *packed = malloc(len ? len : 1);
	if (!packed)
		return;
	hpcc__v1__action__pack(a, packed);
	int r = cas_put_command(w->cas, tenant, action, packed, len);
	if (r < 0)
		log_warn("retaining an action for reproduce: %s", strerror(-r));
}

/* Answers an Execute, or a Reproduce (req built from the retained action,
 * skip_cache set): the action cache, else a compile; its audit row; the
 * reply; then, for a clean compile, the result stored. */
static void run_action(struct worker *w, struct rpc_call *c, const struct token_claims *claims,
		       const Hpcc__V1__ExecuteRequest *req, bool reproduce)
{
	struct error err = { 0 };
	int r = 0;
	int64_t started = now_ms();
	struct digest action;
	if (strcmp(req->action->image_digest, claims->image_digest) != 0) {
		error_set(&err, -EACCES, "the action is for image %.80s, the token for %s", req->action->image_digest,
			  claims->image_digest);
		r = -EACCES;
	} else if ((r = action_check(req->action, &err)) == 0)
		r = action_digest(req->action, &action);
	if (r < 0) {
		finish_error(c, r == -EACCES ? GRPC_STATUS_PERMISSION_DENIED :
				r == -E2BIG || r == -EFBIG ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
			     &err, reproduce ? "reproduce refused" : "execute refused");
		return;
	}
	_cleanup_buf_ struct buf flags;
	buf_init(&flags, AUDIT_FLAGS_MAX);
	if (audit_flags(req->action, &flags, &err) < 0) {
		finish_error(c, GRPC_STATUS_RESOURCE_EXHAUSTED, &err, reproduce ? "reproduce refused" : "execute refused");
		return;
	}
	char source[DIGEST_STR_LEN + 1] = "-";
	const Hpcc__V1__InputFile *src = action_source(req->action);
	if (src) {
		struct digest d;
		memcpy(d.b, src->digest.data, DIGEST_LEN);
		digest_to_string(&d, source);
	}
	_cleanup_buf_ struct buf packed;
	buf_init(&packed, (size_t)w->cfg.max_message);
	Hpcc__V1__ActionResult *cached = NULL;
	if (!req->skip_cache && cas_get_action(w->cas, claims->tenant, &action, (size_t)w->cfg.max_message - 64, &packed) == 0)
		cached = hpcc__v1__action_result__unpack(NULL, packed.len, (uint8_t *)packed.data);
	struct exec_state x = { 0 };
	Hpcc__V1__ActionResult res = HPCC__V1__ACTION_RESULT__INIT;
	Hpcc__V1__ActionResult *result = cached;
	int code = GRPC_STATUS_OK;
	if (!cached) {
		/* One of the tenant's compile slots ([limits]
		 * max_execs_per_tenant), held only while the compile runs and
		 * given back on every path out of it; a hit takes none. */
		if (quota_exec_acquire(w->quota, claims->tenant, &err) < 0) {
			finish_quota(c, &err, reproduce ? "reproduce refused" : "execute refused");
			return;
		}
		__atomic_add_fetch(&w->running, 1, __ATOMIC_RELAXED);
		r = execute(w, claims->tenant, req, &action, &x, &res, &code, &err);
		__atomic_sub_fetch(&w->running, 1, __ATOMIC_RELAXED);
		quota_exec_release(w->quota, claims->tenant);
		if (r < 0 && err.code == -EDQUOT) {
			finish_quota(c, &err, reproduce ? "reproduce refused" : "execute refused");
			exec_state_free(&x);
			return;
		}
		if (r < 0) {
			if (reproduce && code == GRPC_STATUS_FAILED_PRECONDITION) {
				char why[sizeof(err.msg)];
				snprintf(why, sizeof(why), "%s", err.msg);
				error_clear(&err);
				error_set(&err, -ENOENT, "the inputs are no longer retained on this worker (%.200s)", why);
			}
			finish_error(c, code, &err, reproduce ? "reproduce failed" : "execute failed");
			exec_state_free(&x);
			return;
		}
		res.audit_flags = flags.data;
		if (src) {
			res.audit_source.data = src->digest.data;
			res.audit_source.len = DIGEST_LEN;
		}
		result = &res;
		char hex[DIGEST_HEX_LEN + 1];
		digest_to_hex(&action, hex);
		log_info("%s %.16s for tenant %s: exit %d in %lld ms (%s)", reproduce ? "reproduced" : "executed", hex,
			 claims->tenant, res.exit_code, (long long)res.duration_ms, res.runtime);
		/* Before the reply, so that a Reproduce right after it finds it. */
		if (!reproduce)
			retain_action(w, claims->tenant, req->action, &action);
	}
	/* Only a clean compile is cached; a probe can only ever read results
	 * that this worker produced itself. */
	bool store = !cached && !req->skip_cache && res.exit_code == 0 && res.n_outputs > 0;
	/* The audit row comes first: a result that has no row is neither
	 * stored (a later probe could serve it) nor sent. */
	_cleanup_free_ char *row = NULL;
	_cleanup_free_ uint8_t *out = NULL;
	if (audit_answer(w, claims, &action, flags.data, source, result, cached ? "hit" : store ? "store" : "miss",
			 cached ? now_ms() - started : result->duration_ms, &row, &err) < 0) {
		log_error("%s", err.msg);
		rpc_call_finish(c, GRPC_STATUS_UNAVAILABLE, "the worker cannot write its audit log");
		goto done;
	}
	Hpcc__V1__ExecuteReply rep = HPCC__V1__EXECUTE_REPLY__INIT;
	Hpcc__V1__ReproduceReply rrep = HPCC__V1__REPRODUCE_REPLY__INIT;
	ProtobufCMessage *msg = reproduce ? &rrep.base : &rep.base;
	rep.result = rrep.result = result;
	rep.cached = cached != NULL;
	rep.audit_row = rrep.audit_row = row ? row : (char *)"";
	size_t len = protobuf_c_message_get_packed_size(msg);
	out = len <= w->cfg.max_message ? malloc(len ? len : 1) : NULL;
	if (!out) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "the result is too large");
		goto done;
	}
	protobuf_c_message_pack(msg, out);
	if (store) {
		size_t rl = hpcc__v1__action_result__get_packed_size(&res);
		_cleanup_free_ uint8_t *rb = malloc(rl ? rl : 1);
		if (rb) {
			hpcc__v1__action_result__pack(&res, rb);
			if ((r = cas_put_action(w->cas, claims->tenant, &action, rb, rl)) < 0)
				log_warn("storing a result: %s", strerror(-r));
			else if (req->action->mode == HPCC__V1__SOURCE_MODE__MODE_CAS)
				remember_direct(w, claims->tenant, req->action, &action, &x, rb, rl);
		}
	}
	rpc_call_send(c, out, len);
	rpc_call_finish(c, GRPC_STATUS_OK, NULL);
done:
	if (cached)
		hpcc__v1__action_result__free_unpacked(cached, NULL);
	exec_state_free(&x);
}

static void handle_execute(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	struct token_claims claims;
	Hpcc__V1__ExecuteRequest *req = (Hpcc__V1__ExecuteRequest *)receive_request(
		w, c, &hpcc__v1__execute_request__descriptor, (size_t)w->cfg.max_message, "execute", &claims, NULL);
	if (!req)
		return;
	if (!req->action)
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "execute: the request has no action");
	else
		run_action(w, c, &claims, req, false);
	hpcc__v1__execute_request__free_unpacked(req, NULL);
}

/* ---- Reproduce --------------------------------------------------------- */

static void handle_reproduce(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	struct token_claims claims;
	Hpcc__V1__ReproduceRequest *req = (Hpcc__V1__ReproduceRequest *)receive_request(
		w, c, &hpcc__v1__reproduce_request__descriptor, 64 * 1024, "reproduce", &claims, NULL);
	if (!req)
		return;
	struct digest d;
	bool ok = req->action_digest.len == DIGEST_LEN;
	if (ok)
		memcpy(d.b, req->action_digest.data, DIGEST_LEN);
	hpcc__v1__reproduce_request__free_unpacked(req, NULL);
	if (!ok) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "reproduce names one 32-byte action digest");
		return;
	}
	_cleanup_buf_ struct buf packed, pp;
	buf_init(&packed, (size_t)w->cfg.max_message);
	buf_init(&pp, (size_t)w->cfg.max_blob + 1);
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&d, hex);
	char msg[300];
	/* The tenant's own namespace only: another tenant's action is not found. */
	int r = cas_get_command(w->cas, claims.tenant, &d, (size_t)w->cfg.max_message, &packed);
	Hpcc__V1__Action *a = r == 0 ? hpcc__v1__action__unpack(NULL, packed.len, (uint8_t *)packed.data) : NULL;
	if (!a) {
		snprintf(msg, sizeof(msg), "reproduce: worker %s holds no action sha256:%.16s... for tenant %s "
			 "(not run here, or older than [audit] retain)", w->cfg.id, hex, claims.tenant);
		rpc_call_finish(c, GRPC_STATUS_NOT_FOUND, msg);
		return;
	}
	Hpcc__V1__ExecuteRequest x = HPCC__V1__EXECUTE_REQUEST__INIT;
	x.action = a;
	x.skip_cache = true;
	Hpcc__V1__Blob blob;
	_cleanup_buf_ struct buf blob_store;
	buf_init(&blob_store, (size_t)w->cfg.max_blob + ((size_t)w->cfg.max_blob >> 7) + 4096);
	if (a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED && a->n_inputs == 1 &&
	    a->inputs[0]->digest.len == DIGEST_LEN) {
		struct digest s;
		memcpy(s.b, a->inputs[0]->digest.data, DIGEST_LEN);
		if (cas_get_blob(w->cas, claims.tenant, &s, (size_t)w->cfg.max_blob, &pp) == 0 &&
		    blob_pack(pp.data, pp.len, 1, &blob, &blob_store) == 0)
			x.preprocessed = &blob;
	}
	struct digest check;
	if (action_digest(a, &check) < 0 || !digest_equal(&check, &d))
		rpc_call_finish(c, GRPC_STATUS_DATA_LOSS, "reproduce: the retained action does not match its digest");
	else
		run_action(w, c, &claims, &x, true);
	hpcc__v1__action__free_unpacked(a, NULL);
}

/* ---- AuditRows --------------------------------------------------------- */

#define AUDIT_ROWS_DEFAULT 20
#define AUDIT_ROWS_MAX 200

/* Searches read the log from disk: a few at a time, whoever asks. */
#define AUDIT_SEARCHES_MAX 2

static void handle_audit_rows(struct rpc_call *c, void *user)
{
	struct worker *w = user;
	struct token_claims claims;
	Hpcc__V1__AuditRowsRequest *req = (Hpcc__V1__AuditRowsRequest *)receive_request(
		w, c, &hpcc__v1__audit_rows_request__descriptor, 64 * 1024, "audit-rows", &claims, NULL);
	if (!req)
		return;
	if (!audit_prefix_valid(req->prefix)) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "audit-rows: the prefix is 4 to 64 hex digits");
		hpcc__v1__audit_rows_request__free_unpacked(req, NULL);
		return;
	}
	if (!w->audit) {
		rpc_call_finish(c, GRPC_STATUS_FAILED_PRECONDITION, "audit-rows: this worker keeps no audit log");
		hpcc__v1__audit_rows_request__free_unpacked(req, NULL);
		return;
	}
	if (__atomic_add_fetch(&w->searches, 1, __ATOMIC_RELAXED) > AUDIT_SEARCHES_MAX) {
		__atomic_sub_fetch(&w->searches, 1, __ATOMIC_RELAXED);
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "audit-rows: too many searches at once; ask again");
		hpcc__v1__audit_rows_request__free_unpacked(req, NULL);
		return;
	}
	size_t max = req->max_rows ? req->max_rows : AUDIT_ROWS_DEFAULT;
	max = max < AUDIT_ROWS_MAX ? max : AUDIT_ROWS_MAX;
	_cleanup_strv_ struct strv rows = { 0 };
	Hpcc__V1__AuditRowsReply rep = HPCC__V1__AUDIT_ROWS_REPLY__INIT;
	struct error err = { 0 };
	bool truncated = false;
	/* The token's tenant is the only one searched. */
	int r = audit_search(w->audit_dir, claims.tenant, req->prefix, max, &rows, &truncated, &err);
	__atomic_sub_fetch(&w->searches, 1, __ATOMIC_RELAXED);
	hpcc__v1__audit_rows_request__free_unpacked(req, NULL);
	if (r < 0) {
		finish_error(c, GRPC_STATUS_INTERNAL, &err, "audit-rows failed");
		return;
	}
	rep.rows = rows.v;
	rep.n_rows = rows.n;
	rep.truncated = truncated;
	size_t len = hpcc__v1__audit_rows_reply__get_packed_size(&rep);
	_cleanup_free_ uint8_t *out = len <= w->cfg.max_message ? malloc(len ? len : 1) : NULL;
	if (!out) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "audit-rows: the answer is too large");
		return;
	}
	hpcc__v1__audit_rows_reply__pack(&rep, out);
	rpc_call_send(c, out, len);
	rpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* ---- setup ------------------------------------------------------------- */

static const struct rpc_method methods[] = {
	{ "/hpcc.v1.WorkerService/Probe", handle_probe, .unary = true },
	{ "/hpcc.v1.WorkerService/FindMissing", handle_find_missing, .unary = true },
	{ "/hpcc.v1.WorkerService/Upload", handle_upload },
	{ "/hpcc.v1.WorkerService/Execute", handle_execute, .unary = true },
	{ "/hpcc.v1.WorkerService/AuditRows", handle_audit_rows, .unary = true },
	{ "/hpcc.v1.WorkerService/Reproduce", handle_reproduce, .unary = true },
};

/* Once the shutdown grace is over, compiles still running are abandoned
 * (their clients compile locally) rather than waited for. */
static void interrupt_runtime(void *user)
{
	struct worker *w = user;
	if (w->rt->interrupt)
		w->rt->interrupt(w->rt_state);
}

/* ---- scheduler ---------------------------------------------------------- */

static void add_vm(const char *tenant, const char *image, void *user)
{
	(void)sched_load_add_vm(user, tenant, image);
}

/* What a heartbeat reports: free capacity, the configured images this
 * worker can run now (a microVM worker only those imported), its VMs. */
static int sched_load(void *user, struct sched_load *ret)
{
	struct worker *w = user;
	unsigned running = __atomic_load_n(&w->running, __ATOMIC_RELAXED);
	ret->free_capacity = running < w->capacity ? w->capacity - running : 0;
	bool microvm = strcmp(w->rt->name, "microvm") == 0;
	for (size_t i = 0; i < w->cfg.images.n; i++) {
		_cleanup_free_ char *path = NULL;
		struct error ignored = { 0 };
		if (microvm && image_store_path(w->cfg.images_dir, w->cfg.images.v[i], &path, &ignored) < 0)
			continue;
		if (strv_push(&ret->images, w->cfg.images.v[i]) < 0)
			return -ENOMEM;
	}
	if (w->rt->list_vms)
		w->rt->list_vms(w->rt_state, add_vm, ret);
	return 0;
}

/* [scheduler]: the address clients dial (the bound port for port 0), the
 * certificate pin, the capacity; the threads start in worker_run. */
static int sched_setup(struct worker *w, const char *cert, struct error *err)
{
	const struct worker_config *c = &w->cfg;
	char fp[DIGEST_STR_LEN + 1], host[WORKER_HOSTPORT_MAX + 1], advertise[WORKER_HOSTPORT_MAX + 16];
	unsigned port = 0;
	if (x509_fingerprint_pem(cert, fp) < 0)
		return error_set(err, -EINVAL, "%s: no certificate", c->cert_file);
	if (worker_config_split_hostport(c->advertise, host, &port) < 0)
		return error_set(err, -EINVAL, "advertise '%s' is not host:port", c->advertise);
	snprintf(advertise, sizeof(advertise), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
		 port ? port : (unsigned)worker_port(w));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned cap = strcmp(w->rt->name, "microvm") == 0 ? c->max_vms * c->vcpus :
		       c->max_parallel > 0 ? (unsigned)c->max_parallel : cpus > 0 ? (unsigned)cpus : 1;
	w->capacity = cap < c->max_calls ? cap : c->max_calls;
	w->capacity = w->capacity ? w->capacity : 1;
	char host_image[80];
	if (strcmp(w->rt->name, "unsafe-local") == 0 && worker_host_image(c->search_path, host_image) == 0 &&
	    !worker_config_serves(c, host_image))
		log_warn("the host's compilers are image %s, which [worker] images does not list: the scheduler is told "
			 "the configured images", host_image);
	struct sched_client_config sc = {
		.addresses = (const char *const *)c->sched_addresses.v,
		.pins = (const char *const *)c->sched_pins.v,
		.n = c->sched_addresses.n,
		.worker_token = c->sched_worker_token,
		.worker_id = c->id,
		.advertise = advertise,
		.cert_fingerprint = fp,
		.capacity = w->capacity,
		.retry_ms = c->sched_retry_ms,
		.load = sched_load,
		.userdata = w,
	};
	return sched_client_new(&sc, &w->sched, err);
}

/* ---- quotas --------------------------------------------------------------- */

/* [limits]: the defaults, then each tenant line over them (checked when
 * the file was read); the CAS enforces its hard caps through them. */
static int quota_setup(struct worker *w, struct error *err)
{
	const struct worker_config *c = &w->cfg;
	struct quota_limits defaults = {
		.upload_bytes = c->upload_quota,
		.upload_window_s = c->upload_window,
		.execs = c->max_execs_per_tenant,
		.cas_bytes = c->cas_quota,
	};
	if (quota_new(&defaults, &w->quota) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < c->tenant_limits.n; i++) {
		char tenant[QUOTA_TENANT_MAX + 1], why[160];
		struct quota_limits l = defaults;
		if (quota_parse_tenant_line(c->tenant_limits.v[i], tenant, &l, why, sizeof(why)) < 0)
			return error_set(err, -EINVAL, "[limits] tenant: %s", why);
		if (quota_set_tenant(w->quota, tenant, &l) < 0)
			return error_set(err, -ENOMEM, "out of memory");
	}
	cas_set_quota(w->cas, w->quota);
	return 0;
}

static void quota_report(struct worker *w)
{
	if (!w->quota)
		return;
	struct quota_stats st;
	quota_get_stats(w->quota, &st);
	uint64_t total = 0;
	for (int k = 0; k < QUOTA_N; k++)
		total += st.refused[k];
	if (total)
		log_info("quota refusals: upload %llu, execs %llu, vms %llu, cas %llu",
			 (unsigned long long)st.refused[QUOTA_UPLOAD], (unsigned long long)st.refused[QUOTA_EXECS],
			 (unsigned long long)st.refused[QUOTA_VMS], (unsigned long long)st.refused[QUOTA_CAS]);
}

int worker_new(struct worker_config *cfg, struct worker **ret, struct error *err)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w) {
		worker_config_free(cfg);
		return error_set(err, -ENOMEM, "out of memory");
	}
	w->cfg = *cfg;
	*cfg = (struct worker_config){ 0 };
	pthread_mutex_init(&w->verified_lock, NULL);
	pthread_mutex_init(&w->gc_lock, NULL);
	pthread_cond_init(&w->gc_cond, NULL);
	int r;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	if (!(w->rt = runtime_find(w->cfg.runtime))) {
		r = error_set(err, -EINVAL, "unknown runtime '%s'", w->cfg.runtime);
		goto fail;
	}
	struct runtime_config rc = {
		.worker = &w->cfg,
		.allow_unsafe_local = w->cfg.allow_unsafe_local,
		.search_path = w->cfg.search_path,
		.max_parallel = w->cfg.max_parallel,
	};
	if ((r = w->rt->open(&rc, &w->rt_state, err)) < 0)
		goto fail;
	if (w->cfg.token_key_file && (r = token_key_load_file(w->cfg.token_key_file, false, &w->token_key, err)) < 0)
		goto fail;
	if ((r = cas_open(w->cfg.dir, w->cfg.max_size, &w->cas, err)) < 0)
		goto fail;
	if ((r = quota_setup(w, err)) < 0)
		goto fail;
	if (w->cfg.s3 && (r = tier_setup(w, err)) < 0)
		goto fail;
	if (!(w->staging_dir = path_join(w->cfg.dir, "staging"))) {
		r = error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	staging_sweep(w->staging_dir);
	if (!(w->audit_dir = path_join(w->cfg.dir, "audit"))) {
		r = error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	cas_set_retain(w->cas, w->cfg.audit_retain);
	if (!w->cfg.audit_enabled)
		log_warn("[audit] enabled = false: this worker answers without audit rows (for measuring only)");
	else {
		struct audit_options ao = { .segment_size = w->cfg.audit_segment_size,
					    .segment_age_s = w->cfg.audit_segment_age };
		if ((r = audit_open(w->audit_dir, &ao, &w->audit, err)) < 0)
			goto fail;
	}
	if (!(cert = fs_read_text(w->cfg.cert_file, 1 << 20, err)) ||
	    !(key = fs_read_text(w->cfg.key_file, 1 << 20, err))) {
		r = err->code;
		goto fail;
	}
	struct rpc_server_config sc = {
		.listen = w->cfg.listen,
		.cert_pem = cert,
		.key_pem = key,
		.max_calls = w->cfg.max_calls,
		.max_message = (size_t)w->cfg.max_message,
		.shutdown_grace_ms = 2000,
		.on_cancel = interrupt_runtime,
	};
	if ((r = rpc_server_new(&sc, methods, ARRAY_SIZE(methods), w, &w->server, err)) < 0)
		goto fail;
	if (w->cfg.sched_addresses.n && (r = sched_setup(w, cert, err)) < 0)
		goto fail;
	*ret = w;
	return 0;
fail:
	worker_free(w);
	return r;
}

/* ---- the shared tier ---------------------------------------------------- */

static void gc_budget(void *user, const char *tenant, uint64_t *ret_size, uint64_t *ret_age)
{
	struct worker *w = user;
	worker_config_s3_budget(&w->cfg, tenant, ret_size, ret_age);
}

/* Every gc_interval: one collection of the shared tier, on a client of its own. */
static void *gc_main(void *arg)
{
	struct worker *w = arg;
	struct s3_config sc;
	worker_config_s3(&w->cfg, &sc);
	struct s3_client *client = NULL;
	struct error err = { 0 };
	if (s3_client_new(&sc, &client, &err) < 0) {
		log_error("s3 gc: %s", err.msg);
		return NULL;
	}
	pthread_mutex_lock(&w->gc_lock);
	while (!w->gc_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)w->cfg.s3_gc_interval;
		while (!w->gc_stop && pthread_cond_timedwait(&w->gc_cond, &w->gc_lock, &until) == 0)
			;
		if (w->gc_stop)
			break;
		pthread_mutex_unlock(&w->gc_lock);
		struct tier_gc_options o = { .budget = gc_budget, .user = w, .stop = &w->gc_stop };
		struct tier_gc_report rep = { 0 };
		err = (struct error){ 0 };
		if (tier_gc(client, &o, &rep, &err) < 0)
			log_warn("s3 gc: %s", err.msg);
		else {
			uint64_t deleted = 0, freed = 0;
			for (size_t i = 0; i < rep.n_tenants; i++) {
				deleted += rep.tenants[i].deleted_age + rep.tenants[i].deleted_size;
				freed += rep.tenants[i].bytes_deleted;
			}
			log_info("s3 gc: %llu objects listed, %llu deleted, %llu bytes freed",
				 (unsigned long long)rep.listed, (unsigned long long)deleted, (unsigned long long)freed);
		}
		tier_gc_report_free(&rep);
		pthread_mutex_lock(&w->gc_lock);
	}
	pthread_mutex_unlock(&w->gc_lock);
	s3_client_free(client);
	return NULL;
}

static int tier_setup(struct worker *w, struct error *err)
{
	struct tier_config tc = { .connections = w->cfg.s3_connections };
	worker_config_s3(&w->cfg, &tc.s3);
	struct error e = { 0 };
	int r = tier_open(&tc, &w->tier, &e);
	if (r < 0)
		return error_set(err, r, "[s3] %s", e.msg);
	cas_set_tier(w->cas, w->tier, (size_t)w->cfg.max_message);
	log_info("shared tier: s3 bucket %s at %s (cache_mode %s)", w->cfg.s3_bucket, w->cfg.s3_endpoint,
		 w->cfg.cache_mode);
	if (w->cfg.s3_gc_interval) {
		if (pthread_create(&w->gc_thread, NULL, gc_main, w) != 0)
			return error_set(err, -EAGAIN, "cannot start the S3 collection thread");
		w->gc_started = true;
	}
	return 0;
}

static void tier_stop(struct worker *w)
{
	if (w->gc_started) {
		pthread_mutex_lock(&w->gc_lock);
		__atomic_store_n(&w->gc_stop, true, __ATOMIC_RELAXED);  /* also read by a collection in progress */
		pthread_cond_broadcast(&w->gc_cond);
		pthread_mutex_unlock(&w->gc_lock);
		pthread_join(w->gc_thread, NULL);
		w->gc_started = false;
	}
	if (w->tier) {
		struct tier_stats st;
		char line[512];
		tier_flush(w->tier, 3000);
		tier_get_stats(w->tier, &st);
		tier_format_stats(&st, line, sizeof(line));
		log_info("shared tier: %s", line);
	}
}

int worker_port(const struct worker *w) { return rpc_server_port(w->server); }
int worker_run(struct worker *w)
{
	struct error err = { 0 };
	if (w->sched && sched_client_start(w->sched, &err) < 0)
		log_error("%s", err.msg);
	int r = rpc_server_run(w->server);
	sched_client_stop(w->sched);
	return r;
}

/* The server stops taking calls first; then the scheduler threads are
 * woken and joined (the scheduler drops the worker when its heartbeats
 * stop). */
void worker_stop(struct worker *w)
{
	rpc_server_shutdown(w->server);
	sched_client_stop(w->sched);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	sched_client_free(w->sched);
	rpc_server_free(w->server);
	if (w->rt && w->rt_state)
		w->rt->close(w->rt_state);
	tier_stop(w);
	tier_close(w->tier);
	cas_close(w->cas);
	quota_report(w);
	quota_free(w->quota);
	if (w->audit) {
		struct audit_stats as;
		audit_get_stats(w->audit, &as);
		if (as.rows)
			log_info("audit log: %llu rows, %llu fdatasyncs, %llu us per row on average (write and sync)",
				 (unsigned long long)as.rows, (unsigned long long)as.syncs,
				 (unsigned long long)(as.append_us / as.rows));
	}
	audit_close(w->audit);
	token_key_free(w->token_key);
	free(w->staging_dir);
	free(w->audit_dir);
	worker_config_free(&w->cfg);
	pthread_mutex_destroy(&w->verified_lock);
	pthread_mutex_destroy(&w->gc_lock);
	pthread_cond_destroy(&w->gc_cond);
	free(w);
}
