/*
 * Unit tests for the VMM drivers (src/vmm/): the QEMU command line holds
 * every security option and no network device, for every configuration the
 * tests generate; the Firecracker configuration file parses back to exactly
 * the fields we mean, is private to the VM's user and has no network key;
 * every bad configuration field is refused; Firecracker's vsock handshake
 * accepts only "OK <port>\n" and leaves the agent's bytes alone; the
 * accelerator choice refuses TCG unless allowed; a VMM process runs as an
 * unprivileged user in its own session with only /dev/null and its console
 * log, dies with its parent, and is reaped by vmm_kill. The last test starts
 * the real QEMU with the generated command line (skipped without QEMU or a
 * guest kernel): it proves QEMU 7.2 accepts every option, -sandbox included.
 *
 * The tests that switch users need root; they are skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "fs.h"
#include "testutil.h"
#include "vmm.h"
#include "vmm_driver.h"

/* A hang must fail the test, not the suite's timeout. */
#define TEST_TIMEOUT_SECONDS 60
#define SMOKE_TIMEOUT_SECONDS 150
#define NOBODY 65534

struct fixture {
	char *tmpdir;
	char *run_dir;
	char *kernel, *initrd, *rootfs;
	struct vmm_config c;
};

static char *join(const char *a, const char *b)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", a, b) > 0);
	return p;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static int setup(void **state)
{
	alarm(TEST_TIMEOUT_SECONDS);
	struct fixture *f = calloc(1, sizeof(*f));
	void *dir = NULL;
	if (!f || testutil_setup_tmpdir(&dir) < 0)
		return -1;
	f->tmpdir = dir;
	/* The VM's user must reach run_dir and read the guest files. */
	if (chmod(f->tmpdir, 0755) < 0)
		return -1;
	f->run_dir = join(f->tmpdir, "run");
	if (mkdir(f->run_dir, 0700) < 0)
		return -1;
	f->kernel = join(f->tmpdir, "vmlinux");
	f->initrd = join(f->tmpdir, "initrd.cpio");
	f->rootfs = join(f->tmpdir, "rootfs.img");
	f->c = (struct vmm_config){
		.binary = "/usr/bin/qemu-system-x86_64",
		.kernel = f->kernel,
		.initrd = f->initrd,
		.rootfs = f->rootfs,
		.run_dir = f->run_dir,
		.accel = "kvm",
		.vcpus = 2,
		.memory_mib = 512,
		.vm_id = "t1-vm_A",
		.sandbox = true,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	void *dir = f->tmpdir;
	testutil_teardown_tmpdir(&dir);
	free(f->run_dir);
	free(f->kernel);
	free(f->initrd);
	free(f->rootfs);
	free(f);
	alarm(0);
	return 0;
}

/* The whole file as a string (tests read small files only). */
static char *read_text(const char *path)
{
	struct buf b = { 0 };
	buf_init(&b, 0);
	if (fs_read_file(path, 32 << 20, &b) < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* ---- command lines ---- */

/* Index of opt immediately followed by value (value NULL: any), or -1. */
static int option_index(char *const *argv, const char *opt, const char *value)
{
	for (int i = 1; argv[i]; i++)
		if (strcmp(argv[i], opt) == 0 && argv[i + 1] && (!value || strcmp(argv[i + 1], value) == 0))
			return i;
	return -1;
}

static int count_option(char *const *argv, const char *opt)
{
	int n = 0;
	for (int i = 1; argv[i]; i++)
		n += strcmp(argv[i], opt) == 0;
	return n;
}

static void assert_option(char *const *argv, const char *opt, const char *value)
{
	if (option_index(argv, opt, value) < 0)
		fail_msg("option %s %s missing from the command line", opt, value ? value : "");
}

/* What in a VMM command line could give the guest a network, or NULL:
 * QEMU's -net, -netdev and -nic (other than "-nic none"), in one or two
 * dashes, a -device whose driver is a NIC model, and any user-mode
 * ("user,") or netdev reference anywhere. */
static const char *network_reason(char *const *argv)
{
	static const char *const nic_models[] = { "net", "e1000", "rtl8139", "ne2k", "pcnet", "i8255", "vmxnet",
						  "tulip", "igb", "sungem", "lan9118", "smc91c111", "eepro100" };
	for (int i = 1; argv[i]; i++) {
		const char *a = argv[i];
		const char *next = argv[i + 1];
		const char *opt = a[0] == '-' && a[1] == '-' ? a + 1 : a;
		if (strcmp(opt, "-net") == 0 || strcmp(opt, "-netdev") == 0)
			return a;
		if (strcmp(opt, "-nic") == 0 && (!next || strcmp(next, "none") != 0))
			return a;
		if (strcmp(opt, "-device") == 0 && next) {
			const char *driver = strncmp(next, "driver=", 7) == 0 ? next + 7 : next;
			char name[128];
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(driver, ","), driver);
			for (size_t m = 0; m < sizeof(nic_models) / sizeof(nic_models[0]); m++)
				if (strcasestr(name, nic_models[m]))
					return next;
		}
		if (strstr(a, "user,") || strstr(a, "netdev"))
			return a;
	}
	return NULL;
}

static void assert_no_network(char *const *argv)
{
	const char *why = network_reason(argv);
	if (why)
		fail_msg("network in the VMM command line: %s", why);
}

static struct strv build_ok(const struct vmm_ops *ops, const struct vmm_config *c)
{
	struct strv argv = { 0 };
	struct error e = { 0 };
	int r = ops->build(c, &argv, &e);
	if (r < 0)
		fail_msg("build failed: %d %s", r, e.msg);
	assert_non_null(argv.v);
	assert_no_network(strv_argv(&argv));
	return argv;
}

static void test_find(void **state)
{
	assert_ptr_equal(vmm_find("qemu"), &vmm_qemu);
	assert_ptr_equal(vmm_find("firecracker"), &vmm_firecracker);
	assert_null(vmm_find("QEMU"));
	assert_null(vmm_find("cloud-hypervisor"));
	assert_null(vmm_find(""));
	assert_null(vmm_find(NULL));
}

static void test_qemu_argv_exact(void **state)
{
	struct fixture *f = *state;
	_cleanup_strv_ struct strv argv = build_ok(&vmm_qemu, &f->c);
	char drive[512], chardev[512];
	snprintf(drive, sizeof(drive), "if=none,id=root,file=%s,format=raw,readonly=on", f->rootfs);
	snprintf(chardev, sizeof(chardev), "socket,id=agent,path=%s/agent.sock,server=on,wait=off", f->run_dir);
	const char *want[] = {
		"/usr/bin/qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host", "-smp", "2",
		"-m", "512", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-sandbox",
		"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", "-nic", "none", "-serial",
		"stdio", "-drive", drive, "-device", "virtio-blk-device,drive=root", "-device", "virtio-serial-device",
		"-chardev", chardev, "-device", "virtserialport,chardev=agent,name=hpcc.0", "-kernel", f->kernel,
		"-initrd", f->initrd, "-append",
		"console=ttyS0 reboot=t panic=-1 quiet random.trust_cpu=on hpcc.channel=virtio:hpcc.0 hpcc.vm=t1-vm_A",
	};
	assert_int_equal(argv.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < argv.n; i++)
		assert_string_equal(argv.v[i], want[i]);
	assert_null(argv.v[argv.n]);
}

/* The security-relevant options, one by one, for one command line. */
static void assert_qemu_security(char *const *argv, const struct vmm_config *c)
{
	bool kvm = strcmp(c->accel, "kvm") == 0;
	assert_int_equal(count_option(argv, "-nodefaults"), 1);
	assert_int_equal(count_option(argv, "-no-user-config"), 1);
	assert_int_equal(count_option(argv, "-no-reboot"), 1);
	assert_option(argv, "-nic", "none");
	assert_int_equal(count_option(argv, "-nic"), 1);
	assert_option(argv, "-accel", c->accel);
	assert_int_equal(count_option(argv, "-accel"), 1);
	assert_option(argv, "-cpu", kvm ? "host" : "max");
	assert_option(argv, "-M", "microvm,acpi=off");
	/* Exactly one disk, read-only. */
	assert_int_equal(count_option(argv, "-drive"), 1);
	int d = option_index(argv, "-drive", NULL);
	assert_non_null(strstr(argv[d + 1], ",readonly=on"));
	assert_int_equal(count_option(argv, "-hda") + count_option(argv, "-cdrom") + count_option(argv, "-fda"), 0);
	/* No monitor, QMP, GDB stub or display that could steer the VM. */
	assert_int_equal(count_option(argv, "-monitor") + count_option(argv, "-qmp") + count_option(argv, "-gdb") +
				 count_option(argv, "-s") + count_option(argv, "-vnc") + count_option(argv, "-spice"),
			 0);
	if (c->sandbox) {
		assert_option(argv, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
		assert_int_equal(count_option(argv, "-sandbox"), 1);
	} else {
		assert_int_equal(count_option(argv, "-sandbox"), 0);
	}
	char smp[16], mem[16];
	snprintf(smp, sizeof(smp), "%u", c->vcpus);
	snprintf(mem, sizeof(mem), "%u", c->memory_mib);
	assert_option(argv, "-smp", smp);
	assert_option(argv, "-m", mem);
}

static void test_qemu_argv_variants(void **state)
{
	struct fixture *f = *state;
	struct {
		const char *accel;
		unsigned vcpus, memory;
		bool sandbox;
	} cases[] = {
		{ "kvm", 2, 512, true },  { "tcg", 2, 512, true },    { "tcg", 1, 128, true },
		{ "kvm", 8, 65536, true }, { "tcg", 4, 2048, false }, { "kvm", 1, 128, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmm_config c = f->c;
		c.accel = cases[i].accel;
		c.vcpus = cases[i].vcpus;
		c.memory_mib = cases[i].memory;
		c.sandbox = cases[i].sandbox;
		_cleanup_strv_ struct strv argv = build_ok(&vmm_qemu, &c);
		assert_qemu_security(strv_argv(&argv), &c);
	}
}

/* The helper itself must catch what it is there for. */
static void test_assert_no_network_catches(void **state)
{
	char *clean[] = { "qemu", "-nic", "none", "-device", "virtio-serial-device", NULL };
	assert_null(network_reason(clean));
	char *bad[][6] = {
		{ "qemu", "-nic", "user", NULL },
		{ "qemu", "-netdev", "user,id=n0", NULL },
		{ "qemu", "-net", "nic", NULL },
		{ "qemu", "--netdev", "tap,id=t", NULL },
		{ "qemu", "-device", "virtio-net-device,netdev=n0", NULL },
		{ "qemu", "-device", "e1000,id=x", NULL },
		{ "qemu", "-device", "driver=rtl8139", NULL },
		{ "qemu", "-nic", NULL },
		{ "qemu", "-M", "microvm", "-nic", "tap,ifname=t0", NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!network_reason(bad[i]))
			fail_msg("bad case %zu (%s %s) passes", i, bad[i][1], bad[i][2] ? bad[i][2] : "");
}

static void test_qemu_refuses_comma(void **state)
{
	struct fixture *f = *state;
	struct vmm_config c = f->c;
	c.rootfs = "/images/a,b.sqsh";
	struct strv argv = { 0 };
	struct error e = { 0 };
	assert_int_equal(vmm_qemu.build(&c, &argv, &e), -EINVAL);
	assert_null(argv.v);
	assert_non_null(strstr(e.msg, "','"));
	error_clear(&e);
	c = f->c;
	c.run_dir = "/run/vm,x";
	assert_int_equal(vmm_firecracker.build(&c, &argv, &e), -EINVAL);
}

/* ---- configuration checks ---- */

static void expect_refused(const struct vmm_config *c, const struct vmm_ops *ops, const char *label)
{
	struct error e = { 0 };
	int r = vmm_config_check(c, ops, &e);
	if (r >= 0)
		fail_msg("%s accepted: %s", ops->name, label);
	assert_int_equal(e.code, r);
	assert_true(e.msg[0] != '\0');
	assert_null(strchr(e.msg, '\n'));
}

static void test_config_check(void **state)
{
	struct fixture *f = *state;
	struct error e = { 0 };
	assert_int_equal(vmm_config_check(&f->c, &vmm_qemu, &e), 0);
	assert_int_equal(vmm_config_check(&f->c, &vmm_firecracker, &e), 0);
	assert_int_equal(e.code, 0);

	char long_path[4200];
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	char long_run_dir[101];
	memset(long_run_dir, 'r', sizeof(long_run_dir) - 1);
	long_run_dir[0] = '/';
	long_run_dir[sizeof(long_run_dir) - 1] = '\0';
	char id65[66];
	memset(id65, 'x', 65);
	id65[65] = '\0';

	const struct vmm_ops *both[] = { &vmm_qemu, &vmm_firecracker };
	for (size_t o = 0; o < 2; o++) {
		const struct vmm_ops *ops = both[o];
		struct vmm_config c;
#define REFUSED(assignment)                          \
	do {                                         \
		c = f->c;                            \
		assignment;                          \
		expect_refused(&c, ops, #assignment); \
	} while (0)
		REFUSED(c.kernel = "vmlinux");
		REFUSED(c.binary = "bin/qemu");
		REFUSED(c.binary = NULL);
		REFUSED(c.initrd = "");
		REFUSED(c.rootfs = "/images/a,b");
		REFUSED(c.run_dir = "/run/a,b");
		REFUSED(c.kernel = "/boot/vm\nlinux");
		REFUSED(c.initrd = "/boot/init\rrd");
		REFUSED(c.run_dir = "/run/./vm");
		REFUSED(c.run_dir = "/run/vm/");
		REFUSED(c.rootfs = "/images/../etc/shadow");
		REFUSED(c.kernel = "//boot/vmlinux");
		REFUSED(c.kernel = long_path);
		REFUSED(c.run_dir = long_run_dir);
		REFUSED(c.vcpus = 0);
		REFUSED(c.vcpus = 9);
		REFUSED(c.memory_mib = 64);
		REFUSED(c.memory_mib = 127);
		REFUSED(c.memory_mib = 65537);
		REFUSED(c.vm_id = "");
		REFUSED(c.vm_id = NULL);
		REFUSED(c.vm_id = "a b");
		REFUSED(c.vm_id = "a/b");
		REFUSED(c.vm_id = "a.b");
		REFUSED(c.vm_id = "vm\n1");
		REFUSED(c.vm_id = "\xc3\xa9t\xc3\xa9");
		REFUSED(c.vm_id = id65);
		REFUSED(c.accel = "kvmx");
		REFUSED(c.accel = "hvf");
		REFUSED(c.accel = "");
		REFUSED(c.accel = NULL);
#undef REFUSED
	}
	struct vmm_config c = f->c;
	c.accel = "tcg";
	expect_refused(&c, &vmm_firecracker, "tcg");
	assert_int_equal(vmm_config_check(&c, &vmm_qemu, &e), 0);
	assert_int_equal(vmm_config_check(&f->c, NULL, &e), -EINVAL);

	/* The edges of every range are accepted. */
	error_clear(&e);
	c = f->c;
	c.vcpus = 1;
	c.memory_mib = 128;
	c.vm_id = "a";
	assert_int_equal(vmm_config_check(&c, &vmm_qemu, &e), 0);
	c.vcpus = 8;
	c.memory_mib = 65536;
	id65[64] = '\0';
	c.vm_id = id65;
	assert_int_equal(vmm_config_check(&c, &vmm_firecracker, &e), 0);
	c.run_dir = "/";
	assert_int_equal(vmm_config_check(&c, &vmm_qemu, &e), 0);
}

/* ---- Firecracker configuration ---- */

static void assert_no_net_keys(json_t *j)
{
	if (json_is_object(j)) {
		const char *key;
		json_t *value;
		json_object_foreach(j, key, value) {
			if (strcasestr(key, "net"))
				fail_msg("network key \"%s\" in the Firecracker configuration", key);
			assert_no_net_keys(value);
		}
	} else if (json_is_array(j)) {
		size_t i;
		json_t *value;
		json_array_foreach(j, i, value)
			assert_no_net_keys(value);
	}
}

static const char *json_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		fail_msg("\"%s\" is not a string", key);
	return json_string_value(v);
}

static json_int_t json_int(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v))
		fail_msg("\"%s\" is not an integer", key);
	return json_integer_value(v);
}

static void assert_json_false(json_t *obj, const char *key)
{
	assert_true(json_is_false(json_object_get(obj, key)));
}

static void test_firecracker_config(void **state)
{
	struct fixture *f = *state;
	struct vmm_config c = f->c;
	c.binary = "/usr/bin/firecracker";
	c.vcpus = 3;
	c.memory_mib = 1536;
	/* A stale socket of an earlier VMM would make Firecracker's bind fail. */
	_cleanup_free_ char *vsock = join(f->run_dir, "vsock.sock");
	int fd = open(vsock, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);

	_cleanup_strv_ struct strv argv = build_ok(&vmm_firecracker, &c);
	_cleanup_free_ char *config_path = join(f->run_dir, "firecracker.json");
	const char *want[] = { "/usr/bin/firecracker", "--no-api", "--config-file", config_path, "--id", "t1-vm-A" };
	assert_int_equal(argv.n, 6);
	for (size_t i = 0; i < argv.n; i++)
		assert_string_equal(argv.v[i], want[i]);
	assert_int_equal(access(vsock, F_OK), -1);

	struct stat st;
	assert_int_equal(lstat(config_path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	json_error_t jerr;
	json_t *root = json_load_file(config_path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		fail_msg("the configuration does not parse: %s", jerr.text);
	assert_true(json_is_object(root));
	assert_int_equal(json_object_size(root), 4);
	assert_null(json_object_get(root, "network-interfaces"));
	assert_no_net_keys(root);

	json_t *boot = json_object_get(root, "boot-source");
	assert_int_equal(json_object_size(boot), 3);
	assert_string_equal(json_str(boot, "kernel_image_path"), f->kernel);
	assert_string_equal(json_str(boot, "initrd_path"), f->initrd);
	assert_string_equal(json_str(boot, "boot_args"),
			    "console=ttyS0 reboot=k panic=1 pci=off quiet random.trust_cpu=on hpcc.channel=vsock:1024 hpcc.vm=t1-vm_A");

	json_t *drives = json_object_get(root, "drives");
	assert_true(json_is_array(drives));
	assert_int_equal(json_array_size(drives), 1);
	json_t *drive = json_array_get(drives, 0);
	assert_int_equal(json_object_size(drive), 4);
	assert_string_equal(json_str(drive, "drive_id"), "image");
	assert_string_equal(json_str(drive, "path_on_host"), f->rootfs);
	assert_json_false(drive, "is_root_device");
	assert_true(json_is_true(json_object_get(drive, "is_read_only")));

	json_t *machine = json_object_get(root, "machine-config");
	assert_int_equal(json_object_size(machine), 3);
	assert_int_equal(json_int(machine, "vcpu_count"), 3);
	assert_int_equal(json_int(machine, "mem_size_mib"), 1536);
	assert_json_false(machine, "smt");

	json_t *vs = json_object_get(root, "vsock");
	assert_int_equal(json_object_size(vs), 2);
	assert_int_equal(json_int(vs, "guest_cid"), 3);
	assert_string_equal(json_str(vs, "uds_path"), vsock);
	json_decref(root);

	/* No temporary file is left next to it. */
	DIR *d = opendir(f->run_dir);
	assert_non_null(d);
	int entries = 0;
	for (struct dirent *de; (de = readdir(d));)
		entries += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(entries, 1);
}

static void test_firecracker_refuses_tcg(void **state)
{
	struct fixture *f = *state;
	struct vmm_config c = f->c;
	c.accel = "tcg";
	struct strv argv = { 0 };
	struct error e = { 0 };
	assert_int_equal(vmm_firecracker.build(&c, &argv, &e), -EINVAL);
	assert_null(argv.v);
	assert_non_null(strstr(e.msg, "KVM"));
	_cleanup_free_ char *config_path = join(f->run_dir, "firecracker.json");
	assert_int_equal(access(config_path, F_OK), -1);
}

/* A root worker gives the file to the VM's user, who owns run_dir. */
static void test_firecracker_config_owner(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(f->run_dir, NOBODY, NOBODY), 0);
	_cleanup_strv_ struct strv argv = build_ok(&vmm_firecracker, &f->c);
	_cleanup_free_ char *config_path = join(f->run_dir, "firecracker.json");
	struct stat st;
	assert_int_equal(lstat(config_path, &st), 0);
	assert_int_equal(st.st_uid, NOBODY);
	assert_int_equal(st.st_gid, NOBODY);
	assert_int_equal(st.st_mode & 07777, 0600);
}

/* ---- Firecracker's vsock handshake ---- */

struct handshake_run {
	int r;
	int elapsed_ms;
	char sent[64]; /* what the handshake wrote */
	struct error e;
};

enum peer_end { PEER_OPEN, PEER_SHUT_WRITE, PEER_CLOSED };

static struct handshake_run run_handshake(const char *answer, size_t len, enum peer_end end, int timeout_ms)
{
	struct handshake_run h = { 0 };
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (len > 0)
		assert_int_equal(write(sv[1], answer, len), (ssize_t)len);
	if (end == PEER_SHUT_WRITE)
		shutdown(sv[1], SHUT_WR);
	if (end == PEER_CLOSED)
		close(sv[1]);
	int64_t start = now_ms();
	h.r = vmm_firecracker_handshake(sv[0], timeout_ms, &h.e);
	h.elapsed_ms = (int)(now_ms() - start);
	if (end != PEER_CLOSED) {
		ssize_t n = recv(sv[1], h.sent, sizeof(h.sent) - 1, MSG_DONTWAIT);
		if (n > 0)
			h.sent[n] = '\0';
		close(sv[1]);
	}
	close(sv[0]);
	return h;
}

static void test_handshake_ok_then_stream(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* The agent's first bytes arrive right behind the answer. */
	const char answer[] = "OK 1073741824\nhello";
	assert_int_equal(write(sv[1], answer, sizeof(answer) - 1), (ssize_t)sizeof(answer) - 1);
	struct error e = { 0 };
	assert_int_equal(vmm_firecracker_handshake(sv[0], 1000, &e), 0);
	assert_int_equal(e.code, 0);
	assert_int_equal(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
	char buf[32] = { 0 };
	assert_int_equal(read(sv[0], buf, 5), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(write(sv[0], "world", 5), 5);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(sv[1], buf, sizeof(buf) - 1), 18);
	assert_string_equal(buf, "CONNECT 1024\nworld");
	close(sv[0]);
	close(sv[1]);

	struct handshake_run h = run_handshake("OK 0\n", 5, PEER_OPEN, 1000);
	assert_int_equal(h.r, 0);
	h = run_handshake("OK 4294967295\n", 14, PEER_OPEN, 1000);
	assert_int_equal(h.r, 0);
}

static void test_handshake_refusals(void **state)
{
	char long_line[101];
	memset(long_line, '7', 100);
	memcpy(long_line, "OK ", 3);
	long_line[100] = '\n';
	struct {
		const char *answer;
		size_t len;
		int want;
	} cases[] = {
		{ "FAIL\n", 5, -EPROTO },
		{ "OK\n", 3, -EPROTO },
		{ "OK \n", 4, -EPROTO },
		{ "OK abc\n", 7, -EPROTO },
		{ "OK 12a\n", 7, -EPROTO },
		{ "ok 1024\n", 8, -EPROTO },
		{ "OK  1024\n", 9, -EPROTO },
		{ "OK 1024 \n", 9, -EPROTO },
		{ "OK 1024\r\n", 9, -EPROTO },
		{ "OK 4294967296\n", 14, -EPROTO },
		{ "OK 00000000001\n", 15, -EPROTO },
		{ "OK 1\0002\n", 7, -EPROTO },
		{ "\n", 1, -EPROTO },
		{ long_line, sizeof(long_line), -EPROTO },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct handshake_run h = run_handshake(cases[i].answer, cases[i].len, PEER_OPEN, 2000);
		if (h.r != cases[i].want)
			fail_msg("case %zu: got %d (%s), want %d", i, h.r, h.e.msg, cases[i].want);
		assert_true(h.elapsed_ms < 500);
		assert_string_equal(h.sent, "CONNECT 1024\n");
		assert_null(strchr(h.e.msg, '\n'));
	}
	/* EOF before anything: Firecracker's way of saying nobody listens. */
	struct handshake_run h = run_handshake(NULL, 0, PEER_SHUT_WRITE, 2000);
	assert_int_equal(h.r, -ECONNRESET);
	assert_true(h.elapsed_ms < 500);
	/* EOF in the middle of the line. */
	h = run_handshake("OK 10", 5, PEER_SHUT_WRITE, 2000);
	assert_int_equal(h.r, -EPROTO);
	/* The VMM has gone altogether: an error, and no SIGPIPE. */
	h = run_handshake(NULL, 0, PEER_CLOSED, 2000);
	assert_true(h.r < 0);
	assert_true(h.elapsed_ms < 500);
	/* No answer: the timeout, and not much more. */
	h = run_handshake(NULL, 0, PEER_OPEN, 200);
	assert_int_equal(h.r, -ETIMEDOUT);
	assert_true(h.elapsed_ms >= 190 && h.elapsed_ms < 700);
	/* Half a line, then silence. */
	h = run_handshake("OK 12", 5, PEER_OPEN, 200);
	assert_int_equal(h.r, -ETIMEDOUT);
}

/* ---- connect() against fake VMM sockets ---- */

enum fake_mode { FAKE_OK_ECHO, FAKE_CLOSE, FAKE_GARBAGE };

struct fake_server {
	int listen_fd;
	enum fake_mode mode;
	char got[64]; /* the first line the client sent */
	pthread_t thread;
};

static int listen_at(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void *fake_serve(void *arg)
{
	struct fake_server *s = arg;
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t used = 0;
	char ch;
	while (used + 1 < sizeof(s->got) && read(fd, &ch, 1) == 1 && ch != '\n')
		s->got[used++] = ch;
	if (s->mode == FAKE_OK_ECHO) {
		(void)!send(fd, "OK 1073741825\n", 14, MSG_NOSIGNAL);
		char buf[64];
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0)
			(void)!send(fd, buf, (size_t)n, MSG_NOSIGNAL);
	} else if (s->mode == FAKE_GARBAGE) {
		(void)!send(fd, "HTTP/1.1 400\n", 13, MSG_NOSIGNAL);
	}
	close(fd);
	return NULL;
}

static void fake_start(struct fake_server *s, const char *path, enum fake_mode mode)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = listen_at(path);
	s->mode = mode;
	assert_int_equal(pthread_create(&s->thread, NULL, fake_serve, s), 0);
}

static void fake_stop(struct fake_server *s)
{
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
}

static void test_firecracker_connect(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = join(f->run_dir, "vsock.sock");
	int fd = -1;
	struct error e = { 0 };
	/* Before Firecracker has made its socket: "not yet", no message. */
	assert_int_equal(vmm_firecracker.connect(&f->c, 500, &fd, &e), -EAGAIN);
	assert_int_equal(e.code, 0);
	assert_int_equal(fd, -1);

	/* The guest's agent does not listen yet: Firecracker hangs up. */
	struct fake_server s;
	fake_start(&s, path, FAKE_CLOSE);
	assert_int_equal(vmm_firecracker.connect(&f->c, 500, &fd, &e), -EAGAIN);
	assert_int_equal(e.code, 0);
	fake_stop(&s);
	assert_string_equal(s.got, "CONNECT 1024");
	unlink(path);

	fake_start(&s, path, FAKE_GARBAGE);
	assert_int_equal(vmm_firecracker.connect(&f->c, 500, &fd, &e), -EPROTO);
	assert_non_null(strstr(e.msg, "HTTP/1.1 400"));
	fake_stop(&s);
	unlink(path);

	error_clear(&e);
	fake_start(&s, path, FAKE_OK_ECHO);
	/* connect needs run_dir alone (the pool passes nothing else). */
	struct vmm_config only_dir = { .run_dir = f->run_dir };
	assert_int_equal(vmm_firecracker.connect(&only_dir, 2000, &fd, &e), 0);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(write(fd, "ping", 4), 4);
	char buf[8] = { 0 };
	assert_int_equal(read(fd, buf, 4), 4);
	assert_string_equal(buf, "ping");
	close(fd);
	fake_stop(&s);
}

static void test_qemu_connect(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = join(f->run_dir, "agent.sock");
	int fd = -1;
	struct error e = { 0 };
	assert_int_equal(vmm_qemu.connect(&f->c, 500, &fd, &e), -EAGAIN);
	assert_int_equal(e.code, 0);
	struct vmm_config bad = { .run_dir = "run/relative" };
	assert_int_equal(vmm_qemu.connect(&bad, 500, &fd, &e), -EINVAL);
	assert_int_equal(vmm_firecracker.connect(&bad, 500, &fd, &e), -EINVAL);
	error_clear(&e);

	/* A socket file nobody listens on any more (QEMU has exited). */
	int stale = listen_at(path);
	close(stale);
	assert_int_equal(vmm_qemu.connect(&f->c, 500, &fd, &e), -EAGAIN);
	assert_int_equal(e.code, 0);
	unlink(path);

	int lfd = listen_at(path);
	/* connect needs run_dir alone (the pool passes nothing else). */
	struct vmm_config only_dir = { .run_dir = f->run_dir };
	assert_int_equal(vmm_qemu.connect(&only_dir, 500, &fd, &e), 0);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	int peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(peer >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	char ch = 0;
	assert_int_equal(read(peer, &ch, 1), 1);
	assert_int_equal(ch, 'x');
	close(peer);
	close(fd);

	/* A socket served by someone other than run_dir's owner is not the
	 * VMM's (the VMM could have planted a symlink to another service). */
	if (geteuid() == 0) {
		assert_int_equal(chown(f->run_dir, NOBODY, NOBODY), 0);
		fd = -1;
		assert_int_equal(vmm_qemu.connect(&f->c, 500, &fd, &e), -EPERM);
		assert_int_equal(fd, -1);
		assert_non_null(strstr(e.msg, "not the VMM's"));
	}
	close(lfd);
}

/* ---- accelerator ---- */

static bool host_can_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	_cleanup_free_ char *info = read_text("/proc/cpuinfo");
	return info && (strstr(info, " vmx") || strstr(info, " svm"));
}

static void test_pick_accel(void **state)
{
	const char *accel = NULL;
	struct error e = { 0 };
	assert_int_equal(vmm_pick_accel("fast", true, &accel, &e), -EINVAL);
	assert_int_equal(vmm_pick_accel(NULL, true, &accel, &e), -EINVAL);
	assert_null(accel);

	error_clear(&e);
	assert_true(vmm_pick_accel("tcg", false, &accel, &e) < 0);
	assert_non_null(strstr(e.msg, "allow_tcg"));
	assert_null(accel);
	assert_int_equal(vmm_pick_accel("tcg", true, &accel, &e), 0);
	assert_string_equal(accel, "tcg");

	if (host_can_kvm()) {
		/* A host with working KVM: everything but explicit tcg picks it. */
		assert_int_equal(vmm_pick_accel("auto", false, &accel, &e), 0);
		assert_string_equal(accel, "kvm");
		return;
	}
	/* This machine kind (FACTS): /dev/kvm without vmx or svm. */
	accel = NULL;
	error_clear(&e);
	assert_int_equal(vmm_pick_accel("auto", false, &accel, &e), -ENODEV);
	assert_null(accel);
	assert_non_null(strstr(e.msg, "allow_tcg"));
	assert_null(strchr(e.msg, '\n'));
	error_clear(&e);
	assert_int_equal(vmm_pick_accel("kvm", true, &accel, &e), -ENODEV);
	assert_null(accel);
	assert_int_equal(vmm_pick_accel("auto", true, &accel, &e), 0);
	assert_string_equal(accel, "tcg");
}

/* ---- processes ---- */

static struct strv make_argv(const char *first, ...)
{
	struct strv s = { 0 };
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		assert_int_equal(strv_push(&s, a), 0);
	va_end(ap);
	return s;
}

/* The value fields of a "Name:\t..." line of /proc/<pid>/status. */
static char *status_line(pid_t pid, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	_cleanup_free_ char *text = read_text(path);
	assert_non_null(text);
	size_t n = strlen(name);
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n');
		if (end)
			*end = '\0';
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			return strdup(line + n + 1);
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

static bool wait_exited(struct vmm_process *p, int ms, int *status)
{
	int64_t deadline = now_ms() + ms;
	while (now_ms() < deadline) {
		if (vmm_exited(p, status))
			return true;
		sleep_ms(10);
	}
	return false;
}

/* True once pid sits in nanosleep or clock_nanosleep (x86_64 numbers),
 * that is, /bin/sleep is past its start-up. */
static bool wait_sleeping(pid_t pid, int ms)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	int64_t deadline = now_ms() + ms;
	while (now_ms() < deadline) {
		_cleanup_free_ char *text = read_text(path);
		if (text && (strncmp(text, "230 ", 4) == 0 || strncmp(text, "35 ", 3) == 0))
			return true;
		sleep_ms(10);
	}
	return false;
}

static void test_spawn_unprivileged(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	_cleanup_strv_ struct strv argv = make_argv("/bin/sleep", "1000", NULL);
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	if (vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e) < 0)
		fail_msg("spawn: %s", e.msg);
	pid_t pid = p.pid;
	assert_true(pid > 0);

	_cleanup_free_ char *uid = status_line(pid, "Uid");
	_cleanup_free_ char *gid = status_line(pid, "Gid");
	_cleanup_free_ char *groups = status_line(pid, "Groups");
	assert_non_null(uid);
	assert_string_equal(uid, "\t65534\t65534\t65534\t65534");
	assert_string_equal(gid, "\t65534\t65534\t65534\t65534");
	assert_true(groups && strspn(groups, " \t") == strlen(groups));
	/* Its own session and process group. */
	assert_int_equal(getsid(pid), pid);
	assert_int_equal(getpgid(pid), pid);

	/* Exactly stdin (/dev/null) and stdout+stderr (the console log),
	 * once sleep sleeps: vmm_spawn returns when execve closed the report
	 * pipe, and the dynamic loader then opens libraries at fd 3 for a
	 * moment (this test once caught it there). */
	assert_true(wait_sleeping(pid, 5000));
	char path[96], target[512];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	int fds = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		fds++;
		if (strcmp(de->d_name, "0") != 0 && strcmp(de->d_name, "1") != 0 && strcmp(de->d_name, "2") != 0)
			fail_msg("the VMM inherited fd %s", de->d_name);
	}
	closedir(d);
	assert_int_equal(fds, 3);
	_cleanup_free_ char *console = join(f->run_dir, "console.log");
	struct { const char *fd, *want; } links[] = { { "0", "/dev/null" }, { "1", console }, { "2", console } };
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, links[i].fd);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		assert_true(n > 0);
		target[n] = '\0';
		assert_string_equal(target, links[i].want);
	}
	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "/");

	vmm_kill(&p);
	assert_int_equal(p.pid, 0);
	/* Reaped: no such child any more. */
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	vmm_kill(&p); /* idempotent */
	assert_int_equal(p.pid, 0);
	assert_true(vmm_exited(&p, NULL));
}

static void test_spawn_refusals(void **state)
{
	struct fixture *f = *state;
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	_cleanup_strv_ struct strv missing = make_argv("/nonexistent/hpcc-test-vmm", "-x", NULL);
	assert_int_equal(vmm_spawn(&missing, f->run_dir, NOBODY, NOBODY, &p, &e), -ENOENT);
	assert_int_equal(p.pid, 0);
	assert_non_null(strstr(e.msg, "cannot start /nonexistent/hpcc-test-vmm"));
	/* The child that failed to exec was reaped. */
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);

	_cleanup_free_ char *plain = join(f->tmpdir, "not-executable");
	assert_int_equal(fs_write_atomic(plain, "x", 1, 0644, false), 0);
	_cleanup_strv_ struct strv not_exec = make_argv(plain, NULL);
	error_clear(&e);
	assert_int_equal(vmm_spawn(&not_exec, f->run_dir, NOBODY, NOBODY, &p, &e), -EACCES);

	_cleanup_strv_ struct strv relative = make_argv("sleep", "1", NULL);
	error_clear(&e);
	assert_int_equal(vmm_spawn(&relative, f->run_dir, NOBODY, NOBODY, &p, &e), -EINVAL);
	struct strv empty = { 0 };
	assert_int_equal(vmm_spawn(&empty, f->run_dir, NOBODY, NOBODY, &p, &e), -EINVAL);

	_cleanup_strv_ struct strv sleep = make_argv("/bin/sleep", "1", NULL);
	_cleanup_free_ char *nodir = join(f->tmpdir, "missing");
	error_clear(&e);
	assert_int_equal(vmm_spawn(&sleep, nodir, NOBODY, NOBODY, &p, &e), -ENOENT);
	/* A symlinked console log is refused (O_NOFOLLOW). */
	_cleanup_free_ char *console = join(f->run_dir, "console.log");
	unlink(console);
	assert_int_equal(symlink("/etc/passwd", console), 0);
	error_clear(&e);
	assert_int_equal(vmm_spawn(&sleep, f->run_dir, NOBODY, NOBODY, &p, &e), -ELOOP);
	unlink(console);
	if (geteuid() == 0) {
		error_clear(&e);
		assert_int_equal(vmm_spawn(&sleep, f->run_dir, 0, NOBODY, &p, &e), -EPERM);
		assert_int_equal(vmm_spawn(&sleep, f->run_dir, NOBODY, 0, &p, &e), -EPERM);
	}
	assert_int_equal(p.pid, 0);
}

static void test_spawn_console(void **state)
{
	struct fixture *f = *state;
	/* Nothing of the worker's environment reaches the VMM. */
	setenv("HPCC_TEST_SECRET", "s3cr3t", 1);
	_cleanup_strv_ struct strv argv = make_argv(
		"/bin/sh", "-c", "echo out; echo err >&2; read x; echo \"stdin:$x secret:$HPCC_TEST_SECRET\"; exit 3",
		NULL);
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	if (vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e) < 0)
		fail_msg("spawn: %s", e.msg);
	int status = -1;
	assert_true(wait_exited(&p, 10000, &status));
	assert_int_equal(p.pid, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);
	unsetenv("HPCC_TEST_SECRET");

	_cleanup_free_ char *path = join(f->run_dir, "console.log");
	_cleanup_free_ char *text = read_text(path);
	assert_non_null(text);
	assert_string_equal(text, "out\nerr\nstdin: secret:\n");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	/* A second VMM in the same run_dir appends. */
	_cleanup_strv_ struct strv again = make_argv("/bin/echo", "again", NULL);
	assert_int_equal(vmm_spawn(&again, f->run_dir, NOBODY, NOBODY, &p, &e), 0);
	assert_true(wait_exited(&p, 10000, &status));
	free(text);
	text = read_text(path);
	assert_string_equal(text, "out\nerr\nstdin: secret:\nagain\n");
}

/* A guest flooding its console stops at the cap instead of filling the disk. */
static void test_spawn_console_cap(void **state)
{
	struct fixture *f = *state;
	_cleanup_strv_ struct strv argv = make_argv("/bin/sh", "-c", "head -c 17825792 /dev/zero; echo done:$? >&2",
						    NULL);
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	if (vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e) < 0)
		fail_msg("spawn: %s", e.msg);
	int status = -1;
	assert_true(wait_exited(&p, 30000, &status));
	/* Not killed by SIGXFSZ: the writes failed and the shell went on. */
	assert_true(WIFEXITED(status));
	_cleanup_free_ char *path = join(f->run_dir, "console.log");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 16 << 20);
}

static void test_exited(void **state)
{
	struct fixture *f = *state;
	_cleanup_strv_ struct strv argv = make_argv("/bin/true", NULL);
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	assert_int_equal(vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e), 0);
	int status = -1;
	assert_true(wait_exited(&p, 10000, &status));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(p.pid, 0);
	status = 42;
	assert_true(vmm_exited(&p, &status));
	assert_int_equal(status, 42); /* not written when there was nothing to reap */
	vmm_kill(&p);

	/* A running one is not "exited", and vmm_kill works from there. */
	_cleanup_strv_ struct strv sleep = make_argv("/bin/sleep", "1000", NULL);
	assert_int_equal(vmm_spawn(&sleep, f->run_dir, NOBODY, NOBODY, &p, &e), 0);
	assert_false(vmm_exited(&p, &status));
	assert_true(p.pid > 0);
	int64_t start = now_ms();
	vmm_kill(&p);
	assert_int_equal(p.pid, 0);
	assert_true(now_ms() - start < 2000);
}

/* The worker (here: an intermediate process) dies without stopping its
 * VMM: PR_SET_PDEATHSIG kills the VMM at once. This test process is a
 * subreaper, so the orphan comes back to it and its fate is visible. */
static void test_spawn_orphan(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid_t middle = fork();
	assert_true(middle >= 0);
	if (middle == 0) {
		struct strv argv = { 0 };
		strv_push(&argv, "/bin/sleep");
		strv_push(&argv, "1000");
		struct vmm_process p = { 0 };
		struct error e = { 0 };
		pid_t vmm = vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e) < 0 ? -1 : p.pid;
		(void)!write(fds[1], &vmm, sizeof(vmm));
		_exit(0);
	}
	close(fds[1]);
	pid_t vmm = -1;
	assert_int_equal(read(fds[0], &vmm, sizeof(vmm)), (ssize_t)sizeof(vmm));
	close(fds[0]);
	assert_true(vmm > 0);
	int status;
	assert_int_equal(waitpid(middle, &status, 0), middle);
	int64_t start = now_ms();
	pid_t r = 0;
	while (now_ms() - start < 1000 && (r = waitpid(vmm, &status, WNOHANG)) == 0)
		sleep_ms(5);
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
	if (r != vmm) {
		kill(vmm, SIGKILL);
		waitpid(vmm, NULL, 0);
		fail_msg("the orphaned VMM was still running 1 s after its parent died");
	}
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

/* ---- the real QEMU ---- */

static char *find_kernel(void)
{
	const char *env = getenv("HPCC_TEST_VMLINUX");
	if (env && *env)
		return access(env, R_OK) == 0 ? strdup(env) : NULL;
	glob_t g;
	char *path = NULL;
	if (glob("/var/cache/hpcc-dev/guest/kernel-*/vmlinux", 0, NULL, &g) == 0 && g.gl_pathc > 0)
		path = strdup(g.gl_pathv[0]);
	globfree(&g);
	return path;
}

/* An initramfs with nothing in it (the "newc" trailer alone): the kernel
 * finds no /init and no root device, panics, and with panic=-1 and
 * -no-reboot QEMU exits. */
static void write_empty_cpio(const char *path)
{
	char header[128];
	int n = snprintf(header, sizeof(header), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s", 0,
			 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0, "TRAILER!!!");
	assert_int_equal(n, 110 + 10);
	char data[512] = { 0 };
	memcpy(data, header, (size_t)n); /* the name's NUL and the padding are zeros */
	assert_int_equal(fs_write_atomic(path, data, sizeof(data), 0644, false), 0);
}

static bool qemu_runs_in(const char *run_dir)
{
	DIR *d = opendir("/proc");
	assert_non_null(d);
	bool found = false;
	for (struct dirent *de; !found && (de = readdir(d));) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		struct buf b = { 0 };
		buf_init(&b, 0);
		if (fs_read_file(path, 1 << 20, &b) == 0)
			for (size_t i = 0; i < b.len; i += strlen(b.data + i) + 1)
				if (strstr(b.data + i, run_dir) && strstr(b.data, "qemu"))
					found = true;
		buf_free(&b);
	}
	closedir(d);
	return found;
}

static void test_qemu_smoke(void **state)
{
	struct fixture *f = *state;
	alarm(SMOKE_TIMEOUT_SECONDS);
	if (geteuid() != 0 || access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
		print_message("qemu smoke: skipped (needs root and /usr/bin/qemu-system-x86_64)\n");
		skip();
	}
	_cleanup_free_ char *kernel = find_kernel();
	if (!kernel) {
		print_message("qemu smoke: skipped (no guest kernel: run guest/build-kernel.sh or set HPCC_TEST_VMLINUX)\n");
		skip();
	}
	write_empty_cpio(f->initrd);
	char zeros[65536] = { 0 };
	assert_int_equal(fs_write_atomic(f->rootfs, zeros, sizeof(zeros), 0644, false), 0);
	assert_int_equal(chown(f->run_dir, NOBODY, NOBODY), 0);

	struct vmm_config c = f->c;
	c.kernel = kernel;
	c.accel = "tcg";
	c.vcpus = 2; /* several vCPU threads under -sandbox's resourcecontrol=deny */
	c.memory_mib = 256;
	c.vm_id = "smoke-1";
	_cleanup_strv_ struct strv argv = build_ok(&vmm_qemu, &c);
	_cleanup_free_ char *console = join(f->run_dir, "console.log");

	struct vmm_process p = { 0 };
	struct error e = { 0 };
	int64_t start = now_ms();
	if (vmm_spawn(&argv, f->run_dir, NOBODY, NOBODY, &p, &e) < 0)
		fail_msg("spawn: %s", e.msg);
	int fd = -1, r = -EAGAIN;
	while (r == -EAGAIN && now_ms() - start < 10000) {
		r = vmm_qemu.connect(&c, 1000, &fd, &e);
		if (r == -EAGAIN) {
			int status;
			if (vmm_exited(&p, &status)) {
				_cleanup_free_ char *log = read_text(console);
				fail_msg("QEMU exited (status %d) before its socket answered: %s", status, log ? log : "");
			}
			sleep_ms(10);
		}
	}
	int connect_ms = (int)(now_ms() - start);
	if (r < 0) {
		vmm_kill(&p);
		_cleanup_free_ char *log = read_text(console);
		fail_msg("connect: %d %s; console: %s", r, e.msg, log ? log : "");
	}
	_cleanup_free_ char *uid = status_line(p.pid, "Uid");
	assert_non_null(uid);
	assert_string_equal(uid, "\t65534\t65534\t65534\t65534");
	/* QEMU's seccomp filter is on (mode 2). */
	_cleanup_free_ char *seccomp = status_line(p.pid, "Seccomp");
	assert_non_null(seccomp);
	assert_string_equal(seccomp, "\t2");

	/* The guest runs our kernel up to its panic (no /init, no root),
	 * which proves the console reaches console.log; QEMU then exits. */
	bool panicked = false;
	int status = 0;
	bool exited = false;
	while (!panicked && now_ms() - start < 120000) {
		_cleanup_free_ char *log = read_text(console);
		panicked = log && strstr(log, "Kernel panic");
		if (!panicked && exited)
			fail_msg("QEMU exited (status %d) without a kernel panic: %s", status, log ? log : "");
		if (!panicked && !exited)
			exited = vmm_exited(&p, &status);
		if (!panicked)
			sleep_ms(50);
	}
	int panic_ms = (int)(now_ms() - start);
	assert_true(panicked);
	close(fd);
	vmm_kill(&p);
	assert_int_equal(p.pid, 0);
	assert_false(qemu_runs_in(f->run_dir));
	print_message("qemu smoke: agent socket connected %d ms after spawn, guest kernel panicked %d ms after "
		      "spawn, total %d ms\n", connect_ms, panic_ms, (int)(now_ms() - start));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_find),
		T(test_qemu_argv_exact),
		T(test_qemu_argv_variants),
		T(test_assert_no_network_catches),
		T(test_qemu_refuses_comma),
		T(test_config_check),
		T(test_firecracker_config),
		T(test_firecracker_refuses_tcg),
		T(test_firecracker_config_owner),
		T(test_handshake_ok_then_stream),
		T(test_handshake_refusals),
		T(test_firecracker_connect),
		T(test_qemu_connect),
		T(test_pick_accel),
		T(test_spawn_unprivileged),
		T(test_spawn_refusals),
		T(test_spawn_console),
		T(test_spawn_console_cap),
		T(test_exited),
		T(test_spawn_orphan),
		T(test_qemu_smoke),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
