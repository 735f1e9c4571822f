-- The engine's record layer, driven directly: core.new_loop(), loop:spawn,
-- loop:poll, loop:kill, loop:write, loop:close_input, loop:running and
-- loop:close, with no runner (no scheduler, no ProcResult) in between. What
-- the runners build on: one record per spawned process, with its id, pid,
-- exit status or signal, flags, times and captured output; stream
-- processes' stdout as {id =, data =} records while they run.

local core = require "luaconcurrent.core"
local helpers = require "helpers"

-- Poll until the record of every id in `ids` has arrived; returns the
-- records by id, the order they came in, and the stream data by id. The
-- bound only turns a hang into a failure.
local function collect(loop, ids, bound)
  local want, left = {}, 0
  for _, id in ipairs(ids) do want[id] = true; left = left + 1 end
  local recs, order, data = {}, {}, {}
  local deadline = helpers.mono() + (bound or 10)
  while left > 0 do
    assert(helpers.mono() < deadline, "records did not arrive in time")
    for _, rec in ipairs(loop:poll(1)) do
      if rec.data ~= nil and rec.returncode == nil then
        data[rec.id] = (data[rec.id] or "") .. rec.data
      else
        assert.is_nil(recs[rec.id], "two records for id " .. tostring(rec.id))
        assert.is_true(want[rec.id] ~= nil, "record for an id never spawned: " .. tostring(rec.id))
        recs[rec.id] = rec
        order[#order + 1] = rec.id
        left = left - 1
      end
    end
  end
  return recs, order, data
end

local function spawn(loop, argv, ...)
  local id, msg, errname = loop:spawn(argv, ...)
  assert(id, "spawn failed: " .. tostring(msg) .. " " .. tostring(errname))
  return id
end

describe("engine records (core.new_loop, no runner)", function()
  -- Leak check around each test: the loop's own fds are opened after the
  -- snapshot and closed before the check.
  local loop, snap
  before_each(function()
    snap = helpers.snapshot()
    loop = core.new_loop()
  end)
  after_each(function()
    if loop then loop:close() end
    helpers.assert_no_leaks(snap)
  end)

  it("gives one record per process: id, pid, status, output, times", function()
    local t0 = helpers.now()
    local id = spawn(loop, { "/bin/sh", "-c", 'printf "out:%s" $$; printf err >&2' })
    assert.are.equal("integer", math.type(id))
    assert.are.equal(1, loop:running())
    local recs = collect(loop, { id })
    local t1 = helpers.now()
    local rec = recs[id]
    assert.are.equal(id, rec.id)
    assert.are.equal("integer", math.type(rec.pid))
    assert.are.equal("out:" .. rec.pid, rec.stdout)   -- the pid is the task's own
    assert.are.equal("err", rec.stderr)
    assert.are.equal(0, rec.returncode)
    assert.is_nil(rec.signal)
    assert.is_false(rec.timeout)
    assert.is_false(rec.interrupted)
    assert.is_false(rec.incomplete)
    assert.is_nil(rec.input_error)
    -- epoch times inside the spec's own bracket of the run
    assert.is_true(rec.time_start >= t0 - 0.01 and rec.time_start <= t1 + 0.01)
    assert.is_true(rec.time_end >= rec.time_start and rec.time_end <= t1 + 0.01)
    assert.is_true(rec.time_run >= 0 and rec.time_run <= t1 - t0 + 0.01)
    assert.are.equal(0, loop:running())
  end)

  it("gives each spawn a new id", function()
    local a = spawn(loop, { "/bin/true" })
    local b = spawn(loop, { "/bin/true" })
    assert.are_not.equal(a, b)
    local recs = collect(loop, { a, b })
    assert.are.equal(0, recs[a].returncode)
    assert.are.equal(0, recs[b].returncode)
    assert.are_not.equal(recs[a].pid, recs[b].pid)
  end)

  it("reports an exit status and a death by signal", function()
    local exit3 = spawn(loop, { "/bin/sh", "-c", "exit 3" })
    local kill9 = spawn(loop, { "/bin/sh", "-c", "kill -9 $$" })
    local recs = collect(loop, { exit3, kill9 })
    assert.are.equal(3, recs[exit3].returncode)
    assert.is_nil(recs[exit3].signal)
    assert.are.equal(-9, recs[kill9].returncode)
    assert.are.equal(9, recs[kill9].signal)
    assert.are.equal("SIGKILL", recs[kill9].signal_name)
    assert.is_false(recs[kill9].interrupted)
  end)

  it("hands records over in completion order", function()
    -- cat waits for its input to end; /bin/true, spawned after it, ends first
    local cat = spawn(loop, { "/bin/cat" }, nil, nil, nil, 0, 0.1, true)
    local tru = spawn(loop, { "/bin/true" })
    local first = collect(loop, { tru })
    assert.are.equal(0, first[tru].returncode)
    assert.are.equal(1, loop:running())
    loop:close_input(cat)
    local second, order = collect(loop, { cat })
    assert.are.same({ cat }, order)
    assert.are.equal(0, second[cat].returncode)
  end)

  it("fails a spawn with a message and the errno's name", function()
    local id, msg, errname = loop:spawn({ "/nonexistent/program" })
    assert.is_nil(id)
    assert.are.equal("ENOENT", errname)
    assert.truthy(msg:find("/nonexistent/program", 1, true), msg)
    assert.are.equal(0, loop:running())
  end)

  it("writes input given at spawn to the process's stdin", function()
    local input = string.rep("abc\n", 100000)            -- more than a pipe holds
    local id = spawn(loop, { "/bin/cat" }, nil, nil, input)
    local rec = collect(loop, { id })[id]
    assert.are.equal(0, rec.returncode)
    assert.are.equal(#input, #rec.stdout)
    assert.is_true(rec.stdout == input)
  end)

  it("passes an environment block and a working directory", function()
    local env = core.envblock({ LC_RECORDS_SPEC = "yes", HOME = false })
    local id = spawn(loop, { "/bin/sh", "-c", 'echo "$LC_RECORDS_SPEC ${HOME-unset}"; pwd' }, env, "/")
    local rec = collect(loop, { id })[id]
    assert.are.equal("yes unset\n/\n", rec.stdout)
  end)

  it("kill(id) ends the whole process group; the record says interrupted", function()
    local m = helpers.marker()
    local id = spawn(loop, { "/bin/sh", "-c", "sleep " .. m .. " & sleep " .. m .. "; wait" })
    -- both sleeps exist before the kill
    assert.is_true(helpers.wait_until(function() return #helpers.find_marker(m) >= 2 end, 5))
    assert.is_true(loop:kill(id))
    local rec = collect(loop, { id })[id]
    assert.is_true(rec.interrupted)
    assert.is_false(rec.timeout)
    assert.are.equal(9, rec.signal)
    assert.are.equal(-9, rec.returncode)
    assert.are.same({}, helpers.wait_marker_gone(m, 2))
    -- no such task any more, and never was
    assert.is_false(loop:kill(id))
    assert.is_false(loop:kill(id + 1000))
  end)

  it("times a process out: SIGTERM to its group, record flagged timeout", function()
    local m = helpers.marker()
    local id = spawn(loop, { "/bin/sleep", m }, nil, nil, nil, 0.2, 5)
    local rec = collect(loop, { id })[id]
    assert.is_true(rec.timeout)
    assert.is_false(rec.interrupted)
    assert.are.equal(15, rec.signal)                 -- sleep dies of the SIGTERM
    assert.is_true(rec.time_run >= 0.2, "time_run " .. rec.time_run)
    assert.are.same({}, helpers.wait_marker_gone(m, 2))
  end)

  describe("stream processes", function()
    it("hand stdout over as {id, data} records while they run, stdin from write", function()
      local id = spawn(loop, { "/bin/cat" }, nil, nil, nil, 0, 0.1, true)
      assert.is_true(loop:write(id, "hello\n"))
      -- cat echoes it back before its input ends
      local got = ""
      local deadline = helpers.mono() + 10
      while got ~= "hello\n" do
        assert(helpers.mono() < deadline, "no data record; got " .. ("%q"):format(got))
        for _, rec in ipairs(loop:poll(1)) do
          assert.are.equal(id, rec.id)
          assert.is_nil(rec.returncode, "cat ended before its input did")
          got = got .. rec.data
        end
      end
      assert.is_true(loop:write(id, "world\n"))
      loop:close_input(id)
      local recs, _, data = collect(loop, { id })
      assert.are.equal(0, recs[id].returncode)
      -- whatever had not come as data is in the final record
      assert.are.equal("world\n", (data[id] or "") .. recs[id].stdout)
    end)

    it("write refuses a process that is not a stream, or not running", function()
      local plain = spawn(loop, { "/bin/cat" }, nil, nil, "x")
      local ok, msg = loop:write(plain, "y")
      assert.is_nil(ok)
      assert.truthy(msg:find("cannot write to task " .. plain, 1, true), msg)
      collect(loop, { plain })
      ok, msg = loop:write(plain, "y")
      assert.is_nil(ok)
      assert.truthy(msg:find("cannot write to task " .. plain, 1, true), msg)
      loop:close_input(plain)                      -- unknown id: no error
    end)
  end)

  describe("close", function()
    it("kills and reaps what is left and returns its records", function()
      local m = helpers.marker()
      local a = spawn(loop, { "/bin/sh", "-c", "echo a-started; exec sleep " .. m })
      local b = spawn(loop, { "/bin/sleep", m })
      -- Both run, and a's shell has echoed and exec'd sleep (its command
      -- line no longer holds the echo).
      assert.is_true(helpers.wait_until(function()
        return #helpers.find_marker(m) >= 2 and #helpers.find_marker("echo a-started; exec") == 0
      end, 5))
      local recs = loop:close()
      loop = nil
      assert.are.equal(2, #recs)
      local by = {}
      for _, rec in ipairs(recs) do by[rec.id] = rec end
      for _, id in ipairs({ a, b }) do
        assert.is_true(by[id].interrupted)
        assert.are.equal(9, by[id].signal)
      end
      assert.are.equal("a-started\n", by[a].stdout)  -- output before the kill is kept
      assert.are.same({}, helpers.wait_marker_gone(m, 2))
    end)

    it("leaves the loop closed: a second close returns nothing, other calls raise", function()
      local l = loop
      loop = nil
      assert.are.same({}, l:close())
      assert.are.same({}, l:close())
      local ok, err = pcall(l.spawn, l, { "/bin/true" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("luaconcurrent: loop is closed", 1, true), err)
      ok, err = pcall(l.poll, l, 0)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("loop is closed", 1, true), err)
    end)
  end)

  it("poll with a limit and nothing running returns an empty list", function()
    assert.are.same({}, loop:poll(0))
    assert.are.same({}, loop:poll(0.01))
  end)
end)
