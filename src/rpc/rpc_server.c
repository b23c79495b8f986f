/*
 * The server side of src/rpc. Every method is registered with grpc so that
 * grpc reads a call's first message before it reports the call: a client
 * that opens calls and sends nothing costs a stream, never a thread. One
 * dispatcher thread (the caller of rpc_server_run) takes the calls that
 * arrived with their first message from the server's completion queue and
 * hands each to a handler thread from a pool that grows on demand up to
 * max_calls; a call that finds every thread busy, or names no method we
 * serve, is answered at once by the dispatcher itself. Each call has its own
 * pluck queue, so a handler can do blocking batches without seeing anything
 * else. Shutdown stops admitting calls, gives running ones the grace period,
 * then cancels them, which makes every blocked grpc operation in a handler
 * return; rpc_server_run returns when the last handler has.
 */
#define RPC_INTERNAL
#include "rpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <grpc/support/time.h>

#include "log.h"

#define PENDING_REQUESTS 8  /* calls grpc may match before the dispatcher asks again */
#define TICK_MS 100         /* how often the dispatcher looks at the shutdown clock */
#define REJECT_WAIT_MS 5000 /* for the dispatcher's own answers (busy, unknown method) */
#define CLOSE_WAIT_MS 10000 /* for grpc to report a finished call closed */

enum tag_kind { TAG_CALL, TAG_SHUTDOWN };

/* One entry of the server's table; the last one (name NULL) takes the calls to methods nobody registered. */
struct server_method {
	char *name;
	rpc_handler_fn handler;
	bool unary;
	void *registered;  /* grpc's handle; NULL for the catch-all */
	unsigned pending;  /* requests for its calls not yet matched; the dispatcher's alone */
};

struct rpc_call {
	enum tag_kind kind;  /* first: events on the server's queue point at this */
	struct rpc_server *server;
	grpc_call *call;
	grpc_completion_queue *cq;  /* this call's own pluck queue */
	grpc_call_details details;  /* the catch-all's request only */
	grpc_metadata_array request_md;
	gpr_timespec registered_deadline;  /* a registered method's request writes the deadline here */
	grpc_byte_buffer *payload;  /* the first message, read by grpc with the call; NULL: there was none */
	bool payload_due;  /* rpc_call_recv has not returned the payload yet */
	char *method;  /* gpr_malloc'd */
	char *peer;    /* gpr_malloc'd */
	struct server_method *handler;  /* the entry of the server's table that serves it */
	gpr_timespec deadline;  /* the client's, on the monotonic clock; infinite if none */
	grpc_byte_buffer *recv;
	int close_cancelled;    /* RECV_CLOSE_ON_SERVER's output */
	bool sent_initial, end_of_stream, finished, closed, dead, leaked;
	char op_tag, close_tag;  /* their addresses tag the batches */
};

struct worker {
	struct rpc_server *server;
	pthread_t thread;
	pthread_cond_t wake;
	struct rpc_call *call;  /* assigned, NULL when idle */
};

struct rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	struct server_method *methods;  /* n_methods copies, names strdup'd, then the catch-all */
	size_t n_methods;
	void *userdata;
	unsigned max_calls;
	unsigned grace_ms;
	void (*on_cancel)(void *userdata);
	int port;
	enum tag_kind shutdown_tag;
	unsigned pending;  /* requests for calls not yet matched, all methods; the dispatcher's alone */

	pthread_mutex_t lock;  /* guards everything below */
	struct worker *workers;  /* max_calls of them, threads started on demand */
	unsigned n_started;
	struct worker **idle;
	unsigned n_idle;
	bool stopping;
	bool workers_exit;
	bool running;
	bool drained;  /* grpc server destroyed, queue drained: only memory left */
};

static void call_free(struct rpc_call *c)
{
	if (!c)
		return;
	if (c->leaked) {
		log_error("rpc: leaking a call whose batch never completed");
		return;
	}
	if (c->call)
		grpc_call_unref(c->call);
	if (c->recv)
		grpc_byte_buffer_destroy(c->recv);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->request_md);
	rpc__queue_destroy(c->cq);
	gpr_free(c->method);
	gpr_free(c->peer);
	free(c);
}

/* How long one of a handler's waits may take: to the client's deadline (grpc cancels the call then, so this is
 * only a backstop), and never more than RPC_IDLE_MAX_MS. */
static gpr_timespec op_deadline(const struct rpc_call *c)
{
	gpr_timespec cap = rpc__deadline_ms(RPC_IDLE_MAX_MS);
	gpr_timespec d = gpr_time_add(c->deadline, gpr_time_from_millis(RPC__DEADLINE_SLACK_MS, GPR_TIMESPAN));
	return gpr_time_cmp(d, cap) < 0 ? d : cap;
}

/* Runs ops (after the initial metadata when with_initial and it is still due) and waits for them. */
static int call_batch(struct rpc_call *c, const grpc_op *ops, size_t n_ops, bool with_initial, void *tag,
		      gpr_timespec deadline)
{
	grpc_op all[4] = { 0 };
	size_t n = 0;
	if (with_initial && !c->sent_initial)
		all[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	memcpy(all + n, ops, n_ops * sizeof(*ops));
	n += n_ops;
	grpc_call_error e = grpc_call_start_batch(c->call, all, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		log_error("rpc: %s: grpc_call_start_batch: %s", c->method, grpc_call_error_to_string(e));
		return -EIO;
	}
	if (with_initial)
		c->sent_initial = true;
	int r = rpc__wait(c->cq, c->call, tag, deadline);
	if (r == -EDEADLK)
		c->leaked = true;
	return r;
}

/* What ended a dead call: the deadline or a cancellation. */
static int dead_error(const struct rpc_call *c)
{
	return rpc_call_time_left_ms(c) == 0 ? -ETIMEDOUT : -ECANCELED;
}

/* A failed batch means the call is over. */
static int call_failed(struct rpc_call *c, int r)
{
	c->dead = true;
	if (r == -EDEADLK || r == -EIO)
		return r;
	return dead_error(c);
}

/* The first message, which grpc read before the call was handed over. */
static int call_recv_payload(struct rpc_call *c, struct buf *msg)
{
	c->payload_due = false;
	if (!c->payload) {
		/* The client half-closed without a message, or the call failed before one came (gRFC L84). */
		if (grpc_call_failed_before_recv_message(c->call))
			return call_failed(c, 0);
		c->end_of_stream = true;
		buf_reset(msg);
		return 0;
	}
	/* A unary client sends nothing more: no need to wait for its half-close. */
	if (c->handler->unary)
		c->end_of_stream = true;
	int r = rpc__byte_buffer_read(c->payload, msg);
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	return r < 0 ? r : 1;
}

int rpc_call_recv(struct rpc_call *c, struct buf *msg)
{
	if (c->finished)
		return -EPIPE;
	if (c->payload_due && !c->dead)
		return call_recv_payload(c, msg);
	if (c->end_of_stream) {
		buf_reset(msg);
		return 0;
	}
	if (c->dead)
		return dead_error(c);
	grpc_op op = { .op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &c->recv };
	int r = call_batch(c, &op, 1, false, &c->op_tag, op_deadline(c));
	if (r != 1)
		return call_failed(c, r);
	if (!c->recv) {
		/* A cancelled call also ends with "no message" and a successful batch; grpc keeps the difference
		 * here (gRFC L84). */
		if (grpc_call_failed_before_recv_message(c->call))
			return call_failed(c, 0);
		c->end_of_stream = true;
		buf_reset(msg);
		return 0;
	}
	r = rpc__byte_buffer_read(c->recv, msg);
	grpc_byte_buffer_destroy(c->recv);
	c->recv = NULL;
	return r < 0 ? r : 1;
}

int rpc_call_send(struct rpc_call *c, const void *data, size_t n)
{
	if (c->finished)
		return -EPIPE;
	if (c->dead)
		return dead_error(c);
	if (rpc_call_time_left_ms(c) == 0) {
		/* grpc may not have noticed the deadline yet; a reply now would still reach a client whose own
		 * timer is equally late, so there is none. */
		c->dead = true;
		return -ETIMEDOUT;
	}
	grpc_byte_buffer *bb = rpc__byte_buffer(data, n);
	if (!bb)
		return -ENOMEM;
	grpc_op op = { .op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb };
	int r = call_batch(c, &op, 1, true, &c->op_tag, op_deadline(c));
	if (c->leaked)
		return r;  /* bb too: grpc may still read it */
	grpc_byte_buffer_destroy(bb);
	return r == 1 ? 0 : call_failed(c, r);
}

int rpc_call_finish(struct rpc_call *c, int code, const char *msg)
{
	if (c->finished)
		return -EPIPE;
	c->finished = true;
	if (code < GRPC_STATUS_OK || code > GRPC_STATUS_UNAUTHENTICATED)
		code = GRPC_STATUS_UNKNOWN;
	/* Past the deadline the answer is DEADLINE_EXCEEDED whatever the handler says, even if grpc's own timer
	 * has not fired yet: a client must never see OK for a call that ran out of time. */
	bool late = rpc_call_time_left_ms(c) == 0;
	if (late) {
		code = GRPC_STATUS_DEADLINE_EXCEEDED;
		msg = "Deadline Exceeded";
	}
	/* Sent even on a dead call: grpc then fails the batch, and the call's bookkeeping is complete. */
	grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
	grpc_op op = { .op = GRPC_OP_SEND_STATUS_FROM_SERVER };
	op.data.send_status_from_server.status = (grpc_status_code)code;
	op.data.send_status_from_server.status_details = &details;
	int r = call_batch(c, &op, 1, true, &c->op_tag, op_deadline(c));
	if (c->leaked)
		return r;
	grpc_slice_unref(details);
	if (late)
		return -ETIMEDOUT;
	return r == 1 ? 0 : call_failed(c, r);
}

int rpc_call_reply(struct rpc_call *c, const void *data, size_t n)
{
	if (c->finished)
		return -EPIPE;
	if (c->dead || rpc_call_time_left_ms(c) == 0) {
		/* As rpc_call_send then rpc_call_finish: no message; the status batch still completes the call's
		 * bookkeeping, and past the deadline it says DEADLINE_EXCEEDED. */
		int r = c->dead ? dead_error(c) : -ETIMEDOUT;
		c->dead = true;
		rpc_call_finish(c, GRPC_STATUS_OK, NULL);
		return r;
	}
	grpc_byte_buffer *bb = rpc__byte_buffer(data, n);
	if (!bb) {
		/* Not OK without the message: a unary client would take an empty answer for a success. */
		rpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return -ENOMEM;
	}
	c->finished = true;
	/* One batch, so one write: the message and the trailers go out together (with the initial metadata
	 * when still due), rather than as two TLS records after two wake-ups of grpc's writer. */
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[2] = { 0 };
	ops[0].op = GRPC_OP_SEND_MESSAGE;
	ops[0].data.send_message.send_message = bb;
	ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[1].data.send_status_from_server.status = GRPC_STATUS_OK;
	ops[1].data.send_status_from_server.status_details = &details;
	int r = call_batch(c, ops, 2, true, &c->op_tag, op_deadline(c));
	if (c->leaked)
		return r;  /* bb too: grpc may still read it */
	grpc_byte_buffer_destroy(bb);
	return r == 1 ? 0 : call_failed(c, r);
}

const char *rpc_call_method(const struct rpc_call *c) { return c->method; }

const char *rpc_call_peer(const struct rpc_call *c) { return c->peer ? c->peer : ""; }

int64_t rpc_call_time_left_ms(const struct rpc_call *c)
{
	if (c->deadline.tv_sec == INT64_MAX)
		return INT64_MAX;
	gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(GPR_CLOCK_MONOTONIC));
	if (left.tv_sec < 0)
		return 0;
	return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

bool rpc_call_cancelled(struct rpc_call *c)
{
	if (c->dead || rpc_call_time_left_ms(c) == 0)
		return true;
	if (!c->closed && !c->leaked) {
		/* The close batch started with the call completes early only when the call is cancelled. */
		gpr_timespec now = gpr_inf_past(GPR_CLOCK_MONOTONIC);  /* look, do not wait */
		grpc_event ev = grpc_completion_queue_pluck(c->cq, &c->close_tag, now, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			c->closed = true;
	}
	return c->closed && !c->finished;
}

/* The dispatcher's own answer to a call no handler takes. */
static void call_reject(struct rpc_call *c, grpc_status_code code, const char *msg)
{
	grpc_slice details = grpc_slice_from_copied_string(msg);
	grpc_op ops[2] = { 0 };
	ops[0].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[0].data.send_status_from_server.status = code;
	ops[0].data.send_status_from_server.status_details = &details;
	/* With the status in the same batch, so that the call counts as complete when it comes back. */
	ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[1].data.recv_close_on_server.cancelled = &c->close_cancelled;
	call_batch(c, ops, 2, true, &c->op_tag, rpc__deadline_ms(REJECT_WAIT_MS));
	if (!c->leaked)
		grpc_slice_unref(details);
	call_free(c);
}

static void call_handle(struct rpc_server *s, struct rpc_call *c)
{
	/* Started first and reaped last: its early completion is how rpc_call_cancelled learns the client is
	 * gone. */
	grpc_op op = { .op = GRPC_OP_RECV_CLOSE_ON_SERVER, .data.recv_close_on_server.cancelled = &c->close_cancelled };
	if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK) {
		c->closed = true;  /* nothing to reap */
		c->dead = true;
	}
	c->handler->handler(c, s->userdata);
	if (!c->finished)
		rpc_call_finish(c, GRPC_STATUS_INTERNAL, "the handler did not finish the call");
	if (!c->closed && !c->leaked) {
		if (rpc__wait(c->cq, c->call, &c->close_tag, rpc__deadline_ms(CLOSE_WAIT_MS)) == -EDEADLK)
			c->leaked = true;
	}
	call_free(c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct rpc_server *s = w->server;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!w->call && !s->workers_exit)
			pthread_cond_wait(&w->wake, &s->lock);
		if (!w->call)
			break;
		struct rpc_call *c = w->call;
		pthread_mutex_unlock(&s->lock);
		call_handle(s, c);
		pthread_mutex_lock(&s->lock);
		w->call = NULL;
		s->idle[s->n_idle++] = w;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Gives a new call to an idle handler thread, or to a new one while there are fewer than max_calls. */
static void dispatch(struct rpc_server *s, struct rpc_call *c)
{
	c->peer = grpc_call_get_peer(c->call);
	if (!c->handler->registered) {
		c->method = grpc_slice_to_c_string(c->details.method);
		c->deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
	} else {
		c->method = gpr_strdup(c->handler->name);
		c->deadline = gpr_convert_clock_type(c->registered_deadline, GPR_CLOCK_MONOTONIC);
		c->payload_due = true;
	}
	if (!c->handler->handler) {
		/* grpc reports here only the calls to methods that were not registered. */
		log_debug("rpc: %s called unknown method %s", c->peer, c->method);
		call_reject(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
		return;
	}

	struct worker *w = NULL;
	pthread_mutex_lock(&s->lock);
	bool stopping = s->stopping;
	if (stopping) {
		/* Matched just before the shutdown: a client can retry elsewhere. */
	} else if (s->n_idle > 0) {
		w = s->idle[--s->n_idle];
	} else if (s->n_started < s->max_calls) {
		/* The call is in place before the thread starts, so it needs no wake-up. */
		w = &s->workers[s->n_started];
		w->call = c;
		if (pthread_create(&w->thread, NULL, worker_main, w) == 0) {
			s->n_started++;
		} else {
			w->call = NULL;
			w = NULL;
		}
	}
	if (w) {
		w->call = c;
		pthread_cond_signal(&w->wake);
	}
	pthread_mutex_unlock(&s->lock);
	if (w)
		return;
	if (stopping) {
		call_reject(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
	} else {
		/* Not a warning: under overload this line comes once per refused call. */
		log_info("rpc: %s: all %u handlers busy, refusing a call from %s", c->method, s->max_calls, c->peer);
		call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "the server is busy");
	}
}

/* Asks grpc for one more call to method m; each outstanding request holds a call struct with its own queue. */
static int request_call(struct rpc_server *s, struct server_method *m)
{
	struct rpc_call *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->kind = TAG_CALL;
	c->server = s;
	c->handler = m;
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->request_md);
	grpc_call_error e;
	if (m->registered)
		e = grpc_server_request_registered_call(s->server, m->registered, &c->call, &c->registered_deadline,
							&c->request_md, &c->payload, c->cq, s->cq, c);
	else
		e = grpc_server_request_call(s->server, &c->call, &c->details, &c->request_md, c->cq, s->cq, c);
	if (e != GRPC_CALL_OK) {
		log_error("rpc: grpc_server_request_call: %s", grpc_call_error_to_string(e));
		call_free(c);
		return -EIO;
	}
	m->pending++;
	s->pending++;
	return 0;
}

/*
 * The dispatcher's loop. Returns once shutdown has completed and every
 * request came back. grace_ms counts from when the loop first sees the
 * shutdown; after it every call still running is cancelled.
 */
static void serve(struct rpc_server *s, unsigned grace_ms)
{
	bool shutdown_done = false, cancelled = false, stop_seen = false;
	gpr_timespec cancel_at = gpr_inf_future(GPR_CLOCK_MONOTONIC);
	gpr_timespec next_note = gpr_inf_future(GPR_CLOCK_MONOTONIC);
	while (!shutdown_done || s->pending > 0) {
		grpc_event ev = grpc_completion_queue_next(s->cq, rpc__deadline_ms(TICK_MS), NULL);
		pthread_mutex_lock(&s->lock);
		bool stopping = s->stopping;
		pthread_mutex_unlock(&s->lock);
		gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
		if (stopping && !stop_seen) {
			stop_seen = true;
			cancel_at = gpr_time_add(now, gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
			next_note = gpr_time_add(now, gpr_time_from_seconds(10, GPR_TIMESPAN));
		}
		if (stop_seen && !cancelled && gpr_time_cmp(now, cancel_at) >= 0) {
			grpc_server_cancel_all_calls(s->server);
			cancelled = true;
			if (s->on_cancel)
				s->on_cancel(s->userdata);
		}
		if (gpr_time_cmp(now, next_note) >= 0) {
			log_warn("rpc: shutdown is waiting for handlers to return");
			next_note = gpr_time_add(now, gpr_time_from_seconds(10, GPR_TIMESPAN));
		}
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (*(enum tag_kind *)ev.tag == TAG_SHUTDOWN) {
			shutdown_done = true;
			continue;
		}
		struct rpc_call *c = ev.tag;
		s->pending--;
		c->handler->pending--;
		if (!ev.success) {
			call_free(c);  /* a request that the shutdown cancelled */
			continue;
		}
		if (!stopping && c->handler->pending < PENDING_REQUESTS)
			request_call(s, c->handler);
		dispatch(s, c);
	}
}

/* After serve: waits for the handler threads, then takes grpc's objects apart. */
static void teardown(struct rpc_server *s)
{
	pthread_mutex_lock(&s->lock);
	s->workers_exit = true;
	for (unsigned i = 0; i < s->n_started; i++)
		pthread_cond_signal(&s->workers[i].wake);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->n_started; i++)
		pthread_join(s->workers[i].thread, NULL);

	pthread_mutex_lock(&s->lock);
	grpc_server_destroy(s->server);
	s->server = NULL;
	s->drained = true;
	pthread_mutex_unlock(&s->lock);
	grpc_completion_queue_shutdown(s->cq);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, rpc__deadline_ms(30000), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			log_error("rpc: the server's completion queue did not drain; leaking it");
			s->cq = NULL;
			return;
		}
	}
	grpc_completion_queue_destroy(s->cq);
	s->cq = NULL;
}

int rpc_server_run(struct rpc_server *s)
{
	pthread_mutex_lock(&s->lock);
	bool busy = s->running || s->drained;
	s->running = true;
	pthread_mutex_unlock(&s->lock);
	if (busy)
		return -EALREADY;
	/* The methods', then the catch-all's. */
	bool deaf = false;
	for (size_t m = 0; m <= s->n_methods && !deaf; m++) {
		for (int i = 0; i < PENDING_REQUESTS; i++)
			if (request_call(s, &s->methods[m]) < 0)
				break;
		deaf = s->methods[m].pending == 0;
	}
	if (deaf) {
		/* Without an outstanding request for a method its calls can never arrive: fail rather than sit
		 * deaf. */
		rpc_server_shutdown(s);
		serve(s, 0);
		teardown(s);
		return -EIO;
	}
	serve(s, s->grace_ms);
	teardown(s);
	return 0;
}

void rpc_server_shutdown(struct rpc_server *s)
{
	pthread_mutex_lock(&s->lock);
	if (!s->stopping && !s->drained) {
		s->stopping = true;
		/* Fails the outstanding requests at once, which wakes the dispatcher. */
		grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	}
	pthread_mutex_unlock(&s->lock);
}

int rpc_server_port(const struct rpc_server *s) { return s->port; }

static void server_free_memory(struct rpc_server *s)
{
	for (size_t i = 0; i < s->n_methods; i++)
		free(s->methods[i].name);
	free(s->methods);
	if (s->workers)
		for (unsigned i = 0; i < s->max_calls; i++)
			pthread_cond_destroy(&s->workers[i].wake);
	free(s->workers);
	free(s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void rpc_server_free(struct rpc_server *s)
{
	if (!s)
		return;
	if (!s->drained) {
		/* Never ran: nothing was requested, so only the shutdown tag is left to wait for. */
		rpc_server_shutdown(s);
		serve(s, 0);
		teardown(s);
	}
	server_free_memory(s);
}

static int server_alloc(const struct rpc_server_config *cfg, const struct rpc_method *methods, size_t n_methods,
			void *userdata, struct rpc_server **ret, struct error *err)
{
	unsigned max_calls = cfg->max_calls ? cfg->max_calls : RPC_DEFAULT_MAX_CALLS;
	if (max_calls > RPC_MAX_MAX_CALLS)
		return error_set(err, -EINVAL, "max_calls %u is over the limit of %u", max_calls, RPC_MAX_MAX_CALLS);
	struct rpc_server *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&s->lock, NULL);
	s->shutdown_tag = TAG_SHUTDOWN;
	s->max_calls = max_calls;
	s->grace_ms = cfg->shutdown_grace_ms;
	s->on_cancel = cfg->on_cancel;
	s->userdata = userdata;
	s->workers = calloc(max_calls, sizeof(*s->workers));
	s->idle = calloc(max_calls, sizeof(*s->idle));
	s->methods = calloc(n_methods + 1, sizeof(*s->methods));  /* and the catch-all, all zero */
	if (!s->workers || !s->idle || !s->methods) {
		free(s->workers);
		s->workers = NULL;
		server_free_memory(s);
		return error_set(err, -ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < max_calls; i++) {
		s->workers[i].server = s;
		pthread_cond_init(&s->workers[i].wake, NULL);
	}
	for (size_t i = 0; i < n_methods; i++) {
		if (!methods[i].name || methods[i].name[0] != '/' || !methods[i].handler) {
			server_free_memory(s);
			return error_set(err, -EINVAL,
					 "method %zu needs a name \"/package.Service/Method\" and a handler", i);
		}
		s->methods[i].handler = methods[i].handler;
		s->methods[i].unary = methods[i].unary;
		s->methods[i].name = strdup(methods[i].name);
		s->n_methods = i + 1;
		if (!s->methods[i].name) {
			server_free_memory(s);
			return error_set(err, -ENOMEM, "out of memory");
		}
	}
	*ret = s;
	return 0;
}

int rpc_server_new(const struct rpc_server_config *cfg, const struct rpc_method *methods, size_t n_methods,
		   void *userdata, struct rpc_server **ret, struct error *err)
{
	if (!cfg->listen || !*cfg->listen)
		return error_set(err, -EINVAL, "no listen address");
	size_t max_message = cfg->max_message ? cfg->max_message : RPC_DEFAULT_MAX_MESSAGE;
	if (max_message > RPC_MAX_MAX_MESSAGE)
		return error_set(err, -EINVAL, "max_message %zu is over the limit of %zu", max_message,
				 RPC_MAX_MAX_MESSAGE);
	grpc_server_credentials *creds;
	if (cfg->cert_pem) {
		int r = rpc__tls_server_credentials(cfg->cert_pem, cfg->key_pem, &creds, err);
		if (r < 0)
			return r;
	} else {
		creds = grpc_insecure_server_credentials_create();
	}
	struct rpc_server *s = NULL;
	int r = server_alloc(cfg, methods, n_methods, userdata, &s, err);
	if (r < 0) {
		grpc_server_credentials_release(creds);
		return r;
	}

	/* Streams that wait for their first message hold no thread but do hold grpc's memory (up to
	 * max_message each): one connection gets a bounded number. Above it a grpc client queues its calls
	 * until a stream is free. */
	unsigned streams = s->max_calls * 2 > RPC_MIN_STREAMS_PER_CONNECTION ? s->max_calls * 2 :
									       RPC_MIN_STREAMS_PER_CONNECTION;
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = (int)max_message },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS, .value.integer = (int)streams },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
		  .value.integer = RPC_HANDSHAKE_TIMEOUT_MS },
	};
	grpc_channel_args server_args = { .num_args = ARRAY_SIZE(args), .args = args };
	s->server = grpc_server_create(&server_args, NULL);
	s->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	const char *failed = NULL;
	for (size_t i = 0; i < s->n_methods && !failed; i++) {
		/* With its first message: grpc reports the call only once that is read (or the client half-closed
		 * without one), so no handler thread waits for it. */
		s->methods[i].registered = grpc_server_register_method(s->server, s->methods[i].name, NULL,
								       GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
		if (!s->methods[i].registered)
			failed = s->methods[i].name;  /* grpc refuses a name registered twice */
	}
	s->port = failed ? 0 : grpc_server_add_http2_port(s->server, cfg->listen, creds);
	grpc_server_credentials_release(creds);
	if (s->port == 0) {
		/* Not started and without listeners, the server may be destroyed directly. */
		grpc_server_destroy(s->server);
		grpc_completion_queue_shutdown(s->cq);
		grpc_event ev;
		do
			ev = grpc_completion_queue_next(s->cq, rpc__deadline_ms(5000), NULL);
		while (ev.type == GRPC_OP_COMPLETE);
		grpc_completion_queue_destroy(s->cq);
		if (failed)
			r = error_set(err, -EINVAL, "cannot register method %s (listed twice?)", failed);
		else
			r = error_set(err, -EADDRNOTAVAIL, "cannot listen on %s", cfg->listen);
		server_free_memory(s);
		return r;
	}
	/* grpc reports 1 for a unix socket; there is no port to tell. */
	if (strncmp(cfg->listen, "unix:", 5) == 0)
		s->port = 0;
	grpc_server_start(s->server);
	*ret = s;
	return 0;
}
