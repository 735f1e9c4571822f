--- lcparallel's command line: GNU parallel's options (Getopt::Long with
-- bundling and require_order, as parallel configures it), the command's
-- words and the input sources, unread.
--
-- Every option GNU parallel 20221122 knows is in one of two tables: the
-- ones lcparallel implements (OPTIONS), and the ones it refuses by name
-- (REFUSED), so an option is never taken for a value or left in the
-- command. A usage error is raised as { usage = message }.

local M = {}

local function usage_error(fmt, ...)
  error({ usage = string.format(fmt, ...) }, 0)
end
M.usage_error = usage_error

-- name -> { key, kind } ; kind: "flag" (value true or the given one),
-- "value" (takes an argument), "count" (-v -v), "list" (repeatable values).
local OPTIONS = {}
local function opt(names, key, kind, value)
  for name in names:gmatch("[^|]+") do OPTIONS[name] = { key = key, kind = kind, value = value } end
end
-- Read by spec/completion_spec.lua: the bash completion's option list must match.
M.OPTIONS = OPTIONS

opt("j|jobs|P|max-procs|maxprocs", "jobs", "value")
opt("timeout", "timeout", "value")
opt("retries", "retries", "value")
opt("retry-delay", "retry_delay", "value")          -- lcparallel's own
opt("kill-grace", "kill_grace", "value")            -- lcparallel's own
opt("timeline", "timeline", "value")                -- lcparallel's own
opt("slurm", "slurm", "list")                       -- lcparallel's own
opt("srun-options", "srun_options", "value")        -- lcparallel's own
opt("halt|halt-on-error", "halt", "value")
opt("joblog|jl", "joblog", "value")
opt("results|result|res", "results", "value")
opt("resume", "resume", "flag", true)
opt("resume-failed|resumefailed", "resume", "flag", "failed")
opt("retry-failed|retryfailed", "retry_failed", "flag", true)
opt("k|keep-order|keeporder", "keep_order", "flag", true)
opt("no-keep-order|nokeeporder|nok|no-k", "keep_order", "flag", false)
opt("group", "output", "flag", "group")
opt("u|ungroup", "output", "flag", "ungroup")
opt("line-buffer|line-buffered|linebuffer|linebuffered|lb", "output", "flag", "lines")
opt("tag", "tag", "flag", true)
opt("tag-string|tagstring", "tagstring", "value")
opt("bar", "bar", "flag", true)
opt("eta", "eta", "flag", true)
opt("progress", "progress", "flag", true)
opt("dry-run|dryrun|dr", "dry_run", "flag", true)
opt("v", "verbose", "count")
opt("t|verbose", "verbose_stderr", "flag", true)
opt("silent", "verbose", "flag", 0)
opt("h|help", "help", "flag", true)
opt("V|version", "version", "flag", true)
opt("will-cite|willcite|nn|nonotice|no-notice", "will_cite", "flag", true)
opt("citation|bibtex", "citation", "flag", true)
opt("S|sshlogin", "sshlogin", "list")
opt("slf|sshloginfile", "slf", "list")
opt("a|arg-file|argfile", "arg_file", "list")
opt("0|null", "delimiter", "flag", "\0")
opt("d|delimiter", "delimiter", "value")
opt("C|colsep|col-sep", "colsep", "value")
opt("header", "header", "value")
opt("n|max-args|maxargs", "max_args", "value")
opt("N|max-replace-args|maxreplaceargs", "max_replace_args", "value")
opt("X", "context", "flag", "X")
opt("m", "context", "flag", "m")
opt("q|quote", "quote", "flag", true)
opt("I", "replace", "value")
opt("r|no-run-if-empty|norunifempty", "no_empty", "flag", true)
opt("link|xapply", "link", "flag", true)
opt("shuf", "shuf", "flag", true)
opt("delay", "delay", "value")
opt("nice", "nice", "value")
opt("files|output-as-files|outputasfiles", "files", "flag", true)
opt("env", "env", "list")
opt("term-seq|termseq", "termseq", "value")
opt("arg-sep|argsep", "arg_sep", "value")
opt("arg-file-sep|argfilesep", "arg_file_sep", "value")
opt("pipe|spreadstdin", "pipe", "flag", true)
opt("pipe-part|pipepart", "pipepart", "flag", true)
opt("block|block-size|blocksize", "block", "value")
opt("recstart", "recstart", "value")
opt("recend", "recend", "value")

-- Every other option of GNU parallel 20221122: refused by name. The
-- value says whether it takes an argument (so the refusal names it, not a
-- value after it).
local REFUSED = {}
-- Each word of names (aliases joined by |) refused, taking a value or not.
local function refused(names, kind)
  for name in names:gmatch("%S+") do
    for n in name:gmatch("[^|]+") do REFUSED[n] = kind end
  end
end
refused([[debug|D sql sql-master|sqlmaster sql-worker|sqlworker sql-and-worker|sqlandworker
  parens I extensionreplace|er U basenamereplace|bnr dirnamereplace|dnr
  basenameextensionreplace|bner seqreplace slotreplace load ssh-delay|sshdelay ctag-string|ctagstring
  ssh transfer-file|transferfile|transfer-files|transferfiles|tf return trc basefile|bf
  template|tmpl B work-dir|workdir|wd W rsync-opts|rsyncopts tmpdir|tempdir
  use-compress-program|compress-program|usecompressprogram|compressprogram
  use-decompress-program|decompress-program|usedecompressprogram|decompressprogram
  H total-jobs|totaljobs|total linkinputsource|xapplyinputsource profile|J memfree memsuspend
  max-chars|maxchars|s E process-slot-var|processslotvar L semaphore-timeout|semaphoretimeout|st
  semaphore-name|semaphorename|id block-timeout|blocktimeout|bt shard bin group-by|groupby filter
  shell-completion|shellcompletion]], "value")
REFUSED.I = nil
refused([[xargs g latest-line|latestline|ll tmux tmux-pane|tmuxpane plus noswap
  max-line-length-allowed|maxlinelengthallowed number-of-cpus|numberofcpus number-of-sockets|numberofsockets
  number-of-cores|numberofcores number-of-threads|numberofthreads
  use-sockets-instead-of-threads|usesocketsinsteadofthreads use-cores-instead-of-threads|usecoresinsteadofthreads
  use-cpus-instead-of-cores|usecpusinsteadofcores shell-quote|shellquote|shell_quote ctag color|colour
  color-failed|colour-failed|colorfailed|colourfailed|color-fail|colour-fail|colorfail|colourfail|cf
  onall nonall filter-hosts|filterhosts|filter-host controlmaster|M transfer cleanup ctrl-c|ctrlc
  no-ctrl-c|no-ctrlc|noctrlc compress open-tty|o tty T recordenv|record-env tollef gnu
  i replace e eof l max-lines|maxlines csv interactive|p show-limits|showlimits x exit semaphore fg bg
  wait shebang|hashbang Y skip-first-line|skipfirstline bug round-robin|roundrobin|round regexp|regex
  remove-rec-sep|removerecsep|rrs cat fifo tee hgrp|hostgrp|hostgroup|hostgroups embed
  sem]], "flag")

local WHY = {
  ["{= =}"] = "needs perl",
}
M.WHY = WHY

local function dashes(name) return #name == 1 and "-" .. name or "--" .. name end

-- Set one option in o.
local function set(o, spec, name, value)
  if spec.kind == "flag" then
    o[spec.key] = spec.value
  elseif spec.kind == "count" then
    o[spec.key] = (tonumber(o[spec.key]) or 0) + 1
  elseif spec.kind == "list" then
    o[spec.key] = o[spec.key] or {}
    table.insert(o[spec.key], value)
    o.order = o.order or {}
    table.insert(o.order, { spec.key, value })
  else
    o[spec.key] = value
  end
  o.given = o.given or {}
  o.given[spec.key] = dashes(name)
end

local function refuse(name)
  usage_error("option %s is not supported by lcparallel (GNU parallel has it)", dashes(name))
end

-- The value of an option given as the next word (argv[i + 1]): returns
-- the new index and the value; shown is the option as written (--x, -x).
local function next_word_value(argv, i, shown)
  i = i + 1
  local value = argv[i]
  if value == nil then usage_error("option %s needs a value", shown) end
  return i, value
end

-- The spec of option name, refusing GNU parallel's others and unknown ones.
local function lookup(name, shown)
  local spec = OPTIONS[name]
  if not spec then
    if REFUSED[name] then refuse(name) end
    usage_error("unknown option %s", shown)
  end
  return spec
end

local function takes_value(spec) return spec.kind == "value" or spec.kind == "list" end

-- One long option at argv[i] (--name or --name=value): returns the next index.
local function parse_long(argv, i, o, long, inline)
  local spec = lookup(long, "--" .. long)
  local value
  if takes_value(spec) then
    value = inline
    if value == nil then i, value = next_word_value(argv, i, "--" .. long) end
  elseif inline ~= nil then
    usage_error("option --%s takes no value, got %q", long, inline)
  end
  set(o, spec, long, value)
  return i + 1
end

-- Bundled single-letter options at argv[i]: -kv, -j2, -j 2. Returns the next index.
local function parse_short(argv, i, o)
  local a = argv[i]
  local k = 2
  while k <= #a do
    local c = a:sub(k, k)
    local spec = lookup(c, "-" .. c)
    if takes_value(spec) then
      local value = a:sub(k + 1)
      if value == "" then i, value = next_word_value(argv, i, "-" .. c) end
      set(o, spec, c, value)
      break
    end
    set(o, spec, c)
    k = k + 1
  end
  return i + 1
end

-- The options (require_order: up to the first word that is not one, or
-- --): set in o; returns the index of the first word after them.
local function parse_options(argv, o)
  local i, n = 1, #argv
  while i <= n do
    local a = argv[i]
    if a == "--" then return i + 1 end
    local long, inline = a:match("^%-%-([^=]+)=(.*)$")
    if not long then long = a:match("^%-%-(.+)$") end
    if long then
      i = parse_long(argv, i, o, long, inline)
    elseif a:sub(1, 1) == "-" and #a > 1 and a ~= "-" then
      i = parse_short(argv, i, o)
    else
      break
    end
  end
  return i
end

-- The words from argv[i] on: the command's, then the input sources after
-- each separator (::: :::+ :::: ::::+, or --arg-sep's / --arg-file-sep's).
local function parse_command_and_sources(argv, i, o)
  local n = #argv
  local arg_sep, file_sep = o.arg_sep or ":::", o.arg_file_sep or "::::"
  local seps = { [arg_sep] = ":::", [arg_sep .. "+"] = ":::+",
                 [file_sep] = "::::", [file_sep .. "+"] = "::::+" }
  local command, sources = {}, {}
  while i <= n and not seps[argv[i]] do
    command[#command + 1] = argv[i]
    i = i + 1
  end
  while i <= n do
    local src = { sep = seps[argv[i]] }
    i = i + 1
    local items = {}
    while i <= n and not seps[argv[i]] do
      items[#items + 1] = argv[i]
      i = i + 1
    end
    if src.sep == ":::" or src.sep == ":::+" then
      sources[#sources + 1] = { kind = "list", values = items, linked = src.sep == ":::+" }
    else
      -- each file is a source of its own; "+" links the first to the one before
      for k, path in ipairs(items) do
        sources[#sources + 1] = { kind = "file", path = path, linked = k == 1 and src.sep == "::::+" }
      end
    end
  end
  return command, sources
end

-- -a files come first, in the order given (as parallel reads them).
local function with_arg_files(o, sources)
  if not o.arg_file then return sources end
  local t = {}
  for _, path in ipairs(o.arg_file) do t[#t + 1] = { kind = "file", path = path } end
  for _, s in ipairs(sources) do t[#t + 1] = s end
  return t
end

--- Parse argv: returns options, the command's words, and the input
-- sources in order: { sep = ":::" | "::::" | ":::+" | "::::+", values | files }.
function M.parse(argv, o)
  o = o or {}
  local i = parse_options(argv, o)
  local command, sources = parse_command_and_sources(argv, i, o)
  return o, command, with_arg_files(o, sources)
end

--- Words as a POSIX shell splits them (quotes and backslashes), for
-- $PARALLEL and the profile file, as parallel's shell_words.
function M.shell_words(s)
  local words, cur, i, inword = {}, {}, 1, false
  while i <= #s do
    local c = s:sub(i, i)
    if c:match("%s") then
      if inword then words[#words + 1] = table.concat(cur); cur, inword = {}, false end
    elseif c == "'" then
      local j = s:find("'", i + 1, true)
      if not j then usage_error("unbalanced ' in %q", s) end
      cur[#cur + 1], i, inword = s:sub(i + 1, j - 1), j, true
    elseif c == '"' then
      i, inword = i + 1, true
      while i <= #s and s:sub(i, i) ~= '"' do
        local d = s:sub(i, i)
        if d == "\\" and s:sub(i + 1, i + 1):match('[\\"$`]') then i = i + 1; d = s:sub(i, i) end
        cur[#cur + 1] = d
        i = i + 1
      end
      if i > #s then usage_error('unbalanced " in %q', s) end
    elseif c == "\\" then
      cur[#cur + 1], i, inword = s:sub(i + 1, i + 1), i + 1, true
    else
      cur[#cur + 1], inword = c, true
    end
    i = i + 1
  end
  if inword then words[#words + 1] = table.concat(cur) end
  return words
end

--- The whole command line as parallel reads it: the profile
-- ($PARALLEL_HOME/config, else ~/.parallel/config), then $PARALLEL, then
-- argv; words that are not options (a command such as nice) go in front
-- of the command.
function M.parse_all(argv)
  local pre = {}
  local home = os.getenv("PARALLEL_HOME") or ((os.getenv("HOME") or "") .. "/.parallel")
  local f = io.open(home .. "/config", "r")
  if f then
    local words = {}
    for line in f:lines() do
      if not line:match("^%s*#") then
        for _, w in ipairs(M.shell_words(line)) do words[#words + 1] = w end
      end
    end
    f:close()
    pre[#pre + 1] = words
  end
  local env = os.getenv("PARALLEL")
  if env and env ~= "" then pre[#pre + 1] = M.shell_words(env) end
  local o, lead = {}, {}
  for _, words in ipairs(pre) do
    local _, cmd, src = M.parse(words, o)
    if #src > 0 then usage_error("::: in $PARALLEL or the profile is not supported by lcparallel") end
    for _, w in ipairs(cmd) do lead[#lead + 1] = w end
  end
  local _, command, sources = M.parse(argv, o)
  if #lead > 0 then
    for k, w in ipairs(command) do lead[#lead + 1] = w; command[k] = nil end
    for k, w in ipairs(lead) do command[k] = w end
  end
  return o, command, sources
end

return M
