/*
 * hugemem.c — see hugemem.h.
 *
 * A big block is a mapping that starts `off` bytes before the block: the
 * word just below the block holds `off`. Plain blocks have off = PAD; a
 * block handed to a Lua string (lc_mem_offer) starts STR_HDR bytes earlier
 * in the same mapping, so that the string's characters are where the
 * captured bytes already are.
 */
#include "hugemem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE ((size_t)4096)
#define PAD ((size_t)64)        /* keeps blocks 64-byte aligned */
/* Lua 5.4 on LP64: a long string is offsetof(TString, contents) = 24 bytes
 * of header, then its characters and a '\0' (lstring.h's sizelstring),
 * allocated with osize = LUA_TSTRING (lgc.c's luaC_newobj passes the type
 * without its variant). Checked on each use against the size Lua asks
 * for; a mismatch means a copy. */
#define STR_HDR ((size_t)24)
#define LONG_STRING_TAG ((size_t)4)

static size_t map_size(size_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

static size_t *off_word(void *p) { return (size_t *)((char *)p - sizeof(size_t)); }
static char *base_of(void *p) { return (char *)p - *off_word(p); }
static size_t span(void *p, size_t size) { return map_size(size + *off_word(p)); }

/* No MADV_HUGEPAGE: on a VM whose balloon reports free memory to the host
 * (virtio-balloon free page reporting, order 9 = 2 MiB), free 2 MiB blocks
 * are handed back to the host, so each huge page faulted in is 512 host
 * faults: 800 MB took 2.2-2.9 s with huge pages and 0.4-0.8 s without
 * when the memory was cold, 0.12-0.17 s with huge pages only when it had
 * been freed less than the reporting delay (2 s) before. Not knowable in
 * advance, so never. */
static void *map_new(size_t n) {
    /* fd -1 is what MAP_ANONYMOUS asks for; cppcheck's posix.cfg wants
     * fd >= 0 whatever the flags. */
    char *m = mmap(NULL, map_size(n + PAD), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* cppcheck-suppress invalidFunctionArg */
    if (m == MAP_FAILED) return NULL;
    *off_word(m + PAD) = PAD;
    return m + PAD;
}

/* ---- handing a captured buffer to a Lua string ------------------------- */

static _Thread_local struct {
    char **data;
    size_t *cap;
    size_t len;
} offer;

void lc_mem_offer(char **data, size_t *cap, size_t len) {
    offer.data = data;
    offer.cap = cap;
    offer.len = len;
}

void lc_mem_offer_end(void) { offer.data = NULL; }

/* The allocation a pending offer was made for: Lua's new long string of
 * exactly offer.len characters. Any other allocation withdraws the offer. */
static void *take_offer(size_t osize, size_t nsize) {
    char **data = offer.data;
    offer.data = NULL;
    if (osize != LONG_STRING_TAG || *data == NULL) return NULL;
    size_t len = offer.len, cap = *offer.cap;
    if (cap < LC_HUGE_MIN || nsize < LC_HUGE_MIN || nsize != STR_HDR + len + 1)
        return NULL;
    char *p = *data;
    if (*off_word(p) != PAD) return NULL;
    size_t have = map_size(cap + PAD), want = map_size(len + 1 + PAD);
    if (want > have) return NULL;           /* no room for the '\0' */
    /* The string is the buffer from here: what the capture did not use is
     * unmapped, so the mapping is what Lua will free with its size. */
    if (want < have) munmap(base_of(p) + want, have - want);
    char *s = p - STR_HDR;
    *off_word(s) = PAD - STR_HDR;
    *data = NULL;
    *offer.cap = 0;
    return s;
}

void *lc_mem_realloc(void *ptr, size_t osize, size_t nsize) {
    /* Any call withdraws a pending offer: one left by a push that raised
     * (a failing test allocator) goes at the latest when the buffer it
     * names is freed, before the proc holding it is. */
    if (offer.data) {
        void *s = ptr == NULL && nsize > 0 ? take_offer(osize, nsize) : NULL;
        offer.data = NULL;
        if (s) return s;
    }
    int was_big = ptr != NULL && osize >= LC_HUGE_MIN;
    int is_big = nsize >= LC_HUGE_MIN;
    if (nsize == 0) {
        if (was_big) munmap(base_of(ptr), span(ptr, osize));
        else free(ptr);
        return NULL;
    }
    if (!was_big && !is_big) return realloc(ptr, nsize);
    if (was_big && is_big) {
        size_t off = *off_word(ptr);
        char *m = mremap(base_of(ptr), span(ptr, osize), map_size(nsize + off),
                         MREMAP_MAYMOVE);
        return m == MAP_FAILED ? NULL : m + off;
    }
    void *p = is_big ? map_new(nsize) : malloc(nsize);
    if (p == NULL) return NULL;
    if (ptr) {
        memcpy(p, ptr, osize < nsize ? osize : nsize);
        if (was_big) munmap(base_of(ptr), span(ptr, osize));
        else free(ptr);
    }
    return p;
}
