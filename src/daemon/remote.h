/*
 * The daemon's remote mode (DESIGN.md §1, §3): the client of one worker,
 * configured by [remote] (worker address, certificate pin, tenant, image,
 * token file, mode). A miss that a worker can compile costs a dependency
 * scan, then one Probe (a hit: one round trip); on a probe miss,
 * FindMissing, an Upload of the missing blobs only, and Execute. Whatever
 * the worker answers is stored in the local cache too. Any remote failure
 * (unreachable, timeout, refusal, a bad reply) compiles locally instead and
 * is counted; a failed remote compile is compiled again locally, so that
 * the diagnostics are the local compiler's.
 */
#pragma once

#include "config.h"
#include "error.h"
#include "server.h"

struct remote_client;

/* 0 and *ret = NULL when no [remote] worker is configured. */
int remote_client_new(const struct config *cfg, struct remote_client **ret, struct error *err);
const struct daemon_remote *remote_client_hooks(struct remote_client *rc);
void remote_client_free(struct remote_client *rc);
