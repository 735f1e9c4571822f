--- Executor: function tasks on worker processes (ProcRunMp with
-- isolation = "process"). Workers are started by exec (worker.lua) and
-- reused; tasks and answers cross as length-prefixed frames on their stdin
-- and stdout (the protocol: worker.lua's header).
--
-- Pipelined: each worker is handed several tasks ahead, several to a
-- frame, so it goes from one task to the next without waiting for the
-- runner. How many it holds (the window) follows the tasks' own run time:
-- about AHEAD_TIME of work, 1 to MAX_AHEAD tasks, so a long task does not
-- keep many others waiting behind it. A worker answers each task as soon
-- as it is over and says whether it went on to the next one; it also says
-- when it starts a frame's first task. So the runner always knows which
-- task a worker is running, and which ones it holds that never started.
--
-- One that dies (a crash, os.exit, a hard kill at a deadline) takes only
-- its running task with it: the tasks it held that never started go back
-- to the queue, to another worker (a worker that died idle fails none).
-- The next tasks that need a worker start a new one.
--
-- The deadline is kept here, on a loop timer from the start the worker
-- reported: at it the worker is killed (no grace: a task that ignores its
-- deadline is not asked twice), and its task's result is final at once.
--
-- Trust: code goes out, only data comes back. Each worker has its own
-- keys (core.marshal_worker_keys: down for what it is sent, up for what
-- it answers; it never sees the run's key). Its answers are read with the
-- data decoder under its up-key (the loop's "frames" mode does that in C;
-- read_rest in process_answers.lua) and checked for shape; a frame that fails either ends
-- that worker, fails the task it was on and sends the others elsewhere.
--
-- The jobs, one file each: process_pool.lua (the workers: start, end,
-- kill, deadline), process_dispatch.lua (handing tasks over),
-- process_answers.lua (what comes back); this file, the executor
-- interface (executors.lua) over them.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local function_task = require "luaconcurrent.exec.function_task"
local threads = require "luaconcurrent.exec.threads"

local now, wallclock = core.now, core.wallclock
local setmetatable, tunpack = setmetatable, table.unpack

local Processes = {}
Processes.__index = Processes

local pool = require "luaconcurrent.exec.process_pool"
local dispatch = require "luaconcurrent.exec.process_dispatch"
local answers = require "luaconcurrent.exec.process_answers"
for _, part in ipairs({ pool, dispatch, answers }) do
  for name, f in pairs(part) do
    if type(f) == "function" then Processes[name] = f end
  end
end
local MAX_AHEAD = dispatch.MAX_AHEAD

local M = {}

--- How to start a worker: this executable's --worker mode, or the
-- interpreter that hosts the module.
local function worker_argv()
  local embedded, exe = core.host()
  if embedded then return { exe, "--worker" } end
  local lua = exe and exe:match("/lua[%d.]*$") and exe or "lua5.4"
  return { lua, "-E", "-e", string.format(
    "package.path = %q; package.cpath = %q; os.exit(require('luaconcurrent.worker').main(), true)",
    package.path, package.cpath) }
end

--- cfg.args_ready (the engine-mode remote worker): each task's arg is
-- already its whole args table (no fixed arguments are added, no wrap).
-- finish(index, res, ...) gets after res, when the task was answered, the
-- worker's answer as read (what, t0, t1, more, a, b, c, d: data, checked).
function M.new(cfg, loop, finish)
  if cfg.max_answer then loop:max_frame(cfg.max_answer) end
  local _, task_args = function_task.split(cfg.pargs)
  if cfg.args_ready then task_args = function(arg) return arg end end
  local nworkers = threads.count(cfg)
  return setmetatable({
    capacity = nworkers * MAX_AHEAD, concurrency = nworkers,
    -- A worker runs the tasks of a frame back to back and cannot be told
    -- to skip the rest: one handed a task ahead would start it after a
    -- halt. A run that can halt hands each worker one task at a time.
    one_ahead = cfg.halts,
    nworkers = nworkers, loop = loop, finish = finish,
    plain = #cfg.pargs == 1 and not cfg.args_ready,   -- no fixed arguments: frames carry arg, not { arg }
    task_args = task_args, timeout = cfg.timeout, envblock = cfg.envblock, cwd = cfg.cwd,
    argv = worker_argv(),
    fn_bytes = cfg.fn_bytes,   -- under the run's key: each worker gets it retagged
    wall_offset = wallclock() - now(),
    workers = {},      -- [process id] = w, every worker not yet reaped
    nlive = 0,         -- of them, the ones not dead
    timers = {},       -- [timer id] = w, the deadline of w's running task
    -- Tasks { index, key, arg } not handed to a worker, in order: a FIFO
    -- from qh to qt (tasks given back go in front of qh).
    queue = {}, qh = 1, qt = 0,
    avg = nil,         -- a running average of the tasks' run time
    vals = {},         -- scratch: a frame's keys and args
    names = core.marshal_names(),  -- for frames (see marshal_frame)
  }, Processes)
end
function Processes:start(index, key, arg)
  self:push({ index, key, arg })
end

--- Tasks are handed over in frames once per turn of the loop, before it
-- waits: as many as have come by then.
function Processes:run_ready()
  return self:dispatch()
end

function Processes:record(rec)
  local w = self.timers[rec.id]
  if w then
    self.timers[rec.id] = nil
    self:expired(w)
    return true
  end
  w = self.workers[rec.id]
  if not w then return false end
  if not rec.frame then
    self:ended(w, rec)
  elseif not w.killed then
    if rec.error then self:broken(w, rec) else self:answered(w, rec.n, tunpack(rec, 1, rec.n)) end
  end
  return true
end

-- Its deadline passed: a hard kill; the task's result is final now.
function Processes:expired(w)
  w.timer = nil
  local task = self:kill(w)
  if task and not task.cancelled then
    local t = now()
    local t0 = w.t_start or t      -- its run: from the start its worker reported
    local res = setmetatable({ key = task[2], arg = task[3], time_start = self.wall_offset + t0,
      time_end = self.wall_offset + t, time_run = t - t0 }, ProcResult)
    self.finish(task[1], ProcResult.time_out(res, self.timeout, "its worker process was killed"))
  end
end

function Processes:cancel(index, why)
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if task[1] == index and not task.cancelled then
      task.cancelled = true
      return self.finish(index, ProcResult.not_started(task[2], task[3], why))
    end
  end
  for _, w in pairs(self.workers) do
    for k = w.qh, w.qt do
      local task = w.q[k]
      if task[1] == index and not task.cancelled then
        if k == w.qh and w.started and not w.dead then self:kill(w) end
        -- Not started: its answer, if it ever comes, is dropped.
        task.cancelled = true
        return self.finish(index, ProcResult.not_started(task[2], task[3], why))
      end
    end
  end
end

--- Start no more tasks (halt): the queued ones and the ones handed to a
-- worker but not started get their result now; a worker running a task
-- finishes it and is then stopped, so none of its next tasks runs.
function Processes:hold(why)
  self.held = true
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if not task.cancelled then self.finish(task[1], ProcResult.not_started(task[2], task[3], why)) end
  end
  self.queue, self.qh, self.qt = {}, 1, 0
  for _, w in pairs(self.workers) do
    local from = w.started and w.qh + 1 or w.qh
    for k = from, w.qt do
      local task = w.q[k]
      if not task.cancelled then
        task.cancelled = true
        self.finish(task[1], ProcResult.not_started(task[2], task[3], why))
      end
    end
    if not w.dead and not w.started and w.qh <= w.qt then self:kill(w) end
  end
end

--- The workers on a task now (each says when it starts one, and whether
-- it went on to the next; the tasks queued behind are not running).
function Processes:running()
  local n = 0
  for _, w in pairs(self.workers) do
    if w.started and not w.dead and not w.killed then n = n + 1 end
  end
  return n
end

--- Idle workers end at EOF on their stdin.
function Processes:close()
  for id in pairs(self.workers) do self.loop:close_input(id) end
end

function Processes:stop(records)
  for _, rec in ipairs(records) do
    local w = self.workers[rec.id]
    if w and not rec.frame then self:ended(w, rec) end
  end
  for _, w in pairs(self.workers) do
    for k = w.qh, w.qt do
      local task = w.q[k]
      if not task.cancelled then
        self.finish(task[1], ProcResult.not_started(task[2], task[3],
          k == w.qh and w.started and "running" or "not_started"))
      end
    end
    w.q, w.qh, w.qt = {}, 1, 0
  end
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if not task.cancelled then self.finish(task[1], ProcResult.not_started(task[2], task[3])) end
  end
  self.queue, self.qh, self.qt = {}, 1, 0
end
return M
