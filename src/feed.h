/*
 * feed.h — what a proc's stdin gets from a file or a pipe besides its
 * in-memory input, moved with splice(2) so the bytes never cross user
 * space where the kernel allows it:
 *
 *   range  bytes [off, off+len) of a file, straight from the page cache;
 *          where the file refuses splice (EINVAL: a /proc file, a file
 *          system without splice_read) pread into a small buffer and
 *          written instead.
 *   cut    the next block of a stream (a pipe, read through its own
 *          O_NONBLOCK open file description): len bytes, the bulk
 *          spliced pipe to pipe, the last LC_FEED_TAIL bytes read to find
 *          the last `cut` byte; the block ends after it and what follows
 *          (the rest) is handed back for the next block, with at least
 *          one byte in it unless the stream ended, so a next block is
 *          never empty. No cut byte in the tail: read on, a block-sized
 *          chunk at a time, until one holds a cut byte or the stream ends
 *          (GNU parallel's --pipe blocks; a record longer than the tail
 *          that straddles the block's end makes it end after that record
 *          instead of before). Only one cut feed reads a stream at a time:
 *          its owner starts the next after this one's rest is known.
 *
 * The proc that owns the feed (proc.h) calls lc_feed_pump when its stdin
 * pipe has room (or, after LC_FEED_WAIT_SRC, when the source has bytes).
 * The feed owns its fd (src) from lc_feed_open on, and lc_feed_close
 * frees all it holds.
 */
#ifndef LC_FEED_H
#define LC_FEED_H

#include <stddef.h>
#include <sys/types.h>

#include "loop.h"

#define LC_FEED_TAIL (256 * 1024)   /* cut: bytes read to find the block's end */
#define LC_FEED_WAIT_SRC (-1)       /* lc_feed_pump: wait for the source */

typedef struct lc_feed {
    lc_watch src;               /* the file or stream; fd -1: no feed */
    int cut;                    /* cut mode: the record end byte; -1: range */
    off_t off;                  /* range: where it starts */
    size_t len, done;           /* bytes asked for; taken from src so far */
    size_t written;             /* of those, written to the child */
    size_t block, prefix_len;   /* cut: the block size, the bytes before src's */
    int nosplice;               /* splice refused: read + write */
    int phase;                  /* cut: see feed.c */
    int eof;                    /* cut: the stream has ended */
    int out_errno;              /* cut: the child closed stdin (EPIPE); the
                                 * block is still read to its end, unsent */
    int fed;                    /* cut: 1 once the rest is known, 2 once
                                 * the owner has handed it over */
    char *buf;                  /* bytes read, not yet written; cut: the
                                 * tail, then the rest from send_len on */
    size_t buf_off, buf_len, buf_cap, send_len, scan_from, tail_end;
} lc_feed;

/* Open path read-only: a range [off, off+len) (cut < 0), or the next
 * block of the stream at path, len bytes cut after the last byte `cut`,
 * block the block size (prefix_len: bytes the proc writes before it).
 * 0 or an errno; f is LC_FEED-empty (src.fd -1) on failure. */
int lc_feed_open(lc_feed *f, const char *path, off_t off, size_t len,
                 int cut, size_t block, size_t prefix_len);

/* Move what can move now. 0: finished (range: all written; cut: the
 * block written, or dropped after the child closed stdin, and the rest
 * known); EAGAIN: the pipe is full (wait for EPOLLOUT on it);
 * LC_FEED_WAIT_SRC: the stream is empty (wait for EPOLLIN on f->src);
 * ENODATA: the file ended before the range did; EPIPE: the child closed
 * its stdin (range; no SIGPIPE reaches the host); another errno: a read
 * or write failed. */
int lc_feed_pump(lc_feed *f, int pipe_fd);

/* Nonzero while there is more to do (a cut feed: until its rest is known). */
int lc_feed_pending(const lc_feed *f);

/* cut: nonzero once the block is written (or dropped): what is left is
 * finding the rest, and the child's stdin can close. */
int lc_feed_sent(const lc_feed *f);

/* Bytes of the range or block written to the child so far, and the
 * bytes it has in all (a cut block's once its end is known). */
size_t lc_feed_written(const lc_feed *f);
size_t lc_feed_size(const lc_feed *f);

/* cut: the rest after the block (valid until lc_feed_close). */
const char *lc_feed_rest(const lc_feed *f, size_t *len);

void lc_feed_close(lc_loop *loop, lc_feed *f);

#endif
