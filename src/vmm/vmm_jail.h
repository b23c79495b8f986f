/*
 * The jail around each VMM process (DESIGN §6, docs/isolation.md): on top
 * of the unprivileged uid, the own session and the closed fds of
 * vmm_spawn, a VMM runs in its own cgroup (memory, pids and CPU limits)
 * and under a seccomp filter with NO_NEW_PRIVS. cgroup.c manages the
 * cgroups (v2 where the unified hierarchy offers the controllers, the v1
 * controllers otherwise); seccomp.c builds the filter.
 */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Instructions in the filter; vmm_seccomp_build fails beyond it. */
#define VMM_SECCOMP_MAX 256

/* Builds the VMM filter into buf (cap instructions): kill on a foreign
 * architecture or x32, on the deny-list, on socket() of any family but
 * AF_UNIX (and AF_VSOCK when allow_vsock), on clone() with namespace flags
 * and on personality changes; clone3() gets ENOSYS. -ENOBUFS if cap is
 * too small. */
int vmm_seccomp_build(bool allow_vsock, struct sock_filter *buf, size_t cap, size_t *ret_len);

/* The controllers a VMM's cgroup has: up to three v1 hierarchies (memory,
 * pids, cpu) or one v2 directory. */
#define VMM_CGROUP_DIRS 3

struct vmm_cgroup_limits {
	uint64_t memory_bytes; /* memory.max / memory.limit_in_bytes */
	unsigned pids_max;     /* pids.max: processes and threads */
	unsigned cpu_percent;  /* CPU quota: 100 = one core */
};

/* The worker's own cgroup below which every VM gets one: "hpcc-<pid>". */
struct vmm_cgroups;

/*
 * Finds the cgroup hierarchies under fs_root ("/sys/fs/cgroup"; tests pass
 * another directory) and creates the worker's group, named name, below the
 * worker's own cgroup in each: cgroup v2 when the unified hierarchy offers
 * memory and pids (cpu when present) and lets us enable them for our
 * subtree, else the v1 memory, pids and cpu hierarchies. Groups "hpcc-<pid>"
 * of workers that no longer run are removed on the way. -ENODEV (with the
 * reason) when neither is usable, -EACCES without the right to create
 * cgroups.
 */
int vmm_cgroups_open(const char *fs_root, const char *name, struct vmm_cgroups **ret, struct error *err);
/* "v2" or "v1". */
const char *vmm_cgroups_version(const struct vmm_cgroups *g);
/* Removes the worker's group (its VM groups must be gone); accepts NULL. */
void vmm_cgroups_close(struct vmm_cgroups *g);

/* One VM's cgroup: its directories and, until the VMM is in it, an fd on
 * each cgroup.procs (the spawned child writes "0" there: itself). */
struct vmm_cgroup {
	unsigned n;
	char *dirs[VMM_CGROUP_DIRS];
	int procs_fd[VMM_CGROUP_DIRS];
};

/* Creates <worker group>/<vm_id> with the limits and opens its
 * cgroup.procs files. On failure nothing is left behind. */
int vmm_cgroup_create(struct vmm_cgroups *g, const char *vm_id, const struct vmm_cgroup_limits *limits,
		      struct vmm_cgroup *ret, struct error *err);
/* Closes the cgroup.procs fds (once the VMM runs in the group). */
void vmm_cgroup_close_fds(struct vmm_cgroup *c);
/* SIGKILLs every task in the VM's groups (what the VMM forked and moved
 * out of its process group stays in its cgroup) until they are empty:
 * 0, or -EBUSY if tasks remain after a short while. */
int vmm_cgroup_kill_all(const struct vmm_cgroup *c);
/* Removes the VM's directories, once its VMM has been reaped (retries for
 * a short while: the kernel frees a group a moment after its last task);
 * frees c's strings. Idempotent. */
void vmm_cgroup_remove(struct vmm_cgroup *c);
/* Reads a file of the VM's cgroup (say "pids.current"), for tests and the
 * log: the first directory that has it. */
int vmm_cgroup_read(const struct vmm_cgroup *c, const char *file, char *buf, size_t size);
