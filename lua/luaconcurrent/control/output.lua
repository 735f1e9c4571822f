--- output: how tasks' output reaches the runner's own stdout and stderr
-- while the run goes on.
--   "collect"  only in the results (the default)
--   "stream"   each task's output as soon as it finishes
--   "ordered"  in task order, each as soon as every earlier task is done
--              (GNU parallel -k)
--   "lines"    each line as soon as it is complete, while tasks run (GNU
--              parallel --line-buffer): subprocess output arrives live;
--              a function task's at its end. Never half a line from two
--              tasks on one line: a last line without a newline gets one
-- tag = true prefixes each line with the task's key and a tab; a function
-- tag(res) gives the prefix itself.

local validate = require "luaconcurrent.validate"

local M = {}
M.MODES = { collect = true, stream = true, ordered = true, lines = true }

function M.check(mode, tag)
  if mode ~= nil and not M.MODES[mode] then
    validate.fail('output must be "collect", "stream", "ordered" or "lines", got %s',
      validate.show(mode))
  end
  if tag ~= nil and type(tag) ~= "boolean" and type(tag) ~= "function" then
    validate.fail("tag must be a boolean or a function, got %s", type(tag))
  end
end

local function prefix_of(tag, res)
  if tag == true then return tostring(res.key) .. "\t" end
  if tag then return tostring(tag(res)) end
  return nil
end

-- An output past max_capture is in its file: copied out in pieces, then
-- the file is put back at its start for whoever reads the result.
local function emit_file(fh, file, prefix, whole_lines)
  file:seek("set", 0)
  if prefix then
    for line in file:lines("L") do
      fh:write(prefix, line)
      if line:sub(-1) ~= "\n" then fh:write("\n") end
    end
  else
    local last
    for piece in function() return file:read(1 << 16) end do
      fh:write(piece)
      last = piece
    end
    if whole_lines and last and last:sub(-1) ~= "\n" then fh:write("\n") end
  end
  file:seek("set", 0)
end

local function emit(fh, text, prefix, whole_lines, file)
  if file then return emit_file(fh, file, prefix, whole_lines) end
  if text == nil or text == "" then return end
  if prefix then
    text = prefix .. text:gsub("\n(.)", "\n" .. prefix:gsub("%%", "%%%%") .. "%1")
  end
  if (whole_lines or prefix) and text:sub(-1) ~= "\n" then text = text .. "\n" end
  fh:write(text)
end

--- An output writer, or nil for "collect". before/after run around every
-- write (the progress bar steps aside).
function M.new(mode, tag, around)
  if mode == nil or mode == "collect" then return nil end
  local self = { mode = mode, tag = tag, around = around, held = {}, next_index = 1,
                 partial = {} }
  return setmetatable(self, { __index = M })
end

function M:write_one(res)
  if res == false then return end     -- a task with nothing to show
  local prefix = prefix_of(self.tag, res)
  if self.around then self.around(false) end
  emit(io.stdout, res.stdout, prefix, self.mode == "lines", res.stdout_file)
  io.stdout:flush()
  emit(io.stderr, res.stderr, prefix, self.mode == "lines", res.stderr_file)
  if self.around then self.around(true) end
end

--- Live output of a running task (mode "lines"): complete lines go out
-- now, a partial one waits for the rest.
function M:live(index, key, data, is_err)
  local parts = self.partial[index]
  if not parts then
    parts = { key = key, [true] = "", [false] = "" }
    self.partial[index] = parts
  end
  local text = parts[is_err] .. data
  local cut = text:match("^.*()\n")
  if not cut then parts[is_err] = text; return end
  parts[is_err] = text:sub(cut + 1)
  local prefix = prefix_of(self.tag, { key = key })
  if self.around then self.around(false) end
  emit(is_err and io.stderr or io.stdout, text:sub(1, cut), prefix, true)
  if not is_err then io.stdout:flush() end
  if self.around then self.around(true) end
end

--- Task index finished with res (false: show nothing, e.g. skipped).
function M:finished(index, res)
  local parts = self.partial[index]
  if parts then                       -- its lines went out live: only the rest
    self.partial[index] = nil
    local prefix = res and prefix_of(self.tag, res)
    emit(io.stdout, parts[false], prefix, true)
    io.stdout:flush()
    emit(io.stderr, parts[true], prefix, true)
    return
  end
  if self.mode ~= "ordered" then return self:write_one(res) end
  self.held[index] = res
  while self.held[self.next_index] ~= nil do
    local r = self.held[self.next_index]
    self.held[self.next_index] = nil
    self.next_index = self.next_index + 1
    self:write_one(r)
  end
end

--- The run is over: what "ordered" still holds (after a halt or a
-- stop, tasks that never ran leave gaps) goes out in task order.
function M:drain()
  local left = {}
  for index in pairs(self.held) do left[#left + 1] = index end
  table.sort(left)
  for _, index in ipairs(left) do self:write_one(self.held[index]) end
  self.held = {}
end

return M
