-- Run control: however a run or its host ends, nothing it started is left
-- running, and signals do what README says. Hosts run
-- spec/fixtures/runctl_host.lua in the background (the executable, or
-- lua5.4 with the module); the spec waits for their tasks to exist (the
-- sleeps carry a marker in /proc), ends the host, and checks its exit
-- status, its output, and that no task process is left.
--
--   issue 8 item 5   a program run with lc.run_prog in a worker process
--                    dies with the task (timeout, Ctrl-C, runner SIGKILL)
--   issue 8 item 6   the second SIGINT/SIGTERM exits, even while the first
--                    is being acted on (a CPU-bound thread task)
--   issue 8 item 7   os.exit, a Lua error, SIGPIPE on our stdout
--   issue 8 item 9   a script that catches the interrupt still ends by it
--   issue 8 item 11  a worker process's task reads /dev/null, not frames
--   issue 8 item 12  worker processes of the executable collect garbage
--   issue 8 item 15  a task that removes its hooks cannot make the run
--                    unstoppable
--   issue 8 item 16  SIGHUP does not make a script's io.read fail
--   issue 8 item 17  pidfds refused (EPERM, or no waitid(P_PIDFD)): polling
--   issue 17 item 13 a process a task moved out of its group (timeout(1),
--                    set -m, setsid, a daemon) dies with the task: at its
--                    deadline, when the run halts, and when its leader
--                    exits; without cgroups (LUACONCURRENT_CGROUP=0) at
--                    the deadline and the halt
--   the C review     a runner's cgroup base: kept by a later runner while
--                    its runner lives in another pid namespace (its lock),
--                    made again when removed under it

local helpers = require "helpers"
local lc = require "luaconcurrent"

local q = helpers.q
local EXE = helpers.ROOT .. "/build/luaconcurrent"
local DENY = helpers.ROOT .. "/build/deny_pidfd"
local FIXTURE = helpers.FIXTURES .. "/runctl_host.lua"
local BOUND = 20     -- seconds: generous bounds on anything that should be quick

local function write_file(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- Start the fixture in the background. opts: handle (lc.handle_signals()),
-- pipe (stdout into `head -1`), stdin (a path; default /dev/null).
local function start(host, mode, opts)
  opts = opts or {}
  local h = { marker = helpers.marker(), dir = os.tmpname() }
  os.remove(h.dir)
  assert(os.execute("mkdir " .. q(h.dir)))
  write_file(h.dir .. "/marker", h.marker .. "\n")
  local prog = host == "exe" and q(EXE) or (helpers.lua_env() .. " lua5.4")
  local cmd = string.format("%s %s %s %s %s", prog, q(FIXTURE), mode, q(h.dir),
    opts.handle and "1" or "0")
  local status = q(h.dir .. "/status")
  local inner
  if opts.pipe then
    inner = string.format("bash -c %s", q(string.format(
      "%s 2>%s | head -1 >%s; echo ${PIPESTATUS[0]} >%s.tmp; mv %s.tmp %s",
      cmd, q(h.dir .. "/err"), q(h.dir .. "/out"), status, status, status)))
  else
    inner = string.format("%s <%s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s", cmd,
      q(opts.stdin or "/dev/null"), q(h.dir .. "/out"), status, status, status)
  end
  assert(os.execute("(" .. inner .. ") </dev/null >/dev/null 2>&1 &"))
  return h
end

local function host_pid(h)
  return tonumber(helpers.read_file(h.dir .. "/pid") or "")
end

local function nthreads(pid)
  local n = 0
  for name in require("lfs").dir("/proc/" .. pid .. "/task") do
    if name:match("^%d+$") then n = n + 1 end
  end
  return n
end

local function wait_started(h, nproc)
  return helpers.wait_until(function()
    return host_pid(h) ~= nil and helpers.read_file(h.dir .. "/started") ~= nil
      and #helpers.find_marker(h.marker) >= (nproc or 0)
  end, BOUND)
end

-- No SIGINT/SIGTERM/SIGHUP of the host still pending (delivered and being
-- handled, or handled): two pending at once would merge into one.
local function delivered(pid)
  return helpers.wait_until(function()
    local st = helpers.read_file("/proc/" .. pid .. "/status")
    if not st then return true end
    local mask = 1 << 0 | 1 << 1 | 1 << 14     -- SIGHUP, SIGINT, SIGTERM
    local shd = tonumber(st:match("ShdPnd:%s*(%x+)") or "0", 16)
    local own = tonumber(st:match("SigPnd:%s*(%x+)") or "0", 16)
    return shd & mask == 0 and own & mask == 0
  end, BOUND)
end

local function signal(h, sig)
  local pid = assert(host_pid(h), "no host process")
  assert(os.execute("kill -" .. sig .. " " .. pid))
  return pid
end

-- A second signal within 250 ms of the first is the first delivered twice
-- (signals.c): a second one that must count waits out that window. It
-- opened when the first was delivered, which a loaded machine may do well
-- after the send: callers know it delivered, so the wait starts now.
local function second(h, sig)
  local from = helpers.mono()
  helpers.wait_until(function() return helpers.mono() - from > 0.3 end, 2)
  return signal(h, sig)
end

-- Wait (bounded) for the host to exit; returns status, output, processes
-- with the marker left a moment after. A host that does not exit is killed
-- with what it started, and the spec fails.
local function finish(h)
  local exited = helpers.wait_until(function()
    return helpers.read_file(h.dir .. "/status") ~= nil
  end, BOUND)
  if not exited then
    local pid = host_pid(h)
    if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    helpers.kill_marker(h.marker)
    helpers.wait_until(function() return helpers.read_file(h.dir .. "/status") ~= nil end, BOUND)
  end
  local status = tonumber(helpers.read_file(h.dir .. "/status") or "")
  local out = (helpers.read_file(h.dir .. "/out") or "") .. (helpers.read_file(h.dir .. "/err") or "")
  local left = helpers.wait_marker_gone(h.marker, 2)
  helpers.kill_marker(h.marker)
  os.execute("rm -rf " .. q(h.dir))
  assert(exited, "the host did not exit:\n" .. out)
  return status, out, left
end

local HOSTS = {
  { "exe", false, "the executable" },
  { "lua", true, "lua5.4 after handle_signals()" },
}

describe("run control", function()
  describe("a second SIGINT/SIGTERM", function()
    for _, host in ipairs(HOSTS) do
      for _, mode in ipairs({ "spin_thread", "sethook_thread" }) do
        local what = mode == "spin_thread" and "a CPU-bound thread task with no timeout"
          or "a thread task that removed its hook"
        it("exits at once while the first one is being acted on (" .. what .. ", " .. host[3] .. ")", function()
          local h = start(host[1], mode, { handle = host[2] })
          assert.is_true(wait_started(h), "tasks did not start")
          local pid = host_pid(h)
          assert.are.equal(3, nthreads(pid))       -- main + two thread workers
          signal(h, "TERM")
          -- The run is being stopped once the idle worker has been joined:
          -- the pool now waits for the spinning one, which never returns.
          assert.is_true(helpers.wait_until(function()
            return not helpers.read_file("/proc/" .. pid .. "/status") or nthreads(pid) == 2
          end, BOUND), "the first SIGTERM did not stop the run")
          second(h, "TERM")
          local status, out = finish(h)
          assert.are.equal(143, status, out)
          assert.is_nil(out:find("ok=", 1, true))   -- it never got to report
        end)
      end

      it("exits while a coroutine task that removed its hook spins (" .. host[3] .. ")", function()
        local h = start(host[1], "sethook_coro", { handle = host[2] })
        assert.is_true(wait_started(h, 1), "tasks did not start")
        local pid = signal(h, "TERM")
        assert.is_true(delivered(pid), "the first SIGTERM was not delivered")
        second(h, "TERM")
        local status, out, left = finish(h)
        assert.are.equal(143, status, out)
        assert.are.same({}, left)
      end)
    end
  end)

  describe("a script that catches the interrupt", function()
    for _, host in ipairs(HOSTS) do
      it("still ends by SIGTERM, and the error names it (" .. host[3] .. ")", function()
        local h = start(host[1], "swallow", { handle = host[2] })
        assert.is_true(wait_started(h, 2), "tasks did not start")
        signal(h, "TERM")
        local status, out, left = finish(h)
        assert.are.equal(143, status, out)
        assert.matches("ok=false\nerr=luaconcurrent: interrupted by SIGTERM\n", out, 1, true)
        assert.matches("1 false Interrupted", out, 1, true)
        assert.are.same({}, left)
      end)
    end
  end)

  describe("the host ending", function()
    for _, host in ipairs(HOSTS) do
      it("by SIGPIPE on its stdout (| head -1) kills every task first (" .. host[3] .. ")", function()
        local h = start(host[1], "sigpipe", { handle = host[2], pipe = true })
        local status, out, left = finish(h)
        assert.are.equal(128 + 13, status, out)
        assert.are.same({}, left)
      end)
    end

    local plain = { { "exe", false, "the executable" }, { "lua", false, "lua5.4" },
                    { "lua", true, "lua5.4 after handle_signals()" } }
    for _, host in ipairs(plain) do
      it("by os.exit in on_result kills the other tasks (" .. host[3] .. ")", function()
        local h = start(host[1], "exit_on_result", { handle = host[2] })
        local status, out, left = finish(h)
        assert.are.equal(3, status, out)
        assert.are.same({}, left)
      end)

      it("by os.exit in a coroutine task kills the other tasks (" .. host[3] .. ")", function()
        local h = start(host[1], "exit_in_coro", { handle = host[2] })
        local status, out, left = finish(h)
        assert.are.equal(4, status, out)
        assert.are.same({}, left)
      end)

      it("by a Lua error kills the other tasks (" .. host[3] .. ")", function()
        local h = start(host[1], "error_in_coro", { handle = host[2] })
        local status, out, left = finish(h)
        assert.are.equal(1, status, out)
        assert.matches("on_result raised", out, 1, true)
        assert.are.same({}, left)
      end)
    end
  end)

  describe("a program a worker process started (isolation = \"process\")", function()
    for _, host in ipairs(HOSTS) do
      it("dies when the run is interrupted (" .. host[3] .. ")", function()
        local h = start(host[1], "isolated", { handle = host[2] })
        assert.is_true(helpers.wait_until(function()
          return host_pid(h) and #helpers.find_marker(h.marker) >= 2
        end, BOUND), "tasks did not start")
        signal(h, "INT")
        local status, out, left = finish(h)
        assert.are.equal(130, status, out)
        assert.matches("1 false Interrupted", out, 1, true)
        assert.are.same({}, left)
      end)

      it("dies when the runner is killed with SIGKILL (" .. host[3] .. ")", function()
        local h = start(host[1], "isolated", { handle = host[2] })
        assert.is_true(helpers.wait_until(function()
          return host_pid(h) and #helpers.find_marker(h.marker) >= 2
        end, BOUND), "tasks did not start")
        signal(h, "KILL")
        local status, _, left = finish(h)
        assert.are.equal(128 + 9, status)
        assert.are.same({}, left)
      end)
    end

    it("dies at the task's timeout", function()
      local marker = helpers.marker()
      local task = load([[return function(_, args)
        return require("luaconcurrent").run_prog({ "sleep", args[1] })
      end]])()   -- (its _ENV the real globals: issue 8 item 20)
      local run = lc.ProcRunMp({ task }, { { 1, marker } }, { isolation = "process", timeout = 0.5 })
      local results = run:run_all()
      assert.is_true(results[1].timeout)
      assert.are.same({}, helpers.wait_marker_gone(marker, 2))
      helpers.kill_marker(marker)
    end)
  end)

  describe("a worker process's task", function()
    -- (loaded, so that its _ENV is the real globals, not busted's
    -- environment: issue 8 item 20)
    local stdin_task = load([[
      return function()
        local line = io.read("l")
        local ok, how, code = os.execute("cat >/dev/null")
        return true, { line == nil, ok, how, code, collectgarbage("isrunning") }
      end]])()

    it("reads EOF from stdin instead of the frame pipe (module host)", function()
      local run = lc.ProcRunMp({ stdin_task }, { { 1 }, { 2 } },
        { isolation = "process", timeout = BOUND, num_workers = 1 })
      local results = run:run_all()
      for i = 1, 2 do
        assert.is_true(results[i].success, results[i].error)
        assert.are.same({ true, true, "exit", 0, true }, results[i].answer)
      end
    end)

    it("reads EOF from stdin and collects garbage (the executable)", function()
      local code = [[
        local lc = require "luaconcurrent"
        local run = lc.ProcRunMp({ function(key)
          local line = io.read("l")
          local ok = os.execute("cat >/dev/null")
          -- about 400 MiB of garbage: bounded only if the collector runs
          for i = 1, 400 do local s = string.rep("x", 1 << 20) .. i end
          return true, { line == nil, ok, collectgarbage("isrunning"),
                         collectgarbage("count") < 64 * 1024 }
        end }, { { 1 } }, { isolation = "process", timeout = ]] .. BOUND .. [[ })
        local r = run:run_all()[1]
        print(r.success, r.error, table.unpack(r.answer or {}))
      ]]
      local out, err = helpers.sh(q(EXE) .. " -e " .. q(code))
      assert.are.equal("true\tnil\ttrue\ttrue\ttrue\ttrue\n", out, err)
    end)
  end)

  describe("SIGHUP", function()
    for _, host in ipairs(HOSTS) do
      it("does not make a script's io.read fail (" .. host[3] .. ")", function()
        local fifo = os.tmpname()
        os.remove(fifo)
        assert(os.execute("mkfifo " .. q(fifo)))
        local h = start(host[1], "read_hup", { handle = host[2], stdin = fifo })
        -- Read-write: opening it does not wait for the host, and a write
        -- cannot raise SIGPIPE here if the host is already gone.
        local w = assert(io.open(fifo, "r+"))
        assert.is_true(wait_started(h), "the host did not start")
        local pid = host_pid(h)
        -- blocked in its read (nothing else in it can sleep)
        assert.is_true(helpers.wait_until(function()
          local stat = helpers.read_file("/proc/" .. pid .. "/stat") or ""
          return stat:match("^%d+ %b() (%S)") == "S"
        end, BOUND), "the host is not waiting for input")
        signal(h, "HUP")
        assert.is_true(delivered(pid), "SIGHUP was not delivered")
        w:write("a line\n")
        w:close()
        local status, out = finish(h)
        os.remove(fifo)
        assert.are.equal("line=a line err=nil\n", out)
        assert.are.equal(0, status)
      end)
    end
  end)

  -- issue 17 item 13. Each task leaves a process outside its group; the
  -- marker finds it in /proc. `timeout` makes its own group, `set -m` puts
  -- each job in one, setsid a session; the daemon's parent exits at once.
  describe("a process a task moved out of its group", function()
    -- (cgroup_only: the tree walk cannot reach it, see src/reap.h)
    local ESCAPES = {
      { "timeout(1)", "timeout 60 sleep %s; true" },   -- (no exec: sh stays the leader)
      { "set -m", "set -m; sleep %s & wait" },
      { "setsid", "setsid sleep %s & wait" },
      { "a setsid double fork", "(setsid sleep %s &); sleep 60", cgroup_only = true },
    }

    -- Run `script` (a Lua chunk printing one line per result) under the
    -- executable with `env` in front; returns its output.
    local function exe(env, script)
      local out, err = helpers.sh(env .. " " .. q(EXE) .. " -e " .. q(script))
      return out, err
    end

    local function timed_run(cmd, env)
      local code = string.format([[
        local lc = require "luaconcurrent"
        local run = lc.ProcRunAsyncio({ "/bin/bash", "-c" }, { { 1, %q } }, { timeout = 0.5 })
        local r = run:run_all()[1]
        print(r.timeout, r.error)
      ]], cmd)
      return exe(env, code)
    end

    local function halted_run(cmd, env)
      local code = string.format([[
        local lc = require "luaconcurrent"
        local run = lc.ProcRunAsyncio({ "/bin/bash", "-c" },
          { { 1, %q }, { 2, "sleep 0.3; exit 1" } }, { halt = "now,fail=1", timeout = 60 })
        local r = run:run_all()
        print(run.halted, r[1].success)
      ]], cmd)
      return exe(env, code)
    end

    for _, mode in ipairs({ { "", "in a cgroup" }, { "LUACONCURRENT_CGROUP=0", "without cgroups" } }) do
      for _, esc in ipairs(ESCAPES) do
        if esc.cgroup_only and mode[1] ~= "" then goto next end
        it("dies at the task's deadline (" .. esc[1] .. ", " .. mode[2] .. ")", function()
          local marker = helpers.marker()
          local out, err = timed_run(string.format(esc[2], marker), mode[1])
          local left = helpers.wait_marker_gone(marker, 2)
          helpers.kill_marker(marker)
          assert.are.same({}, left)
          assert.matches("^true\ttimed out after 0.5 s\n", out, nil, false)
          assert.are.equal("", err)
        end)

        it("dies when the run halts (" .. esc[1] .. ", " .. mode[2] .. ")", function()
          local marker = helpers.marker()
          local out, err = halted_run(string.format(esc[2], marker), mode[1])
          local left = helpers.wait_marker_gone(marker, 2)
          helpers.kill_marker(marker)
          assert.are.same({}, left)
          assert.matches("^now,fail=1\tfalse\n", out, nil, false, err)
        end)
        ::next::
      end
    end

    -- The leader ends normally and leaves a daemon: it waits (a loop on
    -- /proc, not a sleep) until the daemon has left its group, so that
    -- the group kill at the leader's exit cannot catch it by luck.
    for _, form in ipairs({
      { "setsid, streams closed", "setsid sleep %s </dev/null >/dev/null 2>&1 &"
        .. ' until [ "$(cut -d" " -f6 /proc/$!/stat)" = "$!" ]; do :; done; exit 0' },
      { "timeout(1) in the background", "timeout 60 sleep %s </dev/null >/dev/null 2>&1 &"
        .. ' until [ "$(cut -d" " -f5 /proc/$!/stat)" = "$!" ]; do :; done; exit 0' },
    }) do
      it("dies when its leader exits normally (" .. form[1] .. ", in a cgroup)", function()
        local marker = helpers.marker()
        local run = lc.ProcRunAsyncio({ "/bin/bash", "-c" },
          { { 1, string.format(form[2], marker) } }, { timeout = BOUND })
        local r = run:run_all()[1]
        local left = helpers.wait_marker_gone(marker, 2)
        helpers.kill_marker(marker)
        assert.is_true(r.success, r.error)
        assert.are.same({}, left)
      end)
    end
  end)

  -- A task's cgroup is reused by a later task once empty; one that was
  -- killed (cgroup.kill) is made anew first: Linux 6.x kills any child
  -- clone3 puts into a cgroup that was ever killed (src/reap.c).
  describe("the task after one whose leftovers were killed", function()
    for _, first in ipairs({
      { "a timeout", "sleep 60", 0.5 },
      { "a daemon left behind", "setsid sleep %s </dev/null >/dev/null 2>&1 &"
        .. ' until [ "$(cut -d" " -f6 /proc/$!/stat)" = "$!" ]; do :; done; exit 0', BOUND },
    }) do
      it("runs normally in the same slot (" .. first[1] .. ")", function()
        local marker = helpers.marker()
        local run = lc.ProcRunAsyncio({ "/bin/bash", "-c" }, {
          { 1, string.format(first[2], marker) }, { 2, "echo two" }, { 3, "echo three" },
        }, { timeout = first[3], num_workers = 1 })
        local r = run:run_all()
        local left = helpers.wait_marker_gone(marker, 2)
        helpers.kill_marker(marker)
        assert.are.same({}, left)
        assert.is_true(r[2].success, r[2].error)
        assert.are.equal("two\n", r[2].stdout)
        assert.is_true(r[3].success, r[3].error)
      end)
    end
  end)

  describe("without usable pidfds", function()
    for _, how in ipairs({ "open", "waitid" }) do
      it("children are watched by polling (" .. (how == "open"
          and "pidfd_open refused with EPERM" or "no waitid(P_PIDFD)") .. ")", function()
        local code = [[
          local lc = require "luaconcurrent"
          local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" },
            { { 1, "exit 3" }, { 2, "echo hi" }, { 3, "sleep 5" } }, { timeout = 0.5 })
          local r = run:run_all()
          print(r[1].returncode, r[2].returncode, r[2].stdout, r[3].timeout)
        ]]
        local out, err = helpers.sh(q(DENY) .. " " .. how .. " " .. q(EXE) .. " -e " .. q(code))
        assert.are.equal("3\t0\thi\n\ttrue\n", out, err)
      end)
    end
  end)

  -- A runner's cgroup base (<its cgroup>/luaconcurrent.<pid>) is removed
  -- as stale by a later runner only if its lock is free (src/reap.c): a
  -- runner in another pid namespace, whose pid the later one cannot see,
  -- keeps it. One removed all the same is made again at the next task.
  -- Shown by the fixture's tasks, which each leave a daemon and exit: it
  -- dies at once only if the task ran in a cgroup.
  describe("a runner's cgroup base", function()
    local FIX = helpers.FIXTURES .. "/stale_base_host.lua"

    -- The cgroup v2 directory of this process (runners start in it).
    local function own_cgroup()
      local rel = (helpers.read_file("/proc/self/cgroup") or ""):match("0::(/[^\n]*)")
      local mnt
      for line in (helpers.read_file("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
        if line:find(" - cgroup2 ", 1, true) then
          mnt = line:match("^%S+ %S+ %S+ %S+ (%S+)")
          break
        end
      end
      if not rel or not mnt then return nil end
      return mnt .. (rel == "/" and "" or rel)
    end

    local function exists(path)
      return os.execute("test -d " .. q(path)) == true
    end

    -- Starts the fixture (prefix: a shell command line to run it under);
    -- returns its directory, markers and the path of a file of its.
    local function start_host(prefix)
      local h = { m1 = helpers.marker(), m2 = helpers.marker(), dir = os.tmpname() }
      os.remove(h.dir)
      assert(os.execute("mkdir " .. q(h.dir)))
      write_file(h.dir .. "/m1", h.m1 .. "\n")
      write_file(h.dir .. "/m2", h.m2 .. "\n")
      local cmd = string.format("%s %s %s", q(EXE), q(FIX), q(h.dir))
      assert(os.execute(string.format("(%s) </dev/null >%s 2>&1 &",
        prefix and prefix(cmd) or cmd, q(h.dir .. "/out"))))
      return h
    end

    local function file(h, name)
      local s
      helpers.wait_until(function()
        s = helpers.read_file(h.dir .. "/" .. name)
        return s ~= nil
      end, BOUND)
      return s
    end

    local function release(h)
      local f = assert(io.open(h.dir .. "/go", "w"))
      f:close()
      local two = file(h, "two")
      local left = helpers.wait_marker_gone(h.m2, 2)
      helpers.kill_marker(h.m1)
      helpers.kill_marker(h.m2)
      return two, left
    end

    it("a live runner in another pid namespace keeps it when a later runner starts", function()
      local parent = own_cgroup()
      -- Its pid in the new namespace: one no process has here (over pid_max).
      local inner = tonumber(helpers.read_file("/proc/sys/kernel/pid_max") or "") or 4194304
      inner = inner + 1000
      if not parent or not os.execute("command -v strace >/dev/null")
          or not os.execute("unshare --pid --fork --mount-proc sh -c " .. q(
          "echo " .. (inner - 1) .. " >/proc/sys/kernel/ns_last_pid") .. " 2>/dev/null") then
        pending("needs cgroup v2, strace, and unshare(1) with a pid namespace")
        return
      end
      local h = start_host(function(cmd)
        return "unshare --pid --fork --mount-proc sh -c " .. q(string.format(
          "echo %d >/proc/sys/kernel/ns_last_pid && %s; true", inner - 1, cmd))
      end)
      local one = file(h, "one")
      local base = parent .. "/luaconcurrent." .. inner
      if not exists(base) then
        release(h)
        pending("the runner got no cgroup base as luaconcurrent." .. inner)
        return
      end
      assert.are.equal("true nil", one)
      assert.are.same({}, helpers.wait_marker_gone(h.m1, 2))
      -- A later runner here: it cannot see pid `inner` (none has it here).
      -- Its rmdir calls are traced: runners of other builds on the machine
      -- may remove the base too (and the live runner makes it again).
      local log = os.tmpname()
      local out, err = helpers.sh("strace -f -qq -e trace=rmdir -o " .. q(log) .. " "
        .. q(EXE) .. " -e " .. q([[
        local lc = require "luaconcurrent"
        print(lc.ProcRunAsyncio({ "true" }, { { 1 } }):run_all()[1].success)]]))
      local trace = helpers.read_file(log) or ""
      os.remove(log)
      local two, left = release(h)
      assert.are.equal("true\n", out, err)
      assert.is_falsy(trace:find('"' .. base .. '"', 1, true),
        "the later runner removed the live runner's base")
      assert.are.equal("true nil", two)
      assert.are.same({}, left)
    end)

    it("one removed under a live runner is made again at its next task", function()
      local parent = own_cgroup()
      local h = start_host()
      local one = file(h, "one")
      local base = parent and (parent .. "/luaconcurrent." .. file(h, "pid"))
      if not base or not exists(base) then
        release(h)
        pending("needs a writable cgroup v2 tree")
        return
      end
      assert.are.equal("true nil", one)
      assert.are.same({}, helpers.wait_marker_gone(h.m1, 2))
      -- As a runner that judged it stale would: its empty cgroups, then it.
      assert.is_true(helpers.wait_until(function()
        os.execute("rmdir " .. q(base) .. "/t* " .. q(base) .. " 2>/dev/null")
        return not exists(base)
      end, BOUND), "could not remove " .. base)
      local two, left = release(h)
      assert.are.equal("true nil", two)
      assert.are.same({}, left, "task 2's daemon outlived it: it ran without a cgroup")
      -- (and the runner removes it at its exit)
      assert.is_true(helpers.wait_until(function() return not exists(base) end, BOUND))
    end)
  end)
end)
