/*
 * One cgroup per VMM (see vmm_jail.h): the worker makes a group of its own,
 * "hpcc-<pid>", below the cgroup it runs in, and in it one group per VM,
 * named after the VM, with a memory limit (the guest's RAM plus the VMM's
 * overhead: a guest that makes QEMU balloon is killed by the OOM killer of
 * its own group, not the host's), a pids limit (a fork bomb in a
 * compromised VMM stops there) and a CPU quota (a VM gets its vCPUs'
 * worth of host time, no more). The VMM enters its group between fork and
 * execve by writing "0" to cgroup.procs through an fd the worker opened,
 * so that it never runs a single instruction of its own outside it.
 *
 * cgroup v2 is used where the unified hierarchy offers memory and pids and
 * lets us enable them for our subtree (a v2 group with processes cannot
 * hand controllers down, so this fails when the worker sits in a non-root
 * group of its own: then v1). cgroup v1 uses the memory, pids and cpu
 * hierarchies, each mounted at <root>/<controller> as on Debian's hosts
 * with the legacy layout; cpu is optional.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "macro.h"
#include "vmm_jail.h"

#define CGROUP_PATH_MAX 1024
#define CGROUP_FILE_MAX 4096     /* /proc/self/cgroup, cgroup.controllers */
#define CGROUP_REMOVE_WAIT_MS 2000
#define CPU_PERIOD_US 100000u

struct vmm_cgroups {
	bool v2;
	unsigned n;
	char *dirs[VMM_CGROUP_DIRS];  /* the worker's group in each hierarchy */
	bool has_cpu;
};

static const char *const v1_controllers[] = { "memory", "pids", "cpu" };

static int write_file(const char *dir, const char *name, const char *text)
{
	char path[CGROUP_PATH_MAX + 64];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	int r = fs_write_all(fd, text, strlen(text));
	close(fd);
	return r;
}

static int read_file(const char *dir, const char *name, char *buf, size_t size)
{
	char path[CGROUP_PATH_MAX + 64];
	if (size == 0 || (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, size - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	return 0;
}

static bool exists(const char *dir, const char *name)
{
	char path[CGROUP_PATH_MAX + 64];
	struct stat st;
	return (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) < sizeof(path) && stat(path, &st) == 0;
}

/* True if the space-separated list holds word. */
static bool has_word(const char *list, const char *word, const char *seps)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		p += strspn(p, seps);
		size_t len = strcspn(p, seps);
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p += len;
	}
	return false;
}

/* The worker's own cgroup path in a v1 hierarchy (controller) or in v2
 * (controller NULL), from /proc/self/cgroup: "N:ctrl,ctrl:/path". */
static int own_path(const char *controller, char *out, size_t size)
{
	char text[CGROUP_FILE_MAX];
	int r = read_file("/proc/self", "cgroup", text, sizeof(text));
	if (r < 0)
		return r;
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		bool match = controller ? has_word(c1 + 1, controller, ",") : strcmp(line, "0") == 0 && c1[1] == '\0';
		if (!match)
			continue;
		const char *path = c2 + 1;
		/* "/" is the root: no suffix. A path with ".." never comes from
		 * the kernel; refuse it rather than climb. */
		if (strstr(path, "/..") || path[0] != '/')
			return -EINVAL;
		if ((size_t)snprintf(out, size, "%s", strcmp(path, "/") == 0 ? "" : path) >= size)
			return -ENAMETOOLONG;
		return 0;
	}
	return -ENOENT;
}

/* The directory under which our group goes: the hierarchy's mount plus our
 * own path, when that is visible (it is not in a cgroup namespace whose
 * mount shows only part of the tree: then the mount itself). */
static int parent_dir(const char *mount, const char *controller, char *out, size_t size)
{
	char own[CGROUP_PATH_MAX];
	if (own_path(controller, own, sizeof(own)) < 0)
		own[0] = '\0';
	if ((size_t)snprintf(out, size, "%s%s", mount, own) >= size)
		return -ENAMETOOLONG;
	if (!exists(out, "cgroup.procs") && (size_t)snprintf(out, size, "%s", mount) >= size)
		return -ENAMETOOLONG;
	return 0;
}

/* Removes every VM group in dir, then dir. */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_type == DT_DIR && e->d_name[0] != '.')
				(void)unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
		closedir(d);
	}
	(void)rmdir(dir);
}

/* Groups "hpcc-<pid>" whose worker is gone (its VMMs died with it). */
static void sweep(const char *parent)
{
	DIR *d = opendir(parent);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "hpcc-", 5) != 0)
			continue;
		char *end = NULL;
		long pid = strtol(e->d_name + 5, &end, 10);
		if (!end || *end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char sub[CGROUP_PATH_MAX + 64];
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", parent, e->d_name) < sizeof(sub))
			remove_tree(sub);
	}
	closedir(d);
}

static int make_group(const char *parent, const char *name, char **ret)
{
	_cleanup_free_ char *dir = path_join(parent, name);
	if (!dir)
		return -ENOMEM;
	if (strlen(dir) >= CGROUP_PATH_MAX)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	*ret = TAKE_PTR(dir);
	return 0;
}

static int open_v2(const char *fs_root, const char *name, struct vmm_cgroups *g, struct error *err)
{
	char mount[CGROUP_PATH_MAX], parent[CGROUP_PATH_MAX], controllers[CGROUP_FILE_MAX];
	if ((size_t)snprintf(mount, sizeof(mount), "%s/unified", fs_root) >= sizeof(mount))
		return error_set(err, -ENAMETOOLONG, "cgroup root too long");
	if (!exists(mount, "cgroup.controllers") && (size_t)snprintf(mount, sizeof(mount), "%s", fs_root) >= sizeof(mount))
		return error_set(err, -ENAMETOOLONG, "cgroup root too long");
	if (!exists(mount, "cgroup.controllers"))
		return error_set(err, -ENODEV, "no cgroup v2 hierarchy under %s", fs_root);
	int r = parent_dir(mount, NULL, parent, sizeof(parent));
	if (r == 0)
		r = read_file(parent, "cgroup.controllers", controllers, sizeof(controllers));
	if (r == 0)
		sweep(parent);
	if (r < 0)
		return error_set(err, r, "cgroup v2 at %s: %s", mount, strerror(-r));
	if (!has_word(controllers, "memory", " ") || !has_word(controllers, "pids", " "))
		return error_set(err, -ENODEV, "cgroup v2 at %s offers \"%.100s\", not memory and pids", parent,
				 controllers);
	g->has_cpu = has_word(controllers, "cpu", " ");
	const char *enable = g->has_cpu ? "+memory +pids +cpu" : "+memory +pids";
	_cleanup_free_ char *dir = NULL;
	if ((r = make_group(parent, name, &dir)) < 0)
		return error_set(err, r, "cannot create a cgroup in %s: %s", parent, strerror(-r));
	/* The parent hands the controllers to our group, which hands them to
	 * the VM groups. */
	if ((r = write_file(parent, "cgroup.subtree_control", enable)) < 0 ||
	    (r = write_file(dir, "cgroup.subtree_control", enable)) < 0) {
		(void)rmdir(dir);
		return error_set(err, r, "cannot enable %s for the cgroups below %s: %s", enable, parent, strerror(-r));
	}
	g->v2 = true;
	g->n = 1;
	g->dirs[0] = TAKE_PTR(dir);
	return 0;
}

static int open_v1(const char *fs_root, const char *name, struct vmm_cgroups *g, struct error *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		char mount[CGROUP_PATH_MAX], parent[CGROUP_PATH_MAX];
		bool optional = strcmp(v1_controllers[i], "cpu") == 0;
		if ((size_t)snprintf(mount, sizeof(mount), "%s/%s", fs_root, v1_controllers[i]) >= sizeof(mount))
			return error_set(err, -ENAMETOOLONG, "cgroup root too long");
		if (!exists(mount, "cgroup.procs")) {
			if (optional)
				continue;
			return error_set(err, -ENODEV, "no cgroup v1 %s hierarchy at %s", v1_controllers[i], mount);
		}
		int r = parent_dir(mount, v1_controllers[i], parent, sizeof(parent));
		if (r == 0) {
			sweep(parent);
			r = make_group(parent, name, &g->dirs[g->n]);
		}
		if (r < 0)
			return error_set(err, r, "cannot create a cgroup in %s: %s", parent, strerror(-r));
		g->n++;
		g->has_cpu = g->has_cpu || optional;
	}
	return 0;
}

int vmm_cgroups_open(const char *fs_root, const char *name, struct vmm_cgroups **ret, struct error *err)
{
	struct vmm_cgroups *g = calloc(1, sizeof(*g));
	if (!g)
		return error_set(err, -ENOMEM, "out of memory");
	struct error v2err = { 0 };
	int r = open_v2(fs_root, name, g, &v2err);
	if (r < 0) {
		r = open_v1(fs_root, name, g, err);
		if (r < 0) {
			/* Both reasons: the operator fixes one of them. */
			char v1msg[sizeof(err->msg)];
			snprintf(v1msg, sizeof(v1msg), "%s", err->msg);
			error_clear(err);
			error_set(err, r, "%s; %s", v2err.msg, v1msg);
			vmm_cgroups_close(g);
			return r;
		}
	}
	*ret = g;
	return 0;
}

const char *vmm_cgroups_version(const struct vmm_cgroups *g)
{
	return g && g->v2 ? "v2" : "v1";
}

void vmm_cgroups_close(struct vmm_cgroups *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < g->n; i++) {
		remove_tree(g->dirs[i]);
		free(g->dirs[i]);
	}
	free(g);
}

static void cgroup_init(struct vmm_cgroup *c)
{
	*c = (struct vmm_cgroup){ 0 };
	for (unsigned i = 0; i < VMM_CGROUP_DIRS; i++)
		c->procs_fd[i] = -1;
}

/* Writes the limits that belong to the hierarchy of dir. */
static int set_limits(const struct vmm_cgroups *g, const char *dir, const struct vmm_cgroup_limits *l)
{
	char text[64];
	int r = 0;
	uint64_t quota = (uint64_t)l->cpu_percent * CPU_PERIOD_US / 100;
	if (g->v2) {
		snprintf(text, sizeof(text), "%" PRIu64, l->memory_bytes);
		if ((r = write_file(dir, "memory.max", text)) < 0)
			return r;
		/* No swap: a VM that outgrows its limit is killed, not slowed. */
		(void)write_file(dir, "memory.swap.max", "0");
		snprintf(text, sizeof(text), "%u", l->pids_max);
		if ((r = write_file(dir, "pids.max", text)) < 0)
			return r;
		if (g->has_cpu && l->cpu_percent) {
			snprintf(text, sizeof(text), "%" PRIu64 " %u", quota, CPU_PERIOD_US);
			r = write_file(dir, "cpu.max", text);
		}
		return r;
	}
	if (exists(dir, "memory.limit_in_bytes")) {
		snprintf(text, sizeof(text), "%" PRIu64, l->memory_bytes);
		if ((r = write_file(dir, "memory.limit_in_bytes", text)) < 0)
			return r;
		(void)write_file(dir, "memory.memsw.limit_in_bytes", text);
	} else if (exists(dir, "pids.max")) {
		snprintf(text, sizeof(text), "%u", l->pids_max);
		r = write_file(dir, "pids.max", text);
	} else if (exists(dir, "cpu.cfs_quota_us") && l->cpu_percent) {
		snprintf(text, sizeof(text), "%u", CPU_PERIOD_US);
		if ((r = write_file(dir, "cpu.cfs_period_us", text)) < 0)
			return r;
		snprintf(text, sizeof(text), "%" PRIu64, quota);
		r = write_file(dir, "cpu.cfs_quota_us", text);
	}
	return r;
}

int vmm_cgroup_create(struct vmm_cgroups *g, const char *vm_id, const struct vmm_cgroup_limits *limits,
		      struct vmm_cgroup *ret, struct error *err)
{
	if (!g || !vm_id || !vm_id[0] || strchr(vm_id, '/') || vm_id[0] == '.' || !limits)
		return error_set(err, -EINVAL, "cgroup: bad VM name");
	struct vmm_cgroup c;
	cgroup_init(&c);
	int r = 0;
	for (unsigned i = 0; i < g->n && r == 0; i++) {
		_cleanup_free_ char *dir = path_join(g->dirs[i], vm_id);
		if (!dir) {
			r = error_set(err, -ENOMEM, "out of memory");
			break;
		}
		/* A leftover of the same name has no task (its VMM was reaped). */
		(void)rmdir(dir);
		if (mkdir(dir, 0755) < 0) {
			r = error_set(err, -errno, "cannot create the cgroup %s: %s", dir, strerror(errno));
			break;
		}
		c.dirs[c.n++] = TAKE_PTR(dir);
		if ((r = set_limits(g, c.dirs[c.n - 1], limits)) < 0) {
			error_set(err, r, "cannot set the limits of the cgroup %s: %s", c.dirs[c.n - 1], strerror(-r));
			break;
		}
		_cleanup_free_ char *procs = path_join(c.dirs[c.n - 1], "cgroup.procs");
		int fd = procs ? fd_above_stdio(open(procs, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) : -1;
		if (fd < 0) {
			r = error_set(err, procs ? -errno : -ENOMEM, "cannot open %s: %s", procs ? procs : "cgroup.procs",
				      strerror(errno));
			break;
		}
		c.procs_fd[c.n - 1] = fd;
	}
	if (r < 0) {
		vmm_cgroup_remove(&c);
		return r;
	}
	*ret = c;
	return 0;
}

void vmm_cgroup_close_fds(struct vmm_cgroup *c)
{
	for (unsigned i = 0; c && i < VMM_CGROUP_DIRS; i++) {
		if (c->procs_fd[i] >= 0)
			close(c->procs_fd[i]);
		c->procs_fd[i] = -1;
	}
}

int vmm_cgroup_kill_all(const struct vmm_cgroup *c)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		bool any = false;
		for (unsigned i = 0; c && i < c->n; i++) {
			char procs[8192];
			if (!c->dirs[i] || read_file(c->dirs[i], "cgroup.procs", procs, sizeof(procs)) < 0)
				continue;
			for (char *line = procs, *end; *line; line = end) {
				long pid = strtol(line, &end, 10);
				if (end == line)
					break;
				if (pid > 0) {
					any = true;
					(void)kill((pid_t)pid, SIGKILL);
				}
				while (*end == '\n')
					end++;
			}
		}
		if (!any)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > CGROUP_REMOVE_WAIT_MS)
			return -EBUSY;
		struct timespec pause = { 0, 10 * 1000 * 1000 };
		nanosleep(&pause, NULL);
	}
}

void vmm_cgroup_remove(struct vmm_cgroup *c)
{
	if (!c)
		return;
	vmm_cgroup_close_fds(c);
	for (unsigned i = 0; i < c->n; i++) {
		if (!c->dirs[i])
			continue;
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		while (rmdir(c->dirs[i]) < 0 && errno == EBUSY) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
			    CGROUP_REMOVE_WAIT_MS)
				break;
			struct timespec pause = { 0, 10 * 1000 * 1000 };
			nanosleep(&pause, NULL);
		}
		free(c->dirs[i]);
		c->dirs[i] = NULL;
	}
	c->n = 0;
}

int vmm_cgroup_read(const struct vmm_cgroup *c, const char *file, char *buf, size_t size)
{
	for (unsigned i = 0; c && i < c->n; i++)
		if (c->dirs[i] && exists(c->dirs[i], file))
			return read_file(c->dirs[i], file, buf, size);
	return -ENOENT;
}
