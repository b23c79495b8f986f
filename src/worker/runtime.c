/*
 * The runtime registry and the checks every runtime shares (see runtime.h):
 * finding an ops table by the name worker.ini gives, and deciding which
 * compiler names, search paths and environment entries a client may ask for.
 * The checks live here rather than in each runtime so that a microVM runtime
 * refuses exactly what unsafe-local refuses.
 */
#include "runtime.h"

#include <stdio.h>
#include <string.h>

#include "fs.h"
#include "macro.h"

static const struct runtime_ops *const runtimes[] = {
	&runtime_unsafe_local,
	&runtime_microvm,
};

const struct runtime_ops *runtime_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(runtimes); i++)
		if (strcmp(runtimes[i]->name, name) == 0)
			return runtimes[i];
	return NULL;
}

void runtime_result_free(struct runtime_result *r)
{
	if (!r)
		return;
	buf_free(&r->out);
	buf_free(&r->err);
}

static bool is_triple_part(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
			return false;
	return true;
}

static bool is_driver(const char *p, size_t n)
{
	static const char *const drivers[] = { "gcc", "g++", "cc", "c++", "clang", "clang++" };
	for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
		if (strlen(drivers[i]) == n && memcmp(drivers[i], p, n) == 0)
			return true;
	return false;
}

static bool is_version(const char *p, size_t n)
{
	if (n == 0 || p[0] < '0' || p[0] > '9')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '.'))
			return false;
	return true;
}

bool runtime_compiler_name_ok(const char *name)
{
	if (!name)
		return false;
	size_t len = strnlen(name, RUNTIME_COMPILER_NAME_MAX + 1);
	if (len == 0 || len > RUNTIME_COMPILER_NAME_MAX)
		return false;
	/* Split at '-': none of the driver names holds one, so the name is
	 * 0, 3 or 4 triple parts, the driver, and at most one version. */
	const char *part[8];
	size_t part_len[8], n = 0;
	for (const char *p = name;;) {
		const char *dash = strchr(p, '-');
		size_t l = dash ? (size_t)(dash - p) : strlen(p);
		if (n == ARRAY_SIZE(part))
			return false;
		part[n] = p;
		part_len[n++] = l;
		if (!dash)
			break;
		p = dash + 1;
	}
	static const size_t triple_sizes[] = { 0, 3, 4 };
	for (size_t t = 0; t < ARRAY_SIZE(triple_sizes); t++) {
		size_t k = triple_sizes[t];
		if (n != k + 1 && n != k + 2)
			continue;
		bool ok = is_driver(part[k], part_len[k]);
		for (size_t i = 0; ok && i < k; i++)
			ok = is_triple_part(part[i], part_len[i]);
		if (ok && n == k + 2)
			ok = is_version(part[k + 1], part_len[k + 1]);
		if (ok)
			return true;
	}
	return false;
}

bool runtime_search_path_ok(const char *search_path)
{
	if (!search_path || !search_path[0] || strlen(search_path) > 4096)
		return false;
	for (const char *p = search_path;;) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		if (n == 0 || p[0] != '/')
			return false;
		/* No "." or ".." parts and no empty ones: what is checked is what
		 * the compiler's own PATH lookups will use. */
		if (n > 1 && (p[n - 1] == '/' || !path_is_safe_relative(p + 1, n - 1)))
			return false;
		for (const char *q = p; q < p + n; q++)
			if (q[0] == '/' && q[1] == '.' && (q + 2 == p + n || q[2] == '/'))
				return false;
		if (!colon)
			return true;
		p = colon + 1;
	}
}

bool runtime_env_entry_ok(const char *entry)
{
	static const char prefix[] = "SOURCE_DATE_EPOCH=";
	if (!entry || strncmp(entry, prefix, sizeof(prefix) - 1) != 0)
		return false;
	const char *v = entry + sizeof(prefix) - 1;
	size_t n = strlen(v);
	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return false;
	return true;
}

/* A refused name for a message: cut short, unprintable bytes replaced, as
 * it comes from a client and may end up in a log. */
static void printable_copy(char *dst, size_t size, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < size; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

int runtime_check_exec(const struct runtime_exec *x, struct error *err)
{
	if (!x || !x->argv || !x->argv[0] || !x->staging)
		return error_set(err, -EINVAL, "incomplete exec request");
	if (!runtime_compiler_name_ok(x->argv[0])) {
		char shown[81];
		printable_copy(shown, sizeof(shown), x->argv[0]);
		return error_set(err, -EINVAL, "\"%s\" is not an accepted compiler name", shown);
	}
	if (x->timeout_ms <= 0)
		return error_set(err, -EINVAL, "an exec needs a positive timeout");
	size_t n = 0;
	for (; x->env && x->env[n]; n++) {
		if (!runtime_env_entry_ok(x->env[n]) || n >= 1)
			return error_set(err, -EINVAL, "environment entry %zu is refused: only one "
					 "SOURCE_DATE_EPOCH=<digits> is accepted", n);
	}
	return 0;
}
