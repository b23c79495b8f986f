/*
 * Audit log writer and search (see audit.h). A row is built and escaped
 * outside the lock; under the lock it gets its seq and the previous row's
 * hash and is written with one write() to current.tsv (O_APPEND). Then the
 * appender waits until an fdatasync covers its row: the first waiter
 * becomes the leader and syncs outside the lock for everyone written so
 * far, the others wait on a condition variable (group commit), so N
 * concurrent compiles cost about one sync, not N. A row whose write fails
 * is cut off again; a failed sync cuts everything not yet synced and makes
 * the log refuse further rows, since after a failed fsync the kernel may
 * have dropped the dirty pages and a retry proves nothing.
 *
 * Rotation happens inside append, under the lock, before the row that
 * would make current.tsv too large (or when its first row is too old): a
 * seal line, fdatasync, chmod 0400, rename to segment-<first seq>.tsv,
 * directory fsync, a fresh current.tsv with the header. A crash anywhere in
 * between is finished by audit_open. Rotation first waits for a sync in
 * progress, and since every appender that found the file full during that
 * sync waits too, each decides again afterwards: the first one rotates, the
 * others find a fresh current.tsv and append to it.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "digest.h"
#include "fs.h"
#include "log.h"
#include "macro.h"

struct audit_log {
	char *dir;
	int fd;                    /* current.tsv */
	pthread_mutex_t lock;
	pthread_cond_t synced_cond;
	struct audit_options o;
	uint64_t seq;              /* the last row's seq (0: no row yet) */
	char prev[DIGEST_HEX_LEN + 1];  /* its hash */
	off_t size;                /* of current.tsv */
	uint64_t seg_first_seq;    /* current.tsv's first row (0: none) */
	int64_t seg_first_us;      /* its time */
	uint64_t synced_seq;       /* rows up to this seq are durable */
	off_t synced_size;         /* current.tsv's size when they were */
	bool syncing;              /* a leader is in fdatasync */
	struct audit_stats stats;  /* rows, syncs, time spent appending */
	int failed;                /* a failed sync: every append fails */
};

/* What follows a row's body: seq (at most 20 digits), a tab, the hash and
 * the newline. */
enum { ROW_TAIL_MAX = 20 + 1 + DIGEST_HEX_LEN + 1 };

static int64_t clock_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_us(const struct audit_log *l)
{
	return l->o.now_us ? l->o.now_us() : clock_now_us();
}

/* The time column's value back in microseconds; -1 if it does not parse. */
static int64_t parse_time_us(const char *s)
{
	struct tm tm = { 0 };
	long usec = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6ldZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec, &usec) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t == (time_t)-1 ? -1 : (int64_t)t * 1000000 + usec;
}

static char *in_dir(const struct audit_log *l, const char *name)
{
	return path_join(l->dir, name);
}

/*
 * The last complete line of the file (without its newline), malloc'd, or
 * NULL for a file without one. With cut, a torn tail after the last
 * newline is truncated first (a crash during a write).
 */
static int read_last_line(int fd, bool cut, char **ret_line, size_t *ret_len, off_t *ret_size)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	size_t want = st.st_size > 2 * AUDIT_ROW_MAX + 2 ? 2 * AUDIT_ROW_MAX + 2 : (size_t)st.st_size;
	_cleanup_free_ char *tail = malloc(want + 1);
	if (!tail)
		return -ENOMEM;
	off_t base = st.st_size - (off_t)want;
	ssize_t n = pread(fd, tail, want, base);
	if (n != (ssize_t)want)
		return n < 0 ? -errno : -EIO;
	size_t end = want;
	while (end > 0 && tail[end - 1] != '\n')
		end--;
	if (end != want) {
		if (!cut)
			return -EBADMSG;
		if (ftruncate(fd, base + (off_t)end) < 0)
			return -errno;
		log_warn("audit log: cut a torn last line (%zu bytes) left by a crash", want - end);
	}
	*ret_size = base + (off_t)end;
	if (end == 0) {
		*ret_line = NULL;
		*ret_len = 0;
		return base == 0 ? 0 : -EFBIG;
	}
	size_t start = end - 1;
	while (start > 0 && tail[start - 1] != '\n')
		start--;
	if (start == 0 && base != 0)
		return -EFBIG; /* a line longer than a row can be */
	*ret_line = strndup(tail + start, end - 1 - start);
	*ret_len = end - 1 - start;
	return *ret_line ? 0 : -ENOMEM;
}

/* The newest sealed segment's last seq and hash (0 and zeros without one). */
static int recover_from_segments(struct audit_log *l, struct error *err)
{
	l->seq = 0;
	memset(l->prev, '0', DIGEST_HEX_LEN);
	l->prev[DIGEST_HEX_LEN] = '\0';
	_cleanup_free_ uint64_t *seqs = NULL;
	size_t n = 0;
	bool current;
	int r = audit_list_segments(l->dir, &seqs, &n, &current);
	if (r < 0)
		return error_set(err, r, "audit log %s: %s", l->dir, strerror(-r));
	if (!n)
		return 0;
	char name[AUDIT_SEGMENT_NAME_MAX];
	audit_segment_name(seqs[n - 1], name);
	_cleanup_free_ char *path = in_dir(l, name);
	_cleanup_close_ int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd < 0)
		return error_set(err, path ? -errno : -ENOMEM, "audit log %s: %s", name, strerror(path ? errno : ENOMEM));
	_cleanup_free_ char *line = NULL;
	size_t len = 0;
	off_t size;
	r = read_last_line(fd, false, &line, &len, &size);
	struct audit_seal seal;
	if (r < 0 || !line || audit_seal_parse(line, len, &seal) < 0)
		return error_set(err, r < 0 ? r : -EBADMSG, "audit log %s/%s does not end with a seal line; "
				 "run hpcc audit verify %s", l->dir, name, l->dir);
	l->seq = seal.last_seq;
	memcpy(l->prev, seal.last_hash, sizeof(l->prev));
	return 0;
}

static int write_header(int fd)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, 4096);
	int r = buf_printf(&b, "%s\n", audit_header_line());
	if (r == 0)
		r = fs_write_all(fd, b.data, b.len);
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	return r;
}

/* A current.tsv that ends with its seal: the rename that a crash
 * interrupted, done now. */
static int finish_sealed(struct audit_log *l, int fd, const struct audit_seal *seal, const char *cur, struct error *err)
{
	if (seal->first_seq == 0 || seal->first_seq > AUDIT_SEGMENT_SEQ_MAX)
		return error_set(err, -EBADMSG, "audit log %s: its seal's first_seq %llu cannot name a segment", cur,
				 (unsigned long long)seal->first_seq);
	char name[AUDIT_SEGMENT_NAME_MAX];
	audit_segment_name(seal->first_seq, name);
	_cleanup_free_ char *path = in_dir(l, name);
	if (!path)
		return error_set(err, -ENOMEM, "out of memory");
	if (fchmod(fd, 0400) < 0 || rename(cur, path) < 0)
		return error_set(err, -errno, "audit log: cannot finish sealing %s: %s", path, strerror(errno));
	int r = fs_fsync_dir(l->dir);
	if (r < 0)
		return error_set(err, r, "audit log: fsync %s: %s", l->dir, strerror(-r));
	log_info("audit log: finished sealing %s after a crash", name);
	return 0;
}

/* Opens current.tsv, recovering from a crash, and sets the chain state. */
static int open_current(struct audit_log *l, struct error *err)
{
	_cleanup_free_ char *cur = in_dir(l, AUDIT_CURRENT_NAME);
	if (!cur)
		return error_set(err, -ENOMEM, "out of memory");
	const char *hdr = audit_header_line();
	size_t hlen = strlen(hdr);
	for (int attempt = 0; attempt < 2; attempt++) {
		_cleanup_close_ int fd = open(cur, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		bool read_only = false;
		if (fd < 0 && errno == EACCES) {
			/* Sealed (chmod 0400) but not yet renamed. */
			fd = open(cur, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			read_only = true;
		}
		if (fd < 0)
			return error_set(err, -errno, "cannot open the audit log %s: %s", cur, strerror(errno));
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			return error_set(err, -EINVAL, "audit log %s is not a regular file", cur);
		char head[512];
		size_t n = st.st_size < (off_t)(hlen + 1) ? (size_t)st.st_size : hlen + 1;
		if (pread(fd, head, n, 0) != (ssize_t)n)
			return error_set(err, -EIO, "cannot read the audit log %s", cur);
		if (memcmp(head, hdr, n < hlen ? n : hlen) != 0 || (n == hlen + 1 && head[hlen] != '\n'))
			return error_set(err, -EBADMSG, "audit log %s does not start with the v2 header line", cur);
		if (n < hlen + 1) {
			/* Empty, or a crash while the header was written. */
			if (read_only || ftruncate(fd, 0) < 0 || write_header(fd) < 0 || fs_fsync_dir(l->dir) < 0)
				return error_set(err, -EIO, "cannot write the header of the audit log %s", cur);
			l->size = (off_t)hlen + 1;
			l->seg_first_seq = 0;
			l->fd = TAKE_FD(fd);
			return recover_from_segments(l, err);
		}
		_cleanup_free_ char *line = NULL;
		size_t len = 0;
		off_t size = 0;
		int r = read_last_line(fd, !read_only, &line, &len, &size);
		if (r < 0)
			return error_set(err, r, "cannot read the end of the audit log %s: %s", cur, strerror(-r));
		struct audit_seal seal;
		if (audit_seal_parse(line, len, &seal) == 0) {
			if ((r = finish_sealed(l, fd, &seal, cur, err)) < 0)
				return r;
			continue;   /* and create a fresh current.tsv */
		}
		if (read_only)
			return error_set(err, -EACCES, "audit log %s is read-only but not sealed", cur);
		l->size = size;
		if (size == (off_t)hlen + 1) {
			l->seg_first_seq = 0;
			l->fd = TAKE_FD(fd);
			return recover_from_segments(l, err);
		}
		struct audit_parsed last, first;
		struct error e = { 0 };
		if (audit_parse_row(line, len, &last, &e) < 0)
			return error_set(err, -EBADMSG, "the last row of the audit log %s is not valid (%s); run hpcc audit "
					 "verify %s", cur, e.msg, l->dir);
		l->seq = last.seq;
		memcpy(l->prev, last.hash, sizeof(l->prev));
		audit_parsed_free(&last);
		/* current.tsv's first row says when it is due for rotation. */
		size_t want = (size_t)(size - (off_t)hlen - 1) < AUDIT_ROW_MAX + 1 ? (size_t)(size - (off_t)hlen - 1) :
			      AUDIT_ROW_MAX + 1;
		_cleanup_free_ char *row = malloc(want);
		if (!row)
			return error_set(err, -ENOMEM, "out of memory");
		if (pread(fd, row, want, (off_t)hlen + 1) != (ssize_t)want)
			return error_set(err, -EIO, "cannot read the audit log %s", cur);
		char *nl = memchr(row, '\n', want);
		if (nl && audit_parse_row(row, (size_t)(nl - row), &first, &e) == 0) {
			l->seg_first_seq = first.seq;
			l->seg_first_us = parse_time_us(first.col[AUDIT_COL_TIME]);
			audit_parsed_free(&first);
		} else {
			l->seg_first_seq = l->seq;
			l->seg_first_us = now_us(l);
		}
		l->fd = TAKE_FD(fd);
		return 0;
	}
	return error_set(err, -EIO, "audit log %s: sealed again at once", cur);
}

int audit_open(const char *dir, const struct audit_options *o, struct audit_log **ret, struct error *err)
{
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return error_set(err, r, "cannot create the audit directory %s: %s", dir, strerror(-r));
	struct audit_log *l = calloc(1, sizeof(*l));
	if (!l || !(l->dir = strdup(dir))) {
		free(l);
		return error_set(err, -ENOMEM, "out of memory");
	}
	l->fd = -1;
	if (o)
		l->o = *o;
	if (!l->o.segment_size)
		l->o.segment_size = AUDIT_SEGMENT_SIZE_DEFAULT;
	if (l->o.segment_age_s <= 0)
		l->o.segment_age_s = AUDIT_SEGMENT_AGE_DEFAULT;
	if ((r = open_current(l, err)) < 0) {
		if (l->fd >= 0)
			close(l->fd);
		free(l->dir);
		free(l);
		return r;
	}
	l->synced_seq = l->seq;
	l->synced_size = l->size;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->synced_cond, NULL);
	*ret = l;
	return 0;
}

/* Whether current.tsv must be sealed before a row of body bytes written
 * at when: it has a row, and the row would make it too big or its first
 * row is too old. */
static bool rotation_due(const struct audit_log *l, size_t body, int64_t when)
{
	bool too_big = (uint64_t)l->size + body + ROW_TAIL_MAX > l->o.segment_size;
	bool too_old = when - l->seg_first_us > l->o.segment_age_s * 1000000;
	return l->seg_first_seq && (too_big || too_old);
}

/* Seals current.tsv and starts the next one, if that is still due once no
 * leader is syncing the old descriptor; under the lock. */
static int rotate(struct audit_log *l, size_t body, int64_t when, struct error *err)
{
	while (l->syncing)
		pthread_cond_wait(&l->synced_cond, &l->lock);
	if (l->failed)
		return error_set(err, l->failed, "the audit log failed earlier: %s", strerror(-l->failed));
	/* Another appender may have rotated while we waited (and an empty
	 * current.tsv is never sealed: it has no first seq to be named by). */
	if (!rotation_due(l, body, when))
		return 0;
	if (l->seg_first_seq > AUDIT_SEGMENT_SEQ_MAX)
		return error_set(err, -EOVERFLOW, "the audit log %s reached seq %llu: a segment name holds 12 digits; "
				 "start a new log directory", l->dir, (unsigned long long)l->seg_first_seq);
	struct audit_seal seal = { .rows = l->seq - l->seg_first_seq + 1, .first_seq = l->seg_first_seq, .last_seq = l->seq };
	memcpy(seal.last_hash, l->prev, sizeof(seal.last_hash));
	_cleanup_buf_ struct buf b;
	buf_init(&b, 4096);
	int r = audit_seal_format(&seal, &b);
	if (r == 0)
		r = buf_append_char(&b, '\n');
	if (r == 0)
		r = fs_write_all(l->fd, b.data, b.len);
	if (r < 0) {
		if (ftruncate(l->fd, l->size) < 0)
			l->failed = r;
		return error_set(err, r, "sealing the audit log: %s", strerror(-r));
	}
	if (fdatasync(l->fd) < 0) {
		r = l->failed = -errno;
		if (ftruncate(l->fd, l->synced_size) < 0)
			log_error("audit log: cannot take back a failed seal: %s", strerror(errno));
		pthread_cond_broadcast(&l->synced_cond);
		return error_set(err, r, "sealing the audit log: fdatasync: %s", strerror(-r));
	}
	/* Every row written so far is durable now, whatever happens next: the
	 * appenders waiting for them succeed even if the rename fails. */
	l->synced_seq = l->seq;
	l->synced_size = l->size + (off_t)b.len;
	/* From here the file is sealed: a failure leaves it for audit_open to
	 * finish, and no row may follow the seal. */
	char name[AUDIT_SEGMENT_NAME_MAX];
	audit_segment_name(seal.first_seq, name);
	_cleanup_free_ char *cur = in_dir(l, AUDIT_CURRENT_NAME), *seg = in_dir(l, name);
	int fd = -1;
	if (!cur || !seg)
		r = -ENOMEM;
	else if (fchmod(l->fd, 0400) < 0 || rename(cur, seg) < 0)
		r = -errno;
	else if ((r = fs_fsync_dir(l->dir)) == 0) {
		fd = open(cur, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			r = -errno;
		else if ((r = write_header(fd)) == 0)
			r = fs_fsync_dir(l->dir);
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		l->failed = r;
		pthread_cond_broadcast(&l->synced_cond);   /* the seal's sync covered the waiters' rows */
		return error_set(err, r, "rotating the audit log %s: %s", l->dir, strerror(-r));
	}
	close(l->fd);
	l->fd = fd;
	l->size = (off_t)strlen(audit_header_line()) + 1;
	l->seg_first_seq = 0;
	l->synced_size = l->size;
	pthread_cond_broadcast(&l->synced_cond);   /* the seal's sync covered the waiters' rows */
	return 0;
}

/* Waits until an fdatasync covers seq: the first waiter syncs for all. */
static int wait_synced(struct audit_log *l, uint64_t seq)
{
	while (l->synced_seq < seq && !l->failed) {
		if (l->syncing) {
			pthread_cond_wait(&l->synced_cond, &l->lock);
			continue;
		}
		l->syncing = true;
		uint64_t target = l->seq;
		off_t target_size = l->size;
		int fd = l->fd;
		pthread_mutex_unlock(&l->lock);
		int r = fdatasync(fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&l->lock);
		l->syncing = false;
		l->stats.syncs++;
		if (r == 0 && target > l->synced_seq) {
			l->synced_seq = target;
			l->synced_size = target_size;
		} else if (r < 0) {
			l->failed = r;
			if (ftruncate(fd, l->synced_size) < 0)
				log_error("audit log: cannot take back rows after a failed fdatasync: %s", strerror(errno));
			log_error("audit log: fdatasync failed (%s); no more rows will be written", strerror(-r));
		}
		pthread_cond_broadcast(&l->synced_cond);
	}
	return l->synced_seq >= seq ? 0 : l->failed;
}

/* time..cache, each followed by a tab: the part of a row that needs no lock. */
static int format_body(const struct audit_row *row, int64_t when_us, struct buf *b)
{
	time_t secs = (time_t)(when_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	int r = buf_printf(b, "%s.%06ldZ\t", when, (long)(when_us % 1000000));
	const char *cols[] = { row->image, row->source_digest, row->flags, row->output_digest, row->tenant,
			       row->worker, row->vm };
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(cols); i++)
		if ((r = audit_escape_append(b, cols[i])) == 0)
			r = buf_append_char(b, '\t');
	if (r == 0)
		r = buf_printf(b, "%lld\t%d\t", (long long)row->duration_ms, row->exit_code);
	if (r == 0 && (r = audit_escape_append(b, row->action_digest)) == 0 && (r = buf_append_char(b, '\t')) == 0 &&
	    (r = audit_escape_append(b, row->cache)) == 0)
		r = buf_append_char(b, '\t');
	return r;
}

static int64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int audit_append(struct audit_log *l, const struct audit_row *row, char **ret_line, struct error *err)
{
	int64_t started = monotonic_us();
	_cleanup_buf_ struct buf b;
	buf_init(&b, AUDIT_ROW_MAX + 1);
	int64_t when = now_us(l);
	int r = format_body(row, when, &b);
	if (r < 0 || b.len + ROW_TAIL_MAX > AUDIT_ROW_MAX + 1)
		return error_set(err, -E2BIG, "an audit row over %d bytes", AUDIT_ROW_MAX);
	size_t body = b.len;
	pthread_mutex_lock(&l->lock);
	if (l->failed) {
		r = l->failed;
		pthread_mutex_unlock(&l->lock);
		return error_set(err, r, "the audit log failed earlier: %s", strerror(-r));
	}
	if (rotation_due(l, body, when) && (r = rotate(l, body, when, err)) < 0) {
		pthread_mutex_unlock(&l->lock);
		return r;
	}
	b.len = body;
	uint64_t seq = l->seq + 1;
	if ((r = buf_printf(&b, "%" PRIu64 "\t%s\n", seq, l->prev)) == 0)
		r = fs_write_all(l->fd, b.data, b.len);
	if (r < 0) {
		/* Taken back, so the chain never skips or tears a row that stays. */
		if (ftruncate(l->fd, l->size) < 0) {
			log_error("audit log: cannot take back a failed row: %s", strerror(errno));
			l->failed = r;
		}
		pthread_mutex_unlock(&l->lock);
		return error_set(err, r, "writing the audit log: %s", strerror(-r));
	}
	struct digest d;
	if (digest_bytes(b.data, b.len - 1, &d) < 0) {
		/* The row is in the file but its hash is unknown: nothing can follow. */
		l->failed = -ENOMEM;
		pthread_mutex_unlock(&l->lock);
		return error_set(err, -ENOMEM, "out of memory");
	}
	digest_to_hex(&d, l->prev);
	l->seq = seq;
	l->size += (off_t)b.len;
	if (!l->seg_first_seq) {
		l->seg_first_seq = seq;
		l->seg_first_us = when;
	}
	r = wait_synced(l, seq);
	l->stats.rows++;
	l->stats.append_us += (uint64_t)(monotonic_us() - started);
	pthread_mutex_unlock(&l->lock);
	if (r < 0)
		return error_set(err, r, "writing the audit log: fdatasync: %s", strerror(-r));
	if (ret_line) {
		b.data[b.len - 1] = '\0';
		*ret_line = buf_steal(&b);
	}
	return 0;
}

void audit_get_stats(struct audit_log *l, struct audit_stats *ret)
{
	pthread_mutex_lock(&l->lock);
	*ret = l->stats;
	pthread_mutex_unlock(&l->lock);
}

void audit_close(struct audit_log *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->synced_cond);
	free(l->dir);
	free(l);
}

/* ---- search ------------------------------------------------------------ */

/* The last max matches, oldest first, in a ring. */
struct matches {
	char **ring;
	size_t max, next, count;
};

static int matches_add(struct matches *m, const char *line, size_t len)
{
	m->count++;
	if (m->max == 0)
		return 0;
	char *copy = strndup(line, len);
	if (!copy)
		return -ENOMEM;
	free(m->ring[m->next]);
	m->ring[m->next] = copy;
	m->next = (m->next + 1) % m->max;
	return 0;
}

static int search_fd(int fd, const char *tenant, const char *prefix, struct matches *m)
{
	struct audit_reader rd;
	int r = audit_reader_init(&rd, fd);
	if (r < 0)
		return r;
	const char *line;
	size_t len;
	while ((r = audit_reader_next(&rd, &line, &len)) > 0) {
		if (!line || len == 0 || line[0] == '#')
			continue;
		struct audit_parsed p;
		if (audit_parse_row(line, len, &p, NULL) < 0)
			continue;
		bool hit = strcmp(p.col[AUDIT_COL_TENANT], tenant) == 0 && audit_row_matches(&p, prefix);
		audit_parsed_free(&p);
		if (hit && (r = matches_add(m, line, len)) < 0)
			break;
	}
	audit_reader_free(&rd);
	return r;
}

int audit_search(const char *dir, const char *tenant, const char *prefix, size_t max, struct strv *ret_lines,
		 bool *ret_truncated, struct error *err)
{
	if (!audit_prefix_valid(prefix))
		return error_set(err, -EINVAL, "'%.80s' is not a digest prefix of at least 4 hex digits", prefix);
	/* current.tsv first: if it is sealed and renamed while we list, the
	 * segment it became is recognised by its inode and read once. */
	_cleanup_free_ char *cur = path_join(dir, AUDIT_CURRENT_NAME);
	if (!cur)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_close_ int cur_fd = open(cur, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (cur_fd < 0 && errno != ENOENT)
		return error_set(err, -errno, "%s: %s", cur, strerror(errno));
	struct stat cur_st = { 0 };
	if (cur_fd >= 0 && fstat(cur_fd, &cur_st) < 0)
		return error_set(err, -errno, "%s: %s", cur, strerror(errno));
	_cleanup_free_ uint64_t *seqs = NULL;
	size_t n = 0;
	bool has_current;
	int r = audit_list_segments(dir, &seqs, &n, &has_current);
	if (r < 0)
		return error_set(err, r, "%s: %s", dir, strerror(-r));
	/* Only the newest segments: a search costs the same on a log of any age. */
	size_t from = n > AUDIT_SEARCH_SEGMENTS ? n - AUDIT_SEARCH_SEGMENTS : 0;
	struct matches m = { .max = max };
	if (max && !(m.ring = calloc(max, sizeof(*m.ring))))
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = from; r == 0 && i < n; i++) {
		char name[AUDIT_SEGMENT_NAME_MAX];
		audit_segment_name(seqs[i], name);
		_cleanup_free_ char *path = path_join(dir, name);
		_cleanup_close_ int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			continue;   /* gone since the listing */
		if (cur_fd >= 0 && st.st_ino == cur_st.st_ino && st.st_dev == cur_st.st_dev)
			continue;   /* read below, as current.tsv */
		r = search_fd(fd, tenant, prefix, &m);
	}
	if (r == 0 && cur_fd >= 0)
		r = search_fd(cur_fd, tenant, prefix, &m);
	_cleanup_strv_ struct strv lines = { 0 };
	size_t kept = m.count < max ? m.count : max;
	for (size_t i = 0; r == 0 && i < kept; i++) {
		size_t at = (m.next + max - kept + i) % max;
		r = strv_push_take(&lines, TAKE_PTR(m.ring[at]));
	}
	for (size_t i = 0; i < max; i++)
		free(m.ring[i]);
	free(m.ring);
	if (r < 0)
		return error_set(err, r, "searching the audit log %s: %s", dir, strerror(-r));
	*ret_lines = lines;
	lines = (struct strv){ 0 };
	*ret_truncated = m.count > max;
	return 0;
}
