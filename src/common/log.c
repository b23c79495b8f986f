/*
 * Log sink (see log.h). One line per call, written with a single write(2) to
 * an O_APPEND descriptor so that lines from concurrent processes do not mix.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static enum log_level log_max = LOG_WARN;

void log_open(const char *path, enum log_level level)
{
	log_close();
	log_max = level;
	if (!path || !*path)
		return;
	if (strcmp(path, "-") == 0) {
		log_fd = dup(2);
		return;
	}
	log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
}

void log_close(void)
{
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
}

int log_move_fd(int fd)
{
	if (log_fd < 0 || log_fd == fd)
		return 0;
	if (dup2(log_fd, fd) < 0)
		return -errno;
	close(log_fd);
	log_fd = fd;
	return 0;
}

int log_level_parse(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcasecmp(s, names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (log_fd < 0 || level > log_max)
		return;
	static const char *const tags[] = { "error", "warn", "info", "debug" };
	char line[2048];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int n = snprintf(line, sizeof(line), "%lld.%03ld [%d] %s: ", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
			 (int)getpid(), tags[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ssize_t w = write(log_fd, line, len);
	(void)w;
}
