--- What a host sends (methods of the remote executor): the login's
-- banner skipped up to wire.MARK, frames checked by wire.answer, the
-- hello, then answers and heartbeats. Anything that fails a check fails
-- the host (remote/session.lua), never the run.

local core = require "luaconcurrent.core"
local wire = require "luaconcurrent.remote.wire"

local now = core.now

local M = {}

function M.install(Remote, trace)

function Remote:on_data(h, data)
  if h.why then return end         -- failing: nothing more it says counts
  if h.state == "connecting" and not h.skipper.banner then
    data = h.skipper.feed(data)
    if not data then
      -- A hello frame without the mark: a worker of an older protocol.
      if h.skipper.text():find("\5\0\0\0hello", 1, true) then
        self:refuse(h, "its worker speaks an older protocol than " .. wire.PROTOCOL
          .. " (install the same luaconcurrent on both ends)")
      end
      return
    end
    if h.skipper.banner ~= "" then trace(h, "skipped %d bytes before the hello", #h.skipper.banner) end
  end
  local frames = {}
  local why = h.read(data, frames)
  for _, blob in ipairs(frames) do
    if h.why then return end       -- failed on an earlier frame
    local f, bad = wire.answer(blob)
    if not f then return self:fail_host(h, "protocol error: " .. bad) end
    self:on_frame(h, f)
  end
  if why then self:fail_host(h, "protocol error: " .. why) end
end

function Remote:on_frame(h, f)
  local what = f[1]
  h.last_heard = now()
  if what == "hello" then
    if h.state ~= "connecting" then return self:fail_host(h, "protocol error: a second hello") end
    self:on_hello(h, f)
  elseif h.state == "connecting" then
    if what == "refuse" then return self:refuse(h, "refused: " .. f[2]) end
    self:fail_host(h, "protocol error: a " .. what .. " frame before the hello")
  elseif what == "bye" then
    self:fail_host(h, f[2])
  elseif wire.RESULT[what] then
    local t = h.running[f[2]]
    if not t then return self:fail_host(h, "protocol error: an answer for task id " .. f[2] .. ", not one it holds") end
    self:on_result(h, t, f)
  end
end

function Remote:on_hello(h, f)
  if f[2] ~= wire.PROTOCOL then
    return self:refuse(h, "its worker speaks protocol " .. f[2] .. ", this side " .. wire.PROTOCOL
      .. " (install the same luaconcurrent on both)")
  end
  h.mode, h.ncpu = f[6], math.tointeger(tonumber(f[3]))
  h.version, h.lua_version, h.bytecode = f[7], f[4], f[8]
  if h.slurm then h.name = require("luaconcurrent.remote.slurm").node_name(f[9]) end
  if self.is_fn then
    local why = self:fn_refusal(h)
    if why then return self:refuse(h, why) end
    self:send(h, wire.line({ "L", core.marshal_retag(self.fn_bytes, h.down) }))
  end
  self:note_handshake(h)
  h.state, h.ever_up, h.healthy_since = "up", true, now()
  h.slots_now = h.slots or (h.slots_rule and h.slots_rule(h.ncpu)) or h.ncpu
  -- Engine mode runs slots_now tasks at once and holds as many more,
  -- sent ahead: the next starts without waiting for a round trip.
  h.cap = h.slots_now
  if h.mode == "engine" then
    h.cap = h.slots_now * self.PREFETCH
    self:send(h, wire.line({ "S", tostring(h.slots_now), self.cfg.halts and "halts" or "" }))
  end
  trace(h, "up: mode %s%s, %s cpus, %d slots", h.mode,
    h.mode == "engine" and (" (luaconcurrent " .. h.version .. ")") or "", h.ncpu, h.slots_now)
  self:update_capacity()
  self:pump_connects()
  self:dispatch()
end

end

return M
