/*
 * INI configurations: the client's (src/common/config.c, config_load), the
 * worker's (src/worker/worker_config.c, worker_config_load) and the
 * scheduler's (src/scheduler/scheduler_config.c, scheduler_config_load).
 * The first byte picks the parser; the rest is written to a file of this
 * process under /tmp, which is loaded as the commands load theirs. As in
 * the product, a failed load leaves nothing to free; a successful one is
 * read back through the getters and freed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "scheduler_config.h"
#include "worker_config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void cleanup(void) { unlink(path); }

static void client_config(void)
{
	struct config c;
	struct error err = { 0 };
	if (config_load(&c, path, &err) < 0)
		return;
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		bool b;
		uint64_t u;
		(void)config_get(&c, k);
		(void)config_get_bool(&c, k, &b);
		(void)config_get_u64(&c, k, &u);
	}
	config_free(&c);
}

static void worker_config(void)
{
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		return;
	(void)worker_config_serves(&c, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	worker_config_free(&c);
}

static void scheduler_config(void)
{
	struct scheduler_config c;
	struct error err = { 0 };
	if (scheduler_config_load(path, &c, &err) < 0)
		return;
	for (size_t i = 0; i < c.n_tenants; i++) {
		const struct scheduler_tenant *t = scheduler_config_tenant(&c, c.tenants[i].id);
		if (t)
			(void)scheduler_tenant_allows(t, "sha256:00");
	}
	scheduler_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/fuzz-config-%d.ini", (int)getpid());
		atexit(cleanup);
	}
	if (size == 0)
		return 0;
	unsigned which = data[0] % 3;
	data++, size--;
	fuzz_write_file(path, data, size);
	if (which == 0)
		client_config();
	else if (which == 1)
		worker_config();
	else
		scheduler_config();
	return 0;
}
