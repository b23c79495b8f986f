/*
 * Network addresses that other parties hand us (a scheduler's Route answer,
 * a worker's registration): only plain TCP host:port forms, never the other
 * target syntaxes grpc accepts (unix:, unix-abstract:, vsock:, dns://...),
 * so that such an address can only ever name a TCP peer.
 */
#pragma once

#include <stdbool.h>

#define NET_HOST_PORT_MAX 255

/* host:port with a DNS name ([A-Za-z0-9.-], not starting with '.' or '-') or an
 * IPv4 address, or [IPv6]:port; the port 1..65535; at most NET_HOST_PORT_MAX bytes. */
bool net_host_port_valid(const char *s);
