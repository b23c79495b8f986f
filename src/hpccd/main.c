/*
 * hpccd: the half of hpcc that links the grpc core. The static `hpcc`
 * wrapper stays small and starts in a millisecond; it execs hpccd for the
 * daemon when [remote] is configured, and for the worker and token
 * commands. hpccd is installed beside hpcc.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "fs.h"
#include "image_cmd.h"
#include "log.h"
#include "login.h"
#include "remote.h"
#include "rpc.h"
#include "rpc_serve.h"
#include "scheduler_cmd.h"
#include "server.h"
#include "service.h"
#include "tier_gc.h"
#include "privilege.h"
#include "worker_init.h"

static void usage(void)
{
	fputs("usage: hpccd daemon run\n"
	      "       hpccd worker [run] [--config FILE] [--port-file FILE]\n"
	      "       hpccd worker init DIR [--id ID] [--listen ADDR] [--allow-unsafe-local]\n"
	      "       hpccd worker host-image\n"
	      "       hpccd worker gc [--config FILE] [--dry-run]\n"
	      "       hpccd scheduler init DIR [--listen ADDR] [--name DNS]... | hpccd scheduler [run] [--config FILE]\n"
	      "       hpccd login [--tenant T] [--scheduler ADDR --scheduler-pin PIN] [--username U] | hpccd logout [--tenant T]\n"
	      "       hpccd auth status [--tenant T]\n"
	      "       hpccd token issue --key FILE --tenant T --image DIGEST --worker ID [--ttl S] [--out FILE]\n"
	      "       hpccd image import|list|rm [--dir DIR | --config FILE] ...\n"
	      "(normally run through hpcc: `hpcc worker ...`, `hpcc token ...`, `hpcc image ...`)\n",
	      stderr);
}

static int daemon_main(void)
{
	struct config cfg;
	if (command_load_config(&cfg) < 0)
		return 1;
	/* Wrappers identify the daemon by the hpcc binary beside us. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	static char sibling[PATH_MAX + 8];
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(sibling, sizeof(sibling), "%s/hpcc", self);
			daemon_set_binary_path(sibling);
		}
	}
	rpc_global_init();
	struct error err = { 0 };
	struct remote_client *rc = NULL;
	if (remote_client_new(&cfg, &rc, &err) < 0) {
		/* A broken [remote] section must not stop local caching. */
		log_error("remote mode off: %s", err.msg);
		error_clear(&err);
	}
	if (rc)
		daemon_set_remote(remote_client_hooks(rc));
	int code = 0;
	if (daemon_run(&cfg, &err) < 0) {
		if (err.code != -EALREADY)
			fprintf(stderr, "hpcc: daemon: %s\n", err.msg);
		code = err.code == -EALREADY ? 0 : 1;
	}
	/* Connection threads may still use the client; the exit frees it. */
	config_free(&cfg);
	return code;
}

static int run_worker(void *w) { return worker_run(w); }
static void stop_worker(void *w) { worker_stop(w); }

static int worker_main(int argc, char **argv)
{
	const char *config = getenv("HPCC_WORKER_CONFIG");
	const char *port_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "run") == 0 && i == 1)
			continue;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (!config)
		config = "worker.ini";
	const char *level_text = getenv("HPCC_LOG_LEVEL");
	int level = log_level_parse(level_text ? level_text : "info");
	log_open(getenv("HPCC_LOG_FILE"), level < 0 ? LOG_INFO : (enum log_level)level);
	struct worker_config wc;
	struct error err = { 0 };
	if (worker_config_load(config, &wc, &err) < 0) {
		fprintf(stderr, "hpcc: worker: %s\n", err.msg);
		return 1;
	}
	/* Opened while the worker may still be root: it then runs as [worker]
	 * user, which may not create files where the port file goes. */
	int port_fd = port_file ? open(port_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
	if (port_file && port_fd < 0)
		fprintf(stderr, "hpcc: worker: cannot create the port file %s: %s\n", port_file, strerror(errno));
	/* Before any thread but the VM pool's exists: capabilities are per
	 * thread, and every thread started from here on inherits the reduced
	 * set (privilege.h). */
	if (privilege_drop_for_worker(&wc, &err) < 0) {
		fprintf(stderr, "hpcc: worker: %s\n", err.msg);
		worker_config_free(&wc);
		if (port_fd >= 0)
			close(port_fd);
		return 1;
	}
	/* Blocked before grpc starts any thread, so that every thread inherits
	 * the mask and only the signal thread takes SIGTERM/SIGINT. */
	sigset_t set;
	rpc_serve_block_signals(&set);
	rpc_global_init();
	struct worker *w = NULL;
	if (worker_new(&wc, &w, &err) < 0) {
		fprintf(stderr, "hpcc: worker: %s\n", err.msg);
		if (port_fd >= 0)
			close(port_fd);
		rpc_global_shutdown();
		return 1;
	}
	struct rpc_serve serve = { .what = "worker", .port = worker_port(w), .port_file = port_file,
				   .use_port_fd = true, .port_fd = port_fd,
				   .run = run_worker, .stop = stop_worker, .obj = w };
	int r = rpc_serve_run(&serve, &set);
	worker_free(w);
	rpc_global_shutdown();
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	command_is_hpccd = true;
	const char *cmd = argv[1];
	if (strcmp(cmd, "daemon") == 0 && argc > 2 && strcmp(argv[2], "run") == 0)
		return daemon_main();
	if (strcmp(cmd, "daemon") == 0)
		return command_daemon(argc - 1, argv + 1);
	if (strcmp(cmd, "worker") == 0 && argc > 2 && strcmp(argv[2], "init") == 0)
		return worker_init_main(argc - 2, argv + 2);
	if (strcmp(cmd, "worker") == 0 && argc > 2 && strcmp(argv[2], "gc") == 0)
		return tier_gc_main(argc - 2, argv + 2);
	if (strcmp(cmd, "worker") == 0 && argc > 2 && strcmp(argv[2], "host-image") == 0) {
		char image[80];
		if (worker_host_image("/usr/local/bin:/usr/bin:/bin", image) < 0)
			return 1;
		printf("%s\n", image);
		return 0;
	}
	if (strcmp(cmd, "worker") == 0)
		return worker_main(argc - 1, argv + 1);
	if (strcmp(cmd, "scheduler") == 0)
		return scheduler_command(argc - 1, argv + 1);
	if (strcmp(cmd, "login") == 0)
		return login_main(argc - 1, argv + 1);
	if (strcmp(cmd, "logout") == 0)
		return logout_main(argc - 1, argv + 1);
	if (strcmp(cmd, "auth") == 0)
		return auth_main(argc - 1, argv + 1);
	if (strcmp(cmd, "token") == 0 && argc > 2 && strcmp(argv[2], "issue") == 0)
		return token_issue_main(argc - 2, argv + 2);
	if (strcmp(cmd, "image") == 0)
		return image_command(argc - 1, argv + 1);
	usage();
	return 2;
}
