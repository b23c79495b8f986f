/*
 * hpcc inspect and hpcc reproduce (DESIGN.md §5, docs/audit.md).
 *
 * inspect finds audit rows by a digest prefix (image, source, output,
 * action, or the row's own hash): first in the rows the daemon kept for its
 * own remote jobs (<cache dir>/audit/rows.tsv), then, when none match there
 * or with --remote, by asking the worker through the daemon (the worker
 * answers with rows of this tenant only; --worker ID asks that worker of
 * the scheduler's). Each row prints as a labelled
 * card, or as its raw line with --tsv.
 *
 * reproduce takes a prefix (resolved as inspect does, to one action) or a
 * row's TSV line, has the worker run that action again from the inputs it
 * retained, every cache bypassed, and compares the output digests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auditfmt.h"
#include "buf.h"
#include "commands.h"
#include "config.h"
#include "engine.h"
#include "fs.h"
#include "macro.h"
#include "server.h"
#include "strv.h"

#define ROWS_FILE_MAX ((size_t)64 << 20)  /* rows.tsv rotates at 32 MiB */
#define FOUND_MAX 200                     /* rows kept: the newest, as the worker's AuditRows */
#define REPRODUCE_TIMEOUT_MS (30 * 60 * 1000)

struct found {
	struct strv lines;   /* unique by row hash, in the order found; the last FOUND_MAX */
	struct strv hashes;
	bool truncated;      /* more matched */
};

static void found_free(struct found *f)
{
	strv_free(&f->lines);
	strv_free(&f->hashes);
}

/* Adds a row (a line as stored) when it parses, matches and is new. */
static void found_add(struct found *f, const char *line, size_t len, const char *prefix)
{
	struct audit_parsed p;
	struct error err = { 0 };
	if (len == 0 || len > AUDIT_ROW_MAX || line[0] == '#' || audit_parse_row(line, len, &p, &err) < 0)
		return;
	bool take = (!prefix || audit_row_matches(&p, prefix));
	for (size_t i = 0; take && i < f->hashes.n; i++)
		if (strcmp(f->hashes.v[i], p.hash) == 0)
			take = false;
	if (take && f->lines.n == FOUND_MAX) {
		/* Keep the newest: drop the oldest (FOUND_MAX bounds the
		 * duplicate check above, whatever the files hold). */
		free(f->lines.v[0]);
		free(f->hashes.v[0]);
		memmove(f->lines.v, f->lines.v + 1, (FOUND_MAX - 1) * sizeof(char *));
		memmove(f->hashes.v, f->hashes.v + 1, (FOUND_MAX - 1) * sizeof(char *));
		f->lines.n--;
		f->hashes.n--;
		f->lines.v[f->lines.n] = f->hashes.v[f->hashes.n] = NULL;
		f->truncated = true;
	}
	if (take && strv_push(&f->hashes, p.hash) == 0) {
		_cleanup_free_ char *copy = strndup(line, len);
		if (!copy || strv_push(&f->lines, copy) < 0) {
			free(f->hashes.v[--f->hashes.n]);
			f->hashes.v[f->hashes.n] = NULL;
		}
	}
	audit_parsed_free(&p);
}

static void scan_text(struct found *f, const char *text, size_t n, const char *prefix)
{
	for (size_t start = 0; start < n;) {
		const char *nl = memchr(text + start, '\n', n - start);
		size_t end = nl ? (size_t)(nl - text) : n;
		found_add(f, text + start, end - start, prefix);
		start = end + 1;
	}
}

/* The daemon's copy of its jobs' rows: rows.tsv.1 (older), then rows.tsv. */
static void scan_local(struct found *f, const char *cache_dir, const char *prefix)
{
	static const char *const names[] = { "rows.tsv.1", "rows.tsv" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *path = NULL;
		if (asprintf(&path, "%s/audit/%s", cache_dir, names[i]) < 0)
			continue;
		_cleanup_buf_ struct buf b;
		buf_init(&b, ROWS_FILE_MAX);
		if (fs_read_file(path, ROWS_FILE_MAX, &b) == 0)
			scan_text(f, b.data, b.len, prefix);
	}
}

/* The worker's rows of this tenant, through the daemon: 0, or -1 after
 * printing why not. */
static int scan_remote(struct found *f, const struct config *cfg, const char *prefix, const char *worker,
		       bool *ret_truncated)
{
	_cleanup_free_ char *text = NULL;
	char *args[] = { (char *)prefix, (char *)(worker ? worker : "") };
	int r = daemon_command_args(cfg, "inspect", args, worker ? 2 : 1, 60000, &text);
	if (r == -ENOENT || r == -ECONNREFUSED) {
		fprintf(stderr, "hpcc: no daemon runs, so the worker was not asked (hpcc daemon start)\n");
		return -1;
	}
	if (r < 0) {
		fprintf(stderr, "hpcc: asking the worker: %s\n", text ? text : strerror(-r));
		return -1;
	}
	if (text) {
		scan_text(f, text, strlen(text), prefix);
		*ret_truncated = strstr(text, "\n# truncated\n") != NULL || strncmp(text, "# truncated\n", 12) == 0;
	}
	return 0;
}

static const char *cache_meaning(const char *c)
{
	return strcmp(c, "hit") == 0	 ? "hit (answered from the action cache)" :
	       strcmp(c, "store") == 0 ? "store (compiled; the result was stored)" :
	       strcmp(c, "miss") == 0  ? "miss (compiled; not stored: a failed compile or a reproduction)" :
					 c;
}

/* A field as the row stores it (escaped): a command holding a newline or
 * an escape sequence cannot forge lines of the card or drive the terminal. */
static const char *shown(const char *v, struct buf *b)
{
	buf_reset(b);
	if (audit_escape_append(b, v) < 0 || buf_append_char(b, '\0') < 0)
		return "(too long)";
	return b->data;
}

static void print_card(const struct audit_parsed *p)
{
	static const struct {
		const char *label;
		enum audit_col col;
	} lines[] = {
		{ "time", AUDIT_COL_TIME },     { "tenant", AUDIT_COL_TENANT }, { "worker", AUDIT_COL_WORKER },
		{ "vm", AUDIT_COL_VM },         { "image", AUDIT_COL_IMAGE },   { "action", AUDIT_COL_ACTION },
		{ "source", AUDIT_COL_SOURCE }, { "output", AUDIT_COL_OUTPUT }, { "flags", AUDIT_COL_FLAGS },
		{ "exit", AUDIT_COL_EXIT },
	};
	_cleanup_buf_ struct buf b;
	buf_init(&b, AUDIT_ROW_MAX + 1);
	printf("row       %s (seq %s)\n", p->hash, shown(p->col[AUDIT_COL_SEQ], &b));
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++)
		printf("%-9s %s\n", lines[i].label, shown(p->col[lines[i].col], &b));
	printf("duration  %s ms\n", shown(p->col[AUDIT_COL_DURATION], &b));
	printf("cache     %s\n", cache_meaning(shown(p->col[AUDIT_COL_CACHE], &b)));
	printf("prev row  %s\n", shown(p->col[AUDIT_COL_PREV], &b));
}

/* Local rows, then the worker's when none matched here or when asked. */
static int find_rows(const struct config *cfg, const char *prefix, bool remote, bool local_only, const char *worker,
		     struct found *f, bool *ret_truncated)
{
	_cleanup_free_ char *dir = engine_cache_dir(cfg);
	if (dir)
		scan_local(f, dir, prefix);
	if (local_only || (f->lines.n > 0 && !remote))
		return 0;
	return scan_remote(f, cfg, prefix, worker, ret_truncated) < 0 && f->lines.n == 0 ? -1 : 0;
}

int command_inspect(int argc, char **argv)
{
	bool tsv = false, remote = false, local_only = false;
	const char *prefix = NULL, *worker = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
			worker = argv[++i];
			remote = true;
		} else if (strcmp(argv[i], "--tsv") == 0)
			tsv = true;
		else if (strcmp(argv[i], "--remote") == 0)
			remote = true;
		else if (strcmp(argv[i], "--local") == 0)
			local_only = true;
		else if (argv[i][0] == '-' || prefix) {
			fprintf(stderr, "hpcc: inspect: unexpected '%s' (hpcc inspect [--tsv] [--remote|--local] [--worker ID] HASH-PREFIX)\n",
				argv[i]);
			return 2;
		} else
			prefix = argv[i];
	}
	if (!prefix || !audit_prefix_valid(prefix)) {
		fprintf(stderr, "hpcc: inspect: give a digest prefix of 4 to 64 hex digits (sha256: optional)\n");
		return 2;
	}
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 2;
	struct found f = { 0 };
	bool truncated = false;
	int r = find_rows(&cfg, prefix, remote, local_only, worker, &f, &truncated);
	config_free(&cfg);
	if (r < 0 || f.lines.n == 0) {
		if (r == 0)
			fprintf(stderr, "hpcc: inspect: no audit row matches %s\n", prefix);
		found_free(&f);
		return 1;
	}
	for (size_t i = 0; i < f.lines.n; i++) {
		if (tsv) {
			printf("%s\n", f.lines.v[i]);
			continue;
		}
		struct audit_parsed p;
		struct error err = { 0 };
		if (audit_parse_row(f.lines.v[i], strlen(f.lines.v[i]), &p, &err) < 0)
			continue;
		if (i)
			putchar('\n');
		print_card(&p);
		audit_parsed_free(&p);
	}
	if (truncated || f.truncated)
		fprintf(stderr, "hpcc: inspect: more than %d rows matched (the newest shown); give a longer prefix\n",
			FOUND_MAX);
	found_free(&f);
	return 0;
}

/* The value of "NAME value" in the daemon's reply, or NULL. */
static char *reply_field(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = text; l && *l;) {
		const char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) : strlen(l);
		if (len > n && strncmp(l, name, n) == 0 && l[n] == ' ')
			return strndup(l + n + 1, len - n - 1);
		l = nl ? nl + 1 : NULL;
	}
	return NULL;
}

int command_reproduce(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "hpcc: reproduce: usage: hpcc reproduce HASH-PREFIX | 'TSV-LINE'\n");
		return 2;
	}
	const char *arg = argv[1];
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 2;
	struct found f = { 0 };
	int code = 2;
	struct audit_parsed row = { 0 };
	bool have_row = false;
	_cleanup_free_ char *text = NULL, *output = NULL, *exit_s = NULL, *worker = NULL, *vm = NULL, *duration = NULL;
	_cleanup_free_ char *rerun = NULL;
	_cleanup_buf_ struct buf b1, b2, b3;  /* fields shown escaped, one buffer each */
	buf_init(&b1, AUDIT_ROW_MAX + 1);
	buf_init(&b2, AUDIT_ROW_MAX + 1);
	buf_init(&b3, AUDIT_ROW_MAX + 1);
	struct error err = { 0 };
	size_t len = strlen(arg);
	while (len > 0 && (arg[len - 1] == '\n' || arg[len - 1] == '\r'))
		len--;
	if (memchr(arg, '\t', len)) {
		if (len > AUDIT_ROW_MAX || audit_parse_row(arg, len, &row, &err) < 0) {
			fprintf(stderr, "hpcc: reproduce: not an audit row: %s\n", err.msg);
			goto out;
		}
		have_row = true;
	} else {
		if (!audit_prefix_valid(arg)) {
			fprintf(stderr, "hpcc: reproduce: give a digest prefix of 4 to 64 hex digits, or a row's TSV line\n");
			goto out;
		}
		bool truncated = false;
		if (find_rows(&cfg, arg, false, false, NULL, &f, &truncated) < 0)
			goto out;
		/* One action: its newest row of a compile that ran (store or
		 * miss: the worker that ran it retained it), else its newest
		 * row. */
		bool ran = false;
		for (size_t i = 0; i < f.lines.n; i++) {
			struct audit_parsed p;
			if (audit_parse_row(f.lines.v[i], strlen(f.lines.v[i]), &p, &err) < 0)
				continue;
			if (have_row && strcmp(p.col[AUDIT_COL_ACTION], row.col[AUDIT_COL_ACTION]) != 0) {
				fprintf(stderr, "hpcc: reproduce: %s matches rows of more than one action (%.23s..., "
					"%.23s...); give a longer prefix\n", arg, row.col[AUDIT_COL_ACTION],
					p.col[AUDIT_COL_ACTION]);
				audit_parsed_free(&p);
				goto out;
			}
			bool p_ran = strcmp(p.col[AUDIT_COL_CACHE], "hit") != 0;
			if (have_row && ran && !p_ran) {
				audit_parsed_free(&p);
				continue;
			}
			if (have_row)
				audit_parsed_free(&row);
			row = p;
			have_row = true;
			ran = p_ran;
		}
		if (!have_row) {
			fprintf(stderr, "hpcc: reproduce: no audit row matches %s\n", arg);
			code = 1;
			goto out;
		}
	}
	/* To the worker that ran it: it retained the action and its inputs. */
	char *args[] = { row.col[AUDIT_COL_ACTION], row.col[AUDIT_COL_IMAGE], row.col[AUDIT_COL_WORKER] };
	int r = daemon_command_args(&cfg, "reproduce", args, strcmp(args[2], "-") ? 3 : 2, REPRODUCE_TIMEOUT_MS, &text);
	if (r < 0) {
		if (!text && (r == -ENOENT || r == -ECONNREFUSED))
			fprintf(stderr, "hpcc: reproduce: no daemon runs (hpcc daemon start)\n");
		else
			fprintf(stderr, "hpcc: reproduce: %s\n", text ? text : strerror(-r));
		if (r == -ENOENT && text)
			fprintf(stderr, "hpcc: reproduce: the row says it ran on worker %s\n", row.col[AUDIT_COL_WORKER]);
		goto out;
	}
	output = reply_field(text, "output");
	exit_s = reply_field(text, "exit");
	worker = reply_field(text, "worker");
	vm = reply_field(text, "vm");
	duration = reply_field(text, "duration");
	if (!output || !exit_s) {
		fprintf(stderr, "hpcc: reproduce: the daemon's answer is incomplete\n");
		goto out;
	}
	printf("action      %s\n", row.col[AUDIT_COL_ACTION]);
	printf("recorded    %s  (exit %s; worker %s, %s, %s)\n", row.col[AUDIT_COL_OUTPUT], row.col[AUDIT_COL_EXIT],
	       shown(row.col[AUDIT_COL_WORKER], &b1), shown(row.col[AUDIT_COL_VM], &b2), row.col[AUDIT_COL_TIME]);
	/* output and exit are the daemon's own formatting; the rest comes from the worker. */
	printf("reproduced  %s  (exit %s; worker %s, %s, %s ms)\n", output, exit_s, worker ? shown(worker, &b1) : "-",
	       vm ? shown(vm, &b2) : "-", duration ? shown(duration, &b3) : "-");
	bool same = strcmp(output, row.col[AUDIT_COL_OUTPUT]) == 0 && strcmp(exit_s, row.col[AUDIT_COL_EXIT]) == 0;
	/* The re-execution's own row names what the worker actually ran: a
	 * row (a pasted line, say) whose command, source or image is not
	 * that of its action digest does not describe this compile. */
	rerun = reply_field(text, "row");
	struct audit_parsed again;
	const char *mismatch = NULL;
	if (rerun && audit_parse_row(rerun, strlen(rerun), &again, &err) == 0) {
		static const struct {
			enum audit_col col;
			const char *what;
		} cols[] = { { AUDIT_COL_IMAGE, "image" }, { AUDIT_COL_SOURCE, "source" }, { AUDIT_COL_FLAGS, "flags" } };
		for (size_t i = 0; !mismatch && i < ARRAY_SIZE(cols); i++)
			if (strcmp(again.col[cols[i].col], row.col[cols[i].col]) != 0)
				mismatch = cols[i].what;
		audit_parsed_free(&again);
	}
	if (mismatch) {
		printf("NOT reproducible: the row's %s is not that of the action the worker ran\n", mismatch);
		same = false;
	} else if (same && strcmp(output, "-") != 0)
		printf("reproducible: the output digests are equal\n");
	else if (same)
		printf("reproducible: no object either time, same exit status\n");
	else
		printf("NOT reproducible: %s\n", strcmp(exit_s, row.col[AUDIT_COL_EXIT]) != 0 ?
							 "the exit status differs" : "the output digests differ");
	code = same ? 0 : 1;
out:
	if (have_row)
		audit_parsed_free(&row);
	found_free(&f);
	config_free(&cfg);
	return code;
}
