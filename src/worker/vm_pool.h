/*
 * The worker's microVM pool (DESIGN §6): VMs keyed by (tenant, image),
 * reused warm across that tenant's compiles, several execs at once up to a
 * VM's vCPUs, never shared between tenants. Caps: VMs in total and VMs per
 * tenant. A VM idle for idle_timeout, or older than max_age when idle, is
 * torn down; when the total cap is reached, an idle VM of another pair
 * makes room. A VM whose VMM dies, whose agent breaks the protocol or stops
 * answering is torn down, and the exec that saw it is retried once on a
 * fresh VM; a second failure is reported (the client then compiles
 * locally). Every VMM is spawned from the pool's own thread (its parent-
 * death signal is tied to that thread) and killed when the pool is freed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "agent_conn.h"
#include "error.h"
#include "vmm.h"
#include "vmm_jail.h"

#define VM_NAME_MAX 96

struct vm_pool_config {
	const struct vmm_ops *vmm;
	const char *binary, *kernel, *initrd;
	const char *accel;          /* already picked: "kvm" or "tcg" */
	bool sandbox;
	uid_t uid;                  /* the VMM's user (used when the worker runs as root) */
	gid_t gid;
	/* When > 0: each VM runs as its own uid, uid_base + a slot number
	 * below 2 x max_vms, with gid above, so that VMMs cannot signal,
	 * trace or reach each other's (0700) run directories. */
	uid_t uid_base;
	unsigned vcpus, memory_mib;
	unsigned max_vms, max_vms_per_tenant;
	unsigned idle_timeout_s, max_age_s, boot_timeout_s;
	/* How long an exec waits when its tenant has max_vms_per_tenant VMs,
	 * all busy ([limits] vm_wait); then -EDQUOT. 0: the exec's timeout. */
	unsigned tenant_wait_ms;
	/* The jail (docs/isolation.md): with cgroups, each VMM runs in a group
	 * of its own below them with these limits; a group that cannot be made
	 * fails the VM when cgroup_required, else the VM runs without (and the
	 * first such failure is logged). seccomp: our filter on every VMM. */
	struct vmm_cgroups *cgroups;
	struct vmm_cgroup_limits limits;
	bool cgroup_required;
	bool seccomp;
	/* When set, the pool's manager thread, which spawns, signals and reaps
	 * every VMM, reduces itself to manager_caps (privilege_drop) and the
	 * worker's other threads keep none (privilege.h). */
	bool manager_caps_set;
	uint64_t manager_caps;
	/* When set, the worker runs split (spawner.h): run dirs, cgroups,
	 * spawning, killing and reaping VMMs are the spawner process's, and
	 * cgroups and manager_caps are unused. */
	struct spawner *spawner;
	const char *run_base;       /* per-VM run directories go here */
	const char *images_dir;     /* <hex>.sqsh files (hpcc image import) */
};

struct vm_pool_stats {
	unsigned vms, ready, booting, busy_slots;
	unsigned long boots, boot_failures, broken, retries, retired_idle;
	unsigned long cgroup_failures; /* VMs that ran without their cgroup (cgroup = auto) */
};

struct vm_pool;

int vm_pool_new(const struct vm_pool_config *cfg, struct vm_pool **ret, struct error *err);

/* Runs one exec in a VM of (tenant, image), starting one if needed and
 * waiting (until the exec's own timeout) for a free slot. 0 when the agent
 * answered (see agent_conn_exec); vm_name then names the VM that ran it:
 * "<vm id>@<vmm>-<accel>". -ENOENT: the image is not imported. */
int vm_pool_exec(struct vm_pool *p, const char *tenant, const char *image, const struct agent_exec_request *rq,
		 struct agent_exec_reply *ret, char vm_name[VM_NAME_MAX], struct error *err);

void vm_pool_get_stats(struct vm_pool *p, struct vm_pool_stats *ret);

/* Calls fn once per VM that is booting or ready (not one being torn down),
 * with its tenant and image, for the scheduler's heartbeat. fn runs under
 * the pool's lock: it must only copy, never call into the pool. */
void vm_pool_list_active(struct vm_pool *p, void (*fn)(const char *tenant, const char *image, void *userdata),
			 void *userdata);

/* Fails every running and waiting exec at once and refuses new ones (the
 * worker is stopping and its grace period is over). */
void vm_pool_interrupt(struct vm_pool *p);

/* Kills every VM and waits for them; accepts NULL. */
void vm_pool_free(struct vm_pool *p);
