/*
 * core_marshal.c — copying values out of this state (marshal.h):
 *
 *   core.marshal(...) -> bytes       checks that the values can cross, and
 *                                    keeps them ready to send
 *   core.unmarshal(bytes) -> ...
 *   bytes:size() -> n
 *   core.marshal_string(...) -> s, core.unmarshal_string(s) -> ...
 *                                    the same bytes as a Lua string, for
 *                                    pipes to process workers
 *   core.marshal_names() -> map      the names of this state's module
 *                                    functions, as marshal_string builds
 *                                    them at each call
 *   core.marshal_string_names(map, ...) -> s   marshal_string with a map
 *                                    built before (many small frames)
 *   core.marshal_write(fd, map, ...) the same bytes written to fd, after
 *                                    their length (string.pack "<I4"):
 *                                    no Lua string in between. Raises
 *                                    before writing anything if the values
 *                                    cannot be marshalled.
 *   core.marshal_key(), core.marshal_set_key(k)   the run's frame key
 *   core.unmarshal_unchecked(s)      read a frame without its key check:
 *                                    no bytecode, no modules (diagnostics)
 *
 * A bytes userdata owns its buffer and frees it at __gc.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "lcerror.h"

#include "bindings.h"

static int bytes_gc(lua_State *L) {
    bytes_ud *bu = luaL_checkudata(L, 1, BYTES_MT);
    lc_bytes_free(&bu->b);
    return 0;
}

bytes_ud *lc_core_new_bytes(lua_State *L) {
    bytes_ud *bu = lua_newuserdatauv(L, sizeof *bu, 0);
    memset(bu, 0, sizeof *bu);
    luaL_setmetatable(L, BYTES_MT);
    return bu;
}

static int l_marshal(lua_State *L) {
    int n = lua_gettop(L);
    bytes_ud *bu = lc_core_new_bytes(L);
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

static int l_marshal_string(lua_State *L) {
    int n = lua_gettop(L);
    bytes_ud *bu = lc_core_new_bytes(L);
    lc_marshal(L, 1, n, 0, &bu->b);
    lua_pushlstring(L, bu->b.data ? bu->b.data : "", bu->b.len);
    lc_bytes_free(&bu->b);
    return 1;
}

static int l_marshal_names(lua_State *L) {
    lc_marshal_names(L);
    return 1;
}

static int l_marshal_string_names(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    bytes_ud *bu = lc_core_new_bytes(L);
    lc_marshal(L, 2, n - 1, 1, &bu->b);
    lua_pushlstring(L, bu->b.data ? bu->b.data : "", bu->b.len);
    lc_bytes_free(&bu->b);
    return 1;
}

static int l_marshal_write(lua_State *L) {
    lua_Integer fd = luaL_checkinteger(L, 1);
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (fd < 0 || fd > INT_MAX) return lc_raise(L, "luaconcurrent: bad fd");
    bytes_ud *bu = lc_core_new_bytes(L);               /* freed at gc if we raise */
    lc_marshal(L, 3, n - 2, 2, &bu->b);
    if (bu->b.len > UINT32_MAX)
        return lc_raise(L, "luaconcurrent: an answer of more than 4 GiB cannot be sent");
    uint32_t len = (uint32_t)bu->b.len;
    unsigned char head[4] = {(unsigned char)len, (unsigned char)(len >> 8),
                             (unsigned char)(len >> 16), (unsigned char)(len >> 24)};
    struct iovec iov[2] = {{head, sizeof head}, {bu->b.data, bu->b.len}};
    int at = 0;
    while (at < 2) {
        ssize_t w = writev((int)fd, iov + at, 2 - at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            lc_bytes_free(&bu->b);
            return lc_raise(L, "luaconcurrent: worker cannot answer: %s", strerror(e));
        }
        size_t done = (size_t)w;
        while (at < 2 && done >= iov[at].iov_len) done -= iov[at++].iov_len;
        if (at < 2) {
            iov[at].iov_base = (char *)iov[at].iov_base + done;
            iov[at].iov_len -= done;
        }
    }
    lc_bytes_free(&bu->b);
    return 0;
}

static int l_unmarshal_string(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return lc_unmarshal(L, s, len);
}

static const luaL_Reg marshal_funcs[] = {
    {"marshal", l_marshal},
    {"unmarshal", l_unmarshal},
    {"marshal_string", l_marshal_string},
    {"unmarshal_string", l_unmarshal_string},
    {"marshal_names", l_marshal_names},
    {"marshal_string_names", l_marshal_string_names},
    {"marshal_write", l_marshal_write},
    {"marshal_key", lc_marshal_l_key},
    {"marshal_set_key", lc_marshal_l_set_key},
    {"unmarshal_unchecked", lc_marshal_l_unmarshal_unchecked},
    {NULL, NULL},
};

/* The bytes metatable, and the functions into the module table on top. */
void lc_core_marshal_open(lua_State *L) {
    if (luaL_newmetatable(L, BYTES_MT)) {
        lua_pushcfunction(L, bytes_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, l_bytes_size);
        lua_setfield(L, -2, "size");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, marshal_funcs, 0);
}
