--- The runner classes, ProcRunAsyncio and ProcRunMp: the scheduler.
--
-- A runner validates its input at construction. run_all takes tasks from
-- the task source (a list, or an iterator read lazily), keeps at most
-- `slots` of them running, stores one result per task in task order, runs
-- the callbacks, and handles run control (signals, SIGHUP drain, stopping a
-- run). However run_all ends, nothing it started is left running: on an
-- error (a raising callback, Ctrl-C) every task still running is killed or
-- closed, recorded as "Interrupted", and the error is raised again.
--
-- How a task runs is an executor's business (lua/luaconcurrent/exec/):
--   subprocess  pargs[1] is a program: one subprocess per task
--   coroutine   ProcRunAsyncio with a function: coroutines on this thread
--   threads     ProcRunMp with a function: thread workers (src/pool.c)
--   processes   the same with isolation = "process": worker processes
--
-- The executor interface. A module has new(cfg, loop, finish, live) and,
-- optionally, check(cfg) -> message | nil (refuse settings at
-- construction). cfg holds the runner's settings, read only (pargs,
-- timeout, kill_grace, envblock, cwd, input, num_workers, ntasks,
-- fn_bytes, slots, time_limit); loop is the run's engine loop; finish(index, res) is
-- the one way to report a task's one result; live(index, key, data,
-- is_stderr), nil unless output = "lines", takes output as it arrives (an
-- executor that cannot, ignores it). new returns a table:
--   ex.slots              how many tasks it may hold at once (read again
--                         at each turn of the loop: it may grow or shrink)
--   ex:start(index, key, arg)  start a task (or finish it at once)
--   ex:record(rec) -> bool  an engine record (process, job, timer, stream
--                         data): take it if it is one of its own
--   ex:run_ready() -> bool  optional: run work that needs no record (a
--                         yielded coroutine); true if more is ready now
--   ex:describe(key, arg) optional: what verb = true logs at a start
--   ex:cancel(index, why) end one running task; its result says why
--   ex:hold(why)          optional: tasks it holds ahead of their start
--                         must not start (halt); they finish with why
--   ex:close()            no more tasks: release what is idle
--   ex:stop(records)      the run is stopping; records are the loop's last
--                         (everything killed and reaped): finish every
--                         task still held
-- An executor never touches the scheduler's state; a new one is added by
-- naming it in EXECUTORS, without editing the others or the loop below.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"
local options = require "luaconcurrent.options"
local tasks = require "luaconcurrent.tasks"
local control = require "luaconcurrent.control"

local fail = validate.fail
local now, wallclock = core.now, core.wallclock
local signal_pending, hup_pending = core.signal_pending, core.hup_pending

local EXECUTORS = {
  exec = "luaconcurrent.exec.subprocess",
  coro = "luaconcurrent.exec.coroutine",
  pool = "luaconcurrent.exec.threads",
  isolated = "luaconcurrent.exec.processes",
  remote = "luaconcurrent.exec.remote",
}
-- Loaded now, not when a run needs them: a run short of fds could not.
for kind, name in pairs(EXECUTORS) do EXECUTORS[kind] = require(name) end

local Runner = {}
Runner.__index = Runner

local function new_runner(class, pargs, task_list, ...)
  local self = options.runner(class, pargs, task_list, ...)
  local check = EXECUTORS[self.kind].check
  local refused = check and check(self)
  if refused then fail("%s", refused) end
  return self
end

local function log(fmt, ...)
  io.stderr:write("luaconcurrent: ", string.format(fmt, ...), "\n")
end

--- The settings an executor reads.
local function executor_cfg(self)
  return {
    pargs = self.pargs, timeout = self.timeout, kill_grace = self.kill_grace,
    envblock = self.env and core.envblock(self.env) or nil, cwd = self.cwd,
    input = self.input, num_workers = self.num_workers, ntasks = self.ntasks,
    fn_bytes = self.fn_bytes, max_capture = self.max_capture, env = self.env, hosts = self.hosts,
    host_slots = self.host_slots, max_answer = self.max_answer, time_limit = self.time_limit,
    slots = self.num_workers == 0 and math.huge or self.num_workers,
  }
end

--- How finished tasks reach the user: finish stores a result at once
-- (or, when run control says so, queues the task to run again); flush
-- runs the callbacks later, so a raising callback cannot lose a result the
-- engine already handed over.
local function reporter(self, st, seen, ctl)
  local on_result, on_progress = self.on_result, self.on_progress
  local keep, result, verb = self.keep_results, self.result, self.verb
  local pending, active = {}, st.active
  st.running, st.done, st.npending, st.phead, st.ok, st.total = 0, 0, 0, 1, true, self.ntasks

  -- With nothing to report to (no callback, no run control), a result is
  -- counted as it is stored: nothing waits for a flush.
  local direct = not (on_result or on_progress or verb or ctl)

  local function store(index, res)
    if keep then result[index] = res else seen[res.key] = nil end
    if direct then
      if not res.success then st.ok = false end
      st.done = st.done + 1
      return
    end
    local n = st.npending + 2
    st.npending, pending[n - 1], pending[n] = n, index, res
  end

  local function finish(index, res)
    st.running = st.running - 1
    if not ctl then return store(index, res) end
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

  -- The direct case's finish: the cost of every task, in one call.
  if direct then
    finish = function(index, res)
      st.running, st.done = st.running - 1, st.done + 1
      if keep then result[index] = res else seen[res.key] = nil end
      if not res.success then st.ok = false end
    end
  end

  -- st.phead: the next pending result to report; a raising callback
  -- leaves the rest where a later flush (after a stop) finds them.
  local function flush()
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
        if halt then st.halt(halt) end
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
  return store, finish, flush, direct
end

-- Signals (when handled: the executable, or lc.handle_signals()):
-- SIGINT/SIGTERM stop the run; SIGHUP starts no new task.
local function check_signals(st)
  local sig = signal_pending()
  if sig then error("luaconcurrent: interrupted by " .. sig, 0) end
  if not st.exhausted and hup_pending() then st.exhausted, st.hup = true, true end
end

--- The next task to start: one to run again, else the source's next.
local function next_of(st, source)
  local n = #st.again
  if n > 0 then
    local t = table.remove(st.again, 1)
    return t[1], t[2], t[3]
  end
  if st.exhausted then return nil end
  return source()
end

--- A batch of engine records: run-control timers here, the rest to the
-- executor.
local function take(st, ex, records)
  for i = 1, #records do
    local rec = records[i]
    local again = st.delayed[rec.id]
    if again then
      st.delayed[rec.id], st.ndelayed = nil, st.ndelayed - 1
      st.again[#st.again + 1] = again
    else
      ex:record(rec)
    end
  end
end

--- Start tasks of a list while slots are free, when nothing (callback,
-- run control, retry) comes between two starts: the cost of every task of
-- a long run of short ones. The list's tasks are read here, not through a
-- call each; the source goes on from where this stops, and the general
-- loop sees the list's end (and runs iterators, which pay a check a task
-- anyway).
local function start_direct(st, ex, source, list, limit, on_start)
  local i = st.last_index
  while st.running < limit do
    local task = list[i + 1]
    if task == nil then break end
    i = i + 1
    st.last_index = i
    if on_start then on_start(task[1], task[2]) end
    st.running = st.running + 1
    ex:start(i, task[1], task[2])
  end
  source(i)
end

--- The whole of run_all's work; st is shared with the error path.
local function run_tasks(self, st)
  local loop, ex, ctl = st.loop, st.ex, st.ctl
  local source, list = tasks.source(self.tasks, self.kind == "exec" or self.kind == "remote", st.seen)
  local store, flush = st.store, st.flush
  function st.halt(mode)
    st.exhausted, st.halted, self.halted = true, self.halt, self.halt
    -- Tasks waiting to run again (retry_delay) do not: their last
    -- attempt is their result.
    ctl:halt_retries(loop, st.again, st.delayed, store)
    st.again, st.delayed, st.ndelayed = {}, {}, 0
    -- Tasks handed to an executor ahead of their start do not start now.
    if ex.hold then ex:hold("not started: the run halted (halt = " .. self.halt .. ")") end
    if mode == "now" then
      for index in pairs(st.active) do ex:cancel(index, "halted: " .. self.halt) end
    end
  end
  local on_start, verb = self.on_start, self.verb
  check_signals(st)
  while true do
    local limit = ex.slots    -- it may change during the run (remote hosts come and go)
    if list and st.direct and st.again[1] == nil and not st.exhausted then
      start_direct(st, ex, source, list, limit, on_start)
    end
    while st.running < limit and not (st.exhausted and st.again[1] == nil) do
      local index, key, arg
      if st.again[1] == nil then index, key, arg = source() else index, key, arg = next_of(st, source) end
      if index == nil then
        if not st.exhausted then st.exhausted, st.total = true, st.done + st.npending + st.running end
        break
      end
      if index > st.last_index then st.last_index = index end
      local skipped = ctl and ctl:skip(index, key, arg)
      if skipped then
        store(index, skipped)
      else
        if verb then log("start %s%s", validate.show(key), ex.describe and (": " .. ex:describe(key, arg)) or "") end
        if on_start then on_start(key, arg) end
        st.running = st.running + 1
        if ctl then st.active[index] = true end   -- only halt = "now" reads it
        ex:start(index, key, arg)
      end
      if st.npending > 0 then flush() end   -- callbacks see each result at once
    end
    if st.exhausted and st.running == 0 and #st.again == 0 and st.ndelayed == 0 then break end
    local wait
    if ex.run_ready and ex:run_ready() then wait = 0 end
    if st.npending > 0 then flush() end
    if st.running < limit and (not st.exhausted or #st.again > 0) then wait = 0 end
    take(st, ex, loop:poll(wait))   -- returns at once if a signal is pending
    if st.npending > 0 then flush() end
    check_signals(st)
  end
  -- Idle workers end at EOF; processes of cancelled tasks were killed:
  -- wait until all are reaped.
  ex:close()
  while loop:running() > 0 do take(st, ex, loop:poll()) end
  if st.hup then
    tasks.fill_not_started(self, st.last_index + 1,
      "not started: SIGHUP asked the run to finish its running tasks only")
  elseif st.halted then
    tasks.fill_not_started(self, st.last_index + 1, "not started: the run halted (halt = " .. st.halted .. ")")
  end
  if ctl then ctl:close() end
  return st.ok and not st.halted
end

--- After a stop: tasks waiting to be retried get their result, and every
-- result stored since the last flush (tasks that ended as the run stopped)
-- still reaches the joblog and the callbacks, so none is known only to
-- run.result; unless a callback's error stopped the run: a broken
-- callback is not called again. The first error is the one run_all raises.
local function stopped_reports(st)
  st.quiet = st.quiet or st.in_callback
  for _, t in ipairs(st.again) do st.store(t[1], ProcResult.not_started(t[2], t[3])) end
  for _, t in pairs(st.delayed) do st.store(t[1], ProcResult.not_started(t[2], t[3])) end
  st.again, st.delayed = {}, {}
  while st.phead <= st.npending and pcall(st.flush) == false do end
end

--- Run every task; returns self.result (one ProcResult per task, in order).
function Runner:run_all()
  if type(self) ~= "table" or self.kind == nil or self.run_all ~= Runner.run_all then
    fail("run_all is a method: call it as run:run_all()")
  end
  local loop = core.new_loop()
  local st = { loop = loop, last_index = 0, active = {}, again = {}, delayed = {}, ndelayed = 0 }
  self.result = {}
  self.time_start = wallclock()
  local t0 = now()
  local ran, all_ok = pcall(function()
    st.ctl = control.new(self, function(key, arg)
      return st.ex.describe and st.ex:describe(key, arg) or ""
    end)
    st.seen = {}
    st.store, st.finish, st.flush, st.direct = reporter(self, st, st.seen, st.ctl)
    st.ex = EXECUTORS[self.kind].new(executor_cfg(self), loop, st.finish,
      st.ctl and st.ctl:live_output())
    return run_tasks(self, st)
  end)
  if ran then
    loop:close()
    self.ok = all_ok and not (st.ctl and st.ctl.failed_io)
  else
    -- Stop: kill and reap what runs; every task gets a result.
    local records = loop:close()
    st.stopping = true
    if st.ex then st.ex:stop(records) end
    if st.flush then stopped_reports(st) end
    if st.ctl then st.ctl:close() end
    tasks.fill_not_started(self, 1)
    self.ok = false
  end
  self.time_run = now() - t0
  self.time_end = self.time_start + self.time_run
  if not ran then error(all_ok, 0) end
  return self.result
end

--- Print every result in pyconcurrent's layout.
function Runner:print_results()
  if type(self) ~= "table" or self.kind == nil or self.print_results ~= Runner.print_results then
    fail("print_results is a method: call it as run:print_results()")
  end
  for _, res in ipairs(self.result) do res:print() end
end

local M = {}

local function class(name, function_kind)
  local c = setmetatable({}, { __index = Runner, __call = new_runner })
  c.__index = c
  c.__name = name
  c.function_kind = function_kind
  return c
end

-- Executable tasks run the same way in both; function tasks differ.
M.ProcRunAsyncio = class("ProcRunAsyncio", "coro")
M.ProcRunMp = class("ProcRunMp", "pool")
M.Runner = Runner

return M
