/*
 * Per-exec staging directories (see staging.h). Paths from a client or from
 * what a compiler left behind are never handed to a path-based call: each
 * access starts from an fd for root/ and opens one component at a time with
 * O_NOFOLLOW|O_DIRECTORY, so a symlink anywhere on the way fails the walk
 * instead of leading out of root/. Removal works the same way, on fds, and
 * bounds its own depth so that a hostile nesting cannot exhaust the stack or
 * the fd table.
 */
#include "staging.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "macro.h"

struct staging {
	char *dir;   /* <base>/exec-XXXXXX, absolute and canonical */
	char *root;  /* <dir>/root */
	char *tmp;   /* <dir>/tmp */
	int root_fd; /* O_DIRECTORY fd for root/, the start of every walk */
};

/* Directories nested deeper than this are moved up to the exec directory
 * before they are emptied, so removal holds at most this many fds. */
#define REMOVE_MAX_DEPTH 32
/* Bounds the rescans of the exec directory; each one removes at least
 * REMOVE_MAX_DEPTH levels, so this covers any tree the file system holds. */
#define REMOVE_MAX_PASSES (1u << 20)

bool staging_relpath_ok(const char *path, size_t len)
{
	if (!path || len > STAGING_PATH_MAX || !path_is_safe_relative(path, len))
		return false;
	/* path_is_safe_relative allows "." parts; a manifest has no reason to
	 * use them, and refusing them keeps one spelling per file. */
	const char *p = path, *end = path + len;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		if (!e)
			e = end;
		size_t n = (size_t)(e - p);
		if (n > STAGING_NAME_MAX || (n == 1 && p[0] == '.'))
			return false;
		p = e + 1;
	}
	return true;
}

/* A path for a message: it comes from outside, so it is cut short and
 * anything unprintable is replaced before it reaches a log. */
struct shown_path {
	char text[204];
};

static struct shown_path show(const char *path)
{
	struct shown_path r;
	size_t i = 0;
	for (; path && path[i] && i < sizeof(r.text) - 4; i++)
		r.text[i] = (path[i] >= 0x20 && path[i] < 0x7f) ? path[i] : '?';
	if (path && path[i])
		r.text[i++] = '.', r.text[i++] = '.', r.text[i++] = '.';
	r.text[i] = '\0';
	return r;
}

static bool is_root_spelling(const char *relpath)
{
	return relpath[0] == '\0' || strcmp(relpath, ".") == 0;
}

static int check_relpath(const char *relpath, struct error *err)
{
	if (!relpath || !staging_relpath_ok(relpath, strlen(relpath)))
		return error_set(err, -EINVAL, "unsafe staging path \"%s\"", show(relpath).text);
	return 0;
}

/* Opens the directory name inside dirfd without following a symlink;
 * with create, makes it first when missing. */
static int open_subdir(int dirfd, const char *name, bool create)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT || !create)
			return negative_errno();
		if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
			return negative_errno();
	}
	return -ENOENT;
}

/* Opens the directory spelt by the first len bytes of path (a checked
 * relative path; len 0 is root/ itself), one component at a time. */
static int walk(struct staging *s, const char *path, size_t len, bool create)
{
	int fd = fcntl(s->root_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return negative_errno();
	const char *p = path, *end = path + len;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		if (!e)
			e = end;
		char name[STAGING_NAME_MAX + 1];
		size_t n = (size_t)(e - p);
		assert(n > 0 && n <= STAGING_NAME_MAX);
		memcpy(name, p, n);
		name[n] = '\0';
		int next = open_subdir(fd, name, create);
		close(fd);
		if (next < 0)
			return next;
		fd = next;
		p = e + 1;
	}
	return fd;
}

/* Opens the parent directory of relpath; *ret_name is its last component. */
static int walk_parent(struct staging *s, const char *relpath, bool create, const char **ret_name)
{
	const char *slash = strrchr(relpath, '/');
	*ret_name = slash ? slash + 1 : relpath;
	return walk(s, relpath, slash ? (size_t)(slash - relpath) : 0, create);
}

static int walk_error(struct error *err, int r, const char *relpath)
{
	if (r == -ELOOP || r == -ENOTDIR)
		return error_set(err, r, "staging path \"%s\" goes through a symlink or a non-directory",
				 show(relpath).text);
	return error_set(err, r, "cannot open the directories of \"%s\" in the staging root: %s", show(relpath).text,
			 strerror(-r));
}

int staging_write_file(struct staging *s, const char *relpath, const void *data, size_t n, bool executable,
		       struct error *err)
{
	int r = check_relpath(relpath, err);
	if (r < 0)
		return r;
	const char *name;
	_cleanup_close_ int dirfd = walk_parent(s, relpath, true, &name);
	if (dirfd < 0)
		return walk_error(err, dirfd, relpath);
	/* O_EXCL also refuses a symlink at the last component, dangling or not. */
	_cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = negative_errno();
		if (r == -EEXIST)
			return error_set(err, r, "staging path \"%s\" exists already (listed twice?)", show(relpath).text);
		return error_set(err, r, "cannot create \"%s\" in the staging root: %s", show(relpath).text,
				 strerror(-r));
	}
	r = fs_write_all(fd, data, n);
	/* fchmod rather than the open mode: the umask must not change what the
	 * compiler sees (an executable input stays executable). */
	if (r == 0 && fchmod(fd, executable ? 0755 : 0644) < 0)
		r = negative_errno();
	if (r < 0) {
		(void)unlinkat(dirfd, name, 0);
		return error_set(err, r, "cannot write \"%s\" in the staging root: %s", show(relpath).text,
					 strerror(-r));
	}
	return 0;
}

int staging_write_tmp(struct staging *s, const char *name, const void *data, size_t n, struct error *err)
{
	size_t len = strlen(name);
	if (len == 0 || len > STAGING_NAME_MAX || name[0] == '.' ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
		return error_set(err, -EINVAL, "bad staging tmp name \"%s\"", show(name).text);
	_cleanup_close_ int dirfd = open(s->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return error_set(err, negative_errno(), "cannot open the staging tmp dir: %s", strerror(errno));
	_cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return error_set(err, negative_errno(), "cannot create %s in the staging tmp dir: %s", name,
				 strerror(errno));
	int r = fs_write_all(fd, data, n);
	if (r < 0) {
		(void)unlinkat(dirfd, name, 0);
		return error_set(err, r, "cannot write %s in the staging tmp dir: %s", name, strerror(-r));
	}
	return 0;
}

int staging_mkdir(struct staging *s, const char *relpath, struct error *err)
{
	if (relpath && is_root_spelling(relpath))
		return 0;
	int r = check_relpath(relpath, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = walk(s, relpath, strlen(relpath), true);
	if (fd < 0)
		return walk_error(err, fd, relpath);
	return 0;
}

int staging_open_dir(struct staging *s, const char *relpath, int *ret_fd, struct error *err)
{
	if (!relpath || !is_root_spelling(relpath)) {
		int r = check_relpath(relpath, err);
		if (r < 0)
			return r;
	}
	int fd = walk(s, relpath, is_root_spelling(relpath) ? 0 : strlen(relpath), false);
	if (fd < 0)
		return walk_error(err, fd, relpath);
	*ret_fd = fd;
	return 0;
}

int staging_read_file(struct staging *s, const char *relpath, size_t max, struct buf *ret, struct error *err)
{
	int r = check_relpath(relpath, err);
	if (r < 0)
		return r;
	const char *name;
	_cleanup_close_ int dirfd = walk_parent(s, relpath, false, &name);
	if (dirfd < 0)
		return walk_error(err, dirfd, relpath);
	/* Look before opening: opening a FIFO or a device can block or have
	 * side effects, and an output is only ever a regular file. */
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = negative_errno();
		return error_set(err, r, "cannot read \"%s\" in the staging root: %s", show(relpath).text,
					 strerror(-r));
	}
	if (S_ISLNK(st.st_mode))
		return error_set(err, -ELOOP, "staging path \"%s\" is a symlink", show(relpath).text);
	if (S_ISDIR(st.st_mode))
		return error_set(err, -EISDIR, "staging path \"%s\" is a directory", show(relpath).text);
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "staging path \"%s\" is not a regular file", show(relpath).text);
	if ((uint64_t)st.st_size > (uint64_t)max)
		return error_set(err, -EFBIG, "\"%s\" is larger than %zu bytes", show(relpath).text, max);
	/* O_NONBLOCK: should the entry have been swapped for a FIFO since the
	 * fstatat, the open must not hang; the fstat below catches the swap. */
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		r = negative_errno();
		return error_set(err, r, "cannot open \"%s\" in the staging root: %s", show(relpath).text,
					 strerror(-r));
	}
	struct stat st2;
	if (fstat(fd, &st2) < 0)
		return error_set(err, negative_errno(), "cannot stat \"%s\"", show(relpath).text);
	if (!S_ISREG(st2.st_mode) || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
		return error_set(err, -EINVAL, "staging path \"%s\" changed while it was opened", show(relpath).text);
	/* Read into a buffer of our own so that ret is untouched on failure. */
	_cleanup_buf_ struct buf tmp;
	buf_init(&tmp, ret->max);
	r = fs_read_fd(fd, max, &tmp);
	if (r == -EFBIG)
		return error_set(err, r, "\"%s\" is larger than %zu bytes", show(relpath).text, max);
	if (r < 0)
		return error_set(err, r, "cannot read \"%s\" in the staging root: %s", show(relpath).text,
					 strerror(-r));
	buf_free(ret);
	*ret = tmp;
	tmp = (struct buf){ 0 };
	return 0;
}

/* Empties the directory open as fd and closes it. A subdirectory at the
 * depth cap is renamed into top_fd instead of being entered, and *moved
 * counts those so that the caller scans top_fd again. */
static void remove_contents(int fd, int top_fd, unsigned depth, unsigned *moved)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *name = e->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			(void)unlinkat(fd, name, 0);
			continue;
		}
		/* The compiler may have left a directory without write or search
		 * permission; AT_SYMLINK_NOFOLLOW so that an entry swapped for a
		 * symlink cannot make us chmod something elsewhere. */
		if ((st.st_mode & 0700) != 0700)
			(void)fchmodat(fd, name, 0700, AT_SYMLINK_NOFOLLOW);
		if (depth >= REMOVE_MAX_DEPTH) {
			for (unsigned i = 0; i < 64; i++) {
				char up[64];
				snprintf(up, sizeof(up), ".deep-%u-%u", *moved, i);
				if (renameat(fd, name, top_fd, up) == 0) {
					(*moved)++;
					break;
				}
				if (errno != EEXIST && errno != ENOTEMPTY)
					break;
			}
			continue;
		}
		int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			remove_contents(sub, top_fd, depth + 1, moved);
		(void)unlinkat(fd, name, AT_REMOVEDIR);
	}
	closedir(d);
}

/* Removes the directory name inside parent_fd and everything below it. */
static int remove_dir_at(int parent_fd, const char *name)
{
	(void)fchmodat(parent_fd, name, 0700, AT_SYMLINK_NOFOLLOW);
	_cleanup_close_ int top = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return negative_errno();
	for (unsigned pass = 0; pass < REMOVE_MAX_PASSES; pass++) {
		/* A fresh open file description, so that readdir starts over. */
		int iter = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (iter < 0)
			return negative_errno();
		unsigned moved = 0;
		remove_contents(iter, top, 1, &moved);
		if (unlinkat(parent_fd, name, AT_REMOVEDIR) == 0)
			return 0;
		if (errno != ENOTEMPTY && errno != EEXIST)
			return negative_errno();
		if (moved == 0 && pass > 0)
			return -ENOTEMPTY;  /* no progress: something keeps refilling it */
	}
	return -ENOTEMPTY;
}

int staging_create(const char *base_dir, struct staging **ret, struct error *err)
{
	if (!base_dir || !base_dir[0])
		return error_set(err, -EINVAL, "no staging base directory");
	int r = fs_mkdir_p(base_dir, 0700);
	if (r < 0)
		return error_set(err, r, "cannot create the staging base %s: %s", base_dir, strerror(-r));
	/* Canonical, so that the root the compiler sees (through getcwd and in
	 * its diagnostics) is exactly the one a prefix map names. */
	_cleanup_free_ char *base = realpath(base_dir, NULL);
	if (!base)
		return error_set(err, negative_errno(), "cannot resolve the staging base %s", base_dir);
	_cleanup_free_ char *dir = NULL;
	if (asprintf(&dir, "%s/exec-XXXXXX", base) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (!mkdtemp(dir))
		return error_set(err, negative_errno(), "cannot create a staging directory in %s: %s", base,
				 strerror(errno));

	_cleanup_free_ struct staging *s = calloc(1, sizeof(*s));
	_cleanup_close_ int base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int dir_fd = -1;
	r = -ENOMEM;
	if (!s)
		goto fail;
	s->root_fd = -1;
	if (asprintf(&s->root, "%s/root", dir) < 0 || asprintf(&s->tmp, "%s/tmp", dir) < 0)
		goto fail;
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (base_fd < 0 || dir_fd < 0 || mkdirat(dir_fd, "root", 0755) < 0 || mkdirat(dir_fd, "tmp", 0700) < 0) {
		r = negative_errno();
		goto fail;
	}
	s->root_fd = openat(dir_fd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->root_fd < 0) {
		r = negative_errno();
		goto fail;
	}
	s->dir = TAKE_PTR(dir);
	*ret = TAKE_PTR(s);
	return 0;

fail:
	if (base_fd >= 0)
		(void)remove_dir_at(base_fd, path_basename(dir));
	else
		(void)rmdir(dir);
	if (s) {
		if (s->root_fd >= 0)
			close(s->root_fd);
		free(s->root);
		free(s->tmp);
	}
	return error_set(err, r, "cannot set up the staging directory %s: %s", dir, strerror(-r));
}

const char *staging_root(const struct staging *s)
{
	return s->root;
}

const char *staging_dir(const struct staging *s)
{
	return s->dir;
}

const char *staging_tmp(const struct staging *s)
{
	return s->tmp;
}

void staging_destroy(struct staging *s)
{
	if (!s)
		return;
	if (s->root_fd >= 0)
		close(s->root_fd);
	/* Open the base by path: it is ours, unlike anything below root/. */
	_cleanup_free_ char *base = strdup(s->dir);
	char *slash = base ? strrchr(base, '/') : NULL;
	if (slash) {
		*slash = '\0';
		int base_fd = open(base[0] ? base : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (base_fd >= 0) {
			(void)remove_dir_at(base_fd, slash + 1);
			close(base_fd);
		}
	}
	free(s->dir);
	free(s->root);
	free(s->tmp);
	free(s);
}

int staging_sweep(const char *base_dir)
{
	_cleanup_close_ int base_fd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base_fd < 0)
		return errno == ENOENT ? 0 : negative_errno();
	int iter = fcntl(base_fd, F_DUPFD_CLOEXEC, 3);
	if (iter < 0)
		return negative_errno();
	DIR *d = fdopendir(iter);
	if (!d) {
		close(iter);
		return -ENOMEM;
	}
	int removed = 0, r = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "exec-", 5) != 0)
			continue;
		struct stat st;
		if (fstatat(base_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		int q = remove_dir_at(base_fd, e->d_name);
		if (q == 0)
			removed++;
		else if (r == 0)
			r = q;
	}
	closedir(d);
	return r < 0 ? r : removed;
}
