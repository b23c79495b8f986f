/*
 * The shared frame of hpcc's long-running servers (`hpcc worker`, `hpcc
 * scheduler`): SIGTERM and SIGINT are blocked in every thread and taken by
 * one thread that asks the server to stop; the bound port is announced on
 * stderr, in the log and, when asked, in a port file (tests use port 0).
 */
#pragma once

#include <stdbool.h>

#include <signal.h>

/* Call before any thread starts (grpc's included): every thread inherits the mask. */
void rpc_serve_block_signals(sigset_t *ret_set);

struct rpc_serve {
	const char *what;        /* "worker", "scheduler": for the messages */
	int port;
	const char *port_file;   /* NULL: none */
	/* When set, the port goes to port_fd (the port file, opened before the
	 * process gave up root: a worker running as [worker] user may not be
	 * able to create files next to it) instead; closed here. */
	bool use_port_fd;
	int port_fd;
	int (*run)(void *obj);   /* serves until stop; < 0 on failure */
	void (*stop)(void *obj); /* from the signal thread */
	void *obj;
};

/* Announces the port, starts the signal thread, runs; returns run's result. */
int rpc_serve_run(const struct rpc_serve *s, sigset_t *set);
