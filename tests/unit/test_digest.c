/*
 * Unit tests for SHA-256 digests (src/common/digest.c): the NIST known-answer
 * vectors, the "sha256:<hex>" text form in both directions, digest_file's
 * cap and file-type checks, and the scan for time macros, including a macro
 * name split across two 64 KiB reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "digest.h"

#define READ_CHUNK (64 * 1024)  /* digest_fd's read size */

static const char empty_sha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char abc_sha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char msg448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
static const char msg448_sha[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
static const char msg896[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
			     "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
static const char msg896_sha[] = "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1";
static const char million_a_sha[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

static void assert_digest_hex(const struct digest *d, const char *want)
{
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(d, hex);
	assert_string_equal(hex, want);
}

/* --- temporary directory per test --- */


static char *write_file(const char *dir, const char *name, const void *data, size_t n)
{
	char *path = NULL;
	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	return path;
}

/* --- known answers --- */

static void test_nist_vectors(void **state)
{
	struct digest d;
	assert_int_equal(digest_bytes("", 0, &d), 0);
	assert_digest_hex(&d, empty_sha);
	assert_int_equal(digest_bytes(NULL, 0, &d), 0);
	assert_digest_hex(&d, empty_sha);
	assert_int_equal(digest_bytes("abc", 3, &d), 0);
	assert_digest_hex(&d, abc_sha);
	assert_int_equal(digest_bytes(msg448, strlen(msg448), &d), 0);
	assert_digest_hex(&d, msg448_sha);
	assert_int_equal(digest_bytes(msg896, strlen(msg896), &d), 0);
	assert_digest_hex(&d, msg896_sha);
}

static void test_million_a(void **state)
{
	char *a = malloc(1000000);
	assert_non_null(a);
	memset(a, 'a', 1000000);
	struct digest d;
	assert_int_equal(digest_bytes(a, 1000000, &d), 0);
	assert_digest_hex(&d, million_a_sha);

	/* The same through the incremental interface, in uneven pieces. */
	_cleanup_hasher_ struct hasher h = { 0 };
	assert_int_equal(hasher_init(&h), 0);
	size_t done = 0, step = 1;
	while (done < 1000000) {
		size_t n = step < 1000000 - done ? step : 1000000 - done;
		assert_int_equal(hasher_update(&h, a + done, n), 0);
		assert_int_equal(hasher_update(&h, a, 0), 0);
		done += n;
		step = step * 3 + 1;
	}
	struct digest d2;
	assert_int_equal(hasher_final(&h, &d2), 0);
	assert_true(digest_equal(&d, &d2));
	free(a);
}

static void test_hasher_free(void **state)
{
	struct hasher h = { 0 };
	hasher_free(&h);
	hasher_free(NULL);
	assert_int_equal(hasher_init(&h), 0);
	assert_non_null(h.ctx);
	hasher_free(&h);
	assert_null(h.ctx);
	hasher_free(&h);
}

/* --- text form --- */

static void test_to_string(void **state)
{
	struct digest d;
	for (int i = 0; i < DIGEST_LEN; i++)
		d.b[i] = (uint8_t)(i * 8 + 0x0f);
	char hex[DIGEST_HEX_LEN + 1], str[DIGEST_STR_LEN + 1];
	memset(hex, 'X', sizeof(hex));
	memset(str, 'X', sizeof(str));
	digest_to_hex(&d, hex);
	digest_to_string(&d, str);
	static const char want[] = "0f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff07";
	assert_string_equal(hex, want);
	assert_int_equal(strlen(str), DIGEST_STR_LEN);
	assert_int_equal(DIGEST_STR_LEN, 71);
	assert_memory_equal(str, "sha256:", 7);
	assert_string_equal(str + 7, want);
}

static void test_parse(void **state)
{
	struct digest d, want;
	assert_int_equal(digest_bytes("abc", 3, &want), 0);

	assert_int_equal(digest_parse(abc_sha, &d), 0);
	assert_true(digest_equal(&d, &want));

	memset(&d, 0, sizeof(d));
	assert_int_equal(digest_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &d), 0);
	assert_true(digest_equal(&d, &want));

	memset(&d, 0, sizeof(d));
	assert_int_equal(digest_parse("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &d), 0);
	assert_true(digest_equal(&d, &want));

	memset(&d, 0, sizeof(d));
	assert_int_equal(digest_parse("SHA256:Ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD", &d), 0);
	assert_true(digest_equal(&d, &want));

	/* Round trip through the string form. */
	char str[DIGEST_STR_LEN + 1];
	digest_to_string(&want, str);
	memset(&d, 0, sizeof(d));
	assert_int_equal(digest_parse(str, &d), 0);
	assert_true(digest_equal(&d, &want));
}

static void test_parse_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		"sha256:",
		/* 63 and 65 digits */
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		/* bad characters */
		"ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a ",
		" ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a:",
		"0x7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		/* other prefixes */
		"sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256::ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct digest d;
		memset(&d, 0x5a, sizeof(d));
		assert_int_equal(digest_parse(bad[i], &d), -EINVAL);
		/* ret is written only on success */
		for (int j = 0; j < DIGEST_LEN; j++)
			assert_int_equal(d.b[j], 0x5a);
	}
}

static void test_equal_and_zero(void **state)
{
	struct digest a = { { 0 } }, b = { { 0 } };
	assert_true(digest_is_zero(&a));
	assert_true(digest_equal(&a, &b));
	b.b[DIGEST_LEN - 1] = 1;
	assert_false(digest_is_zero(&b));
	assert_false(digest_equal(&a, &b));
	a.b[DIGEST_LEN - 1] = 1;
	assert_true(digest_equal(&a, &b));
	a.b[0] = 0x80;
	assert_false(digest_equal(&a, &b));
}

/* --- files --- */

static void test_file_matches_bytes(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_file(dir, "f", "abc", 3);
	struct digest d;
	struct file_scan scan = { .time_macros = true, .size = 99 };
	assert_int_equal(digest_file(path, 3, &d, &scan), 0);
	assert_digest_hex(&d, abc_sha);
	assert_int_equal(scan.size, 3);
	assert_false(scan.time_macros);
	/* scan is optional */
	assert_int_equal(digest_file(path, 3, &d, NULL), 0);
	assert_digest_hex(&d, abc_sha);
}

static void test_file_empty(void **state)
{
	_cleanup_free_ char *path = write_file(*state, "empty", "", 0);
	struct digest d;
	struct file_scan scan = { .time_macros = true, .size = 99 };
	assert_int_equal(digest_file(path, 0, &d, &scan), 0);
	assert_digest_hex(&d, empty_sha);
	assert_int_equal(scan.size, 0);
	assert_false(scan.time_macros);
}

static void test_file_large(void **state)
{
	/* Several reads: the digest must cover every chunk once. */
	size_t n = 3 * READ_CHUNK + 12345;
	char *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + i / 251);
	_cleanup_free_ char *path = write_file(*state, "big", data, n);
	struct digest d, want;
	struct file_scan scan;
	assert_int_equal(digest_bytes(data, n, &want), 0);
	assert_int_equal(digest_file(path, n, &d, &scan), 0);
	assert_true(digest_equal(&d, &want));
	assert_int_equal(scan.size, n);
	free(data);
}

static void test_file_cap(void **state)
{
	char data[100];
	memset(data, 'q', sizeof(data));
	_cleanup_free_ char *path = write_file(*state, "hundred", data, sizeof(data));
	struct digest d, untouched;
	memset(&untouched, 0x77, sizeof(untouched));
	d = untouched;
	struct file_scan scan = { .time_macros = true, .size = 12345 };
	assert_int_equal(digest_file(path, 99, &d, &scan), -EFBIG);
	assert_true(digest_equal(&d, &untouched));
	assert_int_equal(scan.size, 12345);
	assert_true(scan.time_macros);
	assert_int_equal(digest_file(path, 0, &d, NULL), -EFBIG);
	assert_int_equal(digest_file(path, 100, &d, NULL), 0);
	assert_int_equal(digest_file(path, UINT64_MAX, &d, NULL), 0);

	/* The cap also works past the first read. */
	size_t big = READ_CHUNK * 2 + 1;
	char *buf = calloc(1, big);
	assert_non_null(buf);
	_cleanup_free_ char *bigpath = write_file(*state, "big", buf, big);
	free(buf);
	assert_int_equal(digest_file(bigpath, big - 1, &d, NULL), -EFBIG);
	assert_int_equal(digest_file(bigpath, READ_CHUNK + 1, &d, NULL), -EFBIG);
	assert_int_equal(digest_file(bigpath, big, &d, NULL), 0);
}

static void test_file_not_regular(void **state)
{
	struct digest d;
	assert_int_equal(digest_file(*state, 1 << 20, &d, NULL), -EISDIR);
	assert_int_equal(digest_file("/", 1 << 20, &d, NULL), -EISDIR);
	char *missing = NULL;
	assert_true(asprintf(&missing, "%s/missing", (char *)*state) > 0);
	assert_int_equal(digest_file(missing, 1 << 20, &d, NULL), -ENOENT);
	free(missing);
}

static void test_fd_pipe(void **state)
{
	/* digest_fd takes any descriptor: a pipe gives short reads. */
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], msg448, strlen(msg448)), (ssize_t)strlen(msg448));
	close(p[1]);
	struct digest d;
	struct file_scan scan;
	assert_int_equal(digest_fd(p[0], 1000, &d, &scan), 0);
	close(p[0]);
	assert_digest_hex(&d, msg448_sha);
	assert_int_equal(scan.size, strlen(msg448));
}

/* --- time macros --- */

static bool scan_text(const char *dir, const char *text)
{
	_cleanup_free_ char *path = write_file(dir, "scan.c", text, strlen(text));
	struct digest d;
	struct file_scan scan = { .time_macros = false };
	assert_int_equal(digest_file(path, 1 << 20, &d, &scan), 0);
	assert_int_equal(scan.size, strlen(text));
	/* __TIMESTAMP__ has a flag of its own; only it sets that flag. */
	assert_int_equal(scan.timestamp_macro, strstr(text, "__TIMESTAMP__") != NULL);
	return scan.time_macros || scan.timestamp_macro;
}

static void test_time_macros_found(void **state)
{
	const char *dir = *state;
	assert_true(scan_text(dir, "const char *d = __DATE__;\n"));
	assert_true(scan_text(dir, "const char *t = __TIME__;\n"));
	assert_true(scan_text(dir, "const char *s = __TIMESTAMP__;\n"));
	assert_true(scan_text(dir, "__DATE__"));
	assert_true(scan_text(dir, "x__TIME__"));
	assert_true(scan_text(dir, "_____TIMESTAMP__"));
	assert_true(scan_text(dir, "__ __DATE__"));
	assert_true(scan_text(dir, "int a; /* __x */ __FILE__ __LINE__ __TIME__"));
}

static void test_time_macros_not_found(void **state)
{
	const char *dir = *state;
	assert_false(scan_text(dir, ""));
	assert_false(scan_text(dir, "_"));
	assert_false(scan_text(dir, "__"));
	assert_false(scan_text(dir, "__DAT"));
	assert_false(scan_text(dir, "__DATE"));
	assert_false(scan_text(dir, "__DATE_"));
	assert_false(scan_text(dir, "_DATE__"));
	assert_false(scan_text(dir, "__date__"));
	assert_false(scan_text(dir, "__TIME_"));
	assert_false(scan_text(dir, "__TIMESTAMP_"));
	assert_false(scan_text(dir, "__TIMES__"));
	assert_false(scan_text(dir, "DATE__ TIME__ __FILE__ __LINE__ __COUNTER__"));
	assert_false(scan_text(dir, "int main(void) { return 0; }\n"));
}

/* Writes filler so that head ends exactly at byte READ_CHUNK, then tail. */
static bool scan_split(const char *dir, const char *head, const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail), n = READ_CHUNK + tl;
	char *data = malloc(n);
	assert_non_null(data);
	memset(data, 'x', READ_CHUNK - hl);
	memcpy(data + READ_CHUNK - hl, head, hl);
	memcpy(data + READ_CHUNK, tail, tl);
	_cleanup_free_ char *path = write_file(dir, "split.c", data, n);
	free(data);
	struct digest d;
	struct file_scan scan = { .time_macros = false };
	assert_int_equal(digest_file(path, n, &d, &scan), 0);
	assert_int_equal(scan.size, n);
	return scan.time_macros || scan.timestamp_macro;
}

static void test_time_macros_split_across_reads(void **state)
{
	const char *dir = *state;
	assert_true(scan_split(dir, "__DA", "TE__"));
	assert_true(scan_split(dir, "_", "_DATE__"));
	assert_true(scan_split(dir, "__", "TIME__"));
	assert_true(scan_split(dir, "__TIME_", "_"));
	assert_true(scan_split(dir, "__TIMESTAMP_", "_ rest"));
	assert_true(scan_split(dir, "__TIMES", "TAMP__"));
	assert_true(scan_split(dir, "", "__DATE__"));
	assert_true(scan_split(dir, "__DATE__", ""));
	assert_false(scan_split(dir, "__DA", "Y__"));
	assert_false(scan_split(dir, "__DAT", ""));
	assert_false(scan_split(dir, "__TIME", "STAMP_"));
	assert_false(scan_split(dir, "_", "DATE__"));
}

static void test_time_macros_far_into_file(void **state)
{
	size_t n = 5 * READ_CHUNK + 1000;
	char *data = malloc(n);
	assert_non_null(data);
	memset(data, '_', n);  /* many "__" candidates, none a macro */
	_cleanup_free_ char *path = write_file(*state, "far.c", data, n);
	struct digest d;
	struct file_scan scan;
	assert_int_equal(digest_file(path, n, &d, &scan), 0);
	assert_false(scan.time_macros);
	memcpy(data + 4 * READ_CHUNK + 77, "x__TIME__x", 10);
	free(path);
	path = write_file(*state, "far.c", data, n);
	assert_int_equal(digest_file(path, n, &d, &scan), 0);
	assert_true(scan.time_macros);
	free(data);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nist_vectors),
		cmocka_unit_test(test_million_a),
		cmocka_unit_test(test_hasher_free),
		cmocka_unit_test(test_to_string),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_equal_and_zero),
		T(test_file_matches_bytes),
		T(test_file_empty),
		T(test_file_large),
		T(test_file_cap),
		T(test_file_not_regular),
		cmocka_unit_test(test_fd_pipe),
		T(test_time_macros_found),
		T(test_time_macros_not_found),
		T(test_time_macros_split_across_reads),
		T(test_time_macros_far_into_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
