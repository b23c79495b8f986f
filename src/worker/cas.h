/*
 * The worker's stores, one namespace per tenant (DESIGN.md §1): a
 * content-addressed store of blobs keyed by their own SHA-256, and an action
 * cache of results keyed by action digest. Each tenant's namespace is a
 * local store (src/cache/store.c: checked header, zstd, atomic writes) in
 * <dir>/tenants/<tenant>/, with its own size budget and LRU eviction. No
 * call can name another tenant's namespace: the tenant always comes from a
 * verified routing token.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "error.h"

struct cas;
struct tier;

int cas_open(const char *dir, uint64_t max_bytes_per_tenant, struct cas **ret, struct error *err);
void cas_close(struct cas *c);
/* The shared tier behind the local stores (NULL: none; not owned): a local
 * miss reads through to it (and keeps what it finds), every write is
 * queued to it, and local hits refresh its objects' age (tier.h).
 * max_result caps a result that comes with a direct manifest. */
void cas_set_tier(struct cas *c, struct tier *tier, size_t max_result);

/* Entries read or written within the last `seconds` are never evicted,
 * even over budget: the inputs of audited compiles stay for `hpcc
 * reproduce` ([audit] retain). 0: plain LRU. */
void cas_set_retain(struct cas *c, int64_t seconds);

/* Hard caps per tenant ([limits] cas_quota, quota.h; NULL: none; not
 * owned). Over its cap, a write first evicts what the budget and [audit]
 * retain allow; what still does not fit is refused with -EDQUOT and
 * counted (cas_put_blob and cas_put_command report it; the other writes,
 * of results and manifests, are skipped: the answer goes out unstored). */
struct quota;
void cas_set_quota(struct cas *c, struct quota *q);
/* The tenant's bytes on disk as the cap counts them (0 until a cap applied). */
uint64_t cas_tenant_size(struct cas *c, const char *tenant);
/* The RESOURCE_EXHAUSTED message for n bytes the tenant's cap refused. */
void cas_quota_message(struct cas *c, const char *tenant, uint64_t n, struct error *err);

/* [A-Za-z0-9._-]{1,64}, not starting with '.'. */
bool cas_tenant_name_ok(const char *tenant);

/* On this worker's disk (the shared tier is not asked). */
bool cas_has_blob(struct cas *c, const char *tenant, const struct digest *d);
/* Stores bytes that the caller has already checked against d; re-checks. */
int cas_put_blob(struct cas *c, const char *tenant, const struct digest *d, const void *data, size_t n);
/* Reads a blob into ret (emptied first) and verifies that its bytes still hash to d (a blob that
 * does not is removed and reported as missing). */
int cas_get_blob(struct cas *c, const char *tenant, const struct digest *d, size_t max, struct buf *ret);

int cas_get_action(struct cas *c, const char *tenant, const struct digest *action, size_t max, struct buf *ret);
int cas_put_action(struct cas *c, const char *tenant, const struct digest *action, const void *data, size_t n);

/* The actions this worker ran (packed Action messages, by action digest),
 * kept on this disk only, for `hpcc reproduce`. */
int cas_put_command(struct cas *c, const char *tenant, const struct digest *action, const void *data, size_t n);
int cas_get_command(struct cas *c, const char *tenant, const struct digest *action, size_t max, struct buf *ret);

/* Direct manifests (DirectManifest messages) by direct key. */
int cas_get_direct(struct cas *c, const char *tenant, const struct digest *key, size_t max, struct buf *ret);
/* This disk only, never S3 (for a writer that must not wait for it). */
int cas_get_direct_local(struct cas *c, const char *tenant, const struct digest *key, size_t max, struct buf *ret);
/* Stores a manifest here and queues it for the shared tier. With action
 * (the manifest's newest candidate, just stored with result, an
 * ActionResult), S3 gets both in one object, so that another worker's
 * direct hit costs one S3 read, not two; a read through that finds such an
 * object keeps the result as well. action NULL: the manifest alone. */
int cas_put_direct(struct cas *c, const char *tenant, const struct digest *key, const void *data, size_t n,
		   const struct digest *action, const void *result, size_t result_len);

/* Evicts least recently used entries of every tenant over its budget. */
int cas_gc(struct cas *c);
