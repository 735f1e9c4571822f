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
 *   core.handle_signals(), core.signal_pending(), core.hup_pending()
 * and, from core_workers.c: loop:pool_start, loop:submit, core.marshal ...
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
#include <time.h>
#include <unistd.h>

#include "lcerror.h"

#include "core.h"
#include "hugemem.h"
#include "signals.h"
#include "workerproc.h"

#define ENV_MT "luaconcurrent.envblock"
#define TEARDOWN_LIMIT 2.0  /* seconds to wait for killed tasks' pipes */

extern char **environ;

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
    lc_core_stop_pool(u);
    lc_core_free_jobs(u);
    while ((p = u->running) != NULL) {
        list_unlink(u, p);
        lc_proc_free(p);                   /* synchronous kill and reap */
    }
    while ((p = done_pop(u)) != NULL) lc_proc_free(p);
    lc_loop_free(u->loop);
    u->loop = NULL;
}

/* ---- records ------------------------------------------------------------- */

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
    lc_set_int(L, "id", p->tag);
    lc_set_int(L, "pid", p->pid);
    if (p->wait_errno) {
        lc_set_int(L, "returncode", -1);
        lc_set_str(L, "wait_error", lc_errno_name(p->wait_errno));
    } else if (p->signaled) {
        lc_set_int(L, "returncode", -p->code);
        lc_set_int(L, "signal", p->code);
        lc_set_str(L, "signal_name", lc_signal_name(p->code));
    } else if (p->exited) {
        lc_set_int(L, "returncode", p->code);
    } else {
        lc_set_int(L, "returncode", -1);                  /* never seen to exit */
    }
    lc_set_bool(L, "timeout", p->timed_out);
    lc_set_bool(L, "interrupted", p->interrupted);
    lc_set_bool(L, "incomplete", p->incomplete);
    if (p->input_errno) {
        lc_set_str(L, "input_error", lc_errno_name(p->input_errno));
        lc_set_int(L, "input_written", (lua_Integer)p->input_off);
        lc_set_int(L, "input_size", (lua_Integer)p->input_len);
    }
    double end = p->t_end > 0 ? p->t_end : lc_now();
    lc_set_num(L, "time_start", p->wall_start);
    lc_set_num(L, "time_end", p->wall_start + (end - p->t_start));
    lc_set_num(L, "time_run", end - p->t_start);
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

/* Stream procs' new stdout bytes, as {id = , data = } records appended to
 * the list on top. */
static void push_stream_records(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)luaL_len(L, -1);
    while (u->sdata) {
        lc_proc *p = u->sdata;
        lua_createtable(L, 0, 2);
        lc_set_int(L, "id", p->tag);
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

loop_ud *lc_core_check_loop(lua_State *L) {
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
    loop_ud *u = lc_core_check_loop(L);
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
    loop_ud *u = lc_core_check_loop(L);
    double max_wait = luaL_optnumber(L, 2, -1);
    double limit = max_wait >= 0 ? lc_now() + max_wait : 0;
    /* With a limit, wait it out even with nothing running: the Lua side
     * uses it as its timer (sleeping coroutine tasks, deadlines). */
    if (u->pool) lc_core_flush_jobs(u);
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
    lc_core_push_job_records(L, u);
    push_stream_records(L, u);
    return 1;
}

static lc_proc *find_proc(loop_ud *u, lua_Integer id) {
    for (lc_proc *p = u->running; p; p = p->next)
        if (p->tag == id) return p;
    return NULL;
}

/* Kill one task's whole process group; its record still arrives through
 * poll. Returns false if no such task is running. */
static int l_kill(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    lc_proc *p = find_proc(u, luaL_checkinteger(L, 2));
    if (p) lc_proc_kill(p);
    lua_pushboolean(L, p != NULL);
    return 1;
}

/* loop:write(id, bytes) -> true | nil, message: to a stream proc's stdin. */
static int l_write(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
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
    loop_ud *u = lc_core_check_loop(L);
    lc_proc *p = find_proc(u, luaL_checkinteger(L, 2));
    if (p) lc_proc_close_input(p);
    return 0;
}

static int l_running(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    lua_pushinteger(L, (lua_Integer)(u->nrunning + u->nfn));
    return 1;
}

/* ---- teardown: close, __gc and __close ------------------------------- */

static int l_close(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    if (u->loop == NULL) {
        lua_newtable(L);
        return 1;
    }
    kill_all(u);
    lc_core_stop_pool(u);
    /* Whatever did not finish in time is recorded as it stands. */
    for (lc_proc *p = u->running; p; p = u->running) {
        list_unlink(u, p);
        p->incomplete = 1;
        if (u->done_tail) u->done_tail->next = p;
        else u->done = p;
        u->done_tail = p;
    }
    push_done(L, u);
    lc_core_push_job_records(L, u);
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
        luaL_setfuncs(L, lc_core_worker_methods, 0);
        lua_setfield(L, -2, "__index");                /* mt */
    }
    lua_pop(L, 1);
    luaL_newmetatable(L, ENV_MT);
    lua_pop(L, 1);
    lc_core_workers_open(L);
    luaL_newlib(L, core_funcs);
    luaL_setfuncs(L, lc_core_worker_funcs, 0);
    luaL_setfuncs(L, lc_workerproc_funcs, 0);
    return 1;
}
