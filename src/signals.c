/*
 * signals.c — see signals.h.
 */
#include "signals.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACKED 16384

volatile sig_atomic_t lc_sig_pending = 0;
volatile sig_atomic_t lc_sig_last = 0;
volatile sig_atomic_t lc_sig_hup = 0;

static void (*interrupt_cb)(int sig);
static atomic_int installed;
/* SIGINT/SIGTERM received since the handlers were installed. Only ever
 * grows: acting on the first one (the run's stop path) must not make a
 * second one look like a first. */
static atomic_int interrupts;

/* Slots hold a group id or 0. Lock-free atomics, so the handler may read
 * them while any thread adds or removes one. */
static _Atomic pid_t tracked[MAX_TRACKED];
static atomic_uint cursor;

int lc_signals_track(pid_t pgid) {
    unsigned start = atomic_fetch_add_explicit(&cursor, 1, memory_order_relaxed);
    for (unsigned i = 0; i < MAX_TRACKED; i++) {
        unsigned slot = (start + i) % MAX_TRACKED;
        pid_t expect = 0;
        if (atomic_compare_exchange_strong(&tracked[slot], &expect, pgid))
            return (int)slot;
    }
    return -1;
}

void lc_signals_untrack(int slot) {
    if (slot >= 0) atomic_store(&tracked[slot], 0);
}

void lc_signals_kill_tracked(void) {
    for (unsigned i = 0; i < MAX_TRACKED; i++) {
        pid_t pgid = atomic_load_explicit(&tracked[i], memory_order_relaxed);
        if (pgid > 0) kill(-pgid, SIGKILL);
    }
}

static void handler(int sig) {
    int saved = errno;
    if (sig == SIGHUP) {
        lc_sig_hup = 1;
    } else if (atomic_fetch_add(&interrupts, 1) > 0) {
        /* Asked twice: stop now, but leave no task behind. */
        lc_signals_kill_tracked();
        _exit(128 + sig);
    } else {
        lc_sig_pending = sig;
        lc_sig_last = sig;
        if (interrupt_cb) interrupt_cb(sig);
    }
    errno = saved;
}

static void set_handler(int sig, int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
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
    set_handler(SIGINT, 0);
    set_handler(SIGTERM, 0);
    set_handler(SIGHUP, SA_RESTART);
    atomic_store(&installed, 1);
}

int lc_signals_installed(void) { return atomic_load(&installed); }
