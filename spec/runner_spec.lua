-- Runners (ProcRunAsyncio, ProcRunMp) with executable tasks: pyconcurrent's
-- own checks translated, result order and fields, callbacks, task lists,
-- worker limits, arguments, keep_results.

local lc = require "luaconcurrent"
local helpers = require "helpers"

local SLEEP = "/usr/bin/sleep"
local RUNNERS = { "ProcRunAsyncio", "ProcRunMp" }

local function sum(results, field)
  local s = 0
  for _, r in ipairs(results) do s = s + (r[field] or 0) end
  return s
end

local count_success = helpers.count_success

for _, runner in ipairs(RUNNERS) do
  local new = lc[runner]

  describe(runner .. " (executables)", function()
    helpers.leak_check(before_each, after_each)

    describe("pyconcurrent's checks", function()
      it("runs sleeps without hitting the timeout", function()
        local tasks = { { 1, 0.1 }, { 2, 0.4 }, { 3, 0.2 } }
        local timeout = 5
        local run = new({ SLEEP }, tasks, { num_workers = 5, timeout = timeout })
        local result = run:run_all()
        assert.are.equal(run.result, result)
        assert.are.equal(3, #result)
        assert.are.equal(3, count_success(result))
        assert.is_true(sum(result, "time_run") <= timeout + 0.1 + 0.4 + 0.2)
        for i, r in ipairs(result) do
          assert.are.equal(tasks[i][1], r.key)
          assert.is_false(r.timeout)
          -- each sleep really slept (no faster than asked)
          assert.is_true(r.time_run >= tasks[i][2] - 0.01,
            "task " .. i .. " time_run " .. r.time_run)
        end
        assert.is_true(run.ok)
      end)

      it("hits the timeout once: exactly 2 succeed", function()
        local tasks = { { 1, 0.1 }, { 2, 10 }, { 3, 0.2 } }
        local timeout = 0.5
        local t0 = helpers.mono()
        local run = new({ SLEEP }, tasks, { num_workers = 5, timeout = timeout })
        local result = run:run_all()
        local elapsed = helpers.mono() - t0
        assert.are.equal(3, #result)
        assert.are.equal(2, count_success(result))
        assert.is_true(sum(result, "time_run") <= timeout + 0.1 + 10 + 0.2)
        assert.is_true(elapsed < 5, "run took " .. elapsed .. " s")
        local r = result[2]
        assert.are.equal(2, r.key)
        assert.is_false(r.success)
        assert.is_true(r.timeout)
        assert.are.equal("TimeoutError", r.exception)
        assert.is_true(r.returncode < 0, "returncode " .. tostring(r.returncode))
        assert.is_number(r.signal)
        assert.are.equal(-r.returncode, r.signal)
        assert.matches("^timed out after", r.error)
        assert.is_true(r.time_run >= timeout - 0.01 and r.time_run < timeout + 3,
          "time_run " .. r.time_run)
        assert.is_true(result[1].success and result[3].success)
        assert.is_false(result[1].timeout or result[3].timeout)
        assert.is_false(run.ok)
      end)
    end)

    it("returns results in task order, calls on_result in completion order", function()
      local tasks = { { "a", 0.9 }, { "b", 0.5 }, { "c", 0.1 } }
      local seen = {}
      local run = new({ SLEEP }, tasks, {
        num_workers = 3,
        on_result = function(res) seen[#seen + 1] = res.key end,
      })
      local result = run:run_all()
      assert.are.same({ "a", "b", "c" }, { result[1].key, result[2].key, result[3].key })
      assert.are.same({ "c", "b", "a" }, seen)
    end)

    it("keeps keys of any type (compared as raw values)", function()
      local tk = {}
      local tasks = { { "s", 0 }, { 2, 0 }, { true, 0 }, { tk, 0 }, { 2.5, 0 }, { {}, 0 } }
      local run = new({ SLEEP }, tasks, {})
      local result = run:run_all()
      assert.are.equal(#tasks, #result)
      for i, r in ipairs(result) do
        assert.is_true(rawequal(tasks[i][1], r.key), "key of result " .. i)
        assert.is_true(r.success)
      end
    end)

    describe("ProcResult fields", function()
      local run, result
      local arg_list = { "x y", 7 }
      -- the spec's own clocks around run_all, to check the reported times
      -- against something they are not derived from
      local wall0, wall1, mono_elapsed

      before_each(function()
        wall0 = helpers.now()
        local mono0 = helpers.mono()
        run = new({ "/bin/sh", "-c", 'printf "o:%s|" "$@"; printf e >&2', "sh" }, {
          { "ok", "one" },
          { "list", arg_list },
          { "none" },
        }, {})
        result = run:run_all()
        mono_elapsed = helpers.mono() - mono0
        wall1 = helpers.now()
      end)

      it("has every field with the right type", function()
        for _, r in ipairs(result) do
          assert.are.equal(lc.ProcResult, getmetatable(r))
          assert.is_boolean(r.success)
          assert.is_boolean(r.timeout)
          assert.is_nil(r.exception)
          assert.are.equal("integer", math.type(r.returncode))
          assert.is_nil(r.signal)
          assert.is_string(r.stdout)
          assert.is_string(r.stderr)
          assert.is_nil(r.answer)
          assert.is_nil(r.error)
          assert.are.equal("integer", math.type(r.pid))
          assert.is_true(r.pid > 1)
          assert.is_number(r.time_start)
          assert.is_number(r.time_end)
          assert.is_number(r.time_run)
          assert.is_true(r.time_end >= r.time_start)
          assert.is_true(r.time_run >= 0)
          -- epoch seconds, not a monotonic clock, within the spec's bracket
          assert.is_true(r.time_start >= wall0 - 0.01 and r.time_end <= wall1 + 0.01,
            string.format("task %s: %.3f..%.3f outside %.3f..%.3f", r.key, r.time_start, r.time_end, wall0, wall1))
          assert.is_true(r.time_run <= mono_elapsed + 0.01,
            string.format("task %s: time_run %.3f > the run's %.3f", r.key, r.time_run, mono_elapsed))
          assert.is_true(r.time_start >= run.time_start - 0.01)
          assert.is_true(r.time_end <= run.time_end + 0.01)
        end
      end)

      it("keeps key, arg, success, returncode, stdout, stderr", function()
        assert.are.same({ "ok", "list", "none" }, { result[1].key, result[2].key, result[3].key })
        assert.are.equal("one", result[1].arg)
        assert.are.same(arg_list, result[2].arg)
        assert.is_nil(result[3].arg)
        assert.are.equal("o:one|", result[1].stdout)
        assert.are.equal("o:x y|o:7|", result[2].stdout)
        assert.are.equal("o:|", result[3].stdout) -- printf with no args still runs once
        for _, r in ipairs(result) do
          assert.is_true(r.success)
          assert.is_false(r.timeout)
          assert.are.equal(0, r.returncode)
          assert.are.equal("e", r.stderr)
        end
        assert.is_true(run.ok)
        -- distinct processes
        assert.are_not.equal(result[1].pid, result[2].pid)
      end)

      it("sets the runner's time_start, time_end, time_run, ok", function()
        assert.is_number(run.time_start)
        assert.is_number(run.time_end)
        assert.is_number(run.time_run)
        assert.is_true(run.time_end >= run.time_start)
        -- against the spec's own clocks around run_all
        assert.is_true(run.time_start >= wall0 - 0.01 and run.time_end <= wall1 + 0.01)
        assert.is_true(run.time_run >= 0 and run.time_run <= mono_elapsed + 0.01,
          string.format("time_run %.3f, measured %.3f", run.time_run, mono_elapsed))
        assert.is_true(run.ok)
      end)
    end)

    it("reports failure fields: exit status, signal", function()
      local run = new({ "/bin/sh", "-c" }, {
        { "three", "echo out; echo err >&2; exit 3" },
        { "kill9", "kill -9 $$" },
        { "term", "kill -TERM $$" },
        { "zero", "exit 0" },
      }, {})
      local r = run:run_all()
      assert.is_false(run.ok)

      assert.is_false(r[1].success)
      assert.is_false(r[1].timeout)
      assert.are.equal(3, r[1].returncode)
      assert.is_nil(r[1].signal)
      assert.are.equal("exited with status 3", r[1].error)
      assert.are.equal("out\n", r[1].stdout)
      assert.are.equal("err\n", r[1].stderr)

      assert.is_false(r[2].success)
      assert.is_false(r[2].timeout)
      assert.are.equal(-9, r[2].returncode)
      assert.are.equal(9, r[2].signal)
      assert.are.equal("killed by signal 9 (SIGKILL)", r[2].error)

      assert.are.equal(-15, r[3].returncode)
      assert.are.equal(15, r[3].signal)
      assert.are.equal("killed by signal 15 (SIGTERM)", r[3].error)

      assert.is_true(r[4].success)
      assert.is_nil(r[4].error)
    end)

    it("never loses a task: mixed outcomes in one run", function()
      local m = helpers.marker()
      local tasks = {
        { "ok", "exit 0" }, { "three", "exit 3" }, { "kill", "kill -9 $$" },
        { "slow", "sleep " .. m }, { "out", "echo hi" },
      }
      local run = new({ "/bin/sh", "-c" }, tasks, { timeout = 1, num_workers = 2 })
      local r = run:run_all()
      assert.are.equal(#tasks, #r)
      local got = {}
      for i, res in ipairs(r) do
        got[i] = { res.key, res.success, res.timeout, res.returncode }
      end
      assert.are.same({
        { "ok", true, false, 0 },
        { "three", false, false, 3 },
        { "kill", false, false, -9 },
        { "slow", false, true, -15 },
        { "out", true, false, 0 },
      }, got)
      assert.are.equal("hi\n", r[5].stdout)
      assert.are.same({}, helpers.wait_marker_gone(m))
    end)

    it("supports a nested run inside on_result", function()
      local inner = {}
      local r = new({ SLEEP }, { { 1, 0.1 }, { 2, 0.4 } }, {
        on_result = function(res)
          local rr = new({ "/bin/echo" }, { { "i", res.key } }, {}):run_all()
          inner[#inner + 1] = rr[1].stdout
        end,
      }):run_all()
      assert.are.same({ "1\n", "2\n" }, inner)
      assert.is_true(r[1].success and r[2].success)
    end)

    it("works when run_all is called inside a coroutine", function()
      local co = coroutine.wrap(function()
        return new({ "/bin/echo", "co" }, { { 1 } }, {}):run_all()[1].stdout
      end)
      assert.are.equal("co\n", co())
    end)

    it("reports large exit statuses as such, not as signals", function()
      local r = new({ "/bin/sh", "-c" }, { { 1, "exit 200" }, { 2, "exit 129" } }, {}):run_all()
      assert.are.same({ 200, 129 }, { r[1].returncode, r[2].returncode })
      assert.is_nil(r[1].signal)
      assert.is_nil(r[2].signal)
    end)

    describe("arguments", function()
      local cases = {
        { "nil arg appends nothing", { "/bin/echo", "a" }, nil, "a\n" },
        { "string arg appended", { "/bin/echo", "a" }, "b", "a b\n" },
        { "number arg via tostring", { "/bin/echo", "a" }, 5, "a 5\n" },
        { "float arg via tostring", { "/bin/echo" }, 0.5, "0.5\n" },
        { "list arg appends every element", { "/bin/echo", "a" }, { "c", 2, "d e" }, "a c 2 d e\n" },
        { "empty list appends nothing", { "/bin/echo", "a" }, {}, "a\n" },
        { "number in pargs", { "/bin/echo", 7 }, "x", "7 x\n" },
        { "empty string arg is an argument", { "/bin/sh", "-c", 'echo "$#"', "sh" }, "", "1\n" },
      }
      for _, c in ipairs(cases) do
        it(c[1], function()
          local run = new(c[2], { { 1, c[3] } }, {})
          local r = run:run_all()[1]
          assert.is_true(r.success, r.error)
          assert.are.equal(c[4], r.stdout)
        end)
      end

      it("does not go through a shell (no word splitting, no globbing)", function()
        local r = new({ "/bin/echo" }, { { 1, "* $HOME  two" } }, {}):run_all()[1]
        assert.are.equal("* $HOME  two\n", r.stdout)
      end)

      it("finds a program without a slash through PATH", function()
        local r = new({ "echo", "via-path" }, { { 1 } }, {}):run_all()[1]
        assert.is_true(r.success, r.error)
        assert.are.equal("via-path\n", r.stdout)
      end)
    end)

    describe("callbacks", function()
      it("on_start(key, arg) once per task, before its on_result", function()
        local targ = { "l1" }
        local tasks = { { "a", "x" }, { "b", targ }, { "c" } }
        local starts, results, order = {}, {}, {}
        local run = new({ "/bin/echo" }, tasks, {
          on_start = function(key, arg)
            starts[#starts + 1] = { key, arg, select("#", key, arg) }
            order[#order + 1] = "s:" .. key
          end,
          on_result = function(res)
            results[#results + 1] = res
            order[#order + 1] = "r:" .. res.key
          end,
        })
        run:run_all()
        assert.are.equal(3, #starts)
        assert.are.equal(3, #results)
        local byk = {}
        for _, s in ipairs(starts) do byk[s[1]] = s end
        assert.are.equal("x", byk.a[2])
        assert.is_true(rawequal(targ, byk.b[2]) or (type(byk.b[2]) == "table" and byk.b[2][1] == "l1"))
        assert.is_nil(byk.c[2])
        -- each key's start comes before its result
        for _, k in ipairs({ "a", "b", "c" }) do
          local si, ri
          for i, o in ipairs(order) do
            if o == "s:" .. k then si = i end
            if o == "r:" .. k then ri = i end
          end
          assert.is_true(si ~= nil and ri ~= nil and si < ri, "order for " .. k)
        end
        -- on_result gets the ProcResult objects of run.result
        for _, res in ipairs(results) do
          assert.are.equal(lc.ProcResult, getmetatable(res))
          assert.is_true(res.success)
        end
      end)

      it("on_progress(done, total) once per finished task", function()
        local calls = {}
        local tasks = {}
        for i = 1, 6 do tasks[i] = { i, 0 } end
        local run = new({ SLEEP }, tasks, {
          num_workers = 2,
          on_progress = function(done, total) calls[#calls + 1] = { done, total } end,
        })
        run:run_all()
        local expect = {}
        for i = 1, 6 do expect[i] = { i, 6 } end
        assert.are.same(expect, calls)
      end)

      it("callbacks see results of failed and timed-out tasks too", function()
        local keys = {}
        local run = new({ "/bin/sh", "-c" }, { { 1, "exit 1" }, { 2, "sleep 5" }, { 3, "exit 0" } }, {
          timeout = 0.3,
          on_result = function(res) keys[res.key] = res.success end,
        })
        run:run_all()
        assert.are.same({ [1] = false, [2] = false, [3] = true }, keys)
      end)
    end)

    describe("task lists", function()
      it("accepts an iterator function", function()
        local i = 0
        local calls = 0
        local function iter()
          calls = calls + 1
          i = i + 1
          if i <= 5 then return { "k" .. i, i } end
          return nil
        end
        local progress = {}
        local run = new({ "/bin/echo" }, iter, {
          num_workers = 2,
          on_progress = function(done, total) progress[#progress + 1] = { done, total } end,
        })
        local r = run:run_all()
        assert.are.equal(5, #r)
        for j = 1, 5 do
          assert.are.equal("k" .. j, r[j].key)
          assert.are.equal(j .. "\n", r[j].stdout)
        end
        assert.are.equal(6, calls) -- 5 tasks + the final nil, no call after the end
        assert.are.equal(5, #progress)
        for j, p in ipairs(progress) do
          assert.are.equal(j, p[1])
          assert.is_true(p[2] == nil or p[2] == 5, "total " .. tostring(p[2]))
        end
      end)

      it("does not pull the whole iterator up front", function()
        local produced, max_ahead, started = 0, 0, 0
        local function iter()
          if produced >= 30 then return nil end
          produced = produced + 1
          max_ahead = math.max(max_ahead, produced - started)
          return { produced, 0 }
        end
        local run = new({ SLEEP }, iter, {
          num_workers = 2,
          on_start = function() started = started + 1 end,
        })
        assert.are.equal(30, #run:run_all())
        assert.is_true(max_ahead <= 10, "iterator ran " .. max_ahead .. " tasks ahead of starts")
      end)

      it("never calls a finished coroutine.wrap iterator again", function()
        local iter = coroutine.wrap(function()
          for j = 1, 3 do coroutine.yield({ j }) end
        end)
        local r = new({ "/bin/echo" }, iter, { num_workers = 1 }):run_all()
        assert.are.equal(3, #r)
        assert.are.same({ 1, 2, 3 }, { r[1].key, r[2].key, r[3].key })
      end)

      it("handles an empty task list", function()
        local run = new({ "/bin/echo" }, {}, {})
        assert.are.same({}, run:run_all())
        assert.is_true(run.ok)
      end)

      it("handles an iterator that ends at once", function()
        local run = new({ "/bin/echo" }, function() return nil end, {})
        assert.are.same({}, run:run_all())
      end)
    end)

    describe("num_workers", function()
      local function concurrency(opts, ntasks, secs)
        local running, max_running, starts, results = 0, 0, 0, 0
        opts.on_start = function()
          starts = starts + 1
          running = running + 1
          if running > max_running then max_running = running end
        end
        opts.on_result = function()
          results = results + 1
          running = running - 1
        end
        local tasks = {}
        for i = 1, ntasks do tasks[i] = { i, secs } end
        local t0 = helpers.mono()
        local r = new({ SLEEP }, tasks, opts):run_all()
        local elapsed = helpers.mono() - t0
        assert.are.equal(ntasks, #r)
        assert.are.equal(ntasks, starts)
        assert.are.equal(ntasks, results)
        for _, res in ipairs(r) do assert.is_true(res.success, res.error) end
        return max_running, elapsed
      end

      it("1 runs one task at a time", function()
        local max_running = concurrency({ num_workers = 1 }, 5, 0.05)
        assert.are.equal(1, max_running)
      end)

      it("2 runs at most two at a time and does use two", function()
        local max_running = concurrency({ num_workers = 2 }, 6, 0.3)
        assert.are.equal(2, max_running)
      end)

      it("defaults to 4", function()
        local max_running = concurrency({}, 8, 0.3)
        assert.are.equal(4, max_running)
      end)

      it("0 means unlimited", function()
        local max_running, elapsed = concurrency({ num_workers = 0 }, 20, 1)
        assert.are.equal(20, max_running)
        assert.is_true(elapsed < 8, "20 x 1 s sleeps took " .. elapsed .. " s")
      end)

      it("positional (pargs, tasks, num_workers, timeout) form works", function()
        local run = new({ SLEEP }, { { 1, 0.1 }, { 2, 10 }, { 3, 0.1 } }, 1, 0.5)
        local r = run:run_all()
        assert.are.same({ true, false, true }, { r[1].success, r[2].success, r[3].success })
        assert.is_true(r[2].timeout)
        assert.is_true(r[1].time_end <= r[2].time_start + 0.01)
        assert.is_true(r[2].time_end <= r[3].time_start + 0.01)
      end)
    end)

    describe("timeout", function()
      it("is measured per task from its own start", function()
        local tasks = { { 1, 0.3 }, { 2, 0.3 }, { 3, 0.3 } }
        local r = new({ SLEEP }, tasks, { num_workers = 1, timeout = 0.6 }):run_all()
        for i = 1, 3 do assert.is_true(r[i].success, "task " .. i .. ": " .. tostring(r[i].error)) end
      end)

      it("0 means none", function()
        local r = new({ SLEEP }, { { 1, 0.3 } }, { timeout = 0 }):run_all()
        assert.is_true(r[1].success)
      end)

      it("ends with SIGKILL after kill_grace when SIGTERM is ignored", function()
        local t0 = helpers.mono()
        local r = new({ "/bin/sh", "-c", "trap '' TERM; sleep 5" }, { { 1 } },
          { timeout = 0.3, kill_grace = 0.3 }):run_all()[1]
        local elapsed = helpers.mono() - t0
        assert.is_true(r.timeout)
        assert.are.equal(9, r.signal)
        assert.are.equal(-9, r.returncode)
        assert.is_true(r.time_run >= 0.55, "time_run " .. r.time_run)
        assert.is_true(elapsed < 4, "took " .. elapsed)
      end)
    end)

    describe("keep_results = false", function()
      it("keeps no result list but reports every result through on_result", function()
        local got = {}
        local tasks = {}
        for i = 1, 10 do tasks[i] = { i, i == 4 and "fail" or "ok" } end
        local run = new({ "/bin/sh", "-c", '[ "$0" = ok ]' }, tasks, {
          keep_results = false,
          on_result = function(res) got[#got + 1] = res end,
        })
        local ret = run:run_all()
        assert.are.equal(0, #run.result)
        assert.are.equal(0, #ret)
        assert.are.equal(10, #got)
        local ok = 0
        for _, res in ipairs(got) do if res.success then ok = ok + 1 end end
        assert.are.equal(9, ok)
        assert.is_false(run.ok)
      end)
    end)

    describe("options env, cwd, input", function()
      it("merges env onto the environment (false unsets)", function()
        local r = new({ "/bin/sh", "-c", 'echo "$LC_SPEC_A|${HOME-unset}|${PATH:+path}"' }, { { 1 } },
          { env = { LC_SPEC_A = "va", HOME = false } }):run_all()[1]
        assert.are.equal("va|unset|path\n", r.stdout)
      end)

      it("runs in cwd", function()
        local r = new({ "/bin/pwd" }, { { 1 } }, { cwd = "/usr/bin" }):run_all()[1]
        assert.are.equal("/usr/bin\n", r.stdout)
      end)

      it("a missing cwd is a spawn failure of the task, not of the run", function()
        local r = new({ "/bin/pwd" }, { { 1 }, { 2 } }, { cwd = "/nonexistent-dir-lc" }):run_all()
        assert.are.equal(2, #r)
        for _, res in ipairs(r) do
          assert.is_false(res.success)
          assert.is_string(res.error)
          assert.matches("ENOENT", res.error)
        end
      end)

      it("writes input to every task's stdin", function()
        local r = new({ "/usr/bin/sort" }, { { 1 }, { 2 } }, { input = "b\na\n" }):run_all()
        assert.are.equal("a\nb\n", r[1].stdout)
        assert.are.equal("a\nb\n", r[2].stdout)
      end)

      it("gives /dev/null as stdin without input", function()
        local t0 = helpers.mono()
        local r = new({ "/bin/cat" }, { { 1 } }, {}):run_all()[1]
        assert.is_true(r.success)
        assert.are.equal("", r.stdout)
        assert.is_true(helpers.mono() - t0 < 5)
        local r2 = new({ "/bin/readlink", "/proc/self/fd/0" }, { { 1 } }, {}):run_all()[1]
        assert.are.equal("/dev/null\n", r2.stdout)
      end)
    end)
  end)
end
