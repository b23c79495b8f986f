/*
 * Unit tests for src/client/args.c: every reason a command is not cached,
 * joined and separate option forms, response files (quoting, nesting,
 * limits), the split of paths in the key, the run arguments, default output
 * names, -x, -Wp, and a small deterministic fuzz loop that only checks that
 * nothing crashes or leaks (run it under ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/args.h"
#include "buf.h"

#define ARGV(...) ((const char *const[]){ __VA_ARGS__, NULL })

static char tmpdir[] = "/tmp/hpcc-test-args-XXXXXX";
static char created[64][512];
static size_t n_created;

static int parse_fam(enum compiler_family fam, const char *cwd, const char *const *argv, struct compile_args *a,
		     enum args_reason *reason)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	*a = (struct compile_args){ 0 };
	*reason = ARGS_REASON_N;
	return args_parse(argc, (char *const *)argv, cwd, fam, a, reason);
}

/* Space-joined run arguments. */
static char *run_str(const struct compile_args *a)
{
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < a->run_args.n; i++)
		assert_int_equal(buf_printf(&b, "%s%s", i ? " " : "", a->run_args.v[i]), 0);
	return buf_steal(&b);
}

/* Space-joined key arguments; a split one is shown as flag[path]suffix. */
static char *key_str(const struct compile_args *a)
{
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < a->n_key_args; i++) {
		const struct key_arg *k = &a->key_args[i];
		assert_non_null(k->flag);
		assert_int_equal(buf_printf(&b, "%s%s", i ? " " : "", k->flag), 0);
		if (k->path)
			assert_int_equal(buf_printf(&b, "[%s]", k->path), 0);
		else
			assert_null(k->suffix);
		if (k->suffix)
			assert_int_equal(buf_append_str(&b, k->suffix), 0);
	}
	return buf_steal(&b);
}

static void check_reason(enum compiler_family fam, const char *const *argv, enum args_reason want, const char *file,
			 int line)
{
	struct compile_args a;
	enum args_reason reason;
	int r = parse_fam(fam, tmpdir, argv, &a, &reason);
	_assert_int_equal(r, 1, file, line);
	_assert_string_equal(args_reason_name(reason), args_reason_name(want), file, line);
	/* ret is written only on success. */
	_assert_true(a.source == NULL && a.run_args.n == 0 && a.n_key_args == 0, "untouched", file, line);
}

#define REASON(want, ...) check_reason(FAMILY_GCC, ARGV(__VA_ARGS__), ARGS_REASON_##want, __FILE__, __LINE__)
#define REASON_CLANG(want, ...) check_reason(FAMILY_CLANG, ARGV(__VA_ARGS__), ARGS_REASON_##want, __FILE__, __LINE__)

/* Parses a command that must be cacheable and checks its key and run args. */
static void check_ok(enum compiler_family fam, const char *const *argv, struct compile_args *a, const char *key,
		     const char *run, const char *file, int line)
{
	enum args_reason reason;
	int r = parse_fam(fam, tmpdir, argv, a, &reason);
	if (r != 0)
		fail_msg("%s:%d: args_parse returned %d (%s)", file, line, r, r == 1 ? args_reason_name(reason) : "");
	char *k = key_str(a), *rs = run_str(a);
	_assert_string_equal(k, key, file, line);
	_assert_string_equal(rs, run, file, line);
	free(k);
	free(rs);
}

#define OK(a, key, run, ...) check_ok(FAMILY_GCC, ARGV(__VA_ARGS__), a, key, run, __FILE__, __LINE__)
#define OK_CLANG(a, key, run, ...) check_ok(FAMILY_CLANG, ARGV(__VA_ARGS__), a, key, run, __FILE__, __LINE__)

static void write_file(const char *name, const char *data, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	for (size_t i = 0; i < n_created; i++)
		if (strcmp(created[i], path) == 0)
			return;
	assert_true(n_created < 64);
	snprintf(created[n_created++], sizeof(created[0]), "%s", path);
}

static void write_text(const char *name, const char *text) { write_file(name, text, strlen(text)); }

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_created; i++) {
		if (rmdir(created[i]) < 0)
			unlink(created[i]);
	}
	return rmdir(tmpdir);
}

/* ---- Basic shape -------------------------------------------------------- */

static void test_basic(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-O2 -Wall", "-c a.c -o a.o -O2 -Wall", "gcc", "-c", "a.c", "-o", "a.o", "-O2", "-Wall");
	assert_string_equal(a.source, "a.c");
	assert_string_equal(a.output, "a.o");
	assert_true(a.output_given);
	assert_int_equal(a.lang, LANG_C);
	assert_int_equal(a.family, FAMILY_GCC);
	assert_int_equal(a.dep_mode, DEP_NONE);
	assert_int_equal(a.color, COLOR_AUTO);
	assert_false(a.split_dwarf || a.coverage || a.profile_arcs || a.profile_use || a.march_native);
	compile_args_free(&a);
	compile_args_free(&a);  /* idempotent */
	compile_args_free(NULL);
}

static void test_order_kept(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-O2 -I[inc] -Wall -DX -g", "-O2 -c -I inc a.c -Wall -o out/a.o -DX -g", "gcc", "-O2", "-c", "-I",
	   "inc", "a.c", "-Wall", "-o", "out/a.o", "-DX", "-g");
	assert_string_equal(a.output, "out/a.o");
	compile_args_free(&a);
}

static void test_output_forms(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "", "-c a.c -oout.o", "gcc", "-c", "a.c", "-oout.o");
	assert_string_equal(a.output, "out.o");
	compile_args_free(&a);

	/* The last -o wins, as with GCC 12 and Clang 14. */
	OK(&a, "", "-c a.c -o x.o -o y.o", "gcc", "-c", "a.c", "-o", "x.o", "-o", "y.o");
	assert_string_equal(a.output, "y.o");
	compile_args_free(&a);

	/* An output named like a source is still the output. */
	OK(&a, "", "-c b.c -o a.c", "gcc", "-c", "b.c", "-o", "a.c");
	assert_string_equal(a.source, "b.c");
	assert_string_equal(a.output, "a.c");
	compile_args_free(&a);
}

static void test_default_output(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "", "-c src/foo.cpp", "g++", "-c", "src/foo.cpp");
	assert_string_equal(a.output, "foo.o");
	assert_false(a.output_given);
	assert_int_equal(a.lang, LANG_CXX);
	compile_args_free(&a);

	OK(&a, "", "-c dir.d/a.b.c", "gcc", "-c", "dir.d/a.b.c");
	assert_string_equal(a.output, "a.b.o");
	compile_args_free(&a);

	OK(&a, "", "-c .x.c", "gcc", "-c", ".x.c");
	assert_string_equal(a.output, ".x.o");
	compile_args_free(&a);

	OK(&a, "-x c", "-x c -c dir.d/foo", "gcc", "-x", "c", "-c", "dir.d/foo");
	assert_string_equal(a.output, "foo.o");
	compile_args_free(&a);

	/* A name that is all suffix: GCC keeps it, Clang drops it (checked). */
	OK(&a, "-x c", "-x c -c .c", "gcc", "-x", "c", "-c", ".c");
	assert_string_equal(a.output, ".c.o");
	compile_args_free(&a);
	OK_CLANG(&a, "-x c", "-x c -c .c", "clang", "-x", "c", "-c", ".c");
	assert_string_equal(a.output, ".o");
	assert_int_equal(a.family, FAMILY_CLANG);
	compile_args_free(&a);
}

/* ---- Reasons -------------------------------------------------------------- */

static void test_reason_not_compile(void **state _unused_)
{
	REASON(NOT_COMPILE, "gcc");
	REASON(NOT_COMPILE, "gcc", "a.c", "-o", "a");
	REASON(NOT_COMPILE, "gcc", "a.o", "b.o", "-o", "prog");
	REASON(NOT_COMPILE, "gcc", "--version", "-c", "a.c");
	REASON(NOT_COMPILE, "gcc", "-dumpversion");
	REASON(NOT_COMPILE, "gcc", "-c", "a.c", "-print-search-dirs");
	REASON(NOT_COMPILE, "gcc", "-###", "-c", "a.c");
	REASON(NOT_COMPILE, "gcc", "-B", "/x", "a.c");  /* the mode comes before the options */
}

static void test_reason_preprocess(void **state _unused_)
{
	REASON(PREPROCESS_ONLY, "gcc", "-E", "a.c");
	REASON(PREPROCESS_ONLY, "gcc", "-E", "-c", "a.c");
	REASON(PREPROCESS_ONLY, "gcc", "-M", "-c", "a.c");
	REASON(PREPROCESS_ONLY, "gcc", "-MM", "a.c");
	REASON(PREPROCESS_ONLY, "gcc", "-M", "-MD", "-c", "a.c");
	REASON(PREPROCESS_ONLY, "gcc", "-MM", "-MMD", "-c", "a.c", "-o", "a.o");
}

static void test_reason_modes(void **state _unused_)
{
	REASON(ASSEMBLY_OUTPUT, "gcc", "-S", "a.c");
	REASON(ASSEMBLY_OUTPUT, "gcc", "-c", "-S", "a.c");
	REASON(SYNTAX_ONLY, "gcc", "-fsyntax-only", "-c", "a.c");
	REASON(SYNTAX_ONLY, "gcc", "-fsyntax-only", "a.c");
}

static void test_reason_sources(void **state _unused_)
{
	REASON(NO_SOURCE, "gcc", "-c");
	REASON(NO_SOURCE, "gcc", "-c", "-o", "a.o", "-I", "inc.c", "-D", "x.c");
	REASON(MULTIPLE_SOURCES, "gcc", "-c", "a.c", "b.c");
	REASON(MULTIPLE_SOURCES, "gcc", "-c", "a.c", "b.o");
	REASON(STDIN, "gcc", "-x", "c", "-c", "-");
	REASON(STDIN, "gcc", "-c", "-", "-o", "a.o");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.c", "-o", "-");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.c", "-o-");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.c", "-o", "/dev/null");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.c", "-MD", "-MF", "-");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.c", "-Wp,-MD,/dev/null");
}

static void test_reason_save_temps(void **state _unused_)
{
	REASON(SAVE_TEMPS, "gcc", "-c", "a.c", "-save-temps");
	REASON(SAVE_TEMPS, "gcc", "-c", "a.c", "-save-temps=obj");
	REASON(SAVE_TEMPS, "gcc", "-c", "a.c", "--save-temps");
}

static void test_reason_pch(void **state _unused_)
{
	REASON(PCH, "gcc", "-c", "a.h");
	REASON(PCH, "g++", "-c", "a.hpp");
	REASON(PCH, "g++", "-c", "a.hh");
	REASON(PCH, "g++", "-c", "a.H");
	REASON(PCH, "g++", "-c", "a.hxx");
	REASON(PCH, "gcc", "-x", "c-header", "-c", "a.c");
	REASON(PCH, "gcc", "-xc++-header", "-c", "a.c");
	REASON(PCH, "gcc", "-c", "a.c", "-include-pch", "x.pch");
	REASON(PCH, "gcc", "-c", "a.c", "-include-pchx.pch");
	REASON(PCH, "gcc", "-c", "a.c", "-fpch-preprocess");
}

static void test_reason_language(void **state _unused_)
{
	REASON(LANGUAGE, "gcc", "-c", "a.s");
	REASON(LANGUAGE, "gcc", "-c", "a.i");
	REASON(LANGUAGE, "gcc", "-c", "a.ii");
	REASON(LANGUAGE, "gcc", "-c", "a.m");
	REASON(LANGUAGE, "gcc", "-c", "a.mm");
	REASON(LANGUAGE, "gcc", "-c", "a.f90");
	REASON(LANGUAGE, "gcc", "-c", "noext");
	REASON(LANGUAGE, "gcc", "-c", ".c");  /* GCC: no suffix, a linker input */
	REASON(LANGUAGE, "gcc", "-x", "assembler", "-c", "a.S");
	REASON(LANGUAGE, "gcc", "-x", "objective-c", "-c", "a.c");
	REASON(LANGUAGE, "gcc", "-x", "cpp-output", "-c", "a.c");
	REASON_CLANG(LANGUAGE, "clang", "-ObjC", "-c", "a.c");
	REASON_CLANG(LANGUAGE, "clang", "-c", "a.cu");
}

static void test_reason_multiple_arch(void **state _unused_)
{
	REASON_CLANG(MULTIPLE_ARCH, "clang", "-arch", "x86_64", "-arch", "arm64", "-c", "a.c");
	struct compile_args a;
	OK_CLANG(&a, "-arch x86_64 -arch x86_64", "-arch x86_64 -arch x86_64 -c a.c", "clang", "-arch", "x86_64",
		 "-arch", "x86_64", "-c", "a.c");
	compile_args_free(&a);
}

static void test_reason_unsupported(void **state _unused_)
{
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-B", "/opt/bin");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-B/opt/bin");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-specs=my.specs");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "--specs", "my.specs");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-wrapper", "gdb,--args");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fplugin=foo.so");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fplugin-arg-foo-x=1");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fdump-tree-all");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fdump-rtl-expand");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-da");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-ftime-report");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-ftime-report-details");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fstack-usage");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fcallgraph-info=su");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-aux-info", "protos.txt");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-dumpdir", "x/");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-dumpbase", "y");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fauto-profile=x.afdo");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fdiagnostics-format=sarif-file");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fopt-info-vec-missed=vec.txt");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-fmodules-ts");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Wa,-adhln=a.lst");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Wa,--64,-al");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Xassembler", "--MD");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Xpreprocessor", "-MD");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "--compile");  /* an unknown long alias */
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "--write-dependencies");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Xfoo", "x");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-o");  /* missing value */
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-gtoggle");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-Xclang", "-load", "-Xclang", "p.so");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-Xclang", "-emit-pch");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-Xclang", "-dependency-file");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-ftime-trace");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-fsave-optimization-record");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-MJ", "cdb.json");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-ivfsoverlay", "o.yaml");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-fmodules");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-emit-llvm");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "--driver-mode=cl");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "-gsplit-dwarf=bogus");
	REASON_CLANG(UNSUPPORTED_OPTION, "clang", "-c", "a.c", "--serialize-diagnostics", "a.dia");
}

static void test_reason_dep_misuse(void **state _unused_)
{
	/* GCC fails on these without -MD/-MMD; stripping them must not hide that. */
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MF", "a.d");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MT", "t");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MP");
	/* Two dependency files asked for in two ways. */
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MD", "-Wp,-MD,x.d");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MF", "y.d", "-Wp,-MMD,x.d");
	/* -Wp forms we do not model. */
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Wp,-MD");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Wp,-MD,");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-Wp,-MF,x.d");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "-MD", "-MV");
}

/* The order of the verdict: mode, options, inputs. */
static void test_reason_order(void **state _unused_)
{
	REASON(PREPROCESS_ONLY, "gcc", "-E", "-S", "a.c", "b.c");
	REASON(SYNTAX_ONLY, "gcc", "-fsyntax-only", "-S", "-c", "a.c");
	REASON(UNSUPPORTED_OPTION, "gcc", "-c", "a.c", "b.c", "-fplugin=x.so");
	REASON(SAVE_TEMPS, "gcc", "-c", "a.c", "-save-temps", "-fplugin=x.so");
	REASON(OUTPUT_STDOUT, "gcc", "-c", "a.s", "-o", "-");
	REASON(STDIN, "gcc", "-c", "a.c", "-");
	REASON(MULTIPLE_SOURCES, "gcc", "-c", "a.h", "b.s");
}

static void test_reason_names(void **state _unused_)
{
	assert_string_equal(args_reason_name(ARGS_REASON_NOT_COMPILE), "not-compile");
	assert_string_equal(args_reason_name(ARGS_REASON_PCH), "pch");
	assert_string_equal(args_reason_name(ARGS_REASON_BAD_RESPONSE_FILE), "bad-response-file");
	assert_string_equal(args_reason_name(ARGS_REASON_N), "unknown");
	assert_string_equal(args_reason_name((enum args_reason)-1), "unknown");
	for (int i = 0; i < ARGS_REASON_N; i++) {
		assert_non_null(args_reason_name(i));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(args_reason_name(i), args_reason_name(j));
	}
}

/* ---- Languages ------------------------------------------------------------ */

static void check_lang(const char *const *argv, enum source_language want, const char *file, int line)
{
	struct compile_args a;
	enum args_reason reason;
	_assert_int_equal(parse_fam(args_family_from_name(argv[0]), tmpdir, argv, &a, &reason), 0, file, line);
	_assert_int_equal(a.lang, want, file, line);
	compile_args_free(&a);
}

#define LANG(want, ...) check_lang(ARGV(__VA_ARGS__), LANG_##want, __FILE__, __LINE__)

static void test_languages(void **state _unused_)
{
	LANG(C, "gcc", "-c", "a.c");
	LANG(CXX, "gcc", "-c", "a.cc");
	LANG(CXX, "gcc", "-c", "a.cp");
	LANG(CXX, "gcc", "-c", "a.cxx");
	LANG(CXX, "gcc", "-c", "a.cpp");
	LANG(CXX, "gcc", "-c", "a.CPP");
	LANG(CXX, "gcc", "-c", "a.c++");
	LANG(CXX, "gcc", "-c", "a.C");
	LANG(ASM_CPP, "gcc", "-c", "a.S");
	LANG(ASM_CPP, "gcc", "-c", "a.sx");
	/* g++ and clang++ compile .c as C++ (checked with -###). */
	LANG(CXX, "g++", "-c", "a.c");
	LANG(CXX, "/usr/bin/x86_64-linux-gnu-g++-12", "-c", "a.c");
	LANG(CXX, "clang++-14", "-c", "a.c");
	LANG(C, "g++", "-x", "c", "-c", "a.c");
	LANG(CXX, "clang", "--driver-mode=g++", "-c", "a.c");
}

static void test_x_option(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-x c++", "-x c++ -c a.c", "gcc", "-x", "c++", "-c", "a.c");
	assert_int_equal(a.lang, LANG_CXX);
	compile_args_free(&a);

	OK(&a, "-xc++", "-xc++ -c a.c", "gcc", "-xc++", "-c", "a.c");
	assert_int_equal(a.lang, LANG_CXX);
	compile_args_free(&a);

	/* -x none goes back to the suffix. */
	OK(&a, "-x c++ -x none", "-x c++ -x none -c a.c", "gcc", "-x", "c++", "-x", "none", "-c", "a.c");
	assert_int_equal(a.lang, LANG_C);
	compile_args_free(&a);

	/* -x after the input does not apply to it. */
	OK(&a, "-x c++", "-c a.c -x c++", "gcc", "-c", "a.c", "-x", "c++");
	assert_int_equal(a.lang, LANG_C);
	compile_args_free(&a);

	/* -x makes a header, or anything, a source of that language. */
	OK(&a, "-x c", "-x c -c a.h", "gcc", "-x", "c", "-c", "a.h");
	assert_int_equal(a.lang, LANG_C);
	assert_string_equal(a.output, "a.o");
	compile_args_free(&a);

	OK(&a, "-x assembler-with-cpp", "-x assembler-with-cpp -c start.asm", "gcc", "-x", "assembler-with-cpp", "-c",
	   "start.asm");
	assert_int_equal(a.lang, LANG_ASM_CPP);
	compile_args_free(&a);

	REASON(LANGUAGE, "gcc", "-x", "c", "-x", "none", "-c", "foo");
}

/* ---- Key arguments ---------------------------------------------------------- */

static void test_key_paths(void **state _unused_)
{
	struct compile_args a;
	OK(&a,
	   "-I[inc] -I[inc2] -isystem[/sys] -isystem[s2] -iquote[q] -idirafter[d] -include[f.h] -include[g.h] "
	   "-imacros[m.h] -iprefix[p/] -iwithprefix[w] -iwithprefixbefore[wb] -isysroot[sr] --sysroot=[s] "
	   "--sysroot=[s2] -L[lib] -L[lib2]",
	   "-c a.c -I inc -Iinc2 -isystem /sys -isystems2 -iquote q -idirafter d -include f.h -includeg.h "
	   "-imacros m.h -iprefix p/ -iwithprefix w -iwithprefixbefore wb -isysroot sr --sysroot s --sysroot=s2 "
	   "-L lib -Llib2",
	   "gcc", "-c", "a.c", "-I", "inc", "-Iinc2", "-isystem", "/sys", "-isystems2", "-iquote", "q", "-idirafter",
	   "d", "-include", "f.h", "-includeg.h", "-imacros", "m.h", "-iprefix", "p/", "-iwithprefix", "w",
	   "-iwithprefixbefore", "wb", "-isysroot", "sr", "--sysroot", "s", "--sysroot=s2", "-L", "lib", "-Llib2");
	compile_args_free(&a);
}

static void test_key_prefix_maps(void **state _unused_)
{
	struct compile_args a;
	OK(&a,
	   "-ffile-prefix-map=[/src]=/x -fdebug-prefix-map=[/a]=b -fmacro-prefix-map=[/m]= "
	   "-fprofile-prefix-map=[p]=/q=r -fdebug-prefix-map=noequals",
	   "-c a.c -ffile-prefix-map=/src=/x -fdebug-prefix-map=/a=b -fmacro-prefix-map=/m= "
	   "-fprofile-prefix-map=p=/q=r -fdebug-prefix-map=noequals",
	   "gcc", "-c", "a.c", "-ffile-prefix-map=/src=/x", "-fdebug-prefix-map=/a=b", "-fmacro-prefix-map=/m=",
	   "-fprofile-prefix-map=p=/q=r", "-fdebug-prefix-map=noequals");
	/* flag + path + suffix gives back the argument. */
	const struct key_arg *k = &a.key_args[0];
	assert_string_equal(k->flag, "-ffile-prefix-map=");
	assert_string_equal(k->path, "/src");
	assert_string_equal(k->suffix, "=/x");
	compile_args_free(&a);
}

static void test_key_defines_not_split(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-DX=/abs/path -D Y=/p -UZ -U W", "-c a.c -DX=/abs/path -D Y=/p -UZ -U W", "gcc", "-c", "a.c",
	   "-DX=/abs/path", "-D", "Y=/p", "-UZ", "-U", "W");
	for (size_t i = 0; i < a.n_key_args; i++)
		assert_null(a.key_args[i].path);
	compile_args_free(&a);
}

/* Values of options that take a separate argument are never sources. */
static void test_separate_values(void **state _unused_)
{
	struct compile_args a;
	OK(&a,
	   "-l m.c -u s.c -T t.c -e e.c -z defs -A a=b -G 8 -Xlinker x.c -Xpreprocessor -DZ -Xassembler --64 "
	   "--param max-inline-insns-single=10 --param=x=1 -imultilib m.c -imultiarch x86_64-linux-gnu",
	   "-c a.c -l m.c -u s.c -T t.c -e e.c -z defs -A a=b -G 8 -Xlinker x.c -Xpreprocessor -DZ -Xassembler --64 "
	   "--param max-inline-insns-single=10 --param=x=1 -imultilib m.c -imultiarch x86_64-linux-gnu",
	   "gcc", "-c", "a.c", "-l", "m.c", "-u", "s.c", "-T", "t.c", "-e", "e.c", "-z", "defs", "-A", "a=b", "-G",
	   "8", "-Xlinker", "x.c", "-Xpreprocessor", "-DZ", "-Xassembler", "--64", "--param",
	   "max-inline-insns-single=10", "--param=x=1", "-imultilib", "m.c", "-imultiarch", "x86_64-linux-gnu");
	assert_string_equal(a.source, "a.c");
	compile_args_free(&a);

	OK_CLANG(&a,
		 "-target x86_64-linux-gnu --target=aarch64-linux-gnu -mllvm -x86-asm-syntax=intel -Xclang "
		 "-fno-pch-timestamp --gcc-toolchain=[/gcc] --gcc-toolchain=[/gcc2] -F[fw] -iframework[fw2]",
		 "-target x86_64-linux-gnu --target=aarch64-linux-gnu -mllvm -x86-asm-syntax=intel -Xclang "
		 "-fno-pch-timestamp -gcc-toolchain /gcc --gcc-toolchain=/gcc2 -F fw -iframework fw2 -c a.c",
		 "clang", "-target", "x86_64-linux-gnu", "--target=aarch64-linux-gnu", "-mllvm",
		 "-x86-asm-syntax=intel", "-Xclang", "-fno-pch-timestamp", "-gcc-toolchain", "/gcc",
		 "--gcc-toolchain=/gcc2", "-F", "fw", "-iframework", "fw2", "-c", "a.c");
	assert_int_equal(a.lang, LANG_C);
	compile_args_free(&a);
}

/* ---- Dependency options ------------------------------------------------------ */

static void test_deps_plain(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-O2 -MG", "-c a.c -o a.o -O2 -MG", "gcc", "-c", "a.c", "-o", "a.o", "-MD", "-MF", "dep.d", "-MT", "t1",
	   "-MQ", "t2", "-MTt3", "-MQt$4", "-O2", "-MP", "-MG");
	assert_int_equal(a.dep_mode, DEP_MD);
	assert_string_equal(a.dep_mf, "dep.d");
	assert_null(a.dep_wp_path);
	assert_true(a.dep_phony);
	assert_int_equal(a.n_dep_targets, 4);
	assert_string_equal(a.dep_targets[0].name, "t1");
	assert_false(a.dep_targets[0].quote);
	assert_string_equal(a.dep_targets[1].name, "t2");
	assert_true(a.dep_targets[1].quote);
	assert_string_equal(a.dep_targets[2].name, "t3");
	assert_false(a.dep_targets[2].quote);
	assert_string_equal(a.dep_targets[3].name, "t$4");
	assert_true(a.dep_targets[3].quote);
	compile_args_free(&a);

	OK(&a, "", "-c a.c", "gcc", "-c", "a.c", "-MMD", "-MFa.d", "-MF", "b.d");
	assert_int_equal(a.dep_mode, DEP_MMD);
	assert_string_equal(a.dep_mf, "b.d");
	assert_false(a.dep_phony);
	compile_args_free(&a);
}

/* Both -MD and -MMD: -MMD wins in either order (GCC 12 and Clang 14). */
static void test_deps_md_mmd(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "", "-c a.c", "gcc", "-MMD", "-MD", "-c", "a.c");
	assert_int_equal(a.dep_mode, DEP_MMD);
	compile_args_free(&a);
	OK(&a, "", "-c a.c", "gcc", "-MD", "-MMD", "-c", "a.c");
	assert_int_equal(a.dep_mode, DEP_MMD);
	compile_args_free(&a);
}

static void test_deps_wp(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-O2", "-c a.c -O2", "gcc", "-c", "a.c", "-Wp,-MD,x.d", "-O2");
	assert_int_equal(a.dep_mode, DEP_MD);
	assert_string_equal(a.dep_wp_path, "x.d");
	assert_null(a.dep_mf);
	compile_args_free(&a);

	OK(&a, "-Wp,-DFOO", "-c a.c -Wp,-DFOO", "gcc", "-c", "a.c", "-Wp,-MMD,dir/x.d,-DFOO");
	assert_int_equal(a.dep_mode, DEP_MMD);
	assert_string_equal(a.dep_wp_path, "dir/x.d");
	compile_args_free(&a);

	OK(&a, "-Wp,-DFOO,-DBAR", "-c a.c -Wp,-DFOO,-DBAR", "gcc", "-c", "a.c", "-Wp,-DFOO,-MD,x.d,-DBAR");
	assert_int_equal(a.dep_mode, DEP_MD);
	compile_args_free(&a);

	/* A -Wp without dependency options is an ordinary argument. */
	OK(&a, "-Wp,-DFOO,-UBAR", "-c a.c -Wp,-DFOO,-UBAR", "gcc", "-c", "a.c", "-Wp,-DFOO,-UBAR");
	assert_int_equal(a.dep_mode, DEP_NONE);
	assert_null(a.dep_wp_path);
	compile_args_free(&a);

	/* -MT with -Wp,-MD works with GCC; the target is kept. */
	OK(&a, "", "-c a.c", "gcc", "-c", "a.c", "-Wp,-MD,x.d", "-MT", "tgt");
	assert_int_equal(a.n_dep_targets, 1);
	assert_string_equal(a.dep_targets[0].name, "tgt");
	compile_args_free(&a);
}

/* ---- Other facts ---------------------------------------------------------------- */

static void test_color(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-O2", "-c a.c -fdiagnostics-color -O2", "gcc", "-c", "a.c", "-fdiagnostics-color", "-O2");
	assert_int_equal(a.color, COLOR_ALWAYS);
	compile_args_free(&a);

	OK(&a, "", "-c a.c -fdiagnostics-color=always -fdiagnostics-color=never", "gcc", "-c", "a.c",
	   "-fdiagnostics-color=always", "-fdiagnostics-color=never");
	assert_int_equal(a.color, COLOR_NEVER);
	compile_args_free(&a);

	OK(&a, "", "-c a.c -fno-diagnostics-color -fdiagnostics-color=auto", "gcc", "-c", "a.c",
	   "-fno-diagnostics-color", "-fdiagnostics-color=auto");
	assert_int_equal(a.color, COLOR_AUTO);
	compile_args_free(&a);

	/* An invalid value stays in the key: the compile fails as it would. */
	OK(&a, "-fdiagnostics-color=bogus", "-c a.c -fdiagnostics-color=bogus", "gcc", "-c", "a.c",
	   "-fdiagnostics-color=bogus");
	assert_int_equal(a.color, COLOR_AUTO);
	compile_args_free(&a);

	OK_CLANG(&a, "", "-c a.c -fcolor-diagnostics", "clang", "-c", "a.c", "-fcolor-diagnostics");
	assert_int_equal(a.color, COLOR_ALWAYS);
	compile_args_free(&a);
	OK_CLANG(&a, "", "-c a.c -fcolor-diagnostics -fno-color-diagnostics", "clang", "-c", "a.c",
		 "-fcolor-diagnostics", "-fno-color-diagnostics");
	assert_int_equal(a.color, COLOR_NEVER);
	compile_args_free(&a);

	/* GCC 12 rejects -fcolor-diagnostics: it is not a colour option there. */
	OK(&a, "-fcolor-diagnostics", "-c a.c -fcolor-diagnostics", "gcc", "-c", "a.c", "-fcolor-diagnostics");
	assert_int_equal(a.color, COLOR_AUTO);
	compile_args_free(&a);
}

static void test_march_native(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-march=native", "-c a.c -march=native", "gcc", "-c", "a.c", "-march=native");
	assert_true(a.march_native);
	compile_args_free(&a);
	OK(&a, "-mtune=native", "-c a.c -mtune=native", "gcc", "-c", "a.c", "-mtune=native");
	assert_true(a.march_native);
	compile_args_free(&a);
	OK_CLANG(&a, "-mcpu=native", "-c a.c -mcpu=native", "clang", "-c", "a.c", "-mcpu=native");
	assert_true(a.march_native);
	compile_args_free(&a);
	OK(&a, "-march=x86-64-v3", "-c a.c -march=x86-64-v3", "gcc", "-c", "a.c", "-march=x86-64-v3");
	assert_false(a.march_native);
	compile_args_free(&a);
}

static void test_split_dwarf(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-g -gsplit-dwarf", "-c a.c -g -gsplit-dwarf", "gcc", "-c", "a.c", "-g", "-gsplit-dwarf");
	assert_true(a.split_dwarf);
	compile_args_free(&a);
	OK(&a, "-gsplit-dwarf -gno-split-dwarf", "-c a.c -gsplit-dwarf -gno-split-dwarf", "gcc", "-c", "a.c",
	   "-gsplit-dwarf", "-gno-split-dwarf");
	assert_false(a.split_dwarf);
	compile_args_free(&a);
	OK_CLANG(&a, "-gsplit-dwarf=single", "-c a.c -gsplit-dwarf=single", "clang", "-c", "a.c",
		 "-gsplit-dwarf=single");
	assert_false(a.split_dwarf);
	compile_args_free(&a);
	OK_CLANG(&a, "-gsplit-dwarf=split", "-c a.c -gsplit-dwarf=split", "clang", "-c", "a.c", "-gsplit-dwarf=split");
	assert_true(a.split_dwarf);
	compile_args_free(&a);
}

static void test_coverage(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "--coverage", "-c a.c --coverage", "gcc", "-c", "a.c", "--coverage");
	assert_true(a.coverage);
	assert_true(a.profile_arcs);
	compile_args_free(&a);
	OK(&a, "-ftest-coverage", "-c a.c -ftest-coverage", "gcc", "-c", "a.c", "-ftest-coverage");
	assert_true(a.coverage);
	assert_false(a.profile_arcs);
	compile_args_free(&a);
	OK(&a, "-fprofile-arcs", "-c a.c -fprofile-arcs", "gcc", "-c", "a.c", "-fprofile-arcs");
	assert_false(a.coverage);
	assert_true(a.profile_arcs);
	compile_args_free(&a);
	/* The directory of -fprofile-generate= goes into the object as written. */
	OK(&a, "-fprofile-generate=/prof", "-c a.c -fprofile-generate=/prof", "gcc", "-c", "a.c",
	   "-fprofile-generate=/prof");
	assert_true(a.profile_arcs);
	compile_args_free(&a);
	OK(&a, "--coverage -fno-test-coverage", "-c a.c --coverage -fno-test-coverage", "gcc", "-c", "a.c",
	   "--coverage", "-fno-test-coverage");
	assert_false(a.coverage);
	assert_true(a.profile_arcs);
	compile_args_free(&a);
}

static void test_profile_use(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-fprofile-use", "-c a.c -fprofile-use", "gcc", "-c", "a.c", "-fprofile-use");
	assert_true(a.profile_use);
	assert_null(a.profile_path);
	compile_args_free(&a);
	OK(&a, "-fprofile-use=[prof/a.gcda] -fprofile-dir=[pd]", "-c a.c -fprofile-use=prof/a.gcda -fprofile-dir=pd",
	   "gcc", "-c", "a.c", "-fprofile-use=prof/a.gcda", "-fprofile-dir=pd");
	assert_true(a.profile_use);
	assert_string_equal(a.profile_path, "prof/a.gcda");
	compile_args_free(&a);
	OK_CLANG(&a, "-fprofile-instr-use=[x.profdata]", "-c a.c -fprofile-instr-use=x.profdata", "clang", "-c", "a.c",
		 "-fprofile-instr-use=x.profdata");
	assert_string_equal(a.profile_path, "x.profdata");
	compile_args_free(&a);
}

static void test_harmless_options(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-dM -Wl,-z,defs -Wa,--64 -fno-modules -fmodulo-sched -undef -v",
	   "-c a.c -dM -Wl,-z,defs -Wa,--64 -fno-modules -fmodulo-sched -undef -v", "gcc", "-c", "a.c", "-dM",
	   "-Wl,-z,defs", "-Wa,--64", "-fno-modules", "-fmodulo-sched", "-undef", "-v");
	compile_args_free(&a);
}

static void test_family_from_name(void **state _unused_)
{
	assert_int_equal(args_family_from_name("clang"), FAMILY_CLANG);
	assert_int_equal(args_family_from_name("/usr/bin/clang++-14"), FAMILY_CLANG);
	assert_int_equal(args_family_from_name("x86_64-linux-gnu-clang"), FAMILY_CLANG);
	assert_int_equal(args_family_from_name("gcc"), FAMILY_GCC);
	assert_int_equal(args_family_from_name("x86_64-linux-gnu-gcc-12"), FAMILY_GCC);
	assert_int_equal(args_family_from_name("cc"), FAMILY_GCC);
	assert_int_equal(args_family_from_name("c++"), FAMILY_GCC);
	assert_int_equal(args_family_from_name("/opt/clang/bin/gcc"), FAMILY_GCC);
	assert_int_equal(args_family_from_name(NULL), FAMILY_GCC);
}

/* ---- Response files --------------------------------------------------------------- */

static void test_rsp_quoting(void **state _unused_)
{
	write_text("q.rsp", "  -DA='x y'\t\"-DB=1 2\"\n-DC=a\\ b\\\\c -DD='' \"-DE=\\\"q\\\"\" -DF='it\\'s' -O2\r\n");
	struct compile_args a;
	OK(&a, "-DA=x y -DB=1 2 -DC=a b\\c -DD= -DE=\"q\" -DF=it's -O2",
	   "-c -DA=x y -DB=1 2 -DC=a b\\c -DD= -DE=\"q\" -DF=it's -O2 a.c", "gcc", "-c", "@q.rsp", "a.c");
	assert_int_equal(a.run_args.n, 9);
	assert_string_equal(a.run_args.v[1], "-DA=x y");
	assert_string_equal(a.run_args.v[2], "-DB=1 2");
	compile_args_free(&a);
}

/* GCC keeps '' as an empty argument (an input named ""); Clang 14 drops it. */
static void test_rsp_empty_argument(void **state _unused_)
{
	write_text("e.rsp", "a.c ''");
	REASON(MULTIPLE_SOURCES, "gcc", "-c", "@e.rsp");
	struct compile_args a;
	OK_CLANG(&a, "", "-c a.c", "clang", "-c", "@e.rsp");
	compile_args_free(&a);
}

static void test_rsp_nested(void **state _unused_)
{
	/* Nested names are relative to cwd, not to the file (GCC 12, Clang 14). */
	write_text("n1.rsp", "@n2.rsp -O1");
	write_text("n2.rsp", "-DNESTED\n");
	struct compile_args a;
	OK(&a, "-DNESTED -O1 -Wall", "-c -DNESTED -O1 a.c -Wall", "gcc", "-c", "@n1.rsp", "a.c", "-Wall");
	compile_args_free(&a);

	char abs[512];
	snprintf(abs, sizeof(abs), "@%s/n2.rsp", tmpdir);
	enum args_reason reason;
	assert_int_equal(parse_fam(FAMILY_GCC, "/nonexistent", ARGV("gcc", "-c", abs, "a.c"), &a, &reason), 0);
	assert_int_equal(a.n_key_args, 1);
	assert_string_equal(a.key_args[0].flag, "-DNESTED");
	compile_args_free(&a);
}

static void test_rsp_missing_is_literal(void **state _unused_)
{
	struct compile_args a;
	OK(&a, "-D @missing.rsp", "-c a.c -D @missing.rsp", "gcc", "-c", "a.c", "-D", "@missing.rsp");
	compile_args_free(&a);
	OK(&a, "-D @", "-c a.c -D @", "gcc", "-c", "a.c", "-D", "@");
	compile_args_free(&a);
	REASON(MULTIPLE_SOURCES, "gcc", "-c", "a.c", "@missing.rsp");
}

static void test_rsp_limits(void **state _unused_)
{
	/* Exactly the maximum size is fine; one byte more is not. */
	size_t max = ARGS_RSP_MAX_SIZE;
	char *big = malloc(max + 1);
	assert_non_null(big);
	memset(big, ' ', max + 1);
	memcpy(big, "-O2", 3);
	write_file("max.rsp", big, max);
	write_file("big.rsp", big, max + 1);
	free(big);
	struct compile_args a;
	OK(&a, "-O2", "-c -O2 a.c", "gcc", "-c", "@max.rsp", "a.c");
	compile_args_free(&a);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@big.rsp", "a.c");

	/* A chain of ARGS_RSP_MAX_DEPTH files is fine, one more is not. */
	char name[32], text[64];
	for (int i = 0; i <= ARGS_RSP_MAX_DEPTH; i++) {
		snprintf(name, sizeof(name), "d%d.rsp", i);
		if (i == ARGS_RSP_MAX_DEPTH)
			snprintf(text, sizeof(text), "-DDEEP");
		else
			snprintf(text, sizeof(text), "@d%d.rsp", i + 1);
		write_text(name, text);
	}
	snprintf(name, sizeof(name), "@d%d.rsp", 1);
	OK(&a, "-DDEEP", "-c -DDEEP a.c", "gcc", "-c", name, "a.c");
	compile_args_free(&a);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@d0.rsp", "a.c");

	write_text("self.rsp", "-O2 @self.rsp");
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@self.rsp", "a.c");

	/* A directory (GCC: "@-file refers to a directory"). */
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/adir", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(created[n_created++], sizeof(created[0]), "%s", dir);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@adir", "a.c");

	/* A FIFO could block us, or eat what was meant for the compiler. */
	char fifo[512];
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(created[n_created++], sizeof(created[0]), "%s", fifo);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@fifo", "a.c");
}

static void test_rsp_too_many(void **state _unused_)
{
	/* More arguments than a strv holds. */
	size_t n = STRV_MAX_ITEMS + 1;
	char *text = malloc(2 * n + 1);
	assert_non_null(text);
	for (size_t i = 0; i < n; i++)
		memcpy(text + 2 * i, "x ", 2);
	write_file("many.rsp", text, 2 * n);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "@many.rsp");

	/* Thousands of references to an empty file: bounded by a file count. */
	write_text("empty.rsp", "");
	size_t refs = 5000;
	char *fan = malloc(refs * 11 + 1);
	assert_non_null(fan);
	for (size_t i = 0; i < refs; i++)
		memcpy(fan + 11 * i, "@empty.rsp ", 11);
	write_file("fan.rsp", fan, refs * 11);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "a.c", "@fan.rsp");
	free(fan);
	free(text);

	struct compile_args a;
	OK(&a, "", "-c a.c", "gcc", "-c", "a.c", "@empty.rsp", "@empty.rsp");
	compile_args_free(&a);
}

static void test_rsp_unreadable(void **state _unused_)
{
	if (geteuid() == 0)
		skip();  /* root reads it anyway */
	write_text("noperm.rsp", "-O2");
	char path[512];
	snprintf(path, sizeof(path), "%s/noperm.rsp", tmpdir);
	assert_int_equal(chmod(path, 0), 0);
	REASON(BAD_RESPONSE_FILE, "gcc", "-c", "a.c", "@noperm.rsp");
}

/* ---- Robustness ------------------------------------------------------------------- */

static void test_degenerate_argv(void **state _unused_)
{
	struct compile_args a = { 0 };
	enum args_reason reason = ARGS_REASON_N;
	assert_int_equal(args_parse(0, NULL, NULL, FAMILY_GCC, &a, &reason), 1);
	assert_int_equal(reason, ARGS_REASON_NOT_COMPILE);

	/* A NULL entry before argc ends the list. */
	char *const argv[] = { "gcc", "-c", NULL, "a.c", NULL };
	assert_int_equal(args_parse(4, argv, "/", FAMILY_GCC, &a, &reason), 1);
	assert_int_equal(reason, ARGS_REASON_NO_SOURCE);

	/* ret_reason may be NULL; an empty argument is an input. */
	assert_int_equal(args_parse(3, (char *const[]){ "gcc", "-c", "", NULL }, NULL, FAMILY_GCC, &a, NULL), 1);
	assert_null(a.source);
}

/* Random commands from a pool of tricky tokens: nothing may crash or leak,
 * and a cacheable result must be self-consistent. */
static void test_fuzz(void **state _unused_)
{
	static const char *const pool[] = {
		"-c", "a.c", "b.cpp", "-o", "x.o", "-", "-x", "c", "none", "c++-header", "-MD", "-MMD", "-MF",
		"-MT", "-MQ", "-MP", "-Wp,-MD,d.d,-DX", "-Wp,-MD", "-Wp,", "-I", "-Iinc", "-D", "-DX=1", "@q.rsp",
		"@missing", "@", "-ffile-prefix-map=a=b", "-ffile-prefix-map=", "-fdiagnostics-color=", "-E", "-S",
		"-arch", "-Xclang", "--sysroot", "--sysroot=", "-include-pch", "-fprofile-use=", "-gsplit-dwarf=",
		"-march=native", "", "-", "--", "-Wa,", "-Wa,-a", "-o-", "-x", "-MF-", "a.h", ".c",
	};
	uint32_t seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		const char *argv[12] = { "gcc" };
		seed = seed * 1103515245u + 12345u;
		int argc = 1 + (int)((seed >> 16) % 10);
		for (int i = 1; i < argc; i++) {
			seed = seed * 1103515245u + 12345u;
			argv[i] = pool[(seed >> 16) % ARRAY_SIZE(pool)];
		}
		argv[argc] = NULL;
		struct compile_args a = { 0 };
		enum args_reason reason = ARGS_REASON_N;
		enum compiler_family fam = (iter & 1) ? FAMILY_CLANG : FAMILY_GCC;
		int r = args_parse(argc, (char *const *)argv, tmpdir, fam, &a, &reason);
		assert_true(r == 0 || r == 1);
		if (r == 1) {
			assert_true(reason < ARGS_REASON_N);
			continue;
		}
		assert_non_null(a.source);
		assert_non_null(a.output);
		assert_true(a.run_args.n >= 2);  /* at least -c and the source */
		for (size_t i = 0; i < a.n_key_args; i++)
			assert_non_null(a.key_args[i].flag);
		compile_args_free(&a);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_order_kept),
		cmocka_unit_test(test_output_forms),
		cmocka_unit_test(test_default_output),
		cmocka_unit_test(test_reason_not_compile),
		cmocka_unit_test(test_reason_preprocess),
		cmocka_unit_test(test_reason_modes),
		cmocka_unit_test(test_reason_sources),
		cmocka_unit_test(test_reason_save_temps),
		cmocka_unit_test(test_reason_pch),
		cmocka_unit_test(test_reason_language),
		cmocka_unit_test(test_reason_multiple_arch),
		cmocka_unit_test(test_reason_unsupported),
		cmocka_unit_test(test_reason_dep_misuse),
		cmocka_unit_test(test_reason_order),
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_languages),
		cmocka_unit_test(test_x_option),
		cmocka_unit_test(test_key_paths),
		cmocka_unit_test(test_key_prefix_maps),
		cmocka_unit_test(test_key_defines_not_split),
		cmocka_unit_test(test_separate_values),
		cmocka_unit_test(test_deps_plain),
		cmocka_unit_test(test_deps_md_mmd),
		cmocka_unit_test(test_deps_wp),
		cmocka_unit_test(test_color),
		cmocka_unit_test(test_march_native),
		cmocka_unit_test(test_split_dwarf),
		cmocka_unit_test(test_coverage),
		cmocka_unit_test(test_profile_use),
		cmocka_unit_test(test_harmless_options),
		cmocka_unit_test(test_family_from_name),
		cmocka_unit_test(test_rsp_quoting),
		cmocka_unit_test(test_rsp_empty_argument),
		cmocka_unit_test(test_rsp_nested),
		cmocka_unit_test(test_rsp_missing_is_literal),
		cmocka_unit_test(test_rsp_limits),
		cmocka_unit_test(test_rsp_too_many),
		cmocka_unit_test(test_rsp_unreadable),
		cmocka_unit_test(test_degenerate_argv),
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
