/*
 * Self-signed X.509 certificates for the TLS between hpcc's processes, and
 * their fingerprints. hpcc does not use a CA: a worker makes its own
 * certificate, and whoever talks to it pins the SHA-256 of that
 * certificate's DER encoding, written "sha256:<hex>" like every other digest.
 */
#pragma once

#include <stddef.h>

#include "digest.h"
#include "error.h"

/* Upper bounds on what x509_self_signed accepts, so a config cannot ask for an absurd certificate. */
#define X509_MAX_DAYS 36500
#define X509_MAX_NAMES 64
#define X509_MAX_NAME_LEN 253  /* the longest DNS name */

/*
 * Makes an EC P-256 key and a self-signed certificate for it (SHA-256
 * signature, random 128-bit serial, valid from an hour ago for days days,
 * subjectAltName with the DNS names and IP addresses given, usable for TLS
 * server and client authentication). Both come back as PEM text allocated
 * with malloc; they are written only on success.
 */
int x509_self_signed(const char *common_name, const char *const *dns_names, size_t n_dns,
		     const char *const *ip_addrs, size_t n_ips, int days, char **ret_cert_pem, char **ret_key_pem,
		     struct error *err);

/* "sha256:<hex>" of the DER encoding of the first certificate in pem; -EINVAL when there is none. */
int x509_fingerprint_pem(const char *pem, char ret[DIGEST_STR_LEN + 1]);
