-- Installed as users install it: the rock built with LuaRocks into a
-- temporary tree (LuaRocks' own Lua variables, its own build directory),
-- an example run against that tree alone; `make install` with its man
-- pages, so `man lcparallel` finds them.

local helpers = require "helpers"

local ROOT = helpers.ROOT
local q = helpers.q

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. q(d)))
  return d
end

describe("the rock", function()
  local tree, home

  setup(function()
    tree, home = tmpdir(), tmpdir()
  end)

  teardown(function()
    helpers.sh("rm -rf " .. q(tree) .. " " .. q(home))
  end)

  -- luarocks with a private home (no user config of the machine's applies).
  local function luarocks(args)
    return helpers.sh("cd " .. q(ROOT) .. " && HOME=" .. q(home) .. " luarocks --lua-version=5.4 "
      .. "--tree=" .. q(tree) .. " " .. args)
  end

  it("is installed (luarocks is a test dependency: make test installs it)", function()
    local _, err, code = helpers.sh("command -v luarocks")
    assert.are.equal(0, code, err)
  end)

  it("passes luarocks lint", function()
    local out, err, code = helpers.sh("cd " .. q(ROOT) .. " && luarocks lint luaconcurrent-0.1.0-1.rockspec")
    assert.are.equal(0, code, out .. err)
  end)

  it("builds with luarocks make into a tree, and an example runs against that tree alone", function()
    local out, err, code = luarocks("make luaconcurrent-0.1.0-1.rockspec")
    assert.are.equal(0, code, out .. err)
    -- LuaRocks' Lua reached the Makefile: the build used its interpreter.
    assert.truthy((out .. err):find("luaconcurrent 0.1.0-1 is now installed", 1, true), out .. err)
    local paths = ("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s"):format(
      q(tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;;"),
      q(tree .. "/lib/lua/5.4/?.so;;"))
    local example = [[
      local lc = require "luaconcurrent"
      assert(package.searchpath("luaconcurrent.core", package.cpath):find(os.getenv("TREE"), 1, true) == 1)
      local squares = lc.map(function(n) return n * n end, {1, 2, 3}, {mode = "thread"})
      local retc, outp = lc.run_prog({"/bin/echo", "hi"})
      print(lc._VERSION, table.concat(squares, " "), retc, outp)
    ]]
    out, err, code = helpers.sh("cd / && TREE=" .. q(tree) .. " " .. paths .. " lua5.4 -e " .. q(example))
    assert.are.equal(0, code, err)
    assert.are.equal("luaconcurrent 0.1.0\t1 4 9\t0\thi\n\n", out)
    -- The executable and lcparallel are in the tree's bin.
    out, err, code = helpers.sh(q(tree .. "/bin/lcparallel") .. " -k echo ::: a b")
    assert.are.equal(0, code, err)
    assert.are.equal("a\nb\n", out)
    out, err, code = luarocks("show luaconcurrent")
    assert.are.equal(0, code, err)
    assert.truthy(out:find(tree .. "/bin/lcparallel", 1, true), out)
  end)

  it("packs the installed rock as a binary rock", function()
    local dir = tmpdir()
    local out, err, code = helpers.sh("cd " .. q(dir) .. " && HOME=" .. q(home)
      .. " luarocks --lua-version=5.4 --tree=" .. q(tree) .. " pack luaconcurrent")
    assert.are.equal(0, code, out .. err)
    local listing = helpers.sh("cd " .. q(dir) .. " && ls")
    helpers.sh("rm -rf " .. q(dir))
    assert.truthy(listing:find("luaconcurrent%-0%.1%.0%-1%.linux%-[%w_]+%.rock"), listing)
  end)
end)

describe("make install", function()
  it("installs the man pages where man finds them", function()
    local prefix = tmpdir()
    local out, err, code = helpers.sh("cd " .. q(ROOT) .. " && make --no-print-directory install PREFIX=" .. q(prefix))
    assert.are.equal(0, code, out .. err)
    for _, page in ipairs({ "lcparallel", "luaconcurrent" }) do
      out, err, code = helpers.sh("MANPATH=" .. q(prefix .. "/share/man") .. " man -w " .. page)
      assert.are.equal(0, code, err)
      assert.are.equal(prefix .. "/share/man/man1/" .. page .. ".1\n", out)
    end
    out, err, code = helpers.sh("MANPATH=" .. q(prefix .. "/share/man") .. " man -w 3 luaconcurrent")
    assert.are.equal(0, code, err)
    assert.are.equal(prefix .. "/share/man/man3/luaconcurrent.3\n", out)
    helpers.sh("rm -rf " .. q(prefix))
  end)
end)
