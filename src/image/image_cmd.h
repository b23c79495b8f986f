/*
 * `hpcc image import|list|rm` (run by hpccd): the command-line face of the
 * image store. Each subcommand prints one line on error and returns the
 * process exit code (0, 1 for a failure, 2 for a usage error).
 */
#pragma once

/* argv[0] is "image". */
int image_command(int argc, char **argv);
