/*
 * The small vocabulary shared by argument parsing, dependency files and keys:
 * which compiler family a command belongs to, the source language, and which
 * dependency file the user asked for.
 */
#pragma once

enum compiler_family { FAMILY_GCC, FAMILY_CLANG };

enum source_language { LANG_C, LANG_CXX, LANG_ASM_CPP };

enum dep_mode {
	DEP_NONE,  /* no dependency file requested */
	DEP_MD,    /* -MD: every header, system ones included */
	DEP_MMD,   /* -MMD: system headers left out */
};

enum color_mode { COLOR_AUTO, COLOR_ALWAYS, COLOR_NEVER };
