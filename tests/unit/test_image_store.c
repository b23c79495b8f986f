/*
 * Unit tests for the image store (src/image/image_store.c, import.c,
 * squashfs.c): digests are accepted in one spelling only; image_store_path
 * gives the absolute path of an imported image and refuses missing and
 * malformed digests; importing the same source twice (into two stores, or
 * after a removal) gives byte-identical squashfs files; a second import of
 * a present image writes nothing; list and rm see exactly the store's
 * images; and an import that fails late (tar2sqfs missing or failing, an
 * interruption) leaves nothing behind. An import that fails after its
 * renames (a fault injected there) removes only the files it renamed into
 * place: what a concurrent import of the same digest put there stays.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"
#include "image_fixture.h"

#include <signal.h>

#include "error.h"
#include "image_store.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct fx_entry base[] = {
	{ 'd', "usr/bin", NULL, 0, 0, 0 },
	{ 'f', "usr/bin/cc", "#!/bin/sh\necho cc\n", 0755, 0, 0 },
	{ 'l', "usr/bin/gcc", "cc", 0, 0, 0 },
	{ 'h', "usr/bin/c89", "usr/bin/cc", 0, 0, 0 },
	{ 'd', "tmp", NULL, 01777, 0, 0 },
};
static const struct fx_entry extra[] = { { 'f', "etc/os-release", "ID=test\n", 0, 0, 0 } };

static struct image_import_options options(const char *images)
{
	return (struct image_import_options){
		.images_dir = images,
		.limits = { .max_size = IMAGE_DEFAULT_MAX_SIZE, .max_entries = IMAGE_DEFAULT_MAX_ENTRIES },
	};
}

/* A layout at <tmp>/<name> with one or two layers. */
static char *make_source(const char *tmp, const char *name, size_t layers, struct fx_desc *ret_manifest)
{
	char *src = fx_path(tmp, name);
	const struct fx_layer_spec spec[] = { { base, N(base), FX_GZIP }, { extra, N(extra), FX_ZSTD } };
	struct fx_desc m = fx_image(src, spec, layers);
	if (ret_manifest)
		*ret_manifest = m;
	return src;
}

static void test_digest_check(void **state)
{
	(void)state;
	struct error err = { 0 };
	char hex[DIGEST_HEX_LEN + 1];
	const char *good = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(image_digest_check(good, hex, &err), 0);
	assert_string_equal(hex, good + 7);
	static const char *bad[] = {
		"",
		"sha256:",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
		"sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"sha256:../../../../etc/passwd00000000000000000000000000000000000000000000",
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef012345678/abcdef",
	};
	for (size_t i = 0; i < N(bad); i++) {
		error_clear(&err);
		if (image_digest_check(bad[i], hex, &err) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_non_null(strstr(err.msg, "not an image digest"));
	}
	error_clear(&err);
	assert_int_equal(image_digest_check(NULL, NULL, &err), -EINVAL);
}

static void test_path_list_rm(void **state)
{
	struct fx_desc m1, m2;
	char *src1 = make_source(*state, "src1", 1, &m1);
	char *src2 = make_source(*state, "src2", 2, &m2);
	char *images = fx_path(*state, "images");
	struct image_import_options o = options(images);
	struct image_import_result res;
	struct error err = { 0 };
	char *path = NULL;

	/* An empty (even missing) store. */
	struct image_info *list = NULL;
	size_t n = 99;
	assert_int_equal(image_store_list(images, &list, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(image_store_path(images, m1.digest, &path, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not imported"));

	assert_int_equal(image_import(src1, &o, &res, &err), 0);
	assert_string_equal(res.info.digest, m1.digest);
	image_import_result_free(&res);
	assert_int_equal(image_import(src2, &o, &res, &err), 0);
	image_import_result_free(&res);

	/* Paths are absolute even for a relative store name. */
	assert_int_equal(chdir(*state), 0);
	error_clear(&err);
	assert_int_equal(image_store_path("images", m1.digest, &path, &err), 0);
	assert_true(path[0] == '/');
	char *want = NULL;
	assert_true(asprintf(&want, "%s/%s.sqsh", images, m1.digest + 7) > 0);
	char *real_want = realpath(want, NULL);
	assert_string_equal(path, real_want);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	free(path);
	free(want);
	free(real_want);
	/* Malformed and unknown digests. */
	error_clear(&err);
	assert_int_equal(image_store_path(images, "sha256:abc", &path, &err), -EINVAL);
	error_clear(&err);
	assert_int_equal(image_store_path(images, "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
					  &path, &err),
			 -ENOENT);

	/* Strays are not images: temporary files, dotfiles, metadata alone. */
	fx_write(images, "0000000000000000000000000000000000000000000000000000000000000000.sqsh.1234.tmp", "x", 1);
	fx_write(images, ".import-abc", "x", 1);
	fx_write(images, "1111111111111111111111111111111111111111111111111111111111111111.json", "{}", 2);
	error_clear(&err);
	assert_int_equal(image_store_list(images, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	bool seen1 = false, seen2 = false;
	for (size_t i = 0; i < n; i++) {
		assert_true(list[i].valid);
		assert_string_equal(list[i].source, "oci-layout");
		assert_string_equal(list[i].compressor, "zstd");
		assert_true(list[i].squashfs_bytes > 0);
		assert_int_equal(strlen(list[i].imported), 20);
		if (strcmp(list[i].digest, m1.digest) == 0) {
			seen1 = true;
			assert_int_equal(list[i].layers, 1);
			/* usr, usr/bin, cc, gcc, c89, tmp */
			assert_int_equal(list[i].entries, 6);
			assert_int_equal(list[i].bytes, strlen("#!/bin/sh\necho cc\n"));
		} else if (strcmp(list[i].digest, m2.digest) == 0) {
			seen2 = true;
			assert_int_equal(list[i].layers, 2);
		}
	}
	assert_true(seen1 && seen2);
	free(list);

	/* rm: both files go; again, or malformed, is an error. */
	error_clear(&err);
	assert_int_equal(image_store_remove(images, m1.digest, &err), 0);
	assert_int_equal(image_store_path(images, m1.digest, &path, &err), -ENOENT);
	error_clear(&err);
	assert_int_equal(image_store_remove(images, m1.digest, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not imported"));
	error_clear(&err);
	assert_int_equal(image_store_remove(images, "../etc/passwd", &err), -EINVAL);
	error_clear(&err);
	assert_int_equal(image_store_list(images, &list, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].digest, m2.digest);
	free(list);
	free(images);
	free(src1);
	free(src2);
}

static bool same_bytes(const char *a, const char *b)
{
	struct buf x, y;
	buf_init(&x, (size_t)1 << 28);
	buf_init(&y, (size_t)1 << 28);
	bool same = fs_read_file(a, (size_t)1 << 27, &x) == 0 && fs_read_file(b, (size_t)1 << 27, &y) == 0 &&
		    x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
	buf_free(&x);
	buf_free(&y);
	return same;
}

static void test_deterministic_and_already(void **state)
{
	char *src = make_source(*state, "src", 2, NULL);
	char *images_a = fx_path(*state, "a");
	char *images_b = fx_path(*state, "b");
	struct image_import_options oa = options(images_a), ob = options(images_b);
	/* Different thread counts must not change the bytes either. */
	oa.squashfs.jobs = 1;
	ob.squashfs.jobs = 3;
	struct image_import_result ra, rb, again;
	struct error err = { 0 };
	assert_int_equal(image_import(src, &oa, &ra, &err), 0);
	sleep(1);  /* a clock that leaked into the image would show */
	assert_int_equal(image_import(src, &ob, &rb, &err), 0);
	assert_string_equal(ra.info.digest, rb.info.digest);
	assert_true(same_bytes(ra.path, rb.path));

	/* Present already: nothing is rewritten. */
	struct stat before, after;
	assert_int_equal(stat(ra.path, &before), 0);
	assert_int_equal(image_import(src, &oa, &again, &err), 0);
	assert_true(again.already);
	assert_string_equal(again.path, ra.path);
	assert_int_equal(stat(ra.path, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	assert_int_equal(fx_count_files(images_a), 2);
	image_import_result_free(&again);

	/* Removed and imported again: the same bytes. */
	char *copy = fx_path(*state, "copy.sqsh");
	struct buf b;
	buf_init(&b, (size_t)1 << 28);
	assert_int_equal(fs_read_file(ra.path, (size_t)1 << 27, &b), 0);
	fx_write(*state, "copy.sqsh", b.data, b.len);
	buf_free(&b);
	assert_int_equal(image_store_remove(images_a, ra.info.digest, &err), 0);
	assert_int_equal(image_import(src, &oa, &again, &err), 0);
	assert_false(again.already);
	assert_true(same_bytes(again.path, copy));
	image_import_result_free(&again);

	/* gzip is the other choice; it is deterministic too. */
	testutil_rm_rf(images_a);
	testutil_rm_rf(images_b);
	oa.squashfs.compressor = ob.squashfs.compressor = "gzip";
	image_import_result_free(&ra);
	image_import_result_free(&rb);
	assert_int_equal(image_import(src, &oa, &ra, &err), 0);
	assert_int_equal(image_import(src, &ob, &rb, &err), 0);
	assert_true(same_bytes(ra.path, rb.path));
	assert_false(same_bytes(ra.path, copy));
	image_import_result_free(&ra);
	image_import_result_free(&rb);
	free(copy);
	free(images_a);
	free(images_b);
	free(src);
}

static void test_late_failures_leave_nothing(void **state)
{
	char *src = make_source(*state, "src", 2, NULL);
	char *images = fx_path(*state, "images");
	struct image_import_options o = options(images);
	struct image_import_result res;
	struct error err = { 0 };

	o.squashfs.tar2sqfs = "/nonexistent/tar2sqfs";
	assert_true(image_import(src, &o, &res, &err) < 0);
	assert_non_null(strstr(err.msg, "tar2sqfs not found"));
	assert_int_equal(fx_count_files(images), 0);

	o.squashfs.tar2sqfs = "/bin/false";
	error_clear(&err);
	assert_true(image_import(src, &o, &res, &err) < 0);
	assert_non_null(strstr(err.msg, "tar2sqfs"));
	assert_int_equal(fx_count_files(images), 0);

	/* An unknown compressor: tar2sqfs refuses, with its own message. */
	o.squashfs.tar2sqfs = NULL;
	o.squashfs.compressor = "nonesuch";
	error_clear(&err);
	assert_true(image_import(src, &o, &res, &err) < 0);
	assert_non_null(strstr(err.msg, "tar2sqfs failed"));
	assert_int_equal(fx_count_files(images), 0);

	/* Interrupted (the flag a signal handler sets). */
	o.squashfs.compressor = NULL;
	volatile sig_atomic_t stop = 1;
	o.limits.cancel = &stop;
	error_clear(&err);
	assert_int_equal(image_import(src, &o, &res, &err), -EINTR);
	assert_int_equal(fx_count_files(images), 0);

	/* A docker archive interrupted while it is unpacked. */
	char *tar = fx_path(*state, "d.tar");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_PLAIN } };
	fx_docker_archive(tar, spec, 1, NULL, NULL);
	error_clear(&err);
	assert_int_equal(image_import(tar, &o, &res, &err), -EINTR);
	assert_int_equal(fx_count_files(images), 0);
	free(tar);
	free(images);
	free(src);
}

/* What the fault hook does: at step, put another import's files of the
 * same image in place (as that import, running at the same time, would by
 * its renames), then fail. */
struct race {
	const char *step;
	const char *images, *other;  /* the store, and another holding the image */
	const char *hex;
	bool sqsh, meta;             /* which of the other's files to put in */
	ino_t sqsh_ino, meta_ino;    /* what they are once in place */
};

static ino_t put_file(const char *from_dir, const char *to_dir, const char *hex, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof(name), "%s%s", hex, suffix);
	char *from = fx_path(from_dir, name), *to = fx_path(to_dir, name);
	struct buf b;
	buf_init(&b, (size_t)1 << 28);
	assert_int_equal(fs_read_file(from, (size_t)1 << 27, &b), 0);
	assert_int_equal(fs_write_atomic(to, b.data, b.len, 0644, false), 0);
	struct stat st;
	assert_int_equal(stat(to, &st), 0);
	buf_free(&b);
	free(from);
	free(to);
	return st.st_ino;
}

static int race_fault(const char *step, void *userdata)
{
	struct race *race = userdata;
	if (strcmp(step, race->step) != 0)
		return 0;
	if (race->sqsh)
		race->sqsh_ino = put_file(race->other, race->images, race->hex, IMAGE_SQUASHFS_SUFFIX);
	if (race->meta)
		race->meta_ino = put_file(race->other, race->images, race->hex, IMAGE_META_SUFFIX);
	return -EIO;
}

static ino_t ino_of(const char *dir, const char *hex, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof(name), "%s%s", hex, suffix);
	char *path = fx_path(dir, name);
	struct stat st;
	ino_t ino = lstat(path, &st) == 0 ? st.st_ino : 0;
	free(path);
	return ino;
}

static void test_failed_commit_keeps_others(void **state)
{
	struct fx_desc m;
	char *src = make_source(*state, "src", 2, &m);
	char *other = fx_path(*state, "other");
	char *images = fx_path(*state, "images");
	const char *hex = m.digest + 7;
	struct image_import_options o = options(other);
	struct image_import_result res;
	struct error err = { 0 };
	assert_int_equal(image_import(src, &o, &res, &err), 0);
	image_import_result_free(&res);

	const struct {
		struct race race;
		int files;             /* left in the store */
		bool image;            /* ... making a whole image */
		bool their_sqsh, their_meta;
	} cases[] = {
		/* Alone: what it renamed goes, at either step. */
		{ { "squashfs", .sqsh = false, .meta = false }, 0, false, false, false },
		{ { "metadata", .sqsh = false, .meta = false }, 0, false, false, false },
		/* The other import committed both after this one's squashfs:
		 * its image stays whole. */
		{ { "squashfs", .sqsh = true, .meta = true }, 2, true, true, true },
		/* It renamed its squashfs first (this one's replaced it), then
		 * committed its metadata: this squashfs stays with it. */
		{ { "squashfs", .sqsh = false, .meta = true }, 2, true, false, true },
		/* Its squashfs replaced this one's after this metadata: the
		 * metadata goes, its squashfs stays for its own commit. */
		{ { "metadata", .sqsh = true, .meta = false }, 1, false, true, false },
	};
	for (size_t i = 0; i < N(cases); i++) {
		testutil_rm_rf(images);
		struct race race = cases[i].race;
		race.images = images;
		race.other = other;
		race.hex = hex;
		o = options(images);
		o.test_fault = race_fault;
		o.test_userdata = &race;
		error_clear(&err);
		assert_int_equal(image_import(src, &o, &res, &err), -EIO);
		assert_non_null(strstr(err.msg, "injected fault"));
		assert_int_equal(fx_count_files(images), cases[i].files);
		char *path = NULL;
		struct error ignored = { 0 };
		assert_int_equal(image_store_path(images, m.digest, &path, &ignored) == 0, cases[i].image);
		free(path);
		if (cases[i].their_sqsh)
			assert_int_equal(ino_of(images, hex, IMAGE_SQUASHFS_SUFFIX), race.sqsh_ino);
		if (cases[i].their_meta)
			assert_int_equal(ino_of(images, hex, IMAGE_META_SUFFIX), race.meta_ino);
	}
	free(images);
	free(other);
	free(src);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_check),
		T(test_path_list_rm),
		T(test_deterministic_and_already),
		T(test_late_failures_leave_nothing),
		T(test_failed_commit_keeps_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
