/*
 * Paths from the host: the staging directory's absolute name and the
 * relative names of inputs, outputs and the working directory. Checks are
 * strict and purely textual (normalised, no "." or ".." or empty parts,
 * bounded lengths); the walks that follow them open one component at a
 * time with O_NOFOLLOW, so neither the image nor a compiler can redirect
 * a path with a symlink, whatever the text said.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Top-level names a staging directory may not live under: the agent's own
 * mounts, and kernel file systems a compiler must never write into. */
static const char *const staging_forbidden_tops[] = { "proc", "sys", "dev", "image", "rw", "merged" };

static bool component_ok(const char *c, size_t len)
{
	if (len == 0 || len > AGENT_NAME_MAX)
		return false;
	if (len == 1 && c[0] == '.')
		return false;
	if (len == 2 && c[0] == '.' && c[1] == '.')
		return false;
	return true;
}

int path_check_relative(const char *p, char *why, size_t why_len)
{
	size_t len = strlen(p);
	const char *c = p;

	if (len == 0) {
		snprintf(why, why_len, "an empty path");
		return -EINVAL;
	}
	if (len > AGENT_PATH_MAX) {
		snprintf(why, why_len, "a path of %zu bytes (limit %d)", len, AGENT_PATH_MAX);
		return -EINVAL;
	}
	if (p[0] == '/') {
		snprintf(why, why_len, "an absolute path: %.200s", p);
		return -EINVAL;
	}
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);

		if (!component_ok(c, n)) {
			snprintf(why, why_len, "a path with an empty, '.', '..' or over-long part: %.200s", p);
			return -EINVAL;
		}
		if (!slash)
			return 0;
		c = slash + 1;
	}
}

static bool staging_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
	       ch == '_' || ch == '-';
}

int path_check_staging(const char *p, char *why, size_t why_len)
{
	size_t len = strlen(p), i;

	if (len > AGENT_STAGING_MAX || p[0] != '/' || len < 2) {
		snprintf(why, why_len, "staging directory '%.300s' is not an absolute path of 2..%d bytes", p,
			 AGENT_STAGING_MAX);
		return -EINVAL;
	}
	for (i = 1; i < len; i++)
		if (p[i] != '/' && !staging_char_ok(p[i])) {
			snprintf(why, why_len, "staging directory '%.300s' has a character outside [A-Za-z0-9._-]", p);
			return -EINVAL;
		}
	if (path_check_relative(p + 1, why, why_len) < 0) {
		snprintf(why, why_len, "staging directory '%.300s' is not normalised", p);
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(staging_forbidden_tops); i++)
		if (path_has_top(p + 1, staging_forbidden_tops[i]) || strcmp(p + 1, staging_forbidden_tops[i]) == 0) {
			snprintf(why, why_len, "staging directory '%.300s' is under /%s", p, staging_forbidden_tops[i]);
			return -EINVAL;
		}
	return 0;
}

bool path_has_top(const char *p, const char *top)
{
	size_t n = strlen(top);
	return strncmp(p, top, n) == 0 && p[n] == '/' && p[n + 1] != '\0';
}

/* -EPERM unless the open directory belongs to root and no one else may
 * add, remove or rename its entries: not writable by group or others, or
 * sticky (like /tmp, where only an entry's owner may move it, and the
 * next component is checked to be root's in turn). */
static int dir_root_only(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != 0 || ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)))
		return -EPERM;
	return 0;
}

/* Opens (and with mk, creates) one directory below dirfd, never through a
 * symlink. */
static int open_component(int dirfd, const char *name, const struct mkdir_opts *mk, int *ret_fd)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), r;

	if (fd < 0 && errno == ENOENT && mk) {
		if (mkdirat(dirfd, name, mk->mode) < 0 && errno != EEXIST)
			return -errno;
		if (mk->chown && fchownat(dirfd, name, mk->uid, mk->gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	/* Whether it was there or another user made it first (EEXIST). */
	if (mk && mk->root_only && (r = dir_root_only(fd)) < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int path_open_dir(int dirfd, const char *rel, size_t rel_len, const struct mkdir_opts *mk, int *ret_fd)
{
	char name[AGENT_NAME_MAX + 1];
	int cur = -1, r;
	size_t i = 0;

	cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	if (mk && mk->root_only && (r = dir_root_only(cur)) < 0) {
		close(cur);
		return r;
	}
	while (i < rel_len) {
		size_t n = 0;
		int next = -1;

		while (i + n < rel_len && rel[i + n] != '/')
			n++;
		if (n == 0 || n > AGENT_NAME_MAX) {
			close(cur);
			return -EINVAL;
		}
		memcpy(name, rel + i, n);
		name[n] = '\0';
		r = open_component(cur, name, mk, &next);
		close(cur);
		if (r < 0)
			return r;
		cur = next;
		i += n + 1;
	}
	*ret_fd = cur;
	return 0;
}

int path_open_file(int dirfd, const char *rel, int flags, mode_t mode, const struct mkdir_opts *mk, int *ret_fd)
{
	const char *slash = strrchr(rel, '/');
	const char *last = slash ? slash + 1 : rel;
	int parent = -1, fd, r;

	r = path_open_dir(dirfd, rel, slash ? (size_t)(slash - rel) : 0, mk, &parent);
	if (r < 0)
		return r;
	fd = openat(parent, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	r = fd < 0 ? -errno : 0;
	close(parent);
	if (r < 0)
		return r;
	*ret_fd = fd;
	return 0;
}
