/*
 * struct error: the first failure of an operation, as a negative errno plus a
 * one-line message. Later failures on the same path do not overwrite it, so
 * the message names the cause and not a consequence.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *err, int code, const char *fmt, ...)
{
	if (code >= 0)
		code = -EIO;
	if (!err || err->code != 0)
		return code;
	err->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	/* Messages quote what came from outside (paths, a client's or a
	 * worker's words): keep them one printable line. */
	error_printable(err->msg);
	return code;
}

void error_printable(char *text)
{
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : '?';
}

void error_clear(struct error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
