/*
 * The scheduler service (SchedulerService in scheduler.proto): GetTenantIdP
 * (unauthenticated: which IdP a tenant signs in at), Route (an access token
 * of the tenant's IdP in, a worker and an Ed25519 routing token for that
 * tenant, image and worker out), RegisterWorker and Heartbeat (workers,
 * authenticated by the shared worker token). See docs/scheduler.md.
 */
#pragma once

#include "error.h"
#include "scheduler_config.h"

#define SCHEDULER_MAX_MESSAGE (64 * 1024)
#define SCHEDULER_WORKER_TOKEN_MIN 16

struct scheduler;

/* Takes *cfg (cleared, also on failure). Loads keys and TLS files, listens. */
int scheduler_new(struct scheduler_config *cfg, struct scheduler **ret, struct error *err);
int scheduler_port(const struct scheduler *s);
int scheduler_run(struct scheduler *s);   /* serves until scheduler_stop */
void scheduler_stop(struct scheduler *s); /* any thread */
void scheduler_free(struct scheduler *s);
/* Reads a worker token file: 0600 or stricter, at most SCHEDULER_WORKER_TOKEN_MAX bytes, one line of
 * at least SCHEDULER_WORKER_TOKEN_MIN printable bytes (a trailing newline is dropped). */
int scheduler_read_worker_token(const char *path, char **ret, struct error *err);
