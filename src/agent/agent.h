/*
 * hpcc-agent, PID 1 in the compile microVM (docs/agent.md): the state one
 * serving loop keeps, the limits it enforces on everything the host sends,
 * and the functions each file of src/agent/ provides to the others. The
 * agent is single-threaded: one poll loop reads frames from the host,
 * forks one child per compiler run and streams results back.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "agent.pb-c.h"
#include "frame.h"
#include "macro.h"

/* Each live exec runs as a user of its own, AGENT_UID_BASE + its slot
 * (uid and gid alike, with no passwd entry): its files are its own, its
 * RLIMIT_NPROC is its own, and at its end every process of that uid is
 * killed whatever its session (spawn.c). --uid-base moves the range in
 * test mode. */
#define AGENT_UID_BASE 100000u

/* The one environment every compiler gets, apart from HOME, TMPDIR and
 * SOURCE_DATE_EPOCH. */
#define AGENT_PATH "/usr/local/bin:/usr/bin:/bin"

/* Limits on what the host may ask for (docs/agent.md, "Limits"). */
#define AGENT_PATH_MAX 4096                  /* a relative path from the host */
#define AGENT_NAME_MAX 255                   /* one component */
#define AGENT_STAGING_MAX 256                /* ExecHeader.staging */
#define AGENT_ARGV_MAX_COUNT 8192
#define AGENT_ARG_MAX_BYTES (128u << 10)     /* one argument (the kernel's MAX_ARG_STRLEN) */
#define AGENT_ARGV_MAX_BYTES (1u << 20)      /* all arguments together */
#define AGENT_INPUTS_MAX 65536
#define AGENT_OUTPUTS_MAX 256
#define AGENT_FILE_MAX (1ull << 30)          /* one input file */
#define AGENT_EXEC_INPUT_MAX (2ull << 30)    /* all input files of one exec */
#define AGENT_TIMEOUT_MAX_MS (3600u * 1000)  /* also the value used for 0 */
#define AGENT_OUTPUT_MAX (1ull << 30)        /* max_output cap, also used for 0 */
#define AGENT_CHUNK_MAX (1u << 20)           /* data bytes per output FileChunk */
#define AGENT_STDIO_READ (64u << 10)         /* data bytes per StdioChunk */
#define AGENT_LIVE_PER_VCPU 4                /* live execs per vCPU before "busy" */
#define AGENT_TOMBSTONES 1024                /* finished ids whose late frames are dropped */
#define AGENT_OUTQ_HIGH (2u << 20)           /* stop producing frames above this backlog */
#define AGENT_OUTQ_MAX (8u << 20)            /* stop reading the host above this backlog */
#define AGENT_STOP_WAIT_MS 2000              /* for the processes of a run to die */

enum exec_state {
	EXEC_STAGING, /* header arrived, inputs arriving */
	EXEC_QUEUED,  /* all inputs here, waiting for a free vCPU */
	EXEC_RUNNING, /* the command runs */
	EXEC_SENDING, /* result sent, output files being sent */
};

/* An output file, measured before the result and opened only when its
 * turn to be sent comes (256 outputs per exec must not hold 256 fds). */
struct exec_output {
	const char *path; /* points into the header */
	int fd;           /* -1 until it is sent */
	uint64_t size, sent;
	dev_t dev;
	ino_t ino;
	bool started, executable;
};

/* What may run as an exec's uid. */
enum exec_procs {
	PROCS_NONE,  /* never ran, or every process of the uid is gone */
	PROCS_RAN,   /* a run was started: processes of the uid may live */
	PROCS_STUCK, /* they could not all be stopped: the slot is never reused */
};

struct exec {
	struct exec *next;
	uint64_t id;
	enum exec_state state;
	Hpcc__V1__ExecHeader *h;   /* owned; checked when it arrived (exec.c) */
	uint64_t timeout_ms, max_output;
	int64_t deadline_us;        /* inputs complete (STAGING) or kill (RUNNING) */
	int slot;                   /* index into agent.slots, -1 if none */
	uid_t uid;                  /* agent.uid_base + slot, also the gid */
	enum exec_procs procs;

	/* staging directory: <root>/<h->staging>, see files.c */
	int parent_fd, staging_fd;
	char *leaf;
	bool mounted;

	/* the input file being written */
	int in_fd;
	char *in_path;
	uint64_t in_size, in_have, in_total;
	uint32_t inputs_done;

	/* the run */
	pid_t pid;
	int out_fd, err_fd, status_fd;
	int64_t start_us;
	uint64_t stdio_sent;
	bool timed_out, truncated;

	/* output files, after the result */
	struct exec_output *outs;
	size_t n_outs, cur_out;
};

enum slot_state {
	SLOT_FREE,
	SLOT_USED,
	SLOT_STUCK, /* a process of this uid survived SIGKILL: never reused */
};

struct outq {
	uint8_t *buf;
	size_t start, end, cap;
};

struct agent {
	const char *root;   /* the compilers' root: /merged, or --root in test mode */
	int root_fd;
	bool boot;          /* PID 1: staging directories are tmpfs mounts */
	unsigned vcpus;
	uint64_t staging_size; /* tmpfs size= of one staging directory */

	int chan;           /* the host stream, non-blocking */
	struct frame_decoder dec;
	struct outq out;
	int sigfd;          /* SIGCHLD */
	uint8_t *chunk_buf; /* AGENT_CHUNK_MAX bytes for output files */

	uid_t uid_base;     /* the compile uids: uid_base .. uid_base + n_slots - 1 */
	uint8_t *slots;     /* per compile uid: enum slot_state */
	unsigned n_slots;   /* vcpus * AGENT_LIVE_PER_VCPU */

	struct exec *execs; /* in arrival order */
	unsigned n_live, n_running;
	uint64_t tomb[AGENT_TOMBSTONES];
	size_t tomb_next;

	char fatal[256];    /* set when the stream cannot go on */
};

/* agent.c */
void agent_log(const char *fmt, ...) _printf_(1, 2);
int64_t agent_now_us(void); /* CLOCK_MONOTONIC */
void agent_raise_nofile(void); /* soft RLIMIT_NOFILE up to the hard one */

/* paths.c: checks on names from the host, and walks that never follow a
 * symlink. Checks return 0 or -EINVAL and describe the problem in why. */
int path_check_relative(const char *p, char *why, size_t why_len);
int path_check_staging(const char *p, char *why, size_t why_len);
bool path_has_top(const char *p, const char *top); /* "root/x" has top "root" */
struct mkdir_opts {
	mode_t mode;
	bool chown;
	uid_t uid;
	gid_t gid;
	/* Every directory on the way, existing or made, must be owned by
	 * root and writable by nobody else (or sticky, like /tmp): no other
	 * user can then rename or replace a component under the agent. */
	bool root_only;
};
int path_open_dir(int dirfd, const char *rel, size_t rel_len, const struct mkdir_opts *mk, int *ret_fd);
int path_open_file(int dirfd, const char *rel, int flags, mode_t mode, const struct mkdir_opts *mk,
		   int *ret_fd);

/* files.c: staging directories, input and output files */
int staging_create(struct agent *a, struct exec *e, char *why, size_t why_len);
void staging_destroy(struct agent *a, struct exec *e);
int tree_remove_at(int dirfd, const char *name, unsigned depth);
int write_all(int fd, const void *p, size_t n);
/* 0 and an open regular file, 1 if path is missing or not a regular
 * file (a symlink, FIFO, socket or directory), or a negative errno. */
int output_open(int staging_fd, const char *path, int *ret_fd, struct stat *ret_st);

/* netcheck.c: 0 if sysfs_dir/class/net holds only lo (and the kernel's
 * own interface list agrees), 1 if other interfaces exist (their names,
 * space-separated, in names), or a negative errno. */
int netcheck_run(const char *sysfs_dir, char *names, size_t names_len);

/* channel.c: the host stream and the queue of frames waiting for it */
int channel_open_virtio(const char *port_name, int timeout_ms, int *ret_fd, char *why, size_t why_len);
int channel_wait_host(int fd, int timeout_ms);
int channel_open_vsock(unsigned port, int timeout_ms, int *ret_fd, char *why, size_t why_len);
int channel_open_unix(const char *path, int timeout_ms, int *ret_fd, char *why, size_t why_len);
int outq_frame(struct outq *q, const Hpcc__V1__AgentFrame *f);
size_t outq_pending(const struct outq *q);
int outq_flush(struct outq *q, int fd);
void outq_free(struct outq *q);

#define AGENT_ERROR_MAX 512 /* error strings in results (the host refuses > 1 KiB) */

static inline void close_fdp(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* exec.c: one exec from its header until it is queued, and its end */
void exec_handle_header(struct agent *a, uint64_t id, Hpcc__V1__ExecHeader *h);
void exec_handle_input(struct agent *a, uint64_t id, const Hpcc__V1__FileChunk *c);
void exec_handle_cancel(struct agent *a, uint64_t id);
void exec_handle_unexpected(struct agent *a, uint64_t id, const char *what);
void exec_send_result(struct agent *a, uint64_t id, Hpcc__V1__ExecResult *res);
/* Ends an exec: an error result unless the result went out already, then
 * exec_destroy(): kill, staging removal, id remembered, freed. */
void exec_fail(struct agent *a, struct exec *e, const char *fmt, ...) _printf_(3, 4);
void exec_destroy(struct agent *a, struct exec *e);
void exec_destroy_all(struct agent *a);
void exec_kill_run(pid_t pid);

/* run.c: from a free vCPU to the last output file */
void exec_start_queued(struct agent *a);
void exec_reap(struct agent *a);
void exec_read_stdio(struct agent *a, struct exec *e, int which);
void exec_check_deadlines(struct agent *a, int64_t now_us);
int64_t exec_next_deadline(const struct agent *a); /* -1: none */
bool exec_produce(struct agent *a);

/* spawn.c: the child side of a compiler run, the compile uids, and the
 * end of every process a run left */
int exec_spawn(struct agent *a, struct exec *e, char *why, size_t why_len);
int exec_spawn_failure(int status_fd, char *why, size_t why_len); /* 1 if the child reported one */
int slots_init(struct agent *a);
int slot_take(struct agent *a, struct exec *e); /* -EBUSY if every uid is taken */
void slot_release(struct agent *a, struct exec *e);
/* Kills every process of the exec's uid and waits until none is left
 * (AGENT_STOP_WAIT_MS at most): 0, or -ETIMEDOUT (e->procs is then
 * PROCS_STUCK). Nothing to do unless e->procs is PROCS_RAN. */
int exec_stop_processes(struct exec *e);

/* serve.c: the loop; 0 when the host closed the stream, -1 otherwise
 * (a->fatal says why). */
int agent_serve(struct agent *a);
int agent_send(struct agent *a, Hpcc__V1__AgentFrame *f);

/* boot.c: PID 1 only */
_Noreturn void boot_main(void);
