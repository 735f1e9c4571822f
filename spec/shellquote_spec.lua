-- luaconcurrent.shellquote: the one shell quoting of the Lua layer (GNU
-- parallel's: only what needs it). Its output is read back by real
-- shells: every word, of any bytes but NUL, must come back as itself,
-- one word, with nothing expanded.

local shellquote = require "luaconcurrent.shellquote"
local helpers = require "helpers"

local quote = shellquote.quote

-- The words each shell makes of `set -- <words>`, run in a
-- directory with files that a glob left unquoted would match.
local function read_back(shell, lines)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. helpers.q(dir) .. " && cd " .. helpers.q(dir)
    .. " && touch -- a ab -x '~' '#' 'a b'"))
  local script = dir .. "/script"
  local f = assert(io.open(script, "wb"))
  f:write("x=EXPANDED; export HOME=/EXPANDED\n")
  -- Each line: its word count, then its words, each ended by NUL.
  for _, words in ipairs(lines) do f:write("set -- ", shellquote.command(words), "; printf '%s\\0' \"$#\" \"$@\"\n") end
  f:close()
  local p = assert(io.popen("cd " .. helpers.q(dir) .. " && " .. shell .. " ./script", "r"))
  local out = p:read("a")
  p:close()
  os.execute("rm -rf " .. helpers.q(dir))
  local stream, got, k = {}, {}, 1
  for w in out:gmatch("([^%z]*)%z") do stream[#stream + 1] = w end
  while k <= #stream do
    local n = assert(math.tointeger(tonumber(stream[k])), "a word count")
    got[#got + 1] = table.move(stream, k + 1, k + n, 1, {})
    k = k + n + 1
  end
  return got
end

local SPECIAL = " \t\n'\"\\`$!#&*?[]{}()<>|;~=%^,:@-"

-- A random word: often the shell's special bytes, sometimes any byte
-- (not NUL: no argv holds one), non-UTF-8 included.
local function random_word(rnd)
  local n = rnd(0, 12)
  local t = {}
  for i = 1, n do
    local k = rnd(1, 4)
    if k == 1 then
      local j = rnd(1, #SPECIAL)
      t[i] = SPECIAL:sub(j, j)
    elseif k == 2 then
      t[i] = string.char(rnd(1, 255))
    else
      t[i] = string.char(rnd(0x61, 0x7a))
    end
  end
  return table.concat(t)
end

local FIXED = { "", "-", "-n", "--", "-e", "~", "~root", "a=b", "=", "#", "#x", "*", "?", "[a]", "a*", "{a,b}",
  "'", "''", "a'b", "'a'", "\"", "\\", "\\n", "\n", "a\nb", "\t", " ", "$x", "${x}", "`x`", "$(x)", "!",
  "é", "\255\254", "\192\128", "a b", "if", "&&", ";", "|", ">x", "<x", "2>&1", "%", "+", ".", "/", "a/b" }

describe("shellquote.quote", function()
  it("is GNU parallel's: words of letters, digits and -_.+/ as they are, others single-quoted", function()
    assert.are.equal("''", quote(""))
    assert.are.equal("abc-_.+/09XY", quote("abc-_.+/09XY"))
    assert.are.equal("'a b'", quote("a b"))
    assert.are.equal([["'"]], quote("'"))
    assert.are.equal([['a'"'"'b']], quote("a'b"))
    assert.are.equal([["'"'x'"'"]], quote("'x'"))
    assert.are.equal("'~'", quote("~"))
    assert.are.equal("'\195\169'", quote("\195\169"))    -- not ASCII: quoted, whatever the locale
  end)

  -- sh (dash on Debian) and bash always; the others where installed.
  for _, shell in ipairs({ "sh", "bash", "zsh", "ksh", "mksh", "busybox sh" }) do
    local have = shell == "sh" or shell == "bash"
      or os.execute("command -v " .. shell:match("%S+") .. " >/dev/null 2>&1")
    if have then it(shell .. " reads every quoted word back as itself: fixed cases and 400 random command lines", function()
      local seed = os.time()
      math.randomseed(seed)
      local lines = {}
      for _, w in ipairs(FIXED) do lines[#lines + 1] = { w } end
      lines[#lines + 1] = FIXED                         -- all of them, one command line
      for _ = 1, 400 do
        local words = {}
        for j = 1, math.random(1, 5) do words[j] = random_word(math.random) end
        lines[#lines + 1] = words
      end
      local got = read_back(shell, lines)
      assert.are.equal(#lines, #got, "lines read back (seed " .. seed .. ")")
      for i, words in ipairs(lines) do
        assert.are.same(words, got[i], ("seed %d, line %d: %s"):format(seed, i, shellquote.command(words)))
      end
    end) end
  end
end)
