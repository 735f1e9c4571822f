/*
 * loop.c — epoll plus a timer heap. See loop.h.
 */
#include "loop.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LC_MAX_EVENTS 256

struct lc_loop {
    int epfd;
    size_t nwatch;          /* registered watchers */
    lc_timer **heap;        /* min-heap on ->when */
    size_t nheap, capheap;
    size_t nslots;          /* timers initialised: the heap never outgrows it */
};

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double lc_now(void) { return clock_seconds(CLOCK_MONOTONIC); }
double lc_wallclock(void) { return clock_seconds(CLOCK_REALTIME); }

lc_loop *lc_loop_new(void) {
    lc_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int e = errno;
        free(loop);
        errno = e;
        return NULL;
    }
    return loop;
}

void lc_loop_free(lc_loop *loop) {
    if (loop == NULL) return;
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

int lc_watch_add(lc_loop *loop, lc_watch *w, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0) return errno;
    w->registered = 1;
    loop->nwatch++;
    return 0;
}

void lc_watch_del(lc_loop *loop, lc_watch *w) {
    if (!w->registered) return;
    /* Explicit DEL: close alone would leave the registration alive if the
     * fd had been duplicated. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->registered = 0;
    loop->nwatch--;
}

void lc_watch_close(lc_loop *loop, lc_watch *w) {
    if (w->fd < 0) return;
    lc_watch_del(loop, w);
    close(w->fd);
    w->fd = -1;
}

/* ---- timer heap ---------------------------------------------------- */

static void heap_set(lc_loop *loop, size_t i, lc_timer *t) {
    loop->heap[i] = t;
    t->pos = i + 1;
}

static void heap_up(lc_loop *loop, size_t i) {
    lc_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when) break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(lc_loop *loop, size_t i) {
    lc_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap) break;
        if (child + 1 < loop->nheap &&
            loop->heap[child + 1]->when < loop->heap[child]->when)
            child++;
        if (t->when <= loop->heap[child]->when) break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

void lc_timer_cancel(lc_loop *loop, lc_timer *t) {
    if (t->pos == 0) return;
    size_t i = t->pos - 1;
    t->pos = 0;
    lc_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap) return;
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->pos - 1);
}

int lc_timer_init(lc_loop *loop, lc_timer *t, lc_timer_fn *fn, void *data) {
    if (loop->nslots == loop->capheap) {
        size_t cap = loop->capheap ? 2 * loop->capheap : 64;
        lc_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (h == NULL) return ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    loop->nslots++;
    t->pos = 0;
    t->fn = fn;
    t->data = data;
    return 0;
}

void lc_timer_release(lc_loop *loop, lc_timer *t) {
    lc_timer_cancel(loop, t);
    loop->nslots--;
}

/* Never fails: lc_timer_init reserved this timer's slot. */
void lc_timer_arm(lc_loop *loop, lc_timer *t, double when) {
    lc_timer_cancel(loop, t);
    t->when = when;
    heap_set(loop, loop->nheap++, t);
    heap_up(loop, loop->nheap - 1);
}

size_t lc_timer_count(const lc_loop *loop) { return loop->nheap; }

static int fire_timers(lc_loop *loop) {
    int n = 0;
    double now = lc_now();
    while (loop->nheap > 0 && loop->heap[0]->when <= now) {
        lc_timer *t = loop->heap[0];
        lc_timer_cancel(loop, t);
        t->fn(loop, t);
        n++;
    }
    return n;
}

int lc_loop_run_once(lc_loop *loop, double max_wait) {
    return lc_loop_run_once_mask(loop, max_wait, NULL);
}

int lc_loop_run_once_mask(lc_loop *loop, double max_wait, const sigset_t *mask) {
    struct epoll_event evs[LC_MAX_EVENTS];
    /* Nothing to wait for and no limit: waiting would never end. */
    if (loop->nwatch == 0 && loop->nheap == 0 && max_wait < 0) return 0;

    double wait = max_wait;
    if (loop->nheap > 0) {
        double until = loop->heap[0]->when - lc_now();
        if (until < 0) until = 0;
        if (wait < 0 || until < wait) wait = until;
    }
    int ms;
    if (wait < 0) ms = -1;
    else if (wait > 86400.0) ms = 86400 * 1000;
    else ms = (int)ceil(wait * 1000.0);

    int n = mask ? epoll_pwait(loop->epfd, evs, LC_MAX_EVENTS, ms, mask)
                 : epoll_wait(loop->epfd, evs, LC_MAX_EVENTS, ms);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        lc_watch *w = evs[i].data.ptr;
        /* an earlier callback in this batch may have closed it */
        if (w->registered) w->fn(loop, w, evs[i].events);
    }
    return n + fire_timers(loop);
}
