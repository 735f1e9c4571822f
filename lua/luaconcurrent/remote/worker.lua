--- The remote worker: runs on a remote host under plain `lua5.4` (no C
-- engine, no module installed there). The local side (exec/remote.lua)
-- starts it over one ssh session as
--     trap '' PIPE; exec lua5.4 -e '<loader>'
-- and sends "<length>\n" and this file's text (after a `local CFG = {...}`
-- line and remote/wire.lua's text as `local wire`) on stdin; the loader
-- reads exactly that and runs it. Nothing else is sent until this worker
-- says hello (after wire.MARK: the local side skips what the login printed
-- before it). What it needs (mktemp, mkfifo, setsid) is checked first: a
-- host without it is refused with a frame saying why.
--
-- Plain Lua cannot wait on two things at once, so everything the worker
-- waits for arrives as lines on one FIFO in a private temp directory:
--   I<text> / C<text>  a message from the local side, copied from stdin by a
--                      small forwarder process in pieces of at most 4000
--                      bytes (one atomic write each; C = more follows)
--   S <tid> <pgid>     a task started (its process group)
--   D <tid> <status>   a task ended (its shell status: 128+N for signal N)
--   T                  a tick, once a second (heartbeat check)
--   E                  stdin reached EOF: the local side (or ssh) is gone
-- Tasks are started by one persistent `sh` reading commands from a pipe:
-- each in its own session and process group (`setsid`), stdin from a temp
-- file or /dev/null, stdout and stderr to temp files (binary-safe, apart).
-- Messages from the local side are lines of tab-separated fields with
-- "\\", "\n" and "\t" escaped; argv reaches the task's `sh` quoted by
-- luaconcurrent/shellquote.lua, so any bytes but NUL arrive intact.
-- Messages: R tid cwd has_input input nenv env... argv...; K tid (cancel:
-- TERM to the group, KILL after the grace); H (heartbeat, answered with
-- hb); P x (answered with pong x: a round trip over the channel, for
-- measuring).
-- Answers on stdout: the frames of remote/wire.lua (hello, refuse, bye,
-- done, hb, pong).
-- On EOF, every group this worker started gets TERM, then KILL, and the
-- worker exits. No message for CFG.hb_timeout seconds: the same, but it
-- says bye (why) and sends no more results: the local side counts the
-- session lost and runs its tasks again.

-- luacheck: read globals CFG wire shellquote (locals of the text this is sent in)
local CFG = CFG or {}
local grace = tonumber(CFG.grace) or 0.1
local hb_timeout = tonumber(CFG.hb_timeout) or 60
local lua = CFG.lua or "lua5.4"

local q, split = shellquote.quote, wire.split

local function readcmd(cmd)
  local p = io.popen(cmd, "r")
  local s = p and p:read("a") or ""
  if p then p:close() end
  return s
end

local out = io.stdout
out:setvbuf("full")
local alive = true   -- the channel to the local side
local function send(...)
  if not alive then return end
  if not out:write(wire.frame(...)) then alive = false end
end

-- A host that cannot run this worker is refused, saying why.
local function refuse(why)
  out:write(wire.MARK)
  send("refuse", why)
  out:flush()
  os.exit(0, true)
end

local missing = {}
for _, prog in ipairs({ "setsid", "mkfifo", "mktemp", "env" }) do
  if not os.execute("command -v " .. prog .. " >/dev/null 2>&1") then missing[#missing + 1] = prog end
end
if #missing > 0 then
  refuse("the plain worker needs " .. table.concat(missing, ", ") .. " on the host's PATH")
end
local dir = readcmd('mktemp -d "${TMPDIR:-/tmp}/lcremote.XXXXXX" 2>/dev/null'):match("[^\n]+")
if not dir then refuse("mktemp -d failed in ${TMPDIR:-/tmp}") end
local fifo = dir .. "/ev"
if not os.execute("mkfifo " .. q(fifo)) then
  os.execute("rm -rf " .. q(dir))
  refuse("mkfifo failed in " .. dir)
end

-- The worker opens the FIFO first (read-write: it never waits), so the
-- writers below never wait in open(): a writer blocked there would outlive
-- a worker killed before its open (and hold a Slurm step forever). They
-- close what they inherited above fd 2 (Lua cannot set close-on-exec):
-- a writer that kept the read end would never see the worker gone.
local ev = assert(io.open(fifo, "r+"))
-- (dash names descriptors with one digit; the worker has opened few.)
local CLOSE_INHERITED = 'for f in /proc/$$/fd/*; do n=${f##*/}; '
  .. 'case $n in [3-9]) eval "exec $n<&-" ;; esac; done; '

-- The forwarder: stdin lines to the FIFO in atomic pieces.
local FWD = [[io.stdout:setvbuf("full",8192)
for l in io.stdin:lines("L") do
if l:sub(-1)~="\n" then break end
local i,n=1,#l
while n-i+1>4000 do io.stdout:write("C",l:sub(i,i+3998),"\n") io.stdout:flush() i=i+3999 end
io.stdout:write("I",l:sub(i)) io.stdout:flush()
end
io.stdout:write("E\n") io.stdout:flush()]]
os.execute(CLOSE_INHERITED .. "exec 4<&0; " .. q(lua) .. " -e " .. q(FWD)
  .. " <&4 4<&- >" .. q(fifo) .. " 2>/dev/null &")
-- The persistent shell; its ticker also ends when the worker is gone
-- (a host without /proc keeps inherited descriptors: no EPIPE there).
local sh = io.popen(CLOSE_INHERITED .. "exec sh >/dev/null 2>&1 3>" .. q(fifo), "w")
sh:write("while sleep 1; do kill -0 $PPID 2>/dev/null || exit; echo T >&3 || exit; done & ticker=$!\n")
sh:flush()

-- SIGPIPE is ignored in this worker (so a lost channel is an error, not
-- death before cleanup); tasks get it back when env can do that.
local env_default = os.execute("env --default-signal=PIPE true >/dev/null 2>&1") and true or false

local tasks = {}     -- [tid] = { pgid=, kill=true }
local ntasks = 0
local closing = false
local last_heard = os.time()

local function kill(t)
  t.kill = true
  if t.pgid then
    sh:write(string.format("kill -TERM -%d 2>/dev/null; (sleep %g; kill -KILL -%d 2>/dev/null) &\n",
      t.pgid, grace, t.pgid))
  end
end

local function run(m)
  local tid, cwd, has_input, input, nenv = m[2], m[3], m[4], m[5], tonumber(m[6])
  local base = dir .. "/" .. tid
  local stdin = "/dev/null"
  if has_input == "1" then
    stdin = base .. ".i"
    local f = io.open(stdin, "wb")
    f:write(input)
    f:close()
  end
  local words = {}
  local envargs = {}
  if env_default then envargs[1] = "--default-signal=PIPE" end
  for k = 7, 6 + nenv do
    local e = m[k]
    if e:find("=", 1, true) then envargs[#envargs + 1] = e else
      envargs[#envargs + 1] = "-u"; envargs[#envargs + 1] = e end
  end
  if #envargs > 0 then
    words[1] = "env"
    for _, e in ipairs(envargs) do words[#words + 1] = q(e) end
  end
  for k = 7 + nenv, #m do words[#words + 1] = q(m[k]) end
  tasks[tid] = {}
  ntasks = ntasks + 1
  -- A subshell (not in the task's group) starts the task in the background
  -- through setsid (it is no group leader, so setsid execs in place: $! is
  -- the task's pid and process group), reports it, waits, reports the status.
  local qt = q(tid)
  sh:write("( ", cwd ~= "" and ("cd " .. q(cwd) .. " || { printf 'D %s 126\\n' " .. qt .. " >&3; exit; }; ") or "",
    "setsid ", table.concat(words, " "),
    " <", q(stdin), " >", q(base .. ".o"), " 2>", q(base .. ".e"), " 3>&- & ",
    "printf 'S %s %s\\n' ", qt, " $! >&3; wait $!; printf 'D %s %s\\n' ", qt, " $? >&3 ) 2>",
    q(base .. ".e"), " &\n")
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

local function shutdown_start()
  if closing then return end
  closing = true
  for _, t in pairs(tasks) do kill(t) end
end

local function finish_exit()
  -- The ticker would notice the FIFO gone only at its next tick.
  sh:write("kill $ticker 2>/dev/null; exit\n")
  sh:close()
  ev:close()
  os.execute("rm -rf " .. q(dir))
  out:flush()
  os.exit(0, true)
end

local nproc = tonumber(readcmd("getconf _NPROCESSORS_ONLN 2>/dev/null")) or tonumber(readcmd("nproc 2>/dev/null")) or 1
out:write(wire.MARK)
send("hello", wire.PROTOCOL, tostring(math.max(1, math.min(nproc, wire.MAX_CPUS))), _VERSION,
  env_default and "1" or "0", "lua", "", "",
  os.getenv("SLURMD_NODENAME") or "")
out:flush()

local pieces = {}
local closing_ticks = 0
for line in ev:lines() do
  local tag = line:sub(1, 1)
  if tag == "I" or tag == "C" then
    last_heard = os.time()
    pieces[#pieces + 1] = line:sub(2)
    if tag == "I" then
      local m = split(table.concat(pieces))
      pieces = {}
      local what = m[1]
      if what == "R" and not closing then run(m)
      elseif what == "P" then send("pong", m[2] or "")
      elseif what == "H" then send("hb")
      elseif what == "K" then local t = tasks[m[2]]; if t then kill(t) end
      end
    end
  elseif tag == "S" then
    local tid, pgid = line:match("^S (%S+) (%d+)")
    local t = tasks[tid]
    if t then
      t.pgid = tonumber(pgid)
      if t.kill then kill(t) end
    end
  elseif tag == "D" then
    local tid, status = line:match("^D (%S+) (%d+)")
    local t = tasks[tid]
    if t then
      tasks[tid], ntasks = nil, ntasks - 1
      local base = dir .. "/" .. tid
      os.remove(base .. ".i")
      send("done", tid, status, slurp(base .. ".o"), slurp(base .. ".e"), tostring(t.pgid or 0))
    end
  elseif tag == "T" then
    if closing then closing_ticks = closing_ticks + 1 end
    if not closing and os.time() - last_heard > hb_timeout then
      -- Not the tasks' failure: the session is over, they run again.
      send("bye", string.format("the worker heard nothing for %d s and gave up", os.time() - last_heard))
      out:flush()
      alive = false
      shutdown_start()
    end
  elseif tag == "E" then
    alive = false
    shutdown_start()
  end
  if alive and not out:flush() then alive = false; shutdown_start() end
  sh:flush()
  if closing and (ntasks == 0 or closing_ticks > 5) then
    for _, t in pairs(tasks) do
      if t.pgid then sh:write(string.format("kill -KILL -%d 2>/dev/null\n", t.pgid)) end
    end
    finish_exit()
  end
end
finish_exit()
