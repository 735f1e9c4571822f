--- The runner classes: ProcRunAsyncio and ProcRunMp.
--
-- A runner validates its input at construction and runs every task in
-- run_all, at most num_workers at a time, on one event loop. It keeps one
-- result per task, in task order. However run_all ends, nothing it started
-- is left running: on an error (a raising callback, Ctrl-C) every task still
-- running is killed and reaped, recorded as "Interrupted", and the error is
-- raised again.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"

local fail = validate.fail

local OPTIONS = {
  num_workers = true, timeout = true, verb = true, on_start = true,
  on_result = true, on_progress = true, env = true, cwd = true, input = true,
  keep_results = true, kill_grace = true,
}

local DEFAULT_WORKERS = 4
local DEFAULT_GRACE = 0.1

local Runner = {}
Runner.__index = Runner

--- Accept an options table, or pyconcurrent's (num_workers, timeout, verb).
local function normalise_options(opts, ...)
  if type(opts) == "table" then
    if select("#", ...) > 0 then
      fail("options given as a table take no further arguments")
    end
    return opts
  end
  if opts ~= nil and type(opts) ~= "number" then
    fail("options must be a table (or num_workers, timeout, verb), got %s", type(opts))
  end
  local timeout, verb = ...
  return { num_workers = opts, timeout = timeout, verb = verb }
end

local function new_runner(class, pargs, tasks, opts, ...)
  validate.pargs(pargs)
  opts = validate.options(normalise_options(opts, ...), OPTIONS)
  if type(pargs[1]) == "function" then
    fail("function tasks (pargs[1] is a function) are not supported by this build yet")
  end
  local ntasks = validate.tasks(tasks, true)
  local self = setmetatable({
    pargs = pargs,
    tasks = tasks,
    num_workers = opts.num_workers or DEFAULT_WORKERS,
    timeout = opts.timeout or 0,
    verb = opts.verb or false,
    keep_results = opts.keep_results ~= false,
    kill_grace = opts.kill_grace or DEFAULT_GRACE,
    on_start = opts.on_start,
    on_result = opts.on_result,
    on_progress = opts.on_progress,
    env = opts.env,
    cwd = opts.cwd,
    input = opts.input,
    ntasks = ntasks,
    result = {},
    ok = nil,
    time_start = -1, time_end = -1, time_run = -1,
  }, class)
  return self
end

--- An iterator over (index, key, arg), validating tasks from a function.
local function task_source(tasks)
  if type(tasks) == "table" then
    local i = 0
    return function()
      i = i + 1
      local task = tasks[i]
      if task == nil then return nil end
      return i, task[1], task[2]
    end
  end
  local i, seen = 0, {}
  return function()
    local task = tasks()
    if task == nil then return nil end
    i = i + 1
    local key, arg = validate.task(task, i, seen, true)
    return i, key, arg
  end
end

local function append_arg(argv, n, arg)
  if arg == nil then return end
  if type(arg) == "table" then
    for i = 1, #arg do argv[n + i] = tostring(arg[i]) end
  else
    argv[n + 1] = tostring(arg)
  end
end

local function log(fmt, ...)
  io.stderr:write("luaconcurrent: ", string.format(fmt, ...), "\n")
end

--- The body of run_all; `state` is shared with the error path.
local function run_tasks(self, loop, state)
  local prefix = {}
  for i, v in ipairs(self.pargs) do prefix[i] = tostring(v) end
  local nprefix = #prefix
  local envblock = self.env and core.envblock(self.env) or nil
  local limit = self.num_workers == 0 and math.huge or self.num_workers
  local next_task = task_source(self.tasks)
  local inflight, running, done = state.inflight, 0, 0
  local total = self.ntasks
  local timeout, grace, cwd, input = self.timeout, self.kill_grace, self.cwd, self.input
  local on_start, on_result, on_progress = self.on_start, self.on_result, self.on_progress
  local keep, result, verb = self.keep_results, self.result, self.verb
  local ok = true

  local function finish(index, res)
    if keep and index then result[index] = res end
    if not res.success then ok = false end
    done = done + 1
    if verb then
      log("done %s: %s", validate.show(res.key),
        res.success and "ok" or (res.error or res.exception or "failed"))
    end
    if on_result then on_result(res) end
    if on_progress then on_progress(done, total) end
  end

  local exhausted = false
  while true do
    while running < limit and not exhausted do
      local index, key, arg = next_task()
      if index == nil then
        exhausted = true
        total = done + running
        break
      end
      local argv = { table.unpack(prefix, 1, nprefix) }
      append_arg(argv, nprefix, arg)
      if verb then log("start %s: %s", validate.show(key), table.concat(argv, " ")) end
      if on_start then on_start(key, arg) end
      local id, message, errname = loop:spawn(argv, envblock, cwd, input, timeout, grace)
      if id then
        inflight[id] = { index, key, arg }
        running = running + 1
      else
        finish(index, ProcResult.spawn_failure(key, arg, message, errname))
      end
    end
    if running == 0 then break end
    local records = loop:poll()
    local n = #records
    -- Record the whole batch before any callback runs, so a raising
    -- callback cannot lose a result the engine already handed over.
    for i = 1, n do
      local rec = records[i]
      local t = inflight[rec.id]
      inflight[rec.id] = nil
      running = running - 1
      records[i] = ProcResult.from_record(t[2], t[3], rec, timeout)
      records[i].index = t[1]
      if keep then result[t[1]] = records[i] end
    end
    for i = 1, n do
      local res = records[i]
      res.index = nil
      finish(nil, res)
    end
  end
  return ok
end

--- Run every task; returns self.result (one ProcResult per task, in order).
function Runner:run_all()
  local loop = core.new_loop()
  local state = { inflight = {} }
  self.result = {}
  self.time_start = core.wallclock()
  local t0 = core.now()
  local ok, all_ok = pcall(run_tasks, self, loop, state)
  if not ok then
    -- Stop cleanly: kill and reap what runs, keep what it produced.
    local err = all_ok
    for _, rec in ipairs(loop:close()) do
      local t = state.inflight[rec.id]
      if t and self.keep_results then
        self.result[t[1]] = ProcResult.from_record(t[2], t[3], rec, self.timeout)
      end
    end
    -- No task is lost: listed tasks that never started get a result too.
    if self.keep_results and type(self.tasks) == "table" then
      for i = 1, self.ntasks do
        if self.result[i] == nil then
          local task = self.tasks[i]
          self.result[i] = ProcResult.not_started(task[1], task[2])
        end
      end
    end
    self.ok = false
    self.time_run = core.now() - t0
    self.time_end = self.time_start + self.time_run
    error(err, 0)
  end
  loop:close()
  self.ok = all_ok
  self.time_run = core.now() - t0
  self.time_end = self.time_start + self.time_run
  return self.result
end

--- Print every result in pyconcurrent's layout.
function Runner:print_results()
  for _, res in ipairs(self.result) do res:print() end
end

local M = {}

local function class(name)
  local c = setmetatable({}, { __index = Runner, __call = new_runner })
  c.__index = c
  c.__name = name
  return c
end

-- Executable tasks run the same way in both; they differ for function tasks.
M.ProcRunAsyncio = class("ProcRunAsyncio")
M.ProcRunMp = class("ProcRunMp")
M.Runner = Runner

return M
