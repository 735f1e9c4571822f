-- Remote hosts that lie, break or hang (issue 15): a fake remote worker
-- (spec/fixtures/remote_fake_host.lua) stands where a host's
-- `luaconcurrent --remote-worker` would, started by the remote executor's
-- own session code (host ":" with luaconcurrent = a wrapper per mode), and
-- misbehaves as its mode says. Beside it an honest host (":" with the
-- plain-Lua worker). For each mode: the run ends within a generous bound,
-- every task has one correct result (the honest host's), and what the fake
-- sent never runs in the runner.

local lc = require "luaconcurrent"
local helpers = require "helpers"
local remote_executor = require "luaconcurrent.remote.executor"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. helpers.q(dir))

-- The host spec of a fake in mode.
local function fake(mode, extra)
  local path = dir .. "/fake-" .. mode
  local f = assert(io.open(path, "w"))
  f:write("#!/bin/sh\n",
    "LC_FAKE_CPATH=", helpers.q(helpers.ROOT .. "/build/lib/?.so"), " LC_FAKE_PWNED=", helpers.q(dir .. "/pwned"),
    " LC_FAKE_LOG=", helpers.q(dir .. "/log"), " exec lua5.4 ",
    helpers.q(helpers.FIXTURES .. "/remote_fake_host.lua"), " ", mode, ' "$@"\n')
  f:close()
  os.execute("chmod +x " .. helpers.q(path))
  local h = { host = ":", slots = 2, luaconcurrent = path, heartbeat = 0.5, hello_timeout = 3 }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local HONEST = { host = ":", slots = 2, luaconcurrent = false }

local function tasks_of(n)
  local t = {}
  for i = 1, n do t[i] = { i, { "task" .. i } } end
  return t
end

-- Run n echo tasks over hosts; check each has one correct result.
local function run_checked(hosts, n, bound, opts)
  local seen = {}
  local o = { hosts = hosts, on_result = function(res) seen[res.key] = (seen[res.key] or 0) + 1 end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local t0 = helpers.mono()
  local r = lc.ProcRunAsyncio({ "echo" }, tasks_of(n), o):run_all()
  local took = helpers.mono() - t0
  assert.is_true(took < bound, string.format("the run took %.1f s (bound %g s)", took, bound))
  for i = 1, n do assert.are.equal(1, seen[i], "results of task " .. i) end
  return r, took
end

local function all_correct(r)
  for i, res in ipairs(r) do
    assert.is_true(res.success, i .. ": " .. tostring(res.error))
    assert.are.equal("task" .. i .. "\n", res.stdout)
  end
end

-- The trace lines of every host, for the failure reasons.
local events
before_each(function()
  events = {}
  remote_executor.on_trace = function(name, text) events[#events + 1] = name .. " " .. text end
  os.remove(dir .. "/pwned")
  os.remove(dir .. "/log")
end)
after_each(function() remote_executor.on_trace = nil end)
teardown(function() os.execute("rm -rf " .. helpers.q(dir)) end)

local function traced(pattern)
  for _, e in ipairs(events) do if e:find(pattern, 1, true) then return true end end
  return false
end

describe("a hostile or broken remote host", function()
  it("an honest fake host runs tasks (the fixture itself works)", function()
    local r = run_checked({ fake("ok") }, 6, 30)
    all_correct(r)
  end)

  it("a login banner before the hello is skipped", function()
    local r = run_checked({ fake("banner") }, 6, 30)
    all_correct(r)
    assert.is_true(traced("skipped"), table.concat(events, "\n"))
  end)

  it("a banner printed before the real plain worker starts is skipped too", function()
    local lua = dir .. "/lua-banner"
    local f = assert(io.open(lua, "w"))
    f:write('#!/bin/sh\nprintf "Last login: never\\n\\0\\0\\0\\1motd\\n"\nexec lua5.4 "$@"\n')
    f:close()
    os.execute("chmod +x " .. helpers.q(lua))
    all_correct(run_checked({ { host = ":", slots = 2, luaconcurrent = false, lua = lua } }, 6, 30))
  end)

  -- Frames a host must not send: the host fails (its session killed, the
  -- reason kept), its tasks run on the honest host, the run goes on.
  for _, c in ipairs({
    { "garbage", "protocol error" },
    { "short", "protocol error: a field longer than its frame" },
    { "wrongtype", "protocol error: a done frame whose field 3 is out of range" },
    { "bigframe", "protocol error: a frame of 2147483647 bytes" },
    { "twohello", "protocol error: a second hello" },
    { "badid", "not one it holds" },
    { "cpus_neg", "protocol error: a hello frame whose field 3 is out of range" },
    { "cpus_huge", "protocol error: a hello frame whose field 3 is out of range" },
  }) do
    local mode, why = c[1], c[2]
    it("sends " .. mode .. ": the host fails, not the run; every task runs elsewhere", function()
      local r = run_checked({ fake(mode), HONEST }, 8, 60)
      all_correct(r)
      assert.is_true(traced(why), "no trace of " .. why .. ":\n" .. table.concat(events, "\n"))
    end)
  end

  it("alone and always failing, every task gets a ConnectionError saying why", function()
    local r = run_checked({ fake("cpus_neg") }, 3, 60)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("field 3 is out of range", res.error, 1, true)
    end
  end)

  -- The fake tags them with the host's up-key (a host that lies holds
  -- it): the data decoder refuses them, not the key check.
  for _, c in ipairs({ { "metatable", "refused: a metatable" }, { "bytecode", "refused: a function value" } }) do
    local mode, why = c[1], c[2]
    it("answers with a " .. mode .. ": refused, nothing of it runs here, the host fails", function()
      local r = run_checked({ fake(mode), HONEST }, 8, 60)
      all_correct(r)
      assert.is_nil(io.open(dir .. "/pwned"), "the host's code ran in the runner")
      assert.is_true(traced(why), table.concat(events, "\n"))
    end)
  end

  it("never says hello: failed at its hello deadline, the banner in the error", function()
    local r, took = run_checked({ fake("nohello", { hello_timeout = 1 }), HONEST }, 6, 30)
    all_correct(r)
    assert.is_true(took < 20)
    -- Alone: each task says why.
    r = run_checked({ fake("nohello", { hello_timeout = 1 }) }, 2, 60)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("no hello within 1 s (it printed: stuck in .bashrc)", res.error, 1, true)
    end
  end)

  it("hosts that never say hello, as many as connect at once, do not keep the next from running the tasks", function()
    local connects = require "luaconcurrent.remote.connects"
    local hosts = {}
    -- Before any host is up, FIRST_CONNECTING start at once.
    for i = 1, connects.FIRST_CONNECTING do hosts[i] = fake("nohello", { hello_timeout = 60 }) end
    hosts[#hosts + 1] = HONEST
    -- The honest host gets a connect slot once the others have held
    -- theirs CONNECT_SLOT seconds; the others are killed at the end.
    local r, took = run_checked(hosts, 6, 45)
    all_correct(r)
    assert.is_true(took >= connects.CONNECT_SLOT, "the honest host did not wait for a slot: the test proves nothing")
  end)

  it("does not exit at EOF: killed after the exit deadline", function()
    local r = run_checked({ fake("noexit") }, 4, 30)
    all_correct(r)
    assert.is_true(traced("did not exit"), table.concat(events, "\n"))
  end)

  it("answers heartbeats but no task: with a timeout, tasks time out and the host fails", function()
    local r = run_checked({ fake("hbonly") }, 2, 40, { timeout = 0.5, kill_grace = 0.1 })
    for _, res in ipairs(r) do
      assert.is_true(res.timeout, tostring(res.error))
      assert.are.equal("TimeoutError", res.exception)
    end
    assert.is_true(traced("did not end a cancelled task"), table.concat(events, "\n"))
  end)

  it("dies on a cancel: a task past its deadline is final (timed out), not run again", function()
    local r = run_checked({ fake("dieoncancel"), HONEST }, 2, 40,
      { timeout = 0.5, kill_grace = 0.1, num_workers = 1 })
    for _, res in ipairs(r) do
      if not res.success then
        assert.is_true(res.timeout, tostring(res.error))
      else
        assert.are.equal(":", res.host)
      end
    end
  end)

  it("kills itself at every task: each task is lost twice at most, then a ConnectionError", function()
    local r = run_checked({ fake("killself") }, 3, 60)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("lost 2 times", res.error, 1, true)
    end
    -- Beside an honest host: every task runs there.
    r = run_checked({ fake("killself"), HONEST }, 8, 60)
    all_correct(r)
  end)

  it("halt = soon: engine-mode tasks sent ahead and not started there never start", function()
    local touched = dir .. "/touched"
    os.remove(touched)
    local tasks = { { 1, "sleep 0.3; exit 1" }, { 2, "sleep 2" }, { 3, "sleep 2" } }
    for i = 4, 6 do tasks[i] = { i, "touch " .. helpers.q(touched) } end
    -- 2 slots and 2 sent ahead: 4 is held there behind 2 and 3.
    local r = lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { halt = "soon,fail=1",
      hosts = { { host = ":", slots = 2, luaconcurrent = helpers.ROOT .. "/build/luaconcurrent" } } }):run_all()
    assert.are.equal(1, r[1].returncode)
    assert.is_true(r[2].success and r[3].success)
    for i = 4, 6 do
      assert.are.equal("Interrupted", r[i].exception, i .. ": " .. tostring(r[i].error))
      assert.matches("not started", r[i].error, 1, true)
    end
    assert.is_nil(io.open(touched), "a task held after the halt ran")
  end)

  it("a host whose lua is 5.1 is refused at its handshake, saying so", function()
    local r = run_checked({ { host = ":", slots = 1, luaconcurrent = false, lua = "lua5.1" } }, 2, 30)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("refused: lua5.1 is Lua 5.1, the plain worker needs Lua 5.3 or later", res.error, 1, true)
    end
    -- Beside an honest host, every task runs there.
    all_correct(run_checked({ { host = ":", slots = 1, luaconcurrent = false, lua = "lua5.1" }, HONEST }, 6, 30))
  end)

  it("a host without setsid is refused at its handshake, not failing every task with 127", function()
    local bin = dir .. "/bin"
    os.execute("mkdir -p " .. helpers.q(bin))
    for _, p in ipairs({ "mkfifo", "mktemp", "env", "sleep", "kill", "rm", "cat", "getconf", "echo" }) do
      local found = io.popen("command -v " .. p)
      local path = found:read("l")
      found:close()
      if path then os.execute("ln -sf " .. helpers.q(path) .. " " .. helpers.q(bin .. "/" .. p)) end
    end
    local lua = dir .. "/lua-nosetsid"
    local f = assert(io.open(lua, "w"))
    f:write("#!/bin/sh\nPATH=", helpers.q(bin), ' exec /usr/bin/lua5.4 "$@"\n')
    f:close()
    os.execute("chmod +x " .. helpers.q(lua))
    local r = run_checked({ { host = ":", slots = 1, luaconcurrent = false, lua = lua } }, 2, 30)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("refused: the plain worker needs setsid on the host's PATH", res.error, 1, true)
    end
  end)

  it("a plain worker that gives up on a silent runner ends its session: its tasks run again, not exit 143", function()
    -- on_result blocks the runner longer than the worker's give-up (8
    -- heartbeats, at least 2 s) while tasks run there.
    local blocked = false
    local tasks = {}
    for i = 1, 3 do tasks[i] = { i, i == 1 and "echo task1" or "sleep 3; echo task" .. i } end
    local r = lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { hosts = { { host = ":", slots = 3, luaconcurrent = false,
      heartbeat = 0.25 } }, on_result = function()
        if not blocked then blocked = true; os.execute("sleep 4") end
      end }):run_all()
    all_correct(r)
    assert.is_true(traced("gave up") or traced("no heartbeat"), table.concat(events, "\n"))
  end)

  it("an older luaconcurrent on the host (no hello mark) is refused at once, saying so", function()
    local r, took = run_checked({ fake("oldproto", { hello_timeout = 60 }) }, 2, 30)
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("its worker speaks an older protocol than 2", res.error, 1, true)
    end
    assert.is_true(took < 20, "not at once: " .. took .. " s")
  end)
end)

describe("host specs", function()
  local hosts = require "luaconcurrent.remote.hosts"
  local bootstrap = require "luaconcurrent.remote.bootstrap"

  it("take GNU parallel's ssh command forms", function()
    local h = hosts.parse("ssh -p 2222 user@host", 1)
    assert.are.same({ "host", "user", 2222, "ssh" }, { h.host, h.user, h.port, h.ssh })
    h = hosts.parse("4//usr/bin/ssh -i key -o A=b u@h.example", 1)
    assert.are.same({ "h.example", "u", 4, "/usr/bin/ssh" }, { h.host, h.user, h.slots, h.ssh })
    assert.are.same({ "-i", "key", "-o", "A=b" }, h.ssh_options)
    assert.are.equal("/usr/bin/ssh", bootstrap.argv(h)[1])
  end)

  it("put the user's ssh options before the built-in ones (ssh keeps the first)", function()
    local argv = bootstrap.argv(hosts.parse({ host = "h", ssh_options = { "-o", "BatchMode=no" } }, 1))
    local first
    for i, a in ipairs(argv) do if a:match("^BatchMode=") then first = first or argv[i] end end
    assert.are.equal("BatchMode=no", first)
  end)

  it("refuse bad hosts, users and ports, saying which", function()
    for spec, err in pairs({
      ["h;touch"] = [[luaconcurrent: hosts[1]: "h;touch" is not a host name or address]],
      ["h;touch x"] = [[luaconcurrent: hosts[1] "h;touch x" is not a host (expected]],
      ["-oProxyCommand=x"] = [[luaconcurrent: hosts[1]: "-oProxyCommand=x" is not a host name or address]],
      ["u;x@h"] = [[luaconcurrent: hosts[1]: "u;x" is not a user name]],
      ["h:99999"] = "luaconcurrent: hosts[1].port must be an integer from 1 to 65535, got 99999",
      ["ssh -p 0 h"] = "luaconcurrent: hosts[1].port must be an integer from 1 to 65535, got 0",
      ["rsh h"] = [[luaconcurrent: hosts[1] "rsh h" is not a host]],
    }) do
      local ok, e = pcall(hosts.parse, spec, 1)
      assert.is_false(ok, spec)
      assert.are.equal(err, e:sub(1, #err), spec)
    end
  end)
end)

describe("connect slots", function()
  local connects = require "luaconcurrent.remote.connects"
  local core = require "luaconcurrent.core"

  -- The ramp's methods on a stand-in executor (no loop, no sessions).
  local function ramp(states)
    local Remote = {}
    Remote.__index = Remote
    connects.install(Remote, function() end)
    local hosts = {}
    for i, s in ipairs(states) do hosts[i] = { state = s[1], started = s[2] and core.now() - s[2], ever_up = s[3] } end
    local timers = {}
    local self = setmetatable({ hosts = hosts, timers = timers }, Remote)
    self.at = function(_, when) timers[#timers + 1] = when end
    return self
  end

  it("hold a slot CONNECT_SLOT seconds while no host is up", function()
    local r = ramp({ { "connecting", connects.CONNECT_SLOT - 0.5 }, { "connecting", connects.CONNECT_SLOT + 0.5 } })
    assert.are.equal(connects.CONNECT_SLOT, r:slot_time())
    assert.are.equal(1, (r:nconnecting()))
    assert.are.equal(connects.FIRST_CONNECTING, r:connect_limit())
  end)

  it("once hosts come up fast, hold a slot twice the median handshake: a stalled host soon lets the next start", function()
    local r = ramp({ { "up", 0.2, true }, { "up", 0.1, true }, { "up", 0.15, true },
      { "connecting", 1.0 }, { "connecting", 0.1 } })
    for i = 1, 3 do r:note_handshake(r.hosts[i]) end
    local slot = r:slot_time()
    assert.is_true(slot >= 0.3 and slot < 0.5, "slot time " .. slot)
    -- The one connecting for 1 s no longer holds its slot.
    local n, free_at = r:nconnecting()
    assert.are.equal(1, n)
    assert.is_true(free_at > core.now() and free_at < core.now() + 0.5)
    assert.are.equal(math.min(connects.MAX_CONNECTING, connects.FIRST_CONNECTING + 6), r:connect_limit())
  end)

  it("a slot time never below SLOT_MIN nor above CONNECT_SLOT", function()
    local r = ramp({ { "up", 0.001, true } })
    r:note_handshake(r.hosts[1])
    assert.are.equal(connects.SLOT_MIN, r:slot_time())
    r = ramp({ { "up", 100, true } })
    r:note_handshake(r.hosts[1])
    assert.are.equal(connects.CONNECT_SLOT, r:slot_time())
  end)

  it("hosts waiting at the limit: a wake-up when the first slot frees by time", function()
    local r = ramp({ { "connecting", 0.5 }, { "connecting", 1 }, { "want" } })
    r.connect = function() error("no slot is free: nothing may start") end
    r:pump_connects()
    assert.are.equal(1, #r.timers)
    assert.is_true(math.abs(r.timers[1] - (core.now() + connects.CONNECT_SLOT - 1)) < 0.1)
  end)
end)
