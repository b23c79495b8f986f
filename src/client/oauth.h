/*
 * The OAuth2 client of hpcc: the password grant at a tenant's IdP (`hpcc
 * login`), the refresh_token grant, and the token file that keeps a session
 * between them. The daemon asks oauth_access_token() for a token that stays
 * valid long enough before each Route call; it refreshes when needed, with a
 * file lock so that two processes do not spend one refresh token twice.
 * Nothing here prints or logs a password, a token, or a request or answer
 * body. See docs/auth.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct config;

#define OAUTH_TOKEN_MAX (16 * 1024)       /* access token, refresh token */
#define OAUTH_FIELD_MAX 2048              /* URLs, client id, scope, audience, username, scheduler */
#define OAUTH_TENANT_MAX 64               /* [A-Za-z0-9._-], not starting with '.' */
#define OAUTH_RESPONSE_MAX (64 * 1024)    /* a token endpoint's answer */
#define OAUTH_FILE_MAX (64 * 1024)        /* the token file */
#define OAUTH_HTTP_TIMEOUT_MS 15000
#define OAUTH_LOCK_TIMEOUT_MS 30000       /* waiting for another process's refresh */
/* Assumed when an IdP sends no expires_in and the token is not a JWT with exp. */
#define OAUTH_DEFAULT_LIFETIME 300

/*
 * One session: where to sign in (what GetTenantIdP answered), who, and the
 * tokens. Every string is malloc'd (NULL when absent); oauth_session_clear
 * wipes the tokens before freeing them.
 */
struct oauth_session {
	char *tenant;
	char *scheduler;       /* the address it was found through, for `hpcc auth status` */
	char *issuer;
	char *token_endpoint;  /* http or https URL */
	char *client_id;
	char *scope;           /* may be NULL or "" */
	char *audience;        /* may be NULL or "" */
	char *username;
	char *access_token;
	char *refresh_token;   /* NULL when the IdP gave none */
	int64_t expires_at;    /* Unix seconds, when the access token expires */
};

void oauth_session_clear(struct oauth_session *s);
static inline void oauth_session_clearp(struct oauth_session *s) { oauth_session_clear(s); }
#define _cleanup_oauth_session_ _cleanup_(oauth_session_clearp)

/*
 * The password grant (RFC 6749 §4.3): POSTs grant_type=password, username
 * (s->username), password, client_id, scope and audience (when set) to
 * s->token_endpoint. On success only, replaces s's access_token,
 * refresh_token and expires_at. Errors, with one line in err:
 *   -EACCES   the IdP refused ("the IdP refused the username or password
 *             (invalid_grant)" for invalid_grant; invalid_client and the
 *             others are named)
 *   -EPROTO   an answer that is not a valid token response (not JSON,
 *             token_type not Bearer, a field too long or of the wrong type,
 *             an HTTP status without an OAuth2 error)
 *   -E2BIG    the access or refresh token is longer than OAUTH_TOKEN_MAX
 *   and http.h's errors for the transport (-ETIMEDOUT, -ECONNREFUSED, ...).
 */
int oauth_password_grant(struct oauth_session *s, const char *password, int64_t now, struct error *err);
/* The refresh_token grant (RFC 6749 §6) with s->refresh_token. On success
 * replaces the tokens; keeps the old refresh token when the answer has
 * none. -EKEYEXPIRED when the IdP refuses the refresh token with a 4xx (the
 * session is over: log in again), -EPROTO for a 5xx (the IdP's trouble: try
 * again later), -ENOKEY when s holds no refresh token; the other errors as
 * above. */
int oauth_refresh(struct oauth_session *s, int64_t now, struct error *err);

/* Reads a token file: at most OAUTH_FILE_MAX bytes, a regular file owned by
 * the caller that group and others cannot access (-EPERM), in a directory
 * as oauth_session_lock wants it (-EPERM), JSON with the
 * fields of struct oauth_session, each within its cap (-EBADMSG otherwise).
 * -ENOENT, with "not logged in: run hpcc login", when there is no file.
 * ret is written only on success. */
int oauth_session_load(const char *path, struct oauth_session *ret, struct error *err);
/* Writes the token file atomically, mode 0600, creating its directory
 * (mode 0700) when missing and refusing one as oauth_session_lock does;
 * fsyncs the file and the directory. Takes no lock: a caller that replaces
 * a session takes oauth_session_lock around it. */
int oauth_session_save(const char *path, const struct oauth_session *s, struct error *err);
/* Removes the token file under the session lock (so that a refresh in
 * flight cannot write it back). 1 when a file was removed, 0 when there was
 * none. The lock file stays (see oauth_session_lock). */
int oauth_session_remove(const char *path, struct error *err);
/*
 * The session lock: an exclusive flock on "<path>.lock", taken by a refresh
 * for its whole length (HTTP call included), by hpcc login around its save
 * and by oauth_session_remove, so that none of them overwrites what another
 * wrote meanwhile. Creates the directory (0700) when missing; refuses
 * (-EPERM) a directory that is not the caller's (or root's) or that group
 * or others can write, and a lock file that is not the caller's. Waits at
 * most OAUTH_LOCK_TIMEOUT_MS (-ETIMEDOUT). Returns the locked fd: closing
 * it releases the lock. The lock file is never removed: a process may be
 * waiting on it, and after a removal a third one would lock a new file of
 * the same name while the waiter locks the old one.
 */
int oauth_session_lock(const char *path, struct error *err);

/* Where the token file of tenant is: remote.auth_file when set, else
 * <cache dir>/auth/<tenant>.json. -EINVAL for a tenant name that is not
 * [A-Za-z0-9._-]{1,64} or starts with '.'. */
int oauth_session_path(const struct config *cfg, const char *tenant, char **ret_path, struct error *err);
bool oauth_tenant_is_valid(const char *tenant);
/* https URLs, and http ones only to a loopback host, matched whole: an IPv4
 * literal in 127.0.0.0/8 (four decimal parts), "localhost" or "[::1]",
 * then an optional ":port" and the end or a '/', '?' or '#'. No user info.
 * The grants refuse other token endpoints (-EPROTONOSUPPORT). */
bool oauth_endpoint_is_allowed(const char *url);

/*
 * Returns (malloc'd) an access token from the token file at path that stays
 * valid for at least min_valid_s more seconds. When the stored one does not,
 * refreshes under oauth_session_lock (rereading the file once the lock is
 * held, since another process may have refreshed meanwhile), saves the new
 * tokens, and returns the new access token. Before saving it rereads the
 * file once more: when a writer that ignores the lock replaced or removed
 * it meanwhile, nothing is saved, and the new token is returned only when
 * the file still holds a session of the same user and tenant (else
 * -ENOENT, "not logged in"). When the save fails, the new token is still
 * returned, and the failure logged (log_warn): the session then ends when
 * that token expires, since the file keeps the spent refresh token.
 * Errors: -ENOENT "not logged in: run hpcc login"; -EKEYEXPIRED "session
 * expired: run hpcc login" when there is no refresh token or the IdP
 * refuses it; a transport error of the refresh when the stored token has
 * already expired (while it is still valid, though for less than
 * min_valid_s, it is returned instead: better a short token than none).
 * Thread-safe: calls are serialised by a mutex.
 */
int oauth_access_token(const char *path, int64_t min_valid_s, char **ret_token, struct error *err);
/* oauth_access_token with the clock given, for tests. */
int oauth_access_token_at(const char *path, int64_t min_valid_s, int64_t now, char **ret_token,
			  struct error *err);
