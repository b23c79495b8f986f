/*
 * VMM drivers (DESIGN §6, src/vmm/): how the worker starts one microVM and reaches
 * its agent. Each driver is one ops table; the VM pool (vm_pool.c) picks
 * one by name from worker.ini and never looks inside. A driver builds the
 * VMM's command line (and its config file, if it takes one), and connects
 * to the guest channel once the VMM runs; vmm.c spawns and stops the
 * process the same way for every driver: as an unprivileged user, in its
 * own session, killed with SIGKILL if the worker dies (no orphan ever).
 * No driver ever configures a network device; tests assert it on every
 * command line and config a driver generates.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "strv.h"

#define VMM_AGENT_PORT_NAME "hpcc.0" /* QEMU virtio-serial port name */
#define VMM_AGENT_VSOCK_PORT 1024u   /* Firecracker: the agent listens here */

struct vmm_config {
	const char *binary;      /* qemu-system-x86_64 / firecracker (absolute path) */
	const char *kernel;      /* uncompressed ELF vmlinux with the PVH note */
	const char *initrd;      /* cpio holding only /init (hpcc-agent) */
	const char *rootfs;      /* the image's squashfs, attached read-only */
	const char *run_dir;     /* per-VM directory: sockets, config file, console log */
	const char *accel;       /* "kvm" or "tcg" (tcg: QEMU only) */
	unsigned vcpus;          /* 1..8 */
	unsigned memory_mib;     /* 128..65536 */
	const char *vm_id;       /* [A-Za-z0-9_-]{1,64}: names the VM in logs and audit rows */
	bool sandbox;            /* QEMU -sandbox on (seccomp); default true */
};

struct vmm_ops {
	const char *name; /* "qemu", "firecracker" */
	/* The VMM's command line; writes its config file into run_dir when
	 * the VMM takes one. Refuses a config that fails vmm_config_check. */
	int (*build)(const struct vmm_config *c, struct strv *ret_argv, struct error *err);
	/* Connects to the guest's agent channel of a VMM that runs; returns a
	 * connected, blocking stream fd in *ret_fd. -EAGAIN while the VMM has
	 * not created its socket yet (the caller retries until its deadline). */
	int (*connect)(const struct vmm_config *c, int timeout_ms, int *ret_fd, struct error *err);
};

extern const struct vmm_ops vmm_qemu;
extern const struct vmm_ops vmm_firecracker;
const struct vmm_ops *vmm_find(const char *name); /* NULL if unknown */

/* Checks every field (absolute paths, ranges, accel name, vm_id charset). */
int vmm_config_check(const struct vmm_config *c, const struct vmm_ops *ops, struct error *err);

/* The accelerator to use: "kvm" when /dev/kvm can run guests (opens read-
 * write and the CPU advertises vmx or svm), else "tcg" when allow_tcg, else
 * -ENODEV with a one-line reason. want = "auto", "kvm" or "tcg". */
int vmm_pick_accel(const char *want, bool allow_tcg, const char **ret, struct error *err);

struct vmm_process {
	pid_t pid;         /* > 0 until reaped */
};

/* Spawns argv as uid/gid (when the worker runs as root; as itself
 * otherwise), in a new session, with PR_SET_PDEATHSIG(SIGKILL) set after
 * the credential change, stdin on /dev/null, stdout+stderr appended to
 * <run_dir>/console.log, all other fds closed. Forks from the calling
 * thread: the caller keeps that thread alive as long as the VM runs (the
 * pool spawns from its own long-lived thread). Always under NO_NEW_PRIVS
 * and the VMM seccomp filter (without vsock); no cgroup. */
int vmm_spawn(const struct strv *argv, const char *run_dir, uid_t uid, gid_t gid, struct vmm_process *ret,
	      struct error *err);
/* What vmm_spawn_jailed puts around the VMM on top of the above
 * (vmm_jail.h, docs/isolation.md). */
struct vmm_cgroup;
struct vmm_jail {
	uid_t uid;                        /* as vmm_spawn's uid and gid */
	gid_t gid;
	const struct vmm_cgroup *cgroup;  /* the VM's cgroup (entered before the
					     credential change), or NULL */
	bool seccomp;                     /* NO_NEW_PRIVS + the VMM filter, right
					     before execve */
	bool allow_vsock;                 /* the filter lets AF_VSOCK sockets
					     through (Firecracker) */
};
int vmm_spawn_jailed(const struct strv *argv, const char *run_dir, const struct vmm_jail *jail,
		     struct vmm_process *ret, struct error *err);
/* SIGKILLs the process group and reaps it (bounded wait). Idempotent. */
void vmm_kill(struct vmm_process *p);
/* True if the process has exited (reaps it, without blocking). */
bool vmm_exited(struct vmm_process *p, int *ret_status);
/* SIGKILLs every process whose real uid is uid until none is left: what a
 * VMM forked and moved out of its process group (setsid) survives
 * vmm_kill. Only for a VM's own uid from a uid range, which belongs to
 * nothing else (two workers on one host must not share a range). False if
 * some remain after about 2 s. Needs CAP_KILL for other uids. */
bool vmm_kill_uid(uid_t uid);
/* Removes a VM's run directory and the files in it (flat: a VMM makes
 * only sockets, its config and the console log; nothing is followed). */
void vmm_remove_run_dir(const char *dir);
/* True if the process has exited, without reaping or signalling anything
 * (no privilege needed: threads without CAP_KILL use it); *ret_status, as
 * waitpid would give it, when it returns true. */
bool vmm_peek_exited(const struct vmm_process *p, int *ret_status);
