/*
 * The host end of one VM's agent stream (DESIGN §7): AgentFrame messages in
 * gRPC length-prefixed frames over one connected byte stream (QEMU's
 * virtio-serial socket, or Firecracker's vsock socket after its CONNECT
 * handshake). Several execs share the stream; each waits for its own
 * frames, which one reader thread sorts by exec id.
 *
 * Everything the guest sends is hostile. Any frame that breaks the
 * protocol (does not decode, carries unknown fields, names an exec that is
 * not waiting, arrives out of order, exceeds a size that the host asked
 * for, names a file that was not requested, lies about a size) breaks the
 * whole connection: every waiting exec fails with -EPROTO and the caller
 * (the VM pool) tears the VM down. A guest can never make the host hold
 * more than the caps that the host itself set per exec.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define AGENT_CHUNK_MAX (1u << 20)   /* data bytes per FileChunk frame, both ways */
#define AGENT_HELLO_VERSION_MAX 64

struct agent_conn;

struct agent_hello_info {
	char version[AGENT_HELLO_VERSION_MAX + 1];
	unsigned vcpus;
};

struct agent_input {
	const char *path;       /* relative to the staging dir: "root/..." */
	const void *data;
	size_t size;
	bool executable;
};

struct agent_exec_request {
	const char *const *argv;     /* NULL-terminated */
	const char *const *env;      /* NULL-terminated or NULL */
	const char *staging;         /* absolute staging dir (holds root/ and tmp/) */
	const char *cwd;             /* relative to <staging>/root */
	unsigned timeout_ms;         /* > 0 */
	size_t max_output;           /* stdout + stderr + output files */
	const char *const *outputs;  /* "root/..." or "tmp/...", NULL-terminated */
	const struct agent_input *inputs;
	size_t n_inputs;
};

struct agent_output_file {
	char *path;  /* one of the requested outputs */
	struct buf data;
};

struct agent_exec_reply {
	int exit_code;
	bool timed_out, output_truncated;
	int64_t duration_us;       /* as the guest measured it */
	char *error;               /* the agent could not run the command (NULL if it ran) */
	struct buf out, err;
	struct agent_output_file *files;
	size_t n_files;
};

void agent_exec_reply_free(struct agent_exec_reply *r);

/* Takes ownership of fd (a connected stream) and waits up to
 * hello_timeout_ms for the agent's hello, which must be the first frame and
 * report network_ok. Starts the reader thread. */
int agent_conn_open(int fd, int hello_timeout_ms, struct agent_conn **ret, struct agent_hello_info *ret_hello,
		    struct error *err);

/* Runs one exec: sends its header and inputs, waits for its result and
 * outputs. 0 when the agent answered (whatever the compiler's exit code,
 * or an agent-side error in reply->error); -EPROTO/-EPIPE when the
 * connection broke (the VM must go), -ETIMEDOUT when the guest did not
 * take the request or answer within timeout_ms plus a margin (the
 * connection is then marked broken: a guest that ignores its own deadline
 * is hung, and the VM goes), -EINVAL when the request cannot be sent at
 * all (the stream stays usable). *ret is written only on 0. Thread-safe. */
int agent_conn_exec(struct agent_conn *c, const struct agent_exec_request *rq, struct agent_exec_reply *ret,
		    struct error *err);

/* Extra time, beyond an exec's own timeout, before a silent guest counts
 * as hung (default 15 s; TCG guests are slower to report a timeout). */
void agent_conn_set_margin(struct agent_conn *c, unsigned margin_ms);

/* True once the connection broke; *why (if not NULL) says why. */
bool agent_conn_broken(struct agent_conn *c, char *why, size_t why_len);

/* Shuts the stream down, fails every waiting exec, joins the reader and
 * frees. Accepts NULL. No exec may still be inside agent_conn_exec. */
void agent_conn_close(struct agent_conn *c);
/* Shuts the stream down without freeing (wakes the reader and waiters). */
void agent_conn_shutdown(struct agent_conn *c);
