-- Soak family "crash": worker processes (ProcRunMp, isolation = "process")
-- whose tasks end them: os.exit(3) and os.exit(0), SIGKILL, SIGSEGV and
-- SIGABRT sent to the worker itself, a CPU loop past the timeout, a program
-- started with lc.run_prog or os.execute still running at the timeout, a
-- raised error (the worker survives), io.read() (stdin must be /dev/null).
-- Each task must give exactly one result with the expected exception and
-- message; workers must be replaced (ok tasks keep running, on more worker
-- pids than slots); at the end no worker and no program the tasks started
-- may be left (fds and children back to start; no process carrying the
-- family's marker in its environment or command line).
-- A second run with retries = 1: each task ends its worker on its first
-- attempt and succeeds on its second (attempts = 2).
--
--   build/luaconcurrent scripts/soak/crash.lua
--   SOAK_CRASH_N=1000    tasks (1 in 20 of each kind; 11 in 20 succeed, between the others)
--   SOAK_CRASH_WORKERS=4 worker processes

local lc = require "luaconcurrent"
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/common.lua")

local N = C.env_number("SOAK_CRASH_N", 1000)
local WORKERS = C.env_number("SOAK_CRASH_WORKERS", 4)
local TIMEOUT = 0.3
local MARK = "lcsoak_crash_" .. C.SELF
local R = C.report("crash")

local KINDS = { "exit3", "exit0", "kill", "segv", "abrt", "spin", "run_prog", "execute", "raise" }
-- By i % 20: the nine kinds above at 0, 2, ..., 16; io.read at 18; the
-- odd ones succeed (so ok tasks come between crashes).
local function kind_of(i)
  local r = i % 20
  if r % 2 == 1 then return "ok" end
  return KINDS[r // 2 + 1] or "stdin"
end

-- The task: args = {MARK, kind}. Its _ENV is _G (the worker's globals).
function crash_task(key, args)
  local mark, kind = args[1], args[2]
  local lc = require "luaconcurrent"
  if kind == "exit3" then os.exit(3) end
  if kind == "exit0" then os.exit(0) end
  if kind == "kill" then os.execute("kill -KILL $PPID"); lc.sleep(10) end
  if kind == "segv" then os.execute("kill -SEGV $PPID"); lc.sleep(10) end
  if kind == "abrt" then os.execute("kill -ABRT $PPID"); lc.sleep(10) end
  if kind == "spin" then local x = 0; while true do x = x + 1 end end
  if kind == "run_prog" then lc.run_prog({ "sleep", "30" }, { env = { [mark] = "1" } }) end
  if kind == "execute" then os.execute(mark .. "=1 sleep 30") end
  if kind == "raise" then error("crash task " .. key .. " raised") end
  local f = io.open("/proc/self/stat")
  local pid = f:read("a"):match("^%d+")
  f:close()
  if kind == "stdin" then
    local line = io.read("l")
    if line ~= nil then return false, "io.read() gave " .. tostring(line) end
  end
  return true, pid
end

local function died(how)
  return function(r)
    return not r.success and not r.timeout and r.exception == "RuntimeError"
      and r.error ~= nil and r.error:find("worker process ended without answering: " .. how, 1, true) ~= nil
  end
end
local function timed_out(r)
  return r.timeout and r.exception == "TimeoutError" and not r.success
end
local EXPECT = {
  exit3 = died("exited with status 3"),
  exit0 = died("exited with status 0"),
  kill = died("killed by signal 9"),
  segv = died("killed by signal 11"),
  abrt = died("killed by signal 6"),
  spin = timed_out, run_prog = timed_out, execute = timed_out,
  raise = function(r, key)
    return not r.success and r.exception == "RuntimeError" and r.error ~= nil
      and r.error:find("crash task " .. key .. " raised", 1, true) ~= nil
  end,
  stdin = function(r) return r.success and r.answer ~= nil end,
  ok = function(r) return r.success and r.answer ~= nil end,
}

local seen, counts, bad, bad_examples, results = {}, {}, 0, {}, 0
local pids, npids = {}, 0
local rss = C.sampler(N, math.max(1, N // 100), 0.05)

local function on_result(r)
  results = results + 1
  local key = r.key
  seen[key] = (seen[key] or 0) + 1
  local kind = kind_of(key)
  counts[kind] = (counts[kind] or 0) + 1
  if not EXPECT[kind](r, key) then
    bad = bad + 1
    if #bad_examples < 8 then
      bad_examples[#bad_examples + 1] = string.format("key %d (%s): success=%s timeout=%s exc=%s err=%s answer=%s",
        key, kind, tostring(r.success), tostring(r.timeout), tostring(r.exception),
        tostring(r.error), tostring(r.answer))
    end
  elseif r.success and not pids[r.answer] then
    pids[r.answer] = true
    npids = npids + 1
  end
  rss:tick()
end

collectgarbage()
collectgarbage()
local start = C.resources()
rss:start()
local i = 0
local t0 = require("luaconcurrent.core").now()
local ok, err = pcall(function()
  lc.ProcRunMp({ crash_task, MARK }, function()
    i = i + 1
    if i <= N then return { i, kind_of(i) } end
  end, { isolation = "process", num_workers = WORKERS, timeout = TIMEOUT, keep_results = false,
    on_result = on_result }):run_all()
end)
local wall = require("luaconcurrent.core").now() - t0
rss:finish()
R:check(ok, "run_all raised %s", tostring(err))

local missing, dup = 0, 0
for k = 1, N do
  if not seen[k] then missing = missing + 1 elseif seen[k] > 1 then dup = dup + 1 end
end
local kinds = {}
for k, n in pairs(counts) do kinds[#kinds + 1] = k .. "=" .. n end
table.sort(kinds)
local ended = 0
for _, k in ipairs({ "exit3", "exit0", "kill", "segv", "abrt", "spin", "run_prog", "execute" }) do
  ended = ended + (counts[k] or 0)
end
R:line("tasks %d, results %d in %.1f s; kinds %s", N, results, wall, table.concat(kinds, " "))
R:line("missing %d, duplicated %d, unexpected outcome %d", missing, dup, bad)
for _, e in ipairs(bad_examples) do R:line("  %s", e) end
R:line("workers: %d slots, %d tasks ended theirs, ok tasks ran on %d distinct worker pids", WORKERS, ended, npids)
R:line("RSS (KiB) %s", rss:figures())
R:check(results == N and missing == 0 and dup == 0, "%d results for %d tasks (%d missing, %d duplicated)",
  results, N, missing, dup)
R:check(bad == 0, "%d results with an unexpected outcome", bad)
-- Every task that ended its worker forces a new one; ok tasks after it
-- must have run on the replacements.
R:check(ended < WORKERS or npids > WORKERS, "ok tasks ran on %d worker pids only: workers not replaced?", npids)

---------------------------------------------------------------- retries
-- Each task ends its worker the first time (leaving a file behind) and
-- succeeds the second time; the result says attempts = 2.
local RN = math.max(4, N // 20)
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir " .. dir))
local retried, rbad = 0, 0
local rok, rerr = pcall(function()
  local tasks = {}
  for k = 1, RN do tasks[k] = { k, dir .. "/" .. k } end
  lc.ProcRunMp({ function(key, args)
    local path = args[#args]
    local f = io.open(path, "r")
    if f then f:close(); return true, key end
    f = assert(io.open(path, "w"))
    f:close()
    if key % 2 == 0 then os.exit(7) end
    os.execute("kill -KILL $PPID")
    require("luaconcurrent").sleep(10)
  end }, tasks, { isolation = "process", num_workers = WORKERS, timeout = 5, retries = 1,
    keep_results = false, on_result = function(r)
      retried = retried + 1
      if not (r.success and r.answer == r.key and r.attempts == 2) then
        rbad = rbad + 1
        if rbad <= 3 then
          R:line("  retry key %s: success=%s attempts=%s exc=%s err=%s", tostring(r.key),
            tostring(r.success), tostring(r.attempts), tostring(r.exception), tostring(r.error))
        end
      end
    end }):run_all()
end)
os.execute("rm -rf " .. dir)
R:line("retries = 1: %d tasks, %d results, %d not a success on attempt 2", RN, retried, rbad)
R:check(rok, "retries run raised %s", tostring(rerr))
R:check(retried == RN and rbad == 0, "retries: %d results for %d tasks, %d wrong", retried, RN, rbad)

---------------------------------------------------------------- leftovers
local first, last = C.leftovers(MARK, 2)
R:line("processes carrying %s: %d at the end, %d after up to 2 s", MARK, #first, #last)
for _, p in ipairs(first) do R:line("  %s", p) end
R:check(#first == 0, "%d processes started by tasks were still running after run_all", #first)
R:compare_resources(start)
R:sum("tasks", N)
R:sum("results", results)
R:sum("worker_pids", npids)
R:sum("leftovers", #first)
R:sum("rss", string.format("%d/%d/%d/%d", rss.start_kb, rss.end_kb, rss.min, rss.max))
R:finish()
