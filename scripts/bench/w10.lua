-- W10: many hosts. 32 loopback hosts (two private sshds, each listening on
-- 16 of 127.0.0.10-41: sshd takes at most 16 listen addresses), 1 slot
-- each, 128 `echo` tasks; then GNU parallel with the same 32 -S logins.
-- usage: build/luaconcurrent scripts/bench/w10.lua [NHOSTS=32] [NTASKS=128] [MODE=engine|lua] [RUNS=3] [SLEEP=0]
-- (SLEEP > 0: each task sleeps that long before its echo, so that the run
-- lasts until every host is up and the time to all hosts up is seen; 128
-- bare echos end before most hosts have said hello.)
-- Prints, per run: the time to the first result, to every host up, the
-- whole run (run_all), and the runner's peak RSS (with SLEEP > 0 also the
-- floor: every host's bare `ssh HOST true` at once); for GNU parallel the
-- time to its first output line and the whole run. W10_PARALLEL=0 skips
-- GNU parallel, W10_LC=0 skips luaconcurrent (scripts/bench/run.lua runs
-- them as separate processes, each under its own guard). Needs root and
-- openssh-server (spec/fixtures/sshd_start.sh starts the servers; they are
-- killed at the end).
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local ROOT = here .. "/../.."
local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local remote_executor = require "luaconcurrent.remote.executor"
local now = core.now

local nhosts = math.tointeger(tonumber(arg[1]) or 32)
local ntasks = math.tointeger(tonumber(arg[2]) or 128)
local mode = arg[3] or "engine"
local runs = math.tointeger(tonumber(arg[4]) or 3)
local sleep = tonumber(arg[5]) or 0
local _, exe = core.host()

local function sh(cmd)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local dir = os.tmpname()
os.remove(dir)
local port = 24000 + math.random(0, 999)
local addrs, listen = {}, { {}, {} }
for i = 1, nhosts do
  addrs[i] = "127.0.0." .. (9 + i)
  local l = listen[i <= 16 and 1 or 2]
  l[#l + 1] = addrs[i]
end
local groups = {}
for _, l in ipairs(listen) do if #l > 0 then groups[#groups + 1] = table.concat(l, ",") end end
io.stdout:setvbuf("line")   -- a run killed by its guard keeps the lines so far
-- LC_SSHD_OWNER: the servers go when this process does, however it ends.
local out, ok = sh("LC_SSHD_OWNER=$PPID " .. q(ROOT .. "/spec/fixtures/sshd_start.sh") .. " " .. q(dir) .. " " .. port .. " 100:30:200 100 "
  .. table.concat(groups, " "))
if not ok then io.stderr:write("W10 skipped: sshd could not start\n"); os.exit(0) end
local pids = {}
for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
local function cleanup()
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
  os.execute("rm -rf " .. q(dir))
end
-- Wait until every address answers.
local deadline = now() + 10
repeat
  local tcp = io.open("/proc/net/tcp"):read("a")
  local n = select(2, tcp:gsub(string.format(":%04X 00000000:0000 0A", port), ""))
  if n >= nhosts then break end
  os.execute("sleep 0.05")
until now() > deadline

local SSH_OPTS = { "-i", dir .. "/id", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
  "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR" }

local function vm_hwm()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

local function lc_run()
  local hosts = {}
  for i, addr in ipairs(addrs) do
    hosts[i] = { host = addr, user = "root", port = port, slots = 1, ssh_options = SSH_OPTS,
      luaconcurrent = mode == "engine" and exe or false }
  end
  local tasks = {}
  for i = 1, ntasks do tasks[i] = { i, "t" .. i } end
  local t0, first, all_up, ups, seen = now(), nil, nil, 0, {}
  -- Each host counts once (a session lost and made again says up again).
  remote_executor.on_trace = function(name, text)
    if text:match("^up:") and not seen[name] then
      seen[name], ups = true, ups + 1
      if ups == nhosts then all_up = now() - t0 end
    end
  end
  local pargs = sleep > 0 and { "sh", "-c", "sleep " .. sleep .. "; echo \"$0\"" } or { "echo" }
  local r = lc.ProcRunAsyncio(pargs, tasks, { hosts = hosts,
    on_result = function() first = first or (now() - t0) end }):run_all()
  local wall = now() - t0
  remote_executor.on_trace = nil
  local bad, where = 0, {}
  for i, res in ipairs(r) do
    if not (res.success and res.stdout == "t" .. i .. "\n") then bad = bad + 1 end
    if res.host then where[res.host] = true end
  end
  local nwhere = 0
  for _ in pairs(where) do nwhere = nwhere + 1 end
  return first, all_up, wall, bad, nwhere
end

-- The floor of "all hosts up": every host's bare `ssh HOST true`, all at
-- once, the same logins. On loopback the hosts' sshd and login shell share
-- this machine's CPUs with the clients, so this is what a handshake costs
-- here; luaconcurrent's "all up" adds its worker's start and the ramp.
local function ssh_floor()
  local cmds = {}
  for i, addr in ipairs(addrs) do
    cmds[i] = "ssh " .. table.concat(SSH_OPTS, " ") .. " -o BatchMode=yes -T -p " .. port .. " root@" .. addr
      .. " true </dev/null >/dev/null 2>&1 &"
  end
  local t0 = now()
  sh(table.concat(cmds, "\n") .. "\nwait")
  return now() - t0
end

local function parallel_run()
  local logins = {}
  for i, addr in ipairs(addrs) do
    logins[i] = "-S " .. q("1/ssh " .. table.concat(SSH_OPTS, " ") .. " -p " .. port .. " root@" .. addr)
  end
  local cmd = "parallel " .. table.concat(logins, " ") .. " echo ::: $(seq 1 " .. ntasks .. ") 2>&1"
  local t0 = now()
  local p = io.popen(cmd, "r")
  local first, n = nil, 0
  for _ in p:lines() do
    first = first or (now() - t0)
    n = n + 1
  end
  p:close()
  return first, now() - t0, n
end

io.write(string.format("W10: %d loopback hosts (2 sshds), 1 slot each, %d x %secho, luaconcurrent %s mode\n",
  nhosts, ntasks, sleep > 0 and ("sleep " .. sleep .. "; ") or "", mode))
local ok_run, err = pcall(function()
  for k = 1, os.getenv("W10_LC") == "0" and 0 or runs do
    local first, up, wall, bad, nwhere = lc_run()
    io.write(string.format("lc       run %d: first result %.3f s, all %d hosts up %s, total %.3f s, %d hosts used, "
      .. "%d bad results, peak RSS %d kB\n", k, first or -1, nhosts, up and string.format("%.3f s", up) or "never",
      wall, nwhere, bad, vm_hwm()))
    if sleep > 0 then
      io.write(string.format("ssh floor run %d: %d x `ssh HOST true` at once, all done %.3f s\n", k, nhosts, ssh_floor()))
    end
  end
  if os.getenv("W10_PARALLEL") ~= "0" then
    for k = 1, math.min(runs, 2) do
      local first, wall, n = parallel_run()
      io.write(string.format("parallel run %d: first output %.3f s, total %.3f s, %d lines\n", k, first or -1, wall, n))
    end
  end
end)
cleanup()
if not ok_run then error(err, 0) end
