/*
 * `hpcc login`, `hpcc logout` and `hpcc auth status` (run by hpccd): sign in
 * at the tenant's IdP that the scheduler names, and manage the token file of
 * oauth.h. Each takes its argv with the command name first and returns the
 * process exit code, printing one clear line on error. See docs/auth.md.
 */
#pragma once

#define LOGIN_PASSWORD_MAX 1024          /* longer passwords are refused */
#define LOGIN_SCHEDULER_TIMEOUT_MS 10000 /* the GetTenantIdP call */

int login_main(int argc, char **argv);
int logout_main(int argc, char **argv);
/* `auth status`: argv is {"auth", "status", options...}. Exit 0 when the
 * session is usable (a valid access token or a refresh token), 1 otherwise. */
int auth_main(int argc, char **argv);
