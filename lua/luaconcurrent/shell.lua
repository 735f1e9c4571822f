--- The command line for shell users, GNU parallel's way:
--
--   luaconcurrent --parallel [options] command [args] ::: values ... [:::: file ...]
--   lcparallel [options] command [args] ::: values ...     (the same)
--
-- Values come from ::: lists, :::: files (one per line; "-" is stdin), or
-- stdin lines when neither is given; several sources combine as all
-- combinations, as parallel does. In the command, {} is the value, {.}
-- without its extension, {/} its basename, {//} its directory, {/.} the
-- basename without extension, {#} the task's number, {N} the value from
-- the N-th source; with no replacement string the values are appended.
-- The command runs directly (no shell) unless it has shell syntax (a
-- pipe, a redirection, ...), then with sh -c and every value quoted.
-- Built on the Lua API: each task is a ProcRunAsyncio subprocess task.

local core = require "luaconcurrent.core"
local hostlib = require "luaconcurrent.remote.hosts"

local M = {}

M.USAGE = [[
usage: luaconcurrent --parallel [options] command [args] ::: values ... [:::: file ...]
       lcparallel [options] command [args] ::: values ...
Runs command once per value (or combination of values), many at a time.
  -j, --jobs N        tasks at once: N, 0 (no limit), N% of the CPUs, +N/-N
                      CPUs (default: one per CPU); with -S, per host that
                      names no N/, N% and +N/-N of that host's CPUs
                      (default: its CPUs)
  --timeout S         seconds per task (TERM, then KILL after --kill-grace)
  --retries N         run a failed task up to N more times
  --retry-delay S     seconds before each retry
  --halt SPEC         now|soon,fail|success|done=N[%] (GNU parallel's)
  --joblog FILE       one line per task in GNU parallel's columns (+ key)
  --resume            skip tasks the joblog records as run
  --resume-failed     run again only tasks the joblog records as failed
  --bar               a progress bar on stderr when it is a terminal
  -k, --keep-order    output in task order
  --line-buffer       output as whole lines
  --group             output of each task together when it ends (default)
  --tag               prefix output lines with the value
  --results FILE      each result as a JSON line in FILE
  --timeline FILE     a picture of the run as SVG (one row per slot)
  -S, --sshlogin L    run on hosts over ssh: [N/][user@]host[:port], comma
                      separated, ":" for this machine (repeatable)
  --slf FILE          hosts from FILE, one a line, # comments
  --slurm N           run as N Slurm job steps (srun), one per slot; 0: the
                      allocation's SLURM_NTASKS
  --srun-options S    options for each step's srun, e.g. "-c 2 --mem=1G"
  --dry-run           print the commands, run nothing
  -h, --help          this text
Values: ::: v1 v2 ...   :::: file ...   or lines on stdin.
Replacement strings: {} {.} {/} {//} {/.} {#} {1} {2} ...
Exit status: the number of failed tasks (at most 101); 255 on bad usage.
]]

local function usage_error(fmt, ...)
  error({ usage = string.format(fmt, ...) }, 0)
end

local VALUE_OPTS = {
  ["-j"] = "jobs", ["--jobs"] = "jobs", ["--timeout"] = "timeout",
  ["--retries"] = "retries", ["--retry-delay"] = "retry_delay", ["--halt"] = "halt",
  ["--joblog"] = "joblog", ["--results"] = "results", ["--kill-grace"] = "kill_grace",
  ["--timeline"] = "timeline", ["-S"] = "sshlogin", ["--sshlogin"] = "sshlogin",
  ["--slf"] = "slf", ["--sshloginfile"] = "slf", ["--slurm"] = "slurm",
  ["--srun-options"] = "srun_options",
}
local FLAG_OPTS = {
  ["--resume"] = { "resume", true }, ["--resume-failed"] = { "resume", "failed" },
  ["--bar"] = { "progress", true }, ["-k"] = { "output", "ordered" },
  ["--keep-order"] = { "output", "ordered" }, ["--line-buffer"] = { "output", "lines" },
  ["--group"] = { "output", "stream" }, ["--tag"] = { "tag", true },
  ["--dry-run"] = { "dry_run", true }, ["-h"] = { "help", true }, ["--help"] = { "help", true },
}

local function number_of(name, s)
  local n = tonumber(s)
  if not n or n < 0 then usage_error("%s needs a non-negative number, got %q", name, tostring(s)) end
  return n
end

--- -j's forms: N, 0, N%, +N, -N.
local function jobs_of(s)
  local rule = hostlib.cpu_rule(s)
  if rule then return rule(core.cpu_count()) end
  local n = tonumber(s)
  if not n or n < 0 or n ~= math.floor(n) then usage_error("-j needs N, N%%, +N or -N, got %q", s) end
  return math.tointeger(n)
end

--- -S hosts with -j N%, +N or -N: each host that names no slots gets
-- the rule, worked out from its own CPU count at its handshake (as GNU
-- parallel does).
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

local function lines_of(path)
  local f = path == "-" and io.stdin or io.open(path, "r")
  if not f then usage_error("cannot read %s", path) end
  local t = {}
  for l in f:lines() do t[#t + 1] = l end
  if f ~= io.stdin then f:close() end
  return t
end

--- --slurm N: N job steps; 0 leaves the count to the allocation.
local function slurm_host(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then usage_error("--slurm needs a number of slots, got %q", v) end
  return { slurm = true, slots = n > 0 and n or nil }
end

--- Parse argv: options, the command's words and the value sources.
function M.parse(argv)
  local o, i = { output = "stream" }, 1
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    if VALUE_OPTS[name or a] or a:match("^%-j.+") then
      local key = VALUE_OPTS[name or a] or "jobs"
      local v = inline or (a:match("^%-j(.+)") ) or argv[i + 1]
      if v == nil then usage_error("%s needs a value", a) end
      if not inline and not a:match("^%-j.+") then i = i + 1 end
      if key == "slurm" then
        o.hosts = o.hosts or {}
        o.hosts[#o.hosts + 1] = slurm_host(v)
      elseif key == "sshlogin" or key == "slf" then     -- these add up
        o.hosts = o.hosts or {}
        local list = key == "slf" and require("luaconcurrent.remote.hosts").read_file(v) or {}
        if key == "sshlogin" then for h in v:gmatch("[^,]+") do list[#list + 1] = h end end
        for _, h in ipairs(list) do o.hosts[#o.hosts + 1] = h end
      else
        o[key] = v
      end
    elseif FLAG_OPTS[a] then
      o[FLAG_OPTS[a][1]] = FLAG_OPTS[a][2]
    elseif a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" and a ~= ":::" and a ~= "::::" then
      usage_error("unknown option %s", a)
    else
      break
    end
    i = i + 1
  end
  local command, sources = {}, {}
  while i <= #argv and argv[i] ~= ":::" and argv[i] ~= "::::" do
    command[#command + 1] = argv[i]
    i = i + 1
  end
  while i <= #argv do
    local sep = argv[i]
    local list = {}
    i = i + 1
    while i <= #argv and argv[i] ~= ":::" and argv[i] ~= "::::" do
      if sep == ":::" then list[#list + 1] = argv[i]
      else for _, l in ipairs(lines_of(argv[i])) do list[#list + 1] = l end end
      i = i + 1
    end
    sources[#sources + 1] = list
  end
  return o, command, sources
end

-- Shell syntax that a direct exec would not honour.
local function needs_shell(word)
  return word:find("[%s|&;<>()$`\\\"'*?%[%]#~=%%]") ~= nil and not word:match("^{[%w/.#]*}$")
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function basename(s) return s:match("([^/]*)/*$") end
local function dirname(s)
  local d = s:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end
local function noext(s) return (s:gsub("(.)%.[^./]*$", "%1")) end

--- The replacement strings of one value.
local function replace(word, values, seq, q)
  local v = values[1]
  return (word:gsub("{([^{}]*)}", function(r)
    local s
    if r == "" then s = v
    elseif r == "." then s = noext(v)
    elseif r == "/" then s = basename(v)
    elseif r == "//" then s = dirname(v)
    elseif r == "/." then s = noext(basename(v))
    elseif r == "#" then return tostring(seq)
    elseif r:match("^%d+$") then s = values[tonumber(r)]
    else return nil end
    if s == nil then return nil end
    return q and quote(s) or s
  end))
end

--- Every combination of the sources' values, as lists, in parallel's order.
local function combinations(sources)
  local out = { {} }
  for _, list in ipairs(sources) do
    local next_out = {}
    for _, prefix in ipairs(out) do
      for _, v in ipairs(list) do
        local c = { table.unpack(prefix) }
        c[#c + 1] = v
        next_out[#next_out + 1] = c
      end
    end
    out = next_out
  end
  return out
end

--- The argv of task seq for values: {program, args...}.
function M.argv(command, values, seq)
  local has_replacement, shell = false, false
  for _, w in ipairs(command) do
    if w:find("{[%w/.#]*}") then has_replacement = true end
    if needs_shell(w) then shell = true end
  end
  if #command == 0 then   -- the values are the commands
    return { "sh", "-c", table.concat(values, " ") }
  end
  local words = {}
  for k, w in ipairs(command) do words[k] = has_replacement and replace(w, values, seq, shell) or w end
  if not has_replacement then
    for _, v in ipairs(values) do words[#words + 1] = shell and quote(v) or v end
  end
  if shell then return { "sh", "-c", table.concat(words, " ") } end
  return words
end

--- Run; returns the exit status.
function M.main(argv)
  local ok, o, command, sources = pcall(M.parse, argv)
  if not ok then
    local err = o
    io.stderr:write("luaconcurrent: ", type(err) == "table" and err.usage or tostring(err),
      "\n(luaconcurrent --parallel --help lists the options)\n")
    return 255
  end
  if o.help then io.stdout:write(M.USAGE); return 0 end
  if #sources == 0 then sources = { lines_of("-") } end
  local tasks = {}
  for seq, values in ipairs(combinations(sources)) do
    local words = M.argv(command, values, seq)
    local arg = { table.unpack(words, 2) }
    tasks[seq] = { seq, arg, prog = words[1], label = table.concat(values, " ") }
  end
  if o.dry_run then
    for _, t in ipairs(tasks) do
      local shown = (t.prog == "sh" and t[2][1] == "-c") and t[2][2]
        or table.concat({ t.prog, table.unpack(t[2]) }, " ")
      io.stdout:write(shown, "\n")
    end
    return 0
  end
  return M.run(o, tasks)
end

--- Tasks grouped by program (a ProcRunAsyncio takes one pargs): one run
-- for the common case of a single program, else sh -c ... for each.
function M.run(o, tasks)
  local lc = require "luaconcurrent"
  local prog = tasks[1] and tasks[1].prog
  local list = {}
  for i, t in ipairs(tasks) do
    if t.prog == prog then list[i] = { t[1], t[2] }
    else list[i] = { t[1], { "-c", 'exec "$0" "$@"', t.prog, table.unpack(t[2]) } } end
  end
  local mixed = false
  for _, t in ipairs(tasks) do if t.prog ~= prog then mixed = true end end
  if mixed then
    for i, t in ipairs(tasks) do
      if t.prog == prog then list[i] = { t[1], { "-c", 'exec "$0" "$@"', t.prog, table.unpack(t[2]) } } end
    end
    prog = "sh"
  end
  for _, h in ipairs(o.hosts or {}) do
    if type(h) == "table" and h.slurm then h.srun_options = o.srun_options end
  end
  local opts = {
    -- with -S and no -j, each host's own CPU count; -j N%, +N or -N,
    -- worked out from each host's CPUs (remote_slots)
    num_workers = o.jobs and not (o.hosts and hostlib.cpu_rule(o.jobs)) and jobs_of(o.jobs)
      or (not o.hosts and core.cpu_count() or nil),
    timeout = o.timeout and number_of("--timeout", o.timeout),
    kill_grace = o.kill_grace and number_of("--kill-grace", o.kill_grace),
    retries = o.retries and math.tointeger(number_of("--retries", o.retries)),
    retry_delay = o.retry_delay and number_of("--retry-delay", o.retry_delay),
    halt = o.halt, joblog = o.joblog, resume = o.resume, results = o.results,
    timeline = o.timeline, hosts = o.hosts and remote_slots(o.hosts, o.jobs),
    progress = o.progress, output = o.output, keep_results = false,
  }
  if o.tag then
    local label = {}
    for _, t in ipairs(tasks) do label[t[1]] = t.label end
    opts.tag = function(res) return label[res.key] .. "\t" end
  end
  local failed = 0
  local said = {}    -- a host's failure, said once on stderr
  opts.on_result = function(res)
    if not res.success then failed = failed + 1 end
    if res.exception == "ConnectionError" and not said[res.error] then
      said[res.error] = true
      io.stderr:write("luaconcurrent: ", res.error, "\n")
    end
  end
  local ok, run = pcall(lc.ProcRunAsyncio, { prog or "true" }, list, opts)
  if not ok then
    io.stderr:write(tostring(run), "\n")
    return 255
  end
  run:run_all()
  if run.halted and failed == 0 then failed = 1 end
  return math.min(failed, 101)
end

return M
