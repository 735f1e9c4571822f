/*
 * hugemem.c — see hugemem.h.
 */
#include "hugemem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE ((size_t)4096)

static size_t map_size(size_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

static void *map_new(size_t n) {
    /* fd -1 is what MAP_ANONYMOUS asks for; cppcheck's posix.cfg wants
     * fd >= 0 whatever the flags. */
    void *p = mmap(NULL, map_size(n), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* cppcheck-suppress invalidFunctionArg */
    if (p == MAP_FAILED) return NULL;
    madvise(p, map_size(n), MADV_HUGEPAGE);   /* a hint: failure is fine */
    return p;
}

void *lc_mem_realloc(void *ptr, size_t osize, size_t nsize) {
    int was_big = ptr != NULL && osize >= LC_HUGE_MIN;
    int is_big = nsize >= LC_HUGE_MIN;
    if (nsize == 0) {
        if (was_big) munmap(ptr, map_size(osize));
        else free(ptr);
        return NULL;
    }
    if (!was_big && !is_big) return realloc(ptr, nsize);
    if (was_big && is_big) {
        void *p = mremap(ptr, map_size(osize), map_size(nsize), MREMAP_MAYMOVE);
        return p == MAP_FAILED ? NULL : p;      /* the mapping keeps its advice */
    }
    void *p = is_big ? map_new(nsize) : malloc(nsize);
    if (p == NULL) return NULL;
    if (ptr) {
        memcpy(p, ptr, osize < nsize ? osize : nsize);
        if (was_big) munmap(ptr, map_size(osize));
        else free(ptr);
    }
    return p;
}
