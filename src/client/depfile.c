/*
 * Make-style dependency files (see depfile.h). Parsing reads the first rule
 * of what gcc or clang wrote for hpcc's own "-MD -MF <tmp>" and undoes make
 * quoting; rendering writes the file the user asked for, byte for byte as
 * GCC 12 (libcpp/mkdeps.cc plus the driver's specs) or Clang 14
 * (DependencyFileGenerator plus the driver's RenderDependencyOptions) would
 * have written it. The two compilers differ in target order, "./" handling,
 * line wrapping, tab escaping, the default target of -Wp,-MD,path and the
 * blank lines of -MP; every rule below was checked against gcc 12.2 and
 * clang 14.0.6 output (tests/integration/depfile_formats.sh).
 */
#include "depfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fs.h"
#include "macro.h"

/* gcc 12 calls deps_write(pfile, fp, 72); clang 14 uses MaxColumns = 75. */
#define GCC_COLUMNS 72
#define CLANG_COLUMNS 75

/* ---------------------------------------------------------------- parsing */

struct parser {
	const char *p;
	const char *end;
};

static bool parser_is_blank(char c) { return c == ' ' || c == '\t'; }

/* True at a backslash-newline: make joins the lines with a blank between. */
static bool parser_at_continuation(const struct parser *ps)
{
	return ps->end - ps->p >= 2 && ps->p[0] == '\\' && ps->p[1] == '\n';
}

/* A ':' ends the targets only when whitespace, a continuation or the end of
 * the input follows it; neither compiler escapes ':', so "a:b.o: x" must
 * keep "a:b.o" whole, and "foo:: x" (from -o foo:) has the target "foo:". */
static bool parser_at_separator(const struct parser *ps)
{
	if (ps->p >= ps->end || *ps->p != ':')
		return false;
	struct parser next = { ps->p + 1, ps->end };
	return next.p == next.end || parser_is_blank(*next.p) || *next.p == '\n' ||
	       parser_at_continuation(&next);
}

static void parser_skip_blanks(struct parser *ps)
{
	for (;;) {
		if (ps->p < ps->end && parser_is_blank(*ps->p))
			ps->p++;
		else if (parser_at_continuation(ps))
			ps->p += 2;
		else
			return;
	}
}

static int append_backslashes(struct buf *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = buf_append_char(b, '\\');
		if (r < 0)
			return r;
	}
	return 0;
}

/* Reads one name and undoes the quoting that GCC's munge() and Clang's
 * PrintFilename/QuoteTarget apply: 2N+1 backslashes before a blank stand
 * for N backslashes and the blank (2N for N backslashes ending the name, as
 * GNU make reads them); "\#" is '#' with earlier backslashes left alone (the
 * compilers do not double them); "$$" is '$'. Any other backslash is
 * literal. In the targets, a separating ':' also ends the name. */
static int parser_read_name(struct parser *ps, bool in_targets, struct buf *name)
{
	while (ps->p < ps->end) {
		char c = *ps->p;
		int r;
		if (c == '\0')
			return -EBADMSG;
		if (parser_is_blank(c) || c == '\n' || (in_targets && parser_at_separator(ps)))
			return 0;
		if (c == '\\') {
			const char *q = ps->p;
			while (q < ps->end && *q == '\\')
				q++;
			size_t k = (size_t)(q - ps->p);
			if (q == ps->end)
				return -EBADMSG;  /* a truncated file: a dangling continuation */
			if (*q == '\n') {
				/* The last backslash continues the line, which ends
				 * the name; parser_skip_blanks() consumes it. */
				ps->p = q - 1;
				return append_backslashes(name, k - 1);
			}
			if (parser_is_blank(*q)) {
				r = append_backslashes(name, k / 2);
				if (r < 0)
					return r;
				if (k % 2 == 0) {
					ps->p = q;
					return 0;
				}
				r = buf_append_char(name, *q);
				ps->p = q + 1;
			} else if (*q == '#') {
				r = append_backslashes(name, k - 1);
				if (r >= 0)
					r = buf_append_char(name, '#');
				ps->p = q + 1;
			} else {
				r = append_backslashes(name, k);
				ps->p = q;
			}
			if (r < 0)
				return r;
			continue;
		}
		if (c == '$' && ps->end - ps->p >= 2 && ps->p[1] == '$')
			ps->p++;  /* "$$" is one '$'; a lone '$' is kept (a -MT target may hold one) */
		r = buf_append_char(name, c);
		if (r < 0)
			return r;
		ps->p++;
	}
	return 0;
}

/* Reads names up to the ':' (targets) or the end of the line (deps). */
static int parser_read_list(struct parser *ps, bool in_targets, struct strv *list)
{
	_cleanup_buf_ struct buf name = { .max = DEPFILE_MAX_SIZE };
	for (;;) {
		parser_skip_blanks(ps);
		if (ps->p == ps->end || *ps->p == '\n')
			return in_targets ? -EBADMSG : 0;  /* targets without a ':' */
		if (in_targets && parser_at_separator(ps)) {
			ps->p++;
			return list->n > 0 ? 0 : -EBADMSG;
		}
		buf_reset(&name);
		int r = parser_read_name(ps, in_targets, &name);
		if (r < 0)
			return r;
		if (name.len == 0)
			return -EBADMSG;  /* cannot happen: the name's first byte is consumed */
		r = strv_push(list, name.data);
		if (r < 0)
			return r;
	}
}

int depfile_parse(const char *text, size_t len, struct depfile *ret)
{
	if (!text || !ret)
		return -EINVAL;
	if (len > DEPFILE_MAX_SIZE)
		return -EFBIG;
	struct parser ps = { text, text + len };
	/* Leading blank lines carry nothing; the first rule is what counts, and
	 * the phony "header:" rules of -MP after it are ignored. */
	while (ps.p < ps.end && (parser_is_blank(*ps.p) || *ps.p == '\n'))
		ps.p++;
	struct depfile d = { 0 };
	int r = parser_read_list(&ps, true, &d.targets);
	if (r >= 0)
		r = parser_read_list(&ps, false, &d.deps);
	if (r < 0) {
		depfile_free(&d);
		return r;
	}
	*ret = d;
	return 0;
}

void depfile_free(struct depfile *d)
{
	if (!d)
		return;
	strv_free(&d->targets);
	strv_free(&d->deps);
}

/* -------------------------------------------------------------- rendering */

/* Make quoting as GCC's munge() does it and Clang copies it: a blank gets a
 * backslash and doubles the backslashes right before it, '#' gets a
 * backslash (earlier backslashes are not doubled), '$' becomes "$$". Clang's
 * PrintFilename escapes ' ' but not '\t' in dependency names; its
 * QuoteTarget (-MQ, default target) and GCC escape both. */
static int append_quoted(struct buf *out, const char *name, bool escape_tab)
{
	size_t slashes = 0;
	for (const char *p = name; *p; p++) {
		int r = 0;
		if (*p == '\\') {
			slashes++;
		} else {
			if (*p == ' ' || (*p == '\t' && escape_tab))
				r = append_backslashes(out, slashes + 1);
			else if (*p == '#')
				r = buf_append_char(out, '\\');
			else if (*p == '$')
				r = buf_append_char(out, '$');
			slashes = 0;
		}
		if (r >= 0)
			r = buf_append_char(out, *p);
		if (r < 0)
			return r;
	}
	return 0;
}

static char *quote_name(const char *name, bool escape_tab)
{
	_cleanup_buf_ struct buf b = { .max = DEPFILE_MAX_SIZE };
	if (append_quoted(&b, name, escape_tab) < 0)
		return NULL;
	return buf_steal(&b);
}

/* GCC's apply_vpath() removes every leading "./" (and the slashes after
 * it) from targets and names: "-o ./foo.o" gives the target "foo.o" and
 * "-MT ./x" gives "x". Clang keeps both as given. */
static const char *skip_dot_slash(const char *s)
{
	while (s[0] == '.' && s[1] == '/') {
		s += 2;
		while (*s == '/')
			s++;
	}
	return s;
}

/* Replaces the suffix (from the last '.' of the last path component, even
 * one at its start: ".hidden" -> ".d") or appends one. That is what gcc's
 * "%.d%*" spec and llvm::sys::path::replace_extension both do with -o. */
static char *replace_suffix(const char *path, const char *suffix)
{
	const char *base = path_basename(path);
	const char *dot = strrchr(base, '.');
	size_t keep = dot ? (size_t)(dot - path) : strlen(path);
	char *s = NULL;
	if (asprintf(&s, "%.*s%s", (int)keep, path, suffix) < 0)
		return NULL;
	return s;
}

/* The basename of the source with the suffix replaced: "dir/a.c" -> "a.o".
 * Both cc1's deps_add_default_target() and clang's driver cut at the last
 * '.' of the basename. For the .d name, gcc's %b keeps a leading dot
 * (".c" -> ".c.d") where llvm's stem() does not; neither compiler accepts
 * such a source as C, so only the common rule matters. */
static char *source_stem_with(const char *source, const char *suffix)
{
	return replace_suffix(path_basename(source), suffix);
}

/* Where the compiler writes the file. gcc 12: -Wp,-MD,path wins over -MF
 * whatever their order; else -MF; else with -o the -o argument with its
 * suffix replaced by .d ("-o foo" -> "foo.d", "-o o/x.y.o" -> "o/x.y.d");
 * else the source's basename with .d, in the cwd. clang 14 turns
 * -Wp,-MD,path into "-MD -MF path" so the later of the two wins; args does
 * not record their order, so the -Wp path is taken as for gcc. */
static int depfile_path(const struct compile_args *args, char **ret)
{
	char *p;
	if (args->dep_wp_path)
		p = strdup(args->dep_wp_path);
	else if (args->dep_mf)
		p = strdup(args->dep_mf);
	else if (args->output_given && args->output)
		p = replace_suffix(args->output, ".d");
	else
		p = source_stem_with(args->source, ".d");
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

/* The targets, quoted as they will be written.
 * gcc 12: deps_add_target() moves each -MT target before the -MQ ones by
 * swapping it with the first quoted target ("-MQ a -MT b" -> "b a",
 * "-MQ a -MQ b -MT c" -> "c b a"); "./" is stripped from both kinds. With
 * no -MT/-MQ the driver passes "-MQ <-o arg>" for -MD/-MMD, but for
 * -Wp,-MD,path it does not see -MD, so cc1 uses the source's basename with
 * .o even when -o is given.
 * clang 14: -MT and -MQ in command-line order, no "./" stripping; the
 * default target is the -o argument, or the source's basename with .o,
 * also for -Wp,-MD,path (the driver rewrites it to -MD -MF path). */
static int depfile_targets(const struct compile_args *args, struct strv *ret)
{
	bool gcc = args->family == FAMILY_GCC;
	int r;
	if (args->n_dep_targets == 0) {
		_cleanup_free_ char *fallback = NULL;
		const char *name;
		if (args->output_given && args->output && !(gcc && args->dep_wp_path)) {
			name = gcc ? skip_dot_slash(args->output) : args->output;
		} else {
			fallback = source_stem_with(args->source, ".o");
			if (!fallback)
				return -ENOMEM;
			name = fallback;
		}
		return strv_push_take(ret, quote_name(name, true));
	}

	size_t n_verbatim = 0;  /* gcc's quote_lwm: -MT targets first */
	for (size_t i = 0; i < args->n_dep_targets; i++) {
		const struct dep_target *t = &args->dep_targets[i];
		const char *name = gcc ? skip_dot_slash(t->name) : t->name;
		char *item = t->quote ? quote_name(name, true) : strdup(name);
		r = strv_push_take(ret, item);
		if (r < 0)
			return r;
		if (gcc && !t->quote) {
			if (n_verbatim != ret->n - 1) {
				char *tmp = ret->v[n_verbatim];
				ret->v[n_verbatim] = ret->v[ret->n - 1];
				ret->v[ret->n - 1] = tmp;
			}
			n_verbatim++;
		}
	}
	return 0;
}

/* gcc 12 make_write_name(): every name but the first is preceded by a
 * blank, and by " \\\n" first when col + size > 72, size being the length
 * as written (quoted). So continuation lines start with one blank. */
static int gcc_write_name(struct buf *out, const char *written, size_t *col)
{
	size_t size = strlen(written);
	int r = 0;
	if (*col) {
		if (*col + size > GCC_COLUMNS) {
			r = buf_append_str(out, " \\\n");
			*col = 0;
		}
		(*col)++;
		if (r >= 0)
			r = buf_append_char(out, ' ');
	}
	*col += size;
	return r < 0 ? r : buf_append_str(out, written);
}

/* gcc 12 make_write(): targets, ':', the names on one wrapped rule; with
 * -MP then "name:" for every name but the main source, with no blank lines
 * in between (unlike clang). */
static int gcc_write(struct buf *out, const struct strv *targets, const struct strv *names, bool phony)
{
	size_t col = 0;
	int r;
	for (size_t i = 0; i < targets->n; i++)
		if ((r = gcc_write_name(out, targets->v[i], &col)) < 0)
			return r;
	if ((r = buf_append_char(out, ':')) < 0)
		return r;
	col++;
	for (size_t i = 0; i < names->n; i++) {
		_cleanup_free_ char *q = quote_name(names->v[i], true);
		if (!q)
			return -ENOMEM;
		if ((r = gcc_write_name(out, q, &col)) < 0)
			return r;
	}
	if ((r = buf_append_char(out, '\n')) < 0)
		return r;
	for (size_t i = 1; phony && i < names->n; i++)
		if ((r = append_quoted(out, names->v[i], true)) < 0 || (r = buf_append_str(out, ":\n")) < 0)
			return r;
	return 0;
}

/* Clang's PrintFilename() first runs llvm::sys::path::native(), which on
 * POSIX turns a lone backslash into '/' and keeps a pair of backslashes:
 * clang 14 writes the header `a\ b.h` as `a/\ b.h`. The length does not
 * change, and a name read back from clang's own output comes through as is. */
static char *clang_native_name(const char *name)
{
	char *s = strdup(name);
	if (!s)
		return NULL;
	for (char *p = s; *p; p++) {
		if (*p != '\\')
			continue;
		if (p[1] == '\\')
			p++;
		else
			*p = '/';
	}
	return s;
}

static int clang_append_name(struct buf *out, const char *name)
{
	_cleanup_free_ char *native = clang_native_name(name);
	if (!native)
		return -ENOMEM;
	return append_quoted(out, native, false);
}

/* The main source's place in clang's list: clang writes extra inputs such
 * as sanitizer ignorelists or -fprofile-list files before it, and -MP
 * skips only the source (InputFileIndex). Its name is the source with a
 * leading "./" removed (remove_leading_dotslash). */
static size_t clang_source_index(const char *source, char *const *names, size_t n)
{
	const char *want = skip_dot_slash(source);
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], want) == 0)
			return i;
	return 0;
}

/* clang 14 outputDependencyFile(): a target goes on a new line ("  "
 * indent) when Columns + N + 2 > 75; a name when Columns + N + 1 + 2 > 75,
 * the new line then counting 2 columns and starting with two blanks. N is
 * the quoted length for targets but the unquoted length for names. -MP
 * writes "\nname:\n" for every name but the main source. */
static int clang_write(struct buf *out, const struct strv *targets, const struct strv *names,
		       size_t source_index, bool phony)
{
	size_t col = 0;
	int r;
	for (size_t i = 0; i < targets->n; i++) {
		size_t size = strlen(targets->v[i]);
		r = 0;
		if (col == 0) {
			col += size;
		} else if (col + size + 2 > CLANG_COLUMNS) {
			col = size + 2;
			r = buf_append_str(out, " \\\n  ");
		} else {
			col += size + 1;
			r = buf_append_char(out, ' ');
		}
		if (r < 0 || (r = buf_append_str(out, targets->v[i])) < 0)
			return r;
	}
	if ((r = buf_append_char(out, ':')) < 0)
		return r;
	col++;
	for (size_t i = 0; i < names->n; i++) {
		size_t size = strlen(names->v[i]);
		if (col + size + 1 + 2 > CLANG_COLUMNS) {
			if ((r = buf_append_str(out, " \\\n ")) < 0)
				return r;
			col = 2;
		}
		if ((r = buf_append_char(out, ' ')) < 0 || (r = clang_append_name(out, names->v[i])) < 0)
			return r;
		col += size + 1;
	}
	if ((r = buf_append_char(out, '\n')) < 0)
		return r;
	for (size_t i = 0; phony && i < names->n; i++) {
		if (i == source_index)
			continue;
		if ((r = buf_append_char(out, '\n')) < 0 || (r = clang_append_name(out, names->v[i])) < 0 ||
		    (r = buf_append_str(out, ":\n")) < 0)
			return r;
	}
	return 0;
}

/* The names that go into the file: all of them for -MD; for -MMD, both
 * compilers leave out what is_system marks, but always keep the main
 * source. Clang's extra inputs follow is_system too: clang 14 with -MMD
 * drops the default sanitizer ignorelist (a system file) but keeps a
 * -fsanitize-ignorelist= or -fprofile-list= file. */
static int depfile_select(const struct compile_args *args, char *const *deps, const bool *is_system,
			  size_t n, struct strv *ret)
{
	size_t source_index = args->family == FAMILY_CLANG ? clang_source_index(args->source, deps, n) : 0;
	for (size_t i = 0; i < n; i++) {
		if (args->dep_mode == DEP_MMD && is_system && is_system[i] && i != source_index)
			continue;
		int r = strv_push(ret, deps[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int depfile_render(const struct compile_args *args, char *const *deps, const bool *is_system, size_t n,
		   struct buf *out, char **ret_path)
{
	if (!args || !out || !ret_path || !args->source || args->dep_mode == DEP_NONE || n == 0 || !deps)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!deps[i])
			return -EINVAL;
	_cleanup_free_ char *path = NULL;
	_cleanup_strv_ struct strv targets = { 0 };
	_cleanup_strv_ struct strv names = { 0 };
	int r = depfile_path(args, &path);
	if (r >= 0)
		r = depfile_targets(args, &targets);
	if (r >= 0)
		r = depfile_select(args, deps, is_system, n, &names);
	if (r < 0)
		return r;

	size_t start = out->len;
	if (args->family == FAMILY_GCC)
		r = gcc_write(out, &targets, &names, args->dep_phony);
	else
		r = clang_write(out, &targets, &names, clang_source_index(args->source, names.v, names.n),
				args->dep_phony);
	if (r < 0) {
		out->len = start;  /* leave the caller's buffer as it was */
		if (out->data)
			out->data[start] = '\0';
		return r;
	}
	*ret_path = TAKE_PTR(path);
	return 0;
}
