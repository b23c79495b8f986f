/*
 * SHA-256 through OpenSSL's EVP interface. The algorithm object is fetched
 * once, since an implicit fetch per hash costs measurable time on the
 * wrapper's hit path. digest_file also scans for the time macros that make a
 * compile irreproducible, in the same pass, so no file is read twice.
 */
#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

int hasher_init(struct hasher *h)
{
	pthread_once(&sha256_once, sha256_fetch);
	h->ctx = NULL;
	if (!sha256_md)
		return -ENOSYS;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -EIO;
	}
	h->ctx = ctx;
	return 0;
}

int hasher_update(struct hasher *h, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	return EVP_DigestUpdate(h->ctx, data, n) == 1 ? 0 : -EIO;
}

int hasher_final(struct hasher *h, struct digest *ret)
{
	struct digest d;
	unsigned int len = 0;
	if (EVP_DigestFinal_ex(h->ctx, d.b, &len) != 1 || len != DIGEST_LEN)
		return -EIO;
	*ret = d;
	return 0;
}

void hasher_free(struct hasher *h)
{
	if (h && h->ctx) {
		EVP_MD_CTX_free(h->ctx);
		h->ctx = NULL;
	}
}

int digest_bytes(const void *data, size_t n, struct digest *ret)
{
	_cleanup_hasher_ struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	r = hasher_update(&h, data, n);
	return r < 0 ? r : hasher_final(&h, ret);
}

/* Sets *time for __DATE__ or __TIME__ and *stamp for __TIMESTAMP__ in p. */
static void find_time_macros(const char *p, size_t n, bool *time, bool *stamp)
{
	for (const char *q = p; (q = memmem(q, n - (size_t)(q - p), "__", 2)); q++) {
		size_t left = n - (size_t)(q - p);
		if (left >= 8 && (memcmp(q, "__DATE__", 8) == 0 || memcmp(q, "__TIME__", 8) == 0))
			*time = true;
		if (left >= 13 && memcmp(q, "__TIMESTAMP__", 13) == 0)
			*stamp = true;
		if (left < 3)
			break;
	}
}

int digest_fd(int fd, uint64_t max, struct digest *ret, struct file_scan *scan)
{
	_cleanup_hasher_ struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	/* The window keeps the tail of the previous chunk so that a macro name
	 * split across two reads is still found. */
	enum { TAIL = 16, CHUNK = 64 * 1024 };
	_cleanup_free_ char *win = malloc(TAIL + CHUNK);
	if (!win)
		return -ENOMEM;
	size_t kept = 0;
	uint64_t total = 0;
	bool time = false, stamp = false;
	for (;;) {
		ssize_t n = read(fd, win + kept, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > max)
			return -EFBIG;
		r = hasher_update(&h, win + kept, (size_t)n);
		if (r < 0)
			return r;
		size_t have = kept + (size_t)n;
		if (scan && !(time && stamp))
			find_time_macros(win, have, &time, &stamp);
		kept = have < TAIL ? have : TAIL;
		memmove(win, win + have - kept, kept);
	}
	struct digest d;
	r = hasher_final(&h, &d);
	if (r < 0)
		return r;
	*ret = d;
	if (scan) {
		scan->time_macros = time;
		scan->timestamp_macro = stamp;
		scan->size = total;
	}
	return 0;
}

int digest_file(const char *path, uint64_t max, struct digest *ret, struct file_scan *scan)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return negative_errno();
	struct stat st;
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode))
		return -EISDIR;
	return digest_fd(fd, max, ret, scan);
}

void digest_to_hex(const struct digest *d, char *hex)
{
	static const char x[] = "0123456789abcdef";
	for (int i = 0; i < DIGEST_LEN; i++) {
		hex[2 * i] = x[d->b[i] >> 4];
		hex[2 * i + 1] = x[d->b[i] & 15];
	}
	hex[DIGEST_HEX_LEN] = '\0';
}

void digest_to_string(const struct digest *d, char *str)
{
	memcpy(str, DIGEST_PREFIX, sizeof(DIGEST_PREFIX) - 1);
	digest_to_hex(d, str + sizeof(DIGEST_PREFIX) - 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int digest_parse(const char *s, struct digest *ret)
{
	if (strncasecmp(s, DIGEST_PREFIX, sizeof(DIGEST_PREFIX) - 1) == 0)
		s += sizeof(DIGEST_PREFIX) - 1;
	if (strlen(s) != DIGEST_HEX_LEN)
		return -EINVAL;
	struct digest d;
	for (int i = 0; i < DIGEST_LEN; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		d.b[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = d;
	return 0;
}

bool digest_equal(const struct digest *a, const struct digest *b) { return memcmp(a->b, b->b, DIGEST_LEN) == 0; }

bool digest_is_zero(const struct digest *d)
{
	for (int i = 0; i < DIGEST_LEN; i++)
		if (d->b[i])
			return false;
	return true;
}
