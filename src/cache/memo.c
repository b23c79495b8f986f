/*
 * Stat-keyed digest memo (see memo.h): an open-addressing hash table keyed by
 * path, under one mutex. Lookups hold the lock only to copy an entry out;
 * the file is read and hashed outside the lock.
 */
#include "memo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

struct memo_entry {
	char *path;
	uint64_t hash;
	struct file_digest fd;
};

struct memo {
	pthread_mutex_t lock;
	struct memo_entry *slots;
	size_t n_slots;  /* power of two */
	size_t used;
	uint64_t hits, misses;
};

static uint64_t path_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h ? h : 1;
}

struct memo *memo_new(void)
{
	struct memo *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->n_slots = 4096;
	m->slots = calloc(m->n_slots, sizeof(*m->slots));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

static void memo_clear_slots(struct memo_entry *slots, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(slots[i].path);
}

void memo_free(struct memo *m)
{
	if (!m)
		return;
	memo_clear_slots(m->slots, m->n_slots);
	free(m->slots);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static struct memo_entry *memo_find(struct memo *m, const char *path, uint64_t h)
{
	size_t mask = m->n_slots - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct memo_entry *e = &m->slots[i];
		if (!e->path || (e->hash == h && strcmp(e->path, path) == 0))
			return e;
	}
}

static int memo_grow(struct memo *m)
{
	size_t n = m->n_slots * 2;
	struct memo_entry *slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	struct memo_entry *old = m->slots;
	size_t old_n = m->n_slots;
	m->slots = slots;
	m->n_slots = n;
	for (size_t i = 0; i < old_n; i++)
		if (old[i].path)
			*memo_find(m, old[i].path, old[i].hash) = old[i];
	free(old);
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static bool too_recent(const struct stat *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	/* Within the last second (or in the future, after a clock step). */
	return st->st_mtim.tv_sec >= now.tv_sec - 1 || st->st_ctim.tv_sec >= now.tv_sec - 1;
}

int memo_digest(struct memo *m, const char *path, struct file_digest *ret)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	uint64_t h = path_hash(path);
	if (stat(path, &st) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode))
		return -EISDIR;
	if (m) {
		pthread_mutex_lock(&m->lock);
		struct memo_entry *e = memo_find(m, path, h);
		bool hit = e->path && same_file(&e->fd.st, &st);
		if (hit) {
			*ret = e->fd;
			m->hits++;
		} else
			m->misses++;
		pthread_mutex_unlock(&m->lock);
		if (hit)
			return 0;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return negative_errno();
	struct stat st2;
	if (fstat(fd, &st2) < 0)
		return negative_errno();
	if (!S_ISREG(st2.st_mode))
		return -EISDIR;
	struct file_scan scan;
	struct file_digest out = { .st = st2 };
	int r = digest_fd(fd, MEMO_MAX_FILE_SIZE, &out.digest, &scan);
	if (r < 0)
		return r;
	out.time_macros = scan.time_macros;
	out.timestamp_macro = scan.timestamp_macro;
	/* A file that changed while we read it gets no memo entry. */
	struct stat st3;
	bool stable = fstat(fd, &st3) == 0 && same_file(&st2, &st3);
	if (m && stable && !too_recent(&st2)) {
		pthread_mutex_lock(&m->lock);
		if (m->used >= MEMO_MAX_ENTRIES) {
			/* Bounded: start over rather than track recency. */
			memo_clear_slots(m->slots, m->n_slots);
			memset(m->slots, 0, m->n_slots * sizeof(*m->slots));
			m->used = 0;
		}
		if (m->used * 2 >= m->n_slots)
			(void)memo_grow(m);
		struct memo_entry *e = memo_find(m, path, h);
		if (m->used * 2 < m->n_slots || e->path) {
			if (!e->path) {
				e->path = strdup(path);
				if (e->path) {
					e->hash = h;
					m->used++;
				}
			}
			if (e->path)
				e->fd = out;
		}
		pthread_mutex_unlock(&m->lock);
	}
	*ret = out;
	return 0;
}

void memo_counters(struct memo *m, uint64_t *ret_hits, uint64_t *ret_misses, uint64_t *ret_entries)
{
	pthread_mutex_lock(&m->lock);
	*ret_hits = m->hits;
	*ret_misses = m->misses;
	*ret_entries = m->used;
	pthread_mutex_unlock(&m->lock);
}
