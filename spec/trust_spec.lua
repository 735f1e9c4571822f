-- The trust rule for worker processes (issue 15): code goes out, only
-- data comes back. A task runs inside its worker and can do anything the
-- worker can, its key included: it forges answers here, written onto the
-- worker's own answer pipe with a valid key, and none of it may run in
-- the runner or stop the run.

local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local helpers = require "helpers"

-- A task that writes a forged answer (kind, see below) on its worker's
-- answer pipe, tagged with the key the worker holds, before it returns.
-- The code it smuggles appends the pid of the process it runs in to the
-- file marker. Loaded with the real globals as its _ENV.
local FORGER = [[
  local key, args = ...
  local kind, marker = args[1].kind, args[1].marker
  local core = require "luaconcurrent.core"
  -- (the path a constant of its code: nothing hangs on upvalues)
  local evil = load(string.format([=[
    local st = io.open("/proc/self/stat")
    local pid = st:read("a"):match("^(%%d+)")
    st:close()
    local f = io.open(%q, "a")
    f:write(pid, "\n")
    f:close()
    return "x"
  ]=], tostring(marker)), "=evil", "t", _G)
  local t0 = core.now()
  -- the worker's answer pipe: its one write-only fd above stderr
  local out
  for fd = 3, 64 do
    local f = io.open("/proc/self/fdinfo/" .. fd)
    local flags = f and tonumber(f:read("a"):match("flags:%s*(%d+)"), 8)
    if f then f:close() end
    if flags and flags & 3 == 1 then out = fd break end
  end
  local payload
  if kind == "metatable" then
    local mt = { __index = evil, __newindex = evil, __len = evil, __tostring = evil,
                 __eq = evil, __concat = evil, __call = evil, __pairs = evil, __close = evil }
    payload = setmetatable({ 1, 2, 3 }, mt)
  elseif kind == "bytecode" then
    payload = evil
  elseif kind == "module" then
    -- a module the runner has not loaded: it would require it by name
    package.loaded.lc_trust_evil = { f = evil }
    payload = package.loaded.lc_trust_evil
  elseif kind == "shape" then
    -- data, but not an answer: a string where the start time goes
    core.marshal_write_data(out, "ok", "soon", t0, false, "", 2, true, "x")
    return true, "honest"
  elseif kind == "garbage" then
    local junk = "LCm\1" .. string.rep("\255", 40)
    io.open("/proc/self/fd/" .. out, "w"):write(string.pack("<s4", junk)):close()
    return true, "honest"
  elseif kind == "future" then
    -- a start a long way off, to put the deadline off; then it spins
    core.marshal_write_data(out, "start", core.now() + 1e6)
    while true do end
  elseif kind == "key" then
    return true, core.marshal_key()
  end
  if payload ~= nil then
    core.marshal_write(out, core.marshal_names(), "ok", t0, core.now(), false, "", 2, true, payload)
  end
  return true, "honest"
]]
local forger = assert(load(FORGER, "=forger", "t", _G))

local function lines(path)
  local set = {}
  local f = io.open(path)
  if not f then return set end
  for l in f:lines() do set[l] = true end
  f:close()
  return set
end

describe("worker processes send only data back", function()
  helpers.leak_check(before_each, after_each)

  local marker, moddir, path
  before_each(function()
    marker = os.tmpname()
    os.remove(marker)
    -- lc_trust_evil.lua, where the runner's require would find it
    moddir = os.tmpname()
    os.remove(moddir)
    assert(os.execute("mkdir " .. helpers.q(moddir)))
    local f = assert(io.open(moddir .. "/lc_trust_evil.lua", "w"))
    f:write(string.format([[
      local f = io.open(%q, "a")
      local st = io.open("/proc/self/stat")
      f:write(st:read("a"):match("^(%%d+)"), "\n")
      st:close()
      f:close()
      return {}
    ]], marker))
    f:close()
    path = package.path
    package.path = moddir .. "/?.lua;" .. package.path
  end)

  after_each(function()
    package.path = path
    package.loaded.lc_trust_evil = nil
    os.remove(moddir .. "/lc_trust_evil.lua")
    os.remove(moddir)
    os.remove(marker)
  end)

  -- Run the forger's kind among honest tasks; check that the forging task
  -- failed as refused, the others are right, and nothing ran here.
  local function forged(kind, want)
    local tasks = { { 1, { kind = kind, marker = marker } } }
    for i = 2, 9 do tasks[i] = { i, { kind = "honest", marker = marker } } end
    local r = lc.ProcRunMp({ forger }, tasks, { num_workers = 2, isolation = "process" }):run_all()
    assert.are.equal(9, #r)
    -- touch what came back every way a metatable could hook, then collect
    for _, res in ipairs(r) do
      local a = res.answer
      if type(a) == "table" then
        pcall(function()
          local _, _, _, _ = a.x, #a, tostring(a), a == {}
          for _ in pairs(a) do end
        end)
      elseif type(a) == "function" then
        pcall(a)
      end
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(lines(marker)[tostring(helpers.self_pid())], "the forged code ran in the runner")
    assert.is_false(r[1].success)
    assert.are.equal("RuntimeError", r[1].exception)
    assert.matches("the worker process sent what the runner refuses, and was ended: "
      .. want, r[1].error, 1, true)
    for i = 2, 9 do
      assert.is_true(r[i].success, i .. ": " .. tostring(r[i].error))
      assert.are.equal("honest", r[i].answer)
    end
    return r
  end

  it("refuses a forged answer whose table has a metatable of functions; none of it runs here", function()
    forged("metatable", "luaconcurrent: answer refused: a metatable on the table at [8] "
      .. "(only data comes back)")
  end)

  it("refuses a forged answer carrying bytecode; it never runs here", function()
    forged("bytecode", "luaconcurrent: answer refused: a function value at [8] (code never comes back)")
  end)

  it("refuses a forged answer naming a module, so the runner requires nothing", function()
    forged("module", "luaconcurrent: answer refused: a module by name at [8] (code never comes back)")
    assert.is_nil(package.loaded.lc_trust_evil)
  end)

  it("refuses an answer of the wrong shape as a failure of its worker, not of the run", function()
    forged("shape", "a message that is not an answer (8 values: string string number boolean ...)")
  end)

  it("refuses a frame that fails its check as a failure of its worker, not of the run", function()
    forged("garbage", "luaconcurrent: a transfer failed its check")
  end)

  it("keeps a task's deadline when its worker claims a start in the future", function()
    -- In a child under timeout(1): believing the claim, the run would hang.
    local out, err, code = helpers.sh("timeout 30 env " .. helpers.lua_env() .. " lua5.4 -e " .. helpers.q(string.format([[
      local lc = require "luaconcurrent"
      local forger = load(%q, "=forger", "t", _G)
      local t0 = os.time()
      local r = lc.ProcRunMp({ forger }, { { 1, { kind = "future" } }, { 2, { kind = "honest" } } },
        { num_workers = 1, isolation = "process", timeout = 0.5 }):run_all()
      print(r[1].exception, r[2].success, os.time() - t0 < 15)
    ]], FORGER)))
    assert.are.equal(0, code, err)
    assert.are.equal("TimeoutError\ttrue\ttrue\n", out)
  end)

  it("refuses a forged frame among the bytes a worker left when it ended", function()
    -- The final record of a worker whose last frames were not handed over
    -- one by one carries them in its stdout (processes.lua: read_rest).
    local processes = require "luaconcurrent.exec.processes"
    local loop = core.new_loop()
    finally(function() loop:close() end)
    local got = {}
    local ex = processes.new({ pargs = { forger }, timeout = 0, num_workers = 1, ntasks = 2,
      fn_bytes = core.marshal_string(forger) }, loop, function(index, res) got[index] = res end)
    ex:start(1, 1, { kind = "honest", marker = marker })
    ex:start(2, 2, { kind = "honest", marker = marker })
    ex:run_ready()
    local id = next(ex.workers)
    local _, up = core.marshal_worker_keys(id)
    local evil = load(string.format("io.open(%q, 'a'):write(%q, '\\n'):close() return 1",
      marker, tostring(helpers.self_pid())))
    local bytes = string.pack("<s4", core.marshal_keyed(up, nil, "start", 1.0))
      .. string.pack("<s4", core.marshal_keyed(up, nil, "ok", 1.0, 2.0, true, "", 2, true,
        setmetatable({}, { __index = evil, __len = evil, __tostring = evil })))
    assert.is_true(ex:record({ id = id, returncode = 0, stdout = bytes, stderr = "" }))
    if got[1] and type(got[1].answer) == "table" then
      pcall(function() return got[1].answer.x, #got[1].answer, tostring(got[1].answer) end)
    end
    assert.is_nil(lines(marker)[tostring(helpers.self_pid())], "the forged code ran in the runner")
    assert.is_false(got[1].success)
    assert.are.equal("the worker process sent what the runner refuses, and was ended: luaconcurrent: "
      .. "answer refused: a metatable on the table at [8] (only data comes back)", got[1].error)
    -- the task it held goes to a new worker, and is answered there
    local t0 = core.now()
    while not got[2] and core.now() - t0 < 20 do
      ex:run_ready()
      for _, rec in ipairs(loop:poll(0.1)) do ex:record(rec) end
    end
    -- (the first worker's real process is still up: close kills it)
    loop:close()
    assert.is_true(got[2] and got[2].success, got[2] and got[2].error)
  end)

  it("gives each worker a key of its own, never the run's", function()
    local r = lc.ProcRunMp({ forger }, { { 1, { kind = "key" } }, { 2, { kind = "key" } } },
      { num_workers = 2, isolation = "process" }):run_all()
    local run_key = core.marshal_key()
    for i = 1, 2 do
      assert.is_true(r[i].success, r[i].error)
      assert.are.equal(16, #r[i].answer)
      assert.are_not.equal(run_key, r[i].answer)
    end
    -- a worker's key is its up-key, derived from the run's and its id
    local ups = {}
    for id = 1, 100 do ups[select(2, core.marshal_worker_keys(id))] = id end
    assert.is_truthy(ups[r[1].answer])
    -- and what it tags is data to the runner, never code
    local tagged = core.marshal_keyed(r[1].answer, nil, function() return 1 end)
    assert.is_false(pcall(core.unmarshal_string, tagged))
    local ok, err = pcall(core.unmarshal_data, tagged, { key = r[1].answer })
    assert.is_false(ok)
    assert.are.equal("luaconcurrent: answer refused: a function value at [1] (code never comes back)", err)
  end)
end)

-- When no random key can be had (no getrandom, no /dev/urandom) the
-- process falls back to a key made from the clock and its pid: good for
-- telling its own frames apart, no secret. Nothing that carries code may
-- leave the process under it: no key is handed out, no worker process
-- starts; thread workers (same memory) still run.
describe("the fallback key", function()
  it("fails closed for worker processes and keys, and thread workers still run", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. helpers.q(dir)))
    local shim = dir .. "/no_random.so"
    local _, cerr, ccode = helpers.sh("cc -shared -fPIC -o " .. helpers.q(shim) .. " "
      .. helpers.q(helpers.FIXTURES .. "/no_random.c") .. " -ldl")
    assert.are.equal(0, ccode, cerr)
    local out, err, code = helpers.run_lua([[
      local core = require "luaconcurrent.core"
      local lc = require "luaconcurrent"
      print((select(2, pcall(core.marshal_key))))
      print((select(2, pcall(core.marshal_derive_key, "host 1 down"))))
      print(core.unmarshal_string(core.marshal_string(function() return "in-process" end))())
      local f = function(_, x) return true, x[1] * 2 end
      for _, iso in ipairs({ "process", "thread" }) do
        local r = lc.ProcRunMp({ f }, { { 1, 5 }, { 2, 6 } }, { isolation = iso }):run_all()
        print(iso, r[1].success, r[1].answer, r[1].error, r[2].success, r[2].error)
      end
    ]], "LD_PRELOAD=" .. helpers.q(shim))
    os.remove(shim)
    os.remove(dir)
    assert.are.equal(0, code, err)
    local weak = "luaconcurrent: no secure random key (getrandom and /dev/urandom both failed): "
      .. "code is not sent to other processes or hosts"
    assert.are.equal(table.concat({
      weak, weak, "in-process",
      "process\tfalse\tnil\t" .. weak .. "\tfalse\t" .. weak,
      "thread\ttrue\t10\tnil\ttrue\tnil",
    }, "\n") .. "\n", out)
  end)
end)
