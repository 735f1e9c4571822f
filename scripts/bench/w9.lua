-- W9: many short tasks on four remote hosts over ssh.
-- usage: w9.lua NTASKS SLOTS SSHDIR PORT [MODE=engine|lua|local] [LUACONCURRENT] [ADDRS]
-- N x /bin/true on root@ADDR:PORT for each address of ADDRS (comma
-- separated; default 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5: the bench's
-- private sshds, their client key SSHDIR/id), SLOTS slots each. MODE
-- engine: the hosts run LUACONCURRENT --remote-worker (default: this
-- executable), lua: the plain-Lua worker, local: no host (the same tasks
-- run here with as many slots as all the hosts have, for the baseline).
-- Only run_all is timed (it includes the ssh handshakes); prints elapsed=
-- and time_run=, and with hosts, the tasks each ran (per_host=).
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local now = core.now

local n = math.tointeger(tonumber(B.args[1]) or 2000)
local slots = math.tointeger(tonumber(B.args[2]) or 2)
local dir, port, mode = B.args[3], tonumber(B.args[4]), B.args[5] or "engine"
local _, self_exe = core.host()
local exe = B.args[6] ~= nil and B.args[6] ~= "" and B.args[6] or self_exe
local addrs = {}
for a in (B.args[7] or "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"):gmatch("[^,]+") do addrs[#addrs + 1] = a end

local opts = { num_workers = slots * #addrs }
if mode ~= "local" then
  opts.num_workers = nil
  opts.hosts = {}
  for i, addr in ipairs(addrs) do
    opts.hosts[i] = { host = addr, user = "root", port = port, slots = slots,
      luaconcurrent = mode == "engine" and exe or false,
      ssh_options = { "-i", dir .. "/id", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR" } }
  end
end
local tasks = {}
for i = 1, n do tasks[i] = { i } end
local run = lc.ProcRunAsyncio({ "/bin/true" }, tasks, opts)
local t0 = now()
local res = run:run_all()
local elapsed = now() - t0
local per_host = {}
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if mode ~= "local" and r.remote_mode ~= mode then return false, "ran in mode " .. tostring(r.remote_mode) end
  if r.host then per_host[r.host] = (per_host[r.host] or 0) + 1 end
  return true
end)
if mode ~= "local" then
  local t = {}
  for _, h in ipairs(opts.hosts) do t[#t + 1] = tostring(per_host["root@" .. h.host .. ":" .. port] or 0) end
  io.write("per_host=", table.concat(t, ","), "\n")
end
io.write(string.format("elapsed=%.6f\n", elapsed))
