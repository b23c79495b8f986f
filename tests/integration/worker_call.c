/*
 * worker_call ADDR PIN TOKEN_FILE IMAGE: sends one Execute to a worker with
 * the routing token of TOKEN_FILE and an action for IMAGE, and prints the
 * status ("status N: message"). The scheduler test uses it to replay a
 * routing token against another worker or another image, which the daemon
 * itself never does (it checks the claims first). Exit 0 when the call
 * completed, whatever its status.
 *
 * worker_call ADDR PIN TOKEN_FILE probe HEX: a Probe by action digest;
 * prints "found" or "not found" after the status.
 * worker_call ADDR PIN TOKEN_FILE missing HEX...: FindMissing; prints
 * "missing N of M". The S3 test asks, with one tenant's token, for another
 * tenant's digests.
 * worker_call ADDR PIN TOKEN_FILE audit PREFIX: AuditRows; prints "rows N"
 * and the rows. worker_call ADDR PIN TOKEN_FILE reproduce HEX: Reproduce;
 * prints "output sha256:..." on success. The audit test asks with another
 * tenant's token.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "digest.h"
#include "rpc.h"
#include "token.h"
#include "worker.pb-c.h"

static int parse_hex(const char *hex, struct digest *d)
{
	char full[DIGEST_STR_LEN + 1];
	snprintf(full, sizeof(full), "%s%s", DIGEST_PREFIX, hex);
	return strlen(hex) == DIGEST_HEX_LEN ? digest_parse(full, d) : -EINVAL;
}

static int digest_call(struct rpc_channel *ch, const struct buf *tok, bool probe, int n, char **hex)
{
	struct digest *d = calloc((size_t)n, sizeof(*d));
	ProtobufCBinaryData *list = calloc((size_t)n, sizeof(*list));
	if (!d || !list)
		return 1;
	for (int i = 0; i < n; i++) {
		if (parse_hex(hex[i], &d[i]) < 0) {
			fprintf(stderr, "worker_call: '%s' is not 64 hex digits\n", hex[i]);
			return 2;
		}
		list[i].data = d[i].b;
		list[i].len = DIGEST_LEN;
	}
	struct buf packed, reply;
	buf_init(&packed, 1 << 20);
	buf_init(&reply, 64 << 20);
	const char *method;
	if (probe) {
		Hpcc__V1__ProbeRequest req = HPCC__V1__PROBE_REQUEST__INIT;
		req.token.data = (uint8_t *)tok->data;
		req.token.len = tok->len;
		req.action_digest = list[0];
		buf_reserve(&packed, hpcc__v1__probe_request__get_packed_size(&req));
		packed.len = hpcc__v1__probe_request__pack(&req, (uint8_t *)packed.data);
		method = "/hpcc.v1.WorkerService/Probe";
	} else {
		Hpcc__V1__FindMissingRequest req = HPCC__V1__FIND_MISSING_REQUEST__INIT;
		req.token.data = (uint8_t *)tok->data;
		req.token.len = tok->len;
		req.digests = list;
		req.n_digests = (size_t)n;
		buf_reserve(&packed, hpcc__v1__find_missing_request__get_packed_size(&req));
		packed.len = hpcc__v1__find_missing_request__pack(&req, (uint8_t *)packed.data);
		method = "/hpcc.v1.WorkerService/FindMissing";
	}
	struct rpc_status st = { 0 };
	int r = rpc_unary(ch, method, packed.data, packed.len, 10000, &reply, &st);
	if (r < 0) {
		fprintf(stderr, "worker_call: %s\n", strerror(-r));
		return 1;
	}
	printf("status %d: %s\n", st.code, st.msg);
	if (st.code == 0 && probe) {
		Hpcc__V1__ProbeReply *rep = hpcc__v1__probe_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		printf("%s\n", rep && rep->found ? "found" : "not found");
		if (rep)
			hpcc__v1__probe_reply__free_unpacked(rep, NULL);
	} else if (st.code == 0) {
		Hpcc__V1__FindMissingReply *rep = hpcc__v1__find_missing_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		printf("missing %zu of %d\n", rep ? rep->n_missing : 0, n);
		if (rep)
			hpcc__v1__find_missing_reply__free_unpacked(rep, NULL);
	}
	rpc_channel_free(ch);
	buf_free(&packed);
	buf_free(&reply);
	free(d);
	free(list);
	return 0;
}

/* AuditRows (prefix) or Reproduce (hex). */
static int audit_call(struct rpc_channel *ch, const struct buf *tok, bool reproduce, const char *arg)
{
	struct buf packed, reply;
	buf_init(&packed, 1 << 20);
	buf_init(&reply, 64 << 20);
	struct digest d;
	const char *method;
	if (reproduce) {
		if (parse_hex(arg, &d) < 0) {
			fprintf(stderr, "worker_call: '%s' is not 64 hex digits\n", arg);
			return 2;
		}
		Hpcc__V1__ReproduceRequest req = HPCC__V1__REPRODUCE_REQUEST__INIT;
		req.token.data = (uint8_t *)tok->data;
		req.token.len = tok->len;
		req.action_digest.data = d.b;
		req.action_digest.len = DIGEST_LEN;
		buf_reserve(&packed, hpcc__v1__reproduce_request__get_packed_size(&req));
		packed.len = hpcc__v1__reproduce_request__pack(&req, (uint8_t *)packed.data);
		method = "/hpcc.v1.WorkerService/Reproduce";
	} else {
		Hpcc__V1__AuditRowsRequest req = HPCC__V1__AUDIT_ROWS_REQUEST__INIT;
		req.token.data = (uint8_t *)tok->data;
		req.token.len = tok->len;
		req.prefix = (char *)arg;
		buf_reserve(&packed, hpcc__v1__audit_rows_request__get_packed_size(&req));
		packed.len = hpcc__v1__audit_rows_request__pack(&req, (uint8_t *)packed.data);
		method = "/hpcc.v1.WorkerService/AuditRows";
	}
	struct rpc_status st = { 0 };
	int r = rpc_unary(ch, method, packed.data, packed.len, 120000, &reply, &st);
	if (r < 0) {
		fprintf(stderr, "worker_call: %s\n", strerror(-r));
		return 1;
	}
	printf("status %d: %s\n", st.code, st.msg);
	if (st.code == 0 && reproduce) {
		Hpcc__V1__ReproduceReply *rep = hpcc__v1__reproduce_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		if (rep && rep->result && rep->result->n_outputs > 0 && rep->result->outputs[0]->blob &&
		    rep->result->outputs[0]->blob->digest.len == DIGEST_LEN) {
			char s[DIGEST_STR_LEN + 1];
			memcpy(d.b, rep->result->outputs[0]->blob->digest.data, DIGEST_LEN);
			digest_to_string(&d, s);
			printf("output %s\n", s);
		}
		if (rep)
			hpcc__v1__reproduce_reply__free_unpacked(rep, NULL);
	} else if (st.code == 0) {
		Hpcc__V1__AuditRowsReply *rep = hpcc__v1__audit_rows_reply__unpack(NULL, reply.len, (uint8_t *)reply.data);
		printf("rows %zu\n", rep ? rep->n_rows : 0);
		for (size_t i = 0; rep && i < rep->n_rows; i++)
			printf("%s\n", rep->rows[i]);
		if (rep)
			hpcc__v1__audit_rows_reply__free_unpacked(rep, NULL);
	}
	rpc_channel_free(ch);
	buf_free(&packed);
	buf_free(&reply);
	return 0;
}

int main(int argc, char **argv)
{
	bool probe = argc == 6 && strcmp(argv[4], "probe") == 0;
	bool missing = argc >= 6 && strcmp(argv[4], "missing") == 0;
	bool audit = argc == 6 && strcmp(argv[4], "audit") == 0;
	bool reproduce = argc == 6 && strcmp(argv[4], "reproduce") == 0;
	if (argc != 5 && !probe && !missing && !audit && !reproduce) {
		fprintf(stderr, "usage: worker_call ADDR PIN TOKEN_FILE IMAGE | probe HEX | missing HEX... | audit PREFIX | "
				"reproduce HEX\n");
		return 2;
	}
	rpc_global_init();
	struct error err = { 0 };
	struct buf tok;
	buf_init(&tok, TOKEN_MAX_SIZE + 1);
	if (token_read_file(argv[3], &tok, &err) < 0) {
		fprintf(stderr, "worker_call: %s\n", err.msg);
		return 1;
	}
	struct rpc_channel *ch = NULL;
	struct rpc_channel_config cc = { .target = argv[1], .pin = argv[2] };
	if (rpc_channel_new(&cc, &ch, &err) < 0) {
		fprintf(stderr, "worker_call: %s\n", err.msg);
		return 1;
	}
	if (audit || reproduce) {
		int r = audit_call(ch, &tok, reproduce, argv[5]);
		buf_free(&tok);
		fflush(stdout);
		return r;
	}
	if (probe || missing) {
		int r = digest_call(ch, &tok, probe, argc - 5, argv + 5);
		buf_free(&tok);
		fflush(stdout);
		return r;
	}
	Hpcc__V1__Action action = HPCC__V1__ACTION__INIT;
	action.image_digest = argv[4];
	Hpcc__V1__ExecuteRequest req = HPCC__V1__EXECUTE_REQUEST__INIT;
	req.token.data = (uint8_t *)tok.data;
	req.token.len = tok.len;
	req.action = &action;
	uint8_t packed[4096];
	size_t len = hpcc__v1__execute_request__get_packed_size(&req);
	if (len > sizeof(packed))
		return 1;
	hpcc__v1__execute_request__pack(&req, packed);
	struct buf reply;
	buf_init(&reply, 1 << 20);
	struct rpc_status st = { 0 };
	int r = rpc_unary(ch, "/hpcc.v1.WorkerService/Execute", packed, len, 10000, &reply, &st);
	if (r < 0) {
		fprintf(stderr, "worker_call: %s\n", strerror(-r));
		return 1;
	}
	printf("status %d: %s\n", st.code, st.msg);
	rpc_channel_free(ch);
	buf_free(&reply);
	buf_free(&tok);
	return 0;
}
