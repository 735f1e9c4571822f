/*
 * lcerror.h — raising the engine's errors. Messages start with
 * "luaconcurrent: " and carry no "file:line:" prefix (luaL_error adds the
 * caller's position, which here would be the Lua layer's, not the user's;
 * the traceback shows where the call came from).
 */
#ifndef LC_LCERROR_H
#define LC_LCERROR_H

#include <stdarg.h>

#include "lua.h"

/* Never returns (lua_error longjmps); typed int for `return lc_raise(...)`. */
static inline int lc_raise(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return lua_error(L);
}

#endif
