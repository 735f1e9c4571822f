-- src/marshal.c through core.marshal / core.unmarshal: what crosses to
-- another Lua state (and how), and the named errors for what cannot.
--
-- Functions defined in this file have busted's environment table as _ENV;
-- it crosses as the receiver's globals (marshal.h), like _G does for the
-- functions of spec/fixtures/fn_tasks.lua.

local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local helpers = require "helpers"

local F = dofile(helpers.FIXTURES .. "/fn_tasks.lua")

local mtype, select, pcall, getmetatable, setmetatable, type =
  math.type, select, pcall, getmetatable, setmetatable, type

--- Every value back from one message.
local function rt(...)
  return core.unmarshal(core.marshal(...))
end

--- The error core.marshal raises for these values (fails if none).
local function marshal_error(...)
  local ok, err = pcall(core.marshal, ...)
  assert(not ok, "core.marshal accepted the value")
  return tostring(err)
end

local function has(haystack, needle)
  assert.truthy(haystack:find(needle, 1, true),
    string.format("expected %q in:\n%s", needle, haystack))
end

local function where(fn)
  local info = debug.getinfo(fn, "S")
  return string.format("function at %s:%d", info.short_src, info.linedefined)
end

describe("marshal round trips", function()
  it("gives bytes with a size", function()
    local b = core.marshal(1, "two")
    assert.are.equal("userdata", type(b))
    assert.is_true(b:size() > 0)
    -- no values: a frame is still its magic (4 bytes) and its check (8)
    assert.are.equal(12, core.marshal():size())
    assert.are.equal(0, select("#", core.unmarshal(core.marshal())))
  end)

  it("keeps nil and the number of values", function()
    assert.are.equal(0, select("#", rt()))
    assert.are.equal(1, select("#", rt(nil)))
    assert.is_nil((rt(nil)))
    assert.are.equal(3, select("#", rt(1, nil, 3)))
    assert.are.equal(2, select("#", rt(1, nil)))
    local a, b, c, d = rt(1, "two", { 3 }, false)
    assert.are.equal(1, a)
    assert.are.equal("two", b)
    assert.are.same({ 3 }, c)
    assert.is_false(d)
  end)

  it("keeps booleans", function()
    local t, f = rt(true, false)
    assert.is_true(t)
    assert.is_false(f)
  end)

  it("keeps integers and floats apart", function()
    local i, f = rt(3, 3.0)
    assert.are.equal("integer", mtype(i))
    assert.are.equal("float", mtype(f))
    assert.are.equal(3, i)
    assert.are.equal(3.0, f)
    local vals = { math.maxinteger, math.mininteger, 0, -1, 1 << 53 + 1, 0.1, -2.5e300,
      math.huge, -math.huge, 5e-324 }
    for _, v in ipairs(vals) do
      local c = rt(v)
      assert.are.equal(mtype(v), mtype(c))
      assert.is_true(c == v, tostring(v))
    end
    local mz = rt(-0.0)
    assert.are.equal("float", mtype(mz))
    assert.are.equal(-math.huge, 1 / mz)
    local nan = rt(0 / 0)
    assert.are.equal("float", mtype(nan))
    assert.is_true(nan ~= nan)
  end)

  it("keeps strings byte for byte", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    local vals = { "", "a\0b", "\0", all, all:rep(4000) }
    for _, v in ipairs(vals) do
      local c = rt(v)
      assert.are.equal(#v, #c)
      assert.is_true(c == v)
    end
  end)

  it("copies nested tables", function()
    local t = { 1, 2, { 3, { 4, x = "y" } }, k = { [true] = false, [2.5] = "f" },
      [-7] = "neg", [math.maxinteger] = "max" }
    local c = rt(t)
    assert.are_not.equal(t, c)
    assert.are.same(t, c)
    assert.are.equal("integer", mtype(next(rt({ [1] = true }))))
  end)

  it("keeps table keys that are tables", function()
    local k = { name = "k" }
    local c = rt({ [k] = 1 })
    local ck, v = next(c)
    assert.are.equal("table", type(ck))
    assert.are_not.equal(k, ck)
    assert.are.equal("k", ck.name)
    assert.are.equal(1, v)
  end)

  it("keeps cycles", function()
    local t = { name = "t" }
    t.self = t
    t.inner = { back = t }
    local c = rt(t)
    assert.are_not.equal(t, c)
    assert.are.equal(c, c.self)
    assert.are.equal(c, c.inner.back)
    assert.are.equal("t", c.name)
  end)

  it("keeps shared subtables shared", function()
    local sub = { 1 }
    local a = { x = sub, y = sub, list = { sub, sub } }
    local c = rt(a)
    assert.are.equal(c.x, c.y)
    assert.are.equal(c.x, c.list[1])
    assert.are.equal(c.x, c.list[2])
    assert.are_not.equal(sub, c.x)
    -- and across the values of one message
    local c1, c2 = rt(sub, { sub })
    assert.are.equal(c1, c2[1])
  end)

  it("keeps metatables, shared between instances", function()
    local mt = {}
    mt.__index = mt
    function mt.get(self) return self.v end
    local a, b = setmetatable({ v = 1 }, mt), setmetatable({ v = 2 }, mt)
    local ca, cb = rt(a, b)
    assert.are.equal(getmetatable(ca), getmetatable(cb))
    assert.are_not.equal(mt, getmetatable(ca))
    assert.are.equal(1, ca:get())
    assert.are.equal(2, cb:get())
    local list = rt({ a, b })
    assert.are.equal(getmetatable(list[1]), getmetatable(list[2]))
    assert.are.equal(2, list[2]:get())
  end)

  it("copies functions with a snapshot of their upvalues", function()
    local n = 0
    local function inc() n = n + 1; return n end
    inc(); inc()
    local copy = rt(inc)
    assert.are_not.equal(inc, copy)
    assert.are.equal(3, copy())
    assert.are.equal(4, copy())
    assert.are.equal(3, inc()) -- the original counts on its own
    assert.are.equal(3, n)
  end)

  it("copies a recursive local function", function()
    local function fact(k)
      if k <= 1 then return 1 end
      return k * fact(k - 1)
    end
    local copy = rt(fact)
    assert.are_not.equal(fact, copy)
    assert.are.equal(120, copy(5))
    local _, up = debug.getupvalue(copy, 1)
    assert.are.equal(copy, up) -- refers to itself, not to the original
  end)

  it("keeps a table and the function that refers to it together", function()
    local t = { v = "t" }
    function t.get() return t end
    local c = rt(t)
    assert.are.equal(c, c.get())
  end)

  it("copies a function using a captured string.format", function()
    local fmt = string.format
    local function f(x) return fmt("%05d", x) end
    local copy = rt(f)
    assert.are.equal("00042", copy(42))
    local _, up = debug.getupvalue(copy, 1)
    assert.are.equal(string.format, up)
  end)

  it("sends library functions and module functions by name", function()
    assert.are.equal(string.format, rt(string.format))
    assert.are.equal(print, rt(print))
    assert.are.equal(lc.sleep, rt(lc.sleep))
    assert.are.equal(lc.run_prog, rt(lc.run_prog))
  end)

  it("sends modules by name", function()
    assert.are.equal(string, rt(string))
    assert.are.equal(math, rt(math))
    assert.are.equal(_G, rt(_G))
    assert.are.equal(lc, rt(lc))
    assert.are.equal(core, rt(core))
    local t = rt({ s = string, m = { lc } })
    assert.are.equal(string, t.s)
    assert.are.equal(lc, t.m[1])
  end)

  it("sends by name only what the module holds now", function()
    -- A function sent by name must be the one the module holds when it is
    -- sent; one the module no longer holds is a plain Lua function.
    local name = "lc_marshal_spec_mod"
    local m = {}
    local function f1() return 1 end
    m.f = f1
    package.loaded[name] = m
    local ok, err = pcall(function()
      assert.are.equal(f1, rt(f1))     -- by name while the module holds it
      m.f = function() return 2 end    -- the module replaces it
      local c = rt(f1)
      assert.are.equal("function", type(c))
      assert.are.equal(1, c())
      m.f = nil                        -- the module drops it
      c = rt(f1)
      assert.are.equal("function", type(c))
      assert.are.equal(1, c())
    end)
    package.loaded[name] = nil
    assert(ok, err)
  end)

  it("copies a function's own _ENV table when it is not a module", function()
    local g = load("return x + 1", "=chunk", "t", { x = 41 })
    local copy = rt(g)
    assert.are_not.equal(g, copy)
    assert.are.equal(42, copy())
  end)

  it("sends a function whose _ENV is _G, globals and all", function()
    local copy = rt(F.globals)
    assert.are_not.equal(F.globals, copy)
    local ok, answer = copy(7)
    assert.is_true(ok)
    assert.are.equal("7:number", answer)
  end)

  it("copies deeply nested tables below the limit", function()
    local t = {}
    local cur = t
    for _ = 1, 150 do cur.next = {}; cur = cur.next end
    cur.last = true
    local c = rt(t)
    for _ = 1, 150 do c = c.next end
    assert.is_true(c.last)
  end)

  it("can marshal again after an error", function()
    assert.is_false(pcall(core.marshal, { io.stdout }))
    assert.are.same({ 1, { 2 } }, rt({ 1, { 2 } }))
  end)
end)

describe("marshal errors", function()
  it("names a userdata", function()
    has(marshal_error(io.stdout), "luaconcurrent: cannot send a userdata to another Lua state")
  end)

  it("names a coroutine", function()
    has(marshal_error(coroutine.create(function() end)),
      "luaconcurrent: cannot send a coroutine to another Lua state")
  end)

  it("names a C function that no module holds", function()
    local iter = ipairs({})          -- ipairs' C iterator is in no module
    has(marshal_error(iter), "cannot send a C function that no loaded module holds")
    local gm = string.gmatch("a", "a") -- a C closure
    has(marshal_error(gm), "cannot send a C function that no loaded module holds")
  end)

  it("names a light userdata", function()
    local lud = core.cancel_sentinel()
    assert.are.equal("userdata", type(lud))
    has(marshal_error(lud), "cannot send a light userdata to another Lua state")
  end)

  it("names the upvalue and the function", function()
    local fh = io.stdout
    local function f() return fh end
    local err = marshal_error(f)
    has(err, "luaconcurrent: cannot send a userdata to another Lua state: upvalue 'fh' of "
      .. where(f))
    assert.matches("upvalue 'fh' of function at .*marshal_spec%.lua:%d+", err)
  end)

  it("names the path through tables and functions", function()
    local cfg = { out = { fh = io.stderr } }
    local function inner() return cfg end
    local function outer() return inner end
    local err = marshal_error(outer)
    has(err, "cannot send a userdata to another Lua state: field 'fh', in field 'out', "
      .. "in upvalue 'cfg' of " .. where(inner) .. ", in upvalue 'inner' of " .. where(outer))
    has(marshal_error({ list = { 1, 2, io.stdout } }),
      "cannot send a userdata to another Lua state: field [3], in field 'list'")
  end)

  -- issue 8 item 1: a numeric step's text was pushed on top of the message
  -- buffer while it could grow (a use-after-free under ASan at 940-948).
  it("names a numeric step after a long key, whatever the message's length", function()
    for n = 900, 1100 do
      local key = string.rep("k", n)
      local err = marshal_error({ [1] = { [key] = io.stdout } })
      has(err, "cannot send a userdata to another Lua state: field '" .. key .. "', in field [1]")
      err = marshal_error({ [2.5] = { [key] = io.stdout } })
      has(err, "field '" .. key .. "', in field [2.5]")
    end
  end)

  it("names a coroutine upvalue", function()
    local co = coroutine.create(function() end)
    local function f() return co end
    has(marshal_error(f), "cannot send a coroutine to another Lua state: upvalue 'co' of " .. where(f))
  end)

  it("names a C function upvalue", function()
    local iter = ipairs({})
    local function f() return iter end
    has(marshal_error(f), "cannot send a C function that no loaded module holds to another "
      .. "Lua state: upvalue 'iter' of " .. where(f))
  end)

  it("names a metatable that cannot cross", function()
    has(marshal_error(setmetatable({}, { __index = io.stdout })),
      "cannot send a userdata to another Lua state: field '__index', in metatable")
  end)

  -- Deep nesting runs in a child lua5.4: a crash must not take busted down.
  local function deep_child(build)
    local code = [[
      local core = require "luaconcurrent.core"
      local v = (function() ]] .. build .. [[ end)()
      local ok, err = pcall(core.marshal, v)
      io.write(tostring(ok), "\n", tostring(err), "\n")
    ]]
    return helpers.run_lua(code)
  end

  it("rejects tables nested more than 200 levels, without crashing", function()
    for _, depth in ipairs({ 250, 100000 }) do
      local out, err, code = deep_child([[
        local t = {}
        local cur = t
        for _ = 1, ]] .. depth .. [[ do cur[1] = {}; cur = cur[1] end
        return t
      ]])
      assert.are.equal(0, code, "child exited " .. tostring(code) .. ": " .. err)
      assert.matches("^false\n", out)
      assert.truthy(out:find("nested more than 200 levels", 1, true), out)
    end
  end)

  it("rejects functions nested more than 200 levels deep, without crashing", function()
    local out, err, code = deep_child([[
      local f = function() return 0 end
      for _ = 1, 1000 do
        local g = f
        f = function() return g() end
      end
      return f
    ]])
    assert.are.equal(0, code, "child exited " .. tostring(code) .. ": " .. err)
    assert.matches("^false\n", out)
    assert.truthy(out:find("nested more than 200 levels", 1, true), out)
  end)
end)

describe("ProcRunMp construction", function()
  helpers.leak_check(before_each, after_each)

  it("raises the marshal error naming the upvalue, before any task runs", function()
    local fh = io.stdout
    local ran = 0
    local function f() ran = ran + 1; return fh end
    local ok, err = pcall(lc.ProcRunMp, { f }, { { 1 }, { 2 } }, {
      on_start = function() ran = ran + 1 end,
    })
    assert.is_false(ok)
    has(tostring(err), "luaconcurrent: cannot send a userdata to another Lua state: "
      .. "upvalue 'fh' of " .. where(f))
    assert.are.equal(0, ran)
  end)

  it("raises for a coroutine and a C function upvalue", function()
    local co = coroutine.create(function() end)
    local function f1() return co end
    local ok, err = pcall(lc.ProcRunMp, { f1 }, { { 1 } }, {})
    assert.is_false(ok)
    has(tostring(err), "cannot send a coroutine to another Lua state: upvalue 'co' of " .. where(f1))
    local iter = ipairs({})
    local function f2() return iter end
    ok, err = pcall(lc.ProcRunMp, { f2 }, { { 1 } }, {})
    assert.is_false(ok)
    has(tostring(err), "upvalue 'iter' of " .. where(f2))
  end)

  it("raises for a fixed argument that cannot be sent", function()
    local ok, err = pcall(lc.ProcRunMp, { F.work, "fine", io.stdout }, { { 1 } }, {})
    assert.is_false(ok)
    has(tostring(err), "luaconcurrent: pargs[3] cannot be sent to a thread worker: "
      .. "cannot send a userdata")
    ok, err = pcall(lc.ProcRunMp, { F.work, { nested = { co = coroutine.create(print) } } },
      { { 1 } }, {})
    assert.is_false(ok)
    has(tostring(err), "luaconcurrent: pargs[2] cannot be sent to a thread worker: "
      .. "cannot send a coroutine")
    has(tostring(err), "field 'co', in field 'nested'")
  end)

  it("names a listed task whose arg cannot be sent, at construction", function()
    local ok, err = pcall(lc.ProcRunMp, { F.compute }, { { 1, io.stdout }, { 2, "fine" } }, {})
    assert.is_false(ok)
    assert.are.equal("bad argument #2 to 'ProcRunMp' (luaconcurrent: task 1 arg cannot be sent to a worker: it is a userdata)", err)
  end)

  it("gives a task from an iterator whose arg cannot be sent a failed result", function()
    local tasks = { { 1, io.stdout }, { 2, "fine" } }
    local i = 0
    local run = lc.ProcRunMp({ F.compute }, function() i = i + 1 return tasks[i] end, {})
    local result = run:run_all()
    assert.is_false(result[1].success)
    assert.are.equal("RuntimeError", result[1].exception)
    has(result[1].error, "userdata")
    assert.is_true(result[2].success)
  end)

  it("accepts in ProcRunAsyncio what ProcRunMp cannot send", function()
    local fh = io.stdout
    local function f() return fh ~= nil, io.type(fh) end
    local result = lc.ProcRunAsyncio({ f, io.stderr }, { { 1 } }, {}):run_all()
    assert.is_true(result[1].success)
    assert.are.equal("file", result[1].answer)
  end)
end)

-- issue 8 item 21: upvalues that closures share stay shared within one
-- message (lua_upvalueid / lua_upvaluejoin).
describe("marshal shared upvalues", function()
  local function counter()
    local n = 0
    local function inc() n = n + 1 return n end
    local function get() return n end
    return inc, get
  end

  it("keeps an upvalue two closures share shared in the copy", function()
    local inc, get = counter()
    local inc2, get2 = rt(inc, get)
    inc2()
    inc2()
    assert.are.equal(2, get2())
    assert.are.equal(0, get())         -- the original is a separate snapshot
    local t = rt({ inc = inc, get = get })
    t.inc()
    assert.are.equal(1, t.get())
  end)

  it("keeps the sharing when the closures are reached through another's upvalues", function()
    local inc, get = counter()
    local function both() inc() inc() return get() end
    local copy = rt(both)
    assert.are.equal(2, copy())
    assert.are.equal(4, copy())
  end)

  it("keeps a function whose upvalue holds itself, and shared _ENV", function()
    local h
    h = function() return h end
    local h2 = rt(h)
    assert.are.equal(h2, h2())
    -- g's upvalue holds h, whose own upvalue is that same variable: h is
    -- read (and joined) while g's upvalue is still being read
    local function g() return h end
    local g2 = rt(g)
    local h3 = g2()
    assert.are.equal(h3, h3())
    assert.are_not.equal(h, h3)
    local ga, gb = rt(F.globals, F.globals)
    assert.are.equal(ga, gb)
  end)

  it("crosses to thread and process workers with the sharing kept", function()
    local inc, get = counter()
    local function task(k) inc() inc() return true, get() + k end
    for _, isolation in ipairs({ "thread", "process" }) do
      local r = lc.ProcRunMp({ task }, { { 1 }, { 10 } }, { num_workers = 1, isolation = isolation })
        :run_all()
      assert.is_true(r[1].success, r[1].error)
      -- one worker runs both tasks with one copy of the function
      assert.are.equal(1 + 2, r[1].answer, isolation)
      assert.are.equal(10 + 4, r[2].answer, isolation)
    end
  end)
end)

-- issue 8 item 20: a function's environment binds to the receiver's
-- globals; modules load in an order that works, the same every run.
describe("marshal environments and module order", function()
  it("binds a busted-like environment (a proxy table over _G) to the receiver's globals", function()
    local hidden = io.stdout           -- would not cross, if the env were copied
    local env = setmetatable({}, { __index = function(_, k) return hidden and _G[k] end })
    local fn = load("return string.rep('a', 3), x", "=busted-like", "t", env)
    local copy = rt(fn)
    local a, x = copy()
    assert.are.equal("aaa", a)
    assert.is_nil(x)
    local name, value = debug.getupvalue(copy, 1)
    assert.are.equal("_ENV", name)
    assert.are.equal(_G, value)
  end)

  it("still copies an _ENV that is a plain table", function()
    local fn = load("return x", "=plain", "t", { x = 5 })
    local copy = rt(fn)
    assert.are.equal(5, copy())
    assert.are_not.equal(_G, select(2, debug.getupvalue(copy, 1)))
  end)

  it("runs a spec-file function that uses globals in workers, every time", function()
    -- written here, its _ENV is busted's environment table
    local function task(k)
      return true, string.format("%s:%d", type(describe), math.floor(k * 2.5))
    end
    for round = 1, 5 do
      for _, isolation in ipairs({ "thread", "process" }) do
        local r = lc.ProcRunMp({ task }, { { 2 }, { 4 } }, { num_workers = 2, isolation = isolation })
          :run_all()
        for i, want in ipairs({ "nil:5", "nil:10" }) do
          assert.is_true(r[i].success, isolation .. " round " .. round .. ": " .. tostring(r[i].error))
          assert.are.equal(want, r[i].answer)
        end
      end
    end
  end)

  it("loads a module after the prefixes of its name the sender had loaded (term before term.cursor)", function()
    require "term"
    local cursor = require "term.cursor"
    local function task() return true, type(cursor.jump) end
    for _, isolation in ipairs({ "thread", "process" }) do
      local r = lc.ProcRunMp({ task }, { { 1 } }, { isolation = isolation }):run_all()
      assert.is_true(r[1].success, tostring(r[1].error))
      assert.are.equal("function", r[1].answer)
    end
  end)

  it("names a table two modules hold by the shorter name, the same every time", function()
    local t = {}
    package.loaded["lc_spec_mod.inner"] = t
    package.loaded["lc_spec_m"] = t
    local ok, err = pcall(function()
      local s = core.marshal_string(t)
      assert.truthy(s:find("lc_spec_m", 1, true))
      assert.falsy(s:find("lc_spec_mod.inner", 1, true))
    end)
    package.loaded["lc_spec_mod.inner"], package.loaded["lc_spec_m"] = nil, nil
    assert(ok, err)
  end)
end)

-- issue 8 item 2: frames are checked; malformed input is a named error.
describe("marshal frame checks", function()
  it("refuses a frame that was changed, cut short or lengthened", function()
    local s = core.marshal_string({ 1, "two", { 3 } }, function() return 1 end)
    assert.is_true(pcall(core.unmarshal_string, s))
    for i = 1, #s do
      local b = s:byte(i)
      local flipped = s:sub(1, i - 1) .. string.char(b ~ 0x10) .. s:sub(i + 1)
      local ok, err = pcall(core.unmarshal_string, flipped)
      assert.is_false(ok)
      assert.truthy(err:find("luaconcurrent: a transfer", 1, true), err)
    end
    for n = 0, #s - 1 do
      assert.is_false(pcall(core.unmarshal_string, s:sub(1, n)))
    end
    assert.is_false(pcall(core.unmarshal_string, s .. "n"))
    local _, err = pcall(core.unmarshal_string, "")
    assert.are.equal("luaconcurrent: a transfer is not a frame of this version", err)
  end)

  it("refuses a frame made under another key", function()
    local key = core.marshal_key()
    assert.are.equal(16, #key)
    core.marshal_set_key(string.rep("k", 16))
    local s = core.marshal_string(function() return 42 end)
    core.marshal_set_key(key)
    local ok, err = pcall(core.unmarshal_string, s)
    assert.is_false(ok)
    assert.are.equal("luaconcurrent: a transfer failed its check (corrupt, or not made by this run)", err)
    assert.has_error(function() core.marshal_set_key("short") end,
      "luaconcurrent: a marshal key is 16 bytes, got 5")
  end)

  it("names a module that is not a table on the receiving side (no crash)", function()
    local name = "lc_spec_truthy_mod"
    package.loaded[name] = { f = function() return 1 end }
    local ok, err = pcall(function()
      local s1 = core.marshal_string(package.loaded[name])
      local s2 = core.marshal_string(package.loaded[name].f)
      package.loaded[name] = true
      local ok1, err1 = pcall(core.unmarshal_string, s1)
      assert.is_false(ok1)
      assert.are.equal("luaconcurrent: module '" .. name .. "' is a boolean here, not a table", err1)
      package.loaded[name] = {}
      local ok2, err2 = pcall(core.unmarshal_string, s2)
      assert.is_false(ok2)
      assert.are.equal("luaconcurrent: a module here has no function 'f'", err2)
    end)
    package.loaded[name] = nil
    assert(ok, err)
  end)

  it("reads a frame without its check only as data: stubs for functions", function()
    local s = core.marshal_string({ a = 1 }, function() return 1 end, string.format)
    local t, fn, fmt = core.unmarshal_unchecked(s)
    assert.are.same({ a = 1 }, t)
    assert.are.equal(string.format, fmt)
    local ok, err = pcall(fn)
    assert.is_false(ok)
    assert.truthy(err:find("cannot run", 1, true))
    -- and requires nothing
    package.loaded["lc_spec_gone"] = {}
    local s2 = core.marshal_string(package.loaded["lc_spec_gone"])
    package.loaded["lc_spec_gone"] = nil
    local ok2, err2 = pcall(core.unmarshal_unchecked, s2)
    assert.is_false(ok2)
    assert.truthy(err2:find("module 'lc_spec_gone' is not loaded", 1, true), err2)
  end)
end)

-- issue 15: what crosses back from another process is data. The data
-- decoder (core.unmarshal_data) refuses code, modules, _ENV bindings and
-- metatables with the value's path, and caps sizes.
describe("marshal data-only frames", function()
  local function refused(s, limits)
    local ok, err = pcall(core.unmarshal_data, s, limits)
    assert.is_false(ok, "the data decoder accepted the frame")
    return err
  end

  it("reads data as the full decoder does: numbers kept apart, sharing and cycles kept", function()
    local shared = { "s" }
    local cyc = { name = "c" }
    cyc.self = cyc
    local s = core.marshal_data(nil, true, false, 1, 1.0, -0.0, math.mininteger, "\0bytes",
      { a = shared, b = shared, list = { 1, 2, { 3 } }, [2.5] = "f", [true] = false }, cyc)
    local v = table.pack(core.unmarshal_data(s))
    assert.are.equal(10, v.n)
    assert.is_nil(v[1])
    assert.is_true(v[2])
    assert.is_false(v[3])
    assert.are.equal("integer", mtype(v[4]))
    assert.are.equal("float", mtype(v[5]))
    assert.are.equal(math.mininteger, v[7])
    assert.are.equal("\0bytes", v[8])
    assert.are.same({ 1, 2, { 3 } }, v[9].list)
    assert.are.equal(v[9].a, v[9].b)
    assert.are.equal("f", v[9][2.5])
    assert.is_false(v[9][true])
    assert.are.equal(v[10], v[10].self)
    -- what the full writer makes of data reads the same
    assert.are.same({ x = { 1 } }, core.unmarshal_data(core.marshal_string({ x = { 1 } })))
  end)

  it("refuses a function, a module, a module's function and a metatable, naming where", function()
    local function fn() return 1 end
    assert.are.equal("luaconcurrent: answer refused: a function value at [2].x (code never comes back)",
      refused(core.marshal_string(1, { x = fn })))
    assert.are.equal("luaconcurrent: answer refused: a function value at [1][3][\"a b\"] "
      .. "(code never comes back)", refused(core.marshal_string({ 1, 2, { ["a b"] = fn } })))
    assert.are.equal("luaconcurrent: answer refused: a module by name at [1].m (code never comes back)",
      refused(core.marshal_string({ m = string })))
    assert.are.equal("luaconcurrent: answer refused: a module function by name at [1] "
      .. "(code never comes back)", refused(core.marshal_string(string.format)))
    assert.are.equal("luaconcurrent: answer refused: a metatable on the table at [1].obj "
      .. "(only data comes back)", refused(core.marshal_string({ obj = setmetatable({}, {}) })))
    assert.are.equal("luaconcurrent: answer refused: a function value at [1].<key> "
      .. "(code never comes back)", refused(core.marshal_string({ [fn] = 1 })))
    -- what names the thing read
    assert.are.equal("luaconcurrent: host record refused: a function value at [1] "
      .. "(code never comes back)", refused(core.marshal_string(fn), { what = "host record" }))
  end)

  it("writes data only, and says so at the sender", function()
    assert.are.equal("luaconcurrent: cannot send a function back (only data comes back from another "
      .. "process; code never comes back): field 'f', in field 't'",
      select(2, pcall(core.marshal_data, { t = { f = print } })))
    assert.are.equal("luaconcurrent: cannot send a table with a metatable back (only data comes back "
      .. "from another process; code never comes back): field [2]",
      select(2, pcall(core.marshal_data, { 1, setmetatable({}, {}) })))
    -- not code: the usual wording
    assert.are.equal("luaconcurrent: cannot send a coroutine to another Lua state",
      select(2, pcall(core.marshal_data, coroutine.create(print))))
    assert.are.same({ 1, { 2 } }, core.unmarshal_data(core.marshal_data({ 1, { 2 } })))
  end)

  it("caps the frame, a string, nesting, tables and values, each settable", function()
    local s = core.marshal_data(string.rep("x", 100))
    assert.are.equal("luaconcurrent: answer refused: a frame of " .. #s .. " bytes, over the cap of 50",
      refused(s, { frame = 50 }))
    assert.are.equal("luaconcurrent: answer refused: a string at [1] (100 bytes, over the cap of 99)",
      refused(s, { string = 99 }))
    assert.are.equal(100, #core.unmarshal_data(s, { string = 100, frame = #s }))
    local deep = core.marshal_data({ { { "x" } } })
    assert.are.equal("luaconcurrent: answer refused: a value at [1][1][1].<key> "
      .. "(nested more than 2 tables deep)", refused(deep, { depth = 2 }))
    assert.are.same({ { { "x" } } }, core.unmarshal_data(deep, { depth = 3 }))
    assert.are.equal("luaconcurrent: answer refused: a table at [1][1][1] (more than 2 in one frame)",
      refused(deep, { tables = 2 }))
    assert.are.equal("luaconcurrent: answer refused: a value at [2] (more than 3 values in one frame)",
      refused(core.marshal_data({ 1 }, 2), { items = 3 }))
    assert.are.equal("luaconcurrent: unknown data limit 'frames' (frame, string, depth, tables, items, key, what)",
      refused(s, { frames = 1 }))
    assert.are.equal("luaconcurrent: limit 'depth' must be an integer from 1 to 200",
      refused(s, { depth = 201 }))
    assert.are.equal("luaconcurrent: limit 'frame' must be an integer from 1 to 4294967295",
      refused(s, { frame = 0 }))
  end)

  it("has process-wide defaults whose frame cap lets a 128 MB answer through", function()
    local def = core.marshal_data_limits()
    assert.are.same({ frame = 1 << 30, string = 1 << 30, depth = 200, tables = 1 << 23, items = 1 << 26 }, def)
    local s
    do   -- big and back go out of scope here: 256 MiB less held below
      local big = string.rep("a", 128 * 1024 * 1024)
      s = core.marshal_data({ answer = big })
      local back = core.unmarshal_data(s)
      assert.are.equal(#big, #back.answer)
    end
    local ok, err = pcall(function()
      core.marshal_data_limits({ frame = 1000 })
      assert.are.equal(1000, core.marshal_data_limits().frame)
      assert.truthy(refused(s):find("over the cap of 1000", 1, true))
    end)
    core.marshal_data_limits(def)
    assert(ok, err)
    s = nil
    collectgarbage()
  end)

  it("checks the frame with the key given, the process's by default", function()
    local k = core.marshal_derive_key("spec channel")
    local s = core.marshal_keyed(k, nil, { 1 })
    assert.are.equal("luaconcurrent: a transfer failed its check (corrupt, or not made by this run)",
      refused(s))
    assert.are.same({ 1 }, core.unmarshal_data(s, { key = k }))
    assert.are.equal("luaconcurrent: a transfer failed its check (corrupt, or not made by this run)",
      refused(core.marshal_data({ 1 }), { key = k }))
    assert.are.equal("luaconcurrent: a marshal key is 16 bytes, got 3", refused(s, { key = "abc" }))
  end)
end)

describe("core.data_is", function()
  it("checks each value's type against one letter, '.' for anything", function()
    assert.is_true(core.data_is("sffbsi..", "ok", 1.5, 2.5, false, "", 2, print))
    assert.is_false(core.data_is("sffbsi", "ok", 1, 2.5, false, "", 2))     -- an integer time
    assert.is_false(core.data_is("sf", "start"))                           -- absent
    assert.is_true(core.data_is("s.", "start"))
    assert.is_true(core.data_is("ntb", nil, {}, true))
    assert.is_false(core.data_is("s", {}))
    assert.has_error(function() core.data_is("x", 1) end, "luaconcurrent: data_is: unknown type letter 'x'")
  end)
end)

-- issue 15: keys per channel, derived from the process's key.
describe("marshal keys per channel", function()
  it("derives a key per label, the same every time, none of them the parent", function()
    local run = core.marshal_key()
    local a, b = core.marshal_derive_key("host 1 up"), core.marshal_derive_key("host 2 up")
    assert.are.equal(16, #a)
    assert.are.equal(a, core.marshal_derive_key("host 1 up"))
    assert.are_not.equal(a, b)
    assert.are_not.equal(run, a)
    -- from an explicit parent: the same as from the process's key
    assert.are.equal(a, core.marshal_derive_key("host 1 up", run))
    assert.are_not.equal(a, core.marshal_derive_key("host 1 up", a))
    assert.has_error(function() core.marshal_derive_key(string.rep("x", 201)) end,
      "luaconcurrent: a key label is at most 200 bytes")
  end)

  it("gives a worker two keys, down and up, and each worker its own", function()
    local down1, up1 = core.marshal_worker_keys(1)
    local down2, up2 = core.marshal_worker_keys(2)
    assert.are.equal(core.marshal_derive_key("worker 1 down"), down1)
    assert.are.equal(core.marshal_derive_key("worker 1 up"), up1)
    assert.are_not.equal(down1, up1)
    assert.are_not.equal(down1, down2)
    assert.are_not.equal(up1, up2)
  end)

  it("tags code going out under a channel's key; no other key reads it", function()
    local down1 = core.marshal_worker_keys(1)
    local down2 = core.marshal_worker_keys(2)
    local s = core.marshal_keyed(down1, core.marshal_names(), function(x) return x * 2 end, string.format)
    local fn, fmt = core.unmarshal_keyed(down1, s)
    assert.are.equal(14, fn(7))
    assert.are.equal(string.format, fmt)
    assert.is_false(pcall(core.unmarshal_keyed, down2, s))
    assert.is_false(pcall(core.unmarshal_string, s))
    -- a frame built once under the process's key, retagged for a channel
    local once = core.marshal_string(function() return "once" end)
    local r = core.marshal_retag(once, down2)
    assert.are.equal(#once, #r)
    assert.are.equal("once", core.unmarshal_keyed(down2, r)())
    assert.has_error(function() core.marshal_retag(s, down2) end,
      "luaconcurrent: a transfer failed its check (corrupt, or not made by this run)")
  end)
end)
