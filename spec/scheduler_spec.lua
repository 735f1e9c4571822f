-- The scheduler and its executors (lua/luaconcurrent/runner.lua and
-- exec/*): what every kind of task owes the run, whatever the task does.

local lc = require "luaconcurrent"
local helpers = require "helpers"

local F = dofile(helpers.FIXTURES .. "/sched_tasks.lua")

describe("the scheduler", function()
  helpers.leak_check(before_each, after_each)

  for _, mode in ipairs({ { "coroutines", lc.ProcRunAsyncio, {} },
                          { "thread workers", lc.ProcRunMp, {} },
                          { "worker processes", lc.ProcRunMp, { isolation = "process" } } }) do
    it("keeps an error object with a broken __tostring inside its task (" .. mode[1] .. ")", function()
      local opts = { num_workers = 2 }
      for k, v in pairs(mode[3]) do opts[k] = v end
      local run = mode[2]({ F.bad_error }, { { 1 }, { 2 }, { 3 }, { 4 } }, opts)
      local results = run:run_all()
      assert.are.equal(4, #results)
      assert.is_true(results[1].success)
      assert.is_true(results[4].success)
      for _, i in ipairs({ 2, 3 }) do
        assert.is_false(results[i].success)
        assert.are.equal("RuntimeError", results[i].exception)
        assert.are.equal("string", type(results[i].error))
      end
    end)
  end

  it("reports every started task through on_result when a signal stops the run", function()
    -- Thread workers hold jobs when SIGINT stops the run: the jobs that end
    -- as it stops still reach on_result (with keep_results = false they
    -- would otherwise be lost).
    local out, err, code = helpers.run_lua([[
      local lc = require "luaconcurrent"
      lc.handle_signals()
      local self_pid = io.open("/proc/self/stat"):read("a"):match("^%d+")
      local tasks = {}
      for i = 1, 40 do tasks[i] = { i, i } end
      local reported, n = {}, 0
      local run = lc.ProcRunMp({ function(key)
        return require("luaconcurrent").run_prog({ "sleep", "0.3" }) == 0, key
      end }, tasks, { num_workers = 4, on_result = function(res)
        reported[res.key] = true
        n = n + 1
        -- (system() ignores SIGINT until it returns: the kill waits a moment)
        if n == 4 then os.execute("(sleep 0.1; kill -INT " .. self_pid .. ") &") end
      end })
      print(pcall(run.run_all, run))
      local missed = 0
      for _, r in ipairs(run.result) do
        if not reported[r.key] and not (r.error or ""):find("before this task started", 1, true) then
          missed = missed + 1
        end
      end
      print("missed " .. missed)
    ]])
    assert.are.equal(130, code, err)
    assert.matches("false\tluaconcurrent: interrupted by SIGINT", out)
    assert.matches("missed 0\n", out)
  end)

  it("names the mistake when run_all is called with a dot", function()
    local run = lc.ProcRunAsyncio({ "true" }, { { 1 } })
    local ok, err = pcall(run.run_all)
    assert.is_false(ok)
    assert.matches("run_all is a method: call it as run:run_all%(%)", err)
  end)

  it("gives a program that could not start its real start time", function()
    local before = os.time()
    local run = lc.ProcRunAsyncio({ "/nonexistent/program" }, { { 1 } })
    local res = run:run_all()[1]
    assert.are.equal("FileNotFoundError", res.exception)
    assert.is_true(res.time_start >= before - 1)
    assert.are.equal(0, res.time_run)
  end)

  it("checks an iterator's keys against unfinished tasks only with keep_results = false", function()
    local function tasks(n)
      local i = 0
      return function()
        i = i + 1
        if i <= n then return { "same", "x" } end
      end
    end
    local seen = 0
    local run = lc.ProcRunAsyncio({ "true" }, tasks(3),
      { num_workers = 1, keep_results = false, on_result = function() seen = seen + 1 end })
    run:run_all()
    assert.are.equal(3, seen)
    assert.is_true(run.ok)
    -- Keeping results, every key must be unique over the whole run.
    local kept = lc.ProcRunAsyncio({ "true" }, tasks(3), { num_workers = 1 })
    local ok, err = pcall(kept.run_all, kept)
    assert.is_false(ok)
    assert.matches("duplicate", err)
  end)

  it("brings a large answer back from a worker process whole", function()
    local run = lc.ProcRunMp({ F.big }, { { 48 } }, { isolation = "process", num_workers = 1 })
    local res = run:run_all()[1]
    assert.is_true(res.success, res.error)
    assert.are.equal(48 * 1024 * 1024, #res.answer)
  end)

  it("logs the start, the command line and the time of each task with verb = true", function()
    local _, out = helpers.run_lua([[
      local lc = require "luaconcurrent"
      lc.ProcRunAsyncio({"echo"}, {{1, "hello"}}, {verb = true}):run_all()
    ]])
    assert.matches('start 1: echo hello', out)
    assert.matches('done 1 in %d+%.%d+ s: ok', out)
  end)
end)
