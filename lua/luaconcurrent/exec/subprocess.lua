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

--- cfg: the runner's settings (read only); loop: the run's engine loop;
-- finish(index, res): report a task's one result; live(index, key, data,
-- is_stderr), when given: output as it arrives (output = "lines").
function M.new(cfg, loop, finish, live)
  local prefix = argvlib.words(cfg.pargs)
  local timeout, grace, cwd, input = cfg.timeout, cfg.kill_grace, cfg.cwd, cfg.input
  local envblock = cfg.envblock
  local inflight = {}       -- [process id] = { index, key, arg, why }
  local by_index = {}       -- [index] = process id, for cancel

  -- It holds no task ahead: every task it holds runs.
  local ex = { capacity = cfg.slots, concurrency = cfg.slots }
  local time_limit, alarm, alarm_at = cfg.time_limit, nil, nil

  local function argv_of(arg) return argvlib.of(prefix, arg) end

  --- For verb = true: the command line.
  function ex:describe(_, arg)
    return table.concat(argv_of(arg), " ")
  end

  function ex:start(index, key, arg)
    local argv = argv_of(arg)
    local id, message, errname = loop:spawn(argv, envblock, cwd, input, timeout, grace,
      live and "live" or false, cfg.max_capture)
    if not id then
      return finish(index, ProcResult.spawn_failure(key, arg, message, errname, core.wallclock()))
    end
    inflight[id] = { index, key, arg, nil, time_limit and core.now() }
    by_index[index] = id
  end

  local function result_of(t, rec)
    if t[4] == "time_limit" then
      rec.interrupted, rec.timeout, rec.limit, t[4] = nil, true, t[6], nil
    end
    local res = ProcResult.from_record(t[2], t[3], rec)
    if t[4] and not res.success and not res.timeout then ProcResult.interrupt(res, t[4]) end
    return res
  end

  function ex:record(rec)
    if rec.id == alarm then alarm, alarm_at = nil, nil; return true end
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

  -- time_limit's deadlines: a task past its limit gets TERM, then KILL
  -- after kill_grace, as at the engine's own deadline; the next one due
  -- arms the alarm.
  if time_limit then
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
      if first ~= alarm_at then
        if alarm then loop:cancel_timer(alarm) end
        alarm, alarm_at = nil, nil
        if first < math.huge then alarm, alarm_at = loop:timer(first), first end
      end
      return false
    end
  end

  --- Every task it holds is running (counted when asked: a start pays
  -- nothing for it).
  function ex:running()
    local n = 0
    for _ in pairs(inflight) do n = n + 1 end
    return n
  end

  --- Nothing to hold: a task starts as it is handed over.
  function ex:hold() end

  function ex:close()
    if alarm then loop:cancel_timer(alarm); alarm, alarm_at = nil, nil end
  end

  --- The run is over; records are the loop's last ones (its processes
  -- killed and reaped). Every task still held gets its result.
  function ex:stop(records)
    for _, rec in ipairs(records) do ex:record(rec) end
    for id, t in pairs(inflight) do
      inflight[id] = nil
      finish(t[1], ProcResult.not_started(t[2], t[3], "running"))
    end
  end

  return ex
end

return M
