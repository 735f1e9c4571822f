/*
 * core_pool.c — thread workers for function tasks, bound to a loop:
 *
 *   loop:pool_start(fn_string, nthreads, timeout, path, cpath)
 *        fn_string from core.marshal_string(fn)
 *   loop:pool_hold()                    no task starts any more (halt)
 *   loop:submit(key, args) -> id        handed over at the next poll
 *   loop:submit_batch(wrap, list, at, k) -> id
 *        the k tasks list[at + 1 .. at + 3k], each index, key, args, in
 *        one job, run one after another by one worker; task i (from 1)
 *        has id + i - 1. One record for all k (below). With wrap true,
 *        each args is the task's arg and the worker passes { arg } (the
 *        table is not made and marshalled here).
 *   records through loop:poll: {id =, fn = true, status = "ok" | "error" |
 *        "timeout" | "cancelled", nret =, first =, answer = | error =,
 *        limit = (the timeout, if any), time_start =, time_end =, time_run =}
 *   a batch's record: {id =, fn = true, batch = k, limit =, vals =,
 *        times = [, status =, error =]}: vals holds nret, first, answer
 *        of each OK task at 3i-2 .. 3i, times its time_start, time_end,
 *        time_run at the same places (a task that never started has
 *        none); status and error (arrays of k) exist only when some task
 *        is not OK, status then filled with "ok" for the others
 *   core.worker_check() -> seconds left (inside a worker; nil elsewhere)
 *   core.cancel_sentinel() -> the light userdata a cancelled task raises
 *
 * The pool plugs into the loop as its extension (lc_core_ext, bindings.h): the
 * loop calls it before waiting, asks whether records or tasks are pending,
 * has it append its records, and stops and frees it with itself. The
 * extension owns the pool and every job until the job's record is in a
 * poll's list.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "lcerror.h"

#include "bindings.h"
#include "pool.h"

typedef struct {
    lc_core_ext ext;            /* first: the loop holds &ext */
    lc_loop *loop;
    lc_pool *pool;              /* NULL once stopped */
    lc_watch w;                 /* the pool's eventfd */
    lc_job_queue pend;          /* submitted, not yet handed to the pool */
    size_t npend;
    lc_job_queue fdone;         /* finished, not yet returned by poll */
    size_t nfn;                 /* jobs submitted and not returned */
    double timeout;             /* every job's limit; <= 0: none */
} pool_ext;

static void on_pool_ready(lc_loop *loop, lc_watch *w, uint32_t events) {
    pool_ext *px = w->data;
    (void)loop;
    (void)events;
    lc_pool_take(px->pool, &px->fdone);
}

static void px_flush(lc_core_ext *x) {
    pool_ext *px = (pool_ext *)x;
    if (px->pend.head == NULL || px->pool == NULL) return;
    lc_pool_submit(px->pool, &px->pend, px->npend);
    px->npend = 0;
}

static int px_ready(const lc_core_ext *x) {
    return ((const pool_ext *)x)->fdone.head != NULL;
}

static size_t px_pending(const lc_core_ext *x) {
    return ((const pool_ext *)x)->nfn;
}

/* Stop the workers: finished and unstarted jobs join the done list. */
static void px_stop(lc_core_ext *x) {
    pool_ext *px = (pool_ext *)x;
    if (px->pool == NULL) return;
    lc_watch_del(px->loop, &px->w);
    lc_pool_stop(px->pool, &px->fdone);
    LC_QUEUE_MOVE(&px->fdone, &px->pend, next);
    px->npend = 0;
    lc_pool_free(px->pool);
    px->pool = NULL;
}

static void px_free(lc_core_ext *x) {
    pool_ext *px = (pool_ext *)x;
    px_stop(x);
    lc_jobs_free(px->fdone.head);
    free(px);
}

static const char *const job_status[] = {"ok", "error", "timeout", "cancelled"};

/* Under pcall: the answer bytes -> nret, first, answer fields of rec. */
static int unpack_answer(lua_State *L) {
    lc_job *job = lua_touserdata(L, 2);
    lua_settop(L, 1);                                  /* rec */
    int n = lc_unmarshal(L, job->out.data, job->out.len);
    if (n != 3) return lc_raise(L, "luaconcurrent: an answer did not arrive whole");
    lua_setfield(L, 1, "answer");
    lua_setfield(L, 1, "first");
    lua_setfield(L, 1, "nret");
    return 0;
}

static void push_job_record(lua_State *L, const pool_ext *px, lc_job *job,
                            double wall_offset) {
    lua_createtable(L, 0, 11);                         /* rec */
    lc_set_int(L, "id", job->id);
    lc_set_bool(L, "fn", 1);
    int status = job->status;
    if (job->t_start == 0) status = LC_JOB_CANCELLED;  /* never started */
    if (status == LC_JOB_OK) {
        lua_pushcfunction(L, unpack_answer);
        lua_pushvalue(L, -2);
        lua_pushlightuserdata(L, job);
        if (lua_pcall(L, 2, 0, 0) != LUA_OK) {       /* rec err */
            status = LC_JOB_ERROR;
            lua_setfield(L, -2, "error");
        }
    } else if (status == LC_JOB_ERROR && job->out.data) {
        lua_pushlstring(L, job->out.data, job->out.len);
        lua_setfield(L, -2, "error");
    }
    lc_set_str(L, "status", job_status[status]);
    if (px->timeout > 0) lc_set_num(L, "limit", px->timeout);
    if (job->t_start > 0) {
        double end = job->t_end > 0 ? job->t_end : lc_now();
        lc_set_num(L, "time_start", wall_offset + job->t_start);
        lc_set_num(L, "time_end", wall_offset + end);
        lc_set_num(L, "time_run", end - job->t_start);
    }
}

/* Under pcall: answer bytes (lightuserdata 4, length 5) holding `count`
 * tasks' nret first answer -> vals (2) from slot base (3); with a job
 * (6), only its OK tasks' slots are set. */
static int unpack_vals(lua_State *L) {
    lua_Integer base = lua_tointeger(L, 3);
    const char *p = lua_touserdata(L, 4);
    size_t len = (size_t)lua_tointeger(L, 5);
    const lc_job *job = lua_touserdata(L, 6);
    int count = job ? job->n : 1;
    lua_settop(L, 2);
    luaL_checkstack(L, 3 * count + 8, "answers");
    if (lc_unmarshal(L, p, len) != 3 * count)
        return lc_raise(L, "luaconcurrent: an answer did not arrive whole");
    for (int k = count - 1; k >= 0; k--) {
        int ok = job == NULL
            || (job->tasks[k].status == LC_JOB_OK && job->tasks[k].t_start != 0);
        for (int f = 2; f >= 0; f--) {
            if (ok) lua_rawseti(L, 2, base + 3 * k + f);
            else lua_pop(L, 1);
        }
    }
    return 0;
}

/* Run unpack_vals under pcall; on failure the error message is on top. */
static int unpack_into(lua_State *L, int vals, lua_Integer base, const char *p,
                       size_t len, const lc_job *job) {
    lua_pushcfunction(L, unpack_vals);
    lua_pushnil(L);
    lua_pushvalue(L, vals);
    lua_pushinteger(L, base);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)len);
    lua_pushlightuserdata(L, (void *)job);
    return lua_pcall(L, 6, 0, 0);
}

/* rec.status / rec.error, made at the first task that needs them (status
 * filled with "ok" for every task); left on the stack. */
static void rec_array(lua_State *L, int rec, const char *k, int n, int fill_ok) {
    if (lua_getfield(L, rec, k) != LUA_TNIL) return;
    lua_pop(L, 1);
    lua_createtable(L, n, 0);
    for (int i = 1; fill_ok && i <= n; i++) {
        lua_pushliteral(L, "ok");
        lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, rec, k);
}

/* Task i of rec did not end OK: its status, and its error message (on top
 * of the stack, popped) if it has one. */
static void mark_task(lua_State *L, int rec, int n, lua_Integer i, int status, int has_err) {
    if (has_err) {
        rec_array(L, rec, "error", n, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, i);
        lua_pop(L, 1);
    }
    rec_array(L, rec, "status", n, 1);
    lua_pushstring(L, job_status[status]);
    lua_rawseti(L, -2, i);
    lua_pop(L, 1);
}

static void push_times(lua_State *L, int times, lua_Integer i, const lc_task_out *t,
                       double wall_offset) {
    double end = t->t_end > 0 ? t->t_end : lc_now();
    lua_pushnumber(L, wall_offset + t->t_start);
    lua_rawseti(L, times, 3 * i - 2);
    lua_pushnumber(L, wall_offset + end);
    lua_rawseti(L, times, 3 * i - 1);
    lua_pushnumber(L, end - t->t_start);
    lua_rawseti(L, times, 3 * i);
}

/* A batch record holds its n tasks in flat arrays rather than one table
 * per field: vals = nret, first, answer of each OK task (3 slots a task),
 * times = time_start, time_end, time_run (3 a task); status and error
 * exist only when some task is not OK. Per task that is one rawseti a
 * value and no field lookup, which is what a batch of trivial tasks
 * costs the run's thread. */
static void push_batch_record(lua_State *L, const pool_ext *px, lc_job *job,
                              double wall_offset) {
    int n = job->n;
    lua_createtable(L, 0, 9);                          /* rec */
    int rec = lua_gettop(L);
    lc_set_int(L, "id", job->id);
    lc_set_bool(L, "fn", 1);
    lc_set_int(L, "batch", n);
    if (px->timeout > 0) lc_set_num(L, "limit", px->timeout);
    lua_createtable(L, 3 * n, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, rec, "vals");
    int vals = lua_gettop(L);
    lua_createtable(L, 3 * n, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, rec, "times");
    int times = lua_gettop(L);
    int all_failed = job->all
        && unpack_into(L, vals, 1, job->out.data + job->all_off, job->all_len, job) != LUA_OK;
    for (int k = 0; k < n; k++) {
        lc_task_out *t = &job->tasks[k];
        lua_Integer i = k + 1;
        int status = t->t_start == 0 ? LC_JOB_CANCELLED : t->status;  /* never started */
        if (status == LC_JOB_OK && all_failed) {
            lua_pushvalue(L, times + 1);               /* the one message */
            mark_task(L, rec, n, i, LC_JOB_ERROR, 1);
        } else if (status == LC_JOB_OK && !job->all) {
            if (unpack_into(L, vals, 3 * i - 2, job->out.data + t->off, t->len, NULL) != LUA_OK)
                mark_task(L, rec, n, i, LC_JOB_ERROR, 1);
        } else if (status == LC_JOB_ERROR) {
            lua_pushlstring(L, t->len ? job->out.data + t->off : "", t->len);
            mark_task(L, rec, n, i, status, 1);
        } else if (status != LC_JOB_OK) {
            mark_task(L, rec, n, i, status, 0);
        }
        if (t->t_start > 0) push_times(L, times, i, t, wall_offset);
    }
    lua_settop(L, rec);
}

/* Records of finished jobs, appended to the list on top; a job leaves
 * fdone only once its record is in the list. */
static void px_push_records(lua_State *L, lc_core_ext *x) {
    pool_ext *px = (pool_ext *)x;
    lua_Integer i = (lua_Integer)lua_rawlen(L, -1);
    double wall_offset = lc_wallclock() - lc_now();
    while (px->fdone.head) {
        lc_job *job = px->fdone.head;
        if (job->n > 0)
            push_batch_record(L, px, job, wall_offset);
        else
            push_job_record(L, px, job, wall_offset);
        lua_rawseti(L, -2, ++i);
        px->nfn -= job->n > 0 ? (size_t)job->n : 1;
        LC_QUEUE_POP(&px->fdone, job, next);      /* the same job: the head */
        lc_job_free(job);
    }
}

static const lc_core_ext_ops pool_ops = {
    px_flush, px_ready, px_pending, px_push_records, px_stop, px_free,
};

static pool_ext *check_pool(lua_State *L, loop_ud *u) {
    if (u->ext == NULL || u->ext->ops != &pool_ops)
        lc_raise(L, "luaconcurrent: no thread workers");
    return (pool_ext *)u->ext;
}

/* loop:pool_start(fn_string, nthreads, timeout, path, cpath) */
static int l_pool_start(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    size_t fn_len;
    const char *fn = luaL_checklstring(L, 2, &fn_len);
    lua_Integer nthreads = luaL_checkinteger(L, 3);
    lc_pool_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (nthreads > INT_MAX)                          /* before the cast */
        return lc_raise(L, "luaconcurrent: too many thread workers (%I)",
                        (LUAI_UACINT)nthreads);
    cfg.nthreads = (int)nthreads;
    cfg.timeout = luaL_optnumber(L, 4, 0);
    cfg.path = luaL_checkstring(L, 5);
    cfg.cpath = luaL_checkstring(L, 6);
    cfg.fn = fn;
    cfg.fn_len = fn_len;
    if (u->ext) return lc_raise(L, "luaconcurrent: workers already started");
    lc_marshal_names(L);                               /* one map for the run */
    lua_setiuservalue(L, 1, LC_UV_NAMES);
    u = lc_core_check_loop(L);                         /* again: that allocated */
    if (u->ext) return lc_raise(L, "luaconcurrent: workers already started");
    pool_ext *px = calloc(1, sizeof *px);
    if (px == NULL) return lc_raise(L, "luaconcurrent: out of memory");
    int e = 0;
    px->pool = lc_pool_new(&cfg, &e);
    if (px->pool == NULL) {
        free(px);
        return lc_raise(L, "luaconcurrent: cannot start %d thread workers: %s",
                          cfg.nthreads, strerror(e));
    }
    px->ext.ops = &pool_ops;
    px->loop = u->loop;
    px->timeout = cfg.timeout;
    px->w.fd = lc_pool_fd(px->pool);
    px->w.fn = on_pool_ready;
    px->w.data = px;
    if ((e = lc_watch_add(u->loop, &px->w, EPOLLIN)) != 0) {
        lc_pool_free(px->pool);
        free(px);
        return lc_raise(L, "luaconcurrent: cannot watch thread workers: %s", strerror(e));
    }
    u->ext = &px->ext;
    return 0;
}

/* loop:pool_hold(): no task of the pool starts any more (halt); the ones
 * running go on; the others come back as "cancelled" records. */
static int l_pool_hold(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    pool_ext *px = check_pool(L, u);
    if (px->pool) lc_pool_hold(px->pool);
    return 0;
}

/* loop:submit(key, args) -> id. The job is handed over at the next poll,
 * with every other job submitted before it, under one lock. */
static int l_submit(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    pool_ext *px = check_pool(L, u);
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, LC_UV_NAMES);              /* 4: from pool_start */
    bytes_ud *bu = lc_core_new_bytes(L);               /* owns the bytes if we raise */
    lc_marshal(L, 2, 2, 4, &bu->b);
    px = check_pool(L, u = lc_core_check_loop(L));     /* again: that allocated */
    lc_job *job = calloc(1, sizeof *job);
    if (job == NULL) return lc_raise(L, "luaconcurrent: out of memory");
    job->in = bu->b;                                   /* the job owns them now */
    memset(&bu->b, 0, sizeof bu->b);
    job->id = lc_core_new_id(u);
    LC_QUEUE_PUSH(&px->pend, job, next);
    px->npend++;
    px->nfn++;
    lua_pushinteger(L, job->id);
    return 1;
}

/* loop:submit_batch(wrap, list, at, k) -> id of the first: the k tasks
 * list[at + 1 .. at + 3k], each index, key, args (the index is the
 * caller's; key and args are sent). One frame for all, one job: handed
 * over at the next poll. Read here, not passed as arguments, so the
 * caller copies nothing per task. */
static int l_submit_batch(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    pool_ext *px = check_pool(L, u);
    int wrap = lua_toboolean(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer at = luaL_checkinteger(L, 4);
    lua_Integer k = luaL_checkinteger(L, 5);
    if (k < 1 || k > INT_MAX / 2 - 8)
        return lc_raise(L, "luaconcurrent: submit_batch: bad task count %I", (LUAI_UACINT)k);
    if (at < 0 || at > LUA_MAXINTEGER - 3 * k)         /* at + 3k must not overflow */
        return lc_raise(L, "luaconcurrent: submit_batch: bad position %I", (LUAI_UACINT)at);
    int n = (int)k;
    lua_settop(L, 3);
    luaL_checkstack(L, 2 * n + 8, "batch");
    for (lua_Integer j = 0; j < k; j++) {              /* key, arg of each */
        lua_rawgeti(L, 3, at + 3 * j + 2);
        lua_rawgeti(L, 3, at + 3 * j + 3);
    }
    int top = lua_gettop(L);
    lua_getiuservalue(L, 1, LC_UV_NAMES);              /* from pool_start */
    int names = lua_gettop(L);
    bytes_ud *bu = lc_core_new_bytes(L);               /* owns the bytes if we raise */
    lc_marshal(L, 4, top - 3, names, &bu->b);
    px = check_pool(L, u = lc_core_check_loop(L));     /* again: that allocated */
    lc_job *job = calloc(1, sizeof *job);
    lc_task_out *tasks = job ? calloc((size_t)n, sizeof *tasks) : NULL;
    if (tasks == NULL) {
        free(job);
        return lc_raise(L, "luaconcurrent: out of memory");
    }
    job->in = bu->b;                                   /* the job owns them now */
    memset(&bu->b, 0, sizeof bu->b);
    job->n = n;
    job->wrap = wrap;
    job->tasks = tasks;
    job->id = lc_core_new_id(u);
    for (int i = 1; i < n; i++) lc_core_new_id(u);     /* ids id .. id + n - 1 */
    LC_QUEUE_PUSH(&px->pend, job, next);
    px->npend++;
    px->nfn += (size_t)n;
    lua_pushinteger(L, job->id);
    return 1;
}

/* Inside a thread worker: seconds left before the task's deadline (nil
 * outside a worker); raises the cancel sentinel once it has passed. */
static int l_worker_check(lua_State *L) {
    if (!lc_worker_active()) return 0;
    lua_pushnumber(L, lc_worker_check(L));
    return 1;
}

static int l_cancel_sentinel(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&lc_cancel_sentinel);
    return 1;
}

static const luaL_Reg pool_methods[] = {
    {"pool_start", l_pool_start},
    {"submit", l_submit},
    {"submit_batch", l_submit_batch},
    {"pool_hold", l_pool_hold},
    {NULL, NULL},
};

static const luaL_Reg pool_funcs[] = {
    {"worker_check", l_worker_check},
    {"cancel_sentinel", l_cancel_sentinel},
    {NULL, NULL},
};

/* The loop's pool methods (after lc_core_loop_open) and the worker
 * functions, into the module table on top. */
void lc_core_pool_open(lua_State *L) {
    luaL_getmetatable(L, LOOP_MT);                     /* mod mt */
    lua_getfield(L, -1, "__index");                    /* mod mt methods */
    luaL_setfuncs(L, pool_methods, 0);
    lua_pop(L, 2);
    luaL_setfuncs(L, pool_funcs, 0);
    lua_pushinteger(L, LC_HOOK_COUNT);
    lua_setfield(L, -2, "HOOK_COUNT");
}
