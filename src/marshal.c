/*
 * marshal.c — Lua values to bytes and back. See marshal.h.
 *
 * Encoding, one tag byte per value:
 *   'n' nil  'f' false  't' true  'i' int64  'd' double  's' len bytes
 *   'T' table: (key value)* 'e' metatable-value   (defines the next id)
 *   'F' function: len bytecode nup value*          (defines the next id)
 *   'R' id: a table or function defined earlier in this message
 *   'M' name: the module package.loaded[name]
 *   'N' name key: the function package.loaded[name][key]
 * Lengths and ids are LEB128 varints; numbers are host-endian (both ends
 * are this process or a copy of this binary).
 */
#include "marshal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lcerror.h"

#define MAX_DEPTH 200
#define LC_STR_(x) #x
#define LC_STR(x) LC_STR_(x)

void lc_bytes_free(lc_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- writing ---------------------------------------------------------- */

typedef struct path_step {
    const char *kind;     /* "upvalue", "field", "key of", "metatable of", ... */
    int idx;              /* stack index of the key/fn it describes, or 0 */
    const char *name;     /* upvalue name */
} path_step;

typedef struct wctx {
    lua_State *L;
    lc_bytes *out;
    int seen;             /* stack index: object -> id */
    int names;            /* stack index: object -> "mod" or "mod\1key" */
    int next_id;
    int depth;
    path_step path[MAX_DEPTH + 1];
} wctx;

static void put(wctx *c, const void *p, size_t n) {
    lc_bytes *b = c->out;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap - b->len < n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) lc_raise(c->L, "luaconcurrent: out of memory while copying a value");
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_byte(wctx *c, char tag) { put(c, &tag, 1); }

static void put_varint(wctx *c, uint64_t v) {
    unsigned char buf[10];
    size_t n = 0;
    do {
        unsigned char byte = v & 0x7f;
        v >>= 7;
        buf[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    put(c, buf, n);
}

static void put_lstring(wctx *c, const char *s, size_t len) {
    put_varint(c, len);
    put(c, s, len);
}

/* Describe where the offending value sits, innermost step first. */
static int fail_at(wctx *c, const char *what) {
    lua_State *L = c->L;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "luaconcurrent: cannot send ");
    luaL_addstring(&b, what);
    luaL_addstring(&b, " to another Lua state");
    for (int i = c->depth; i >= 1; i--) {
        path_step *s = &c->path[i];
        /* A deep path shows its three innermost and three outermost steps. */
        if (c->depth > 6 && i == c->depth - 3) {
            lua_pushfstring(L, ", in ... (%d more)", c->depth - 6);
            luaL_addvalue(&b);
            i = 4;
            continue;
        }
        luaL_addstring(&b, i == c->depth ? ": " : ", in ");
        luaL_addstring(&b, s->kind);
        if (s->name) {                       /* upvalue 'name' of <where> */
            luaL_addstring(&b, " '");
            luaL_addstring(&b, s->name);
            luaL_addstring(&b, "' of ");
            luaL_addstring(&b, lua_tostring(L, s->idx));
        } else if (s->idx && lua_type(L, s->idx) == LUA_TSTRING) {
            luaL_addstring(&b, " '");
            luaL_addstring(&b, lua_tostring(L, s->idx));
            luaL_addstring(&b, "'");
        } else if (s->idx && lua_type(L, s->idx) == LUA_TNUMBER) {
            /* Formatted in C: anything pushed now would sit on top of the
             * buffer, which may be growing on the stack (and lua_tostring
             * would turn the key itself into a string). */
            char num[64];
            if (lua_isinteger(L, s->idx))
                snprintf(num, sizeof num, " [" LUA_INTEGER_FMT "]",
                         (LUAI_UACINT)lua_tointeger(L, s->idx));
            else
                snprintf(num, sizeof num, " [" LUA_NUMBER_FMT "]",
                         (LUAI_UACNUMBER)lua_tonumber(L, s->idx));
            luaL_addstring(&b, num);
        }
    }
    luaL_pushresult(&b);
    return lua_error(L);
}

static void write_value(wctx *c, int idx);

/* Name every module and every function a module holds (Lua functions of
 * _G are the script's own and are copied instead), as package.loaded
 * holds them now. */
void lc_marshal_names(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);      /* loaded */
    lua_newtable(L);                                           /* loaded names */
    lua_pushnil(L);
    while (lua_next(L, -3)) {                                  /* loaded names mod tbl */
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
            const char *mod = lua_tostring(L, -2);
            int is_g = strcmp(mod, "_G") == 0;
            lua_pushvalue(L, -1);
            int named = lua_rawget(L, -4) != LUA_TNIL;         /* first name wins */
            lua_pop(L, 1);
            if (!named) {
                lua_pushvalue(L, -1);                          /* ... mod tbl tbl */
                lua_pushvalue(L, -3);                          /* ... mod tbl tbl mod */
                lua_rawset(L, -5);
            }
            lua_pushnil(L);
            while (lua_next(L, -2)) {                          /* ... mod tbl k v */
                if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1) &&
                    !(is_g && !lua_iscfunction(L, -1))) {
                    lua_pushvalue(L, -1);
                    if (lua_rawget(L, -6) == LUA_TNIL) {
                        lua_pop(L, 1);
                        lua_pushvalue(L, -1);                  /* ... k v v */
                        lua_pushfstring(L, "%s\1%s", mod, lua_tostring(L, -3));
                        lua_rawset(L, -7);
                    } else {
                        lua_pop(L, 1);
                    }
                }
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_remove(L, -2);                                         /* names */
}

/* A value already sent, or one with a name: write the short form. */
static int write_known(wctx *c, int idx) {
    lua_State *L = c->L;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, c->seen) != LUA_TNIL) {
        put_byte(c, 'R');
        put_varint(c, (uint64_t)lua_tointeger(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, c->names) == LUA_TSTRING) {
        size_t len;
        const char *name = lua_tolstring(L, -1, &len);
        const char *sep = memchr(name, '\1', len);
        if (sep) {
            put_byte(c, 'N');
            put_lstring(c, name, (size_t)(sep - name));
            put_lstring(c, sep + 1, len - (size_t)(sep - name) - 1);
        } else {
            put_byte(c, 'M');
            put_lstring(c, name, len);
        }
        lua_pop(L, 1);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

static void define(wctx *c, int idx) {
    lua_pushvalue(c->L, idx);
    lua_pushinteger(c->L, c->next_id++);
    lua_rawset(c->L, c->seen);
}

static void push_step(wctx *c, const char *kind, int idx, const char *name) {
    if (c->depth >= MAX_DEPTH)
        fail_at(c, "a value nested more than " LC_STR(MAX_DEPTH) " levels deep");
    path_step *s = &c->path[++c->depth];
    s->kind = kind;
    s->idx = idx;
    s->name = name;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
    (void)L;
    put(ud, p, sz);
    return 0;
}

static void write_function(wctx *c, int idx) {
    lua_State *L = c->L;
    lua_Debug ar;
    if (lua_iscfunction(L, idx)) fail_at(c, "a C function that no loaded module holds");
    define(c, idx);
    put_byte(c, 'F');
    size_t at = c->out->len;
    uint64_t zero = 0;
    put(c, &zero, sizeof zero);              /* bytecode length, patched below */
    lua_pushvalue(L, idx);
    lua_dump(L, dump_writer, c, 0);          /* keep debug info: tracebacks */
    lua_pop(L, 1);
    uint64_t len = c->out->len - at - sizeof len;
    memcpy(c->out->data + at, &len, sizeof len);

    lua_pushvalue(L, idx);
    lua_getinfo(L, ">Su", &ar);
    char where[128];
    snprintf(where, sizeof where, "function at %s:%d", ar.short_src, ar.linedefined);
    lua_pushstring(L, where);                /* anchors the text for the path */
    int where_idx = lua_gettop(L);
    put_varint(c, ar.nups);
    for (int i = 1; i <= ar.nups; i++) {
        const char *name = lua_getupvalue(L, idx, i);
        push_step(c, "upvalue", where_idx, name && *name ? name : "?");
        write_value(c, lua_gettop(L));
        c->depth--;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void write_table(wctx *c, int idx) {
    lua_State *L = c->L;
    define(c, idx);
    put_byte(c, 'T');
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int k = lua_gettop(L) - 1;
        push_step(c, "a table key", 0, NULL);
        write_value(c, k);
        c->path[c->depth].kind = "field";
        c->path[c->depth].idx = k;
        write_value(c, k + 1);
        c->depth--;
        lua_pop(L, 1);
    }
    put_byte(c, 'e');
    if (lua_getmetatable(L, idx)) {
        push_step(c, "metatable", 0, NULL);
        write_value(c, lua_gettop(L));
        c->depth--;
        lua_pop(L, 1);
    } else {
        put_byte(c, 'n');
    }
}

static void write_value(wctx *c, int idx) {
    lua_State *L = c->L;
    luaL_checkstack(L, 8, "nesting too deep");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put_byte(c, 'n');
        break;
    case LUA_TBOOLEAN:
        put_byte(c, lua_toboolean(L, idx) ? 't' : 'f');
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            int64_t i = (int64_t)lua_tointeger(L, idx);
            put_byte(c, 'i');
            put(c, &i, sizeof i);
        } else {
            double d = (double)lua_tonumber(L, idx);
            put_byte(c, 'd');
            put(c, &d, sizeof d);
        }
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        put_byte(c, 's');
        put_lstring(c, s, len);
        break;
    }
    case LUA_TTABLE:
        if (!write_known(c, idx)) write_table(c, idx);
        break;
    case LUA_TFUNCTION:
        if (!write_known(c, idx)) write_function(c, idx);
        break;
    case LUA_TUSERDATA:
        fail_at(c, "a userdata");
        break;
    case LUA_TLIGHTUSERDATA:
        fail_at(c, "a light userdata");
        break;
    case LUA_TTHREAD:
        fail_at(c, "a coroutine");
        break;
    default:
        fail_at(c, luaL_typename(L, idx));
    }
}

void lc_marshal(lua_State *L, int first, int n, int names, lc_bytes *out) {
    wctx c;
    int top = lua_gettop(L);
    first = lua_absindex(L, first);
    memset(&c, 0, sizeof c);
    c.L = L;
    c.out = out;
    if (names) {
        c.names = lua_absindex(L, names);
    } else {
        lc_marshal_names(L);
        c.names = lua_gettop(L);
    }
    lua_newtable(L);
    c.seen = lua_gettop(L);
    for (int i = 0; i < n; i++) write_value(&c, first + i);
    lua_settop(L, top);
}

/* ---- reading ------------------------------------------------------------ */

typedef struct rctx {
    lua_State *L;
    const char *p, *end;
    int defs;             /* stack index: id -> object */
    int next_id;
    int depth;
} rctx;

static int bad(rctx *c) {
    return lc_raise(c->L, "luaconcurrent: corrupt value in transfer");
}

static const char *take(rctx *c, size_t n) {
    if ((size_t)(c->end - c->p) < n) bad(c);
    const char *p = c->p;
    c->p += n;
    return p;
}

static uint64_t get_varint(rctx *c) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        unsigned char byte = (unsigned char)*take(c, 1);
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
    bad(c);
    return 0;
}

static void push_lstring(rctx *c) {
    uint64_t len = get_varint(c);
    const char *s = take(c, (size_t)len);
    lua_pushlstring(c->L, s, (size_t)len);
}

static void push_module(rctx *c) {
    lua_State *L = c->L;
    push_lstring(c);                                   /* name */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) != LUA_TNIL) {               /* name loaded mod */
        lua_replace(L, -3);
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 2);                                     /* name */
    lua_getglobal(L, "require");
    lua_insert(L, -2);
    lua_call(L, 1, 1);                                 /* mod */
}

static void read_value(rctx *c) {
    lua_State *L = c->L;
    if (++c->depth > MAX_DEPTH + 2) bad(c);
    luaL_checkstack(L, 8, "nesting too deep");
    char tag = *take(c, 1);
    switch (tag) {
    case 'n': lua_pushnil(L); break;
    case 'f': lua_pushboolean(L, 0); break;
    case 't': lua_pushboolean(L, 1); break;
    case 'i': {
        int64_t i;
        memcpy(&i, take(c, sizeof i), sizeof i);
        lua_pushinteger(L, (lua_Integer)i);
        break;
    }
    case 'd': {
        double d;
        memcpy(&d, take(c, sizeof d), sizeof d);
        lua_pushnumber(L, (lua_Number)d);
        break;
    }
    case 's':
        push_lstring(c);
        break;
    case 'R': {
        uint64_t id = get_varint(c);
        if (id >= (uint64_t)c->next_id) bad(c);
        lua_rawgeti(L, c->defs, (lua_Integer)id);
        break;
    }
    case 'M':
        push_module(c);
        break;
    case 'N':
        push_module(c);                                /* mod */
        push_lstring(c);                               /* mod key */
        lua_rawget(L, -2);                             /* mod fn */
        lua_remove(L, -2);
        break;
    case 'T': {
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, c->defs, c->next_id++);
        for (;;) {
            if (c->p < c->end && *c->p == 'e') {
                c->p++;
                break;
            }
            read_value(c);                             /* t k */
            read_value(c);                             /* t k v */
            if (lua_isnil(L, -2)) bad(c);
            lua_rawset(L, -3);
        }
        read_value(c);                                 /* t mt|nil */
        if (lua_istable(L, -1))
            lua_setmetatable(L, -2);
        else
            lua_pop(L, 1);
        break;
    }
    case 'F': {
        uint64_t len;
        memcpy(&len, take(c, sizeof len), sizeof len);
        const char *code = take(c, (size_t)len);
        if (luaL_loadbufferx(L, code, (size_t)len, "=(transferred)", "b") != LUA_OK)
            lua_error(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, c->defs, c->next_id++);         /* before upvalues: self-reference */
        uint64_t nup = get_varint(c);
        for (uint64_t i = 1; i <= nup; i++) {
            read_value(c);
            if (lua_setupvalue(L, -2, (int)i) == NULL) lua_pop(L, 1);
        }
        break;
    }
    default:
        bad(c);
    }
    c->depth--;
}

int lc_unmarshal(lua_State *L, const char *data, size_t len) {
    rctx c;
    memset(&c, 0, sizeof c);
    c.L = L;
    c.p = data;
    c.end = data + len;
    lua_newtable(L);
    c.defs = lua_gettop(L);
    int n = 0;
    while (c.p < c.end) {
        read_value(&c);
        n++;
    }
    lua_remove(L, c.defs);
    return n;
}
