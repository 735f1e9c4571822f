-- luaconcurrent.cli — running declarative task files from the executable.
--
-- A task file is a Lua script that returns a table:
--   return { pargs = {"/bin/echo"}, tasks = {{1, "a"}, {2, "b"}},
--            num_workers = 4, timeout = 30, mode = "asyncio" }
-- `mode` is "asyncio" (default) or "mp"; every other field except pargs and
-- tasks is passed to the runner as an option (the runner rejects unknown
-- ones). `luaconcurrent tasks.lua` runs it via run_task_file.

local M = {}

-- Errors about a task file name the file: opts.name, else the script the
-- executable is running (arg[0], set as lua5.4 sets it).
local function file_name(opts)
  if type(opts.name) == "string" then return opts.name end
  local a = rawget(_G, "arg")
  if type(a) == "table" and type(a[0]) == "string" then
    return a[0] == "-" and "stdin" or a[0]
  end
  return "task file"
end

local function fail(opts, msg)
  error("luaconcurrent: " .. file_name(opts) .. ": " .. msg, 0)
end

-- A runner's own "luaconcurrent: ..." error, with the file's name put in.
local function refail(opts, err)
  if type(err) == "string" then
    local rest = err:match("^luaconcurrent: (.*)$")
    if rest then fail(opts, rest) end
  end
  error(err, 0)
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

-- Runs the task file `tbl`; opts.json selects the JSON output.
-- Returns the process exit status: 0 if every task succeeded, else 1.
function M.run_task_file(tbl, opts)
  opts = opts or {}
  -- Before any task runs: without lua-cjson, --json could not report them.
  if opts.json then require("luaconcurrent.result").cjson() end
  if type(tbl) ~= "table" then
    fail(opts, "a task file must return a table, got " .. type(tbl))
  end
  if tbl.pargs == nil then fail(opts, "task file has no 'pargs'") end
  if tbl.tasks == nil then fail(opts, "task file has no 'tasks'") end
  local mode = tbl.mode
  if mode == nil then mode = "asyncio" end
  if mode ~= "asyncio" and mode ~= "mp" then
    fail(opts, 'mode must be "asyncio" or "mp", got ' .. describe(mode))
  end

  local options = {}
  for k, v in pairs(tbl) do
    if k ~= "pargs" and k ~= "tasks" and k ~= "mode" then
      if type(k) ~= "string" then
        fail(opts, "task file has a non-string field " .. describe(k))
      end
      options[k] = v
    end
  end

  local lc = require "luaconcurrent"
  local ctor = (mode == "mp") and lc.ProcRunMp or lc.ProcRunAsyncio
  local built, run = pcall(ctor, tbl.pargs, tbl.tasks, options)
  if not built then refail(opts, run) end
  local ok, err = pcall(run.run_all, run)

  if opts.json then
    local cjson = require("luaconcurrent.result").cjson()
    local enc = cjson.encode
    local results = {}
    for i, res in ipairs(run.result or {}) do
      -- every result is written; a field that cannot be is null, named in
      -- the result's "unencoded" and here
      local json, unencoded = res:to_json_checked()
      results[i] = json
      for name, why in pairs(unencoded or {}) do
        io.stderr:write(string.format("luaconcurrent: --json: result %d (key %s): %s written as null: %s\n",
          i, describe(res.key), name, why))
      end
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
