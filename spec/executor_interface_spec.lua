-- The executor interface (lua/luaconcurrent/executors.lua): capacity (how
-- many tasks an executor may hold) apart from concurrency (how many it
-- runs), running(), and hold at a halt, for every kind of executor.

local lc = require "luaconcurrent"
local helpers = require "helpers"
local executors = require "luaconcurrent.executors"
local ProcResult = require "luaconcurrent.result"
local core = require "luaconcurrent.core"

local EXE = helpers.ROOT .. "/build/luaconcurrent"

local tmp, write = helpers.tmp_path, helpers.write_file

-- An executor the spec controls: each task ends on a loop timer 10 ms
-- after its start; grow(ended) says the capacity after `ended` tasks
-- ended. It notes, at each start, how many tasks it held and its capacity.
local function fake_executor(grow)
  local fake = { starts = {} }
  function fake.new(_, loop, finish)
    local ex = { capacity = grow(0), concurrency = grow(0), held = 0, ended = 0, timers = {} }
    function ex:start(index, key, arg)
      self.held = self.held + 1
      fake.starts[#fake.starts + 1] = { held = self.held, capacity = self.capacity }
      self.timers[loop:timer(core.now() + 0.01)] = { index, key, arg }
    end
    function ex:record(rec)
      local t = self.timers[rec.id]
      if not t then return false end
      self.timers[rec.id] = nil
      self.held, self.ended = self.held - 1, self.ended + 1
      self.capacity = grow(self.ended)
      self.concurrency = self.capacity
      local res = ProcResult.new(t[2], t[3])
      finish(t[1], ProcResult.returned(res, 1, true))
      return true
    end
    function ex:running() return self.held end
    function ex:hold() end          -- it holds nothing ahead
    function ex:cancel() end
    function ex:close() end
    function ex:stop()
      for id, t in pairs(self.timers) do
        self.timers[id] = nil
        finish(t[1], ProcResult.not_started(t[2], t[3], "running"))
      end
    end
    return ex
  end
  return fake
end

-- Run with the subprocess executor replaced by fake.
local function with_executor(fake, fn)
  local saved = executors.modules.exec
  executors.modules.exec = fake
  local ok, err = pcall(fn)
  executors.modules.exec = saved
  assert(ok, err)
end

describe("the executor interface", function()
  helpers.leak_check(before_each, after_each)

  -- Every executor, as a run makes it: kind (the run's), pargs, options.
  local KINDS = {
    { "exec", { "/bin/true" }, {} },
    { "coro", { function() return true end }, {} },
    { "pool", { function() return true end }, {}, lc.ProcRunMp },
    { "isolated", { function() return true end }, { isolation = "process" }, lc.ProcRunMp },
    { "remote", { "/bin/true" }, { hosts = { { host = ":", slots = 2, luaconcurrent = false } } } },
  }
  for _, k in ipairs(KINDS) do
    it("has capacity, concurrency, running() and hold() in every executor (" .. k[1] .. ")", function()
      local real = executors.modules[k[1]]
      local seen = {}
      local spy = setmetatable({ new = function(...)
        local ex = real.new(...)
        seen[#seen + 1] = { ex = ex, capacity = ex.capacity, concurrency = ex.concurrency }
        return ex
      end }, { __index = real })
      executors.modules[k[1]] = spy
      local ok, err = pcall(function()
        local opts = { num_workers = 2 }
        for name, v in pairs(k[3]) do opts[name] = v end
        local run = (k[4] or lc.ProcRunAsyncio)(k[2], { { 1 }, { 2 }, { 3 } }, opts)
        run:run_all()
        assert.is_true(run.ok)
      end)
      executors.modules[k[1]] = real
      assert(ok, err)
      assert.are.equal(1, #seen)
      local s = seen[1]
      assert.are.equal("number", type(s.capacity))
      assert.are.equal("number", type(s.concurrency))
      assert.is_true(s.capacity >= s.concurrency, s.capacity .. " < " .. s.concurrency)
      assert.are.equal("function", type(s.ex.hold))
      assert.are.equal("function", type(s.ex.running))
      assert.are.equal(0, s.ex:running())       -- the run is over
      if k[1] ~= "remote" then assert.are.equal(2, s.concurrency) end
    end)
  end

  it("honours a capacity that grows, then shrinks, during a run", function()
    -- 1 until a task ended, then 4, then 2 once 6 ended.
    local fake = fake_executor(function(ended) return ended == 0 and 1 or ended < 6 and 4 or 2 end)
    local list = {}
    for i = 1, 16 do list[i] = { i } end
    with_executor(fake, function()
      local r = lc.ProcRunAsyncio({ "/bin/true" }, list, { num_workers = 1 }):run_all()
      assert.are.equal(16, #r)
      for i = 1, 16 do assert.is_true(r[i].success) end
    end)
    local most = 0
    for i, s in ipairs(fake.starts) do
      assert.is_true(s.held <= s.capacity, ("start %d: %d held, capacity %d"):format(i, s.held, s.capacity))
      if s.held > most then most = s.held end
    end
    assert.are.equal(16, #fake.starts)
    assert.are.equal(4, most)          -- the grown capacity was used
    assert.are.equal(1, fake.starts[1].capacity)
  end)

  -- A run of function tasks under script(1), so stderr is a terminal and
  -- the progress bar is drawn: every "N running" it drew.
  local function running_counts(opts)
    local script = tmp() .. ".lua"
    write(script, ([[
      local lc = require "luaconcurrent"
      local list = {}
      for i = 1, 40 do list[i] = { i } end
      local run = lc.ProcRunMp({ function(k) require("luaconcurrent").sleep(0.03) return true, k end },
        list, %s)
      run:run_all()
      assert(run.ok)
    ]]):format(opts))
    local out, err, code = helpers.sh("script -qec " .. helpers.q(helpers.q(EXE) .. " " .. helpers.q(script)) .. " /dev/null")
    os.remove(script)
    assert.are.equal(0, code, out .. err)
    local counts = {}
    for n in out:gmatch("(%d+) running") do counts[#counts + 1] = tonumber(n) end
    return counts, out
  end

  for _, mode in ipairs({ { "thread workers", "{ num_workers = 2, progress = true }" },
                          { "worker processes", '{ num_workers = 2, progress = true, isolation = "process" }' } }) do
    it("shows on the progress bar only the tasks running, not those " .. mode[1] .. " hold ahead", function()
      if helpers.sh("command -v script") == "" then
        pending("script(1) is not installed")
        return
      end
      local counts, out = running_counts(mode[2])
      assert.is_true(#counts >= 3, out)
      local most = 0
      for _, n in ipairs(counts) do most = math.max(most, n) end
      -- Two workers run at most two tasks; before, the bar counted every
      -- task handed over (up to 40 here).
      assert.is_true(most <= 2, "the bar showed " .. most .. " running: " .. out)
      assert.are.equal(2, most, out)
    end)
  end

  -- Each task appends its key to a file as it starts; task 1 fails at
  -- once and halts the run. A task whose result says it never started
  -- must not be in the file.
  local started_fn = [[
    return function(key, args)
      local f = assert(io.open(args[1], "a"))
      f:write(key, "\n")
      f:close()
      if key == 1 then return false end
      require("luaconcurrent").sleep(0.005)
      return true, key
    end
  ]]
  for _, kind in ipairs({ "subprocess", "coroutines", "thread workers", "worker processes" }) do
    it('halt = "soon" never starts a task ' .. kind .. " hold ahead of its start", function()
      local path = tmp()
      local list = {}
      for i = 1, 120 do list[i] = { i, kind == "subprocess" and { i, path } or path } end
      local opts = { num_workers = 2, halt = "soon,fail=1" }
      local run
      if kind == "subprocess" then
        run = lc.ProcRunAsyncio({ "sh", "-c", 'echo "$0" >> "$1"; [ "$0" = 1 ] && exit 1; sleep 0.005' },
          list, opts)
      else
        local fn = load(started_fn)()
        if kind == "worker processes" then opts.isolation = "process" end
        run = (kind == "coroutines" and lc.ProcRunAsyncio or lc.ProcRunMp)({ fn }, list, opts)
      end
      local r = run:run_all()
      local started = {}
      for line in io.lines(path) do started[tonumber(line)] = true end
      os.remove(path)
      assert.are.equal("soon,fail=1", run.halted)
      assert.are.equal(120, #r)
      local held = 0
      for i, res in ipairs(r) do
        if (res.error or ""):find("not started", 1, true) then
          held = held + 1
          assert.is_nil(started[i], ("task %d started, yet its result says: %s"):format(i, res.error))
        else
          assert.is_true(started[i], ("task %d has a result, %s, but never started"):format(i, tostring(res.error)))
        end
      end
      assert.is_true(held >= 60, held .. " tasks did not start")
    end)
  end
end)
