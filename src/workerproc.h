/*
 * workerproc.h — core.worker_init(), for worker processes (isolation =
 * "process"; worker.lua). Registered in the core table by core.c.
 */
#ifndef LC_WORKERPROC_H
#define LC_WORKERPROC_H

#include "lauxlib.h"

extern const luaL_Reg lc_workerproc_funcs[];

#endif
