/*
 * Pass 2 of an import: the surviving entries of the merged tree, written
 * as one tar stream (pax, normalised headers, no xattrs) into tar2sqfs
 * (squashfs-tools-ng), which writes the squashfs. The same tree and layers
 * give the same bytes: nothing here depends on time, host or order of
 * directory listings.
 */
#pragma once

#include <stddef.h>

#include "error.h"
#include "image_types.h"
#include "layers.h"

struct squashfs_options {
	const char *compressor;  /* "zstd" (default, level 3), "gzip" (level 6) or "xz": the guest
				  * kernel has all three */
	const char *tar2sqfs;    /* NULL: found in PATH, else /usr/bin/tar2sqfs */
	unsigned jobs;           /* compressor threads; 0: online CPUs, at most 8 */
};

/* Writes the squashfs to out_path (an existing file, overwritten). The
 * layers are read again and their digests checked again, so the image holds
 * exactly the bytes that were verified. */
int squashfs_write(struct image_tree *tree, const struct image_layer *layers, size_t n_layers,
		   const struct image_limits *lim, const char *out_path, const struct squashfs_options *o,
		   struct error *err);
