--- Coroutine function tasks: what a task yields to its runner, the registry
-- of running task coroutines. (Timers are the loop's: loop:timer.)
--
-- A task coroutine talks to its runner only by yielding one of these:
--   coroutine.yield(SLEEP, wake_time)   resume me (with nothing) at wake_time
--   coroutine.yield(WAIT, proc_id)      resume me with that process's record
-- Any other yield is a plain "let others run": the task is resumed on the
-- next turn of the loop. Cancellation never comes back through a yield: a
-- suspended task is closed (coroutine.close runs its to-be-closed
-- variables), a running one is stopped by its count hook raising CANCEL.

local M = {}

M.SLEEP = setmetatable({}, { __name = "luaconcurrent.SLEEP" })
M.WAIT = setmetatable({}, { __name = "luaconcurrent.WAIT" })
M.CANCEL = setmetatable({}, {
  __name = "luaconcurrent.CANCEL",
  __tostring = function() return "luaconcurrent: task cancelled at its deadline" end,
})

-- The task coroutine a runner is resuming right now, and that run's state
-- (it holds the loop). Only one coroutine runs at a time on a thread, so
-- two fields do what a registry of every task coroutine would, without
-- a weak table for the collector to sweep.
M.co, M.run = nil, nil

--- The running task's run state, or nil outside a task (lc.sleep and
-- lc.run_prog yield to the loop only inside one).
function M.task()
  local co = coroutine.running()
  if co == M.co then return M.run end
  return nil
end

local function restore(prev_co, prev_run, ...)
  M.co, M.run = prev_co, prev_run
  return ...
end

--- coroutine.resume for a task coroutine of run `run`.
function M.resume(run, co, ...)
  local prev_co, prev_run = M.co, M.run
  M.co, M.run = co, run
  return restore(prev_co, prev_run, coroutine.resume(co, ...))
end

return M
