--- timeline: a picture of a run as SVG. One row per slot, one bar per
-- task from its start to its end, coloured by outcome; hovering a bar
-- shows its key, times and exit status. Stragglers and idle slots show at
-- a glance. Rows are assigned after the fact (each task to the first row
-- free at its start), so the same picture comes from a joblog.

local M = {}

local COLOURS = {
  ok = "#3a9a4a", failed = "#c8423b", timeout = "#e39b2d", interrupted = "#9a9a9a",
}
local ROW, GAP, LEFT, WIDTH = 18, 4, 60, 1000

local function xml(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;",
  }):gsub("[%z\1-\8\11\12\14-\31]", "?"))
end

--- One bar from a result.
function M.bar(res)
  local outcome = res.success and "ok" or res.timeout and "timeout"
    or res.exception == "Interrupted" and "interrupted" or "failed"
  return { key = res.key, start = res.time_start, finish = res.time_start + math.max(res.time_run, 0),
           outcome = outcome, status = res.signal and ("signal " .. res.signal) or
             ("exit " .. tostring(res.returncode)) }
end

--- Bars from a joblog (control/joblog.lua's columns).
function M.from_joblog(path)
  local bars = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local c = {}
    for v in (line .. "\t"):gmatch("([^\t]*)\t") do c[#c + 1] = v end
    local start, run = tonumber(c[3]), tonumber(c[4])
    if start and run then
      local exitval, signal = tonumber(c[7]) or 0, tonumber(c[8]) or 0
      bars[#bars + 1] = { key = c[10] or c[1], start = start, finish = start + run,
        outcome = (exitval == 0 and signal == 0) and "ok" or (signal == 15 and "timeout") or "failed",
        status = signal ~= 0 and ("signal " .. signal) or ("exit " .. exitval) }
    end
  end
  f:close()
  return bars
end

--- The SVG document for bars.
function M.svg(bars)
  table.sort(bars, function(a, b) return a.start < b.start end)
  local t0, t1 = math.huge, -math.huge
  for _, b in ipairs(bars) do
    t0, t1 = math.min(t0, b.start), math.max(t1, b.finish)
  end
  if #bars == 0 then t0, t1 = 0, 1 end
  local span = math.max(t1 - t0, 1e-6)
  local free, rows = {}, 0       -- free[row] = when that row is free again
  local out = {}
  for _, b in ipairs(bars) do
    local row
    for r = 1, rows do if free[r] <= b.start then row = r; break end end
    if not row then rows = rows + 1; row = rows end
    free[row] = b.finish
    local x = LEFT + (b.start - t0) / span * WIDTH
    local w = math.max((b.finish - b.start) / span * WIDTH, 1)
    out[#out + 1] = string.format(
      '<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: +%.3f s, %.3f s, %s, %s</title></rect>',
      x, 20 + (row - 1) * (ROW + GAP), w, ROW, COLOURS[b.outcome], xml(b.key), b.start - t0,
      b.finish - b.start, xml(b.status), b.outcome)
  end
  local height = 40 + rows * (ROW + GAP)
  local head = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">',
      LEFT + WIDTH + 20, height, LEFT + WIDTH + 20, height),
    string.format('<text x="4" y="14" font-family="sans-serif" font-size="12">%d tasks, %d slots, %.3f s</text>',
      #bars, rows, t1 - t0),
  }
  for r = 1, rows do
    head[#head + 1] = string.format('<text x="4" y="%d" font-family="sans-serif" font-size="11">slot %d</text>',
      20 + (r - 1) * (ROW + GAP) + 13, r)
  end
  return table.concat(head, "\n") .. "\n" .. table.concat(out, "\n") .. "\n</svg>\n"
end

--- Write the SVG of bars to path.
function M.write(path, bars)
  local f = assert(io.open(path, "w"))
  f:write(M.svg(bars))
  f:close()
end

return M
