/*
 * NULL-terminated vectors of owned strings, the shape of argv. Used for
 * compiler command lines, which are built, rewritten and passed to execv.
 */
#pragma once

#include <stddef.h>

#include "macro.h"

struct strv {
	char **v;    /* always NULL-terminated once anything was pushed */
	size_t n;
	size_t alloc;
};

#define STRV_MAX_ITEMS 100000

int strv_push(struct strv *s, const char *item);       /* copies item */
int strv_push_take(struct strv *s, char *item);        /* takes ownership; frees on failure */
int strv_pushf(struct strv *s, const char *fmt, ...) _printf_(2, 3);
int strv_extend(struct strv *s, char *const *items, size_t n);
int strv_insert(struct strv *s, size_t pos, const char *item);
void strv_free(struct strv *s);
/* Returns a non-NULL argv even for an empty vector (a static empty one). */
char *const *strv_argv(const struct strv *s);

static inline void strv_freep(struct strv *s) { strv_free(s); }
#define _cleanup_strv_ _cleanup_(strv_freep)
