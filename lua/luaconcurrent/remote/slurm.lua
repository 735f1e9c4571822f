--- Slurm as a kind of host: `{ slurm = true, slots = N, srun_options =
-- {...}, srun =, lua =, luaconcurrent =, env =, heartbeat = }` in hosts.
--
-- Each slot is one session of one slot: the remote worker (the same one an
-- ssh session runs) started as a job step, `srun --exact -N1 -n1 -u ...`,
-- speaking the same frames over srun's stdio. One step per slot for the
-- whole run, never one per task: a step costs slurmctld an RPC and a
-- record, and thousands of short steps overwhelm it. Deadlines stay ours
-- (srun -t counts minutes). A step that does not start is a host failure,
-- retried with backoff like a refused ssh.
--
-- Inside an allocation (SLURM_JOB_ID set, or --jobid given) the steps share
-- it: --exact gives each step only its one CPU, and --mem=0 gives a step
-- the job's memory without reserving any of it against the other steps
-- (srun(1); Slurm still shows each step with the job's whole memory), so
-- the slots' steps run side by side instead of waiting for each other.
-- Outside one, each srun makes its own one-task job.

local validate = require "luaconcurrent.validate"
local wire = require "luaconcurrent.remote.wire"

local M = {}

local fail, words = validate.fail, wire.words

local function executable(path)
  -- io.open succeeds on directories too; "rb" + read tells them apart.
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(0) ~= nil or f:seek("end") == 0
  f:close()
  return ok
end

--- Where srun is: the path given, else the first on PATH; nil if none.
function M.find_srun(prog)
  if prog:find("/", 1, true) then return executable(prog) and prog or nil end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if executable(dir .. "/" .. prog) then return dir .. "/" .. prog end
  end
end

--- The slots of a Slurm host: its own, else num_workers (default_slots),
-- else the allocation's task count.
local function slots_of(spec, i, default_slots)
  if spec.slots == nil and default_slots then return default_slots end
  if spec.slots ~= nil then
    if math.type(spec.slots) ~= "integer" or spec.slots < 1 then
      fail("hosts[%d].slots must be a positive integer", i)
    end
    return spec.slots
  end
  local n = tonumber(os.getenv("SLURM_NTASKS") or "")
  if math.type(n) == "integer" and n >= 1 then return n end
  fail("hosts[%d] (slurm) needs slots = N, or must run inside a Slurm allocation "
    .. "(salloc/sbatch), which sets SLURM_NTASKS; neither is given", i)
end

local function options_of(spec, i)
  local o = spec.srun_options
  if type(o) == "string" then o = words(o) end
  if o == nil then return {} end
  if type(o) ~= "table" then fail("hosts[%d].srun_options must be a list of strings (or one string)", i) end
  for k, v in ipairs(o) do
    if type(v) ~= "string" then fail("hosts[%d].srun_options[%d] must be a string", i, k) end
  end
  return o
end

--- A `slurm = true` host spec -> one host table per slot, each checked by
-- parse (the table form's checks: lua, luaconcurrent, env, heartbeat).
function M.expand(spec, i, parse, default_slots)
  local n = slots_of(spec, i, default_slots)
  local options = options_of(spec, i)
  if spec.srun ~= nil and (type(spec.srun) ~= "string" or spec.srun == "") then
    fail("hosts[%d].srun must be a path", i)
  end
  local srun = M.find_srun(spec.srun or "srun")
  if not srun then
    fail("hosts[%d] (slurm): %s not found%s (install Slurm's client, e.g. Debian's slurm-client, "
      .. "or set the host's srun = path)", i, spec.srun or "srun", spec.srun and "" or " on PATH")
  end
  local t = {}
  for k = 1, n do
    -- A step waiting for its resources is a session not up yet: no hello
    -- deadline unless one is given (tasks run on the steps that are up).
    local h = parse({ host = "slurm", lua = spec.lua, luaconcurrent = spec.luaconcurrent, env = spec.env,
      heartbeat = spec.heartbeat, hello_timeout = spec.hello_timeout or math.huge }, i)
    h.slurm, h.slots, h.step, h.srun, h.srun_options = true, 1, k, srun, options
    t[k] = h
  end
  return t
end

local function in_allocation(options)
  if os.getenv("SLURM_JOB_ID") then return true end
  for _, o in ipairs(options) do
    if o:match("^%-%-jobid") then return true end
  end
  return false
end

--- The command line of one slot's step, running `remote` (a shell command).
function M.argv(h, remote)
  local argv = { h.srun, "--exact", "-N1", "-n1", "-u", "--job-name=luaconcurrent" }
  if in_allocation(h.srun_options) then argv[#argv + 1] = "--mem=0" end
  -- The user's options last: srun takes the last of a repeated option.
  for _, o in ipairs(h.srun_options) do argv[#argv + 1] = o end
  argv[#argv + 1] = "sh"
  argv[#argv + 1] = "-c"
  argv[#argv + 1] = remote
  return argv
end

--- A step's name in results: the node its worker said it runs on.
function M.node_name(node)
  return (node and node ~= "") and node or "slurm"
end

return M
