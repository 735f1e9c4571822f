/*
 * core.c — luaopen_luaconcurrent_core: the engine's Lua bindings, one file
 * per engine object (see bindings.h); this file only registers them.
 */
#include "bindings.h"
#include "workerproc.h"

int luaopen_luaconcurrent_core(lua_State *L) {
    luaL_checkversion(L);
    lua_newtable(L);                                   /* the module */
    lc_core_loop_open(L);
    lc_core_pool_open(L);                              /* after the loop's */
    lc_core_marshal_open(L);
    lc_core_misc_open(L);
    lc_core_file_open(L);
    luaL_setfuncs(L, lc_workerproc_funcs, 0);     /* worker processes */
    return 1;
}
