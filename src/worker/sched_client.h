/*
 * The worker's side of the route-only scheduler (DESIGN.md §1, §9): one
 * thread per configured scheduler replica registers the worker
 * (RegisterWorker: its id, the address clients dial, its certificate pin,
 * capacity and images), then sends a Heartbeat (free capacity, images,
 * active VMs) every interval the scheduler asked for. A refused or failed
 * registration is retried with backoff; a lost heartbeat or a reply that
 * says "reregister" makes the thread register again. Each registration
 * hands the worker the scheduler's routing-token verification key; the
 * keys received form a small set (one per scheduler, deduplicated by key
 * id) that sched_client_verify checks tokens against. Every call has a
 * short timeout, and sched_client_stop wakes and joins the threads, so
 * that nothing is in flight once it returns. See docs/worker.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "strv.h"
#include "token.h"
#include "worker_config.h"

/* Caps that keep a heartbeat (with a 4 KiB worker token) under the
 * scheduler's 64 KiB message cap. */
#define SCHED_MAX_ACTIVE_VMS 256     /* (tenant, image) pairs in one heartbeat */
#define SCHED_MAX_IMAGES 256         /* images in one registration or heartbeat */
#define SCHED_CALL_TIMEOUT_MS 2000   /* one RegisterWorker or Heartbeat */
#define SCHED_DEFAULT_INTERVAL_MS 10000 /* when the scheduler names no interval */
#define SCHED_MIN_INTERVAL_MS 100
#define SCHED_MAX_INTERVAL_MS 300000
#define SCHED_MAX_BACKOFF_MS 10000   /* between attempts to register */

struct sched_vm {
	char tenant[TOKEN_NAME_MAX + 1];
	char image[DIGEST_STR_LEN + 1];
};

/* What the worker reports in a registration and a heartbeat, filled by the
 * worker's callback just before each call. */
struct sched_load {
	unsigned free_capacity;
	struct strv images;       /* "sha256:<hex>" the worker can serve now */
	struct sched_vm *vms;     /* (tenant, image) of the VMs up now (the microVM runtime), each pair once */
	size_t n_vms, alloc_vms;
};

/* Copies one VM's (tenant, image) pair unless it is listed already (a pair
 * dropped past SCHED_MAX_ACTIVE_VMS or when a name does not fit); -ENOMEM. */
int sched_load_add_vm(struct sched_load *l, const char *tenant, const char *image);
void sched_load_free(struct sched_load *l);

struct sched_client_config {
	const char *const *addresses;  /* "host:port" of each scheduler */
	const char *const *pins;       /* "sha256:<hex>" of each one's certificate */
	size_t n;                      /* 1..WORKER_SCHEDULERS_MAX */
	const char *worker_token;      /* proves to the scheduler that this is a worker */
	const char *worker_id;
	const char *advertise;         /* "host:port" clients dial (a real port, not 0) */
	const char *cert_fingerprint;  /* "sha256:<hex>" of the worker's certificate */
	unsigned capacity;             /* compiles at once */
	unsigned retry_ms;             /* first delay after a failed registration (0: 500), doubled up to
	                                * SCHED_MAX_BACKOFF_MS */
	/* Fills *ret (zeroed before the call) for each registration and
	 * heartbeat; called from the client's threads. Required. */
	int (*load)(void *userdata, struct sched_load *ret);
	void *userdata;
};

struct sched_client;

/* Copies cfg and makes the channels; starts nothing. */
int sched_client_new(const struct sched_client_config *cfg, struct sched_client **ret, struct error *err);
/* Starts one thread per scheduler. Does nothing once sched_client_stop ran. */
int sched_client_start(struct sched_client *sc, struct error *err);
/* Wakes the threads and joins them: no thread and no call is left when it
 * returns (a call in flight ends within SCHED_CALL_TIMEOUT_MS). Any thread
 * but the client's own, any number of times. */
void sched_client_stop(struct sched_client *sc);
/* Stops first; accepts NULL. */
void sched_client_free(struct sched_client *sc);

/*
 * Verifies a routing token like token_verify, with any key a scheduler
 * handed out or with fixed (worker.ini's token_key; NULL for none). The key
 * whose id the token names is tried first, so that the error reported is
 * that key's (an expired token says so, not "signature does not verify").
 * sc may be NULL. -EAGAIN ("worker not yet registered with a scheduler")
 * when there is no key at all. Thread-safe.
 */
int sched_client_verify(struct sched_client *sc, const struct token_key *fixed, const void *token, size_t n,
			const struct token_expect *expect, int64_t now, struct token_claims *ret_claims,
			struct error *err);
/* How many distinct keys the schedulers handed out (for tests and logs). */
size_t sched_client_key_count(struct sched_client *sc);
