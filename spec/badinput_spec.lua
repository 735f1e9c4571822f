-- Malformed calls, one table: every argument and option of the runners (and
-- run_prog, lc.sleep), in the options-table and the positional form, with
-- the exact text a user gets. Run with pcall; the message is compared whole.
--
-- Row kinds:
--   raises  the call must raise exactly `msg` (a string, or a function
--           returning the string when it holds an address)
--   result  the call returns a run's results; `check(results)` asserts on
--           them (for inputs that are not construction errors but outcomes:
--           E2BIG, answers that cannot cross back, num_workers = 1e9)
-- A row with `pending = "why"` states what a demanding user wants but the
-- implementation does not do yet; it is reported as pending (set
-- LC_RUN_PENDING=1 to run those rows too, e.g. after a fix).

local lc = require "luaconcurrent"
local helpers = require "helpers"

local A, M = lc.ProcRunAsyncio, lc.ProcRunMp
local P = { "/bin/echo" }
local T = { { 1, "a" }, { 2, "b" } }
local NaN, inf = 0 / 0, math.huge
local function fn() return true end
local co = coroutine.create(fn)
local shared = {}
local F = dofile(helpers.FIXTURES .. "/fault_tasks.lua")

local function deep(n)
  local t = {}
  local c = t
  for _ = 1, n do c[1] = {}; c = c[1] end
  return t
end

-- Functions whose upvalues cannot cross to a worker, and where they are.
local UP_CO, UP_DEEP
do
  local c = co
  UP_CO = function() return c end
  local d = deep(300)
  UP_DEEP = function() return d end
end
local function raising_iter() error("iterator broke") end
local function where(f)
  local i = debug.getinfo(f, "S")
  return i.short_src .. ":" .. i.linedefined
end

local NESTED_HEAD = "cannot send a value nested more than 200 levels deep to another Lua state: "
  .. "field [1], in field [1], in field [1], in ... (194 more), in field [1], in field [1]"
local NESTED = NESTED_HEAD .. ", in field [1]"

-- A ProcRunMp function task's single result, in thread or process isolation.
local function mp1(f, isolation, tasks)
  return M({ f }, tasks or { { 1 } }, { isolation = isolation, timeout = 30 }):run_all()
end

local function one_failure(exception, err)
  return function(r)
    assert.are.equal(1, #r)
    assert.is_false(r[1].success)
    assert.are.equal(exception, r[1].exception)
    assert.are.equal(err, r[1].error)
  end
end

local function two_echoes(r)
  assert.are.equal(2, #r)
  assert.is_true(r[1].success, r[1].error)
  assert.is_true(r[2].success, r[2].error)
end

local function two_answers(r)
  assert.are.equal(2, #r)
  assert.is_true(r[1].success, r[1].error)
  assert.is_true(r[2].success, r[2].error)
  assert.are.equal(1, r[1].answer)
  assert.are.equal(2, r[2].answer)
end

local ROWS = {
  ------------------------------------------------------------------ pargs
  { "pargs nil", function() A(nil, T) end, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs a string", function() A("/bin/echo", T) end, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs empty", function() M({}, T) end, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs[1] a boolean", function() A({ true }, T) end,
    "luaconcurrent: pargs[1] must be a string or number, got boolean" },
  { "pargs[2] a table", function() M({ "/bin/echo", {} }, T) end,
    "luaconcurrent: pargs[2] must be a string or number, got table" },
  { "pargs with a hole", function() A({ "/bin/echo", nil, "x" }, T) end,
    "luaconcurrent: pargs[2] must be a string or number, got nil" },
  { "NUL byte in the program name", function() A({ "/bin/ec\0ho" }, T) end,
    "luaconcurrent: pargs[1] contains a NUL byte" },
  { "NUL byte in a fixed argument", function() M({ "/bin/echo", "a\0b" }, T) end,
    "luaconcurrent: pargs[2] contains a NUL byte" },
  { "pargs[2] a coroutine for thread workers", function() M({ fn, co }, T) end,
    "luaconcurrent: pargs[2] cannot be sent to a thread worker: cannot send a coroutine to another Lua state" },
  { "pargs[2] a userdata for thread workers", function() M({ fn, io.stdout }, T) end,
    "luaconcurrent: pargs[2] cannot be sent to a thread worker: cannot send a userdata to another Lua state" },
  { "pargs[2] nested 300 levels for thread workers", function() M({ fn, deep(300) }, T) end,
    "luaconcurrent: pargs[2] cannot be sent to a thread worker: " .. NESTED },
  { "an upvalue that is a coroutine", function() M({ UP_CO }, T) end,
    function() return "luaconcurrent: cannot send a coroutine to another Lua state: upvalue 'c' of function at "
      .. where(UP_CO) end },
  { "an upvalue nested 300 levels deep", function() M({ UP_DEEP }, T) end,
    function() return "luaconcurrent: " .. NESTED_HEAD .. ", in upvalue 'd' of function at "
      .. where(UP_DEEP) end },

  ------------------------------------------------------------------ tasks
  { "tasks nil", function() A(P, nil) end,
    "luaconcurrent: tasks must be a table or an iterator function, got nil" },
  { "tasks a string", function() M(P, "abc") end,
    "luaconcurrent: tasks must be a table or an iterator function, got string" },
  { "tasks with only named fields (no list part)", function() A(P, { first = { 1, "a" } }) end,
    'luaconcurrent: tasks must be a list of {key, arg} pairs; it has the field "first"' },
  { "a task that is a number", function() A(P, { { 1 }, 5 }) end,
    "luaconcurrent: task 2 must be a table {key, arg}, got number" },
  { "a task with a nil key", function() A(P, { { 1 }, { nil, "x" } }) end,
    "luaconcurrent: task 2 has a nil key" },
  { "a task with a NaN key", function() M(P, { { NaN } }) end, "luaconcurrent: task 1 has a NaN key" },
  { "task arg a boolean", function() A(P, { { 1, true } }) end,
    "luaconcurrent: task 1 arg must be a string, number, list or nil, got boolean" },
  { "NUL byte in a task arg", function() A(P, { { 1, "x\0y" } }) end,
    "luaconcurrent: task 1 arg contains a NUL byte" },
  { "NUL byte in a task arg list", function() M(P, { { 1, { "a", "b\0" } } }) end,
    "luaconcurrent: task 1 arg[2] contains a NUL byte" },
  { "a table in a task arg list", function() A(P, { { 1, { "a", {} } } }) end,
    "luaconcurrent: task 1 arg[2] must be a string or number, got table" },
  { "a coroutine key for thread workers", function() M({ fn }, { { 1 }, { co } }) end,
    "luaconcurrent: task 2 key cannot be sent to a worker: it is a coroutine" },

  ---------------------------------------------------- duplicate keys, by type
  { "duplicate string keys", function() A(P, { { "a" }, { "b" }, { "a" } }) end,
    'luaconcurrent: duplicate task key "a" (tasks 1 and 3)' },
  { "duplicate integer keys", function() M(P, { { 7 }, { 8 }, { 7 } }) end,
    "luaconcurrent: duplicate task key 7 (tasks 1 and 3)" },
  { "duplicate keys 1 and 1.0", function() A(P, { { 1 }, { 1.0 } }) end,
    "luaconcurrent: duplicate task key 1.0 (tasks 1 and 2)" },
  { "duplicate keys 2^53 (float) and 2^53 (integer)", function()
      A(P, { { 2 ^ 53 }, { math.tointeger(2 ^ 53) } })
    end, "luaconcurrent: duplicate task key 9007199254740992 (tasks 1 and 2)" },
  { "duplicate keys 0.0 and -0.0", function() A(P, { { 0.0 }, { -0.0 } }) end,
    "luaconcurrent: duplicate task key -0.0 (tasks 1 and 2)" },
  { "duplicate keys inf", function() A(P, { { inf }, { 1 / 0 } }) end,
    "luaconcurrent: duplicate task key inf (tasks 1 and 2)" },
  { "duplicate boolean keys", function() M({ fn }, { { true }, { false }, { true } }) end,
    "luaconcurrent: duplicate task key true (tasks 1 and 3)" },
  { "duplicate table keys (same table)", function() A(P, { { shared }, { {} }, { shared } }) end,
    function() return "luaconcurrent: duplicate task key " .. tostring(shared) .. " (tasks 1 and 3)" end },
  { "duplicate function keys", function() A({ fn }, { { fn }, { fn } }) end,
    function() return "luaconcurrent: duplicate task key " .. tostring(fn) .. " (tasks 1 and 2)" end },
  { "duplicate keys from an iterator", function()
      local n = 0
      A(P, function() n = n + 1; if n <= 3 then return { n == 3 and 1 or n } end end):run_all()
    end, "luaconcurrent: duplicate task key 1 (tasks 1 and 3)" },

  ---------------------------------------------------------------- options
  { "options a string", function() A(P, T, "fast") end,
    "luaconcurrent: options must be a table (or num_workers, timeout, verb), got string" },
  { "unknown option", function() M(P, T, { timout = 1 }) end, "luaconcurrent: unknown option 'timout'" },
  { "a list element in options", function() A(P, T, { 4 }) end, "luaconcurrent: unknown option 1" },
  { "num_workers -1", function() A(P, T, { num_workers = -1 }) end,
    "luaconcurrent: num_workers must be a non-negative integer, got -1" },
  { "num_workers 1.5", function() M(P, T, { num_workers = 1.5 }) end,
    "luaconcurrent: num_workers must be a non-negative integer, got 1.5" },
  { "num_workers a string", function() A(P, T, { num_workers = "4" }) end,
    'luaconcurrent: num_workers must be a non-negative integer, got "4"' },
  { "num_workers inf", function() A(P, T, { num_workers = inf }) end,
    "luaconcurrent: num_workers must be a non-negative integer, got inf" },
  { "num_workers NaN", function() A(P, T, { num_workers = NaN }) end,
    "luaconcurrent: num_workers must be a non-negative integer, got nan" },
  { "timeout NaN", function() A(P, T, { timeout = NaN }) end,
    "luaconcurrent: timeout must be a non-negative number, got nan" },
  { "timeout inf", function() M(P, T, { timeout = inf }) end,
    "luaconcurrent: timeout must be a non-negative number, got inf" },
  { "timeout -inf", function() A(P, T, { timeout = -inf }) end,
    "luaconcurrent: timeout must be a non-negative number, got -inf" },
  { "timeout negative", function() A(P, T, { timeout = -0.5 }) end,
    "luaconcurrent: timeout must be a non-negative number, got -0.5" },
  { "timeout a string", function() A(P, T, { timeout = "5" }) end,
    'luaconcurrent: timeout must be a non-negative number, got "5"' },
  { "kill_grace negative", function() A(P, T, { kill_grace = -1 }) end,
    "luaconcurrent: kill_grace must be a non-negative number, got -1" },
  { "verb a number", function() A(P, T, { verb = 1 }) end, "luaconcurrent: verb must be a boolean, got number" },
  { "keep_results a string", function() M(P, T, { keep_results = "no" }) end,
    "luaconcurrent: keep_results must be a boolean, got string" },
  { "on_start a table", function() A(P, T, { on_start = {} }) end,
    "luaconcurrent: on_start must be a function, got table" },
  { "on_result a string", function() A(P, T, { on_result = "print" }) end,
    "luaconcurrent: on_result must be a function, got string" },
  { "on_progress a number", function() M(P, T, { on_progress = 1 }) end,
    "luaconcurrent: on_progress must be a function, got number" },
  { "env a string", function() A(P, T, { env = "A=1" }) end, "luaconcurrent: env must be a table, got string" },
  { "env as a list of NAME=value", function() A(P, T, { env = { "A=1" } }) end,
    "luaconcurrent: env names must be strings, got number" },
  { "env name with '='", function() A(P, T, { env = { ["A=B"] = "1" } }) end,
    'luaconcurrent: env name "A=B" is not a valid variable name' },
  { "env name empty", function() M(P, T, { env = { [""] = "1" } }) end,
    'luaconcurrent: env name "" is not a valid variable name' },
  { "NUL byte in an env name", function() A(P, T, { env = { ["A\0B"] = "x" } }) end,
    'luaconcurrent: env name "A\\0B" is not a valid variable name' },
  { "NUL byte in an env value", function() A(P, T, { env = { A = "x\0y" } }) end,
    "luaconcurrent: env value of A contains a NUL byte" },
  { "env value a number", function() A(P, T, { env = { A = 1 } }) end,
    "luaconcurrent: env value of A must be a string or false, got number" },
  { "env value true", function() M(P, T, { env = { A = true } }) end,
    "luaconcurrent: env value of A must be a string or false, got boolean" },
  { "cwd a number", function() A(P, T, { cwd = 1 }) end, "luaconcurrent: cwd must be a string, got number" },
  { "NUL byte in cwd", function() A(P, T, { cwd = "/tmp\0x" }) end, "luaconcurrent: cwd contains a NUL byte" },
  { "input a table", function() A(P, T, { input = {} }) end, "luaconcurrent: input must be a string, got table" },
  { "isolation unknown", function() M({ fn }, T, { isolation = "fork" }) end,
    'luaconcurrent: isolation must be "thread" or "process", got "fork"' },
  { "isolation for exec tasks", function() M(P, T, { isolation = "process" }) end,
    "luaconcurrent: isolation applies to ProcRunMp function tasks" },
  { "isolation for ProcRunAsyncio", function() A({ fn }, T, { isolation = "thread" }) end,
    "luaconcurrent: isolation applies to ProcRunMp function tasks" },

  -------------------------------------------------------- positional form
  { "positional num_workers a string", function() A(P, T, "4", 1) end,
    "luaconcurrent: options must be a table (or num_workers, timeout, verb), got string" },
  { "positional num_workers negative", function() M(P, T, -2, 1) end,
    "luaconcurrent: num_workers must be a non-negative integer, got -2" },
  { "positional timeout a string", function() A(P, T, 2, "x") end,
    'luaconcurrent: timeout must be a non-negative number, got "x"' },
  { "positional timeout NaN", function() A(P, T, 2, NaN) end,
    "luaconcurrent: timeout must be a non-negative number, got nan" },
  { "positional verb a number", function() A(P, T, 2, 1, 1) end,
    "luaconcurrent: verb must be a boolean, got number" },
  { "options table followed by more arguments", function() A(P, T, {}, 5) end,
    "luaconcurrent: options given as a table take no further arguments" },
  { "a sixth positional argument", function() A(P, T, 2, 1, true, 5) end,
    "luaconcurrent: too many arguments: (pargs, tasks, num_workers, timeout, verb) takes at most 5, got 6" },

  ------------------------------------------------------- run_prog, sleep
  { "run_prog without pargs", function() lc.run_prog() end, "luaconcurrent: pargs must be a non-empty table" },
  { "run_prog with a function", function() lc.run_prog({ fn }) end,
    "luaconcurrent: run_prog runs programs; pargs[1] must be a string, got function" },
  { "run_prog with a runner option", function() lc.run_prog({ "/bin/true" }, { num_workers = 1 }) end,
    "luaconcurrent: unknown option 'num_workers'" },
  { "run_prog with NUL in env", function() lc.run_prog({ "/bin/true" }, { env = { X = "\0" } }) end,
    "luaconcurrent: env value of X contains a NUL byte" },
  { "sleep negative", function() lc.sleep(-1) end,
    "luaconcurrent: sleep needs a finite non-negative number of seconds, got -1" },
  { "sleep a string", function() lc.sleep("1") end,
    'luaconcurrent: sleep needs a finite non-negative number of seconds, got "1"' },

  --------------------------------------------- iterators and callbacks
  { "an iterator that raises", function() A(P, function() error("iterator broke", 0) end):run_all() end,
    "iterator broke" },
  { "an iterator that raises (thread workers)", function()
      M({ fn }, function() error("iterator broke", 0) end):run_all()
    end, "iterator broke" },
  { "an iterator that raises with a position", function() A(P, raising_iter):run_all() end,
    function() return where(raising_iter) .. ": iterator broke" end },
  { "an iterator that returns a number", function()
      local n = 0
      A(P, function() n = n + 1; if n == 1 then return { 1 } elseif n == 2 then return 42 end end):run_all()
    end, "luaconcurrent: task 2 must be a table {key, arg}, got number" },
  { "an iterator that returns a table without key", function()
      local n = 0
      M(P, function() n = n + 1; if n == 1 then return { 1 } elseif n == 2 then return { nil, "x" } end end)
        :run_all()
    end, "luaconcurrent: task 2 has a nil key" },
  { "an iterator that returns a bad arg", function()
      local n = 0
      A(P, function() n = n + 1; if n == 1 then return { 1, "a\0b" } end end):run_all()
    end, "luaconcurrent: task 1 arg contains a NUL byte" },
  { "on_start raises", function()
      A(P, T, { on_start = function() error("on_start broke", 0) end }):run_all()
    end, "on_start broke" },
  { "on_result raises", function()
      M(P, T, { on_result = function() error("on_result broke", 0) end }):run_all()
    end, "on_result broke" },
  { "on_progress raises", function()
      A(P, T, { on_progress = function() error("on_progress broke", 0) end }):run_all()
    end, "on_progress broke" },
  { "on_result raises (thread workers)", function()
      M({ fn }, T, { on_result = function() error("on_result broke", 0) end }):run_all()
    end, "on_result broke" },
  { "on_result raises (coroutines)", function()
      A({ fn }, T, { on_result = function() error("on_result broke", 0) end }):run_all()
    end, "on_result broke" },

  ---------------------------------------------- outcomes rather than raises
  { "a 10 MB argument: E2BIG as an OSError result", kind = "result",
    function() return A(P, { { 1, string.rep("a", 10 * 1024 * 1024) } }):run_all() end,
    check = one_failure("OSError", "cannot run '/bin/echo': Argument list too long (E2BIG)") },
  { "100 000 arguments of 100 bytes: E2BIG (ProcRunMp)", kind = "result",
    function()
      local many = {}
      for i = 1, 100000 do many[i] = string.rep("b", 100) end
      return M(P, { { 1, many } }):run_all()
    end,
    check = one_failure("OSError", "cannot run '/bin/echo': Argument list too long (E2BIG)") },
  { "num_workers = 1e9, exec tasks (ProcRunAsyncio)", kind = "result",
    function() return A(P, T, { num_workers = 1e9 }):run_all() end, check = two_echoes },
  { "num_workers = 1e9, exec tasks (ProcRunMp)", kind = "result",
    function() return M(P, T, { num_workers = 1e9 }):run_all() end, check = two_echoes },
  { "num_workers = 1e9, coroutine tasks", kind = "result",
    function() return A({ function(k) return true, k end }, T, { num_workers = 1e9 }):run_all() end,
    check = two_answers },
  { "num_workers = 1e9, worker processes", kind = "result",
    function()
      return M({ function(k) return true, k end }, T, { num_workers = 1e9, isolation = "process" }):run_all()
    end, check = two_answers },
  { "num_workers = 1e9, thread workers", function() M({ fn }, T, { num_workers = 1e9 }) end,
    "luaconcurrent: num_workers for thread workers must be at most 1024, got 1000000000.0" },
  { "a coroutine answer (process isolation)", kind = "result",
    function() return mp1(F.answer_coroutine, "process") end,
    check = one_failure("RuntimeError",
      "cannot send the task's answer back: luaconcurrent: cannot send a coroutine to another Lua state") },
  { "a userdata answer (process isolation)", kind = "result",
    function() return mp1(F.answer_userdata, "process") end,
    check = one_failure("RuntimeError",
      "cannot send the task's answer back: luaconcurrent: cannot send a userdata to another Lua state") },
  { "a coroutine inside the answer is named by its path (process isolation)", kind = "result",
    function() return mp1(F.answer_nested_coroutine, "process") end,
    check = one_failure("RuntimeError", "cannot send the task's answer back: luaconcurrent: "
      .. "cannot send a coroutine to another Lua state: field 'b', in field 'a'") },
  { "an answer nested 300 levels (process isolation)", kind = "result",
    function()
      return mp1(F.answer_deep, "process", { { 1, 300 } })
    end,
    check = one_failure("RuntimeError", "cannot send the task's answer back: luaconcurrent: " .. NESTED) },
  { "a coroutine answer (thread workers)", kind = "result",
    function() return mp1(F.answer_coroutine, "thread") end,
    check = one_failure("RuntimeError",
      "cannot send the task's answer back: luaconcurrent: cannot send a coroutine to another Lua state") },
  { "a userdata answer (thread workers)", kind = "result",
    function() return mp1(F.answer_userdata, "thread") end,
    check = one_failure("RuntimeError",
      "cannot send the task's answer back: luaconcurrent: cannot send a userdata to another Lua state") },
  { "an answer nested 1e6 levels (thread workers): an error, not a crash", kind = "result",
    function()
      return mp1(F.answer_deep, "thread", { { 1, 1000000 } })
    end,
    check = one_failure("RuntimeError", "cannot send the task's answer back: luaconcurrent: " .. NESTED) },
  { "an answer nested 300 levels, run goes on (thread workers)", kind = "result",
    function()
      return M({ function(k)
        if k ~= 2 then return true, k end
        local t = {}
        local c = t
        for _ = 1, 300 do c[1] = {}; c = c[1] end
        return true, t
      end }, { { 1 }, { 2 }, { 3 } }, { num_workers = 2 }):run_all()
    end,
    check = function(r)
      assert.are.equal(3, #r)
      assert.is_true(r[1].success)
      assert.is_true(r[3].success)
      assert.is_false(r[2].success)
      assert.are.equal("RuntimeError", r[2].exception)
      assert.truthy(r[2].error:find(NESTED, 1, true))
    end },
  { "a task arg nested 300 levels (thread workers)", kind = "result",
    function() return M({ fn }, { { 1, deep(300) } }):run_all() end,
    check = one_failure("RuntimeError", "luaconcurrent: " .. NESTED) },
}

local run_pending = os.getenv("LC_RUN_PENDING") == "1"

describe("bad input (table-driven)", function()
  helpers.leak_check(before_each, after_each)

  -- Malformed calls that were run and raised exactly their message, counted
  -- as they pass; the last test checks enough of them did.
  local raised_as_expected = 0

  for _, row in ipairs(ROWS) do
    local name, call, want = row[1], row[2], row[3]
    local body
    if row.kind == "result" then
      body = function()
        local ok, r = pcall(call)
        assert(ok, "raised: " .. tostring(r))
        row.check(r)
      end
    else
      body = function()
        local ok, err = pcall(call)
        assert.is_false(ok, "no error raised")
        if type(want) == "function" then want = want() end
        -- (the message alone: a bad argument's, or a callback's without the
        -- traceback appended to it)
        local msg = helpers.inner_error(err)
        if type(msg) == "string" then msg = msg:gsub("\nstack traceback:\n.*$", "") end
        assert.are.equal(want, msg)
        raised_as_expected = raised_as_expected + 1
      end
    end
    if row.pending and not run_pending then
      pending(name .. " -- " .. row.pending)
    else
      it(name, body)
    end
  end

  it("ran at least 25 malformed calls that raised their exact message", function()
    assert.is_true(raised_as_expected >= 25, "only " .. raised_as_expected)
  end)
end)
