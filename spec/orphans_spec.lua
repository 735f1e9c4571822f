-- Run control: however a run or its host ends, nothing it started is left
-- running, and signals do what README says. Hosts run
-- spec/fixtures/runctl_host.lua in the background (the executable, or
-- lua5.4 with the module); the spec waits for their tasks to exist (the
-- sleeps carry a marker in /proc), ends the host, and checks its exit
-- status, its output, and that no task process is left.
--
--   issue 8 item 11  a worker process's task reads /dev/null, not frames
--   issue 8 item 12  worker processes of the executable collect garbage
--   issue 8 item 17  pidfds refused (EPERM, or no waitid(P_PIDFD)): polling

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
end)
