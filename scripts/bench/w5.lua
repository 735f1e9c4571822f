-- W5: many trivial function tasks. usage: w5.lua MODE [NTASKS=100000]
--   MODE "async4"  ProcRunAsyncio, num_workers = 4 (the default)
--        "async0"  ProcRunAsyncio, num_workers = 0 (unlimited)
--        "mp2"     ProcRunMp, num_workers = 2 (thread workers)
--        "proc2"   ProcRunMp, num_workers = 2, isolation = "process"
--        "bigmp"   ProcRunMp, 1 thread worker, one task answering 128 MB
--        "bigproc" the same with isolation = "process"
--        "refco"   plain Lua: one coroutine per task (coroutine.create +
--                  resume), a small result table {key=, success=, answer=} kept
--        "refloop" plain Lua: a loop calling the function, nothing kept
-- The task function is `function(key) return true, key * 2 end`.
-- Only run_all (lc) or the loop (references) is timed, with the core's
-- monotonic clock; building the task list and the runner is not. Prints
-- elapsed=SECONDS and rate=TASKS_PER_S (and build= for the runner's
-- construction, time_run= for lc); exits 1 when a result is wrong.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local core = require "luaconcurrent.core"
local now = core.now

local mode = B.args[1] or "async4"
local n = math.tointeger(tonumber(B.args[2]) or 100000)

local function fn(key) return true, key * 2 end

local function report(elapsed, extra)
  io.write(string.format("elapsed=%.6f\nrate=%.0f\n", elapsed, n / elapsed))
  if extra then io.write(extra) end
end

if mode == "refco" then
  local create, resume = coroutine.create, coroutine.resume
  local result = {}
  local t0 = now()
  for key = 1, n do
    local co = create(fn)
    local ok, success, answer = resume(co, key)
    result[key] = { key = key, success = ok and success, answer = answer }
  end
  local elapsed = now() - t0
  for i = 1, n do
    local r = result[i]
    if r.key ~= i or r.success ~= true or r.answer ~= 2 * i then
      B.fail("reference result %d is wrong", i)
    end
  end
  report(elapsed)
elseif mode == "refloop" then
  local t0 = now()
  for key = 1, n do fn(key) end
  local elapsed = now() - t0
  report(elapsed)
else
  local lc = require "luaconcurrent"
  local class, workers, isolation
  if mode == "async4" then class, workers = lc.ProcRunAsyncio, 4
  elseif mode == "async0" then class, workers = lc.ProcRunAsyncio, 0
  elseif mode == "mp2" then class, workers = lc.ProcRunMp, 2
  elseif mode == "proc2" then class, workers, isolation = lc.ProcRunMp, 2, "process"
  elseif mode == "bigmp" or mode == "bigproc" then
    -- One answer of n MB (default 128): how long until it is in the result.
    n = math.tointeger(tonumber(B.args[2]) or 128)
    local big = function(key) return true, string.rep("x", key * 1048576) end
    local run = lc.ProcRunMp({ big }, { { n } },
      { num_workers = 1, isolation = mode == "bigproc" and "process" or nil })
    local t0 = now()
    local res = run:run_all()
    local elapsed = now() - t0
    -- transfer: from the task's return (its time_end) to the result in hand
    local transfer = core.wallclock() - res[1].time_end
    if not res[1].success or #res[1].answer ~= n * 1048576 then
      B.fail("the big answer did not arrive: %s", tostring(res[1].error))
    end
    io.write(string.format("elapsed=%.6f\ntransfer=%.6f\nMBps=%.0f\n", elapsed, transfer,
      n / transfer))
    os.exit(0)
  else B.fail("unknown mode %q (async4|async0|mp2|proc2|bigmp|bigproc|refco|refloop)", mode) end
  local tasks = {}
  for i = 1, n do tasks[i] = { i } end
  local b0 = now()
  local run = class({ fn }, tasks, { num_workers = workers, isolation = isolation })
  local b1 = now()
  local t0 = now()
  local res = run:run_all()
  local elapsed = now() - t0
  if run.ok ~= true then B.fail("run.ok is %s", tostring(run.ok)) end
  if type(res) ~= "table" or type(res[n]) ~= "table" or res[n].answer ~= 2 * n then
    B.fail("result[%d].answer is not %d", n, 2 * n)
  end
  B.verify(run, res, n, function(r)
    if r.success ~= true then return false, "not successful" end
    if r.answer ~= 2 * r.key then return false, "answer is not 2*key" end
    return true
  end)
  report(elapsed, string.format("build=%.6f\n", b1 - b0))
end
