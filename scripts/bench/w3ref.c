/* W3's reference (issue 17 item 14): a plain C capture loop. N x
 * `head -c BYTES /dev/zero`, each stdout read as data arrives (poll) into
 * a realloc-doubling buffer; prints time_run= as scripts/bench/w3.lua does.
 *   cc -O2 -o /tmp/w3ref scripts/bench/w3ref.c && /tmp/w3ref [N=4] [BYTES=200000000]
 * scripts/bench/w3cmp.sh interleaves it with luaconcurrent builds. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    const char *bytes = argc > 2 ? argv[2] : "200000000";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pf[64]; char *buf[64]; size_t len[64], cap[64]; pid_t pid[64];
    for (int i = 0; i < n; i++) {
        int fds[2]; pipe2(fds, O_CLOEXEC);
        posix_spawn_file_actions_t fa; posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        char *av[] = {"head", "-c", (char *)bytes, "/dev/zero", NULL};
        posix_spawn(&pid[i], "/usr/bin/head", &fa, NULL, av, environ);
        close(fds[1]);
        pf[i].fd = fds[0]; pf[i].events = POLLIN;
        buf[i] = NULL; len[i] = cap[i] = 0;
    }
    int open_ = n;
    while (open_ > 0) {
        poll(pf, n, -1);
        for (int i = 0; i < n; i++) {
            if (pf[i].fd < 0 || !pf[i].revents) continue;
            if (cap[i] - len[i] < 65536) {
                cap[i] = cap[i] ? 2 * cap[i] : 65536;
                buf[i] = realloc(buf[i], cap[i]);
            }
            ssize_t r = read(pf[i].fd, buf[i] + len[i], cap[i] - len[i]);
            if (r > 0) len[i] += (size_t)r;
            else { close(pf[i].fd); pf[i].fd = -1; open_--; }
        }
    }
    for (int i = 0; i < n; i++) { waitpid(pid[i], NULL, 0); if (len[i] != (size_t)atol(bytes)) return 1; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("time_run=%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
