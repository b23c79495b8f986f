/*
 * Framing for the wrapper <-> daemon socket: each message is a 4-byte
 * big-endian length followed by one packed hpcc.local.Envelope. Lengths are
 * capped and every read has a deadline, so a stuck or hostile peer costs a
 * bounded amount of memory and time.
 */
#pragma once

#include <stddef.h>

#include "local.pb-c.h"

#define IPC_MAX_MESSAGE ((size_t)768 << 20)

typedef Hpcc__Local__Envelope ipc_envelope;

/* Sends one envelope; -EPIPE when the peer is gone. */
int ipc_send(int fd, const ipc_envelope *env);
/* Receives one envelope within timeout_ms (-1: no limit); -ETIMEDOUT,
 * -ECONNRESET at end of stream, -EBADMSG for bad framing or protobuf. */
int ipc_recv(int fd, int timeout_ms, size_t max, ipc_envelope **ret);
void ipc_envelope_free(ipc_envelope *env);

/* The socket path for a cache directory (see ipc.c for the rules). */
char *ipc_socket_path(const char *cache_dir, const char *configured);
