/*
 * host.c — the host's settings, defaults for a plain interpreter. See host.h.
 */
#include "host.h"

#include <stddef.h>

int lc_embedded = 0;
void (*lc_state_setup)(lua_State *L) = NULL;
lua_Alloc lc_worker_alloc = NULL;
