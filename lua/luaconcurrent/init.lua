--- luaconcurrent: run many tasks concurrently, one result per task.
--
--   local lc = require "luaconcurrent"
--   local run = lc.ProcRunAsyncio({"/usr/bin/sleep"}, {{1, 1}, {2, 2}}, {num_workers = 4})
--   run:run_all()
--   run:print_results()

-- Before anything else, and in Lua any version parses: under another Lua the
-- C core would fail to load with a linker error (undefined symbol
-- lua_absindex under 5.1), which says nothing about the cause.
if _VERSION ~= "Lua 5.4" then
  error("luaconcurrent: needs Lua 5.4, this is " .. tostring(_VERSION)
    .. ": run lua5.4 (for busted: busted --lua=lua5.4)", 0)
end

local core = require "luaconcurrent.core"
local runner = require "luaconcurrent.runner"
local validate = require "luaconcurrent.validate"
local async = require "luaconcurrent.async"

local M = {
  VERSION = "0.1.0",
  _VERSION = "luaconcurrent 0.1.0",
  ProcRunAsyncio = runner.ProcRunAsyncio,
  ProcRunMp = runner.ProcRunMp,
  ProcResult = require "luaconcurrent.result",
  run_prog = require "luaconcurrent.run_prog",
}

-- Construction errors name the caller's line and the argument, as Lua's
-- own functions do. The classes stay the classes (callable tables); only
-- their constructor is wrapped, once, however often the module is loaded.
for _, class in ipairs({ runner.ProcRunAsyncio, runner.ProcRunMp }) do
  local mt = getmetatable(class)
  if not mt.raw_call then
    local raw = mt.__call
    mt.raw_call = raw
    mt.__call = function(c, pargs, tasks, opts, ...)
      local ok, run = pcall(raw, c, pargs, tasks, opts, ...)
      if not ok then validate.argerror(c.__name, run, 2, opts ~= nil and type(opts) ~= "table") end
      return run
    end
  end
end

-- lc.run's modes: which runner, and what isolation.
local MODES = {
  coroutine = { runner.ProcRunAsyncio }, asyncio = { runner.ProcRunAsyncio },
  thread = { runner.ProcRunMp }, mp = { runner.ProcRunMp },
  process = { runner.ProcRunMp, "process" },
}
M.MODES = MODES

-- The runner for opts (a copy without `mode` and `errors`), or an error
-- message.
local function build(pargs, tasks, opts, extra)
  if opts ~= nil and type(opts) ~= "table" then
    return nil, ("luaconcurrent: options must be a table, got %s"):format(type(opts))
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    if not extra[k] then o[k] = v end
  end
  local mode = opts and opts.mode
  if mode == nil then mode = "coroutine" end
  local m = MODES[mode]
  if not m or mode == "asyncio" or mode == "mp" then
    return nil, ("luaconcurrent: mode must be \"coroutine\", \"thread\" or \"process\", got %s")
      :format(validate.show(mode))
  end
  if m[2] and type(pargs) == "table" and type(pargs[1]) == "function" then
    o.isolation = m[2]
  end
  return pcall(getmetatable(m[1]).raw_call, m[1], pargs, tasks, o)
end

--- Run pargs over tasks and return the results (one ProcResult per task,
-- in task order) and the run. opts are the runners' options plus `mode`:
-- "coroutine" (default), "thread" or "process".
function M.run(pargs, tasks, opts)
  local ok, run = build(pargs, tasks, opts, { mode = true })
  if not ok then validate.argerror("run", run, 2) end
  return run:run_all(), run
end

--- fn(value) for each value of list, as tasks; returns the answers (in
-- list order) and the run. opts: the runners' options, `mode` as for run,
-- and `errors`: "raise" (default: the first failed task's error, naming
-- its key) or "keep" (nil answers where tasks failed).
function M.map(fn, list, opts)
  if type(fn) ~= "function" then
    validate.argerror("map", "luaconcurrent: map needs a function, got " .. type(fn), 2, false, 1)
  end
  if type(list) ~= "table" then
    validate.argerror("map", "luaconcurrent: map needs a list, got " .. type(list), 2, false, 2)
  end
  local errors = opts and type(opts) == "table" and opts.errors
  if errors ~= nil and errors ~= "raise" and errors ~= "keep" then
    validate.argerror("map", ('luaconcurrent: errors must be "raise" or "keep", got %s')
      :format(validate.show(errors)), 2, false, 3)
  end
  local tasks = {}
  for i = 1, #list do tasks[i] = { i, list[i] } end
  -- One value each: args is {value}; only fn's first result is kept.
  local function task(_, args)
    return true, (fn(args[1]))
  end
  local ok, run = build({ task }, tasks, opts, { mode = true, errors = true })
  if not ok then validate.argerror("map", run, 2) end
  local results = run:run_all()
  local answers = {}
  for i = 1, #tasks do
    local res = results[i]
    if res.success then
      answers[i] = res.answer
    elseif errors ~= "keep" then
      error(("luaconcurrent: map: task %s failed: %s"):format(validate.show(res.key),
        tostring(res.error or res.exception)), 2)
    end
  end
  return answers, run
end

--- Sleep for s seconds. Inside a ProcRunAsyncio function task it yields
-- to the loop; elsewhere it blocks, and a signal (Ctrl-C) wakes it early so
-- the interpreter's interrupt hook can run.
function M.sleep(s)
  if type(s) ~= "number" or s ~= s or s < 0 or s == math.huge then
    validate.argerror("sleep", ("luaconcurrent: sleep needs a finite non-negative number of seconds, got %s")
      :format(validate.show(s)), 2, false, 1)
  end
  local deadline = core.now() + s
  if async.task() then
    coroutine.yield(async.SLEEP, deadline)
    return
  end
  local left = s
  while left > 0 do
    core.sleep(left)
    left = deadline - core.now()
  end
end

--- The hosts of a host file (one GNU parallel host string a line, `#`
-- comments), for the hosts option.
function M.hosts_file(path)
  return require("luaconcurrent.remote.hosts").read_file(path)
end

--- Draw a run's timeline from its joblog: SVG, or trace-event JSON when
-- path ends in .json.
function M.timeline(joblog, path)
  if type(joblog) ~= "string" then
    validate.argerror("timeline", "luaconcurrent: timeline needs a joblog path, got " .. type(joblog), 2, false, 1)
  end
  if type(path) ~= "string" then
    validate.argerror("timeline", "luaconcurrent: timeline needs an .svg or .json path, got " .. type(path),
      2, false, 2)
  end
  local timeline = require "luaconcurrent.control.timeline"
  timeline.write(path, timeline.from_joblog(joblog))
end

--- Handle SIGINT, SIGTERM and SIGHUP the way the executable does: the
-- first SIGINT/SIGTERM stops a run (its tasks killed and reaped, run_all
-- raises "luaconcurrent: interrupted by SIGINT", partial results kept) and
-- the interpreter ends by that signal when it closes (exit status 130/143);
-- a second one kills every task group and exits at once; SIGHUP lets
-- running tasks finish and starts no new ones. The module installs nothing
-- until this is called.
function M.handle_signals()
  return core.handle_signals()
end

return M
