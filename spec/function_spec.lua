-- Function tasks (pargs[1] a Lua function) in ProcRunAsyncio (coroutines on
-- the run's loop) and ProcRunMp (thread workers, each with its own
-- lua_State): pyconcurrent's function checks translated, timeouts of
-- sleeping and CPU-bound tasks, errors, the return-value rule, lc.sleep and
-- lc.run_prog inside tasks, callbacks and iterators.
--
-- The task functions live in spec/fixtures/fn_tasks.lua (loaded with
-- dofile: their _ENV is _G, which crosses to workers by name).

local lc = require "luaconcurrent"
local helpers = require "helpers"
local lfs = require "lfs"

local F = dofile(helpers.FIXTURES .. "/fn_tasks.lua")

local CLASSES = {
  { "ProcRunAsyncio", lc.ProcRunAsyncio },
  { "ProcRunMp", lc.ProcRunMp },
}

local count_success = helpers.count_success

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(lfs.mkdir(path))
  return path
end

local function rmtree(dir)
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then os.remove(dir .. "/" .. name) end
  end
  lfs.rmdir(dir)
end

for _, class in ipairs(CLASSES) do
  local name, new = class[1], class[2]

  describe(name .. " (functions)", function()
    helpers.leak_check(before_each, after_each)
    helpers.thread_check(before_each, after_each)

    describe("pyconcurrent's checks", function()
      local tasks = { { 1, 0.1 }, { 2, 0.4 }, { 3, 0.2 } }

      it("runs every task within the timeout", function()
        local t0 = helpers.mono()
        local run = new({ F.work, "dummy1" }, tasks, { num_workers = 5, timeout = 1 })
        local result = run:run_all()
        local elapsed = helpers.mono() - t0
        assert.are.equal(run.result, result)
        assert.are.equal(3, #result)
        assert.are.equal(3, count_success(result))
        for i, r in ipairs(result) do
          assert.are.equal(tasks[i][1], r.key)
          assert.are.equal(tasks[i][2], r.arg)
          assert.is_false(r.timeout)
          assert.is_nil(r.exception)
          assert.is_nil(r.error)
          assert.are.same({ key = tasks[i][1], args = { "dummy1", tasks[i][2] },
            result = "test_func done" }, r.answer)
          assert.is_true(r.time_run >= tasks[i][2] - 0.01,
            "task " .. i .. " time_run " .. r.time_run)
          assert.is_true(r.time_run < tasks[i][2] + 0.5,
            "task " .. i .. " time_run " .. r.time_run)
        end
        -- concurrently: the three sleeps (0.7 s in all) overlap
        assert.is_true(elapsed < 0.65, "run took " .. elapsed .. " s")
        assert.is_true(run.ok)
      end)

      it("times out the one task that sleeps too long", function()
        local t0 = helpers.mono()
        local run = new({ F.work, "dummy1" }, tasks, { num_workers = 5, timeout = 0.3 })
        local result = run:run_all()
        local elapsed = helpers.mono() - t0
        assert.are.equal(3, #result)
        assert.are.equal(2, count_success(result))
        local r = result[2]
        assert.are.equal(2, r.key)
        assert.is_false(r.success)
        assert.is_true(r.timeout)
        assert.are.equal("TimeoutError", r.exception)
        assert.matches("^timed out after", r.error)
        assert.is_nil(r.answer)
        assert.is_true(r.time_run >= 0.3 - 0.01 and r.time_run < 0.3 + 0.5,
          "time_run " .. r.time_run)
        for _, i in ipairs({ 1, 3 }) do
          assert.is_true(result[i].success)
          assert.is_false(result[i].timeout)
          assert.are.same({ "dummy1", tasks[i][2] }, result[i].answer.args)
        end
        assert.is_true(elapsed < 2, "run took " .. elapsed .. " s")
        assert.is_false(run.ok)
      end)
    end)

    it("stops a CPU-bound task at its deadline", function()
      local t0 = helpers.mono()
      local run = new({ F.busy }, { { 1 }, { 2 } }, { timeout = 0.2 })
      local result = run:run_all()
      local elapsed = helpers.mono() - t0
      for _, r in ipairs(result) do
        assert.is_true(r.timeout)
        assert.are.equal("TimeoutError", r.exception)
        assert.is_false(r.success)
        assert.is_true(r.time_run >= 0.19 and r.time_run < 2, "time_run " .. r.time_run)
      end
      assert.is_true(elapsed < 3, "run took " .. elapsed .. " s")
    end)

    it("stops a CPU-bound task that swallows the cancel with pcall", function()
      local t0 = helpers.mono()
      local run = new({ F.busy_pcall }, { { 1 }, { 2 } }, { timeout = 0.2 })
      local result = run:run_all()
      local elapsed = helpers.mono() - t0
      for _, r in ipairs(result) do
        assert.is_true(r.timeout, "timeout of " .. tostring(r.key))
        assert.are.equal("TimeoutError", r.exception)
        assert.is_false(r.success)
      end
      assert.is_true(elapsed < 3, "run took " .. elapsed .. " s")
    end)

    it("keeps an error in one task from disturbing the others", function()
      local run = new({ F.fail_on }, { { 1, "ok" }, { 2, "boom" }, { 3, "ok" } }, {})
      local result = run:run_all()
      assert.is_false(run.ok)
      local r = result[2]
      assert.is_false(r.success)
      assert.is_false(r.timeout)
      assert.are.equal("RuntimeError", r.exception)
      assert.truthy(r.error:find("boom-2", 1, true), r.error)
      assert.truthy(r.error:find("stack traceback", 1, true), r.error)
      for _, i in ipairs({ 1, 3 }) do
        assert.is_true(result[i].success)
        assert.are.equal(i, result[i].answer)
        assert.is_nil(result[i].exception)
      end
    end)

    it("measures the timeout from each task's own start", function()
      local tasks = { { 1, 0.15 }, { 2, 0.15 }, { 3, 0.15 } }
      local run = new({ F.work }, tasks, { num_workers = 1, timeout = 0.4 })
      local result = run:run_all()
      assert.are.equal(3, count_success(result))
      assert.is_true(run.ok)
    end)

    it("runs the next tasks normally after a task was stopped", function()
      local tasks = { { 1, "busy" }, { 2, 0 }, { 3, 0 } }
      local function task(key, args)
        if args[#args] == "busy" then return F.busy_pcall() end
        return F.work(key, args)
      end
      -- F.work and F.busy_pcall are fixture functions: they cross by
      -- bytecode like task itself
      local result = new({ task }, tasks, { num_workers = 1, timeout = 0.2 }):run_all()
      assert.is_true(result[1].timeout)
      for i = 2, 3 do
        assert.is_true(result[i].success, result[i].error)
        assert.is_false(result[i].timeout)
      end
    end)

    it("keeps keys as given, and copies answers whole", function()
      local tk = {}
      local tasks = { { "s" }, { 2 }, { true }, { tk }, { 2.5 } }
      local result = new({ F.key_type }, tasks, {}):run_all()
      local kinds = { "string", "number", "boolean", "table", "number" }
      for i, r in ipairs(result) do
        assert.is_true(rawequal(tasks[i][1], r.key), "key of result " .. i)
        assert.is_true(r.success, r.error)
        assert.are.equal(kinds[i], r.answer.kind)
        assert.are.equal(r.answer, r.answer.self)
        assert.are.equal(r.answer.a, r.answer.b)
        assert.are.equal("float", math.type(r.answer.a[1]))
        assert.are.equal("integer", math.type(r.answer.a[2]))
      end
    end)

    it("reports an error object that is not a string", function()
      local result = new({ F.raise_table }, { { 1 } }, {}):run_all()
      assert.is_false(result[1].success)
      assert.are.equal("RuntimeError", result[1].exception)
      assert.is_string(result[1].error)
    end)

    it("times out a task that came back late from a C call", function()
      local result = new({ F.c_block }, { { 1, 0.5 }, { 2, 0 } }, { timeout = 0.2 }):run_all()
      assert.is_true(result[1].timeout)
      assert.are.equal("TimeoutError", result[1].exception)
      assert.is_false(result[1].success)
      assert.is_true(result[1].time_run >= 0.45, "time_run " .. result[1].time_run)
      assert.is_true(result[2].success, result[2].error)
    end)

    describe("the return-value rule", function()
      local result
      before_each(function()
        result = {}
        local run = new({ F.ret }, {
          { "nothing", "nothing" }, { "false", "false" }, { "nil", "nil" },
          { "nilmsg", "nilmsg" }, { "falsetbl", "falsetbl" }, { "one", "one" },
          { "x", "x" }, { "trueans", "trueans" }, { "three", "three" },
        }, {})
        for _, r in ipairs(run:run_all()) do result[r.key] = r end
      end)

      it("counts returning nothing as success", function()
        local r = result.nothing
        assert.is_true(r.success)
        assert.is_nil(r.answer)
        assert.is_nil(r.error)
        assert.is_nil(r.exception)
      end)

      it("takes the truth of the first value as success", function()
        for _, k in ipairs({ "one", "x" }) do
          assert.is_true(result[k].success, k)
          assert.is_nil(result[k].answer, k)
          assert.is_nil(result[k].error, k)
        end
        assert.is_true(result.trueans.success)
        assert.are.same({ a = 1 }, result.trueans.answer)
        assert.is_true(result.three.success)
        assert.are.equal("second", result.three.answer)
      end)

      it("fails on false or nil, with a message", function()
        assert.is_false(result["false"].success)
        assert.are.equal("the task function returned false", result["false"].error)
        assert.is_false(result["nil"].success)
        assert.are.equal("the task function returned nil", result["nil"].error)
        assert.is_false(result.nilmsg.success)
        assert.are.equal("msg", result.nilmsg.error)
        assert.are.equal("msg", result.nilmsg.answer)
        assert.is_false(result.falsetbl.success)
        assert.are.equal("the task function returned false", result.falsetbl.error)
        assert.are.same({ why = 1 }, result.falsetbl.answer)
        for _, k in ipairs({ "false", "nil", "nilmsg", "falsetbl" }) do
          assert.is_false(result[k].timeout, k)
          assert.is_nil(result[k].exception, k)
        end
      end)
    end)

    describe("with lc.run_prog", function()
      it("runs subprocesses inside function tasks", function()
        local run = new({ F.prog, "/bin/sh", "-c", 'echo "out:$0"; echo err >&2' },
          { { 1, "a" }, { 2, "b" } }, { timeout = 10 })
        local result = run:run_all()
        for i, r in ipairs(result) do
          assert.is_true(r.success, r.error)
          assert.are.same({ key = i, retc = 0, out = "out:" .. r.arg .. "\n", err = "err\n" },
            r.answer)
        end
      end)

      it("kills the subprocess of a task that times out inside it", function()
        local m = helpers.marker()
        local t0 = helpers.mono()
        local run = new({ F.prog, "/usr/bin/sleep" }, { { "long", m }, { "short", 0 } },
          { timeout = 0.3 })
        local result = run:run_all()
        local elapsed = helpers.mono() - t0
        local left = helpers.wait_marker_gone(m, 2)
        helpers.kill_marker(m)
        assert.are.same({}, left)
        assert.is_true(result[1].timeout)
        assert.are.equal("TimeoutError", result[1].exception)
        assert.is_false(result[1].success)
        assert.is_true(result[2].success, result[2].error)
        assert.is_true(elapsed < 3, "run took " .. elapsed .. " s")
      end)
    end)

    it("runs iterator tasks", function()
      local i = 0
      local function next_task()
        i = i + 1
        if i <= 10 then return { i, "it" .. i } end
      end
      local run = new({ F.compute, "fixed" }, next_task, { num_workers = 3 })
      local result = run:run_all()
      assert.are.equal(10, #result)
      for k, r in ipairs(result) do
        assert.are.equal(k, r.key)
        assert.are.equal("it" .. k, r.arg)
        assert.are.equal(k % 3 ~= 0, r.success)
        assert.are.equal(k * k, r.answer.sq)
        assert.are.same({ "fixed", "it" .. k }, r.answer.args)
      end
    end)

    it("keeps no results with keep_results = false, reports through on_result", function()
      local seen, progress = {}, 0
      local tasks = {}
      for k = 1, 50 do tasks[k] = { k } end
      local run = new({ F.compute }, tasks, {
        keep_results = false,
        on_result = function(res) seen[res.key] = res.answer.sq end,
        on_progress = function(done) progress = done end,
      })
      local result = run:run_all()
      assert.are.equal(0, #result)
      assert.are.equal(0, helpers.count(run.result))
      assert.are.equal(50, helpers.count(seen))
      for k = 1, 50 do assert.are.equal(k * k, seen[k]) end
      assert.are.equal(50, progress)
      assert.is_false(run.ok) -- keys divisible by 3 fail
    end)

    it("propagates an error raised by on_result, leaving nothing behind", function()
      local tasks = {}
      for k = 1, 20 do tasks[k] = { k, 0.05 } end
      local calls = 0
      local run = new({ F.work }, tasks, {
        num_workers = 2,
        on_result = function()
          calls = calls + 1
          error("on_result boom")
        end,
      })
      local ok, err = pcall(run.run_all, run)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("on_result boom", 1, true), tostring(err))
      assert.are.equal(1, calls)
      assert.is_false(run.ok)
      -- every listed task has a result
      assert.are.equal(20, #run.result)
      for k, r in ipairs(run.result) do assert.are.equal(k, r.key) end
      -- leak check (fds, children, threads) runs in after_each
    end)
  end)
end

describe("ProcRunAsyncio (function specifics)", function()
  helpers.leak_check(before_each, after_each)

  it("closes a task's to-be-closed variables when cancelled in lc.sleep", function()
    local closed = {}
    local function task(key, args)
      local guard <close> = setmetatable({}, {
        __close = function() closed[key] = true end,
      })
      lc.sleep(args[#args])
      return true
    end
    local run = lc.ProcRunAsyncio({ task }, { { "long", 10 }, { "short", 0.01 } },
      { timeout = 0.2 })
    local result = run:run_all()
    assert.is_true(result[1].timeout)
    assert.are.equal("TimeoutError", result[1].exception)
    assert.is_true(result[2].success)
    assert.is_true(closed.long)
    assert.is_true(closed.short)
  end)

  it("closes to-be-closed variables of a CPU-bound task stopped by the hook", function()
    local closed = false
    local function task()
      local guard <close> = setmetatable({}, {
        __close = function() closed = true end,
      })
      while true do end
    end
    local result = lc.ProcRunAsyncio({ task }, { { 1 } }, { timeout = 0.1 }):run_all()
    assert.is_true(result[1].timeout)
    assert.is_true(closed)
  end)

  it("runs the subprocesses of several tasks concurrently", function()
    local tasks = {}
    for k = 1, 4 do tasks[k] = { k, 0.3 } end
    local t0 = helpers.mono()
    local run = lc.ProcRunAsyncio({ F.prog, "/usr/bin/sleep" }, tasks, { num_workers = 0 })
    local result = run:run_all()
    local elapsed = helpers.mono() - t0
    assert.are.equal(4, count_success(result))
    assert.is_true(elapsed >= 0.29, "run took " .. elapsed .. " s")
    assert.is_true(elapsed < 0.9, "run took " .. elapsed .. " s (4 x 0.3 s in sequence is 1.2 s)")
  end)

  it("runs tasks that call lc.run_prog and lc.sleep in several steps", function()
    local function task(key)
      local out = {}
      for step = 1, 3 do
        local retc, o = lc.run_prog({ "/bin/sh", "-c", "echo $0-$1", key, step })
        assert(retc == 0)
        out[#out + 1] = o
        lc.sleep(0.01)
      end
      return true, table.concat(out)
    end
    local result = lc.ProcRunAsyncio({ task }, { { "a" }, { "b" }, { "c" } }, {}):run_all()
    for _, r in ipairs(result) do
      assert.is_true(r.success, r.error)
      assert.are.equal(string.format("%s-1\n%s-2\n%s-3\n", r.key, r.key, r.key), r.answer)
    end
  end)

  it("reports a function that raises a non-string error", function()
    local result = lc.ProcRunAsyncio({ function() error({ code = 1 }) end }, { { 1 } }, {}):run_all()
    assert.is_false(result[1].success)
    assert.are.equal("RuntimeError", result[1].exception)
    assert.is_string(result[1].error)
  end)
end)

describe("ProcRunMp (function specifics)", function()
  helpers.leak_check(before_each, after_each)
  helpers.thread_check(before_each, after_each)

  it("runs lc.run_prog in a worker and kills it at the deadline", function()
    local m = helpers.marker()
    local t0 = helpers.mono()
    local run = lc.ProcRunMp({ F.prog, "/usr/bin/sleep" }, { { "long", m }, { "short", 0.05 } },
      { num_workers = 2, timeout = 0.3 })
    local result = run:run_all()
    local elapsed = helpers.mono() - t0
    local left = helpers.wait_marker_gone(m, 2)
    helpers.kill_marker(m)
    assert.are.same({}, left)
    assert.is_true(result[1].timeout)
    assert.are.equal("TimeoutError", result[1].exception)
    assert.is_true(result[2].success, result[2].error)
    assert.are.same({ key = "short", retc = 0, out = "", err = "" }, result[2].answer)
    assert.is_true(elapsed < 3, "run took " .. elapsed .. " s")
  end)

  it("turns os.exit in a task into one failed result", function()
    local run = lc.ProcRunMp({ F.exit_on }, { { 1, "exit" }, { 2, "ok" }, { 3, "ok" } },
      { num_workers = 1 })
    local result = run:run_all()
    assert.are.equal(3, #result)
    assert.is_false(result[1].success)
    assert.are.equal("RuntimeError", result[1].exception)
    assert.truthy(result[1].error:find("os.exit", 1, true), result[1].error)
    assert.is_true(result[2].success)
    assert.is_true(result[3].success)
    assert.are.equal(3, result[3].answer)
  end)

  it("gives the same results with 1 and 2 workers", function()
    local tasks = {}
    for k = 1, 40 do tasks[k] = { k, k * 2 } end
    local function strip(results)
      local out = {}
      for i, r in ipairs(results) do
        out[i] = { r.key, r.arg, r.success, r.answer, r.error, r.exception }
      end
      return out
    end
    local r1 = lc.ProcRunMp({ F.compute, "p" }, tasks, { num_workers = 1 }):run_all()
    local r2 = lc.ProcRunMp({ F.compute, "p" }, tasks, { num_workers = 2 }):run_all()
    assert.are.equal(40, #r1)
    assert.are.same(strip(r1), strip(r2))
  end)

  it("runs with num_workers = 0 (one worker per CPU)", function()
    local tasks = {}
    for k = 1, 8 do tasks[k] = { k } end
    local result = lc.ProcRunMp({ F.globals }, tasks, { num_workers = 0 }):run_all()
    for k, r in ipairs(result) do
      assert.is_true(r.success, r.error)
      assert.are.equal(k .. ":number", r.answer)
    end
  end)

  it("fails a task whose answer cannot be sent back", function()
    local result = lc.ProcRunMp({ F.bad_answer }, { { 1 }, { 2 } }, {}):run_all()
    for _, r in ipairs(result) do
      assert.is_false(r.success)
      assert.are.equal("RuntimeError", r.exception)
      assert.truthy(r.error:find("cannot send the task's answer back", 1, true), r.error)
      assert.truthy(r.error:find("userdata", 1, true), r.error)
    end
  end)

  it("closes to-be-closed variables of a task cancelled in lc.sleep", function()
    local dir = tmpdir()
    local result = lc.ProcRunMp({ F.close_writes },
      { { 1, { dir .. "/long", 10 } }, { 2, { dir .. "/short", 0 } } },
      { timeout = 0.2 }):run_all()
    local long = helpers.read_file(dir .. "/long")
    local short = helpers.read_file(dir .. "/short")
    rmtree(dir)
    assert.is_true(result[1].timeout)
    assert.is_true(result[2].success, result[2].error)
    assert.are.equal("normal", short)
    assert.are.equal("error", long)
  end)

  it("closes to-be-closed variables of a CPU-bound task stopped by the hook", function()
    local dir = tmpdir()
    local result = lc.ProcRunMp({ F.close_writes }, { { 1, { dir .. "/busy", "busy" } } },
      { timeout = 0.2 }):run_all()
    local busy = helpers.read_file(dir .. "/busy")
    rmtree(dir)
    assert.is_true(result[1].timeout)
    assert.are.equal("error", busy)
  end)

  it("sends a function defined in a spec file (busted's environment)", function()
    local result = lc.ProcRunMp({ function(key) return true, key * 2 end },
      { { 1 }, { 2 } }, {}):run_all()
    assert.are.equal(2, result[1].answer)
    assert.are.equal(4, result[2].answer)
  end)
end)

describe("lc.sleep outside tasks", function()
  it("blocks for about the time asked", function()
    local t0 = helpers.mono()
    lc.sleep(0.2)
    local elapsed = helpers.mono() - t0
    assert.is_true(elapsed >= 0.19 and elapsed < 1.5, "slept " .. elapsed .. " s")
  end)

  it("returns at once for 0", function()
    local t0 = helpers.mono()
    lc.sleep(0)
    assert.is_true(helpers.mono() - t0 < 0.1)
  end)

  it("rejects a negative or non-number time", function()
    assert.has_error(function() lc.sleep(-1) end)
    assert.has_error(function() lc.sleep("x") end)
    assert.has_error(function() lc.sleep(0 / 0) end)
  end)
end)
