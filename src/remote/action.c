/*
 * Remote actions (see action.h). The digest encoding is versioned; any
 * change to it must change the version string, since clients and workers of
 * different versions would otherwise agree on keys for different commands.
 */
#include "action.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "compress.h"
#include "fs.h"
#include "args.h"
#include "runtime.h"
#include "staging.h"

#define ACTION_ENCODING "hpcc-action-v1"
#define ACTION_DIRECT_ENCODING "hpcc-direct-v1"

static void put_arg(struct buf *b, const Hpcc__V1__Arg *a)
{
	if (!a) {
		buf_append_lp_str(b, "");
		return;
	}
	buf_append_lp_str(b, a->flag ? a->flag : "");
	buf_append_u64(b, (uint64_t)a->kind);
	buf_append_lp_str(b, a->path ? a->path : "");
	buf_append_lp_str(b, a->suffix ? a->suffix : "");
}

/* Everything of an action but its inputs. */
static void put_command(struct buf *b, const Hpcc__V1__Action *a)
{
	const Hpcc__V1__Command *c = a->command;
	buf_append_lp_str(b, a->image_digest);
	buf_append_u64(b, (uint64_t)a->mode);
	buf_append_lp_str(b, c->compiler);
	buf_append_u64(b, c->family);
	buf_append_u64(b, c->language);
	buf_append_u64(b, c->n_args);
	for (size_t i = 0; i < c->n_args; i++)
		put_arg(b, c->args[i]);
	buf_append_lp_str(b, c->cwd);
	put_arg(b, c->source);
	put_arg(b, c->output);
	buf_append_u64(b, c->n_env);
	for (size_t i = 0; i < c->n_env; i++)
		buf_append_lp_str(b, c->env[i]);
	buf_append_u64(b, c->split_dwarf);
}

int action_direct_key(const Hpcc__V1__Action *a, const char *source, const struct digest *source_digest,
		      struct digest *ret)
{
	if (!a->command)
		return -EINVAL;
	_cleanup_buf_ struct buf b;
	buf_init(&b, (size_t)64 << 20);
	buf_append_lp_str(&b, ACTION_DIRECT_ENCODING);
	put_command(&b, a);
	buf_append_lp_str(&b, source);
	buf_append_lp(&b, source_digest->b, DIGEST_LEN);
	if (b.error)
		return b.error;
	return digest_bytes(b.data, b.len, ret);
}

int action_digest(const Hpcc__V1__Action *a, struct digest *ret)
{
	const Hpcc__V1__Command *c = a->command;
	if (!c)
		return -EINVAL;
	_cleanup_buf_ struct buf b;
	buf_init(&b, (size_t)64 << 20);
	buf_append_lp_str(&b, ACTION_ENCODING);
	put_command(&b, a);
	buf_append_u64(&b, a->n_inputs);
	for (size_t i = 0; i < a->n_inputs; i++) {
		const Hpcc__V1__InputFile *f = a->inputs[i];
		buf_append_lp_str(&b, f->path);
		buf_append_lp(&b, f->digest.data, f->digest.len);
		buf_append_u64(&b, f->size);
		buf_append_u64(&b, f->executable);
	}
	if (b.error)
		return b.error;
	return digest_bytes(b.data, b.len, ret);
}

static bool has_unknown_fields(const ProtobufCMessage *m, int depth)
{
	if (m->n_unknown_fields > 0 || depth > 16)
		return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)m + f->offset;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
			const ProtobufCMessage *const *v = *(const ProtobufCMessage *const *const *)base;
			for (size_t k = 0; k < n; k++)
				if (v[k] && has_unknown_fields(v[k], depth + 1))
					return true;
		} else {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)base;
			if (sub && has_unknown_fields(sub, depth + 1))
				return true;
		}
	}
	return false;
}

bool action_canonical(const ProtobufCMessage *m, size_t received)
{
	return protobuf_c_message_get_packed_size(m) == received && !has_unknown_fields(m, 0);
}

static bool digest_string_ok(const char *s)
{
	struct digest d;
	if (strncmp(s, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 || strlen(s) != DIGEST_STR_LEN)
		return false;
	for (const char *p = s + strlen(DIGEST_PREFIX); *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return digest_parse(s, &d) == 0;
}

/* A relative path joined to the cwd must stay inside the root: the worker
 * stages nothing else, and a path that climbs out would read or write the
 * staging area's neighbours. */
static bool stays_in_root(const char *cwd, const char *path)
{
	/* Counts directory depth below the root along cwd, then path: a ".."
	 * that would climb above the root fails (a textual normalisation
	 * under a fake root would not notice "../r/x" coming back in). */
	long depth = 0;
	const char *parts[] = { cwd, path };
	for (size_t k = 0; k < 2; k++) {
		const char *p = parts[k];
		while (*p) {
			size_t n = strcspn(p, "/");
			if (n == 2 && p[0] == '.' && p[1] == '.') {
				if (--depth < 0)
					return false;
			} else if (n > 0 && !(n == 1 && p[0] == '.'))
				depth++;
			p += n;
			if (*p == '/')
				p++;
		}
	}
	return true;
}

/* Options that load code, run programs, or write files beside the object
 * (a compiler run by a worker must only read its inputs and write its
 * outputs), and those that the worker sets itself. Refused as plain
 * arguments; paths travel as PATH_* arguments and are checked as paths. */
static const char *const refused_prefixes[] = {
	"-B", "-fplugin", "-specs", "--specs", "-wrapper", "-Wa,", "-Xassembler", "-Wp,", "-Xpreprocessor",
	"-Wl,", "-Xlinker", "-Xclang", "-mllvm", "-aux-info", "-dumpdir", "-dumpbase", "-save-temps", "-fdump-",
	"-fopt-info", "-fprofile", "-fcoverage", "-ftest-coverage", "--coverage", "-fcallgraph-info",
	"-ftime-trace", "-fsave-optimization-record", "-foptimization-record", "-fsanitize-blacklist",
	"-fsanitize-ignorelist", "-fsanitize-coverage-allow", "-fsanitize-coverage-ignore", "-fmodules",
	"-fcrash-diagnostics", "--serialize-diagnostics", "-fdiagnostics-add-output", "-iplugindir",
	"-M", "-o", "-c", "-E", "-S", "-x", "--param=ggc", "-frecord-gcc-switches=", "-fpass-plugin",
	"-fproc-stat-report", "--config", "--save-temps", "--gcc-toolchain", "-gcc-toolchain", "--gcc-install-dir",
	"-ccc-", "--driver-mode", "-fdiagnostics-format=sarif", "-fstats-file", "-fprofile-list",
	"-frandomize-layout-seed-file", "-fxray", "-fsanitize-system-ignorelist", "-no-integrated-cpp", "-###",
};

/* The options that may carry a path (PATH_* arguments): include paths and
 * prefix maps, and "" for the source and the output. Any other option
 * with a path would name a file the worker does not check. */
static const char *const path_flags[] = {
	"", "-I", "-isystem", "-isystem-after", "-iquote", "-idirafter", "-include", "-imacros", "-iprefix",
	"-iwithprefix", "-iwithprefixbefore", "-iwithsysroot", "-isysroot", "--sysroot=", "-cxx-isystem",
	"-ffile-prefix-map=", "-fdebug-prefix-map=", "-fmacro-prefix-map=", "-fprofile-prefix-map=",
	"-fcoverage-prefix-map=",
};

static bool path_flag_ok(const char *flag)
{
	for (size_t i = 0; i < ARRAY_SIZE(path_flags); i++)
		if (strcmp(flag, path_flags[i]) == 0)
			return true;
	return false;
}

/* -Wa, and -Wp, pass anything to the assembler and the preprocessor, which
 * can write listings and dependency files anywhere: only items known to do
 * neither are accepted (hardening flags use -Wa,--noexecstack and
 * -Wp,-D_FORTIFY_SOURCE=2). */
static const char *const assembler_items[] = {
	"--noexecstack", "--execstack", "--64", "--32", "-O", "-mrelax-relocations=", "--gdwarf", "-gdwarf", "-g",
	"--nocompress-debug-sections", "--compress-debug-sections", "-mx86-used-note=",
	"--generate-missing-build-notes=", "--fatal-warnings", "--warn", "--no-warn",
};
static const char *const preprocessor_items[] = { "-D", "-U" };

static bool items_ok(const char *list, const char *const *allowed, size_t n_allowed)
{
	if (!*list)
		return false;
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		bool ok = false;
		for (size_t i = 0; i < n_allowed && !ok; i++) {
			size_t al = strlen(allowed[i]);
			ok = len >= al && strncmp(p, allowed[i], al) == 0;
		}
		if (!ok || len == 0)
			return false;
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

static bool refused_flag(const char *flag)
{
	if (strncmp(flag, "-Wa,", 4) == 0)
		return !items_ok(flag + 4, assembler_items, ARRAY_SIZE(assembler_items));
	if (strncmp(flag, "-Wp,", 4) == 0)
		return !items_ok(flag + 4, preprocessor_items, ARRAY_SIZE(preprocessor_items));
	for (size_t i = 0; i < ARRAY_SIZE(refused_prefixes); i++)
		if (strncmp(flag, refused_prefixes[i], strlen(refused_prefixes[i])) == 0)
			return true;
	return false;
}

static int check_arg(const Hpcc__V1__Arg *a, const char *cwd, bool output, const char *what, struct error *err)
{
	if (!a || !a->flag || !a->path || !a->suffix)
		return error_set(err, -EINVAL, "%s is missing", what);
	if (strlen(a->path) > ACTION_MAX_PATH || strlen(a->flag) > ACTION_MAX_PATH)
		return error_set(err, -EINVAL, "%s is too long", what);
	if (strlen(a->suffix) > ACTION_MAX_PATH)
		return error_set(err, -EINVAL, "%s is too long", what);
	/* What the compiler sees is flag + path + suffix: a response file or
	 * an option must not hide in the path of a source, and a path travels
	 * only with an option that takes one (its suffix only with the "=NEW"
	 * of a prefix map). */
	if (a->flag[0] == '@' || (!a->flag[0] && (a->path[0] == '@' || a->path[0] == '-')))
		return error_set(err, -EINVAL, "%s: response files and options hidden in paths are not accepted", what);
	if (refused_flag(a->flag))
		return error_set(err, -EINVAL, "%s: option '%.64s' is not accepted on a worker", what, a->flag);
	if (a->kind != HPCC__V1__PATH_KIND__PATH_NONE && !path_flag_ok(a->flag))
		return error_set(err, -EINVAL, "%s: option '%.64s' does not take a path on a worker", what, a->flag);
	if (a->suffix[0] && (a->suffix[0] != '=' || strstr(a->flag, "prefix-map=") == NULL || strchr(a->suffix, ',')))
		return error_set(err, -EINVAL, "%s: only a prefix map has a suffix", what);
	switch (a->kind) {
	case HPCC__V1__PATH_KIND__PATH_NONE:
		if (a->path[0] || a->suffix[0])
			return error_set(err, -EINVAL, "%s: a plain argument has no path", what);
		return 0;
	case HPCC__V1__PATH_KIND__PATH_ROOTED:
		if (!staging_relpath_ok(a->path, strlen(a->path)) && strcmp(a->path, ".") != 0)
			return error_set(err, -EINVAL, "%s: unsafe rooted path '%.200s'", what, a->path);
		return 0;
	case HPCC__V1__PATH_KIND__PATH_RELATIVE:
		if (!a->path[0] || a->path[0] == '/' || !stays_in_root(cwd, a->path))
			return error_set(err, -EINVAL, "%s: path '%.200s' leaves the project root", what, a->path);
		return 0;
	case HPCC__V1__PATH_KIND__PATH_ABSOLUTE:
		if (output)
			return error_set(err, -EINVAL, "%s: outputs must be inside the project root", what);
		if (a->path[0] != '/')
			return error_set(err, -EINVAL, "%s: an absolute path must start with /", what);
		return 0;
	default:
		return error_set(err, -EINVAL, "%s: unknown path kind %d", what, (int)a->kind);
	}
}

/* The command as the compiler will see it must be what the client's own
 * argument parser calls a cacheable single compile: the same rules refuse
 * -B, -specs, plugins, linking, several sources and the like. */
static int check_command_line(const Hpcc__V1__Action *a, struct error *err)
{
	_cleanup_strv_ struct strv argv = { 0 };
	/* Parsed as the source language (the parser has no preprocessed-input
	 * language; the arguments are the same). */
	int r = action_argv(a->command, false, "/hpcc-root", &argv);
	/* The arguments as assembled (compiler, args..., -x LANG, -c, source,
	 * -o, output): each must pass the same checks as its flag alone. */
	size_t n_args = a->command->n_args;
	for (size_t i = 1; r == 0 && i < argv.n; i++) {
		bool is_arg = i <= n_args, is_file = i == n_args + 4 || i == n_args + 6;
		const char *v = argv.v[i];
		if ((is_arg || is_file) && (v[0] == '@' || (is_file && v[0] == '-') ||
					    (is_arg && v[0] == '-' && refused_flag(v))))
			return error_set(err, -EINVAL, "argument '%.64s' is not accepted on a worker", v);
	}
	if (r < 0)
		return error_set(err, r, "out of memory");
	struct compile_args parsed = { 0 };
	enum args_reason reason = ARGS_REASON_N;
	r = args_parse((int)argv.n, argv.v, "/", a->command->family == 2 ? FAMILY_CLANG : FAMILY_GCC, &parsed, &reason);
	bool bad = r == 0 && (parsed.march_native || parsed.profile_use || parsed.profile_arcs || parsed.coverage ||
			      parsed.dep_mode != DEP_NONE);
	if (r == 0)
		compile_args_free(&parsed);
	if (r < 0)
		return error_set(err, r, "out of memory");
	if (r > 0)
		return error_set(err, -EINVAL, "the command is not a plain compile (%s)", args_reason_name(reason));
	if (bad)
		return error_set(err, -EINVAL, "the command uses -march=native, profiles, coverage or dependency files");
	return 0;
}

int action_check(const Hpcc__V1__Action *a, struct error *err)
{
	const Hpcc__V1__Command *c = a->command;
	if (!a->image_digest || !digest_string_ok(a->image_digest))
		return error_set(err, -EINVAL, "the image digest is not sha256:<64 lowercase hex>");
	if (a->mode != HPCC__V1__SOURCE_MODE__MODE_CAS && a->mode != HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED)
		return error_set(err, -EINVAL, "unknown source mode %d", (int)a->mode);
	if (!c)
		return error_set(err, -EINVAL, "the action has no command");
	if (!runtime_compiler_name_ok(c->compiler))
		return error_set(err, -EINVAL, "compiler name '%.64s' is not accepted", c->compiler);
	if (c->family != 1 && c->family != 2)
		return error_set(err, -EINVAL, "unknown compiler family %u", c->family);
	if (c->language > 2)
		return error_set(err, -EINVAL, "unsupported source language %u", c->language);
	if (c->n_args > ACTION_MAX_ARGS)
		return error_set(err, -E2BIG, "too many arguments (%zu)", c->n_args);
	if (strlen(c->cwd) > ACTION_MAX_PATH || (c->cwd[0] && !staging_relpath_ok(c->cwd, strlen(c->cwd))))
		return error_set(err, -EINVAL, "unsafe working directory '%.200s'", c->cwd);
	int r;
	char what[64];
	for (size_t i = 0; i < c->n_args; i++) {
		snprintf(what, sizeof(what), "argument %zu", i + 1);
		if ((r = check_arg(c->args[i], c->cwd, false, what, err)) < 0)
			return r;
	}
	if ((r = check_arg(c->source, c->cwd, false, "the source", err)) < 0 ||
	    (r = check_arg(c->output, c->cwd, true, "the output", err)) < 0)
		return r;
	if (c->source->kind == HPCC__V1__PATH_KIND__PATH_NONE || c->source->kind == HPCC__V1__PATH_KIND__PATH_ABSOLUTE ||
	    c->output->kind == HPCC__V1__PATH_KIND__PATH_NONE)
		return error_set(err, -EINVAL, "the source and the output must be paths in the project root");
	for (size_t i = 0; i < c->n_env; i++) {
		const char *v = c->env[i];
		if (!runtime_env_entry_ok(v))
			return error_set(err, -EINVAL, "environment '%.40s' is not accepted", v);
	}
	if ((r = check_command_line(a, err)) < 0)
		return r;
	if (a->n_inputs > ACTION_MAX_INPUTS)
		return error_set(err, -E2BIG, "too many inputs (%zu)", a->n_inputs);
	for (size_t i = 0; i < a->n_inputs; i++) {
		const Hpcc__V1__InputFile *f = a->inputs[i];
		size_t len = strlen(f->path);
		if (len > ACTION_MAX_PATH || !staging_relpath_ok(f->path, len))
			return error_set(err, -EINVAL, "input %zu: unsafe path '%.200s'", i + 1, f->path);
		if (f->digest.len != DIGEST_LEN)
			return error_set(err, -EINVAL, "input %zu (%.200s): a digest is 32 bytes", i + 1, f->path);
		if (f->size > BLOB_MAX_SIZE)
			return error_set(err, -EFBIG, "input %zu (%.200s): larger than %zu bytes", i + 1, f->path,
					 BLOB_MAX_SIZE);
		if (i > 0 && strcmp(a->inputs[i - 1]->path, f->path) >= 0)
			return error_set(err, -EINVAL, "inputs are not sorted and unique at '%.200s'", f->path);
	}
	return 0;
}

int action_arg_string(const Hpcc__V1__Arg *arg, const char *root, char **ret)
{
	int r;
	if (arg->kind == HPCC__V1__PATH_KIND__PATH_ROOTED)
		r = strcmp(arg->path, ".") == 0 ? asprintf(ret, "%s%s%s", arg->flag, root, arg->suffix) :
						 asprintf(ret, "%s%s/%s%s", arg->flag, root, arg->path, arg->suffix);
	else
		r = asprintf(ret, "%s%s%s", arg->flag, arg->path, arg->suffix);
	return r < 0 ? -ENOMEM : 0;
}

static int push_arg(struct strv *v, const Hpcc__V1__Arg *a, const char *root)
{
	char *s = NULL;
	int r = action_arg_string(a, root, &s);
	if (r < 0)
		return r;
	r = strv_push(v, s);
	free(s);
	return r;
}

int action_argv(const Hpcc__V1__Command *c, bool preprocessed, const char *root, struct strv *ret)
{
	int r = strv_push(ret, c->compiler);
	for (size_t i = 0; r == 0 && i < c->n_args; i++)
		r = push_arg(ret, c->args[i], root);
	/* The language is explicit, so that no -x among the arguments can
	 * apply to the source in a way the client did not see. */
	if (r == 0)
		r = strv_push(ret, "-x");
	if (r == 0)
		r = strv_push(ret, c->language == 2 ? (preprocessed ? "assembler" : "assembler-with-cpp") :
				   c->language == 1 ? (preprocessed ? "c++-cpp-output" : "c++") :
						      (preprocessed ? "cpp-output" : "c"));
	if (r == 0)
		r = strv_push(ret, "-c");
	if (r == 0)
		r = push_arg(ret, c->source, root);
	if (r == 0)
		r = strv_push(ret, "-o");
	if (r == 0)
		r = push_arg(ret, c->output, root);
	return r;
}

/* A command path as a root-relative path. */
char *action_rooted_path(const Hpcc__V1__Command *c, const Hpcc__V1__Arg *a)
{
	if (a->kind == HPCC__V1__PATH_KIND__PATH_ROOTED)
		return path_normalize(a->path);
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "/%s/%s", c->cwd, a->path) < 0)
		return NULL;
	_cleanup_free_ char *norm = path_normalize(joined);
	if (!norm)
		return NULL;
	return strdup(norm[1] ? norm + 1 : ".");
}

int action_output_paths(const Hpcc__V1__Command *c, struct strv *ret)
{
	_cleanup_free_ char *obj = action_rooted_path(c, c->output);
	if (!obj)
		return -ENOMEM;
	int r = strv_push(ret, obj);
	if (r == 0 && c->split_dwarf) {
		_cleanup_free_ char *dwo = path_replace_suffix(obj, ".dwo");
		r = dwo ? strv_push(ret, dwo) : -ENOMEM;
	}
	return r;
}

int blob_pack(const void *data, size_t n, int level, Hpcc__V1__Blob *ret, struct buf *storage)
{
	hpcc__v1__blob__init(ret);
	struct digest d;
	int r = digest_bytes(data, n, &d);
	if (r < 0)
		return r;
	buf_reset(storage);
	if (storage->max < n + 1024)
		storage->max = n + (n >> 7) + 1024;
	if ((r = compress_zstd(data, n, level, storage)) < 0)
		return r;
	/* The digest lives in the storage too, after the frame. */
	size_t frame = storage->len;
	if ((r = buf_append(storage, d.b, DIGEST_LEN)) < 0)
		return r;
	ret->digest.data = (uint8_t *)storage->data + frame;
	ret->digest.len = DIGEST_LEN;
	ret->size = n;
	ret->zstd = true;
	ret->data.data = (uint8_t *)storage->data;
	ret->data.len = frame;
	return 0;
}

int blob_unpack(const Hpcc__V1__Blob *b, size_t max, struct buf *ret, struct error *err)
{
	if (!b)
		return error_set(err, -EINVAL, "a blob is missing");
	if (b->digest.len != DIGEST_LEN)
		return error_set(err, -EINVAL, "a blob digest is 32 bytes");
	if (b->size > max)
		return error_set(err, -EFBIG, "a blob of %llu bytes is over the limit of %zu",
				 (unsigned long long)b->size, max);
	buf_reset(ret);
	ret->max = (size_t)b->size + 1;
	int r;
	if (b->zstd) {
		r = decompress_zstd(b->data.data, b->data.len, (size_t)b->size, ret);
		if (r < 0)
			return error_set(err, r, r == -EFBIG ? "a blob decompresses to more than it announced" :
							       "a blob is not one valid zstd frame");
	} else if ((r = buf_append(ret, b->data.data, b->data.len)) < 0)
		return error_set(err, r, "a blob is larger than it announced");
	if (ret->len != b->size) {
		r = error_set(err, -EBADMSG, "a blob has %zu bytes, not the %llu it announced", ret->len,
			      (unsigned long long)b->size);
		ret->len = 0;
		return r;
	}
	struct digest d;
	if ((r = digest_bytes(ret->data, ret->len, &d)) < 0 || memcmp(d.b, b->digest.data, DIGEST_LEN) != 0) {
		/* Unverified bytes are not left behind for a careless caller. */
		ret->len = 0;
		return error_set(err, r < 0 ? r : -EBADMSG, "a blob does not match its digest");
	}
	return 0;
}
