--- The runner classes: ProcRunAsyncio and ProcRunMp.
--
-- A runner validates its input at construction and runs every task in
-- run_all, at most num_workers at a time, on one event loop. It keeps one
-- result per task, in task order. However run_all ends, nothing it started
-- is left running: on an error (a raising callback, Ctrl-C) every task still
-- running is killed or closed, recorded as "Interrupted", and the error is
-- raised again.
--
-- Task kinds:
--   exec  pargs[1] is a program: one subprocess per task
--   coro  ProcRunAsyncio with a function: one coroutine per task, here
--   pool  ProcRunMp with a function: thread workers, each with its own
--         lua_State (src/pool.c); tasks and answers cross as bytes
--   isolated  the same with isolation = "process": worker processes
--         (worker.lua), the same bytes over their stdin and stdout

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local ProcResult = require "luaconcurrent.result"
local async = require "luaconcurrent.async"
-- Loaded now, not when a run needs it: a run short of fds could not open it.
local worker = require "luaconcurrent.worker"

local fail = validate.fail
local now, wallclock = core.now, core.wallclock
local signal_pending, hup_pending = core.signal_pending, core.hup_pending
local SLEEP, WAIT, CANCEL = async.SLEEP, async.WAIT, async.CANCEL
local task_resume = async.resume
local co_create, co_status, co_close, co_yield =
  coroutine.create, coroutine.status, coroutine.close, coroutine.yield
local DONE = setmetatable({}, { __name = "luaconcurrent.DONE" })
local sethook, traceback = debug.sethook, debug.traceback

local OPTIONS = {
  num_workers = true, timeout = true, verb = true, on_start = true,
  on_result = true, on_progress = true, env = true, cwd = true, input = true,
  keep_results = true, kill_grace = true, isolation = true,
}

local DEFAULT_WORKERS = 4
-- Thread workers each own a lua_State; more than this is a mistake.
local MAX_THREADS = 1024
-- Tasks handed to thread workers ahead of time, per worker: enough that
-- workers take them in batches, few enough to stay lazy on iterators.
local POOL_QUEUE_PER_WORKER = 64
local DEFAULT_GRACE = 0.1
-- Instructions between deadline checks in a running coroutine task. Any
-- count hook makes Lua 5.4 trace every instruction (pure-Lua loops run
-- about twice as slow), so only tasks with a timeout get one.
local HOOK_COUNT = 1000

local Runner = {}
Runner.__index = Runner

--- Accept an options table, or pyconcurrent's (num_workers, timeout, verb).
local function normalise_options(opts, ...)
  if type(opts) == "table" then
    if select("#", ...) > 0 then
      fail("options given as a table take no further arguments")
    end
    return opts
  end
  if opts ~= nil and type(opts) ~= "number" then
    fail("options must be a table (or num_workers, timeout, verb), got %s", type(opts))
  end
  if select("#", ...) > 2 then
    fail("too many arguments: (pargs, tasks, num_workers, timeout, verb) takes at most 5, got %d",
      select("#", ...) + 3)
  end
  local timeout, verb = ...
  return { num_workers = opts, timeout = timeout, verb = verb }
end

local function new_runner(class, pargs, tasks, opts, ...)
  validate.pargs(pargs)
  opts = validate.options(normalise_options(opts, ...), OPTIONS)
  local is_fn = type(pargs[1]) == "function"
  local kind = is_fn and class.function_kind or "exec"
  local ntasks = validate.tasks(tasks, not is_fn)
  if (kind == "pool" or kind == "isolated") and type(tasks) == "table" then
    for i = 1, ntasks do
      local key, arg = tasks[i][1], tasks[i][2]
      for what, v in pairs({ key = key, arg = arg }) do
        local t = type(v)
        if t == "thread" or t == "userdata" then
          fail("task %d %s cannot be sent to a worker: it is a %s", i, what,
            t == "thread" and "coroutine" or t)
        end
      end
    end
  end
  if opts.isolation ~= nil then
    if opts.isolation ~= "thread" and opts.isolation ~= "process" then
      fail('isolation must be "thread" or "process", got %s', validate.show(opts.isolation))
    end
    if kind ~= "pool" then
      fail("isolation applies to ProcRunMp function tasks")
    end
    if opts.isolation == "process" then kind = "isolated" end
  end
  if kind == "pool" and (opts.num_workers or 0) > MAX_THREADS then
    fail("num_workers for thread workers must be at most %d, got %s", MAX_THREADS,
      validate.show(opts.num_workers))
  end
  local fn_bytes
  if kind == "pool" or kind == "isolated" then
    -- Fail here, naming the value, if the function cannot reach a worker.
    fn_bytes = core.marshal_string(pargs[1])
    for i = 2, #pargs do
      local sendable, err = pcall(core.marshal, pargs[i])
      if not sendable then
        fail("pargs[%d] cannot be sent to a thread worker: %s", i,
          (tostring(err):gsub("^luaconcurrent: ", "")))
      end
    end
  end
  local self = setmetatable({
    pargs = pargs,
    tasks = tasks,
    kind = kind,
    num_workers = opts.num_workers or DEFAULT_WORKERS,
    timeout = opts.timeout or 0,
    verb = opts.verb or false,
    keep_results = opts.keep_results ~= false,
    kill_grace = opts.kill_grace or DEFAULT_GRACE,
    on_start = opts.on_start,
    on_result = opts.on_result,
    on_progress = opts.on_progress,
    env = opts.env,
    cwd = opts.cwd,
    input = opts.input,
    ntasks = ntasks,
    fn_bytes = fn_bytes,
    result = {},
    ok = nil,
    time_start = -1, time_end = -1, time_run = -1,
  }, class)
  if class.prepare then class.prepare(self) end
  return self
end

--- An iterator over (index, key, arg), validating tasks from a function.
local function task_source(tasks, check_arg)
  if type(tasks) == "table" then
    local i = 0
    return function()
      i = i + 1
      local task = tasks[i]
      if task == nil then return nil end
      return i, task[1], task[2]
    end
  end
  local i, seen = 0, {}
  return function()
    local task = tasks()
    if task == nil then return nil end
    i = i + 1
    local key, arg = validate.task(task, i, seen, check_arg)
    return i, key, arg
  end
end

local function append_arg(argv, n, arg)
  if arg == nil then return end
  if type(arg) == "table" then
    for i = 1, #arg do argv[n + i] = tostring(arg[i]) end
  else
    argv[n + 1] = tostring(arg)
  end
end

local function log(fmt, ...)
  io.stderr:write("luaconcurrent: ", string.format(fmt, ...), "\n")
end

--- A function task's result from what the function returned.
-- Returning nothing counts as success (the function ran to its end without
-- raising); otherwise the first value's truth is success and the second
-- value is the answer. A false or nil first value with a string second
-- value also sets error to that string (Lua's `return nil, message`).
local function returned_result(res, nret, first, answer)
  if nret == 0 then
    res.success = true
    return
  end
  res.success = first ~= nil and first ~= false
  res.answer = answer
  if not res.success then
    res.error = type(answer) == "string" and answer
      or string.format("the task function returned %s", tostring(first))
  end
end

--- The whole of run_all's work; `st` is shared with the error path.
local function run_tasks(self, st)
  local loop = st.loop
  local kind = self.kind
  local limit = self.num_workers == 0 and math.huge or self.num_workers
  if kind == "pool" then
    local nthreads = self.num_workers == 0 and core.cpu_count() or self.num_workers
    -- No more workers (each a thread and a lua_State) than tasks.
    if self.ntasks and self.ntasks < nthreads then nthreads = math.max(self.ntasks, 1) end
    pcall(require, "cjson")  -- its one-time set-up must not race in workers
    loop:pool_start(self.fn_bytes, nthreads, self.timeout, package.path, package.cpath)
    limit = nthreads * POOL_QUEUE_PER_WORKER
  end
  local next_task = task_source(self.tasks, kind == "exec")
  local inflight, waiting, live = st.inflight, st.waiting, st.live
  local timers, ready = st.timers, {}
  local running, done, total = 0, 0, self.ntasks
  local timeout, grace, cwd, input = self.timeout, self.kill_grace, self.cwd, self.input
  local on_start, on_result, on_progress = self.on_start, self.on_result, self.on_progress
  local keep, result, verb = self.keep_results, self.result, self.verb
  local ok = true

  -- exec: argv prefix; functions: the function and its fixed arguments
  local prefix, nprefix = {}, 0
  local fn, fixed, nfixed = nil, {}, 0
  if kind == "exec" then
    for i, v in ipairs(self.pargs) do prefix[i] = tostring(v) end
    nprefix = #prefix
  else
    fn = self.pargs[1]
    for i = 2, #self.pargs do fixed[i - 1] = self.pargs[i] end
    nfixed = #fixed
  end
  local envblock = self.env and core.envblock(self.env) or nil

  -- A function task's args: {pargs[2], ..., pargs[n], arg}.
  local function task_args(arg)
    if nfixed == 0 then return { arg } end
    local args = { table.unpack(fixed, 1, nfixed) }
    args[nfixed + 1] = arg
    return args
  end

  local function store(index, res)
    if keep then result[index] = res end
  end

  local function report(res)
    if not res.success then ok = false end
    done = done + 1
    if verb then
      log("done %s: %s", validate.show(res.key),
        res.success and "ok" or (res.error or res.exception or "failed"))
    end
    if on_result then on_result(res) end
    if on_progress then on_progress(done, total) end
  end

  local function finish(index, res)
    store(index, res)
    report(res)
  end

  ---------------------------------------------------------------- coroutines
  -- A task that finishes in its first resume never gets a task record:
  -- the record t (in live, keyed for timers and waits) is made only when
  -- it suspends or has a deadline. async.resume lets lc.sleep and
  -- lc.run_prog inside it find this run.

  local wall_offset = wallclock() - now()
  local step, worker_timeout

  local function complete(co, t, index, key, arg, t0, ok_run, nret, first, answer)
    running = running - 1
    local t1 = now()
    local res = setmetatable({
      key = key, arg = arg, time_start = wall_offset + t0,
      time_end = wall_offset + t1, time_run = t1 - t0,
    }, ProcResult)
    if t then
      live[t] = nil
      t.state = "done"
      if t.deadline then sethook(co) end
    end
    if not ok_run then
      if first == CANCEL then
        res.timeout, res.exception = true, "TimeoutError"
        res.error = string.format("timed out after %g s", timeout)
      else
        res.exception = "RuntimeError"
        res.error = traceback(co, type(first) == "string" and first or tostring(first))
      end
      co_close(co)        -- run the to-be-closed variables it left pending
    elseif t and t.deadline and t1 >= t.deadline then
      -- It came back from something the hook could not interrupt.
      res.timeout, res.exception = true, "TimeoutError"
      res.error = string.format("timed out after %g s (it returned %.3g s late)",
        timeout, t1 - t.deadline)
      res.answer = answer
    elseif nret == 0 then
      res.success = true  -- ran to its end without raising
    else
      returned_result(res, nret, first, answer)
    end
    finish(index, res)
  end

  -- Task coroutines are reused: each runs `body`, which yields DONE and
  -- the function's results after every task and takes the next task's
  -- key and args. One whose task raised (or was cancelled) is dead and
  -- closed instead.
  local spare = {}
  local function body(key, args)
    while true do key, args = co_yield(DONE, fn(key, args)) end
  end

  -- After a resume: finished, or suspended on a sleep, a process or a yield.
  function step(co, t, index, key, arg, t0, ok_run, ...)
    if co_status(co) == "dead" then
      return complete(co, t, index, key, arg, t0, ok_run, select("#", ...), ...)
    end
    if ... == DONE then
      spare[#spare + 1] = co
      return complete(co, t, index, key, arg, t0, true, select("#", ...) - 1, select(2, ...))
    end
    if not t then
      t = { co = co, index = index, key = key, arg = arg, t0 = t0, token = 0 }
      live[t] = true
    end
    local what, value = ...
    if what == SLEEP then
      t.state = "sleep"
      t.token = t.token + 1
      timers:push({ value, t, t.token })
    elseif what == WAIT then
      t.state = "wait"
      t.proc = value
      waiting[value] = t
    else
      t.state = "ready"
      ready[#ready + 1] = t
    end
  end

  local function resume(t, ...)
    t.state = "running"
    local co = t.co
    return step(co, t, t.index, t.key, t.arg, t.t0, task_resume(st, co, ...))
  end

  -- A suspended task whose deadline passed: kill what it waits on, close it.
  local function cancel(t)
    if t.proc then
      waiting[t.proc] = nil
      loop:kill(t.proc)
      t.proc = nil
    end
    t.token = t.token + 1
    complete(t.co, t, t.index, t.key, t.arg, t.t0, false, 1, CANCEL)
  end

  -- The hook stays armed after it fires, so a pcall that swallows CANCEL
  -- gets it again at the next check, while a short __close handler still
  -- runs to its end. A task that keeps swallowing it is checked on every
  -- instruction from the third time on, which also catches a pcall in a
  -- loop. A task that returns anyway is timed out (complete, above).
  local function deadline_hook(t)
    local cancels = 0
    return function()
      if now() >= t.deadline then
        cancels = cancels + 1
        if cancels == 3 then
          local co = coroutine.running()
          sethook(co, t.hook, "", 1)
          if co ~= t.co then sethook(t.co, t.hook, "", 1) end
        end
        error(CANCEL, 0)
      end
    end
  end

  local function start_coro(index, key, arg)
    local args = task_args(arg)
    local n = #spare
    local co = spare[n]
    if co then spare[n] = nil else co = co_create(body) end
    running = running + 1
    local t0 = now()
    local t
    if timeout > 0 then
      t = { co = co, index = index, key = key, arg = arg, t0 = t0, token = 0,
            state = "running", deadline = t0 + timeout }
      live[t] = true
      t.hook = deadline_hook(t)
      sethook(co, t.hook, "", HOOK_COUNT)
      timers:push({ t.deadline, t, false })
    end
    return step(co, t, index, key, arg, t0, task_resume(st, co, key, args))
  end

  local function fire_timers()
    local top = timers:peek()
    if not top then return end
    local t_now = now()
    while top and top[1] <= t_now do
      timers:pop()
      local t, token = top[2], top[3]
      if top[4] == "worker" then
        worker_timeout(t, token)
      elseif live[t] then
        if token == false then
          if t.state ~= "running" then cancel(t) end
        elseif token == t.token and t.state == "sleep" then
          resume(t)
        end
      end
      top = timers:peek()
    end
  end

  local function run_ready()
    local queue = ready
    ready = {}
    for i = 1, #queue do
      local t = queue[i]
      if live[t] and t.state == "ready" then resume(t) end
    end
  end

  ---------------------------------------------------------------- exec

  local function start_exec(index, key, arg)
    local argv = { table.unpack(prefix, 1, nprefix) }
    append_arg(argv, nprefix, arg)
    local id, message, errname = loop:spawn(argv, envblock, cwd, input, timeout, grace)
    if id then
      inflight[id] = { index, key, arg }
      running = running + 1
    else
      finish(index, ProcResult.spawn_failure(key, arg, message, errname))
    end
  end

  ---------------------------------------------------------------- workers

  -- A task from an iterator whose key or args cannot reach a worker.
  local function unsendable(index, key, arg, err)
    local res = ProcResult.new(key, arg)
    res.exception, res.error = "RuntimeError", tostring(err)
    finish(index, res)
  end

  local function start_pool(index, key, arg)
    local args = task_args(arg)
    local sent, id = pcall(loop.submit, loop, key, args)
    if not sent then return unsendable(index, key, arg, id) end
    inflight[id] = { index, key, arg }
    running = running + 1
  end

  local function job_result(key, arg, rec)
    local res = setmetatable({ key = key, arg = arg, time_start = rec.time_start,
      time_end = rec.time_end, time_run = rec.time_run }, ProcResult)
    local status = rec.status
    if status == "ok" then
      returned_result(res, rec.nret, rec.first, rec.answer)
    elseif status == "timeout" then
      res.timeout, res.exception = true, "TimeoutError"
      res.error = string.format("timed out after %g s", timeout)
    elseif status == "cancelled" then
      res.exception = "Interrupted"
      res.error = "interrupted: the run was stopped"
    else
      res.exception, res.error = "RuntimeError", rec.error
    end
    return res
  end
  st.job_result = job_result

  ---------------------------------------------------------------- processes
  -- isolation = "process": worker processes started by exec, each serving
  -- tasks one at a time over its stdin and stdout (worker.lua). One that
  -- dies (crash, os.exit, a hard kill at a deadline) takes only its task
  -- with it; the next task that needs a worker starts a new one.

  local workers, idle = st.workers, {}
  local worker_argv, worker_head
  if kind == "isolated" then
    local embedded, exe = core.host()
    if embedded then
      worker_argv = { exe, "--worker" }
    else
      local lua = exe and exe:match("/lua[%d.]*$") and exe or "lua5.4"
      worker_argv = { lua, "-E", "-e", string.format(
        "package.path = %q; package.cpath = %q; os.exit(require('luaconcurrent.worker').main(), true)",
        package.path, package.cpath) }
    end
    -- The run's marshal key first: the worker checks every frame with it.
    worker_head = string.pack("<s4s4s4", core.marshal_key(),
      core.marshal_string(package.path, package.cpath), self.fn_bytes)
    limit = self.num_workers == 0 and core.cpu_count() or self.num_workers
    if self.ntasks and self.ntasks < limit then limit = math.max(self.ntasks, 1) end
  end

  local function task_result(task, t1)
    return setmetatable({ key = task[2], arg = task[3], time_start = wall_offset + task.t0,
      time_end = wall_offset + t1, time_run = t1 - task.t0 }, ProcResult)
  end

  local function start_isolated(index, key, arg)
    local sent, frame = pcall(core.marshal_string, key, task_args(arg))
    if not sent then return unsendable(index, key, arg, frame) end
    local w = table.remove(idle)
    if not w then
      -- A timeout is a hard kill, so the process gets no grace period.
      local id, message, errname = loop:spawn(worker_argv, envblock, cwd, worker_head, 0, 0, true)
      if not id then return finish(index, ProcResult.spawn_failure(key, arg, message, errname)) end
      w = { id = id, buf = "", token = 0 }
      workers[id] = w
    end
    local t0 = now()
    w.task = { index, key, arg, t0 = t0 }
    w.token = w.token + 1
    running = running + 1
    if timeout > 0 then timers:push({ t0 + timeout, w, w.token, "worker" }) end
    -- A worker that died meanwhile cannot take it: its record, coming, says why.
    loop:write(w.id, string.pack("<s4", frame))
  end

  -- An answer from worker w for its task: the result, and w is idle again.
  local function worker_answer(w, blob)
    local task, t1 = w.task, now()
    w.task, w.token = nil, w.token + 1
    running = running - 1
    local res = task_result(task, t1)
    local decoded, status, a, b, c, d = pcall(core.unmarshal_string, blob)
    if not decoded then
      res.exception, res.error = "RuntimeError", "the worker's answer was corrupt: " .. tostring(status)
    elseif status == "ok" then
      res.stdout = a
      returned_result(res, b, c, d)
    else
      res.exception, res.error, res.stdout = "RuntimeError", a, b
    end
    if decoded and timeout > 0 and t1 - task.t0 >= timeout then
      res.success, res.timeout, res.exception = false, true, "TimeoutError"
      res.error = string.format("timed out after %g s", timeout)
    end
    if not w.dead then idle[#idle + 1] = w end
    return task[1], res
  end

  -- Its deadline passed: a hard kill; the task's result is final now.
  function worker_timeout(w, token)
    if not w.task or w.token ~= token then return end
    local task, t1 = w.task, now()
    w.task, w.dead = nil, true
    running = running - 1
    loop:kill(w.id)
    local res = task_result(task, t1)
    res.timeout, res.exception = true, "TimeoutError"
    res.error = string.format("timed out after %g s (its worker process was killed)", timeout)
    finish(task[1], res)
  end

  -- Worker w's process ended (its final record): answers still in its
  -- output count; a task it was running fails with the reason.
  local function worker_ended(w, rec, out)
    workers[w.id] = nil
    w.dead = true
    for k = #idle, 1, -1 do if idle[k] == w then table.remove(idle, k) end end
    local blobs
    blobs, w.buf = worker.frames(w.buf .. (rec.stdout or ""))
    for _, blob in ipairs(blobs) do
      if w.task then out[#out + 1] = { worker_answer(w, blob) } end
    end
    if w.task then
      local task = w.task
      w.task = nil
      running = running - 1
      local res = task_result(task, now())
      local died = ProcResult.from_record(nil, nil, rec, timeout)
      res.exception = rec.interrupted and "Interrupted" or "RuntimeError"
      res.error = "the worker process ended without answering: "
        .. (died.error or string.format("exited with status %d", rec.returncode))
      out[#out + 1] = { task[1], res }
    end
  end
  st.worker_ended = worker_ended

  local function worker_output(w, data, out)
    local blobs
    blobs, w.buf = worker.frames(w.buf .. data)
    for _, blob in ipairs(blobs) do
      if w.task then out[#out + 1] = { worker_answer(w, blob) } end
    end
  end

  ---------------------------------------------------------------- records

  local function on_records(records)
    local n = #records
    -- Store the whole batch before any callback runs, so a raising
    -- callback cannot lose a result the engine already handed over.
    local finished = {}
    for i = 1, n do
      local rec = records[i]
      local t = inflight[rec.id]
      local w = workers[rec.id]
      if t then
        inflight[rec.id] = nil
        running = running - 1
        local res = rec.fn and job_result(t[2], t[3], rec)
          or ProcResult.from_record(t[2], t[3], rec, timeout)
        store(t[1], res)
        finished[#finished + 1] = res
      elseif w then
        local answered = {}
        if rec.data then worker_output(w, rec.data, answered)
        else worker_ended(w, rec, answered) end
        for _, a in ipairs(answered) do
          store(a[1], a[2])
          finished[#finished + 1] = a[2]
        end
      end
    end
    for i = 1, #finished do report(finished[i]) end
    for i = 1, n do
      local rec = records[i]
      local t = waiting[rec.id]
      if t then
        waiting[rec.id] = nil
        t.proc = nil
        resume(t, rec)
      end
    end
  end

  ---------------------------------------------------------------- the loop

  local start = ({ exec = start_exec, pool = start_pool, isolated = start_isolated,
                   coro = start_coro })[kind]
  local exhausted, last_index = false, 0
  -- Signals (when handled: the executable, or lc.handle_signals()):
  -- SIGINT/SIGTERM stop the run; SIGHUP starts no new task.
  local function check_signals()
    local sig = signal_pending()
    if sig then error("luaconcurrent: interrupted by " .. sig, 0) end
    if not exhausted and hup_pending() then
      exhausted = true
      st.hup = true
    end
  end
  check_signals()
  while true do
    while running < limit and not exhausted do
      local index, key, arg = next_task()
      if index == nil then
        exhausted = true
        total = done + running
        break
      end
      last_index = index
      if verb then log("start %s", validate.show(key)) end
      if on_start then on_start(key, arg) end
      start(index, key, arg)
    end
    if #ready > 0 then
      run_ready()
    elseif exhausted and running == 0 then
      break
    else
      local wait
      local top = timers:peek()
      if top then
        wait = top[1] - now()
        if wait < 0 then wait = 0 end
      end
      if wait ~= nil or loop:running() > 0 then
        on_records(loop:poll(wait))   -- returns at once if a signal is pending
      end
      fire_timers()
    end
    check_signals()
  end
  -- Idle workers end at EOF; processes of cancelled tasks were killed:
  -- wait until all are reaped.
  for id in pairs(workers) do loop:close_input(id) end
  while loop:running() > 0 do loop:poll() end
  if st.hup and type(self.tasks) == "table" then
    -- Drained after SIGHUP: the tasks never started still get a result.
    for i = last_index + 1, self.ntasks do
      local task = self.tasks[i]
      local res = ProcResult.not_started(task[1], task[2])
      res.error = "not started: SIGHUP asked the run to finish its running tasks only"
      finish(i, res)
    end
  end
  return ok
end

--- Stop cleanly after an error: kill and reap what runs, close task
-- coroutines, give every task that has no result an Interrupted one.
local function abandon(self, st)
  local keep = self.keep_results
  for _, rec in ipairs(st.loop:close()) do
    local t = st.inflight[rec.id]
    local w = st.workers[rec.id]
    if t and keep then
      self.result[t[1]] = rec.fn and st.job_result(t[2], t[3], rec)
        or ProcResult.from_record(t[2], t[3], rec, self.timeout)
    elseif w and keep and not rec.data then
      local answered = {}
      st.worker_ended(w, rec, answered)
      for _, a in ipairs(answered) do self.result[a[1]] = a[2] end
    end
  end
  for t in pairs(st.live) do
    st.live[t] = nil
    if t.deadline then sethook(t.co) end
    if co_status(t.co) ~= "running" then co_close(t.co) end
    if keep then
      local res = ProcResult.not_started(t.key, t.arg)
      res.error = "interrupted: the run was stopped while this task ran"
      self.result[t.index] = res
    end
  end
  if keep and type(self.tasks) == "table" then
    for i = 1, self.ntasks do
      if self.result[i] == nil then
        local task = self.tasks[i]
        self.result[i] = ProcResult.not_started(task[1], task[2])
      end
    end
  end
end

--- Run every task; returns self.result (one ProcResult per task, in order).
function Runner:run_all()
  local st = {
    loop = core.new_loop(),
    inflight = {},          -- exec and worker tasks by id
    workers = {},           -- process workers by process id
    waiting = {},           -- coroutine tasks by the process id they wait on
    live = {},              -- coroutine tasks not finished
    timers = async.heap(),
  }
  self.result = {}
  self.time_start = wallclock()
  local t0 = now()
  local ok, all_ok = pcall(run_tasks, self, st)
  if not ok then
    abandon(self, st)
    self.ok = false
  else
    st.loop:close()
    self.ok = all_ok
  end
  self.time_run = now() - t0
  self.time_end = self.time_start + self.time_run
  if not ok then error(all_ok, 0) end
  return self.result
end

--- Print every result in pyconcurrent's layout.
function Runner:print_results()
  for _, res in ipairs(self.result) do res:print() end
end

local M = {}

local function class(name, function_kind)
  local c = setmetatable({}, { __index = Runner, __call = new_runner })
  c.__index = c
  c.__name = name
  c.function_kind = function_kind
  return c
end

-- Executable tasks run the same way in both; function tasks differ.
M.ProcRunAsyncio = class("ProcRunAsyncio", "coro")
M.ProcRunMp = class("ProcRunMp", "pool")
M.Runner = Runner

return M
