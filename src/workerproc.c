/*
 * workerproc.c — what a worker process sets up before its first task.
 *
 * core.worker_init() -> file
 *   * moves the frame pipe (the runner's end of our stdin) off fd 0, to a
 *     close-on-exec fd above 2, and returns it as a Lua file; fd 0 (and so
 *     io.stdin, and the stdin of anything a task starts with os.execute or
 *     io.popen) becomes /dev/null, as thread and coroutine tasks have no
 *     stdin of theirs either: a task calling io.read() gets EOF instead of
 *     blocking or eating frames;
 *   * installs the worker's signal handling (signals.h, lc_signals_worker):
 *     told to stop, or orphaned, it kills the programs its tasks started.
 * Call it before anything reads io.stdin (its buffer would hold frames).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "lcerror.h"
#include "signals.h"
#include "workerproc.h"

static int frames_close(lua_State *L) {
    luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
    int ok = fclose(p->f) == 0;
    return luaL_fileresult(L, ok, NULL);
}

static int l_worker_init(lua_State *L) {
    luaL_Stream *p = (luaL_Stream *)lua_newuserdatauv(L, sizeof *p, 0);
    p->f = NULL;
    p->closef = NULL;                   /* a closed file until fdopen works */
    luaL_setmetatable(L, LUA_FILEHANDLE);
    int fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return lc_raise(L, "luaconcurrent: worker cannot move its frame pipe: %s",
                        strerror(errno));
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0) {  /* (dup2 clears O_CLOEXEC on 0) */
        int e = errno;
        if (nul >= 0) close(nul);
        close(fd);
        return lc_raise(L, "luaconcurrent: worker cannot open /dev/null: %s",
                        strerror(e));
    }
    close(nul);
    p->f = fdopen(fd, "rb");
    if (p->f == NULL) {
        int e = errno;
        close(fd);
        return lc_raise(L, "luaconcurrent: worker cannot read its frame pipe: %s",
                        strerror(e));
    }
    p->closef = frames_close;
    lc_signals_worker();
    return 1;
}

const luaL_Reg lc_workerproc_funcs[] = {
    {"worker_init", l_worker_init},
    {NULL, NULL},
};
