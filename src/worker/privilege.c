/*
 * Dropping the worker's capabilities (see privilege.h) with the raw
 * capget/capset and prctl calls: the worker needs four capabilities at
 * most and no library for that.
 *
 * The order matters: the bounding set and the securebits need CAP_SETPCAP,
 * which the final capset gives up, and NO_NEW_PRIVS comes last so that a
 * failure before it leaves a clear error rather than a half-locked process.
 */
#include "privilege.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "runtime_microvm.h"
#include "worker_config.h"

uint64_t privilege_microvm_caps(void)
{
	return (1ull << CAP_SETUID) | (1ull << CAP_SETGID) | (1ull << CAP_KILL) | (1ull << CAP_CHOWN);
}

static int cap_get(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	return syscall(SYS_capget, &h, data) < 0 ? -errno : 0;
}

int privilege_drop(uint64_t keep, struct error *err)
{
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	int r = cap_get(data);
	if (r < 0)
		return error_set(err, r, "dropping privileges: capget: %s", strerror(-r));
	uint64_t have = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
	if (have & (1ull << CAP_SETPCAP)) {
		/* The bounding set: nothing dropped here can come back through
		 * an execve, whatever the file's capabilities say. */
		for (int cap = 0; cap < 64; cap++) {
			if (keep & (1ull << cap))
				continue;
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
				if (errno == EINVAL)
					break; /* past the kernel's last capability */
				return error_set(err, -errno, "dropping privileges: capability %d from the bounding set: %s",
						 cap, strerror(errno));
			}
		}
		/* uid 0 gets no capabilities from an execve (an unsafe-local
		 * compile runs with none), and this cannot be undone. */
		if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) < 0)
			return error_set(err, -errno, "dropping privileges: SECBIT_NOROOT: %s", strerror(errno));
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return error_set(err, -errno, "dropping privileges: ambient capabilities: %s", strerror(errno));
	uint64_t left = have & keep;
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	for (int i = 0; i < 2; i++) {
		data[i].permitted = data[i].effective = (uint32_t)(left >> (32 * i));
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &h, data) < 0)
		return error_set(err, -errno, "dropping privileges: capset: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return error_set(err, -errno, "dropping privileges: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	return 0;
}

int privilege_drop_for_worker(const struct worker_config *c, struct error *err)
{
	/* Nothing for this thread, and so for every thread it starts (the gRPC
	 * threads that talk to clients, the stores', the scheduler's): the VM
	 * pool's manager thread, started by runtime_microvm_prepare, keeps
	 * privilege_microvm_caps() for itself. */
	uint64_t keep = 0;
	char host[WORKER_HOSTPORT_MAX + 1];
	unsigned port = 0;
	if (worker_config_split_hostport(c->listen, host, &port) == 0 && port > 0 && port < 1024)
		keep |= 1ull << CAP_NET_BIND_SERVICE;
	bool root = geteuid() == 0;
	/* The microVM runtime first: it needs what is dropped below, and its
	 * manager thread must exist before this thread drops (capabilities
	 * are per thread, inherited at thread creation). */
	int r = runtime_microvm_prepare(c, err);
	if (r < 0)
		return r;
	r = privilege_drop(keep, err);
	if (r < 0)
		return r;
	if (root)
		log_info("worker: capabilities reduced to 0x%llx (bounding set too), NO_NEW_PRIVS set%s",
			 (unsigned long long)keep, strcmp(c->runtime, "microvm") == 0 ?
			 "; the VM pool's thread keeps SETUID, SETGID, KILL, CHOWN" : "");
	return 0;
}
