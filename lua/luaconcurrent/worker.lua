--- A process worker: one child process of a ProcRunMp run with
-- isolation = "process", serving that run's tasks one after another until
-- its stdin ends. A crash, os.exit or a hung C call ends only this process;
-- the runner reports its task and starts a replacement.
--
-- Frames are length-prefixed (string.pack "<s4"); their contents are
-- marshalled values (marshal.c's format, the one thread workers use):
--   stdin:  the worker's two keys (32 raw bytes, not a marshalled value:
--           its down-key, then its up-key; see marshal.h, keys per channel)
--           | package.path, package.cpath | the task function
--           | then task frames (M.serve): a count n (string.pack "<I4"),
--             a byte wrap, and n pairs key, args marshalled together
--             (wrap 1: each pair is key, arg and the task gets { arg }).
--           What comes in is checked with the down-key (code comes in).
--           A first frame of 16 bytes is one key for both ways (the
--           remote engine worker's, until it derives keys of its own).
--   stdout: data-only frames under the up-key (only data goes back: a
--           task that returns a function gets an error, see answer),
--           one per task, written as soon as it is over (a worker
--           that dies takes no finished answer with it), and a frame when
--           it starts the first task of a task frame:
--             "start", t0
--             "ok", t0, t1, more, output, nret, first, answer
--             "error", t0, t1, more, message, output
--           t0, t1: the task's start and end (core.now, the machine's
--           monotonic clock); more: the worker goes straight on to the
--           next task of the same frame. So the runner knows which task
--           runs (its deadline) and which ones it handed over never
--           started (they go to another worker if this one dies).
-- The answers travel on a private copy of stdout; fd 1 itself is an
-- in-memory file, so what a task (or a child of it) prints cannot corrupt
-- them and comes back as the task's output. stderr is the run's own.
-- Likewise the frames arrive on a private copy of stdin, and fd 0 is
-- /dev/null, so a task that reads stdin gets EOF (core.worker_init, which
-- also makes the worker kill what its tasks started when it is stopped).

local M = {}

-- Send a finished task's answer (send: see M.serve).
local function answer(core, send, t0, more, ok, ...)
  local t1 = core.now()
  local out = core.worker_take_stdout()
  if not ok then
    local err = ...
    return send("error", t0, t1, more, tostring(err), out)
  end
  local n = select("#", ...)
  local first, second = ...
  -- A function, a metatable or a userdata in the answer raises here: the
  -- task's error, and the worker goes on.
  local sent, err = pcall(send, "ok", t0, t1, more, out, n, first, second)
  if sent then return end
  return send("error", t0, t1, more, "cannot send the task's answer back: " .. tostring(err), out)
end

--- Error message and traceback, as thread workers report them.
function M.msghandler(err)
  if type(err) ~= "string" then
    local mt = getmetatable(err)
    if mt and mt.__tostring then
      err = tostring(err)
    else
      err = string.format("(error object is a %s value)", type(err))
    end
  end
  return debug.traceback(err, 2)
end

local frames   -- the frame pipe (core.worker_init)

local function read_frame()
  local head = frames:read(4)
  if head == nil or #head < 4 then return nil end
  local len = string.unpack("<I4", head)   -- (unpack also returns a position)
  return frames:read(len)
end

--- Serve task frames (see the header) from next_frame() until it
-- returns nil, answering on fd out. fn is the task function if loaded,
-- else the reason it is not.
function M.serve(core, next_frame, out, loaded, fn, down)
  local unmarshal, now, write = core.unmarshal_keyed, core.now, core.marshal_write_data
  local unpack = string.unpack
  -- One answer frame of these values, data only, under the up-key
  -- (marshal_write_data raises before it writes anything).
  local function send(...) return write(out, ...) end
  for frame in next_frame do
    local n = #frame >= 5 and unpack("<I4", frame) or 0
    local wrap = frame:byte(5) == 1
    local ok_read, tasks = pcall(function() return table.pack(unmarshal(down, frame:sub(6))) end)
    for i = 1, n do
      local t0 = now()
      local more = i < n
      if i == 1 then send("start", t0) end
      if not loaded then
        send("error", t0, now(), more, "the worker could not load the task function: " .. tostring(fn), "")
      elseif not ok_read then
        send("error", t0, now(), more, "the worker could not read its task: " .. tostring(tasks),
          core.worker_take_stdout())
      else
        local args = tasks[2 * i]
        if wrap then args = { args } end
        local ok, err = pcall(answer, core, send, t0, more,
          xpcall(fn, M.msghandler, tasks[2 * i - 1], args))
        if not ok then
          send("error", t0, now(), more, "the worker could not answer its task: " .. tostring(err),
            core.worker_take_stdout())
        end
      end
    end
  end
end

--- The worker's main loop; returns the exit status.
function M.main()
  local core = require "luaconcurrent.core"
  frames = core.worker_init()
  local out = core.worker_stdout()
  frames:setvbuf("full")
  local keys, paths, fn_frame = read_frame(), read_frame(), read_frame()
  if not fn_frame then return 1 end
  -- From here on the process's own key is the up-key: answers are tagged
  -- with it, and a run this worker's task starts derives its keys from it.
  local down = keys:sub(1, 16)
  core.marshal_set_key(#keys == 32 and keys:sub(17) or keys)
  package.path, package.cpath = core.unmarshal_keyed(down, paths)
  local loaded, fn = pcall(core.unmarshal_keyed, down, fn_frame)
  M.serve(core, read_frame, out, loaded, fn, down)
  return 0
end

return M
