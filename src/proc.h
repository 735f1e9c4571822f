/*
 * proc.h — one child process: spawned with posix_spawnp in its own process
 * group, its stdout and stderr drained into memory, its stdin fed from a
 * buffer, its exit observed through a pidfd, its deadline enforced by
 * killing the whole group (TERM, grace, KILL) and a bounded wait for EOF.
 *
 * Where the runner can create cgroups each proc runs in one of its own
 * (reap.h), which it enters before it execs: whatever it starts stays
 * there, whatever group or session it moves to, and a kill (deadline,
 * cancel, the leader's end) is cgroup.kill. Without one, a kill walks the
 * leader's descendants (lc_reap_tree) and kills the group.
 *
 * A proc is finished when its leader has exited and its output pipes are
 * closed; it then kills whatever is left of it (its cgroup, else its
 * group), reaps the leader and calls on_done. Its owner frees it with
 * lc_proc_free.
 */
#ifndef LC_PROC_H
#define LC_PROC_H

#include <stddef.h>
#include <sys/types.h>

#include "loop.h"

/* Seconds between SIGTERM and SIGKILL when a deadline passes, unless the
 * caller gives its own (the Lua layer always does). */
#define LC_KILL_GRACE 0.1

typedef struct lc_buf {
    char *data;
    size_t len, cap;
    int pipe_grown;             /* its pipe was enlarged to BIG_PIPE */
    /* Past the spec's max_capture, data keeps the first max_capture bytes
     * and all of the output goes to an unlinked temporary file: spill_fd,
     * owned here until the record hands it over (-1: none). */
    int spill_fd;
    size_t total;               /* bytes read in all */
} lc_buf;

typedef struct lc_proc lc_proc;
typedef void lc_proc_done_fn(lc_proc *p);

typedef struct lc_proc_spec {
    char *const *argv;          /* NULL-terminated; argv[0] searched in PATH */
    char *const *envp;          /* NULL: the current environment */
    const char *cwd;            /* NULL: inherit */
    const char *input;          /* NULL: stdin is /dev/null */
    size_t input_len;
    double timeout;             /* seconds; <= 0: none */
    double kill_grace;          /* seconds between TERM and KILL */
    size_t max_capture;         /* bytes of stdout/stderr kept in memory; 0: all */
    int live;                   /* output is also handed over as it arrives
                                 * (on_data, live_out/live_err), and still
                                 * captured: for output as tasks run */
    int stream;                 /* a long-lived worker: stdin stays open for
                                 * lc_proc_write, stdout is handed over as it
                                 * arrives (on_data), stderr is inherited */
} lc_proc_spec;

struct lc_proc {
    lc_loop *loop;
    pid_t pid;
    lc_watch pidw, outw, errw, inw;
    lc_buf out, err;
    char *input;                /* owned copy of spec->input, then writes */
    size_t input_len, input_off, input_cap;
    int stream;
    int frames;                 /* the binding's (core_loop.c): a stream whose
                                 * stdout is handed over in whole frames */
    int has_frame_key;          /* frames: frame_key is its up-key */
    unsigned char frame_key[16];    /* (marshal.h's LC_MARSHAL_KEY_LEN) */
    size_t max_capture;
    int live;
    lc_buf live_out, live_err;  /* live: bytes not yet handed to the owner */
    int input_closing;          /* close stdin once the input is written */
    lc_proc_done_fn *on_data;   /* stream: stdout has new bytes in out;
                                 * live: new bytes in live_out/live_err */
    int data_queued;            /* the owner's: in its list of procs with data */
    lc_proc *data_next;         /* the owner's link in that list */
    lc_timer timer;             /* deadline, kill escalation, EOF wait */
    lc_timer exit_poll;         /* without pidfds: polls the leader's pid */
    int polled;                 /* exit_poll is in use */
    double poll_every;
    int reaped;
    int phase;                  /* see proc.c */
    double kill_grace;
    double timeout;             /* spec->timeout: the limit it ran under */
    double t_start, t_end;      /* lc_now() */
    double wall_start;          /* lc_wallclock() at spawn */

    /* outcome */
    int exited;                 /* leader has exited (status below valid) */
    int code;                   /* exit status, or signal number if signaled */
    int signaled;
    int timed_out;
    int interrupted;            /* killed by lc_proc_kill, not by deadline */
    int incomplete;             /* pipes closed before EOF after a kill */
    int input_errno;            /* why stdin could not be fully written */
    int wait_errno;             /* waitid failure (e.g. ECHILD: reaped by others) */
    int track_slot;             /* in signals.c's table of live groups */
    int cg;                     /* its cgroup (reap.h), -1: none */
    int cg_empty;               /* seen empty after the leader exited */

    lc_proc_done_fn *on_done;
    void *data;                 /* the owner's */
    long long tag;              /* the owner's */
    lc_proc *prev, *next;       /* the owner's list links */
};

/* Spawn. Returns 0 and *out, or an errno with a message in errbuf naming
 * what failed (pipe, cwd, exec); nothing is left open on failure. */
int lc_proc_spawn(lc_loop *loop, const lc_proc_spec *spec,
                  lc_proc_done_fn *on_done, lc_proc_done_fn *on_data, void *data,
                  lc_proc **out, char *errbuf, size_t errlen);

/* Stream mode: queue bytes for the child's stdin. 0 or an errno (EPIPE
 * once the child has closed it). */
int lc_proc_write(lc_proc *p, const char *data, size_t len);
/* Stream mode: close the child's stdin (it sees EOF). */
void lc_proc_close_input(lc_proc *p);

/* Kill the whole group now (SIGKILL); the proc finishes through the loop
 * after a bounded wait for its pipes. */
void lc_proc_kill(lc_proc *p);
/* Ask the whole group to end (SIGTERM), then SIGKILL after the proc's
 * kill_grace, as at a deadline; a worker process, or a proc with no
 * grace, as lc_proc_kill. */
void lc_proc_terminate(lc_proc *p);

/* Release a finished proc (or, on teardown, one in any state: it is
 * killed and reaped synchronously first). */
void lc_proc_free(lc_proc *p);

const char *lc_errno_name(int e);
const char *lc_signal_name(int sig);

#endif
