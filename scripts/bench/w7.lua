-- W7: many waiting coroutine tasks. usage: w7.lua [NTASKS=10000] [SECONDS=0.1]
-- ProcRunAsyncio, num_workers = 0 (unlimited): each task calls lc.sleep(SECONDS)
-- and returns true, key. Only run_all is timed (core monotonic clock); prints
-- elapsed=SECONDS and time_run=; exits 1 when a result is wrong.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"
local now = require("luaconcurrent.core").now

local n = math.tointeger(tonumber(B.args[1]) or 10000)
local secs = tonumber(B.args[2]) or 0.1

local sleep = lc.sleep
local function nap(key, args)
  sleep(args[#args])
  return true, key
end

local tasks = {}
for i = 1, n do tasks[i] = { i, secs } end
local run = lc.ProcRunAsyncio({ nap }, tasks, { num_workers = 0 })
local t0 = now()
local res = run:run_all()
local elapsed = now() - t0
if run.ok ~= true then B.fail("run.ok is %s", tostring(run.ok)) end
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if r.answer ~= r.key then return false, "answer is not the key" end
  return true
end)
io.write(string.format("elapsed=%.6f\n", elapsed))
