-- Shared by the soak's families (scripts/soak/*.lua): /proc readings (RSS,
-- fds, children, processes carrying a marker), an RSS sampler that judges
-- flatness after a warm-up, a base64 decoder, and the family's report.

local M = {}

--- Tasks first..last as an iterator: make(i) -> what is expected of task i
-- (recorded in want[i]) and its arg.
function M.tasks(first, last, make, want)
  local i = first - 1
  return function()
    i = i + 1
    if i > last then return nil end
    local expect, arg = make(i)
    want[i] = expect
    return { i, arg }
  end
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local read = M.read

function M.rss_kb()
  return tonumber(read("/proc/self/status"):match("VmRSS:%s*(%d+)"))
end

M.SELF = read("/proc/self/stat"):match("^(%d+)")
local SELF = M.SELF

function M.env_number(name, default)
  return tonumber(os.getenv(name) or "") or default
end

-- The executable running this script (for child runners).
function M.exe()
  local here = (arg and arg[0] or ""):match("^(.*)/") or "."
  return os.getenv("LC_BIN") or (arg and arg[-1] and arg[-1]:find("luaconcurrent", 1, true) and arg[-1])
    or (here .. "/../../build/luaconcurrent")
end

-- Entries of a directory (names), without lfs when it is missing.
local has_lfs, lfs = pcall(require, "lfs")
local function list_dir(dir)
  local names = {}
  if has_lfs then
    for name in lfs.dir(dir) do
      if name ~= "." and name ~= ".." then names[#names + 1] = name end
    end
  else
    local p = io.popen("ls " .. dir .. " 2>/dev/null")
    for name in p:read("a"):gmatch("[^\n]+") do names[#names + 1] = name end
    p:close()
  end
  return names
end

-- Open fds of this process: count and "fd->target" list. With lfs the
-- directory stream's own fd is left out; without it (io.popen of ls) the
-- listing's pipe is, as the fd whose target is a pipe not open before.
function M.fd_count()
  local list = {}
  if has_lfs then
    local dir = "/proc/" .. SELF .. "/fd"
    for name in lfs.dir(dir) do
      local target = name:match("^%d+$") and lfs.symlinkattributes(dir .. "/" .. name, "target")
      if target and target ~= dir then list[#list + 1] = name .. "->" .. target end
    end
  else
    local p = io.popen("ls -l /proc/" .. SELF .. "/fd")
    local s = p:read("a")
    p:close()
    for fd, target in s:gmatch(" (%d+) %-> ([^\n]*)") do list[#list + 1] = fd .. "->" .. target end
  end
  table.sort(list)
  return #list, table.concat(list, " ")
end

-- Children of this process (of any of its threads: pool workers included).
function M.child_count()
  local n = 0
  for _, tid in ipairs(list_dir("/proc/" .. SELF .. "/task")) do
    local s = read("/proc/" .. SELF .. "/task/" .. tid .. "/children") or ""
    for _ in s:gmatch("%d+") do n = n + 1 end
  end
  return n
end

-- Live processes (not zombies, not this one) whose command line or
-- environment holds `marker`: "pid state cmdline" strings.
function M.marked_processes(marker)
  local found = {}
  for _, pid in ipairs(list_dir("/proc")) do
    if pid:match("^%d+$") and pid ~= SELF then
      local stat = read("/proc/" .. pid .. "/stat")
      local state = stat and stat:match("^%d+ %b() (%a)")
      if state and state ~= "Z" and state ~= "X" then
        local cmd = read("/proc/" .. pid .. "/cmdline") or ""
        local env = read("/proc/" .. pid .. "/environ") or ""
        if cmd:find(marker, 1, true) or env:find(marker, 1, true) then
          found[#found + 1] = pid .. " " .. state .. " " .. cmd:gsub("%z", " ")
        end
      end
    end
  end
  return found
end

-- Marked processes left after up to `grace` seconds (a process killed a
-- moment ago may still be on its way out): the first list seen and the last.
function M.leftovers(marker, grace)
  local first = M.marked_processes(marker)
  local last = first
  local waited = 0
  while #last > 0 and waited < (grace or 0) do
    os.execute("sleep 0.1")
    waited = waited + 0.1
    last = M.marked_processes(marker)
  end
  return first, last
end

---------------------------------------------------------------- base64
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VAL = {}
for i = 1, 64 do B64_VAL[B64:byte(i)] = i - 1 end

-- Strict RFC 4648 decoding (padding required); nil on malformed input.
function M.unbase64(s)
  if #s % 4 ~= 0 then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb = B64_VAL[a], B64_VAL[b]
    if not va or not vb then return nil end
    local last = i + 3 == #s
    if c == 61 then            -- "=="
      if not last or d ~= 61 then return nil end
      out[#out + 1] = string.char((va << 2 | vb >> 4) & 255)
    elseif d == 61 then        -- "="
      local vc = B64_VAL[c]
      if not last or not vc then return nil end
      local v = va << 18 | vb << 12 | vc << 6
      out[#out + 1] = string.char(v >> 16 & 255, v >> 8 & 255)
    else
      local vc, vd = B64_VAL[c], B64_VAL[d]
      if not vc or not vd then return nil end
      local v = va << 18 | vb << 12 | vc << 6 | vd
      out[#out + 1] = string.char(v >> 16 & 255, v >> 8 & 255, v & 255)
    end
  end
  return table.concat(out)
end

---------------------------------------------------------------- RSS sampler
-- Samples RSS every `every` calls of :tick(). Flatness is judged against
-- the level at the end of the warm-up (the first `warmup` fraction of
-- `total` ticks): every later sample must lie within `tolerance` of it.
local Sampler = {}
Sampler.__index = Sampler

function M.sampler(total, every, warmup, tolerance)
  return setmetatable({
    total = total, every = math.max(1, every), warmup_at = math.max(1, math.floor(total * (warmup or 0.05))),
    tolerance = tolerance or 0.10, ticks = 0, n = 0, trace = {},
    trace_every = math.max(1, total // 10),
  }, Sampler)
end

function Sampler:start()
  self.start_kb = M.rss_kb()
  self.min, self.max = self.start_kb, self.start_kb
end

function Sampler:sample()
  local kb = M.rss_kb()
  self.n = self.n + 1
  if kb < self.min then self.min = kb end
  if kb > self.max then self.max = kb end
  if self.base then
    if not self.after_min or kb < self.after_min then self.after_min = kb end
    if not self.after_max or kb > self.after_max then self.after_max = kb end
  end
  return kb
end

function Sampler:tick()
  local t = self.ticks + 1
  self.ticks = t
  if t % self.every == 0 or t == self.warmup_at then
    local kb = self:sample()
    if t == self.warmup_at then self.base = kb; self.after_min, self.after_max = kb, kb end
  end
  if t % self.trace_every == 0 then
    self.trace[#self.trace + 1] = string.format("%d:%d", t, M.rss_kb())
  end
end

function Sampler:finish()
  self.end_kb = M.rss_kb()
end

-- true when every sample after the warm-up is within tolerance of its level.
function Sampler:flat()
  if not self.base then return false, "no warm-up sample" end
  local lo, hi = self.base * (1 - self.tolerance), self.base * (1 + self.tolerance)
  local ok = self.after_min >= lo and self.after_max <= hi
  return ok, string.format("after warm-up (%d results) %d KiB; later min %d, max %d (%+.1f %%, %+.1f %%; limit %g %%)",
    self.warmup_at, self.base, self.after_min, self.after_max,
    100 * (self.after_min - self.base) / self.base, 100 * (self.after_max - self.base) / self.base,
    100 * self.tolerance)
end

function Sampler:figures()
  return string.format("start %d, end %d, min %d, max %d (%d samples)",
    self.start_kb, self.end_kb or M.rss_kb(), self.min, self.max, self.n)
end

---------------------------------------------------------------- report
-- A family's report: lines printed as it goes, checks collected; the last
-- line, "SOAK <family> PASSED|FAILED <summary>", is what the driver reads.
local Report = {}
Report.__index = Report

function M.report(family)
  io.stdout:setvbuf("line")
  return setmetatable({ family = family, failures = {}, summary = {} }, Report)
end

function Report:line(fmt, ...)
  print(string.format("%-8s " .. fmt, self.family, ...))
end

-- Record a check; false adds a failure with its message.
function Report:check(ok, fmt, ...)
  if not ok then
    self.failures[#self.failures + 1] = string.format(fmt, ...)
    self:line("FAIL: " .. fmt, ...)
  end
  return ok
end

function Report:sum(key, value)
  self.summary[#self.summary + 1] = key .. "=" .. tostring(value)
end

-- Snapshot of fds and children, for `:compare_resources` at the end.
function M.resources()
  local r = { children = M.child_count() }
  r.fds, r.fd_list = M.fd_count()
  return r
end

function Report:compare_resources(start, label)
  collectgarbage()
  collectgarbage()
  local final = M.resources()
  local pre = label and (label .. ": ") or ""
  self:line("%sfds             start %d, end %d", pre, start.fds, final.fds)
  if final.fd_list ~= start.fd_list then
    self:line("  start: %s", start.fd_list)
    self:line("  end:   %s", final.fd_list)
  end
  self:line("%schildren        start %d, end %d", pre, start.children, final.children)
  self:check(final.fds == start.fds, "%sfds: %d at start, %d at end", pre, start.fds, final.fds)
  self:check(final.children == start.children, "%schildren: %d at start, %d at end",
    pre, start.children, final.children)
  local tag = label and (label:gsub("%W+", "_") .. "_") or ""
  self:sum(tag .. "fds", start.fds .. "->" .. final.fds)
  self:sum(tag .. "children", start.children .. "->" .. final.children)
end

function Report:finish()
  local ok = #self.failures == 0
  print(string.format("SOAK %s %s %s", self.family, ok and "PASSED" or "FAILED",
    table.concat(self.summary, " ")))
  io.stdout:flush()
  os.exit(ok and 0 or 1)
end

return M
