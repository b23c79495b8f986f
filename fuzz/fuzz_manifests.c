/*
 * Stored entries read back from a disk or an S3 bucket, which an operator
 * may share and an attacker may have written to. The first byte picks the
 * format; the rest is the stored bytes:
 *   0  a worker's DirectManifest (worker.proto), as the Probe handler
 *      decodes it and re-encodes each candidate into its reply;
 *   1  a worker's ActionResult (remote.proto), its blobs through
 *      blob_unpack with a cap, as a client does with a result;
 *   2  the local cache's Manifest (local.proto), walked as results.c does;
 *   3  the local cache's ResultEntry, walked as results.c serves it;
 *   4  an S3 tier object (s3obj_decode, src/common/s3obj.c), checked
 *      against a fixed tenant and key and against those its own header
 *      names, then decoded as its kind's message; the input as text also
 *      goes through s3obj_parse_key;
 *   5  a local store file (store_get, src/cache/store.c: header, zstd,
 *      digest), then decoded as a ResultEntry.
 */
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action.h"
#include "buf.h"
#include "digest.h"
#include "error.h"
#include "fs.h"
#include "local.pb-c.h"
#include "s3obj.h"
#include "store.h"
#include "worker.pb-c.h"

#define FUZZ_PAYLOAD_MAX ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void direct_manifest(const uint8_t *p, size_t n)
{
	Hpcc__V1__DirectManifest *m = hpcc__v1__direct_manifest__unpack(NULL, n, p);
	if (!m)
		return;
	for (size_t i = 0; i < m->n_candidates; i++) {
		const Hpcc__V1__DirectCandidate *c = m->candidates[i];
		size_t len = hpcc__v1__direct_candidate__get_packed_size(c);
		uint8_t *packed = malloc(len ? len : 1);
		if (packed) {
			if (hpcc__v1__direct_candidate__pack(c, packed) != len)
				abort();
			free(packed);
		}
		for (size_t j = 0; j < c->n_inputs; j++)
			(void)strlen(c->inputs[j]->path);
	}
	hpcc__v1__direct_manifest__free_unpacked(m, NULL);
}

static void check_blob(const Hpcc__V1__Blob *b)
{
	if (!b)
		return;
	_cleanup_buf_ struct buf plain;
	buf_init(&plain, FUZZ_PAYLOAD_MAX + 1);
	struct error err = { 0 };
	(void)blob_unpack(b, FUZZ_PAYLOAD_MAX, &plain, &err);
}

static void action_result(const uint8_t *p, size_t n)
{
	Hpcc__V1__ActionResult *ar = hpcc__v1__action_result__unpack(NULL, n, p);
	if (!ar)
		return;
	(void)action_canonical(&ar->base, n);
	check_blob(ar->stdout_data);
	check_blob(ar->stderr_data);
	for (size_t i = 0; i < ar->n_outputs; i++)
		check_blob(ar->outputs[i]->blob);
	for (size_t i = 0; i < ar->n_dependencies; i++)
		(void)strlen(ar->dependencies[i]->path);
	hpcc__v1__action_result__free_unpacked(ar, NULL);
}

static void local_manifest(const uint8_t *p, size_t n)
{
	Hpcc__Local__Manifest *m = hpcc__local__manifest__unpack(NULL, n, p);
	if (!m)
		return;
	for (size_t i = m->n_candidates; i-- > 0;) {
		const Hpcc__Local__ManifestCandidate *c = m->candidates[i];
		if (c->action_digest.len != DIGEST_LEN)
			continue;
		for (size_t j = 0; j < c->n_inputs; j++) {
			const Hpcc__Local__ManifestInput *in = c->inputs[j];
			if (in->digest.len == DIGEST_LEN) {
				struct digest d;
				memcpy(d.b, in->digest.data, DIGEST_LEN);
				char hex[DIGEST_HEX_LEN + 1];
				digest_to_hex(&d, hex);
			}
			(void)strlen(in->path);
		}
	}
	hpcc__local__manifest__free_unpacked(m, NULL);
}

static void result_entry(const uint8_t *p, size_t n)
{
	Hpcc__Local__ResultEntry *e = hpcc__local__result_entry__unpack(NULL, n, p);
	if (!e)
		return;
	_cleanup_buf_ struct buf out;
	buf_init(&out, FUZZ_PAYLOAD_MAX);
	for (size_t i = 0; i < e->n_files; i++)
		(void)buf_append(&out, e->files[i]->data.data, e->files[i]->data.len);
	for (size_t i = 0; i < e->n_deps; i++)
		(void)strlen(e->deps[i]->path);
	(void)buf_append(&out, e->stdout_data.data, e->stdout_data.len);
	(void)buf_append(&out, e->stderr_data.data, e->stderr_data.len);
	hpcc__local__result_entry__free_unpacked(e, NULL);
}

static void s3_payload(enum s3obj_kind kind, const struct buf *b)
{
	if (kind == S3OBJ_AC)
		action_result((const uint8_t *)b->data, b->len);
	else if (kind == S3OBJ_DM)
		direct_manifest((const uint8_t *)b->data, b->len);
}

static void s3_object(const uint8_t *p, size_t n)
{
	static const char *const kinds = "\1\2\3";
	struct digest key;
	(void)digest_bytes("key", 3, &key);
	for (int k = 0; k < 3; k++) {
		_cleanup_buf_ struct buf out;
		buf_init(&out, FUZZ_PAYLOAD_MAX + 1);
		if (s3obj_decode((enum s3obj_kind)kinds[k], "t1", &key, p, n, FUZZ_PAYLOAD_MAX, &out) == 0)
			s3_payload((enum s3obj_kind)kinds[k], &out);
	}
	/* What the object's own header names, as a lister that found it
	 * under that key would expect. */
	if (n >= 10 && p[9] <= S3OBJ_TENANT_MAX && n >= 10 + (size_t)p[9] + DIGEST_LEN) {
		char tenant[S3OBJ_TENANT_MAX + 1];
		memcpy(tenant, p + 10, p[9]);
		tenant[p[9]] = 0;
		memcpy(key.b, p + 10 + p[9], DIGEST_LEN);
		_cleanup_buf_ struct buf out;
		buf_init(&out, FUZZ_PAYLOAD_MAX + 1);
		if (s3obj_decode((enum s3obj_kind)p[8], tenant, &key, p, n, FUZZ_PAYLOAD_MAX, &out) == 0)
			s3_payload((enum s3obj_kind)p[8], &out);
	}
	char text[S3OBJ_KEY_MAX + 8];
	size_t tn = n < sizeof(text) - 1 ? n : sizeof(text) - 1;
	memcpy(text, p, tn);
	text[tn] = 0;
	enum s3obj_kind kind;
	char tenant[S3OBJ_TENANT_MAX + 1];
	if (s3obj_parse_key(text, &kind, tenant, &key) == 0) {
		char again[S3OBJ_KEY_MAX];
		if (s3obj_key(kind, tenant, &key, again) < 0 || strcmp(again, text) != 0)
			abort();
	}
}

static char store_dir[64];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

static void remove_store(void)
{
	(void)nftw(store_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void store_file(const uint8_t *p, size_t n)
{
	static struct store s;
	if (!store_dir[0]) {
		snprintf(store_dir, sizeof(store_dir), "/tmp/fuzz-store-%d", (int)getpid());
		if (store_init(&s, store_dir, 1 << 30, 1) < 0)
			abort();
		atexit(remove_store);
	}
	struct digest key;
	(void)digest_bytes("key", 3, &key);
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&key, hex);
	char path[160];
	snprintf(path, sizeof(path), "%s/%.2s", s.store_dir, hex);
	(void)fs_mkdir_p(path, 0700);
	snprintf(path, sizeof(path), "%s/%.2s/%s.%c", s.store_dir, hex, hex + 2, (char)STORE_RESULT);
	if (fs_write_atomic(path, p, n, 0600, false) < 0)
		return;
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, FUZZ_PAYLOAD_MAX + 1);
	struct stats delta = { 0 };
	if (store_get(&s, STORE_RESULT, &key, FUZZ_PAYLOAD_MAX, &payload, &delta) == 0)
		result_entry((const uint8_t *)payload.data, payload.len);
	(void)unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 6) {
	case 0:
		direct_manifest(p, n);
		break;
	case 1:
		action_result(p, n);
		break;
	case 2:
		local_manifest(p, n);
		break;
	case 3:
		result_entry(p, n);
		break;
	case 4:
		s3_object(p, n);
		break;
	default:
		store_file(p, n);
		break;
	}
	return 0;
}
