/*
 * worker.ini (see docs/worker.md): where the worker listens, its identity
 * and TLS files, the key that verifies routing tokens, the images it
 * serves, store budgets, limits, and its runtime. Relative file names are
 * relative to the directory of the configuration file.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "strv.h"

#define WORKER_SCHEDULERS_MAX 8        /* [scheduler] address: replicas registered with */
#define WORKER_HOSTPORT_MAX 255        /* an address or advertise value */
#define WORKER_TOKEN_FILE_MAX 4096     /* [scheduler] worker_token_file */
#define WORKER_VMM_OVERHEAD_MIB 512u  /* a VMM's memory on top of the guest's (TCG's code cache) */
#define WORKER_TOKEN_MIN 16            /* characters in a worker token (the scheduler's minimum too) */

struct worker_config {
	char *path;              /* the file that was read */
	char *id;
	char *listen;
	char *dir;               /* state: stores, staging */
	char *cert_file, *key_file;
	char *token_key_file;    /* Ed25519 public key (PEM) */
	struct strv images;      /* "sha256:<hex>" the worker serves */
	unsigned max_calls;
	uint64_t max_size;       /* per tenant */
	uint64_t max_blob;       /* one file, uncompressed */
	uint64_t max_message;    /* one gRPC message */
	unsigned exec_timeout;   /* seconds */
	char *runtime;           /* "unsafe-local" or "microvm" */
	bool allow_unsafe_local;
	char *search_path;
	int max_parallel;
	/* [images]: imported toolchain images (hpcc image import) */
	char *images_dir;        /* default <dir>/images */
	uint64_t image_max_size; /* uncompressed bytes of one image */
	uint64_t image_max_entries;
	/* [microvm]: the microVM runtime and its pool (docs/microvm.md) */
	char *vmm;               /* "qemu" (default) or "firecracker" */
	char *vmm_binary;        /* default /usr/bin/qemu-system-x86_64 or /usr/bin/firecracker */
	char *kernel, *initrd;   /* guest kernel (vmlinux) and initramfs (the agent) */
	char *accel;             /* "auto" (default), "kvm" or "tcg" */
	bool allow_tcg;          /* software emulation only when set */
	bool sandbox;            /* QEMU -sandbox on (default true) */
	char *vm_user;           /* the unprivileged user VMMs run as (default "nobody") */
	unsigned vm_uid_base;    /* > 0: VM n runs as uid vm_uid_base + n (n < 2 x max_vms), group of vm_user */
	unsigned vcpus, memory_mib;
	unsigned max_vms, max_vms_per_tenant;
	unsigned vm_idle_timeout; /* seconds before an idle VM is torn down */
	unsigned vm_max_age;      /* seconds: a VM is retired after this (session limit) */
	unsigned boot_timeout;    /* seconds to wait for the agent's hello */
	/* The VMM jail (docs/isolation.md): a cgroup per VM and our seccomp filter. */
	enum { WORKER_CGROUP_AUTO, WORKER_CGROUP_REQUIRED, WORKER_CGROUP_OFF } vm_cgroup; /* default auto */
	uint64_t vm_cgroup_memory; /* bytes; 0: memory + WORKER_VMM_OVERHEAD_MIB */
	unsigned vm_cgroup_pids;   /* pids.max: the VMM's threads and processes (default 256) */
	unsigned vm_cgroup_cpus;   /* CPU quota in cores; 0: vcpus */
	bool vm_seccomp;           /* NO_NEW_PRIVS + the VMM filter (default true) */
	/* [scheduler]: registration with route-only schedulers (docs/worker.md).
	 * Without an address the worker registers nowhere and token_key is
	 * required; with one, token_key is optional. */
	struct strv sched_addresses; /* "host:port" of each replica */
	struct strv sched_pins;      /* "sha256:<hex>", exactly one per address once loaded */
	char *sched_token_file;
	char *sched_worker_token;    /* the token file's one line (a secret: zeroed when freed) */
	char *advertise;             /* "host:port" clients dial (port 0: the bound port); set with an address */
	/* [worker] cache_mode: "local" (no shared tier) or "paranoid" (the
	 * default with an [s3] section, which it requires): workers are the
	 * only ones that read and write the shared tier. */
	char *cache_mode;
	/* [worker] user: the unprivileged user a worker started as root runs as
	 * (docs/isolation.md); NULL, "" or "root": stays root (a warning). */
	char *worker_user;
	/* [s3]: the shared tier (docs/s3.md). Credentials come from
	 * credentials_file or the environment, never from worker.ini. */
	bool s3;                     /* an [s3] section was given */
	char *s3_endpoint, *s3_region, *s3_bucket, *s3_prefix, *s3_credentials_file;
	bool s3_path_style, s3_path_style_set;
	unsigned s3_timeout_ms, s3_retries, s3_connections;
	uint64_t s3_max_size;        /* bytes per tenant; 0: no size budget */
	uint64_t s3_max_age;         /* seconds; 0: no age budget */
	uint64_t s3_gc_interval;     /* seconds between background collections; 0: none */
	struct strv s3_tenant_budgets; /* "tenant size age", one per tenant that differs */
	/* [audit]: the audit log (docs/audit.md) */
	uint64_t audit_segment_size; /* bytes before current.tsv is sealed (default 64 MiB, at least 4096) */
	int64_t audit_segment_age;   /* seconds before current.tsv is sealed (default 1 day) */
	int64_t audit_retain;        /* seconds the inputs of audited jobs are kept for hpcc reproduce (default 7 days) */
	bool audit_enabled;          /* default true; false only to measure the audit's cost (bench/) */
	/* [limits] quotas per tenant (docs/worker.md, src/worker/quota.h); 0: unlimited */
	uint64_t upload_quota;       /* bytes of blobs stored per upload_window, uncompressed (default 8 GiB) */
	uint64_t upload_window;      /* seconds (default 60) */
	unsigned max_execs_per_tenant; /* compiles at once per tenant (default 0: the worker's capacity) */
	uint64_t cas_quota;          /* hard cap on a tenant's store on disk, above max_size (default 0: none) */
	unsigned vm_wait;            /* seconds a compile waits for a VM when its tenant has max_vms_per_tenant busy (default 10) */
	struct strv tenant_limits;   /* "tenant key=value ...", one per tenant that differs */
	/* Not read from the file (0: the default, 500 ms): the first delay
	 * after a refused registration, doubled up to 30 s. Tests shorten it. */
	unsigned sched_retry_ms;
};

int worker_config_load(const char *path, struct worker_config *ret, struct error *err);
/* The S3 client settings of [s3] (pointers into c); -ENOENT without [s3]. */
struct s3_config;
int worker_config_s3(const struct worker_config *c, struct s3_config *ret);
/* A tenant's budgets: its tenant_budget line, else max_size and max_age. */
void worker_config_s3_budget(const struct worker_config *c, const char *tenant, uint64_t *ret_size,
			     uint64_t *ret_age);
/* "30d", "12h", "15m", "90s" or plain seconds; -EINVAL otherwise. */
int worker_config_parse_duration(const char *s, uint64_t *ret);
void worker_config_free(struct worker_config *c);
bool worker_config_serves(const struct worker_config *c, const char *image);
/* Splits "host:port" or "[v6]:port" (host without brackets into host,
 * which holds WORKER_HOSTPORT_MAX + 1 bytes); -EINVAL for anything else:
 * an empty host, a character outside [A-Za-z0-9.-] (or hex digits, ':' and
 * '.' inside brackets), a port that is not 0..65535. */
int worker_config_split_hostport(const char *s, char host[WORKER_HOSTPORT_MAX + 1], unsigned *ret_port);
/* True for a host that names no interface: "0.0.0.0", "::", "" and the like. */
bool worker_config_host_is_wildcard(const char *host);
