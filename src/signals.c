/*
 * signals.c — see signals.h.
 */
#include "signals.h"
#include "reap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED 16384
/* A second SIGINT/SIGTERM this soon after the first is the same request
 * delivered twice, not a second one: coreutils timeout(1) signals its
 * child and then its process group, `kill 0` and systemd's stop reach the
 * runner both directly and through its group, microseconds apart. */
#define REPEAT_WINDOW_NS 250000000LL

volatile sig_atomic_t lc_sig_pending = 0;
volatile sig_atomic_t lc_sig_last = 0;
volatile sig_atomic_t lc_sig_hup = 0;

static void (*interrupt_cb)(int sig);
static atomic_int installed;
/* CLOCK_MONOTONIC of the first SIGINT/SIGTERM since the handlers were
 * installed, in ns; 0 before it. Set once, never reset: acting on the
 * first one (the run's stop path) must not make a second one look like a
 * first. Taken by compare-and-swap, because the handler may run on two
 * threads at once: our workers block every signal (pool.c), but a host
 * program's threads need not, and timeout(1)'s doubled SIGTERM can reach
 * one thread while the other is still in the handler. (A lock-free
 * atomic: async-signal-safe.) */
static _Atomic long long first_ns;
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "first_ns must be lock-free");

static long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);   /* async-signal-safe */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Slots hold a group id (a worker process's as its negative) or 0.
 * Lock-free atomics, so the handler may read them while any thread adds or
 * removes one. */
static _Atomic pid_t tracked[MAX_TRACKED];
static atomic_uint cursor;
static pthread_once_t exit_hook_once = PTHREAD_ONCE_INIT;
static pid_t exit_hook_pid;

/* (A child forked by a host after that inherits the table: it must not
 * kill its parent's tasks when it exits.) */
static void kill_at_exit(void) {
    if (getpid() == exit_hook_pid) lc_signals_kill_tracked();
}

/* The process may end in ways that run no run's cleanup: os.exit in a
 * callback or a coroutine task, a C module calling exit(). Whatever is
 * tracked then is killed. (In the module, glibc runs this at dlclose too.) */
static void register_exit_hook(void) {
    exit_hook_pid = getpid();
    atexit(kill_at_exit);
}

int lc_signals_track(pid_t pgid, int worker) {
    pthread_once(&exit_hook_once, register_exit_hook);
    pid_t v = worker ? -pgid : pgid;
    unsigned start = atomic_fetch_add_explicit(&cursor, 1, memory_order_relaxed);
    for (unsigned i = 0; i < MAX_TRACKED; i++) {
        unsigned slot = (start + i) % MAX_TRACKED;
        pid_t expect = 0;
        if (atomic_compare_exchange_strong(&tracked[slot], &expect, v))
            return (int)slot;
    }
    return -1;
}

void lc_signals_untrack(int slot) {
    if (slot >= 0) atomic_store(&tracked[slot], 0);
}

/* A worker process is asked (SIGTERM to it alone) rather than killed: its
 * handler kills the groups it started, then its own group. */
void lc_signals_kill_tracked(void) {
    lc_reap_kill_all();             /* tasks' cgroups: what left the groups */
    for (unsigned i = 0; i < MAX_TRACKED; i++) {
        pid_t v = atomic_load_explicit(&tracked[i], memory_order_relaxed);
        if (v > 0) kill(-v, SIGKILL);
        else if (v < 0) kill(-v, SIGTERM);
    }
}

/* Kill what we started, then end by `sig` (its default action). */
static void die_by(int sig) {
    struct sigaction dfl;
    sigset_t set;
    lc_signals_kill_tracked();
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig);               /* (if it did not end us) */
}

static void handler(int sig) {
    int saved = errno;
    if (sig == SIGHUP) {
        lc_sig_hup = 1;
    } else if (sig == SIGPIPE) {
        /* Our own stdout is gone (`luaconcurrent s.lua | head -1`): end as
         * the default action would, leaving no task behind. Writes to a
         * task's stdin never get here: they block SIGPIPE (proc.c). */
        die_by(sig);
    } else {
        long long now = mono_ns(), first = 0;
        if (now == 0) now = 1;                  /* 0 means "none yet" */
        if (atomic_compare_exchange_strong(&first_ns, &first, now)) {
            lc_sig_pending = sig;
            lc_sig_last = sig;
            if (interrupt_cb) interrupt_cb(sig);
        } else if (now - first >= REPEAT_WINDOW_NS) {
            /* Asked twice: stop now, but leave no task behind. Within the
             * window it is the first request delivered again (now may even
             * be before first, read earlier on another thread), which the
             * run is already acting on, keeping every partial result. */
            lc_signals_kill_tracked();
            _exit(128 + sig);
        }
    }
    errno = saved;
}

static void handler(int sig);

/* only_if_default: unless the disposition is the default (or ours), leave
 * it: a host that ignores SIGPIPE keeps that. */
static void set_handler(int sig, void (*fn)(int), int flags, int only_if_default) {
    struct sigaction sa, old;
    if (only_if_default && (sigaction(sig, NULL, &old) < 0 ||
                            (old.sa_handler != SIG_DFL && old.sa_handler != handler)))
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    /* One handler at a time: a second signal waits for the first's end. */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

void lc_signals_install(void (*on_interrupt)(int sig)) {
    interrupt_cb = on_interrupt;
    /* No SA_RESTART for SIGINT/SIGTERM: a blocking read in plain Lua code
     * returns (EINTR) so the interrupt hook can run. SIGHUP only asks runs
     * to drain: restart, so a script's io.read does not fail because of
     * it (epoll_pwait and sleeps return EINTR regardless). */
    set_handler(SIGINT, handler, 0, 0);
    set_handler(SIGTERM, handler, 0, 0);
    set_handler(SIGHUP, handler, SA_RESTART, 0);
    set_handler(SIGPIPE, handler, SA_RESTART, 1);
    atomic_store(&installed, 1);
}

int lc_signals_installed(void) { return atomic_load(&installed); }

/* ---- worker processes --------------------------------------------------- */

static void worker_handler(int sig) {
    lc_signals_kill_tracked();      /* the programs its tasks started */
    if (getpgrp() == getpid())
        kill(0, SIGKILL);           /* its own group, itself included */
    die_by(sig);
}

void lc_signals_worker(void) {
    set_handler(SIGINT, worker_handler, 0, 0);
    set_handler(SIGTERM, worker_handler, 0, 0);
    set_handler(SIGPIPE, worker_handler, 0, 1);
    /* Tied to the runner's life: if the thread that spawned us (the run's)
     * ends, even by SIGKILL, we get SIGTERM and take our children along. If
     * it ended before this call, the frame pipe is at EOF and we end when
     * we look for our first task. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}
