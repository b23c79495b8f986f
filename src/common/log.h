/*
 * Logging for long-running processes and for debugging the wrapper. The
 * wrapper must not add lines to a build's output, so by default nothing is
 * written anywhere; HPCC_LOG_FILE (or [log] file) names a file to append to.
 */
#pragma once

#include "macro.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_open(const char *path, enum log_level level);  /* path NULL or "" → off; "-" → stderr */
void log_close(void);
/* Moves the log onto fd (dup2; for a process that closes all other fds);
 * 0 when there is no log. Returns 0 or a negative errno. */
int log_move_fd(int fd);
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
