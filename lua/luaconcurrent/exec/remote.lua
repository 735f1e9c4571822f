--- Executor: subprocess tasks on other hosts over OpenSSH (hosts = {...}).
-- The body is lua/luaconcurrent/remote/executor.lua, loaded when a run uses
-- hosts: every run loads this file, few use it (and the executable embeds
-- exec/ but not remote/). The remote worker is remote/worker.lua.

local M = {}

function M.check(cfg)
  if type(cfg.pargs[1]) == "function" and cfg.input ~= nil then
    return "hosts: input applies to subprocess tasks"
  end
end

function M.new(cfg, loop, finish)
  return require("luaconcurrent.remote.executor").new(cfg, loop, finish)
end

--- Mean round trip over one host's channel (see remote/executor.lua).
function M.ping(spec, n)
  return require("luaconcurrent.remote.executor").ping(spec, n)
end

return M
