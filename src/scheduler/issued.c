/* Recently signed routing tokens (see issued.h): one slot per key hash, newest wins. */
#include "issued.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

struct slot {
	uint8_t key[DIGEST_LEN];
	int64_t issued_at, expires_at;
	uint16_t len;                    /* 0: empty */
	uint8_t token[TOKEN_MAX_SIZE];
};

struct issued_cache {
	pthread_mutex_t lock;
	struct slot *slots;
};

int issued_new(struct issued_cache **ret)
{
	struct issued_cache *c = calloc(1, sizeof(*c));
	if (!c || !(c->slots = calloc(ISSUED_SLOTS, sizeof(*c->slots)))) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

void issued_free(struct issued_cache *c)
{
	if (!c)
		return;
	OPENSSL_cleanse(c->slots, ISSUED_SLOTS * sizeof(*c->slots));
	free(c->slots);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int issued_key(const char *tenant, const char *image, const char *worker_id, const char *access_token,
	       struct digest *ret)
{
	/* Length-prefixed, so no two different tuples make the same input. */
	_cleanup_buf_ struct buf b;
	buf_init(&b, (size_t)1 << 20);
	int r;
	if ((r = buf_append_lp_str(&b, tenant)) < 0 || (r = buf_append_lp_str(&b, image)) < 0 ||
	    (r = buf_append_lp_str(&b, worker_id)) < 0 || (r = buf_append_lp_str(&b, access_token)) < 0)
		return r;
	r = digest_bytes(b.data, b.len, ret);
	OPENSSL_cleanse(b.data, b.len);
	return r;
}

static struct slot *slot_of(struct issued_cache *c, const struct digest *key)
{
	uint32_t h = (uint32_t)key->b[0] | (uint32_t)key->b[1] << 8 | (uint32_t)key->b[2] << 16;
	return &c->slots[h % ISSUED_SLOTS];
}

int issued_get(struct issued_cache *c, const struct digest *key, int64_t now, int64_t max_expires,
	       struct buf *ret_token, int64_t *ret_expires)
{
	struct slot *s = slot_of(c, key);
	int found = 0;
	pthread_mutex_lock(&c->lock);
	if (s->len && CRYPTO_memcmp(s->key, key->b, DIGEST_LEN) == 0 && s->issued_at <= now &&
	    now - s->issued_at <= ISSUED_REUSE_S && s->expires_at > now && s->expires_at <= max_expires &&
	    buf_append(ret_token, s->token, s->len) == 0) {
		*ret_expires = s->expires_at;
		found = 1;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

void issued_put(struct issued_cache *c, const struct digest *key, const void *token, size_t n, int64_t issued_at,
		int64_t expires_at)
{
	if (n == 0 || n > TOKEN_MAX_SIZE)
		return;
	struct slot *s = slot_of(c, key);
	pthread_mutex_lock(&c->lock);
	memcpy(s->key, key->b, DIGEST_LEN);
	memcpy(s->token, token, n);
	s->len = (uint16_t)n;
	s->issued_at = issued_at;
	s->expires_at = expires_at;
	pthread_mutex_unlock(&c->lock);
}
