--- --timeout N%: a job is killed once it runs longer than N% of the
-- median run time of the jobs that succeeded so far, as GNU parallel
-- 20221122 does: no limit until a job has succeeded, then the limit
-- follows each success, and applies to the jobs already running too.
--
-- The median is parallel's remedian (Rousseeuw and Bassett, 1990): the
-- lower median of the last 999 run times, of the last 999 of those
-- medians, and of the last 999 of theirs; memory stays bounded however
-- long the run. Run times are parallel's, to the millisecond; they are
-- compared as numbers (parallel sorts their text, which orders 10.5
-- before 9.5).

local M = {}
M.__index = M

local WIDTH = 999

--- A percentage ("300%") or nil when s is not one.
function M.percent(s)
  local n = s:match("^(%d+%.?%d*)%%$")
  return n and tonumber(n) or nil
end

function M.new(pct)
  return setmetatable({ pct = pct / 100, n = 0, levels = { {}, {}, {} }, limit = nil }, M)
end

local function lower_median(t)
  local s = table.move(t, 1, #t, 1, {})
  table.sort(s)
  return s[(#s - 1) // 2 + 1]
end

--- A successful job ran `seconds`: the limit follows.
function M:success(seconds)
  local i, lv = self.n, self.levels
  self.n = i + 1
  lv[1][i % WIDTH + 1] = math.floor(seconds * 1000) / 1000
  lv[2][(i // WIDTH) % WIDTH + 1] = lower_median(lv[1])
  lv[3][(i // WIDTH // WIDTH) % WIDTH + 1] = lower_median(lv[2])
  self.limit = self.pct * lower_median(lv[3])
end

--- The seconds a job may run now; nil before any job succeeded.
function M:seconds()
  return self.limit
end

return M
