--- lcparallel's host options: -S/--sshlogin, --slf, --slurm (in the
-- order given) into the API's hosts, and -j's CPU rules on each host.

local hostlib = require "luaconcurrent.remote.hosts"
local usage_error = require("luaconcurrent.parallel.args").usage_error

local M = {}

-- --slurm N: N job steps; 0 leaves the count to the allocation.
local function slurm_host(v, srun_options)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then usage_error("--slurm needs a number of slots, got %q", v) end
  return { slurm = true, slots = n > 0 and n or nil, srun_options = srun_options }
end

--- The hosts the options name, in their order; nil: run here.
function M.of(o)
  if not o.order then return nil end
  local hosts
  for _, entry in ipairs(o.order) do
    local key, v = entry[1], entry[2]
    if key == "slurm" or key == "sshlogin" or key == "slf" then hosts = hosts or {} end
    if key == "slurm" then
      hosts[#hosts + 1] = slurm_host(v, o.srun_options)
    elseif key == "slf" then
      for _, h in ipairs(hostlib.read_file(v)) do hosts[#hosts + 1] = h end
    elseif key == "sshlogin" then
      for h in v:gmatch("[^,]+") do hosts[#hosts + 1] = h end
    end
  end
  return hosts
end

--- -S hosts with -j N%, +N or -N: each host that names no slots gets the
-- rule, worked out from its own CPU count at its handshake.
function M.with_slots(hosts, jobs)
  if not (jobs and hostlib.cpu_rule(jobs)) then return hosts end
  local t = {}
  for i, spec in ipairs(hosts) do
    if type(spec) == "string" and not spec:match("^%s*%d+/") then
      spec = hostlib.parse(spec, i)
      spec.slots = jobs
    end
    t[i] = spec
  end
  return t
end

return M
