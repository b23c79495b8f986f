/*
 * Pass 2 (see squashfs.h). Directories and symlinks come first, parents
 * before children, from the tree alone; then each layer is read once more
 * and the data of every surviving file is copied as its entry comes by,
 * under the file's final name, with further names of the same data written
 * as hardlinks to it. tar2sqfs runs as a child without a shell, reading the
 * stream from a socket (send with MSG_NOSIGNAL, so a dead child is an
 * error, not a SIGPIPE) and writing its messages to a memfd.
 */
#include "squashfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* How long tar2sqfs may take to read a block, and to finish after the end
 * of the stream, before it counts as hung. */
#define SEND_TIMEOUT_SECONDS 300
#define FINISH_TIMEOUT_SECONDS 600
#define COPY_BLOCK (1 << 16)

struct writer {
	struct archive *out;
	int sock;
	const struct image_limits *lim;
	struct error *err;
	int send_errno;  /* EPIPE or ECONNRESET: tar2sqfs went away */
};

static la_ssize_t sock_write(struct archive *a, void *userdata, const void *data, size_t n)
{
	struct writer *w = userdata;
	size_t done = 0;
	while (done < n) {
		if (image_cancelled(w->lim)) {
			archive_set_error(a, EINTR, "interrupted");
			return -1;
		}
		ssize_t s = send(w->sock, (const char *)data + done, n - done, MSG_NOSIGNAL);
		if (s < 0 && errno == EINTR)
			continue;
		if (s < 0) {
			w->send_errno = errno;
			archive_set_error(a, errno, "tar2sqfs stopped reading (%s)",
					  errno == EAGAIN ? "timed out" : strerror(errno));
			return -1;
		}
		done += (size_t)s;
	}
	return (la_ssize_t)n;
}

static int write_header(struct writer *w, const struct image_entry *e, const char *path, const char *hardlink_to)
{
	struct archive_entry *ae = archive_entry_new();
	if (!ae)
		return error_set(w->err, -ENOMEM, "out of memory");
	archive_entry_set_pathname(ae, path);
	archive_entry_set_mode(ae, e->mode);
	archive_entry_set_uid(ae, e->uid);
	archive_entry_set_gid(ae, e->gid);
	archive_entry_set_mtime(ae, e->mtime, 0);
	if (S_ISLNK(e->mode))
		archive_entry_set_symlink(ae, e->link);
	if (S_ISREG(e->mode)) {
		if (hardlink_to)
			archive_entry_set_hardlink(ae, hardlink_to);
		archive_entry_set_size(ae, hardlink_to ? 0 : (la_int64_t)e->size);
	}
	int s = archive_write_header(w->out, ae);
	archive_entry_free(ae);
	if (s != ARCHIVE_OK && s != ARCHIVE_WARN)
		return error_set(w->err, archive_errno(w->out) == EINTR ? -EINTR : -EIO, "writing '%.300s': %s", path,
				 archive_error_string(w->out));
	return 0;
}

static int plan_entry(const struct image_entry *e, const char *path, void *userdata)
{
	return write_header(userdata, e, path, NULL);
}

static int copy_data(struct writer *w, struct layer_reader *r, const struct image_entry *e, const char *path)
{
	_cleanup_free_ char *block = malloc(COPY_BLOCK);
	if (!block)
		return error_set(w->err, -ENOMEM, "out of memory");
	uint64_t total = 0;
	for (;;) {
		la_ssize_t n = archive_read_data(r->archive, block, COPY_BLOCK);
		if (n == 0)
			break;
		if (n < 0)
			return error_set(w->err, archive_errno(r->archive) == EINTR ? -EINTR : -EBADMSG,
					 "%.19s: reading '%.300s': %s", r->layer->digest, path,
					 archive_error_string(r->archive));
		if ((uint64_t)n > e->size - total)
			return error_set(w->err, -EBADMSG, "%.19s: '%.300s' is longer than its header says",
					 r->layer->digest, path);
		if (archive_write_data(w->out, block, (size_t)n) != n)
			return error_set(w->err, archive_errno(w->out) == EINTR ? -EINTR : -EIO, "writing '%.300s': %s",
					 path, archive_error_string(w->out));
		total += (uint64_t)n;
	}
	if (total != e->size)
		return error_set(w->err, -EBADMSG, "%.19s: '%.300s' is shorter than its header says", r->layer->digest,
				 path);
	return 0;
}

/* The entry pass 1 took e's data from must be the one read now: the same
 * path, a regular file of the same size. The digest check at the layer's end
 * catches any change as well, but only after the data went to tar2sqfs. */
static int check_source(struct writer *w, struct layer_reader *r, struct archive_entry *ae, const struct image_entry *e,
			const char *path)
{
	const char *want = e->source_path ? e->source_path : path;
	const char *raw = archive_entry_pathname(ae);
	_cleanup_free_ char *got = NULL;
	const char *reason = NULL;
	if (!raw || layer_path_check(raw, &got, &reason) < 0 || strcmp(got, want) != 0)
		return error_set(w->err, -EBADMSG, "%.19s: layer changed while it was imported (entry %llu is not '%.300s')",
				 r->layer->digest, (unsigned long long)(r->index + 1), want);
	if (archive_entry_hardlink(ae) || archive_entry_filetype(ae) != AE_IFREG || archive_entry_size(ae) < 0 ||
	    (uint64_t)archive_entry_size(ae) != e->size)
		return error_set(w->err, -EBADMSG,
				 "%.19s: layer changed while it was imported ('%.300s' is no longer a file of %llu bytes)",
				 r->layer->digest, want, (unsigned long long)e->size);
	return 0;
}

/* Copies the data that the files in files[*cur...] take from layer index. */
static int stream_layer(struct writer *w, const struct image_layer *layer, uint32_t index, struct image_entry **files,
			size_t n_files, size_t *cur)
{
	struct layer_reader r;
	int s = layer_reader_open(&r, layer, w->lim, true, w->err);
	if (s < 0)
		return s;
	_cleanup_free_ char *first = malloc(2 * IMAGE_MAX_PATH + 2);
	_cleanup_free_ char *path = malloc(2 * IMAGE_MAX_PATH + 2);
	if (!first || !path) {
		layer_reader_close(&r);
		return error_set(w->err, -ENOMEM, "out of memory");
	}
	while (*cur < n_files && files[*cur]->source_layer == index) {
		struct archive_entry *ae;
		s = layer_reader_next(&r, &ae, w->err);
		if (s == 1)
			s = error_set(w->err, -EBADMSG, "%.19s: layer changed while it was imported", layer->digest);
		if (s < 0)
			break;
		struct image_entry *e = files[*cur];
		if (e->source_index != r.index)
			continue;
		if ((s = image_entry_path(e, first, 2 * IMAGE_MAX_PATH + 2)) < 0 ||
		    (s = check_source(w, &r, ae, e, first)) < 0 || (s = write_header(w, e, first, NULL)) < 0 ||
		    (s = copy_data(w, &r, e, first)) < 0)
			break;
		/* Further names of the same data: hardlinks to the first. */
		for ((*cur)++; *cur < n_files && files[*cur]->source_layer == index && files[*cur]->source_index == r.index;
		     (*cur)++) {
			if ((s = image_entry_path(files[*cur], path, 2 * IMAGE_MAX_PATH + 2)) < 0 ||
			    (s = write_header(w, files[*cur], path, first)) < 0)
				break;
		}
		if (s < 0)
			break;
	}
	if (s >= 0)
		s = layer_reader_finish(&r, w->err);
	layer_reader_close(&r);
	if (s == -ENAMETOOLONG)
		return error_set(w->err, s, "a path is longer than %d bytes", 2 * IMAGE_MAX_PATH);
	return s < 0 ? s : 0;
}

static const char *find_tar2sqfs(const struct squashfs_options *o, char *buf, size_t size)
{
	if (o->tar2sqfs)
		return o->tar2sqfs;
	const char *path = getenv("PATH");
	for (const char *p = path ? path : ""; *p;) {
		size_t n = strcspn(p, ":");
		if (n > 0 && p[0] == '/') {
			snprintf(buf, size, "%.*s/tar2sqfs", (int)n, p);
			if (access(buf, X_OK) == 0)
				return buf;
		}
		p += n;
		if (*p == ':')
			p++;
	}
	return "/usr/bin/tar2sqfs";
}

struct child {
	pid_t pid;
	int sock;     /* our end: the tar stream */
	int errfd;    /* the child's stderr (a memfd) */
};

static int spawn(const struct squashfs_options *o, const char *out_path, struct child *c, struct error *err)
{
	char found[4096];
	const char *bin = find_tar2sqfs(o, found, sizeof(found));
	if (access(bin, X_OK) < 0)
		return error_set(err, -ENOENT, "%s not found (install squashfs-tools-ng)", bin);
	const char *comp = o->compressor ? o->compressor : "zstd";
	/* Levels for import time: on the test toolchain (220 MiB of files)
	 * zstd 3 takes 1 s for 87 MB where tar2sqfs's default 15 takes 20 s for
	 * 76 MB; gzip 6 takes 7 s, its default 9 three times that for 0.5%
	 * less. Decompression speed in the guest hardly depends on the level. */
	const char *level = strcmp(comp, "zstd") == 0 ? "level=3" : strcmp(comp, "gzip") == 0 ? "level=6" : NULL;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned jobs = o->jobs ? o->jobs : cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
	char jobs_text[16];
	snprintf(jobs_text, sizeof(jobs_text), "%u", jobs);
	/* -x: no xattrs; -s: a bad record fails instead of being skipped; the
	 * root directory is 0755 0:0 with mtime 0; time stamps are kept. */
	char *argv[16];
	size_t n = 0;
	argv[n++] = (char *)bin;
	argv[n++] = (char *)"-q";
	argv[n++] = (char *)"-f";
	argv[n++] = (char *)"-x";
	argv[n++] = (char *)"-s";
	argv[n++] = (char *)"-c";
	argv[n++] = (char *)comp;
	if (level) {
		argv[n++] = (char *)"-X";
		argv[n++] = (char *)level;
	}
	argv[n++] = (char *)"-j";
	argv[n++] = jobs_text;
	argv[n++] = (char *)"-d";
	argv[n++] = (char *)"uid=0,gid=0,mode=0755,mtime=0";
	argv[n++] = (char *)out_path;
	argv[n] = NULL;
	char *envp[] = { (char *)"LC_ALL=C", (char *)"PATH=/usr/bin:/bin", NULL };
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return error_set(err, negative_errno(), "socketpair: %m");
	int errfd = memfd_create("tar2sqfs-stderr", MFD_CLOEXEC);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (errfd < 0 || devnull < 0) {
		int e = negative_errno();
		close(sv[0]);
		close(sv[1]);
		if (errfd >= 0)
			close(errfd);
		if (devnull >= 0)
			close(devnull);
		return error_set(err, e, "cannot set up tar2sqfs: %s", strerror(-e));
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (dup2(sv[1], 0) < 0 || dup2(devnull, 1) < 0 || dup2(errfd, 2) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execve(bin, argv, envp);
		_exit(127);
	}
	int e = pid < 0 ? negative_errno() : 0;
	close(sv[1]);
	close(devnull);
	if (pid < 0) {
		close(sv[0]);
		close(errfd);
		return error_set(err, e, "fork: %s", strerror(-e));
	}
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_SECONDS };
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*c = (struct child){ .pid = pid, .sock = sv[0], .errfd = errfd };
	return 0;
}

/* Waits for the child (killing it after timeout seconds); returns the wait
 * status, or -1 when it had to be killed. */
static int reap(pid_t pid, unsigned timeout)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= (time_t)timeout) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -1;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
}

/* The first line tar2sqfs wrote, for the error message. */
static void child_message(int errfd, char *buf, size_t size)
{
	ssize_t n = pread(errfd, buf, size - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

int squashfs_write(struct image_tree *tree, const struct image_layer *layers, size_t n_layers,
		   const struct image_limits *lim, const char *out_path, const struct squashfs_options *o,
		   struct error *err)
{
	struct child c = { .pid = -1, .sock = -1, .errfd = -1 };
	int r = spawn(o, out_path, &c, err);
	if (r < 0)
		return r;
	struct writer w = { .sock = c.sock, .lim = lim, .err = err };
	struct image_entry **files = NULL;
	size_t n_files = 0;
	w.out = archive_write_new();
	if (!w.out) {
		r = error_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (archive_write_set_format_pax_restricted(w.out) != ARCHIVE_OK ||
	    archive_write_open2(w.out, &w, NULL, sock_write, NULL, NULL) != ARCHIVE_OK) {
		r = error_set(err, -EIO, "tar writer: %s", archive_error_string(w.out));
		goto out;
	}
	r = image_tree_plan(tree, plan_entry, &w, &files, &n_files);
	if (r < 0) {
		if (err->code == 0)
			error_set(err, r, "planning the image: %s", strerror(-r));
		goto out;
	}
	size_t cur = 0;
	for (uint32_t i = 0; i < n_layers && r >= 0; i++)
		if (cur < n_files && files[cur]->source_layer == i)
			r = stream_layer(&w, &layers[i], i, files, n_files, &cur);
	if (r >= 0 && cur != n_files)
		r = error_set(err, -EIO, "internal error: %zu of %zu files written", cur, n_files);
	if (r >= 0 && archive_write_close(w.out) != ARCHIVE_OK)
		r = error_set(err, -EIO, "finishing the tar stream: %s", archive_error_string(w.out));
out:
	if (w.out)
		archive_write_free(w.out);
	free(files);
	/* The end of the stream: tar2sqfs finishes; after an error it is
	 * stopped, since a truncated stream may still make an image. */
	close(c.sock);
	/* When tar2sqfs went away by itself, its own message says why. */
	bool child_gone = w.send_errno == EPIPE || w.send_errno == ECONNRESET;
	if (r < 0 && !child_gone)
		kill(c.pid, SIGKILL);
	int status = reap(c.pid, r < 0 ? 10 : FINISH_TIMEOUT_SECONDS);
	if ((r >= 0 || child_gone) && (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		error_clear(err);
		char msg[512];
		child_message(c.errfd, msg, sizeof(msg));
		if (status < 0)
			r = error_set(err, -ETIMEDOUT, "tar2sqfs did not finish within %d s", FINISH_TIMEOUT_SECONDS);
		else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			r = error_set(err, -ENOEXEC, "tar2sqfs could not be started");
		else
			r = error_set(err, -EIO, "tar2sqfs failed (%s %d): %s", WIFEXITED(status) ? "exit" : "signal",
				      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), msg[0] ? msg : "no message");
	}
	close(c.errfd);
	return r;
}
