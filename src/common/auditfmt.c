/*
 * The audit log format (see auditfmt.h): rows, header and seal lines, the
 * bounded line reader and prefix matching, then the verifier, so that one
 * file pair holds everything that knows what a valid log looks like.
 */
#include "auditfmt.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "digest.h"
#include "macro.h"

const char *const audit_col_names[AUDIT_NCOLS] = {
	"time", "image_digest", "source_digest", "flags", "output_digest", "tenant", "worker",
	"vm", "duration", "exit", "action_digest", "cache", "seq", "prev_row_hash",
};

const char *audit_header_line(void)
{
	return "#hpcc-audit v2\ttime\timage_digest\tsource_digest\tflags\toutput_digest\ttenant\tworker\tvm\t"
	       "duration\texit\taction_digest\tcache\tseq\tprev_row_hash";
}

int audit_escape_append(struct buf *b, const char *s)
{
	if (!s || !*s)
		return buf_append_char(b, '-');
	int r = 0;
	for (; r == 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '\\': r = buf_append_str(b, "\\\\"); break;
		case '\t': r = buf_append_str(b, "\\t"); break;
		case '\n': r = buf_append_str(b, "\\n"); break;
		case '\r': r = buf_append_str(b, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				r = buf_printf(b, "\\x%02x", c);
			else
				r = buf_append_char(b, (char)c);
		}
	}
	return r;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Unescapes [s, s+n) into a new string; NULL for a bad escape (or ENOMEM:
 * errno says which). */
static char *unescape(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			*o++ = s[i];
			continue;
		}
		char e = ++i < n ? s[i] : '\0';
		if (e == '\\' || e == 't' || e == 'n' || e == 'r')
			*o++ = e == '\\' ? '\\' : e == 't' ? '\t' : e == 'n' ? '\n' : '\r';
		else if (e == 'x' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0 &&
			 hexval(s[i + 1]) * 16 + hexval(s[i + 2]) != 0) {
			*o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			free(out);
			errno = EINVAL;
			return NULL;
		}
	}
	*o = '\0';
	return out;
}

static bool is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool digest_shape_ok(const char *s)
{
	size_t pl = strlen(DIGEST_PREFIX);
	return strcmp(s, "-") == 0 ||
	       (strlen(s) == DIGEST_STR_LEN && strncmp(s, DIGEST_PREFIX, pl) == 0 && is_lower_hex(s + pl, DIGEST_HEX_LEN));
}

/* An optional '-' and 1-19 digits. */
static bool integer_ok(const char *s, bool allow_negative)
{
	if (allow_negative && *s == '-')
		s++;
	size_t n = strlen(s);
	return n > 0 && n < 20 && strspn(s, "0123456789") == n;
}

static bool time_ok(const char *s)
{
	/* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
			return false;
	return true;
}

void audit_parsed_free(struct audit_parsed *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < AUDIT_NCOLS; i++)
		free(p->col[i]);
	*p = (struct audit_parsed){ 0 };
}

static int parse_row(const char *line, size_t len, int version, struct audit_parsed *ret, struct error *err)
{
	size_t ncols = version == 1 ? AUDIT_NCOLS - 1 : AUDIT_NCOLS;
	if (len > AUDIT_ROW_MAX)
		return error_set(err, -EINVAL, "longer than %d bytes", AUDIT_ROW_MAX);
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
			return error_set(err, -EINVAL, "a control byte at column %zu", i + 1);
	size_t tabs = 0;
	for (size_t i = 0; i < len; i++)
		tabs += line[i] == '\t';
	if (tabs + 1 != ncols)
		return error_set(err, -EINVAL, "%zu columns, not %zu", tabs + 1, ncols);
	struct audit_parsed p = { 0 };
	const char *s = line, *end = line + len;
	for (size_t i = 0; i < ncols; i++) {
		const char *tab = memchr(s, '\t', (size_t)(end - s));
		size_t n = tab ? (size_t)(tab - s) : (size_t)(end - s);
		/* v1 has no seq: its prev_row_hash is the 13th column. */
		size_t slot = version == 1 && i == AUDIT_COL_SEQ ? AUDIT_COL_PREV : i;
		if (n == 0) {
			audit_parsed_free(&p);
			return error_set(err, -EINVAL, "%s is empty", audit_col_names[slot]);
		}
		if (!(p.col[slot] = unescape(s, n))) {
			int r = errno == ENOMEM ? -ENOMEM : -EINVAL;
			audit_parsed_free(&p);
			return error_set(err, r, "%s: %s", audit_col_names[slot], r == -ENOMEM ? "out of memory" : "a bad escape");
		}
		s += n + 1;
	}
	const char *bad = NULL;
	static const enum audit_col digests[] = { AUDIT_COL_IMAGE, AUDIT_COL_SOURCE, AUDIT_COL_OUTPUT, AUDIT_COL_ACTION };
	if (!time_ok(p.col[AUDIT_COL_TIME]))
		bad = "time is not YYYY-MM-DDTHH:MM:SS.uuuuuuZ";
	for (size_t i = 0; !bad && i < ARRAY_SIZE(digests); i++)
		if (!digest_shape_ok(p.col[digests[i]]))
			bad = audit_col_names[digests[i]];
	if (!bad && !integer_ok(p.col[AUDIT_COL_DURATION], false))
		bad = "duration is not a number";
	else if (!bad && !integer_ok(p.col[AUDIT_COL_EXIT], true))
		bad = "exit is not a number";
	else if (!bad && strcmp(p.col[AUDIT_COL_CACHE], "hit") != 0 && strcmp(p.col[AUDIT_COL_CACHE], "miss") != 0 &&
		 strcmp(p.col[AUDIT_COL_CACHE], "store") != 0)
		bad = "cache is not hit, miss or store";
	else if (!bad && version == 2 &&
		 (!integer_ok(p.col[AUDIT_COL_SEQ], false) || p.col[AUDIT_COL_SEQ][0] == '0'))
		bad = "seq is not a number from 1";
	else if (!bad && (strlen(p.col[AUDIT_COL_PREV]) != DIGEST_HEX_LEN || !is_lower_hex(p.col[AUDIT_COL_PREV], DIGEST_HEX_LEN)))
		bad = "prev_row_hash is not 64 lowercase hex digits";
	if (bad) {
		bool is_digest = strchr(bad, ' ') == NULL;
		error_set(err, -EINVAL, "%s%s", bad, is_digest ? " is not sha256:<64 lowercase hex> or -" : "");
		audit_parsed_free(&p);
		return -EINVAL;
	}
	p.seq = version == 2 ? strtoull(p.col[AUDIT_COL_SEQ], NULL, 10) : 0;
	struct digest d;
	if (digest_bytes(line, len, &d) < 0) {
		audit_parsed_free(&p);
		return error_set(err, -ENOMEM, "out of memory");
	}
	digest_to_hex(&d, p.hash);
	*ret = p;
	return 0;
}

int audit_parse_row(const char *line, size_t len, struct audit_parsed *ret, struct error *err)
{
	return parse_row(line, len, 2, ret, err);
}

int audit_parse_row_v1(const char *line, size_t len, struct audit_parsed *ret, struct error *err)
{
	return parse_row(line, len, 1, ret, err);
}

/* The hex part of a valid prefix, lowercased into out (65 bytes); false
 * for anything else. */
static bool prefix_hex(const char *prefix, char out[DIGEST_HEX_LEN + 1])
{
	if (!prefix)
		return false;
	if (strncasecmp(prefix, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) == 0)
		prefix += strlen(DIGEST_PREFIX);
	size_t n = strlen(prefix);
	if (n < 4 || n > DIGEST_HEX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (hexval(prefix[i]) < 0)
			return false;
		out[i] = (char)(prefix[i] >= 'A' && prefix[i] <= 'F' ? prefix[i] - 'A' + 'a' : prefix[i]);
	}
	out[n] = '\0';
	return true;
}

bool audit_prefix_valid(const char *prefix)
{
	char hex[DIGEST_HEX_LEN + 1];
	return prefix_hex(prefix, hex);
}

bool audit_row_matches(const struct audit_parsed *p, const char *prefix)
{
	char hex[DIGEST_HEX_LEN + 1];
	if (!prefix_hex(prefix, hex))
		return false;
	size_t n = strlen(hex), pl = strlen(DIGEST_PREFIX);
	static const enum audit_col digests[] = { AUDIT_COL_IMAGE, AUDIT_COL_SOURCE, AUDIT_COL_OUTPUT, AUDIT_COL_ACTION };
	for (size_t i = 0; i < ARRAY_SIZE(digests); i++) {
		const char *d = p->col[digests[i]];
		if (d && strlen(d) == DIGEST_STR_LEN && strncmp(d + pl, hex, n) == 0)
			return true;
	}
	return strncmp(p->hash, hex, n) == 0;
}

int audit_seal_format(const struct audit_seal *s, struct buf *b)
{
	return buf_printf(b, AUDIT_SEAL_PREFIX "rows=%llu\tfirst_seq=%llu\tlast_seq=%llu\tlast_hash=%s",
			  (unsigned long long)s->rows, (unsigned long long)s->first_seq,
			  (unsigned long long)s->last_seq, s->last_hash);
}

/* "name=<digits>" at *p, then a tab or the end. */
static bool seal_number(const char **p, const char *end, const char *name, uint64_t *ret)
{
	size_t nl = strlen(name);
	if ((size_t)(end - *p) <= nl + 1 || memcmp(*p, name, nl) != 0 || (*p)[nl] != '=')
		return false;
	const char *s = *p + nl + 1;
	uint64_t v = 0;
	size_t digits = 0;
	for (; s < end && *s >= '0' && *s <= '9' && digits < 19; s++, digits++)
		v = v * 10 + (uint64_t)(*s - '0');
	if (digits == 0 || (s < end && *s != '\t'))
		return false;
	*p = s < end ? s + 1 : s;
	*ret = v;
	return true;
}

int audit_seal_parse(const char *line, size_t len, struct audit_seal *ret)
{
	size_t pl = strlen(AUDIT_SEAL_PREFIX);
	if (len < pl || memcmp(line, AUDIT_SEAL_PREFIX, pl) != 0)
		return -EINVAL;
	const char *p = line + pl, *end = line + len;
	struct audit_seal s = { 0 };
	if (!seal_number(&p, end, "rows", &s.rows) || !seal_number(&p, end, "first_seq", &s.first_seq) ||
	    !seal_number(&p, end, "last_seq", &s.last_seq))
		return -EINVAL;
	if ((size_t)(end - p) != strlen("last_hash=") + DIGEST_HEX_LEN || memcmp(p, "last_hash=", 10) != 0 ||
	    !is_lower_hex(p + 10, DIGEST_HEX_LEN))
		return -EINVAL;
	memcpy(s.last_hash, p + 10, DIGEST_HEX_LEN);
	s.last_hash[DIGEST_HEX_LEN] = '\0';
	*ret = s;
	return 0;
}

void audit_segment_name(uint64_t first_seq, char out[AUDIT_SEGMENT_NAME_MAX])
{
	snprintf(out, AUDIT_SEGMENT_NAME_MAX, "segment-%012llu.tsv", (unsigned long long)first_seq);
}

int audit_segment_name_parse(const char *name, uint64_t *ret_first_seq)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	if (strncmp(base, "segment-", 8) != 0)
		return -EINVAL;
	const char *digits = base + 8;
	/* Exactly 12: a name is rebuilt from its seq, so a longer or padded
	 * one would be read under a name that is not its own. */
	size_t n = strspn(digits, "0123456789");
	if (n != 12 || strcmp(digits + n, ".tsv") != 0)
		return -EINVAL;
	uint64_t v = strtoull(digits, NULL, 10);
	if (v == 0)
		return -EINVAL;
	*ret_first_seq = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int audit_list_segments(const char *dir, uint64_t **ret_seqs, size_t *ret_n, bool *ret_has_current)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	uint64_t *seqs = NULL;
	size_t n = 0, alloc = 0;
	bool current = false;
	int r = 0;
	errno = 0;
	for (struct dirent *e; (e = readdir(d)); errno = 0) {
		uint64_t s;
		if (strcmp(e->d_name, AUDIT_CURRENT_NAME) == 0)
			current = true;
		if (audit_segment_name_parse(e->d_name, &s) < 0)
			continue;
		if (n == alloc) {
			if (alloc >= AUDIT_SEGMENTS_MAX) {
				r = -E2BIG;
				break;
			}
			alloc = alloc ? 2 * alloc : 64;
			uint64_t *more = realloc(seqs, alloc * sizeof(*seqs));
			if (!more) {
				r = -ENOMEM;
				break;
			}
			seqs = more;
		}
		seqs[n++] = s;
	}
	if (r == 0 && errno)
		r = -errno;
	closedir(d);
	if (r < 0) {
		free(seqs);
		return r;
	}
	if (n)
		qsort(seqs, n, sizeof(*seqs), cmp_u64);
	*ret_seqs = seqs;
	*ret_n = n;
	*ret_has_current = current;
	return 0;
}

int audit_reader_init(struct audit_reader *r, int fd)
{
	*r = (struct audit_reader){ .fd = fd, .cap = AUDIT_ROW_MAX + 1 + 65536 };
	r->buf = malloc(r->cap);
	return r->buf ? 0 : -ENOMEM;
}

void audit_reader_free(struct audit_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Reads more after compacting; 0 at the end of the file. */
static ssize_t reader_fill(struct audit_reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		r->end += (size_t)n;
		return n;
	}
}

int audit_reader_next(struct audit_reader *r, const char **ret_line, size_t *ret_len)
{
	size_t skipped = 0;   /* bytes of an overlong line already thrown away */
	size_t scanned = 0;   /* bytes of buf[start..end) known to hold no newline */
	for (;;) {
		char *nl = memchr(r->buf + r->start + scanned, '\n', r->end - r->start - scanned);
		if (nl) {
			size_t n = (size_t)(nl - (r->buf + r->start));
			const char *line = r->buf + r->start;
			r->start += n + 1;
			if (skipped || n > AUDIT_ROW_MAX) {
				*ret_line = NULL;
				*ret_len = skipped + n;
			} else {
				*ret_line = line;
				*ret_len = n;
			}
			return 1;
		}
		scanned = r->end - r->start;
		if (scanned > AUDIT_ROW_MAX) {
			/* Too long to be a row: drop what we have and keep counting. */
			skipped += scanned;
			r->start = r->end = 0;
			scanned = 0;
		}
		if (r->eof)
			break;
		ssize_t n = reader_fill(r);
		if (n < 0)
			return (int)n;
		if (n == 0)
			r->eof = true;
	}
	r->torn = skipped + (r->end - r->start);
	r->start = r->end;
	return 0;
}

/* ---- the verifier ------------------------------------------------------ */

/* What the verifier keeps of one row: where it is and how it chains. */
struct row_ref {
	bool valid;
	uint64_t seq;
	uint64_t line;          /* 0: the virtual row before seq 1 */
	uint32_t file;
	char hash[DIGEST_HEX_LEN + 1];
	char prev[DIGEST_HEX_LEN + 1];
	/* When prev is not the hash of the row before it: the hash this row
	 * would have with that hash as its prev ("" otherwise), which tells an
	 * edit of the prev column alone from an edit of the row before. */
	char alt[DIGEST_HEX_LEN + 1];
};

/* Recent rows by hash, for reorder detection: a ring of the last
 * AUDIT_VERIFY_MAP_MAX rows, indexed by a chained hash table. */
struct map_entry {
	uint8_t h[DIGEST_LEN];
	uint64_t line, seq;
	uint32_t file;
	int32_t next;
};
#define MAP_BUCKETS (1u << 17)

enum file_role { ROLE_LONE, ROLE_SEGMENT, ROLE_CURRENT };

struct audit_verifier {
	bool whole_log;
	struct audit_verify_summary sum;
	char **files;
	size_t n_files;
	/* The file being read. */
	enum file_role role;
	uint64_t name_seq;       /* segment-<seq>.tsv */
	uint64_t line;
	int version;             /* 0 before the first line, 1, 2, or -1: an unknown version, skipped */
	bool sealed;
	uint64_t seal_line, after_seal;
	struct audit_seal seal;
	uint64_t f_rows, f_first, f_last;
	char f_last_hash[DIGEST_HEX_LEN + 1];
	uint64_t f_last_line;
	bool first_row_of_file;
	/* The file before it. */
	bool have_prev_file, prev_sealed;
	uint64_t prev_seal_last;
	/* The chain: head is the row the next one must chain after, head2 the
	 * one before it (for an inserted row). */
	bool have_head, resync;
	uint64_t resync_seq;     /* the seq the first row after a resync should have (0: any) */
	struct row_ref head, head2;
	/* A break whose kind the next row decides. EDITED: pending_row does
	 * not chain after pending_blamed, the row before it. INSERTED:
	 * pending_blamed and pending_row both chain after the same row with
	 * the same seq; the one the next row chains after is genuine. */
	bool pending;
	enum audit_problem_kind pending_kind;
	char pending_msg[320];
	struct row_ref pending_row, pending_blamed;
	/* The last row reported as edited, so that one edit is one message. */
	uint32_t blamed_file;
	uint64_t blamed_line;
	struct map_entry *ring;
	int32_t *buckets;
	size_t ring_next, ring_count;
};

const char *audit_problem_kind_name(enum audit_problem_kind k)
{
	static const char *const names[AUDIT_PROBLEM_KINDS] = {
		"edited", "invalid", "removed", "inserted", "reordered", "segment-missing", "seal", "after-seal",
		"header", "break",
	};
	return k < AUDIT_PROBLEM_KINDS ? names[k] : "?";
}

int audit_verifier_new(bool whole_log, struct audit_verifier **ret)
{
	struct audit_verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->whole_log = whole_log;
	v->ring = calloc(AUDIT_VERIFY_MAP_MAX, sizeof(*v->ring));
	v->buckets = malloc(MAP_BUCKETS * sizeof(*v->buckets));
	if (!v->ring || !v->buckets) {
		audit_verifier_free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < MAP_BUCKETS; i++)
		v->buckets[i] = -1;
	*ret = v;
	return 0;
}

void audit_verifier_free(struct audit_verifier *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_files; i++)
		free(v->files[i]);
	free(v->files);
	free(v->ring);
	free(v->buckets);
	free(v);
}

static uint32_t bucket_of(const uint8_t h[DIGEST_LEN])
{
	return ((uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16) & (MAP_BUCKETS - 1);
}

static void map_add(struct audit_verifier *v, const struct row_ref *r)
{
	struct digest d;
	if (digest_parse(r->hash, &d) < 0)
		return;
	size_t slot = v->ring_next;
	struct map_entry *e = &v->ring[slot];
	if (v->ring_count == AUDIT_VERIFY_MAP_MAX) {
		/* Evict the oldest row from its chain. */
		int32_t *link = &v->buckets[bucket_of(e->h)];
		while (*link >= 0 && *link != (int32_t)slot)
			link = &v->ring[*link].next;
		if (*link == (int32_t)slot)
			*link = e->next;
	} else
		v->ring_count++;
	memcpy(e->h, d.b, DIGEST_LEN);
	e->line = r->line;
	e->seq = r->seq;
	e->file = r->file;
	uint32_t b = bucket_of(e->h);
	e->next = v->buckets[b];
	v->buckets[b] = (int32_t)slot;
	v->ring_next = (slot + 1) % AUDIT_VERIFY_MAP_MAX;
}

static const struct map_entry *map_find(const struct audit_verifier *v, const char *hex)
{
	struct digest d;
	if (digest_parse(hex, &d) < 0)
		return NULL;
	for (int32_t i = v->buckets[bucket_of(d.b)]; i >= 0; i = v->ring[i].next)
		if (memcmp(v->ring[i].h, d.b, DIGEST_LEN) == 0)
			return &v->ring[i];
	return NULL;
}

static const char *file_name(const struct audit_verifier *v, uint32_t file)
{
	return file < v->n_files ? v->files[file] : "?";
}

static void problem(struct audit_verifier *v, enum audit_problem_kind kind, const char *fmt, ...) _printf_(3, 4);
static void problem(struct audit_verifier *v, enum audit_problem_kind kind, const char *fmt, ...)
{
	v->sum.problems++;
	v->sum.kind_count[kind]++;
	if (v->sum.n_shown == AUDIT_VERIFY_SHOWN_MAX)
		return;
	struct audit_problem *p = &v->sum.shown[v->sum.n_shown++];
	p->kind = kind;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
	error_printable(p->msg);
}

static void note(struct audit_verifier *v, const char *fmt, ...) _printf_(2, 3);
static void note(struct audit_verifier *v, const char *fmt, ...)
{
	if (v->sum.n_notes == AUDIT_VERIFY_NOTES_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->sum.notes[v->sum.n_notes], sizeof(v->sum.notes[0]), fmt, ap);
	va_end(ap);
	error_printable(v->sum.notes[v->sum.n_notes++]);
}

/* "row at F:L (seq S) was edited: why", once per row. */
static void blame_edited(struct audit_verifier *v, const struct row_ref *r, const char *why)
{
	if (v->blamed_line == r->line && v->blamed_file == r->file && r->line)
		return;
	v->blamed_file = r->file;
	v->blamed_line = r->line;
	problem(v, AUDIT_PROBLEM_EDITED, "row at %s:%llu (seq %llu) was edited: %s", file_name(v, r->file),
		(unsigned long long)r->line, (unsigned long long)r->seq, why);
}

static void pending_settle(struct audit_verifier *v)
{
	if (!v->pending)
		return;
	v->pending = false;
	if (v->pending_kind == AUDIT_PROBLEM_EDITED)
		blame_edited(v, &v->pending_blamed, "its hash does not match what the next row recorded");
	else
		problem(v, v->pending_kind, "%s", v->pending_msg);
}

static void advance(struct audit_verifier *v, const struct row_ref *r)
{
	v->head2 = v->head;
	v->head = *r;
	v->have_head = true;
}

static const struct row_ref virtual_start = { .valid = true, .seq = 0, .line = 0,
	.hash = "0000000000000000000000000000000000000000000000000000000000000000" };

/* The first row verified: where the log starts. */
static void chain_start(struct audit_verifier *v, const struct row_ref *r)
{
	if (v->whole_log || (v->role == ROLE_SEGMENT && v->name_seq == 1) || r->seq == 1) {
		v->head = virtual_start;
		v->head.file = r->file;
		v->head2 = (struct row_ref){ 0 };
		v->have_head = true;
		return;
	}
	uint64_t expect = v->role == ROLE_SEGMENT ? v->name_seq : r->seq;
	if (r->seq > expect)
		problem(v, AUDIT_PROBLEM_REMOVED, "%llu row(s) removed before %s:%llu (seq %llu..%llu missing)",
			(unsigned long long)(r->seq - expect), file_name(v, r->file), (unsigned long long)r->line,
			(unsigned long long)expect, (unsigned long long)(r->seq - 1));
	else if (r->seq < expect)
		blame_edited(v, r, "its seq is below its segment's first seq (the file name)");
	note(v, "starts at seq %llu: earlier rows are not in what was given", (unsigned long long)expect);
	advance(v, r);
	v->head2 = (struct row_ref){ 0 };
}

static void chain_v1(struct audit_verifier *v, const struct row_ref *r)
{
	if (!v->have_head) {
		v->head = virtual_start;
		v->have_head = true;
	}
	if (strcmp(r->prev, v->head.hash) != 0)
		problem(v, AUDIT_PROBLEM_BREAK,
			"the chain breaks at %s:%llu: the row before it was edited or removed, or this one inserted "
			"(a v1 file has no seq to say which)", file_name(v, r->file), (unsigned long long)r->line);
	advance(v, r);
}

static void chain_row(struct audit_verifier *v, const struct row_ref *r)
{
	if (!v->have_head) {
		chain_start(v, r);
		if (v->head.line != 0)
			goto accepted;
	}
	if (v->resync) {
		v->resync = false;
		if (v->resync_seq && r->seq > v->resync_seq)
			problem(v, AUDIT_PROBLEM_REMOVED, "%llu row(s) removed before %s:%llu (seq %llu..%llu missing)",
				(unsigned long long)(r->seq - v->resync_seq), file_name(v, r->file),
				(unsigned long long)r->line, (unsigned long long)v->resync_seq,
				(unsigned long long)(r->seq - 1));
		advance(v, r);
		v->head2 = (struct row_ref){ 0 };
		goto accepted;
	}
	/* A row whose bytes were seen before is a replayed copy: reported,
	 * and left out of the chain, so the row after it is checked against
	 * the rows before it. */
	const struct map_entry *seen = map_find(v, r->hash);
	if (seen) {
		problem(v, AUDIT_PROBLEM_INSERTED, "row at %s:%llu (seq %llu) was inserted: a copy of the row at %s:%llu",
			file_name(v, r->file), (unsigned long long)r->line, (unsigned long long)r->seq,
			file_name(v, seen->file), (unsigned long long)seen->line);
		return;
	}
	bool hash_ok = strcmp(r->prev, v->head.hash) == 0, seq_ok = r->seq == v->head.seq + 1;
	bool around = v->head2.valid && strcmp(r->prev, v->head2.hash) == 0 && r->seq == v->head2.seq + 1;
	if (v->pending && v->pending_kind == AUDIT_PROBLEM_INSERTED) {
		/* Two rows claim the same place; head is the second of them. */
		const struct row_ref *first = &v->pending_blamed, *second = &v->pending_row;
		if (hash_ok && seq_ok) {
			v->pending = false;
			problem(v, AUDIT_PROBLEM_INSERTED, "row at %s:%llu (seq %llu) was inserted: the chain goes around it",
				file_name(v, first->file), (unsigned long long)first->line, (unsigned long long)first->seq);
			advance(v, r);
			goto accepted;
		}
		if (around) {
			v->pending = false;
			problem(v, AUDIT_PROBLEM_INSERTED, "row at %s:%llu (seq %llu) was inserted: the chain goes around it",
				file_name(v, second->file), (unsigned long long)second->line, (unsigned long long)second->seq);
			v->head2 = *first;
			v->head = *r;
			goto accepted;
		}
		pending_settle(v);
	} else if (v->pending) {
		const struct row_ref *p = &v->pending_row;
		if (hash_ok && seq_ok) {
			pending_settle(v);
		} else if (strcmp(p->prev, r->hash) == 0) {
			/* The pending row chains after this one: the two were swapped. */
			v->pending = false;
			problem(v, AUDIT_PROBLEM_REORDERED, "rows reordered: seq %llu at %s:%llu chains after line %llu",
				(unsigned long long)p->seq, file_name(v, p->file), (unsigned long long)p->line,
				(unsigned long long)r->line);
			if (r->seq > p->seq)
				advance(v, r);
			else {
				v->head2 = *r;
				v->head = *p;
			}
			goto accepted;
		} else if (v->pending_kind == AUDIT_PROBLEM_EDITED && !hash_ok && seq_ok && !around) {
			/* Neither link to the pending row holds: it is edited. If
			 * only its prev_row_hash was, it would have the hash this
			 * row records once that column is put back; otherwise the
			 * row before it was edited too (adjacent edits). */
			v->pending = false;
			if (strcmp(p->alt, r->prev) != 0)
				blame_edited(v, &v->pending_blamed,
					     "its hash does not match what the next row recorded (which was edited too)");
			blame_edited(v, p, "neither its prev_row_hash nor the next row's link to it matches");
			advance(v, r);
			goto accepted;
		} else if (around) {
			v->pending = false;
			problem(v, AUDIT_PROBLEM_INSERTED, "row at %s:%llu (seq %llu) was inserted: the chain goes around it",
				file_name(v, p->file), (unsigned long long)p->line, (unsigned long long)p->seq);
			v->head = *r;
			goto accepted;
		} else
			pending_settle(v);
	}
	if (hash_ok && seq_ok) {
		advance(v, r);
		goto accepted;
	}
	if (hash_ok) {
		blame_edited(v, r, "its seq does not follow the row before it");
		struct row_ref presumed = *r;
		presumed.seq = v->head.seq + 1;
		advance(v, &presumed);
		v->resync = true;
		v->resync_seq = 0;
		goto accepted;
	}
	if (around) {
		/* This row and the one before it both chain after head2: one was
		 * inserted, and the next row says which (the one it chains after
		 * is genuine). Without a next row, both are named. */
		v->pending = true;
		v->pending_kind = AUDIT_PROBLEM_INSERTED;
		v->pending_blamed = v->head;
		v->pending_row = *r;
		snprintf(v->pending_msg, sizeof(v->pending_msg),
			 "row at %s:%llu or at %s:%llu (both seq %llu) was inserted: both chain after line %llu",
			 file_name(v, v->head.file), (unsigned long long)v->head.line, file_name(v, r->file),
			 (unsigned long long)r->line, (unsigned long long)r->seq, (unsigned long long)v->head2.line);
		advance(v, r);
		goto accepted;
	}
	const struct map_entry *j = map_find(v, r->prev);
	if (j && !(j->file == v->head.file && j->line == v->head.line)) {
		problem(v, AUDIT_PROBLEM_REORDERED, "rows reordered: seq %llu at %s:%llu chains after %s:%llu",
			(unsigned long long)r->seq, file_name(v, r->file), (unsigned long long)r->line,
			file_name(v, j->file), (unsigned long long)j->line);
		if (r->seq > v->head.seq)
			advance(v, r);
		goto accepted;
	}
	if (r->seq > v->head.seq + 1) {
		if (v->first_row_of_file && v->prev_sealed && v->head.seq == v->prev_seal_last) {
			/* current.tsv has no name that says where it starts: a
			 * whole segment or its own first rows may be gone. */
			problem(v, AUDIT_PROBLEM_REMOVED,
				"seq %llu..%llu missing before %s:%llu: a sealed segment, or the first rows of this file, "
				"were removed", (unsigned long long)(v->head.seq + 1), (unsigned long long)(r->seq - 1),
				file_name(v, r->file), (unsigned long long)r->line);
		} else {
			v->pending = true;
			v->pending_kind = AUDIT_PROBLEM_REMOVED;
			snprintf(v->pending_msg, sizeof(v->pending_msg),
				 "%llu row(s) removed before %s:%llu (seq %llu..%llu missing)",
				 (unsigned long long)(r->seq - v->head.seq - 1), file_name(v, r->file),
				 (unsigned long long)r->line, (unsigned long long)(v->head.seq + 1),
				 (unsigned long long)(r->seq - 1));
			v->pending_row = *r;
		}
		advance(v, r);
		goto accepted;
	}
	if (v->head.line == 0) {
		/* The first row of the log records zeros; this one does not. */
		blame_edited(v, r, "the first row's prev_row_hash must be 64 zeros");
		advance(v, r);
		goto accepted;
	}
	v->pending = true;
	v->pending_kind = AUDIT_PROBLEM_EDITED;
	v->pending_blamed = v->head;
	v->pending_row = *r;
	advance(v, r);
accepted:
	map_add(v, r);
}

int audit_verifier_begin_file(struct audit_verifier *v, const char *name)
{
	char **files = realloc(v->files, (v->n_files + 1) * sizeof(*files));
	if (!files)
		return -ENOMEM;
	v->files = files;
	if (!(v->files[v->n_files] = strdup(name)))
		return -ENOMEM;
	v->n_files++;
	v->sum.files++;
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	v->role = audit_segment_name_parse(base, &v->name_seq) == 0 ? ROLE_SEGMENT :
		  strcmp(base, AUDIT_CURRENT_NAME) == 0 ? ROLE_CURRENT : ROLE_LONE;
	v->line = 0;
	v->version = 0;
	v->sealed = false;
	v->after_seal = v->seal_line = 0;
	v->f_rows = v->f_first = v->f_last = v->f_last_line = 0;
	v->f_last_hash[0] = '\0';
	v->first_row_of_file = true;
	if (v->role != ROLE_SEGMENT)
		return 0;
	/* Segments follow each other without a gap: a file name is the seq
	 * of its first row. */
	uint64_t expect = v->have_prev_file ? (v->prev_sealed ? v->prev_seal_last + 1 : v->head.seq + 1) :
			  v->whole_log ? 1 : 0;
	if (expect && v->name_seq > expect) {
		pending_settle(v);
		bool cut = v->have_prev_file && !v->prev_sealed;
		problem(v, cut ? AUDIT_PROBLEM_REMOVED : AUDIT_PROBLEM_SEGMENT_MISSING, "seq %llu..%llu missing before %s: %s",
			(unsigned long long)expect, (unsigned long long)(v->name_seq - 1), name,
			cut ? "the end of the segment before it was cut" :
			v->have_prev_file ? "a sealed segment was removed" : "the log's first segment(s) were removed");
		if (v->have_head) {
			v->resync = true;
			v->resync_seq = v->name_seq;
		} else
			v->whole_log = false;   /* start at this segment */
	} else if (expect && v->name_seq < expect)
		problem(v, AUDIT_PROBLEM_SEAL, "%s starts at seq %llu, inside the segment before it (which ends at seq %llu)",
			name, (unsigned long long)v->name_seq, (unsigned long long)(expect - 1));
	return 0;
}

/* The hash of line with its last column (prev_row_hash, 64 hex digits
 * after a tab) replaced by prev; "" when out of memory. */
static void alt_hash(const char *line, size_t len, const char *prev, char out[DIGEST_HEX_LEN + 1])
{
	out[0] = '\0';
	if (len < DIGEST_HEX_LEN + 1 || line[len - DIGEST_HEX_LEN - 1] != '\t')
		return;
	char *copy = malloc(len);
	if (!copy)
		return;
	memcpy(copy, line, len);
	memcpy(copy + len - DIGEST_HEX_LEN, prev, DIGEST_HEX_LEN);
	struct digest d;
	if (digest_bytes(copy, len, &d) == 0)
		digest_to_hex(&d, out);
	free(copy);
}

static void file_row(struct audit_verifier *v, const struct row_ref *r)
{
	if (v->version == 1)
		chain_v1(v, r);
	else
		chain_row(v, r);
	v->first_row_of_file = false;
	if (v->f_rows++ == 0)
		v->f_first = r->seq;
	v->f_last = r->seq;
	v->f_last_line = r->line;
	memcpy(v->f_last_hash, r->hash, sizeof(v->f_last_hash));
	v->sum.rows++;
	if (v->sum.rows == 1)
		v->sum.first_seq = r->seq;
	v->sum.last_seq = r->seq;
	memcpy(v->sum.last_hash, r->hash, sizeof(v->sum.last_hash));
}

/* A line that should be a row and is not: reported, and the chain picks
 * up again at the next row. */
static void invalid_line(struct audit_verifier *v, const char *line, size_t len, const char *reason)
{
	problem(v, AUDIT_PROBLEM_INVALID, "%s:%llu is not a valid row (edited?): %s", file_name(v, (uint32_t)v->n_files - 1),
		(unsigned long long)v->line, reason);
	pending_settle(v);
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1] = "";
	if (line && digest_bytes(line, len, &d) == 0)
		digest_to_hex(&d, hex);
	uint64_t seq = v->have_head ? v->head.seq + 1 : 0;
	if (v->have_head) {
		struct row_ref presumed = { .valid = true, .seq = seq, .line = v->line, .file = (uint32_t)v->n_files - 1 };
		memcpy(presumed.hash, hex, sizeof(hex));
		advance(v, &presumed);
		v->resync = true;
		v->resync_seq = 0;
	}
	if (v->f_rows++ == 0)
		v->f_first = seq;
	v->f_last = seq;
	v->f_last_line = v->line;
	memcpy(v->f_last_hash, hex, sizeof(hex));
	v->first_row_of_file = false;
}

static void seal_line(struct audit_verifier *v, const char *line, size_t len)
{
	const char *name = file_name(v, (uint32_t)v->n_files - 1);
	struct audit_seal s;
	if (audit_seal_parse(line, len, &s) < 0) {
		/* Counted as a seal all the same: one message for one edit. */
		problem(v, AUDIT_PROBLEM_SEAL, "the seal line at %s:%llu does not parse (edited?)", name,
			(unsigned long long)v->line);
		v->sealed = true;
		v->seal = (struct audit_seal){ 0 };
		v->seal_line = v->line;
		return;
	}
	v->sealed = true;
	v->seal = s;
	v->seal_line = v->line;
	if (s.rows != v->f_rows || s.first_seq != v->f_first || s.last_seq != v->f_last)
		problem(v, AUDIT_PROBLEM_SEAL,
			"the seal at %s:%llu does not match the segment: it says rows=%llu seq %llu..%llu, the file holds "
			"%llu row(s), seq %llu..%llu", name, (unsigned long long)v->line, (unsigned long long)s.rows,
			(unsigned long long)s.first_seq, (unsigned long long)s.last_seq, (unsigned long long)v->f_rows,
			(unsigned long long)v->f_first, (unsigned long long)v->f_last);
	else if (strcmp(s.last_hash, v->f_last_hash) != 0) {
		struct row_ref last = { .seq = v->f_last, .line = v->f_last_line, .file = (uint32_t)v->n_files - 1 };
		blame_edited(v, &last, "its hash does not match the seal's last_hash");
	}
}

void audit_verifier_line(struct audit_verifier *v, const char *line, size_t len)
{
	v->line++;
	if (v->version < 0)
		return;
	if (v->sealed) {
		v->after_seal++;
		return;
	}
	if (!line) {
		if (v->version == 0)
			v->version = 2;
		invalid_line(v, NULL, 0, "longer than the longest row");
		return;
	}
	const char *hdr = audit_header_line();
	if (v->version == 0) {
		if (len == strlen(hdr) && memcmp(line, hdr, len) == 0) {
			v->version = 2;
			return;
		}
		static const char magic[] = "#hpcc-audit v";
		if (len >= strlen(magic) && memcmp(line, magic, strlen(magic)) == 0) {
			bool v2 = len > strlen(magic) + 1 && memcmp(line + strlen(magic), "2\t", 2) == 0;
			problem(v, AUDIT_PROBLEM_HEADER, "%s:1: %s", file_name(v, (uint32_t)v->n_files - 1),
				v2 ? "the header's column names are not v2's" : "an unknown format version; not checked");
			v->version = v2 ? 2 : -1;
			return;
		}
		struct audit_parsed p;
		struct error e = { 0 };
		if (v->role == ROLE_LONE && audit_parse_row_v1(line, len, &p, &e) == 0) {
			audit_parsed_free(&p);
			v->version = 1;
			v->sum.v1 = true;
		} else {
			problem(v, AUDIT_PROBLEM_HEADER, "%s:1: no header line (%s)", file_name(v, (uint32_t)v->n_files - 1),
				hdr);
			v->version = 2;
		}
	}
	if (v->version == 2 && len > 0 && line[0] == '#') {
		if (len >= strlen(AUDIT_SEAL_PREFIX) && memcmp(line, AUDIT_SEAL_PREFIX, strlen(AUDIT_SEAL_PREFIX)) == 0)
			seal_line(v, line, len);
		else
			invalid_line(v, line, len, "a comment line inside the log");
		return;
	}
	struct audit_parsed p;
	struct error e = { 0 };
	int r = v->version == 1 ? audit_parse_row_v1(line, len, &p, &e) : audit_parse_row(line, len, &p, &e);
	if (r < 0) {
		invalid_line(v, line, len, e.msg);
		return;
	}
	struct row_ref ref = { .valid = true, .seq = p.seq, .line = v->line, .file = (uint32_t)v->n_files - 1 };
	memcpy(ref.hash, p.hash, sizeof(ref.hash));
	memcpy(ref.prev, p.col[AUDIT_COL_PREV], DIGEST_HEX_LEN + 1);
	audit_parsed_free(&p);
	if (v->version == 2 && v->have_head && strcmp(ref.prev, v->head.hash) != 0 && strlen(v->head.hash) == DIGEST_HEX_LEN)
		alt_hash(line, len, v->head.hash, ref.alt);
	file_row(v, &ref);
}

void audit_verifier_end_file(struct audit_verifier *v, size_t torn)
{
	const char *name = file_name(v, (uint32_t)v->n_files - 1);
	if (v->line == 0 && !torn)
		note(v, "%s is empty", name);
	if (v->after_seal)
		problem(v, AUDIT_PROBLEM_AFTER_SEAL, "%llu line(s) after the seal line at %s:%llu",
			(unsigned long long)v->after_seal, name, (unsigned long long)v->seal_line);
	if (torn && (v->role != ROLE_SEGMENT || v->sealed))
		note(v, "%s ends in an unfinished line (%zu bytes: a write in progress or a crash), not checked", name, torn);
	if (v->role == ROLE_SEGMENT && !v->sealed && v->version >= 0)
		problem(v, AUDIT_PROBLEM_SEAL, "%s has no seal line: the end of the segment was cut%s", name,
			torn ? " (it ends in an unfinished line)" : "");
	v->have_prev_file = true;
	v->prev_sealed = v->sealed && v->seal.last_seq == v->f_last;
	v->prev_seal_last = v->seal.last_seq;
}

const struct audit_verify_summary *audit_verifier_finish(struct audit_verifier *v)
{
	pending_settle(v);
	return &v->sum;
}
