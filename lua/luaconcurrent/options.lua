--- A runner's settings: the options a runner takes, their defaults (the
-- one place they are written), and the checks made at construction.

local core = require "luaconcurrent.core"
local control = require "luaconcurrent.control"
local validate = require "luaconcurrent.validate"

local fail = validate.fail

local M = {}

M.NAMES = {
  num_workers = true, timeout = true, verb = true, on_start = true,
  on_result = true, on_progress = true, env = true, cwd = true, input = true,
  keep_results = true, kill_grace = true, isolation = true,
  hosts = true,   -- remote execution (exec/remote.lua)
  -- run control (control.lua)
  retries = true, retry_delay = true, halt = true, joblog = true, resume = true,
  progress = true, output = true, tag = true, results = true, timeline = true,
  max_capture = true,
  time_limit = true,   -- subprocess tasks: a limit that changes as the run goes (exec/subprocess.lua)
  max_answer = true,   -- worker processes: the largest answer frame (exec/processes.lua)
}

-- num_workers = 0 means: no limit for subprocesses and coroutines, one
-- worker per CPU for thread and process workers (the executors decide).
-- kill_grace is the engine's (LC_KILL_GRACE, 0.1 s) unless given.
M.DEFAULTS = {
  num_workers = 4, timeout = 0, verb = false, keep_results = true,
}

--- Accept an options table, or pyconcurrent's (num_workers, timeout, verb).
local function normalise(opts, ...)
  if type(opts) == "table" then
    if select("#", ...) > 0 then
      fail("options given as a table take no further arguments")
    end
    return opts
  end
  if opts ~= nil and type(opts) ~= "number" then
    fail("options must be a table (or num_workers, timeout, verb), got %s", type(opts))
  end
  if select("#", ...) > 2 then
    fail("too many arguments: (pargs, tasks, num_workers, timeout, verb) takes at most 5, got %d",
      select("#", ...) + 3)
  end
  local timeout, verb = ...
  return { num_workers = opts, timeout = timeout, verb = verb }
end

-- What a value is that cannot cross to a worker at all, or nil.
local function unsendable(v)
  local t = type(v)
  if t == "thread" then return "coroutine" end
  if t == "userdata" then return t end
end

-- Tasks listed up front for a worker: their keys and args must cross.
local function check_sendable(tasks, ntasks)
  if type(tasks) ~= "table" then return end
  for i = 1, ntasks do
    local task = tasks[i]
    local bad = unsendable(task[1])
    if bad then fail("task %d key cannot be sent to a worker: it is a %s", i, bad) end
    bad = unsendable(task[2])
    if bad then fail("task %d arg cannot be sent to a worker: it is a %s", i, bad) end
  end
end

--- Which executor runs the tasks: "exec", "coro", "pool" or "isolated".
local function kind_of(class, pargs, opts)
  local kind = type(pargs[1]) == "function" and class.function_kind or "exec"
  if opts.isolation ~= nil then
    if opts.isolation ~= "thread" and opts.isolation ~= "process" then
      fail('isolation must be "thread" or "process", got %s', validate.show(opts.isolation))
    end
    if kind ~= "pool" then
      fail("isolation applies to ProcRunMp function tasks")
    end
    if opts.isolation == "process" then kind = "isolated" end
  end
  if opts.hosts ~= nil then
    if opts.isolation == "thread" then
      fail("hosts: function tasks run remotely on worker processes (isolation = \"process\" or none)")
    end
    require("luaconcurrent.remote.hosts").list(opts.hosts)   -- fails naming a bad entry
    kind = "remote"
  end
  return kind
end

-- A callback's error keeps the callback's own traceback: run_all raises it
-- again from the scheduler once every task has its result, and a traceback
-- taken there shows only the scheduler. A string error gets the frames
-- from where it was raised up to the callback appended, as lua5.4 prints a
-- traceback; any other error value passes unchanged.
local function add_traceback(e)
  if type(e) ~= "string" then return e end
  local tb = debug.traceback(e, 2)
  -- Up to the callback: the frames below it are the scheduler's.
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

local function pass(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

local function traced(fn)
  if type(fn) ~= "function" then return fn end
  return function(...) return pass(xpcall(fn, add_traceback, ...)) end
end
M.traced = traced

--- A new runner of class `class`, its settings checked and defaulted.
function M.runner(class, pargs, tasks, opts, ...)
  validate.pargs(pargs)
  opts = validate.options(normalise(opts, ...), M.NAMES)
  local kind = kind_of(class, pargs, opts)
  control.check(opts)
  if opts.time_limit ~= nil and (kind ~= "exec" or type(opts.time_limit) ~= "function") then
    fail("time_limit must be a function(key) -> seconds | nil, and is for subprocess tasks only")
  end
  local remote_fn = kind == "remote" and type(pargs[1]) == "function"
  local ntasks = validate.tasks(tasks, kind == "exec" or (kind == "remote" and not remote_fn))
  local fn_bytes
  if kind == "pool" or kind == "isolated" or remote_fn then
    check_sendable(tasks, ntasks)
    -- Fail here, naming the value, if the function cannot reach a worker.
    fn_bytes = core.marshal_string(pargs[1])
    for i = 2, #pargs do
      local sendable, err = pcall(core.marshal, pargs[i])
      if not sendable then
        fail("pargs[%d] cannot be sent to a %s: %s", i,
          kind == "pool" and "thread worker" or remote_fn and "remote host" or "worker process",
          (tostring(err):gsub("^luaconcurrent: ", "")))
      end
    end
  end
  local self = {
    pargs = pargs, tasks = tasks, kind = kind, ntasks = ntasks, fn_bytes = fn_bytes,
    on_start = traced(opts.on_start), on_result = traced(opts.on_result),
    on_progress = traced(opts.on_progress),
    env = opts.env, cwd = opts.cwd, input = opts.input, kill_grace = opts.kill_grace,
    retries = opts.retries, retry_delay = traced(opts.retry_delay), halt = opts.halt,
    joblog = opts.joblog, resume = opts.resume, progress = opts.progress,
    output = opts.output, tag = traced(opts.tag), results = opts.results, timeline = opts.timeline,
    max_capture = opts.max_capture, max_answer = opts.max_answer, hosts = opts.hosts,
    time_limit = opts.time_limit,
    -- With hosts, a num_workers given is the slots of each host that names
    -- none (GNU parallel's -j with -S); 0 or none: the host's CPU count.
    host_slots = opts.hosts ~= nil and opts.num_workers ~= 0 and opts.num_workers or nil,
    result = {}, ok = nil, time_start = -1, time_end = -1, time_run = -1,
  }
  for name, default in pairs(M.DEFAULTS) do
    if opts[name] == nil then self[name] = default else self[name] = opts[name] end
  end
  return setmetatable(self, class)
end

return M
