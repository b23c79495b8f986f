/*
 * Per-tenant quota accounting (see quota.h). One mutex guards a list of
 * tenants (created on first use, at most QUOTA_MAX_TENANTS) and the
 * counters; every operation is a few additions under it, so one lock for
 * the whole worker costs nothing next to a call's TLS and disk work.
 */
#include "quota.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cas.h"
#include "config.h"
#include "log.h"
#include "worker_config.h"

/* At most this many refusal lines per limit in every LOG_PERIOD_MS. */
#define LOG_BURST 5
#define LOG_PERIOD_MS 10000

struct tenant_quota {
	char *name;
	bool own_limits;
	struct quota_limits limits;
	int64_t window_start_ms;  /* the current upload window; -1: none yet */
	uint64_t window_used;
	unsigned execs;
	struct tenant_quota *next;
};

struct log_limiter {
	int64_t period_start_ms;
	unsigned lines;
	uint64_t suppressed;
};

struct quota {
	pthread_mutex_t lock;
	struct quota_limits defaults;
	struct tenant_quota *tenants;
	size_t n_tenants;
	struct quota_stats stats;
	struct log_limiter log[QUOTA_N];
};

static const char *const kind_names[QUOTA_N] = { "upload", "execs", "vms", "cas" };

const char *quota_kind_name(enum quota_kind kind) { return kind < QUOTA_N ? kind_names[kind] : "?"; }

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void limits_fix(struct quota_limits *l)
{
	if (l->upload_window_s == 0)
		l->upload_window_s = 60;
}

int quota_new(const struct quota_limits *defaults, struct quota **ret)
{
	struct quota *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->defaults = *defaults;
	limits_fix(&q->defaults);
	*ret = q;
	return 0;
}

void quota_free(struct quota *q)
{
	if (!q)
		return;
	while (q->tenants) {
		struct tenant_quota *t = q->tenants;
		q->tenants = t->next;
		free(t->name);
		free(t);
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* An entry that holds nothing any more: no limits of its own (from
 * worker.ini), no compile running, its upload window over. */
static bool idle_locked(const struct tenant_quota *t, int64_t now_ms)
{
	return !t->own_limits && t->execs == 0 &&
	       (t->window_start_ms < 0 || now_ms - t->window_start_ms >= (int64_t)t->limits.upload_window_s * 1000 ||
		now_ms < t->window_start_ms);
}

/* The tenant's entry, created with the defaults; NULL when out of memory
 * or past QUOTA_MAX_TENANTS entries that are all in use. At the cap, an
 * idle entry is given to the new tenant: a long-running worker that has
 * seen many tenants still serves new ones. Called with the lock held. */
static struct tenant_quota *tenant_locked(struct quota *q, const char *tenant, int64_t now_ms)
{
	struct tenant_quota *t = q->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	if (t)
		return t;
	if (q->n_tenants >= QUOTA_MAX_TENANTS) {
		for (t = q->tenants; t && !idle_locked(t, now_ms); t = t->next)
			;
		char *name = t ? strdup(tenant) : NULL;
		if (!name)
			return NULL;
		free(t->name);
		t->name = name;
		t->limits = q->defaults;
		t->window_start_ms = -1;
		t->window_used = 0;
		return t;
	}
	if (!(t = calloc(1, sizeof(*t))))
		return NULL;
	if (!(t->name = strdup(tenant))) {
		free(t);
		return NULL;
	}
	t->limits = q->defaults;
	t->window_start_ms = -1;
	t->next = q->tenants;
	q->tenants = t;
	q->n_tenants++;
	return t;
}

int quota_set_tenant(struct quota *q, const char *tenant, const struct quota_limits *l)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = tenant_locked(q, tenant, mono_ms());
	if (t) {
		t->limits = *l;
		limits_fix(&t->limits);
		t->own_limits = true;
	}
	pthread_mutex_unlock(&q->lock);
	return t ? 0 : -ENOMEM;
}

void quota_get_limits(struct quota *q, const char *tenant, struct quota_limits *ret)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = q->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	*ret = t ? t->limits : q->defaults;
	pthread_mutex_unlock(&q->lock);
}

int quota_parse_tenant_line(const char *line, char tenant[QUOTA_TENANT_MAX + 1], struct quota_limits *inout, char *why,
			    size_t why_size)
{
	static const char *const keys[] = { "upload_quota", "upload_window", "max_execs_per_tenant", "cas_quota" };
	if (strnlen(line, QUOTA_LINE_MAX + 1) > QUOTA_LINE_MAX) {
		snprintf(why, why_size, "a tenant line is at most %d characters", QUOTA_LINE_MAX);
		return -EINVAL;
	}
	char copy[QUOTA_LINE_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", line);
	char *save = NULL, *word = strtok_r(copy, " \t", &save);
	if (!word || !cas_tenant_name_ok(word)) {
		snprintf(why, why_size, "'%.80s' does not start with a tenant name ([A-Za-z0-9._-], at most 64)", line);
		return -EINVAL;
	}
	snprintf(tenant, QUOTA_TENANT_MAX + 1, "%s", word);
	struct quota_limits l = *inout;
	bool seen[4] = { false };
	while ((word = strtok_r(NULL, " \t", &save))) {
		char *eq = strchr(word, '=');
		size_t k = 0;
		if (eq) {
			*eq = '\0';
			while (k < 4 && strcmp(word, keys[k]) != 0)
				k++;
		}
		if (!eq || k == 4) {
			snprintf(why, why_size, "tenant %s: '%.40s' is not one of upload_quota=, upload_window=, "
				 "max_execs_per_tenant=, cas_quota=", tenant, word);
			return -EINVAL;
		}
		if (seen[k]) {
			snprintf(why, why_size, "tenant %s: %s given twice", tenant, keys[k]);
			return -EINVAL;
		}
		seen[k] = true;
		const char *v = eq + 1;
		uint64_t u = 0;
		bool ok = k == 1 ? worker_config_parse_duration(v, &u) == 0 && u >= 1 && u <= 86400 :
			  config_parse_size(v, &u) == 0 && (k != 2 || u <= 65536);
		if (!ok) {
			snprintf(why, why_size, "tenant %s: %s '%.40s' is not %s", tenant, keys[k], v,
				 k == 1 ? "a duration of 1s to 1 day" : k == 2 ? "a number up to 65536" : "a size (64M, 1G)");
			return -EINVAL;
		}
		if (k == 0)
			l.upload_bytes = u;
		else if (k == 1)
			l.upload_window_s = u;
		else if (k == 2)
			l.execs = (unsigned)u;
		else
			l.cas_bytes = u;
	}
	*inout = l;
	return 0;
}

void quota_format_size(uint64_t n, char *out, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	if (n < 1024) {
		snprintf(out, size, "%" PRIu64 " bytes", n);
		return;
	}
	double v = (double)n / 1024;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (v == (double)(uint64_t)v)
		snprintf(out, size, "%" PRIu64 " %s", (uint64_t)v, units[u]);
	else
		snprintf(out, size, "%.1f %s", v, units[u]);
}

/* Counts and logs a refusal; with the lock held. */
static void refused_locked(struct quota *q, enum quota_kind kind, const char *msg)
{
	q->stats.refused[kind]++;
	struct log_limiter *l = &q->log[kind];
	int64_t now = mono_ms();
	if (now - l->period_start_ms >= LOG_PERIOD_MS) {
		l->period_start_ms = now;
		l->lines = 0;
	}
	if (l->lines >= LOG_BURST) {
		l->suppressed++;
		return;
	}
	l->lines++;
	if (l->suppressed)
		log_warn("refused: %s (and %" PRIu64 " %s refusals not logged before this one)", msg, l->suppressed,
			 kind_names[kind]);
	else
		log_warn("refused: %s", msg);
	l->suppressed = 0;
}

void quota_refused(struct quota *q, enum quota_kind kind, const struct error *err)
{
	if (kind >= QUOTA_N)
		return;
	pthread_mutex_lock(&q->lock);
	refused_locked(q, kind, err && err->msg[0] ? err->msg : quota_kind_name(kind));
	pthread_mutex_unlock(&q->lock);
}

static int too_many_tenants(struct quota *q, enum quota_kind kind, const char *tenant, struct error *err)
{
	error_set(err, -EDQUOT, "tenant %s: this worker tracks at most %d tenants; retry later or on another worker",
		  tenant, QUOTA_MAX_TENANTS);
	refused_locked(q, kind, err->msg);
	return -EDQUOT;
}

int quota_upload_charge(struct quota *q, const char *tenant, uint64_t n, int64_t now_ms, struct error *err)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = tenant_locked(q, tenant, now_ms);
	if (!t) {
		int r = too_many_tenants(q, QUOTA_UPLOAD, tenant, err);
		pthread_mutex_unlock(&q->lock);
		return r;
	}
	const struct quota_limits *l = &t->limits;
	int64_t window_ms = (int64_t)l->upload_window_s * 1000;
	if (t->window_start_ms < 0 || now_ms - t->window_start_ms >= window_ms || now_ms < t->window_start_ms) {
		t->window_start_ms = now_ms;
		t->window_used = 0;
	}
	int r = 0;
	if (l->upload_bytes && (n > l->upload_bytes || t->window_used + n > l->upload_bytes)) {
		char limit[32], size[32];
		quota_format_size(l->upload_bytes, limit, sizeof(limit));
		if (n > l->upload_bytes) {
			quota_format_size(n, size, sizeof(size));
			error_set(err, -EDQUOT, "tenant %s: upload quota %s per %" PRIu64 " s reached: a blob of %s "
				  "never fits; compile it locally", tenant, limit, l->upload_window_s, size);
		} else {
			int64_t left_ms = t->window_start_ms + window_ms - now_ms;
			error_set(err, -EDQUOT, "tenant %s: upload quota %s per %" PRIu64 " s reached; retry in %lld s",
				  tenant, limit, l->upload_window_s, (long long)((left_ms + 999) / 1000));
		}
		refused_locked(q, QUOTA_UPLOAD, err->msg);
		r = -EDQUOT;
	} else {
		t->window_used += n;
		q->stats.uploaded += n;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void quota_upload_refund(struct quota *q, const char *tenant, uint64_t n, int64_t charged_ms)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = q->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	/* Only into the window it was charged to: a new window starts empty. */
	if (t && t->window_start_ms >= 0 && charged_ms >= t->window_start_ms) {
		t->window_used = t->window_used > n ? t->window_used - n : 0;
		q->stats.uploaded = q->stats.uploaded > n ? q->stats.uploaded - n : 0;
	}
	pthread_mutex_unlock(&q->lock);
}

int quota_exec_acquire(struct quota *q, const char *tenant, struct error *err)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = tenant_locked(q, tenant, mono_ms());
	int r = 0;
	if (!t)
		r = too_many_tenants(q, QUOTA_EXECS, tenant, err);
	else if (t->limits.execs && t->execs >= t->limits.execs) {
		error_set(err, -EDQUOT, "tenant %s: exec quota %u compiles at once reached; retry when one ends, "
			  "in a second or so", tenant, t->limits.execs);
		refused_locked(q, QUOTA_EXECS, err->msg);
		r = -EDQUOT;
	} else
		t->execs++;
	pthread_mutex_unlock(&q->lock);
	return r;
}

void quota_exec_release(struct quota *q, const char *tenant)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = q->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	/* A release without an acquire is a bug; never wrap around. */
	if (t && t->execs > 0)
		t->execs--;
	pthread_mutex_unlock(&q->lock);
}

unsigned quota_exec_running(struct quota *q, const char *tenant)
{
	pthread_mutex_lock(&q->lock);
	struct tenant_quota *t = q->tenants;
	while (t && strcmp(t->name, tenant) != 0)
		t = t->next;
	unsigned n = t ? t->execs : 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}

uint64_t quota_cas_cap(struct quota *q, const char *tenant)
{
	struct quota_limits l;
	quota_get_limits(q, tenant, &l);
	return l.cas_bytes;
}

void quota_get_stats(struct quota *q, struct quota_stats *ret)
{
	pthread_mutex_lock(&q->lock);
	*ret = q->stats;
	pthread_mutex_unlock(&q->lock);
}
