--- Connect slots: when each host's session starts (methods of the remote
-- executor; remote/session.lua has the states).
--
-- Handshakes share the CPUs (the hosts' too, on loopback or a busy login
-- node): FIRST_CONNECTING start at once, so that the first host is up and
-- tasks run soon; each host up allows 2 more, at most MAX_CONNECTING.
-- A slot is bounded by time as well as count: a session that has not said
-- hello within the slot time no longer holds its slot, so hosts slow to
-- answer (a far link, a hung home directory, a Slurm step waiting for a
-- CPU) do not keep the next from starting. The slot time is CONNECT_SLOT
-- until a host is up, then twice the median handshake seen (at least
-- SLOT_MIN, at most CONNECT_SLOT): where hosts come up fast, a stalled one
-- holds its slot only briefly.

local core = require "luaconcurrent.core"
local wire = require "luaconcurrent.remote.wire"
local frame_reader = require("luaconcurrent.frames").reader
local bootstrap = require "luaconcurrent.remote.bootstrap"

local now = core.now

local M = {}

M.FIRST_CONNECTING = 2 -- sessions starting at once before any host is up
M.MAX_CONNECTING = 16  -- ... at most, however many are up
M.CONNECT_SLOT = 3     -- seconds a starting session holds its slot (at most)
M.SLOT_MIN = 0.25      -- ... at least
M.BANNER_MAX = 64 * 1024

function M.install(Remote, trace)

--- Seconds a starting session holds its connect slot.
function Remote:slot_time()
  local seen = self.handshakes
  if not seen or #seen == 0 then return M.CONNECT_SLOT end
  local median = seen[(#seen + 1) // 2]
  return math.max(M.SLOT_MIN, math.min(M.CONNECT_SLOT, 2 * median))
end

--- h said hello: its handshake's seconds count in the slot time.
function Remote:note_handshake(h)
  local seen = self.handshakes or {}
  self.handshakes = seen
  local d, i = now() - h.started, #seen + 1
  while i > 1 and seen[i - 1] > d do seen[i] = seen[i - 1]; i = i - 1 end
  seen[i] = d
end

-- Sessions holding a slot now; and when the first of them lets it go.
function Remote:nconnecting()
  local n, t, slot, free_at = 0, now(), self:slot_time(), math.huge
  for _, h in ipairs(self.hosts) do
    if h.state == "connecting" and t - h.started < slot then
      n = n + 1
      free_at = math.min(free_at, h.started + slot)
    end
  end
  return n, free_at
end

function Remote:connect_limit()
  local up = 0
  for _, h in ipairs(self.hosts) do if h.ever_up then up = up + 1 end end
  return math.min(M.MAX_CONNECTING, M.FIRST_CONNECTING + 2 * up)
end

--- Starts what the slots allow; when hosts still wait, wakes up when the
-- next slot frees by time.
function Remote:pump_connects()
  if self.closed then return end
  local limit = self:connect_limit()
  for _, h in ipairs(self.hosts) do
    if h.state == "want" then
      local n, free_at = self:nconnecting()
      if n >= limit then return self:wake_at(free_at) end
      self:connect(h)
    end
  end
end

-- One timer for the next slot to free (an earlier one replaces it).
function Remote:wake_at(t)
  if t == math.huge or (self.pump_at and self.pump_at <= t) then return end
  self.pump_at = t
  self:at(t, function()
    if self.pump_at == t then self.pump_at = nil end
    self:pump_connects()
  end)
end

function Remote:connect(h)
  -- ssh's stderr (and the remote worker's) to a file: the host's error
  -- when the session fails, not noise on ours.
  h.errfile = h.errfile or os.tmpname()
  local argv = bootstrap.argv(h)
  table.move(argv, 1, #argv, 5)
  argv[1], argv[2], argv[3], argv[4] = "sh", "-c", 'exec "$@" 2>"$0"', h.errfile
  local id, message = self.loop:spawn(argv, nil, nil, bootstrap.head(h, self.grace, h.down, h.up), 0, 0, true)
  h.gen = (h.gen or 0) + 1
  if not id then
    h.error = tostring(message)
    return self:after_failure(h, false)
  end
  h.id, h.state, h.started, h.running, h.nrunning = id, "connecting", now(), {}, 0
  h.read, h.skipper, h.why = frame_reader(h.max_frame), wire.banner_skipper(M.BANNER_MAX), nil
  h.last_heard, h.unanswered, h.last_beat = now(), nil, nil
  trace(h, "connecting (attempt %d)", h.attempts + 1)
  h.attempts = h.attempts + 1
  self.procs[id] = h
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

end

return M
