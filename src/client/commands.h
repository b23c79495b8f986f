/*
 * The hpcc subcommands other than compiling: init, stats, clean, daemon,
 * version, help. Each returns the process exit code and prints one clear
 * line on error.
 */
#pragma once

#include <stdbool.h>

int command_init(int argc, char **argv);
int command_stats(int argc, char **argv);
int command_clean(int argc, char **argv);
int command_daemon(int argc, char **argv);
/* hpcc audit verify (audit_cmd.c), hpcc explain (explain.c), hpcc inspect
 * and hpcc reproduce (inspect.c). */
int command_audit(int argc, char **argv);
int command_explain(int argc, char **argv);
int command_inspect(int argc, char **argv);
int command_reproduce(int argc, char **argv);
void command_usage(void);
struct config;
/* Loads the configuration and opens the log it names; prints one line and
 * returns -1 on error. */
int command_load_config(struct config *cfg);
/* Replaces the process with the hpccd beside this binary (argv[0] is
 * ignored); returns only on failure. */
int command_exec_hpccd(char **argv);
/* Set by hpccd's main, so that its daemon does not exec itself. */
extern bool command_is_hpccd;
