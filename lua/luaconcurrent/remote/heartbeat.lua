--- Heartbeats (methods of the remote executor): every period, each host
-- up gets H unless one is still unanswered; a host silent for HB_LOST of
-- its heartbeats is lost. A host that stays healthy is forgiven one
-- failure each DECAY seconds (failures do not reset at hello).

local core = require "luaconcurrent.core"

local now = core.now

local M = {}

M.HB_LOST = 4          -- heartbeats without a frame: the host is lost
M.DECAY = 30           -- seconds up per failure forgiven

function M.install(Remote)

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

end

return M
