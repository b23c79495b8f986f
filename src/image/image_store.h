/*
 * The image store: a directory of imported toolchain images, each one
 * squashfs named by its OCI manifest digest, with a metadata file beside it:
 *   IMAGES_DIR/<64 hex>.sqsh   the read-only root of the compile microVMs
 *   IMAGES_DIR/<64 hex>.json   digest, source kind, layers, sizes, import time
 * Both are 0644 and appear by rename, the metadata last: an image is present
 * when both files are. The worker asks image_store_path for the squashfs of
 * the image a routing token names; `hpcc image` imports, lists, removes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image_types.h"
#include "squashfs.h"

#define IMAGE_SQUASHFS_SUFFIX ".sqsh"
#define IMAGE_META_SUFFIX ".json"

/* Accepts exactly "sha256:" and 64 lowercase hex digits (the one spelling
 * tokens and worker.ini use); hex, when not NULL, gets the 64 digits. */
int image_digest_check(const char *digest, char hex[DIGEST_HEX_LEN + 1], struct error *err);

/* The absolute path of the imported squashfs of digest; -ENOENT (with a
 * message) when it is not imported, -EINVAL for a malformed digest. */
int image_store_path(const char *images_dir, const char *digest, char **ret_path, struct error *err);

struct image_info {
	char digest[DIGEST_STR_LEN + 1];
	char source[24];        /* "oci-layout", "oci-archive", "docker-archive" */
	char compressor[16];
	char imported[32];      /* UTC, "YYYY-MM-DDTHH:MM:SSZ" */
	uint64_t entries;       /* files, directories, symlinks in the image */
	uint64_t bytes;         /* their uncompressed data */
	uint64_t squashfs_bytes;
	uint64_t layers;
	bool valid;             /* false when the metadata file could not be read */
};

/* Every image in images_dir, oldest import first. A missing directory is
 * an empty store. */
int image_store_list(const char *images_dir, struct image_info **ret, size_t *ret_n, struct error *err);
/* Removes the image's metadata, then its squashfs. */
int image_store_remove(const char *images_dir, const char *digest, struct error *err);
/* Reads one image's metadata; -ENOENT when it is not imported. */
int image_store_info(const char *images_dir, const char *digest, struct image_info *ret, struct error *err);

struct image_import_options {
	const char *images_dir;   /* created when missing */
	struct image_limits limits;
	struct squashfs_options squashfs;
	/* Fault injection for tests (NULL otherwise): called with "squashfs"
	 * once the squashfs is renamed into place and with "metadata" once the
	 * metadata is; a negative errno fails the import at that point. */
	int (*test_fault)(const char *step, void *userdata);
	void *test_userdata;
};

struct image_import_result {
	struct image_info info;
	bool already;             /* it was imported before; nothing was written */
	char *path;               /* the squashfs (malloc'd) */
};

/* Imports source (an OCI layout directory or a docker archive). On any
 * error nothing that this import wrote is left in images_dir; what another
 * import of the same digest put there meanwhile stays. */
int image_import(const char *source, const struct image_import_options *o, struct image_import_result *ret,
		 struct error *err);
void image_import_result_free(struct image_import_result *r);
