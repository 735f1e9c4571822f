--- run_prog: run one program to completion, feeding input, capturing output.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"
local async = require "luaconcurrent.async"

local OPTIONS = {
  input = true, env = true, cwd = true, timeout = true, test = true, verb = true,
  kill_grace = true, max_capture = true,
}

local function check_pargs(pargs)
  validate.pargs(pargs)
  if type(pargs[1]) == "function" then
    validate.fail("run_prog runs programs; pargs[1] must be a string, got function")
  end
end

--- pyconcurrent's shape: returns retc, stdout, stderr, and as a fourth
-- value the full ProcResult. retc is the exit status, -signum when killed
-- by a signal (a timeout too), -1 when the program could not start
-- (stderr then holds the reason).
local function run_prog(pargs, opts)
  local ok, err = pcall(check_pargs, pargs)
  if not ok then validate.argerror("run_prog", err, 2, false, 1) end
  ok, err = pcall(validate.options, opts, OPTIONS)
  if not ok then validate.argerror("run_prog", err, 2, false, 2) end
  opts = err
  local argv = require("luaconcurrent.argv").words(pargs)
  if opts.test then
    if opts.verb then print(table.concat(argv, " ")) end
    local res = ProcResult.new(nil, nil)
    res.success, res.returncode = true, 0
    return 0, "", "", res
  end

  local envblock = opts.env and core.envblock(opts.env) or nil
  local function spawn(loop)
    return loop:spawn(argv, envblock, opts.cwd, opts.input, opts.timeout or 0,
      opts.kill_grace,                 -- nil: the engine's default
      false, opts.max_capture)
  end
  local function done(rec)
    local res = ProcResult.from_record(nil, nil, rec)
    return res.returncode, res.stdout, res.stderr, res
  end
  local function spawn_failed(message, errname)
    return -1, "", message, ProcResult.spawn_failure(nil, nil, message, errname, core.wallclock())
  end

  -- Inside a ProcRunAsyncio function task: run on its loop, yield until done.
  local task = async.task()
  if task then
    local id, message, errname = spawn(task.loop)
    if not id then return spawn_failed(message, errname) end
    return done(coroutine.yield(async.WAIT, id))
  end

  local loop <close> = core.new_loop()
  local id, message, errname = spawn(loop)
  if not id then return spawn_failed(message, errname) end
  -- In a thread worker, wake at the task's deadline (worker_check then
  -- raises the cancel, and closing the loop kills the process) and now and
  -- then to notice the run being stopped.
  local left = core.worker_check()
  local records = loop:poll(left and math.min(left, 0.1))
  while #records == 0 do
    left = core.worker_check()
    records = loop:poll(left and math.min(left, 0.1))
  end
  return done(records[1])
end

return run_prog
