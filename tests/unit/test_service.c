/*
 * Tests of the worker's WorkerService (src/worker/service.c) seen from a
 * client that may be hostile. One real worker runs for the whole group, on
 * a thread, with the unsafe-local runtime (the host's gcc in a staging
 * directory), a self-signed certificate the client pins, and an Ed25519 key
 * whose private half stays here to issue routing tokens. The happy path
 * compiles, probes and compares objects across tenants byte for byte; every
 * other test sends something a client must not get away with (bad tokens,
 * another tenant's digests, unsafe paths, lying or bombing blobs, oversized
 * messages) and checks the gRPC status, that the status message is one
 * readable line, that nothing was stored under state/tenants, that no
 * staging directory was left behind, and that nothing appeared outside it.
 * The fixture and the request helpers are in service_testutil.h.
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
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "auditfmt.h"
#include "service_testutil.h"

/* ---- 1. happy path ----------------------------------------------------- */

static void test_happy_path(void **state)
{
	(void)state;
	struct buf tok_a, tok_b;
	issue("tenant-a", &tok_a);
	issue("tenant-b", &tok_b);
	struct spec s;
	spec_init(&s, source_ok);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);

	/* Before anything ran, a probe is a clean miss. */
	struct rpc_status st;
	bool found = true;
	size_t request_size = 0;
	probe(&tok_a, &action, &st, &found, &request_size, NULL);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(found);
	/* A probe is tens of bytes plus the token (DESIGN.md §3). */
	assert_true(request_size <= 64 + tok_a.len);

	upload_spec(&tok_a, &s);
	assert_int_equal(find_missing(&tok_a, s.digests, 2, &st), 0);
	assert_status(&st, GRPC_STATUS_OK, NULL);

	Hpcc__V1__ExecuteReply *rep = execute(&tok_a, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(rep->cached);
	Hpcc__V1__ActionResult *res = rep->result;
	assert_int_equal(res->exit_code, 0);
	assert_int_equal(res->n_outputs, 1);
	assert_string_equal(res->outputs[0]->path, "a.o");
	assert_string_equal(res->worker_id, WORKER_ID);
	assert_string_equal(res->runtime, "unsafe-local");
	assert_int_equal(res->action_digest.len, DIGEST_LEN);
	assert_memory_equal(res->action_digest.data, action.b, DIGEST_LEN);
	struct buf obj_a;
	unpack_blob(res->outputs[0]->blob, &obj_a);
	assert_true(obj_a.len > 4 && memcmp(obj_a.data, "\177ELF", 4) == 0);
	/* The compiler's own dependency list names the source as it was
	 * spelled (relative to the cwd), and no staging path. */
	bool saw_source = false;
	for (size_t i = 0; i < res->n_dependencies; i++) {
		if (!res->dependencies[i]->rooted && strcmp(res->dependencies[i]->path, "a.c") == 0)
			saw_source = true;
		assert_null(strstr(res->dependencies[i]->path, fx.staging_dir));
	}
	assert_true(saw_source);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	/* The probe now finds what the worker stored, with the same object. */
	Hpcc__V1__ProbeReply *pr = NULL;
	probe(&tok_a, &action, &st, &found, NULL, &pr);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_true(found);
	assert_int_equal(pr->result->exit_code, 0);
	assert_int_equal(pr->result->n_outputs, 1);
	struct buf obj_probe;
	unpack_blob(pr->result->outputs[0]->blob, &obj_probe);
	assert_int_equal(obj_probe.len, obj_a.len);
	assert_memory_equal(obj_probe.data, obj_a.data, obj_a.len);
	hpcc__v1__probe_reply__free_unpacked(pr, NULL);

	/* So does a probe by direct key, with this action as its candidate. */
	struct digest direct;
	spec_direct_key(&s, &direct);
	probe_key(&tok_a, &direct, true, &st, &found, &request_size, &pr);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_true(found);
	assert_true(request_size <= 64 + tok_a.len);
	assert_int_equal(pr->n_candidates, 1);
	assert_int_equal(pr->candidates[0]->action_digest.len, DIGEST_LEN);
	assert_memory_equal(pr->candidates[0]->action_digest.data, action.b, DIGEST_LEN);
	hpcc__v1__probe_reply__free_unpacked(pr, NULL);

	/* A second Execute for the same tenant is answered from the cache. */
	rep = execute(&tok_a, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_true(rep->cached);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	/* Another tenant runs the same action afresh (its own blobs, its own
	 * staging path) and gets a byte-identical object. */
	upload_spec(&tok_b, &s);
	rep = execute(&tok_b, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(rep->cached);
	assert_int_equal(rep->result->exit_code, 0);
	assert_int_equal(rep->result->n_outputs, 1);
	struct buf obj_b;
	unpack_blob(rep->result->outputs[0]->blob, &obj_b);
	assert_int_equal(obj_b.len, obj_a.len);
	assert_memory_equal(obj_b.data, obj_a.data, obj_a.len);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	buf_free(&obj_a);
	buf_free(&obj_b);
	buf_free(&obj_probe);
	buf_free(&tok_a);
	buf_free(&tok_b);
}

/* ---- 2. tokens --------------------------------------------------------- */

/* Probe, FindMissing, Upload and Execute with tok: each refused, nothing stored. */
static void assert_token_refused(const struct buf *tok, const char *what)
{
	size_t before = stored_files();
	struct spec s;
	spec_init(&s, source_ok);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);
	struct rpc_status st;
	bool found;

	print_message("token case: %s\n", what);
	probe(tok, &action, &st, &found, NULL, NULL);
	assert_refused_auth(&st);
	find_missing(tok, s.digests, 2, &st);
	assert_refused_auth(&st);
	upload_texts(tok, s.texts, 2, &st, NULL);
	assert_refused_auth(&st);
	Hpcc__V1__ExecuteReply *rep = execute(tok, &s, &st);
	assert_null(rep);
	assert_refused_auth(&st);
	assert_int_equal(stored_files(), before);
}

static void test_tokens(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	struct buf t;

	issue_with(fx.key, "tokens", IMG, WORKER_ID, now - 400, 300, &t);
	assert_token_refused(&t, "expired");
	buf_free(&t);

	issue_with(fx.key, "tokens", IMG, "w2", now, 300, &t);
	assert_token_refused(&t, "for worker w2");
	buf_free(&t);

	issue_with(fx.key, "tokens", IMG_OTHER, WORKER_ID, now, 300, &t);
	assert_token_refused(&t, "for an image the worker does not serve");
	buf_free(&t);

	/* One byte of the claims changed (the tenant name, still well-formed):
	 * only the signature can tell. */
	issue_with(fx.key, "tokens", IMG, WORKER_ID, now, 300, &t);
	uint8_t *p = find_bytes((uint8_t *)t.data, t.len, "tokens", 6);
	assert_non_null(p);
	p[0] = 'T';
	assert_token_refused(&t, "tampered claims");
	/* A flipped bit in the signature too. */
	p[0] = 't';
	t.data[t.len - 1] ^= 0x01;
	assert_token_refused(&t, "tampered signature");
	buf_free(&t);

	issue_with(fx.other_key, "tokens", IMG, WORKER_ID, now, 300, &t);
	assert_token_refused(&t, "signed by another key");
	buf_free(&t);

	buf_init(&t, 0);
	assert_token_refused(&t, "no token");
	/* Bytes that are no token at all. */
	assert_int_equal(buf_append_str(&t, "not a token"), 0);
	assert_token_refused(&t, "garbage token");
	buf_free(&t);

	/* A valid token for IMG, an action for another image (the worker does
	 * not even serve it): PERMISSION_DENIED before anything runs. */
	issue("tokens", &t);
	struct spec s;
	spec_init(&s, source_ok);
	upload_spec(&t, &s);
	size_t before = stored_files();
	s.action.image_digest = IMG_OTHER;
	struct rpc_status st;
	assert_null(execute(&t, &s, &st));
	assert_status(&st, GRPC_STATUS_PERMISSION_DENIED, "image");
	assert_int_equal(stored_files(), before);
	buf_free(&t);
}

/* ---- 3. tenant isolation ----------------------------------------------- */

static void test_tenant_isolation(void **state)
{
	(void)state;
	struct buf tok_a, tok_b;
	issue("iso-a", &tok_a);
	issue("iso-b", &tok_b);
	struct spec s;
	/* A source of its own, so that no other test stored these blobs. */
	static const char src[] = "int iso(void){return 42;}\n";
	spec_init(&s, src);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);

	upload_spec(&tok_a, &s);
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(&tok_a, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rep->result->exit_code, 0);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	bool found = false;
	probe(&tok_a, &action, &st, &found, NULL, NULL);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_true(found);

	size_t before = stored_files();
	found = true;
	probe(&tok_b, &action, &st, &found, NULL, NULL);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(found);
	struct digest direct;
	spec_direct_key(&s, &direct);
	Hpcc__V1__ProbeReply *pr = NULL;
	found = false;
	probe_key(&tok_a, &direct, true, &st, &found, NULL, NULL);
	assert_true(found);
	probe_key(&tok_b, &direct, true, &st, &found, NULL, &pr);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(found);
	assert_int_equal(pr->n_candidates, 0);
	hpcc__v1__probe_reply__free_unpacked(pr, NULL);
	assert_int_equal(find_missing(&tok_b, s.digests, 2, &st), 2);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_null(execute(&tok_b, &s, &st));
	assert_status(&st, GRPC_STATUS_FAILED_PRECONDITION, "missing");
	assert_int_equal(stored_files(), before);
	/* And A still has everything. */
	assert_int_equal(find_missing(&tok_a, s.digests, 2, &st), 0);
	buf_free(&tok_a);
	buf_free(&tok_b);
}

/* ---- 4. manifest and command paths ------------------------------------- */

/* Executes s with tok and expects INVALID_ARGUMENT mentioning why. */
static void assert_execute_invalid(const struct buf *tok, struct spec *s, const char *why, const char *what)
{
	print_message("invalid action: %s\n", what);
	size_t before = stored_files();
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(tok, s, &st);
	if (rep) {
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
		fail_msg("%s: accepted", what);
	}
	print_message("  -> %d: %s\n", st.code, st.msg);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, why);
	assert_int_equal(stored_files(), before);
	assert_no_evil_file();
	assert_int_equal(staging_leftovers_settled(), 0);
}

static void test_manifest_paths(void **state)
{
	(void)state;
	struct buf tok;
	issue("paths", &tok);
	struct spec s;
	spec_init(&s, source_ok);
	/* The blobs are there, so any refusal is the path's doing. */
	upload_spec(&tok, &s);

	static const char *const bad_inputs[] = { "../x.h", "/etc/passwd", "a/../../x", "", "a//b.h", "a.h/" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_inputs); i++) {
		spec_init(&s, source_ok);
		s.inputs[0].path = (char *)bad_inputs[i];
		assert_execute_invalid(&tok, &s, "unsafe path", bad_inputs[i]);
	}

	/* An embedded NUL: protobuf-c would cut the string there, so the
	 * message no longer re-encodes to the bytes that were sent. */
	spec_init(&s, source_ok);
	s.inputs[0].path = "a.cQnulQ";
	struct buf msg, reply;
	buf_init(&msg, 0);
	pack_execute(&tok, &s, &msg);
	uint8_t *p = find_bytes((uint8_t *)msg.data, msg.len, "a.cQnulQ", 8);
	assert_non_null(p);
	p[3] = '\0';
	size_t before = stored_files();
	struct rpc_status st;
	print_message("invalid action: NUL in an input path\n");
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, "malformed");
	assert_int_equal(stored_files(), before);
	buf_free(&reply);
	/* The same with the NUL in the compiler's name. */
	spec_init(&s, source_ok);
	s.cmd.compiler = "gccQ-x";
	pack_execute(&tok, &s, &msg);
	p = find_bytes((uint8_t *)msg.data, msg.len, "gccQ-x", 6);
	assert_non_null(p);
	p[3] = '\0';
	print_message("invalid action: NUL in the compiler name\n");
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, "malformed");
	buf_free(&reply);
	buf_free(&msg);

	/* Unsorted, then one path twice. */
	spec_init(&s, source_ok);
	s.input_ptrs[0] = &s.inputs[1];
	s.input_ptrs[1] = &s.inputs[0];
	assert_execute_invalid(&tok, &s, "sorted", "unsorted inputs");
	spec_init(&s, source_ok);
	s.input_ptrs[1] = &s.inputs[0];
	assert_execute_invalid(&tok, &s, "sorted", "duplicate inputs");
	/* One file under two spellings. */
	spec_init(&s, source_ok);
	spec_set_input(&s, 1, "inc/./a.h", header);
	spec_set_input(&s, 2, "inc/a.h", header);
	s.action.n_inputs = 3;
	assert_execute_invalid(&tok, &s, NULL, "inc/./a.h beside inc/a.h");

	/* A file where a directory must be: "inc" and "inc/a.h". */
	spec_init(&s, source_ok);
	spec_set_input(&s, 1, "inc", header);
	spec_set_input(&s, 2, "inc/a.h", header);
	s.action.n_inputs = 3;
	assert_execute_invalid(&tok, &s, NULL, "inc as a file and a directory");
	/* No command at all, no source. */
	spec_init(&s, source_ok);
	s.action.command = NULL;
	assert_execute_invalid(&tok, &s, "command", "no command");
	spec_init(&s, source_ok);
	s.cmd.source = NULL;
	assert_execute_invalid(&tok, &s, "source", "no source");
	/* An input digest that is not 32 bytes. */
	spec_init(&s, source_ok);
	s.inputs[1].digest.len = 31;
	assert_execute_invalid(&tok, &s, "32 bytes", "31-byte input digest");

	spec_init(&s, source_ok);
	s.output.kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE;
	s.output.path = "/tmp/evil.o";
	assert_execute_invalid(&tok, &s, "output", "absolute output /tmp/evil.o");
	spec_init(&s, source_ok);
	s.output.path = "../../../../../../../tmp/evil.o";
	assert_execute_invalid(&tok, &s, "output", "relative output climbing to /tmp/evil.o");
	spec_init(&s, source_ok);
	s.output.kind = HPCC__V1__PATH_KIND__PATH_ROOTED;
	s.output.path = "../evil.o";
	assert_execute_invalid(&tok, &s, "output", "rooted output ../evil.o");

	spec_init(&s, source_ok);
	s.source.path = "../../etc/x.c";
	assert_execute_invalid(&tok, &s, "source", "source ../../etc/x.c");
	spec_init(&s, source_ok);
	s.source.kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE;
	s.source.path = "/etc/passwd";
	assert_execute_invalid(&tok, &s, "source", "absolute source");
	spec_init(&s, source_ok);
	s.args[0].path = "../../..";
	assert_execute_invalid(&tok, &s, "argument 1", "-I../../..");

	spec_init(&s, source_ok);
	s.cmd.cwd = "../x";
	assert_execute_invalid(&tok, &s, "working directory", "cwd ../x");
	spec_init(&s, source_ok);
	s.cmd.cwd = "/tmp";
	assert_execute_invalid(&tok, &s, "working directory", "cwd /tmp");

	static const char *const bad_compilers[] = { "/bin/sh", "sh", "gcc;rm", "../gcc", "", "gcc -o /tmp/evil.o" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_compilers); i++) {
		spec_init(&s, source_ok);
		s.cmd.compiler = (char *)bad_compilers[i];
		assert_execute_invalid(&tok, &s, "compiler", bad_compilers[i]);
	}

	static const char *const bad_env[] = { "LD_PRELOAD=x", "PATH=/tmp", "SOURCE_DATE_EPOCH=1;x", "SOURCE_DATE_EPOCH=" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_env); i++) {
		spec_init(&s, source_ok);
		s.env[0] = (char *)bad_env[i];
		s.cmd.n_env = 1;
		s.cmd.env = s.env;
		assert_execute_invalid(&tok, &s, "environment", bad_env[i]);
	}

	/* A response file is the client's to expand. */
	spec_init(&s, source_ok);
	s.args[0].flag = "@/etc/passwd";
	s.args[0].kind = HPCC__V1__PATH_KIND__PATH_NONE;
	s.args[0].path = "";
	assert_execute_invalid(&tok, &s, "response file", "@file");

	/* The accepted form of the environment still compiles. */
	spec_init(&s, source_ok);
	s.env[0] = "SOURCE_DATE_EPOCH=1700000000";
	s.cmd.n_env = 1;
	s.cmd.env = s.env;
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rep->result->exit_code, 0);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	buf_free(&tok);
}

/*
 * The worker refuses a message that carries fields it does not know, at the
 * top level or nested (service.c and action.h promise "no unknown fields"):
 * a client must not be able to smuggle anything past the checks.
 */
static void test_unknown_fields(void **state)
{
	(void)state;
	struct buf tok;
	issue("unknown", &tok);
	struct spec s;
	spec_init(&s, source_ok);
	upload_spec(&tok, &s);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);
	size_t before = stored_files();
	struct buf msg, reply;
	struct rpc_status st;
	buf_init(&msg, 0);

	/* ExecuteRequest with field 15 (varint 1) appended. */
	pack_execute(&tok, &s, &msg);
	assert_int_equal(buf_append(&msg, "\x78\x01", 2), 0);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	buf_free(&reply);
	int execute_code = st.code;

	/* The same field inside the Command (nested twice). */
	Hpcc__V1__Command unknown_cmd = s.cmd;
	ProtobufCMessageUnknownField uf = { .tag = 15, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 1,
					     .data = (uint8_t *)"\x01" };
	unknown_cmd.base.n_unknown_fields = 1;
	unknown_cmd.base.unknown_fields = &uf;
	s.action.command = &unknown_cmd;
	pack_execute(&tok, &s, &msg);
	s.action.command = &s.cmd;
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	buf_free(&reply);
	int nested_code = st.code;

	/* ProbeRequest and FindMissingRequest with it. */
	Hpcc__V1__ProbeRequest preq = HPCC__V1__PROBE_REQUEST__INIT;
	preq.token = bin(tok.data, tok.len);
	preq.action_digest = bin(action.b, DIGEST_LEN);
	pack(&preq.base, &msg);
	assert_int_equal(buf_append(&msg, "\x78\x01", 2), 0);
	call_raw(M_PROBE, msg.data, msg.len, &st, &reply);
	buf_free(&reply);
	int probe_code = st.code;

	Hpcc__V1__FindMissingRequest freq = HPCC__V1__FIND_MISSING_REQUEST__INIT;
	freq.token = bin(tok.data, tok.len);
	pack(&freq.base, &msg);
	assert_int_equal(buf_append(&msg, "\x78\x01", 2), 0);
	call_raw(M_FIND_MISSING, msg.data, msg.len, &st, &reply);
	buf_free(&reply);
	int find_code = st.code;

	/* An UploadChunk with it. */
	static const char text[] = "unknown field blob\n";
	struct digest d;
	assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
	Hpcc__V1__UploadChunk c = HPCC__V1__UPLOAD_CHUNK__INIT;
	c.token = bin(tok.data, tok.len);
	c.digest = bin(d.b, DIGEST_LEN);
	c.size = strlen(text);
	c.data = bin(text, strlen(text));
	c.last = true;
	pack(&c.base, &msg);
	assert_int_equal(buf_append(&msg, "\x78\x01", 2), 0);
	upload_raw(&msg, 1, &st, &reply);
	buf_free(&reply);
	int upload_code = st.code;
	size_t after = stored_files();

	buf_free(&msg);
	buf_free(&tok);
	print_message("unknown field: execute %d, nested %d, probe %d, find-missing %d, upload %d; files %zu -> %zu\n",
		      execute_code, nested_code, probe_code, find_code, upload_code, before, after);
	assert_int_equal(execute_code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(nested_code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(probe_code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(find_code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(upload_code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(after, before);
}

/*
 * A plain argument is passed to the compiler as it is. One that makes the
 * toolchain write a file at an absolute host path (the assembler's listing
 * option), or run a program from the staging root (-B with an uploaded,
 * executable "as"), would act outside the staging area on the worker's host.
 */
static void test_plain_arguments_stay_in_staging(void **state)
{
	(void)state;
	struct buf tok;
	issue("argwrite", &tok);
	char listing[160], marker[160], script[256];
	snprintf(listing, sizeof(listing), "%s.lst", fx.evil_path);
	snprintf(marker, sizeof(marker), "%s.ran", fx.evil_path);
	unlink(listing);
	unlink(marker);

	/* -Wa,-aln=<host path>. */
	struct spec s;
	spec_init(&s, source_ok);
	upload_spec(&tok, &s);
	char flag[200];
	snprintf(flag, sizeof(flag), "-Wa,-aln=%s", listing);
	hpcc__v1__arg__init(&s.args[1]);
	s.args[1].flag = flag;
	s.arg_ptrs[1] = &s.args[1];
	s.cmd.n_args = 2;
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &s, &st);
	int listing_code = st.code;
	if (rep)
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	/* -B./ with an executable input named "as". */
	snprintf(script, sizeof(script), "#!/bin/sh\necho ran > %s\nexec as \"$@\"\n", marker);
	spec_init(&s, source_ok);
	spec_set_input(&s, 1, "as", script);
	s.inputs[1].executable = true;
	spec_set_input(&s, 2, "inc/a.h", header);
	s.action.n_inputs = 3;
	upload_spec(&tok, &s);
	hpcc__v1__arg__init(&s.args[1]);
	s.args[1].flag = "-B./";
	s.arg_ptrs[1] = &s.args[1];
	s.cmd.n_args = 2;
	rep = execute(&tok, &s, &st);
	int helper_code = st.code;
	if (rep)
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	struct stat sb;
	bool written = stat(listing, &sb) == 0, ran = stat(marker, &sb) == 0;
	unlink(listing);
	unlink(marker);
	buf_free(&tok);
	if (written || ran)
		fail_msg("Execute let the client act on the worker's host (statuses %d, %d): %s%s%s%s", listing_code,
			 helper_code, written ? "wrote " : "", written ? listing : "",
			 ran ? " ran an uploaded program that wrote " : "", ran ? marker : "");
}

/* ---- 5. blobs ---------------------------------------------------------- */

static void chunk_init(Hpcc__V1__UploadChunk *c, const struct buf *tok, const struct digest *d, uint64_t size,
		       bool zstd, const void *data, size_t n, bool last)
{
	hpcc__v1__upload_chunk__init(c);
	if (tok)
		c->token = bin(tok->data, tok->len);
	if (d)
		c->digest = bin(d->b, DIGEST_LEN);
	c->size = size;
	c->zstd = zstd;
	c->data = bin(data, n);
	c->last = last;
}

/* Uploads chunks and expects one of two codes quickly, and nothing stored. */
static void assert_upload_refused(Hpcc__V1__UploadChunk *const *chunks, size_t n, int code, int code2,
				  const char *what)
{
	print_message("refused upload: %s\n", what);
	size_t before = stored_files();
	struct rpc_status st;
	struct buf reply;
	int64_t start = now_ms();
	upload_chunks(chunks, n, &st, &reply);
	int64_t took = now_ms() - start;
	buf_free(&reply);
	print_message("  -> %d: %s\n", st.code, st.msg);
	if (st.code != code && st.code != code2)
		fail_msg("%s: expected status %d, got %d: '%s'", what, code, st.code, st.msg);
	assert_one_line(&st);
	if (took > 2000)
		fail_msg("%s: refused only after %lld ms", what, (long long)took);
	assert_int_equal(stored_files(), before);
}

/* Compresses n zero bytes into one zstd frame, with or without the content
 * size in its header. */
static void zstd_zeros(size_t n, bool with_size, struct buf *out)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	assert_non_null(cctx);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
	uint8_t *zeros = calloc(1, 1 << 20);
	assert_non_null(zeros);
	buf_init(out, 0);
	assert_int_equal(buf_reserve(out, 1 << 20), 0);
	if (with_size)
		ZSTD_CCtx_setPledgedSrcSize(cctx, n);
	for (size_t done = 0; done < n;) {
		size_t step = n - done < (1 << 20) ? n - done : (1 << 20);
		done += step;
		ZSTD_inBuffer in = { zeros, step, 0 };
		ZSTD_EndDirective mode = done == n ? ZSTD_e_end : ZSTD_e_continue;
		size_t left;
		do {
			ZSTD_outBuffer o = { out->data + out->len, out->alloc - out->len - 1, 0 };
			left = ZSTD_compressStream2(cctx, &o, &in, mode);
			assert_false(ZSTD_isError(left));
			out->len += o.pos;
			if (out->alloc - out->len < 4096)
				assert_int_equal(buf_reserve(out, 1 << 16), 0);
		} while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
	}
	free(zeros);
	ZSTD_freeCCtx(cctx);
	unsigned long long fcs = ZSTD_getFrameContentSize(out->data, out->len);
	assert_true(with_size ? fcs == n : fcs == ZSTD_CONTENTSIZE_UNKNOWN);
}

static void test_blobs(void **state)
{
	(void)state;
	struct buf tok;
	issue("blobs", &tok);
	static const char text[] = "hello, blob\n";
	struct digest d, d_zeros;
	assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
	Hpcc__V1__UploadChunk c[3];
	Hpcc__V1__UploadChunk *cp[3] = { &c[0], &c[1], &c[2] };

	/* Bytes that do not hash to the digest, raw and compressed. */
	chunk_init(&c[0], &tok, &d, strlen(text), false, "hello, blob?", strlen(text), true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "bytes that do not match the digest");
	struct buf z;
	Hpcc__V1__Blob b;
	buf_init(&z, 0);
	assert_int_equal(blob_pack("hello, blob?", strlen(text), 3, &b, &z), 0);
	chunk_init(&c[0], &tok, &d, strlen(text), true, b.data.data, b.data.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "zstd bytes that do not match the digest");
	/* Right bytes, wrong announced size. */
	chunk_init(&c[0], &tok, &d, strlen(text) - 1, false, text, strlen(text), true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, GRPC_STATUS_RESOURCE_EXHAUSTED,
			      "more bytes than announced");
	chunk_init(&c[0], &tok, &d, strlen(text) + 1, false, text, strlen(text), true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "fewer bytes than announced");
	/* A digest that is not 32 bytes. */
	chunk_init(&c[0], &tok, &d, strlen(text), false, text, strlen(text), true);
	c[0].digest.len = 31;
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "31-byte digest");
	struct rpc_status st;
	assert_int_equal(find_missing(&tok, &d, 1, &st), 1);

	/* Announced over max_blob. */
	chunk_init(&c[0], &tok, &d, MAX_BLOB + 1, false, text, strlen(text), true);
	assert_upload_refused(cp, 1, GRPC_STATUS_RESOURCE_EXHAUSTED, -1, "announced size over max_blob");

	/* zstd bombs: 64 MiB of zeros in a few KiB. */
	struct buf bomb;
	uint8_t *zeros = calloc(1, (size_t)64 << 20);
	assert_non_null(zeros);
	assert_int_equal(digest_bytes(zeros, (size_t)64 << 20, &d_zeros), 0);
	free(zeros);
	zstd_zeros((size_t)64 << 20, true, &bomb);
	assert_true(bomb.len < 64 * 1024);
	chunk_init(&c[0], &tok, &d_zeros, 1000, true, bomb.data, bomb.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_RESOURCE_EXHAUSTED, GRPC_STATUS_INVALID_ARGUMENT,
			      "zstd bomb announced as 1000 bytes");
	chunk_init(&c[0], &tok, &d_zeros, (uint64_t)64 << 20, true, bomb.data, bomb.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_RESOURCE_EXHAUSTED, -1, "zstd bomb announced as 64 MiB");
	buf_free(&bomb);
	/* Without the content size in the frame header, decompression itself must stop. */
	zstd_zeros((size_t)64 << 20, false, &bomb);
	chunk_init(&c[0], &tok, &d_zeros, 1000, true, bomb.data, bomb.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_RESOURCE_EXHAUSTED, GRPC_STATUS_INVALID_ARGUMENT,
			      "zstd bomb without content size, announced as 1000 bytes");
	chunk_init(&c[0], &tok, &d_zeros, MAX_BLOB, true, bomb.data, bomb.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_RESOURCE_EXHAUSTED, GRPC_STATUS_INVALID_ARGUMENT,
			      "zstd bomb without content size, announced as max_blob");
	buf_free(&bomb);

	/* A truncated frame, and one with trailing garbage. */
	static char big[20000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + (i * 7919 % 26));
	struct digest d_big;
	assert_int_equal(digest_bytes(big, sizeof(big), &d_big), 0);
	assert_int_equal(blob_pack(big, sizeof(big), 3, &b, &z), 0);
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, b.data.len / 2, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "truncated zstd frame");
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, b.data.len - 1, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "zstd frame missing its last byte");
	struct buf trailing;
	buf_init(&trailing, 0);
	assert_int_equal(buf_append(&trailing, b.data.data, b.data.len), 0);
	assert_int_equal(buf_append(&trailing, "junk", 4), 0);
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, trailing.data, trailing.len, true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "zstd frame with trailing bytes");
	buf_free(&trailing);
	/* Not zstd at all. */
	chunk_init(&c[0], &tok, &d, strlen(text), true, text, strlen(text), true);
	assert_upload_refused(cp, 1, GRPC_STATUS_INVALID_ARGUMENT, -1, "zstd flag on raw bytes");

	/* The stream ends inside a blob (last never set): the first half of
	 * a correct blob, then the end of the stream. */
	size_t half = b.data.len / 2;
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, half, false);
	chunk_init(&c[1], NULL, NULL, 0, false, b.data.data + half, b.data.len - half, false);
	assert_upload_refused(cp, 2, GRPC_STATUS_INVALID_ARGUMENT, -1, "stream ending inside a blob");
	assert_int_equal(find_missing(&tok, &d_big, 1, &st), 1);

	/* Chunks of two blobs interleaved. */
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, half, false);
	chunk_init(&c[1], NULL, &d, strlen(text), false, text, strlen(text), true);
	chunk_init(&c[2], NULL, &d_big, sizeof(big), true, b.data.data + half, b.data.len - half, true);
	assert_upload_refused(cp, 3, GRPC_STATUS_INVALID_ARGUMENT, -1, "interleaved blobs");
	/* A continuation chunk that changes the announced size. */
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, half, false);
	chunk_init(&c[1], NULL, NULL, sizeof(big) + 1, true, b.data.data + half, b.data.len - half, true);
	assert_upload_refused(cp, 2, GRPC_STATUS_INVALID_ARGUMENT, -1, "size changed mid-blob");
	assert_int_equal(find_missing(&tok, &d_big, 1, &st), 1);

	/* The correct blob in two chunks is stored, once. */
	chunk_init(&c[0], &tok, &d_big, sizeof(big), true, b.data.data, half, false);
	chunk_init(&c[1], NULL, NULL, 0, false, b.data.data + half, b.data.len - half, true);
	struct buf reply;
	upload_chunks(cp, 2, &st, &reply);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	buf_free(&reply);
	assert_int_equal(find_missing(&tok, &d_big, 1, &st), 0);

	/* Messages that are not protobuf at all. */
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x07, 0x13, 0x00, 0x42 };
	size_t before = stored_files();
	struct buf gmsg;
	buf_init(&gmsg, 0);
	assert_int_equal(buf_append(&gmsg, garbage, sizeof(garbage)), 0);
	upload_raw(&gmsg, 1, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	static const char *const unary[] = { M_PROBE, M_FIND_MISSING, M_EXECUTE };
	for (size_t i = 0; i < ARRAY_SIZE(unary); i++) {
		call_raw(unary[i], garbage, sizeof(garbage), &st, &reply);
		assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
		buf_free(&reply);
	}
	assert_int_equal(stored_files(), before);
	/* A valid chunk followed by garbage: the stream is refused, but the
	 * blob that was complete and verified before the garbage is kept. */
	chunk_init(&c[0], &tok, &d, strlen(text), false, text, strlen(text), true);
	struct buf two[2];
	buf_init(&two[0], 0);
	pack(&c[0].base, &two[0]);
	buf_init(&two[1], 0);
	assert_int_equal(buf_append(&two[1], garbage, sizeof(garbage)), 0);
	upload_raw(two, 2, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	buf_free(&two[0]);
	buf_free(&two[1]);
	buf_free(&gmsg);
	assert_int_equal(stored_files(), before + 1);
	assert_int_equal(find_missing(&tok, &d, 1, &st), 0);
	/* An empty stream: no token was ever shown. */
	before = stored_files();
	upload_raw(NULL, 0, &st, &reply);
	assert_refused_auth(&st);
	buf_free(&reply);
	assert_int_equal(stored_files(), before);

	buf_free(&z);
	buf_free(&tok);
}

/* Probe and FindMissing with digests that are not 32 bytes. */
static void test_digest_lengths(void **state)
{
	(void)state;
	struct buf tok, msg, reply;
	issue("lengths", &tok);
	buf_init(&msg, 0);
	struct rpc_status st;
	static const uint8_t short_digest[31] = { 1 };
	Hpcc__V1__ProbeRequest preq = HPCC__V1__PROBE_REQUEST__INIT;
	preq.token = bin(tok.data, tok.len);
	preq.action_digest = bin(short_digest, sizeof(short_digest));
	pack(&preq.base, &msg);
	call_raw(M_PROBE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, "32-byte");
	buf_free(&reply);
	/* Neither key, and both keys at once. */
	static const uint8_t full_digest[32] = { 2 };
	preq.action_digest = bin(NULL, 0);
	pack(&preq.base, &msg);
	call_raw(M_PROBE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	preq.action_digest = bin(full_digest, DIGEST_LEN);
	preq.direct_key = bin(full_digest, DIGEST_LEN);
	pack(&preq.base, &msg);
	call_raw(M_PROBE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	ProtobufCBinaryData ds[2] = { bin(short_digest, 31), bin(short_digest, 31) };
	Hpcc__V1__FindMissingRequest freq = HPCC__V1__FIND_MISSING_REQUEST__INIT;
	freq.token = bin(tok.data, tok.len);
	freq.n_digests = 2;
	freq.digests = ds;
	pack(&freq.base, &msg);
	call_raw(M_FIND_MISSING, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, "32 bytes");
	buf_free(&reply);
	buf_free(&msg);
	buf_free(&tok);
}

/* MODE_PREPROCESSED: one input, sent inline with the request, bounded and
 * checked against the manifest like an upload. */
static void test_preprocessed_mode(void **state)
{
	(void)state;
	struct buf tok;
	issue("preprocessed", &tok);
	static const char text[] = "# 1 \"a.c\"\nint f(void){return 1;}\n";
	struct spec s;
	spec_init(&s, source_ok);
	s.action.mode = HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	spec_set_input(&s, 0, "a.i", text);
	s.action.n_inputs = 1;
	s.source.path = "a.i";
	s.cmd.n_args = 0;
	struct buf z;
	buf_init(&z, 0);
	Hpcc__V1__Blob pre;
	assert_int_equal(blob_pack(text, strlen(text), 3, &pre, &z), 0);
	Hpcc__V1__ExecuteRequest req = HPCC__V1__EXECUTE_REQUEST__INIT;
	req.token = bin(tok.data, tok.len);
	req.action = &s.action;
	req.preprocessed = &pre;
	struct buf msg, reply;
	struct rpc_status st;
	buf_init(&msg, 0);

	pack(&req.base, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	Hpcc__V1__ExecuteReply *rep = hpcc__v1__execute_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
	assert_non_null(rep);
	assert_int_equal(rep->result->exit_code, 0);
	assert_int_equal(rep->result->n_outputs, 1);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	buf_free(&reply);
	/* Reproduce sends no source: the one that came inline was kept. */
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);
	Hpcc__V1__ReproduceRequest rr = HPCC__V1__REPRODUCE_REQUEST__INIT;
	rr.token = bin(tok.data, tok.len);
	rr.action_digest = bin(action.b, DIGEST_LEN);
	pack(&rr.base, &msg);
	call_raw("/hpcc.v1.WorkerService/Reproduce", msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	Hpcc__V1__ReproduceReply *rrep = hpcc__v1__reproduce_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
	assert_non_null(rrep);
	assert_int_equal(rrep->result->exit_code, 0);
	assert_int_equal(rrep->result->n_outputs, 1);
	hpcc__v1__reproduce_reply__free_unpacked(rrep, NULL);
	buf_free(&reply);

	/* The refusals below are for an action that never ran (a hit would
	 * be answered from the cache without the inline bytes). */
	static const char never_run[] = "# 1 \"a.c\"\nint never(void){return 3;}\n";
	spec_set_input(&s, 0, "a.i", never_run);
	size_t before = stored_files();
	/* Inline bytes that are not what the manifest names. */
	static const char other[] = "int g(void){return 2;}\n";
	Hpcc__V1__Blob wrong;
	struct buf z2;
	buf_init(&z2, 0);
	assert_int_equal(blob_pack(other, strlen(other), 3, &wrong, &z2), 0);
	req.preprocessed = &wrong;
	pack(&req.base, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	/* Nothing inline. */
	req.preprocessed = NULL;
	pack(&req.base, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	/* A zstd bomb inline, announced small and announced big. */
	struct buf bomb;
	zstd_zeros((size_t)64 << 20, false, &bomb);
	Hpcc__V1__Blob b = HPCC__V1__BLOB__INIT;
	b.digest = bin(s.digests[0].b, DIGEST_LEN);
	b.size = strlen(never_run);
	b.zstd = true;
	b.data = bin(bomb.data, bomb.len);
	req.preprocessed = &b;
	pack(&req.base, &msg);
	int64_t start = now_ms();
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_true(st.code == GRPC_STATUS_INVALID_ARGUMENT || st.code == GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_one_line(&st);
	buf_free(&reply);
	b.size = (uint64_t)64 << 20;
	pack(&req.base, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_true(st.code == GRPC_STATUS_INVALID_ARGUMENT || st.code == GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_one_line(&st);
	assert_true(now_ms() - start < 4000);
	buf_free(&reply);
	buf_free(&bomb);
	/* Two inputs in preprocessed mode. */
	assert_int_equal(blob_pack(never_run, strlen(never_run), 3, &pre, &z), 0);
	req.preprocessed = &pre;
	spec_set_input(&s, 1, "b.i", text);
	s.action.n_inputs = 2;
	pack(&req.base, &msg);
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL);
	buf_free(&reply);
	assert_int_equal(stored_files(), before);

	buf_free(&msg);
	buf_free(&z);
	buf_free(&z2);
	buf_free(&tok);
}

/* ---- 6. missing blobs -------------------------------------------------- */

static void test_execute_missing_blobs(void **state)
{
	(void)state;
	struct buf tok;
	issue("missing", &tok);
	struct spec s;
	static const char src[] = "int missing(void){return 6;}\n";
	spec_init(&s, src);
	size_t before = stored_files();
	struct rpc_status st;
	assert_null(execute(&tok, &s, &st));
	assert_status(&st, GRPC_STATUS_FAILED_PRECONDITION, "2 input blobs are missing");
	assert_int_equal(stored_files(), before);

	/* One of two uploaded: one missing. */
	const char *texts[] = { header };
	uint32_t n = 0;
	upload_texts(&tok, texts, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	before = stored_files();
	assert_null(execute(&tok, &s, &st));
	assert_status(&st, GRPC_STATUS_FAILED_PRECONDITION, "1 input blobs are missing");
	assert_int_equal(stored_files(), before);

	/* A manifest size that does not match the stored blob. */
	upload_spec(&tok, &s);
	s.inputs[0].size++;
	before = stored_files();
	assert_null(execute(&tok, &s, &st));
	assert_status(&st, GRPC_STATUS_INVALID_ARGUMENT, "size");
	assert_int_equal(stored_files(), before);
	buf_free(&tok);
}

/* ---- 7. compile error -------------------------------------------------- */

static void test_compile_error_not_cached(void **state)
{
	(void)state;
	struct buf tok;
	issue("errors", &tok);
	struct spec s;
	spec_init(&s, source_bad);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);
	upload_spec(&tok, &s);
	size_t before = stored_files();
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(rep->cached);
	assert_int_not_equal(rep->result->exit_code, 0);
	assert_int_equal(rep->result->n_outputs, 0);
	struct buf err_text;
	unpack_blob(rep->result->stderr_data, &err_text);
	assert_non_null(strstr(err_text.data, "undeclared"));
	/* The staging path does not leak into the diagnostics. */
	assert_null(strstr(err_text.data, fx.staging_dir));
	buf_free(&err_text);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	/* No result; only the action, retained for `hpcc reproduce`. */
	assert_int_equal(stored_files(), before + 1);

	bool found = true;
	probe(&tok, &action, &st, &found, NULL, NULL);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(found);
	/* A second run compiles again (nothing cached) and fails the same way. */
	rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(rep->cached);
	assert_int_not_equal(rep->result->exit_code, 0);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	buf_free(&tok);
}

/* ---- audit rows -------------------------------------------------------- */

static size_t audit_lines(struct buf *ret_last)
{
	_cleanup_free_ char *path = path_join(fx.dir, "state/audit/current.tsv");
	struct buf b;
	buf_init(&b, 64 << 20);
	assert_int_equal(fs_read_file(path, 64 << 20, &b), 0);
	size_t n = 0, start = 0, last = 0;
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] == '\n') {
			n++;
			last = start;
			start = i + 1;
		}
	if (ret_last) {
		buf_init(ret_last, 1 << 20);
		assert_int_equal(buf_append(ret_last, b.data + last, start - last), 0);
		assert_int_equal(buf_append_char(ret_last, '\0'), 0);
	}
	buf_free(&b);
	return n;
}

/* A unary call whose reply is unpacked as desc (NULL unless OK). */
static ProtobufCMessage *call_msg(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
				  struct rpc_status *st)
{
	struct buf msg, reply;
	buf_init(&msg, 0);
	pack(req, &msg);
	call_raw(method, msg.data, msg.len, st, &reply);
	ProtobufCMessage *m = st->code == GRPC_STATUS_OK ?
				      protobuf_c_message_unpack(desc, NULL, reply.len, (uint8_t *)reply.data) : NULL;
	buf_free(&msg);
	buf_free(&reply);
	return m;
}

/* A probe hit is an answer too: its row (cache "hit") carries the command
 * and source the result recorded, and the reply carries the row. AuditRows
 * answers a tenant's own rows only; Reproduce runs a retained action again,
 * for its tenant only, stores nothing, and logs a row of its own. */
static void test_audit_hits_rows_reproduce(void **state)
{
	(void)state;
	struct buf tok, other;
	issue("auditor", &tok);
	issue("intruder", &other);
	struct spec s;
	spec_init(&s, "int reproduced(void){return 11;}\n");
	upload_spec(&tok, &s);
	struct digest action;
	assert_int_equal(action_digest(&s.action, &action), 0);
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&action, hex);
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_non_null(strstr(rep->audit_row, "\tstore\t"));
	assert_string_equal(rep->result->audit_flags, "gcc -Iinc -x c -c a.c -o a.o");
	assert_int_equal(rep->result->audit_source.len, DIGEST_LEN);
	char *stored_row = strdup(rep->audit_row);
	Hpcc__V1__Blob *obj = rep->result->outputs[0]->blob;
	struct digest out_digest;
	memcpy(out_digest.b, obj->digest.data, DIGEST_LEN);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);

	size_t before = audit_lines(NULL);
	bool found = false;
	Hpcc__V1__ProbeReply *pr = NULL;
	probe_key(&tok, &action, false, &st, &found, NULL, &pr);
	assert_true(found);
	assert_int_equal(audit_lines(NULL), before + 1);
	/* The hit's row: same image, source, flags, output and action as the
	 * stored one; cache "hit". */
	struct audit_parsed a, b;
	struct error err = { 0 };
	assert_int_equal(audit_parse_row(stored_row, strlen(stored_row), &a, &err), 0);
	assert_int_equal(audit_parse_row(pr->audit_row, strlen(pr->audit_row), &b, &err), 0);
	static const enum audit_col same_cols[] = { AUDIT_COL_IMAGE, AUDIT_COL_SOURCE, AUDIT_COL_FLAGS, AUDIT_COL_OUTPUT,
						    AUDIT_COL_TENANT, AUDIT_COL_ACTION };
	for (size_t i = 0; i < ARRAY_SIZE(same_cols); i++)
		assert_string_equal(a.col[same_cols[i]], b.col[same_cols[i]]);
	assert_string_equal(b.col[AUDIT_COL_CACHE], "hit");
	assert_int_equal(b.seq, a.seq + 1);
	struct buf last;
	audit_lines(&last);
	last.data[strcspn(last.data, "\n")] = '\0';
	assert_string_equal(last.data, pr->audit_row);  /* the reply's row is the line on disk */
	buf_free(&last);
	hpcc__v1__probe_reply__free_unpacked(pr, NULL);

	/* AuditRows: the caller's tenant's rows only. */
	Hpcc__V1__AuditRowsRequest ar = HPCC__V1__AUDIT_ROWS_REQUEST__INIT;
	ar.token = bin(tok.data, tok.len);
	ar.prefix = hex;
	Hpcc__V1__AuditRowsReply *rows = (Hpcc__V1__AuditRowsReply *)call_msg(
		"/hpcc.v1.WorkerService/AuditRows", &ar.base, &hpcc__v1__audit_rows_reply__descriptor, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rows->n_rows, 2);
	assert_string_equal(rows->rows[0], stored_row);
	hpcc__v1__audit_rows_reply__free_unpacked(rows, NULL);
	ar.token = bin(other.data, other.len);
	rows = (Hpcc__V1__AuditRowsReply *)call_msg("/hpcc.v1.WorkerService/AuditRows", &ar.base,
						     &hpcc__v1__audit_rows_reply__descriptor, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rows->n_rows, 0);
	hpcc__v1__audit_rows_reply__free_unpacked(rows, NULL);
	ar.prefix = (char *)"ab";  /* too short: refused, not "everything" */
	assert_null(call_msg("/hpcc.v1.WorkerService/AuditRows", &ar.base, &hpcc__v1__audit_rows_reply__descriptor, &st));
	assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);

	/* Reproduce: another tenant finds nothing; the owner gets the same
	 * object, one "miss" row, and nothing new stored. */
	Hpcc__V1__ReproduceRequest rr = HPCC__V1__REPRODUCE_REQUEST__INIT;
	rr.token = bin(other.data, other.len);
	rr.action_digest = bin(action.b, DIGEST_LEN);
	assert_null(call_msg("/hpcc.v1.WorkerService/Reproduce", &rr.base, &hpcc__v1__reproduce_reply__descriptor, &st));
	assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
	size_t files = stored_files();
	before = audit_lines(NULL);
	rr.token = bin(tok.data, tok.len);
	Hpcc__V1__ReproduceReply *rp = (Hpcc__V1__ReproduceReply *)call_msg(
		"/hpcc.v1.WorkerService/Reproduce", &rr.base, &hpcc__v1__reproduce_reply__descriptor, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rp->result->outputs[0]->blob->digest.len, DIGEST_LEN);
	assert_memory_equal(rp->result->outputs[0]->blob->digest.data, out_digest.b, DIGEST_LEN);
	assert_non_null(strstr(rp->audit_row, "\tmiss\t"));
	assert_non_null(strstr(rp->audit_row, hex));
	hpcc__v1__reproduce_reply__free_unpacked(rp, NULL);
	assert_int_equal(audit_lines(NULL), before + 1);
	assert_int_equal(stored_files(), files);
	/* An action never run here: not found. */
	struct digest none;
	memset(none.b, 0x5a, DIGEST_LEN);
	rr.action_digest = bin(none.b, DIGEST_LEN);
	assert_null(call_msg("/hpcc.v1.WorkerService/Reproduce", &rr.base, &hpcc__v1__reproduce_reply__descriptor, &st));
	assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
	audit_parsed_free(&a);
	audit_parsed_free(&b);
	free(stored_row);
	buf_free(&tok);
	buf_free(&other);
}

/* Every Execute answer leaves one row; a command too long for a row is
 * refused before it runs, and nothing is stored. */
static void test_audit_rows(void **state)
{
	(void)state;
	struct buf tok;
	issue("audited", &tok);
	struct spec s;
	spec_init(&s, "int audited(void){return 7;}\n");
	upload_spec(&tok, &s);
	size_t before = audit_lines(NULL);
	struct rpc_status st;
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	struct buf last;
	assert_int_equal(audit_lines(&last), before + 1);
	assert_non_null(strstr(last.data, "\taudited\t"));
	assert_non_null(strstr(last.data, "\tunsafe-local\t"));
	assert_non_null(strstr(last.data, "\tstore\t"));
	assert_non_null(strstr(last.data, "\tgcc -Iinc -x c -c a.c -o a.o\t"));
	buf_free(&last);

	/* 70 defines of 4000 bytes: over the flags column's cap. */
	enum { N = 70 };
	static Hpcc__V1__Arg args[N + 1];
	static Hpcc__V1__Arg *ptrs[N + 1];
	static char value[4001];
	memset(value, 'v', 4000);
	memcpy(value, "-DV=", 4);
	ptrs[0] = &s.args[0];
	for (size_t i = 1; i <= N; i++) {
		hpcc__v1__arg__init(&args[i]);
		args[i].flag = value;
		ptrs[i] = &args[i];
	}
	s.cmd.args = ptrs;
	s.cmd.n_args = N + 1;
	size_t files = stored_files();
	rep = execute(&tok, &s, &st);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, "audit row");
	if (rep)
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	assert_int_equal(audit_lines(NULL), before + 1);
	assert_int_equal(stored_files(), files);
	buf_free(&tok);
}

/* ---- 8. oversized messages --------------------------------------------- */

static void test_oversized_request(void **state)
{
	(void)state;
	struct buf tok;
	issue("oversized", &tok);
	size_t big = (size_t)3 << 20;
	uint8_t *filler = calloc(1, big);
	assert_non_null(filler);
	size_t before = stored_files();

	/* Execute: a preprocessed source of 3 MiB inline. */
	struct spec s;
	spec_init(&s, source_ok);
	Hpcc__V1__Blob pre = HPCC__V1__BLOB__INIT;
	struct digest d;
	assert_int_equal(digest_bytes(filler, big, &d), 0);
	pre.digest = bin(d.b, DIGEST_LEN);
	pre.size = big;
	pre.data = bin(filler, big);
	Hpcc__V1__ExecuteRequest req = HPCC__V1__EXECUTE_REQUEST__INIT;
	req.token = bin(tok.data, tok.len);
	req.action = &s.action;
	req.preprocessed = &pre;
	struct buf msg, reply;
	buf_init(&msg, (size_t)8 << 20);
	pack(&req.base, &msg);
	assert_true(msg.len > MAX_MESSAGE);
	struct rpc_status st;
	call_raw(M_EXECUTE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL);
	buf_free(&reply);

	/* Probe and FindMissing with a 3 MiB token. */
	Hpcc__V1__ProbeRequest preq = HPCC__V1__PROBE_REQUEST__INIT;
	preq.token = bin(filler, big);
	preq.action_digest = bin(d.b, DIGEST_LEN);
	pack(&preq.base, &msg);
	call_raw(M_PROBE, msg.data, msg.len, &st, &reply);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL);
	buf_free(&reply);

	/* Upload: one chunk of 3 MiB. */
	Hpcc__V1__UploadChunk c;
	chunk_init(&c, &tok, &d, big, false, filler, big, true);
	pack(&c.base, &msg);
	upload_raw(&msg, 1, &st, &reply);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL);
	buf_free(&reply);

	/* Upload: many chunks of one blob, each under the message cap, together
	 * over max_blob. */
	struct buf parts[3];
	for (size_t i = 0; i < 3; i++) {
		buf_init(&parts[i], 0);
		chunk_init(&c, i == 0 ? &tok : NULL, i == 0 ? &d : NULL, 0, false, filler, (size_t)1 << 20, false);
		c.size = i == 0 ? MAX_BLOB : 0;
		pack(&c.base, &parts[i]);
	}
	upload_raw(parts, 3, &st, &reply);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL);
	buf_free(&reply);
	for (size_t i = 0; i < 3; i++)
		buf_free(&parts[i]);

	assert_int_equal(stored_files(), before);
	free(filler);
	buf_free(&msg);
	buf_free(&tok);

	/* The worker still serves afterwards. */
	issue("oversized", &tok);
	bool found = true;
	probe(&tok, &d, &st, &found, NULL, NULL);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_false(found);
	buf_free(&tok);
}

/* ---- 9. quotas ([limits], service_testutil.h gives three tenants some) --- */

/* n random bytes, none of them NUL (upload_texts takes strings), that
 * zstd cannot shrink much. */
static char *random_text(size_t n, uint32_t seed)
{
	char *t = malloc(n + 1);
	assert_non_null(t);
	uint32_t x = seed * 2654435761u + 7;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		t[i] = (char)(1 + x % 255);
	}
	t[n] = '\0';
	return t;
}

static size_t missing_of(const struct buf *tok, const char *text)
{
	struct digest d;
	struct rpc_status st;
	assert_int_equal(digest_bytes(text, strlen(text), &d), 0);
	size_t n = find_missing(tok, &d, 1, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	return n;
}

static void test_quota_upload(void **state)
{
	(void)state;
	struct buf tok, other;
	issue("quota-up", &tok);
	issue("quota-free", &other);
	char *t1 = random_text(3000, 1), *t2 = random_text(3000, 2);
	struct rpc_status st;
	uint32_t n = 0;
	int64_t first = now_ms();
	upload_texts(&tok, (const char *const *)&t1, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	/* 3000 + 3000 bytes (uncompressed) are over 4 KiB per 2 s: refused,
	 * with the limit, the tenant and the wait; nothing of it stored. */
	upload_texts(&tok, (const char *const *)&t2, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, "tenant quota-up: upload quota 4 KiB per 2 s reached; retry in ");
	assert_int_equal(missing_of(&tok, t2), 1);
	/* A blob the worker already holds costs nothing. */
	upload_texts(&tok, (const char *const *)&t1, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	/* Another tenant is unaffected. */
	upload_texts(&other, (const char *const *)&t2, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	/* Once the window has passed, the upload goes through. */
	while (now_ms() < first + 2100)
		usleep(50 * 1000);
	upload_texts(&tok, (const char *const *)&t2, 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(missing_of(&tok, t2), 0);
	free(t1);
	free(t2);
	buf_free(&tok);
	buf_free(&other);
}

static void test_quota_cas(void **state)
{
	(void)state;
	struct buf tok, other;
	issue("quota-cas", &tok);
	issue("quota-free", &other);
	char *t[3];
	for (int i = 0; i < 3; i++)
		t[i] = random_text(10000, 10 + (uint32_t)i);
	struct rpc_status st;
	uint32_t n = 0;
	/* Two fit under 24 KiB; everything is within [audit] retain, so
	 * nothing can be evicted for the third: refused, not stored. */
	upload_texts(&tok, (const char *const *)t, 2, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	size_t before = stored_files();
	upload_texts(&tok, (const char *const *)&t[2], 1, &st, &n);
	assert_status(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, "tenant quota-cas: CAS quota 24 KiB reached");
	assert_int_equal(stored_files(), before);
	assert_int_equal(missing_of(&tok, t[2]), 1);
	upload_texts(&other, (const char *const *)&t[2], 1, &st, &n);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	for (int i = 0; i < 3; i++)
		free(t[i]);
	buf_free(&tok);
	buf_free(&other);
}

/* Seconds of gcc at -O0: 4096 x 2 statements. */
static const char source_slow[] =
	"#define A(x) x x x x\n#define B(x) A(A(x))\n#define C(x) B(B(x))\n"
	"int slow(volatile int *p){ B(C(*p += 1; *p ^= 3;)) return *p; }\n";

struct exec_run {
	const struct buf *tok;
	struct spec *s;
	struct rpc_status st;
	bool done;
};

static void *exec_thread(void *arg)
{
	struct exec_run *x = arg;
	Hpcc__V1__ExecuteReply *rep = execute(x->tok, x->s, &x->st);
	if (rep)
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	__atomic_store_n(&x->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_quota_execs(void **state)
{
	(void)state;
	struct buf tok;
	issue("quota-ex", &tok);
	struct rpc_status st;
	/* A refused and a failed compile each give their one slot back. */
	struct spec missing;
	spec_init(&missing, "int quota_missing(void){return 1;}\n");
	for (int i = 0; i < 3; i++) {
		assert_null(execute(&tok, &missing, &st));
		assert_status(&st, GRPC_STATUS_FAILED_PRECONDITION, "missing");
	}
	struct spec bad;
	spec_init(&bad, source_bad);
	upload_spec(&tok, &bad);
	for (int i = 0; i < 2; i++) {
		Hpcc__V1__ExecuteReply *rep = execute(&tok, &bad, &st);
		assert_status(&st, GRPC_STATUS_OK, NULL);
		assert_int_not_equal(rep->result->exit_code, 0);
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	}

	/* Two compiles at once for a tenant allowed one: one of them is
	 * refused (whichever came second), the other runs; a hit needs no slot. */
	struct spec slow, fast;
	spec_init(&slow, source_slow);
	spec_init(&fast, "int quota_fast(void){return 2;}\n");
	upload_spec(&tok, &slow);
	upload_spec(&tok, &fast);
	struct exec_run a = { .tok = &tok, .s = &slow };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, exec_thread, &a), 0);
	usleep(300 * 1000);
	bool a_done_before = __atomic_load_n(&a.done, __ATOMIC_SEQ_CST);
	Hpcc__V1__ExecuteReply *rep = execute(&tok, &fast, &st);
	pthread_join(th, NULL);
	if (rep)
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	if (!a_done_before) {
		bool b_refused = st.code == GRPC_STATUS_RESOURCE_EXHAUSTED;
		bool a_refused = a.st.code == GRPC_STATUS_RESOURCE_EXHAUSTED;
		assert_true(a_refused != b_refused);
		assert_status(b_refused ? &st : &a.st, GRPC_STATUS_RESOURCE_EXHAUSTED,
			      "tenant quota-ex: exec quota 1 compiles at once reached");
		assert_status(b_refused ? &a.st : &st, GRPC_STATUS_OK, NULL);
	}
	/* The slot is free again: both run (or hit) now. */
	rep = execute(&tok, &fast, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	rep = execute(&tok, &slow, &st);
	assert_status(&st, GRPC_STATUS_OK, NULL);
	assert_int_equal(rep->result->exit_code, 0);
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	buf_free(&tok);
}

int main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, test_teardown)
	const struct CMUnitTest tests[] = {
		T(test_happy_path),
		T(test_tokens),
		T(test_tenant_isolation),
		T(test_manifest_paths),
		T(test_unknown_fields),
		T(test_plain_arguments_stay_in_staging),
		T(test_blobs),
		T(test_digest_lengths),
		T(test_preprocessed_mode),
		T(test_execute_missing_blobs),
		T(test_compile_error_not_cached),
		T(test_audit_hits_rows_reproduce),
		T(test_oversized_request),
		T(test_audit_rows),
		T(test_quota_upload),
		T(test_quota_cas),
		T(test_quota_execs),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
