--- A file of whole lines (the joblog, the results file): opened for
-- appending with a cut last line removed, each line one write() on an
-- O_APPEND fd (core.file_open), write errors remembered and said once.

local core = require "luaconcurrent.core"
local validate = require "luaconcurrent.validate"

local M = {}

local fail = validate.fail
local format = string.format

-- Size of the whole line at the end of f that has no newline (a cut
-- line), reading back from the end; 0 when it ends in a newline.
local function cut_tail(path, size)
  if size == 0 then return 0 end
  local f = io.open(path, "rb")
  if not f then return 0 end
  local pos, tail = size, 0
  while pos > 0 do
    local n = math.min(4096, pos)
    pos = pos - n
    f:seek("set", pos)
    local chunk = f:read(n) or ""
    local nl = chunk:match(".*()\n")
    if nl then
      tail = tail + (#chunk - nl)
      break
    end
    tail = tail + #chunk
  end
  f:close()
  return tail
end

-- A file of lines (the joblog, the results file): opened for appending,
-- a cut last line removed, each line one write.
local Lines = {}
Lines.__index = Lines

--- Open path ("a", or "w": truncate) for whole-line writes; what names it
-- in messages ("joblog", "results file").
function M.open(path, mode, what)
  local file, size = core.file_open(path, mode or "a")
  if not file then fail("cannot open the %s: %s", what, size) end
  local self = setmetatable({ file = file, path = path, what = what, lost = 0, written = 0, size = size }, Lines)
  local cut = cut_tail(path, size)
  if cut > 0 then
    local ok, err = file:truncate(size - cut)
    if not ok then
      file:close()
      fail("cannot repair the %s %s (its last line was cut short): %s", what, path, err)
    end
    io.stderr:write(format("luaconcurrent: %s %s: its last line was cut short (%d bytes): "
      .. "removed, the file goes on from the line before\n", what, path, cut))
    self.size = size - cut
  end
  return self
end

--- One whole line; a failure is remembered (and said on stderr once).
function Lines:line(text)
  local ok, err = self.file:write(text)
  if ok then
    self.written = self.written + 1
    return true
  end
  self.lost = self.lost + 1
  if not self.error then
    self.error = format("cannot write to the %s %s: %s", self.what, self.path, err)
    io.stderr:write("luaconcurrent: ", self.error, "; lines from now on may be missing\n")
  end
  return nil, err
end

--- Close; a summary of the write errors, or nil.
function Lines:close()
  if self.file then
    local ok, err = self.file:close()
    self.file = nil
    if not ok and not self.error then
      self.lost = math.max(self.lost, 1)
      self.error = format("cannot write to the %s %s: %s", self.what, self.path, err)
      io.stderr:write("luaconcurrent: ", self.error, "\n")
    end
  end
  if self.error then
    return format("%s (%d line(s) not written)", self.error, self.lost)
  end
  return nil
end

M.Lines = Lines

return M
