--- Where a task runs, and what becomes of it when its host fails (methods
-- of the remote executor, remote/executor.lua).
--
-- A task goes to the up host with the most free room, avoiding hosts it
-- was lost or failed on. A task whose session is lost goes back to the
-- front of the queue, unless: it was cancelled (its result says why), it
-- is past its deadline (final: timed out, not run again), or it has been
-- lost MAX_LOST times (a task that kills its host's worker does not loop:
-- a ConnectionError naming the hosts and why each session ended). Each
-- send starts a fresh attempt: nothing of an earlier one (timed_out, a
-- cancel sent) carries over.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
local results = require "luaconcurrent.remote.results"
local wire = require "luaconcurrent.remote.wire"

local now = core.now

local M = {}

M.MAX_LOST = 2          -- sessions a task may lose before it fails

function M.install(Remote)

-- A host a task avoids (it failed or was lost there) is used only when
-- no other host is up or coming up.
local HOPEFUL = { up = true, want = true, connecting = true }

function Remote:pick(t)
  local avoid = t.avoid
  local strict = false
  if avoid then
    for _, h in ipairs(self.hosts) do
      if HOPEFUL[h.state] and not avoid[h.uid] then strict = true; break end
    end
  end
  local best, best_free
  for _, h in ipairs(self.hosts) do
    if h.state == "up" and not h.why and not (strict and avoid[h.uid]) then
      local free = h.cap - h.nrunning
      if free > 0 and (not best or free > best_free) then best, best_free = h, free end
    end
  end
  return best
end

function Remote:dispatch()
  local queue = self.queue
  local i = 1
  while i <= #queue do
    local h = self:pick(queue[i])
    if h then
      self:send_task(table.remove(queue, i), h)
    elseif not queue[i].avoid then
      break           -- no room anywhere: neither for those behind it
    else
      i = i + 1
    end
  end
  -- Nothing can ever run them: every host is gone for good.
  if #queue > 0 and self:all_bad() then self:fail_queued() end
end

function Remote:all_bad()
  for _, h in ipairs(self.hosts) do if h.state ~= "bad" then return false end end
  return true
end

function Remote:fail_queued()
  local queue = self.queue
  local why, said = {}, {}
  for _, h in ipairs(self.hosts) do
    local text = h.name .. ": " .. tostring(h.error)
    if not said[text] then said[text] = true; why[#why + 1] = text end
  end
  while #queue > 0 do
    local t = table.remove(queue, 1)
    self.tasks[t.index] = nil
    local res = ProcResult.new(t.key, t.arg)
    res.exception, res.error = "ConnectionError", "no host can run it (" .. table.concat(why, "; ") .. ")"
    self.finish(t.index, res)
  end
end

--- t's attempt is over (its result came, or its host was lost).
function Remote:end_attempt(t)
  local h = t.host
  if h and h.running[t.tid] == t then h.running[t.tid], h.nrunning = nil, h.nrunning - 1 end
  if t.timer then self.timers[t.timer] = nil; self.loop:cancel_timer(t.timer) end
  t.host, t.tid, t.timer, t.timed_out, t.cancel_sent = nil, nil, nil, nil, nil
end

--- t's one result.
function Remote:final(t, res, h)
  self:end_attempt(t)
  self.tasks[t.index] = nil
  if h then res.host, res.remote_mode = res.host or h.name, h.mode end
  self.finish(t.index, res)
end

function Remote:send_task(t, h)
  self.next_tid = self.next_tid + 1
  local tid = tostring(self.next_tid)
  t.host, t.tid, t.t0, t.timed_out, t.cancel_sent = h, tid, now(), nil, nil
  h.running[tid], h.nrunning = t, h.nrunning + 1
  local kind = self.is_fn and "F" or (h.mode == "engine" and "X" or "R")
  self:send(h, wire.task(kind, tid, self.timeout, self.cfg.cwd, self.cfg.input, self:env_of(h),
    self.is_fn and core.marshal_retag(t.blob, h.down) or t.argv))
  if self.timeout > 0 then
    -- Plain mode: this is the clock. Engine mode and function tasks: the
    -- remote engine keeps the deadline, this is the backstop.
    local local_clock = not self.is_fn and h.mode ~= "engine"
    self:at_task(t, t.t0 + (local_clock and self.timeout or self:backstop()), function()
      if local_clock then
        t.timed_out = true
        self:cancel_attempt(t, "timed out")
      else
        t.timed_out = true
        self:give_up_attempt(t, "did not answer")
      end
    end)
  end
end

-- A timer of t's current attempt (one at a time).
function Remote:at_task(t, when, fn)
  if t.timer then self.timers[t.timer] = nil; self.loop:cancel_timer(t.timer) end
  local tid = t.tid
  t.timer = self.loop:timer(when)
  self.timers[t.timer] = function()
    t.timer = nil
    -- (A host already failing: the end of its session decides.)
    if t.tid == tid and t.host and not t.host.why then fn() end
  end
end

function Remote:backstop() return 2 * (self.timeout + self.grace) + 5 end

--- Ask t's host to end it (K); a host that has not answered within the
-- grace and ESCALATE seconds more is failing: t's result is final now
-- (timed out or interrupted) and the host's session is killed.
function Remote:cancel_attempt(t)
  local h = t.host
  if not t.cancel_sent then
    t.cancel_sent = true
    self:send(h, wire.line({ "K", t.tid }))
  end
  self:at_task(t, now() + self.grace + self.ESCALATE, function()
    self:give_up_attempt(t, "did not end a cancelled task")
  end)
end

function Remote:give_up_attempt(t, why)
  local h = t.host
  self.trace(h, "no answer from a %s task %.1f s after its %s: lost", self.is_fn and "function" or "subprocess",
    now() - t.t0, t.timed_out and "deadline" or "cancel")
  local res
  if t.timed_out then
    res = results.fn_timed_out(t, self.timeout, nil, "its host " .. why)
  else
    res = ProcResult.interrupt(results.timed(ProcResult.new(t.key, t.arg), t), t.why or "interrupted")
  end
  self:final(t, res, h)
  self:fail_host(h, why)
  self:dispatch()
end

--- h's session is over: what it ran goes back, or ends (see the top).
function Remote:requeue(h)
  local back = {}
  for _, t in pairs(h.running) do back[#back + 1] = t end
  table.sort(back, function(a, b) return a.index < b.index end)
  local t_now = now()
  for i = #back, 1, -1 do
    local t = back[i]
    -- (Engine mode: a task sent ahead may not have started there; only
    -- the backstop says it is past.)
    local past = self.timeout > 0 and (t.timed_out
      or (not self.is_fn and h.mode ~= "engine" and t_now - t.t0 >= self.timeout))
    if t.why then   -- cancelled meanwhile: it is over
      self:final(t, ProcResult.not_started(t.key, t.arg, t.why), h)
    elseif t.held then
      self:final(t, ProcResult.not_started(t.key, t.arg, t.held), h)
    elseif past then
      self:final(t, results.fn_timed_out(t, self.timeout, nil, "its host's session ended: " .. h.error), h)
    else
      self:end_attempt(t)
      t.lost = t.lost or {}
      t.lost[#t.lost + 1] = h.name .. " (" .. h.error .. ")"
      t.avoid = t.avoid or {}
      t.avoid[h.uid] = true
      if #t.lost >= M.MAX_LOST then
        local res = ProcResult.new(t.key, t.arg)
        res.exception = "ConnectionError"
        res.error = string.format("its host's session was lost %d times, giving up: %s", #t.lost,
          table.concat(t.lost, "; "))
        self:final(t, res, h)
      else
        table.insert(self.queue, 1, t)
      end
    end
  end
  h.running, h.nrunning = {}, 0
end

end

return M
