/*
 * Statistics file (see stats.h). The file is small text, rewritten through a
 * rename while an flock on a separate lock file is held; a damaged line is
 * skipped rather than fatal, since counters must never break a build.
 */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "fs.h"

/* Our own file holds one short line per counter, ~1.5 KiB. */
#define STATS_MAX_FILE_SIZE (64 * 1024)

static const char *const names[STAT_N] = {
	[STAT_DIRECT_HIT] = "direct_hit",
	[STAT_MISS] = "miss",
	[STAT_MERGED] = "merged_inflight",
#define X(name, str) [STAT_UNCACHEABLE_##name] = "uncacheable." str,
	ARGS_REASON_LIST(X)
	STATS_UNCACHEABLE_EXTRA(X)
#undef X
#define X(name, str) [STAT_FALLBACK_##name] = "fallback." str,
	STATS_FALLBACK_LIST(X)
#undef X
	[STAT_REMOTE_HIT] = "remote.hit",
	[STAT_REMOTE_EXECUTED] = "remote.executed",
	[STAT_REMOTE_COMPILE_FAILED] = "remote.compile_failed",
	[STAT_REMOTE_LOCAL_ONLY] = "remote.local_only",
	[STAT_REMOTE_BLOBS_UPLOADED] = "remote.blobs_uploaded",
	[STAT_REMOTE_BYTES_UPLOADED] = "remote.bytes_uploaded",
	[STAT_CORRUPT_ENTRIES] = "corrupt_entries",
	[STAT_FILES_STORED] = "files_stored",
	[STAT_EVICTED_FILES] = "evicted_files",
	[STAT_CLEANUPS] = "cleanups",
	[STAT_CACHE_SIZE] = "cache_size",
	[STAT_CACHE_FILES] = "cache_files",
};

const char *stats_name(enum stat_counter c) { return c < STAT_N ? names[c] : "?"; }

bool stats_is_empty(const struct stats *s)
{
	for (int i = 0; i < STAT_N; i++)
		if (s->v[i])
			return false;
	return true;
}

static void stats_parse(const char *text, struct stats *ret)
{
	*ret = (struct stats){ 0 };
	const char *p = text;
	while (*p) {
		const char *eol = strchrnul(p, '\n');
		char line[256];
		size_t n = (size_t)(eol - p);
		if (n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			char *sp = strchr(line, ' ');
			if (sp) {
				*sp = '\0';
				char *end;
				errno = 0;
				long long v = strtoll(sp + 1, &end, 10);
				if (!errno && *end == '\0')
					for (int i = 0; i < STAT_N; i++)
						if (strcmp(names[i], line) == 0)
							ret->v[i] = v;
			}
		}
		p = *eol ? eol + 1 : eol;
	}
}

int stats_read_file(const char *path, struct stats *ret)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, STATS_MAX_FILE_SIZE + 1);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT) {
		*ret = (struct stats){ 0 };
		return 0;
	}
	if (fd < 0)
		return negative_errno();
	int r = fs_read_fd(fd, STATS_MAX_FILE_SIZE, &b);
	if (r == -EFBIG) {
		/* Far larger than any stats file we write: something appended
		 * to it. Keep the complete lines that fit, like any other damage;
		 * the next update rewrites the file at its normal size. */
		char *nl = b.data ? memrchr(b.data, '\n', b.len) : NULL;
		b.len = nl ? (size_t)(nl - b.data) : 0;
		r = 0;
	}
	if (r < 0)
		return r;
	/* Terminate here: fs_read_fd leaves an empty file's buffer
	 * unterminated, and the cut above moved the end. */
	if (b.data)
		b.data[b.len] = '\0';
	stats_parse(b.data ? b.data : "", ret);
	return 0;
}

static int stats_update(const char *path, const struct stats *delta, bool zero)
{
	_cleanup_free_ char *lock_path = NULL;
	if (asprintf(&lock_path, "%s.lock", path) < 0)
		return -ENOMEM;
	_cleanup_close_ int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0)
		return negative_errno();
	if (flock(lock, LOCK_EX) < 0)
		return negative_errno();
	struct stats cur;
	int r = stats_read_file(path, &cur);
	if (r < 0)
		return r;
	for (int i = 0; i < STAT_N; i++) {
		if (zero && i != STAT_CACHE_SIZE && i != STAT_CACHE_FILES)
			cur.v[i] = 0;
		/* A damaged file may hold values near the limits: saturate
		 * instead of overflowing. */
		if (delta && __builtin_add_overflow(cur.v[i], delta->v[i], &cur.v[i]))
			cur.v[i] = delta->v[i] > 0 ? INT64_MAX : 0;
		if (cur.v[i] < 0)
			cur.v[i] = 0;
	}
	_cleanup_buf_ struct buf out;
	buf_init(&out, 64 * 1024);
	for (int i = 0; i < STAT_N; i++)
		if ((r = buf_printf(&out, "%s %" PRId64 "\n", names[i], cur.v[i])) < 0)
			return r;
	return fs_write_atomic(path, out.data, out.len, 0644, false);
}

int stats_add_file(const char *path, const struct stats *delta)
{
	if (stats_is_empty(delta))
		return 0;
	return stats_update(path, delta, false);
}

int stats_zero_file(const char *path) { return stats_update(path, NULL, true); }

static void human_size(uint64_t v, char *out, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)v;
	size_t u = 0;
	while (d >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		d /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

int stats_format(const struct stats *s, bool json, uint64_t max_size, const char *dir, struct buf *out)
{
	const int64_t *v = s->v;
	int64_t uncacheable = 0, fallback = 0;
	for (int i = STAT_FIRST_UNCACHEABLE; i <= STAT_LAST_UNCACHEABLE; i++)
		uncacheable += v[i];
	for (int i = STAT_FIRST_FALLBACK; i <= STAT_LAST_FALLBACK; i++)
		fallback += v[i];
	int64_t hits = v[STAT_DIRECT_HIT] + v[STAT_REMOTE_HIT];
	int64_t lookups = hits + v[STAT_MISS];
	double rate = lookups ? 100.0 * (double)hits / (double)lookups : 0.0;
	if (json) {
		buf_printf(out, "{\n  \"cache_dir\": \"");
		for (const char *p = dir; *p; p++) {
			if (*p == '"' || *p == '\\')
				buf_append_char(out, '\\');
			if ((unsigned char)*p >= 0x20)
				buf_append_char(out, *p);
		}
		buf_printf(out, "\",\n  \"max_size\": %" PRIu64 ",\n  \"hit_rate\": %.2f,\n", max_size, rate);
		buf_printf(out, "  \"uncacheable\": %" PRId64 ",\n  \"fallback\": %" PRId64, uncacheable, fallback);
		for (int i = 0; i < STAT_N; i++)
			buf_printf(out, ",\n  \"%s\": %" PRId64, names[i], v[i]);
		return buf_printf(out, "\n}\n");
	}
	char size[32], max[32];
	human_size((uint64_t)v[STAT_CACHE_SIZE], size, sizeof(size));
	human_size(max_size, max, sizeof(max));
	buf_printf(out, "Cache directory                %s\n", dir);
	buf_printf(out, "Cacheable calls                %" PRId64 "\n", lookups);
	buf_printf(out, "  Hits                         %" PRId64 " (%.1f %%)\n", hits, rate);
	if (v[STAT_REMOTE_HIT])
		buf_printf(out, "    local / remote             %" PRId64 " / %" PRId64 "\n", v[STAT_DIRECT_HIT],
			   v[STAT_REMOTE_HIT]);
	buf_printf(out, "  Misses                       %" PRId64 "\n", v[STAT_MISS]);
	if (v[STAT_REMOTE_EXECUTED] || v[STAT_REMOTE_COMPILE_FAILED])
		buf_printf(out, "    compiled remotely          %" PRId64 "\n", v[STAT_REMOTE_EXECUTED]);
	if (v[STAT_REMOTE_BLOBS_UPLOADED])
		buf_printf(out, "Remote uploads                 %" PRId64 " blobs, %" PRId64 " bytes\n",
			   v[STAT_REMOTE_BLOBS_UPLOADED], v[STAT_REMOTE_BYTES_UPLOADED]);
	if (v[STAT_REMOTE_COMPILE_FAILED])
		buf_printf(out, "Remote compile failures        %" PRId64 " (compiled again locally)\n",
			   v[STAT_REMOTE_COMPILE_FAILED]);
	if (v[STAT_REMOTE_LOCAL_ONLY])
		buf_printf(out, "Not remote-able (local)        %" PRId64 "\n", v[STAT_REMOTE_LOCAL_ONLY]);
	if (v[STAT_MERGED])
		buf_printf(out, "  Merged with in-flight        %" PRId64 "\n", v[STAT_MERGED]);
	buf_printf(out, "Uncacheable calls              %" PRId64 "\n", uncacheable);
	for (int i = STAT_FIRST_UNCACHEABLE; i <= STAT_LAST_UNCACHEABLE; i++)
		if (v[i])
			buf_printf(out, "  %-28s %" PRId64 "\n", names[i] + strlen("uncacheable."), v[i]);
	buf_printf(out, "Fallbacks (hpcc errors)        %" PRId64 "\n", fallback);
	for (int i = STAT_FIRST_FALLBACK; i <= STAT_LAST_FALLBACK; i++)
		if (v[i])
			buf_printf(out, "  %-28s %" PRId64 "\n", names[i] + strlen("fallback."), v[i]);
	if (v[STAT_CORRUPT_ENTRIES])
		buf_printf(out, "Corrupt entries removed        %" PRId64 "\n", v[STAT_CORRUPT_ENTRIES]);
	buf_printf(out, "Files stored                   %" PRId64 "\n", v[STAT_FILES_STORED]);
	if (v[STAT_CLEANUPS])
		buf_printf(out, "Cleanups                       %" PRId64 " (%" PRId64 " files evicted)\n",
			   v[STAT_CLEANUPS], v[STAT_EVICTED_FILES]);
	return buf_printf(out, "Cache size                     %s of %s (%" PRId64 " files)\n", size, max,
			  v[STAT_CACHE_FILES]);
}
