/*
 * Compiler command-line analysis for the GCC and Clang families (see args.h).
 * A command goes through three stages: response files are expanded into one
 * flat list (GCC's quoting rules, capped in size, depth and count); every
 * argument is then matched against one table of options, which says whether
 * it takes a value, whether that value is a path, and what it means for
 * caching; finally the collected facts are checked in a fixed order that
 * picks one reason when the command must run untouched. The table errs on
 * the side of not caching: an option that writes a file we do not capture,
 * reads a file we do not track, or that we simply do not know to be harmless
 * in its family of long or debugging options is rejected, because a wrong
 * hit is far worse than a miss.
 */
#include "args.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "fs.h"
#include "macro.h"
#include "rsp.h"
#include "strv.h"

static const char *const reason_names[] = {
#define X(name, str) [ARGS_REASON_##name] = str,
	ARGS_REASON_LIST(X)
#undef X
};

const char *args_reason_name(enum args_reason reason)
{
	if ((unsigned)reason >= ARGS_REASON_N)
		return "unknown";
	return reason_names[reason];
}

enum compiler_family args_family_from_name(const char *name)
{
	if (name && strstr(path_basename(name), "clang"))
		return FAMILY_CLANG;
	return FAMILY_GCC;
}

/* ---- The option table -------------------------------------------------- */

enum {
	OPT_SEP = 1 << 0,    /* written alone, the value is the next argument */
	OPT_JOIN = 1 << 1,   /* the value may follow the name directly ("-Idir") */
	OPT_PATH = 1 << 2,   /* the value is a path: split in the key */
	OPT_CLANG = 1 << 3,  /* means something only to Clang; GCC rejects it itself */
};

enum option_action {
	ACT_PLAIN,        /* no meaning for caching: key and run as written */
	ACT_REJECT,       /* the command is not cached, for option->reason */
	ACT_QUERY,        /* a driver query (--version, -print-*): nothing is compiled */
	ACT_COMPILE,      /* -c */
	ACT_PREPROCESS,   /* -E, -M, -MM */
	ACT_ASSEMBLY,     /* -S */
	ACT_SYNTAX_ONLY,  /* -fsyntax-only */
	ACT_OUTPUT,       /* -o */
	ACT_LANG,         /* -x */
	ACT_DEP_MD,
	ACT_DEP_MMD,
	ACT_DEP_MF,
	ACT_DEP_MT,
	ACT_DEP_MQ,
	ACT_DEP_MP,
	ACT_WP,           /* -Wp,... may carry -MD,path or -MMD,path */
	ACT_WA,           /* -Wa,... may ask for a listing or a dependency file */
	ACT_XASSEMBLER,
	ACT_XPREPROCESSOR,
	ACT_XCLANG,
	ACT_ARCH,
	ACT_PREFIX_MAP,   /* -f*-prefix-map=OLD=NEW */
	ACT_PROFILE_USE,
	ACT_PROFILE_ARCS,
	ACT_NO_PROFILE_ARCS,
	ACT_COVERAGE,     /* --coverage: -fprofile-arcs plus -ftest-coverage */
	ACT_TEST_COVERAGE,
	ACT_NO_TEST_COVERAGE,
	ACT_SPLIT_DWARF,
	ACT_NO_SPLIT_DWARF,
	ACT_SPLIT_DWARF_MODE,  /* clang's -gsplit-dwarf=split|single */
	ACT_COLOR_ALWAYS,
	ACT_COLOR_NEVER,
	ACT_COLOR_VALUE,  /* -fdiagnostics-color=... */
	ACT_MARCH,        /* -march= -mcpu= -mtune=: notes "native" */
	ACT_DRIVER_MODE,  /* clang's --driver-mode= */
	ACT_DIAG_FORMAT,  /* -fdiagnostics-format=: the *-file formats write files */
	ACT_OPT_INFO,     /* -fopt-info...=file writes a file */
};

struct option {
	const char *name;
	unsigned flags;
	enum option_action action;
	enum args_reason reason;  /* for ACT_REJECT */
	const char *key_flag;     /* path options whose separate form cannot be joined as is */
};

#define PLAIN(n, f) { n, f, ACT_PLAIN, 0, NULL }
#define PATH(n) { n, OPT_SEP | OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL }
#define DO(n, f, act) { n, f, act, 0, NULL }
#define REJECT(n, f, why) { n, f, ACT_REJECT, ARGS_REASON_##why, NULL }

static const struct option options[] = {
	/* What the driver is asked to do. */
	DO("-c", 0, ACT_COMPILE),
	DO("-S", 0, ACT_ASSEMBLY),
	DO("-E", 0, ACT_PREPROCESS),
	DO("-M", 0, ACT_PREPROCESS),   /* -M and -MM imply -E, even with -MD */
	DO("-MM", 0, ACT_PREPROCESS),
	DO("-fsyntax-only", 0, ACT_SYNTAX_ONLY),
	DO("-###", 0, ACT_QUERY),
	DO("--version", 0, ACT_QUERY),
	DO("--help", OPT_JOIN, ACT_QUERY),
	DO("--target-help", 0, ACT_QUERY),
	DO("-help", 0, ACT_QUERY),
	DO("-dumpversion", 0, ACT_QUERY),
	DO("-dumpfullversion", 0, ACT_QUERY),
	DO("-dumpmachine", 0, ACT_QUERY),
	DO("-dumpspecs", 0, ACT_QUERY),
	DO("-print-", OPT_JOIN, ACT_QUERY),
	DO("--print-", OPT_JOIN, ACT_QUERY),
	DO("-o", OPT_SEP | OPT_JOIN, ACT_OUTPUT),
	DO("-x", OPT_SEP | OPT_JOIN, ACT_LANG),
	DO("--driver-mode=", OPT_JOIN, ACT_DRIVER_MODE),

	/* Dependency files: hpcc writes the one the user asked for itself. -MG
	 * stays an ordinary argument: GCC 12 and Clang 14 refuse it without
	 * -M/-MM, and the compile must keep failing as it would. */
	DO("-MD", 0, ACT_DEP_MD),
	DO("-MMD", 0, ACT_DEP_MMD),
	DO("-MF", OPT_SEP | OPT_JOIN, ACT_DEP_MF),
	DO("-MT", OPT_SEP | OPT_JOIN, ACT_DEP_MT),
	DO("-MQ", OPT_SEP | OPT_JOIN, ACT_DEP_MQ),
	DO("-MP", 0, ACT_DEP_MP),
	PLAIN("-MG", 0),
	REJECT("-MJ", OPT_SEP | OPT_JOIN, UNSUPPORTED_OPTION),  /* writes a compilation database entry */
	DO("-Wp,", OPT_JOIN, ACT_WP),

	/* Arguments for the tools behind the driver. */
	DO("-Wa,", OPT_JOIN, ACT_WA),
	DO("-Xassembler", OPT_SEP, ACT_XASSEMBLER),
	DO("-Xpreprocessor", OPT_SEP, ACT_XPREPROCESSOR),
	DO("-Xclang", OPT_SEP, ACT_XCLANG),
	PLAIN("-Xlinker", OPT_SEP),
	PLAIN("-mllvm", OPT_SEP),

	/* Options whose value must not be taken for an input. -D values are
	 * never split: their text goes into the object as it is. */
	PLAIN("-D", OPT_SEP | OPT_JOIN),
	PLAIN("-U", OPT_SEP | OPT_JOIN),
	PLAIN("-A", OPT_SEP | OPT_JOIN),
	PLAIN("-l", OPT_SEP | OPT_JOIN),
	PLAIN("-u", OPT_SEP | OPT_JOIN),
	PLAIN("-T", OPT_SEP | OPT_JOIN),
	PLAIN("-e", OPT_SEP | OPT_JOIN),
	PLAIN("-z", OPT_SEP | OPT_JOIN),
	PLAIN("-G", OPT_SEP | OPT_JOIN),
	PLAIN("-imultilib", OPT_SEP | OPT_JOIN),
	PLAIN("-imultiarch", OPT_SEP | OPT_JOIN),
	PLAIN("-iplugindir=", OPT_JOIN),
	PLAIN("--param", OPT_SEP),
	PLAIN("--param=", OPT_JOIN),
	PLAIN("-target", OPT_SEP),
	PLAIN("--target=", OPT_JOIN),
	DO("-arch", OPT_SEP, ACT_ARCH),
	PLAIN("-framework", OPT_SEP),
	PLAIN("-install_name", OPT_SEP),
	PLAIN("-object", 0),  /* a Darwin link flag, not "-o bject" */

	/* Paths, split in the key so that it can make them root-relative. */
	PATH("-I"),
	PATH("-isystem"),
	PATH("-isystem-after"),
	PATH("-iquote"),
	PATH("-idirafter"),
	PATH("-include"),
	PATH("-imacros"),
	PATH("-iprefix"),
	PATH("-iwithprefix"),
	PATH("-iwithprefixbefore"),
	PATH("-iwithsysroot"),
	PATH("-isysroot"),
	PATH("-iframework"),
	PATH("-iframeworkwithsysroot"),
	PATH("-iembed-dir"),
	PATH("-cxx-isystem"),
	PATH("-F"),
	PATH("-L"),
	{ "--sysroot", OPT_SEP | OPT_PATH, ACT_PLAIN, 0, "--sysroot=" },
	{ "--sysroot=", OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL },
	{ "-gcc-toolchain", OPT_SEP | OPT_PATH, ACT_PLAIN, 0, "--gcc-toolchain=" },
	{ "--gcc-toolchain=", OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL },
	{ "-fprofile-dir=", OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL },
	{ "-fsanitize-blacklist=", OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL },
	{ "-fsanitize-ignorelist=", OPT_JOIN | OPT_PATH, ACT_PLAIN, 0, NULL },
	DO("-ffile-prefix-map=", OPT_JOIN, ACT_PREFIX_MAP),
	DO("-fdebug-prefix-map=", OPT_JOIN, ACT_PREFIX_MAP),
	DO("-fmacro-prefix-map=", OPT_JOIN, ACT_PREFIX_MAP),
	DO("-fprofile-prefix-map=", OPT_JOIN, ACT_PREFIX_MAP),
	DO("-fcoverage-prefix-map=", OPT_JOIN, ACT_PREFIX_MAP),

	/* Profiles and coverage. */
	DO("-fprofile-use", 0, ACT_PROFILE_USE),
	DO("-fprofile-use=", OPT_JOIN | OPT_PATH, ACT_PROFILE_USE),
	DO("-fprofile-instr-use", 0, ACT_PROFILE_USE),
	DO("-fprofile-instr-use=", OPT_JOIN | OPT_PATH, ACT_PROFILE_USE),
	DO("-fprofile-arcs", 0, ACT_PROFILE_ARCS),
	DO("-fprofile-generate", OPT_JOIN, ACT_PROFILE_ARCS),  /* also =dir, kept whole */
	DO("-fno-profile-arcs", 0, ACT_NO_PROFILE_ARCS),
	DO("--coverage", 0, ACT_COVERAGE),
	DO("-coverage", 0, ACT_COVERAGE),
	DO("-ftest-coverage", 0, ACT_TEST_COVERAGE),
	DO("-fno-test-coverage", 0, ACT_NO_TEST_COVERAGE),
	/* Profile inputs that nothing reports as a dependency. */
	REJECT("-fauto-profile", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fprofile-sample-use", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fprofile-remapping-file=", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fprofile-note=", OPT_JOIN, UNSUPPORTED_OPTION),

	/* Split DWARF, colour, -march=native. */
	DO("-gsplit-dwarf", 0, ACT_SPLIT_DWARF),
	DO("-gsplit-dwarf=", OPT_JOIN, ACT_SPLIT_DWARF_MODE),
	DO("-gno-split-dwarf", 0, ACT_NO_SPLIT_DWARF),
	DO("-fdiagnostics-color", 0, ACT_COLOR_ALWAYS),
	DO("-fdiagnostics-color=", OPT_JOIN, ACT_COLOR_VALUE),
	DO("-fno-diagnostics-color", 0, ACT_COLOR_NEVER),
	DO("-fcolor-diagnostics", OPT_CLANG, ACT_COLOR_ALWAYS),
	DO("-fno-color-diagnostics", OPT_CLANG, ACT_COLOR_NEVER),
	DO("-march=", OPT_JOIN, ACT_MARCH),
	DO("-mcpu=", OPT_JOIN, ACT_MARCH),
	DO("-mtune=", OPT_JOIN, ACT_MARCH),

	/* The -d letters that only annotate output; every other -d... is an
	 * RTL dump (a file per pass) or a Darwin link option. */
	PLAIN("-dA", 0),
	PLAIN("-dD", 0),
	PLAIN("-dI", 0),
	PLAIN("-dM", 0),
	PLAIN("-dN", 0),
	PLAIN("-dU", 0),
	PLAIN("-dp", 0),
	PLAIN("-dP", 0),

	/* Precompiled headers, other languages. */
	REJECT("-include-pch", OPT_SEP | OPT_JOIN, PCH),
	REJECT("-include-pth", OPT_SEP | OPT_JOIN, PCH),
	REJECT("-fpch-preprocess", 0, PCH),
	REJECT("-ObjC", 0, LANGUAGE),
	REJECT("-ObjC++", 0, LANGUAGE),
	REJECT("-save-temps", OPT_JOIN, SAVE_TEMPS),
	REJECT("--save-temps", OPT_JOIN, SAVE_TEMPS),

	/* Options that change the toolchain or its configuration behind our back. */
	REJECT("-B", OPT_SEP | OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-specs", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("-specs=", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("--specs", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("--specs=", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-wrapper", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("-fplugin", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-ivfsoverlay", OPT_SEP | OPT_JOIN, UNSUPPORTED_OPTION),  /* remaps files we would not see */
	REJECT("-fmodules", OPT_JOIN, UNSUPPORTED_OPTION),  /* module caches are outputs and inputs */
	REJECT("-fmodule-", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fcxx-modules", 0, UNSUPPORTED_OPTION),
	REJECT("-frepo", 0, UNSUPPORTED_OPTION),
	REJECT("-gtoggle", 0, UNSUPPORTED_OPTION),
	REJECT("-fcompare-debug", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-ccc-", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-objcmt-", OPT_JOIN, UNSUPPORTED_OPTION),  /* not "-o bjcmt-..." */
	REJECT("-emit-", OPT_JOIN, UNSUPPORTED_OPTION),    /* other outputs, other default names */
	/* -dumpbase and -dumpdir rename the auxiliary outputs (.dwo, .gcno). */
	REJECT("-dumpbase", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("-dumpbase-ext", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("-dumpdir", OPT_SEP, UNSUPPORTED_OPTION),

	/* Options that write files we do not capture, or reports that differ
	 * on every run. */
	REJECT("-aux-info", OPT_SEP, UNSUPPORTED_OPTION),
	REJECT("-fdump-", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-ftime-report", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fmem-report", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fpre-ipa-mem-report", 0, UNSUPPORTED_OPTION),
	REJECT("-fpost-ipa-mem-report", 0, UNSUPPORTED_OPTION),
	REJECT("-time", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fstack-usage", 0, UNSUPPORTED_OPTION),
	REJECT("-fcallgraph-info", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fsave-optimization-record", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-foptimization-record-file=", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-ftime-trace", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fdeps-", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fdiagnostics-add-output", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-fdiagnostics-set-output", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-save-stats", OPT_JOIN, UNSUPPORTED_OPTION),
	REJECT("-gen-cdb-fragment-path", OPT_SEP, UNSUPPORTED_OPTION),
	DO("-fdiagnostics-format=", OPT_JOIN, ACT_DIAG_FORMAT),
	DO("-fopt-info", OPT_JOIN, ACT_OPT_INFO),
};

#undef PLAIN
#undef PATH
#undef DO
#undef REJECT

/* Values of -Xclang (cc1 options) that load code, write files, or replace
 * the object with something else. cc1 has hundreds of options and no stable
 * list, so this is a deny list of prefixes; what is not here is kept in the
 * key as written, which is safe for everything that only changes the object. */
static const char *const xclang_rejected[] = {
	"-load", "-add-plugin", "-plugin", "-emit-", "-include-pch", "-include-pth",
	"-dependency-", "-header-include-", "-module-dependency-dir", "-M", "-o",
	"-serialize-diagnostic", "-stats-file", "-ftime-trace", "-ftime-report", "-opt-record",
	"-coverage-data-file", "-coverage-notes-file", "-split-dwarf", "-ast-", "-dump-",
	"-fdump-", "-print-", "-analyze", "-analyzer-", "-fmodule", "-arcmt-", "-objcmt-",
	"-fsyntax-only", "-E", "-S", "-x",
};

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Finds the option arg belongs to: an exact match wins, then the longest
 * name that arg starts with among options that accept a joined value. */
static const struct option *option_lookup(const char *arg, enum compiler_family family, bool *ret_exact)
{
	const struct option *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct option *o = &options[i];
		if ((o->flags & OPT_CLANG) && family != FAMILY_CLANG)
			continue;
		if (strcmp(arg, o->name) == 0) {
			*ret_exact = true;
			return o;
		}
		size_t len = strlen(o->name);
		if ((o->flags & OPT_JOIN) && len > best_len && strncmp(arg, o->name, len) == 0) {
			best = o;
			best_len = len;
		}
	}
	*ret_exact = false;
	return best;
}

/* ---- Scanning ---------------------------------------------------------- */

struct scan {
	enum compiler_family family;
	bool cxx_driver;          /* g++, clang++: .c sources are C++ */
	struct compile_args *a;   /* the result being built */
	size_t key_alloc;

	bool compile, preprocess, assembly, syntax_only, query;
	bool has_reason;          /* the first option that forbids caching */
	enum args_reason reason;

	const char *x;            /* the -x in force, NULL for none */
	size_t n_inputs;
	bool stdin_input;
	const char *input, *input_x;
	const char *output;       /* the last -o */
	const char *arch;         /* the first -arch */

	bool seen_md, seen_mmd;   /* plain -MD / -MMD */
	bool seen_dep_detail;     /* -MF -MT -MQ -MP */
	enum dep_mode wp_mode;    /* -Wp,-MD,path or -Wp,-MMD,path */
};

static void scan_reject(struct scan *s, enum args_reason reason)
{
	if (!s->has_reason) {
		s->has_reason = true;
		s->reason = reason;
	}
}

static int key_push(struct scan *s, const char *flag, const char *path, const char *suffix)
{
	struct compile_args *a = s->a;
	if (a->n_key_args == s->key_alloc) {
		if (s->key_alloc >= STRV_MAX_ITEMS)
			return -E2BIG;
		size_t n = s->key_alloc ? s->key_alloc * 2 : 32;
		struct key_arg *v = realloc(a->key_args, n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		a->key_args = v;
		s->key_alloc = n;
	}
	struct key_arg k = { .flag = strdup(flag) };
	if (path)
		k.path = strdup(path);
	if (suffix)
		k.suffix = strdup(suffix);
	if (!k.flag || (path && !k.path) || (suffix && !k.suffix)) {
		free(k.flag);
		free(k.path);
		free(k.suffix);
		return -ENOMEM;
	}
	a->key_args[a->n_key_args++] = k;
	return 0;
}

/* Pushes arg (and its separate value, if any) to the run arguments. */
static int run_push(struct scan *s, const char *arg, const char *sep_value)
{
	int r = strv_push(&s->a->run_args, arg);
	if (r >= 0 && sep_value)
		r = strv_push(&s->a->run_args, sep_value);
	return r;
}

/* An argument that means nothing special: into the key and the run as written. */
static int emit_plain(struct scan *s, const char *arg, const char *sep_value)
{
	int r = key_push(s, arg, NULL, NULL);
	if (r >= 0 && sep_value)
		r = key_push(s, sep_value, NULL, NULL);
	if (r >= 0)
		r = run_push(s, arg, sep_value);
	return r;
}

static int emit_path(struct scan *s, const struct option *o, const char *arg, const char *value, bool separate)
{
	const char *flag = separate && o->key_flag ? o->key_flag : o->name;
	int r = key_push(s, flag, value, NULL);
	if (r >= 0)
		r = run_push(s, arg, separate ? value : NULL);
	return r;
}

static int set_string(char **field, const char *value)
{
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int add_dep_target(struct compile_args *a, const char *name, bool quote)
{
	if (a->n_dep_targets >= STRV_MAX_ITEMS)
		return -E2BIG;
	struct dep_target *v = realloc(a->dep_targets, (a->n_dep_targets + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	a->dep_targets = v;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	v[a->n_dep_targets++] = (struct dep_target){ .name = copy, .quote = quote };
	return 0;
}

/* -Wp,a,b,c passes a b c to the preprocessor. -MD,path and -MMD,path are
 * taken out (GCC and Clang both honour them as a dependency file); any
 * other -M option inside is too unusual to model; the rest is put back as
 * one -Wp argument, or dropped when nothing is left. */
static int handle_wp(struct scan *s, const char *arg, const char *list)
{
	_cleanup_strv_ struct strv items = { 0 };
	_cleanup_free_ char *copy = strdup(list);
	if (!copy)
		return -ENOMEM;
	for (char *p = copy;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		int r = strv_push(&items, p);
		if (r < 0)
			return r;
		if (!comma)
			break;
		p = comma + 1;
	}

	_cleanup_buf_ struct buf rest = { .max = BUF_DEFAULT_MAX };
	int r = buf_append_str(&rest, "-Wp");
	bool changed = false, kept = false;
	for (size_t i = 0; r >= 0 && i < items.n; i++) {
		const char *item = items.v[i];
		bool md = strcmp(item, "-MD") == 0, mmd = strcmp(item, "-MMD") == 0;
		if (md || mmd) {
			if (i + 1 >= items.n || items.v[i + 1][0] == '\0') {
				scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
				return emit_plain(s, arg, NULL);
			}
			s->wp_mode = md ? DEP_MD : DEP_MMD;
			r = set_string(&s->a->dep_wp_path, items.v[++i]);
			changed = true;
		} else {
			if (has_prefix(item, "-M"))
				scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
			r = buf_append_char(&rest, ',');
			if (r >= 0)
				r = buf_append_str(&rest, item);
			kept = true;
		}
	}
	if (r < 0)
		return r;
	if (!changed)
		return emit_plain(s, arg, NULL);
	return kept ? emit_plain(s, rest.data, NULL) : 0;
}

/* One assembler option: listings (-a...) and dependency files (--MD) are
 * written beside the object, and -o would move the object itself. */
static bool assembler_option_rejected(const char *opt)
{
	return has_prefix(opt, "-a") || has_prefix(opt, "--MD") || has_prefix(opt, "-MD") || has_prefix(opt, "-o");
}

/* -Wa,a,b,c: each item is checked in place; no prefix we look for holds a
 * comma, so a match cannot run into the next item. */
static void handle_wa(struct scan *s, const char *list)
{
	for (const char *p = list;; p++) {
		if (assembler_option_rejected(p))
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		p = strchr(p, ',');
		if (!p)
			return;
	}
}

static int handle_prefix_map(struct scan *s, const struct option *o, const char *arg, const char *value)
{
	const char *eq = strchr(value, '=');
	if (!eq)  /* invalid: the compiler will say so */
		return emit_plain(s, arg, NULL);
	_cleanup_free_ char *old = strndup(value, (size_t)(eq - value));
	if (!old)
		return -ENOMEM;
	int r = key_push(s, o->name, old, eq);
	if (r >= 0)
		r = run_push(s, arg, NULL);
	return r;
}

static int handle_color(struct scan *s, const char *arg, const char *value)
{
	if (strcmp(value, "always") == 0)
		s->a->color = COLOR_ALWAYS;
	else if (strcmp(value, "never") == 0)
		s->a->color = COLOR_NEVER;
	else if (strcmp(value, "auto") == 0)
		s->a->color = COLOR_AUTO;
	else  /* an invalid value: keep it, so that the compile fails as it would */
		return emit_plain(s, arg, NULL);
	return run_push(s, arg, NULL);
}

static void handle_x(struct scan *s, const char *value)
{
	s->x = strcmp(value, "none") == 0 ? NULL : value;
}

static void handle_arch(struct scan *s, const char *value)
{
	if (!s->arch)
		s->arch = value;
	else if (strcmp(s->arch, value) != 0)
		scan_reject(s, ARGS_REASON_MULTIPLE_ARCH);
}

static void handle_xclang(struct scan *s, const char *value)
{
	for (size_t i = 0; i < ARRAY_SIZE(xclang_rejected); i++)
		if (has_prefix(value, xclang_rejected[i]))
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
}

static void handle_driver_mode(struct scan *s, const char *value)
{
	if (strcmp(value, "g++") == 0)
		s->cxx_driver = true;
	else if (strcmp(value, "gcc") == 0)
		s->cxx_driver = false;
	else  /* cpp, cl, flang: not a GCC-style compile */
		scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
}

/* Applies one matched option; value is the joined or separate value (NULL
 * for a flag), sep_value the separate one only. */
static int handle_option(struct scan *s, const struct option *o, const char *arg, const char *value,
			 const char *sep_value)
{
	struct compile_args *a = s->a;
	switch (o->action) {
	case ACT_PLAIN:
		break;
	case ACT_REJECT:
		scan_reject(s, o->reason);
		break;
	case ACT_QUERY:
		s->query = true;
		break;
	case ACT_COMPILE:
		s->compile = true;
		return run_push(s, arg, NULL);
	case ACT_PREPROCESS:
		s->preprocess = true;
		break;
	case ACT_ASSEMBLY:
		s->assembly = true;
		break;
	case ACT_SYNTAX_ONLY:
		s->syntax_only = true;
		break;
	case ACT_OUTPUT:
		s->output = value;
		return run_push(s, arg, sep_value);
	case ACT_LANG:
		handle_x(s, value);
		break;
	case ACT_DEP_MD:
		s->seen_md = true;
		return 0;
	case ACT_DEP_MMD:
		s->seen_mmd = true;
		return 0;
	case ACT_DEP_MF:
		s->seen_dep_detail = true;
		return set_string(&a->dep_mf, value);
	case ACT_DEP_MT:
	case ACT_DEP_MQ:
		s->seen_dep_detail = true;
		return add_dep_target(a, value, o->action == ACT_DEP_MQ);
	case ACT_DEP_MP:
		s->seen_dep_detail = true;
		a->dep_phony = true;
		return 0;
	case ACT_WP:
		return handle_wp(s, arg, value);
	case ACT_WA:
		handle_wa(s, value);
		break;
	case ACT_XASSEMBLER:
		if (assembler_option_rejected(value))
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		break;
	case ACT_XPREPROCESSOR:
		if (has_prefix(value, "-M"))
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		break;
	case ACT_XCLANG:
		handle_xclang(s, value);
		break;
	case ACT_ARCH:
		handle_arch(s, value);
		break;
	case ACT_PREFIX_MAP:
		return handle_prefix_map(s, o, arg, value);
	case ACT_PROFILE_USE:
		a->profile_use = true;
		free(a->profile_path);
		a->profile_path = NULL;
		if (value && set_string(&a->profile_path, value) < 0)
			return -ENOMEM;
		break;
	case ACT_PROFILE_ARCS:
		a->profile_arcs = true;
		break;
	case ACT_NO_PROFILE_ARCS:
		a->profile_arcs = false;
		break;
	case ACT_COVERAGE:
		a->coverage = a->profile_arcs = true;
		break;
	case ACT_TEST_COVERAGE:
		a->coverage = true;
		break;
	case ACT_NO_TEST_COVERAGE:
		a->coverage = false;
		break;
	case ACT_SPLIT_DWARF:
		a->split_dwarf = true;
		break;
	case ACT_NO_SPLIT_DWARF:
		a->split_dwarf = false;
		break;
	case ACT_SPLIT_DWARF_MODE:
		if (strcmp(value, "split") == 0)
			a->split_dwarf = true;
		else if (strcmp(value, "single") == 0)
			a->split_dwarf = false;
		else
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		break;
	case ACT_COLOR_ALWAYS:
		a->color = COLOR_ALWAYS;
		return run_push(s, arg, NULL);
	case ACT_COLOR_NEVER:
		a->color = COLOR_NEVER;
		return run_push(s, arg, NULL);
	case ACT_COLOR_VALUE:
		return handle_color(s, arg, value);
	case ACT_MARCH:
		if (strcmp(value, "native") == 0)
			a->march_native = true;
		break;
	case ACT_DRIVER_MODE:
		handle_driver_mode(s, value);
		break;
	case ACT_DIAG_FORMAT: {
		size_t len = strlen(value);
		if (len >= 5 && strcmp(value + len - 5, "-file") == 0)
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		break;
	}
	case ACT_OPT_INFO:
		if (strchr(arg, '='))
			scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
		break;
	}
	if (o->flags & OPT_PATH)
		return emit_path(s, o, arg, value, sep_value != NULL);
	return emit_plain(s, arg, sep_value);
}

/* An option that is in no table. Most are harmless flags (-O2, -Wall, -f...)
 * and go into the key as written. Four families are not: GCC accepts long
 * "--" aliases (and abbreviations of them) for -c, -MD, -o and the like;
 * -M... are dependency options; -d... are RTL dumps; -X... pass arguments
 * to tools we cannot see into. */
static int handle_unknown(struct scan *s, const char *arg)
{
	if (has_prefix(arg, "--") || has_prefix(arg, "-M") || has_prefix(arg, "-d") || has_prefix(arg, "-X"))
		scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
	return emit_plain(s, arg, NULL);
}

static int handle_input(struct scan *s, const char *arg)
{
	s->n_inputs++;
	if (strcmp(arg, "-") == 0)
		s->stdin_input = true;
	s->input = arg;
	s->input_x = s->x;
	return run_push(s, arg, NULL);
}

static int scan_args(struct scan *s, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *arg = v[i];
		int r;
		if (arg[0] != '-' || arg[1] == '\0') {
			r = handle_input(s, arg);
		} else {
			bool exact;
			const struct option *o = option_lookup(arg, s->family, &exact);
			if (!o) {
				r = handle_unknown(s, arg);
			} else if (exact && (o->flags & OPT_SEP)) {
				if (i + 1 >= n) {  /* the compiler reports the missing value */
					scan_reject(s, ARGS_REASON_UNSUPPORTED_OPTION);
					r = emit_plain(s, arg, NULL);
				} else {
					i++;
					r = handle_option(s, o, arg, v[i], v[i]);
				}
			} else {
				/* A joined option written with an empty value
				 * ("-fdiagnostics-color=") still has one. */
				const char *value = exact && !(o->flags & OPT_JOIN) ? NULL : arg + strlen(o->name);
				r = handle_option(s, o, arg, value, NULL);
			}
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- Languages, outputs, the verdict ------------------------------------ */

enum lang_class { CLASS_C, CLASS_CXX, CLASS_ASM_CPP, CLASS_HEADER, CLASS_OTHER };

static const struct {
	const char *suffix;
	enum lang_class lang;
} suffixes[] = {
	{ "c", CLASS_C },         { "cc", CLASS_CXX },      { "cp", CLASS_CXX },
	{ "cxx", CLASS_CXX },     { "cpp", CLASS_CXX },     { "CPP", CLASS_CXX },
	{ "c++", CLASS_CXX },     { "C", CLASS_CXX },       { "S", CLASS_ASM_CPP },
	{ "sx", CLASS_ASM_CPP },  { "h", CLASS_HEADER },    { "hh", CLASS_HEADER },
	{ "H", CLASS_HEADER },    { "hp", CLASS_HEADER },   { "hxx", CLASS_HEADER },
	{ "hpp", CLASS_HEADER },  { "HPP", CLASS_HEADER },  { "h++", CLASS_HEADER },
	{ "tcc", CLASS_HEADER },
};

/* The suffix of a file name as GCC sees it: after the last dot, where a dot
 * that starts the name does not count (".c" has no suffix for GCC). */
static const char *name_suffix(const char *base)
{
	const char *dot = strrchr(base, '.');
	return dot && dot != base ? dot : NULL;
}

static enum lang_class lang_of_file(const char *path, bool cxx_driver)
{
	const char *dot = name_suffix(path_basename(path));
	if (!dot)
		return CLASS_OTHER;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		if (strcmp(dot + 1, suffixes[i].suffix) == 0) {
			/* g++ and clang++ compile .c files as C++. */
			if (suffixes[i].lang == CLASS_C && cxx_driver)
				return CLASS_CXX;
			return suffixes[i].lang;
		}
	}
	return CLASS_OTHER;
}

static enum lang_class lang_of_x(const char *x)
{
	if (strcmp(x, "c") == 0)
		return CLASS_C;
	if (strcmp(x, "c++") == 0)
		return CLASS_CXX;
	if (strcmp(x, "assembler-with-cpp") == 0)
		return CLASS_ASM_CPP;
	if (strstr(x, "header"))  /* c-header, c++-header, c++-system-header, ... */
		return CLASS_HEADER;
	return CLASS_OTHER;
}

/* "dir/a.c" -> "a.o" in the cwd. GCC replaces the suffix as name_suffix()
 * sees it (".c" -> ".c.o"); Clang replaces from the last dot anywhere in
 * the name (".c" -> ".o"). Only reachable with -x for names without one. */
static char *default_output(const char *source, enum compiler_family family)
{
	const char *base = path_basename(source);
	const char *dot = family == FAMILY_CLANG ? strrchr(base, '.') : name_suffix(base);
	size_t stem = dot ? (size_t)(dot - base) : strlen(base);
	_cleanup_buf_ struct buf b = { .max = BUF_DEFAULT_MAX };
	if (buf_append(&b, base, stem) < 0 || buf_append_str(&b, ".o") < 0)
		return NULL;
	return buf_steal(&b);
}

/* Outputs that are not files we can replace: stdout, and devices, where
 * writing through a temporary file and a rename would be wrong or, for
 * root, would replace /dev/null with a regular file. */
static bool output_is_special(const char *path)
{
	return path && (strcmp(path, "-") == 0 || has_prefix(path, "/dev/"));
}

/* Picks the one reason a command is not cached, in a fixed order: what the
 * driver is asked to do first, then the options, then the inputs. */
static bool scan_verdict(const struct scan *s, enum args_reason *ret_reason)
{
	const struct compile_args *a = s->a;
	enum args_reason r;
	if (s->query)
		r = ARGS_REASON_NOT_COMPILE;
	else if (s->preprocess)
		r = ARGS_REASON_PREPROCESS_ONLY;
	else if (s->syntax_only)
		r = ARGS_REASON_SYNTAX_ONLY;
	else if (s->assembly)
		r = ARGS_REASON_ASSEMBLY_OUTPUT;
	else if (!s->compile)
		r = ARGS_REASON_NOT_COMPILE;
	else if (s->has_reason)
		r = s->reason;
	/* GCC fails on -MF/-MT/-MQ/-MP without -MD/-MMD; dropping them would
	 * turn that failure into a success. -Wp,-MD,path mixed with -MD or -MF
	 * asks for two dependency files, of which the compiler writes one. */
	else if (s->seen_dep_detail && !s->seen_md && !s->seen_mmd && s->wp_mode == DEP_NONE)
		r = ARGS_REASON_UNSUPPORTED_OPTION;
	else if (s->wp_mode != DEP_NONE && (s->seen_md || s->seen_mmd || a->dep_mf))
		r = ARGS_REASON_UNSUPPORTED_OPTION;
	else if (output_is_special(s->output) || output_is_special(a->dep_mf) || output_is_special(a->dep_wp_path))
		r = ARGS_REASON_OUTPUT_STDOUT;
	else if (s->n_inputs == 0)
		r = ARGS_REASON_NO_SOURCE;
	else if (s->stdin_input)
		r = ARGS_REASON_STDIN;
	else if (s->n_inputs > 1)
		r = ARGS_REASON_MULTIPLE_SOURCES;
	else {
		enum lang_class lang = s->input_x ? lang_of_x(s->input_x) : lang_of_file(s->input, s->cxx_driver);
		if (lang == CLASS_HEADER)
			r = ARGS_REASON_PCH;
		else if (lang == CLASS_OTHER)
			r = ARGS_REASON_LANGUAGE;
		else
			return false;
	}
	*ret_reason = r;
	return true;
}

/* Fills what only the whole command decides. */
static int scan_finish(struct scan *s)
{
	struct compile_args *a = s->a;
	enum lang_class lang = s->input_x ? lang_of_x(s->input_x) : lang_of_file(s->input, s->cxx_driver);
	a->lang = lang == CLASS_CXX ? LANG_CXX : lang == CLASS_ASM_CPP ? LANG_ASM_CPP : LANG_C;

	/* With both -MD and -MMD, GCC's driver always passes -MD before -MMD
	 * to cc1, where the last wins, and Clang lets -MMD win too: in any
	 * order the result is -MMD (checked with GCC 12 and Clang 14). */
	if (s->wp_mode != DEP_NONE)
		a->dep_mode = s->wp_mode;
	else
		a->dep_mode = s->seen_mmd ? DEP_MMD : s->seen_md ? DEP_MD : DEP_NONE;

	a->source = strdup(s->input);
	a->output_given = s->output != NULL;
	a->output = s->output ? strdup(s->output) : default_output(s->input, s->family);
	if (!a->source || !a->output)
		return -ENOMEM;
	return 0;
}

/* g++, clang++, c++, x86_64-linux-gnu-g++-12: the driver's name says C++. */
static bool driver_is_cxx(const char *argv0)
{
	return argv0 && strstr(path_basename(argv0), "++");
}

void compile_args_free(struct compile_args *a)
{
	if (!a)
		return;
	free(a->source);
	free(a->output);
	free(a->dep_mf);
	free(a->dep_wp_path);
	for (size_t i = 0; i < a->n_dep_targets; i++)
		free(a->dep_targets[i].name);
	free(a->dep_targets);
	free(a->profile_path);
	for (size_t i = 0; i < a->n_key_args; i++) {
		free(a->key_args[i].flag);
		free(a->key_args[i].path);
		free(a->key_args[i].suffix);
	}
	free(a->key_args);
	strv_free(&a->run_args);
	*a = (struct compile_args){ 0 };
}

static void compile_args_freep(struct compile_args *a) { compile_args_free(a); }

int args_parse(int argc, char *const *argv, const char *cwd, enum compiler_family family,
	       struct compile_args *ret, enum args_reason *ret_reason)
{
	enum args_reason reason_unused;
	if (!ret_reason)
		ret_reason = &reason_unused;

	/* Stage 1: expand response files into one flat list. */
	_cleanup_strv_ struct strv expanded = { 0 };
	struct rsp_state rsp = { .cwd = cwd, .keep_empty = family != FAMILY_CLANG };
	for (int i = 1; argv && i < argc && argv[i]; i++) {
		int r = rsp_expand(&rsp, argv[i], 0, &expanded, ret_reason);
		if (r != 0)
			return r;
	}

	/* Stage 2: one pass over the arguments. */
	_cleanup_(compile_args_freep) struct compile_args result = { .family = family };
	struct scan s = {
		.family = family,
		.cxx_driver = argv && argc > 0 && driver_is_cxx(argv[0]),
		.a = &result,
	};
	int r = scan_args(&s, expanded.v, expanded.n);
	if (r < 0)
		return r;

	/* Stage 3: the verdict. */
	if (scan_verdict(&s, ret_reason))
		return 1;
	r = scan_finish(&s);
	if (r < 0)
		return r;
	*ret = result;
	result = (struct compile_args){ 0 };
	return 0;
}
