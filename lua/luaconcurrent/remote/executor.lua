--- The remote executor's body (exec/remote.lua is its entry point):
-- subprocess and function tasks on other hosts, one session each.
--
-- The layer, by job:
--   hosts.lua      host specs: parsing and checks (GNU parallel's forms too)
--   slurm.lua      Slurm steps as hosts (the srun command line)
--   bootstrap.lua  the command that starts a host's worker, and its head
--   wire.lua       every message's layout, both directions, and the checks
--                  on what a host sends (shipped to the plain worker too)
--   session.lua    each host's session: its states, failures and end
--   connects.lua   when sessions start: connect slots, by count and time
--   inbound.lua    what a host sends: banner, frames, hello, answers
--   heartbeat.lua  heartbeats, and failures forgiven while healthy
--   placement.lua  which host runs a task; requeue and its limits
--   results.lua    a host's answer -> the task's result (data only)
--   worker.lua     the plain-Lua worker; engine_worker.lua the engine's
--
-- No handshake blocks here: sessions start as new() returns, and
-- ex.capacity (the tasks this executor may hold) grows as hosts say hello
-- (0 until one does; unbounded once every host is given up, so that the
-- remaining tasks get their ConnectionError at once).
--
-- Function tasks need engine mode, the same luaconcurrent version, Lua
-- version and bytecode format at both ends (checked at hello; a host that
-- fails it is refused, saying why). The function goes once per host, its
-- tasks' key and args per task.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local hostlib = require "luaconcurrent.remote.hosts"
local function_task = require "luaconcurrent.exec.function_task"
local wire = require "luaconcurrent.remote.wire"
local frame_reader = require("luaconcurrent.frames").reader
local bootstrap = require "luaconcurrent.remote.bootstrap"
local results = require "luaconcurrent.remote.results"
local session = require "luaconcurrent.remote.session"
local placement = require "luaconcurrent.remote.placement"
local argvlib = require "luaconcurrent.argv"

local now = core.now

-- luaconcurrent's version (init.lua), compared with an engine-mode host's.
local VERSION = (select(2, pcall(require, "luaconcurrent")) or {}).VERSION or "?"
local BYTECODE = wire.bytecode_header()

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

local Remote = {}
Remote.__index = Remote
Remote.PREFETCH = 2     -- engine mode: tasks sent ahead, per slot
Remote.ESCALATE = 5     -- seconds after a cancel's grace before the host is failed
Remote.trace = trace
session.install(Remote, trace)
placement.install(Remote)

-- Each host's keys, derived from the run's (which no host sees): down,
-- what it is sent is tagged with; up, what it answers is read with (by
-- the data decoder). Without a secure key (marshal.h) no code may leave:
-- a function run fails; a subprocess run sends data only, under keys of
-- its own.
local function host_keys(h, is_fn)
  local ok, down = pcall(core.marshal_derive_key, "host " .. h.uid .. " down")
  if ok then return down, core.marshal_derive_key("host " .. h.uid .. " up") end
  if is_fn then error(down, 0) end
  local seed = string.format("%s %.17g %s", tostring(h), core.now(), h.name)
  return string.pack("<j", #seed) .. seed:sub(1, 8), string.pack("<j", h.uid) .. seed:sub(-8)
end

function M.new(cfg, loop, finish)
  local prefix = argvlib.words(cfg.pargs)
  local is_fn = type(cfg.pargs[1]) == "function"
  local hosts = hostlib.list(cfg.hosts, cfg.host_slots)
  local period = hostlib.HEARTBEAT
  for i, h in ipairs(hosts) do
    h.uid, h.state, h.fails, h.attempts, h.nrunning, h.running = i, "want", 0, 0, 0, {}
    h.down, h.up = host_keys(h, is_fn)
    period = math.min(period, h.heartbeat)
  end
  local self = setmetatable({
    cfg = cfg, loop = loop, finish = finish,
    prefix = prefix, is_fn = is_fn,
    task_args = is_fn and select(2, function_task.split(cfg.pargs)),
    fn_bytes = is_fn and (cfg.fn_bytes or core.marshal_string(cfg.pargs[1])),
    timeout = cfg.timeout or 0,
    grace = cfg.kill_grace or 0.1,
    hosts = hosts,
    period = period,       -- seconds between heartbeat rounds: the shortest host's
    queue = {},            -- tasks waiting for a host (requeued ones first)
    tasks = {},            -- [index] = task, every task held
    procs = {},            -- [process id] = host
    timers = {},           -- [timer id] = function
    failed_on = {},        -- [index] = { [host uid] = true }: retries go elsewhere
    next_tid = 0,
    capacity = 0,          -- tasks it may hold now (update_capacity)
    concurrency = 0,       -- of them, how many the hosts up run at once
    closed = false,
  }, Remote)
  self:pump_connects()
  self:update_capacity()
  self:beat()
  return self
end

function Remote:at(when, fn) self.timers[self.loop:timer(when)] = fn end

function Remote:send(h, msg) self.loop:write(h.id, msg) end

function Remote:update_capacity()
  local total, hope, slots = 0, false, 0
  for _, h in ipairs(self.hosts) do
    if h.state == "up" then total, slots = total + h.cap, slots + h.slots_now end
    if h.state ~= "bad" then hope = true end
  end
  self.capacity = (total == 0 and not hope) and math.huge or total
  self.concurrency = slots
end

--- Tasks running: on each host up, those sent, at most its slots (an
-- engine-mode host holds as many more ahead).
function Remote:running()
  local n = 0
  for _, h in ipairs(self.hosts) do
    if h.state == "up" then n = n + math.min(h.nrunning, h.slots_now) end
  end
  return n
end

function Remote:argv_of(arg) return argvlib.of(self.prefix, arg) end

function Remote:env_of(h)
  if h.env_list then return h.env_list end
  local env = {}
  for _, src in ipairs({ self.cfg.env or {}, h.env or {} }) do
    for k, v in pairs(src) do env[#env + 1] = v == false and k or (k .. "=" .. v) end
  end
  table.sort(env)
  h.env_list = env
  return env
end

--- Why a host that said hello cannot run function tasks, or nil.
function Remote:fn_refusal(h)
  if h.mode ~= "engine" then
    return "function tasks need the luaconcurrent executable on the host (found only "
      .. tostring(h.lua_version) .. "; install luaconcurrent there, or set the host's luaconcurrent = path)"
  elseif h.version ~= VERSION or h.lua_version ~= _VERSION or h.bytecode ~= BYTECODE then
    return string.format("function tasks need the same luaconcurrent, Lua and bytecode format at both "
      .. "ends: the host has luaconcurrent %s on %s%s, this side %s on %s", tostring(h.version),
      tostring(h.lua_version), h.bytecode ~= BYTECODE and " (another bytecode format)" or "", VERSION, _VERSION)
  end
end

--- A frame that ends task t on host h.
function Remote:on_result(h, t, f)
  local res, why = results.of_frame(t, f, self.timeout, h)
  if not res then return self:fail_host(h, "protocol error: " .. why) end
  local failed_on = self.failed_on
  if res.success then
    failed_on[t.index] = nil
  else
    failed_on[t.index] = failed_on[t.index] or {}
    failed_on[t.index][h.uid] = true
  end
  self:final(t, res, h)
  self:dispatch()
end

-- ---- the executor interface (executors.lua) ----------------------------

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
    t.avoid = {}
    for uid in pairs(failed) do t.avoid[uid] = true end
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
    self:on_data(h, rec.data)
  else
    if rec.stdout and rec.stdout ~= "" then self:on_data(h, rec.stdout) end
    self:host_lost(h, rec)
  end
  return true
end

function Remote:cancel(index, why)
  local t = self.tasks[index]
  if not t then return end
  t.why = why
  if t.host then
    self:cancel_attempt(t)
  else
    for i, q in ipairs(self.queue) do if q == t then table.remove(self.queue, i) break end end
    self.tasks[index] = nil
    self.finish(index, ProcResult.not_started(t.key, t.arg, why))
  end
end

--- The run halted: queued tasks never start, nor those sent ahead to an
-- engine-mode host that have not started there (Q: answered held).
function Remote:hold(why)
  local queue = self.queue
  self.queue = {}
  for _, t in ipairs(queue) do
    self.tasks[t.index] = nil
    self.finish(t.index, ProcResult.not_started(t.key, t.arg, why))
  end
  for _, h in ipairs(self.hosts) do
    if h.state == "up" and h.mode == "engine" and h.nrunning > 0 then
      for _, t in pairs(h.running) do t.held = why end
      self:send(h, "Q\n")
    end
  end
end

--- No more tasks: each worker gets EOF and exits (or is killed).
function Remote:close()
  self.closed = true
  self:close_sessions()
end

function Remote:stop(records)
  self.closed = true
  for _, h in ipairs(self.hosts) do session.drop_errfile(h) end
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
  h.uid = 0
  local down, up = host_keys(h, false)
  local id = assert(loop:spawn(bootstrap.argv(h), nil, nil, bootstrap.head(h, 0.1, down, up), 0, 0, true))
  local read, skipper, frames, started = frame_reader(h.max_frame), wire.banner_skipper(4096), {}, false
  local function wait_frame()
    while #frames == 0 do
      for _, rec in ipairs(loop:poll(10)) do
        local data = rec.data
        if not data and rec.id == id then error("the session ended: " .. tostring(rec.stderr)) end
        if data and not started then data = skipper.feed(data); started = data ~= nil end
        if data then read(data, frames) end
      end
    end
    return assert(wire.answer(table.remove(frames, 1)))
  end
  assert(wait_frame()[1] == "hello")
  local t1 = now()
  for i = 1, n do
    loop:write(id, wire.line({ "P", tostring(i) }))
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
