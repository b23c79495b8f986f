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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/stat.h>
#include <linux/securebits.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"
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
	uint64_t eff = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
	if (have != eff) {
		/* After a switch of uid with PR_SET_KEEPCAPS: effective is empty. */
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
		data[0].effective = data[0].permitted;
		data[1].effective = data[1].permitted;
		if (syscall(SYS_capset, &h, data) < 0)
			return error_set(err, -errno, "dropping privileges: capset: %s", strerror(errno));
	}
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

static uint64_t worker_keep(const struct worker_config *c)
{
	char host[WORKER_HOSTPORT_MAX + 1];
	unsigned port = 0;
	if (worker_config_split_hostport(c->listen, host, &port) == 0 && port > 0 && port < 1024)
		return 1ull << CAP_NET_BIND_SERVICE;
	return 0;
}

int privilege_worker_user(const struct worker_config *c, uid_t *ret_uid, gid_t *ret_gid, struct error *err)
{
	if (geteuid() != 0 || !c->worker_user || !c->worker_user[0] || strcmp(c->worker_user, "root") == 0)
		return 0;
	struct passwd pw, *found = NULL;
	char pwbuf[4096];
	if (getpwnam_r(c->worker_user, &pw, pwbuf, sizeof(pwbuf), &found) != 0 || !found)
		return error_set(err, -ENOENT, "[worker] user \"%s\" does not exist (create it: useradd --system "
				 "--no-create-home --shell /usr/sbin/nologin %s)", c->worker_user, c->worker_user);
	if (pw.pw_uid == 0 || pw.pw_gid == 0)
		return error_set(err, -EPERM, "[worker] user \"%s\" has uid or gid 0", c->worker_user);
	*ret_uid = pw.pw_uid;
	*ret_gid = pw.pw_gid;
	return 1;
}

/* Gives the tree below top_fd to uid:gid, without following symlinks;
 * top: the state dir itself, whose "vms" (the VMs' run dirs, the
 * spawner's) stays root's. */
static int own_tree(int top_fd, uid_t uid, gid_t gid, bool top, unsigned depth)
{
	if (depth > 64)
		return -ELOOP;
	DIR *d = fdopendir(top_fd);
	if (!d) {
		close(top_fd);
		return -errno;
	}
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || (top && strcmp(e->d_name, "vms") == 0))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if ((st.st_uid != uid || st.st_gid != gid) &&
		    fchownat(dirfd(d), e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		/* chown clears set-id bits; nothing here has them. */
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				r = own_tree(sub, uid, gid, false, depth + 1);
		}
	}
	closedir(d);
	return r;
}

static int readable_by_worker(const char *what, const char *path, int mode, const char *user, struct error *err)
{
	if (path && access(path, mode) < 0)
		return error_set(err, -errno, "the worker user %s cannot %s %s (%s): make it so (docs/isolation.md)", user,
				 mode & W_OK ? "write" : "read", path, what);
	return 0;
}

int privilege_become_worker(const struct worker_config *c, struct error *err)
{
	static bool done;
	if (done)
		return 0;
	uid_t uid;
	gid_t gid;
	int r = privilege_worker_user(c, &uid, &gid, err);
	if (r <= 0) {
		if (r == 0 && geteuid() == 0)
			log_warn("worker: [worker] user is not set: the whole worker runs as root (only its threads are "
				 "split by capability; docs/isolation.md)");
		done = r == 0;
		return r;
	}
	/* The state dir: stores, audit log, staging (and images when they are
	 * there) become the user's, once. */
	struct stat st;
	if (stat(c->dir, &st) < 0 && (r = fs_mkdir_p(c->dir, 0700)) < 0)
		return error_set(err, r, "cannot create %s: %s", c->dir, strerror(-r));
	if (stat(c->dir, &st) < 0)
		return error_set(err, -errno, "%s: %s", c->dir, strerror(errno));
	if (st.st_uid != uid) {
		if (chown(c->dir, uid, gid) < 0)
			return error_set(err, -errno, "cannot give %s to %s: %s", c->dir, c->worker_user, strerror(errno));
		int fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || (r = own_tree(fd, uid, gid, true, 0)) < 0)
			return error_set(err, fd < 0 ? -errno : r, "cannot give %s to %s: %s", c->dir, c->worker_user,
					 strerror(fd < 0 ? errno : -r));
		log_info("worker: %s now belongs to %s", c->dir, c->worker_user);
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0)
		return error_set(err, -errno, "cannot become %s: %s", c->worker_user, strerror(errno));
	uint64_t keep = worker_keep(c);
	if ((r = privilege_drop(keep, err)) < 0)
		return r;
	if ((r = readable_by_worker("the state dir", c->dir, R_OK | W_OK | X_OK, c->worker_user, err)) < 0 ||
	    (r = readable_by_worker("[tls] cert", c->cert_file, R_OK, c->worker_user, err)) < 0 ||
	    (r = readable_by_worker("[tls] key", c->key_file, R_OK, c->worker_user, err)) < 0 ||
	    (r = readable_by_worker("[auth] token_key", c->token_key_file, R_OK, c->worker_user, err)) < 0 ||
	    (r = readable_by_worker("[s3] credentials_file", c->s3_credentials_file, R_OK, c->worker_user, err)) < 0)
		return r;
	done = true;
	log_info("worker: runs as %s (uid %u, gid %u), capabilities 0x%llx, NO_NEW_PRIVS set", c->worker_user,
		 (unsigned)uid, (unsigned)gid, (unsigned long long)keep);
	return 0;
}

int privilege_drop_for_worker(const struct worker_config *c, struct error *err)
{
	/* Nothing for this thread, and so for every thread it starts (the gRPC
	 * threads that talk to clients, the stores', the scheduler's): the VM
	 * pool's manager thread, started by runtime_microvm_prepare, keeps
	 * privilege_microvm_caps() for itself, unless the worker runs split
	 * (spawner.h): then the spawner process keeps them, and this process
	 * becomes [worker] user before the pool's thread exists. */
	uint64_t keep = worker_keep(c);
	bool root = geteuid() == 0;
	/* The microVM runtime first: it needs what is dropped below, and its
	 * manager thread must exist before this thread drops (capabilities
	 * are per thread, inherited at thread creation). */
	int r = runtime_microvm_prepare(c, err);
	if (r < 0)
		return r;
	if ((r = privilege_become_worker(c, err)) < 0)
		return r;
	bool split = root && geteuid() != 0;
	r = privilege_drop(keep, err);
	if (r < 0)
		return r;
	if (root && !split)
		log_info("worker: capabilities reduced to 0x%llx (bounding set too), NO_NEW_PRIVS set%s",
			 (unsigned long long)keep, strcmp(c->runtime, "microvm") == 0 ?
			 "; the VM pool's thread keeps SETUID, SETGID, KILL, CHOWN" : "");
	return 0;
}
