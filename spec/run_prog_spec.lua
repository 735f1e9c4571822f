-- lc.run_prog(pargs, opts) -> retc, stdout, stderr, res ; lc.sleep ; lc.VERSION

local lc = require "luaconcurrent"
local helpers = require "helpers"

describe("run_prog", function()
  helpers.leak_check(before_each, after_each)

  it("runs a succeeding program", function()
    local retc, out, err, res = lc.run_prog({ "/bin/echo", "hi" })
    assert.are.same({ 0, "hi\n", "" }, { retc, out, err })
    assert.are.equal(lc.ProcResult, getmetatable(res))
    assert.is_true(res.success)
    assert.are.equal(0, res.returncode)
    assert.are.equal("hi\n", res.stdout)
  end)

  it("runs a failing program", function()
    local retc, out, err, res = lc.run_prog({ "/bin/sh", "-c", "echo out; echo err >&2; exit 3" })
    assert.are.same({ 3, "out\n", "err\n" }, { retc, out, err })
    assert.is_false(res.success)
    assert.are.equal("exited with status 3", res.error)
  end)

  it("works without an opts table and with an empty one", function()
    assert.are.equal(0, (lc.run_prog({ "/bin/true" })))
    assert.are.equal(1, (lc.run_prog({ "/bin/false" }, {})))
  end)

  it("feeds input to stdin", function()
    local retc, out = lc.run_prog({ "/usr/bin/sort" }, { input = "b\na\n" })
    assert.are.same({ 0, "a\nb\n" }, { retc, out })
  end)

  it("gives an empty stdin without input", function()
    local retc, out = lc.run_prog({ "/usr/bin/wc", "-c" })
    assert.are.equal(0, retc)
    assert.are.equal("0", out:match("%d+"))
  end)

  it("sets and unsets environment variables", function()
    local retc, out = lc.run_prog({ "/bin/sh", "-c", 'echo "$LC_RP_X:${HOME-none}"' },
      { env = { LC_RP_X = "42", HOME = false } })
    assert.are.same({ 0, "42:none\n" }, { retc, out })
  end)

  it("keeps the rest of the environment", function()
    local _, out = lc.run_prog({ "/bin/sh", "-c", 'echo "$PATH"' }, { env = { LC_RP_Y = "1" } })
    assert.are.equal(os.getenv("PATH") .. "\n", out)
  end)

  it("runs in cwd", function()
    local retc, out = lc.run_prog({ "/bin/pwd" }, { cwd = "/tmp" })
    assert.are.same({ 0, "/tmp\n" }, { retc, out })
  end)

  it("times out, killing the program", function()
    local m = helpers.marker()
    local t0 = helpers.mono()
    local retc, out, _, res = lc.run_prog({ "/bin/sh", "-c", "echo started; sleep " .. m }, { timeout = 0.3 })
    local elapsed = helpers.mono() - t0
    local left = helpers.wait_marker_gone(m)
    helpers.kill_marker(m)
    assert.is_true(retc < 0, "retc " .. tostring(retc))
    assert.are.equal("started\n", out)
    assert.is_true(res.timeout)
    assert.are.equal("TimeoutError", res.exception)
    assert.is_true(elapsed >= 0.29 and elapsed < 5, "elapsed " .. elapsed)
    assert.are.same({}, left)
  end)

  it("test=true runs nothing and returns 0, '', ''", function()
    local path = os.tmpname()
    os.remove(path)
    local retc, out, err = lc.run_prog({ "/bin/sh", "-c", "echo x > " .. path .. "; exit 9" }, { test = true })
    local created = io.open(path) ~= nil
    os.remove(path)
    assert.are.same({ 0, "", "" }, { retc, out, err })
    assert.is_false(created)
  end)

  it("test=true with verb=true prints the command line", function()
    local out, err, code = helpers.run_lua([[
      local lc = require "luaconcurrent"
      local a, b, c = lc.run_prog({"/bin/echo", "lc-verb-word"}, {test = true, verb = true})
      io.stdout:write("RET ", tostring(a), "|", b, "|", c, "\n")
    ]])
    assert.are.equal(0, code, err)
    assert.matches("RET 0||\n", out, 1, true)
    assert.matches("lc-verb-word", out .. err, 1, true)
  end)

  it("missing program: retc -1 and the error in stderr", function()
    local retc, out, err, res = lc.run_prog({ "/nonexistent/lc-rp" })
    assert.are.equal(-1, retc)
    assert.are.equal("", out)
    assert.matches("ENOENT", err, 1, true)
    assert.matches("/nonexistent/lc-rp", err, 1, true)
    assert.are.equal("FileNotFoundError", res.exception)
  end)

  it("killed by a signal: retc -signum", function()
    local retc, _, _, res = lc.run_prog({ "/bin/sh", "-c", "kill -9 $$" })
    assert.are.equal(-9, retc)
    assert.are.equal(9, res.signal)
  end)

  it("accepts numbers in pargs", function()
    local retc, out = lc.run_prog({ "/bin/echo", 1, 2.5 })
    assert.are.same({ 0, "1 2.5\n" }, { retc, out })
  end)

  it("can be called from inside a runner's callback", function()
    local outs = {}
    lc.ProcRunAsyncio({ "/bin/true" }, { { 1 }, { 2 } }, {
      on_result = function(res)
        local retc, out = lc.run_prog({ "/bin/echo", "cb" .. res.key })
        outs[res.key] = retc .. ":" .. out
      end,
    }):run_all()
    assert.are.same({ "0:cb1\n", "0:cb2\n" }, outs)
  end)

  it("rejects bad input with a luaconcurrent: error", function()
    assert.has_error(function() lc.run_prog({}) end, "bad argument #1 to 'run_prog' (luaconcurrent: pargs must be a non-empty table)")
    assert.has_error(function() lc.run_prog({ "/bin/true" }, { timout = 1 }) end,
      "bad argument #2 to 'run_prog' (luaconcurrent: unknown option 'timout')")
    assert.has_error(function() lc.run_prog({ "/bin/true" }, { timeout = -1 }) end,
      "bad argument #2 to 'run_prog' (luaconcurrent: timeout must be a non-negative number, got -1)")
  end)
end)

describe("lc.sleep", function()
  it("blocks for about the given time", function()
    local t0 = helpers.mono()
    lc.sleep(0.2)
    local dt = helpers.mono() - t0
    assert.is_true(dt >= 0.19 and dt < 2, "slept " .. dt)
  end)

  it("accepts 0", function()
    local t0 = helpers.mono()
    lc.sleep(0)
    assert.is_true(helpers.mono() - t0 < 1)
  end)
end)

describe("module", function()
  it("has VERSION 0.1.0 and the documented names", function()
    assert.are.equal("0.1.0", lc.VERSION)
    for _, name in ipairs({ "ProcRunAsyncio", "ProcRunMp" }) do
      local v = lc[name]
      local mt = getmetatable(v)
      assert.is_true(type(v) == "function" or (mt ~= nil and mt.__call ~= nil), name .. " is not callable")
    end
    assert.is_function(lc.run_prog)
    assert.is_function(lc.sleep)
    assert.is_table(lc.ProcResult)
  end)
end)
