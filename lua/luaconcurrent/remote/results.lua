--- A host's answer -> the task's result. What a host sends is data: a
-- marshalled record or answer is decoded, then checked to hold only plain
-- values (no metatable, no function, no userdata, bounded depth) before
-- any field is read; one that fails is a protocol error (the host fails,
-- the task runs again), never a result.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"

local now, wallclock = core.now, core.wallclock
local getmt = debug.getmetatable

local M = {}

-- Data only: the decoder that loads no code, under the host's up-key,
-- its frames capped as the host's; the result is then checked to hold
-- only plain values without touching a metamethod.
local unmarshal_data = core.unmarshal_data
local function decode(blob, h, what)
  local limits = h.data_limits
  if not limits or limits.key ~= h.up then
    limits = { key = h.up, frame = h.max_frame }
    h.data_limits = limits
  end
  limits.what = what
  return unmarshal_data(blob, limits)
end

local PLAIN = { string = true, number = true, boolean = true }

--- Whether v is plain data: nil, booleans, numbers, strings and tables of
-- them without metatables, at most depth deep.
local function plain(v, depth)
  local ty = type(v)
  if ty == "nil" or PLAIN[ty] then return true end
  if ty ~= "table" or depth <= 0 or getmt(v) ~= nil then return false end
  local k, x = next(v)
  while k ~= nil do
    if not PLAIN[type(k)] or not plain(x, depth - 1) then return false end
    k, x = next(v, k)
  end
  return true
end
M.plain = plain

-- The fields of an engine-mode record and their types.
local RECORD = {
  returncode = "integer", signal = "integer", signal_name = "string", stdout = "string", stderr = "string",
  pid = "integer", timeout = "boolean", limit = "number", interrupted = "boolean", incomplete = "boolean",
  time_run = "number", input_error = "string", input_written = "integer", input_size = "integer",
  wait_error = "string",
}

local function typed(v, want)
  if want == "integer" then return math.type(v) == "integer" end
  return type(v) == want
end

--- A marshalled record from an engine-mode host -> the record, or nil and
-- why it is refused.
function M.record(blob, h)
  local ok, rec = pcall(decode, blob, h, "record")
  if not ok then return nil, "a record refused (" .. ProcResult.error_text(rec) .. ")" end
  if type(rec) ~= "table" or not plain(rec, 1) then return nil, "a record that is not plain data" end
  local k, v = next(rec)
  while k ~= nil do
    local want = RECORD[k]
    if not want then return nil, "a record with an unknown field " .. string.format("%q", tostring(k)) end
    if not typed(v, want) then return nil, "a record whose " .. k .. " is not a " .. want end
    k, v = next(rec, k)
  end
  if math.type(rec.returncode) ~= "integer" or type(rec.stdout) ~= "string" or type(rec.stderr) ~= "string" then
    return nil, "a record without returncode, stdout and stderr"
  end
  return rec
end

--- A process worker's answer, passed through by an engine-mode host:
-- status, t0, t1, more, then the outcome (exec/processes' format) -> its
-- values as a list, or nil and why it is refused.
function M.answer(blob, h)
  local v = table.pack(pcall(decode, blob, h, "answer"))
  if not v[1] then return nil, "an answer refused (" .. ProcResult.error_text(v[2]) .. ")" end
  for i = 2, v.n do
    if not plain(v[i], 64) then return nil, "an answer that is not plain data" end
  end
  if type(v[2]) ~= "string" then return nil, "an answer without a status" end
  return v
end

function M.timed(res, t)
  local t1 = now()
  res.time_start, res.time_end, res.time_run = wallclock() - (t1 - t.t0), wallclock(), t1 - t.t0
  return res
end
local timed = M.timed

-- The task's own run time (remote) replaces the time since it was sent
-- (which includes a wait behind the tasks sent ahead).
local function ran(res, seconds)
  if type(seconds) == "number" and seconds >= 0 and seconds <= res.time_run then
    res.time_run, res.time_start = seconds, res.time_end - seconds
  end
  return res
end

--- A function task that ran past its limit (seconds: its run, when known).
function M.fn_timed_out(t, timeout, seconds, note)
  return ProcResult.time_out(ran(timed(ProcResult.new(t.key, t.arg), t), seconds), timeout, note)
end

local SIGNAL_NAMES = { [9] = "SIGKILL", [15] = "SIGTERM", [2] = "SIGINT" }

--- Plain mode: a subprocess task's status and output.
local function of_done(t, f, timeout)
  local status = math.tointeger(tonumber(f[3]))
  local rec = { returncode = status, stdout = f[4], stderr = f[5], pid = math.tointeger(tonumber(f[6])) }
  if (t.why or t.timed_out) and status > 128 then
    rec.signal = status - 128
    rec.signal_name = SIGNAL_NAMES[rec.signal] or "signal"
    rec.returncode = -rec.signal
  end
  timed(rec, t)
  if t.timed_out then rec.timeout, rec.limit = true, timeout end
  local res
  if status == 127 and rec.stderr:find("No such file or directory\n?$") then
    res = ProcResult.spawn_failure(t.key, t.arg, (rec.stderr:gsub("\n$", "")), "ENOENT")
    res.returncode, res.stderr = 127, rec.stderr
  else
    res = ProcResult.from_record(t.key, t.arg, rec)
  end
  return res
end

local function of_record(t, f, timeout, h)
  local rec, why = M.record(f[3], h)
  if not rec then return nil, why end
  local remote_run = rec.time_run
  timed(rec, t)
  if type(remote_run) == "number" and remote_run >= 0 then      -- its own run, not its wait
    rec.time_run, rec.time_start = remote_run, rec.time_end - remote_run
  end
  if t.timed_out and not rec.timeout then rec.timeout, rec.limit = true, timeout end
  return ProcResult.from_record(t.key, t.arg, rec)
end

-- One that came at or after its deadline is a timeout, as locally.
local function of_answer(t, f, timeout, h)
  local v, why = M.answer(f[3], h)
  if not v then return nil, why end
  local status, t0, t1, a, b, c, d = v[2], v[3], v[4], v[6], v[7], v[8], v[9]
  local res = timed(ProcResult.new(t.key, t.arg), t)
  local run = type(t0) == "number" and type(t1) == "number" and t1 - t0 or nil
  ran(ProcResult.answered(res, status, a, b, c, d), run)
  if timeout > 0 and run and run >= timeout then ProcResult.time_out(res, timeout) end
  return res
end

--- A frame that ends task t -> its result, or nil and why the frame is a
-- protocol error.
function M.of_frame(t, f, timeout, h)
  local what = f[1]
  local res, why
  if what == "done" then res = of_done(t, f, timeout)
  elseif what == "rec" then res, why = of_record(t, f, timeout, h)
  elseif what == "fail" then res = timed(ProcResult.spawn_failure(t.key, t.arg, f[3], f[4]), t)
  elseif what == "fdone" then res, why = of_answer(t, f, timeout, h)
  elseif what == "ftimeout" then
    res = M.fn_timed_out(t, timeout, tonumber(f[3]), "its worker process was killed")
  elseif what == "held" then
    return ProcResult.not_started(t.key, t.arg, t.held or "not started")
  else
    res = ProcResult.raised(timed(ProcResult.new(t.key, t.arg), t), f[3])
  end
  if not res then return nil, why end
  if t.why and not res.success and not res.timeout then ProcResult.interrupt(res, t.why) end
  return res
end

return M
