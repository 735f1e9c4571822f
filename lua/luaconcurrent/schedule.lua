--- The scheduler's state: one object per run_all, shared by the
-- scheduler (runner.lua), the reporter (report.lua: the executor's finish
-- and the callbacks) and run control (control.lua, control/progress.lua).
-- Every field is declared in new() below, grouped by the one part that
-- writes it; the others only read it. An executor never sees it.

local core = require "luaconcurrent.core"

local signal_pending, hup_pending = core.signal_pending, core.hup_pending

local M = {}

local State = {}
State.__index = State
M.State = State

--- run: the runner (its settings, run.result); loop: the run's engine loop.
function M.new(run, loop)
  return setmetatable({
    -- The scheduler's (runner.lua), set up before the loop starts.
    run = run,
    loop = loop,
    ctl = nil,            -- run control, or nil when the run asks for none
    ex = nil,             -- the executor
    seen = {},            -- keys of unfinished tasks (an iterator's checks)
    direct = false,       -- nothing comes between two starts (report.lua says)
    -- The scheduler's, as the run goes on.
    last_index = 0,       -- the highest task index taken from the source
    inflight = 0,         -- tasks handed to the executor, not yet finished
                          -- (+1 at each start; report.lua's finish: -1)
    exhausted = false,    -- no task is taken from the source any more
    hup = false,          -- SIGHUP asked the run to finish its running tasks
    halted = nil,         -- the halt policy (a string) once the run halted
    stopping = false,     -- run_all is stopping on an error
    active = {},          -- [index] = true, started tasks (with run control:
                          -- halt = "now" cancels them)
    -- Tasks to run again (retries): entries { index, key, arg, res }.
    -- Taken by the scheduler; added by report.lua's finish.
    again = {},           -- to start now, in order
    delayed = {},         -- [timer id] = entry, waiting out retry_delay
    ndelayed = 0,
    -- The reporter's (report.lua).
    total = run.ntasks,   -- tasks in the run, or nil while an iterator goes
                          -- on (the scheduler sets it when the source ends)
    done = 0,             -- final results reported
    ok = true,            -- every result so far a success
    pending = {},         -- results stored, not yet reported: index, res, ...
    npending = 0, phead = 1,  -- pending's end, and the next one to report
    in_callback = false,  -- a callback is running (its error stops the run)
    quiet = false,        -- a callback raised: none is called again
    store = nil, finish = nil, flush = nil,   -- its functions (report.new)
    -- Run control's (control.lua).
    failed = nil,         -- failed tasks so far
  }, State)
end

--- Signals (when handled: the executable, or lc.handle_signals()):
-- SIGINT/SIGTERM stop the run; SIGHUP starts no new task.
function State:check_signals()
  local sig = signal_pending()
  if sig then error("luaconcurrent: interrupted by " .. sig, 0) end
  if not self.exhausted and hup_pending() then self.exhausted, self.hup = true, true end
end

--- The next task to start: one to run again, else the source's next.
function State:next_task(source)
  if self.again[1] ~= nil then
    local t = table.remove(self.again, 1)
    return t[1], t[2], t[3]
  end
  if self.exhausted then return nil end
  return source()
end

--- A retry's timer fired: its task is to start now. False if id is not
-- one of them.
function State:timer_fired(id)
  local again = self.delayed[id]
  if not again then return false end
  self.delayed[id], self.ndelayed = nil, self.ndelayed - 1
  self.again[#self.again + 1] = again
  return true
end

--- The run halts (run control said so after a result): no task starts
-- any more; with mode "now" the running ones are cancelled too.
function State:halt(mode)
  local run, ctl, ex = self.run, self.ctl, self.ex
  self.exhausted, self.halted, run.halted = true, run.halt, run.halt
  -- Tasks waiting to run again (retry_delay) do not: their last attempt
  -- is their result.
  ctl:halt_retries(self.loop, self.again, self.delayed, self.store)
  self.again, self.delayed, self.ndelayed = {}, {}, 0
  -- Tasks handed to the executor ahead of their start do not start now.
  ex:hold("not started: the run halted (halt = " .. run.halt .. ")")
  if mode == "now" then
    for index in pairs(self.active) do ex:cancel(index, "halted: " .. run.halt) end
  end
end

--- The tasks running now, as the executor counts them (it may hold more
-- ahead of their start).
function State:running()
  return self.ex and self.ex:running() or 0
end

--- How many tasks the executor runs at once (math.huge: no limit).
function State:concurrency()
  return self.ex and self.ex.concurrency or 0
end

--- A line on stderr (verb = true).
function M.log(fmt, ...)
  io.stderr:write("luaconcurrent: ", string.format(fmt, ...), "\n")
end

return M
