/*
 * The client side of src/rpc: channels, unary calls and client-streaming
 * calls, all blocking. A channel is shared by any number of threads; each
 * call gets its own pluck completion queue, so a thread waits only for its
 * own batches. The state a batch writes into lives on the heap, not on the
 * stack, so that in the should-never-happen case where a cancelled batch
 * does not come back we can leak it instead of letting grpc write into a
 * dead stack frame later.
 */
#define RPC_INTERNAL
#include "rpc.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "log.h"

struct rpc_channel {
	grpc_channel *channel;
};

/* What a call's final batch fills in: the reply, the status and the metadata we do not use. */
struct call_result {
	grpc_metadata_array initial_md;
	grpc_metadata_array trailing_md;
	grpc_byte_buffer *reply;
	grpc_status_code status;
	grpc_slice details;
	const char *error_string;
};

struct rpc_stream {
	grpc_completion_queue *cq;
	grpc_call *call;
	gpr_timespec deadline;
	bool sent_initial;  /* initial metadata goes with the first batch that sends anything */
	bool dead;          /* a send failed: the call is over, only the status is left to read */
	bool finished;
	bool leaked;        /* a batch never came back: nothing may be freed */
	struct call_result res;
	char send_tag, close_tag, recv_tag;  /* their addresses tag the batches */
};

int rpc_channel_new(const struct rpc_channel_config *cfg, struct rpc_channel **ret, struct error *err)
{
	if (!cfg->target || !*cfg->target)
		return error_set(err, -EINVAL, "no target for the channel");
	size_t max = cfg->max_message ? cfg->max_message : RPC_DEFAULT_MAX_MESSAGE;
	if (max > RPC_MAX_MAX_MESSAGE)
		return error_set(err, -EINVAL, "max_message %zu is over the limit of %zu", max, RPC_MAX_MAX_MESSAGE);

	grpc_channel_credentials *creds;
	if (cfg->pin) {
		int r = rpc__tls_channel_credentials(cfg->pin, &creds, err);
		if (r < 0)
			return r;
	} else {
		creds = grpc_insecure_credentials_create();
	}
	struct rpc_channel *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		grpc_channel_credentials_release(creds);
		return error_set(err, -ENOMEM, "out of memory");
	}
	/* The same cap both ways: a message we would refuse to receive we also refuse to send. grpc's reconnect
	 * backoff grows to two minutes by default, during which every call fails at once; a worker that
	 * restarts should be usable again within seconds. */
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = (int)max },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
		  .value.integer = (int)max },
		{ .type = GRPC_ARG_INTEGER,
		  .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
		  .value.integer = RPC_MAX_RECONNECT_BACKOFF_MS },
	};
	grpc_channel_args channel_args = { .num_args = ARRAY_SIZE(args), .args = args };
	/* Never NULL: a bad target gives a channel whose calls all fail, with the reason in their status. */
	ch->channel = grpc_channel_create(cfg->target, creds, &channel_args);
	grpc_channel_credentials_release(creds);
	*ret = ch;
	return 0;
}

void rpc_channel_connect(struct rpc_channel *ch)
{
	if (ch)
		(void)grpc_channel_check_connectivity_state(ch->channel, 1);
}

void rpc_channel_free(struct rpc_channel *ch)
{
	if (!ch)
		return;
	grpc_channel_destroy(ch->channel);
	free(ch);
}

static grpc_call *call_create(struct rpc_channel *ch, const char *method, grpc_completion_queue *cq,
			      gpr_timespec deadline)
{
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline,
						   NULL);
	grpc_slice_unref(m);
	return call;
}

/* The three receiving ops of a call's end, into res. */
static size_t result_ops(struct call_result *res, grpc_op *ops)
{
	grpc_metadata_array_init(&res->initial_md);
	grpc_metadata_array_init(&res->trailing_md);
	res->details = grpc_empty_slice();
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &res->initial_md;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &res->reply;
	ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[2].data.recv_status_on_client.trailing_metadata = &res->trailing_md;
	ops[2].data.recv_status_on_client.status = &res->status;
	ops[2].data.recv_status_on_client.status_details = &res->details;
	ops[2].data.recv_status_on_client.error_string = &res->error_string;
	return 3;
}

static void result_free(struct call_result *res)
{
	grpc_metadata_array_destroy(&res->initial_md);
	grpc_metadata_array_destroy(&res->trailing_md);
	if (res->reply)
		grpc_byte_buffer_destroy(res->reply);
	grpc_slice_unref(res->details);
	gpr_free((void *)res->error_string);
	memset(res, 0, sizeof(*res));
}

/* Turns a completed call's result into *st and *reply; the return value follows rpc_unary's convention. */
static int result_take(struct call_result *res, struct buf *reply, struct rpc_status *st)
{
	rpc__status_set(st, res->status, &res->details, NULL);
	if (res->status != GRPC_STATUS_OK)
		return 0;
	if (!res->reply) {
		/* OK without a message: an empty reply, still a valid C string like every other. */
		buf_reset(reply);
		return buf_append(reply, "", 0);
	}
	int r = rpc__byte_buffer_read(res->reply, reply);
	if (r < 0)
		rpc__status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "the reply is larger than the buffer's cap");
	return r;
}

struct unary_state {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_byte_buffer *request;
	struct call_result res;
};

int rpc_unary(struct rpc_channel *ch, const char *method, const void *req, size_t n, int timeout_ms,
	      struct buf *reply, struct rpc_status *st)
{
	if (!ch || !method || timeout_ms <= 0)
		return -EINVAL;
	gpr_timespec deadline = rpc__deadline_ms(timeout_ms);
	struct unary_state *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->cq = grpc_completion_queue_create_for_pluck(NULL);
	u->call = call_create(ch, method, u->cq, deadline);
	u->request = rpc__byte_buffer(req, n);
	if (!u->request) {
		grpc_call_unref(u->call);
		rpc__queue_destroy(u->cq);
		free(u);
		return -ENOMEM;
	}

	grpc_op ops[6] = { 0 };
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = u->request;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	size_t n_ops = 3 + result_ops(&u->res, ops + 3);
	int r;
	grpc_call_error e = grpc_call_start_batch(u->call, ops, n_ops, u, NULL);
	if (e != GRPC_CALL_OK) {
		log_error("rpc: grpc_call_start_batch: %s", grpc_call_error_to_string(e));
		r = -EIO;
	} else {
		/* A batch with RECV_STATUS_ON_CLIENT always succeeds; what happened is in the status. */
		r = rpc__wait(u->cq, u->call, u, gpr_time_add(deadline, gpr_time_from_millis(RPC__DEADLINE_SLACK_MS,
												  GPR_TIMESPAN)));
		if (r == -EDEADLK)
			return r;  /* u is leaked on purpose, see the top of the file */
		r = result_take(&u->res, reply, st);
	}
	grpc_byte_buffer_destroy(u->request);
	result_free(&u->res);
	grpc_call_unref(u->call);
	rpc__queue_destroy(u->cq);
	free(u);
	return r;
}

int rpc_stream_open(struct rpc_channel *ch, const char *method, int timeout_ms, struct rpc_stream **ret)
{
	if (!ch || !method || timeout_ms <= 0)
		return -EINVAL;
	struct rpc_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	gpr_timespec deadline = rpc__deadline_ms(timeout_ms);
	s->deadline = gpr_time_add(deadline, gpr_time_from_millis(RPC__DEADLINE_SLACK_MS, GPR_TIMESPAN));
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->call = call_create(ch, method, s->cq, deadline);
	/* Nothing goes out yet: the initial metadata rides with the first message, saving a wait. */
	*ret = s;
	return 0;
}

/* Starts ops (after the initial metadata if it is still due) and waits: 1 done, 0 failed, <0 our error. */
static int stream_batch(struct rpc_stream *s, grpc_op *ops, size_t n_ops, void *tag)
{
	grpc_op all[3] = { 0 };
	size_t n = 0;
	if (!s->sent_initial)
		all[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	memcpy(all + n, ops, n_ops * sizeof(*ops));
	n += n_ops;
	grpc_call_error e = grpc_call_start_batch(s->call, all, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		log_error("rpc: grpc_call_start_batch: %s", grpc_call_error_to_string(e));
		return -EIO;
	}
	s->sent_initial = true;
	int r = rpc__wait(s->cq, s->call, tag, s->deadline);
	if (r == -EDEADLK)
		s->leaked = true;
	return r;
}

int rpc_stream_send(struct rpc_stream *s, const void *data, size_t n)
{
	if (s->finished || s->leaked)
		return -EINVAL;
	if (s->dead)
		return -EPIPE;
	grpc_byte_buffer *bb = rpc__byte_buffer(data, n);
	if (!bb)
		return -ENOMEM;
	grpc_op op = { .op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb };
	int r = stream_batch(s, &op, 1, &s->send_tag);
	if (s->leaked)
		return -EDEADLK;  /* and bb with it: grpc may still read it */
	grpc_byte_buffer_destroy(bb);
	if (r == 1)
		return 0;
	/* Refused, cancelled or past the deadline: the status, read by rpc_stream_finish, says which. */
	s->dead = true;
	return r < 0 && r != -ETIMEDOUT ? r : -EPIPE;
}

int rpc_stream_finish(struct rpc_stream *s, struct buf *reply, struct rpc_status *st)
{
	if (s->finished || s->leaked)
		return -EINVAL;
	s->finished = true;
	grpc_op ops[3] = { 0 };
	size_t n_ops = result_ops(&s->res, ops);
	grpc_call_error e = grpc_call_start_batch(s->call, ops, n_ops, &s->recv_tag, NULL);
	if (e != GRPC_CALL_OK) {
		log_error("rpc: grpc_call_start_batch: %s", grpc_call_error_to_string(e));
		return -EIO;
	}
	if (!s->dead) {
		/* Half-close. Its own batch, so that its failure cannot hide the status. */
		grpc_op close = { .op = GRPC_OP_SEND_CLOSE_FROM_CLIENT };
		if (stream_batch(s, &close, 1, &s->close_tag) == -EDEADLK)
			return -EDEADLK;
	}
	int r = rpc__wait(s->cq, s->call, &s->recv_tag, s->deadline);
	if (r == -EDEADLK) {
		s->leaked = true;
		return r;
	}
	return result_take(&s->res, reply, st);
}

void rpc_stream_free(struct rpc_stream *s)
{
	if (!s)
		return;
	if (s->leaked) {
		log_error("rpc: leaking a stream whose batch never completed");
		return;
	}
	/* Every batch was reaped before its function returned, so after the cancel nothing is in flight. */
	if (!s->finished)
		grpc_call_cancel(s->call, NULL);
	grpc_call_unref(s->call);
	rpc__queue_destroy(s->cq);
	result_free(&s->res);
	free(s);
}
