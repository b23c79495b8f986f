/*
 * The hpcc subcommands other than compiling: init, stats, clean, daemon,
 * version, help. Each returns the process exit code and prints one clear
 * line on error.
 */
#pragma once

int command_init(int argc, char **argv);
int command_stats(int argc, char **argv);
int command_clean(int argc, char **argv);
int command_daemon(int argc, char **argv);
void command_usage(void);
