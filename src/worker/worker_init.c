/*
 * Worker set-up and token commands (see worker_init.h).
 */
#include "worker_init.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compiler.h"
#include "fs.h"
#include "image_store.h"
#include "token.h"
#include "worker_config.h"
#include "x509.h"

int worker_host_image(const char *search_path, char ret[80])
{
	/* unsafe-local runs the host's compilers: the "image" is their
	 * identities (binary and --version), so that a compiler upgrade on the
	 * worker changes every action digest, as a new image would. */
	static const char *const names[] = { "gcc", "g++", "cc", "c++", "clang", "clang++" };
	struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	hasher_update(&h, "hpcc-unsafe-local-v1", 21);
	_cleanup_free_ char *copy = strdup(search_path);
	for (size_t i = 0; copy && i < ARRAY_SIZE(names); i++) {
		char *save = NULL;
		_cleanup_free_ char *dirs = strdup(copy);
		for (char *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
			_cleanup_free_ char *p = path_join(d, names[i]);
			struct toolchain tc;
			if (p && access(p, X_OK) == 0 && compiler_identify(p, &tc) == 0) {
				hasher_update(&h, names[i], strlen(names[i]) + 1);
				hasher_update(&h, tc.id.b, DIGEST_LEN);
				break;
			}
		}
	}
	struct digest d;
	r = hasher_final(&h, &d);
	hasher_free(&h);
	if (r == 0)
		digest_to_string(&d, ret);
	return r;
}

#define USAGE                                                                                                   \
	"usage: hpcc worker init DIR (--signing-key FILE | --verify-key FILE | --scheduler ADDR[,ADDR...] "    \
	"--scheduler-pin PIN[,PIN...] --worker-token-file FILE [--advertise HOST:PORT]) [--id ID] [--listen ADDR] " \
	"[--name DNS]... [--image DIGEST] [--allow-unsafe-local | --microvm --kernel FILE --initrd FILE "       \
	"[--allow-tcg]] [--force]\n"

/* The [scheduler] section, from --scheduler and its companions; checked
 * again as a whole when worker.ini is loaded at the end of init. */
static int scheduler_section(const char *addresses, const char *pins, const char *token_file, const char *advertise,
			     const char *listen, char **ret)
{
	struct strv a = { 0 }, p = { 0 };
	_cleanup_free_ char *abs_token = NULL;
	struct buf b;
	buf_init(&b, 8192);
	char host[WORKER_HOSTPORT_MAX + 1];
	unsigned port = 0;
	int r = 0;
	_cleanup_free_ char *copy = strdup(addresses), *pcopy = strdup(pins);
	char *save = NULL;
	for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t && r == 0; t = strtok_r(NULL, ", ", &save))
		r = strv_push(&a, t);
	save = NULL;
	for (char *t = pcopy ? strtok_r(pcopy, ", ", &save) : NULL; t && r == 0; t = strtok_r(NULL, ", ", &save))
		r = strv_push(&p, t);
	if (r < 0 || !copy || !pcopy) {
		r = -ENOMEM;
		goto out;
	}
	r = -EINVAL;
	if (a.n == 0 || a.n > WORKER_SCHEDULERS_MAX) {
		fprintf(stderr, "hpcc: worker init: --scheduler takes 1 to %d host:port addresses\n", WORKER_SCHEDULERS_MAX);
		goto out;
	}
	for (size_t i = 0; i < a.n; i++)
		if (worker_config_split_hostport(a.v[i], host, &port) < 0 || port == 0) {
			fprintf(stderr, "hpcc: worker init: --scheduler: '%s' is not host:port\n", a.v[i]);
			goto out;
		}
	for (size_t i = 0; i < p.n; i++) {
		struct digest d;
		if (strlen(p.v[i]) != DIGEST_STR_LEN || strncmp(p.v[i], DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 ||
		    digest_parse(p.v[i], &d) < 0) {
			fprintf(stderr, "hpcc: worker init: --scheduler-pin: '%s' is not sha256:<64 hex> (the scheduler's "
					"certificate pin)\n", p.v[i]);
			goto out;
		}
	}
	if (p.n != 1 && p.n != a.n) {
		fprintf(stderr, "hpcc: worker init: --scheduler-pin takes one pin, or one per --scheduler address\n");
		goto out;
	}
	if (advertise && (worker_config_split_hostport(advertise, host, &port) < 0 || worker_config_host_is_wildcard(host))) {
		fprintf(stderr, "hpcc: worker init: --advertise takes the host:port clients dial\n");
		goto out;
	}
	if (!advertise && (worker_config_split_hostport(listen, host, &port) < 0 || worker_config_host_is_wildcard(host))) {
		fprintf(stderr, "hpcc: worker init: give --advertise HOST:PORT: the listen address %s is not one clients "
				"can dial\n", listen);
		goto out;
	}
	if (!(abs_token = realpath(token_file, NULL))) {
		fprintf(stderr, "hpcc: worker init: --worker-token-file %s: %s\n", token_file, strerror(errno));
		goto out;
	}
	buf_printf(&b, "\n[scheduler]\n"
		       "# Registers with each scheduler (replicas), which hands out the key that\n"
		       "# verifies routing tokens and routes clients to this worker.\n"
		       "address = ");
	for (size_t i = 0; i < a.n; i++)
		buf_printf(&b, "%s%s", i ? ", " : "", a.v[i]);
	buf_printf(&b, "\n# sha256 of the scheduler's certificate: one for all, or one per address.\npin = ");
	for (size_t i = 0; i < p.n; i++)
		buf_printf(&b, "%s%s", i ? ", " : "", p.v[i]);
	buf_printf(&b, "\n# The scheduler's worker token (mode 0600).\nworker_token_file = %s\n", abs_token);
	if (advertise)
		buf_printf(&b, "# What clients dial.\nadvertise = %s\n", advertise);
	if (b.error) {
		r = b.error;
		goto out;
	}
	*ret = buf_steal(&b);
	r = 0;
out:
	buf_free(&b);
	strv_free(&a);
	strv_free(&p);
	return r;
}

static int write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
	_cleanup_free_ char *p = path_join(dir, name);
	if (!p)
		return -ENOMEM;
	int r = fs_write_atomic(p, text, strlen(text), mode, true);
	if (r < 0)
		fprintf(stderr, "hpcc: worker init: %s: %s\n", p, strerror(-r));
	return r;
}

int worker_init_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "listen", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'n' },
		{ "allow-unsafe-local", no_argument, NULL, 'u' },
		{ "force", no_argument, NULL, 'f' },
		{ "signing-key", required_argument, NULL, 's' },
		{ "verify-key", required_argument, NULL, 'v' },
		{ "image", required_argument, NULL, 'm' },
		{ "microvm", no_argument, NULL, 'M' },
		{ "kernel", required_argument, NULL, 'K' },
		{ "initrd", required_argument, NULL, 'I' },
		{ "allow-tcg", no_argument, NULL, 'T' },
		{ "scheduler", required_argument, NULL, 'S' },
		{ "scheduler-pin", required_argument, NULL, 'P' },
		{ "worker-token-file", required_argument, NULL, 'W' },
		{ "advertise", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sched = NULL, *sched_pin = NULL, *worker_token_file = NULL, *advertise = NULL;
	const char *signing_out = NULL, *verify_in = NULL, *image_arg = NULL, *kernel = NULL, *initrd = NULL;
	bool microvm = false, allow_tcg = false;
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	const char *id = host, *listen = "0.0.0.0:7070";
	const char *names[16] = { "localhost" };
	size_t n_names = 1;
	bool unsafe = false, force = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': id = optarg; break;
		case 'l': listen = optarg; break;
		case 'n':
			if (n_names >= ARRAY_SIZE(names)) {
				fprintf(stderr, "hpcc: worker init: at most %zu --name options\n", ARRAY_SIZE(names) - 1);
				return 2;
			}
			names[n_names++] = optarg;
			break;
		case 'u': unsafe = true; break;
		case 'f': force = true; break;
		case 's': signing_out = optarg; break;
		case 'v': verify_in = optarg; break;
		case 'm': image_arg = optarg; break;
		case 'M': microvm = true; break;
		case 'K': kernel = optarg; break;
		case 'I': initrd = optarg; break;
		case 'T': allow_tcg = true; break;
		case 'S': sched = optarg; break;
		case 'P': sched_pin = optarg; break;
		case 'W': worker_token_file = optarg; break;
		case 'A': advertise = optarg; break;
		default:
			fprintf(stderr, USAGE);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, USAGE);
		return 2;
	}
	const char *dir = argv[optind];
	/* The signing key never goes into the worker's directory: whatever
	 * the worker (and, under unsafe-local, a compile) can read must not be
	 * able to mint tokens. */
	if ((signing_out && verify_in) || (!signing_out && !verify_in && !sched)) {
		fprintf(stderr, "hpcc: worker init: give --scheduler ADDR (the scheduler hands out the routing key), "
				"--signing-key FILE (a new key pair; keep FILE away from the worker) or --verify-key FILE "
				"(an existing public key)\n");
		return 2;
	}
	if (!sched != !sched_pin || !sched != !worker_token_file || (advertise && !sched)) {
		fprintf(stderr, "hpcc: worker init: --scheduler, --scheduler-pin and --worker-token-file go together "
				"(and --advertise with them)\n");
		return 2;
	}
	_cleanup_free_ char *sched_text = NULL;
	int rs = sched ? scheduler_section(sched, sched_pin, worker_token_file, advertise, listen, &sched_text) : 0;
	if (rs < 0)
		return rs == -EINVAL ? 2 : 1;
	if (microvm && (!kernel || !initrd || unsafe)) {
		fprintf(stderr, "hpcc: worker init: --microvm needs --kernel and --initrd, and excludes "
				"--allow-unsafe-local\n");
		return 2;
	}
	if (!microvm && (kernel || initrd || allow_tcg)) {
		fprintf(stderr, "hpcc: worker init: --kernel, --initrd and --allow-tcg go with --microvm\n");
		return 2;
	}
	struct error digest_err = { 0 };
	if (image_arg && image_digest_check(image_arg, NULL, &digest_err) < 0) {
		fprintf(stderr, "hpcc: worker init: --image takes sha256:<64 lowercase hex>\n");
		return 2;
	}
	if (microvm && !image_arg) {
		fprintf(stderr, "hpcc: worker init: --microvm needs --image (the digest hpcc image import printed)\n");
		return 2;
	}
	_cleanup_free_ char *abs_kernel = kernel ? realpath(kernel, NULL) : NULL;
	_cleanup_free_ char *abs_initrd = initrd ? realpath(initrd, NULL) : NULL;
	if ((kernel && !abs_kernel) || (initrd && !abs_initrd)) {
		fprintf(stderr, "hpcc: worker init: %s: %s\n", kernel && !abs_kernel ? kernel : initrd, strerror(errno));
		return 1;
	}
	_cleanup_free_ char *ini_path = path_join(dir, "worker.ini");
	struct stat st;
	if (!ini_path || (!force && stat(ini_path, &st) == 0)) {
		fprintf(stderr, "hpcc: worker init: %s exists (use --force to replace it)\n", ini_path ? ini_path : dir);
		return 1;
	}
	/* The VMMs run as an unprivileged user that must reach their run
	 * directories under state/vms: the worker and state directories are
	 * then traversable (0711) but not listable; the stores stay 0700. */
	mode_t dir_mode = microvm ? 0711 : 0700;
	_cleanup_free_ char *state_dir = path_join(dir, "state");
	int r = state_dir ? fs_mkdir_p(dir, dir_mode) : -ENOMEM;
	if (r == 0 && microvm && (chmod(dir, dir_mode) < 0 || (r = fs_mkdir_p(state_dir, 0711)) < 0 ||
				  chmod(state_dir, 0711) < 0))
		r = r < 0 ? r : -errno;
	if (r < 0) {
		fprintf(stderr, "hpcc: worker init: %s: %s\n", dir, strerror(-r));
		return 1;
	}
	struct error err = { 0 };
	_cleanup_free_ char *cert = NULL, *key = NULL;
	const char *ips[] = { "127.0.0.1", "::1" };
	if (x509_self_signed(id, names, n_names, ips, ARRAY_SIZE(ips), 825, &cert, &key, &err) < 0) {
		fprintf(stderr, "hpcc: worker init: certificate: %s\n", err.msg);
		return 1;
	}
	char fp[DIGEST_STR_LEN + 1], image[80];
	if (x509_fingerprint_pem(cert, fp) < 0 ||
	    (image_arg ? snprintf(image, sizeof(image), "%s", image_arg) < 0 :
			 worker_host_image("/usr/local/bin:/usr/bin:/bin", image) < 0)) {
		fprintf(stderr, "hpcc: worker init: cannot compute the fingerprint or the host image\n");
		return 1;
	}
	_cleanup_(token_key_freep) struct token_key *tk = NULL;
	_cleanup_free_ char *verify = path_join(dir, "token-verify.pem");
	_cleanup_free_ char *abs_dir = realpath(dir, NULL);
	_cleanup_free_ char *signing_dir = NULL;
	if (signing_out) {
		_cleanup_free_ char *copy = strdup(signing_out);
		char *slash = copy ? strrchr(copy, '/') : NULL;
		if (slash)
			*slash = '\0';
		signing_dir = realpath(slash ? (copy[0] ? copy : "/") : ".", NULL);
		if (abs_dir && signing_dir && path_under(signing_dir, abs_dir)) {
			fprintf(stderr, "hpcc: worker init: the signing key must not be inside the worker directory\n");
			return 2;
		}
	}
	bool own_key = signing_out || verify_in;
	if (!verify || (own_key && ((signing_out ? token_key_generate(&tk) < 0 ||
							   token_key_save_private(tk, signing_out, &err) < 0 :
						   token_key_load_file(verify_in, false, &tk, &err) < 0) ||
				    token_key_save_public(tk, verify, &err) < 0))) {
		fprintf(stderr, "hpcc: worker init: token key: %s\n", err.msg[0] ? err.msg : "cannot generate");
		return 1;
	}
	_cleanup_free_ char *ini = NULL;
	if (asprintf(&ini,
		     "# hpcc worker configuration (docs/worker.md). Relative paths are\n"
		     "# relative to this file.\n"
		     "[worker]\n"
		     "id = %s\n"
		     "listen = %s\n"
		     "dir = state\n"
		     "cert = cert.pem\n"
		     "key = key.pem\n"
		     "%s%s"
		     "# The toolchain images this worker serves. For unsafe-local this names\n"
		     "# the host's compilers (hpcc worker host-image).\n"
		     "images = %s\n"
		     "max_calls = 64\n"
		     "\n[cache]\n"
		     "# per tenant\n"
		     "max_size = 10G\n"
		     "\n[limits]\n"
		     "max_blob = 256M\n"
		     "exec_timeout = 600\n"
		     "\n[runtime]\n"
		     "kind = %s\n"
		     "# unsafe-local runs compilers on this host without isolation: only for\n"
		     "# trusted clients. The microVM runtime is the one to use otherwise.\n"
		     "allow_unsafe_local = %s\n",
		     id, listen,
		     microvm ? "# Started as root, the worker forks a small VMM spawner and runs as this\n"
			       "# user, without capabilities (docs/isolation.md). Create it with\n"
			       "# useradd --system --no-create-home --shell /usr/sbin/nologin hpcc-worker\n"
			       "user = hpcc-worker\n" : "",
		     own_key ? "# Verifies routing tokens (signed by hpcc token issue with the signing key,\n"
			       "# which must never be readable by this worker).\n"
			       "token_key = token-verify.pem\n" : "",
		     image, microvm ? "microvm" : "unsafe-local", unsafe ? "true" : "false") < 0)
		return 1;
	if (microvm) {
		_cleanup_free_ char *more = NULL;
		if (asprintf(&more,
			     "%s"
			     "\n[images]\n"
			     "# imported with: hpcc image import --config <this file> <oci-dir | docker.tar>\n"
			     "dir = state/images\n"
			     "\n[microvm]\n"
			     "vmm = qemu\n"
			     "kernel = %s\n"
			     "initrd = %s\n"
			     "# KVM when the host can run guests; TCG (software, ~30x slower) only if allowed.\n"
			     "accel = auto\n"
			     "allow_tcg = %s\n"
			     "user = nobody\n"
			     "# Each VM runs as its own uid, uid_base + n (n < 2 x max_vms), with the\n"
			     "# user's group, so VMMs cannot signal or trace each other. These uids need\n"
			     "# no account; pick a range nothing else uses. 0: every VM runs as the user.\n"
			     "uid_base = 1900000000\n"
			     "vcpus = 2\n"
			     "memory = 1G\n"
			     "max_vms = 8\n"
			     "max_vms_per_tenant = 2\n"
			     "idle_timeout = 300\n"
			     "# Each VMM runs in its own cgroup (memory + 512M, 256 tasks, vcpus cores of\n"
			     "# CPU) under hpcc's seccomp filter (docs/isolation.md): auto uses cgroups\n"
			     "# when the host has them, required refuses to run VMs without, off.\n"
			     "cgroup = auto\n",
			     ini, abs_kernel, abs_initrd, allow_tcg ? "true" : "false") < 0)
			return 1;
		free(ini);
		ini = TAKE_PTR(more);
	}
	if (sched_text) {
		_cleanup_free_ char *more = NULL;
		if (asprintf(&more, "%s%s", ini, sched_text) < 0)
			return 1;
		free(ini);
		ini = TAKE_PTR(more);
	}
	if (write_text(dir, "cert.pem", cert, 0644) < 0 || write_text(dir, "key.pem", key, 0600) < 0 ||
	    write_text(dir, "worker.ini", ini, 0644) < 0)
		return 1;
	if (microvm && geteuid() == 0) {
		/* The worker reads its TLS key as [worker] user. */
		struct passwd *pw = getpwnam("hpcc-worker");
		_cleanup_free_ char *key_path = path_join(dir, "key.pem");
		if (!pw)
			fprintf(stderr, "hpcc: worker init: create the user hpcc-worker before starting the worker "
				"(useradd --system --no-create-home --shell /usr/sbin/nologin hpcc-worker), then "
				"chown hpcc-worker %s/key.pem\n", dir);
		else if (!key_path || chown(key_path, pw->pw_uid, pw->pw_gid) < 0)
			fprintf(stderr, "hpcc: worker init: cannot give %s/key.pem to hpcc-worker\n", dir);
	}
	/* What the worker will refuse at start (a token file others can
	 * read, a malformed pin) is better said now. */
	struct worker_config check;
	if (worker_config_load(ini_path, &check, &err) < 0) {
		fprintf(stderr, "hpcc: worker init: %s\n", err.msg);
		unlink(ini_path);
		return 1;
	}
	worker_config_free(&check);
	if (sched) {
		printf("worker directory   %s\n"
		       "certificate pin    %s\n"
		       "image              %s\n"
		       "schedulers         %s (the worker registers as %s; clients are routed to it)\n",
		       dir, fp, image, sched, id);
		return 0;
	}
	printf("worker directory   %s\n"
	       "certificate pin    %s\n"
	       "image              %s\n"
	       "client settings:\n"
	       "  [remote]\n"
	       "  worker = <this host>:%s\n"
	       "  pin = %s\n"
	       "  tenant = <tenant>\n"
	       "  image = %s\n"
	       "  token_file = <file written by: hpcc token issue --key %s ...>\n",
	       dir, fp, image, strrchr(listen, ':') ? strrchr(listen, ':') + 1 : listen, fp, image,
	       signing_out ? signing_out : "<the signing key>");
	return 0;
}

int token_issue_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "tenant", required_argument, NULL, 't' },
		{ "image", required_argument, NULL, 'i' },
		{ "worker", required_argument, NULL, 'w' },
		{ "ttl", required_argument, NULL, 'l' },
		{ "out", required_argument, NULL, 'o' },
		{ "issued-at", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *tenant = NULL, *image = NULL, *worker = NULL, *out = NULL;
	long ttl = 300;
	int64_t issued = (int64_t)time(NULL);
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'k': key = optarg; break;
		case 't': tenant = optarg; break;
		case 'i': image = optarg; break;
		case 'w': worker = optarg; break;
		case 'o': out = optarg; break;
		case 'l':
			ttl = strtol(optarg, &end, 10);
			if (*end || ttl <= 0)
				ttl = -1;
			break;
		case 'a':
			/* For tests of expired and future tokens. */
			issued = strtoll(optarg, &end, 10);
			if (*end || !*optarg)
				ttl = -1;  /* reported with the usage below */
			break;
		default:
			key = NULL;
			optind = argc + 1;
		}
	}
	if (!key || !tenant || !image || !worker || ttl < 0 || optind != argc) {
		fprintf(stderr, "usage: hpcc token issue --key SIGNING.pem --tenant T --image sha256:... --worker ID "
				"[--ttl SECONDS<=300] [--out FILE]\n");
		return 2;
	}
	struct error err = { 0 };
	_cleanup_(token_key_freep) struct token_key *k = NULL;
	if (token_key_load_file(key, true, &k, &err) < 0) {
		fprintf(stderr, "hpcc: token: %s\n", err.msg);
		return 1;
	}
	struct token_claims cl = { .issued_at = issued, .expires_at = issued + ttl };
	if (snprintf(cl.tenant, sizeof(cl.tenant), "%s", tenant) >= (int)sizeof(cl.tenant) ||
	    snprintf(cl.image_digest, sizeof(cl.image_digest), "%s", image) >= (int)sizeof(cl.image_digest) ||
	    snprintf(cl.worker_id, sizeof(cl.worker_id), "%s", worker) >= (int)sizeof(cl.worker_id)) {
		fprintf(stderr, "hpcc: token: a claim is too long\n");
		return 1;
	}
	_cleanup_buf_ struct buf tok;
	buf_init(&tok, TOKEN_MAX_SIZE + 1);
	int r = token_issue(k, &cl, &tok);
	if (r < 0) {
		fprintf(stderr, "hpcc: token: cannot issue (%s): check the tenant, image (sha256:<64 lowercase hex>), "
				"worker id and ttl (at most %d s)\n", strerror(-r), TOKEN_MAX_TTL);
		return 1;
	}
	if (out) {
		if (token_write_file(out, tok.data, tok.len, &err) < 0) {
			fprintf(stderr, "hpcc: token: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	_cleanup_free_ char *text = NULL;
	if (token_encode_text(tok.data, tok.len, &text) < 0)
		return 1;
	printf("%s\n", text);
	return 0;
}
