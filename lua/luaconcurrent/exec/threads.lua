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

function M.new(cfg, loop, finish)
  local _, task_args = function_task.split(cfg.pargs)
  local nthreads = M.count(cfg)
  pcall(require, "cjson")  -- its one-time set-up must not race in workers
  loop:pool_start(cfg.fn_bytes, nthreads, cfg.timeout, package.path, package.cpath)
  -- [job id] = the task's index; keys[index], args[index]: its key and
  -- arg (three writes per task, no table).
  local inflight, keys, args = {}, {}, {}
  local submit = loop.submit
  local setmetatable = setmetatable

  local ex = { slots = nthreads * QUEUE_PER_WORKER }

  function ex:start(index, key, arg)
    local sent, id = pcall(submit, loop, key, task_args(arg))
    if not sent then return finish(index, function_task.unsendable(key, arg, id)) end
    inflight[id], keys[index], args[index] = index, key, arg
  end

  function ex:record(rec)
    local id = rec.id
    local index = inflight[id]
    if not index then return false end
    local key, arg = keys[index], args[index]
    inflight[id], keys[index], args[index] = nil, nil, nil
    if rec.status == "ok" and rec.nret > 0 and rec.first then
      -- The common case: the result in one table constructor.
      finish(index, setmetatable({ key = key, arg = arg, success = true, answer = rec.answer,
        time_start = rec.time_start, time_end = rec.time_end, time_run = rec.time_run },
        ProcResult))
    else
      finish(index, ProcResult.from_job(key, arg, rec))
    end
    return true
  end

  -- A job cannot be taken back from a worker one at a time: it runs to its
  -- end (or deadline), or until the pool stops with the run.
  function ex:cancel() end

  function ex:close() end

  function ex:stop(records)
    for _, rec in ipairs(records) do ex:record(rec) end
    for id, index in pairs(inflight) do
      inflight[id] = nil
      finish(index, ProcResult.not_started(keys[index], args[index], "running"))
      keys[index], args[index] = nil, nil
    end
  end

  return ex
end

return M
