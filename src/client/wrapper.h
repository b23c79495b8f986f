/*
 * The compile path of the hpcc binary: `hpcc gcc ...`, `hpcc wrap -- gcc
 * ...` and masquerade symlinks all end here.
 */
#pragma once

/* argv[0] is the compiler as the user named it. Never returns an hpcc
 * failure as the build's result: on any internal error it runs the real
 * compiler untouched. Returns the exit code for the process. */
int wrapper_main(int argc, char **argv);
