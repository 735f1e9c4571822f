/*
 * core.c — luaopen_luaconcurrent_core: the engine's Lua bindings.
 *
 *   core.new_loop() -> loop
 *   loop:spawn(argv, envblock|nil, cwd|nil, input|nil, timeout, kill_grace)
 *        -> id | nil, message, errno_name
 *   loop:poll([max_wait]) -> { record, ... }   finished tasks, completion order
 *   loop:running() -> n
 *   loop:kill(id) -> true | false             kill one task's process group
 *   loop:write(id, s), loop:close_input(id)   stdin of a stream proc
 *   (spawn's 8th argument, stream: stdout comes as {id=, data=} records)
 *   loop:close() -> { record, ... }            kills and reaps what is left
 *   core.envblock({NAME = "value" | false, ...}) -> envblock
 *   core.sleep(s) -> true | false (interrupted by a signal)
 *   core.now(), core.wallclock()
 *
 * The loop userdata owns every proc; procs never outlive it (close, __gc
 * and __close all end in one idempotent teardown).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lcerror.h"
#include "lua.h"

#include "hugemem.h"
#include "loop.h"
#include "marshal.h"
#include "pool.h"
#include "proc.h"
#include "signals.h"

#define LOOP_MT "luaconcurrent.loop"
#define ENV_MT "luaconcurrent.envblock"
#define BYTES_MT "luaconcurrent.bytes"
#define TEARDOWN_LIMIT 2.0  /* seconds to wait for killed tasks' pipes */

extern char **environ;

typedef struct {
    lc_loop *loop;              /* NULL once closed */
    lc_proc *running;           /* doubly linked through prev/next */
    lc_proc *done, *done_tail;  /* FIFO through next */
    size_t nrunning;
    long long next_id;
    /* thread workers (function tasks of ProcRunMp) */
    lc_pool *pool;
    lc_watch poolw;             /* the pool's eventfd */
    lc_job *pend, *pend_tail;   /* submitted, not yet handed to the pool */
    size_t npend;
    lc_job *fdone, *fdone_tail; /* finished, not yet returned by poll */
    size_t nfn;                 /* function jobs submitted and not returned */
    lc_proc *sdata;             /* stream procs with stdout not yet returned */
} loop_ud;

typedef struct {
    size_t n;
    char *vars[];               /* n entries + NULL; strings anchored in uservalue */
} envblock;

/* ---- proc bookkeeping -------------------------------------------------- */

static void list_unlink(loop_ud *u, lc_proc *p) {
    if (p->prev) p->prev->next = p->next;
    else u->running = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    u->nrunning--;
}

static void sdata_unlink(loop_ud *u, lc_proc *p) {
    if (!p->data_queued) return;
    for (lc_proc **pp = &u->sdata; *pp; pp = &(*pp)->data_next) {
        if (*pp == p) {
            *pp = p->data_next;
            break;
        }
    }
    p->data_queued = 0;
    p->data_next = NULL;
}

/* A stream proc's stdout got bytes: poll hands them over. */
static void on_proc_data(lc_proc *p) {
    loop_ud *u = p->data;
    if (p->data_queued) return;
    p->data_queued = 1;
    p->data_next = u->sdata;
    u->sdata = p;
}

static void on_proc_done(lc_proc *p) {
    loop_ud *u = p->data;
    sdata_unlink(u, p);                 /* what is left goes in its record */
    list_unlink(u, p);
    if (u->done_tail) u->done_tail->next = p;
    else u->done = p;
    u->done_tail = p;
}

static lc_proc *done_pop(loop_ud *u) {
    lc_proc *p = u->done;
    if (p) {
        u->done = p->next;
        if (u->done == NULL) u->done_tail = NULL;
        p->next = NULL;
    }
    return p;
}

static void jobs_append(lc_job **head, lc_job **tail, lc_job *list) {
    if (list == NULL) return;
    if (*tail) (*tail)->next = list;
    else *head = list;
    while (list->next) list = list->next;
    *tail = list;
}

static void jobs_free(lc_job *list) {
    while (list) {
        lc_job *next = list->next;
        lc_job_free(list);
        list = next;
    }
}

static void on_pool_ready(lc_loop *loop, lc_watch *w, uint32_t events) {
    loop_ud *u = w->data;
    (void)loop;
    (void)events;
    jobs_append(&u->fdone, &u->fdone_tail, lc_pool_take(u->pool));
}

static void flush_jobs(loop_ud *u) {
    if (u->pend == NULL) return;
    lc_pool_submit(u->pool, u->pend, u->pend_tail, u->npend);
    u->pend = u->pend_tail = NULL;
    u->npend = 0;
}

/* Stop the workers: finished and unstarted jobs join the done list. */
static void stop_pool(loop_ud *u) {
    if (u->pool == NULL) return;
    lc_watch_del(u->loop, &u->poolw);
    jobs_append(&u->fdone, &u->fdone_tail, lc_pool_stop(u->pool));
    jobs_append(&u->fdone, &u->fdone_tail, u->pend);
    u->pend = u->pend_tail = NULL;
    u->npend = 0;
    lc_pool_free(u->pool);
    u->pool = NULL;
}

/* Kill everything still running and give it a bounded time to finish
 * through the loop, so records keep the output that was produced. */
static void kill_all(loop_ud *u) {
    for (lc_proc *p = u->running; p; p = p->next) lc_proc_kill(p);
    double limit = lc_now() + TEARDOWN_LIMIT;
    while (u->nrunning > 0) {
        double left = limit - lc_now();
        if (left <= 0) break;
        lc_loop_run_once(u->loop, left);   /* EINTR: just go round */
    }
}

static void free_all(loop_ud *u) {
    lc_proc *p;
    u->sdata = NULL;                    /* every proc goes below */
    stop_pool(u);
    jobs_free(u->fdone);
    u->fdone = u->fdone_tail = NULL;
    while ((p = u->running) != NULL) {
        list_unlink(u, p);
        lc_proc_free(p);                   /* synchronous kill and reap */
    }
    while ((p = done_pop(u)) != NULL) lc_proc_free(p);
    lc_loop_free(u->loop);
    u->loop = NULL;
}

/* ---- records ------------------------------------------------------------- */

static void set_bool(lua_State *L, const char *k, int v) {
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* Move one output buffer into a Lua string and free it at once, so only
 * one extra copy of one output exists at any time. */
static void set_output(lua_State *L, const char *k, lc_buf *b) {
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lua_setfield(L, -2, k);
    lc_mem_realloc(b->data, b->cap, 0);
    b->data = NULL;
    b->len = b->cap = 0;
}

static void push_record(lua_State *L, lc_proc *p) {
    lua_createtable(L, 0, 16);                         /* rec */
    set_int(L, "id", p->tag);
    set_int(L, "pid", p->pid);
    if (p->wait_errno) {
        set_int(L, "returncode", -1);
        set_str(L, "wait_error", lc_errno_name(p->wait_errno));
    } else if (p->signaled) {
        set_int(L, "returncode", -p->code);
        set_int(L, "signal", p->code);
        set_str(L, "signal_name", lc_signal_name(p->code));
    } else if (p->exited) {
        set_int(L, "returncode", p->code);
    } else {
        set_int(L, "returncode", -1);                  /* never seen to exit */
    }
    set_bool(L, "timeout", p->timed_out);
    set_bool(L, "interrupted", p->interrupted);
    set_bool(L, "incomplete", p->incomplete);
    if (p->input_errno) {
        set_str(L, "input_error", lc_errno_name(p->input_errno));
        set_int(L, "input_written", (lua_Integer)p->input_off);
        set_int(L, "input_size", (lua_Integer)p->input_len);
    }
    double end = p->t_end > 0 ? p->t_end : lc_now();
    set_num(L, "time_start", p->wall_start);
    set_num(L, "time_end", p->wall_start + (end - p->t_start));
    set_num(L, "time_run", end - p->t_start);
    set_output(L, "stdout", &p->out);
    set_output(L, "stderr", &p->err);
}

/* Records of every finished proc, in completion order. A record is only
 * popped once it is complete, so an allocation error leaves it queued. */
static void push_done(lua_State *L, loop_ud *u) {
    lua_newtable(L);                                   /* list */
    lua_Integer i = 0;
    while (u->done) {
        push_record(L, u->done);                       /* list rec */
        lua_rawseti(L, -2, ++i);                       /* list */
        lc_proc_free(done_pop(u));
    }
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

static void push_job_record(lua_State *L, lc_job *job, double wall_offset) {
    lua_createtable(L, 0, 10);                         /* rec */
    set_int(L, "id", job->id);
    set_bool(L, "fn", 1);
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
    set_str(L, "status", job_status[status]);
    if (job->t_start > 0) {
        double end = job->t_end > 0 ? job->t_end : lc_now();
        set_num(L, "time_start", wall_offset + job->t_start);
        set_num(L, "time_end", wall_offset + end);
        set_num(L, "time_run", end - job->t_start);
    }
}

/* Records of finished function jobs, appended to the list on top. */
static void push_job_records(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)luaL_len(L, -1);
    double wall_offset = lc_wallclock() - lc_now();
    while (u->fdone) {
        lc_job *job = u->fdone;
        push_job_record(L, job, wall_offset);
        lua_rawseti(L, -2, ++i);
        u->fdone = job->next;
        if (u->fdone == NULL) u->fdone_tail = NULL;
        u->nfn--;
        lc_job_free(job);
    }
}

/* Stream procs' new stdout bytes, as {id = , data = } records appended to
 * the list on top. */
static void push_stream_records(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)luaL_len(L, -1);
    while (u->sdata) {
        lc_proc *p = u->sdata;
        lua_createtable(L, 0, 2);
        set_int(L, "id", p->tag);
        lua_pushlstring(L, p->out.data ? p->out.data : "", p->out.len);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, ++i);
        p->out.len = 0;                                /* keeps its buffer */
        u->sdata = p->data_next;
        p->data_queued = 0;
        p->data_next = NULL;
    }
}

/* ---- loop methods -------------------------------------------------------- */

static loop_ud *check_loop(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    if (u->loop == NULL) lc_raise(L, "luaconcurrent: loop is closed");
    return u;
}

static int l_new_loop(lua_State *L) {
    loop_ud *u = lua_newuserdatauv(L, sizeof *u, 1);   /* created closed */
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, LOOP_MT);
    u->loop = lc_loop_new();
    if (u->loop == NULL)
        return lc_raise(L, "luaconcurrent: cannot create event loop: %s",
                          strerror(errno));
    return 1;
}

/* argv strings stay anchored by the argv table (argument 2) throughout. */
static char **build_argv(lua_State *L, int idx) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n < 1) lc_raise(L, "luaconcurrent: empty argv");
    char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)   /* (numbers too: no coercion) */
            lc_raise(L, "luaconcurrent: argv[%d] is not a string", (int)i);
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            lc_raise(L, "luaconcurrent: argv[%d] contains a NUL byte", (int)i);
        argv[i - 1] = (char *)s;
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    return argv;                                       /* userdata on stack */
}

static const char *opt_cstring(lua_State *L, int idx, const char *what,
                               size_t *len) {
    if (lua_isnoneornil(L, idx)) return NULL;
    const char *s = luaL_checklstring(L, idx, len);
    if (what && strlen(s) != *len)
        lc_raise(L, "luaconcurrent: %s contains a NUL byte", what);
    return s;
}

static int l_spawn(lua_State *L) {
    loop_ud *u = check_loop(L);
    lc_proc_spec spec;
    size_t cwdlen = 0;
    char errbuf[512];
    memset(&spec, 0, sizeof spec);
    lua_settop(L, 8);
    spec.stream = lua_toboolean(L, 8);
    spec.argv = build_argv(L, 2);                      /* argv block at 9 */
    if (!lua_isnoneornil(L, 3))
        spec.envp = ((envblock *)luaL_checkudata(L, 3, ENV_MT))->vars;
    spec.cwd = opt_cstring(L, 4, "cwd", &cwdlen);
    spec.input = opt_cstring(L, 5, NULL, &spec.input_len);
    spec.timeout = luaL_optnumber(L, 6, 0);
    spec.kill_grace = luaL_optnumber(L, 7, 0.1);

    lc_proc *p;
    int e = lc_proc_spawn(u->loop, &spec, on_proc_done, on_proc_data, u, &p,
                          errbuf, sizeof errbuf);
    if (e) {
        luaL_pushfail(L);
        lua_pushstring(L, errbuf);
        lua_pushstring(L, lc_errno_name(e));
        return 3;
    }
    p->tag = ++u->next_id;
    p->next = u->running;
    if (u->running) u->running->prev = p;
    u->running = p;
    u->nrunning++;
    lua_pushinteger(L, p->tag);
    return 1;
}

/* Run the loop until at least one task finished, max_wait passed (nil:
 * no limit) or a signal interrupted the wait; return what finished. */
static int l_poll(lua_State *L) {
    loop_ud *u = check_loop(L);
    double max_wait = luaL_optnumber(L, 2, -1);
    double limit = max_wait >= 0 ? lc_now() + max_wait : 0;
    /* With a limit, wait it out even with nothing running: the Lua side
     * uses it as its timer (sleeping coroutine tasks, deadlines). */
    if (u->pool) flush_jobs(u);
    /* With our signal handlers in place, keep SIGINT/SIGTERM/SIGHUP
     * blocked except inside the wait itself, so one that arrives after
     * the run last looked cannot leave us waiting for the tasks to end. */
    int guarded = lc_signals_installed();
    sigset_t block, old;
    if (guarded) {
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &block, &old);
    }
    int err = 0;
    while (u->done == NULL && u->fdone == NULL && u->sdata == NULL &&
           !(guarded && lc_sig_pending) &&
           (max_wait >= 0 || u->nrunning > 0 || u->nfn > 0 ||
            lc_timer_count(u->loop) > 0)) {
        double left = -1;
        if (max_wait >= 0) {
            left = limit - lc_now();
            if (left < 0) left = 0;
        }
        if (lc_loop_run_once_mask(u->loop, left, guarded ? &old : NULL) < 0) {
            if (errno != EINTR) err = errno;
            break;                  /* EINTR: let a pending hook (Ctrl-C) run */
        }
        if (max_wait >= 0 && lc_now() >= limit) break;
    }
    if (guarded) pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) return lc_raise(L, "luaconcurrent: event loop: %s", strerror(err));
    push_done(L, u);
    push_job_records(L, u);
    push_stream_records(L, u);
    return 1;
}

/* Kill one task's whole process group; its record still arrives through
 * poll. Returns false if no such task is running. */
static int l_kill(lua_State *L) {
    loop_ud *u = check_loop(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    for (lc_proc *p = u->running; p; p = p->next) {
        if (p->tag == id) {
            lc_proc_kill(p);
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

static lc_proc *find_proc(loop_ud *u, lua_Integer id) {
    for (lc_proc *p = u->running; p; p = p->next)
        if (p->tag == id) return p;
    return NULL;
}

/* loop:write(id, bytes) -> true | nil, message: to a stream proc's stdin. */
static int l_write(lua_State *L) {
    loop_ud *u = check_loop(L);
    lc_proc *p = find_proc(u, luaL_checkinteger(L, 2));
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    int e = p && p->stream ? lc_proc_write(p, data, len) : ESRCH;
    if (e) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot write to task %d: %s", (int)luaL_checkinteger(L, 2),
                        strerror(e));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* loop:close_input(id): the stream proc's stdin reaches EOF. */
static int l_close_input(lua_State *L) {
    loop_ud *u = check_loop(L);
    lc_proc *p = find_proc(u, luaL_checkinteger(L, 2));
    if (p) lc_proc_close_input(p);
    return 0;
}

static int l_running(lua_State *L) {
    loop_ud *u = check_loop(L);
    lua_pushinteger(L, (lua_Integer)(u->nrunning + u->nfn));
    return 1;
}

/* ---- thread workers ------------------------------------------------------ */

typedef struct {
    lc_bytes b;
} bytes_ud;

static int bytes_gc(lua_State *L) {
    bytes_ud *bu = luaL_checkudata(L, 1, BYTES_MT);
    lc_bytes_free(&bu->b);
    return 0;
}

static bytes_ud *new_bytes(lua_State *L) {
    bytes_ud *bu = lua_newuserdatauv(L, sizeof *bu, 0);
    memset(bu, 0, sizeof *bu);
    luaL_setmetatable(L, BYTES_MT);
    return bu;
}

/* core.marshal(...) -> bytes: checks that the values can cross, and keeps
 * them ready to send. */
static int l_marshal(lua_State *L) {
    int n = lua_gettop(L);
    bytes_ud *bu = new_bytes(L);
    lc_marshal(L, 1, n, 0, &bu->b);
    return 1;
}

static int l_unmarshal(lua_State *L) {
    bytes_ud *bu = luaL_checkudata(L, 1, BYTES_MT);
    return lc_unmarshal(L, bu->b.data ? bu->b.data : "", bu->b.len);
}

static int l_bytes_size(lua_State *L) {
    bytes_ud *bu = luaL_checkudata(L, 1, BYTES_MT);
    lua_pushinteger(L, (lua_Integer)bu->b.len);
    return 1;
}

/* loop:pool_start(fn_string, nthreads, timeout, path, cpath); fn_string
 * from core.marshal_string(fn). */
static int l_pool_start(lua_State *L) {
    loop_ud *u = check_loop(L);
    size_t fn_len;
    const char *fn = luaL_checklstring(L, 2, &fn_len);
    lc_pool_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.nthreads = (int)luaL_checkinteger(L, 3);
    cfg.timeout = luaL_optnumber(L, 4, 0);
    cfg.path = luaL_checkstring(L, 5);
    cfg.cpath = luaL_checkstring(L, 6);
    cfg.fn = fn;
    cfg.fn_len = fn_len;
    if (u->pool) return lc_raise(L, "luaconcurrent: workers already started");
    lc_marshal_names(L);                               /* one map for the run */
    lua_setiuservalue(L, 1, 1);
    int e = 0;
    u->pool = lc_pool_new(&cfg, &e);
    if (u->pool == NULL)
        return lc_raise(L, "luaconcurrent: cannot start %d thread workers: %s",
                          cfg.nthreads, strerror(e));
    u->poolw.fd = lc_pool_fd(u->pool);
    u->poolw.fn = on_pool_ready;
    u->poolw.data = u;
    if ((e = lc_watch_add(u->loop, &u->poolw, EPOLLIN)) != 0) {
        lc_pool_free(u->pool);
        u->pool = NULL;
        return lc_raise(L, "luaconcurrent: cannot watch thread workers: %s", strerror(e));
    }
    return 0;
}

/* loop:submit(key, args) -> id. The job is handed over at the next poll,
 * with every other job submitted before it, under one lock. */
static int l_submit(lua_State *L) {
    loop_ud *u = check_loop(L);
    if (u->pool == NULL) return lc_raise(L, "luaconcurrent: no thread workers");
    lua_settop(L, 3);
    lua_getiuservalue(L, 1, 1);                        /* 4: names, from pool_start */
    bytes_ud *bu = new_bytes(L);                       /* owns the bytes if we raise */
    lc_marshal(L, 2, 2, 4, &bu->b);
    lc_job *job = calloc(1, sizeof *job);
    if (job == NULL) return lc_raise(L, "luaconcurrent: out of memory");
    job->in = bu->b;                                   /* the job owns them now */
    memset(&bu->b, 0, sizeof bu->b);
    job->id = ++u->next_id;
    if (u->pend_tail) u->pend_tail->next = job;
    else u->pend = job;
    u->pend_tail = job;
    u->npend++;
    u->nfn++;
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

/* core.marshal_string(...) / core.unmarshal_string(s): the same bytes as
 * a Lua string, for pipes to process workers. */
static int l_marshal_string(lua_State *L) {
    int n = lua_gettop(L);
    bytes_ud *bu = new_bytes(L);
    lc_marshal(L, 1, n, 0, &bu->b);
    lua_pushlstring(L, bu->b.data ? bu->b.data : "", bu->b.len);
    lc_bytes_free(&bu->b);
    return 1;
}

static int l_unmarshal_string(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return lc_unmarshal(L, s, len);
}

/* How to start a process worker: this executable (it has a --worker
 * mode) or, for the module, the interpreter the host runs. */
static int l_host(lua_State *L) {
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    lua_pushboolean(L, lc_state_setup != NULL);        /* the executable? */
    if (n > 0) lua_pushlstring(L, path, (size_t)n);
    else lua_pushnil(L);
    return 2;
}

/* ---- signals ------------------------------------------------------------ */

/* At lua_close: a host that asked for our handlers and was interrupted
 * ends by that signal, so its exit status is 128 + signum. */
static int l_signals_gc(lua_State *L) {
    (void)L;
    int sig = lc_sig_last;
    if (sig && lc_state_setup == NULL) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    return 0;
}

/* core.handle_signals(): for hosts of the module that want what the
 * executable does (see signals.h). Idempotent. */
static int l_handle_signals(lua_State *L) {
    if (!lc_signals_installed()) lc_signals_install(NULL);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "luaconcurrent.signals") == LUA_TNIL) {
        lua_newuserdatauv(L, 0, 0);
        lua_newtable(L);
        lua_pushcfunction(L, l_signals_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, "luaconcurrent.signals");
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* The SIGINT/SIGTERM waiting for a run to act on ("SIGINT", ...), taken
 * as handled; nil if none. */
static int l_signal_pending(lua_State *L) {
    int sig = lc_sig_pending;
    if (sig == 0) return 0;
    lc_sig_pending = 0;
    lua_pushstring(L, lc_signal_name(sig));
    return 1;
}

static int l_hup_pending(lua_State *L) {
    lua_pushboolean(L, lc_sig_hup != 0);
    return 1;
}

/* In a process worker: keep the protocol to the runner on a private copy
 * of stdout, and point fd 1 at an in-memory file, so what a task prints
 * (and what its own children print) is kept apart from the answers and can
 * be handed back with them (core.worker_take_stdout). Returns the protocol
 * fd. */
static int l_worker_stdout(lua_State *L) {
    fflush(stdout);
    int fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int mfd = fd < 0 ? -1 : memfd_create("luaconcurrent-task-stdout", 0);
    if (mfd < 0 || dup2(mfd, 1) < 0)
        return lc_raise(L, "luaconcurrent: worker cannot set up its stdout: %s", strerror(errno));
    close(mfd);
    lua_pushinteger(L, fd);
    return 1;
}

/* What the task printed since the last call; empties the file. */
static int l_worker_take_stdout(lua_State *L) {
    fflush(stdout);
    off_t size = lseek(1, 0, SEEK_END);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (off_t off = 0; size > 0 && off < size;) {
        size_t want = (size_t)(size - off);
        if (want > LUAL_BUFFERSIZE) want = LUAL_BUFFERSIZE;
        char *dst = luaL_prepbuffsize(&b, want);
        ssize_t n = pread(1, dst, want, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        luaL_addsize(&b, (size_t)n);
        off += n;
    }
    if (ftruncate(1, 0) < 0 || lseek(1, 0, SEEK_SET) < 0)
        return lc_raise(L, "luaconcurrent: worker cannot reset its stdout: %s", strerror(errno));
    luaL_pushresult(&b);
    return 1;
}

/* core.fd_write(fd, s): write all of s (the worker's answers). */
static int l_fd_write(lua_State *L) {
    int fd = (int)luaL_checkinteger(L, 1);
    size_t len, off = 0;
    const char *s = luaL_checklstring(L, 2, &len);
    while (off < len) {
        ssize_t n = write(fd, s + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return lc_raise(L, "luaconcurrent: worker cannot answer: %s", strerror(errno));
        off += (size_t)n;
    }
    return 0;
}

static int l_cpu_count(lua_State *L) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    lua_pushinteger(L, n > 0 ? n : 1);
    return 1;
}

static int l_cancel_sentinel(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&lc_cancel_sentinel);
    return 1;
}

static int l_close(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    if (u->loop == NULL) {
        lua_newtable(L);
        return 1;
    }
    kill_all(u);
    stop_pool(u);
    /* Whatever did not finish in time is recorded as it stands. */
    for (lc_proc *p = u->running; p; p = u->running) {
        list_unlink(u, p);
        p->incomplete = 1;
        if (u->done_tail) u->done_tail->next = p;
        else u->done = p;
        u->done_tail = p;
    }
    push_done(L, u);
    push_job_records(L, u);
    free_all(u);
    return 1;
}

static int l_gc(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    if (u->loop) {
        kill_all(u);
        free_all(u);
    }
    return 0;
}

/* ---- environment blocks ------------------------------------------------ */

static int l_envblock(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t nenv = 0, nset = 0;
    while (environ[nenv]) nenv++;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        size_t klen;
        if (lua_type(L, -2) != LUA_TSTRING)
            return lc_raise(L, "luaconcurrent: env names must be strings, got %s",
                              luaL_typename(L, -2));
        const char *k = lua_tolstring(L, -2, &klen);
        if (klen == 0 || strlen(k) != klen || strchr(k, '='))
            return lc_raise(L, "luaconcurrent: env name '%s' is not a valid "
                                 "variable name", k);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t vlen;
            const char *v = lua_tolstring(L, -1, &vlen);
            if (strlen(v) != vlen)
                return lc_raise(L, "luaconcurrent: env value of %s contains "
                                     "a NUL byte", k);
            nset++;
        } else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
            return lc_raise(L, "luaconcurrent: env value of %s must be a "
                                 "string or false, got %s", k,
                              luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    envblock *eb = lua_newuserdatauv(L, sizeof *eb + (nenv + nset + 1) *
                                                          sizeof(char *), 1);
    luaL_setmetatable(L, ENV_MT);                       /* t eb */
    lua_newtable(L);                                    /* t eb anchor */
    size_t n = 0;
    for (size_t i = 0; i < nenv; i++) {
        const char *eq = strchr(environ[i], '=');
        if (eq == NULL) continue;
        lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
        if (lua_rawget(L, 1) != LUA_TNIL) {             /* overridden */
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_pushstring(L, environ[i]);                  /* copy: environ may change */
        eb->vars[n++] = (char *)lua_tostring(L, -1);
        lua_rawseti(L, -2, (lua_Integer)n);
    }
    lua_pushnil(L);
    while (lua_next(L, 1)) {                            /* t eb anchor k v */
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
            eb->vars[n++] = (char *)lua_tostring(L, -1);
            lua_rawseti(L, -4, (lua_Integer)n);
        }
        lua_pop(L, 1);
    }
    eb->vars[n] = NULL;
    eb->n = n;
    lua_setiuservalue(L, -2, 1);                        /* t eb */
    return 1;
}

/* ---- clocks and sleep -------------------------------------------------- */

static int l_now(lua_State *L) {
    lua_pushnumber(L, lc_now());
    return 1;
}

static int l_wallclock(lua_State *L) {
    lua_pushnumber(L, lc_wallclock());
    return 1;
}

/* Returns false when a signal handler ran, so the caller's Lua code (and a
 * Ctrl-C hook) gets control back; the caller decides whether to go on. */
static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    if (!(s > 0)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (lc_worker_active()) {
        lc_worker_sleep(L, s);                         /* raises at the deadline */
        lua_pushboolean(L, 1);
        return 1;
    }
    if (s > 1e9) s = 1e9;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    lua_pushboolean(L, r == 0);
    return 1;
}

static const luaL_Reg loop_methods[] = {
    {"spawn", l_spawn},
    {"poll", l_poll},
    {"running", l_running},
    {"kill", l_kill},
    {"write", l_write},
    {"close_input", l_close_input},
    {"pool_start", l_pool_start},
    {"submit", l_submit},
    {"close", l_close},
    {NULL, NULL},
};

static const luaL_Reg loop_meta[] = {
    {"__gc", l_gc},
    {"__close", l_gc},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg core_funcs[] = {
    {"new_loop", l_new_loop},
    {"envblock", l_envblock},
    {"sleep", l_sleep},
    {"now", l_now},
    {"wallclock", l_wallclock},
    {"marshal", l_marshal},
    {"unmarshal", l_unmarshal},
    {"worker_check", l_worker_check},
    {"cancel_sentinel", l_cancel_sentinel},
    {"cpu_count", l_cpu_count},
    {"worker_stdout", l_worker_stdout},
    {"worker_take_stdout", l_worker_take_stdout},
    {"fd_write", l_fd_write},
    {"marshal_string", l_marshal_string},
    {"unmarshal_string", l_unmarshal_string},
    {"host", l_host},
    {"handle_signals", l_handle_signals},
    {"signal_pending", l_signal_pending},
    {"hup_pending", l_hup_pending},
    {NULL, NULL},
};

int luaopen_luaconcurrent_core(lua_State *L) {
    luaL_checkversion(L);
    if (luaL_newmetatable(L, LOOP_MT)) {               /* mt */
        luaL_setfuncs(L, loop_meta, 0);
        luaL_newlib(L, loop_methods);                  /* mt methods */
        lua_setfield(L, -2, "__index");                /* mt */
    }
    lua_pop(L, 1);
    luaL_newmetatable(L, ENV_MT);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, BYTES_MT)) {
        lua_pushcfunction(L, bytes_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, l_bytes_size);
        lua_setfield(L, -2, "size");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, core_funcs);
    return 1;
}
