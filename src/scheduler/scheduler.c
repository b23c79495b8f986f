/*
 * The scheduler's RPC handlers (see scheduler.h). It holds no state that
 * matters beyond soft state: the tenants come from the configuration, the
 * workers from their registrations and heartbeats, the keys of each IdP
 * from that IdP. It never sees a source, an object or a cache key.
 */
#include "scheduler.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "fs.h"
#include "issued.h"
#include "jwks_cache.h"
#include "log.h"
#include "registry.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "token.h"

struct scheduler {
	struct scheduler_config cfg;
	struct token_key *signing_key;
	char *public_pem;
	struct digest worker_token_digest;
	struct registry *registry;
	struct jwks_cache *jwks;
	struct issued_cache *issued;
	struct rpc_server *server;
};

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int scheduler_read_worker_token(const char *path, char **ret, struct error *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return error_set(err, -errno, "worker token file %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "worker token file %s: not a regular file", path);
	if (st.st_mode & 077)
		return error_set(err, -EPERM, "worker token file %s: group or others may read it (chmod 600)", path);
	_cleanup_buf_ struct buf b;
	buf_init(&b, SCHEDULER_WORKER_TOKEN_MAX + 1);
	int r = fs_read_file(path, SCHEDULER_WORKER_TOKEN_MAX, &b);
	if (r < 0)
		return error_set(err, r, "worker token file %s: %s", path, r == -EFBIG ? "too large" : strerror(-r));
	size_t n = b.len;
	if (n && b.data[n - 1] == '\n')
		n--;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)b.data[i] <= ' ' || (unsigned char)b.data[i] >= 0x7f)
			return error_set(err, -EINVAL, "worker token file %s: one line of printable characters", path);
	if (n < SCHEDULER_WORKER_TOKEN_MIN)
		return error_set(err, -EINVAL, "worker token file %s: shorter than %d characters", path,
				 SCHEDULER_WORKER_TOKEN_MIN);
	char *t = strndup(b.data, n);
	OPENSSL_cleanse(b.data, b.len);
	if (!t)
		return error_set(err, -ENOMEM, "out of memory");
	*ret = t;
	return 0;
}

/*
 * protobuf-c allocates per repeated element and string, so a 64 KiB request
 * of many empty entries can unpack to megabytes before anything is checked:
 * requests are unpacked against a budget. Each block carries its size.
 */
#define UNPACK_BUDGET (512 * 1024)

struct unpack_budget {
	size_t left;
};

static void *budget_alloc(void *data, size_t size)
{
	struct unpack_budget *b = data;
	if (size > b->left || b->left - size < sizeof(size_t))
		return NULL;
	size_t *p = malloc(size + sizeof(size_t));
	if (!p)
		return NULL;
	b->left -= size + sizeof(size_t);
	*p = size;
	return p + 1;
}

static void budget_free(void *data, void *ptr)
{
	struct unpack_budget *b = data;
	if (!ptr)
		return;
	size_t *p = (size_t *)ptr - 1;
	b->left += *p + sizeof(size_t);
	free(p);
}

struct request {
	struct unpack_budget budget;
	ProtobufCAllocator alloc;
	ProtobufCMessage *m;
};

static void request_free(struct request *q)
{
	if (q->m)
		protobuf_c_message_free_unpacked(q->m, &q->alloc);
	q->m = NULL;
}

/* The one request message of a unary call, decoded into q->m; NULL when the call was answered with an error. */
static ProtobufCMessage *receive(struct rpc_call *c, const ProtobufCMessageDescriptor *desc, struct request *q)
{
	q->budget.left = UNPACK_BUDGET;
	q->alloc = (ProtobufCAllocator){ .alloc = budget_alloc, .free = budget_free, .allocator_data = &q->budget };
	q->m = NULL;
	_cleanup_buf_ struct buf msg;
	buf_init(&msg, SCHEDULER_MAX_MESSAGE);
	int r = rpc_call_recv(c, &msg);
	if (r == -EFBIG) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "request too large");
		return NULL;
	}
	if (r <= 0) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "expected one request message");
		return NULL;
	}
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &q->alloc, msg.len, (uint8_t *)msg.data);
	if (!m)
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request (or too many entries)");
	q->m = m;
	return m;
}

/* Replies fit here (a RouteReply is a few hundred bytes); only a larger one costs an allocation. */
#define REPLY_STACK_SIZE 2048

/* The message and OK in one batch: one write instead of two. */
static void reply(struct rpc_call *c, const ProtobufCMessage *m)
{
	uint8_t stack[REPLY_STACK_SIZE];
	size_t len = protobuf_c_message_get_packed_size(m);
	_cleanup_free_ uint8_t *heap = len > sizeof(stack) ? malloc(len) : NULL;
	uint8_t *out = len > sizeof(stack) ? heap : stack;
	if (!out) {
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	protobuf_c_message_pack(m, out);
	rpc_call_reply(c, out, len);
}

static void refuse(struct rpc_call *c, int code, const char *fmt, ...) _printf_(3, 4);
static void refuse(struct rpc_call *c, int code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error_printable(msg);
	log_info("scheduler: %s %s: %s", rpc_call_peer(c), rpc_call_method(c), msg);
	rpc_call_finish(c, code, msg);
}

static ssize_t tenant_index(const struct scheduler *s, const char *id)
{
	for (size_t i = 0; i < s->cfg.n_tenants; i++)
		if (strcmp(s->cfg.tenants[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

/* ---- GetTenantIdP: unauthenticated, tells a client where to sign in ---- */

static void handle_get_tenant_idp(struct rpc_call *c, void *user)
{
	struct scheduler *s = user;
	struct request q;
	Hpcc__V1__GetTenantIdPRequest *req = (Hpcc__V1__GetTenantIdPRequest *)receive(
		c, &hpcc__v1__get_tenant_id_prequest__descriptor, &q);
	if (!req)
		return;
	ssize_t i = token_name_valid(req->tenant) ? tenant_index(s, req->tenant) : -1;
	if (i < 0) {
		refuse(c, GRPC_STATUS_NOT_FOUND, "unknown tenant '%.64s'", req->tenant);
		request_free(&q);
		return;
	}
	const struct scheduler_tenant *t = &s->cfg.tenants[i];
	char token_url[SCHEDULER_URL_MAX + 1];
	struct error err = { 0 };
	if (jwks_cache_token_url(s->jwks, (size_t)i, token_url, sizeof(token_url), &err) < 0) {
		/* The details (URLs, addresses) are for the operator's log, not for an anonymous caller. */
		log_warn("scheduler: GetTenantIdP %s: %s", t->id, err.msg);
		refuse(c, GRPC_STATUS_UNAVAILABLE, "tenant %s: its IdP cannot be reached now", t->id);
	} else {
		Hpcc__V1__GetTenantIdPReply rep = HPCC__V1__GET_TENANT_ID_PREPLY__INIT;
		rep.issuer = t->issuer;
		rep.token_endpoint = token_url;
		rep.client_id = t->client_id;
		rep.scope = t->scope ? t->scope : (char *)"";
		rep.audience = t->audience;
		reply(c, &rep.base);
	}
	request_free(&q);
}

/* ---- Route ---- */

static void handle_route(struct rpc_call *c, void *user)
{
	struct scheduler *s = user;
	struct request q;
	Hpcc__V1__RouteRequest *req = (Hpcc__V1__RouteRequest *)receive(c, &hpcc__v1__route_request__descriptor, &q);
	if (!req)
		return;
	ssize_t i = token_name_valid(req->tenant) ? tenant_index(s, req->tenant) : -1;
	const struct scheduler_tenant *t = i >= 0 ? &s->cfg.tenants[i] : NULL;
	struct error err = { 0 };
	struct jwt_claims jc;
	struct registry_choice choice;
	int64_t now = time(NULL);
	int r;
	if (!t) {
		refuse(c, GRPC_STATUS_NOT_FOUND, "unknown tenant '%.64s'", req->tenant);
	} else if (!req->access_token[0]) {
		refuse(c, GRPC_STATUS_UNAUTHENTICATED, "no access token (run hpcc login)");
	} else if ((r = jwks_cache_verify(s->jwks, (size_t)i, req->access_token, strlen(req->access_token), now, &jc,
					  &err)) < 0) {
		/* Checked before the image, so that an unauthenticated caller learns nothing of a tenant's images. */
		if (r == -EAGAIN) {
			log_warn("scheduler: tenant %s: %s", t->id, err.msg);
			refuse(c, GRPC_STATUS_UNAVAILABLE, "tenant %s: tokens cannot be checked now (its IdP cannot be reached)",
			       t->id);
		}
		else
			refuse(c, GRPC_STATUS_UNAUTHENTICATED, "tenant %s: access token refused: %s", t->id, err.msg);
	} else if (jc.exp <= now) {
		/* Accepted within the clock skew, but a routing token must not outlive its access token. */
		refuse(c, GRPC_STATUS_UNAUTHENTICATED, "tenant %s: access token refused: it has expired", t->id);
	} else if (!scheduler_tenant_allows(t, req->image_digest)) {
		refuse(c, GRPC_STATUS_PERMISSION_DENIED, "tenant %s may not use image %.80s", t->id, req->image_digest);
	} else if (req->worker_id[0] &&
		   registry_route_to(s->registry, req->worker_id, req->image_digest, monotonic_ms(), &choice) < 0) {
		refuse(c, GRPC_STATUS_UNAVAILABLE, "worker %.64s is not registered, healthy and holding image %.80s",
		       req->worker_id, req->image_digest);
	} else if (!req->worker_id[0] &&
		   registry_route(s->registry, t->id, req->image_digest, t->sticky, monotonic_ms(), &choice) < 0) {
		refuse(c, GRPC_STATUS_UNAVAILABLE, "no healthy worker holds image %.80s", req->image_digest);
	} else {
		struct token_claims tc = { .issued_at = now, .expires_at = now + s->cfg.token_ttl };
		/* A routing token never outlives the access token it was granted for. */
		if (jc.exp < tc.expires_at)
			tc.expires_at = jc.exp;
		snprintf(tc.tenant, sizeof(tc.tenant), "%s", t->id);
		snprintf(tc.image_digest, sizeof(tc.image_digest), "%s", req->image_digest);
		snprintf(tc.worker_id, sizeof(tc.worker_id), "%s", choice.worker_id);
		_cleanup_buf_ struct buf tok;
		buf_init(&tok, TOKEN_MAX_SIZE);
		/* The same access token routed to the same worker within a minute gets the token it got then. */
		struct digest key;
		bool keyed = issued_key(t->id, req->image_digest, choice.worker_id, req->access_token, &key) == 0;
		int64_t expires = 0;
		if (keyed && issued_get(s->issued, &key, now, tc.expires_at, &tok, &expires) == 1)
			tc.expires_at = expires;
		else if (token_issue(s->signing_key, &tc, &tok) == 0 && keyed)
			issued_put(s->issued, &key, tok.data, tok.len, tc.issued_at, tc.expires_at);
		if (tok.len == 0) {
			refuse(c, GRPC_STATUS_INTERNAL, "could not sign a routing token");
		} else {
			Hpcc__V1__RouteReply rep = HPCC__V1__ROUTE_REPLY__INIT;
			rep.worker_address = choice.address;
			rep.worker_cert_fingerprint = choice.cert_fingerprint;
			rep.worker_id = choice.worker_id;
			rep.routing_token.data = (uint8_t *)tok.data;
			rep.routing_token.len = tok.len;
			rep.expires_at = tc.expires_at;
			rep.cache_mode = t->cache_mode;
			log_debug("scheduler: route tenant %s sub '%s' image %.19s -> %s%s", t->id, jc.sub, req->image_digest,
				  choice.worker_id, choice.sticky_hit ? " (sticky)" : "");
			reply(c, &rep.base);
		}
	}
	request_free(&q);
}

/* ---- RegisterWorker, Heartbeat ---- */

/* Constant time whatever the lengths: the digests are compared, not the secrets. */
static bool worker_token_ok(const struct scheduler *s, const char *token)
{
	struct digest d;
	if (digest_bytes(token, strlen(token), &d) < 0)
		return false;
	return CRYPTO_memcmp(d.b, s->worker_token_digest.b, sizeof(d.b)) == 0;
}

static void handle_register(struct rpc_call *c, void *user)
{
	struct scheduler *s = user;
	struct request q;
	Hpcc__V1__RegisterWorkerRequest *req = (Hpcc__V1__RegisterWorkerRequest *)receive(
		c, &hpcc__v1__register_worker_request__descriptor, &q);
	if (!req)
		return;
	if (!worker_token_ok(s, req->worker_token)) {
		refuse(c, GRPC_STATUS_UNAUTHENTICATED, "worker '%.64s': wrong worker token", req->worker_id);
	} else {
		struct registry_report rep = {
			.worker_id = req->worker_id,
			.address = req->address,
			.cert_fingerprint = req->cert_fingerprint,
			.capacity = req->capacity,
			.free_capacity = req->capacity,
			.images = (const char *const *)req->images,
			.n_images = req->n_images,
		};
		uint8_t session[REGISTRY_SESSION_SIZE];
		int r = registry_register(s->registry, &rep, monotonic_ms(), session);
		if (r == -EEXIST)
			refuse(c, GRPC_STATUS_ALREADY_EXISTS,
			       "worker '%.64s': a healthy worker of that id is registered with another address or certificate",
			       req->worker_id);
		else if (r == -EINVAL)
			refuse(c, GRPC_STATUS_INVALID_ARGUMENT,
			       "worker '%.64s': malformed registration (id, address host:port, sha256 fingerprint, "
			       "capacity 1..%d, image digests)",
			       req->worker_id, REGISTRY_MAX_CAPACITY);
		else if (r < 0)
			refuse(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "the worker table is full");
		else {
			Hpcc__V1__RegisterWorkerReply out = HPCC__V1__REGISTER_WORKER_REPLY__INIT;
			out.routing_key_public_pem.data = (uint8_t *)s->public_pem;
			out.routing_key_public_pem.len = strlen(s->public_pem);
			out.heartbeat_interval_ms = s->cfg.heartbeat_interval_ms;
			out.session.data = session;
			out.session.len = sizeof(session);
			reply(c, &out.base);
		}
	}
	request_free(&q);
}

static void handle_heartbeat(struct rpc_call *c, void *user)
{
	struct scheduler *s = user;
	struct request q;
	Hpcc__V1__HeartbeatRequest *req = (Hpcc__V1__HeartbeatRequest *)receive(
		c, &hpcc__v1__heartbeat_request__descriptor, &q);
	if (!req)
		return;
	struct registry_active *active = NULL;
	if (!worker_token_ok(s, req->worker_token)) {
		refuse(c, GRPC_STATUS_UNAUTHENTICATED, "worker '%.64s': wrong worker token", req->worker_id);
	} else if (req->n_active_vms > REGISTRY_MAX_ACTIVE ||
		   !(active = calloc(req->n_active_vms ? req->n_active_vms : 1, sizeof(*active)))) {
		refuse(c, GRPC_STATUS_INVALID_ARGUMENT, "too many active VMs");
	} else {
		for (size_t k = 0; k < req->n_active_vms; k++)
			active[k] = (struct registry_active){ req->active_vms[k]->tenant, req->active_vms[k]->image_digest };
		struct registry_report rep = {
			.worker_id = req->worker_id,
			.free_capacity = req->free_capacity,
			.images = (const char *const *)req->images,
			.n_images = req->n_images,
			.active = active,
			.n_active = req->n_active_vms,
			.session = req->session.data,
			.session_len = req->session.len,
		};
		int r = registry_heartbeat(s->registry, &rep, monotonic_ms());
		if (r == -EINVAL)
			refuse(c, GRPC_STATUS_INVALID_ARGUMENT, "worker '%.64s': malformed heartbeat", req->worker_id);
		else {
			Hpcc__V1__HeartbeatReply out = HPCC__V1__HEARTBEAT_REPLY__INIT;
			out.reregister = r == -ENOENT;
			reply(c, &out.base);
		}
	}
	free(active);
	request_free(&q);
}

static const struct rpc_method methods[] = {
	{ "/hpcc.v1.SchedulerService/GetTenantIdP", handle_get_tenant_idp, .unary = true },
	{ "/hpcc.v1.SchedulerService/Route", handle_route, .unary = true },
	{ "/hpcc.v1.SchedulerService/RegisterWorker", handle_register, .unary = true },
	{ "/hpcc.v1.SchedulerService/Heartbeat", handle_heartbeat, .unary = true },
};

int scheduler_new(struct scheduler_config *cfg, struct scheduler **ret, struct error *err)
{
	struct scheduler *s = calloc(1, sizeof(*s));
	if (!s) {
		scheduler_config_free(cfg);
		return error_set(err, -ENOMEM, "out of memory");
	}
	s->cfg = *cfg;
	*cfg = (struct scheduler_config){ 0 };
	int r;
	_cleanup_free_ char *cert = NULL, *key = NULL, *worker_token = NULL;
	if ((r = token_key_load_file(s->cfg.signing_key_file, true, &s->signing_key, err)) < 0)
		goto fail;
	if ((r = token_key_public_pem(s->signing_key, &s->public_pem)) < 0) {
		error_set(err, r, "the signing key has no public half");
		goto fail;
	}
	if ((r = scheduler_read_worker_token(s->cfg.worker_token_file, &worker_token, err)) < 0)
		goto fail;
	r = digest_bytes(worker_token, strlen(worker_token), &s->worker_token_digest);
	OPENSSL_cleanse(worker_token, strlen(worker_token));
	if (r < 0) {
		error_set(err, r, "cannot hash the worker token");
		goto fail;
	}
	/* One missed heartbeat plus half an interval of delay: a dead worker is out within two intervals. */
	if ((r = registry_new((int64_t)s->cfg.heartbeat_interval_ms * 3 / 2, &s->registry)) < 0 ||
	    (r = jwks_cache_new(&s->cfg, &s->jwks)) < 0 || (r = issued_new(&s->issued)) < 0) {
		error_set(err, r, "out of memory");
		goto fail;
	}
	if (!(cert = fs_read_text(s->cfg.cert_file, 1 << 20, err)) ||
	    !(key = fs_read_text(s->cfg.key_file, 1 << 20, err))) {
		r = err->code;
		goto fail;
	}
	struct rpc_server_config sc = {
		.listen = s->cfg.listen,
		.cert_pem = cert,
		.key_pem = key,
		.max_calls = s->cfg.max_calls,
		.max_message = SCHEDULER_MAX_MESSAGE,
		.shutdown_grace_ms = 1000,
	};
	if ((r = rpc_server_new(&sc, methods, ARRAY_SIZE(methods), s, &s->server, err)) < 0)
		goto fail;
	OPENSSL_cleanse(key, strlen(key));
	*ret = s;
	return 0;
fail:
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	scheduler_free(s);
	return r;
}

int scheduler_port(const struct scheduler *s) { return rpc_server_port(s->server); }

static void *prefetch_thread(void *arg)
{
	jwks_cache_prefetch(arg);
	return NULL;
}

int scheduler_run(struct scheduler *s)
{
	/* Keys are fetched while the server already answers (an IdP that is
	 * down must not delay start-up); a Route that comes first fetches too. */
	pthread_t t;
	bool started = pthread_create(&t, NULL, prefetch_thread, s->jwks) == 0;
	int r = rpc_server_run(s->server);
	/* At most one IdP fetch in flight (JWKS_FETCH_TIMEOUT_MS) still delays the exit. */
	jwks_cache_stop_prefetch(s->jwks);
	if (started)
		pthread_join(t, NULL);
	return r;
}

void scheduler_stop(struct scheduler *s) { rpc_server_shutdown(s->server); }

void scheduler_free(struct scheduler *s)
{
	if (!s)
		return;
	rpc_server_free(s->server);
	jwks_cache_free(s->jwks);
	issued_free(s->issued);
	registry_free(s->registry);
	token_key_free(s->signing_key);
	free(s->public_pem);
	scheduler_config_free(&s->cfg);
	free(s);
}
