/*
 * Shared-tier object keys and bytes (see s3obj.h).
 */
#include "s3obj.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "compress.h"
#include "token.h"

const char *s3obj_kind_name(enum s3obj_kind kind)
{
	switch (kind) {
	case S3OBJ_AC:
		return "ac";
	case S3OBJ_CAS:
		return "cas";
	case S3OBJ_DM:
		return "dm";
	}
	return NULL;
}

bool s3obj_tenant_ok(const char *t) { return t && token_name_valid(t); }

int s3obj_key(enum s3obj_kind kind, const char *tenant, const struct digest *key, char out[S3OBJ_KEY_MAX])
{
	const char *k = s3obj_kind_name(kind);
	if (!k || !s3obj_tenant_ok(tenant))
		return -EINVAL;
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(key, hex);
	int n = snprintf(out, S3OBJ_KEY_MAX, "v1/%s/%s/%.2s/%s", tenant, k, hex, hex);
	return n > 0 && n < S3OBJ_KEY_MAX ? 0 : -EINVAL;
}

int s3obj_tenant_prefix(const char *tenant, char out[S3OBJ_KEY_MAX])
{
	if (!s3obj_tenant_ok(tenant))
		return -EINVAL;
	snprintf(out, S3OBJ_KEY_MAX, "v1/%s/", tenant);
	return 0;
}

int s3obj_parse_key(const char *s, enum s3obj_kind *ret_kind, char *tenant, struct digest *ret_key)
{
	if (!s || strncmp(s, "v1/", 3) != 0)
		return -EINVAL;
	s += 3;
	const char *slash = strchr(s, '/');
	if (!slash || slash - s > S3OBJ_TENANT_MAX)
		return -EINVAL;
	char t[S3OBJ_TENANT_MAX + 1];
	memcpy(t, s, (size_t)(slash - s));
	t[slash - s] = '\0';
	if (!s3obj_tenant_ok(t))
		return -EINVAL;
	s = slash + 1;
	enum s3obj_kind kind;
	if (strncmp(s, "ac/", 3) == 0)
		kind = S3OBJ_AC, s += 3;
	else if (strncmp(s, "cas/", 4) == 0)
		kind = S3OBJ_CAS, s += 4;
	else if (strncmp(s, "dm/", 3) == 0)
		kind = S3OBJ_DM, s += 3;
	else
		return -EINVAL;
	if (strlen(s) != 3 + DIGEST_HEX_LEN || s[2] != '/' || strncmp(s, s + 3, 2) != 0)
		return -EINVAL;
	char full[DIGEST_STR_LEN + 1];
	snprintf(full, sizeof(full), "%s%s", DIGEST_PREFIX, s + 3);
	struct digest d;
	if (digest_parse(full, &d) < 0)
		return -EINVAL;
	/* Only the canonical (lower-case) spelling is ours. */
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&d, hex);
	if (strcmp(hex, s + 3) != 0)
		return -EINVAL;
	if (ret_kind)
		*ret_kind = kind;
	if (tenant)
		memcpy(tenant, t, strlen(t) + 1);
	if (ret_key)
		*ret_key = d;
	return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The header for (kind, tenant, key, content digest, size) into h; its length. */
static size_t header(uint8_t *h, enum s3obj_kind kind, const char *tenant, const struct digest *key,
		     const struct digest *content, uint64_t size)
{
	size_t tl = strlen(tenant), o = 0;
	memcpy(h, S3OBJ_MAGIC, 8);
	o = 8;
	h[o++] = (uint8_t)kind;
	h[o++] = (uint8_t)tl;
	memcpy(h + o, tenant, tl);
	o += tl;
	memcpy(h + o, key->b, DIGEST_LEN);
	o += DIGEST_LEN;
	memcpy(h + o, content->b, DIGEST_LEN);
	o += DIGEST_LEN;
	put_be64(h + o, size);
	return o + 8;
}

int s3obj_encode(enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data, size_t n,
		 int level, struct buf *out)
{
	buf_reset(out);
	if (!s3obj_kind_name(kind) || !s3obj_tenant_ok(tenant) || (n && !data))
		return -EINVAL;
	struct digest content;
	int r = digest_bytes(data, n, &content);
	if (r < 0)
		return r;
	if (kind == S3OBJ_CAS && !digest_equal(&content, key))
		return -EBADMSG;
	uint8_t h[S3OBJ_HEADER_MAX];
	size_t hl = header(h, kind, tenant, key, &content, n);
	if ((r = buf_append(out, h, hl)) < 0 || (r = compress_zstd(data, n, level, out)) < 0) {
		buf_reset(out);
		return r < 0 ? r : -ENOMEM;
	}
	return 0;
}

int s3obj_decode(enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *obj, size_t n,
		 size_t max, struct buf *out)
{
	buf_reset(out);
	if (!s3obj_kind_name(kind) || !s3obj_tenant_ok(tenant) || (n && !obj))
		return -EINVAL;
	const uint8_t *p = obj;
	size_t tl = strlen(tenant), hl = 8 + 1 + 1 + tl + 2 * DIGEST_LEN + 8;
	/* What the header must say, but for the content digest and size,
	 * which come from the object and are checked against its bytes. */
	if (n < hl || memcmp(p, S3OBJ_MAGIC, 8) != 0 || p[8] != (uint8_t)kind || p[9] != tl ||
	    memcmp(p + 10, tenant, tl) != 0 || memcmp(p + 10 + tl, key->b, DIGEST_LEN) != 0)
		return -EBADMSG;
	struct digest content, check;
	memcpy(content.b, p + 10 + tl + DIGEST_LEN, DIGEST_LEN);
	uint64_t size = get_be64(p + 10 + tl + 2 * DIGEST_LEN);
	if (kind == S3OBJ_CAS && !digest_equal(&content, key))
		return -EBADMSG;
	size_t room = out->max ? out->max : BUF_DEFAULT_MAX;
	if (size > max || size > room)
		return -EFBIG;
	int r = decompress_zstd(p + hl, n - hl, (size_t)size, out);
	if (r < 0) {
		buf_reset(out);
		/* More or other bytes than the header says: damage. Anything
		 * else (memory) is the reader's problem, not the object's. */
		return r == -EFBIG || r == -EBADMSG ? -EBADMSG : r;
	}
	if (out->len != size || (r = digest_bytes(out->data, out->len, &check)) < 0 || !digest_equal(&check, &content)) {
		buf_reset(out);
		return r < 0 ? r : -EBADMSG;
	}
	return 0;
}
