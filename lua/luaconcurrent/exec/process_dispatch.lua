--- exec/processes' task dispatch (methods of its Processes,
-- exec/processes.lua): how many tasks a worker is handed ahead (its
-- window), and the frames that hand them over.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local function_task = require "luaconcurrent.exec.function_task"

local wallclock = core.wallclock
local marshal_keyed, pcall, spack = core.marshal_keyed, pcall, string.pack
local tunpack = table.unpack

local P = {}

-- Most tasks a worker holds at once (running and queued), and about how
-- many seconds of work it is handed ahead.
local MAX_AHEAD = 64
local AHEAD_TIME = 0.002
P.MAX_AHEAD = MAX_AHEAD

-- How many tasks a worker may hold: about AHEAD_TIME of work.
function P:window()
  if self.one_ahead then return 1 end   -- a run that can halt (processes.lua)
  local avg = self.avg
  if not avg then return 4 end
  if avg * MAX_AHEAD <= AHEAD_TIME then return MAX_AHEAD end
  local n = AHEAD_TIME // avg
  return n >= 1 and math.tointeger(n) or 1
end

-- Hand w the next n queued tasks in one frame.
function P:send(w, n)
  local queue, vals, task_args = self.queue, self.vals, self.task_args
  local qh, k = self.qh, 0
  local tasks = {}
  while k < n and qh <= self.qt do
    local task = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    if not task.cancelled then
      k = k + 1
      tasks[k] = task
      -- With no fixed arguments the worker makes the task's { arg }.
      local arg = task[3]
      if not self.plain then arg = task_args(arg) end
      vals[2 * k - 1], vals[2 * k] = task[2], arg
    end
  end
  self.qh = qh
  if k == 0 then return end
  local sent, blob = self:marshal_frame(w.down, tunpack(vals, 1, 2 * k))
  for j = 1, 2 * k do vals[j] = nil end
  if not sent then
    -- Some task cannot be sent: find it; the others go one to a frame.
    for j = 1, k do
      local task = tasks[j]
      local arg = task[3]
      if not self.plain then arg = task_args(arg) end
      local ok, one = pcall(marshal_keyed, w.down, nil, task[2], arg)
      if ok then
        self:hand(w, { task }, 1, one)
      else
        self.finish(task[1], function_task.unsendable(task[2], task[3], one))
      end
    end
    return
  end
  self:hand(w, tasks, k, blob)
end

-- A frame under key with the run's map of module function names, built
-- once; a frame that fails is tried with a fresh one (a callback may have
-- loaded a module since). -> ok, blob | false, error
function P:marshal_frame(key, ...)
  local ok, blob = pcall(marshal_keyed, key, self.names, ...)
  if ok then return ok, blob end
  self.names = core.marshal_names()
  return pcall(marshal_keyed, key, self.names, ...)
end

function P:hand(w, tasks, k, blob)
  if w.qt < w.qh then w.started = false end      -- idle: its next start is a new frame
  local q, qt = w.q, w.qt
  for j = 1, k do q[qt + j] = tasks[j] end
  w.qt = qt + k
  -- A worker that died meanwhile cannot take them: its record, coming,
  -- gives them back.
  self.loop:write(w.id, spack("<I4I4B", #blob + 5, k, self.plain and 1 or 0) .. blob)
end

-- Hand queued tasks to workers: idle ones first, then new ones (up to
-- nworkers), then busy ones up to their window. A spawn that fails is
-- the next task's result, as when each task started its own worker, and
-- the dispatch stops there: true tells the scheduler to come back at once
-- (after the result's callbacks ran), when it tries again.
function P:dispatch()
  local waiting = self.qt - self.qh + 1
  if waiting <= 0 then return false end
  local window = self:window()
  local share = (waiting + self.nworkers - 1) // self.nworkers
  if share > window then share = window end
  for _, w in pairs(self.workers) do
    if not w.dead and w.qt < w.qh then
      self:send(w, share)
      if self.qt < self.qh then return false end
    end
  end
  while self.nlive < self.nworkers do
    local w, message, errname = self:spawn()
    if not w then
      while self.qh <= self.qt do
        local task = self.queue[self.qh]
        self.queue[self.qh] = nil
        self.qh = self.qh + 1
        if not task.cancelled then
          self.finish(task[1], ProcResult.spawn_failure(task[2], task[3], message, errname,
            wallclock()))
          break
        end
      end
      return self.qh <= self.qt
    end
    self:send(w, share)
    if self.qt < self.qh then return false end
  end
  for _, w in pairs(self.workers) do
    if not w.dead then
      local room = window - (w.qt - w.qh + 1)
      if room > 0 then self:send(w, room) end
      if self.qt < self.qh then return false end
    end
  end
  return false
end
return P
