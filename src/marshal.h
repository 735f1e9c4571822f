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
 * The key: a process makes a random one (getrandom) the first time it
 * marshals or asks for it. Thread workers share their process's key, so
 * they need nothing. A process worker must use its runner's: the runner
 * sends lc_marshal_key (core.marshal_key()) as the first frame of the
 * worker's stdin, raw, and the worker calls lc_marshal_set_key
 * (core.marshal_set_key(k)) before it reads or writes any other frame
 * (lua/luaconcurrent/worker.lua). Anything carrying frames between
 * machines must carry the key the same way, over a channel it trusts.
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

/* Lua bindings, registered with core's functions:
 * core.marshal_key() -> the key (a 16-byte string);
 * core.marshal_set_key(key); core.unmarshal_unchecked(s) -> values. */
int lc_marshal_l_key(lua_State *L);
int lc_marshal_l_set_key(lua_State *L);
int lc_marshal_l_unmarshal_unchecked(lua_State *L);

#endif
