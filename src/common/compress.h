/*
 * zstd compression with bounded decompression: the caller names the largest
 * output it accepts, and a frame that claims or produces more is refused, so
 * a compressed bomb costs nothing.
 */
#pragma once

#include <stddef.h>

#include "buf.h"

#define COMPRESS_DEFAULT_LEVEL 1

/* Appends one zstd frame (with its content checksum) to out. */
int compress_zstd(const void *data, size_t n, int level, struct buf *out);
/* Appends the decompressed bytes of exactly one frame to out: -EFBIG past
 * max_out, -EBADMSG for a corrupt or truncated frame or trailing bytes. */
int decompress_zstd(const void *data, size_t n, size_t max_out, struct buf *out);
