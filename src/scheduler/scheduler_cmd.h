/* `hpcc scheduler init|run` (hpccd). argv[0] is "scheduler". */
#pragma once

int scheduler_command(int argc, char **argv);
