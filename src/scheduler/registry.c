/*
 * The worker table and the routing decision (see registry.h). One
 * read-write lock: Route only reads; registrations and heartbeats write
 * and sweep out workers that have been silent for too long.
 */
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scheduler_config.h"
#include "strv.h"

/* A forgotten worker must register again; before that it is only stale. */
#define REGISTRY_FORGET_FACTOR 10
/* A full worker still gets work when every worker is full, but last. */
#define REGISTRY_FULL_WEIGHT 0.01

struct worker_entry {
	char id[TOKEN_NAME_MAX + 1];
	uint8_t session[REGISTRY_SESSION_SIZE];
	char address[REGISTRY_ADDRESS_MAX + 1];
	char cert_fingerprint[DIGEST_STR_LEN + 1];
	unsigned capacity, free_capacity;
	struct strv images;
	struct strv active;  /* "tenant image" */
	int64_t last_seen_ms;
	bool stale_logged;
};

struct registry {
	pthread_rwlock_t lock;
	int64_t stale_ms;
	struct worker_entry **v;
	size_t n;
};

int registry_new(int64_t stale_ms, struct registry **ret)
{
	struct registry *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_rwlock_init(&r->lock, NULL);
	r->stale_ms = stale_ms > 0 ? stale_ms : 1;
	*ret = r;
	return 0;
}

static void entry_free(struct worker_entry *w)
{
	if (!w)
		return;
	strv_free(&w->images);
	strv_free(&w->active);
	free(w);
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		entry_free(r->v[i]);
	free(r->v);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

static int report_check(const struct registry_report *rep, bool full)
{
	if (!rep->worker_id || !token_name_valid(rep->worker_id))
		return -EINVAL;
	if (full) {
		if (!rep->address || !net_host_port_valid(rep->address) ||
		    !token_image_digest_valid(rep->cert_fingerprint) || rep->capacity == 0 ||
		    rep->capacity > REGISTRY_MAX_CAPACITY)
			return -EINVAL;
	}
	if (rep->free_capacity > REGISTRY_MAX_CAPACITY || rep->n_images > REGISTRY_MAX_IMAGES ||
	    rep->n_active > REGISTRY_MAX_ACTIVE)
		return -EINVAL;
	for (size_t i = 0; i < rep->n_images; i++)
		if (!token_image_digest_valid(rep->images[i]))
			return -EINVAL;
	for (size_t i = 0; i < rep->n_active; i++)
		if (!rep->active[i].tenant || !token_name_valid(rep->active[i].tenant) ||
		    !token_image_digest_valid(rep->active[i].image))
			return -EINVAL;
	return 0;
}

/* Images and active pairs of a report, into fresh vectors (swapped in only when complete). */
static int report_lists(const struct registry_report *rep, struct strv *images, struct strv *active)
{
	for (size_t i = 0; i < rep->n_images; i++)
		if (strv_push(images, rep->images[i]) < 0)
			return -ENOMEM;
	for (size_t i = 0; i < rep->n_active; i++)
		if (strv_pushf(active, "%s %s", rep->active[i].tenant, rep->active[i].image) < 0)
			return -ENOMEM;
	return 0;
}

static struct worker_entry *find(struct registry *r, const char *id, size_t *ret_index)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i]->id, id) == 0) {
			if (ret_index)
				*ret_index = i;
			return r->v[i];
		}
	return NULL;
}

/* Under the write lock: forget workers silent for REGISTRY_FORGET_FACTOR stale times. */
static void sweep(struct registry *r, int64_t now_ms)
{
	for (size_t i = 0; i < r->n;) {
		struct worker_entry *w = r->v[i];
		if (now_ms - w->last_seen_ms > REGISTRY_FORGET_FACTOR * r->stale_ms) {
			log_info("scheduler: worker %s forgotten after %lld ms without a heartbeat", w->id,
				 (long long)(now_ms - w->last_seen_ms));
			entry_free(w);
			r->v[i] = r->v[--r->n];
			continue;
		}
		if (!w->stale_logged && now_ms - w->last_seen_ms > r->stale_ms) {
			log_info("scheduler: worker %s is not routed to: no heartbeat for %lld ms", w->id,
				 (long long)(now_ms - w->last_seen_ms));
			w->stale_logged = true;
		}
		i++;
	}
}

int registry_register(struct registry *r, const struct registry_report *rep, int64_t now_ms,
		      uint8_t ret_session[REGISTRY_SESSION_SIZE])
{
	if (report_check(rep, true) < 0)
		return -EINVAL;
	struct worker_entry *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	snprintf(w->id, sizeof(w->id), "%s", rep->worker_id);
	snprintf(w->address, sizeof(w->address), "%s", rep->address);
	snprintf(w->cert_fingerprint, sizeof(w->cert_fingerprint), "%s", rep->cert_fingerprint);
	w->capacity = rep->capacity;
	w->free_capacity = rep->free_capacity > rep->capacity ? rep->capacity : rep->free_capacity;
	if (RAND_bytes(w->session, sizeof(w->session)) != 1) {
		entry_free(w);
		return -EIO;
	}
	w->last_seen_ms = now_ms;
	if (report_lists(rep, &w->images, &w->active) < 0) {
		entry_free(w);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&r->lock);
	sweep(r, now_ms);
	size_t i;
	int ret = 0;
	struct worker_entry *old = find(r, rep->worker_id, &i);
	bool changed = old && (strcmp(old->address, w->address) != 0 ||
			       strcmp(old->cert_fingerprint, w->cert_fingerprint) != 0);
	if (changed && now_ms - old->last_seen_ms <= r->stale_ms) {
		/* A healthy worker keeps its id: whoever else holds the worker token cannot
		 * take its traffic over. A worker that changed its certificate waits until its
		 * old entry is stale (1.5 heartbeat intervals). */
		log_warn("scheduler: worker %s: a registration from %s with another address or certificate refused "
			 "while the registered one (%s) is healthy", w->id, w->address, old->address);
		ret = -EEXIST;
	} else if (old) {
		if (changed)
			log_info("scheduler: worker %s registered again at %s (was %s)", w->id, w->address, old->address);
		r->v[i] = w;
		entry_free(old);
	} else if (r->n >= REGISTRY_MAX_WORKERS) {
		ret = -E2BIG;
	} else {
		struct worker_entry **v = realloc(r->v, (r->n + 1) * sizeof(*v));
		if (!v)
			ret = -ENOMEM;
		else {
			r->v = v;
			r->v[r->n++] = w;
			log_info("scheduler: worker %s registered: %s, capacity %u, %zu images", w->id, w->address,
				 w->capacity, w->images.n);
		}
	}
	if (ret == 0)
		memcpy(ret_session, w->session, sizeof(w->session));
	pthread_rwlock_unlock(&r->lock);
	if (ret < 0)
		entry_free(w);
	return ret;
}

int registry_heartbeat(struct registry *r, const struct registry_report *rep, int64_t now_ms)
{
	if (report_check(rep, false) < 0)
		return -EINVAL;
	struct strv images = { 0 }, active = { 0 };
	if (report_lists(rep, &images, &active) < 0) {
		strv_free(&images);
		strv_free(&active);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&r->lock);
	sweep(r, now_ms);
	struct worker_entry *w = find(r, rep->worker_id, NULL);
	int ret = -ENOENT;
	/* Only the registration's own heartbeats keep it alive. */
	if (w && (rep->session_len != sizeof(w->session) ||
		  CRYPTO_memcmp(rep->session, w->session, sizeof(w->session)) != 0))
		w = NULL;
	if (w) {
		if (w->stale_logged)
			log_info("scheduler: worker %s is back", w->id);
		w->stale_logged = false;
		w->last_seen_ms = now_ms;
		w->free_capacity = rep->free_capacity > w->capacity ? w->capacity : rep->free_capacity;
		struct strv t = w->images;
		w->images = images;
		images = t;
		t = w->active;
		w->active = active;
		active = t;
		ret = 0;
	}
	pthread_rwlock_unlock(&r->lock);
	strv_free(&images);
	strv_free(&active);
	return ret;
}

double registry_hash_unit(const char *tenant, const char *image, const char *worker_id)
{
	/* NUL-separated: no two different triples give the same input. */
	unsigned char in[3 * 80 + 8];
	size_t a = strnlen(tenant, 79), b = strnlen(image, 79), c = strnlen(worker_id, 79), n = 0;
	memcpy(in + n, tenant, a), n += a, in[n++] = 0;
	memcpy(in + n, image, b), n += b, in[n++] = 0;
	memcpy(in + n, worker_id, c), n += c;
	/* digest_bytes uses a SHA-256 fetched once: EVP_Digest with EVP_sha256() looks the algorithm up
	 * again on every call, once per worker per Route. A failure (out of memory) hashes to a fixed value. */
	struct digest md = { 0 };
	digest_bytes(in, n, &md);
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x = x << 8 | md.b[i];
	/* The top 53 bits, centred in their interval: never 0, never 1. */
	return ((double)(x >> 11) + 0.5) / 9007199254740992.0;
}

static bool has(const struct strv *s, const char *item)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], item) == 0)
			return true;
	return false;
}

int registry_route(struct registry *r, const char *tenant, const char *image, bool sticky, int64_t now_ms,
		   struct registry_choice *ret)
{
	char pair[TOKEN_NAME_MAX + DIGEST_STR_LEN + 2];
	snprintf(pair, sizeof(pair), "%s %s", tenant, image);
	pthread_rwlock_rdlock(&r->lock);
	const struct worker_entry *best = NULL, *best_sticky = NULL;
	double best_score = 0, best_sticky_score = 0;
	/* Workers with free capacity first; full ones only when every worker is full. */
	for (int pass = 0; pass < 2 && !best; pass++)
	for (size_t i = 0; i < r->n; i++) {
		const struct worker_entry *w = r->v[i];
		if (now_ms - w->last_seen_ms > r->stale_ms || !has(&w->images, image) || (pass == 0) != (w->free_capacity > 0))
			continue;
		/* Weighted rendezvous (logarithmic method): score = weight / -ln(u). The highest
		 * score wins; a worker's share is proportional to its weight, and adding or losing
		 * one worker moves only the pairs that it wins or held. */
		double weight = w->free_capacity ? (double)w->free_capacity : REGISTRY_FULL_WEIGHT;
		double score = weight / -log(registry_hash_unit(tenant, image, w->id));
		if (!best || score > best_score || (score == best_score && strcmp(w->id, best->id) < 0))
			best = w, best_score = score;
		if (sticky && w->free_capacity && has(&w->active, pair) &&
		    (!best_sticky || score > best_sticky_score ||
		     (score == best_sticky_score && strcmp(w->id, best_sticky->id) < 0)))
			best_sticky = w, best_sticky_score = score;
	}
	const struct worker_entry *w = best_sticky ? best_sticky : best;
	if (w) {
		snprintf(ret->worker_id, sizeof(ret->worker_id), "%s", w->id);
		snprintf(ret->address, sizeof(ret->address), "%s", w->address);
		snprintf(ret->cert_fingerprint, sizeof(ret->cert_fingerprint), "%s", w->cert_fingerprint);
		ret->sticky_hit = best_sticky != NULL;
	}
	pthread_rwlock_unlock(&r->lock);
	return w ? 0 : -ENOENT;
}

int registry_route_to(struct registry *r, const char *worker_id, const char *image, int64_t now_ms,
		      struct registry_choice *ret)
{
	pthread_rwlock_rdlock(&r->lock);
	const struct worker_entry *found = NULL;
	for (size_t i = 0; i < r->n && !found; i++) {
		const struct worker_entry *w = r->v[i];
		if (strcmp(w->id, worker_id) == 0 && now_ms - w->last_seen_ms <= r->stale_ms && has(&w->images, image))
			found = w;
	}
	if (found) {
		snprintf(ret->worker_id, sizeof(ret->worker_id), "%s", found->id);
		snprintf(ret->address, sizeof(ret->address), "%s", found->address);
		snprintf(ret->cert_fingerprint, sizeof(ret->cert_fingerprint), "%s", found->cert_fingerprint);
		ret->sticky_hit = false;
	}
	pthread_rwlock_unlock(&r->lock);
	return found ? 0 : -ENOENT;
}

size_t registry_count(struct registry *r, int64_t now_ms, size_t *ret_healthy)
{
	pthread_rwlock_rdlock(&r->lock);
	size_t healthy = 0, n = r->n;
	for (size_t i = 0; i < r->n; i++)
		healthy += now_ms - r->v[i]->last_seen_ms <= r->stale_ms;
	pthread_rwlock_unlock(&r->lock);
	if (ret_healthy)
		*ret_healthy = healthy;
	return n;
}
