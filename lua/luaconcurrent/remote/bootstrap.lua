--- How a host's worker is started: the command line (ssh, srun, or `sh -c`
-- for ":") and the head its stdin gets.
--
-- The remote command execs `luaconcurrent --remote-worker` where the host
-- has it (the host's `luaconcurrent` path, else `luaconcurrent` on its
-- PATH; `luaconcurrent = false` never), else the plain worker under the
-- host's `lua`: a loader given with `-e` reads the worker's text from
-- stdin, so nothing needs installing remotely. The loader itself runs on
-- any Lua: one too old for the worker is refused with a frame saying so.
--
-- The head: "<length>\n" and a text whose first line is `local CFG =
-- {...}` (grace, heartbeat give-up, lua, the host's two keys), then
-- luaconcurrent/shellquote.lua and remote/wire.lua inlined as `local
-- shellquote` and `local wire`, then remote/worker.lua. The engine worker
-- reads only the CFG line.

local wire = require "luaconcurrent.remote.wire"
local shellquote = require "luaconcurrent.shellquote"

local M = {}

local quote = shellquote.quote
M.HB_GIVE_UP = 8       -- heartbeats without a message: the worker gives up

local texts = {}
local function module_text(name)
  if texts[name] then return texts[name] end
  -- The executable carries it compiled in; the module reads the file.
  local embedded, sources = pcall(require, "luaconcurrent.sources")
  local text = embedded and sources(name)
  if not text then
    local path = package.searchpath(name, package.path)
    local f = path and io.open(path, "rb")
    if not f then
      error("luaconcurrent: " .. name .. " (the remote worker's source) is not on package.path", 0)
    end
    text = f:read("a")
    f:close()
  end
  texts[name] = text
  return text
end

function M.worker_source()
  return "local shellquote = (function()\n" .. module_text("luaconcurrent.shellquote") .. "\nend)()\n"
    .. "local wire = (function()\n" .. module_text("luaconcurrent.remote.wire") .. "\nend)()\n"
    .. module_text("luaconcurrent.remote.worker")
end

--- The -e loader: reads the head, refuses a Lua without string.pack (5.1,
-- 5.2, LuaJIT) in a frame written by hand, else runs the worker.
function M.loader(lua)
  return 'local n=tonumber(io.read("*l"))local s=io.read(n)'
    .. 'if not string.pack then local function p(x)local k=#x '
    .. 'return string.char(k%256,math.floor(k/256)%256,math.floor(k/65536)%256,0)..x end '
    .. 'io.write(' .. string.format("%q", wire.MARK):gsub("\\\n", "\\n") .. ',p(p("refuse")..p('
    .. string.format("%q", lua .. " is ") .. '.._VERSION..", the plain worker needs Lua 5.3 or later")))'
    .. 'io.flush()return end '
    .. 'assert(load(s,"=luaconcurrent-remote-worker"))()'
end

--- The shell command run on the host.
function M.remote_command(h)
  local remote = "trap '' PIPE; "
  if h.luaconcurrent ~= false then
    local path = h.luaconcurrent
    -- This machine (":") runs this very executable when we are one, so it
    -- takes the engine's path whatever PATH holds.
    if path == nil and h.host == ":" then
      local embedded, exe = require("luaconcurrent.core").host()
      if embedded then path = exe end
    end
    local lc = quote(path or "luaconcurrent")
    remote = remote .. "if command -v " .. lc .. " >/dev/null 2>&1; then exec " .. lc
      .. " --remote-worker; fi; "
  end
  return remote .. "exec " .. quote(h.lua) .. " -e " .. quote(M.loader(h.lua))
end

M.SSH_DEFAULTS = { "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3" }

--- The argv that starts h's worker.
function M.argv(h)
  local remote = M.remote_command(h)
  if h.slurm then return require("luaconcurrent.remote.slurm").argv(h, remote) end
  if h.host == ":" then return { "sh", "-c", remote } end
  -- ssh keeps the first value of an option: the user's come first.
  local argv = { h.ssh or "ssh", "-T" }
  for _, o in ipairs(h.ssh_options or {}) do argv[#argv + 1] = o end
  for _, o in ipairs(M.SSH_DEFAULTS) do argv[#argv + 1] = o end
  argv[#argv + 1] = "-o"
  argv[#argv + 1] = "ConnectTimeout=" .. tostring(h.connect_timeout)
  if h.port then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(h.port) end
  if h.user then argv[#argv + 1] = "-l"; argv[#argv + 1] = h.user end
  argv[#argv + 1] = "--"
  argv[#argv + 1] = h.host
  argv[#argv + 1] = remote
  return argv
end

--- The bytes h's worker gets on stdin first: down, what it is sent is
-- checked with; up, what it answers is tagged with (remote/keys).
function M.head(h, grace, down, up)
  local hb = h.heartbeat
  local src = string.format("local CFG = { grace = %.17g, hb_timeout = %.17g, lua = %q, key = %q, up = %q }\n",
    grace, math.max(2, M.HB_GIVE_UP * hb), h.lua, down, up):gsub("\\\n", "\\n")
    .. M.worker_source()
  return #src .. "\n" .. src
end

return M
