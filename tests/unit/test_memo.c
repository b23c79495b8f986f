/*
 * Unit tests for the digest memo (src/cache/memo.c): the digest is the one
 * digest_file computes; an unchanged file is a memo hit; a change of size,
 * of content with a new mtime, or of content behind a restored mtime (the
 * ctime catches it) is a miss with the new digest; a file changed within the
 * last second is never memoised; the time-macro flag survives a hit; errors
 * for missing files and directories; growth past the initial table; and
 * many threads at once. A file counts as "changed" by its ctime as well as
 * its mtime, and utimensat cannot set the ctime, so a file is memoisable
 * only once its ctime is two seconds old: the group setup creates the files
 * most tests need and waits once; each test gets a fresh memo.
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
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "digest.h"
#include "memo.h"

/* An mtime long past, for files that must look old. */
#define OLD_MTIME ((time_t)1600000000)

struct fixture {
	char *dir;  /* the group's directory, shared by all tests */
	struct memo *memo;
};

static char *group_dir;


static char *path_in(const struct fixture *f, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
	return p;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void set_mtime(const char *path, time_t sec)
{
	struct timespec ts[2] = { { sec, 0 }, { sec, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Waits until every path's ctime is at least two whole seconds in the
 * past: old enough for the memo, unless an mtime was set in the future. (A
 * write sets the mtime to the same moment as the ctime; utimensat moves the
 * mtime anywhere but the ctime to now.) */
static void wait_until_memoisable(char *const *paths, size_t n)
{
	time_t newest = 0;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		assert_int_equal(stat(paths[i], &st), 0);
		if (st.st_ctime > newest)
			newest = st.st_ctime;
	}
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		if (now.tv_sec >= newest + 2)
			return;
		struct timespec pause = { 0, 100 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
}

static void wait_one(const char *path)
{
	char *paths[] = { (char *)path };
	wait_until_memoisable(paths, 1);
}

/* Files that tests need old enough to memoise, made once. */
static const struct {
	const char *name;
	const char *text;
	time_t mtime;  /* 0: leave the write time; < 0: that far in the future */
} aged_files[] = {
	{ "stable.h", "int stable;\n", 0 },
	{ "grow.h", "int a;\n", 0 },
	{ "same.h", "int aaaa;\n", OLD_MTIME },
	{ "sneaky.h", "int cccc;\n", OLD_MTIME },
	{ "renamed.h", "int eeee;\n", OLD_MTIME },
	{ "renamed.h.new", "int ffff;\n", OLD_MTIME },
	{ "macros0.h", "const char *d = __DATE__;\n", 0 },
	{ "macros1.h", "const char *t = __TIME__;\n", 0 },
	{ "macros2.h", "const char *s = __TIMESTAMP__;\n", 0 },
	{ "nomacros.h", "const char *d = \"__DATE\";\nint __TIM;\n", 0 },
	{ "gone.h", "gone\n", 0 },
	{ "future.h", "x\n", -3600 },
};

/* Past the initial table size (4096 slots, grown at half full). */
#define N_GROW 3000
#define N_FILES 50

static void grow_name(int i, char *name, size_t n_name, char *text, size_t n_text)
{
	snprintf(name, n_name, "g%04d.h", i);
	snprintf(text, n_text, "int g%d;\n", i);
}

/* Sizes differ, and some files are larger than one read. */
static char *thread_file_text(int i)
{
	size_t n = 100 + (size_t)i * 4000;
	char *text = malloc(n + 1);
	assert_non_null(text);
	for (size_t j = 0; j < n; j++)
		text[j] = (char)('a' + ((size_t)i + j) % 26);
	text[n] = '\0';
	return text;
}

static int group_setup(void **state)
{
	char tmpl[] = "/tmp/hpcc-test-memo-XXXXXX";
	if (!mkdtemp(tmpl) || !(group_dir = strdup(tmpl)))
		return -1;
	struct fixture f = { .dir = group_dir };
	size_t n_paths = ARRAY_SIZE(aged_files) + N_GROW + N_FILES, k = 0;
	char **paths = calloc(n_paths, sizeof(*paths));
	if (!paths)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(aged_files); i++, k++) {
		paths[k] = path_in(&f, aged_files[i].name);
		write_file(paths[k], aged_files[i].text);
		time_t t = aged_files[i].mtime < 0 ? time(NULL) - aged_files[i].mtime : aged_files[i].mtime;
		if (t)
			set_mtime(paths[k], t);
	}
	for (int i = 0; i < N_GROW; i++, k++) {
		char name[32], text[64];
		grow_name(i, name, sizeof(name), text, sizeof(text));
		paths[k] = path_in(&f, name);
		write_file(paths[k], text);
	}
	for (int i = 0; i < N_FILES; i++, k++) {
		char name[32];
		snprintf(name, sizeof(name), "t%02d.h", i);
		paths[k] = path_in(&f, name);
		char *text = thread_file_text(i);
		write_file(paths[k], text);
		free(text);
	}
	wait_until_memoisable(paths, n_paths);
	for (size_t i = 0; i < n_paths; i++)
		free(paths[i]);
	free(paths);
	return 0;
}

static int group_teardown(void **state)
{
	testutil_rm_rf(group_dir);
	free(group_dir);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f || !(f->memo = memo_new()))
		return -1;
	f->dir = group_dir;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	memo_free(f->memo);
	free(f);
	return 0;
}

static struct digest digest_of_file(const char *path)
{
	struct digest d;
	assert_int_equal(digest_file(path, (uint64_t)1 << 31, &d, NULL), 0);
	return d;
}

/* Checks that d is the digest of text. */
static void assert_digest_of(const struct digest *d, const char *text)
{
	struct digest want;
	assert_int_equal(digest_bytes(text, strlen(text), &want), 0);
	assert_true(digest_equal(d, &want));
}

struct counts {
	uint64_t hits, misses, entries;
};

static struct counts counters(struct memo *m)
{
	struct counts c;
	memo_counters(m, &c.hits, &c.misses, &c.entries);
	return c;
}

static void assert_counts(struct memo *m, uint64_t hits, uint64_t misses, uint64_t entries)
{
	struct counts c = counters(m);
	assert_int_equal(c.hits, hits);
	assert_int_equal(c.misses, misses);
	assert_int_equal(c.entries, entries);
}

static void test_digest_matches_digest_file(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "a.c");
	write_file(p, "int main(void) { return 0; }\n");
	struct digest want = digest_of_file(p);
	assert_digest_of(&want, "int main(void) { return 0; }\n");

	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_true(digest_equal(&fd.digest, &want));
	assert_false(fd.time_macros);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(fd.st.st_ino, st.st_ino);
	assert_int_equal(fd.st.st_size, st.st_size);

	/* Without a memo it reads the file every time. */
	struct file_digest plain;
	assert_int_equal(memo_digest(NULL, p, &plain), 0);
	assert_true(digest_equal(&plain.digest, &want));

	/* An empty file. */
	_cleanup_free_ char *e = path_in(f, "empty.h");
	write_file(e, "");
	assert_int_equal(memo_digest(f->memo, e, &fd), 0);
	assert_digest_of(&fd.digest, "");
}

static void test_recent_file_not_memoised(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "fresh.h");
	write_file(p, "#define FRESH 1\n");
	struct file_digest a, b;
	assert_int_equal(memo_digest(f->memo, p, &a), 0);
	assert_int_equal(memo_digest(f->memo, p, &b), 0);
	assert_counts(f->memo, 0, 2, 0);
	assert_true(digest_equal(&a.digest, &b.digest));

	/* An old mtime does not help while the ctime (set by utimensat
	 * itself) is recent: the change could hide behind the old mtime. */
	set_mtime(p, OLD_MTIME + 3600);
	assert_int_equal(memo_digest(f->memo, p, &a), 0);
	assert_counts(f->memo, 0, 3, 0);

	/* Once the ctime is old too, the next digest is memoised. */
	wait_one(p);
	assert_int_equal(memo_digest(f->memo, p, &a), 0);
	assert_counts(f->memo, 0, 4, 1);
	assert_int_equal(memo_digest(f->memo, p, &b), 0);
	assert_counts(f->memo, 1, 4, 1);
	assert_digest_of(&b.digest, "#define FRESH 1\n");
}

static void test_future_mtime_not_memoised(void **state)
{
	struct fixture *f = *state;
	/* After a clock step back, files can be "from the future": its ctime
	 * is old, its mtime an hour ahead. */
	_cleanup_free_ char *p = path_in(f, "future.h");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 0, 2, 0);
}

static void test_unchanged_is_hit(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "stable.h");
	struct file_digest a, b, c;
	assert_int_equal(memo_digest(f->memo, p, &a), 0);
	assert_counts(f->memo, 0, 1, 1);
	assert_int_equal(memo_digest(f->memo, p, &b), 0);
	assert_int_equal(memo_digest(f->memo, p, &c), 0);
	assert_counts(f->memo, 2, 1, 1);
	assert_true(digest_equal(&a.digest, &b.digest));
	assert_true(digest_equal(&a.digest, &c.digest));
	assert_digest_of(&c.digest, "int stable;\n");
	assert_int_equal(c.st.st_ino, a.st.st_ino);
	assert_int_equal(c.st.st_mtim.tv_sec, a.st.st_mtim.tv_sec);
}

static void test_change_size_is_miss(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "grow.h");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 1, 1);

	write_file(p, "int a; int b;\n");
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 2, 1);
	assert_digest_of(&fd.digest, "int a; int b;\n");
	/* Too recent to replace the old entry, yet never served from it. */
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 3, 1);
	assert_digest_of(&fd.digest, "int a; int b;\n");

	/* Aged, the new content is memoised in the same entry. */
	wait_one(p);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 2, 4, 1);
	assert_digest_of(&fd.digest, "int a; int b;\n");
}

static void test_same_size_new_mtime_is_miss(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "same.h");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 1, 1);

	/* Same size, new content, a different (old) mtime. */
	write_file(p, "int bbbb;\n");
	set_mtime(p, OLD_MTIME + 3600);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 2, 1);
	assert_digest_of(&fd.digest, "int bbbb;\n");
}

static void test_restored_mtime_is_miss(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "sneaky.h");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 1, 1);

	/* Same size, same mtime as before (a tool that restores mtimes):
	 * only the ctime tells. */
	write_file(p, "int dddd;\n");
	set_mtime(p, OLD_MTIME);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 2, 1);
	assert_digest_of(&fd.digest, "int dddd;\n");
}

static void test_replaced_by_rename_is_miss(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *p = path_in(f, "renamed.h");
	_cleanup_free_ char *q = path_in(f, "renamed.h.new");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 1, 1);
	/* Another inode, same size and times: an editor's save-by-rename. */
	assert_int_equal(rename(q, p), 0);
	assert_int_equal(memo_digest(f->memo, p, &fd), 0);
	assert_counts(f->memo, 1, 2, 1);
	assert_digest_of(&fd.digest, "int ffff;\n");
}

static void test_time_macros(void **state)
{
	struct fixture *f = *state;
	/* __DATE__, __TIME__, __TIMESTAMP__; then names that only look alike.
	 * The second lookup of each is a memo hit and keeps the flag. */
	static const char *const names[] = { "macros0.h", "macros1.h", "macros2.h", "nomacros.h" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = path_in(f, names[i]);
		struct file_digest fd;
		assert_int_equal(memo_digest(f->memo, p, &fd), 0);
		assert_int_equal(fd.time_macros || fd.timestamp_macro, i < 3);
		assert_int_equal(fd.timestamp_macro, i == 2);
		assert_int_equal(memo_digest(f->memo, p, &fd), 0);
		assert_int_equal(fd.time_macros || fd.timestamp_macro, i < 3);
		assert_int_equal(fd.timestamp_macro, i == 2);
		assert_counts(f->memo, i + 1, i + 1, i + 1);
	}
	/* Without a memo, and for a fresh file. */
	_cleanup_free_ char *p = path_in(f, "macros-fresh.h");
	write_file(p, "#if 0\n__TIME__\n#endif\n");
	struct file_digest fd;
	assert_int_equal(memo_digest(NULL, p, &fd), 0);
	assert_true(fd.time_macros);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *missing = path_in(f, "missing.h");
	struct file_digest fd;
	assert_int_equal(memo_digest(f->memo, missing, &fd), -ENOENT);
	assert_int_equal(memo_digest(NULL, missing, &fd), -ENOENT);
	assert_int_equal(memo_digest(f->memo, f->dir, &fd), -EISDIR);
	assert_int_equal(memo_digest(NULL, f->dir, &fd), -EISDIR);
	_cleanup_free_ char *under_file = path_in(f, "file.h/x");
	_cleanup_free_ char *file = path_in(f, "file.h");
	write_file(file, "");
	assert_int_equal(memo_digest(f->memo, under_file, &fd), -ENOTDIR);
	/* Devices and pipes are not source files either. */
	assert_int_equal(memo_digest(f->memo, "/dev/null", &fd), -EISDIR);
	assert_int_equal(counters(f->memo).entries, 0);

	/* A file that was memoised and then removed is a miss, not a stale hit. */
	_cleanup_free_ char *gone = path_in(f, "gone.h");
	assert_int_equal(memo_digest(f->memo, gone, &fd), 0);
	assert_int_equal(counters(f->memo).entries, 1);
	assert_int_equal(unlink(gone), 0);
	assert_int_equal(memo_digest(f->memo, gone, &fd), -ENOENT);
}

static void test_growth(void **state)
{
	struct fixture *f = *state;
	char **paths = calloc(N_GROW, sizeof(*paths));
	assert_non_null(paths);
	for (int i = 0; i < N_GROW; i++) {
		char name[32], text[64];
		grow_name(i, name, sizeof(name), text, sizeof(text));
		paths[i] = path_in(f, name);
	}
	struct file_digest fd;
	for (int i = 0; i < N_GROW; i++)
		assert_int_equal(memo_digest(f->memo, paths[i], &fd), 0);
	assert_counts(f->memo, 0, N_GROW, N_GROW);
	for (int i = 0; i < N_GROW; i++) {
		char name[32], text[64];
		grow_name(i, name, sizeof(name), text, sizeof(text));
		assert_int_equal(memo_digest(f->memo, paths[i], &fd), 0);
		assert_digest_of(&fd.digest, text);
	}
	assert_counts(f->memo, N_GROW, N_GROW, N_GROW);
	for (int i = 0; i < N_GROW; i++)
		free(paths[i]);
	free(paths);
}

/* --- threads --- */

#define N_THREADS 8
#define N_LOOKUPS 1000

struct shared {
	struct memo *memo;
	char *paths[N_FILES];
	struct digest want[N_FILES];
	pthread_barrier_t start;
};

struct worker {
	struct shared *sh;
	int id;
	int wrong;
	int failed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&w->sh->start);
	uint32_t x = (uint32_t)w->id * 2654435761u + 1;
	for (int i = 0; i < N_LOOKUPS; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		int k = (int)(x % N_FILES);
		struct file_digest fd;
		if (memo_digest(w->sh->memo, w->sh->paths[k], &fd) < 0)
			w->failed++;
		else if (!digest_equal(&fd.digest, &w->sh->want[k]))
			w->wrong++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct shared sh = { .memo = f->memo };
	for (int i = 0; i < N_FILES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%02d.h", i);
		sh.paths[i] = path_in(f, name);
		char *text = thread_file_text(i);
		struct digest d;
		assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
		free(text);
		/* Both ways of digesting agree. */
		sh.want[i] = digest_of_file(sh.paths[i]);
		assert_true(digest_equal(&d, &sh.want[i]));
	}
	assert_int_equal(pthread_barrier_init(&sh.start, NULL, N_THREADS), 0);
	pthread_t threads[N_THREADS];
	struct worker workers[N_THREADS];
	for (int t = 0; t < N_THREADS; t++) {
		workers[t] = (struct worker){ .sh = &sh, .id = t + 1 };
		assert_int_equal(pthread_create(&threads[t], NULL, worker_main, &workers[t]), 0);
	}
	for (int t = 0; t < N_THREADS; t++) {
		assert_int_equal(pthread_join(threads[t], NULL), 0);
		assert_int_equal(workers[t].failed, 0);
		assert_int_equal(workers[t].wrong, 0);
	}
	pthread_barrier_destroy(&sh.start);
	struct counts c = counters(f->memo);
	assert_int_equal(c.hits + c.misses, N_THREADS * N_LOOKUPS);
	assert_int_equal(c.entries, N_FILES);
	/* Each thread misses a file at most once: after its own miss the
	 * entry exists. */
	assert_true(c.misses >= N_FILES);
	assert_true(c.misses <= N_THREADS * N_FILES);
	for (int i = 0; i < N_FILES; i++)
		free(sh.paths[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_digest_matches_digest_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recent_file_not_memoised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_mtime_not_memoised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_is_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_size_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_size_new_mtime_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_mtime_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaced_by_rename_is_miss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_macros, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
