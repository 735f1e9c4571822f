--- --pipe and --pipepart: blocks of input to each job's stdin, split on
-- record boundaries as GNU parallel splits them (--block, --recstart,
-- --recend, -N records, --header), and a small scheduler that runs one
-- job a block on the engine's loop (the engine writes each block to its
-- job's stdin pipe while the loop runs the others).

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"
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

--- --pipe's blocks (one-byte records, no -N) written to files in dir
-- as they are read, a MiB at a time: the same blocks as M.blocks, but no
-- block is ever one string (no 16 MiB copies, no fresh pages per block).
-- An iterator of parts { path, offset = 0, length, header, spooled }.
function M.spool_blocks(o, f, dir)
  local block = M.size(o.block or "1M")
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  if #mark ~= 1 or o.max_replace_args or o.max_args then return nil end
  local header = read_header(o, f)
  local PIECE = 1 << 20
  local rem, n, eof = {}, 0, false      -- pieces kept back, their size
  local count = 0
  return function()
    local pieces, size, cut_piece, cut_at
    repeat
      if eof and n == 0 then return nil end
      pieces, size = rem, n
      rem, n = {}, 0
      local want = block - size % block
      while want > 0 and not eof do
        local data = f:read(math.min(want, PIECE))
        if data == nil then eof = true
        else
          pieces[#pieces + 1] = data
          size, want = size + #data, want - #data
        end
      end
      if size == 0 then return nil end
      -- cut after the last newline (at EOF: keep everything)
      cut_piece, cut_at = #pieces, #pieces[#pieces]
      if not eof then
        cut_piece = nil
        for k = #pieces, 1, -1 do
          local i = rfind(pieces[k], mark)
          if i then cut_piece, cut_at = k, i; break end
        end
        if not cut_piece then rem, n = pieces, size end   -- a record longer than a block: read on
      end
    until cut_piece
    count = count + 1
    local path = string.format("%s/%d", dir, count)
    local sf, err = io.open(path, "wb")
    if not sf then error("lcparallel: --pipe: cannot write " .. path .. ": " .. tostring(err), 0) end
    local length = #header
    if header ~= "" then sf:write(header) end
    for k = 1, cut_piece - 1 do sf:write(pieces[k]); length = length + #pieces[k] end
    local last = pieces[cut_piece]
    if cut_at == #last then sf:write(last) else sf:write(last:sub(1, cut_at)) end
    length = length + cut_at
    local ok, werr = sf:close()
    if not ok then error("lcparallel: --pipe: cannot write " .. path .. ": " .. tostring(werr), 0) end
    if cut_at < #last then rem[1], n = last:sub(cut_at + 1), #last - cut_at end
    for k = cut_piece + 1, #pieces do rem[#rem + 1] = pieces[k]; n = n + #pieces[k] end
    return { path = path, offset = 0, length = length, header = "", spooled = true }
  end
end

--- --pipepart -a FILE: the file's split points (as parallel finds them),
-- then each part read when its job starts; an iterator of strings.
function M.parts(o, path)
  local f, err = io.open(path, "rb")
  if not f then usage_error("--pipepart: cannot open %s: %s", path, tostring(err)) end
  local block = M.size(o.block or "1M")
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  local size = f:seek("end")
  local header, skip = "", 0
  if o.header then
    f:seek("set", 0)
    header = f:read("L") or ""
    skip = #header
  end
  local pos = { skip }
  local p = block + skip
  while p < size do
    if mark == "" then
      pos[#pos + 1] = p
    else
      f:seek("set", p)
      local buf, found = "", nil
      while true do
        local data = f:read(131072)
        if not data then break end
        buf = buf .. data
        local i = buf:find(mark, 1, true)
        if i then found = p + i - 1 + #recend; break end
      end
      if not found then break end
      p = found
      pos[#pos + 1] = p
    end
    p = p + block
  end
  if pos[#pos] ~= size then pos[#pos + 1] = size end
  f:close()
  -- A part is not read here: its job reads it from the file (part_command),
  -- from the kernel's page cache to its stdin pipe, as two dd halves would.
  local k = 0
  return function()
    k = k + 1
    if not pos[k + 1] then return nil end
    return { path = path, offset = pos[k], length = pos[k + 1] - pos[k], header = header }
  end
end

--- The shell text that feeds a part to command's stdin.
function M.part_command(part, command, quote)
  if part.spooled then return "exec <" .. quote(part.path) .. "; " .. command end
  local dd = string.format("dd if=%s bs=1M iflag=skip_bytes,count_bytes skip=%d count=%d status=none",
    quote(part.path), part.offset, part.length)
  if part.header ~= "" then dd = "{ printf %s " .. quote(part.header) .. "; " .. dd .. "; }" end
  return dd .. " | " .. command
end

--- Run one job a block: at most jobs at once; on_result(res) as each
-- ends (res.key = the job's seq, res.input_size its block's size).
-- c: { jobs, blocks, argv_of(seq, slot) -> argv, timeout, kill_grace,
--      retries (extra tries), on_start(seq), on_result(res), halted() -> nil|"soon"|"now" }
function M.run(c)
  local loop = core.new_loop()
  local running, byid, free, used = 0, {}, {}, 0
  local seq, eof, ahead = 0, false, nil
  local ok, err = pcall(function()
    while true do
      local stop = c.halted()
      if stop == "now" then
        for id in pairs(byid) do loop:kill(id) end
      end
      while not stop and not eof and running < c.jobs do
        local block = ahead or c.blocks()
        ahead = nil
        if block == nil then eof = true; break end
        seq = seq + 1
        local slot = table.remove(free)
        if not slot then used = used + 1; slot = used end
        local part = type(block) == "table" and block or nil
        if part then block = nil end
        local job = { seq = seq, slot = slot, input = block, tries = 1,
                      size = part and part.length + #part.header or #block,
                      spooled = part and part.spooled and part.path }
        job.argv = c.argv_of(seq, slot, part)
        if c.on_start then c.on_start(seq) end
        local id, msg, errname = loop:spawn(job.argv, nil, nil, block, c.timeout or 0, c.kill_grace)
        if id then
          byid[id], running = job, running + 1
        else
          local res = ProcResult.spawn_failure(seq, nil, msg, errname, core.wallclock())
          free[#free + 1] = slot
          c.on_result(res, job)
        end
      end
      if running == 0 and (eof or stop) then break end
      -- Blocks in files need nothing from this loop while their jobs run:
      -- read the next one now, so reading and the jobs overlap.
      if c.prefetch and not ahead and not eof and not stop and running >= c.jobs then
        ahead = c.blocks()
        if ahead == nil then eof = true end
      end
      for _, rec in ipairs(loop:poll()) do
        local job = byid[rec.id]
        if job then
          byid[rec.id], running = nil, running - 1
          local res = ProcResult.from_record(job.seq, nil, rec)
          if not res.success and job.tries <= (c.retries or 0) and not c.halted() then
            job.tries = job.tries + 1
            local id = loop:spawn(job.argv, nil, nil, job.input, c.timeout or 0, c.kill_grace)
            if id then byid[id], running = job, running + 1; goto next end
          end
          free[#free + 1] = job.slot
          if job.spooled then os.remove(job.spooled) end
          job.input_size = job.size
          job.input = nil
          c.on_result(res, job)
        end
        ::next::
      end
      local sig = core.signal_pending()
      if sig then error("lcparallel: interrupted by " .. sig, 0) end
    end
  end)
  loop:close()
  if not ok then error(err, 0) end
end

return M
