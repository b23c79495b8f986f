/*
 * The network check (DESIGN §6): a compile VM has no network device, and
 * the agent refuses to serve if it finds one. It reads <sysfs>/class/net,
 * where the kernel lists every interface of the network namespace sysfs
 * was mounted in, and asks the kernel again with if_nameindex(), which
 * answers for the caller's own namespace; any name other than "lo" in
 * either list is a refusal. A missing or unreadable sysfs list is an error
 * (fail closed); if_nameindex() failing only loses the second opinion (a
 * kernel without IP may lack the ioctl it falls back to).
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

/* Appends name to the space-separated list unless it is there already. */
static void names_add(char *names, size_t names_len, const char *name)
{
	size_t have = strlen(names), n = strlen(name);
	const char *p = names;

	while ((p = strstr(p, name)) != NULL) {
		bool starts = p == names || p[-1] == ' ';
		bool ends = p[n] == '\0' || p[n] == ' ';
		if (starts && ends)
			return;
		p += n;
	}
	snprintf(names + have, names_len - have, "%s%s", have ? " " : "", name);
}

int netcheck_run(const char *sysfs_dir, char *names, size_t names_len)
{
	char dir[4096];
	struct if_nameindex *ifs;
	struct dirent *de;
	DIR *d;
	int r;

	if (names_len == 0)
		return -EINVAL;
	names[0] = '\0';
	r = snprintf(dir, sizeof(dir), "%s/class/net", sysfs_dir);
	if (r < 0 || (size_t)r >= sizeof(dir))
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d)
		return -errno;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || strcmp(de->d_name, "lo") == 0)
			continue;
		names_add(names, names_len, de->d_name);
	}
	r = errno;
	closedir(d);
	if (r != 0)
		return -r;

	ifs = if_nameindex();
	if (ifs) {
		for (struct if_nameindex *i = ifs; i->if_index != 0 && i->if_name; i++)
			if (strcmp(i->if_name, "lo") != 0)
				names_add(names, names_len, i->if_name);
		if_freenameindex(ifs);
	}
	return names[0] ? 1 : 0;
}
