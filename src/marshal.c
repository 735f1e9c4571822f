/*
 * marshal.c — Lua values to bytes and back. See marshal.h.
 *
 * A frame (what one lc_marshal call appends):
 *   magic "LCm" + version byte 1 | body | tag
 * where tag is SipHash-2-4 (8 bytes, little-endian) of magic and body
 * under the run's key (lc_marshal_key). The reader checks the magic and
 * the tag before it looks at the body, so a frame that was corrupted, cut
 * short, or not made by a holder of the key is refused as a whole, and no
 * bytecode from elsewhere ever reaches lua_load.
 *
 * Body: values, one tag byte each:
 *   'n' nil  'f' false  't' true  'i' int64  'd' double  's' len bytes
 *   'T' table: (key value)* 'e' metatable-value   (defines the next id)
 *   'F' function: u64 len, bytecode, nup, upvalue* (defines the next id)
 *       upvalue: a value, or 'U' id n: the n-th upvalue of function id
 *       of this frame, shared (lua_upvaluejoin)
 *   'R' id: a table or function defined earlier in this message
 *   'G' the receiver's globals (a function's environment, see marshal.h)
 *   'M' k name*k: the module package.loaded[name_k]; the receiver first
 *       requires name_1 .. name_k-1 (the prefixes of name_k the sender had
 *       loaded: "term" before "term.cursor"), then name_k if needed
 *   'N' k name*k key: the function package.loaded[name_k][key]
 * Lengths, counts and ids are LEB128 varints; numbers are host-endian
 * (both ends run this binary). Every tag, length, id, count and type is
 * checked on the way in, tagged frame or not: malformed input is a Lua
 * error, never a crash.
 */
#include "marshal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lcerror.h"

#define MAX_DEPTH LC_DATA_MAX_DEPTH
#define MAX_MODPARTS 32         /* names in one 'M'/'N' (dots in a module name) */
#define MAX_UPVALUES 255        /* Lua's own limit for a function */
#define LC_STR_(x) #x
#define LC_STR(x) LC_STR_(x)

static const char frame_magic[4] = {'L', 'C', 'm', 1};
#define HEAD_LEN sizeof frame_magic
#define TAG_LEN 8

void lc_bytes_free(lc_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- the run's key and SipHash-2-4 -------------------------------------- */

static unsigned char run_key[LC_MARSHAL_KEY_LEN];
static int key_weak;            /* run_key came from the clock and pid */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void key_init(void) {
    size_t got = 0;
    while (got < sizeof run_key) {
        ssize_t n = getrandom(run_key + got, sizeof run_key - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got == sizeof run_key) return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);   /* seccomp said no */
    got = 0;
    while (fd >= 0 && got < sizeof run_key) {
        ssize_t n = read(fd, run_key + got, sizeof run_key - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (fd >= 0) close(fd);
    if (got == sizeof run_key) return;
    /* Last resort: unpredictable enough to tell runs apart and to catch
     * corruption inside this process, not a secret against anyone: no key
     * derived from it is ever handed out (lc_marshal_derive_key fails), so
     * nothing that carries code leaves the process. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t mix[2] = {(uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30),
                       (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&ts};
    memcpy(run_key, mix, sizeof run_key);
    key_weak = 1;
}

void lc_marshal_key(unsigned char key[LC_MARSHAL_KEY_LEN]) {
    pthread_once(&key_once, key_init);
    memcpy(key, run_key, LC_MARSHAL_KEY_LEN);
}

int lc_marshal_key_weak(void) {
    pthread_once(&key_once, key_init);
    return key_weak;
}

void lc_marshal_set_key(const unsigned char key[LC_MARSHAL_KEY_LEN]) {
    pthread_once(&key_once, key_init);
    memcpy(run_key, key, LC_MARSHAL_KEY_LEN);
    key_weak = 0;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                              \
    do {                                                                      \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);             \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);             \
    } while (0)

uint64_t lc_siphash(const unsigned char key[16], const void *data, size_t len) {
    const unsigned char *in = data;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++) b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* A key for one channel: two SipHash-2-4 outputs of a domain string, the
 * label and a counter under the parent key (a PRF used as a KDF). Knowing
 * a derived key tells nothing of the parent or of its other children. */
int lc_marshal_derive_key(const unsigned char *from, const char *label, size_t len,
                          unsigned char out[LC_MARSHAL_KEY_LEN]) {
    static const char domain[] = "luaconcurrent channel key";
    unsigned char parent[LC_MARSHAL_KEY_LEN], buf[sizeof domain + LC_MARSHAL_LABEL_MAX + 1];
    if (len > LC_MARSHAL_LABEL_MAX) return -1;
    if (from == NULL) {
        if (lc_marshal_key_weak()) return -1;
        lc_marshal_key(parent);
        from = parent;
    }
    memcpy(buf, domain, sizeof domain);                    /* its NUL included */
    memcpy(buf + sizeof domain, label, len);
    for (int half = 0; half < 2; half++) {
        buf[sizeof domain + len] = (unsigned char)half;
        uint64_t h = lc_siphash(from, buf, sizeof domain + len + 1);
        for (int i = 0; i < 8; i++) out[8 * half + i] = (unsigned char)(h >> (8 * i));
    }
    return 0;
}

int lc_marshal_worker_key(long long id, int up, unsigned char out[LC_MARSHAL_KEY_LEN]) {
    char label[64];
    int n = snprintf(label, sizeof label, "worker %lld %s", id, up ? "up" : "down");
    return lc_marshal_derive_key(NULL, label, (size_t)n, out);
}

/* The tag of a frame under key (NULL: this process's key). */
static void frame_tag(const unsigned char *key, const char *frame, size_t len,
                      unsigned char out[TAG_LEN]) {
    unsigned char own[LC_MARSHAL_KEY_LEN];
    if (key == NULL) {
        lc_marshal_key(own);
        key = own;
    }
    uint64_t t = lc_siphash(key, frame, len);
    for (int i = 0; i < TAG_LEN; i++) out[i] = (unsigned char)(t >> (8 * i));
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
    int upvals;           /* stack index: upvalue id -> function id << 8 | n */
    int loaded;           /* stack index: package.loaded */
    int next_id;
    int depth;
    int data_only;        /* an answer: no code, no modules, no metatables */
    int code_refused;     /* fail_at: data_only refuses the value */
    path_step path[MAX_DEPTH + 1];
} wctx;

static void put(wctx *c, const void *p, size_t n) {
    lc_bytes *b = c->out;
    if (b->cap - b->len < n) {
        if (b->len > SIZE_MAX / 4 || n > SIZE_MAX / 4 - b->len)
            lc_raise(c->L, "luaconcurrent: a value is too large to copy");
        size_t cap = b->cap ? b->cap : 256;
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
    if (c->code_refused) {
        luaL_addstring(&b, "luaconcurrent: cannot send ");
        luaL_addstring(&b, what);
        luaL_addstring(&b, " back (only data comes back from another process; code never "
                           "comes back)");
    } else {
        luaL_addstring(&b, "luaconcurrent: cannot send ");
        luaL_addstring(&b, what);
        luaL_addstring(&b, " to another Lua state");
    }
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

/* Which of two names a module or module function goes by: the shorter
 * module name, then the smaller bytes ("term" rather than "term.core" when
 * both hold one table), then the same for the key. Any fixed order would
 * do; package.loaded's iteration order is not one. */
static int name_less(const char *a, size_t alen, const char *b, size_t blen) {
    const char *asep = memchr(a, '\1', alen), *bsep = memchr(b, '\1', blen);
    size_t amod = asep ? (size_t)(asep - a) : alen, bmod = bsep ? (size_t)(bsep - b) : blen;
    if (amod != bmod) return amod < bmod;
    if (alen != blen) return alen < blen;
    return memcmp(a, b, alen) < 0;
}

/* names[obj] = the string on top, if obj has no better name yet; pops it. */
static void offer_name(lua_State *L, int names, int obj) {
    size_t len, cur_len;
    const char *cand = lua_tolstring(L, -1, &len);
    lua_pushvalue(L, obj);
    int t = lua_rawget(L, names);
    const char *cur = t == LUA_TSTRING ? lua_tolstring(L, -1, &cur_len) : NULL;
    int take = cur == NULL || name_less(cand, len, cur, cur_len);
    lua_pop(L, 1);
    if (take) {
        lua_pushvalue(L, obj);
        lua_pushvalue(L, -2);
        lua_rawset(L, names);
    }
    lua_pop(L, 1);
}

/* Name every module and every function a module holds (Lua functions of
 * _G are the script's own and are copied instead), as package.loaded
 * holds them now. */
void lc_marshal_names(lua_State *L) {
    luaL_checkstack(L, 10, "marshal names");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    int loaded = lua_gettop(L);
    lua_newtable(L);
    int names = loaded + 1;
    if (lua_type(L, loaded) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, loaded)) {                      /* names mod tbl */
            int k = names + 1, t = names + 2;
            size_t mlen;
            const char *mod;
            if (lua_type(L, k) == LUA_TSTRING && lua_type(L, t) == LUA_TTABLE &&
                (mod = lua_tolstring(L, k, &mlen)) != NULL && mlen > 0 &&
                memchr(mod, '\1', mlen) == NULL && memchr(mod, '\0', mlen) == NULL) {
                int is_g = mlen == 2 && memcmp(mod, "_G", 2) == 0;
                lua_pushvalue(L, k);
                offer_name(L, names, t);
                lua_pushnil(L);
                while (lua_next(L, t)) {                   /* ... fk fv */
                    if (lua_type(L, t + 1) == LUA_TSTRING && lua_isfunction(L, t + 2) &&
                        !(is_g && !lua_iscfunction(L, t + 2))) {
                        lua_pushvalue(L, k);
                        lua_pushliteral(L, "\1");
                        lua_pushvalue(L, t + 1);
                        lua_concat(L, 3);
                        offer_name(L, names, t + 2);
                    }
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
    }
    lua_remove(L, loaded);                                 /* names */
}

/* A module's names: its prefixes the sender has loaded, then itself. */
static void put_module(wctx *c, const char *mod, size_t len) {
    lua_State *L = c->L;
    size_t cut[MAX_MODPARTS];
    int k = 0;
    for (size_t i = 1; i < len && k < MAX_MODPARTS - 1; i++) {
        if (mod[i] != '.') continue;
        lua_pushlstring(L, mod, i);
        if (lua_rawget(L, c->loaded) != LUA_TNIL) cut[k++] = i;
        lua_pop(L, 1);
    }
    put_varint(c, (uint64_t)k + 1);
    for (int j = 0; j < k; j++) put_lstring(c, mod, cut[j]);
    put_lstring(c, mod, len);
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
    if (c->data_only) return 0;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, c->names) == LUA_TSTRING) {
        size_t len;
        const char *name = lua_tolstring(L, -1, &len);
        const char *sep = memchr(name, '\1', len);
        if (sep) {
            put_byte(c, 'N');
            put_module(c, name, (size_t)(sep - name));
            put_lstring(c, sep + 1, len - (size_t)(sep - name) - 1);
        } else {
            put_byte(c, 'M');
            put_module(c, name, len);
        }
        lua_pop(L, 1);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

static int define(wctx *c, int idx) {
    if (c->next_id == INT32_MAX) fail_at(c, "more than 2^31 tables and functions");
    lua_pushvalue(c->L, idx);
    lua_pushinteger(c->L, c->next_id);
    lua_rawset(c->L, c->seen);
    return c->next_id++;
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

/* An upvalue named _ENV holding the globals, or a table with a metatable
 * (an environment layered over the globals: busted's, a sandbox's), is
 * the function's environment rather than data: it binds to the
 * receiver's globals. A plain table (load(src, name, "t", {x = 1})) is
 * data and is copied. */
static int is_environment(wctx *c, const char *name, int idx) {
    lua_State *L = c->L;
    if (name == NULL || strcmp(name, "_ENV") != 0 || lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    int env = lua_rawequal(L, idx, -1);
    lua_pop(L, 1);
    if (!env && lua_getmetatable(L, idx)) {
        env = 1;
        lua_pop(L, 1);
    }
    return env;
}

static void write_function(wctx *c, int idx) {
    lua_State *L = c->L;
    lua_Debug ar;
    if (c->data_only) {
        c->code_refused = 1;
        fail_at(c, "a function");
    }
    if (lua_iscfunction(L, idx)) fail_at(c, "a C function that no loaded module holds");
    int id = define(c, idx);
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
        const char *name = lua_getupvalue(L, idx, i);            /* ... value */
        lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
        if (lua_rawget(L, c->upvals) == LUA_TNUMBER) {           /* shared */
            lua_Integer ref = lua_tointeger(L, -1);
            put_byte(c, 'U');
            put_varint(c, (uint64_t)(ref >> 8));
            put_varint(c, (uint64_t)(ref & 0xff));
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
        lua_pushinteger(L, ((lua_Integer)id << 8) | i);
        lua_rawset(L, c->upvals);
        if (is_environment(c, name, lua_gettop(L))) {
            put_byte(c, 'G');
        } else {
            push_step(c, "upvalue", where_idx, name && *name ? name : "?");
            write_value(c, lua_gettop(L));
            c->depth--;
        }
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
        if (c->data_only) {
            lua_pop(L, 1);
            c->code_refused = 1;
            fail_at(c, "a table with a metatable");
        }
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

static void marshal_frame(lua_State *L, int first, int n, int names, int data_only,
                          const unsigned char *key, lc_bytes *out) {
    wctx c;
    int top = lua_gettop(L);
    first = lua_absindex(L, first);
    memset(&c, 0, sizeof c);
    c.L = L;
    c.out = out;
    c.data_only = data_only;
    luaL_checkstack(L, 8, "marshal");
    if (!data_only) {           /* data needs no names of modules */
        if (names) {
            c.names = lua_absindex(L, names);
        } else {
            lc_marshal_names(L);
            c.names = lua_gettop(L);
        }
    }
    lua_newtable(L);
    c.seen = lua_gettop(L);
    if (!data_only) {
        lua_newtable(L);
        c.upvals = lua_gettop(L);
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        c.loaded = lua_gettop(L);
    }
    size_t start = out->len;
    put(&c, frame_magic, HEAD_LEN);
    for (int i = 0; i < n; i++) write_value(&c, first + i);
    unsigned char tag[TAG_LEN];
    frame_tag(key, out->data + start, out->len - start, tag);
    put(&c, tag, TAG_LEN);
    lua_settop(L, top);
}

void lc_marshal(lua_State *L, int first, int n, int names, lc_bytes *out) {
    marshal_frame(L, first, n, names, 0, NULL, out);
}

void lc_marshal_keyed(lua_State *L, int first, int n, int names,
                      const unsigned char *key, lc_bytes *out) {
    marshal_frame(L, first, n, names, 0, key, out);
}

void lc_marshal_data(lua_State *L, int first, int n, const unsigned char *key, lc_bytes *out) {
    marshal_frame(L, first, n, 0, 1, key, out);
}

/* ---- reading ------------------------------------------------------------ */

/* Where a value sits, for the data mode's errors: path[d] says what the
 * value at depth d is in the table at depth d - 1 (depth 1: the frame's
 * values, the (top + 1)-th of them). */
#define PATH_KEY (-1)         /* a key of that table */
#define PATH_META (-2)        /* its metatable */
/* > 0: the stack index of the key whose value it is */

typedef struct rctx {
    lua_State *L;
    const char *p, *end;
    int defs;             /* stack index: id -> object */
    int next_id;
    int depth, max_depth;
    int code_ok;          /* a tagged frame: bytecode and require allowed */
    const lc_data_limits *data;   /* the data mode's limits, or NULL */
    const char *what;     /* the data mode: what is read ("answer") */
    uint64_t items, tables;
    int top;              /* the frame's value being read, from 0 */
    int path[MAX_DEPTH + 4];
} rctx;

static int bad(rctx *c, const char *why) {
    return lc_raise(c->L, "luaconcurrent: corrupt value in transfer (%s)", why);
}

/* A key as a step of a path: .name, [12], ["a b"], [true]. */
static void add_key(luaL_Buffer *b, lua_State *L, int k) {
    char num[64];
    switch (lua_type(L, k)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, k, &len);
        int ident = len > 0 && len <= 40 && !(s[0] >= '0' && s[0] <= '9');
        for (size_t i = 0; ident && i < len; i++)
            ident = s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                    (s[i] >= '0' && s[i] <= '9');
        if (ident) {
            luaL_addchar(b, '.');
            luaL_addlstring(b, s, len);
            return;
        }
        luaL_addstring(b, "[\"");
        for (size_t i = 0; i < len && i < 40; i++)
            luaL_addchar(b, (s[i] >= 32 && s[i] < 127 && s[i] != '"' && s[i] != '\\') ? s[i] : '?');
        luaL_addstring(b, len > 40 ? "...\"]" : "\"]");
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, k))
            snprintf(num, sizeof num, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)lua_tointeger(L, k));
        else
            snprintf(num, sizeof num, "[" LUA_NUMBER_FMT "]", (LUAI_UACNUMBER)lua_tonumber(L, k));
        luaL_addstring(b, num);
        return;
    case LUA_TBOOLEAN:
        luaL_addstring(b, lua_toboolean(L, k) ? "[true]" : "[false]");
        return;
    default:
        luaL_addstring(b, "[<a table>]");
    }
}

/* The data mode refuses what the value at the current depth is:
 * "luaconcurrent: answer refused: <thing> at [2].x (<why>)". */
static int refuse(rctx *c, const char *thing, const char *why) {
    lua_State *L = c->L;
    char num[32];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "luaconcurrent: ");
    luaL_addstring(&b, c->what);
    luaL_addstring(&b, " refused: ");
    luaL_addstring(&b, thing);
    luaL_addstring(&b, " at ");
    snprintf(num, sizeof num, "[%lld]", (long long)c->top + 1);
    luaL_addstring(&b, num);
    for (int d = 2; d <= c->depth && d < (int)(sizeof c->path / sizeof c->path[0]); d++) {
        if (c->path[d] == PATH_KEY)
            luaL_addstring(&b, ".<key>");
        else if (c->path[d] == PATH_META)
            luaL_addstring(&b, ".<metatable>");
        else
            add_key(&b, L, c->path[d]);
    }
    luaL_addstring(&b, " (");
    luaL_addstring(&b, why);
    luaL_addstring(&b, ")");
    luaL_pushresult(&b);
    return lua_error(L);
}

static const char *take(rctx *c, uint64_t n) {
    if ((uint64_t)(c->end - c->p) < n) bad(c, "cut short");
    const char *p = c->p;
    c->p += n;
    return p;
}

static uint64_t get_varint(rctx *c) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        unsigned char byte = (unsigned char)*take(c, 1);
        if (shift == 63 && byte > 1) break;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
    bad(c, "a number too long");
    return 0;
}

/* A varint that must lie in [lo, hi]. */
static uint64_t get_count(rctx *c, uint64_t lo, uint64_t hi, const char *what) {
    uint64_t v = get_varint(c);
    if (v < lo || v > hi) bad(c, what);
    return v;
}

static const char *get_lstring(rctx *c, size_t *len) {
    uint64_t n = get_varint(c);
    const char *s = take(c, n);
    *len = (size_t)n;
    return s;
}

/* Returns a function that a frame without a tag gives instead of code. */
static int unsigned_stub(lua_State *L) {
    return lc_raise(L, "luaconcurrent: this function came in a frame read without its "
                       "check (lc_unmarshal_unchecked) and cannot run");
}

/* 'M'/'N': the names, then the module (a table) on top. */
static void push_module(rctx *c) {
    lua_State *L = c->L;
    int k = (int)get_count(c, 1, MAX_MODPARTS, "a module name list");
    for (int j = 1; j <= k; j++) {
        size_t len;
        const char *name = get_lstring(c, &len);
        if (len == 0 || memchr(name, '\0', len)) bad(c, "a module name");
        lua_pushlstring(L, name, len);                     /* name */
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        if (!lua_istable(L, -1)) lc_raise(L, "luaconcurrent: package.loaded is not a table");
        lua_pushvalue(L, -2);
        if (lua_rawget(L, -2) == LUA_TNIL) {               /* name loaded nil */
            lua_pop(L, 2);
            if (!c->code_ok)
                lc_raise(L, "luaconcurrent: module '%s' is not loaded (a frame read without "
                            "its check loads none)", lua_tostring(L, -1));
            lua_getglobal(L, "require");
            if (!lua_isfunction(L, -1))
                lc_raise(L, "luaconcurrent: cannot load module '%s': no require function",
                         lua_tostring(L, -2));
            lua_pushvalue(L, -2);
            lua_call(L, 1, 1);                             /* name mod */
        } else {
            lua_remove(L, -2);                             /* name mod */
        }
        if (j < k) {
            lua_pop(L, 2);
        } else {
            if (!lua_istable(L, -1))
                lc_raise(L, "luaconcurrent: module '%s' is a %s here, not a table",
                         lua_tostring(L, -2), luaL_typename(L, -1));
            lua_remove(L, -2);                             /* mod */
        }
    }
}

static void read_value(rctx *c);

/* Upvalue i of the function at fn: a value, or 'U': shared with one read
 * before in this frame. */
static void read_upvalue(rctx *c, int fn, int i) {
    lua_State *L = c->L;
    if (c->p < c->end && *c->p == 'U') {
        c->p++;
        uint64_t id = get_varint(c);
        int n = (int)get_count(c, 1, MAX_UPVALUES, "an upvalue number");
        if (id >= (uint64_t)c->next_id) bad(c, "a shared upvalue's function");
        if (lua_rawgeti(L, c->defs, (lua_Integer)id) != LUA_TFUNCTION)
            bad(c, "a shared upvalue's function");
        if (lua_getupvalue(L, -1, n) == NULL) bad(c, "a shared upvalue's number");
        lua_pop(L, 1);
        if (!lua_iscfunction(L, fn) && !lua_iscfunction(L, -1))
            lua_upvaluejoin(L, fn, i, -1, n);
        else if (c->code_ok)
            bad(c, "a shared upvalue of a C function");
        lua_pop(L, 1);
        return;
    }
    read_value(c);
    if (lua_setupvalue(L, fn, i) == NULL) bad(c, "an upvalue number");
}

static void read_function(rctx *c) {
    lua_State *L = c->L;
    uint64_t len;
    memcpy(&len, take(c, sizeof len), sizeof len);
    const char *code = take(c, len);
    int nup;
    if (c->code_ok) {
        if (luaL_loadbufferx(L, code, (size_t)len, "=(transferred)", "b") != LUA_OK)
            lc_raise(L, "luaconcurrent: cannot load a transferred function: %s", lua_tostring(L, -1));
        lua_Debug ar;
        lua_pushvalue(L, -1);
        lua_getinfo(L, ">u", &ar);
        nup = (int)get_count(c, ar.nups, ar.nups, "an upvalue count");
    } else {
        nup = (int)get_count(c, 0, MAX_UPVALUES, "an upvalue count");
        luaL_checkstack(L, nup + 8, "upvalues");
        for (int i = 0; i < nup; i++) lua_pushnil(L);
        lua_pushcclosure(L, unsigned_stub, nup);
    }
    if (c->next_id == INT32_MAX) bad(c, "too many tables and functions");
    lua_pushvalue(L, -1);
    lua_rawseti(L, c->defs, c->next_id++);         /* before upvalues: self-reference */
    int fn = lua_gettop(L);
    for (int i = 1; i <= nup; i++) read_upvalue(c, fn, i);
}

static void read_table(rctx *c) {
    lua_State *L = c->L;
    int *step = &c->path[c->depth + 1];           /* its entries' place */
    if (c->next_id == INT32_MAX) bad(c, "too many tables and functions");
    if (c->data && ++c->tables > c->data->tables) {
        char why[64];
        snprintf(why, sizeof why, "more than %llu in one frame",
                 (unsigned long long)c->data->tables);
        refuse(c, "a table", why);
    }
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, c->defs, c->next_id++);
    for (;;) {
        if (c->p < c->end && *c->p == 'e') {
            c->p++;
            break;
        }
        *step = PATH_KEY;
        read_value(c);                             /* t k */
        if (lua_isnil(L, -1)) bad(c, "a nil table key");
        if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Number k = lua_tonumber(L, -1);
            if (k != k) bad(c, "a NaN table key");
        }
        *step = lua_gettop(L);
        read_value(c);                             /* t k v */
        lua_rawset(L, -3);
    }
    if (c->data) {
        if (!(c->p < c->end && *c->p == 'n'))
            refuse(c, "a metatable on the table", "only data comes back");
        c->p++;                                    /* no metatable */
        return;
    }
    *step = PATH_META;
    read_value(c);                                 /* t mt|nil */
    if (lua_istable(L, -1))
        lua_setmetatable(L, -2);
    else if (lua_isnil(L, -1))
        lua_pop(L, 1);
    else
        bad(c, "a metatable");
}

static void read_value(rctx *c) {
    lua_State *L = c->L;
    if (++c->depth > c->max_depth) {
        if (!c->data) bad(c, "nested too deep");
        char why[64];
        snprintf(why, sizeof why, "nested more than %d tables deep", c->data->depth);
        refuse(c, "a value", why);
    }
    luaL_checkstack(L, 8, "nesting too deep");
    if (c->data && ++c->items > c->data->items) {
        char why[64];
        snprintf(why, sizeof why, "more than %llu values in one frame",
                 (unsigned long long)c->data->items);
        refuse(c, "a value", why);
    }
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
    case 's': {
        size_t len;
        const char *s;
        if (c->data) {
            uint64_t n = get_varint(c);
            if (n > c->data->string) {
                char why[96];
                snprintf(why, sizeof why, "%llu bytes, over the cap of %llu",
                         (unsigned long long)n, (unsigned long long)c->data->string);
                refuse(c, "a string", why);
            }
            s = take(c, n);
            len = (size_t)n;
        } else {
            s = get_lstring(c, &len);
        }
        lua_pushlstring(L, s, len);
        break;
    }
    case 'R': {
        uint64_t id = get_varint(c);
        if (id >= (uint64_t)c->next_id) bad(c, "a reference");
        lua_rawgeti(L, c->defs, (lua_Integer)id);
        break;
    }
    case 'G':
        if (c->data) refuse(c, "an _ENV binding", "code never comes back");
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
        break;
    case 'M':
        if (c->data) refuse(c, "a module by name", "code never comes back");
        push_module(c);
        break;
    case 'N': {
        if (c->data) refuse(c, "a module function by name", "code never comes back");
        push_module(c);                                /* mod */
        size_t len;
        const char *key = get_lstring(c, &len);
        lua_pushlstring(L, key, len);                  /* mod key */
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) != LUA_TFUNCTION)        /* mod key fn */
            lc_raise(L, "luaconcurrent: a module here has no function '%s'", lua_tostring(L, -2));
        lua_replace(L, -3);
        lua_pop(L, 1);
        break;
    }
    case 'T':
        read_table(c);
        break;
    case 'F':
        if (c->data) refuse(c, "a function value", "code never comes back");
        read_function(c);
        break;
    default:
        bad(c, "an unknown tag");
    }
    c->depth--;
}

/* checked: the tag must be right under key (NULL: this process's key);
 * data: the data mode's limits (no code, no modules, no metatables), or
 * NULL for the full decoder (code only if checked). */
static int read_frame(lua_State *L, const char *data, size_t len, int checked,
                      const unsigned char *key, const lc_data_limits *lim, const char *what) {
    rctx c;
    c.L = L;
    c.next_id = c.depth = 0;
    c.items = c.tables = 0;
    c.top = 0;
    c.data = lim;
    c.what = what ? what : "answer";
    c.max_depth = lim ? lim->depth + 1 : MAX_DEPTH + 2;
    if (lim && len > lim->frame) {
        char why[96];
        snprintf(why, sizeof why, "%llu bytes, over the cap of %llu", (unsigned long long)len,
                 (unsigned long long)lim->frame);
        return lc_raise(L, "luaconcurrent: %s refused: a frame of %s", c.what, why);
    }
    if (data == NULL || len < HEAD_LEN + TAG_LEN || memcmp(data, frame_magic, HEAD_LEN) != 0)
        return lc_raise(L, "luaconcurrent: a transfer is not a frame of this version");
    if (checked) {
        unsigned char tag[TAG_LEN];
        frame_tag(key, data, len - TAG_LEN, tag);
        unsigned char diff = 0;
        for (int i = 0; i < TAG_LEN; i++) diff |= tag[i] ^ (unsigned char)data[len - TAG_LEN + i];
        if (diff)
            return lc_raise(L, "luaconcurrent: a transfer failed its check (corrupt, or not "
                               "made by this run)");
    }
    c.code_ok = checked && !lim;
    c.p = data + HEAD_LEN;
    c.end = data + len - TAG_LEN;
    luaL_checkstack(L, 8, "unmarshal");
    lua_newtable(L);
    c.defs = lua_gettop(L);
    int n = 0;
    while (c.p < c.end) {
        if (n == INT32_MAX) bad(&c, "too many values");
        c.top = n;
        read_value(&c);
        n++;
    }
    lua_remove(L, c.defs);
    return n;
}

int lc_marshal_retag(const char *data, size_t len, const unsigned char key[LC_MARSHAL_KEY_LEN],
                     char *out) {
    unsigned char tag[TAG_LEN];
    if (data == NULL || len < HEAD_LEN + TAG_LEN || memcmp(data, frame_magic, HEAD_LEN) != 0)
        return -1;
    frame_tag(NULL, data, len - TAG_LEN, tag);
    unsigned char diff = 0;
    for (int i = 0; i < TAG_LEN; i++) diff |= tag[i] ^ (unsigned char)data[len - TAG_LEN + i];
    if (diff) return -1;
    if (out) {
        memcpy(out, data, len - TAG_LEN);
        frame_tag(key, data, len - TAG_LEN, (unsigned char *)out + len - TAG_LEN);
    }
    return 0;
}

int lc_unmarshal(lua_State *L, const char *data, size_t len) {
    return read_frame(L, data, len, 1, NULL, NULL, NULL);
}

int lc_unmarshal_keyed(lua_State *L, const char *data, size_t len,
                       const unsigned char key[LC_MARSHAL_KEY_LEN]) {
    return read_frame(L, data, len, 1, key, NULL, NULL);
}

int lc_unmarshal_unchecked(lua_State *L, const char *data, size_t len) {
    return read_frame(L, data, len, 0, NULL, NULL, NULL);
}

/* The process's defaults for the data mode. Set from the main thread
 * (core.marshal_data_limits) before workers read with them. */
static lc_data_limits data_defaults = {
    .frame = LC_DATA_MAX_FRAME, .string = LC_DATA_MAX_FRAME, .depth = MAX_DEPTH,
    .tables = LC_DATA_MAX_TABLES, .items = LC_DATA_MAX_ITEMS,
};

void lc_data_limits_get(lc_data_limits *out) { *out = data_defaults; }

void lc_data_limits_set(const lc_data_limits *lim) { data_defaults = *lim; }

int lc_unmarshal_data(lua_State *L, const char *data, size_t len,
                      const unsigned char *key, const lc_data_limits *lim, const char *what) {
    return read_frame(L, data, len, 1, key, lim ? lim : &data_defaults, what);
}

/* ---- Lua bindings (registered with core's functions) --------------------- */

int lc_marshal_l_key(lua_State *L) {
    unsigned char key[LC_MARSHAL_KEY_LEN];
    if (lc_marshal_key_weak())
        return lc_raise(L, "%s", LC_WEAK_KEY_MSG);
    lc_marshal_key(key);
    lua_pushlstring(L, (const char *)key, sizeof key);
    return 1;
}

int lc_marshal_l_set_key(lua_State *L) {
    size_t len;
    const char *key = luaL_checklstring(L, 1, &len);
    if (len != LC_MARSHAL_KEY_LEN)
        return lc_raise(L, "luaconcurrent: a marshal key is %d bytes, got %d",
                        LC_MARSHAL_KEY_LEN, (int)len);
    lc_marshal_set_key((const unsigned char *)key);
    return 0;
}

int lc_marshal_l_unmarshal_unchecked(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return lc_unmarshal_unchecked(L, s, len);
}
