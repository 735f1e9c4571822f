--- halt: GNU parallel's policies for ending a run early.
--
--   "never"                        the default
--   "soon,fail=N" | "now,fail=N"   after N failed tasks
--   "soon,fail=P%" ...             after P % of the tasks failed
--   "soon,success=N" | "...=P%"    the same, counting successes
--   "soon,done=N" | "...=P%"       the same, counting every finished task
-- soon: no new task starts; the running ones finish. now: the running ones
-- are killed too. A percentage is of all tasks when their number is known
-- (a list, or an iterator that has ended), otherwise of the tasks finished
-- so far once at least three have.

local validate = require "luaconcurrent.validate"

local M = {}

--- Parse a policy; raises a named error for a bad one. nil for "never".
function M.parse(spec)
  if spec == nil or spec == "never" then return nil end
  if type(spec) ~= "string" then
    validate.fail("halt must be a string such as \"now,fail=1\", got %s", type(spec))
  end
  local when, what, n, pct = spec:match("^(%a+),(%a+)=(%d+%.?%d*)(%%?)$")
  if not when or (when ~= "now" and when ~= "soon")
      or (what ~= "fail" and what ~= "success" and what ~= "done") then
    validate.fail("halt must be \"never\" or \"now|soon,fail|success|done=N[%%]\", got %s",
      validate.show(spec))
  end
  n = tonumber(n)
  if n <= 0 or (pct == "" and n ~= math.floor(n)) or (pct ~= "" and n > 100) then
    validate.fail("halt's threshold must be a whole number above 0 or a percentage in (0, 100], got %s",
      validate.show(spec))
  end
  return { when = when, what = what, n = n, percent = pct ~= "", spec = spec }
end

--- After each final result: "soon" or "now" when the policy is met.
-- counts: { fail =, success =, done = }; total: number of tasks or nil.
function M.reached(policy, counts, total)
  if not policy then return nil end
  local c = counts[policy.what]
  if policy.percent then
    local base = total or (counts.done >= 3 and counts.done) or nil
    if not base or base == 0 or c * 100 < policy.n * base then return nil end
  elseif c < policy.n then
    return nil
  end
  return policy.when
end

return M
