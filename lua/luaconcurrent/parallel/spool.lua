--- --pipe's blocks written to files as they are read (parallel/blocks.lua
-- cuts them the same way in memory): for input the engine cannot splice.

local blocks = require "luaconcurrent.parallel.blocks"

local markers, rfind, read_header = blocks.markers, blocks.rfind, blocks.read_header

local M = {}

-- The next line-cut block of spool_blocks: pieces read (a MiB at a
-- time) and the piece and position of the last mark; nil at the end.
-- st: { f, block, mark, rem = pieces kept back, n = their size, eof }.
local function next_cut(st)
  while true do
    if st.eof and st.n == 0 then return nil end
    local pieces, size = st.rem, st.n
    st.rem, st.n = {}, 0
    local want = st.block - size % st.block
    while want > 0 and not st.eof do
      local data = st.f:read(math.min(want, 1 << 20))
      if data == nil then st.eof = true
      else
        pieces[#pieces + 1] = data
        size, want = size + #data, want - #data
      end
    end
    if size == 0 then return nil end
    if st.eof then return pieces, #pieces, #pieces[#pieces] end  -- at the end: all of it
    for k = #pieces, 1, -1 do
      local i = rfind(pieces[k], st.mark)
      if i then return pieces, k, i end
    end
    st.rem, st.n = pieces, size         -- a record longer than a block: read on
  end
end

-- Write pieces up to (cut_piece, cut_at) to path, keeping what follows in
-- st.rem; returns the bytes written.
local function spool_cut(st, path, pieces, cut_piece, cut_at)
  local sf, err = io.open(path, "wb")
  if not sf then error("lcparallel: --pipe: cannot write " .. path .. ": " .. tostring(err), 0) end
  local length = #st.header
  if st.header ~= "" then sf:write(st.header) end
  for k = 1, cut_piece - 1 do sf:write(pieces[k]); length = length + #pieces[k] end
  local last = pieces[cut_piece]
  sf:write(cut_at == #last and last or last:sub(1, cut_at))
  length = length + cut_at
  local ok, werr = sf:close()
  if not ok then error("lcparallel: --pipe: cannot write " .. path .. ": " .. tostring(werr), 0) end
  if cut_at < #last then st.rem[1], st.n = last:sub(cut_at + 1), #last - cut_at end
  for k = cut_piece + 1, #pieces do st.rem[#st.rem + 1] = pieces[k]; st.n = st.n + #pieces[k] end
  return length
end

--- --pipe's blocks (one-byte records, no -N) written to files in dir
-- as they are read: the same blocks as blocks.blocks, but no block is ever one
-- string (no 16 MiB copies, no fresh pages per block). For input the
-- engine cannot splice (a file on stdin, a socket). An iterator of parts
-- { path, offset = 0, length, header = "", spooled = true }.
function M.spool_blocks(o, f, dir)
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  if #mark ~= 1 or o.max_replace_args or o.max_args then return nil end
  local st = { f = f, block = blocks.size(o.block or "1M"), mark = mark, rem = {}, n = 0, eof = false }
  st.header = read_header(o, f)
  local count = 0
  return function()
    local pieces, cut_piece, cut_at = next_cut(st)
    if not pieces then return nil end
    count = count + 1
    local path = string.format("%s/%d", dir, count)
    local length = spool_cut(st, path, pieces, cut_piece, cut_at)
    return { path = path, offset = 0, length = length, header = "", spooled = true }
  end
end


return M
