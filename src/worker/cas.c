/*
 * Per-tenant stores (see cas.h). Tenants are opened lazily and kept for the
 * worker's life; a size counter per tenant triggers eviction after writes.
 */
#include "cas.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs.h"
#include "log.h"
#include "quota.h"
#include "store.h"
#include "tier.h"
#include "worker.pb-c.h"

#define CAS_MAX_TENANTS 4096

struct tenant_store {
	char *name;
	struct store store;
	int64_t written;          /* bytes written since the last eviction check */
	/* Bytes on disk, known once a [limits] cas_quota applies (a scan
	 * finds it, then writes add their size and evictions set it). Writes
	 * in flight count in reserved, with their uncompressed size, until
	 * they land. */
	int64_t size;
	bool size_known;
	uint64_t reserved;       /* bytes of writes under way, reserved under the cap: not in size */
	int64_t cap_scan_s;       /* when a write over the cap last scanned to evict */
	struct tenant_store *next;
};

struct cas {
	char *dir;
	uint64_t max_bytes;
	pthread_mutex_t lock;
	struct tenant_store *tenants;
	size_t n_tenants;
	struct tier *tier;
	size_t max_result;        /* the largest result a bundle read from the tier may carry */
	int64_t retain_s;         /* entries used this recently are never evicted */
	struct quota *quota;      /* NULL: no hard caps (not owned) */
};

void cas_set_quota(struct cas *c, struct quota *q) { c->quota = q; }

void cas_set_retain(struct cas *c, int64_t seconds) { c->retain_s = seconds > 0 ? seconds : 0; }

/* Evicts down to target, sparing what was used within the retention. */
static int cleanup(struct cas *c, struct tenant_store *t, uint64_t target, uint64_t *left, uint64_t *files,
		   uint64_t *evicted)
{
	time_t keep_after = c->retain_s > 0 ? time(NULL) - (time_t)c->retain_s : 0;
	return store_cleanup_keep(&t->store, target, keep_after, left, files, evicted);
}

void cas_set_tier(struct cas *c, struct tier *tier, size_t max_result)
{
	c->tier = tier;
	c->max_result = max_result;
}

static enum s3obj_kind tier_kind(enum store_kind kind)
{
	return kind == STORE_ACTION ? S3OBJ_AC : kind == STORE_MANIFEST ? S3OBJ_DM : S3OBJ_CAS;
}

bool cas_tenant_name_ok(const char *t) { return s3obj_tenant_ok(t); }

int cas_open(const char *dir, uint64_t max_bytes, struct cas **ret, struct error *err)
{
	struct cas *c = calloc(1, sizeof(*c));
	if (!c || !(c->dir = path_join(dir, "tenants"))) {
		free(c);
		return error_set(err, -ENOMEM, "out of memory");
	}
	int r = fs_mkdir_p(c->dir, 0700);
	if (r < 0) {
		error_set(err, r, "%s: %s", c->dir, strerror(-r));
		free(c->dir);
		free(c);
		return r;
	}
	c->max_bytes = max_bytes;
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

void cas_close(struct cas *c)
{
	if (!c)
		return;
	while (c->tenants) {
		struct tenant_store *t = c->tenants;
		c->tenants = t->next;
		store_free(&t->store);
		free(t->name);
		free(t);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->dir);
	free(c);
}

static struct tenant_store *tenant_get(struct cas *c, const char *tenant)
{
	if (!cas_tenant_name_ok(tenant))
		return NULL;
	pthread_mutex_lock(&c->lock);
	struct tenant_store *t = c->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	if (!t && c->n_tenants < CAS_MAX_TENANTS && (t = calloc(1, sizeof(*t)))) {
		_cleanup_free_ char *tdir = path_join(c->dir, tenant);
		/* Results are already compressed blobs: level 1 costs little. */
		if (!tdir || !(t->name = strdup(tenant)) || fs_mkdir_p(tdir, 0700) < 0 ||
		    store_init(&t->store, tdir, c->max_bytes, 1) < 0) {
			free(t->name);
			free(t);
			t = NULL;
		} else {
			t->next = c->tenants;
			c->tenants = t;
			c->n_tenants++;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return t;
}

static void set_size(struct cas *c, struct tenant_store *t, uint64_t size)
{
	pthread_mutex_lock(&c->lock);
	t->size = (int64_t)size;
	t->size_known = true;
	pthread_mutex_unlock(&c->lock);
}

static void account(struct cas *c, struct tenant_store *t, size_t n)
{
	pthread_mutex_lock(&c->lock);
	t->written += (int64_t)n;
	bool check = c->max_bytes > 0 && t->written > (int64_t)(c->max_bytes / 20);
	if (check)
		t->written = 0;
	pthread_mutex_unlock(&c->lock);
	if (check) {
		/* Every twentieth of the budget written: one scan, evicting to
		 * 90 % when over. */
		uint64_t left, files, evicted;
		if (cleanup(c, t, c->max_bytes / 10 * 9, &left, &files, &evicted) == 0) {
			set_size(c, t, left);
			if (evicted)
				log_info("tenant %s: evicted %llu entries, %llu bytes left", t->name,
					 (unsigned long long)evicted, (unsigned long long)left);
		}
	}
}

void cas_quota_message(struct cas *c, const char *tenant, uint64_t n, struct error *err)
{
	char cap[32], size[32], held[32];
	quota_format_size(c->quota ? quota_cas_cap(c->quota, tenant) : 0, cap, sizeof(cap));
	quota_format_size(n, size, sizeof(size));
	quota_format_size(cas_tenant_size(c, tenant), held, sizeof(held));
	error_set(err, -EDQUOT, "tenant %s: CAS quota %s reached (%s stored, in use within [audit] retain; "
		  "%s more do not fit); retry in %lld s or later, once older entries can be evicted", tenant, cap, held,
		  size, (long long)(c->retain_s > 0 && c->retain_s < 3600 ? c->retain_s : 3600));
}

uint64_t cas_tenant_size(struct cas *c, const char *tenant)
{
	pthread_mutex_lock(&c->lock);
	struct tenant_store *t = c->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	uint64_t n = t && t->size_known && t->size > 0 ? (uint64_t)t->size : 0;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Reserves n bytes under the tenant's hard cap ([limits] cas_quota),
 * evicting what eviction may (never what [audit] retain keeps) when they do
 * not fit: 1 reserved, 0 no cap, -EDQUOT no room even so. */
static int reserve(struct cas *c, struct tenant_store *t, size_t n)
{
	uint64_t cap = c->quota ? quota_cas_cap(c->quota, t->name) : 0;
	if (!cap)
		return 0;
	uint64_t left, files, evicted;
	pthread_mutex_lock(&c->lock);
	bool known = t->size_known;
	pthread_mutex_unlock(&c->lock);
	if (!known && cleanup(c, t, UINT64_MAX, &left, &files, &evicted) == 0)
		set_size(c, t, left);
	for (int pass = 0; pass < 2; pass++) {
		pthread_mutex_lock(&c->lock);
		/* A scan (set_size) sets size to what is on disk; writes under
		 * way count apart, so that it cannot forget them. */
		uint64_t held = t->size_known ? (uint64_t)t->size + t->reserved : 0;
		bool fits = t->size_known && held <= cap && n <= cap - held;
		if (fits)
			t->reserved += n;
		pthread_mutex_unlock(&c->lock);
		if (fits)
			return 1;
		/* Eviction first: only what cannot be made room for is refused.
		 * Down to 90 % of the cap, so that the next writes fit without a
		 * scan; and at most one scan a second per tenant, so that a
		 * flood of refused uploads cannot make the worker scan its
		 * store for each of them. */
		pthread_mutex_lock(&c->lock);
		int64_t now = (int64_t)time(NULL);
		bool scan = pass == 0 && n <= cap && now != t->cap_scan_s;
		if (scan)
			t->cap_scan_s = now;
		pthread_mutex_unlock(&c->lock);
		if (scan && cleanup(c, t, cap - (cap / 10 > n ? cap / 10 : n), &left, &files, &evicted) == 0) {
			set_size(c, t, left);
			if (evicted)
				log_info("tenant %s: evicted %llu entries for its CAS quota, %llu bytes left", t->name,
					 (unsigned long long)evicted, (unsigned long long)left);
		}
	}
	return -EDQUOT;
}

/* Every write to a tenant's store: its hard cap, the write, its size and
 * the eviction budget. A refused write is counted with the quotas. */
static int put_entry(struct cas *c, struct tenant_store *t, enum store_kind kind, const struct digest *key,
		     const void *data, size_t n)
{
	int reserved = reserve(c, t, n);
	if (reserved < 0) {
		struct error err = { 0 };
		cas_quota_message(c, t->name, n, &err);
		quota_refused(c->quota, QUOTA_CAS, &err);
		return reserved;
	}
	struct stats delta = { 0 };
	int r = store_put(&t->store, kind, key, data, n, &delta);
	pthread_mutex_lock(&c->lock);
	if (reserved)
		t->reserved -= n;
	if (t->size_known) {
		t->size += r == 0 ? delta.v[STAT_CACHE_SIZE] : 0;
		if (t->size < 0)
			t->size = 0;
	}
	pthread_mutex_unlock(&c->lock);
	if (r == 0)
		account(c, t, n);
	return r;
}

bool cas_has_blob(struct cas *c, const char *tenant, const struct digest *d)
{
	struct tenant_store *t = tenant_get(c, tenant);
	/* This disk only: a HEAD in S3 proves nothing about the bytes, and the
	 * client uploads what is missing here at LAN speed. */
	return t && store_contains(&t->store, STORE_BLOB, d);
}

/* A local miss: the shared tier, which checks what it reads; what it has
 * is kept here too. */
static int read_through(struct cas *c, struct tenant_store *t, enum store_kind kind, const char *tenant,
			const struct digest *key, size_t max, struct buf *ret)
{
	if (!c->tier)
		return -ENOENT;
	int r = tier_get(c->tier, tier_kind(kind), tenant, key, max, ret);
	if (r < 0)
		return r;
	(void)put_entry(c, t, kind, key, ret->data, ret->len);
	return 0;
}

int cas_put_blob(struct cas *c, const char *tenant, const struct digest *d, const void *data, size_t n)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	struct digest check;
	int r = digest_bytes(data, n, &check);
	if (r < 0)
		return r;
	if (!digest_equal(&check, d))
		return -EBADMSG;
	if ((r = put_entry(c, t, STORE_BLOB, d, data, n)) == 0)
		tier_put(c->tier, S3OBJ_CAS, tenant, d, data, n);
	return r;
}

int cas_get_blob(struct cas *c, const char *tenant, const struct digest *d, size_t max, struct buf *ret)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	buf_reset(ret);
	int r = store_get(&t->store, STORE_BLOB, d, max, ret, NULL);
	if (r == -ENOENT)
		return read_through(c, t, STORE_BLOB, tenant, d, max, ret);
	if (r < 0)
		return r;
	struct digest check;
	if ((r = digest_bytes(ret->data, ret->len, &check)) < 0)
		return r;
	if (!digest_equal(&check, d)) {
		log_warn("tenant %s: a blob does not match its name; removed", tenant);
		store_remove(&t->store, STORE_BLOB, d, NULL);
		return read_through(c, t, STORE_BLOB, tenant, d, max, ret);
	}
	return 0;
}


/* Results are checked by the store; only workers write them. A local hit
 * keeps the shared copy young (tier_touch). */
int cas_get_action(struct cas *c, const char *tenant, const struct digest *action, size_t max, struct buf *ret)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	buf_reset(ret);
	int r = store_get(&t->store, STORE_ACTION, action, max, ret, NULL);
	if (r == -ENOENT)
		return read_through(c, t, STORE_ACTION, tenant, action, max, ret);
	if (r == 0)
		tier_touch(c->tier, S3OBJ_AC, tenant, action, ret->data, ret->len);
	return r;
}

int cas_put_action(struct cas *c, const char *tenant, const struct digest *action, const void *data, size_t n)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	int r = put_entry(c, t, STORE_ACTION, action, data, n);
	if (r == 0)
		tier_put(c->tier, S3OBJ_AC, tenant, action, data, n);
	return r;
}

int cas_put_command(struct cas *c, const char *tenant, const struct digest *action, const void *data, size_t n)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	return put_entry(c, t, STORE_COMMAND, action, data, n);
}

int cas_get_command(struct cas *c, const char *tenant, const struct digest *action, size_t max, struct buf *ret)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	buf_reset(ret);
	return store_get(&t->store, STORE_COMMAND, action, max, ret, NULL);
}

/*
 * A direct manifest and its newest candidate's result in one shared-tier
 * object: "DMB1" | action digest (32) | manifest length (4, big-endian) |
 * manifest | result. A DirectManifest never starts with "DMB1" (0x44 is no
 * valid protobuf tag), so a plain manifest object is told apart.
 */
#define BUNDLE_MAGIC "DMB1"
#define BUNDLE_HEAD (4 + DIGEST_LEN + 4)

int cas_get_direct(struct cas *c, const char *tenant, const struct digest *key, size_t max, struct buf *ret)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	buf_reset(ret);
	int r = store_get(&t->store, STORE_MANIFEST, key, max, ret, NULL);
	if (r != -ENOENT || !c->tier)
		return r;
	/* A bundle can hold a result of up to one message besides the manifest. */
	size_t cap = max + BUNDLE_HEAD + c->max_result;
	_cleanup_buf_ struct buf obj;
	buf_init(&obj, cap);
	if ((r = tier_get(c->tier, S3OBJ_DM, tenant, key, cap, &obj)) < 0)
		return r;
	const uint8_t *p = (const uint8_t *)obj.data;
	size_t mlen = obj.len;
	const uint8_t *m = p;
	if (obj.len >= BUNDLE_HEAD && memcmp(p, BUNDLE_MAGIC, 4) == 0) {
		mlen = (size_t)p[36] << 24 | (size_t)p[37] << 16 | (size_t)p[38] << 8 | p[39];
		if (mlen > obj.len - BUNDLE_HEAD)
			return -ENOENT;
		m = p + BUNDLE_HEAD;
		size_t rlen = obj.len - BUNDLE_HEAD - mlen;
		/* The result is kept only as the manifest's newest candidate's,
		 * the one it was written with, and only if it parses. */
		Hpcc__V1__DirectManifest *dm = mlen <= max ? hpcc__v1__direct_manifest__unpack(NULL, mlen, m) : NULL;
		const ProtobufCBinaryData *newest = dm && dm->n_candidates ?
							    &dm->candidates[dm->n_candidates - 1]->action_digest : NULL;
		Hpcc__V1__ActionResult *ar = NULL;
		if (newest && newest->len == DIGEST_LEN && memcmp(newest->data, p + 4, DIGEST_LEN) == 0 && rlen > 0 &&
		    (ar = hpcc__v1__action_result__unpack(NULL, rlen, m + mlen))) {
			struct digest action;
			memcpy(action.b, p + 4, DIGEST_LEN);
			(void)put_entry(c, t, STORE_ACTION, &action, m + mlen, rlen);
			/* Its first local hit is the probe under way: no HEAD for it. */
			tier_note_fresh(c->tier, S3OBJ_AC, tenant, &action);
		}
		if (ar)
			hpcc__v1__action_result__free_unpacked(ar, NULL);
		if (dm)
			hpcc__v1__direct_manifest__free_unpacked(dm, NULL);
	}
	if (mlen > max)
		return -ENOENT;
	(void)put_entry(c, t, STORE_MANIFEST, key, m, mlen);
	return buf_append(ret, m, mlen) < 0 ? -ENOMEM : 0;
}

int cas_get_direct_local(struct cas *c, const char *tenant, const struct digest *key, size_t max, struct buf *ret)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t)
		return -EINVAL;
	buf_reset(ret);
	return store_get(&t->store, STORE_MANIFEST, key, max, ret, NULL);
}

int cas_put_direct(struct cas *c, const char *tenant, const struct digest *key, const void *data, size_t n,
		   const struct digest *action, const void *result, size_t result_len)
{
	struct tenant_store *t = tenant_get(c, tenant);
	if (!t || n > UINT32_MAX || (action && result_len > SIZE_MAX - BUNDLE_HEAD - n))
		return -EINVAL;
	int r = put_entry(c, t, STORE_MANIFEST, key, data, n);
	if (r < 0)
		return r;
	if (!action) {
		tier_put(c->tier, S3OBJ_DM, tenant, key, data, n);
		return 0;
	}
	if (!c->tier)
		return 0;
	_cleanup_buf_ struct buf b;
	buf_init(&b, BUNDLE_HEAD + n + result_len);
	uint8_t len[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	buf_append(&b, BUNDLE_MAGIC, 4);
	buf_append(&b, action->b, DIGEST_LEN);
	buf_append(&b, len, 4);
	buf_append(&b, data, n);
	buf_append(&b, result, result_len);
	if (b.error)
		return 0;  /* the local store has it; S3 goes without */
	tier_put(c->tier, S3OBJ_DM, tenant, key, b.data, b.len);
	return 0;
}


int cas_gc(struct cas *c)
{
	if (c->max_bytes == 0)
		return 0;  /* no budget */
	pthread_mutex_lock(&c->lock);
	struct tenant_store *list = c->tenants;
	pthread_mutex_unlock(&c->lock);
	/* Tenants are never removed while the worker runs, so walking the
	 * list without the lock is safe. */
	for (struct tenant_store *t = list; t; t = t->next) {
		uint64_t left, files, evicted;
		int r = cleanup(c, t, c->max_bytes, &left, &files, &evicted);
		if (r < 0)
			return r;
		set_size(c, t, left);
	}
	return 0;
}

