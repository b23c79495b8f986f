/*
 * The microVM runtime's one entry point besides its ops table (runtime.h):
 * what `hpcc worker` must do while it still holds every privilege.
 */
#pragma once

#include "error.h"

struct worker_config;

/* Creates the worker's cgroup for its VMMs ([microvm] cgroup, see
 * docs/isolation.md) now, before the worker drops CAP_DAC_OVERRIDE (a
 * hierarchy's root directory is often mode 0555): the runtime's open takes
 * it over. Under auto, a host without usable cgroups is one warning and 0;
 * under required, an error. Nothing to do for other runtimes. */
int runtime_microvm_prepare(const struct worker_config *w, struct error *err);
