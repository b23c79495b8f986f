/*
 * Capped growable buffers (see buf.h). Growth doubles up to the cap; the cap
 * is checked before any allocation so an oversized input fails early.
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	*b = (struct buf){ .max = max ? max : BUF_DEFAULT_MAX };
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	size_t max = b->max;
	*b = (struct buf){ .max = max };
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->error = 0;
	if (b->data)
		b->data[0] = '\0';
}

static int buf_fail(struct buf *b, int r)
{
	if (!b->error)
		b->error = r;
	return r;
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t max = b->max ? b->max : BUF_DEFAULT_MAX;
	if (extra > max || b->len > max - extra)
		return buf_fail(b, -EFBIG);
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t n = b->alloc ? b->alloc : 256;
	while (n < need)
		n = n > SIZE_MAX / 2 ? need : n * 2;
	if (n > max + 1)
		n = max + 1;
	char *p = realloc(b->data, n);
	if (!p)
		return buf_fail(b, -ENOMEM);
	b->data = p;
	b->alloc = n;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_append_str(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_append_char(struct buf *b, char c) { return buf_append(b, &c, 1); }

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int buf_append_u64(struct buf *b, uint64_t v)
{
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(v >> (8 * i));
	return buf_append(b, le, sizeof(le));
}

int buf_append_lp(struct buf *b, const void *data, size_t n)
{
	/* Room for both parts first, so that a failure leaves b as it was. */
	int r = n > SIZE_MAX - 8 ? -EFBIG : buf_reserve(b, 8 + n);
	if (r < 0)
		return r;
	r = buf_append_u64(b, n);
	return r < 0 ? r : buf_append(b, data, n);
}

int buf_append_lp_str(struct buf *b, const char *s) { return buf_append_lp(b, s, s ? strlen(s) : 0); }

char *buf_steal(struct buf *b)
{
	if (!b->data) {
		if (buf_reserve(b, 0) < 0)
			return NULL;
		b->data[0] = '\0';
	}
	char *p = b->data;
	size_t max = b->max;
	*b = (struct buf){ .max = max };
	return p;
}
