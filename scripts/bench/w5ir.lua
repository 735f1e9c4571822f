-- W5's tasks for an instruction count (scripts/bench/instructions.sh):
-- usage: w5ir.lua MODE N
--   MODE "null"       build the task list only
--        "async0"     ... then ProcRunAsyncio, num_workers = 0, run_all
--        "async0build" ... then build that runner, without run_all
--        "mp2"        ... then ProcRunMp, 2 thread workers, run_all
--        "mp2build"   ... then build that runner, without run_all
--        "proc2"      ... then ProcRunMp, 2 worker processes, run_all
--        "refco"      ... then W5's reference: a coroutine per task
-- Nothing is timed: callgrind counts the instructions.
local lc = require "luaconcurrent"
local mode, n = arg[1], math.tointeger(tonumber(arg[2]))
local function fn(key) return true, key * 2 end
local tasks = {}
for i = 1, n do tasks[i] = { i } end
if mode == "null" then return end
if mode == "refco" then
  local result = {}
  for key = 1, n do
    local co = coroutine.create(fn)
    local ok, s, a = coroutine.resume(co, key)
    result[key] = { key = key, success = ok and s, answer = a }
  end
  return
end
local kind = mode:gsub("build$", "")
local class, workers, isolation = lc.ProcRunAsyncio, 0, nil
if kind == "mp2" then class, workers = lc.ProcRunMp, 2 end
if kind == "proc2" then class, workers, isolation = lc.ProcRunMp, 2, "process" end
local run = class({ fn }, tasks, { num_workers = workers, isolation = isolation })
if kind == mode then run:run_all() end
