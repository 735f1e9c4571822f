--- Executor: function tasks on thread workers (ProcRunMp with a function),
-- each a pthread owning its own lua_State (src/pool.c). Tasks cross as
-- marshalled bytes; the engine hands each finished job back as a record.
--
-- Deadlines are enforced inside the workers (a count hook, lc.sleep and
-- lc.run_prog check them), so the record already says "timeout".

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local validate = require "luaconcurrent.validate"
local function_task = require "luaconcurrent.exec.function_task"

local M = {}

-- Each worker owns a lua_State: more than this is a mistake.
M.MAX_THREADS = 1024
-- Tasks handed over ahead of time, per worker: enough that workers take
-- them in batches, few enough to stay lazy on iterators.
local QUEUE_PER_WORKER = 256

function M.check(cfg)
  if cfg.num_workers > M.MAX_THREADS then
    return string.format("num_workers for thread workers must be at most %d, got %s",
      M.MAX_THREADS, validate.show(cfg.num_workers))
  end
end

--- Workers to start: num_workers (0: one per CPU), never more than tasks.
function M.count(cfg)
  local n = cfg.num_workers == 0 and core.cpu_count() or cfg.num_workers
  if cfg.ntasks and cfg.ntasks < n then n = math.max(cfg.ntasks, 1) end
  return n
end

-- A turn's tasks go to the workers in batches (one frame, one job, one
-- record for several tasks) of about AHEAD_TIME of work each, from the
-- tasks' measured run time: 1 task while it is unknown, at most MAX_BATCH,
-- and never so many that a worker would sit idle.
local MAX_BATCH = 128
local AHEAD_TIME = 0.002

local Threads = {}
Threads.__index = Threads

local setmetatable = setmetatable

function M.new(cfg, loop, finish)
  local _, task_args = function_task.split(cfg.pargs)
  local nthreads = M.count(cfg)
  pcall(require, "cjson")  -- its one-time set-up must not race in workers
  loop:pool_start(cfg.fn_bytes, nthreads, cfg.timeout, package.path, package.cpath)
  return setmetatable({
    capacity = nthreads * QUEUE_PER_WORKER, concurrency = nthreads,
    nthreads = nthreads, loop = loop, finish = finish,
    plain = #cfg.pargs == 1,   -- no fixed arguments: the worker makes { arg }
    task_args = task_args,
    -- [id of a job] = { list, at, k }: its k tasks are list[at + 1 ..
    -- at + 3k] (index, key, arg each), in the queue of the turn that
    -- submitted it. One small table per job, whatever its number of tasks.
    inflight = {},
    queue = {}, nqueue = 0,    -- started, not yet submitted: index, key, arg
    avg = nil,                 -- a running average of the run time
    held = nil,                -- why no task starts any more (halt), or nil
  }, Threads)
end

function Threads:start(index, key, arg)
  local n, queue = self.nqueue, self.queue
  queue[n + 1], queue[n + 2], queue[n + 3] = index, key, arg
  self.nqueue = n + 3
end

-- The task list[at + 1 .. at + 3] as a job of its own.
function Threads:submit_one(list, at)
  local key, arg = list[at + 2], list[at + 3]
  local sent, id = pcall(self.loop.submit, self.loop, key,
    self.plain and { arg } or self.task_args(arg))
  if not sent then return self.finish(list[at + 1], function_task.unsendable(key, arg, id)) end
  self.inflight[id] = { list, at, 1 }
end

-- Tasks per batch: about AHEAD_TIME of work, spread over the workers.
function Threads:batch_size(ntasks)
  local avg, size = self.avg, 1
  if avg then
    size = avg * MAX_BATCH <= AHEAD_TIME and MAX_BATCH
      or math.max(1, math.tointeger(AHEAD_TIME // avg) or 1)
  end
  local spread = (ntasks + self.nthreads - 1) // self.nthreads
  return size > spread and spread or size
end

-- The k queued tasks after position at, as one job. The engine reads
-- each key and arg from the list itself; with no fixed arguments the
-- worker makes each task's { arg }.
function Threads:submit_batch(queue, at, k)
  local list = queue
  if not self.plain then
    list = {}
    for j = at + 3, at + 3 * k, 3 do list[j - 1], list[j] = queue[j - 1], self.task_args(queue[j]) end
  end
  local sent, id = pcall(self.loop.submit_batch, self.loop, self.plain, list, at, k)
  if sent then
    self.inflight[id] = { queue, at, k }
    return
  end
  for j = 0, k - 1 do   -- one at a time: finds the one that cannot go
    self:submit_one(queue, at + 3 * j)
  end
end

--- Submit the turn's tasks, in batches. The turn's queue stays with its
-- jobs (see inflight); the next turn gets a new one.
function Threads:run_ready()
  local nqueue, queue = self.nqueue, self.queue
  if nqueue == 0 then return false end
  self.queue, self.nqueue = {}, 0
  local ntasks = nqueue // 3
  local size = self:batch_size(ntasks)
  local i = 0                        -- tasks submitted
  while i < ntasks do
    local k = ntasks - i
    if k > size then k = size end
    if k == 1 then
      self:submit_one(queue, 3 * i)
    else
      self:submit_batch(queue, 3 * i, k)
    end
    i = i + k
  end
  return false
end

function Threads:result_of(key, arg, rec)
  if self.held and rec.status == "cancelled" then return ProcResult.not_started(key, arg, self.held) end
  return ProcResult.from_job(key, arg, rec)
end

-- The running average of the tasks' run time (batch_size reads it).
function Threads:learn(time_run)
  local avg = self.avg
  self.avg = avg and avg + (time_run - avg) * 0.1 or time_run
end

-- Task j of a batch record that did not simply return a true value.
local function batch_task(rec, j)
  local a, times = 3 * j, rec.times
  return { status = rec.status and rec.status[j] or "ok", nret = rec.vals[a - 2],
    first = rec.vals[a - 1], answer = rec.vals[a], time_start = times[a - 2],
    time_end = times[a - 1], time_run = times[a], error = rec.error and rec.error[j],
    limit = rec.limit }
end

-- A batch record (core_pool.c: flat vals and times, 3 slots a task;
-- status only when some task is not OK) -> one result per task; its
-- tasks are list[at + 1 .. at + 3n].
function Threads:batch_record(list, at, rec, n)
  local finish, vals, times, status = self.finish, rec.vals, rec.times, rec.status
  for j = 1, n do
    local a = 3 * j
    local t = at + a
    if vals[a - 1] and (status == nil or status[j] == "ok") then
      -- The common case, a task that returned a true value: its result
      -- in one table constructor.
      finish(list[t - 2], setmetatable({ key = list[t - 1], arg = list[t], success = true,
        answer = vals[a], time_start = times[a - 2], time_end = times[a - 1],
        time_run = times[a] }, ProcResult))
    else
      finish(list[t - 2], self:result_of(list[t - 1], list[t], batch_task(rec, j)))
    end
  end
  -- A batch's tasks ran back to back: their mean, from its two ends.
  local first_start, last_end = times[1], times[3 * n - 1]
  if first_start and last_end then self:learn((last_end - first_start) / n) end
end

function Threads:record(rec)
  local id = rec.id
  local job = self.inflight[id]
  if not job then return false end
  self.inflight[id] = nil
  local list, at, n = job[1], job[2], rec.batch
  if n then
    self:batch_record(list, at, rec, n)
  else
    if rec.time_run then self:learn(rec.time_run) end
    self.finish(list[at + 1], self:result_of(list[at + 2], list[at + 3], rec))
  end
  return true
end

-- A job cannot be taken back from a worker one at a time: it runs to its
-- end (or deadline), or until the pool stops with the run.
function Threads:cancel() end

-- Every task not yet submitted gets a result saying why.
function Threads:drop_queue(why)
  local queue = self.queue
  for at = 3, self.nqueue, 3 do
    self.finish(queue[at - 2], ProcResult.not_started(queue[at - 1], queue[at], why))
  end
  self.queue, self.nqueue = {}, 0
end

--- Start no more tasks (halt): those not submitted get their result now,
-- the pool starts none of the rest (they come back "cancelled").
function Threads:hold(why)
  self.held = why
  self:drop_queue(why)
  self.loop:pool_hold()
end

--- The pool says when a job ends, not when a task starts: the tasks
-- submitted and not back run on at most nthreads workers, the others wait
-- in the pool's queue.
function Threads:running()
  local n = 0
  for _, job in pairs(self.inflight) do n = n + job[3] end
  return math.min(n, self.nthreads)
end

function Threads:close() end

function Threads:stop(records)
  for _, rec in ipairs(records) do self:record(rec) end
  for id, t in pairs(self.inflight) do
    self.inflight[id] = nil
    local list = t[1]
    for at = t[2] + 3, t[2] + 3 * t[3], 3 do
      self.finish(list[at - 2], ProcResult.not_started(list[at - 1], list[at], "running"))
    end
  end
  self:drop_queue()
end

return M
