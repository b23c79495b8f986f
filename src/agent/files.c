/*
 * Files of one exec: its staging directory (created under the compilers'
 * root by a walk that never follows a symlink and accepts only parents
 * that root alone can change; a fresh tmpfs in the guest, a plain
 * directory in test mode), the inputs written into it, the outputs read
 * back from it (regular files only: a compiler may have replaced an output
 * with a symlink or a FIFO), and its removal afterwards. The staging
 * directory itself is root's (0711); root/ and tmp/ in it belong to the
 * exec's own uid, mode 0700, so no other exec's uid can read or change
 * anything in them.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper trees are left behind (and logged): each level holds one fd. */
#define TREE_REMOVE_MAX_DEPTH 200

int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int make_owned_dir(int dirfd, const char *name, uid_t uid)
{
	if (mkdirat(dirfd, name, 0700) < 0)
		return -errno;
	if (fchownat(dirfd, name, uid, (gid_t)uid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

int staging_create(struct agent *a, struct exec *e, char *why, size_t why_len)
{
	const char *path = e->h->staging + 1; /* checked: absolute, normalised */
	const char *slash = strrchr(path, '/');
	const char *leaf = slash ? slash + 1 : path;
	const struct mkdir_opts parents = { .mode = 0755, .root_only = true };
	int pfd = -1, dfd = -1, r;

	r = path_open_dir(a->root_fd, path, slash ? (size_t)(slash - path) : 0, &parents, &pfd);
	if (r == -EPERM) {
		snprintf(why, why_len,
			 "cannot create the parents of staging directory %s: one is not root's alone (another owner, "
			 "or writable by others)",
			 e->h->staging);
		return r;
	}
	if (r < 0) {
		snprintf(why, why_len, "cannot create the parents of staging directory %s: %s", e->h->staging,
			 strerror(-r));
		return r;
	}
	e->parent_fd = pfd;
	if (mkdirat(pfd, leaf, 0711) < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot create staging directory %s: %s", e->h->staging, strerror(-r));
		return r;
	}
	/* From here on, staging_destroy() removes the directory. */
	e->leaf = strdup(leaf);
	if (!e->leaf) {
		unlinkat(pfd, leaf, AT_REMOVEDIR);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	dfd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0 && a->boot) {
		/* A fresh tmpfs per exec: its size bounds what one exec can
		 * write, and a lazy unmount removes everything at once. */
		char target[64], opts[64];

		snprintf(target, sizeof(target), "/proc/self/fd/%d", dfd);
		snprintf(opts, sizeof(opts), "size=%llu,mode=0711", (unsigned long long)a->staging_size);
		if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
			r = -errno;
			close(dfd);
			snprintf(why, why_len, "cannot mount a tmpfs on %s: %s", e->h->staging, strerror(-r));
			return r;
		}
		/* If the reopen below fails, staging_destroy() still finds
		 * the mount through the parent. */
		e->mounted = true;
		close(dfd);
		dfd = openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (dfd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot open staging directory %s: %s", e->h->staging, strerror(-r));
		return r;
	}
	e->staging_fd = dfd;
	r = make_owned_dir(dfd, "root", e->uid);
	if (r == 0)
		r = make_owned_dir(dfd, "tmp", e->uid);
	if (r < 0) {
		snprintf(why, why_len, "cannot create root/ and tmp/ in %s: %s", e->h->staging, strerror(-r));
		return r;
	}
	return 0;
}

void staging_destroy(struct agent *a, struct exec *e)
{
	int r = 0;

	if (e->parent_fd < 0)
		return;
	if (e->mounted) {
		char target[64 + AGENT_NAME_MAX];
		int flags = MNT_DETACH;

		/* Without the directory's fd, the mount is reached by name in
		 * its parent, which is root's and writable by no one else
		 * (checked when it was made): the name cannot have been
		 * swapped. The fd's own magic link must be followed. */
		if (e->staging_fd >= 0)
			snprintf(target, sizeof(target), "/proc/self/fd/%d", e->staging_fd);
		else if (e->leaf) {
			snprintf(target, sizeof(target), "/proc/self/fd/%d/%s", e->parent_fd, e->leaf);
			flags |= UMOUNT_NOFOLLOW;
		} else
			target[0] = '\0';
		if (target[0] && umount2(target, flags) < 0)
			agent_log("cannot unmount staging directory %s: %s", e->h->staging, strerror(errno));
	}
	if (e->staging_fd >= 0)
		close(e->staging_fd);
	e->staging_fd = -1;
	if (e->leaf) {
		if (e->mounted)
			r = unlinkat(e->parent_fd, e->leaf, AT_REMOVEDIR) < 0 ? -errno : 0;
		else
			r = tree_remove_at(e->parent_fd, e->leaf, 0);
		if (r < 0)
			agent_log("cannot remove staging directory %s: %s", e->h->staging, strerror(-r));
	}
	close(e->parent_fd);
	e->parent_fd = -1;
	(void)a;
}

/* Removes the entries of an open directory (closes it). */
static int tree_empty_dir(int fd, unsigned depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int r = 0;

	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while ((de = readdir(d)) != NULL) {
		int q;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		q = tree_remove_at(dirfd(d), de->d_name, depth + 1);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(d);
	return r;
}

int tree_remove_at(int dirfd, const char *name, unsigned depth)
{
	struct stat st;
	int fd, r;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth >= TREE_REMOVE_MAX_DEPTH)
		return -ELOOP;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = tree_empty_dir(fd, depth);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && r == 0)
		r = -errno;
	return r;
}

int output_open(int staging_fd, const char *path, int *ret_fd, struct stat *ret_st)
{
	struct stat st;
	int fd = -1, r;

	/* O_NONBLOCK: opening a FIFO planted by the compiler must not wait
	 * for a writer; it is refused below like any other non-file. */
	r = path_open_file(staging_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, NULL, &fd);
	/* Only these mean "there is no such regular file": a missing name,
	 * a file or symlink where a directory should be, a symlink at the
	 * end (O_NOFOLLOW), a socket or a device with nothing behind it.
	 * Anything else (EMFILE, ENOMEM, EACCES, EIO...) is the agent's
	 * failure and must not pass for a missing output. */
	if (r == -ENOENT || r == -ENOTDIR || r == -ELOOP || r == -ENXIO || r == -ENODEV)
		return 1;
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return 1;
	}
	*ret_fd = fd;
	*ret_st = st;
	return 0;
}
