/*
 * feed.c — a file's byte range into a pipe. See feed.h.
 */
#include "feed.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FEED_CHUNK (1024 * 1024)    /* bytes asked of one splice */
#define FEED_BUF   (64 * 1024)      /* the fallback's buffer */

int lc_feed_open(lc_feed *f, const char *path, off_t off, size_t len) {
    lc_feed none = LC_FEED_NONE;
    *f = none;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    if (fd < 3) {               /* off 0-2, as proc.c keeps its pipes */
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int e = errno;
        close(fd);
        if (nfd < 0) return e;
        fd = nfd;
    }
    f->fd = fd;
    f->off = off;
    f->len = len;
    return 0;
}

int lc_feed_pending(const lc_feed *f) {
    return f->fd >= 0 && f->done < f->len;
}

void lc_feed_close(lc_feed *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    free(f->buf);
    f->buf = NULL;
}

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
        ssize_t n = pread(f->fd, f->buf, want, f->off + (off_t)f->done);
        if (n <= 0) {
            if (n == 0) errno = ENODATA;
            return -1;
        }
        f->buf_off = 0;
        f->buf_len = (size_t)n;
    }
    return write(out, f->buf + f->buf_off, f->buf_len - f->buf_off);
}

static ssize_t splice_step(lc_feed *f, int out) {
    size_t want = f->len - f->done;
    if (want > FEED_CHUNK) want = FEED_CHUNK;
    loff_t at = f->off + (off_t)f->done;
    ssize_t n = splice(f->fd, &at, out, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) errno = ENODATA;
    return n > 0 ? n : -1;
}

/* The loop of steps, with SIGPIPE blocked for this thread around it (the
 * child may close its stdin: EPIPE, not the host's death) and the one an
 * EPIPE raised consumed, as proc.c's write_nosigpipe does. */
int lc_feed_pump(lc_feed *f, int out) {
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeset, &old);
    int e = 0;
    while (f->done < f->len) {
        ssize_t n = f->nosplice ? copy_step(f, out) : splice_step(f, out);
        if (n > 0) {
            f->done += (size_t)n;
            if (f->nosplice) f->buf_off += (size_t)n;
            continue;
        }
        e = errno;
        if (e == EINTR) continue;
        if (!f->nosplice && (e == EINVAL || e == ENOSYS)) {
            f->nosplice = 1;    /* this file, or this kernel, will not splice */
            e = 0;
            continue;
        }
        break;
    }
    if (e == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipeset, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}
