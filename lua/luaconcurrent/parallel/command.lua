--- lcparallel's commands: the shell GNU parallel would pick, its
-- replacement strings, its quoting, and when a job may skip the shell.
--
-- A job's command is what parallel would run: the command words joined by
-- spaces, each replacement string replaced by its values, each value
-- quoted only if it needs it (or, with -q, each word quoted), run as
-- `shell -c command`. When the result cannot differ (the first word a
-- program found in PATH, not a builtin, keyword or exported function, and
-- no shell syntax in the command), the job's words are exec'd directly:
-- the same argv the shell would have built, without the shell's start.

local args = require "luaconcurrent.parallel.args"
local shellquote = require "luaconcurrent.shellquote"

local usage_error = args.usage_error

local M = {}

--- GNU parallel's quoting for Bourne shells: only what needs it.
M.quote = shellquote.quote
local quote = M.quote

-- The shells parallel recognises in a parent's argv[0].
local SHELLS = {}
for s in ([[ash bash bsd-csh csh dash fdsh fish fizsh ksh ksh93 lksh mksh pdksh posh rbash rc rush
  rzsh sash sh static-sh tcsh yash zsh]]):gmatch("%S+") do SHELLS[s] = true end
local FAKE = { sh = { "sh" }, csh = { "tcsh", "csh" }, ash = { "ash", "dash", "sh" },
  dash = { "dash", "ash", "sh" }, bash = { "bash", "sh" }, ksh = { "ksh", "sh" }, zsh = { "zsh", "sh" } }

local function is_file(path)
  local f = io.open(path, "r")
  if not f then return false end
  local ok, _, code = f:read(0)
  f:close()
  return ok ~= nil or code ~= 21    -- 21: EISDIR
end

-- Executable, not a directory (test(1): Lua has no access()); only asked
-- of the few files that exist, once a run.
local function executable(path)
  return is_file(path) and os.execute("test -x " .. M.quote(path) .. " && test ! -d " .. M.quote(path)) == true
end

--- parallel's which: the first PATH entry that is an executable file.
function M.which(prg)
  if prg:find("/", 1, true) then return executable(prg) and prg or nil end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local p = dir .. "/" .. prg
    if is_file(p) and executable(p) then return p end
  end
  return nil
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A shell's name in one argv[0], as parallel's regexp finds it.
local function shell_in(a0)
  local dash, name, rest = a0:match("^%[(%-?)([^%]]+)%]()")
  if not name then
    dash, name, rest = a0:match("^busybox (%-?)([%w%-]+)()")
  end
  if not name then
    dash, name, rest = a0:match("^%S-(%-?)([%w%-]+)()")
    local slash = a0:match("^(%S*/)")
    if slash then dash, name, rest = a0:sub(#slash + 1):match("^(%-?)([%w%-]+)()") end
    if rest and slash then rest = rest + #slash end
  end
  if not name or not SHELLS[name] then return nil end
  local tail = a0:sub(rest)
  if not (tail:match("^ *$") or tail:match("^ [^(]")) then return nil end
  return name, dash
end

--- The shell parallel would run jobs with: $PARALLEL_SHELL, else the
-- nearest ancestor process that is a shell, else $SHELL, else /bin/sh.
function M.shell()
  local s = os.getenv("PARALLEL_SHELL")
  if s and s ~= "" then return s end
  local pid = "self"
  for _ = 1, 64 do
    local cmdline = read_file("/proc/" .. pid .. "/cmdline")
    if cmdline then
      local name = shell_in(cmdline:match("^[^%z]*"))
      if name then
        for _, n in ipairs(FAKE[name] or { name }) do
          local p = M.which(n)
          if p then return p end
        end
        break
      end
    end
    local stat = read_file("/proc/" .. pid .. "/stat")
    local ppid = stat and stat:match("^%d+ %b() %S+ (%d+)")
    if not ppid or ppid == "0" then break end
    pid = ppid
  end
  s = os.getenv("SHELL")
  if s and s ~= "" then return s end
  return "/bin/sh"
end

-- Names a shell runs itself (bash's builtins and keywords; the others'
-- are among them): never exec'd directly.
local BUILTIN = {}
for w in ([==[. : [ alias bg bind break builtin caller cd command compgen complete compopt continue
  declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs
  kill let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt
  source suspend test times trap true type typeset ulimit umask unalias unset wait if then else elif
  fi case esac for select while until do done in function time { } ! [[ ]] coproc]==]):gmatch("%S+") do
  BUILTIN[w] = true
end

-- A replacement string's body (between the braces) as a part:
-- { r = "all" | "pos" | "seq" | "slot", n = position, f = "" . / // /. }
local MODS = { [""] = true, ["."] = true, ["/"] = true, ["//"] = true, ["/."] = true }
local function part_of(body, names)
  if body == "#" then return { r = "seq" } end
  if body == "%" then return { r = "slot" } end
  if MODS[body] then return { r = "all", f = body } end
  local n, f = body:match("^(%-?%d+)(.*)$")
  if n and MODS[f] then
    n = tonumber(n)
    if n ~= 0 then return { r = "pos", n = n, f = f } end
  end
  if names then
    for k, name in ipairs(names) do
      for m in pairs(MODS) do
        if body == name .. m then return { r = "pos", n = k, f = m } end
      end
    end
  end
  return nil
end

-- One word's parts: strings, and replacement strings (with -I, replace
-- stands for {}). Braces that are no replacement string stay as text.
local function parse_word(word, names, replace)
  local parts, has, at = {}, false, 1
  local function text(s)
    if s == "" then return end
    if type(parts[#parts]) == "string" then parts[#parts] = parts[#parts] .. s
    else parts[#parts + 1] = s end
  end
  while at <= #word do
    local ri, rj = nil, nil
    if replace then ri, rj = word:find(replace, at, true) end
    local bi, bj, body = word:find("{([^{}]*)}", at)
    local part = bi and part_of(body, names)
    if part and replace and body == "" then part = nil end     -- -I: {} is text
    if ri and (not bi or ri <= bi or not part) then
      text(word:sub(at, ri - 1))
      parts[#parts + 1] = { r = "all", f = "" }
      has, at = true, rj + 1
    elseif bi then
      text(word:sub(at, bi - 1))
      if part then parts[#parts + 1] = part; has = true else text(word:sub(bi, bj)) end
      at = bj + 1
    else
      text(word:sub(at))
      break
    end
  end
  return parts, has
end

--- A template: the command text cut into words (and the spaces between),
-- each word a list of parts.
function M.template(text, names, replace)
  if text:find("{=", 1, true) and text:find("=}", 1, true) then
    usage_error("{= perl expression =} needs perl: lcparallel does not run perl expressions")
  end
  local words, has = {}, false
  for space, word in text:gmatch("(%s*)(%S*)") do
    if space ~= "" then words[#words + 1] = space end
    if word ~= "" then
      local parts, h = parse_word(word, names, replace)
      words[#words + 1] = parts
      has = has or h
    end
  end
  return { words = words, has = has }
end

local function basename(s) return (s:match("([^/]*)/*$")) end
local function dirname(s)
  local d = s:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end
local function noext(s) return (s:gsub("(.)%.[^./]*$", "%1")) end
local MOD = {
  [""] = function(s) return s end, ["."] = noext, ["/"] = basename, ["//"] = dirname,
  ["/."] = function(s) return noext(basename(s)) end,
}

-- The values a part stands for in a job (flat: its records' values in
-- one list): a list of strings, or a string (seq, slot:
-- never quoted).
local function values_of(part, flat, seq, slot)
  if part.r == "seq" then return tostring(seq) end
  if part.r == "slot" then return tostring(slot) end
  local f = MOD[part.f]
  if part.r == "pos" then
    local n = part.n < 0 and #flat + part.n + 1 or part.n
    local v = flat[n]
    if v == nil then return {} end
    return { f(v) }
  end
  local t = {}
  for _, v in ipairs(flat) do t[#t + 1] = f(v) end
  return t
end

--- The values of records, in one list (also results.lua's).
local function flatten(records)
  local flat = {}
  for _, r in ipairs(records) do for _, v in ipairs(r) do flat[#flat + 1] = v end end
  return flat
end
M.flatten = flatten

local function has_all(word)
  for _, p in ipairs(word) do if type(p) == "table" and p.r == "all" then return true end end
  return false
end

--- One word of the template for a job, as shell text (values quoted) or,
-- direct = true, as argv words appended to out.
local function expand_word(word, flat, seq, slot, q, out)
  local buf, present = {}, false
  for _, p in ipairs(word) do
    if type(p) == "string" then
      buf[#buf + 1] = p
      present = true
    else
      local v = values_of(p, flat, seq, slot)
      if type(v) == "string" then
        buf[#buf + 1] = v
        present = true
      else
        for k, s in ipairs(v) do
          if k > 1 then
            if out then
              out[#out + 1] = table.concat(buf)
              buf = {}
            else
              buf[#buf + 1] = " "
            end
          end
          buf[#buf + 1] = q and quote(s) or s
          present = true
        end
      end
    end
  end
  if out then
    if present then out[#out + 1] = table.concat(buf) end
    return nil
  end
  return table.concat(buf)
end

--- The job's command: o.context "X" repeats a word holding {} (or {.}
-- ...) once per record. Returns the shell text, or with direct the argv.
function M.expand(tpl, records, seq, slot, opts)
  local flat = flatten(records)
  local q, direct, X, wordq = not opts.raw, opts.direct, opts.context == "X", tpl.quote_words
  local out = direct and {} or nil
  local text = {}
  for _, word in ipairs(tpl.words) do
    if type(word) == "string" then
      if not direct then text[#text + 1] = word end
    else
      local reps = (X and has_all(word)) and #records or 1
      for k = 1, reps do
        local fl = flat
        if X and reps > 1 or (X and has_all(word)) then fl = records[k] or {} end
        if wordq then
          -- -q: the word with its values inserted as they are, quoted whole
          local w = expand_word(word, fl, seq, slot, false)
          if direct then out[#out + 1] = w
          else text[#text + 1] = (k > 1 and " " or "") .. quote(w) end
        elseif direct then
          expand_word(word, fl, seq, slot, false, out)
        else
          text[#text + 1] = (k > 1 and " " or "") .. expand_word(word, fl, seq, slot, q)
        end
      end
    end
  end
  if direct then return out end
  return table.concat(text)
end

--- The command text of the template: command words joined (each quoted
-- with -q), " {}" appended when it has no replacement string.
function M.build(command, o, names, no_append)
  local words = {}
  for i, w in ipairs(command) do words[i] = w end
  local text = table.concat(words, " ")
  local tpl
  if o.quote then
    -- -q: each word of the command is one word, whatever it holds
    if text:find("{=", 1, true) and text:find("=}", 1, true) then
      usage_error("{= perl expression =} needs perl: lcparallel does not run perl expressions")
    end
    tpl = { words = {}, has = false }
    for i, w in ipairs(command) do
      if i > 1 then tpl.words[#tpl.words + 1] = " " end
      local parts, h = parse_word(w, names, o.replace)
      tpl.words[#tpl.words + 1] = parts
      tpl.has = tpl.has or h
    end
  else
    tpl = M.template(text, names, o.replace)
  end
  if not tpl.has and #command > 0 and not no_append then
    tpl.words[#tpl.words + 1] = " "
    tpl.words[#tpl.words + 1] = { { r = "all", f = "" } }
    tpl.appended = true
  end
  tpl.quote_words = o.quote
  return tpl
end

local SAFE = "^[%w_%./:,@%%+=%-]*$"

--- Whether jobs may be exec'd directly (see the top), and the program.
function M.direct(tpl, o)
  if o.no_direct then return nil end
  local first = tpl.words[1]
  if type(first) ~= "table" or #first ~= 1 or type(first[1]) ~= "string" then return nil end
  local prog = first[1]
  if prog:find("=", 1, true) or BUILTIN[prog] then return nil end
  if not o.quote then
    for _, word in ipairs(tpl.words) do
      if type(word) == "table" then
        for _, p in ipairs(word) do
          if type(p) == "string" and not p:match(SAFE) then return nil end
        end
        if type(word[1]) == "string" and word[1]:match("^[~#]") then return nil end
      end
    end
  end
  if not prog:find("/", 1, true) then
    if os.getenv("BASH_FUNC_" .. prog .. "%%") or os.getenv("BASH_FUNC_" .. prog .. "()") then return nil end
    -- bash runs a program by its PATH; a name PATH does not know is the
    -- shell's to report
    if not M.which(prog) then return nil end
  elseif not executable(prog) then
    return nil     -- the shell says why it cannot run it
  end
  return prog
end

return M
