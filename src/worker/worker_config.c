/*
 * worker.ini parsing (see worker_config.h): a fixed table of keys, so that a
 * misspelt key is an error rather than a silently ignored setting.
 */
#include "worker_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "buf.h"
#include "config.h"
#include "digest.h"
#include "fs.h"
#include "image_store.h"
#include "quota.h"
#include "s3.h"
#include "s3obj.h"

#define WORKER_CONFIG_MAX (64 * 1024)
#define WORKER_LINE_MAX 199

struct parse_state {
	struct worker_config *c;
	char *base;               /* directory of the file */
	struct error *err;
};

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

static int set_path(struct parse_state *st, char **dst, const char *v)
{
	free(*dst);
	*dst = v[0] == '/' ? strdup(v) : path_join(st->base, v);
	return *dst ? 0 : -ENOMEM;
}

static int set_uint(struct parse_state *st, const char *name, const char *v, uint64_t max, uint64_t *ret)
{
	uint64_t x;
	if (config_parse_size(v, &x) < 0 || x > max)
		return error_set(st->err, -EINVAL, "%s: '%s' is not a number up to %llu", name, v,
				 (unsigned long long)max);
	*ret = x;
	return 0;
}

/* Appends each space-, comma- or tab-separated word of v. */
static int push_words(struct strv *list, const char *v)
{
	_cleanup_free_ char *copy = strdup(v);
	char *save = NULL;
	int r = copy ? 0 : -ENOMEM;
	for (char *tok = copy ? strtok_r(copy, " ,\t", &save) : NULL; r == 0 && tok; tok = strtok_r(NULL, " ,\t", &save))
		r = strv_push(list, tok);
	return r;
}

int worker_config_parse_duration(const char *s, uint64_t *ret)
{
	size_t n = strlen(s);
	if (n == 0 || n > 20)
		return -EINVAL;
	uint64_t unit = 1;
	char last = s[n - 1];
	if (last == 's' || last == 'm' || last == 'h' || last == 'd') {
		unit = last == 's' ? 1 : last == 'm' ? 60 : last == 'h' ? 3600 : 86400;
		n--;
	}
	if (n == 0 || strspn(s, "0123456789") != n)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT64_MAX / unit || v * unit > (uint64_t)100 * 365 * 86400)
		return -EINVAL;
	*ret = v * unit;
	return 0;
}

/* "tenant size age": a tenant name, a size (0: none) and a duration (0: none). */
static int tenant_budget_parse(const char *v, char *tenant, size_t tenant_size, uint64_t *size, uint64_t *age)
{
	char t[80], sz[40], ag[40], extra[2];
	if (sscanf(v, "%79s %39s %39s %1s", t, sz, ag, extra) != 3 || !s3obj_tenant_ok(t) ||
	    config_parse_size(sz, size) < 0 || worker_config_parse_duration(ag, age) < 0)
		return -EINVAL;
	if (tenant)
		snprintf(tenant, tenant_size, "%s", t);
	return 0;
}

static int s3_setting(struct parse_state *st, const char *name, const char *key, const char *value)
{
	struct worker_config *c = st->c;
	uint64_t u = 0;
	int r = 0;
	c->s3 = true;
	if (strcmp(key, "endpoint") == 0)
		r = set_str(&c->s3_endpoint, value);
	else if (strcmp(key, "region") == 0)
		r = set_str(&c->s3_region, value);
	else if (strcmp(key, "bucket") == 0)
		r = set_str(&c->s3_bucket, value);
	else if (strcmp(key, "prefix") == 0)
		r = set_str(&c->s3_prefix, value);
	else if (strcmp(key, "credentials_file") == 0)
		r = set_path(st, &c->s3_credentials_file, value);
	else if (strcmp(key, "path_style") == 0) {
		if (config_parse_bool(value, &c->s3_path_style) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, value);
		c->s3_path_style_set = true;
	} else if (strcmp(key, "timeout_ms") == 0) {
		if ((r = set_uint(st, name, value, S3_TIMEOUT_MAX_MS, &u)) == 0 && u < 100)
			r = error_set(st->err, -EINVAL, "%s: at least 100", name);
		c->s3_timeout_ms = (unsigned)u;
	} else if (strcmp(key, "retries") == 0) {
		if ((r = set_uint(st, name, value, S3_RETRIES_MAX, &u)) == 0)
			c->s3_retries = (unsigned)u;
	} else if (strcmp(key, "connections") == 0) {
		if ((r = set_uint(st, name, value, 64, &u)) == 0 && u < 1)
			r = error_set(st->err, -EINVAL, "%s: 1 to 64", name);
		c->s3_connections = (unsigned)u;
	} else if (strcmp(key, "max_size") == 0)
		r = set_uint(st, name, value, UINT64_MAX, &c->s3_max_size);
	else if (strcmp(key, "max_age") == 0 || strcmp(key, "gc_interval") == 0) {
		if (worker_config_parse_duration(value, &u) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not a duration (30d, 12h, 15m, 90s)", name, value);
		*(strcmp(key, "max_age") == 0 ? &c->s3_max_age : &c->s3_gc_interval) = u;
	} else if (strcmp(key, "tenant_budget") == 0) {
		uint64_t sz, age;
		if (tenant_budget_parse(value, NULL, 0, &sz, &age) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not 'tenant size age' (alice 20G 14d)", name, value);
		else
			r = strv_push(&c->s3_tenant_budgets, value);
	} else
		r = error_set(st->err, -EINVAL, "unknown setting %s", name);
	return r;
}

/* [s3] and cache_mode together. */
static int check_s3(struct worker_config *c, struct error *err)
{
	if (!c->cache_mode && set_str(&c->cache_mode, c->s3 ? "paranoid" : "local") < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (strcmp(c->cache_mode, "paranoid") == 0 && !c->s3)
		return error_set(err, -EINVAL, "[worker] cache_mode = paranoid needs a shared tier: add an [s3] section "
				 "(docs/s3.md)");
	if (strcmp(c->cache_mode, "local") == 0 && c->s3)
		return error_set(err, -EINVAL, "[worker] cache_mode = local and an [s3] section contradict each other");
	if (!c->s3)
		return 0;
	const char *missing = !c->s3_endpoint ? "endpoint" : !c->s3_region ? "region" : !c->s3_bucket ? "bucket" : NULL;
	if (missing)
		return error_set(err, -EINVAL, "[s3] %s is required", missing);
	if (!c->s3_path_style_set)
		c->s3_path_style = s3_default_path_style(c->s3_endpoint);
	/* Checked now rather than at the first compile. */
	struct s3_config sc;
	worker_config_s3(c, &sc);
	sc.access_key = sc.secret_key = "x";   /* credentials are looked up when the worker starts */
	struct s3_client *probe = NULL;
	struct error e = { 0 };
	int r = s3_client_new(&sc, &probe, &e);
	s3_client_free(probe);
	if (r < 0)
		return error_set(err, r, "[s3] %s", e.msg);
	return 0;
}

int worker_config_s3(const struct worker_config *c, struct s3_config *ret)
{
	if (!c->s3)
		return -ENOENT;
	*ret = (struct s3_config){
		.endpoint = c->s3_endpoint,
		.region = c->s3_region,
		.bucket = c->s3_bucket,
		.prefix = c->s3_prefix,
		.path_style = c->s3_path_style,
		.credentials_file = c->s3_credentials_file,
		.timeout_ms = c->s3_timeout_ms ? (int)c->s3_timeout_ms : 2000,
		.retries = (int)c->s3_retries,
		.backoff_ms = 50,
	};
	return 0;
}

void worker_config_s3_budget(const struct worker_config *c, const char *tenant, uint64_t *ret_size, uint64_t *ret_age)
{
	*ret_size = c->s3_max_size;
	*ret_age = c->s3_max_age;
	for (size_t i = 0; i < c->s3_tenant_budgets.n; i++) {
		char t[80];
		uint64_t sz, age;
		if (tenant_budget_parse(c->s3_tenant_budgets.v[i], t, sizeof(t), &sz, &age) == 0 && strcmp(t, tenant) == 0) {
			*ret_size = sz;
			*ret_age = age;
		}
	}
}

/* [audit]: segment_size, segment_age, retain, enabled. */
static int audit_setting(struct parse_state *st, const char *name, const char *key, const char *value)
{
	struct worker_config *c = st->c;
	uint64_t u = 0;
	if (strcmp(key, "segment_size") == 0) {
		int r = set_uint(st, name, value, (uint64_t)1 << 40, &c->audit_segment_size);
		if (r == 0 && c->audit_segment_size < 4096)
			r = error_set(st->err, -EINVAL, "%s: at least 4096 bytes", name);
		return r;
	}
	if (strcmp(key, "segment_age") == 0 || strcmp(key, "retain") == 0) {
		if (worker_config_parse_duration(value, &u) < 0 || u == 0)
			return error_set(st->err, -EINVAL, "%s: '%s' is not a duration of at least 1s (30d, 12h, 15m, 90s)",
					 name, value);
		*(strcmp(key, "retain") == 0 ? &c->audit_retain : &c->audit_segment_age) = (int64_t)u;
		return 0;
	}
	if (strcmp(key, "enabled") == 0) {
		if (config_parse_bool(value, &c->audit_enabled) < 0)
			return error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, value);
		return 0;
	}
	return error_set(st->err, -EINVAL, "unknown setting %s", name);
}

/* [limits]: the per-tenant quotas (quota.h). */
static int quota_setting(struct parse_state *st, const char *name, const char *key, const char *value)
{
	struct worker_config *c = st->c;
	uint64_t u = 0;
	int r = 0;
	if (strcmp(key, "tenant") == 0) {
		char tenant[QUOTA_TENANT_MAX + 1], why[160];
		struct quota_limits l = { 0 };
		if (quota_parse_tenant_line(value, tenant, &l, why, sizeof(why)) < 0)
			return error_set(st->err, -EINVAL, "%s: %s", name, why);
		return strv_push(&c->tenant_limits, value);
	}
	if (strcmp(key, "upload_window") == 0 || strcmp(key, "vm_wait") == 0) {
		bool window = strcmp(key, "upload_window") == 0;
		if (worker_config_parse_duration(value, &u) < 0 || (window && u == 0) || u > 86400)
			return error_set(st->err, -EINVAL, "%s: '%s' is not a duration of %s to 1 day (90s, 15m)", name,
					 value, window ? "1s" : "0s");
		if (window)
			c->upload_window = u;
		else
			c->vm_wait = (unsigned)u;
		return 0;
	}
	if (strcmp(key, "max_execs_per_tenant") == 0) {
		if ((r = set_uint(st, name, value, 65536, &u)) == 0)
			c->max_execs_per_tenant = (unsigned)u;
		return r;
	}
	return set_uint(st, name, value, UINT64_MAX, strcmp(key, "upload_quota") == 0 ? &c->upload_quota : &c->cas_quota);
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *st = user;
	struct worker_config *c = st->c;
	char name[128];
	snprintf(name, sizeof(name), "%s.%s", section, key);
	uint64_t u = 0;
	int r = 0;
	if (strcmp(name, "worker.id") == 0)
		r = set_str(&c->id, value);
	else if (strcmp(name, "worker.listen") == 0)
		r = set_str(&c->listen, value);
	else if (strcmp(name, "worker.dir") == 0)
		r = set_path(st, &c->dir, value);
	else if (strcmp(name, "worker.cert") == 0)
		r = set_path(st, &c->cert_file, value);
	else if (strcmp(name, "worker.key") == 0)
		r = set_path(st, &c->key_file, value);
	else if (strcmp(name, "worker.token_key") == 0)
		r = set_path(st, &c->token_key_file, value);
	else if (strcmp(name, "worker.images") == 0)
		r = push_words(&c->images, value);
	else if (strcmp(name, "scheduler.address") == 0)
		r = push_words(&c->sched_addresses, value);
	else if (strcmp(name, "scheduler.pin") == 0)
		r = push_words(&c->sched_pins, value);
	else if (strcmp(name, "scheduler.worker_token_file") == 0)
		r = set_path(st, &c->sched_token_file, value);
	else if (strcmp(name, "scheduler.advertise") == 0)
		r = set_str(&c->advertise, value);
	else if (strcmp(name, "worker.user") == 0) {
		if (strlen(value) > 32 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		    strlen(value))
			r = error_set(st->err, -EINVAL, "%s: '%.40s' is not a user name", name, value);
		else
			r = set_str(&c->worker_user, value);
	} else if (strcmp(name, "worker.cache_mode") == 0) {
		if (strcmp(value, "local") != 0 && strcmp(value, "paranoid") != 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not local or paranoid", name, value);
		else
			r = set_str(&c->cache_mode, value);
	} else if (strncmp(name, "s3.", 3) == 0)
		r = s3_setting(st, name, key, value);
	else if (strcmp(name, "worker.max_calls") == 0) {
		if ((r = set_uint(st, name, value, 4096, &u)) == 0)
			c->max_calls = (unsigned)u;
	} else if (strcmp(name, "cache.max_size") == 0)
		r = set_uint(st, name, value, UINT64_MAX, &c->max_size);
	else if (strcmp(name, "limits.max_blob") == 0)
		r = set_uint(st, name, value, (uint64_t)1 << 30, &c->max_blob);
	else if (strcmp(name, "limits.max_message") == 0) {
		r = set_uint(st, name, value, (uint64_t)1 << 30, &c->max_message);
		if (r == 0 && c->max_message < ((uint64_t)1 << 20))
			r = error_set(st->err, -EINVAL, "%s: at least 1M", name);
	}
	else if (strcmp(name, "limits.exec_timeout") == 0) {
		if ((r = set_uint(st, name, value, 86400, &u)) == 0)
			c->exec_timeout = (unsigned)u;
	} else if (strcmp(name, "runtime.kind") == 0)
		r = set_str(&c->runtime, value);
	else if (strcmp(name, "runtime.allow_unsafe_local") == 0) {
		if (config_parse_bool(value, &c->allow_unsafe_local) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, value);
	} else if (strcmp(name, "runtime.search_path") == 0)
		r = set_str(&c->search_path, value);
	else if (strcmp(name, "runtime.max_parallel") == 0) {
		if ((r = set_uint(st, name, value, 1024, &u)) == 0)
			c->max_parallel = (int)u;
	} else if (strcmp(name, "images.dir") == 0)
		r = set_path(st, &c->images_dir, value);
	else if (strcmp(name, "images.max_size") == 0)
		r = set_uint(st, name, value, (uint64_t)1 << 40, &c->image_max_size);
	else if (strcmp(name, "images.max_entries") == 0)
		r = set_uint(st, name, value, 100000000, &c->image_max_entries);
	else if (strcmp(name, "microvm.vmm") == 0) {
		if (strcmp(value, "qemu") != 0 && strcmp(value, "firecracker") != 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not qemu or firecracker", name, value);
		else
			r = set_str(&c->vmm, value);
	} else if (strcmp(name, "microvm.binary") == 0)
		r = set_path(st, &c->vmm_binary, value);
	else if (strcmp(name, "microvm.kernel") == 0)
		r = set_path(st, &c->kernel, value);
	else if (strcmp(name, "microvm.initrd") == 0)
		r = set_path(st, &c->initrd, value);
	else if (strcmp(name, "microvm.accel") == 0) {
		if (strcmp(value, "auto") != 0 && strcmp(value, "kvm") != 0 && strcmp(value, "tcg") != 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not auto, kvm or tcg", name, value);
		else
			r = set_str(&c->accel, value);
	} else if (strcmp(name, "microvm.allow_tcg") == 0 || strcmp(name, "microvm.sandbox") == 0) {
		bool *dst = strcmp(key, "allow_tcg") == 0 ? &c->allow_tcg : &c->sandbox;
		if (config_parse_bool(value, dst) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, value);
	} else if (strcmp(name, "microvm.user") == 0)
		r = set_str(&c->vm_user, value);
	else if (strcmp(name, "microvm.uid_base") == 0) {
		if ((r = set_uint(st, name, value, 2000000000, &u)) == 0 && u > 0 && u < 1000)
			r = error_set(st->err, -EINVAL, "%s: 0 (off) or at least 1000", name);
		c->vm_uid_base = (unsigned)u;
	}
	else if (strcmp(name, "microvm.vcpus") == 0) {
		if ((r = set_uint(st, name, value, 8, &u)) == 0 && u < 1)
			r = error_set(st->err, -EINVAL, "%s: 1 to 8", name);
		c->vcpus = (unsigned)u;
	} else if (strcmp(name, "microvm.memory") == 0) {
		/* A size ("1G", "512M"), stored in MiB. */
		if ((r = set_uint(st, name, value, (uint64_t)64 << 30, &u)) == 0 && u < ((uint64_t)128 << 20))
			r = error_set(st->err, -EINVAL, "%s: at least 128M", name);
		c->memory_mib = (unsigned)(u >> 20);
	} else if (strcmp(name, "microvm.max_vms") == 0 || strcmp(name, "microvm.max_vms_per_tenant") == 0) {
		if ((r = set_uint(st, name, value, 1024, &u)) == 0 && u < 1)
			r = error_set(st->err, -EINVAL, "%s: at least 1", name);
		*(strcmp(key, "max_vms") == 0 ? &c->max_vms : &c->max_vms_per_tenant) = (unsigned)u;
	} else if (strcmp(name, "microvm.idle_timeout") == 0 || strcmp(name, "microvm.max_age") == 0 ||
		   strcmp(name, "microvm.boot_timeout") == 0) {
		if ((r = set_uint(st, name, value, 7 * 86400, &u)) == 0 && u < 1)
			r = error_set(st->err, -EINVAL, "%s: at least 1 second", name);
		*(strcmp(key, "idle_timeout") == 0 ? &c->vm_idle_timeout :
		  strcmp(key, "max_age") == 0      ? &c->vm_max_age :
						     &c->boot_timeout) = (unsigned)u;
	} else if (strcmp(name, "microvm.cgroup") == 0) {
		if (strcmp(value, "auto") == 0)
			c->vm_cgroup = WORKER_CGROUP_AUTO;
		else if (strcmp(value, "required") == 0)
			c->vm_cgroup = WORKER_CGROUP_REQUIRED;
		else if (strcmp(value, "off") == 0)
			c->vm_cgroup = WORKER_CGROUP_OFF;
		else
			r = error_set(st->err, -EINVAL, "%s: '%s' is not auto, required or off", name, value);
	} else if (strcmp(name, "microvm.cgroup_memory") == 0) {
		/* A size; 0 derives it from memory. */
		if ((r = set_uint(st, name, value, (uint64_t)128 << 30, &c->vm_cgroup_memory)) == 0 &&
		    c->vm_cgroup_memory && c->vm_cgroup_memory < ((uint64_t)64 << 20))
			r = error_set(st->err, -EINVAL, "%s: 0 (memory + %uM) or at least 64M", name,
				      WORKER_VMM_OVERHEAD_MIB);
	} else if (strcmp(name, "microvm.cgroup_pids") == 0) {
		if ((r = set_uint(st, name, value, 65536, &u)) == 0 && u < 16)
			r = error_set(st->err, -EINVAL, "%s: 16 to 65536", name);
		c->vm_cgroup_pids = (unsigned)u;
	} else if (strcmp(name, "microvm.cgroup_cpus") == 0) {
		if ((r = set_uint(st, name, value, 256, &u)) == 0)
			c->vm_cgroup_cpus = (unsigned)u;
	} else if (strcmp(name, "microvm.seccomp") == 0) {
		if (config_parse_bool(value, &c->vm_seccomp) < 0)
			r = error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, value);
	} else if (strncmp(name, "audit.", 6) == 0)
		r = audit_setting(st, name, key, value);
	else if (strcmp(name, "limits.upload_quota") == 0 || strcmp(name, "limits.upload_window") == 0 ||
		 strcmp(name, "limits.max_execs_per_tenant") == 0 || strcmp(name, "limits.cas_quota") == 0 ||
		 strcmp(name, "limits.vm_wait") == 0 || strcmp(name, "limits.tenant") == 0)
		r = quota_setting(st, name, key, value);
	else
		r = error_set(st->err, -EINVAL, "unknown setting %s", name);
	if (r == -ENOMEM)
		error_set(st->err, r, "out of memory");
	return r == 0;
}

int worker_config_split_hostport(const char *s, char host[WORKER_HOSTPORT_MAX + 1], unsigned *ret_port)
{
	size_t n = strnlen(s, WORKER_HOSTPORT_MAX + 1);
	const char *colon = strrchr(s, ':');
	if (n > WORKER_HOSTPORT_MAX || !colon)
		return -EINVAL;
	const char *h = s, *h_end = colon;
	bool v6 = s[0] == '[';
	if (v6) {
		if (colon == s || colon[-1] != ']')
			return -EINVAL;
		h++;
		h_end--;
	}
	if (h_end <= h)
		return -EINVAL;
	for (const char *p = h; p < h_end; p++) {
		bool ok = v6 ? strchr("0123456789abcdefABCDEF:.", *p) != NULL :
			       (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
				       *p == '.' || *p == '-';
		if (!ok || !*p)
			return -EINVAL;
	}
	const char *port = colon + 1;
	if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
		return -EINVAL;
	unsigned long v = strtoul(port, NULL, 10);
	if (v > 65535)
		return -EINVAL;
	memcpy(host, h, (size_t)(h_end - h));
	host[h_end - h] = '\0';
	*ret_port = (unsigned)v;
	return 0;
}

bool worker_config_host_is_wildcard(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (!host[0] || strcmp(host, "*") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return a4.s_addr == htonl(INADDR_ANY);
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return memcmp(&a6, &in6addr_any, sizeof(a6)) == 0;
	return false;
}

/* The worker token: one line of at least WORKER_TOKEN_MIN printable ASCII
 * characters (no spaces) in a file that only its owner may access, like
 * every other secret hpcc reads; the scheduler reads its copy the same way. */
static int read_worker_token(const char *path, char **ret, struct error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int r = negative_errno();
		return error_set(err, r, "[scheduler] worker_token_file %s: %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = negative_errno();
		return error_set(err, r, "[scheduler] worker_token_file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "[scheduler] worker_token_file %s is not a regular file", path);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return error_set(err, -EPERM,
				 "[scheduler] worker_token_file %s is accessible by group or others (mode %04o); chmod 600 it",
				 path, (unsigned)(st.st_mode & 07777));
	struct buf b;
	buf_init(&b, WORKER_TOKEN_FILE_MAX + 1);
	int r = fs_read_fd(fd, WORKER_TOKEN_FILE_MAX, &b);
	size_t len = b.len;
	if (r == 0 && len > 0 && b.data[len - 1] == '\n')
		len--;
	for (size_t i = 0; r == 0 && i < len; i++)
		if ((unsigned char)b.data[i] < 0x21 || (unsigned char)b.data[i] > 0x7e)
			r = -EBADMSG;
	char *token = r == 0 && len >= WORKER_TOKEN_MIN ? strndup(b.data, len) : NULL;
	if (b.data)
		explicit_bzero(b.data, b.alloc);
	buf_free(&b);
	if (r == -EFBIG)
		return error_set(err, r, "[scheduler] worker_token_file %s is larger than %d bytes", path,
				 WORKER_TOKEN_FILE_MAX);
	if (r == -EBADMSG)
		return error_set(err, r, "[scheduler] worker_token_file %s: the token must be one line of printable "
				 "ASCII without spaces", path);
	if (r < 0)
		return error_set(err, r, "[scheduler] worker_token_file %s: %s", path, strerror(-r));
	if (len < WORKER_TOKEN_MIN)
		return error_set(err, -EBADMSG, "[scheduler] worker_token_file %s: the token is shorter than %d characters",
				 path, WORKER_TOKEN_MIN);
	if (!token)
		return error_set(err, -ENOMEM, "out of memory");
	*ret = token;
	return 0;
}

static bool pin_ok(const char *pin)
{
	struct digest d;
	return strlen(pin) == DIGEST_STR_LEN && strncmp(pin, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) == 0 &&
	       digest_parse(pin, &d) == 0;
}

/* [scheduler]: each key checked, one pin per address, the worker token
 * read, and the address clients dial decided. */
static int check_scheduler(struct worker_config *c, struct error *err)
{
	char host[WORKER_HOSTPORT_MAX + 1];
	unsigned port = 0;
	if (c->sched_addresses.n == 0) {
		if (c->sched_pins.n || c->sched_token_file || c->advertise)
			return error_set(err, -EINVAL, "[scheduler] pin, worker_token_file and advertise need an address");
		return 0;
	}
	if (c->sched_addresses.n > WORKER_SCHEDULERS_MAX)
		return error_set(err, -EINVAL, "[scheduler] address: at most %d schedulers", WORKER_SCHEDULERS_MAX);
	for (size_t i = 0; i < c->sched_addresses.n; i++)
		if (worker_config_split_hostport(c->sched_addresses.v[i], host, &port) < 0 || port == 0)
			return error_set(err, -EINVAL, "[scheduler] address: '%.80s' is not host:port", c->sched_addresses.v[i]);
	if (c->sched_pins.n == 0)
		return error_set(err, -EINVAL, "[scheduler] pin is required with address (the scheduler's certificate "
				 "pin, sha256:<hex>)");
	for (size_t i = 0; i < c->sched_pins.n; i++)
		if (!pin_ok(c->sched_pins.v[i]))
			return error_set(err, -EINVAL, "[scheduler] pin: '%.80s' is not sha256:<64 hex>", c->sched_pins.v[i]);
	/* One pin for every replica (they share a certificate), or one each. */
	if (c->sched_pins.n == 1) {
		while (c->sched_pins.n < c->sched_addresses.n)
			if (strv_push(&c->sched_pins, c->sched_pins.v[0]) < 0)
				return error_set(err, -ENOMEM, "out of memory");
	} else if (c->sched_pins.n != c->sched_addresses.n)
		return error_set(err, -EINVAL, "[scheduler] pin: give one pin, or one per address (%zu pins, %zu addresses)",
				 c->sched_pins.n, c->sched_addresses.n);
	if (!c->sched_token_file)
		return error_set(err, -EINVAL, "[scheduler] worker_token_file is required with address");
	int r = read_worker_token(c->sched_token_file, &c->sched_worker_token, err);
	if (r < 0)
		return r;
	if (c->advertise) {
		if (worker_config_split_hostport(c->advertise, host, &port) < 0 || worker_config_host_is_wildcard(host))
			return error_set(err, -EINVAL, "[scheduler] advertise: '%.80s' is not host:port that clients can dial",
					 c->advertise);
		return 0;
	}
	/* Clients dial what the worker tells the scheduler: a wildcard
	 * listen address tells them nothing. */
	if (worker_config_split_hostport(c->listen, host, &port) < 0 || worker_config_host_is_wildcard(host))
		return error_set(err, -EINVAL, "[scheduler] advertise is required: [worker] listen '%.80s' is not an address "
				 "clients can dial", c->listen);
	return set_str(&c->advertise, c->listen) < 0 ? error_set(err, -ENOMEM, "out of memory") : 0;
}

int worker_config_load(const char *path, struct worker_config *c, struct error *err)
{
	*c = (struct worker_config){
		.max_calls = 64,
		.max_size = (uint64_t)10 << 30,
		.max_blob = (uint64_t)256 << 20,
		.max_message = (uint64_t)300 << 20,
		.exec_timeout = 600,
		.max_parallel = 0,
		.image_max_size = (uint64_t)16 << 30,
		.image_max_entries = 1000000,
		.sandbox = true,
		.vcpus = 2,
		.memory_mib = 1024,
		.max_vms = 8,
		.max_vms_per_tenant = 2,
		.vm_idle_timeout = 300,
		.vm_max_age = 3600,
		.boot_timeout = 60,
		.vm_cgroup_pids = 256,
		.vm_seccomp = true,
		.audit_segment_size = (uint64_t)64 << 20,
		.audit_segment_age = 86400,
		.audit_retain = 7 * 86400,
		.audit_enabled = true,
		.upload_quota = (uint64_t)8 << 30,
		.upload_window = 60,
		.vm_wait = 10,
	};
	_cleanup_buf_ struct buf text;
	buf_init(&text, WORKER_CONFIG_MAX + 1);
	int r = fs_read_file(path, WORKER_CONFIG_MAX, &text);
	if (r < 0)
		return error_set(err, r, "%s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
	struct parse_state st = { .c = c, .err = err };
	_cleanup_free_ char *abs = path[0] == '/' ? strdup(path) : NULL;
	if (!abs) {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		abs = cwd ? path_join(cwd, path) : NULL;
	}
	char *slash = abs ? strrchr(abs, '/') : NULL;
	if (!slash)
		return error_set(err, -ENOMEM, "out of memory");
	st.base = strndup(abs, slash == abs ? 1 : (size_t)(slash - abs));
	c->path = strdup(abs);
	if (!st.base || !c->path) {
		free(st.base);
		return error_set(err, -ENOMEM, "out of memory");
	}
	/* inih reads a line into 200 bytes and would parse the rest of a
	 * longer one as a line of its own: refuse such lines ("images" may be
	 * given on several lines instead). */
	int lineno = 1;
	for (const char *p = text.data; *p; lineno++) {
		size_t n = strcspn(p, "\n");
		if (n >= WORKER_LINE_MAX) {
			free(st.base);
			free(c->path);
			c->path = NULL;
			return error_set(err, -EINVAL, "%s line %d: longer than %d bytes (give images on several lines)", path,
					 lineno, WORKER_LINE_MAX - 1);
		}
		p += n + (p[n] == '\n');
	}
	int line = ini_parse_string(text.data, handler, &st);
	free(st.base);
	if (line != 0) {
		if (!err->code)
			error_set(err, -EINVAL, "%s: syntax error on line %d", path, line);
		else {
			struct error e2 = { 0 };
			error_set(&e2, err->code, "%s line %d: %s", path, line, err->msg);
			*err = e2;
		}
		worker_config_free(c);
		return -EINVAL;
	}
	const char *missing = !c->id ? "id" : !c->listen ? "listen" : !c->dir ? "dir" : !c->cert_file ? "cert" :
			      !c->key_file ? "key" : !c->token_key_file && !c->sched_addresses.n ? "token_key" :
			      !c->images.n ? "images" : NULL;
	if (missing) {
		worker_config_free(c);
		return error_set(err, -EINVAL, "%s: [worker] %s is required%s", path, missing,
				 strcmp(missing, "token_key") == 0 ? " (or a [scheduler] address)" : "");
	}
	if ((r = check_scheduler(c, err)) < 0) {
		struct error e2 = { 0 };
		error_set(&e2, r, "%s: %s", path, err->msg);
		*err = e2;
		worker_config_free(c);
		return r;
	}
	if ((r = check_s3(c, err)) < 0) {
		struct error e2 = { 0 };
		error_set(&e2, r, "%s: %s", path, err->msg);
		*err = e2;
		worker_config_free(c);
		return r;
	}
	for (size_t i = 0; i < c->images.n; i++) {
		struct error ignored = { 0 };
		const char *v = c->images.v[i];
		if (image_digest_check(v, NULL, &ignored) < 0) {
			error_set(err, -EINVAL, "%s: [worker] images: '%.80s' is not sha256:<64 lowercase hex>", path, v);
			worker_config_free(c);
			return -EINVAL;
		}
	}
	if (!c->runtime && set_str(&c->runtime, "unsafe-local") < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (!c->search_path && set_str(&c->search_path, "/usr/local/bin:/usr/bin:/bin") < 0)
		return error_set(err, -ENOMEM, "out of memory");
	bool fc = c->vmm && strcmp(c->vmm, "firecracker") == 0;
	if ((!c->images_dir && !(c->images_dir = path_join(c->dir, "images"))) ||
	    (!c->vmm && set_str(&c->vmm, "qemu") < 0) ||
	    (!c->vmm_binary && set_str(&c->vmm_binary, fc ? "/usr/bin/firecracker" : "/usr/bin/qemu-system-x86_64") < 0) ||
	    (!c->accel && set_str(&c->accel, "auto") < 0) || (!c->vm_user && set_str(&c->vm_user, "nobody") < 0)) {
		worker_config_free(c);
		return error_set(err, -ENOMEM, "out of memory");
	}
	if (c->max_vms_per_tenant > c->max_vms) {
		worker_config_free(c);
		return error_set(err, -EINVAL, "%s: [microvm] max_vms_per_tenant (%u) is above max_vms (%u)", path,
				 c->max_vms_per_tenant, c->max_vms);
	}
	if (strcmp(c->runtime, "microvm") == 0 && (!c->kernel || !c->initrd)) {
		worker_config_free(c);
		return error_set(err, -EINVAL, "%s: the microvm runtime needs [microvm] kernel and initrd", path);
	}
	return 0;
}

void worker_config_free(struct worker_config *c)
{
	free(c->path);
	free(c->id);
	free(c->listen);
	free(c->dir);
	free(c->cert_file);
	free(c->key_file);
	free(c->token_key_file);
	strv_free(&c->images);
	free(c->runtime);
	free(c->search_path);
	free(c->images_dir);
	free(c->vmm);
	free(c->vmm_binary);
	free(c->kernel);
	free(c->initrd);
	free(c->accel);
	free(c->vm_user);
	free(c->worker_user);
	strv_free(&c->sched_addresses);
	strv_free(&c->sched_pins);
	free(c->sched_token_file);
	if (c->sched_worker_token)
		explicit_bzero(c->sched_worker_token, strlen(c->sched_worker_token));
	free(c->sched_worker_token);
	free(c->advertise);
	free(c->cache_mode);
	free(c->s3_endpoint);
	free(c->s3_region);
	free(c->s3_bucket);
	free(c->s3_prefix);
	free(c->s3_credentials_file);
	strv_free(&c->s3_tenant_budgets);
	strv_free(&c->tenant_limits);
	*c = (struct worker_config){ 0 };
}

bool worker_config_serves(const struct worker_config *c, const char *image)
{
	for (size_t i = 0; i < c->images.n; i++)
		if (strcmp(c->images.v[i], image) == 0)
			return true;
	return false;
}
