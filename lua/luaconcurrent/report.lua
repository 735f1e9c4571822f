--- How finished tasks reach the user. The executor's finish(index, res)
-- stores a result at once (or, when run control says so, queues the task
-- to run again); flush runs run control's reports and the callbacks later,
-- so a raising callback cannot lose a result the engine already handed
-- over. What it writes of the scheduler's state (schedule.lua) is
-- declared there as the reporter's.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"
local schedule = require "luaconcurrent.schedule"

local now = core.now
local log = schedule.log

local M = {}

-- finish with run control: a failed task may run again, now or after a
-- delay (a loop timer, which the scheduler hands back to st:timer_fired).
local function finish_controlled(st, store)
  local ctl, active = st.ctl, st.active
  return function(index, res)
    st.inflight = st.inflight - 1
    active[index] = nil
    local delay = not st.stopping and ctl:retry(index, res)
    if not delay then return store(index, res) end
    local again = { index, res.key, res.arg, res }
    if delay <= 0 then
      st.again[#st.again + 1] = again
    else
      st.delayed[st.loop:timer(now() + delay)] = again
      st.ndelayed = st.ndelayed + 1
    end
  end
end

-- flush: report the pending results: run control's reports, then the
-- callbacks. st.phead is the next one; a raising callback leaves the rest
-- where a later flush (after a stop) finds them. What it reads of the run
-- is kept in upvalues: this is the cost of every task of a run with a
-- callback or run control.
local function flusher(st, run)
  local pending, ctl = st.pending, st.ctl
  local on_result, on_progress, verb = run.on_result, run.on_progress, run.verb
  return function()
    while st.phead <= st.npending do
      local i = st.phead
      local index, res = pending[i], pending[i + 1]
      pending[i], pending[i + 1] = nil, nil
      st.phead = i + 2
      if not res.success then st.ok = false end
      st.done = st.done + 1
      if verb then
        log("done %s in %.3f s: %s", validate.show(res.key), res.time_run,
          res.success and "ok" or (res.error or res.exception or "failed"))
      end
      if ctl then
        local halt = ctl:finished(index, res, st)
        if halt then st:halt(halt) end
      end
      if not st.quiet then
        st.in_callback = true
        if on_result then on_result(res) end
        if on_progress then on_progress(st.done, st.total) end
        st.in_callback = false
      end
    end
    st.npending, st.phead = 0, 1
  end
end

--- Set up st.store, st.finish, st.flush and st.direct for run (a runner).
-- With nothing to report to (no callback, no run control), a result is
-- counted as it is stored: nothing waits for a flush.
function M.install(st, run)
  local keep, result, seen, pending = run.keep_results, run.result, st.seen, st.pending
  local direct = not (run.on_result or run.on_progress or run.verb or st.ctl)
  local function store(index, res)
    if keep then result[index] = res else seen[res.key] = nil end
    local n = st.npending + 2
    st.npending, pending[n - 1], pending[n] = n, index, res
  end
  local finish
  if direct then
    -- The direct case's finish: the cost of every task, in one call.
    finish = function(index, res)
      st.inflight, st.done = st.inflight - 1, st.done + 1
      if keep then result[index] = res else seen[res.key] = nil end
      if not res.success then st.ok = false end
    end
    store = function(index, res)
      if keep then result[index] = res else seen[res.key] = nil end
      if not res.success then st.ok = false end
      st.done = st.done + 1
    end
  elseif st.ctl then
    finish = finish_controlled(st, store)
  else
    finish = function(index, res)
      st.inflight = st.inflight - 1
      return store(index, res)
    end
  end
  st.store, st.finish, st.flush, st.direct = store, finish, flusher(st, run), direct
end

--- After a stop: tasks waiting to be retried get their result, and every
-- result stored since the last flush (tasks that ended as the run stopped)
-- still reaches the joblog and the callbacks, so none is known only to
-- run.result; unless a callback's error stopped the run: a broken
-- callback is not called again. The first error is the one run_all raises.
function M.stopped(st)
  st.quiet = st.quiet or st.in_callback
  for _, t in ipairs(st.again) do st.store(t[1], ProcResult.not_started(t[2], t[3])) end
  for _, t in pairs(st.delayed) do st.store(t[1], ProcResult.not_started(t[2], t[3])) end
  st.again, st.delayed = {}, {}
  while st.phead <= st.npending and pcall(st.flush) == false do end
end

return M
