/*
 * The daemon's side of the scheduler (DESIGN.md §1): before compiles go
 * remote, ask Route with the user's access token (from `hpcc login`,
 * refreshed here when it is about to expire) and dial the worker it names,
 * pinning the certificate fingerprint it gives. The answer is cached until
 * shortly before its routing token expires, or until a call to that worker
 * fails. Channels to workers are kept (a few) and shared by compiles.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "rpc.h"
#include "token.h"

#define ROUTE_REFRESH_MARGIN_S 30  /* ask again this long (at most a quarter of its life) before the routing token expires */
#define ROUTE_DOWN_SECONDS 5       /* after an unreachable scheduler, fall back this long without asking */
#define ROUTE_MAX_CHANNELS 8

struct route_client;

/* One compile's view of the route: hold it with route_get, give it back with route_put. */
struct route_lease {
	struct rpc_channel *ch;
	struct buf token;  /* the routing token's bytes (buf_init'd by route_get) */
	char worker_id[TOKEN_NAME_MAX + 1];
	char cache_mode[16];
	void *slot;        /* internal */
};

int route_client_new(const struct config *cfg, const char *tenant, const char *image, struct route_client **ret,
		     struct error *err);
void route_client_free(struct route_client *rc);
/*
 * A worker to send one compile to. Errors, with err's one line for the
 * log: -ENOENT not logged in, the session expired or the access token
 * refused (run hpcc login), -EACCES the scheduler refused otherwise
 * (tenant, image), -EAGAIN the scheduler is unreachable, has no worker,
 * or another compile's Route call is taking long, -ENOMEM. After a
 * failure the same error comes back for ROUTE_DOWN_SECONDS without asking.
 * The Route call itself runs without the client's lock: route_put and
 * route_status never wait for the network.
 */
int route_get(struct route_client *rc, struct route_lease *ret, struct error *err);
void route_put(struct route_client *rc, struct route_lease *lease);
/* A one-off lease on that worker, asked of the scheduler by name (hpcc
 * reproduce must reach the worker that retained the action): the current
 * route is left as it is. Errors as route_get's. */
int route_get_worker(struct route_client *rc, const char *worker_id, struct route_lease *ret, struct error *err);
/* A call to this worker failed (unreachable, token refused): the next compile asks Route again. */
void route_forget(struct route_client *rc, const char *worker_id);
/* Lines for `hpcc daemon status`. */
void route_status(struct route_client *rc, char *out, size_t n);
