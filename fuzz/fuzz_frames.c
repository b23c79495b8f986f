/*
 * The guest-to-host byte stream of the agent protocol: the input is
 * everything a guest writes to the host. The host end (src/worker/
 * agent_conn.c) reads it on a socketpair as it reads a VM's vsock:
 * agent_conn_open takes the hello frame (frame_decoder, src/common/
 * frame.c), then one agent_conn_exec sends its header and the reader
 * thread (frame_read, the AgentFrame decode, accept_frame) files the rest
 * of the stream under that exec until it completes or the stream breaks.
 * An accepted reply is checked against what the host promises (requested
 * files only, once each, max_output in all). The same bytes also go
 * through frame_decoder_feed in uneven pieces, each frame decoded as an
 * AgentFrame.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "agent_conn.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct guest {
	int fd;
	const uint8_t *data;
	size_t size, hello_len;
};

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* The guest: its hello alone, then (once the host's exec header has
 * arrived, so that the exec is waiting) the rest of the stream. */
static void *guest_main(void *arg)
{
	struct guest *g = arg;
	send_all(g->fd, g->data, g->hello_len);
	if (g->hello_len < g->size) {
		uint8_t *body = NULL;
		size_t len = 0;
		if (frame_read(g->fd, FRAME_MAX_DEFAULT, &body, &len) == 0) {
			free(body);
			send_all(g->fd, g->data + g->hello_len, g->size - g->hello_len);
		}
	}
	shutdown(g->fd, SHUT_WR);
	/* Drain until the host closes its end. */
	uint8_t tmp[4096];
	while (read(g->fd, tmp, sizeof(tmp)) > 0)
		;
	return NULL;
}

/* What the host promises its callers about an accepted reply: requested
 * files only, each once, and no more bytes in all than max_output. */
static void check_reply(const struct agent_exec_request *rq, const struct agent_exec_reply *reply)
{
	size_t total = reply->out.len + reply->err.len;
	for (size_t i = 0; i < reply->n_files; i++) {
		size_t k = 0;
		while (rq->outputs[k] && strcmp(rq->outputs[k], reply->files[i].path) != 0)
			k++;
		if (!rq->outputs[k])
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(reply->files[j].path, reply->files[i].path) == 0)
				abort();
		total += reply->files[i].data.len;
	}
	if (total > rq->max_output || reply->exit_code < 0 || reply->exit_code > 255 + 128)
		abort();
}

static void run_host(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	struct guest g = { .fd = sv[1], .data = data, .size = size, .hello_len = size };
	if (size >= FRAME_HEADER_LEN) {
		size_t body = (size_t)data[1] << 24 | (size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4];
		if (body <= size - FRAME_HEADER_LEN)
			g.hello_len = FRAME_HEADER_LEN + body;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, guest_main, &g) != 0) {
		close(sv[0]);
		close(sv[1]);
		return;
	}
	struct agent_conn *c = NULL;
	struct agent_hello_info hello;
	struct error err = { 0 };
	if (agent_conn_open(sv[0], 2000, &c, &hello, &err) == 0) {
		agent_conn_set_margin(c, 0);
		static const char *const argv[] = { "cc", "-c", "a.c", NULL };
		static const char *const outputs[] = { "root/a.o", "tmp/deps.d", "root/a.dwo", NULL };
		struct agent_exec_request rq = {
			.argv = argv,
			.staging = "/staging",
			.cwd = "",
			.timeout_ms = 2000,
			.max_output = 1 << 16,
			.outputs = outputs,
		};
		struct agent_exec_reply reply = { 0 };
		if (agent_conn_exec(c, &rq, &reply, &err) == 0) {
			check_reply(&rq, &reply);
			agent_exec_reply_free(&reply);
		}
		agent_conn_close(c);
	}
	/* agent_conn_open closes the fd itself when it fails; agent_conn_close
	 * otherwise. */
	pthread_join(t, NULL);
	close(sv[1]);
}

static void run_decoder(const uint8_t *data, size_t size)
{
	struct frame_decoder d;
	frame_decoder_init(&d, 1 << 16);
	size_t off = 0, step = 1;
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		ssize_t used = frame_decoder_feed(&d, data + off, n);
		if (used < 0)
			break;
		off += (size_t)used;
		if (d.ready) {
			Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, d.body_len, d.body);
			if (f)
				hpcc__v1__agent_frame__free_unpacked(f, NULL);
			frame_decoder_next(&d);
		} else if (used == 0)
			break;
		step = step * 3 % 61 + 1;
	}
	frame_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run_decoder(data, size);
	run_host(data, size);
	return 0;
}
