/*
 * Test images for the image importer's unit tests (test_oci.c,
 * test_layers.c, test_image_store.c): layer tars written with libarchive
 * from a table of entries, raw tar records for what libarchive will not
 * write (a hardlink carrying data), OCI layouts and docker archives around
 * them (digests from the repo's own helpers), and a listing of an imported
 * squashfs read back through sqfs2tar. Header-only, like testutil.h.
 */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "digest.h"
#include "fs.h"

/* One tar entry: 'f' file (data), 'd' dir, 'l' symlink (data = target),
 * 'h' hardlink (data = target), 'c' char device, 'b' block device,
 * 'p' FIFO. mode 0 means 0644 (files) or 0755 (dirs). */
struct fx_entry {
	char type;
	const char *path;
	const char *data;
	unsigned mode;
	long uid, gid;
};

enum fx_compression { FX_PLAIN, FX_GZIP, FX_ZSTD };

struct fx_desc {
	char digest[DIGEST_STR_LEN + 1];
	char diff_id[DIGEST_STR_LEN + 1];  /* layers: of the uncompressed tar */
	unsigned long long size;
	const char *media_type;
};

static inline la_ssize_t fx_buf_write(struct archive *a, void *ud, const void *data, size_t n)
{
	(void)a;
	return buf_append(ud, data, n) < 0 ? -1 : (la_ssize_t)n;
}

static inline void fx_tar(const struct fx_entry *e, size_t n, enum fx_compression comp, struct buf *out)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (comp == FX_GZIP)
		archive_write_add_filter_gzip(a);
	else if (comp == FX_ZSTD)
		archive_write_add_filter_zstd(a);
	archive_write_set_bytes_per_block(a, 512);
	/* No zero padding after a compressed stream (a zstd reader takes it
	 * for a broken second frame). */
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open2(a, out, NULL, fx_buf_write, NULL, NULL) != ARCHIVE_OK)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_uid(ae, e[i].uid);
		archive_entry_set_gid(ae, e[i].gid);
		archive_entry_set_mtime(ae, 1700000000 + (time_t)i, 0);
		unsigned mode = e[i].mode;
		switch (e[i].type) {
		case 'f':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, mode ? mode : 0644);
			archive_entry_set_size(ae, e[i].data ? (la_int64_t)strlen(e[i].data) : 0);
			break;
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, mode ? mode : 0755);
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_set_symlink(ae, e[i].data);
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_hardlink(ae, e[i].data);
			archive_entry_set_size(ae, 0);
			break;
		case 'c':
		case 'b':
			archive_entry_set_filetype(ae, e[i].type == 'c' ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_perm(ae, 0600);
			archive_entry_set_rdevmajor(ae, 1);
			archive_entry_set_rdevminor(ae, 3);
			break;
		case 'p':
			archive_entry_set_filetype(ae, AE_IFIFO);
			archive_entry_set_perm(ae, 0644);
			break;
		default:
			abort();
		}
		if (archive_write_header(a, ae) < ARCHIVE_WARN)
			abort();
		if (e[i].type == 'f' && e[i].data)
			archive_write_data(a, e[i].data, strlen(e[i].data));
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static inline void fx_write(const char *dir, const char *name, const void *data, size_t n)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0 || fs_mkdir_p(dir, 0755) < 0)
		abort();
	char *slash = strrchr(path, '/');
	*slash = '\0';
	fs_mkdir_p(path, 0755);
	*slash = '/';
	if (fs_write_atomic(path, data, n, 0644, false) < 0)
		abort();
	free(path);
}

static inline void fx_digest_str(const void *data, size_t n, char out[DIGEST_STR_LEN + 1])
{
	struct digest d;
	digest_bytes(data, n, &d);
	digest_to_string(&d, out);
}

/* Stores a blob under dir/blobs/sha256/ and describes it. */
static inline struct fx_desc fx_blob(const char *dir, const void *data, size_t n, const char *media_type)
{
	struct fx_desc d = { .size = n, .media_type = media_type };
	fx_digest_str(data, n, d.digest);
	char name[128];
	snprintf(name, sizeof(name), "blobs/sha256/%.64s", d.digest + 7);
	fx_write(dir, name, data, n);
	return d;
}

static inline const char *fx_layer_type(enum fx_compression c)
{
	return c == FX_GZIP ? "application/vnd.oci.image.layer.v1.tar+gzip" :
	       c == FX_ZSTD ? "application/vnd.oci.image.layer.v1.tar+zstd" :
			      "application/vnd.oci.image.layer.v1.tar";
}

static inline struct fx_desc fx_layer(const char *dir, const struct fx_entry *e, size_t n, enum fx_compression c)
{
	struct buf tar, plain;
	buf_init(&tar, 0);
	buf_init(&plain, 0);
	fx_tar(e, n, c, &tar);
	fx_tar(e, n, FX_PLAIN, &plain);
	struct fx_desc d = fx_blob(dir, tar.data, tar.len, fx_layer_type(c));
	fx_digest_str(plain.data, plain.len, d.diff_id);
	buf_free(&tar);
	buf_free(&plain);
	return d;
}

static inline struct fx_desc fx_config(const char *dir, const struct fx_desc *layers, size_t n, const char *arch)
{
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "{\"architecture\":\"%s\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[", arch);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s\"%s\"", i ? "," : "", layers[i].diff_id);
	buf_append_str(&b, "]}}");
	struct fx_desc d = fx_blob(dir, b.data, b.len, "application/vnd.oci.image.config.v1+json");
	buf_free(&b);
	return d;
}

static inline struct fx_desc fx_manifest(const char *dir, const struct fx_desc *config, const struct fx_desc *layers, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b,
		   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		   "\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu},\"layers\":[",
		   config->media_type, config->digest, config->size);
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu}", i ? "," : "",
			   layers[i].media_type, layers[i].digest, layers[i].size);
	buf_append_str(&b, "]}");
	struct fx_desc d = fx_blob(dir, b.data, b.len, "application/vnd.oci.image.manifest.v1+json");
	buf_free(&b);
	return d;
}

/* index.json with the given descriptors (platform linux/<arch> when arch). */
static inline void fx_index(const char *dir, const struct fx_desc *m, const char *const *arch, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "{\"schemaVersion\":2,\"manifests\":[");
	for (size_t i = 0; i < n; i++) {
		buf_printf(&b, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%llu", i ? "," : "", m[i].media_type,
			   m[i].digest, m[i].size);
		if (arch && arch[i])
			buf_printf(&b, ",\"platform\":{\"architecture\":\"%s\",\"os\":\"linux\"}", arch[i]);
		buf_append_str(&b, "}");
	}
	buf_append_str(&b, "]}");
	fx_write(dir, "index.json", b.data, b.len);
	fx_write(dir, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
	buf_free(&b);
}

/* A whole layout of up to 8 layers (given as entry tables); returns the
 * manifest descriptor. */
struct fx_layer_spec {
	const struct fx_entry *entries;
	size_t n;
	enum fx_compression compression;
};

static inline struct fx_desc fx_image(const char *dir, const struct fx_layer_spec *spec, size_t n)
{
	struct fx_desc layers[8];
	for (size_t i = 0; i < n; i++)
		layers[i] = fx_layer(dir, spec[i].entries, spec[i].n, spec[i].compression);
	struct fx_desc config = fx_config(dir, layers, n, "amd64");
	struct fx_desc m = fx_manifest(dir, &config, layers, n);
	fx_index(dir, &m, NULL, 1);
	return m;
}

/* A classic docker archive: <config hex>.json, <n>/layer.tar, manifest.json,
 * after the extra members (files, 'f' entries). */
static inline void fx_docker_archive_extra(const char *path, const struct fx_layer_spec *spec, size_t n,
					   const struct fx_entry *extra, size_t n_extra, char *ret_config_digest,
					   unsigned long long *ret_config_size)
{
	struct buf layers[8];
	char diff[8][DIGEST_STR_LEN + 1];
	for (size_t i = 0; i < n; i++) {
		buf_init(&layers[i], 0);
		fx_tar(spec[i].entries, spec[i].n, FX_PLAIN, &layers[i]);
		fx_digest_str(layers[i].data, layers[i].len, diff[i]);
	}
	struct buf config, manifest;
	buf_init(&config, 0);
	buf_init(&manifest, 0);
	buf_append_str(&config, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[");
	for (size_t i = 0; i < n; i++)
		buf_printf(&config, "%s\"%s\"", i ? "," : "", diff[i]);
	buf_append_str(&config, "]}}");
	char cd[DIGEST_STR_LEN + 1];
	fx_digest_str(config.data, config.len, cd);
	buf_printf(&manifest, "[{\"Config\":\"%s.json\",\"RepoTags\":[\"t:1\"],\"Layers\":[", cd + 7);
	for (size_t i = 0; i < n; i++)
		buf_printf(&manifest, "%s\"l%zu/layer.tar\"", i ? "," : "", i);
	buf_append_str(&manifest, "]}]");

	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (archive_write_open_filename(a, path) != ARCHIVE_OK)
		abort();
	for (size_t i = 0; i < n_extra; i++) {
		size_t len = extra[i].data ? strlen(extra[i].data) : 0;
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, extra[i].path);
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_perm(ae, 0644);
		archive_entry_set_size(ae, (la_int64_t)len);
		if (archive_write_header(a, ae) < ARCHIVE_WARN)
			abort();
		archive_write_data(a, extra[i].data, len);
		archive_entry_free(ae);
	}
	for (size_t i = 0; i < n + 2; i++) {
		char name[128];
		const struct buf *b = i < n ? &layers[i] : i == n ? &config : &manifest;
		if (i < n)
			snprintf(name, sizeof(name), "l%zu/layer.tar", i);
		else if (i == n)
			snprintf(name, sizeof(name), "%s.json", cd + 7);
		else
			snprintf(name, sizeof(name), "manifest.json");
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, name);
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_perm(ae, 0644);
		archive_entry_set_size(ae, (la_int64_t)b->len);
		archive_write_header(a, ae);
		archive_write_data(a, b->data, b->len);
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
	if (ret_config_digest)
		memcpy(ret_config_digest, cd, sizeof(cd));
	if (ret_config_size)
		*ret_config_size = config.len;
	for (size_t i = 0; i < n; i++)
		buf_free(&layers[i]);
	buf_free(&config);
	buf_free(&manifest);
}

static inline void fx_docker_archive(const char *path, const struct fx_layer_spec *spec, size_t n, char *ret_config_digest,
				     unsigned long long *ret_config_size)
{
	fx_docker_archive_extra(path, spec, n, NULL, 0, ret_config_digest, ret_config_size);
}

/* Raw tar records, written through libarchive's "raw" format (so that they
 * can be compressed): fx_raw_open, then headers and data, then
 * fx_raw_close, which ends the tar. */
static inline struct archive *fx_raw_open(const char *path, enum fx_compression comp)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_raw(a);
	if (comp == FX_GZIP)
		archive_write_add_filter_gzip(a);
	else if (comp == FX_ZSTD)
		archive_write_add_filter_zstd(a);
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open_filename(a, path) != ARCHIVE_OK)
		abort();
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname(ae, "raw");
	archive_entry_set_filetype(ae, AE_IFREG);
	if (archive_write_header(a, ae) != ARCHIVE_OK)
		abort();
	archive_entry_free(ae);
	return a;
}

static inline void fx_raw_bytes(struct archive *a, const void *data, size_t n)
{
	if (n && archive_write_data(a, data, n) != (la_ssize_t)n)
		abort();
}

/* n bytes of data (zeros when data is NULL), padded to whole blocks. */
static inline void fx_raw_data(struct archive *a, const void *data, unsigned long long n)
{
	static const char zeros[1 << 16];
	const char *p = data;
	for (unsigned long long left = n; left > 0;) {
		size_t k = left > sizeof(zeros) ? sizeof(zeros) : (size_t)left;
		fx_raw_bytes(a, p ? p : zeros, k);
		if (p)
			p += k;
		left -= k;
	}
	if (n % 512)
		fx_raw_bytes(a, zeros, 512 - n % 512);
}

/* One ustar header: type '0' file, '1' hardlink to link, '5' directory,
 * 'x' pax extended header, ...; size is what the header says. */
static inline void fx_raw_header(struct archive *a, const char *name, char type, const char *link, unsigned long long size)
{
	char h[512];
	memset(h, 0, sizeof(h));
	snprintf(h, 100, "%s", name);
	snprintf(h + 100, 8, "%07o", 0644u);
	snprintf(h + 108, 8, "%07o", 0u);
	snprintf(h + 116, 8, "%07o", 0u);
	snprintf(h + 124, 12, "%011llo", size & 077777777777ULL);
	snprintf(h + 136, 12, "%011o", 1700000000u);
	h[156] = type;
	if (link)
		snprintf(h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < sizeof(h); i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 7, "%06o", sum & 0777777u);
	h[155] = ' ';
	fx_raw_bytes(a, h, sizeof(h));
}

/* A pax extended header with one record: it makes the archive pax, where
 * a hardlink's size is honoured. */
static inline void fx_raw_pax(struct archive *a, const char *key, const char *value)
{
	size_t body = strlen(key) + strlen(value) + 3, len = body + 1;
	while ((size_t)snprintf(NULL, 0, "%zu", len) + body != len)
		len = (size_t)snprintf(NULL, 0, "%zu", len) + body;
	char *rec = NULL;
	if (asprintf(&rec, "%zu %s=%s\n", len, key, value) < 0 || strlen(rec) != len)
		abort();
	fx_raw_header(a, "PaxHeader", 'x', NULL, len);
	fx_raw_data(a, rec, len);
	free(rec);
}

static inline void fx_raw_close(struct archive *a)
{
	static const char end[1024];
	fx_raw_bytes(a, end, sizeof(end));
	if (archive_write_close(a) != ARCHIVE_OK)
		abort();
	archive_write_free(a);
}

/* A layout whose one plain layer is the tar in the file tar_path. */
static inline struct fx_desc fx_image_from_tar(const char *dir, const char *tar_path)
{
	struct buf tar;
	buf_init(&tar, (size_t)1 << 30);
	if (fs_read_file(tar_path, (size_t)1 << 30, &tar) < 0)
		abort();
	struct fx_desc layer = fx_blob(dir, tar.data, tar.len, fx_layer_type(FX_PLAIN));
	memcpy(layer.diff_id, layer.digest, sizeof(layer.diff_id));
	buf_free(&tar);
	struct fx_desc config = fx_config(dir, &layer, 1, "amd64");
	struct fx_desc m = fx_manifest(dir, &config, &layer, 1);
	fx_index(dir, &m, NULL, 1);
	return m;
}

/* Tars a directory's files (as a docker archive holding an OCI layout). */
static inline void fx_tar_dir(const char *dir, const char *out)
{
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/tar", "tar", "-C", dir, "-cf", out, ".", (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		abort();
}

/* What a squashfs holds, read back through sqfs2tar. */
struct fx_item {
	char path[512];
	char type;          /* 'f', 'd', 'l', 'h' */
	unsigned mode;      /* permission bits */
	long uid, gid;
	char target[512];   /* symlink or hardlink target */
	char data[256];     /* a file's content (short files only) */
	long long size;
};

struct fx_listing {
	struct fx_item *items;
	size_t n;
};

static inline void fx_list(const char *sqsh, struct fx_listing *ret)
{
	int p[2];
	if (pipe(p) < 0)
		abort();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		execlp("sqfs2tar", "sqfs2tar", sqsh, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	if (archive_read_open_fd(a, p[0], 65536) != ARCHIVE_OK)
		abort();
	ret->items = NULL;
	ret->n = 0;
	struct archive_entry *ae;
	while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
		ret->items = realloc(ret->items, (ret->n + 1) * sizeof(*ret->items));
		struct fx_item *it = &ret->items[ret->n++];
		memset(it, 0, sizeof(*it));
		const char *path = archive_entry_pathname(ae);
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		snprintf(it->path, sizeof(it->path), "%s", path);
		size_t len = strlen(it->path);
		if (len && it->path[len - 1] == '/')
			it->path[len - 1] = '\0';
		it->mode = archive_entry_perm(ae);
		it->uid = (long)archive_entry_uid(ae);
		it->gid = (long)archive_entry_gid(ae);
		it->size = archive_entry_size(ae);
		if (archive_entry_hardlink(ae)) {
			it->type = 'h';
			snprintf(it->target, sizeof(it->target), "%s", archive_entry_hardlink(ae));
		} else if (archive_entry_filetype(ae) == AE_IFDIR)
			it->type = 'd';
		else if (archive_entry_filetype(ae) == AE_IFLNK) {
			it->type = 'l';
			snprintf(it->target, sizeof(it->target), "%s", archive_entry_symlink(ae));
		} else {
			it->type = 'f';
			archive_read_data(a, it->data, sizeof(it->data) - 1);
		}
	}
	archive_read_free(a);
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
}

static inline const struct fx_item *fx_find(const struct fx_listing *l, const char *path)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].path, path) == 0)
			return &l->items[i];
	return NULL;
}

/* Files in dir other than "." and "..". */
static inline int fx_count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static inline char *fx_path(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* Flips one byte of a file in place (its size stays). */
static inline void fx_flip(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	unsigned char c;
	if (fd < 0 || pread(fd, &c, 1, at) != 1)
		abort();
	c ^= 0x01;
	if (pwrite(fd, &c, 1, at) != 1)
		abort();
	close(fd);
}
