/*
 * core_file.c — log files written a whole line at a time (the joblog and
 * the results file, control/joblog.lua):
 *
 *   core.file_open(path, mode) -> file, size | nil, message, errname
 *       mode "a": O_APPEND, created if missing; "w": also truncated
 *   file:write(s | {s1, s2, ...}) -> true | nil, message, errname
 *   file:size() -> bytes | nil, message, errname
 *   file:truncate(n) -> true | nil, message, errname
 *   file:close() -> true | nil, message, errname (idempotent; also __gc,
 *       __close)
 *   core.writable(path) -> true | nil, message
 *
 * Why not Lua's io: a buffered FILE splits a line across write() calls
 * whenever its buffer fills, and reports a full disk only at some later
 * flush; a reader (a resumed run, GNU parallel) then finds half a line
 * glued to the next. Here each line is one write() on an O_APPEND fd, so
 * a line is in the file whole or not at all, and its error is returned
 * with that line.
 */
#include "bindings.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FILE_MT "luaconcurrent.file"

typedef struct {
    int fd;                         /* -1 once closed */
} lfile;

static int fail_errno(lua_State *L, int e, const char *what) {
    lua_pushnil(L);
    if (what) lua_pushfstring(L, "%s: %s", what, strerror(e));
    else lua_pushstring(L, strerror(e));
    lua_pushstring(L, lc_errno_name(e));
    return 3;
}

static lfile *check_open(lua_State *L) {
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->fd < 0) luaL_error(L, "luaconcurrent: the file is closed");
    return f;
}

static int l_file_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *mode = luaL_optstring(L, 2, "a");
    int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
    struct stat st;
    if (strcmp(mode, "w") == 0) flags |= O_TRUNC;
    else if (strcmp(mode, "a") != 0) return luaL_argerror(L, 2, "mode must be \"a\" or \"w\"");
    /* The userdata first: a memory error after open() would leak the fd. */
    lfile *f = lua_newuserdatauv(L, sizeof *f, 0);
    f->fd = -1;
    luaL_setmetatable(L, FILE_MT);
    int fd;
    do fd = open(path, flags, 0666); while (fd < 0 && errno == EINTR);
    if (fd < 0) return fail_errno(L, errno, path);
    f->fd = fd;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        f->fd = -1;
        return fail_errno(L, e, path);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        f->fd = -1;
        return fail_errno(L, EISDIR, path);
    }
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 2;
}

/* The whole line in one write: file:write(s) or file:write({s1, s2, ...})
 * (a line built in pieces, written with writev without joining them
 * first: a results line of hundreds of MB is not copied again). A regular
 * file takes all of it or fails; a short count means the disk filled (or a
 * signal came) part way: the rest is tried, and when that fails the part
 * that went in is cut off again, so no reader ever sees half a line.
 * (O_APPEND puts the offset at the end of what we wrote; ftruncate of a
 * device fails harmlessly.) More than IOV_MAX pieces take more than one
 * writev, with the same cut on failure. */
static int l_file_write(lua_State *L) {
    lfile *f = check_open(L);
    struct iovec one, *iov = &one;
    int n = 1, i = 0;
    size_t done = 0;
    if (lua_istable(L, 2)) {
        n = (int)luaL_len(L, 2);
        if (n == 0) {
            lua_pushboolean(L, 1);
            return 1;
        }
        iov = lua_newuserdatauv(L, sizeof *iov * (size_t)n, 0);   /* freed by the GC */
        for (int k = 0; k < n; k++) {
            /* Strings only, checked before lua_tolstring: it would turn a
             * number into a new string that only the stack holds, and the
             * pointer kept here would outlive it once popped. */
            if (lua_rawgeti(L, 2, k + 1) != LUA_TSTRING)
                return luaL_error(L, "luaconcurrent: file:write: piece %d is not a string", k + 1);
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            iov[k].iov_base = (void *)s;               /* anchored in the table at 2 */
            iov[k].iov_len = len;
            lua_pop(L, 1);
        }
    } else {
        size_t len;
        one.iov_base = (void *)luaL_checklstring(L, 2, &len);
        one.iov_len = len;
    }
    while (i < n) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        int cnt = n - i < IOV_MAX ? n - i : IOV_MAX;
        ssize_t w = writev(f->fd, iov + i, cnt);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            if (done > 0) {
                off_t end = lseek(f->fd, 0, SEEK_CUR);
                if (end >= (off_t)done && ftruncate(f->fd, end - (off_t)done) < 0) {
                    /* (nothing more to do: the error below is reported) */
                }
            }
            return fail_errno(L, e, NULL);
        }
        done += (size_t)w;
        while (w > 0 && i < n) {              /* past what went in */
            if ((size_t)w >= iov[i].iov_len) {
                w -= (ssize_t)iov[i].iov_len;
                i++;
            } else {
                iov[i].iov_base = (char *)iov[i].iov_base + w;
                iov[i].iov_len -= (size_t)w;
                w = 0;
            }
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_file_size(lua_State *L) {
    lfile *f = check_open(L);
    struct stat st;
    if (fstat(f->fd, &st) < 0) return fail_errno(L, errno, NULL);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 1;
}

static int l_file_truncate(lua_State *L) {
    lfile *f = check_open(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "size must not be negative");
    if (ftruncate(f->fd, (off_t)n) < 0) return fail_errno(L, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_file_close(lua_State *L) {
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->fd >= 0) {
        int fd = f->fd;
        f->fd = -1;
        /* (Linux frees the fd even when close reports an error: no retry.) */
        if (close(fd) < 0 && errno != EINTR) return fail_errno(L, errno, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Whether path can be written (an existing file) or created (its folder),
 * without creating anything: a construction-time check. */
static int l_writable(lua_State *L) {
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    struct stat st;
    if (len == 0) {
        lua_pushnil(L);
        lua_pushstring(L, "the path is empty");
        return 2;
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(EISDIR));
            return 2;
        }
        if (access(path, W_OK) < 0) goto fail;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (errno != ENOENT) goto fail;
    /* The folder it would be created in. */
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        lua_pushliteral(L, ".");
    } else if (slash == path) {
        lua_pushliteral(L, "/");
    } else {
        lua_pushlstring(L, path, (size_t)(slash - path));
    }
    const char *dir = lua_tostring(L, -1);
    if (stat(dir, &st) < 0) goto fail;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        goto fail;
    }
    if (access(dir, W_OK | X_OK) < 0) goto fail;
    lua_pushboolean(L, 1);
    return 1;
fail:
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
}

static const luaL_Reg file_methods[] = {
    {"write", l_file_write},
    {"size", l_file_size},
    {"truncate", l_file_truncate},
    {"close", l_file_close},
    {NULL, NULL},
};

static const luaL_Reg file_funcs[] = {
    {"file_open", l_file_open},
    {"writable", l_writable},
    {NULL, NULL},
};

/* The file metatable, and the functions into the module table on top. */
void lc_core_file_open(lua_State *L) {
    luaL_newmetatable(L, FILE_MT);
    luaL_newlib(L, file_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_file_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_file_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    luaL_setfuncs(L, file_funcs, 0);
}
