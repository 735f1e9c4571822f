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
local QUEUE_PER_WORKER = 64

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
local MAX_BATCH = 32
local AHEAD_TIME = 0.002

local Threads = {}
Threads.__index = Threads

local setmetatable, tunpack, tmove = setmetatable, table.unpack, table.move

function M.new(cfg, loop, finish)
  local _, task_args = function_task.split(cfg.pargs)
  local nthreads = M.count(cfg)
  pcall(require, "cjson")  -- its one-time set-up must not race in workers
  loop:pool_start(cfg.fn_bytes, nthreads, cfg.timeout, package.path, package.cpath)
  return setmetatable({
    slots = nthreads * QUEUE_PER_WORKER, nthreads = nthreads, loop = loop, finish = finish,
    plain = #cfg.pargs == 1,   -- no fixed arguments: the worker makes { arg }
    task_args = task_args,
    -- [id of a job] = its tasks, { index1, key1, arg1, index2, ... }: one
    -- table and one hash entry per job, whatever its number of tasks.
    inflight = {},
    queue = {}, nqueue = 0,    -- started, not yet submitted: index, key, arg
    vals = {},                 -- scratch: a batch's keys and args
    avg = nil,                 -- a running average of the run time
    held = nil,                -- why no task starts any more (halt), or nil
  }, Threads)
end

function Threads:start(index, key, arg)
  local n, queue = self.nqueue, self.queue
  queue[n + 1], queue[n + 2], queue[n + 3] = index, key, arg
  self.nqueue = n + 3
end

function Threads:submit_one(index, key, arg)
  local sent, id = pcall(self.loop.submit, self.loop, key,
    self.plain and { arg } or self.task_args(arg))
  if not sent then return self.finish(index, function_task.unsendable(key, arg, id)) end
  self.inflight[id] = { index, key, arg }
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

-- The k queued tasks after position at, as one job.
function Threads:submit_batch(at, k)
  local queue, vals, plain = self.queue, self.vals, self.plain
  -- With no fixed arguments the worker makes each task's { arg }.
  for j = 0, k - 1 do
    local arg = queue[at + 3 * j + 3]
    if not plain then arg = self.task_args(arg) end
    vals[2 * j + 1], vals[2 * j + 2] = queue[at + 3 * j + 2], arg
  end
  local sent, id = pcall(self.loop.submit_batch, self.loop, plain, tunpack(vals, 1, 2 * k))
  for j = 1, 2 * k do vals[j] = nil end
  if sent then
    self.inflight[id] = tmove(queue, at + 1, at + 3 * k, 1, {})
    return
  end
  for j = 0, k - 1 do   -- one at a time: finds the one that cannot go
    self:submit_one(queue[at + 3 * j + 1], queue[at + 3 * j + 2], queue[at + 3 * j + 3])
  end
end

--- Submit the turn's tasks, in batches.
function Threads:run_ready()
  local nqueue, queue = self.nqueue, self.queue
  if nqueue == 0 then return false end
  local ntasks = nqueue // 3
  local size = self:batch_size(ntasks)
  local i = 0                        -- tasks submitted
  while i < ntasks do
    local k = ntasks - i
    if k > size then k = size end
    if k == 1 then
      local at = 3 * i
      self:submit_one(queue[at + 1], queue[at + 2], queue[at + 3])
    else
      self:submit_batch(3 * i, k)
    end
    i = i + k
  end
  for j = 1, nqueue do queue[j] = nil end
  self.nqueue = 0
  return false
end

function Threads:result_of(key, arg, status, nret, first, answer, time_start, time_end,
                           time_run, err, limit)
  if self.held and status == "cancelled" then return ProcResult.not_started(key, arg, self.held) end
  if time_run then
    local avg = self.avg
    self.avg = avg and avg + (time_run - avg) * 0.1 or time_run
  end
  if status == "ok" and nret > 0 and first then
    -- The common case: the result in one table constructor.
    return setmetatable({ key = key, arg = arg, success = true, answer = answer,
      time_start = time_start, time_end = time_end, time_run = time_run }, ProcResult)
  end
  return ProcResult.from_job(key, arg, { status = status, nret = nret, first = first,
    answer = answer, time_start = time_start, time_end = time_end, time_run = time_run,
    error = err, limit = limit })
end

function Threads:record(rec)
  local id = rec.id
  local t = self.inflight[id]
  if not t then return false end
  self.inflight[id] = nil
  local finish = self.finish
  local n = rec.batch
  if not n then
    finish(t[1], self:result_of(t[2], t[3], rec.status, rec.nret, rec.first, rec.answer,
      rec.time_start, rec.time_end, rec.time_run, rec.error, rec.limit))
    return true
  end
  local status, nret, first, answer = rec.status, rec.nret, rec.first, rec.answer
  local ts, te, tr, err, limit = rec.time_start, rec.time_end, rec.time_run, rec.error, rec.limit
  for j = 1, n do
    local at = 3 * j
    finish(t[at - 2], self:result_of(t[at - 1], t[at], status[j], nret[j], first[j], answer[j],
      ts[j], te[j], tr[j], err[j], limit))
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

function Threads:close() end

function Threads:stop(records)
  for _, rec in ipairs(records) do self:record(rec) end
  for id, t in pairs(self.inflight) do
    self.inflight[id] = nil
    local at = 3          -- (an arg may be nil: the index ends the list)
    while t[at - 2] ~= nil do
      self.finish(t[at - 2], ProcResult.not_started(t[at - 1], t[at], "running"))
      at = at + 3
    end
  end
  self:drop_queue()
end

return M
