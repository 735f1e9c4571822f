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
  end)

  it("hand back what each task printed as its stdout", function()
    local r = lc.ProcRunMp({ whoami }, { { "a", "print" }, { "b", "ok" }, { "c", "print" } },
      { num_workers = 1, isolation = "process" }):run_all()
    assert.are.equal("printed by a\n", r[1].stdout)
    assert.are.equal("", r[2].stdout)
    assert.are.equal("printed by c\n", r[3].stdout)
  end)
end)
