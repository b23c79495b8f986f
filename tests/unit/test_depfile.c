/*
 * Unit tests for src/client/depfile.c. The golden vectors are the exact
 * files that gcc 12.2.0 and clang 14.0.6 (Debian 12) wrote for the command
 * in each vector's name, run in a fixture at /tmp/hpcc-golden (hence that
 * absolute path); each deps list is what depfile_parse() read from the same
 * compiler's full "-MD -MF" output for that command, is_system marking the
 * headers under /usr/ and the -isystem directory sys/. The rules they pin
 * down are documented in depfile.c; tests/integration/depfile_formats.sh
 * checks the same rules against the live compilers on a larger matrix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/depfile.h"
#include "macro.h"

struct golden_target {
	const char *name;
	bool quote;
};

struct golden {
	const char *name;  /* what was run */
	enum compiler_family family;
	enum dep_mode mode;
	const char *source;
	const char *output;  /* NULL: no -o */
	const char *mf;
	const char *wp;
	struct golden_target targets[8];
	size_t n_targets;
	bool phony;
	const char *const *deps;
	const bool *is_system;
	size_t n_deps;
	bool no_round_trip;  /* clang does not escape a tab, so its output cannot be read back */
	const char *path;
	const char *text;
};

static const char *const deps_0[] = {
	"edge.c",
	"e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h",
	"e/$eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h",
	"e/$eeeeeeeeeeeeeeeeeeeeeeee.h",
	"e/eeeeeeeeeeeeeeee.h",
	"e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h",
	"e/eeeeeeeeeeeeeeeeeeeeeeeeee.h",
	"e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h",
};
static const bool deps_0_system[] = { false, false, false, false, false, false, false, false };
static const char *const deps_1[] = {
	"s.c",
	"short.h",
};
static const bool deps_1_system[] = { false, false };
static const char *const deps_2[] = {
	"main.c",
	"/usr/include/stdc-predef.h",
	"short.h",
	"sub dir/sp ace.h",
	"h#ash/x#y.h",
	"d$ollar/z$w.h",
	"col:on.h",
	"back\\slash.h",
	"inc/a_really_long_directory_name_for_wrapping/header_number_1.h",
	"inc/a_really_long_directory_name_for_wrapping/header_number_2.h",
	"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h",
	"sys/sysh.h",
	"/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h",
};
static const bool deps_2_system[] = { false, true, false, false, false, false, false, false, false, false, false, true, true };
static const char *const deps_3[] = {
	"s.c",
	"/usr/include/stdc-predef.h",
	"short.h",
};
static const bool deps_3_system[] = { false, true, false };
static const char *const deps_4[] = {
	"src dir/we#ird$ name.c",
	"/usr/include/stdc-predef.h",
	"src dir/../short.h",
};
static const bool deps_4_system[] = { false, true, false };
static const char *const deps_5[] = {
	"tab.c",
	"/usr/include/stdc-predef.h",
	"ta\tb.h",
	"a\\ b.h",
};
static const bool deps_5_system[] = { false, true, false, false };
static const char *const deps_6[] = {
	"main.c",
	"short.h",
	"sub dir/sp ace.h",
	"h#ash/x#y.h",
	"d$ollar/z$w.h",
	"col:on.h",
	"back/slash.h",
	"inc/a_really_long_directory_name_for_wrapping/header_number_1.h",
	"inc/a_really_long_directory_name_for_wrapping/header_number_2.h",
	"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h",
	"sys/sysh.h",
	"/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
	"/usr/lib/llvm-14/lib/clang/14.0.6/include/__stddef_max_align_t.h",
};
static const bool deps_6_system[] = { false, false, false, false, false, false, false, false, false, false, true, true, true };
static const char *const deps_7[] = {
	"src dir/we#ird$ name.c",
	"src dir/../short.h",
};
static const bool deps_7_system[] = { false, false };
static const char *const deps_8[] = {
	"tab.c",
	"ta\tb.h",
	"a\\ b.h",
};
static const bool deps_8_system[] = { false, false, false };
static const char *const deps_9[] = {
	"/usr/lib/llvm-14/lib/clang/14.0.6/share/asan_ignorelist.txt",
	"s.c",
	"short.h",
};
static const bool deps_9_system[] = { true, false, false };

static const struct golden goldens[] = {
	{ .name = "exact wrap columns: gcc -c -isystem sys edge.c -nostdinc -MD -o t.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "edge.c",
	  .output = "t.o",
	  .deps = deps_0, .is_system = deps_0_system, .n_deps = ARRAY_SIZE(deps_0),
	  .path = "t.d",
	  .text = "t.o: edge.c e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		" e/$$eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h e/$$eeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		" e/eeeeeeeeeeeeeeee.h e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		" e/eeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		" e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h\n" },
	{ .name = "exact target wrap a: gcc -c -isystem sys s.c -nostdinc -MD -MT tttttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "tttttttttttttttttttttttttttttttttttttttt", false }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "tttttttttttttttttttttttttttttttttttttttt uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu \\\n"
		" v: s.c short.h\n" },
	{ .name = "exact target wrap b: gcc -c -isystem sys s.c -nostdinc -MD -MT tttttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "tttttttttttttttttttttttttttttttttttttttt", false }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "tttttttttttttttttttttttttttttttttttttttt \\\n"
		" uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu v: s.c short.h\n" },
	{ .name = "exact target wrap c: gcc -c -isystem sys s.c -nostdinc -MD -MQ $tttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "$tttttttttttttttttttttttttttttttttttttt", true }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu v \\\n"
		" $$tttttttttttttttttttttttttttttttttttttt: s.c short.h\n" },
	{ .name = "wrap and quoting: gcc -c -isystem sys main.c -MD -o obj/out.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "main.c",
	  .output = "obj/out.o",
	  .deps = deps_2, .is_system = deps_2_system, .n_deps = ARRAY_SIZE(deps_2),
	  .path = "obj/out.d",
	  .text = "obj/out.o: main.c /usr/include/stdc-predef.h short.h sub\\ dir/sp\\ ace.h \\\n"
		" h\\#ash/x\\#y.h d$$ollar/z$$w.h col:on.h back\\slash.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		" /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h \\\n"
		" sys/sysh.h /usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h\n" },
	{ .name = "-MMD -MP default target: gcc -c -isystem sys main.c -MMD -MP",
	  .family = FAMILY_GCC, .mode = DEP_MMD, .source = "main.c",
	  .phony = true,
	  .deps = deps_2, .is_system = deps_2_system, .n_deps = ARRAY_SIZE(deps_2),
	  .path = "main.d",
	  .text = "main.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		" col:on.h back\\slash.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		" /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h\n"
		"short.h:\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"h\\#ash/x\\#y.h:\n"
		"d$$ollar/z$$w.h:\n"
		"col:on.h:\n"
		"back\\slash.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n" },
	{ .name = "-MF: gcc -c -isystem sys main.c -MD -MP -MF deps/custom.d -o obj/o.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "main.c",
	  .output = "obj/o.o",
	  .mf = "deps/custom.d",
	  .phony = true,
	  .deps = deps_2, .is_system = deps_2_system, .n_deps = ARRAY_SIZE(deps_2),
	  .path = "deps/custom.d",
	  .text = "obj/o.o: main.c /usr/include/stdc-predef.h short.h sub\\ dir/sp\\ ace.h \\\n"
		" h\\#ash/x\\#y.h d$$ollar/z$$w.h col:on.h back\\slash.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		" /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h \\\n"
		" sys/sysh.h /usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h\n"
		"/usr/include/stdc-predef.h:\n"
		"short.h:\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"h\\#ash/x\\#y.h:\n"
		"d$$ollar/z$$w.h:\n"
		"col:on.h:\n"
		"back\\slash.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n"
		"sys/sysh.h:\n"
		"/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h:\n" },
	{ .name = "-MQ/-MT order: gcc -c -isystem sys s.c -MD -MQ a -MQ b -MT c -MT d",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "a", true }, { "b", true }, { "c", false }, { "d", false } }, .n_targets = 4,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "s.d",
	  .text = "c d a b: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-MQ then -MT: gcc -c -isystem sys s.c -MD -MQ a -MQ b -MT c",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "a", true }, { "b", true }, { "c", false } }, .n_targets = 3,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "s.d",
	  .text = "c b a: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "./ in targets: gcc -c -isystem sys s.c -MD -MT ./x -MQ ./y -o obj/o.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/o.o",
	  .targets = { { "./x", false }, { "./y", true } }, .n_targets = 2,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "obj/o.d",
	  .text = "x y: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-MQ $x, verbatim -MT: gcc -c -isystem sys s.c -MD -MQ $x -MT a b$$c",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "$x", true }, { "a b$$c", false } }, .n_targets = 2,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "s.d",
	  .text = "a b$$c $$x: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-MQ quoting: gcc -c -isystem sys s.c -MD -MQ with space # and $ and \\ x -o o.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "o.o",
	  .targets = { { "with space # and $ and \\ x", true } }, .n_targets = 1,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "o.d",
	  .text = "with\\ space\\ \\#\\ and\\ $$\\ and\\ \\\\\\ x: s.c /usr/include/stdc-predef.h \\\n"
		" short.h\n" },
	{ .name = "long targets: gcc -c -isystem sys s.c -MD -MT some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o -MT some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2 -MQ some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3 -MT x",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o", false }, { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2", false }, { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3", true }, { "x", false } }, .n_targets = 4,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "s.d",
	  .text = "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o \\\n"
		" some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2 \\\n"
		" x \\\n"
		" some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3: \\\n"
		" s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-Wp,-MD with -o: gcc -c -isystem sys s.c -Wp,-MD,dep.d -o obj/x.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/x.o",
	  .wp = "dep.d",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "dep.d",
	  .text = "s.o: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-Wp,-MMD -MP: gcc -c -isystem sys main.c -Wp,-MMD,dep.d -MP",
	  .family = FAMILY_GCC, .mode = DEP_MMD, .source = "main.c",
	  .wp = "dep.d",
	  .phony = true,
	  .deps = deps_2, .is_system = deps_2_system, .n_deps = ARRAY_SIZE(deps_2),
	  .path = "dep.d",
	  .text = "main.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		" col:on.h back\\slash.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		" inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		" /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h\n"
		"short.h:\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"h\\#ash/x\\#y.h:\n"
		"d$$ollar/z$$w.h:\n"
		"col:on.h:\n"
		"back\\slash.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n" },
	{ .name = "-o without suffix: gcc -c -isystem sys s.c -MD -o foo",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "foo",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "foo.d",
	  .text = "foo: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-o x.y.o: gcc -c -isystem sys s.c -MD -o obj/x.y.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/x.y.o",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "obj/x.y.d",
	  .text = "obj/x.y.o: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-o dir.x/foo: gcc -c -isystem sys s.c -MD -o dir.x/foo",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "dir.x/foo",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "dir.x/foo.d",
	  .text = "dir.x/foo: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-o ./foo.o: gcc -c -isystem sys s.c -MD -o ./foo.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "./foo.o",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "./foo.d",
	  .text = "foo.o: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-o .hidden: gcc -c -isystem sys s.c -MD -o obj/.hidden",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/.hidden",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "obj/.d",
	  .text = "obj/.hidden: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "-o quoted: gcc -c -isystem sys s.c -MD -o obj/with space#$.o",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/with space#$.o",
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "obj/with space#$.d",
	  .text = "obj/with\\ space\\#$$.o: s.c /usr/include/stdc-predef.h short.h\n" },
	{ .name = "odd source: gcc -c -isystem sys src dir/we#ird$ name.c -MD -MP",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "src dir/we#ird$ name.c",
	  .phony = true,
	  .deps = deps_4, .is_system = deps_4_system, .n_deps = ARRAY_SIZE(deps_4),
	  .path = "we#ird$ name.d",
	  .text = "we\\#ird$$\\ name.o: src\\ dir/we\\#ird$$\\ name.c /usr/include/stdc-predef.h \\\n"
		" src\\ dir/../short.h\n"
		"/usr/include/stdc-predef.h:\n"
		"src\\ dir/../short.h:\n" },
	{ .name = "./source: gcc -c -isystem sys ./s.c -MD -MP",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "./s.c",
	  .phony = true,
	  .deps = deps_3, .is_system = deps_3_system, .n_deps = ARRAY_SIZE(deps_3),
	  .path = "s.d",
	  .text = "s.o: s.c /usr/include/stdc-predef.h short.h\n"
		"/usr/include/stdc-predef.h:\n"
		"short.h:\n" },
	{ .name = "tab and backslash: gcc -c -isystem sys tab.c -MD -MP",
	  .family = FAMILY_GCC, .mode = DEP_MD, .source = "tab.c",
	  .phony = true,
	  .deps = deps_5, .is_system = deps_5_system, .n_deps = ARRAY_SIZE(deps_5),
	  .path = "tab.d",
	  .text = "tab.o: tab.c /usr/include/stdc-predef.h ta\\\tb.h a\\\\\\ b.h\n"
		"/usr/include/stdc-predef.h:\n"
		"ta\\\tb.h:\n"
		"a\\\\\\ b.h:\n" },
	{ .name = "exact wrap columns: clang -c -isystem sys edge.c -nostdinc -MD -o t.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "edge.c",
	  .output = "t.o",
	  .deps = deps_0, .is_system = deps_0_system, .n_deps = ARRAY_SIZE(deps_0),
	  .path = "t.d",
	  .text = "t.o: edge.c e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		"  e/$$eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h e/$$eeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		"  e/eeeeeeeeeeeeeeee.h \\\n"
		"  e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		"  e/eeeeeeeeeeeeeeeeeeeeeeeeee.h \\\n"
		"  e/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.h\n" },
	{ .name = "exact target wrap a: clang -c -isystem sys s.c -nostdinc -MD -MT tttttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "tttttttttttttttttttttttttttttttttttttttt", false }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "tttttttttttttttttttttttttttttttttttttttt uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu \\\n"
		"  v: s.c short.h\n" },
	{ .name = "exact target wrap b: clang -c -isystem sys s.c -nostdinc -MD -MT tttttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "tttttttttttttttttttttttttttttttttttttttt", false }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "tttttttttttttttttttttttttttttttttttttttt uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu \\\n"
		"  v: s.c short.h\n" },
	{ .name = "exact target wrap c: clang -c -isystem sys s.c -nostdinc -MD -MQ $tttttttttttttttttttttttttttttttttttttt -MT uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu -MT v",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "$tttttttttttttttttttttttttttttttttttttt", true }, { "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu", false }, { "v", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "$$tttttttttttttttttttttttttttttttttttttt uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu \\\n"
		"  v: s.c short.h\n" },
	{ .name = "wrap and quoting: clang -c -isystem sys main.c -MD -o obj/out.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "main.c",
	  .output = "obj/out.o",
	  .deps = deps_6, .is_system = deps_6_system, .n_deps = ARRAY_SIZE(deps_6),
	  .path = "obj/out.d",
	  .text = "obj/out.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		"  col:on.h back/slash.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		"  /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h \\\n"
		"  sys/sysh.h /usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h \\\n"
		"  /usr/lib/llvm-14/lib/clang/14.0.6/include/__stddef_max_align_t.h\n" },
	{ .name = "-MMD -MP default target: clang -c -isystem sys main.c -MMD -MP",
	  .family = FAMILY_CLANG, .mode = DEP_MMD, .source = "main.c",
	  .phony = true,
	  .deps = deps_6, .is_system = deps_6_system, .n_deps = ARRAY_SIZE(deps_6),
	  .path = "main.d",
	  .text = "main.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		"  col:on.h back/slash.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		"  /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h\n"
		"\n"
		"short.h:\n"
		"\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"\n"
		"h\\#ash/x\\#y.h:\n"
		"\n"
		"d$$ollar/z$$w.h:\n"
		"\n"
		"col:on.h:\n"
		"\n"
		"back/slash.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n" },
	{ .name = "-MF: clang -c -isystem sys main.c -MD -MP -MF deps/custom.d -o obj/o.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "main.c",
	  .output = "obj/o.o",
	  .mf = "deps/custom.d",
	  .phony = true,
	  .deps = deps_6, .is_system = deps_6_system, .n_deps = ARRAY_SIZE(deps_6),
	  .path = "deps/custom.d",
	  .text = "obj/o.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		"  col:on.h back/slash.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		"  /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h \\\n"
		"  sys/sysh.h /usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h \\\n"
		"  /usr/lib/llvm-14/lib/clang/14.0.6/include/__stddef_max_align_t.h\n"
		"\n"
		"short.h:\n"
		"\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"\n"
		"h\\#ash/x\\#y.h:\n"
		"\n"
		"d$$ollar/z$$w.h:\n"
		"\n"
		"col:on.h:\n"
		"\n"
		"back/slash.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n"
		"\n"
		"sys/sysh.h:\n"
		"\n"
		"/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h:\n"
		"\n"
		"/usr/lib/llvm-14/lib/clang/14.0.6/include/__stddef_max_align_t.h:\n" },
	{ .name = "-MQ/-MT order: clang -c -isystem sys s.c -MD -MQ a -MQ b -MT c -MT d",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "a", true }, { "b", true }, { "c", false }, { "d", false } }, .n_targets = 4,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "a b c d: s.c short.h\n" },
	{ .name = "-MQ then -MT: clang -c -isystem sys s.c -MD -MQ a -MQ b -MT c",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "a", true }, { "b", true }, { "c", false } }, .n_targets = 3,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "a b c: s.c short.h\n" },
	{ .name = "./ in targets: clang -c -isystem sys s.c -MD -MT ./x -MQ ./y -o obj/o.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/o.o",
	  .targets = { { "./x", false }, { "./y", true } }, .n_targets = 2,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "obj/o.d",
	  .text = "./x ./y: s.c short.h\n" },
	{ .name = "-MQ $x, verbatim -MT: clang -c -isystem sys s.c -MD -MQ $x -MT a b$$c",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "$x", true }, { "a b$$c", false } }, .n_targets = 2,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "$$x a b$$c: s.c short.h\n" },
	{ .name = "-MQ quoting: clang -c -isystem sys s.c -MD -MQ with space # and $ and \\ x -o o.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "o.o",
	  .targets = { { "with space # and $ and \\ x", true } }, .n_targets = 1,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "o.d",
	  .text = "with\\ space\\ \\#\\ and\\ $$\\ and\\ \\\\\\ x: s.c short.h\n" },
	{ .name = "long targets: clang -c -isystem sys s.c -MD -MT some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o -MT some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2 -MQ some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3 -MT x",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .targets = { { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o", false }, { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2", false }, { "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3", true }, { "x", false } }, .n_targets = 4,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o \\\n"
		"  some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.2 \\\n"
		"  some/long/target/directory/that/forces/the/target/line/to/wrap/object_file.o.3 \\\n"
		"  x: s.c short.h\n" },
	{ .name = "-Wp,-MD with -o: clang -c -isystem sys s.c -Wp,-MD,dep.d -o obj/x.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/x.o",
	  .wp = "dep.d",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "dep.d",
	  .text = "obj/x.o: s.c short.h\n" },
	{ .name = "-Wp,-MMD -MP: clang -c -isystem sys main.c -Wp,-MMD,dep.d -MP",
	  .family = FAMILY_CLANG, .mode = DEP_MMD, .source = "main.c",
	  .wp = "dep.d",
	  .phony = true,
	  .deps = deps_6, .is_system = deps_6_system, .n_deps = ARRAY_SIZE(deps_6),
	  .path = "dep.d",
	  .text = "main.o: main.c short.h sub\\ dir/sp\\ ace.h h\\#ash/x\\#y.h d$$ollar/z$$w.h \\\n"
		"  col:on.h back/slash.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_1.h \\\n"
		"  inc/a_really_long_directory_name_for_wrapping/header_number_2.h \\\n"
		"  /tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h\n"
		"\n"
		"short.h:\n"
		"\n"
		"sub\\ dir/sp\\ ace.h:\n"
		"\n"
		"h\\#ash/x\\#y.h:\n"
		"\n"
		"d$$ollar/z$$w.h:\n"
		"\n"
		"col:on.h:\n"
		"\n"
		"back/slash.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_1.h:\n"
		"\n"
		"inc/a_really_long_directory_name_for_wrapping/header_number_2.h:\n"
		"\n"
		"/tmp/hpcc-golden/inc/a_really_long_directory_name_for_wrapping/header_number_3.h:\n" },
	{ .name = "-o without suffix: clang -c -isystem sys s.c -MD -o foo",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "foo",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "foo.d",
	  .text = "foo: s.c short.h\n" },
	{ .name = "-o x.y.o: clang -c -isystem sys s.c -MD -o obj/x.y.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/x.y.o",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "obj/x.y.d",
	  .text = "obj/x.y.o: s.c short.h\n" },
	{ .name = "-o dir.x/foo: clang -c -isystem sys s.c -MD -o dir.x/foo",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "dir.x/foo",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "dir.x/foo.d",
	  .text = "dir.x/foo: s.c short.h\n" },
	{ .name = "-o ./foo.o: clang -c -isystem sys s.c -MD -o ./foo.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "./foo.o",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "./foo.d",
	  .text = "./foo.o: s.c short.h\n" },
	{ .name = "-o .hidden: clang -c -isystem sys s.c -MD -o obj/.hidden",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/.hidden",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "obj/.d",
	  .text = "obj/.hidden: s.c short.h\n" },
	{ .name = "-o quoted: clang -c -isystem sys s.c -MD -o obj/with space#$.o",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .output = "obj/with space#$.o",
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "obj/with space#$.d",
	  .text = "obj/with\\ space\\#$$.o: s.c short.h\n" },
	{ .name = "odd source: clang -c -isystem sys src dir/we#ird$ name.c -MD -MP",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "src dir/we#ird$ name.c",
	  .phony = true,
	  .deps = deps_7, .is_system = deps_7_system, .n_deps = ARRAY_SIZE(deps_7),
	  .path = "we#ird$ name.d",
	  .text = "we\\#ird$$\\ name.o: src\\ dir/we\\#ird$$\\ name.c src\\ dir/../short.h\n"
		"\n"
		"src\\ dir/../short.h:\n" },
	{ .name = "./source: clang -c -isystem sys ./s.c -MD -MP",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "./s.c",
	  .phony = true,
	  .deps = deps_1, .is_system = deps_1_system, .n_deps = ARRAY_SIZE(deps_1),
	  .path = "s.d",
	  .text = "s.o: s.c short.h\n"
		"\n"
		"short.h:\n" },
	{ .name = "tab and backslash: clang -c -isystem sys tab.c -MD -MP",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "tab.c",
	  .phony = true,
	  .deps = deps_8, .is_system = deps_8_system, .n_deps = ARRAY_SIZE(deps_8),
	  .no_round_trip = true,
	  .path = "tab.d",
	  .text = "tab.o: tab.c ta\tb.h a/\\ b.h\n"
		"\n"
		"ta\tb.h:\n"
		"\n"
		"a/\\ b.h:\n" },
	{ .name = "sanitizer ignorelist first: clang -c -isystem sys s.c -MD -MP -fsanitize=address",
	  .family = FAMILY_CLANG, .mode = DEP_MD, .source = "s.c",
	  .phony = true,
	  .deps = deps_9, .is_system = deps_9_system, .n_deps = ARRAY_SIZE(deps_9),
	  .path = "s.d",
	  .text = "s.o: /usr/lib/llvm-14/lib/clang/14.0.6/share/asan_ignorelist.txt s.c \\\n"
		"  short.h\n"
		"\n"
		"/usr/lib/llvm-14/lib/clang/14.0.6/share/asan_ignorelist.txt:\n"
		"\n"
		"short.h:\n" },
	{ .name = "-MMD drops the system ignorelist: clang -c -isystem sys s.c -MMD -MP -fsanitize=address",
	  .family = FAMILY_CLANG, .mode = DEP_MMD, .source = "s.c",
	  .phony = true,
	  .deps = deps_9, .is_system = deps_9_system, .n_deps = ARRAY_SIZE(deps_9),
	  .path = "s.d",
	  .text = "s.o: s.c short.h\n"
		"\n"
		"short.h:\n" },
};

/* Fills args as args_parse() would for the vector's command. */
static void golden_args(const struct golden *g, struct compile_args *a, struct dep_target *targets)
{
	*a = (struct compile_args){
		.family = g->family,
		.dep_mode = g->mode,
		.source = (char *)g->source,
		.output = (char *)g->output,
		.output_given = g->output != NULL,
		.dep_mf = (char *)g->mf,
		.dep_wp_path = (char *)g->wp,
		.dep_targets = targets,
		.n_dep_targets = g->n_targets,
		.dep_phony = g->phony,
	};
	for (size_t i = 0; i < g->n_targets; i++)
		targets[i] = (struct dep_target){ .name = (char *)g->targets[i].name, .quote = g->targets[i].quote };
}

static void expect_text(const char *what, const char *expected, const char *actual)
{
	if (strcmp(expected, actual) == 0)
		return;
	print_error("%s\n--- expected\n%s--- actual\n%s---\n", what, expected, actual);
	fail();
}

static void render_and_check(const struct golden *g, char *const *deps, const bool *is_system, size_t n)
{
	struct compile_args a;
	struct dep_target targets[8];
	golden_args(g, &a, targets);
	_cleanup_buf_ struct buf out = { 0 };
	_cleanup_free_ char *path = NULL;
	int r = depfile_render(&a, deps, is_system, n, &out, &path);
	if (r < 0) {
		print_error("%s: render failed %d\n", g->name, r);
		fail();
	}
	expect_text(g->name, g->text, out.data);
	expect_text(g->name, g->path, path);
}

static void test_render_golden(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(goldens); i++)
		render_and_check(&goldens[i], (char *const *)goldens[i].deps, goldens[i].is_system,
				 goldens[i].n_deps);
}

/* render(parse(compiler output)) == compiler output: parsing drops the -MP
 * rules, and for -MMD the system headers are already gone. */
static void test_round_trip(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		if (g->no_round_trip)
			continue;
		struct depfile d;
		assert_int_equal(depfile_parse(g->text, strlen(g->text), &d), 0);
		render_and_check(g, d.deps.v, NULL, d.deps.n);
		depfile_free(&d);
	}
}

/* For -MD the file holds every dep, so parsing it gives the list back. */
static void test_parse_golden_deps(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(goldens); i++) {
		const struct golden *g = &goldens[i];
		if (g->mode != DEP_MD || g->no_round_trip)
			continue;
		struct depfile d;
		assert_int_equal(depfile_parse(g->text, strlen(g->text), &d), 0);
		assert_int_equal(d.deps.n, g->n_deps);
		for (size_t k = 0; k < d.deps.n; k++)
			assert_string_equal(d.deps.v[k], g->deps[k]);
		assert_true(d.targets.n >= 1);
		depfile_free(&d);
	}
}

/* Parses text that must succeed and checks targets and deps ("|" separated). */
static void expect_parse(const char *text, size_t len, const char *targets, const char *deps)
{
	struct depfile d;
	int r = depfile_parse(text, len, &d);
	if (r != 0) {
		print_error("parse failed %d: \"%s\"\n", r, text);
		fail();
	}
	const char *want[2] = { targets, deps };
	struct strv *got[2] = { &d.targets, &d.deps };
	for (int k = 0; k < 2; k++) {
		_cleanup_buf_ struct buf joined = { 0 };
		for (size_t i = 0; i < got[k]->n; i++) {
			if (i)
				assert_int_equal(buf_append_char(&joined, '|'), 0);
			assert_int_equal(buf_append_str(&joined, got[k]->v[i]), 0);
		}
		assert_int_equal(buf_append(&joined, "", 0), 0);
		expect_text(text, want[k], joined.data);
	}
	depfile_free(&d);
}

static void expect_parse_error(const char *text, size_t len, int error)
{
	struct depfile d = { .targets.n = 4711 };
	assert_int_equal(depfile_parse(text, len, &d), error);
	assert_int_equal(d.targets.n, 4711);  /* ret is written only on success */
}

#define PARSE(text, targets, deps) expect_parse(text, strlen(text), targets, deps)
#define PARSE_ERROR(text) expect_parse_error(text, sizeof(text) - 1, -EBADMSG)

static void test_parse_malformed(void **state)
{
	PARSE_ERROR("");
	PARSE_ERROR("\n\n  \n");
	PARSE_ERROR("no colon here\n");
	PARSE_ERROR("no colon here");
	PARSE_ERROR("a.o\n: b.c\n");   /* the rule ends before its ':' */
	PARSE_ERROR(": a.c\n");        /* no target */
	PARSE_ERROR("a.o: b.c \\");   /* truncated: a dangling continuation */
	PARSE_ERROR("a.o: b.c\\");
	PARSE_ERROR("a.o: b.c \\\\\\");
	PARSE_ERROR("a.o: b\0c.h\n"); /* a NUL cannot be in a name */
	PARSE_ERROR("a.o:b.c\n");      /* ':' not followed by a blank: still a target name */
	expect_parse_error("a.o: b.c\n", (size_t)DEPFILE_MAX_SIZE + 1, -EFBIG);
	assert_int_equal(depfile_parse(NULL, 0, &(struct depfile){ 0 }), -EINVAL);
}

static void test_parse_forms(void **state)
{
	PARSE("a.o:", "a.o", "");
	PARSE("a.o:\n", "a.o", "");
	PARSE("a.o: b.c", "a.o", "b.c");
	PARSE("\n\n  a.o b.o : b.c  c.h\t d.h\n", "a.o|b.o", "b.c|c.h|d.h");
	PARSE("a.o: b.c \\\n c.h \\\n  d.h\n", "a.o", "b.c|c.h|d.h");
	PARSE("a.o:\\\n b.c\n", "a.o", "b.c");
	PARSE("a.o: b.c\n\nc.h:\nother.o: x.h\n", "a.o", "b.c");  /* only the first rule */
	/* Neither compiler escapes ':', so only ": " ends the targets. */
	PARSE("a:b.o: c:d.h e.h\n", "a:b.o", "c:d.h|e.h");
	PARSE("foo:: x.c\n", "foo:", "x.c");
	/* Make quoting as munge() writes it. */
	PARSE("a.o: sp\\ ace.h h\\#ash.h d$$ollar.h lone$.h\n", "a.o", "sp ace.h|h#ash.h|d$ollar.h|lone$.h");
	PARSE("a.o: a\\\\\\ b.h\n", "a.o", "a\\ b.h");       /* 2N+1 backslashes: N and a blank */
	PARSE("a.o: x\\\\ y.h\n", "a.o", "x\\|y.h");          /* 2N: N ending the name */
	PARSE("a.o: a\\\\#b.h c\\d.h\n", "a.o", "a\\#b.h|c\\d.h"); /* '#' does not double */
	PARSE("a.o: t\\\tab.h\n", "a.o", "t\tab.h");
	PARSE("a.o: x.h\\\\\n", "a.o", "x.h\\");              /* the last backslash continues */
	PARSE("verbatim a b$c: x.c\n", "verbatim|a|b$c", "x.c");
}

static void test_parse_large(void **state)
{
	/* One name of 1 MiB and 20000 short names. */
	size_t big = 1 << 20;
	_cleanup_buf_ struct buf text = { 0 };
	assert_int_equal(buf_append_str(&text, "t.o: "), 0);
	for (size_t i = 0; i < big; i++)
		assert_int_equal(buf_append_char(&text, 'n'), 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(buf_printf(&text, " \\\n h%d.h", i), 0);
	assert_int_equal(buf_append_char(&text, '\n'), 0);
	struct depfile d;
	assert_int_equal(depfile_parse(text.data, text.len, &d), 0);
	assert_int_equal(d.deps.n, 20001);
	assert_int_equal(strlen(d.deps.v[0]), big);
	assert_string_equal(d.deps.v[20000], "h19999.h");
	depfile_free(&d);
	depfile_free(NULL);
}

/* Random bytes from make's special characters: never a crash or a leak
 * (run under -fsanitize=address), and every success renders again. */
static void test_parse_random(void **state)
{
	static const char alphabet[] = " \t\n\\:#$ab\0";
	uint32_t seed = 12345;
	char text[96];
	for (int round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t len = (seed >> 16) % sizeof(text);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			text[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		struct depfile d;
		int r = depfile_parse(text, len, &d);
		if (r < 0) {
			assert_int_equal(r, -EBADMSG);
			continue;
		}
		assert_true(d.targets.n > 0);
		if (d.deps.n > 0) {
			struct dep_target target = { .name = d.targets.v[0], .quote = false };
			struct compile_args a = { .family = round % 2 ? FAMILY_CLANG : FAMILY_GCC, .dep_mode = DEP_MD,
						  .source = d.deps.v[0], .dep_targets = &target, .n_dep_targets = 1,
						  .dep_phony = true };
			_cleanup_buf_ struct buf out = { 0 };
			_cleanup_free_ char *path = NULL;
			assert_int_equal(depfile_render(&a, d.deps.v, NULL, d.deps.n, &out, &path), 0);
		}
		depfile_free(&d);
	}
}

static void test_render_errors_and_append(void **state)
{
	char *deps[] = { "a.c", "/usr/include/x.h", "b.h" };
	bool is_system[] = { true, true, false };
	struct compile_args a = { .family = FAMILY_GCC, .dep_mode = DEP_NONE, .source = "a.c" };
	_cleanup_buf_ struct buf out = { 0 };
	char *path = (char *)"untouched";
	assert_int_equal(depfile_render(&a, deps, NULL, 3, &out, &path), -EINVAL);
	a.dep_mode = DEP_MMD;
	assert_int_equal(depfile_render(&a, deps, NULL, 0, &out, &path), -EINVAL);
	assert_string_equal(path, "untouched");

	/* The text is appended; gcc keeps the main source even if it is marked
	 * as a system file, and -MMD drops the other system headers. */
	assert_int_equal(buf_append_str(&out, "#"), 0);
	assert_int_equal(depfile_render(&a, deps, is_system, 3, &out, &path), 0);
	assert_string_equal(out.data, "#a.o: a.c b.h\n");
	assert_string_equal(path, "a.d");
	free(path);

	/* Without is_system nothing is left out. */
	buf_reset(&out);
	a.family = FAMILY_CLANG;
	a.dep_mode = DEP_MD;
	a.source = "./a.c";
	a.dep_phony = true;
	assert_int_equal(depfile_render(&a, deps, NULL, 3, &out, &path), 0);
	assert_string_equal(out.data, "a.o: a.c /usr/include/x.h b.h\n\n/usr/include/x.h:\n\nb.h:\n");
	assert_string_equal(path, "a.d");
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_golden),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_golden_deps),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_forms),
		cmocka_unit_test(test_parse_large),
		cmocka_unit_test(test_parse_random),
		cmocka_unit_test(test_render_errors_and_append),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
