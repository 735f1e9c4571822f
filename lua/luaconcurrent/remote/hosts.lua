--- Host specifications for remote execution: GNU parallel's strings
-- ("4/user@host:2222", "host", ":" for this machine, and its ssh command
-- forms "ssh -p 2222 user@host", "/path/to/ssh user@host") and the table
-- form {host=, user=, port=, slots=, ssh_options=, lua=, luaconcurrent=,
-- env=, heartbeat=, connect_timeout=, hello_timeout=, max_frame=}; a host
-- file (one string a line, `#` comments) through M.read_file. A table with
-- slurm = true is one host per slot, each a job step (remote/slurm.lua).
-- Host, user and port are checked here: they reach ssh's command line.

local wire = require "luaconcurrent.remote.wire"

local M = {}

local function fail(fmt, ...) error("luaconcurrent: " .. string.format(fmt, ...), 0) end

M.words = wire.words
local words = wire.words

M.HEARTBEAT = 5          -- seconds between heartbeats (a host's heartbeat=)
M.CONNECT_TIMEOUT = 10   -- ssh's ConnectTimeout (a host's connect_timeout=)
M.HELLO_AFTER = 20       -- the hello deadline: connect_timeout + this

-- "ssh -p 2222 user@host" / "/usr/bin/ssh -i key user@host": the words
-- before the destination are ssh's options.
local function ssh_command(h, s, i)
  local w = words(s)
  if #w < 2 or not (w[1] == "ssh" or w[1]:match("/ssh$")) then
    fail("hosts[%d] %q is not a host (expected [N/][user@]host[:port], or \"ssh [options] [user@]host\")", i, s)
  end
  h.ssh = w[1]
  h.ssh_options = {}
  local k = 2
  while k < #w do
    if w[k] == "-p" then h.port = tonumber(w[k + 1]); k = k + 2
      if not h.port then fail("hosts[%d] %q: -p needs a port number", i, s) end
    elseif w[k] == "-l" then h.user = w[k + 1]; k = k + 2
    else h.ssh_options[#h.ssh_options + 1] = w[k]; k = k + 1 end
  end
  if k ~= #w then fail("hosts[%d] %q: the last word must be the host", i, s) end
  return w[#w]
end

--- GNU parallel's -j forms relative to a CPU count: "N%" of the CPUs,
-- "+N" or "-N" CPUs, never below 1. Returns function(cpus) -> slots, or
-- nil when s is none of them.
function M.cpu_rule(s)
  if type(s) ~= "string" then return nil end
  local pct = s:match("^(%d+%.?%d*)%%$")
  if pct then
    return function(cpus) return math.max(1, math.floor(cpus * tonumber(pct) / 100)) end
  end
  local sign, n = s:match("^([+-])(%d+)$")
  if sign then
    local d = (sign == "+" and 1 or -1) * tonumber(n)
    return function(cpus) return math.max(1, math.tointeger(cpus + d)) end
  end
end

-- GNU parallel's string form -> a host table (not yet checked).
local function parse_string(spec, i)
  local s = spec:match("^%s*(.-)%s*$")
  local h = {}
  local n, rest = s:match("^(%d+)/(.*)$")
  if n then h.slots, s = tonumber(n), rest end
  if s:find("%s") then s = ssh_command(h, s, i) end
  if s == ":" then
    h.host = ":"
    return h
  end
  -- "[user@]host[:port]"; an IPv6 literal goes in brackets.
  local user, r = s:match("^(.+)@([^@]+)$")
  if user then h.user, s = user, r end
  local v6, port6 = s:match("^%[(.+)%]:?(%d*)$")
  if v6 then
    h.host, h.port = v6, tonumber(port6) or h.port
  else
    local host, port = s:match("^([^:]+):(%d+)$")
    h.host, h.port = host or s, tonumber(port) or h.port
  end
  return h
end

-- Where the session goes (host, user, port: they reach ssh's command
-- line) and its slots.
local function check_target(h, i)
  if type(h.host) ~= "string" or h.host == "" then fail("hosts[%d] has no host", i) end
  -- slots relative to the host's CPUs ("50%", "+1", "-1") are worked out
  -- at the handshake, when its CPU count is known.
  h.slots_rule = h.slots_rule or M.cpu_rule(h.slots)
  if h.slots_rule then h.slots = nil end
  if h.slots ~= nil and (math.type(h.slots) ~= "integer" or h.slots < 1) then
    fail("hosts[%d].slots must be a positive integer, or N%%, +N or -N of its CPUs", i)
  end
  if h.host ~= ":" and not (h.host:match("^[%w_][%w%.%-_]*$") or h.host:match("^[%x:]+:[%x:%.]*$")) then
    fail("hosts[%d]: %q is not a host name or address (letters, digits, '.', '-', '_'; an IPv6 address in [])",
      i, h.host)
  end
  if h.user ~= nil and (type(h.user) ~= "string" or not h.user:match("^[%w_][%w%.%-_]*%$?$")) then
    fail("hosts[%d]: %q is not a user name (letters, digits, '.', '-', '_')", i, tostring(h.user))
  end
  if h.port ~= nil and (math.type(h.port) ~= "integer" or h.port < 1 or h.port > 65535) then
    fail("hosts[%d].port must be an integer from 1 to 65535, got %s", i, tostring(h.port))
  end
end

local function positive(h, k, i)
  if h[k] ~= nil and (type(h[k]) ~= "number" or not (h[k] > 0)) then  -- luacheck: ignore 581 (refuses NaN)
    fail("hosts[%d].%s must be a positive number of seconds", i, k)
  end
end

-- The session's settings.
local function check_settings(h, i)
  for _, k in ipairs({ "connect_timeout", "hello_timeout", "heartbeat" }) do positive(h, k, i) end
  if h.max_frame ~= nil and (math.type(h.max_frame) ~= "integer" or h.max_frame < 1024) then
    fail("hosts[%d].max_frame must be an integer of at least 1024 (bytes)", i)
  end
  if h.ssh_options ~= nil and type(h.ssh_options) ~= "table" then
    fail("hosts[%d].ssh_options must be a list of strings (or one string)", i)
  end
  for k, o in ipairs(h.ssh_options or {}) do
    if type(o) ~= "string" then fail("hosts[%d].ssh_options[%d] must be a string", i, k) end
  end
  if h.env ~= nil and type(h.env) ~= "table" then fail("hosts[%d].env must be a table", i) end
  if h.lua ~= nil and type(h.lua) ~= "string" then fail("hosts[%d].lua must be a string", i) end
  if h.luaconcurrent ~= nil and h.luaconcurrent ~= false
    and (type(h.luaconcurrent) ~= "string" or h.luaconcurrent == "") then
    fail("hosts[%d].luaconcurrent must be a path (or false: always the plain-Lua worker)", i)
  end
end

--- One host spec (string or table) -> normalised table.
function M.parse(spec, i)
  local h
  if type(spec) == "string" then
    h = parse_string(spec, i)
  elseif type(spec) == "table" then
    h = {}
    for k, v in pairs(spec) do h[k] = v end
    if type(h.ssh_options) == "string" then h.ssh_options = words(h.ssh_options) end
  else
    fail("hosts[%d] must be a string or a table, got %s", i, type(spec))
  end
  check_target(h, i)
  check_settings(h, i)
  h.lua = h.lua or "lua5.4"
  h.heartbeat = h.heartbeat or M.HEARTBEAT
  h.connect_timeout = h.connect_timeout or M.CONNECT_TIMEOUT
  h.hello_timeout = h.hello_timeout or (h.connect_timeout + M.HELLO_AFTER)
  h.max_frame = h.max_frame or wire.FRAME_MAX
  h.name = h.host == ":" and ":" or ((h.user and h.user .. "@" or "") .. h.host .. (h.port and ":" .. h.port or ""))
  return h
end

--- The hosts option -> list of normalised hosts; default_slots (the run's
-- num_workers) for those that name no slots.
function M.list(hosts, default_slots)
  if type(hosts) == "string" then hosts = { hosts } end
  if type(hosts) ~= "table" or #hosts == 0 then fail("hosts must be a non-empty list") end
  local t = {}
  for i, spec in ipairs(hosts) do
    if type(spec) == "table" and spec.slurm then
      local slurm = require("luaconcurrent.remote.slurm")
      for _, h in ipairs(slurm.expand(spec, i, M.parse, default_slots)) do t[#t + 1] = h end
    else
      local h = M.parse(spec, i)
      if not (h.slots or h.slots_rule) then h.slots = default_slots end
      t[#t + 1] = h
    end
  end
  return t
end

--- A host file: one spec a line, `#` comments, blank lines skipped.
function M.read_file(path)
  local f, err = io.open(path, "r")
  if not f then fail("cannot read host file: %s", err) end
  local t = {}
  for line in f:lines() do
    line = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
    if line ~= "" then t[#t + 1] = line end
  end
  f:close()
  return t
end

return M
