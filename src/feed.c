/*
 * feed.c — a file's range, or a stream's next block, into a pipe. See
 * feed.h.
 *
 * A cut feed goes through its phases once:
 *   C_BULK   splice len - LC_FEED_TAIL bytes pipe to pipe (none when the
 *            block is no longer than the tail)
 *   C_TAIL   read the rest of the block into buf and find its last cut
 *            byte (none: read on, a block-sized chunk at a time)
 *   C_SEND   write buf up to the cut
 *   C_PROBE  with nothing after the cut, read one byte of the next block
 *            (or see the end), so the next block is known not to be empty
 *   C_DONE
 * A child that closes its stdin early (EPIPE) turns the rest of C_BULK
 * into C_TAIL and C_SEND into dropping: the block is still taken from
 * the stream whole, so the next one starts where it should.
 */
#include "feed.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEED_CHUNK (1024 * 1024)    /* bytes asked of one splice */
#define FEED_BUF   (64 * 1024)      /* a range's fallback buffer */

enum { C_BULK, C_TAIL, C_SEND, C_PROBE, C_DONE };

int lc_feed_open(lc_feed *f, const char *path, off_t off, size_t len,
                 int cut, size_t block, size_t prefix_len) {
    memset(f, 0, sizeof *f);
    f->src.fd = -1;
    f->cut = -1;
    /* A stream gets its own open file description, so O_NONBLOCK is
     * ours alone (not the writer's, nor a terminal's). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | (cut >= 0 ? O_NONBLOCK : 0));
    if (fd < 0) return errno;
    if (fd < 3) {               /* off 0-2, as proc.c keeps its pipes */
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int e = errno;
        close(fd);
        if (nfd < 0) return e;
        fd = nfd;
    }
    f->src.fd = fd;
    f->off = off;
    f->len = len;
    if (cut >= 0) {
        /* A bigger pipe lets the writer run ahead: fewer, larger moves. */
        if (fcntl(fd, F_GETPIPE_SZ) < FEED_CHUNK) fcntl(fd, F_SETPIPE_SZ, FEED_CHUNK);
        f->cut = cut & 0xff;
        f->block = block ? block : 1;
        f->prefix_len = prefix_len;
        f->tail_end = len;
        f->phase = len > LC_FEED_TAIL ? C_BULK : C_TAIL;
    }
    return 0;
}

int lc_feed_pending(const lc_feed *f) {
    if (f->src.fd < 0) return 0;
    return f->cut < 0 ? f->done < f->len : f->phase != C_DONE;
}

int lc_feed_sent(const lc_feed *f) {
    return f->cut >= 0 && f->phase >= C_PROBE;
}

size_t lc_feed_written(const lc_feed *f) {
    return f->cut < 0 ? f->done : f->written;
}

size_t lc_feed_size(const lc_feed *f) {
    size_t rest;
    if (f->cut < 0 || f->phase < C_SEND) return f->len;
    lc_feed_rest(f, &rest);
    return f->done - rest;
}

const char *lc_feed_rest(const lc_feed *f, size_t *len) {
    *len = f->buf_len > f->send_len ? f->buf_len - f->send_len : 0;
    return *len ? f->buf + f->send_len : "";
}

void lc_feed_close(lc_loop *loop, lc_feed *f) {
    lc_watch_close(loop, &f->src);
    free(f->buf);
    f->buf = NULL;
    f->buf_len = f->buf_cap = f->buf_off = f->send_len = 0;
}

/* ---- range ---------------------------------------------------------- */

/* One step of the fallback: top the buffer up, write what it holds.
 * > 0 bytes written, or -1 with errno (ENODATA at the file's end). */
static ssize_t copy_step(lc_feed *f, int out) {
    if (f->buf_off == f->buf_len) {
        if (f->buf == NULL && (f->buf = malloc(FEED_BUF)) == NULL) {
            errno = ENOMEM;
            return -1;
        }
        size_t want = f->len - f->done;
        if (want > FEED_BUF) want = FEED_BUF;
        ssize_t n = pread(f->src.fd, f->buf, want, f->off + (off_t)f->done);
        if (n <= 0) {
            if (n == 0) errno = ENODATA;
            return -1;
        }
        f->buf_off = 0;
        f->buf_len = (size_t)n;
    }
    ssize_t n = write(out, f->buf + f->buf_off, f->buf_len - f->buf_off);
    if (n > 0) f->buf_off += (size_t)n;
    return n;
}

static ssize_t splice_step(lc_feed *f, int out) {
    size_t want = f->len - f->done;
    if (want > FEED_CHUNK) want = FEED_CHUNK;
    loff_t at = f->off + (off_t)f->done;
    ssize_t n = splice(f->src.fd, &at, out, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) errno = ENODATA;
    return n > 0 ? n : -1;
}

static int pump_range(lc_feed *f, int out) {
    while (f->done < f->len) {
        ssize_t n = f->nosplice ? copy_step(f, out) : splice_step(f, out);
        if (n > 0) {
            f->done += (size_t)n;
            continue;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (!f->nosplice && (e == EINVAL || e == ENOSYS)) {
            f->nosplice = 1;    /* this file, or this kernel, will not splice */
            continue;
        }
        return e;
    }
    return 0;
}

/* ---- cut ------------------------------------------------------------ */

/* Read up to want bytes of the stream onto buf. > 0, 0 at its end, or -1
 * with errno. */
static ssize_t take(lc_feed *f, size_t want) {
    if (f->buf_cap - f->buf_len < want) {
        size_t cap = f->buf_cap ? f->buf_cap : LC_FEED_TAIL;
        while (cap - f->buf_len < want) cap *= 2;
        char *b = realloc(f->buf, cap);
        if (b == NULL) {
            errno = ENOMEM;
            return -1;
        }
        f->buf = b;
        f->buf_cap = cap;
    }
    ssize_t n = read(f->src.fd, f->buf + f->buf_len, want);
    if (n > 0) {
        f->buf_len += (size_t)n;
        f->done += (size_t)n;
    }
    return n;
}

/* A splice refused EAGAIN: which side to wait for. */
static int which_wait(lc_feed *f, int out) {
    struct pollfd pf[2] = {{f->src.fd, POLLIN, 0}, {out, POLLOUT, 0}};
    if (poll(pf, 2, 0) < 0) return errno == EINTR ? 0 : errno;
    if (!pf[0].revents) return LC_FEED_WAIT_SRC;
    if (!pf[1].revents) return EAGAIN;
    return 0;                   /* both ready now: try again */
}

static int cut_bulk(lc_feed *f, int out) {
    size_t bulk = f->len - LC_FEED_TAIL;
    while (f->done < bulk && !f->out_errno && !f->nosplice) {
        size_t want = bulk - f->done;
        if (want > FEED_CHUNK) want = FEED_CHUNK;
        ssize_t n = splice(f->src.fd, NULL, out, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            f->done += (size_t)n;
            f->written += (size_t)n;
            continue;
        }
        if (n == 0) {           /* the stream ended inside the block */
            f->eof = 1;
            break;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN) {
            if ((e = which_wait(f, out)) != 0) return e;
        } else if (e == EPIPE) {
            f->out_errno = EPIPE;
        } else if (e == EINVAL || e == ENOSYS) {
            f->nosplice = 1;    /* not a pipe (a terminal): read it all */
        } else {
            return e;
        }
    }
    f->phase = C_TAIL;
    return 0;
}

static int cut_tail(lc_feed *f) {
    for (;;) {
        while (f->done < f->tail_end && !f->eof) {
            ssize_t n = take(f, f->tail_end - f->done);
            if (n == 0) f->eof = 1;
            if (n >= 0) continue;
            if (errno == EINTR) continue;
            return errno == EAGAIN ? LC_FEED_WAIT_SRC : errno;
        }
        if (f->eof) {
            f->send_len = f->buf_len;
            break;
        }
        char *at = memrchr(f->buf + f->scan_from, f->cut, f->buf_len - f->scan_from);
        if (at) {
            f->send_len = (size_t)(at - f->buf) + 1;
            break;
        }
        /* No record end yet: another block-sized read, as parallel does. */
        f->scan_from = f->buf_len;
        f->tail_end = f->done + (f->block - (f->prefix_len + f->done) % f->block);
    }
    f->phase = C_SEND;
    return 0;
}

static int cut_send(lc_feed *f, int out) {
    while (f->buf_off < f->send_len && !f->out_errno) {
        ssize_t n = write(out, f->buf + f->buf_off, f->send_len - f->buf_off);
        if (n > 0) {
            f->buf_off += (size_t)n;
            f->written += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return EAGAIN;
        } else if (n < 0 && errno == EPIPE) {
            f->out_errno = EPIPE;
        } else {
            return n < 0 ? errno : EIO;
        }
    }
    f->phase = C_PROBE;
    return 0;
}

static int cut_probe(lc_feed *f) {
    while (!f->eof && f->buf_len == f->send_len) {
        ssize_t n = take(f, 1);
        if (n == 0) f->eof = 1;
        if (n >= 0) continue;
        if (errno == EINTR) continue;
        return errno == EAGAIN ? LC_FEED_WAIT_SRC : errno;
    }
    f->phase = C_DONE;
    if (!f->fed) f->fed = 1;
    return 0;
}

static int pump_cut(lc_feed *f, int out) {
    int e = 0;
    if (f->phase == C_BULK) e = cut_bulk(f, out);
    if (!e && f->phase == C_TAIL) e = cut_tail(f);
    if (!e && f->phase == C_SEND) e = cut_send(f, out);
    if (!e && f->phase == C_PROBE) e = cut_probe(f);
    return e;
}

/* SIGPIPE blocked for this thread around the pump (the child may close
 * its stdin: EPIPE, not the host's death), and the one an EPIPE raised
 * consumed, as proc.c's write_nosigpipe does. */
int lc_feed_pump(lc_feed *f, int out) {
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeset, &old);
    int e = f->cut < 0 ? pump_range(f, out) : pump_cut(f, out);
    if ((e == EPIPE || f->out_errno) && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipeset, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}
