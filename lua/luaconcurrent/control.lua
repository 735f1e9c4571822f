--- Run control: what a long run needs beyond running tasks, for every
-- kind of task alike. The scheduler asks it four things:
--   skip(index, key, arg) -> res | nil   resume: already run, per the joblog
--   retry(index, res) -> delay | nil     run a failed task again?
--   finished(index, res, st) -> nil | "soon" | "now"
--                                        a final result: log it, show it,
--                                        and say whether the run halts
--   close()                              the run is over
-- Each feature is a module of its own under control/.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local validate = require "luaconcurrent.validate"
local halt = require "luaconcurrent.control.halt"
local joblog = require "luaconcurrent.control.joblog"
local lines = require "luaconcurrent.control.lines"
local output = require "luaconcurrent.control.output"
local progress = require "luaconcurrent.control.progress"
local timeline = require "luaconcurrent.control.timeline"

local M = {}
M.__index = M

--- Check the run-control options at construction (named errors).
function M.check(opts)
  if opts.retries ~= nil and not (validate.is_integer(opts.retries) and opts.retries >= 0) then
    validate.fail("retries must be a non-negative integer, got %s", validate.show(opts.retries))
  end
  local d = opts.retry_delay
  if d ~= nil and type(d) ~= "function"
      and not (type(d) == "number" and d >= 0 and d < math.huge) then
    validate.fail("retry_delay must be a non-negative number or a function(attempt), got %s",
      validate.show(d))
  end
  halt.parse(opts.halt)
  joblog.check(opts.joblog)
  -- Paths written during or after the run: checked now (named errors),
  -- not found unwritable when the tasks have run.
  if opts.results ~= nil then ProcResult.cjson() end   -- JSON lines: fail now if it cannot
  for _, name in ipairs({ "results", "timeline" }) do
    local path = opts[name]
    if path ~= nil then
      if type(path) ~= "string" or path == "" then
        validate.fail("%s must be a file path (string), got %s", name, validate.show(path))
      end
      local ok, err = core.writable(path)
      if not ok then validate.fail("cannot write the %s file: %s", name, err) end
    end
  end
  if opts.resume ~= nil and opts.resume ~= true and opts.resume ~= false and opts.resume ~= "failed" then
    validate.fail('resume must be true, false or "failed", got %s', validate.show(opts.resume))
  end
  if opts.resume and not opts.joblog then
    validate.fail("resume needs a joblog to read")
  end
  if opts.progress ~= nil and type(opts.progress) ~= "boolean" then
    validate.fail("progress must be a boolean, got %s", type(opts.progress))
  end
  output.check(opts.output, opts.tag)
end

--- describe(key, arg) -> the command line (for the joblog). nil when the
-- run asks for no run control: the scheduler then pays nothing per task.
function M.new(run, describe)
  if (run.retries or 0) == 0 and not (run.halt and run.halt ~= "never") and not run.joblog
      and not run.results and not run.progress and (run.output or "collect") == "collect"
      and not run.timeline then
    return nil
  end
  local log = joblog.spec(run.joblog)
  local self = setmetatable({
    retries = run.retries or 0, retry_delay = run.retry_delay or 0,
    attempts = {}, policy = halt.parse(run.halt), describe = log and log.command or describe,
    counts = { fail = 0, success = 0, done = 0 }, run = run, input = run.input,
    by_seq = log and log.format == "parallel",
  }, M)
  if run.resume then self.logged = joblog.read(log) end
  self.resume_failed = run.resume == "failed"
  if log then self.log = joblog.open(log, run.resume) end
  if run.results then self.results = lines.open(run.results, "a", "results file") end
  if run.progress then self.bar = progress.new() end
  if run.timeline then self.timeline, self.bars = run.timeline, {} end
  local bar = self.bar
  self.out = output.new(run.output, run.tag, bar and function(after)
    if after then bar:draw(self.st, true) else bar:clear() end
  end)
  return self
end

function M:skip(index, key, arg)
  if not self.logged then return nil end
  local ok = self.logged[self.by_seq and index or joblog.key_text(key)]
  if ok == nil or (self.resume_failed and not ok) then return nil end
  local res = ProcResult.new(key, arg)
  res.success, res.skipped = ok, true
  res.error = not ok and "skipped: the joblog records it as failed" or nil
  if self.out then self.out:finished(index, false) end
  return res
end

function M:retry(index, res)
  local n = (self.attempts[index] or 1)
  if res.success or res.exception == "Interrupted" or n > self.retries or self.halted then
    self.attempts[index] = nil
    if n > 1 then res.attempts = n end
    return nil
  end
  self.attempts[index] = n + 1
  local d = self.retry_delay
  if type(d) == "function" then d = tonumber(d(n)) or 0 end
  return d
end

--- The run halted: tasks waiting to run again (again: a list, delayed:
-- timer id -> entry; entries {index, key, arg, res}) do not; the result of
-- each one's last attempt is its final result, through store.
function M:halt_retries(loop, again, delayed, store)
  local why = "not run again: the run halted (halt = " .. self.policy.spec .. ")"
  local function final(t)
    local res = t[4]
    local n = self.attempts[t[1]]
    self.attempts[t[1]] = nil
    if n and n > 1 then res.attempts = n - 1 end
    res.error = res.error and (res.error .. "; " .. why) or why
    store(t[1], res)
  end
  for _, t in ipairs(again) do final(t) end
  for id, t in pairs(delayed) do
    loop:cancel_timer(id)
    final(t)
  end
end

function M:finished(index, res, st)
  self.st = st
  if res.skipped then return nil end    -- logged and shown by an earlier run
  local interrupted = res.exception == "Interrupted"
  if not interrupted then
    local counts = self.counts
    counts.done = counts.done + 1
    if res.success then counts.success = counts.success + 1 else counts.fail = counts.fail + 1 end
    st.failed = counts.fail
    if self.log then self.log:write(index, res, self.describe(res.key, res.arg), self.input) end
    if self.bars then self.bars[#self.bars + 1] = timeline.bar(res) end
    if self.results then
      -- The JSON's pieces as they are, in one writev: a big output is not
      -- joined and copied again.
      local ok, parts = pcall(res.json_parts, res)
      if ok then
        parts[#parts + 1] = "\n"
      else
        parts = string.format('{"key":%s,"error":%s}\n',
          joblog.key_text(res.key), joblog.key_text(ProcResult.error_text(parts)))
      end
      self.results:line(parts)
    end
  end
  if self.out then self.out:finished(index, res) end
  if self.bar then self.bar:draw(st) end
  local mode = not self.halted and not interrupted and halt.reached(self.policy, self.counts, st.total)
  if mode then self.halted = mode end
  return mode or nil
end

--- Live output of a running task (output = "lines"), or nil when the
-- run does not show output as it arrives.
function M:live_output()
  if not (self.out and self.out.mode == "lines") then return nil end
  local out = self.out
  return function(index, key, data, is_err) out:live(index, key, data, is_err) end
end

function M:close()
  if self.out then self.out:drain() end
  if self.bar then self.bar:clear() end
  -- A file that lost lines fails the run: run.ok is false and
  -- run.joblog_error / run.results_error say what is missing.
  if self.log then
    local err = self.log:close()
    self.log = nil
    if err then self.run.joblog_error, self.failed_io = err, true end
  end
  if self.results then
    local err = self.results:close()
    self.results = nil
    if err then self.run.results_error, self.failed_io = err, true end
  end
  if self.timeline then
    local path = self.timeline
    self.timeline = nil
    timeline.write(path, self.bars)
  end
end

return M
