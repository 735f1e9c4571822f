/*
 * signals.h — what SIGINT, SIGTERM and SIGHUP do to a run, and the list of
 * live task process groups a forced exit kills.
 *
 * Nothing here is installed unless asked: the executable asks at start-up,
 * a host of the module asks through luaconcurrent.handle_signals().
 *   first SIGINT/SIGTERM  recorded; blocking waits return (EINTR), the run
 *                         sees it, kills and reaps its tasks, raises
 *   second SIGINT/SIGTERM kills every live task group, _exit(128 + signum)
 *                         (counted from the first, whatever the run did);
 *                         one within 250 ms of the first is that first one
 *                         delivered again (timeout(1), `kill 0`, systemd
 *                         signal the process and its group): ignored, so
 *                         the run stops once and keeps its results
 *   SIGHUP                recorded; runs stop starting tasks and drain
 *                         (SA_RESTART: a script's io.read goes on)
 *   SIGPIPE               (if it was SIG_DFL) kills every live task group,
 *                         then ends the process by SIGPIPE
 * Whatever is still tracked when the process exits (os.exit in a callback)
 * is killed by an atexit handler, registered when the first group is.
 */
#ifndef LC_SIGNALS_H
#define LC_SIGNALS_H

#include <signal.h>
#include <sys/types.h>

/* SIGINT/SIGTERM received and not yet acted on by a run; 0 if none. */
extern volatile sig_atomic_t lc_sig_pending;
/* The last SIGINT/SIGTERM received (for the exit status); 0 if none. */
extern volatile sig_atomic_t lc_sig_last;
/* SIGHUP received: start no new tasks. */
extern volatile sig_atomic_t lc_sig_hup;

/* Install the handlers. on_interrupt, if given, runs inside the handler on
 * the first SIGINT/SIGTERM (the executable sets a Lua hook there). */
void lc_signals_install(void (*on_interrupt)(int sig));
int lc_signals_installed(void);

/* Live task process groups, kept so a forced exit leaves none behind.
 * track returns a slot (or -1 if the table is full). */
int lc_signals_track(pid_t pgid, int worker);
void lc_signals_untrack(int slot);
/* SIGKILL every tracked group; a worker process (track's `worker`) gets
 * SIGTERM instead, so it can kill what it started. Async-signal-safe. */
void lc_signals_kill_tracked(void);

/* In a worker process (isolation = "process"): SIGINT, SIGTERM and SIGPIPE
 * kill the groups its tasks started and its own group, and the worker gets
 * SIGTERM when the thread that spawned it ends (PR_SET_PDEATHSIG). */
void lc_signals_worker(void);

#endif
