-- W4: timeouts. usage: w4.lua MODE MARKER [NTASKS=50] [TIMEOUT=0.2] [CONCURRENCY=NTASKS]
--   MODE "sleep":  each task is `/bin/sleep MARKER`
--   MODE "grand":  each task is `/bin/sh -c 'sleep "$0" & sleep "$0"; wait' MARKER`
--                  (a child that starts grandchildren)
-- MARKER is a unique duration such as 10.123456789, so the harness can look
-- for leftover sleeps with pgrep -f.  Every task must end as a timeout.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"

local mode = B.args[1] or "sleep"
local marker = B.args[2] or "10"
local n = tonumber(B.args[3]) or 50
local timeout = tonumber(B.args[4]) or 0.2
local conc = tonumber(B.args[5]) or n

local pargs
if mode == "sleep" then
  pargs = { "/bin/sleep" }
elseif mode == "grand" then
  pargs = { "/bin/sh", "-c", 'sleep "$0" & sleep "$0"; wait' }
else
  B.fail("unknown mode %q (sleep|grand)", mode)
end

local tasks = {}
for i = 1, n do tasks[i] = { i, marker } end

local run = lc.ProcRunAsyncio(pargs, tasks, { num_workers = conc, timeout = timeout })
local res = run:run_all()
B.verify(run, res, n, function(r)
  if r.success ~= false then return false, "succeeded but should have timed out" end
  if r.timeout ~= true then return false, "timeout flag not set" end
  if r.exception ~= "TimeoutError" then return false, "exception is not TimeoutError" end
  return true
end)
