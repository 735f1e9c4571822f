--- Executor: function tasks as coroutines on the run's own thread
-- (ProcRunAsyncio with a function).
--
-- Coroutines are reused: each runs a body that yields DONE and the
-- function's results after every task and takes the next task's key and
-- args. One whose task raised (or was cancelled) is dead and closed.
--
-- A task that finishes in its first resume costs no bookkeeping: the task
-- record t is made only when it suspends or has a deadline. A suspended
-- task is resumed by the loop's records: a timer (lc.sleep), a process
-- (lc.run_prog), or on the next turn (any other yield). At its deadline a
-- suspended task is closed; a running one is stopped by its count hook.

local core = require "luaconcurrent.core"
local async = require "luaconcurrent.async"
local ProcResult = require "luaconcurrent.result"
local function_task = require "luaconcurrent.exec.function_task"

local SLEEP, WAIT, CANCEL = async.SLEEP, async.WAIT, async.CANCEL
local co_status, co_close, co_yield = coroutine.status, coroutine.close, coroutine.yield
-- core.resume: ok, what was yielded first, how many values followed it,
-- the next two; a fixed count of results, so no resume needs varargs.
local co_resume = core.resume
local co_create = async.create
local sethook, traceback = debug.sethook, debug.traceback
local now, wallclock = core.now, core.wallclock
local setmetatable = setmetatable

-- A task coroutine yields DONE and its function's results when that
-- returns: core.resume gives DONE, their count, the first two.
local DONE = setmetatable({}, { __name = "luaconcurrent.DONE" })

local Coroutines = {}
Coroutines.__index = Coroutines

-- The hook stays armed after it fires, so a pcall that swallows CANCEL
-- gets it again at the next check, while a short __close handler still
-- runs to its end. A task that keeps swallowing it is checked on every
-- instruction from the third time on, which also catches a pcall in a
-- loop. A task that returns anyway is timed out (complete, below).
local function deadline_hook(t)
  local cancels = 0
  return function()
    if now() >= t.deadline then
      cancels = cancels + 1
      if cancels == 3 then
        local co = coroutine.running()
        sethook(co, t.hook, "", 1)
        if co ~= t.co then sethook(t.co, t.hook, "", 1) end
      end
      error(CANCEL, 0)
    end
  end
end

local M = {}

function M.new(cfg, loop, finish)
  local fn, task_args = function_task.split(cfg.pargs)
  return setmetatable({
    -- Every task it holds runs (a task starts as it is handed over).
    capacity = cfg.slots, concurrency = cfg.slots,
    loop = loop, finish = finish, task_args = task_args,
    plain = #cfg.pargs == 1,    -- no fixed arguments: args is { arg }
    timeout = cfg.timeout,
    body = function(key, args)
      while true do key, args = co_yield(DONE, fn(key, args)) end
    end,
    run = { loop = loop },      -- what lc.sleep and lc.run_prog find (async.task)
    wall_offset = wallclock() - now(),
    live = {},                  -- [index] = t, every suspended or timed task
    by_event = {},              -- [timer or process id] = t
    ready = {},                 -- tasks to resume on the next turn
    spare = {},                 -- coroutines waiting for their next task
  }, Coroutines)
end

-- t is over: it holds no hook, timer or index entry any more.
function Coroutines:forget(t)
  self.live[t.index] = nil
  t.state = "done"
  if t.deadline then
    sethook(t.co)
    self.by_event[t.deadline_timer] = nil
    self.loop:cancel_timer(t.deadline_timer)
  end
  if t.sleep_timer then
    self.by_event[t.sleep_timer] = nil
    self.loop:cancel_timer(t.sleep_timer)
  end
end

function Coroutines:complete(co, t, index, key, arg, t0, ok_run, nret, first, answer)
  local t1 = now()
  local off = self.wall_offset
  local res = setmetatable({ key = key, arg = arg, time_start = off + t0,
    time_end = off + t1, time_run = t1 - t0 }, ProcResult)
  if t then self:forget(t) end
  if not ok_run then
    if first == CANCEL then
      ProcResult.time_out(res, self.timeout)
    else
      ProcResult.raised(res, traceback(co, ProcResult.error_text(first)))
    end
    co_close(co)          -- run the to-be-closed variables it left pending
  elseif t and t.deadline and t1 >= t.deadline then
    -- It came back from something the hook could not interrupt.
    ProcResult.time_out(res, self.timeout,
      string.format("it returned %.3g s late", t1 - t.deadline))
    res.answer = answer
  else
    ProcResult.returned(res, nret, first, answer)
  end
  self.finish(index, res)
end

-- After a resume (ok, what, n, v1, v2 from core.resume): finished, or
-- suspended on a sleep, a process or a yield.
function Coroutines:step(co, t, index, key, arg, t0, ok_run, what, n, v1, v2)
  if not ok_run then
    return self:complete(co, t, index, key, arg, t0, false, 1, what)
  end
  if what == DONE then
    local spare = self.spare
    spare[#spare + 1] = co
    return self:complete(co, t, index, key, arg, t0, true, n, v1, v2)
  end
  if not t then
    t = { co = co, index = index, key = key, arg = arg, t0 = t0 }
    self.live[index] = t
  end
  if what == SLEEP then
    t.state = "sleep"
    t.sleep_timer = self.loop:timer(v1)
    self.by_event[t.sleep_timer] = t
  elseif what == WAIT then
    t.state, t.proc = "wait", v1
    self.by_event[v1] = t
  else
    t.state = "ready"
    self.ready[#self.ready + 1] = t
  end
end

function Coroutines:resume(t, ...)
  t.state = "running"
  return self:step(t.co, t, t.index, t.key, t.arg, t.t0, co_resume(t.co, ...))
end

-- End a suspended task now: kill what it waits on, close it; its result
-- says why (nil: its deadline passed).
function Coroutines:end_suspended(t, why)
  if t.proc then
    self.by_event[t.proc] = nil
    self.loop:kill(t.proc)
    t.proc = nil
  end
  if not why then
    return self:complete(t.co, t, t.index, t.key, t.arg, t.t0, false, 1, CANCEL)
  end
  self:forget(t)
  co_close(t.co)
  local res = ProcResult.new(t.key, t.arg)
  res.time_start = self.wall_offset + t.t0
  self.finish(t.index, ProcResult.interrupt(res, why))
end

-- An idle coroutine (a task that suspended keeps its own).
function Coroutines:take_co()
  local spare = self.spare
  local n = #spare
  local co = spare[n]
  if co then spare[n] = nil; return co end
  return co_create(self.run, self.body)
end

function Coroutines:start(index, key, arg)
  local args
  if self.plain then args = { arg } else args = self.task_args(arg) end
  local t0 = now()
  if self.timeout > 0 then
    local co = self:take_co()
    local t = { co = co, index = index, key = key, arg = arg, t0 = t0,
                state = "running", deadline = t0 + self.timeout }
    self.live[index] = t
    t.hook = deadline_hook(t)
    sethook(co, t.hook, "", core.HOOK_COUNT)
    t.deadline_timer = self.loop:timer(t.deadline)
    self.by_event[t.deadline_timer] = t
    return self:step(co, t, index, key, arg, t0, co_resume(co, key, args))
  end
  -- The cost of every task: the last idle coroutine is taken off the
  -- spare list only if its task suspends.
  local spare = self.spare
  local n = #spare
  local co = spare[n]
  if co == nil then co = co_create(self.run, self.body); n = n + 1; spare[n] = co end
  local ok_run, what, nret, first, answer = co_resume(co, key, args)
  if what == DONE and first and ok_run then
    -- A task that returned a true value at once: its result in one
    -- table constructor.
    local t1, off = now(), self.wall_offset
    return self.finish(index, setmetatable({ key = key, arg = arg, success = true,
      answer = answer, time_start = off + t0, time_end = off + t1, time_run = t1 - t0 },
      ProcResult))
  end
  spare[n] = nil
  return self:step(co, nil, index, key, arg, t0, ok_run, what, nret, first, answer)
end

function Coroutines:record(rec)
  local t = self.by_event[rec.id]
  if not t then return false end
  self.by_event[rec.id] = nil
  if t.state == "done" then return true end
  if rec.timer then
    if rec.id == t.deadline_timer then
      self:end_suspended(t)
    elseif rec.id == t.sleep_timer and t.state == "sleep" then
      t.sleep_timer = nil
      self:resume(t)
    end
  elseif t.state == "wait" then
    t.proc = nil
    self:resume(t, rec)
  end
  return true
end

--- Resume the tasks that yielded; true if some are ready again.
function Coroutines:run_ready()
  local queue = self.ready
  if #queue == 0 then return false end
  self.ready = {}
  for i = 1, #queue do
    local t = queue[i]
    if t.state == "ready" then self:resume(t) end
  end
  return #self.ready > 0
end

function Coroutines:cancel(index, why)
  local t = self.live[index]
  if t and t.state ~= "running" then self:end_suspended(t, why) end
end

--- The tasks it holds: those suspended (or with a deadline); one that
-- finishes in its first resume is over before start returns. Counted when
-- asked, so a start pays nothing for it.
function Coroutines:running()
  local n = 0
  for _ in pairs(self.live) do n = n + 1 end
  return n
end

--- Nothing to hold: a task starts as it is handed over.
function Coroutines:hold() end

function Coroutines:close() end

function Coroutines:stop()
  for index, t in pairs(self.live) do
    self.live[index] = nil
    if t.deadline then sethook(t.co) end
    if co_status(t.co) ~= "running" then co_close(t.co) end
    self.finish(index, ProcResult.interrupt(ProcResult.new(t.key, t.arg), "running"))
  end
end

return M
