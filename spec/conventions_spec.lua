-- What a Lua user expects of a library: a clear refusal under another Lua,
-- _VERSION, argument errors at the caller's line, lc.map and lc.run, task
-- files whose errors point at the line; and the timeline in both forms.

local lc = require "luaconcurrent"
local helpers = require "helpers"

local ROOT = helpers.ROOT
local EXE = ROOT .. "/build/luaconcurrent"

local tmp = helpers.tmp_path

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("Lua conventions", function()
  it("refuses another Lua version with one line, before the C core loads", function()
    local out, err, code = helpers.sh("command -v lua5.1")
    assert.are.equal(0, code, "lua5.1 is not installed (luarocks brings it): " .. err .. out)
    local _, err2, code2 = helpers.sh(helpers.lua_env()
      .. " lua5.1 -e 'require \"luaconcurrent\"'")
    assert.are_not.equal(0, code2)
    local first = err2:match("^[^\n]*")
    assert.are.equal("lua5.1: luaconcurrent: needs Lua 5.4, this is Lua 5.1: run lua5.4 (for busted: busted --lua=lua5.4)",
      first)
    assert.is_nil(err2:find("undefined symbol", 1, true), err2)
  end)

  it("has _VERSION", function()
    assert.are.equal("luaconcurrent " .. lc.VERSION, lc._VERSION)
  end)

  it("reports a bad argument at the caller's line, naming the argument and the function", function()
    local ok, err = pcall(function()
      local run = lc.ProcRunAsyncio({ "/bin/echo" }, { { 1 } }, { num_workers = -1 })
      return run
    end)
    assert.is_false(ok)
    local line = debug.getinfo(1, "l").currentline - 4
    assert.are.equal(("spec/conventions_spec.lua:%d: bad argument #3 to 'ProcRunAsyncio' "
      .. "(luaconcurrent: num_workers must be a non-negative integer, got -1)"):format(line), err)
    for _, case in ipairs({
      { function() local r = lc.ProcRunMp({}, {}) return r end, "#1 to 'ProcRunMp' (luaconcurrent: pargs" },
      { function() local r = lc.ProcRunMp({ "true" }, { { 1 }, { 1 } }) return r end, "#2 to 'ProcRunMp' (luaconcurrent: duplicate" },
      { function() local r = lc.ProcRunMp({ "true" }, { { 1 } }, 2, -1) return r end, "#4 to 'ProcRunMp' (luaconcurrent: timeout" },
      { function() local r = lc.run_prog({ "true" }, { nope = 1 }) return r end, "#2 to 'run_prog' (luaconcurrent: unknown option 'nope')" },
      { function() local r = lc.sleep(-1) return r end, "#1 to 'sleep' (luaconcurrent: sleep needs" },
      { function() local r = lc.map(nil, {}) return r end, "#1 to 'map' (luaconcurrent: map needs a function" },
      { function() local r = lc.run({ "true" }, {}, { mode = "fast" }) return r end, "#3 to 'run' (luaconcurrent: mode must be" },
    }) do
      local ok2, err2 = pcall(case[1])
      assert.is_false(ok2)
      assert.truthy(err2:find("^spec/conventions_spec%.lua:%d+: bad argument "), err2)
      assert.truthy(err2:find(case[2], 1, true), err2)
    end
  end)

  it("lc.map returns the answers in list order, in every mode", function()
    for _, mode in ipairs({ "coroutine", "thread", "process" }) do
      local answers, run = lc.map(function(s) return s .. s end, { "a", "b", "c" }, { mode = mode, num_workers = 2 })
      assert.are.same({ "aa", "bb", "cc" }, answers)
      assert.is_true(run.ok)
    end
  end)

  it("lc.map raises the first task error with its key, or keeps going with errors = 'keep'", function()
    local ok, err = pcall(lc.map, function(n)
      if n >= 2 then error("too big: " .. n) end
      return n
    end, { 1, 2, 3 })
    assert.is_false(ok)
    assert.truthy(err:find("^luaconcurrent: map: task 2 failed: [^\n]*too big: 2"), err)
    local answers, run = lc.map(function(n) if n == 2 then error("x") end return n end, { 1, 2, 3 }, { errors = "keep" })
    assert.are.equal(1, answers[1])
    assert.is_nil(answers[2])
    assert.are.equal(3, answers[3])
    assert.are.equal("RuntimeError", run.result[2].exception)
  end)

  it("lc.run runs in the mode asked for", function()
    local results
    -- A process task's print is captured; a coroutine task's is not.
    results = lc.run({ function() print("hi") return true end }, { { 1 } }, { mode = "process" })
    assert.are.equal("hi\n", results[1].stdout)
    results = lc.run({ "/bin/echo" }, { { "k", "x" } }, { mode = "thread" })
    assert.are.equal("x\n", results[1].stdout)
  end)

  it("reports a task file's bad field on one line with its line number, without a traceback", function()
    local path = tmp() .. ".lua"
    write(path, 'return {\n  pargs = {"/bin/echo"},\n  tasks = {{1}},\n  timout = 3,\n}\n')
    local out, err, code = helpers.sh(helpers.q(EXE) .. " " .. helpers.q(path))
    os.remove(path)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("luaconcurrent: " .. path .. ":4: unknown option 'timout'\n", err)
  end)

  it("accepts lc.run's mode names in task files", function()
    local path = tmp() .. ".lua"
    write(path, 'return {pargs = {function(k) print("in " .. k) return true, k end}, tasks = {{1}, {2}}, mode = "process"}\n')
    local out, err, code = helpers.sh(helpers.q(EXE) .. " --json " .. helpers.q(path))
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.truthy(out:find('"stdout":"in 1\\n"', 1, true), out)
  end)
end)

describe("timeline", function()
  local function run_with(path)
    local tasks = {}
    for i = 1, 8 do
      tasks[i] = { "t" .. i, i == 3 and "exit 3" or i == 5 and "sleep 5" or "sleep 0.05" }
    end
    lc.run({ "sh", "-c" }, tasks, { num_workers = 2, timeout = 0.5, timeline = path })
  end

  it("draws an SVG with an axis, a legend, a summary, a title on every bar, that renders", function()
    local svg = tmp() .. ".svg"
    run_with(svg)
    local _, err, code = helpers.sh("xmllint --noout " .. helpers.q(svg))
    assert.are.equal(0, code, err)
    local doc = helpers.read_file(svg)
    local _, bars = doc:gsub("<rect ", "")
    local _, titles = doc:gsub("<title>", "")
    assert.are.equal(8, bars)
    assert.are.equal(8, titles)
    assert.truthy(doc:find("8 tasks on 2 slots", 1, true))
    assert.truthy(doc:find("6 ok, 1 failed, 1 timed out", 1, true))
    for _, word in ipairs({ ">ok<", ">failed<", ">timed out<", "retried", ">interrupted<", ">0.0 s<", ">slot 2<" }) do
      assert.truthy(doc:find(word, 1, true), word)
    end
    -- Back-to-back tasks on a row stay apart: no bar ends where the next
    -- starts (except after a task too short for more than the 1 px minimum).
    local spans, checked = {}, 0
    for x, y, w in doc:gmatch('<rect x="([%d.]+)" y="(%d+)" width="([%d.]+)"') do
      spans[#spans + 1] = { x = tonumber(x), y = y, w = tonumber(w), e = tonumber(x) + tonumber(w) }
    end
    for _, a in ipairs(spans) do
      for _, b in ipairs(spans) do
        if a ~= b and a.y == b.y and b.x >= a.x and a.w > 1 then
          assert.is_true(b.x - a.e >= 0.98, "bars touch")
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked >= 3, "only " .. checked .. " pairs of bars checked")
    -- rsvg-convert renders it, and the picture is not blank.
    local png = tmp() .. ".png"
    _, err, code = helpers.sh("rsvg-convert -b white -o " .. helpers.q(png) .. " " .. helpers.q(svg))
    assert.are.equal(0, code, err)
    local bytes = helpers.read_file(png)
    assert.are.equal("\137PNG", bytes:sub(1, 4))
    -- Not blank: a white picture of the same size compresses to a small
    -- fraction of it (about 1 KB against 10 KB and more here).
    local w, h = doc:match('<svg [^>]-width="(%d+)" height="(%d+)"')
    local blank, blank_png = tmp() .. ".svg", tmp() .. ".png"
    write(blank, ('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s"></svg>'):format(w, h))
    _, err, code = helpers.sh("rsvg-convert -b white -o " .. helpers.q(blank_png) .. " " .. helpers.q(blank))
    assert.are.equal(0, code, err)
    local blank_size = #helpers.read_file(blank_png)
    assert.is_true(#bytes > 4 * blank_size, ("PNG of %d bytes, a blank one %d"):format(#bytes, blank_size))
    os.remove(svg); os.remove(png); os.remove(blank); os.remove(blank_png)
  end)

  it("writes trace-event JSON for a .json path, one track per slot", function()
    local path = tmp() .. ".json"
    run_with(path)
    local doc = require("cjson").decode(helpers.read_file(path))
    os.remove(path)
    assert.are.equal("table", type(doc.traceEvents))
    local slices, names = 0, {}
    for _, ev in ipairs(doc.traceEvents) do
      assert.are.equal("string", type(ev.name))
      assert.are.equal("string", type(ev.ph))
      assert.are.equal("number", type(ev.pid))
      assert.are.equal("number", type(ev.tid))
      if ev.ph == "X" then
        slices = slices + 1
        assert.is_true(ev.ts >= 0 and ev.dur >= 0)
        assert.truthy(ev.args.outcome)
        assert.is_true(ev.tid >= 1 and ev.tid <= 2)
      elseif ev.ph == "M" and ev.name == "thread_name" then
        names[ev.tid] = ev.args.name
      else
        assert.are.equal("M", ev.ph)
      end
    end
    assert.are.equal(8, slices)
    assert.are.same({ "slot 1", "slot 2" }, names)
  end)
end)

describe("progress bar", function()
  local progress = require "luaconcurrent.control.progress"

  -- A scheduler state (schedule.lua) whose executor runs `running` of the
  -- `inflight` tasks it holds, `concurrency` at once.
  local function state(f)
    local st = require("luaconcurrent.schedule").new({ ntasks = f.total })
    local n = f.running
    st.ex = { capacity = f.capacity or 4, concurrency = f.concurrency or 4, running = function() return n end }
    st.inflight, st.done, st.halted = f.inflight or n, f.done, f.halted
    return st
  end

  it("counts the slots about to be refilled as running", function()
    assert.are.equal(4, progress.running(state({ running = 3, done = 1, total = 16 })))
    assert.are.equal(4, progress.running(state({ running = 3, done = 1 })))           -- an iterator
    assert.are.equal(2, progress.running(state({ running = 2, done = 14, total = 16 }))) -- draining
    assert.are.equal(3, progress.running(state({ running = 3, done = 1, total = 16, halted = "soon" })))
  end)

  it("counts only the tasks running, not those held ahead of their start", function()
    -- Thread workers: 2 run, 100 handed over; 50 not handed over yet.
    local st = state({ running = 2, inflight = 100, done = 50, total = 200, capacity = 512, concurrency = 2 })
    assert.are.equal(2, progress.running(st))
    -- Every task handed over, one worker idle: 1 runs, whatever is held.
    st = state({ running = 1, inflight = 100, done = 100, total = 200, capacity = 512, concurrency = 2 })
    assert.are.equal(1, progress.running(st))
  end)

  it("shows as many running as there are slots in a real terminal", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local lc = require "luaconcurrent"
      local t = {}
      for i = 1, 16 do t[i] = {i, "0.2"} end
      lc.ProcRunAsyncio({"sleep"}, t, {num_workers = 4, progress = true}):run_all()
    ]])
    f:close()
    local out, err, code = helpers.sh("script -qec " .. helpers.q(helpers.q(EXE) .. " " .. helpers.q(script))
      .. " /dev/null")
    os.remove(script)
    assert.are.equal(0, code, err)
    local most = 0
    for n in out:gmatch("(%d+) running") do most = math.max(most, tonumber(n)) end
    assert.are.equal(4, most, out)
  end)
end)

describe("smaller points", function()
  it("--help says a task file needs both pargs and tasks, and names the modes", function()
    local out, err, code = helpers.sh(helpers.q(EXE) .. " --help")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("both 'pargs' and 'tasks'", 1, true), out)
    assert.truthy(out:find('"coroutine", "thread" or "process"', 1, true), out)
  end)

  it("runs hosts = {':'} on this executable's engine, whatever PATH holds", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local lc = require "luaconcurrent"
      local r = lc.run({"/bin/echo"}, {{1, "a"}}, {hosts = {":"}})
      io.write(tostring(r[1].success), " ", tostring(r[1].remote_mode), " ", r[1].stdout)
    ]])
    f:close()
    local out, err, code = helpers.sh("env PATH=/usr/bin:/bin " .. helpers.q(EXE) .. " " .. helpers.q(script))
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.are.equal("true engine a\n", out)
  end)
end)
