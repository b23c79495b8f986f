/*
 * A tiny HTTP/1.1 server on a thread, on a loopback port, for the tests of
 * http.c and oauth.c. It serves one request per connection (and says
 * Connection: close): it reads the head and a Content-Length body, hands
 * them to the test's handler, and writes what the handler put in the
 * response buffer verbatim, so a test controls every byte (status line,
 * headers, oversized or truncated bodies). A handler can also leave a
 * connection unanswered, to test timeouts. Header-only, like testutil.h.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"

#define TESTSERVER_MAX_REQUEST (256 * 1024)
#define TESTSERVER_MAX_HUNG 16

struct testserver_request {
	char method[16];
	char target[1024];   /* path and query */
	const char *head;    /* the whole head, NUL-terminated */
	const char *body;    /* a copy of the body_len bytes, NUL-terminated */
	size_t body_len;
};

enum testserver_action { TESTSERVER_ANSWER, TESTSERVER_HANG };

/* Fills response with the raw bytes to send. Runs on the server thread. */
typedef enum testserver_action (*testserver_handler_fn)(const struct testserver_request *req, struct buf *response,
							  void *userdata);

struct testserver {
	int listen_fd;
	int stop_pipe[2];
	int port;
	pthread_t thread;
	testserver_handler_fn handler;
	void *userdata;
	pthread_mutex_t lock;
	unsigned requests;   /* requests read so far */
	int hung[TESTSERVER_MAX_HUNG];
	unsigned n_hung;
};

/* Appends a complete answer: status line, Content-Type, Content-Length, body. */
static inline void testserver_reply(struct buf *response, int status, const char *content_type, const char *body)
{
	buf_printf(response,
		   "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
		   content_type, strlen(body), body);
}

static inline unsigned testserver_requests(struct testserver *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->requests;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Reads one request; 0 on success. */
static inline int testserver_read_request(int fd, struct buf *in, struct testserver_request *req)
{
	size_t head_end = 0;
	for (;;) {
		char *end = in->len ? memmem(in->data, in->len, "\r\n\r\n", 4) : NULL;
		if (end && !head_end) {
			head_end = (size_t)(end - in->data) + 4;
			in->data[head_end - 2] = '\0';  /* the head as a string */
		}
		if (head_end) {
			size_t want = 0;
			const char *cl = strcasestr(in->data, "\r\nContent-Length:");
			if (cl)
				want = strtoul(cl + 17, NULL, 10);
			if (in->len >= head_end + want) {
				req->head = in->data;
				/* All the bytes (a binary body may hold NULs), and a NUL after them. */
				char *body = malloc(want + 1);
				if (!body)
					return -1;
				memcpy(body, in->data + head_end, want);
				body[want] = '\0';
				req->body = body;
				req->body_len = want;
				if (sscanf(in->data, "%15s %1023s", req->method, req->target) != 2)
					return -1;
				return 0;
			}
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 5000) <= 0)
			return -1;
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n <= 0 || buf_append(in, chunk, (size_t)n) < 0)
			return -1;
	}
}

static inline void *testserver_thread(void *arg)
{
	struct testserver *s = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN }, { .fd = s->stop_pipe[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		struct buf in, out;
		buf_init(&in, TESTSERVER_MAX_REQUEST);
		buf_init(&out, 64 << 20);
		struct testserver_request req = { 0 };
		enum testserver_action action = TESTSERVER_ANSWER;
		if (testserver_read_request(fd, &in, &req) == 0) {
			pthread_mutex_lock(&s->lock);
			s->requests++;
			pthread_mutex_unlock(&s->lock);
			action = s->handler(&req, &out, s->userdata);
		}
		if (action == TESTSERVER_HANG && s->n_hung < TESTSERVER_MAX_HUNG) {
			s->hung[s->n_hung++] = fd;
		} else {
			size_t off = 0;
			while (off < out.len) {
				ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
				if (n <= 0)
					break;
				off += (size_t)n;
			}
			shutdown(fd, SHUT_WR);
			close(fd);
		}
		free((void *)req.body);
		buf_free(&in);
		buf_free(&out);
	}
	return NULL;
}

/* Starts the server on 127.0.0.1 and a free port; 0 on success. */
static inline int testserver_start(struct testserver *s, testserver_handler_fn handler, void *userdata)
{
	memset(s, 0, sizeof(*s));
	s->handler = handler;
	s->userdata = userdata;
	pthread_mutex_init(&s->lock, NULL);
	s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->listen_fd, 16) < 0 ||
	    getsockname(s->listen_fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	s->port = ntohs(a.sin_port);
	if (pipe2(s->stop_pipe, O_CLOEXEC) < 0)
		return -1;
	return pthread_create(&s->thread, NULL, testserver_thread, s) == 0 ? 0 : -1;
}

static inline void testserver_stop(struct testserver *s)
{
	if (write(s->stop_pipe[1], "x", 1) != 1)
		abort();
	pthread_join(s->thread, NULL);
	for (unsigned i = 0; i < s->n_hung; i++)
		close(s->hung[i]);
	close(s->listen_fd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	pthread_mutex_destroy(&s->lock);
}

/* "http://127.0.0.1:PORT" + path, malloc'd. */
static inline char *testserver_url(const struct testserver *s, const char *path)
{
	char *u = NULL;
	if (asprintf(&u, "http://127.0.0.1:%d%s", s->port, path) < 0)
		abort();
	return u;
}
