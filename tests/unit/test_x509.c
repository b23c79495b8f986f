/*
 * Unit tests for self-signed certificates and fingerprints
 * (src/common/x509.c): the certificate is parsed back with OpenSSL and
 * checked field by field (key type, signature, names, validity, serial), bad
 * names are refused without touching the outputs, and the fingerprint equals
 * both an independent SHA-256 of the DER and a constant computed with
 * `openssl x509 -outform DER | sha256sum` for a fixed certificate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "x509.h"

/* Made with: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=hpcc-fixed-test */
static const char fixed_pem[] = "-----BEGIN CERTIFICATE-----\n"
				"MIIBiTCCAS+gAwIBAgIUAZZ0qzBvkVshQGlGJWMJN/G4fJ4wCgYIKoZIzj0EAwIw\n"
				"GjEYMBYGA1UEAwwPaHBjYy1maXhlZC10ZXN0MB4XDTI2MTIwNDE4NTEwMloXDTM2\n"
				"MTIwMTE4NTEwMlowGjEYMBYGA1UEAwwPaHBjYy1maXhlZC10ZXN0MFkwEwYHKoZI\n"
				"zj0CAQYIKoZIzj0DAQcDQgAESDhy5mTFEFbBX2TmeoTUElgw44DZ37WXzxflqR/S\n"
				"8ctE3q6OXBbf4qErdEAJCEwnoyiUvsY5uCuy6lbzl4mwdqNTMFEwHQYDVR0OBBYE\n"
				"FIZtvf7Zk6+uM4gs93OqEE67DKs4MB8GA1UdIwQYMBaAFIZtvf7Zk6+uM4gs93Oq\n"
				"EE67DKs4MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgR1TjAY3M\n"
				"e50X6Nflb+4qI66q0o+gNX7tsM4mYttJtZACIQDljbAUn7y1wN6YnEim6uYJ8SVe\n"
				"Le6pDvZyd4sZXn6PtA==\n"
				"-----END CERTIFICATE-----\n";
/* openssl x509 -in fixed.pem -outform DER | sha256sum */
static const char fixed_sha[] = "sha256:b3240579b33e703a916404eed17f50acdc158c0af5b499207bb748ade6ab686d";

static X509 *parse(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	assert_non_null(bio);
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(x);
	return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	assert_non_null(bio);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(k);
	return k;
}

/* The fingerprint computed here with EVP alone, independently of digest.c. */
static void der_sha256(X509 *x, char out[DIGEST_STR_LEN + 1])
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	assert_true(n > 0);
	unsigned char md[32];
	unsigned int md_len = 0;
	assert_int_equal(EVP_Digest(der, (size_t)n, md, &md_len, EVP_sha256(), NULL), 1);
	OPENSSL_free(der);
	char *p = out + strlen("sha256:");
	memcpy(out, "sha256:", 7);
	for (unsigned i = 0; i < md_len; i++)
		snprintf(p + 2 * i, 3, "%02x", md[i]);
}

static void test_self_signed_fields(void **state)
{
	const char *dns[] = { "worker-1.example", "localhost" };
	const char *ips[] = { "127.0.0.1", "::1" };
	char *cert = NULL, *key = NULL;
	struct error err = { 0 };
	assert_int_equal(x509_self_signed("hpcc-worker", dns, 2, ips, 2, 30, &cert, &key, &err), 0);
	assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
	assert_non_null(strstr(key, "PRIVATE KEY-----"));

	X509 *x = parse(cert);
	EVP_PKEY *k = parse_key(key);
	/* EC P-256, the key belongs to the certificate, and the certificate verifies with its own key. */
	assert_true(EVP_PKEY_is_a(k, "EC"));
	char group[64];
	size_t glen = 0;
	assert_int_equal(EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), &glen), 1);
	assert_string_equal(group, "prime256v1");
	assert_int_equal(X509_check_private_key(x, k), 1);
	assert_int_equal(X509_verify(x, k), 1);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);

	/* Subject and issuer are the same common name. */
	char cn[128];
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0);
	assert_string_equal(cn, "hpcc-worker");
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);

	/* The names, by what a TLS peer would check. */
	assert_int_equal(X509_check_host(x, "worker-1.example", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.example", 0, 0, NULL), 0);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "10.0.0.1", 0), 0);

	/* Valid now, and for about 30 days. */
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
	int days = 0, secs = 0;
	assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
	assert_true(days == 29 || days == 30);

	/* A leaf, not a CA, for servers and clients. */
	assert_int_equal(X509_check_ca(x), 0);
	assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
	assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);

	/* The serial is positive and random: a second certificate has another one. */
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
	assert_false(BN_is_negative(bn));
	assert_true(BN_num_bits(bn) > 64);
	char *cert2 = NULL, *key2 = NULL;
	assert_int_equal(x509_self_signed("hpcc-worker", dns, 2, ips, 2, 30, &cert2, &key2, &err), 0);
	X509 *x2 = parse(cert2);
	assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(x2)), 0);

	BN_free(bn);
	X509_free(x2);
	X509_free(x);
	EVP_PKEY_free(k);
	free(cert2);
	free(key2);
	free(cert);
	free(key);
}

static void test_self_signed_no_names(void **state)
{
	char *cert = NULL, *key = NULL;
	assert_int_equal(x509_self_signed("bare", NULL, 0, NULL, 0, 1, &cert, &key, NULL), 0);
	X509 *x = parse(cert);
	assert_null(X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL));
	X509_free(x);
	free(cert);
	free(key);
}

static void test_self_signed_refuses(void **state)
{
	char *cert = (char *)"untouched", *key = (char *)"untouched";
	struct error err = { 0 };
	const char *bad_dns[] = { "a.example,IP:1.2.3.4" };
	const char *bad_ip[] = { "300.1.1.1" };
	const char *empty[] = { "" };
	const char *null_name[] = { NULL };

	assert_int_equal(x509_self_signed("x", bad_dns, 1, NULL, 0, 1, &cert, &key, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "DNS name"));
	error_clear(&err);
	assert_int_equal(x509_self_signed("x", NULL, 0, bad_ip, 1, 1, &cert, &key, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "IP address"));
	assert_int_equal(x509_self_signed("x", empty, 1, NULL, 0, 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("x", null_name, 1, NULL, 0, 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("x", NULL, 0, null_name, 1, 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("", NULL, 0, NULL, 0, 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed(NULL, NULL, 0, NULL, 0, 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("x", NULL, 0, NULL, 0, 0, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("x", NULL, 0, NULL, 0, X509_MAX_DAYS + 1, &cert, &key, NULL), -EINVAL);
	assert_int_equal(x509_self_signed("x", NULL, X509_MAX_NAMES + 1, NULL, 0, 1, &cert, &key, NULL), -EINVAL);
	/* Outputs are written only on success. */
	assert_string_equal(cert, "untouched");
	assert_string_equal(key, "untouched");
}

static void test_fingerprint_fixed(void **state)
{
	char fp[DIGEST_STR_LEN + 1];
	assert_int_equal(x509_fingerprint_pem(fixed_pem, fp), 0);
	assert_string_equal(fp, fixed_sha);
}

static void test_fingerprint_matches_der(void **state)
{
	char *cert = NULL, *key = NULL;
	assert_int_equal(x509_self_signed("fp", NULL, 0, NULL, 0, 1, &cert, &key, NULL), 0);
	char fp[DIGEST_STR_LEN + 1], want[DIGEST_STR_LEN + 1];
	assert_int_equal(x509_fingerprint_pem(cert, fp), 0);
	X509 *x = parse(cert);
	der_sha256(x, want);
	assert_string_equal(fp, want);

	/* A chain: the first certificate counts. */
	size_t n = strlen(cert) + strlen(fixed_pem) + 1;
	char *chain = malloc(n);
	assert_non_null(chain);
	snprintf(chain, n, "%s%s", cert, fixed_pem);
	assert_int_equal(x509_fingerprint_pem(chain, fp), 0);
	assert_string_equal(fp, want);
	snprintf(chain, n, "%s%s", fixed_pem, cert);
	assert_int_equal(x509_fingerprint_pem(chain, fp), 0);
	assert_string_equal(fp, fixed_sha);

	free(chain);
	X509_free(x);
	free(cert);
	free(key);
}

static void test_fingerprint_bad_input(void **state)
{
	char fp[DIGEST_STR_LEN + 1];
	char *cert = NULL, *key = NULL;
	assert_int_equal(x509_self_signed("fp", NULL, 0, NULL, 0, 1, &cert, &key, NULL), 0);
	assert_int_equal(x509_fingerprint_pem(NULL, fp), -EINVAL);
	assert_int_equal(x509_fingerprint_pem("", fp), -EINVAL);
	assert_int_equal(x509_fingerprint_pem("not a certificate", fp), -EINVAL);
	assert_int_equal(x509_fingerprint_pem(key, fp), -EINVAL);  /* a key is not a certificate */
	/* A certificate cut short. */
	cert[strlen(cert) / 2] = '\0';
	assert_int_equal(x509_fingerprint_pem(cert, fp), -EINVAL);
	free(cert);
	free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed_fields),
		cmocka_unit_test(test_self_signed_no_names),
		cmocka_unit_test(test_self_signed_refuses),
		cmocka_unit_test(test_fingerprint_fixed),
		cmocka_unit_test(test_fingerprint_matches_der),
		cmocka_unit_test(test_fingerprint_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
