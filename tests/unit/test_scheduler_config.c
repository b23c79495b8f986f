/*
 * Unit tests for scheduler.ini (src/scheduler/scheduler_config.c): a full
 * file with two tenants, defaults, relative paths, and each kind of
 * mistake refused with a message that names it. Also the worker token file
 * rules (scheduler_read_worker_token).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "scheduler.h"
#include "scheduler_config.h"

#define IMG_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define IMG_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char *dir;  /* the test's temporary directory */

static const char head[] = "[scheduler]\nlisten = 127.0.0.1:0\ncert = c.pem\nkey = k.pem\n"
			   "signing_key = /etc/routing.pem\nworker_token_file = wt\n";

static int load(const char *text, struct scheduler_config *c, struct error *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/scheduler.ini", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	memset(err, 0, sizeof(*err));
	return scheduler_config_load(path, c, err);
}

static void test_full(void **state)
{
	dir = *state;
	char text[4096];
	snprintf(text, sizeof(text),
		 "%sheartbeat_interval_ms = 500\ntoken_ttl = 120\nallow_insecure_idp = true\n"
		 "[tenant acme]\nissuer = http://127.0.0.1:9000\naudience = hpcc\nclient_id = cli\n"
		 "images = %s, %s\nimages = %s\nsticky = false\n"
		 "[tenant globex]\nissuer = https://idp.globex.example\njwks_url = https://idp.globex.example/keys\n"
		 "audience = hpcc\nclient_id = cli\nscope = openid offline_access\nimages = %s\ncache_mode = trusted\n",
		 head, IMG_A, IMG_B, IMG_A, IMG_B);
	struct scheduler_config c;
	struct error err;
	assert_int_equal(load(text, &c, &err), 0);
	assert_int_equal(c.heartbeat_interval_ms, 500);
	assert_int_equal(c.token_ttl, 120);
	assert_int_equal(c.clock_skew, 60);
	assert_string_equal(c.signing_key_file, "/etc/routing.pem");
	char want[4200];
	snprintf(want, sizeof(want), "%s/wt", dir);
	assert_string_equal(c.worker_token_file, want);
	assert_int_equal(c.n_tenants, 2);
	const struct scheduler_tenant *a = scheduler_config_tenant(&c, "acme");
	assert_non_null(a);
	assert_int_equal(a->images.n, 2);  /* repeated digest counted once */
	assert_true(scheduler_tenant_allows(a, IMG_B));
	assert_false(a->sticky);
	assert_null(a->jwks_url);
	assert_string_equal(a->cache_mode, "paranoid");
	const struct scheduler_tenant *g = scheduler_config_tenant(&c, "globex");
	assert_non_null(g);
	assert_true(g->sticky);
	assert_false(scheduler_tenant_allows(g, IMG_A));
	assert_string_equal(g->cache_mode, "trusted");
	assert_null(scheduler_config_tenant(&c, "nobody"));
	scheduler_config_free(&c);
}

static void refused(const char *body, const char *message_part)
{
	char text[4096];
	snprintf(text, sizeof(text), "%s%s", head, body);
	struct scheduler_config c;
	struct error err;
	assert_int_equal(load(text, &c, &err) < 0, 1);
	if (!strstr(err.msg, message_part))
		fail_msg("message '%s' lacks '%s'", err.msg, message_part);
}

static void test_mistakes(void **state)
{
	dir = *state;
	const char *t = "[tenant a]\nissuer = https://i\naudience = x\nclient_id = c\nimages = " IMG_A "\n";
	char buf[1024];
	refused("", "no [tenant ID]");
	refused("[tenant a]\naudience = x\nclient_id = c\nimages = " IMG_A "\n", "issuer is required");
	refused("[tenant a]\nissuer = https://i\nclient_id = c\nimages = " IMG_A "\n", "audience is required");
	refused("[tenant a]\nissuer = https://i\naudience = x\nclient_id = c\n", "images is required");
	refused("[tenant a]\nissuer = http://i\naudience = x\nclient_id = c\nimages = " IMG_A "\n", "plain http");
	refused("[tenant a]\nissuer = ftp://i\n", "not an http(s) URL");
	refused("[tenant a]\nimages = sha256:ABC\n", "not sha256");
	refused("[tenant .a]\nissuer = https://i\n", "tenant id");
	refused("[tenant a/b]\nissuer = https://i\n", "tenant id");
	refused("[tenants]\nissuer = https://i\n", "written [tenant ID]");
	refused("[tenant a]\ncolour = blue\n", "unknown setting tenant a.colour");
	refused("[tenant a]\ncache_mode = yolo\n", "paranoid or trusted");
	snprintf(buf, sizeof(buf), "[scheduler]\ntoken_ttl = 301\n%s", t);
	refused(buf, "token_ttl");
	snprintf(buf, sizeof(buf), "[scheduler]\nheartbeat_interval_ms = 10\n%s", t);
	refused(buf, "heartbeat_interval_ms");
	snprintf(buf, sizeof(buf), "[scheduler]\nlisten_on = x\n%s", t);
	refused(buf, "unknown setting scheduler.listen_on");
	/* A line longer than inih reads is refused rather than half parsed. */
	char longline[400];
	memset(longline, 'a', sizeof(longline));
	snprintf(longline, sizeof(longline), "[tenant a]\nscope = %0300d\n", 1);
	refused(longline, "longer than");
	/* A key given twice, an indented line (inih would join it to the value above). */
	refused("[tenant a]\nissuer = https://i\nissuer = https://evil\n", "set twice");
	snprintf(buf, sizeof(buf), "[scheduler]\ntoken_ttl = 100\ntoken_ttl = 200\n%s", t);
	refused(buf, "scheduler.token_ttl is set twice");
	refused("[tenant a]\nissuer = https://i\n  https://evil.example\n", "indented");
	/* Plain http, even when allowed, only to loopback. */
	snprintf(buf, sizeof(buf),
		 "[scheduler]\nallow_insecure_idp = true\n[tenant a]\nissuer = http://idp.example\naudience = x\n"
		 "client_id = c\nimages = %s\n", IMG_A);
	refused(buf, "loopback");
	/* Two tenants trusting one issuer for one audience would share users. */
	snprintf(buf, sizeof(buf), "%s[tenant b]\nissuer = https://i\naudience = x\nclient_id = c\nimages = %s\n", t,
		 IMG_A);
	refused(buf, "same issuer and audience");
	snprintf(buf, sizeof(buf), "%s[tenant b]\nissuer = https://i\naudience = y\nclient_id = c\nimages = %s\n", t,
		 IMG_A);
	{
		char text[4096];
		snprintf(text, sizeof(text), "%s%s", head, buf);
		struct scheduler_config ok_cfg;
		struct error ok_err;
		assert_int_equal(load(text, &ok_cfg, &ok_err), 0);
		scheduler_config_free(&ok_cfg);
	}
	/* Missing [scheduler] keys. */
	struct scheduler_config c;
	struct error err;
	assert_int_equal(load("[scheduler]\nlisten = x\n[tenant a]\nissuer = https://i\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "cert is required"));
}

static void test_worker_token_file(void **state)
{
	dir = *state;
	char path[4200];
	snprintf(path, sizeof(path), "%s/wt", dir);
	struct error err = { 0 };
	char *tok = NULL;
	FILE *f = fopen(path, "w");
	fputs("0123456789abcdef0123\n", f);
	fclose(f);
	chmod(path, 0640);
	assert_int_equal(scheduler_read_worker_token(path, &tok, &err), -EPERM);
	chmod(path, 0600);
	memset(&err, 0, sizeof(err));
	assert_int_equal(scheduler_read_worker_token(path, &tok, &err), 0);
	assert_string_equal(tok, "0123456789abcdef0123");
	free(tok);
	f = fopen(path, "w");
	fputs("short\n", f);
	fclose(f);
	memset(&err, 0, sizeof(err));
	assert_int_equal(scheduler_read_worker_token(path, &tok, &err), -EINVAL);
	f = fopen(path, "w");
	fputs("two words in a token file\n", f);
	fclose(f);
	memset(&err, 0, sizeof(err));
	assert_int_equal(scheduler_read_worker_token(path, &tok, &err), -EINVAL);
	memset(&err, 0, sizeof(err));
	assert_int_equal(scheduler_read_worker_token("/nonexistent/wt", &tok, &err), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_mistakes, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_worker_token_file, testutil_setup_tmpdir, testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
