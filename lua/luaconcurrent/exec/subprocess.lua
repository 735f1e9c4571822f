--- Executor: one subprocess per task (pargs[1] is a program).
--
-- The smallest executor, and the one to read first when writing another:
-- it starts a task, takes the engine records that are its own, cancels a
-- task on request and hands back what it still holds when the run stops.
-- The interface is written down in executors.lua.
--
-- Timeouts are the engine's: the process group gets SIGTERM at the
-- deadline and SIGKILL kill_grace seconds later, and the record says so.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"

local M = {}

local function append_arg(argv, n, arg)
  if arg == nil then return end
  if type(arg) == "table" then
    for i = 1, #arg do argv[n + i] = tostring(arg[i]) end
  else
    argv[n + 1] = tostring(arg)
  end
end

--- cfg: the runner's settings (read only); loop: the run's engine loop;
-- finish(index, res): report a task's one result; live(index, key, data,
-- is_stderr), when given: output as it arrives (output = "lines").
function M.new(cfg, loop, finish, live)
  local prefix = {}
  for i, v in ipairs(cfg.pargs) do prefix[i] = tostring(v) end
  local nprefix = #prefix
  local timeout, grace, cwd, input = cfg.timeout, cfg.kill_grace, cfg.cwd, cfg.input
  local envblock = cfg.envblock
  local inflight = {}       -- [process id] = { index, key, arg, why }
  local by_index = {}       -- [index] = process id, for cancel

  -- It holds no task ahead: every task it holds runs.
  local ex = { capacity = cfg.slots, concurrency = cfg.slots }

  local function argv_of(arg)
    local argv = { table.unpack(prefix, 1, nprefix) }
    append_arg(argv, nprefix, arg)
    return argv
  end

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
    inflight[id] = { index, key, arg }
    by_index[index] = id
  end

  local function result_of(t, rec)
    local res = ProcResult.from_record(t[2], t[3], rec)
    if t[4] and not res.success and not res.timeout then ProcResult.interrupt(res, t[4]) end
    return res
  end

  function ex:record(rec)
    local t = inflight[rec.id]
    if not t then return false end
    if rec.data then return true, live(t[1], t[2], rec.data, rec.stderr == true) end
    if live then
      if rec.live_stdout ~= "" then live(t[1], t[2], rec.live_stdout, false) end
      if rec.live_stderr ~= "" then live(t[1], t[2], rec.live_stderr, true) end
    end
    inflight[rec.id], by_index[t[1]] = nil, nil
    finish(t[1], result_of(t, rec))
    return true
  end

  --- Kill one task's process group; its record still comes, and the
  -- result says why.
  function ex:cancel(index, why)
    local id = by_index[index]
    if id and loop:kill(id) then inflight[id][4] = why end
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

  function ex:close() end

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
