/*
 * The worker service's requests (src/proto/worker.proto), as a client
 * sends them: the first byte picks the message type, the rest is its
 * protobuf encoding. Each goes through what src/worker/service.c runs on
 * it before touching a disk or the network: the capped, canonical decode
 * (action_canonical); the routing token through sched_client_verify with
 * a fixed key (as sent, and with its claims re-signed so that the claims
 * checks are reached) and token_decode_text; for actions action_check,
 * action_digest, action_argv, action_output_paths, action_rooted_path and
 * action_direct_key; inline blobs through blob_unpack with a cap.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "action.h"
#include "buf.h"
#include "digest.h"
#include "error.h"
#include "strv.h"
#include "sched_client.h"
#include "token.h"
#include "token.pb-c.h"
#include "worker.pb-c.h"

#define FUZZ_BLOB_MAX ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The worker's verifying key, and its private half to re-sign claims
 * with: the claims parser is reached only behind a valid signature. */
static struct token_key *fuzz_key;
static EVP_PKEY *fuzz_pkey;

static bool setup_key(void)
{
	if (fuzz_key)
		return true;
	char *pem = NULL;
	size_t pem_len = 0;
	BIO *bio = NULL;
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	bool ok = pkey && (bio = BIO_new(BIO_s_mem())) && PEM_write_bio_PUBKEY(bio, pkey) == 1;
	if (ok) {
		pem_len = (size_t)BIO_get_mem_data(bio, &pem);
		ok = token_key_from_public_pem(pem, pem_len, &fuzz_key) == 0;
	}
	BIO_free(bio);
	if (!ok) {
		EVP_PKEY_free(pkey);
		abort();
	}
	fuzz_pkey = pkey;
	return true;
}

static void verify(const void *tok, size_t n)
{
	struct token_expect expect = { .worker_id = "w1" };
	struct token_claims claims;
	struct error err = { 0 };
	(void)sched_client_verify(NULL, fuzz_key, tok, n, &expect, 1700000000, &claims, &err);
}

/* authorize() in service.c: a size cap, then the key hint, the
 * signature and the claims. The token as sent, then (if it is a
 * RoutingToken) its claims signed with the worker's key. */
static void check_token(const ProtobufCBinaryData *tok)
{
	if (tok->len == 0 || tok->len > TOKEN_MAX_SIZE || !setup_key())
		return;
	verify(tok->data, tok->len);
	Hpcc__V1__RoutingToken *t = hpcc__v1__routing_token__unpack(NULL, tok->len, tok->data);
	if (t && t->claims.len > 0 && t->claims.len <= TOKEN_MAX_SIZE) {
		static const char context[] = TOKEN_SIGNING_CONTEXT;
		uint8_t msg[sizeof(context) + TOKEN_MAX_SIZE], sig[TOKEN_SIGNATURE_SIZE];
		memcpy(msg, context, sizeof(context));
		memcpy(msg + sizeof(context), t->claims.data, t->claims.len);
		size_t sig_len = sizeof(sig);
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (ctx && EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, fuzz_pkey, NULL) == 1 &&
		    EVP_DigestSign(ctx, sig, &sig_len, msg, sizeof(context) + t->claims.len) == 1) {
			ProtobufCBinaryData sent = t->signature;
			t->signature.data = sig;
			t->signature.len = sig_len;
			uint8_t again[2 * TOKEN_MAX_SIZE + 128];
			size_t n = hpcc__v1__routing_token__get_packed_size(t);
			if (n <= sizeof(again)) {
				hpcc__v1__routing_token__pack(t, again);
				verify(again, n);
			}
			t->signature = sent;
		}
		EVP_MD_CTX_free(ctx);
	}
	if (t)
		hpcc__v1__routing_token__free_unpacked(t, NULL);
	/* The text form, as a client reads a token file. */
	char text[TOKEN_TEXT_MAX + 1];
	size_t n = tok->len < TOKEN_TEXT_MAX ? tok->len : TOKEN_TEXT_MAX;
	memcpy(text, tok->data, n);
	text[n] = 0;
	_cleanup_buf_ struct buf raw;
	buf_init(&raw, TOKEN_MAX_SIZE);
	(void)token_decode_text(text, &raw);
}

static void check_blob(const Hpcc__V1__Blob *b)
{
	_cleanup_buf_ struct buf plain;
	buf_init(&plain, FUZZ_BLOB_MAX + 1);
	struct error err = { 0 };
	(void)blob_unpack(b, FUZZ_BLOB_MAX, &plain, &err);
}

/* run_action and what follows it in service.c, up to staging. */
static void check_action(const Hpcc__V1__ExecuteRequest *req)
{
	const Hpcc__V1__Action *a = req->action;
	struct error err = { 0 };
	struct digest d;
	if (!a || action_check(a, &err) < 0 || action_digest(a, &d) < 0)
		return;
	const Hpcc__V1__Command *c = a->command;
	bool preprocessed = a->mode == HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	_cleanup_strv_ struct strv argv = { 0 };
	(void)action_argv(c, preprocessed, "/staging/root", &argv);
	_cleanup_strv_ struct strv argv_rel = { 0 };
	(void)action_argv(c, preprocessed, ".", &argv_rel);
	_cleanup_strv_ struct strv outs = { 0 };
	(void)action_output_paths(c, &outs);
	for (size_t i = 0; i < c->n_args; i++) {
		_cleanup_free_ char *s = NULL;
		(void)action_arg_string(c->args[i], "/staging/root", &s);
	}
	_cleanup_free_ char *source = action_rooted_path(c, c->source);
	for (size_t i = 0; source && i < a->n_inputs; i++)
		if (strcmp(a->inputs[i]->path, source) == 0) {
			struct digest sd, key;
			memcpy(sd.b, a->inputs[i]->digest.data, DIGEST_LEN);
			(void)action_direct_key(a, source, &sd, &key);
			break;
		}
	if (req->preprocessed)
		check_blob(req->preprocessed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ProtobufCMessageDescriptor *const descs[] = {
		&hpcc__v1__probe_request__descriptor,   &hpcc__v1__find_missing_request__descriptor,
		&hpcc__v1__upload_chunk__descriptor,    &hpcc__v1__execute_request__descriptor,
		&hpcc__v1__audit_rows_request__descriptor, &hpcc__v1__reproduce_request__descriptor,
	};
	if (size < 1)
		return 0;
	size_t which = data[0] % (sizeof(descs) / sizeof(descs[0]));
	const ProtobufCMessageDescriptor *desc = descs[which];
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, size - 1, data + 1);
	if (!m)
		return 0;
	if (!action_canonical(m, size - 1)) {
		protobuf_c_message_free_unpacked(m, NULL);
		return 0;
	}
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, "token");
	check_token((const ProtobufCBinaryData *)((const char *)m + f->offset));
	if (desc == &hpcc__v1__execute_request__descriptor)
		check_action((const Hpcc__V1__ExecuteRequest *)m);
	else if (desc == &hpcc__v1__upload_chunk__descriptor) {
		/* One chunk as a whole blob: the same checks the assembled one gets. */
		const Hpcc__V1__UploadChunk *ch = (const Hpcc__V1__UploadChunk *)m;
		Hpcc__V1__Blob b = HPCC__V1__BLOB__INIT;
		b.digest = ch->digest;
		b.size = ch->size;
		b.zstd = ch->zstd;
		b.data = ch->data;
		check_blob(&b);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
