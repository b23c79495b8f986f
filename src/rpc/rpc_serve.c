/* The frame of a server command (see rpc_serve.h). */
#include "rpc_serve.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"

void rpc_serve_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* The signal thread calls stop() while the main thread returns from run()
 * and frees the server: rpc_serve_run waits for a stop() under way before
 * it returns, and a signal after run() returned stops nothing. */
struct signal_arg {
	const struct rpc_serve *s;
	sigset_t *set;
	pthread_mutex_t lock;
	pthread_cond_t done;
	bool stopping, stopped, finished;
};

static void *signal_thread(void *p)
{
	struct signal_arg *a = p;
	int sig = 0;
	sigwait(a->set, &sig);
	pthread_mutex_lock(&a->lock);
	bool go = !a->finished;
	a->stopping = go;
	pthread_mutex_unlock(&a->lock);
	if (!go)
		return NULL;
	log_info("signal %d: stopping", sig);
	a->s->stop(a->s->obj);
	pthread_mutex_lock(&a->lock);
	a->stopped = true;
	pthread_cond_broadcast(&a->done);
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int rpc_serve_run(const struct rpc_serve *s, sigset_t *set)
{
	log_info("%s listening on port %d", s->what, s->port);
	fprintf(stderr, "hpcc %s: listening on port %d\n", s->what, s->port);
	if (s->port_file) {
		char text[32];
		int len = snprintf(text, sizeof(text), "%d\n", s->port);
		int r = -EBADF;
		if (!s->use_port_fd)
			r = fs_write_atomic(s->port_file, text, (size_t)len, 0644, false);
		else if (s->port_fd >= 0) {
			/* One write: a reader sees the file empty or whole. */
			r = pwrite(s->port_fd, text, (size_t)len, 0) == len ? 0 : -EIO;
			close(s->port_fd);
		}
		if (r < 0)
			log_warn("%s: cannot write the port file %s", s->what, s->port_file);
	}
	/* The signal thread lives as long as the process (it may be blocked in sigwait at exit). */
	static struct signal_arg arg = { .lock = PTHREAD_MUTEX_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };
	pthread_mutex_lock(&arg.lock);
	arg.s = s;
	arg.set = set;
	arg.stopping = arg.stopped = arg.finished = false;
	pthread_mutex_unlock(&arg.lock);
	pthread_t t;
	if (pthread_create(&t, NULL, signal_thread, &arg) == 0)
		pthread_detach(t);
	int r = s->run(s->obj);
	/* The caller frees s->obj next: not while stop() still uses it. */
	pthread_mutex_lock(&arg.lock);
	arg.finished = true;
	while (arg.stopping && !arg.stopped)
		pthread_cond_wait(&arg.done, &arg.lock);
	pthread_mutex_unlock(&arg.lock);
	return r;
}
