/*
 * marshal.h — copying Lua values between states as bytes.
 *
 * One format serves thread workers (bytes handed over in memory) and
 * process workers (bytes over a pipe). What crosses:
 *   nil, booleans, integers and floats (kept apart), strings (any bytes);
 *   tables, with sharing and cycles kept within one message, metatables too;
 *   Lua functions, as bytecode with every upvalue copied the same way, and
 *   upvalues that closures of one message share stay shared;
 *   modules (tables in package.loaded) and the functions they hold, by
 *   name: the receiver uses its own, requiring it if needed, after the
 *   prefixes of its name the sender had loaded ("term" before
 *   "term.cursor"). A table or function that several names hold goes by
 *   the shortest (then the smallest): the choice is the same every run.
 * A function's environment — an upvalue named _ENV that holds the
 * sender's globals, or any table with a metatable (busted's environment
 * for functions written in a spec file, a sandbox layered over _G) —
 * binds to the receiver's globals; nothing of it is copied. Globals a
 * function reads are therefore the worker's, as for any script's function:
 * pass data as arguments or upvalues. An _ENV that is a plain table
 * (load(src, name, "t", {x = 1})) is data and is copied.
 * Anything else (userdata, coroutines, unnamed C functions) is an error
 * naming the value's path, e.g. "upvalue 'fh' of function at x.lua:3".
 *
 * Frames are checked. Each lc_marshal call makes one frame: a magic and
 * version, the values, and a keyed hash (SipHash-2-4) of both under the
 * run's key. lc_unmarshal refuses, as a Lua error, a frame whose magic or
 * hash is wrong — corrupt, cut short, or made without the key — before it
 * reads any of it, so bytecode reaches lua_load only from a holder of the
 * key. Inside a frame every tag, length, count, id and type is checked as
 * well. The hash is integrity and origin, not secrecy: frames are not
 * encrypted, and whoever has the key can make frames that run code.
 *
 * The key: a process makes a random one (getrandom, else /dev/urandom)
 * the first time it marshals or asks for it. Thread workers share their
 * process's key: they are the same program in the same memory, and get
 * the full decoder. Anything in another process gets keys of its own:
 *
 * Keys per channel. lc_marshal_derive_key makes a key for one channel
 * from a parent key (this process's) and a label; it is a keyed PRF
 * (SipHash-2-4 of a domain string, the label and a counter), so a holder
 * of a derived key learns nothing of the parent or of any other child. A
 * worker process with loop id N gets two: "worker N down" (the runner
 * tags the code and tasks it sends with it; the worker reads them with
 * the full decoder under it) and "worker N up" (the worker's own key:
 * lc_marshal_set_key, so it tags its answers with it; the runner reads
 * them with the data decoder under it). lc_marshal_worker_key makes both.
 * A host gets the same from the remote layer ("host <id> down|up"). No
 * worker or host ever sees the run's key, so none can forge a frame that
 * another worker, another host or the runner accepts as code. (Loop ids
 * start at 1 in each loop: workers of two loops of one process may share
 * keys; each has its own pipes, so neither can reach the other's.)
 *
 * Only data comes back. lc_unmarshal_data is the decoder for everything
 * that crosses back from another process (answers, records): it refuses
 * function bytecode, modules by name, _ENV bindings and metatables, with
 * the path of the value ("luaconcurrent: answer refused: a function value
 * at [2].x (code never comes back)"), and caps sizes (lc_data_limits: the
 * whole frame, one string, nesting, tables and values in a frame). So a
 * worker or host that holds its key, or a task that reads it from the
 * worker's memory, still cannot make the runner run anything: the worst
 * it can send is a wrong value. lc_marshal_data writes such frames and
 * refuses code at the sender, so an honest worker's task that returns a
 * function gets a clear error rather than being failed as a liar.
 *
 * From Lua (core_marshal.c), a channel to another process, e.g. a host:
 *   runner:  down = core.marshal_derive_key("host 3 down"), up = ... "up";
 *            send down .. up over the channel it trusts (ssh's stdin);
 *            code and tasks: core.marshal_keyed(down, names, ...), the
 *            task function built once: core.marshal_retag(fn_frame, down);
 *            what comes back: core.unmarshal_data(s, { key = up,
 *            what = "host answer" }) (a table built once per channel)
 *   other end: core.marshal_set_key(up) first; what comes in:
 *            core.unmarshal_keyed(down, s); answers: core.marshal_data(...)
 *            or core.marshal_write_data(fd, ...).
 * Its own worker processes then derive their keys from its up-key.
 *
 * Failing closed: if neither getrandom nor /dev/urandom gives a key, the
 * process makes one from the clock and its pid, good only to tell frames
 * of this process apart; lc_marshal_derive_key (and core.marshal_key)
 * then refuse, so no worker or host can be given a key and no code
 * leaves the process. lc_marshal_set_key (a worker taking its key from
 * its runner) makes the key good.
 */
#ifndef LC_MARSHAL_H
#define LC_MARSHAL_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"

typedef struct lc_bytes {
    char *data;
    size_t len, cap;
} lc_bytes;

#define LC_MARSHAL_KEY_LEN 16

/* This process's key (made on first use). */
void lc_marshal_key(unsigned char key[LC_MARSHAL_KEY_LEN]);

/* Use another process's key from now on. Call it before any other thread
 * marshals (a process worker: first thing). */
void lc_marshal_set_key(const unsigned char key[LC_MARSHAL_KEY_LEN]);

/* SipHash-2-4 of data under a 16-byte key. */
uint64_t lc_siphash(const unsigned char key[16], const void *data, size_t len);

/* Push the table that names modules and their functions (see marshal.c)
 * as package.loaded holds them now. Callers sending many messages build it
 * once and pass its index to lc_marshal. */
void lc_marshal_names(lua_State *L);

/* Append one frame holding the values at stack indices [first, first+n)
 * to *out; names is the index of a table from lc_marshal_names, or 0 to
 * get the current one. Raises a Lua error (out keeps what was written; the
 * caller frees it). */
void lc_marshal(lua_State *L, int first, int n, int names, lc_bytes *out);

/* Push the values of the frame in data (exactly one frame); returns how
 * many. Raises a Lua error on a frame that fails its check and on
 * malformed input. Run it under a protected call. */
int lc_unmarshal(lua_State *L, const char *data, size_t len);

/* The same without the keyed check, for looking inside a frame and for
 * fuzzing the reader: it loads no code and requires no module — each
 * function comes back as a stub that raises when called, and a module must
 * be loaded already. Never use it for frames that are to run. */
int lc_unmarshal_unchecked(lua_State *L, const char *data, size_t len);

void lc_bytes_free(lc_bytes *b);

/* ---- keys per channel ---- */

#define LC_MARSHAL_LABEL_MAX 200

/* The error where a weak key would have to leave the process. */
#define LC_WEAK_KEY_MSG                                                         \
    "luaconcurrent: no secure random key (getrandom and /dev/urandom both "   \
    "failed): code is not sent to other processes or hosts"

/* 1 if this process's key is the clock-and-pid fallback (see above). */
int lc_marshal_key_weak(void);

/* The key for the channel named label (at most LC_MARSHAL_LABEL_MAX
 * bytes), derived from the 16-byte key from, or from this process's key
 * when from is NULL. Returns -1 (out untouched) if label is too long or
 * from is NULL and this process's key is weak; 0 otherwise. */
int lc_marshal_derive_key(const unsigned char *from, const char *label, size_t len,
                          unsigned char out[LC_MARSHAL_KEY_LEN]);

/* The key of worker process id's channel, up (its answers) or down (what
 * it is sent): lc_marshal_derive_key of "worker <id> up|down". */
int lc_marshal_worker_key(long long id, int up, unsigned char out[LC_MARSHAL_KEY_LEN]);

/* lc_marshal tagged under key (NULL: this process's key). */
void lc_marshal_keyed(lua_State *L, int first, int n, int names,
                      const unsigned char *key, lc_bytes *out);

/* lc_unmarshal checked under key. */
int lc_unmarshal_keyed(lua_State *L, const char *data, size_t len,
                       const unsigned char key[LC_MARSHAL_KEY_LEN]);

/* A frame made under this process's key, tagged under key instead, into
 * out (len bytes; NULL: only check). Returns -1 if the frame fails its
 * check under this process's key. For sending a frame built once (the
 * task function) to many channels. */
int lc_marshal_retag(const char *data, size_t len, const unsigned char key[LC_MARSHAL_KEY_LEN],
                     char *out);

/* ---- data only: what crosses back ---- */

/* Caps of the data decoder. The frame cap lets a 128 MB answer through
 * with room; a table costs ~56 bytes and a value up to ~40, so the counts
 * bound what a small frame can make the receiver allocate. */
#define LC_DATA_MAX_FRAME (1ULL << 30)     /* bytes in a frame; a string's too */
#define LC_DATA_MAX_TABLES (1ULL << 23)    /* tables in a frame */
#define LC_DATA_MAX_ITEMS (1ULL << 26)     /* values in a frame, keys included */
#define LC_DATA_MAX_DEPTH 200              /* tables within tables; the most */

typedef struct lc_data_limits {
    uint64_t frame;       /* bytes of the whole frame */
    uint64_t string;      /* bytes of one string */
    int depth;            /* tables a value may sit in (1..LC_DATA_MAX_DEPTH) */
    uint64_t tables;      /* tables in one frame */
    uint64_t items;       /* values in one frame: top-level, keys, fields */
} lc_data_limits;

/* The process's defaults (used when lim is NULL), and setting them: from
 * the main thread, before any thread reads with them. */
void lc_data_limits_get(lc_data_limits *out);
void lc_data_limits_set(const lc_data_limits *lim);

/* Append a frame of the values at [first, first+n) that holds data only:
 * a function, a table with a metatable, or anything else that is not
 * nil, a boolean, a number, a string or a plain table raises (its path
 * named). Tagged under key (NULL: this process's key). */
void lc_marshal_data(lua_State *L, int first, int n, const unsigned char *key, lc_bytes *out);

/* Push the values of a data frame; returns how many. The frame must be
 * tagged under key (NULL: this process's key) and hold only data within
 * lim (NULL: the defaults); anything else raises "luaconcurrent: <what>
 * refused: ..." (what NULL: "answer") or a corrupt-frame error. Nothing
 * in the frame can run code in this state: no lua_load, no require, no
 * metatable set. Run it under a protected call. */
int lc_unmarshal_data(lua_State *L, const char *data, size_t len,
                      const unsigned char *key, const lc_data_limits *lim, const char *what);

/* Lua bindings, registered with core's functions (core_marshal.c has the
 * rest):
 * core.marshal_key() -> the key (a 16-byte string; raises if weak);
 * core.marshal_set_key(key); core.unmarshal_unchecked(s) -> values. */
int lc_marshal_l_key(lua_State *L);
int lc_marshal_l_set_key(lua_State *L);
int lc_marshal_l_unmarshal_unchecked(lua_State *L);

#endif
