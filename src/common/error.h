/*
 * Error reports for callers that need a message as well as a negative errno.
 * Library code fills a struct error and returns the errno; only the top of a
 * command prints. The message is one line, capped, and never holds secrets.
 */
#pragma once

#include "macro.h"

struct error {
	int code;       /* negative errno, 0 when unset */
	char msg[512];  /* one line, without a trailing newline */
};

/* Records the first error only: the root cause is the useful one. Returns code. */
int error_set(struct error *err, int code, const char *fmt, ...) _printf_(3, 4);
void error_clear(struct error *err);
/* Makes text one printable line in place: line breaks and tabs become
 * spaces, other control bytes '?'. error_set does this to every message. */
void error_printable(char *text);
