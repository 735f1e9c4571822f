/*
 * reap.h — whatever a task starts ends with it, however it tried to leave.
 *
 * A process group is not enough: `timeout`, `set -m` and `setsid` move a
 * child out of it. Where the runner can create cgroups (a writable cgroup
 * v2 hierarchy: root, or a delegated subtree) each task runs in a cgroup of
 * its own, created under the runner's cgroup; nothing a task starts can
 * leave it unprivileged, and `cgroup.kill` kills all of it at once. Cgroups
 * are pooled: an empty one is reused by the next task, so a task costs no
 * mkdir/rmdir. Elsewhere, lc_reap_tree stops and kills the leader's
 * descendants by walking /proc.
 *
 * LUACONCURRENT_CGROUP=0 in the environment turns cgroups off (the tree
 * walk is then all there is).
 */
#ifndef LC_REAP_H
#define LC_REAP_H

#include <sys/types.h>

/* A cgroup for a new task: a slot number (>= 0), or -1 if cgroups cannot
 * be had (then every call below with -1 does nothing). */
int lc_reap_cgroup_get(void);
/* Its directory, opened for clone3's CLONE_INTO_CGROUP (O_CLOEXEC). -1
 * and errno on failure. */
int lc_reap_cgroup_dir_fd(int slot);
/* Its cgroup.procs opened for writing (O_CLOEXEC): a child writes "0"
 * into it before it execs, so it is inside before it can fork. -1 and
 * errno on failure. */
int lc_reap_cgroup_procs_fd(int slot);
/* A child could not enter its cgroup (say, an ancestor with controllers
 * that forbid it): cgroups are off for this process from now on, and the
 * tree walk is used. */
void lc_reap_cgroup_refused(void);
/* SIGKILL: cgroup.kill (the whole cgroup, atomically). Another signal: to
 * each process in it (a process forked meanwhile may miss it: TERM is a
 * request, the KILL that follows is not). */
void lc_reap_cgroup_signal(int slot, int sig);
/* 1 if a process is alive in it, 0 if not, -1 if that cannot be read.
 * (A zombie is not alive: an exited leader does not count.) */
int lc_reap_cgroup_populated(int slot);
/* The task is over: what is still running in its cgroup is killed, and the
 * cgroup goes back to the pool (reused once it is empty). known_empty:
 * the caller saw it empty after the leader exited. */
void lc_reap_cgroup_put(int slot, int known_empty);
/* Kill every task cgroup in use. Async-signal-safe: for exit paths and
 * signal handlers. */
void lc_reap_kill_all(void);

/* Without a cgroup: SIGSTOP the leader and every descendant reachable
 * through /proc/<pid>/task/<tid>/children (each stopped before its own
 * children are read, so none forks past the walk); SIGKILL those that left
 * the leader's process group, send `sig` to the group and SIGCONT it.
 * The leader must be unreaped: its pid is the group id and the walk's
 * start. Returns how many were killed outside the group. (Descendants of
 * a leader that has already exited were handed to init: out of reach.) */
int lc_reap_tree(pid_t leader, int sig);

#endif
