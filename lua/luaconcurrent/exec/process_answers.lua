--- exec/processes' answers (methods of its Processes, exec/processes.lua):
-- what a worker process sends back, read as data under its up-key and
-- checked for shape before use; a worker's end and what it left; and
-- what is refused (the worker is ended, its task fails saying why).

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local frame_reader = require("luaconcurrent.frames").reader

local now = core.now
local unmarshal_data = core.unmarshal_data
local setmetatable, pcall = setmetatable, pcall
local tunpack = table.unpack

local P = {}

-- Each message's values after its name (worker.lua's header), as
-- core.data_is patterns: anything else is refused.
local data_is = core.data_is
local SHAPES = { start = "sf", ok = "sffbsi..", error = "sffbss" }

-- An answer frame from w, as unmarshalled (n values: what ...): a start,
-- or the answer of the task it runs.
function P:answered(w, n, what, t0, t1, more, a, b, c, d)
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
  if not task.cancelled then self.finish(task[1], res, what, t0, t1, more, a, b, c, d) end
  -- Held (halt): the tasks it holds next must not run; it goes.
  if self.held and w.qh <= w.qt and not w.dead then self:kill(w) end
end

-- w sent what the runner does not take: a frame that fails its check,
-- carries code or breaks a cap, or an answer of the wrong shape. It is a
-- failure of w, not of the run: w is killed, the task it was on fails
-- with why, the tasks it held that never started go to other workers.
function P:refused(w, why, text)
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

-- A frame from w that makes no sense ends w, which the engine already
-- does: nothing after it can be trusted. The task it runs fails saying
-- so; the ones it holds go to another worker. A length over max_answer
-- says which limit (an honest task can reach it); a frame that fails its
-- check or the data decoder (junk a task wrote into the answer pipe, a
-- forgery) is refused as any other answer the runner does not take.
function P:broken(w, rec)
  if not rec.size then return self:refused(w, rec.error) end
  local why = string.format("the worker's answer frame says %d bytes, over "
    .. "the limit of %d (the max_answer option)", rec.size, rec.limit)
  return self:refused(w, why, why .. "; the worker process was stopped")
end

-- The whole frames in the bytes a worker left when it ended (the engine
-- hands the others over one frame a record).
function P:read_rest(w, data)
  local blobs = {}
  frame_reader()(data, blobs)
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
function P:ended(w, rec)
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
return P
