/*
 * deny_pidfd — run a command under a seccomp filter that refuses pidfds,
 * as some container profiles and older kernels do (spec/orphans_spec.lua).
 *
 *   deny_pidfd open   CMD ARGS...  pidfd_open fails with EPERM (seccomp)
 *   deny_pidfd waitid CMD ARGS...  waitid(P_PIDFD, ...) fails with EINVAL
 *                                  (Linux 5.3: pidfd_open but no P_PIDFD)
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "open") != 0 && strcmp(argv[1], "waitid") != 0)) {
        fprintf(stderr, "usage: deny_pidfd open|waitid CMD ARGS...\n");
        return 2;
    }
    int open_mode = strcmp(argv[1], "open") == 0;
    struct sock_filter deny_open[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_filter deny_waitid[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_waitid, 0, 3),
        /* the low 32 bits of the first argument (idtype), little-endian */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, P_PIDFD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog;
    if (open_mode) {
        prog.len = sizeof deny_open / sizeof deny_open[0];
        prog.filter = deny_open;
    } else {
        prog.len = sizeof deny_waitid / sizeof deny_waitid[0];
        prog.filter = deny_waitid;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        perror("deny_pidfd: seccomp");
        return 2;
    }
    execvp(argv[2], argv + 2);
    perror("deny_pidfd: exec");
    return 127;
}
