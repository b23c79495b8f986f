/*
 * Route answers for the daemon (see route.h). One mutex guards the cached
 * answer and the channel slots; it is held across the Route call itself,
 * so that a burst of compiles after expiry asks the scheduler once.
 */
#include "route.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "log.h"
#include "netaddr.h"
#include "oauth.h"
#include "scheduler.pb-c.h"

#define ROUTE_TIMEOUT_MS 10000
#define ROUTE_MAX_REPLY (16 * 1024)
#define ACCESS_TOKEN_MIN_VALID_S 60  /* refresh an access token this long before it expires */
#define ROUTE_WAIT_S 2               /* a compile waits this long for another one's Route call */

struct channel_slot {
	char address[256];
	char pin[DIGEST_STR_LEN + 1];
	struct rpc_channel *ch;
	int refs;
};

struct route_client {
	char *scheduler, *tenant, *image, *auth_file;
	struct rpc_channel *sched;
	pthread_mutex_t lock;  /* guards everything below */
	struct channel_slot slots[ROUTE_MAX_CHANNELS];
	/* the cached answer */
	bool have;
	struct channel_slot *slot;
	struct buf token;
	char worker_id[TOKEN_NAME_MAX + 1];
	char cache_mode[16];
	int64_t refresh_at;    /* ask Route again from this time on */
	bool asking;           /* one compile is asking Route now (without the lock) */
	pthread_cond_t answered;
	int64_t down_until;    /* not logged in, refused or unreachable: do not ask before this */
	int down_code;         /* and the error until then */
	char last_error[200];
	unsigned long n_routes, n_refused;
};

int route_client_new(const struct config *cfg, const char *tenant, const char *image, struct route_client **ret,
		     struct error *err)
{
	const char *sched = config_get(cfg, CONFIG_REMOTE_SCHEDULER);
	const char *pin = config_get(cfg, CONFIG_REMOTE_SCHEDULER_PIN);
	if (!pin || !*pin)
		return error_set(err, -EINVAL, "[remote] scheduler needs remote.scheduler_pin (the scheduler's certificate pin)");
	struct route_client *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&rc->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rc->answered, &ca);
	pthread_condattr_destroy(&ca);
	buf_init(&rc->token, TOKEN_MAX_SIZE);
	int r = oauth_session_path(cfg, tenant, &rc->auth_file, err);
	if (r == 0 && (!(rc->scheduler = strdup(sched)) || !(rc->tenant = strdup(tenant)) || !(rc->image = strdup(image))))
		r = error_set(err, -ENOMEM, "out of memory");
	struct rpc_channel_config cc = { .target = sched, .pin = pin, .max_message = ROUTE_MAX_REPLY };
	if (r == 0)
		r = rpc_channel_new(&cc, &rc->sched, err);
	if (r < 0) {
		route_client_free(rc);
		return r;
	}
	rpc_channel_connect(rc->sched);  /* the handshake now, not in the first compile */
	*ret = rc;
	return 0;
}

void route_client_free(struct route_client *rc)
{
	if (!rc)
		return;
	for (size_t i = 0; i < ROUTE_MAX_CHANNELS; i++)
		rpc_channel_free(rc->slots[i].ch);
	rpc_channel_free(rc->sched);
	buf_free(&rc->token);
	pthread_cond_destroy(&rc->answered);
	pthread_mutex_destroy(&rc->lock);
	free(rc->scheduler);
	free(rc->tenant);
	free(rc->image);
	free(rc->auth_file);
	free(rc);
}

/* Under the lock: the slot for (address, pin), made when missing; an unused slot is recycled when all are taken. */
static struct channel_slot *slot_for(struct route_client *rc, const char *address, const char *pin, struct error *err)
{
	struct channel_slot *free_slot = NULL, *idle = NULL;
	for (size_t i = 0; i < ROUTE_MAX_CHANNELS; i++) {
		struct channel_slot *s = &rc->slots[i];
		if (s->ch && strcmp(s->address, address) == 0 && strcmp(s->pin, pin) == 0)
			return s;
		if (!s->ch && !free_slot)
			free_slot = s;
		if (s->ch && s->refs == 0 && s != rc->slot && !idle)
			idle = s;
	}
	struct channel_slot *s = free_slot ? free_slot : idle;
	if (!s) {
		error_set(err, -EBUSY, "every worker channel is in use");
		return NULL;
	}
	if (s->ch) {
		rpc_channel_free(s->ch);
		s->ch = NULL;
	}
	struct rpc_channel_config cc = { .target = address, .pin = pin, .max_message = (size_t)300 << 20 };
	if (rpc_channel_new(&cc, &s->ch, err) < 0)
		return NULL;
	snprintf(s->address, sizeof(s->address), "%s", address);
	snprintf(s->pin, sizeof(s->pin), "%s", pin);
	s->refs = 0;
	return s;
}

static bool printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* The answer's fields are what the daemon will dial and present: checked before anything is kept. */
static bool answer_valid(const Hpcc__V1__RouteReply *rep, int64_t now)
{
	return net_host_port_valid(rep->worker_address) && printable(rep->worker_id, TOKEN_NAME_MAX) &&
	       strlen(rep->worker_cert_fingerprint) == DIGEST_STR_LEN &&
	       strncmp(rep->worker_cert_fingerprint, "sha256:", 7) == 0 && rep->routing_token.len > 0 &&
	       rep->routing_token.len <= TOKEN_MAX_SIZE && rep->expires_at > now &&
	       (!rep->cache_mode[0] || strcmp(rep->cache_mode, "paranoid") == 0 || strcmp(rep->cache_mode, "trusted") == 0);
}

/*
 * Without the lock: a fresh access token (refreshed if needed) and one
 * Route call. 0 and *ret_rep (checked) on success; -ENOENT not logged in or
 * refused as unauthenticated, -EACCES refused otherwise, -EAGAIN
 * unreachable or a bad answer, -ENOMEM.
 */
static int ask(struct route_client *rc, const char *worker_id, Hpcc__V1__RouteReply **ret_rep, struct error *err)
{
	_cleanup_free_ char *access = NULL;
	int r = oauth_access_token(rc->auth_file, ACCESS_TOKEN_MIN_VALID_S, &access, err);
	if (r < 0)
		return r == -ENOENT || r == -EKEYEXPIRED ? -ENOENT : r == -ENOMEM ? -ENOMEM : -EAGAIN;
	Hpcc__V1__RouteRequest req = HPCC__V1__ROUTE_REQUEST__INIT;
	req.tenant = rc->tenant;
	req.image_digest = rc->image;
	req.access_token = access;
	req.worker_id = (char *)(worker_id ? worker_id : "");
	size_t len = hpcc__v1__route_request__get_packed_size(&req);
	uint8_t *packed = malloc(len ? len : 1);
	if (!packed) {
		OPENSSL_cleanse(access, strlen(access));
		return error_set(err, -ENOMEM, "out of memory");
	}
	hpcc__v1__route_request__pack(&req, packed);
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, ROUTE_MAX_REPLY);
	struct rpc_status st = { 0 };
	r = rpc_unary(rc->sched, "/hpcc.v1.SchedulerService/Route", packed, len, ROUTE_TIMEOUT_MS, &reply, &st);
	/* The access token is a bearer credential: not left in freed memory. */
	OPENSSL_cleanse(packed, len);
	free(packed);
	OPENSSL_cleanse(access, strlen(access));
	if (r < 0 || st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_DEADLINE_EXCEEDED)
		return error_set(err, -EAGAIN, "scheduler %s: %s", rc->scheduler,
				 r < 0 ? strerror(-r) : st.msg[0] ? st.msg : "unavailable");
	if (st.code != GRPC_STATUS_OK)
		return error_set(err, st.code == GRPC_STATUS_UNAUTHENTICATED ? -ENOENT : -EACCES,
				 "scheduler refused Route: %s", st.msg);
	Hpcc__V1__RouteReply *rep = hpcc__v1__route_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
	if (!rep || !answer_valid(rep, time(NULL))) {
		if (rep)
			hpcc__v1__route_reply__free_unpacked(rep, NULL);
		return error_set(err, -EAGAIN, "scheduler %s: malformed Route answer", rc->scheduler);
	}
	*ret_rep = rep;
	return 0;
}

/* Under the lock: keeps a checked answer. */
static int install(struct route_client *rc, const Hpcc__V1__RouteReply *rep, int64_t now, struct error *err)
{
	struct channel_slot *s = slot_for(rc, rep->worker_address, rep->worker_cert_fingerprint, err);
	if (!s)
		return -EAGAIN;
	buf_reset(&rc->token);
	if (buf_append(&rc->token, rep->routing_token.data, rep->routing_token.len) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (!rc->have || strcmp(rc->worker_id, rep->worker_id) != 0)
		log_info("route: tenant %s image %.19s -> worker %s at %s", rc->tenant, rc->image, rep->worker_id,
			 rep->worker_address);
	rc->have = true;
	rc->slot = s;
	snprintf(rc->worker_id, sizeof(rc->worker_id), "%s", rep->worker_id);
	snprintf(rc->cache_mode, sizeof(rc->cache_mode), "%s", rep->cache_mode[0] ? rep->cache_mode : "paranoid");
	/* A routing token lives at most TOKEN_MAX_TTL; whatever the answer says, it is not kept longer. */
	int64_t expires = rep->expires_at < now + TOKEN_MAX_TTL ? rep->expires_at : now + TOKEN_MAX_TTL;
	/* Ask again a little before expiry: 30 s, or a quarter of a short lifetime. */
	int64_t life = expires - now;
	rc->refresh_at = expires - (life / 4 < ROUTE_REFRESH_MARGIN_S ? life / 4 : ROUTE_REFRESH_MARGIN_S);
	return 0;
}

int route_get(struct route_client *rc, struct route_lease *ret, struct error *err)
{
	pthread_mutex_lock(&rc->lock);
	int r = 0;
	int64_t now = time(NULL);
	/* After `hpcc logout` no compile goes remote, even on a route still cached. */
	struct stat st;
	if (rc->have && stat(rc->auth_file, &st) < 0 && errno == ENOENT)
		rc->have = false;
	if (!rc->have || rc->refresh_at <= now) {
		rc->have = false;
		/* One compile asks; the others wait for its answer a little, then compile locally. */
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += ROUTE_WAIT_S;
		while (rc->asking && r == 0)
			if (pthread_cond_timedwait(&rc->answered, &rc->lock, &until) == ETIMEDOUT)
				r = error_set(err, -EAGAIN, "the scheduler has not answered for %d s", ROUTE_WAIT_S);
		now = time(NULL);
		if (r == 0 && !rc->have) {
			if (rc->down_until > now) {
				r = error_set(err, rc->down_code, "%s (asking again in %lld s)",
					      rc->last_error[0] ? rc->last_error : "scheduler unavailable",
					      (long long)(rc->down_until - now));
			} else {
				rc->asking = true;
				rc->n_routes++;
				pthread_mutex_unlock(&rc->lock);
				Hpcc__V1__RouteReply *rep = NULL;
				r = ask(rc, NULL, &rep, err);
				pthread_mutex_lock(&rc->lock);
				now = time(NULL);  /* after the network: a slow failure still backs off its full time */
				if (r == 0)
					r = install(rc, rep, now, err);
				if (rep)
					hpcc__v1__route_reply__free_unpacked(rep, NULL);
				if (r < 0) {
					/* Not logged in, refused or unreachable: not asked again at every compile. */
					rc->n_refused += r != -EAGAIN;
					rc->down_until = now + ROUTE_DOWN_SECONDS;
					rc->down_code = r == -ENOMEM ? -EAGAIN : r;
					snprintf(rc->last_error, sizeof(rc->last_error), "%.199s", err->msg);
				}
				rc->asking = false;
				pthread_cond_broadcast(&rc->answered);
			}
		}
	}
	if (r == 0) {
		buf_init(&ret->token, TOKEN_MAX_SIZE);
		if (buf_append(&ret->token, rc->token.data, rc->token.len) < 0) {
			buf_free(&ret->token);
			r = error_set(err, -ENOMEM, "out of memory");
		} else {
			rc->slot->refs++;
			ret->ch = rc->slot->ch;
			ret->slot = rc->slot;
			snprintf(ret->worker_id, sizeof(ret->worker_id), "%s", rc->worker_id);
			snprintf(ret->cache_mode, sizeof(ret->cache_mode), "%s", rc->cache_mode);
			rc->last_error[0] = '\0';
		}
	}
	pthread_mutex_unlock(&rc->lock);
	return r;
}

int route_get_worker(struct route_client *rc, const char *worker_id, struct route_lease *ret, struct error *err)
{
	*ret = (struct route_lease){ 0 };
	Hpcc__V1__RouteReply *rep = NULL;
	int r = ask(rc, worker_id, &rep, err);
	if (r == 0 && strcmp(rep->worker_id, worker_id) != 0)
		r = error_set(err, -EAGAIN, "the scheduler routed to worker %.64s, not %.64s", rep->worker_id, worker_id);
	if (r == 0) {
		pthread_mutex_lock(&rc->lock);
		struct channel_slot *s = slot_for(rc, rep->worker_address, rep->worker_cert_fingerprint, err);
		if (!s)
			r = -EAGAIN;
		else {
			buf_init(&ret->token, TOKEN_MAX_SIZE);
			if (buf_append(&ret->token, rep->routing_token.data, rep->routing_token.len) < 0) {
				buf_free(&ret->token);
				r = error_set(err, -ENOMEM, "out of memory");
			} else {
				s->refs++;
				ret->ch = s->ch;
				ret->slot = s;
				snprintf(ret->worker_id, sizeof(ret->worker_id), "%s", rep->worker_id);
				snprintf(ret->cache_mode, sizeof(ret->cache_mode), "%s",
					 rep->cache_mode[0] ? rep->cache_mode : "paranoid");
			}
		}
		pthread_mutex_unlock(&rc->lock);
	}
	if (rep)
		hpcc__v1__route_reply__free_unpacked(rep, NULL);
	return r;
}

void route_put(struct route_client *rc, struct route_lease *lease)
{
	if (!lease->slot)
		return;
	pthread_mutex_lock(&rc->lock);
	((struct channel_slot *)lease->slot)->refs--;
	pthread_mutex_unlock(&rc->lock);
	buf_free(&lease->token);
	lease->slot = NULL;
	lease->ch = NULL;
}

void route_forget(struct route_client *rc, const char *worker_id)
{
	pthread_mutex_lock(&rc->lock);
	if (rc->have && strcmp(rc->worker_id, worker_id) == 0)
		rc->have = false;
	pthread_mutex_unlock(&rc->lock);
}

void route_status(struct route_client *rc, char *out, size_t n)
{
	pthread_mutex_lock(&rc->lock);
	int64_t now = time(NULL);
	if (rc->have)
		snprintf(out, n, "remote_scheduler %s\nremote_worker %s (%s)\nremote_route_renewed_in %lld\nremote_routes %lu\n",
			 rc->scheduler, rc->worker_id, rc->slot->address, (long long)(rc->refresh_at - now), rc->n_routes);
	else
		snprintf(out, n, "remote_scheduler %s\nremote_worker none%s%s\nremote_routes %lu\n", rc->scheduler,
			 rc->last_error[0] ? ": " : "", rc->last_error, rc->n_routes);
	pthread_mutex_unlock(&rc->lock);
}
