-- Soak: long and hostile runs, one family at a time, each in a process of
-- its own (scripts/soak/<family>.lua, run by the same executable) so that
-- its RSS, fds and children are its own. Every family checks that each task
-- gives exactly one result of the expected kind and that fds and children
-- come back to where they started; see each file's header for the rest.
--
--   build/luaconcurrent scripts/soak.lua      (or `make soak`)
--
--   mixed    SOAK_N (100 000) exec tasks and SOAK_FN_N (N/10) function tasks,
--            keep_results = false, through both runner classes: exit 1, SIGKILL,
--            1 MB outputs, E2BIG, timeouts; function tasks that raise, spin, sleep
--   utf8     SOAK_UTF8_N (N/20) tasks printing or returning bytes that are not
--            UTF-8: res:to_json() must decode with cjson and give the bytes back
--            through `<field>_b64`
--   crash    SOAK_CRASH_N (N/100) tasks in worker processes (isolation = "process")
--            that os.exit, SIGKILL/SIGSEGV/SIGABRT their worker, spin or leave a
--            program running past the timeout: one result each, workers replaced,
--            nothing left running; retries = 1 after a crash
--   signals  a child runner stopped mid-run by SIGINT, by two SIGTERMs back to back and
--            5 ms apart, for each kind of task: exit 130/143, nothing left running,
--            every result it printed well-formed (SOAK_SIG_N = 400 tasks a run)
--   million  SOAK_M (10 N = 1 000 000) cheap function tasks from an iterator with
--            keep_results = false, number keys then string keys: RSS within
--            10 % (SOAK_RSS_TOL) of its level after the first 5 %
--
--   SOAK_ONLY="mixed utf8 crash signals million"   families to run, in order
--
-- A family's own variable wins over the size derived from SOAK_N. Each
-- family's last line is "SOAK <family> PASSED|FAILED <figures>"; the table
-- at the end collects them. Exit status 0 when every family passed.

local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/soak/common.lua")
local now = require("luaconcurrent.core").now

local N = C.env_number("SOAK_N", 100000)
local SIZES = {
  utf8 = { "SOAK_UTF8_N", math.max(20, N // 20) },
  crash = { "SOAK_CRASH_N", math.max(40, N // 100) },
  million = { "SOAK_M", math.max(1000, 10 * N) },
}
local FAMILIES = {}
for f in (os.getenv("SOAK_ONLY") or "mixed utf8 crash signals million"):gmatch("%S+") do
  FAMILIES[#FAMILIES + 1] = f
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local EXE = C.exe()
local rows, all_ok = {}, true
for _, family in ipairs(FAMILIES) do
  local script = here .. "/soak/" .. family .. ".lua"
  local f = io.open(script, "r")
  if not f then
    io.stderr:write("soak: no family " .. family .. " (" .. script .. ")\n")
    os.exit(2)
  end
  f:close()
  local env = ""
  local size = SIZES[family]
  if size and not os.getenv(size[1]) then env = string.format("env %s=%d ", size[1], size[2]) end
  io.stdout:write(string.format("==== %s\n", family))
  io.stdout:flush()
  local t0 = now()
  local p = io.popen(env .. q(EXE) .. " " .. q(script) .. " 2>&1", "r")
  local summary
  for line in p:lines() do
    io.stdout:write(line, "\n")
    io.stdout:flush()
    local s = line:match("^SOAK " .. family .. " (.*)$")
    if s then summary = s end
  end
  local ok, how, code = p:close()
  local passed = ok and summary ~= nil and summary:match("^PASSED") ~= nil
  if not passed then all_ok = false end
  rows[#rows + 1] = string.format("%-8s %-6s %6.1f s  %s", family, passed and "PASSED" or "FAILED",
    now() - t0, summary and summary:gsub("^%u+ ?", "") or string.format("(no summary; %s %s)", tostring(how), tostring(code)))
end

print("==== summary (RSS in KiB: start/end/min/max)")
for _, row in ipairs(rows) do print(row) end
print("soak " .. (all_ok and "PASSED" or "FAILED"))
os.exit(all_ok and 0 or 1)
