-- luaconcurrent.cli — running declarative task files from the executable.
--
-- A task file is a Lua script that returns a table:
--   return { pargs = {"/bin/echo"}, tasks = {{1, "a"}, {2, "b"}},
--            num_workers = 4, timeout = 30, mode = "asyncio" }
-- `mode` is "coroutine" (default), "thread" or "process", as for lc.run
-- ("asyncio" and "mp", pyconcurrent's names, are "coroutine" and
-- "thread"); every other field except pargs and tasks is passed to the
-- runner as an option (the runner rejects unknown ones).
-- `luaconcurrent tasks.lua` runs it via run_task_file.

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

-- The line of the task file that sets field `name` (`name =` at the start
-- of a field), or nil: the source is read again, so this is a best guess
-- that holds for the way task files are written.
local function line_of(opts, name)
  if type(name) ~= "string" or not name:find("^[%a_][%w_]*$") then return nil end
  local path = file_name(opts)
  local f = path ~= "stdin" and io.open(path, "r")
  if not f then return nil end
  local n = 0
  for l in f:lines() do
    n = n + 1
    if l:find("%f[%w_]" .. name .. "%s*=[^=]") then f:close(); return n end
  end
  f:close()
end

-- A task-file error is the user's, not ours: one line, "file:line: what",
-- with no traceback into this module. It is printed here and the run
-- ends with status 1 (raising would add the executable's traceback).
local Fail = {}

local function fail(opts, msg, field)
  local line = line_of(opts, field)
  error(setmetatable({ text = "luaconcurrent: " .. file_name(opts) .. (line and (":" .. line) or "")
    .. ": " .. msg }, Fail), 0)
end

-- The field a runner's construction message is about.
local function field_of(msg, tbl)
  local name = msg:match("^unknown option '([%w_]+)'") or msg:match("^([%a_][%w_]*)")
  if name == "task" or name == "duplicate" then return "tasks" end
  if name and (tbl[name] ~= nil) then return name end
  if msg:find("^pargs") then return "pargs" end
end

-- A runner's own error ("bad argument #n to 'X' (luaconcurrent: ...)"),
-- with the file's name and the line put in.
local function refail(opts, err, tbl)
  if type(err) == "string" then
    local rest = err:match("%(luaconcurrent: (.*)%)$") or err:match("^luaconcurrent: (.*)$")
    if rest then fail(opts, rest, field_of(rest, tbl)) end
  end
  error(err, 0)
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

local function build(tbl, opts)
  if type(tbl) ~= "table" then
    fail(opts, "a task file must return a table, got " .. type(tbl))
  end
  if tbl.pargs == nil then fail(opts, "task file has no 'pargs'") end
  if tbl.tasks == nil then fail(opts, "task file has no 'tasks'") end
  local mode = tbl.mode
  if mode == nil then mode = "coroutine" end
  local lc = require "luaconcurrent"
  local m = lc.MODES[mode]
  if not m then
    fail(opts, 'mode must be "coroutine", "thread" or "process", got ' .. describe(mode), "mode")
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
  if m[2] and type(tbl.pargs) == "table" and type(tbl.pargs[1]) == "function" then
    options.isolation = m[2]
  end
  local built, run = pcall(m[1], tbl.pargs, tbl.tasks, options)
  if not built then refail(opts, run, tbl) end
  return run
end

-- Runs the task file `tbl`; opts.json selects the JSON output.
-- Returns the process exit status: 0 if every task succeeded, else 1. An
-- error in the file itself is printed as one line and gives 1 too.
function M.run_task_file(tbl, opts)
  opts = opts or {}
  -- Before any task runs: without lua-cjson, --json could not report them.
  if opts.json then require("luaconcurrent.result").cjson() end
  local built, run = pcall(build, tbl, opts)
  if not built then
    if getmetatable(run) ~= Fail then error(run, 0) end
    io.stderr:write(run.text, "\n")
    return 1
  end
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
