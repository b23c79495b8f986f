/*
 * Local store files (see store.h). The header is fixed-size and checked
 * before anything is decompressed; the payload digest is checked after, so a
 * bit flip anywhere in an entry is caught. Eviction scans the whole store
 * under a lock file, which is fine for the tens of thousands of entries a
 * local cache holds and keeps the hit path free of any index to update.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "compress.h"
#include "fs.h"

#define STORE_MAGIC "HPCE"
#define STORE_VERSION 1
#define HEADER_SIZE (4 + 1 + 1 + 2 + 8 + DIGEST_LEN)

static inline void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

int store_init(struct store *s, const char *dir, uint64_t max_size, int level)
{
	*s = (struct store){ .max_size = max_size, .level = level };
	s->dir = strdup(dir);
	if (!s->dir || asprintf(&s->store_dir, "%s/store", dir) < 0) {
		store_free(s);
		return -ENOMEM;
	}
	int r = fs_mkdir_p(s->store_dir, 0700);
	if (r < 0) {
		store_free(s);
		return r;
	}
	return 0;
}

void store_free(struct store *s)
{
	free(s->dir);
	free(s->store_dir);
	s->dir = s->store_dir = NULL;
}

static char *entry_path(const struct store *s, enum store_kind kind, const struct digest *key)
{
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(key, hex);
	char *p = NULL;
	if (asprintf(&p, "%s/%.2s/%s.%c", s->store_dir, hex, hex + 2, (char)kind) < 0)
		return NULL;
	return p;
}

static int entry_decode(const struct buf *file, enum store_kind kind, size_t max, struct buf *payload)
{
	const uint8_t *h = (const uint8_t *)file->data;
	if (file->len < HEADER_SIZE || memcmp(h, STORE_MAGIC, 4) != 0 || h[4] != STORE_VERSION ||
	    h[5] != (uint8_t)kind)
		return -EBADMSG;
	uint64_t size = 0;
	for (int i = 0; i < 8; i++)
		size |= (uint64_t)h[8 + i] << (8 * i);
	if (size > max || size > STORE_MAX_PAYLOAD)
		return -EBADMSG;
	size_t start = payload->len;
	int r = decompress_zstd(file->data + HEADER_SIZE, file->len - HEADER_SIZE, (size_t)size, payload);
	if (r < 0)
		return -EBADMSG;
	struct digest want, got;
	memcpy(want.b, h + 16, DIGEST_LEN);
	if (payload->len - start != size || digest_bytes(payload->data + start, (size_t)size, &got) < 0 ||
	    !digest_equal(&want, &got)) {
		payload->len = start;
		return -EBADMSG;
	}
	return 0;
}

int store_get(const struct store *s, enum store_kind kind, const struct digest *key, size_t max,
	      struct buf *payload, struct stats *delta)
{
	_cleanup_free_ char *path = entry_path(s, kind, key);
	if (!path)
		return -ENOMEM;
	_cleanup_buf_ struct buf file;
	buf_init(&file, STORE_MAX_PAYLOAD + HEADER_SIZE + 1);
	int r = fs_read_file(path, STORE_MAX_PAYLOAD + HEADER_SIZE, &file);
	if (r == -ENOENT)
		return -ENOENT;
	if (r >= 0) {
		size_t saved = payload->max;
		if (payload->max < max + 1)
			payload->max = max + 1;
		r = entry_decode(&file, kind, max, payload);
		payload->max = saved;
	}
	if (r == -EBADMSG || r == -EFBIG) {
		/* A corrupt entry is a miss, and must not be met again. */
		if (unlink(path) == 0 && delta) {
			delta->v[STAT_CORRUPT_ENTRIES]++;
			delta->v[STAT_CACHE_SIZE] -= (int64_t)file.len;
			delta->v[STAT_CACHE_FILES]--;
		}
		return -ENOENT;
	}
	if (r < 0)
		return r;
	/* Mark the entry as recently used for LRU eviction. */
	(void)utimensat(AT_FDCWD, path, NULL, 0);
	return 0;
}

int store_put(const struct store *s, enum store_kind kind, const struct digest *key, const void *payload,
	      size_t n, struct stats *delta)
{
	if (n > STORE_MAX_PAYLOAD)
		return -EFBIG;
	_cleanup_free_ char *path = entry_path(s, kind, key);
	if (!path)
		return -ENOMEM;
	_cleanup_buf_ struct buf file;
	buf_init(&file, STORE_MAX_PAYLOAD + HEADER_SIZE + 4096);
	uint8_t h[HEADER_SIZE] = { 0 };
	memcpy(h, STORE_MAGIC, 4);
	h[4] = STORE_VERSION;
	h[5] = (uint8_t)kind;
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)((uint64_t)n >> (8 * i));
	struct digest d;
	int r = digest_bytes(payload, n, &d);
	if (r < 0)
		return r;
	memcpy(h + 16, d.b, DIGEST_LEN);
	if ((r = buf_append(&file, h, sizeof(h))) < 0 || (r = compress_zstd(payload, n, s->level, &file)) < 0)
		return r;
	struct stat old;
	bool replaced = stat(path, &old) == 0;
	r = fs_write_atomic(path, file.data, file.len, 0600, false);
	if (r == -ENOENT) {
		/* First entry in this bucket: make the directory and try again. */
		_cleanup_free_ char *dir = strdup(path);
		if (!dir)
			return -ENOMEM;
		*strrchr(dir, '/') = '\0';
		if ((r = fs_mkdir_p(dir, 0700)) < 0)
			return r;
		r = fs_write_atomic(path, file.data, file.len, 0600, false);
	}
	if (r < 0)
		return r;
	if (delta) {
		delta->v[STAT_CACHE_SIZE] += (int64_t)file.len - (replaced ? (int64_t)old.st_size : 0);
		delta->v[STAT_CACHE_FILES] += replaced ? 0 : 1;
		if (kind == STORE_RESULT)
			delta->v[STAT_FILES_STORED]++;
	}
	return 0;
}

bool store_contains(const struct store *s, enum store_kind kind, const struct digest *key)
{
	_cleanup_free_ char *path = entry_path(s, kind, key);
	struct stat st;
	return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int store_remove(const struct store *s, enum store_kind kind, const struct digest *key, struct stats *delta)
{
	_cleanup_free_ char *path = entry_path(s, kind, key);
	if (!path)
		return -ENOMEM;
	struct stat st;
	if (stat(path, &st) < 0)
		return negative_errno();
	if (unlink(path) < 0)
		return negative_errno();
	if (delta) {
		delta->v[STAT_CACHE_SIZE] -= st.st_size;
		delta->v[STAT_CACHE_FILES]--;
	}
	return 0;
}

struct scanned {
	char *path;
	uint64_t size;
	struct timespec mtime;
};

static int scanned_cmp(const void *a, const void *b)
{
	const struct scanned *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return 0;
}

static bool is_entry_name(const char *name)
{
	size_t n = strlen(name);
	return n == DIGEST_HEX_LEN - 2 + 2 && name[n - 2] == '.' && strchr("rmbac", name[n - 1]) && name[n - 1];
}

int store_cleanup(const struct store *s, uint64_t target, uint64_t *ret_size, uint64_t *ret_files,
		  uint64_t *ret_evicted)
{
	return store_cleanup_keep(s, target, 0, ret_size, ret_files, ret_evicted);
}

int store_cleanup_keep(const struct store *s, uint64_t target, time_t keep_after, uint64_t *ret_size,
		       uint64_t *ret_files, uint64_t *ret_evicted)
{
	_cleanup_free_ char *lock_path = NULL;
	if (asprintf(&lock_path, "%s/cleanup.lock", s->dir) < 0)
		return -ENOMEM;
	_cleanup_close_ int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0)
		return negative_errno();
	if (flock(lock, LOCK_EX) < 0)
		return negative_errno();

	struct scanned *items = NULL;
	size_t n = 0, alloc = 0;
	uint64_t total = 0;
	int r = 0;
	_cleanup_(closedirp) DIR *top = opendir(s->store_dir);
	if (!top)
		return negative_errno();
	struct dirent *de;
	while (r == 0 && (de = readdir(top))) {
		if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *sub = NULL;
		if (asprintf(&sub, "%s/%s", s->store_dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		_cleanup_(closedirp) DIR *d = opendir(sub);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			struct stat st;
			if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
				continue;
			if (!is_entry_name(e->d_name)) {
				/* Temporary files left by a killed writer: remove once old. */
				if (strstr(e->d_name, ".tmp") && st.st_mtime < time(NULL) - 3600)
					unlinkat(dirfd(d), e->d_name, 0);
				continue;
			}
			if (n == alloc) {
				size_t na = alloc ? alloc * 2 : 1024;
				struct scanned *ni = realloc(items, na * sizeof(*items));
				if (!ni) {
					r = -ENOMEM;
					break;
				}
				items = ni;
				alloc = na;
			}
			items[n].size = (uint64_t)st.st_size;
			items[n].mtime = st.st_mtim;
			if (asprintf(&items[n].path, "%s/%s", sub, e->d_name) < 0) {
				r = -ENOMEM;
				break;
			}
			total += items[n].size;
			n++;
		}
	}
	uint64_t evicted = 0, files = n;
	if (r == 0 && total > target) {
		qsort(items, n, sizeof(*items), scanned_cmp);
		for (size_t i = 0; i < n && total > target; i++) {
			if (keep_after > 0 && items[i].mtime.tv_sec >= keep_after)
				break;  /* sorted: everything after is newer still */
			if (unlink(items[i].path) == 0) {
				total -= items[i].size;
				evicted++;
				files--;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		free(items[i].path);
	free(items);
	if (r < 0)
		return r;
	*ret_size = total;
	*ret_files = files;
	*ret_evicted = evicted;
	return 0;
}
