/*
 * `hpcc scheduler init DIR` (TLS certificate, routing-token signing key,
 * worker token, a scheduler.ini to add tenants to) and `hpcc scheduler
 * [run] --config FILE` (serves until SIGTERM or SIGINT).
 */
#include "scheduler_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "config.h"
#include "fs.h"
#include "jwt.h"
#include "oauth.h"
#include "scheduler.pb-c.h"
#include <openssl/crypto.h>
#include <time.h>
#include "log.h"
#include "rpc.h"
#include "rpc_serve.h"
#include "scheduler.h"
#include "token.h"
#include "x509.h"

static void usage(void)
{
	fputs("usage: hpcc scheduler init DIR [--listen ADDR] [--name DNS]... [--force]\n"
	      "       hpcc scheduler [run] [--config FILE] [--port-file FILE]\n"
	      "       hpcc scheduler route [--scheduler ADDR --pin PIN] [--tenant T] [--image DIGEST]\n"
	      "                            [--access-token-file F] [--token-out F]\n",
	      stderr);
}

static int write_file(const char *dir, const char *name, const char *text, mode_t mode, char **ret_path)
{
	_cleanup_free_ char *p = path_join(dir, name);
	if (!p)
		return -ENOMEM;
	int r = fs_write_atomic(p, text, strlen(text), mode, true);
	if (r < 0) {
		fprintf(stderr, "hpcc: scheduler init: %s: %s\n", p, strerror(-r));
		return r;
	}
	if (ret_path)
		*ret_path = TAKE_PTR(p);
	return 0;
}

static int init_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ 0 },
	};
	const char *listen = "127.0.0.1:7700";
	const char *names[X509_MAX_NAMES] = { "localhost" };
	size_t n_names = 1;
	bool force = false;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'l')
			listen = optarg;
		else if (o == 'n' && n_names < X509_MAX_NAMES)
			names[n_names++] = optarg;
		else if (o == 'f')
			force = true;
		else {
			usage();
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage();
		return 2;
	}
	const char *dir = argv[optind];
	_cleanup_free_ char *ini = path_join(dir, "scheduler.ini");
	struct stat st;
	if (!ini || (!force && stat(ini, &st) == 0)) {
		fprintf(stderr, "hpcc: scheduler init: %s exists (use --force to replace it)\n", ini ? ini : dir);
		return 1;
	}
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0) {
		fprintf(stderr, "hpcc: scheduler init: %s: %s\n", dir, strerror(-r));
		return 1;
	}
	struct error err = { 0 };
	_cleanup_free_ char *cert = NULL, *key = NULL;
	const char *ips[] = { "127.0.0.1", "::1" };
	char fp[DIGEST_STR_LEN + 1];
	if (x509_self_signed("hpcc-scheduler", names, n_names, ips, ARRAY_SIZE(ips), 825, &cert, &key, &err) < 0 ||
	    x509_fingerprint_pem(cert, fp) < 0) {
		fprintf(stderr, "hpcc: scheduler init: certificate: %s\n", err.msg[0] ? err.msg : "failed");
		return 1;
	}
	_cleanup_(token_key_freep) struct token_key *tk = NULL;
	_cleanup_free_ char *signing = path_join(dir, "routing.pem");
	if (!signing || token_key_generate(&tk) < 0 || token_key_save_private(tk, signing, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler init: signing key: %s\n", err.msg[0] ? err.msg : "failed");
		return 1;
	}
	unsigned char raw[32];
	char hex[2 * sizeof(raw) + 2];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return 1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	hex[2 * sizeof(raw)] = '\n';
	hex[2 * sizeof(raw) + 1] = '\0';
	char text[2048];
	snprintf(text, sizeof(text),
		 "# hpcc scheduler (docs/scheduler.md). Relative paths are relative to this file.\n"
		 "[scheduler]\n"
		 "listen = %s\n"
		 "cert = scheduler.crt\n"
		 "key = scheduler.key\n"
		 "signing_key = routing.pem\n"
		 "worker_token_file = worker-token\n"
		 "heartbeat_interval_ms = 5000\n"
		 "token_ttl = 300\n"
		 "\n"
		 "# One section per tenant, for example:\n"
		 "# [tenant acme]\n"
		 "# issuer = https://idp.acme.example\n"
		 "# audience = hpcc\n"
		 "# client_id = hpcc-cli\n"
		 "# scope = openid offline_access\n"
		 "# images = sha256:<64 hex>\n"
		 "# (jwks_url and token_url default to the issuer's discovery document)\n",
		 listen);
	_cleanup_free_ char *token_path = NULL;
	if (write_file(dir, "scheduler.crt", cert, 0644, NULL) < 0 || write_file(dir, "scheduler.key", key, 0600, NULL) < 0 ||
	    write_file(dir, "worker-token", hex, 0600, &token_path) < 0 || write_file(dir, "scheduler.ini", text, 0644, NULL) < 0)
		return 1;
	printf("scheduler config %s\n"
	       "certificate pin %s\n"
	       "worker token file %s (copy it to each worker, mode 0600)\n"
	       "add [tenant ID] sections to scheduler.ini before starting it\n",
	       ini, fp, token_path);
	return 0;
}

static int run_scheduler(void *s) { return scheduler_run(s); }
static void stop_scheduler(void *s) { scheduler_stop(s); }

static int run_main(int argc, char **argv)
{
	const char *config = getenv("HPCC_SCHEDULER_CONFIG");
	const char *port_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "run") == 0 && i == 1)
			continue;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (!config)
		config = "scheduler.ini";
	const char *level_text = getenv("HPCC_LOG_LEVEL");
	int level = log_level_parse(level_text ? level_text : "info");
	log_open(getenv("HPCC_LOG_FILE"), level < 0 ? LOG_INFO : (enum log_level)level);
	struct scheduler_config cfg;
	struct error err = { 0 };
	if (scheduler_config_load(config, &cfg, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler: %s\n", err.msg);
		return 1;
	}
	sigset_t set;
	rpc_serve_block_signals(&set);
	rpc_global_init();
	struct scheduler *s = NULL;
	if (scheduler_new(&cfg, &s, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler: %s\n", err.msg);
		rpc_global_shutdown();
		return 1;
	}
	struct rpc_serve serve = { .what = "scheduler", .port = scheduler_port(s), .port_file = port_file,
				   .run = run_scheduler, .stop = stop_scheduler, .obj = s };
	int r = rpc_serve_run(&serve, &set);
	scheduler_free(s);
	rpc_global_shutdown();
	return r < 0 ? 1 : 0;
}

/* ---- route: ask Route once, as the daemon would (diagnostics, tests) ---- */

static int route_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scheduler", required_argument, NULL, 's' }, { "pin", required_argument, NULL, 'p' },
		{ "tenant", required_argument, NULL, 't' },    { "image", required_argument, NULL, 'i' },
		{ "access-token-file", required_argument, NULL, 'a' }, { "token-out", required_argument, NULL, 'o' },
		{ 0 },
	};
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	rpc_global_init();  /* before any TLS context of the process, curl's included */
	const char *sched = config_get(&cfg, CONFIG_REMOTE_SCHEDULER), *pin = config_get(&cfg, CONFIG_REMOTE_SCHEDULER_PIN);
	const char *tenant = config_get(&cfg, CONFIG_REMOTE_TENANT), *image = config_get(&cfg, CONFIG_REMOTE_IMAGE);
	const char *access_file = NULL, *out = NULL;
	int o, code = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': sched = optarg; break;
		case 'p': pin = optarg; break;
		case 't': tenant = optarg; break;
		case 'i': image = optarg; break;
		case 'a': access_file = optarg; break;
		case 'o': out = optarg; break;
		default: usage(); config_free(&cfg); return 2;
		}
	}
	struct error err = { 0 };
	_cleanup_free_ char *access = NULL, *session = NULL;
	_cleanup_free_ uint8_t *packed = NULL;
	_cleanup_buf_ struct buf text, reply;
	buf_init(&text, JWT_MAX_SIZE + 1);
	buf_init(&reply, 16 * 1024);
	struct rpc_channel *ch = NULL;
	if (!sched || !pin || !tenant || !image) {
		fprintf(stderr, "hpcc: scheduler route: needs remote.scheduler, remote.scheduler_pin, remote.tenant and "
				"remote.image (or --scheduler, --pin, --tenant, --image)\n");
		goto out;
	}
	if (access_file) {
		int r = fs_read_file(access_file, JWT_MAX_SIZE, &text);
		if (r < 0) {
			fprintf(stderr, "hpcc: scheduler route: %s: %s\n", access_file, strerror(-r));
			goto out;
		}
		while (text.len && (text.data[text.len - 1] == '\n' || text.data[text.len - 1] == '\r'))
			text.data[--text.len] = '\0';
		access = strndup(text.data, text.len);
	} else if (oauth_session_path(&cfg, tenant, &session, &err) < 0 ||
		   oauth_access_token(session, 30, &access, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler route: %s\n", err.msg);
		goto out;
	}
	if (!access)
		goto out;
	struct rpc_channel_config cc = { .target = sched, .pin = pin, .max_message = 16 * 1024 };
	if (rpc_channel_new(&cc, &ch, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler route: %s\n", err.msg);
		goto out;
	}
	Hpcc__V1__RouteRequest req = HPCC__V1__ROUTE_REQUEST__INIT;
	req.tenant = (char *)tenant;
	req.image_digest = (char *)image;
	req.access_token = access;
	size_t len = hpcc__v1__route_request__get_packed_size(&req);
	if (!(packed = malloc(len ? len : 1)))
		goto out;
	hpcc__v1__route_request__pack(&req, packed);
	struct rpc_status st = { 0 };
	int r = rpc_unary(ch, "/hpcc.v1.SchedulerService/Route", packed, len, 10000, &reply, &st);
	if (r < 0 || st.code != GRPC_STATUS_OK) {
		fprintf(stderr, "hpcc: scheduler route: refused (status %d): %s\n", r < 0 ? -1 : st.code,
			r < 0 ? strerror(-r) : st.msg);
		goto out;
	}
	Hpcc__V1__RouteReply *rep = hpcc__v1__route_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
	if (!rep) {
		fprintf(stderr, "hpcc: scheduler route: malformed answer\n");
		goto out;
	}
	printf("worker %s at %s (pin %s)\nrouting token expires in %lld s, cache mode %s\n", rep->worker_id,
	       rep->worker_address, rep->worker_cert_fingerprint, (long long)(rep->expires_at - time(NULL)),
	       rep->cache_mode);
	code = 0;
	if (out && token_write_file(out, rep->routing_token.data, rep->routing_token.len, &err) < 0) {
		fprintf(stderr, "hpcc: scheduler route: %s\n", err.msg);
		code = 1;
	}
	hpcc__v1__route_reply__free_unpacked(rep, NULL);
out:
	if (access)
		OPENSSL_cleanse(access, strlen(access));
	rpc_channel_free(ch);
	config_free(&cfg);
	return code;
}

int scheduler_command(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "route") == 0)
		return route_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "init") == 0)
		return init_main(argc - 1, argv + 1);
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage();
		return 0;
	}
	return run_main(argc, argv);
}
