/*
 * bindings.h — private to the binding files; not an API (luaopen_luaconcurrent_core
 * in core.c is). One binding file per engine object, as luv does:
 *
 *   core_loop.c     the loop userdata: processes, Lua timers, records,
 *                   poll/kill/write/close; it knows nothing of jobs
 *   core_pool.c     thread workers: loop:pool_start, loop:submit, their
 *                   records; plugs into a loop through lc_core_ext
 *   core_marshal.c  core.marshal/unmarshal and the bytes userdata
 *   core_misc.c     envblock, clocks, sleep, signals, and the small helpers
 *                   a process worker uses
 *   core_file.c     log files written a whole line per write() (joblog)
 *
 * Calls only go down this list's dependencies (core_pool.c uses the loop's
 * and the bytes' helpers below); nothing calls back up, and core.c only
 * registers what each file opens.
 */
#ifndef LC_BINDINGS_H
#define LC_BINDINGS_H

#include "lauxlib.h"
#include "lua.h"

#include "loop.h"
#include "marshal.h"
#include "proc.h"
#include "queue.h"

#define LOOP_MT "luaconcurrent.loop"
#define BYTES_MT "luaconcurrent.bytes"
#define ENV_MT "luaconcurrent.envblock"

/* The loop userdata's user values. */
enum {
    LC_UV_NAMES = 1,     /* the marshal name map of the run (pool_start) */
    LC_UV_RECORDS,       /* the record list poll is building (see poll) */
    LC_UV_COUNT = LC_UV_RECORDS
};

/* An extension of a loop (the thread pool): work that finishes outside
 * the loop's own processes and timers, and reports through poll. The loop
 * calls it and owns it (ops->free); it never calls the loop back except
 * through the helpers declared here. */
typedef struct lc_core_ext lc_core_ext;
typedef struct lc_core_ext_ops {
    void (*flush)(lc_core_ext *x);            /* before a wait: hand work over */
    int (*ready)(const lc_core_ext *x);       /* records waiting: do not wait */
    size_t (*pending)(const lc_core_ext *x);  /* tasks whose record is still to
                                               * come: poll waits for them,
                                               * loop:running() counts them */
    /* Append its records to the list on top of L, taking each out of its
     * own queue only once it is in the list (memory errors lose none). */
    void (*push_records)(lua_State *L, lc_core_ext *x);
    void (*stop)(lc_core_ext *x);             /* closing: stop; all of it becomes records */
    void (*free)(lc_core_ext *x);             /* the loop goes: free all, no Lua */
} lc_core_ext_ops;
struct lc_core_ext {
    const lc_core_ext_ops *ops;
};

typedef LC_QUEUE(lc_proc) lc_proc_queue;
typedef struct lc_ltimer lc_ltimer;                /* core_loop.c */
typedef LC_QUEUE(lc_ltimer) lc_ltimer_queue;

/* The loop userdata: it owns every proc, timer and extension of a run. */
typedef struct loop_ud {
    lc_loop *loop;              /* NULL once closed */
    lc_proc *running;           /* doubly linked through prev/next */
    size_t nrunning;
    lc_proc_queue done;         /* finished, not yet returned; through next */
    lc_proc *sdata;             /* stream procs with stdout not yet returned */
    long long next_id;          /* ids of procs, jobs and timers: one space */
    lc_core_ext *ext;           /* NULL, or the thread pool */
    /* Lua timers: armed ones, indexed by id (ids only grow, so the index
     * is sorted by appending), and expired ones not yet returned. */
    struct lc_tslot *tindex;
    size_t ntindex, captindex, ntombs;
    lc_ltimer_queue fired;
} loop_ud;

/* ---- core_loop.c ---- */
loop_ud *lc_core_check_loop(lua_State *L);      /* argument 1, open */
long long lc_core_new_id(loop_ud *u);
void lc_core_loop_open(lua_State *L);           /* module table on top */

/* ---- core_marshal.c ---- */
typedef struct {
    lc_bytes b;
} bytes_ud;
bytes_ud *lc_core_new_bytes(lua_State *L);      /* pushed; frees its bytes at gc */
void lc_core_marshal_open(lua_State *L);

/* ---- core_pool.c, core_misc.c ---- */
void lc_core_pool_open(lua_State *L);
void lc_core_misc_open(lua_State *L);

/* ---- core_file.c ---- */
/* The log-file metatable, and core.file_open / core.writable. */
void lc_core_file_open(lua_State *L);

/* The environment block a loop spawns with (built by core.envblock). */
typedef struct {
    size_t n;
    char *vars[];               /* n entries + NULL; strings anchored in uservalue */
} envblock;

static inline void lc_set_bool(lua_State *L, const char *k, int v) {
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static inline void lc_set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static inline void lc_set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static inline void lc_set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

#endif
