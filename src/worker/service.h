/*
 * The worker (DESIGN.md §1, §3): the WorkerService gRPC handlers over TLS,
 * the routing-token check on every call, the per-tenant stores and the
 * runtime that executes. See docs/worker.md.
 */
#pragma once

#include "error.h"
#include "worker_config.h"

struct worker;

/* Takes cfg over (it is freed with the worker). */
int worker_new(struct worker_config *cfg, struct worker **ret, struct error *err);
int worker_port(const struct worker *w);
/* Serves until worker_stop; returns when every call has finished. */
int worker_run(struct worker *w);
void worker_stop(struct worker *w);
void worker_free(struct worker *w);
