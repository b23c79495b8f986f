/*
 * OCI image layouts (see oci.h): oci-layout, index.json (and nested
 * indexes), the linux/amd64 image manifest, its config and its layers. Each
 * document is read under IMAGE_MAX_JSON and checked against the digest and
 * size of the descriptor that names it before it is parsed; each layer blob
 * is hashed whole before anything reads it as a tar. index.json itself is
 * the one unverified document: it only points at digests.
 */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "docker_archive.h"
#include "fs.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
/* Indexes nest at most this deep (an index of indexes of manifests is 2). */
#define MAX_INDEX_DEPTH 4
/* Manifests listed by one index, over all nesting. */
#define MAX_MANIFESTS 4096

/* json_decrefp comes with jansson. */
#define _cleanup_json_ _cleanup_(json_decrefp)

const char *image_source_kind_name(enum image_source_kind kind)
{
	switch (kind) {
	case IMAGE_SOURCE_OCI_LAYOUT: return "oci-layout";
	case IMAGE_SOURCE_OCI_ARCHIVE: return "oci-archive";
	case IMAGE_SOURCE_DOCKER_ARCHIVE: return "docker-archive";
	}
	return "unknown";
}

int oci_layer_media_type(const char *media_type, enum layer_compression *ret)
{
	static const struct {
		const char *name;
		enum layer_compression compression;
	} known[] = {
		{ "application/vnd.oci.image.layer.v1.tar", LAYER_PLAIN },
		{ "application/vnd.oci.image.layer.v1.tar+gzip", LAYER_GZIP },
		{ "application/vnd.oci.image.layer.v1.tar+zstd", LAYER_ZSTD },
		{ "application/vnd.docker.image.rootfs.diff.tar", LAYER_PLAIN },
		{ "application/vnd.docker.image.rootfs.diff.tar.gzip", LAYER_GZIP },
		{ "application/vnd.docker.image.rootfs.diff.tar.zstd", LAYER_ZSTD },
	};
	for (size_t i = 0; media_type && i < ARRAY_SIZE(known); i++)
		if (strcmp(media_type, known[i].name) == 0) {
			*ret = known[i].compression;
			return 0;
		}
	return -EPROTONOSUPPORT;
}

int oci_open_beneath(int dirfd, const char *path, int flags)
{
	size_t len = strlen(path);
	if (len == 0 || len > IMAGE_MAX_PATH || !path_is_safe_relative(path, len))
		return -EINVAL;
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	_cleanup_close_ int cur = -1;
	char *part = copy;
	for (;;) {
		char *slash = strchr(part, '/');
		if (slash)
			*slash = '\0';
		int at = cur >= 0 ? cur : dirfd;
		int fd = slash ? openat(at, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
			       : openat(at, part, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			return errno == ENOTDIR && slash ? -ELOOP : negative_errno();
		closep(&cur);
		cur = fd;
		if (!slash)
			break;
		part = slash + 1;
	}
	struct stat st;
	if (fstat(cur, &st) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* O_NONBLOCK was only there so that a FIFO could not hang the open. */
	int fl = fcntl(cur, F_GETFL);
	if (fl < 0 || fcntl(cur, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return negative_errno();
	return TAKE_FD(cur);
}

int oci_read_hashed(int fd, size_t max, struct buf *out, struct digest *ret_digest)
{
	int r = fs_read_fd(fd, max, out);
	if (r < 0)
		return r;
	return digest_bytes(out->data, out->len, ret_digest);
}

int oci_hash_fd(int fd, uint64_t max, const struct image_limits *lim, struct digest *ret_digest, uint64_t *ret_size)
{
	_cleanup_hasher_ struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	_cleanup_free_ char *block = malloc(1 << 20);
	if (!block)
		return -ENOMEM;
	uint64_t total = 0;
	for (;;) {
		if (image_cancelled(lim))
			return -EINTR;
		size_t want = max - total < (1 << 20) ? (size_t)(max - total) : (1 << 20);
		if (want == 0)
			break;
		ssize_t n = pread(fd, block, want, (off_t)total);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		if ((r = hasher_update(&h, block, (size_t)n)) < 0)
			return r;
		total += (uint64_t)n;
	}
	struct digest d;
	if ((r = hasher_final(&h, &d)) < 0)
		return r;
	*ret_digest = d;
	*ret_size = total;
	return 0;
}

int oci_parse_json(const struct buf *text, const char *what, json_t **ret, struct error *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(text->data, text->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return error_set(err, -EBADMSG, "%s: not valid JSON (line %d: %.100s)", what, jerr.line, jerr.text);
	if (!json_is_object(j) && !json_is_array(j)) {
		json_decref(j);
		return error_set(err, -EBADMSG, "%s: not a JSON object", what);
	}
	*ret = j;
	return 0;
}

static const char *json_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int oci_check_config(json_t *config, const char *what, json_t **ret_diff_ids, struct error *err)
{
	const char *os = json_str(config, "os"), *arch = json_str(config, "architecture");
	if (!json_is_object(config) || !os || !arch)
		return error_set(err, -EBADMSG, "%s: no os or architecture", what);
	if (strcmp(os, "linux") != 0 || strcmp(arch, "amd64") != 0)
		return error_set(err, -EPROTONOSUPPORT, "%s: image is for %.40s/%.40s, not linux/amd64", what, os, arch);
	json_t *rootfs = json_object_get(config, "rootfs");
	const char *type = json_str(rootfs, "type");
	json_t *diff_ids = json_object_get(rootfs, "diff_ids");
	if (!type || strcmp(type, "layers") != 0 || !json_is_array(diff_ids))
		return error_set(err, -EBADMSG, "%s: no rootfs of type \"layers\" with diff_ids", what);
	*ret_diff_ids = diff_ids;
	return 0;
}

/* A descriptor: mediaType, digest (sha256 only) and size, all required. */
struct descriptor {
	const char *media_type;
	struct digest digest;
	char digest_str[DIGEST_STR_LEN + 1];
	uint64_t size;
};

static int parse_descriptor(json_t *j, const char *what, struct descriptor *ret, struct error *err)
{
	const char *mt = json_str(j, "mediaType"), *dg = json_str(j, "digest");
	json_t *size = json_object_get(j, "size");
	if (!json_is_object(j) || !mt || !dg || !json_is_integer(size) || json_integer_value(size) < 0)
		return error_set(err, -EBADMSG, "%s: descriptor without mediaType, digest or size", what);
	/* One spelling only: "sha256:" and 64 lowercase hex digits. */
	if (strncmp(dg, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0)
		return error_set(err, -EPROTONOSUPPORT, "%s: digest '%.80s' is not sha256", what, dg);
	if (strlen(dg) != DIGEST_STR_LEN || strspn(dg + strlen(DIGEST_PREFIX), "0123456789abcdef") != DIGEST_HEX_LEN ||
	    digest_parse(dg, &ret->digest) < 0)
		return error_set(err, -EBADMSG, "%s: malformed digest '%.80s'", what, dg);
	ret->media_type = mt;
	memcpy(ret->digest_str, dg, DIGEST_STR_LEN + 1);
	ret->size = (uint64_t)json_integer_value(size);
	return 0;
}

static int open_blob(int dirfd, const struct descriptor *d, const char *what, struct error *err)
{
	char path[32 + DIGEST_HEX_LEN];
	snprintf(path, sizeof(path), "blobs/sha256/%s", d->digest_str + strlen(DIGEST_PREFIX));
	int fd = oci_open_beneath(dirfd, path, O_RDONLY);
	if (fd < 0)
		return error_set(err, fd, "%s %s: blob missing or not a regular file (%s)", what, d->digest_str,
				 strerror(-fd));
	return fd;
}

/* Reads the JSON blob that d names, checks size and digest, parses it. */
static int load_json_blob(int dirfd, const struct descriptor *d, const char *what, json_t **ret, struct error *err)
{
	if (d->size > IMAGE_MAX_JSON)
		return error_set(err, -EFBIG, "%s %s: %llu bytes, more than the %zu allowed", what, d->digest_str,
				 (unsigned long long)d->size, IMAGE_MAX_JSON);
	_cleanup_close_ int fd = open_blob(dirfd, d, what, err);
	if (fd < 0)
		return fd;
	_cleanup_buf_ struct buf text;
	buf_init(&text, IMAGE_MAX_JSON + 1);
	struct digest got;
	int r = oci_read_hashed(fd, IMAGE_MAX_JSON, &text, &got);
	if (r < 0)
		return error_set(err, r, "%s %s: cannot read (%s)", what, d->digest_str, strerror(-r));
	if (text.len != d->size)
		return error_set(err, -EBADMSG, "%s %s: size is %zu, the descriptor says %llu", what, d->digest_str,
				 text.len, (unsigned long long)d->size);
	if (!digest_equal(&got, &d->digest))
		return error_set(err, -EBADMSG, "%s %s: digest mismatch (the blob was altered)", what, d->digest_str);
	return oci_parse_json(&text, what, ret, err);
}

static bool is_index_type(const char *mt) { return strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0; }
static bool is_manifest_type(const char *mt)
{
	return strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_MANIFEST) == 0;
}

/* A platform that is absent, or linux/amd64 (any variant). */
static bool platform_fits(json_t *desc)
{
	json_t *p = json_object_get(desc, "platform");
	if (!p)
		return true;
	const char *os = json_str(p, "os"), *arch = json_str(p, "architecture");
	return os && arch && strcmp(os, "linux") == 0 && strcmp(arch, "amd64") == 0;
}

struct candidates {
	struct descriptor found;
	char media_type[128];
	size_t n;       /* distinct manifests */
	size_t seen;    /* descriptors looked at, against MAX_MANIFESTS */
};

static int collect_manifests(int dirfd, json_t *index, const char *what, int depth, struct candidates *c,
			     struct error *err)
{
	json_t *list = json_object_get(index, "manifests");
	json_t *version = json_object_get(index, "schemaVersion");
	if (!json_is_object(index) || !json_is_array(list) || json_integer_value(version) != 2)
		return error_set(err, -EBADMSG, "%s: not an image index (schemaVersion 2 with manifests)", what);
	size_t i;
	json_t *desc;
	json_array_foreach(list, i, desc) {
		if (++c->seen > MAX_MANIFESTS)
			return error_set(err, -E2BIG, "%s: more than %d manifests", what, MAX_MANIFESTS);
		struct descriptor d;
		int r = parse_descriptor(desc, what, &d, err);
		if (r < 0)
			return r;
		if (!platform_fits(desc))
			continue;
		if (is_index_type(d.media_type)) {
			if (depth >= MAX_INDEX_DEPTH)
				return error_set(err, -ELOOP, "%s: indexes nested more than %d deep", what, MAX_INDEX_DEPTH);
			_cleanup_json_ json_t *nested = NULL;
			if ((r = load_json_blob(dirfd, &d, "index", &nested, err)) < 0)
				return r;
			const char *own = json_str(nested, "mediaType");
			if (own && strcmp(own, d.media_type) != 0)
				return error_set(err, -EBADMSG, "index %s: mediaType differs from its descriptor's",
						 d.digest_str);
			if ((r = collect_manifests(dirfd, nested, "index", depth + 1, c, err)) < 0)
				return r;
		} else if (is_manifest_type(d.media_type)) {
			if (c->n > 0 && digest_equal(&c->found.digest, &d.digest))
				continue;  /* the same image under a second name */
			if (c->n++ == 0) {
				c->found = d;
				snprintf(c->media_type, sizeof(c->media_type), "%s", d.media_type);
				c->found.media_type = c->media_type;
			}
		}
		/* Anything else (attestations, artifacts) is not an image. */
	}
	return 0;
}

static int check_layout_file(int dirfd, struct error *err)
{
	_cleanup_close_ int fd = oci_open_beneath(dirfd, "oci-layout", O_RDONLY);
	if (fd < 0)
		return error_set(err, fd, "no oci-layout file (%s)", strerror(-fd));
	_cleanup_buf_ struct buf text;
	buf_init(&text, 4097);
	int r = fs_read_fd(fd, 4096, &text);
	if (r < 0)
		return error_set(err, r, "oci-layout: cannot read (%s)", strerror(-r));
	_cleanup_json_ json_t *j = NULL;
	if ((r = oci_parse_json(&text, "oci-layout", &j, err)) < 0)
		return r;
	const char *v = json_str(j, "imageLayoutVersion");
	if (!v || strncmp(v, "1.", 2) != 0)
		return error_set(err, -EPROTONOSUPPORT, "oci-layout: imageLayoutVersion '%.20s' is not 1.x",
				 v ? v : "");
	return 0;
}

static int load_layers(int dirfd, json_t *layers, const struct image_limits *lim, struct oci_image *img,
		       struct error *err)
{
	size_t n = json_array_size(layers);
	img->layers = calloc(n, sizeof(*img->layers));
	if (!img->layers)
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		img->layers[i].fd = -1;
	img->n_layers = n;
	_cleanup_free_ struct descriptor *descs = calloc(n, sizeof(*descs));
	if (!descs)
		return error_set(err, -ENOMEM, "out of memory");
	/* The blobs are hashed whole before anything else: bound what that
	 * reads by the caps, before a blob is even opened. */
	uint64_t cap = image_source_cap(lim), total = 0;
	for (size_t i = 0; i < n; i++) {
		struct descriptor *d = &descs[i];
		int r = parse_descriptor(json_array_get(layers, i), "manifest layer", d, err);
		if (r < 0)
			return r;
		if (d->size > cap - total)
			return error_set(err, -EFBIG, "layer %zu %s: the layer blobs are larger than %llu bytes in all (the size cap)",
					 i + 1, d->digest_str, (unsigned long long)cap);
		total += d->size;
		if (oci_layer_media_type(d->media_type, &img->layers[i].compression) < 0)
			return error_set(err, -EPROTONOSUPPORT, "layer %zu %s: unknown media type '%.100s'", i + 1,
					 d->digest_str, d->media_type);
	}
	for (size_t i = 0; i < n; i++) {
		struct image_layer *l = &img->layers[i];
		const struct descriptor d = descs[i];
		int r;
		l->fd = open_blob(dirfd, &d, "layer", err);
		if (l->fd < 0)
			return l->fd;
		struct stat st;
		if (fstat(l->fd, &st) < 0)
			return error_set(err, negative_errno(), "layer %s: %m", d.digest_str);
		if ((uint64_t)st.st_size != d.size)
			return error_set(err, -EBADMSG, "layer %zu %s: size is %llu, the descriptor says %llu", i + 1,
					 d.digest_str, (unsigned long long)st.st_size, (unsigned long long)d.size);
		/* A blob that grows while it is hashed is read one byte past
		 * its size, no further. */
		struct digest got;
		uint64_t size;
		if ((r = oci_hash_fd(l->fd, d.size + 1, lim, &got, &size)) < 0)
			return error_set(err, r, "layer %s: cannot read (%s)", d.digest_str, strerror(-r));
		if (size != d.size || !digest_equal(&got, &d.digest))
			return error_set(err, -EBADMSG, "layer %zu %s: digest mismatch (the blob was altered)", i + 1,
					 d.digest_str);
		memcpy(l->digest, d.digest_str, sizeof(l->digest));
		l->size = d.size;
	}
	return 0;
}

/* An OCI layout below dirfd (a directory, or an archive's staging copy). */
static int load_layout(int dirfd, const struct image_limits *lim, struct oci_image *img, struct error *err)
{
	int r = check_layout_file(dirfd, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = oci_open_beneath(dirfd, "index.json", O_RDONLY);
	if (fd < 0)
		return error_set(err, fd, "no index.json (%s)", strerror(-fd));
	_cleanup_buf_ struct buf text;
	buf_init(&text, IMAGE_MAX_JSON + 1);
	if ((r = fs_read_fd(fd, IMAGE_MAX_JSON, &text)) < 0)
		return error_set(err, r, r == -EFBIG ? "index.json: larger than %zu bytes" : "index.json: cannot read",
				 IMAGE_MAX_JSON);
	_cleanup_json_ json_t *index = NULL;
	if ((r = oci_parse_json(&text, "index.json", &index, err)) < 0)
		return r;
	struct candidates c = { 0 };
	if ((r = collect_manifests(dirfd, index, "index.json", 0, &c, err)) < 0)
		return r;
	if (c.n == 0)
		return error_set(err, -ENOENT, "index.json: no linux/amd64 image manifest");
	if (c.n > 1)
		return error_set(err, -EEXIST, "index.json: %zu linux/amd64 images; keep one to import it", c.n);

	_cleanup_json_ json_t *manifest = NULL;
	if ((r = load_json_blob(dirfd, &c.found, "manifest", &manifest, err)) < 0)
		return r;
	const char *own = json_str(manifest, "mediaType");
	if (json_integer_value(json_object_get(manifest, "schemaVersion")) != 2 ||
	    (own && strcmp(own, c.found.media_type) != 0))
		return error_set(err, -EBADMSG, "manifest %s: not a schemaVersion 2 %s", c.found.digest_str,
				 c.found.media_type);
	struct descriptor cd;
	if ((r = parse_descriptor(json_object_get(manifest, "config"), "manifest config", &cd, err)) < 0)
		return r;
	if (strcmp(cd.media_type, MT_OCI_CONFIG) != 0 && strcmp(cd.media_type, MT_DOCKER_CONFIG) != 0)
		return error_set(err, -EPROTONOSUPPORT, "manifest %s: config media type '%.100s' is not an image config",
				 c.found.digest_str, cd.media_type);
	json_t *layers = json_object_get(manifest, "layers");
	if (!json_is_array(layers) || json_array_size(layers) == 0 || json_array_size(layers) > IMAGE_MAX_LAYERS)
		return error_set(err, -EBADMSG, "manifest %s: needs 1 to %d layers", c.found.digest_str,
				 IMAGE_MAX_LAYERS);
	_cleanup_json_ json_t *config = NULL;
	if ((r = load_json_blob(dirfd, &cd, "config", &config, err)) < 0)
		return r;
	json_t *diff_ids;
	char what[DIGEST_STR_LEN + 16];
	snprintf(what, sizeof(what), "config %s", cd.digest_str);
	if ((r = oci_check_config(config, what, &diff_ids, err)) < 0)
		return r;
	if (json_array_size(diff_ids) != json_array_size(layers))
		return error_set(err, -EBADMSG, "%s: %zu diff_ids for %zu layers", what, json_array_size(diff_ids),
				 json_array_size(layers));
	if ((r = load_layers(dirfd, layers, lim, img, err)) < 0)
		return r;
	memcpy(img->digest, c.found.digest_str, sizeof(img->digest));
	memcpy(img->config_digest, cd.digest_str, sizeof(img->config_digest));
	return 0;
}

void oci_image_free(struct oci_image *img)
{
	if (!img)
		return;
	for (size_t i = 0; i < img->n_layers; i++)
		if (img->layers[i].fd >= 0)
			close(img->layers[i].fd);
	free(img->layers);
	img->layers = NULL;
	img->n_layers = 0;
	free(img->staging);
	img->staging = NULL;
}

static int open_archive(const char *source, const char *staging_parent, const struct image_limits *lim,
			struct oci_image *img, struct error *err)
{
	struct docker_archive d = { .dirfd = -1 };
	int r = docker_archive_unpack(source, staging_parent, lim, &d, err);
	if (r < 0)
		return r;
	if (docker_archive_has(&d, "oci-layout") && docker_archive_has(&d, "index.json")) {
		img->kind = IMAGE_SOURCE_OCI_ARCHIVE;
		r = load_layout(d.dirfd, lim, img, err);
	} else if (docker_archive_has(&d, "manifest.json")) {
		img->kind = IMAGE_SOURCE_DOCKER_ARCHIVE;
		r = docker_archive_load_classic(&d, lim, img, err);
	} else
		r = error_set(err, -EBADMSG, "%s: neither an OCI layout (oci-layout, index.json) nor a docker archive "
				 "(manifest.json)", source);
	/* The layers stay open; their staged files need no name any more. A
	 * staging directory that stays behind is an error (it may be large),
	 * though nothing of the image has been written yet. */
	if (r >= 0)
		return docker_archive_cleanup(&d, err);
	docker_archive_free(&d);
	return r;
}

int oci_image_open(const char *source, const char *staging_parent, const struct image_limits *lim,
		   struct oci_image *ret, struct error *err)
{
	struct oci_image img = { 0 };
	struct stat st;
	if (stat(source, &st) < 0)
		return error_set(err, negative_errno(), "%s: %m", source);
	int r;
	if (S_ISDIR(st.st_mode)) {
		_cleanup_close_ int dirfd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			return error_set(err, negative_errno(), "%s: %m", source);
		img.kind = IMAGE_SOURCE_OCI_LAYOUT;
		r = load_layout(dirfd, lim, &img, err);
	} else if (S_ISREG(st.st_mode))
		r = open_archive(source, staging_parent, lim, &img, err);
	else
		r = error_set(err, -EINVAL, "%s: neither a directory (OCI layout) nor a file (docker archive)", source);
	if (r < 0) {
		oci_image_free(&img);
		return r;
	}
	*ret = img;
	return 0;
}
