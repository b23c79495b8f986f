/*
 * Child processes (see proc.h). Uses posix_spawn so that a large parent (the
 * daemon) does not pay for a fork, and poll to drain both pipes without
 * deadlocking on a child that fills one while we wait on the other.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "fs.h"

extern char **environ;

void proc_result_free(struct proc_result *r)
{
	buf_free(&r->out);
	buf_free(&r->err);
}

int proc_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Reads what is ready on fd into b; past cap, flushes b to out_fd and passes
 * the rest through. Returns false at end of stream. */
static bool drain(int fd, struct buf *b, size_t cap, bool *passed, int out_fd)
{
	char tmp[65536];
	ssize_t n = read(fd, tmp, sizeof(tmp));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	if (!*passed && b->len + (size_t)n <= cap && buf_append(b, tmp, (size_t)n) == 0)
		return true;
	if (!*passed) {
		*passed = true;
		if (out_fd >= 0)
			(void)fs_write_all(out_fd, b->data, b->len);
		buf_reset(b);
	}
	if (out_fd >= 0)
		(void)fs_write_all(out_fd, tmp, (size_t)n);
	return true;
}

static int run_capture(char *const *argv, char *const *envp, const char *cwd, size_t cap, bool passthrough,
		       struct proc_result *ret);

int proc_run_capture(char *const *argv, char *const *envp, size_t cap, bool passthrough, struct proc_result *ret)
{
	return run_capture(argv, envp, NULL, cap, passthrough, ret);
}

int proc_run_capture_in(char *const *argv, const char *cwd, size_t cap, struct proc_result *ret)
{
	return run_capture(argv, NULL, cwd, cap, false, ret);
}

static int run_capture(char *const *argv, char *const *envp, const char *cwd, size_t cap, bool passthrough,
		       struct proc_result *ret)
{
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	if (pipe2(out_pipe, O_CLOEXEC) < 0)
		return negative_errno();
	if (pipe2(err_pipe, O_CLOEXEC) < 0) {
		int r = negative_errno();
		close(out_pipe[0]);
		close(out_pipe[1]);
		return r;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	pid_t pid;
	int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp ? envp : environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out_pipe[1]);
	close(err_pipe[1]);
	if (e != 0) {
		close(out_pipe[0]);
		close(err_pipe[0]);
		return -e;
	}
	struct proc_result res = { 0 };
	buf_init(&res.out, cap + 1);
	buf_init(&res.err, cap + 1);
	struct pollfd pfd[2] = { { out_pipe[0], POLLIN, 0 }, { err_pipe[0], POLLIN, 0 } };
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].fd >= 0 && pfd[0].revents &&
		    !drain(pfd[0].fd, &res.out, cap, &res.out_passed, passthrough ? 1 : -1)) {
			close(pfd[0].fd);
			pfd[0].fd = -1;
		}
		if (pfd[1].fd >= 0 && pfd[1].revents &&
		    !drain(pfd[1].fd, &res.err, cap, &res.err_passed, passthrough ? 2 : -1)) {
			close(pfd[1].fd);
			pfd[1].fd = -1;
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			proc_result_free(&res);
			return negative_errno();
		}
	}
	res.status = status;
	*ret = res;
	return 0;
}

int proc_exec(char *const *argv)
{
	execv(argv[0], argv);
	return negative_errno();
}
