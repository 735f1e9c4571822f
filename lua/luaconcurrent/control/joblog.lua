--- joblog: one line per finished task, tab-separated, in GNU parallel's
-- columns (so the tools that read its job logs read ours).
--
-- The option (runner options, and what lcparallel's --joblog maps to):
--
--   joblog = "path"      luaconcurrent's format: parallel's 9 columns plus
--                        Key (the task's key JSON-encoded: "a", 1); the
--                        file is appended to, with the header when it is
--                        new or empty. Resume goes by key.
--   joblog = { path = "path",             required
--              format = "luaconcurrent" | "parallel",   default "luaconcurrent"
--              command = function(key, arg) -> string,  the Command column
--              send = function(key, arg, res) -> bytes, the Send column
--              append = true | false }                  see below
--
-- format = "parallel" is GNU parallel's (20221122) joblog exactly:
--   Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
--   Seq        the task's index in the task list (1, 2, ...)
--   Host       the host's name (res.host), ":" for this machine
--   Starttime  "%.3f" seconds since the epoch
--   JobRuntime "%10.3f" seconds (truncated to the millisecond, as parallel)
--   Send       bytes given to the task's stdin: send(key, arg, res) when
--              given (lcparallel --pipe: the block's size), else the run's
--              `input`
--   Receive    bytes of the task's stdout (stderr is not counted)
--   Exitval    the exit status; 0 when killed by a signal; -1 when timed
--              out; function tasks 0 or 1; a program not found 127, not
--              executable 126
--   Signal     the signal that ended it, else 0
--   Command    command(key, arg) when given, else the executor's own
--              description (argv joined by spaces); a newline in it is
--              written as a NUL byte, as parallel does; tabs are kept.
-- Opening: append = true (lcparallel's `--joblog +file`) appends and never
-- writes a header, as parallel; otherwise the file is truncated and gets
-- the header, unless the run resumes and the file has content (then it is
-- appended to). The luaconcurrent format always appends (append is
-- ignored), with the header when the file is empty.
--
-- Resume (the run's `resume` option):
--   format "parallel": by Seq, as parallel. resume = true skips every task
--     whose Seq has a line; resume = "failed" skips those with a line
--     whose Exitval and Signal are both 0 (parallel's --resume-failed).
--   format "luaconcurrent": by Key, the last line for a key winning.
--     resume = true skips every logged task (one that failed gets a failed
--     result); "failed" runs again those whose line is not Exitval 0 and
--     Signal 0 (a task killed by a signal is a failure).
-- A skipped task's result has skipped = true. Only final results are
-- logged (not each retried try), and not those of tasks the run
-- interrupted (a signal, halt = "now"), as parallel: resume runs them.
--
-- Whole lines, errors said: each line is one write() on an O_APPEND fd
-- (core.file_open), in the file whole or not at all. A line that cannot be
-- written (a full disk) is reported on stderr at once, the run ends with
-- run.ok = false and run.joblog_error saying how many lines are missing.
-- A last line cut short (a crash, a full disk under an older version) is
-- ignored by the readers and cut off when the file is opened again, so
-- the next line starts on a line of its own. The results file (lines.lua)
-- is written the same way; its errors end in run.results_error.
--
-- For lcparallel (GNU parallel's options):
--   M.cli(value) -> { path =, append = }   --joblog VALUE ("+file" appends)
--   M.read_parallel(path) -> jobs, last    every line of a joblog parallel
--     (or format "parallel") wrote: jobs[seq] = { ok =, exitval =,
--     signal =, host =, starttime =, runtime =, send =, receive =,
--     command = } (ok: some line for seq has Exitval 0 and Signal 0;
--     command with NUL turned back into newlines; the last line for seq
--     otherwise), last = the highest Seq; nil when the file does not
--     exist. A line parallel could not read is a `luaconcurrent:` error
--     naming the file and line. --retry-failed: build the task list from
--     jobs (seq = task index, failed ones with their logged command) and
--     run it with resume = "failed" on the same joblog.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"
local lines = require "luaconcurrent.control.lines"

local M = {}

local COLUMNS = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
M.HEADER_PARALLEL = COLUMNS .. "\n"
M.HEADER = COLUMNS .. "\tKey\n"

local fail = validate.fail
local format, floor, mtype = string.format, math.floor, math.type

-- ---- keys ------------------------------------------------------------------
-- The Key column is the key as JSON, written here as lua-cjson writes it
-- (joblogs made with cjson still resume), so the joblog needs no cjson.

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["/"] = "\\/", ["\b"] = "\\b",
  ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\127"] = "\\u007f" }
for i = 0, 31 do
  local c = string.char(i)
  ESCAPES[c] = ESCAPES[c] or format("\\u%04x", i)
end

local function key_text(key)
  local t = type(key)
  if t == "string" then return '"' .. key:gsub('[%c"\\/\127]', ESCAPES) .. '"' end
  if mtype(key) == "integer" then return tostring(key) end
  if t == "number" then return format("%.14g", key) end
  if t == "table" then
    local ok, cjson = pcall(require, "cjson")
    if ok then
      local enc_ok, s = pcall(cjson.encode, key)
      if enc_ok then return s end
    end
  end
  return tostring(key)
end
M.key_text = key_text

-- ---- the option --------------------------------------------------------------

--- The joblog option (a path, or the table form) as { path, format,
-- command, append }; raises a named error for a bad one. nil for nil.
function M.spec(opt)
  if opt == nil then return nil end
  if type(opt) == "string" then
    if opt == "" then fail("joblog must be a file path, got an empty string") end
    return { path = opt, format = "luaconcurrent" }
  end
  if type(opt) ~= "table" then
    fail("joblog must be a file path (string) or a table {path = ..., format = ...}, got %s", type(opt))
  end
  for k in pairs(opt) do
    if k ~= "path" and k ~= "format" and k ~= "command" and k ~= "send" and k ~= "append" then
      fail("joblog has an unknown field %s (path, format, command, send, append)", validate.show(k))
    end
  end
  if type(opt.path) ~= "string" or opt.path == "" then
    fail("joblog.path must be a file path (string), got %s", validate.show(opt.path))
  end
  local fmt = opt.format or "luaconcurrent"
  if fmt ~= "luaconcurrent" and fmt ~= "parallel" then
    fail('joblog.format must be "luaconcurrent" or "parallel", got %s', validate.show(opt.format))
  end
  if opt.command ~= nil and type(opt.command) ~= "function" then
    fail("joblog.command must be a function(key, arg) returning the Command text, got %s",
      type(opt.command))
  end
  if opt.send ~= nil and type(opt.send) ~= "function" then
    fail("joblog.send must be a function(key, arg, res) returning a number of bytes, got %s",
      type(opt.send))
  end
  if opt.append ~= nil and type(opt.append) ~= "boolean" then
    fail("joblog.append must be a boolean, got %s", type(opt.append))
  end
  return { path = opt.path, format = fmt, command = opt.command, send = opt.send,
    append = opt.append == true }
end

--- GNU parallel's --joblog VALUE: "+file" appends to file.
function M.cli(value)
  local rest = value:match("^%+(.+)$")
  if rest then return { path = rest, append = true } end
  return { path = value, append = false }
end

--- Construction-time check: the option is well formed and its file can
-- be written (or created), without touching it.
function M.check(opt)
  local spec = M.spec(opt)
  if not spec then return nil end
  local ok, err = core.writable(spec.path)
  if not ok then fail("cannot write the joblog: %s", err) end
  return spec
end

-- ---- reading -------------------------------------------------------------------

local function split(line, n)
  local cols = {}
  for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
  if n and #cols > n then   -- the last column (Command) may hold tabs
    cols[n] = table.concat(cols, "\t", n)
    for i = #cols, n + 1, -1 do cols[i] = nil end
  end
  return cols
end

-- Every whole line of path (a last line without its newline was cut short:
-- left out), through fn(line, number). false when the file is missing.
local function each_line(path, fn)
  local f = io.open(path, "rb")
  if not f then return false end
  local n = 0
  local ok, err = pcall(function()
    for line in f:lines("L") do
      if line:sub(-1) ~= "\n" then break end
      n = n + 1
      fn(line:sub(1, -2), n)
    end
  end)
  f:close()                          -- also when fn refused a line
  if not ok then error(err, 0) end
  return true
end

local function is_header(line) return line:sub(1, 4) == "Seq\t" end

-- parallel's own test of a joblog line (its --resume refuses others).
local function parallel_line(line)
  return line:match("^%d+%s+%S+%s+[-0-9.]+%s+[-0-9.]+%s+[-0-9.]+%s+[-0-9.]+%s+[-0-9.]+%s+[-0-9.]+%s")
end

function M.read_parallel(path)
  local jobs, last = {}, 0
  local found = each_line(path, function(line, n)
    if n == 1 and is_header(line) then return end
    if not parallel_line(line) then
      fail("joblog %s, line %d: not a GNU parallel joblog line: %s", path, n, validate.show(line))
    end
    local c = split(line, 9)
    local seq = math.tointeger(tonumber(c[1]))
    local exitval, signal = tonumber(c[7]), tonumber(c[8])
    local ok = exitval == 0 and signal == 0
    local job = jobs[seq]
    jobs[seq] = {
      ok = ok or (job ~= nil and job.ok), exitval = exitval, signal = signal, host = c[2],
      starttime = tonumber(c[3]), runtime = tonumber(c[4]), send = tonumber(c[5]),
      receive = tonumber(c[6]), command = (c[9] or ""):gsub("%z", "\n"),
    }
    if seq > last then last = seq end
  end)
  if not found then return nil end
  return jobs, last
end

--- What a joblog says of each task, for resume: { [id] = true (ran
-- successfully) | false (ran and failed) }. id is the Seq (format
-- "parallel") or the key's text (luaconcurrent's). A missing file is an
-- empty log.
function M.read(spec)
  if type(spec) == "string" then spec = M.spec(spec) end
  local seen = {}
  if spec.format == "parallel" then
    for seq, job in pairs(M.read_parallel(spec.path) or {}) do seen[seq] = job.ok end
    return seen
  end
  each_line(spec.path, function(line, n)
    if n == 1 and is_header(line) then
      if line .. "\n" ~= M.HEADER then
        fail("joblog %s has no Key column (GNU parallel's format?): resume it with "
          .. 'joblog = {path = ..., format = "parallel"}', spec.path)
      end
      return
    end
    local cols = split(line)
    if #cols >= 10 then
      seen[cols[#cols]] = tonumber(cols[7]) == 0 and tonumber(cols[8]) == 0
    end
  end)
  return seen
end

-- ---- writing ---------------------------------------------------------------------

local Log = setmetatable({}, { __index = lines.Lines })
Log.__index = Log

--- Open spec's file for a run; resume: whether the run resumes from it.
function M.open(spec, resume)
  if type(spec) == "string" then spec = M.spec(spec) end
  local parallel = spec.format == "parallel"
  local mode = "a"
  if parallel and not spec.append then
    local f = io.open(spec.path, "rb")
    local has = f and f:read(1) ~= nil
    if f then f:close() end
    if not (resume and has) then mode = "w" end
  end
  local self = setmetatable(lines.open(spec.path, mode, "joblog"), Log)
  self.spec, self.parallel = spec, parallel
  if self.size > 0 then
    -- Lines of one format only: the readers tell the two apart by header.
    local f = io.open(spec.path, "rb")
    local first = f and f:read("L") or ""
    if f then f:close() end
    local want = parallel and M.HEADER_PARALLEL or M.HEADER
    if is_header(first) and first ~= want then
      self.file:close()
      fail("joblog %s has %s columns, and this run writes %s: use another file or "
        .. 'joblog = {path = ..., format = "%s"}', spec.path,
        first == M.HEADER and "luaconcurrent's 10" or "GNU parallel's 9",
        parallel and "GNU parallel's 9" or "luaconcurrent's 10", parallel and "luaconcurrent" or "parallel")
    end
  end
  if self.size == 0 and not (parallel and spec.append) then
    self:line(parallel and M.HEADER_PARALLEL or M.HEADER)
  end
  return self
end

-- Exitval and Signal as GNU parallel writes them.
local function exit_fields(res)
  local signal = res.signal or 0
  if res.timeout then return -1, signal end
  if signal > 0 then return 0, signal end
  local code = res.returncode
  if code ~= nil and code >= 0 then return code, 0 end
  if res.success then return 0, 0 end
  if res.exception == "FileNotFoundError" then return 127, 0 end
  if res.exception == "PermissionError" then return 126, 0 end
  return 1, 0
end
M.exit_fields = exit_fields

-- Tabs and newlines would break luaconcurrent's columns.
local function one_field(s)
  s = tostring(s)
  if not s:find("[\t\n\r]") then return s end
  return (s:gsub("[\t\n\r]", " "))
end

--- The line for a finished task (seq: its index; command: its text;
-- input: the run's stdin string, or nil).
function Log:format(seq, res, command, input)
  local exitval, signal = exit_fields(res)
  local start = res.time_start
  if not start or start < 0 then start = 0 end
  local run = math.max(res.time_run or 0, 0)
  local send = self.spec.send
  if send then
    send = math.tointeger(tonumber(send(res.key, res.arg, res))) or 0
  else
    send = res.input_written or (type(input) == "string" and #input) or 0
  end
  local receive = res.stdout_size or #(res.stdout or "")
  command = tostring(command or "")
  local head = format("%d\t%s\t%.3f\t%10.3f\t%d\t%d\t%d\t%d\t", seq, one_field(res.host or ":"),
    start, floor(run * 1000) / 1000, send, receive, exitval, signal)
  if self.parallel then
    return head .. command:gsub("\n", "\0") .. "\n"
  end
  return head .. one_field(command) .. "\t" .. one_field(key_text(res.key)) .. "\n"
end

--- Log one finished task. true, or nil and the error (also kept).
function Log:write(seq, res, command, input)
  return self:line(self:format(seq, res, command, input))
end

return M
