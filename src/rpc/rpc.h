/*
 * A small, blocking wrapper over the grpc C core: a server whose handlers run
 * on their own threads and read and write messages with plain calls, and a
 * client channel for unary and client-streaming calls. Messages are opaque
 * bytes (the callers pack them with protobuf-c); status codes are grpc's
 * (GRPC_STATUS_*). TLS is a self-signed server certificate that clients pin
 * by its SHA-256; there is no CA. Every wait here has a deadline, and every
 * received message a cap. See docs/rpc.md for the threading model.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "buf.h"
#include "error.h"

/* Defaults for zero fields in the configs below. */
#define RPC_DEFAULT_MAX_CALLS 64u
#define RPC_DEFAULT_MAX_MESSAGE ((size_t)4 << 20)  /* grpc's own default */
#define RPC_MAX_MAX_CALLS 4096u
#define RPC_MAX_MAX_MESSAGE ((size_t)1 << 30)      /* grpc takes the cap as an int */
/* The longest a handler waits for a client's next message (a stream's second and later ones; the first
 * comes with the call): an idle client must not hold one of the max_calls handlers for long. */
#define RPC_IDLE_MAX_MS (30 * 1000)
/* HTTP/2 streams (calls) one connection may have open at once: at least this many, and at least twice
 * max_calls, so that one client with more calls than max_calls in flight still gets the quick "busy" for
 * the extra ones rather than waiting in its own grpc queue. */
#define RPC_MIN_STREAMS_PER_CONNECTION 100u
/* A connection that has not finished its TLS and HTTP/2 handshake by then is closed (grpc's default is
 * 120 s): many idle sockets that never speak cost one fd each for this long only. Not shorter: with 400
 * compiles on two cores a genuine client's handshake took 13 s (bench/load.sh), and a 10 s deadline
 * turned it away. */
#define RPC_HANDSHAKE_TIMEOUT_MS (30 * 1000)
/* A channel whose server went away tries again at least this often. */
#define RPC_MAX_RECONNECT_BACKOFF_MS 10000

struct rpc_status {
	int code;       /* GRPC_STATUS_* */
	char msg[256];  /* the status details, truncated */
};

/* ---- server ---- */
struct rpc_server;
struct rpc_call;  /* one incoming call, handled on its own thread */
typedef void (*rpc_handler_fn)(struct rpc_call *call, void *userdata);
/*
 * Every method's first request message comes with the call: grpc reads it (capped by max_message) before
 * the call is handed to a handler thread, so a client that opens calls and sends nothing holds no thread.
 * unary: the client sends exactly one message; rpc_call_recv returns it, then 0 without waiting for the
 * client's half-close. false (the default) is a client stream: after the first message rpc_call_recv
 * waits for the next ones, at most RPC_IDLE_MAX_MS each. false is always correct (a streaming method serves
 * a unary client just as well); true on a streaming method would cut its stream after one message.
 */
struct rpc_method {
	const char *name;  /* "/hpcc.v1.WorkerService/Probe" */
	rpc_handler_fn handler;
	bool unary;
};
struct rpc_server_config {
	const char *listen;    /* "127.0.0.1:0", "[::]:7070", "unix:/path" */
	const char *cert_pem;  /* server certificate chain, PEM text (not a path); NULL = insecure (tests only) */
	const char *key_pem;   /* its private key, PEM text */
	/* calls handled at once (0: RPC_DEFAULT_MAX_CALLS); more are answered RESOURCE_EXHAUSTED */
	unsigned max_calls;
	size_t max_message;  /* cap on one received message (0: RPC_DEFAULT_MAX_MESSAGE) */
	/* after rpc_server_shutdown, running calls get this long before they are cancelled (0: none) */
	unsigned shutdown_grace_ms;
	/* Optional: called (on the serving thread) when the grace period is
	 * over and the calls are cancelled, so that handlers blocked in long
	 * work (a compile in a VM) can be made to return. */
	void (*on_cancel)(void *userdata);
};
/* The server listens once this returns (calls wait in grpc's queue until rpc_server_run). */
int rpc_server_new(const struct rpc_server_config *cfg, const struct rpc_method *methods, size_t n_methods,
		   void *userdata, struct rpc_server **ret, struct error *err);
int rpc_server_port(const struct rpc_server *s);  /* the bound TCP port (listen port 0 picks one); 0 for unix: */
/* Serves until rpc_server_shutdown; returns 0 after every handler finished. Call it once. */
int rpc_server_run(struct rpc_server *s);
/* From any thread, any number of times, before, during or after rpc_server_run (not from a signal handler). */
void rpc_server_shutdown(struct rpc_server *s);
/* Shuts down first if that was not done; must not run while rpc_server_run does. */
void rpc_server_free(struct rpc_server *s);

/*
 * In a handler, which owns its call until it returns; the calls are not for
 * other threads. Each returns 0 (or 1) on success or a negative errno:
 * -ECANCELED when the call was cancelled (by the client, by the server's
 * shutdown, or by grpc because a message was over the server's cap: the
 * client then gets RESOURCE_EXHAUSTED), -ETIMEDOUT past the client's
 * deadline, -EPIPE after rpc_call_finish. After those the call is dead: just
 * return (or finish it, which changes nothing for a client that is gone).
 * -EFBIG from rpc_call_recv (a message over msg->max) leaves the call alive;
 * finish it with RESOURCE_EXHAUSTED.
 */
/* 1 and a message in *msg (reset first; capped by msg->max), 0 at the end of the client's stream, <0 on error. */
int rpc_call_recv(struct rpc_call *c, struct buf *msg);
int rpc_call_send(struct rpc_call *c, const void *data, size_t n);  /* one response message */
/* Status; after this the call is done. Past the deadline it sends DEADLINE_EXCEEDED instead, returns -ETIMEDOUT. */
int rpc_call_finish(struct rpc_call *c, int code, const char *msg);
/*
 * The one response message and the OK status in a single batch (one write instead of two): what
 * rpc_call_send then rpc_call_finish(c, GRPC_STATUS_OK, NULL) do, for a unary or client-streaming handler's
 * answer. After it the call is done. Past the deadline, or on a dead call, the message is not sent, the
 * status is as rpc_call_finish would send it, and the return is -ETIMEDOUT or -ECANCELED. Out of memory
 * for the message: RESOURCE_EXHAUSTED is sent instead, -ENOMEM returned.
 */
int rpc_call_reply(struct rpc_call *c, const void *data, size_t n);
const char *rpc_call_method(const struct rpc_call *c);
const char *rpc_call_peer(const struct rpc_call *c);
/* Milliseconds left before the client's deadline (0 once past, INT64_MAX if none). */
int64_t rpc_call_time_left_ms(const struct rpc_call *c);
/* True once the client cancelled or went away, the deadline passed, or the server's shutdown cancelled the
 * call (after the grace period): a long handler polls this between steps and gives up. Cheap (no wait). */
bool rpc_call_cancelled(struct rpc_call *c);
/* If a handler returns without finishing, the server finishes the call with INTERNAL. */

/* ---- client ---- */
struct rpc_channel;
struct rpc_channel_config {
	const char *target;  /* "host:port" */
	const char *pin;     /* "sha256:<hex>" of the server certificate's DER; NULL = insecure channel (tests only) */
	size_t max_message;  /* cap on a message received, and on one sent (0: RPC_DEFAULT_MAX_MESSAGE) */
};
int rpc_channel_new(const struct rpc_channel_config *cfg, struct rpc_channel **ret, struct error *err);
void rpc_channel_free(struct rpc_channel *ch);
/* Starts connecting (TCP and the TLS handshake) in the background, so that
 * the first call does not wait for them; returns at once. */
void rpc_channel_connect(struct rpc_channel *ch);
/*
 * Unary call. Returns 0 when the call completed (then look at st->code;
 * GRPC_STATUS_OK means *reply holds the response), <0 for a local failure
 * (-EINVAL for timeout_ms <= 0, -EFBIG for a reply over reply->max, -ENOMEM).
 * The channel is thread-safe: several threads call at once. A server that
 * cannot be reached gives UNAVAILABLE at once; calls do not wait for it.
 */
int rpc_unary(struct rpc_channel *ch, const char *method, const void *req, size_t n, int timeout_ms,
	      struct buf *reply, struct rpc_status *st);
/*
 * Client streaming: open, send N messages, finish (half-close, read the one
 * reply and the status). rpc_stream_send returns -EPIPE once the call is dead
 * (refused, cancelled, past its deadline); rpc_stream_finish then says why.
 * rpc_stream_finish has the return convention of rpc_unary. One stream is
 * used by one thread at a time.
 */
struct rpc_stream;
int rpc_stream_open(struct rpc_channel *ch, const char *method, int timeout_ms, struct rpc_stream **ret);
int rpc_stream_send(struct rpc_stream *s, const void *data, size_t n);
int rpc_stream_finish(struct rpc_stream *s, struct buf *reply, struct rpc_status *st);
void rpc_stream_free(struct rpc_stream *s);  /* cancels if not finished */

/*
 * Process-wide. rpc_global_init: call once before anything else here, and
 * before any other code of the process makes an OpenSSL TLS context (it
 * restricts every TLS context of the process to TLS 1.3, see docs/rpc.md);
 * it also sends grpc's own log lines to log.h. rpc_global_shutdown at exit.
 */
void rpc_global_init(void);
void rpc_global_shutdown(void);

#ifdef RPC_INTERNAL
/* ---- shared by the files of src/rpc only (the rpc__ names) ---- */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

/* Slack past a call's deadline before our own wait gives up: grpc's deadline timer fires first. */
#define RPC__DEADLINE_SLACK_MS 5000

gpr_timespec rpc__deadline_ms(int64_t ms);  /* now + ms on the monotonic clock */
/*
 * Waits on a pluck queue for the batch tagged tag. 1: it succeeded, 0: it
 * failed. When deadline passes, cancels the call, reaps the batch and
 * returns -ETIMEDOUT; -EDEADLK if even then it did not come back (the call
 * and queue must then be leaked rather than destroyed under grpc's feet).
 */
int rpc__wait(grpc_completion_queue *cq, grpc_call *call, void *tag, gpr_timespec deadline);
/* Shuts down a pluck queue whose batches were all reaped, drains it and destroys it. */
void rpc__queue_destroy(grpc_completion_queue *cq);
grpc_byte_buffer *rpc__byte_buffer(const void *data, size_t n);  /* NULL if out of memory */
/* Appends the whole message to b (reset first): -EFBIG past b's cap. */
int rpc__byte_buffer_read(grpc_byte_buffer *bb, struct buf *b);
void rpc__status_set(struct rpc_status *st, int code, const grpc_slice *details, const char *text);

/* rpc_tls.c */
int rpc__tls_server_credentials(const char *cert_pem, const char *key_pem, grpc_server_credentials **ret,
				struct error *err);
int rpc__tls_channel_credentials(const char *pin, grpc_channel_credentials **ret, struct error *err);
/* Restricts every OpenSSL TLS context made from now on in this process to TLS 1.3. */
int rpc__tls_require_13(void);
#endif
