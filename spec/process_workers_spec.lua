-- ProcRunMp with isolation = "process": worker processes started by exec,
-- reused across tasks, replaced when one dies, killed at a deadline.

local lc = require "luaconcurrent"
local helpers = require "helpers"

-- The worker's own pid and how many tasks this process has run. Loaded
-- with the real globals as its _ENV (a function written in a spec file
-- would carry busted's whole environment across).
local whoami = assert(load([[
  local key, args = ...
  local pid = tonumber(io.open("/proc/self/stat"):read("a"):match("^(%d+)"))
  ran = (ran or 0) + 1                       -- a global of the worker's state
  local how = args[#args]
  if how == "exit" then os.exit(3) end
  if how == "spin" then while true do end end
  if how == "print" then print("printed by " .. key) end
  return true, { pid = pid, ran = ran }
]], "=whoami", "t", _G))

local function pids(results)
  local set, n = {}, 0
  for _, r in ipairs(results) do
    if r.success and not set[r.answer.pid] then
      set[r.answer.pid] = true
      n = n + 1
    end
  end
  return set, n
end

describe("process workers", function()
  helpers.leak_check(before_each, after_each)

  it("reuse their processes across tasks, globals included", function()
    local tasks = {}
    for i = 1, 20 do tasks[i] = { i, "ok" } end
    local r = lc.ProcRunMp({ whoami }, tasks, { num_workers = 2, isolation = "process" }):run_all()
    assert.are.equal(20, helpers.count_success(r))
    local _, n = pids(r)
    assert.is_true(n >= 1 and n <= 2, n .. " worker processes for 2 workers")
    local most = 0
    for _, res in ipairs(r) do most = math.max(most, res.answer.ran) end
    assert.is_true(most >= 10, "no worker ran more than " .. most .. " tasks")
  end)

  it("replace a worker that died, and the run goes on", function()
    local tasks = {}
    for i = 1, 12 do tasks[i] = { i, i == 4 and "exit" or "ok" } end
    local r = lc.ProcRunMp({ whoami }, tasks, { num_workers = 1, isolation = "process" }):run_all()
    assert.is_false(r[4].success)
    assert.are.equal("RuntimeError", r[4].exception)
    assert.matches("the worker process ended without answering: exited with status 3", r[4].error, 1, true)
    assert.are.equal(11, helpers.count_success(r))
    -- one worker before the exit, a new one after it
    assert.are_not.equal(r[3].answer.pid, r[5].answer.pid)
    assert.are.equal(r[5].answer.pid, r[12].answer.pid)
    assert.are.equal(1, r[5].answer.ran)
  end)

  it("kill a worker at its task's deadline; the next task gets a new one", function()
    local r = lc.ProcRunMp({ whoami }, { { 1, "ok" }, { 2, "spin" }, { 3, "ok" } },
      { num_workers = 1, isolation = "process", timeout = 0.3 }):run_all()
    assert.is_true(r[1].success)
    assert.is_true(r[2].timeout)
    assert.are.equal("TimeoutError", r[2].exception)
    assert.is_true(r[3].success)
    assert.are_not.equal(r[1].answer.pid, r[3].answer.pid)
    -- its run, from the start its worker reported to the kill (not 0)
    assert.is_true(r[2].time_run >= 0.25, tostring(r[2].time_run))
    assert.is_true(math.abs(r[2].time_end - r[2].time_start - r[2].time_run) < 0.01)
  end)

  it("hand back what each task printed as its stdout", function()
    local r = lc.ProcRunMp({ whoami }, { { "a", "print" }, { "b", "ok" }, { "c", "print" } },
      { num_workers = 1, isolation = "process" }):run_all()
    assert.are.equal("printed by a\n", r[1].stdout)
    assert.are.equal("", r[2].stdout)
    assert.are.equal("printed by c\n", r[3].stdout)
  end)

  it("at a deadline kill only the late task's worker; its queued tasks run elsewhere", function()
    local tasks = {}
    for i = 1, 8 do tasks[i] = { i, i == 1 and "spin" or "ok" } end
    local r = lc.ProcRunMp({ whoami }, tasks,
      { num_workers = 2, isolation = "process", timeout = 0.5 }):run_all()
    assert.is_true(r[1].timeout)
    for i = 2, 8 do assert.is_true(r[i].success, i .. ": " .. tostring(r[i].error)) end
  end)

  it("hand many tasks to a worker at once, and keep their order and outputs", function()
    local tasks = {}
    for i = 1, 500 do tasks[i] = { i, i % 7 == 0 and "print" or "ok" } end
    local r = lc.ProcRunMp({ whoami }, tasks, { num_workers = 2, isolation = "process" }):run_all()
    assert.are.equal(500, helpers.count_success(r))
    for i = 1, 500 do
      assert.are.equal(i, r[i].key)
      assert.are.equal(i % 7 == 0 and ("printed by " .. i .. "\n") or "", r[i].stdout)
      assert.is_true(r[i].time_run >= 0 and r[i].time_end >= r[i].time_start)
    end
  end)

  it("fail a task whose answer carries code with a clear error; its worker goes on (issue 15)", function()
    -- Only data comes back from a worker process: a function or a table
    -- with a metatable in the answer is the task's error, found by the
    -- worker before it sends anything.
    local task = assert(load([[
      local key, args = ...
      local pid = tonumber(io.open("/proc/self/stat"):read("a"):match("^(%d+)"))
      if args[1] == "fn" then return true, { pid = pid, f = print } end
      if args[1] == "mt" then return true, { pid = pid, obj = setmetatable({}, {}) } end
      return true, { pid = pid }
    ]], "=answers", "t", _G))
    local r = lc.ProcRunMp({ task }, { { 1, "ok" }, { 2, "fn" }, { 3, "mt" }, { 4, "ok" } },
      { num_workers = 1, isolation = "process" }):run_all()
    assert.is_true(r[1].success, r[1].error)
    assert.is_false(r[2].success)
    assert.are.equal("RuntimeError", r[2].exception)
    assert.are.equal("cannot send the task's answer back: luaconcurrent: cannot send a function back "
      .. "(only data comes back from another process; code never comes back): field 'f'", r[2].error)
    assert.is_false(r[3].success)
    assert.are.equal("cannot send the task's answer back: luaconcurrent: cannot send a table with a "
      .. "metatable back (only data comes back from another process; code never comes back): field 'obj'",
      r[3].error)
    assert.is_true(r[4].success, r[4].error)
    assert.are.equal(r[1].answer.pid, r[4].answer.pid)
  end)

  it("give a task handed to a worker that died idle to a new worker (issue 8, item 22)", function()
    local core = require "luaconcurrent.core"
    local processes = require "luaconcurrent.exec.processes"
    local loop = core.new_loop()
    local got = {}
    local ex = processes.new({ pargs = { whoami }, timeout = 0, num_workers = 1, ntasks = 2,
      fn_bytes = core.marshal_string(whoami) }, loop, function(index, res) got[index] = res end)
    local function wait_for(index)
      local t0 = core.now()
      while not got[index] and core.now() - t0 < 10 do
        ex:run_ready()
        for _, rec in ipairs(loop:poll(0.1)) do ex:record(rec) end
      end
    end
    ex:start(1, 1, "ok")
    wait_for(1)
    assert.is_true(got[1].success, got[1].error)
    local pid = got[1].answer.pid
    -- The worker dies idle; the loop has not seen it end yet.
    os.execute("kill -9 " .. pid)
    helpers.wait_until(function()
      local f = io.open("/proc/" .. pid .. "/stat")
      local stat = f and f:read("a") or ""
      if f then f:close() end
      return stat == "" or stat:match("^%d+ %b() (%a)") == "Z"
    end, 5)
    ex:start(2, 2, "ok")
    wait_for(2)
    assert.is_true(got[2].success, got[2].error)
    assert.are_not.equal(pid, got[2].answer.pid)
    ex:close()
    while loop:running() > 0 do
      for _, rec in ipairs(loop:poll()) do ex:record(rec) end
    end
    loop:close()
  end)
end)
