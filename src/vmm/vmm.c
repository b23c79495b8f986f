/*
 * The driver-independent half of the VMM layer (DESIGN §6): the driver
 * registry, the checks every microVM configuration passes before a driver
 * turns it into a command line, the choice between KVM and QEMU's TCG
 * emulation, and the life cycle of a VMM process. A VMM runs as an
 * unprivileged user in a session of its own, with nothing inherited from the
 * worker but /dev/null and its console log, and dies with the thread that
 * started it; stopping it is SIGKILL to its group and a bounded reap.
 *
 * The process is started with fork+execve rather than posix_spawn because
 * the credential change, the parent-death signal and the file size limit
 * must be in place, in that order, before the VMM runs. Between fork and
 * execve the child calls only async-signal-safe functions on data the
 * parent prepared, as the worker is multi-threaded.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "macro.h"
#include "vmm.h"
#include "vmm_driver.h"
#include "vmm_jail.h"

#define VMM_PATH_MAX 4096
#define VMM_ID_MAX 64
#define VMM_VCPUS_MAX 8u
#define VMM_MEMORY_MIN_MIB 128u
#define VMM_MEMORY_MAX_MIB 65536u
/* The longest socket name a driver puts in run_dir ("agent.sock",
 * "vsock.sock"), with its slash: sun_path must hold run_dir plus this. */
#define VMM_SOCKET_SUFFIX_MAX (sizeof("/agent.sock") - 1)
/* The console log is written by the guest (through the VMM's serial port):
 * past this size the VMM's writes fail instead of filling the disk. */
#define VMM_CONSOLE_MAX ((rlim_t)16 << 20)
/* How long vmm_kill waits for a SIGKILLed VMM to be reapable. */
#define VMM_KILL_WAIT_MS 5000
/* How long vmm_spawn waits for the child's exec report (see there). */
#define VMM_EXEC_REPORT_MS 5000

const struct vmm_ops *vmm_find(const char *name)
{
	static const struct vmm_ops *const drivers[] = { &vmm_qemu, &vmm_firecracker };
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

/* A path handed to a VMM: absolute and normalised (so that what the checks
 * see is what the VMM opens), without ',' (QEMU's option separator: a comma
 * in file= or path= would start a new option) and without control bytes
 * (a newline would end a line of a log or a config). */
static int check_path(const char *what, const char *path, struct error *err)
{
	if (!path || !path[0])
		return error_set(err, -EINVAL, "vmm: %s is not set", what);
	if (strnlen(path, VMM_PATH_MAX + 1) > VMM_PATH_MAX)
		return error_set(err, -ENAMETOOLONG, "vmm: %s is longer than %d bytes", what, VMM_PATH_MAX);
	if (path[0] != '/')
		return error_set(err, -EINVAL, "vmm: %s \"%.200s\" is not an absolute path", what, path);
	for (const char *p = path; *p; p++) {
		if (*p == ',')
			return error_set(err, -EINVAL, "vmm: %s \"%.200s\" contains ',' (QEMU's option separator)",
					 what, path);
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return error_set(err, -EINVAL, "vmm: %s \"%.200s\" contains a control character", what, path);
	}
	_cleanup_free_ char *normal = path_normalize(path);
	if (!normal)
		return error_set(err, -ENOMEM, "out of memory");
	if (strcmp(normal, path) != 0)
		return error_set(err, -EINVAL, "vmm: %s \"%.200s\" is not normalised (\"%.200s\")", what, path, normal);
	return 0;
}

static bool vm_id_ok(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++) {
		char ch = id[n];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
			  ch == '-';
		if (!ok || n >= VMM_ID_MAX)
			return false;
	}
	return n > 0;
}

int vmm_config_check(const struct vmm_config *c, const struct vmm_ops *ops, struct error *err)
{
	if (!c || !ops)
		return error_set(err, -EINVAL, "vmm: no configuration or no driver");
	int r;
	if ((r = check_path("binary", c->binary, err)) < 0 || (r = check_path("kernel", c->kernel, err)) < 0 ||
	    (r = check_path("initrd", c->initrd, err)) < 0 || (r = check_path("rootfs", c->rootfs, err)) < 0 ||
	    (r = check_path("run_dir", c->run_dir, err)) < 0)
		return r;
	/* The sockets live in run_dir, and a Unix socket path has a fixed size. */
	if (strlen(c->run_dir) + VMM_SOCKET_SUFFIX_MAX >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return error_set(err, -ENAMETOOLONG, "vmm: run_dir \"%.200s\" is too long for a Unix socket path "
				 "(at most %zu bytes)", c->run_dir,
				 sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1 - VMM_SOCKET_SUFFIX_MAX);
	if (c->vcpus < 1 || c->vcpus > VMM_VCPUS_MAX)
		return error_set(err, -EINVAL, "vmm: vcpus %u is out of range (1..%u)", c->vcpus, VMM_VCPUS_MAX);
	if (c->memory_mib < VMM_MEMORY_MIN_MIB || c->memory_mib > VMM_MEMORY_MAX_MIB)
		return error_set(err, -EINVAL, "vmm: memory_mib %u is out of range (%u..%u)", c->memory_mib,
				 VMM_MEMORY_MIN_MIB, VMM_MEMORY_MAX_MIB);
	if (!c->vm_id || !vm_id_ok(c->vm_id))
		return error_set(err, -EINVAL, "vmm: vm_id \"%.80s\" must be 1..%d characters of [A-Za-z0-9_-]",
				 c->vm_id ? c->vm_id : "", VMM_ID_MAX);
	if (!c->accel || (strcmp(c->accel, "kvm") != 0 && strcmp(c->accel, "tcg") != 0))
		return error_set(err, -EINVAL, "vmm: accel \"%.40s\" is neither \"kvm\" nor \"tcg\"",
				 c->accel ? c->accel : "");
	/* Only QEMU can emulate a CPU; Firecracker is KVM or nothing. */
	if (strcmp(c->accel, "tcg") == 0 && ops != &vmm_qemu)
		return error_set(err, -EINVAL, "vmm: the %s driver runs on KVM only (accel \"tcg\" is QEMU's)",
				 ops->name);
	return 0;
}

/* True when the CPU advertises hardware virtualisation: "vmx" (Intel) or
 * "svm" (AMD) among the words of the first "flags" line of /proc/cpuinfo. */
static bool cpu_has_virtualisation(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t size = 0;
	ssize_t n;
	bool found = false;
	while ((n = getline(&line, &size, f)) > 0) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		char *colon = strchr(line, ':');
		for (char *word = colon ? colon + 1 : line + n; *word && !found;) {
			word += strspn(word, " \t\n");
			size_t len = strcspn(word, " \t\n");
			found = (len == 3 && (strncmp(word, "vmx", 3) == 0 || strncmp(word, "svm", 3) == 0));
			word += len;
		}
		break;
	}
	free(line);
	fclose(f);
	return found;
}

/* Whether /dev/kvm can run guests here; if not, why, in *why. */
static bool host_has_kvm(char *why, size_t why_size)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(why, why_size, "/dev/kvm cannot be opened read-write (%s)", strerror(errno));
		return false;
	}
	close(fd);
	/* Some hosts expose a /dev/kvm that emulates without VT-x/AMD-V: a
	 * Linux guest does not run on it (FACTS "MicroVMs"). */
	if (!cpu_has_virtualisation()) {
		snprintf(why, why_size, "the CPU advertises neither vmx nor svm, so /dev/kvm cannot run guests");
		return false;
	}
	return true;
}

int vmm_pick_accel(const char *want, bool allow_tcg, const char **ret, struct error *err)
{
	if (!want || (strcmp(want, "auto") != 0 && strcmp(want, "kvm") != 0 && strcmp(want, "tcg") != 0))
		return error_set(err, -EINVAL, "accel \"%.40s\" is not one of auto, kvm, tcg", want ? want : "");
	if (strcmp(want, "tcg") == 0) {
		if (!allow_tcg)
			return error_set(err, -EPERM, "accel tcg (software emulation, about 30x slower) needs "
					 "allow_tcg = true in worker.ini");
		*ret = "tcg";
		return 0;
	}
	char why[256];
	if (host_has_kvm(why, sizeof(why))) {
		*ret = "kvm";
		return 0;
	}
	if (strcmp(want, "kvm") == 0)
		return error_set(err, -ENODEV, "accel kvm is not available: %s", why);
	if (!allow_tcg)
		return error_set(err, -ENODEV, "no usable KVM (%s); set allow_tcg = true in worker.ini to run "
				 "microVMs under QEMU's software emulation (about 30x slower)", why);
	*ret = "tcg";
	return 0;
}

/* Everything the child needs, prepared by the parent so that the child
 * allocates nothing between fork and execve. */
struct spawn_setup {
	const char *path;
	char *const *argv;
	char *const *envp;
	int null_fd, console_fd, status_fd; /* all >= 3 */
	bool change_ids;
	uid_t uid;
	gid_t gid;
	pid_t parent;
	int cgroup_fds[VMM_CGROUP_DIRS]; /* cgroup.procs of the VM's group, or -1 */
	const struct sock_fprog *filter; /* NULL: no seccomp filter */
};

/* Closes every fd from first up, by the slow way if close_range is missing. */
static void close_from(int first)
{
	if (close_range((unsigned)first, ~0U, 0) == 0)
		return;
	struct rlimit lim;
	int max = 65536;
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < (rlim_t)max)
		max = (int)lim.rlim_cur;
	for (int fd = first; fd < max; fd++)
		(void)close(fd);
}

/* Runs in the child between fork and execve: async-signal-safe calls only. */
static _Noreturn void spawn_child(const struct spawn_setup *s)
{
	int status_fd = s->status_fd;
	/* Handlers and ignored signals of the worker (it ignores SIGPIPE and
	 * blocks SIGTERM) must not reach the VMM. */
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &dfl, NULL);
	sigset_t none;
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		goto fail;
	/* Into the VM's cgroup first, while still root (a v1 hierarchy lets
	 * only root or the task's owner move it): everything the VMM does
	 * from here on counts against its limits. "0" means the writer. */
	for (size_t i = 0; i < VMM_CGROUP_DIRS; i++)
		if (s->cgroup_fds[i] >= 0 && write(s->cgroup_fds[i], "0", 1) != 1)
			goto fail;
	if (s->change_ids) {
		if (setgroups(0, NULL) < 0 || setresgid(s->gid, s->gid, s->gid) < 0 ||
		    setresuid(s->uid, s->uid, s->uid) < 0)
			goto fail;
		if (getuid() != s->uid || geteuid() != s->uid || getgid() != s->gid)
			goto fail;
	}
	/* After the credential change, which clears it. The signal fires when
	 * the *thread* that forked exits, not the worker process: vmm_spawn's
	 * caller keeps that thread alive as long as the VM runs (vmm.h). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		goto fail;
	/* The parent died before the line above: nobody would kill us. */
	if (getppid() != s->parent)
		_exit(127);
	if (setsid() < 0)
		goto fail;
	if (dup2(s->null_fd, 0) < 0 || dup2(s->console_fd, 1) < 0 || dup2(s->console_fd, 2) < 0)
		goto fail;
	/* The exec report pipe goes to fd 3 (close-on-exec), everything
	 * above it is closed: the VMM inherits no socket, key or store fd. */
	if (status_fd != 3) {
		if (dup3(status_fd, 3, O_CLOEXEC) < 0)
			goto fail;
		status_fd = 3;
	}
	close_from(4);
	/* A guest that floods its console gets EFBIG past the cap instead of
	 * filling the disk; SIGXFSZ would kill the VMM instead. */
	struct rlimit fsize = { VMM_CONSOLE_MAX, VMM_CONSOLE_MAX };
	struct sigaction ign = { .sa_handler = SIG_IGN };
	if (setrlimit(RLIMIT_FSIZE, &fsize) < 0 || sigaction(SIGXFSZ, &ign, NULL) < 0)
		goto fail;
	/* Sockets and files the VMM creates in run_dir are its user's and, by
	 * the run dir's set-group-id bit, group root's (the worker, which has
	 * no CAP_DAC_OVERRIDE, connects through the group), nobody else's;
	 * the worker's working directory is none of its business (every path
	 * it gets is absolute). */
	umask(007);
	if (chdir("/") < 0)
		goto fail;
	/* Last, so that the filter covers the VMM and nothing of ours:
	 * NO_NEW_PRIVS (a setuid binary cannot give the VMM back what it
	 * lost, and the kernel requires it for an unprivileged filter), then
	 * the filter itself. Only execve and, on failure, write and _exit run
	 * under it here. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		goto fail;
	if (s->filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, s->filter, 0, 0) < 0)
		goto fail;
	execve(s->path, s->argv, s->envp);
fail:;
	int e = errno;
	(void)!write(status_fd, &e, sizeof(e));
	_exit(127);
}


static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the child's exec report: EOF when execve succeeded (the pipe is
 * close-on-exec), errno when it failed. Returns the child's errno, 0 for
 * EOF, or 0 after VMM_EXEC_REPORT_MS: a child that another thread forked
 * at the same moment keeps a copy of the write end until its own execve,
 * and a VMM that failed after all is seen by vmm_exited. */
static int read_exec_report(int fd)
{
	int64_t deadline = now_ms() + VMM_EXEC_REPORT_MS;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { fd, POLLIN, 0 };
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		int child_errno = 0;
		ssize_t got = read(fd, &child_errno, sizeof(child_errno));
		if (got < 0 && errno == EINTR)
			continue;
		if (got == (ssize_t)sizeof(child_errno))
			return child_errno > 0 ? child_errno : EIO;
		return 0;
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int vmm_spawn(const struct strv *argv, const char *run_dir, uid_t uid, gid_t gid, struct vmm_process *ret,
	      struct error *err)
{
	struct vmm_jail jail = { .uid = uid, .gid = gid, .seccomp = true };
	return vmm_spawn_jailed(argv, run_dir, &jail, ret, err);
}

int vmm_spawn_jailed(const struct strv *argv, const char *run_dir, const struct vmm_jail *jail,
		     struct vmm_process *ret, struct error *err)
{
	if (!jail)
		return error_set(err, -EINVAL, "vmm: no jail");
	uid_t uid = jail->uid;
	gid_t gid = jail->gid;
	if (!argv || argv->n == 0 || !argv->v[0] || argv->v[0][0] != '/')
		return error_set(err, -EINVAL, "vmm: the command line must start with an absolute path");
	if (!run_dir || run_dir[0] != '/')
		return error_set(err, -EINVAL, "vmm: run_dir must be an absolute path");
	bool change_ids = geteuid() == 0;
	if (change_ids && (uid == 0 || gid == 0))
		return error_set(err, -EPERM, "vmm: a VMM never runs as root (uid %u, gid %u asked)", (unsigned)uid,
				 (unsigned)gid);

	_cleanup_close_ int dir_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0)
		return error_set(err, negative_errno(), "vmm: cannot open run_dir %.200s: %s", run_dir, strerror(errno));
	/* Opened here, by the worker: the VMM writes through the inherited fd,
	 * so who owns the file does not matter, and a symlink is refused. */
	/* The run dir belongs to the VMM user, so a VMM of another VM may have
	 * planted something there: O_NONBLOCK so that a FIFO cannot block the
	 * worker, then only a regular file with one link is accepted. */
	_cleanup_close_ int console_fd = fd_above_stdio(openat(
		dir_fd, "console.log", O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0600));
	if (console_fd < 0)
		return error_set(err, negative_errno(), "vmm: cannot open %.200s/console.log: %s", run_dir,
				 strerror(errno));
	struct stat console_st;
	if (fstat(console_fd, &console_st) < 0 || !S_ISREG(console_st.st_mode) || console_st.st_nlink != 1)
		return error_set(err, -EPERM, "vmm: %.200s/console.log is not a plain file", run_dir);
	_cleanup_close_ int null_fd = fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
	if (null_fd < 0)
		return error_set(err, negative_errno(), "vmm: cannot open /dev/null: %s", strerror(errno));
	int status_pipe[2] = { -1, -1 };
	if (pipe2(status_pipe, O_CLOEXEC) < 0)
		return error_set(err, negative_errno(), "vmm: cannot create a pipe: %s", strerror(errno));
	status_pipe[0] = fd_above_stdio(status_pipe[0]);
	status_pipe[1] = fd_above_stdio(status_pipe[1]);
	if (status_pipe[0] < 0 || status_pipe[1] < 0) {
		int r = negative_errno();
		close_fd(&status_pipe[0]);
		close_fd(&status_pipe[1]);
		return error_set(err, r, "vmm: cannot create a pipe: %s", strerror(-r));
	}

	struct sock_filter insns[VMM_SECCOMP_MAX];
	struct sock_fprog prog = { 0 };
	if (jail->seccomp) {
		size_t n = 0;
		int r = vmm_seccomp_build(jail->allow_vsock, insns, ARRAY_SIZE(insns), &n);
		if (r < 0) {
			close_fd(&status_pipe[0]);
			close_fd(&status_pipe[1]);
			return error_set(err, r, "vmm: cannot build the seccomp filter");
		}
		prog = (struct sock_fprog){ .len = (unsigned short)n, .filter = insns };
	}
	/* The VMM needs no environment of the worker's (which may hold store
	 * credentials): a fixed one. */
	static char *const envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL };
	struct spawn_setup s = {
		.path = argv->v[0],
		.argv = strv_argv(argv),
		.envp = envp,
		.null_fd = null_fd,
		.console_fd = console_fd,
		.status_fd = status_pipe[1],
		.change_ids = change_ids,
		.uid = uid,
		.gid = gid,
		.parent = getpid(),
		.cgroup_fds = { -1, -1, -1 },
		.filter = jail->seccomp ? &prog : NULL,
	};
	for (unsigned i = 0; jail->cgroup && i < jail->cgroup->n && i < VMM_CGROUP_DIRS; i++)
		s.cgroup_fds[i] = jail->cgroup->procs_fd[i];
	pid_t pid = fork();
	if (pid == 0)
		spawn_child(&s);
	int fork_errno = errno;
	close_fd(&status_pipe[1]);
	if (pid < 0) {
		close_fd(&status_pipe[0]);
		return error_set(err, -fork_errno, "vmm: cannot fork: %s", strerror(fork_errno));
	}
	int child_errno = read_exec_report(status_pipe[0]);
	close_fd(&status_pipe[0]);
	if (child_errno != 0) {
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return error_set(err, -child_errno, "vmm: cannot start %.200s: %s", argv->v[0], strerror(child_errno));
	}
	log_debug("vmm: started %s as pid %d (uid %u) in %s%s%s", argv->v[0], (int)pid,
		  (unsigned)(change_ids ? uid : geteuid()), run_dir, jail->cgroup ? ", own cgroup" : "",
		  jail->seccomp ? ", seccomp" : "");
	ret->pid = pid;
	return 0;
}

void vmm_kill(struct vmm_process *p)
{
	if (!p || p->pid <= 0)
		return;
	/* Until it is reaped the child holds its pid, and so its group id:
	 * neither kill can reach anyone else. The group is the session the
	 * VMM made with setsid(); the second kill covers a child that had not
	 * got there. */
	(void)kill(-p->pid, SIGKILL);
	(void)kill(p->pid, SIGKILL);
	int64_t deadline = now_ms() + VMM_KILL_WAIT_MS;
	for (;;) {
		int status;
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid || (r < 0 && errno == ECHILD)) {
			p->pid = 0;
			return;
		}
		if (r < 0 && errno != EINTR)
			break;
		if (now_ms() >= deadline)
			break;
		struct timespec pause = { 0, 10 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
	/* Stuck in the kernel (an uninterruptible I/O): the pid stays set, so
	 * that a later vmm_kill or vmm_exited reaps it. */
	log_warn("vmm: pid %d did not die within %d ms of SIGKILL", (int)p->pid, VMM_KILL_WAIT_MS);
}

bool vmm_exited(struct vmm_process *p, int *ret_status)
{
	if (!p || p->pid <= 0)
		return true;
	siginfo_t si = { 0 };
	/* WNOWAIT: the zombie keeps the group id reserved while whatever the
	 * VMM left in its group is killed. */
	if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
		if (errno == ECHILD) {
			p->pid = 0;
			return true;
		}
		return false;
	}
	if (si.si_pid != p->pid)
		return false;
	(void)kill(-p->pid, SIGKILL);
	int status = 0;
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
	if (ret_status)
		*ret_status = status;
	return true;
}

bool vmm_peek_exited(const struct vmm_process *p, int *ret_status)
{
	if (!p || p->pid <= 0)
		return true;
	siginfo_t si = { 0 };
	if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return errno == ECHILD;
	if (si.si_pid != p->pid)
		return false;
	if (ret_status) {
		/* The wait status waitpid would give, for WIFEXITED/WIFSIGNALED. */
		*ret_status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
	}
	return true;
}

int vmm_unix_connect(const char *run_dir, const char *name, int *ret_fd, struct error *err)
{
	int r = check_path("run_dir", run_dir, err);
	if (r < 0)
		return r;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", run_dir, name);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return error_set(err, -ENAMETOOLONG, "vmm: socket path %.200s/%s is too long", run_dir, name);
	struct stat dir;
	if (lstat(run_dir, &dir) < 0)
		return error_set(err, negative_errno(), "vmm: cannot stat run_dir %.200s: %s", run_dir, strerror(errno));
	if (!S_ISDIR(dir.st_mode))
		return error_set(err, -ENOTDIR, "vmm: run_dir %.200s is not a directory", run_dir);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return error_set(err, negative_errno(), "vmm: cannot create a socket: %s", strerror(errno));
	/* Non-blocking, so that a full listen backlog is "not yet" and not a
	 * wait without a deadline; a Unix connect never is in progress. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED || errno == EAGAIN)
			return -EAGAIN;
		return error_set(err, negative_errno(), "vmm: cannot connect to %s: %s", sa.sun_path, strerror(errno));
	}
	struct ucred peer;
	socklen_t len = sizeof(peer);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0)
		return error_set(err, negative_errno(), "vmm: cannot read the peer of %s: %s", sa.sun_path,
				 strerror(errno));
	if (peer.uid != dir.st_uid)
		return error_set(err, -EPERM, "vmm: %s is served by uid %u, not by run_dir's owner %u: not the VMM's "
				 "socket", sa.sun_path, (unsigned)peer.uid, (unsigned)dir.st_uid);
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return error_set(err, negative_errno(), "vmm: cannot make the socket blocking: %s", strerror(errno));
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* The real uid of /proc/<name> from its status file (the directory's
 * owner is root for a process that made itself non-dumpable), or -1. */
static long task_real_uid(int proc_fd, const char *name)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "%s/status", name);
	int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	const char *u = strstr(text, "\nUid:");
	return u ? strtol(u + 5, NULL, 10) : -1;
}

bool vmm_kill_uid(uid_t uid)
{
	for (int round = 0; round < 200; round++) {
		bool any = false;
		DIR *d = opendir("/proc");
		if (!d)
			return false;
		for (struct dirent *e; (e = readdir(d));) {
			char *end;
			long pid = strtol(e->d_name, &end, 10);
			if (*end || pid <= 0 || task_real_uid(dirfd(d), e->d_name) != (long)uid)
				continue;
			any = true;
			(void)kill((pid_t)pid, SIGKILL);
		}
		closedir(d);
		if (!any)
			return true;
		struct timespec pause = { 0, 10 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
	return false;
}

void vmm_remove_run_dir(const char *dir)
{
	/* Flat: the VMM makes only sockets, its config and the console log. */
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				(void)unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	(void)rmdir(dir);
}
