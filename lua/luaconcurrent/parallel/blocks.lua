--- --pipe and --pipepart's blocks of input, split on record boundaries as
-- GNU parallel splits them (--block, --recstart, --recend, -N records,
-- --header): strings read here, parts of a file the engine feeds
-- (--pipepart), or stdin cut inside the engine (stream_blocks).
-- parallel/spool.lua writes --pipe's blocks to files; parallel/pipe.lua
-- runs one job a block.

local args = require "luaconcurrent.parallel.args"
local input = require "luaconcurrent.parallel.input"

local usage_error = args.usage_error

local M = {}

--- --block's size: a number with parallel's prefixes (K M G T = 2^10..,
-- k m g t = 10^3.., Ki Mi ... = 2^10 ..).
function M.size(s)
  local n, unit = tostring(s):match("^(%d+%.?%d*)(%a*)$")
  local mult = { [""] = 1, K = 2^10, M = 2^20, G = 2^30, T = 2^40, k = 1e3, m = 1e6, g = 1e9, t = 1e12 }
  local u = unit and unit:gsub("^(%a)[iI]$", function(c) return c:upper() end)
  if not n or not mult[u] then usage_error("--block needs a size such as 1M, 16M, 500k, got %q", tostring(s)) end
  local v = math.floor(tonumber(n) * mult[u])
  if v < 1 then usage_error("--block must be at least one byte, got %q", tostring(s)) end
  return v
end

-- The split marker: recend then recstart (C escapes taken as -d takes them).
local function markers(o)
  local recend = o.recend and (o.recend == "" and "" or input.delimiter(o.recend)) or "\n"
  local recstart = o.recstart and input.delimiter(o.recstart) or ""
  if o.recstart and not o.recend then recend = "" end
  return recend, recstart
end

-- Last occurrence of plain string m in s, or nil.
local function rfind(s, m, upto)
  local n = #m
  if n == 1 then
    local b = m:byte()
    for i = upto or #s, 1, -1 do
      if s:byte(i) == b then return i end
    end
    return nil
  end
  local at, last = 1, nil
  while true do
    local i = s:find(m, at, true)
    if not i or (upto and i > upto) then return last end
    last, at = i, i + 1
  end
end

-- --header with --pipe: the first line of f, sent before every block ("" without it).
local function read_header(o, f)
  if not o.header then return "" end
  if o.header ~= ":" and o.header ~= ".*\\n" and o.header ~= ".*\n" then
    usage_error("--header %q: lcparallel takes --header : (the first line)", o.header)
  end
  return f:read("L") or ""
end

-- -N with --pipe: records a block, or nil.
local function records_per_block(o)
  local nrec = o.max_replace_args or o.max_args
  nrec = nrec and math.tointeger(tonumber(nrec))
  if (o.max_replace_args or o.max_args) and (not nrec or nrec < 1) then
    usage_error("-N with --pipe needs a number of records of 1 or more")
  end
  return nrec
end

-- One-byte records (lines): parallel's blocks (the buffer topped up to
-- the block size, cut after its last newline), with the fewest copies:
-- what follows the last newline is all that is kept back.
local function line_blocks(f, block, mark, header)
  local rem = ""
  return function()
    while true do
      local data = f:read(block - #rem % block)
      if data == nil then
        if rem == "" then return nil end
        local r = rem
        rem = ""
        return header .. r
      end
      local i = rfind(data, mark)
      if i then
        local chunk = i == #data and data or data:sub(1, i)
        if rem ~= "" then chunk = rem .. chunk end
        rem = i == #data and "" or data:sub(i + 1)
        if header ~= "" then chunk = header .. chunk end
        return chunk
      end
      rem = rem .. data
    end
  end
end

-- -N: cut every nrec records off buf (parallel's nindex: the n-th marker,
-- never the one at the start), passing each to emit; returns what is left.
local function split_records(buf, mark, recend, nrec, emit)
  while mark ~= "" and buf ~= "" do
    local i0 = 0            -- 0-based, as parallel counts
    for _ = 1, nrec do
      local j = buf:find(mark, i0 + 2, true)
      if not j then i0 = nil; break end
      i0 = j - 1
    end
    if not i0 then break end
    local pos = i0 + #recend
    emit(buf:sub(1, pos))
    buf = buf:sub(pos + 1)
  end
  return buf
end

-- Without -N: cut buf after its last split marker, passing the part
-- before to emit; returns what is left.
local function split_last(buf, mark, recend, recstart, emit)
  if mark == "" then emit(buf); return "" end
  local i = rfind(buf, mark)
  if i then
    local cut = i + #recend - 1
    if recstart ~= "" and i == 1 then return buf end   -- no record before it yet
    emit(buf:sub(1, cut))
    buf = buf:sub(cut + 1)
  end
  return buf
end

-- Blocks split on --recstart/--recend markers, or -N records a block.
local function record_blocks(f, block, recend, recstart, nrec, header)
  local mark = recend .. recstart
  local buf, eof, ready = "", false, {}
  local function emit(chunk)
    if chunk ~= "" then ready[#ready + 1] = header == "" and chunk or header .. chunk end
  end
  local function split()
    if nrec then
      buf = split_records(buf, mark, recend, nrec, emit)
    else
      buf = split_last(buf, mark, recend, recstart, emit)
    end
  end
  return function()
    while #ready == 0 do
      if eof then
        if buf ~= "" then emit(buf); buf = "" end
        if #ready == 0 then return nil end
        break
      end
      local want = block - #buf % block
      local data = f:read(want)
      if data == nil then eof = true
      else
        buf = buf == "" and data or buf .. data
        split()
      end
    end
    return table.remove(ready, 1)
  end
end

--- --pipe: blocks of f (stdin, or -a's file); an iterator of strings.
function M.blocks(o, f)
  local block = M.size(o.block or "1M")
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  local nrec = records_per_block(o)
  local header = read_header(o, f)
  if #mark == 1 and not nrec then return line_blocks(f, block, mark, header) end
  return record_blocks(f, block, recend, recstart, nrec, header)
end

--- --pipe from a pipe on stdin, the fast path: each block goes from stdin
-- to its job's stdin inside the engine (spliced, its end found by reading
-- only its tail: feed.h's cut feeds), one block at a time in stdin's
-- order; the engine hands back what follows each block's last newline,
-- which starts the next. nil where it does not apply: records other
-- than one byte, -N, --retries (a block is not kept to try again),
-- stdin a file (seekable: spool_blocks) or not openable again (a socket).
-- A source { next() -> input | false (wait) | nil (end), fed(rec) }.
function M.stream_blocks(o)
  local recend, recstart = markers(o)
  if #(recend .. recstart) ~= 1 or recstart ~= "" or o.max_replace_args or o.max_args then return nil end
  if (tonumber(o.retries) or 1) > 1 or io.stdin:seek("cur") then return nil end
  local probe = io.open("/proc/self/fd/0", "rb")
  if not probe then return nil end
  probe:close()
  local block = M.size(o.block or "1M")
  io.stdin:setvbuf("no")            -- nothing read ahead of the engine
  local header = read_header(o, io.stdin)
  local rest = io.stdin:read(1)     -- no job for empty input
  local src = { rest = rest or "", eof = rest == nil, waiting = false }
  function src.next()
    if src.waiting then return false end
    if src.eof and src.rest == "" then return nil end
    src.waiting = true
    return { path = "/proc/self/fd/0", offset = 0, cut = recend, block = block,
             length = block - #src.rest % block, prefix = header .. src.rest }
  end
  function src.fed(rec)
    src.rest, src.eof, src.waiting = rec.rest, rec.eof, false
  end
  return src
end

--- --pipepart's split points after p: the first mark at or after p (as
-- parallel finds them), reading a little past p, more only for a long
-- record; nil when there is none.
local function split_after(f, p, mark, recend)
  f:seek("set", p)
  local buf, want = "", 4096
  while true do
    local data = f:read(want)
    if not data then return nil end
    buf = buf .. data
    local i = buf:find(mark, 1, true)
    if i then return p + i - 1 + #recend end
    want = math.min(want * 2, 1 << 20)
  end
end

--- --pipepart -a FILE: the file's parts, each fed by the engine from the
-- file (spliced from the page cache) when its job starts; an iterator of
-- parts { path, offset, length, header }.
function M.parts(o, path)
  local f, err = io.open(path, "rb")
  if not f then usage_error("--pipepart: cannot open %s: %s", path, tostring(err)) end
  local block = M.size(o.block or "1M")
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  local size = f:seek("end")
  f:seek("set", 0)
  local header = o.header and (f:read("L") or "") or ""
  local pos, p = { #header }, #header + block
  while p < size do
    if mark ~= "" then p = split_after(f, p, mark, recend) end
    if not p then break end
    pos[#pos + 1] = p
    p = p + block
  end
  if pos[#pos] ~= size then pos[#pos + 1] = size end
  f:close()
  local k = 0
  return function()
    k = k + 1
    if not pos[k + 1] then return nil end
    return { path = path, offset = pos[k], length = pos[k + 1] - pos[k], header = header, pipepart = true }
  end
end


M.markers, M.rfind, M.read_header = markers, rfind, read_header

return M
