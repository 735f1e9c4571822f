-- Remote execution (exec/remote.lua) against real OpenSSH servers on
-- loopback: four of them, one listening on each of 127.0.0.2..127.0.0.5
-- (spec/fixtures/sshd_start.sh: separate sshd processes, so one "host" can
-- be stopped alone; their own host key, a client key authorized for root,
-- UsePAM no), killed by pid at the end. Skipped, saying why, when sshd
-- cannot start (not root, openssh-server not installed: `.ci/run` installs
-- it). Most tests run twice: with the plain-Lua worker (the host's
-- luaconcurrent = false) and in engine mode (luaconcurrent = this build's
-- executable, reached over the loopback sshd). After each test nothing
-- may be left on any host.

local lc = require "luaconcurrent"
local helpers = require "helpers"
local system = require "system"
local remote_executor = require "luaconcurrent.remote.executor"

local dir = os.tmpname()
os.remove(dir)
local port = 22000 + helpers.self_pid() % 2000
local ADDRS = { "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5" }
local A, B = ADDRS[1], ADDRS[2]       -- the hosts of tests that need one or two
local SSHD = {}                       -- [address] = the pid of its sshd
local out, err, code = helpers.sh("LC_SSHD_OWNER=" .. helpers.self_pid() .. " "
  .. helpers.q(helpers.FIXTURES .. "/sshd_start.sh") .. " " .. helpers.q(dir) .. " " .. port .. " '' '' "
  .. table.concat(ADDRS, " "))
if code == 0 then
  local i = 0
  for pid in out:gmatch("%d+") do i = i + 1; SSHD[ADDRS[i]] = tonumber(pid) end
end
local why_skipped = not SSHD[ADDRS[#ADDRS]] and ("sshd could not start: " .. err:gsub("%s+$", "")) or nil

local SSH_OPTS = { "-i", dir .. "/id", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
  "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR" }

local EXE = helpers.ROOT .. "/build/luaconcurrent"
local MODE = "lua"     -- the worker host() asks for: "lua" or "engine"

local function host(addr, slots, extra)
  local h = { host = addr or A, user = "root", port = port, slots = slots, ssh_options = SSH_OPTS,
    luaconcurrent = MODE == "engine" and EXE or false }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local function name_of(addr) return "root@" .. addr .. ":" .. port end

local function ppid_of(pid)
  local stat = helpers.read_file("/proc/" .. pid .. "/stat") or ""
  return tonumber(stat:match("^%d+ %b() %S+ (%d+)"))
end

-- The remote worker of a session to sshd (not the ":" one): its pid and
-- its parent's (the sshd session process).
local function remote_worker(mode)
  mode = mode or MODE
  for _, pid in ipairs(helpers.find_marker(mode == "engine" and "--remote-worker" or "local n=tonumber")) do
    local ppid = ppid_of(pid)
    local pcmd = ppid and helpers.read_file("/proc/" .. ppid .. "/cmdline") or ""
    if pcmd:match("^sshd") then return pid, ppid end
  end
end

-- The session processes of one server: its listener's children (the
-- privileged monitors) and theirs that are sshd too.
local function sessions(addr)
  local kids, monitors = {}, {}
  local all = helpers.find_marker("sshd")
  for _, pid in ipairs(all) do
    if SSHD[addr] and ppid_of(pid) == SSHD[addr] then kids[#kids + 1] = pid; monitors[pid] = true end
  end
  for _, pid in ipairs(all) do
    if monitors[ppid_of(pid)] and (helpers.read_file("/proc/" .. pid .. "/cmdline") or ""):match("^sshd") then
      kids[#kids + 1] = pid
    end
  end
  return kids
end

-- Every process started through one of our servers (its environment
-- names the server's port: tasks keep it, even once their session is
-- gone and they are reparented), or by a server ("sessions").
local function on_hosts(addrs)
  local found = {}
  local tail = " " .. port .. "\0"
  for _, pid in ipairs(helpers.find_marker("")) do
    local env = helpers.read_file("/proc/" .. pid .. "/environ") or ""
    local conn = env:match("SSH_CONNECTION=[^%z]*%z")
    if conn and conn:sub(-#tail) == tail then found[#found + 1] = pid end
  end
  for _, addr in ipairs(addrs or ADDRS) do
    for _, pid in ipairs(sessions(addr)) do found[#found + 1] = pid end
  end
  return found
end

-- (Other work on the machine may run workers of its own.)
local function descends_from_us(pid)
  local me = helpers.self_pid()
  while pid and pid > 1 do
    if pid == me then return true end
    pid = ppid_of(pid)
  end
  return false
end

-- Wait until nothing runs on any host (nor a worker of ":", nor an ssh
-- of ours): the list of what is left, described.
local function left_on_hosts(bound)
  local left
  local deadline = helpers.mono() + (bound or 10)
  repeat
    left = on_hosts()
    for _, m in ipairs({ "--remote-worker", "local n=tonumber", "-p " .. port .. " -l root" }) do
      for _, pid in ipairs(helpers.find_marker(m)) do
        if descends_from_us(pid) then left[#left + 1] = pid end
      end
    end
    if #left > 0 then system.sleep(0.05) end    -- a scan of /proc costs: not too often
  until #left == 0 or helpers.mono() > deadline
  local described = {}
  for i, pid in ipairs(left) do described[i] = helpers.describe_pid(pid) end
  return described
end

local function listening(addr)
  local tcp = helpers.read_file("/proc/net/tcp") or ""
  local a, b, c, d = addr:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
  return tcp:find(string.format("%02X%02X%02X%02X:%04X 00000000:0000 0A", d, c, b, a, port), 1, true) ~= nil
end

-- A server stopped by a test starts again (its config kept in dir).
local function restart_sshd(addr)
  local n
  for i, a in ipairs(ADDRS) do if a == addr then n = i end end
  local o = helpers.sh(string.format("/usr/sbin/sshd -D -f %s -E %s </dev/null >/dev/null 2>&1 & echo $!",
    helpers.q(dir .. "/sshd_config." .. n), helpers.q(dir .. "/log." .. n)))
  SSHD[addr] = tonumber(o:match("%d+"))
  assert.is_true(helpers.wait_until(function() return listening(addr) end, 5), "sshd on " .. addr .. " did not restart")
end

-- Wait until the servers listen.
if not why_skipped then
  local ok = helpers.wait_until(function()
    for _, addr in ipairs(ADDRS) do if not listening(addr) then return false end end
    return true
  end, 5)
  if not ok then why_skipped = "sshd did not listen on port " .. port end
end

-- The local ssh process (our child) of one host: by its command line.
local function ssh_pids(addr)
  local found = {}
  for _, pid in ipairs(helpers.find_marker("-p " .. port .. " -l root -- " .. addr)) do
    local cmd = helpers.read_file("/proc/" .. pid .. "/cmdline") or ""
    if cmd:match("^ssh%z") then found[#found + 1] = pid end
  end
  return found
end

local function run(pargs, tasks, opts)
  return lc.ProcRunAsyncio(pargs, tasks, opts):run_all()
end

-- A run starts tasks on the first host that is up: a test that needs
-- every host to take some waits for a file that appears once n hosts
-- said hello (on_trace, if given, sees every event too).
local WAIT = 'while [ ! -e "$G" ]; do sleep 0.02; done; '
local function gate(n, on_trace)
  local f = os.tmpname()
  os.remove(f)
  local ups = 0
  remote_executor.on_trace = function(name, text)
    if on_trace then on_trace(name, text) end
    if text:match("^up:") then
      ups = ups + 1
      if ups == n then io.open(f, "w"):close() end
    end
  end
  finally(function() remote_executor.on_trace = nil; os.remove(f) end)
  return f
end

describe("remote hosts #remote", function()
  if why_skipped then
    it("are skipped: " .. why_skipped, function() print("SKIPPED remote_spec: " .. why_skipped) end)
    return
  end

  teardown(function()
    for _, pid in pairs(SSHD) do os.execute("kill " .. pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. helpers.q(dir))
  end)

  after_each(function()
    assert.are.same({}, left_on_hosts())
  end)

  for _, mode in ipairs({ "lua", "engine" }) do
  describe("(" .. mode .. " worker)", function()
    before_each(function() MODE = mode end)
    after_each(function() MODE = "lua" end)

    it("run tasks remotely, results say which host", function()
      local tasks = {}
      for i = 1, 12 do tasks[i] = { i, { "task" .. i } } end
      local g = { env = { G = gate(2) } }
      local r = run({ "sh", "-c", WAIT .. 'echo "$0"' }, tasks, { hosts = { host(A, 2, g), host(B, 2, g) } })
      local where = {}
      for i, res in ipairs(r) do
        assert.is_true(res.success, res.error)
        assert.are.equal("task" .. i .. "\n", res.stdout)
        assert.are.equal(mode, res.remote_mode)
        where[res.host] = true
      end
      assert.are.same({ [name_of(A)] = true, [name_of(B)] = true }, where)
    end)

    it("spread a run over four hosts with the same results as locally", function()
      local script = 'while [ -n "$G" ] && [ ! -e "$G" ]; do sleep 0.02; done; '
        .. 'printf "out %s\\n" "$0"; printf "err %s\\n" "$0" >&2; '
        .. 'head -c "$(($0 * 997))" /dev/zero | tr "\\0" x; exit $(($0 % 4))'
      local tasks = {}
      for i = 1, 40 do tasks[i] = { i, tostring(i) } end
      local hosts = {}
      local g = { env = { G = gate(#ADDRS) } }
      for i, addr in ipairs(ADDRS) do hosts[i] = host(addr, 2, g) end
      local here = run({ "sh", "-c", script }, tasks, { num_workers = 8 })
      local there = run({ "sh", "-c", script }, tasks, { hosts = hosts })
      local count = {}
      for i = 1, #tasks do
        local a, b = here[i], there[i]
        assert.are.equal(a.key, b.key)
        for _, f in ipairs({ "returncode", "stdout", "stderr", "success" }) do
          assert.are.equal(a[f], b[f], string.format("task %d: %s", i, f))
        end
        count[b.host] = (count[b.host] or 0) + 1
      end
      for _, addr in ipairs(ADDRS) do
        assert.is_true((count[name_of(addr)] or 0) > 0, "no task ran on " .. addr .. ": " .. helpers.setstr(count))
      end
    end)

    it("finish the tasks of a host whose sshd is stopped elsewhere, and quarantine it", function()
      local victim = ADDRS[2]
      local m = "1" .. helpers.marker():sub(3)       -- sleep 1.<digits>
      local tasks = {}
      for i = 1, 40 do tasks[i] = { i, m } end
      local hosts = {}
      for i, addr in ipairs(ADDRS) do hosts[i] = host(addr, 2) end
      -- Once every slot has had a task (and the ones sent ahead), the
      -- first of the next ones stops the victim: its listener and every
      -- session, by pid.
      local first_wave = MODE == "engine" and 16 or 8
      local events, killed_at, killed_wall = {}, nil, nil
      remote_executor.on_trace = function(name, text)
        if name == name_of(victim) then events[#events + 1] = { t = helpers.mono(), text = text } end
      end
      finally(function()
        remote_executor.on_trace = nil
        if not SSHD[victim] then restart_sshd(victim) end
      end)
      local seen = {}
      local t0 = helpers.mono()
      local r = run({ "sleep" }, tasks, {
        hosts = hosts,
        on_start = function(key)
          if key == first_wave + 1 then
            local pids = { SSHD[victim] }
            for _, pid in ipairs(sessions(victim)) do pids[#pids + 1] = pid end
            killed_at, killed_wall = helpers.mono(), helpers.now()
            os.execute("kill -KILL " .. table.concat(pids, " "))
            SSHD[victim] = nil
          end
        end,
        on_result = function(res) seen[res.key] = (seen[res.key] or 0) + 1 end,
      })
      assert.is_true(helpers.mono() - t0 < 60, "the run took too long")
      assert.is_not_nil(killed_at)
      for i = 1, #tasks do
        assert.are.equal(1, seen[i], "results of task " .. i)
        assert.is_true(r[i].success, tostring(i) .. ": " .. tostring(r[i].error))
        if r[i].host == name_of(victim) then
          assert.is_true(r[i].time_start < killed_wall, "task " .. i .. " started on the stopped host")
        end
      end
      -- The session ended with tasks in flight; the host was tried again
      -- after a backoff (not at once), the attempt failed, and it waited
      -- again before the next.
      local lost, retry_at, refused
      for _, e in ipairs(events) do
        if e.t >= killed_at then
          if not lost then
            local n = e.text:match("^session ended %(was up, .-%), (%d+) task")
            if n then lost = e; assert.is_true(tonumber(n) >= 1, e.text) end
          elseif not retry_at and e.text:match("^connecting") then retry_at = e.t
          elseif retry_at and not refused and e.text:match("^session ended %(before hello") then refused = e
          end
        end
      end
      local trace = {}
      for i, e in ipairs(events) do trace[i] = string.format("%.2f %s", e.t - t0, e.text) end
      trace = table.concat(trace, "\n")
      assert.is_not_nil(lost, trace)
      assert.is_not_nil(retry_at, trace)
      assert.is_true(retry_at - lost.t >= 1, trace)
      assert.is_not_nil(refused, trace)
      local quarantined = false
      for _, e in ipairs(events) do
        if e.t >= refused.t and e.text:match("^down: retry in") then quarantined = true end
      end
      assert.is_true(quarantined, trace)
      assert.are.same({}, helpers.wait_marker_gone(m, 10))
      -- The other servers still answer.
      local again = run({ "echo", "ok" }, { { 1 } }, { hosts = { host(ADDRS[3]) } })
      assert.are.equal("ok\n", again[1].stdout)
    end)

    it("end tasks with TERM, then KILL after the grace, when the local ssh is killed", function()
      local m, m2 = helpers.marker(), helpers.marker()
      local trapped, started = os.tmpname(), os.tmpname()
      local started2 = os.tmpname()
      for _, f in ipairs({ trapped, started, started2 }) do os.remove(f) end
      finally(function() for _, f in ipairs({ trapped, started, started2 }) do os.remove(f) end end)
      -- Their first runs: one traps TERM and writes a file, the other
      -- ignores TERM. Run again (the host is reconnected), they just succeed.
      local once = 'if [ -e "$1" ]; then exit 0; fi; : >"$1"; '
      local tasks = {
        { 1, { once .. 'trap \'echo trapped >"$2"; exit 0\' TERM; sleep "$0" & wait', m, started, trapped } },
        { 2, { once .. 'trap "" TERM; exec sleep "$0"', m2, started2 } },
      }
      local r = run({ "sh", "-c" }, tasks, {
        hosts = { host(A, 2) }, kill_grace = 2,
        on_start = function(key)
          if key ~= 1 then return end
          local pids = ssh_pids(A)
          assert.are.equal(1, #pids)
          -- once both tasks run remotely, their local ssh is killed
          os.execute("(i=0; until { pgrep -f '^sleep " .. m .. "$' && pgrep -f '^sleep " .. m2 .. "$'; } >/dev/null "
            .. "|| [ $i -gt 400 ]; do sleep 0.05; i=$((i+1)); done; kill -KILL " .. pids[1] .. ") >/dev/null 2>&1 &")
        end,
      })
      assert.is_true(r[1].success, r[1].error)
      assert.is_true(r[2].success, r[2].error)
      assert.is_true(helpers.wait_until(function() return helpers.read_file(trapped) == "trapped\n" end, 10),
        "the task's TERM trap did not run")
      assert.are.same({}, helpers.wait_marker_gone(m, 10))
      assert.are.same({}, helpers.wait_marker_gone(m2, 10))    -- KILLed after the grace
    end)

    it("pass argv intact: spaces, quotes, newlines, backslashes, tabs", function()
      local weird = { "a b", "it's", '"dq"', "line1\nline2", "back\\slash\\n", "tab\there", "$HOME `x` $(y)", "", "*" }
      local r = run({ "lua5.4", "-e", "for i = 1, #arg do io.write(('%q'):format(arg[i]), ',') end",
        "/dev/null" }, { { 1, weird } }, { hosts = { host() } })
      assert.is_true(r[1].success, r[1].error)
      local expect = {}
      for i, w in ipairs(weird) do expect[i] = ("%q"):format(w) end
      assert.are.equal(table.concat(expect, ",") .. ",", r[1].stdout)
    end)

    it("keep stdout (10 MiB, every byte value) and stderr apart and binary-safe; env, cwd and input work", function()
      local src = [[
        local s = {} for i = 0, 255 do s[#s + 1] = string.char(i) end
        s = table.concat(s):rep(40960)        -- 10 MiB, every byte value
        io.stdout:write(s) io.stderr:write("err\0\255", os.getenv("LCX") or "-", os.getenv("HOME") and "H" or "noH")
        io.stderr:write(io.read("a"), (io.popen("pwd"):read("l")))]]
      local r = run({ "lua5.4", "-e", src }, { { 1 } },
        { hosts = { host() }, env = { LCX = "x y\nz", HOME = false }, cwd = "/tmp", input = "in\0put" })
      local s = {}
      for i = 0, 255 do s[#s + 1] = string.char(i) end
      assert.is_true(r[1].success, r[1].error)
      assert.are.equal(#table.concat(s) * 40960, #r[1].stdout)
      assert.is_true(r[1].stdout == table.concat(s):rep(40960))
      assert.are.equal("err\0\255x y\nznoHin\0put/tmp", r[1].stderr)
    end)

    it("report a task's failure (even 255) as the task's, on its host", function()
      local r = run({ "sh", "-c" }, { { 1, "exit 255" }, { 2, "exit 3" }, { 3, "true" } }, { hosts = { host() } })
      assert.are.equal(255, r[1].returncode)
      assert.is_false(r[1].success)
      assert.are.equal(3, r[2].returncode)
      assert.is_true(r[3].success)
      assert.are.equal(name_of(A), r[1].host)
    end)

    it("time out a task: its whole remote process group is killed", function()
      local m = helpers.marker()
      local t0 = helpers.mono()
      local r = run({ "sh", "-c", "sleep $0 & sleep $0" }, { { 1, m } }, { hosts = { host() }, timeout = 0.5 })
      assert.is_true(r[1].timeout)
      assert.is_true(helpers.mono() - t0 < 15)        -- not the sleep's 30 s
      assert.are.same({}, helpers.wait_marker_gone(m, 3))
    end)

    -- Three 1.5 s tasks, two of them on host A; once the third starts,
    -- the processes victims() names are SIGKILLed. Every task still
    -- succeeds and nothing is left. Returns the results.
    local function requeue_after_kill(victims)
      local m = "1.5" .. helpers.marker():sub(4)
      local tasks = {}
      for i = 1, 3 do tasks[i] = { i, m } end
      local killed = false
      local r = run({ "sleep" }, tasks, {
        hosts = { host(A, 2), "1/:" },
        on_start = function(key)
          if key == 3 and not killed then
            killed = true
            local pids = victims()
            assert.is_true(#pids >= 1)
            os.execute("(sleep 0.5; kill -KILL " .. table.concat(pids, " ") .. ") &")
          end
        end,
      })
      for i, res in ipairs(r) do assert.is_true(res.success, tostring(i) .. ": " .. tostring(res.error)) end
      assert.are.same({}, helpers.wait_marker_gone(m, 3))
      return r
    end

    it("requeue the tasks of a host whose ssh is killed; they finish elsewhere", function()
      local r = requeue_after_kill(function()
        local pids = ssh_pids(A)
        assert.are.equal(1, #pids)
        return pids
      end)
      local hosts = {}
      for _, res in ipairs(r) do hosts[res.host] = (hosts[res.host] or 0) + 1 end
      assert.is_true((hosts[":"] or 0) >= 2, helpers.setstr(hosts))
    end)

    it("requeue the tasks of a host whose server-side sshd session is killed", function()
      requeue_after_kill(function()
        -- the listener's children: one per session (the privileged monitor)
        return sessions(A)
      end)
    end)

    it("leave nothing running remotely when the local runner is SIGKILLed", function()
      local m = helpers.marker()
      local cmd = helpers.lua_env() .. " exec lua5.4 " .. helpers.q(helpers.FIXTURES .. "/remote_run.lua") .. " "
        .. helpers.q(dir) .. " " .. A .. " " .. port .. " " .. m .. (mode == "engine" and " " .. helpers.q(EXE) or "")
      local p = io.popen("echo $$; " .. cmd, "r")
      local pid = tonumber(p:read("l"))
      assert.are.equal("started", p:read("l"))
      assert.is_true(helpers.wait_until(function() return #helpers.find_marker("sleep " .. m) == 2 end, 5))
      os.execute("kill -KILL " .. pid)
      p:close()
      assert.are.same({}, helpers.wait_marker_gone(m, 5))
      assert.are.same({}, helpers.wait_marker_gone("lcremote.", 3))
    end)

    it("report a missing program or cwd as the task's failure", function()
      local r = run({ "no-such-program-lc" }, { { 1 } }, { hosts = { host() } })
      assert.are.equal("FileNotFoundError", r[1].exception)
      r = run({ "pwd" }, { { 1 } }, { hosts = { host() }, cwd = "/no/such/dir" })
      if mode == "engine" then      -- the engine's spawn says it
        assert.is_false(r[1].success)
        assert.matches("cannot change directory", r[1].error)
      else
        assert.are.equal(126, r[1].returncode)
      end
    end)

    it("run many short tasks over one session", function()
      local tasks = {}
      for i = 1, 400 do tasks[i] = { i } end
      local t0 = helpers.mono()
      local r = run({ "true" }, tasks, { hosts = { host(nil, 2) } })
      local dt = helpers.mono() - t0
      assert.are.equal(400, helpers.count_success(r))
      print(string.format("remote (%s worker): 400 x true on one ssh host, 2 slots: %.3f s (%.2f ms a task)",
        mode, dt, dt / 400 * 1000))
    end)

    it("halt now: running and sent-ahead tasks end, nothing is left", function()
      local m = helpers.marker()
      local tasks = { { 1, "sleep 0.3; exit 1" } }
      for i = 2, 6 do tasks[i] = { i, "exec sleep " .. m } end
      local t0 = helpers.mono()
      local r = run({ "sh", "-c" }, tasks, { hosts = { host(nil, 2) }, halt = "now,fail=1" })
      assert.is_true(helpers.mono() - t0 < 10)
      assert.are.equal(1, r[1].returncode)
      for i = 2, 6 do
        assert.is_false(r[i].success, tostring(i))
        assert.are.equal("Interrupted", r[i].exception, tostring(i) .. ": " .. tostring(r[i].error))
      end
      assert.are.same({}, helpers.wait_marker_gone(m, 3))
    end)

    it("declare a frozen host lost within its heartbeat bound; its worker kills its groups and exits", function()
      -- The sshd session process of the remote worker is stopped: nothing
      -- crosses the channel either way, and the worker's stdin stays open.
      local m = "1.5" .. helpers.marker():sub(4)
      local tasks = {}
      for i = 1, 4 do tasks[i] = { i, m } end   -- ":" has one slot: two run remotely
      local stopped, stopped_at, worker
      local stampf = os.tmpname()
      finally(function()
        if stopped then os.execute("kill -CONT " .. stopped .. "; kill -KILL " .. stopped .. " 2>/dev/null") end
      end)
      local r = run({ "sleep" }, tasks, {
        hosts = { host(A, 2, { heartbeat = 0.5 }), "1/:" },
        on_start = function(key)
          if key == 3 and not stopped then
            -- (the worker is up before any task is sent; its tasks start
            -- once this callback returns)
            local pid, ppid = remote_worker()
            assert.is_not_nil(pid, "no remote worker found")
            worker, stopped = pid, ppid
            os.execute("(sleep 0.5; kill -STOP " .. ppid .. "; date +%s.%N >" .. helpers.q(stampf) .. ") &")
          end
        end,
      })
      for i, res in ipairs(r) do assert.is_true(res.success, tostring(i) .. ": " .. tostring(res.error)) end
      stopped_at = tonumber(helpers.read_file(stampf))
      os.remove(stampf)
      -- The tasks that ran on the frozen host ran again (on ":", free),
      -- 4 heartbeats (2 s) after the freeze, plus a check period: long
      -- before ssh's own keepalive (15 s) would notice. The bound is
      -- generous for a loaded machine.
      local moved = 0
      for _, res in ipairs(r) do
        if res.time_start > stopped_at then
          moved = moved + 1
          assert.is_true(res.time_start - stopped_at < 10, string.format("lost after %.2f s", res.time_start - stopped_at))
        end
      end
      assert.is_true(moved >= 1, "moved " .. moved)
      -- The worker, silent for 8 heartbeats (4 s), killed its sleeps and exited.
      assert.are.same({}, helpers.wait_marker_gone(m, 15))
      assert.is_true(helpers.wait_until(function()
        local st = helpers.read_file("/proc/" .. worker .. "/stat")
        return st == nil or st:match("^%d+ %b() Z") ~= nil
      end, 10), "the remote worker is still running")
    end)
  end)
  end

  describe("function tasks", function()
    local function fhost(extra)
      local h = { host = A, user = "root", port = port, slots = 2, ssh_options = SSH_OPTS,
        luaconcurrent = EXE }
      for k, v in pairs(extra or {}) do h[k] = v end
      return h
    end

    it("run remotely in engine mode, with upvalues and modules by name", function()
      local R = require "luaconcurrent.result"       -- a module: goes by name
      local data = { base = 100, list = { 1, 2, 3 } }
      local function sum(t) local s = 0 for _, v in ipairs(t) do s = s + v end return s end
      local fn = function(key, args)
        io.write("out " .. key)
        return true, { n = data.base + sum(data.list) + args[#args], fields = #R.FIELDS, pid = R.new(1).key }
      end
      local tasks = {}
      for i = 1, 6 do tasks[i] = { i, i * 10 } end
      local r = lc.ProcRunMp({ fn }, tasks, { hosts = { fhost(), fhost({ host = B }) } }):run_all()
      for i, res in ipairs(r) do
        assert.is_true(res.success, res.error)
        assert.are.equal(106 + i * 10, res.answer.n)
        assert.are.equal(#R.FIELDS, res.answer.fields)
        assert.are.equal(1, res.answer.pid)
        assert.are.equal("out " .. i, res.stdout)
        assert.are.equal("engine", res.remote_mode)
      end
    end)

    it("report errors, false returns and timeouts as locally", function()
      local fn = function(key)
        if key == 1 then error("boom") end
        if key == 2 then return nil, "no luck" end
        if key == 3 then while true do end end
        return true, key
      end
      local r = lc.ProcRunAsyncio({ fn }, { { 1 }, { 2 }, { 3 }, { 4 } }, { hosts = { fhost() }, timeout = 1 }):run_all()
      assert.are.equal("RuntimeError", r[1].exception)
      assert.matches("boom", r[1].error)
      assert.is_false(r[2].success)
      assert.are.equal("no luck", r[2].error)
      assert.is_true(r[3].timeout)
      assert.is_true(r[4].success)
      assert.are.equal(4, r[4].answer)
    end)

    it("keep their deadline on the host, are sent ahead, and time out as locally", function()
      local m = helpers.marker()
      local fn = function(key, args)
        if key == 1 then os.execute("sleep " .. args[1]) end     -- stuck in a C call
        return true, key
      end
      local tasks = { { 1, m }, { 2, m }, { 3, m } }
      local started, answered = {}, {}
      local r = lc.ProcRunAsyncio({ fn }, tasks, { hosts = { fhost({ slots = 1 }) }, timeout = 0.5,
        on_start = function(key) started[key] = helpers.mono() end,
        on_result = function(res) answered[res.key] = helpers.mono() end }):run_all()
      local here = lc.ProcRunMp({ fn }, { tasks[1] }, { isolation = "process", num_workers = 1, timeout = 0.5 }):run_all()
      assert.is_true(r[1].timeout)
      assert.are.equal(here[1].error, r[1].error)
      assert.are.equal(here[1].exception, r[1].exception)
      assert.is_true(r[2].success and r[3].success)
      -- the second went to the host before the first was over
      assert.is_true(started[2] < answered[1])
      assert.are.same({}, helpers.wait_marker_gone(m, 5))
    end)

    it("treat a host silent past a function task's deadline as failing", function()
      local fn = function(key) return true, key end
      local worker
      local events = {}
      remote_executor.on_trace = function(_, text) events[#events + 1] = text end
      finally(function()
        remote_executor.on_trace = nil
        if worker then os.execute("kill -CONT " .. worker .. " 2>/dev/null") end
      end)
      local r = lc.ProcRunAsyncio({ fn }, { { 1 }, { 2 } }, { hosts = { fhost({ slots = 1 }) }, timeout = 0.2,
        on_start = function(key)
          if key == 1 then      -- the session is up: its worker stops answering
            worker = remote_worker("engine")
            os.execute("kill -STOP " .. worker)
          end
        end }):run_all()
      assert.is_true(r[1].timeout)
      assert.are.equal("timed out after 0.2 s (its host did not answer)", r[1].error)
      assert.is_true(r[2].success, r[2].error)
      local lost = false
      for _, e in ipairs(events) do if e:match("^no answer from a function task") then lost = true end end
      assert.is_true(lost, table.concat(events, "\n"))
    end)

    it("are refused on a host whose luaconcurrent is another version", function()
      local fake = dir .. "/lc-other-version"
      local f = assert(io.open(fake, "w"))
      f:write("#!/bin/sh\nexec ", helpers.q(EXE), " -e ", helpers.q('require("luaconcurrent.remote_channel").version = "9.9.9"; '
        .. 'os.exit(require("luaconcurrent.remote.engine_worker").main(), true)'), "\n")
      f:close()
      os.execute("chmod +x " .. helpers.q(fake))
      local r = lc.ProcRunAsyncio({ function() return true end }, { { 1 } },
        { hosts = { fhost({ luaconcurrent = fake }) } }):run_all()
      assert.are.equal("ConnectionError", r[1].exception)
      assert.matches("the host has luaconcurrent 9.9.9", r[1].error, 1, true)
      -- subprocess tasks still run there (the protocol is the same)
      r = run({ "echo", "ok" }, { { 1 } }, { hosts = { fhost({ luaconcurrent = fake }) } })
      assert.are.equal("ok\n", r[1].stdout)
      assert.are.equal("engine", r[1].remote_mode)
    end)

    it("are refused clearly on a plain-lua host", function()
      local r = lc.ProcRunAsyncio({ function() return true end }, { { 1 } },
        { hosts = { fhost({ luaconcurrent = false }) } }):run_all()
      assert.is_false(r[1].success)
      assert.are.equal("ConnectionError", r[1].exception)
      assert.matches("function tasks need the luaconcurrent executable", r[1].error)
    end)
  end)


  it("fall back to the plain-Lua worker when the host has no luaconcurrent there", function()
    local r = run({ "echo", "hi" }, { { 1 } },
      { hosts = { { host = A, user = "root", port = port, ssh_options = SSH_OPTS,
        luaconcurrent = "/no/such/luaconcurrent" } } })
    assert.is_true(r[1].success, r[1].error)
    assert.are.equal("hi\n", r[1].stdout)
    assert.are.equal("lua", r[1].remote_mode)
    assert.has_error(function() lc.ProcRunAsyncio({ "true" }, { { 1 } }, { hosts = { { host = "x", luaconcurrent = 3 } } }) end,
      "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: hosts[1].luaconcurrent must be a path (or false: always the plain-Lua worker))")
    assert.has_error(function() lc.ProcRunAsyncio({ "true" }, { { 1 } }, { hosts = { { host = "x", heartbeat = 0 } } }) end,
      "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: hosts[1].heartbeat must be a positive number of seconds)")
  end)

  it("take num_workers as the slots of each host that names none", function()
    local slots = {}
    local function up(name, text)
      local n = text:match("^up: .-(%d+) slots$")
      if n then slots[name] = tonumber(n) end
    end
    local g = { env = { G = gate(2, up) } }
    local r = run({ "sh", "-c", WAIT }, { { 1 }, { 2 } }, { num_workers = 3, hosts = { host(A, nil, g), host(B, 1, g) } })
    assert.are.equal(2, helpers.count_success(r))
    assert.are.same({ [name_of(A)] = 3, [name_of(B)] = 1 }, slots)
    slots = {}
    g = { env = { G = gate(2, up) } }
    run({ "sh", "-c", WAIT }, { { 1 } }, { num_workers = 5, hosts = { host(A, nil, g), { host = ":", slots = 2, env = g.env } } })
    assert.are.same({ [name_of(A)] = 5, [":"] = 2 }, slots)
    slots = {}
    run({ "true" }, { { 1 } }, { hosts = { host(A) } })       -- its CPU count
    assert.are.same({ [name_of(A)] = require("luaconcurrent.core").cpu_count() }, slots)
  end)

  it("give up on an unreachable host with an error per task", function()
    local r = run({ "true" }, { { 1 } }, { hosts = { { host = "127.0.0.1", port = 1, ssh_options = SSH_OPTS } } })
    assert.is_false(r[1].success)
    assert.are.equal("ConnectionError", r[1].exception)
  end)

  it("run every task when sshd refuses handshakes (MaxStartups 2:100:2, MaxSessions 2)", function()
    local dir2 = dir .. "-limited"
    local port2 = port + 1
    local o, e, c = helpers.sh("LC_SSHD_OWNER=" .. helpers.self_pid() .. " " .. helpers.q(helpers.FIXTURES .. "/sshd_start.sh") .. " " .. helpers.q(dir2) .. " "
      .. port2 .. " 2:100:2 2")
    assert.are.equal(0, c, e)
    local pid2 = tonumber(o:match("%d+"))
    finally(function()
      os.execute("kill " .. pid2 .. " 2>/dev/null")
      os.execute("rm -rf " .. helpers.q(dir2))
    end)
    assert.is_true(helpers.wait_until(function()
      local tcp = helpers.read_file("/proc/net/tcp") or ""
      return tcp:find(string.format(":%04X 00000000:0000 0A", port2), 1, true) ~= nil
    end, 5))
    local opts = { "-i", dir2 .. "/id", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
      "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR" }
    local hosts = {}
    for i = 1, 6 do
      hosts[i] = { host = i % 2 == 0 and "127.0.0.1" or "127.0.0.2", user = "root", port = port2, slots = 1,
        ssh_options = opts, env = { N = tostring(i) } }
    end
    local tasks = {}
    for i = 1, 24 do tasks[i] = { i, "echo $N" } end
    local r = run({ "sh", "-c" }, tasks, { hosts = hosts })
    assert.are.equal(24, helpers.count_success(r))
  end)

  it("retry a failed task on a host where it has not failed", function()
    for _ = 1, 3 do
      local r = run({ "sh", "-c", 'test "$X" = b' }, { { 1 } }, { retries = 1,
        hosts = { { host = ":", env = { X = "a" }, slots = 1 }, { host = ":", env = { X = "b" }, slots = 1 } } })
      -- (The first attempt runs on the host up first: on a it fails, and
      -- the retry must go to b.)
      assert.is_true(r[1].success)
      assert.is_true(r[1].attempts <= 2)
    end
  end)

  -- How long it takes is the benchmark's (make bench, W9); here, that it answers.
  it("answers round trips over the channel", function()
    local rtt = require("luaconcurrent.exec.remote").ping(host(), 100)
    assert.is_true(type(rtt) == "number" and rtt > 0)
  end)


end)
