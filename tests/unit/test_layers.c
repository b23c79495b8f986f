/*
 * Unit tests for merging layers (src/image/layers.c, through a whole
 * import so that the squashfs content is what is checked): path
 * normalisation; whiteouts and opaque directories over three layers,
 * including the rule that a whiteout hides lower layers only; set-id bits
 * dropped, a directory's sticky bit kept, large owners capped; FIFOs
 * dropped; hardlinks that outlive the file they named; files replaced by
 * directories and back. Every hostile entry (.., absolute, device node,
 * hardlink outside or to nothing, a path below a symlink, an over-long
 * path, a malformed whiteout) and both caps (entries, total size) are
 * refused with one line naming the layer and the entry, and leave nothing
 * in the images directory. The size cap counts every entry's data (a
 * whiteout's, a hardlink's in a pax archive). Each pass, called directly,
 * refuses a layer whose bytes are not the ones its digest names (what a blob
 * rewritten after it was hashed reads as), and pass 2 names the entry whose
 * path no longer matches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"
#include "image_fixture.h"

#include "error.h"
#include "image_store.h"
#include "layers.h"
#include "squashfs.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct run {
	struct image_import_result res;
	struct error err;
	int r;
	struct fx_listing list;
	char *images;
};

/* Imports the layout <tmp>/src into <tmp>/images; lists it on success. */
static void import_src(const char *tmp, uint64_t max_size, uint64_t max_entries, struct run *run)
{
	memset(run, 0, sizeof(*run));
	char *src = fx_path(tmp, "src");
	run->images = fx_path(tmp, "images");
	struct image_import_options o = {
		.images_dir = run->images,
		.limits = { .max_size = max_size ? max_size : IMAGE_DEFAULT_MAX_SIZE,
			    .max_entries = max_entries ? max_entries : IMAGE_DEFAULT_MAX_ENTRIES },
	};
	run->r = image_import(src, &o, &run->res, &run->err);
	if (run->r == 0)
		fx_list(run->res.path, &run->list);
	free(src);
}

/* Imports a layout made of spec into <tmp>/images; lists it on success. */
static void import_layers(const char *tmp, const struct fx_layer_spec *spec, size_t n, uint64_t max_size,
			  uint64_t max_entries, struct run *run)
{
	char *src = fx_path(tmp, "src");
	testutil_rm_rf(src);
	fx_image(src, spec, n);
	free(src);
	import_src(tmp, max_size, max_entries, run);
}

static void run_free(struct run *run)
{
	image_import_result_free(&run->res);
	free(run->list.items);
	if (run->images)
		testutil_rm_rf(run->images);
	free(run->images);
}

/* The import is refused with a message holding every one of the words,
 * and the images directory is left empty. */
static void expect_refused(struct run *run, const char *w1, const char *w2)
{
	assert_true(run->r < 0);
	if (w1 && !strstr(run->err.msg, w1))
		fail_msg("message '%s' lacks '%s'", run->err.msg, w1);
	if (w2 && !strstr(run->err.msg, w2))
		fail_msg("message '%s' lacks '%s'", run->err.msg, w2);
	assert_null(strchr(run->err.msg, '\n'));
	assert_int_equal(fx_count_files(run->images), 0);
}

static void test_path_check(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} good[] = {
		{ "usr/bin/gcc", "usr/bin/gcc" }, { "./usr/bin/", "usr/bin" }, { "././etc", "etc" },
		{ "./", "" }, { ".", "" }, { "a..b/c.", "a..b/c." }, { ".wh.x", ".wh.x" },
	};
	for (size_t i = 0; i < N(good); i++) {
		char *out = NULL;
		const char *reason = NULL;
		assert_int_equal(layer_path_check(good[i].in, &out, &reason), 0);
		assert_string_equal(out, good[i].out);
		free(out);
	}
	static const char *bad[] = { "/etc/passwd", "../x", "a/../../x", "a/..", "a//b", "a/./b", "./../x", ".//x" };
	for (size_t i = 0; i < N(bad); i++) {
		char *out = NULL;
		const char *reason = NULL;
		if (layer_path_check(bad[i], &out, &reason) == 0)
			fail_msg("'%s' was accepted as '%s'", bad[i], out);
		assert_non_null(reason);
	}
	char long_name[300];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	char *out = NULL;
	const char *reason = NULL;
	assert_int_equal(layer_path_check(long_name, &out, &reason), -ENAMETOOLONG);
}

static void test_whiteouts(void **state)
{
	static const struct fx_entry l1[] = {
		{ 'd', "etc", NULL, 0, 0, 0 },
		{ 'f', "etc/keep", "keep\n", 0, 0, 0 },
		{ 'f', "etc/gone", "gone\n", 0, 0, 0 },
		{ 'd', "opq", NULL, 0, 0, 0 },
		{ 'f', "opq/old1", "1", 0, 0, 0 },
		{ 'd', "opq/sub", NULL, 0, 0, 0 },
		{ 'f', "opq/sub/old2", "2", 0, 0, 0 },
		{ 'd', "tree", NULL, 0, 0, 0 },
		{ 'f', "tree/a", "a", 0, 0, 0 },
		{ 'f', "tree/deep/b", "b", 0, 0, 0 },
		{ 'f', "over", "v1", 0, 0, 0 },
	};
	/* Whiteouts come after, and before, entries of their own layer: they
	 * never hide those. */
	static const struct fx_entry l2[] = {
		{ 'f', "etc/.wh.gone", "", 0, 0, 0 },
		{ 'f', "opq/new", "n", 0, 0, 0 },
		{ 'f', "opq/.wh..wh..opq", "", 0, 0, 0 },
		{ 'f', ".wh.tree", "", 0, 0, 0 },
		{ 'f', "tree/fresh", "f", 0, 0, 0 },
		{ 'f', "over", "v2", 0, 0, 0 },
		{ 'f', "etc/.wh.never-existed", "", 0, 0, 0 },
		{ 'f', "nodir/.wh.x", "", 0, 0, 0 },
		{ 'f', ".wh..wh..plnk", "", 0, 0, 0 },
	};
	static const struct fx_entry l3[] = {
		{ 'f', "./etc/added", "added\n", 0, 0, 0 },
		{ 'f', "./.wh.over", "", 0, 0, 0 },
		{ 'f', "./over", "v3", 0, 0, 0 },
	};
	const struct fx_layer_spec spec[] = { { l1, N(l1), FX_GZIP }, { l2, N(l2), FX_PLAIN }, { l3, N(l3), FX_ZSTD } };
	struct run run;
	import_layers(*state, spec, 3, 0, 0, &run);
	if (run.r < 0)
		fail_msg("import failed: %s", run.err.msg);
	const struct fx_listing *l = &run.list;
	assert_non_null(fx_find(l, "etc/keep"));
	assert_null(fx_find(l, "etc/gone"));
	assert_non_null(fx_find(l, "etc/added"));
	assert_string_equal(fx_find(l, "etc/added")->data, "added\n");
	assert_non_null(fx_find(l, "opq/new"));
	assert_null(fx_find(l, "opq/old1"));
	assert_null(fx_find(l, "opq/sub"));
	assert_null(fx_find(l, "opq/sub/old2"));
	assert_null(fx_find(l, "tree/a"));
	assert_null(fx_find(l, "tree/deep"));
	assert_non_null(fx_find(l, "tree/fresh"));
	assert_string_equal(fx_find(l, "over")->data, "v3");
	for (size_t i = 0; i < l->n; i++)
		if (strstr(l->items[i].path, ".wh."))
			fail_msg("whiteout '%s' in the image", l->items[i].path);
	assert_null(fx_find(l, "nodir"));
	/* keep, added, etc, opq, opq/new, tree, tree/fresh, over */
	assert_int_equal(l->n, 8);
	assert_int_equal(run.res.info.entries, 8);
	run_free(&run);
}

static void test_modes_and_owners(void **state)
{
	static const struct fx_entry l1[] = {
		{ 'f', "bin/su", "x", 04755, 0, 0 },
		{ 'f', "bin/wall", "x", 02755, 0, 5 },
		{ 'd', "tmp", NULL, 01777, 0, 0 },
		{ 'd', "shared", NULL, 02775, 0, 0 },
		{ 'f', "owned", "o", 0640, 1000, 100000 },
		{ 'p', "fifo", NULL, 0, 0, 0 },
		{ 'l', "link", "/etc/alternatives/cc", 0, 0, 0 },
	};
	const struct fx_layer_spec spec[] = { { l1, N(l1), FX_GZIP } };
	struct run run;
	import_layers(*state, spec, 1, 0, 0, &run);
	if (run.r < 0)
		fail_msg("import failed: %s", run.err.msg);
	assert_int_equal(fx_find(&run.list, "bin/su")->mode, 0755);
	assert_int_equal(fx_find(&run.list, "bin/wall")->mode, 0755);
	assert_int_equal(fx_find(&run.list, "bin/wall")->gid, 5);
	assert_int_equal(fx_find(&run.list, "tmp")->mode, 01777);
	assert_int_equal(fx_find(&run.list, "shared")->mode, 0775);
	assert_int_equal(fx_find(&run.list, "owned")->uid, 1000);
	assert_int_equal(fx_find(&run.list, "owned")->gid, IMAGE_NOBODY_ID);
	/* "bin" was never an entry: it is made 0755 root. */
	assert_int_equal(fx_find(&run.list, "bin")->mode, 0755);
	assert_null(fx_find(&run.list, "fifo"));
	assert_string_equal(fx_find(&run.list, "link")->target, "/etc/alternatives/cc");
	run_free(&run);
}

static void test_hardlinks_and_replacements(void **state)
{
	static const struct fx_entry l1[] = {
		{ 'f', "data/orig", "first", 0, 0, 0 },
		{ 'h', "data/alias", "data/orig", 0, 0, 0 },
		{ 'h', "data/alias2", "./data/orig", 0, 0, 0 },
		{ 'f', "was-file", "f", 0, 0, 0 },
		{ 'd', "was-dir", NULL, 0, 0, 0 },
		{ 'f', "was-dir/inner", "i", 0, 0, 0 },
	};
	/* The original goes; its names keep the first data. */
	static const struct fx_entry l2[] = {
		{ 'f', "data/.wh.orig", "", 0, 0, 0 },
		{ 'f', "data/alias2", "replaced", 0, 0, 0 },
		{ 'd', "was-file", NULL, 0, 0, 0 },
		{ 'f', "was-file/now", "n", 0, 0, 0 },
		{ 'f', "was-dir", "now a file", 0, 0, 0 },
	};
	const struct fx_layer_spec spec[] = { { l1, N(l1), FX_PLAIN }, { l2, N(l2), FX_GZIP } };
	struct run run;
	import_layers(*state, spec, 2, 0, 0, &run);
	if (run.r < 0)
		fail_msg("import failed: %s", run.err.msg);
	const struct fx_item *alias = fx_find(&run.list, "data/alias");
	assert_non_null(alias);
	assert_int_equal(alias->type, 'f');
	assert_string_equal(alias->data, "first");
	assert_null(fx_find(&run.list, "data/orig"));
	assert_string_equal(fx_find(&run.list, "data/alias2")->data, "replaced");
	assert_int_equal(fx_find(&run.list, "was-file")->type, 'd');
	assert_non_null(fx_find(&run.list, "was-file/now"));
	assert_int_equal(fx_find(&run.list, "was-dir")->type, 'f');
	assert_null(fx_find(&run.list, "was-dir/inner"));
	run_free(&run);

	/* Two surviving names of one file stay hardlinks. */
	static const struct fx_entry l3[] = {
		{ 'f', "a", "same", 0, 0, 0 },
		{ 'h', "b", "a", 0, 0, 0 },
		/* A hardlink that replaces its own target keeps the data. */
		{ 'f', "self", "kept", 0, 0, 0 },
		{ 'h', "self", "self", 0, 0, 0 },
	};
	const struct fx_layer_spec spec2[] = { { l3, N(l3), FX_PLAIN } };
	import_layers(*state, spec2, 1, 0, 0, &run);
	if (run.r < 0)
		fail_msg("import failed: %s", run.err.msg);
	const struct fx_item *a = fx_find(&run.list, "a"), *b = fx_find(&run.list, "b");
	assert_non_null(a);
	assert_non_null(b);
	/* sqfs2tar gives one name the data and the other a hardlink. */
	assert_true((a->type == 'f' && b->type == 'h') || (a->type == 'h' && b->type == 'f'));
	assert_string_equal(fx_find(&run.list, "self")->data, "kept");
	assert_int_equal(run.res.info.bytes, 8);
	run_free(&run);
}

struct hostile {
	const char *what;
	struct fx_entry lower[2];
	struct fx_entry entry[2];
	const char *word;
};

static void test_hostile_entries(void **state)
{
	static char long_path[5200];
	for (size_t i = 0; i < 25; i++) {
		memset(long_path + i * 201, 'p', 200);
		long_path[i * 201 + 200] = '/';
	}
	long_path[25 * 201 - 1] = '\0';
	const struct hostile cases[] = {
		{ "dotdot", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'f', "etc/../../escape", "x", 0, 0, 0 } }, "'..' component" },
		{ "absolute", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'f', "/etc/passwd", "x", 0, 0, 0 } }, "absolute path" },
		{ "chardev", { { 'd', "dev", NULL, 0, 0, 0 } }, { { 'c', "dev/null", NULL, 0, 0, 0 } }, "device node" },
		{ "blockdev", { { 'd', "dev", NULL, 0, 0, 0 } }, { { 'b', "dev/sda", NULL, 0, 0, 0 } }, "device node" },
		{ "hardlink outside", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'h', "etc/pw", "../../etc/passwd", 0, 0, 0 } },
		  "hardlink target" },
		{ "hardlink absolute", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'h', "etc/pw", "/etc/passwd", 0, 0, 0 } },
		  "hardlink target" },
		{ "hardlink missing", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'h', "etc/pw", "etc/nothing", 0, 0, 0 } },
		  "missing" },
		{ "hardlink to dir", { { 'd', "etc", NULL, 0, 0, 0 } }, { { 'h', "etc/pw", "etc", 0, 0, 0 } }, "missing" },
		{ "below symlink, same layer", { { 'd', "x", NULL, 0, 0, 0 } },
		  { { 'l', "a", "/etc", 0, 0, 0 }, { 'f', "a/passwd", "root::0:0::/:/bin/sh", 0, 0, 0 } }, "symlink a" },
		{ "below symlink, lower layer", { { 'l', "a", "/etc", 0, 0, 0 } },
		  { { 'f', "a/passwd", "x", 0, 0, 0 } }, "symlink a" },
		{ "hardlink through symlink", { { 'l', "a", "/etc", 0, 0, 0 } },
		  { { 'h', "pw", "a/passwd", 0, 0, 0 } }, "symlink" },
		{ "below a file", { { 'f', "file", "x", 0, 0, 0 } }, { { 'f', "file/x", "y", 0, 0, 0 } }, "non-directory" },
		{ "long path", { { 'd', "d", NULL, 0, 0, 0 } }, { { 'f', long_path, "x", 0, 0, 0 } }, "longer than 4096" },
		{ "malformed whiteout", { { 'd', "d", NULL, 0, 0, 0 } }, { { 'f', "d/.wh...", "", 0, 0, 0 } },
		  "malformed whiteout" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		size_t n_entry = cases[i].entry[1].path ? 2 : 1;
		const struct fx_layer_spec spec[] = { { cases[i].lower, 1, FX_GZIP },
						      { cases[i].entry, n_entry, FX_PLAIN } };
		struct run run;
		import_layers(*state, spec, 2, 0, 0, &run);
		if (run.r == 0)
			fail_msg("%s: accepted", cases[i].what);
		expect_refused(&run, "layer 2 (sha256:", cases[i].word);
		run_free(&run);
	}
}

static void test_caps(void **state)
{
	static const struct fx_entry l1[] = {
		{ 'f', "a", "0123456789", 0, 0, 0 },
		{ 'f', "b", "0123456789", 0, 0, 0 },
		{ 'f', "c", "0123456789", 0, 0, 0 },
	};
	static const struct fx_entry l2[] = {
		{ 'f', ".wh.a", "", 0, 0, 0 },
		{ 'f', "d", "0123456789", 0, 0, 0 },
	};
	const struct fx_layer_spec spec[] = { { l1, N(l1), FX_PLAIN }, { l2, N(l2), FX_PLAIN } };
	struct run run;
	/* Exactly at the caps: 40 bytes read, 5 entries read. */
	import_layers(*state, spec, 2, 40, 5, &run);
	if (run.r < 0)
		fail_msg("import at the caps failed: %s", run.err.msg);
	assert_int_equal(run.res.info.bytes, 30);
	run_free(&run);
	import_layers(*state, spec, 2, 39, 0, &run);
	expect_refused(&run, "size cap", "'d'");
	run_free(&run);
	import_layers(*state, spec, 2, 0, 4, &run);
	expect_refused(&run, "entry cap", "layer 2");
	run_free(&run);
	/* Directories made for deep paths count too. */
	static const struct fx_entry deep[] = { { 'f', "1/2/3/4/5/6/7/8", "x", 0, 0, 0 } };
	const struct fx_layer_spec spec2[] = { { deep, 1, FX_PLAIN } };
	import_layers(*state, spec2, 1, 0, 5, &run);
	expect_refused(&run, "cap", "layer 1");
	run_free(&run);

	/* Whiteouts and opaque markers are read with their data: it counts. */
	static const struct fx_entry wh[] = {
		{ 'd', "d", NULL, 0, 0, 0 },
		{ 'f', "d/.wh..wh..opq", "0123456789", 0, 0, 0 },
		{ 'f', ".wh.x", "0123456789", 0, 0, 0 },
	};
	const struct fx_layer_spec spec3[] = { { wh, N(wh), FX_GZIP } };
	import_layers(*state, spec3, 1, 20, 0, &run);
	if (run.r < 0)
		fail_msg("whiteouts at the cap: %s", run.err.msg);
	assert_int_equal(run.res.info.bytes, 0);
	run_free(&run);
	import_layers(*state, spec3, 1, 19, 0, &run);
	expect_refused(&run, "size cap", "'.wh.x'");
	run_free(&run);

	/* A hardlink carrying data (which a pax archive may do) is read too. */
	char *tar = fx_path(*state, "hardlink-data.tar");
	struct archive *a = fx_raw_open(tar, FX_PLAIN);
	fx_raw_pax(a, "comment", "pax");
	fx_raw_header(a, "f", '0', NULL, 1);
	fx_raw_data(a, "x", 1);
	fx_raw_header(a, "h", '1', "f", 4096);
	fx_raw_data(a, NULL, 4096);
	fx_raw_close(a);
	char *src = fx_path(*state, "src");
	testutil_rm_rf(src);
	fx_image_from_tar(src, tar);
	import_src(*state, 4097, 0, &run);
	if (run.r < 0)
		fail_msg("hardlink with data at the cap: %s", run.err.msg);
	assert_non_null(fx_find(&run.list, "h"));
	run_free(&run);
	import_src(*state, 4096, 0, &run);
	expect_refused(&run, "size cap", "'h'");
	run_free(&run);
	free(src);
	free(tar);
}

/* Recomputes the checksum of the ustar header at h. */
static void fix_checksum(char *h)
{
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 7, "%06o", sum & 0777777u);
	h[155] = ' ';
}

/* A copy of tar with replace written at offset at (in a header when
 * header is set), in <tmp>/name; returns it open. */
static int tampered(const char *tmp, const char *name, const struct buf *tar, size_t at, const char *replace, bool header)
{
	struct buf copy;
	buf_init(&copy, 0);
	buf_append(&copy, tar->data, tar->len);
	memcpy(copy.data + at, replace, strlen(replace));
	if (header)
		fix_checksum(copy.data + at / 512 * 512);
	fx_write(tmp, name, copy.data, copy.len);
	buf_free(&copy);
	char *path = fx_path(tmp, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	free(path);
	return fd;
}

/* Each pass reads the blob again after oci.c hashed it; each must refuse
 * bytes other than the digest's, so that neither the tree (pass 1) nor the
 * data (pass 2) can come from a blob rewritten in between. */
static void test_unverified_bytes_refused(void **state)
{
	static const struct fx_entry l1[] = {
		{ 'd', "dir", NULL, 0, 0, 0 },
		{ 'f', "dir/file", "the verified data", 0, 0, 0 },
		{ 'l', "dir/link", "file", 0, 0, 0 },
	};
	struct buf tar;
	buf_init(&tar, 0);
	fx_tar(l1, N(l1), FX_PLAIN, &tar);
	struct image_layer layer = { .size = tar.len, .compression = LAYER_PLAIN };
	fx_digest_str(tar.data, tar.len, layer.digest);
	/* Where the file's data, the file's header and the symlink's header
	 * are (the writer made plain ustar headers for these short names). */
	const char *data_at = memmem(tar.data, tar.len, "the verified", 12);
	const char *file_at = memmem(tar.data, tar.len, "dir/file", 8);
	const char *link_at = memmem(tar.data, tar.len, "dir/link", 8);
	assert_true(data_at && file_at && link_at);
	assert_int_equal((file_at - tar.data) % 512, 0);
	assert_int_equal((link_at - tar.data) % 512, 0);
	assert_memory_equal(link_at + 157, "file", 5);
	int good = tampered(*state, "good.tar", &tar, 0, "", false);
	/* Same sizes, valid tars: the data changed; the symlink points
	 * elsewhere; the file has another name. */
	int data = tampered(*state, "data.tar", &tar, (size_t)(data_at - tar.data) + 4, "VERIFIED", false);
	int link = tampered(*state, "link.tar", &tar, (size_t)(link_at - tar.data) + 157, "/etc", true);
	int name = tampered(*state, "name.tar", &tar, (size_t)(file_at - tar.data), "dir/fil2", true);
	struct image_limits lim = { .max_size = IMAGE_DEFAULT_MAX_SIZE, .max_entries = IMAGE_DEFAULT_MAX_ENTRIES };
	struct error err = { 0 };
	struct image_tree *tree = NULL;

	/* Pass 1. */
	const int bad[] = { data, link, name };
	for (size_t i = 0; i < N(bad); i++) {
		layer.fd = bad[i];
		error_clear(&err);
		assert_int_equal(image_tree_build(&layer, 1, &lim, &tree, &err), -EBADMSG);
		if (!strstr(err.msg, "changed while it was imported"))
			fail_msg("pass 1, copy %zu: %s", i, err.msg);
	}
	layer.fd = good;
	error_clear(&err);
	if (image_tree_build(&layer, 1, &lim, &tree, &err) < 0)
		fail_msg("pass 1: %s", err.msg);

	/* Pass 2, with the tree of the verified bytes. */
	char *out = fx_path(*state, "out.sqsh");
	fx_write(*state, "out.sqsh", "", 0);
	struct squashfs_options o = { 0 };
	const struct {
		int fd;
		const char *word;
	} cases[] = {
		{ data, "changed while it was imported" },
		{ name, "entry 2 is not 'dir/file'" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		layer.fd = cases[i].fd;
		error_clear(&err);
		assert_true(squashfs_write(tree, &layer, 1, &lim, out, &o, &err) < 0);
		if (!strstr(err.msg, cases[i].word))
			fail_msg("pass 2: message '%s' lacks '%s'", err.msg, cases[i].word);
	}
	layer.fd = good;
	error_clear(&err);
	if (squashfs_write(tree, &layer, 1, &lim, out, &o, &err) < 0)
		fail_msg("pass 2: %s", err.msg);
	struct fx_listing l;
	fx_list(out, &l);
	assert_string_equal(fx_find(&l, "dir/file")->data, "the verified data");
	assert_string_equal(fx_find(&l, "dir/link")->target, "file");
	free(l.items);
	image_tree_free(tree);
	free(out);
	close(good);
	close(data);
	close(link);
	close(name);
	buf_free(&tar);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_check),
		cmocka_unit_test_setup_teardown(test_whiteouts, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_modes_and_owners, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_hardlinks_and_replacements, testutil_setup_tmpdir,
						testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_hostile_entries, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_caps, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_unverified_bytes_refused, testutil_setup_tmpdir,
						testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
