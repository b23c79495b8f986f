/*
 * String vectors (see strv.h). Capped at STRV_MAX_ITEMS so that a response
 * file or a peer cannot make an argument list grow without bound.
 */
#include "strv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int strv_grow(struct strv *s)
{
	/* The cap is checked on every push: checked only when the array grows,
	 * it would round up to the next power of two. */
	if (s->n >= STRV_MAX_ITEMS)
		return -E2BIG;
	if (s->n + 2 <= s->alloc)
		return 0;
	size_t n = s->alloc ? s->alloc * 2 : 16;
	char **v = realloc(s->v, n * sizeof(char *));
	if (!v)
		return -ENOMEM;
	/* A fresh array has no terminator yet, and strv_insert moves it. */
	v[s->n] = NULL;
	s->v = v;
	s->alloc = n;
	return 0;
}

int strv_push_take(struct strv *s, char *item)
{
	if (!item)
		return -ENOMEM;
	int r = strv_grow(s);
	if (r < 0) {
		free(item);
		return r;
	}
	s->v[s->n++] = item;
	s->v[s->n] = NULL;
	return 0;
}

int strv_push(struct strv *s, const char *item) { return strv_push_take(s, strdup(item)); }

int strv_pushf(struct strv *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = NULL;
	int r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return strv_push_take(s, p);
}

int strv_extend(struct strv *s, char *const *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = strv_push(s, items[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int strv_insert(struct strv *s, size_t pos, const char *item)
{
	if (pos > s->n)
		return -EINVAL;
	char *copy = strdup(item);
	if (!copy)
		return -ENOMEM;
	int r = strv_grow(s);
	if (r < 0) {
		free(copy);
		return r;
	}
	memmove(s->v + pos + 1, s->v + pos, (s->n - pos + 1) * sizeof(char *));
	s->v[pos] = copy;
	s->n++;
	return 0;
}

void strv_free(struct strv *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){ 0 };
}

char *const *strv_argv(const struct strv *s)
{
	static char *const empty[] = { NULL };
	return s->v ? s->v : empty;
}
