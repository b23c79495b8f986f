/*
 * One import, start to end (see image_store.h): read and verify the source
 * (oci.c), and unless the image is already present, merge its layers
 * (layers.c), write the squashfs through a temporary file (squashfs.c),
 * fsync and rename it, then write the metadata the same way. Every error
 * path removes what this import created, so a refused image leaves nothing.
 */
#include "image_store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs.h"
#include "layers.h"
#include "oci.h"

/* json_decrefp comes with jansson. */
#define _cleanup_json_ _cleanup_(json_decrefp)
DEFINE_CLEANUP_FUNC(struct image_tree, image_tree_free)

static void oci_image_freep(struct oci_image *img) { oci_image_free(img); }

void image_import_result_free(struct image_import_result *r)
{
	if (r) {
		free(r->path);
		r->path = NULL;
	}
}

static int write_meta(const char *path, const struct oci_image *img, const struct image_info *info, struct error *err)
{
	_cleanup_json_ json_t *layers = json_array();
	for (size_t i = 0; layers && i < img->n_layers; i++)
		if (json_array_append_new(layers, json_string(img->layers[i].digest)) < 0)
			return error_set(err, -ENOMEM, "out of memory");
	_cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s, s:O, s:I, s:I, s:I, s:s, s:s}", "digest", info->digest,
					     "source", info->source, "config", img->config_digest, "layers", layers,
					     "entries", (json_int_t)info->entries, "bytes", (json_int_t)info->bytes,
					     "squashfs_bytes", (json_int_t)info->squashfs_bytes, "compressor",
					     info->compressor, "imported", info->imported);
	_cleanup_free_ char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	if (!text)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_free_ char *with_nl = NULL;
	if (asprintf(&with_nl, "%s\n", text) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	int r = fs_write_atomic(path, with_nl, strlen(with_nl), 0644, true);
	if (r >= 0 && chmod(path, 0644) < 0)
		r = negative_errno();
	if (r < 0)
		return error_set(err, r, "%s: %s", path, strerror(-r));
	return 0;
}

static void now_utc(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int sync_dir(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 || fsync(fd) < 0 ? negative_errno() : 0;
}

/* Writes the squashfs to a temporary file and renames it into place. */
static int build(const char *dir, const char *hex, const struct oci_image *img, const struct image_import_options *o,
		 struct image_info *info, struct error *err)
{
	_cleanup_(image_tree_freep) struct image_tree *tree = NULL;
	int r = image_tree_build(img->layers, img->n_layers, &o->limits, &tree, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *final = NULL, *tmp = NULL;
	if (asprintf(&final, "%s/%s%s", dir, hex, IMAGE_SQUASHFS_SUFFIX) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_close_ int fd = fs_mkstemp(final, 0644, &tmp);
	if (fd < 0)
		return error_set(err, fd, "cannot create a file in %s: %s", dir, strerror(-fd));
	r = squashfs_write(tree, img->layers, img->n_layers, &o->limits, tmp, &o->squashfs, err);
	struct stat st;
	if (r >= 0 && (fsync(fd) < 0 || fchmod(fd, 0644) < 0 || fstat(fd, &st) < 0))
		r = error_set(err, negative_errno(), "%s: %m", tmp);
	if (r >= 0 && rename(tmp, final) < 0)
		r = error_set(err, negative_errno(), "%s: %m", final);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	struct image_tree_stats stats;
	image_tree_get_stats(tree, &stats);
	info->entries = stats.entries;
	info->bytes = stats.bytes;
	info->squashfs_bytes = (uint64_t)st.st_size;
	return 0;
}

int image_import(const char *source, const struct image_import_options *o, struct image_import_result *ret,
		 struct error *err)
{
	const char *dir = o->images_dir;
	int r = fs_mkdir_p(dir, 0755);
	if (r < 0)
		return error_set(err, r, "images directory %s: %s", dir, strerror(-r));
	_cleanup_(oci_image_freep) struct oci_image img = { 0 };
	if ((r = oci_image_open(source, dir, &o->limits, &img, err)) < 0)
		return r;
	char hex[DIGEST_HEX_LEN + 1];
	memcpy(hex, img.digest + strlen(DIGEST_PREFIX), sizeof(hex));
	struct image_import_result res = { 0 };
	struct error ignored = { 0 };
	if (image_store_path(dir, img.digest, &res.path, &ignored) == 0) {
		res.already = true;
		if ((r = image_store_info(dir, img.digest, &res.info, err)) < 0) {
			free(res.path);
			return r;
		}
		*ret = res;
		return 0;
	}

	struct image_info info = { 0 };
	memcpy(info.digest, img.digest, sizeof(info.digest));
	snprintf(info.source, sizeof(info.source), "%s", image_source_kind_name(img.kind));
	snprintf(info.compressor, sizeof(info.compressor), "%s", o->squashfs.compressor ? o->squashfs.compressor : "zstd");
	info.layers = img.n_layers;
	if ((r = build(dir, hex, &img, o, &info, err)) < 0)
		return r;
	now_utc(info.imported, sizeof(info.imported));
	_cleanup_free_ char *meta = NULL, *sqsh = NULL;
	if (asprintf(&meta, "%s/%s%s", dir, hex, IMAGE_META_SUFFIX) < 0 ||
	    asprintf(&sqsh, "%s/%s%s", dir, hex, IMAGE_SQUASHFS_SUFFIX) < 0)
		r = error_set(err, -ENOMEM, "out of memory");
	if (r >= 0)
		r = write_meta(meta, &img, &info, err);
	if (r >= 0 && (r = sync_dir(dir)) < 0)
		error_set(err, r, "%s: %s", dir, strerror(-r));
	if (r >= 0 && (r = image_store_path(dir, img.digest, &res.path, err)) < 0)
		error_set(err, r, "image %s vanished after its import", img.digest);
	if (r < 0) {
		if (sqsh)
			unlink(sqsh);
		if (meta)
			unlink(meta);
		return r;
	}
	info.valid = true;
	res.info = info;
	*ret = res;
	return 0;
}
