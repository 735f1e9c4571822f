-- luaconcurrent.cli — running declarative task files from the executable.
--
-- A task file is a Lua script that returns a table:
--   return { pargs = {"/bin/echo"}, tasks = {{1, "a"}, {2, "b"}},
--            num_workers = 4, timeout = 30, mode = "asyncio" }
-- `mode` is "asyncio" (default) or "mp"; every other field except pargs and
-- tasks is passed to the runner as an option (the runner rejects unknown
-- ones). `luaconcurrent tasks.lua` runs it via run_task_file.

local M = {}

local function fail(msg)
  error("luaconcurrent: " .. msg, 0)
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

-- Runs the task file `tbl`; opts.json selects the JSON output.
-- Returns the process exit status: 0 if every task succeeded, else 1.
function M.run_task_file(tbl, opts)
  opts = opts or {}
  if type(tbl) ~= "table" then
    fail("a task file must return a table, got " .. type(tbl))
  end
  if tbl.pargs == nil then fail("task file has no 'pargs'") end
  if tbl.tasks == nil then fail("task file has no 'tasks'") end
  local mode = tbl.mode
  if mode == nil then mode = "asyncio" end
  if mode ~= "asyncio" and mode ~= "mp" then
    fail('mode must be "asyncio" or "mp", got ' .. describe(mode))
  end

  local options = {}
  for k, v in pairs(tbl) do
    if k ~= "pargs" and k ~= "tasks" and k ~= "mode" then
      if type(k) ~= "string" then
        fail("task file has a non-string field " .. describe(k))
      end
      options[k] = v
    end
  end

  local lc = require "luaconcurrent"
  local ctor = (mode == "mp") and lc.ProcRunMp or lc.ProcRunAsyncio
  local run = ctor(tbl.pargs, tbl.tasks, options)
  local ok, err = pcall(run.run_all, run)

  if opts.json then
    local cjson = require "cjson"
    local enc = cjson.encode
    local results = {}
    for i, res in ipairs(run.result or {}) do
      results[i] = res:to_json()
    end
    local doc = table.concat({
      '{"ok":', enc(run.ok and true or false),
      ',"time_start":', enc(run.time_start),
      ',"time_end":', enc(run.time_end),
      ',"time_run":', enc(run.time_run),
      ',"results":[', table.concat(results, ","), "]}\n",
    })
    io.stdout:write(doc)
  else
    run:print_results()
  end
  io.stdout:flush()
  -- Interrupted (Ctrl-C, SIGTERM): the partial results are out; now fail.
  if not ok then error(err, 0) end
  return run.ok and 0 or 1
end

return M
