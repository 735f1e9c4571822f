--- timeline: a picture of a run. One row per slot (per host and slot for
-- remote runs), one bar per task from its start to its end, coloured by
-- outcome, its key written in it when it fits and in a tooltip (<title>)
-- always; a time axis with ticks, a legend and a summary line. Rows are
-- assigned after the fact (each task to the first row of its host free at
-- its start), so the same picture comes from a joblog.
--
-- A path ending in .json gets Chrome's trace-event format instead (what
-- Perfetto and chrome://tracing open): one track (tid) per row, one
-- complete ("X") event per task.

local M = {}

local COLOURS = {
  ok = "#3a9a4a", failed = "#c8423b", timeout = "#e39b2d", retried = "#3b6fc8",
  interrupted = "#9a9a9a",
}
local LEGEND = {
  { "ok", "ok" }, { "failed", "failed" }, { "timeout", "timed out" },
  { "retried", "retried (succeeded after a retry)" }, { "interrupted", "interrupted" },
}
-- Geometry: row height, gap between rows, left margin (row labels), plot
-- width, top (summary and legend), and the gap kept between two bars that
-- follow each other on a row.
local ROW, ROWGAP, LEFT, WIDTH, TOP, BARGAP = 18, 4, 130, 1000, 54, 1
local CHAR = 6.2       -- width of one 11px sans-serif character, roughly

local function xml(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;",
  }):gsub("[%z\1-\8\11\12\14-\31]", "?"))
end

local function outcome_of(res)
  if res.success then return (res.attempts or 1) > 1 and "retried" or "ok" end
  if res.timeout then return "timeout" end
  if res.exception == "Interrupted" then return "interrupted" end
  return "failed"
end

--- One bar from a result.
function M.bar(res)
  return { key = res.key, start = res.time_start, finish = res.time_start + math.max(res.time_run, 0),
           outcome = outcome_of(res), host = res.host,
           status = res.signal and ("signal " .. res.signal) or ("exit " .. tostring(res.returncode)) }
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
      local host = c[2] ~= "" and c[2] ~= ":" and c[2] or nil
      bars[#bars + 1] = { key = c[10] or c[1], start = start, finish = start + run, host = host,
        outcome = (exitval == 0 and signal == 0) and "ok" or (signal == 15 and "timeout") or "failed",
        status = signal ~= 0 and ("signal " .. signal) or ("exit " .. exitval) }
    end
  end
  f:close()
  return bars
end

-- Sorts bars by start and gives each a row (bar.row), rows grouped by
-- host. Returns the rows ({label =}), t0 and t1.
local function layout(bars)
  table.sort(bars, function(a, b)
    if a.start ~= b.start then return a.start < b.start end
    return tostring(a.key) < tostring(b.key)
  end)
  local t0, t1 = math.huge, -math.huge
  for _, b in ipairs(bars) do t0, t1 = math.min(t0, b.start), math.max(t1, b.finish) end
  if #bars == 0 then t0, t1 = 0, 1 end
  local hosts, order = {}, {}
  for _, b in ipairs(bars) do
    local h = b.host and tostring(b.host) or ""
    local hs = hosts[h]
    if not hs then hs = { free = {} }; hosts[h] = hs; order[#order + 1] = h end
    local slot
    for s = 1, #hs.free do if hs.free[s] <= b.start then slot = s; break end end
    if not slot then slot = #hs.free + 1 end
    hs.free[slot] = b.finish
    b.host_name, b.slot = h, slot
  end
  local rows, first = {}, {}
  for _, h in ipairs(order) do
    first[h] = #rows
    for s = 1, #hosts[h].free do
      rows[#rows + 1] = { label = (h ~= "" and (h .. " ") or "") .. "slot " .. s }
    end
  end
  for _, b in ipairs(bars) do b.row = first[b.host_name] + b.slot end
  return rows, t0, t1
end

-- A tick step of 1, 2 or 5 times a power of ten giving 5 to 10 ticks.
local function tick_step(span)
  local raw = span / 8
  local p = 10 ^ math.floor(math.log(raw, 10))
  for _, m in ipairs({ 1, 2, 5, 10 }) do
    if m * p >= raw then return m * p end
  end
  return 10 * p
end

local function summary(bars, rows, t0, t1)
  local n = {}
  for _, b in ipairs(bars) do n[b.outcome] = (n[b.outcome] or 0) + 1 end
  return string.format(
    "%d tasks on %d slots in %.3f s: %d ok, %d failed, %d timed out, %d retried, %d interrupted",
    #bars, #rows, t1 - t0, n.ok or 0, n.failed or 0, n.timeout or 0, n.retried or 0, n.interrupted or 0)
end

--- The SVG document for bars.
function M.svg(bars)
  local rows, t0, t1 = layout(bars)
  local span = math.max(t1 - t0, 1e-6)
  local function x(t) return LEFT + (t - t0) / span * WIDTH end
  local function y(row) return TOP + (row - 1) * (ROW + ROWGAP) end
  local height = TOP + #rows * (ROW + ROWGAP) + 30
  local total = LEFT + WIDTH + 20
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d"'
      .. ' font-family="sans-serif">', total, height, total, height),
    -- A white ground (a path, so that every <rect> is a task's bar).
    string.format('<path d="M0 0H%dV%dH0Z" fill="#ffffff"/>', total, height),
    string.format('<text x="4" y="16" font-size="13">%s</text>', xml(summary(bars, rows, t0, t1))),
  }
  -- Legend.
  local lx = 4
  for _, l in ipairs(LEGEND) do
    out[#out + 1] = string.format('<circle cx="%.1f" cy="32" r="5" fill="%s"/>'
      .. '<text x="%.1f" y="36" font-size="11">%s</text>', lx + 5, COLOURS[l[1]], lx + 14, xml(l[2]))
    lx = lx + 22 + #l[2] * CHAR * 0.9
  end
  -- Row labels and guides.
  for r, row in ipairs(rows) do
    out[#out + 1] = string.format('<text x="4" y="%d" font-size="11">%s</text>', y(r) + 13, xml(row.label))
  end
  -- Time axis: a line under the rows, ticks and their labels, faint guides.
  local axis = TOP + #rows * (ROW + ROWGAP) + 2
  out[#out + 1] = string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>',
    LEFT, axis, LEFT + WIDTH, axis)
  local step = tick_step(span)
  local digits = math.max(0, -math.floor(math.log(step, 10)))
  for k = 0, math.floor(span / step + 1e-9) do
    local tx = x(t0 + k * step)
    out[#out + 1] = string.format('<line x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#dddddd"/>',
      tx, TOP - 4, tx, axis)
    out[#out + 1] = string.format('<line x1="%.2f" y1="%d" x2="%.2f" y2="%d" stroke="#000000"/>',
      tx, axis, tx, axis + 5)
    out[#out + 1] = string.format('<text x="%.2f" y="%d" font-size="10" text-anchor="middle">%s s</text>',
      tx, axis + 16, string.format("%." .. digits .. "f", k * step))
  end
  -- Bars: a gap at the end of each, so two back to back stay two.
  for _, b in ipairs(bars) do
    local bx = x(b.start)
    local w = (b.finish - b.start) / span * WIDTH
    w = math.max(w - BARGAP, 1)
    local tip = string.format("%s: +%.3f s, %.3f s, %s, %s%s", xml(b.key), b.start - t0,
      b.finish - b.start, xml(b.status), b.outcome, b.host_name ~= "" and (", " .. xml(b.host_name)) or "")
    out[#out + 1] = string.format('<g><title>%s</title><rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"/>',
      tip, bx, y(b.row), w, ROW, COLOURS[b.outcome])
    local label = tostring(b.key)
    if #label * CHAR + 4 <= w then
      out[#out + 1] = string.format('<text x="%.2f" y="%d" font-size="11" fill="#ffffff">%s</text>',
        bx + 2, y(b.row) + 13, xml(label))
    end
    out[#out + 1] = "</g>"
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

-- A JSON string (keys are any Lua value; written as text).
local function jstr(s)
  s = tostring(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

--- The trace-event JSON document for bars (times in microseconds from the
-- first start).
function M.trace(bars)
  local rows, t0, t1 = layout(bars)
  local ev = {}
  ev[#ev + 1] = string.format('{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{"name":%s}}',
    jstr("luaconcurrent run: " .. summary(bars, rows, t0, t1)))
  for r, row in ipairs(rows) do
    ev[#ev + 1] = string.format('{"name":"thread_name","ph":"M","pid":1,"tid":%d,"args":{"name":%s}}',
      r, jstr(row.label))
    ev[#ev + 1] = string.format('{"name":"thread_sort_index","ph":"M","pid":1,"tid":%d,"args":{"sort_index":%d}}', r, r)
  end
  for _, b in ipairs(bars) do
    ev[#ev + 1] = string.format(
      '{"name":%s,"cat":%s,"ph":"X","pid":1,"tid":%d,"ts":%.3f,"dur":%.3f,"args":{"outcome":%s,"status":%s%s}}',
      jstr(b.key), jstr(b.outcome), b.row, (b.start - t0) * 1e6, (b.finish - b.start) * 1e6,
      jstr(b.outcome), jstr(b.status), b.host_name ~= "" and (',"host":' .. jstr(b.host_name)) or "")
  end
  return '{"displayTimeUnit":"ms","traceEvents":[\n' .. table.concat(ev, ",\n") .. "\n]}\n"
end

--- Write the picture of bars to path: trace-event JSON for a .json path,
-- else SVG.
function M.write(path, bars)
  local text = path:lower():find("%.json$") and M.trace(bars) or M.svg(bars)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

return M
