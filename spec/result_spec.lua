-- ProcResult formatting: res:print(), res:to_json(), run:print_results(),
-- the verb option. print() output is captured by running a fixture in a
-- child lua5.4 (print writes to the C stdout, which a spec cannot redirect).

local lc = require "luaconcurrent"
local cjson = require "cjson"
local helpers = require "helpers"

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function field(out, name)
  return out:match("\n%s*" .. name .. "%s*: ([^\n]*)")
end

describe("ProcResult", function()
  helpers.leak_check(before_each, after_each)

  describe("print()", function()
    it("prints pyconcurrent's layout", function()
      local out, err, code = helpers.run_fixture("print_result.lua", { "one" })
      assert.are.equal(0, code, err)
      local l = lines(out)
      assert.matches("^====+$", l[1])
      assert.matches("^key%s+: k1$", l[2])
      assert.are.equal("true", field(out, "success"))
      assert.are.equal("false", field(out, "timeout"))
      assert.are.equal("0", field(out, "returncode"))
      assert.are.equal("a1", field(out, "arg"))
      assert.matches("^hello a1", field(out, "stdout"))
      assert.matches("^%d+%.%d$", field(out, "time_start"))
      assert.matches("^%d+%.%d$", field(out, "time_run"))
      assert.is_nil(field(out, "stderr")) -- empty stderr is not printed
    end)

    it("prints exception and error of a failed task", function()
      local out, err, code = helpers.run_fixture("print_result.lua", { "fail" })
      assert.are.equal(0, code, err)
      assert.are.equal("false", field(out, "success"))
      assert.are.equal("FileNotFoundError", field(out, "exception"))
      assert.matches("ENOENT", field(out, "error"), 1, true)
    end)
  end)

  describe("run:print_results()", function()
    it("prints every result in task order", function()
      local out, err, code = helpers.run_fixture("print_result.lua", { "all" })
      assert.are.equal(0, code, err)
      local keys, seps = {}, 0
      for _, l in ipairs(lines(out)) do
        if l:match("^====+$") then seps = seps + 1 end
        local k = l:match("^key%s+: (.*)$")
        if k then keys[#keys + 1] = k end
      end
      assert.are.equal(3, seps)
      assert.are.same({ "k1", "k2", "k3" }, keys)
    end)
  end)

  describe("verb", function()
    it("writes lines about tasks to stderr, nothing to stdout", function()
      local out, err, code = helpers.run_fixture("print_result.lua", { "verb" })
      assert.are.equal(0, code, err)
      assert.are.equal("", out)
      local n = #lines(err)
      assert.is_true(n >= 3, "verb stderr:\n" .. err)
      for _, k in ipairs({ "vk1", "vk2", "vk3" }) do assert.matches(k, err, 1, true) end
    end)

    it("is silent without verb", function()
      local out, err, code = helpers.run_fixture("print_result.lua", { "quiet" })
      assert.are.equal(0, code, err)
      assert.are.same({ "", "" }, { out, err })
    end)
  end)

  describe("to_json()", function()
    -- RFC 4648 base64, decoded independently of the encoder under test
    local function decode64(s)
      local A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
      local bits = s:gsub("=", ""):gsub(".", function(c)
        local v = A:find(c, 1, true) - 1
        local b = {}
        for i = 5, 0, -1 do b[#b + 1] = (v >> i) & 1 end
        return table.concat(b)
      end)
      return (bits:gsub("%d%d%d?%d?%d?%d?%d?%d?", function(byte)
        if #byte ~= 8 then return "" end
        return string.char(tonumber(byte, 2))
      end))
    end

    it("encodes every field; cjson parses it", function()
      local r = lc.ProcRunAsyncio({ "/bin/sh", "-c", 'echo "o $0"; echo e >&2' }, { { "k", "x" } }, {}):run_all()[1]
      local d = cjson.decode(r:to_json())
      assert.are.equal("k", d.key)
      assert.are.equal("x", d.arg)
      assert.is_true(d.success)
      assert.is_false(d.timeout)
      assert.are.equal(0, d.returncode)
      assert.are.equal("o x\n", d.stdout)
      assert.are.equal("e\n", d.stderr)
      assert.are.equal(r.pid, d.pid)
      -- cjson encodes numbers with 14 significant digits by default
      for _, name in ipairs({ "time_start", "time_end", "time_run" }) do
        assert.is_number(d[name])
        assert.is_true(math.abs(r[name] - d[name]) < 1e-3, name)
      end
      for _, name in ipairs({ "exception", "signal", "error", "answer" }) do
        assert.is_true(d[name] == nil or d[name] == cjson.null, name .. " should be null or absent")
      end
    end)

    it("encodes a failure and binary output", function()
      local r = lc.ProcRunAsyncio({ "/bin/sh", "-c", "printf 'a\\000b\\377'; kill -9 $$" }, { { 7 } }, {}):run_all()[1]
      local d = cjson.decode(r:to_json())
      assert.are.equal(7, d.key)
      assert.is_false(d.success)
      assert.are.equal(-9, d.returncode)
      assert.are.equal(9, d.signal)
      assert.are.equal("killed by signal 9 (SIGKILL)", d.error)
      assert.are.equal("a\0b\255", r.stdout)
      -- not UTF-8: text with U+FFFD for the bad byte, the bytes in base64
      assert.are.equal("a\0b\u{FFFD}", d.stdout)
      assert.are.equal("YQBi/w==", d.stdout_b64)
    end)

    it("writes valid UTF-8 whatever the output, and the exact bytes beside it", function()
      local bytes = "\255\254ok\192 caf\195\169 \237\160\128 \240\159\152\128"
      local r = lc.ProcResult.new("k")
      r.stdout, r.stderr, r.error = bytes, "plain \226\156\147", bytes:sub(1, 2)
      local json = r:to_json()
      assert.is_not_nil(utf8.len(json), "the JSON text is not valid UTF-8")
      local d = cjson.decode(json)
      -- valid sequences kept (é, 😀), each invalid byte one U+FFFD
      -- (a lone 0xC0, a UTF-16 surrogate encoded in UTF-8: three bytes)
      assert.are.equal("\u{FFFD}\u{FFFD}ok\u{FFFD} café \u{FFFD}\u{FFFD}\u{FFFD} \u{1F600}", d.stdout)
      assert.are.equal(bytes, decode64(d.stdout_b64))
      assert.are.equal("plain \u{2713}", d.stderr)
      assert.is_nil(d.stderr_b64)
      assert.are.equal(r.error, decode64(d.error_b64))
      assert.is_nil(d.unencoded)
    end)

    it("base64 round-trips every byte and every length", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      for n = 0, 6 do
        assert.are.equal(all:sub(1, n), decode64(lc.ProcResult.base64(all:sub(1, n))))
      end
      assert.are.equal(all, decode64(lc.ProcResult.base64(all)))
      assert.are.equal("Zm9vYmFy", lc.ProcResult.base64("foobar"))
    end)

    it("writes a field it cannot encode as null and says why, without raising", function()
      local r = lc.ProcResult.new({ "\255" }, { n = 0 / 0 })
      r.answer = print
      r.success = true
      local json, unencoded = r:to_json_checked()
      assert.are.equal(json, r:to_json())
      local d = cjson.decode(json)
      assert.are.equal(cjson.null, d.key)
      assert.are.equal(cjson.null, d.arg)
      assert.are.equal(cjson.null, d.answer)
      assert.is_true(d.success)
      assert.are.same(unencoded, d.unencoded)
      assert.matches("^cannot encode function as JSON", d.unencoded.answer)
      assert.matches("not valid UTF%-8", d.unencoded.key)
      assert.matches("^cannot encode table as JSON", d.unencoded.arg)
      assert.is_nil(select(2, lc.ProcResult.new(1):to_json_checked()))
      assert.are.equal(1, select("#", r:to_json()))
    end)

    it("encodes output past its chunk size exactly as in one piece: text, U+FFFD, base64", function()
      -- 3 chunks and more; multi-byte characters across every chunk edge
      local parts = {}
      for i = 1, 70000 do parts[i] = ({ "é", "€", "\240\157\132\158", "a", "\255", "/", "\n" })[i % 7 + 1] end
      local text = table.concat(parts)
      local bytes = text:gsub("\255", "")
      for _, s in ipairs({ text, bytes, text:sub(2), text:sub(3) }) do
        local d = cjson.decode(setmetatable({ key = 1, stdout = s }, lc.ProcResult):to_json())
        if utf8.len(s) then
          assert.are.equal(s, d.stdout)
          assert.is_nil(d.stdout_b64)
        else
          assert.are.equal(s, decode64(d.stdout_b64))
          -- each byte that starts no valid character becomes U+FFFD
          local out, i = {}, 1
          while i <= #s do
            if utf8.len(s, i, i) == 1 then
              local j = (utf8.offset(s, 2, i) or #s + 1) - 1
              out[#out + 1] = s:sub(i, j)
              i = j + 1
            else
              out[#out + 1] = "\u{FFFD}"
              i = i + 1
            end
          end
          local fixed = table.concat(out)
          assert.are.equal(#fixed, #d.stdout)
          assert.are.equal(fixed, d.stdout)
        end
      end
    end)

    it("a results line of 8 MB of output that is not UTF-8 takes a small multiple of it in memory", function()
      -- Before: a table entry per replaced byte and per base64 pair, over
      -- 60 times the output at its peak (3.1 GB for 50 MB).
      local out, err = helpers.run_lua([[
        local lc = require "luaconcurrent"
        local function hwm()
          return tonumber(io.open("/proc/self/status"):read("a"):match("VmHWM:%s*(%d+)")) * 1024
        end
        local path = os.tmpname()
        local run = lc.ProcRunAsyncio({"sh", "-c"}, {{1, "head -c 8000000 /dev/urandom"}}, {results = path})
        local before = hwm()
        run:run_all()
        local size = #io.open(path):read("a")
        os.remove(path)
        io.write(before, " ", hwm(), " ", size, " ", #run.result[1].stdout)
      ]])
      local before, after, size, n = out:match("^(%d+) (%d+) (%d+) (%d+)$")
      assert.is_not_nil(before, out .. err)
      assert.are.equal("8000000", n)
      assert.is_true(tonumber(size) > 8000000 * 2)     -- text and base64 both
      local grew = (tonumber(after) - tonumber(before)) / 8000000
      assert.is_true(grew < 25, string.format("peak grew by %.1f times the output", grew))
    end)

    it("called with a dot instead of a colon: a named error", function()
      local run = lc.ProcRunAsyncio({ "true" }, { { 1 } })
      local r = run:run_all()[1]
      assert.has_error(function() r.to_json() end, "luaconcurrent: to_json is a method: call it as res:to_json()")
      assert.has_error(function() r.to_json_checked() end,
        "luaconcurrent: to_json_checked is a method: call it as res:to_json_checked()")
      assert.has_error(function() r.print() end, "luaconcurrent: print is a method: call it as res:print()")
      assert.has_error(function() run.print_results() end,
        "luaconcurrent: print_results is a method: call it as run:print_results()")
      assert.has_error(function() r.to_json("x") end, "luaconcurrent: to_json is a method: call it as res:to_json()")
    end)

    it("encodes a list arg as an array", function()
      local r = lc.ProcRunAsyncio({ "/bin/echo" }, { { "k", { "p", "q" } } }, {}):run_all()[1]
      local d = cjson.decode(r:to_json())
      assert.are.same({ "p", "q" }, d.arg)
    end)
  end)
end)
