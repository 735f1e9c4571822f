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
    } else if (lc_sig_pending) {
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

void lc_signals_install(void (*on_interrupt)(int sig)) {
    struct sigaction sa;
    interrupt_cb = on_interrupt;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;        /* no SA_RESTART: blocking waits return EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    atomic_store(&installed, 1);
}

int lc_signals_installed(void) { return atomic_load(&installed); }
