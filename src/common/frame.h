/*
 * gRPC length-prefixed framing (DESIGN §7): each message is 1 flag byte
 * (0 = not compressed; anything else is refused), a 4-byte big-endian
 * length, then the protobuf bytes. Used on both ends of the worker <->
 * agent stream, so this file depends on libc only (the agent is static).
 * The decoder is incremental (for a poll loop) and bounded: a length above
 * the decoder's maximum is refused before any byte of the body is kept.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FRAME_HEADER_LEN 5
#define FRAME_MAX_DEFAULT (4u << 20) /* 4 MiB: a chunk of a file plus its envelope */

struct frame_decoder {
	size_t max;            /* largest body accepted */
	uint8_t hdr[FRAME_HEADER_LEN];
	size_t hdr_have;
	uint8_t *body;         /* malloc'd, grown up to max */
	size_t body_cap, body_len, body_have;
	bool ready;            /* a whole frame is in body[0..body_len) */
	int error;             /* sticky: once set, feed() returns it */
};

void frame_decoder_init(struct frame_decoder *d, size_t max);
void frame_decoder_free(struct frame_decoder *d);

/* Consumes bytes up to the end of the next frame and returns how many it
 * took (0..n). Stops as soon as a frame is complete (d->ready), so the
 * caller handles it, calls frame_decoder_next() and feeds the rest.
 * Errors are sticky and negative: -EPROTO (flag byte not 0), -EMSGSIZE
 * (length above max), -ENOMEM. Feeding while ready returns 0. */
ssize_t frame_decoder_feed(struct frame_decoder *d, const void *p, size_t n);
void frame_decoder_next(struct frame_decoder *d); /* drop the ready frame */

void frame_encode_header(uint8_t hdr[FRAME_HEADER_LEN], uint32_t len);

/* Writes header + body fully on a blocking fd (retries EINTR and short
 * writes). 0 or a negative errno. len must fit in 32 bits. */
int frame_write(int fd, const void *body, size_t len);

/* The same on a socket, never blocking past deadline_ms (CLOCK_MONOTONIC,
 * in ms): sends with MSG_DONTWAIT | MSG_NOSIGNAL and waits for room with
 * poll. -ETIMEDOUT once the deadline passes with bytes still unsent (the
 * frame is then cut: the stream is unusable). A peer that stops reading
 * cannot hold the writer longer than that. */
int frame_write_deadline(int fd, const void *body, size_t len, int64_t deadline_ms);

/* Blocking read of one whole frame into a malloc'd buffer (*ret, *ret_len).
 * 0, -EPIPE on a clean EOF before any byte, -EPROTO/-EMSGSIZE as above,
 * -EIO on EOF inside a frame, or another negative errno. */
int frame_read(int fd, size_t max, uint8_t **ret, size_t *ret_len);
