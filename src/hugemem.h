/*
 * hugemem.h — a realloc for blocks that may be large. Blocks of
 * LC_HUGE_MIN bytes or more are their own anonymous mappings and grow
 * with mremap (no copy); smaller ones come from malloc. Which kind a block
 * is follows from its size alone, so every caller must pass the block's
 * current size (as Lua's allocator protocol does).
 *
 * Captured output is written once, front to back. Copying it into a Lua
 * string would touch as much memory again (a page fault per 4 KiB of it):
 * where the Lua state allocates through lc_mem_realloc (the executable),
 * the string takes the capture buffer's pages instead (lc_mem_offer).
 */
#ifndef LC_HUGEMEM_H
#define LC_HUGEMEM_H

#include <stddef.h>

#define LC_HUGE_MIN ((size_t)4 << 20)

/* realloc(ptr, nsize) where ptr's block has size osize (ptr NULL: osize
 * ignored). nsize 0 frees and returns NULL. NULL on failure, ptr intact. */
void *lc_mem_realloc(void *ptr, size_t osize, size_t nsize);

/* Around one lua_pushlstring(L, *data, len) of a big buffer from
 * lc_mem_realloc, in the same thread: if the new string's allocation comes
 * through lc_mem_realloc, it is the buffer's own mapping (Lua's copy then
 * copies each byte onto itself) and *data, *cap become NULL, 0 — the
 * string owns the memory. Otherwise nothing changes. The first call of
 * lc_mem_realloc after lc_mem_offer, whatever it is, withdraws the offer;
 * so does lc_mem_offer_end, which must follow the push. */
void lc_mem_offer(char **data, size_t *cap, size_t len);
void lc_mem_offer_end(void);

#endif
