/*
 * proc.c — spawning, draining, killing and reaping one child. See proc.h.
 *
 * Life of a proc:
 *   PH_RUN    running; the timer holds the deadline (if any)
 *   PH_TERM   deadline passed, SIGTERM sent to the task; timer = grace
 *   PH_KILL   SIGKILL sent to the task; waiting for the leader to exit
 *   PH_DRAIN  leader gone; what it left is killed; timer bounds the wait
 *             for EOF, since a process outside the task (or, without a
 *             cgroup, one that left the group) may hold our pipes
 *   PH_DONE   reaped, on_done called
 * "The task" is its cgroup where it has one (reap.h), else its group plus,
 * while the leader lives, the descendants a walk of /proc finds.
 * The leader is only reaped at the very end (waitid WNOWAIT peeks at its
 * status first), so its pid, which is also the group id, cannot be reused
 * while we may still signal the group.
 */
#include "proc.h"
#include "hugemem.h"
#include "reap.h"
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum { PH_RUN, PH_TERM, PH_KILL, PH_DRAIN, PH_DONE };

#define EOF_WAIT   0.2            /* seconds to wait for EOF after a kill */
#define MIN_FREE   (64 * 1024)    /* read directly into the buffer above this */
#define BIG_PIPE   (1024 * 1024)  /* pipe size once a child writes a lot */
#define MAX_WAKE   (16 * 1024 * 1024)  /* stream/live bytes read per wake-up */
/* A worker process being stopped gets SIGTERM, which it answers by killing
 * the programs its tasks started and then its own group; SIGKILL follows
 * if it has not ended after this long. */
#define WORKER_GRACE 1.0

extern char **environ;

const char *lc_errno_name(int e) {
    const char *name = strerrorname_np(e);
    return name ? name : "E?";
}

const char *lc_signal_name(int sig) {
    static const char *const names[] = {
        [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",   [SIGQUIT] = "SIGQUIT",
        [SIGILL] = "SIGILL",   [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT",
        [SIGBUS] = "SIGBUS",   [SIGFPE] = "SIGFPE",   [SIGKILL] = "SIGKILL",
        [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM",
        [SIGXCPU] = "SIGXCPU", [SIGXFSZ] = "SIGXFSZ", [SIGSYS] = "SIGSYS",
    };
    if (sig > 0 && sig < (int)(sizeof names / sizeof names[0]) && names[sig])
        return names[sig];
    return "signal";
}

/* ---- small helpers ---------------------------------------------------- */


/* Keep pipe ends off 0-2 so the child's dup2 actions cannot clobber one
 * another when the host runs with a standard stream closed. */
static int lift_fd(int *fd) {
    if (*fd >= 3) return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0) return errno;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) return errno;
    int e = lift_fd(&fds[0]);
    if (e == 0) e = lift_fd(&fds[1]);
    if (e) {
        close(fds[0]);
        close(fds[1]);
        fds[0] = fds[1] = -1;
    }
    return e;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* A deadline, a cancel or a teardown: the whole task gets `sig`. */
static void kill_group(lc_proc *p, int sig) {
    if (p->cg >= 0) {
        lc_reap_cgroup_signal(p->cg, sig);
        return;
    }
    /* Only while the leader is unreaped: its pid pins the group id. */
    if (p->wait_errno != 0 || p->reaped) return;
    if (p->exited)
        kill(-p->pid, sig);     /* its other descendants went to init */
    else
        lc_reap_tree(p->pid, sig);
}

/* The leader has exited: whatever it left running is killed. (A cgroup
 * seen empty once stays empty: nothing is left in it to fork.) */
static void kill_leftovers(lc_proc *p) {
    if (p->cg >= 0) {
        if (!p->cg_empty && lc_reap_cgroup_populated(p->cg) == 0)
            p->cg_empty = 1;
        if (!p->cg_empty) lc_reap_cgroup_signal(p->cg, SIGKILL);
    } else if (p->wait_errno == 0 && !p->reaped) {
        kill(-p->pid, SIGKILL);
    }
}

static int buf_reserve(lc_buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? 2 * b->cap : extra;
    if (cap < b->len + extra) cap = b->len + extra;
    char *d = lc_mem_realloc(b->data, b->cap, cap);
    if (d == NULL) return ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Without pidfds each proc polls its own pid on a timer instead: still
 * never waitpid(-1). Both calls used are probed once, on our own pid, and
 * any failure means polling: pidfd_open is Linux 5.3, waitid(P_PIDFD) 5.4
 * (EINVAL before), valgrind answers ENOSYS and container seccomp profiles
 * EPERM. A probe short of fds (EMFILE) decides nothing: the spawn's own
 * pidfd_open fails the same way and says so. */
static atomic_int pidfd_state;      /* 0 unknown, 1 usable, -1 missing */

static int pidfd_usable(void) {
    int state = atomic_load_explicit(&pidfd_state, memory_order_relaxed);
    if (state) return state > 0;
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) return 1;
        state = -1;
    } else {
        siginfo_t si;
        /* Not our child: ECHILD is the only answer of a working kernel. */
        state = (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0 &&
                 errno == ECHILD) ? 1 : -1;
        close(fd);
    }
    atomic_store(&pidfd_state, state);
    return state > 0;
}

static int wait_leader(lc_proc *p, siginfo_t *si, int flags) {
    if (p->pidw.fd >= 0) return waitid(P_PIDFD, (id_t)p->pidw.fd, si, flags);
    return waitid(P_PID, (id_t)p->pid, si, flags);
}

static void reap_leader(lc_proc *p) {
    siginfo_t si;
    if (p->reaped || p->wait_errno) return;
    while (wait_leader(p, &si, WEXITED) < 0 && errno == EINTR)
        ;
    p->reaped = 1;
}

/* ---- finishing ---------------------------------------------------------- */

static void check_done(lc_proc *p) {
    if (p->phase == PH_DONE || !p->exited) return;
    if (p->outw.fd >= 0 || p->errw.fd >= 0) return;
    if (p->inw.fd >= 0 && p->input_off < p->input_len && !p->input_errno)
        p->input_errno = EPIPE;     /* it ended without reading it all */
    lc_watch_close(p->loop, &p->inw);
    lc_timer_cancel(p->loop, &p->timer);
    /* start_drain already killed what was left of the task. */
    lc_signals_untrack(p->track_slot);
    p->track_slot = -1;
    reap_leader(p);
    lc_reap_cgroup_put(p->cg, p->cg_empty);
    p->cg = -1;
    close_fd(&p->pidw.fd);
    p->t_end = lc_now();
    p->phase = PH_DONE;
    p->on_done(p);
}

/* The leader has exited (or is being killed): whatever is left in its
 * group would outlive the task, and nothing may outlive a run. The leader
 * is not reaped yet, so the group id is still ours to signal. */
static void start_drain(lc_proc *p) {
    kill_leftovers(p);
    p->phase = PH_DRAIN;
    if (p->outw.fd >= 0 || p->errw.fd >= 0)
        lc_timer_arm(p->loop, &p->timer, lc_now() + EOF_WAIT);
    check_done(p);
}

/* ---- event handlers ----------------------------------------------------- */

/* Has the leader exited? Peeks (WNOWAIT): it is reaped only when the
 * whole task is done, so its pid keeps pinning the group id till then. */
static int leader_exited(lc_proc *p, int reap) {
    siginfo_t si;
    si.si_pid = 0;
    if (wait_leader(p, &si, WEXITED | WNOHANG | (reap ? 0 : WNOWAIT)) < 0) {
        if (errno == EINTR) return 0;
        /* ECHILD: someone else reaped it (a host's waitpid(-1)). */
        p->wait_errno = errno;
        p->code = -1;
    } else if (si.si_pid == 0) {
        return 0;
    } else if (si.si_code == CLD_EXITED) {
        p->code = si.si_status;
    } else {
        p->code = si.si_status;
        p->signaled = 1;
    }
    p->exited = 1;
    p->reaped = reap && !p->wait_errno;
    return 1;
}

static void on_leader_exit(lc_proc *p);

static void on_exit_event(lc_loop *loop, lc_watch *w, uint32_t events) {
    lc_proc *p = w->data;
    (void)events;
    /* A readable pidfd means the leader has exited. If its pipes are
     * already at EOF (the common case) the task is over: kill what is left
     * of the group while the zombie still pins the group id, then reap and
     * read the status in one call. */
    int over = p->outw.fd < 0 && p->errw.fd < 0;
    if (over) kill_leftovers(p);
    if (!leader_exited(p, over)) return;
    lc_watch_del(loop, w);
    on_leader_exit(p);
}

static void on_exit_poll(lc_loop *loop, lc_timer *t) {
    lc_proc *p = t->data;
    if (leader_exited(p, 0)) {
        on_leader_exit(p);
        return;
    }
    if (p->poll_every < 0.05) p->poll_every *= 2;
    lc_timer_arm(loop, t, lc_now() + p->poll_every);
}

static void on_leader_exit(lc_proc *p) {
    /* The task is over when its leader is. What is left of its group is
     * killed; output still in the pipes is read up to EOF, which comes at
     * once unless a process that left the group holds a pipe: the wait for
     * it is bounded, and the result then says output may be incomplete. */
    start_drain(p);
}

static int write_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* An unlinked temporary file for output past max_capture, with what was
 * kept so far written first. -1 (and the output capped, incomplete) if
 * none can be had. */
static int spill_open(const lc_buf *b) {
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0') dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/luaconcurrent-XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) unlink(path);
    }
    if (fd >= 0 && write_all(fd, b->data, b->len) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Keep n bytes at src: in memory up to max_capture, then in the spill
 * file. Returns 0, or ENOMEM/an errno when they had to be dropped. */
static int keep_output(lc_proc *p, lc_buf *b, const char *src, size_t n) {
    b->total += n;
    size_t room = p->max_capture == 0 || b->len >= p->max_capture ? 0 : p->max_capture - b->len;
    if (p->max_capture == 0) room = n;
    size_t here = n < room ? n : room;
    if (here > 0) {
        if (buf_reserve(b, here) != 0) return ENOMEM;
        memcpy(b->data + b->len, src, here);
        b->len += here;
    }
    if (here == n) return 0;
    if (b->spill_fd < 0) {
        if (b->spill_fd == -2) return EIO;         /* could not be had before */
        b->spill_fd = spill_open(b);
        if (b->spill_fd < 0) {
            b->spill_fd = -2;
            return EIO;
        }
        /* spill_open wrote the first len bytes; these follow. */
        return write_all(b->spill_fd, src + here, n - here);
    }
    return write_all(b->spill_fd, src, n);
}

static void on_output(lc_loop *loop, lc_watch *w, uint32_t events) {
    lc_proc *p = w->data;
    lc_buf *b = (w == &p->outw) ? &p->out : &p->err;
    char chunk[MIN_FREE];
    int got = 0, open = 1;
    size_t taken = 0;                       /* bytes read in this wake-up */
    (void)events;
    for (;;) {
        size_t want;
        char *dst;
        /* Straight into the buffer while all of its room is under the cap. */
        if (b->cap - b->len >= MIN_FREE && (p->max_capture == 0 || b->cap <= p->max_capture)) {
            dst = b->data + b->len;
            want = b->cap - b->len;
        } else {
            dst = chunk;
            want = sizeof chunk;
        }
        ssize_t n = read(w->fd, dst, want);
        if (n > 0 && p->live) {
            lc_buf *fresh = b == &p->out ? &p->live_out : &p->live_err;
            if (buf_reserve(fresh, (size_t)n) == 0) {   /* else shown at the end only */
                memcpy(fresh->data + fresh->len, dst, (size_t)n);
                fresh->len += (size_t)n;
            }
        }
        if (n > 0) {
            taken += (size_t)n;
            if (dst == chunk) {
                if (keep_output(p, b, chunk, (size_t)n) != 0) {
                    p->incomplete = 1;   /* no memory or file: drop, keep draining */
                    continue;
                }
            } else {
                b->len += (size_t)n;
                b->total += (size_t)n;
            }
            got = 1;
            if ((size_t)n == want && want >= MIN_FREE && !b->pipe_grown) {
                /* A full default-size pipe: let the child run ahead. */
                fcntl(w->fd, F_SETPIPE_SZ, BIG_PIPE);
                b->pipe_grown = 1;
            }
            if ((size_t)n < want) break;    /* drained for now */
            /* A stream (a process worker's answers) is read on until the
             * pipe is empty too, so a big answer crosses in few wake-ups;
             * the bound keeps one chatty worker from starving the loop,
             * and what a live proc's owner has yet to take (live_out,
             * live_err: poll takes them after each wake-up) bounded. */
            if (((p->stream && b == &p->out) || p->live) && taken >= MAX_WAKE) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) p->incomplete = 1;
        lc_watch_close(loop, w);            /* EOF or error */
        open = 0;
        break;
    }
    if (got && (p->live || (p->stream && b == &p->out)))
        p->on_data(p);                      /* the owner takes the new bytes */
    if (!open) check_done(p);
}

/* Write without letting SIGPIPE kill the host: block it for this thread
 * around the write and consume the one our EPIPE raised. */
static ssize_t write_nosigpipe(int fd, const char *data, size_t len) {
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeset, &old);
    ssize_t n = write(fd, data, len);
    int e = errno;
    if (n < 0 && e == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipeset, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

static void on_input(lc_loop *loop, lc_watch *w, uint32_t events) {
    lc_proc *p = w->data;
    (void)events;
    while (p->input_off < p->input_len) {
        ssize_t n = write_nosigpipe(w->fd, p->input + p->input_off,
                                    p->input_len - p->input_off);
        if (n > 0) {
            p->input_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            p->input_errno = n < 0 ? errno : EPIPE;
            break;
        }
    }
    if (p->stream && !p->input_errno && !p->input_closing)
        lc_watch_del(loop, w);  /* all written: wait for lc_proc_write */
    else
        lc_watch_close(loop, w);    /* all written, or the child closed stdin */
}

int lc_proc_write(lc_proc *p, const char *data, size_t len) {
    if (p->inw.fd < 0) return p->input_errno ? p->input_errno : EPIPE;
    if (p->input_off == p->input_len) p->input_off = p->input_len = 0;
    if (p->input_cap - p->input_len < len) {
        size_t cap = p->input_cap ? 2 * p->input_cap : 4096;
        while (cap - p->input_len < len) cap *= 2;
        char *d = realloc(p->input, cap);
        if (d == NULL) return ENOMEM;
        p->input = d;
        p->input_cap = cap;
    }
    memcpy(p->input + p->input_len, data, len);
    p->input_len += len;
    if (!p->inw.registered) return lc_watch_add(p->loop, &p->inw, EPOLLOUT);
    return 0;
}

/* What was written so far still reaches the child first. */
void lc_proc_close_input(lc_proc *p) {
    if (p->inw.fd >= 0 && p->input_off < p->input_len && !p->input_errno)
        p->input_closing = 1;
    else
        lc_watch_close(p->loop, &p->inw);
}

static void on_timer(lc_loop *loop, lc_timer *t) {
    lc_proc *p = t->data;
    switch (p->phase) {
    case PH_RUN:                        /* the task's deadline */
        p->timed_out = 1;
        if (p->exited) {
            start_drain(p);             /* leader gone, group holds pipes */
        } else if (p->kill_grace > 0) {
            kill_group(p, SIGTERM);
            p->phase = PH_TERM;
            lc_timer_arm(loop, t, lc_now() + p->kill_grace);
        } else {
            kill_group(p, SIGKILL);
            p->phase = PH_KILL;
        }
        break;
    case PH_TERM:                       /* grace over */
        kill_group(p, SIGKILL);
        p->phase = PH_KILL;
        break;
    case PH_DRAIN:                      /* EOF never came */
        if (p->outw.fd >= 0 || p->errw.fd >= 0) p->incomplete = 1;
        lc_watch_close(loop, &p->outw);
        lc_watch_close(loop, &p->errw);
        check_done(p);
        break;
    default:
        break;
    }
}

void lc_proc_terminate(lc_proc *p) {
    if (p->stream || p->exited || p->phase != PH_RUN || p->kill_grace <= 0) {
        lc_proc_kill(p);
        return;
    }
    p->interrupted = 1;
    kill_group(p, SIGTERM);
    p->phase = PH_TERM;
    lc_timer_arm(p->loop, &p->timer, lc_now() + p->kill_grace);
}

void lc_proc_kill(lc_proc *p) {
    if (p->phase == PH_DONE || p->phase == PH_DRAIN) return;
    p->interrupted = 1;
    if (p->stream && !p->exited) {
        /* A worker process: asked first, so that it kills the groups of
         * the programs its task started (they are not in its group). */
        if (p->phase == PH_RUN) {
            kill_group(p, SIGTERM);
            p->phase = PH_TERM;
            lc_timer_arm(p->loop, &p->timer, lc_now() + WORKER_GRACE);
        }
        return;
    }
    lc_timer_cancel(p->loop, &p->timer);
    kill_group(p, SIGKILL);
    if (p->exited)
        start_drain(p);
    else
        p->phase = PH_KILL;
}

/* ---- spawning ------------------------------------------------------------ */

static void describe_spawn_error(const lc_proc_spec *spec, int e, char *buf,
                                 size_t len) {
    struct stat st;
    if (spec->cwd && (e == ENOENT || e == ENOTDIR || e == EACCES) &&
        (stat(spec->cwd, &st) < 0 || !S_ISDIR(st.st_mode) ||
         access(spec->cwd, X_OK) < 0)) {
        int ce = errno ? errno : ENOTDIR;
        if (stat(spec->cwd, &st) == 0 && !S_ISDIR(st.st_mode)) ce = ENOTDIR;
        snprintf(buf, len, "cannot change directory to '%s': %s (%s)",
                 spec->cwd, strerror(ce), lc_errno_name(ce));
        return;
    }
    snprintf(buf, len, "cannot run '%s': %s (%s)", spec->argv[0], strerror(e),
             lc_errno_name(e));
}

static int spawn_child(lc_proc *p, const lc_proc_spec *spec, int in[2],
                       int out[2], int err[2]) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int e;

    if ((e = posix_spawn_file_actions_init(&fa)) != 0) return e;
    if ((e = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return e;
    }
    if (in[0] >= 0)
        e = posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e) e = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (!e && err[1] >= 0) e = posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (!e && spec->cwd) e = posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
    /* Lua's io.open cannot ask for O_CLOEXEC: close every fd >= 3. */
    if (!e) e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);

    sigemptyset(&none);
    sigfillset(&all);
    if (!e) e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                                    POSIX_SPAWN_SETSIGMASK |
                                                    POSIX_SPAWN_SETSIGDEF);
    if (!e) e = posix_spawnattr_setpgroup(&attr, 0);
    if (!e) e = posix_spawnattr_setsigmask(&attr, &none);
    if (!e) e = posix_spawnattr_setsigdefault(&attr, &all);
    if (!e)
        e = posix_spawnp(&p->pid, spec->argv[0], &fa, &attr, spec->argv,
                         spec->envp ? spec->envp : environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return e;
}

/* Into a cgroup: posix_spawn cannot put its child in one before exec
 * (glibc 2.39's posix_spawnattr_setcgroup_np can; Debian 12 has 2.36), and
 * moving it after exec races with its first fork. So the child is made
 * as vfork makes it, already inside: clone3 with CLONE_INTO_CGROUP (Linux
 * 5.7) on x86-64; elsewhere, or where clone3 is refused (valgrind, old
 * kernels, the sanitizer builds, whose vfork interceptors the raw call
 * would bypass), vfork, and the child enters the cgroup first (writing "0"
 * to cgroup.procs moves the writer). That write waits for a global lock
 * (the cgroup threadgroup rwsem, an RCU grace period at times): 114 us a
 * spawn on average here, against 52 us for clone3 and 40 us for a plain
 * vfork. The child then does what spawn_child's attributes and file
 * actions do. It shares our memory until it execs: it only makes system
 * calls, its signals are all blocked until their handlers are reset to
 * the default, and an exec failure comes back through ctx->err, as glibc's
 * posix_spawn returns it. */
typedef struct child_ctx {
    const lc_proc_spec *spec;
    int in0, out1, err1;
    int procs_fd;               /* cgroup.procs to enter by, or -1: inside */
    volatile int err;
    volatile int cg_refused;    /* the cgroup would not take it */
} child_ctx;

static void close_from_3(void) {
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; fd++) close(fd);
}

/* posix_spawnp's search, on the stack: each PATH entry in turn, EACCES
 * remembered; unlike execvpe, a file without a #! line is not handed to
 * /bin/sh (ENOEXEC), as with posix_spawnp. */
static void exec_path(const char *file, char *const argv[], char *const envp[]) {
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return;
    }
    const char *path = getenv("PATH");
    if (path == NULL) path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    int eacces = 0;
    char buf[4096];
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            memcpy(buf, dir, dlen);         /* an empty entry: the cwd */
            size_t at = dlen;
            if (dlen > 0) buf[at++] = '/';
            memcpy(buf + at, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES) eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                     errno != ENODEV && errno != ETIMEDOUT)
                return;
        }
        if (*end == '\0') break;
        dir = end;
    }
    if (eacces) errno = EACCES;
}

__attribute__((noreturn)) static void child_exec(child_ctx *c) {
    const lc_proc_spec *spec = c->spec;
    struct sigaction dfl;
    sigset_t none;
    if (c->procs_fd >= 0 && write(c->procs_fd, "0", 1) != 1) {
        c->cg_refused = 1;
        goto fail;
    }
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL);
    if (setpgid(0, 0) < 0) goto fail;
    if (c->in0 >= 0) {
        if (dup2(c->in0, 0) < 0) goto fail;
    } else {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) goto fail;
        if (fd != 0 && (dup2(fd, 0) < 0 || close(fd) < 0)) goto fail;
    }
    if (dup2(c->out1, 1) < 0) goto fail;
    if (c->err1 >= 0 && dup2(c->err1, 2) < 0) goto fail;
    if (spec->cwd && chdir(spec->cwd) < 0) goto fail;
    close_from_3();
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    exec_path(spec->argv[0], spec->argv, spec->envp ? spec->envp : environ);
fail:
    c->err = errno ? errno : EINVAL;
    _exit(127);
}

#if defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#include <linux/sched.h>
#define LC_CLONE3 1

/* long lc_clone3_vfork(struct clone_args *, size_t, child_ctx *): clone3
 * without a stack of its own, so the child runs on ours as after vfork.
 * In assembly, as glibc's vfork is: the child must not return through
 * our caller's frame, which the parent returns through once the child
 * has exec'd; it calls lc_child_entry from below it instead. Returns the
 * pid, or -errno. */
__attribute__((visibility("hidden"))) long lc_clone3_vfork(struct clone_args *ca, size_t size,
                                                           child_ctx *c);
/* (Hidden: called directly, not through a PLT entry the child would bind.) */
__attribute__((used, noipa, noreturn, visibility("hidden"))) void lc_child_entry(child_ctx *c);
void lc_child_entry(child_ctx *c) { child_exec(c); }
__asm__(".text\n"
        ".globl lc_clone3_vfork\n"
        ".hidden lc_clone3_vfork\n"
        ".type lc_clone3_vfork,@function\n"
        "lc_clone3_vfork:\n"
        "  mov %rdx, %r8\n"             /* the syscall keeps r8 */
        "  mov $435, %eax\n"            /* SYS_clone3 */
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jnz 1f\n"
        "  mov %r8, %rdi\n"
        "  and $-16, %rsp\n"
        "  call lc_child_entry\n"
        "  hlt\n"
        "1: ret\n"
        ".size lc_clone3_vfork, .-lc_clone3_vfork\n");

static atomic_int clone3_refused;
#endif

/* 0 and p->pid; an errno; or -1: the cgroup is not to be had (the caller
 * spawns without one). */
static int spawn_child_cgroup(lc_proc *p, const lc_proc_spec *spec, int in[2],
                              int out[2], int err[2]) {
    child_ctx ctx = {spec, in[0], out[1], err[1], -1, 0, 0};
    sigset_t all, old;
    pid_t pid = -1;
    int e = 0;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
#ifdef LC_CLONE3
    int dirfd;
    if (!atomic_load(&clone3_refused) && (dirfd = lc_reap_cgroup_dir_fd(p->cg)) >= 0) {
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (unsigned)dirfd;
        long r = lc_clone3_vfork(&ca, sizeof ca, &ctx);
        close(dirfd);
        if (r > 0) {
            pid = (pid_t)r;
        } else if (r == -EAGAIN || r == -ENOMEM) {
            e = (int)-r;                        /* vfork would fail alike */
        } else if (r == -ENOSYS || r == -EPERM || r == -E2BIG || r == -EINVAL) {
            /* Not to be had in this process: no clone3 (an old kernel, a
             * seccomp filter), or a clone_args it does not know. */
            atomic_store(&clone3_refused, 1);   /* the vfork way below */
        }
        /* Anything else concerns this cgroup this time (EBUSY, EACCES,
         * EOPNOTSUPP): this spawn takes the vfork way, whose write to
         * cgroup.procs tells a cgroup that refuses us apart, and the next
         * one tries clone3 again. */
    }
#endif
    if (pid < 0 && !e) {
        ctx.procs_fd = lc_reap_cgroup_procs_fd(p->cg);
        if (ctx.procs_fd < 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        pid = vfork();
        if (pid == 0) child_exec(&ctx);
        if (pid < 0) e = errno;
        close(ctx.procs_fd);
    }
    if (!e) e = ctx.err;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0 && e) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (!e) p->pid = pid;
    if (e && ctx.cg_refused) {
        lc_reap_cgroup_refused();
        e = -1;
    }
    return e;
}

int lc_proc_spawn(lc_loop *loop, const lc_proc_spec *spec,
                  lc_proc_done_fn *on_done, lc_proc_done_fn *on_data, void *data,
                  lc_proc **out_p, char *errbuf, size_t errlen) {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int e;
    const char *what = "create pipes for";
    lc_proc *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(errbuf, errlen, "cannot run '%s': out of memory", spec->argv[0]);
        return ENOMEM;
    }
    p->loop = loop;
    p->track_slot = -1;
    p->cg = -1;
    p->pidw.fd = p->outw.fd = p->errw.fd = p->inw.fd = -1;
    p->on_done = on_done;
    p->on_data = on_data;
    p->data = data;
    p->kill_grace = spec->kill_grace;
    p->timeout = spec->timeout;
    p->max_capture = spec->stream ? 0 : spec->max_capture;
    p->live = spec->stream ? 0 : spec->live;
    p->out.spill_fd = p->err.spill_fd = -1;
    if ((e = lc_timer_init(loop, &p->timer, on_timer, p)) != 0) {
        free(p);
        snprintf(errbuf, errlen, "cannot run '%s': out of memory", spec->argv[0]);
        return e;
    }
    p->stream = spec->stream;
    if (spec->input || spec->stream) {
        p->input = malloc(spec->input_len ? spec->input_len : 1);
        if (p->input == NULL) { e = ENOMEM; what = "buffer input for"; goto fail; }
        if (spec->input) memcpy(p->input, spec->input, spec->input_len);
        p->input_len = p->input_cap = spec->input ? spec->input_len : 0;
        if ((e = make_pipe(in)) != 0) goto fail;
    }
    if ((e = make_pipe(out)) != 0) goto fail;
    if (!spec->stream && (e = make_pipe(err)) != 0) goto fail;

    p->t_start = lc_now();
    p->wall_start = lc_wallclock();
    /* A handler that kills what we started (a second Ctrl-C, a worker told
     * to stop) must not run between the child's birth and its tracking:
     * the signals wait until it is in the table. (The child itself starts
     * with an empty mask.) */
    sigset_t stops, old;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGPIPE);
    p->cg = lc_reap_cgroup_get();
    pthread_sigmask(SIG_BLOCK, &stops, &old);
    e = p->cg >= 0 ? spawn_child_cgroup(p, spec, in, out, err) : -1;
    if (e == -1) {
        lc_reap_cgroup_put(p->cg, 1);
        p->cg = -1;
        e = spawn_child(p, spec, in, out, err);
    }
    if (!e) p->track_slot = lc_signals_track(p->pid, p->stream);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        describe_spawn_error(spec, e, errbuf, errlen);
        /* No child, or one that failed before its exec and is reaped:
         * the cgroup is empty without asking cgroup.events. */
        lc_reap_cgroup_put(p->cg, 1);
        p->cg = -1;
        goto fail_described;
    }
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);

    if (pidfd_usable()) {
        p->pidw.fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
        if (p->pidw.fd < 0) e = errno;
    }
    if (p->pidw.fd < 0 && !e) {
        e = lc_timer_init(loop, &p->exit_poll, on_exit_poll, p);
        if (!e) {
            p->polled = 1;
            p->poll_every = 0.001;
            lc_timer_arm(loop, &p->exit_poll, lc_now() + p->poll_every);
        }
    }
    if (e || (p->pidw.fd < 0 && !p->polled)) {
        if (!e) e = EINVAL;
        what = "watch";
        kill(-p->pid, SIGKILL);
        lc_signals_untrack(p->track_slot);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto fail;
    }
    p->pidw.fn = on_exit_event;
    p->outw.fd = out[0];
    p->outw.fn = on_output;
    p->errw.fd = err[0];
    p->errw.fn = on_output;
    p->inw.fd = in[1];
    p->inw.fn = on_input;
    p->pidw.data = p->outw.data = p->errw.data = p->inw.data = p;
    out[0] = err[0] = in[1] = -1;   /* the watchers own them now */

    fcntl(p->outw.fd, F_SETFL, O_NONBLOCK);
    if (p->errw.fd >= 0) fcntl(p->errw.fd, F_SETFL, O_NONBLOCK);
    if (p->pidw.fd >= 0) e = lc_watch_add(loop, &p->pidw, EPOLLIN);
    if (!e) e = lc_watch_add(loop, &p->outw, EPOLLIN);
    if (!e && p->errw.fd >= 0) e = lc_watch_add(loop, &p->errw, EPOLLIN);
    if (!e && p->inw.fd >= 0) {
        fcntl(p->inw.fd, F_SETFL, O_NONBLOCK);
        if (p->input_len > 0 || !p->stream) e = lc_watch_add(loop, &p->inw, EPOLLOUT);
    }
    if (e) {
        what = "watch";
        lc_proc_free(p);    /* kills and reaps */
        snprintf(errbuf, errlen, "cannot %s '%s': %s (%s)", what, spec->argv[0],
                 strerror(e), lc_errno_name(e));
        return e;
    }
    if (spec->timeout > 0) lc_timer_arm(loop, &p->timer, p->t_start + spec->timeout);
    *out_p = p;
    return 0;

fail:
    snprintf(errbuf, errlen, "cannot %s '%s': %s (%s)", what, spec->argv[0],
             strerror(e), lc_errno_name(e));
fail_described:
    lc_reap_cgroup_put(p->cg, 0);
    if (p->polled) lc_timer_release(loop, &p->exit_poll);
    close_fd(&in[0]); close_fd(&in[1]);
    close_fd(&out[0]); close_fd(&out[1]);
    close_fd(&err[0]); close_fd(&err[1]);
    lc_timer_release(loop, &p->timer);
    free(p->input);
    free(p);
    return e;
}

void lc_proc_free(lc_proc *p) {
    if (p == NULL) return;
    if (p->phase != PH_DONE) {
        /* Teardown of a live proc: kill and reap it synchronously. */
        kill_group(p, SIGKILL);
        lc_signals_untrack(p->track_slot);
        reap_leader(p);
        lc_reap_cgroup_put(p->cg, 0);
        p->cg = -1;
    }
    if (p->polled) lc_timer_release(p->loop, &p->exit_poll);
    lc_watch_close(p->loop, &p->pidw);
    lc_watch_close(p->loop, &p->outw);
    lc_watch_close(p->loop, &p->errw);
    lc_watch_close(p->loop, &p->inw);
    lc_timer_release(p->loop, &p->timer);
    lc_mem_realloc(p->out.data, p->out.cap, 0);
    lc_mem_realloc(p->err.data, p->err.cap, 0);
    lc_mem_realloc(p->live_out.data, p->live_out.cap, 0);
    lc_mem_realloc(p->live_err.data, p->live_err.cap, 0);
    if (p->out.spill_fd >= 0) close(p->out.spill_fd);
    if (p->err.spill_fd >= 0) close(p->err.spill_fd);
    free(p->input);
    free(p);
}
