-- The runner that scripts/soak/signals.lua stops with SIGINT or SIGTERM
-- mid-run (not a family by itself). Environment:
--   SOAK_SIG_KIND   exec_asyncio | exec_mp | process | thread | coroutine
--   SOAK_SIG_N      tasks
--   SOAK_SIG_MARK   marker: every process this runner starts inherits it in
--                   its environment; program tasks also carry it as $0
-- Prints one line per result as it arrives, "R <res:to_json()>", each with
-- a single write; after run_all (which a signal makes raise, caught by
-- pcall): "E <error>" and "S results=<n> ok=<k> interrupted=<m> other=<o>
-- unreported=<u> keys=<list>" about run.result (unreported: results of tasks
-- that ran to their end, kept in run.result, never passed to on_result). The executable then ends by the signal (130/143).

local lc = require "luaconcurrent"
local KIND = assert(os.getenv("SOAK_SIG_KIND"), "SOAK_SIG_KIND")
local N = tonumber(os.getenv("SOAK_SIG_N") or "") or 400
local MARK = assert(os.getenv("SOAK_SIG_MARK"), "SOAK_SIG_MARK")

io.stdout:setvbuf("full", 1 << 16)
local function emit(line)
  io.stdout:write(line .. "\n")
  io.stdout:flush()
end

-- Task i: a delay of 10..59 ms; 1 in 10 program tasks ignore SIGTERM and
-- SIGINT (the stop must SIGKILL them after the grace).
local function delay(i) return string.format("%.3f", (10 + (i * 37) % 50) / 1000) end

local SH = 'case "$1" in *t) trap "" TERM INT;; esac; sleep "${1%t}"; printf "\\377done %s" "$1"'
local function prog_arg(i) return delay(i) .. (i % 10 == 0 and "t" or "") end

-- Function tasks: a program through lc.run_prog (it inherits the marker),
-- or for 1 in 3 an lc.sleep; the answer is "done <delay>".
local function fn_task(key, args)
  local lc = require "luaconcurrent"
  local d = args[#args]
  if key % 3 == 0 then
    lc.sleep(tonumber(d))
  else
    local rc = lc.run_prog({ "sleep", d })
    if rc ~= 0 then return false, "sleep gave " .. tostring(rc) end
  end
  return true, "done " .. d
end

local pargs, class
local tasks, opts = {}, { num_workers = 8 }
if KIND == "exec_asyncio" or KIND == "exec_mp" then
  pargs = { "sh", "-c", SH, MARK }
  for i = 1, N do tasks[i] = { i, prog_arg(i) } end
  class = KIND == "exec_mp" and lc.ProcRunMp or lc.ProcRunAsyncio
else
  pargs = { fn_task }
  for i = 1, N do tasks[i] = { i, delay(i) } end
  class = KIND == "coroutine" and lc.ProcRunAsyncio or lc.ProcRunMp
  if KIND == "process" then opts.isolation = "process"; opts.num_workers = 4 end
  if KIND == "thread" then opts.num_workers = 4 end
end
local reported = {}
opts.on_result = function(res)
  reported[res.key] = true
  emit("R " .. res:to_json())
end

local run = class(pargs, tasks, opts)
local ok, err = pcall(run.run_all, run)
emit("E " .. (ok and "none" or tostring(err):match("[^\n]*")))
-- unreported: tasks that ran to their end (not Interrupted) and are in
-- run.result, but were never passed to on_result.
local n, good, interrupted, other, unreported = 0, 0, 0, 0, {}
for i = 1, N do
  local r = run.result and run.result[i]
  if r then
    n = n + 1
    if r.success then good = good + 1
    elseif r.exception == "Interrupted" then interrupted = interrupted + 1
    else other = other + 1 end
    if r.exception ~= "Interrupted" and not reported[r.key] then unreported[#unreported + 1] = r.key end
  end
end
emit(string.format("S results=%d ok=%d interrupted=%d other=%d unreported=%d keys=%s", n, good,
  interrupted, other, #unreported, table.concat(unreported, ",")))
