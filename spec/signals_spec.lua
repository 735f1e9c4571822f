-- Signals, end to end on both hosts: the executable, and lua5.4 with the
-- module (after lc.handle_signals()). A child process runs
-- spec/fixtures/sig_host.lua; the spec waits for its tasks to exist,
-- signals it, and checks the exit status, the partial results it printed
-- and that no task process is left.

local helpers = require "helpers"

local EXE = helpers.ROOT .. "/build/luaconcurrent"
local FIXTURE = helpers.FIXTURES .. "/sig_host.lua"

-- Start the fixture in the background; returns a handle.
local function start(host, mode, handle)
  local h = {
    marker = helpers.marker(),
    dir = os.tmpname(),
  }
  os.remove(h.dir)
  assert(os.execute("mkdir " .. helpers.q(h.dir)))
  h.startfile = h.dir .. "/started"
  h.out = h.dir .. "/out"
  h.status = h.dir .. "/status"
  local prog = host == "exe" and helpers.q(EXE) or "lua5.4"
  local cmd = string.format(
    "(%s %s %s %s %s %s %s >%s 2>&1; echo $? >%s) </dev/null >/dev/null 2>&1 & echo $!",
    host == "exe" and "" or helpers.lua_env(), prog, helpers.q(FIXTURE),
    helpers.q(h.marker), helpers.q(h.startfile), handle and "1" or "0",
    mode, helpers.q(h.out), helpers.q(h.status))
  -- the subshell's pid; the interpreter is its only child
  local out = helpers.sh(cmd)
  h.shell = tonumber(out:match("%d+"))
  return h
end

local function wait_started(h, nproc)
  return helpers.wait_until(function()
    return helpers.read_file(h.startfile) ~= nil
      and #helpers.find_marker(h.marker) >= (nproc or 0)
  end, 10)
end

-- n of the run's tasks have exec'd their sleep: what they echoed before
-- is in the pipe (sh's echo is done before its exec).
local function sleeping(h, n)
  local count = 0
  for _, pid in ipairs(helpers.find_marker(h.marker)) do
    local cmd = helpers.read_file("/proc/" .. pid .. "/cmdline") or ""
    if cmd:match("^sleep%z") then count = count + 1 end
  end
  return count >= n
end

local function host_pid(h)
  local kids = helpers.read_file("/proc/" .. h.shell .. "/task/" .. h.shell .. "/children") or ""
  return tonumber(kids:match("%d+"))
end

local function finish(h)
  -- the shell creates the file before it writes the number: wait for both
  local exited = helpers.wait_until(function()
    return (helpers.read_file(h.status) or ""):match("%d+\n") ~= nil
  end, 10)
  if not exited then
    -- never leave a stuck host (or its tasks) behind a failed spec
    local pid = host_pid(h)
    if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    helpers.kill_marker(h.marker)
    os.execute("rm -rf " .. helpers.q(h.dir))
  end
  assert(exited, "the host did not exit")
  local status = tonumber(helpers.read_file(h.status))
  local out = helpers.read_file(h.out) or ""
  local left = helpers.wait_marker_gone(h.marker, 2)
  helpers.kill_marker(h.marker)
  os.execute("rm -rf " .. helpers.q(h.dir))
  return status, out, left
end

local function signal(h, sig)
  local pid = host_pid(h)
  assert(pid, "no host process")
  assert(os.execute("kill -" .. sig .. " " .. pid))
end

describe("signals", function()
  -- Start fixture mode on host, wait until two tasks run, send sig: the
  -- host ends by it (code), leaves nothing, and says ok=false. Its output.
  local function stopped_by(host, mode, sig, code)
    local h = start(host, mode, true)
    assert.is_true(wait_started(h, 2), "tasks did not start")
    if mode == "kept" then
      assert.is_true(helpers.wait_until(function() return sleeping(h, 2) end, 10),
        "tasks 2 and 3 did not reach their sleep")
    end
    signal(h, sig)
    local status, out, left = finish(h)
    assert.are.equal(code, status, out)
    assert.are.same({}, left)
    assert.matches("ok=false", out)
    return out
  end

  for _, host in ipairs({ "exe", "lua" }) do
    describe(host == "exe" and "the executable" or "a lua5.4 host after handle_signals()", function()
      for sig, code in pairs({ INT = 130, TERM = 143 }) do
        it("SIG" .. sig .. " kills and reaps every task, keeps partial results, exits " .. code, function()
          -- both long tasks run: their sh and sleep carry the marker
          local out = stopped_by(host, "long", sig, code)
          assert.matches("1 false Interrupted", out)
          assert.matches("2 false Interrupted", out)
          assert.matches("3 false Interrupted", out)  -- never started, still a result
        end)
      end

      it("SIGHUP lets running tasks finish and starts no new one", function()
        local h = start(host, "hup", true)
        assert.is_true(wait_started(h), "tasks did not start")
        signal(h, "HUP")
        local status, out = finish(h)
        assert.matches("1 true none", out)
        assert.matches("2 true none", out)
        assert.matches("3 false Interrupted", out)
        -- a drain is not an interruption: run_all returns, the script ends
        -- normally and so does the host
        assert.matches("ok=true", out)
        assert.are.equal(0, status, out)
      end)

      for sig, code in pairs({ INT = 130, TERM = 143 }) do
        it("SIG" .. sig .. " keeps a finished task's result and a killed task's output and pid", function()
          -- task 1's result is in and tasks 2 and 3 sleep (after their echo)
          local out = stopped_by(host, "kept", sig, code)
          assert.matches("1 true none", out)
          assert.matches('detail 1 pid=%d+ stdout="one\\\n"', out)
          for i = 2, 3 do
            assert.matches(i .. " false Interrupted", out)
            -- the pid the task printed is the pid its result names
            local pid, printed = out:match("detail " .. i .. ' pid=(%d+) stdout="pid=(%d+)\\\n"')
            assert.is_not_nil(pid, out)
            assert.are.equal(pid, printed)
          end
        end)
      end
    end)
  end

  it("a second SIGINT forces the exit and still leaves no task running", function()
    -- The host is stuck in Lua code (no hook in a module host), so the
    -- first SIGINT cannot be acted on; the second kills every task group
    -- and exits 130 at once.
    local h = start("lua", "stuck", true)
    assert.is_true(wait_started(h, 1), "tasks did not start")
    signal(h, "INT")
    -- Two SIGINTs pending at once merge into one: wait until the first has
    -- been delivered (no SIGINT pending in /proc/<pid>/status) first.
    local pid = host_pid(h)
    assert.is_true(helpers.wait_until(function()
      local st = helpers.read_file("/proc/" .. pid .. "/status") or ""
      local shd = tonumber(st:match("ShdPnd:%s*(%x+)") or "0", 16)
      local own = tonumber(st:match("SigPnd:%s*(%x+)") or "0", 16)
      return shd & 2 == 0 and own & 2 == 0
    end, 5), "the first SIGINT was not delivered")
    -- One within 250 ms of the first is that one delivered twice: the
    -- second must come after the window, which opened at the delivery (a
    -- loaded machine may deliver well after the send).
    local seen = helpers.mono()
    helpers.wait_until(function() return helpers.mono() - seen > 0.3 end, 2)
    signal(h, "INT")
    local status, out, left = finish(h)
    assert.are.equal(130, status)
    assert.are.same({}, left)
    assert.is_nil(out:find("ok=", 1, true))   -- it never got to report
  end)

  it("timeout(1)'s doubled SIGTERM (child, then its group) is one stop: 20 runs keep every result", function()
    -- coreutils timeout forwards a signal it gets to its child and then to
    -- its process group, the child included: the runner gets two TERMs
    -- microseconds apart, the same path as when its own time runs out.
    if helpers.sh("command -v timeout") == "" then
      pending("timeout(1) is not installed")
      return
    end
    local fixture = helpers.FIXTURES .. "/timeout_tasks.lua"
    local lost = {}
    for run = 1, 20 do
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. helpers.q(dir)))
      local marker = helpers.marker()
      local shell = tonumber(helpers.sh(string.format(
        "(LC_SPEC_DIR=%s LC_SPEC_SLEEP=%s timeout -s TERM 60 %s %s >%s/out 2>%s/err; echo $? >%s/status)"
        .. " </dev/null >/dev/null 2>&1 & echo $!",
        helpers.q(dir), marker, helpers.q(EXE), helpers.q(fixture), helpers.q(dir), helpers.q(dir),
        helpers.q(dir))):match("%d+"))
      local started = helpers.wait_until(function()
        return helpers.read_file(dir .. "/started.2") and helpers.read_file(dir .. "/started.3")
          and #helpers.find_marker(marker) >= 2
      end, 20)
      local kids = helpers.read_file("/proc/" .. shell .. "/task/" .. shell .. "/children") or ""
      local tpid = tonumber(kids:match("%d+"))
      if started and tpid then os.execute("kill -TERM " .. tpid) end
      local exited = helpers.wait_until(function()
        return (helpers.read_file(dir .. "/status") or ""):match("%d+\n") ~= nil
      end, 20)
      local out = helpers.read_file(dir .. "/out") or ""
      local left = helpers.wait_marker_gone(marker, 2)
      helpers.kill_marker(marker)
      if tpid and not exited then os.execute("kill -KILL " .. tpid .. " 2>/dev/null") end
      os.execute("rm -rf " .. helpers.q(dir))
      assert.is_truthy(started, "run " .. run .. ": tasks did not start")
      assert.is_truthy(exited, "run " .. run .. ": did not exit")
      assert.are.same({}, left, "run " .. run .. ": tasks left running")
      local _, nresults = out:gsub("\nkey%s+: ", "")
      local interrupted = select(2, out:gsub("exception%s+: Interrupted", ""))
      if nresults ~= 3 or interrupted ~= 2 or not out:find("success           : true", 1, true) then
        lost[#lost + 1] = string.format("run %d: %d results, %d interrupted", run, nresults, interrupted)
      end
    end
    assert.are.same({}, lost)
  end)

  it("the module installs no signal handler until asked", function()
    local code = [[
      local function caught()
        local s = io.open("/proc/self/status"):read("a")
        return s:match("SigCgt:%s*(%x+)")
      end
      local before = caught()
      local lc = require "luaconcurrent"
      lc.ProcRunAsyncio({"/bin/true"}, {{1}}):run_all()
      lc.run_prog({"/bin/true"})
      local after = caught()
      lc.handle_signals()
      print(before == after, caught() ~= after)
    ]]
    local out, err = helpers.run_lua(code)
    assert.are.equal("true\ttrue\n", out, err)
  end)

  -- The repeat window (signals.c) and the stop path assume the handlers
  -- run on a thread that waits for them: thread workers start with every
  -- signal blocked (pool.c) and keep it so, whatever their tasks do.
  it("thread workers block SIGINT, SIGTERM, SIGHUP and SIGPIPE", function()
    local code = [[
      local core = require "luaconcurrent.core"
      local loop = core.new_loop()
      local fn = core.marshal_string(function() return true end)
      loop:pool_start(fn, 2, 0, package.path, package.cpath)
      local main = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
      local want = 1 << 0 | 1 << 1 | 1 << 12 | 1 << 14   -- HUP INT PIPE TERM, less 1
      local seen = {}
      -- (pool_start returns with its threads made)
      local p = io.popen("ls /proc/" .. main .. "/task")
      for tid in p:read("a"):gmatch("%d+") do
        if tid ~= main then
          local st = io.open("/proc/" .. main .. "/task/" .. tid .. "/status"):read("a")
          local blk = tonumber(st:match("SigBlk:%s*(%x+)"), 16)
          seen[#seen + 1] = blk & want == want and "blocked" or "open"
        end
      end
      p:close()
      loop:close()
      print(table.concat(seen, " "))
    ]]
    local out, err = helpers.run_lua(code)
    assert.are.equal("blocked blocked\n", out, err)
  end)
end)
