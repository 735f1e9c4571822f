-- W1: many tiny tasks. usage: w1.lua CONCURRENCY [NTASKS=5000]
-- 5000 x /bin/true, stdout and stderr captured; every task must succeed.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"

local conc = tonumber(B.args[1]) or 2
local n = tonumber(B.args[2]) or 5000

local tasks = {}
for i = 1, n do tasks[i] = { i, nil } end

local run = lc.ProcRunAsyncio({ "/bin/true" }, tasks, { num_workers = conc })
local res = run:run_all()
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if r.stdout ~= "" or r.stderr ~= "" then return false, "unexpected output" end
  return true
end)
