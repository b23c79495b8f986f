/*
 * Docker archives (see docker_archive.h). Unpacking writes only regular
 * files and directories that it creates itself below a fresh staging
 * directory, with every member name checked like a layer path, so no member
 * can reach outside it; links become aliases. Every member's stated size
 * counts against the cap before its data is read or skipped, and sparse
 * members are refused, so no member can make the unpacking read or write
 * more than the cap. Staged names are short enough (and shallow enough) that
 * the directory can always be removed again, which is done relative to
 * directory descriptors. A classic archive's image has no manifest digest of
 * its own: it is named by the digest of a canonical OCI manifest built from
 * its config and layers (docs/images.md).
 */
#include "docker_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"
#include "layers.h"

/* Members of one archive, and how deep aliases may chain. */
#define MAX_MEMBERS 100000
#define MAX_ALIAS_HOPS 8
/* Path components of a staged member ("blobs/sha256/<hex>" has 3; docker
 * archives use no more). It bounds the directory descriptors that removing
 * the staging directory holds open at once. */
#define MAX_MEMBER_DEPTH 16

/* json_decrefp comes with jansson. */
#define _cleanup_json_ _cleanup_(json_decrefp)

struct docker_alias {
	char *name;
	char *target;  /* normalised, relative to the archive's root */
};

static void keep_first(int *r, int e)
{
	if (*r == 0 && e < 0)
		*r = e;
}

/* Removes everything below the directory fd (taken, and closed) by names
 * relative to it, so that no path length limits the removal, and without
 * following symlinks (a symlink is unlinked, a directory is opened with
 * O_NOFOLLOW). depth counts the directories open above fd; nothing deeper
 * than MAX_MEMBER_DEPTH is ever staged. Goes on after an error and returns
 * the first. */
static int remove_below(int fd, unsigned depth)
{
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int e = negative_errno();
		close(fd);
		return e;
	}
	int r = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(dir))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		bool is_dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno != ENOENT)
					keep_first(&r, negative_errno());
				continue;
			}
			is_dir = S_ISDIR(st.st_mode);
		}
		if (is_dir) {
			if (depth + 1 >= MAX_MEMBER_DEPTH) {
				keep_first(&r, -ELOOP);
				continue;
			}
			int child = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (child < 0) {
				keep_first(&r, negative_errno());
				continue;
			}
			keep_first(&r, remove_below(child, depth + 1));
		}
		if (unlinkat(dirfd(dir), name, is_dir ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
			keep_first(&r, negative_errno());
	}
	if (errno != 0)
		keep_first(&r, negative_errno());
	closedir(dir);
	return r;
}

int docker_archive_cleanup(struct docker_archive *d, struct error *err)
{
	if (!d)
		return 0;
	int r = 0;
	if (d->dirfd >= 0) {
		int fd = openat(d->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r = fd < 0 ? negative_errno() : remove_below(fd, 0);
		close(d->dirfd);
		d->dirfd = -1;
	}
	/* The staging directory's own path is short: its parent's and 14
	 * bytes. */
	if (d->dir && rmdir(d->dir) < 0 && errno != ENOENT)
		keep_first(&r, negative_errno());
	if (r < 0)
		error_set(err, r, "cannot remove the staging directory %s: %s", d->dir, strerror(-r));
	free(d->dir);
	d->dir = NULL;
	for (size_t i = 0; i < d->n_aliases; i++) {
		free(d->aliases[i].name);
		free(d->aliases[i].target);
	}
	free(d->aliases);
	d->aliases = NULL;
	d->n_aliases = 0;
	return r;
}

void docker_archive_free(struct docker_archive *d)
{
	struct error ignored = { 0 };
	docker_archive_cleanup(d, &ignored);
}

/* Creates the directories of path's parent below dirfd. */
static int make_parents(int dirfd, const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	for (char *p = copy; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdirat(dirfd, copy, 0700) < 0 && errno != EEXIST)
			return negative_errno();
		struct stat st;
		if (fstatat(dirfd, copy, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return negative_errno();
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		*p = '/';
	}
	return 0;
}

/* Copies a member's data, which comes in one piece from offset 0 and ends
 * within the size its header stated (and unpack_all counted): a hole (a
 * sparse map that only shows when the data is read) or more data is
 * refused. */
static int copy_member(struct archive *a, int fd, const struct image_limits *lim, uint64_t size)
{
	const void *block;
	size_t len;
	la_int64_t offset;
	uint64_t written = 0;
	for (;;) {
		if (image_cancelled(lim))
			return -EINTR;
		int r = archive_read_data_block(a, &block, &len, &offset);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r != ARCHIVE_OK)
			return -EIO;
		if (offset < 0 || (uint64_t)offset != written)
			return -ESPIPE;
		if (len > size - written)
			return -EFBIG;
		r = fs_write_all(fd, block, len);
		if (r < 0)
			return r;
		written += len;
	}
}

static int add_alias(struct docker_archive *d, const char *name, const char *target)
{
	struct docker_alias *grown = realloc(d->aliases, (d->n_aliases + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	d->aliases = grown;
	struct docker_alias *al = &d->aliases[d->n_aliases];
	al->name = strdup(name);
	al->target = strdup(target);
	if (!al->name || !al->target) {
		free(al->name);
		free(al->target);
		return -ENOMEM;
	}
	d->n_aliases++;
	return 0;
}

/* A symlink's target, resolved lexically against the link's directory
 * (name is normalised); NULL when it is absolute or climbs out. */
static char *resolve_symlink(const char *name, const char *target)
{
	if (!target || !target[0] || target[0] == '/' || strlen(target) > IMAGE_MAX_PATH)
		return NULL;
	_cleanup_buf_ struct buf b;
	buf_init(&b, 2 * IMAGE_MAX_PATH + 2);
	const char *slash = strrchr(name, '/');
	if (slash)
		buf_append(&b, name, (size_t)(slash - name));
	for (const char *p = target; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (b.len == 0)
				return NULL;
			char *cut = memrchr(b.data, '/', b.len);
			b.len = cut ? (size_t)(cut - b.data) : 0;
			b.data[b.len] = '\0';
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (b.len)
				buf_append_char(&b, '/');
			buf_append(&b, p, n);
		}
		p += n;
		if (*p == '/')
			p++;
	}
	if (b.error || b.len == 0)
		return NULL;
	return buf_steal(&b);
}

/* Names of staged files: short enough that the staging directory's path,
 * a slash and the name fit in PATH_MAX (so that any tool can remove what a
 * killed import left), and at most MAX_MEMBER_DEPTH components. */
static int check_staged_name(const struct docker_archive *d, const char *name, const char *path, struct error *err)
{
	if (strlen(name) > d->max_name)
		return error_set(err, -ENAMETOOLONG, "%s: member '%.200s...': name longer than %zu bytes", path, name,
				 d->max_name);
	size_t depth = 1;
	for (const char *p = name; (p = strchr(p, '/')); p++)
		depth++;
	if (depth > MAX_MEMBER_DEPTH)
		return error_set(err, -ENAMETOOLONG, "%s: member '%.200s': nested more than %d deep", path, name,
				 MAX_MEMBER_DEPTH);
	return 0;
}

/* One member: a regular file is copied into the staging directory, a link
 * becomes an alias, anything else is skipped (its size was counted). */
static int unpack_member(struct docker_archive *d, struct archive *a, struct archive_entry *e, const char *path,
			 const struct image_limits *lim, struct error *err)
{
	_cleanup_free_ char *name = NULL;
	const char *reason = NULL;
	const char *raw = archive_entry_pathname(e);
	if (!raw || layer_path_check(raw, &name, &reason) < 0)
		return error_set(err, -EINVAL, "%s: member '%.200s': %s", path, raw ? raw : "", reason ? reason : "no name");
	/* A sparse member's apparent size can be far more than its bytes in
	 * the archive; docker never writes one. */
	if (archive_entry_sparse_count(e) > 0)
		return error_set(err, -EINVAL, "%s: member '%.200s': sparse members are not allowed", path, name);
	const char *hard = archive_entry_hardlink(e);
	mode_t type = archive_entry_filetype(e);
	if (!name[0] || (!hard && type == AE_IFDIR))
		return 0;
	if (hard || type == AE_IFLNK) {
		_cleanup_free_ char *target = NULL;
		bool bad;
		if (hard)
			bad = layer_path_check(hard, &target, &reason) < 0 || !target[0];
		else
			bad = !(target = resolve_symlink(name, archive_entry_symlink(e)));
		if (bad)
			return error_set(err, -EINVAL, "%s: member '%.200s': link leaves the archive", path, name);
		return add_alias(d, name, target) < 0 ? error_set(err, -ENOMEM, "out of memory") : 0;
	}
	if (type != AE_IFREG)
		return 0;  /* nothing else has a place in a docker archive */
	int r = check_staged_name(d, name, path, err);
	if (r < 0)
		return r;
	la_int64_t size = archive_entry_size(e);
	if (size < 0)
		return error_set(err, -EINVAL, "%s: member '%.200s': no size", path, name);
	r = make_parents(d->dirfd, name);
	_cleanup_close_ int fd = -1;
	if (r >= 0) {
		fd = openat(d->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		r = fd < 0 ? negative_errno() : 0;
	}
	if (r == -EEXIST)
		return error_set(err, r, "%s: member '%.200s' appears twice", path, name);
	if (r < 0)
		return error_set(err, r, "%s: member '%.200s': %s", path, name, strerror(-r));
	r = copy_member(a, fd, lim, (uint64_t)size);
	if (r == -EFBIG)
		return error_set(err, r, "%s: member '%.200s': more data than its header says", path, name);
	if (r == -ESPIPE)
		return error_set(err, -EINVAL, "%s: member '%.200s': sparse members are not allowed", path, name);
	if (r == -EINTR)
		return error_set(err, r, "%s: interrupted", path);
	if (r < 0)
		return error_set(err, r, "%s: member '%.200s': cannot unpack (%s)", path, name,
				 archive_error_string(a) ? archive_error_string(a) : strerror(-r));
	return 0;
}

static int unpack_all(struct docker_archive *d, const char *path, const struct image_limits *lim, struct error *err)
{
	struct archive *a = archive_read_new();
	if (!a)
		return error_set(err, -ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	int r = 0;
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		r = error_set(err, -EIO, "%s: not a readable tar (%s)", path, archive_error_string(a));
		archive_read_free(a);
		return r;
	}
	uint64_t cap = image_source_cap(lim), total = 0;
	size_t members = 0;
	for (;;) {
		struct archive_entry *e;
		int status = archive_read_next_header(a, &e);
		if (status == ARCHIVE_EOF)
			break;
		if (status != ARCHIVE_OK && status != ARCHIVE_WARN) {
			r = error_set(err, -EIO, "%s: not a readable tar (%s)", path, archive_error_string(a));
			break;
		}
		if (++members > MAX_MEMBERS) {
			r = error_set(err, -E2BIG, "%s: more than %d members", path, MAX_MEMBERS);
			break;
		}
		/* Counted whatever the member is, before its data is read or
		 * skipped: libarchive decompresses skipped data too, and a
		 * hardlink may carry data in a pax archive. */
		la_int64_t size = archive_entry_size(e);
		if (size > 0 && (uint64_t)size > cap - total) {
			r = error_set(err, -EFBIG, "%s: members larger than %llu bytes in all", path, (unsigned long long)cap);
			break;
		}
		total += size > 0 ? (uint64_t)size : 0;
		if ((r = unpack_member(d, a, e, path, lim, err)) < 0)
			break;
	}
	archive_read_free(a);
	return r;
}

int docker_archive_unpack(const char *path, const char *staging_parent, const struct image_limits *lim,
			  struct docker_archive *ret, struct error *err)
{
	struct docker_archive d = { .dirfd = -1 };
	_cleanup_free_ char *tmpl = NULL;
	if (asprintf(&tmpl, "%s/.import-XXXXXX", staging_parent) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (!mkdtemp(tmpl))
		return error_set(err, negative_errno(), "cannot create a staging directory in %s: %m", staging_parent);
	d.dir = TAKE_PTR(tmpl);
	int r;
	d.dirfd = open(d.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d.dirfd < 0)
		r = error_set(err, negative_errno(), "%s: %m", d.dir);
	else {
		/* The absolute path, when there is one: the name cap is about
		 * the full path of a staged file. */
		_cleanup_free_ char *real = realpath(d.dir, NULL);
		size_t len = strlen(real ? real : d.dir);
		if (len + 2 >= PATH_MAX)
			r = error_set(err, -ENAMETOOLONG, "%s: path too long for a staging directory", d.dir);
		else {
			d.max_name = PATH_MAX - len - 2;
			r = unpack_all(&d, path, lim, err);
		}
	}
	if (r < 0) {
		docker_archive_free(&d);
		return r;
	}
	*ret = d;
	return 0;
}

static const char *find_alias(const struct docker_archive *d, const char *name)
{
	for (size_t i = 0; i < d->n_aliases; i++)
		if (strcmp(d->aliases[i].name, name) == 0)
			return d->aliases[i].target;
	return NULL;
}

int docker_archive_open(const struct docker_archive *d, const char *name, struct error *err)
{
	_cleanup_free_ char *norm = NULL;
	const char *reason = NULL;
	if (layer_path_check(name, &norm, &reason) < 0 || !norm[0])
		return error_set(err, -EINVAL, "docker archive: member name '%.200s': %s", name, reason ? reason : "empty");
	const char *cur = norm;
	for (int hops = 0; hops <= MAX_ALIAS_HOPS; hops++) {
		const char *next = find_alias(d, cur);
		if (!next) {
			int fd = oci_open_beneath(d->dirfd, cur, O_RDONLY);
			if (fd < 0)
				return error_set(err, fd, "docker archive: no member '%.200s'", name);
			return fd;
		}
		cur = next;
	}
	return error_set(err, -ELOOP, "docker archive: member '%.200s': links chain too long", name);
}

int docker_archive_has(const struct docker_archive *d, const char *name)
{
	struct error ignored = { 0 };
	int fd = docker_archive_open(d, name, &ignored);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* The hex of a member named "<hex>.json" or "blobs/sha256/<hex>", or NULL. */
static const char *name_digest(const char *name, char hex[DIGEST_HEX_LEN + 1])
{
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	size_t n = strlen(base);
	if (n != DIGEST_HEX_LEN && !(n == DIGEST_HEX_LEN + 5 && strcmp(base + DIGEST_HEX_LEN, ".json") == 0))
		return NULL;
	if (strspn(base, "0123456789abcdef") != DIGEST_HEX_LEN)
		return NULL;
	memcpy(hex, base, DIGEST_HEX_LEN);
	hex[DIGEST_HEX_LEN] = '\0';
	return hex;
}

int docker_archive_load_classic(const struct docker_archive *d, const struct image_limits *lim,
				struct oci_image *img, struct error *err)
{
	_cleanup_buf_ struct buf text;
	buf_init(&text, IMAGE_MAX_JSON + 1);
	struct digest dg;
	_cleanup_close_ int mfd = docker_archive_open(d, "manifest.json", err);
	if (mfd < 0)
		return mfd;
	int r = oci_read_hashed(mfd, IMAGE_MAX_JSON, &text, &dg);
	if (r < 0)
		return error_set(err, r, "manifest.json: %s", r == -EFBIG ? "larger than 4 MiB" : strerror(-r));
	_cleanup_json_ json_t *list = NULL;
	if ((r = oci_parse_json(&text, "manifest.json", &list, err)) < 0)
		return r;
	if (!json_is_array(list) || json_array_size(list) != 1)
		return error_set(err, -EBADMSG, "manifest.json: %zu images; a docker archive must hold exactly one",
				 json_array_size(list));
	json_t *entry = json_array_get(list, 0);
	const char *config_name = json_string_value(json_object_get(entry, "Config"));
	json_t *layers = json_object_get(entry, "Layers");
	if (!config_name || !json_is_array(layers) || json_array_size(layers) == 0 ||
	    json_array_size(layers) > IMAGE_MAX_LAYERS)
		return error_set(err, -EBADMSG, "manifest.json: needs Config and 1 to %d Layers", IMAGE_MAX_LAYERS);

	/* The config: its digest names it, and must match its file name. */
	_cleanup_close_ int cfd = docker_archive_open(d, config_name, err);
	if (cfd < 0)
		return cfd;
	buf_reset(&text);
	struct digest config_digest;
	if ((r = oci_read_hashed(cfd, IMAGE_MAX_JSON, &text, &config_digest)) < 0)
		return error_set(err, r, "config %.200s: %s", config_name, r == -EFBIG ? "larger than 4 MiB" : strerror(-r));
	uint64_t config_size = text.len;
	digest_to_string(&config_digest, img->config_digest);
	char hex[DIGEST_HEX_LEN + 1];
	if (name_digest(config_name, hex) && strcmp(hex, img->config_digest + strlen(DIGEST_PREFIX)) != 0)
		return error_set(err, -EBADMSG, "config %.200s: digest mismatch (the file was altered)", config_name);
	_cleanup_json_ json_t *config = NULL;
	if ((r = oci_parse_json(&text, "config", &config, err)) < 0)
		return r;
	json_t *diff_ids;
	if ((r = oci_check_config(config, "config", &diff_ids, err)) < 0)
		return r;
	size_t n = json_array_size(layers);
	if (json_array_size(diff_ids) != n)
		return error_set(err, -EBADMSG, "config: %zu diff_ids for %zu layers", json_array_size(diff_ids), n);

	img->layers = calloc(n, sizeof(*img->layers));
	if (!img->layers)
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		img->layers[i].fd = -1;
	img->n_layers = n;
	_cleanup_buf_ struct buf canon;
	buf_init(&canon, IMAGE_MAX_JSON);
	buf_printf(&canon,
		   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
		   "\"size\":%llu},\"layers\":[",
		   img->config_digest, (unsigned long long)config_size);
	for (size_t i = 0; i < n; i++) {
		struct image_layer *l = &img->layers[i];
		const char *name = json_string_value(json_array_get(layers, i));
		const char *want = json_string_value(json_array_get(diff_ids, i));
		if (!name || !want)
			return error_set(err, -EBADMSG, "manifest.json: layer %zu is not a name, or no diff_id", i + 1);
		if ((l->fd = docker_archive_open(d, name, err)) < 0)
			return l->fd;
		/* Classic archives hold uncompressed layers: the blob digest is
		 * the diff_id, which the config (named by its digest) lists. */
		struct digest got;
		if ((r = oci_hash_fd(l->fd, UINT64_MAX, lim, &got, &l->size)) < 0)
			return error_set(err, r, "layer %.200s: cannot read (%s)", name, strerror(-r));
		digest_to_string(&got, l->digest);
		if (strcmp(l->digest, want) != 0)
			return error_set(err, -EBADMSG, "layer %zu %.200s: digest %s is not the config's diff_id %.80s", i + 1,
					 name, l->digest, want);
		l->compression = LAYER_PLAIN;
		buf_printf(&canon, "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%llu}",
			   i ? "," : "", l->digest, (unsigned long long)l->size);
	}
	buf_append_str(&canon, "]}");
	if (canon.error)
		return error_set(err, canon.error, "canonical manifest: %s", strerror(-canon.error));
	if ((r = digest_bytes(canon.data, canon.len, &dg)) < 0)
		return error_set(err, r, "digest: %s", strerror(-r));
	digest_to_string(&dg, img->digest);
	return 0;
}
