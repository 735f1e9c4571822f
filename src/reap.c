/*
 * reap.c — task cgroups and the descendant walk. See reap.h.
 *
 * Layout: <the runner's own cgroup>/luaconcurrent.<pid>/t<slot>. The slot
 * directories are made on demand and kept until the process exits (an
 * atexit hook kills what is in them and removes them); a directory left by
 * a runner that was SIGKILLed is removed by the next runner that finds it
 * empty.
 *
 * Staleness is told by a lock, not by the pid alone: a runner in another
 * pid namespace (a container sharing the cgroup tree) has a pid that is
 * not ours to look up. Each runner holds an exclusive flock on its own
 * base directory while it lives (the kernel drops it when the process
 * ends, however it ends); another runner removes a base only if it can
 * take that lock. A base removed all the same (by a runner of a version
 * without the lock) is made again, and locked, at its next use.
 */
#include "reap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 16384
enum { SLOT_NONE, SLOT_FREE, SLOT_BUSY, SLOT_DIRTY };

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char base[4096];                 /* "" : no cgroups */
static size_t base_len;
static pid_t owner;                     /* the process that made base */
/* base, open and flock'ed while we live; replaced when base is made again
 * (under base_mu). Owned here: closed at exit, or when replaced. */
static int base_fd = -1;
static pthread_mutex_t base_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned char state[MAX_SLOTS];
/* cgroup.kill was written to it. Such a cgroup is made anew before it is
 * used again: Linux 6.x (6.18 here) kills a child that clone3 puts into a
 * cgroup whose kill count differs from its parent's cgroup's
 * (cgroup_css_set_fork reads the count before it knows the destination),
 * so every later CLONE_INTO_CGROUP child there would be born SIGKILLed. */
static _Atomic unsigned char killed[MAX_SLOTS];
static atomic_int nslots;               /* slots [0, nslots) have been made */
static int free_stack[MAX_SLOTS];       /* under lock */
static int nfree;
static atomic_int refused;              /* a child could not enter one */

/* ---- paths, built without stdio so that the signal path can use them ---- */

static size_t put_str(char *dst, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap) dst[at++] = *s++;
    dst[at] = '\0';
    return at;
}

static size_t put_uint(char *dst, size_t at, size_t cap, unsigned v) {
    char digits[16];
    int n = 0;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    while (n > 0 && at + 1 < cap) dst[at++] = digits[--n];
    dst[at] = '\0';
    return at;
}

/* base/t<slot>[/file] into buf (PATH_MAX). */
static void slot_path(char *buf, size_t cap, int slot, const char *file) {
    size_t at = put_str(buf, 0, cap, base);
    at = put_str(buf, at, cap, "/t");
    at = put_uint(buf, at, cap, (unsigned)slot);
    if (file) {
        at = put_str(buf, at, cap, "/");
        put_str(buf, at, cap, file);
    }
}

static int write_slot_file(int slot, const char *file, const char *s) {
    char path[4200];
    if (file[7] == 'k') atomic_store(&killed[slot], 1);     /* "cgroup.kill" */
    slot_path(path, sizeof path, slot, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n < 0 ? -1 : 0;
}

/* 1 populated, 0 empty, -1 cannot tell (counted as populated). A cgroup
 * that is not there is empty: one with a process in it cannot be removed
 * (its base was, under us: see the top). */
static int populated(int slot) {
    char path[4200], buf[256];
    slot_path(path, sizeof path, slot, "cgroup.events");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char *p = strstr(buf, "populated ");
    if (p == NULL) return -1;
    return p[10] != '0';
}

/* ---- set-up and tear-down ------------------------------------------------ */

/* Remove a directory tree of empty cgroups (a cgroup's files go with its
 * directory; only subdirectories need removing first). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char sub[4096 + 512];
        /* cppcheck-suppress readdirCalled ; d is this call's own stream */
        while ((e = readdir(d)) != NULL) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
            int n = snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            if (n > 0 && (size_t)n < sizeof sub) remove_tree(sub);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* 1 if base_fd is the directory at base now. */
static int base_held(void) {
    struct stat held, now;
    return base_fd >= 0 && fstat(base_fd, &held) == 0 && stat(base, &now) == 0 &&
           held.st_dev == now.st_dev && held.st_ino == now.st_ino;
}

/* Make base (if it is not there) and hold its lock: 0, or -1. Under
 * base_mu, or before anyone else can use base (probe). A runner removing
 * a stale base holds the lock while it does: we wait for it, then make
 * base again if it went. */
static int base_claim(void) {
    if (base_held()) return 0;          /* (another thread made it again) */
    for (int tries = 0; tries < 3; tries++) {
        if (mkdir(base, 0755) < 0 && errno != EEXIST) return -1;
        int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) continue;
            return -1;
        }
        int r;
        while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
            ;
        if (r < 0 && errno != ENOLCK && errno != EINVAL) {
            close(fd);
            return -1;
        }
        int old = base_fd;              /* (the lock of a base that went) */
        base_fd = fd;
        if (base_held()) {
            if (old >= 0) close(old);
            return 0;
        }
        base_fd = old;                  /* removed meanwhile: again */
        close(fd);
    }
    return -1;
}

/* mkdir path, a directory in base; base is made again first if it has
 * gone (see the top). exist_ok: EEXIST counts as made. */
static int make_in_base(const char *path, int exist_ok) {
    for (int tries = 0;; tries++) {
        if (mkdir(path, 0755) == 0 || (exist_ok && errno == EEXIST)) return 0;
        if (errno != ENOENT || tries > 0) return -1;
        pthread_mutex_lock(&base_mu);
        int r = base_claim();
        pthread_mutex_unlock(&base_mu);
        if (r < 0) return -1;
    }
}

static int slot_make(int slot) {
    char path[4200];
    slot_path(path, sizeof path, slot, NULL);
    return make_in_base(path, 1);
}

/* A fresh directory for an empty slot that was killed (see `killed`). */
static int slot_renew(int slot) {
    char path[4200];
    if (!atomic_load(&killed[slot])) return 0;
    slot_path(path, sizeof path, slot, NULL);
    remove_tree(path);
    if (make_in_base(path, 0) < 0) return -1;
    atomic_store(&killed[slot], 0);
    return 0;
}

static void cleanup_at_exit(void) {
    if (base[0] == '\0' || getpid() != owner) return;
    int n = atomic_load(&nslots), killed = 0;
    for (int i = 0; i < n; i++) {
        int s = atomic_load(&state[i]);
        if (s == SLOT_BUSY || s == SLOT_DIRTY) {
            write_slot_file(i, "cgroup.kill", "1");
            killed = 1;
        }
    }
    /* Killed processes leave their cgroup within a few milliseconds: wait
     * a little (bounded) so the directories can go too. */
    for (int tries = 0; killed && tries < 50; tries++) {
        killed = 0;
        for (int i = 0; i < n; i++)
            if (populated(i) == 1) killed = 1;
        if (killed) nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    for (int i = 0; i < n; i++) {
        char path[4200];
        slot_path(path, sizeof path, i, NULL);
        remove_tree(path);
    }
    rmdir(base);
    if (base_fd >= 0) close(base_fd);
    base_fd = -1;
}

/* Directories of runners that no longer exist, if empty: their pid is not
 * seen here and their lock is free (a runner in another pid namespace
 * holds its lock). Where flock is not to be had (ENOLCK, EINVAL), the pid
 * decides, as a runner makes its base again on use. */
static void remove_stale(const char *parent) {
    DIR *d = opendir(parent);
    if (d == NULL) return;
    struct dirent *e;
    char path[4096 + 512];
    /* cppcheck-suppress readdirCalled ; d is this call's own stream */
    while ((e = readdir(d)) != NULL) {
        int pid;
        char end;
        if (sscanf(e->d_name, "luaconcurrent.%d%c", &pid, &end) != 1 || pid <= 0) continue;
        if (kill(pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 || (errno != EWOULDBLOCK && errno != EINTR))
            remove_tree(path);
        close(fd);                      /* (the lock goes with it) */
    }
    closedir(d);
}

/* The runner's cgroup v2 directory: the "0::" line of /proc/self/cgroup
 * under the cgroup2 mount of /proc/self/mountinfo. */
static int own_cgroup_dir(char *out, size_t cap) {
    char line[4096], rel[4096] = "", mnt[4096] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(rel, sizeof rel, "%s", line + 3);
        }
    fclose(f);
    if (rel[0] != '/') return -1;
    f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f)) {
        char point[4096];
        const char *sep = strstr(line, " - cgroup2 ");
        if (sep && sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1) {
            snprintf(mnt, sizeof mnt, "%s", point);
            break;
        }
    }
    fclose(f);
    if (mnt[0] == '\0') return -1;
    int n = snprintf(out, cap, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static void probe(void) {
    const char *env = getenv("LUACONCURRENT_CGROUP");
    char dir[4096], path[4200];
    if (env && strcmp(env, "0") == 0) return;
    if (own_cgroup_dir(dir, sizeof dir) < 0) return;
    owner = getpid();
    int n = snprintf(base, sizeof base, "%s/luaconcurrent.%d", dir, (int)owner);
    if (n <= 0 || (size_t)n >= sizeof base - 32) goto none;
    base_len = (size_t)n;
    remove_stale(dir);
    if (base_claim() < 0) goto none;
    /* Slot 0 shows whether the kernel has cgroup.kill (5.14) and lets us
     * put processes there. */
    if (slot_make(0) < 0) goto gone;
    slot_path(path, sizeof path, 0, "cgroup.kill");
    if (access(path, W_OK) < 0) goto gone;
    slot_path(path, sizeof path, 0, "cgroup.procs");
    if (access(path, W_OK) < 0) goto gone;
    atomic_store(&state[0], SLOT_FREE);
    free_stack[nfree++] = 0;
    atomic_store(&nslots, 1);
    atexit(cleanup_at_exit);
    return;
gone:
    remove_tree(base);
none:
    if (base_fd >= 0) close(base_fd);
    base_fd = -1;
    base[0] = '\0';
}

/* ---- the pool ------------------------------------------------------------ */

int lc_reap_cgroup_get(void) {
    pthread_once(&probe_once, probe);
    /* A process forked from the runner inherits the table, not the right
     * to use it. */
    if (base[0] == '\0' || getpid() != owner || atomic_load(&refused)) return -1;
    int slot = -1;
    pthread_mutex_lock(&lock);
    if (nfree > 0) {
        slot = free_stack[--nfree];
    } else {
        int n = atomic_load(&nslots);
        for (int i = 0; i < n && slot < 0; i++)
            if (atomic_load(&state[i]) == SLOT_DIRTY && populated(i) == 0 &&
                slot_renew(i) == 0)
                slot = i;
        if (slot < 0 && n < MAX_SLOTS && slot_make(n) == 0) {
            slot = n;
            atomic_store(&nslots, n + 1);
        }
    }
    if (slot >= 0) atomic_store(&state[slot], SLOT_BUSY);
    pthread_mutex_unlock(&lock);
    return slot;
}

void lc_reap_cgroup_refused(void) { atomic_store(&refused, 1); }

int lc_reap_cgroup_dir_fd(int slot) {
    char path[4200];
    slot_path(path, sizeof path, slot, NULL);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && slot_make(slot) == 0)
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd;
}

int lc_reap_cgroup_procs_fd(int slot) {
    char path[4200];
    slot_path(path, sizeof path, slot, "cgroup.procs");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && slot_make(slot) == 0)
        fd = open(path, O_WRONLY | O_CLOEXEC);
    return fd;
}

void lc_reap_cgroup_signal(int slot, int sig) {
    if (slot < 0) return;
    if (sig == SIGKILL) {
        write_slot_file(slot, "cgroup.kill", "1");
        return;
    }
    char path[4200], buf[4096];
    slot_path(path, sizeof path, slot, "cgroup.procs");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    /* A pid read here is in the cgroup and still unreaped only if its
     * parent has not waited for it yet; the window is the one any kill by
     * pid has, and this is only the polite TERM before cgroup.kill. */
    size_t have = 0;
    ssize_t n;
    while ((n = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            long pid = strtol(line, NULL, 10);
            if (pid > 0) kill((pid_t)pid, sig);
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fd);
}

int lc_reap_cgroup_populated(int slot) {
    return slot < 0 ? 0 : populated(slot);
}

void lc_reap_cgroup_put(int slot, int known_empty) {
    if (slot < 0) return;
    int full = known_empty ? 0 : populated(slot);
    if (full != 0) write_slot_file(slot, "cgroup.kill", "1");
    else if (slot_renew(slot) < 0) full = 1;      /* tried again later */
    pthread_mutex_lock(&lock);
    if (full == 0) {
        atomic_store(&state[slot], SLOT_FREE);
        free_stack[nfree++] = slot;
    } else {
        atomic_store(&state[slot], SLOT_DIRTY);    /* reused once empty */
    }
    pthread_mutex_unlock(&lock);
}

void lc_reap_kill_all(void) {
    if (base[0] == '\0' || getpid() != owner) return;
    int n = atomic_load(&nslots);
    for (int i = 0; i < n; i++) {
        int s = atomic_load(&state[i]);
        if (s == SLOT_BUSY || s == SLOT_DIRTY) write_slot_file(i, "cgroup.kill", "1");
    }
}

/* ---- without cgroups: the descendant walk --------------------------------- */

typedef struct { pid_t *pid; size_t n, cap; } pidset;

static int pidset_has(const pidset *s, pid_t p) {
    for (size_t i = 0; i < s->n; i++)
        if (s->pid[i] == p) return 1;
    return 0;
}

static int pidset_add(pidset *s, pid_t p) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        pid_t *np = realloc(s->pid, cap * sizeof *np);
        if (np == NULL) return -1;
        s->pid = np;
        s->cap = cap;
    }
    s->pid[s->n++] = p;
    return 0;
}

/* Stopped ('T'), or gone ('Z', 'X', or no such process): cannot fork. */
static int is_still(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (p == NULL || p[1] == '\0') return 1;
    char st = p[2];
    return st == 'T' || st == 't' || st == 'Z' || st == 'X';
}

/* Add pid's children (every thread's) to s, stopping each new one. */
static void add_children(pidset *s, pid_t pid) {
    char path[64], file[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) return;
    struct dirent *e;
    /* cppcheck-suppress readdirCalled ; d is this call's own stream */
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(file, sizeof file, "%s/%.16s/children", path, e->d_name);
        FILE *f = fopen(file, "re");
        if (f == NULL) continue;
        long c;
        while (fscanf(f, "%ld", &c) == 1)
            if (c > 0 && !pidset_has(s, (pid_t)c) && pidset_add(s, (pid_t)c) == 0)
                kill((pid_t)c, SIGSTOP);
        fclose(f);
    }
    closedir(d);
}

int lc_reap_tree(pid_t leader, int sig) {
    pidset s = {NULL, 0, 0};
    int killed = 0;
    if (pidset_add(&s, leader) < 0) {
        kill(-leader, sig);
        return 0;
    }
    kill(leader, SIGSTOP);
    /* Each process is stopped before its children are read; a process
     * caught in the middle of a fork may add one after: walk again until
     * a pass finds every process still and nothing new (bounded). A
     * stopped process's children stay its children (it cannot reap them),
     * so no pid read here is reused before the kill below. */
    for (int pass = 0; pass < 200; pass++) {
        size_t before = s.n;
        int moving = 0;
        for (size_t i = 0; i < s.n; i++) {
            if (!is_still(s.pid[i])) moving = 1;
            add_children(&s, s.pid[i]);
        }
        if (s.n == before && !moving) break;
        if (moving) sched_yield();
    }
    /* Those that left the group will not get its signal: killed now. */
    for (size_t i = s.n; i-- > 1;)
        if (getpgid(s.pid[i]) != leader) {
            kill(s.pid[i], SIGKILL);
            killed++;
        }
    kill(-leader, sig);
    if (sig != SIGKILL) kill(-leader, SIGCONT);
    free(s.pid);
    return killed;
}
