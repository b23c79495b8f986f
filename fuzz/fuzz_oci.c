/*
 * Images a user hands `hpcc image import` (src/image/): OCI layouts,
 * image archives and layer tars. The first byte picks what the rest is:
 *   0  an OCI layout: parts separated by "@@@\n", index.json first, then blobs
 *      (manifests, indexes, configs, layers). A part may name a later
 *      part i as "@Di@" (its "sha256:<hex>" digest) and "@Si@" (its size),
 *      so that the fuzzer reaches past the digest checks. The layout goes
 *      through oci_image_open (oci_parse_json, the index walk, manifest,
 *      config, oci_check_config, the layer blobs) and its layers through
 *      image_tree_build, image_tree_plan and a verifying second read;
 *   1  one layer blob (the second byte picks plain, gzip or zstd), read
 *      by image_tree_build from a memfd as an import reads a blob;
 *   2  an image archive (docker save, OCI archive): oci_image_open on a
 *      file holding the rest, which unpacks it into a staging directory
 *      that must be gone afterwards.
 * Files live under /dev/shm (or /tmp)/fuzz-oci-<pid>/, emptied after every
 * input and removed at exit.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "digest.h"
#include "error.h"
#include "fs.h"
#include "layers.h"
#include "oci.h"

#define MAX_PARTS 8
#define PART_SEPARATOR "@@@\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[64], layout[96], staging[96], archive_path[96];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

/* Empties dir, keeping it. */
static void empty_dir(const char *dir)
{
	(void)nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	(void)mkdir(dir, 0700);
}

static void remove_base(void)
{
	(void)nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	if (base[0])
		return;
	/* tmpfs when there is one: an input creates and removes a few files. */
	struct stat st;
	const char *tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(base, sizeof(base), "%s/fuzz-oci-%d", tmp, (int)getpid());
	snprintf(layout, sizeof(layout), "%s/layout", base);
	snprintf(staging, sizeof(staging), "%s/staging", base);
	snprintf(archive_path, sizeof(archive_path), "%s/image.tar", base);
	empty_dir(base);
	(void)mkdir(layout, 0700);
	(void)mkdir(staging, 0700);
	atexit(remove_base);
}

static int plan_nothing(const struct image_entry *e, const char *path, void *userdata)
{
	(void)e;
	(void)path;
	(void)userdata;
	return 0;
}

/* What an import does with an image's layers: the merged tree, its plan,
 * and a second, verifying read of every layer. */
static void read_layers(const struct image_layer *layers, size_t n, const struct image_limits *lim)
{
	struct error err = { 0 };
	struct image_tree *t = NULL;
	if (image_tree_build(layers, n, lim, &t, &err) < 0)
		return;
	struct image_entry **files = NULL;
	size_t n_files = 0;
	if (image_tree_plan(t, plan_nothing, NULL, &files, &n_files) == 0)
		free(files);
	image_tree_free(t);
	for (size_t i = 0; i < n; i++) {
		struct layer_reader r;
		if (layer_reader_open(&r, &layers[i], lim, true, &err) < 0)
			continue;
		struct archive_entry *e;
		int s;
		while ((s = layer_reader_next(&r, &e, &err)) > 0)
			;
		if (s == 0)
			(void)layer_reader_finish(&r, &err);
		layer_reader_close(&r);
	}
}

static void open_image(const char *source, const struct image_limits *lim)
{
	struct oci_image img;
	struct error err = { 0 };
	if (oci_image_open(source, staging, lim, &img, &err) == 0) {
		read_layers(img.layers, img.n_layers, lim);
		oci_image_free(&img);
	}
}

/* Replaces "@Di@" and "@Si@" in part with what parts[i] is. */
static int substitute(const uint8_t *p, size_t n, char digests[][DIGEST_STR_LEN + 1], const size_t *sizes,
		      size_t n_parts, struct buf *out)
{
	for (size_t k = 0; k < n;) {
		if (k + 4 <= n && p[k] == '@' && (p[k + 1] == 'D' || p[k + 1] == 'S') && p[k + 2] >= '0' &&
		    p[k + 2] < '0' + (int)n_parts && p[k + 3] == '@') {
			size_t i = (size_t)(p[k + 2] - '0');
			char num[24];
			const char *s = digests[i];
			if (p[k + 1] == 'S') {
				snprintf(num, sizeof(num), "%zu", sizes[i]);
				s = num;
			}
			if (buf_append(out, s, strlen(s)) < 0)
				return -1;
			k += 4;
		} else {
			/* Up to the next '@' in one piece: layers are large. */
			const uint8_t *at = memchr(p + k + 1, '@', n - k - 1);
			size_t span = at ? (size_t)(at - (p + k)) : n - k;
			if (buf_append(out, p + k, span) < 0)
				return -1;
			k += span;
		}
	}
	return 0;
}

static void oci_layout(const uint8_t *data, size_t size, const struct image_limits *lim)
{
	const uint8_t *start[MAX_PARTS];
	size_t len[MAX_PARTS], n_parts = 0;
	for (size_t off = 0; n_parts < MAX_PARTS;) {
		const uint8_t *sep = memmem(data + off, size - off, PART_SEPARATOR, strlen(PART_SEPARATOR));
		size_t end = sep ? (size_t)(sep - data) : size;
		start[n_parts] = data + off;
		len[n_parts++] = end - off;
		if (!sep)
			break;
		off = end + strlen(PART_SEPARATOR);
	}
	char digests[MAX_PARTS][DIGEST_STR_LEN + 1];
	size_t sizes[MAX_PARTS];
	/* A part that names itself or an earlier one gets "" and 0. */
	memset(digests, 0, sizeof(digests));
	memset(sizes, 0, sizeof(sizes));
	struct buf parts[MAX_PARTS];
	for (size_t i = 0; i < n_parts; i++)
		buf_init(&parts[i], 1 << 20);
	bool ok = true;
	/* Last part first: each part names only later ones, already final. */
	for (size_t i = n_parts; ok && i-- > 0;) {
		if (substitute(start[i], len[i], digests, sizes, n_parts, &parts[i]) < 0) {
			ok = false;
			break;
		}
		struct digest d;
		if (digest_bytes(parts[i].data, parts[i].len, &d) < 0) {
			ok = false;
			break;
		}
		digest_to_string(&d, digests[i]);
		sizes[i] = parts[i].len;
	}
	char path[256];
	if (ok) {
		snprintf(path, sizeof(path), "%s/blobs/sha256", layout);
		ok = fs_mkdir_p(path, 0700) == 0;
	}
	static const char layout_file[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	snprintf(path, sizeof(path), "%s/oci-layout", layout);
	ok = ok && fs_write_atomic(path, layout_file, strlen(layout_file), 0600, false) == 0;
	snprintf(path, sizeof(path), "%s/index.json", layout);
	ok = ok && fs_write_atomic(path, parts[0].data, parts[0].len, 0600, false) == 0;
	for (size_t i = 1; ok && i < n_parts; i++) {
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", layout, digests[i] + strlen(DIGEST_PREFIX));
		ok = fs_write_atomic(path, parts[i].data, parts[i].len, 0600, false) == 0;
	}
	for (size_t i = 0; i < n_parts; i++)
		buf_free(&parts[i]);
	if (ok)
		open_image(layout, lim);
	empty_dir(layout);
}

static void one_layer(const uint8_t *data, size_t size, const struct image_limits *lim)
{
	if (size < 1)
		return;
	int fd = memfd_create("fuzz-layer", MFD_CLOEXEC);
	if (fd < 0)
		return;
	struct image_layer layer = { .size = size - 1, .compression = (enum layer_compression)(data[0] % 3), .fd = fd };
	struct digest d;
	if (fs_write_all(fd, data + 1, size - 1) == 0 && digest_bytes(data + 1, size - 1, &d) == 0) {
		digest_to_string(&d, layer.digest);
		read_layers(&layer, 1, lim);
	}
	close(fd);
}

/* An archive's staging copy goes once the image is open or refused
 * (docker_archive_cleanup, docker_archive_free): one left behind is a bug,
 * since it may be large. */
static void check_staging_empty(void)
{
	DIR *d = opendir(staging);
	if (!d)
		abort();
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			fprintf(stderr, "fuzz_oci: %s/%s left behind\n", staging, de->d_name);
			abort();
		}
	closedir(d);
}

static void image_archive(const uint8_t *data, size_t size, const struct image_limits *lim)
{
	if (fs_write_atomic(archive_path, data, size, 0600, false) < 0)
		return;
	open_image(archive_path, lim);
	(void)unlink(archive_path);
	check_staging_empty();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup();
	const struct image_limits lim = { .max_size = 64 << 20, .max_entries = 10000 };
	switch (data[0] % 3) {
	case 0:
		oci_layout(data + 1, size - 1, &lim);
		break;
	case 1:
		one_layer(data + 1, size - 1, &lim);
		break;
	default:
		image_archive(data + 1, size - 1, &lim);
		break;
	}
	return 0;
}
