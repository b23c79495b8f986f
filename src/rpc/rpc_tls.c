/*
 * TLS for src/rpc: server credentials from PEM text, client credentials that
 * pin the server's certificate by the SHA-256 of its DER encoding, and the
 * process-wide TLS 1.3 policy. There is no CA anywhere: a client accepts
 * exactly the certificate whose fingerprint it was given (the handshake
 * still proves the server holds that certificate's key), so grpc's chain
 * and host name checks are turned off and our verifier does the whole job.
 */
#define RPC_INTERNAL
#include "rpc.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>

#include "digest.h"
#include "log.h"
#include "x509.h"

/* 0 once the TLS 1.3 policy is in force; until then no TLS credentials are made. */
static int tls13_state = -EPROTO;

/*
 * grpc 1.51's C API has no setter for the minimum TLS version (only the
 * internal C++ options object has one), and grpc itself calls
 * SSL_CTX_set_min_proto_version(TLS1_2) on every context it makes. It does
 * not touch the SSL_OP_NO_TLSv1_2 option, though, and OpenSSL honours both,
 * so we load an OpenSSL configuration whose system_default section, which
 * every SSL_CTX_new applies, has "Protocol = -ALL, TLSv1.3": TLS 1.2 and
 * below start disabled and grpc's call cannot enable them again.
 *
 * This is the whole of the ssl_conf module's settings afterwards (it
 * replaces what the default openssl.cnf set; Debian's sets nothing).
 * MinProtocol is for the contexts of other libraries in the process, which
 * usually leave it alone. The cipher line repeats Debian's default security
 * level, which this section would otherwise drop.
 */
static const char tls_policy_conf[] = "hpcc_rpc_conf = hpcc_rpc_init\n"
				      "[hpcc_rpc_init]\n"
				      "ssl_conf = hpcc_rpc_ssl\n"
				      "[hpcc_rpc_ssl]\n"
				      "system_default = hpcc_rpc_tls\n"
				      "[hpcc_rpc_tls]\n"
				      "MinProtocol = TLSv1.3\n"
				      "Protocol = -ALL, TLSv1.3\n"
				      "CipherString = DEFAULT:@SECLEVEL=2\n";

DEFINE_CLEANUP_FUNC(BIO, BIO_free)
DEFINE_CLEANUP_FUNC(CONF, NCONF_free)
DEFINE_CLEANUP_FUNC(SSL_CTX, SSL_CTX_free)
DEFINE_CLEANUP_FUNC(X509, X509_free)
DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)

static int load_policy(void)
{
	/* Load the default configuration now: OpenSSL loads it once, at first use, and if that came after us it
	 * would replace our settings. */
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL);
	_cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(tls_policy_conf, (int)sizeof(tls_policy_conf) - 1);
	_cleanup_(NCONF_freep) CONF *conf = NCONF_new(NULL);
	long line = 0;
	if (!bio || !conf || NCONF_load_bio(conf, bio, &line) != 1)
		return -EIO;
	if (CONF_modules_load(conf, "hpcc_rpc_conf", 0) <= 0)
		return -EIO;

	/* Check on a fresh context, after doing to it what grpc does, that TLS 1.2 stays off. */
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	uint64_t need = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2;
	if ((SSL_CTX_get_options(ctx) & need) != need || (SSL_CTX_get_options(ctx) & SSL_OP_NO_TLSv1_3))
		return -EPROTO;
	return 0;
}

int rpc__tls_require_13(void)
{
	int r = load_policy();
	ERR_clear_error();
	tls13_state = r;
	return r;
}

static int check_policy(struct error *err)
{
	if (tls13_state < 0)
		return error_set(err, tls13_state, "the TLS 1.3 policy is not in force (rpc_global_init not called, or "
						   "it failed)");
	return 0;
}

/* Fails early, with a message, on what grpc would only reject with a line in its log. */
static int check_key_pair(const char *cert_pem, const char *key_pem, struct error *err)
{
	if (strlen(cert_pem) > INT_MAX || strlen(key_pem) > INT_MAX)
		return error_set(err, -EINVAL, "certificate or key too large");
	_cleanup_(BIO_freep) BIO *cb = BIO_new_mem_buf(cert_pem, -1);
	_cleanup_(BIO_freep) BIO *kb = BIO_new_mem_buf(key_pem, -1);
	if (!cb || !kb)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_(X509_freep) X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	int r = 0;
	if (!x)
		r = error_set(err, -EINVAL, "the server certificate is not PEM");
	else if (!key)
		r = error_set(err, -EINVAL, "the server key is not PEM (or is encrypted)");
	else if (X509_check_private_key(x, key) != 1)
		r = error_set(err, -EINVAL, "the server key does not belong to the certificate");
	ERR_clear_error();
	return r;
}

int rpc__tls_server_credentials(const char *cert_pem, const char *key_pem, grpc_server_credentials **ret,
				struct error *err)
{
	int r = check_policy(err);
	if (r < 0)
		return r;
	if (!key_pem)
		return error_set(err, -EINVAL, "a server certificate needs its key");
	r = check_key_pair(cert_pem, key_pem, err);
	if (r < 0)
		return r;
	/* The client is not asked for a certificate: callers authenticate with tokens inside the channel. */
	grpc_ssl_pem_key_cert_pair pair = { .private_key = key_pem, .cert_chain = cert_pem };
	grpc_server_credentials *creds =
		grpc_ssl_server_credentials_create_ex(NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
	if (!creds)
		return error_set(err, -EINVAL, "grpc refused the server certificate");
	*ret = creds;
	return 0;
}

/* The external verifier grpc calls after each handshake; grpc owns it until destruct. */
struct pin_verifier {
	grpc_tls_certificate_verifier_external ext;
	struct digest want;
};

static int pin_verify(void *user_data, grpc_tls_custom_verification_check_request *request,
		      grpc_tls_on_custom_verification_check_done_cb callback, void *callback_arg,
		      grpc_status_code *sync_status, char **sync_error_details)
{
	const struct pin_verifier *v = user_data;
	char got[DIGEST_STR_LEN + 1];
	struct digest d;
	const char *pem = request->peer_info.peer_cert;
	if (!pem || x509_fingerprint_pem(pem, got) < 0 || digest_parse(got, &d) < 0) {
		*sync_status = GRPC_STATUS_UNAUTHENTICATED;
		*sync_error_details = gpr_strdup("hpcc: the server sent no usable certificate");
		return 1;
	}
	/* Constant time: the comparison must not tell an attacker how much of a forged fingerprint matched. */
	if (CRYPTO_memcmp(d.b, v->want.b, DIGEST_LEN) != 0) {
		log_warn("rpc: server certificate %s does not match the pinned fingerprint", got);
		*sync_status = GRPC_STATUS_UNAUTHENTICATED;
		*sync_error_details = gpr_strdup("hpcc: the server certificate does not match the pinned fingerprint");
		return 1;
	}
	*sync_status = GRPC_STATUS_OK;
	*sync_error_details = NULL;
	return 1;  /* answered synchronously */
}

/* Nothing is asynchronous, so there is nothing to cancel. */
static void pin_cancel(void *user_data, grpc_tls_custom_verification_check_request *request) {}

static void pin_destruct(void *user_data) { free(user_data); }

int rpc__tls_channel_credentials(const char *pin, grpc_channel_credentials **ret, struct error *err)
{
	int r = check_policy(err);
	if (r < 0)
		return r;
	struct digest want;
	/* digest_parse also takes bare hex; the config format is the prefixed one, so insist on it. */
	if (strncmp(pin, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 || digest_parse(pin, &want) < 0)
		return error_set(err, -EINVAL, "the pin must be \"sha256:<64 hex digits>\", not \"%.80s\"", pin);
	struct pin_verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return error_set(err, -ENOMEM, "out of memory");
	v->want = want;
	v->ext = (grpc_tls_certificate_verifier_external){
		.user_data = v, .verify = pin_verify, .cancel = pin_cancel, .destruct = pin_destruct
	};
	grpc_tls_certificate_verifier *verifier = grpc_tls_certificate_verifier_external_create(&v->ext);
	if (!verifier) {
		free(v);
		return error_set(err, -ENOMEM, "cannot make the certificate verifier");
	}

	grpc_tls_credentials_options *opts = grpc_tls_credentials_options_create();
	/* No chain to a CA and no host name check: the pin replaces both. The certificate's signature on the
	 * handshake is still checked by TLS itself, so only the key's holder passes. */
	grpc_tls_credentials_options_set_verify_server_cert(opts, 0);
	grpc_tls_credentials_options_set_check_call_host(opts, 0);
	grpc_tls_credentials_options_set_certificate_verifier(opts, verifier);
	grpc_tls_certificate_verifier_release(verifier);  /* opts holds its own reference */
	grpc_channel_credentials *creds = grpc_tls_credentials_create(opts);  /* takes opts */
	if (!creds)
		return error_set(err, -EINVAL, "grpc refused the TLS options");
	*ret = creds;
	return 0;
}
