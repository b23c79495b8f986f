/*
 * The image store's files (see image_store.h): digest checks, paths, the
 * metadata file, listing and removal. Imports live in import.c.
 */
#include "image_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "fs.h"

#define MAX_META ((size_t)1 << 20)
/* Images one store lists at most (a guard, not a policy). */
#define MAX_IMAGES 100000

/* json_decrefp comes with jansson. */
#define _cleanup_json_ _cleanup_(json_decrefp)

int image_digest_check(const char *digest, char hex[DIGEST_HEX_LEN + 1], struct error *err)
{
	size_t plen = strlen(DIGEST_PREFIX);
	if (!digest || strlen(digest) != DIGEST_STR_LEN || strncmp(digest, DIGEST_PREFIX, plen) != 0 ||
	    strspn(digest + plen, "0123456789abcdef") != DIGEST_HEX_LEN)
		return error_set(err, -EINVAL, "'%.100s' is not an image digest (sha256:<64 lowercase hex>)",
				 digest ? digest : "");
	if (hex) {
		memcpy(hex, digest + plen, DIGEST_HEX_LEN);
		hex[DIGEST_HEX_LEN] = '\0';
	}
	return 0;
}

static char *store_file(const char *dir, const char *hex, const char *suffix)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s%s", dir, hex, suffix) < 0 ? NULL : p;
}

static bool is_regular(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int image_store_path(const char *images_dir, const char *digest, char **ret_path, struct error *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	int r = image_digest_check(digest, hex, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *dir = realpath(images_dir, NULL);
	if (!dir)
		return error_set(err, errno == ENOENT ? -ENOENT : negative_errno(), "image %s is not imported (%s: %m)",
				 digest, images_dir);
	_cleanup_free_ char *sqsh = store_file(dir, hex, IMAGE_SQUASHFS_SUFFIX);
	_cleanup_free_ char *meta = store_file(dir, hex, IMAGE_META_SUFFIX);
	if (!sqsh || !meta)
		return error_set(err, -ENOMEM, "out of memory");
	if (!is_regular(sqsh) || !is_regular(meta))
		return error_set(err, -ENOENT, "image %s is not imported in %s (hpcc image import)", digest, dir);
	*ret_path = TAKE_PTR(sqsh);
	return 0;
}

static uint64_t json_u64(json_t *obj, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(obj, key));
	return v > 0 ? (uint64_t)v : 0;
}

static void copy_str(char *dst, size_t size, json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	snprintf(dst, size, "%s", v ? v : "?");
}

/* Reads <hex>.json; fills what it can and sets valid when all is well. */
static int read_info(const char *dir, const char *hex, struct image_info *info)
{
	*info = (struct image_info){ 0 };
	snprintf(info->digest, sizeof(info->digest), "%s%s", DIGEST_PREFIX, hex);
	snprintf(info->source, sizeof(info->source), "?");
	snprintf(info->compressor, sizeof(info->compressor), "?");
	snprintf(info->imported, sizeof(info->imported), "?");
	_cleanup_free_ char *meta = store_file(dir, hex, IMAGE_META_SUFFIX);
	_cleanup_free_ char *sqsh = store_file(dir, hex, IMAGE_SQUASHFS_SUFFIX);
	if (!meta || !sqsh)
		return -ENOMEM;
	struct stat st;
	if (lstat(sqsh, &st) < 0 || !S_ISREG(st.st_mode))
		return -ENOENT;
	info->squashfs_bytes = (uint64_t)st.st_size;
	_cleanup_buf_ struct buf text;
	buf_init(&text, MAX_META + 1);
	int r = fs_read_file(meta, MAX_META, &text);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *j = json_loadb(text.data, text.len, 0, NULL);
	const char *dg = json_string_value(json_object_get(j, "digest"));
	if (!json_is_object(j) || !dg || strcmp(dg, info->digest) != 0)
		return 0;
	copy_str(info->source, sizeof(info->source), j, "source");
	copy_str(info->compressor, sizeof(info->compressor), j, "compressor");
	copy_str(info->imported, sizeof(info->imported), j, "imported");
	info->entries = json_u64(j, "entries");
	info->bytes = json_u64(j, "bytes");
	info->layers = json_array_size(json_object_get(j, "layers"));
	info->valid = true;
	return 0;
}

int image_store_info(const char *images_dir, const char *digest, struct image_info *ret, struct error *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	int r = image_digest_check(digest, hex, err);
	if (r < 0)
		return r;
	struct image_info info;
	r = read_info(images_dir, hex, &info);
	if (r == -ENOENT)
		return error_set(err, r, "image %s is not imported in %s", digest, images_dir);
	if (r < 0)
		return error_set(err, r, "image %s: cannot read its metadata (%s)", digest, strerror(-r));
	*ret = info;
	return 0;
}

static int by_import_time(const void *a, const void *b)
{
	const struct image_info *x = a, *y = b;
	int c = strcmp(x->imported, y->imported);
	return c ? c : strcmp(x->digest, y->digest);
}

/* "<64 lowercase hex>.json": the names the store gives its metadata. */
static bool is_meta_name(const char *name, char hex[DIGEST_HEX_LEN + 1])
{
	if (strlen(name) != DIGEST_HEX_LEN + strlen(IMAGE_META_SUFFIX) ||
	    strcmp(name + DIGEST_HEX_LEN, IMAGE_META_SUFFIX) != 0 || strspn(name, "0123456789abcdef") != DIGEST_HEX_LEN)
		return false;
	memcpy(hex, name, DIGEST_HEX_LEN);
	hex[DIGEST_HEX_LEN] = '\0';
	return true;
}

int image_store_list(const char *images_dir, struct image_info **ret, size_t *ret_n, struct error *err)
{
	DIR *d = opendir(images_dir);
	if (!d) {
		if (errno == ENOENT) {
			*ret = NULL;
			*ret_n = 0;
			return 0;
		}
		return error_set(err, negative_errno(), "%s: %m", images_dir);
	}
	struct image_info *list = NULL;
	size_t n = 0, alloc = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char hex[DIGEST_HEX_LEN + 1];
		if (!is_meta_name(de->d_name, hex))
			continue;
		if (n == MAX_IMAGES) {
			r = error_set(err, -E2BIG, "%s: more than %d images", images_dir, MAX_IMAGES);
			break;
		}
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			struct image_info *g = realloc(list, alloc * sizeof(*g));
			if (!g) {
				r = error_set(err, -ENOMEM, "out of memory");
				break;
			}
			list = g;
		}
		int e = read_info(images_dir, hex, &list[n]);
		if (e == -ENOENT)
			continue;  /* metadata without its squashfs: not an image */
		n++;
	}
	closedir(d);
	if (r < 0) {
		free(list);
		return r;
	}
	if (n > 1)
		qsort(list, n, sizeof(*list), by_import_time);
	*ret = list;
	*ret_n = n;
	return 0;
}

int image_store_remove(const char *images_dir, const char *digest, struct error *err)
{
	char hex[DIGEST_HEX_LEN + 1];
	int r = image_digest_check(digest, hex, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *meta = store_file(images_dir, hex, IMAGE_META_SUFFIX);
	_cleanup_free_ char *sqsh = store_file(images_dir, hex, IMAGE_SQUASHFS_SUFFIX);
	if (!meta || !sqsh)
		return error_set(err, -ENOMEM, "out of memory");
	/* The metadata first: without it the image is gone, even if the
	 * squashfs cannot be removed. */
	bool had_meta = unlink(meta) == 0;
	if (!had_meta && errno != ENOENT)
		return error_set(err, negative_errno(), "%s: %m", meta);
	bool had_sqsh = unlink(sqsh) == 0;
	if (!had_sqsh && errno != ENOENT)
		return error_set(err, negative_errno(), "%s: %m", sqsh);
	if (!had_meta && !had_sqsh)
		return error_set(err, -ENOENT, "image %s is not imported in %s", digest, images_dir);
	return 0;
}
