/*
 * Eviction of the shared S3 tier (`hpcc worker gc`, docs/s3.md "Eviction"):
 * lists every object under "v1/", groups the keys that s3obj_parse_key
 * accepts by tenant, and deletes per tenant first what is older than the
 * tenant's age budget, then, oldest first, what makes its bytes exceed the
 * size budget. Keys that hpcc did not make are counted and never deleted.
 * Nothing is deleted before the whole listing has been read, so a listing
 * that fails or is too large (max_objects) deletes nothing at all.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "s3obj.h"

#define TIER_GC_MAX_OBJECTS_DEFAULT 4000000
/* Truncated pages in a row without one key: a listing that makes no
 * progress is refused rather than followed for ever. */
#define TIER_GC_EMPTY_PAGES_MAX 100

struct s3_client;

struct tier_gc_options {
	int64_t now;          /* seconds since the epoch; 0 = time(NULL) */
	bool dry_run;         /* report what would go, delete nothing */
	size_t max_objects;   /* refuse (-E2BIG, nothing deleted) past this many objects listed; 0 = 4000000 */
	/* A tenant's budgets: bytes (0 = none) and seconds (0 = none). NULL:
	 * no budgets, nothing is deleted. */
	void (*budget)(void *user, const char *tenant, uint64_t *ret_size, uint64_t *ret_age);
	void *user;
	/* When it becomes true (another thread: the worker stopping), the
	 * listing ends with -ECANCELED and no further object is deleted. */
	const bool *stop;
};

struct tier_gc_tenant {
	char tenant[S3OBJ_TENANT_MAX + 1];
	uint64_t objects, bytes;                  /* as listed, before any deletion */
	uint64_t deleted_age, deleted_size, bytes_deleted;  /* objects, objects, bytes (would go, in a dry run) */
	uint64_t delete_errors;
};

struct tier_gc_report {
	struct tier_gc_tenant *tenants;   /* sorted by name */
	size_t n_tenants;
	uint64_t listed, foreign;         /* every key under v1/; those not made by hpcc */
	/* The first failed delete, for the operator (code 0 when none failed). */
	struct error first_delete_error;
};

/* 0 with *ret filled (failed deletes are counted in it, not returned), or
 * a negative errno with err set: the listing's error, -E2BIG past
 * max_objects, -EBADMSG for a listing that makes no progress, -ENOMEM. */
int tier_gc(struct s3_client *c, const struct tier_gc_options *o, struct tier_gc_report *ret, struct error *err);
void tier_gc_report_free(struct tier_gc_report *r);

/* `hpcc worker gc [--config FILE] [--dry-run]`: an exit status. */
int tier_gc_main(int argc, char **argv);
