/*
 * Docker archives (`docker save` output). The tar is unpacked once into a
 * private staging directory (regular files only, names checked), since its
 * members come in no useful order: a classic archive names its layers in
 * manifest.json, which docker writes last. Symlinks and hardlinks between
 * members (docker links a layer that appears twice) are kept as aliases and
 * resolved by name inside the archive, never on the file system.
 */
#pragma once

#include <stddef.h>

#include "error.h"
#include "image_types.h"
#include "oci.h"

struct docker_alias;

struct docker_archive {
	char *dir;   /* the staging directory, removed by docker_archive_cleanup/free */
	int dirfd;
	size_t max_name;  /* longest staged member name (dir, '/', name fit in PATH_MAX) */
	struct docker_alias *aliases;
	size_t n_aliases;
};

int docker_archive_unpack(const char *path, const char *staging_parent, const struct image_limits *lim,
			  struct docker_archive *ret, struct error *err);
/* Opens a member by its name in the archive (aliases followed). */
int docker_archive_open(const struct docker_archive *d, const char *name, struct error *err);
/* True when the archive holds name (a file or an alias). */
int docker_archive_has(const struct docker_archive *d, const char *name);
/* A classic archive: manifest.json with one image. Fills img (kind, digest
 * of the canonical manifest, config digest, layers open and verified
 * against the config's diff_ids). */
int docker_archive_load_classic(const struct docker_archive *d, const struct image_limits *lim,
				struct oci_image *img, struct error *err);
/* Removes the staging directory (relative to directory descriptors, never
 * following a symlink) and frees d; an error when something could not be
 * removed. The layers' open descriptors stay valid. */
int docker_archive_cleanup(struct docker_archive *d, struct error *err);
/* docker_archive_cleanup for error paths: errors are ignored. */
void docker_archive_free(struct docker_archive *d);
