/*
 * One import, start to end (see image_store.h): read and verify the source
 * (oci.c), and unless the image is already present, merge its layers
 * (layers.c), write the squashfs through a temporary file (squashfs.c),
 * fsync and rename it, then write the metadata the same way. Every error
 * path removes what this import created, so a refused image leaves nothing;
 * after a rename it removes only the file that it renamed there (by device
 * and inode), since a concurrent import of the same digest, or `image rm`,
 * may have replaced it under the same name.
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

/* A file this import renamed into place. */
struct placed {
	bool set;
	dev_t dev;
	ino_t ino;
};

static bool is_placed(const char *path, const struct placed *p)
{
	struct stat st;
	return p->set && lstat(path, &st) == 0 && st.st_dev == p->dev && st.st_ino == p->ino;
}

/* Writes data to a temporary file beside path, fsyncs it, makes it 0644 and
 * renames it to path; *ret_placed names the file that was renamed. */
static int place_file(const char *path, const void *data, size_t n, struct placed *ret_placed)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = fs_mkstemp(path, 0644, &tmp);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fs_write_all(fd, data, n);
	if (r >= 0 && (fsync(fd) < 0 || fchmod(fd, 0644) < 0 || fstat(fd, &st) < 0 || rename(tmp, path) < 0))
		r = negative_errno();
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	*ret_placed = (struct placed){ .set = true, .dev = st.st_dev, .ino = st.st_ino };
	return 0;
}

void image_import_result_free(struct image_import_result *r)
{
	if (r) {
		free(r->path);
		r->path = NULL;
	}
}

static int write_meta(const char *path, const struct oci_image *img, const struct image_info *info,
		      struct placed *ret_placed, struct error *err)
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
	int r = place_file(path, with_nl, strlen(with_nl), ret_placed);
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

/* Writes the squashfs to a temporary file and renames it to final. */
static int build(const char *dir, const char *final, const struct oci_image *img, const struct image_import_options *o,
		 struct image_info *info, struct placed *ret_placed, struct error *err)
{
	_cleanup_(image_tree_freep) struct image_tree *tree = NULL;
	int r = image_tree_build(img->layers, img->n_layers, &o->limits, &tree, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *tmp = NULL;
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
	*ret_placed = (struct placed){ .set = true, .dev = st.st_dev, .ino = st.st_ino };
	struct image_tree_stats stats;
	image_tree_get_stats(tree, &stats);
	info->entries = stats.entries;
	info->bytes = stats.bytes;
	info->squashfs_bytes = (uint64_t)st.st_size;
	return 0;
}

static int fault(const struct image_import_options *o, const char *step, struct error *err)
{
	int r = o->test_fault ? o->test_fault(step, o->test_userdata) : 0;
	return r < 0 ? error_set(err, r, "injected fault after the %s was renamed into place", step) : 0;
}

/* After a failure: removes what this import renamed into place, and only
 * that. Its squashfs also stays when valid metadata of the digest is there
 * (another import's, since this one's went first): the two make a whole
 * image, and that import may have committed while its own squashfs was
 * replaced by this identical one. */
static void undo(const char *dir, const char *digest, const char *meta, const struct placed *meta_placed,
		 const char *sqsh, const struct placed *sqsh_placed)
{
	if (is_placed(meta, meta_placed))
		unlink(meta);
	if (!is_placed(sqsh, sqsh_placed))
		return;
	struct image_info other;
	struct error ignored = { 0 };
	if (image_store_info(dir, digest, &other, &ignored) == 0 && other.valid)
		return;
	unlink(sqsh);
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
	_cleanup_free_ char *meta = NULL, *sqsh = NULL;
	if (asprintf(&meta, "%s/%s%s", dir, hex, IMAGE_META_SUFFIX) < 0 ||
	    asprintf(&sqsh, "%s/%s%s", dir, hex, IMAGE_SQUASHFS_SUFFIX) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	struct placed sqsh_placed = { 0 }, meta_placed = { 0 };
	if ((r = build(dir, sqsh, &img, o, &info, &sqsh_placed, err)) < 0)
		return r;
	now_utc(info.imported, sizeof(info.imported));
	r = fault(o, "squashfs", err);
	if (r >= 0)
		r = write_meta(meta, &img, &info, &meta_placed, err);
	if (r >= 0)
		r = fault(o, "metadata", err);
	if (r >= 0 && (r = sync_dir(dir)) < 0)
		error_set(err, r, "%s: %s", dir, strerror(-r));
	if (r >= 0 && (r = image_store_path(dir, img.digest, &res.path, err)) < 0)
		error_set(err, r, "image %s vanished after its import", img.digest);
	if (r < 0) {
		undo(dir, img.digest, meta, &meta_placed, sqsh, &sqsh_placed);
		return r;
	}
	info.valid = true;
	res.info = info;
	*ret = res;
	return 0;
}
