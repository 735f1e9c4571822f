/*
 * core_misc.c — the engine's small functions, bound to no engine object:
 *
 *   core.envblock({NAME = "value" | false, ...}) -> envblock  for loop:spawn
 *   core.now(), core.wallclock()       CLOCK_MONOTONIC, CLOCK_REALTIME seconds
 *   core.sleep(s) -> true | false (interrupted by a signal)
 *   core.handle_signals(), core.signal_pending(), core.hup_pending()
 *   core.cpu_count(), core.host() -> embedded?, path of this executable
 *   core.isatty(fd), core.term_width(fd) -> columns | nil   (progress bar)
 *   core.resume(co, ...) -> true, v1, n - 1, v2, v3 | false, err   a task
 *        coroutine's resume with a fixed count of results (see below)
 *   and, for a process worker: core.worker_stdout(), core.worker_take_stdout(),
 *   core.fd_write(fd, s)
 *   core.marshal_set_key(k): core_marshal.c's, refused in a thread worker
 *   and while a thread pool exists (see below)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lcerror.h"

#include "bindings.h"
#include "host.h"
#include "pool.h"
#include "signals.h"

extern char **environ;

/* ---- signals ------------------------------------------------------------ */

/* At lua_close: a host that asked for our handlers and was interrupted
 * ends by that signal, so its exit status is 128 + signum. (The
 * executable sets its exit status itself.) */
static int l_signals_gc(lua_State *L) {
    (void)L;
    int sig = lc_sig_last;
    if (sig && !lc_embedded) {
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

/* The checks here are those that keep C whole (a name must be a string
 * with no NUL and no '=', or the block would say something else).
 *
 * Every "NAME=value" string is made first, into an anchor table only
 * this function can reach; the block is sized from that count and filled
 * from the anchor with no allocation in between. (Counting the table,
 * allocating, then copying in a second pass let a finalizer that ran in
 * between add strings, and the copy wrote past the block.) */
static int l_envblock(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
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
        } else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
            return lc_raise(L, "luaconcurrent: env value of %s must be a "
                                 "string or false, got %s", k,
                              luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_newtable(L);                                    /* t anchor */
    lua_Integer n = 0;
    for (size_t i = 0; environ[i]; i++) {
        const char *eq = strchr(environ[i], '=');
        if (eq == NULL) continue;
        lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
        if (lua_rawget(L, 1) != LUA_TNIL) {             /* overridden */
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_pushstring(L, environ[i]);                  /* copy: environ may change */
        lua_rawseti(L, 2, ++n);
    }
    lua_pushnil(L);
    while (lua_next(L, 1)) {                            /* t anchor k v */
        /* (checked above; a finalizer may have changed t since: checked again) */
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
            if (*k && !strchr(k, '=')) {
                lua_pushfstring(L, "%s=%s", k, v);
                lua_rawseti(L, 2, ++n);
            }
        }
        lua_pop(L, 1);
    }
    envblock *eb = lua_newuserdatauv(L, sizeof *eb + ((size_t)n + 1) * sizeof(char *), 1);
    luaL_setmetatable(L, ENV_MT);                       /* t anchor eb */
    for (lua_Integer i = 1; i <= n; i++) {              /* no allocation: n holds */
        lua_rawgeti(L, 2, i);
        eb->vars[i - 1] = (char *)lua_tostring(L, -1);  /* anchored in the uservalue */
        lua_pop(L, 1);
    }
    eb->vars[n] = NULL;
    eb->n = (size_t)n;
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 3, 1);
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
    if (s > 1e9) s = 1e9;                              /* time_t must hold it */
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    lua_pushboolean(L, r == 0);
    return 1;
}

/* ---- hosts and process workers ----------------------------------------- */

static int l_cpu_count(lua_State *L) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    lua_pushinteger(L, n > 0 ? n : 1);
    return 1;
}

/* How to start a process worker: this executable (it has a --worker
 * mode) or, for the module, the interpreter the host runs. */
static int l_host(lua_State *L) {
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    lua_pushboolean(L, lc_embedded);
    if (n > 0) lua_pushlstring(L, path, (size_t)n);
    else lua_pushnil(L);
    return 2;
}

/* In a process worker: keep the protocol to the runner on a private copy
 * of stdout, and point fd 1 at an in-memory file, so what a task prints
 * (and what its own children print) is kept apart from the answers and can
 * be handed back with them (core.worker_take_stdout). Returns the protocol
 * fd. On failure nothing is left open and fd 1 is as it was. */
static int l_worker_stdout(lua_State *L) {
    fflush(stdout);
    int fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
    int mfd = fd < 0 ? -1 : memfd_create("luaconcurrent-task-stdout", MFD_CLOEXEC);
    if (mfd < 0 || dup2(mfd, 1) < 0) {
        int e = errno;
        if (mfd >= 0) close(mfd);
        if (fd >= 0) close(fd);
        return lc_raise(L, "luaconcurrent: worker cannot set up its stdout: %s",
                        strerror(e));
    }
    close(mfd);
    lua_pushinteger(L, fd);
    return 1;
}

/* What the task printed since the last call; empties the file. */
static int l_worker_take_stdout(lua_State *L) {
    fflush(stdout);
    off_t size = lseek(1, 0, SEEK_END);
    if (size == 0) {                   /* nothing printed: one syscall per task */
        lua_pushliteral(L, "");
        return 1;
    }
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
    lua_Integer fd = luaL_checkinteger(L, 1);
    size_t len, off = 0;
    const char *s = luaL_checklstring(L, 2, &len);
    if (fd < 0 || fd > INT_MAX) return lc_raise(L, "luaconcurrent: bad fd");
    while (off < len) {
        ssize_t n = write((int)fd, s + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return lc_raise(L, "luaconcurrent: worker cannot answer: %s", strerror(errno));
        off += (size_t)n;
    }
    return 0;
}

/* core.isatty(fd): for a progress bar, drawn only on a terminal. */
static int l_isatty(lua_State *L) {
    lua_Integer fd = luaL_checkinteger(L, 1);
    lua_pushboolean(L, fd >= 0 && fd <= INT_MAX && isatty((int)fd));
    return 1;
}

/* core.term_width(fd) -> columns | nil */
static int l_term_width(lua_State *L) {
    lua_Integer fd = luaL_checkinteger(L, 1);
    struct winsize ws;
    if (fd < 0 || fd > INT_MAX || ioctl((int)fd, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0)
        return 0;
    lua_pushinteger(L, ws.ws_col);
    return 1;
}

/* coroutine.resume for task coroutines (exec/coroutine.lua): what the
 * coroutine yielded or returned comes back as its first value, how many
 * followed it, and the next two, always five results. A task's end yields
 * DONE and the function's results, so its result count arrives without a
 * vararg function and select("#") per task. Errors as coroutine.resume:
 * false and the error value. */
static int l_resume(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    int narg = lua_gettop(L) - 1;
    if (!lua_checkstack(co, narg)) return lc_raise(L, "too many arguments to resume");
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "cannot resume dead coroutine");
        return 2;
    }
    lua_xmove(L, co, narg);
    int nres;
    int status = lua_resume(co, L, narg, &nres);
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_xmove(co, L, 1);                           /* the error value */
        return 2;
    }
    if (!lua_checkstack(L, nres + 2)) {
        lua_pop(co, nres);
        return lc_raise(L, "too many results to resume");
    }
    lua_xmove(co, L, nres);                            /* co v1 .. vn */
    lua_settop(L, 4);                                  /* co v1 v2 v3 */
    lua_pushboolean(L, 1);
    lua_replace(L, 1);                                 /* true v1 v2 v3 */
    lua_pushinteger(L, nres > 0 ? nres - 1 : 0);
    lua_insert(L, 3);                                  /* true v1 n-1 v2 v3 */
    return 5;
}

/* core.marshal_set_key(k), guarded (core_marshal.c's does the work): the
 * key is one per process, read without a lock by every thread that makes
 * or checks a frame. So it may change only on a thread that is not a
 * thread worker, and only while no thread pool of this process exists
 * (its workers check every frame in flight with the key it replaces). A
 * process worker sets it once, before its first frame. */
static int l_marshal_set_key(lua_State *L) {
    if (lc_worker_active())
        return lc_raise(L, "luaconcurrent: marshal_set_key cannot be called in a thread worker");
    if (lc_pool_live() > 0)
        return lc_raise(L, "luaconcurrent: marshal_set_key cannot be called while thread "
                           "workers exist (close their loop first)");
    return lc_marshal_l_set_key(L);
}

static const luaL_Reg misc_funcs[] = {
    {"isatty", l_isatty},
    {"term_width", l_term_width},
    {"envblock", l_envblock},
    {"sleep", l_sleep},
    {"now", l_now},
    {"resume", l_resume},
    {"wallclock", l_wallclock},
    {"handle_signals", l_handle_signals},
    {"signal_pending", l_signal_pending},
    {"hup_pending", l_hup_pending},
    {"cpu_count", l_cpu_count},
    {"host", l_host},
    {"worker_stdout", l_worker_stdout},
    {"worker_take_stdout", l_worker_take_stdout},
    {"fd_write", l_fd_write},
    /* Replaces core_marshal.c's unguarded one: core.c opens this file
     * after that one. */
    {"marshal_set_key", l_marshal_set_key},
    {NULL, NULL},
};

/* The envblock metatable, and the functions into the module table on top. */
void lc_core_misc_open(lua_State *L) {
    luaL_newmetatable(L, ENV_MT);
    lua_pop(L, 1);
    luaL_setfuncs(L, misc_funcs, 0);
}
