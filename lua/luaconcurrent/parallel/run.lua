--- lcparallel's run: the jobs as ProcRunAsyncio tasks, the API's options
-- from the settings (parallel/settings.lua), and what each job's end does
-- (its slot freed, a warning if it timed out or never ran, --halt
-- counted, its output shown or held: parallel/output.lua). --pipe's run
-- (shell.lua's run_pipe) shares the same ends.

local jobs = require "luaconcurrent.parallel.jobs"
local output = require "luaconcurrent.parallel.output"
local usage_error = require("luaconcurrent.parallel.args").usage_error

local M = {}
local Run = {}
Run.__index = Run

--- A run of the command c (parallel/jobs.lua's command) with settings s.
function M.new(o, s, c, names)
  local slots = s.jobs or 1
  if slots == 0 then slots = 1 end
  local r = setmetatable({ o = o, s = s, c = c, names = names, keep = o.keep_order,
    jobs_info = {},       -- [seq] = { records, command text, slot } while it runs
    said = {},            -- the reasons already said on stderr
    counts = { fail = 0, success = 0, done = 0, started = 0 },
    slots = jobs.slots(slots),
    total = nil,          -- all jobs, when read first (--halt N%, a bar)
  }, Run)
  -- -k with --line-buffer or -u: the order wins (each job's lines go out
  -- whole, in order, as parallel's do when they are read back)
  r.out_mode = (r.keep and (o.output == "lines" or o.output == "ungroup")) and "group" or o.output or "group"
  r.halt_policy = s.halt and require("luaconcurrent.control.halt").parse(s.halt)
  r.results_w = s.results and require("luaconcurrent.parallel.results").new(s.results, names)
  r.median = s.timeout_pct and require("luaconcurrent.parallel.timeout").new(s.timeout_pct)
  r.out = output.new{ o = o, names = names, results_w = r.results_w,
    halt_policy = r.halt_policy, counts = r.counts }
  r.progress = (o.bar or o.eta or o.progress) and true or nil
  -- With a progress bar, the run's own output modes print (they step the
  -- bar aside for each job's output and draw it last)
  r.api_out = r.progress and r.out_mode == "group" and not r.results_w and not o.files
    and not (o.verbose and o.verbose > 0)
  r.api_lines = (r.out_mode == "lines" or r.out_mode == "ungroup") and not r.results_w
  return r
end

-- The run's own output modes print these: each line tagged as parallel does
function Run:job_tag(res)
  local info = self.jobs_info[res.key]
  return info and (output.tag_of(self.o, self.names, info[1], res.key, info[3]) .. "\t") or ""
end

-- --joblog: parallel's columns, its Command text.
function Run:joblog()
  local s, jobs_info, c = self.s, self.jobs_info, self.c
  return { path = s.joblog, format = "parallel", append = s.joblog_append,
    command = function(seq, arg)
      local info = jobs_info[seq]
      if info then return info[2] end
      return c.prog and table.concat({ c.prog, table.unpack(arg) }, " ") or arg[1]
    end }
end

--- ProcRunAsyncio's options.
function Run:options()
  local s, o = self.s, self.o
  local opts = {
    num_workers = s.jobs, timeout = s.timeout, kill_grace = s.kill_grace,
    retries = s.retries, retry_delay = s.retry_delay, halt = s.halt,
    timeline = o.timeline, hosts = s.hosts, keep_results = false, progress = self.progress,
    on_start = function(seq) self:started(seq) end,
    on_result = function(res) self:finished(res) end,
  }
  local median = self.median
  if median then opts.time_limit = function() return median:seconds() end end
  if s.joblog then
    opts.joblog = self:joblog()
    opts.resume = (o.retry_failed and "failed") or o.resume
  end
  local tag = (o.tag or o.tagstring) and function(res) return self:job_tag(res) end or nil
  if self.api_out then opts.output, opts.tag = self.keep and "ordered" or "stream", tag end
  if self.api_lines then opts.output, opts.tag = "lines", tag end
  return opts
end

function Run:started(seq)
  self.counts.started = self.counts.started + 1
  if self.o.verbose_stderr then
    local info = self.jobs_info[seq]
    if info then io.stderr:write(info[2], "\n") end
  end
end

-- A job that timed out, or never ran (spawn failed, its host failed),
-- says why on stderr, never silently; a host's failure once, not once per
-- task.
function Run:warn(res, info)
  if res.timeout then
    io.stderr:write("lcparallel: Warning: This job was killed because it timed out:\n",
      "lcparallel: Warning: ", info[2], "\n")
  elseif (res.returncode == nil or res.returncode < 0) and not res.signal and res.exception
      and res.exception ~= "Interrupted" then
    local why = tostring(res.error or res.exception):gsub("^luaconcurrent: ", "")
    if res.exception ~= "ConnectionError" or not self.said[why] then
      self.said[why] = true
      io.stderr:write("lcparallel: ", why, "\n")
    end
  end
end

-- A job that ran: counted, --timeout N%'s median, --halt.
function Run:count(res, info)
  local counts = self.counts
  if self.median and res.success then self.median:success(res.time_run) end
  counts.done = counts.done + 1
  if res.success then counts.success = counts.success + 1
  else counts.fail = counts.fail + 1 end
  self:warn(res, info)
  self.out:note_halt(res, self.total)
end

--- A job's end (on_result).
function Run:finished(res)
  local seq = res.key
  local info = self.jobs_info[seq] or { {}, "", 0 }
  self.jobs_info[seq] = nil
  self.slots:release(seq)
  if not res.skipped then self:count(res, info) end
  if self.api_out or self.api_lines then return end
  if self.keep then
    self.out:hold(seq, res.skipped and false or res, info)
  else
    self.out:show(seq, res.skipped and false or res, info)
  end
end

--- What shell.lua's run_pipe takes: the command, the job ends, the exit.
function Run:pipe_context(spool)
  local c, s = self.c, self.s
  return {
    tpl = c.tpl, prog = c.prog, pargs = c.pargs, jobs_info = self.jobs_info, spool = spool,
    on_result = function(res) self:finished(res) end,
    on_start = function(seq) self:started(seq) end,
    jobs = s.jobs == 0 and math.huge or s.jobs,
    halted = function() return self.out:halted() end,
    finish = function()
      self.out:flush_held()   -- -k after a halt: what is held goes out in order
      return self.out:exit_status()
    end,
  }
end

-- --retry-failed: parallel ignores the command line's command and input:
-- the joblog's commands are the jobs, its failed ones run again.
function Run:logged_tasks()
  local c, s = self.c, self.s
  local logged, last = require("luaconcurrent.control.joblog").read_parallel(s.joblog)
  if not logged then usage_error("--retry-failed: no joblog %s to read", s.joblog) end
  c.prog, c.pargs = nil, { c.shell, "-c" }
  if s.nice then c.pargs = { "nice", "-n", tostring(s.nice), c.shell, "-c" } end
  local tasks = {}
  for seq = 1, last or 0 do
    local cmd = logged[seq] and logged[seq].command or "true"
    self.jobs_info[seq] = { { { cmd } }, cmd, 1 }
    tasks[seq] = { seq, { cmd } }
  end
  return tasks
end

--- The tasks: read as slots free; or all first for a percentage of all
-- jobs (--halt N%) or a bar's total, as parallel reads the whole input
-- first for these.
function Run:tasks(next_job)
  if self.o.retry_failed then return self:logged_tasks() end
  local next_task = jobs.tasks(self.c, self.s, next_job, self.slots, self.jobs_info)
  if not ((self.halt_policy and self.halt_policy.percent) or self.progress) then return next_task end
  local tasks = {}
  self.slots.ahead = true
  for t in next_task do tasks[#tasks + 1] = t end
  self.total = #tasks
  self.slots.of = {}
  return tasks
end

--- Run every job; returns the exit status.
function Run:go(next_job)
  local opts = self:options()
  local tasks = self:tasks(next_job)
  local lc = require "luaconcurrent"
  local built, run = pcall(lc.ProcRunAsyncio, self.c.pargs, tasks, opts)
  if not built then
    -- the option's own message, not the Lua bad-argument wrapper
    io.stderr:write("lcparallel: ", (require("luaconcurrent.validate").message(run):gsub("^luaconcurrent: ", "")), "\n")
    return 255
  end
  run:run_all()
  self.out:flush_held()   -- -k after a halt: what is held goes out in order
  if self.results_w then self.results_w:close() end
  return self.out:exit_status()
end

return M
