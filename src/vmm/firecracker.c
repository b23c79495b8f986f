/*
 * The Firecracker driver. Firecracker takes the whole machine from one JSON
 * file (--config-file) and, with --no-api, opens no API socket and boots at
 * once. The file names the kernel and the initramfs (the agent), one
 * read-only drive that is *not* the root device (the guest boots from the
 * initramfs and finds the image as /dev/vda), the vCPUs and memory, and a
 * vsock device whose host end is a Unix socket in run_dir. It has no
 * "network-interfaces" key at all, so the VM has no network device.
 * Firecracker has no emulation: accel must be "kvm".
 *
 * The host reaches the agent with Firecracker's host-initiated vsock
 * protocol: connect to the Unix socket, send "CONNECT <port>\n", read
 * "OK <host port>\n"; after that the socket carries the agent's stream.
 */
#include <errno.h>
#include <stdint.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "macro.h"
#include "vmm.h"
#include "vmm_driver.h"

#define FC_CONFIG_FILE "firecracker.json"
#define FC_VSOCK_SOCKET "vsock.sock"
/* Context id of the guest; 0-2 are reserved (2 is the host). */
#define FC_GUEST_CID 3

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* The configuration Firecracker reads, as JSON text (malloc'd). */
static char *fc_config_json(const struct vmm_config *c, const char *vsock_path)
{
	_cleanup_free_ char *boot_args = NULL;
	if (asprintf(&boot_args, "console=ttyS0 reboot=k panic=1 pci=off quiet random.trust_cpu=on hpcc.channel=vsock:%u hpcc.vm=%s",
		     VMM_AGENT_VSOCK_PORT, c->vm_id) < 0)
		return NULL;
	json_auto_t *root = json_pack(
		"{s:{s:s, s:s, s:s}, s:[{s:s, s:s, s:b, s:b}], s:{s:I, s:I, s:b}, s:{s:I, s:s}}",
		"boot-source",
		"kernel_image_path", c->kernel,
		"initrd_path", c->initrd,
		"boot_args", boot_args,
		"drives",
		"drive_id", "image",
		"path_on_host", c->rootfs,
		"is_root_device", 0,
		"is_read_only", 1,
		"machine-config",
		"vcpu_count", (json_int_t)c->vcpus,
		"mem_size_mib", (json_int_t)c->memory_mib,
		"smt", 0,
		"vsock",
		"guest_cid", (json_int_t)FC_GUEST_CID,
		"uds_path", vsock_path);
	if (!root)
		return NULL;
	return json_dumps(root, JSON_INDENT(2));
}

/* Firecracker's --id takes [A-Za-z0-9-] only: '_' of a vm_id becomes '-'
 * there (the id names the VM in Firecracker's own log lines only). */
static char *fc_instance_id(const char *vm_id)
{
	char *id = strdup(vm_id);
	for (char *p = id; p && *p; p++)
		if (*p == '_')
			*p = '-';
	return id;
}

static int fc_build(const struct vmm_config *c, struct strv *ret_argv, struct error *err)
{
	int r = vmm_config_check(c, &vmm_firecracker, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *config_path = path_in(c->run_dir, FC_CONFIG_FILE);
	_cleanup_free_ char *vsock_path = path_in(c->run_dir, FC_VSOCK_SOCKET);
	_cleanup_free_ char *id = fc_instance_id(c->vm_id);
	if (!config_path || !vsock_path || !id)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_free_ char *text = fc_config_json(c, vsock_path);
	if (!text)
		return error_set(err, -ENOMEM, "firecracker: cannot build the configuration (out of memory)");

	struct stat dir;
	if (lstat(c->run_dir, &dir) < 0)
		return error_set(err, negative_errno(), "firecracker: cannot stat run_dir %.200s: %s", c->run_dir,
				 strerror(errno));
	if (!S_ISDIR(dir.st_mode))
		return error_set(err, -ENOTDIR, "firecracker: run_dir %.200s is not a directory", c->run_dir);
	r = fs_write_atomic(config_path, text, strlen(text), 0600, false);
	if (r < 0)
		return error_set(err, r, "firecracker: cannot write %.200s: %s", config_path, strerror(-r));
	/* Firecracker reads the file as the VM's user, who owns run_dir; a
	 * worker running as root gives it the file (still mode 0600). */
	if (geteuid() == 0 && dir.st_uid != 0 && lchown(config_path, dir.st_uid, dir.st_gid) < 0)
		return error_set(err, negative_errno(), "firecracker: cannot give %.200s to uid %u: %s", config_path,
				 (unsigned)dir.st_uid, strerror(errno));
	/* Firecracker binds uds_path and fails if anything is there (a socket
	 * left by an earlier VMM in this run_dir). */
	if (unlink(vsock_path) < 0 && errno != ENOENT)
		return error_set(err, negative_errno(), "firecracker: cannot remove %.200s: %s", vsock_path,
				 strerror(errno));

	_cleanup_strv_ struct strv argv = { 0 };
	const char *items[] = { c->binary, "--no-api", "--config-file", config_path, "--id", id };
	for (size_t i = 0; i < ARRAY_SIZE(items); i++)
		if ((r = strv_push(&argv, items[i])) < 0)
			return error_set(err, r, "out of memory");
	*ret_argv = argv;
	argv = (struct strv){ 0 };
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { fd, events, 0 };
		int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return negative_errno();
	}
}

/* "OK " then 1..10 digits for a value that fits 32 bits, nothing else. */
static bool handshake_answer_ok(const char *line)
{
	if (strncmp(line, "OK ", 3) != 0)
		return false;
	const char *digits = line + 3;
	size_t n = strspn(digits, "0123456789");
	if (n == 0 || n > 10 || digits[n] != '\0')
		return false;
	return strtoull(digits, NULL, 10) <= UINT32_MAX;
}

int vmm_firecracker_handshake(int fd, int timeout_ms, struct error *err)
{
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	char command[32];
	int len = snprintf(command, sizeof(command), "CONNECT %u\n", VMM_AGENT_VSOCK_PORT);
	for (int sent = 0; sent < len;) {
		/* MSG_NOSIGNAL: a VMM that went away is an error, not a SIGPIPE. */
		ssize_t n = send(fd, command + sent, (size_t)(len - sent), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			sent += (int)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return error_set(err, negative_errno(), "firecracker: cannot send the vsock CONNECT: %s",
					 strerror(errno));
		int r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return error_set(err, r, "firecracker: cannot send the vsock CONNECT within %d ms", timeout_ms);
	}

	/* One byte at a time: what follows the newline is the agent's. */
	char line[VMM_HANDSHAKE_LINE_MAX + 1];
	size_t used = 0;
	for (;;) {
		int r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return error_set(err, r, "firecracker: no answer to the vsock CONNECT within %d ms", timeout_ms);
		char ch;
		ssize_t n = recv(fd, &ch, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return error_set(err, negative_errno(), "firecracker: cannot read the vsock answer: %s",
					 strerror(errno));
		if (n == 0 && used == 0)
			return error_set(err, -ECONNRESET, "firecracker: the VMM closed the vsock connection: nothing "
					 "listens on guest port %u", VMM_AGENT_VSOCK_PORT);
		if (n == 0)
			return error_set(err, -EPROTO, "firecracker: the vsock answer ends before its newline");
		if (ch == '\n')
			break;
		/* The newline counts towards the cap. */
		if (used + 1 >= VMM_HANDSHAKE_LINE_MAX)
			return error_set(err, -EPROTO, "firecracker: the vsock answer is longer than %d bytes",
					 VMM_HANDSHAKE_LINE_MAX);
		line[used++] = ch;
	}
	line[used] = '\0';
	if (memchr(line, '\0', used) || !handshake_answer_ok(line))
		return error_set(err, -EPROTO, "firecracker: unexpected vsock answer \"%s\" (want \"OK <port>\")", line);
	return 0;
}

/* Only run_dir is used (and checked): the caller may pass a config that
 * holds nothing else. */
static int fc_connect(const struct vmm_config *c, int timeout_ms, int *ret_fd, struct error *err)
{
	_cleanup_close_ int fd = -1;
	int r = vmm_unix_connect(c ? c->run_dir : NULL, FC_VSOCK_SOCKET, &fd, err);
	if (r < 0)
		return r;
	struct error local = { 0 };
	r = vmm_firecracker_handshake(fd, timeout_ms, &local);
	/* The socket is Firecracker's and is up from its start; the agent
	 * listens only once the guest has booted. Until then Firecracker
	 * closes each connection: "not yet", like a missing socket. */
	if (r == -ECONNRESET)
		return -EAGAIN;
	if (r < 0)
		return error_set(err, r, "%s", local.msg);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

const struct vmm_ops vmm_firecracker = {
	.name = "firecracker",
	.build = fc_build,
	.connect = fc_connect,
};
