/*
 * Registration with the schedulers and heartbeats (see sched_client.h).
 * Each scheduler has a link: a pinned channel and a thread that alternates
 * calls and sleeps on one condition variable, so that sched_client_stop
 * wakes every sleeper at once and only waits for a call already in flight
 * (at most SCHED_CALL_TIMEOUT_MS). A link logs when its state changes
 * (registered, refused, unreachable, asked to register again), never for
 * each heartbeat. The verification keys sit in one slot per scheduler
 * behind a read-write lock: token checks read them concurrently, a
 * registration replaces its own slot.
 */
#include "sched_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/status.h>

#include "log.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "token.pb-c.h"

#define M_REGISTER "/hpcc.v1.SchedulerService/RegisterWorker"
#define M_HEARTBEAT "/hpcc.v1.SchedulerService/Heartbeat"
#define REPLY_MAX ((size_t)64 << 10)
#define DEFAULT_RETRY_MS 500

enum link_state { LINK_NEW, LINK_REGISTERED, LINK_FAILED };

#define SCHED_SESSION_MAX 64

struct sched_link {
	struct sched_client *sc;
	size_t index;
	char *address, *pin;
	struct rpc_channel *ch;
	pthread_t thread;
	bool started;
	/* Used by the link's thread alone: what was logged last. */
	enum link_state state;
	int last_code;
	char key_id[TOKEN_NAME_MAX + 1];
	uint8_t session[SCHED_SESSION_MAX];  /* the scheduler's id of our registration, echoed in heartbeats */
	size_t session_len;
};

struct key_slot {
	struct token_key *key;
	char id[TOKEN_NAME_MAX + 1];
};

struct sched_client {
	char *worker_token, *worker_id, *advertise, *cert_fingerprint;
	unsigned capacity, retry_ms;
	int (*load)(void *userdata, struct sched_load *ret);
	void *userdata;
	pthread_mutex_t lock;       /* stopping */
	pthread_cond_t cond;        /* signalled when stopping turns true */
	bool stopping;
	pthread_mutex_t join_lock;  /* starting and joining the threads */
	pthread_rwlock_t keys_lock;
	struct key_slot keys[WORKER_SCHEDULERS_MAX]; /* keys[i]: what scheduler i handed out last */
	struct sched_link links[WORKER_SCHEDULERS_MAX];
	size_t n;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *code_name(int code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
		"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
		"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
	};
	return code >= 0 && (size_t)code < ARRAY_SIZE(names) ? names[code] : "UNKNOWN";
}

static int status_set(struct rpc_status *st, int code, const char *fmt, ...) _printf_(3, 4);
static int status_set(struct rpc_status *st, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	st->code = code;
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	return -EPROTO;
}

/* ---- load ---------------------------------------------------------------- */

int sched_load_add_vm(struct sched_load *l, const char *tenant, const char *image)
{
	if (l->n_vms >= SCHED_MAX_ACTIVE_VMS || strlen(tenant) > TOKEN_NAME_MAX || strlen(image) > DIGEST_STR_LEN)
		return 0;
	for (size_t i = 0; i < l->n_vms; i++)
		if (strcmp(l->vms[i].tenant, tenant) == 0 && strcmp(l->vms[i].image, image) == 0)
			return 0;
	if (l->n_vms == l->alloc_vms) {
		size_t alloc = l->alloc_vms ? 2 * l->alloc_vms : 16;
		struct sched_vm *v = realloc(l->vms, alloc * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->vms = v;
		l->alloc_vms = alloc;
	}
	struct sched_vm *vm = &l->vms[l->n_vms++];
	snprintf(vm->tenant, sizeof(vm->tenant), "%s", tenant);
	snprintf(vm->image, sizeof(vm->image), "%s", image);
	return 0;
}

void sched_load_free(struct sched_load *l)
{
	strv_free(&l->images);
	free(l->vms);
	*l = (struct sched_load){ 0 };
}

/* ---- keys ---------------------------------------------------------------- */

/* Replaces scheduler i's key; returns true when it changed. Takes key. */
static bool keys_put(struct sched_client *sc, size_t i, struct token_key *key, const char *id)
{
	pthread_rwlock_wrlock(&sc->keys_lock);
	bool same = sc->keys[i].key && strcmp(sc->keys[i].id, id) == 0;
	struct token_key *old = same ? key : sc->keys[i].key;
	if (!same) {
		sc->keys[i].key = key;
		snprintf(sc->keys[i].id, sizeof(sc->keys[i].id), "%s", id);
	}
	pthread_rwlock_unlock(&sc->keys_lock);
	token_key_free(old);
	return !same;
}

/* The key_id claim, read before anything is verified: it only decides
 * which key is tried first, never whether a token is accepted. */
static void token_key_id_hint(const void *token, size_t n, char id[TOKEN_NAME_MAX + 1])
{
	id[0] = '\0';
	if (n == 0 || n > TOKEN_MAX_SIZE)
		return;
	Hpcc__V1__RoutingToken *t = hpcc__v1__routing_token__unpack(NULL, n, token);
	Hpcc__V1__RoutingClaims *c = t ? hpcc__v1__routing_claims__unpack(NULL, t->claims.len, t->claims.data) : NULL;
	if (c && c->key_id && strlen(c->key_id) <= TOKEN_NAME_MAX)
		snprintf(id, TOKEN_NAME_MAX + 1, "%s", c->key_id);
	if (c)
		hpcc__v1__routing_claims__free_unpacked(c, NULL);
	if (t)
		hpcc__v1__routing_token__free_unpacked(t, NULL);
}

int sched_client_verify(struct sched_client *sc, const struct token_key *fixed, const void *token, size_t n,
			const struct token_expect *expect, int64_t now, struct token_claims *ret_claims,
			struct error *err)
{
	const struct token_key *cand[WORKER_SCHEDULERS_MAX + 1];
	char ids[WORKER_SCHEDULERS_MAX + 1][TOKEN_NAME_MAX + 1];
	size_t nc = 0, first = 0;
	char hint[TOKEN_NAME_MAX + 1];
	token_key_id_hint(token, n, hint);
	if (fixed && token_key_id(fixed, ids[0]) == 0)
		cand[nc++] = fixed;
	if (sc)
		pthread_rwlock_rdlock(&sc->keys_lock);
	for (size_t i = 0; sc && i < sc->n; i++) {
		if (!sc->keys[i].key)
			continue;
		bool dup = false;
		for (size_t j = 0; j < nc && !dup; j++)
			dup = strcmp(ids[j], sc->keys[i].id) == 0;
		if (!dup) {
			snprintf(ids[nc], sizeof(ids[nc]), "%s", sc->keys[i].id);
			cand[nc++] = sc->keys[i].key;
		}
	}
	for (size_t j = 0; j < nc; j++)
		if (strcmp(ids[j], hint) == 0)
			first = j;
	int r = -EAGAIN;
	struct error first_err = { 0 };
	for (size_t k = 0; k < nc; k++) {
		size_t j = (first + k) % nc;
		struct error e = { 0 };
		int q = token_verify(cand[j], token, n, expect, now, ret_claims, &e);
		if (q == 0) {
			r = 0;
			break;
		}
		if (k == 0) {
			r = q;
			first_err = e;
		}
	}
	if (sc)
		pthread_rwlock_unlock(&sc->keys_lock);
	if (nc == 0)
		return error_set(err, -EAGAIN, "worker not yet registered with a scheduler");
	if (r < 0 && err && !err->code)
		*err = first_err;
	return r;
}

size_t sched_client_key_count(struct sched_client *sc)
{
	size_t count = 0;
	pthread_rwlock_rdlock(&sc->keys_lock);
	for (size_t i = 0; i < sc->n; i++) {
		bool dup = !sc->keys[i].key;
		for (size_t j = 0; j < i && !dup; j++)
			dup = sc->keys[j].key && strcmp(sc->keys[j].id, sc->keys[i].id) == 0;
		count += !dup;
	}
	pthread_rwlock_unlock(&sc->keys_lock);
	return count;
}

/* ---- calls --------------------------------------------------------------- */

/* One unary call; 0 for OK, else -EPROTO with the outcome in *st. */
static int call(struct sched_link *l, const char *method, const ProtobufCMessage *m, struct buf *reply,
		struct rpc_status *st)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	_cleanup_free_ uint8_t *data = malloc(len ? len : 1);
	if (!data)
		return status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	protobuf_c_message_pack(m, data);
	int r = rpc_unary(l->ch, method, data, len, SCHED_CALL_TIMEOUT_MS, reply, st);
	if (r < 0)
		return status_set(st, GRPC_STATUS_INTERNAL, "the call failed here: %s", strerror(-r));
	return st->code == GRPC_STATUS_OK ? 0 : -EPROTO;
}

static int get_load(struct sched_client *sc, struct sched_load *load, struct rpc_status *st)
{
	*load = (struct sched_load){ 0 };
	int r = sc->load(sc->userdata, load);
	if (r < 0) {
		sched_load_free(load);
		return status_set(st, GRPC_STATUS_INTERNAL, "cannot measure the worker's load: %s", strerror(-r));
	}
	return 0;
}

static int link_register(struct sched_link *l, unsigned *ret_interval, struct rpc_status *st)
{
	struct sched_client *sc = l->sc;
	struct sched_load load;
	if (get_load(sc, &load, st) < 0)
		return -EPROTO;
	Hpcc__V1__RegisterWorkerRequest req = HPCC__V1__REGISTER_WORKER_REQUEST__INIT;
	req.worker_token = sc->worker_token;
	req.worker_id = sc->worker_id;
	req.address = sc->advertise;
	req.cert_fingerprint = sc->cert_fingerprint;
	req.capacity = sc->capacity;
	req.n_images = load.images.n < SCHED_MAX_IMAGES ? load.images.n : SCHED_MAX_IMAGES;
	req.images = load.images.v;
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, REPLY_MAX);
	int r = call(l, M_REGISTER, &req.base, &reply, st);
	size_t n_images = req.n_images;
	sched_load_free(&load);
	if (r < 0)
		return r;
	Hpcc__V1__RegisterWorkerReply *rep =
		hpcc__v1__register_worker_reply__unpack(NULL, reply.len, (const uint8_t *)reply.data);
	if (!rep)
		return status_set(st, GRPC_STATUS_INTERNAL, "the scheduler's reply does not parse");
	struct token_key *key = NULL;
	char id[TOKEN_NAME_MAX + 1];
	r = token_key_from_public_pem((const char *)rep->routing_key_public_pem.data, rep->routing_key_public_pem.len,
				      &key);
	unsigned interval = rep->heartbeat_interval_ms ? rep->heartbeat_interval_ms : SCHED_DEFAULT_INTERVAL_MS;
	l->session_len = rep->session.len <= SCHED_SESSION_MAX ? rep->session.len : 0;
	if (l->session_len)
		memcpy(l->session, rep->session.data, l->session_len);
	hpcc__v1__register_worker_reply__free_unpacked(rep, NULL);
	if (r < 0 || token_key_id(key, id) < 0) {
		token_key_free(key);
		return status_set(st, GRPC_STATUS_INTERNAL, "the scheduler sent no usable routing key (%s)",
				  strerror(r < 0 ? -r : EINVAL));
	}
	keys_put(sc, l->index, key, id);
	interval = interval < SCHED_MIN_INTERVAL_MS ? SCHED_MIN_INTERVAL_MS :
		   interval > SCHED_MAX_INTERVAL_MS ? SCHED_MAX_INTERVAL_MS : interval;
	if (l->state != LINK_REGISTERED || strcmp(l->key_id, id) != 0)
		log_info("scheduler %s: registered as %s at %s (capacity %u, %zu images); routing key %s%s%s, "
			 "heartbeat every %u ms", l->address, sc->worker_id, sc->advertise, sc->capacity, n_images, id,
			 l->key_id[0] && strcmp(l->key_id, id) != 0 ? ", replacing " : "",
			 l->key_id[0] && strcmp(l->key_id, id) != 0 ? l->key_id : "", interval);
	l->state = LINK_REGISTERED;
	snprintf(l->key_id, sizeof(l->key_id), "%s", id);
	*ret_interval = interval;
	return 0;
}

/* 0 with *ret_again when the scheduler asks for a new registration. */
static int link_heartbeat(struct sched_link *l, bool *ret_again, struct rpc_status *st)
{
	struct sched_client *sc = l->sc;
	struct sched_load load;
	if (get_load(sc, &load, st) < 0)
		return -EPROTO;
	size_t n_vms = load.n_vms;
	_cleanup_free_ Hpcc__V1__HeartbeatRequest__ActiveVm *vms = calloc(n_vms ? n_vms : 1, sizeof(*vms));
	_cleanup_free_ Hpcc__V1__HeartbeatRequest__ActiveVm **ptrs = calloc(n_vms ? n_vms : 1, sizeof(*ptrs));
	if (!vms || !ptrs) {
		sched_load_free(&load);
		return status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < n_vms; i++) {
		hpcc__v1__heartbeat_request__active_vm__init(&vms[i]);
		vms[i].tenant = load.vms[i].tenant;
		vms[i].image_digest = load.vms[i].image;
		ptrs[i] = &vms[i];
	}
	Hpcc__V1__HeartbeatRequest req = HPCC__V1__HEARTBEAT_REQUEST__INIT;
	req.worker_token = sc->worker_token;
	req.worker_id = sc->worker_id;
	req.free_capacity = load.free_capacity;
	req.n_images = load.images.n < SCHED_MAX_IMAGES ? load.images.n : SCHED_MAX_IMAGES;
	req.images = load.images.v;
	req.n_active_vms = n_vms;
	req.active_vms = ptrs;
	req.session.data = l->session;
	req.session.len = l->session_len;
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, REPLY_MAX);
	int r = call(l, M_HEARTBEAT, &req.base, &reply, st);
	sched_load_free(&load);
	if (r < 0)
		return r;
	Hpcc__V1__HeartbeatReply *rep = hpcc__v1__heartbeat_reply__unpack(NULL, reply.len, (const uint8_t *)reply.data);
	if (!rep)
		return status_set(st, GRPC_STATUS_INTERNAL, "the scheduler's reply does not parse");
	*ret_again = rep->reregister;
	hpcc__v1__heartbeat_reply__free_unpacked(rep, NULL);
	return 0;
}

static bool refused(int code)
{
	return code == GRPC_STATUS_UNAUTHENTICATED || code == GRPC_STATUS_PERMISSION_DENIED;
}

/* Logs a failure once per kind, not at every retry. */
static void note_failure(struct sched_link *l, const char *what, const struct rpc_status *st)
{
	if (l->state == LINK_FAILED && l->last_code == st->code)
		return;
	if (refused(st->code))
		log_error("scheduler %s refused the worker token at %s (%s: %s): check [scheduler] worker_token_file "
			  "against the scheduler's configuration; retrying", l->address, what, code_name(st->code), st->msg);
	else if (l->state == LINK_REGISTERED)
		log_warn("scheduler %s: %s failed (%s: %s); registering again when it answers", l->address, what,
			 code_name(st->code), st->msg);
	else
		log_warn("scheduler %s: %s failed (%s: %s); retrying", l->address, what, code_name(st->code), st->msg);
	l->state = LINK_FAILED;
	l->last_code = st->code;
}

/* Sleeps until deadline (monotonic ms) or the stop; true once stopping. */
static bool sleep_until(struct sched_client *sc, int64_t deadline)
{
	pthread_mutex_lock(&sc->lock);
	for (int64_t t = now_ms(); !sc->stopping && t < deadline; t = now_ms()) {
		struct timespec ts = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
		pthread_cond_timedwait(&sc->cond, &sc->lock, &ts);
	}
	bool stop = sc->stopping;
	pthread_mutex_unlock(&sc->lock);
	return stop;
}

static void *link_main(void *arg)
{
	struct sched_link *l = arg;
	struct sched_client *sc = l->sc;
	unsigned interval = SCHED_DEFAULT_INTERVAL_MS, backoff = sc->retry_ms;
	bool registered = false, ever = false;
	int64_t next = now_ms();
	while (!sleep_until(sc, next)) {
		int64_t start = now_ms();
		struct rpc_status st = { 0 };
		if (!registered) {
			if (link_register(l, &interval, &st) == 0) {
				registered = ever = true;
				backoff = sc->retry_ms;
				next = start + interval;
				continue;
			}
			note_failure(l, "registration", &st);
			/* A scheduler that was there and went away is tried at
			 * the heartbeat's pace; a refusal or one never reached
			 * backs off. */
			if (ever && !refused(st.code))
				next = start + (interval < SCHED_MAX_BACKOFF_MS ? interval : SCHED_MAX_BACKOFF_MS);
			else {
				next = start + backoff;
				backoff = backoff * 2 < SCHED_MAX_BACKOFF_MS ? backoff * 2 : SCHED_MAX_BACKOFF_MS;
			}
			continue;
		}
		bool again = false;
		if (link_heartbeat(l, &again, &st) < 0) {
			note_failure(l, "heartbeat", &st);
			registered = false;
			next = start + interval;
		} else if (again) {
			log_info("scheduler %s asks the worker to register again", l->address);
			l->state = LINK_NEW;
			registered = false;
			next = start;
		} else
			next = start + interval;
	}
	return NULL;
}

/* ---- life cycle ---------------------------------------------------------- */

int sched_client_new(const struct sched_client_config *cfg, struct sched_client **ret, struct error *err)
{
	if (cfg->n == 0 || cfg->n > WORKER_SCHEDULERS_MAX || !cfg->load || !cfg->worker_token || !cfg->worker_id ||
	    !cfg->advertise || !cfg->cert_fingerprint)
		return error_set(err, -EINVAL, "scheduler client: incomplete configuration");
	struct sched_client *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&sc->lock, NULL);
	pthread_mutex_init(&sc->join_lock, NULL);
	pthread_rwlock_init(&sc->keys_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sc->cond, &ca);
	pthread_condattr_destroy(&ca);
	sc->capacity = cfg->capacity;
	sc->retry_ms = cfg->retry_ms ? cfg->retry_ms : DEFAULT_RETRY_MS;
	sc->load = cfg->load;
	sc->userdata = cfg->userdata;
	sc->worker_token = strdup(cfg->worker_token);
	sc->worker_id = strdup(cfg->worker_id);
	sc->advertise = strdup(cfg->advertise);
	sc->cert_fingerprint = strdup(cfg->cert_fingerprint);
	int r = sc->worker_token && sc->worker_id && sc->advertise && sc->cert_fingerprint ? 0 :
		error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < cfg->n; i++) {
		struct sched_link *l = &sc->links[sc->n++];
		l->sc = sc;
		l->index = i;
		l->address = strdup(cfg->addresses[i]);
		l->pin = strdup(cfg->pins[i]);
		if (!l->address || !l->pin) {
			r = error_set(err, -ENOMEM, "out of memory");
			break;
		}
		/* The cap covers what is sent too: a heartbeat lists up to
		 * SCHED_MAX_ACTIVE_VMS VMs. Replies are capped by REPLY_MAX. */
		struct rpc_channel_config cc = { .target = l->address, .pin = l->pin, .max_message = (size_t)4 << 20 };
		r = rpc_channel_new(&cc, &l->ch, err);
	}
	if (r < 0) {
		sched_client_free(sc);
		return r;
	}
	*ret = sc;
	return 0;
}

int sched_client_start(struct sched_client *sc, struct error *err)
{
	int r = 0;
	pthread_mutex_lock(&sc->join_lock);
	pthread_mutex_lock(&sc->lock);
	bool stopping = sc->stopping;
	pthread_mutex_unlock(&sc->lock);
	for (size_t i = 0; !stopping && i < sc->n; i++) {
		struct sched_link *l = &sc->links[i];
		if (l->started)
			continue;
		int e = pthread_create(&l->thread, NULL, link_main, l);
		if (e != 0) {
			r = error_set(err, -e, "cannot start the thread for scheduler %s: %s", l->address, strerror(e));
			break;
		}
		l->started = true;
	}
	pthread_mutex_unlock(&sc->join_lock);
	return r;
}

void sched_client_stop(struct sched_client *sc)
{
	if (!sc)
		return;
	pthread_mutex_lock(&sc->lock);
	sc->stopping = true;
	pthread_cond_broadcast(&sc->cond);
	pthread_mutex_unlock(&sc->lock);
	pthread_mutex_lock(&sc->join_lock);
	for (size_t i = 0; i < sc->n; i++)
		if (sc->links[i].started) {
			pthread_join(sc->links[i].thread, NULL);
			sc->links[i].started = false;
		}
	pthread_mutex_unlock(&sc->join_lock);
}

void sched_client_free(struct sched_client *sc)
{
	if (!sc)
		return;
	sched_client_stop(sc);
	for (size_t i = 0; i < sc->n; i++) {
		rpc_channel_free(sc->links[i].ch);
		free(sc->links[i].address);
		free(sc->links[i].pin);
		token_key_free(sc->keys[i].key);
	}
	if (sc->worker_token)
		explicit_bzero(sc->worker_token, strlen(sc->worker_token));
	free(sc->worker_token);
	free(sc->worker_id);
	free(sc->advertise);
	free(sc->cert_fingerprint);
	pthread_mutex_destroy(&sc->lock);
	pthread_mutex_destroy(&sc->join_lock);
	pthread_rwlock_destroy(&sc->keys_lock);
	pthread_cond_destroy(&sc->cond);
	free(sc);
}
