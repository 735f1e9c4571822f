--- Argument checking for every public entry point.
-- Errors are raised at level 0 so the message starts with "luaconcurrent: ";
-- the traceback shows where the call came from.

local M = {}

local function fail(fmt, ...)
  error("luaconcurrent: " .. string.format(fmt, ...), 0)
end
M.fail = fail

--- A readable rendering of a value for error messages.
function M.show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if v ~= v then return "nan" end  -- tostring gives "-nan" or "nan" by sign
  return tostring(v)
end

local function is_integer(v)
  return math.type(v) == "integer" or (math.type(v) == "float" and v == math.floor(v) and v == v
    and v ~= math.huge and v ~= -math.huge)
end

--- pargs: a non-empty list whose first element is a program (string or
-- number) or a function; the rest strings or numbers.
function M.pargs(pargs)
  if type(pargs) ~= "table" or pargs[1] == nil then
    fail("pargs must be a non-empty table")
  end
  local n = #pargs
  -- A function's fixed arguments may be any value (they cross to workers
  -- by marshalling, which names what cannot).
  if type(pargs[1]) == "function" then return n end
  for i = 1, n do
    local v = pargs[i]
    local t = type(v)
    if t ~= "string" and t ~= "number" then
      fail("pargs[%d] must be a string or number, got %s", i, t)
    end
    if t == "string" and v:find("\0", 1, true) then
      fail("pargs[%d] contains a NUL byte", i)
    end
  end
  return n
end

--- One argument appended to argv: nil, a string, a number or a list of those.
function M.arg(arg, where)
  local t = type(arg)
  if t == "nil" or t == "number" then return end
  if t == "string" then
    if arg:find("\0", 1, true) then fail("%s arg contains a NUL byte", where) end
    return
  end
  if t == "table" then
    for i = 1, #arg do
      local v = arg[i]
      local vt = type(v)
      if vt ~= "string" and vt ~= "number" then
        fail("%s arg[%d] must be a string or number, got %s", where, i, vt)
      end
      if vt == "string" and v:find("\0", 1, true) then
        fail("%s arg[%d] contains a NUL byte", where, i)
      end
    end
    return
  end
  fail("%s arg must be a string, number, list or nil, got %s", where, t)
end

--- One task: {key, arg}. seen maps keys to the task number first holding them.
function M.task(task, i, seen, check_arg)
  if type(task) ~= "table" then
    fail("task %d must be a table {key, arg}, got %s", i, type(task))
  end
  local key = task[1]
  if key == nil then fail("task %d has a nil key", i) end
  if key ~= key then fail("task %d has a NaN key", i) end
  local prev = seen[key]
  if prev then
    fail("duplicate task key %s (tasks %d and %d)", M.show(key), prev, i)
  end
  seen[key] = i
  if check_arg then M.arg(task[2], "task " .. i) end
  return key, task[2]
end

function M.tasks(tasks, check_arg)
  local t = type(tasks)
  if t == "function" then return nil end
  if t ~= "table" then
    fail("tasks must be a table or an iterator function, got %s", t)
  end
  local seen = {}
  local n = #tasks
  for i = 1, n do M.task(tasks[i], i, seen, check_arg) end
  -- Every entry must be one of tasks[1..n]: a field would never run.
  local count = 0
  for k in pairs(tasks) do
    count = count + 1
    if count > n then
      fail("tasks must be a list of {key, arg} pairs; it has the field %s", M.show(k))
    end
  end
  return n
end

local function check_number(name, v)
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    fail("%s must be a non-negative number, got %s", name, M.show(v))
  end
end

local checks = {
  num_workers = function(v)
    if type(v) ~= "number" or not is_integer(v) or v < 0 then
      fail("num_workers must be a non-negative integer, got %s", M.show(v))
    end
  end,
  timeout = function(v) check_number("timeout", v) end,
  max_capture = function(v)
    if not is_integer(v) or v < 1 then
      fail("max_capture must be a positive whole number of bytes, got %s", M.show(v))
    end
  end,
  max_answer = function(v)
    if not is_integer(v) or v < 1 or v > 0xFFFFFFFF then
      fail("max_answer must be a whole number of bytes from 1 to 4294967295, got %s", M.show(v))
    end
  end,
  kill_grace = function(v) check_number("kill_grace", v) end,
  verb = "boolean",
  keep_results = "boolean",
  on_start = "function",
  on_result = "function",
  on_progress = "function",
  cwd = "string",
  input = "string",
  env = function(v)
    if type(v) ~= "table" then fail("env must be a table, got %s", type(v)) end
    for k, val in pairs(v) do
      if type(k) ~= "string" then fail("env names must be strings, got %s", type(k)) end
      if k == "" or k:find("[=%z]") then fail("env name %s is not a valid variable name", M.show(k)) end
      if val ~= false and type(val) ~= "string" then
        fail("env value of %s must be a string or false, got %s", k, type(val))
      end
      if type(val) == "string" and val:find("\0", 1, true) then
        fail("env value of %s contains a NUL byte", k)
      end
    end
  end,
  test = "boolean",
}

--- Check an options table against the names in `allowed` (a set).
function M.options(opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail("options must be a table, got %s", type(opts)) end
  for name, v in pairs(opts) do
    if type(name) ~= "string" or not allowed[name] then
      fail("unknown option %s", type(name) == "string" and ("'" .. name .. "'") or M.show(name))
    end
    local check = checks[name]
    if type(check) == "string" then
      if type(v) ~= check then fail("%s must be a %s, got %s", name, check, type(v)) end
    elseif check then
      check(v)
    end
  end
  if opts.cwd and opts.cwd:find("\0", 1, true) then fail("cwd contains a NUL byte") end
  return opts
end

M.is_integer = is_integer

-- Which argument a construction message is about: pargs (#1), the tasks
-- (#2), or the options (#3; in pyconcurrent's positional form num_workers,
-- timeout and verb are #3 to #5).
local function argnum(msg, positional)
  if msg:find("^pargs") or msg:find("upvalue") or msg:find("^run_prog runs programs") then return 1 end
  if msg:find("^tasks? ") or msg:find("^duplicate task key") then return 2 end
  if positional then
    if msg:find("^timeout") then return 4 end
    if msg:find("^verb") then return 5 end
  end
  return 3
end

--- The "luaconcurrent: ..." message inside a bad-argument error (for a
-- command line, which names no Lua caller), or the value as a string.
function M.message(err)
  local s = tostring(err)
  return s:match("bad argument #%d+ to '[^']*' %((luaconcurrent: .*)%)$") or s
end

--- Re-raise a construction error of public function `fname` as Lua's own
-- functions do (luaL_argerror): "where: bad argument #n to 'fname'
-- (luaconcurrent: ...)", `where` being the caller's line (`level` as for
-- error(), counted from the caller of argerror). Anything that is not one
-- of our messages (out of memory, a table) is raised unchanged.
function M.argerror(fname, err, level, positional, n)
  if type(err) ~= "string" or not err:find("^luaconcurrent: ") then error(err, 0) end
  n = n or argnum(err:sub(16), positional)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, err), level + 1)
end

return M
