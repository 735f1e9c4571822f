/*
 * marshal.h — copying Lua values between states as bytes.
 *
 * One format serves thread workers (bytes handed over in memory) and
 * process workers (bytes over a pipe). What crosses:
 *   nil, booleans, integers and floats (kept apart), strings (any bytes);
 *   tables, with sharing and cycles kept within one message, metatables too;
 *   Lua functions, as bytecode with every upvalue copied the same way;
 *   modules (tables in package.loaded) and the functions they hold, by
 *   name: the receiver uses its own (`_ENV` binds to its own globals, a
 *   captured string.format is the receiver's string.format).
 * Anything else (userdata, coroutines, unnamed C functions) is an error
 * naming the value's path, e.g. "upvalue 'fh' of function at x.lua:3".
 */
#ifndef LC_MARSHAL_H
#define LC_MARSHAL_H

#include <stddef.h>

#include "lua.h"

typedef struct lc_bytes {
    char *data;
    size_t len, cap;
} lc_bytes;

/* Push the table that names modules and their functions (see marshal.c)
 * as package.loaded holds them now. Callers sending many messages build it
 * once and pass its index to lc_marshal. */
void lc_marshal_names(lua_State *L);

/* Append the values at stack indices [first, first+n) to *out; names is
 * the index of a table from lc_marshal_names, or 0 to get the current one.
 * Raises a Lua error (out keeps what was written; the caller frees it). */
void lc_marshal(lua_State *L, int first, int n, int names, lc_bytes *out);

/* Push the values encoded in data; returns how many. Raises a Lua error
 * on malformed input. Run it under a protected call. */
int lc_unmarshal(lua_State *L, const char *data, size_t len);

void lc_bytes_free(lc_bytes *b);

#endif
