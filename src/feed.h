/*
 * feed.h — a byte range of a file fed into a child's stdin pipe: splice(2)
 * moves it from the page cache without a copy through user space; where
 * the file refuses splice (EINVAL: a file system or /proc file without
 * splice_read) it is pread into a small buffer and written instead.
 *
 * The proc that owns the feed (proc.h) calls lc_feed_pump whenever its
 * non-blocking stdin pipe has room, after any in-memory input, and
 * closes the fd with lc_feed_close. A feed owns its fd from lc_feed_open
 * on, whatever happens after.
 */
#ifndef LC_FEED_H
#define LC_FEED_H

#include <stddef.h>
#include <sys/types.h>

typedef struct lc_feed {
    int fd;                     /* the file; -1: no feed */
    off_t off;                  /* where the range starts */
    size_t len, done;           /* its length; bytes written so far */
    int nosplice;               /* splice refused: pread + write */
    char *buf;                  /* the fallback's bytes read, not yet written */
    size_t buf_off, buf_len;
} lc_feed;

#define LC_FEED_NONE {-1, 0, 0, 0, 0, NULL, 0, 0}

/* Open path read-only for the range [off, off+len). 0 or an errno. */
int lc_feed_open(lc_feed *f, const char *path, off_t off, size_t len);

/* Move what the pipe takes now. 0: the whole range is written; EAGAIN:
 * the pipe is full (wait for EPOLLOUT); ENODATA: the file ended before
 * the range did; EPIPE: the child closed its stdin (no SIGPIPE reaches
 * the host); another errno: a read or write failed. */
int lc_feed_pump(lc_feed *f, int pipe_fd);

/* Nonzero until the whole range is written. */
int lc_feed_pending(const lc_feed *f);

void lc_feed_close(lc_feed *f);

#endif
