/*
 * The QEMU driver: Debian's qemu-system-x86_64 with the `microvm` machine
 * (virtio over MMIO, no PCI, no firmware tables). Every device is named on
 * the command line and nothing else exists: -nodefaults drops the default
 * NIC, VGA, monitor and serial port, -nic none makes "no network" explicit,
 * -no-user-config keeps /etc/qemu out. The toolchain image is a read-only
 * virtio disk; the agent is reached over a virtio-serial port whose host end
 * is a Unix socket in run_dir that QEMU listens on from its start, before
 * the guest boots. -sandbox turns on QEMU's seccomp filter, denying
 * obsolete calls, set*id, fork/exec and scheduler/affinity changes.
 *
 * The kernel halts on a triple fault (reboot=t) and a panic reboots at once
 * (panic=-1), and -no-reboot turns any reboot into QEMU's exit: a guest that
 * ends, on purpose or not, ends the VMM.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "vmm.h"
#include "vmm_driver.h"

#define QEMU_AGENT_SOCKET "agent.sock"

/* asprintf that returns NULL on failure (asprintf leaves *ret undefined). */
static char *format(const char *fmt, ...) _printf_(1, 2);
static char *format(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static int push_all(struct strv *s, const char *const *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = strv_push(s, items[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int qemu_build(const struct vmm_config *c, struct strv *ret_argv, struct error *err)
{
	int r = vmm_config_check(c, &vmm_qemu, err);
	if (r < 0)
		return r;
	bool kvm = strcmp(c->accel, "kvm") == 0;
	_cleanup_free_ char *smp = format("%u", c->vcpus);
	_cleanup_free_ char *memory = format("%u", c->memory_mib);
	_cleanup_free_ char *drive = format("if=none,id=root,file=%s,format=raw,readonly=on", c->rootfs);
	_cleanup_free_ char *chardev =
		format("socket,id=agent,path=%s/" QEMU_AGENT_SOCKET ",server=on,wait=off", c->run_dir);
	_cleanup_free_ char *port = format("virtserialport,chardev=agent,name=%s", VMM_AGENT_PORT_NAME);
	_cleanup_free_ char *append = format("console=ttyS0 reboot=t panic=-1 quiet random.trust_cpu=on hpcc.channel=virtio:%s hpcc.vm=%s",
					     VMM_AGENT_PORT_NAME, c->vm_id);
	if (!smp || !memory || !drive || !chardev || !port || !append)
		return error_set(err, -ENOMEM, "out of memory");

	const char *machine[] = {
		c->binary,
		"-M", "microvm,acpi=off",
		"-accel", kvm ? "kvm" : "tcg",
		"-cpu", kvm ? "host" : "max",
		"-smp", smp,
		"-m", memory,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
	};
	const char *sandbox[] = {
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	};
	const char *devices[] = {
		"-nic", "none",
		/* vmm_spawn sends stdout and stderr to run_dir/console.log. */
		"-serial", "stdio",
		"-drive", drive,
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		"-chardev", chardev,
		"-device", port,
		"-kernel", c->kernel,
		"-initrd", c->initrd,
		"-append", append,
	};
	_cleanup_strv_ struct strv argv = { 0 };
	if ((r = push_all(&argv, machine, ARRAY_SIZE(machine))) < 0 ||
	    (c->sandbox && (r = push_all(&argv, sandbox, ARRAY_SIZE(sandbox))) < 0) ||
	    (r = push_all(&argv, devices, ARRAY_SIZE(devices))) < 0)
		return error_set(err, r, "out of memory");
	*ret_argv = argv;
	argv = (struct strv){ 0 };
	return 0;
}

/* Only run_dir is used (and checked): the caller may pass a config that
 * holds nothing else. QEMU's chardev socket accepts as soon as QEMU runs; bytes written before
 * the guest opens its port wait in the socket. QEMU serves one client at a
 * time: a second connection is accepted by the kernel but not read. */
static int qemu_connect(const struct vmm_config *c, int timeout_ms, int *ret_fd, struct error *err)
{
	return vmm_unix_connect(c ? c->run_dir : NULL, QEMU_AGENT_SOCKET, ret_fd, err);
}

const struct vmm_ops vmm_qemu = {
	.name = "qemu",
	.build = qemu_build,
	.connect = qemu_connect,
};
