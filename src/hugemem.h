/*
 * hugemem.h — a realloc for blocks that may be large. Blocks of
 * LC_HUGE_MIN bytes or more are their own anonymous mappings with huge
 * pages requested and grow with mremap; smaller ones come from malloc.
 * Which kind a block is follows from its size alone, so every caller must
 * pass the block's current size (as Lua's allocator protocol does).
 *
 * Captured output is written once, front to back, and then copied once
 * into a Lua string: with 4 KiB pages that is half a million page faults
 * per GB, with huge pages a few hundred.
 */
#ifndef LC_HUGEMEM_H
#define LC_HUGEMEM_H

#include <stddef.h>

#define LC_HUGE_MIN ((size_t)4 << 20)

/* realloc(ptr, nsize) where ptr's block has size osize (ptr NULL: osize
 * ignored). nsize 0 frees and returns NULL. NULL on failure, ptr intact. */
void *lc_mem_realloc(void *ptr, size_t osize, size_t nsize);

#endif
