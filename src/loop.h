/*
 * loop.h — the event loop: epoll for fds (pipes, pidfds, eventfds) and a
 * binary heap of timers on CLOCK_MONOTONIC.
 *
 * Watchers and timers are intrusive: their owner embeds them and keeps
 * them alive while they are registered, so the loop never holds a pointer
 * to freed memory and cancelling is O(log n) with no lazy deletion.
 */
#ifndef LC_LOOP_H
#define LC_LOOP_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>

typedef struct lc_loop lc_loop;
typedef struct lc_watch lc_watch;
typedef struct lc_timer lc_timer;

typedef void lc_watch_fn(lc_loop *loop, lc_watch *w, uint32_t events);
typedef void lc_timer_fn(lc_loop *loop, lc_timer *t);

struct lc_watch {
    int fd;             /* -1 when not open */
    int registered;     /* in the epoll set */
    lc_watch_fn *fn;
    void *data;
};

struct lc_timer {
    double when;        /* lc_now() seconds */
    size_t pos;         /* index in the heap + 1; 0 = not armed */
    lc_timer_fn *fn;
    void *data;
};

/* Seconds on CLOCK_MONOTONIC (deadlines) and CLOCK_REALTIME (reports). */
double lc_now(void);
double lc_wallclock(void);

lc_loop *lc_loop_new(void);         /* NULL with errno set on failure */
void lc_loop_free(lc_loop *loop);   /* the owner unregisters everything first */

int lc_watch_add(lc_loop *loop, lc_watch *w, uint32_t events); /* 0 or errno */
void lc_watch_del(lc_loop *loop, lc_watch *w);    /* unregister, keep the fd */
void lc_watch_close(lc_loop *loop, lc_watch *w);  /* unregister and close fd */

/* A timer reserves its heap slot once, so arming never allocates. */
int lc_timer_init(lc_loop *loop, lc_timer *t, lc_timer_fn *fn, void *data);
void lc_timer_release(lc_loop *loop, lc_timer *t);  /* cancels too */
void lc_timer_arm(lc_loop *loop, lc_timer *t, double when);
void lc_timer_cancel(lc_loop *loop, lc_timer *t);
size_t lc_timer_count(const lc_loop *loop);

/* Wait for events for at most max_wait seconds (< 0: no limit beyond the
 * next timer), dispatch them and any expired timers. Returns the number
 * of events and timers dispatched, or -1 with errno (EINTR when a signal
 * handler ran: the caller returns to Lua so a pending hook can fire). */
int lc_loop_run_once(lc_loop *loop, double max_wait);
/* The same, waiting with the signal mask `mask` (epoll_pwait), so a
 * signal blocked until then cannot slip in between a check and the wait. */
int lc_loop_run_once_mask(lc_loop *loop, double max_wait, const sigset_t *mask);

#endif
