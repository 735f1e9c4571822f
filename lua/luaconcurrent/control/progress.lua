--- progress: a one-line bar on stderr while the run goes on, when stderr
-- is a terminal (nothing at all otherwise):
--   [=====>      ] 45/100  4 running  1 failed  12.3/s  ETA 0:05
-- The total is "?" until an iterator has ended. Redrawn at most ten times
-- a second, fitted to the terminal's width, erased at the end.

local core = require "luaconcurrent.core"

local M = {}

local function clock(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s // 60 % 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end

--- A bar, or nil when stderr is not a terminal.
function M.new()
  if not (core.isatty and core.isatty(2)) then return nil end
  return setmetatable({ t0 = core.now(), last = -1, shown = false }, { __index = M })
end

-- The tasks running as the bar is drawn: those the executor says have
-- started (st:running(); an executor may hold more ahead of their start,
-- and those are not running). It is drawn as results are reported: after
-- the tasks that just ended left their slots and before the scheduler
-- hands over the next ones, so the count is short by the tasks about to
-- start. A slot counts as busy while tasks not yet handed over remain to
-- fill it and the run is not stopping; never more than the executor runs
-- at once (st:concurrency()).
function M.running(st)
  local running = st:running()
  if st.halted or st.stopping then return running end
  -- (results stored, not yet reported, are neither done nor handed over)
  local unreported = (st.npending - st.phead + 1) // 2
  local waiting = st.total and math.max(st.total - st.done - unreported - st.inflight, 0) or math.huge
  return math.max(running, math.min(st:concurrency(), running + waiting))
end

function M:line(st)
  local width = (core.term_width and core.term_width(2)) or 80
  local done, total = st.done, st.total
  local elapsed = core.now() - self.t0
  local rate = elapsed > 0 and done / elapsed or 0
  local eta = (total and rate > 0) and (total - done) / rate or math.huge
  local text = string.format(" %d/%s  %d running  %d failed  %.1f/s  ETA %s",
    done, total and tostring(total) or "?", M.running(st), st.failed or 0, rate, clock(eta))
  local room = width - #text - 3
  if room >= 10 then
    local fill = total and total > 0 and math.floor(room * done / total) or 0
    local bar = string.rep("=", fill) .. (fill < room and ">" or "")
    text = "[" .. bar .. string.rep(" ", room - #bar) .. "]" .. text
  end
  return text:sub(1, width - 1)
end

--- Redraw (at most ten times a second unless forced).
function M:draw(st, force)
  local t = core.now()
  if not force and t - self.last < 0.1 then return end
  self.last = t
  io.stderr:write("\r", self:line(st), "\27[K")
  io.stderr:flush()
  self.shown = true
end

--- Erase the bar (before other output, and at the end).
function M:clear()
  if self.shown then
    io.stderr:write("\r\27[K")
    io.stderr:flush()
    self.shown = false
  end
end

return M
