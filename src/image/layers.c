/*
 * Pass 1 of an import (see layers.h): the merged tree of all layers. Nodes
 * are found by (parent, name) in one hash table, so walking a path costs its
 * length. Whiteouts follow the OCI layer spec: they hide entries of lower
 * layers only, wherever they stand in their own tar, which the per-node
 * layer number makes order-independent. Every refusal is one line naming the
 * layer and the entry; nothing is written in this pass.
 */
#include "layers.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define READ_BLOCK (1 << 20)
#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

int layer_path_check(const char *raw, char **ret_path, const char **ret_reason)
{
	size_t len = strlen(raw);
	if (len > IMAGE_MAX_PATH) {
		*ret_reason = "path longer than 4096 bytes";
		return -ENAMETOOLONG;
	}
	const char *p = raw;
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (strcmp(p, ".") == 0)
		p += 1;
	if (p[0] == '/') {
		*ret_reason = "absolute path";
		return -EINVAL;
	}
	len = strlen(p);
	while (len > 0 && p[len - 1] == '/')
		len--;
	for (size_t i = 0; i < len;) {
		size_t n = strcspn(p + i, "/");
		if (n > len - i)
			n = len - i;
		if (n == 0) {
			*ret_reason = "empty path component";
			return -EINVAL;
		}
		if (n == 2 && p[i] == '.' && p[i + 1] == '.') {
			*ret_reason = "'..' component";
			return -EINVAL;
		}
		if (n == 1 && p[i] == '.') {
			*ret_reason = "'.' component";
			return -EINVAL;
		}
		if (n > IMAGE_MAX_NAME) {
			*ret_reason = "path component longer than 255 bytes";
			return -ENAMETOOLONG;
		}
		i += n + 1;
	}
	char *path = strndup(p, len);
	if (!path) {
		*ret_reason = "out of memory";
		return -ENOMEM;
	}
	*ret_path = path;
	return 0;
}

const char *layer_name(const struct image_layer *layer, size_t index, char buf[48])
{
	snprintf(buf, 48, "layer %zu (%.19s)", index + 1, layer->digest);
	return buf;
}

/* --- Reading a layer ---------------------------------------------------- */

static la_ssize_t reader_read(struct archive *a, void *userdata, const void **ret_block)
{
	struct layer_reader *r = userdata;
	if (image_cancelled(r->lim)) {
		archive_set_error(a, EINTR, "interrupted");
		return -1;
	}
	ssize_t n;
	do
		n = pread(r->layer->fd, r->block, READ_BLOCK, (off_t)r->offset);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		archive_set_error(a, errno, "read: %s", strerror(errno));
		return -1;
	}
	if (r->verify && hasher_update(&r->hasher, r->block, (size_t)n) < 0) {
		archive_set_error(a, EIO, "hash failed");
		return -1;
	}
	r->offset += (uint64_t)n;
	*ret_block = r->block;
	return n;
}

void layer_reader_close(struct layer_reader *r)
{
	if (r->archive)
		archive_read_free(r->archive);
	r->archive = NULL;
	hasher_free(&r->hasher);
	free(r->block);
	r->block = NULL;
}

int layer_reader_open(struct layer_reader *r, const struct image_layer *layer, const struct image_limits *lim,
		      bool verify, struct error *err)
{
	*r = (struct layer_reader){ .layer = layer, .lim = lim, .verify = verify, .index = UINT64_MAX };
	int e = verify ? hasher_init(&r->hasher) : 0;
	r->block = malloc(READ_BLOCK);
	r->archive = archive_read_new();
	if (e < 0 || !r->block || !r->archive) {
		layer_reader_close(r);
		return error_set(err, e < 0 ? e : -ENOMEM, "cannot set up a layer reader");
	}
	archive_read_support_format_tar(r->archive);
	/* Only the filter the media type names: a mislabelled blob fails. */
	if (layer->compression == LAYER_GZIP)
		archive_read_support_filter_gzip(r->archive);
	else if (layer->compression == LAYER_ZSTD)
		archive_read_support_filter_zstd(r->archive);
	if (archive_read_open(r->archive, r, NULL, reader_read, NULL) != ARCHIVE_OK) {
		e = error_set(err, -EBADMSG, "%.19s: not a tar (%s)", layer->digest, archive_error_string(r->archive));
		layer_reader_close(r);
		return e;
	}
	return 0;
}

int layer_reader_next(struct layer_reader *r, struct archive_entry **ret_entry, struct error *err)
{
	int s = archive_read_next_header(r->archive, ret_entry);
	if (s == ARCHIVE_EOF)
		return 1;
	if (s != ARCHIVE_OK && s != ARCHIVE_WARN) {
		int code = archive_errno(r->archive) == EINTR ? -EINTR : -EBADMSG;
		return error_set(err, code, "%.19s: cannot read the layer tar after entry %llu (%s)", r->layer->digest,
				 (unsigned long long)(r->index + 1), archive_error_string(r->archive));
	}
	if (!r->filter_checked) {
		static const int expect[] = { [LAYER_PLAIN] = ARCHIVE_FILTER_NONE, [LAYER_GZIP] = ARCHIVE_FILTER_GZIP,
					      [LAYER_ZSTD] = ARCHIVE_FILTER_ZSTD };
		if (archive_filter_code(r->archive, 0) != expect[r->layer->compression])
			return error_set(err, -EBADMSG, "%.19s: compression is not what the media type says",
					 r->layer->digest);
		r->filter_checked = true;
	}
	r->index++;
	return 0;
}

int layer_reader_finish(struct layer_reader *r, struct error *err)
{
	if (!r->verify)
		return 0;
	for (;;) {
		ssize_t n = pread(r->layer->fd, r->block, READ_BLOCK, (off_t)r->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_set(err, negative_errno(), "%.19s: read: %m", r->layer->digest);
		if (n == 0)
			break;
		if (hasher_update(&r->hasher, r->block, (size_t)n) < 0)
			return error_set(err, -EIO, "hash failed");
		r->offset += (uint64_t)n;
	}
	struct digest got, want;
	if (hasher_final(&r->hasher, &got) < 0 || digest_parse(r->layer->digest, &want) < 0)
		return error_set(err, -EIO, "hash failed");
	if (r->offset != r->layer->size || !digest_equal(&got, &want))
		return error_set(err, -EBADMSG, "%.19s: layer changed while it was imported", r->layer->digest);
	return 0;
}

/* --- The tree ------------------------------------------------------------ */

struct image_tree {
	struct image_entry root;
	struct image_entry **buckets;
	size_t n_buckets;
	uint64_t n_nodes;
	const struct image_limits *lim;
	struct image_tree_stats stats;
	uint64_t read_bytes;
};

static size_t bucket_of(const struct image_tree *t, const struct image_entry *parent, const char *name, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ULL);
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29)) & (t->n_buckets - 1);
}

static struct image_entry *lookup(const struct image_tree *t, const struct image_entry *parent, const char *name,
				  size_t len)
{
	for (struct image_entry *e = t->buckets[bucket_of(t, parent, name, len)]; e; e = e->hash_next)
		if (e->parent == parent && strncmp(e->name, name, len) == 0 && e->name[len] == '\0')
			return e;
	return NULL;
}

static int grow(struct image_tree *t)
{
	size_t n = t->n_buckets * 2;
	struct image_entry **b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	struct image_entry **old = t->buckets;
	size_t old_n = t->n_buckets;
	t->buckets = b;
	t->n_buckets = n;
	for (size_t i = 0; i < old_n; i++)
		for (struct image_entry *e = old[i], *next; e; e = next) {
			next = e->hash_next;
			size_t k = bucket_of(t, e->parent, e->name, strlen(e->name));
			e->hash_next = b[k];
			b[k] = e;
		}
	free(old);
	return 0;
}

static void free_entry(struct image_entry *e)
{
	free(e->name);
	free(e->link);
	free(e->source_path);
	free(e);
}

/* Removes e and everything below it. */
static void remove_subtree(struct image_tree *t, struct image_entry *e)
{
	while (e->first_child)
		remove_subtree(t, e->first_child);
	struct image_entry **pp = &t->buckets[bucket_of(t, e->parent, e->name, strlen(e->name))];
	while (*pp != e)
		pp = &(*pp)->hash_next;
	*pp = e->hash_next;
	if (e->prev_sibling)
		e->prev_sibling->next_sibling = e->next_sibling;
	else
		e->parent->first_child = e->next_sibling;
	if (e->next_sibling)
		e->next_sibling->prev_sibling = e->prev_sibling;
	t->n_nodes--;
	free_entry(e);
}

static struct image_entry *insert(struct image_tree *t, struct image_entry *parent, const char *name, size_t len)
{
	if (t->n_nodes >= t->lim->max_entries)
		return NULL;
	if (t->n_nodes * 2 >= t->n_buckets && grow(t) < 0)
		return NULL;
	struct image_entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strndup(name, len))) {
		free(e);
		return NULL;
	}
	e->parent = parent;
	e->next_sibling = parent->first_child;
	if (parent->first_child)
		parent->first_child->prev_sibling = e;
	parent->first_child = e;
	size_t k = bucket_of(t, parent, name, len);
	e->hash_next = t->buckets[k];
	t->buckets[k] = e;
	t->n_nodes++;
	return e;
}

/* Removes what lower layers put below (and at) e; returns whether e stays
 * (it does when layer L wrote it, or something kept below it). */
static bool prune(struct image_tree *t, struct image_entry *e, uint32_t layer)
{
	if (e->clean_layer == layer + 1)
		return true;
	bool kept = false;
	for (struct image_entry *c = e->first_child, *next; c; c = next) {
		next = c->next_sibling;
		kept |= prune(t, c, layer);
	}
	if (e->layer < layer && !kept) {
		remove_subtree(t, e);
		return false;
	}
	e->clean_layer = layer + 1;
	return true;
}

/* --- Pass 1: applying entries -------------------------------------------- */

struct apply {
	struct image_tree *t;
	uint32_t layer;
	char name[48];         /* the layer, for messages */
	const char *path;      /* the entry's, normalised */
	struct error *err;
};

static int refuse(struct apply *ap, int code, const char *fmt, const char *detail)
{
	return error_set(ap->err, code, "%s: entry '%.300s': %s%.300s", ap->name, ap->path, fmt, detail ? detail : "");
}

/* Finds the directory that holds the last component of path, creating
 * missing directories when create is set. Refuses a path below a symlink or
 * a non-directory. *ret is NULL when not found. */
static int walk_parent(struct apply *ap, const char *path, bool create, struct image_entry **ret)
{
	struct image_entry *cur = &ap->t->root;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		size_t len = (size_t)(slash - p);
		struct image_entry *next = lookup(ap->t, cur, p, len);
		if (!next && !create) {
			*ret = NULL;
			return 0;
		}
		if (!next) {
			if (!(next = insert(ap->t, cur, p, len)))
				return refuse(ap, -E2BIG, "more entries than the cap or out of memory", NULL);
			next->mode = S_IFDIR | 0755;
			next->layer = ap->layer;
		} else if (S_ISLNK(next->mode)) {
			char prefix[IMAGE_MAX_PATH + 1];
			snprintf(prefix, sizeof(prefix), "%.*s", (int)(slash - path), path);
			return refuse(ap, -ELOOP, "below the symlink ", prefix);
		} else if (!S_ISDIR(next->mode)) {
			char prefix[IMAGE_MAX_PATH + 1];
			snprintf(prefix, sizeof(prefix), "%.*s", (int)(slash - path), path);
			return refuse(ap, -ENOTDIR, "below the non-directory ", prefix);
		}
		cur = next;
		p = slash + 1;
	}
	*ret = cur;
	return 0;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static int apply_whiteout(struct apply *ap, const char *base)
{
	struct image_entry *dir;
	int r = walk_parent(ap, ap->path, false, &dir);
	if (r < 0 || !dir)
		return r;
	if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
		if (dir->opaque_layer == ap->layer + 1 || dir->clean_layer == ap->layer + 1)
			return 0;
		for (struct image_entry *c = dir->first_child, *next; c; c = next) {
			next = c->next_sibling;
			prune(ap->t, c, ap->layer);
		}
		dir->opaque_layer = ap->layer + 1;
		return 0;
	}
	if (strncmp(base, WHITEOUT_PREFIX WHITEOUT_PREFIX, 8) == 0)
		return 0;  /* other ".wh..wh." names are reserved (aufs metadata): dropped */
	const char *victim = base + strlen(WHITEOUT_PREFIX);
	if (!victim[0] || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
		return refuse(ap, -EINVAL, "malformed whiteout", NULL);
	struct image_entry *e = lookup(ap->t, dir, victim, strlen(victim));
	if (e)
		prune(ap->t, e, ap->layer);
	return 0;
}

static uint32_t owner(la_int64_t id)
{
	return id < 0 || id >= IMAGE_MAX_ID ? IMAGE_NOBODY_ID : (uint32_t)id;
}

static int apply_entry(struct apply *ap, struct archive_entry *ae, uint64_t index)
{
	struct image_tree *t = ap->t;
	const char *base = base_name(ap->path);
	if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
		return apply_whiteout(ap, base);

	const char *hard = archive_entry_hardlink(ae);
	mode_t type = archive_entry_filetype(ae);
	if (!ap->path[0]) {
		/* The root's attributes are fixed (0755, 0:0); its entry goes. */
		if (hard || type != AE_IFDIR)
			return refuse(ap, -EINVAL, "the root is not a directory", NULL);
		return 0;
	}
	struct image_entry *source = NULL;
	_cleanup_free_ char *source_path = NULL;
	if (hard) {
		_cleanup_free_ char *target = NULL;
		const char *reason = NULL;
		if (layer_path_check(hard, &target, &reason) < 0)
			return refuse(ap, -EINVAL, "hardlink target: ", reason);
		struct image_entry *dir = NULL;
		int r = walk_parent(ap, target, false, &dir);
		if (r < 0)
			return r;
		if (target[0] && dir)
			source = lookup(t, dir, base_name(target), strlen(base_name(target)));
		if (!source || !S_ISREG(source->mode))
			return refuse(ap, -ENOENT, "hardlink to a missing or non-regular entry ", target);
		/* Where the data's own entry stands in its layer, taken now: the
		 * source may be replaced below, even by this very entry. A file
		 * that is not a hardlink stands where its layer put it; target is
		 * its path then. */
		source_path = source->source_path ? strdup(source->source_path) : TAKE_PTR(target);
		if (!source_path)
			return refuse(ap, -ENOMEM, "out of memory", NULL);
	} else if (type == AE_IFCHR || type == AE_IFBLK)
		return refuse(ap, -EPERM, "device node", NULL);
	else if (type == AE_IFIFO || type == AE_IFSOCK) {
		t->stats.dropped++;
		return 0;
	} else if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
		return refuse(ap, -EINVAL, "unsupported entry type", NULL);

	const char *link = NULL;
	uint64_t size = 0;
	if (!hard && type == AE_IFLNK) {
		link = archive_entry_symlink(ae);
		if (!link || !link[0] || strlen(link) > IMAGE_MAX_PATH)
			return refuse(ap, -EINVAL, "symlink target empty or longer than 4096 bytes", NULL);
	} else if (!hard && type == AE_IFREG) {
		/* apply_layer counted the size against the cap already. */
		la_int64_t s = archive_entry_size(ae);
		if (!archive_entry_size_is_set(ae) || s < 0)
			return refuse(ap, -EINVAL, "file without a size", NULL);
		size = (uint64_t)s;
	}

	struct image_entry *dir;
	int r = walk_parent(ap, ap->path, true, &dir);
	if (r < 0)
		return r;
	const char *name = base_name(ap->path);
	size_t len = strlen(name);
	struct image_entry *e = lookup(t, dir, name, len);
	bool is_dir = !hard && type == AE_IFDIR;
	/* Copied before the old entry goes: a hardlink may name what it replaces. */
	struct image_entry src = source ? *source : (struct image_entry){ 0 };
	if (e && !(is_dir && S_ISDIR(e->mode))) {
		remove_subtree(t, e);
		e = NULL;
	}
	if (!e && !(e = insert(t, dir, name, len)))
		return refuse(ap, -E2BIG, "more entries than the cap or out of memory", NULL);
	e->layer = ap->layer;
	if (hard) {
		/* A hardlink shares its target's inode: mode, owner, time, data. */
		e->mode = src.mode;
		e->uid = src.uid;
		e->gid = src.gid;
		e->mtime = src.mtime;
		e->size = src.size;
		e->source_layer = src.source_layer;
		e->source_index = src.source_index;
		free(e->source_path);
		e->source_path = TAKE_PTR(source_path);
		return 0;
	}
	/* Set-id bits never survive; a directory keeps its sticky bit. */
	mode_t perm = archive_entry_perm(ae);
	e->mode = is_dir ? (S_IFDIR | (perm & 01777)) : type == AE_IFLNK ? (S_IFLNK | 0777) : (S_IFREG | (perm & 0777));
	e->uid = owner(archive_entry_uid(ae));
	e->gid = owner(archive_entry_gid(ae));
	time_t mt = archive_entry_mtime_is_set(ae) ? archive_entry_mtime(ae) : 0;
	e->mtime = mt < 0 ? 0 : mt > (time_t)UINT32_MAX ? UINT32_MAX : (uint32_t)mt;
	free(e->link);
	e->link = NULL;
	if (link && !(e->link = strdup(link)))
		return refuse(ap, -ENOMEM, "out of memory", NULL);
	e->size = size;
	e->source_layer = ap->layer;
	e->source_index = index;
	free(e->source_path);
	e->source_path = NULL;
	return 0;
}

/* Every entry's stated size counts against max_size, whatever its type:
 * libarchive reads (and decompresses) the data of a whiteout, of a hardlink
 * with pax data or of an unknown type to skip it, just as it reads a file's.
 * For a sparse file this is its apparent size, which pass 2 writes out. */
static int count_size(struct apply *ap, struct archive_entry *ae)
{
	struct image_tree *t = ap->t;
	la_int64_t s = archive_entry_size(ae);
	if (s <= 0)
		return 0;
	if ((uint64_t)s > t->lim->max_size - t->read_bytes)
		return error_set(ap->err, -EFBIG, "%s: entry '%.300s': entries over all layers exceed the size cap of %llu bytes",
				 ap->name, ap->path, (unsigned long long)t->lim->max_size);
	t->read_bytes += (uint64_t)s;
	return 0;
}

static int apply_layer(struct image_tree *t, const struct image_layer *layer, uint32_t index, struct error *err)
{
	struct apply ap = { .t = t, .layer = index, .err = err };
	layer_name(layer, index, ap.name);
	/* Verified like pass 2: the tree (paths, types, links, modes, owners,
	 * times) must come from the bytes the digest names, not from a blob
	 * rewritten after oci.c hashed it. */
	struct layer_reader r;
	int s = layer_reader_open(&r, layer, t->lim, true, err);
	if (s < 0)
		return s;
	for (;;) {
		struct archive_entry *ae;
		s = layer_reader_next(&r, &ae, err);
		if (s == 1) {
			s = layer_reader_finish(&r, err);
			break;
		}
		if (s < 0)
			break;
		if (++t->stats.read_entries > t->lim->max_entries) {
			s = error_set(err, -E2BIG, "%s: more than %llu entries over all layers (the entry cap)", ap.name,
				      (unsigned long long)t->lim->max_entries);
			break;
		}
		const char *raw = archive_entry_pathname(ae);
		_cleanup_free_ char *path = NULL;
		const char *reason = NULL;
		if (!raw || layer_path_check(raw, &path, &reason) < 0) {
			s = error_set(err, -EINVAL, "%s: entry '%.300s': %s", ap.name, raw ? raw : "", reason ? reason : "no name");
			break;
		}
		ap.path = path;
		if ((s = count_size(&ap, ae)) < 0 || (s = apply_entry(&ap, ae, r.index)) < 0)
			break;
	}
	layer_reader_close(&r);
	return s < 0 ? s : 0;
}

void image_tree_free(struct image_tree *t)
{
	if (!t)
		return;
	while (t->root.first_child)
		remove_subtree(t, t->root.first_child);
	free(t->buckets);
	free(t);
}

int image_tree_build(const struct image_layer *layers, size_t n, const struct image_limits *lim,
		     struct image_tree **ret, struct error *err)
{
	struct image_tree *t = calloc(1, sizeof(*t));
	if (!t || !(t->buckets = calloc(1024, sizeof(*t->buckets)))) {
		free(t);
		return error_set(err, -ENOMEM, "out of memory");
	}
	t->n_buckets = 1024;
	t->lim = lim;
	t->root.mode = S_IFDIR | 0755;
	for (size_t i = 0; i < n; i++) {
		int r = apply_layer(t, &layers[i], (uint32_t)i, err);
		if (r < 0) {
			image_tree_free(t);
			return r;
		}
	}
	*ret = t;
	return 0;
}

void image_tree_get_stats(const struct image_tree *t, struct image_tree_stats *ret)
{
	*ret = t->stats;
}

/* --- The plan ------------------------------------------------------------ */

struct plan {
	image_plan_fn fn;
	void *userdata;
	struct image_entry **files;
	size_t n_files, alloc;
	uint64_t order;
	char path[2 * IMAGE_MAX_PATH + 2];
};

static int by_name(const void *a, const void *b)
{
	return strcmp((*(struct image_entry *const *)a)->name, (*(struct image_entry *const *)b)->name);
}

static int by_source(const void *a, const void *b)
{
	const struct image_entry *x = *(struct image_entry *const *)a, *y = *(struct image_entry *const *)b;
	if (x->source_layer != y->source_layer)
		return x->source_layer < y->source_layer ? -1 : 1;
	if (x->source_index != y->source_index)
		return x->source_index < y->source_index ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int plan_dir(struct plan *p, struct image_entry *dir, size_t len, struct image_tree_stats *stats)
{
	size_t n = 0;
	for (struct image_entry *c = dir->first_child; c; c = c->next_sibling)
		n++;
	if (n == 0)
		return 0;
	_cleanup_free_ struct image_entry **kids = malloc(n * sizeof(*kids));
	if (!kids)
		return -ENOMEM;
	n = 0;
	for (struct image_entry *c = dir->first_child; c; c = c->next_sibling)
		kids[n++] = c;
	qsort(kids, n, sizeof(*kids), by_name);
	for (size_t i = 0; i < n; i++) {
		struct image_entry *c = kids[i];
		size_t nl = strlen(c->name);
		if (len + nl + 2 > sizeof(p->path))
			return -ENAMETOOLONG;
		size_t at = len;
		if (at)
			p->path[at++] = '/';
		memcpy(p->path + at, c->name, nl + 1);
		c->order = p->order++;
		stats->entries++;
		int r = 0;
		if (S_ISREG(c->mode)) {
			if (p->n_files == p->alloc) {
				size_t na = p->alloc ? p->alloc * 2 : 1024;
				struct image_entry **g = realloc(p->files, na * sizeof(*g));
				if (!g)
					return -ENOMEM;
				p->files = g;
				p->alloc = na;
			}
			p->files[p->n_files++] = c;
		} else if ((r = p->fn(c, p->path, p->userdata)) < 0)
			return r;
		if (S_ISDIR(c->mode) && (r = plan_dir(p, c, at + nl, stats)) < 0)
			return r;
		p->path[len] = '\0';
	}
	return 0;
}

int image_tree_plan(struct image_tree *t, image_plan_fn fn, void *userdata, struct image_entry ***ret_files,
		    size_t *ret_n)
{
	struct plan *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->userdata = userdata;
	struct image_tree_stats stats = t->stats;
	stats.entries = 0;
	stats.bytes = 0;
	int r = plan_dir(p, &t->root, 0, &stats);
	if (r < 0) {
		free(p->files);
		free(p);
		return r;
	}
	if (p->n_files > 1)  /* files is NULL in an image without files */
		qsort(p->files, p->n_files, sizeof(*p->files), by_source);
	for (size_t i = 0; i < p->n_files; i++)
		if (i == 0 || p->files[i - 1]->source_index != p->files[i]->source_index ||
		    p->files[i - 1]->source_layer != p->files[i]->source_layer)
			stats.bytes += p->files[i]->size;
	t->stats = stats;
	*ret_files = p->files;
	*ret_n = p->n_files;
	free(p);
	return 0;
}

int image_entry_path(const struct image_entry *e, char *buf, size_t size)
{
	size_t len = 0;
	for (const struct image_entry *c = e; c->parent; c = c->parent)
		len += strlen(c->name) + 1;
	if (len == 0 || len > size)
		return -ENAMETOOLONG;
	len--;
	buf[len] = '\0';
	size_t end = len;
	for (const struct image_entry *c = e; c->parent; c = c->parent) {
		size_t nl = strlen(c->name);
		end -= nl;
		memcpy(buf + end, c->name, nl);
		if (end > 0)
			buf[--end] = '/';
	}
	return (int)len;
}
