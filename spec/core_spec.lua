-- The engine's record layer driven directly through luaconcurrent.core,
-- without a runner: loop timers, the fields records carry, and the C-side
-- defects of issue 8 (items 3, 4, 10, 13), each with the spec that failed
-- before its fix.

local core = require "luaconcurrent.core"
local lc = require "luaconcurrent"
local helpers = require "helpers"

local F = dofile(helpers.FIXTURES .. "/fn_tasks.lua")

--- Poll until `want` records arrived (or `bound` seconds passed).
local function collect(loop, want, bound)
  local got, limit = {}, core.now() + (bound or 5)
  while #got < want and core.now() < limit do
    for _, r in ipairs(loop:poll(limit - core.now())) do got[#got + 1] = r end
  end
  return got
end

describe("core", function()
  helpers.leak_check(before_each, after_each)

  describe("loop timers", function()
    it("an expired timer comes through poll as {id =, timer = true}", function()
      local loop = core.new_loop()
      local t0 = core.now()
      local id = loop:timer(t0 + 0.05)
      assert.is_true(math.type(id) == "integer")
      assert.are.equal(0, loop:running())          -- timers are not tasks
      local recs = loop:poll()                     -- nil: waits for the timer
      assert.are.same({ { id = id, timer = true } }, recs)
      assert.is_true(core.now() - t0 >= 0.05 - 1e-3)
      assert.are.same({}, loop:poll(0))
      loop:close()
    end)

    it("gives expired timers in expiry order, not arming order", function()
      local loop = core.new_loop()
      local t0 = core.now()
      local c = loop:timer(t0 + 0.06)
      local a = loop:timer(t0 + 0.02)
      local b = loop:timer(t0 + 0.04)
      local past = loop:timer(t0 - 1)
      core.sleep(0.1)                              -- all four expire together
      local ids = {}
      for _, r in ipairs(collect(loop, 4)) do
        assert.is_true(r.timer)
        ids[#ids + 1] = r.id
      end
      assert.are.same({ past, a, b, c }, ids)
      loop:close()
    end)

    it("cancel_timer: true while armed, then false; a cancelled timer gives no record", function()
      local loop = core.new_loop()
      local id = loop:timer(core.now() + 0.05)
      local other = loop:timer(core.now() + 0.1)
      assert.is_true(loop:cancel_timer(id))
      assert.is_false(loop:cancel_timer(id))
      assert.is_false(loop:cancel_timer(123456))
      assert.are.same({ { id = other, timer = true } }, loop:poll())
      assert.is_false(loop:cancel_timer(other))    -- expired: no longer armed
      assert.are.same({}, loop:poll(0.1))
      loop:close()
    end)

    it("shares one id space with processes", function()
      local loop = core.new_loop()
      local t = loop:timer(core.now() + 10)
      local p = assert(loop:spawn({ "/bin/true" }, nil, nil, nil, 0, 0.1))
      local t2 = loop:timer(core.now() + 10)
      assert.is_true(t < p and p < t2)
      local recs = collect(loop, 1)
      assert.are.equal(p, recs[1].id)
      assert.is_nil(recs[1].timer)
      loop:close()                                 -- frees the armed timers
    end)

    it("10 000 armed timers at once: in order, cancels included", function()
      local loop = core.new_loop()
      local t0 = core.now()
      local when, ids = {}, {}
      for i = 1, 10000 do
        local w = t0 + 0.05 + (i * 7919 % 10000) / 100000   -- spread over 0.1 s
        local id = loop:timer(w)
        when[id] = w
        ids[i] = id
      end
      for i = 1, 10000, 2 do assert.is_true(loop:cancel_timer(ids[i])) end
      local recs = collect(loop, 5000)
      assert.are.equal(5000, #recs)
      for i = 2, #recs do
        assert.is_true(when[recs[i - 1].id] <= when[recs[i].id], "out of order at " .. i)
      end
      loop:close()
    end)

    it("is freed with its loop: close, and garbage collection", function()
      local loop = core.new_loop()
      for i = 1, 100 do loop:timer(core.now() + i) end
      assert.are.same({}, loop:close())
      assert.has_error(function() loop:timer(core.now()) end, "luaconcurrent: loop is closed")
      loop = core.new_loop()
      for i = 1, 100 do loop:timer(core.now() + i) end
      loop = nil                                   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("records carry what they need", function()
    it("a process record has limit = its timeout, none without one", function()
      local loop = core.new_loop()
      local a = loop:spawn({ "/bin/true" }, nil, nil, nil, 5, 0.1)
      local b = loop:spawn({ "/bin/true" }, nil, nil, nil, 0, 0.1)
      local by = {}
      for _, r in ipairs(collect(loop, 2)) do by[r.id] = r end
      assert.are.equal(5, by[a].limit)
      assert.is_false(by[a].timeout)
      assert.is_nil(by[b].limit)
      loop:close()
    end)

    it("a timed-out process record says timeout = true with its limit", function()
      local loop = core.new_loop()
      local id = loop:spawn({ "/bin/sleep", "5" }, nil, nil, nil, 0.1, 0.1)
      local r = collect(loop, 1)[1]
      assert.are.equal(id, r.id)
      assert.is_true(r.timeout)
      assert.are.equal(0.1, r.limit)
      loop:close()
    end)

    it("a function-job record has limit = the pool's timeout", function()
      for _, timeout in ipairs({ 2, 0 }) do
        local loop = core.new_loop()
        loop:pool_start(core.marshal_string(F.work), 1, timeout, package.path, package.cpath)
        local id = loop:submit("k", { 0 })
        local r = collect(loop, 1)[1]
        assert.are.equal(id, r.id)
        assert.is_true(r.fn)
        assert.are.equal("ok", r.status, r.error)
        assert.are.equal(timeout > 0 and timeout or nil, r.limit)
        loop:close()
      end
    end)
  end)

  -- issue 8, item 3
  it("refuses an argv whose __len is absurd before sizing anything", function()
    local loop = core.new_loop()
    local argv = setmetatable({ "/bin/true" }, { __len = function() return (1 << 61) - 1 end })
    local ok, err = pcall(loop.spawn, loop, argv, nil, nil, nil, 0, 0.1)
    assert.is_false(ok)
    assert.matches("argv has too many entries", err)
    loop:close()
  end)

  -- issue 8, item 4 (l_worker_stdout): with exactly one fd free, the dup
  -- succeeds and memfd_create fails; the dup must not stay open.
  it("worker_stdout leaves no fd open when it fails", function()
    local out, err = helpers.run_lua([[
      local core = require "luaconcurrent.core"
      local files = {}
      while true do
        local f = io.open("/dev/null")
        if not f then break end
        files[#files + 1] = f
      end
      files[#files]:close()
      files[#files] = nil
      local ok, msg = pcall(core.worker_stdout)
      local f = io.open("/dev/null")
      print(ok and "succeeded" or (f and "free" or "leaked"), msg)
    ]], "ulimit -n 32;")
    assert.matches("^free\tluaconcurrent: worker cannot set up its stdout", out, nil, false)
    assert.are.equal("", err)
  end)

  -- issue 8, item 13 (C side): a stream proc takes what its pipe holds in
  -- one wake-up, not 64 KiB at a time.
  it("reads more than 64 KiB per wake-up from a stream proc when more is there", function()
    local loop = core.new_loop()
    local marker = "4000" .. helpers.marker():gsub("%D", "")
    local id = loop:spawn({ "/bin/sh", "-c", "head -c " .. marker .. " /dev/zero; sleep 5" },
      nil, nil, nil, 0, 0.1, true)
    -- Bytes the writer has put into the pipe so far (its write count).
    local function written()
      local most = 0                 -- the sh and head both carry the marker
      for _, pid in ipairs(helpers.find_marker("head -c " .. marker)) do
        local io_stats = helpers.read_file("/proc/" .. pid .. "/io") or ""
        most = math.max(most, tonumber(io_stats:match("wchar: (%d+)")) or 0)
      end
      return most
    end
    assert.is_true(helpers.wait_until(function() return written() >= 65536 end, 10))
    local first = 0
    while first == 0 do
      for _, r in ipairs(loop:poll(1)) do if r.data then first = first + #r.data end end
    end
    -- The first read grew the pipe; wait until the writer has filled much of it.
    assert.is_true(helpers.wait_until(function() return written() >= first + 512 * 1024 end, 10))
    local second = 0
    for _, r in ipairs(loop:poll(1)) do if r.data then second = second + #r.data end end
    assert.is_true(second > 256 * 1024, "one wake-up took only " .. second .. " bytes")
    loop:kill(id)
    loop:close()
  end)

  describe("loop:terminate", function()
    it("sends TERM to the group and KILL after its kill_grace", function()
      local loop = core.new_loop()
      local m = helpers.marker()
      -- one traps TERM and says so; the other ignores it
      local traps = assert(loop:spawn({ "sh", "-c", 'trap "echo term; exit 3" TERM; sleep "$0" & wait', m },
        nil, nil, nil, 0, 5))
      local deaf = assert(loop:spawn({ "sh", "-c", 'trap "" TERM; echo up; exec sleep "$0"', m }, nil, nil, nil, 0, 0.3))
      assert.is_true(helpers.wait_until(function() return #helpers.find_marker("sleep " .. m) == 2 end, 5))
      assert.is_true(loop:terminate(traps))
      assert.is_true(loop:terminate(deaf))
      local recs = collect(loop, 2, 10)
      assert.are.equal(2, #recs)
      for _, r in ipairs(recs) do
        if r.id == traps then
          assert.are.equal(3, r.returncode)
          assert.are.equal("term\n", r.stdout)
        else
          assert.are.equal("SIGKILL", r.signal_name)
        end
        assert.is_true(r.interrupted)
        assert.is_falsy(r.timeout)
      end
      assert.are.same({}, helpers.wait_marker_gone(m, 3))
      assert.is_false(loop:terminate(traps))        -- gone
      loop:close()
    end)
  end)

  -- issue 8, item 10: lc.sleep(1e300) in a thread worker overflowed time_t.
  describe("lc.sleep(1e300) in a thread worker", function()
    it("times out promptly at the task's timeout", function()
      local t0 = helpers.mono()
      local result = lc.ProcRunMp({ F.work }, { { 1, 1e300 } }, { timeout = 0.2 }):run_all()
      assert.is_true(result[1].timeout)
      assert.is_true(helpers.mono() - t0 < 2, "took " .. (helpers.mono() - t0))
    end)

    it("does not keep a stopped run from ending (no timeout)", function()
      -- in a child: before the fix the stop blocked forever
      local code = [[
        local lc = require "luaconcurrent"
        local F = dofile(]] .. string.format("%q", helpers.FIXTURES .. "/fn_tasks.lua") .. [[)
        local ok, e = pcall(function()
          lc.ProcRunMp({ F.work }, { { 1, 1e300 }, { 2, 0 } }, { num_workers = 2,
            on_result = function(res) if res.key == 2 then error("stop") end end }):run_all()
        end)
        print(ok, e)
      ]]
      local t0 = helpers.mono()
      local out, err, status = helpers.sh(helpers.lua_env() .. " exec timeout 20 lua5.4 -e "
        .. helpers.q(code))
      assert.are.equal(0, status, err)
      assert.is_true(helpers.mono() - t0 < 10, "took " .. (helpers.mono() - t0))
      assert.matches("^false\t.*stop", out)
    end)
  end)
end)
