--- joblog: one line per finished task, in GNU parallel's columns (so the
-- tools that read its job logs read ours) plus the task's key:
--   Seq Host Starttime JobRuntime Send Receive Exitval Signal Command Key
-- tab-separated. The key is JSON-encoded (a string "a", a number 1), so a
-- resumed run can tell keys apart exactly. Each line is written and
-- flushed as its task ends: a SIGKILLed runner leaves every finished task
-- logged.

local M = {}

local HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tKey\n"

local encode = require("cjson").encode

local function key_text(key)
  if math.type(key) == "integer" then return tostring(key) end
  local ok, s = pcall(encode, key)
  if ok then return s end
  return tostring(key)
end
M.key_text = key_text

-- Tabs and newlines would break the columns.
local function one_field(s)
  s = tostring(s)
  if not s:find("[\t\n\r]") then return s end
  return (s:gsub("[\t\n\r]", " "))
end

--- Open path for appending (the header only when the file is new or empty).
function M.open(path)
  local f, err = io.open(path, "a+")
  if not f then require("luaconcurrent.validate").fail("cannot open joblog: %s", err) end
  if f:seek("end") == 0 then f:write(HEADER) end
  f:setvbuf("full")
  return setmetatable({ f = f }, { __index = M })
end

--- One finished task; command is the command line or a description.
function M:write(seq, res, command)
  local signal = res.signal or 0
  local exitval = res.returncode
  if exitval == nil or exitval < 0 then exitval = res.success and 0 or 1 end
  if signal > 0 then exitval = 0 end
  self.f:write(string.format("%d\t%s\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%s\t%s\n",
    seq, one_field(res.host or ":"), res.time_start or 0, math.max(res.time_run or 0, 0),
    #(res.input or ""), #(res.stdout or ""), exitval, signal, one_field(command),
    one_field(key_text(res.key))))
  self.f:flush()
end

function M:close()
  if self.f then self.f:close() end
  self.f = nil
end

--- What a joblog says of each key: { [key text] = true (succeeded) |
-- false (failed) }, the last line for a key winning. A missing file is an
-- empty log.
function M.read(path)
  local seen = {}
  local f = io.open(path, "r")
  if not f then return seen end
  for line in f:lines() do
    local cols = {}
    for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
    if #cols >= 10 and cols[1] ~= "Seq" then
      seen[cols[10]] = tonumber(cols[7]) == 0 and tonumber(cols[8]) == 0
    end
  end
  f:close()
  return seen
end

return M
