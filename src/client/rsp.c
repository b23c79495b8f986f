/*
 * Response-file expansion (see rsp.h).
 */
#include "rsp.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "fs.h"
#include "macro.h"

/* Limits on response files beyond the per-file size and the depth: a file
 * that names other files thousands of times must not make us read without
 * bound, even when each file is small or empty. */
#define RSP_MAX_FILES 4096
#define RSP_MAX_TOTAL_BYTES ((size_t)64 * ARGS_RSP_MAX_SIZE)

/* The C locale's isspace(), which is what libiberty's buildargv uses. */
static bool rsp_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Splits text as libiberty's buildargv does (and LLVM's GNU tokenizer, up to
 * empty arguments): whitespace separates arguments; '...' and "..." quote;
 * a backslash takes the next character literally, inside quotes too; an
 * unterminated quote runs to the end of the text. Like buildargv, a NUL
 * byte ends the text. */
static int rsp_tokenize(const char *text, size_t len, bool keep_empty, struct strv *out)
{
	_cleanup_buf_ struct buf token = { .max = ARGS_RSP_MAX_SIZE + 1 };
	const char *p = text, *end = memchr(text, '\0', len);
	if (!end)
		end = text + len;

	for (;;) {
		while (p < end && rsp_is_space(*p))
			p++;
		if (p == end)
			return 0;

		bool squote = false, dquote = false, escaped = false;
		buf_reset(&token);
		for (; p < end; p++) {
			char c = *p;
			if (rsp_is_space(c) && !squote && !dquote && !escaped)
				break;
			bool literal = false;
			if (escaped) {
				escaped = false;
				literal = true;
			} else if (c == '\\') {
				escaped = true;
			} else if (squote) {
				squote = c != '\'';
				literal = squote;
			} else if (dquote) {
				dquote = c != '"';
				literal = dquote;
			} else if (c == '\'') {
				squote = true;
			} else if (c == '"') {
				dquote = true;
			} else {
				literal = true;
			}
			if (literal) {
				int r = buf_append_char(&token, c);
				if (r < 0)
					return r;
			}
		}
		if (token.len == 0 && !keep_empty)
			continue;
		int r = strv_push(out, token.data ? token.data : "");
		if (r < 0)
			return r;
	}
}

/* Pushes one expanded argument; running past STRV_MAX_ITEMS makes the
 * command uncacheable rather than failing it. Returns 0, 1 (reason set) or
 * a negative errno. */
static int rsp_push(struct strv *out, const char *arg, enum args_reason *reason)
{
	int r = strv_push(out, arg);
	if (r == -E2BIG) {
		*reason = ARGS_REASON_BAD_RESPONSE_FILE;
		return 1;
	}
	return r;
}

/* Joins without normalising: the compiler opens "cwd/name" as written, and
 * removing "x/.." would be wrong when x is a symbolic link. */
static char *rsp_path(const char *cwd, const char *name)
{
	if (name[0] == '/' || !cwd || cwd[0] == '\0')
		return strdup(name);
	_cleanup_buf_ struct buf b = { .max = BUF_DEFAULT_MAX };
	if (buf_append_str(&b, cwd) < 0 || buf_append_char(&b, '/') < 0 || buf_append_str(&b, name) < 0)
		return NULL;
	return buf_steal(&b);
}

/* Expands one argument into out, recursively for nested "@file"s. Nested
 * relative names are relative to cwd, not to the file that names them: GCC 12
 * and Clang 14 both do it this way. */
int rsp_expand(struct rsp_state *st, const char *arg, unsigned depth, struct strv *out,
		      enum args_reason *reason)
{
	if (arg[0] != '@' || arg[1] == '\0')
		return rsp_push(out, arg, reason);

	_cleanup_free_ char *path = rsp_path(st->cwd, arg + 1);
	if (!path)
		return -ENOMEM;

	/* Like GCC, a missing file leaves "@name" as an ordinary argument. Any
	 * other failure, and anything but a regular file (a FIFO could block
	 * us, or eat input meant for the compiler), is a bad response file. */
	struct stat st_file;
	if (stat(path, &st_file) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return rsp_push(out, arg, reason);
		*reason = ARGS_REASON_BAD_RESPONSE_FILE;
		return 1;
	}
	if (!S_ISREG(st_file.st_mode) || depth >= ARGS_RSP_MAX_DEPTH || ++st->n_files > RSP_MAX_FILES) {
		*reason = ARGS_REASON_BAD_RESPONSE_FILE;
		return 1;
	}

	_cleanup_buf_ struct buf content = { .max = ARGS_RSP_MAX_SIZE + 1 };
	int r = fs_read_file(path, ARGS_RSP_MAX_SIZE, &content);
	if (r == -ENOMEM)
		return r;
	st->n_bytes += content.len;
	if (r < 0 || st->n_bytes > RSP_MAX_TOTAL_BYTES) {
		*reason = ARGS_REASON_BAD_RESPONSE_FILE;
		return 1;
	}

	_cleanup_strv_ struct strv tokens = { 0 };
	r = rsp_tokenize(content.data ? content.data : "", content.len, st->keep_empty, &tokens);
	if (r == -E2BIG) {
		*reason = ARGS_REASON_BAD_RESPONSE_FILE;
		return 1;
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < tokens.n; i++) {
		r = rsp_expand(st, tokens.v[i], depth + 1, out, reason);
		if (r != 0)
			return r;
	}
	return 0;
}
