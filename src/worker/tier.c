/*
 * The shared S3 tier (see tier.h): a pool of S3 clients (one libcurl handle
 * each), a "down" deadline after failures, a bounded write-behind queue
 * drained by two threads, and a small table that limits refreshes to one a
 * day per object.
 */
#include "tier.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "macro.h"

#define TIER_WRITERS 2
#define TOUCH_SLOTS 65536

enum job_op {
	JOB_PUT,        /* encode the plain bytes and write */
	JOB_REWRITE,    /* write the object bytes again (an old object that was read) */
	JOB_TOUCH,      /* HEAD; write when missing or old */
};

struct job {
	enum job_op op;
	enum s3obj_kind kind;
	char tenant[S3OBJ_TENANT_MAX + 1];
	struct digest key;
	uint8_t *data;
	size_t n;
	struct job *next;
};

struct touch_slot {
	uint64_t fp;
	int64_t when;   /* monotonic seconds */
};

struct tier {
	struct tier_config cfg;
	struct s3_client **clients;
	bool *busy;
	size_t n_clients;
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;

	atomic_llong down_until_ms;   /* monotonic */

	pthread_mutex_t q_lock;
	pthread_cond_t q_cond, q_empty;
	struct job *head, *tail;
	size_t q_len, q_bytes, in_flight;
	bool stopping;
	pthread_t writers[TIER_WRITERS];
	size_t n_writers;

	pthread_mutex_t touch_lock;
	struct touch_slot *touched;

	atomic_ullong hits, misses, corrupt, errors, skipped, puts, put_errors, dropped, refreshed, bytes_read,
		bytes_written;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_down(struct tier *t)
{
	if (atomic_load(&t->down_until_ms) > mono_ms()) {
		atomic_fetch_add(&t->skipped, 1);
		return true;
	}
	return false;
}

/* A failure that says nothing about one object: S3 is skipped for a while.
 * Logged once per outage. */
static void failed(struct tier *t, int r, const struct error *err)
{
	atomic_fetch_add(&t->errors, 1);
	if (r == -ENOENT)
		return;
	int64_t now = mono_ms();
	long long prev = atomic_exchange(&t->down_until_ms, now + t->cfg.down_ms);
	if (prev <= now)
		log_warn("s3 tier: %s; serving from local disk only for %d s", err->msg, t->cfg.down_ms / 1000);
}

static struct s3_client *client_take(struct tier *t, size_t *slot)
{
	pthread_mutex_lock(&t->pool_lock);
	for (;;) {
		for (size_t i = 0; i < t->n_clients; i++)
			if (!t->busy[i]) {
				t->busy[i] = true;
				pthread_mutex_unlock(&t->pool_lock);
				*slot = i;
				return t->clients[i];
			}
		pthread_cond_wait(&t->pool_cond, &t->pool_lock);
	}
}

static void client_give(struct tier *t, size_t slot)
{
	pthread_mutex_lock(&t->pool_lock);
	t->busy[slot] = false;
	pthread_cond_signal(&t->pool_cond);
	pthread_mutex_unlock(&t->pool_lock);
}

/* ---- the refresh table ---- */

static uint64_t fingerprint(enum s3obj_kind kind, const char *tenant, const struct digest *key)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
	for (const char *p = tenant; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	uint64_t k;
	memcpy(&k, key->b, sizeof(k));
	return h ^ k;
}

/* True when the object was not touched in the last day (and marks it now). */
static bool touch_due(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key)
{
	uint64_t fp = fingerprint(kind, tenant, key);
	int64_t now = mono_ms() / 1000;
	pthread_mutex_lock(&t->touch_lock);
	struct touch_slot *s = &t->touched[fp % TOUCH_SLOTS];
	bool due = s->fp != fp || s->when == 0 || now - s->when >= TIER_REFRESH_AGE_S;
	if (due) {
		s->fp = fp;
		s->when = now > 0 ? now : 1;
	}
	pthread_mutex_unlock(&t->touch_lock);
	return due;
}

/* A write that did not happen: the object may be refreshed again at once. */
static void touch_forget(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key)
{
	uint64_t fp = fingerprint(kind, tenant, key);
	pthread_mutex_lock(&t->touch_lock);
	struct touch_slot *s = &t->touched[fp % TOUCH_SLOTS];
	if (s->fp == fp)
		s->when = 0;
	pthread_mutex_unlock(&t->touch_lock);
}

/* ---- the write-behind queue ---- */

static void job_free(struct job *j)
{
	if (j) {
		free(j->data);
		free(j);
	}
}

/* False when the job was dropped (counted): S3 down, the queue full. */
static bool enqueue(struct tier *t, enum job_op op, enum s3obj_kind kind, const char *tenant, const struct digest *key,
		    const void *data, size_t n)
{
	if (!s3obj_tenant_ok(tenant) || atomic_load(&t->down_until_ms) > mono_ms()) {
		atomic_fetch_add(&t->dropped, 1);
		return false;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (j && n)
		j->data = malloc(n);
	if (!j || (n && !j->data)) {
		job_free(j);
		atomic_fetch_add(&t->dropped, 1);
		return false;
	}
	j->op = op;
	j->kind = kind;
	snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
	j->key = *key;
	if (n)
		memcpy(j->data, data, n);
	j->n = n;
	pthread_mutex_lock(&t->q_lock);
	if (t->stopping || t->q_len >= TIER_QUEUE_MAX || t->q_bytes + n > TIER_QUEUE_MAX_BYTES) {
		pthread_mutex_unlock(&t->q_lock);
		job_free(j);
		atomic_fetch_add(&t->dropped, 1);
		return false;
	}
	if (t->tail)
		t->tail->next = j;
	else
		t->head = j;
	t->tail = j;
	t->q_len++;
	t->q_bytes += n;
	pthread_cond_signal(&t->q_cond);
	pthread_mutex_unlock(&t->q_lock);
	return true;
}

static int put_object(struct tier *t, struct s3_client *c, const struct job *j, const void *obj, size_t n)
{
	char key[S3OBJ_KEY_MAX];
	struct error err = { 0 };
	int r = s3obj_key(j->kind, j->tenant, &j->key, key);
	if (r == 0)
		r = s3_put(c, key, obj, n, &err);
	if (r < 0) {
		atomic_fetch_add(&t->put_errors, 1);
		/* A 404 to a PUT is a missing bucket: as bad as an outage. */
		failed(t, r == -ENOENT ? -EIO : r, &err);
		touch_forget(t, j->kind, j->tenant, &j->key);
		return r;
	}
	atomic_fetch_add(&t->puts, 1);
	atomic_fetch_add(&t->bytes_written, n);
	return 0;
}

static void run_job(struct tier *t, struct s3_client *c, const struct job *j)
{
	if (atomic_load(&t->down_until_ms) > mono_ms()) {
		atomic_fetch_add(&t->dropped, 1);
		touch_forget(t, j->kind, j->tenant, &j->key);
		return;
	}
	if (j->op == JOB_REWRITE) {
		if (put_object(t, c, j, j->data, j->n) == 0)
			atomic_fetch_add(&t->refreshed, 1);
		return;
	}
	bool refresh = false;
	if (j->op == JOB_TOUCH) {
		char key[S3OBJ_KEY_MAX];
		struct error err = { 0 };
		int64_t mtime = -1;
		int r = s3obj_key(j->kind, j->tenant, &j->key, key);
		if (r == 0)
			r = s3_head_mtime(c, key, NULL, &mtime, &err);
		if (r == 0 && mtime > 0 && (int64_t)time(NULL) - mtime < TIER_REFRESH_AGE_S)
			return;  /* young enough */
		if (r < 0 && r != -ENOENT) {
			failed(t, r, &err);
			touch_forget(t, j->kind, j->tenant, &j->key);
			return;
		}
		refresh = true;
	}
	_cleanup_buf_ struct buf obj;
	buf_init(&obj, j->n + j->n / 64 + S3OBJ_HEADER_MAX + 4096);
	if (s3obj_encode(j->kind, j->tenant, &j->key, j->data, j->n, t->cfg.level, &obj) < 0) {
		atomic_fetch_add(&t->put_errors, 1);
		return;
	}
	if (put_object(t, c, j, obj.data, obj.len) == 0 && refresh)
		atomic_fetch_add(&t->refreshed, 1);
}

static void *writer(void *arg)
{
	struct tier *t = arg;
	int64_t deadline = 0;
	pthread_mutex_lock(&t->q_lock);
	for (;;) {
		while (!t->head && !t->stopping)
			pthread_cond_wait(&t->q_cond, &t->q_lock);
		if (t->stopping) {
			/* Pending writes get a few seconds, then are dropped. */
			if (!deadline)
				deadline = mono_ms() + 3000;
			if (!t->head || mono_ms() > deadline)
				break;
		}
		struct job *j = t->head;
		t->head = j->next;
		if (!t->head)
			t->tail = NULL;
		t->q_len--;
		t->q_bytes -= j->n;
		t->in_flight++;
		pthread_mutex_unlock(&t->q_lock);
		size_t slot;
		struct s3_client *c = client_take(t, &slot);
		run_job(t, c, j);
		client_give(t, slot);
		job_free(j);
		pthread_mutex_lock(&t->q_lock);
		t->in_flight--;
		if (!t->head && !t->in_flight)
			pthread_cond_broadcast(&t->q_empty);
	}
	pthread_mutex_unlock(&t->q_lock);
	return NULL;
}

/* ---- the interface ---- */

int tier_open(const struct tier_config *cfg, struct tier **ret, struct error *err)
{
	struct tier *t = calloc(1, sizeof(*t));
	if (!t)
		return error_set(err, -ENOMEM, "out of memory");
	t->cfg = *cfg;
	if (!t->cfg.connections)
		t->cfg.connections = 4;
	if (t->cfg.down_ms <= 0)
		t->cfg.down_ms = TIER_DOWN_MS;
	if (!t->cfg.level)
		t->cfg.level = 3;
	pthread_mutex_init(&t->pool_lock, NULL);
	pthread_cond_init(&t->pool_cond, NULL);
	pthread_mutex_init(&t->q_lock, NULL);
	pthread_cond_init(&t->q_cond, NULL);
	pthread_cond_init(&t->q_empty, NULL);
	pthread_mutex_init(&t->touch_lock, NULL);
	t->clients = calloc(t->cfg.connections, sizeof(*t->clients));
	t->busy = calloc(t->cfg.connections, sizeof(*t->busy));
	t->touched = calloc(TOUCH_SLOTS, sizeof(*t->touched));
	if (!t->clients || !t->busy || !t->touched) {
		tier_close(t);
		return error_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < t->cfg.connections; i++) {
		int r = s3_client_new(&t->cfg.s3, &t->clients[i], err);
		if (r < 0) {
			tier_close(t);
			return r;
		}
		t->n_clients++;
	}
	for (size_t i = 0; i < TIER_WRITERS; i++) {
		if (pthread_create(&t->writers[i], NULL, writer, t) != 0) {
			tier_close(t);
			return error_set(err, -EAGAIN, "cannot start the S3 writer threads");
		}
		t->n_writers++;
	}
	*ret = t;
	return 0;
}

void tier_close(struct tier *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->q_lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->q_cond);
	pthread_mutex_unlock(&t->q_lock);
	for (size_t i = 0; i < t->n_writers; i++)
		pthread_join(t->writers[i], NULL);
	while (t->head) {
		struct job *j = t->head;
		t->head = j->next;
		job_free(j);
	}
	for (size_t i = 0; i < t->n_clients; i++)
		s3_client_free(t->clients[i]);
	free(t->clients);
	free(t->busy);
	free(t->touched);
	pthread_mutex_destroy(&t->pool_lock);
	pthread_cond_destroy(&t->pool_cond);
	pthread_mutex_destroy(&t->q_lock);
	pthread_cond_destroy(&t->q_cond);
	pthread_cond_destroy(&t->q_empty);
	pthread_mutex_destroy(&t->touch_lock);
	free(t);
}

int tier_get(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, size_t max,
	     struct buf *ret)
{
	buf_reset(ret);
	char name[S3OBJ_KEY_MAX];
	if (!t || s3obj_key(kind, tenant, key, name) < 0)
		return -ENOENT;
	if (is_down(t))
		return -ENOENT;
	/* zstd's worst case is a little over the plain size. */
	if (max > TIER_OBJECT_MAX)
		max = TIER_OBJECT_MAX;
	size_t cap = max + max / 128 + S3OBJ_HEADER_MAX + 1024;
	_cleanup_buf_ struct buf obj;
	buf_init(&obj, cap + 1);
	struct error err = { 0 };
	int64_t mtime = -1;
	size_t slot;
	struct s3_client *c = client_take(t, &slot);
	int r = s3_get_mtime(c, name, cap, &obj, &mtime, &err);
	client_give(t, slot);
	if (r == -ENOENT || r == -EFBIG) {
		/* Missing, or larger than this worker takes: a miss, left alone. */
		atomic_fetch_add(&t->misses, 1);
		return -ENOENT;
	}
	if (r < 0) {
		failed(t, r, &err);
		return -ENOENT;
	}
	atomic_fetch_add(&t->bytes_read, obj.len);
	r = s3obj_decode(kind, tenant, key, obj.data, obj.len, max, ret);
	if (r < 0 && r != -EBADMSG) {
		/* Larger than this reader takes, or its own failure (memory):
		 * a miss, and the object is left for others. */
		atomic_fetch_add(&t->misses, 1);
		buf_reset(ret);
		return -ENOENT;
	}
	if (r < 0) {
		/* Never served: deleted, so that no one else reads it either. */
		atomic_fetch_add(&t->corrupt, 1);
		log_warn("s3 tier: %s does not match its key (tenant %s); deleted", name, tenant);
		c = client_take(t, &slot);
		if (s3_delete(c, name, &err) < 0)
			log_warn("s3 tier: %s", err.msg);
		client_give(t, slot);
		buf_reset(ret);
		return -ENOENT;
	}
	atomic_fetch_add(&t->hits, 1);
	if (mtime > 0 && (int64_t)time(NULL) - mtime >= TIER_REFRESH_AGE_S && touch_due(t, kind, tenant, key))
		(void)enqueue(t, JOB_REWRITE, kind, tenant, key, obj.data, obj.len);
	return 0;
}

void tier_put(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data,
	      size_t n)
{
	if (!t)
		return;
	/* Written now: no refresh for a day. A write dropped during an
	 * outage is not marked, so the next local hit writes it. */
	if (enqueue(t, JOB_PUT, kind, tenant, key, data, n))
		touch_due(t, kind, tenant, key);
}

void tier_touch(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data,
		size_t n)
{
	/* Results only: a manifest in S3 may be a newer bundle than the local
	 * copy (rewriting it would lose candidates), and blobs are uploaded
	 * again by clients when missing. */
	if (t && kind == S3OBJ_AC && atomic_load(&t->down_until_ms) <= mono_ms() && touch_due(t, kind, tenant, key))
		enqueue(t, JOB_TOUCH, kind, tenant, key, data, n);
}

void tier_note_fresh(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key)
{
	if (t)
		touch_due(t, kind, tenant, key);
}

int tier_flush(struct tier *t, int timeout_ms)
{
	if (!t)
		return 0;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	int r = 0;
	pthread_mutex_lock(&t->q_lock);
	while ((t->head || t->in_flight) && r == 0)
		r = pthread_cond_timedwait(&t->q_empty, &t->q_lock, &until);
	pthread_mutex_unlock(&t->q_lock);
	return r == 0 ? 0 : -ETIMEDOUT;
}

void tier_get_stats(struct tier *t, struct tier_stats *s)
{
	*s = (struct tier_stats){ 0 };
	if (!t)
		return;
	s->hits = atomic_load(&t->hits);
	s->misses = atomic_load(&t->misses);
	s->corrupt = atomic_load(&t->corrupt);
	s->errors = atomic_load(&t->errors);
	s->skipped = atomic_load(&t->skipped);
	s->puts = atomic_load(&t->puts);
	s->put_errors = atomic_load(&t->put_errors);
	s->dropped = atomic_load(&t->dropped);
	s->refreshed = atomic_load(&t->refreshed);
	s->bytes_read = atomic_load(&t->bytes_read);
	s->bytes_written = atomic_load(&t->bytes_written);
}

void tier_format_stats(const struct tier_stats *s, char *out, size_t n)
{
	snprintf(out, n,
		 "s3 hits %llu misses %llu corrupt %llu errors %llu skipped %llu puts %llu put_errors %llu dropped %llu "
		 "refreshed %llu bytes_read %llu bytes_written %llu",
		 (unsigned long long)s->hits, (unsigned long long)s->misses, (unsigned long long)s->corrupt,
		 (unsigned long long)s->errors, (unsigned long long)s->skipped, (unsigned long long)s->puts,
		 (unsigned long long)s->put_errors, (unsigned long long)s->dropped, (unsigned long long)s->refreshed,
		 (unsigned long long)s->bytes_read, (unsigned long long)s->bytes_written);
}
