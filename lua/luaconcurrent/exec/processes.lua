--- Executor: function tasks on worker processes (ProcRunMp with
-- isolation = "process"). Workers are started by exec (worker.lua), serve
-- tasks one at a time over length-prefixed frames on their stdin and
-- stdout, and are reused. One that dies (a crash, os.exit, a hard kill at
-- a deadline) takes only its task with it; the next task that needs a
-- worker starts a new one.
--
-- The deadline is kept here, on a loop timer: at it the worker is killed
-- (no grace: a task that ignores its deadline is not asked twice), and its
-- task's result is final at once.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local function_task = require "luaconcurrent.exec.function_task"
local threads = require "luaconcurrent.exec.threads"
local worker = require "luaconcurrent.worker"

local now, wallclock = core.now, core.wallclock

local Processes = {}
Processes.__index = Processes

local M = {}

--- How to start a worker: this executable's --worker mode, or the
-- interpreter that hosts the module.
local function worker_argv()
  local embedded, exe = core.host()
  if embedded then return { exe, "--worker" } end
  local lua = exe and exe:match("/lua[%d.]*$") and exe or "lua5.4"
  return { lua, "-E", "-e", string.format(
    "package.path = %q; package.cpath = %q; os.exit(require('luaconcurrent.worker').main(), true)",
    package.path, package.cpath) }
end

function M.new(cfg, loop, finish)
  local _, task_args = function_task.split(cfg.pargs)
  return setmetatable({
    slots = threads.count(cfg), loop = loop, finish = finish, task_args = task_args,
    timeout = cfg.timeout, envblock = cfg.envblock, cwd = cfg.cwd,
    argv = worker_argv(),
    -- The run's marshal key first: the worker checks every frame with it.
    head = string.pack("<s4s4s4", core.marshal_key(),
      core.marshal_string(package.path, package.cpath), cfg.fn_bytes),
    wall_offset = wallclock() - now(),
    workers = {},      -- [process id] = w, every live worker
    idle = {},         -- workers with no task
    timers = {},       -- [timer id] = w, the deadline of w's task
  }, Processes)
end

function Processes:result_of(task, t1)
  local off = self.wall_offset
  return setmetatable({ key = task[2], arg = task[3], time_start = off + task.t0,
    time_end = off + t1, time_run = t1 - task.t0 }, ProcResult)
end

-- w's task is over (answered, timed out or lost): w holds none now.
function Processes:take_task(w)
  local task = w.task
  w.task = nil
  if w.timer then
    self.timers[w.timer] = nil
    self.loop:cancel_timer(w.timer)
    w.timer = nil
  end
  return task
end

-- An answer frame from w for its task.
function Processes:answered(w, blob)
  local task = self:take_task(w)
  if not task then return end
  local t1 = now()
  local res = self:result_of(task, t1)
  local decoded, status, a, b, c, d = pcall(core.unmarshal_string, blob)
  if not decoded then
    ProcResult.raised(res, "the worker's answer was corrupt: " .. ProcResult.error_text(status))
  elseif status == "ok" then
    res.stdout = a
    ProcResult.returned(res, b, c, d)
  else
    ProcResult.raised(res, a)
    res.stdout = b
  end
  if decoded and self.timeout > 0 and t1 - task.t0 >= self.timeout then
    ProcResult.time_out(res, self.timeout)
  end
  if not w.dead then self.idle[#self.idle + 1] = w end
  self.finish(task[1], res)
end

function Processes:read(w, data)
  local blobs = {}
  w.read(data, blobs)
  for _, blob in ipairs(blobs) do self:answered(w, blob) end
end

-- w's process ended (its final record): answers still in its output
-- count; a task it was running fails with the reason.
function Processes:ended(w, rec)
  self.workers[w.id] = nil
  w.dead = true
  local idle = self.idle
  for k = #idle, 1, -1 do if idle[k] == w then table.remove(idle, k) end end
  if rec.stdout and rec.stdout ~= "" then self:read(w, rec.stdout) end
  local task = self:take_task(w)
  if task then
    local res = self:result_of(task, now())
    local died = ProcResult.from_record(nil, nil, rec)
    res.exception = rec.interrupted and "Interrupted" or "RuntimeError"
    res.error = "the worker process ended without answering: "
      .. (died.error or string.format("exited with status %d", rec.returncode))
    self.finish(task[1], res)
  end
end

function Processes:start(index, key, arg)
  local sent, frame = pcall(core.marshal_string, key, self.task_args(arg))
  if not sent then return self.finish(index, function_task.unsendable(key, arg, frame)) end
  local w = table.remove(self.idle)
  if not w then
    -- A timeout is a hard kill, so the process gets no grace period.
    local id, message, errname = self.loop:spawn(self.argv, self.envblock, self.cwd,
      self.head, 0, 0, true)
    if not id then
      return self.finish(index, ProcResult.spawn_failure(key, arg, message, errname))
    end
    w = { id = id, read = worker.reader() }
    self.workers[id] = w
  end
  w.task = { index, key, arg, t0 = now() }
  if self.timeout > 0 then
    w.timer = self.loop:timer(w.task.t0 + self.timeout)
    self.timers[w.timer] = w
  end
  -- A worker that died meanwhile cannot take it: its record, coming, says why.
  self.loop:write(w.id, string.pack("<s4", frame))
end

-- Its deadline passed: a hard kill; the task's result is final now.
function Processes:expired(w)
  w.timer = nil
  local task = self:take_task(w)
  w.dead = true
  self.loop:kill(w.id)
  self.finish(task[1], ProcResult.time_out(self:result_of(task, now()), self.timeout,
    "its worker process was killed"))
end

function Processes:record(rec)
  local w = self.timers[rec.id]
  if w then
    self.timers[rec.id] = nil
    self:expired(w)
    return true
  end
  w = self.workers[rec.id]
  if not w then return false end
  if rec.data then self:read(w, rec.data) else self:ended(w, rec) end
  return true
end

function Processes:cancel(index, why)
  for _, w in pairs(self.workers) do
    if w.task and w.task[1] == index then
      local task = self:take_task(w)
      w.dead = true
      self.loop:kill(w.id)
      return self.finish(index, ProcResult.not_started(task[2], task[3], why))
    end
  end
end

--- Idle workers end at EOF on their stdin.
function Processes:close()
  for id in pairs(self.workers) do self.loop:close_input(id) end
end

function Processes:stop(records)
  for _, rec in ipairs(records) do
    local w = self.workers[rec.id]
    if w and not rec.data then self:ended(w, rec) end
  end
  for _, w in pairs(self.workers) do
    local task = self:take_task(w)
    if task then self.finish(task[1], ProcResult.not_started(task[2], task[3], "running")) end
  end
end

return M
