/*
 * Self-signed certificates and their fingerprints (see x509.h), with OpenSSL
 * 3. The subjectAltName is built from GENERAL_NAME objects rather than from
 * OpenSSL's "DNS:a,IP:b" text form, so that a name from a config file can
 * never smuggle in a second entry with a comma. OpenSSL's error queue is
 * cleared on every failure: it is per thread, and a stale entry would
 * confuse the next user on that thread (grpc reads it after handshakes).
 */
#include "x509.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
DEFINE_CLEANUP_FUNC(X509, X509_free)
DEFINE_CLEANUP_FUNC(BIO, BIO_free)
DEFINE_CLEANUP_FUNC(GENERAL_NAMES, GENERAL_NAMES_free)
DEFINE_CLEANUP_FUNC(GENERAL_NAME, GENERAL_NAME_free)
DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)

/* Letters, digits, '-', '.', and a leading "*." for wildcards: what a DNS name in a certificate may hold. */
static bool dns_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > X509_MAX_NAME_LEN)
		return false;
	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '.'))
			return false;
	return true;
}

static int add_names(GENERAL_NAMES *names, const char *const *dns, size_t n_dns, const char *const *ips,
		     size_t n_ips, struct error *err)
{
	for (size_t i = 0; i < n_dns; i++) {
		if (!dns[i] || !dns_name_valid(dns[i]))
			return error_set(err, -EINVAL, "not a DNS name for a certificate: \"%.64s\"",
					 dns[i] ? dns[i] : "(null)");
		_cleanup_(GENERAL_NAME_freep) GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();
		if (!gn || !s) {
			ASN1_IA5STRING_free(s);
			return error_set(err, -ENOMEM, "out of memory");
		}
		if (ASN1_STRING_set(s, dns[i], (int)strlen(dns[i])) != 1) {
			ASN1_IA5STRING_free(s);
			return error_set(err, -ENOMEM, "out of memory");
		}
		GENERAL_NAME_set0_value(gn, GEN_DNS, s);
		if (sk_GENERAL_NAME_push(names, gn) <= 0)
			return error_set(err, -ENOMEM, "out of memory");
		gn = NULL;  /* the stack owns it now */
	}
	for (size_t i = 0; i < n_ips; i++) {
		/* a2i_IPADDRESS parses IPv4 and IPv6 text into the 4 or 16 bytes the certificate holds. */
		ASN1_OCTET_STRING *ip = ips[i] ? a2i_IPADDRESS(ips[i]) : NULL;
		if (!ip)
			return error_set(err, -EINVAL, "not an IP address: \"%.64s\"", ips[i] ? ips[i] : "(null)");
		_cleanup_(GENERAL_NAME_freep) GENERAL_NAME *gn = GENERAL_NAME_new();
		if (!gn) {
			ASN1_OCTET_STRING_free(ip);
			return error_set(err, -ENOMEM, "out of memory");
		}
		GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
		if (sk_GENERAL_NAME_push(names, gn) <= 0)
			return error_set(err, -ENOMEM, "out of memory");
		gn = NULL;
	}
	return 0;
}

/* The extension by its OpenSSL config text, for the fixed ones where no outside input is involved. */
static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -ENOMEM;
}

/* Copies a memory BIO's contents into a NUL-terminated malloc'd string. */
static char *bio_to_string(BIO *bio)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	if (n < 0)
		return NULL;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	return s;
}

static int fill_cert(X509 *x, EVP_PKEY *key, const char *common_name, int days, struct error *err)
{
	if (X509_set_version(x, X509_VERSION_3) != 1)
		return error_set(err, -ENOMEM, "out of memory");

	/* 127 random bits: positive (the top bit clear), and unique with overwhelming probability (RFC 5280
	 * 4.1.2.2). */
	_cleanup_(BN_freep) BIGNUM *serial = BN_new();
	if (!serial || BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
	    !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)))
		return error_set(err, -EIO, "cannot make a random serial number");

	/* An hour of slack before now covers a peer whose clock is a little behind ours. */
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL))
		return error_set(err, -EIO, "cannot set the validity period");

	X509_NAME *name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1, -1, 0) != 1)
		return error_set(err, -EINVAL, "cannot use \"%.64s\" as a common name", common_name);
	if (X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1)
		return error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int make_cert(const char *common_name, const char *const *dns_names, size_t n_dns,
		     const char *const *ip_addrs, size_t n_ips, int days, char **ret_cert_pem, char **ret_key_pem,
		     struct error *err)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = EVP_EC_gen("P-256");
	_cleanup_(X509_freep) X509 *x = X509_new();
	_cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *names = GENERAL_NAMES_new();
	if (!key || !x || !names)
		return error_set(err, -ENOMEM, "cannot make an EC P-256 key");
	int r = fill_cert(x, key, common_name, days, err);
	if (r < 0)
		return r;
	r = add_names(names, dns_names, n_dns, ip_addrs, n_ips, err);
	if (r < 0)
		return r;
	if (sk_GENERAL_NAME_num(names) > 0 &&
	    X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) != 1)
		return error_set(err, -ENOMEM, "cannot add the subjectAltName");
	/* A leaf that cannot sign other certificates, for TLS in both roles (a worker is also a client). */
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0)
		return error_set(err, -EIO, "cannot add the certificate extensions");
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		return error_set(err, -EIO, "cannot sign the certificate");

	_cleanup_(BIO_freep) BIO *cert_bio = BIO_new(BIO_s_mem());
	_cleanup_(BIO_freep) BIO *key_bio = BIO_new(BIO_s_mem());
	if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio, x) != 1 ||
	    PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		return error_set(err, -ENOMEM, "cannot write the certificate as PEM");
	_cleanup_free_ char *cert_pem = bio_to_string(cert_bio);
	_cleanup_free_ char *key_pem = bio_to_string(key_bio);
	if (!cert_pem || !key_pem)
		return error_set(err, -ENOMEM, "out of memory");
	*ret_cert_pem = TAKE_PTR(cert_pem);
	*ret_key_pem = TAKE_PTR(key_pem);
	return 0;
}

int x509_self_signed(const char *common_name, const char *const *dns_names, size_t n_dns,
		     const char *const *ip_addrs, size_t n_ips, int days, char **ret_cert_pem, char **ret_key_pem,
		     struct error *err)
{
	if (!common_name || !*common_name || strlen(common_name) > 64)
		return error_set(err, -EINVAL, "a certificate needs a common name of 1 to 64 bytes");
	if (days <= 0 || days > X509_MAX_DAYS)
		return error_set(err, -EINVAL, "certificate validity must be 1 to %d days", X509_MAX_DAYS);
	if (n_dns > X509_MAX_NAMES || n_ips > X509_MAX_NAMES)
		return error_set(err, -EINVAL, "at most %d DNS names and %d IP addresses", X509_MAX_NAMES,
				 X509_MAX_NAMES);
	int r = make_cert(common_name, dns_names, n_dns, ip_addrs, n_ips, days, ret_cert_pem, ret_key_pem, err);
	if (r < 0)
		ERR_clear_error();
	return r;
}

int x509_fingerprint_pem(const char *pem, char ret[DIGEST_STR_LEN + 1])
{
	if (!pem)
		return -EINVAL;
	size_t len = strlen(pem);
	if (len == 0 || len > INT_MAX)
		return -EINVAL;
	_cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	_cleanup_(X509_freep) X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!x) {
		ERR_clear_error();
		return -EINVAL;
	}
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	if (n <= 0) {
		ERR_clear_error();
		return -EINVAL;
	}
	struct digest d;
	int r = digest_bytes(der, (size_t)n, &d);
	OPENSSL_free(der);
	if (r < 0)
		return r;
	digest_to_string(&d, ret);
	return 0;
}
