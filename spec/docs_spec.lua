-- The documentation cannot rot: every Lua block of README.md and doc/*.md
-- runs (a block after a `<!-- norun: why -->` line is skipped, and those are
-- kept few), the man pages are exactly what scripts/man.lua makes from
-- doc/, and man renders them without a warning.

local helpers = require "helpers"
local lfs = require "lfs"

local ROOT = helpers.ROOT
local EXE = ROOT .. "/build/luaconcurrent"

-- The man pages and the markdown each is made from (the Makefile's `man`
-- target says the same).
local PAGES = {
  { "man/luaconcurrent.1", "doc/executable.md" },
  { "man/lcparallel.1", "doc/lcparallel.md" },
  { "man/luaconcurrent.3", "doc/reference.md", "doc/run-control.md" },
}

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

local function doc_files()
  local files = { "README.md" }
  for name in lfs.dir(ROOT .. "/doc") do
    if name:match("%.md$") then files[#files + 1] = "doc/" .. name end
  end
  table.sort(files)
  return files
end

-- The ```lua blocks of a markdown file: {line =, code =, norun = why|nil}.
local function lua_blocks(path)
  local blocks, lines = {}, {}
  for l in io.lines(ROOT .. "/" .. path) do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    if lines[i]:match("^```lua%s*$") then
      local prev = lines[i - 1] or ""
      local block = { line = i, norun = prev:match("^<!%-%- norun: (.-) %-%->") }
      local marker = prev:match("^<!%-%- file: (.-) %-%->")
      if marker then
        block.file = marker:match("^[^%s,]+")
        block.then_run = marker:match(", then: (.*)$") or ""
      end
      local code = {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^```") do
        code[#code + 1] = lines[i]
        i = i + 1
      end
      block.code = table.concat(code, "\n") .. "\n"
      blocks[#blocks + 1] = block
    end
    i = i + 1
  end
  return blocks
end

describe("documentation", function()
  local all, skipped = 0, 0
  for _, path in ipairs(doc_files()) do
    for _, block in ipairs(lua_blocks(path)) do
      all = all + 1
      local name = string.format("%s:%d runs as written", path, block.line)
      if block.norun or block.file then
        skipped = skipped + 1
      else
        it(name, function()
          -- In a directory of its own, so files an example makes stay there.
          local dir = os.tmpname()
          os.remove(dir)
          assert(lfs.mkdir(dir))
          local file = dir .. "/example.lua"
          local f = assert(io.open(file, "w"))
          f:write(block.code)
          f:close()
          -- With the executable, and with lua5.4 and the module, as README says.
          for _, runner in ipairs({ helpers.q(EXE), helpers.lua_env() .. " lua5.4" }) do
            local out, err, code = helpers.sh("cd " .. helpers.q(dir) .. " && " .. runner
              .. " example.lua </dev/null")
            assert.are.equal(0, code, runner .. ": exit " .. tostring(code) .. "\nstdout:\n" .. out
              .. "\nstderr:\n" .. err)
          end
          helpers.sh("rm -rf " .. helpers.q(dir))
        end)
      end
    end
  end

  -- Blocks that are files of a project (`<!-- file: name -->`), written
  -- beside a link to this checkout; `then: busted` runs busted there.
  for _, path in ipairs(doc_files()) do
    local files, run = {}, nil
    for _, block in ipairs(lua_blocks(path)) do
      if block.file then
        files[#files + 1] = block
        if block.then_run ~= "" then run = block end
      end
    end
    if run then
      it(("%s:%d: the project's files work as written (%s)"):format(path, run.line, run.then_run), function()
        local dir = os.tmpname()
        os.remove(dir)
        assert(lfs.mkdir(dir))
        assert(lfs.link(ROOT, dir .. "/luaconcurrent", true))
        local proj = dir .. "/proj"
        for _, block in ipairs(files) do
          helpers.sh("mkdir -p " .. helpers.q((proj .. "/" .. block.file):match("^(.*)/")))
          local f = assert(io.open(proj .. "/" .. block.file, "w"))
          f:write(block.code)
          f:close()
        end
        local out, err, code = helpers.sh("cd " .. helpers.q(proj) .. " && " .. run.then_run .. " </dev/null")
        helpers.sh("rm -rf " .. helpers.q(dir))
        assert.are.equal(0, code, out .. err)
        assert.truthy(out:find("%d+ success[es]* / 0 failures / 0 errors"), out)
      end)
    end
  end

  it("has runnable Lua blocks and few that are marked not to run", function()
    assert.is_true(all - skipped >= 8, ("%d runnable of %d"):format(all - skipped, all))
    assert.is_true(skipped <= 10, skipped .. " blocks marked norun")
  end)

  it("keeps README at the front door's length", function()
    local n = select(2, read(ROOT .. "/README.md"):gsub("\n", ""))
    assert.is_true(n <= 250, "README.md has " .. n .. " lines")
  end)

  it("has man pages that are what scripts/man.lua makes from doc/", function()
    for _, page in ipairs(PAGES) do
      local args = { "-" }
      for k = 2, #page do args[#args + 1] = helpers.q(ROOT .. "/" .. page[k]) end
      local made, err, code = helpers.sh("lua5.4 " .. helpers.q(ROOT .. "/scripts/man.lua")
        .. " " .. table.concat(args, " "))
      assert.are.equal(0, code, err)
      assert(made == read(ROOT .. "/" .. page[1]),
        page[1] .. " is out of date: run `make man` and commit it")
    end
  end)

  it("has man pages that man renders without warnings", function()
    for _, page in ipairs(PAGES) do
      local out, err, code = helpers.sh("MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "
        .. helpers.q(ROOT .. "/" .. page[1]))
      assert.are.equal(0, code, err)
      assert.are.equal("", err, page[1] .. " warns")
      assert.is_true(#out > 500, page[1] .. " renders nearly empty")
      assert.truthy(out:find("NAME", 1, true))
    end
  end)
end)
