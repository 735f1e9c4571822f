--- The engine-mode remote worker: `luaconcurrent --remote-worker`, started
-- over the host's ssh session when the host has the luaconcurrent
-- executable (see remote/executor.lua). It speaks the plain worker's
-- protocol (remote/worker.lua) to the local side and runs tasks with the C
-- engine: no shell, no temp files.
--
-- Start: the local side sends the same head as to the plain worker,
-- "<length>\n" and a text whose first line is `local CFG = {...}` (the
-- grace, heartbeat timeout and the run's marshal key); the rest (the plain
-- worker) is not run here. Nothing else arrives before our hello:
--   hello PROTOCOL ncpu _VERSION 1 "engine" <luaconcurrent version> <bytecode header, hex>
-- Then the channel (stdin) is read through a relay child (`cat`, given the
-- channel as its fd 2 by luaconcurrent.remote_channel, main.c): the engine
-- watches only its children's pipes.
--
-- Messages (lines of tab-separated escaped fields, as for the plain worker):
--   X tid timeout cwd has_input input nenv env... argv...   a subprocess task
--        (own process group; timeout > 0: TERM at it, KILL grace later)
--   S n          run at most n subprocess tasks at once; the others wait
--                here, in order (the local side sends ahead to hide the
--                channel's round trip)
--   K tid        cancel: the task's group (or its worker process) is killed
--                (a waiting task: dropped, its record says interrupted)
--   L fn         the run's task function (marshalled, checked with the key)
--   F tid cwd nenv env... args   a function task (args: marshalled key, args)
--   H            heartbeat, answered with hb
--   P x          answered with pong x
-- Answers (length-prefixed frames of "<s4" fields):
--   rec tid <marshalled process record> | fail tid message errno_name
--   | fdone tid <a process worker's answer frame, passed through>
--   | fdied tid message | hb | pong x
-- Function tasks run on process workers (`luaconcurrent --worker`, the
-- local isolation = "process" protocol), one per slot, reused.
-- On EOF of the channel, a failed write to it, or no message for
-- CFG.hb_timeout seconds, every group started is killed and we exit.

local core = require "luaconcurrent.core"
local channel = require "luaconcurrent.remote_channel"
local worker = require "luaconcurrent.worker"

local M = {}

local PROTOCOL = "1"
local now = core.now

local UNESC = { ["\\"] = "\\", n = "\n", t = "\t" }
local function split(msg)
  local t = {}
  for f in (msg .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = (f:gsub("\\(.)", UNESC)) end
  return t
end

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

--- The header of Lua bytecode here (version, format, sizes, checks).
function M.bytecode_header()
  return hex(string.dump(load("return"), true):sub(1, 31))
end

function M.main()
  local n = tonumber(io.stdin:read("l"))
  local src = n and io.stdin:read(n)
  if not src then return 2 end
  local cfgline = src:match("^local CFG = ([^\n]*)\n")
  local CFG = cfgline and load("return " .. cfgline, "=cfg", "t", {})() or {}
  local hb_timeout = tonumber(CFG.hb_timeout) or 60
  if CFG.key then core.marshal_set_key(CFG.key) end

  local out = io.stdout
  out:setvbuf("full")
  local alive = true
  local function send(...)
    if not alive then return end
    local frame = string.pack("<" .. string.rep("s4", select("#", ...)), ...)
    if not out:write(string.pack("<s4", frame)) then alive = false end
  end

  local loop = core.new_loop()
  channel.channel_as_stderr(true)
  local relay, message = loop:spawn({ "sh", "-c", "exec cat <&2 2>/dev/null" }, nil, nil, nil, 0, 0, true)
  channel.channel_as_stderr(false)
  if not relay then
    io.stderr:write("luaconcurrent remote worker: cannot start the channel relay: ", tostring(message), "\n")
    return 2
  end
  loop:close_input(relay)

  local _, exe = core.host()
  send("hello", PROTOCOL, tostring(core.cpu_count()), _VERSION, "1", "engine", channel.version,
    M.bytecode_header())
  out:flush()

  local procs = {}       -- [process id] = tid (subprocess tasks)
  local by_tid = {}      -- [tid] = process id | worker
  local envs = {}        -- env list (joined) -> envblock
  local fn_bytes         -- the task function (L)
  local workers = {}     -- [process id] = w (function tasks' process workers)
  local idle = {}
  local last_heard = now()
  local closing = false
  local limit = math.huge  -- S
  local nrun = 0
  local waiting, wfirst, wlast = {}, 1, 0   -- X messages beyond the limit
  local queued = {}        -- [tid] = true while waiting

  local function envblock(m, first, nenv)
    if nenv == 0 then return nil end
    local list = table.concat(m, "\0", first, first + nenv - 1)
    local eb = envs[list]
    if eb == nil then
      local t = {}
      for k = first, first + nenv - 1 do
        local name, value = m[k]:match("^([^=]*)=(.*)$")
        if name then t[name] = value else t[m[k]] = false end
      end
      eb = core.envblock(t)
      envs[list] = eb
    end
    return eb
  end

  local function run(m)
    local tid, timeout, cwd, has_input, input, nenv = m[2], tonumber(m[3]) or 0, m[4], m[5], m[6], tonumber(m[7])
    local argv = table.move(m, 8 + nenv, #m, 1, {})
    local ok, id, msg, errname = pcall(loop.spawn, loop, argv, envblock(m, 8, nenv), cwd ~= "" and cwd or nil,
      has_input == "1" and input or nil, timeout, tonumber(CFG.grace) or 0.1)
    if not ok then id, msg, errname = nil, tostring(id), "EINVAL" end
    if not id then
      send("fail", tid, tostring(msg), tostring(errname or ""))
      return
    end
    procs[id], by_tid[tid] = tid, id
    nrun = nrun + 1
  end

  local function start_waiting()
    while nrun < limit and wfirst <= wlast do
      local m = waiting[wfirst]
      waiting[wfirst], wfirst = nil, wfirst + 1
      if queued[m[2]] then
        queued[m[2]] = nil
        run(m)
      end
    end
  end

  local function submit(m)
    if nrun < limit and wfirst > wlast then return run(m) end
    wlast = wlast + 1
    waiting[wlast] = m
    queued[m[2]] = true
  end

  -- A process worker's frame that says it starts a task (worker.lua):
  -- small, and not an answer.
  local function is_start(blob)
    if #blob > 64 then return false end
    local ok, what = pcall(core.unmarshal_string, blob)
    return ok and what == "start"
  end

  -- w's answer frames: each finishes w's task (one at a time here).
  local function answers(w, data)
    local blobs = {}
    w.read(data, blobs)
    for _, blob in ipairs(blobs) do
      if w.tid and not is_start(blob) then
        send("fdone", w.tid, blob)
        by_tid[w.tid], w.tid = nil, nil
        if workers[w.id] then idle[#idle + 1] = w end
      end
    end
  end

  local function worker_ended(w, rec)
    workers[w.id] = nil
    for k = #idle, 1, -1 do if idle[k] == w then table.remove(idle, k) end end
    if rec.stdout and rec.stdout ~= "" then answers(w, rec.stdout) end
    if w.tid then
      local why = rec.signal and string.format("killed by signal %d (%s)", rec.signal, tostring(rec.signal_name))
        or string.format("exited with status %s", tostring(rec.returncode))
      send("fdied", w.tid, "the worker process ended without answering: " .. why)
      by_tid[w.tid] = nil
    end
  end

  local function run_fn(m)
    local tid, cwd, nenv = m[2], m[3], tonumber(m[4])
    local blob = m[5 + nenv]
    if not fn_bytes then
      send("fdied", tid, "no task function was sent")
      return
    end
    local w = table.remove(idle)
    if not w then
      local head = string.pack("<s4s4s4", core.marshal_key(),
        core.marshal_string(package.path, package.cpath), fn_bytes)
      local id, msg = loop:spawn({ exe, "--worker" }, envblock(m, 5, nenv), cwd ~= "" and cwd or nil,
        head, 0, 0, true)
      if not id then
        send("fdied", tid, "cannot start a worker process: " .. tostring(msg))
        return
      end
      w = { id = id, read = worker.reader() }
      workers[id] = w
    end
    w.tid = tid
    by_tid[tid] = w
    -- A task frame of one task (worker.lua): count 1, no wrap, key and args.
    loop:write(w.id, string.pack("<s4", string.pack("<I4", 1) .. "\0" .. blob))
  end

  local function cancel(tid)
    if queued[tid] then
      queued[tid] = nil
      send("rec", tid, core.marshal_string({ returncode = -1, interrupted = true, stdout = "", stderr = "" }))
      return
    end
    local x = by_tid[tid]
    if type(x) == "table" then          -- a function task: its worker goes
      by_tid[tid], x.tid = nil, nil
      for k = #idle, 1, -1 do if idle[k] == x then table.remove(idle, k) end end
      loop:kill(x.id)
    elseif x then
      loop:kill(x)
    end
  end

  local function on_message(msg)
    last_heard = now()
    local m = split(msg)
    local what = m[1]
    if what == "X" then if not closing then submit(m) end
    elseif what == "S" then limit = tonumber(m[2]) or math.huge
    elseif what == "F" then if not closing then run_fn(m) end
    elseif what == "K" then cancel(m[2])
    elseif what == "H" then send("hb")
    elseif what == "L" then fn_bytes = m[2]
    elseif what == "P" then send("pong", m[2] or "")
    end
  end

  local buf = ""
  local function on_data(data)
    buf = buf .. data
    local pos = 1
    while true do
      local nl = buf:find("\n", pos, true)
      if not nl then break end
      on_message(buf:sub(pos, nl - 1))
      pos = nl + 1
    end
    buf = buf:sub(pos)
  end

  local function shutdown()
    closing = true
    alive = false
  end

  local function record(rec)
    if rec.id == relay then
      if rec.data then on_data(rec.data) else
        if rec.stdout and rec.stdout ~= "" then on_data(rec.stdout) end
        shutdown()
      end
      return
    end
    local tid = procs[rec.id]
    if tid then
      procs[rec.id], by_tid[tid] = nil, nil
      nrun = nrun - 1
      local r = { returncode = rec.returncode, signal = rec.signal, signal_name = rec.signal_name,
        stdout = rec.stdout, stderr = rec.stderr, pid = rec.pid, timeout = rec.timeout, limit = rec.limit,
        interrupted = rec.interrupted, incomplete = rec.incomplete, time_run = rec.time_run,
        input_error = rec.input_error, input_written = rec.input_written, input_size = rec.input_size,
        wait_error = rec.wait_error }
      send("rec", tid, core.marshal_string(r))
      return
    end
    local w = workers[rec.id]
    if w then
      if rec.data then
        answers(w, rec.data)
      else
        worker_ended(w, rec)
      end
    end
  end

  while not closing do
    for _, rec in ipairs(loop:poll(1)) do record(rec) end
    if not closing then start_waiting() end
    if alive and not out:flush() then alive = false; shutdown() end
    if now() - last_heard > hb_timeout then shutdown() end
  end
  -- Every group this worker started is killed (process workers get TERM
  -- first and kill what their tasks started), then we exit.
  loop:close()
  return 0
end

return M
