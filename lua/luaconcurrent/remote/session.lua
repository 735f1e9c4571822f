--- Sessions: one process on this side (ssh, srun, or `sh -c` for ":")
-- per host, running its worker (methods of the remote executor).
--
-- A host's state, each with its deadline:
--   want        waiting for a connect slot (at most MAX_CONNECTING start
--               at once; a slot is free again after CONNECT_SLOT seconds
--               even if that hello has not come)
--   connecting  started; what the login prints before wire.MARK is
--               skipped; no hello by hello_timeout: the host failed (the
--               error shows what it printed)
--   up          tasks go to it; heartbeats: silent for HB_LOST of them,
--               it is lost
--   closing     EOF sent (no more tasks): it has EXIT_AFTER seconds more
--               to exit, then its session is killed
--   down        lost; tried again after a backoff
--   bad         given up (refused, or too many failures): its error is
--               kept for the tasks that no host can run
--   closed      over
-- A protocol error (a frame over the cap, one that fails wire.answer, a
-- record that is not plain data, a second hello) fails the host like a
-- lost session: its tasks go elsewhere. A host's failure count is not
-- reset at hello; it decays by one each DECAY seconds the session stays up.

local core = require "luaconcurrent.core"
local wire = require "luaconcurrent.remote.wire"
local bootstrap = require "luaconcurrent.remote.bootstrap"

local now = core.now

local M = {}

M.MAX_CONNECTING = 8   -- sessions starting at once
M.FIRST_CONNECTING = 2 -- ... before any host is up
M.CONNECT_SLOT = 3     -- seconds a starting session holds its slot
M.QUICK_RETRIES = 3    -- refused connects retried with jitter
M.BACKOFF_MAX = 60
M.MAX_FAILS = 6        -- failures (decaying) before a host is given up
M.DECAY = 30           -- seconds up per failure forgiven
M.HB_LOST = 4          -- heartbeats without a frame: the host is lost
M.EXIT_AFTER = 5       -- seconds a closed session has to exit (plus the grace)
M.BANNER_MAX = 64 * 1024

function M.install(Remote, trace)

function Remote:nconnecting()
  local n, t = 0, now()
  for _, h in ipairs(self.hosts) do
    if h.state == "connecting" and t - h.started < M.CONNECT_SLOT then n = n + 1 end
  end
  return n
end

-- Handshakes share the CPUs: a few first, so that the first host is up
-- (and tasks run) soon, then more as hosts come up.
function Remote:connect_limit()
  local up = 0
  for _, h in ipairs(self.hosts) do if h.ever_up then up = up + 1 end end
  return math.min(M.MAX_CONNECTING, M.FIRST_CONNECTING + 2 * up)
end

function Remote:pump_connects()
  if self.closed then return end
  local limit = self:connect_limit()
  for _, h in ipairs(self.hosts) do
    if h.state == "want" then
      if self:nconnecting() >= limit then return end
      self:connect(h)
    end
  end
end

function Remote:connect(h)
  local argv = bootstrap.argv(h)
  -- ssh's stderr (and the remote worker's) to a file: the host's error
  -- when the session fails, not noise on ours.
  h.errfile = h.errfile or os.tmpname()
  table.insert(argv, 1, "sh")
  table.insert(argv, 2, "-c")
  table.insert(argv, 3, 'exec "$@" 2>"$0"')
  table.insert(argv, 4, h.errfile)
  local id, message = self.loop:spawn(argv, nil, nil, bootstrap.head(h, self.grace, h.down, h.up), 0, 0, true)
  h.gen = (h.gen or 0) + 1
  if not id then
    h.error = tostring(message)
    return self:after_failure(h, false)
  end
  h.id, h.state, h.started, h.running, h.nrunning = id, "connecting", now(), {}, 0
  h.read, h.skipper, h.why = wire.reader(h.max_frame), wire.banner_skipper(M.BANNER_MAX), nil
  h.last_heard, h.unanswered, h.last_beat = now(), nil, nil
  trace(h, "connecting (attempt %d)", h.attempts + 1)
  h.attempts = h.attempts + 1
  self.procs[id] = h
  self:at_session(h, h.started + M.CONNECT_SLOT, function() self:pump_connects() end)
  if h.hello_timeout == math.huge then return end    -- a Slurm step may wait for its CPU
  self:at_session(h, h.started + h.hello_timeout, function()
    if h.state ~= "connecting" then return end
    local said = h.skipper.text():gsub("%z", ""):gsub("%s+$", "")
    self:fail_host(h, string.format("no hello within %g s%s", h.hello_timeout,
      said ~= "" and (" (it printed: " .. said:sub(1, 200) .. ")") or ""))
  end)
end

-- A timer for h's current session only.
function Remote:at_session(h, when, fn)
  local gen = h.gen
  self:at(when, function() if h.gen == gen and h.id then fn() end end)
end

--- h failed (why kept for its error): its session is killed; the record
-- of its end requeues its tasks.
function Remote:fail_host(h, why)
  if not h.id then return end
  h.why = h.why or why
  trace(h, "failing: %s", why)
  self.loop:kill(h.id)
end

-- A host that can never run this run's tasks: given up, saying why.
function Remote:refuse(h, why)
  h.refused = true
  self:fail_host(h, why)
end

--- Why a host's session ended: ours, else the last lines of its stderr
-- (srun names a bad option a line before its "Try srun --help"), else
-- its status.
local function session_error(h, rec)
  if h.why then return h.why end
  local lines = {}
  local f = h.errfile and io.open(h.errfile, "rb")
  if f then
    for l in f:read("a"):gmatch("[^\n]+") do
      l = l:gsub("%s+$", "")
      if l ~= "" then lines[#lines + 1] = l; if #lines > 3 then table.remove(lines, 1) end end
    end
    f:close()
  end
  if #lines > 0 then return table.concat(lines, " | ") end
  return string.format("session ended (status %s)", tostring(rec.returncode))
end

-- What srun says when retrying cannot help: the job is gone, the
-- allocation expired, an option is wrong.
local FOREVER = { "[Ii]nvalid job", "[Ee]xpired or invalid job", "[Uu]nrecognized option", "[Ii]nvalid option",
  "unrecognized option", "[Ii]nvalid argument", "[Jj]ob/step already completing", "[Ii]nvalid partition",
  "[Ii]nvalid account", "[Ii]nvalid qos", "[Rr]equested node configuration is not available" }
local function cannot_heal(h)
  if not h.slurm then return false end
  for _, p in ipairs(FOREVER) do if h.error:find(p) then return true end end
  return false
end

local function drop_errfile(h)
  if h.errfile then os.remove(h.errfile); h.errfile = nil end
end
M.drop_errfile = drop_errfile

function Remote:host_lost(h, rec)
  self.procs[h.id] = nil
  h.id = nil
  local was_up = h.state == "up" or h.state == "closing"
  h.error = session_error(h, rec)
  if cannot_heal(h) then h.refused = true end
  trace(h, "session ended (%s, status %s), %d task(s) in flight: %s", was_up and "was up" or "before hello",
    tostring(rec.returncode), h.nrunning or 0, h.error)
  self:requeue(h)
  if self.closed or h.state == "closing" then
    h.state = "closed"
    drop_errfile(h)
  else
    self:after_failure(h, was_up)
  end
  self:update_capacity()
  self:pump_connects()
  self:dispatch()
end

function Remote:after_failure(h, was_up)
  h.fails = h.fails + 1
  if h.refused or (not h.ever_up and h.fails > M.QUICK_RETRIES) or h.fails > M.MAX_FAILS then
    h.state = "bad"
    trace(h, "given up after %d failure(s): %s", h.fails, h.error)
    drop_errfile(h)
    self:update_capacity()
    return
  end
  local delay
  if not was_up and h.fails <= M.QUICK_RETRIES then
    delay = 0.2 + math.random() * 0.8 * h.fails    -- MaxStartups refusal: jitter
  else
    delay = math.min(M.BACKOFF_MAX, 2 ^ math.min(h.fails, 6)) * (0.75 + math.random() * 0.5)
  end
  h.state = "down"
  trace(h, "down: retry in %.2f s (failure %d)", delay, h.fails)
  self:at(now() + delay, function()
    if h.state == "down" and not self.closed then h.state = "want"; self:pump_connects() end
  end)
end

-- ---- what a host sends ------------------------------------------------

function Remote:on_data(h, data)
  if h.why then return end         -- failing: nothing more it says counts
  if h.state == "connecting" and not h.skipper.banner then
    data = h.skipper.feed(data)
    if not data then
      -- A hello frame without the mark: a worker of an older protocol.
      if h.skipper.text():find("\5\0\0\0hello", 1, true) then
        self:refuse(h, "its worker speaks an older protocol than " .. wire.PROTOCOL
          .. " (install the same luaconcurrent on both ends)")
      end
      return
    end
    if h.skipper.banner ~= "" then trace(h, "skipped %d bytes before the hello", #h.skipper.banner) end
  end
  local frames = {}
  local why = h.read(data, frames)
  for _, blob in ipairs(frames) do
    if h.why then return end       -- failed on an earlier frame
    local f, bad = wire.answer(blob)
    if not f then return self:fail_host(h, "protocol error: " .. bad) end
    self:on_frame(h, f)
  end
  if why then self:fail_host(h, "protocol error: " .. why) end
end

function Remote:on_frame(h, f)
  local what = f[1]
  h.last_heard = now()
  if what == "hello" then
    if h.state ~= "connecting" then return self:fail_host(h, "protocol error: a second hello") end
    self:on_hello(h, f)
  elseif h.state == "connecting" then
    if what == "refuse" then return self:refuse(h, "refused: " .. f[2]) end
    self:fail_host(h, "protocol error: a " .. what .. " frame before the hello")
  elseif what == "bye" then
    self:fail_host(h, f[2])
  elseif wire.RESULT[what] then
    local t = h.running[f[2]]
    if not t then return self:fail_host(h, "protocol error: an answer for task id " .. f[2] .. ", not one it holds") end
    self:on_result(h, t, f)
  end
end

function Remote:on_hello(h, f)
  if f[2] ~= wire.PROTOCOL then
    return self:refuse(h, "its worker speaks protocol " .. f[2] .. ", this side " .. wire.PROTOCOL
      .. " (install the same luaconcurrent on both)")
  end
  h.mode, h.ncpu = f[6], math.tointeger(tonumber(f[3]))
  h.version, h.lua_version, h.bytecode = f[7], f[4], f[8]
  if h.slurm then h.name = require("luaconcurrent.remote.slurm").node_name(f[9]) end
  if self.is_fn then
    local why = self:fn_refusal(h)
    if why then return self:refuse(h, why) end
    self:send(h, wire.line({ "L", core.marshal_retag(self.fn_bytes, h.down) }))
  end
  h.state, h.ever_up, h.healthy_since = "up", true, now()
  h.slots_now = h.slots or (h.slots_rule and h.slots_rule(h.ncpu)) or h.ncpu
  -- Engine mode runs slots_now tasks at once and holds as many more,
  -- sent ahead: the next starts without waiting for a round trip.
  h.cap = h.slots_now
  if h.mode == "engine" then
    h.cap = h.slots_now * self.PREFETCH
    self:send(h, wire.line({ "S", tostring(h.slots_now) }))
  end
  trace(h, "up: mode %s%s, %s cpus, %d slots", h.mode,
    h.mode == "engine" and (" (luaconcurrent " .. h.version .. ")") or "", h.ncpu, h.slots_now)
  self:update_capacity()
  self:pump_connects()
  self:dispatch()
end

-- ---- heartbeats -------------------------------------------------------

function Remote:beat()
  if self.closed then return end
  local t = now()
  for _, h in ipairs(self.hosts) do
    if h.state == "up" then self:beat_host(h, t) end
  end
  self:at(now() + self.period, function() self:beat() end)
end

function Remote:beat_host(h, t)
  local hb = h.heartbeat
  -- Silence counts from the oldest heartbeat not answered (so a run
  -- that was busy elsewhere for a while does not blame the host).
  if h.unanswered and h.unanswered < h.last_heard then h.unanswered = nil end
  if h.unanswered and t - h.unanswered > (M.HB_LOST - 1) * hb then
    return self:fail_host(h, string.format("no heartbeat for %.1f s", t - h.last_heard))
  end
  if t - (h.last_beat or 0) >= hb * 0.99 then
    h.last_beat = t
    h.unanswered = h.unanswered or t
    self:send(h, "H\n")
  end
  if h.fails > 0 and t - h.healthy_since >= M.DECAY then
    h.fails, h.healthy_since = h.fails - 1, t
  end
end

-- ---- the end ----------------------------------------------------------

--- No more tasks: each worker gets EOF and has EXIT_AFTER seconds (and
-- the grace) to exit; then its session is killed.
function Remote:close_sessions()
  for _, h in ipairs(self.hosts) do
    if h.id and h.state == "connecting" then
      -- Never up (a Slurm step still waiting for its CPU): nothing of it
      -- to wait for.
      h.state = "closing"
      self.loop:kill(h.id)
    elseif h.id then
      self.loop:close_input(h.id)
      h.state = "closing"
      self:at_session(h, now() + self.grace + M.EXIT_AFTER, function()
        trace(h, "did not exit %g s after EOF: killed", self.grace + M.EXIT_AFTER)
        self.loop:kill(h.id)
      end)
    elseif h.state ~= "bad" then
      h.state = "closed"
      drop_errfile(h)
    end
  end
end

end

return M
