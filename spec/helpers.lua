-- Shared helpers for the luaconcurrent specs.
--
-- * leak checking: the set of open fds of this process and its children
--   (zombies included), snapshot before a test and compared after it;
-- * finding processes by a marker string in /proc/*/cmdline;
-- * running a Lua fixture in a child `lua5.4` with the project's paths;
-- * clocks (luasystem ships with busted).

local lfs = require "lfs"
local system = require "system"

local M = {}

M.ROOT = lfs.currentdir()
M.FIXTURES = M.ROOT .. "/spec/fixtures"

M.mono = system.monotime -- seconds, monotonic
M.now = system.gettime   -- epoch seconds, float

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.read_file = read_file

--- Write s to path (binary), raising if it cannot.
function M.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

--- The lines of the file at path (none if it cannot be opened).
function M.file_lines(path)
  local t = {}
  local f = io.open(path, "rb")
  if not f then return t end
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

--- A fresh temporary path that does not exist yet.
function M.tmp_path()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function self_pid()
  return tonumber(lfs.symlinkattributes("/proc/self", "target"))
end
M.self_pid = self_pid

--- Open fds of this process: { [fd] = link target }.
-- The directory iterator's own fd (a link to /proc/<pid>/fd) is left out,
-- and so is the lock on this process's cgroup base (src/reap.c), held from
-- its first task in a cgroup until it exits.
function M.fds()
  local own_dir = "/proc/" .. self_pid() .. "/fd"
  local own_base = "/luaconcurrent." .. self_pid()
  local set = {}
  for name in lfs.dir("/proc/self/fd") do
    if name:match("^%d+$") then
      local target = lfs.symlinkattributes("/proc/self/fd/" .. name, "target")
      if target ~= nil and target ~= own_dir and target:sub(-#own_base) ~= own_base then
        set[tonumber(name)] = target
      end
    end
  end
  return set
end

--- Children of every thread of this process (zombies included), sorted.
function M.children()
  local list = {}
  for tid in lfs.dir("/proc/self/task") do
    if tid:match("^%d+$") then
      local s = read_file("/proc/self/task/" .. tid .. "/children")
      if s then
        for p in s:gmatch("%d+") do list[#list + 1] = tonumber(p) end
      end
    end
  end
  table.sort(list)
  return list
end

--- A short description of a process: "pid state (cmdline)".
function M.describe_pid(pid)
  local stat = read_file("/proc/" .. pid .. "/stat") or ""
  local state = stat:match("^%d+ %b() (%S)") or "?"
  local cmd = (read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
  return string.format("%d %s (%s)", pid, state, cmd)
end

function M.snapshot()
  return { fds = M.fds(), children = M.children() }
end

--- Compare the current state with `before` (from snapshot()); returns a
-- list of problems (empty when nothing leaked).
function M.leaks(before)
  local problems = {}
  local now_fds = M.fds()
  for fd, target in pairs(now_fds) do
    if before.fds[fd] == nil then
      problems[#problems + 1] = string.format("fd %d leaked (-> %s)", fd, target)
    end
  end
  for fd, target in pairs(before.fds) do
    if now_fds[fd] == nil then
      problems[#problems + 1] = string.format("fd %d (-> %s) was closed behind our back", fd, target)
    end
  end
  local old = {}
  for _, p in ipairs(before.children) do old[p] = true end
  for _, p in ipairs(M.children()) do
    if not old[p] then
      problems[#problems + 1] = "child process left behind: " .. M.describe_pid(p)
    end
  end
  table.sort(problems)
  return problems
end

--- Raise an error if anything leaked since `before`. Leaked children are
-- SIGKILLed (they stay zombies: plain Lua cannot reap) so that the next
-- test is not disturbed more than necessary.
function M.assert_no_leaks(before)
  local problems = M.leaks(before)
  if #problems > 0 then
    for _, p in ipairs(M.children()) do
      os.execute("kill -KILL " .. p .. " 2>/dev/null")
    end
    error("leak check failed:\n  " .. table.concat(problems, "\n  "), 2)
  end
end

--- Register the leak check around every test of the enclosing describe.
-- Usage (inside describe): helpers.leak_check(before_each, after_each)
function M.leak_check(before_each, after_each)
  local snap
  before_each(function() snap = M.snapshot() end)
  after_each(function() M.assert_no_leaks(snap) end)
end

--- pids of processes whose command line contains `marker` (plain text).
function M.find_marker(marker)
  local me = self_pid()
  local found = {}
  for name in lfs.dir("/proc") do
    local pid = tonumber(name)
    if pid and name:match("^%d+$") and pid ~= me then
      local cmd = read_file("/proc/" .. name .. "/cmdline")
      if cmd and cmd:gsub("%z", " "):find(marker, 1, true) then
        found[#found + 1] = pid
      end
    end
  end
  table.sort(found)
  return found
end

--- Poll `pred` (bounded, a few ms apart) until it returns true; returns
-- whether it did before `bound` seconds passed. For conditions on other
-- processes, not as a substitute for synchronisation with the engine.
function M.wait_until(pred, bound)
  local deadline = M.mono() + (bound or 2)
  while true do
    if pred() then return true end
    if M.mono() > deadline then return false end
    system.sleep(0.005)
  end
end

--- Poll (bounded) until no process carries `marker`; returns the list of
-- pids still found when the bound expired (empty on success).
-- A process that got SIGKILL may need a moment to disappear from /proc.
function M.wait_marker_gone(marker, bound)
  local deadline = M.mono() + (bound or 2)
  while true do
    local left = M.find_marker(marker)
    if #left == 0 or M.mono() > deadline then return left end
    system.sleep(0.02)
  end
end

--- SIGKILL every process carrying `marker` (cleanup of escaped processes).
function M.kill_marker(marker)
  for _, pid in ipairs(M.find_marker(marker)) do
    os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  end
end

--- A unique "sleep 30.<digits>" argument: sleeps 30 s, findable in /proc.
local seeded = false
function M.marker()
  if not seeded then
    math.randomseed(os.time(), self_pid())
    seeded = true
  end
  return string.format("30.%d%06d", self_pid() % 1000, math.random(0, 999999))
end

--- Shell-quote one word.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Shell prefix that makes a child lua5.4 find the project's modules.
function M.lua_env()
  return "LUA_PATH=" .. M.q(M.ROOT .. "/lua/?.lua;" .. M.ROOT .. "/lua/?/init.lua;" .. M.ROOT .. "/spec/?.lua;;")
      .. " LUA_CPATH=" .. M.q(M.ROOT .. "/build/lib/?.so;;")
end

--- Run a shell command; returns stdout, stderr, exit code.
-- (io.popen + a temp file for stderr; the child is reaped by close.)
function M.sh(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen("(" .. cmd .. ") 2>" .. M.q(errfile), "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local err = read_file(errfile) or ""
  os.remove(errfile)
  return out, err, code
end

--- Run a fixture script (spec/fixtures/<name>) under lua5.4.
-- `pre` is an optional shell prefix (e.g. "ulimit -n 20;").
function M.run_fixture(name, args, pre)
  local words = {}
  for _, a in ipairs(args or {}) do words[#words + 1] = M.q(a) end
  local cmd = (pre or "") .. " " .. M.lua_env() .. " exec lua5.4 "
      .. M.q(M.FIXTURES .. "/" .. name) .. " " .. table.concat(words, " ")
  return M.sh(cmd)
end

--- Run a Lua snippet in a child lua5.4 (chunk given on the command line).
function M.run_lua(code, pre)
  local cmd = (pre or "") .. " " .. M.lua_env() .. " exec lua5.4 -e " .. M.q(code)
  return M.sh(cmd)
end

--- Keys of a set, sorted, as a string (for messages).
function M.setstr(set)
  local ks = {}
  for k in pairs(set) do ks[#ks + 1] = tostring(k) end
  table.sort(ks)
  return table.concat(ks, ",")
end

--- How many results succeeded.
function M.count_success(results)
  local n = 0
  for _, r in ipairs(results) do if r.success then n = n + 1 end end
  return n
end

--- Threads of this process (thread workers must all be joined after a run).
function M.nthreads()
  local n = 0
  for name in lfs.dir("/proc/self/task") do
    if name:match("^%d+$") then n = n + 1 end
  end
  return n
end

--- Around every test of the enclosing describe: no worker thread left.
function M.thread_check(before_each, after_each)
  local before
  before_each(function() before = M.nthreads() end)
  after_each(function()
    local now = M.nthreads()
    if now ~= before then
      error(string.format("worker threads left running: %d threads, %d before", now, before), 2)
    end
  end)
end

--- Number of elements of a table (any keys).
function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

--- The message inside a bad-argument error ("where: bad argument #n to 'f'
-- (luaconcurrent: ...)" gives "luaconcurrent: ..."); other values as they are.
function M.inner_error(err)
  if type(err) ~= "string" then return err end
  return err:match("bad argument #%d+ to '[^']+' %((luaconcurrent: .*)%)$") or err
end

--- Calls fn(...) and re-raises an error as its inner message (see
-- inner_error), for specs written against the message alone.
function M.unwrap(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then error(M.inner_error(err), 0) end
  return err
end

return M
