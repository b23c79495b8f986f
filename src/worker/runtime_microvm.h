/*
 * The microVM runtime's one entry point besides its ops table (runtime.h):
 * what `hpcc worker` must do while it still holds every privilege.
 */
#pragma once

#include "error.h"

struct worker_config;

/* Opens the microVM runtime now, while `hpcc worker` still holds every
 * privilege and before any other thread exists: it creates the cgroup for
 * the VMMs (a hierarchy's root directory is often mode 0555, so that takes
 * CAP_DAC_OVERRIDE), checks file access as the VM user, and starts the VM
 * pool's manager thread, which keeps the capabilities that VMMs need for
 * itself alone; the worker's other threads then drop everything. The
 * runtime's open (runtime.h) takes the prepared state over. Nothing to do
 * for other runtimes. */
int runtime_microvm_prepare(const struct worker_config *w, struct error *err);
