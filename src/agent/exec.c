/*
 * One exec, from its header until its inputs are staged, and its end: the
 * header is checked whole, inputs are accepted only in the order the
 * protocol allows, and cancel, duplicate and unknown ids are handled here
 * (run.c takes over once the exec is queued). Anything the host does wrong
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

void exec_send_result(struct agent *a, uint64_t id, Hpcc__V1__ExecResult *res)
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
	char buf[AGENT_ERROR_MAX];

	snprintf(buf, sizeof(buf), "%s", msg);
	res.exit_code = 127;
	res.error = buf;
	agent_log("exec %llu: %s", (unsigned long long)id, buf);
	exec_send_result(a, id, &res);
}

/* SIGKILLs a run: its process group, and the child itself in case it has
 * not reached setsid() yet (then it has no group, and no children). */
void exec_kill_run(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
}

void exec_destroy(struct agent *a, struct exec *e)
{
	for (struct exec **pp = &a->execs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	if (e->pid > 0) {
		/* The child may not have switched to the exec's uid yet:
		 * kill it by pid too, and wait for it. */
		exec_kill_run(e->pid);
		while (waitpid(e->pid, NULL, 0) < 0 && errno == EINTR)
			;
		e->pid = 0;
		a->n_running--;
	}
	/* Everything else the run started dies before its files go and
	 * before its uid can serve another exec; the loop reaps them. */
	exec_stop_processes(e);
	close_fdp(&e->in_fd);
	close_fdp(&e->out_fd);
	close_fdp(&e->err_fd);
	close_fdp(&e->status_fd);
	for (size_t i = 0; i < e->n_outs; i++)
		close_fdp(&e->outs[i].fd);
	staging_destroy(a, e);
	slot_release(a, e);
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
void exec_fail(struct agent *a, struct exec *e, const char *fmt, ...)
{
	char msg[AGENT_ERROR_MAX];
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
	char why[AGENT_ERROR_MAX];
	struct exec *e, **tail;

	if (id == 0) {
		send_error(a, 0, "exec id 0 is reserved for the hello");
		goto refused;
	}
	e = exec_find(a, id);
	if (e && e->state == EXEC_SENDING) {
		/* Its outputs are on their way: they follow the result to the
		 * end whatever else the host sends for the id. */
		agent_log("exec %llu: a second header while its outputs are sent, ignored", (unsigned long long)id);
		goto refused;
	}
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
	e->slot = -1;
	e->parent_fd = e->staging_fd = e->in_fd = e->out_fd = e->err_fd = e->status_fd = -1;
	if (slot_take(a, e) < 0) {
		/* Only slots whose processes survived SIGKILL are missing. */
		free(e);
		refuse_id(a, id, "busy: no compile user is free");
		goto refused;
	}
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
	const struct mkdir_opts owned = { .mode = 0755, .chown = true, .uid = e->uid, .gid = (gid_t)e->uid };
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
	if (r == 0 && fchown(e->in_fd, e->uid, (gid_t)e->uid) < 0)
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
	char why[AGENT_ERROR_MAX];
	int r;

	if (!e) {
		refuse_id(a, id, "an input chunk for an unknown exec");
		return;
	}
	if (e->state == EXEC_SENDING) {
		agent_log("exec %llu: an input chunk while its outputs are sent, ignored", (unsigned long long)id);
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
	close_fdp(&e->in_fd);
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
	char why[AGENT_ERROR_MAX];

	snprintf(why, sizeof(why), "unexpected frame from the host: %s", what);
	if (e && e->state == EXEC_SENDING)
		agent_log("exec %llu: %s while its outputs are sent, ignored", (unsigned long long)id, why);
	else if (e)
		exec_fail(a, e, "%s", why);
	else
		refuse_id(a, id, why);
}

void exec_destroy_all(struct agent *a)
{
	while (a->execs)
		exec_destroy(a, a->execs);
}
