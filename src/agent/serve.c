/*
 * The serving loop: one poll() over the host stream, SIGCHLD (a signalfd)
 * and the stdout/stderr pipes of the running commands, with the nearest
 * exec deadline as its timeout. Frames from the host are decoded
 * incrementally and dispatched by kind; frames to the host go through a
 * queue that is flushed whenever the stream takes bytes. A frame that
 * cannot be framed or decoded ends the loop: after that nothing on the
 * stream can be trusted to start where a frame starts.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define READ_SIZE (64u << 10)

int agent_send(struct agent *a, Hpcc__V1__AgentFrame *f)
{
	int r = outq_frame(&a->out, f);

	if (r < 0 && !a->fatal[0])
		snprintf(a->fatal, sizeof(a->fatal), "cannot queue a frame for the host: %s", strerror(-r));
	return r;
}

static void send_hello(struct agent *a)
{
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	Hpcc__V1__AgentHello h = HPCC__V1__AGENT_HELLO__INIT;

	h.version = (char *)HPCC_VERSION;
	h.vcpus = a->vcpus;
	h.network_ok = true; /* the agent serves only after the network check */
	f.exec_id = 0;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HELLO;
	f.hello = &h;
	agent_send(a, &f);
}

static void dispatch(struct agent *a, const uint8_t *body, size_t len)
{
	Hpcc__V1__AgentFrame *f = hpcc__v1__agent_frame__unpack(NULL, len, body);
	char what[64];

	if (!f) {
		snprintf(a->fatal, sizeof(a->fatal), "a frame of %zu bytes does not decode as an AgentFrame", len);
		return;
	}
	switch (f->kind_case) {
	case HPCC__V1__AGENT_FRAME__KIND_HEADER: {
		/* The exec keeps the header: detach it from the frame. */
		Hpcc__V1__ExecHeader *h = f->header;
		f->header = NULL;
		f->kind_case = HPCC__V1__AGENT_FRAME__KIND__NOT_SET;
		exec_handle_header(a, f->exec_id, h);
		break;
	}
	case HPCC__V1__AGENT_FRAME__KIND_INPUT:
		exec_handle_input(a, f->exec_id, f->input);
		break;
	case HPCC__V1__AGENT_FRAME__KIND_CANCEL:
		exec_handle_cancel(a, f->exec_id);
		break;
	default:
		snprintf(what, sizeof(what), "a frame of kind %d", (int)f->kind_case);
		exec_handle_unexpected(a, f->exec_id, what);
		break;
	}
	hpcc__v1__agent_frame__free_unpacked(f, NULL);
}

/* Reads what the host sent and handles every complete frame. 1 at the
 * end of the stream, 0 otherwise (a->fatal set on a framing error). */
static int read_host(struct agent *a, uint8_t *buf)
{
	ssize_t n = read(a->chan, buf, READ_SIZE), off = 0;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		snprintf(a->fatal, sizeof(a->fatal), "reading the host stream: %s", strerror(errno));
		return 0;
	}
	if (n == 0) {
		if (a->dec.hdr_have > 0)
			snprintf(a->fatal, sizeof(a->fatal), "the host closed the stream inside a frame");
		return 1;
	}
	while (off < n && !a->fatal[0]) {
		ssize_t used = frame_decoder_feed(&a->dec, buf + off, (size_t)(n - off));
		if (used < 0) {
			snprintf(a->fatal, sizeof(a->fatal), "%s",
				 used == -EPROTO     ? "a frame with a non-zero flag byte (compressed frames are refused)"
				 : used == -EMSGSIZE ? "a frame longer than the limit"
						     : "out of memory for a frame");
			return 0;
		}
		off += used;
		if (a->dec.ready) {
			dispatch(a, a->dec.body, a->dec.body_len);
			frame_decoder_next(&a->dec);
		}
	}
	return 0;
}

static void drain_signals(int sigfd)
{
	struct signalfd_siginfo si;

	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;
}

/* Collects the children that were killed on the way out (and orphans
 * that came back to the agent), for a bounded time: in test mode the
 * agent's parent should not inherit zombies. */
static void reap_remaining(void)
{
	int64_t end = agent_now_us() + 2000000;

	while (agent_now_us() < end) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid < 0 && errno != EINTR)
			return; /* ECHILD: none left */
		if (pid == 0)
			usleep(10000);
	}
}

static int poll_timeout(const struct agent *a)
{
	int64_t next = exec_next_deadline(a), now;

	if (next < 0)
		return -1;
	now = agent_now_us();
	if (next <= now)
		return 0;
	return (next - now) / 1000 + 1 > 60000 ? 60000 : (int)((next - now) / 1000 + 1);
}

int agent_serve(struct agent *a)
{
	struct pollfd *pfd = NULL;
	struct exec **pexec = NULL;
	int *pwhich = NULL;
	size_t max_fds = 2 + 2 * (size_t)a->vcpus;
	uint8_t *buf = malloc(READ_SIZE);
	sigset_t mask;
	int rc = -1, fl;

	frame_decoder_init(&a->dec, FRAME_MAX_DEFAULT);
	a->chunk_buf = malloc(AGENT_CHUNK_MAX);
	pfd = calloc(max_fds, sizeof(*pfd));
	pexec = calloc(max_fds, sizeof(*pexec));
	pwhich = calloc(max_fds, sizeof(*pwhich));
	if (!buf || !a->chunk_buf || !pfd || !pexec || !pwhich || slots_init(a) < 0) {
		snprintf(a->fatal, sizeof(a->fatal), "out of memory");
		goto out;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	a->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	fl = fcntl(a->chan, F_GETFL);
	if (a->sigfd < 0 || fl < 0 || fcntl(a->chan, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(a->fatal, sizeof(a->fatal), "cannot set up the loop: %s", strerror(errno));
		goto out;
	}
	send_hello(a);

	for (;;) {
		size_t n = 2;
		bool room, listen;
		int r;

		if (a->fatal[0])
			break;
		exec_start_queued(a);
		while (outq_pending(&a->out) < AGENT_OUTQ_HIGH && exec_produce(a))
			;
		if (a->fatal[0])
			break;
		room = outq_pending(&a->out) < AGENT_OUTQ_HIGH;
		/* Every frame from the host may earn a frame back: a host that
		 * writes without reading would grow the queue without end.
		 * Above the cap the agent reads nothing until it drains. */
		listen = outq_pending(&a->out) < AGENT_OUTQ_MAX;
		pfd[0] = (struct pollfd){ .fd = a->chan,
					  .events = (listen ? POLLIN : 0) | (outq_pending(&a->out) ? POLLOUT : 0) };
		pfd[1] = (struct pollfd){ .fd = a->sigfd, .events = POLLIN };
		/* Above the high-water mark the pipes wait: a command that
		 * writes faster than the host reads blocks in write(). */
		for (struct exec *e = a->execs; e && room; e = e->next) {
			if (e->state != EXEC_RUNNING)
				continue;
			for (int which = 1; which <= 2; which++) {
				int fd = which == 1 ? e->out_fd : e->err_fd;
				if (fd < 0 || n >= max_fds)
					continue;
				pfd[n] = (struct pollfd){ .fd = fd, .events = POLLIN };
				pexec[n] = e;
				pwhich[n++] = which;
			}
		}
		r = poll(pfd, n, poll_timeout(a));
		if (r < 0 && errno != EINTR) {
			snprintf(a->fatal, sizeof(a->fatal), "poll: %s", strerror(errno));
			break;
		}
		if (r > 0) {
			/* Pipes first: nothing has freed an exec yet. */
			for (size_t i = 2; i < n; i++)
				if (pfd[i].revents)
					exec_read_stdio(a, pexec[i], pwhich[i]);
			if (pfd[1].revents) {
				drain_signals(a->sigfd);
				exec_reap(a);
			}
			if (pfd[0].revents & (POLLOUT | POLLERR)) {
				int q = outq_flush(&a->out, a->chan);
				if (q < 0) { /* the host is gone: EPIPE, ECONNRESET */
					agent_log("writing to the host: %s", strerror(-q));
					rc = 0;
					break;
				}
			}
			/* A hang-up is read even above the cap: what is left
			 * is bounded, and the EOF ends the loop. */
			if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
				if (read_host(a, buf) == 1) {
					rc = a->fatal[0] ? -1 : 0;
					if (!a->fatal[0])
						agent_log("the host closed the stream");
					break;
				}
			}
		}
		exec_check_deadlines(a, agent_now_us());
		if (outq_pending(&a->out) && outq_flush(&a->out, a->chan) < 0) {
			/* reported by the next poll round as POLLERR/POLLHUP */
		}
	}
out:
	exec_destroy_all(a);
	reap_remaining();
	frame_decoder_free(&a->dec);
	outq_free(&a->out);
	free(a->slots);
	a->slots = NULL;
	free(a->chunk_buf);
	a->chunk_buf = NULL;
	free(buf);
	free(pfd);
	free(pexec);
	free(pwhich);
	if (a->sigfd >= 0)
		close(a->sigfd);
	a->sigfd = -1;
	return a->fatal[0] ? -1 : rc;
}
