-- W2: many sleeping tasks. usage: w2.lua [NTASKS=500] [CONCURRENCY=250] [SECONDS=0.5]
-- 500 x `/bin/sleep 0.5` at concurrency 250 (ideal wall 1.0 s).
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"

local n = tonumber(B.args[1]) or 500
local conc = tonumber(B.args[2]) or 250
local secs = B.args[3] or "0.5"

local tasks = {}
for i = 1, n do tasks[i] = { i, secs } end   -- argv: /bin/sleep 0.5

local run = lc.ProcRunAsyncio({ "/bin/sleep" }, tasks, { num_workers = conc })
local res = run:run_all()
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  return true
end)
