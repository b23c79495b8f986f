/*
 * One run, from a free vCPU to the last output file: starts queued execs
 * in arrival order (spawn.c forks the child), forwards stdout/stderr within
 * the output budget, enforces the timeout, and once the child is reaped
 * and every other process of the exec's uid is gone, sends one ExecResult
 * and then the requested outputs that are regular files, one chunk at a
 * time as the send queue drains, exactly as many bytes as announced.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads of a pipe once every process of the run is gone: enough for a
 * full pipe buffer (1 MiB at most for an unprivileged writer); the bound
 * is only a safety net, as no writer is left. */
#define DRAIN_READS 17

void exec_start_queued(struct agent *a)
{
	char why[AGENT_ERROR_MAX];
	struct exec *e, *next;

	for (e = a->execs; e && a->n_running < a->vcpus; e = next) {
		next = e->next;
		if (e->state == EXEC_QUEUED && exec_spawn(a, e, why, sizeof(why)) < 0)
			exec_fail(a, e, "%s", why);
	}
}

static void stdio_forward(struct agent *a, struct exec *e, int fd, const uint8_t *p, size_t n)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__StdioChunk s = HPCC__V1__STDIO_CHUNK__INIT;
	uint64_t room = e->max_output - e->stdio_sent;

	if (n > room) {
		e->truncated = true;
		n = (size_t)room;
	}
	if (n == 0)
		return;
	s.fd = (uint32_t)fd;
	s.data.data = (uint8_t *)p;
	s.data.len = n;
	f.exec_id = e->id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_STDIO;
	f.stdio = &s;
	if (agent_send(a, &f) == 0)
		e->stdio_sent += n;
}

/* One read of a child's pipe; false when nothing more is there now. */
static bool stdio_read_once(struct agent *a, struct exec *e, int which)
{
	int *fdp = which == 1 ? &e->out_fd : &e->err_fd;
	uint8_t buf[AGENT_STDIO_READ];
	ssize_t n;

	if (*fdp < 0)
		return false;
	n = read(*fdp, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		close_fdp(fdp);
		return false;
	}
	stdio_forward(a, e, which, buf, (size_t)n);
	return true;
}

void exec_read_stdio(struct agent *a, struct exec *e, int which)
{
	stdio_read_once(a, e, which);
}

/* Measures the requested outputs that are regular files, within what is
 * left of the output budget (all or none). Each is closed again and
 * opened only when its turn to be sent comes. 0, or a negative errno
 * with why set when an output cannot be looked at (not when it is
 * missing): the exec then fails rather than pretend it made nothing. */
static int outputs_collect(struct exec *e, char *why, size_t why_len)
{
	uint64_t budget = e->max_output - e->stdio_sent, total = 0;

	e->outs = calloc(e->h->n_outputs ? e->h->n_outputs : 1, sizeof(*e->outs));
	if (!e->outs) {
		snprintf(why, why_len, "out of memory for the outputs");
		return -ENOMEM;
	}
	for (size_t i = 0; i < e->h->n_outputs; i++) {
		struct exec_output *o = &e->outs[e->n_outs];
		struct stat st;
		int fd = -1, r;

		r = output_open(e->staging_fd, e->h->outputs[i], &fd, &st);
		if (r == 1)
			continue; /* missing, or not a regular file: does not exist */
		if (r < 0) {
			snprintf(why, why_len, "cannot open output %.200s: %s", e->h->outputs[i], strerror(-r));
			return r;
		}
		close(fd);
		*o = (struct exec_output){ .path = e->h->outputs[i], .fd = -1, .size = (uint64_t)st.st_size,
					   .dev = st.st_dev, .ino = st.st_ino,
					   .executable = (st.st_mode & 0111) != 0 };
		e->n_outs++;
		/* Sparse files may claim up to 2^63 - 1 bytes each: compare
		 * before adding, or the sum wraps. */
		if (o->size > budget - total) {
			e->n_outs = 0;
			e->truncated = true;
			return 0;
		}
		total += o->size;
	}
	return 0;
}

static void exec_finish(struct agent *a, struct exec *e, int status)
{
	Hpcc__V1__ExecResult res = HPCC__V1__EXEC_RESULT__INIT;
	int64_t duration = agent_now_us() - e->start_us;
	char why[AGENT_ERROR_MAX];

	e->pid = 0;
	a->n_running--;
	/* Whatever the command left running goes now, in any session or
	 * process group: nothing may write into the staging directory while
	 * it is read, nor touch another exec's files later. */
	if (exec_stop_processes(e) < 0) {
		exec_fail(a, e, "cannot stop the processes the command left: they survive SIGKILL");
		return;
	}
	for (int i = 0; i < DRAIN_READS && stdio_read_once(a, e, 1); i++)
		;
	for (int i = 0; i < DRAIN_READS && stdio_read_once(a, e, 2); i++)
		;
	close_fdp(&e->out_fd);
	close_fdp(&e->err_fd);
	if (exec_spawn_failure(e->status_fd, why, sizeof(why)) == 1) {
		exec_fail(a, e, "%s", why);
		return;
	}
	close_fdp(&e->status_fd);
	if (WIFEXITED(status))
		res.exit_code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		res.exit_code = 128 + WTERMSIG(status);
	else
		res.exit_code = 127;
	if (outputs_collect(e, why, sizeof(why)) < 0) {
		exec_fail(a, e, "%s", why);
		return;
	}
	res.timed_out = e->timed_out;
	res.output_truncated = e->truncated;
	res.duration_us = duration;
	res.n_outputs = (uint32_t)e->n_outs;
	exec_send_result(a, e->id, &res);
	e->state = EXEC_SENDING;
	if (e->n_outs == 0)
		exec_destroy(a, e);
}

void exec_reap(struct agent *a)
{
	for (;;) {
		int status = 0;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			return;
		/* As PID 1 this also collects orphans; they match no exec. */
		for (struct exec *e = a->execs; e; e = e->next)
			if (e->state == EXEC_RUNNING && e->pid == pid) {
				exec_finish(a, e, status);
				break;
			}
	}
}

void exec_check_deadlines(struct agent *a, int64_t now_us)
{
	struct exec *e, *next;

	for (e = a->execs; e; e = next) {
		next = e->next;
		if (e->state == EXEC_STAGING && now_us >= e->deadline_us)
			exec_fail(a, e, "only %u of %u inputs arrived within the timeout of %llu ms", e->inputs_done,
				  e->h->n_inputs, (unsigned long long)e->timeout_ms);
		else if (e->state == EXEC_RUNNING && !e->timed_out && now_us >= e->deadline_us) {
			agent_log("exec %llu: timed out after %llu ms, killing it", (unsigned long long)e->id,
				  (unsigned long long)e->timeout_ms);
			/* The child by pid (it may not run as the exec's uid
			 * yet), then everything of the uid; the reap finishes. */
			exec_kill_run(e->pid);
			exec_stop_processes(e);
			e->timed_out = true;
		}
	}
}

int64_t exec_next_deadline(const struct agent *a)
{
	int64_t next = -1;

	for (const struct exec *e = a->execs; e; e = e->next) {
		bool waits = e->state == EXEC_STAGING || (e->state == EXEC_RUNNING && !e->timed_out);
		if (waits && (next < 0 || e->deadline_us < next))
			next = e->deadline_us;
	}
	return next;
}

/* Reads up to n bytes at off; fewer only at EOF or on an error. */
static size_t pread_full(int fd, uint8_t *p, size_t n, uint64_t off)
{
	size_t have = 0;

	while (have < n) {
		ssize_t r = pread(fd, p + have, n - have, (off_t)(off + have));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	return have;
}

/* Opens the output whose turn it is: the file measured before the
 * result, unchanged (no process of the exec is left to change it). */
static int output_reopen(struct exec *e, struct exec_output *o)
{
	struct stat st;
	int r = output_open(e->staging_fd, o->path, &o->fd, &st);

	if (r != 0)
		return r < 0 ? r : -ENOENT;
	if (st.st_dev != o->dev || st.st_ino != o->ino || (uint64_t)st.st_size != o->size) {
		close_fdp(&o->fd);
		return -ESTALE;
	}
	return 0;
}

static void output_chunk(struct agent *a, struct exec *e)
{
	struct exec_output *o = &e->outs[e->cur_out];
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__FileChunk c = HPCC__V1__FILE_CHUNK__INIT;
	uint64_t left = o->size - o->sent;
	size_t want = left < AGENT_CHUNK_MAX ? (size_t)left : AGENT_CHUNK_MAX;
	size_t got;
	int r;

	if (o->fd < 0 && (r = output_reopen(e, o)) < 0) {
		got = 0;
		goto changed;
	}
	/* Never more than announced (a file that grew is cut at its size),
	 * never fewer: a file that shrank stops the stream below. */
	got = pread_full(o->fd, a->chunk_buf, want, o->sent);
	if (got < want) {
		r = -ENODATA;
		goto changed;
	}
	if (!o->started) {
		c.path = (char *)o->path;
		c.size = o->size;
		c.executable = o->executable;
	}
	c.data.data = a->chunk_buf;
	c.data.len = got;
	c.last = o->sent + got == o->size;
	f.exec_id = e->id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_OUTPUT;
	f.output = &c;
	agent_send(a, &f);
	o->started = true;
	o->sent += got;
	if (c.last) {
		close_fdp(&o->fd);
		e->cur_out++;
	}
	if (e->cur_out == e->n_outs)
		exec_destroy(a, e);
	return;

changed:
	/* The result promised this file at this size and cannot be taken
	 * back: a short file would be a lie the host refuses, padding a
	 * lie it might cache. The stream has to end. */
	snprintf(a->fatal, sizeof(a->fatal), "exec %llu: output %.200s changed while being sent (%s at byte %llu)",
		 (unsigned long long)e->id, o->path, strerror(-r), (unsigned long long)(o->sent + got));
}

bool exec_produce(struct agent *a)
{
	if (a->fatal[0])
		return false;
	for (struct exec *e = a->execs; e; e = e->next)
		if (e->state == EXEC_SENDING) {
			output_chunk(a, e);
			return true;
		}
	return false;
}
