/*
 * `hpcc worker init DIR`: a ready-to-run worker directory (worker.ini, a
 * self-signed TLS certificate and key, an Ed25519 routing-token key pair
 * until a scheduler hands the verification key out), and the lines that a
 * client's [remote] section needs. `hpcc token issue` signs a routing token
 * with that key, for setups without a scheduler and for tests.
 */
#pragma once

int worker_init_main(int argc, char **argv);
int token_issue_main(int argc, char **argv);
/* The image digest that names the host toolchain for unsafe-local. */
int worker_host_image(const char *search_path, char ret[80]);
