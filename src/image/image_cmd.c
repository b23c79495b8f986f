/*
 * `hpcc image ...` (see image_cmd.h). The images directory comes from
 * --dir, or from a worker.ini (--config, else $HPCC_WORKER_CONFIG) with its
 * [images] caps. An import prints the digest alone on stdout, so scripts
 * can take it with $(...); the human summary goes to stderr. SIGINT and
 * SIGTERM stop an import at the next block, and its temporary files go.
 */
#include "image_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "config.h"
#include "image_store.h"
#include "worker_config.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void usage(void)
{
	fputs("usage: hpcc image import [--dir DIR | --config FILE] [--max-size SIZE] [--max-entries N]\n"
	      "                         [--compressor gzip|zstd|xz] SOURCE\n"
	      "       hpcc image list [--dir DIR | --config FILE] [--json]\n"
	      "       hpcc image rm [--dir DIR | --config FILE] sha256:<hex>...\n"
	      "SOURCE: an OCI image layout directory or a docker archive (docker save).\n"
	      "--config defaults to $HPCC_WORKER_CONFIG; its [images] dir and caps apply.\n",
	      stderr);
}

struct options {
	const char *dir, *config, *compressor;
	const char *max_size, *max_entries;
	bool json;
	char **args;
	int n_args;
};

static int parse(int argc, char **argv, bool import, struct options *o)
{
	*o = (struct options){ 0 };
	o->args = calloc((size_t)argc + 1, sizeof(char *));
	if (!o->args)
		return -ENOMEM;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = strcmp(a, "--dir") == 0			? &o->dir :
				    strcmp(a, "--config") == 0			? &o->config :
				    import && strcmp(a, "--max-size") == 0	? &o->max_size :
				    import && strcmp(a, "--max-entries") == 0	? &o->max_entries :
				    import && strcmp(a, "--compressor") == 0	? &o->compressor :
										  NULL;
		if (slot) {
			if (i + 1 >= argc) {
				fprintf(stderr, "hpcc image: %s needs a value\n", a);
				return -EINVAL;
			}
			*slot = argv[++i];
		} else if (!import && strcmp(a, "--json") == 0)
			o->json = true;
		else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hpcc image: unknown option '%s'\n", a);
			return -EINVAL;
		} else
			o->args[o->n_args++] = argv[i];
	}
	if (o->dir && o->config) {
		fprintf(stderr, "hpcc image: give --dir or --config, not both\n");
		return -EINVAL;
	}
	if (!o->dir && !o->config)
		o->config = getenv("HPCC_WORKER_CONFIG");
	if (!o->dir && !o->config) {
		fprintf(stderr, "hpcc image: no images directory (give --dir DIR or --config worker.ini)\n");
		return -EINVAL;
	}
	return 0;
}

/* The images directory and caps: from --dir with the defaults, or from
 * worker.ini; --max-size and --max-entries override either. */
static int resolve(const struct options *o, char **ret_dir, struct image_limits *lim)
{
	lim->max_size = IMAGE_DEFAULT_MAX_SIZE;
	lim->max_entries = IMAGE_DEFAULT_MAX_ENTRIES;
	if (o->config) {
		struct worker_config wc;
		struct error err = { 0 };
		if (worker_config_load(o->config, &wc, &err) < 0) {
			fprintf(stderr, "hpcc image: %s\n", err.msg);
			return -EIO;
		}
		*ret_dir = strdup(wc.images_dir);
		lim->max_size = wc.image_max_size;
		lim->max_entries = wc.image_max_entries;
		worker_config_free(&wc);
	} else
		*ret_dir = strdup(o->dir);
	if (!*ret_dir)
		return -ENOMEM;
	uint64_t v;
	if (o->max_size) {
		if (config_parse_size(o->max_size, &v) < 0 || v == 0) {
			fprintf(stderr, "hpcc image: --max-size '%s' is not a size (e.g. 16G)\n", o->max_size);
			return -EINVAL;
		}
		lim->max_size = v;
	}
	if (o->max_entries) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(o->max_entries, &end, 10);
		if (errno || *end || end == o->max_entries || n == 0 || o->max_entries[0] == '-') {
			fprintf(stderr, "hpcc image: --max-entries '%s' is not a positive number\n", o->max_entries);
			return -EINVAL;
		}
		lim->max_entries = n;
	}
	return 0;
}

static double seconds_since(const struct timeval *start)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_usec - start->tv_usec) / 1e6;
}

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static int import_main(const struct options *o, const char *dir, const struct image_limits *lim)
{
	if (o->n_args != 1) {
		usage();
		return 2;
	}
	if (o->compressor && strcmp(o->compressor, "gzip") != 0 && strcmp(o->compressor, "zstd") != 0 &&
	    strcmp(o->compressor, "xz") != 0) {
		fprintf(stderr, "hpcc image: --compressor must be gzip, zstd or xz\n");
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct image_import_options io = { .images_dir = dir, .limits = *lim };
	io.limits.cancel = &interrupted;
	io.squashfs.compressor = o->compressor;
	struct image_import_result res;
	struct error err = { 0 };
	struct timeval start;
	gettimeofday(&start, NULL);
	if (image_import(o->args[0], &io, &res, &err) < 0) {
		fprintf(stderr, "hpcc image: import %s: %s\n", o->args[0], interrupted ? "interrupted" : err.msg);
		return 1;
	}
	if (res.already)
		fprintf(stderr, "hpcc image: %s is already imported: %s\n", res.info.digest, res.path);
	else
		fprintf(stderr,
			"hpcc image: imported %s in %.1f s: %" PRIu64 " entries, %.1f MiB of files, %.1f MiB squashfs (%s): %s\n",
			res.info.digest, seconds_since(&start), res.info.entries, mib(res.info.bytes),
			mib(res.info.squashfs_bytes), res.info.compressor, res.path);
	printf("%s\n", res.info.digest);
	image_import_result_free(&res);
	return 0;
}

static int list_main(const struct options *o, const char *dir)
{
	if (o->n_args != 0) {
		usage();
		return 2;
	}
	struct image_info *list = NULL;
	size_t n = 0;
	struct error err = { 0 };
	if (image_store_list(dir, &list, &n, &err) < 0) {
		fprintf(stderr, "hpcc image: list: %s\n", err.msg);
		return 1;
	}
	if (o->json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:b}", "digest",
							     list[i].digest, "source", list[i].source, "entries",
							     (json_int_t)list[i].entries, "bytes", (json_int_t)list[i].bytes,
							     "squashfs_bytes", (json_int_t)list[i].squashfs_bytes, "layers",
							     (json_int_t)list[i].layers, "compressor", list[i].compressor,
							     "imported", list[i].imported, "valid", list[i].valid));
		char *text = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(arr);
		free(list);
		return text ? 0 : 1;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s  %8.1f MiB  %9" PRIu64 " entries  %s%s\n", list[i].digest, mib(list[i].squashfs_bytes),
		       list[i].entries, list[i].imported, list[i].valid ? "" : "  (metadata unreadable)");
	free(list);
	return 0;
}

static int rm_main(const struct options *o, const char *dir)
{
	if (o->n_args == 0) {
		usage();
		return 2;
	}
	int code = 0;
	for (int i = 0; i < o->n_args; i++) {
		struct error err = { 0 };
		if (image_store_remove(dir, o->args[i], &err) < 0) {
			fprintf(stderr, "hpcc image: rm: %s\n", err.msg);
			code = 1;
		} else
			fprintf(stderr, "hpcc image: removed %s\n", o->args[i]);
	}
	return code;
}

int image_command(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
		usage();
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	bool import = strcmp(sub, "import") == 0;
	if (!import && strcmp(sub, "list") != 0 && strcmp(sub, "ls") != 0 && strcmp(sub, "rm") != 0) {
		fprintf(stderr, "hpcc image: unknown subcommand '%s'\n", sub);
		usage();
		return 2;
	}
	struct options o;
	int r = parse(argc - 1, argv + 1, import, &o);
	_cleanup_free_ char **args = o.args;
	if (r < 0)
		return 2;
	_cleanup_free_ char *dir = NULL;
	struct image_limits lim = { 0 };
	if ((r = resolve(&o, &dir, &lim)) < 0)
		return r == -EINVAL ? 2 : 1;
	if (import)
		return import_main(&o, dir, &lim);
	if (strcmp(sub, "rm") == 0)
		return rm_main(&o, dir);
	return list_main(&o, dir);
}
