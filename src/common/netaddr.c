/* Checks of addresses received from other parties (see netaddr.h). */
#include "netaddr.h"

#include <stdlib.h>
#include <string.h>

bool net_host_port_valid(const char *s)
{
	size_t n = strnlen(s, NET_HOST_PORT_MAX + 1);
	const char *colon = n && n <= NET_HOST_PORT_MAX ? strrchr(s, ':') : NULL;
	if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5 ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return false;
	long port = strtol(colon + 1, NULL, 10);
	if (port < 1 || port > 65535)
		return false;
	size_t host_len = (size_t)(colon - s);
	if (s[0] == '[')
		return host_len > 2 && s[host_len - 1] == ']' &&
		       strspn(s + 1, "0123456789abcdefABCDEF:.") == host_len - 2;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == host_len && s[0] != '-' &&
	       s[0] != '.';
}
