/*
 * Audit log writer (see audit.h). Rows are built in memory, escaped, and
 * written with one write() under a mutex on an O_APPEND descriptor, then
 * fdatasync'ed; the hash of each row (its bytes without the newline)
 * becomes the next row's prev_row_hash. On open, the last row's hash is
 * recomputed from the file's tail, so a restarted worker continues the
 * chain. A torn last line (a crash during write) is cut off first.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
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
	int fd;
	pthread_mutex_t lock;
	char prev[DIGEST_HEX_LEN + 1];
};

static int append_escaped(struct buf *b, const char *s)
{
	if (!s || !*s)
		return buf_append_char(b, '-');
	int r = 0;
	for (; r == 0 && *s; s++) {
		switch (*s) {
		case '\\': r = buf_append_str(b, "\\\\"); break;
		case '\t': r = buf_append_str(b, "\\t"); break;
		case '\n': r = buf_append_str(b, "\\n"); break;
		case '\r': r = buf_append_str(b, "\\r"); break;
		default:
			if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
				r = buf_printf(b, "\\x%02x", (unsigned char)*s);
			else
				r = buf_append_char(b, *s);
		}
	}
	return r;
}

/* Finds the last complete row, truncating a torn tail, and hashes it. */
static int load_tail(int fd, char prev[DIGEST_HEX_LEN + 1])
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	memset(prev, '0', DIGEST_HEX_LEN);
	prev[DIGEST_HEX_LEN] = '\0';
	if (st.st_size == 0)
		return 0;
	size_t want = st.st_size > 2 * AUDIT_ROW_MAX ? 2 * AUDIT_ROW_MAX : (size_t)st.st_size;
	_cleanup_free_ char *tail = malloc(want);
	if (!tail)
		return -ENOMEM;
	off_t base = st.st_size - (off_t)want;
	ssize_t n = pread(fd, tail, want, base);
	if (n != (ssize_t)want)
		return n < 0 ? -errno : -EIO;
	size_t end = want;
	while (end > 0 && tail[end - 1] != '\n')
		end--;
	if (end != want && ftruncate(fd, base + (off_t)end) < 0)
		return -errno;
	if (end == 0)
		return base == 0 ? 0 : -EINVAL;
	size_t start = end - 1;
	while (start > 0 && tail[start - 1] != '\n')
		start--;
	if (start == 0 && base != 0)
		return -EINVAL; /* a row longer than the cap */
	struct digest d;
	if (digest_bytes(tail + start, end - 1 - start, &d) < 0)
		return -ENOMEM;
	digest_to_hex(&d, prev);
	return 0;
}

int audit_open(const char *path, struct audit_log **ret, struct error *err)
{
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return error_set(err, -errno, "cannot open the audit log %s: %s", path, strerror(errno));
	struct audit_log *l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return error_set(err, -ENOMEM, "out of memory");
	}
	int r = load_tail(fd, l->prev);
	if (r < 0) {
		close(fd);
		free(l);
		return error_set(err, r, "cannot read the end of the audit log %s: %s", path, strerror(-r));
	}
	l->fd = fd;
	pthread_mutex_init(&l->lock, NULL);
	*ret = l;
	return 0;
}

int audit_append(struct audit_log *l, const struct audit_row *row, struct error *err)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, AUDIT_ROW_MAX);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	int r = buf_printf(&b, "%s.%06ldZ\t", when, ts.tv_nsec / 1000);
	const char *cols[] = { row->image, row->source_digest, row->flags, row->output_digest, row->tenant,
			       row->worker, row->vm };
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(cols); i++)
		if ((r = append_escaped(&b, cols[i])) == 0)
			r = buf_append_char(&b, '\t');
	if (r == 0)
		r = buf_printf(&b, "%lld\t%d\t", (long long)row->duration_ms, row->exit_code);
	if (r == 0 && (r = append_escaped(&b, row->action_digest)) == 0 && (r = buf_append_char(&b, '\t')) == 0 &&
	    (r = append_escaped(&b, row->cache)) == 0)
		r = buf_append_char(&b, '\t');
	if (r < 0)
		return error_set(err, -E2BIG, "an audit row over %d bytes", AUDIT_ROW_MAX);
	pthread_mutex_lock(&l->lock);
	size_t body = b.len + DIGEST_HEX_LEN;
	if ((r = buf_append(&b, l->prev, DIGEST_HEX_LEN)) == 0)
		r = buf_append_char(&b, '\n');
	/* A row that is not wholly written and synced is taken back, so the
	 * chain never skips or tears a row that stays in the file. */
	struct stat st = { .st_size = -1 };
	if (r == 0 && fstat(l->fd, &st) < 0)
		r = -errno;
	if (r == 0)
		r = fs_write_all(l->fd, b.data, b.len);
	if (r == 0 && fdatasync(l->fd) < 0)
		r = -errno;
	if (r < 0 && st.st_size >= 0 && ftruncate(l->fd, st.st_size) < 0)
		log_error("audit log: cannot take back a failed row: %s", strerror(errno));
	if (r == 0) {
		struct digest d;
		if (digest_bytes(b.data, body, &d) == 0)
			digest_to_hex(&d, l->prev);
		else
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&l->lock);
	return r < 0 ? error_set(err, r, "writing the audit log: %s", strerror(-r)) : 0;
}

void audit_close(struct audit_log *l)
{
	if (!l)
		return;
	close(l->fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
