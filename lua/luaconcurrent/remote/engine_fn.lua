--- The engine-mode remote worker's tasks (methods of its Worker,
-- remote/engine_worker.lua): they run on the local executors, driven
-- through the executor interface (executors.lua) as the runner drives them,
-- with a finish that encodes each task's one result onto the wire
-- (remote/wire.lua's answers). No pool, deadline table or answer parsing
-- of its own:
--   X  exec/subprocess: its own process group, TERM at the timeout, KILL
--      the grace later; finish sends the engine's process record (rec)
--   F  exec/processes: reused worker processes (`luaconcurrent --worker`)
--      with keys of their own, derived from this host's; their answers are
--      read as data and checked there, and passed on under the host's
--      up-key (fdone); at a deadline the worker process is killed
--      (ftimeout)
-- Tasks of one message kind with the same settings (timeout, cwd, env,
-- input; the function) share one executor: a run has one or two.

local core = require "luaconcurrent.core"
local subprocess = require "luaconcurrent.exec.subprocess"
local processes = require "luaconcurrent.exec.processes"

local M = {}

-- Tasks an executor may hold (executors.lua).
local function capacity(ex)
  return ex.capacity
end

-- The errno name for a spawn failure's exception (result.lua maps back).
local ERRNO_OF = { FileNotFoundError = "ENOENT", PermissionError = "EACCES" }

--- What the local side gets of a subprocess task's record.
local function wire_record(rec)
  return { returncode = rec.returncode, signal = rec.signal, signal_name = rec.signal_name,
    stdout = rec.stdout, stderr = rec.stderr, pid = rec.pid, timeout = rec.timeout, limit = rec.limit,
    interrupted = rec.interrupted, incomplete = rec.incomplete, time_run = rec.time_run,
    input_error = rec.input_error, input_written = rec.input_written, input_size = rec.input_size,
    wait_error = rec.wait_error }
end

local INTERRUPTED = { returncode = -1, interrupted = true, stdout = "", stderr = "" }

-- The loop as exec/subprocess sees it: the process ids it starts are
-- kept (ids[id] = true), to be TERMed when the channel is gone.
local function tracking(loop, ids)
  return setmetatable({
    spawn = function(_, ...)
      local id, message, errname = loop:spawn(...)
      if id then ids[id] = true end
      return id, message, errname
    end,
  }, { __index = function(t, name)
    local f = function(_, ...) return loop[name](loop, ...) end
    rawset(t, name, f)
    return f
  end })
end

function M.install(Worker)

function Worker:envblock(m, first, nenv)
  if nenv == 0 then return nil end
  local list = table.concat(m, "\0", first, first + nenv - 1)
  local eb = self.envs[list]
  if eb == nil then
    local t = {}
    for k = first, first + nenv - 1 do
      local name, value = m[k]:match("^([^=]*)=(.*)$")
      if name then t[name] = value else t[m[k]] = false end
    end
    eb = core.envblock(t)
    self.envs[list] = eb
  end
  return eb
end

-- A task handed to an executor: index -> { tid, e }, until finished.
function Worker:track(tid, e)
  local index = self.nindex + 1
  self.nindex = index
  self.running[index], self.index_of[tid] = { tid = tid, e = e }, index
  self.nrun, e.held = self.nrun + 1, e.held + 1
  return index
end

-- index's result is in: its slot is free; its tid, or nil if it was over.
function Worker:untrack(index)
  local t = self.running[index]
  if not t then return nil end
  self.running[index], self.index_of[t.tid] = nil, nil
  self.nrun, t.e.held = self.nrun - 1, t.e.held - 1
  return t.tid
end

-- The finish of a subprocess executor: the record as it came.
function Worker:finish_x(index, res, rec)
  local tid = self:untrack(index)
  if not tid then return end
  if rec then
    self:send("rec", tid, self:data(wire_record(rec)))
  elseif res.exception == "Interrupted" then
    self:send("rec", tid, self:data(INTERRUPTED))
  else
    self:send("fail", tid, tostring(res.error), ERRNO_OF[res.exception] or "")
  end
end

-- The finish of a process executor: an answer as the worker process gave
-- it (read as data, checked for shape by exec/processes), else what ended
-- the task.
function Worker:finish_f(index, res, what, t0, t1, more, a, b, c, d)
  local tid = self:untrack(index)
  if not tid then return end
  if self.holding then
    self:send("held", tid)
  elseif what then
    local ok, blob = pcall(self.data, self, what, t0, t1, more, a, b, c, d)
    if ok then
      self:send("fdone", tid, blob)
    else
      self:send("fdied", tid, "its answer could not be sent: " .. tostring(blob))
    end
  elseif res.timeout then
    self:send("ftimeout", tid, string.format("%.17g", res.time_run or 0))
  elseif res.exception == "OSError" or ERRNO_OF[res.exception] then
    self:send("fail", tid, "cannot start a worker process: " .. tostring(res.error), ERRNO_OF[res.exception] or "")
  else
    self:send("fdied", tid, tostring(res.error))
  end
end

-- The executor for tasks of this kind and settings, made at first use.
function Worker:executor(kind, settings, cfg)
  local e = self.ex_by[settings]
  if e then return e end
  e = { kind = kind, held = 0 }
  local loop = self.loop
  if kind == "X" then
    e.ex = subprocess.new(cfg, tracking(loop, self.procs), function(...) return self:finish_x(...) end)
  else
    cfg.halts = self.halts
    e.ex = processes.new(cfg, loop, function(...) return self:finish_f(...) end)
  end
  self.ex_by[settings] = e
  self.exs[#self.exs + 1] = e
  return e
end

-- Hand a task to executor e; a start that raises (an argv the engine
-- refuses) is answered fail.
function Worker:hand(e, tid, key, arg)
  local index = self:track(tid, e)
  local ok, err = pcall(e.ex.start, e.ex, index, key, arg)
  if not ok and self:untrack(index) then
    self:send("fail", tid, tostring(err), "EINVAL")
  end
end

function Worker:run_x(m)
  local tid, timeout, cwd, has_input, input, nenv = m[2], tonumber(m[3]) or 0, m[4], m[5], m[6], tonumber(m[7]) or 0
  local settings = table.concat(m, "\0", 3, 7 + nenv)
  local e = self.ex_by["X\0" .. settings] or self:executor("X", "X\0" .. settings, {
    pargs = {}, timeout = timeout, kill_grace = self.grace, envblock = self:envblock(m, 8, nenv),
    cwd = cwd ~= "" and cwd or nil, input = has_input == "1" and input or nil, slots = math.huge,
  })
  self:hand(e, tid, tid, table.move(m, 8 + nenv, #m, 1, {}))
end

function Worker:run_fn(m)
  local tid, timeout, cwd, nenv = m[2], tonumber(m[3]) or 0, m[4], tonumber(m[5]) or 0
  if not self.fn_bytes then
    return self:send("fdied", tid, "no task function was sent")
  end
  -- (Sent by the local side under this host's key: code may come this way.)
  local ok, key, args = pcall(core.unmarshal_string, m[6 + nenv])
  if not ok then
    return self:send("fdied", tid, "the task's frame was refused: " .. tostring(key))
  end
  local settings = "F\0" .. self.fn_gen .. "\0" .. table.concat(m, "\0", 3, 5 + nenv)
  local e = self.ex_by[settings] or self:executor("F", settings, {
    pargs = { false }, args_ready = true, timeout = timeout, kill_grace = self.grace,
    envblock = self:envblock(m, 6, nenv), cwd = cwd ~= "" and cwd or nil, fn_bytes = self.fn_bytes,
    num_workers = self.limit < math.huge and self.limit or 0,
  })
  self:hand(e, tid, key, args)
end

function Worker:start(m)
  if m[1] == "F" then return self:run_fn(m) end
  return self:run_x(m)
end

-- Whether a task may start now: a free slot (S), and room in executors.
function Worker:room()
  if self.nrun >= self.limit then return false end
  for _, e in ipairs(self.exs) do
    if e.held >= capacity(e.ex) then return false end
  end
  return true
end

-- S: the slots, and whether the run can halt (then a worker process is
-- handed one task at a time: a Q must find the rest not yet started).
function Worker:set_limit(n, halts)
  self.limit, self.halts = n, halts
end

--- K for a task an executor holds: its executor ends it, and its finish
-- answers (a process task: at once; a subprocess: when its record comes).
function Worker:cancel_started(tid)
  local index = self.index_of[tid]
  if not index then return end
  self.running[index].e.ex:cancel(index, "interrupted: cancelled by the runner")
end

--- Q: what the process executors hold that has not started is answered
-- held (subprocess tasks start when handed over).
function Worker:hold_started()
  self.holding = true
  for _, e in ipairs(self.exs) do
    if e.kind == "F" then e.ex:hold("held") end
  end
  self.holding = false
end

function Worker:run_ready()
  for _, e in ipairs(self.exs) do
    local ex = e.ex
    if ex.run_ready then
      while ex:run_ready() do end
    end
  end
end

function Worker:task_record(rec)
  local procs = self.procs
  if procs[rec.id] and not rec.data then procs[rec.id] = nil end
  for _, e in ipairs(self.exs) do
    if e.ex:record(rec) then return end
  end
end

--- The channel is gone: every task ends as at a deadline (TERM, the run's
-- kill_grace, KILL), so that one that cleans up on TERM can; process
-- workers are killed (their tasks' groups with them). What is left when
-- the grace is over goes with the loop.
function Worker:end_tasks()
  local loop = self.loop
  for id in pairs(self.procs) do loop:terminate(id) end
  for _, e in ipairs(self.exs) do
    if e.kind == "F" then
      for id in pairs(e.ex.workers) do loop:kill(id) end
    end
  end
  if self.relay then loop:kill(self.relay) end
  local deadline = core.now() + self.grace + 2
  while loop:running() > 0 and core.now() < deadline do loop:poll(0.1) end
  loop:close()
end

end

return M
