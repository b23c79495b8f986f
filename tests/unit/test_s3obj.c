/*
 * Unit tests for the shared tier's object keys and bytes (src/common/s3obj.c):
 * keys round-trip and nothing else parses; an object decodes only for the
 * kind, tenant and key it was made for; every kind of damage is refused;
 * the plain size is capped before anything is decompressed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "s3obj.h"

static struct digest digest_of(const char *s)
{
	struct digest d;
	assert_int_equal(digest_bytes(s, strlen(s), &d), 0);
	return d;
}

static void test_keys(void **state)
{
	(void)state;
	struct digest d = digest_of("hello");
	char key[S3OBJ_KEY_MAX], hex[DIGEST_HEX_LEN + 1], want[256];
	digest_to_hex(&d, hex);
	assert_int_equal(s3obj_key(S3OBJ_AC, "alice", &d, key), 0);
	snprintf(want, sizeof(want), "v1/alice/ac/%.2s/%s", hex, hex);
	assert_string_equal(key, want);
	enum s3obj_kind kind;
	char tenant[S3OBJ_TENANT_MAX + 1];
	struct digest back;
	assert_int_equal(s3obj_parse_key(key, &kind, tenant, &back), 0);
	assert_int_equal(kind, S3OBJ_AC);
	assert_string_equal(tenant, "alice");
	assert_true(digest_equal(&back, &d));
	assert_int_equal(s3obj_key(S3OBJ_CAS, "t-1.x_y", &d, key), 0);
	assert_int_equal(s3obj_parse_key(key, &kind, tenant, &back), 0);
	assert_int_equal(kind, S3OBJ_CAS);
	assert_int_equal(s3obj_key(S3OBJ_DM, "b", &d, key), 0);
	assert_int_equal(s3obj_parse_key(key, &kind, NULL, NULL), 0);
	assert_int_equal(kind, S3OBJ_DM);
	char prefix[S3OBJ_KEY_MAX];
	assert_int_equal(s3obj_tenant_prefix("alice", prefix), 0);
	assert_string_equal(prefix, "v1/alice/");

	/* Tenants that could escape their prefix or be confused. */
	const char *bad_tenants[] = { "", ".", "..", ".hidden", "a/b", "a b", "a\nb",
				      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 65 */ };
	for (size_t i = 0; i < sizeof(bad_tenants) / sizeof(*bad_tenants); i++)
		assert_int_equal(s3obj_key(S3OBJ_AC, bad_tenants[i], &d, key), -EINVAL);
	assert_int_equal(s3obj_key((enum s3obj_kind)9, "alice", &d, key), -EINVAL);

	/* Keys that are not ours. */
	char upper[256];
	snprintf(upper, sizeof(upper), "v1/alice/ac/%.2s/%s", hex, hex);
	for (char *p = upper + 15; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	char wrong_shard[256];
	snprintf(wrong_shard, sizeof(wrong_shard), "v1/alice/ac/zz/%s", hex);
	char other_kind[256];
	snprintf(other_kind, sizeof(other_kind), "v1/alice/xx/%.2s/%s", hex, hex);
	char v2[256];
	snprintf(v2, sizeof(v2), "v2/alice/ac/%.2s/%s", hex, hex);
	char short_hex[256];
	snprintf(short_hex, sizeof(short_hex), "v1/alice/ac/%.2s/%.63s", hex, hex);
	char dot_tenant[256];
	snprintf(dot_tenant, sizeof(dot_tenant), "v1/../ac/%.2s/%s", hex, hex);
	const char *bad_keys[] = { "", "v1/", "v1/alice/", "README", upper, wrong_shard, other_kind, v2, short_hex,
				   dot_tenant };
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(*bad_keys); i++)
		assert_int_equal(s3obj_parse_key(bad_keys[i], &kind, tenant, &back), -EINVAL);
}

static void test_round_trip(void **state)
{
	(void)state;
	struct digest key = digest_of("action");
	const char *plain = "an action result, some bytes of it, some bytes of it, some bytes of it";
	struct buf obj, out;
	buf_init(&obj, 1 << 20);
	buf_init(&out, 1 << 20);
	assert_int_equal(s3obj_encode(S3OBJ_AC, "alice", &key, plain, strlen(plain), 3, &obj), 0);
	assert_int_equal(s3obj_decode(S3OBJ_AC, "alice", &key, obj.data, obj.len, 1024, &out), 0);
	assert_int_equal(out.len, strlen(plain));
	assert_memory_equal(out.data, plain, out.len);

	/* Empty bytes are an object too. */
	assert_int_equal(s3obj_encode(S3OBJ_DM, "alice", &key, "", 0, 1, &obj), 0);
	assert_int_equal(s3obj_decode(S3OBJ_DM, "alice", &key, obj.data, obj.len, 0, &out), 0);
	assert_int_equal(out.len, 0);

	/* A blob is named by its own digest. */
	struct digest blob = digest_of(plain);
	assert_int_equal(s3obj_encode(S3OBJ_CAS, "alice", &key, plain, strlen(plain), 1, &obj), -EBADMSG);
	assert_int_equal(s3obj_encode(S3OBJ_CAS, "alice", &blob, plain, strlen(plain), 1, &obj), 0);
	assert_int_equal(s3obj_decode(S3OBJ_CAS, "alice", &blob, obj.data, obj.len, 1024, &out), 0);
	buf_free(&obj);
	buf_free(&out);
}

/* The same object asked for as anything else, or damaged anywhere, is refused. */
static void test_refusals(void **state)
{
	(void)state;
	struct digest key = digest_of("action"), other = digest_of("other");
	char plain[4096];
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (char)('a' + i % 7);
	struct buf obj, out;
	buf_init(&obj, 1 << 20);
	buf_init(&out, 1 << 20);
	assert_int_equal(s3obj_encode(S3OBJ_AC, "alice", &key, plain, sizeof(plain), 3, &obj), 0);
	assert_int_equal(s3obj_decode(S3OBJ_AC, "bob", &key, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	assert_int_equal(s3obj_decode(S3OBJ_AC, "alic", &key, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	assert_int_equal(s3obj_decode(S3OBJ_AC, "alice", &other, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	assert_int_equal(s3obj_decode(S3OBJ_DM, "alice", &key, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	assert_int_equal(s3obj_decode(S3OBJ_CAS, "alice", &key, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	/* The size cap applies before decompressing. */
	assert_int_equal(s3obj_decode(S3OBJ_AC, "alice", &key, obj.data, obj.len, sizeof(plain) - 1, &out), -EFBIG);
	assert_int_equal(out.len, 0);
	/* Every truncation, and a flipped bit at every offset: refused, or (where
	 * the bit does not matter) decoded to exactly the bytes that were stored. */
	for (size_t n = 0; n < obj.len; n++)
		assert_int_equal(s3obj_decode(S3OBJ_AC, "alice", &key, obj.data, n, 1 << 20, &out), -EBADMSG);
	for (size_t i = 0; i < obj.len; i++) {
		obj.data[i] ^= 0x10;
		int r = s3obj_decode(S3OBJ_AC, "alice", &key, obj.data, obj.len, 1 << 20, &out);
		/* A bit that zstd ignores (a window size, say) changes nothing
		 * that is served: whatever decodes is the checked content. */
		if (r == 0) {
			assert_int_equal(out.len, sizeof(plain));
			assert_memory_equal(out.data, plain, sizeof(plain));
		} else {
			assert_true(r == -EBADMSG || r == -EFBIG);
			assert_int_equal(out.len, 0);
		}
		obj.data[i] ^= 0x10;
	}
	/* Trailing bytes. */
	buf_append(&obj, "x", 1);
	assert_int_equal(s3obj_decode(S3OBJ_AC, "alice", &key, obj.data, obj.len, 1 << 20, &out), -EBADMSG);
	buf_free(&obj);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
