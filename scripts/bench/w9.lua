-- W9: many short tasks on one remote host over ssh.
-- usage: w9.lua NTASKS SLOTS SSHDIR PORT [MODE=engine|lua|local] [LUACONCURRENT]
-- N x /bin/true on root@127.0.0.1:PORT (the bench's private sshd, its
-- client key SSHDIR/id) with SLOTS slots; MODE engine: the host runs
-- LUACONCURRENT --remote-worker (default: this executable), lua: the
-- plain-Lua worker, local: no host (the same tasks run here, for the
-- baseline). Only run_all is timed (it includes the ssh handshake, about
-- one connection's worth); prints elapsed=, handshake= and time_run=.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local now = core.now

local n = math.tointeger(tonumber(B.args[1]) or 2000)
local slots = math.tointeger(tonumber(B.args[2]) or 2)
local dir, port, mode = B.args[3], tonumber(B.args[4]), B.args[5] or "engine"
local _, self_exe = core.host()
local exe = B.args[6] or self_exe

local opts = { num_workers = slots }
if mode ~= "local" then
  opts.hosts = { { host = "127.0.0.1", user = "root", port = port, slots = slots,
    luaconcurrent = mode == "engine" and exe or false,
    ssh_options = { "-i", dir .. "/id", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
      "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR" } } }
end
local tasks = {}
for i = 1, n do tasks[i] = { i } end
local run = lc.ProcRunAsyncio({ "/bin/true" }, tasks, opts)
local t0 = now()
local res = run:run_all()
local elapsed = now() - t0
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if mode ~= "local" and r.remote_mode ~= mode then return false, "ran in mode " .. tostring(r.remote_mode) end
  return true
end)
io.write(string.format("elapsed=%.6f\n", elapsed))
