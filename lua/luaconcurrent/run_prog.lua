--- run_prog: run one program to completion, feeding input, capturing output.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"

local OPTIONS = {
  input = true, env = true, cwd = true, timeout = true, test = true, verb = true,
  kill_grace = true,
}

--- Returns retc, stdout, stderr, res. retc is the exit status, -signum when
-- killed by a signal (a timeout too), -1 when the program could not start
-- (stderr then holds the reason). res is the full ProcResult.
local function run_prog(pargs, opts)
  validate.pargs(pargs)
  if type(pargs[1]) == "function" then
    validate.fail("run_prog runs programs; pargs[1] must be a string, got function")
  end
  opts = validate.options(opts, OPTIONS)
  local argv = {}
  for i, v in ipairs(pargs) do argv[i] = tostring(v) end
  if opts.test then
    if opts.verb then print(table.concat(argv, " ")) end
    local res = ProcResult.new(nil, nil)
    res.success, res.returncode = true, 0
    return 0, "", "", res
  end

  local loop <close> = core.new_loop()
  local envblock = opts.env and core.envblock(opts.env) or nil
  local id, message, errname = loop:spawn(argv, envblock, opts.cwd, opts.input,
    opts.timeout or 0, opts.kill_grace or 0.1)
  if not id then
    local res = ProcResult.spawn_failure(nil, nil, message, errname)
    return -1, "", message, res
  end
  local records = loop:poll()
  while #records == 0 do records = loop:poll() end
  local res = ProcResult.from_record(nil, nil, records[1], opts.timeout)
  return res.returncode, res.stdout, res.stderr, res
end

return run_prog
