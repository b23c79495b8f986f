/*
 * Unit tests for the local store (src/cache/store.c): round trips of both
 * entry kinds, misses, every kind of damage an entry can suffer (each must
 * be a miss that removes the file and moves the corrupt, size and file
 * counters), the size accounting when an entry is replaced, LRU eviction by
 * mtime down to a target with exact totals, removal of stale temporaries,
 * and the mtime refresh on a hit. Each test gets its own cache directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "digest.h"
#include "fs.h"
#include "store.h"

/* The on-disk layout (docs/local-cache.md), restated so that a change to it
 * is a deliberate one. */
#define HEADER_SIZE 48
#define OFFSET_KIND 5
#define OFFSET_SIZE 8
#define OFFSET_DIGEST 16

struct fixture {
	char *dir;
	struct store store;
};


static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/hpcc-test-store-XXXXXX";
	if (!f || !mkdtemp(tmpl) || !(f->dir = strdup(tmpl)))
		return -1;
	if (store_init(&f->store, f->dir, 0, 1) < 0) {
		rmdir(f->dir);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_free(&f->store);
	testutil_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct digest key_of(const char *name)
{
	struct digest d;
	assert_int_equal(digest_bytes(name, strlen(name), &d), 0);
	return d;
}

static char *entry_path(const struct fixture *f, enum store_kind kind, const struct digest *key)
{
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(key, hex);
	char *p = NULL;
	assert_true(asprintf(&p, "%s/store/%.2s/%s.%c", f->dir, hex, hex + 2, (char)kind) > 0);
	return p;
}

static int64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static bool file_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Deterministic bytes that zstd cannot shrink much, so sizes differ by payload. */
static void fill_noise(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static void read_all(const char *path, struct buf *b)
{
	buf_init(b, 1 << 24);
	assert_int_equal(fs_read_file(path, 1 << 24, b), 0);
}

static void write_all(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void set_mtime(const char *path, time_t sec)
{
	struct timespec ts[2] = { { sec, 0 }, { sec, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static time_t mtime_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mtime;
}

/* --- round trips and misses --- */

static void test_round_trip_both_kinds(void **state)
{
	struct fixture *f = *state;
	struct digest key = key_of("round trip");
	static const char result[] = "result payload \0 with a NUL and some text text text text";
	static const char manifest[] = "manifest payload";
	struct stats delta = { 0 };
	assert_int_equal(store_put(&f->store, STORE_RESULT, &key, result, sizeof(result), &delta), 0);
	assert_int_equal(store_put(&f->store, STORE_MANIFEST, &key, manifest, sizeof(manifest), &delta), 0);

	_cleanup_free_ char *rpath = entry_path(f, STORE_RESULT, &key);
	_cleanup_free_ char *mpath = entry_path(f, STORE_MANIFEST, &key);
	assert_int_equal(delta.v[STAT_CACHE_FILES], 2);
	assert_int_equal(delta.v[STAT_CACHE_SIZE], file_size(rpath) + file_size(mpath));
	/* Only results count as stored files. */
	assert_int_equal(delta.v[STAT_FILES_STORED], 1);
	assert_int_equal(delta.v[STAT_CORRUPT_ENTRIES], 0);

	/* The header is as documented. */
	_cleanup_buf_ struct buf raw;
	read_all(rpath, &raw);
	assert_true(raw.len > HEADER_SIZE);
	assert_memory_equal(raw.data, "HPCE", 4);
	assert_int_equal((uint8_t)raw.data[4], 1);
	assert_int_equal(raw.data[OFFSET_KIND], 'r');
	assert_int_equal((uint8_t)raw.data[OFFSET_SIZE], sizeof(result));
	struct digest want;
	assert_int_equal(digest_bytes(result, sizeof(result), &want), 0);
	assert_memory_equal(raw.data + OFFSET_DIGEST, want.b, DIGEST_LEN);

	struct stats get_delta = { 0 };
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &key, 1024, &got, &get_delta), 0);
	assert_int_equal(got.len, sizeof(result));
	assert_memory_equal(got.data, result, sizeof(result));
	buf_reset(&got);
	assert_int_equal(store_get(&f->store, STORE_MANIFEST, &key, 1024, &got, &get_delta), 0);
	assert_int_equal(got.len, sizeof(manifest));
	assert_memory_equal(got.data, manifest, sizeof(manifest));
	assert_true(stats_is_empty(&get_delta));

	/* A payload that is exactly max long is accepted. */
	buf_reset(&got);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &key, sizeof(result), &got, NULL), 0);
	assert_int_equal(got.len, sizeof(result));
}

static void test_round_trip_large_and_empty(void **state)
{
	struct fixture *f = *state;
	size_t n = 3 << 20;
	uint8_t *big = malloc(n);
	assert_non_null(big);
	fill_noise(big, n, 7);
	struct digest k1 = key_of("big"), k2 = key_of("empty");
	assert_int_equal(store_put(&f->store, STORE_RESULT, &k1, big, n, NULL), 0);
	assert_int_equal(store_put(&f->store, STORE_RESULT, &k2, "", 0, NULL), 0);
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &k1, n, &got, NULL), 0);
	assert_int_equal(got.len, n);
	assert_memory_equal(got.data, big, n);
	buf_reset(&got);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &k2, 10, &got, NULL), 0);
	assert_int_equal(got.len, 0);
	free(big);
}

static void test_miss(void **state)
{
	struct fixture *f = *state;
	struct digest key = key_of("absent"), other = key_of("present");
	struct stats delta = { 0 };
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &key, 1024, &got, &delta), -ENOENT);
	assert_int_equal(got.len, 0);
	assert_true(stats_is_empty(&delta));

	/* The same key under the other kind is a different entry. */
	assert_int_equal(store_put(&f->store, STORE_RESULT, &other, "x", 1, NULL), 0);
	assert_int_equal(store_get(&f->store, STORE_MANIFEST, &other, 1024, &got, &delta), -ENOENT);
	assert_int_equal(got.len, 0);
	assert_true(stats_is_empty(&delta));
	_cleanup_free_ char *rpath = entry_path(f, STORE_RESULT, &other);
	assert_true(file_exists(rpath));
}

/* --- corruption --- */

enum damage {
	DAMAGE_MAGIC,
	DAMAGE_VERSION,
	DAMAGE_SIZE_UP,
	DAMAGE_SIZE_DOWN,
	DAMAGE_FRAME,
	DAMAGE_FRAME_LAST,
	DAMAGE_DIGEST,
	DAMAGE_TRUNCATE_FRAME,
	DAMAGE_TRUNCATE_HEADER,
	DAMAGE_EMPTY,
	DAMAGE_KIND,
	DAMAGE_TRAILING,
	DAMAGE_OVER_MAX,
};

static const char *const damage_names[] = {
	"magic", "version", "size+1", "size-1", "frame", "frame-last", "digest", "truncate-frame",
	"truncate-header", "empty", "kind", "trailing", "over-max",
};

static void set_size_field(uint8_t *header, uint64_t size)
{
	for (int i = 0; i < 8; i++)
		header[OFFSET_SIZE + i] = (uint8_t)(size >> (8 * i));
}

static void check_damage(struct fixture *f, enum damage what)
{
	print_message("damage: %s\n", damage_names[what]);
	struct digest key = key_of(damage_names[what]);
	uint8_t payload[4096];
	fill_noise(payload, sizeof(payload), (uint32_t)what + 100);
	/* Half text so that the frame holds compressed blocks too. */
	memset(payload, 'a', sizeof(payload) / 2);
	assert_int_equal(store_put(&f->store, STORE_RESULT, &key, payload, sizeof(payload), NULL), 0);
	_cleanup_free_ char *path = entry_path(f, STORE_RESULT, &key);

	_cleanup_buf_ struct buf raw;
	read_all(path, &raw);
	size_t max = sizeof(payload);
	uint8_t *d = (uint8_t *)raw.data;
	switch (what) {
	case DAMAGE_MAGIC:
		d[0] ^= 0x01;
		break;
	case DAMAGE_VERSION:
		d[4] = 2;
		break;
	case DAMAGE_SIZE_UP:
		set_size_field(d, sizeof(payload) + 1);
		break;
	case DAMAGE_SIZE_DOWN:
		set_size_field(d, sizeof(payload) - 1);
		break;
	case DAMAGE_FRAME:
		d[HEADER_SIZE + (raw.len - HEADER_SIZE) / 2] ^= 0x40;
		break;
	case DAMAGE_FRAME_LAST:
		/* The frame's own checksum. */
		d[raw.len - 1] ^= 0x01;
		break;
	case DAMAGE_DIGEST:
		d[OFFSET_DIGEST + 7] ^= 0x80;
		break;
	case DAMAGE_TRUNCATE_FRAME:
		raw.len -= 10;
		break;
	case DAMAGE_TRUNCATE_HEADER:
		raw.len = HEADER_SIZE - 1;
		break;
	case DAMAGE_EMPTY:
		raw.len = 0;
		break;
	case DAMAGE_KIND:
		d[OFFSET_KIND] = 'm';
		break;
	case DAMAGE_TRAILING:
		assert_int_equal(buf_append(&raw, "junk", 4), 0);
		break;
	case DAMAGE_OVER_MAX:
		/* The entry is intact; the caller's cap is smaller. */
		max = sizeof(payload) - 1;
		break;
	}
	write_all(path, raw.data, raw.len);
	int64_t damaged_size = file_size(path);

	struct stats delta = { 0 };
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(buf_append_str(&got, "kept"), 0);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &key, max, &got, &delta), -ENOENT);
	/* Nothing of the bad entry reaches the caller's buffer. */
	assert_int_equal(got.len, 4);
	assert_memory_equal(got.data, "kept", 4);
	assert_false(file_exists(path));
	assert_int_equal(delta.v[STAT_CORRUPT_ENTRIES], 1);
	assert_int_equal(delta.v[STAT_CACHE_SIZE], -damaged_size);
	assert_int_equal(delta.v[STAT_CACHE_FILES], -1);
	assert_int_equal(delta.v[STAT_FILES_STORED], 0);

	/* The next lookup is a plain miss. */
	struct stats again = { 0 };
	assert_int_equal(store_get(&f->store, STORE_RESULT, &key, max, &got, &again), -ENOENT);
	assert_true(stats_is_empty(&again));
}

static void test_corrupt_header(void **state)
{
	check_damage(*state, DAMAGE_MAGIC);
	check_damage(*state, DAMAGE_VERSION);
	check_damage(*state, DAMAGE_SIZE_UP);
	check_damage(*state, DAMAGE_SIZE_DOWN);
}

static void test_corrupt_frame(void **state)
{
	check_damage(*state, DAMAGE_FRAME);
	check_damage(*state, DAMAGE_FRAME_LAST);
	check_damage(*state, DAMAGE_TRAILING);
}

static void test_corrupt_digest(void **state) { check_damage(*state, DAMAGE_DIGEST); }

static void test_corrupt_truncated(void **state)
{
	check_damage(*state, DAMAGE_TRUNCATE_FRAME);
	check_damage(*state, DAMAGE_TRUNCATE_HEADER);
	check_damage(*state, DAMAGE_EMPTY);
}

static void test_corrupt_kind(void **state) { check_damage(*state, DAMAGE_KIND); }

static void test_over_max(void **state) { check_damage(*state, DAMAGE_OVER_MAX); }

/* A digest that matches a payload other than the one stored: the check
 * must be on the decompressed bytes, not merely on the header's shape. */
static void test_swapped_frames(void **state)
{
	struct fixture *f = *state;
	struct digest k1 = key_of("one"), k2 = key_of("two");
	assert_int_equal(store_put(&f->store, STORE_RESULT, &k1, "first payload", 13, NULL), 0);
	assert_int_equal(store_put(&f->store, STORE_RESULT, &k2, "other payload", 13, NULL), 0);
	_cleanup_free_ char *p1 = entry_path(f, STORE_RESULT, &k1);
	_cleanup_free_ char *p2 = entry_path(f, STORE_RESULT, &k2);
	_cleanup_buf_ struct buf a;
	_cleanup_buf_ struct buf b;
	read_all(p1, &a);
	read_all(p2, &b);
	assert_int_equal(a.len, b.len);
	/* Entry one's header with entry two's frame. */
	memcpy(a.data + HEADER_SIZE, b.data + HEADER_SIZE, a.len - HEADER_SIZE);
	write_all(p1, a.data, a.len);
	struct stats delta = { 0 };
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(store_get(&f->store, STORE_RESULT, &k1, 100, &got, &delta), -ENOENT);
	assert_int_equal(got.len, 0);
	assert_int_equal(delta.v[STAT_CORRUPT_ENTRIES], 1);
	assert_false(file_exists(p1));
	assert_int_equal(store_get(&f->store, STORE_RESULT, &k2, 100, &got, &delta), 0);
	assert_memory_equal(got.data, "other payload", 13);
}

/* --- replacing and removing --- */

static void test_replace_adjusts_size(void **state)
{
	struct fixture *f = *state;
	struct digest key = key_of("replace");
	_cleanup_free_ char *path = entry_path(f, STORE_MANIFEST, &key);
	uint8_t small[1000], large[5000];
	fill_noise(small, sizeof(small), 1);
	fill_noise(large, sizeof(large), 2);

	struct stats d1 = { 0 };
	assert_int_equal(store_put(&f->store, STORE_MANIFEST, &key, small, sizeof(small), &d1), 0);
	int64_t s1 = file_size(path);
	assert_int_equal(d1.v[STAT_CACHE_SIZE], s1);
	assert_int_equal(d1.v[STAT_CACHE_FILES], 1);

	struct stats d2 = { 0 };
	assert_int_equal(store_put(&f->store, STORE_MANIFEST, &key, large, sizeof(large), &d2), 0);
	int64_t s2 = file_size(path);
	assert_true(s2 > s1);
	assert_int_equal(d2.v[STAT_CACHE_SIZE], s2 - s1);
	assert_int_equal(d2.v[STAT_CACHE_FILES], 0);

	struct stats d3 = { 0 };
	assert_int_equal(store_put(&f->store, STORE_MANIFEST, &key, small, sizeof(small), &d3), 0);
	assert_int_equal(file_size(path), s1);
	assert_int_equal(d3.v[STAT_CACHE_SIZE], s1 - s2);
	assert_int_equal(d3.v[STAT_CACHE_FILES], 0);

	/* The content is the latest one. */
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	assert_int_equal(store_get(&f->store, STORE_MANIFEST, &key, sizeof(large), &got, NULL), 0);
	assert_int_equal(got.len, sizeof(small));
	assert_memory_equal(got.data, small, sizeof(small));

	/* One entry of the latest size: nothing else was left behind. */
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&f->store, UINT64_MAX, &size, &files, &evicted), 0);
	assert_int_equal(files, 1);
	assert_int_equal(size, (uint64_t)s1);
}

static void test_remove(void **state)
{
	struct fixture *f = *state;
	struct digest key = key_of("remove");
	assert_int_equal(store_put(&f->store, STORE_RESULT, &key, "abc", 3, NULL), 0);
	_cleanup_free_ char *path = entry_path(f, STORE_RESULT, &key);
	int64_t size = file_size(path);
	struct stats delta = { 0 };
	assert_int_equal(store_remove(&f->store, STORE_RESULT, &key, &delta), 0);
	assert_false(file_exists(path));
	assert_int_equal(delta.v[STAT_CACHE_SIZE], -size);
	assert_int_equal(delta.v[STAT_CACHE_FILES], -1);
	assert_int_equal(delta.v[STAT_CORRUPT_ENTRIES], 0);
	assert_int_equal(store_remove(&f->store, STORE_RESULT, &key, &delta), -ENOENT);
	assert_int_equal(delta.v[STAT_CACHE_FILES], -1);
}

/* --- eviction --- */

#define N_EVICT 6

struct evict_set {
	struct digest keys[N_EVICT];
	char *paths[N_EVICT];
	uint64_t sizes[N_EVICT];
	uint64_t total;
};

/* Entries 0..N-1 with mtimes oldest first, a day apart, in the past. */
static void make_evict_set(struct fixture *f, struct evict_set *set)
{
	time_t base = time(NULL) - 30 * 86400;
	set->total = 0;
	for (int i = 0; i < N_EVICT; i++) {
		char name[32];
		snprintf(name, sizeof(name), "evict-%d", i);
		set->keys[i] = key_of(name);
		uint8_t payload[2048];
		fill_noise(payload, sizeof(payload), (uint32_t)i);
		enum store_kind kind = i % 2 ? STORE_MANIFEST : STORE_RESULT;
		/* Different sizes, so that a wrong order gives a wrong total. */
		size_t n = 500 + (size_t)i * 300;
		assert_int_equal(store_put(&f->store, kind, &set->keys[i], payload, n, NULL), 0);
		set->paths[i] = entry_path(f, kind, &set->keys[i]);
		/* Out of creation order: the mtime alone must decide. */
		int age_rank = (i * 5) % N_EVICT;  /* a permutation of 0..5 */
		set_mtime(set->paths[i], base + age_rank * 86400);
		set->sizes[i] = (uint64_t)file_size(set->paths[i]);
		set->total += set->sizes[i];
	}
}

static void free_evict_set(struct evict_set *set)
{
	for (int i = 0; i < N_EVICT; i++)
		free(set->paths[i]);
}

/* Index of the entry with age rank r (0 = oldest). */
static int by_rank(int r)
{
	for (int i = 0; i < N_EVICT; i++)
		if ((i * 5) % N_EVICT == r)
			return i;
	fail();
	return -1;
}

static void test_cleanup_under_target(void **state)
{
	struct fixture *f = *state;
	struct evict_set set;
	make_evict_set(f, &set);
	uint64_t size = 1, files = 1, evicted = 1;
	assert_int_equal(store_cleanup(&f->store, set.total, &size, &files, &evicted), 0);
	assert_int_equal(size, set.total);
	assert_int_equal(files, N_EVICT);
	assert_int_equal(evicted, 0);
	for (int i = 0; i < N_EVICT; i++)
		assert_true(file_exists(set.paths[i]));
	free_evict_set(&set);
}

static void test_cleanup_evicts_oldest(void **state)
{
	struct fixture *f = *state;
	struct evict_set set;
	make_evict_set(f, &set);
	int oldest = by_rank(0), second = by_rank(1);
	/* One byte less than what remains after evicting the oldest: the two
	 * oldest must go, and nothing else. */
	uint64_t target = set.total - set.sizes[oldest] - 1;
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&f->store, target, &size, &files, &evicted), 0);
	assert_int_equal(evicted, 2);
	assert_int_equal(files, N_EVICT - 2);
	assert_int_equal(size, set.total - set.sizes[oldest] - set.sizes[second]);
	assert_true(size <= target);
	for (int r = 0; r < N_EVICT; r++)
		assert_int_equal(file_exists(set.paths[by_rank(r)]), r >= 2);

	/* Exactly at the target: nothing more goes. */
	assert_int_equal(store_cleanup(&f->store, size, &size, &files, &evicted), 0);
	assert_int_equal(evicted, 0);
	assert_int_equal(files, N_EVICT - 2);

	/* Down to the newest alone. */
	int newest = by_rank(N_EVICT - 1);
	assert_int_equal(store_cleanup(&f->store, set.sizes[newest], &size, &files, &evicted), 0);
	assert_int_equal(evicted, N_EVICT - 3);
	assert_int_equal(files, 1);
	assert_int_equal(size, set.sizes[newest]);
	assert_true(file_exists(set.paths[newest]));

	/* Target zero empties the store. */
	assert_int_equal(store_cleanup(&f->store, 0, &size, &files, &evicted), 0);
	assert_int_equal(evicted, 1);
	assert_int_equal(files, 0);
	assert_int_equal(size, 0);
	assert_false(file_exists(set.paths[newest]));
	free_evict_set(&set);
}

/* Entries used at or after keep_after stay, even over the target (the
 * worker's [audit] retain); older ones go oldest first as before. */
static void test_cleanup_keeps_recent(void **state)
{
	struct fixture *f = *state;
	struct evict_set set;
	make_evict_set(f, &set);
	struct stat st;
	assert_int_equal(stat(set.paths[by_rank(3)], &st), 0);
	uint64_t size, files, evicted;
	/* Target zero, but ranks 3.. are within the retention. */
	assert_int_equal(store_cleanup_keep(&f->store, 0, st.st_mtime, &size, &files, &evicted), 0);
	assert_int_equal(evicted, 3);
	assert_int_equal(files, N_EVICT - 3);
	for (int r = 0; r < N_EVICT; r++)
		assert_int_equal(file_exists(set.paths[by_rank(r)]), r >= 3);
	/* keep_after 0: plain LRU again. */
	assert_int_equal(store_cleanup_keep(&f->store, 0, 0, &size, &files, &evicted), 0);
	assert_int_equal(files, 0);
	free_evict_set(&set);
}

static void test_cleanup_ignores_other_files(void **state)
{
	struct fixture *f = *state;
	struct evict_set set;
	make_evict_set(f, &set);
	/* Stray files in the store that are not entries: not counted, not
	 * evicted (except stale temporaries, below). */
	_cleanup_free_ char *stray = NULL, *lock = NULL;
	assert_true(asprintf(&stray, "%s/store/README", f->dir) > 0);
	write_all(stray, "x", 1);
	set_mtime(stray, 1000);
	assert_true(asprintf(&lock, "%s/cleanup.lock", f->dir) > 0);
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&f->store, set.total, &size, &files, &evicted), 0);
	assert_int_equal(size, set.total);
	assert_int_equal(files, N_EVICT);
	assert_true(file_exists(stray));
	assert_true(file_exists(lock));
	free_evict_set(&set);
}

static void test_cleanup_stale_temporaries(void **state)
{
	struct fixture *f = *state;
	struct digest key = key_of("tmp");
	assert_int_equal(store_put(&f->store, STORE_RESULT, &key, "abc", 3, NULL), 0);
	_cleanup_free_ char *entry = entry_path(f, STORE_RESULT, &key);
	_cleanup_free_ char *stale = NULL, *fresh = NULL, *recent = NULL;
	/* Named as fs_write_atomic names them. */
	assert_true(asprintf(&stale, "%s.0123456789abcdef.tmp", entry) > 0);
	assert_true(asprintf(&fresh, "%s.fedcba9876543210.tmp", entry) > 0);
	assert_true(asprintf(&recent, "%s.00000000deadbeef.tmp", entry) > 0);
	write_all(stale, "stale", 5);
	write_all(fresh, "fresh", 5);
	write_all(recent, "recent", 6);
	set_mtime(stale, time(NULL) - 2 * 3600);
	set_mtime(recent, time(NULL) - 30 * 60);
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&f->store, UINT64_MAX, &size, &files, &evicted), 0);
	assert_false(file_exists(stale));
	assert_true(file_exists(fresh));
	assert_true(file_exists(recent));
	assert_true(file_exists(entry));
	/* Temporaries are not entries. */
	assert_int_equal(files, 1);
	assert_int_equal(size, (uint64_t)file_size(entry));
	assert_int_equal(evicted, 0);
}

/* --- LRU --- */

static void test_get_refreshes_mtime(void **state)
{
	struct fixture *f = *state;
	struct evict_set set;
	make_evict_set(f, &set);
	int oldest = by_rank(0);
	time_t before = mtime_of(set.paths[oldest]);
	assert_true(before < time(NULL) - 86400);
	_cleanup_buf_ struct buf got;
	buf_init(&got, 0);
	enum store_kind kind = oldest % 2 ? STORE_MANIFEST : STORE_RESULT;
	time_t now = time(NULL);
	assert_int_equal(store_get(&f->store, kind, &set.keys[oldest], 1 << 20, &got, NULL), 0);
	assert_true(mtime_of(set.paths[oldest]) >= now - 1);

	/* Now the second oldest is first to go, and the one just read stays. */
	int second = by_rank(1);
	uint64_t size, files, evicted;
	assert_int_equal(store_cleanup(&f->store, set.total - 1, &size, &files, &evicted), 0);
	assert_int_equal(evicted, 1);
	assert_false(file_exists(set.paths[second]));
	assert_true(file_exists(set.paths[oldest]));
	assert_int_equal(size, set.total - set.sizes[second]);

	/* A miss touches nothing. */
	struct digest absent = key_of("absent");
	assert_int_equal(store_get(&f->store, STORE_RESULT, &absent, 10, &got, NULL), -ENOENT);
	free_evict_set(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_both_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_large_and_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_kind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_over_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swapped_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_adjusts_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_under_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_evicts_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_keeps_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_ignores_other_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_stale_temporaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_refreshes_mtime, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
