/*
 * What the VMM drivers share with each other and with their unit tests, and
 * what the VM pool does not need: the socket connect that both drivers use
 * to reach a VMM's Unix socket, and Firecracker's host-initiated vsock
 * handshake, kept apart from the socket set-up so a test can run it over a
 * socketpair. The pool uses vmm.h only.
 */
#pragma once

#include "error.h"

/* The longest "OK <port>\n" answer Firecracker's handshake accepts, newline
 * included. Firecracker sends "OK " and a 32-bit port number: 14 bytes at most. */
#define VMM_HANDSHAKE_LINE_MAX 32

/* Connects a blocking, close-on-exec AF_UNIX stream socket to
 * <run_dir>/<name> (run_dir is checked like vmm_config_check does). Returns -EAGAIN, with err left alone, while nothing
 * listens there yet (the file is missing or refuses). Refuses a peer that
 * does not run as the owner of run_dir: the VMM runs as that user, so a
 * socket of anyone else (say, a symlink the VMM planted towards a root
 * daemon's socket) is not the VMM's. */
int vmm_unix_connect(const char *run_dir, const char *name, int *ret_fd, struct error *err);

/* Firecracker's host side of a vsock connection, on fd already connected to
 * the VMM's uds_path: sends "CONNECT <VMM_AGENT_VSOCK_PORT>\n" and reads one
 * line, byte by byte so that nothing of the agent's stream after it is
 * consumed, within timeout_ms. Accepts exactly "OK <decimal u32>\n".
 * -ECONNRESET when the VMM closes the connection before a single byte (what
 * Firecracker does while nothing listens on the guest port), -ETIMEDOUT,
 * -EPROTO for any other answer. The fd stays blocking. */
int vmm_firecracker_handshake(int fd, int timeout_ms, struct error *err);
