/*
 * What the client and the server of src/rpc share: process-wide start-up
 * (grpc_init, the TLS 1.3 policy, grpc's log lines into log.h), bounded
 * waits on per-call completion queues, and the copies between grpc byte
 * buffers and capped struct bufs. Every call here has its own pluck queue,
 * so one thread's wait never sees another thread's events; the price is a
 * small allocation per call, which is nothing next to a network round trip.
 */
#define RPC_INTERNAL
#include "rpc.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "log.h"

/* How long a cancelled batch gets to come back, and an emptied queue to report its shutdown. */
#define REAP_MAX_MS 30000

gpr_timespec rpc__deadline_ms(int64_t ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int rpc__wait(grpc_completion_queue *cq, grpc_call *call, void *tag, gpr_timespec deadline)
{
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, deadline, NULL);
	if (ev.type == GRPC_OP_COMPLETE)
		return ev.success ? 1 : 0;
	/* Only our wait timed out: the batch still belongs to grpc until it comes back, which cancelling makes
	 * happen at once. */
	grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED, "hpcc: wait timed out", NULL);
	ev = grpc_completion_queue_pluck(cq, tag, rpc__deadline_ms(REAP_MAX_MS), NULL);
	if (ev.type == GRPC_OP_COMPLETE)
		return -ETIMEDOUT;
	log_error("rpc: a cancelled grpc batch did not complete in %d ms; leaking its call", REAP_MAX_MS);
	return -EDEADLK;
}

void rpc__queue_destroy(grpc_completion_queue *cq)
{
	if (!cq)
		return;
	grpc_completion_queue_shutdown(cq);
	/* grpc may still be counting the last reaped event as pending for a moment: pluck until it reports the
	 * shutdown, as grpc's own tests do. Any tag will do since nothing else is queued. */
	grpc_event ev = grpc_completion_queue_pluck(cq, NULL, rpc__deadline_ms(REAP_MAX_MS), NULL);
	if (ev.type != GRPC_QUEUE_SHUTDOWN) {
		log_error("rpc: a completion queue did not drain in %d ms; leaking it", REAP_MAX_MS);
		return;
	}
	grpc_completion_queue_destroy(cq);
}

grpc_byte_buffer *rpc__byte_buffer(const void *data, size_t n)
{
	grpc_slice slice = grpc_slice_from_copied_buffer(data, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

int rpc__byte_buffer_read(grpc_byte_buffer *bb, struct buf *b)
{
	buf_reset(b);
	/* The reader undoes any compression, so the length on the wire says nothing about the size here: the
	 * cap is checked on every slice instead. */
	grpc_byte_buffer_reader reader;
	if (!grpc_byte_buffer_reader_init(&reader, bb))
		return -EBADMSG;
	int r = 0;
	grpc_slice slice;
	while (grpc_byte_buffer_reader_next(&reader, &slice)) {
		if (r == 0)
			r = buf_append(b, GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice));
		grpc_slice_unref(slice);
	}
	grpc_byte_buffer_reader_destroy(&reader);
	if (r == 0 && !b->data)
		r = buf_append(b, "", 0);  /* an empty message still reads as "" */
	return r;
}

void rpc__status_set(struct rpc_status *st, int code, const grpc_slice *details, const char *text)
{
	st->code = code;
	size_t n = 0;
	const char *p = text ? text : "";
	if (details) {
		p = (const char *)GRPC_SLICE_START_PTR(*details);
		n = GRPC_SLICE_LENGTH(*details);
	} else {
		n = strlen(p);
	}
	if (n > sizeof(st->msg) - 1)
		n = sizeof(st->msg) - 1;
	memcpy(st->msg, p, n);
	st->msg[n] = '\0';
	/* The details come from the peer: keep them to one printable line. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)st->msg[i] < 0x20 || st->msg[i] == 0x7f)
			st->msg[i] = ' ';
}

/* grpc writes its own diagnostics to stderr; a library must not, so they go where ours go. */
static void grpc_log_to_ours(gpr_log_func_args *args)
{
	enum log_level level = LOG_DEBUG;
	if (args->severity == GPR_LOG_SEVERITY_ERROR)
		level = LOG_WARN;  /* grpc calls every failed handshake an error */
	else if (args->severity == GPR_LOG_SEVERITY_INFO)
		level = LOG_INFO;
	log_msg(level, "grpc: %s:%d: %s", args->file, args->line, args->message);
}

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_policy_once(void)
{
	if (rpc__tls_require_13() < 0)
		log_error("rpc: cannot restrict TLS to version 1.3; TLS servers and channels will refuse to start");
}

void rpc_global_init(void)
{
	/* Before grpc_init, so that grpc never makes a TLS context under the default policy. */
	pthread_once(&tls_once, tls_policy_once);
	gpr_set_log_function(grpc_log_to_ours);
	grpc_init();
}

void rpc_global_shutdown(void)
{
	/* The blocking variant: when it returns grpc's threads are gone, so nothing of grpc's is left for a
	 * leak checker at exit. */
	grpc_shutdown_blocking();
}
