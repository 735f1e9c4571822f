--- luaconcurrent: run many tasks concurrently, one result per task.
--
--   local lc = require "luaconcurrent"
--   local run = lc.ProcRunAsyncio({"/usr/bin/sleep"}, {{1, 1}, {2, 2}}, {num_workers = 4})
--   run:run_all()
--   run:print_results()

local core = require "luaconcurrent.core"
local runner = require "luaconcurrent.runner"
local validate = require "luaconcurrent.validate"
local async = require "luaconcurrent.async"

local M = {
  VERSION = "0.1.0",
  ProcRunAsyncio = runner.ProcRunAsyncio,
  ProcRunMp = runner.ProcRunMp,
  ProcResult = require "luaconcurrent.result",
  run_prog = require "luaconcurrent.run_prog",
}

--- Sleep for s seconds. Inside a ProcRunAsyncio function task it yields
-- to the loop; elsewhere it blocks, and a signal (Ctrl-C) wakes it early so
-- the interpreter's interrupt hook can run.
function M.sleep(s)
  if type(s) ~= "number" or s ~= s or s < 0 or s == math.huge then
    validate.fail("sleep needs a finite non-negative number of seconds, got %s", validate.show(s))
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

--- Draw a run's timeline (SVG) from its joblog.
function M.timeline(joblog, svg)
  if type(joblog) ~= "string" or type(svg) ~= "string" then
    validate.fail("timeline needs a joblog path and an SVG path (strings)")
  end
  local timeline = require "luaconcurrent.control.timeline"
  timeline.write(svg, timeline.from_joblog(joblog))
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
