-- The engine-mode remote worker (`luaconcurrent --remote-worker`) driven
-- over its channel as the local side would (remote/wire.lua's messages),
-- without ssh: its tasks run on the local executors (exec/subprocess,
-- exec/processes), so they behave as the same tasks run locally.

local helpers = require "helpers"
local core = require "luaconcurrent.core"
local wire = require "luaconcurrent.remote.wire"
local frame_reader = require("luaconcurrent.frames").reader

local EXE = helpers.ROOT .. "/build/luaconcurrent"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. helpers.q(dir))

-- A worker on a loop of our own: send(line), answers(until) -> frames.
local function start_worker()
  local loop = core.new_loop()
  local down, up = core.marshal_derive_key("spec down"), core.marshal_derive_key("spec up")
  local id = assert(loop:spawn({ EXE, "--remote-worker" }, nil, nil, nil, 0, 0, true))
  local src = string.format("local CFG = { grace = 0.2, hb_timeout = 60, key = %q, up = %q }\n", down, up)
    :gsub("\\\n", "\\n")
  loop:write(id, #src .. "\n" .. src)
  local skip, read, frames, ended = wire.banner_skipper(4096), frame_reader(wire.FRAME_MAX), {}, false
  local function feed(data)
    if skip then
      data = skip.feed(data)
      if not data then return end
      skip = nil
    end
    assert(read(data, frames) == nil)
  end
  local w = { down = down, up = up }
  function w.send(fields) loop:write(id, wire.line(fields)) end
  function w.task(tid, blob, timeout)
    loop:write(id, wire.task("F", tid, timeout or 0, nil, nil, {}, blob))
  end
  -- One turn of our loop: what we wrote goes out, what came is read.
  local function pump()
    for _, rec in ipairs(loop:poll(0.05)) do
      if rec.id == id then
        if rec.data then feed(rec.data) else
          if rec.stdout and rec.stdout ~= "" then feed(rec.stdout) end
          ended = true
        end
      end
    end
  end
  -- Turns the loop until cond() (generous bound); whether it came.
  function w.wait(cond)
    local deadline = core.now() + 30
    while not cond() and not ended and core.now() < deadline do pump() end
    return cond()
  end
  -- Reads frames until one satisfies done(f) (generous bound); all so far.
  function w.until_frame(done)
    local deadline = core.now() + 30
    local seen = {}
    while core.now() < deadline do
      while #frames > 0 do
        local f = assert(wire.answer(table.remove(frames, 1)))
        seen[#seen + 1] = f
        if done(f) then return seen end
      end
      if ended then break end
      pump()
    end
    error("no such frame came; frames: " .. #seen)
  end
  function w.close()
    loop:close_input(id)
    local deadline = core.now() + 30
    while not ended and core.now() < deadline do
      for _, rec in ipairs(loop:poll(0.2)) do if rec.id == id and not rec.data then ended = true end end
    end
    loop:close()
    return ended
  end
  return w
end

describe("the engine-mode remote worker", function()
  teardown(function() os.execute("rm -rf " .. helpers.q(dir)) end)

  it("answers a cancelled running function task, and its host goes on", function()
    local w = start_worker()
    w.until_frame(function(f) return f[1] == "hello" end)
    local started = dir .. "/started"
    w.send({ "S", "1" })
    w.send({ "L", core.marshal_keyed(w.down, nil, function(_, args)   -- (a task function gets key, args)
      local mark, n = args[1], args[2]
      if mark then
        local f = io.open(mark, "w"); f:write("up"); f:close()
        while true do end
      end
      return true, n * 2
    end) })
    w.task("1", core.marshal_keyed(w.down, nil, "k1", { started, 0 }))
    -- It runs (its mark is written) before it is cancelled.
    assert.is_truthy(w.wait(function() return helpers.read_file(started) end), "the task never started")
    w.send({ "K", "1" })
    w.send({ "P", "after-cancel" })
    local seen = w.until_frame(function(f) return f[1] == "pong" end)
    local answer
    for _, f in ipairs(seen) do if f[2] == "1" then answer = f end end
    -- Before: no answer at all, so the local side failed the host after
    -- the grace and ESCALATE seconds.
    assert.is_truthy(answer, "the cancelled task was not answered")
    assert.are.equal("fdied", answer[1])
    assert.matches("interrupted", answer[3])
    -- The slot is free: the next task runs, on a new worker process.
    w.task("2", core.marshal_keyed(w.down, nil, "k2", { false, 21 }))
    seen = w.until_frame(function(f) return f[2] == "2" end)
    local f = seen[#seen]
    assert.are.equal("fdone", f[1])
    local what, _, _, _, _, nret, first, value = core.unmarshal_data(f[3], { key = w.up })
    assert.are.same({ "ok", 2, true, 42 }, { what, nret, first, value })
    assert.is_true(w.close())
  end)

  it("holds the tasks waiting for a slot at Q; the running one answers", function()
    local w = start_worker()
    w.until_frame(function(f) return f[1] == "hello" end)
    local started = dir .. "/started-q"
    w.send({ "S", "1" })
    w.send({ "L", core.marshal_keyed(w.down, nil, function(_, args)
      local f = io.open(args[1], "w"); f:write("up"); f:close()
      while not io.open(args[1] .. ".go") do end
      return true, "ran"
    end) })
    for tid = 1, 3 do w.task(tostring(tid), core.marshal_keyed(w.down, nil, tid, { started })) end
    assert.is_truthy(w.wait(function() return helpers.read_file(started) end), "the task never started")
    w.send({ "Q" })
    w.send({ "P", "held" })
    local kinds = {}
    for _, f in ipairs(w.until_frame(function(f) return f[1] == "pong" end)) do kinds[f[2]] = f[1] end
    io.open(started .. ".go", "w"):close()
    for _, f in ipairs(w.until_frame(function(f) return f[2] == "1" end)) do kinds[f[2]] = f[1] end
    kinds.held = nil   -- (the pong)
    assert.are.same({ ["1"] = "fdone", ["2"] = "held", ["3"] = "held" }, kinds)
    assert.is_true(w.close())
  end)

  it("gives a function task that passes its timeout its run time", function()
    local w = start_worker()
    w.until_frame(function(f) return f[1] == "hello" end)
    w.send({ "S", "2" })
    w.send({ "L", core.marshal_keyed(w.down, nil, function() while true do end end) })
    w.task("7", core.marshal_keyed(w.down, nil, "k", {}), 0.3)
    local seen = w.until_frame(function(f) return f[2] == "7" end)
    local f = seen[#seen]
    assert.are.equal("ftimeout", f[1])
    assert.is_true(tonumber(f[3]) >= 0.25, f[3])
    assert.is_true(w.close())
  end)
end)
