/*
 * The real compiler (see compiler.h). Identity is the SHA-256 of the binary
 * together with its `--version` text and family: what ccache calls
 * compiler_check=content, plus the version so that a wrapper script that
 * execs another compiler still changes the key when its target changes.
 */
#include "compiler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"
#include "memo.h"
#include "proc.h"

#define QUERY_OUTPUT_MAX (1024 * 1024)

bool compiler_is_hpcc(const char *path, const char *self_exe)
{
	struct stat self, st, lst;
	if (stat(path, &st) < 0)
		return false;
	if (self_exe && stat(self_exe, &self) == 0 && st.st_dev == self.st_dev && st.st_ino == self.st_ino)
		return true;
	/* Another copy of hpcc behind a symlink is hpcc too. Only symlinks need
	 * resolving, which keeps the common case to one stat per candidate. */
	if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
		_cleanup_free_ char *real = realpath(path, NULL);
		return real && strncmp(path_basename(real), "hpcc", 4) == 0;
	}
	return strncmp(path_basename(path), "hpcc", 4) == 0;
}

char *compiler_find(const char *name, const char *self_exe)
{
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	const char *p = path;
	while (*p) {
		const char *e = strchrnul(p, ':');
		size_t n = (size_t)(e - p);
		_cleanup_free_ char *cand = NULL;
		if (n > 0 && asprintf(&cand, "%.*s/%s", (int)n, p, name) >= 0) {
			struct stat st;
			bool found = stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0;
			if (found && !compiler_is_hpcc(cand, self_exe))
				return TAKE_PTR(cand);
		}
		p = *e ? e + 1 : e;
	}
	return NULL;
}

struct cached_identity {
	char *path;
	struct stat st;
	struct toolchain tc;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_identity identities[64];
static size_t n_identities;

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

extern char **environ;

/* Queries run in the C locale: their output is parsed, and GCC translates
 * the -v listing's headings. */
static int run_query(char *const *argv, struct proc_result *ret)
{
	_cleanup_strv_ struct strv env = { 0 };
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "LC_", 3) != 0 && strncmp(*e, "LANG=", 5) != 0 && strncmp(*e, "LANGUAGE=", 9) != 0)
			if (strv_push(&env, *e) < 0)
				return -ENOMEM;
	if (strv_push(&env, "LC_ALL=C") < 0)
		return -ENOMEM;
	int r = proc_run_capture(argv, env.v, QUERY_OUTPUT_MAX, false, ret);
	if (r < 0)
		return r;
	if (proc_exit_code(ret->status) != 0) {
		proc_result_free(ret);
		return -ENOEXEC;
	}
	return 0;
}

int compiler_identify(const char *path, struct toolchain *ret)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return negative_errno();
	/* Asking hpcc for its --version as "the compiler" would recurse. */
	if (compiler_is_hpcc(path, "/proc/self/exe"))
		return -ELOOP;
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_identities; i++) {
		if (strcmp(identities[i].path, path) == 0 && same_stat(&identities[i].st, &st)) {
			*ret = identities[i].tc;
			pthread_mutex_unlock(&cache_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&cache_lock);

	struct file_digest bin;
	int r = memo_digest(NULL, path, &bin);
	if (r < 0)
		return r;
	char *argv[] = { (char *)path, (char *)"--version", NULL };
	struct proc_result pr;
	r = run_query(argv, &pr);
	if (r < 0)
		return r;
	struct toolchain tc = { .family = strstr(pr.out.data ? pr.out.data : "", "clang") ? FAMILY_CLANG : FAMILY_GCC };
	_cleanup_buf_ struct buf enc;
	buf_init(&enc, 0);
	buf_append_lp_str(&enc, "hpcc-toolchain-v1");
	buf_append_lp(&enc, bin.digest.b, DIGEST_LEN);
	buf_append_lp(&enc, pr.out.data, pr.out.len);
	buf_append_u64(&enc, tc.family);
	proc_result_free(&pr);
	r = enc.error ? enc.error : digest_bytes(enc.data, enc.len, &tc.id);
	if (r < 0)
		return r;

	pthread_mutex_lock(&cache_lock);
	if (n_identities == ARRAY_SIZE(identities)) {
		/* Bounded: a build uses a handful of compilers, so start over. */
		for (size_t i = 0; i < n_identities; i++)
			free(identities[i].path);
		n_identities = 0;
	}
	char *copy = strdup(path);
	if (copy)
		identities[n_identities++] = (struct cached_identity){ copy, st, tc };
	pthread_mutex_unlock(&cache_lock);
	*ret = tc;
	return 0;
}

static const char *lang_name(enum source_language lang)
{
	switch (lang) {
	case LANG_CXX:
		return "c++";
	case LANG_ASM_CPP:
		return "assembler-with-cpp";
	default:
		return "c";
	}
}

/* System directory lists are asked once per (compiler binary, language,
 * search-list options): a query costs a compiler start, ~10 ms. */
struct cached_dirs {
	char *key;        /* path, lang and flags, NUL-separated into one string */
	struct stat st;
	struct strv dirs;
};

static struct cached_dirs dir_cache[32];
static size_t n_dir_cache;

static char *dirs_key(const char *path, enum source_language lang, char *const *flags, size_t n_flags)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	buf_append_lp_str(&b, path);
	buf_append_u64(&b, lang);
	for (size_t i = 0; i < n_flags; i++)
		buf_append_lp_str(&b, flags[i]);
	/* The key holds NUL bytes from the length prefixes: hex it. */
	struct buf hex;
	buf_init(&hex, 2 << 20);
	for (size_t i = 0; i < b.len; i++)
		buf_printf(&hex, "%02x", (unsigned char)b.data[i]);
	buf_free(&b);
	return buf_steal(&hex);
}

static bool dirs_lookup(const char *key, const struct stat *st, struct strv *ret)
{
	bool found = false;
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_dir_cache && !found; i++) {
		if (strcmp(dir_cache[i].key, key) != 0 || !same_stat(&dir_cache[i].st, st))
			continue;
		*ret = (struct strv){ 0 };
		found = strv_extend(ret, dir_cache[i].dirs.v, dir_cache[i].dirs.n) == 0;
		if (!found)
			strv_free(ret);
	}
	pthread_mutex_unlock(&cache_lock);
	return found;
}

static void dirs_remember(char *key, const struct stat *st, const struct strv *dirs)
{
	struct strv copy = { 0 };
	if (strv_extend(&copy, dirs->v, dirs->n) < 0) {
		strv_free(&copy);
		free(key);
		return;
	}
	pthread_mutex_lock(&cache_lock);
	if (n_dir_cache == ARRAY_SIZE(dir_cache)) {
		for (size_t i = 0; i < n_dir_cache; i++) {
			free(dir_cache[i].key);
			strv_free(&dir_cache[i].dirs);
		}
		n_dir_cache = 0;
	}
	dir_cache[n_dir_cache++] = (struct cached_dirs){ key, *st, copy };
	pthread_mutex_unlock(&cache_lock);
}

static int system_dirs_query(const char *path, enum source_language lang, char *const *flags, size_t n_flags,
			     struct strv *ret);

int compiler_system_dirs(const char *path, enum source_language lang, char *const *flags, size_t n_flags,
			 struct strv *ret)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return negative_errno();
	char *key = dirs_key(path, lang, flags, n_flags);
	if (!key)
		return -ENOMEM;
	if (dirs_lookup(key, &st, ret)) {
		free(key);
		return 0;
	}
	int r = system_dirs_query(path, lang, flags, n_flags, ret);
	if (r < 0) {
		free(key);
		return r;
	}
	dirs_remember(key, &st, ret);
	return 0;
}

static int system_dirs_query(const char *path, enum source_language lang, char *const *flags, size_t n_flags,
			     struct strv *ret)
{
	_cleanup_strv_ struct strv argv = { 0 };
	int r;
	if ((r = strv_push(&argv, path)) < 0 || (r = strv_push(&argv, "-x")) < 0 ||
	    (r = strv_push(&argv, lang_name(lang))) < 0 || (r = strv_extend(&argv, flags, n_flags)) < 0 ||
	    (r = strv_push(&argv, "-E")) < 0 || (r = strv_push(&argv, "-v")) < 0 ||
	    (r = strv_push(&argv, "/dev/null")) < 0)
		return r;
	struct proc_result pr;
	r = run_query(argv.v, &pr);
	if (r < 0)
		return r;
	/* The -v listing: lines between '#include <...> search starts here:' and
	 * 'End of search list.' are the directories, one per line, indented;
	 * clang marks framework directories with a suffix. */
	const char *text = pr.err.data ? pr.err.data : "";
	const char *start = strstr(text, "#include <...> search starts here:");
	struct strv dirs = { 0 };
	if (start) {
		const char *p = strchr(start, '\n');
		while (p && *++p == ' ') {
			const char *eol = strchrnul(p, '\n');
			const char *b = p;
			while (*b == ' ')
				b++;
			size_t n = (size_t)(eol - b);
			const char *fw = " (framework directory)";
			if (n > strlen(fw) && memcmp(eol - strlen(fw), fw, strlen(fw)) == 0)
				n -= strlen(fw);
			_cleanup_free_ char *raw = strndup(b, n);
			_cleanup_free_ char *real = raw ? realpath(raw, NULL) : NULL;
			if (!raw || (r = strv_push_take(&dirs, path_normalize(raw))) < 0) {
				proc_result_free(&pr);
				strv_free(&dirs);
				return r < 0 ? r : -ENOMEM;
			}
			/* The .d may spell either form: keep the resolved path too. */
			if (real && strcmp(real, dirs.v[dirs.n - 1]) != 0)
				(void)strv_push(&dirs, real);
			p = *eol ? eol : NULL;
			if (!p)
				break;
		}
	}
	proc_result_free(&pr);
	*ret = dirs;
	return 0;
}

struct cached_native {
	char *path;
	struct stat st;
	struct digest d;
};

static struct cached_native native_cache[16];
static size_t n_native_cache;

static int native_query(const char *path, struct digest *ret);

int compiler_native_digest(const char *path, struct digest *ret)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return negative_errno();
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_native_cache; i++) {
		if (strcmp(native_cache[i].path, path) == 0 && same_stat(&native_cache[i].st, &st)) {
			*ret = native_cache[i].d;
			pthread_mutex_unlock(&cache_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	struct digest d;
	int r = native_query(path, &d);
	if (r < 0)
		return r;
	pthread_mutex_lock(&cache_lock);
	if (n_native_cache == ARRAY_SIZE(native_cache)) {
		for (size_t i = 0; i < n_native_cache; i++)
			free(native_cache[i].path);
		n_native_cache = 0;
	}
	char *copy = strdup(path);
	if (copy)
		native_cache[n_native_cache++] = (struct cached_native){ copy, st, d };
	pthread_mutex_unlock(&cache_lock);
	*ret = d;
	return 0;
}

static int native_query(const char *path, struct digest *ret)
{
	/* `-###` prints the cc1 command line with -march=native expanded into
	 * the concrete -march/-mtune and feature flags the driver chose. */
	char *argv[] = { (char *)path, (char *)"-march=native", (char *)"-mtune=native", (char *)"-###",
			 (char *)"-E", (char *)"-x", (char *)"c", (char *)"/dev/null", NULL };
	struct proc_result pr;
	int r = run_query(argv, &pr);
	if (r < 0)
		return r;
	r = digest_bytes(pr.err.data ? pr.err.data : "", pr.err.len, ret);
	proc_result_free(&pr);
	return r;
}

void compiler_forget(void)
{
	pthread_mutex_lock(&cache_lock);
	for (size_t i = 0; i < n_identities; i++)
		free(identities[i].path);
	n_identities = 0;
	for (size_t i = 0; i < n_dir_cache; i++) {
		free(dir_cache[i].key);
		strv_free(&dir_cache[i].dirs);
	}
	n_dir_cache = 0;
	for (size_t i = 0; i < n_native_cache; i++)
		free(native_cache[i].path);
	n_native_cache = 0;
	pthread_mutex_unlock(&cache_lock);
}
