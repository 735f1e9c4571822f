--- The engine-mode remote worker: `luaconcurrent --remote-worker`, started
-- over the host's ssh session when the host has the luaconcurrent
-- executable (see remote/executor.lua). It speaks the plain worker's
-- protocol (remote/worker.lua) to the local side and runs tasks with the
-- local executors (remote/engine_fn.lua): exec/subprocess for program
-- tasks, exec/processes for function tasks; no shell, no temp files.
--
-- Start: the local side sends the same head as to the plain worker,
-- "<length>\n" and a text whose first line is `local CFG = {...}` (the
-- grace, heartbeat timeout and this host's two keys: `key`, what it is
-- sent is checked with (this process's key from then on), and `up`, what
-- it answers is tagged with; it never sees the run's key); the rest (the
-- plain worker) is not run here. Answers are data only: the local side
-- reads them with the data decoder under the up-key. Nothing else arrives before our hello:
--   hello PROTOCOL ncpu _VERSION 1 "engine" <luaconcurrent version> <bytecode header, hex> node
-- (node: SLURMD_NODENAME in a Slurm step, else "")
-- Then the channel (stdin) is read through a relay child (`cat`, given the
-- channel as its fd 2 by luaconcurrent.remote_channel, main.c): the engine
-- watches only its children's pipes.
--
-- Messages (lines of tab-separated escaped fields; remote/wire.lua):
--   X tid timeout cwd has_input input nenv env... argv...   a subprocess task
--        (own process group; timeout > 0: TERM at it, KILL grace later)
--   S n          run at most n tasks (X and F) at once; the others wait
--                here, in order (the local side sends ahead to hide the
--                channel's round trip)
--   K tid        cancel: the task's group (or its worker process) is killed
--                and it is answered (a waiting task: its record says
--                interrupted)
--   L fn         the run's task function (marshalled, checked with the key)
--   F tid timeout cwd nenv env... args   a function task (args: marshalled
--                key, args); timeout > 0: its process worker is killed at
--                it (as locally with isolation = "process") and the
--                answer is ftimeout
--   Q            hold: the waiting tasks never start (answered held tid)
--   H            heartbeat, answered with hb
--   P x          answered with pong x
-- Answers (length-prefixed frames of "<s4" fields):
--   rec tid <marshalled process record> | fail tid message errno_name
--   | fdone tid <a process worker's answer, as read, marshalled again>
--   | fdied tid message | ftimeout tid seconds_run | held tid | hb | pong x
-- On EOF of the channel, a failed write to it, or no message for
-- CFG.hb_timeout seconds, every group started gets TERM, then KILL after
-- CFG.grace (the run's kill_grace), and we exit.

local core = require "luaconcurrent.core"
local channel = require "luaconcurrent.remote_channel"
local wire = require "luaconcurrent.remote.wire"
local tasks = require "luaconcurrent.remote.engine_fn"

local M = {}

local now = core.now

--- The text the local side sends first: its `local CFG = {...}` line, or
-- nil when the head is cut short.
local function read_config()
  local n = tonumber(io.stdin:read("l"))
  local src = n and io.stdin:read(n)
  if not src then return nil end
  local cfgline = src:match("^local CFG = ([^\n]*)\n")
  return cfgline and load("return " .. cfgline, "=cfg", "t", {})() or {}
end

local Worker = {}
Worker.__index = Worker
tasks.install(Worker)

function Worker.new(cfg)
  local out = io.stdout
  out:setvbuf("full")
  local _, exe = core.host()
  return setmetatable({
    cfg = cfg, hb_timeout = tonumber(cfg.hb_timeout) or 60, grace = tonumber(cfg.grace) or 0.1,
    out = out, alive = true,   -- alive: the channel still takes our writes
    loop = core.new_loop(), exe = exe,
    relay = nil,           -- the process id of the channel's relay
    buf = "",              -- the channel's text after its last full line
    last_heard = now(),
    closing = false,
    limit = math.huge,     -- S
    nrun = 0,              -- tasks handed to an executor, not answered yet
    fn_bytes = nil, fn_gen = 0,   -- the task function (L), and how many came
    waiting = {}, wfirst = 1, wlast = 0,   -- X and F messages beyond the limit
    queued = {},           -- [tid] = true while waiting
    -- (remote/engine_fn.lua's:)
    exs = {}, ex_by = {},  -- the executors, in order, and by kind and settings
    running = {},          -- [index] = { tid, e }, handed to executor e
    index_of = {},         -- [tid] = index
    nindex = 0,
    procs = {},            -- [process id] = true, the subprocess tasks' (for TERM)
    envs = {},             -- env list (joined) -> envblock
  }, Worker)
end

--- Values as an answer frame for the local side: under the up-key.
function Worker:data(...)
  return core.marshal_keyed(self.up, nil, ...)
end

function Worker:send(...)
  if not self.alive then return end
  if not self.out:write(wire.frame(...)) then self.alive = false end
end

--- Starts the relay that reads the channel for us; false if it cannot.
function Worker:start_relay()
  channel.channel_as_stderr(true)
  local relay, message = self.loop:spawn({ "sh", "-c", "exec cat <&2 2>/dev/null" }, nil, nil, nil, 0, 0, true)
  channel.channel_as_stderr(false)
  if not relay then
    io.stderr:write("luaconcurrent remote worker: cannot start the channel relay: ", tostring(message), "\n")
    return false
  end
  self.loop:close_input(relay)
  self.relay = relay
  return true
end

function Worker:hello()
  self.out:write(wire.MARK)
  self:send("hello", wire.PROTOCOL, tostring(math.max(1, math.min(core.cpu_count(), wire.MAX_CPUS))), _VERSION,
    "1", "engine", channel.version, wire.bytecode_header(), os.getenv("SLURMD_NODENAME") or "")
  self.out:flush()
end

-- ---- the tasks waiting for a slot (S) --------------------------------------

function Worker:start_waiting()
  local waiting, queued = self.waiting, self.queued
  while self.wfirst <= self.wlast and self:room() do
    local m = waiting[self.wfirst]
    waiting[self.wfirst], self.wfirst = nil, self.wfirst + 1
    if queued[m[2]] then
      queued[m[2]] = nil
      self:start(m)
    end
  end
end

function Worker:submit(m)
  if self.wfirst > self.wlast and self:room() then return self:start(m) end
  self.wlast = self.wlast + 1
  self.waiting[self.wlast] = m
  self.queued[m[2]] = true
end

function Worker:cancel(tid)
  if self.queued[tid] then
    self.queued[tid] = nil
    self:send("rec", tid, self:data({ returncode = -1, interrupted = true, stdout = "", stderr = "" }))
    return
  end
  self:cancel_started(tid)
end

-- Q: the run halted: the tasks waiting here never start (held tid each),
-- nor those an executor holds that have not started.
function Worker:hold_waiting()
  for k = self.wfirst, self.wlast do
    local m = self.waiting[k]
    if self.queued[m[2]] then self.queued[m[2]] = nil; self:send("held", m[2]) end
    self.waiting[k] = nil
  end
  self.wfirst, self.wlast = 1, 0
  self:hold_started()
end

function Worker:on_message(msg)
  self.last_heard = now()
  local m = wire.split(msg)
  local what = m[1]
  if what == "X" or what == "F" then if not self.closing then self:submit(m) end
  elseif what == "S" then self:set_limit(tonumber(m[2]) or math.huge, m[3] == "halts")
  elseif what == "K" then self:cancel(m[2])
  elseif what == "Q" then self:hold_waiting()
  elseif what == "H" then self:send("hb")
  elseif what == "L" then self.fn_bytes, self.fn_gen = m[2], self.fn_gen + 1
  elseif what == "P" then self:send("pong", m[2] or "")
  end
end

function Worker:on_data(data)
  local buf = self.buf .. data
  local pos = 1
  while true do
    local nl = buf:find("\n", pos, true)
    if not nl then break end
    self:on_message(buf:sub(pos, nl - 1))
    pos = nl + 1
  end
  self.buf = buf:sub(pos)
end

function Worker:shutdown()
  self.closing = true
  self.alive = false
end

function Worker:record(rec)
  if rec.id == self.relay then
    if rec.data then self:on_data(rec.data) else
      if rec.stdout and rec.stdout ~= "" then self:on_data(rec.stdout) end
      self:shutdown()
    end
    return
  end
  self:task_record(rec)
end

function Worker:serve()
  while not self.closing do
    self:start_waiting()
    self:run_ready()
    if self.alive and not self.out:flush() then self.alive = false; self:shutdown() end
    if self.closing then break end
    for _, rec in ipairs(self.loop:poll(1)) do self:record(rec) end
    if now() - self.last_heard > self.hb_timeout then self:shutdown() end
  end
  self:end_tasks()
end

function M.main()
  local cfg = read_config()
  if not cfg then return 2 end
  if cfg.key then core.marshal_set_key(cfg.key) end
  local w = Worker.new(cfg)
  w.up = cfg.up or core.marshal_key()
  if not w:start_relay() then return 2 end
  w:hello()
  w.last_heard = now()
  w:serve()
  return 0
end

return M
