/*
 * core_loop.c — the loop userdata: processes, Lua timers and the records
 * poll returns.
 *
 *   core.new_loop() -> loop
 *   loop:spawn(argv, envblock|nil, cwd|nil, input|nil, timeout, kill_grace
 *              [, mode [, max_capture]]) -> id | nil, message, errno_name
 *        (mode true: a stream, stdin stays open for loop:write, stdout
 *        comes as {id=, data=} records; "frames": a stream whose stdout is
 *        marshal frames (marshal.h), each after its length (4 bytes,
 *        little-endian), handed over unmarshalled, one record a frame:
 *        {id=, frame=true, n=, ...values} or, for a frame that fails its
 *        check or is too long, {id=, frame=true, error=} (see max_frame;
 *        bytes after the last whole frame are in the final record's
 *        stdout); "live": the output is
 *        captured
 *        and also comes as it arrives, {id=, data= [, stderr=true]}, the
 *        last bytes in the record's live_stdout / live_stderr; max_capture: bytes of each output kept in
 *        memory, the whole output then in the record's stdout_file /
 *        stderr_file, an unlinked temporary file, with stdout_size ...)
 *   loop:poll([max_wait]) -> { record, ... }
 *   loop:running() -> n          processes and jobs whose record is to come
 *   loop:kill(id) -> true | false           kill one task's process group
 *   loop:terminate(id) -> true | false      TERM it, KILL after its kill_grace
 *   loop:write(id, s), loop:close_input(id) stdin of a stream proc
 *   loop:timer(when) -> id       when on the core.now() clock; its record
 *                                {id =, timer = true} comes through poll
 *   loop:cancel_timer(id) -> true if it was armed, false otherwise
 *   loop:close() -> { record, ... }         kills and reaps what is left
 *   loop:max_frame([bytes]) -> bytes        the largest frame a "frames"
 *        proc may send (256 MiB unless set); a longer length, or a frame
 *        that fails its check, gives its last frame record {id=,
 *        frame=true, error= [, size=, limit=]}, drops what else it wrote
 *        and kills it (its final record follows)
 *
 * Re-entrancy: poll and close build records with the loop busy; a call
 * of any loop method then (from a finalizer) raises "loop is busy", and
 * its __gc / __close only ask for the teardown, done when poll is over.
 *
 * Ids of processes, jobs and timers are one space. The loop userdata owns
 * every proc and timer, and its extension (the thread pool, core_pool.c);
 * none outlives it (close, __gc and __close all end in one idempotent
 * teardown).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "lcerror.h"

#include "bindings.h"
#include "hugemem.h"
#include "marshal.h"
#include "signals.h"

#define TEARDOWN_LIMIT 2.0  /* seconds to wait for killed tasks' pipes */

/* A Lua timer: a small allocation around the loop's intrusive timer. */
struct lc_ltimer {
    lc_timer t;                 /* in the loop's heap while armed */
    long long id;
    loop_ud *u;
    lc_ltimer *next;            /* in u->fired once expired */
};

/* One entry of the index of armed timers; t is NULL once it left. */
struct lc_tslot {
    long long id;
    lc_ltimer *t;
};

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

/* lc_proc.frames: not a frames proc, one, or one whose frames stopped
 * making sense (a length over the limit, a frame that failed its check):
 * it is being killed and the rest of what it writes is dropped. */
enum { FRAMES_NO, FRAMES_OK, FRAMES_BROKEN };

/* Bytes the len bytes at data must hold before their first frame is
 * whole: its length + 4, or 4 while that is not known. In 64 bits: the
 * peer's 0xFFFFFFFF + 4 must not wrap a 32-bit size_t. */
static uint64_t frame_need(const char *data, size_t len) {
    if (len < 4) return 4;
    const unsigned char *h = (const unsigned char *)data;
    return 4 + ((uint64_t)h[0] | (uint64_t)h[1] << 8 | (uint64_t)h[2] << 16 |
                (uint64_t)h[3] << 24);
}

/* A stream proc's stdout got bytes: poll hands them over (a frames proc's
 * once a frame is whole: Lua never sees a piece of one; or at once, if
 * the frame's length is over the limit, so poll can end the worker
 * instead of waiting for gigabytes that will never come). */
static void on_proc_data(lc_proc *p) {
    loop_ud *u = p->data;
    if (p->frames == FRAMES_BROKEN) {
        p->out.len = 0;                 /* a peer that lied: nothing it says counts */
        return;
    }
    if (p->data_queued) return;
    if (p->frames) {
        uint64_t need = frame_need(p->out.data, p->out.len);
        if ((uint64_t)p->out.len < need && need - 4 <= u->max_frame) return;
    }
    p->data_queued = 1;
    p->data_next = u->sdata;
    u->sdata = p;
}

static void on_proc_done(lc_proc *p) {
    loop_ud *u = p->data;
    sdata_unlink(u, p);                 /* what is left goes in its record */
    list_unlink(u, p);
    LC_QUEUE_PUSH(&u->done, p, next);
}

/* ---- timers --------------------------------------------------------------- */

/* The slot of an armed timer, or NULL. */
static struct lc_tslot *tindex_find(loop_ud *u, long long id) {
    size_t lo = 0, hi = u->ntindex;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->tindex[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < u->ntindex && u->tindex[lo].id == id && u->tindex[lo].t)
        return &u->tindex[lo];
    return NULL;
}

/* Drop the slot; squeeze the holes out once they are half the index, so
 * each removal costs O(log n) amortised. */
static void tindex_remove(loop_ud *u, struct lc_tslot *s) {
    s->t = NULL;
    if (++u->ntombs * 2 < u->ntindex) return;
    size_t n = 0;
    for (size_t i = 0; i < u->ntindex; i++)
        if (u->tindex[i].t) u->tindex[n++] = u->tindex[i];
    u->ntindex = n;
    u->ntombs = 0;
}

static void on_timer(lc_loop *loop, lc_timer *t) {
    lc_ltimer *lt = t->data;
    loop_ud *u = lt->u;
    (void)loop;
    tindex_remove(u, tindex_find(u, lt->id));
    LC_QUEUE_PUSH(&u->fired, lt, next);     /* in expiry order: the heap's */
}

static void ltimer_free(loop_ud *u, lc_ltimer *lt) {
    lc_timer_release(u->loop, &lt->t);     /* cancels too */
    free(lt);
}

/* loop:timer(when) -> id */
static int l_timer(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    double when = luaL_checknumber(L, 2);
    if (when != when) return lc_raise(L, "luaconcurrent: timer time is NaN");
    if (u->ntindex == u->captindex) {
        size_t cap = u->captindex ? 2 * u->captindex : 64;
        struct lc_tslot *ix = realloc(u->tindex, cap * sizeof *ix);
        if (ix == NULL) return lc_raise(L, "luaconcurrent: out of memory");
        u->tindex = ix;
        u->captindex = cap;
    }
    lc_ltimer *lt = calloc(1, sizeof *lt);
    if (lt == NULL || lc_timer_init(u->loop, &lt->t, on_timer, lt) != 0) {
        free(lt);
        return lc_raise(L, "luaconcurrent: out of memory");
    }
    lt->u = u;
    lt->id = lc_core_new_id(u);
    lc_timer_arm(u->loop, &lt->t, when);
    u->tindex[u->ntindex].id = lt->id;     /* ids only grow: still sorted */
    u->tindex[u->ntindex].t = lt;
    u->ntindex++;
    lua_pushinteger(L, lt->id);
    return 1;
}

/* loop:cancel_timer(id) -> true if it was armed (it will give no record),
 * false otherwise (unknown, or already expired). */
static int l_cancel_timer(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    struct lc_tslot *s = tindex_find(u, luaL_checkinteger(L, 2));
    if (s) {
        lc_ltimer *lt = s->t;
        tindex_remove(u, s);
        ltimer_free(u, lt);
    }
    lua_pushboolean(L, s != NULL);
    return 1;
}

static void free_timers(loop_ud *u) {
    lc_ltimer *lt;
    for (size_t i = 0; i < u->ntindex; i++)
        if (u->tindex[i].t) ltimer_free(u, u->tindex[i].t);
    free(u->tindex);
    u->tindex = NULL;
    u->ntindex = u->captindex = u->ntombs = 0;
    for (;;) {
        LC_QUEUE_POP(&u->fired, lt, next);
        if (lt == NULL) break;
        ltimer_free(u, lt);
    }
}

/* ---- teardown ------------------------------------------------------------ */

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
    if (u->ext) {
        u->ext->ops->free(u->ext);
        u->ext = NULL;
    }
    free_timers(u);
    while ((p = u->running) != NULL) {
        list_unlink(u, p);
        lc_proc_free(p);                   /* synchronous kill and reap */
    }
    for (;;) {
        LC_QUEUE_POP(&u->done, p, next);
        if (p == NULL) break;
        lc_proc_free(p);
    }
    lc_loop_free(u->loop);
    u->loop = NULL;
}

/* ---- records ------------------------------------------------------------- */

/* The list of records being built is anchored in the loop's user value
 * LC_UV_RECORDS until it is returned. A record leaves its queue only once
 * it is in that list, and leaves it as soon as it is (frames one by one,
 * through u->frame_at; a spill file stays the proc's until then), so a
 * memory error midway loses nothing and hands nothing over twice: the
 * next poll (or close) returns the list with what it already held, and
 * goes on from there. The records are built with the loop busy (see
 * busy_call and bindings.h), so no finalizer can free what they read. */
static void records_begin(lua_State *L) {
    if (lua_getiuservalue(L, 1, LC_UV_RECORDS) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, LC_UV_RECORDS);
    }
}

static void records_end(lua_State *L) {        /* the list stays on top */
    lua_pushnil(L);
    lua_setiuservalue(L, 1, LC_UV_RECORDS);
}

static int spill_close(lua_State *L) {
    luaL_Stream *s = luaL_checkudata(L, 1, LUA_FILEHANDLE);
    int ok = fclose(s->f) == 0;
    return luaL_fileresult(L, ok, NULL);
}

/* The spill file of an output past max_capture, as a Lua file read from
 * its start (<k>_file), with the whole size (<k>_size). The Lua file has
 * a descriptor of its own (a dup): the proc keeps the spill file until
 * its record is in the list, so a record dropped by a memory error takes
 * only its copy with it (io's __gc closes it) and the next try makes
 * another. One that cannot be had (no fd left) is an error, as a memory
 * error is: the output is not silently cut at max_capture. */
static void set_spill(lua_State *L, const char *k, lc_proc *p, lc_buf *b) {
    if (b->spill_fd < 0) return;
    lua_pushfstring(L, "%s_size", k);
    lua_pushinteger(L, (lua_Integer)b->total);
    lua_rawset(L, -3);
    luaL_Stream *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->closef = NULL;                                  /* not open yet */
    s->f = NULL;
    luaL_setmetatable(L, LUA_FILEHANDLE);
    int fd = fcntl(b->spill_fd, F_DUPFD_CLOEXEC, 3);
    if (fd >= 0) {
        lseek(fd, 0, SEEK_SET);                        /* (the offset is shared) */
        s->f = fdopen(fd, "rb");
    }
    if (s->f == NULL) {
        int e = errno;
        if (fd >= 0) close(fd);
        lc_raise(L, "luaconcurrent: cannot hand over the %s file of task %I: %s", k,
                 (LUAI_UACINT)p->tag, strerror(e));
    }
    s->closef = spill_close;                           /* Lua's from here */
    lua_pushfstring(L, "%s_file", k);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

static void set_output(lua_State *L, const char *k, lc_proc *p, lc_buf *b) {
    lc_mem_offer(&b->data, &b->cap, b->len);    /* no second copy (hugemem.h) */
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lc_mem_offer_end();
    lua_setfield(L, -2, k);
    set_spill(L, k, p, b);
}

static void push_record(lua_State *L, lc_proc *p) {
    lua_createtable(L, 0, 17);                         /* rec */
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
    if (p->timeout > 0) lc_set_num(L, "limit", p->timeout);
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
    set_output(L, "stdout", p, &p->out);
    set_output(L, "stderr", p, &p->err);
    if (p->live) {          /* what arrived after the last data record */
        lua_pushlstring(L, p->live_out.data ? p->live_out.data : "", p->live_out.len);
        lua_setfield(L, -2, "live_stdout");
        lua_pushlstring(L, p->live_err.data ? p->live_err.data : "", p->live_err.len);
        lua_setfield(L, -2, "live_stderr");
    }
}

/* Records of every finished proc, in completion order. The proc (and its
 * output buffers) is freed once its record is in the list, so only one
 * extra copy of one output exists at any time. */
static void push_done(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)lua_rawlen(L, -1);
    while (u->done.head) {
        lc_proc *p;
        push_record(L, u->done.head);                  /* list rec */
        lua_rawseti(L, -2, ++i);                       /* list */
        LC_QUEUE_POP(&u->done, p, next);
        lc_proc_free(p);
    }
}

/* One {id = , data = [, stderr = true]} record of b's bytes; b is emptied
 * (it keeps its memory). */
static void push_data(lua_State *L, lua_Integer *i, lc_proc *p, lc_buf *b, int err) {
    if (b->len == 0) return;
    lua_createtable(L, 0, 3);
    lc_set_int(L, "id", p->tag);
    lua_pushlstring(L, b->data, b->len);
    lua_setfield(L, -2, "data");
    if (err) lc_set_bool(L, "stderr", 1);
    lua_rawseti(L, -2, ++*i);
    b->len = 0;
}

/* Under pcall: the frame of u (lightuserdata 2) at u->frame_at in
 * u->frame_proc's stdout, of length 3 -> its values in the record (1)
 * from index 1, and their count in n. A worker's frames are data only,
 * tagged with its own up-key (marshal.h: the trust rule). The pointer into
 * the buffer is made just before it is read; the loop is busy, so nothing
 * moves it. */
_Static_assert(sizeof ((lc_proc *)0)->frame_key == LC_MARSHAL_KEY_LEN, "lc_proc.frame_key");

static int unpack_frame(lua_State *L) {
    const loop_ud *u = lua_touserdata(L, 2);
    size_t len = (size_t)lua_tointeger(L, 3);
    const lc_proc *p = u->frame_proc;
    lua_settop(L, 1);
    if (!p->has_frame_key) return lc_raise(L, "%s", LC_WEAK_KEY_MSG);
    const char *data = p->out.data + u->frame_at + 4;
    int n = lc_unmarshal_data(L, data, len, p->frame_key, NULL, NULL);
    for (int k = n; k >= 1; k--) lua_rawseti(L, 1, k);
    lua_pushinteger(L, n);
    lua_setfield(L, 1, "n");
    return 0;
}

/* Drop the bytes of the frames already in the record list from the front
 * of their proc's stdout (the bytes of a frame not yet whole move to the
 * front). Called once push_frames is over, however it ended. */
static void frames_settle(loop_ud *u) {
    lc_proc *p = u->frame_proc;
    if (p == NULL) return;
    lc_buf *b = &p->out;
    if (u->frame_at > 0) {
        memmove(b->data, b->data + u->frame_at, b->len - u->frame_at);
        b->len -= u->frame_at;
    }
    u->frame_proc = NULL;
    u->frame_at = 0;
}

/* p's frames make no sense any more: its last record says why (on top:
 * the record), nothing else it wrote counts, and it is ended (by
 * push_stream_records, once it is out of the list it walks). */
static void frames_broken(lua_State *L, lua_Integer *i, loop_ud *u, lc_proc *p) {
    lua_rawseti(L, -2, ++*i);
    p->frames = FRAMES_BROKEN;
    p->out.len = 0;
    u->frame_at = 0;
}

/* The whole frames in a frames proc's stdout, one record each. A frame is
 * read into this buffer and unmarshalled from it: a big answer is copied
 * once, into its value, with no string of the frame in between. Each
 * frame counts as handed over (u->frame_at) as soon as its record is in
 * the list. A length over the limit, or a frame that fails its check,
 * breaks the proc: {id =, frame = true, error =, size =, limit =}. */
static void push_frames(lua_State *L, lua_Integer *i, loop_ud *u, lc_proc *p) {
    u->frame_proc = p;
    u->frame_at = 0;
    for (;;) {
        size_t left = p->out.len - u->frame_at;
        if (left < 4) break;
        uint64_t need = frame_need(p->out.data + u->frame_at, left);
        if (need - 4 > u->max_frame) {
            lua_createtable(L, 0, 5);
            lc_set_int(L, "id", p->tag);
            lc_set_bool(L, "frame", 1);
            lc_set_str(L, "error", "frame over the size limit");
            lc_set_int(L, "size", (lua_Integer)(need - 4));
            lc_set_int(L, "limit", (lua_Integer)u->max_frame);
            frames_broken(L, i, u, p);
            break;
        }
        if ((uint64_t)left < need) break;
        lua_createtable(L, 10, 3);                     /* rec */
        lc_set_int(L, "id", p->tag);
        lc_set_bool(L, "frame", 1);
        lua_pushcfunction(L, unpack_frame);
        lua_pushvalue(L, -2);
        lua_pushlightuserdata(L, u);
        lua_pushinteger(L, (lua_Integer)(need - 4));
        int st = lua_pcall(L, 3, 0, 0);
        if (st == LUA_ERRMEM) lua_error(L);            /* not the frame's fault: retried */
        if (st != LUA_OK) {
            lua_setfield(L, -2, "error");
            frames_broken(L, i, u, p);
            break;
        }
        lua_rawseti(L, -2, ++*i);
        u->frame_at += (size_t)need;
    }
    frames_settle(u);
}

/* New bytes of stream procs (stdout) and live procs (both outputs), as
 * {id = , data = [, stderr = true]} records. */
static void push_stream_records(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)lua_rawlen(L, -1);
    while (u->sdata) {
        lc_proc *p = u->sdata;
        if (p->live) {
            push_data(L, &i, p, &p->live_out, 0);
            push_data(L, &i, p, &p->live_err, 1);
        } else if (p->frames) {
            push_frames(L, &i, u, p);
        } else {
            push_data(L, &i, p, &p->out, 0);
        }
        u->sdata = p->data_next;
        p->data_queued = 0;
        p->data_next = NULL;
        /* Out of the list first: a kill may finish it at once (on_proc_done). */
        if (p->frames == FRAMES_BROKEN) lc_proc_kill(p);
    }
}

/* Expired timers, in expiry order, as {id = , timer = true} records. */
static void push_timer_records(lua_State *L, loop_ud *u) {
    lua_Integer i = (lua_Integer)lua_rawlen(L, -1);
    while (u->fired.head) {
        lc_ltimer *lt;
        lua_createtable(L, 0, 2);
        lc_set_int(L, "id", u->fired.head->id);
        lc_set_bool(L, "timer", 1);
        lua_rawseti(L, -2, ++i);
        LC_QUEUE_POP(&u->fired, lt, next);
        ltimer_free(u, lt);
    }
}

static void push_all_records(lua_State *L, loop_ud *u) {
    push_done(L, u);
    if (u->ext) u->ext->ops->push_records(L, u->ext);
    push_stream_records(L, u);
    push_timer_records(L, u);
}

/* ---- loop methods -------------------------------------------------------- */

static void check_not_busy(lua_State *L, const loop_ud *u) {
    if (u->busy)
        lc_raise(L, "luaconcurrent: loop is busy (a finalizer cannot call the loop "
                    "while it builds records)");
}

loop_ud *lc_core_check_loop(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    check_not_busy(L, u);
    if (u->loop == NULL) lc_raise(L, "luaconcurrent: loop is closed");
    return u;
}

long long lc_core_new_id(loop_ud *u) { return ++u->next_id; }

static int l_new_loop(lua_State *L) {
    loop_ud *u = lua_newuserdatauv(L, sizeof *u, LC_UV_COUNT);  /* created closed */
    memset(u, 0, sizeof *u);
    u->max_frame = LC_MAX_FRAME_DEFAULT;
    luaL_setmetatable(L, LOOP_MT);
    u->loop = lc_loop_new();
    if (u->loop == NULL)
        return lc_raise(L, "luaconcurrent: cannot create event loop: %s",
                          strerror(errno));
    return 1;
}

/* argv strings stay anchored by the argv table (argument 2) throughout.
 * Its length comes from Lua (a __len may say anything): it is bounded
 * before it is used in a size, so (n + 1) * sizeof cannot wrap. */
static char **build_argv(lua_State *L, int idx) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (n < 1) lc_raise(L, "luaconcurrent: empty argv");
    if (n > INT_MAX - 1)                               /* the kernel's bound */
        lc_raise(L, "luaconcurrent: argv has too many entries (%I)", (LUAI_UACINT)n);
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
    lua_settop(L, 9);
    const char *mode = lua_type(L, 8) == LUA_TSTRING ? lua_tostring(L, 8) : NULL;
    int frames = mode && strcmp(mode, "frames") == 0;
    if (mode && strcmp(mode, "live") == 0)
        spec.live = 1;
    else
        spec.stream = frames || lua_toboolean(L, 8);
    lua_Integer cap = luaL_optinteger(L, 9, 0);
    spec.max_capture = cap > 0 ? (size_t)cap : 0;
    spec.argv = build_argv(L, 2);                      /* argv block at 10 */
    if (!lua_isnoneornil(L, 3))
        spec.envp = ((envblock *)luaL_checkudata(L, 3, ENV_MT))->vars;
    spec.cwd = opt_cstring(L, 4, "cwd", &cwdlen);
    spec.input = opt_cstring(L, 5, NULL, &spec.input_len);
    spec.timeout = luaL_optnumber(L, 6, 0);
    spec.kill_grace = luaL_optnumber(L, 7, LC_KILL_GRACE);
    /* The arguments' checks allocate (a finalizer may have closed the
     * loop meanwhile: bindings.h's rule). */
    u = lc_core_check_loop(L);

    lc_proc *p;
    int e = lc_proc_spawn(u->loop, &spec, on_proc_done, on_proc_data, u, &p,
                          errbuf, sizeof errbuf);
    if (e) {
        luaL_pushfail(L);
        lua_pushstring(L, errbuf);
        lua_pushstring(L, lc_errno_name(e));
        return 3;
    }
    p->tag = lc_core_new_id(u);
    p->frames = frames ? FRAMES_OK : FRAMES_NO;
    /* Its up-key, derived once: every frame it sends is checked with it. */
    if (frames) p->has_frame_key = lc_marshal_worker_key(p->tag, 1, p->frame_key) == 0;
    p->next = u->running;
    if (u->running) u->running->prev = p;
    u->running = p;
    u->nrunning++;
    lua_pushinteger(L, p->tag);
    return 1;
}

static int has_records(const loop_ud *u) {
    return u->done.head || u->sdata || u->fired.head ||
           (u->ext && u->ext->ops->ready(u->ext));
}

static size_t ext_pending(const loop_ud *u) {
    return u->ext ? u->ext->ops->pending(u->ext) : 0;
}

/* Under pcall, with the loop (1) busy: the list of records. */
static int build_records(lua_State *L) {
    loop_ud *u = lua_touserdata(L, 1);
    records_begin(L);
    push_all_records(L, u);
    records_end(L);
    return 1;
}

static void teardown(loop_ud *u) {
    if (u->loop == NULL) return;
    kill_all(u);
    free_all(u);
}

/* f(loop) under pcall with the loop (argument 1) busy: re-entrant calls
 * raise, and a __gc / __close meanwhile only asks for the teardown, which
 * is done here once f is over, whatever its outcome. An error of f is
 * raised again after that; otherwise f's one result is returned. */
static int busy_call(lua_State *L, loop_ud *u, lua_CFunction f) {
    lua_pushcfunction(L, f);
    lua_pushvalue(L, 1);
    u->busy = 1;
    int st = lua_pcall(L, 1, 1, 0);
    u->busy = 0;
    frames_settle(u);               /* (a memory error in push_frames) */
    if (u->close_pending) {
        u->close_pending = 0;
        teardown(u);
    }
    if (st != LUA_OK) return lua_error(L);
    return 1;
}

/* Run the loop until at least one record is ready, max_wait passed (nil:
 * no limit) or a signal interrupted the wait; return the records.
 * Something to wait for: a running proc, a pending job, an armed timer
 * (a Lua one, or a proc's). */
static int l_poll(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    double max_wait = luaL_optnumber(L, 2, -1);
    double limit = max_wait >= 0 ? lc_now() + max_wait : 0;
    /* With a limit, wait it out even with nothing running: the Lua side
     * may use it as its timer. */
    if (u->ext) u->ext->ops->flush(u->ext);
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
    while (!has_records(u) && !(guarded && lc_sig_pending) &&
           (max_wait >= 0 || u->nrunning > 0 || ext_pending(u) > 0 ||
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
    lua_settop(L, 1);
    return busy_call(L, u, build_records);
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

/* loop:terminate(id) -> true | false: SIGTERM to the task's group, SIGKILL
 * after its kill_grace (a remote worker that loses its channel ends its
 * tasks as a deadline would). */
static int l_terminate(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    lc_proc *p = find_proc(u, luaL_checkinteger(L, 2));
    if (p) lc_proc_terminate(p);
    lua_pushboolean(L, p != NULL);
    return 1;
}

/* loop:write(id, bytes) -> true | nil, message: to a stream proc's stdin. */
static int l_write(lua_State *L) {
    lua_Integer id = luaL_checkinteger(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);  /* (may allocate: first) */
    loop_ud *u = lc_core_check_loop(L);
    lc_proc *p = find_proc(u, id);
    int e = p && p->stream ? lc_proc_write(p, data, len) : ESRCH;
    if (e) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot write to task %I: %s", (LUAI_UACINT)id,
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

/* Processes and jobs only: timers are not tasks. */
static int l_running(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    lua_pushinteger(L, (lua_Integer)(u->nrunning + ext_pending(u)));
    return 1;
}

/* ---- teardown: close, __gc and __close ------------------------------- */

static int l_close(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    check_not_busy(L, u);
    lua_settop(L, 1);
    if (u->loop == NULL) {
        lua_newtable(L);
        return 1;
    }
    kill_all(u);
    if (u->ext) u->ext->ops->stop(u->ext);
    /* Whatever did not finish in time is recorded as it stands. */
    for (lc_proc *p = u->running; p; p = u->running) {
        sdata_unlink(u, p);             /* its stdout goes in its record */
        list_unlink(u, p);
        p->incomplete = 1;
        LC_QUEUE_PUSH(&u->done, p, next);
    }
    busy_call(L, u, build_records);     /* (raises on a memory error: call again) */
    if (u->loop) free_all(u);
    return 1;
}

/* __gc and __close. During a poll or close of this loop (a finalizer, a
 * coroutine closed by one) it only asks for the teardown, which that call
 * does once its records are built. */
static int l_gc(lua_State *L) {
    loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
    if (u->busy) u->close_pending = 1;
    else teardown(u);
    return 0;
}

/* loop:max_frame([bytes]) -> bytes: the largest frame a "frames" proc of
 * this loop may send (LC_MAX_FRAME_DEFAULT unless set); a longer one ends
 * it. Sets it if given; returns it. */
static int l_max_frame(lua_State *L) {
    loop_ud *u = lc_core_check_loop(L);
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer n = luaL_checkinteger(L, 2);
        if (n < 1 || (uint64_t)n > UINT32_MAX)
            return lc_raise(L, "luaconcurrent: max_frame must be 1 to %I bytes, got %I",
                            (LUAI_UACINT)UINT32_MAX, (LUAI_UACINT)n);
        u->max_frame = (size_t)n;
    }
    lua_pushinteger(L, (lua_Integer)u->max_frame);
    return 1;
}

static const luaL_Reg loop_methods[] = {
    {"spawn", l_spawn},
    {"poll", l_poll},
    {"running", l_running},
    {"kill", l_kill},
    {"terminate", l_terminate},
    {"write", l_write},
    {"close_input", l_close_input},
    {"timer", l_timer},
    {"cancel_timer", l_cancel_timer},
    {"close", l_close},
    {"max_frame", l_max_frame},
    {NULL, NULL},
};

static const luaL_Reg loop_meta[] = {
    {"__gc", l_gc},
    {"__close", l_gc},
    {"__index", NULL},
    {NULL, NULL},
};

/* The loop metatable (its methods in __index, where core_pool.c adds
 * its own) and core.new_loop in the module table on top. */
void lc_core_loop_open(lua_State *L) {
    if (luaL_newmetatable(L, LOOP_MT)) {               /* mod mt */
        luaL_setfuncs(L, loop_meta, 0);
        luaL_newlib(L, loop_methods);                  /* mod mt methods */
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new_loop);
    lua_setfield(L, -2, "new_loop");
}
