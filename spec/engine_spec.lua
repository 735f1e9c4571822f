-- The engine's promises about child processes, one spec each:
-- process groups, signal state and fds in the child, coexistence with
-- os.execute/io.popen, killing whole groups, bounded waits, big outputs and
-- inputs, spawn failures, signals, errors raised in callbacks.

local lc = require "luaconcurrent"
local helpers = require "helpers"

local function run1(pargs, arg, opts)
  local run = lc.ProcRunAsyncio(pargs, { { 1, arg } }, opts or {})
  return run:run_all()[1], run
end

local function stat_fields(s)
  -- "pid (comm) state ppid pgrp session ..." ; comm may hold spaces
  local pid, rest = s:match("^(%d+) %b() (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(pid), f
end

describe("engine", function()
  helpers.leak_check(before_each, after_each)

  describe("child process setup", function()
    it("puts every child in its own process group (pgid == pid)", function()
      local r = run1({ "/bin/cat", "/proc/self/stat" })
      assert.is_true(r.success, r.error)
      local pid, f = stat_fields(r.stdout)
      local pgrp = tonumber(f[3])
      assert.are.equal(r.pid, pid)
      assert.are.equal(pid, pgrp)
      local _, mine = stat_fields(helpers.read_file("/proc/self/stat"))
      assert.are_not.equal(tonumber(mine[3]), pgrp)
    end)

    it("gives a shell task's children the task's group", function()
      local r = run1({ "/bin/sh", "-c", 'echo $$; ps -o pgid= -p $$' })
      assert.is_true(r.success, r.error)
      local pid, pgid = r.stdout:match("^(%d+)\n%s*(%d+)")
      assert.are.equal(tostring(r.pid), pid)
      assert.are.equal(pid, pgid)
    end)

    -- glibc's posix_spawn (2.36, spawni.c) sets its two internal signals,
    -- SIGCANCEL (32) and SIGSETXID (33), to SIG_IGN in every child it
    -- creates (io.popen's children included) unless they are in the SETSIGDEF
    -- set, and sigaddset refuses them. Those two bits are masked out here;
    -- every other signal must be neither blocked nor ignored.
    local GLIBC_INTERNAL = (1 << 31) | (1 << 32)

    local function sig_bits(status, name)
      local hex = status:match(name .. ":%s*(%x+)")
      assert.is_not_nil(hex, name .. " not found in:\n" .. status)
      return tonumber(hex, 16)
    end

    it("resets the signal mask and dispositions (SigBlk, SigIgn = 0)", function()
      local r = run1({ "/bin/cat", "/proc/self/status" })
      assert.is_true(r.success, r.error)
      assert.are.equal(0, sig_bits(r.stdout, "SigBlk"))
      assert.are.equal(0, sig_bits(r.stdout, "SigIgn") & ~GLIBC_INTERNAL,
        "SigIgn " .. r.stdout:match("SigIgn:%s*(%x+)"))
    end)

    it("resets SigIgn even when the parent ignores SIGPIPE (and HUP, USR1)", function()
      local out, err, code = helpers.run_fixture("sigign.lua", {}, "trap '' PIPE HUP USR1;")
      assert.are.equal(0, code, "fixture failed: " .. err)
      local parent, child = out:match("parent (%x+)\nchild (%x+)")
      assert.is_not_nil(parent, "fixture output: " .. out .. err)
      -- the fixture's own process really ignores SIGPIPE (13), SIGHUP (1), SIGUSR1 (10)
      local p = tonumber(parent, 16)
      local want = (1 << 12) | (1 << 0) | (1 << 9)
      assert.are.equal(want, p & want)
      assert.are.equal(0, tonumber(child, 16) & ~GLIBC_INTERNAL, "child SigIgn " .. child)
    end)

    it("does not let the child inherit fds >= 3 (io.open files, popen pipes)", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      local p = assert(io.popen("cat >/dev/null", "w"))
      local ok, r = pcall(run1, { "/bin/sh", "-c", "ls /proc/$$/fd; for x in /proc/$$/fd/*; do readlink $x; done; exit 0" })
      p:close()
      f:close()
      os.remove(path)
      assert.is_true(ok, r)
      assert.is_true(r.success, r.error)
      local fds, targets = {}, {}
      for line in r.stdout:gmatch("[^\n]+") do
        if line:match("^%d+$") then fds[#fds + 1] = line else targets[#targets + 1] = line end
      end
      table.sort(fds)
      assert.are.same({ "0", "1", "2" }, fds)
      for _, t in ipairs(targets) do assert.are_not.equal(path, t) end
    end)

    it("does not let one task inherit another running task's pipes", function()
      local r = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, {
        { 1, "sleep 0.3; echo one" },
        { 2, "ls /proc/$$/fd" },
        { 3, "echo three; exec sleep 0.2" },
        { 4, "ls /proc/$$/fd" },
      }, { num_workers = 0, input = "x" }):run_all()
      assert.are.equal("0\n1\n2\n", r[2].stdout)
      assert.are.equal("0\n1\n2\n", r[4].stdout)
      assert.are.equal("one\n", r[1].stdout)
      assert.are.equal("three\n", r[3].stdout)
    end)
  end)

  describe("os.execute and io.popen beside the engine", function()
    local function check_popen(tag)
      local p = assert(io.popen("echo " .. tag))
      local out = p:read("a")
      local a, b, c = p:close()
      assert.are.same({ tag .. "\n", true, "exit", 0 }, { out, a, b, c })
      assert.are.same({ true, "exit", 0 }, { os.execute("true") })
      assert.are.same({ nil, "exit", 7 }, { os.execute("exit 7") })
    end

    it("keep working before, inside callbacks of, and after a run", function()
      check_popen("before")
      local in_start, in_result = 0, 0
      local run = lc.ProcRunAsyncio({ "/usr/bin/sleep" }, { { 1, 0.2 }, { 2, 0.3 }, { 3, 0 }, { 4, 0.1 } }, {
        num_workers = 4,
        on_start = function() check_popen("start"); in_start = in_start + 1 end,
        on_result = function() check_popen("result"); in_result = in_result + 1 end,
      })
      local r = run:run_all()
      assert.are.same({ 4, 4 }, { in_start, in_result })
      for _, res in ipairs(r) do assert.is_true(res.success, res.error) end
      check_popen("after")
    end)

    it("do not have their child reaped by the engine (popen open across a run)", function()
      local p = assert(io.popen("sleep 0.2; echo late"))
      local r = lc.ProcRunAsyncio({ "/usr/bin/sleep" }, { { 1, 0.5 }, { 2, 0.1 } }, {}):run_all()
      assert.is_true(r[1].success and r[2].success)
      local out = p:read("a")
      assert.are.same({ "late\n", true, "exit", 0 }, { out, p:close() })
    end)

    it("a popen child exiting during a run does not disturb the run", function()
      local p = assert(io.popen("exit 5"))
      local r = lc.ProcRunAsyncio({ "/bin/sh", "-c", "sleep 0.3; exit 2" }, { { 1 } }, {}):run_all()[1]
      assert.are.equal(2, r.returncode)
      assert.are.same({ nil, "exit", 5 }, { p:close() })
    end)
  end)

  describe("timeout", function()
    it("kills the whole process group, grandchildren included", function()
      local m = helpers.marker()
      local t0 = helpers.mono()
      local r = run1({ "/bin/sh", "-c", "sleep " .. m .. " & sleep " .. m .. "; wait" }, nil, { timeout = 0.3 })
      local elapsed = helpers.mono() - t0
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_true(r.timeout)
      assert.are.equal("TimeoutError", r.exception)
      assert.is_true(elapsed < 5, "took " .. elapsed)
      assert.are.same({}, left)
    end)

    it("sends SIGTERM to the whole group first, grandchildren included", function()
      -- A grandchild traps TERM and reports it on the task's stdout; the
      -- leader traps TERM too and waits for it, so the group outlives the
      -- SIGTERM. A SIGTERM to the leader alone would leave the grandchild
      -- unaware until the group's SIGKILL after kill_grace (10 s here).
      local m = helpers.marker()
      local grandchild = "trap 'echo TERM; exit 0' TERM; echo ready; sleep " .. m .. " & wait"
      local leader = "trap : TERM; /bin/sh -c \"$0\" & wait; wait"
      local r = run1({ "/bin/sh", "-c", leader, grandchild }, nil, { timeout = 1, kill_grace = 10 })
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_true(r.timeout)
      assert.are.equal("TimeoutError", r.exception)
      assert.are.equal("ready\nTERM\n", r.stdout, "the grandchild did not see SIGTERM before the timeout")
      assert.is_true(r.time_run < 6, "the group needed the SIGKILL: time_run " .. r.time_run)
      assert.are.same({}, left)
    end)

    it("keeps the output produced before the kill", function()
      local r = run1({ "/bin/sh", "-c", "echo before; echo e1 >&2; sleep 30" }, nil, { timeout = 0.3 })
      assert.is_true(r.timeout)
      assert.are.equal("before\n", r.stdout)
      assert.are.equal("e1\n", r.stderr)
      assert.is_false(r.success)
      assert.are.equal(-15, r.returncode)
      assert.are.equal(15, r.signal)
    end)

    it("kills a grandchild that left the group holding stdout (issue 17 item 13)", function()
      local m = helpers.marker()
      local t0 = helpers.mono()
      local ok, r = pcall(run1, { "/bin/sh", "-c", 'setsid sh -c "sleep ' .. m .. '" & echo x; sleep 30' }, nil,
        { timeout = 0.3 })
      local elapsed = helpers.mono() - t0
      local escaped = helpers.wait_marker_gone(m, 2)
      helpers.kill_marker(m)
      assert.is_true(ok, r)
      -- the setsid'd sleep died with the task (its cgroup, or the walk)
      assert.are.same({}, escaped)
      assert.are.equal("timed out after 0.3 s", r.error)   -- not "output may be incomplete"
      assert.is_true(elapsed < 6, "run_all took " .. elapsed .. " s")
      assert.is_true(r.timeout)
      assert.are.equal("x\n", r.stdout)
    end)
  end)

  describe("nothing outlives run_all", function()
    it("kills a background process left in the group when the leader exits", function()
      local m = helpers.marker()
      local r = run1({ "/bin/sh", "-c", "sleep " .. m .. " >/dev/null 2>&1 & echo done" })
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_true(r.success, r.error)
      assert.are.equal("done\n", r.stdout)
      assert.are.same({}, left)
    end)

    it("on timeout, kills a grandchild that ignores SIGTERM after the leader died of it", function()
      local m = helpers.marker()
      local t0 = helpers.mono()
      local r = run1({ "/bin/sh", "-c", "(trap '' TERM; exec sleep " .. m .. ") & wait" }, nil, { timeout = 0.3 })
      local elapsed = helpers.mono() - t0
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_true(r.timeout)
      assert.is_true(elapsed < 5, "took " .. elapsed)
      assert.are.same({}, left)
    end)

    it("times out 20 tasks at once, each within its bound", function()
      local tasks = {}
      for i = 1, 20 do tasks[i] = { i, 30 } end
      local t0 = helpers.mono()
      local r = lc.ProcRunAsyncio({ "/usr/bin/sleep" }, tasks, { num_workers = 0, timeout = 0.3 }):run_all()
      local elapsed = helpers.mono() - t0
      assert.is_true(elapsed < 5, "took " .. elapsed)
      for _, res in ipairs(r) do
        assert.is_true(res.timeout)
        assert.are.equal(-15, res.returncode)
        assert.is_true(res.time_run >= 0.29 and res.time_run < 3, "time_run " .. res.time_run)
      end
    end)
  end)

  describe("large data", function()
    it("captures 200 MB from one task", function()
      local n = 200000000
      do   -- r goes out of scope before the collection frees its 200 MB
        local r = run1({ "/usr/bin/head", "-c", tostring(n), "/dev/zero" })
        assert.is_true(r.success, r.error)
        assert.are.equal(n, #r.stdout)
        assert.are.equal("\0\0\0\0", r.stdout:sub(1, 2) .. r.stdout:sub(-2))
      end
      collectgarbage()
    end)

    it("drains stderr while the child writes it before stdout", function()
      local r = run1({ "/bin/sh", "-c", "head -c 3000000 /dev/zero >&2; echo done" })
      assert.is_true(r.success, r.error)
      assert.are.equal(3000000, #r.stderr)
      assert.are.equal("done\n", r.stdout)
    end)

    it("feeds 200 KB of input through cat and gets it back", function()
      local parts = {}
      for i = 1, 20000 do parts[i] = string.format("%09d\n", i) end
      local input = table.concat(parts)
      assert.are.equal(200000, #input)
      local r = run1({ "/bin/cat" }, nil, { input = input })
      assert.is_true(r.success, r.error)
      assert.is_true(r.stdout == input, "stdout differs from input (#stdout = " .. #r.stdout .. ")")
    end)

    it("passes binary input and output unchanged", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local input = table.concat(bytes):rep(300)
      local r = run1({ "/bin/cat" }, nil, { input = input })
      assert.is_true(r.stdout == input, "binary data changed")
    end)

    it("survives a child that never reads a large input (no SIGPIPE to us)", function()
      local input = string.rep("x", 4 * 1024 * 1024)
      local r = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, { { 1, "exit 0" }, { 2, "head -c 10" } },
        { input = input }):run_all()
      assert.is_true(r[1].success, r[1].error)
      assert.is_true(r[2].success, r[2].error)
      assert.are.equal("xxxxxxxxxx", r[2].stdout)
      -- README's result table: exit 0 is success with no exception and no error -- a
      -- task that does not read all of its input is not an error (Python's
      -- communicate() ignores the broken pipe too)
      assert.is_nil(r[1].error)
      assert.is_nil(r[2].error)
      -- but the result says what happened to the input
      assert.matches("stdin closed by the task after %d+ of 4194304 bytes %(EPIPE%)", r[2].input_error)
    end)

    it("reports the unread input of a failing task in its error", function()
      local r = lc.run_prog({ "/bin/sh", "-c", "exit 3" }, { input = string.rep("y", 1024 * 1024) })
      assert.are.equal(3, r)
      local _, _, _, res = lc.run_prog({ "/bin/sh", "-c", "exit 3" }, { input = string.rep("y", 1024 * 1024) })
      assert.matches("exited with status 3; stdin closed by the task", res.error)
    end)

    it("runs 300 short tasks without leaking", function()
      local tasks = {}
      for i = 1, 300 do tasks[i] = { i, tostring(i) } end
      local r = lc.ProcRunAsyncio({ "/bin/echo" }, tasks, { num_workers = 8 }):run_all()
      assert.are.equal(300, #r)
      for i, res in ipairs(r) do
        assert.is_true(res.success, res.error)
        assert.are.equal(i .. "\n", res.stdout)
      end
    end)
  end)

  describe("spawn failures", function()
    it("missing program: FileNotFoundError naming ENOENT", function()
      local r, run = run1({ "/nonexistent/lc-prog" })
      assert.is_false(r.success)
      assert.is_false(r.timeout)
      assert.are.equal("FileNotFoundError", r.exception)
      assert.are.equal(-1, r.returncode)
      assert.is_nil(r.pid)
      assert.are.equal("", r.stdout)
      assert.are.equal("", r.stderr)
      assert.matches("ENOENT", r.error)
      assert.matches("/nonexistent/lc-prog", r.error, 1, true)
      assert.are.equal("cannot run '/nonexistent/lc-prog': No such file or directory (ENOENT)", r.error)
      assert.is_false(run.ok)
    end)

    it("missing program found through PATH: FileNotFoundError", function()
      local r = run1({ "lc-no-such-program-xyz" })
      assert.are.equal("FileNotFoundError", r.exception)
      assert.matches("ENOENT", r.error)
    end)

    it("non-executable file: PermissionError", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write("#!/bin/sh\necho hi\n")
      f:close()
      local ok, r = pcall(run1, { path })
      os.remove(path)
      assert.is_true(ok, r)
      assert.is_false(r.success)
      assert.are.equal("PermissionError", r.exception)
      assert.are.equal(-1, r.returncode)
      assert.matches("EACCES", r.error)
    end)

    it("a directory as program: PermissionError", function()
      local r = run1({ "/usr" })
      assert.are.equal("PermissionError", r.exception)
    end)

    it("too many open files: OSError naming EMFILE, and the run goes on", function()
      local out, err, code = helpers.run_fixture("emfile.lua", {}, "ulimit -n 24;")
      assert.are.equal(0, code, "fixture failed:\n" .. out .. err)
      local cjson = require "cjson"
      local d = cjson.decode(out)
      assert.are.equal(d.ntasks, d.nresults)
      assert.is_true(d.emfile > 0, "no task failed with EMFILE: " .. out)
      assert.are.equal(d.emfile, d.oserror)
      assert.are.equal(d.ntasks, d.success + d.emfile, out)
      assert.is_true(d.success > 0)
      assert.is_true(d.after_ok, "a run after the EMFILE run failed: " .. out)
      assert.are.equal(0, #d.leaks, "leaks in the EMFILE run: " .. out)
    end)

    it("every task of a run gets its own spawn-failure result", function()
      local n = 0
      local r = lc.ProcRunAsyncio({ "/nonexistent/lc-prog" }, { { 1 }, { 2 }, { 3 } },
        { on_result = function() n = n + 1 end }):run_all()
      assert.are.equal(3, #r)
      assert.are.equal(3, n)
      for i, res in ipairs(r) do
        assert.are.equal(i, res.key)
        assert.are.equal("FileNotFoundError", res.exception)
      end
    end)
  end)

  describe("signals", function()
    it("killed by a signal: returncode -9, signal 9", function()
      local r = run1({ "/bin/sh", "-c", "kill -9 $$" })
      assert.is_false(r.success)
      assert.is_false(r.timeout)
      assert.are.equal(-9, r.returncode)
      assert.are.equal(9, r.signal)
      assert.are.equal("killed by signal 9 (SIGKILL)", r.error)
    end)

    it("a child killed by SIGPIPE is reported as signal 13", function()
      local r = run1({ "/bin/sh", "-c", "kill -PIPE $$" })
      assert.are.equal(-13, r.returncode)
      assert.are.equal(13, r.signal)
      assert.are.equal("killed by signal 13 (SIGPIPE)", r.error)
    end)
  end)

  describe("errors raised in callbacks", function()
    local function slow_tasks(m, n)
      local tasks = { { "quick", "exit 0" } }
      for i = 2, n do tasks[i] = { "slow" .. i, "sleep " .. m } end
      return tasks
    end

    it("on_result error stops the run, kills the children, re-raises it with the callback's traceback", function()
      local m = helpers.marker()
      local tasks = slow_tasks(m, 4)
      local t0 = helpers.mono()
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, tasks, {
        num_workers = 0,
        on_result = function(res)
          if res.key == "quick" then error("boom in on_result", 0) end
        end,
      })
      local ok, err = pcall(run.run_all, run)
      local elapsed = helpers.mono() - t0
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_false(ok)
      assert.are.equal("boom in on_result", err:match("^[^\n]*"))
      assert.truthy(err:find("\nstack traceback:\n.-engine_spec%.lua:%d+: in function"), err)
      assert.is_true(elapsed < 5, "took " .. elapsed)
      assert.are.same({}, left)
      -- no task is lost: the killed ones are recorded as Interrupted
      assert.are.equal(4, #run.result)
      assert.is_true(run.result[1].success)
      for i = 2, 4 do
        assert.are.equal("slow" .. i, run.result[i].key)
        assert.is_false(run.result[i].success)
        assert.are.equal("Interrupted", run.result[i].exception)
      end
    end)

    it("keeps a non-string error value as is", function()
      local m = helpers.marker()
      local val = { tag = "mine" }
      local run = lc.ProcRunMp({ "/bin/sh", "-c" }, slow_tasks(m, 3), {
        num_workers = 0,
        on_result = function() error(val) end,
      })
      local ok, err = pcall(run.run_all, run)
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_false(ok)
      assert.is_true(rawequal(val, err), "error value changed: " .. tostring(err))
      assert.are.same({}, left)
    end)

    it("on_start error stops the run and kills what already started", function()
      local m = helpers.marker()
      local n = 0
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, {
        { 1, "sleep " .. m }, { 2, "sleep " .. m }, { 3, "sleep " .. m }, { 4, "sleep " .. m },
      }, {
        num_workers = 0,
        on_start = function()
          n = n + 1
          if n == 3 then error("boom in on_start") end
        end,
      })
      local t0 = helpers.mono()
      local ok, err = pcall(run.run_all, run)
      local elapsed = helpers.mono() - t0
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_false(ok)
      assert.matches("boom in on_start", err, 1, true)
      assert.is_true(elapsed < 5, "took " .. elapsed)
      assert.are.same({}, left)
    end)

    it("on_progress error stops the run cleanly", function()
      local m = helpers.marker()
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, slow_tasks(m, 3), {
        num_workers = 0,
        on_progress = function() error("boom in on_progress", 0) end,
      })
      local ok, err = pcall(run.run_all, run)
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_false(ok)
      assert.are.equal("boom in on_progress", err:match("^[^\n]*"))
      assert.are.same({}, left)
    end)

    it("an error raised by the task iterator stops the run cleanly", function()
      local m = helpers.marker()
      local n = 0
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, function()
        n = n + 1
        if n == 3 then error("iterator boom", 0) end
        return { n, "sleep " .. m }
      end, { num_workers = 0 })
      local t0 = helpers.mono()
      local ok, err = pcall(run.run_all, run)
      local elapsed = helpers.mono() - t0
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.is_false(ok)
      assert.are.equal("iterator boom", err)
      assert.is_true(elapsed < 5, "took " .. elapsed)
      assert.are.same({}, left)
      for i = 1, 2 do
        assert.are.equal("Interrupted", run.result[i] and run.result[i].exception)
      end
    end)

    it("keeps the results of tasks that finished together with the one whose on_result raised", function()
      -- Tasks 1 and 2 exit at once; task 3's on_start (called before task 3
      -- is spawned) waits until both are zombies, so the engine sees both
      -- finished in the same turn. on_result raises for the first of them:
      -- the other one's result must not be dropped.
      local m = helpers.marker()
      local function all_children_zombies()
        return helpers.wait_until(function()
          local kids, zombies = helpers.children(), 0
          for _, pid in ipairs(kids) do
            local st = helpers.read_file("/proc/" .. pid .. "/stat") or ""
            if st:match("^%d+ %b() Z") then zombies = zombies + 1 end
          end
          return #kids >= 2 and zombies == #kids
        end, 5)
      end
      local waited
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" },
        { { 1, "exit 0" }, { 2, "exit 0" }, { 3, "sleep " .. m } }, {
          num_workers = 0,
          on_start = function(key) if key == 3 then waited = all_children_zombies() end end,
          on_result = function() error("stop", 0) end,
        })
      local ok, err = pcall(run.run_all, run)
      local left = helpers.wait_marker_gone(m)
      helpers.kill_marker(m)
      assert.are.same({ false, "stop" }, { ok, err:match("^[^\n]*") })
      assert.is_true(waited, "tasks 1 and 2 did not both exit")
      assert.are.same({}, left)
      assert.is_not_nil(run.result[1], "result of task 1 lost")
      assert.is_not_nil(run.result[2], "result of task 2 lost")
      assert.is_true(run.result[1].success and run.result[2].success)
      assert.are.equal("Interrupted", run.result[3] and run.result[3].exception)
    end)

    -- No task is ever lost: every task yields exactly one result, whatever
    -- happened to it (spawn failure, crash, signal, timeout, error,
    -- Ctrl-C). Tasks of a list that never started when a
    -- callback raised must still get a result.
    it("gives tasks that never started a result too (no task is ever lost)", function()
      local run = lc.ProcRunAsyncio({ "/usr/bin/sleep" }, { { 1, 0 }, { 2, 0.5 }, { 3, 0.5 } }, {
        num_workers = 1,
        on_result = function() error("stop", 0) end,
      })
      local ok, err = pcall(run.run_all, run)
      assert.are.same({ false, "stop" }, { ok, err:match("^[^\n]*") })
      assert.are.equal(3, #run.result)
      assert.is_true(run.result[1].success)
      for i = 2, 3 do
        assert.are.equal(i, run.result[i].key)
        assert.is_false(run.result[i].success)
        assert.are.equal("Interrupted", run.result[i].exception)
      end
    end)

    it("the engine is usable again after an interrupted run", function()
      local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, { { 1, "exit 0" }, { 2, "sleep 5" } }, {
        on_result = function() error("stop", 0) end,
      })
      assert.is_false((pcall(run.run_all, run)))
      local r = run1({ "/bin/echo", "again" })
      assert.are.equal("again\n", r.stdout)
    end)
  end)
end)
