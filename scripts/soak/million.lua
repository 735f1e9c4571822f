-- Soak family "million": an iterator run of a million cheap function tasks
-- (ProcRunAsyncio coroutines) with keep_results = false and on_result
-- counting, twice: with number keys, then with string keys (the duplicate
-- key check must cover only unfinished tasks, so it must not grow memory).
--
--   build/luaconcurrent scripts/soak/million.lua
--   SOAK_M=1000000       tasks per run
--   SOAK_RSS_TOL=0.10    allowed RSS drift after the warm-up (the first 5 %)
--
-- Task mix (by task number): 1 in 100 returns false with a message, 1 in
-- 1000 raises, the rest return true and twice their number. Each run has a
-- 30 s timeout (never reached), so every task arms a timer and a hook.
-- RSS is sampled every M/200 results; every sample after the warm-up must
-- lie within 10 % of the level at its end. That every task gave exactly one
-- result is checked without a table per task (which would itself be the
-- memory under test): the count, the sum and the sum of squares of the
-- task numbers seen must equal those of 1..M. Also checked: a duplicate
-- key among unfinished tasks is still refused, and a key may come back
-- once its task is done.

local lc = require "luaconcurrent"
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/common.lua")

local M = C.env_number("SOAK_M", 1000000)
local TOL = C.env_number("SOAK_RSS_TOL", 0.10)
local R = C.report("million")

local function task(key, args)
  local i = args[#args]
  if i % 100 == 0 then return false, "no" end
  if i % 1000 == 1 then error("task raised") end
  return true, 2 * i
end

local function one_run(label, tag, key_of)
  collectgarbage()
  collectgarbage()
  local start = C.resources()
  local rss = C.sampler(M, math.max(1, M // 200), 0.05, TOL)
  local i = 0
  local n, sum, sumsq, bad, bad_example = 0, 0, 0, 0, nil
  local kinds = { ok = 0, no = 0, raised = 0 }
  local function next_task()
    i = i + 1
    if i <= M then return { key_of(i), i } end
  end
  local function on_result(r)
    n = n + 1
    local k = r.key
    local j = type(k) == "number" and k or tonumber(tostring(k):match("^k(%d+)$"))
    if not j then
      bad = bad + 1
      bad_example = bad_example or ("key " .. tostring(k))
    else
      sum = sum + j
      sumsq = sumsq + j * j
      local good
      if j % 100 == 0 then
        kinds.no = kinds.no + 1
        good = not r.success and r.error == "no" and r.exception == nil
      elseif j % 1000 == 1 then
        kinds.raised = kinds.raised + 1
        good = not r.success and r.exception == "RuntimeError"
      else
        kinds.ok = kinds.ok + 1
        good = r.success and r.answer == 2 * j
      end
      if not good then
        bad = bad + 1
        bad_example = bad_example or string.format("key %s: success=%s answer=%s exc=%s err=%s",
          tostring(k), tostring(r.success), tostring(r.answer), tostring(r.exception), tostring(r.error))
      end
    end
    rss:tick()
  end
  rss:start()
  local t0, c0 = require("luaconcurrent.core").now(), os.clock()
  local run = lc.ProcRunAsyncio({ task }, next_task, { num_workers = 64, timeout = 30,
    keep_results = false, on_result = on_result })
  local ok, err = pcall(run.run_all, run)
  local wall = require("luaconcurrent.core").now() - t0
  rss:finish()
  R:check(ok, "%s: run_all raised %s", label, tostring(err))
  local want_sum, want_sumsq = M * (M + 1) // 2, M * (M + 1) * (2 * M + 1) // 6
  R:line("%s: %d tasks, %d results (ok %d, false %d, raised %d) in %.1f s (%.0f/s, CPU %.1f s)",
    label, M, n, kinds.ok, kinds.no, kinds.raised, wall, n / wall, os.clock() - c0)
  R:check(n == M and sum == want_sum and sumsq == want_sumsq,
    "%s: results are not one per task (count %d, sum %d, sum of squares %d; want %d, %d, %d)",
    label, n, sum, sumsq, M, want_sum, want_sumsq)
  R:check(bad == 0, "%s: %d results of an unexpected kind (first: %s)", label, bad, tostring(bad_example))
  R:check(run.result == nil or #run.result == 0, "%s: keep_results = false kept %d results",
    label, run.result and #run.result or 0)
  R:line("%s: RSS (KiB) %s", label, rss:figures())
  local flat, how = rss:flat()
  R:line("%s: RSS flat: %s", label, how)
  R:line("%s: RSS trace results:KiB %s", label, table.concat(rss.trace, " "))
  R:check(flat, "%s: RSS not flat: %s", label, how)
  R:compare_resources(start, tag)
  R:sum(tag .. "_results", string.format("%d/%d", n, M))
  R:sum(tag .. "_rss", string.format("%d/%d/%d/%d", rss.start_kb, rss.end_kb, rss.min, rss.max))
  R:sum(tag .. "_drift", string.format("%+.1f%%..%+.1f%%", 100 * (rss.after_min - rss.base) / rss.base,
    100 * (rss.after_max - rss.base) / rss.base))
end

one_run("number keys", "num", function(i) return i end)
one_run("string keys", "str", function(i) return "k" .. i end)

-- The streaming duplicate check: a key still running is refused; a key
-- whose task has finished may come back.
do
  local keys = { "a", "b", "a" }             -- "a" twice while the first sleeps
  local k = 0
  local run = lc.ProcRunAsyncio({ function() require("luaconcurrent").sleep(0.2) end }, function()
    k = k + 1
    if keys[k] then return { keys[k], k } end
  end, { num_workers = 4, keep_results = false })
  local ok, err = pcall(run.run_all, run)
  R:line("duplicate of an unfinished key: %s", ok and "accepted" or tostring(err):match("[^\n]*"))
  R:check(not ok and tostring(err):find("duplicate task key", 1, true) ~= nil,
    "a duplicate of an unfinished key was not refused (%s)", tostring(err))

  local seq, got = { "a", "a", "a" }, 0     -- one at a time: each "a" has finished
  k = 0
  run = lc.ProcRunAsyncio({ function() end }, function()
    k = k + 1
    if seq[k] then return { seq[k], k } end
  end, { num_workers = 1, keep_results = false, on_result = function() got = got + 1 end })
  ok, err = pcall(run.run_all, run)
  R:line("a key again after its task finished: %s, %d results", ok and "accepted" or tostring(err), got)
  R:check(ok and got == 3, "a finished key could not come back (%s, %d results)", tostring(err), got)
end

R:finish()
