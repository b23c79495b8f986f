/*
 * Cache keys (DESIGN.md §2). The base encoding is versioned and length-
 * prefixed; every path in it is tagged as written-relative (the cwd is part
 * of the key), root-relative (under the project root, so checkouts at other
 * places share keys) or absolute. The direct key and the action digest are
 * derived from the base digest, so they differ only in what they add.
 */
#include "engine_private.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"

/* Appends a path to a key encoding: as written when relative (the cwd is
 * part of the key), root-relative when under the project root, absolute
 * otherwise; a tag byte keeps the three apart. */
static int key_add_path(struct buf *b, const char *root, const char *path)
{
	if (path[0] != '/') {
		buf_append_char(b, 'L');
		return buf_append_lp_str(b, path);
	}
	_cleanup_free_ char *norm = path_normalize(path);
	if (!norm)
		return -ENOMEM;
	const char *rel = root ? path_under(norm, root) : NULL;
	buf_append_char(b, rel ? 'R' : 'A');
	return buf_append_lp_str(b, rel ? rel : norm);
}

/* Digests what -fprofile-use reads: a file, every regular file of a
 * directory, or the compiler's default profile name. */
static int key_add_profile(struct buf *b, const struct engine_job *job, struct memo *memo)
{
	const struct compile_args *a = &job->args;
	_cleanup_free_ char *path = NULL;
	if (a->profile_path)
		path = path_join(job->cwd, a->profile_path);
	else if (job->tc.family == FAMILY_CLANG)
		path = path_join(job->cwd, "default.profdata");
	else {
		_cleanup_free_ char *gcda = path_replace_suffix(a->output, ".gcda");
		path = gcda ? path_join(job->cwd, gcda) : NULL;
	}
	if (!path)
		return -ENOMEM;
	buf_append_lp_str(b, "profile");
	struct stat st;
	if (stat(path, &st) < 0) {
		buf_append_lp_str(b, "absent");
		return 0;
	}
	if (S_ISREG(st.st_mode)) {
		struct file_digest fd;
		int r = memo_digest(memo, path, &fd);
		if (r < 0)
			return r;
		return buf_append_lp(b, fd.digest.b, DIGEST_LEN);
	}
	/* A directory: names and digests of its regular files, sorted. */
	struct dirent **list = NULL;
	int n = scandir(path, &list, NULL, alphasort);
	if (n < 0)
		return negative_errno();
	int r = n > PROFILE_DIR_MAX_FILES ? -E2BIG : 0;
	for (int i = 0; i < n; i++) {
		if (r == 0 && list[i]->d_name[0] != '.') {
			_cleanup_free_ char *f = path_join(path, list[i]->d_name);
			struct file_digest fd;
			if (f && memo_digest(memo, f, &fd) == 0) {
				buf_append_lp_str(b, list[i]->d_name);
				buf_append_lp(b, fd.digest.b, DIGEST_LEN);
			}
		}
		free(list[i]);
	}
	free(list);
	return r;
}

bool keys_env_lookup(const struct engine_request *req, const char *name, const char **ret)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->n_env; i++)
		if (strncmp(req->env[i], name, n) == 0 && req->env[i][n] == '=') {
			*ret = req->env[i] + n + 1;
			return true;
		}
	return false;
}

int keys_build_base(struct engine *e, struct engine_job *job)
{
	const struct compile_args *a = &job->args;
	_cleanup_buf_ struct buf base;
	struct buf *b = &base;
	buf_init(b, 16 << 20);
	buf_append_lp_str(b, "hpcc-key-v1");
	/* The toolchain: the compiler here, or the image a worker runs it from
	 * (DESIGN.md §2), so that the two kinds of results never mix. */
	buf_append_lp_str(b, job->remote ? "image" : "local");
	buf_append_lp(b, job->remote ? job->remote_image.b : job->tc.id.b, DIGEST_LEN);
	buf_append_u64(b, job->tc.family);
	buf_append_u64(b, a->lang);
	buf_append_u64(b, a->n_key_args);
	for (size_t i = 0; i < a->n_key_args; i++) {
		buf_append_lp_str(b, a->key_args[i].flag);
		if (a->key_args[i].path)
			key_add_path(b, job->root, a->key_args[i].path);
		else
			buf_append_char(b, '-');
		buf_append_lp_str(b, a->key_args[i].suffix ? a->key_args[i].suffix : "");
	}
	buf_append_lp_str(b, "cwd");
	key_add_path(b, job->root, job->cwd);
	buf_append_lp_str(b, "source");
	key_add_path(b, job->root, a->source);
	buf_append_lp_str(b, "output");
	key_add_path(b, job->root, a->output);
	buf_append_u64(b, a->split_dwarf);
	buf_append_u64(b, a->coverage);
	if (a->coverage || a->profile_arcs) {
		/* Coverage objects embed the absolute .gcda path, which no prefix
		 * map rewrites: such results are tied to their directory. */
		_cleanup_free_ char *abs_out = path_join(job->cwd, a->output);
		buf_append_lp_str(b, job->cwd);
		buf_append_lp_str(b, abs_out ? abs_out : "");
	}
	buf_append_u64(b, job->root && job->prefix_map);
	for (size_t i = 0; i < job->env.n; i++)
		buf_append_lp_str(b, job->env.v[i]);
	if (a->march_native) {
		struct digest nd;
		int r = compiler_native_digest(job->compiler_path, &nd);
		if (r < 0)
			return r;
		buf_append_lp(b, nd.b, DIGEST_LEN);
	}
	if (a->profile_use) {
		int r = key_add_profile(b, job, e->memo);
		if (r < 0)
			return r;
	}
	/* Appends above are unchecked; a failed one (the key would silently
	 * lack an argument) is remembered by the buffer. */
	if (b->error)
		return b->error;
	return digest_bytes(b->data, b->len, &job->base_digest);
}

int keys_derive(const struct engine_job *job, const char *what, const struct digest *d, struct digest *ret)
{
	_cleanup_hasher_ struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	/* The tag with its NUL, so no tag is a prefix of another. */
	if ((r = hasher_update(&h, job->base_digest.b, DIGEST_LEN)) < 0 ||
	    (r = hasher_update(&h, what, strlen(what) + 1)) < 0 || (r = hasher_update(&h, d->b, DIGEST_LEN)) < 0)
		return r;
	return hasher_final(&h, ret);
}

static int dep_cmp(const void *a, const void *b)
{
	const struct dep_info *x = *(const struct dep_info *const *)a, *y = *(const struct dep_info *const *)b;
	if (x->rooted != y->rooted)
		return x->rooted ? -1 : 1;
	return strcmp(x->canonical, y->canonical);
}

/* The input manifest digest: sorted (path, digest) pairs, duplicates once;
 * with rooted_only, the files under the project root alone (remote keys,
 * where the image stands for the rest). */
int keys_inputs_digest(struct dep_info *deps, size_t n, bool rooted_only, struct digest *ret)
{
	_cleanup_free_ struct dep_info **sorted = calloc(n ? n : 1, sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &deps[i];
	qsort(sorted, n, sizeof(*sorted), dep_cmp);
	_cleanup_buf_ struct buf enc;
	buf_init(&enc, 64 << 20);
	buf_append_lp_str(&enc, "hpcc-inputs-v1");
	for (size_t i = 0; i < n; i++) {
		if ((i > 0 && dep_cmp(&sorted[i - 1], &sorted[i]) == 0) || (rooted_only && !sorted[i]->rooted))
			continue;
		buf_append_char(&enc, sorted[i]->rooted ? 'R' : 'A');
		buf_append_lp_str(&enc, sorted[i]->canonical);
		if (buf_append_lp(&enc, sorted[i]->fd.digest.b, DIGEST_LEN) < 0)
			return -E2BIG;
	}
	return digest_bytes(enc.data, enc.len, ret);
}
