--- The engine-mode remote worker's function tasks (methods of its Worker,
-- remote/engine_worker.lua): each runs on a process worker
-- (`luaconcurrent --worker`, the local isolation = "process" protocol),
-- one per slot, reused. A process worker gets keys of its own, derived
-- from this host's (down for what it is sent, up for what it answers);
-- its answers are read as data and passed on under the host's up-key.
-- At a task's deadline its process worker is killed (a task stuck in a C
-- call ends too) and the answer is ftimeout.

local core = require "luaconcurrent.core"
local worker = require "luaconcurrent.worker"

local now = core.now

local M = {}

-- A process worker's frame that says it starts a task (worker.lua):
-- small, and not an answer. Returns its start time, or nil.
local function start_of(blob, up)
  if #blob > 64 then return nil end
  local ok, what, t0 = pcall(core.unmarshal_data, blob, { key = up })
  return ok and what == "start" and t0 or nil
end

function M.install(Worker)

function Worker:drop_idle(w)
  local idle = self.idle
  for k = #idle, 1, -1 do if idle[k] == w then table.remove(idle, k) end end
end

-- w's task is over (answered, timed out, cancelled or died): its slot is free.
function Worker:fn_over(w)
  self:disarm(w)
  self.by_tid[w.tid], w.tid = nil, nil
  self.nrun = self.nrun - 1
end

function Worker:disarm(w)
  if w.timer then
    self.deadlines[w.timer] = nil
    self.loop:cancel_timer(w.timer)
    w.timer = nil
  end
end

-- w's answer frames: each finishes w's task (one at a time here).
function Worker:answers(w, data)
  local blobs = {}
  w.read(data, blobs)
  for _, blob in ipairs(blobs) do
    local t0 = w.tid and start_of(blob, w.up)
    if t0 then
      if w.limit > 0 then
        w.t0, w.timer = t0, self.loop:timer(t0 + w.limit)
        self.deadlines[w.timer] = w
      end
    elseif w.tid then
      -- Read as data under the process worker's key, passed on under ours.
      local v = table.pack(pcall(core.unmarshal_data, blob, { key = w.up }))
      if v[1] then
        self:send("fdone", w.tid, self:data(table.unpack(v, 2, v.n)))
      else
        self:send("fdied", w.tid, "the worker process's answer was refused: " .. tostring(v[2]))
      end
      self:fn_over(w)
      if self.workers[w.id] then self.idle[#self.idle + 1] = w end
    end
  end
end

-- w's task passed its deadline: as locally, its worker process is killed
-- (a task stuck in a C call ends too) and the answer is final now.
function Worker:expired(w)
  w.timer = nil
  if not w.tid then return end
  self:send("ftimeout", w.tid, string.format("%.17g", now() - w.t0))
  self:fn_over(w)
  self.loop:kill(w.id)
end

function Worker:worker_ended(w, rec)
  self.workers[w.id] = nil
  self:drop_idle(w)
  if rec.stdout and rec.stdout ~= "" then self:answers(w, rec.stdout) end
  if w.tid then
    local why = rec.signal and string.format("killed by signal %d (%s)", rec.signal, tostring(rec.signal_name))
      or string.format("exited with status %s", tostring(rec.returncode))
    self:send("fdied", w.tid, "the worker process ended without answering: " .. why)
    self:fn_over(w)
  end
end

--- A new process worker for function task tid (F message m); nil if it
-- cannot start (the task is answered fdied).
function Worker:spawn_worker(m, tid, cwd, nenv)
  -- Its own keys, derived from ours (it never sees ours either).
  self.nworkers = (self.nworkers or 0) + 1
  local down, up = core.marshal_worker_keys(self.nworkers)
  local head = string.pack("<s4s4s4", down .. up, core.marshal_keyed(down, nil, package.path, package.cpath),
    core.marshal_retag(self.fn_bytes, down))
  local id, msg = self.loop:spawn({ self.exe, "--worker" }, self:envblock(m, 6, nenv), cwd ~= "" and cwd or nil,
    head, 0, 0, true)
  if not id then
    self:send("fdied", tid, "cannot start a worker process: " .. tostring(msg))
    return nil
  end
  local w = { id = id, read = worker.reader(), down = down, up = up }
  self.workers[id] = w
  return w
end

function Worker:run_fn(m)
  local tid, limit, cwd, nenv = m[2], tonumber(m[3]) or 0, m[4], tonumber(m[5])
  local blob = m[6 + nenv]
  if not self.fn_bytes then
    self:send("fdied", tid, "no task function was sent")
    return
  end
  local w = table.remove(self.idle) or self:spawn_worker(m, tid, cwd, nenv)
  if not w then return end
  w.tid, w.limit = tid, limit
  self.by_tid[tid] = w
  self.nrun = self.nrun + 1
  -- A task frame of one task (worker.lua): count 1, no wrap, key and args.
  local ok, tagged = pcall(core.marshal_retag, blob, w.down)
  if not ok then
    self:send("fdied", tid, "the task's frame was refused: " .. tostring(tagged))
    self:fn_over(w)
    self.idle[#self.idle + 1] = w
    return
  end
  self.loop:write(w.id, string.pack("<s4", string.pack("<I4", 1) .. "\0" .. tagged))
end

end

return M
