--- The command line for shell users, GNU parallel's way:
--
--   luaconcurrent --parallel [options] command [args] ::: values ... [:::: file ...]
--   lcparallel [options] command [args] ::: values ...     (the same)
--
-- GNU parallel 20221122's documented behaviour is the contract: options
-- (parallel/args.lua), input (parallel/input.lua: streamed from stdin,
-- several sources combined), replacement strings, quoting and the shell
-- (parallel/command.lua), output, exit status and halt rules
-- (parallel/output.lua); the rest is glue (here).
-- Built on the Lua API: each job is a ProcRunAsyncio subprocess task, the
-- tasks an iterator so a job is built only when a slot is free.

local core = require "luaconcurrent.core"
local hostlib = require "luaconcurrent.remote.hosts"
local args = require "luaconcurrent.parallel.args"
local input = require "luaconcurrent.parallel.input"
local command = require "luaconcurrent.parallel.command"

local usage_error = args.usage_error

local M = {}

M.VERSION = "lcparallel (luaconcurrent) 20221122-compatible"

M.USAGE = [==[
usage: lcparallel [options] [command [args]] ::: values ... [:::: files ...]
       luaconcurrent --parallel [options] ...      (the same)
Runs command once per value (or combination of values), many at a time,
as GNU parallel 20221122 does: through your shell ($PARALLEL_SHELL, else
the shell lcparallel was started from), values quoted only where needed.
Input
  ::: v1 v2 ...       values          :::: f1 f2 ...   files, one value a line
  :::+ / ::::+        linked to the source before (the shortest decides)
  -a, --arg-file F    a file of values ("-" is stdin); stdin when no source
  --link              link all sources (the shorter ones recycled)
  -0, --null          values end in NUL         -d, --delimiter D  ... in D
  -C, --colsep RE     split each value into columns {1} {2} ...
  --header :          the first value of each source names it: {name}
  -n N, -N N          N values a job ({1}..{N}); -N0 reads one, inserts none
  -X, -m              as many values a job as fit (-X repeats the word)
  -r                  skip empty values       --shuf   jobs in random order
  -I STR              STR instead of {}       -q       quote the command
Replacement strings
  {} {.} {/} {//} {/.} {#} (job number) {%} (slot) {n} {n.} {n/} {n//}
  {n/.} {-n} ...  ({= perl =} needs perl: refused)
Running
  -j, --jobs N        N jobs at once: N, 0 (no limit), N%, +N, -N of the
                      CPUs, or a file holding one of these (default: CPUs)
  --timeout S         seconds a job (TERM, then KILL after --kill-grace)
  --retries N         try a failing job N times in all
  --retry-delay S     seconds before each retry (lcparallel's own)
  --halt SPEC         now|soon,fail|success|done=N|N%, or 0 1 2 -1 -2 N%
  --delay S           seconds between job starts
  --nice N            run jobs under nice -n N
  --termseq TERM,ms,...,KILL,ms   the kill grace of --timeout and --halt now
  --kill-grace S      seconds from TERM to KILL (lcparallel's own)
  --env VAR           accepted (jobs inherit the environment)
  --joblog [+]FILE    one line a job (+FILE appends)
  --resume, --resume-failed, --retry-failed   (with --joblog)
  -S, --sshlogin L    hosts over ssh: [N/][user@]host[:port], ":" here
  --slf FILE          hosts from FILE      --slurm N   N Slurm job steps
  --srun-options S    options for each Slurm step's srun, e.g. "-c 2 --mem=1G"
  --dry-run           print the commands, run nothing
  --pipe              blocks of stdin to each job's stdin; --pipepart -a FILE
                      the same from a file, each job reading its own part
  --block SIZE, --recstart S, --recend S, -N records   how blocks are cut
Output
  --group (default), -k/--keep-order, --line-buffer, -u/--ungroup
  --tag, --tagstring STR, -v (print each command), --files
  --results DIR|F.csv|F.tsv|F.json     --timeline FILE (SVG or .json)
  --bar, --eta, --progress             a progress bar on stderr
  --version, --will-cite, --citation, -h/--help
Exit status: 0 all ok; 1-100 that many jobs failed; 101 more; with --halt
as GNU parallel (the failing job's status for fail=1); 255 bad usage.
]==]

-- A number option: non-negative, or a usage error naming it.
local function number_of(name, s)
  local n = tonumber(s)
  if not n or n < 0 or n ~= n or n == math.huge then
    usage_error("%s needs a non-negative number, got %q", name, tostring(s))
  end
  return n
end

--- -j's forms: N, 0, N%, +N, -N, or a file holding one of them.
local function jobs_of(s, from_file)
  local rule = hostlib.cpu_rule(s)
  if rule then return rule(core.cpu_count()) end
  local n = tonumber(s)
  if n and n >= 0 and n == math.floor(n) then return math.tointeger(n) end
  if not from_file then
    local f = io.open(s, "r")
    if f then
      local text = f:read("a") or ""
      f:close()
      local v = text:match("^%s*(%S+)%s*$")
      if v then return jobs_of(v, s) end
      usage_error("-j %s: the file holds no number of jobs", s)
    end
  end
  if from_file then usage_error("-j %s: the file holds %q, not N, N%%, +N or -N", from_file, s) end
  usage_error("-j needs N, N%%, +N, -N or a file holding one, got %q (no such file)", s)
end

--- --halt's forms, the old numeric ones mapped, into the API's spelling.
local function halt_of(s)
  local old = { ["0"] = "never", ["1"] = "soon,fail=1", ["2"] = "now,fail=1",
                ["-1"] = "soon,success=1", ["-2"] = "now,success=1" }
  if old[s] then return old[s] end
  local pct = s:match("^(%d+%.?%d*)%%$")
  if pct and tonumber(pct) > 0 and tonumber(pct) < 100 then return "soon,fail=" .. pct .. "%" end
  local ok, err = pcall(require("luaconcurrent.control.halt").parse, s)
  if not ok then
    usage_error("--halt %q: give never, now|soon,fail|success|done=N or =N%%, or 0 1 2 -1 -2 N%% (%s)", s,
      (tostring(err):gsub("^luaconcurrent: ", "")))
  end
  return s
end

--- A path we will write: a usage error now rather than a silent failure
-- after every job ran.
local function writable(what, path, mode)
  local f, err = io.open(path, mode or "a")
  if not f then usage_error("cannot write %s %s: %s", what, path, (tostring(err):gsub("^[^:]*: ", ""))) end
  f:close()
end

-- --slurm N: N job steps; 0 leaves the count to the allocation.
local function slurm_host(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then usage_error("--slurm needs a number of slots, got %q", v) end
  return { slurm = true, slots = n > 0 and n or nil }
end

-- -S hosts with -j N%, +N or -N: each host that names no slots gets the
-- rule, worked out from its own CPU count at its handshake.
local function remote_slots(hosts, jobs)
  if not (jobs and hostlib.cpu_rule(jobs)) then return hosts end
  local t = {}
  for i, spec in ipairs(hosts) do
    if type(spec) == "string" and not spec:match("^%s*%d+/") then
      spec = hostlib.parse(spec, i)
      spec.slots = jobs
    end
    t[i] = spec
  end
  return t
end

local function hosts_of(o)
  if not o.order then return nil end
  local hosts
  for _, entry in ipairs(o.order) do
    local key, v = entry[1], entry[2]
    if key == "slurm" or key == "sshlogin" or key == "slf" then hosts = hosts or {} end
    if key == "slurm" then
      hosts[#hosts + 1] = slurm_host(v)
    elseif key == "slf" then
      for _, h in ipairs(hostlib.read_file(v)) do hosts[#hosts + 1] = h end
    elseif key == "sshlogin" then
      for h in v:gmatch("[^,]+") do hosts[#hosts + 1] = h end
    end
  end
  return hosts
end

--- --termseq: the engine sends TERM, then KILL after a grace; the
-- sequences of that form (TERM,ms,...,KILL,ms; the TERMs between only
-- repeat it) map to the grace, others are refused. Returns seconds.
function M.termseq(spec)
  local items = {}
  for x in spec:gmatch("[^,]+") do items[#items + 1] = x end
  local ok = #items >= 2 and #items % 2 == 0 and items[1]:upper():gsub("^SIG", "") == "TERM"
    and items[#items - 1]:upper():gsub("^SIG", "") == "KILL"
  local grace = 0
  for i = 1, #items - 2, 2 do
    local sig, ms = items[i]:upper():gsub("^SIG", ""), tonumber(items[i + 1])
    if sig ~= "TERM" or not ms or ms < 0 then ok = false; break end
    grace = grace + ms
  end
  if not ok then
    usage_error("--termseq %q: lcparallel sends TERM, then KILL after a grace: give TERM,ms[,TERM,ms...],KILL,ms", spec)
  end
  return grace / 1000
end

--- The settings of a run, checked: a usage error names the first bad one.
local function settings(o)
  local s = {}
  if not (o.pipe or o.pipepart) then
    for _, name in ipairs({ "block", "recstart", "recend" }) do
      if o[name] then usage_error("%s goes with --pipe or --pipepart", o.given[name]) end
    end
  end
  if o.env and hosts_of(o) then
    usage_error("--env with -S/--sshlogin is not supported by lcparallel (the hosts get their own environment)")
  end
  if o.termseq then s.kill_grace_termseq = M.termseq(o.termseq) end
  s.hosts = hosts_of(o)
  for _, h in ipairs(s.hosts or {}) do
    if type(h) == "table" and h.slurm then h.srun_options = o.srun_options end
  end
  if o.jobs then
    if not (s.hosts and hostlib.cpu_rule(o.jobs)) then s.jobs = jobs_of(o.jobs) end
  elseif not s.hosts then
    s.jobs = core.cpu_count()
  end
  if s.hosts then s.hosts = remote_slots(s.hosts, o.jobs) end
  if o.timeout then
    if o.timeout:match("%%$") then
      usage_error("--timeout %s: a percentage of the median run time is not supported by lcparallel;"
        .. " give seconds", o.timeout)
    end
    s.timeout = number_of("--timeout", o.timeout)
  end
  if o.retries then
    local n = math.tointeger(number_of("--retries", o.retries))
    if not n then usage_error("--retries needs a whole number, got %q", o.retries) end
    s.retries = math.max(n - 1, 0)          -- parallel's N is every try
  end
  s.retry_delay = o.retry_delay and number_of("--retry-delay", o.retry_delay)
  s.kill_grace = o.kill_grace and number_of("--kill-grace", o.kill_grace) or s.kill_grace_termseq
  s.delay = o.delay and number_of("--delay", (o.delay:gsub("s$", "")))
  if o.nice then
    local n = math.tointeger(tonumber(o.nice))
    if not n then usage_error("--nice needs a whole number, got %q", o.nice) end
    s.nice = n
  end
  if o.halt then s.halt = halt_of(o.halt) end
  if o.joblog then
    s.joblog_append = o.joblog:sub(1, 1) == "+"
    s.joblog = s.joblog_append and o.joblog:sub(2) or o.joblog
    writable("the joblog", s.joblog)
  end
  if (o.resume or o.retry_failed) and not o.joblog then
    usage_error("%s needs --joblog", o.given.resume or o.given.retry_failed)
  end
  if o.results then
    local ext = o.results:match("%.(%a+)$")
    if ext == "csv" or ext == "tsv" or ext == "json" then
      s.results = { kind = ext, path = o.results }
      writable("the results", o.results, "w")
    else
      s.results = { kind = "dir", path = o.results }
      local ok = os.execute("mkdir -p -- '" .. o.results:gsub("'", "'\\''") .. "' 2>/dev/null")
      if not ok then usage_error("cannot make the results directory %s", o.results) end
    end
  end
  if o.timeline then writable("the timeline", o.timeline) end
  return s
end

--- Every job of the run: an iterator of { seq, records }.
-- The longest command line a job gets with -X/-m: GNU parallel's
-- (--max-line-length-allowed on Linux); a single argument (bash -c's
-- command) cannot pass 128 KiB.
M.MAX_LINE = 130329

local function job_source(o, sources, slots, sizing)
  local records, names = input.records(o, sources)
  -- sizing.cost(record), sizing.room(): set once the command is known
  local jobs = input.jobs(o, records, math.max(slots or 1, 1),
    function() return sizing.room() end, function(r) return sizing.cost(r) end)
  local seq = 0
  local iter = function()
    local j = jobs()
    if j == nil then return nil end
    seq = seq + 1
    if j.empty then j = {} end
    return seq, j
  end
  if o.shuf then
    local all = {}
    for _, j in iter do all[#all + 1] = j end
    for i = #all, 2, -1 do
      local k = math.random(i)
      all[i], all[k] = all[k], all[i]
    end
    local i = 0
    iter = function()
      i = i + 1
      if all[i] == nil then return nil end
      return i, all[i]
    end
  end
  return iter, names
end

-- The tag of a job: its values, or --tagstring expanded.
local function tag_of(o, names, records, seq, slot)
  if o.tagstring then
    local tpl = command.template(o.tagstring, names)
    return command.expand(tpl, records, seq, slot, { raw = true })
  end
  local t = {}
  for _, r in ipairs(records) do for _, v in ipairs(r) do t[#t + 1] = v end end
  return table.concat(t, " ")
end

local function prefixed(text, prefix)
  if text == "" or not prefix then return text end
  local out = prefix .. text:gsub("\n(.)", function(c) return "\n" .. prefix .. c end)
  if out:sub(-1) ~= "\n" then out = out .. "\n" end
  return out
end

-- Bourne-like shells, which take `export NAME=value;`.
local BOURNE = { sh = true, bash = true, dash = true, ash = true, ksh = true, ksh93 = true,
  mksh = true, lksh = true, pdksh = true, zsh = true, yash = true, posh = true, rbash = true }
local own_pid

--- What parallel puts in each job's environment ($PARALLEL_SEQ, ...),
-- as a prefix of a shell job's command (the run's environment is one for
-- all jobs); "" for a shell that is not Bourne-like.
function M.job_env(shell, seq, slot)
  if not BOURNE[(shell or ""):match("([^/]*)$")] then return "" end
  if not own_pid then
    local f = io.open("/proc/self/stat")
    own_pid = f and f:read("l"):match("^(%d+)") or "0"
    if f then f:close() end
  end
  return string.format("export PARALLEL_SEQ=%d PARALLEL_JOBSLOT=%d PARALLEL_PID=%s; ", seq, slot, own_pid)
end

--- --pipe / --pipepart's blocks: stdin or -a's file; --pipepart a file.
function M.blocks_of(o, sources)
  local pipe = require "luaconcurrent.parallel.pipe"
  local files = {}
  for _, src in ipairs(sources) do
    if src.kind ~= "file" then usage_error("%s takes its input from stdin or -a FILE, not ::: values",
      o.pipepart and "--pipepart" or "--pipe") end
    files[#files + 1] = src.path
  end
  if #files > 1 then usage_error("--pipe/--pipepart read one input, got %d files", #files) end
  if o.pipepart then
    if not files[1] or files[1] == "-" then usage_error("--pipepart needs a file: -a FILE or :::: FILE") end
    return pipe.parts(o, files[1])
  end
  local f = io.stdin
  local stream = not o.dry_run and (not files[1] or files[1] == "-") and pipe.stream_blocks(o)
  if stream then return stream end     -- stdin a pipe: the engine splices it
  if files[1] and files[1] ~= "-" then
    local err
    f, err = io.open(files[1], "rb")
    if not f then usage_error("cannot open input file %s: %s", files[1], tostring(err)) end
  end
  if not o.dry_run and os.getenv("LC_PIPE_SPOOL") ~= "0" then
    -- blocks to files in memory (tmpfs): parallel/pipe.lua's spool_blocks
    local d = io.open("/dev/shm") and "/dev/shm" or os.getenv("TMPDIR") or "/tmp"
    local spool = string.format("%s/lcparallel.%d.%d", d, math.floor(core.wallclock() * 1000), math.random(1e9))
    if os.execute("mkdir -m 700 " .. command.quote(spool) .. " 2>/dev/null") then
      local it = pipe.spool_blocks(o, f, spool)
      if it then M.spool_dir = spool; return it, spool end
      os.remove(spool)
    end
  end
  return pipe.blocks(o, f)
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
  if o.help then io.stdout:write(M.USAGE); return 0 end
  if o.version then io.stdout:write(M.VERSION, "\n"); return 0 end
  if o.citation then
    io.stdout:write("lcparallel needs no citation notice; when you publish results made with GNU parallel's\n",
      "semantics, cite GNU parallel as `parallel --citation` says.\n")
    return 0
  end
  local s = settings(o)
  local slots = s.jobs or 1
  if slots == 0 then slots = 1 end
  local pipe_mode = o.pipe or o.pipepart
  local next_job, names, blocks, spool
  local sizing = {}
  if pipe_mode then
    blocks, spool = M.blocks_of(o, sources)
    next_job = function() return nil end
  else
    next_job, names = job_source(o, sources, s.jobs ~= 0 and s.jobs or 1, sizing)
  end
  local tpl = command.build(words, o, names, pipe_mode)
  -- -X/-m: a record costs what it adds to the command line (quoted, its
  -- context repeated with -X)
  local base = #command.expand(tpl, {}, 1, 1, { context = o.context })
  sizing.room = function() return M.MAX_LINE - base end
  sizing.cost = function(r)
    return #command.expand(tpl, { r }, 1, 1, { context = o.context }) - base + 1
  end
  local shell = command.shell()
  if not command.which(shell) then
    usage_error("shell %q not found (from $PARALLEL_SHELL, the shell lcparallel was started from, or $SHELL)", shell)
  end
  -- on hosts the shell is found by name in the host's PATH
  if s.hosts then shell = shell:match("([^/]+)$") end
  local prog = #words > 0 and command.direct(tpl, o) or nil
  local bare = #words == 0          -- the values are the commands

  local function text_of(records, seq, slot)
    if bare then
      local t = {}
      for _, r in ipairs(records) do for _, v in ipairs(r) do t[#t + 1] = v end end
      return table.concat(t, " ")
    end
    return command.expand(tpl, records, seq, slot, { context = o.context })
  end

  if o.dry_run and pipe_mode then
    local seq = 0
    while blocks() do
      seq = seq + 1
      io.stdout:write(command.expand(tpl, {}, seq, (seq - 1) % slots + 1, {}), "\n")
    end
    return 0
  end
  if o.dry_run then
    for seq, records in next_job do
      local slot = (seq - 1) % slots + 1
      local line = text_of(records, seq, slot)
      if o.tag or o.tagstring then line = tag_of(o, names, records, seq, slot) .. "\t" .. line end
      io.stdout:write(line, "\n")
    end
    return 0
  end

  local pargs = prog and { prog } or { shell, "-c" }
  if s.nice then pargs = { "nice", "-n", tostring(s.nice), table.unpack(pargs) } end

  -- Slots ({%}): the lowest free one when a job starts; freed at its end.
  local free, slot_of, used = {}, {}, 0
  local building_list = false
  local jobs_info = {}   -- [seq] = { records, command text } while it runs
  local delay, last_start = s.delay, nil

  local function next_task()
    local seq, records = next_job()
    if seq == nil then return nil end
    if delay and delay > 0 then
      if last_start then
        local wait = last_start + delay - core.now()
        if wait > 0 then core.sleep(wait) end
      end
      last_start = core.now()
    end
    local slot
    if building_list then
      slot = (seq - 1) % slots + 1      -- built ahead: the slot it will likely get
    else
      slot = table.remove(free)
      if not slot then used = used + 1; slot = used end
    end
    slot_of[seq] = slot
    local text = text_of(records, seq, slot)
    jobs_info[seq] = { records, text, slot }
    local arg
    if prog then
      local argv_ = command.expand(tpl, records, seq, slot, { context = o.context, direct = true })
      arg = { table.unpack(argv_, 2) }
    else
      arg = { M.job_env(shell, seq, slot) .. text }
    end
    return { seq, arg }
  end

  local keep = o.keep_order
  -- -k with --line-buffer or -u: the order wins (each job's lines go out
  -- whole, in order, as parallel's do when they are read back)
  local out_mode = (keep and (o.output == "lines" or o.output == "ungroup")) and "group" or o.output or "group"
  local tagged = o.tag or o.tagstring
  local said = {}    -- the reasons already said on stderr
  local halt_policy = s.halt and require("luaconcurrent.control.halt").parse(s.halt)
  local counts = { fail = 0, success = 0, done = 0, started = 0 }
  local total
  local results_w = s.results and require("luaconcurrent.parallel.results").new(s.results, names)
  -- showing each job's output, -k's order, the exit status (parallel/output.lua)
  local out = require("luaconcurrent.parallel.output").new{ o = o, names = names, tag_of = tag_of,
    prefixed = prefixed, results_w = results_w, halt_policy = halt_policy, counts = counts }

  local opts = {
    num_workers = s.jobs, timeout = s.timeout, kill_grace = s.kill_grace,
    retries = s.retries, retry_delay = s.retry_delay, halt = s.halt,
    timeline = o.timeline, hosts = s.hosts, keep_results = false,
    progress = (o.bar or o.eta or o.progress) and true or nil,
  }
  if s.joblog then
    opts.joblog = { path = s.joblog, format = "parallel", append = s.joblog_append,
      command = function(seq, arg)
        local info = jobs_info[seq]
        if info then return info[2] end
        return prog and table.concat({ prog, table.unpack(arg) }, " ") or arg[1]
      end }
    opts.resume = (o.retry_failed and "failed") or o.resume
  end
  -- With a progress bar, the run's own output modes print (they step the
  -- bar aside for each job's output and draw it last)
  local api_out = opts.progress and out_mode == "group" and not results_w and not o.files
    and not (o.verbose and o.verbose > 0)
  -- The run's own output modes print these: each line tagged as parallel does
  local function job_tag(res)
    local info = jobs_info[res.key]
    return info and (tag_of(o, names, info[1], res.key, info[3]) .. "\t") or ""
  end
  if api_out then
    opts.output = keep and "ordered" or "stream"
    if tagged then opts.tag = job_tag end
  end
  if (out_mode == "lines" or out_mode == "ungroup") and not results_w then
    opts.output = "lines"
    if tagged then opts.tag = job_tag end
  end

  opts.on_start = function(seq)
    counts.started = counts.started + 1
    if o.verbose_stderr then
      local info = jobs_info[seq]
      if info then io.stderr:write(info[2], "\n") end
    end
  end

  opts.on_result = function(res)
    local seq = res.key
    local info = jobs_info[seq] or { {}, "", 0 }
    jobs_info[seq] = nil
    if slot_of[seq] then free[#free + 1] = slot_of[seq]; slot_of[seq] = nil end
    if not res.skipped then
      counts.done = counts.done + 1
      if res.success then counts.success = counts.success + 1
      else counts.fail = counts.fail + 1 end
      if res.timeout then
        io.stderr:write("lcparallel: Warning: This job was killed because it timed out:\n", info[2], "\n")
      elseif (res.returncode == nil or res.returncode < 0) and not res.signal and res.exception
          and res.exception ~= "Interrupted" then
        -- it never ran (spawn failed, its host failed): say why, never
        -- silently; a host's failure once, not once per task
        local why = tostring(res.error or res.exception):gsub("^luaconcurrent: ", "")
        if res.exception ~= "ConnectionError" or not said[why] then
          said[why] = true
          io.stderr:write("lcparallel: ", why, "\n")
        end
      end
      out:note_halt(res, total)
    end
    if api_out or (not results_w and (out_mode == "lines" or out_mode == "ungroup")) then return end
    if keep then
      out:hold(seq, res.skipped and false or res, info)
    else
      out:show(seq, res.skipped and false or res, info)
    end
  end

  -- A percentage of all jobs (--halt N%), or a bar's total: parallel reads
  -- the whole input first for these, and so does lcparallel.
  if pipe_mode then
    return M.run_pipe(s, blocks, {
      tpl = tpl, prog = prog, pargs = pargs, jobs_info = jobs_info, on_result = opts.on_result, spool = spool,
      on_start = opts.on_start, jobs = s.jobs == 0 and math.huge or s.jobs,
      halted = function() return out:halted() end,
      finish = function()
        out:flush_held()   -- -k after a halt: what is held goes out in order
        return out:exit_status()
      end,
    })
  end
  local tasks = next_task
  if o.retry_failed then
    -- parallel ignores the command line's command and input: the
    -- joblog's commands are the jobs, its failed ones run again
    local logged, last = require("luaconcurrent.control.joblog").read_parallel(s.joblog)
    if not logged then usage_error("--retry-failed: no joblog %s to read", s.joblog) end
    prog, pargs = nil, { shell, "-c" }
    if s.nice then pargs = { "nice", "-n", tostring(s.nice), shell, "-c" } end
    tasks = {}
    for seq = 1, last or 0 do
      local cmd = logged[seq] and logged[seq].command or "true"
      jobs_info[seq] = { { { cmd } }, cmd, 1 }
      tasks[seq] = { seq, { cmd } }
    end
  end
  if type(tasks) == "function" and ((halt_policy and halt_policy.percent) or opts.progress) then
    tasks = {}
    building_list = true
    for t in next_task do tasks[#tasks + 1] = t end
    total = #tasks
    slot_of = {}
  end
  local lc = require "luaconcurrent"
  local built, run = pcall(lc.ProcRunAsyncio, pargs, tasks, opts)
  if not built then
    -- the option's own message, not the Lua bad-argument wrapper
    io.stderr:write("lcparallel: ", (require("luaconcurrent.validate").message(run):gsub("^luaconcurrent: ", "")), "\n")
    return 255
  end
  run:run_all()
  out:flush_held()   -- -k after a halt: what is held goes out in order
  if results_w then results_w:close() end
  return out:exit_status()
end

return M
