/*
 * Eviction of the shared S3 tier (see tier_gc.h). The whole listing is read
 * first, into compact records (the key is kept as kind and digest, about 56
 * bytes an object, and rebuilt with s3obj_key to delete it), so that the
 * decisions are made on a complete picture and a listing that fails half
 * way deletes nothing. A key is taken as ours only when it parses and
 * s3obj_key spells it back byte for byte; everything else is foreign and
 * only counted. Objects are then sorted by tenant name, mtime and key, and
 * each tenant's run is collected on its own: the age pass deletes the old
 * prefix of the run, the size pass goes on from the oldest survivor until
 * what is left fits. Deletes go one by one (s3_delete); one that fails is
 * counted and the run goes on, and the object still counts as present.
 */
#include "tier_gc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"
#include "s3.h"
#include "worker_config.h"

struct gc_object {
	struct digest key;
	int64_t mtime;
	uint64_t size;
	uint32_t tenant;    /* index into gc.tenants; its rank by name once sorted */
	uint8_t kind;       /* enum s3obj_kind */
	bool tried;         /* deleted, or would be in a dry run, or its delete failed */
};

struct gc {
	struct gc_object *objects;
	size_t n_objects, alloc_objects;
	struct tier_gc_tenant *tenants;   /* in order of first appearance */
	uint32_t *by_name;                /* indices into tenants, sorted by name */
	size_t n_tenants, alloc_tenants;
	uint32_t last;                    /* the tenant of the previous key (listings come sorted) */
	uint64_t listed, foreign;
	size_t max_objects;
};

static void gc_free(struct gc *g)
{
	free(g->objects);
	free(g->tenants);
	free(g->by_name);
	*g = (struct gc){ 0 };
}

static uint64_t add_saturated(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* The index of tenant name in g->tenants, added when new; -ENOMEM. */
static int tenant_index(struct gc *g, const char *name, uint32_t *ret)
{
	if (g->n_tenants && strcmp(g->tenants[g->last].tenant, name) == 0) {
		*ret = g->last;
		return 0;
	}
	size_t lo = 0, hi = g->n_tenants;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(g->tenants[g->by_name[mid]].tenant, name);
		if (cmp == 0) {
			*ret = g->last = g->by_name[mid];
			return 0;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (g->n_tenants >= UINT32_MAX)
		return -ENOMEM;
	if (g->n_tenants == g->alloc_tenants) {
		/* Each tenant has an object, so max_objects bounds them too. */
		size_t n = g->alloc_tenants ? 2 * g->alloc_tenants : 16;
		struct tier_gc_tenant *t = reallocarray(g->tenants, n, sizeof(*t));
		if (!t)
			return -ENOMEM;
		g->tenants = t;
		uint32_t *b = reallocarray(g->by_name, n, sizeof(*b));
		if (!b)
			return -ENOMEM;
		g->by_name = b;
		g->alloc_tenants = n;
	}
	uint32_t index = (uint32_t)g->n_tenants;
	g->tenants[index] = (struct tier_gc_tenant){ 0 };
	snprintf(g->tenants[index].tenant, sizeof(g->tenants[index].tenant), "%s", name);
	memmove(g->by_name + lo + 1, g->by_name + lo, (g->n_tenants - lo) * sizeof(*g->by_name));
	g->by_name[lo] = index;
	g->n_tenants++;
	*ret = g->last = index;
	return 0;
}

static int add_object(struct gc *g, const struct s3_object *o)
{
	enum s3obj_kind kind;
	char tenant[S3OBJ_TENANT_MAX + 1], again[S3OBJ_KEY_MAX];
	struct digest key;
	g->listed++;
	if (s3obj_parse_key(o->key, &kind, tenant, &key) < 0 || s3obj_key(kind, tenant, &key, again) < 0 ||
	    strcmp(again, o->key) != 0) {
		g->foreign++;
		return 0;
	}
	uint32_t t;
	if (tenant_index(g, tenant, &t) < 0)
		return -ENOMEM;
	if (g->n_objects == g->alloc_objects) {
		size_t n = g->alloc_objects ? 2 * g->alloc_objects : 1024;
		if (n > g->max_objects)
			n = g->max_objects;
		struct gc_object *p = reallocarray(g->objects, n, sizeof(*p));
		if (!p)
			return -ENOMEM;
		g->objects = p;
		g->alloc_objects = n;
	}
	g->objects[g->n_objects++] = (struct gc_object){ .key = key, .mtime = o->mtime, .size = o->size,
							 .tenant = t, .kind = (uint8_t)kind };
	g->tenants[t].objects++;
	g->tenants[t].bytes = add_saturated(g->tenants[t].bytes, o->size);
	return 0;
}

static bool stopped(const struct tier_gc_options *o) { return o->stop && __atomic_load_n(o->stop, __ATOMIC_RELAXED); }

/* Reads every page under v1/ into g. */
static int list_all(struct s3_client *c, const struct tier_gc_options *o, struct gc *g, struct error *err)
{
	_cleanup_free_ char *token = NULL;
	unsigned empty_pages = 0;
	for (;;) {
		if (stopped(o))
			return error_set(err, -ECANCELED, "S3 tier gc: stopped");
		struct s3_list_page page = { 0 };
		int r = s3_list(c, "v1/", token, &page, err);
		if (r < 0)
			return r;
		if (page.n_objects > g->max_objects - g->listed) {
			s3_list_page_free(&page);
			return error_set(err, -E2BIG, "S3 tier gc: more than %zu objects under v1/, refusing to collect "
					 "(nothing deleted)", g->max_objects);
		}
		for (size_t i = 0; i < page.n_objects; i++)
			if (add_object(g, &page.objects[i]) < 0) {
				s3_list_page_free(&page);
				return error_set(err, -ENOMEM, "S3 tier gc: out of memory");
			}
		empty_pages = page.n_objects == 0 ? empty_pages + 1 : 0;
		free(token);
		token = TAKE_PTR(page.next_token);
		s3_list_page_free(&page);
		if (!token)
			return 0;
		if (empty_pages >= TIER_GC_EMPTY_PAGES_MAX)
			return error_set(err, -EBADMSG, "S3 tier gc: the listing returned %u truncated pages without a "
					 "key in a row (nothing deleted)", empty_pages);
	}
}

/* By tenant rank, then oldest first, then by key (kind then digest sorts
 * like the key's text: "ac" < "cas" < "dm" and lower-case hex keeps the
 * byte order). */
static int object_compare(const void *a, const void *b)
{
	const struct gc_object *x = a, *y = b;
	if (x->tenant != y->tenant)
		return x->tenant < y->tenant ? -1 : 1;
	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return memcmp(x->key.b, y->key.b, DIGEST_LEN);
}

/* Deletes one object (not in a dry run); true when it is gone (or would be). */
static bool delete_object(struct s3_client *c, const struct tier_gc_options *o, struct gc_object *obj,
			  struct tier_gc_tenant *t, struct error *first_error)
{
	obj->tried = true;
	if (o->dry_run)
		return true;
	if (stopped(o))
		return false;
	char key[S3OBJ_KEY_MAX];
	struct error e = { 0 };
	int r = s3obj_key((enum s3obj_kind)obj->kind, t->tenant, &obj->key, key);
	if (r < 0)
		error_set(&e, r, "S3 tier gc: cannot rebuild a key of tenant %s", t->tenant);
	else
		r = s3_delete(c, key, &e);
	if (r < 0) {
		t->delete_errors++;
		if (!first_error->code)
			*first_error = e;
		return false;
	}
	return true;
}

/* One tenant's objects, sorted oldest first. */
static void collect_tenant(struct s3_client *c, const struct tier_gc_options *o, int64_t now, struct gc_object *objs,
			   size_t n, struct tier_gc_tenant *t, struct error *first_error)
{
	uint64_t max_size = 0, max_age = 0, remaining = t->bytes;
	if (o->budget)
		o->budget(o->user, t->tenant, &max_size, &max_age);
	/* An age past now (or past what int64_t holds) makes nothing old. */
	if (max_age > 0 && max_age < (uint64_t)INT64_MAX && (int64_t)max_age <= now) {
		int64_t cutoff = now - (int64_t)max_age;
		for (size_t i = 0; i < n && objs[i].mtime < cutoff; i++)
			if (delete_object(c, o, &objs[i], t, first_error)) {
				t->deleted_age++;
				t->bytes_deleted = add_saturated(t->bytes_deleted, objs[i].size);
				remaining -= objs[i].size < remaining ? objs[i].size : remaining;
			}
	}
	if (max_size > 0)
		for (size_t i = 0; i < n && remaining > max_size; i++) {
			if (objs[i].tried)
				continue;
			if (delete_object(c, o, &objs[i], t, first_error)) {
				t->deleted_size++;
				t->bytes_deleted = add_saturated(t->bytes_deleted, objs[i].size);
				remaining -= objs[i].size < remaining ? objs[i].size : remaining;
			}
		}
}

int tier_gc(struct s3_client *c, const struct tier_gc_options *o, struct tier_gc_report *ret, struct error *err)
{
	if (!c || !o || !ret)
		return error_set(err, -EINVAL, "S3 tier gc: invalid arguments");
	struct gc g = { .max_objects = o->max_objects ? o->max_objects : TIER_GC_MAX_OBJECTS_DEFAULT };
	int r = list_all(c, o, &g, err);
	if (r < 0) {
		gc_free(&g);
		return r;
	}
	/* The report's tenants in name order; objects renumbered to match. */
	struct tier_gc_report rep = { .n_tenants = g.n_tenants, .listed = g.listed, .foreign = g.foreign };
	uint32_t *rank = calloc(g.n_tenants ? g.n_tenants : 1, sizeof(*rank));
	rep.tenants = calloc(g.n_tenants ? g.n_tenants : 1, sizeof(*rep.tenants));
	if (!rank || !rep.tenants) {
		free(rank);
		free(rep.tenants);
		gc_free(&g);
		return error_set(err, -ENOMEM, "S3 tier gc: out of memory");
	}
	for (size_t i = 0; i < g.n_tenants; i++) {
		rank[g.by_name[i]] = (uint32_t)i;
		rep.tenants[i] = g.tenants[g.by_name[i]];
	}
	for (size_t i = 0; i < g.n_objects; i++)
		g.objects[i].tenant = rank[g.objects[i].tenant];
	free(rank);
	if (g.n_objects)
		qsort(g.objects, g.n_objects, sizeof(*g.objects), object_compare);

	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	for (size_t start = 0, end; start < g.n_objects; start = end) {
		uint32_t t = g.objects[start].tenant;
		for (end = start + 1; end < g.n_objects && g.objects[end].tenant == t; end++)
			;
		collect_tenant(c, o, now, g.objects + start, end - start, &rep.tenants[t], &rep.first_delete_error);
	}
	gc_free(&g);
	*ret = rep;
	return 0;
}

void tier_gc_report_free(struct tier_gc_report *r)
{
	if (!r)
		return;
	free(r->tenants);
	*r = (struct tier_gc_report){ 0 };
}

#define GC_USAGE                                                                                               \
	"usage: hpcc worker gc [--config FILE] [--dry-run]\n"                                                  \
	"Deletes from the shared S3 tier ([s3] in worker.ini) what exceeds each tenant's budget: first\n"     \
	"objects older than max_age, then the oldest until the tenant fits in max_size (tenant_budget\n"      \
	"lines override both). Keys that hpcc did not make are never touched. --dry-run deletes nothing\n"    \
	"and reports what would go. FILE defaults to $HPCC_WORKER_CONFIG, else worker.ini.\n"

static void config_budget(void *user, const char *tenant, uint64_t *ret_size, uint64_t *ret_age)
{
	worker_config_s3_budget(user, tenant, ret_size, ret_age);
}

static void print_report(const struct tier_gc_report *rep, bool dry_run)
{
	int width = (int)strlen("tenant");
	struct tier_gc_tenant total = { .tenant = "total" };
	for (size_t i = 0; i < rep->n_tenants; i++) {
		const struct tier_gc_tenant *t = &rep->tenants[i];
		int n = (int)strlen(t->tenant);
		width = n > width ? n : width;
		total.objects += t->objects;
		total.bytes = add_saturated(total.bytes, t->bytes);
		total.deleted_age += t->deleted_age;
		total.deleted_size += t->deleted_size;
		total.bytes_deleted = add_saturated(total.bytes_deleted, t->bytes_deleted);
	}
	printf("%-*s  %10s  %15s  %14s  %15s  %15s\n", width, "tenant", "objects", "bytes", "deleted-by-age",
	       "deleted-by-size", dry_run ? "bytes-to-free" : "bytes-freed");
	for (size_t i = 0; i <= rep->n_tenants; i++) {
		const struct tier_gc_tenant *t = i < rep->n_tenants ? &rep->tenants[i] : &total;
		printf("%-*s  %10" PRIu64 "  %15" PRIu64 "  %14" PRIu64 "  %15" PRIu64 "  %15" PRIu64 "\n", width,
		       t->tenant, t->objects, t->bytes, t->deleted_age, t->deleted_size, t->bytes_deleted);
	}
	if (rep->foreign)
		printf("%" PRIu64 " keys under v1/ not made by hpcc: left alone\n", rep->foreign);
	if (dry_run)
		printf("dry run: nothing was deleted\n");
}

int tier_gc_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* The same file `hpcc worker run` reads by default. */
	const char *config = getenv("HPCC_WORKER_CONFIG");
	bool dry_run = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'n': dry_run = true; break;
		case 'h': fputs(GC_USAGE, stdout); return 0;
		default: fputs(GC_USAGE, stderr); return 2;
		}
	}
	if (optind < argc) {
		fputs(GC_USAGE, stderr);
		return 2;
	}
	if (!config)
		config = "worker.ini";
	struct worker_config wc;
	struct error err = { 0 };
	if (worker_config_load(config, &wc, &err) < 0) {
		fprintf(stderr, "hpcc: worker gc: %s\n", err.msg);
		return 1;
	}
	struct s3_config sc;
	if (worker_config_s3(&wc, &sc) < 0) {
		fprintf(stderr, "hpcc: worker gc: %s has no [s3] section: there is no shared tier to collect\n", config);
		worker_config_free(&wc);
		return 1;
	}
	struct s3_client *client = NULL;
	if (s3_client_new(&sc, &client, &err) < 0) {
		fprintf(stderr, "hpcc: worker gc: %s\n", err.msg);
		worker_config_free(&wc);
		return 1;
	}
	struct tier_gc_options o = { .dry_run = dry_run, .budget = config_budget, .user = &wc };
	struct tier_gc_report rep = { 0 };
	int r = tier_gc(client, &o, &rep, &err);
	s3_client_free(client);
	worker_config_free(&wc);
	if (r < 0) {
		fprintf(stderr, "hpcc: worker gc: %s\n", err.msg);
		return 1;
	}
	print_report(&rep, dry_run);
	uint64_t failed = 0;
	for (size_t i = 0; i < rep.n_tenants; i++)
		failed += rep.tenants[i].delete_errors;
	if (failed)
		fprintf(stderr, "hpcc: worker gc: %" PRIu64 " deletes failed (they stay); the first: %s\n", failed,
			rep.first_delete_error.msg);
	tier_gc_report_free(&rep);
	return failed ? 1 : 0;
}
