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
 *   core.marshal_key()   the process's frame key (core.marshal_set_key: core_misc.c, guarded)
 *   core.unmarshal_unchecked(s)      read a frame without its key check:
 *                                    no bytecode, no modules (diagnostics)
 *
 * Keys per channel and data-only answers (the trust rule, marshal.h):
 *   core.marshal_derive_key(label [, from]) -> key   the key of channel
 *                                    label, derived from key from (default:
 *                                    the process's key, refused if weak)
 *   core.marshal_worker_keys(id) -> down, up     worker process id's keys
 *   core.marshal_keyed(key, names|nil, ...) -> s  marshal_string tagged
 *                                    under key (code going out)
 *   core.unmarshal_keyed(key, s) -> ...     the full decoder under key
 *   core.marshal_retag(s, key) -> s  a frame of this process's key (checked)
 *                                    tagged under key instead
 *   core.marshal_data(...) -> s, core.marshal_write_data(fd, ...)
 *                                    data-only frames (answers), under the
 *                                    process's key: code raises here
 *   core.unmarshal_data(s [, limits]) -> ...  the data decoder: no code,
 *                                    no modules, no metatables, sizes
 *                                    capped; limits: { key =, frame =,
 *                                    string =, depth =, tables =, items =,
 *                                    what = "answer" }, each optional
 *   core.marshal_data_limits([t]) -> t   the process's default caps (set
 *                                    the ones t names; main thread only)
 *   core.data_is(pattern, ...) -> bool   whether the values have the
 *                                    types pattern says, one letter a value:
 *                                    n nil, b boolean, i integer, f float,
 *                                    s string, t table, . anything (absent
 *                                    included): a message's fields checked
 *                                    in one call, no string made
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
#include "pool.h"

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

/* Write bu's frame to fd after its length; frees the buffer. */
static int write_frame(lua_State *L, int fd, bytes_ud *bu) {
    if (bu->b.len > UINT32_MAX) {
        lc_bytes_free(&bu->b);
        return lc_raise(L, "luaconcurrent: an answer of more than 4 GiB cannot be sent");
    }
    uint32_t len = (uint32_t)bu->b.len;
    unsigned char head[4] = {(unsigned char)len, (unsigned char)(len >> 8),
                             (unsigned char)(len >> 16), (unsigned char)(len >> 24)};
    struct iovec iov[2] = {{head, sizeof head}, {bu->b.data, bu->b.len}};
    int at = 0;
    while (at < 2) {
        ssize_t w = writev(fd, iov + at, 2 - at);
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

static int check_fd(lua_State *L, int idx) {
    lua_Integer fd = luaL_checkinteger(L, idx);
    if (fd < 0 || fd > INT_MAX) return lc_raise(L, "luaconcurrent: bad fd");
    return (int)fd;
}

static int l_marshal_write(lua_State *L) {
    int fd = check_fd(L, 1);
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    bytes_ud *bu = lc_core_new_bytes(L);               /* freed at gc if we raise */
    lc_marshal(L, 3, n - 2, 2, &bu->b);
    return write_frame(L, fd, bu);
}

static int l_marshal_write_data(lua_State *L) {
    int fd = check_fd(L, 1);
    int n = lua_gettop(L);
    bytes_ud *bu = lc_core_new_bytes(L);
    lc_marshal_data(L, 2, n - 1, NULL, &bu->b);
    return write_frame(L, fd, bu);
}

/* The 16-byte key at idx. */
static const unsigned char *check_key(lua_State *L, int idx) {
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (len != LC_MARSHAL_KEY_LEN)
        lc_raise(L, "luaconcurrent: a marshal key is %d bytes, got %d", LC_MARSHAL_KEY_LEN,
                 (int)len);
    return (const unsigned char *)key;
}

static int push_key(lua_State *L, const unsigned char key[LC_MARSHAL_KEY_LEN]) {
    lua_pushlstring(L, (const char *)key, LC_MARSHAL_KEY_LEN);
    return 1;
}

static int l_marshal_derive_key(lua_State *L) {
    size_t len;
    const char *label = luaL_checklstring(L, 1, &len);
    const unsigned char *from = lua_isnoneornil(L, 2) ? NULL : check_key(L, 2);
    unsigned char key[LC_MARSHAL_KEY_LEN];
    if (len > LC_MARSHAL_LABEL_MAX)
        return lc_raise(L, "luaconcurrent: a key label is at most %d bytes",
                        LC_MARSHAL_LABEL_MAX);
    if (lc_marshal_derive_key(from, label, len, key) != 0) return lc_raise(L, "%s", LC_WEAK_KEY_MSG);
    return push_key(L, key);
}

static int l_marshal_worker_keys(lua_State *L) {
    lua_Integer id = luaL_checkinteger(L, 1);
    unsigned char down[LC_MARSHAL_KEY_LEN], up[LC_MARSHAL_KEY_LEN];
    if (lc_marshal_worker_key((long long)id, 0, down) != 0 ||
        lc_marshal_worker_key((long long)id, 1, up) != 0)
        return lc_raise(L, "%s", LC_WEAK_KEY_MSG);
    push_key(L, down);
    push_key(L, up);
    return 2;
}

static int l_marshal_keyed(lua_State *L) {
    int n = lua_gettop(L);
    const unsigned char *key = check_key(L, 1);
    if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    bytes_ud *bu = lc_core_new_bytes(L);
    lc_marshal_keyed(L, 3, n - 2, lua_isnil(L, 2) ? 0 : 2, key, &bu->b);
    lua_pushlstring(L, bu->b.data ? bu->b.data : "", bu->b.len);
    lc_bytes_free(&bu->b);
    return 1;
}

static int l_unmarshal_keyed(lua_State *L) {
    size_t len;
    const unsigned char *key = check_key(L, 1);
    const char *s = luaL_checklstring(L, 2, &len);
    lua_settop(L, 2);
    return lc_unmarshal_keyed(L, s, len, key);
}

static int l_marshal_retag(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const unsigned char *key = check_key(L, 2);
    lua_settop(L, 2);
    /* The frame must be this process's (its check passes); unchecked
     * reading of its values is not needed, only the tag. */
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len);
    if (lc_marshal_retag(s, len, key, out) != 0)     /* the buffer goes with the error */
        return lc_raise(L, "luaconcurrent: a transfer failed its check (corrupt, or not "
                           "made by this run)");
    luaL_pushresultsize(&b, len);
    return 1;
}

static int l_marshal_data(lua_State *L) {
    int n = lua_gettop(L);
    bytes_ud *bu = lc_core_new_bytes(L);
    lc_marshal_data(L, 1, n, NULL, &bu->b);
    lua_pushlstring(L, bu->b.data ? bu->b.data : "", bu->b.len);
    lc_bytes_free(&bu->b);
    return 1;
}

/* A cap: a positive integer (depth: 1..LC_DATA_MAX_DEPTH). */
static uint64_t limit_value(lua_State *L, const char *name, uint64_t most) {
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v < 1 || (uint64_t)v > most)
        lc_raise(L, "luaconcurrent: limit '%s' must be an integer from 1 to %I", name,
                 (lua_Integer)most);
    return (uint64_t)v;
}

/* Read the table at idx into lim (what it names; the rest as given), and
 * key and what if those are not NULL (else they are unknown fields). */
static void check_limits(lua_State *L, int idx, lc_data_limits *lim,
                         const unsigned char **key, const char **what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "frame") == 0) {
            lim->frame = limit_value(L, k, UINT32_MAX);
        } else if (strcmp(k, "string") == 0) {
            lim->string = limit_value(L, k, UINT32_MAX);
        } else if (strcmp(k, "depth") == 0) {
            lim->depth = (int)limit_value(L, k, LC_DATA_MAX_DEPTH);
        } else if (strcmp(k, "tables") == 0) {
            lim->tables = limit_value(L, k, INT32_MAX);
        } else if (strcmp(k, "items") == 0) {
            lim->items = limit_value(L, k, UINT32_MAX);
        } else if (key && strcmp(k, "key") == 0) {
            *key = check_key(L, -1);
        } else if (what && strcmp(k, "what") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING)
                lc_raise(L, "luaconcurrent: limit 'what' must be a string");
            *what = lua_tostring(L, -1);
        } else {
            lc_raise(L, "luaconcurrent: unknown data limit '%s' (frame, string, depth, tables, "
                        "items%s)", k, key ? ", key, what" : "");
        }
        lua_pop(L, 1);
    }
}

static int l_unmarshal_data(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        return lc_unmarshal_data(L, s, len, NULL, NULL, NULL);
    }
    lc_data_limits lim;
    const unsigned char *key = NULL;
    const char *what = NULL;
    lc_data_limits_get(&lim);
    check_limits(L, 2, &lim, &key, &what);
    lua_settop(L, 2);                      /* the table anchors key and what */
    return lc_unmarshal_data(L, s, len, key, &lim, what);
}

static int l_marshal_data_limits(lua_State *L) {
    lc_data_limits lim;
    lc_data_limits_get(&lim);
    if (!lua_isnoneornil(L, 1)) {
        /* Thread workers read the defaults without a lock (as the key). */
        if (lc_pool_live() > 0)
            return lc_raise(L, "luaconcurrent: marshal_data_limits cannot be set while thread "
                               "workers exist (close their loop first)");
        check_limits(L, 1, &lim, NULL, NULL);
        lc_data_limits_set(&lim);
    }
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)lim.frame);
    lua_setfield(L, -2, "frame");
    lua_pushinteger(L, (lua_Integer)lim.string);
    lua_setfield(L, -2, "string");
    lua_pushinteger(L, lim.depth);
    lua_setfield(L, -2, "depth");
    lua_pushinteger(L, (lua_Integer)lim.tables);
    lua_setfield(L, -2, "tables");
    lua_pushinteger(L, (lua_Integer)lim.items);
    lua_setfield(L, -2, "items");
    return 1;
}

static int l_unmarshal_string(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return lc_unmarshal(L, s, len);
}

static int l_data_is(lua_State *L) {
    size_t len;
    const char *pattern = luaL_checklstring(L, 1, &len);
    int n = lua_gettop(L) - 1, ok = 1;
    for (size_t i = 0; ok && i < len; i++) {
        int idx = (int)i + 2, t = (int)i < n ? lua_type(L, idx) : LUA_TNONE;
        switch (pattern[i]) {
        case '.': break;
        case 'n': ok = t == LUA_TNIL; break;
        case 'b': ok = t == LUA_TBOOLEAN; break;
        case 'i': ok = t == LUA_TNUMBER && lua_isinteger(L, idx); break;
        case 'f': ok = t == LUA_TNUMBER && !lua_isinteger(L, idx); break;
        case 's': ok = t == LUA_TSTRING; break;
        case 't': ok = t == LUA_TTABLE; break;
        default: return lc_raise(L, "luaconcurrent: data_is: unknown type letter '%c'", pattern[i]);
        }
    }
    lua_pushboolean(L, ok);
    return 1;
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
    {"unmarshal_unchecked", lc_marshal_l_unmarshal_unchecked},
    {"marshal_derive_key", l_marshal_derive_key},
    {"marshal_worker_keys", l_marshal_worker_keys},
    {"marshal_keyed", l_marshal_keyed},
    {"unmarshal_keyed", l_unmarshal_keyed},
    {"marshal_retag", l_marshal_retag},
    {"marshal_data", l_marshal_data},
    {"marshal_write_data", l_marshal_write_data},
    {"unmarshal_data", l_unmarshal_data},
    {"marshal_data_limits", l_marshal_data_limits},
    {"data_is", l_data_is},
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
