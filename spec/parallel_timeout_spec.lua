-- --timeout N%: the median of the successful jobs (parallel/timeout.lua),
-- and the subprocess time limit that follows it while tasks run
-- (ProcRunAsyncio's time_limit).

local lc = require "luaconcurrent"
local helpers = require "helpers"
local timeout = require "luaconcurrent.parallel.timeout"

local EXE = helpers.ROOT .. "/build/luaconcurrent"

describe("--timeout N%'s limit", function()
  it("reads a percentage, and nothing else", function()
    assert.are.equal(300, timeout.percent("300%"))
    assert.are.equal(12.5, timeout.percent("12.5%"))
    assert.is_nil(timeout.percent("30"))
    assert.is_nil(timeout.percent("x%"))
  end)

  it("has no limit until a job succeeded, then N% of the lower median", function()
    local t = timeout.new(200)
    assert.is_nil(t:seconds())
    t:success(3)
    assert.are.equal(6, t:seconds())
    t:success(1)                      -- {1, 3}: the lower median is 1
    assert.are.equal(2, t:seconds())
    t:success(2)
    t:success(10)                     -- {1, 2, 3, 10}: 2 (numbers, not text)
    assert.are.equal(4, t:seconds())
  end)

  it("counts run times to the millisecond, as parallel", function()
    local t = timeout.new(100)
    t:success(0.1239)
    assert.are.equal(0.123, t:seconds())
  end)

  it("keeps 999 run times a level, however many jobs succeed", function()
    local t = timeout.new(100)
    for i = 1, 5000 do t:success(i % 7) end
    assert.are.equal(999, #t.levels[1])
    assert.are.equal(6, #t.levels[2])   -- one median per 999 successes
    assert.is_true(t:seconds() >= 0 and t:seconds() <= 6)
  end)
end)

describe("time_limit (subprocess tasks)", function()
  it("ends a running task once its limit, read again as the run goes, has passed", function()
    local limit
    local run = lc.ProcRunAsyncio({ "sleep" }, { { 1, "0.05" }, { 2, "30" } }, {
      num_workers = 2, kill_grace = 0.1,
      time_limit = function() return limit end,
      on_result = function(res) if res.success then limit = 0.2 end end,
    })
    local results = run:run_all()
    assert.is_true(results[1].success)
    assert.is_true(results[2].timeout)
    assert.are.equal("TimeoutError", results[2].exception)
    assert.matches("timed out after 0.2 s", results[2].error)
    assert.is_true(results[2].time_run < 20, "ran " .. results[2].time_run .. " s")
  end)

  it("is refused for anything but subprocess tasks", function()
    local ok, err = pcall(lc.ProcRunAsyncio, { function() end }, { 1 }, { time_limit = function() end })
    assert.is_false(ok)
    assert.matches("time_limit", tostring(err))
    ok, err = pcall(lc.ProcRunAsyncio, { "true" }, { 1 }, { time_limit = 5 })
    assert.is_false(ok)
    assert.matches("time_limit must be a function", tostring(err))
  end)
end)

describe("lcparallel --timeout N%", function()
  it("is refused with --pipe, naming it", function()
    local _, err, code = helpers.sh("echo a | " .. helpers.q(EXE) .. " --parallel --pipe --timeout 200% cat")
    assert.are.equal(255, code)
    assert.matches("^lcparallel: %-%-timeout 200%%", err)
  end)

  it("kills a job that runs longer than N% of the median, with -1 in the joblog", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir " .. helpers.q(dir))
    local out, err, code = helpers.sh("cd " .. helpers.q(dir) .. " && " .. helpers.q(EXE)
      .. " --parallel -j1 --timeout 300% --joblog log -k 'sleep {}; echo {}' ::: 0.1 0.1 0.1 30 0.1")
    local f = assert(io.open(dir .. "/log"))
    local log = f:read("a")
    f:close()
    os.execute("rm -rf " .. helpers.q(dir))
    assert.are.equal(1, code)
    assert.are.equal("0.1\n0.1\n0.1\n0.1\n", out)
    assert.matches("\n4\t[^\n]*\t%-1\t15\tsleep 30; echo 30\n", log)
    assert.are.equal("lcparallel: Warning: This job was killed because it timed out:\n"
      .. "lcparallel: Warning: sleep 30; echo 30\n", err)
  end)
end)
