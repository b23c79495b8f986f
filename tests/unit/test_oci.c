/*
 * Unit tests for reading image sources (src/image/oci.c and
 * docker_archive.c): an OCI layout with plain, gzip and zstd layers is
 * named by its manifest digest; an index with several platforms or a
 * nested index gives the linux/amd64 image; a docker archive holding the
 * same layout gives the same digest; a classic docker archive is named by
 * the digest of the canonical manifest that docs/images.md defines. Every
 * tampered, mis-sized, oversized, unknown or foreign-platform input is
 * refused with one line and leaves nothing in the images directory: layer
 * blobs beyond the size cap before they are hashed; docker archive members
 * whose header sizes pass the cap (a hardlink carrying data, a sparse file's
 * apparent size) before their data is read, and sparse members at all;
 * staged names too long for PATH_MAX or nested too deep. The staging
 * directory goes, also after it held a name near PATH_MAX.
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
#include "oci.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct fx_entry base[] = {
	{ 'd', "usr", NULL, 0, 0, 0 },
	{ 'd', "usr/bin", NULL, 0, 0, 0 },
	{ 'f', "usr/bin/cc", "#!/bin/sh\necho cc\n", 0755, 0, 0 },
};
static const struct fx_entry extra[] = { { 'f', "etc/os-release", "ID=test\n", 0, 0, 0 } };
static const struct fx_entry third[] = { { 'f', "usr/bin/.wh.cc", "", 0, 0, 0 }, { 'f', "usr/bin/c99", "c99", 0, 0, 0 } };

/* Imports src into <tmp>/images under max_size; returns the result code. */
static int import_capped(const char *tmp, const char *src, uint64_t max_size, struct image_import_result *res,
			 struct error *err)
{
	char *images = fx_path(tmp, "images");
	struct image_import_options o = {
		.images_dir = images,
		.limits = { .max_size = max_size, .max_entries = IMAGE_DEFAULT_MAX_ENTRIES },
	};
	memset(err, 0, sizeof(*err));
	int r = image_import(src, &o, res, err);
	free(images);
	return r;
}

static int import(const char *tmp, const char *src, struct image_import_result *res, struct error *err)
{
	return import_capped(tmp, src, IMAGE_DEFAULT_MAX_SIZE, res, err);
}

static void expect_refused_capped(const char *tmp, const char *src, uint64_t max_size, const char *word)
{
	struct image_import_result res;
	struct error err;
	int r = import_capped(tmp, src, max_size, &res, &err);
	if (r == 0)
		fail_msg("%s was imported", src);
	if (!strstr(err.msg, word))
		fail_msg("message '%s' lacks '%s'", err.msg, word);
	assert_null(strchr(err.msg, '\n'));
	char *images = fx_path(tmp, "images");
	assert_int_equal(fx_count_files(images), 0);
	free(images);
}

static void expect_refused(const char *tmp, const char *src, const char *word)
{
	expect_refused_capped(tmp, src, IMAGE_DEFAULT_MAX_SIZE, word);
}

static char *blob_path(const char *dir, const char *digest)
{
	char *p = NULL;
	if (asprintf(&p, "%s/blobs/sha256/%s", dir, digest + 7) < 0)
		abort();
	return p;
}

static void test_layout_three_compressions(void **state)
{
	char *src = fx_path(*state, "src");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_PLAIN }, { extra, N(extra), FX_GZIP },
					      { third, N(third), FX_ZSTD } };
	struct fx_desc m = fx_image(src, spec, 3);
	struct image_import_result res;
	struct error err;
	if (import(*state, src, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	assert_string_equal(res.info.digest, m.digest);
	assert_string_equal(res.info.source, "oci-layout");
	assert_false(res.already);
	assert_int_equal(res.info.layers, 3);
	struct fx_listing l;
	fx_list(res.path, &l);
	assert_non_null(fx_find(&l, "etc/os-release"));
	assert_non_null(fx_find(&l, "usr/bin/c99"));
	assert_null(fx_find(&l, "usr/bin/cc"));
	free(l.items);
	image_import_result_free(&res);
	free(src);
}

static void test_index_selects_amd64(void **state)
{
	char *src = fx_path(*state, "src");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_GZIP } };
	struct fx_desc amd = fx_image(src, spec, 1);
	/* An arm64 image beside it (its own config and manifest). */
	struct fx_desc layer = fx_layer(src, extra, N(extra), FX_GZIP);
	struct fx_desc arm_config = fx_config(src, &layer, 1, "arm64");
	struct fx_desc arm = fx_manifest(src, &arm_config, &layer, 1);
	const struct fx_desc both[] = { arm, amd };
	const char *const arch[] = { "arm64", "amd64" };
	fx_index(src, both, arch, 2);
	struct image_import_result res;
	struct error err;
	if (import(*state, src, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	assert_string_equal(res.info.digest, amd.digest);
	image_import_result_free(&res);
	char *images = fx_path(*state, "images");
	testutil_rm_rf(images);

	/* The same through a nested index. */
	struct buf nested;
	buf_init(&nested, 0);
	buf_printf(&nested,
		   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
		   "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
		   "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
		   "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu,\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}}]}",
		   arm.media_type, arm.digest, arm.size, amd.media_type, amd.digest, amd.size, arm.media_type, arm.digest,
		   arm.size);
	struct fx_desc idx = fx_blob(src, nested.data, nested.len, "application/vnd.oci.image.index.v1+json");
	fx_index(src, &idx, NULL, 1);
	if (import(*state, src, &res, &err) < 0)
		fail_msg("nested import failed: %s", err.msg);
	assert_string_equal(res.info.digest, amd.digest);
	image_import_result_free(&res);
	testutil_rm_rf(images);

	/* Only arm64: refused. */
	fx_index(src, &arm, NULL, 1);
	expect_refused(*state, src, "linux/arm64");
	fx_index(src, &arm, arch, 1);
	expect_refused(*state, src, "no linux/amd64 image");
	/* Two amd64 images: ambiguous. */
	struct fx_desc amd_config2 = fx_config(src, &layer, 1, "amd64");
	struct fx_desc amd2 = fx_manifest(src, &amd_config2, &layer, 1);
	const struct fx_desc two[] = { amd, amd2 };
	fx_index(src, two, NULL, 2);
	expect_refused(*state, src, "2 linux/amd64 images");
	/* The same image listed twice (two tags) is one image. */
	const struct fx_desc same[] = { amd, amd };
	fx_index(src, same, NULL, 2);
	if (import(*state, src, &res, &err) < 0)
		fail_msg("import of a twice-listed image failed: %s", err.msg);
	image_import_result_free(&res);
	buf_free(&nested);
	free(images);
	free(src);
}

/* Rewrites a blob in place with one byte changed. */
static void tamper(const char *src, const char *digest, off_t at)
{
	char *p = blob_path(src, digest);
	fx_flip(p, at);
	free(p);
}

static void test_tampering_refused(void **state)
{
	const struct fx_layer_spec spec[] = { { base, N(base), FX_GZIP }, { extra, N(extra), FX_PLAIN } };
	char *src = fx_path(*state, "src");
	struct fx_desc layers[2];
	struct fx_desc config, m;

	/* A layer byte (inside a file's data, so the tar stays valid). */
	layers[0] = fx_layer(src, base, N(base), FX_GZIP);
	layers[1] = fx_layer(src, extra, N(extra), FX_PLAIN);
	config = fx_config(src, layers, 2, "amd64");
	m = fx_manifest(src, &config, layers, 2);
	fx_index(src, &m, NULL, 1);
	tamper(src, layers[1].digest, 512 + 3);
	expect_refused(*state, src, "layer 2 sha256:");
	expect_refused(*state, src, "digest mismatch");
	testutil_rm_rf(src);

	fx_image(src, spec, 2);
	m = fx_image(src, spec, 2);
	tamper(src, m.digest, 20);
	expect_refused(*state, src, "manifest sha256:");
	testutil_rm_rf(src);

	layers[0] = fx_layer(src, base, N(base), FX_GZIP);
	layers[1] = fx_layer(src, extra, N(extra), FX_PLAIN);
	config = fx_config(src, layers, 2, "amd64");
	m = fx_manifest(src, &config, layers, 2);
	fx_index(src, &m, NULL, 1);
	tamper(src, config.digest, 5);
	expect_refused(*state, src, "config sha256:");
	testutil_rm_rf(src);

	/* Sizes that differ from the descriptor. */
	layers[0] = fx_layer(src, base, N(base), FX_GZIP);
	layers[1] = fx_layer(src, extra, N(extra), FX_PLAIN);
	layers[1].size += 1;
	config = fx_config(src, layers, 2, "amd64");
	m = fx_manifest(src, &config, layers, 2);
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "the descriptor says");
	m.size -= 1;
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "the descriptor says");
	testutil_rm_rf(src);

	/* A missing blob. */
	m = fx_image(src, spec, 2);
	char *p = blob_path(src, m.digest);
	unlink(p);
	free(p);
	expect_refused(*state, src, "blob missing");
	free(src);
}

static void test_bad_documents_refused(void **state)
{
	char *src = fx_path(*state, "src");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_GZIP } };

	/* index.json over 4 MiB. */
	fx_image(src, spec, 1);
	char *big = calloc(1, ((size_t)4 << 20) + 16);
	memset(big, ' ', ((size_t)4 << 20) + 8);
	big[0] = '{';
	big[((size_t)4 << 20) + 8] = '}';
	fx_write(src, "index.json", big, ((size_t)4 << 20) + 9);
	expect_refused(*state, src, "larger than");
	/* A manifest descriptor claiming more than 4 MiB. */
	struct fx_desc m = fx_image(src, spec, 1);
	m.size = ((size_t)4 << 20) + 1;
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "more than the 4194304 allowed");
	free(big);

	/* Not JSON; duplicate keys; a non-sha256 digest. */
	fx_write(src, "index.json", "{\"schemaVersion\":2,", strlen("{\"schemaVersion\":2,"));
	expect_refused(*state, src, "not valid JSON");
	fx_write(src, "index.json", "{\"a\":1,\"a\":2}", strlen("{\"a\":1,\"a\":2}"));
	expect_refused(*state, src, "not valid JSON");
	m = fx_image(src, spec, 1);
	memcpy(m.digest, "sha512", 6);
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "is not sha256");
	testutil_rm_rf(src);

	/* An unknown layer media type. */
	struct fx_desc layer = fx_layer(src, base, N(base), FX_GZIP);
	layer.media_type = "application/vnd.example.layer.v1.squashfs";
	struct fx_desc config = fx_config(src, &layer, 1, "amd64");
	m = fx_manifest(src, &config, &layer, 1);
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "unknown media type");
	testutil_rm_rf(src);

	/* A gzip media type on a plain tar. */
	layer = fx_layer(src, base, N(base), FX_PLAIN);
	layer.media_type = fx_layer_type(FX_GZIP);
	config = fx_config(src, &layer, 1, "amd64");
	m = fx_manifest(src, &config, &layer, 1);
	fx_index(src, &m, NULL, 1);
	expect_refused(*state, src, "compression is not what the media type says");
	testutil_rm_rf(src);

	/* No oci-layout. */
	fx_image(src, spec, 1);
	char *ol = fx_path(src, "oci-layout");
	unlink(ol);
	free(ol);
	expect_refused(*state, src, "oci-layout");
	free(src);
}

/* The canonical manifest of a classic docker archive (docs/images.md). */
static void canonical_digest(const char *config, unsigned long long config_size, const char *src_layers_dir,
			     const struct fx_layer_spec *spec, size_t n, char out[DIGEST_STR_LEN + 1])
{
	(void)src_layers_dir;
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b,
		   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%llu},"
		   "\"layers\":[",
		   config, config_size);
	for (size_t i = 0; i < n; i++) {
		struct buf tar;
		buf_init(&tar, 0);
		fx_tar(spec[i].entries, spec[i].n, FX_PLAIN, &tar);
		char d[DIGEST_STR_LEN + 1];
		fx_digest_str(tar.data, tar.len, d);
		buf_printf(&b, "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}",
			   i ? "," : "", d, tar.len);
		buf_free(&tar);
	}
	buf_append_str(&b, "]}");
	fx_digest_str(b.data, b.len, out);
	buf_free(&b);
}

static void test_docker_archive(void **state)
{
	char *tar = fx_path(*state, "image.tar");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_PLAIN }, { third, N(third), FX_PLAIN } };
	char config[DIGEST_STR_LEN + 1];
	unsigned long long config_size;
	fx_docker_archive(tar, spec, 2, config, &config_size);
	struct image_import_result res;
	struct error err;
	if (import(*state, tar, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	char want[DIGEST_STR_LEN + 1];
	canonical_digest(config, config_size, NULL, spec, 2, want);
	assert_string_equal(res.info.digest, want);
	assert_string_equal(res.info.source, "docker-archive");
	struct fx_listing l;
	fx_list(res.path, &l);
	assert_non_null(fx_find(&l, "usr/bin/c99"));
	assert_null(fx_find(&l, "usr/bin/cc"));
	free(l.items);
	image_import_result_free(&res);
	/* Staging leaves nothing behind: only the image's two files. */
	char *images = fx_path(*state, "images");
	assert_int_equal(fx_count_files(images), 2);
	testutil_rm_rf(images);

	/* A layer that is not what the config's diff_ids say. */
	const struct fx_layer_spec other[] = { { base, N(base), FX_PLAIN }, { extra, N(extra), FX_PLAIN } };
	struct buf evil;
	buf_init(&evil, 0);
	fx_docker_archive(tar, other, 2, NULL, NULL);
	/* Flip a byte inside the second layer's file data in the outer tar:
	 * find "ID=test" and change it. */
	buf_reset(&evil);
	assert_int_equal(fs_read_file(tar, 1 << 24, &evil), 0);
	char *at = memmem(evil.data, evil.len, "ID=test", 7);
	assert_non_null(at);
	at[3] = 'X';
	fx_write(*state, "image.tar", evil.data, evil.len);
	expect_refused(*state, tar, "is not the config's diff_id");
	buf_free(&evil);

	/* Not an archive at all. */
	fx_write(*state, "image.tar", "hello", 5);
	expect_refused(*state, tar, "not a readable tar");
	free(images);
	free(tar);
}

/* A classic archive whose second layer is a symlink to the first (docker
 * links a layer that appears twice), or to somewhere outside. */
static void linked_archive(const char *path, const char *link_target)
{
	struct buf layer, config, manifest;
	buf_init(&layer, 0);
	buf_init(&config, 0);
	buf_init(&manifest, 0);
	fx_tar(extra, N(extra), FX_PLAIN, &layer);
	char diff[DIGEST_STR_LEN + 1], cd[DIGEST_STR_LEN + 1];
	fx_digest_str(layer.data, layer.len, diff);
	buf_printf(&config, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]}}",
		   diff, diff);
	fx_digest_str(config.data, config.len, cd);
	buf_printf(&manifest, "[{\"Config\":\"%s.json\",\"Layers\":[\"a/layer.tar\",\"b/layer.tar\"]}]", cd + 7);
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	char config_name[80];
	snprintf(config_name, sizeof(config_name), "%.64s.json", cd + 7);
	const struct {
		const char *name;
		const struct buf *data;
		const char *symlink;
	} members[] = {
		{ "a/layer.tar", &layer, NULL },
		{ "b/layer.tar", NULL, link_target },
		{ config_name, &config, NULL },
		{ "manifest.json", &manifest, NULL },
	};
	for (size_t i = 0; i < N(members); i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, members[i].name);
		archive_entry_set_perm(ae, 0644);
		if (members[i].symlink) {
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_symlink(ae, members[i].symlink);
		} else {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_size(ae, (la_int64_t)members[i].data->len);
		}
		archive_write_header(a, ae);
		if (!members[i].symlink)
			archive_write_data(a, members[i].data->data, members[i].data->len);
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
	buf_free(&layer);
	buf_free(&config);
	buf_free(&manifest);
}

static void test_docker_archive_links(void **state)
{
	char *tar = fx_path(*state, "linked.tar");
	linked_archive(tar, "../a/layer.tar");
	struct image_import_result res;
	struct error err;
	if (import(*state, tar, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	assert_int_equal(res.info.layers, 2);
	image_import_result_free(&res);
	char *images = fx_path(*state, "images");
	testutil_rm_rf(images);
	linked_archive(tar, "../../outside/layer.tar");
	expect_refused(*state, tar, "link leaves the archive");
	linked_archive(tar, "/etc/passwd");
	expect_refused(*state, tar, "link leaves the archive");
	free(images);
	free(tar);
}

static void test_oci_archive_same_digest(void **state)
{
	char *src = fx_path(*state, "src");
	char *tar = fx_path(*state, "oci.tar");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_GZIP }, { extra, N(extra), FX_ZSTD } };
	struct fx_desc m = fx_image(src, spec, 2);
	fx_tar_dir(src, tar);
	struct image_import_result res;
	struct error err;
	if (import(*state, tar, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	assert_string_equal(res.info.digest, m.digest);
	assert_string_equal(res.info.source, "oci-archive");
	image_import_result_free(&res);
	/* The directory form is then already there. */
	if (import(*state, src, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	assert_true(res.already);
	image_import_result_free(&res);
	free(tar);
	free(src);
}

/* A relative name of exactly len bytes in components of at most 255. */
static char *long_name(size_t len)
{
	char *name = malloc(len + 1);
	size_t at = 0;
	while (len - at > 255) {
		memset(name + at, 'n', 254);
		name[at + 254] = '/';
		at += 255;
	}
	memset(name + at, 'n', len - at);
	name[len] = '\0';
	return name;
}

static void test_docker_archive_staging_names(void **state)
{
	char *images = fx_path(*state, "images");
	assert_int_equal(mkdir(images, 0755), 0);
	char *real = realpath(images, NULL);
	/* The longest name that keeps <images>/.import-XXXXXX/<name> (and its
	 * NUL) within PATH_MAX. */
	size_t cap = PATH_MAX - strlen(real) - strlen("/.import-XXXXXX") - 2;
	char *at_cap = long_name(cap), *over = long_name(4080);
	char *tar = fx_path(*state, "image.tar");
	const struct fx_layer_spec spec[] = { { base, N(base), FX_PLAIN } };

	/* Staged, then removed (with descriptors, not paths) after the import. */
	struct fx_entry member = { 'f', at_cap, "long", 0, 0, 0 };
	fx_docker_archive_extra(tar, spec, 1, &member, 1, NULL, NULL);
	struct image_import_result res;
	struct error err;
	if (import(*state, tar, &res, &err) < 0)
		fail_msg("import failed: %s", err.msg);
	image_import_result_free(&res);
	assert_int_equal(fx_count_files(images), 2);
	testutil_rm_rf(images);

	/* ... and after a failed one (no manifest.json). */
	fx_docker_archive_extra(tar, spec, 0, &member, 1, NULL, NULL);
	expect_refused(*state, tar, "manifest.json");

	/* 4080 bytes: its full path would pass PATH_MAX. */
	member.path = over;
	fx_docker_archive_extra(tar, spec, 1, &member, 1, NULL, NULL);
	expect_refused(*state, tar, "name longer than");

	/* Deeper than 16 components. */
	member.path = "1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17";
	fx_docker_archive_extra(tar, spec, 1, &member, 1, NULL, NULL);
	expect_refused(*state, tar, "nested more than 16 deep");
	member.path = "1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16";
	fx_docker_archive_extra(tar, spec, 1, &member, 1, NULL, NULL);
	if (import(*state, tar, &res, &err) < 0)
		fail_msg("import of a 16 deep member failed: %s", err.msg);
	image_import_result_free(&res);
	assert_int_equal(fx_count_files(images), 2);
	free(at_cap);
	free(over);
	free(real);
	free(tar);
	free(images);
}

/* A tar whose one member is a sparse file of size bytes, 512 of them data. */
static void sparse_archive(const char *path, la_int64_t size)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "blobs/sha256/sparse");
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, size);
	archive_entry_sparse_add_entry(ae, size - 512, 512);
	assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
	char block[512];
	memset(block, 'y', sizeof(block));
	assert_int_equal(archive_write_data(a, block, sizeof(block)), 512);
	archive_entry_free(ae);
	archive_write_close(a);
	archive_write_free(a);
}

static void test_docker_archive_size_caps(void **state)
{
	/* A hardlink carrying 72 MiB of zeros (a few KB of zstd): under a
	 * 1 MiB cap (1.25 MiB + 64 MiB for the members) it is refused at its
	 * header, before libarchive decompresses its data to skip it. */
	char *tar = fx_path(*state, "hardlink.tar.zst");
	struct archive *a = fx_raw_open(tar, FX_ZSTD);
	fx_raw_pax(a, "comment", "pax");
	fx_raw_header(a, "f", '0', NULL, 1);
	fx_raw_data(a, "x", 1);
	fx_raw_header(a, "h", '1', "f", (unsigned long long)72 << 20);
	fx_raw_data(a, NULL, (unsigned long long)72 << 20);
	fx_raw_close(a);
	struct stat st;
	assert_int_equal(stat(tar, &st), 0);
	assert_true(st.st_size < 64 << 10);
	expect_refused_capped(*state, tar, 1 << 20, "members larger than");
	free(tar);

	/* A 50 GiB sparse member in a few KB: its apparent size counts. */
	tar = fx_path(*state, "sparse.tar");
	sparse_archive(tar, (la_int64_t)50 << 30);
	assert_int_equal(stat(tar, &st), 0);
	assert_true(st.st_size < 64 << 10);
	expect_refused(*state, tar, "members larger than");
	/* A small one is refused as sparse. */
	sparse_archive(tar, 1 << 20);
	expect_refused(*state, tar, "sparse members are not allowed");
	free(tar);
}

/* A layout whose layers are a real one and blobs of the given sizes (sparse
 * files with made-up digests), as the manifest says. */
static void layout_with_big_blobs(const char *src, const unsigned long long *sizes, size_t n)
{
	struct fx_desc layers[4];
	layers[0] = fx_layer(src, base, N(base), FX_GZIP);
	for (size_t i = 0; i < n; i++) {
		struct fx_desc *d = &layers[1 + i];
		memset(d, 0, sizeof(*d));
		snprintf(d->digest, sizeof(d->digest), "sha256:%064zx", i + 1);
		memcpy(d->diff_id, d->digest, sizeof(d->diff_id));
		d->size = sizes[i];
		d->media_type = fx_layer_type(FX_PLAIN);
		char *path = blob_path(src, d->digest);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)sizes[i]), 0);
		close(fd);
		free(path);
	}
	struct fx_desc config = fx_config(src, layers, 1 + n, "amd64");
	struct fx_desc m = fx_manifest(src, &config, layers, 1 + n);
	fx_index(src, &m, NULL, 1);
}

static void test_layer_blobs_capped(void **state)
{
	char *src = fx_path(*state, "src");
	/* 100 GiB under the default 16 GiB cap (blobs may total 20 GiB and
	 * 64 MiB): refused before a byte of it is hashed. */
	const unsigned long long huge[] = { (unsigned long long)100 << 30 };
	layout_with_big_blobs(src, huge, 1);
	expect_refused(*state, src, "layer 2 sha256:");
	expect_refused(*state, src, "the size cap");
	testutil_rm_rf(src);
	/* The blobs count in all: two of 800 MiB under a 1 GiB cap. */
	const unsigned long long two[] = { (unsigned long long)800 << 20, (unsigned long long)800 << 20 };
	layout_with_big_blobs(src, two, 2);
	expect_refused_capped(*state, src, (uint64_t)1 << 30, "layer 3 sha256:");
	free(src);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		T(test_layout_three_compressions), T(test_index_selects_amd64), T(test_tampering_refused),
		T(test_bad_documents_refused),     T(test_docker_archive),     T(test_docker_archive_links),
		T(test_oci_archive_same_digest),   T(test_docker_archive_staging_names), T(test_docker_archive_size_caps),
		T(test_layer_blobs_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
