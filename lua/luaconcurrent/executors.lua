--- The executor interface, and the executors a run can use.
--
-- How a task runs is an executor's business (lua/luaconcurrent/exec/):
--   subprocess  pargs[1] is a program: one subprocess per task
--   coroutine   ProcRunAsyncio with a function: coroutines on this thread
--   threads     ProcRunMp with a function: thread workers (src/pool.c)
--   processes   the same with isolation = "process": worker processes
--   remote      hosts = {...}: sessions on other hosts (remote/)
--
-- A module has new(cfg, loop, finish, live) and, optionally, check(cfg)
-- -> message | nil (refuse settings at construction). cfg holds the
-- runner's settings, read only (pargs, timeout, kill_grace, envblock, cwd,
-- input, num_workers, ntasks, fn_bytes, time_limit, slots: the tasks to run at once,
-- halts: the run has a halt policy, so hold may be called);
-- loop is the run's engine loop; finish(index, res) is the one way to
-- report a task's one result; live(index, key, data, is_stderr), nil
-- unless output = "lines", takes output as it arrives (an executor that
-- cannot, ignores it). new returns a table:
--   ex.capacity           how many tasks it may hold at once: running, and
--                         handed over ahead of their start. The scheduler
--                         hands it tasks while it holds fewer, and reads it
--                         again at each turn of its loop: it may grow or
--                         shrink during a run (remote hosts come and go).
--   ex.concurrency        how many of them it runs at once (what the
--                         progress bar shows as the run's slots); may
--                         change too. At most capacity.
--   ex:running() -> n     how many of the tasks it holds have started and
--                         not ended (the progress bar's "running"). A pull,
--                         asked only when the bar is drawn: an executor
--                         counts it then, and the start of a task costs
--                         nothing more. (A started(index) call per task
--                         would cost every task a call, and thread workers
--                         cannot say when a task of theirs starts.)
--   ex:start(index, key, arg)  take a task: start it, or hold it ahead of
--                         its start, or finish it at once
--   ex:record(rec) -> bool  an engine record (process, job, timer, stream
--                         data): take it if it is one of its own
--   ex:run_ready() -> bool  optional: run work that needs no record (a
--                         yielded coroutine); true if more is ready now
--   ex:describe(key, arg) optional: what verb = true logs at a start
--   ex:cancel(index, why) end one running task; its result says why
--   ex:hold(why)          the run halted: no task it holds that has not
--                         started may start; each finishes with why.
--                         Required (the scheduler calls it at every halt):
--                         one that holds nothing ahead says so in a no-op.
--   ex:close()            no more tasks: release what is idle
--   ex:stop(records)      the run is stopping; records are the loop's last
--                         (everything killed and reaped): finish every
--                         task still held
-- An executor never touches the scheduler's state; a new one is added by
-- naming it in M.modules, without editing the others or the scheduler.

local core = require "luaconcurrent.core"

local M = {}

-- The run's kind (options.lua) -> its executor.
M.modules = {
  exec = "luaconcurrent.exec.subprocess",
  coro = "luaconcurrent.exec.coroutine",
  pool = "luaconcurrent.exec.threads",
  isolated = "luaconcurrent.exec.processes",
  remote = "luaconcurrent.exec.remote",
}
-- Loaded now, not when a run needs them: a run short of fds could not.
for kind, name in pairs(M.modules) do M.modules[kind] = require(name) end

--- The settings an executor reads.
local function cfg_of(run)
  return {
    pargs = run.pargs, timeout = run.timeout, kill_grace = run.kill_grace,
    envblock = run.env and core.envblock(run.env) or nil, cwd = run.cwd,
    input = run.input, num_workers = run.num_workers, ntasks = run.ntasks,
    fn_bytes = run.fn_bytes, max_capture = run.max_capture, env = run.env, hosts = run.hosts,
    host_slots = run.host_slots, max_answer = run.max_answer, time_limit = run.time_limit,
    slots = run.num_workers == 0 and math.huge or run.num_workers,
    halts = run.halt ~= nil and run.halt ~= "never",
  }
end

--- The message refusing a runner's settings, or nil.
function M.check(run)
  local check = M.modules[run.kind].check
  return check and check(run)
end

--- The executor of a run (run: a runner, its settings checked).
function M.new(run, loop, finish, live)
  return M.modules[run.kind].new(cfg_of(run), loop, finish, live)
end

return M
