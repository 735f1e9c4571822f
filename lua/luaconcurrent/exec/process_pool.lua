--- exec/processes' pool of worker processes (methods of its Processes,
-- exec/processes.lua): the queue of tasks not handed over, a worker's
-- start (its head and keys), its end, its kill, and its task's deadline.

local core = require "luaconcurrent.core"

local now = core.now
local marshal_keyed, spack = core.marshal_keyed, string.pack

local P = {}

function P:push(task)
  local qt = self.qt + 1
  self.qt, self.queue[qt] = qt, task
end

-- Give back w's tasks from position from on (never started), in order,
-- in front of the queue; w holds none after.
function P:give_back(w, from)
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

-- Its head: its keys (down, up), package.path and cpath, the task
-- function; all it is sent is tagged with its down-key.
local function head(id, fn_bytes)
  local down, up = core.marshal_worker_keys(id)
  return down, up, spack("<s4s4s4", down .. up,
    marshal_keyed(down, nil, package.path, package.cpath), core.marshal_retag(fn_bytes, down))
end

function P:spawn()
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
function P:retire(w)
  if not w.dead then
    w.dead = true
    self.nlive = self.nlive - 1
  end
  self:disarm(w)
end

-- Kill w now: its running task (if any) is returned, the others it holds
-- go back to the queue.
function P:kill(w)
  local task = w.started and w.q[w.qh] or nil
  self:retire(w)
  w.killed = true
  self.loop:kill(w.id)
  self:give_back(w, task and w.qh + 1 or w.qh)
  return task
end

function P:arm(w, t_start)
  if self.timeout <= 0 then return end
  -- The start is the worker's word: one in the future (or NaN) would put
  -- the deadline off, so it is now at the latest.
  local t = now()
  if not (t_start <= t) then t_start = t end  -- luacheck: ignore 581 (not <=: true for NaN too)
  self:disarm(w)
  w.t_start = t_start
  w.timer = self.loop:timer(t_start + self.timeout)
  self.timers[w.timer] = w
end

function P:disarm(w)
  if w.timer then
    self.timers[w.timer] = nil
    self.loop:cancel_timer(w.timer)
    w.timer = nil
  end
end
return P
