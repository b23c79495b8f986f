/*
 * Unit tests for remote actions (src/remote/action.c): the action digest is
 * deterministic, moves with every field the encoding covers, cannot be made
 * ambiguous by shifting bytes between neighbouring fields, and is pinned to
 * one value as a guard against silent encoding changes; the direct key
 * follows the command and the source but not the inputs; action_check
 * accepts a well-formed action and refuses each kind of hostile one with a
 * message; action_argv and action_output_paths build exactly the command
 * line and output paths a worker uses; and blobs round trip through
 * blob_pack/blob_unpack while every lie (digest, size, frame, bombs) is
 * refused quickly. Each test rebuilds one static action from scratch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "action.h"
#include "buf.h"
#include "digest.h"
#include "error.h"
#include "remote.pb-c.h"
#include "strv.h"

#define S(x) ((char *)(x))
#define IMG "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define IMG_OTHER "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define ROOT "/stage/root"
#define N_ARGS 5
#define N_INPUTS 3

/* One action, rebuilt by fixture_reset() before every use: a compile in
 * sub/ of a rooted source to a relative output, with one argument of each
 * path kind and a suffix. Two inputs are listed; a third is ready to add. */
static struct {
	Hpcc__V1__Action action;
	Hpcc__V1__Command command;
	Hpcc__V1__Arg args[N_ARGS];
	Hpcc__V1__Arg *arg_list[N_ARGS];
	Hpcc__V1__Arg source, output;
	char *env[2];
	Hpcc__V1__InputFile inputs[N_INPUTS];
	Hpcc__V1__InputFile *input_list[N_INPUTS];
	uint8_t digests[N_INPUTS][DIGEST_LEN];
} fx;

static void set_arg(Hpcc__V1__Arg *a, const char *flag, Hpcc__V1__PathKind kind, const char *path,
		    const char *suffix)
{
	hpcc__v1__arg__init(a);
	a->flag = S(flag);
	a->kind = kind;
	a->path = S(path);
	a->suffix = S(suffix);
}

static void set_input(size_t i, const char *path, uint64_t size)
{
	struct digest d;
	assert_int_equal(digest_bytes(path, strlen(path), &d), 0);
	memcpy(fx.digests[i], d.b, DIGEST_LEN);
	hpcc__v1__input_file__init(&fx.inputs[i]);
	fx.inputs[i].path = S(path);
	fx.inputs[i].digest.data = fx.digests[i];
	fx.inputs[i].digest.len = DIGEST_LEN;
	fx.inputs[i].size = size;
	fx.input_list[i] = &fx.inputs[i];
}

static Hpcc__V1__Action *fixture_reset(void)
{
	memset(&fx, 0, sizeof(fx));
	set_arg(&fx.args[0], "-I", HPCC__V1__PATH_KIND__PATH_ROOTED, "inc", "");
	set_arg(&fx.args[1], "-I", HPCC__V1__PATH_KIND__PATH_RELATIVE, "../lib", "");
	set_arg(&fx.args[2], "-isystem", HPCC__V1__PATH_KIND__PATH_ABSOLUTE, "/opt/x/include", "");
	set_arg(&fx.args[3], "-O2", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&fx.args[4], "-fmacro-prefix-map=", HPCC__V1__PATH_KIND__PATH_ROOTED, ".", "=.");
	for (size_t i = 0; i < N_ARGS; i++)
		fx.arg_list[i] = &fx.args[i];
	set_arg(&fx.source, "", HPCC__V1__PATH_KIND__PATH_ROOTED, "sub/a.c", "");
	set_arg(&fx.output, "", HPCC__V1__PATH_KIND__PATH_RELATIVE, "../o/a.o", "");
	fx.env[0] = S("SOURCE_DATE_EPOCH=1700000000");
	fx.env[1] = S("SOURCE_DATE_EPOCH=1");

	hpcc__v1__command__init(&fx.command);
	fx.command.compiler = S("gcc");
	fx.command.family = 1;
	fx.command.language = 0;
	fx.command.n_args = N_ARGS;
	fx.command.args = fx.arg_list;
	fx.command.cwd = S("sub");
	fx.command.source = &fx.source;
	fx.command.output = &fx.output;
	fx.command.n_env = 1;
	fx.command.env = fx.env;
	fx.command.split_dwarf = 0;

	set_input(0, "inc/x.h", 12);
	set_input(1, "sub/a.c", 34);
	set_input(2, "sub/b.h", 56);

	hpcc__v1__action__init(&fx.action);
	fx.action.image_digest = S(IMG);
	fx.action.command = &fx.command;
	fx.action.n_inputs = 2;
	fx.action.inputs = fx.input_list;
	fx.action.mode = HPCC__V1__SOURCE_MODE__MODE_CAS;
	return &fx.action;
}

static struct digest digest_of_fixture(void)
{
	struct digest d;
	assert_int_equal(action_digest(&fx.action, &d), 0);
	return d;
}

/* ---- action_digest ----------------------------------------------------- */

static void test_digest_deterministic(void **state)
{
	(void)state;
	fixture_reset();
	struct digest a = digest_of_fixture(), b = digest_of_fixture();
	assert_true(digest_equal(&a, &b));
	/* A rebuilt action with equal content (other addresses) hashes alike. */
	fixture_reset();
	struct digest c = digest_of_fixture();
	assert_true(digest_equal(&a, &c));
	assert_false(digest_is_zero(&a));
}

/* The digests of every single-field change, kept to check that each one
 * differs from the base and from all the others. */
#define MAX_MUTATIONS 128
static struct {
	struct digest d[MAX_MUTATIONS];
	char what[MAX_MUTATIONS][96];
	size_t n;
} seen;

static void record_mutation(const struct digest *base, const char *what)
{
	struct digest d = digest_of_fixture();
	if (digest_equal(&d, base))
		fail_msg("the action digest does not change with %s", what);
	assert_true(seen.n < MAX_MUTATIONS);
	for (size_t i = 0; i < seen.n; i++)
		if (digest_equal(&d, &seen.d[i]))
			fail_msg("changing %s gives the same digest as changing %s", what, seen.what[i]);
	seen.d[seen.n] = d;
	snprintf(seen.what[seen.n], sizeof(seen.what[0]), "%s", what);
	seen.n++;
}

#define MUTATION(what, stmt)                      \
	do {                                      \
		fixture_reset();                  \
		stmt;                             \
		record_mutation(&base, what);     \
	} while (0)

/* Changes one part (0 flag, 1 kind, 2 path, 3 suffix) of an argument. */
static void mutate_arg(Hpcc__V1__Arg *a, int part)
{
	switch (part) {
	case 0:
		a->flag = S("-Q");
		break;
	case 1:
		a->kind = a->kind == HPCC__V1__PATH_KIND__PATH_RELATIVE ? HPCC__V1__PATH_KIND__PATH_ROOTED :
									   HPCC__V1__PATH_KIND__PATH_RELATIVE;
		break;
	case 2:
		a->path = S("changed");
		break;
	default:
		a->suffix = S(".s");
		break;
	}
}

static void test_digest_covers_every_field(void **state)
{
	(void)state;
	static const char *const parts[] = { "flag", "kind", "path", "suffix" };
	fixture_reset();
	struct digest base = digest_of_fixture();
	seen.n = 0;
	char what[96];

	MUTATION("image", fx.action.image_digest = S(IMG_OTHER));
	MUTATION("mode", fx.action.mode = HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED);
	MUTATION("compiler", fx.command.compiler = S("g++"));
	MUTATION("family", fx.command.family = 2);
	MUTATION("language", fx.command.language = 1);
	for (size_t i = 0; i < N_ARGS; i++)
		for (int p = 0; p < 4; p++) {
			snprintf(what, sizeof(what), "argument %zu's %s", i, parts[p]);
			MUTATION(what, mutate_arg(&fx.args[i], p));
		}
	MUTATION("the argument order", (fx.arg_list[0] = &fx.args[1], fx.arg_list[1] = &fx.args[0]));
	MUTATION("dropping the last argument", fx.command.n_args--);
	MUTATION("cwd", fx.command.cwd = S("sub2"));
	for (int p = 0; p < 4; p++) {
		snprintf(what, sizeof(what), "the source's %s", parts[p]);
		MUTATION(what, mutate_arg(&fx.source, p));
		snprintf(what, sizeof(what), "the output's %s", parts[p]);
		MUTATION(what, mutate_arg(&fx.output, p));
	}
	MUTATION("an env value", fx.env[0] = S("SOURCE_DATE_EPOCH=1700000001"));
	MUTATION("adding an env entry", fx.command.n_env = 2);
	MUTATION("removing the env entry", fx.command.n_env = 0);
	MUTATION("split_dwarf", fx.command.split_dwarf = 1);
	for (size_t i = 0; i < 2; i++) {
		snprintf(what, sizeof(what), "input %zu's path", i);
		MUTATION(what, fx.inputs[i].path = S(i ? "sub/a.cc" : "inc/y.h"));
		snprintf(what, sizeof(what), "input %zu's digest", i);
		MUTATION(what, fx.digests[i][DIGEST_LEN - 1] ^= 1);
		snprintf(what, sizeof(what), "input %zu's size", i);
		MUTATION(what, fx.inputs[i].size++);
		snprintf(what, sizeof(what), "input %zu's executable bit", i);
		MUTATION(what, fx.inputs[i].executable = 1);
	}
	MUTATION("adding an input", fx.action.n_inputs = 3);
	MUTATION("dropping an input", fx.action.n_inputs = 1);
	assert_int_equal(seen.n, 50);
}

static struct digest digest_with_args(Hpcc__V1__Arg *a, size_t n)
{
	fixture_reset();
	Hpcc__V1__Arg *list[4];
	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++)
		list[i] = &a[i];
	fx.command.args = list;
	fx.command.n_args = n;
	return digest_of_fixture();
}

/* Bytes moved from one field to its neighbour must change the digest: every
 * field is length-prefixed and every list is counted. */
static void test_digest_unambiguous(void **state)
{
	(void)state;
	Hpcc__V1__Arg x[2], y[2];

	/* {"-I", "ab"} vs {"-Ia", "b"}: two plain arguments. */
	set_arg(&x[0], "-I", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&x[1], "ab", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&y[0], "-Ia", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&y[1], "b", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	struct digest dx = digest_with_args(x, 2), dy = digest_with_args(y, 2);
	assert_false(digest_equal(&dx, &dy));

	/* Flag "a" + path "bc" vs flag "ab" + path "c". */
	set_arg(&x[0], "a", HPCC__V1__PATH_KIND__PATH_ROOTED, "bc", "");
	set_arg(&y[0], "ab", HPCC__V1__PATH_KIND__PATH_ROOTED, "c", "");
	dx = digest_with_args(x, 1);
	dy = digest_with_args(y, 1);
	assert_false(digest_equal(&dx, &dy));

	/* Path "ab" + suffix "" vs path "a" + suffix "b". */
	set_arg(&x[0], "-I", HPCC__V1__PATH_KIND__PATH_ROOTED, "ab", "");
	set_arg(&y[0], "-I", HPCC__V1__PATH_KIND__PATH_ROOTED, "a", "b");
	dx = digest_with_args(x, 1);
	dy = digest_with_args(y, 1);
	assert_false(digest_equal(&dx, &dy));

	/* "-I" + "" (one argument) vs "-I" and "" (two). */
	set_arg(&x[0], "-I", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&y[0], "-I", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	set_arg(&y[1], "", HPCC__V1__PATH_KIND__PATH_NONE, "", "");
	dx = digest_with_args(x, 1);
	dy = digest_with_args(y, 2);
	assert_false(digest_equal(&dx, &dy));

	/* Two environment entries vs their concatenation. */
	fixture_reset();
	fx.env[0] = S("SOURCE_DATE_EPOCH=1");
	fx.env[1] = S("2");
	fx.command.n_env = 2;
	dx = digest_of_fixture();
	fixture_reset();
	fx.env[0] = S("SOURCE_DATE_EPOCH=12");
	fx.command.n_env = 1;
	dy = digest_of_fixture();
	assert_false(digest_equal(&dx, &dy));

	/* The cwd and the compiler name trading a byte. */
	fixture_reset();
	fx.command.compiler = S("gcc");
	fx.command.cwd = S("");
	dx = digest_of_fixture();
	fixture_reset();
	fx.command.compiler = S("gc");
	fx.command.cwd = S("c");
	dy = digest_of_fixture();
	assert_false(digest_equal(&dx, &dy));
}

/* A regression guard: this exact action must always hash to this value.
 * If the encoding in action.c changes on purpose, ACTION_ENCODING (the
 * version string "hpcc-action-v1") must change with it, since clients and
 * workers of different versions would otherwise agree on keys for different
 * commands; then, and only then, update the value below. */
#define PINNED_ACTION_DIGEST "e783f11bc9eee41c4fd87580d6aee4629efed91192d67d06628debfe9a6e56d3"

static void test_digest_pinned(void **state)
{
	(void)state;
	fixture_reset();
	struct digest d = digest_of_fixture();
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&d, hex);
	if (strcmp(hex, PINNED_ACTION_DIGEST) != 0)
		fail_msg("the action digest encoding changed: got %s, pinned %s", hex, PINNED_ACTION_DIGEST);
}

/* The digest survives a trip over the wire, and a packed action re-encodes
 * to the size it was received with (action_canonical). */
static void test_digest_wire_round_trip(void **state)
{
	(void)state;
	fixture_reset();
	struct digest before = digest_of_fixture();
	size_t n = hpcc__v1__action__get_packed_size(&fx.action);
	uint8_t *wire = malloc(n);
	assert_non_null(wire);
	assert_int_equal(hpcc__v1__action__pack(&fx.action, wire), n);
	Hpcc__V1__Action *back = hpcc__v1__action__unpack(NULL, n, wire);
	assert_non_null(back);
	assert_true(action_canonical(&back->base, n));
	assert_false(action_canonical(&back->base, n + 1));
	struct digest after;
	assert_int_equal(action_digest(back, &after), 0);
	assert_true(digest_equal(&before, &after));
	hpcc__v1__action__free_unpacked(back, NULL);
	free(wire);
}

/* Bytes that protobuf-c accepts but would not send back: an unknown field
 * (at the top, or inside the command), and a string with a NUL in it. */
static void test_canonical_refuses_odd_encodings(void **state)
{
	(void)state;
	fixture_reset();
	size_t n = hpcc__v1__action__get_packed_size(&fx.action);
	uint8_t *wire = malloc(n + 16);
	assert_non_null(wire);
	hpcc__v1__action__pack(&fx.action, wire);

	/* Field 15, varint 1, appended to the action. */
	wire[n] = (15 << 3) | 0;
	wire[n + 1] = 1;
	Hpcc__V1__Action *back = hpcc__v1__action__unpack(NULL, n + 2, wire);
	assert_non_null(back);
	assert_false(action_canonical(&back->base, n + 2));
	hpcc__v1__action__free_unpacked(back, NULL);

	/* The same inside a nested message: an unknown field in an Arg. */
	Hpcc__V1__Command cmd = HPCC__V1__COMMAND__INIT;
	Hpcc__V1__Arg arg = HPCC__V1__ARG__INIT;
	arg.flag = S("-O2");
	Hpcc__V1__Arg *list[] = { &arg };
	cmd.compiler = S("gcc");
	cmd.n_args = 1;
	cmd.args = list;
	uint8_t cbuf[64];
	size_t cn = hpcc__v1__command__pack(&cmd, cbuf);
	/* The Arg is field 4, length-delimited: tag 0x22, length, bytes. Find
	 * it, lengthen it by two bytes of field 15. */
	uint8_t patched[80];
	size_t pn = 0;
	for (size_t i = 0; i < cn;) {
		uint8_t tag = cbuf[i], len = cbuf[i + 1];
		if (tag == 0x22) {
			patched[pn++] = tag;
			patched[pn++] = (uint8_t)(len + 2);
			memcpy(patched + pn, cbuf + i + 2, len);
			pn += len;
			patched[pn++] = (15 << 3) | 0;
			patched[pn++] = 1;
		} else {
			memcpy(patched + pn, cbuf + i, 2 + (size_t)len);
			pn += 2 + (size_t)len;
		}
		i += 2 + (size_t)len;
	}
	assert_int_equal(pn, cn + 2);
	Hpcc__V1__Command *cback = hpcc__v1__command__unpack(NULL, pn, patched);
	assert_non_null(cback);
	assert_int_equal(cback->n_args, 1);
	assert_false(action_canonical(&cback->base, pn));
	hpcc__v1__command__free_unpacked(cback, NULL);
	Hpcc__V1__Command *clean = hpcc__v1__command__unpack(NULL, cn, cbuf);
	assert_non_null(clean);
	assert_true(action_canonical(&clean->base, cn));
	hpcc__v1__command__free_unpacked(clean, NULL);

	/* A NUL inside the image digest string: protobuf-c cuts it there. */
	uint8_t *img = memmem(wire, n, "sha256:", 7);
	assert_non_null(img);
	img[3] = '\0';
	back = hpcc__v1__action__unpack(NULL, n, wire);
	if (back) {
		assert_false(action_canonical(&back->base, n));
		hpcc__v1__action__free_unpacked(back, NULL);
	}
	free(wire);
}

static void test_digest_without_command(void **state)
{
	(void)state;
	fixture_reset();
	fx.action.command = NULL;
	struct digest d, src = { { 0 } };
	assert_int_equal(action_digest(&fx.action, &d), -EINVAL);
	assert_int_equal(action_direct_key(&fx.action, "sub/a.c", &src, &d), -EINVAL);
}

/* ---- action_direct_key ------------------------------------------------- */

static struct digest direct_key(const char *source, const struct digest *source_digest)
{
	struct digest d;
	assert_int_equal(action_direct_key(&fx.action, source, source_digest, &d), 0);
	return d;
}

static void test_direct_key(void **state)
{
	(void)state;
	struct digest src, src2;
	assert_int_equal(digest_bytes("int x;", 6, &src), 0);
	assert_int_equal(digest_bytes("int y;", 6, &src2), 0);

	fixture_reset();
	struct digest base = direct_key("sub/a.c", &src);
	struct digest again = direct_key("sub/a.c", &src);
	assert_true(digest_equal(&base, &again));
	struct digest action = digest_of_fixture();
	assert_false(digest_equal(&base, &action));

	struct digest d = direct_key("sub/a.c", &src2);
	assert_false(digest_equal(&base, &d));
	d = direct_key("sub/b.c", &src);
	assert_false(digest_equal(&base, &d));

	/* The command, image and mode are part of it... */
	fixture_reset();
	fx.args[3].flag = S("-O3");
	d = direct_key("sub/a.c", &src);
	assert_false(digest_equal(&base, &d));
	fixture_reset();
	fx.action.image_digest = S(IMG_OTHER);
	d = direct_key("sub/a.c", &src);
	assert_false(digest_equal(&base, &d));
	fixture_reset();
	fx.action.mode = HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	d = direct_key("sub/a.c", &src);
	assert_false(digest_equal(&base, &d));
	fixture_reset();
	fx.command.split_dwarf = 1;
	d = direct_key("sub/a.c", &src);
	assert_false(digest_equal(&base, &d));

	/* ...the inputs are not: a client looks it up without knowing them. */
	fixture_reset();
	fx.digests[0][0] ^= 1;
	fx.inputs[1].size = 999;
	d = direct_key("sub/a.c", &src);
	assert_true(digest_equal(&base, &d));
	fixture_reset();
	fx.action.n_inputs = 3;
	d = direct_key("sub/a.c", &src);
	assert_true(digest_equal(&base, &d));
	fixture_reset();
	fx.action.n_inputs = 0;
	d = direct_key("sub/a.c", &src);
	assert_true(digest_equal(&base, &d));
}

/* ---- action_check ------------------------------------------------------ */

static void check_verdict(bool want_ok, const char *what, int line)
{
	struct error err = { 0 };
	int r = action_check(&fx.action, &err);
	if (want_ok) {
		if (r < 0)
			fail_msg("line %d: %s: refused (%d): %s", line, what, r, err.msg);
		return;
	}
	if (r >= 0)
		fail_msg("line %d: %s: accepted", line, what);
	if (!err.msg[0])
		fail_msg("line %d: %s: refused (%d) without a message", line, what, r);
	if (err.code != r)
		fail_msg("line %d: %s: returned %d but err.code is %d", line, what, r, err.code);
}

#define REFUSED(stmt)                                   \
	do {                                            \
		fixture_reset();                        \
		stmt;                                   \
		check_verdict(false, #stmt, __LINE__);  \
	} while (0)

#define ACCEPTED(stmt)                                  \
	do {                                            \
		fixture_reset();                        \
		stmt;                                   \
		check_verdict(true, #stmt, __LINE__);   \
	} while (0)

static void test_check_accepts_good(void **state)
{
	(void)state;
	ACCEPTED((void)0);
	ACCEPTED(fx.action.mode = HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED);
	ACCEPTED((fx.command.family = 2, fx.command.compiler = S("clang++-14"), fx.command.language = 1));
	ACCEPTED(fx.command.compiler = S("x86_64-linux-gnu-gcc-12"));
	ACCEPTED(fx.command.compiler = S("g++"));
	ACCEPTED(fx.command.n_env = 0);
	ACCEPTED(fx.env[0] = S("SOURCE_DATE_EPOCH=0"));
	ACCEPTED(fx.action.n_inputs = 3);
	ACCEPTED(fx.action.n_inputs = 0);
	ACCEPTED(fx.command.split_dwarf = 1);
	ACCEPTED(fx.inputs[1].size = BLOB_MAX_SIZE);
	ACCEPTED(fx.inputs[1].executable = 1);
	/* "../x" from a/b is a/x: still in the root. */
	ACCEPTED((fx.command.cwd = S("a/b"), fx.args[1].path = S("../x")));
	ACCEPTED((fx.command.cwd = S("a"), fx.args[1].path = S("..")));
	ACCEPTED((fx.command.cwd = S(""), fx.args[1].path = S("lib"), fx.output.path = S("a.o")));
	ACCEPTED((fx.output.kind = HPCC__V1__PATH_KIND__PATH_ROOTED, fx.output.path = S("o/a.o")));
	ACCEPTED(fx.source.kind = HPCC__V1__PATH_KIND__PATH_RELATIVE);
	ACCEPTED(fx.args[0].path = S("."));
	ACCEPTED(fx.args[3].flag = S("-DX=@y"));
	ACCEPTED(fx.command.n_args = 0);
}

static void test_check_image_mode_command(void **state)
{
	(void)state;
	REFUSED(fx.action.image_digest = S("sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	REFUSED(fx.action.image_digest = S("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
	REFUSED(fx.action.image_digest = S("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	REFUSED(fx.action.image_digest = S("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	REFUSED(fx.action.image_digest = S("sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	REFUSED(fx.action.image_digest = S("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"));
	REFUSED(fx.action.image_digest = S(""));
	REFUSED(fx.action.image_digest = NULL);
	REFUSED(fx.action.mode = (Hpcc__V1__SourceMode)2);
	REFUSED(fx.action.mode = (Hpcc__V1__SourceMode)-1);
	REFUSED(fx.action.command = NULL);
	REFUSED(fx.command.compiler = S("/usr/bin/gcc"));
	REFUSED(fx.command.compiler = S("sh"));
	REFUSED(fx.command.compiler = S("gcc;x"));
	REFUSED(fx.command.compiler = S("gcc x"));
	REFUSED(fx.command.compiler = S("../gcc"));
	REFUSED(fx.command.compiler = S(""));
	REFUSED(fx.command.family = 0);
	REFUSED(fx.command.family = 3);
	REFUSED(fx.command.language = 3);
	REFUSED(fx.command.language = 5);
}

static void test_check_arguments(void **state)
{
	(void)state;
	static Hpcc__V1__Arg *many[ACTION_MAX_ARGS + 1];
	for (size_t i = 0; i < ACTION_MAX_ARGS + 1; i++)
		many[i] = &fx.args[3];
	ACCEPTED((fx.command.args = many, fx.command.n_args = ACTION_MAX_ARGS));
	REFUSED((fx.command.args = many, fx.command.n_args = ACTION_MAX_ARGS + 1));

	REFUSED(fx.command.cwd = S("../x"));
	REFUSED(fx.command.cwd = S("/abs"));
	REFUSED(fx.command.cwd = S("a/../../x"));
	REFUSED(fx.command.cwd = S("a/"));

	/* Response files are expanded by the client. */
	REFUSED(fx.args[3].flag = S("@args.rsp"));
	REFUSED(fx.args[3].path = S("x"));
	REFUSED(fx.args[3].suffix = S("x"));
	REFUSED(fx.arg_list[2] = NULL);
	REFUSED(fx.args[2].kind = (Hpcc__V1__PathKind)9);

	REFUSED(fx.args[0].path = S("../x"));
	REFUSED(fx.args[0].path = S("/etc"));
	REFUSED(fx.args[0].path = S("a/../../x"));
	REFUSED(fx.args[0].path = S(""));

	REFUSED((fx.command.cwd = S("a"), fx.args[1].path = S("../../x")));
	REFUSED(fx.args[1].path = S("/abs"));
	REFUSED(fx.args[1].path = S(""));
	REFUSED(fx.args[2].path = S("relative"));
}

/* Options that make a compiler load code or write files of its own choice
 * are refused as plain arguments, and so is a response file of any kind. */
static void test_check_refused_options(void **state)
{
	(void)state;
	static const char *const refused[] = {
		"-B/tmp", "-fplugin=x.so", "-specs=x", "-wrapper", "-Wl,-rpath", "-Wa,-adhln=x", "-Xlinker",
		"-save-temps", "-o", "-c", "-E", "-MD", "-MF", "-fdump-tree-all", "-fprofile-generate",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		REFUSED(fx.args[3].flag = S(refused[i]));
	REFUSED((fx.args[0].flag = S("@"), fx.args[0].path = S("args.rsp")));
	REFUSED((fx.args[0].flag = S("-B"), fx.args[0].path = S("bin")));
	/* -Wa, and -Wp, items are allowed one by one: hardening flags pass,
	 * listings and dependency files do not. */
	ACCEPTED(fx.args[3].flag = S("-Wa,--noexecstack"));
	ACCEPTED(fx.args[3].flag = S("-Wp,-D_FORTIFY_SOURCE=2"));
	ACCEPTED(fx.args[3].flag = S("-Wp,-D_FORTIFY_SOURCE=2,-D_GLIBCXX_ASSERTIONS"));
	REFUSED(fx.args[3].flag = S("-Wa,--noexecstack,-aln=x.lst"));
	REFUSED(fx.args[3].flag = S("-Wa,"));
	REFUSED(fx.args[3].flag = S("-Wp,-MD,x.d"));
	REFUSED(fx.args[3].flag = S("-Wp,-D_X,,-MD"));
	/* Options and response files must not hide in paths or suffixes: what
	 * the compiler sees is flag + path + suffix (found in review). */
	REFUSED(fx.source.path = S("@opts"));
	REFUSED(fx.source.path = S("-fplugin=./x.so"));
	REFUSED(fx.output.path = S("-o"));
	REFUSED((fx.args[0].flag = S("-Wp,-D"), fx.args[0].kind = HPCC__V1__PATH_KIND__PATH_RELATIVE,
		 fx.args[0].path = S("XY,-fplugin=./evil.so")));
	REFUSED((fx.args[0].flag = S(""), fx.args[0].kind = HPCC__V1__PATH_KIND__PATH_RELATIVE,
		 fx.args[0].path = S("-fpass-plugin=./x.so")));
	REFUSED((fx.args[0].flag = S("-fpass-plugin="), fx.args[0].kind = HPCC__V1__PATH_KIND__PATH_ROOTED,
		 fx.args[0].path = S("x.so")));
	REFUSED((fx.args[0].flag = S("-fproc-stat-report="), fx.args[0].kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE,
		 fx.args[0].path = S("/tmp/x")));
	REFUSED((fx.args[0].flag = S("--gcc-toolchain="), fx.args[0].kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE,
		 fx.args[0].path = S("/opt/evil")));
	REFUSED((fx.args[1].suffix = S(",-fplugin=x.so")));
	REFUSED(fx.args[3].flag = S("-fproc-stat-report=/tmp/x"));
}

/* A relative path climbs out of the root even when, after climbing, its
 * remaining parts happen to spell a directory named like the checker's own
 * placeholder for the root. "../r/x" from the root is <root>/../r/x. */
static void test_check_relative_path_cannot_reenter(void **state)
{
	(void)state;
	/* The same action with the other paths at the top: accepted. */
	ACCEPTED((fx.command.cwd = S(""), fx.args[1].path = S("lib"), fx.output.path = S("a.o")));
	REFUSED((fx.command.cwd = S(""), fx.args[1].path = S("../x"), fx.output.path = S("a.o")));
	REFUSED((fx.command.cwd = S(""), fx.args[1].path = S("../r/x"), fx.output.path = S("a.o")));
	REFUSED((fx.command.cwd = S("a"), fx.args[1].path = S("../../r/x")));
	REFUSED((fx.command.cwd = S("a"), fx.args[1].path = S("../../../r/x")));
	REFUSED((fx.command.cwd = S(""), fx.output.path = S("../r/a.o"), fx.args[1].path = S("lib")));
	REFUSED((fx.command.cwd = S(""), fx.source.kind = HPCC__V1__PATH_KIND__PATH_RELATIVE,
		 fx.source.path = S("../r/a.c"), fx.args[1].path = S("lib"), fx.output.path = S("a.o")));
}

static void test_check_source_output_env(void **state)
{
	(void)state;
	REFUSED(fx.output.kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE);
	REFUSED((fx.output.kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE, fx.output.path = S("/tmp/a.o")));
	REFUSED((fx.output.kind = HPCC__V1__PATH_KIND__PATH_NONE, fx.output.path = S("")));
	REFUSED((fx.source.kind = HPCC__V1__PATH_KIND__PATH_NONE, fx.source.path = S("")));
	REFUSED((fx.source.kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE, fx.source.path = S("/usr/a.c")));
	REFUSED(fx.command.source = NULL);
	REFUSED(fx.command.output = NULL);
	REFUSED(fx.output.path = S("../../a.o"));

	REFUSED(fx.env[0] = S("LD_PRELOAD=x"));
	REFUSED(fx.env[0] = S("SOURCE_DATE_EPOCH=12a"));
	REFUSED(fx.env[0] = S("SOURCE_DATE_EPOCH="));
	REFUSED(fx.env[0] = S("SOURCE_DATE_EPOCH=-1"));
	REFUSED(fx.env[0] = S("PATH=/tmp"));
	REFUSED(fx.env[0] = S("SOURCE_DATE_EPOCH=1234567890123456789012345678901234567890"));
	REFUSED((fx.env[1] = S("LD_PRELOAD=x"), fx.command.n_env = 2));
}

static void test_check_inputs(void **state)
{
	(void)state;
	REFUSED((fx.input_list[0] = &fx.inputs[1], fx.input_list[1] = &fx.inputs[0]));
	REFUSED(fx.input_list[1] = &fx.inputs[0]);
	REFUSED(fx.inputs[1].path = S("inc/x.h"));
	REFUSED(fx.inputs[1].path = S("../x"));
	REFUSED(fx.inputs[1].path = S("/etc/passwd"));
	REFUSED(fx.inputs[1].path = S("sub//a.c"));
	REFUSED(fx.inputs[1].path = S("sub/"));
	REFUSED(fx.inputs[0].path = S(""));
	REFUSED(fx.inputs[1].digest.len = DIGEST_LEN - 1);
	REFUSED(fx.inputs[1].digest.len = DIGEST_LEN + 1);
	REFUSED(fx.inputs[1].digest.len = 0);
	REFUSED(fx.inputs[1].size = BLOB_MAX_SIZE + 1);
	REFUSED(fx.inputs[1].size = UINT64_MAX);

	Hpcc__V1__InputFile **many = calloc(ACTION_MAX_INPUTS + 1, sizeof(*many));
	assert_non_null(many);
	for (size_t i = 0; i < ACTION_MAX_INPUTS + 1; i++)
		many[i] = &fx.inputs[0];
	REFUSED((fx.action.inputs = many, fx.action.n_inputs = ACTION_MAX_INPUTS + 1));
	free(many);
}

/* ---- action_argv, action_output_paths ---------------------------------- */

static void assert_strv(const struct strv *v, const char *const *want, size_t n)
{
	for (size_t i = 0; i < n && i < v->n; i++)
		if (strcmp(v->v[i], want[i]) != 0)
			fail_msg("argv[%zu] is '%s', expected '%s'", i, v->v[i], want[i]);
	if (v->n != n)
		fail_msg("%zu strings, expected %zu", v->n, n);
	assert_null(v->v[n]);
}

static void argv_for(unsigned language, bool preprocessed, const char *x)
{
	fixture_reset();
	fx.command.language = language;
	const char *const want[] = {
		"gcc", "-I" ROOT "/inc", "-I../lib", "-isystem/opt/x/include", "-O2",
		"-fmacro-prefix-map=" ROOT "=.", "-x", x, "-c", ROOT "/sub/a.c", "-o", "../o/a.o",
	};
	_cleanup_strv_ struct strv v = { 0 };
	assert_int_equal(action_argv(&fx.command, preprocessed, ROOT, &v), 0);
	assert_strv(&v, want, sizeof(want) / sizeof(want[0]));
}

static void test_argv(void **state)
{
	(void)state;
	argv_for(0, false, "c");
	argv_for(1, false, "c++");
	argv_for(0, true, "cpp-output");
	argv_for(1, true, "c++-cpp-output");
	argv_for(2, false, "assembler-with-cpp");
	argv_for(2, true, "assembler");
}

static void test_arg_string(void **state)
{
	(void)state;
	Hpcc__V1__Arg a;
	char *s = NULL;
	set_arg(&a, "-include", HPCC__V1__PATH_KIND__PATH_ROOTED, "cfg/x.h", ".gch");
	assert_int_equal(action_arg_string(&a, ROOT, &s), 0);
	assert_string_equal(s, "-include" ROOT "/cfg/x.h.gch");
	free(s);
	set_arg(&a, "", HPCC__V1__PATH_KIND__PATH_ROOTED, ".", "");
	assert_int_equal(action_arg_string(&a, ROOT, &s), 0);
	assert_string_equal(s, ROOT);
	free(s);
	set_arg(&a, "-I", HPCC__V1__PATH_KIND__PATH_RELATIVE, "x", "/y");
	assert_int_equal(action_arg_string(&a, ROOT, &s), 0);
	assert_string_equal(s, "-Ix/y");
	free(s);
}

static void output_paths_are(const char *const *want, size_t n)
{
	_cleanup_strv_ struct strv v = { 0 };
	assert_int_equal(action_output_paths(&fx.command, &v), 0);
	assert_strv(&v, want, n);
}

static void test_output_paths(void **state)
{
	(void)state;
	fixture_reset();
	const char *const object[] = { "o/a.o" };
	output_paths_are(object, 1);

	fixture_reset();
	fx.command.split_dwarf = 1;
	const char *const split[] = { "o/a.o", "o/a.dwo" };
	output_paths_are(split, 2);

	fixture_reset();
	fx.output.kind = HPCC__V1__PATH_KIND__PATH_ROOTED;
	fx.output.path = S("build/x.y/b.o");
	fx.command.split_dwarf = 1;
	const char *const rooted[] = { "build/x.y/b.o", "build/x.y/b.dwo" };
	output_paths_are(rooted, 2);

	fixture_reset();
	fx.command.cwd = S("");
	fx.output.path = S("a.o");
	const char *const top[] = { "a.o" };
	output_paths_are(top, 1);

	fixture_reset();
	fx.command.cwd = S("a/b");
	fx.output.path = S("./c/../d.o");
	const char *const messy[] = { "a/b/d.o" };
	output_paths_are(messy, 1);
}

/* ---- blobs ------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rng_state ^= rng_state << 13;
		rng_state ^= rng_state >> 7;
		rng_state ^= rng_state << 17;
		p[i] = (uint8_t)(rng_state >> 24);
	}
}

static void round_trip(const void *data, size_t n)
{
	Hpcc__V1__Blob b;
	_cleanup_buf_ struct buf storage, out;
	buf_init(&storage, 0);
	buf_init(&out, 0);
	assert_int_equal(blob_pack(data, n, 3, &b, &storage), 0);
	assert_true(b.zstd);
	assert_int_equal(b.size, n);
	assert_int_equal(b.digest.len, DIGEST_LEN);
	struct digest d;
	assert_int_equal(digest_bytes(data, n, &d), 0);
	assert_memory_equal(b.digest.data, d.b, DIGEST_LEN);
	struct error err = { 0 };
	int r = blob_unpack(&b, n, &out, &err);
	if (r < 0)
		fail_msg("unpacking %zu bytes: %d %s", n, r, err.msg);
	assert_int_equal(out.len, n);
	if (n)
		assert_memory_equal(out.data, data, n);
	/* The packed blob also goes through the wire encoding intact. */
	size_t wire_len = hpcc__v1__blob__get_packed_size(&b);
	uint8_t *wire = malloc(wire_len);
	assert_non_null(wire);
	hpcc__v1__blob__pack(&b, wire);
	Hpcc__V1__Blob *back = hpcc__v1__blob__unpack(NULL, wire_len, wire);
	assert_non_null(back);
	assert_int_equal(blob_unpack(back, n, &out, &err), 0);
	assert_int_equal(out.len, n);
	hpcc__v1__blob__free_unpacked(back, NULL);
	free(wire);
}

static void test_blob_round_trip(void **state)
{
	(void)state;
	round_trip("", 0);
	round_trip("x", 1);
	size_t n = (size_t)1 << 20;
	uint8_t *p = malloc(n);
	assert_non_null(p);
	fill_random(p, n);
	round_trip(p, n);
	memset(p, 'a', n);
	round_trip(p, n);
	free(p);
}

/* A packed blob of some text, in storage the test owns and may damage. */
struct packed {
	Hpcc__V1__Blob blob;
	struct buf storage;
	uint8_t digest[DIGEST_LEN];
	uint8_t *frame;  /* a private copy of the frame */
	size_t frame_len;
};

static void pack_text(struct packed *p, size_t n)
{
	uint8_t *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)("hello, blob "[i % 12] + i / 4096);
	buf_init(&p->storage, 0);
	assert_int_equal(blob_pack(data, n, 1, &p->blob, &p->storage), 0);
	free(data);
	memcpy(p->digest, p->blob.digest.data, DIGEST_LEN);
	p->blob.digest.data = p->digest;
	p->frame_len = p->blob.data.len;
	p->frame = malloc(p->frame_len + 64);
	assert_non_null(p->frame);
	memcpy(p->frame, p->blob.data.data, p->frame_len);
	p->blob.data.data = p->frame;
}

static void packed_free(struct packed *p)
{
	buf_free(&p->storage);
	free(p->frame);
}

static int unpack(const Hpcc__V1__Blob *b, size_t max, const char *what)
{
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	struct error err = { 0 };
	int r = blob_unpack(b, max, &out, &err);
	if (r < 0 && !err.msg[0])
		fail_msg("%s: refused (%d) without a message", what, r);
	return r;
}

static void test_blob_unpack_refuses_lies(void **state)
{
	(void)state;
	const size_t n = 10000;
	struct packed p;
	pack_text(&p, n);
	assert_int_equal(unpack(&p.blob, n, "good"), 0);

	p.digest[7] ^= 0x20;
	assert_int_equal(unpack(&p.blob, n, "wrong digest"), -EBADMSG);
	p.digest[7] ^= 0x20;

	p.blob.digest.len = DIGEST_LEN - 1;
	assert_true(unpack(&p.blob, n, "short digest") < 0);
	p.blob.digest.len = DIGEST_LEN;

	p.blob.size = n + 1;
	assert_true(unpack(&p.blob, n + 100, "announced bigger") < 0);
	p.blob.size = n - 1;
	assert_true(unpack(&p.blob, n + 100, "announced smaller") < 0);
	p.blob.size = 0;
	assert_true(unpack(&p.blob, n + 100, "announced empty") < 0);
	p.blob.size = n;

	assert_int_equal(unpack(&p.blob, n - 1, "over max"), -EFBIG);
	assert_int_equal(unpack(&p.blob, n, "exactly max"), 0);
	assert_true(unpack(NULL, n, "no blob") < 0);

	/* A byte flipped in the middle of the frame. */
	p.frame[p.frame_len / 2] ^= 0x55;
	assert_true(unpack(&p.blob, n, "corrupt frame") < 0);
	p.frame[p.frame_len / 2] ^= 0x55;
	assert_int_equal(unpack(&p.blob, n, "repaired"), 0);

	/* The frame cut short, and cut to its header. */
	p.blob.data.len = p.frame_len - 5;
	assert_true(unpack(&p.blob, n, "truncated frame") < 0);
	p.blob.data.len = 6;
	assert_true(unpack(&p.blob, n, "frame header only") < 0);
	p.blob.data.len = 0;
	assert_true(unpack(&p.blob, n, "no frame") < 0);

	/* Bytes after the one frame. */
	memcpy(p.frame + p.frame_len, "garbage", 7);
	p.blob.data.len = p.frame_len + 7;
	assert_true(unpack(&p.blob, n, "trailing garbage") < 0);
	p.blob.data.len = p.frame_len;
	assert_int_equal(unpack(&p.blob, n, "trimmed again"), 0);
	packed_free(&p);

	/* A second valid frame after the first is trailing data too. */
	struct packed two;
	pack_text(&two, 10);
	uint8_t *double_frame = malloc(2 * two.frame_len);
	assert_non_null(double_frame);
	memcpy(double_frame, two.frame, two.frame_len);
	memcpy(double_frame + two.frame_len, two.frame, two.frame_len);
	two.blob.data.data = double_frame;
	two.blob.data.len = 2 * two.frame_len;
	assert_true(unpack(&two.blob, 20, "two frames") < 0);
	free(double_frame);
	packed_free(&two);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 64 MiB of zeros as one zstd frame, with or without its content size. */
static uint8_t *make_bomb(bool content_size, size_t *ret_len)
{
	const size_t n = (size_t)64 << 20;
	uint8_t *zeros = calloc(1, n);
	assert_non_null(zeros);
	size_t bound = ZSTD_compressBound(n);
	uint8_t *out = malloc(bound);
	assert_non_null(out);
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	assert_non_null(cctx);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
	ZSTD_inBuffer in = { zeros, n, 0 };
	ZSTD_outBuffer o = { out, bound, 0 };
	/* Streaming without a pledged size leaves the content size out. */
	size_t left = ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_end);
	assert_false(ZSTD_isError(left));
	assert_int_equal(left, 0);
	ZSTD_freeCCtx(cctx);
	free(zeros);
	*ret_len = o.pos;
	return out;
}

static void test_blob_bombs(void **state)
{
	(void)state;
	for (int with_size = 0; with_size < 2; with_size++) {
		size_t len;
		uint8_t *bomb = make_bomb(with_size, &len);
		assert_true(len < (size_t)1 << 20);
		Hpcc__V1__Blob b;
		hpcc__v1__blob__init(&b);
		uint8_t digest[DIGEST_LEN] = { 0 };
		b.digest.data = digest;
		b.digest.len = DIGEST_LEN;
		b.zstd = true;
		b.data.data = bomb;
		b.data.len = len;

		double t0 = now_s();
		b.size = 1000;
		assert_true(unpack(&b, (size_t)1 << 20, "bomb announcing 1000 bytes") < 0);
		b.size = (uint64_t)64 << 20;
		assert_int_equal(unpack(&b, (size_t)1 << 20, "bomb over max"), -EFBIG);
		double t = now_s() - t0;
		if (t > 2.0)
			fail_msg("refusing a bomb (content size %s) took %.2f s", with_size ? "set" : "unset", t);
		free(bomb);
	}
}

static void test_blob_raw(void **state)
{
	(void)state;
	static const char text[] = "raw bytes, no zstd";
	const size_t n = sizeof(text) - 1;
	struct digest d;
	assert_int_equal(digest_bytes(text, n, &d), 0);
	Hpcc__V1__Blob b;
	hpcc__v1__blob__init(&b);
	b.digest.data = d.b;
	b.digest.len = DIGEST_LEN;
	b.size = n;
	b.zstd = false;
	b.data.data = (uint8_t *)text;
	b.data.len = n;

	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	struct error err = { 0 };
	assert_int_equal(blob_unpack(&b, n, &out, &err), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, text, n);

	b.data.len = n - 1;
	assert_true(unpack(&b, n, "raw, shorter than announced") < 0);
	b.size = n - 1;
	assert_true(unpack(&b, n, "raw, wrong digest") < 0);
	b.data.len = n;
	assert_true(unpack(&b, n, "raw, longer than announced") < 0);
	b.size = n;
	assert_int_equal(unpack(&b, n - 1, "raw, over max"), -EFBIG);
	d.b[0] ^= 1;
	assert_int_equal(unpack(&b, n, "raw, digest flipped"), -EBADMSG);

	/* A real zstd frame sent as raw bytes is checked as raw bytes. */
	struct packed p;
	pack_text(&p, 100);
	p.blob.zstd = false;
	assert_true(unpack(&p.blob, 1000, "zstd frame flagged raw") < 0);
	packed_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_deterministic),
		cmocka_unit_test(test_digest_covers_every_field),
		cmocka_unit_test(test_digest_unambiguous),
		cmocka_unit_test(test_digest_pinned),
		cmocka_unit_test(test_digest_wire_round_trip),
		cmocka_unit_test(test_canonical_refuses_odd_encodings),
		cmocka_unit_test(test_digest_without_command),
		cmocka_unit_test(test_direct_key),
		cmocka_unit_test(test_check_accepts_good),
		cmocka_unit_test(test_check_image_mode_command),
		cmocka_unit_test(test_check_arguments),
		cmocka_unit_test(test_check_refused_options),
		cmocka_unit_test(test_check_relative_path_cannot_reenter),
		cmocka_unit_test(test_check_source_output_env),
		cmocka_unit_test(test_check_inputs),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_arg_string),
		cmocka_unit_test(test_output_paths),
		cmocka_unit_test(test_blob_round_trip),
		cmocka_unit_test(test_blob_unpack_refuses_lies),
		cmocka_unit_test(test_blob_bombs),
		cmocka_unit_test(test_blob_raw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
