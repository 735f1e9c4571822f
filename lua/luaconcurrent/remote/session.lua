--- Sessions: one process on this side (ssh, srun, or `sh -c` for ":")
-- per host, running its worker (methods of the remote executor). This
-- file has the states, failures and the end; remote/connects.lua when a
-- session starts, remote/inbound.lua what a host sends (banner, hello,
-- answers), remote/heartbeat.lua the heartbeats.
--
-- A host's state, each with its deadline:
--   want        waiting for a connect slot (connects.lua: bounded by
--               count and by time)
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
local connects = require "luaconcurrent.remote.connects"
local inbound = require "luaconcurrent.remote.inbound"
local heartbeat = require "luaconcurrent.remote.heartbeat"

local now = core.now

local M = {}

M.QUICK_RETRIES = 3    -- refused connects retried with jitter
M.BACKOFF_MAX = 60
M.MAX_FAILS = 6        -- failures (decaying) before a host is given up
M.EXIT_AFTER = 5       -- seconds a closed session has to exit (plus the grace)

function M.install(Remote, trace)
connects.install(Remote, trace)
inbound.install(Remote, trace)
heartbeat.install(Remote)

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
