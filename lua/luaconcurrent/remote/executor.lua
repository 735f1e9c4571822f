--- The remote executor's body (exec/remote.lua is its entry point):
-- subprocess tasks on other hosts over OpenSSH (hosts = {...}).
--
-- One ssh session per host (`ssh -T -o BatchMode=yes ...`, the user's
-- ssh_config honoured; ":" is this machine, started with `sh -c` and no
-- ssh) runs the remote worker. Where the host has the luaconcurrent
-- executable (the host's `luaconcurrent` path, else `luaconcurrent` on its
-- PATH; `luaconcurrent = false` never) the session execs
-- `luaconcurrent --remote-worker` (remote/engine_worker.lua: the C engine
-- runs the tasks, function tasks too); otherwise the plain worker
-- (remote/worker.lua) under the host's `lua5.4`: a loader given with `-e`
-- reads the worker's text from stdin, so nothing needs installing
-- remotely. Both get the same head on stdin and say which they are in
-- their hello (h.mode: "engine" or "lua"; each result's remote_mode). The
-- worker runs that host's slots itself; tasks and answers cross the one
-- channel with a task id each (the formats are in remote/worker.lua and
-- remote/engine_worker.lua).
--
-- Function tasks need engine mode, the same luaconcurrent version, Lua
-- version and bytecode format at both ends (checked at hello; a host that
-- fails it is given up, saying why). The function goes once per host, its
-- tasks' key and args per task, in the marshal format checked with the
-- run's key (sent in the head, over the ssh channel).
--
-- Heartbeats: every host's heartbeat seconds (default 5) an H line goes to
-- each host and its worker answers; a host silent for 3 heartbeats after
-- one it did not answer (4 in all) is lost (its session killed, its tasks
-- requeued). The worker gives up after
-- 8 heartbeats of silence from us (at least 2 s).
--
-- Plain mode: the clock is kept here: at a task's deadline (or on
-- cancel) a K frame asks the worker to TERM the task's process group, then
-- KILL after kill_grace. Engine mode: the limit goes with each task (X and
-- F frames) and the remote engine keeps it; the timer here is a backstop
-- (see arm_deadline, arm_fn_backstop). A host whose session ends (ssh
-- exit 255, EOF) while tasks ran there is a host failure: those tasks go
-- back on this executor's queue (preferring another host) and the host is
-- retried with backoff; only a final result reaches finish. Each result's
-- `host` says where it ran.
--
-- Slots: a host's `slots`, else the run's num_workers when given, else
-- its CPU count, asked at the handshake;
-- new() waits for the handshakes (at most MAX_CONNECTING at once, a
-- refused one retried with jitter) so that ex.slots is their sum.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local hostlib = require "luaconcurrent.remote.hosts"
local function_task = require "luaconcurrent.exec.function_task"
local protocol = require "luaconcurrent.remote.protocol"

local now, wallclock = core.now, core.wallclock

local PROTOCOL = "1"
local MAX_CONNECTING = 4       -- handshakes at once
local QUICK_RETRIES = 3        -- refused handshakes retried with jitter
local HEARTBEAT = 5            -- seconds between H frames (a host's heartbeat=)
local HB_LOST = 4              -- heartbeats without a frame: the host is lost
local HB_GIVE_UP = 8           -- heartbeats without a message: the worker gives up
local PREFETCH = 2             -- engine mode: tasks sent ahead, per slot
-- luaconcurrent's version (init.lua), compared with an engine-mode host's.
local VERSION = (select(2, pcall(require, "luaconcurrent")) or {}).VERSION or "?"
local BACKOFF_MAX = 60
local MAX_FAILS = 6            -- consecutive failures before a host is given up

local M = {}

-- LC_REMOTE_TRACE=1: a line on stderr at each connect, hello, lost session
-- and retry. M.on_trace(host name, text), when set, gets the same events
-- (the specs follow a host's reconnects through it).
local TRACE = os.getenv("LC_REMOTE_TRACE")
TRACE = TRACE and TRACE ~= "" and TRACE ~= "0"
local function trace(h, fmt, ...)
  if not TRACE and not M.on_trace then return end
  local text = string.format(fmt, ...)
  if M.on_trace then M.on_trace(h.name, text) end
  if TRACE then io.stderr:write("luaconcurrent remote ", h.name, ": ", text, "\n") end
end


local worker_text
local function worker_source()
  if worker_text then return worker_text end
  -- The executable carries it compiled in; the module reads the file.
  local embedded, sources = pcall(require, "luaconcurrent.sources")
  worker_text = embedded and sources("luaconcurrent.remote.worker")
  if worker_text then return worker_text end
  local path = package.searchpath("luaconcurrent.remote.worker", package.path)
  local f = path and io.open(path, "rb")
  if not f then
    error("luaconcurrent: the remote worker (luaconcurrent/remote/worker.lua) is not on package.path", 0)
  end
  worker_text = f:read("a")
  f:close()
  return worker_text
end

local LOADER = 'local n=tonumber(io.read("l"))local s=io.read(n)'
  .. 'assert(load(s,"=luaconcurrent-remote-worker"))()'

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local BYTECODE = protocol.bytecode_header()
local line = protocol.line

--- The command that starts a host's worker, and the bytes its stdin gets.
local function connect_argv(h, grace)
  local remote = "trap '' PIPE; "
  if h.luaconcurrent ~= false then
    local path = h.luaconcurrent
    -- This machine (":") runs this very executable when we are one, so it
    -- takes the engine's path whatever PATH holds.
    if path == nil and h.host == ":" then
      local embedded, exe = core.host()
      if embedded then path = exe end
    end
    local lc = shq(path or "luaconcurrent")
    remote = remote .. "if command -v " .. lc .. " >/dev/null 2>&1; then exec " .. lc
      .. " --remote-worker; fi; "
  end
  remote = remote .. "exec " .. shq(h.lua) .. " -e " .. shq(LOADER)
  local argv
  if h.slurm then
    argv = require("luaconcurrent.remote.slurm").argv(h, remote)
  elseif h.host == ":" then
    argv = { "sh", "-c", remote }
  else
    argv = { "ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5",
      "-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=10" }
    for _, o in ipairs(h.ssh_options or {}) do argv[#argv + 1] = o end
    if h.port then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(h.port) end
    if h.user then argv[#argv + 1] = "-l"; argv[#argv + 1] = h.user end
    argv[#argv + 1] = "--"
    argv[#argv + 1] = h.host
    argv[#argv + 1] = remote
  end
  local hb = h.heartbeat or HEARTBEAT
  local src = string.format("local CFG = { grace = %.17g, hb_timeout = %.17g, lua = %q, key = %q }\n",
    grace, math.max(2, HB_GIVE_UP * hb), h.lua, core.marshal_key()):gsub("\\\n", "\\n")
    .. worker_source()
  return argv, #src .. "\n" .. src
end

local function reader()
  return require("luaconcurrent.worker").reader()
end

local function unpack_frame(blob)
  local t, pos = {}, 1
  while pos <= #blob do
    t[#t + 1], pos = string.unpack("<s4", blob, pos)
  end
  return t
end

local function timed(res, t)
  local t1 = now()
  res.time_start, res.time_end, res.time_run = wallclock() - (t1 - t.t0), wallclock(), t1 - t.t0
  return res
end

-- The task's own run time (remote) replaces the time since it was sent
-- (which includes a wait behind the tasks sent ahead).
local function ran(res, seconds)
  if type(seconds) == "number" and seconds >= 0 and seconds <= res.time_run then
    res.time_run, res.time_start = seconds, res.time_end - seconds
  end
  return res
end

local function drop_errfile(h)
  if h.errfile then os.remove(h.errfile); h.errfile = nil end
end

--- Why a host's session ended: the last line of its stderr, else its status
-- (a lost heartbeat or a refusal says it better).
local function session_error(h, rec)
  if h.refused then return h.refused_why end
  if h.hb_lost then return h.hb_lost end
  local why = ""
  local f = h.errfile and io.open(h.errfile, "rb")
  if f then why = f:read("a"):gsub("%s+$", ""):gsub("^.*\n", ""); f:close() end
  return why ~= "" and why or string.format("session ended (status %s)", tostring(rec.returncode))
end

--- Seconds before a failed host is tried again.
local function retry_delay(h, was_up)
  if not was_up and h.fails <= QUICK_RETRIES then
    return 0.2 + math.random() * 0.8 * h.fails    -- MaxStartups refusal: jitter
  end
  return math.min(BACKOFF_MAX, 2 ^ math.min(h.fails, 6)) * (0.75 + math.random() * 0.5)
end

--- Why a host that said hello cannot run function tasks, or nil.
local function fn_refusal(h, f)
  if h.mode ~= "engine" then
    return "function tasks need the luaconcurrent executable on the host (found only "
      .. tostring(f[4]) .. "; install luaconcurrent there, or set the host's luaconcurrent = path)"
  elseif h.version ~= VERSION or h.lua_version ~= _VERSION or h.bytecode ~= BYTECODE then
    return string.format("function tasks need the same luaconcurrent, Lua and bytecode format at both "
      .. "ends: the host has luaconcurrent %s on %s%s, this side %s on %s", tostring(h.version),
      tostring(h.lua_version), h.bytecode ~= BYTECODE and " (another bytecode format)" or "", VERSION, _VERSION)
  end
end

--- Whether a handshake may still come: a host not yet up nor given up.
local function handshaking(hosts)
  for _, h in ipairs(hosts) do
    if h.state == "want" or h.state == "connecting" or (h.state == "down" and not h.ever_up) then
      return true
    end
  end
  return false
end

-- A worker's frames that end a task.
local RESULT_FRAMES = { done = true, rec = true, fail = true, fdone = true, fdied = true, ftimeout = true }

local Remote = {}
Remote.__index = Remote

function M.new(cfg, loop, finish)
  local prefix = {}
  for i, v in ipairs(cfg.pargs) do prefix[i] = tostring(v) end
  local is_fn = type(cfg.pargs[1]) == "function"
  local task_args = is_fn and select(2, function_task.split(cfg.pargs))
  local fn_bytes = is_fn and (cfg.fn_bytes or core.marshal_string(cfg.pargs[1]))
  local hosts = hostlib.list(cfg.hosts, cfg.host_slots)
  for i, h in ipairs(hosts) do h.uid = i end
  local period = HEARTBEAT
  for _, h in ipairs(hosts) do period = math.min(period, h.heartbeat or HEARTBEAT) end
  local self = setmetatable({
    cfg = cfg, loop = loop, finish = finish,
    prefix = prefix, is_fn = is_fn, task_args = task_args, fn_bytes = fn_bytes,
    timeout = cfg.timeout or 0,
    grace = cfg.kill_grace or 0.1,
    hosts = hosts,
    period = period,       -- seconds between heartbeat rounds: the shortest host's
    queue = {},            -- tasks waiting for a slot (requeued ones first)
    tasks = {},            -- [index] = task, every task held
    procs = {},            -- [process id] = host
    timers = {},           -- [timer id] = function
    failed_on = {},        -- [index] = { [host uid] = true }: retries go elsewhere
    next_tid = 0,
    closed = false,
  }, Remote)
  self:handshake()
  local total = 0
  for _, h in ipairs(hosts) do total = total + (h.cap or h.slots or 1) end
  self.slots = total
  self:beat()
  return self
end

function Remote:at(when, fn) self.timers[self.loop:timer(when)] = fn end

function Remote:argv_of(arg)
  local argv = { table.unpack(self.prefix) }
  if type(arg) == "table" then
    for i = 1, #arg do argv[#argv + 1] = tostring(arg[i]) end
  elseif arg ~= nil then
    argv[#argv + 1] = tostring(arg)
  end
  return argv
end

function Remote:env_of(h)
  local env = {}
  for _, src in ipairs({ self.cfg.env or {}, h.env or {} }) do
    for k, v in pairs(src) do env[#env + 1] = v == false and k or (k .. "=" .. v) end
  end
  table.sort(env)
  return env
end

function Remote:send(h, msg) self.loop:write(h.id, msg) end

-- ---- hosts ------------------------------------------------------------

-- The handshakes, before the scheduler asks for ex.slots.
function Remote:handshake()
  for _, h in ipairs(self.hosts) do h.state = "want" end
  self:pump_connects()
  local deadline = now() + 60
  while now() < deadline and handshaking(self.hosts) do
    for _, rec in ipairs(self.loop:poll(0.5)) do self:record(rec) end
  end
end

function Remote:nconnecting()
  local n = 0
  for _, h in ipairs(self.hosts) do if h.state == "connecting" then n = n + 1 end end
  return n
end

function Remote:pump_connects()
  for _, h in ipairs(self.hosts) do
    if self:nconnecting() >= MAX_CONNECTING then return end
    if h.state == "want" then self:connect(h) end
  end
end

function Remote:connect(h)
  if self.closed then return end
  local argv, head = connect_argv(h, self.grace)
  -- ssh's stderr (and the remote worker's) to a file: the host's error
  -- when the session fails, not noise on ours.
  h.errfile = h.errfile or os.tmpname()
  table.insert(argv, 1, "sh")
  table.insert(argv, 2, "-c")
  table.insert(argv, 3, 'exec "$@" 2>"$0"')
  table.insert(argv, 4, h.errfile)
  local id, message = self.loop:spawn(argv, nil, nil, head, 0, 0, true)
  if not id then
    h.state, h.error = "down", message
    return
  end
  h.id, h.state, h.read, h.running, h.nrunning = id, "connecting", reader(), {}, 0
  h.last_heard, h.hb_lost, h.unanswered = now(), nil, nil
  trace(h, "connecting (attempt %d)", (h.fails or 0) + 1)
  self.procs[id] = h
end

--- A host's session ended: its tasks go elsewhere, and the host is retried
-- later or given up.
function Remote:host_lost(h, rec)
  self.procs[h.id] = nil
  h.id = nil
  local was_up = h.state == "up"
  h.error = session_error(h, rec)
  trace(h, "session ended (%s, status %s), %d task(s) in flight", was_up and "was up" or "before hello",
    tostring(rec.returncode), h.nrunning or 0)
  self:requeue(h)
  if self.closed then
    h.state = "closed"
    drop_errfile(h)
    return
  end
  h.fails = (h.fails or 0) + 1
  if h.refused or (not h.ever_up and h.fails > QUICK_RETRIES) or h.fails > MAX_FAILS then
    h.state = "bad"     -- given up: its error is kept for the message
    trace(h, "given up after %d failure(s): %s", h.fails, h.error)
    drop_errfile(h)
  else
    local delay = retry_delay(h, was_up)
    h.state, h.retry_at = "down", now() + delay
    trace(h, "down: retry in %.2f s (failure %d)", delay, h.fails)
    self:at(h.retry_at, function()
      if h.state == "down" and not self.closed then h.state = "want"; self:pump_connects() end
    end)
  end
  self:pump_connects()
  self:dispatch()
end

-- Tasks in flight on a lost host go back on the queue, first, and prefer
-- another host.
function Remote:requeue(h)
  local back = {}
  for _, t in pairs(h.running) do
    if t.timer then self.timers[t.timer] = nil; self.loop:cancel_timer(t.timer); t.timer = nil end
    t.host, t.tid = nil, nil
    t.lost_on = t.lost_on or {}
    t.lost_on[h.uid] = true
    back[#back + 1] = t
  end
  table.sort(back, function(a, b) return a.index < b.index end)
  for i = #back, 1, -1 do
    local t = back[i]
    if t.why then   -- cancelled meanwhile: it is over
      self.tasks[t.index] = nil
      self.finish(t.index, ProcResult.not_started(t.key, t.arg, t.why))
    else
      table.insert(self.queue, 1, t)
    end
  end
  h.running, h.nrunning = {}, 0
end

-- A host that can never run this run's tasks: given up, saying why.
function Remote:refuse(h, why)
  h.state, h.error, h.refused, h.refused_why = "bad", why, true, why
  trace(h, "refused: %s", why)
  self.loop:kill(h.id)
end

-- Heartbeats: an H line to every host now and then; a host silent for
-- HB_LOST of its heartbeats is lost (its session is killed: the record
-- that follows requeues its tasks).
function Remote:beat()
  if self.closed then return end
  local t = now()
  for _, h in ipairs(self.hosts) do
    if h.state == "up" then self:beat_host(h, t) end
  end
  self:at(now() + self.period, function() self:beat() end)
end

function Remote:beat_host(h, t)
  local hb = h.heartbeat or HEARTBEAT
  -- Silence counts from the oldest heartbeat not answered (so a run
  -- that was busy elsewhere for a while does not blame the host).
  if h.unanswered and h.unanswered < h.last_heard then h.unanswered = nil end
  if not h.hb_lost and h.unanswered and t - h.unanswered > (HB_LOST - 1) * hb then
    h.hb_lost = string.format("no heartbeat for %.1f s", t - h.last_heard)
    trace(h, "lost: %s, %d task(s) in flight", h.hb_lost, h.nrunning)
    self.loop:kill(h.id)
  elseif not h.hb_lost and t - (h.last_beat or 0) >= hb * 0.99 then
    h.last_beat = t
    h.unanswered = h.unanswered or t
    self:send(h, "H\n")
  end
end

-- ---- frames -----------------------------------------------------------

function Remote:read_frames(h, data)
  local frames = {}
  h.read(data, frames)
  for _, blob in ipairs(frames) do self:on_frame(h, unpack_frame(blob)) end
end

function Remote:on_frame(h, f)
  local what = f[1]
  h.last_heard = now()
  if what == "hello" then
    self:on_hello(h, f)
  elseif RESULT_FRAMES[what] then
    self:on_result(h, what, f)
  end
end

function Remote:on_hello(h, f)
  if f[2] ~= PROTOCOL then
    self:refuse(h, "remote worker speaks protocol " .. tostring(f[2]))
    return
  end
  h.mode = f[6] == "engine" and "engine" or "lua"
  h.version, h.lua_version, h.bytecode = f[7], f[4], f[8]
  if h.slurm then h.name = require("luaconcurrent.remote.slurm").node_name(f[9]) end
  if self.is_fn then
    local why = fn_refusal(h, f)
    if why then self:refuse(h, why); return end
    self:send(h, line({ "L", self.fn_bytes }))
  end
  h.state, h.fails, h.ncpu, h.ever_up = "up", 0, tonumber(f[3]), true
  h.slots_now = h.slots or (h.slots_rule and h.ncpu and h.slots_rule(h.ncpu)) or h.ncpu or 1
  -- Engine mode runs slots_now tasks at once and holds as many more,
  -- sent ahead: the next starts without waiting for a round trip over
  -- the channel.
  h.cap = h.slots_now
  if h.mode == "engine" then
    h.cap = h.slots_now * PREFETCH
    self:send(h, line({ "S", tostring(h.slots_now) }))
  end
  trace(h, "up: mode %s%s, %s cpus, %d slots", h.mode,
    h.mode == "engine" and (" (luaconcurrent " .. tostring(h.version) .. ")") or "", tostring(h.ncpu), h.slots_now)
  self:pump_connects()
  self:dispatch()
end

--- A frame that ends a task: its one result.
function Remote:on_result(h, what, f)
  local t = h.running[f[2]]
  if not t then return end
  h.running[f[2]], h.nrunning = nil, h.nrunning - 1
  if t.timer then self.timers[t.timer] = nil; self.loop:cancel_timer(t.timer) end
  self.tasks[t.index] = nil
  local res = self:result_of_frame(t, what, f)
  res.host, res.remote_mode = h.name, h.mode
  local failed_on = self.failed_on
  if res.success then
    failed_on[t.index] = nil
  else
    failed_on[t.index] = failed_on[t.index] or {}
    failed_on[t.index][h.uid] = true
  end
  self.finish(t.index, res)
  self:dispatch()
end

function Remote:result_of_frame(t, what, f)
  if what == "done" then return self:result_of(t, f)
  elseif what == "rec" then return self:result_of_record(t, f[3])
  elseif what == "fail" then return timed(ProcResult.spawn_failure(t.key, t.arg, f[3], f[4]), t)
  elseif what == "fdone" then return self:result_of_answer(t, f[3])
  elseif what == "ftimeout" then return self:fn_timed_out(t, tonumber(f[3]), "its worker process was killed")
  end
  local res = ProcResult.raised(timed(ProcResult.new(t.key, t.arg), t), f[3])
  if t.why then ProcResult.interrupt(res, t.why) end
  return res
end

-- A function task's answer: a process worker's frame, passed through.
-- One that came at or after its deadline is a timeout, as locally.
function Remote:result_of_answer(t, blob)
  local res = timed(ProcResult.new(t.key, t.arg), t)
  -- worker.lua's answer: status, t0, t1, more, then the outcome
  local decoded, status, t0, t1, _, a, b, c, d = pcall(core.unmarshal_string, blob)
  if not decoded then
    return ProcResult.raised(res, "the worker's answer was corrupt: " .. ProcResult.error_text(status))
  end
  local run = type(t0) == "number" and type(t1) == "number" and t1 - t0 or nil
  ran(ProcResult.answered(res, status, a, b, c, d), run)
  if self.timeout > 0 and run and run >= self.timeout then ProcResult.time_out(res, self.timeout) end
  return res
end

-- A function task that ran past its limit (seconds: its run, when known).
function Remote:fn_timed_out(t, seconds, note)
  return ProcResult.time_out(ran(timed(ProcResult.new(t.key, t.arg), t), seconds), self.timeout, note)
end

-- Engine mode: the remote record, marshalled.
function Remote:result_of_record(t, blob)
  local okd, rec = pcall(core.unmarshal_string, blob)
  if not okd or type(rec) ~= "table" then
    return ProcResult.raised(timed(ProcResult.new(t.key, t.arg), t),
      "the remote worker's record was corrupt: " .. ProcResult.error_text(rec))
  end
  local remote_run = rec.time_run
  timed(rec, t)
  if type(remote_run) == "number" then      -- its own run, not its wait
    rec.time_run, rec.time_start = remote_run, rec.time_end - remote_run
  end
  if t.timed_out and not rec.timeout then rec.timeout, rec.limit = true, self.timeout end
  local res = ProcResult.from_record(t.key, t.arg, rec)
  if t.why and not res.success and not res.timeout then ProcResult.interrupt(res, t.why) end
  return res
end

-- Plain mode: a subprocess task's status and output.
function Remote:result_of(t, f)
  local h = t.host
  local status = tonumber(f[3])
  local rec = { returncode = status, stdout = f[4], stderr = f[5], pid = tonumber(f[6]) }
  if (t.why or t.timed_out) and status > 128 then
    rec.signal = status - 128
    rec.signal_name = ({ [9] = "SIGKILL", [15] = "SIGTERM", [2] = "SIGINT" })[rec.signal] or "signal"
    rec.returncode = -rec.signal
  end
  local t1 = now()
  rec.time_start, rec.time_end, rec.time_run = wallclock() - (t1 - t.t0), wallclock(), t1 - t.t0
  if t.timed_out then rec.timeout, rec.limit = true, self.timeout end
  local res
  if status == 127 and rec.stderr:find("No such file or directory\n?$") then
    res = ProcResult.spawn_failure(t.key, t.arg, (rec.stderr:gsub("\n$", "")), "ENOENT")
    res.returncode, res.stderr = 127, rec.stderr
  else
    res = ProcResult.from_record(t.key, t.arg, rec)
  end
  if t.why and not res.success and not res.timeout then ProcResult.interrupt(res, t.why) end
  res.host = h.name
  return res
end

-- ---- tasks ------------------------------------------------------------

function Remote:pick(t)
  local best, best_free
  for _, h in ipairs(self.hosts) do
    if h.state == "up" and not h.hb_lost then
      local free = h.cap - h.nrunning
      if free > 0 then
        local score = free - ((t.lost_on and t.lost_on[h.uid]) and 1e6 or 0)
        if not best or score > best_free then best, best_free = h, score end
      end
    end
  end
  return best
end

function Remote:dispatch()
  local queue = self.queue
  while #queue > 0 do
    local t = queue[1]
    local h = self:pick(t)
    if not h then break end
    table.remove(queue, 1)
    self:send_task(t, h)
  end
  -- Nothing can ever run them: every host is gone for good.
  if #queue > 0 then
    for _, h in ipairs(self.hosts) do if h.state ~= "bad" then return end end
    self:fail_queued()
  end
end

function Remote:fail_queued()
  local queue = self.queue
  while #queue > 0 do
    local t = table.remove(queue, 1)
    self.tasks[t.index] = nil
    local res = ProcResult.new(t.key, t.arg)
    local why = {}
    for _, h in ipairs(self.hosts) do why[#why + 1] = h.name .. ": " .. tostring(h.error) end
    res.exception, res.error = "ConnectionError", "no host can run it (" .. table.concat(why, "; ") .. ")"
    self.finish(t.index, res)
  end
end

function Remote:send_task(t, h)
  self.next_tid = self.next_tid + 1
  local tid = tostring(self.next_tid)
  t.host, t.tid, t.t0 = h, tid, now()
  h.running[tid], h.nrunning = t, h.nrunning + 1
  self:send(h, line(self:task_message(t, h, tid)))
  if self.timeout > 0 and self.is_fn then
    self:arm_fn_backstop(t, h, tid)
  elseif self.timeout > 0 then
    self:arm_deadline(t, h)
  end
end

--- A task's frame: F (function task), X (engine mode) or R (plain mode).
function Remote:task_message(t, h, tid)
  local cfg, env = self.cfg, self:env_of(h)
  local msg
  if self.is_fn then
    msg = { "F", tid, string.format("%.17g", self.timeout), cfg.cwd or "", tostring(#env) }
  elseif h.mode == "engine" then
    msg = { "X", tid, string.format("%.17g", self.timeout), cfg.cwd or "", cfg.input and "1" or "0",
      cfg.input or "", tostring(#env) }
  else
    msg = { "R", tid, cfg.cwd or "", cfg.input and "1" or "0", cfg.input or "", tostring(#env) }
  end
  for _, e in ipairs(env) do msg[#msg + 1] = e end
  if self.is_fn then
    msg[#msg + 1] = t.blob
  else
    for _, a in ipairs(t.argv) do msg[#msg + 1] = a end
  end
  return msg
end

-- The remote worker keeps a function task's deadline (it kills the
-- task's worker process, as locally). This is the backstop, at the same
-- distance as a subprocess task's (its wait behind the tasks sent ahead
-- included): a host that has not answered by then is failing. The task
-- is timed out, and the host is lost (its session killed: its other tasks
-- go elsewhere, it is tried again later).
function Remote:arm_fn_backstop(t, h, tid)
  t.timer = self.loop:timer(t.t0 + self:backstop())
  self.timers[t.timer] = function()
    t.timer = nil
    -- (Once the host is being given up, its other tasks go elsewhere.)
    if t.host ~= h or h.running[tid] ~= t or h.hb_lost then return end
    h.running[tid], h.nrunning = nil, h.nrunning - 1
    self.tasks[t.index] = nil
    local res = self:fn_timed_out(t, nil, "its host did not answer")
    res.host, res.remote_mode = h.name, h.mode
    trace(h, "no answer from a function task %.1f s after its deadline: lost", self:backstop() - self.timeout)
    h.hb_lost = "no answer from a task past its deadline"
    self.loop:kill(h.id)
    self.finish(t.index, res)
    self:dispatch()
  end
end

function Remote:backstop() return 2 * (self.timeout + self.grace) + 5 end

-- Engine mode: the remote engine keeps the deadline (TERM, grace, KILL);
-- this timer is the backstop. Plain mode: this is the clock.
function Remote:arm_deadline(t, h)
  local engine = h.mode == "engine"
  t.timer = self.loop:timer(t.t0 + (engine and self:backstop() or self.timeout))
  self.timers[t.timer] = function()
    t.timer = nil
    if t.host then t.timed_out = true; self:send(t.host, line({ "K", t.tid })) end
  end
end

-- ---- the executor interface (runner.lua) -------------------------------

function Remote:describe(_, arg) return table.concat(self:argv_of(arg), " ") end

function Remote:start(index, key, arg)
  local t = { index = index, key = key, arg = arg }
  if self.is_fn then
    local sent, blob = pcall(core.marshal_string, key, self.task_args(arg))
    if not sent then return self.finish(index, function_task.unsendable(key, arg, blob)) end
    t.blob = blob
  else
    t.argv = self:argv_of(arg)
  end
  local failed = self.failed_on[index]
  if failed then    -- run again (retries): prefer a host it has not failed on
    t.lost_on = {}
    for name in pairs(failed) do t.lost_on[name] = true end
  end
  self.tasks[index] = t
  self.queue[#self.queue + 1] = t
  self:dispatch()
end

function Remote:record(rec)
  local fn = self.timers[rec.id]
  if fn then self.timers[rec.id] = nil; fn(); return true end
  local h = self.procs[rec.id]
  if not h then return false end
  if rec.data then
    self:read_frames(h, rec.data)
  else
    if rec.stdout and rec.stdout ~= "" then self:read_frames(h, rec.stdout) end
    self:host_lost(h, rec)
  end
  return true
end

function Remote:cancel(index, why)
  local t = self.tasks[index]
  if not t then return end
  if t.host then
    t.why = why
    self:send(t.host, line({ "K", t.tid }))
  else
    for i, q in ipairs(self.queue) do if q == t then table.remove(self.queue, i) break end end
    self.tasks[index] = nil
    self.finish(index, ProcResult.not_started(t.key, t.arg, why))
  end
end

--- No more tasks: each worker gets EOF and exits.
function Remote:close()
  self.closed = true
  for id in pairs(self.procs) do self.loop:close_input(id) end
end

function Remote:stop(records)
  self.closed = true
  for _, h in ipairs(self.hosts) do drop_errfile(h) end
  for _, rec in ipairs(records) do
    if self.procs[rec.id] and rec.data then self:record(rec) end
  end
  for index, t in pairs(self.tasks) do
    self.tasks[index] = nil
    self.finish(index, ProcResult.not_started(t.key, t.arg, t.host and "running" or "not_started"))
  end
end

--- Round trips over one host's channel: connect, send n P frames one
-- after another, return the mean seconds a round trip (the per-task
-- overhead of the channel itself) and the handshake's seconds.
function M.ping(spec, n)
  local h = hostlib.parse(spec, 1)
  local loop = core.new_loop()
  local t0 = now()
  local argv, head = connect_argv(h, 0.1)
  local id = assert(loop:spawn(argv, nil, nil, head, 0, 0, true))
  local read, frames = reader(), {}
  local function wait_frame()
    while #frames == 0 do
      for _, rec in ipairs(loop:poll(10)) do
        if rec.data then read(rec.data, frames) elseif rec.id == id then error("the session ended: " .. tostring(rec.stderr)) end
      end
    end
    return unpack_frame(table.remove(frames, 1))
  end
  assert(wait_frame()[1] == "hello")
  local t1 = now()
  for i = 1, n do
    loop:write(id, line({ "P", tostring(i) }))
    local f = wait_frame()
    assert(f[1] == "pong" and f[2] == tostring(i))
  end
  local t2 = now()
  loop:close_input(id)
  while loop:running() > 0 do loop:poll(1) end
  loop:close()
  return (t2 - t1) / n, t1 - t0
end

return M
