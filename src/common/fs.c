/*
 * File system helpers (see fs.h). All descriptors are O_CLOEXEC, reads are
 * capped, and writes that others may observe go through a rename.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

int fs_read_fd(int fd, size_t max, struct buf *out)
{
	/* One byte more than max is asked for, so that a larger input is
	 * noticed; written this way, max + 1 cannot wrap. */
	size_t chunk = max < 64 * 1024 ? max + 1 : 64 * 1024;
	for (;;) {
		int r = buf_reserve(out, chunk);
		if (r == -EFBIG)
			r = buf_reserve(out, 1);  /* near the buffer's own cap: fill the rest */
		if (r < 0 && r != -EFBIG)
			return r;
		size_t room = out->alloc > out->len ? out->alloc - out->len - 1 : 0;
		if (room == 0)
			return -EFBIG;
		ssize_t n = read(fd, out->data + out->len, room);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (n == 0) {
			/* An empty input still leaves a terminated (empty) string. */
			out->data[out->len] = '\0';
			break;
		}
		out->len += (size_t)n;
		out->data[out->len] = '\0';
		if (out->len > max)
			return -EFBIG;
	}
	return 0;
}

int fs_read_file(const char *path, size_t max, struct buf *out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	struct stat st;
	if (fstat(fd, &st) < 0)
		return negative_errno();
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
		return -EFBIG;
	size_t saved = out->max;
	if (out->max < max + 1)
		out->max = max + 1;
	int r = fs_read_fd(fd, max, out);
	out->max = saved;
	return r;
}

int fs_write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int fs_mkstemp(const char *prefix, mode_t mode, char **ret_path)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		unsigned long long rnd = 0;
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
			rnd = ((unsigned long long)getpid() << 32) ^ (unsigned long long)attempt ^ (unsigned long long)(uintptr_t)&rnd;
		char *path = NULL;
		if (asprintf(&path, "%s.%016llx.tmp", prefix, rnd) < 0)
			return -ENOMEM;
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (fd >= 0) {
			*ret_path = path;
			return fd;
		}
		int e = errno;
		free(path);
		if (e != EEXIST)
			return -e;
	}
	return -EEXIST;
}

int fs_write_atomic(const char *path, const void *data, size_t n, mode_t mode, bool sync)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = fs_mkstemp(path, mode, &tmp);
	if (fd < 0)
		return fd;
	int r = fs_write_all(fd, data, n);
	if (r >= 0 && sync && fsync(fd) < 0)
		r = negative_errno();
	if (r >= 0 && close(TAKE_FD(fd)) < 0)
		r = negative_errno();
	if (r >= 0 && rename(tmp, path) < 0)
		r = negative_errno();
	if (r < 0)
		unlink(tmp);
	return r;
}

/* mkdir reports EEXIST for any kind of file, but only a directory will do. */
static int fs_is_dir(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return negative_errno();
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static bool same_content(const char *path, const void *data, size_t n)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != n || st.st_nlink != 1)
		return false;
	char tmp[65536];
	const char *p = data;
	size_t off = 0;
	while (off < n) {
		ssize_t got = read(fd, tmp, sizeof(tmp));
		if (got <= 0 || (size_t)got > n - off || memcmp(tmp, p + off, (size_t)got) != 0)
			return false;
		off += (size_t)got;
	}
	return true;
}

int fs_replace(const char *path, const void *data, size_t n, mode_t mode, char **ret_old)
{
	*ret_old = NULL;
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	if (same_content(path, data, n))
		return utimensat(AT_FDCWD, path, NULL, 0) < 0 ? negative_errno() : 0;
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = fs_mkstemp(path, mode, &tmp);
	if (fd < 0)
		return fd;
	int r = fs_write_all(fd, data, n);
	if (r >= 0 && close(TAKE_FD(fd)) < 0)
		r = negative_errno();
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	char *old = NULL;
	if (asprintf(&old, "%s.old", tmp) < 0) {
		unlink(tmp);
		return -ENOMEM;
	}
	bool moved = rename(path, old) == 0;
	if (rename(tmp, path) < 0) {
		r = negative_errno();
		if (moved)
			(void)rename(old, path);
		unlink(tmp);
		free(old);
		return r;
	}
	if (moved)
		*ret_old = old;
	else
		free(old);
	return 0;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0)
		return 0;
	if (errno == EEXIST)
		return fs_is_dir(path);
	if (errno != ENOENT)
		return negative_errno();
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *slash = strrchr(copy, '/');
	if (!slash || slash == copy)
		return -ENOENT;
	*slash = '\0';
	int r = fs_mkdir_p(copy, mode);
	if (r < 0)
		return r;
	if (mkdir(path, mode) < 0)
		return errno == EEXIST ? fs_is_dir(path) : negative_errno();
	return 0;
}

int fs_fsync_dir(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	return fsync(fd) < 0 ? negative_errno() : 0;
}

char *path_normalize(const char *path)
{
	size_t len = strlen(path);
	char *out = malloc(len + 2);
	if (!out)
		return NULL;
	bool absolute = path[0] == '/';
	size_t o = 0;
	if (absolute)
		out[o++] = '/';
	size_t base = o;  /* ".." never climbs above this point */
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 1 && p[0] == '.') {
			/* skip */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			/* Climb unless the previous part is itself "..". */
			size_t last = o;
			while (last > base && out[last - 1] != '/')
				last--;
			bool prev_dotdot = o - last == 2 && out[last] == '.' && out[last + 1] == '.';
			if (o > base && !prev_dotdot) {
				o = last > base ? last - 1 : base;
			} else if (!absolute) {
				if (o > base)
					out[o++] = '/';
				out[o++] = '.';
				out[o++] = '.';
			}
		} else {
			if (o > base)
				out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return out;
}

char *path_join(const char *dir, const char *name)
{
	if (name[0] == '/' || dir[0] == '\0')
		return path_normalize(name);
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "%s/%s", dir, name) < 0)
		return NULL;
	return path_normalize(joined);
}

const char *path_under(const char *path, const char *root)
{
	size_t n = strlen(root);
	if (n == 1 && root[0] == '/')
		return path[0] == '/' ? (path[1] ? path + 1 : ".") : NULL;
	if (strncmp(path, root, n) != 0)
		return NULL;
	if (path[n] == '\0')
		return ".";
	if (path[n] != '/')
		return NULL;
	return path + n + 1;
}

bool path_is_safe_relative(const char *path, size_t len)
{
	if (len == 0 || path[0] == '/' || memchr(path, '\0', len))
		return false;
	const char *p = path, *end = path + len;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		if (!e)
			e = end;
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p = e + 1;
	}
	return path[len - 1] != '/';
}

char *path_find_upwards(const char *dir, const char *name)
{
	_cleanup_free_ char *cur = path_normalize(dir);
	if (!cur || cur[0] != '/')
		return NULL;
	for (;;) {
		_cleanup_free_ char *candidate = path_join(cur, name);
		if (!candidate)
			return NULL;
		struct stat st;
		if (lstat(candidate, &st) == 0)
			return TAKE_PTR(cur);
		char *slash = strrchr(cur, '/');
		if (!slash)
			return NULL;
		if (slash == cur) {
			if (cur[1] == '\0')
				return NULL;
			cur[1] = '\0';
		} else
			*slash = '\0';
	}
}

/* Replaces the suffix of a file name (after its last '.', if the '.' is in
 * the last path component) with ext, as GCC names auxiliary outputs. */
char *path_replace_suffix(const char *path, const char *ext)
{
	const char *base = path_basename(path);
	const char *dot = strrchr(base, '.');
	size_t n = dot ? (size_t)(dot - path) : strlen(path);
	char *out = NULL;
	if (asprintf(&out, "%.*s%s", (int)n, path, ext) < 0)
		return NULL;
	return out;
}

const char *path_basename(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

int fd_above_stdio(int fd)
{
	if (fd < 0 || fd > 2)
		return fd;
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int saved = errno;
	close(fd);
	errno = saved;
	return moved;
}

char *fs_read_text(const char *path, size_t max, struct error *err)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, max);
	int r = fs_read_file(path, max, &b);
	if (r < 0) {
		error_set(err, r, "%s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
		return NULL;
	}
	return buf_steal(&b);
}
