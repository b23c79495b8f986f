/*
 * hpcc explain OBJECT: why the compile that produced OBJECT did or did not
 * hit. It reads OBJECT's explain record (src/cache/explain.c) and compares
 * the latest compile with its reference (the last hit, or the previous
 * different compile): the toolchain (compiler or image), the key flags
 * (removed, added, changed: same option, other value), and the inputs
 * (changed with their first changed line, added, removed), then counts how
 * many inputs were compared and found identical. Text by default, --json
 * for tools. Every field of a record is checked before use: a damaged one is
 * one line and a non-zero exit, never a crash.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "engine.h"
#include "explain.h"
#include "fs.h"

#define LINE_SHOWN_MAX 200

enum change_kind {
	CH_MODE, CH_IMAGE, CH_COMPILER, CH_CWD, CH_ROOT, CH_FLAG_CHANGED, CH_FLAG_ADDED, CH_FLAG_REMOVED,
	CH_FLAGS_REORDERED, CH_SOURCE_CHANGED, CH_HEADER_CHANGED, CH_HEADER_ADDED, CH_HEADER_REMOVED,
};
static const char *const change_names[] = {
	[CH_MODE] = "mode changed", [CH_IMAGE] = "image changed", [CH_COMPILER] = "compiler changed",
	[CH_CWD] = "working directory changed", [CH_ROOT] = "project root changed",
	[CH_FLAG_CHANGED] = "flag changed", [CH_FLAG_ADDED] = "flag added", [CH_FLAG_REMOVED] = "flag removed",
	[CH_FLAGS_REORDERED] = "flags reordered", [CH_SOURCE_CHANGED] = "source changed",
	[CH_HEADER_CHANGED] = "header changed", [CH_HEADER_ADDED] = "header added",
	[CH_HEADER_REMOVED] = "header removed",
};

/* How much of a changed input's content is known. */
enum content { CONTENT_LINE, CONTENT_SAME_LINES, CONTENT_OLD_GONE, CONTENT_SYSTEM };

struct change {
	enum change_kind kind;
	char *what;          /* the flag or the path */
	char *was, *now;     /* flag values, toolchains, or the first changed line's texts */
	long line;           /* the first changed line (inputs with CONTENT_LINE) */
	enum content content;
};

struct report {
	struct change *v;
	size_t n;
	size_t compared, identical;
	int error;
};

static void report_free(struct report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].what);
		free(r->v[i].was);
		free(r->v[i].now);
	}
	free(r->v);
}

static struct change *report_add(struct report *r, enum change_kind kind, const char *what, const char *was,
				 const char *now)
{
	struct change *v = realloc(r->v, (r->n + 1) * sizeof(*v));
	if (!v) {
		r->error = -ENOMEM;
		return NULL;
	}
	r->v = v;
	struct change *c = &v[r->n];
	*c = (struct change){ .kind = kind, .what = strdup(what ? what : ""), .was = was ? strdup(was) : NULL,
			      .now = now ? strdup(now) : NULL };
	if (!c->what || (was && !c->was) || (now && !c->now)) {
		free(c->what);
		free(c->was);
		free(c->now);
		r->error = -ENOMEM;
		return NULL;
	}
	r->n++;
	return c;
}

static void format_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!localtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, 32, "%lld", (long long)t);
}

static void digest_text(const ProtobufCBinaryData *d, char out[DIGEST_STR_LEN + 1])
{
	if (d->len != DIGEST_LEN) {
		snprintf(out, DIGEST_STR_LEN + 1, "(unknown)");
		return;
	}
	digest_to_string((const struct digest *)d->data, out);
}

static bool bytes_equal(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Input digests: a system header's is a prefix in entries of stored misses
 * (explain.c), the whole digest in those of hits. */
static bool digests_match(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	if (a->len == 0 || b->len == 0)
		return a->len == b->len;
	return memcmp(a->data, b->data, n) == 0;
}

static bool is_hit(const Hpcc__Local__ExplainEntry *x)
{
	return x->kind == HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT || x->kind == HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE_HIT;
}

static const char *kind_text(const Hpcc__Local__ExplainEntry *x)
{
	switch (x->kind) {
	case HPCC__LOCAL__EXPLAIN_ENTRY__KIND__HIT:
		return "served from the cache";
	case HPCC__LOCAL__EXPLAIN_ENTRY__KIND__MISS:
		return "compiled and stored after a miss";
	case HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE:
		return "compiled remotely (a worker's result) and stored";
	case HPCC__LOCAL__EXPLAIN_ENTRY__KIND__REMOTE_HIT:
		return "served from a worker's cache and stored";
	default:
		return "of an unknown kind";
	}
}

static const char *kind_name(const Hpcc__Local__ExplainEntry *x)
{
	static const char *const names[] = { "hit", "miss", "remote", "remote-hit" };
	return x->kind >= 0 && (size_t)x->kind < sizeof(names) / sizeof(names[0]) ? names[x->kind] : "unknown";
}

/* ---- flags ------------------------------------------------------------- */

static char *flag_text(const Hpcc__Local__ExplainFlag *f)
{
	char *s = NULL;
	return asprintf(&s, "%s%s%s", f->flag, f->path, f->suffix) < 0 ? NULL : s;
}

/* The option a flag sets, for telling "changed" from "removed and added":
 * -DNAME, -UNAME, -O, -g, -f/-W/-m without no-, or what precedes '='.
 * Empty: the flag has no value to change (a -I path is added or removed). */
static void flag_name(const char *s, char *out, size_t n)
{
	out[0] = '\0';
	if (s[0] != '-' || !s[1])
		return;
	size_t len = 0;
	const char *rest = s + 2;
	if (s[1] == 'D' || s[1] == 'U')
		len = strcspn(s, "=");
	else if (s[1] == 'O')
		len = 2;
	else if (s[1] == 'g' && (!s[2] || isdigit((unsigned char)s[2])))
		len = 2;
	else if (strchr("fWm", s[1]) && strncmp(rest, "no-", 3) == 0) {
		snprintf(out, n, "-%c%.*s", s[1], (int)strcspn(rest + 3, "="), rest + 3);
		return;
	} else if (strchr("fWm", s[1]))
		len = strcspn(s, "=");
	else if (strchr(s, '='))
		len = strcspn(s, "=");
	if (len)
		snprintf(out, n, "%.*s", (int)len, s);
}

static void compare_flags(struct report *r, const Hpcc__Local__ExplainEntry *ref, const Hpcc__Local__ExplainEntry *lat)
{
	size_t na = ref->n_flags, nb = lat->n_flags;
	char **a = calloc(na + 1, sizeof(char *)), **b = calloc(nb + 1, sizeof(char *));
	bool *ua = calloc(na + 1, sizeof(bool)), *ub = calloc(nb + 1, sizeof(bool));
	bool reordered = false;
	if (!a || !b || !ua || !ub) {
		r->error = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < na; i++)
		if (!(a[i] = flag_text(ref->flags[i])))
			r->error = -ENOMEM;
	for (size_t i = 0; i < nb; i++)
		if (!(b[i] = flag_text(lat->flags[i])))
			r->error = -ENOMEM;
	if (r->error)
		goto out;
	/* Equal flags first (as a multiset), then same option, other value. */
	for (size_t i = 0; i < na; i++)
		for (size_t k = 0; k < nb; k++)
			if (!ub[k] && strcmp(a[i], b[k]) == 0) {
				ua[i] = ub[k] = true;
				reordered |= i != k;
				break;
			}
	for (size_t i = 0; i < na; i++) {
		char name_a[256], name_b[256];
		flag_name(a[i], name_a, sizeof(name_a));
		if (ua[i] || !name_a[0])
			continue;
		for (size_t k = 0; k < nb; k++) {
			flag_name(b[k], name_b, sizeof(name_b));
			if (!ub[k] && strcmp(name_a, name_b) == 0) {
				ua[i] = ub[k] = true;
				report_add(r, CH_FLAG_CHANGED, name_a, a[i], b[k]);
				break;
			}
		}
	}
	bool any = false;
	for (size_t i = 0; i < na; i++)
		if (!ua[i] && (any = true))
			report_add(r, CH_FLAG_REMOVED, a[i], NULL, NULL);
	for (size_t k = 0; k < nb; k++)
		if (!ub[k] && (any = true))
			report_add(r, CH_FLAG_ADDED, b[k], NULL, NULL);
	if (reordered && !any && na == nb)
		report_add(r, CH_FLAGS_REORDERED, "", NULL, NULL);
out:
	for (size_t i = 0; a && i < na; i++)
		free(a[i]);
	for (size_t i = 0; b && i < nb; i++)
		free(b[i]);
	free(a);
	free(b);
	free(ua);
	free(ub);
}

/* ---- inputs ------------------------------------------------------------ */

static int input_cmp(const void *x, const void *y)
{
	const Hpcc__Local__ExplainInput *a = *(Hpcc__Local__ExplainInput *const *)x;
	const Hpcc__Local__ExplainInput *b = *(Hpcc__Local__ExplainInput *const *)y;
	if (a->rooted != b->rooted)
		return a->rooted ? -1 : 1;
	return strcmp(a->path, b->path);
}

/* The content an input had: its kept copy, or (for the latest entry) the
 * file itself when it still has the recorded digest. */
static int input_content(const char *cache_dir, const Hpcc__Local__ExplainEntry *x,
			 const Hpcc__Local__ExplainInput *in, bool try_disk, struct buf *ret)
{
	if (in->digest.len != DIGEST_LEN)
		return -ENOENT;
	const struct digest *d = (const struct digest *)in->digest.data;
	if (explain_blob_get(cache_dir, d, ret) == 0)
		return 0;
	if (!try_disk || (in->rooted && !x->root[0]))
		return -ENOENT;
	_cleanup_free_ char *p = in->rooted ? path_join(x->root, in->path) : strdup(in->path);
	struct digest got;
	buf_reset(ret);
	if (!p || fs_read_file(p, EXPLAIN_BLOB_MAX, ret) < 0 || digest_bytes(ret->data ? ret->data : "", ret->len, &got) < 0 ||
	    !digest_equal(&got, d))
		return -ENOENT;
	return 0;
}

static char *line_copy(const char *s, size_t n)
{
	if (n && s[n - 1] == '\r')
		n--;
	char *out = NULL;
	if (asprintf(&out, "%.*s%s", (int)(n > LINE_SHOWN_MAX ? LINE_SHOWN_MAX : n), s, n > LINE_SHOWN_MAX ? "..." : "") < 0)
		return NULL;
	return out;
}

/* The length of the line at *pos (without its newline), or -1 at the end;
 * *pos moves past the line and its newline. */
static long next_line(const struct buf *b, size_t *pos, const char **ret)
{
	if (*pos >= b->len)
		return -1;
	const char *start = b->data + *pos;
	const char *nl = memchr(start, '\n', b->len - *pos);
	size_t n = nl ? (size_t)(nl - start) : b->len - *pos;
	*pos += n + (nl ? 1 : 0);
	*ret = start;
	return (long)n;
}

/* Fills c's first changed line from the two contents. */
static void first_changed_line(struct change *c, const struct buf *was, const struct buf *now)
{
	size_t ia = 0, ib = 0;
	for (long line = 1;; line++) {
		const char *a = NULL, *b = NULL;
		long la = next_line(was, &ia, &a), lb = next_line(now, &ib, &b);
		if (la < 0 && lb < 0) {
			c->content = CONTENT_SAME_LINES;  /* e.g. only a final newline differs */
			return;
		}
		if (la != lb || memcmp(a, b, (size_t)la) != 0) {
			c->line = line;
			c->was = la < 0 ? strdup("(end of file)") : line_copy(a, (size_t)la);
			c->now = lb < 0 ? strdup("(end of file)") : line_copy(b, (size_t)lb);
			c->content = CONTENT_LINE;
			return;
		}
	}
}

static void compare_inputs(struct report *r, const char *cache_dir, const Hpcc__Local__ExplainEntry *ref,
			   const Hpcc__Local__ExplainEntry *lat)
{
	size_t na = ref->n_inputs, nb = lat->n_inputs;
	Hpcc__Local__ExplainInput **a = malloc((na + 1) * sizeof(*a)), **b = malloc((nb + 1) * sizeof(*b));
	if (!a || !b) {
		r->error = -ENOMEM;
		goto out;
	}
	memcpy(a, ref->inputs, na * sizeof(*a));
	memcpy(b, lat->inputs, nb * sizeof(*b));
	qsort(a, na, sizeof(*a), input_cmp);
	qsort(b, nb, sizeof(*b), input_cmp);
	for (size_t i = 0, k = 0; i < na || k < nb;) {
		int c = i >= na ? 1 : k >= nb ? -1 : input_cmp(&a[i], &b[k]);
		r->compared++;
		if (c < 0) {
			report_add(r, CH_HEADER_REMOVED, a[i]->path, NULL, NULL);
			i++;
			continue;
		}
		if (c > 0) {
			report_add(r, CH_HEADER_ADDED, b[k]->path, NULL, NULL);
			k++;
			continue;
		}
		if (digests_match(&a[i]->digest, &b[k]->digest)) {
			r->identical++;
		} else {
			bool src = strcmp(b[k]->path, lat->source) == 0;
			struct change *ch = report_add(r, src ? CH_SOURCE_CHANGED : CH_HEADER_CHANGED, b[k]->path, NULL, NULL);
			_cleanup_buf_ struct buf was, now;
			buf_init(&was, EXPLAIN_BLOB_MAX + 1);
			buf_init(&now, EXPLAIN_BLOB_MAX + 1);
			if (!ch)
				;
			else if (a[i]->digest.len != DIGEST_LEN || b[k]->digest.len != DIGEST_LEN)
				ch->content = CONTENT_SYSTEM;
			else if (input_content(cache_dir, ref, a[i], false, &was) < 0 ||
				 input_content(cache_dir, lat, b[k], true, &now) < 0)
				ch->content = CONTENT_OLD_GONE;
			else
				first_changed_line(ch, &was, &now);
		}
		i++;
		k++;
	}
out:
	free(a);
	free(b);
}

static void compare_toolchains(struct report *r, const Hpcc__Local__ExplainEntry *ref,
			       const Hpcc__Local__ExplainEntry *lat)
{
	char da[DIGEST_STR_LEN + 1], db[DIGEST_STR_LEN + 1];
	digest_text(&ref->toolchain, da);
	digest_text(&lat->toolchain, db);
	_cleanup_free_ char *was = NULL, *now = NULL;
	if (ref->remote != lat->remote) {
		if (asprintf(&was, "%s %s", ref->remote ? "image" : ref->compiler, da) < 0 ||
		    asprintf(&now, "%s %s", lat->remote ? "image" : lat->compiler, db) < 0) {
			r->error = -ENOMEM;
			return;
		}
		report_add(r, CH_MODE, ref->remote ? "remote -> local" : "local -> remote", was, now);
	} else if (lat->remote && !bytes_equal(&ref->toolchain, &lat->toolchain))
		report_add(r, CH_IMAGE, "", da, db);
	else if (!lat->remote && (!bytes_equal(&ref->toolchain, &lat->toolchain) || strcmp(ref->compiler, lat->compiler))) {
		if (asprintf(&was, "%s (%s)", ref->compiler, da) < 0 || asprintf(&now, "%s (%s)", lat->compiler, db) < 0) {
			r->error = -ENOMEM;
			return;
		}
		report_add(r, CH_COMPILER, "", was, now);
	}
}

/* ---- output -------------------------------------------------------------- */

static void json_str(struct buf *out, const char *s)
{
	buf_append_char(out, '"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(out, "\\%c", *p);
		else if (*p < 0x20)
			buf_printf(out, "\\u%04x", *p);
		else
			buf_append_char(out, (char)*p);
	}
	buf_append_char(out, '"');
}

/* Text mode prints file lines and flags as they are: control bytes become
 * '?' (tabs a space), so a header cannot drive the terminal. */
static void render_change_text(struct buf *out, struct change *c)
{
	const char *name = change_names[c->kind];
	char *fields[] = { c->what, c->was, c->now };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i])
			error_printable(fields[i]);
	switch (c->kind) {
	case CH_FLAG_CHANGED:
	case CH_IMAGE:
	case CH_COMPILER:
	case CH_CWD:
	case CH_ROOT:
	case CH_MODE:
		buf_printf(out, "  %s: %s -> %s\n", name, c->was, c->now);
		return;
	case CH_FLAG_ADDED:
	case CH_FLAG_REMOVED:
	case CH_HEADER_ADDED:
	case CH_HEADER_REMOVED:
		buf_printf(out, "  %s: %s\n", name, c->what);
		return;
	case CH_FLAGS_REORDERED:
		buf_printf(out, "  %s (the same flags in another order)\n", name);
		return;
	default:
		break;
	}
	switch (c->content) {
	case CONTENT_LINE:
		buf_printf(out, "  %s: %s, first changed line %ld:\n    was: %s\n    now: %s\n", name, c->what, c->line,
			   c->was, c->now);
		break;
	case CONTENT_SAME_LINES:
		buf_printf(out, "  %s: %s (the same lines: only line endings or the final newline differ)\n", name, c->what);
		break;
	case CONTENT_OLD_GONE:
		buf_printf(out, "  %s: %s, line unknown (old content no longer kept)\n", name, c->what);
		break;
	case CONTENT_SYSTEM:
		buf_printf(out, "  %s: %s (a system header: only its digest is kept)\n", name, c->what);
		break;
	}
}

static void render_entry_json(struct buf *out, const char *key, const Hpcc__Local__ExplainEntry *x)
{
	char t[32], d[DIGEST_STR_LEN + 1];
	format_time(x->time, t);
	buf_printf(out, "  \"%s\": {\"time\": ", key);
	json_str(out, t);
	buf_printf(out, ", \"kind\": \"%s\", \"remote\": %s, \"toolchain\": ", kind_name(x), x->remote ? "true" : "false");
	digest_text(&x->toolchain, d);
	json_str(out, d);
	buf_printf(out, ", \"compiler\": ");
	json_str(out, x->compiler);
	buf_printf(out, ", \"inputs\": %zu}", x->n_inputs);
}

static void render_json(struct buf *out, const char *object, const Hpcc__Local__ExplainRecord *rec, const char *status,
			bool object_matches, const struct report *r)
{
	buf_printf(out, "{\n  \"object\": ");
	json_str(out, object);
	buf_printf(out, ",\n  \"status\": \"%s\",\n  \"object_matches\": %s,\n", status, object_matches ? "true" : "false");
	render_entry_json(out, "latest", rec->latest);
	buf_printf(out, ",\n");
	if (rec->reference)
		render_entry_json(out, "reference", rec->reference);
	else
		buf_printf(out, "  \"reference\": null");
	buf_printf(out, ",\n  \"changes\": [");
	for (size_t i = 0; i < r->n; i++) {
		const struct change *c = &r->v[i];
		buf_printf(out, "%s\n    {\"kind\": \"", i ? "," : "");
		/* The text's name in snake case: "flag changed" -> "flag_changed". */
		for (const char *p = change_names[c->kind]; *p; p++)
			buf_append_char(out, *p == ' ' ? '_' : *p);
		buf_printf(out, "\", \"what\": ");
		json_str(out, c->what);
		if (c->was) {
			buf_printf(out, ", \"was\": ");
			json_str(out, c->was);
			buf_printf(out, ", \"now\": ");
			json_str(out, c->now);
		}
		if (c->line)
			buf_printf(out, ", \"line\": %ld", c->line);
		buf_printf(out, "}");
	}
	buf_printf(out, "%s],\n  \"inputs_compared\": %zu,\n  \"inputs_identical\": %zu\n}\n", r->n ? "\n  " : "",
		   r->compared, r->identical);
}

/* Checks what a report reads of an entry; protobuf-c leaves no string NULL. */
static bool entry_sane(const Hpcc__Local__ExplainEntry *x)
{
	if (!x || x->action_digest.len != DIGEST_LEN)
		return false;
	for (size_t i = 0; i < x->n_inputs; i++)
		if (!x->inputs[i] || x->inputs[i]->digest.len > DIGEST_LEN)
			return false;
	for (size_t i = 0; i < x->n_flags; i++)
		if (!x->flags[i])
			return false;
	return true;
}

int explain_report(const char *cache_dir, const char *object, bool json, struct buf *out)
{
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	_cleanup_free_ char *abs = cwd ? path_join(cwd, object) : NULL;
	if (!abs)
		return -ENOMEM;
	Hpcc__Local__ExplainRecord *rec = NULL;
	int r = explain_load(cache_dir, abs, &rec);
	if (r == -ENOENT) {
		buf_printf(out, "no record of %s: it was not compiled through hpcc since explain records began (or the "
			   "cache was cleaned)\n", object);
		return r;
	}
	if (r == -EBADMSG || (r == 0 && (!entry_sane(rec->latest) || (rec->reference && !entry_sane(rec->reference))))) {
		buf_printf(out, "the explain record of %s is damaged (removed); the next compile of it writes a new one\n",
			   object);
		if (rec) {
			_cleanup_free_ char *p = explain_record_path(cache_dir, abs);
			if (p)
				unlink(p);
			hpcc__local__explain_record__free_unpacked(rec, NULL);
		}
		return -EBADMSG;
	}
	if (r < 0) {
		buf_printf(out, "cannot read the explain record of %s: %s\n", object, strerror(-r));
		return r;
	}
	const Hpcc__Local__ExplainEntry *lat = rec->latest, *ref = rec->reference;
	/* Is the file still what hpcc last wrote? */
	_cleanup_buf_ struct buf data;
	buf_init(&data, ENGINE_MAX_OUTPUT + 1);
	struct digest od;
	bool exists = fs_read_file(abs, ENGINE_MAX_OUTPUT, &data) == 0;
	bool matches = exists && digest_bytes(data.data ? data.data : "", data.len, &od) == 0 &&
		       lat->output_digest.len == DIGEST_LEN && memcmp(od.b, lat->output_digest.data, DIGEST_LEN) == 0;

	struct report rep = { 0 };
	const char *status;
	if (is_hit(lat))
		status = "hit";
	else if (!ref)
		status = "first";
	else if (bytes_equal(&ref->action_digest, &lat->action_digest))
		status = "evicted";
	else
		status = "changed";
	if (ref && strcmp(status, "changed") == 0) {
		compare_toolchains(&rep, ref, lat);
		if (strcmp(ref->cwd, lat->cwd) != 0)
			report_add(&rep, CH_CWD, "", ref->cwd, lat->cwd);
		if (strcmp(ref->root, lat->root) != 0)
			report_add(&rep, CH_ROOT, "", ref->root[0] ? ref->root : "(none)", lat->root[0] ? lat->root : "(none)");
		compare_flags(&rep, ref, lat);
		compare_inputs(&rep, cache_dir, ref, lat);
	}
	if (rep.error) {
		report_free(&rep);
		hpcc__local__explain_record__free_unpacked(rec, NULL);
		buf_reset(out);
		buf_printf(out, "out of memory\n");
		return -ENOMEM;
	}
	if (json) {
		render_json(out, object, rec, status, matches, &rep);
		goto done;
	}
	if (!matches)
		buf_printf(out, "%s %s; what follows is the last compile hpcc served for it\n", object,
			   exists ? "was not last written by hpcc (or was modified since)" : "does not exist any more");
	char tl[32], tr[32] = "";
	format_time(lat->time, tl);
	if (ref)
		format_time(ref->time, tr);
	if (strcmp(status, "hit") == 0)
		buf_printf(out, "%s was %s (hit at %s); nothing changed since the compile that stored it (%zu inputs)\n",
			   object, kind_text(lat), tl, lat->n_inputs);
	else if (strcmp(status, "first") == 0)
		buf_printf(out, "%s: %s at %s; the first compile of it on record, nothing to compare with\n", object,
			   kind_text(lat), tl);
	else if (strcmp(status, "evicted") == 0)
		buf_printf(out, "%s: %s at %s, with the same inputs as the %s at %s: that result was no longer in the "
			   "cache (evicted or cleaned)\n", object, kind_text(lat), tl, is_hit(ref) ? "last hit" : "compile", tr);
	else {
		buf_printf(out, "%s: %s at %s; ", object, kind_text(lat), tl);
		if (is_hit(ref))
			buf_printf(out, "last hit %s\n", tr);
		else
			buf_printf(out, "no hit on record, compared with the previous compile at %s (%s)\n", tr, kind_text(ref));
		for (size_t i = 0; i < rep.n; i++)
			render_change_text(out, &rep.v[i]);
		if (rep.n == 0)
			buf_printf(out, "  no change in the toolchain, flags or inputs on record: something else in the cache "
				   "key changed (an environment variable such as LANG, LC_ALL, CPATH or SOURCE_DATE_EPOCH, "
				   "prefix_map, the CPU behind -march=native, or a profile)\n");
		buf_printf(out, "  %zu inputs compared, %zu identical\n", rep.compared, rep.identical);
	}
done:
	report_free(&rep);
	hpcc__local__explain_record__free_unpacked(rec, NULL);
	return 0;
}

int command_explain(int argc, char **argv)
{
	bool json = false;
	const char *object = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			puts("usage: hpcc explain [--json] OBJECT\n"
			     "Says why the last compile of OBJECT through hpcc did or did not hit: what changed since the\n"
			     "last hit (toolchain, flags, inputs with their first changed line).");
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "hpcc: explain: unknown option %s (usage: hpcc explain [--json] OBJECT)\n", argv[i]);
			return 2;
		} else if (object) {
			fprintf(stderr, "hpcc: explain: one object at a time (usage: hpcc explain [--json] OBJECT)\n");
			return 2;
		} else
			object = argv[i];
	}
	if (!object || !object[0]) {
		fprintf(stderr, "hpcc: explain: no object named (usage: hpcc explain [--json] OBJECT)\n");
		return 2;
	}
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	_cleanup_free_ char *dir = engine_cache_dir(&cfg);
	config_free(&cfg);
	if (!dir) {
		fprintf(stderr, "hpcc: explain: out of memory\n");
		return 1;
	}
	_cleanup_buf_ struct buf out;
	buf_init(&out, (size_t)64 << 20);
	int r = explain_report(dir, object, json, &out);
	if (r < 0) {
		fprintf(stderr, "hpcc: explain: %.*s", (int)out.len, out.data ? out.data : "\n");
		return 1;
	}
	fwrite(out.data, 1, out.len, stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
