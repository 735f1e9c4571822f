-- luaconcurrent benchmark driver: luaconcurrent vs `xargs -P` vs GNU parallel.
-- Run by scripts/bench.sh (`make bench`) under lua5.4 with the checkout's
-- modules; the shell is used only to launch the tools, each under coreutils
-- `timeout` (a guard) and GNU `/usr/bin/time` (CPU and peak RSS).
--
--   W1  5000 x /bin/true, concurrency 2 and 8            -> tasks/s
--   W2  500 x `sleep 0.5`, concurrency 250                -> wall (ideal 1.0 s)
--   W3  4 x 200 MB to stdout, concurrency 4, all captured -> MB/s, peak RSS
--   W4  50 x `sleep 10`, timeout 0.2 s, concurrency 50    -> wall, leftover sleeps
--       (W4a: the sleep itself; W4b: sh starting two grandchild sleeps)
--   W5  100 000 trivial function tasks, results kept       -> tasks/s
--       (ProcRunAsyncio num_workers 4 and 0, ProcRunMp 2 workers, beside two
--       plain-Lua references under the same executable: a coroutine per task
--       keeping a small result table, and a bare loop keeping nothing)
--   W6  16 CPU-bound function tasks (~0.25 s each, calibrated at start),
--       ProcRunMp 1 vs 2 workers                         -> speed-up
--   W7  10 000 function tasks each lc.sleep(0.1), ProcRunAsyncio, unlimited -> wall
--   W8  the command line (luaconcurrent --parallel) on W1's tasks, also
--       with -k and --joblog, against xargs -P and GNU parallel
--   W9  remote: N x /bin/true on four ssh hosts (127.0.0.2-5, a private
--       sshd each, spec/fixtures/sshd_start.sh), 2 slots each:
--       luaconcurrent engine mode (2000 tasks) and the plain-Lua worker
--       (500), the same tasks locally with 8 slots (the baseline: the
--       difference is the channels' own overhead), and GNU parallel -S on
--       the same four hosts with and without -M (--controlmaster) on 80
--       tasks; per-task times, tasks/s and ratios. Skipped, saying why,
--       when sshd cannot start (needs root and openssh-server).
--   W10 many hosts: 128 x echo on 32 loopback hosts (127.0.0.10-41, two
--       private sshds of 16 listen addresses each), 1 slot each, by
--       scripts/bench/w10.lua: time to the first result, to all hosts up
--       (a second run whose tasks sleep 1 s first), the whole run and the
--       runner's peak RSS, against GNU parallel with the same 32 -S logins
--       (first output, whole run; at most 2 runs). Skipped like W9.
--   W11 --pipe: seq 110000000 (~1 GB) through wc -l with --pipepart -a FILE
--       and cat FILE | --pipe, -j2 --block 16M, against GNU parallel and the
--       limits (two dd halves into wc -l; cat FILE | wc -l)
--
-- Every workload runs each tool in turn, interleaved (lc, xargs, parallel,
-- lc, xargs, parallel, ...), BENCH_RUNS times (default 5). Tables: median
-- wall, fastest..slowest run, the rate from the median, median CPU
-- (user+sys of the tool and its children), peak RSS (the largest single
-- process of the tree), runs verified; then each target with PASS/FAIL.
-- One statistic throughout: the median of n values is the middle one, or
-- the mean of the two middle ones when n is even.
-- The luaconcurrent side is scripts/bench/wN.lua, run by build/luaconcurrent.
-- W5-W7 have no external peer: their rows are luaconcurrent configurations
-- (and W5's plain-Lua references), each in its own process; their scripts
-- time only run_all (or the reference loop) with the core's monotonic clock
-- and print elapsed=, shown beside the process's own wall time.
--
-- Environment:
--   BENCH_RUNS=5            repetitions per workload
--   BENCH_ONLY="W1 W2 W3 W4 W5 W6 W7 W8 W9 W10 W11" workloads to run
--   BENCH_STRICT=1          exit 1 when a target fails (0: report only)
--   LC_BIN=build/luaconcurrent
--   BENCH_W3DIR             where xargs/parallel put W3's captured output
--                           (default /dev/shm when writable, else the temp dir)
-- and from scripts/bench.sh: BENCH_ROOT (the checkout), BENCH_WORK (a
-- temporary directory it removes afterwards).

local core = require "luaconcurrent.core"
local now = core.now

local ROOT = assert(os.getenv("BENCH_ROOT"), "run me through scripts/bench.sh")
local BDIR = ROOT .. "/scripts/bench"
local RUNS = os.getenv("BENCH_RUNS") or "5"
local ONLY = " " .. (os.getenv("BENCH_ONLY") or "W1 W2 W3 W4 W5 W6 W7 W8 W9 W10 W11") .. " "
local STRICT = (os.getenv("BENCH_STRICT") or "1") == "1"
local LC = os.getenv("LC_BIN") or (ROOT .. "/build/luaconcurrent")
local PAR = "parallel --will-cite"

if not RUNS:match("^%d+$") or tonumber(RUNS) == 0 then
  io.stderr:write("bench: BENCH_RUNS must be a positive integer\n")
  os.exit(2)
end
RUNS = tonumber(RUNS)

-- ---------------------------------------------------------------- shell

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function words(list)
  local out = {}
  for i, w in ipairs(list) do out[i] = q(w) end
  return table.concat(out, " ")
end

local function sh(cmd)                  -- stdout of a shell command, trimmed
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return (s:gsub("%s+$", ""))
end

local function ok(cmd) return os.execute(cmd) == true end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s, mode)
  local f = assert(io.open(path, mode or "wb"))
  f:write(s)
  f:close()
end

local function size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local function out(fmt, ...)
  io.stdout:write(string.format(fmt, ...))
  io.stdout:flush()
end

-- ---------------------------------------------------------------- statistics

local function sorted(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  return t
end

-- The one median of this bench.
local function median(xs)
  local n = #xs
  if n == 0 then return nil end
  local t = sorted(xs)
  if n % 2 == 1 then return t[(n + 1) // 2] end
  return (t[n // 2] + t[n // 2 + 1]) / 2
end

local function minmax(xs)
  local t = sorted(xs)
  return t[1], t[#t]
end

local function max(xs)
  local m
  for _, x in ipairs(xs) do if m == nil or x > m then m = x end end
  return m
end

-- ---------------------------------------------------------------- set-up

for _, t in ipairs({ "/usr/bin/time", "xargs", "parallel", "timeout" }) do
  if not ok("command -v " .. q(t) .. " >/dev/null 2>&1") then
    io.stderr:write("bench: missing tool: ", t, " (run make bench)\n")
    os.exit(2)
  end
end

local WORK = assert(os.getenv("BENCH_WORK"), "run me through scripts/bench.sh")
local W3DIR = assert(os.getenv("BENCH_W3DIR"), "run me through scripts/bench.sh")
ok("mkdir -p " .. q(W3DIR))

local MARKERS = {}                      -- W4's unique sleep durations
local marked                            -- defined with W4

-- (bench.sh removes WORK and W3DIR)
local function cleanup()
  for _, m in ipairs(MARKERS) do
    for _, pid in ipairs(marked(m)) do ok("kill -KILL " .. pid .. " 2>/dev/null") end
  end
end

local HAVE_LC = ok("[ -x " .. q(LC) .. " ]")
if not HAVE_LC then
  io.stderr:write("bench: ", LC, " not found or not executable; luaconcurrent rows will be n/a\n")
end
-- Where the binary came from, then a private copy of it: every run uses the
-- same binary even if the checkout is rebuilt while the bench runs.
local LC_SRC = LC
local LC_GIT = sh("git -C " .. q(ROOT) .. " rev-parse --short HEAD 2>/dev/null || echo '?'")
if not ok("git -C " .. q(ROOT) .. " diff --quiet HEAD -- src lua 2>/dev/null") then
  LC_GIT = LC_GIT .. " + uncommitted changes in src/ lua/"
end
if HAVE_LC and ok("cp " .. q(LC) .. " " .. q(WORK .. "/luaconcurrent")) then
  LC = WORK .. "/luaconcurrent"
end

-- ---------------------------------------------------------------- one run

-- Results: R[id][tool] = { runs = { {wall=, rss=, rc=, cpu=} ... },
--   verdicts = { "ok" | "bad:why" ... }, inner = {...}, build = {...},
--   leak = { {right_after, a_second_later} ... } }
local R = {}
local function slot(id, tool)
  R[id] = R[id] or {}
  R[id][tool] = R[id][tool] or { runs = {}, verdicts = {}, inner = {}, build = {}, leak = {},
    transfer = {} }
  return R[id][tool]
end

local last                              -- the last run's {wall, rss, rc, cpu}

-- One timed repetition: argv run with stdin from `input`, stdout to
-- `output`, stderr appended to WORK/ID.TOOL.err, under a `limit` s guard.
local function run(id, tool, limit, input, output, argv)
  local s = slot(id, tool)
  local rssf = WORK .. "/rss"
  write(rssf, "")
  local errf = WORK .. "/" .. id .. "." .. tool .. ".err"
  local cmd = string.format("timeout -k 5 %s /usr/bin/time -o %s -f '%%M %%U %%S' %s <%s >%s 2>>%s",
    limit, q(rssf), words(argv), q(input), q(output), q(errf))
  local t0 = now()
  local _, how, code = os.execute(cmd)
  local wall = now() - t0
  local rc = how == "exit" and code or 128 + code
  local rss, u, sy = (read(rssf) or ""):match("(%d+) ([%d.]+) ([%d.]+)%s*$")
  last = { wall = wall, rc = rc, rss = tonumber(rss) or -1,
           cpu = rss and (tonumber(u) + tonumber(sy)) or -1 }
  if rc == 124 or rc == 137 then
    write(errf, string.format("bench: %s %s: killed after the %s s guard\n", id, tool, limit), "ab")
  end
  s.runs[#s.runs + 1] = last
  return last
end

local function mark(id, tool, verdict) local v = slot(id, tool).verdicts; v[#v + 1] = verdict end
local function said(tool) out(" %s %.4fs", tool, last.wall) end

local function bad_count(id, tool)
  local n = 0
  for _, v in ipairs(slot(id, tool).verdicts) do if v ~= "ok" then n = n + 1 end end
  return n
end

local function walls(id, tool)
  local w = {}
  for i, r in ipairs(slot(id, tool).runs) do w[i] = r.wall end
  return w
end
local function field(id, tool, name)
  local w = {}
  for i, r in ipairs(slot(id, tool).runs) do w[i] = r[name] end
  return w
end
local function wall(id, tool) return median(walls(id, tool)) end

local function tail(path, n, prefix)
  local lines = {}
  for line in (read(path) or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  for i = math.max(1, #lines - n + 1), #lines do out("%s%s\n", prefix, lines[i]) end
end

-- The luaconcurrent repetition of a workload: script args..., checked by
-- its exit status (the scripts verify every result).
local function lc_run(id, limit, script, ...)
  if not HAVE_LC then return end
  local outf = WORK .. "/" .. id .. ".lc.out"
  run(id, "lc", limit, "/dev/null", outf, { LC, script, ... })
  mark(id, "lc", last.rc == 0 and "ok" or "bad:rc=" .. last.rc)
  local t = (read(outf) or ""):match(".*time_run=([%d.e+-]+)")
  if t then local s = slot(id, "lc"); s.inner[#s.inner + 1] = tonumber(t) end
  if last.rc ~= 0 then tail(WORK .. "/" .. id .. ".lc.err", 3, "     lc| ") end
  said("lc")
end

-- A peer's repetition, verified by its exit status being `want`.
local function peer_run(id, tool, limit, input, argv, want)
  run(id, tool, limit, input, "/dev/null", argv)
  mark(id, tool, last.rc == (want or 0) and "ok" or "bad:rc=" .. last.rc)
  said(tool)
end

-- ---------------------------------------------------------------- reporting

local function fmt(f, x) if x == nil then return "n/a" end return string.format(f, x) end
local function ratio(a, b) if a == nil or b == nil then return nil end return a / b end
local function x_(r) return r and string.format("%.2fx", r) or "n/a" end
local function s_(v) return v and string.format("%.3f s", v) or "n/a" end
local function rate(n, w) return w and string.format("%.0f/s", n / w) or "n/a" end

local SUMMARY, FAILS = {}, 0
local function target(name, pass, detail)
  local line = string.format("  %-4s %-58s %s", pass and "PASS" or "FAIL", name, detail)
  out("%s\n", line)
  SUMMARY[#SUMMARY + 1] = line
  if not pass then FAILS = FAILS + 1 end
end

local NAMES = { lc = "luaconcurrent", xargs = "xargs -P", parallel = "GNU parallel" }

-- Table of the process-timed rows; rate_of(w) from the median wall.
local function table_(id, label, rate_of)
  out("  %-14s %8s %15s %10s %7s %8s  %s\n", "tool", "wall(s)", "min..max", label, "cpu(s)", "maxRSS", "runs ok")
  for _, tool in ipairs({ "lc", "xargs", "parallel" }) do
    local w = wall(id, tool)
    if w == nil then
      out("  %-14s %8s\n", NAMES[tool], "n/a")
    else
      local lo, hi = minmax(walls(id, tool))
      out("  %-14s %8.3f %15s %10.1f %7.2f %7.1fM  %d/%d\n", NAMES[tool], w,
        string.format("%.3f..%.3f", lo, hi), rate_of(w), median(field(id, tool, "cpu")),
        max(field(id, tool, "rss")) / 1024, RUNS - bad_count(id, tool), RUNS)
    end
  end
  local inner = slot(id, "lc").inner
  if #inner > 0 then
    out("  (luaconcurrent run.time_run median %.3f s: time inside run_all)\n", median(inner))
  end
end

-- The failures of a tool's runs, with the tail of its stderr.
local function show_err(id, tool)
  if bad_count(id, tool) == 0 then return end
  local counts, keys = {}, {}
  for _, v in ipairs(slot(id, tool).verdicts) do
    if v ~= "ok" then
      if not counts[v] then keys[#keys + 1] = v end
      counts[v] = (counts[v] or 0) + 1
    end
  end
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = counts[k] .. " " .. k end
  out("  -- %s failures: %s\n", tool, table.concat(parts, ", "))
  tail(WORK .. "/" .. id .. "." .. tool .. ".err", 8, "     | ")
end

-- luaconcurrent ran and every repetition verified
local function valid(id, tool)
  tool = tool or "lc"
  return HAVE_LC and #slot(id, tool).runs > 0 and bad_count(id, tool) == 0
end

local function progress(r) out("  run %d/%d:", r, RUNS) end
local function want(w) return ONLY:find(" " .. w .. " ", 1, true) ~= nil end
local function loadavg() return sh("cut -d' ' -f1-3 /proc/loadavg") end

-- ---------------------------------------------------------------- header

out("luaconcurrent benchmark — %s\n", os.date("!%Y-%m-%d %H:%M:%S UTC"))
out("machine: nproc=%s, %s, kernel %s, %s\n", sh("nproc"),
  sh("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'"), sh("uname -r"),
  string.format("%.1f GiB RAM", tonumber((read("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)") or 0) / 1048576))
out("tools:   luaconcurrent %s,\n", HAVE_LC and string.format("%s (git %s; built %s, run from a copy)",
  LC_SRC, LC_GIT, sh("date -u -r " .. q(LC_SRC) .. " '+%H:%M:%S UTC'")) or "n/a")
out("         %s, %s, GNU time %s\n", sh("xargs --version | head -n 1"), sh("parallel --version | head -n 1"),
  sh("dpkg-query -W -f '${Version}' time 2>/dev/null || echo '?'"))
out("load:    %s (1/5/15 min; other work on the machine skews the numbers)\n", loadavg())
out("runs:    %d per tool per workload, interleaved; wall = median; PARALLEL_SHELL=%s\n\n",
  RUNS, os.getenv("PARALLEL_SHELL") or "")

-- warm-up (untimed): page cache, parallel's first-run setup
write(WORK .. "/warm", sh("seq 20") .. "\n")
ok("xargs -P 2 -n 1 /bin/true <" .. q(WORK .. "/warm") .. " >/dev/null 2>&1")
ok(PAR .. " -j 2 /bin/true <" .. q(WORK .. "/warm") .. " >/dev/null 2>&1")
if HAVE_LC then ok(q(LC) .. " " .. q(BDIR .. "/w1.lua") .. " 2 20 </dev/null >/dev/null 2>&1") end

local function lines_file(path, line, n)
  write(path, string.rep(line .. "\n", n))
end
local function seq_file(path, n)
  local t = {}
  for i = 1, n do t[i] = tostring(i) end
  write(path, table.concat(t, "\n") .. "\n")
end
local function par(...) local t = { "parallel", "--will-cite" }; for _, a in ipairs({ ... }) do t[#t + 1] = a end; return t end

-- ---------------------------------------------------------------- W1

if want("W1") then
  seq_file(WORK .. "/w1.in", 5000)
  for _, c in ipairs({ 2, 8 }) do
    local id = "w1c" .. c
    out("W1  5000 x /bin/true, concurrency %d (lc captures stdout+stderr; xargs captures nothing; parallel groups output)\n", c)
    for r = 1, RUNS do
      progress(r)
      lc_run(id, 300, BDIR .. "/w1.lua", c, 5000)
      peer_run(id, "xargs", 300, WORK .. "/w1.in", { "xargs", "-P", c, "-n", "1", "/bin/true" })
      peer_run(id, "parallel", 300, WORK .. "/w1.in", par("-j", c, "/bin/true"))
      out("\n")
    end
    table_(id, "tasks/s", function(w) return 5000 / w end)
    for _, t in ipairs({ "lc", "xargs", "parallel" }) do show_err(id, t) end
    local wl, wx, wp = wall(id, "lc"), wall(id, "xargs"), wall(id, "parallel")
    local rx, rp = ratio(wx, wl), ratio(wp, wl)
    target(("W1 c=%d: lc >= 1.3x xargs -P throughput"):format(c), valid(id) and rx ~= nil and rx >= 1.3,
      ("%s (lc %s, xargs %s)"):format(x_(rx), rate(5000, wl), rate(5000, wx)))
    target(("W1 c=%d: lc >= 5x GNU parallel throughput"):format(c), valid(id) and rp ~= nil and rp >= 5,
      ("%s (lc %s, parallel %s)"):format(x_(rp), rate(5000, wl), rate(5000, wp)))
    out("\n")
  end
end

-- ---------------------------------------------------------------- W2

if want("W2") then
  local id = "w2"
  lines_file(WORK .. "/w2.in", "0.5", 500)
  out("W2  500 x 'sleep 0.5', concurrency 250 (ideal wall 1.0 s)\n")
  for r = 1, RUNS do
    progress(r)
    lc_run(id, 120, BDIR .. "/w2.lua", 500, 250, 0.5)
    peer_run(id, "xargs", 120, WORK .. "/w2.in", { "xargs", "-P", 250, "-n", "1", "/bin/sleep" })
    peer_run(id, "parallel", 120, WORK .. "/w2.in", par("-j", 250, "/bin/sleep"))
    out("\n")
  end
  table_(id, "tasks/s", function(w) return 500 / w end)
  for _, t in ipairs({ "lc", "xargs", "parallel" }) do show_err(id, t) end
  local wl, wx, wp = wall(id, "lc"), wall(id, "xargs"), wall(id, "parallel")
  out("  ratios (peer wall / lc wall): xargs %s, parallel %s\n", x_(ratio(wx, wl)), x_(ratio(wp, wl)))
  target("W2: lc wall <= xargs -P 250 wall", valid(id) and wx ~= nil and wl <= wx,
    ("lc %s vs xargs %s"):format(s_(wl), s_(wx)))
  out("\n")
end

-- ---------------------------------------------------------------- W3

if want("W3") then
  local id, BYTES = "w3", 200000000
  seq_file(WORK .. "/w3.in", 4)
  out("W3  4 x 200 MB to stdout ('head -c %d /dev/zero'), concurrency 4, all captured\n", BYTES)
  out("    lc: in memory; xargs: each task's stdout to its own file; parallel: --files (its temp files), in %s\n", W3DIR)
  for r = 1, RUNS do
    progress(r)
    lc_run(id, 120, BDIR .. "/w3.lua", 4, BYTES, 4)
    ok("rm -f " .. q(W3DIR) .. "/x.*")
    run(id, "xargs", 120, WORK .. "/w3.in", "/dev/null", { "xargs", "-P", 4, "-I{}", "sh", "-c",
      'exec head -c "$1" /dev/zero >"$2"', "sh", BYTES, W3DIR .. "/x.{}" })
    local why = last.rc == 0 and "ok" or "bad:rc=" .. last.rc
    for i = 1, 4 do
      if size(W3DIR .. "/x." .. i) ~= BYTES then why = "bad:short-output" end
    end
    mark(id, "xargs", why); said("xargs")
    ok("rm -f " .. q(W3DIR) .. "/x.*")
    ok("mkdir -p " .. q(W3DIR .. "/p"))
    run(id, "parallel", 120, WORK .. "/w3.in", WORK .. "/w3.files",
      par("-j", 4, "-N0", "--files", "--tmpdir", W3DIR .. "/p", "head", "-c", BYTES, "/dev/zero"))
    why = last.rc == 0 and "ok" or "bad:rc=" .. last.rc
    local files = {}
    for f in (read(WORK .. "/w3.files") or ""):gmatch("[^\n]+") do files[#files + 1] = f end
    if #files ~= 4 then why = "bad:files=" .. #files end
    for _, f in ipairs(files) do
      if size(f) ~= BYTES then why = "bad:short-output" end
    end
    mark(id, "parallel", why); said("parallel")
    ok("rm -rf " .. q(W3DIR .. "/p"))
    out("\n")
  end
  table_(id, "MB/s", function(w) return 4 * BYTES / 1e6 / w end)
  for _, t in ipairs({ "lc", "xargs", "parallel" }) do show_err(id, t) end
  local wl, wx, wp = wall(id, "lc"), wall(id, "xargs"), wall(id, "parallel")
  local v = valid(id)
  out("  ratios (lc throughput / peer): xargs %s, parallel %s\n", x_(ratio(wx, wl)), x_(ratio(wp, wl)))
  target(("W3: no deadlock, every output exactly %d bytes"):format(BYTES), v,
    ("%d/%d runs ok"):format(#slot(id, "lc").runs - bad_count(id, "lc"), RUNS))
  -- RSS bound: captured (4 x 200 MB) + largest single output (200 MB) + 32 MiB
  local lim = (4 * BYTES + BYTES + 32 * 1048576) // 1024
  local rl = max(field(id, "lc", "rss"))
  target("W3: lc peak RSS <= captured + largest + 32 MiB", v and rl ~= nil and rl > 0 and rl <= lim,
    ("%s (max of runs) vs limit %.1f MiB"):format(fmt("%.1f MiB", rl and rl / 1024), lim / 1024))
  local mb = wl and 4 * BYTES / 1e6 / wl
  target("W3: lc captures >= 700 MB/s", v and mb ~= nil and mb >= 700, fmt("%.0f MB/s", mb))
  out("\n")
end

-- ---------------------------------------------------------------- W4

-- pids of live (not zombie) processes whose command line holds `m`
function marked(m)
  local pids = {}
  local self = tonumber(sh("echo $PPID"))   -- this driver (the shell's parent)
  local p = io.popen("ls /proc")
  for name in p:lines() do
    local pid = tonumber(name)
    if pid and name:match("^%d+$") and pid ~= self then
      local cmd = read("/proc/" .. name .. "/cmdline")
      local stat = read("/proc/" .. name .. "/stat")
      if cmd and stat and cmd:find(m, 1, true) and stat:match("^%d+ %b() (%S)") ~= "Z" then
        pids[#pids + 1] = pid
      end
    end
  end
  p:close()
  return pids
end

-- Leftovers right after the run and, if any, a second later; then killed.
local function leak_check(id, tool, m)
  local n0 = #marked(m)
  local n1 = 0
  if n0 > 0 then
    ok("sleep 1")
    n1 = #marked(m)
  end
  local l = slot(id, tool).leak
  l[#l + 1] = { n0, n1 }
  for _, pid in ipairs(marked(m)) do ok("kill -KILL " .. pid .. " 2>/dev/null") end
  if n0 > 0 then out("(%d left)", n0) end
end

local function new_marker()            -- a unique sleep duration per run
  local m = string.format("10.%09d", math.random(0, 999999999))
  MARKERS[#MARKERS + 1] = m
  return m
end

if want("W4") then
  math.randomseed(os.time(), math.floor(now() * 1e6) % 1000000)
  local GRAND = 'sleep "$0" & sleep "$0"; wait'
  for _, mode in ipairs({ "sleep", "grand" }) do
    local id
    if mode == "sleep" then
      id = "w4a"
      out("W4a 50 x 'sleep 10', timeout 0.2 s, concurrency 50 (xargs: coreutils 'timeout 0.2'; parallel: --timeout 0.2)\n")
    else
      id = "w4b"
      out("W4b 50 x sh -c 'sleep 10 & sleep 10; wait' (grandchildren), timeout 0.2 s, concurrency 50\n")
    end
    for r = 1, RUNS do
      progress(r)
      local m = new_marker()
      if HAVE_LC then
        lc_run(id, 60, BDIR .. "/w4.lua", mode, m, 50, 0.2, 50)
        leak_check(id, "lc", m)
      end
      lines_file(WORK .. "/w4.in", m, 50)
      -- xargs exits 123 when invocations fail (timeout exits 124): expected
      local xa = { "xargs", "-P", 50, "-n", 1, "timeout", 0.2, "/bin/sleep" }
      if mode == "grand" then xa = { "xargs", "-P", 50, "-n", 1, "timeout", 0.2, "/bin/sh", "-c", GRAND } end
      peer_run(id, "xargs", 60, WORK .. "/w4.in", xa, 123)
      leak_check(id, "xargs", m)
      m = new_marker()
      lines_file(WORK .. "/w4.in", m, 50)
      -- parallel exits with the number of failed jobs: 50 expected
      local pa = par("-j", 50, "--timeout", 0.2, "/bin/sleep")
      if mode == "grand" then pa = par("-j", 50, "--timeout", 0.2, "-q", "/bin/sh", "-c", GRAND) end
      peer_run(id, "parallel", 60, WORK .. "/w4.in", pa, 50)
      leak_check(id, "parallel", m)
      out("\n")
    end
    table_(id, "tasks/s", function(w) return 50 / w end)
    for _, t in ipairs({ "lc", "xargs", "parallel" }) do show_err(id, t) end
    for _, t in ipairs({ "lc", "xargs", "parallel" }) do
      local l = slot(id, t).leak
      if #l > 0 then
        local a, b = 0, 0
        for _, e in ipairs(l) do a, b = a + e[1], b + e[2] end
        out("  leftover processes (sleep or sh with the marker), %-8s right after exit: %d   1 s later: %d (sum over runs)\n", t, a, b)
      end
    end
    local wl, wx, wp = wall(id, "lc"), wall(id, "xargs"), wall(id, "parallel")
    if wp and wp > 2 then
      out("  note: GNU parallel's --timeout did not end these jobs in time: it returned after %.3f s (the sleeps ran out)\n", wp)
    end
    out("  ratios (peer wall / lc wall): xargs %s, parallel %s\n", x_(ratio(wx, wl)), x_(ratio(wp, wl)))
    local v = valid(id)
    target(id:upper() .. ": lc wall <= 0.26 s", v and wl <= 0.26, ("lc %s (xargs %s)"):format(s_(wl), s_(wx)))
    local lk
    if #slot(id, "lc").leak > 0 then
      lk = 0
      for _, e in ipairs(slot(id, "lc").leak) do lk = lk + e[1] end
    end
    target(id:upper() .. ": no sleep left running after lc exits", v and lk == 0, fmt("%d", lk) .. " left (all runs)")
    out("\n")
  end
end

-- ---------------------------------------------------------------- function tasks (W5-W7)

-- One repetition of a script that prints elapsed=SECONDS (and build=).
local function fn_run(id, tool, limit, script, ...)
  if not HAVE_LC then return end
  local outf = WORK .. "/" .. id .. "." .. tool .. ".out"
  run(id, tool, limit, "/dev/null", outf, { LC, script, ... })
  local text = read(outf) or ""
  local t = text:match(".*elapsed=([%d.e+-]+)")
  local b = text:match(".*build=([%d.e+-]+)")
  local tr = text:match(".*transfer=([%d.e+-]+)")
  local s = slot(id, tool)
  if last.rc == 0 and t then
    mark(id, tool, "ok")
    s.inner[#s.inner + 1] = tonumber(t)
    if b then s.build[#s.build + 1] = tonumber(b) end
    if tr then s.transfer[#s.transfer + 1] = tonumber(tr) end
    out(" %s %.3fs", tool, tonumber(t))
  else
    mark(id, tool, "bad:rc=" .. last.rc)
    out(" %s FAILED(rc=%d)\n", tool, last.rc)
    tail(WORK .. "/" .. id .. "." .. tool .. ".err", 3, "     " .. tool .. "| ")
  end
end

local function inner(id, tool) return median(slot(id, tool).inner) end

-- Table of rows timed inside the scripts; rate_of(m) from the median inner time.
local function itable(id, label, rate_of, rows)
  out("  %-32s %8s %15s %10s %8s %7s %8s  %s\n", "row", "inner(s)", "min..max", label, "wall(s)", "cpu(s)", "maxRSS", "runs ok")
  for _, row in ipairs(rows) do
    local tool, name = row[1], row[2]
    local m = inner(id, tool)
    if m == nil then
      out("  %-32s %8s %15s %10s %8s %7s %8s  %s\n", name, "n/a", "", "", "", "", "", "0/" .. RUNS)
    else
      local lo, hi = minmax(slot(id, tool).inner)
      local v = rate_of(m)
      out("  %-32s %8.4f %15s %10s %8.3f %7.2f %7.1fM  %d/%d\n", name, m, string.format("%.3f..%.3f", lo, hi),
        string.format(v >= 100 and "%.0f" or "%.2f", v), wall(id, tool), median(field(id, tool, "cpu")),
        max(field(id, tool, "rss")) / 1024, RUNS - bad_count(id, tool), RUNS)
    end
  end
end

if want("W5") then
  local id, N = "w5", 100000
  local modes = { "async4", "async0", "mp2", "proc2", "refco", "refloop" }
  out("W5  %d trivial function tasks, function(key) return true, key * 2 end; results kept\n", N)
  out("    inner = run_all only (lc; building tasks and runner not timed) or the loop only (references),\n")
  out("    core monotonic clock; wall = the whole process; each row its own process of the same luaconcurrent binary\n")
  for r = 1, RUNS do
    progress(r)
    for _, m in ipairs(modes) do fn_run(id, m, 120, BDIR .. "/w5.lua", m, N) end
    out("\n")
  end
  itable(id, "tasks/s", function(m) return N / m end, {
    { "async4", "ProcRunAsyncio num_workers=4" }, { "async0", "ProcRunAsyncio num_workers=0" },
    { "mp2", "ProcRunMp num_workers=2" }, { "proc2", "ProcRunMp nw=2 isolation=process" },
    { "refco", "ref (a) coroutine per task" },
    { "refloop", "ref (b) bare loop, no results" } })
  for _, m in ipairs(modes) do show_err(id, m) end
  local ico, ilo = inner(id, "refco"), inner(id, "refloop")
  local b = median(slot(id, "async4").build)
  if b then out("  (runner construction, outside the timed part: median %.4f s for ProcRunAsyncio num_workers=4)\n", b) end
  local vco = valid(id, "refco")
  for _, m in ipairs({ "async4", "async0" }) do
    local im, v, nw = inner(id, m), valid(id, m), m:sub(6)
    out("  ProcRunAsyncio num_workers=%s vs references (rate ratio): ref (a) %s, ref (b) %s\n", nw,
      x_(ratio(ico, im)), x_(ratio(ilo, im)))
    target(("W5: ProcRunAsyncio nw=%s >= 250000 tasks/s"):format(nw), v and N / im >= 250000, rate(N, im))
    local r = ratio(ico, im)
    target(("W5: ProcRunAsyncio nw=%s >= 0.8x ref (a) coroutine loop"):format(nw), v and vco and r >= 0.8,
      ("%s (lc %s, ref (a) %s)"):format(x_(r), rate(N, im), rate(N, ico)))
  end
  local im = inner(id, "mp2")
  target("W5: ProcRunMp 2 workers >= 200000 tasks/s", valid(id, "mp2") and N / im >= 200000,
    ("%s (%s ref (a))"):format(rate(N, im), x_(ratio(ico, im))))
  -- issue 10's ratios, all against runs of the same bench
  local ia = inner(id, "async0")
  local r15 = ratio(ico, ia)
  target("W5: ProcRunAsyncio nw=0 >= 1.5x ref (a)", valid(id, "async0") and vco and r15 >= 1.5, x_(r15))
  local rmp = ratio(ia, im)
  target("W5: ProcRunMp 2 workers >= 0.75x ProcRunAsyncio nw=0", valid(id, "mp2") and rmp >= 0.75, x_(rmp))
  local ip = inner(id, "proc2")
  local rp = ratio(ia, ip)
  target("W5: ProcRunMp isolation=process 2 workers >= 0.3x ProcRunAsyncio nw=0",
    valid(id, "proc2") and rp >= 0.3, ("%s (%s)"):format(x_(rp), rate(N, ip)))
  out("\n")

  -- Large answers: one task returning 128 MB, timed from its return (its
  -- time_end) to its result in the runner's hands.
  local big = { { "bigmp", "a thread worker" }, { "bigproc", "a worker process" } }
  out("W5  one task answering 128 MB, 1 worker: transfer = from the task's return to its result in hand\n")
  for r = 1, RUNS do
    progress(r)
    for _, m in ipairs(big) do fn_run("w5big", m[1], 120, BDIR .. "/w5.lua", m[1], 128) end
    out("\n")
  end
  for _, m in ipairs(big) do
    show_err("w5big", m[1])
    local tr = median(slot("w5big", m[1]).transfer)
    local lo, hi = minmax(slot("w5big", m[1]).transfer)
    target(("W5: a 128 MB answer from %s arrives in < 1 s"):format(m[2]),
      valid("w5big", m[1]) and tr ~= nil and tr < 1,
      tr and ("median %.3f s (%.3f..%.3f)"):format(tr, lo, hi) or "n/a")
  end
  out("\n")
end

if want("W6") then
  local id, N = "w6", 16
  local loops, cal
  if HAVE_LC then
    local text = sh(q(LC) .. " " .. q(BDIR .. "/w6.lua") .. " calibrate 0.25 2>" .. q(WORK .. "/w6.cal.err"))
    loops, cal = text:match("loops=(%d+)"), tonumber(text:match("secs=([%d.]+)"))
    if not loops then tail(WORK .. "/w6.cal.err", 3, "     cal| ") end
  end
  out("W6  %d CPU-bound function tasks (pure-Lua loop), ProcRunMp num_workers 1 vs 2\n", N)
  out("    calibrated once (plain Lua state of the same binary, no hook): loops=%s, one pass %s s; load now %s\n",
    loops or "n/a", fmt("%.4f", cal), loadavg())
  if loops then
    for r = 1, RUNS do
      progress(r)
      fn_run(id, "mp1", 300, BDIR .. "/w6.lua", 1, loops, N)
      fn_run(id, "mp2", 300, BDIR .. "/w6.lua", 2, loops, N)
      out("\n")
    end
  end
  itable(id, "tasks/s", function(m) return N / m end,
    { { "mp1", "ProcRunMp num_workers=1" }, { "mp2", "ProcRunMp num_workers=2" } })
  show_err(id, "mp1"); show_err(id, "mp2")
  local i1, i2 = inner(id, "mp1"), inner(id, "mp2")
  local v = valid(id, "mp1") and valid(id, "mp2")
  if i1 and cal then
    out("  one task on a worker: %.3f s (1 worker, inner / %d) vs %.4f s calibrated in the plain state: %s\n",
      i1 / N, N, cal, x_(i1 / N / cal))
  end
  local w2, c2 = wall(id, "mp2"), median(field(id, "mp2", "cpu"))
  if w2 then
    out("  CPUs the 2-worker run got: %.2f (median cpu / median wall; 2.00 = both workers ran all along)\n", c2 / w2)
    if c2 / w2 < 1.6 then
      out("  note: the 2-worker run did not get two CPUs (load %s on %s CPUs): the speed-up is bounded by the machine, not measured\n",
        loadavg(), sh("nproc"))
    end
  end
  local r = ratio(i1, i2)
  target("W6: ProcRunMp 2 workers >= 1.8x faster than 1 worker", v and r ~= nil and r >= 1.8,
    ("%s (1 worker %s, 2 workers %s)"):format(x_(r), s_(i1), s_(i2)))
  out("\n")
end

if want("W7") then
  local id, N = "w7", 10000
  out("W7  %d function tasks each lc.sleep(0.1), ProcRunAsyncio num_workers=0 (ideal inner 0.1 s)\n", N)
  for r = 1, RUNS do
    progress(r)
    fn_run(id, "async0", 60, BDIR .. "/w7.lua", N, 0.1)
    out("\n")
  end
  itable(id, "tasks/s", function(m) return N / m end, { { "async0", "ProcRunAsyncio num_workers=0" } })
  show_err(id, "async0")
  local i = inner(id, "async0")
  target("W7: run_all wall <= 0.4 s", valid(id, "async0") and i ~= nil and i <= 0.4,
    ("%s (process wall %s)"):format(s_(i), s_(wall(id, "async0"))))
  out("\n")
end

-- ---------------------------------------------------------------- W8

if want("W8") and HAVE_LC then
  local n = 5000
  seq_file(WORK .. "/w8.in", n)
  out("W8  the command line: %d x /bin/true, -j2, values on stdin (lc = luaconcurrent --parallel)\n", n)
  local log = WORK .. "/w8.joblog"
  local variants = {
    { "lc", {} }, { "lc-k", { "-k" } }, { "lc-joblog", { "--joblog", log } },
  }
  for r = 1, RUNS do
    progress(r)
    for _, v in ipairs(variants) do
      os.remove(log)
      local argv = { LC, "--parallel", "-j2" }
      for _, a in ipairs(v[2]) do argv[#argv + 1] = a end
      argv[#argv + 1] = "/bin/true"
      run("w8", v[1], 300, WORK .. "/w8.in", "/dev/null", argv)
      mark("w8", v[1], last.rc == 0 and "ok" or "bad:rc=" .. last.rc)
      said(v[1])
    end
    peer_run("w8", "xargs", 300, WORK .. "/w8.in", { "xargs", "-P", 2, "-n", "1", "/bin/true" })
    peer_run("w8", "parallel", 300, WORK .. "/w8.in", par("-j", 2, "/bin/true"))
    out("\n")
  end
  for _, t in ipairs({ "lc", "lc-k", "lc-joblog", "xargs", "parallel" }) do
    local w = wall("w8", t)
    out("  %-10s %8s  %s\n", t, s_(w), rate(n, w))
    show_err("w8", t)
  end
  local wl, wx, wp = wall("w8", "lc"), wall("w8", "xargs"), wall("w8", "parallel")
  local ok8 = valid("w8") and valid("w8", "lc-k") and valid("w8", "lc-joblog")
  target("W8: command line >= 5x GNU parallel throughput", ok8 and ratio(wp, wl) ~= nil and ratio(wp, wl) >= 5,
    ("%s (lc %s, parallel %s)"):format(x_(ratio(wp, wl)), rate(n, wl), rate(n, wp)))
  target("W8: command line >= xargs -P throughput", ok8 and wx ~= nil and wl <= wx,
    ("%s (lc %s, xargs %s)"):format(x_(ratio(wx, wl)), rate(n, wl), rate(n, wx)))
  local wk, wj = wall("w8", "lc-k"), wall("w8", "lc-joblog")
  target("W8: -k (ordered output) costs <= 5%", ok8 and wk ~= nil and wk <= wl * 1.05,
    ("%+.1f%%"):format(wk and (wk / wl - 1) * 100 or 0))
  target("W8: --joblog costs <= 5%", ok8 and wj ~= nil and wj <= wl * 1.05,
    ("%+.1f%%"):format(wj and (wj / wl - 1) * 100 or 0))
  out("\n")
end

-- ---------------------------------------------------------------- W9

if want("W9") and HAVE_LC then
  local n, nlua, npar, slots = 2000, 500, 80, 2
  local addrs = { "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5" }
  local sdir = WORK .. "/sshd"
  local port = 24000 + tonumber(sh("echo $$")) % 2000
  out("W9  remote: N x /bin/true on four ssh hosts (127.0.0.2-5, a private sshd each), %d slots each\n", slots)
  local spids = sh("LC_SSHD_OWNER=" .. sh("echo $PPID") .. " sh " .. q(ROOT .. "/spec/fixtures/sshd_start.sh") .. " "
    .. q(sdir) .. " " .. port .. " '' '' " .. table.concat(addrs, " ") .. " 2>" .. q(WORK .. "/sshd.err"))
  local pids = {}
  for pid in spids:gmatch("%d+") do pids[#pids + 1] = pid end
  local function listening(addr)
    local a, b, c, d = addr:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
    return (read("/proc/net/tcp") or ""):find(string.format("%02X%02X%02X%02X:%04X 00000000:0000 0A",
      tonumber(d), tonumber(c), tonumber(b), tonumber(a), port), 1, true) ~= nil
  end
  local up = #pids == #addrs
  for _, addr in ipairs(addrs) do
    for _ = 1, 100 do
      if not up or listening(addr) then break end
      ok("sleep 0.05")
    end
    up = up and listening(addr)
  end
  if not up then
    out("  SKIPPED: sshd could not start: %s\n\n", (read(WORK .. "/sshd.err") or "?"):gsub("%s+$", ""))
  else
    local ssh = "ssh -i " .. sdir .. "/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
      .. " -o IdentitiesOnly=yes -o LogLevel=ERROR -p " .. port
    local logins = {}
    for _, addr in ipairs(addrs) do
      logins[#logins + 1] = "-S"
      logins[#logins + 1] = slots .. "/" .. ssh .. " root@" .. addr
    end
    local joined = table.concat(addrs, ",")
    local function par_w9(...)       -- parallel [opts...] -S ... -S ... /bin/true
      local argv = par(...)
      for _, l in ipairs(logins) do argv[#argv + 1] = l end
      argv[#argv + 1] = "/bin/true"
      return argv
    end
    seq_file(WORK .. "/w9.in", npar)
    for r = 1, RUNS do
      progress(r)
      lc_run("w9", 300, BDIR .. "/w9.lua", n, slots, sdir, port, "engine", LC, joined)
      run("w9", "lc-lua", 300, "/dev/null", "/dev/null", { LC, BDIR .. "/w9.lua", nlua, slots, sdir, port, "lua", "", joined })
      mark("w9", "lc-lua", last.rc == 0 and "ok" or "bad:rc=" .. last.rc)
      said("lc-lua")
      run("w9", "local", 300, "/dev/null", "/dev/null", { LC, BDIR .. "/w9.lua", n, slots, sdir, port, "local", "", joined })
      mark("w9", "local", last.rc == 0 and "ok" or "bad:rc=" .. last.rc)
      said("local")
      peer_run("w9", "parallel", 600, WORK .. "/w9.in", par_w9())
      peer_run("w9", "parallel-M", 600, WORK .. "/w9.in", par_w9("-M"))
      out("\n")
    end
    local spread = (read(WORK .. "/w9.lc.out") or ""):match("per_host=([%d,]+)")
    ok("kill " .. table.concat(pids, " ") .. " 2>/dev/null")
    local per = {}
    local counts = { lc = n, ["lc-lua"] = nlua, ["local"] = n, parallel = npar, ["parallel-M"] = npar }
    local labels = { lc = "luaconcurrent, engine mode", ["lc-lua"] = "luaconcurrent, plain-Lua worker",
      ["local"] = "luaconcurrent, same tasks locally", parallel = "GNU parallel -S (4 hosts)",
      ["parallel-M"] = "GNU parallel -S -M (4 hosts)" }
    out("  %-34s %6s %9s %12s %10s  %s\n", "tool", "tasks", "wall(s)", "ms a task", "tasks/s", "runs ok")
    for _, t in ipairs({ "lc", "lc-lua", "local", "parallel", "parallel-M" }) do
      local w = wall("w9", t)
      per[t] = w and w / counts[t]
      out("  %-34s %6d %9s %12s %10s  %d/%d\n", labels[t], counts[t], w and string.format("%.3f", w) or "n/a",
        per[t] and string.format("%.3f", per[t] * 1000) or "n/a", per[t] and string.format("%.0f", 1 / per[t]) or "n/a",
        RUNS - bad_count("w9", t), RUNS)
      show_err("w9", t)
    end
    out("  (engine mode, last run: tasks per host %s)\n", spread or "n/a")
    local okl = valid("w9") and valid("w9", "local")
    local over = okl and per.lc and per["local"] and (per.lc - per["local"]) or nil
    out("  (engine mode's own overhead: %s ms a task over the local run, the ssh handshakes included)\n",
      over and string.format("%.3f", over * 1000) or "n/a")
    target("W9: engine mode's overhead < 1 ms a task", over ~= nil and over < 0.001,
      over and string.format("%.3f ms", over * 1000) or "n/a")
    target("W9: >= 10x GNU parallel -S throughput", okl and per.parallel ~= nil and per.parallel / per.lc >= 10,
      ("%s (-M: %s)"):format(x_(ratio(per.parallel, per.lc)), x_(ratio(per["parallel-M"], per.lc))))
    target("W9: >= 10x GNU parallel -S -M throughput", okl and per["parallel-M"] ~= nil and per["parallel-M"] / per.lc >= 10,
      x_(ratio(per["parallel-M"], per.lc)))
    out("\n")
  end
end

-- ---------------------------------------------------------------- W10

-- Many hosts: scripts/bench/w10.lua (its own two sshds: 32 loopback hosts,
-- 127.0.0.10-41, 1 slot each, 128 `echo` tasks) as three processes, each
-- under its own guard: luaconcurrent on bare echos BENCH_RUNS times (first
-- result, whole run, the runner's peak RSS); luaconcurrent once on
-- `sleep 1; echo`, so that the run lasts until every host is up (128 bare
-- echos end before most hosts say hello), and after it the floor of "all
-- up" here: the 32 hosts' bare `ssh HOST true`, all at once (on loopback
-- the hosts' sshd and login shells share these CPUs); GNU parallel with
-- the same 32 -S logins (first output, whole run; at most 2 runs of
-- ~10-45 s). The script checks every result's output; a run with a bad
-- one is not valid.
if want("W10") and HAVE_LC then
  local nh, nt = 32, 128
  local npar = math.min(RUNS, 2)
  out("W10 many hosts: %d loopback hosts (2 sshds), 1 slot each, %d x echo, beside GNU parallel -S\n", nh, nt)
  local LC_ROW = "lc%s+run %d+: first result ([%d.-]+) s, all %d+ hosts up ([^,]+), total ([%d.]+) s, "
    .. "%d+ hosts used, (%d+) bad results, peak RSS ([%d-]+) kB"
  local PAR_ROW = "parallel run %d+: first output ([%d.-]+) s, total ([%d.]+) s, (%d+) lines"
  local FLOOR_ROW = "ssh floor run %d+: %d+ x `ssh HOST true` at once, all done ([%d.]+) s"
  local function w10(tool, limit, env, runs, sleep)
    local outf = WORK .. "/w10." .. tool .. ".out"
    run("w10", tool, limit, "/dev/null", outf, { "env", env, LC, BDIR .. "/w10.lua", nh, nt, "engine", runs, sleep })
    local rows, bad, s = {}, 0, read(outf) or ""
    if tool == "parallel" then
      for f, t, n in s:gmatch(PAR_ROW) do
        rows[#rows + 1] = { first = tonumber(f), total = tonumber(t) }
        if tonumber(n) ~= nt then bad = bad + 1 end
      end
    else
      for f, u, t, b, rss in s:gmatch(LC_ROW) do
        rows[#rows + 1] = { first = tonumber(f), up = tonumber(u:match("^([%d.]+) s$")), total = tonumber(t),
          rss = tonumber(rss) }
        bad = bad + tonumber(b)
      end
      for fl in s:gmatch(FLOOR_ROW) do rows.floor = tonumber(fl) end
    end
    mark("w10", tool, (last.rc == 0 and #rows == runs and bad == 0) and "ok"
      or ("bad:rc=%d,%d/%d runs,%d bad"):format(last.rc, #rows, runs, bad))
    said(tool)
    return rows
  end
  local function med(rows, k)
    local xs = {}
    for _, r in ipairs(rows) do if r[k] and r[k] >= 0 then xs[#xs + 1] = r[k] end end
    return median(xs), xs
  end
  progress(1)
  local lrows = w10("lc", 60 + 10 * RUNS, "W10_PARALLEL=0", RUNS, 0)
  local urows = w10("lc-up", 60, "W10_PARALLEL=0", 1, 1)
  local prows = w10("parallel", 150, "W10_LC=0", npar, 0)
  out("\n")
  if #lrows == 0 and #urows == 0 and #prows == 0 then
    out("  SKIPPED: %s\n\n", ((read(WORK .. "/w10.lc.err") or "?"):gsub("%s+$", "")))
  else
    local lf, lt, pf, pt = med(lrows, "first"), med(lrows, "total"), med(prows, "first"), med(prows, "total")
    local uf, uu, ut = med(urows, "first"), med(urows, "up"), med(urows, "total")
    local _, rss = med(lrows, "rss")
    local row = "  %-36s %12s %12s %9s %10s  %s\n"
    out(row, "tool (medians)", "first result", "all hosts up", "total", "runner RSS", "runs ok")
    out(row, "luaconcurrent, engine mode, echo", s_(lf), "(ends first)", s_(lt),
      #rss > 0 and string.format("%.1fM", max(rss) / 1024) or "n/a", valid("w10") and ("%d/%d"):format(RUNS, RUNS) or ("0/%d"):format(RUNS))
    show_err("w10", "lc")
    out(row, "luaconcurrent, sleep 1; echo", s_(uf), s_(uu), s_(ut), "", valid("w10", "lc-up") and "1/1" or "0/1")
    show_err("w10", "lc-up")
    out(row, "32 x bare `ssh HOST true` at once", "", s_(urows.floor), "", "", "")
    out(row, "GNU parallel, the same 32 -S", s_(pf), "", s_(pt), "",
      valid("w10", "parallel") and ("%d/%d"):format(npar, npar) or ("0/%d"):format(npar))
    show_err("w10", "parallel")
    out("  (against GNU parallel: first result %s sooner, whole run %s faster)\n", x_(ratio(pf, lf)), x_(ratio(pt, lt)))
    target("W10: first result <= 0.5 s", valid("w10") and lf ~= nil and lf <= 0.5,
      ("%s (parallel %s)"):format(s_(lf), s_(pf)))
    target("W10: all 32 hosts up <= 1.5 s", valid("w10", "lc-up") and uu ~= nil and uu <= 1.5, s_(uu))
    target("W10: whole run <= 2 s", valid("w10") and lt ~= nil and lt <= 2, ("%s (parallel %s)"):format(s_(lt), s_(pt)))
    out("\n")
  end
end

-- ---------------------------------------------------------------- W11

-- --pipe at speed: ~1 GB of text lines through wc -l, split by
-- --pipepart (the file) and --pipe (cat FILE |), -j2 --block 16M, beside
-- GNU parallel with the same options and the limits of this machine: two
-- dd halves each into its own wc -l, and cat FILE | wc -l. Each run's
-- counts must add up to the file's lines.
if want("W11") and HAVE_LC then
  local n = 110000000
  local file = WORK .. "/w11.txt"
  ok("seq " .. n .. " > " .. q(file))
  local bytes = tonumber(sh("stat -c %s " .. q(file)))
  local half = bytes // 2
  half = half + #sh("tail -c +" .. (half + 1) .. " " .. q(file) .. " | head -1") + 1
  out("W11 --pipe: seq %d (%d bytes) through wc -l, -j2 --block 16M\n", n, bytes)
  local F = q(file)
  local rows = {
    { "lc-pipepart", LC .. " --parallel -j2 --pipepart -a " .. F .. " --block 16M wc -l" },
    { "par-pipepart", "parallel --will-cite -j2 --pipepart -a " .. F .. " --block 16M wc -l" },
    { "lc-pipe", "cat " .. F .. " | " .. LC .. " --parallel -j2 --pipe --block 16M wc -l" },
    { "par-pipe", "cat " .. F .. " | parallel --will-cite -j2 --pipe --block 16M wc -l" },
    { "dd-halves", string.format("(dd if=%s bs=16M iflag=count_bytes count=%d status=none | wc -l) & "
      .. "dd if=%s bs=16M iflag=skip_bytes skip=%d status=none | wc -l; wait", F, half, F, half) },
    { "cat-wc", "cat " .. F .. " | wc -l" },
  }
  ok("cat " .. F .. " > /dev/null")   -- the page cache warm, as measured
  local outf = WORK .. "/w11.out"
  for r = 1, RUNS do
    progress(r)
    for _, row in ipairs(rows) do
      run("w11", row[1], 300, "/dev/null", outf, { "sh", "-c", row[2] })
      local sum = 0
      for l in (read(outf) or ""):gmatch("%d+") do sum = sum + tonumber(l) end
      mark("w11", row[1], (last.rc == 0 and sum == n) and "ok" or ("bad:rc=" .. last.rc .. ",lines=" .. sum))
      said(row[1])
    end
    out("\n")
  end
  os.remove(file)
  for _, row in ipairs(rows) do
    local w = wall("w11", row[1])
    out("  %-13s %8s  %s  runs ok %d/%s\n", row[1], s_(w), w and string.format("%.0f MB/s", size / w / 1e6) or "n/a",
      RUNS - bad_count("w11", row[1]), RUNS)
    show_err("w11", row[1])
  end
  local lpp, ppp, lp, pp = wall("w11", "lc-pipepart"), wall("w11", "par-pipepart"), wall("w11", "lc-pipe"), wall("w11", "par-pipe")
  local dd, cw = wall("w11", "dd-halves"), wall("w11", "cat-wc")
  local okp = valid("w11", "lc-pipepart") and valid("w11", "lc-pipe")
  target("W11: --pipepart within 1.3x of two dd halves", okp and lpp ~= nil and dd ~= nil and lpp <= dd * 1.3,
    ("%s of dd (lc %s, dd %s)"):format(x_(ratio(lpp, dd)), s_(lpp), s_(dd)))
  target("W11: --pipepart >= 2x GNU parallel", okp and ratio(ppp, lpp) ~= nil and ratio(ppp, lpp) >= 2,
    ("%s (parallel %s)"):format(x_(ratio(ppp, lpp)), s_(ppp)))
  target("W11: --pipe within 1.3x of cat | wc -l", okp and lp ~= nil and cw ~= nil and lp <= cw * 1.3,
    ("%s of cat|wc (lc %s, cat|wc %s)"):format(x_(ratio(lp, cw)), s_(lp), s_(cw)))
  target("W11: --pipe >= 3x GNU parallel", okp and ratio(pp, lp) ~= nil and ratio(pp, lp) >= 3,
    ("%s (parallel %s)"):format(x_(ratio(pp, lp)), s_(pp)))
  out("\n")
end

-- ---------------------------------------------------------------- summary

out("load at end: %s\n", loadavg())
out("Summary (%d runs each; luaconcurrent %s):\n", RUNS, HAVE_LC and "present" or "MISSING")
for _, line in ipairs(SUMMARY) do out("%s\n", line) end
out("%d passed, %d failed\n", #SUMMARY - FAILS, FAILS)
cleanup()
os.exit((STRICT and FAILS > 0) and 1 or 0)
