/*
 * Layer tars and their merge. Pass 1 (image_tree_build) reads every layer
 * once, bottom first, applies OCI whiteouts and refuses hostile entries, and
 * keeps the tree of entries that survive, without their data. Pass 2
 * (squashfs.c) reads the layers again and writes the data of exactly those
 * entries; image_tree_plan gives it the order. Both passes hash what they
 * read and check it against the layer's digest at its end, so the tree and
 * the data both come from the verified bytes, even when the blob's file is
 * rewritten between or during the passes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image_types.h"

struct archive;
struct archive_entry;

/* Checks a path from a tar and normalises it: one or more leading "./" and
 * trailing slashes go, "" is the root. Refused (with *ret_reason): absolute
 * paths, empty, "." or ".." components, a component over IMAGE_MAX_NAME
 * bytes, a path over IMAGE_MAX_PATH bytes. */
int layer_path_check(const char *raw, char **ret_path, const char **ret_reason);

/* Reading one layer blob as a tar, with the filter its media type names. */
struct layer_reader {
	struct archive *archive;
	const struct image_layer *layer;
	const struct image_limits *lim;
	struct hasher hasher;
	bool verify;            /* hash what is read; layer_reader_finish compares */
	bool filter_checked;
	uint64_t offset;        /* bytes of the blob handed to libarchive */
	uint64_t index;         /* of the entry last returned, from 0 */
	char *block;
};

int layer_reader_open(struct layer_reader *r, const struct image_layer *layer, const struct image_limits *lim,
		      bool verify, struct error *err);
/* 0 with the next entry, 1 at the end of the layer, or a negative errno. */
int layer_reader_next(struct layer_reader *r, struct archive_entry **ret_entry, struct error *err);
/* With verify: reads the rest of the blob and checks its digest again, so
 * that what was written came from the bytes that were verified. */
int layer_reader_finish(struct layer_reader *r, struct error *err);
void layer_reader_close(struct layer_reader *r);
/* "layer N (sha256:<12 hex>)" for messages; buf holds 48 bytes. */
const char *layer_name(const struct image_layer *layer, size_t index, char buf[48]);

/* One surviving entry. The links are the tree's own. */
struct image_entry {
	struct image_entry *parent, *first_child, *next_sibling, *prev_sibling, *hash_next;
	char *name;
	uint32_t mode;          /* S_IFDIR, S_IFREG or S_IFLNK with permission bits */
	uint32_t uid, gid;
	uint32_t mtime;
	uint64_t size;          /* regular files */
	char *link;             /* symlink target */
	uint32_t layer;         /* the layer whose entry wrote this one last */
	uint32_t clean_layer;   /* layer + 1 when no entry below is from a lower layer */
	uint32_t opaque_layer;  /* layer + 1 when made opaque in that layer */
	uint32_t source_layer;  /* regular files: the entry whose data this is */
	uint64_t source_index;
	/* Hardlinks: the normalised path that entry has in its layer, which
	 * pass 2 compares with what it reads there; NULL when it is this
	 * entry's own path. */
	char *source_path;
	uint64_t order;         /* position in the plan */
};

struct image_tree_stats {
	uint64_t entries;       /* surviving entries, the root not counted */
	uint64_t bytes;         /* their data, hardlinked data once */
	uint64_t dropped;       /* FIFOs and sockets left out */
	uint64_t read_entries;  /* entries read over all layers */
};

struct image_tree;

int image_tree_build(const struct image_layer *layers, size_t n, const struct image_limits *lim,
		     struct image_tree **ret, struct error *err);
void image_tree_free(struct image_tree *t);
void image_tree_get_stats(const struct image_tree *t, struct image_tree_stats *ret);

/* Calls fn for every directory and symlink, parents first and names in
 * byte order, with its path; then returns the regular files in the order
 * their data comes in the layers (*ret_files is malloc'd, entries are the
 * tree's). Entries sharing one source are hardlinks of the first. */
typedef int (*image_plan_fn)(const struct image_entry *e, const char *path, void *userdata);
int image_tree_plan(struct image_tree *t, image_plan_fn fn, void *userdata, struct image_entry ***ret_files,
		    size_t *ret_n);
/* The entry's path from the root, without a leading slash. */
int image_entry_path(const struct image_entry *e, char *buf, size_t size);
