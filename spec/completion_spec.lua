-- scripts/completion/lcparallel.bash: what bash offers for lcparallel, run
-- through the completion function as bash's programmable completion calls
-- it, and its option lists checked against parallel/args.lua so they
-- cannot drift.

local helpers = require "helpers"
local args = require "luaconcurrent.parallel.args"

local ROOT = helpers.ROOT
local SCRIPT = ROOT .. "/scripts/completion/lcparallel.bash"

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run _lcparallel for the words (the last is the one being completed) in
-- dir; returns COMPREPLY as a set and the list.
local function complete(words, dir)
  local q = {}
  for i, w in ipairs(words) do q[i] = shq(w) end
  local cmd = ("cd %s && bash --norc --noprofile -c %s 2>&1"):format(shq(dir or ROOT), shq(
    "source " .. shq(SCRIPT) .. " || exit 9; COMP_WORDS=(" .. table.concat(q, " ") .. "); "
    .. "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _lcparallel || exit 8; "
    .. "printf '%s\\n' \"${COMPREPLY[@]}\""))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  assert(ok, ("bash exited %s: %s"):format(tostring(code), out))
  local set, list = {}, {}
  for line in out:gmatch("[^\n]+") do set[line] = true; list[#list + 1] = line end
  return set, list
end

-- A variable's words, read from the script by bash itself.
local function script_words(var)
  local p = assert(io.popen(("bash --norc --noprofile -c %s"):format(shq(
    "source " .. shq(SCRIPT) .. " && printf '%s\\n' $" .. var))))
  local out = p:read("a")
  p:close()
  local set = {}
  for w in out:gmatch("%S+") do set[w] = true end
  return set
end

local function dashes(name) return #name == 1 and "-" .. name or "--" .. name end

local function keys(t)
  local l = {}
  for k in pairs(t) do l[#l + 1] = k end
  table.sort(l)
  return l
end

-- Elements of a not in b.
local function missing(a, b)
  local l = {}
  for k in pairs(a) do if not b[k] then l[#l + 1] = k end end
  table.sort(l)
  return l
end

describe("lcparallel bash completion", function()
  local tmp

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir " .. shq(tmp)))
    for _, name in ipairs({ "jobs.log", "list.txt" }) do
      assert(io.open(tmp .. "/" .. name, "w")):close()
    end
  end)

  teardown(function()
    os.execute("rm -rf " .. shq(tmp))
  end)

  it("completes a long option's prefix to the options it begins", function()
    local _, list = complete({ "lcparallel", "--jo" })
    table.sort(list)
    assert.same({ "--joblog", "--jobs" }, list)
  end)

  it("offers no option lcparallel refuses", function()
    local set = complete({ "lcparallel", "--sh" })
    assert.is_true(set["--shuf"])
    assert.is_nil(set["--shard"])
    assert.is_nil(set["--shebang"])
  end)

  it("completes file names after --joblog, -a, --joblog= and ::::", function()
    local expect = { "jobs.log", "list.txt" }
    for _, words in ipairs({
      { "lcparallel", "--joblog", "" },
      { "lcparallel", "-k", "-a", "" },
      { "lcparallel", "--results", "" },
      { "lcparallel", "--timeline", "" },
      { "lcparallel", "--slf", "" },
      { "lcparallel", "echo", ":::", "x", "::::", "" },
      { "lcparallel", "--joblog", "=", "" },   -- as bash splits --joblog=
    }) do
      local _, list = complete(words, tmp)
      table.sort(list)
      assert.same(expect, list, table.concat(words, " "))
    end
    local _, list = complete({ "lcparallel", "--joblog", "jo" }, tmp)
    assert.same({ "jobs.log" }, list)
  end)

  it("offers nothing for a value that is not a file (-j N)", function()
    local _, list = complete({ "lcparallel", "-j", "" }, tmp)
    assert.same({}, list)
  end)

  it("completes the first word that is not an option as a command", function()
    for _, words in ipairs({
      { "lcparallel", "ec" },
      { "lcparallel", "-j", "4", "ec" },
      { "lcparallel", "-j4", "ec" },
      { "lcparallel", "--jobs", "=", "4", "ec" },
      { "lcparallel", "-kj", "2", "--joblog", "log", "ec" },
    }) do
      local set = complete(words, tmp)
      assert.is_true(set.echo, table.concat(words, " "))
    end
  end)

  it("completes file names, not commands, after the command", function()
    local set = complete({ "lcparallel", "echo", "jo" }, tmp)
    assert.is_true(set["jobs.log"])
    assert.is_nil(set.echo)
  end)

  it("lists exactly parallel/args.lua's options, and which take a value", function()
    local opts, values = {}, {}
    for name, spec in pairs(args.OPTIONS) do
      opts[dashes(name)] = true
      if spec.kind == "value" or spec.kind == "list" then values[dashes(name)] = true end
    end
    assert.is_true(#keys(opts) > 50)
    local listed = script_words("_lcparallel_opts")
    assert.same({}, missing(opts, listed), "in args.lua, not in the completion")
    assert.same({}, missing(listed, opts), "in the completion, not in args.lua")
    local listed_values = script_words("_lcparallel_value_opts")
    assert.same({}, missing(values, listed_values), "take a value in args.lua, not in the completion")
    assert.same({}, missing(listed_values, values), "take a value in the completion, not in args.lua")
    assert.same({}, missing(script_words("_lcparallel_file_opts"), listed_values),
      "file options that take no value")
  end)
end)
