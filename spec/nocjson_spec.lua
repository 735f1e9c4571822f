-- lua-cjson is optional: only JSON output needs it (res:to_json(), the
-- results file, --json). Without it the module, the executable and
-- lcparallel work, and what needs JSON says what to install.

local helpers = require "helpers"

local EXE = helpers.ROOT .. "/build/luaconcurrent"

-- Lua code that makes cjson impossible to find, as on a system without it.
local HIDE = [[
  for i, search in ipairs(package.searchers) do
    package.searchers[i] = function(name)
      if name == "cjson" or name:match("^cjson%.") then return "\n\tno cjson (hidden by the spec)" end
      return search(name)
    end
  end
  package.loaded.cjson = nil
]]

-- The executable's own Lua finds no cjson: its C path holds nothing.
local NO_CPATH = "LUA_CPATH_5_4='/nonexistent/?.so' LUA_CPATH='/nonexistent/?.so'"

local tmp = helpers.tmp_path

describe("without lua-cjson", function()
  it("the hiding works: require 'cjson' fails", function()
    local out = helpers.run_lua(HIDE .. [[ io.write(tostring(pcall(require, "cjson"))) ]])
    assert.are.equal("false", out)
  end)

  it("require 'luaconcurrent' and a run with a joblog work; to_json and results name lua-cjson", function()
    local log = tmp()
    local out, err = helpers.run_lua(HIDE .. string.format([[
      local lc = require "luaconcurrent"
      local run = lc.ProcRunAsyncio({"sh", "-c"}, {{"a/b", "echo hi"}, {2, "exit 1"}}, {joblog = %q})
      local r = run:run_all()
      print(r[1].success, r[2].success, r[1].stdout == "hi\n")
      local ok, e = pcall(r[1].to_json, r[1])
      print(ok, e)
      ok, e = pcall(lc.ProcRunAsyncio, {"true"}, {{1}}, {results = %q})
      print(ok, e)
      print(package.loaded.cjson == nil)
    ]], log, log .. ".json"))
    local l = {}
    for line in out:gmatch("[^\n]+") do l[#l + 1] = line end
    assert.are.equal("true\tfalse\ttrue", l[1], out .. err)
    local need = "luaconcurrent: JSON output needs lua%-cjson %(the Lua module \"cjson\"%), which is not "
      .. "installed for Lua 5.4: install it %(Debian: apt%-get install lua%-cjson"
    assert.matches("^false\t" .. need, l[2])
    -- at construction: the caller's bad-argument wrapper around the message
    assert.matches("^false\tbad argument #3 to 'ProcRunAsyncio' %(" .. need, l[3])
    assert.are.equal("true", l[4])
    local log_text = helpers.read_file(log)
    assert.matches('\t"a\\/b"\n', log_text)      -- the key column, as cjson writes it
    assert.is_nil(io.open(log .. ".json"))
    os.remove(log)
  end)

  it("the executable runs task files and lcparallel; --json names lua-cjson before any task runs", function()
    local dir = tmp()
    assert(os.execute("mkdir " .. helpers.q(dir)))
    local tasks = dir .. "/tasks.lua"
    local f = assert(io.open(tasks, "w"))
    f:write(string.format([[return { pargs = {"sh", "-c"}, tasks = {{1, "touch %s/ran; echo one"}}, joblog = %q }]],
      dir, dir .. "/log"))
    f:close()
    local out, err, code = helpers.sh(NO_CPATH .. " " .. helpers.q(EXE) .. " " .. helpers.q(tasks))
    assert.are.equal(0, code, err)
    assert.matches("stdout%s+: one", out)
    assert.matches("\t1\n$", helpers.read_file(dir .. "/log"))
    os.remove(dir .. "/ran")
    out, err, code = helpers.sh(NO_CPATH .. " " .. helpers.q(EXE) .. " --parallel -k --joblog "
      .. helpers.q(dir .. "/plog") .. " echo ::: a b")
    assert.are.equal(0, code, err)
    assert.are.equal("a\nb\n", out)
    err, code = select(2, helpers.sh(NO_CPATH .. " " .. helpers.q(EXE) .. " --json " .. helpers.q(tasks)))
    assert.are_not.equal(0, code)
    assert.matches("needs lua%-cjson", err)
    assert.matches("apt%-get install lua%-cjson", err)
    assert.is_nil(io.open(dir .. "/ran"))              -- no task ran
    os.execute("rm -rf " .. helpers.q(dir))
  end)
end)
