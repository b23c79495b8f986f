/*
 * A fake VMM for test_microvm.sh: the worker starts it in place of QEMU
 * (worker.ini [microvm] binary), with QEMU's command line. It listens on the
 * agent socket named by -chardev, says a valid hello, reads the first exec
 * header, then breaks the protocol the way the file <this binary>.mode says
 * (the worker gives VMMs a fixed environment, so the mode cannot travel in
 * a variable):
 *   garbage      a frame whose flag byte is not 0
 *   oversize     a frame header announcing 4 GiB
 *   unknown-exec a result for an exec the host never started
 *   hello-twice  a second hello
 *   network      a hello that reports a network interface (before any exec)
 * and then waits to be killed: the worker must tear the "VM" down itself.
 * Frames are hand-encoded so that this file needs nothing but libc.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void put(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != (ssize_t)n)
		exit(3);
}

static void hello(int fd, int network_ok)
{
	/* AgentFrame{hello: {version "fake", vcpus 2, network_ok}} */
	unsigned char f[] = { 0, 0, 0, 0, 12, 0x42, 10, 0x0a, 4, 'f', 'a', 'k', 'e', 0x10, 2, 0x18,
			      (unsigned char)network_ok };
	put(fd, f, sizeof(f));
}

int main(int argc, char **argv)
{
	static char mode_buf[64], self[4096];
	const char *mode = NULL, *path = NULL;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 8);
	if (n > 0) {
		memcpy(self + n, ".mode", 6);
		FILE *m = fopen(self, "r");
		if (m && fgets(mode_buf, sizeof(mode_buf), m)) {
			mode_buf[strcspn(mode_buf, "\n")] = '\0';
			mode = mode_buf;
		}
		if (m)
			fclose(m);
	}
	for (int i = 1; i < argc; i++) {
		const char *p = strstr(argv[i], "path=");
		if (strncmp(argv[i], "socket,", 7) == 0 && p) {
			static char buf[4096];
			snprintf(buf, sizeof(buf), "%s", p + 5);
			buf[strcspn(buf, ",")] = '\0';
			path = buf;
		}
	}
	if (!mode || !path) {
		fprintf(stderr, "fake_guest: no mode or no -chardev socket path\n");
		return 2;
	}
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
		fprintf(stderr, "fake_guest: %s: %s\n", path, strerror(errno));
		return 2;
	}
	int fd = accept(l, NULL, NULL);
	if (fd < 0)
		return 2;
	fprintf(stderr, "fake_guest: connected, mode %s\n", mode);
	if (strcmp(mode, "network") == 0)
		hello(fd, 0);
	else {
		hello(fd, 1);
		unsigned char buf[4096];
		if (read(fd, buf, sizeof(buf)) <= 0) /* the start of the first exec */
			return 2;
		if (strcmp(mode, "garbage") == 0) {
			unsigned char f[] = { 7, 'A', 'A', 'A', 'A', 'A', 'A', 'A' };
			put(fd, f, sizeof(f));
		} else if (strcmp(mode, "oversize") == 0) {
			unsigned char f[] = { 0, 0xff, 0xff, 0xff, 0xff, 0 };
			put(fd, f, sizeof(f));
		} else if (strcmp(mode, "unknown-exec") == 0) {
			/* AgentFrame{exec_id 99, result {}} */
			unsigned char f[] = { 0, 0, 0, 0, 4, 0x08, 99, 0x32, 0 };
			put(fd, f, sizeof(f));
		} else if (strcmp(mode, "hello-twice") == 0)
			hello(fd, 1);
	}
	fprintf(stderr, "fake_guest: misbehaved, waiting to be killed\n");
	for (;;)
		pause();
}
