/*
 * worker_call ADDR PIN TOKEN_FILE IMAGE: sends one Execute to a worker with
 * the routing token of TOKEN_FILE and an action for IMAGE, and prints the
 * status ("status N: message"). The scheduler test uses it to replay a
 * routing token against another worker or another image, which the daemon
 * itself never does (it checks the claims first). Exit 0 when the call
 * completed, whatever its status.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "rpc.h"
#include "token.h"
#include "worker.pb-c.h"

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: worker_call ADDR PIN TOKEN_FILE IMAGE\n");
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
