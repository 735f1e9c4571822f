--- A process worker: one child process of a ProcRunMp run with
-- isolation = "process", serving that run's tasks one after another until
-- its stdin ends. A crash, os.exit or a hung C call ends only this process;
-- the runner reports its task and starts a replacement.
--
-- Frames are length-prefixed (string.pack "<s4") marshalled values
-- (marshal.c's format, the one thread workers use):
--   stdin:  the run's marshal key (16 raw bytes, not a marshalled value:
--           frames are checked with it, see marshal.h)
--           | package.path, package.cpath | the task function | key, args ...
--   stdout: one answer per task: "ok", output, nret, first, answer
--                                | "error", message, output
-- The answers travel on a private copy of stdout; fd 1 itself is an
-- in-memory file, so what a task (or a child of it) prints cannot corrupt
-- them and comes back as the task's output. stderr is the run's own.
-- Likewise the frames arrive on a private copy of stdin, and fd 0 is
-- /dev/null, so a task that reads stdin gets EOF (core.worker_init, which
-- also makes the worker kill what its tasks started when it is stopped).

local M = {}

local function answer_of(core, ok, ...)
  local out = core.worker_take_stdout()
  if not ok then
    local err = ...
    return core.marshal_string("error", tostring(err), out)
  end
  local n = select("#", ...)
  local first, second = ...
  local sent, blob = pcall(core.marshal_string, "ok", out, n, first, second)
  if sent then return blob end
  return core.marshal_string("error", "cannot send the task's answer back: " .. tostring(blob), out)
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

--- The worker's main loop; returns the exit status.
function M.main()
  local core = require "luaconcurrent.core"
  frames = core.worker_init()
  local out = core.worker_stdout()
  frames:setvbuf("full")
  local key, paths, fn_frame = read_frame(), read_frame(), read_frame()
  if not fn_frame then return 1 end
  core.marshal_set_key(key)
  package.path, package.cpath = core.unmarshal_string(paths)
  local loaded, fn = pcall(core.unmarshal_string, fn_frame)
  for frame in read_frame do
    local blob
    if not loaded then
      blob = core.marshal_string("error", "the worker could not load the task function: " .. tostring(fn))
    else
      local ok, err = pcall(function()
        local key, args = core.unmarshal_string(frame)
        blob = answer_of(core, xpcall(fn, M.msghandler, key, args))
      end)
      if not ok then
        blob = core.marshal_string("error", "the worker could not read its task: " .. tostring(err),
          core.worker_take_stdout())
      end
    end
    core.fd_write(out, string.pack("<s4", blob))
  end
  return 0
end

--- Runner side: a reader of answer frames. reader()(data, out) takes
-- the next bytes from a worker and appends each frame they complete to
-- out. Linear in the bytes read: a large answer's chunks are kept apart
-- and joined once, when the frame is whole.
function M.reader()
  local parts, nparts = {}, 0
  local pos = 1        -- where the unread bytes start in parts[1]
  local have = 0       -- unread bytes in all parts
  local size           -- the current frame's length, once its header is in
  local concat, unpack = table.concat, string.unpack

  local function join()
    local s = concat(parts, "", 1, nparts):sub(pos)
    parts, nparts, pos = { s }, 1, 1
  end

  return function(data, out)
    nparts = nparts + 1
    parts[nparts] = data
    have = have + #data
    while true do
      if not size then
        if have < 4 then return end
        if #parts[1] - pos + 1 < 4 then join() end
        size = unpack("<I4", parts[1], pos)
      end
      if have < 4 + size then return end
      if #parts[1] - pos + 1 < 4 + size then join() end
      local first = parts[1]
      out[#out + 1] = first:sub(pos + 4, pos + 3 + size)
      pos = pos + 4 + size
      have = have - 4 - size
      size = nil
      if pos > #first then
        table.remove(parts, 1)
        nparts = nparts - 1
        pos = 1
        if nparts == 0 then parts = {} end
      end
    end
  end
end

return M
