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
-- as they are read: the same blocks as M.blocks, but no block is ever one
-- string (no 16 MiB copies, no fresh pages per block). For input the
-- engine cannot splice (a file on stdin, a socket). An iterator of parts
-- { path, offset = 0, length, header = "", spooled = true }.
function M.spool_blocks(o, f, dir)
  local recend, recstart = markers(o)
  local mark = recend .. recstart
  if #mark ~= 1 or o.max_replace_args or o.max_args then return nil end
  local st = { f = f, block = M.size(o.block or "1M"), mark = mark, rem = {}, n = 0, eof = false }
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

-- What loop:spawn takes as a block's input, and its size in bytes.
local function spawn_input(block)
  if type(block) == "string" then return block, #block end
  if block.cut then return block, nil end           -- known once fed
  return { path = block.path, offset = block.offset, length = block.length, prefix = block.header },
    block.length + #block.header
end

-- The run's state: c (see M.run), the loop, jobs by engine id, free slots.
local function new_run(c)
  local src = c.blocks
  if type(src) == "function" then src = { next = src } end
  return { c = c, src = src, loop = core.new_loop(), running = 0, byid = {}, free = {}, used = 0,
           seq = 0, eof = false }
end

local function spawn(r, job)
  return r.loop:spawn(job.argv, nil, nil, job.input, r.c.timeout or 0, r.c.kill_grace)
end

-- A stream block whose job could not start is still in stdin: `true`
-- takes it (the engine reads a block whole whatever its job does), so the
-- next block starts where it should; its record is no job's result.
local function drain(r, job)
  local id, msg = r.loop:spawn({ "true" }, nil, nil, job.input, 0, r.c.kill_grace)
  if not id then error("lcparallel: --pipe: cannot skip a block of stdin: " .. msg, 0) end
  r.byid[id], r.running = { drain = true, feeding = true }, r.running + 1
end

-- Start a job for the next block; false when there is none to start now.
local function start_next(r)
  local block = r.src.next()
  if block == nil then r.eof = true end
  if not block then return false end
  r.seq = r.seq + 1
  local slot = table.remove(r.free)
  if not slot then r.used = r.used + 1; slot = r.used end
  local job = { seq = r.seq, slot = slot, tries = 1, spooled = block.spooled and block.path,
                pipepart = block.pipepart }
  job.input, job.size = spawn_input(block)
  job.feeding = block.cut ~= nil
  job.argv = r.c.argv_of(r.seq, slot)
  if r.c.on_start then r.c.on_start(r.seq) end
  local id, msg, errname = spawn(r, job)
  if id then
    r.byid[id], r.running = job, r.running + 1
  else
    if job.feeding then drain(r, job) end
    r.free[#r.free + 1] = slot
    r.c.on_result(ProcResult.spawn_failure(r.seq, nil, msg, errname, core.wallclock()), job)
  end
  return true
end

-- A stream block's end is known: its size, and the next block can start.
local function fed(r, job, rec)
  if not job.feeding then return end
  if not rec.fed then
    error("lcparallel: --pipe: lost its place in stdin (" .. tostring(rec.input_error) .. ")", 0)
  end
  job.feeding, job.size = false, rec.block_size
  r.src.fed(rec)
end

-- GNU parallel's --pipe (not --pipepart): a job that stops reading
-- before the end of its block fails, Signal 13 in the joblog (the writer
-- feeding it got SIGPIPE), whatever its own exit status.
local function stopped_reading(res, job)
  local epipe = res.input_error and res.input_error:find("(EPIPE)", 1, true)
  if job.pipepart or not (res.success and epipe) then return res end
  res.success, res.signal = false, 13
  res.error = res.input_error .. ": a --pipe job that does not read its whole block fails, as in GNU parallel"
  return res
end

-- A job's final record: try it again (--retries) or hand its result on.
local function finished(r, id, job, rec)
  r.byid[id], r.running = nil, r.running - 1
  local res = stopped_reading(ProcResult.from_record(job.seq, nil, rec), job)
  if not res.success and job.tries <= (r.c.retries or 0) and not r.c.halted() then
    job.tries = job.tries + 1
    local nid = spawn(r, job)
    if nid then r.byid[nid], r.running = job, r.running + 1; return end
  end
  r.free[#r.free + 1] = job.slot
  if job.spooled then os.remove(job.spooled) end
  job.input_size, job.input = job.size, nil
  r.c.on_result(res, job)
end

local function on_records(r, records)
  for _, rec in ipairs(records) do
    local job = r.byid[rec.id]
    if job then
      if rec.fed or (rec.returncode and job.feeding) then fed(r, job, rec) end
      if rec.returncode and job.drain then
        r.byid[rec.id], r.running = nil, r.running - 1
      elseif rec.returncode then
        finished(r, rec.id, job, rec)
      end
    end
  end
end

-- One turn: start what may start, wait for records. false: all done.
local function turn(r)
  local stop = r.c.halted()
  if stop == "now" then
    for id in pairs(r.byid) do r.loop:kill(id) end
  end
  while not stop and not r.eof and r.running < r.c.jobs and start_next(r) do end
  if r.running == 0 and (r.eof or stop) then return false end
  on_records(r, r.loop:poll())
  local sig = core.signal_pending()
  if sig then error("lcparallel: interrupted by " .. sig, 0) end
  return true
end

--- Run one job a block: at most jobs at once; on_result(res) as each
-- ends (res.key = the job's seq, res.input_size its block's size).
-- c: { jobs, blocks (an iterator of blocks, or a source from
--      stream_blocks), argv_of(seq, slot) -> argv, timeout, kill_grace,
--      retries (extra tries), on_start(seq), on_result(res),
--      halted() -> nil|"soon"|"now" }
function M.run(c)
  local r = new_run(c)
  local ok, err = pcall(function()
    while turn(r) do end
  end)
  r.loop:close()
  if not ok then error(err, 0) end
end

return M
