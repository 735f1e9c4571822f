-- Soak family "mixed": many mixed tasks through both runner classes with
-- keep_results = false and on_result only. Checks that memory stays flat,
-- that fds and children come back to where they started, and that every
-- task gives exactly one result of the expected kind.
--
--   build/luaconcurrent scripts/soak/mixed.lua   (or `make soak`, which runs every family)
--   SOAK_N=100000        exec tasks, split between ProcRunAsyncio and ProcRunMp
--   SOAK_FN_N=N/10       function tasks, split between coroutines and thread workers
--   SOAK_WORKERS=16      concurrency of the exec runs
--   SOAK_SAMPLE=1000     sample RSS every this many results (at most 1 % of the tasks)
--
-- Exec task mix (by task number mod 1000): 0.5 % exit 1, 0.5 % killed by
-- SIGKILL, 0.5 % 1 MB of output, 0.5 % spawn failure (a 200 KB argument:
-- E2BIG), 0.1 % timeout (sleep 10, timeout 0.5 s), the rest /bin/true.
-- Function task mix (mod 100): 1 % raise, 1 % return false, 1 % CPU loop
-- past the deadline, 1 % lc.sleep past the deadline, the rest succeed.
-- RSS is sampled and reported (its level after the first 5 % of the
-- results, and min/max after that). Exit status 0 when every check passed,
-- 1 otherwise.

local lc = require "luaconcurrent"
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/common.lua")
local rss_kb = C.rss_kb

local N = tonumber(os.getenv("SOAK_N") or "") or 100000
local FN_N = tonumber(os.getenv("SOAK_FN_N") or "") or N // 10
local WORKERS = tonumber(os.getenv("SOAK_WORKERS") or "") or 16
local SAMPLE = tonumber(os.getenv("SOAK_SAMPLE") or "") or math.max(1, math.min(1000, (N + FN_N) // 100))
local EXEC_TIMEOUT, FN_TIMEOUT = 0.5, 0.05

---------------------------------------------------------------- the mix
local BIG_ARG = string.rep("e", 200 * 1024)
local EXEC_KINDS = {
  { "exit1", 5, { "false" } },
  { "signal", 5, { "sh", "-c", "kill -KILL $$" } },
  { "output", 5, { "head", "-c", "1000000", "/dev/zero" } },
  { "spawnfail", 5, { "true", BIG_ARG } },
  { "timeout", 1, { "sleep", "10" } },
}
local function exec_kind(i)
  local r, acc = i % 1000, 0
  for _, k in ipairs(EXEC_KINDS) do
    acc = acc + k[2]
    if r < acc then return k[1], k[3] end
  end
  return "ok", { "true" }
end

local function fn_kind(i)
  local r = i % 100
  return r == 0 and "raise" or r == 1 and "false" or r == 2 and "spin"
    or r == 3 and "sleep" or "ok"
end

-- Defined here (its _ENV is _G, which crosses to thread workers by name).
function soak_task(key, args)
  local what = args[#args]
  if what == "raise" then error("soak task " .. key .. " raised") end
  if what == "false" then return false, "soak task " .. key .. " said no" end
  if what == "spin" then
    local x = 0
    while true do x = x + 1 end
  end
  if what == "sleep" then require("luaconcurrent").sleep(10) end
  return true, key
end

local EXPECT = {
  ok = function(r) return r.success and r.returncode == 0 end,
  exit1 = function(r) return not r.success and r.returncode == 1 and r.exception == nil end,
  signal = function(r) return not r.success and r.signal == 9 and r.returncode == -9 end,
  output = function(r) return r.success and #r.stdout == 1000000 end,
  spawnfail = function(r)
    return not r.success and r.exception == "OSError" and r.error:find("E2BIG", 1, true) ~= nil
  end,
  timeout = function(r) return r.timeout and r.exception == "TimeoutError" end,
  fn_ok = function(r, key) return r.success and r.answer == key end,
  fn_raise = function(r) return not r.success and r.exception == "RuntimeError" end,
  fn_false = function(r) return not r.success and r.exception == nil and r.error ~= nil end,
  fn_spin = function(r) return r.timeout and r.exception == "TimeoutError" end,
  fn_sleep = function(r) return r.timeout and r.exception == "TimeoutError" end,
}

---------------------------------------------------------------- bookkeeping
local TOTAL = N + FN_N
local seen = {}
for i = 1, TOTAL do seen[i] = 0 end   -- allocated before the first RSS sample
local kind_of = {}                    -- key -> kind, filled lazily by the iterators
local counts, bad, bad_examples = {}, 0, {}
local results = 0
local R = C.report("mixed")
collectgarbage()
collectgarbage()

local start = C.resources()
local rss = C.sampler(TOTAL, SAMPLE, 0.05)
rss:start()

local function on_result(r)
  results = results + 1
  local key = r.key
  if type(key) ~= "number" or seen[key] == nil then
    bad = bad + 1
  else
    seen[key] = seen[key] + 1
    local kind = kind_of[key]
    kind_of[key] = nil
    counts[kind] = (counts[kind] or 0) + 1
    if not EXPECT[kind](r, key) then
      bad = bad + 1
      if #bad_examples < 5 then
        bad_examples[#bad_examples + 1] = string.format("key %d (%s): success=%s rc=%s exc=%s err=%s",
          key, kind, tostring(r.success), tostring(r.returncode), tostring(r.exception),
          tostring(r.error))
      end
    end
  end
  rss:tick()
end

local function exec_tasks(first, last) return C.tasks(first, last, exec_kind, kind_of) end
local function fn_tasks(first, last)
  return C.tasks(first, last, function(i)
    local kind = fn_kind(i)
    return "fn_" .. kind, kind
  end, kind_of)
end

local clock0 = os.clock()
local runs = {}
local function timed(name, run)
  local t = require("luaconcurrent.core").now()
  run:run_all()
  runs[#runs + 1] = string.format("%-34s %7.1f s, RSS after %d KiB", name,
    require("luaconcurrent.core").now() - t, rss_kb())
end

local half = N // 2
io.stderr:write(string.format("soak: %d exec tasks, %d function tasks, %d workers\n", N, FN_N, WORKERS))
timed(string.format("ProcRunAsyncio exec (%d)", half), lc.ProcRunAsyncio({ "/usr/bin/env" }, exec_tasks(1, half),
  { num_workers = WORKERS, timeout = EXEC_TIMEOUT, kill_grace = 0.1, keep_results = false,
    on_result = on_result }))
timed(string.format("ProcRunMp exec (%d)", N - half), lc.ProcRunMp({ "/usr/bin/env" }, exec_tasks(half + 1, N),
  { num_workers = WORKERS, timeout = EXEC_TIMEOUT, kill_grace = 0.1, keep_results = false,
    on_result = on_result }))
local fhalf = N + FN_N // 2
timed(string.format("ProcRunAsyncio coroutines (%d)", fhalf - N), lc.ProcRunAsyncio({ soak_task },
  fn_tasks(N + 1, fhalf), { num_workers = 64, timeout = FN_TIMEOUT, keep_results = false,
    on_result = on_result }))
timed(string.format("ProcRunMp thread workers (%d)", TOTAL - fhalf), lc.ProcRunMp({ soak_task },
  fn_tasks(fhalf + 1, TOTAL), { num_workers = 2, timeout = FN_TIMEOUT, keep_results = false,
    on_result = on_result }))

collectgarbage()
collectgarbage()
rss:finish()

local missing, dup = 0, 0
for i = 1, TOTAL do
  if seen[i] == 0 then missing = missing + 1 elseif seen[i] > 1 then dup = dup + 1 end
end

R:line("tasks           %d (exec %d, function %d), results %d", TOTAL, N, FN_N, results)
for _, line in ipairs(runs) do R:line("  %s", line) end
local kinds = {}
for k, n in pairs(counts) do kinds[#kinds + 1] = k .. "=" .. n end
table.sort(kinds)
R:line("kinds           %s", table.concat(kinds, " "))
R:line("missing         %d, duplicated %d, unexpected outcome %d", missing, dup, bad)
for _, e in ipairs(bad_examples) do R:line("  %s", e) end
R:line("RSS (KiB)       %s, every %d results", rss:figures(), SAMPLE)
local _, how = rss:flat()
R:line("RSS level       %s", how:gsub("; limit.*%)$", ")"))
R:line("RSS trace       results:KiB %s", table.concat(rss.trace, " "))
R:check(results == TOTAL, "%d results for %d tasks", results, TOTAL)
R:check(missing == 0 and dup == 0, "%d tasks without a result, %d with more than one", missing, dup)
R:check(bad == 0, "%d results of an unexpected kind", bad)
-- Reported, not judged: 1 MB outputs and four runner kinds make this
-- family's RSS move by more than 10 % between samples without any leak
-- (the million family judges flatness on a steady load).
R:compare_resources(start)
R:line("CPU (this process) %.1f s", os.clock() - clock0)
R:sum("tasks", TOTAL)
R:sum("results", results)
R:sum("rss", string.format("%d/%d/%d/%d", rss.start_kb, rss.end_kb, rss.min, rss.max))
R:finish()
