--- Executor: function tasks on worker processes (ProcRunMp with
-- isolation = "process"). Workers are started by exec (worker.lua) and
-- reused; tasks and answers cross as length-prefixed frames on their stdin
-- and stdout (the protocol: worker.lua's header).
--
-- Pipelined: each worker is handed several tasks ahead, several to a
-- frame, so it goes from one task to the next without waiting for the
-- runner. How many it holds (the window) follows the tasks' own run time:
-- about AHEAD_TIME of work, 1 to MAX_AHEAD tasks, so a long task does not
-- keep many others waiting behind it. A worker answers each task as soon
-- as it is over and says whether it went on to the next one; it also says
-- when it starts a frame's first task. So the runner always knows which
-- task a worker is running, and which ones it holds that never started.
--
-- One that dies (a crash, os.exit, a hard kill at a deadline) takes only
-- its running task with it: the tasks it held that never started go back
-- to the queue, to another worker (a worker that died idle fails none).
-- The next tasks that need a worker start a new one.
--
-- The deadline is kept here, on a loop timer from the start the worker
-- reported: at it the worker is killed (no grace: a task that ignores its
-- deadline is not asked twice), and its task's result is final at once.
--
-- Trust: code goes out, only data comes back. Each worker has its own
-- keys (core.marshal_worker_keys: down for what it is sent, up for what
-- it answers; it never sees the run's key). Its answers are read with the
-- data decoder under its up-key (the loop's "frames" mode does that in C;
-- read_rest here) and checked for shape; a frame that fails either ends
-- that worker, fails the task it was on and sends the others elsewhere.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local function_task = require "luaconcurrent.exec.function_task"
local threads = require "luaconcurrent.exec.threads"
local worker = require "luaconcurrent.worker"

local now, wallclock = core.now, core.wallclock
local marshal_keyed, unmarshal_data = core.marshal_keyed, core.unmarshal_data
local setmetatable, pcall, spack = setmetatable, pcall, string.pack
local tunpack = table.unpack

-- Most tasks a worker holds at once (running and queued), and about how
-- many seconds of work it is handed ahead.
local MAX_AHEAD = 64
local AHEAD_TIME = 0.002

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
  if cfg.max_answer then loop:max_frame(cfg.max_answer) end
  local _, task_args = function_task.split(cfg.pargs)
  local nworkers = threads.count(cfg)
  return setmetatable({
    capacity = nworkers * MAX_AHEAD, concurrency = nworkers,
    -- A worker runs the tasks of a frame back to back and cannot be told
    -- to skip the rest: one handed a task ahead would start it after a
    -- halt. A run that can halt hands each worker one task at a time.
    one_ahead = cfg.halts,
    nworkers = nworkers, loop = loop, finish = finish,
    plain = #cfg.pargs == 1,   -- no fixed arguments: frames carry arg, not { arg }
    task_args = task_args, timeout = cfg.timeout, envblock = cfg.envblock, cwd = cfg.cwd,
    argv = worker_argv(),
    fn_bytes = cfg.fn_bytes,   -- under the run's key: each worker gets it retagged
    wall_offset = wallclock() - now(),
    workers = {},      -- [process id] = w, every worker not yet reaped
    nlive = 0,         -- of them, the ones not dead
    timers = {},       -- [timer id] = w, the deadline of w's running task
    -- Tasks { index, key, arg } not handed to a worker, in order: a FIFO
    -- from qh to qt (tasks given back go in front of qh).
    queue = {}, qh = 1, qt = 0,
    avg = nil,         -- a running average of the tasks' run time
    vals = {},         -- scratch: a frame's keys and args
    names = core.marshal_names(),  -- for frames (see marshal_frame)
  }, Processes)
end

-- ---- the queue of tasks not handed over -------------------------------------

function Processes:push(task)
  local qt = self.qt + 1
  self.qt, self.queue[qt] = qt, task
end

-- Give back w's tasks from position from on (never started), in order,
-- in front of the queue; w holds none after.
function Processes:give_back(w, from)
  local queue = self.queue
  for k = w.qt, from, -1 do
    local task = w.q[k]
    w.q[k] = nil
    if not task.cancelled then
      self.qh = self.qh - 1
      queue[self.qh] = task
    end
  end
  for k = w.qh, from - 1 do w.q[k] = nil end
  w.qh, w.qt = 1, 0
end

-- ---- workers ----------------------------------------------------------------

-- Its head: its keys (down, up), package.path and cpath, the task
-- function; all it is sent is tagged with its down-key.
local function head(id, fn_bytes)
  local down, up = core.marshal_worker_keys(id)
  return down, up, spack("<s4s4s4", down .. up,
    marshal_keyed(down, nil, package.path, package.cpath), core.marshal_retag(fn_bytes, down))
end

function Processes:spawn()
  -- Without a good key no code may leave (marshal.h): no worker starts.
  local ok, why = pcall(core.marshal_worker_keys, 0)
  if not ok then return nil, why end
  -- A timeout is a hard kill, so the process gets no grace period. Its
  -- keys follow its id, so its head goes in once it has one.
  local id, message, errname = self.loop:spawn(self.argv, self.envblock, self.cwd,
    nil, 0, 0, "frames")
  if not id then return nil, message, errname end
  local down, up, h = head(id, self.fn_bytes)
  self.loop:write(id, h)
  local w = { id = id, q = {}, qh = 1, qt = 0, down = down, data = { key = up },
              started = false, ever = false }
  self.workers[id] = w
  self.nlive = self.nlive + 1
  return w
end

-- w is dead to us (killed, or its end seen): it takes no more tasks.
function Processes:retire(w)
  if not w.dead then
    w.dead = true
    self.nlive = self.nlive - 1
  end
  self:disarm(w)
end

function Processes:arm(w, t_start)
  if self.timeout <= 0 then return end
  -- The start is the worker's word: one in the future (or NaN) would put
  -- the deadline off, so it is now at the latest.
  local t = now()
  if not (t_start <= t) then t_start = t end  -- luacheck: ignore 581 (not <=: true for NaN too)
  self:disarm(w)
  w.timer = self.loop:timer(t_start + self.timeout)
  self.timers[w.timer] = w
end

function Processes:disarm(w)
  if w.timer then
    self.timers[w.timer] = nil
    self.loop:cancel_timer(w.timer)
    w.timer = nil
  end
end

-- How many tasks a worker may hold: about AHEAD_TIME of work.
function Processes:window()
  if self.one_ahead then return 1 end
  local avg = self.avg
  if not avg then return 4 end
  if avg * MAX_AHEAD <= AHEAD_TIME then return MAX_AHEAD end
  local n = AHEAD_TIME // avg
  return n >= 1 and math.tointeger(n) or 1
end

-- Hand w the next n queued tasks in one frame.
function Processes:send(w, n)
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
function Processes:marshal_frame(key, ...)
  local ok, blob = pcall(marshal_keyed, key, self.names, ...)
  if ok then return ok, blob end
  self.names = core.marshal_names()
  return pcall(marshal_keyed, key, self.names, ...)
end

function Processes:hand(w, tasks, k, blob)
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
function Processes:dispatch()
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

-- ---- answers ------------------------------------------------------------------

-- Each message's values after its name (worker.lua's header), as
-- core.data_is patterns: anything else is refused.
local data_is = core.data_is
local SHAPES = { start = "sf", ok = "sffbsi..", error = "sffbss" }

-- An answer frame from w, as unmarshalled (n values: what ...): a start,
-- or the answer of the task it runs.
function Processes:answered(w, n, what, t0, t1, more, a, b, c, d)
  local want = SHAPES[what]
  if not want or n ~= #want or not data_is(want, what, t0, t1, more, a, b)
    or (what ~= "start" and not (t1 >= t0)) or (what == "ok" and b < 0) then  -- luacheck: ignore 581 (refuses NaN)
    return self:refused(w, string.format("a message that is not an answer (%d values: %s %s %s %s ...)",
      n, type(what), type(t0), type(t1), type(more)))
  end
  if what == "start" then
    w.started, w.ever = true, true
    return self:arm(w, t0)
  end
  local qh = w.qh
  local task = w.q[qh]
  if not task then return end
  w.q[qh] = nil
  w.qh = qh + 1
  if w.timer then self:disarm(w) end
  local off = self.wall_offset
  local res
  w.started = more
  if more and self.timeout > 0 then self:arm(w, t1) end
  local run = t1 - t0
  local avg = self.avg
  self.avg = avg and avg + (run - avg) * 0.1 or run
  if what == "ok" and b > 0 and c then
    res = setmetatable({ key = task[2], arg = task[3], success = true, answer = d,
      stdout = a, time_start = off + t0, time_end = off + t1, time_run = run }, ProcResult)
  else
    res = ProcResult.answered(setmetatable({ key = task[2], arg = task[3],
      time_start = off + t0, time_end = off + t1, time_run = run }, ProcResult), what, a, b, c, d)
  end
  if self.timeout > 0 and run >= self.timeout then ProcResult.time_out(res, self.timeout) end
  if not task.cancelled then self.finish(task[1], res) end
  -- Held (halt): the tasks it holds next must not run; it goes.
  if self.held and w.qh <= w.qt and not w.dead then self:kill(w) end
end

-- w sent what the runner does not take: a frame that fails its check,
-- carries code or breaks a cap, or an answer of the wrong shape. It is a
-- failure of w, not of the run: w is killed, the task it was on fails
-- with why, the tasks it held that never started go to other workers.
function Processes:refused(w, why, text)
  local task = w.q[w.qh]
  if task then
    w.q[w.qh] = nil
    w.qh = w.qh + 1
  end
  w.started = false
  if w.dead then          -- its end is in (what it left is read): nothing to kill
    w.killed = true
    self:give_back(w, w.qh)
  else
    self:kill(w)
  end
  if task and not task.cancelled then
    local t = self.wall_offset + now()
    local res = setmetatable({ key = task[2], arg = task[3], time_start = t, time_end = t,
      time_run = 0 }, ProcResult)
    self.finish(task[1], ProcResult.raised(res, text or
      "the worker process sent what the runner refuses, and was ended: " .. ProcResult.error_text(why)))
  end
end

--- Start no more tasks (halt): the queued ones and the ones handed to a
-- worker but not started get their result now; a worker running a task
-- finishes it and is then stopped, so none of its next tasks runs.
function Processes:hold(why)
  self.held = true
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if not task.cancelled then self.finish(task[1], ProcResult.not_started(task[2], task[3], why)) end
  end
  self.queue, self.qh, self.qt = {}, 1, 0
  for _, w in pairs(self.workers) do
    local from = w.started and w.qh + 1 or w.qh
    for k = from, w.qt do
      local task = w.q[k]
      if not task.cancelled then
        task.cancelled = true
        self.finish(task[1], ProcResult.not_started(task[2], task[3], why))
      end
    end
    if not w.dead and not w.started and w.qh <= w.qt then self:kill(w) end
  end
end

-- The whole frames in the bytes a worker left when it ended (the engine
-- hands the others over one frame a record).
function Processes:read_rest(w, data)
  local blobs = {}
  worker.reader()(data, blobs)
  for i = 1, #blobs do
    if w.killed then return end
    local vals = table.pack(pcall(unmarshal_data, blobs[i], w.data))
    if vals[1] then
      self:answered(w, vals.n - 1, tunpack(vals, 2, vals.n))
    else
      self:refused(w, vals[2])
    end
  end
end

-- w's process ended (its final record): answers still in its output
-- count; a task it was running fails with the reason; the ones it held
-- that never started go back to the queue.
function Processes:ended(w, rec)
  self.workers[w.id] = nil
  self:retire(w)
  if w.killed then return end
  if rec.stdout and rec.stdout ~= "" then self:read_rest(w, rec.stdout) end
  if w.killed then return end      -- refused: read_rest dealt with its tasks
  local task = w.q[w.qh]
  -- A worker that never started a task may be unable to: its first task
  -- fails, so a run whose workers cannot start ends.
  if task and (w.started or not w.ever) then
    w.q[w.qh] = nil
    w.qh = w.qh + 1
    if not task.cancelled then
      local t = now()
      local res = setmetatable({ key = task[2], arg = task[3],
        time_start = self.wall_offset + t, time_end = self.wall_offset + t, time_run = 0 }, ProcResult)
      -- (a frame it never read is no part of why it died)
      local died = ProcResult.from_record(nil, nil,
        setmetatable({ input_error = false }, { __index = rec }))
      res.exception = rec.interrupted and "Interrupted" or "RuntimeError"
      res.error = "the worker process ended without answering: "
        .. (died.error or string.format("exited with status %d", rec.returncode))
      self.finish(task[1], res)
    end
  end
  self:give_back(w, w.qh)
end

-- Kill w now: its running task (if any) is returned, the others it holds
-- go back to the queue.
function Processes:kill(w)
  local task = w.started and w.q[w.qh] or nil
  self:retire(w)
  w.killed = true
  self.loop:kill(w.id)
  self:give_back(w, task and w.qh + 1 or w.qh)
  return task
end

function Processes:start(index, key, arg)
  self:push({ index, key, arg })
end

--- Tasks are handed over in frames once per turn of the loop, before it
-- waits: as many as have come by then.
function Processes:run_ready()
  return self:dispatch()
end

-- Its deadline passed: a hard kill; the task's result is final now.
function Processes:expired(w)
  w.timer = nil
  local task = self:kill(w)
  if task and not task.cancelled then
    local t = now()
    local res = setmetatable({ key = task[2], arg = task[3], time_start = self.wall_offset + t,
      time_end = self.wall_offset + t, time_run = 0 }, ProcResult)
    self.finish(task[1], ProcResult.time_out(res, self.timeout, "its worker process was killed"))
  end
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
  if not rec.frame then
    self:ended(w, rec)
  elseif not w.killed then
    if rec.error then self:broken(w, rec) else self:answered(w, rec.n, tunpack(rec, 1, rec.n)) end
  end
  return true
end

-- A frame from w that makes no sense ends w, which the engine already
-- does: nothing after it can be trusted. The task it runs fails saying
-- so; the ones it holds go to another worker. A length over max_answer
-- says which limit (an honest task can reach it); a frame that fails its
-- check or the data decoder (junk a task wrote into the answer pipe, a
-- forgery) is refused as any other answer the runner does not take.
function Processes:broken(w, rec)
  if not rec.size then return self:refused(w, rec.error) end
  local why = string.format("the worker's answer frame says %d bytes, over "
    .. "the limit of %d (the max_answer option)", rec.size, rec.limit)
  return self:refused(w, why, why .. "; the worker process was stopped")
end

function Processes:cancel(index, why)
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if task[1] == index and not task.cancelled then
      task.cancelled = true
      return self.finish(index, ProcResult.not_started(task[2], task[3], why))
    end
  end
  for _, w in pairs(self.workers) do
    for k = w.qh, w.qt do
      local task = w.q[k]
      if task[1] == index and not task.cancelled then
        if k == w.qh and w.started and not w.dead then self:kill(w) end
        -- Not started: its answer, if it ever comes, is dropped.
        task.cancelled = true
        return self.finish(index, ProcResult.not_started(task[2], task[3], why))
      end
    end
  end
end

--- The workers on a task now (each says when it starts one, and whether
-- it went on to the next; the tasks queued behind are not running).
function Processes:running()
  local n = 0
  for _, w in pairs(self.workers) do
    if w.started and not w.dead and not w.killed then n = n + 1 end
  end
  return n
end

--- Idle workers end at EOF on their stdin.
function Processes:close()
  for id in pairs(self.workers) do self.loop:close_input(id) end
end

function Processes:stop(records)
  for _, rec in ipairs(records) do
    local w = self.workers[rec.id]
    if w and not rec.frame then self:ended(w, rec) end
  end
  for _, w in pairs(self.workers) do
    for k = w.qh, w.qt do
      local task = w.q[k]
      if not task.cancelled then
        self.finish(task[1], ProcResult.not_started(task[2], task[3],
          k == w.qh and w.started and "running" or "not_started"))
      end
    end
    w.q, w.qh, w.qt = {}, 1, 0
  end
  for qh = self.qh, self.qt do
    local task = self.queue[qh]
    if not task.cancelled then self.finish(task[1], ProcResult.not_started(task[2], task[3])) end
  end
  self.queue, self.qh, self.qt = {}, 1, 0
end

return M
