/*
 * core.h — shared by the binding files (core.c: loops, processes, records,
 * environments, clocks, signals; core_workers.c: marshalling, thread and
 * process workers). Not an API: luaopen_luaconcurrent_core is.
 */
#ifndef LC_CORE_H
#define LC_CORE_H

#include "lauxlib.h"
#include "lua.h"

#include "loop.h"
#include "pool.h"
#include "proc.h"

#define LOOP_MT "luaconcurrent.loop"
#define BYTES_MT "luaconcurrent.bytes"

/* The loop userdata: it owns every proc and job of a run. */
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

loop_ud *lc_core_check_loop(lua_State *L);

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

/* core_workers.c */
void lc_core_flush_jobs(loop_ud *u);
void lc_core_stop_pool(loop_ud *u);
void lc_core_free_jobs(loop_ud *u);
void lc_core_push_job_records(lua_State *L, loop_ud *u);
void lc_core_workers_open(lua_State *L);       /* metatables */
extern const luaL_Reg lc_core_worker_methods[];  /* loop: pool_start, submit */
extern const luaL_Reg lc_core_worker_funcs[];    /* core.marshal, ... */

#endif
