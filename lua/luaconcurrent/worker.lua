--- A process worker: runs one function task of a ProcRunMp run with
-- isolation = "process", then exits. A crash, os.exit or a hung C call
-- ends only this process; the runner turns that into the task's result.
--
-- stdin: three length-prefixed marshalled frames (marshal.c's format):
--   package.path, package.cpath | the task function | key, args
-- stdout: whatever the task prints, then the marshalled answer, its length
-- as 16 hex digits and TRAILER:
--   "ok", nret, first, answer   or   "error", message

local M = {}

M.TRAILER = "\0luaconcurrent-answer\0"

local function answer_of(core, ok, ...)
  if not ok then
    local err = ...
    return core.marshal_string("error", tostring(err))
  end
  local n = select("#", ...)
  local first, second = ...
  local sent, blob = pcall(core.marshal_string, "ok", n, first, second)
  if sent then return blob end
  return core.marshal_string("error", "cannot send the task's answer back: " .. tostring(blob))
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

function M.main()
  local core = require "luaconcurrent.core"
  io.stdin:setvbuf("full")
  local data = io.stdin:read("a")
  local blob
  local ok, err = pcall(function()
    local paths, fn_frame, task_frame = string.unpack("<s4s4s4", data)
    package.path, package.cpath = core.unmarshal_string(paths)
    local fn = core.unmarshal_string(fn_frame)
    local key, args = core.unmarshal_string(task_frame)
    blob = answer_of(core, xpcall(fn, M.msghandler, key, args))
  end)
  if not ok then
    blob = core.marshal_string("error", "the worker could not read its task: " .. tostring(err))
  end
  io.stdout:write(blob, string.format("%016x", #blob), M.TRAILER)
  io.stdout:flush()
  return 0
end

--- Parent side: split a finished worker's stdout into the task's own
-- output and its answer. Returns output, status, values... or nil.
function M.decode(core, out)
  local tl = #M.TRAILER
  if #out < tl + 16 or out:sub(-tl) ~= M.TRAILER then return nil end
  local len = tonumber(out:sub(-tl - 16, -tl - 1), 16)
  if not len or len > #out - tl - 16 then return nil end
  local stop = #out - tl - 16
  local blob = out:sub(stop - len + 1, stop)
  return out:sub(1, stop - len), core.unmarshal_string(blob)
end

return M
