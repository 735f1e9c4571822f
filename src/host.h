/*
 * host.h — what the program hosting the engine tells it. The module loaded
 * by a plain interpreter leaves everything at its default; the luaconcurrent
 * executable (main.c) sets these before it creates its first state.
 */
#ifndef LC_HOST_H
#define LC_HOST_H

#include "lua.h"

/* 1 inside the luaconcurrent executable (it has a --worker mode, handles
 * its own exit status on signals); 0 when loaded as a module. */
extern int lc_embedded;

/* Called on every new thread-worker state after the standard libraries
 * are open (the executable registers its embedded modules); NULL: none. */
extern void (*lc_state_setup)(lua_State *L);

/* Allocator for thread-worker states; NULL: luaL_newstate's. The test
 * build sets one that fails on demand (spec/oom_spec.lua). */
extern lua_Alloc lc_worker_alloc;

#endif
