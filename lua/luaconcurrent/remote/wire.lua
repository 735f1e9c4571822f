--- The remote sessions' wire format, in one place: both directions, every
-- message's layout, and the checks on what a host sends.
--
-- This file requires nothing: the plain worker (remote/worker.lua) gets
-- its text inlined ahead of its own (remote/bootstrap.lua), so both ends
-- share one copy of the escaping (and, inlined the same way, of
-- luaconcurrent/shellquote.lua).
--
-- Local side -> worker: one line per message, tab-separated fields, each
-- with `\`, newline and tab escaped (M.line, M.split).
-- Worker -> local side: first MARK (whatever a login prints before it is
-- skipped), then length-prefixed frames (string.pack "<s4"), each a frame
-- of "<s4" fields whose first names it. M.answer checks one against
-- ANSWERS: field count, types and ranges. A frame that fails is a
-- protocol error: the host fails, never the run.

local M = {}

M.PROTOCOL = "2"
-- Written by a worker just before its hello: what precedes it is the
-- login's (a .bashrc that echoes, a forced command's banner).
M.MARK = "\0LC-HELLO\0"
M.MAX_CPUS = 4096
M.FRAME_MAX = 256 * 1024 * 1024     -- default cap on a frame from a host

--- The blank-separated words of s (ssh_options, srun_options as a string).
function M.words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

local ESC = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" }
local UNESC = { ["\\"] = "\\", n = "\n", t = "\t" }

--- The fields of t (strings) as one message line; t's fields are escaped
-- in place.
function M.line(t)
  for i = 1, #t do t[i] = t[i]:gsub("[\\\n\t]", ESC) end
  return table.concat(t, "\t") .. "\n"
end

--- A message line (without its newline) -> its fields.
function M.split(msg)
  local t = {}
  for f in (msg .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = (f:gsub("\\(.)", UNESC)) end
  return t
end

--- A task's message: F (function task), X (engine mode) or R (plain
-- mode). env: "NAME=value" or "NAME" (unset) strings; tail: the argv
-- (X, R) or the marshalled key and args (F).
--   R tid cwd has_input input nenv env... argv...
--   X tid timeout cwd has_input input nenv env... argv...
--   F tid timeout cwd nenv env... args
-- Other messages: S n (engine: run at most n at once), K tid (cancel),
-- Q (engine: hold the tasks waiting), L fn (engine: the task function),
-- H (heartbeat), P x (ping).
function M.task(kind, tid, timeout, cwd, input, env, tail)
  local msg
  if kind == "F" then
    msg = { "F", tid, string.format("%.17g", timeout), cwd or "", tostring(#env) }
  elseif kind == "X" then
    msg = { "X", tid, string.format("%.17g", timeout), cwd or "", input and "1" or "0", input or "", tostring(#env) }
  else
    msg = { "R", tid, cwd or "", input and "1" or "0", input or "", tostring(#env) }
  end
  for _, e in ipairs(env) do msg[#msg + 1] = e end
  if type(tail) == "table" then
    for _, a in ipairs(tail) do msg[#msg + 1] = a end
  else
    msg[#msg + 1] = tail
  end
  return M.line(msg)
end

--- One answer frame of the given fields (strings).
function M.frame(...)
  local n = select("#", ...)
  return string.pack("<s4", string.pack("<" .. string.rep("s4", n), ...))
end

--- The header of Lua bytecode here (version, format, sizes, checks), hex:
-- function tasks cross only between ends whose headers match.
function M.bytecode_header()
  return (string.dump(load("return"), true):sub(1, 31):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- ---- what a host may send ---------------------------------------------

local function int_in(lo, hi)
  return function(s)
    local n = s:match("^%-?%d+$") and math.tointeger(tonumber(s))
    return n and n >= lo and n <= hi
  end
end
local function num(s)
  local n = tonumber(s)
  return n ~= nil and n == n and n >= 0 and n < math.huge
end
local function any() return true end
local function one_of(...)
  local set = {}
  for _, v in ipairs({ ... }) do set[v] = true end
  return function(s) return set[s] == true end
end
local function tid(s) return s:match("^%d+$") ~= nil and #s <= 16 end

-- kind -> the checks of its fields after the first (their count is #checks).
local ANSWERS = {
  -- protocol ncpu lua_version env_default mode version bytecode node
  hello = { any, int_in(1, M.MAX_CPUS), any, one_of("0", "1"), one_of("lua", "engine"), any, any, any },
  refuse = { any },                                    -- why
  bye = { any },                                       -- why the worker gives up
  done = { tid, int_in(0, 255), any, any, int_in(0, 2 ^ 31) },  -- status stdout stderr pgid
  rec = { tid, any },                                  -- marshalled record (data)
  fail = { tid, any, any },                            -- message errno_name
  fdone = { tid, any },                                -- a process worker's answer (data)
  fdied = { tid, any },                                -- message
  ftimeout = { tid, num },                             -- seconds run
  held = { tid },                                      -- sent ahead, never started
  hb = {},
  pong = { any },
}
M.ANSWERS = ANSWERS

-- Answers that end a task (their second field is its id).
M.RESULT = { done = true, rec = true, fail = true, fdone = true, fdied = true, ftimeout = true, held = true }

--- A frame from a host -> its fields (f[1] its kind), or nil and why.
function M.answer(blob)
  local f, pos, n = {}, 1, #blob
  while pos <= n do
    if n - pos + 1 < 4 then return nil, "a frame cut short" end
    local len = string.unpack("<I4", blob, pos)
    if len > n - pos - 3 then return nil, "a field longer than its frame" end
    f[#f + 1] = blob:sub(pos + 4, pos + 3 + len)
    pos = pos + 4 + len
  end
  local checks = ANSWERS[f[1]]
  if not checks then return nil, "an unknown frame " .. string.format("%q", tostring(f[1]):sub(1, 40)) end
  if #f ~= #checks + 1 then
    return nil, string.format("a %s frame of %d fields (expected %d)", f[1], #f, #checks + 1)
  end
  for i, check in ipairs(checks) do
    if not check(f[i + 1]) then
      return nil, string.format("a %s frame whose field %d is out of range (%q)", f[1], i + 1, f[i + 1]:sub(1, 40))
    end
  end
  return f
end

--- Before the hello: data is searched for MARK. Returns the bytes after it
-- (the frames) once found, else nil; banner(data) keeps what came before
-- (the first max bytes) for the error text.
function M.banner_skipper(max)
  local seen = ""
  local skipper = {}
  function skipper.feed(data)
    seen = seen .. data
    local at = seen:find(M.MARK, 1, true)
    if at then
      local rest = seen:sub(at + #M.MARK)
      skipper.banner, seen = seen:sub(1, at - 1), ""
      return rest
    end
    -- Keep enough of the tail to find a mark cut in two.
    if #seen > max then seen = seen:sub(1, max // 2) .. seen:sub(-(max // 2)) end
    return nil
  end
  function skipper.text() return seen end
  return skipper
end

return M
