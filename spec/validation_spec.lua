-- Bad input is rejected at construction with a clear "luaconcurrent: ..."
-- error naming the offending value (README, "Bad input raises at construction").

local lc = require "luaconcurrent"
local helpers = require "helpers"

local OK_PARGS = { "/bin/echo" }
local OK_TASKS = { { 1, "a" }, { 2, "b" } }
local NaN = 0 / 0

-- { description, pargs, tasks, opts, expected message [, "pattern"] }
local CASES = {
  { "empty pargs", {}, OK_TASKS, {}, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs not a table", "/bin/echo", OK_TASKS, {}, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs nil", nil, OK_TASKS, {}, "luaconcurrent: pargs must be a non-empty table" },
  { "pargs element boolean", { "/bin/echo", true }, OK_TASKS, {},
    "luaconcurrent: pargs[2] must be a string or number, got boolean" },
  { "pargs element table", { "/bin/echo", "x", {} }, OK_TASKS, {},
    "luaconcurrent: pargs[3] must be a string or number, got table" },
  { "pargs with NUL", { "/bin/echo\0x" }, OK_TASKS, {}, "luaconcurrent: pargs[1] contains a NUL byte" },
  { "tasks a string", OK_PARGS, "abc", {},
    "luaconcurrent: tasks must be a table or an iterator function, got string" },
  { "tasks nil", OK_PARGS, nil, {},
    "luaconcurrent: tasks must be a table or an iterator function, got nil" },
  { "task not a table", OK_PARGS, { { 1 }, { 2 }, 5 }, {},
    "luaconcurrent: task 3 must be a table {key, arg}, got number" },
  { "task with nil key", OK_PARGS, { { 1 }, { 2 }, { nil, "x" } }, {}, "luaconcurrent: task 3 has a nil key" },
  { "task with NaN key", OK_PARGS, { { 1 }, { 2 }, { NaN } }, {}, "luaconcurrent: task 3 has a NaN key" },
  { "duplicate string key", OK_PARGS, { { "a" }, { "b" }, { "c" }, { "a" } }, {},
    'luaconcurrent: duplicate task key "a" (tasks 1 and 4)' },
  { "duplicate number key", OK_PARGS, { { 1 }, { 2 }, { 1 } }, {},
    "luaconcurrent: duplicate task key 1 (tasks 1 and 3)" },
  { "duplicate key 1 and 1.0 (equal Lua values)", OK_PARGS, { { 1 }, { 1.0 } }, {},
    "^luaconcurrent: duplicate task key 1%.?0? %(tasks 1 and 2%)$", "pattern" },
  { "negative num_workers", OK_PARGS, OK_TASKS, { num_workers = -1 },
    "luaconcurrent: num_workers must be a non-negative integer, got -1" },
  { "fractional num_workers", OK_PARGS, OK_TASKS, { num_workers = 1.5 },
    "luaconcurrent: num_workers must be a non-negative integer, got 1.5" },
  { "negative timeout", OK_PARGS, OK_TASKS, { timeout = -1 },
    "luaconcurrent: timeout must be a non-negative number, got -1" },
  { "unknown option", OK_PARGS, OK_TASKS, { timout = 1 }, "luaconcurrent: unknown option 'timout'" },
  { "on_result not a function", OK_PARGS, OK_TASKS, { on_result = "x" },
    "luaconcurrent: on_result must be a function, got string" },
  { "on_start not a function", OK_PARGS, OK_TASKS, { on_start = 1 },
    "luaconcurrent: on_start must be a function, got number" },
  { "on_progress not a function", OK_PARGS, OK_TASKS, { on_progress = true },
    "luaconcurrent: on_progress must be a function, got boolean" },
  { "env not a table", OK_PARGS, OK_TASKS, { env = "x" }, "luaconcurrent: env must be a table, got string" },
  { "cwd not a string", OK_PARGS, OK_TASKS, { cwd = 5 }, "luaconcurrent: cwd must be a string, got number" },
  { "host slots neither a count nor a CPU rule", OK_PARGS, OK_TASKS, { hosts = { ":", { host = "h", slots = "half" } } },
    "luaconcurrent: hosts[2].slots must be a positive integer, or N%, +N or -N of its CPUs" },
  { "host slots zero", OK_PARGS, OK_TASKS, { hosts = { { host = "h", slots = 0 } } },
    "luaconcurrent: hosts[1].slots must be a positive integer, or N%, +N or -N of its CPUs" },
}

for _, runner in ipairs({ "ProcRunAsyncio", "ProcRunMp" }) do
  describe(runner .. " rejects bad input", function()
    helpers.leak_check(before_each, after_each)

    for _, c in ipairs(CASES) do
      it(c[1], function()
        if c[6] == "pattern" then
          assert.error_matches(function() helpers.unwrap(lc[runner], c[2], c[3], c[4]) end, c[5])
        else
          assert.has_error(function() helpers.unwrap(lc[runner], c[2], c[3], c[4]) end, c[5])
        end
      end)
    end

    it("checks positional num_workers and timeout", function()
      assert.has_error(function() lc[runner](OK_PARGS, OK_TASKS, -1) end,
        "bad argument #3 to '" .. runner .. "' (" ..
        "luaconcurrent: num_workers must be a non-negative integer, got -1)")
      assert.has_error(function() lc[runner](OK_PARGS, OK_TASKS, 2, -1) end,
        "bad argument #4 to '" .. runner .. "' (luaconcurrent: timeout must be a non-negative number, got -1)")
    end)

    it("rejects bad input before running anything", function()
      local path = os.tmpname()
      os.remove(path)
      local ok = pcall(lc[runner], { "/bin/sh", "-c", "echo x > " .. path }, { { 1 }, { 1 } }, {})
      local created = io.open(path) ~= nil
      os.remove(path)
      assert.is_false(ok)
      assert.is_false(created)
    end)

    it("rejects a bad arg at construction", function()
      assert.error_matches(function() lc[runner](OK_PARGS, { { 1 }, { 2, true } }, {}) end,
        "bad argument #2 to '" .. runner .. "' %(luaconcurrent: task 2 arg")
      assert.error_matches(function() lc[runner](OK_PARGS, { { 1, { "a", {} } } }, {}) end,
        "bad argument #2 to '" .. runner .. "' %(luaconcurrent: task 1 arg")
    end)

    it("rejects a duplicate key from an iterator when it appears, stopping the run", function()
      local keys = { "a", "b", "a", "c" }
      local i = 0
      local started = {}
      local run = lc[runner](OK_PARGS, function()
        i = i + 1
        return keys[i] and { keys[i] } or nil
      end, { num_workers = 1, on_start = function(k) started[#started + 1] = k end })
      local ok, err = pcall(run.run_all, run)
      assert.is_false(ok)
      assert.are.equal('luaconcurrent: duplicate task key "a" (tasks 1 and 3)', err)
      assert.are.same({ "a", "b" }, started)
    end)

    it("accepts distinct table keys with equal contents", function()
      local run = lc[runner](OK_PARGS, { { {}, "a" }, { {}, "b" } }, {})
      local r = run:run_all()
      assert.are.equal(2, #r)
    end)

    it("accepts every documented option", function()
      local run = lc[runner]({ "/bin/cat" }, { { 1 } }, {
        num_workers = 2, timeout = 5, verb = false,
        on_start = function() end, on_result = function() end, on_progress = function() end,
        env = { LC_VALID = "1" }, cwd = "/", input = "in", keep_results = true, kill_grace = 0.1,
      })
      local r = run:run_all()
      assert.are.equal("in", r[1].stdout)
    end)
  end)
end
