/*
 * `hpcc login`, `hpcc logout`, `hpcc auth status` (see login.h). login asks
 * the scheduler, over its pinned TLS channel, which IdP serves the tenant
 * (GetTenantIdP, unauthenticated), takes the username and password (from
 * options, HPCC_USERNAME / HPCC_PASSWORD, or the terminal with echo off),
 * runs the password grant there, and only then writes the token file: a
 * refused password leaves an earlier session as it was. The password is
 * wiped from memory (and from our environment) once sent, and the terminal
 * is restored on every path, a signal included (on Ctrl-Z until the job
 * comes back to the foreground). login and logout take the session lock of
 * oauth.h, so that a refresh in flight in hpccd cannot undo them.
 */
#include "login.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "commands.h"
#include "config.h"
#include "oauth.h"
#include "rpc.h"
#include "scheduler.pb-c.h"

#define GET_TENANT_IDP_METHOD "/hpcc.v1.SchedulerService/GetTenantIdP"
#define IDP_REPLY_MAX (64 * 1024)
#define USERNAME_MAX 256

DEFINE_CLEANUP_FUNC(struct rpc_channel, rpc_channel_free)

struct options {
	const char *tenant, *scheduler, *pin, *username;
};

/* Parses --tenant, and with login also --scheduler, --scheduler-pin and
 * --username. Returns 0, or 2 (usage) after printing why. */
static int parse_options(const char *cmd, int argc, char **argv, int first, bool login, struct options *o)
{
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = NULL;
		if (strcmp(a, "--tenant") == 0)
			slot = &o->tenant;
		else if (login && strcmp(a, "--scheduler") == 0)
			slot = &o->scheduler;
		else if (login && strcmp(a, "--scheduler-pin") == 0)
			slot = &o->pin;
		else if (login && strcmp(a, "--username") == 0)
			slot = &o->username;
		if (!slot || !v) {
			fprintf(stderr, "hpcc: %s: %s %s\n", cmd, slot ? "missing value for" : "unknown option", a);
			fprintf(stderr, login ? "usage: hpcc login [--tenant T] [--scheduler ADDR --scheduler-pin PIN] [--username U]\n"
					      : "usage: hpcc %s [--tenant T]\n",
				cmd);
			return 2;
		}
		*slot = v;
		i++;
	}
	return 0;
}

static void format_utc(int64_t t, char out[64])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm) || strftime(out, 64, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, 64, "@%lld", (long long)t);
}

/* --- the terminal --- */

/* What a signal handler needs to give the terminal its echo back (and to
 * take it away again after a stop). */
static struct {
	volatile sig_atomic_t active;    /* a secret prompt is running */
	volatile sig_atomic_t echo_off;  /* the terminal is in the quiet state */
	int fd;
	struct termios saved, quiet;
	const char *prompt;
} tty_state = { .fd = -1 };

static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
/* Job control: the process stops, and the shell takes the terminal back. */
static const int tty_stop_signals[] = { SIGTSTP, SIGTTIN, SIGTTOU };

static void tty_restore_on_signal(int sig)
{
	if (tty_state.echo_off)
		tcsetattr(tty_state.fd, TCSAFLUSH, &tty_state.saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void tty_stop_on_signal(int sig);

static void tty_catch_stop(int sig, struct sigaction *old)
{
	struct sigaction sa = { .sa_handler = tty_stop_on_signal };
	/* The stop signals are held while one is handled: the terminal calls
	 * below would otherwise raise SIGTTOU into this very handler. */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(tty_stop_signals); i++)
		sigaddset(&sa.sa_mask, tty_stop_signals[i]);
	sigaction(sig, &sa, old);
}

/*
 * Ctrl-Z (or a background read or write): give the terminal its echo
 * back, stop with the default action, and once continued, if we are in
 * the foreground again, turn echo off and prompt again (the line typed so
 * far was flushed). In the background the echo stays on: a read there
 * stops us once more, through this handler.
 */
static void tty_stop_on_signal(int sig)
{
	int saved_errno = errno;
	if (tty_state.echo_off) {
		tcsetattr(tty_state.fd, TCSAFLUSH, &tty_state.saved);
		tty_state.echo_off = 0;
	}
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);  /* stops here until SIGCONT */
	sigprocmask(SIG_BLOCK, &set, NULL);
	tty_catch_stop(sig, NULL);
	if (tty_state.active && tcgetpgrp(tty_state.fd) == getpgrp() &&
	    tcsetattr(tty_state.fd, TCSAFLUSH, &tty_state.quiet) == 0) {
		tty_state.echo_off = 1;
		(void)!write(tty_state.fd, "\n", 1);
		(void)!write(tty_state.fd, tty_state.prompt, strlen(tty_state.prompt));
	}
	errno = saved_errno;
}

/* Prompts on /dev/tty and reads one line into out (NUL-terminated), with
 * echo off when secret. -ENXIO when there is no terminal. */
static int tty_read_line(const char *prompt, bool secret, char *out, size_t size, struct error *err)
{
	_cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return error_set(err, -ENXIO, "no terminal");
	struct sigaction old[ARRAY_SIZE(tty_signals)], old_stop[ARRAY_SIZE(tty_stop_signals)];
	if (secret) {
		struct termios saved;
		if (tcgetattr(fd, &saved) < 0)
			return error_set(err, -ENXIO, "/dev/tty is not a terminal");
		tty_state.fd = fd;
		tty_state.saved = saved;
		tty_state.quiet = saved;
		tty_state.quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		tty_state.prompt = prompt;
		struct sigaction sa = { .sa_handler = tty_restore_on_signal };
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < ARRAY_SIZE(tty_signals); i++)
			sigaction(tty_signals[i], &sa, &old[i]);
		for (size_t i = 0; i < ARRAY_SIZE(tty_stop_signals); i++)
			tty_catch_stop(tty_stop_signals[i], &old_stop[i]);
		tty_state.active = 1;
		if (tcsetattr(fd, TCSAFLUSH, &tty_state.quiet) == 0)
			tty_state.echo_off = 1;
	}
	(void)!write(fd, prompt, strlen(prompt));
	size_t len = 0;
	int r = 0;
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = len ? 0 : error_set(err, -ENODATA, "nothing was typed");
			break;
		}
		if (c == '\n' || c == '\r')
			break;
		if (len + 1 >= size) {
			r = error_set(err, -E2BIG, "longer than %zu bytes", size - 1);
			continue;  /* the rest of the line is consumed */
		}
		out[len++] = c;
	}
	out[r < 0 ? 0 : len] = '\0';
	if (r < 0)
		OPENSSL_cleanse(out, size);
	if (secret) {
		/* Held while the terminal is put back, so that a stop cannot come
		 * between the restore and the flags. */
		sigset_t stops, before;
		sigemptyset(&stops);
		for (size_t i = 0; i < ARRAY_SIZE(tty_stop_signals); i++)
			sigaddset(&stops, tty_stop_signals[i]);
		sigprocmask(SIG_BLOCK, &stops, &before);
		if (tty_state.echo_off)
			tcsetattr(fd, TCSAFLUSH, &tty_state.saved);
		tty_state.echo_off = 0;
		tty_state.active = 0;
		for (size_t i = 0; i < ARRAY_SIZE(tty_signals); i++)
			sigaction(tty_signals[i], &old[i], NULL);
		for (size_t i = 0; i < ARRAY_SIZE(tty_stop_signals); i++)
			sigaction(tty_stop_signals[i], &old_stop[i], NULL);
		sigprocmask(SIG_SETMASK, &before, NULL);
		(void)!write(fd, "\n", 1);  /* the Enter that was not echoed */
	}
	return r;
}

/* --- the scheduler --- */

static bool reply_field_ok(const char *s, bool required)
{
	if (!s || !s[0])
		return !required;
	size_t n = strnlen(s, OAUTH_FIELD_MAX + 1);
	if (n > OAUTH_FIELD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static char *dup_or_null(const char *s) { return s && s[0] ? strdup(s) : NULL; }

/* Fills s's IdP fields from the scheduler's GetTenantIdP answer. */
static int fetch_idp(const char *scheduler, const char *pin, const char *tenant, struct oauth_session *s,
		     struct error *err)
{
	struct rpc_channel_config cc = { .target = scheduler, .pin = pin, .max_message = IDP_REPLY_MAX };
	_cleanup_(rpc_channel_freep) struct rpc_channel *ch = NULL;
	int r = rpc_channel_new(&cc, &ch, err);
	if (r < 0)
		return r;
	Hpcc__V1__GetTenantIdPRequest req = HPCC__V1__GET_TENANT_ID_PREQUEST__INIT;
	req.tenant = (char *)tenant;
	uint8_t packed[OAUTH_TENANT_MAX + 16];
	size_t n = hpcc__v1__get_tenant_id_prequest__get_packed_size(&req);
	if (n > sizeof(packed))
		return error_set(err, -E2BIG, "tenant name too long");
	hpcc__v1__get_tenant_id_prequest__pack(&req, packed);
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, IDP_REPLY_MAX);
	struct rpc_status st = { 0 };
	r = rpc_unary(ch, GET_TENANT_IDP_METHOD, packed, n, LOGIN_SCHEDULER_TIMEOUT_MS, &reply, &st);
	if (r < 0)
		return error_set(err, r, "cannot ask the scheduler at %s: %s", scheduler, strerror(-r));
	switch (st.code) {
	case GRPC_STATUS_OK:
		break;
	case GRPC_STATUS_UNAVAILABLE:
		return error_set(err, -EHOSTUNREACH,
				 "cannot reach the scheduler at %s (%s); check remote.scheduler, and remote.scheduler_pin "
				 "against its certificate",
				 scheduler, st.msg);
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return error_set(err, -ETIMEDOUT, "the scheduler at %s did not answer within %d s", scheduler,
				 LOGIN_SCHEDULER_TIMEOUT_MS / 1000);
	case GRPC_STATUS_NOT_FOUND:
		return error_set(err, -ENOENT, "the scheduler at %s knows no tenant %s", scheduler, tenant);
	case GRPC_STATUS_UNIMPLEMENTED:
		return error_set(err, -EPROTONOSUPPORT, "%s is not an hpcc scheduler (no GetTenantIdP)", scheduler);
	default:
		return error_set(err, -EPROTO, "the scheduler at %s refused GetTenantIdP: %s (status %d)", scheduler,
				 st.msg, st.code);
	}
	Hpcc__V1__GetTenantIdPReply *idp =
		hpcc__v1__get_tenant_id_preply__unpack(NULL, reply.len, (const uint8_t *)reply.data);
	if (!idp)
		return error_set(err, -EPROTO, "the scheduler's GetTenantIdP answer does not parse");
	r = 0;
	if (!reply_field_ok(idp->token_endpoint, true) || !reply_field_ok(idp->client_id, true) ||
	    !reply_field_ok(idp->issuer, false) || !reply_field_ok(idp->scope, false) ||
	    !reply_field_ok(idp->audience, false))
		r = error_set(err, -EPROTO, "the scheduler's IdP settings for tenant %s are incomplete or malformed", tenant);
	else if (!oauth_endpoint_is_allowed(idp->token_endpoint))
		r = error_set(err, -EPROTONOSUPPORT,
			      "the token endpoint of tenant %s is not an https URL (http only on loopback): %.200s", tenant,
			      idp->token_endpoint);
	if (r == 0) {
		s->issuer = dup_or_null(idp->issuer);
		s->token_endpoint = strdup(idp->token_endpoint);
		s->client_id = strdup(idp->client_id);
		s->scope = dup_or_null(idp->scope);
		s->audience = dup_or_null(idp->audience);
		if (!s->token_endpoint || !s->client_id)
			r = error_set(err, -ENOMEM, "out of memory");
	}
	hpcc__v1__get_tenant_id_preply__free_unpacked(idp, NULL);
	return r;
}

/* --- commands --- */

/* The tenant from the options or the config; prints why there is none. */
static const char *pick_tenant(const char *cmd, const struct options *o, const struct config *cfg)
{
	const char *t = o->tenant ? o->tenant : config_get(cfg, CONFIG_REMOTE_TENANT);
	if (!t || !t[0]) {
		fprintf(stderr, "hpcc: %s: no tenant: pass --tenant T or set remote.tenant (HPCC_REMOTE_TENANT)\n", cmd);
		return NULL;
	}
	if (!oauth_tenant_is_valid(t)) {
		fprintf(stderr, "hpcc: %s: tenant name '%.64s' is not [A-Za-z0-9._-]{1,64}\n", cmd, t);
		return NULL;
	}
	return t;
}

static void password_wipe(char *pw, size_t size)
{
	OPENSSL_cleanse(pw, size);
	/* HPCC_PASSWORD too: the environment is readable in /proc while we run. */
	char *env = getenv("HPCC_PASSWORD");
	if (env) {
		OPENSSL_cleanse(env, strlen(env));
		unsetenv("HPCC_PASSWORD");
	}
}

static int login_run(const struct options *o, struct config *cfg)
{
	const char *tenant = pick_tenant("login", o, cfg);
	if (!tenant)
		return 1;
	const char *scheduler = o->scheduler ? o->scheduler : config_get(cfg, CONFIG_REMOTE_SCHEDULER);
	const char *pin = o->pin ? o->pin : config_get(cfg, CONFIG_REMOTE_SCHEDULER_PIN);
	if (!scheduler || !scheduler[0]) {
		fprintf(stderr, "hpcc: login: no scheduler: pass --scheduler HOST:PORT or set remote.scheduler\n");
		return 1;
	}
	if (!pin || !pin[0]) {
		fprintf(stderr, "hpcc: login: no pin for the scheduler's certificate: pass --scheduler-pin sha256:<hex> "
				"or set remote.scheduler_pin\n");
		return 1;
	}
	struct error err = { 0 };
	_cleanup_free_ char *path = NULL;
	if (oauth_session_path(cfg, tenant, &path, &err) < 0) {
		fprintf(stderr, "hpcc: login: %s\n", err.msg);
		return 1;
	}

	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	s.tenant = strdup(tenant);
	s.scheduler = strdup(scheduler);
	if (!s.tenant || !s.scheduler)
		return 1;
	if (fetch_idp(scheduler, pin, tenant, &s, &err) < 0) {
		fprintf(stderr, "hpcc: login: %s\n", err.msg);
		return 1;
	}

	char username[USERNAME_MAX + 1];
	const char *given = o->username ? o->username : getenv("HPCC_USERNAME");
	if (given && given[0]) {
		if (strlen(given) > USERNAME_MAX) {
			fprintf(stderr, "hpcc: login: the username is longer than %d bytes\n", USERNAME_MAX);
			return 1;
		}
		snprintf(username, sizeof(username), "%s", given);
	} else {
		char prompt[128];
		snprintf(prompt, sizeof(prompt), "Username for tenant %s: ", tenant);
		if (tty_read_line(prompt, false, username, sizeof(username), &err) < 0 || !username[0]) {
			fprintf(stderr, "hpcc: login: no username (%s): pass --username or set HPCC_USERNAME\n",
				err.code ? err.msg : "empty");
			return 1;
		}
	}
	s.username = strdup(username);
	if (!s.username)
		return 1;

	char password[LOGIN_PASSWORD_MAX + 1];
	const char *env = getenv("HPCC_PASSWORD");
	if (env) {
		if (strlen(env) > LOGIN_PASSWORD_MAX) {
			password_wipe(password, sizeof(password));
			fprintf(stderr, "hpcc: login: HPCC_PASSWORD is longer than %d bytes\n", LOGIN_PASSWORD_MAX);
			return 1;
		}
		snprintf(password, sizeof(password), "%s", env);
	} else {
		char prompt[USERNAME_MAX + 128];
		snprintf(prompt, sizeof(prompt), "Password for %s at tenant %s: ", username, tenant);
		error_clear(&err);
		int r = tty_read_line(prompt, true, password, sizeof(password), &err);
		if (r == -ENXIO) {
			password_wipe(password, sizeof(password));
			fprintf(stderr, "hpcc: login: no terminal to ask for the password on; set HPCC_PASSWORD\n");
			return 1;
		}
		if (r < 0) {
			password_wipe(password, sizeof(password));
			fprintf(stderr, "hpcc: login: no password: %s\n", err.msg);
			return 1;
		}
	}
	error_clear(&err);
	int r = oauth_password_grant(&s, password, (int64_t)time(NULL), &err);
	password_wipe(password, sizeof(password));
	if (r < 0) {
		fprintf(stderr, "hpcc: login: %s\n", err.msg);
		return 1;
	}
	/* Under the session lock: a refresh of the old session that is in
	 * flight in hpccd finishes first, and cannot overwrite this one. */
	int lock = oauth_session_lock(path, &err);
	if (lock < 0) {
		fprintf(stderr, "hpcc: login: %s\n", err.msg);
		return 1;
	}
	r = oauth_session_save(path, &s, &err);
	close(lock);
	if (r < 0) {
		fprintf(stderr, "hpcc: login: %s\n", err.msg);
		return 1;
	}
	char until[64];
	format_utc(s.expires_at, until);
	printf("logged in to tenant %s as %s (token valid until %s)\n", tenant, username, until);
	return 0;
}

int login_main(int argc, char **argv)
{
	struct options o = { 0 };
	int r = parse_options("login", argc, argv, 1, true, &o);
	if (r)
		return r;
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	rpc_global_init();
	int code = login_run(&o, &cfg);
	rpc_global_shutdown();
	config_free(&cfg);
	return code;
}

/* The token file for --tenant / remote.tenant, or remote.auth_file alone. */
static char *session_path(const char *cmd, const struct options *o, const struct config *cfg, const char **ret_tenant)
{
	const char *file = config_get(cfg, CONFIG_REMOTE_AUTH_FILE);
	const char *tenant = NULL;
	if (o->tenant || !file || !file[0]) {
		tenant = pick_tenant(cmd, o, cfg);
		if (!tenant)
			return NULL;
	}
	struct error err = { 0 };
	char *path = NULL;
	if (oauth_session_path(cfg, tenant, &path, &err) < 0) {
		fprintf(stderr, "hpcc: %s: %s\n", cmd, err.msg);
		return NULL;
	}
	*ret_tenant = tenant;
	return path;
}

int logout_main(int argc, char **argv)
{
	struct options o = { 0 };
	int r = parse_options("logout", argc, argv, 1, false, &o);
	if (r)
		return r;
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	const char *tenant = NULL;
	_cleanup_free_ char *path = session_path("logout", &o, &cfg, &tenant);
	int code = 1;
	if (path) {
		struct error err = { 0 };
		r = oauth_session_remove(path, &err);
		if (r < 0)
			fprintf(stderr, "hpcc: logout: %s\n", err.msg);
		else if (r > 0)
			printf("logged out%s%s (removed %s)\n", tenant ? " of tenant " : "", tenant ? tenant : "", path);
		else
			printf("not logged in%s%s (no token file %s): nothing to do\n", tenant ? " to tenant " : "",
			       tenant ? tenant : "", path);
		code = r < 0 ? 1 : 0;
	}
	config_free(&cfg);
	return code;
}

static void describe_left(int64_t left, char out[64])
{
	if (left >= 2 * 86400)
		snprintf(out, 64, "%lld days", (long long)(left / 86400));
	else if (left >= 2 * 3600)
		snprintf(out, 64, "%lld h", (long long)(left / 3600));
	else if (left >= 120)
		snprintf(out, 64, "%lld min", (long long)(left / 60));
	else
		snprintf(out, 64, "%lld s", (long long)left);
}

int auth_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "status") != 0) {
		fprintf(stderr, "usage: hpcc auth status [--tenant T]\n");
		return 2;
	}
	struct options o = { 0 };
	int r = parse_options("auth status", argc, argv, 2, false, &o);
	if (r)
		return r;
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	const char *tenant_in_cfg = NULL;
	_cleanup_free_ char *path = session_path("auth status", &o, &cfg, &tenant_in_cfg);
	/* The tenant may point into cfg: copied before cfg goes. */
	_cleanup_free_ char *tenant = tenant_in_cfg ? strdup(tenant_in_cfg) : NULL;
	config_free(&cfg);
	if (!path)
		return 1;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	struct error err = { 0 };
	r = oauth_session_load(path, &s, &err);
	if (r == -ENOENT) {
		printf("tenant %s: not logged in (run hpcc login)\n", tenant ? tenant : "?");
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "hpcc: auth status: %s\n", err.msg);
		return 1;
	}
	int64_t now = (int64_t)time(NULL);
	char until[64], left[64];
	format_utc(s.expires_at, until);
	describe_left(s.expires_at - now, left);
	bool valid = s.expires_at > now;
	bool refreshable = s.refresh_token && s.refresh_token[0];
	printf("tenant:        %s\n", s.tenant);
	printf("user:          %s\n", s.username ? s.username : "(unknown)");
	printf("issuer:        %s\n", s.issuer ? s.issuer : "(unknown)");
	printf("scheduler:     %s\n", s.scheduler ? s.scheduler : "(unknown)");
	printf("token file:    %s\n", path);
	if (valid)
		printf("access token:  valid until %s (%s left)\n", until, left);
	else
		printf("access token:  expired at %s\n", until);
	printf("refresh token: %s\n", refreshable ? "held (the daemon refreshes the access token)" : "none");
	if (!valid && !refreshable)
		printf("session over: run hpcc login\n");
	return valid || refreshable ? 0 : 1;
}
