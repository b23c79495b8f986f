/*
 * hpcc's entry point: decides between a subcommand, a compile named on the
 * command line (`hpcc gcc ...`, `hpcc wrap -- gcc ...`), and masquerade (the
 * binary invoked through a symlink named like a compiler).
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fs.h"
#include "wrapper.h"

int main(int argc, char **argv)
{
	const char *self = argc > 0 ? path_basename(argv[0]) : "hpcc";
	if (strncmp(self, "hpcc", 4) != 0)
		return wrapper_main(argc, argv);  /* masquerade: argv[0] names the compiler */
	if (argc < 2) {
		command_usage();
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "wrap") == 0) {
		int i = 2;
		if (i < argc && strcmp(argv[i], "--") == 0)
			i++;
		if (i >= argc) {
			fprintf(stderr, "hpcc: wrap: missing compiler command (hpcc wrap -- gcc -c a.c)\n");
			return 2;
		}
		return wrapper_main(argc - i, argv + i);
	}
	if (strcmp(cmd, "init") == 0)
		return command_init(argc - 1, argv + 1);
	if (strcmp(cmd, "stats") == 0)
		return command_stats(argc - 1, argv + 1);
	if (strcmp(cmd, "clean") == 0)
		return command_clean(argc - 1, argv + 1);
	if (strcmp(cmd, "daemon") == 0)
		return command_daemon(argc - 1, argv + 1);
	if (strcmp(cmd, "audit") == 0)
		return command_audit(argc - 1, argv + 1);
	if (strcmp(cmd, "explain") == 0)
		return command_explain(argc - 1, argv + 1);
	if (strcmp(cmd, "inspect") == 0)
		return command_inspect(argc - 1, argv + 1);
	if (strcmp(cmd, "reproduce") == 0)
		return command_reproduce(argc - 1, argv + 1);
	if (strcmp(cmd, "worker") == 0 || strcmp(cmd, "token") == 0 || strcmp(cmd, "image") == 0 ||
	    strcmp(cmd, "scheduler") == 0 || strcmp(cmd, "login") == 0 || strcmp(cmd, "logout") == 0 ||
	    strcmp(cmd, "auth") == 0) {
		/* The worker, scheduler, token, image and login tools link grpc,
		 * libcurl, libarchive and jansson: they live in hpccd. */
		command_exec_hpccd(argv);
		fprintf(stderr, "hpcc: %s: hpccd is not installed beside hpcc\n", cmd);
		return 1;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("hpcc %s\n", HPCC_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		command_usage();
		return 0;
	}
	if (cmd[0] == '-') {
		fprintf(stderr, "hpcc: unknown option '%s' (see hpcc help)\n", cmd);
		return 2;
	}
	return wrapper_main(argc - 1, argv + 1);
}
