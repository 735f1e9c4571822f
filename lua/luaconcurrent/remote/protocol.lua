--- What both ends of a remote session share (remote/executor.lua, the
-- local side; remote/engine_worker.lua, the engine-mode worker): the
-- local-to-remote message format — one line of tab-separated fields, each
-- with `\`, newline and tab escaped — and the bytecode header the two
-- compare at the handshake. The plain-Lua worker (remote/worker.lua) is
-- sent to the host as standalone source and loads nothing, so it carries
-- its own copy of split.

local M = {}

local ESC = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" }
local UNESC = { ["\\"] = "\\", n = "\n", t = "\t" }

--- The fields of t (strings) as one message line; t's fields are escaped
-- in place.
function M.line(t)
  for i = 1, #t do t[i] = t[i]:gsub("[\\\n\t]", ESC) end
  return table.concat(t, "\t") .. "\n"
end

--- A message line (without its newline) -> its fields.
function M.split(msg)
  local t = {}
  for f in (msg .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = (f:gsub("\\(.)", UNESC)) end
  return t
end

--- The header of Lua bytecode here (version, format, sizes, checks), hex:
-- function tasks cross only between ends whose headers match.
function M.bytecode_header()
  return (string.dump(load("return"), true):sub(1, 31):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

return M
