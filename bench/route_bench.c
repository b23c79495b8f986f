/*
 * route_bench: the latency and throughput of the scheduler's Route call on
 * one reused TLS channel (see bench/README.md, bench/route.sh). It registers
 * K fake workers so that routing hashes over something, then runs (a) an
 * open-loop load at a fixed rate, where every send time is fixed in advance
 * and latency is counted from that scheduled time, so that a slow answer
 * that delays the next send is charged to the scheduler instead of hidden
 * (no coordinated omission), and (b) a closed loop, N threads calling as
 * fast as they can, for the highest rate one channel gets. Every Route must
 * succeed: a failure is counted, printed with its status, and makes the
 * exit status 1. One result line per run, key=value, times in microseconds.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "buf.h"
#include "fs.h"
#include "rpc.h"
#include "scheduler.pb-c.h"

#define ROUTE_METHOD "/hpcc.v1.SchedulerService/Route"
#define REGISTER_METHOD "/hpcc.v1.SchedulerService/RegisterWorker"
#define CALL_TIMEOUT_MS 5000
#define CLOSED_SECONDS 5
#define WARMUP_ROUTES 2000
#define MAX_OPEN_ROUTES 20000000u   /* rate x seconds: 160 MB of samples at most */
#define MAX_CLOSED_SAMPLES 50000000u
#define MAX_THREADS 256
#define MAX_WORKERS 1000
#define MAX_ERRORS_SHOWN 5
#define MAX_DISTINCT_TOKENS 100000
#define ACCESS_TOKEN_MAX (64 * 1024)
/* A send that starts this long after its scheduled time was held up by the previous call of its thread. */
#define LATE_NS 100000

struct options {
	const char *target, *pin, *worker_token_file, *tenant, *image, *access_token_file;
	unsigned rate, seconds, threads, workers;
	unsigned distinct_tokens;  /* 0: the first line's token for every call; else cycle through that many lines */
};

struct shared {
	struct rpc_channel *ch;
	/* The packed RouteRequests: one, or one per distinct access token, taken in turn. */
	uint8_t **route_req;
	size_t *route_len;
	size_t n_req;
	atomic_uint_fast64_t next_req;
	atomic_uint errors_shown;
	pthread_mutex_t print_lock;
};

/* One sending thread's share of a run. */
struct runner {
	pthread_t thread;
	struct shared *sh;
	unsigned index, n_threads;
	/* open loop: this thread sends calls index, index + n_threads, ... < total, call j at start + j * period */
	uint64_t total;
	int64_t start_ns;
	double period_ns;
	/* closed loop: calls until stop_ns */
	int64_t stop_ns;
	uint64_t *lat_ns;  /* one latency per call made */
	uint64_t n, cap;
	uint64_t errors, late;
	int64_t last_done_ns;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* This process's CPU time, all threads: shows whether the load generator itself was the limit. */
static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void usage(void)
{
	fputs("usage: route_bench --target ADDR --pin PIN --worker-token-file F --tenant T --image DIGEST\n"
	      "                   --access-token-file F [--rate R] [--seconds S] [--threads N] [--workers K]\n"
	      "                   [--distinct-tokens D]\n"
	      "  registers K fake workers (default 8), then routes at R/s (default 5000) for S s (default 10)\n"
	      "  from N threads (default 4) on one TLS channel (open loop), then as fast as N threads can for 5 s;\n"
	      "  with D, the file's first D lines are D access tokens that the calls use in turn (else line 1 only)\n",
	      stderr);
}

static int parse_unsigned(const char *name, const char *text, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "route_bench: %s: '%s' is not a number from %u to %u\n", name, text, min, max);
		return -EINVAL;
	}
	*ret = (unsigned)v;
	return 0;
}

/* The first line of a small file, without its newline; NULL after printing why. */
static char *read_line_file(const char *path, size_t max)
{
	_cleanup_buf_ struct buf b;
	buf_init(&b, max);
	int r = fs_read_file(path, max, &b);
	if (r < 0) {
		fprintf(stderr, "route_bench: %s: %s\n", path, strerror(-r));
		return NULL;
	}
	size_t n = strcspn(b.data, "\r\n");
	char *s = strndup(b.data, n);
	if (!s || !*s) {
		fprintf(stderr, "route_bench: %s: empty\n", path);
		free(s);
		return NULL;
	}
	return s;
}

static void report_failure(struct shared *sh, const char *what, int r, const struct rpc_status *st)
{
	if (atomic_fetch_add(&sh->errors_shown, 1) >= MAX_ERRORS_SHOWN)
		return;
	pthread_mutex_lock(&sh->print_lock);
	if (r < 0)
		fprintf(stderr, "route_bench: %s failed: %s\n", what, strerror(-r));
	else
		fprintf(stderr, "route_bench: %s failed: status %d: %s\n", what, st->code, st->msg);
	pthread_mutex_unlock(&sh->print_lock);
}

/* One Route; true when it succeeded with a usable answer. */
static bool route_once(struct shared *sh, struct buf *reply)
{
	struct rpc_status st = { 0 };
	size_t k = sh->n_req > 1 ? (size_t)(atomic_fetch_add(&sh->next_req, 1) % sh->n_req) : 0;
	int r = rpc_unary(sh->ch, ROUTE_METHOD, sh->route_req[k], sh->route_len[k], CALL_TIMEOUT_MS, reply, &st);
	if (r < 0 || st.code != GRPC_STATUS_OK) {
		report_failure(sh, "Route", r, &st);
		return false;
	}
	Hpcc__V1__RouteReply *rep = hpcc__v1__route_reply__unpack(NULL, reply->len, (uint8_t *)reply->data);
	bool ok = rep && rep->worker_id[0] && rep->routing_token.len > 0;
	if (rep)
		hpcc__v1__route_reply__free_unpacked(rep, NULL);
	if (!ok) {
		st = (struct rpc_status){ .code = GRPC_STATUS_OK };
		snprintf(st.msg, sizeof(st.msg), "malformed or empty RouteReply");
		report_failure(sh, "Route", 0, &st);
	}
	return ok;
}

static void *open_loop_main(void *arg)
{
	struct runner *w = arg;
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, 16 * 1024);
	for (uint64_t j = w->index; j < w->total; j += w->n_threads) {
		int64_t due = w->start_ns + (int64_t)((double)j * w->period_ns);
		if (now_ns() < due)
			sleep_until_ns(due);
		int64_t sent = now_ns();
		if (sent - due > LATE_NS)
			w->late++;
		if (!route_once(w->sh, &reply))
			w->errors++;
		int64_t done = now_ns();
		w->lat_ns[w->n++] = (uint64_t)(done - due);
		w->last_done_ns = done;
	}
	return NULL;
}

static void *closed_loop_main(void *arg)
{
	struct runner *w = arg;
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, 16 * 1024);
	for (;;) {
		int64_t sent = now_ns();
		if (sent >= w->stop_ns)
			break;
		if (!route_once(w->sh, &reply))
			w->errors++;
		int64_t done = now_ns();
		if (w->n == w->cap) {
			uint64_t cap = w->cap ? w->cap * 2 : 65536;
			uint64_t *p = cap <= MAX_CLOSED_SAMPLES ? realloc(w->lat_ns, cap * sizeof(*p)) : NULL;
			if (!p)
				break;  /* cannot happen at the rates one channel reaches; stop rather than lie */
			w->lat_ns = p;
			w->cap = cap;
		}
		w->lat_ns[w->n++] = (uint64_t)(done - sent);
		w->last_done_ns = done;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank on sorted samples, in microseconds. */
static double percentile_us(const uint64_t *v, uint64_t n, double p)
{
	if (n == 0)
		return 0;
	uint64_t rank = (uint64_t)(p * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

/* Joins the runners, merges their samples and prints one result line; returns the number of errors. */
static uint64_t finish_run(const char *name, struct runner *runners, unsigned n_threads, int64_t start_ns,
			   int64_t start_cpu_ns, const char *extra)
{
	uint64_t total = 0, errors = 0, late = 0;
	int64_t end = start_ns;
	for (unsigned i = 0; i < n_threads; i++) {
		pthread_join(runners[i].thread, NULL);
		total += runners[i].n;
		errors += runners[i].errors;
		late += runners[i].late;
		if (runners[i].last_done_ns > end)
			end = runners[i].last_done_ns;
	}
	double client_cpu = (double)(cpu_ns() - start_cpu_ns) / 1e9;
	uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "route_bench: out of memory\n");
		exit(1);
	}
	uint64_t k = 0;
	for (unsigned i = 0; i < n_threads; i++) {
		memcpy(all + k, runners[i].lat_ns, runners[i].n * sizeof(*all));
		k += runners[i].n;
		free(runners[i].lat_ns);
		runners[i].lat_ns = NULL;
	}
	qsort(all, total, sizeof(*all), cmp_u64);
	double seconds = (double)(end - start_ns) / 1e9;
	printf("%s %s count=%" PRIu64 " errors=%" PRIu64 " late=%" PRIu64 " routes_per_s=%.1f p50_us=%.1f "
	       "p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f wall_s=%.3f client_cpu_s=%.3f\n",
	       name, extra, total, errors, late, seconds > 0 ? (double)total / seconds : 0.0,
	       percentile_us(all, total, 0.50), percentile_us(all, total, 0.90), percentile_us(all, total, 0.99),
	       percentile_us(all, total, 0.999), total ? (double)all[total - 1] / 1000.0 : 0.0, seconds, client_cpu);
	fflush(stdout);
	free(all);
	return errors;
}

static uint64_t run_open_loop(struct shared *sh, const struct options *o)
{
	uint64_t total = (uint64_t)o->rate * o->seconds;
	struct runner *runners = calloc(o->threads, sizeof(*runners));
	if (!runners) {
		fprintf(stderr, "route_bench: out of memory\n");
		exit(1);
	}
	/* Start a little ahead so that every thread is waiting when the first call is due. */
	int64_t start = now_ns() + 20 * 1000000, start_cpu = cpu_ns();
	for (unsigned i = 0; i < o->threads; i++) {
		struct runner *w = &runners[i];
		*w = (struct runner){ .sh = sh, .index = i, .n_threads = o->threads, .total = total, .start_ns = start,
				      .period_ns = 1e9 / o->rate, .last_done_ns = start };
		w->cap = total / o->threads + 1;
		w->lat_ns = malloc(w->cap * sizeof(*w->lat_ns));
		if (!w->lat_ns || pthread_create(&w->thread, NULL, open_loop_main, w) != 0) {
			fprintf(stderr, "route_bench: cannot start thread %u\n", i);
			exit(1);
		}
	}
	char extra[128];
	snprintf(extra, sizeof(extra), "rate=%u seconds=%u threads=%u", o->rate, o->seconds, o->threads);
	uint64_t errors = finish_run("open", runners, o->threads, start, start_cpu, extra);
	free(runners);
	return errors;
}

static uint64_t run_closed_loop(struct shared *sh, const struct options *o, unsigned seconds)
{
	struct runner *runners = calloc(o->threads, sizeof(*runners));
	if (!runners) {
		fprintf(stderr, "route_bench: out of memory\n");
		exit(1);
	}
	int64_t start = now_ns(), start_cpu = cpu_ns();
	for (unsigned i = 0; i < o->threads; i++) {
		struct runner *w = &runners[i];
		*w = (struct runner){ .sh = sh, .index = i, .n_threads = o->threads,
				      .stop_ns = start + (int64_t)seconds * 1000000000, .last_done_ns = start };
		if (pthread_create(&w->thread, NULL, closed_loop_main, w) != 0) {
			fprintf(stderr, "route_bench: cannot start thread %u\n", i);
			exit(1);
		}
	}
	char extra[128];
	snprintf(extra, sizeof(extra), "seconds=%u threads=%u", seconds, o->threads);
	uint64_t errors = finish_run("closed", runners, o->threads, start, start_cpu, extra);
	free(runners);
	return errors;
}

static int register_workers(struct rpc_channel *ch, const struct options *o, const char *worker_token)
{
	_cleanup_buf_ struct buf reply;
	buf_init(&reply, 64 * 1024);
	for (unsigned i = 0; i < o->workers; i++) {
		char id[32], address[32], fp[7 + 64 + 1];
		snprintf(id, sizeof(id), "bench-%u", i);
		snprintf(address, sizeof(address), "127.0.0.1:%u", 10000 + i);
		/* Any 64 hex digits will do: nobody connects to these workers. */
		memcpy(fp, "sha256:", 7);
		for (unsigned k = 0; k < 32; k++)
			snprintf(fp + 7 + 2 * k, 3, "%02x", (i * 131 + k * 7) & 0xff);
		char *images[] = { (char *)o->image };
		Hpcc__V1__RegisterWorkerRequest req = HPCC__V1__REGISTER_WORKER_REQUEST__INIT;
		req.worker_token = (char *)worker_token;
		req.worker_id = id;
		req.address = address;
		req.cert_fingerprint = fp;
		req.capacity = 8;
		req.n_images = 1;
		req.images = images;
		size_t len = hpcc__v1__register_worker_request__get_packed_size(&req);
		_cleanup_free_ uint8_t *packed = malloc(len ? len : 1);
		if (!packed)
			return -ENOMEM;
		hpcc__v1__register_worker_request__pack(&req, packed);
		struct rpc_status st = { 0 };
		int r = rpc_unary(ch, REGISTER_METHOD, packed, len, CALL_TIMEOUT_MS, &reply, &st);
		if (r < 0 || st.code != GRPC_STATUS_OK) {
			fprintf(stderr, "route_bench: RegisterWorker %s failed: %s%d: %s\n", id, r < 0 ? "error " : "status ",
				r < 0 ? r : st.code, r < 0 ? strerror(-r) : st.msg);
			return -EIO;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 'T' },
		{ "pin", required_argument, NULL, 'p' },
		{ "worker-token-file", required_argument, NULL, 'w' },
		{ "tenant", required_argument, NULL, 't' },
		{ "image", required_argument, NULL, 'i' },
		{ "access-token-file", required_argument, NULL, 'a' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'n' },
		{ "workers", required_argument, NULL, 'k' },
		{ "distinct-tokens", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct options o = { .rate = 5000, .seconds = 10, .threads = 4, .workers = 8 };
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case 'T': o.target = optarg; break;
		case 'p': o.pin = optarg; break;
		case 'w': o.worker_token_file = optarg; break;
		case 't': o.tenant = optarg; break;
		case 'i': o.image = optarg; break;
		case 'a': o.access_token_file = optarg; break;
		case 'r': r = parse_unsigned("--rate", optarg, 1, 1000000, &o.rate); break;
		case 's': r = parse_unsigned("--seconds", optarg, 1, 3600, &o.seconds); break;
		case 'n': r = parse_unsigned("--threads", optarg, 1, MAX_THREADS, &o.threads); break;
		case 'k': r = parse_unsigned("--workers", optarg, 1, MAX_WORKERS, &o.workers); break;
		case 'd': r = parse_unsigned("--distinct-tokens", optarg, 1, MAX_DISTINCT_TOKENS, &o.distinct_tokens); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
		if (r < 0)
			return 2;
	}
	if (optind != argc || !o.target || !o.pin || !o.worker_token_file || !o.tenant || !o.image ||
	    !o.access_token_file) {
		usage();
		return 2;
	}
	if ((uint64_t)o.rate * o.seconds > MAX_OPEN_ROUTES) {
		fprintf(stderr, "route_bench: rate x seconds is over %u calls\n", MAX_OPEN_ROUTES);
		return 2;
	}
	/* Wake-ups at the scheduled send times, not up to 50 us later (the default timer slack). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

	_cleanup_free_ char *worker_token = read_line_file(o.worker_token_file, 4096);
	_cleanup_buf_ struct buf tokens;
	buf_init(&tokens, (size_t)(o.distinct_tokens ? o.distinct_tokens : 1) * (ACCESS_TOKEN_MAX + 2));
	int rt = fs_read_file(o.access_token_file, tokens.max, &tokens);
	if (rt < 0)
		fprintf(stderr, "route_bench: %s: %s\n", o.access_token_file, strerror(-rt));
	if (!worker_token || rt < 0)
		return 1;
	/* One token per line; the first D lines (or the first one). */
	size_t n_tokens = o.distinct_tokens ? o.distinct_tokens : 1;
	char **access = calloc(n_tokens, sizeof(*access));
	if (!access)
		return 1;
	{
		char *p = tokens.data, *end = tokens.data + tokens.len;
		for (size_t i = 0; i < n_tokens; i++) {
			size_t len = p < end ? strcspn(p, "\r\n") : 0;
			if (len == 0 || len > ACCESS_TOKEN_MAX || !(access[i] = strndup(p, len))) {
				fprintf(stderr, "route_bench: %s: line %zu is not an access token (need %zu lines)\n",
					o.access_token_file, i + 1, n_tokens);
				return 1;
			}
			p += len;
			p += strspn(p, "\r\n");
		}
	}
	rpc_global_init();
	struct error err = { 0 };
	struct rpc_channel *ch = NULL;
	struct rpc_channel_config cc = { .target = o.target, .pin = o.pin, .max_message = 64 * 1024 };
	if (rpc_channel_new(&cc, &ch, &err) < 0) {
		fprintf(stderr, "route_bench: %s\n", err.msg);
		return 1;
	}
	int code = 1;
	struct shared sh = { .ch = ch, .n_req = n_tokens };
	pthread_mutex_init(&sh.print_lock, NULL);
	sh.route_req = calloc(n_tokens, sizeof(*sh.route_req));
	sh.route_len = calloc(n_tokens, sizeof(*sh.route_len));
	if (!sh.route_req || !sh.route_len)
		goto out;
	for (size_t i = 0; i < n_tokens; i++) {
		Hpcc__V1__RouteRequest req = HPCC__V1__ROUTE_REQUEST__INIT;
		req.tenant = (char *)o.tenant;
		req.image_digest = (char *)o.image;
		req.access_token = access[i];
		sh.route_len[i] = hpcc__v1__route_request__get_packed_size(&req);
		if (!(sh.route_req[i] = malloc(sh.route_len[i] ? sh.route_len[i] : 1)))
			goto out;
		hpcc__v1__route_request__pack(&req, sh.route_req[i]);
	}
	size_t len = sh.route_len[0];

	if (register_workers(ch, &o, worker_token) < 0)
		goto out;
	printf("setup target=%s workers=%u request_bytes=%zu access_tokens=%zu\n", o.target, o.workers, len, n_tokens);

	/* Warm-up, not reported: the connection, the IdP's keys, the server's handler threads. */
	{
		_cleanup_buf_ struct buf reply;
		buf_init(&reply, 16 * 1024);
		uint64_t failed = 0;
		for (unsigned i = 0; i < 20; i++)
			failed += !route_once(&sh, &reply);
		if (failed) {
			fprintf(stderr, "route_bench: the warm-up Routes failed; not measuring\n");
			goto out;
		}
		struct options warm = o;
		warm.rate = WARMUP_ROUTES;
		warm.seconds = 1;
		struct runner *runners = calloc(o.threads, sizeof(*runners));
		if (!runners)
			goto out;
		int64_t start = now_ns();
		for (unsigned i = 0; i < o.threads; i++) {
			runners[i] = (struct runner){ .sh = &sh, .index = i, .n_threads = o.threads,
						      .total = WARMUP_ROUTES, .start_ns = start, .period_ns = 1e9 / warm.rate };
			runners[i].lat_ns = malloc((WARMUP_ROUTES / o.threads + 1) * sizeof(uint64_t));
			if (!runners[i].lat_ns || pthread_create(&runners[i].thread, NULL, open_loop_main, &runners[i]))
				exit(1);
		}
		for (unsigned i = 0; i < o.threads; i++) {
			pthread_join(runners[i].thread, NULL);
			failed += runners[i].errors;
			free(runners[i].lat_ns);
		}
		free(runners);
		if (failed) {
			fprintf(stderr, "route_bench: %" PRIu64 " warm-up Routes failed; not measuring\n", failed);
			goto out;
		}
	}
	/* Each run starts and ends with a line of its own so that a script can read the scheduler's CPU
	 * time just before and just after it. */
	printf("open-start\n");
	fflush(stdout);
	uint64_t errors = run_open_loop(&sh, &o);
	printf("open-end\n");
	fflush(stdout);
	printf("closed-start\n");
	fflush(stdout);
	errors += run_closed_loop(&sh, &o, CLOSED_SECONDS);
	printf("closed-end\n");
	fflush(stdout);
	if (errors)
		fprintf(stderr, "route_bench: %" PRIu64 " Routes failed\n", errors);
	code = errors ? 1 : 0;
out:
	for (size_t i = 0; i < n_tokens; i++) {
		if (access[i])
			OPENSSL_cleanse(access[i], strlen(access[i]));
		free(access[i]);
		if (sh.route_req)
			free(sh.route_req[i]);
	}
	free(access);
	free(sh.route_req);
	free(sh.route_len);
	OPENSSL_cleanse(tokens.data, tokens.len);
	rpc_channel_free(ch);
	rpc_global_shutdown();
	return code;
}
