-- Fuzzing src/marshal.c's reader (issue 8 item 2): byte flips, random
-- bytes, truncations, insertions, deletions and splices of real frames
-- (functions with upvalues, shared upvalues, nested tables, cycles,
-- metatables, module references). No case may crash the process.
--
--   A: a changed frame, as it comes: the check must refuse every one;
--   B: a changed frame read without the check (core.unmarshal_unchecked:
--      no code, no require), to reach the parser's own validation;
--   C: a changed frame with no functions, re-tagged with the run's key
--      (SipHash-2-4 in Lua below): the checked reader, require included;
--   D: any changed frame, re-tagged, through the data decoder
--      (core.unmarshal_data, what reads answers from other processes):
--      refused with the engine's error, or only data comes out.
-- Then frames whose headers lie (lengths, counts, ids) and a frame nested
-- far deeper than any limit (issue 17 item 16).
--
-- LC_FUZZ_N sets the number of cases (default 20000; `make check-fuzz`
-- runs 100000 under ASan), LC_FUZZ_SEED the seed; LC_FUZZ_VERBOSE=1 lists
-- the errors that are not the engine's own (require's, lua_load's).

local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
local F = dofile(require("helpers").FIXTURES .. "/fn_tasks.lua")

local N = tonumber(os.getenv("LC_FUZZ_N")) or 20000
local SEED = tonumber(os.getenv("LC_FUZZ_SEED")) or 20261201

local helpers = require "helpers"

local function siphash(key, msg)
  local k0, k1 = string.unpack("<i8i8", key)
  local v0, v1 = 0x736f6d6570736575 ~ k0, 0x646f72616e646f6d ~ k1
  local v2, v3 = 0x6c7967656e657261 ~ k0, 0x7465646279746573 ~ k1
  local function rotl(x, b) return (x << b) | (x >> (64 - b)) end
  local function round()
    v0 = v0 + v1; v1 = rotl(v1, 13); v1 = v1 ~ v0; v0 = rotl(v0, 32)
    v2 = v2 + v3; v3 = rotl(v3, 16); v3 = v3 ~ v2
    v0 = v0 + v3; v3 = rotl(v3, 21); v3 = v3 ~ v0
    v2 = v2 + v1; v1 = rotl(v1, 17); v1 = v1 ~ v2; v2 = rotl(v2, 32)
  end
  local len = #msg
  local whole = len - len % 8
  for i = 1, whole, 8 do
    local m = string.unpack("<i8", msg, i)
    v3 = v3 ~ m; round(); round(); v0 = v0 ~ m
  end
  local b = len << 56
  for i = 0, len % 8 - 1 do b = b | (msg:byte(whole + 1 + i) << (8 * i)) end
  v3 = v3 ~ b; round(); round(); v0 = v0 ~ b
  v2 = v2 ~ 0xff; round(); round(); round(); round()
  return string.pack("<i8", v0 ~ v1 ~ v2 ~ v3)
end

local function retag(body) return body .. siphash(core.marshal_key(), body) end

-- Only data: nil, booleans, numbers, strings and tables without metatables.
local function only_data(v, seen)
  local t = type(v)
  if t == "nil" or t == "boolean" or t == "number" or t == "string" then return true end
  if t ~= "table" or getmetatable(v) ~= nil then return false end
  if seen[v] then return true end
  seen[v] = true
  for k, x in next, v do
    if not only_data(k, seen) or not only_data(x, seen) then return false end
  end
  return true
end

--- Real frames: { bytes, has_functions }.
local function corpus()
  require "term"
  local cursor = require "term.cursor"
  local n = 0
  local function inc() n = n + 1 return n end
  local function get() return n end
  local cfg = { name = "cfg", list = { 1, 2.5, "three", true, false }, [1.5] = -0.0 }
  cfg.self = cfg
  local mt = { __index = function(_, k) return k end }
  local obj = setmetatable({ x = 1 }, mt)
  local shared = { "shared" }
  local h
  h = function(k) if k > 0 then return h(k - 1) end return cfg, inc, get end
  local frames = {
    { core.marshal_string(function(k) inc() return get() + k, cfg, string.format("%d", k) end), true },
    { core.marshal_string(inc, get, h, F.globals), true },
    { core.marshal_string({ cfg = cfg, obj = obj, a = shared, b = shared, deep = { { { { {} } } } } }), false },
    { core.marshal_string(string, io.write, cursor, cursor.jump, table.concat, _G), false },
    { core.marshal_string(1, -1, math.maxinteger, math.mininteger, 0.5, 1e300, "", string.rep("s", 300)), false },
    { core.marshal_string(nil, true, false, { [true] = false, [2] = { n = "x" } }, obj, mt), false },
    { core.marshal_string(function() return cursor, shared, obj end, shared), true },
  }
  return frames
end

local mutations = {
  function(s) -- flip one bit
    local i = math.random(#s)
    return s:sub(1, i - 1) .. string.char(s:byte(i) ~ (1 << math.random(0, 7))) .. s:sub(i + 1)
  end,
  function(s) -- one byte set to another value
    local i = math.random(#s)
    return s:sub(1, i - 1) .. string.char(s:byte(i) ~ math.random(1, 255)) .. s:sub(i + 1)
  end,
  function(s) -- 2 to 8 bytes changed
    local b = { s:byte(1, -1) }
    for _ = 1, math.random(2, 8) do
      local i = math.random(#b)
      b[i] = b[i] ~ math.random(1, 255)
    end
    return string.char(table.unpack(b))
  end,
  function(s) -- cut short
    return s:sub(1, math.random(0, #s - 1))
  end,
  function(s) -- cut short inside, end kept (the tag, for B)
    local keep = math.min(8, #s)
    return s:sub(1, math.random(0, #s - keep - 1)) .. s:sub(#s - keep + 1)
  end,
  function(s) -- a byte inserted
    local i = math.random(0, #s)
    return s:sub(1, i) .. string.char(math.random(0, 255)) .. s:sub(i + 1)
  end,
  function(s) -- a byte deleted
    local i = math.random(#s)
    return s:sub(1, i - 1) .. s:sub(i + 1)
  end,
  function(s) -- a piece repeated elsewhere
    local i, j = math.random(#s), math.random(#s)
    if i > j then i, j = j, i end
    local at = math.random(0, #s)
    return s:sub(1, at) .. s:sub(i, j) .. s:sub(at + 1)
  end,
  function(s) -- a byte set to a tag or a length's continuation
    local i = math.random(#s)
    local pick = ("nftidsTFRGMNUe\x80\xff\x00\x01")
    local k = math.random(#pick)
    return s:sub(1, i - 1) .. pick:sub(k, k) .. s:sub(i + 1)
  end,
}

describe("marshal fuzz", function()
  it("has a Lua SipHash that agrees with marshal.c", function()
    for _, f in ipairs(corpus()) do
      assert.are.equal(f[1], retag(f[1]:sub(1, -9)))
    end
  end)

  it(string.format("survives %d changed frames (seed %d)", N, SEED), function()
    math.randomseed(SEED)
    local frames = corpus()
    local plain = {}
    for _, f in ipairs(frames) do
      assert.is_true(pcall(core.unmarshal_string, f[1]))
      if not f[2] then plain[#plain + 1] = f[1] end
    end
    -- changed module names are required: keep that to package.preload
    local path, cpath = package.path, package.cpath
    package.path, package.cpath = "", ""
    local count = { A = 0, B = 0, C = 0, D = 0, ok = 0, refused = 0 }
    local odd = {}
    for case = 1, N do
      local r = math.random()
      local mode = r < 0.25 and "A" or r < 0.65 and "B" or r < 0.8 and "C" or "D"
      local mutate = mutations[math.random(#mutations)]
      local ok, err
      if mode == "C" then
        -- A tagged frame is trusted to hold our bytecode: no 'F' byte may
        -- appear, or random bytes would reach lua_load (by design).
        local body, m
        repeat
          body = plain[math.random(#plain)]:sub(1, -9)
          m = mutate(body)
          if m == body then m = m .. "n" end
        until not m:find("F", 1, true)
        ok, err = pcall(core.unmarshal_string, retag(m))
      elseif mode == "D" then
        -- bytecode included: the data decoder refuses it before lua_load
        local body = frames[math.random(#frames)][1]:sub(1, -9)
        local m = mutate(body)
        if m == body then m = m .. "n" end
        local limits = math.random() < 0.3 and { depth = math.random(1, 8), tables = math.random(1, 8),
          items = math.random(1, 64), string = math.random(1, 64) } or nil
        local vals = table.pack(pcall(core.unmarshal_data, retag(m), limits))
        ok, err = vals[1], vals[2]
        if ok then
          for i = 2, vals.n do
            assert(only_data(vals[i], {}), string.format("case %d (seed %d): code came out of the data decoder",
              case, SEED))
          end
        else
          assert(type(err) == "string" and err:find("^luaconcurrent: "),
            string.format("case %d (seed %d): the data decoder raised %s", case, SEED, tostring(err)))
        end
      else
        local s = frames[math.random(#frames)][1]
        local m = mutate(s)
        if m == s then m = m .. "n" end
        if mode == "A" then
          ok, err = pcall(core.unmarshal_string, m)
          assert(not ok, string.format("case %d (seed %d): a changed frame was accepted", case, SEED))
        else
          ok, err = pcall(core.unmarshal_unchecked, m)
        end
      end
      count[mode] = count[mode] + 1
      if ok then
        count.ok = count.ok + 1
      else
        count.refused = count.refused + 1
        assert(type(err) == "string", string.format("case %d: error object %s", case, type(err)))
        if not err:find("^luaconcurrent: ") then
          local key = err:find("^module ") and "module ... not found (require)"
            or err:match("^[^\n]*"):sub(1, 80)
          odd[key] = (odd[key] or 0) + 1
        end
      end
    end
    package.path, package.cpath = path, cpath
    local tally = {}
    for k, v in pairs(odd) do tally[#tally + 1] = string.format("%6d  %s", v, k) end
    table.sort(tally)
    io.stderr:write(string.format("\nmarshal fuzz: %d cases (A %d, B %d, C %d, D %d): %d read, %d refused\n",
      N, count.A, count.B, count.C, count.D, count.ok, count.refused))
    if #tally > 0 and os.getenv("LC_FUZZ_VERBOSE") then io.stderr:write("  other errors:\n  ", table.concat(tally, "\n  "), "\n") end
    assert.are.equal(N, count.A + count.B + count.C + count.D)
    -- the state is still sound: a real run works
    local r = lc.ProcRunMp({ F.compute }, { { 1 }, { 2 } }):run_all()
    assert.is_true(r[1].success and r[2].success)
  end)

  -- Frames whose headers lie: each is refused with the engine's error by
  -- every reader (checked, data, unchecked), none crashes or allocates
  -- what the header claims.
  local function varint(v)
    local out = {}
    repeat
      local b = v & 0x7f
      v = v >> 7
      out[#out + 1] = string.char(b | (v ~= 0 and 0x80 or 0))
    until v == 0
    return table.concat(out)
  end
  local HEAD = "LCm\1"
  local liars = {
    { "a string longer than the frame", HEAD .. "s" .. varint(1 << 62) .. "abc" },
    { "a string one byte longer than what follows", HEAD .. "s" .. varint(4) .. "abc" },
    { "a length of eleven bytes", HEAD .. "s" .. string.rep("\xff", 10) .. "\x01" },
    { "bytecode of 2^64-1 bytes", HEAD .. "F" .. string.pack("<I8", -1) .. "\0" },
    { "bytecode longer than what follows", HEAD .. "F" .. string.pack("<I8", 100) .. "\27Lua" },
    { "a function of 100 000 upvalues", HEAD .. "F" .. string.pack("<I8", 0) .. varint(100000) },
    { "a module name list of 2^40 names", HEAD .. "M" .. varint(1 << 40) .. varint(1) .. "m" },
    { "a module name longer than the frame", HEAD .. "M" .. varint(1) .. varint(1 << 31) .. "m" },
    { "a reference to table 2^40", HEAD .. "T" .. "R" .. varint(1 << 40) .. "ten" },
    { "a reference ahead of its table", HEAD .. "R" .. varint(0) },
    { "a shared upvalue of a function not yet read", HEAD .. "F" .. string.pack("<I8", 0) .. varint(1)
      .. "U" .. varint(7) .. varint(1) },
    { "a table that never ends", HEAD .. string.rep("Tt", 50) },
    { "a nil table key", HEAD .. "Tnien" },
    { "a tag out of place", HEAD .. "U" },
  }

  it("refuses frames whose headers lie about lengths, counts and ids", function()
    for _, case in ipairs(liars) do
      local name, body = case[1], case[2]
      for _, read in ipairs({ "unmarshal_string", "unmarshal_data", "unmarshal_unchecked" }) do
        local frame = read == "unmarshal_unchecked" and body .. string.rep("\0", 8) or retag(body)
        local ok, err = pcall(core[read], frame)
        assert(not ok, name .. ": " .. read .. " accepted it")
        assert(type(err) == "string" and err:find("^luaconcurrent: "), name .. ": " .. read .. ": " .. tostring(err))
      end
    end
  end)

  it("keeps a frame whose 4-byte length lies waiting, and reads the frames around it", function()
    local reader, out = require("luaconcurrent.frames").reader(), {}
    local a, b = core.marshal_data("a"), core.marshal_data("b")
    reader(string.pack("<s4", a) .. string.pack("<I4", #b + 100) .. b, out)
    assert.are.equal(1, #out)
    assert.are.equal("a", core.unmarshal_data(out[1]))
    reader(string.rep("\0", 99), out)          -- one byte short of the lie
    assert.are.equal(1, #out)
    reader("\0" .. string.pack("<s4", a), out)
    assert.are.equal(3, #out)
    assert.is_false(pcall(core.unmarshal_data, out[2]))   -- the padded frame fails its check
    assert.are.equal("a", core.unmarshal_data(out[3]))
  end)

  -- issue 17 item 16: nesting far deeper than the limit raises in every
  -- reader; without the limit the C recursion would overflow the stack
  -- (SIGSEGV), so the frame is read in a child process.
  it("raises on a frame nested 300 000 tables deep, in every reader, without crashing", function()
    local depth = 300000
    local key = "0123456789abcdef"
    local body = HEAD .. string.rep("Tt", depth) .. "Ten" .. string.rep("en", depth)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(body .. siphash(key, body))
    f:close()
    local out, err, code = helpers.run_lua(string.format([[
      local core = require "luaconcurrent.core"
      core.marshal_set_key(%q)
      local s = io.open(%q, "rb"):read("a")
      for _, read in ipairs({ "unmarshal_string", "unmarshal_data", "unmarshal_unchecked" }) do
        local ok, e = pcall(core[read], s)
        print(read, ok, (tostring(e):gsub("%%[true%%]", "")))
      end
    ]], key, path))
    os.remove(path)
    assert.are.equal(0, code, "the reader crashed: " .. err)
    assert.are.equal(table.concat({
      "unmarshal_string\tfalse\tluaconcurrent: corrupt value in transfer (nested too deep)",
      "unmarshal_data\tfalse\tluaconcurrent: answer refused: a value at [1].<key> (nested more than 200 tables deep)",
      "unmarshal_unchecked\tfalse\tluaconcurrent: corrupt value in transfer (nested too deep)",
    }, "\n") .. "\n", out)
  end)
end)
