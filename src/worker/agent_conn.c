/*
 * Host end of the agent stream (see agent_conn.h). One reader thread reads
 * frames and files them under the exec they name; exec threads write their
 * own frames under a write lock and sleep on a condition variable until
 * their exec is complete, the connection breaks, or their deadline passes.
 */
#include "agent_conn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "frame.h"
#include "log.h"
#include "macro.h"

#define AGENT_MARGIN_MS 15000      /* beyond the exec's own timeout: the guest enforces that one */
#define AGENT_ERROR_MAX 1024
#define AGENT_OUTPUTS_MAX 16

struct pending {
	uint64_t id;
	const struct agent_exec_request *rq;
	size_t n_requested;
	size_t budget;                 /* output bytes the guest may still send */
	bool have_result, done;
	unsigned outputs_announced;
	bool received[AGENT_OUTPUTS_MAX];
	ssize_t cur;                   /* file being received, index into reply.files */
	uint64_t cur_size;
	struct agent_exec_reply reply;
	struct pending *next;
};

struct agent_conn {
	int fd;
	pthread_t reader;
	bool reader_started;
	pthread_mutex_t lock;          /* pending list, broken, why */
	pthread_cond_t cond;
	pthread_mutex_t write_lock;    /* one writer at a time on the stream */
	struct pending *pending;
	uint64_t next_id;
	unsigned margin_ms;
	bool broken;
	char why[256];
};

void agent_exec_reply_free(struct agent_exec_reply *r)
{
	if (!r)
		return;
	free(r->error);
	buf_free(&r->out);
	buf_free(&r->err);
	for (size_t i = 0; i < r->n_files; i++) {
		free(r->files[i].path);
		buf_free(&r->files[i].data);
	}
	free(r->files);
	*r = (struct agent_exec_reply){ 0 };
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Marks the connection broken (first reason wins) and wakes everyone.
 * Called with c->lock held. */
static void mark_broken_locked(struct agent_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mark_broken_locked(struct agent_conn *c, const char *fmt, ...)
{
	if (!c->broken) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->why, sizeof(c->why), fmt, ap);
		va_end(ap);
		c->broken = true;
		log_warn("agent stream: %s", c->why);
	}
	shutdown(c->fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->cond);
}

static bool has_unknown_fields(const ProtobufCMessage *m)
{
	return m && m->n_unknown_fields > 0;
}

static struct pending *find_pending(struct agent_conn *c, uint64_t id)
{
	for (struct pending *p = c->pending; p; p = p->next)
		if (p->id == id && !p->done)
			return p;
	return NULL;
}

static int requested_index(const struct pending *p, const char *path)
{
	for (size_t i = 0; i < p->n_requested; i++)
		if (strcmp(p->rq->outputs[i], path) == 0)
			return (int)i;
	return -1;
}

static void finish_if_complete(struct agent_conn *c, struct pending *p)
{
	if (p->have_result && p->cur < 0 && p->reply.n_files == p->outputs_announced) {
		p->done = true;
		pthread_cond_broadcast(&c->cond);
	}
}

/* Files one guest frame. Returns NULL, or why the frame breaks the
 * protocol (the caller then breaks the connection). Called with c->lock. */
static const char *accept_frame(struct agent_conn *c, const Hpcc__V1__AgentFrame *f, char *why, size_t why_len)
{
	if (has_unknown_fields(&f->base))
		return "a frame with unknown fields";
	switch (f->kind_case) {
	case HPCC__V1__AGENT_FRAME__KIND_STDIO:
	case HPCC__V1__AGENT_FRAME__KIND_RESULT:
	case HPCC__V1__AGENT_FRAME__KIND_OUTPUT:
		break;
	case HPCC__V1__AGENT_FRAME__KIND_HELLO:
		return "a second hello";
	default:
		snprintf(why, why_len, "a frame of kind %d, which only the host sends", (int)f->kind_case);
		return why;
	}
	struct pending *p = find_pending(c, f->exec_id);
	if (!p) {
		snprintf(why, why_len, "a frame for exec %llu, which is not waiting", (unsigned long long)f->exec_id);
		return why;
	}
	if (f->kind_case == HPCC__V1__AGENT_FRAME__KIND_STDIO) {
		const Hpcc__V1__StdioChunk *s = f->stdio;
		if (has_unknown_fields(&s->base))
			return "a stdio chunk with unknown fields";
		if (p->have_result)
			return "output on stdout/stderr after the result";
		if (s->fd != 1 && s->fd != 2)
			return "a stdio chunk for an fd other than 1 or 2";
		if (s->data.len > p->budget)
			return "more stdout/stderr than the exec allows";
		p->budget -= s->data.len;
		struct buf *b = s->fd == 1 ? &p->reply.out : &p->reply.err;
		if (buf_append(b, s->data.data, s->data.len) < 0)
			return "out of memory for stdio";
		return NULL;
	}
	if (f->kind_case == HPCC__V1__AGENT_FRAME__KIND_RESULT) {
		const Hpcc__V1__ExecResult *r = f->result;
		if (has_unknown_fields(&r->base))
			return "a result with unknown fields";
		if (p->have_result)
			return "a second result for one exec";
		if (r->n_outputs > p->n_requested)
			return "a result announcing more outputs than requested";
		if (r->exit_code < 0 || r->exit_code > 255 + 128)
			return "an exit code out of range";
		if (r->error && strlen(r->error) > AGENT_ERROR_MAX)
			return "an error message over 1 KiB";
		p->have_result = true;
		p->outputs_announced = r->n_outputs;
		p->reply.exit_code = r->exit_code;
		p->reply.timed_out = r->timed_out;
		p->reply.output_truncated = r->output_truncated;
		p->reply.duration_us = r->duration_us;
		if (r->error && r->error[0] && !(p->reply.error = strdup(r->error)))
			return "out of memory";
		if (r->n_outputs && !(p->reply.files = calloc(r->n_outputs, sizeof(*p->reply.files))))
			return "out of memory";
		finish_if_complete(c, p);
		return NULL;
	}
	const Hpcc__V1__FileChunk *o = f->output;
	if (has_unknown_fields(&o->base))
		return "an output chunk with unknown fields";
	if (!p->have_result)
		return "an output file before the result";
	if (p->cur < 0) {
		/* First chunk of a file: a requested output, once, within budget. */
		int idx = requested_index(p, o->path ? o->path : "");
		if (idx < 0)
			return "an output file that was not requested";
		if (p->received[idx])
			return "the same output file twice";
		if (p->reply.n_files >= p->outputs_announced)
			return "more output files than the result announced";
		if (o->size > p->budget)
			return "an output file larger than the exec allows";
		p->received[idx] = true;
		struct agent_output_file *file = &p->reply.files[p->reply.n_files++];
		if (!(file->path = strdup(o->path)))
			return "out of memory";
		buf_init(&file->data, (size_t)o->size);
		p->budget -= (size_t)o->size;
		p->cur = (ssize_t)(p->reply.n_files - 1);
		p->cur_size = o->size;
	} else if (o->path && o->path[0] && strcmp(o->path, p->reply.files[p->cur].path) != 0)
		return "chunks of two output files interleaved";
	struct buf *b = &p->reply.files[p->cur].data;
	if (o->data.len > p->cur_size - b->len)
		return "an output file longer than its announced size";
	if (o->data.len && buf_append(b, o->data.data, o->data.len) < 0)
		return "out of memory for an output file";
	if (o->last) {
		if (b->len != p->cur_size)
			return "an output file shorter than its announced size";
		p->cur = -1;
		finish_if_complete(c, p);
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct agent_conn *c = arg;
	for (;;) {
		uint8_t *body = NULL;
		size_t len = 0;
		int r = frame_read(c->fd, FRAME_MAX_DEFAULT, &body, &len);
		pthread_mutex_lock(&c->lock);
		if (r < 0) {
			if (r == -EPIPE)
				mark_broken_locked(c, "the guest closed the stream");
			else if (r == -EPROTO || r == -EMSGSIZE)
				mark_broken_locked(c, "a malformed frame header (%s)",
						   r == -EPROTO ? "non-zero flag byte" : "length over the cap");
			else
				mark_broken_locked(c, "reading the stream: %s", strerror(-r));
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, len, body);
		free(body);
		char why[160];
		const char *bad = f ? accept_frame(c, f, why, sizeof(why)) : "a frame that does not decode";
		if (bad) {
			mark_broken_locked(c, "the guest sent %s", bad);
			pthread_mutex_unlock(&c->lock);
			if (f)
				hpcc__v1__agent_frame__free_unpacked(f, NULL);
			return NULL;
		}
		pthread_mutex_unlock(&c->lock);
		hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
}

static int send_frame(struct agent_conn *c, const Hpcc__V1__AgentFrame *f, int64_t deadline)
{
	size_t len = hpcc__v1__agent_frame__get_packed_size(f);
	if (len > FRAME_MAX_DEFAULT)
		return -EMSGSIZE;
	_cleanup_free_ uint8_t *body = malloc(len ? len : 1);
	if (!body)
		return -ENOMEM;
	hpcc__v1__agent_frame__pack(f, body);
	return frame_write_deadline(c->fd, body, len, deadline);
}

/* Reads the hello with a deadline: poll + the incremental decoder, so a
 * guest that drips bytes cannot stretch the wait. */
static int read_hello(int fd, int timeout_ms, struct agent_hello_info *ret, struct error *err)
{
	struct frame_decoder d;
	frame_decoder_init(&d, 4096);
	int64_t deadline = now_ms() + timeout_ms;
	int r = 0;
	while (!d.ready) {
		int64_t left = deadline - now_ms();
		if (left <= 0) {
			r = error_set(err, -ETIMEDOUT, "no hello from the agent within %d ms", timeout_ms);
			break;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = error_set(err, -errno, "waiting for the agent: %s", strerror(errno));
			break;
		}
		if (n == 0)
			continue;
		uint8_t tmp[512];
		ssize_t got = read(fd, tmp, sizeof(tmp));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = error_set(err, got == 0 ? -EPIPE : -errno, "the agent stream closed before the hello");
			break;
		}
		/* The hello must come alone: nothing may follow it before the
		 * host has sent anything. */
		ssize_t used = frame_decoder_feed(&d, tmp, (size_t)got);
		if (used < 0) {
			r = error_set(err, -EPROTO, "a malformed hello frame");
			break;
		}
		if (d.ready && used != got) {
			r = error_set(err, -EPROTO, "bytes after the hello");
			break;
		}
	}
	if (r == 0) {
		Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, d.body_len, d.body);
		if (!f || has_unknown_fields(&f->base) || f->kind_case != HPCC__V1__AGENT_FRAME__KIND_HELLO ||
		    f->exec_id != 0 || has_unknown_fields(&f->hello->base))
			r = error_set(err, -EPROTO, "the agent's first frame is not a hello");
		else if (!f->hello->network_ok)
			r = error_set(err, -EPROTO, "the agent reports a network interface");
		else if (f->hello->vcpus < 1 || f->hello->vcpus > 64)
			r = error_set(err, -EPROTO, "the agent reports %u vCPUs", f->hello->vcpus);
		else {
			snprintf(ret->version, sizeof(ret->version), "%.*s", AGENT_HELLO_VERSION_MAX,
				 f->hello->version ? f->hello->version : "");
			ret->vcpus = f->hello->vcpus;
		}
		if (f)
			hpcc__v1__agent_frame__free_unpacked(f, NULL);
	}
	frame_decoder_free(&d);
	return r;
}

int agent_conn_open(int fd, int hello_timeout_ms, struct agent_conn **ret, struct agent_hello_info *ret_hello,
		    struct error *err)
{
	struct agent_hello_info hello = { 0 };
	int r = read_hello(fd, hello_timeout_ms, &hello, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	struct agent_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return error_set(err, -ENOMEM, "out of memory");
	}
	c->fd = fd;
	c->next_id = 1;
	c->margin_ms = AGENT_MARGIN_MS;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->write_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = pthread_create(&c->reader, NULL, reader_main, c)) != 0) {
		agent_conn_close(c);
		return error_set(err, -r, "starting the agent reader: %s", strerror(r));
	}
	c->reader_started = true;
	*ret = c;
	if (ret_hello)
		*ret_hello = hello;
	return 0;
}

/* True when the exec already has its answer (the agent refused it early)
 * or the stream broke: no point sending the rest of its inputs. */
static bool exec_settled(struct agent_conn *c, const struct pending *p)
{
	pthread_mutex_lock(&c->lock);
	bool settled = p->done || c->broken;
	pthread_mutex_unlock(&c->lock);
	return settled;
}

static int send_exec(struct agent_conn *c, const struct pending *p, const struct agent_exec_request *rq,
		     size_t n_outputs, int64_t deadline)
{
	uint64_t id = p->id;
	size_t n_argv = 0, n_env = 0;
	while (rq->argv[n_argv])
		n_argv++;
	while (rq->env && rq->env[n_env])
		n_env++;
	Hpcc__V1__ExecHeader h = HPCC__V1__EXEC_HEADER__INIT;
	h.n_argv = n_argv;
	h.argv = (char **)rq->argv;
	h.n_env = n_env;
	h.env = (char **)rq->env;
	h.cwd = (char *)(rq->cwd ? rq->cwd : "");
	h.timeout_ms = rq->timeout_ms;
	h.max_output = rq->max_output;
	h.n_outputs = n_outputs;
	h.outputs = (char **)rq->outputs;
	h.n_inputs = (uint32_t)rq->n_inputs;
	h.staging = (char *)rq->staging;
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.exec_id = id;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HEADER;
	f.header = &h;
	/* A header too large for one frame is the request's fault, found
	 * before anything is sent: the stream stays usable. */
	if (hpcc__v1__agent_frame__get_packed_size(&f) > FRAME_MAX_DEFAULT)
		return -E2BIG;
	int r = send_frame(c, &f, deadline);
	for (size_t i = 0; r == 0 && i < rq->n_inputs && !exec_settled(c, p); i++) {
		const struct agent_input *in = &rq->inputs[i];
		size_t off = 0;
		do {
			size_t n = in->size - off < AGENT_CHUNK_MAX ? in->size - off : AGENT_CHUNK_MAX;
			Hpcc__V1__FileChunk ch = HPCC__V1__FILE_CHUNK__INIT;
			if (off == 0) {
				ch.path = (char *)in->path;
				ch.size = in->size;
				ch.executable = in->executable;
			}
			ch.data.data = (uint8_t *)in->data + off;
			ch.data.len = n;
			off += n;
			ch.last = off == in->size;
			Hpcc__V1__AgentFrame cf = HPCC__V1__AGENT_FRAME__INIT;
			cf.exec_id = id;
			cf.kind_case = HPCC__V1__AGENT_FRAME__KIND_INPUT;
			cf.input = &ch;
			r = send_frame(c, &cf, deadline);
		} while (r == 0 && off < in->size);
	}
	return r;
}

static void unlink_pending(struct agent_conn *c, struct pending *p)
{
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

int agent_conn_exec(struct agent_conn *c, const struct agent_exec_request *rq, struct agent_exec_reply *ret,
		    struct error *err)
{
	size_t n_outputs = 0;
	while (rq->outputs && rq->outputs[n_outputs])
		n_outputs++;
	if (n_outputs > AGENT_OUTPUTS_MAX || rq->timeout_ms == 0 || !rq->staging)
		return error_set(err, -EINVAL, "an exec with %zu outputs, timeout %u ms", n_outputs, rq->timeout_ms);
	struct pending p = { .rq = rq, .n_requested = n_outputs, .budget = rq->max_output, .cur = -1 };
	buf_init(&p.reply.out, rq->max_output);
	buf_init(&p.reply.err, rq->max_output);
	pthread_mutex_lock(&c->lock);
	if (c->broken) {
		pthread_mutex_unlock(&c->lock);
		return error_set(err, -EPIPE, "the agent stream is broken: %s", c->why);
	}
	p.id = c->next_id++;
	p.next = c->pending;
	c->pending = &p;
	pthread_mutex_unlock(&c->lock);

	/* One deadline bounds everything: sending (a guest that stops reading
	 * cannot hold this thread) and waiting for the answer. */
	int64_t deadline = now_ms() + rq->timeout_ms + c->margin_ms;
	pthread_mutex_lock(&c->write_lock);
	int r = send_exec(c, &p, rq, n_outputs, deadline);
	pthread_mutex_unlock(&c->write_lock);

	pthread_mutex_lock(&c->lock);
	if (r == -E2BIG) {
		unlink_pending(c, &p);
		pthread_mutex_unlock(&c->lock);
		agent_exec_reply_free(&p.reply);
		return error_set(err, -EINVAL, "the exec's command does not fit in one frame");
	}
	if (r < 0)
		mark_broken_locked(c, "sending exec %llu: %s", (unsigned long long)p.id,
				   r == -ETIMEDOUT ? "the guest stopped reading" : strerror(-r));
	while (!p.done && !c->broken) {
		struct timespec ts = { .tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000 };
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT && !p.done) {
			mark_broken_locked(c, "exec %llu: no answer within %u ms", (unsigned long long)p.id,
					   rq->timeout_ms + c->margin_ms);
			r = -ETIMEDOUT;
		}
	}
	unlink_pending(c, &p);
	bool ok = p.done;
	if (!ok && r == 0)
		r = -EPROTO;
	if (!ok)
		error_set(err, r, "the agent stream broke: %s", c->why);
	pthread_mutex_unlock(&c->lock);
	if (!ok) {
		agent_exec_reply_free(&p.reply);
		return r;
	}
	*ret = p.reply;
	return 0;
}

void agent_conn_set_margin(struct agent_conn *c, unsigned margin_ms)
{
	pthread_mutex_lock(&c->lock);
	c->margin_ms = margin_ms;
	pthread_mutex_unlock(&c->lock);
}

bool agent_conn_broken(struct agent_conn *c, char *why, size_t why_len)
{
	pthread_mutex_lock(&c->lock);
	bool b = c->broken;
	if (b && why)
		snprintf(why, why_len, "%s", c->why);
	pthread_mutex_unlock(&c->lock);
	return b;
}

void agent_conn_shutdown(struct agent_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	if (!c->broken) {
		c->broken = true;
		snprintf(c->why, sizeof(c->why), "closed by the host");
	}
	shutdown(c->fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void agent_conn_close(struct agent_conn *c)
{
	if (!c)
		return;
	agent_conn_shutdown(c);
	if (c->reader_started)
		pthread_join(c->reader, NULL);
	close(c->fd);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->write_lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}
