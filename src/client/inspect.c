/* Placeholder while this command is being written (issue 7). */
#include <stdio.h>

#include "commands.h"

int command_inspect(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("hpcc: not built yet\n", stderr);
	return 2;
}

int command_reproduce(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fputs("hpcc: not built yet\n", stderr);
	return 2;
}
