/*
 * hpcc audit verify FILE|DIR (docs/audit.md): checks a worker's audit log,
 * the chain of row hashes and sequence numbers, the seals of sealed
 * segments and that no segment is missing, and says which kind of
 * tampering broke it where. A DIR is the log directory (<worker dir>/audit,
 * or the worker dir that holds it): every segment in seq order, then
 * current.tsv. A FILE is one segment, current.tsv, or a v1 audit.tsv.
 * The checking is auditfmt.c's verifier; this is the command line around
 * it. Exit status: 0 intact, 1 tampering found, 2 usage or unreadable input.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auditfmt.h"
#include "commands.h"
#include "fs.h"
#include "macro.h"
#include "strv.h"

#define PROG "hpcc audit verify"

static int usage(void)
{
	fputs("usage: hpcc audit verify FILE|DIR\n"
	      "  DIR: a worker's audit directory (<worker dir>/audit) or the worker dir;\n"
	      "  FILE: one segment, current.tsv, or a v1 audit.tsv.\n"
	      "  exit 0: intact, 1: tampering found, 2: usage or unreadable input\n", stderr);
	return 2;
}

/* The log's files in order: segments by first seq, then current.tsv. */
static int list_dir(const char *dir, struct strv *ret)
{
	uint64_t *seqs = NULL;
	size_t n = 0;
	bool current = false;
	int r = audit_list_segments(dir, &seqs, &n, &current);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char name[AUDIT_SEGMENT_NAME_MAX];
		audit_segment_name(seqs[i], name);
		r = strv_pushf(ret, "%s/%s", dir, name);
	}
	if (r == 0 && current)
		r = strv_pushf(ret, "%s/%s", dir, AUDIT_CURRENT_NAME);
	free(seqs);
	return r;
}

static int verify_file(struct audit_verifier *v, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, PROG ": cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	struct audit_reader rd;
	if (audit_reader_init(&rd, fd) < 0 || audit_verifier_begin_file(v, path) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		audit_reader_free(&rd);
		return -1;
	}
	const char *line;
	size_t len;
	int r;
	while ((r = audit_reader_next(&rd, &line, &len)) > 0)
		audit_verifier_line(v, line, len);
	audit_verifier_end_file(v, rd.torn);
	audit_reader_free(&rd);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot read %s: %s\n", path, strerror(-r));
		return -1;
	}
	return 0;
}

static int report(const struct audit_verify_summary *s)
{
	char range[80] = "";
	if (s->rows && !s->v1)
		snprintf(range, sizeof(range), " (seq %" PRIu64 "..%" PRIu64 ")", s->first_seq, s->last_seq);
	else if (s->v1)
		snprintf(range, sizeof(range), " (v1: no seq)");
	for (size_t i = 0; i < s->n_notes; i++)
		printf("note: %s\n", s->notes[i]);
	if (s->problems == 0) {
		printf(PROG ": OK: %" PRIu64 " rows%s in %" PRIu64 " file%s, chain intact; last row hash %s\n", s->rows,
		       range, s->files, s->files == 1 ? "" : "s", s->rows ? s->last_hash : "-");
		return 0;
	}
	printf(PROG ": TAMPERED: %" PRIu64 " problem%s in %" PRIu64 " rows%s in %" PRIu64 " file%s:\n", s->problems,
	       s->problems == 1 ? "" : "s", s->rows, range, s->files, s->files == 1 ? "" : "s");
	for (size_t i = 0; i < s->n_shown; i++)
		printf("  %s: %s\n", audit_problem_kind_name(s->shown[i].kind), s->shown[i].msg);
	if (s->problems > s->n_shown)
		printf("  ... and %" PRIu64 " more\n", s->problems - s->n_shown);
	return 1;
}

int command_audit(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return usage();
	if (strcmp(argv[1], "verify") != 0) {
		fprintf(stderr, "hpcc audit: unknown subcommand '%s' (hpcc audit verify FILE|DIR)\n", argv[1]);
		return 2;
	}
	if (argc != 3)
		return usage();
	const char *arg = argv[2];
	struct stat st;
	if (stat(arg, &st) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", arg, strerror(errno));
		return 2;
	}
	_cleanup_strv_ struct strv files = { 0 };
	bool whole = S_ISDIR(st.st_mode);
	if (whole) {
		int r = list_dir(arg, &files);
		if (r == 0 && files.n == 0) {
			/* The worker dir: its log is in audit/. */
			_cleanup_free_ char *sub = path_join(arg, "audit");
			struct stat sst;
			if (sub && stat(sub, &sst) == 0 && S_ISDIR(sst.st_mode))
				r = list_dir(sub, &files);
		}
		if (r < 0) {
			fprintf(stderr, PROG ": cannot list %s: %s\n", arg, strerror(-r));
			return 2;
		}
		if (files.n == 0) {
			fprintf(stderr, PROG ": no audit log in %s (no current.tsv or segment-*.tsv)\n", arg);
			return 2;
		}
	} else if (strv_push(&files, arg) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		return 2;
	}
	struct audit_verifier *v = NULL;
	if (audit_verifier_new(whole, &v) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		return 2;
	}
	for (size_t i = 0; i < files.n; i++)
		if (verify_file(v, files.v[i]) < 0) {
			audit_verifier_free(v);
			return 2;
		}
	int code = report(audit_verifier_finish(v));
	audit_verifier_free(v);
	return code;
}
