/*
 * Growable byte buffers with a hard cap. Every buffer that is filled from
 * outside (a socket, a file, a child process) is one of these, so that no
 * input can make hpcc allocate without bound. The data is always followed by
 * a NUL byte that is not counted in len, so text can be used as a C string.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

struct buf {
	char *data;
	size_t len;
	size_t alloc;
	size_t max;  /* the cap on len; 0 means BUF_DEFAULT_MAX */
	int error;   /* the first failed reserve (-EFBIG, -ENOMEM), sticky: a
	              * caller that builds a key from many appends checks once */
};

#define BUF_DEFAULT_MAX ((size_t)64 << 20)

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* Makes room for extra more bytes: -ENOMEM, or -EFBIG past the cap. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
/* Appends a 64-bit length and the bytes: an unambiguous encoding for hashing. */
int buf_append_lp(struct buf *b, const void *data, size_t n);
int buf_append_lp_str(struct buf *b, const char *s);
int buf_append_u64(struct buf *b, uint64_t v);
/* Gives the data to the caller (NUL-terminated, never NULL) and empties b. */
char *buf_steal(struct buf *b);

static inline void buf_freep(struct buf *b) { buf_free(b); }
#define _cleanup_buf_ _cleanup_(buf_freep)
