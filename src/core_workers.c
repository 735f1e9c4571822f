/*
 * core_workers.c — the bindings for function tasks that leave the caller's
 * state: marshalling (core.marshal, core.unmarshal and their string forms),
 * thread workers (loop:pool_start, loop:submit, their result records, and
 * what runs inside a worker: core.worker_check), and the helpers a process
 * worker uses (core.worker_stdout, core.worker_take_stdout, core.fd_write,
 * core.host).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lcerror.h"

#include "core.h"
#include "marshal.h"

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

void lc_core_flush_jobs(loop_ud *u) {
    if (u->pend == NULL) return;
    lc_pool_submit(u->pool, u->pend, u->pend_tail, u->npend);
    u->pend = u->pend_tail = NULL;
    u->npend = 0;
}

/* Stop the workers: finished and unstarted jobs join the done list. */
void lc_core_stop_pool(loop_ud *u) {
    if (u->pool == NULL) return;
    lc_watch_del(u->loop, &u->poolw);
    jobs_append(&u->fdone, &u->fdone_tail, lc_pool_stop(u->pool));
    jobs_append(&u->fdone, &u->fdone_tail, u->pend);
    u->pend = u->pend_tail = NULL;
    u->npend = 0;
    lc_pool_free(u->pool);
    u->pool = NULL;
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
    if (job->t_start > 0) {
        double end = job->t_end > 0 ? job->t_end : lc_now();
        lc_set_num(L, "time_start", wall_offset + job->t_start);
        lc_set_num(L, "time_end", wall_offset + end);
        lc_set_num(L, "time_run", end - job->t_start);
    }
}

/* Records of finished function jobs, appended to the list on top. */
void lc_core_push_job_records(lua_State *L, loop_ud *u) {
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
    loop_ud *u = lc_core_check_loop(L);
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
    loop_ud *u = lc_core_check_loop(L);
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

void lc_core_free_jobs(loop_ud *u) {
    jobs_free(u->fdone);
    u->fdone = u->fdone_tail = NULL;
}

void lc_core_workers_open(lua_State *L) {
    if (luaL_newmetatable(L, BYTES_MT)) {
        lua_pushcfunction(L, bytes_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, l_bytes_size);
        lua_setfield(L, -2, "size");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

const luaL_Reg lc_core_worker_methods[] = {
    {"pool_start", l_pool_start},
    {"submit", l_submit},
    {NULL, NULL},
};

const luaL_Reg lc_core_worker_funcs[] = {
    {"marshal", l_marshal},
    {"unmarshal", l_unmarshal},
    {"marshal_string", l_marshal_string},
    {"unmarshal_string", l_unmarshal_string},
    {"marshal_key", lc_marshal_l_key},
    {"marshal_set_key", lc_marshal_l_set_key},
    {"unmarshal_unchecked", lc_marshal_l_unmarshal_unchecked},
    {"worker_check", l_worker_check},
    {"cancel_sentinel", l_cancel_sentinel},
    {"cpu_count", l_cpu_count},
    {"host", l_host},
    {"worker_stdout", l_worker_stdout},
    {"worker_take_stdout", l_worker_take_stdout},
    {"fd_write", l_fd_write},
    {NULL, NULL},
};
