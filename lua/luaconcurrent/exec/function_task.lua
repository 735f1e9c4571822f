--- What the function-task executors share: the task function and its
-- fixed arguments taken from pargs, the args table a task gets, and the
-- result of a task that cannot be sent to a worker.

local ProcResult = require "luaconcurrent.result"

local M = {}

--- From pargs = {fn, fixed...}: fn, and args(arg) -> {fixed..., arg}.
function M.split(pargs)
  local fixed = {}
  for i = 2, #pargs do fixed[i - 1] = pargs[i] end
  local nfixed = #fixed
  local function args(arg)
    if nfixed == 0 then return { arg } end
    local t = { table.unpack(fixed, 1, nfixed) }
    t[nfixed + 1] = arg
    return t
  end
  return pargs[1], args
end

--- A task (from an iterator) whose key or args cannot reach a worker.
function M.unsendable(key, arg, err)
  return ProcResult.raised(ProcResult.new(key, arg), ProcResult.error_text(err))
end

return M
