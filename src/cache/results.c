/*
 * Manifests and result entries. A hit walks the direct-mode manifest's
 * candidates newest first, revalidates each input's digest, and serves the
 * result the first matching candidate names, rendering the user's .d file
 * from the stored dependency list. A miss stores the result first and the
 * manifest second, so a manifest never points at a result we did not write.
 */
#include "engine_private.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "depfile.h"
#include "fs.h"

static char *input_path(const struct engine_job *job, const char *path, bool rooted)
{
	if (!rooted)
		return strdup(path);
	if (!job->root)
		return NULL;
	return path_join(job->root, path);
}

/* True when every input of the candidate still has the recorded digest. */
static bool candidate_matches(struct engine *e, const struct engine_job *job, const Hpcc__Local__ManifestCandidate *c)
{
	for (size_t i = 0; i < c->n_inputs; i++) {
		const Hpcc__Local__ManifestInput *in = c->inputs[i];
		if (in->digest.len != DIGEST_LEN)
			return false;
		_cleanup_free_ char *p = input_path(job, in->path, in->rooted);
		struct file_digest fd;
		if (!p || memo_digest(e->memo, p, &fd) < 0 || memcmp(fd.digest.b, in->digest.data, DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

static int add_output(struct engine_result *ret, const char *path, const void *data, size_t n)
{
	struct output_file *o = realloc(ret->outputs, (ret->n_outputs + 1) * sizeof(*o));
	if (!o)
		return -ENOMEM;
	ret->outputs = o;
	struct output_file *f = &o[ret->n_outputs];
	*f = (struct output_file){ .path = strdup(path) };
	buf_init(&f->data, n + 1);
	if (!f->path || buf_append(&f->data, data, n) < 0) {
		free(f->path);
		buf_free(&f->data);
		return -ENOMEM;
	}
	ret->n_outputs++;
	return 0;
}

static const char *output_name_for(const struct compile_args *a, int kind, char **tmp)
{
	switch (kind) {
	case HPCC__LOCAL__RESULT_ENTRY__KIND__DWO:
		return *tmp = path_replace_suffix(a->output, ".dwo");
	case HPCC__LOCAL__RESULT_ENTRY__KIND__GCNO:
		return *tmp = path_replace_suffix(a->output, ".gcno");
	default:
		return a->output;
	}
}

int results_render_depfile(const struct engine_job *job, char *const *spelled, const bool *is_system, size_t n,
			   struct engine_result *ret)
{
	if (job->args.dep_mode == DEP_NONE)
		return 0;
	_cleanup_buf_ struct buf text;
	buf_init(&text, DEPFILE_MAX_SIZE);
	_cleanup_free_ char *path = NULL;
	int r = depfile_render(&job->args, spelled, is_system, n, &text, &path);
	return r < 0 ? r : add_output(ret, path, text.data, text.len);
}

/* The same from an entry's dependency list: rooted paths get this root. */
static int render_entry_depfile(const struct engine_job *job, Hpcc__Local__Dep **deps, size_t n,
				struct engine_result *ret)
{
	if (job->args.dep_mode == DEP_NONE)
		return 0;
	_cleanup_strv_ struct strv spelled = { 0 };
	_cleanup_free_ bool *sys = calloc(n ? n : 1, sizeof(bool));
	int r = sys ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		/* Glued, not joined: a join would normalise the spelling. */
		if (!deps[i]->rooted)
			r = strv_push(&spelled, deps[i]->path);
		else if (!job->root)
			r = -EINVAL;
		else
			r = strcmp(deps[i]->path, ".") == 0 ? strv_push(&spelled, job->root) :
							     strv_pushf(&spelled, "%s/%s", job->root, deps[i]->path);
		sys[i] = deps[i]->system;
	}
	return r < 0 ? r : results_render_depfile(job, spelled.v, sys, spelled.n, ret);
}

static int serve_hit(struct engine *e, struct engine_job *job, const struct digest *action, struct engine_result *ret)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, RESULT_MAX_SIZE + 1);
	struct stats delta = { 0 };
	int r = store_get(&e->store, STORE_RESULT, action, RESULT_MAX_SIZE, &payload, &delta);
	engine_add(e, &delta);
	if (r < 0)
		return r;
	Hpcc__Local__ResultEntry *entry = hpcc__local__result_entry__unpack(NULL, payload.len, (uint8_t *)payload.data);
	if (!entry) {
		/* The digest matched but the content does not parse: an entry
		 * from an incompatible writer. Drop it. */
		delta = (struct stats){ 0 };
		store_remove(&e->store, STORE_RESULT, action, &delta);
		engine_add(e, &delta);
		engine_count(e, STAT_CORRUPT_ENTRIES);
		return -ENOENT;
	}
	r = 0;
	for (size_t i = 0; r == 0 && i < entry->n_files; i++) {
		_cleanup_free_ char *tmp = NULL;
		const char *name = output_name_for(&job->args, entry->files[i]->kind, &tmp);
		r = name ? add_output(ret, name, entry->files[i]->data.data, entry->files[i]->data.len) : -ENOMEM;
	}
	if (r == 0)
		r = render_entry_depfile(job, entry->deps, entry->n_deps, ret);
	if (r == 0) {
		buf_init(&ret->out, ENGINE_MAX_CAPTURE + 1);
		buf_init(&ret->err, ENGINE_MAX_CAPTURE + 1);
		if (buf_append(&ret->out, entry->stdout_data.data, entry->stdout_data.len) < 0 ||
		    buf_append(&ret->err, entry->stderr_data.data, entry->stderr_data.len) < 0)
			r = -ENOMEM;
	}
	hpcc__local__result_entry__free_unpacked(entry, NULL);
	if (r < 0) {
		output_files_free(ret->outputs, ret->n_outputs);
		ret->outputs = NULL;
		ret->n_outputs = 0;
		return r;
	}
	ret->action = ENGINE_HIT;
	return 0;
}

int results_serve_memory(const struct engine_job *job, const struct dep_info *deps, size_t n, const struct buf *object,
			 const struct buf *dwo, const struct buf *out, const struct buf *err, struct engine_result *ret)
{
	_cleanup_free_ char *dwo_name = dwo ? path_replace_suffix(job->args.output, ".dwo") : NULL;
	_cleanup_free_ char **spelled = calloc(n ? n : 1, sizeof(char *));
	_cleanup_free_ bool *sys = calloc(n ? n : 1, sizeof(bool));
	int r = spelled && sys && (!dwo || dwo_name) ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		spelled[i] = deps[i].spelled;
		sys[i] = deps[i].system;
	}
	if (r == 0)
		r = add_output(ret, job->args.output, object->data, object->len);
	if (r == 0 && dwo)
		r = add_output(ret, dwo_name, dwo->data, dwo->len);
	if (r == 0)
		r = results_render_depfile(job, spelled, sys, n, ret);
	if (r == 0) {
		buf_init(&ret->out, ENGINE_MAX_CAPTURE + 1);
		buf_init(&ret->err, ENGINE_MAX_CAPTURE + 1);
		if (buf_append(&ret->out, out->data, out->len) < 0 || buf_append(&ret->err, err->data, err->len) < 0)
			r = -ENOMEM;
	}
	if (r < 0)
		return r;
	ret->action = ENGINE_HIT;
	return 0;
}

/* The explain record of a hit (explain.c), with the object it served. */
static void note_hit(struct engine *e, const struct engine_job *job, const struct digest *action,
		     const Hpcc__Local__ManifestCandidate *c, const struct engine_result *ret)
{
	const struct buf *object = NULL;
	for (size_t i = 0; i < ret->n_outputs && !object; i++)
		if (strcmp(ret->outputs[i].path, job->args.output) == 0)
			object = &ret->outputs[i].data;
	explain_note_hit(e->explain, job, action, c, object);
}

/* Looks the direct key up: 0 and a filled result on a hit, -ENOENT on a miss. */
int results_try_hit(struct engine *e, struct engine_job *job, struct engine_result *ret)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, MANIFEST_MAX_SIZE + 1);
	struct stats delta = { 0 };
	int r = store_get(&e->store, STORE_MANIFEST, &job->direct_key, MANIFEST_MAX_SIZE, &payload, &delta);
	engine_add(e, &delta);
	if (r < 0)
		return r;
	Hpcc__Local__Manifest *m = hpcc__local__manifest__unpack(NULL, payload.len, (uint8_t *)payload.data);
	if (!m) {
		delta = (struct stats){ 0 };
		store_remove(&e->store, STORE_MANIFEST, &job->direct_key, &delta);
		engine_add(e, &delta);
		engine_count(e, STAT_CORRUPT_ENTRIES);
		return -ENOENT;
	}
	r = -ENOENT;
	/* Newest candidates are last and the likeliest to match. */
	for (size_t i = m->n_candidates; i-- > 0 && r == -ENOENT;) {
		const Hpcc__Local__ManifestCandidate *c = m->candidates[i];
		if (c->action_digest.len != DIGEST_LEN || !candidate_matches(e, job, c))
			continue;
		struct digest action;
		memcpy(action.b, c->action_digest.data, DIGEST_LEN);
		r = serve_hit(e, job, &action, ret);
		if (r == 0)
			note_hit(e, job, &action, c, ret);
	}
	hpcc__local__manifest__free_unpacked(m, NULL);
	return r;
}

/* Reads one output file of the compile, capped. */
static int read_output(const struct engine_job *job, const char *name, struct buf *ret)
{
	_cleanup_free_ char *abs = path_join(job->cwd, name);
	if (!abs)
		return -ENOMEM;
	buf_init(ret, ENGINE_MAX_OUTPUT + 1);
	return fs_read_file(abs, ENGINE_MAX_OUTPUT, ret);
}

static int update_manifest(struct engine *e, struct engine_job *job, struct dep_info *deps, size_t n,
			   const struct digest *action, struct stats *delta)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, MANIFEST_MAX_SIZE + 1);
	Hpcc__Local__Manifest *old = NULL;
	if (store_get(&e->store, STORE_MANIFEST, &job->direct_key, MANIFEST_MAX_SIZE, &payload, delta) == 0)
		old = hpcc__local__manifest__unpack(NULL, payload.len, (uint8_t *)payload.data);
	size_t keep = old ? old->n_candidates : 0;
	size_t skip = keep >= MANIFEST_MAX_CANDIDATES ? keep - MANIFEST_MAX_CANDIDATES + 1 : 0;
	Hpcc__Local__Manifest m = HPCC__LOCAL__MANIFEST__INIT;
	_cleanup_free_ Hpcc__Local__ManifestCandidate **cands = calloc(keep - skip + 1, sizeof(*cands));
	_cleanup_free_ Hpcc__Local__ManifestInput *inputs = calloc(n ? n : 1, sizeof(*inputs));
	_cleanup_free_ Hpcc__Local__ManifestInput **input_ptrs = calloc(n ? n : 1, sizeof(*input_ptrs));
	int r = cands && inputs && input_ptrs ? 0 : -ENOMEM;
	Hpcc__Local__ManifestCandidate fresh = HPCC__LOCAL__MANIFEST_CANDIDATE__INIT;
	if (r == 0) {
		for (size_t i = skip; i < keep; i++) {
			/* An identical candidate (same action) is replaced by the new one. */
			const ProtobufCBinaryData *ad = &old->candidates[i]->action_digest;
			if (ad->len == DIGEST_LEN && memcmp(ad->data, action->b, DIGEST_LEN) == 0)
				continue;
			cands[m.n_candidates++] = old->candidates[i];
		}
		for (size_t i = 0; i < n; i++) {
			/* Remote keys name the image: its headers are not
			 * revalidated here (they need not even exist here). */
			if (job->remote && !deps[i].rooted)
				continue;
			Hpcc__Local__ManifestInput *in = &inputs[fresh.n_inputs];
			hpcc__local__manifest_input__init(in);
			in->path = deps[i].canonical;
			in->rooted = deps[i].rooted;
			in->digest.data = deps[i].fd.digest.b;
			in->digest.len = DIGEST_LEN;
			input_ptrs[fresh.n_inputs++] = in;
		}
		fresh.inputs = input_ptrs;
		fresh.action_digest.data = (uint8_t *)action->b;
		fresh.action_digest.len = DIGEST_LEN;
		cands[m.n_candidates++] = &fresh;
		m.candidates = cands;
		size_t len = hpcc__local__manifest__get_packed_size(&m);
		_cleanup_free_ uint8_t *packed = len <= MANIFEST_MAX_SIZE ? malloc(len ? len : 1) : NULL;
		if (!packed)
			r = len > MANIFEST_MAX_SIZE ? -EFBIG : -ENOMEM;
		else {
			hpcc__local__manifest__pack(&m, packed);
			r = store_put(&e->store, STORE_MANIFEST, &job->direct_key, packed, len, delta);
		}
	}
	if (old)
		hpcc__local__manifest__free_unpacked(old, NULL);
	return r;
}

int results_store(struct engine *e, struct engine_job *job, struct dep_info *deps, size_t n,
			const struct buf *out, const struct buf *err, const struct buf *const *mem_outputs,
			enum stat_counter *ret_refuse)
{
	struct digest inputs, action;
	int r = keys_inputs_digest(deps, n, job->remote, &inputs);
	if (r < 0 || (r = keys_derive(job, "action", &inputs, &action)) < 0)
		return r;

	struct { int kind; bool wanted; } kinds[] = {
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__OBJECT, true },
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__DWO, job->args.split_dwarf },
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__GCNO, job->args.coverage },
	};
	struct buf data[ARRAY_SIZE(kinds)] = { 0 };
	Hpcc__Local__ResultEntry__File files[ARRAY_SIZE(kinds)];
	Hpcc__Local__ResultEntry__File *file_ptrs[ARRAY_SIZE(kinds)];
	Hpcc__Local__Dep *dep_msgs = calloc(n ? n : 1, sizeof(*dep_msgs));
	Hpcc__Local__Dep **dep_ptrs = calloc(n ? n : 1, sizeof(*dep_ptrs));
	Hpcc__Local__ResultEntry entry = HPCC__LOCAL__RESULT_ENTRY__INIT;
	uint8_t *packed = NULL;
	size_t total = 0;
	r = dep_msgs && dep_ptrs ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(kinds); i++) {
		if (!kinds[i].wanted)
			continue;
		_cleanup_free_ char *tmp = NULL;
		const char *name = output_name_for(&job->args, kinds[i].kind, &tmp);
		if (mem_outputs) {
			/* A remote result: the object and the .dwo, nothing else. */
			const struct buf *m = i < 2 ? mem_outputs[i] : NULL;
			buf_init(&data[i], ENGINE_MAX_OUTPUT + 1);
			r = !name ? -ENOMEM : !m ? -ENOENT : buf_append(&data[i], m->data, m->len);
		} else
			r = name ? read_output(job, name, &data[i]) : -ENOMEM;
		if (r == -ENOENT)
			*ret_refuse = STAT_UNCACHEABLE_MISSING_OUTPUT;
		else if (r == -EFBIG || (total += data[i].len) > ENGINE_MAX_OUTPUT)
			*ret_refuse = STAT_UNCACHEABLE_OUTPUT_TOO_LARGE;
		if (r < 0 || *ret_refuse != STAT_N)
			break;
		hpcc__local__result_entry__file__init(&files[entry.n_files]);
		files[entry.n_files].kind = kinds[i].kind;
		files[entry.n_files].data.data = (uint8_t *)data[i].data;
		files[entry.n_files].data.len = data[i].len;
		file_ptrs[entry.n_files] = &files[entry.n_files];
		entry.n_files++;
	}
	if (r == 0 && *ret_refuse == STAT_N) {
		entry.files = file_ptrs;
		for (size_t i = 0; i < n; i++) {
			hpcc__local__dep__init(&dep_msgs[i]);
			/* Spelled paths under the root lose the root, so that another
			 * checkout renders its own; the rest stays as the compiler
			 * spelled it ("sub/../inc/x.h" included), since the .d must
			 * match the compiler's byte for byte. */
			const char *rel = job->root && deps[i].spelled[0] == '/' ? path_under(deps[i].spelled, job->root) : NULL;
			dep_msgs[i].path = (char *)(rel ? rel : deps[i].spelled);
			dep_msgs[i].rooted = rel != NULL;
			dep_msgs[i].system = deps[i].system;
			dep_ptrs[i] = &dep_msgs[i];
		}
		entry.n_deps = n;
		entry.deps = dep_ptrs;
		entry.stdout_data.data = (uint8_t *)out->data;
		entry.stdout_data.len = out->len;
		entry.stderr_data.data = (uint8_t *)err->data;
		entry.stderr_data.len = err->len;
		entry.created = (int64_t)time(NULL);
		size_t len = hpcc__local__result_entry__get_packed_size(&entry);
		packed = len <= RESULT_MAX_SIZE ? malloc(len ? len : 1) : NULL;
		if (!packed)
			r = len > RESULT_MAX_SIZE ? -EFBIG : -ENOMEM;
		else {
			struct stats delta = { 0 };
			hpcc__local__result_entry__pack(&entry, packed);
			/* The result first, then the manifest that points at it: a
			 * reader never finds a manifest whose result is missing
			 * because of us. */
			pthread_rwlock_rdlock(&e->store_lock);
			r = store_put(&e->store, STORE_RESULT, &action, packed, len, &delta);
			if (r == 0)
				r = update_manifest(e, job, deps, n, &action, &delta);
			engine_add(e, &delta);
			pthread_rwlock_unlock(&e->store_lock);
			if (r == 0)
				explain_note_store(e->explain, job, &action, deps, n, &data[0], mem_outputs != NULL);
		}
	}
	free(packed);
	free(dep_msgs);
	free(dep_ptrs);
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		buf_free(&data[i]);
	return r;
}
