-- Shared helpers for the luaconcurrent side of scripts/bench.sh.
-- Loaded with dofile() by the wN.lua scripts beside it.
local M = {}

M.args = arg or { ... }

function M.fail(fmt, ...)
  io.stderr:write("bench: FAIL: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

local function describe(r)
  return string.format(
    "key=%s success=%s timeout=%s exception=%s returncode=%s signal=%s error=%s #stdout=%s #stderr=%s stderr=%q",
    tostring(r.key), tostring(r.success), tostring(r.timeout), tostring(r.exception),
    tostring(r.returncode), tostring(r.signal), tostring(r.error),
    tostring(r.stdout and #r.stdout), tostring(r.stderr and #r.stderr),
    tostring(r.stderr):sub(1, 200))
end

-- Check that `results` holds exactly n results, in task order (key i at
-- index i), each satisfying pred(res) -> ok, why.  Exits 1 on the first bad one.
function M.verify(run, results, n, pred)
  if type(results) ~= "table" then
    M.fail("run_all() returned %s, expected a table of results", type(results))
  end
  if #results ~= n then
    M.fail("expected %d results, got %d", n, #results)
  end
  for i = 1, n do
    local r = results[i]
    if type(r) ~= "table" then M.fail("result %d is a %s", i, type(r)) end
    if r.key ~= i then M.fail("result %d has key %s (task order broken)", i, tostring(r.key)) end
    local ok, why = pred(r)
    if not ok then M.fail("result %d: %s: %s", i, why or "bad result", describe(r)) end
  end
  -- Engine-internal run time, for the harness's notes (stdout goes to a log).
  io.write(string.format("time_run=%.6f\n", tonumber(run.time_run) or -1))
end

return M
