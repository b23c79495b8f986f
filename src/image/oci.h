/*
 * Reading an image source: an OCI image layout directory, or a docker
 * archive (`docker save` output, classic or with an OCI layout inside).
 * Every document and blob is checked against the digest and size of the
 * descriptor that names it before it is used; the result names the image
 * by its manifest digest and holds the layer blobs open, verified.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "image_types.h"

enum image_source_kind {
	IMAGE_SOURCE_OCI_LAYOUT,      /* a directory */
	IMAGE_SOURCE_OCI_ARCHIVE,     /* a tar holding an OCI layout (docker save since 25) */
	IMAGE_SOURCE_DOCKER_ARCHIVE,  /* a classic docker save tar (manifest.json) */
};

struct oci_image {
	enum image_source_kind kind;
	char digest[DIGEST_STR_LEN + 1];         /* the manifest's: the image's name */
	char config_digest[DIGEST_STR_LEN + 1];
	struct image_layer *layers;              /* bottom layer first */
	size_t n_layers;
	char *staging;  /* a tar source's unpacked members; removed by oci_image_free */
};

/* Opens and verifies source; a docker archive is unpacked into a fresh
 * directory below staging_parent (the images directory, so that nothing
 * crosses a file system). */
int oci_image_open(const char *source, const char *staging_parent, const struct image_limits *lim,
		   struct oci_image *ret, struct error *err);
void oci_image_free(struct oci_image *img);
const char *image_source_kind_name(enum image_source_kind kind);

/* Shared with docker_archive.c. */

/* Opens a regular file below dirfd by a relative path, following no
 * symlink on the way; -ELOOP, -ENOENT, -EINVAL (not a regular file). */
int oci_open_beneath(int dirfd, const char *path, int flags);
/* Reads fd (at most max bytes) into out and hashes it. */
int oci_read_hashed(int fd, size_t max, struct buf *out, struct digest *ret_digest);
/* Hashes fd from offset 0 to its end, or its first max bytes; checks
 * lim->cancel between blocks. */
int oci_hash_fd(int fd, uint64_t max, const struct image_limits *lim, struct digest *ret_digest, uint64_t *ret_size);
/* Parses one JSON document; the message names what (e.g. "manifest"). */
int oci_parse_json(const struct buf *text, const char *what, json_t **ret, struct error *err);
/* Checks a config's os/architecture and returns its rootfs.diff_ids. */
int oci_check_config(json_t *config, const char *what, json_t **ret_diff_ids, struct error *err);
/* Layer media types: 0 with the compression, or -EPROTONOSUPPORT. */
int oci_layer_media_type(const char *media_type, enum layer_compression *ret);
