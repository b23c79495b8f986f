/*
 * What the parts of the image importer share: the limits every import runs
 * under, and one verified layer blob. An import reads an OCI layout or a
 * docker archive (oci.c, docker_archive.c), merges its layers (layers.c),
 * writes one squashfs (squashfs.c) and stores it by manifest digest
 * (image_store.c); docs/images.md describes the whole.
 */
#pragma once

#include <signal.h>
#include <stdint.h>

#include "digest.h"

#define IMAGE_DEFAULT_MAX_SIZE ((uint64_t)16 << 30)
#define IMAGE_DEFAULT_MAX_ENTRIES 1000000
/* One JSON document: index, manifest, config, docker manifest.json. */
#define IMAGE_MAX_JSON ((size_t)4 << 20)
/* A path in a layer, a symlink target, a hardlink target. */
#define IMAGE_MAX_PATH 4096
/* One path component (squashfs stores at most 256 bytes). */
#define IMAGE_MAX_NAME 255
#define IMAGE_MAX_LAYERS 256
/* Owners at or above this become IMAGE_NOBODY_ID (nobody/nogroup). */
#define IMAGE_MAX_ID 65536
#define IMAGE_NOBODY_ID 65534

struct image_limits {
	uint64_t max_size;     /* uncompressed bytes of files over all layers */
	uint64_t max_entries;  /* entries over all layers (and in the result) */
	/* Set (by a signal handler) to stop an import at the next entry or
	 * block; may be NULL. */
	volatile sig_atomic_t *cancel;
};

static inline int image_cancelled(const struct image_limits *lim)
{
	return lim->cancel && *lim->cancel;
}

/* What a source may hold in all (a docker archive's members, an OCI
 * layout's layer blobs): compressed or plain layers of at most max_size
 * bytes of files, so the cap and a quarter more for tar headers and the odd
 * incompressible layer, and 64 MiB for small caps. Saturates. */
static inline uint64_t image_source_cap(const struct image_limits *lim)
{
	uint64_t slack = lim->max_size / 4 + ((uint64_t)64 << 20);
	return lim->max_size > UINT64_MAX - slack ? UINT64_MAX : lim->max_size + slack;
}

enum layer_compression {
	LAYER_PLAIN,
	LAYER_GZIP,
	LAYER_ZSTD,
};

/* A layer blob whose digest and size were checked; read it from offset 0
 * (pread-style readers seek there themselves). */
struct image_layer {
	char digest[DIGEST_STR_LEN + 1];  /* of the blob bytes, as the manifest names it */
	uint64_t size;
	enum layer_compression compression;
	int fd;
};
