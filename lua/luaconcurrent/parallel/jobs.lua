--- lcparallel's jobs: read from the input as slots free (parallel/input.lua),
-- each made into its command (parallel/command.lua) and a task of the
-- Lua API: { seq, arg }, arg the shell's command line or the program's
-- arguments when the job may skip the shell.

local core = require "luaconcurrent.core"
local input = require "luaconcurrent.parallel.input"
local command = require "luaconcurrent.parallel.command"
local usage_error = require("luaconcurrent.parallel.args").usage_error

local M = {}

--- The longest command line a job gets with -X/-m: GNU parallel's
-- (--max-line-length-allowed on Linux); a single argument (bash -c's
-- command) cannot pass 128 KiB.
M.MAX_LINE = 130329

-- --shuf: every job read, then handed out in a random order.
local function shuffled(iter)
  local all = {}
  for _, j in iter do all[#all + 1] = j end
  for i = #all, 2, -1 do
    local k = math.random(i)
    all[i], all[k] = all[k], all[i]
  end
  local i = 0
  return function()
    i = i + 1
    if all[i] == nil then return nil end
    return i, all[i]
  end
end

--- Every job of the run: an iterator of seq, records; and the sources'
-- names (--header). sizing.cost(record), sizing.room(): set once the
-- command is known (-X/-m).
function M.source(o, sources, slots, sizing)
  local records, names = input.records(o, sources)
  local jobs = input.jobs(o, records, math.max(slots or 1, 1),
    function() return sizing.room() end, function(r) return sizing.cost(r) end)
  local seq = 0
  local iter = function()
    local j = jobs()
    if j == nil then return nil end
    seq = seq + 1
    if j.empty then j = {} end
    return seq, j
  end
  if o.shuf then iter = shuffled(iter) end
  return iter, names
end

-- Bourne-like shells, which take `export NAME=value;`.
local BOURNE = { sh = true, bash = true, dash = true, ash = true, ksh = true, ksh93 = true,
  mksh = true, lksh = true, pdksh = true, zsh = true, yash = true, posh = true, rbash = true }
local own_pid

--- What parallel puts in each job's environment ($PARALLEL_SEQ, ...),
-- as a prefix of a shell job's command (the run's environment is one for
-- all jobs); "" for a shell that is not Bourne-like.
function M.job_env(shell, seq, slot)
  if not BOURNE[(shell or ""):match("([^/]*)$")] then return "" end
  if not own_pid then
    local f = io.open("/proc/self/stat")
    own_pid = f and f:read("l"):match("^(%d+)") or "0"
    if f then f:close() end
  end
  return string.format("export PARALLEL_SEQ=%d PARALLEL_JOBSLOT=%d PARALLEL_PID=%s; ", seq, slot, own_pid)
end

--- The run's command: its template, the shell, the program when jobs may
-- skip the shell, the API's pargs. -X/-m's sizing is set from it: a
-- record costs what it adds to the command line (quoted, its context
-- repeated with -X).
function M.command(o, s, words, names, pipe_mode, sizing)
  local tpl = command.build(words, o, names, pipe_mode)
  local base = #command.expand(tpl, {}, 1, 1, { context = o.context })
  sizing.room = function() return M.MAX_LINE - base end
  sizing.cost = function(r)
    return #command.expand(tpl, { r }, 1, 1, { context = o.context }) - base + 1
  end
  local shell = command.shell()
  if not command.which(shell) then
    usage_error("shell %q not found (from $PARALLEL_SHELL, the shell lcparallel was started from, or $SHELL)", shell)
  end
  -- on hosts the shell is found by name in the host's PATH
  if s.hosts then shell = shell:match("([^/]+)$") end
  local c = { o = o, tpl = tpl, shell = shell, bare = #words == 0 }   -- bare: the values are the commands
  c.prog = #words > 0 and command.direct(tpl, o) or nil
  c.pargs = c.prog and { c.prog } or { shell, "-c" }
  if s.nice then c.pargs = { "nice", "-n", tostring(s.nice), table.unpack(c.pargs) } end
  return c
end

--- A job's command line as parallel writes it.
function M.text_of(c, records, seq, slot)
  if c.bare then
    local t = {}
    for _, r in ipairs(records) do for _, v in ipairs(r) do t[#t + 1] = v end end
    return table.concat(t, " ")
  end
  return command.expand(c.tpl, records, seq, slot, { context = c.o.context })
end

--- Slots ({%}): the lowest free one when a job starts; freed at its end.
-- Jobs built ahead (a list) get the slot they will likely get.
local Slots = {}
Slots.__index = Slots

function M.slots(n)
  return setmetatable({ n = n, free = {}, of = {}, used = 0, ahead = false }, Slots)
end

function Slots:take(seq)
  local slot
  if self.ahead then
    slot = (seq - 1) % self.n + 1
  else
    slot = table.remove(self.free)
    if not slot then self.used = self.used + 1; slot = self.used end
  end
  self.of[seq] = slot
  return slot
end

function Slots:release(seq)
  local slot = self.of[seq]
  if slot then self.free[#self.free + 1] = slot; self.of[seq] = nil end
end

-- --delay: a pause before each start but the first.
local function pacer(delay)
  if not (delay and delay > 0) then return function() end end
  local last_start
  return function()
    if last_start then
      local wait = last_start + delay - core.now()
      if wait > 0 then core.sleep(wait) end
    end
    last_start = core.now()
  end
end

--- The task source: each job read when the run has a slot for it, its
-- { records, text, slot } kept in jobs_info[seq] while it runs.
function M.tasks(c, s, next_job, slots, jobs_info)
  local pace = pacer(s.delay)
  return function()
    local seq, records = next_job()
    if seq == nil then return nil end
    pace()
    local slot = slots:take(seq)
    local text = M.text_of(c, records, seq, slot)
    jobs_info[seq] = { records, text, slot }
    if c.prog then
      local argv = command.expand(c.tpl, records, seq, slot, { context = c.o.context, direct = true })
      return { seq, { table.unpack(argv, 2) } }
    end
    return { seq, { M.job_env(c.shell, seq, slot) .. text } }
  end
end

return M
