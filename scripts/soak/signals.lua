-- Soak family "signals": a child runner (the executable running
-- scripts/soak/signal_child.lua) is stopped mid-run, by one SIGINT, by two
-- SIGTERMs sent back to back (one shell, two `kill`s: well under a
-- millisecond apart, often merged into one by the kernel), and by two
-- SIGTERMs 5 ms apart (the second lands while the run is being stopped),
-- for each kind of task: programs under ProcRunAsyncio
-- and ProcRunMp (1 in 10 ignoring SIGTERM and SIGINT), worker processes,
-- thread workers and coroutines (these through lc.run_prog or lc.sleep).
-- Checks, per round:
--   - the runner ends by the signal: 130 for SIGINT, 143 for SIGTERM (killed
--     by it, or exit status 128 + signum);
--   - no process it started is left: none whose environment or command line
--     carries the round's marker (at once, and after a grace of 1 s);
--   - every result it printed before it ended ("R <to_json>" lines) decodes,
--     is for a distinct task, and is either that task's success (output or
--     answer exact) or Interrupted;
--   - after one SIGINT the script's pcall of run_all got "luaconcurrent:
--     interrupted by SIGINT" and run.result has one result per task ("S"
--     line); after two SIGTERMs that line may be missing (the second signal
--     exits at once), but whatever was printed must still be well-formed;
--   - when the "S" line is there: every task in run.result that ran to its
--     end (not Interrupted) was also passed to on_result (with keep_results
--     = false such a result would be lost without a trace).
--
--   build/luaconcurrent scripts/soak/signals.lua
--   SOAK_SIG_N=400       tasks per child run (10-59 ms each, 8 at once)
--   SOAK_SIG_ROUNDS=1    repetitions of the rounds (three per kind)
--   SOAK_SIG_KINDS="exec_asyncio exec_mp process thread coroutine"

local cjson = require "cjson"
local lc = require "luaconcurrent"
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/common.lua")

local N = C.env_number("SOAK_SIG_N", 400)
local ROUNDS = C.env_number("SOAK_SIG_ROUNDS", 1)
local EXE = C.exe()
local CHILD = here .. "/signal_child.lua"
local R = C.report("signals")
local KINDS = {}
for k in (os.getenv("SOAK_SIG_KINDS") or "exec_asyncio exec_mp process thread coroutine"):gmatch("%S+") do
  KINDS[#KINDS + 1] = k
end
local SIGNUM = { INT = 2, TERM = 15 }

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function lines_of(path)
  local t = {}
  local f = io.open(path, "rb")
  if not f then return t end
  for line in f:lines() do t[#t + 1] = line end
  f:close()
  return t
end

local function count_results(path)
  local s = C.read(path) or ""
  local n = 0
  for _ in s:gmatch("\nR ") do n = n + 1 end
  return n + (s:sub(1, 2) == "R " and 1 or 0)
end

local function delay(i) return string.format("%.3f", (10 + (i * 37) % 50) / 1000) end

-- Is r (decoded JSON) a well-formed result for its task of this kind?
local function well_formed(kind, r)
  local key = math.tointeger(r.key)   -- cjson decodes numbers as floats
  if not key or key < 1 or key > N then return false, "bad key" end
  r.key = key
  if r.success == false and r.exception == "Interrupted" then return true, "interrupted" end
  if r.success ~= true then
    return false, string.format("success=%s exception=%s error=%s", tostring(r.success),
      tostring(r.exception), tostring(r.error))
  end
  local d = delay(key)
  if kind:match("^exec") then
    local arg = d .. (key % 10 == 0 and "t" or "")
    local out = r.stdout_b64 and C.unbase64(r.stdout_b64)
    if out ~= "\255done " .. arg then return false, "stdout " .. tostring(out) end
    if r.returncode ~= 0 then return false, "returncode " .. tostring(r.returncode) end
  elseif r.answer ~= "done " .. d then
    return false, "answer " .. tostring(r.answer)
  end
  return true, "ok"
end

local tmp = os.tmpname()
local rounds, failed_rounds = 0, 0
local figures = {}

-- twice: nil (one signal), "now" (two kills from one shell, back to back:
-- the kernel may merge them into one), or a gap in seconds between the two.
local function round(kind, sig, twice, n_round)
  rounds = rounds + 1
  local label = string.format("%s %s%s", kind, sig,
    twice == "now" and "x2" or twice and string.format("x2/%gms", twice * 1000) or "")
  local mark = string.format("lcsoak_sig_%s_%d_%d", C.SELF, n_round, rounds)
  local out, err = tmp .. ".out", tmp .. ".err"
  os.remove(out)
  local cmd = string.format("echo $$; exec env SOAK_SIG_KIND=%s SOAK_SIG_N=%d SOAK_SIG_MARK=%s %s %s >%s 2>%s",
    kind, N, mark, q(EXE), q(CHILD), q(out), q(err))
  local p = io.popen(cmd, "r")
  local pid = tonumber(p:read("l"))
  -- mid-run: once a fifth of the results are out (at most 20 s)
  local t0 = require("luaconcurrent.core").now()
  local got = 0
  while pid and require("luaconcurrent.core").now() - t0 < 20 do
    got = count_results(out)
    if got >= N // 5 then break end
    lc.sleep(0.01)
  end
  local sent_at = got
  if pid then
    if not twice then
      os.execute(string.format("kill -%s %d", sig, pid))
    elseif twice == "now" then
      os.execute(string.format("kill -%s %d; kill -%s %d", sig, pid, sig, pid))
    else
      os.execute(string.format("kill -%s %d; sleep %g; kill -%s %d", sig, pid, twice, sig, pid))
    end
  end
  local _, how, code = p:close()
  local status = how == "signal" and 128 + code or code
  local want = 128 + SIGNUM[sig]
  local first, last = C.leftovers(mark, 1)

  local ok, nbad = true, 0
  local function bad(fmt, ...)
    ok, nbad = false, nbad + 1
    if nbad <= 5 then R:check(false, label .. ": " .. fmt, ...) end
  end
  if not pid then bad("no pid from the shell") end
  if status ~= want then bad("ended with %s %s (status %s), want %d", tostring(how), tostring(code), tostring(status), want) end
  if #last > 0 then bad("%d processes left after 1 s: %s", #last, table.concat(last, "; ")) end

  local results, seen, interrupted, good = 0, {}, 0, 0
  local e_line, s_line
  for _, line in ipairs(lines_of(out)) do
    local tag, rest = line:match("^(%u) (.*)$")
    if tag == "R" then
      results = results + 1
      local dok, r = pcall(cjson.decode, rest)
      if not dok or type(r) ~= "table" then
        bad("a result line does not decode (%s): %s", tostring(r), rest:sub(1, 120))
      else
        local wf, why = well_formed(kind, r)
        if not wf then
          bad("key %s: %s", tostring(r.key), why)
        elseif seen[r.key] then
          bad("key %d printed twice", r.key)
        else
          seen[r.key] = true
          if why == "interrupted" then interrupted = interrupted + 1 else good = good + 1 end
        end
      end
    elseif tag == "E" then e_line = rest
    elseif tag == "S" then s_line = rest
    else
      bad("a line that is not a whole record: %s", line:sub(1, 120))
    end
  end
  local sname = "SIG" .. sig
  if not twice then
    if not (e_line and e_line:find("luaconcurrent: interrupted by " .. sname, 1, true)) then
      bad("run_all's error: %s", tostring(e_line))
    end
    local n = s_line and tonumber(s_line:match("results=(%d+)"))
    if n ~= N then bad("run.result after the signal: %s (want results=%d)", tostring(s_line), N) end
  elseif e_line and not e_line:find("interrupted by " .. sname, 1, true) then
    bad("run_all's error: %s", e_line)
  end
  local unreported = s_line and tonumber(s_line:match("unreported=(%d+)"))
  if unreported and unreported > 0 then
    bad("%d tasks that ran to their end are in run.result but were never passed to on_result (keys %s)",
      unreported, s_line:match("keys=(%S*)"))
  end
  -- A run the signal reached has Interrupted results; thread workers report
  -- every task they were handed ahead, so all N printed is no sign of lateness.
  if good >= N then bad("the signal came after the run ended (%d results, all ok)", good) end
  if nbad > 5 then R:line("  %s: %d failures in all", label, nbad) end
  if not ok then
    failed_rounds = failed_rounds + 1
    local e = C.read(err) or ""
    if e ~= "" then R:line("  %s: stderr: %s", label, e:sub(1, 600):gsub("\n", " | ")) end
  end
  R:line("%-20s signal after %3d results; exit %s; printed %3d ok + %3d interrupted%s; %s; left %d at once, %d after 1 s",
    label, sent_at, tostring(status), good, interrupted,
    s_line and (", then " .. s_line) or " (no summary)", e_line and "E" or "no E", #first, #last)
  figures[#figures + 1] = string.format("%s:%s/%d+%d", label:gsub(" ", "_"), tostring(status), good, interrupted)
  os.remove(out)
  os.remove(err)
end

collectgarbage()
collectgarbage()
local start = C.resources()
local rss0 = C.rss_kb()
for n = 1, ROUNDS do
  for _, kind in ipairs(KINDS) do
    round(kind, "INT", nil, n)
    round(kind, "TERM", "now", n)
    round(kind, "TERM", 0.005, n)
  end
end
os.remove(tmp)
R:line("rounds %d, failed %d; RSS (KiB) start %d, end %d", rounds, failed_rounds, rss0, C.rss_kb())
R:compare_resources(start)
R:sum("rounds", rounds)
R:sum("failed", failed_rounds)
R:sum("rss", string.format("%d/%d", rss0, C.rss_kb()))
R:finish()
