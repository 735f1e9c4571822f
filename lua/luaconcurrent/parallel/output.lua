--- lcparallel's output side: each job's output shown (tagged, --files,
-- -v, or written by --results), -k's hold-and-flush in order, and the
-- exit status under --halt (parallel's rules) or from the failures.
--
-- parallel/run.lua builds one per run:
--
--   local out = output.new{ o = o, names = names, results_w = results_w,
--     halt_policy = halt_policy, counts = counts }
--
-- counts is the run's { fail, success, done, started }, kept by run.lua.

local command = require "luaconcurrent.parallel.command"

local M = {}
M.__index = M

--- The tag of a job: its values, or --tagstring expanded.
function M.tag_of(o, names, records, seq, slot)
  if o.tagstring then
    local tpl = command.template(o.tagstring, names)
    return command.expand(tpl, records, seq, slot, { raw = true })
  end
  local t = {}
  for _, r in ipairs(records) do for _, v in ipairs(r) do t[#t + 1] = v end end
  return table.concat(t, " ")
end

--- text with prefix before each of its lines, the last one ended.
function M.prefixed(text, prefix)
  if text == "" or not prefix then return text end
  local out = prefix .. text:gsub("\n(.)", function(c) return "\n" .. prefix .. c end)
  if out:sub(-1) ~= "\n" then out = out .. "\n" end
  return out
end

function M.new(c)
  return setmetatable({
    o = c.o, names = c.names, tag_of = M.tag_of, prefixed = M.prefixed,
    results_w = c.results_w, halt_policy = c.halt_policy, counts = c.counts,
    tagged = c.o.tag or c.o.tagstring,
    held = {}, next_print = 1,
    halt_status = nil,
  }, M)
end

--- One job's output; res false: a skipped job, nothing to show.
function M:show(seq, res, info)
  if res == false then return end
  if self.results_w then return self.results_w:write(seq, info[1], res, info[2]) end   -- printed nothing
  local o = self.o
  local prefix = self.tagged and (self.tag_of(o, self.names, info[1], seq, info[3]) .. "\t") or nil
  local text = res.stdout or ""
  if o.files then
    local path = os.tmpname()
    local f = io.open(path, "w")
    if f then f:write(text); f:close() end
    text = path .. "\n"
  end
  if o.verbose and o.verbose > 0 then text = info[2] .. "\n" .. text end
  io.stdout:write(self.prefixed(text, prefix))
  io.stdout:flush()
  io.stderr:write(self.prefixed(res.stderr or "", prefix))
end

--- -k: held until the jobs before it are shown, then out in order.
function M:hold(seq, res, info)
  local held = self.held
  held[seq] = { res, info }
  while held[self.next_print] do
    local h = held[self.next_print]
    held[self.next_print] = nil
    self:show(self.next_print, h[1], h[2])
    self.next_print = self.next_print + 1
  end
end

--- -k after a halt (or at the end): what is held goes out in order.
function M:flush_held()
  local held, left = self.held, {}
  for seq in pairs(held) do left[#left + 1] = seq end
  table.sort(left)
  for _, seq in ipairs(left) do self:show(seq, held[seq][1], held[seq][2]) end
end

--- A job that ran has been counted: is --halt reached, and with what
-- status (set once, the first time). total: all jobs, when known.
function M:note_halt(res, total)
  local halt_policy, counts = self.halt_policy, self.counts
  if not halt_policy or self.halt_status ~= nil then return end
  local reached = require("luaconcurrent.control.halt").reached(halt_policy, counts, total) ~= nil
  if not reached then return end
  local halt_status
  if halt_policy.what == "success" then halt_status = 0
  elseif halt_policy.percent then
    halt_status = math.ceil(counts.fail / math.max(total or counts.done, 1) * 100)
  elseif halt_policy.n == 1 then
    halt_status = res.signal and res.signal > 0 and res.signal + 128
      or (res.returncode and res.returncode > 0 and res.returncode) or (res.success and 0 or 1)
    if res.success then halt_status = 0 end
  else
    halt_status = math.min(counts.fail, 101)
  end
  self.halt_status = halt_status
end

--- --halt's `when` once it is reached, else nil.
function M:halted()
  return self.halt_status ~= nil and self.halt_policy.when or nil
end

--- The run's exit status: --halt's when it was reached, else the failures.
function M:exit_status()
  local halt_policy, counts = self.halt_policy, self.counts
  if halt_policy then
    if self.halt_status then return self.halt_status end
    if halt_policy.percent then return math.ceil(counts.fail / math.max(counts.started, 1) * 100) end
  end
  return math.min(counts.fail, 101)
end

return M
