/*
 * Per-tenant quotas and limits of a worker ([limits] in worker.ini, see
 * docs/worker.md): bytes uploaded per time window, compiles running at
 * once, and the hard cap on a tenant's CAS bytes (enforced by cas.c, which
 * asks quota_cas_cap). VMs per tenant are the pool's own cap
 * ([microvm] max_vms_per_tenant); the pool refuses after a bounded wait and
 * reports the refusal here with quota_refused. A call over a limit ends
 * with RESOURCE_EXHAUSTED and a message that names the limit, the tenant,
 * the figure and when to retry; the client then compiles locally. Every
 * refusal is counted per limit and logged, at most a few lines per limit
 * every ten seconds (a flood of refusals cannot fill the log). All calls
 * are thread-safe: the service handles calls on several threads.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define QUOTA_MAX_TENANTS 4096
#define QUOTA_TENANT_MAX 64       /* a tenant name (cas_tenant_name_ok) */
#define QUOTA_LINE_MAX 1024       /* one [limits] tenant line */

enum quota_kind { QUOTA_UPLOAD, QUOTA_EXECS, QUOTA_VMS, QUOTA_CAS, QUOTA_N };

/* One tenant's limits; 0 means unlimited for every field but the window. */
struct quota_limits {
	uint64_t upload_bytes;     /* bytes of blobs stored per window, counted uncompressed */
	uint64_t upload_window_s;  /* the window, >= 1 */
	unsigned execs;            /* compiles (Execute, Reproduce) running at once */
	uint64_t cas_bytes;        /* the tenant's store on disk, a hard cap above the eviction budget */
};

struct quota_stats {
	uint64_t refused[QUOTA_N];
	uint64_t uploaded;         /* bytes charged to windows */
};

struct quota;

int quota_new(const struct quota_limits *defaults, struct quota **ret);
void quota_free(struct quota *q);  /* accepts NULL */
/* Limits of one tenant instead of the defaults (the last call wins). */
int quota_set_tenant(struct quota *q, const char *tenant, const struct quota_limits *l);
void quota_get_limits(struct quota *q, const char *tenant, struct quota_limits *ret);
/* A [limits] tenant line, "alpha upload_quota=64M upload_window=60s
 * max_execs_per_tenant=2 cas_quota=1G": the tenant name, then any of those
 * keys, each at most once; the keys it names replace the fields of *inout.
 * -EINVAL with a one-line reason naming the key in why. */
int quota_parse_tenant_line(const char *line, char tenant[QUOTA_TENANT_MAX + 1], struct quota_limits *inout, char *why,
			    size_t why_size);

/* Charges n uncompressed bytes to the tenant's current window (a fixed
 * window that starts with the first charge after the previous one ended).
 * 0, or -EDQUOT with err set when they do not fit (nothing is charged). */
int quota_upload_charge(struct quota *q, const char *tenant, uint64_t n, int64_t now_ms, struct error *err);
/* Gives back bytes charged at charged_ms that were not stored after all
 * (the blob was already there, or broken); nothing once that window ended. */
void quota_upload_refund(struct quota *q, const char *tenant, uint64_t n, int64_t charged_ms);

/* Takes one of the tenant's compile slots: 0, or -EDQUOT with err set.
 * Every successful acquire must be paired with one release. */
int quota_exec_acquire(struct quota *q, const char *tenant, struct error *err);
void quota_exec_release(struct quota *q, const char *tenant);
unsigned quota_exec_running(struct quota *q, const char *tenant);

/* The tenant's hard cap on CAS bytes (0: none). */
uint64_t quota_cas_cap(struct quota *q, const char *tenant);

/* Counts a refusal of kind and logs err's message (rate-limited). The
 * charge and acquire functions above call it themselves; cas.c and the
 * VM pool's caller call it for theirs. */
void quota_refused(struct quota *q, enum quota_kind kind, const struct error *err);

void quota_get_stats(struct quota *q, struct quota_stats *ret);
const char *quota_kind_name(enum quota_kind kind);
/* "64 MiB", "1.5 GiB", "812 bytes": a size as a refusal message shows it. */
void quota_format_size(uint64_t n, char *out, size_t size);
