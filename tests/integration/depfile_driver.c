/*
 * Test driver for tests/integration/depfile_formats.sh: parses the full
 * dependency file that a compiler wrote for "-MD -MF full.d", then renders
 * the file that the user's own dependency options ask for with
 * depfile_render(), so that the script can compare it byte for byte with
 * what the compiler wrote itself.
 *
 *   depfile_driver gcc|clang FULL_D RENDER_OUT [--system PREFIX]... -- ARGS...
 *
 * ARGS is the compiler command line without the compiler. The driver reads
 * only the options that matter for dependency files (it fills struct
 * compile_args itself, so that it does not depend on args_parse()); a dep
 * whose name starts with a --system PREFIX counts as a system header for
 * -MMD. It prints the path that depfile_render() chose on stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "depfile.h"
#include "fs.h"

/* Options whose value is the next argument and means nothing here. */
static const char *const skip_with_value[] = { "-I", "-isystem", "-include", "-x", "-iquote", "-idirafter" };

static int add_target(struct compile_args *a, const char *name, bool quote)
{
	struct dep_target *t = realloc(a->dep_targets, (a->n_dep_targets + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	a->dep_targets = t;
	t[a->n_dep_targets++] = (struct dep_target){ .name = (char *)name, .quote = quote };
	return 0;
}

static int parse_wp(struct compile_args *a, const char *arg)
{
	if (strncmp(arg, "-Wp,-MD,", 8) == 0) {
		a->dep_mode = DEP_MD;
		a->dep_wp_path = (char *)arg + 8;
	} else if (strncmp(arg, "-Wp,-MMD,", 9) == 0) {
		a->dep_mode = DEP_MMD;
		a->dep_wp_path = (char *)arg + 9;
	} else {
		return -EINVAL;
	}
	return 0;
}

/* Fills a from argv; the strings stay owned by argv. */
static int parse_compile(int argc, char **argv, struct compile_args *a)
{
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes_value = false;
		int r = 0;
		if (strcmp(arg, "-o") == 0) {
			a->output = (char *)value;
			a->output_given = true;
			takes_value = true;
		} else if (strcmp(arg, "-MD") == 0) {
			a->dep_mode = DEP_MD;
		} else if (strcmp(arg, "-MMD") == 0) {
			a->dep_mode = DEP_MMD;
		} else if (strcmp(arg, "-MP") == 0) {
			a->dep_phony = true;
		} else if (strcmp(arg, "-MF") == 0) {
			a->dep_mf = (char *)value;
			takes_value = true;
		} else if (strcmp(arg, "-MT") == 0 || strcmp(arg, "-MQ") == 0) {
			takes_value = true;
			r = value ? add_target(a, value, arg[2] == 'Q') : -EINVAL;
		} else if (strncmp(arg, "-Wp,", 4) == 0) {
			r = parse_wp(a, arg);
		} else if (arg[0] == '-') {
			for (size_t k = 0; k < sizeof(skip_with_value) / sizeof(skip_with_value[0]); k++)
				if (strcmp(arg, skip_with_value[k]) == 0)
					takes_value = true;
		} else {
			a->source = (char *)arg;
		}
		if (takes_value && !value)
			return -EINVAL;
		if (r < 0)
			return r;
		if (takes_value)
			i++;
	}
	return a->source && a->dep_mode != DEP_NONE ? 0 : -EINVAL;
}

static bool has_prefix_in(const char *name, char **prefixes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

static int write_file(const char *path, const struct buf *b)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = fs_write_all(fd, b->data ? b->data : "", b->len);
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s gcc|clang FULL_D RENDER_OUT [--system PREFIX]... -- ARGS...\n", argv[0]);
		return 2;
	}
	struct compile_args a = { .family = strcmp(argv[1], "clang") == 0 ? FAMILY_CLANG : FAMILY_GCC };
	char *prefixes[64];
	size_t n_prefixes = 0;
	int i = 4;
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--system") == 0 && i + 1 < argc && n_prefixes < 64)
			prefixes[n_prefixes++] = argv[++i];
		else
			return fprintf(stderr, "bad driver option %s\n", argv[i]), 2;
	}
	if (i >= argc || parse_compile(argc - i - 1, argv + i + 1, &a) < 0)
		return fprintf(stderr, "cannot read the compile command\n"), 2;

	struct buf full = { 0 };
	int r = fs_read_file(argv[2], DEPFILE_MAX_SIZE, &full);
	if (r < 0)
		return fprintf(stderr, "%s: %s\n", argv[2], strerror(-r)), 1;
	struct depfile d;
	r = depfile_parse(full.data, full.len, &d);
	if (r < 0)
		return fprintf(stderr, "parse %s: %s\n", argv[2], strerror(-r)), 1;
	bool *is_system = calloc(d.deps.n + 1, sizeof(bool));
	if (!is_system)
		return 1;
	for (size_t k = 0; k < d.deps.n; k++)
		is_system[k] = has_prefix_in(d.deps.v[k], prefixes, n_prefixes);

	struct buf out = { 0 };
	char *path = NULL;
	r = depfile_render(&a, d.deps.v, is_system, d.deps.n, &out, &path);
	if (r < 0)
		return fprintf(stderr, "render: %s\n", strerror(-r)), 1;
	r = write_file(argv[3], &out);
	if (r < 0)
		return fprintf(stderr, "%s: %s\n", argv[3], strerror(-r)), 1;
	printf("%s\n", path);

	free(path);
	buf_free(&out);
	free(is_system);
	depfile_free(&d);
	buf_free(&full);
	free(a.dep_targets);
	return 0;
}
