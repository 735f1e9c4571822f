-- Many small function tasks: thread workers run them in batch jobs and
-- worker processes get them several to a frame (issue 10). Every kind of
-- outcome must come back right from inside a batch, in task order.

local lc = require "luaconcurrent"
local helpers = require "helpers"

-- key % 8 picks the outcome; the function carries no upvalues.
local mixed = assert(load([[
  local key = ...
  local how = key % 8
  if how == 1 then error("task " .. key .. " failed") end
  if how == 2 then return nil, "no luck " .. key end
  if how == 3 then return end
  if how == 4 then return false end
  if how == 5 then return true, coroutine.create(print) end   -- cannot cross
  if how == 6 then return true, { key = key, list = { 1, 2, key } } end
  return true, key * 2
]], "=mixed", "t", _G))

local function check(r, n)
  assert.are.equal(n, #r)
  for i = 1, n do
    local res, how = r[i], i % 8
    assert.are.equal(i, res.key)
    if how == 1 then
      assert.is_false(res.success)
      assert.are.equal("RuntimeError", res.exception)
      assert.truthy(res.error:find("task " .. i .. " failed", 1, true), res.error)
    elseif how == 2 then
      assert.is_false(res.success)
      assert.are.equal("no luck " .. i, res.error)
    elseif how == 3 then
      assert.is_true(res.success)
      assert.is_nil(res.answer)
    elseif how == 4 then
      assert.is_false(res.success)
    elseif how == 5 then
      assert.is_false(res.success)
      assert.truthy(res.error:find("coroutine", 1, true), res.error)
    elseif how == 6 then
      assert.is_true(res.success)
      assert.are.same({ key = i, list = { 1, 2, i } }, res.answer)
    else
      assert.is_true(res.success, res.error)
      assert.are.equal(i * 2, res.answer)
    end
    if how ~= 5 then assert.is_true(res.time_end >= res.time_start, i) end
  end
end

describe("batched function tasks", function()
  helpers.leak_check(before_each, after_each)

  for _, mode in ipairs({ { "thread workers", {} }, { "worker processes", { isolation = "process" } } }) do
    it("bring every outcome back from inside a batch (" .. mode[1] .. ")", function()
      local n = 3000
      local tasks = {}
      for i = 1, n do tasks[i] = { i } end
      local opts = { num_workers = 2 }
      for k, v in pairs(mode[2]) do opts[k] = v end
      check(lc.ProcRunMp({ mixed }, tasks, opts):run_all(), n)
    end)

    it("bring every sendable outcome back from a batch answered in one frame (" .. mode[1] .. ")",
      function()
        local tasks = {}
        for i = 1, 3000 do if i % 8 ~= 5 then tasks[#tasks + 1] = { i } end end
        local opts = { num_workers = 2 }
        for k, v in pairs(mode[2]) do opts[k] = v end
        local r = lc.ProcRunMp({ mixed }, tasks, opts):run_all()
        local full = {}
        for _, res in ipairs(r) do full[res.key] = res end
        for i = 1, 3000 do
          if i % 8 == 5 then full[i] = { key = i, success = false, error = "coroutine", time_start = 0, time_end = 0 } end
        end
        check(full, 3000)
      end)

    it("give each task of a batch its args, with and without fixed arguments (" .. mode[1] .. ")",
      function()
        local show = assert(load([[
          local key, args = ...
          local parts = {}
          for i = 1, 3 do parts[i] = tostring(args[i]) end
          return true, type(args) .. " " .. tostring(next(args) ~= nil) .. " " .. table.concat(parts, ",")
        ]], "=show", "t", _G))
        local tasks = {}
        for i = 1, 1000 do tasks[i] = { i, i % 3 ~= 0 and ("a" .. i) or nil } end
        local opts = { num_workers = 2 }
        for k, v in pairs(mode[2]) do opts[k] = v end
        local r = lc.ProcRunMp({ show }, tasks, opts):run_all()
        local f = lc.ProcRunMp({ show, "x", "y" }, tasks, opts):run_all()
        for i = 1, 1000 do
          local a = i % 3 ~= 0 and ("a" .. i) or nil
          assert.are.equal(a and ("table true a" .. i .. ",nil,nil") or "table false nil,nil,nil",
            r[i].answer)
          assert.are.equal("table true x,y," .. tostring(a), f[i].answer)
        end
      end)

    it("time out one task of a batch, and only that one (" .. mode[1] .. ")", function()
      local n = 2000
      local tasks = {}
      for i = 1, n do tasks[i] = { i, i == 1500 and "spin" or "ok" } end
      local f = assert(load([[
        local key, args = ...
        if args[1] == "spin" then while true do end end
        return true, key
      ]], "=spin", "t", _G))
      local opts = { num_workers = 2, timeout = 0.5 }
      for k, v in pairs(mode[2]) do opts[k] = v end
      local r = lc.ProcRunMp({ f }, tasks, opts):run_all()
      for i = 1, n do
        if i == 1500 then
          assert.is_true(r[i].timeout)
        else
          assert.is_true(r[i].success, i .. ": " .. tostring(r[i].error))
          assert.are.equal(i, r[i].answer)
        end
      end
    end)
  end

  it("read answer frames whole however the bytes are cut (frames.reader)", function()
    local frame_reader = require("luaconcurrent.frames").reader
    math.randomseed(10)
    for _ = 1, 200 do
      local frames, stream = {}, {}
      for i = 1, math.random(1, 12) do
        local len = ({ 0, 1, 3, 4, 5, 100, 70000 })[math.random(1, 7)]
        frames[i] = string.rep(string.char(64 + i), len)
        stream[i] = string.pack("<s4", frames[i])
      end
      local bytes = table.concat(stream)
      local read, out, at = frame_reader(), {}, 1
      while at <= #bytes do
        local n = math.random(1, math.random(1, 3) == 1 and 7 or 90000)
        read(bytes:sub(at, at + n - 1), out)
        at = at + n
      end
      assert.are.equal(#frames, #out)
      for i = 1, #frames do assert.is_true(frames[i] == out[i], "frame " .. i) end
    end
  end)
end)
