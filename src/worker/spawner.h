/*
 * The VMM spawner (docs/isolation.md): the worker split by privilege into
 * two processes, as in OpenSSH's privilege separation. A worker started as
 * root with the microVM runtime and a [worker] user forks this small
 * process first; it stays root with CAP_SETUID, CAP_SETGID, CAP_KILL and
 * CAP_CHOWN only, and the rest of the worker (gRPC, stores, the VM pool's
 * logic) then runs as the worker user with no capability at all.
 *
 * The two talk over a SOCK_SEQPACKET socketpair, one request and one reply
 * at a time, in fixed-size messages (SPAWNER_MSG_MAX). The spawner trusts
 * nothing in a request beyond its checks: a VM is named by an id of the form
 * "vm-<digits>", from which it derives the run directory below its own
 * run base; the uid must be the VM user's or in the VM uid range, never 0;
 * argv[0] must be the VMM binary of worker.ini; limits, seccomp and the
 * cgroup come from its copy of the configuration, fixed at fork. It reaps
 * its own children and reports how they ended. It dies with the worker
 * (PR_SET_PDEATHSIG) and exits, after killing its VMMs, when the socket
 * closes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "strv.h"
#include "vmm_jail.h"

#define SPAWNER_MSG_MAX 16384  /* one request, argv included */
#define SPAWNER_ARGS_MAX 128   /* argv entries */
#define SPAWNER_ID_MAX 32      /* "vm-" and digits, NUL included */

/* What the spawner is allowed to do, copied at fork. */
struct spawner_config {
	const char *binary;       /* the only VMM it starts (argv[0]) */
	const char *run_base;     /* run dirs are <run_base>/<vm id> */
	uid_t vm_uid;             /* the VM user's uid, or the first of the range */
	unsigned n_uids;          /* 1, or the range's size (2 x max_vms) */
	gid_t vm_gid;             /* every VMM's group */
	gid_t worker_gid;         /* run dirs' group: the worker's */
	unsigned max_vms;         /* VMs it keeps track of at once */
	struct vmm_cgroups *cgroups; /* NULL: none; the spawner closes it at exit */
	struct vmm_cgroup_limits limits;
	bool cgroup_required;
	bool seccomp;
	bool allow_vsock;
};

struct spawner;

/* Forks the spawner (call it while the process has one thread, as root).
 * The caller keeps the client end; cfg->cgroups then belongs to the
 * spawner (the caller must not close it). */
int spawner_start(const struct spawner_config *cfg, struct spawner **ret, struct error *err);
/* Closes the socket and waits for the spawner (it kills its VMMs first);
 * accepts NULL. */
void spawner_stop(struct spawner *s);
pid_t spawner_pid(const struct spawner *s);

/* Creates the VM's run dir (mode 2770, the VM's uid, the worker's group)
 * and its cgroup. *ret_cgroup_msg (when not NULL, 256 bytes) gets the
 * reason a VM runs without its cgroup ("" otherwise). */
int spawner_create(struct spawner *s, const char *vm_id, uid_t uid, char cgroup_msg[256], struct error *err);
/* Starts the VM's VMM with argv (argv[0] the configured binary); its pid
 * in *ret_pid. */
int spawner_spawn(struct spawner *s, const char *vm_id, const struct strv *argv, pid_t *ret_pid,
		  struct error *err);
/* Whether the VM's VMM has ended (the spawner reaped it), and how (a wait
 * status). An unknown VM counts as ended. */
bool spawner_exited(struct spawner *s, const char *vm_id, int *ret_status);
/* Kills the VM's VMM and what it forked (its cgroup, its own uid), reaps it,
 * removes its cgroup and run dir. False if something survived SIGKILL
 * (the caller then gives its uid to no other VM). */
bool spawner_destroy(struct spawner *s, const char *vm_id);

/* For tests: sends raw bytes as one request and reads the reply's error
 * code (0 or a negative errno) and message. */
int spawner_raw(struct spawner *s, const void *msg, size_t len, struct error *err);
