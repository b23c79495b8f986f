/*
 * Small helpers used everywhere: cleanup attributes for automatic release of
 * heap memory and file descriptors, ownership transfer, and array sizes. They
 * follow systemd's conventions so that error paths cannot leak.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hands ownership of a pointer to the caller and leaves NULL behind. */
#define TAKE_PTR(p)                              \
	({                                       \
		__typeof__(p) *_pp = &(p);       \
		__typeof__(p) _ptr = *_pp;       \
		*_pp = NULL;                     \
		_ptr;                            \
	})

#define TAKE_FD(fd)                              \
	({                                       \
		int *_pfd = &(fd);               \
		int _f = *_pfd;                  \
		*_pfd = -1;                      \
		_f;                              \
	})

#define DEFINE_CLEANUP_FUNC(type, func)                   \
	static inline void func##p(type **p)              \
	{                                                 \
		if (*p)                                   \
			func(*p);                         \
	}

/* Returns -errno, with a fallback so that a failed call never looks like success. */
static inline int negative_errno(void) { return errno > 0 ? -errno : -EIO; }
