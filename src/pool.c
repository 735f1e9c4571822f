/*
 * pool.c — thread workers, each owning one lua_State. See pool.h.
 */
#include "pool.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lcerror.h"
#include "lualib.h"

#include "host.h"
#include "loop.h"

#define MAX_BATCH 64           /* jobs a worker takes at once */
#define LONG_JOB 0.001         /* s: jobs this long are taken one at a time */
#define PUBLISH_AFTER 0.005    /* seconds a worker may sit on finished jobs */

const char lc_cancel_sentinel = 0;

typedef struct lc_worker {
    struct lc_pool *pool;
    pthread_t thread;
    int started;
    double deadline;           /* of the running task; written by this thread only */
    int cancels;               /* times the running task was told to stop */
} lc_worker;

struct lc_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;       /* jobs queued, or stopping */
    pthread_cond_t wake;       /* stopping: sleeping tasks wake up */
    lc_job_queue jobs;         /* queued, not started */
    size_t njobs;
    lc_job_queue done;         /* finished, not yet taken */
    int stopping;              /* under mu */
    atomic_int cancel;         /* read by hooks without the lock */
    atomic_int hold;           /* no task starts any more (running ones go on) */
    int efd;
    double timeout;
    char *fn;
    size_t fn_len;
    char *path, *cpath;
    int nthreads;
    lc_worker *workers;
    int counted;               /* in live_pools */
};

static _Thread_local lc_worker *current_worker;
static atomic_int live_pools;

int lc_pool_live(void) { return atomic_load(&live_pools); }

/* ---- jobs --------------------------------------------------------------- */

void lc_job_free(lc_job *job) {
    if (job == NULL) return;
    lc_bytes_free(&job->in);
    lc_bytes_free(&job->out);
    free(job->tasks);
    free(job);
}

void lc_jobs_free(lc_job *list) {
    while (list) {
        lc_job *next = list->next;
        lc_job_free(list);
        list = next;
    }
}

static void set_message(lc_job *job, const char *msg, size_t len) {
    lc_bytes_free(&job->out);
    job->out.data = malloc(len ? len : 1);
    if (job->out.data) {
        memcpy(job->out.data, msg, len);
        job->out.len = job->out.cap = len;
    }
}

/* ---- inside a worker ------------------------------------------------------ */

static int cancelled(const lc_worker *w) {
    return atomic_load_explicit(&w->pool->cancel, memory_order_relaxed) != 0;
}

/* May a task start? Not once the pool is stopping or holding. */
static int held(const lc_worker *w) {
    return cancelled(w) || atomic_load_explicit(&w->pool->hold, memory_order_relaxed) != 0;
}

static int raise_cancel(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&lc_cancel_sentinel);
    return lua_error(L);
}

static void deadline_hook(lua_State *L, lua_Debug *ar) {
    lc_worker *w = current_worker;
    (void)ar;
    if (w && (cancelled(w) || lc_now() >= w->deadline)) {
        /* The hook stays armed, so a pcall that swallows the sentinel gets
         * it again at the next check, while a short __close handler still
         * runs to its end. A task that keeps swallowing it is checked on
         * every instruction from the third time on, which also catches a
         * pcall in a loop. A task that returns anyway is timed out. */
        if (++w->cancels == 3) lua_sethook(L, deadline_hook, LUA_MASKCOUNT, 1);
        raise_cancel(L);
    }
}

int lc_worker_active(void) { return current_worker != NULL; }

double lc_worker_check(lua_State *L) {
    lc_worker *w = current_worker;
    if (w == NULL) return HUGE_VAL;
    double left = w->deadline - lc_now();
    if (cancelled(w) || left <= 0) raise_cancel(L);
    return left;
}

/* t must be finite and below the time_t range: callers clamp it. */
static struct timespec abs_monotonic(double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    return ts;
}

/* A sleep is cut to a billion seconds, as the main thread's is: a longer
 * one (1e300, inf) would overflow time_t in abs_monotonic, and the wait
 * would return at once, over and over, while holding the pool's lock. */
#define MAX_SLEEP 1e9

void lc_worker_sleep(lua_State *L, double s) {
    lc_worker *w = current_worker;
    if (!(s <= MAX_SLEEP)) s = MAX_SLEEP;              /* NaN too */
    double until = lc_now() + s;
    if (until > w->deadline) until = w->deadline;
    lc_pool *pool = w->pool;
    pthread_mutex_lock(&pool->mu);
    while (!pool->stopping && lc_now() < until) {
        struct timespec ts = abs_monotonic(until);
        pthread_cond_timedwait(&pool->wake, &pool->mu, &ts);
    }
    pthread_mutex_unlock(&pool->mu);
    lc_worker_check(L);
}

/* os.exit would end every thread of the process. */
static int worker_exit(lua_State *L) {
    return lc_raise(L, "luaconcurrent: os.exit called in a thread worker "
                         "(raise an error to fail the task; isolation = "
                         "\"process\" gives each task a process of its own)");
}

static int msghandler(lua_State *L) {
    if (lua_touserdata(L, 1) == &lc_cancel_sentinel) return 1;
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Under pcall: open the libraries, set the paths, load the function. */
static int setup_state(lua_State *L) {
    lc_pool *pool = lua_touserdata(L, 1);
    luaL_openlibs(L);
    if (lc_state_setup) lc_state_setup(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, pool->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, pool->cpath);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, worker_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    if (lc_unmarshal(L, pool->fn, pool->fn_len) != 1 || !lua_isfunction(L, -1))
        return lc_raise(L, "luaconcurrent: the task function did not arrive");
    lua_setfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.fn");
    lc_marshal_names(L);                   /* built once: answers reuse it */
    lua_setfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.names");
    return 0;
}

/* Under pcall: push the function, then key and args. */
static int job_prepare(lua_State *L) {
    lc_job *job = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.fn");
    if (lc_unmarshal(L, job->in.data, job->in.len) != 2)
        return lc_raise(L, "luaconcurrent: a task did not arrive whole");
    return 3;
}

/* Under pcall: (prefix, error object) -> the message, as a string. */
static int describe_error(lua_State *L) {
    const char *prefix = lua_touserdata(L, 1);
    const char *msg = lua_tostring(L, 2);
    if (msg == NULL) msg = "(error object is not a string)";
    lua_pushfstring(L, "%s%s", prefix, msg);
    return 1;
}

static const char no_memory_message[] =
    "luaconcurrent: not enough memory to report the task's error";

/* prefix + the error object on top, which it replaces; the message stays
 * on top until the caller pops it. Building it allocates, which may fail
 * too: it is done under pcall, so an out-of-memory there gives a fixed
 * message instead of a panic that would abort the whole process. */
static const char *error_message(lua_State *L, const char *prefix, size_t *len) {
    lua_pushcfunction(L, describe_error);              /* err f */
    lua_insert(L, -2);                                 /* f err */
    lua_pushlightuserdata(L, (void *)prefix);
    lua_insert(L, -2);                                 /* f prefix err */
    if (lua_pcall(L, 2, 1, 0) == LUA_OK)
        return lua_tolstring(L, -1, len);              /* a string: no allocation */
    *len = sizeof no_memory_message - 1;
    return no_memory_message;
}

/* The job fails with prefix + the error object on top (popped). */
static void fail_job(lua_State *L, lc_job *job, const char *prefix) {
    size_t len;
    job->status = LC_JOB_ERROR;
    const char *msg = error_message(L, prefix, &len);
    set_message(job, msg, len);
    lua_pop(L, 1);
}

/* Under pcall: nret, first, answer -> one more frame at the end of the
 * job's out (a job's one answer, or a batch task's). */
static int job_pack(lua_State *L) {
    lc_job *job = lua_touserdata(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.names");
    lc_marshal(L, 2, 3, lua_gettop(L), &job->out);
    return 0;
}

static void run_job(lc_worker *w, lua_State *L, const char *setup_error, lc_job *job) {
    lc_pool *pool = w->pool;
    job->t_start = lc_now();
    w->deadline = pool->timeout > 0 ? job->t_start + pool->timeout : HUGE_VAL;
    w->cancels = 0;
    if (setup_error) {
        job->status = LC_JOB_ERROR;
        set_message(job, setup_error, strlen(setup_error));
        job->t_end = lc_now();
        return;
    }
    lua_settop(L, 0);
    lua_pushcfunction(L, msghandler);                      /* 1 */
    lua_pushcfunction(L, job_prepare);
    lua_pushlightuserdata(L, job);
    int st = lua_pcall(L, 1, 3, 1);                        /* msgh fn key args */
    if (st == LUA_OK) {
        /* Any count hook makes Lua 5.4 trace every instruction (about
         * twice as slow on pure-Lua loops), so only a task with a deadline
         * gets one. Without it, stopping the run waits for a CPU-bound
         * task to return; lc.sleep and lc.run_prog still see the stop. */
        if (pool->timeout > 0) lua_sethook(L, deadline_hook, LUA_MASKCOUNT, LC_HOOK_COUNT);
        st = lua_pcall(L, 2, LUA_MULTRET, 1);              /* msgh results... */
        lua_sethook(L, NULL, 0, 0);
    }
    job->t_end = lc_now();
    if (st == LUA_OK) {
        int nret = lua_gettop(L) - 1;
        lua_settop(L, 3);                                  /* msgh first answer */
        lua_pushinteger(L, nret);
        lua_insert(L, 2);                                  /* msgh nret first answer */
        lua_pushcfunction(L, job_pack);
        lua_insert(L, 2);
        lua_pushlightuserdata(L, job);
        lua_insert(L, 3);                                  /* msgh pack job nret first answer */
        if (lua_pcall(L, 4, 0, 0) != LUA_OK) {     /* msgh err */
            fail_job(L, job, "cannot send the task's answer back: ");
        } else if (job->t_end >= w->deadline) {
            job->status = LC_JOB_TIMEOUT;                  /* came back late */
        } else {
            job->status = LC_JOB_OK;
        }
    } else if (lua_touserdata(L, -1) == &lc_cancel_sentinel) {
        job->status = job->t_end >= w->deadline ? LC_JOB_TIMEOUT : LC_JOB_CANCELLED;
    } else {
        fail_job(L, job, "");
    }
    lua_settop(L, 0);
}

/* ---- batch jobs ---- */

/* Under pcall: push key, args of each task of the batch (with wrap, each
 * args is { arg }, made here), then the table the answers are kept in
 * (see run_batch). Everything that allocates before the tasks run is
 * here, so a memory error is the batch's error and never a panic. */
static int batch_prepare(lua_State *L) {
    lc_job *job = lua_touserdata(L, 1);
    int n2 = 2 * job->n;
    lua_settop(L, 0);
    if (lc_unmarshal(L, job->in.data, job->in.len) != n2)
        return lc_raise(L, "luaconcurrent: a task did not arrive whole");
    luaL_checkstack(L, 8, "batch");
    for (int k = 2; job->wrap && k <= n2; k += 2) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, k);
        lua_rawseti(L, -2, 1);
        lua_replace(L, k);
    }
    lua_createtable(L, 3 * job->n, 0);     /* presized: storing never allocates */
    return n2 + 1;
}

/* Append len bytes to the job's out as task t's bytes; on no memory, the
 * task's bytes are empty. */
static void task_bytes(lc_job *job, lc_task_out *t, const char *p, size_t len) {
    lc_bytes *b = &job->out;
    t->off = b->len;
    t->len = 0;
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) return;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    t->len = len;
}

/* A batch task fails with prefix + the error object on top (popped). */
static void fail_task(lua_State *L, lc_job *job, lc_task_out *t, const char *prefix) {
    size_t len;
    t->status = LC_JOB_ERROR;
    const char *msg = error_message(L, prefix, &len);
    task_bytes(job, t, msg, len);
    lua_pop(L, 1);
}


/* Under pcall: the answers table (2) of the batch (1) -> one frame of
 * nret first answer for every task, at the end of out. */
static int pack_all(lua_State *L) {
    lc_job *job = lua_touserdata(L, 1);
    int n3 = 3 * job->n;
    luaL_checkstack(L, n3 + 8, "answers");
    lua_getfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.names");  /* 3 */
    for (int k = 1; k <= n3; k++) lua_rawgeti(L, 2, k);
    lc_marshal(L, 4, n3, 3, &job->out);
    return 0;
}

/* The OK answers kept in the table at ans go into out: one frame for all
 * (the engine reads it at once), or, if one of them cannot be sent, each
 * on its own, and the one that cannot fails. */
static void pack_answers(lua_State *L, lc_job *job, int ans) {
    int any = 0;
    for (int i = 0; i < job->n; i++) any |= job->tasks[i].status == LC_JOB_OK;
    if (!any) return;
    size_t off = job->out.len;
    lua_pushcfunction(L, pack_all);
    lua_pushlightuserdata(L, job);
    lua_pushvalue(L, ans);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
        job->all = 1;
        job->all_off = off;
        job->all_len = job->out.len - off;
        return;
    }
    lua_pop(L, 1);
    job->out.len = off;                                    /* drop a partial frame */
    for (int i = 0; i < job->n; i++) {
        lc_task_out *t = &job->tasks[i];
        if (t->status != LC_JOB_OK) continue;
        lua_pushcfunction(L, job_pack);
        lua_pushlightuserdata(L, job);
        for (int k = 1; k <= 3; k++) lua_rawgeti(L, ans, 3 * i + k);
        off = job->out.len;
        if (lua_pcall(L, 4, 0, 0) != LUA_OK) {             /* err */
            job->out.len = off;
            fail_task(L, job, t, "cannot send the task's answer back: ");
        } else {
            t->off = off;
            t->len = job->out.len - off;
        }
    }
}

/* With a setup_error the worker has no usable state, and L may be NULL
 * (it could not be made): every task fails with that message and L is
 * not touched. */
static void run_batch(lc_worker *w, lua_State *L, const char *setup_error, lc_job *job) {
    lc_pool *pool = w->pool;
    const char *prepare_error = setup_error;
    int base = 2;                                          /* key, args of task 0 */
    /* nret, first, answer of task i (from 0) at 3i+1..3i+3 of the table
     * at ans (from batch_prepare), packed at the end. */
    int ans = 0;
    if (setup_error == NULL) {
        lua_settop(L, 0);
        lua_pushcfunction(L, msghandler);                  /* 1 */
        lua_pushcfunction(L, batch_prepare);
        lua_pushlightuserdata(L, job);
        int st = lua_pcall(L, 1, LUA_MULTRET, 1);          /* msgh err */
        if (st != LUA_OK) {
            lua_settop(L, 1);
            prepare_error = st == LUA_ERRMEM
                ? "luaconcurrent: not enough memory to start the task"
                : "luaconcurrent: a task did not arrive whole";
        } else {
            ans = lua_gettop(L);                           /* msgh k1 a1 .. ans */
        }
    }
    for (int i = 0; i < job->n; i++) {
        lc_task_out *t = &job->tasks[i];
        if (held(w)) {
            t->status = LC_JOB_CANCELLED;                  /* never started */
            continue;
        }
        t->t_start = lc_now();
        w->deadline = pool->timeout > 0 ? t->t_start + pool->timeout : HUGE_VAL;
        w->cancels = 0;
        if (prepare_error) {
            t->status = LC_JOB_ERROR;
            task_bytes(job, t, prepare_error, strlen(prepare_error));
            t->t_end = lc_now();
            continue;
        }
        if (!lua_checkstack(L, 8)) {
            static const char full[] = "luaconcurrent: no stack left for the task";
            t->status = LC_JOB_ERROR;
            task_bytes(job, t, full, sizeof full - 1);
            t->t_end = lc_now();
            continue;
        }
        int top = lua_gettop(L);
        lua_getfield(L, LUA_REGISTRYINDEX, "luaconcurrent.worker.fn");
        lua_pushvalue(L, base + 2 * i);
        lua_pushvalue(L, base + 2 * i + 1);                /* (wrapped in batch_prepare) */
        if (pool->timeout > 0) lua_sethook(L, deadline_hook, LUA_MASKCOUNT, LC_HOOK_COUNT);
        int st = lua_pcall(L, 2, LUA_MULTRET, 1);          /* results... */
        lua_sethook(L, NULL, 0, 0);
        t->t_end = lc_now();
        if (st == LUA_OK) {
            int nret = lua_gettop(L) - top;
            lua_settop(L, top + 2);                        /* first answer */
            lua_rawseti(L, ans, 3 * i + 3);
            lua_rawseti(L, ans, 3 * i + 2);
            lua_pushinteger(L, nret);
            lua_rawseti(L, ans, 3 * i + 1);
            t->status = t->t_end >= w->deadline ? LC_JOB_TIMEOUT : LC_JOB_OK;
        } else if (lua_touserdata(L, -1) == &lc_cancel_sentinel) {
            t->status = t->t_end >= w->deadline ? LC_JOB_TIMEOUT : LC_JOB_CANCELLED;
        } else {
            fail_task(L, job, t, "");
        }
        lua_settop(L, top);
    }
    if (ans) pack_answers(L, job, ans);
    if (L) lua_settop(L, 0);
}

static void publish(lc_pool *pool, lc_job_queue *finished) {
    pthread_mutex_lock(&pool->mu);
    int was_empty = pool->done.head == NULL;
    LC_QUEUE_MOVE(&pool->done, finished, next);
    pthread_mutex_unlock(&pool->mu);
    if (was_empty) {
        uint64_t one = 1;
        while (write(pool->efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
}

static void *worker_main(void *arg) {
    lc_worker *w = arg;
    lc_pool *pool = w->pool;
    current_worker = w;
    w->deadline = HUGE_VAL;

    char *setup_error = NULL;
    lua_State *L = lc_worker_alloc ? lua_newstate(lc_worker_alloc, NULL)
                                   : luaL_newstate();
    if (L == NULL) {
        setup_error = strdup("luaconcurrent: cannot create a worker state: out of memory");
    } else {
        lua_pushcfunction(L, setup_state);
        lua_pushlightuserdata(L, pool);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            setup_error = strdup(msg ? msg : "luaconcurrent: worker setup failed");
        }
        lua_settop(L, 0);
    }

    double job_time = 0;        /* a job's mean run time in the last take */
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (!pool->stopping && pool->jobs.head == NULL)
            pthread_cond_wait(&pool->work, &pool->mu);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->mu);
            break;
        }
        /* Take a fair share, so long tasks still spread over workers; long
         * jobs one at a time, so none waits behind another while a worker
         * is free (a take of several could leave one worker the last two). */
        size_t n = pool->njobs / (2 * (size_t)pool->nthreads);
        if (n < 1 || job_time > LONG_JOB) n = 1;
        if (n > MAX_BATCH) n = MAX_BATCH;
        lc_job_queue batch = LC_QUEUE_EMPTY, finished = LC_QUEUE_EMPTY;
        size_t taken = 0;
        while (taken < n) {
            lc_job *job;
            LC_QUEUE_POP(&pool->jobs, job, next);
            if (job == NULL) break;                /* (njobs says it is not) */
            LC_QUEUE_PUSH(&batch, job, next);
            taken++;
        }
        pool->njobs -= taken;
        pthread_mutex_unlock(&pool->mu);

        double since = lc_now(), took = since;
        for (;;) {
            lc_job *job;
            LC_QUEUE_POP(&batch, job, next);
            if (job == NULL) break;
            if (job->n > 0) {
                run_batch(w, L, setup_error, job);     /* checks each task */
            } else if (held(w)) {
                job->status = LC_JOB_CANCELLED;        /* never started */
            } else {
                run_job(w, L, setup_error, job);
            }
            LC_QUEUE_PUSH(&finished, job, next);
            if (batch.head == NULL || lc_now() - since > PUBLISH_AFTER) {
                publish(pool, &finished);
                since = lc_now();
            }
        }
        if (taken > 0) job_time = (lc_now() - took) / (double)taken;
    }
    current_worker = NULL;
    if (L) lua_close(L);
    free(setup_error);
    return NULL;
}

/* ---- the owner's side ------------------------------------------------------- */

static char *dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

lc_pool *lc_pool_new(const lc_pool_config *cfg, int *err) {
    lc_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    pool->efd = -1;
    pool->nthreads = cfg->nthreads > 0 ? cfg->nthreads : 1;
    pool->timeout = cfg->timeout;
    pool->fn = dup_bytes(cfg->fn, cfg->fn_len);
    pool->fn_len = cfg->fn_len;
    pool->path = dup_bytes(cfg->path, strlen(cfg->path));
    pool->cpath = dup_bytes(cfg->cpath, strlen(cfg->cpath));
    pool->workers = calloc((size_t)pool->nthreads, sizeof *pool->workers);
    atomic_init(&pool->cancel, 0);
    atomic_init(&pool->hold, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (!pool->fn || !pool->path || !pool->cpath || !pool->workers) {
        *err = ENOMEM;
        lc_pool_free(pool);
        return NULL;
    }
    pool->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->efd < 0) {
        *err = errno;
        lc_pool_free(pool);
        return NULL;
    }
    /* Workers start with every signal blocked: handlers (Ctrl-C) must run
     * on the thread whose wait they interrupt, never in a worker. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = 0;
    for (int i = 0; i < pool->nthreads && !e; i++) {
        lc_worker *w = &pool->workers[i];
        w->pool = pool;
        e = pthread_create(&w->thread, NULL, worker_main, w);
        if (!e) w->started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_fetch_add(&live_pools, 1);      /* (lc_pool_free takes it off) */
    pool->counted = 1;
    if (e) {
        *err = e;
        lc_pool_free(pool);                    /* stops what started */
        return NULL;
    }
    return pool;
}

int lc_pool_fd(const lc_pool *pool) { return pool->efd; }

void lc_pool_submit(lc_pool *pool, lc_job_queue *jobs, size_t n) {
    pthread_mutex_lock(&pool->mu);
    LC_QUEUE_MOVE(&pool->jobs, jobs, next);
    pool->njobs += n;
    if (n > 1)
        pthread_cond_broadcast(&pool->work);
    else
        pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->mu);
}

void lc_pool_take(lc_pool *pool, lc_job_queue *into) {
    uint64_t count;
    /* Reset the eventfd before taking, so a result published after this
     * point writes it again. */
    while (read(pool->efd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&pool->mu);
    LC_QUEUE_MOVE(into, &pool->done, next);
    pthread_mutex_unlock(&pool->mu);
}

void lc_pool_hold(lc_pool *pool) {
    atomic_store(&pool->hold, 1);
}

void lc_pool_stop(lc_pool *pool, lc_job_queue *into) {
    atomic_store(&pool->cancel, 1);
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; pool->workers && i < pool->nthreads; i++) {
        if (pool->workers[i].started) pthread_join(pool->workers[i].thread, NULL);
        pool->workers[i].started = 0;
    }
    /* Workers are gone: no lock needed. Finished first, then unstarted. */
    LC_QUEUE_MOVE(into, &pool->done, next);
    LC_QUEUE_MOVE(into, &pool->jobs, next);
    pool->njobs = 0;
}

void lc_pool_free(lc_pool *pool) {
    if (pool == NULL) return;
    lc_job_queue left = LC_QUEUE_EMPTY;
    lc_pool_stop(pool, &left);
    lc_jobs_free(left.head);
    if (pool->counted) atomic_fetch_sub(&live_pools, 1);
    if (pool->efd >= 0) close(pool->efd);
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    free(pool->workers);
    free(pool->fn);
    free(pool->path);
    free(pool->cpath);
    free(pool);
}
