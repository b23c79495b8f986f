/*
 * Explain records (see explain.h and docs/explain.md). A record is a
 * STORE_RESULT entry of a store rooted at <cache>/explain, keyed by the
 * SHA-256 of the object's absolute path; kept input contents are STORE_BLOB
 * entries of the same store, keyed by their own digest. Reusing the local
 * store's format gives a checked header and payload digest (a damaged record
 * is detected, not parsed blindly), atomic writes, and LRU eviction by mtime
 * under a lock file.
 *
 * The rule for the two entries of a record, on a new entry N:
 *   - N has the latest entry L's action digest (the same inputs): N becomes
 *     latest; the reference stays, except that when L was a hit and N is a
 *     miss (the result left the cache) L becomes the reference, so that the
 *     report can say so;
 *   - otherwise L becomes the reference if L was a hit, or if the current
 *     reference was not one either; a reference that was a hit is kept while
 *     misses follow it. The report thus compares with the last hit, or,
 *     when the object never hit, with the previous different compile.
 *
 * Hits stay cheap: a hit with the latest entry's inputs rewrites the record
 * at most once a minute, and within that minute does not even read it (the
 * engine remembers the hits it wrote); only a hit with other inputs hashes
 * the object and checks that the project's inputs are kept. Which contents are
 * kept is remembered in memory (the daemon lives long), so a stored miss
 * stats a blob only the first time it meets a digest.
 */
#include "explain.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine_private.h"
#include "fs.h"
#include "log.h"
#include "store.h"

#define KNOWN_SLOTS (1u << 16)                 /* a power of two */
#define KNOWN_FORGET_SECONDS 600               /* blobs removed behind our back are noticed again */
#define SYSTEM_DIGEST_LEN 8                    /* system headers: enough to tell a change */
#define RECENT_SLOTS 4096                      /* objects whose last hit was written lately */

/* A hit this engine wrote: repeated hits of the same inputs skip even the
 * record's read while it is fresh (direct-mapped; a collision only costs
 * one read). */
struct recent_hit {
	struct digest object, action;
	time_t written;
};

struct explain {
	struct store store;
	uint64_t cap;
	pthread_mutex_t lock;                  /* guards known*, size */
	uint64_t *known;                       /* digest prefixes of kept contents; 0: free */
	size_t n_known;
	time_t known_since;
	int64_t size;                          /* bytes under explain/store; -1: not measured */
	struct recent_hit *recent;             /* RECENT_SLOTS, guarded by lock */
};

uint64_t explain_cap(uint64_t max_size)
{
	uint64_t cap = max_size ? max_size / 20 : (uint64_t)256 << 20;
	return cap < EXPLAIN_MIN_CAP ? EXPLAIN_MIN_CAP : cap;
}

int explain_open(const char *cache_dir, uint64_t max_size, struct explain **ret)
{
	struct explain *x = calloc(1, sizeof(*x));
	_cleanup_free_ char *dir = path_join(cache_dir, "explain");
	if (!x || !dir || !(x->known = calloc(KNOWN_SLOTS, sizeof(uint64_t))) ||
	    !(x->recent = calloc(RECENT_SLOTS, sizeof(*x->recent)))) {
		explain_free(x);
		return -ENOMEM;
	}
	pthread_mutex_init(&x->lock, NULL);
	x->cap = explain_cap(max_size);
	x->size = -1;
	x->known_since = time(NULL);
	int r = store_init(&x->store, dir, x->cap, 1);
	if (r < 0) {
		explain_free(x);
		return r;
	}
	*ret = x;
	return 0;
}

void explain_free(struct explain *x)
{
	if (!x)
		return;
	store_free(&x->store);
	free(x->known);
	free(x->recent);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

static void add_size(struct explain *x, int64_t delta)
{
	pthread_mutex_lock(&x->lock);
	if (x->size >= 0)
		x->size += delta;
	pthread_mutex_unlock(&x->lock);
}

static void known_clear_locked(struct explain *x)
{
	memset(x->known, 0, KNOWN_SLOTS * sizeof(uint64_t));
	x->n_known = 0;
	x->known_since = time(NULL);
}

static uint64_t known_tag(const struct digest *d)
{
	uint64_t v = 0;
	memcpy(&v, d->b, sizeof(v));
	return v ? v : 1;
}

/* Looks a content up in the set of kept ones, adding it when add is set. */
static bool known_check(struct explain *x, const struct digest *d, bool add)
{
	uint64_t tag = known_tag(d);
	bool found = false;
	pthread_mutex_lock(&x->lock);
	if (time(NULL) - x->known_since > KNOWN_FORGET_SECONDS || x->n_known >= KNOWN_SLOTS / 4 * 3)
		known_clear_locked(x);
	for (size_t i = tag & (KNOWN_SLOTS - 1);; i = (i + 1) & (KNOWN_SLOTS - 1)) {
		if (x->known[i] == tag) {
			found = true;
			break;
		}
		if (x->known[i] == 0) {
			if (add) {
				x->known[i] = tag;
				x->n_known++;
			}
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
	return found;
}

int explain_maintain(struct explain *x, bool scan)
{
	pthread_mutex_lock(&x->lock);
	bool run = x->size < 0 ? scan : x->size > (int64_t)x->cap;
	pthread_mutex_unlock(&x->lock);
	if (!run)
		return 0;
	uint64_t left = 0, files = 0, evicted = 0;
	int r = store_cleanup(&x->store, x->cap / 10 * 9, &left, &files, &evicted);
	if (r < 0)
		return r;
	pthread_mutex_lock(&x->lock);
	x->size = (int64_t)left;
	if (evicted)
		known_clear_locked(x);  /* some kept contents are gone */
	pthread_mutex_unlock(&x->lock);
	if (evicted)
		log_debug("explain: evicted %lu files, %lu bytes left", (unsigned long)evicted, (unsigned long)left);
	return 0;
}

static struct recent_hit *recent_slot(struct explain *x, const struct digest *object)
{
	return &x->recent[known_tag(object) & (RECENT_SLOTS - 1)];
}

/* Whether object's record already says: hit of action, written lately. */
static bool recent_check(struct explain *x, const struct digest *object, const struct digest *action)
{
	pthread_mutex_lock(&x->lock);
	const struct recent_hit *h = recent_slot(x, object);
	bool fresh = h->written && digest_equal(&h->object, object) && digest_equal(&h->action, action) &&
		     time(NULL) - h->written < EXPLAIN_HIT_REFRESH_SECONDS;
	pthread_mutex_unlock(&x->lock);
	return fresh;
}

/* written: when the record got a hit of action; 0 forgets the object. */
static void recent_set(struct explain *x, const struct digest *object, const struct digest *action, time_t written)
{
	pthread_mutex_lock(&x->lock);
	*recent_slot(x, object) = (struct recent_hit){ .object = *object, .action = *action, .written = written };
	pthread_mutex_unlock(&x->lock);
}

/* ---- kept contents ------------------------------------------------------ */

/* Keeps the content of the file at path, if it still has digest d. */
static void keep_content(struct explain *x, const char *path, const struct digest *d)
{
	if (known_check(x, d, false))
		return;
	if (store_contains(&x->store, STORE_BLOB, d)) {
		known_check(x, d, true);
		return;
	}
	_cleanup_buf_ struct buf data;
	buf_init(&data, EXPLAIN_BLOB_MAX + 1);
	struct digest got;
	if (fs_read_file(path, EXPLAIN_BLOB_MAX, &data) < 0 || digest_bytes(data.data, data.len, &got) < 0 ||
	    !digest_equal(&got, d))
		return;  /* too large, gone, or changed since: nothing to keep */
	struct stats delta = { 0 };
	if (store_put(&x->store, STORE_BLOB, d, data.data ? data.data : "", data.len, &delta) == 0) {
		known_check(x, d, true);
		add_size(x, delta.v[STAT_CACHE_SIZE]);
	}
}

static char *input_abs(const struct engine_job *job, const char *path, bool rooted)
{
	if (!rooted)
		return strdup(path);
	return job->root ? path_join(job->root, path) : NULL;
}

/* ---- records ------------------------------------------------------------ */

int explain_record_key(const char *object_abs, struct digest *ret)
{
	return digest_bytes(object_abs, strlen(object_abs), ret);
}

static void reader_store(const char *cache_dir, struct store *s, char **dir, char **store_dir)
{
	*dir = path_join(cache_dir, "explain");
	*store_dir = *dir ? path_join(*dir, "store") : NULL;
	*s = (struct store){ .dir = *dir, .store_dir = *store_dir, .level = 1 };
}

char *explain_record_path(const char *cache_dir, const char *object_abs)
{
	struct digest k;
	char hex[DIGEST_HEX_LEN + 1];
	char *p = NULL;
	if (explain_record_key(object_abs, &k) < 0)
		return NULL;
	digest_to_hex(&k, hex);
	if (asprintf(&p, "%s/explain/store/%.2s/%s.%c", cache_dir, hex, hex + 2, (char)STORE_RESULT) < 0)
		return NULL;
	return p;
}

static int load_from(const struct store *s, const char *object_abs, Hpcc__Local__ExplainRecord **ret)
{
	struct digest k;
	int r = explain_record_key(object_abs, &k);
	if (r < 0)
		return r;
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, EXPLAIN_RECORD_MAX + 1);
	struct stats delta = { 0 };
	r = store_get(s, STORE_RESULT, &k, EXPLAIN_RECORD_MAX, &payload, &delta);
	if (r == -ENOENT && delta.v[STAT_CORRUPT_ENTRIES])
		return -EBADMSG;
	if (r < 0)
		return r;
	Hpcc__Local__ExplainRecord *rec =
		hpcc__local__explain_record__unpack(NULL, payload.len, (const uint8_t *)payload.data);
	if (!rec || !rec->latest || strcmp(rec->object, object_abs) != 0) {
		if (rec)
			hpcc__local__explain_record__free_unpacked(rec, NULL);
		store_remove(s, STORE_RESULT, &k, NULL);
		return -EBADMSG;
	}
	*ret = rec;
	return 0;
}

int explain_load(const char *cache_dir, const char *object_abs, Hpcc__Local__ExplainRecord **ret)
{
	_cleanup_free_ char *dir = NULL, *store_dir = NULL;
	struct store s;
	reader_store(cache_dir, &s, &dir, &store_dir);
	if (!store_dir)
		return -ENOMEM;
	return load_from(&s, object_abs, ret);
}

int explain_blob_get(const char *cache_dir, const struct digest *d, struct buf *ret)
{
	_cleanup_free_ char *dir = NULL, *store_dir = NULL;
	struct store s;
	reader_store(cache_dir, &s, &dir, &store_dir);
	if (!store_dir)
		return -ENOMEM;
	return store_get(&s, STORE_BLOB, d, EXPLAIN_BLOB_MAX, ret, NULL);
}

static bool is_hit(const Hpcc__Local__ExplainEntry *x)
{
	return x && (x->kind == HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT ||
		     x->kind == HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE_HIT);
}

static bool same_action(const Hpcc__Local__ExplainEntry *a, const struct digest *action)
{
	return a && a->action_digest.len == DIGEST_LEN && memcmp(a->action_digest.data, action->b, DIGEST_LEN) == 0;
}

/* What a new entry is compared with (the rule at the top of this file). */
static Hpcc__Local__ExplainEntry *choose_reference(const Hpcc__Local__ExplainRecord *old,
						    const Hpcc__Local__ExplainEntry *n, const struct digest *action)
{
	if (!old)
		return NULL;
	Hpcc__Local__ExplainEntry *l = old->latest, *ref = old->reference;
	if (same_action(l, action))
		return is_hit(l) && !is_hit(n) ? l : ref;
	if (is_hit(l) || !is_hit(ref))
		return l;
	return ref;
}

/* The parts of an entry every kind shares; pointers into job stay valid
 * until the record is packed. */
struct entry_build {
	Hpcc__Local__ExplainEntry e;
	Hpcc__Local__ExplainFlag *flags;
	Hpcc__Local__ExplainFlag **flag_ptrs;
	Hpcc__Local__ExplainInput *inputs;
	Hpcc__Local__ExplainInput **input_ptrs;
	char *source;
	struct digest output;
};

static void entry_build_free(struct entry_build *b)
{
	free(b->flags);
	free(b->flag_ptrs);
	free(b->inputs);
	free(b->input_ptrs);
	free(b->source);
}

static int entry_build_init(struct entry_build *b, const struct engine_job *job, const struct digest *action,
			    int kind, size_t n_inputs)
{
	const struct compile_args *a = &job->args;
	hpcc__local__explain_entry__init(&b->e);
	b->e.time = (int64_t)time(NULL);
	b->e.kind = kind;
	b->e.remote = job->remote;
	b->e.toolchain.data = (uint8_t *)(job->remote ? job->remote_image.b : job->tc.id.b);
	b->e.toolchain.len = DIGEST_LEN;
	b->e.compiler = job->compiler_path;
	b->e.cwd = job->cwd;
	b->e.root = job->root ? job->root : (char *)"";
	b->e.action_digest.data = (uint8_t *)action->b;
	b->e.action_digest.len = DIGEST_LEN;
	_cleanup_free_ char *src = path_join(job->cwd, a->source);
	const char *rel = src && job->root ? path_under(src, job->root) : NULL;
	b->source = src ? strdup(rel ? rel : src) : NULL;
	b->e.source = b->source;
	if (n_inputs > EXPLAIN_MAX_INPUTS)
		n_inputs = EXPLAIN_MAX_INPUTS;
	b->flags = calloc(a->n_key_args + 1, sizeof(*b->flags));
	b->flag_ptrs = calloc(a->n_key_args + 1, sizeof(*b->flag_ptrs));
	b->inputs = calloc(n_inputs + 1, sizeof(*b->inputs));
	b->input_ptrs = calloc(n_inputs + 1, sizeof(*b->input_ptrs));
	if (!b->source || !b->flags || !b->flag_ptrs || !b->inputs || !b->input_ptrs)
		return -ENOMEM;
	for (size_t i = 0; i < a->n_key_args; i++) {
		Hpcc__Local__ExplainFlag *f = &b->flags[i];
		hpcc__local__explain_flag__init(f);
		f->flag = a->key_args[i].flag;
		f->path = a->key_args[i].path ? a->key_args[i].path : (char *)"";
		f->suffix = a->key_args[i].suffix ? a->key_args[i].suffix : (char *)"";
		b->flag_ptrs[i] = f;
	}
	b->e.n_flags = a->n_key_args;
	b->e.flags = b->flag_ptrs;
	b->e.inputs = b->input_ptrs;
	return 0;
}

/* Appends an input (up to the cap); digest NULL: not known here. */
static void entry_add_input(struct entry_build *b, const char *path, bool rooted, bool system, const uint8_t *digest)
{
	if (b->e.n_inputs >= EXPLAIN_MAX_INPUTS)
		return;
	Hpcc__Local__ExplainInput *in = &b->inputs[b->e.n_inputs];
	hpcc__local__explain_input__init(in);
	in->path = (char *)path;
	in->rooted = rooted;
	in->system = system;
	if (digest) {
		in->digest.data = (uint8_t *)digest;
		/* Nothing of a system header is kept, and a prefix of its
		 * digest tells a change: it keeps records of C++ units small. */
		in->digest.len = system && !rooted ? SYSTEM_DIGEST_LEN : DIGEST_LEN;
	}
	b->input_ptrs[b->e.n_inputs++] = in;
}

/* Writes the record for the job's object with n as its latest entry. */
static int record_write(struct explain *x, const char *object_abs, Hpcc__Local__ExplainRecord *old,
			Hpcc__Local__ExplainEntry *n, const struct digest *action)
{
	Hpcc__Local__ExplainRecord rec = HPCC__LOCAL__EXPLAIN_RECORD__INIT;
	rec.object = (char *)object_abs;
	rec.latest = n;
	rec.reference = choose_reference(old, n, action);
	size_t len = hpcc__local__explain_record__get_packed_size(&rec);
	if (len > EXPLAIN_RECORD_MAX)
		return -EFBIG;
	_cleanup_free_ uint8_t *packed = malloc(len ? len : 1);
	if (!packed)
		return -ENOMEM;
	hpcc__local__explain_record__pack(&rec, packed);
	struct digest k;
	struct stats delta = { 0 };
	int r = explain_record_key(object_abs, &k);
	/* Removed first: ext4 flushes a file renamed over another one to disk
	 * (auto_da_alloc), which made a record's write cost a millisecond. A
	 * reader in between sees no record, which it takes as no news. */
	if (r == 0 && old)
		(void)store_remove(&x->store, STORE_RESULT, &k, &delta);
	if (r == 0)
		r = store_put(&x->store, STORE_RESULT, &k, packed, len, &delta);
	if (r == 0)
		add_size(x, delta.v[STAT_CACHE_SIZE]);
	return r;
}

static char *object_path(const struct engine_job *job) { return path_join(job->cwd, job->args.output); }

void explain_note_hit(struct explain *x, const struct engine_job *job, const struct digest *action,
		      const Hpcc__Local__ManifestCandidate *c, const struct buf *object)
{
	if (!x)
		return;
	_cleanup_free_ char *obj = object_path(job);
	struct digest key;
	if (!obj || explain_record_key(obj, &key) < 0 || recent_check(x, &key, action))
		return;
	Hpcc__Local__ExplainRecord *old = NULL;
	(void)load_from(&x->store, obj, &old);
	Hpcc__Local__ExplainEntry *l = old ? old->latest : NULL;
	bool same = same_action(l, action);
	if (same && is_hit(l)) {
		/* Already says so: a rebuild's hits write nothing (the record keeps
		 * the first hit of this result). Remembered, so that the next
		 * minute's hits do not even read it. */
		recent_set(x, &key, action, time(NULL));
		hpcc__local__explain_record__free_unpacked(old, NULL);
		return;
	}
	struct entry_build b = { 0 };
	int r = entry_build_init(&b, job, action, HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT, c->n_inputs);
	if (r == 0 && same && l->output_digest.len == DIGEST_LEN)
		memcpy(b.output.b, l->output_digest.data, DIGEST_LEN);
	else if (r == 0 && object)
		r = digest_bytes(object->data ? object->data : "", object->len, &b.output);
	if (r == 0) {
		b.e.output_digest.data = b.output.b;
		b.e.output_digest.len = DIGEST_LEN;
		for (size_t i = 0; i < c->n_inputs; i++) {
			const Hpcc__Local__ManifestInput *in = c->inputs[i];
			if (in->digest.len != DIGEST_LEN)
				continue;
			entry_add_input(&b, in->path, in->rooted, false, in->digest.data);
			/* New inputs: keep the project's contents, as a miss would
			 * have (the entry may come from before explain records). */
			if (!same && in->rooted) {
				_cleanup_free_ char *p = input_abs(job, in->path, in->rooted);
				if (p)
					keep_content(x, p, (const struct digest *)in->digest.data);
			}
		}
		r = record_write(x, obj, old, &b.e, action);
		if (r == 0)
			recent_set(x, &key, action, (time_t)b.e.time);
	}
	if (r < 0)
		log_debug("explain record of %s: %s", obj, strerror(-r));
	entry_build_free(&b);
	if (old)
		hpcc__local__explain_record__free_unpacked(old, NULL);
}

void explain_note_store(struct explain *x, const struct engine_job *job, const struct digest *action,
			const struct dep_info *deps, size_t n, const struct buf *object, bool remote)
{
	if (!x)
		return;
	_cleanup_free_ char *obj = object_path(job);
	if (!obj)
		return;
	int kind = !remote ? HPCC__LOCAL__EXPLAIN_ENTRY__KIND__MISS :
		   job->remote_hit ? HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE_HIT :
				     HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE;
	struct entry_build b = { 0 };
	int r = entry_build_init(&b, job, action, kind, n);
	if (r == 0 && object)
		r = digest_bytes(object->data ? object->data : "", object->len, &b.output);
	if (r == 0) {
		b.e.output_digest.data = b.output.b;
		b.e.output_digest.len = DIGEST_LEN;
		for (size_t i = 0; i < n; i++) {
			const struct dep_info *d = &deps[i];
			/* A remote key names the image, not the headers it had. */
			if (job->remote && !d->rooted)
				continue;
			bool known = memcmp(d->fd.digest.b, (uint8_t[DIGEST_LEN]){ 0 }, DIGEST_LEN) != 0;
			entry_add_input(&b, d->canonical, d->rooted, d->system, known ? d->fd.digest.b : NULL);
			if (known && (d->rooted || !d->system)) {
				_cleanup_free_ char *p = input_abs(job, d->canonical, d->rooted);
				if (p)
					keep_content(x, p, &d->fd.digest);
			}
		}
		Hpcc__Local__ExplainRecord *old = NULL;
		(void)load_from(&x->store, obj, &old);
		r = record_write(x, obj, old, &b.e, action);
		struct digest key;
		if (explain_record_key(obj, &key) == 0)
			recent_set(x, &key, action, 0);  /* the next hit writes */
		if (old)
			hpcc__local__explain_record__free_unpacked(old, NULL);
	}
	if (r < 0)
		log_debug("explain record of %s: %s", obj, strerror(-r));
	entry_build_free(&b);
}
