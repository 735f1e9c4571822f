--- --pipe and --pipepart's small scheduler: one job a block on the engine's
-- loop (the engine feeds each block to its job's stdin while the loop runs
-- the others). The blocks come from parallel/blocks.lua or
-- parallel/spool.lua.

local core = require "luaconcurrent.core"
local ProcResult = require "luaconcurrent.result"

local M = {}

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
