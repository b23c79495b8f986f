/*
 * PID 1 in the compile VM: mounts the kernel file systems, refuses to
 * serve if a network interface exists, pins the hostname, builds the
 * compilers' root (the read-only image under a tmpfs overlay, with a
 * minimal /dev and a /tmp only root can write), opens the host channel
 * named on the kernel command line and serves it. Every way out ends in a
 * power-off (sync, then reboot(RB_AUTOBOOT): the VM has no ACPI, QEMU runs
 * with -no-reboot and the kernel with reboot=t, so a reboot stops the VM
 * and a power-off request would only halt the CPUs).
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define MERGED "/merged"
#define IMAGE_DEVICE "/dev/vda"
#define CHANNEL_DEFAULT_VIRTIO "hpcc.0"
#define CHANNEL_DEFAULT_VSOCK 1024u
#define DEVICE_WAIT_MS 5000   /* virtio devices probe before /init runs; a margin */
#define HOST_WAIT_MS 60000    /* the host connects its end of the channel late */

struct channel_spec {
	bool vsock;
	char port_name[65];
	unsigned port;
};

static double uptime_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void power_off(const char *why)
{
	agent_log("%s; powering off at uptime %.3f s", why, uptime_s());
	sync();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static int mount_fs(const char *src, const char *dir, const char *type, unsigned long flags, const char *opts,
		    char *why, size_t why_len)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (mount(src, dir, type, flags, opts) < 0 && !(errno == EBUSY && strcmp(type, "devtmpfs") == 0)) {
		snprintf(why, why_len, "cannot mount %s (%s) on %s: %s", src, type, dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* fds 0-2 are the console when the kernel found /dev/console in the
 * initramfs; otherwise open it now that devtmpfs provides it. */
static void console_setup(void)
{
	int fd = -1;

	for (int i = 0; i < 3; i++) {
		if (fcntl(i, F_GETFD) >= 0)
			continue;
		if (fd < 0)
			fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0 && fd != i)
			dup2(fd, i);
	}
	if (fd > 2)
		close(fd);
}

static uint64_t half_ram(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0 || si.totalram == 0)
		return 256ull << 20;
	return (uint64_t)si.totalram * si.mem_unit / 2;
}

/* Mounts a file system on dirfd/name (created if missing), never through
 * a symlink the image may hold there: the target is the opened directory. */
static int mount_at(int dirfd, const char *name, const char *type, unsigned long flags, const char *opts, char *why,
		    size_t why_len)
{
	char target[64];
	int fd, r = 0;

	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST) {
		snprintf(why, why_len, "cannot create %s/%s: %s", MERGED, name, strerror(errno));
		return -1;
	}
	fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "cannot open %s/%s (a symlink in the image?): %s", MERGED, name,
			 strerror(errno));
		return -1;
	}
	snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
	if (mount(type, target, type, flags, opts) < 0) {
		snprintf(why, why_len, "cannot mount %s on %s/%s: %s", type, MERGED, name, strerror(errno));
		r = -1;
	}
	close(fd);
	return r;
}

static int make_dev_nodes(int merged_fd, char *why, size_t why_len)
{
	static const struct {
		const char *name;
		unsigned minor;
	} nodes[] = { { "null", 3 }, { "zero", 5 }, { "full", 7 }, { "random", 8 }, { "urandom", 9 } };
	int dev = openat(merged_fd, "dev", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (dev < 0) {
		snprintf(why, why_len, "cannot open %s/dev: %s", MERGED, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(nodes); i++)
		if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(1, nodes[i].minor)) < 0) {
			snprintf(why, why_len, "cannot create %s/dev/%s: %s", MERGED, nodes[i].name, strerror(errno));
			close(dev);
			return -1;
		}
	close(dev);
	return 0;
}

static int wait_for_device(const char *path)
{
	for (int waited = 0; waited < DEVICE_WAIT_MS; waited += 10) {
		struct timespec ts = { .tv_nsec = 10 * 1000000L };
		if (access(path, F_OK) == 0)
			return 0;
		nanosleep(&ts, NULL);
	}
	return access(path, F_OK) == 0 ? 0 : -1;
}

/* /image (squashfs, read-only) + /rw (tmpfs) -> /merged (overlay), then
 * /merged/dev and /merged/tmp. No /proc or /sys in /merged: gcc and g++
 * -c read neither (checked with strace), and a compiler has no business
 * seeing the agent's processes. No place is writable by every compile
 * user: /tmp is root's (a compiler's TMPDIR is <staging>/tmp) and there
 * is no /dev/shm, so one exec cannot leave files for another, nor fill
 * the VM's memory for the ones after it. */
static int mount_image(int *ret_merged_fd, char *why, size_t why_len)
{
	const unsigned long safe = MS_NOSUID | MS_NODEV;
	char opts[128];
	int fd;

	if (wait_for_device(IMAGE_DEVICE) < 0) {
		snprintf(why, why_len, "no image disk %s", IMAGE_DEVICE);
		return -1;
	}
	if (mount_fs(IMAGE_DEVICE, "/image", "squashfs", MS_RDONLY | safe, NULL, why, why_len) < 0)
		return -1;
	snprintf(opts, sizeof(opts), "mode=0755,size=%llu", (unsigned long long)half_ram());
	if (mount_fs("tmpfs", "/rw", "tmpfs", safe, opts, why, why_len) < 0)
		return -1;
	if ((mkdir("/rw/upper", 0755) < 0 && errno != EEXIST) || (mkdir("/rw/work", 0755) < 0 && errno != EEXIST)) {
		snprintf(why, why_len, "cannot create the overlay directories: %s", strerror(errno));
		return -1;
	}
	if (mount_fs("overlay", MERGED, "overlay", safe, "lowerdir=/image,upperdir=/rw/upper,workdir=/rw/work", why,
		     why_len) < 0)
		return -1;
	fd = open(MERGED, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "cannot open %s: %s", MERGED, strerror(errno));
		return -1;
	}
	if (mount_at(fd, "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k", why, why_len) < 0 ||
	    make_dev_nodes(fd, why, why_len) < 0)
		goto fail;
	/* It hides the image's /tmp (usually 1777) and holds only the mount
	 * points of staging directories placed under /tmp. */
	if (mount_at(fd, "tmp", "tmpfs", safe | MS_NOEXEC, "mode=0755,size=1m", why, why_len) < 0)
		goto fail;
	*ret_merged_fd = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

static bool port_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Reads the value of key=<value> from the kernel command line into buf
 * (the last one wins): 1 if found, 0 if not, -1 if /proc/cmdline cannot
 * be read. */
static int cmdline_value(const char *key, char *buf, size_t buf_len)
{
	char line[4096], *p;
	size_t klen = strlen(key);
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC), found = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	line[n > 0 ? n : 0] = '\0';
	for (p = line; *p;) {
		size_t len = strcspn(p, " \t\n");
		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(buf, buf_len, "%.*s", (int)(len - klen - 1), p + klen + 1);
			found = 1;
		}
		p += len;
		p += strspn(p, " \t\n");
	}
	return found;
}

/* hpcc.channel=virtio:<port name> | vsock:<port> */
static int parse_channel(struct channel_spec *c, char *why, size_t why_len)
{
	char value[128];
	int r = cmdline_value("hpcc.channel", value, sizeof(value));

	*c = (struct channel_spec){ .vsock = false };
	snprintf(c->port_name, sizeof(c->port_name), "%s", CHANNEL_DEFAULT_VIRTIO);
	if (r < 0) {
		snprintf(why, why_len, "cannot read /proc/cmdline: %s", strerror(errno));
		return -1;
	}
	if (r == 0)
		return 0;
	if (strncmp(value, "virtio:", 7) == 0 && port_name_ok(value + 7)) {
		snprintf(c->port_name, sizeof(c->port_name), "%.64s", value + 7); /* <= 64: checked */
		return 0;
	}
	if (strncmp(value, "vsock:", 6) == 0) {
		char *end;
		unsigned long port;
		errno = 0;
		port = strtoul(value + 6, &end, 10);
		if (errno == 0 && end != value + 6 && *end == '\0' && value[6] != '-' && port > 0 && port < 0xffffffffUL) {
			c->vsock = true;
			c->port = (unsigned)port;
			return 0;
		}
	}
	snprintf(why, why_len, "bad hpcc.channel=%.100s (want virtio:<port name> or vsock:<port>)", value);
	return -1;
}

_Noreturn void boot_main(void)
{
	struct agent a = { .root = MERGED, .boot = true, .sigfd = -1, .chan = -1, .uid_base = AGENT_UID_BASE };
	struct channel_spec spec;
	char why[512], names[512];
	long cpus;
	int r;

	umask(0);
	signal(SIGPIPE, SIG_IGN);
	if (mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755", why, sizeof(why)) < 0) {
		console_setup();
		power_off(why);
	}
	console_setup();
	if (mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, why, sizeof(why)) < 0 ||
	    mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, why, sizeof(why)) < 0)
		power_off(why);
	/* hpcc.vm=<id> names the VM in the worker's logs and audit rows; the
	 * console says it too, so the two can be matched. */
	if (cmdline_value("hpcc.vm", names, sizeof(names)) <= 0 || !port_name_ok(names))
		snprintf(names, sizeof(names), "?");
	agent_log("%s starting in vm %s at uptime %.3f s", HPCC_VERSION, names, uptime_s());

	r = netcheck_run("/sys", names, sizeof(names));
	if (r != 0) {
		if (r > 0)
			snprintf(why, sizeof(why), "refusing to serve: network interface(s) besides lo: %.400s", names);
		else
			snprintf(why, sizeof(why), "refusing to serve: the network check failed: %s", strerror(-r));
		power_off(why);
	}
	if (sethostname("hpcc", 4) < 0) {
		snprintf(why, sizeof(why), "cannot set the hostname: %s", strerror(errno));
		power_off(why);
	}
	if (mount_image(&a.root_fd, why, sizeof(why)) < 0)
		power_off(why);
	a.staging_size = half_ram();
	agent_raise_nofile();
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	a.vcpus = cpus > 0 && cpus < 1024 ? (unsigned)cpus : 1;

	if (parse_channel(&spec, why, sizeof(why)) < 0)
		power_off(why);
	if (spec.vsock)
		r = channel_open_vsock(spec.port, HOST_WAIT_MS, &a.chan, why, sizeof(why));
	else {
		r = channel_open_virtio(spec.port_name, DEVICE_WAIT_MS, &a.chan, why, sizeof(why));
		if (r == 0 && channel_wait_host(a.chan, HOST_WAIT_MS) < 0) {
			snprintf(why, sizeof(why), "the host did not connect to port %s within %d s", spec.port_name,
				 HOST_WAIT_MS / 1000);
			r = -1;
		}
	}
	if (r < 0)
		power_off(why);
	if (spec.vsock)
		snprintf(names, sizeof(names), "vsock:%u", spec.port);
	else
		snprintf(names, sizeof(names), "virtio:%s", spec.port_name);
	agent_log("serving %s with %u vCPUs, hello at uptime %.3f s", names, a.vcpus, uptime_s());
	r = agent_serve(&a);
	power_off(r < 0 ? a.fatal : "the host closed the channel");
}
