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
local worker = require "luaconcurrent.worker"

local now, wallclock = core.now, core.wallclock

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
  local timeout = cfg.timeout
  local argv = worker_argv()
  local head = string.pack("<s4s4", core.marshal_string(package.path, package.cpath),
    cfg.fn_bytes)
  local wall_offset = wallclock() - now()
  local workers = {}   -- [process id] = w, every live worker
  local idle = {}      -- workers with no task
  local timers = {}    -- [timer id] = w, the deadline of w's task

  local function result_of(task, t1)
    return setmetatable({ key = task[2], arg = task[3], time_start = wall_offset + task.t0,
      time_end = wall_offset + t1, time_run = t1 - task.t0 }, ProcResult)
  end

  -- w's task is over (answered, timed out or lost): w holds none now.
  local function take_task(w)
    local task = w.task
    w.task = nil
    if w.timer then
      timers[w.timer] = nil
      loop:cancel_timer(w.timer)
      w.timer = nil
    end
    return task
  end

  -- An answer frame from w for its task.
  local function answered(w, blob)
    local task = take_task(w)
    if not task then return end
    local t1 = now()
    local res = result_of(task, t1)
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
    if decoded and timeout > 0 and t1 - task.t0 >= timeout then
      ProcResult.time_out(res, timeout)
    end
    if not w.dead then idle[#idle + 1] = w end
    finish(task[1], res)
  end

  local function ended(w, rec)
    workers[w.id] = nil
    w.dead = true
    for k = #idle, 1, -1 do if idle[k] == w then table.remove(idle, k) end end
    local blobs = {}
    if rec.stdout and rec.stdout ~= "" then w.read(rec.stdout, blobs) end
    for _, blob in ipairs(blobs) do answered(w, blob) end
    local task = take_task(w)
    if task then
      local res = result_of(task, now())
      local died = ProcResult.from_record(nil, nil, rec)
      res.exception = rec.interrupted and "Interrupted" or "RuntimeError"
      res.error = "the worker process ended without answering: "
        .. (died.error or string.format("exited with status %d", rec.returncode))
      finish(task[1], res)
    end
  end

  local ex = { slots = require("luaconcurrent.exec.threads").count(cfg) }

  function ex.start(index, key, arg)
    local sent, frame = pcall(core.marshal_string, key, task_args(arg))
    if not sent then return finish(index, function_task.unsendable(key, arg, frame)) end
    local w = table.remove(idle)
    if not w then
      -- A timeout is a hard kill, so the process gets no grace period.
      local id, message, errname = loop:spawn(argv, cfg.envblock, cfg.cwd, head, 0, 0, true)
      if not id then return finish(index, ProcResult.spawn_failure(key, arg, message, errname)) end
      w = { id = id, read = worker.reader() }
      workers[id] = w
    end
    w.task = { index, key, arg, t0 = now() }
    if timeout > 0 then
      w.timer = loop:timer(w.task.t0 + timeout)
      timers[w.timer] = w
    end
    -- A worker that died meanwhile cannot take it: its record, coming, says why.
    loop:write(w.id, string.pack("<s4", frame))
  end

  -- Its deadline passed: a hard kill; the task's result is final now.
  local function expired(w)
    w.timer = nil
    local task = take_task(w)
    w.dead = true
    loop:kill(w.id)
    local res = ProcResult.time_out(result_of(task, now()), timeout,
      "its worker process was killed")
    finish(task[1], res)
  end

  function ex.record(rec)
    local w = timers[rec.id]
    if w then
      timers[rec.id] = nil
      expired(w)
      return true
    end
    w = workers[rec.id]
    if not w then return false end
    if rec.data then
      local blobs = {}
      w.read(rec.data, blobs)
      for _, blob in ipairs(blobs) do answered(w, blob) end
    else
      ended(w, rec)
    end
    return true
  end

  function ex.cancel(index, why)
    for _, w in pairs(workers) do
      if w.task and w.task[1] == index then
        local task = take_task(w)
        w.dead = true
        loop:kill(w.id)
        return finish(index, ProcResult.not_started(task[2], task[3], why))
      end
    end
  end

  --- Idle workers end at EOF on their stdin.
  function ex.close()
    for id in pairs(workers) do loop:close_input(id) end
  end

  function ex.stop(records)
    for _, rec in ipairs(records) do
      if workers[rec.id] and not rec.data then ended(workers[rec.id], rec) end
    end
    for _, w in pairs(workers) do
      local task = take_task(w)
      if task then finish(task[1], ProcResult.not_started(task[2], task[3], "running")) end
    end
  end

  return ex
end

return M
