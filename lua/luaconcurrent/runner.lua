--- The runner classes, ProcRunAsyncio and ProcRunMp: the scheduler.
--
-- A runner validates its input at construction. run_all takes tasks from
-- the task source (a list, or an iterator read lazily), hands the executor
-- at most ex.capacity of them at a time, stores one result per task in task
-- order, runs the callbacks, and handles run control (signals, SIGHUP
-- drain, stopping a run). However run_all ends, nothing it started is left
-- running: on an error (a raising callback, Ctrl-C) every task still
-- running is killed or closed, recorded as "Interrupted", and the error is
-- raised again.
--
-- The parts: executors.lua (the executor interface, and which executor
-- runs a run), schedule.lua (the state this loop shares, each field with
-- its owner), report.lua (finish, and the callbacks), tasks.lua (the task
-- source), control.lua (run control).

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local options = require "luaconcurrent.options"
local tasks = require "luaconcurrent.tasks"
local control = require "luaconcurrent.control"
local executors = require "luaconcurrent.executors"
local schedule = require "luaconcurrent.schedule"
local report = require "luaconcurrent.report"

local fail = validate.fail
local now, wallclock = core.now, core.wallclock
local log = schedule.log
-- Called at every turn: a local, not a method looked up through st's metatable.
local check_signals = schedule.State.check_signals

local Runner = {}
Runner.__index = Runner

local function new_runner(class, pargs, task_list, ...)
  local self = options.runner(class, pargs, task_list, ...)
  local refused = executors.check(self)
  if refused then fail("%s", refused) end
  return self
end

--- A batch of engine records: retry timers to the state, the rest to the
-- executor.
local function take(st, ex, records)
  for i = 1, #records do
    local rec = records[i]
    if not (st.delayed[rec.id] and st:timer_fired(rec.id)) then ex:record(rec) end
  end
end

--- Start tasks of a list while the executor takes them, when nothing
-- (callback, run control, retry) comes between two starts: the cost of
-- every task of a long run of short ones. The list's tasks are read here,
-- not through a call each; the source goes on from where this stops, and
-- the general loop sees the list's end (and runs iterators, which pay a
-- check a task anyway).
local function start_direct(st, ex, source, list, limit, on_start)
  local i = st.last_index
  while st.inflight < limit do
    local task = list[i + 1]
    if task == nil then break end
    i = i + 1
    st.last_index = i
    if on_start then on_start(task[1], task[2]) end
    st.inflight = st.inflight + 1
    ex:start(i, task[1], task[2])
  end
  source(i)
end

--- The general start, for any source, callbacks and run control: a
-- function that hands the executor tasks while it holds fewer than limit
-- (its capacity). What it reads of the run is kept in upvalues: this is
-- the cost of every task of a run with a callback or run control.
local function filler(self, st, ex, source)
  local ctl, store, flush, active = st.ctl, st.store, st.flush, st.active
  local on_start, verb = self.on_start, self.verb
  return function(limit)
    while st.inflight < limit and not (st.exhausted and st.again[1] == nil) do
      local index, key, arg
      if st.again[1] == nil then index, key, arg = source() else index, key, arg = st:next_task(source) end
      if index == nil then
        if not st.exhausted then st.exhausted, st.total = true, st.done + st.npending // 2 + st.inflight end
        break
      end
      if index > st.last_index then st.last_index = index end
      local skipped = ctl and ctl:skip(index, key, arg)
      if skipped then
        store(index, skipped)
      else
        if verb then log("start %s%s", validate.show(key), ex.describe and (": " .. ex:describe(key, arg)) or "") end
        if on_start then on_start(key, arg) end
        st.inflight = st.inflight + 1
        if ctl then active[index] = true end   -- only halt = "now" reads it
        ex:start(index, key, arg)
      end
      if st.npending > 0 then flush() end   -- callbacks see each result at once
    end
  end
end

--- The loop: fill the executor, wait for records, report, until no task
-- is left; st is shared with run_all's error path.
local function run_tasks(self, st, source, list)
  local loop, ex, flush = st.loop, st.ex, st.flush
  local on_start, fill = self.on_start, filler(self, st, ex, source)
  check_signals(st)
  while true do
    local limit = ex.capacity    -- it may change during the run (remote hosts come and go)
    if list and st.direct and st.again[1] == nil and not st.exhausted then
      start_direct(st, ex, source, list, limit, on_start)
    end
    -- Done when the source has ended and no task is held or waits (the
    -- checks inline: a call more a turn is W1's cost).
    if st.inflight < limit then fill(limit) end
    if st.exhausted and st.inflight == 0 and st.again[1] == nil and st.ndelayed == 0 then break end
    local wait
    if ex.run_ready and ex:run_ready() then wait = 0 end
    if st.npending > 0 then flush() end
    if st.inflight < limit and (not st.exhausted or st.again[1] ~= nil) then wait = 0 end
    take(st, ex, loop:poll(wait))   -- returns at once if a signal is pending
    if st.npending > 0 then flush() end
    check_signals(st)
  end
end

--- After the loop: wait for what the executor still runs, give the
-- tasks never started their result.
local function wind_up(self, st)
  -- Idle workers end at EOF; processes of cancelled tasks were killed:
  -- wait until all are reaped.
  st.ex:close()
  while st.loop:running() > 0 do take(st, st.ex, st.loop:poll()) end
  if st.hup then
    tasks.fill_not_started(self, st.last_index + 1,
      "not started: SIGHUP asked the run to finish its running tasks only")
  elseif st.halted then
    tasks.fill_not_started(self, st.last_index + 1, "not started: the run halted (halt = " .. st.halted .. ")")
  end
  if st.ctl then st.ctl:close() end
  return st.ok and not st.halted
end

--- Set up run control, the reporter and the executor, and run.
local function run(self, st)
  st.ctl = control.new(self, function(key, arg)
    return st.ex.describe and st.ex:describe(key, arg) or ""
  end)
  report.install(st, self)
  st.ex = executors.new(self, st.loop, st.finish, st.ctl and st.ctl:live_output())
  local source, list = tasks.source(self.tasks, self.kind == "exec" or self.kind == "remote", st.seen)
  run_tasks(self, st, source, list)
  return wind_up(self, st)
end

--- Run every task; returns self.result (one ProcResult per task, in order).
function Runner:run_all()
  if type(self) ~= "table" or self.kind == nil or self.run_all ~= Runner.run_all then
    fail("run_all is a method: call it as run:run_all()")
  end
  local loop = core.new_loop()
  self.result = {}
  self.time_start = wallclock()
  local st = schedule.new(self, loop)
  local t0 = now()
  local ran, all_ok = pcall(run, self, st)
  if ran then
    loop:close()
    self.ok = all_ok and not (st.ctl and st.ctl.failed_io)
  else
    -- Stop: kill and reap what runs; every task gets a result.
    local records = loop:close()
    st.stopping = true
    if st.ex then st.ex:stop(records) end
    if st.flush then report.stopped(st) end
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
