--- Executor: one subprocess per task (pargs[1] is a program).
--
-- The smallest executor, and the one to read first when writing another:
-- it starts a task, takes the engine records that are its own, cancels a
-- task on request and hands back what it still holds when the run stops.
-- The interface is written down in executors.lua.
--
-- Timeouts are the engine's: the process group gets SIGTERM at the
-- deadline and SIGKILL kill_grace seconds later, and the record says so.
-- cfg.time_limit(key) -> seconds | nil (no limit), when given, is a limit that may
-- change while tasks run (lcparallel's --timeout N%): it is read again
-- before each wait, and one loop timer wakes the run at the next one due.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local argvlib = require "luaconcurrent.argv"

local M = {}

-- The executor is a table of closures over its state (upvalues, not
-- fields: start and record are every task's cost), made by the small
-- functions below, one group of methods each. s is the state they share:
-- cfg, loop, finish, live, inflight ([process id] = { index, key, arg,
-- why, started, limit }), by_index ([index] = process id, for cancel),
-- timer ({ id, at }: the loop timer for the next time_limit due).

-- describe and start: a task's command line and its spawn.
local function add_start(ex, s)
  local cfg, loop, finish, inflight, by_index = s.cfg, s.loop, s.finish, s.inflight, s.by_index
  local prefix = argvlib.words(cfg.pargs)
  local timeout, grace, cwd, input, envblock = cfg.timeout, cfg.kill_grace, cfg.cwd, cfg.input, cfg.envblock
  local time_limit, how = cfg.time_limit, s.live and "live" or false

  --- For verb = true: the command line.
  function ex:describe(_, arg)
    return table.concat(argvlib.of(prefix, arg), " ")
  end

  function ex:start(index, key, arg)
    local id, message, errname = loop:spawn(argvlib.of(prefix, arg), envblock, cwd, input, timeout, grace,
      how, cfg.max_capture)
    if not id then
      return finish(index, ProcResult.spawn_failure(key, arg, message, errname, core.wallclock()))
    end
    inflight[id] = { index, key, arg, nil, time_limit and core.now() }
    by_index[index] = id
  end
end

-- A finished task's result: a time_limit kill is a timeout, a cancel says why.
local function result_of(t, rec)
  if t[4] == "time_limit" then
    rec.interrupted, rec.timeout, rec.limit, t[4] = nil, true, t[6], nil
  end
  local res = ProcResult.from_record(t[2], t[3], rec)
  if t[4] and not res.success and not res.timeout then ProcResult.interrupt(res, t[4]) end
  return res
end

-- record and cancel: what comes back of a task, and ending one early.
local function add_record(ex, s)
  local loop, finish, live, inflight, by_index, timer = s.loop, s.finish, s.live, s.inflight, s.by_index, s.timer

  function ex:record(rec)
    if rec.id == timer.id then timer.id, timer.at = nil, nil; return true end
    local t = inflight[rec.id]
    if not t then return false end
    if rec.data then return true, live(t[1], t[2], rec.data, rec.stderr == true) end
    if live then
      if rec.live_stdout ~= "" then live(t[1], t[2], rec.live_stdout, false) end
      if rec.live_stderr ~= "" then live(t[1], t[2], rec.live_stderr, true) end
    end
    inflight[rec.id], by_index[t[1]] = nil, nil
    finish(t[1], result_of(t, rec), rec)   -- (rec: for the engine-mode remote worker's wire)
    return true
  end

  --- Kill one task's process group; its record still comes, and the
  -- result says why.
  function ex:cancel(index, why)
    local id = by_index[index]
    if id and loop:kill(id) then inflight[id][4] = why end
  end
end

local function disarm(loop, timer)
  if timer.id then loop:cancel_timer(timer.id) end
  timer.id, timer.at = nil, nil
end

-- run_ready, with cfg.time_limit: a task past its limit gets TERM, then
-- KILL after kill_grace, as at the engine's own deadline; the next one
-- due arms the timer.
local function add_limits(ex, s)
  local loop, inflight, timer, time_limit = s.loop, s.inflight, s.timer, s.cfg.time_limit
  function ex:run_ready()
    local first, t_now = math.huge, core.now()
    for id, t in pairs(inflight) do
      local limit = not t[4] and time_limit(t[2])
      if type(limit) == "number" and limit >= 0 then
        if t[5] + limit <= t_now then
          if loop:terminate(id) then t[4], t[6] = "time_limit", limit end
        elseif t[5] + limit < first then
          first = t[5] + limit
        end
      end
    end
    if first ~= timer.at then
      disarm(loop, timer)
      if first < math.huge then timer.id, timer.at = loop:timer(first), first end
    end
    return false
  end
end

-- running, hold, close, stop: what it holds, and the run's end.
local function add_end(ex, s)
  local loop, finish, inflight, timer = s.loop, s.finish, s.inflight, s.timer

  --- Every task it holds is running (counted when asked: a start pays
  -- nothing for it).
  function ex:running()
    local n = 0
    for _ in pairs(inflight) do n = n + 1 end
    return n
  end

  --- Nothing to hold: a task starts as it is handed over.
  function ex:hold() end

  function ex:close() disarm(loop, timer) end

  --- The run is over; records are the loop's last ones (its processes
  -- killed and reaped). Every task still held gets its result.
  function ex:stop(records)
    for _, rec in ipairs(records) do self:record(rec) end
    for id, t in pairs(inflight) do
      inflight[id] = nil
      finish(t[1], ProcResult.not_started(t[2], t[3], "running"))
    end
  end
end

--- cfg: the runner's settings (read only); loop: the run's engine loop;
-- finish(index, res): report a task's one result; live(index, key, data,
-- is_stderr), when given: output as it arrives (output = "lines").
function M.new(cfg, loop, finish, live)
  -- It holds no task ahead: every task it holds runs.
  local ex = { capacity = cfg.slots, concurrency = cfg.slots }
  local s = { cfg = cfg, loop = loop, finish = finish, live = live, inflight = {}, by_index = {}, timer = {} }
  add_start(ex, s)
  add_record(ex, s)
  if cfg.time_limit then add_limits(ex, s) end
  add_end(ex, s)
  return ex
end

return M
