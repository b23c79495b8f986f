/*
 * The daemon's remote client (see remote.h). It sits between the engine,
 * which decides that a miss may go remote and keys it by the image, and the
 * worker's four calls. Paths in the action are classified against the
 * project root (DESIGN.md §2), so two checkouts at different places build
 * the same action digest and share the worker's results.
 */
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>

#include "action.h"
#include "auditfmt.h"
#include "engine_private.h"
#include "fs.h"
#include "log.h"
#include "rpc.h"
#include "route.h"
#include "tier.h"
#include "token.h"
#include "token.pb-c.h"
#include "worker.pb-c.h"

#define PROBE_TIMEOUT_MS 10000
#define CHUNK_SIZE ((size_t)1 << 20)
#define MAX_REPLY ((size_t)300 << 20)
#define DOWN_SECONDS 5

/* A blob one job is uploading to a worker, then (done) has uploaded: for
 * UPLOADED_KEEP_S other jobs whose FindMissing ran before it arrived skip
 * it instead of sending it again. */
#define UPLOADED_KEEP_S 30
struct uploading {
	struct digest d;
	char worker[TOKEN_NAME_MAX + 1];
	bool done;
	time_t at;
	struct uploading *next;
};

struct remote_client {
	char *worker, *pin, *tenant, *image_str, *token_file;
	struct digest image;
	bool preprocessed;
	int timeout_ms;
	int level;
	struct rpc_channel *ch;        /* a fixed worker (remote.worker), or */
	struct route_client *route;    /* the scheduler's choice (remote.scheduler) */
	struct daemon_remote hooks;

	pthread_mutex_t lock;          /* guards the token cache and the uploads */
	pthread_cond_t uploaded;
	struct uploading *uploading;   /* blobs another job is uploading now */
	struct buf token;
	struct stat token_st;
	atomic_long down_until;        /* after an unreachable worker: skip it a while */
	atomic_ulong n_probes, n_hits, n_executed, n_fallbacks;

	/* Trusted mode (docs/s3.md): [s3] settings, used only while the
	 * scheduler says this tenant is trusted; refused for a paranoid one. */
	char *s3_endpoint, *s3_region, *s3_bucket, *s3_prefix, *s3_credentials_file;
	bool s3_configured, s3_path_style;
	int s3_timeout_ms;
	struct tier *tier;             /* opened at the first trusted compile */
	long tier_failed_at;           /* time() of a failed open: tried again a minute later */
	bool paranoid_logged;
	atomic_ulong n_s3_hits, n_s3_puts;
	atomic_int s3_state;           /* 0 unused, 1 trusted (in use), 2 refused (paranoid) */

	/* The audit rows of this daemon's own remote jobs, as the workers
	 * wrote them (docs/audit.md): <cache dir>/audit/rows.tsv. */
	char *rows_path;
	pthread_mutex_t rows_lock;
};

/* ---- token ------------------------------------------------------------- */

/* A token for another tenant or image would send this checkout's sources
 * to the wrong namespace: the worker cannot know what the user meant, so
 * the daemon looks at the (unverified) claims itself. */
static int check_claims(struct remote_client *rc, const struct buf *tok, struct error *err)
{
	Hpcc__V1__RoutingToken *t = hpcc__v1__routing_token__unpack(NULL, tok->len, (uint8_t *)tok->data);
	Hpcc__V1__RoutingClaims *c = t ? hpcc__v1__routing_claims__unpack(NULL, t->claims.len, t->claims.data) : NULL;
	int r = 0;
	if (!c)
		r = error_set(err, -EBADMSG, "token file %s does not hold a routing token", rc->token_file);
	else if (strcmp(c->tenant, rc->tenant) != 0)
		r = error_set(err, -EACCES, "the token is for tenant '%.64s', remote.tenant is '%.64s'", c->tenant,
			      rc->tenant);
	else if (strcmp(c->image_digest, rc->image_str) != 0)
		r = error_set(err, -EACCES, "the token is for image %.80s, remote.image is %.80s", c->image_digest,
			      rc->image_str);
	if (c)
		hpcc__v1__routing_claims__free_unpacked(c, NULL);
	if (t)
		hpcc__v1__routing_token__free_unpacked(t, NULL);
	return r;
}

/* A copy of the current token, re-read when the file changes (the scheduler
 * client, or an operator, replaces it every few minutes). */
static int current_token(struct remote_client *rc, struct buf *ret, struct error *err)
{
	struct stat st;
	if (stat(rc->token_file, &st) < 0)
		return error_set(err, negative_errno(), "token file %s: %s", rc->token_file, strerror(errno));
	pthread_mutex_lock(&rc->lock);
	int r = 0;
	if (rc->token.len == 0 || st.st_ino != rc->token_st.st_ino || st.st_size != rc->token_st.st_size ||
	    st.st_mtim.tv_sec != rc->token_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != rc->token_st.st_mtim.tv_nsec) {
		buf_reset(&rc->token);
		r = token_read_file(rc->token_file, &rc->token, err);
		if (r == 0)
			rc->token_st = st;
		else
			buf_reset(&rc->token);
	}
	if (r == 0)
		r = buf_append(ret, rc->token.data, rc->token.len);
	pthread_mutex_unlock(&rc->lock);
	return r < 0 ? r : check_claims(rc, ret, err);
}

/* ---- the action -------------------------------------------------------- */

struct action_build {
	Hpcc__V1__Action action;
	Hpcc__V1__Command cmd;
	Hpcc__V1__Arg *args;
	Hpcc__V1__Arg **arg_ptrs;
	Hpcc__V1__Arg source, output;
	Hpcc__V1__InputFile *inputs;
	Hpcc__V1__InputFile **input_ptrs;
	char *env[1];
	struct strv strings;           /* owns every string above */
};

static void action_build_free(struct action_build *b)
{
	free(b->args);
	free(b->arg_ptrs);
	free(b->inputs);
	free(b->input_ptrs);
	strv_free(&b->strings);
}

static char *keep(struct action_build *b, const char *s)
{
	return strv_push(&b->strings, s) < 0 ? NULL : b->strings.v[b->strings.n - 1];
}

/* flag + path + suffix with the path classified against the root. */
static int make_arg(struct action_build *b, const struct engine_job *job, const char *flag, const char *path,
		    const char *suffix, Hpcc__V1__Arg *a)
{
	hpcc__v1__arg__init(a);
	a->flag = keep(b, flag);
	a->suffix = keep(b, suffix ? suffix : "");
	if (!path) {
		a->kind = HPCC__V1__PATH_KIND__PATH_NONE;
		a->path = keep(b, "");
	} else if (path[0] != '/') {
		a->kind = HPCC__V1__PATH_KIND__PATH_RELATIVE;
		a->path = keep(b, path);
	} else {
		_cleanup_free_ char *norm = path_normalize(path);
		const char *rel = norm ? path_under(norm, job->root) : NULL;
		a->kind = rel ? HPCC__V1__PATH_KIND__PATH_ROOTED : HPCC__V1__PATH_KIND__PATH_ABSOLUTE;
		a->path = norm ? keep(b, rel ? rel : norm) : NULL;
	}
	return a->flag && a->suffix && a->path ? 0 : -ENOMEM;
}

static bool preprocessor_only(const char *flag)
{
	static const char *const prefixes[] = { "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote",
						"-idirafter", "-iprefix", "-iwithprefix", "-nostdinc" };
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (strncmp(flag, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

static int input_cmp(const void *x, const void *y)
{
	const Hpcc__V1__InputFile *a = *(Hpcc__V1__InputFile *const *)x, *b = *(Hpcc__V1__InputFile *const *)y;
	return strcmp(a->path, b->path);
}

/* The command of the action. 1 when the job cannot go remote as written. */
static int build_command(struct remote_client *rc, const struct engine_job *job, bool preprocessed,
			 struct action_build *b)
{
	const struct compile_args *a = &job->args;
	hpcc__v1__action__init(&b->action);
	hpcc__v1__command__init(&b->cmd);
	b->args = calloc(a->n_key_args + 2, sizeof(*b->args));
	b->arg_ptrs = calloc(a->n_key_args + 2, sizeof(*b->arg_ptrs));
	if (!b->args || !b->arg_ptrs)
		return -ENOMEM;
	const char *base = strrchr(job->compiler_path, '/');
	b->cmd.compiler = keep(b, base ? base + 1 : job->compiler_path);
	b->cmd.family = job->tc.family == FAMILY_CLANG ? 2 : 1;
	b->cmd.language = a->lang == LANG_CXX ? 1 : a->lang == LANG_ASM_CPP ? 2 : 0;
	const char *cwd_rel = path_under(job->cwd, job->root);
	b->cmd.cwd = keep(b, !cwd_rel || strcmp(cwd_rel, ".") == 0 ? "" : cwd_rel);
	int r = b->cmd.compiler && b->cmd.cwd ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < a->n_key_args; i++) {
		const struct key_arg *k = &a->key_args[i];
		/* The language goes in explicitly (action_argv), right before
		 * the source: a -x elsewhere would be ambiguous. */
		if (strncmp(k->flag, "-x", 2) == 0 && !k->path)
			return 1;
		if (preprocessed && preprocessor_only(k->flag))
			continue;
		Hpcc__V1__Arg *arg = &b->args[b->cmd.n_args];
		if ((r = make_arg(b, job, k->flag, k->path, k->suffix, arg)) == 0)
			b->arg_ptrs[b->cmd.n_args++] = arg;
	}
	b->cmd.args = b->arg_ptrs;
	if (r == 0)
		r = make_arg(b, job, "", a->output, NULL, &b->output);
	b->cmd.output = &b->output;
	const char *sde;
	if (r == 0 && keys_env_lookup(&(struct engine_request){ .env = job->env.v, .n_env = job->env.n },
				      "SOURCE_DATE_EPOCH", &sde)) {
		char *v = NULL;
		if (asprintf(&v, "SOURCE_DATE_EPOCH=%s", sde) < 0)
			return -ENOMEM;
		b->env[0] = keep(b, v);
		free(v);
		b->cmd.n_env = 1;
		b->cmd.env = b->env;
	}
	b->cmd.split_dwarf = a->split_dwarf;
	b->action.command = &b->cmd;
	b->action.image_digest = rc->image_str;
	if (r < 0 || preprocessed)
		return r;
	b->action.mode = HPCC__V1__SOURCE_MODE__MODE_CAS;
	b->cmd.source = &b->source;
	return make_arg(b, job, "", a->source, NULL, &b->source);
}

/* Preprocessed mode: one input, the -E output, staged under the source's
 * own name (the object's symbol table names the file the compiler was
 * given). Its line markers hold this checkout's paths, which a prefix map
 * maps back to "." as a local compile would. */
static int add_preprocessed(struct action_build *b, const struct engine_job *job, const struct buf *pp,
			    struct digest *pp_digest)
{
	b->inputs = calloc(1, sizeof(*b->inputs));
	b->input_ptrs = calloc(1, sizeof(*b->input_ptrs));
	if (!b->inputs || !b->input_ptrs)
		return -ENOMEM;
	int r = make_arg(b, job, "", job->args.source, NULL, &b->source);
	b->cmd.source = &b->source;
	_cleanup_free_ char *rooted = r == 0 ? action_rooted_path(&b->cmd, &b->source) : NULL;
	Hpcc__V1__Arg *pm = &b->args[b->cmd.n_args];
	if (r == 0 && !rooted)
		r = -ENOMEM;
	if (r == 0 && (r = make_arg(b, job, "-ffile-prefix-map=", job->root, "=.", pm)) == 0) {
		pm->kind = HPCC__V1__PATH_KIND__PATH_ABSOLUTE;
		pm->path = keep(b, job->root);
		b->arg_ptrs[b->cmd.n_args++] = pm;
	}
	if (r == 0)
		r = digest_bytes(pp->data, pp->len, pp_digest);
	if (r < 0)
		return r;
	hpcc__v1__input_file__init(&b->inputs[0]);
	b->inputs[0].path = keep(b, rooted);
	b->inputs[0].digest.data = pp_digest->b;
	b->inputs[0].digest.len = DIGEST_LEN;
	b->inputs[0].size = pp->len;
	b->input_ptrs[0] = &b->inputs[0];
	b->action.n_inputs = 1;
	b->action.inputs = b->input_ptrs;
	b->action.mode = HPCC__V1__SOURCE_MODE__MODE_PREPROCESSED;
	return b->inputs[0].path && pm->path ? 0 : -ENOMEM;
}

/* CAS mode: the files under the root that the scan listed. 1 when the job
 * reads a file the worker cannot get (outside the root, not a system
 * header): it is compiled locally. */
static int add_inputs(struct action_build *b, const struct dep_info *deps, size_t n)
{
	b->inputs = calloc(n + 1, sizeof(*b->inputs));
	b->input_ptrs = calloc(n + 1, sizeof(*b->input_ptrs));
	if (!b->inputs || !b->input_ptrs)
		return -ENOMEM;
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (!deps[i].rooted) {
			if (!deps[i].system)
				return 1;
			continue;
		}
		Hpcc__V1__InputFile *f = &b->inputs[m];
		hpcc__v1__input_file__init(f);
		f->path = (char *)deps[i].canonical;
		f->digest.data = (uint8_t *)deps[i].fd.digest.b;
		f->digest.len = DIGEST_LEN;
		f->size = (uint64_t)deps[i].fd.st.st_size;
		f->executable = (deps[i].fd.st.st_mode & 0111) != 0;
		b->input_ptrs[m++] = f;
	}
	qsort(b->input_ptrs, m, sizeof(*b->input_ptrs), input_cmp);
	size_t u = 0;
	for (size_t i = 0; i < m; i++)
		if (u == 0 || strcmp(b->input_ptrs[u - 1]->path, b->input_ptrs[i]->path) != 0)
			b->input_ptrs[u++] = b->input_ptrs[i];
	b->action.n_inputs = u;
	b->action.inputs = b->input_ptrs;
	return 0;
}

/* ---- calls ------------------------------------------------------------- */

/* A failed call, as a stats counter. */
static enum stat_counter failure_counter(int local_error, const struct rpc_status *st)
{
	if (local_error < 0)
		return STAT_FALLBACK_REMOTE_ERROR;
	switch (st->code) {
	case GRPC_STATUS_UNAVAILABLE:
		return STAT_FALLBACK_REMOTE_UNREACHABLE;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return STAT_FALLBACK_REMOTE_TIMEOUT;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		/* The worker's quota refusals say "<call> refused: tenant <t>:
		 * <limit> quota ..." (src/worker/quota.h); other refusals of
		 * this code (a busy worker, a result too large) stay "refused". */
		if (strstr(st->msg, ": tenant ") && strstr(st->msg, " quota "))
			return STAT_FALLBACK_REMOTE_QUOTA;
		return STAT_FALLBACK_REMOTE_REFUSED;
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_PERMISSION_DENIED:
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_FAILED_PRECONDITION:
	case GRPC_STATUS_UNIMPLEMENTED:
		return STAT_FALLBACK_REMOTE_REFUSED;
	default:
		return STAT_FALLBACK_REMOTE_ERROR;
	}
}

struct call_failure {
	enum stat_counter counter;
	char msg[400];
};

static int call_failed(struct call_failure *f, int local_error, const struct rpc_status *st, const char *what)
{
	f->counter = failure_counter(local_error, st);
	if (local_error < 0)
		snprintf(f->msg, sizeof(f->msg), "%s: %s", what, strerror(-local_error));
	else
		snprintf(f->msg, sizeof(f->msg), "%s: status %d: %s", what, st->code, st->msg);
	error_printable(f->msg);  /* the worker's words go to our log */
	return -EIO;
}

/* One unary call to the worker: packs req, decodes the reply (capped at
 * max_reply) as reply_desc. ret_code (may be NULL) gets the status code, or
 * -1 when the call did not complete. */
static int call_worker(const struct route_lease *lease, const char *method, const ProtobufCMessage *req,
		       const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, size_t max_reply,
		       ProtobufCMessage **ret, int *ret_code, struct call_failure *f, const char *what)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	_cleanup_free_ uint8_t *packed = malloc(len ? len : 1);
	if (!packed)
		return call_failed(f, -ENOMEM, NULL, what);
	protobuf_c_message_pack(req, packed);
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, max_reply);
	struct rpc_status st = { 0 };
	int r = rpc_unary(lease->ch, method, packed, len, timeout_ms, &reply, &st);
	if (ret_code)
		*ret_code = r < 0 ? -1 : st.code;
	if (r < 0 || st.code != GRPC_STATUS_OK)
		return call_failed(f, r, &st, what);
	ProtobufCMessage *m = protobuf_c_message_unpack(reply_desc, NULL, reply.len, (uint8_t *)reply.data);
	if (!m)
		return call_failed(f, -EBADMSG, &st, what);
	*ret = m;
	return 0;
}

/* A probe by action digest (direct = false) or by direct key: *ret_reply
 * is the whole reply. */
static int probe(struct remote_client *rc, const struct route_lease *lease, const struct digest *key, bool direct,
		 Hpcc__V1__ProbeReply **ret_reply, struct call_failure *f)
{
	Hpcc__V1__ProbeRequest req = HPCC__V1__PROBE_REQUEST__INIT;
	req.token.data = (uint8_t *)lease->token.data;
	req.token.len = lease->token.len;
	ProtobufCBinaryData *k = direct ? &req.direct_key : &req.action_digest;
	k->data = (uint8_t *)key->b;
	k->len = DIGEST_LEN;
	atomic_fetch_add(&rc->n_probes, 1);
	return call_worker(lease, "/hpcc.v1.WorkerService/Probe", &req.base, &hpcc__v1__probe_reply__descriptor,
			   PROBE_TIMEOUT_MS, MAX_REPLY, (ProtobufCMessage **)ret_reply, NULL, f, "probe");
}

/* Takes the result out of a probe reply (NULL when not found, or when it
 * is not the result of the action asked for: a confused worker's answer
 * is a miss, not a wrong object). */
static Hpcc__V1__ActionResult *take_probe_result(Hpcc__V1__ProbeReply *rep, const uint8_t *action, char **ret_row)
{
	Hpcc__V1__ActionResult *ar = NULL;
	if (rep->found && rep->result && rep->result->action_digest.len == DIGEST_LEN &&
	    memcmp(rep->result->action_digest.data, action, DIGEST_LEN) == 0) {
		ar = rep->result;
		rep->result = NULL;
		free(*ret_row);
		*ret_row = rep->audit_row && rep->audit_row[0] ? strdup(rep->audit_row) : NULL;
	}
	return ar;
}

/* Whether this checkout's files are the ones a direct candidate read. */
static bool candidate_matches(struct engine *e, const struct engine_job *job, const Hpcc__V1__DirectCandidate *c)
{
	if (c->action_digest.len != DIGEST_LEN || c->n_inputs == 0)
		return false;
	for (size_t i = 0; i < c->n_inputs; i++) {
		const Hpcc__V1__InputFile *in = c->inputs[i];
		if (in->digest.len != DIGEST_LEN || !path_is_safe_relative(in->path, strlen(in->path)))
			return false;
		_cleanup_free_ char *p = path_join(job->root, in->path);
		struct file_digest fd;
		if (!p || memo_digest(engine_memo(e), p, &fd) < 0 ||
		    memcmp(fd.digest.b, in->digest.data, DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

/* The local dependency list of a remote result: the worker's spelling,
 * with this checkout's root put back on rooted paths. */
static int deps_from_result(struct engine *e, struct engine_job *job, const Hpcc__V1__ActionResult *ar,
			    struct dep_info **ret, size_t *ret_n)
{
	_cleanup_strv_ struct strv spelled = { 0 };
	int r = 0;
	for (size_t i = 0; r == 0 && i < ar->n_dependencies; i++) {
		const Hpcc__V1__Dependency *d = ar->dependencies[i];
		if (!d->rooted)
			r = strv_push(&spelled, d->path);
		else if (strcmp(d->path, ".") == 0 || !path_is_safe_relative(d->path, strlen(d->path)))
			r = -EBADMSG;
		else
			r = strv_pushf(&spelled, "%s/%s", job->root, d->path);
	}
	enum stat_counter refuse = STAT_N;
	if (r == 0)
		r = inputs_from_list(e, job, spelled.v, spelled.n, true, ret, ret_n, &refuse);
	if (r == 0 && refuse != STAT_N) {
		inputs_free(*ret, *ret_n);
		return -ESTALE;
	}
	return r;
}

static int find_missing(struct remote_client *rc, const struct route_lease *lease, const Hpcc__V1__Action *a,
			bool *missing, size_t *ret_n, struct call_failure *f)
{
	Hpcc__V1__FindMissingRequest req = HPCC__V1__FIND_MISSING_REQUEST__INIT;
	req.token.data = (uint8_t *)lease->token.data;
	req.token.len = lease->token.len;
	_cleanup_free_ ProtobufCBinaryData *d = calloc(a->n_inputs + 1, sizeof(*d));
	if (!d)
		return call_failed(f, -ENOMEM, NULL, "find-missing");
	for (size_t i = 0; i < a->n_inputs; i++)
		d[i] = a->inputs[i]->digest;
	req.n_digests = a->n_inputs;
	req.digests = d;
	Hpcc__V1__FindMissingReply *rep = NULL;
	if (call_worker(lease, "/hpcc.v1.WorkerService/FindMissing", &req.base, &hpcc__v1__find_missing_reply__descriptor,
			PROBE_TIMEOUT_MS, (size_t)64 << 20, (ProtobufCMessage **)&rep, NULL, f, "find-missing") < 0)
		return -EIO;
	/* The worker lists the missing digests in the order asked: one pass.
	 * A reply in another order only marks fewer blobs, and Execute then
	 * says which are missing (FAILED_PRECONDITION, one more round). */
	size_t n = 0, k = 0;
	for (size_t i = 0; i < a->n_inputs; i++) {
		missing[i] = k < rep->n_missing && rep->missing[k].len == DIGEST_LEN &&
			     memcmp(rep->missing[k].data, a->inputs[i]->digest.data, DIGEST_LEN) == 0;
		if (missing[i]) {
			k++;
			n++;
		}
	}
	hpcc__v1__find_missing_reply__free_unpacked(rep, NULL);
	*ret_n = n;
	return 0;
}

/* Parallel compiles that share a changed header would each upload it:
 * the first job to find a blob missing uploads it, the others leave it
 * to that job and wait for it (bounded) before they execute. */
static struct uploading **uploading_find(struct remote_client *rc, const char *worker, const uint8_t *digest)
{
	struct uploading **p = &rc->uploading;
	while (*p && (memcmp((*p)->d.b, digest, DIGEST_LEN) != 0 || strcmp((*p)->worker, worker) != 0))
		p = &(*p)->next;
	return p;
}

enum claim { CLAIM_MINE, CLAIM_OTHERS, CLAIM_DONE };

/* Whether this job uploads a blob (MINE), waits for another job that is
 * uploading it (OTHERS), or skips it, uploaded moments ago (DONE; not when
 * retrying after the worker said it lacked inputs: force). */
static enum claim upload_claim(struct remote_client *rc, const char *worker, const uint8_t *digest, bool force)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&rc->lock);
	for (struct uploading **p = &rc->uploading; *p;) {
		struct uploading *u = *p;
		if (u->done && now - u->at >= UPLOADED_KEEP_S) {
			*p = u->next;
			free(u);
		} else
			p = &u->next;
	}
	struct uploading *u = *uploading_find(rc, worker, digest);
	enum claim c = CLAIM_MINE;
	if (u && !u->done)
		c = CLAIM_OTHERS;
	else if (u && !force)
		c = CLAIM_DONE;
	else if (u)
		u->done = false;
	else if ((u = calloc(1, sizeof(*u)))) {
		memcpy(u->d.b, digest, DIGEST_LEN);
		snprintf(u->worker, sizeof(u->worker), "%s", worker);
		u->next = rc->uploading;
		rc->uploading = u;
	}
	/* Out of memory: upload it ourselves, untracked. */
	pthread_mutex_unlock(&rc->lock);
	return c;
}

static void upload_release(struct remote_client *rc, const char *worker, const uint8_t *digest, bool uploaded)
{
	pthread_mutex_lock(&rc->lock);
	struct uploading **p = uploading_find(rc, worker, digest);
	if (*p && !(*p)->done) {
		if (uploaded) {
			(*p)->done = true;
			(*p)->at = time(NULL);
		} else {
			struct uploading *u = *p;
			*p = u->next;
			free(u);
		}
	}
	pthread_cond_broadcast(&rc->uploaded);
	pthread_mutex_unlock(&rc->lock);
}

static void upload_wait(struct remote_client *rc, const char *worker, const uint8_t *digest)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60;
	pthread_mutex_lock(&rc->lock);
	for (;;) {
		struct uploading *u = *uploading_find(rc, worker, digest);
		if (!u || u->done || pthread_cond_timedwait(&rc->uploaded, &rc->lock, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&rc->lock);
}

/* Streams the missing blobs, each read from the checkout and checked
 * against the digest that the action names (a file edited since the scan
 * makes the whole remote attempt moot). */
static int upload_claimed(struct remote_client *rc, struct engine *e, const struct route_lease *lease, const char *root,
			  const Hpcc__V1__Action *a, const bool *missing, struct call_failure *f);

static int upload(struct remote_client *rc, struct engine *e, const struct route_lease *lease, const char *root,
		  const Hpcc__V1__Action *a, bool *missing, bool force, struct call_failure *f)
{
	_cleanup_free_ bool *others = calloc(a->n_inputs + 1, sizeof(bool));
	if (!others)
		return call_failed(f, -ENOMEM, NULL, "upload");
	size_t mine = 0;
	for (size_t i = 0; i < a->n_inputs; i++) {
		if (!missing[i])
			continue;
		enum claim c = upload_claim(rc, lease->worker_id, a->inputs[i]->digest.data, force);
		missing[i] = c == CLAIM_MINE;
		others[i] = c == CLAIM_OTHERS;
		mine += c == CLAIM_MINE;
	}
	int r = mine ? upload_claimed(rc, e, lease, root, a, missing, f) : 0;
	for (size_t i = 0; i < a->n_inputs; i++)
		if (missing[i])
			upload_release(rc, lease->worker_id, a->inputs[i]->digest.data, r == 0);
	for (size_t i = 0; r == 0 && i < a->n_inputs; i++)
		if (others[i])
			upload_wait(rc, lease->worker_id, a->inputs[i]->digest.data);
	return r;
}

static int upload_claimed(struct remote_client *rc, struct engine *e, const struct route_lease *lease, const char *root,
			  const Hpcc__V1__Action *a, const bool *missing, struct call_failure *f)
{
	struct rpc_stream *s = NULL;
	int r = rpc_stream_open(lease->ch, "/hpcc.v1.WorkerService/Upload", rc->timeout_ms, &s);
	if (r < 0)
		return call_failed(f, r, NULL, "upload");
	_cleanup_buf_ struct buf data, packed_blob;
	buf_init(&data, BLOB_MAX_SIZE + 1);
	buf_init(&packed_blob, BLOB_MAX_SIZE + (BLOB_MAX_SIZE >> 7) + 4096);
	_cleanup_free_ uint8_t *msg = malloc(CHUNK_SIZE + TOKEN_MAX_SIZE + 256);
	bool first = true;
	int64_t blobs = 0, bytes = 0;
	r = msg ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < a->n_inputs; i++) {
		if (!missing[i])
			continue;
		const Hpcc__V1__InputFile *in = a->inputs[i];
		_cleanup_free_ char *path = path_join(root, in->path);
		struct digest d;
		buf_reset(&data);
		if (!path || (r = fs_read_file(path, BLOB_MAX_SIZE, &data)) < 0 ||
		    (r = digest_bytes(data.data, data.len, &d)) < 0)
			break;
		if (memcmp(d.b, in->digest.data, DIGEST_LEN) != 0) {
			r = -ESTALE;
			break;
		}
		Hpcc__V1__Blob blob;
		if ((r = blob_pack(data.data, data.len, rc->level, &blob, &packed_blob)) < 0)
			break;
		size_t off = 0;
		do {
			size_t n = blob.data.len - off < CHUNK_SIZE ? blob.data.len - off : CHUNK_SIZE;
			Hpcc__V1__UploadChunk ch = HPCC__V1__UPLOAD_CHUNK__INIT;
			if (first) {
				ch.token.data = (uint8_t *)lease->token.data;
				ch.token.len = lease->token.len;
			}
			if (off == 0) {
				ch.digest = blob.digest;
				ch.size = blob.size;
				ch.zstd = blob.zstd;
			}
			ch.data.data = blob.data.data + off;
			ch.data.len = n;
			off += n;
			ch.last = off == blob.data.len;
			size_t len = hpcc__v1__upload_chunk__pack(&ch, msg);
			if ((r = rpc_stream_send(s, msg, len)) < 0)
				break;
			bytes += (int64_t)len;
			first = false;
		} while (off < blob.data.len);
		blobs++;
	}
	struct rpc_status st = { 0 };
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, 4096);
	if (r == 0)
		r = rpc_stream_finish(s, &reply, &st);
	rpc_stream_free(s);
	struct stats delta = { 0 };
	delta.v[STAT_REMOTE_BLOBS_UPLOADED] = blobs;
	delta.v[STAT_REMOTE_BYTES_UPLOADED] = bytes;
	engine_add(e, &delta);
	if (r == -ESTALE) {
		snprintf(f->msg, sizeof(f->msg), "an input changed during the compile");
		f->counter = STAT_UNCACHEABLE_MODIFIED_DURING_COMPILE;
		return -EIO;
	}
	if (r < 0 || st.code != GRPC_STATUS_OK)
		return call_failed(f, r, &st, "upload");
	return 0;
}

static int execute(struct remote_client *rc, struct engine *e, const struct route_lease *lease, const Hpcc__V1__Action *a,
		   const struct buf *pp, Hpcc__V1__ActionResult **ret, char **ret_row, int *ret_code, struct call_failure *f)
{
	Hpcc__V1__ExecuteRequest req = HPCC__V1__EXECUTE_REQUEST__INIT;
	req.token.data = (uint8_t *)lease->token.data;
	req.token.len = lease->token.len;
	req.action = (Hpcc__V1__Action *)a;
	Hpcc__V1__Blob blob;
	_cleanup_buf_ struct buf storage;
	buf_init(&storage, ENGINE_MAX_OUTPUT + (ENGINE_MAX_OUTPUT >> 7) + 4096);
	if (pp) {
		int r = blob_pack(pp->data, pp->len, rc->level, &blob, &storage);
		if (r < 0)
			return call_failed(f, r, NULL, "execute");
		req.preprocessed = &blob;
		/* The preprocessed source travels inline: count it as an upload. */
		struct stats delta = { 0 };
		delta.v[STAT_REMOTE_BLOBS_UPLOADED] = 1;
		delta.v[STAT_REMOTE_BYTES_UPLOADED] = (int64_t)blob.data.len;
		engine_add(e, &delta);
	}
	Hpcc__V1__ExecuteReply *rep = NULL;
	if (call_worker(lease, "/hpcc.v1.WorkerService/Execute", &req.base, &hpcc__v1__execute_reply__descriptor,
			rc->timeout_ms, MAX_REPLY, (ProtobufCMessage **)&rep, ret_code, f, "execute") < 0)
		return -EIO;
	if (!rep->result) {
		hpcc__v1__execute_reply__free_unpacked(rep, NULL);
		return call_failed(f, -EBADMSG, NULL, "execute reply");
	}
	*ret = rep->result;
	rep->result = NULL;
	free(*ret_row);
	*ret_row = rep->audit_row && rep->audit_row[0] ? strdup(rep->audit_row) : NULL;
	hpcc__v1__execute_reply__free_unpacked(rep, NULL);
	return 0;
}

/* ---- audit rows -------------------------------------------------------- */

#define ROWS_ROTATE ((off_t)32 << 20)   /* rows.tsv beyond this becomes rows.tsv.1 */

/* Keeps a worker's row for one of this daemon's jobs, as written (after
 * checking that it is a row of this tenant), so that `hpcc inspect` finds
 * it without asking anyone. Not a second audit log: the worker's is the
 * record; this is the developer's copy. */
static void keep_row(struct remote_client *rc, const char *row)
{
	if (!row || !rc->rows_path)
		return;
	struct audit_parsed p;
	struct error err = { 0 };
	size_t len = strlen(row);
	if (len > AUDIT_ROW_MAX || audit_parse_row(row, len, &p, &err) < 0) {
		log_warn("a worker sent an audit row that does not parse: %s", err.msg);
		return;
	}
	bool ours = strcmp(p.col[AUDIT_COL_TENANT], rc->tenant) == 0;
	audit_parsed_free(&p);
	if (!ours) {
		log_warn("a worker sent an audit row of another tenant; not kept");
		return;
	}
	pthread_mutex_lock(&rc->rows_lock);
	struct stat st;
	if (stat(rc->rows_path, &st) == 0 && st.st_size > ROWS_ROTATE) {
		_cleanup_free_ char *old = NULL;
		if (asprintf(&old, "%s.1", rc->rows_path) > 0)
			(void)rename(rc->rows_path, old);
	}
	int fd = open(rc->rows_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		struct iovec iov[2] = { { (void *)row, len }, { (void *)"\n", 1 } };
		if (writev(fd, iov, 2) != (ssize_t)len + 1)
			log_warn("%s: cannot append a row", rc->rows_path);
		close(fd);
	}
	pthread_mutex_unlock(&rc->rows_lock);
}

/* <cache dir>/audit/rows.tsv, its directory made; NULL if it cannot be. */
static char *rows_path_for(const struct config *cfg)
{
	_cleanup_free_ char *cache = engine_cache_dir(cfg);
	_cleanup_free_ char *dir = cache ? path_join(cache, "audit") : NULL;
	if (!dir || fs_mkdir_p(dir, 0700) < 0)
		return NULL;
	return path_join(dir, "rows.tsv");
}

/* A lease on the worker this daemon compiles on now, or, routed, on the
 * worker named (NULL: any). */
static int command_lease(struct remote_client *rc, const char *worker, struct route_lease *lease, struct error *err)
{
	*lease = (struct route_lease){ 0 };
	if (rc->route)
		return worker ? route_get_worker(rc->route, worker, lease, err) : route_get(rc->route, lease, err);
	buf_init(&lease->token, TOKEN_MAX_SIZE + 1);
	lease->ch = rc->ch;
	return current_token(rc, &lease->token, err);
}

static void lease_done(struct remote_client *rc, struct route_lease *lease)
{
	if (lease->slot)
		route_put(rc->route, lease);
	else
		buf_free(&lease->token);
}

#define INSPECT_MAX_TEXT ((size_t)16 << 20)

/* One call for a command: a lease (on the named worker, routed), the
 * lease's token into *token, the call. 0 and *ret, or -errno and a one-line
 * *ret_text. answered: the worker that took it. */
static int command_call(struct remote_client *rc, const char *worker, const char *method, ProtobufCMessage *req,
			ProtobufCBinaryData *token, const ProtobufCMessageDescriptor *reply_desc, size_t max_reply,
			ProtobufCMessage **ret, char answered[TOKEN_NAME_MAX + 1], char **ret_text)
{
	struct route_lease lease;
	struct error err = { 0 };
	struct call_failure f = { 0 };
	if (command_lease(rc, worker, &lease, &err) < 0) {
		*ret_text = strdup(err.msg);
		lease_done(rc, &lease);
		return -EIO;
	}
	token->data = (uint8_t *)lease.token.data;
	token->len = lease.token.len;
	snprintf(answered, TOKEN_NAME_MAX + 1, "%s", rc->route ? lease.worker_id : rc->worker);
	int code = 0;
	int r = call_worker(&lease, method, req, reply_desc, rc->timeout_ms, max_reply, ret, &code, &f, method);
	*token = (ProtobufCBinaryData){ 0 };
	lease_done(rc, &lease);
	if (r < 0) {
		*ret_text = strdup(f.msg);
		return code == GRPC_STATUS_NOT_FOUND ? -ENOENT : -EIO;
	}
	return 0;
}

/* `hpcc inspect`: the worker's rows of this tenant matching a prefix, one
 * per line. */
static int command_inspect(struct remote_client *rc, const char *prefix, const char *worker, char **ret_text)
{
	Hpcc__V1__AuditRowsRequest req = HPCC__V1__AUDIT_ROWS_REQUEST__INIT;
	req.prefix = (char *)prefix;
	req.max_rows = 200;
	Hpcc__V1__AuditRowsReply *rep = NULL;
	char answered[TOKEN_NAME_MAX + 1];
	int r = command_call(rc, worker, "/hpcc.v1.WorkerService/AuditRows", &req.base, &req.token,
			     &hpcc__v1__audit_rows_reply__descriptor, INSPECT_MAX_TEXT, (ProtobufCMessage **)&rep, answered,
			     ret_text);
	if (r < 0)
		return r;
	_cleanup_buf_ struct buf text;
	buf_init(&text, INSPECT_MAX_TEXT);
	for (size_t i = 0; i < rep->n_rows; i++) {
		/* One line each: a row never holds a raw newline. */
		if (strchr(rep->rows[i], '\n'))
			continue;
		buf_append_str(&text, rep->rows[i]);
		buf_append_char(&text, '\n');
	}
	if (rep->truncated)
		buf_append_str(&text, "# truncated\n");
	hpcc__v1__audit_rows_reply__free_unpacked(rep, NULL);
	buf_append_char(&text, '\0');
	*ret_text = text.error ? strdup("too many rows") : strdup(text.data);
	return text.error ? -E2BIG : 0;
}

/* `hpcc reproduce`: the worker runs the action again, caches bypassed.
 * The text: "output D", "exit N", "worker W", "vm V", "duration MS" and
 * "row R" lines. */
static int command_reproduce(struct remote_client *rc, const char *action_hex, const char *image, const char *worker,
			     char **ret_text)
{
	struct digest action;
	if (digest_parse(action_hex, &action) < 0) {
		*ret_text = strdup("reproduce: not an action digest");
		return -EINVAL;
	}
	if (strcmp(image, rc->image_str) != 0) {
		if (asprintf(ret_text, "the compile ran in image %.80s; this daemon's remote image is %.80s "
			     "(set remote.image to reproduce it)", image, rc->image_str) < 0)
			*ret_text = NULL;
		return -EINVAL;
	}
	Hpcc__V1__ReproduceRequest req = HPCC__V1__REPRODUCE_REQUEST__INIT;
	req.action_digest.data = action.b;
	req.action_digest.len = DIGEST_LEN;
	Hpcc__V1__ReproduceReply *rep = NULL;
	char answered[TOKEN_NAME_MAX + 1];
	int r = command_call(rc, worker, "/hpcc.v1.WorkerService/Reproduce", &req.base, &req.token,
			     &hpcc__v1__reproduce_reply__descriptor, MAX_REPLY, (ProtobufCMessage **)&rep, answered, ret_text);
	if (r < 0)
		return r;
	const Hpcc__V1__ActionResult *ar = rep->result;
	char output[DIGEST_STR_LEN + 1] = "-";
	if (ar && ar->n_outputs > 0 && ar->outputs[0]->blob && ar->outputs[0]->blob->digest.len == DIGEST_LEN) {
		struct digest d;
		memcpy(d.b, ar->outputs[0]->blob->digest.data, DIGEST_LEN);
		digest_to_string(&d, output);
	}
	keep_row(rc, rep->audit_row);
	/* One line per field: what the worker wrote is made printable. */
	char vm[128];
	snprintf(vm, sizeof(vm), "%s", ar && ar->runtime && ar->runtime[0] ? ar->runtime : "-");
	error_printable(vm);
	const char *row = rep->audit_row && !strpbrk(rep->audit_row, "\n\r") ? rep->audit_row : "";
	r = asprintf(ret_text, "output %s\nexit %d\nworker %s\nvm %s\nduration %lld\nrow %s\n", output,
		     ar ? ar->exit_code : -1, answered, vm, (long long)(ar ? ar->duration_ms : 0), row);
	hpcc__v1__reproduce_reply__free_unpacked(rep, NULL);
	if (r < 0) {
		*ret_text = NULL;
		return -ENOMEM;
	}
	return ar ? 0 : -EBADMSG;
}

static int remote_command(void *ctx, const char *name, char *const *args, size_t n, char **ret_text)
{
	struct remote_client *rc = ctx;
	*ret_text = NULL;
	/* The worker argument names the worker that holds the rows or the
	 * action; a daemon with a fixed worker has only that one. */
	const char *worker = NULL;
	if (n == 3 || (strcmp(name, "inspect") == 0 && n == 2)) {
		worker = args[n - 1];
		if (!token_name_valid(worker)) {
			*ret_text = strdup("not a worker id");
			return -EINVAL;
		}
	}
	if (strcmp(name, "inspect") == 0 && (n == 1 || n == 2))
		return command_inspect(rc, args[0], worker, ret_text);
	if (strcmp(name, "reproduce") == 0 && (n == 2 || n == 3))
		return command_reproduce(rc, args[0], args[1], worker, ret_text);
	*ret_text = strdup("unknown command");
	return -EINVAL;
}

/* ---- a remote compile -------------------------------------------------- */

static void fall_back(struct remote_client *rc, struct engine *e, struct engine_result *res)
{
	atomic_fetch_add(&rc->n_fallbacks, 1);
	struct engine_result hit = { .color = res->color };
	if (engine_remote_fallback(e, res->job, &hit) == 1) {
		res->job = NULL;
		engine_result_free(res);
		*res = hit;
	}
}

/* Checks a result and stores it: 0 and a HIT in *res, or -EIO. */
static int take_result(struct engine *e, struct engine_result *res,
		       const Hpcc__V1__Action *a, struct dep_info **deps, size_t *n, Hpcc__V1__ActionResult *ar,
		       struct call_failure *f)
{
	struct engine_job *job = res->job;
	_cleanup_strv_ struct strv want = { 0 };
	_cleanup_buf_ struct buf out, err, obj, dwo;
	buf_init(&out, ENGINE_MAX_CAPTURE + 1);
	buf_init(&err, ENGINE_MAX_CAPTURE + 1);
	buf_init(&obj, BLOB_MAX_SIZE + 1);
	buf_init(&dwo, BLOB_MAX_SIZE + 1);
	struct error e2 = { 0 };
	if (action_output_paths(a->command, &want) < 0 || ar->n_outputs != want.n) {
		snprintf(f->msg, sizeof(f->msg), "the result has %zu outputs, not %zu", ar->n_outputs, want.n);
		f->counter = STAT_FALLBACK_REMOTE_ERROR;
		return -EIO;
	}
	for (size_t i = 0; i < want.n; i++)
		if (!ar->outputs[i]->path || strcmp(ar->outputs[i]->path, want.v[i]) != 0) {
			snprintf(f->msg, sizeof(f->msg), "the result names an unexpected output");
			f->counter = STAT_FALLBACK_REMOTE_ERROR;
			return -EIO;
		}
	if (blob_unpack(ar->stdout_data, ENGINE_MAX_CAPTURE, &out, &e2) < 0 ||
	    blob_unpack(ar->stderr_data, ENGINE_MAX_CAPTURE, &err, &e2) < 0 ||
	    blob_unpack(ar->outputs[0]->blob, BLOB_MAX_SIZE, &obj, &e2) < 0 ||
	    (want.n > 1 && blob_unpack(ar->outputs[1]->blob, BLOB_MAX_SIZE, &dwo, &e2) < 0)) {
		snprintf(f->msg, sizeof(f->msg), "a bad blob in the result: %.300s", e2.msg);
		f->counter = STAT_FALLBACK_REMOTE_ERROR;
		return -EIO;
	}
	struct engine_result hit = { .color = res->color };
	int r = engine_remote_store(e, job, deps, n, &obj, want.n > 1 ? &dwo : NULL, &out, &err, &hit);
	if (r < 0) {
		snprintf(f->msg, sizeof(f->msg), "storing the result: %s", strerror(-r));
		f->counter = STAT_FALLBACK_STORE_ERROR;
		return -EIO;
	}
	res->job = NULL;
	engine_result_free(res);
	*res = hit;
	return 0;
}

/* Direct mode on the worker: one round trip when this checkout's files
 * match what a compile of the same command and source read. 0 and *ret
 * (maybe NULL: no candidate matched), or -EIO. */
static int try_direct(struct remote_client *rc, struct engine *e, struct engine_job *job, const struct route_lease *lease,
		      struct action_build *b, Hpcc__V1__ActionResult **ret, char **ret_row, struct call_failure *f)
{
	*ret = NULL;
	_cleanup_free_ char *source = action_rooted_path(&b->cmd, b->cmd.source);
	struct digest key;
	if (!source || action_direct_key(&b->action, source, &job->source_digest, &key) < 0)
		return 0;
	Hpcc__V1__ProbeReply *rep = NULL;
	if (probe(rc, lease, &key, true, &rep, f) < 0)
		return -EIO;
	int r = 0;
	for (size_t i = rep->n_candidates; i-- > 0;) {
		const Hpcc__V1__DirectCandidate *c = rep->candidates[i];
		if (!candidate_matches(e, job, c))
			continue;
		if (i == rep->n_candidates - 1 && rep->found) {
			*ret = take_probe_result(rep, c->action_digest.data, ret_row);
			break;
		}
		/* An older candidate: its result by action digest. */
		struct digest action;
		memcpy(action.b, c->action_digest.data, DIGEST_LEN);
		Hpcc__V1__ProbeReply *rep2 = NULL;
		if ((r = probe(rc, lease, &action, false, &rep2, f)) == 0) {
			*ret = take_probe_result(rep2, action.b, ret_row);
			hpcc__v1__probe_reply__free_unpacked(rep2, NULL);
		}
		break;
	}
	hpcc__v1__probe_reply__free_unpacked(rep, NULL);
	return r < 0 ? -EIO : 0;
}

/* The worker's answer in hand: checked, stored here, served. */
static int finish(struct remote_client *rc, struct engine *e, struct engine_result *res, struct action_build *b,
		  struct dep_info **deps, size_t *n, Hpcc__V1__ActionResult *ar, bool hit, struct call_failure *f)
{
	if (!*deps && deps_from_result(e, res->job, ar, deps, n) < 0) {
		snprintf(f->msg, sizeof(f->msg), "the result's dependency list does not match this checkout");
		f->counter = STAT_FALLBACK_REMOTE_ERROR;
		return -EIO;
	}
	res->job->remote_hit = hit;  /* for the explain record */
	if (take_result(e, res, &b->action, deps, n, ar, f) < 0)
		return -EIO;
	engine_count(e, hit ? STAT_REMOTE_HIT : STAT_REMOTE_EXECUTED);
	if (hit)
		atomic_fetch_add(&rc->n_hits, 1);
	else {
		engine_count(e, STAT_MISS);
		atomic_fetch_add(&rc->n_executed, 1);
	}
	return 0;
}

/* The tier for a trusted tenant's compile, or NULL: not configured, the
 * tenant is paranoid (then the settings are refused, and said so once), or
 * it could not be opened. */
static struct tier *trusted_tier(struct remote_client *rc, const struct route_lease *lease)
{
	if (!rc->s3_configured)
		return NULL;
	bool trusted = rc->route && lease->slot && strcmp(lease->cache_mode, "trusted") == 0;
	pthread_mutex_lock(&rc->lock);
	struct tier *t = NULL;
	if (!trusted) {
		atomic_store(&rc->s3_state, 2);
		if (!rc->paranoid_logged)
			log_warn("tenant %s is in paranoid mode%s: this daemon's [s3] settings are refused; only workers "
				 "read and write the shared tier", rc->tenant, rc->route ? "" : " (no scheduler says otherwise)");
		rc->paranoid_logged = true;
	} else if (rc->tier)
		t = rc->tier;
	else if (!rc->tier_failed_at || time(NULL) - rc->tier_failed_at >= 60) {
		struct tier_config tc = {
			.s3 = {
				.endpoint = rc->s3_endpoint, .region = rc->s3_region, .bucket = rc->s3_bucket,
				.prefix = rc->s3_prefix, .path_style = rc->s3_path_style,
				.credentials_file = rc->s3_credentials_file, .timeout_ms = rc->s3_timeout_ms, .retries = 1,
				.backoff_ms = 50,
			},
			.connections = 2,
		};
		struct error err = { 0 };
		if (tier_open(&tc, &rc->tier, &err) < 0) {
			log_warn("trusted mode: the shared tier cannot be used (trying again in a minute): %s", err.msg);
			rc->tier_failed_at = (long)time(NULL);
		} else
			log_info("tenant %s is in trusted mode: the daemon reads and writes s3 bucket %s", rc->tenant,
				 rc->s3_bucket);
		t = rc->tier;
	}
	if (t)
		atomic_store(&rc->s3_state, 1);
	pthread_mutex_unlock(&rc->lock);
	return t;
}

/* Trusted mode: the result of an action from the shared tier, or NULL. */
static Hpcc__V1__ActionResult *trusted_lookup(struct remote_client *rc, struct tier *t, const struct digest *action)
{
	_cleanup_buf_ struct buf bytes;
	buf_init(&bytes, MAX_REPLY);
	if (tier_get(t, S3OBJ_AC, rc->tenant, action, MAX_REPLY, &bytes) < 0)
		return NULL;
	Hpcc__V1__ActionResult *ar = hpcc__v1__action_result__unpack(NULL, bytes.len, (uint8_t *)bytes.data);
	if (ar && ar->exit_code != 0) {
		hpcc__v1__action_result__free_unpacked(ar, NULL);
		ar = NULL;
	}
	if (ar)
		atomic_fetch_add(&rc->n_s3_hits, 1);
	return ar;
}

static void trusted_store(struct remote_client *rc, struct tier *t, const struct digest *action,
			  const Hpcc__V1__ActionResult *ar)
{
	size_t len = hpcc__v1__action_result__get_packed_size(ar);
	_cleanup_free_ uint8_t *out = malloc(len ? len : 1);
	if (!out)
		return;
	hpcc__v1__action_result__pack(ar, out);
	tier_put(t, S3OBJ_AC, rc->tenant, action, out, len);
	atomic_fetch_add(&rc->n_s3_puts, 1);
}

static void remote_compile(void *ctx, struct engine *e, struct engine_result *res)
{
	struct remote_client *rc = ctx;
	struct engine_job *job = res->job;
	struct call_failure f = { .counter = STAT_N };
	if (atomic_load(&rc->down_until) > (long)time(NULL)) {
		engine_count(e, STAT_FALLBACK_REMOTE_UNREACHABLE);
		fall_back(rc, e, res);
		return;
	}
	struct dep_info *deps = NULL;
	size_t n = 0;
	enum stat_counter refuse = STAT_N;
	_cleanup_buf_ struct buf pp;
	buf_init(&pp, ENGINE_MAX_OUTPUT + 1);
	struct route_lease lease_storage = { 0 }, *lease = &lease_storage;
	buf_init(&lease->token, TOKEN_MAX_SIZE + 1);
	struct action_build b = { 0 };
	struct digest pp_digest, action;
	Hpcc__V1__ActionResult *ar = NULL;
	_cleanup_free_ char *row = NULL;
	struct error err = { 0 };
	int r = build_command(rc, job, rc->preprocessed, &b);
	if (r == 1) {
		engine_count(e, STAT_REMOTE_LOCAL_ONLY);
		goto local;
	}
	if (r < 0) {
		f.counter = STAT_FALLBACK_INTERNAL;
		goto failed;
	}
	if (rc->route) {
		/* The scheduler names the worker, its pin and the routing token. */
		buf_free(&lease->token);
		if ((r = route_get(rc->route, lease, &err)) < 0) {
			f.counter = r == -ENOENT ? STAT_FALLBACK_REMOTE_TOKEN :
				    r == -EACCES ? STAT_FALLBACK_REMOTE_REFUSED : STAT_FALLBACK_REMOTE_UNREACHABLE;
			snprintf(f.msg, sizeof(f.msg), "%.390s", err.msg);
			buf_init(&lease->token, TOKEN_MAX_SIZE + 1);
			goto failed;
		}
	} else if (current_token(rc, &lease->token, &err) < 0) {
		f.counter = STAT_FALLBACK_REMOTE_TOKEN;
		snprintf(f.msg, sizeof(f.msg), "%.390s", err.msg);
		goto failed;
	} else
		lease->ch = rc->ch;
	if (!rc->preprocessed) {
		if (try_direct(rc, e, job, lease, &b, &ar, &row, &f) < 0)
			goto failed;
		if (ar && ar->exit_code == 0) {
			if (finish(rc, e, res, &b, &deps, &n, ar, true, &f) < 0)
				goto failed;
			keep_row(rc, row);
			goto done;
		}
		if (ar) {
			hpcc__v1__action_result__free_unpacked(ar, NULL);
			ar = NULL;
		}
	}
	/* No direct hit: the compiler lists what the compile reads. */
	r = engine_remote_scan(e, job, rc->preprocessed ? &pp : NULL, &deps, &n, &refuse);
	if (r != 0)
		goto local;  /* uncacheable or unscannable: the local compile says why */
	r = rc->preprocessed ? add_preprocessed(&b, job, &pp, &pp_digest) : add_inputs(&b, deps, n);
	if (r == 1) {
		engine_count(e, STAT_REMOTE_LOCAL_ONLY);
		goto local;
	}
	if (r < 0 || (r = action_digest(&b.action, &action)) < 0) {
		f.counter = STAT_FALLBACK_INTERNAL;
		snprintf(f.msg, sizeof(f.msg), "building the action: %s", strerror(-r));
		goto failed;
	}
	/* Trusted mode: the shared tier first, as sccache does. */
	struct tier *trusted = trusted_tier(rc, lease);
	if (trusted)
		ar = trusted_lookup(rc, trusted, &action);
	if (!ar) {
		Hpcc__V1__ProbeReply *rep = NULL;
		if (probe(rc, lease, &action, false, &rep, &f) < 0)
			goto failed;
		ar = take_probe_result(rep, action.b, &row);
		hpcc__v1__probe_reply__free_unpacked(rep, NULL);
	}
	bool was_hit = ar != NULL;
	for (int attempt = 0; !ar && attempt < 2; attempt++) {
		if (!rc->preprocessed) {
			_cleanup_free_ bool *missing = calloc(b.action.n_inputs + 1, sizeof(bool));
			size_t n_missing = 0;
			if (!missing) {
				f.counter = STAT_FALLBACK_INTERNAL;
				goto failed;
			}
			if (find_missing(rc, lease, &b.action, missing, &n_missing, &f) < 0 ||
			    (n_missing && upload(rc, e, lease, job->root, &b.action, missing, attempt > 0, &f) < 0))
				goto failed;
		}
		int code = 0;
		if (execute(rc, e, lease, &b.action, rc->preprocessed ? &pp : NULL, &ar, &row, &code, &f) < 0) {
			/* Blobs evicted between upload and execute: once more. */
			if (code == GRPC_STATUS_FAILED_PRECONDITION && attempt == 0)
				continue;
			goto failed;
		}
	}
	if (!ar)
		goto failed;
	if (trusted && !was_hit && ar->exit_code == 0)
		trusted_store(rc, trusted, &action, ar);
	keep_row(rc, row);
	if (ar->exit_code != 0) {
		/* Compile errors are the local compiler's to report (and may
		 * come from an image that differs from this machine). */
		engine_count(e, STAT_REMOTE_COMPILE_FAILED);
		goto local;
	}
	if (finish(rc, e, res, &b, &deps, &n, ar, was_hit, &f) < 0)
		goto failed;
	goto done;
failed:
	if (rc->route && lease->slot) {
		/* The worker failed us: the next compile asks the scheduler, which may name another. */
		if (f.counter == STAT_FALLBACK_REMOTE_UNREACHABLE || f.counter == STAT_FALLBACK_REMOTE_REFUSED ||
		    f.counter == STAT_FALLBACK_REMOTE_QUOTA)
			route_forget(rc->route, lease->worker_id);
	} else if (f.counter == STAT_FALLBACK_REMOTE_UNREACHABLE && !rc->route)
		atomic_store(&rc->down_until, (long)time(NULL) + DOWN_SECONDS);
	if (f.counter != STAT_N)
		engine_count(e, f.counter);
	log_warn("remote compile of %s: %s; compiling locally", job->args.source, f.msg[0] ? f.msg : "failed");
local:
	fall_back(rc, e, res);
done:
	if (ar)
		hpcc__v1__action_result__free_unpacked(ar, NULL);
	if (lease->slot)
		route_put(rc->route, lease);
	else
		buf_free(&lease->token);
	action_build_free(&b);
	engine_deps_free(deps, n);
}

static void remote_status(void *ctx, char *out, size_t n)
{
	struct remote_client *rc = ctx;
	long down = atomic_load(&rc->down_until) - (long)time(NULL);
	char where[512];
	if (rc->route)
		route_status(rc->route, where, sizeof(where));
	else
		snprintf(where, sizeof(where), "remote %s\n", rc->worker);
	snprintf(out, n,
		 "%sremote_tenant %s\nremote_image %s\nremote_mode %s\nremote_probes %lu\nremote_hits %lu\n"
		 "remote_executed %lu\nremote_fallbacks %lu\nremote_state %s\nremote_s3 %s\nremote_s3_hits %lu\n"
		 "remote_s3_puts %lu\n",
		 where, rc->tenant, rc->image_str, rc->preprocessed ? "preprocessed" : "cas",
		 atomic_load(&rc->n_probes), atomic_load(&rc->n_hits), atomic_load(&rc->n_executed),
		 atomic_load(&rc->n_fallbacks), down > 0 ? "unreachable (retrying soon)" : "ok",
		 !rc->s3_configured		 ? "not configured" :
		 atomic_load(&rc->s3_state) == 1 ? "trusted (this daemon reads and writes it)" :
		 atomic_load(&rc->s3_state) == 2 ? "refused (paranoid tenant)" : "configured, unused so far",
		 atomic_load(&rc->n_s3_hits), atomic_load(&rc->n_s3_puts));
}

/* ---- setup ------------------------------------------------------------- */

static int need(const struct config *cfg, enum config_key k, char **dst, struct error *err)
{
	const char *v = config_get(cfg, k);
	if (!v || !*v)
		return error_set(err, -EINVAL, "[remote] needs %s", config_key_name(k));
	*dst = strdup(v);
	return *dst ? 0 : error_set(err, -ENOMEM, "out of memory");
}

/* [s3], kept for trusted mode: a copy of each setting, checked now. */
static int s3_settings(struct remote_client *rc, const struct config *cfg, struct error *err)
{
	const char *endpoint = config_get(cfg, CONFIG_S3_ENDPOINT), *bucket = config_get(cfg, CONFIG_S3_BUCKET);
	if ((!endpoint || !*endpoint) && (!bucket || !*bucket))
		return 0;
	if (!endpoint || !*endpoint || !bucket || !*bucket)
		return error_set(err, -EINVAL, "s3.endpoint and s3.bucket go together");
	const char *region = config_get(cfg, CONFIG_S3_REGION), *prefix = config_get(cfg, CONFIG_S3_PREFIX);
	const char *creds = config_get(cfg, CONFIG_S3_CREDENTIALS_FILE);
	const char *ps = config_get(cfg, CONFIG_S3_PATH_STYLE);
	uint64_t timeout = 2000;
	rc->s3_path_style = s3_default_path_style(endpoint);
	if ((ps && *ps && config_get_bool(cfg, CONFIG_S3_PATH_STYLE, &rc->s3_path_style) < 0) ||
	    config_get_u64(cfg, CONFIG_S3_TIMEOUT_MS, &timeout) < 0 || timeout < 100 || timeout > S3_TIMEOUT_MAX_MS)
		return error_set(err, -EINVAL, "s3.path_style (a boolean) or s3.timeout_ms (100..%d) is not valid",
				 S3_TIMEOUT_MAX_MS);
	rc->s3_timeout_ms = (int)timeout;
	if (!(rc->s3_endpoint = strdup(endpoint)) || !(rc->s3_bucket = strdup(bucket)) ||
	    !(rc->s3_region = strdup(region && *region ? region : "us-east-1")) ||
	    (prefix && *prefix && !(rc->s3_prefix = strdup(prefix))) ||
	    (creds && *creds && !(rc->s3_credentials_file = strdup(creds))))
		return error_set(err, -ENOMEM, "out of memory");
	rc->s3_configured = true;
	if (!rc->route) {
		/* Only a scheduler can say a tenant is trusted. */
		atomic_store(&rc->s3_state, 2);
		rc->paranoid_logged = true;
		log_warn("[s3] is set but no scheduler says tenant %s is trusted: the settings are refused (paranoid "
			 "mode); only workers read and write the shared tier", rc->tenant);
	}
	return 0;
}

int remote_client_new(const struct config *cfg, struct remote_client **ret, struct error *err)
{
	*ret = NULL;
	const char *worker = config_get(cfg, CONFIG_REMOTE_WORKER);
	const char *sched = config_get(cfg, CONFIG_REMOTE_SCHEDULER);
	bool routed = sched && *sched;
	if (!routed && (!worker || !*worker))
		return 0;
	struct remote_client *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&rc->lock, NULL);
	pthread_mutex_init(&rc->rows_lock, NULL);
	pthread_cond_init(&rc->uploaded, NULL);
	buf_init(&rc->token, TOKEN_MAX_SIZE + 1);
	int r;
	uint64_t timeout = 300, level = 3;
	const char *mode = config_get(cfg, CONFIG_REMOTE_MODE);
	/* With a scheduler, Route answers name the worker, its pin and the token. */
	if ((r = need(cfg, CONFIG_REMOTE_TENANT, &rc->tenant, err)) < 0 ||
	    (r = need(cfg, CONFIG_REMOTE_IMAGE, &rc->image_str, err)) < 0 ||
	    (!routed && ((r = need(cfg, CONFIG_REMOTE_WORKER, &rc->worker, err)) < 0 ||
			 (r = need(cfg, CONFIG_REMOTE_PIN, &rc->pin, err)) < 0 ||
			 (r = need(cfg, CONFIG_REMOTE_TOKEN_FILE, &rc->token_file, err)) < 0)))
		goto fail;
	if (digest_parse(rc->image_str, &rc->image) < 0 || strncmp(rc->image_str, DIGEST_PREFIX, 7) != 0) {
		r = error_set(err, -EINVAL, "remote.image must be sha256:<64 hex digits>");
		goto fail;
	}
	if (mode && strcmp(mode, "preprocessed") == 0)
		rc->preprocessed = true;
	else if (mode && *mode && strcmp(mode, "cas") != 0) {
		r = error_set(err, -EINVAL, "remote.mode must be cas or preprocessed, not '%s'", mode);
		goto fail;
	}
	if (config_get_u64(cfg, CONFIG_REMOTE_TIMEOUT, &timeout) < 0 || timeout == 0 || timeout > 86400 ||
	    config_get_u64(cfg, CONFIG_REMOTE_COMPRESSION_LEVEL, &level) < 0 || level < 1 || level > 19) {
		r = error_set(err, -EINVAL, "remote.timeout (1..86400 s) or remote.compression_level (1..19) is out of range");
		goto fail;
	}
	rc->timeout_ms = (int)timeout * 1000;
	rc->level = (int)level;
	if (routed) {
		if ((r = route_client_new(cfg, rc->tenant, rc->image_str, &rc->route, err)) < 0)
			goto fail;
	} else {
		struct rpc_channel_config cc = { .target = rc->worker, .pin = rc->pin, .max_message = MAX_REPLY };
		if ((r = rpc_channel_new(&cc, &rc->ch, err)) < 0)
			goto fail;
		/* The daemon outlives builds: the handshake (some 50 ms of TLS and
		 * HTTP/2 set-up) is done now, not by the first compile. */
		rpc_channel_connect(rc->ch);
	}
	if ((r = s3_settings(rc, cfg, err)) < 0)
		goto fail;
	rc->hooks = (struct daemon_remote){
		.image = &rc->image, .compile = remote_compile, .ctx = rc, .status = remote_status,
		.command = remote_command,
	};
	rc->rows_path = rows_path_for(cfg);
	*ret = rc;
	return 0;
fail:
	remote_client_free(rc);
	return r;
}

const struct daemon_remote *remote_client_hooks(struct remote_client *rc) { return &rc->hooks; }

void remote_client_free(struct remote_client *rc)
{
	if (!rc)
		return;
	rpc_channel_free(rc->ch);
	route_client_free(rc->route);
	tier_close(rc->tier);
	free(rc->s3_endpoint);
	free(rc->s3_region);
	free(rc->s3_bucket);
	free(rc->s3_prefix);
	free(rc->s3_credentials_file);
	buf_free(&rc->token);
	while (rc->uploading) {
		struct uploading *u = rc->uploading;
		rc->uploading = u->next;
		free(u);
	}
	pthread_cond_destroy(&rc->uploaded);
	pthread_mutex_destroy(&rc->lock);
	pthread_mutex_destroy(&rc->rows_lock);
	free(rc->rows_path);
	free(rc->worker);
	free(rc->pin);
	free(rc->tenant);
	free(rc->image_str);
	free(rc->token_file);
	free(rc);
}
