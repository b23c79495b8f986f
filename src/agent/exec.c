/*
 * One exec, from its header to its last output file: checks the header,
 * stages inputs in the order the protocol allows, queues the run until a
 * vCPU is free, forwards stdout/stderr within the output budget, enforces
 * the timeout, and after the child is reaped sends one ExecResult and the
 * requested outputs that are regular files. Anything the host does wrong
 * for one exec ends that exec alone, with an ExecResult whose error says
 * why; its id is then remembered for a while so that the rest of its
 * frames are dropped quietly instead of each earning another error.
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

#define ERROR_MAX 512 /* the host refuses error strings over 1 KiB */
/* Reads of a pipe after its child is gone: enough for a full pipe buffer
 * (1 MiB at most for an unprivileged writer), bounded against a writer
 * that escaped the process group and never stops. */
#define DRAIN_READS 17

static void tomb_add(struct agent *a, uint64_t id)
{
	a->tomb[a->tomb_next] = id;
	a->tomb_next = (a->tomb_next + 1) % AGENT_TOMBSTONES;
}

static bool tomb_has(const struct agent *a, uint64_t id)
{
	for (size_t i = 0; i < AGENT_TOMBSTONES; i++)
		if (a->tomb[i] == id)
			return id != 0;
	return false;
}

static void tomb_forget(struct agent *a, uint64_t id)
{
	for (size_t i = 0; i < AGENT_TOMBSTONES; i++)
		if (a->tomb[i] == id)
			a->tomb[i] = 0;
}

static struct exec *exec_find(struct agent *a, uint64_t id)
{
	for (struct exec *e = a->execs; e; e = e->next)
		if (e->id == id)
			return e;
	return NULL;
}

static void send_result(struct agent *a, uint64_t id, Hpcc__V1__ExecResult *res)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;

	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_RESULT;
	f.result = res;
	agent_send(a, &f);
}

/* An ExecResult for a command the agent did not run (or could not run to
 * the end): error set, exit code 127 like a shell's "cannot execute". */
static void send_error(struct agent *a, uint64_t id, const char *msg)
{
	Hpcc__V1__ExecResult res = HPCC__V1__EXEC_RESULT__INIT;
	char buf[ERROR_MAX];

	snprintf(buf, sizeof(buf), "%s", msg);
	res.exit_code = 127;
	res.error = buf;
	agent_log("exec %llu: %s", (unsigned long long)id, buf);
	send_result(a, id, &res);
}

/* In the guest, once no run is left, every process but the agent is a
 * straggler that left its process group (setsid, daemon()): it could
 * still write into later execs' files as the same compile user. */
static void sweep_stragglers(struct agent *a)
{
	if (a->boot && a->n_running == 0 && getpid() == 1)
		kill(-1, SIGKILL);
}

/* SIGKILLs a run: its process group, and the child itself in case it has
 * not reached setsid() yet (then it has no group, and no children). */
static void kill_run(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void exec_destroy(struct agent *a, struct exec *e)
{
	for (struct exec **pp = &a->execs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	if (e->pid > 0) {
		/* Wait for the killed child, so that it cannot write into the
		 * staging directory while it is removed. What else ran in its
		 * group got the same SIGKILL; the loop reaps those. */
		kill_run(e->pid);
		while (waitpid(e->pid, NULL, 0) < 0 && errno == EINTR)
			;
		a->n_running--;
		sweep_stragglers(a);
	}
	close_fd(&e->in_fd);
	close_fd(&e->out_fd);
	close_fd(&e->err_fd);
	close_fd(&e->status_fd);
	for (size_t i = 0; i < e->n_outs; i++)
		close_fd(&e->outs[i].fd);
	staging_destroy(a, e);
	tomb_add(a, e->id);
	a->n_live--;
	hpcc__v1__exec_header__free_unpacked(e->h, NULL);
	free(e->in_path);
	free(e->leaf);
	free(e->outs);
	free(e);
}

/* Ends an exec because of the host, the agent or the command's set-up:
 * one error result (unless the result went out already), then cleanup. */
static void exec_fail(struct agent *a, struct exec *e, const char *fmt, ...) _printf_(3, 4);
static void exec_fail(struct agent *a, struct exec *e, const char *fmt, ...)
{
	char msg[ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->state != EXEC_SENDING)
		send_error(a, e->id, msg);
	else
		agent_log("exec %llu: %s", (unsigned long long)e->id, msg);
	exec_destroy(a, e);
}

/* Refuses a frame for an exec that is not live: dropped if the id ended
 * recently, else answered with an error result. */
static void refuse_id(struct agent *a, uint64_t id, const char *msg)
{
	if (tomb_has(a, id))
		return;
	send_error(a, id, msg);
	tomb_add(a, id);
}

static bool env_entry_ok(const char *s)
{
	static const char key[] = "SOURCE_DATE_EPOCH=";
	size_t n;

	if (strncmp(s, key, sizeof(key) - 1) != 0)
		return false;
	s += sizeof(key) - 1;
	n = strlen(s);
	if (n == 0 || n > 19)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* True if one staging directory is the other or lies inside it: two
 * live execs must never see (or remove) each other's files. */
static bool staging_overlaps(const char *x, const char *y)
{
	size_t nx = strlen(x), ny = strlen(y), n = nx < ny ? nx : ny;

	if (strncmp(x, y, n) != 0)
		return false;
	return nx == ny || (nx < ny ? y[n] : x[n]) == '/';
}

static int header_check(const Hpcc__V1__ExecHeader *h, char *why, size_t why_len)
{
	size_t total = 0;

	if (h->n_argv == 0 || h->n_argv > AGENT_ARGV_MAX_COUNT) {
		snprintf(why, why_len, "argv has %zu entries (1..%d allowed)", h->n_argv, AGENT_ARGV_MAX_COUNT);
		return -EINVAL;
	}
	for (size_t i = 0; i < h->n_argv; i++) {
		size_t n = strlen(h->argv[i]);
		if (n > AGENT_ARG_MAX_BYTES) {
			snprintf(why, why_len, "argument %zu has %zu bytes (limit %u)", i, n, AGENT_ARG_MAX_BYTES);
			return -EINVAL;
		}
		total += n + 1;
	}
	if (total > AGENT_ARGV_MAX_BYTES) {
		snprintf(why, why_len, "argv has %zu bytes (limit %u)", total, AGENT_ARGV_MAX_BYTES);
		return -EINVAL;
	}
	if (h->argv[0][0] == '\0' || strchr(h->argv[0], '/')) {
		snprintf(why, why_len, "argv[0] '%.200s' is not a bare command name", h->argv[0]);
		return -EINVAL;
	}
	if (h->n_env > 1 || (h->n_env == 1 && !env_entry_ok(h->env[0]))) {
		snprintf(why, why_len, "environment refused (only one SOURCE_DATE_EPOCH=<digits> is accepted): %.200s",
			 h->n_env ? h->env[0] : "");
		return -EINVAL;
	}
	if (h->cwd[0] && strcmp(h->cwd, ".") != 0 && path_check_relative(h->cwd, why, why_len) < 0)
		return -EINVAL;
	if (h->timeout_ms == 0) {
		snprintf(why, why_len, "timeout_ms is 0");
		return -EINVAL;
	}
	if (h->n_inputs > AGENT_INPUTS_MAX) {
		snprintf(why, why_len, "%u inputs announced (limit %d)", h->n_inputs, AGENT_INPUTS_MAX);
		return -EINVAL;
	}
	if (h->n_outputs > AGENT_OUTPUTS_MAX) {
		snprintf(why, why_len, "%zu outputs requested (limit %d)", h->n_outputs, AGENT_OUTPUTS_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < h->n_outputs; i++) {
		const char *o = h->outputs[i];
		if (path_check_relative(o, why, why_len) < 0)
			return -EINVAL;
		if (!path_has_top(o, "root") && !path_has_top(o, "tmp")) {
			snprintf(why, why_len, "output %.200s is not under root/ or tmp/", o);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(o, h->outputs[j]) == 0) {
				snprintf(why, why_len, "output %.200s requested twice", o);
				return -EINVAL;
			}
	}
	return path_check_staging(h->staging, why, why_len);
}

void exec_handle_header(struct agent *a, uint64_t id, Hpcc__V1__ExecHeader *h)
{
	char why[ERROR_MAX];
	struct exec *e, **tail;

	if (id == 0) {
		send_error(a, 0, "exec id 0 is reserved for the hello");
		goto refused;
	}
	e = exec_find(a, id);
	if (e) {
		exec_fail(a, e, "a second header for exec %llu, which is live", (unsigned long long)id);
		goto refused;
	}
	tomb_forget(a, id); /* a finished id may be used again */
	if (a->n_live >= a->vcpus * AGENT_LIVE_PER_VCPU) {
		snprintf(why, sizeof(why), "busy: %u execs live (limit %u)", a->n_live, a->vcpus * AGENT_LIVE_PER_VCPU);
		refuse_id(a, id, why);
		goto refused;
	}
	if (header_check(h, why, sizeof(why)) < 0) {
		refuse_id(a, id, why);
		goto refused;
	}
	for (e = a->execs; e; e = e->next)
		if (staging_overlaps(e->h->staging, h->staging)) {
			snprintf(why, sizeof(why), "staging directory %s is in use by exec %llu (%s)", h->staging,
				 (unsigned long long)e->id, e->h->staging);
			refuse_id(a, id, why);
			goto refused;
		}

	e = calloc(1, sizeof(*e));
	if (!e) {
		refuse_id(a, id, "out of memory");
		goto refused;
	}
	e->id = id;
	e->h = h;
	e->parent_fd = e->staging_fd = e->in_fd = e->out_fd = e->err_fd = e->status_fd = -1;
	e->timeout_ms = h->timeout_ms > AGENT_TIMEOUT_MAX_MS ? AGENT_TIMEOUT_MAX_MS : h->timeout_ms;
	e->max_output = h->max_output > AGENT_OUTPUT_MAX ? AGENT_OUTPUT_MAX : h->max_output;
	for (tail = &a->execs; *tail; tail = &(*tail)->next)
		;
	*tail = e;
	a->n_live++;
	if (staging_create(a, e, why, sizeof(why)) < 0) {
		exec_fail(a, e, "%s", why);
		return;
	}
	/* The inputs must all arrive within the exec's own timeout. */
	e->deadline_us = agent_now_us() + (int64_t)e->timeout_ms * 1000;
	e->state = h->n_inputs == 0 ? EXEC_QUEUED : EXEC_STAGING;
	return;

refused:
	hpcc__v1__exec_header__free_unpacked(h, NULL);
}

/* The first chunk of an input file: checks its name and size, creates it. */
static int input_begin(struct agent *a, struct exec *e, const Hpcc__V1__FileChunk *c, char *why, size_t why_len)
{
	static const struct mkdir_opts owned = {
		.mode = 0755, .chown = true, .uid = AGENT_COMPILE_UID, .gid = AGENT_COMPILE_GID
	};
	int r;

	if (!c->path[0]) {
		snprintf(why, why_len, "an input chunk without a path outside a file");
		return -EINVAL;
	}
	if (path_check_relative(c->path, why, why_len) < 0)
		return -EINVAL;
	if (!path_has_top(c->path, "root")) {
		snprintf(why, why_len, "input %.200s is not under root/", c->path);
		return -EINVAL;
	}
	if (c->size > AGENT_FILE_MAX || c->size > AGENT_EXEC_INPUT_MAX - e->in_total) {
		snprintf(why, why_len, "input %.200s of %llu bytes is over the limit", c->path,
			 (unsigned long long)c->size);
		return -EFBIG;
	}
	r = path_open_file(e->staging_fd, c->path, O_WRONLY | O_CREAT | O_EXCL, c->executable ? 0755 : 0644, &owned,
			   &e->in_fd);
	if (r == 0 && fchown(e->in_fd, AGENT_COMPILE_UID, AGENT_COMPILE_GID) < 0)
		r = -errno;
	if (r < 0) {
		snprintf(why, why_len, "cannot create input %.200s: %s", c->path, strerror(-r));
		return r;
	}
	e->in_path = strdup(c->path);
	if (!e->in_path) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	e->in_size = c->size;
	e->in_have = 0;
	(void)a;
	return 0;
}

void exec_handle_input(struct agent *a, uint64_t id, const Hpcc__V1__FileChunk *c)
{
	struct exec *e = exec_find(a, id);
	char why[ERROR_MAX];
	int r;

	if (!e) {
		refuse_id(a, id, "an input chunk for an unknown exec");
		return;
	}
	if (e->state != EXEC_STAGING) {
		exec_fail(a, e, "an input chunk after all %u inputs arrived", e->h->n_inputs);
		return;
	}
	if (e->in_fd < 0) {
		if (input_begin(a, e, c, why, sizeof(why)) < 0) {
			exec_fail(a, e, "%s", why);
			return;
		}
	} else if (c->path[0] && strcmp(c->path, e->in_path) != 0) {
		exec_fail(a, e, "chunks of two input files interleaved: %.200s inside %.200s", c->path, e->in_path);
		return;
	} else if (c->size != 0 && c->size != e->in_size) {
		exec_fail(a, e, "input %.200s changed its announced size", e->in_path);
		return;
	}
	if (c->data.len > e->in_size - e->in_have) {
		exec_fail(a, e, "input %.200s is larger than its announced %llu bytes", e->in_path,
			  (unsigned long long)e->in_size);
		return;
	}
	r = write_all(e->in_fd, c->data.data, c->data.len);
	if (r < 0) {
		exec_fail(a, e, "cannot write input %.200s: %s", e->in_path, strerror(-r));
		return;
	}
	e->in_have += c->data.len;
	e->in_total += c->data.len;
	if (!c->last)
		return;
	if (e->in_have != e->in_size) {
		exec_fail(a, e, "input %.200s is shorter (%llu bytes) than announced (%llu)", e->in_path,
			  (unsigned long long)e->in_have, (unsigned long long)e->in_size);
		return;
	}
	close_fd(&e->in_fd);
	free(e->in_path);
	e->in_path = NULL;
	if (++e->inputs_done == e->h->n_inputs)
		e->state = EXEC_QUEUED;
}

void exec_handle_cancel(struct agent *a, uint64_t id)
{
	struct exec *e = exec_find(a, id);

	if (!e) {
		refuse_id(a, id, "a cancel for an unknown exec");
		return;
	}
	/* Once the result is out, the outputs follow it to the end: the
	 * host always gets one result and exactly the files it announced. */
	if (e->state == EXEC_SENDING)
		return;
	exec_fail(a, e, "cancelled");
}

void exec_handle_unexpected(struct agent *a, uint64_t id, const char *what)
{
	struct exec *e = exec_find(a, id);
	char why[ERROR_MAX];

	snprintf(why, sizeof(why), "unexpected frame from the host: %s", what);
	if (e)
		exec_fail(a, e, "%s", why);
	else
		refuse_id(a, id, why);
}

void exec_start_queued(struct agent *a)
{
	char why[ERROR_MAX];
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
		close_fd(fdp);
		return false;
	}
	stdio_forward(a, e, which, buf, (size_t)n);
	return true;
}

void exec_read_stdio(struct agent *a, struct exec *e, int which)
{
	stdio_read_once(a, e, which);
}

/* Opens the requested outputs that are regular files, within what is
 * left of the output budget; all or none. */
static void outputs_collect(struct exec *e)
{
	uint64_t budget = e->max_output - e->stdio_sent, total = 0;

	e->outs = calloc(e->h->n_outputs ? e->h->n_outputs : 1, sizeof(*e->outs));
	if (!e->outs)
		return;
	for (size_t i = 0; i < e->h->n_outputs; i++) {
		struct exec_output *o = &e->outs[e->n_outs];
		if (output_open(e->staging_fd, e->h->outputs[i], &o->fd, &o->size, &o->executable) < 0)
			continue; /* missing, or not a regular file: does not exist */
		o->path = e->h->outputs[i];
		total += o->size;
		e->n_outs++;
	}
	if (total > budget) {
		for (size_t i = 0; i < e->n_outs; i++)
			close_fd(&e->outs[i].fd);
		e->n_outs = 0;
		e->truncated = true;
	}
}

static void exec_finish(struct agent *a, struct exec *e, int status)
{
	Hpcc__V1__ExecResult res = HPCC__V1__EXEC_RESULT__INIT;
	int64_t duration = agent_now_us() - e->start_us;
	char why[ERROR_MAX];

	/* Whatever the command left running in its process group goes now:
	 * nothing may write into the staging directory while it is read. */
	kill(-e->pid, SIGKILL);
	e->pid = 0;
	a->n_running--;
	sweep_stragglers(a);
	for (int i = 0; i < DRAIN_READS && stdio_read_once(a, e, 1); i++)
		;
	for (int i = 0; i < DRAIN_READS && stdio_read_once(a, e, 2); i++)
		;
	close_fd(&e->out_fd);
	close_fd(&e->err_fd);
	if (exec_spawn_failure(e->status_fd, why, sizeof(why)) == 1) {
		exec_fail(a, e, "%s", why);
		return;
	}
	close_fd(&e->status_fd);
	if (WIFEXITED(status))
		res.exit_code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		res.exit_code = 128 + WTERMSIG(status);
	else
		res.exit_code = 127;
	outputs_collect(e);
	res.timed_out = e->timed_out;
	res.output_truncated = e->truncated;
	res.duration_us = duration;
	res.n_outputs = (uint32_t)e->n_outs;
	send_result(a, e->id, &res);
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
			kill_run(e->pid);
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

static void output_chunk(struct agent *a, struct exec *e)
{
	struct exec_output *o = &e->outs[e->cur_out];
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__FileChunk c = HPCC__V1__FILE_CHUNK__INIT;
	uint64_t left = o->size - o->sent;
	size_t want = left < AGENT_CHUNK_MAX ? (size_t)left : AGENT_CHUNK_MAX;
	size_t got = pread_full(o->fd, a->chunk_buf, want, o->sent);

	if (!o->started) {
		c.path = (char *)o->path;
		c.size = o->size;
		c.executable = o->executable;
	}
	c.data.data = a->chunk_buf;
	c.data.len = got;
	/* A file that shrank since it was measured ends early: the host
	 * sees a file shorter than announced, which it refuses. */
	c.last = got < want || o->sent + got == o->size;
	if (got < want)
		agent_log("exec %llu: output %s shrank while being sent", (unsigned long long)e->id, o->path);
	f.exec_id = e->id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_OUTPUT;
	f.output = &c;
	agent_send(a, &f);
	o->started = true;
	o->sent += got;
	if (c.last) {
		close_fd(&o->fd);
		e->cur_out++;
	}
	if (e->cur_out == e->n_outs)
		exec_destroy(a, e);
}

bool exec_produce(struct agent *a)
{
	for (struct exec *e = a->execs; e; e = e->next)
		if (e->state == EXEC_SENDING) {
			output_chunk(a, e);
			return true;
		}
	return false;
}

void exec_destroy_all(struct agent *a)
{
	while (a->execs)
		exec_destroy(a, a->execs);
}
