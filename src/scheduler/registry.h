/*
 * The scheduler's soft state: the workers that registered, what each last
 * said in a heartbeat, and the routing decision. A worker that has been
 * silent for longer than the stale time is not routed to; one silent for
 * ten times that is forgotten (it must register again). Routing is
 * weighted rendezvous hashing of (tenant, image) over the healthy workers
 * holding the image, weighted by free capacity, preferring (when sticky)
 * a worker that already runs a VM for the pair. It depends only on what
 * workers reported, so two scheduler replicas that hear the same workers
 * answer alike. Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "netaddr.h"
#include "token.h"

#define REGISTRY_MAX_WORKERS 4096
#define REGISTRY_MAX_IMAGES 1024      /* images one worker reports */
#define REGISTRY_MAX_ACTIVE 4096      /* (tenant, image) pairs one worker reports */
#define REGISTRY_ADDRESS_MAX NET_HOST_PORT_MAX
#define REGISTRY_SESSION_SIZE 16
#define REGISTRY_MAX_CAPACITY 100000

struct registry;

struct registry_active {
	const char *tenant, *image;
};

/* What a worker says about itself (RegisterWorker, Heartbeat); pointers are copied. */
struct registry_report {
	const char *worker_id;
	const char *address;          /* RegisterWorker only */
	const char *cert_fingerprint; /* RegisterWorker only */
	unsigned capacity;            /* RegisterWorker only */
	unsigned free_capacity;
	const char *const *images;
	size_t n_images;
	const struct registry_active *active;
	size_t n_active;
	const uint8_t *session;       /* Heartbeat only: what RegisterWorker answered */
	size_t session_len;
};

struct registry_choice {
	char worker_id[TOKEN_NAME_MAX + 1];
	char address[REGISTRY_ADDRESS_MAX + 1];
	char cert_fingerprint[DIGEST_STR_LEN + 1];
	bool sticky_hit;  /* chosen because it already runs a VM for the pair */
};

/* stale_ms: silence after which a worker is not routed to. */
int registry_new(int64_t stale_ms, struct registry **ret);
void registry_free(struct registry *r);
/*
 * -EINVAL for a malformed report (checked here: ids, address, fingerprint,
 * digests, counts), -E2BIG when full, -EEXIST when a healthy worker of that
 * id is registered with another address or certificate (anyone holding the
 * worker token could otherwise take over a live worker's id). On success,
 * ret_session gets the REGISTRY_SESSION_SIZE random bytes that the worker's
 * heartbeats must echo.
 */
int registry_register(struct registry *r, const struct registry_report *rep, int64_t now_ms,
		      uint8_t ret_session[REGISTRY_SESSION_SIZE]);
/* -ENOENT when the worker is unknown (forgotten, or the scheduler restarted) or the
 * session is not that of its registration: it must register again. */
int registry_heartbeat(struct registry *r, const struct registry_report *rep, int64_t now_ms);
/* -ENOENT when no healthy worker holds the image. */
int registry_route(struct registry *r, const char *tenant, const char *image, bool sticky, int64_t now_ms,
		   struct registry_choice *ret);
/* That one worker, when it is healthy and holds the image (hpcc reproduce
 * must reach the worker that retained the action); -ENOENT otherwise. */
int registry_route_to(struct registry *r, const char *worker_id, const char *image, int64_t now_ms,
		      struct registry_choice *ret);
/* Workers known and healthy now (for logs and tests). */
size_t registry_count(struct registry *r, int64_t now_ms, size_t *ret_healthy);
/* The rendezvous score's hash: a uniform value in (0, 1) for (tenant, image, worker). Exposed for tests. */
double registry_hash_unit(const char *tenant, const char *image, const char *worker_id);
