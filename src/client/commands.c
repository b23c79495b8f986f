/*
 * Subcommands (see commands.h). Counters are read from the stats file after
 * asking a running daemon to flush what it holds, so `hpcc stats` right
 * after a build shows that build.
 */
#include "commands.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "engine.h"
#include "fs.h"
#include "log.h"
#include "server.h"
#include "stats.h"
#include "store.h"

void command_usage(void)
{
	fputs("usage: hpcc <compiler> [args...]      compile through the cache\n"
	      "       hpcc wrap -- <compiler> [args...]\n"
	      "       hpcc init [DIR]                   mark DIR (default .) as a project root\n"
	      "       hpcc stats [--json] [--zero]      show (or reset) the counters\n"
	      "       hpcc clean [--max-size SIZE] [--all]\n"
	      "                                         evict down to SIZE, or empty the cache\n"
	      "       hpcc daemon run|start|status|stop\n"
	      "       hpcc worker init DIR [--allow-unsafe-local] | hpcc worker [--config FILE] | hpcc worker gc [--dry-run]\n"
	      "       hpcc login [--tenant T] | hpcc logout | hpcc auth status\n"
	      "                                         OAuth2 sign-in at the tenant's IdP (remote.scheduler)\n"
	      "       hpcc scheduler init DIR ... | hpcc scheduler [--config FILE]\n"
	      "       hpcc token issue --key FILE --tenant T --image DIGEST --worker ID [--out FILE]\n"
	      "       hpcc image import|list|rm [--dir DIR | --config FILE] ...\n"
	      "                                         toolchain images for workers (OCI layout, docker save)\n"
	      "       hpcc audit verify FILE|DIR          check a worker's audit log: chain, seals, order\n"
	      "       hpcc inspect [--tsv] [--remote|--local] [--worker ID] PREFIX\n"
	      "                                         audit rows whose digests start with PREFIX\n"
	      "       hpcc explain OBJECT-FILE          why that object's compile missed: flags, headers, image\n"
	      "       hpcc reproduce HASH-PREFIX|TSV-LINE\n"
	      "                                         re-run an audited compile, caches bypassed; compare digests\n"
	      "       hpcc version\n"
	      "Masquerade: a symlink named gcc, cc, g++, c++, clang or clang++ pointing at hpcc,\n"
	      "placed first in PATH. Settings: ~/.config/hpcc/hpcc.ini or HPCC_* variables.\n",
	      stdout);
}

bool command_is_hpccd;

int command_exec_hpccd(char **argv)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 16);
	if (n <= 0)
		return -ENOENT;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	snprintf(slash + 1, sizeof(self) - (size_t)(slash + 1 - self), "hpccd");
	execv(self, argv);
	return negative_errno();
}

int command_load_config(struct config *cfg)
{
	struct error err = { 0 };
	if (config_load(cfg, NULL, &err) < 0) {
		fprintf(stderr, "hpcc: %s\n", err.msg);
		return -1;
	}
	int level = log_level_parse(config_get(cfg, CONFIG_LOG_LEVEL));
	log_open(config_get(cfg, CONFIG_LOG_FILE), level < 0 ? LOG_WARN : (enum log_level)level);
	return 0;
}

int command_init(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	if (argc > 2) {
		fprintf(stderr, "hpcc: init: too many arguments\n");
		return 2;
	}
	_cleanup_free_ char *path = path_join(dir, ".hpcc");
	if (!path)
		return 1;
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "hpcc: init: %s is not a directory\n", dir);
		return 1;
	}
	if (access(path, F_OK) == 0) {
		printf("%s already marks a project root\n", path);
		return 0;
	}
	static const char text[] = "# hpcc project root: paths below this directory are cached root-relative.\n";
	int r = fs_write_atomic(path, text, sizeof(text) - 1, 0644, false);
	if (r < 0) {
		fprintf(stderr, "hpcc: init: %s: %s\n", path, strerror(-r));
		return 1;
	}
	printf("wrote %s\n", path);
	return 0;
}

int command_stats(int argc, char **argv)
{
	bool json = false, zero = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--zero") == 0 || strcmp(argv[i], "-z") == 0)
			zero = true;
		else {
			fprintf(stderr, "hpcc: stats: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	_cleanup_free_ char *dir = engine_cache_dir(&cfg);
	_cleanup_free_ char *path = NULL;
	if (!dir || asprintf(&path, "%s/stats", dir) < 0)
		return 1;
	(void)daemon_command(&cfg, "flush", NULL);
	int r;
	if (zero) {
		if (fs_mkdir_p(dir, 0700) < 0 || (r = stats_zero_file(path)) < 0) {
			fprintf(stderr, "hpcc: stats: cannot reset %s\n", path);
			config_free(&cfg);
			return 1;
		}
		printf("statistics zeroed\n");
		config_free(&cfg);
		return 0;
	}
	struct stats s;
	if ((r = stats_read_file(path, &s)) < 0) {
		fprintf(stderr, "hpcc: stats: %s: %s\n", path, strerror(-r));
		config_free(&cfg);
		return 1;
	}
	uint64_t max = 0;
	config_get_u64(&cfg, CONFIG_CACHE_MAX_SIZE, &max);
	_cleanup_buf_ struct buf out;
	buf_init(&out, 0);
	stats_format(&s, json, max, dir, &out);
	fputs(out.data ? out.data : "", stdout);
	config_free(&cfg);
	return 0;
}

int command_clean(int argc, char **argv)
{
	bool all = false;
	const char *max_arg = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = true;
		else if (strcmp(argv[i], "--max-size") == 0 && i + 1 < argc)
			max_arg = argv[++i];
		else if (strncmp(argv[i], "--max-size=", 11) == 0)
			max_arg = argv[i] + 11;
		else {
			fprintf(stderr, "hpcc: clean: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	uint64_t target = 0;
	config_get_u64(&cfg, CONFIG_CACHE_MAX_SIZE, &target);
	if (max_arg && config_parse_size(max_arg, &target) < 0) {
		fprintf(stderr, "hpcc: clean: --max-size: '%s' is not a size (e.g. 500M, 5G)\n", max_arg);
		config_free(&cfg);
		return 2;
	}
	if (all)
		target = 0;
	else
		target = target / 10 * 9;
	_cleanup_free_ char *dir = engine_cache_dir(&cfg);
	struct store st;
	int r = dir ? store_init(&st, dir, target, 1) : -ENOMEM;
	if (r < 0) {
		fprintf(stderr, "hpcc: clean: %s: %s\n", dir ? dir : "?", strerror(-r));
		config_free(&cfg);
		return 1;
	}
	(void)daemon_command(&cfg, "flush", NULL);
	uint64_t left = 0, files = 0, evicted = 0;
	r = store_cleanup(&st, target, &left, &files, &evicted);
	if (r == 0) {
		_cleanup_free_ char *path = NULL;
		struct stats cur, fix = { 0 };
		if (asprintf(&path, "%s/stats", dir) >= 0 && stats_read_file(path, &cur) == 0) {
			fix.v[STAT_CACHE_SIZE] = (int64_t)left - cur.v[STAT_CACHE_SIZE];
			fix.v[STAT_CACHE_FILES] = (int64_t)files - cur.v[STAT_CACHE_FILES];
			fix.v[STAT_EVICTED_FILES] = (int64_t)evicted;
			fix.v[STAT_CLEANUPS] = 1;
			stats_add_file(path, &fix);
		}
		printf("removed %llu entries; %llu entries (%llu bytes) remain\n", (unsigned long long)evicted,
		       (unsigned long long)files, (unsigned long long)left);
		/* --all: hpcc explain's records and input copies go too. */
		_cleanup_free_ char *explain_dir = all ? path_join(dir, "explain") : NULL;
		struct store ex;
		uint64_t l2, f2, e2;
		if (explain_dir && store_init(&ex, explain_dir, 0, 1) == 0) {
			(void)store_cleanup(&ex, 0, &l2, &f2, &e2);
			store_free(&ex);
		}
	} else
		fprintf(stderr, "hpcc: clean: %s\n", strerror(-r));
	store_free(&st);
	config_free(&cfg);
	return r < 0 ? 1 : 0;
}

int command_daemon(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "status";
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	int code = 0;
	if (strcmp(sub, "run") == 0) {
		const char *remote = config_get(&cfg, CONFIG_REMOTE_WORKER);
		const char *sched = config_get(&cfg, CONFIG_REMOTE_SCHEDULER);
		if (((remote && *remote) || (sched && *sched)) && !command_is_hpccd) {
			/* Remote mode lives in hpccd (it links grpc). */
			char *args[] = { (char *)"hpccd", (char *)"daemon", (char *)"run", NULL };
			command_exec_hpccd(args);
			log_error("remote mode needs hpccd beside hpcc; running a local-only daemon");
		}
		struct error err = { 0 };
		if (daemon_run(&cfg, &err) < 0) {
			if (err.code != -EALREADY)
				fprintf(stderr, "hpcc: daemon: %s\n", err.msg);
			code = err.code == -EALREADY ? 0 : 1;
		}
	} else if (strcmp(sub, "start") == 0) {
		struct error err = { 0 };
		int fd = -1;
		if (daemon_connect(&cfg, &fd) == 0) {
			close(fd);
			printf("daemon already running\n");
		} else if (daemon_spawn("/proc/self/exe", 3000, &err) < 0 && err.code != -EAGAIN && err.code != 0) {
			fprintf(stderr, "hpcc: daemon: %s\n", err.msg);
			code = 1;
		} else {
			for (int i = 0; i < 300 && daemon_connect(&cfg, &fd) < 0; i++)
				usleep(10000);
			if (fd >= 0) {
				close(fd);
				printf("daemon started\n");
			} else {
				fprintf(stderr, "hpcc: daemon: did not start (set HPCC_LOG_FILE to see why)\n");
				code = 1;
			}
		}
	} else if (strcmp(sub, "status") == 0 || strcmp(sub, "stop") == 0) {
		char *text = NULL;
		int r = daemon_command(&cfg, sub, &text);
		if (r == -ENOENT || r == -ECONNREFUSED) {
			printf("no daemon running\n");
			code = strcmp(sub, "status") == 0 ? 3 : 0;
		} else if (r < 0) {
			fprintf(stderr, "hpcc: daemon %s: %s\n", sub, strerror(-r));
			code = 1;
		} else {
			fputs(text ? text : "", stdout);
			if (text && *text && text[strlen(text) - 1] != '\n')
				putchar('\n');
			/* `stop` returns once the daemon no longer listens, so that a
			 * `start` right after it starts a new one. */
			int fd = -1;
			for (int i = 0; strcmp(sub, "stop") == 0 && i < 500 && daemon_connect(&cfg, &fd) == 0; i++) {
				close(fd);
				usleep(10000);
			}
		}
		free(text);
	} else {
		fprintf(stderr, "hpcc: daemon: unknown subcommand '%s' (run, start, status, stop)\n", sub);
		code = 2;
	}
	config_free(&cfg);
	return code;
}
