--- ProcResult: one task's outcome, with pyconcurrent's field names.

-- Fields a result does not set read their defaults through __index, so a
-- run of a million results keeps only what differs (half the memory and
-- collector work for function tasks). ProcResult:fields() lists them all.
local ProcResult = {
  success = false, timeout = false, returncode = -1, stdout = "", stderr = "",
  time_start = -1, time_end = -1, time_run = -1, attempts = 1,
}
ProcResult.__index = ProcResult

-- Field order for print and JSON.
local FIELDS = {
  "key", "arg", "success", "timeout", "exception", "returncode", "signal",
  "stdout", "stderr", "answer", "error", "pid", "time_start", "time_end", "time_run",
  "input_error", "attempts", "skipped", "stdout_size", "stderr_size", "host",
}
ProcResult.FIELDS = FIELDS

-- Methods called with a dot (res.to_json()) get a named error, not an
-- "attempt to index a nil value" from inside.
local function check_self(self, name)
  if getmetatable(self) ~= ProcResult then
    error(string.format("luaconcurrent: %s is a method: call it as res:%s()", name, name), 0)
  end
end

--- lua-cjson, loaded by what needs JSON only (to_json, the results file,
-- --json): without it, one error that says what to install.
function ProcResult.cjson()
  local ok, cjson = pcall(require, "cjson")
  if ok and type(cjson) == "table" then return cjson end
  error("luaconcurrent: JSON output needs lua-cjson (the Lua module \"cjson\"), which is not "
    .. "installed for Lua 5.4: install it (Debian: apt-get install lua-cjson; LuaRocks: "
    .. "luarocks --lua-version=5.4 install lua-cjson)", 0)
end

function ProcResult.new(key, arg)
  return setmetatable({ key = key, arg = arg }, ProcResult)
end

--- Every field with its value (defaults included), as a plain table.
function ProcResult:fields()
  check_self(self, "fields")
  local t = {}
  for _, name in ipairs(FIELDS) do t[name] = self[name] end
  return t
end

local EXCEPTION_OF_ERRNO = {
  ENOENT = "FileNotFoundError",
  EACCES = "PermissionError",
  EPERM = "PermissionError",
}

--- A result for a task that could not be started.
-- when: the wall-clock time of the attempt (it took no time).
function ProcResult.spawn_failure(key, arg, message, errname, when)
  local res = ProcResult.new(key, arg)
  res.exception = EXCEPTION_OF_ERRNO[errname] or "OSError"
  res.error = message
  if when then res.time_start, res.time_end, res.time_run = when, when, 0 end
  return res
end

local INTERRUPTED = {
  not_started = "interrupted: the run was stopped before this task started",
  running = "interrupted: the run was stopped while this task ran",
  stopped = "interrupted: the run was stopped",
}

--- Mark res as interrupted; why is a key of INTERRUPTED or a message.
function ProcResult.interrupt(res, why)
  res.success = false
  res.exception = "Interrupted"
  res.error = INTERRUPTED[why] or why
  return res
end

--- A result for a task that never started because the run was stopped
-- (or, with a message, for another reason).
function ProcResult.not_started(key, arg, why)
  return ProcResult.interrupt(ProcResult.new(key, arg), why or "not_started")
end

--- Mark res as timed out after limit seconds. The one place a timeout's
-- message is written; note says how it ended, when that is not plain.
function ProcResult.time_out(res, limit, note)
  res.success, res.timeout, res.exception = false, true, "TimeoutError"
  res.error = note and string.format("timed out after %g s (%s)", limit, note)
    or string.format("timed out after %g s", limit)
  return res
end

--- Text of an error value that never raises: a value whose __tostring
-- raises or returns a non-string must not escape its task.
function ProcResult.error_text(err)
  if type(err) == "string" then return err end
  local ok, s = pcall(tostring, err)
  if ok and type(s) == "string" then return s end
  return string.format("(error object is a %s value)", type(err))
end

--- Fill res from what a task function returned. Returning nothing counts
-- as success (the function ran to its end without raising); otherwise the
-- first value's truth is success and the second value is the answer. A
-- false or nil first value with a string second value also sets error to
-- that string (Lua's `return nil, message`).
function ProcResult.returned(res, nret, first, answer)
  if nret == 0 then
    res.success = true
    return res
  end
  res.success = first ~= nil and first ~= false
  res.answer = answer
  if not res.success then
    res.error = type(answer) == "string" and answer
      or string.format("the task function returned %s", ProcResult.error_text(first))
  end
  return res
end

--- Fill res from a process worker's answer (worker.lua): "ok", output,
-- nret, first, answer | "error", message, output.
function ProcResult.answered(res, what, a, b, c, d)
  if what == "ok" then
    res.stdout = a
    return ProcResult.returned(res, b, c, d)
  end
  res.stdout = b
  return ProcResult.raised(res, a)
end

--- Mark res as failed by an error the task raised (message or traceback).
function ProcResult.raised(res, message)
  res.success = false
  res.exception, res.error = "RuntimeError", message
  return res
end

--- A result from a thread worker's job record (see core's job records):
-- status "ok" | "timeout" | "cancelled" | "error".
function ProcResult.from_job(key, arg, rec)
  local res = setmetatable({ key = key, arg = arg, time_start = rec.time_start,
    time_end = rec.time_end, time_run = rec.time_run }, ProcResult)
  local status = rec.status
  if status == "ok" then
    return ProcResult.returned(res, rec.nret, rec.first, rec.answer)
  elseif status == "timeout" then
    return ProcResult.time_out(res, rec.limit)
  elseif status == "cancelled" then
    return ProcResult.interrupt(res, "stopped")
  end
  return ProcResult.raised(res, rec.error)
end

--- A result from a process record (see core's process records). A record
-- carries everything, the time limit it ran under included.
function ProcResult.from_record(key, arg, rec)
  local res = setmetatable({
    key = key, arg = arg, pid = rec.pid,
    returncode = rec.returncode, signal = rec.signal,
    stdout = rec.stdout, stderr = rec.stderr,
    stdout_file = rec.stdout_file, stdout_size = rec.stdout_size,
    stderr_file = rec.stderr_file, stderr_size = rec.stderr_size,
    time_start = rec.time_start, time_end = rec.time_end, time_run = rec.time_run,
    success = false,
  }, ProcResult)
  local why
  if rec.interrupted then
    ProcResult.interrupt(res, "stopped")
  elseif rec.timeout then
    ProcResult.time_out(res, rec.limit)
  elseif rec.wait_error then
    why = "exit status lost: the process was reaped by someone else (" .. rec.wait_error .. ")"
  elseif rec.signal then
    why = string.format("killed by signal %d (%s)", rec.signal, rec.signal_name)
  elseif rec.returncode ~= 0 then
    why = string.format("exited with status %d", rec.returncode)
  else
    res.success = true
  end
  local notes = {}
  if res.error then notes[1] = res.error end
  if why then notes[#notes + 1] = why end
  if rec.incomplete then
    notes[#notes + 1] = "output may be incomplete: its pipes were still held open "
      .. "(by a process outside the task) after the kill"
  end
  if rec.input_error then
    -- Not a failure by itself (a task may stop reading early), so it has
    -- its own field and only joins error when the task failed anyway.
    local what = rec.input_error == "ENODATA" and "its input file ended" or "stdin closed by the task"
    res.input_error = string.format("%s after %d of %d bytes (%s)", what,
      rec.input_written, rec.input_size, rec.input_error)
    if not res.success then notes[#notes + 1] = res.input_error end
  end
  if #notes > 0 then res.error = table.concat(notes, "; ") end
  return res
end

local function show(v)
  if type(v) == "table" then
    local ok, cjson = pcall(require, "cjson")
    if ok then
      local enc_ok, s = pcall(cjson.encode, v)
      if enc_ok then return s end
    end
  end
  return tostring(v)
end

--- Print in pyconcurrent's layout (plus our exception and error lines).
function ProcResult:print()
  check_self(self, "print")
  print("========================================")
  print(string.format("key                 : %s", show(self.key)))
  print(string.format("  time_start        : %.1f", self.time_start))
  print(string.format("  time_run          : %.1f", self.time_run))
  print(string.format("  success           : %s", tostring(self.success)))
  print(string.format("  timeout           : %s", tostring(self.timeout)))
  print(string.format("  arg               : %s", show(self.arg)))
  print(string.format("  returncode        : %s", tostring(self.returncode)))
  if self.exception then print(string.format("  exception         : %s", self.exception)) end
  if self.error then print(string.format("  error             : %s", self.error)) end
  if self.stdout and self.stdout ~= "" then print(string.format("  stdout            : %s", self.stdout)) end
  if self.stderr and self.stderr ~= "" then print(string.format("  stderr            : %s", self.stderr)) end
  if self.answer ~= nil then print(string.format("  answer            : %s", show(self.answer))) end
end

-- ---- JSON (result_json.lua) -----------------------------------------------
local result_json = require "luaconcurrent.result_json"
ProcResult.base64 = result_json.base64

--- The result's JSON object as a list of pieces (joined, they are
-- to_json's text), and the unencoded table or nil. The results file writes
-- the pieces as they are.
function ProcResult:json_parts()
  check_self(self, "json_parts")
  return result_json.parts(self, FIELDS, ProcResult.cjson())
end

--- The result as one JSON object (valid UTF-8 whatever the task printed);
-- absent fields are null. Returns the JSON text and, when some field could
-- not be written, a table {field = reason} (also in the object's
-- `unencoded`); never raises for a value a task produced.
function ProcResult:to_json_checked()
  check_self(self, "to_json_checked")
  local parts, unencoded = self:json_parts()
  return table.concat(parts), unencoded
end

--- The JSON text alone (one value: `cjson.decode(res:to_json())` works).
function ProcResult:to_json()
  check_self(self, "to_json")
  return (self:to_json_checked())
end

return ProcResult
