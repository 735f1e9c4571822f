--- lcparallel's run setup: the parsed options (parallel/args.lua) checked
-- and mapped to the API's settings (-j, --timeout, --retries, --halt,
-- --termseq, --joblog, --results, ...). A usage error names the first
-- bad one.

local core = require "luaconcurrent.core"
local quote = require("luaconcurrent.shellquote").quote
local hostlib = require "luaconcurrent.remote.hosts"
local hosts = require "luaconcurrent.parallel.hosts"
local timeout = require "luaconcurrent.parallel.timeout"
local usage_error = require("luaconcurrent.parallel.args").usage_error

local M = {}

-- A number option: non-negative, or a usage error naming it.
local function number_of(name, s)
  local n = tonumber(s)
  if not n or n < 0 or n ~= n or n == math.huge then
    usage_error("%s needs a non-negative number, got %q", name, tostring(s))
  end
  return n
end

-- A duration: seconds, or with parallel's units (1h30m, 2.5m, 10s).
local UNIT = { s = 1, m = 60, h = 3600, d = 86400 }
local function duration_of(name, s)
  if not s:find("^[%d.]+[dhmsDHMS]") then return number_of(name, s) end
  local total = 0
  local rest = s:gsub("([%d.]+)([dhmsDHMS])", function(n, u)
    if not tonumber(n) then return nil end    -- left in rest: refused below
    total = total + tonumber(n) * UNIT[u:lower()]
    return ""
  end)
  if rest ~= "" then usage_error("%s needs seconds or a duration such as 1h30m, got %q", name, s) end
  return number_of(name, total)
end

local function whole_of(name, s, n)
  n = math.tointeger(n or tonumber(s))
  if not n then usage_error("%s needs a whole number, got %q", name, s) end
  return n
end

local function read_jobs_file(path, f)
  local text = f:read("a") or ""
  f:close()
  return text:match("^%s*(%S+)%s*$") or usage_error("-j %s: the file holds no number of jobs", path)
end

--- -j's forms: N, 0, N%, +N, -N, or a file holding one of them.
function M.jobs_of(s, from_file)
  local rule = hostlib.cpu_rule(s)
  if rule then return rule(core.cpu_count()) end
  local n = tonumber(s)
  if n and n >= 0 and n == math.floor(n) then return math.tointeger(n) end
  if not from_file then
    local f = io.open(s, "r")
    if f then return M.jobs_of(read_jobs_file(s, f), s) end
  end
  if from_file then usage_error("-j %s: the file holds %q, not N, N%%, +N or -N", from_file, s) end
  usage_error("-j needs N, N%%, +N, -N or a file holding one, got %q (no such file)", s)
end

--- --halt's forms, the old numeric ones mapped, into the API's spelling.
function M.halt_of(s)
  local old = { ["0"] = "never", ["1"] = "soon,fail=1", ["2"] = "now,fail=1",
                ["-1"] = "soon,success=1", ["-2"] = "now,success=1" }
  if old[s] then return old[s] end
  local pct = s:match("^(%d+%.?%d*)%%$")
  if pct and tonumber(pct) > 0 and tonumber(pct) < 100 then return "soon,fail=" .. pct .. "%" end
  local ok, err = pcall(require("luaconcurrent.control.halt").parse, s)
  if not ok then
    usage_error("--halt %q: give never, now|soon,fail|success|done=N or =N%%, or 0 1 2 -1 -2 N%% (%s)", s,
      (tostring(err):gsub("^luaconcurrent: ", "")))
  end
  return s
end

--- --termseq: the engine sends TERM, then KILL after a grace; the
-- sequences of that form (TERM,ms,...,KILL,ms; the TERMs between only
-- repeat it) map to the grace, others are refused. Returns seconds.
function M.termseq(spec)
  local items = {}
  for x in spec:gmatch("[^,]+") do items[#items + 1] = x end
  local ok = #items >= 2 and #items % 2 == 0 and items[1]:upper():gsub("^SIG", "") == "TERM"
    and items[#items - 1]:upper():gsub("^SIG", "") == "KILL"
  local grace = 0
  for i = 1, #items - 2, 2 do
    local sig, ms = items[i]:upper():gsub("^SIG", ""), tonumber(items[i + 1])
    if sig ~= "TERM" or not ms or ms < 0 then ok = false; break end
    grace = grace + ms
  end
  if not ok then
    usage_error("--termseq %q: lcparallel sends TERM, then KILL after a grace: give TERM,ms[,TERM,ms...],KILL,ms", spec)
  end
  return grace / 1000
end

--- A path we will write: a usage error now rather than a silent failure
-- after every job ran.
local function writable(what, path, mode)
  local f, err = io.open(path, mode or "a")
  if not f then usage_error("cannot write %s %s: %s", what, path, (tostring(err):gsub("^[^:]*: ", ""))) end
  f:close()
end

-- Options that go with others only, and pairs lcparallel refuses.
local function check_modes(o, hosts_given)
  if not (o.pipe or o.pipepart) then
    for _, name in ipairs({ "block", "recstart", "recend" }) do
      if o[name] then usage_error("%s goes with --pipe or --pipepart", o.given[name]) end
    end
  end
  if o.env and hosts_given then
    usage_error("--env with -S/--sshlogin is not supported by lcparallel (the hosts get their own environment)")
  end
  if (o.resume or o.retry_failed) and not o.joblog then
    usage_error("%s needs --joblog", o.given.resume or o.given.retry_failed)
  end
end

-- Where the jobs run: the hosts, and the jobs at once (-j).
local function placement(o, s)
  s.hosts = hosts.of(o)
  if o.jobs then
    if not (s.hosts and hostlib.cpu_rule(o.jobs)) then s.jobs = M.jobs_of(o.jobs) end
  elseif not s.hosts then
    s.jobs = core.cpu_count()
  end
  if s.hosts then s.hosts = hosts.with_slots(s.hosts, o.jobs) end
end

-- --timeout: seconds, or N% of the median run time (parallel/timeout.lua).
local function time_limit(o, s)
  if not o.timeout then return end
  local pct = timeout.percent(o.timeout)
  if pct and (o.pipe or o.pipepart or s.hosts) then
    usage_error("--timeout %s: a percentage of the median run time is for local jobs without --pipe;"
      .. " give seconds", o.timeout)
  end
  if pct then s.timeout_pct = pct else s.timeout = duration_of("--timeout", o.timeout) end
end

-- How jobs are tried, spaced, killed and halted.
local function run_control(o, s)
  local grace = o.termseq and M.termseq(o.termseq)
  time_limit(o, s)
  if o.retries then
    local n = whole_of("--retries", o.retries, number_of("--retries", o.retries))
    s.retries = math.max(n - 1, 0)          -- parallel's N is every try
  end
  s.retry_delay = o.retry_delay and number_of("--retry-delay", o.retry_delay)
  s.kill_grace = o.kill_grace and number_of("--kill-grace", o.kill_grace) or grace
  s.delay = o.delay and duration_of("--delay", o.delay)
  if o.nice then s.nice = whole_of("--nice", o.nice) end
  if o.halt then s.halt = M.halt_of(o.halt) end
end

-- The files the run writes: checked before any job runs.
local function files(o, s)
  if o.joblog then
    s.joblog_append = o.joblog:sub(1, 1) == "+"
    s.joblog = s.joblog_append and o.joblog:sub(2) or o.joblog
    writable("the joblog", s.joblog)
  end
  if o.results then
    local ext = o.results:match("%.(%a+)$")
    if ext == "csv" or ext == "tsv" or ext == "json" then
      s.results = { kind = ext, path = o.results }
      writable("the results", o.results, "w")
    else
      s.results = { kind = "dir", path = o.results }
      local ok = os.execute("mkdir -p -- " .. quote(o.results) .. " 2>/dev/null")
      if not ok then usage_error("cannot make the results directory %s", o.results) end
    end
  end
  if o.timeline then writable("the timeline", o.timeline) end
end

--- The settings of a run, checked.
function M.of(o)
  local s = {}
  check_modes(o, hosts.of(o) ~= nil)
  placement(o, s)
  run_control(o, s)
  files(o, s)
  return s
end

return M
