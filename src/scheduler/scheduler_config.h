/*
 * scheduler.ini (see docs/scheduler.md): where the scheduler listens and
 * with which TLS files, the Ed25519 key that signs routing tokens, the
 * token workers present, heartbeat and token timings, and one [tenant ID]
 * section per tenant naming that tenant's own OAuth2 IdP and the images it
 * may use. Relative file names are relative to the configuration file's
 * directory. A misspelt key is an error that names the line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "strv.h"

#define SCHEDULER_MAX_TENANTS 1024
#define SCHEDULER_URL_MAX 1024
#define SCHEDULER_WORKER_TOKEN_MAX 4096

struct scheduler_tenant {
	char *id;            /* [tenant ID]: [A-Za-z0-9._-]{1,64} */
	char *issuer;        /* the exact "iss" of its access tokens */
	char *jwks_url;      /* NULL: from <issuer>/.well-known/openid-configuration (discovery) */
	char *token_url;     /* NULL: from discovery too */
	char *audience;      /* required "aud" */
	char *client_id;
	char *scope;
	struct strv images;  /* "sha256:<hex>" the tenant may use */
	bool sticky;         /* prefer a worker that already runs a VM for (tenant, image) */
	char *cache_mode;    /* "paranoid" (default) or "trusted" */
};

struct scheduler_config {
	char *path;                      /* the file that was read */
	char *listen;
	char *cert_file, *key_file;      /* TLS (PEM) */
	char *signing_key_file;          /* Ed25519 PKCS#8, 0600 */
	char *worker_token_file;         /* shared secret of workers, 0600 */
	unsigned heartbeat_interval_ms;  /* told to workers; a worker silent for 1.5 intervals is not routed to */
	unsigned token_ttl;              /* routing token lifetime, seconds, <= TOKEN_MAX_TTL */
	unsigned clock_skew;             /* seconds allowed on an access token's exp, nbf, iat */
	unsigned jwks_max_age;           /* seconds before a tenant's JWKS is fetched again */
	unsigned jwks_min_interval;      /* seconds between fetches caused by an unknown kid */
	unsigned max_calls;
	bool allow_insecure_idp;         /* http:// IdP URLs (tests, loopback); https otherwise */
	struct scheduler_tenant *tenants;
	size_t n_tenants;
};

int scheduler_config_load(const char *path, struct scheduler_config *ret, struct error *err);
void scheduler_config_free(struct scheduler_config *c);
const struct scheduler_tenant *scheduler_config_tenant(const struct scheduler_config *c, const char *id);
bool scheduler_tenant_allows(const struct scheduler_tenant *t, const char *image);
