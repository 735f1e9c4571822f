/*
 * pool.h — thread workers for function tasks. Each worker is a pthread
 * that creates and owns one lua_State for the pool's lifetime; no other
 * thread ever touches it. Jobs and results cross as marshalled bytes
 * through two mutex-guarded lists, taken and published in batches; an
 * eventfd tells the owner's event loop that results are waiting.
 *
 * Cancelling (a deadline, or the owner stopping the pool) only sets
 * values the worker reads: its count hook, lc.sleep and lc.run_prog check
 * them and raise a sentinel that the worker turns into a result.
 */
#ifndef LC_POOL_H
#define LC_POOL_H

#include <stddef.h>

#include "lua.h"
#include "marshal.h"
#include "queue.h"

/* Instructions between deadline checks of a running Lua task, here and in
 * the coroutine executor (exported as core.HOOK_COUNT). Any count hook
 * makes Lua 5.4 trace every instruction (pure-Lua loops run about twice
 * as slow), so only a task with a deadline gets one; without it, stopping
 * a run waits for a CPU-bound task to return, while lc.sleep and
 * lc.run_prog still see the stop. */
#define LC_HOOK_COUNT 1000

enum { LC_JOB_OK, LC_JOB_ERROR, LC_JOB_TIMEOUT, LC_JOB_CANCELLED };

/* One task of a batch job: where its answer (or message) is in out. */
typedef struct lc_task_out {
    int status;           /* LC_JOB_* once done */
    double t_start, t_end;            /* lc_now(); 0 if never started */
    size_t off, len;      /* its bytes in the job's out */
} lc_task_out;

/* A job is one task (n == 0: in, status, out, times), or a batch of n
 * tasks run one after another by the same worker (in holds key, args of
 * each in one frame; out holds each task's bytes at tasks[i].off, one
 * frame of nret first answer each, or a message). */
typedef struct lc_job {
    struct lc_job *next;
    long long id;         /* a batch's task i (from 0) has id + i */
    lc_bytes in;          /* key, args */
    int status;           /* LC_JOB_* once done */
    lc_bytes out;         /* OK: nret first answer; otherwise a message */
    double t_start, t_end;            /* lc_now(); 0 if never started */
    int n;                /* > 0: a batch of n tasks */
    int wrap;             /* a batch's in holds key, arg: args is { arg } */
    int all;              /* a batch's answers are one frame in out, from
                           * all_off: nret first answer of each task (nil
                           * for one not OK); else each OK task's own */
    size_t all_off, all_len;
    lc_task_out *tasks;   /* a batch's n tasks */
} lc_job;

/* A FIFO of jobs linked through next (queue.h); its holder owns them. */
typedef LC_QUEUE(lc_job) lc_job_queue;

typedef struct lc_pool lc_pool;

typedef struct lc_pool_config {
    int nthreads;
    const char *fn;       /* the marshalled task function */
    size_t fn_len;
    double timeout;       /* per task, seconds; <= 0: none */
    const char *path, *cpath;   /* package.path / cpath for worker states */
} lc_pool_config;

/* Light userdata identity raised to cancel a task. */
extern const char lc_cancel_sentinel;

lc_pool *lc_pool_new(const lc_pool_config *cfg, int *err);
int lc_pool_fd(const lc_pool *pool);          /* readable: results waiting */
/* Hand over the n jobs of *jobs (which empties) under one lock. */
void lc_pool_submit(lc_pool *pool, lc_job_queue *jobs, size_t n);
/* Append the finished jobs, in the order they finished, to *into. */
void lc_pool_take(lc_pool *pool, lc_job_queue *into);
/* Start no more tasks: the running ones go on; every job or batch task
 * not started yet finishes as cancelled (never started). */
void lc_pool_hold(lc_pool *pool);
/* Cancel everything, join the workers; append every job not yet taken
 * (finished ones first, then the never started, with t_start == 0). */
void lc_pool_stop(lc_pool *pool, lc_job_queue *into);
void lc_pool_free(lc_pool *pool);
void lc_job_free(lc_job *job);
void lc_jobs_free(lc_job *list);              /* a list linked through next */
/* Pools of this process made and not yet freed (core.marshal_set_key
 * refuses to change the key under them). */
int lc_pool_live(void);

/* For code running inside a worker (NULL / no-ops elsewhere). */
int lc_worker_active(void);
/* Seconds until the running task's deadline (HUGE_VAL if none); raises
 * the cancel sentinel if it has passed or the pool is stopping. */
double lc_worker_check(lua_State *L);
/* Sleep up to s seconds, waking early (and raising) at the deadline or
 * when the pool stops. */
void lc_worker_sleep(lua_State *L, double s);

#endif
