--- lcparallel's input: the values of each job, as GNU parallel reads them.
--
-- Sources are ::: lists, :::: and -a files ("-" is stdin), else stdin.
-- A record is one value from each source (all combinations, the first
-- source slowest; :::+ / ::::+ link a source to the one before, the
-- shortest deciding; --link links all, recycling the shorter ones).
-- --colsep splits each value into columns, --header names them. A job
-- takes one record, or -n/-N records, or with -X/-m as many as fit.
--
-- One source is streamed: a record is read when a job needs it, so jobs
-- start as lines arrive and memory does not grow with the input. Several
-- sources are read whole first (as parallel does), their combinations not.

local args = require "luaconcurrent.parallel.args"

local usage_error = args.usage_error

local M = {}

--- -d's value: C escapes as parallel takes them (\n, \t, \0, \\, \x41, \101).
function M.delimiter(d)
  if d == nil then return "\n" end
  local s = d:gsub("\\(x%x%x?)", function(h) return string.char(tonumber(h:sub(2), 16)) end)
  s = s:gsub("\\([0-7][0-7]?[0-7]?)", function(o) return string.char(tonumber(o, 8) % 256) end)
  s = s:gsub("\\(.)", { n = "\n", t = "\t", r = "\r", a = "\a", b = "\b", f = "\f", v = "\v", ["\\"] = "\\" })
  if s == "" then usage_error("-d needs a delimiter, got an empty one") end
  return s
end

--- A reader of one file's records: read() -> value | nil at the end.
local function reader(path, delim)
  local f
  if path == "-" then f = io.stdin
  else
    local err
    f, err = io.open(path, "r")
    if not f then usage_error("cannot open input file %s: %s", path, (err or ""):gsub("^[^:]*: ", "")) end
  end
  if delim == "\n" then
    return function()
      if not f then return nil end
      local l = f:read("l")
      if l == nil then
        if f ~= io.stdin then f:close() end
        f = nil
      end
      return l
    end
  end
  -- Byte by byte (stdio buffers it): a pipe's record is taken as soon as
  -- its delimiter arrives, without waiting for more input.
  local last, dn = delim:sub(-1), #delim
  return function()
    if not f then return nil end
    local t, n = {}, 0
    while true do
      local c = f:read(1)
      if c == nil then
        if f ~= io.stdin then f:close() end
        f = nil
        if n == 0 then return nil end
        return table.concat(t)
      end
      n = n + 1
      t[n] = c
      if c == last and n >= dn and (dn == 1 or table.concat(t, "", n - dn + 1, n) == delim) then
        return table.concat(t, "", 1, n - dn)
      end
    end
  end
end

--- A Perl regular expression (the simple ones --colsep is given) as a
-- Lua pattern; refuses what it cannot translate.
function M.lua_pattern(re)
  local out, i = {}, 1
  local classes = { t = "\t", s = "%s", S = "%S", d = "%d", D = "%D", w = "[%w_]", W = "[^%w_]", n = "\n" }
  while i <= #re do
    local c = re:sub(i, i)
    if c == "\\" then
      local e = re:sub(i + 1, i + 1)
      out[#out + 1] = classes[e] or ("%" .. e):gsub("^%%(%w)", "%1")
      i = i + 2
    elseif c == "[" then
      local j = re:find("]", i + 2, true)
      if not j then usage_error("--colsep: cannot use %q (an unclosed [)", re) end
      local body = re:sub(i + 1, j - 1):gsub("\\t", "\t"):gsub("\\s", "%%s"):gsub("%%(%W)", "%%%%%1")
      out[#out + 1] = "[" .. body:gsub("([%]%%])", "%%%1") .. "]"
      i = j + 1
    elseif c == "+" or c == "*" or c == "?" then
      if c == "*" then c = "*" end
      out[#out + 1] = c == "*" and "*" or c == "+" and "+" or "?"
      i = i + 1
    elseif c == "." then
      out[#out + 1] = "."
      i = i + 1
    elseif c:match("[()|{}^$]") then
      usage_error("--colsep %q: lcparallel takes simple regular expressions only"
        .. " (characters, classes, \\t \\s \\d, + * ?), not %s", re, c)
    else
      out[#out + 1] = c:match("%W") and "%" .. c or c
      i = i + 1
    end
  end
  return table.concat(out)
end

local function split(s, pat)
  local t, at = {}, 1
  while true do
    local i, j = s:find(pat, at)
    if not i or j < i then break end
    t[#t + 1] = s:sub(at, i - 1)
    at = j + 1
  end
  t[#t + 1] = s:sub(at)
  return t
end

--- The sources' readers: each a function returning the next value.
local function readers(sources, delim)
  local t = {}
  for k, s in ipairs(sources) do
    if s.kind == "list" then
      -- a ::: value holding newlines is several values, as parallel reads it
      local vals = s.values
      if delim == "\n" then
        vals = {}
        for _, v in ipairs(s.values) do
          if v:find("\n", 1, true) then
            for piece in (v .. "\n"):gmatch("([^\n]*)\n") do vals[#vals + 1] = piece end
          else
            vals[#vals + 1] = v
          end
        end
      end
      local i = 0
      t[k] = function() i = i + 1; return vals[i] end
    else
      t[k] = reader(s.path, delim)
    end
  end
  return t
end

local function read_all(read)
  local t = {}
  for v in read do t[#t + 1] = v end
  return t
end

-- --header: the names of the columns, from the first record of each source.
local function header_names(o, reads, colpat)
  if not o.header then return nil end
  if o.header ~= ":" and o.header ~= ".*\\n" and o.header ~= ".*\n" then
    usage_error("--header %q: lcparallel takes --header : (the first line of each source)", o.header)
  end
  local names = {}
  for _, read in ipairs(reads) do
    local h = read()
    if h ~= nil then
      for _, name in ipairs(colpat and split(h, colpat) or { h }) do names[#names + 1] = name end
    end
  end
  return names
end

-- One source: its records streamed, each read when asked for.
local function streamed(read, expand, keep)
  return function()
    while true do
      local v = read()
      if v == nil then return nil end
      local rec = expand({ v })
      if keep(rec) then return rec end
    end
  end
end

-- Several sources' lists in groups: a linked source (:::+, ::::+, or all
-- with --link) joins the group before it.
local function link_groups(o, sources, lists)
  local groups = {}
  for k, s in ipairs(sources) do
    if k > 1 and (s.linked or o.link) then
      table.insert(groups[#groups], lists[k])
    else
      groups[#groups + 1] = { lists[k], recycle = o.link }
    end
  end
  return groups
end

-- Each group's number of records: the shortest list's (the longest's
-- with --link, recycling the others), 0 if a list is empty.
local function group_sizes(groups)
  local sizes = {}
  for g, group in ipairs(groups) do
    local n
    for _, list in ipairs(group) do
      if group.recycle then n = math.max(n or 0, #list) else n = math.min(n or math.huge, #list) end
    end
    for _, list in ipairs(group) do if #list == 0 then n = 0 end end
    sizes[g] = n or 0
  end
  return sizes
end

-- The groups' combinations: an odometer over the groups, the last fastest.
local function combinations(groups, sizes, expand, keep)
  local idx, done = {}, false
  for g = 1, #groups do
    idx[g] = 1
    if sizes[g] == 0 then done = true end
  end
  return function()
    while not done do
      local rec = {}
      for g, group in ipairs(groups) do
        for _, list in ipairs(group) do
          rec[#rec + 1] = list[(idx[g] - 1) % #list + 1]
        end
      end
      local g = #groups
      while g >= 1 do
        idx[g] = idx[g] + 1
        if idx[g] <= sizes[g] then break end
        idx[g] = 1
        g = g - 1
      end
      if g == 0 then done = true end
      rec = expand(rec)
      if keep(rec) then return rec end
    end
    return nil
  end
end

--- An iterator over records: each a list of values (one a source, or
-- its columns with --colsep). Also returns the header names (or nil).
function M.records(o, sources)
  local delim = M.delimiter(o.delimiter)
  if #sources == 0 then sources = { { kind = "file", path = "-" } } end
  local reads = readers(sources, delim)
  local colpat = o.colsep and M.lua_pattern(o.colsep)
  local skip_empty = o.no_empty
  local names = header_names(o, reads, colpat)

  local function expand(rec)
    if not colpat then return rec end
    local t = {}
    for _, v in ipairs(rec) do
      for _, c in ipairs(split(v, colpat)) do t[#t + 1] = c end
    end
    return t
  end

  local function keep(rec)
    if not skip_empty then return true end
    for _, v in ipairs(rec) do if v:find("%S") then return true end end
    return false
  end

  if #reads == 1 then return streamed(reads[1], expand, keep), names end
  -- several sources: read whole, then groups of linked sources
  local lists = {}
  for k, read in ipairs(reads) do lists[k] = read_all(read) end
  local groups = link_groups(o, sources, lists)
  return combinations(groups, group_sizes(groups), expand, keep), names
end

-- -n N / -N N: the records a job; 0 for -N0 (one read, none inserted).
local function per_job(o)
  local per = o.max_replace_args or o.max_args
  if not per then return nil end
  local n = math.tointeger(tonumber(per))
  if not n or n < 0 then usage_error("-%s needs a whole number, got %q", o.max_replace_args and "N" or "n", per) end
  if n == 0 and o.max_args and not o.max_replace_args then n = 1 end
  return n
end

-- A job for each record read, made by wrap (nil at the end).
local function each(next_record, wrap)
  return function()
    local r = next_record()
    if r == nil then return nil end
    return wrap(r)
  end
end

-- -n/-N, -X/-m: records gathered into jobs, up to per or, with -X/-m,
-- as many as fit in max_len (cost(record): what one adds).
local function batched(o, next_record, per, slots, max_len, cost)
  local pending, spread = {}, false
  local function get()
    if #pending > 0 then return table.remove(pending, 1) end
    return next_record()
  end
  local limit = per
  -- EOF while filling the first job: spread over the slots
  local function spread_out(job)
    spread = true
    limit = math.ceil(#job / slots)
    for i = limit + 1, #job do pending[#pending + 1] = job[i] end
    for i = #job, limit + 1, -1 do job[i] = nil end
  end
  local function room() return type(max_len) == "function" and max_len() or max_len end
  return function()
    local job, len = {}, 0
    while not (limit and #job >= limit) do
      local r = get()
      if r == nil then
        if o.context and not spread and not per and #job > 1 then spread_out(job) end
        break
      end
      local rlen = 0
      if cost then rlen = cost(r) else for _, v in ipairs(r) do rlen = rlen + #v + 3 end end
      if o.context and not per and #job > 0 and len + rlen > room() then
        table.insert(pending, 1, r)
        spread = true     -- a full job: the input is big, no spreading
        break
      end
      job[#job + 1], len = r, len + rlen
    end
    if #job == 0 then return nil end
    return job
  end
end

--- Jobs: iterator over { records... } — one record each, or n of them
-- (-n/-N), or with -X/-m as many as fit (spread over the job slots when
-- the input ends while filling the first job, as parallel does).
function M.jobs(o, next_record, slots, max_len, cost)
  local per = per_job(o)
  if per == 0 then return each(next_record, function() return { empty = true } end) end
  if not per and not o.context then return each(next_record, function(r) return { r } end) end
  return batched(o, next_record, per, slots, max_len, cost)
end

return M
