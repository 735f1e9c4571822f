-- Out of memory inside Lua: a test build of the executable whose allocator
-- fails from the n-th allocation on (LC_FAIL_ALLOC_AT=n, see src/main.c).
-- Wherever it fails — building a runner, spawning, collecting results,
-- marshalling to thread workers — the run must end with a clean Lua error
-- (exit status 1, "not enough memory"), never a crash, and leave no task
-- process behind.

local helpers = require "helpers"

local OOM = helpers.ROOT .. "/build/oom/luaconcurrent"

local SCRIPT = [[
local marker = ...
local lc = require "luaconcurrent"
local tasks = {}
for i = 1, 12 do tasks[i] = { i, "echo " .. i .. "; exec sleep " .. marker } end
-- the sleeps are killed at their deadline: a crash would leave them running
local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, tasks, { num_workers = 4, timeout = 0.05 })
run:run_all()
local f = function(k) lc.sleep(0.001) return true, { k = k } end
lc.ProcRunAsyncio({ f }, tasks, { num_workers = 4 }):run_all()
lc.ProcRunMp({ f }, tasks, { num_workers = 2 }):run_all()
print("finished")
]]

-- Thread workers: one pool after another, one worker each; the k-th
-- worker state fails from its (k+1)-th allocation on
-- (LC_FAIL_WORKER_ALLOC_AT=1,1), so the run sweeps every allocation point
-- of a worker: setting up, running a task, raising, and packing an answer
-- that cannot cross (task 1), where the error message is built.
local WORKER_SCRIPT = [[
local lc = require "luaconcurrent"
local runs = tonumber(arg[1])
local function f(k)
  if k == 1 then return true, { io.stdout } end   -- cannot cross back
  if k == 2 then error(string.rep("e", 100)) end
  return true, { k = k }
end
local oks = 0
for _ = 1, runs do
  local res = lc.ProcRunMp({ f }, { { 1 }, { 2 }, { 3 } }, { num_workers = 1 }):run_all()
  for k = 1, 3 do assert(res[k], "a task without a result") end
  if res[3].success then oks = oks + 1 end
end
print("finished", oks)
]]

-- The same sweep over batch jobs (issue 17, item 3): a run's first jobs
-- are single tasks, so WORKER_SCRIPT never reaches run_batch; this submits
-- a batch of three (wrapped args: the worker makes each { arg }) directly.
local BATCH_SCRIPT = [[
local core = require "luaconcurrent.core"
local runs = tonumber(arg[1])
local fn = core.marshal_string(function(key, args)
  if key == 2 then error(string.rep("e", 100)) end
  return true, { key = key, args = args }
end)
local oks = 0
for _ = 1, runs do
  local loop = core.new_loop()
  loop:pool_start(fn, 1, 0, package.path, package.cpath)
  local id = loop:submit_batch(true, { 0, 1, "a", 0, 2, "b", 0, 3, "c" }, 0, 3)
  local rec
  while not rec do
    for _, r in ipairs(loop:poll(10)) do rec = r end
  end
  assert(rec.id == id and rec.batch == 3, "not the batch's record")
  for k = 1, 3 do
    local st = rec.status and rec.status[k] or "ok"
    assert(st == "ok" or st == "error", "task " .. k .. ": " .. st)
    if st == "error" then assert(type(rec.error[k]) == "string", "an error without a message") end
  end
  if rec.status[1] == "ok" and rec.status[3] == "ok" then
    local answer = rec.vals[9]
    assert(answer.key == 3 and answer.args[1] == "c", "task 3's answer")
    oks = oks + 1
  end
  loop:close()
end
print("finished", oks)
]]

describe("out of memory inside Lua", function()
  it("is a clean error wherever it happens, with nothing left running", function()
    assert.is_not_nil(helpers.read_file(OOM), "build/oom/luaconcurrent is missing (make test builds it)")
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(SCRIPT)
    f:close()
    local marker = helpers.marker()
    -- how many allocations a whole run makes
    local out, err, code = helpers.sh("LC_FAIL_ALLOC_AT=0 " .. helpers.q(OOM) .. " "
      .. helpers.q(script) .. " " .. marker)
    assert.are.equal(0, code, err)
    assert.are.equal("finished\n", out)
    local failures, crashes, finished = 0, {}, 0
    -- every 61st allocation point up to well past the end of the run (about
    -- 6 500 allocations today)
    for n = 1, 9000, 61 do
      local _, e, c = helpers.sh("LC_FAIL_ALLOC_AT=" .. n .. " " .. helpers.q(OOM) .. " "
        .. helpers.q(script) .. " " .. marker)
      if c == 0 then
        finished = finished + 1
      elseif c == 1 and e:find("not enough memory", 1, true) then
        failures = failures + 1
      else
        crashes[#crashes + 1] = string.format("n=%d: exit %s: %s", n, tostring(c), e:sub(1, 200))
      end
    end
    os.remove(script)
    local left = helpers.wait_marker_gone(marker, 3)
    helpers.kill_marker(marker)
    assert.are.same({}, crashes)
    assert.is_true(failures > 20, "too few injected failures: " .. failures)
    assert.is_true(finished > 0, "the run never got past the injection range")
    assert.are.same({}, left)
  end)

  -- issue 8, item 4: a memory error while a worker built a task's error
  -- message ran outside any pcall, and the panic aborted the process.
  it("in a thread worker is the task's error, never an abort", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(WORKER_SCRIPT)
    f:close()
    local out, err, code = helpers.sh("LC_FAIL_WORKER_ALLOC_AT=1,1 " .. helpers.q(OOM) .. " "
      .. helpers.q(script) .. " 1500")
    os.remove(script)
    assert.are.equal(0, code, err)
    local oks = tonumber(out:match("^finished\t(%d+)\n$"))
    assert.is_not_nil(oks, out)
    -- the sweep ends past the worker's last allocation: the last runs pass
    assert.is_true(oks > 0 and oks < 1500, "runs that passed: " .. oks)
  end)

  -- issue 17, item 3: a batch in a worker whose state could not be made
  -- ran with a NULL lua_State (SIGSEGV), and its tables were made outside
  -- any pcall (a panic: abort).
  it("in a thread worker's batch is each task's error, never a crash", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(BATCH_SCRIPT)
    f:close()
    local out, err, code = helpers.sh("LC_FAIL_WORKER_ALLOC_AT=1,1 " .. helpers.q(OOM) .. " "
      .. helpers.q(script) .. " 1200")
    os.remove(script)
    assert.are.equal(0, code, err)
    local oks = tonumber(out:match("^finished\t(%d+)\n$"))
    assert.is_not_nil(oks, out)
    -- the sweep ends past the worker's last allocation: the last runs pass
    assert.is_true(oks > 0 and oks < 1200, "runs that passed: " .. oks)
  end)
end)
