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
      assert.are.equal(r.stdout, d.stdout)
    end)

    it("encodes a list arg as an array", function()
      local r = lc.ProcRunAsyncio({ "/bin/echo" }, { { "k", { "p", "q" } } }, {}):run_all()[1]
      local d = cjson.decode(r:to_json())
      assert.are.same({ "p", "q" }, d.arg)
    end)
  end)
end)
