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

-- Which run each task coroutine belongs to. Executors reuse their
-- coroutines, so an entry is made once per coroutine, not per task; weak
-- keys let a dead one go.
M.owner = setmetatable({}, { __mode = "k" })

--- The running task's run state, or nil outside a task (lc.sleep and
-- lc.run_prog yield to the loop only inside one).
function M.task()
  return M.owner[coroutine.running()]
end

--- A task coroutine of run `run`, running body.
function M.create(run, body)
  local co = coroutine.create(body)
  M.owner[co] = run
  return co
end

return M
