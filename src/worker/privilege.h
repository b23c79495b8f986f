/*
 * The worker's least privilege (docs/isolation.md): a worker started as
 * root keeps, from the moment its set-up is done, no capability in the
 * threads that talk to clients, and only those that starting, signalling
 * and reaping VMMs requires in the VM pool's thread; in the bounding sets
 * too, and for whatever it executes; it cannot gain any back
 * (NO_NEW_PRIVS, SECBIT_NOROOT locked).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* The capabilities the microVM runtime keeps: CAP_SETUID/CAP_SETGID (the
 * VMM child and the start-up access check become the VM user), CAP_KILL
 * (SIGKILL to VMMs of other uids), CAP_CHOWN (a run dir belongs to its VM's
 * uid). Not CAP_DAC_OVERRIDE: run dirs are group root (vm_pool.c), so the
 * worker reaches them and the VMM's sockets through its group. */
uint64_t privilege_microvm_caps(void);

/*
 * Reduces the calling thread, and so every thread it starts afterwards,
 * to the capabilities in keep (a mask of 1 << CAP_*): permitted, effective
 * and bounding sets, no inheritable or ambient ones, SECBIT_NOROOT (an
 * execve as uid 0 gains nothing) locked, then PR_SET_NO_NEW_PRIVS. Call it
 * before any thread exists: capabilities are per thread. Without root
 * (no CAP_SETPCAP) only NO_NEW_PRIVS is set. Returns 0 or a negative errno
 * with the step that failed in err.
 */
int privilege_drop(uint64_t keep, struct error *err);

struct worker_config;
/* [worker] user: 1 with its uid and gid when a worker running as root is to
 * become it, 0 when it stays as it is (not root, no user, "root"), or a
 * negative errno (unknown user, uid or gid 0). */
int privilege_worker_user(const struct worker_config *c, uid_t *ret_uid, gid_t *ret_gid, struct error *err);
/* Once per process, as root with one thread: gives the state dir to
 * [worker] user (all but vms/), becomes that user (no supplementary
 * groups), drops every capability but CAP_NET_BIND_SERVICE for a port below
 * 1024 (privilege_drop), then checks it can still read its state dir and
 * TLS, token and S3 credential files. Without a user: one warning, 0. */
int privilege_become_worker(const struct worker_config *c, struct error *err);
/* First opens the microVM runtime (runtime_microvm_prepare: its cgroup may
 * need CAP_DAC_OVERRIDE, and its VM pool thread reduces itself to
 * privilege_microvm_caps()), then drops the calling thread, and so every
 * thread it starts afterwards, to nothing but CAP_NET_BIND_SERVICE when the
 * worker listens on a port below 1024. Logs the result in one line. Called
 * by `hpcc worker` once worker.ini is read, before any other thread
 * starts. */
int privilege_drop_for_worker(const struct worker_config *c, struct error *err);
