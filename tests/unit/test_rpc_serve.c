/*
 * rpc_serve_run (src/rpc/rpc_serve.c), the frame of `hpcc worker` and
 * `hpcc scheduler`: a SIGTERM makes the signal thread call stop(), which
 * wakes run(); the caller frees the server as soon as rpc_serve_run
 * returns, so it must not return while stop() is still under way (the
 * worker's stop went on to its scheduler client after waking run(), which
 * the main thread was freeing: an intermittent heap-use-after-free under
 * ASan). And a signal after run() returned must not call stop().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "rpc_serve.h"

struct server {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop_asked;
	int stops;          /* stop() calls that finished */
	bool run_returned;
};

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static int run_until_stopped(void *obj)
{
	struct server *s = obj;
	pthread_mutex_lock(&s->lock);
	while (!s->stop_asked)
		pthread_cond_wait(&s->wake, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int run_at_once(void *obj)
{
	(void)obj;
	return 0;
}

/* Wakes run(), then goes on working with the server, as worker_stop does. */
static void slow_stop(void *obj)
{
	struct server *s = obj;
	pthread_mutex_lock(&s->lock);
	s->stop_asked = true;
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	nap_ms(200);
	pthread_mutex_lock(&s->lock);
	s->stops++;
	pthread_mutex_unlock(&s->lock);
}

static void *send_term(void *arg)
{
	nap_ms(*(long *)arg);
	kill(getpid(), SIGTERM);
	return NULL;
}

static void test_waits_for_stop(void **state)
{
	(void)state;
	sigset_t set;
	rpc_serve_block_signals(&set);
	struct server *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	struct rpc_serve serve = { .what = "test", .port = 1, .run = run_until_stopped, .stop = slow_stop, .obj = s };
	static long delay = 100;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_term, &delay), 0);
	assert_int_equal(rpc_serve_run(&serve, &set), 0);
	/* stop() finished before rpc_serve_run returned: s may go now. */
	assert_int_equal(s->stops, 1);
	pthread_join(t, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}

static void test_late_signal_stops_nothing(void **state)
{
	(void)state;
	sigset_t set;
	rpc_serve_block_signals(&set);
	static struct server s = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };
	struct rpc_serve serve = { .what = "test", .port = 1, .run = run_at_once, .stop = slow_stop, .obj = &s };
	assert_int_equal(rpc_serve_run(&serve, &set), 0);
	kill(getpid(), SIGTERM);
	nap_ms(400);
	pthread_mutex_lock(&s.lock);
	assert_false(s.stop_asked);
	assert_int_equal(s.stops, 0);
	pthread_mutex_unlock(&s.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_waits_for_stop),
		cmocka_unit_test(test_late_signal_stops_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
