--- The command line for shell users, GNU parallel's way:
--
--   luaconcurrent --parallel [options] command [args] ::: values ... [:::: file ...]
--   lcparallel [options] command [args] ::: values ...     (the same)
--
-- GNU parallel 20221122's documented behaviour is the contract. This is
-- the entry: the jobs of the command line, or --pipe's blocks, run. The
-- work is in parallel/: args.lua (options), usage.lua (--help ...),
-- settings.lua and hosts.lua (options to the API's settings), input.lua
-- (sources, streamed), command.lua (replacement strings, quoting, the
-- shell), jobs.lua (each job made a task as a slot frees), dryrun.lua,
-- run.lua (the run on ProcRunAsyncio), output.lua (output, exit status),
-- timeout.lua (--timeout N%), blocks.lua, spool.lua and pipe.lua
-- (--pipe, --pipepart), results.lua.

local core = require "luaconcurrent.core"
local args = require "luaconcurrent.parallel.args"
local command = require "luaconcurrent.parallel.command"
local jobs = require "luaconcurrent.parallel.jobs"
local usage = require "luaconcurrent.parallel.usage"

local usage_error = args.usage_error

local M = {}

M.USAGE, M.VERSION = usage.USAGE, usage.VERSION
M.job_env = jobs.job_env

--- --pipe / --pipepart's blocks: stdin or -a's file; --pipepart a file.
function M.blocks_of(o, sources)
  local blocks = require "luaconcurrent.parallel.blocks"
  local files = {}
  for _, src in ipairs(sources) do
    if src.kind ~= "file" then usage_error("%s takes its input from stdin or -a FILE, not ::: values",
      o.pipepart and "--pipepart" or "--pipe") end
    files[#files + 1] = src.path
  end
  if #files > 1 then usage_error("--pipe/--pipepart read one input, got %d files", #files) end
  if o.pipepart then
    if not files[1] or files[1] == "-" then usage_error("--pipepart needs a file: -a FILE or :::: FILE") end
    return blocks.parts(o, files[1])
  end
  local f = io.stdin
  local stream = not o.dry_run and (not files[1] or files[1] == "-") and blocks.stream_blocks(o)
  if stream then return stream end     -- stdin a pipe: the engine splices it
  if files[1] and files[1] ~= "-" then
    local err
    f, err = io.open(files[1], "rb")
    if not f then usage_error("cannot open input file %s: %s", files[1], tostring(err)) end
  end
  if not o.dry_run and os.getenv("LC_PIPE_SPOOL") ~= "0" then
    -- blocks to files in memory (tmpfs): parallel/spool.lua
    local d = io.open("/dev/shm") and "/dev/shm" or os.getenv("TMPDIR") or "/tmp"
    local spool = string.format("%s/lcparallel.%d.%d", d, math.floor(core.wallclock() * 1000), math.random(1e9))
    if os.execute("mkdir -m 700 " .. command.quote(spool) .. " 2>/dev/null") then
      local it = require("luaconcurrent.parallel.spool").spool_blocks(o, f, spool)
      if it then M.spool_dir = spool; return it, spool end
      os.remove(spool)
    end
  end
  return blocks.blocks(o, f)
end

--- Run --pipe jobs: a block a job, on the engine's loop (parallel/pipe.lua).
function M.run_pipe(s, blocks, c)
  local pipe = require "luaconcurrent.parallel.pipe"
  local joblog = require "luaconcurrent.control.joblog"
  local log
  if s.joblog then
    log = joblog.open({ path = s.joblog, format = "parallel", append = s.joblog_append }, false)
  end
  local spool = c.spool
  local ok, err = pcall(pipe.run, {
    jobs = c.jobs, blocks = blocks, timeout = s.timeout, kill_grace = s.kill_grace,
    retries = s.retries, on_start = c.on_start, halted = c.halted,
    argv_of = function(seq, slot)
      local text = command.expand(c.tpl, {}, seq, slot, {})
      c.jobs_info[seq] = { {}, text, slot }
      local argv
      if c.prog then
        argv = command.expand(c.tpl, {}, seq, slot, { direct = true })
        if s.nice then argv = { "nice", "-n", tostring(s.nice), table.unpack(argv) } end
      else
        argv = { table.unpack(c.pargs) }
        argv[#argv + 1] = M.job_env(argv[#argv - 1], seq, slot) .. text
      end
      return argv
    end,
    on_result = function(res, job)
      res.input_written = job.input_size
      if log then log:write(res.key, res, c.jobs_info[res.key] and c.jobs_info[res.key][2] or "") end
      c.on_result(res)
    end,
  })
  if log then log:close() end
  if spool then os.execute("rm -rf " .. command.quote(spool)) end
  if not ok then error(err, 0) end
  return c.finish()
end

--- Run; returns the exit status.
function M.main(argv)
  local ok, status = xpcall(M.run_command_line, function(err)
    if type(err) == "table" and err.usage then return err end
    return debug.traceback(tostring(err), 2)
  end, argv)
  if M.spool_dir then   -- --pipe's blocks in memory files: gone however the run ended
    os.execute("rm -rf " .. command.quote(M.spool_dir))
    M.spool_dir = nil
  end
  if ok then return status end
  if type(status) == "table" then
    io.stderr:write("lcparallel: ", status.usage, "\n")
    if status.hint ~= false then io.stderr:write("lcparallel: (lcparallel --help lists the options)\n") end
    return 255
  end
  io.stderr:write("lcparallel: ", tostring(status):gsub("^luaconcurrent: ", ""), "\n")
  return 255
end

function M.run_command_line(argv)
  local o, words, sources = args.parse_all(argv)
  local asked = usage.asked(o)
  if asked then io.stdout:write(asked); return 0 end
  local s = require("luaconcurrent.parallel.settings").of(o)
  local slots = (s.jobs == nil or s.jobs == 0) and 1 or s.jobs
  local pipe_mode = o.pipe or o.pipepart
  local next_job, names, blocks, spool
  local sizing = {}
  if pipe_mode then
    blocks, spool = M.blocks_of(o, sources)
  else
    next_job, names = jobs.source(o, sources, s.jobs ~= 0 and s.jobs or 1, sizing)
  end
  local c = jobs.command(o, s, words, names, pipe_mode, sizing)
  local dryrun = require "luaconcurrent.parallel.dryrun"
  if o.dry_run and pipe_mode then return dryrun.blocks(c, blocks, slots) end
  if o.dry_run then return dryrun.jobs(c, next_job, names, slots) end
  local run = require("luaconcurrent.parallel.run").new(o, s, c, names)
  if pipe_mode then return M.run_pipe(s, blocks, run:pipe_context(spool)) end
  return run:go(next_job)
end

return M
