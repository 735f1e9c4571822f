--- A process worker: one child process of a ProcRunMp run with
-- isolation = "process", serving that run's tasks one after another until
-- its stdin ends. A crash, os.exit or a hung C call ends only this process;
-- the runner reports its task and starts a replacement.
--
-- Frames are length-prefixed (string.pack "<s4") marshalled values
-- (marshal.c's format, the one thread workers use):
--   stdin:  package.path, package.cpath | the task function | key, args ...
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
  local paths, fn_frame = read_frame(), read_frame()
  if not fn_frame then return 1 end
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

--- Runner side: take the complete answer frames off the front of buf.
-- Returns a list of answer blobs and what is left of buf.
function M.frames(buf)
  local blobs, pos = {}, 1
  while #buf - pos + 1 >= 4 do
    local len = string.unpack("<I4", buf, pos)
    if #buf - pos + 1 < 4 + len then break end
    blobs[#blobs + 1] = buf:sub(pos + 4, pos + 3 + len)
    pos = pos + 4 + len
  end
  return blobs, buf:sub(pos)
end

return M
