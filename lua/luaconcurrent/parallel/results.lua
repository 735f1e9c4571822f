--- --results as GNU parallel writes it: a directory tree
-- DIR/1/<value 1>/2/<value 2>/{seq,stdout,stderr}, or, by the name's
-- extension, one CSV, TSV or JSON-lines file with the joblog's columns,
-- the values and the output. Nothing is printed on stdout then.

local M = {}
M.__index = M

local q = require("luaconcurrent.shellquote").quote

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then error("lcparallel: --results: cannot write " .. path .. ": " .. tostring(err), 0) end
  f:write(text)
  f:close()
end

-- A value as a directory name, as parallel makes it: \ -> \\, / -> \_
local function dir_name(v)
  v = v:gsub("\\", "\\\\"):gsub("/", "\\_")
  if v == "" then v = "''" end     -- never an empty path element
  return v
end

local function csv_field(s, sep)
  s = tostring(s)
  if s:find("[%s,\"]") or s:find(sep, 1, true) then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function M.new(spec, names)
  local self = setmetatable({ kind = spec.kind, path = spec.path, names = names }, M)
  if self.kind ~= "dir" then
    self.f = assert(io.open(spec.path, "w"))
  end
  return self
end

local flat = require("luaconcurrent.parallel.command").flatten

-- DIR/1/<value 1>/.../{seq,stdout,stderr}
function M:write_dir(seq, values, stdout, stderr)
  local dir = self.path
  for k, v in ipairs(values) do
    dir = dir .. "/" .. ((self.names and self.names[k]) or tostring(k)) .. "/" .. dir_name(v)
  end
  os.execute("mkdir -p -- " .. q(dir))
  write_file(dir .. "/seq", tostring(seq))
  write_file(dir .. "/stdout", stdout)
  write_file(dir .. "/stderr", stderr)
end

-- A JSON line: the joblog's columns, V (the values), Stdout, Stderr.
function M:write_json(cols, values, stdout, stderr)
  local vs = {}
  for k, v in ipairs(values) do vs[k] = json_string(v) end
  self.f:write(string.format('{ "Seq": %d, "Host": ":", "Starttime": %s, "JobRuntime": %s, "Send": 0, '
    .. '"Receive": %d, "Exitval": %d, "Signal": %d, "Command": %s, "V": [ %s ], "Stdout": %s, "Stderr": %s }\n',
    cols[1], cols[3], cols[4], #stdout, cols[7], cols[8], json_string(cols[9]), table.concat(vs, ","),
    json_string(stdout), json_string(stderr)))
  self.f:flush()
end

-- A CSV or TSV row (after the header, written once): the same columns.
function M:write_row(cols, values, stdout, stderr)
  local sep = self.kind == "csv" and "," or "\t"
  if not self.header_done then
    local h = { "Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval", "Signal", "Command" }
    for k = 1, #values do h[#h + 1] = (self.names and self.names[k]) or ("V" .. k) end
    h[#h + 1], h[#h + 2] = "Stdout", "Stderr"
    self.f:write(table.concat(h, sep), "\n")
    self.header_done = true
  end
  for _, v in ipairs(values) do cols[#cols + 1] = v end
  cols[#cols + 1], cols[#cols + 2] = stdout, stderr
  for k, v in ipairs(cols) do cols[k] = csv_field(v, sep) end
  self.f:write(table.concat(cols, sep), "\n")
  self.f:flush()
end

--- One job's result, in the form the name asked for.
function M:write(seq, records, res, command)
  local values = flat(records)
  local exitval = res.returncode or (res.success and 0 or -1)
  if res.timeout then exitval = -1 end
  local signal = res.signal or 0
  if signal > 0 then exitval = 0 end
  local stdout, stderr = res.stdout or "", res.stderr or ""
  if self.kind == "dir" then return self:write_dir(seq, values, stdout, stderr) end
  local cols = { seq, ":", string.format("%.3f", res.time_start or 0),
    string.format("%.3f", math.max(res.time_run or 0, 0)), 0, #stdout, exitval, signal, command or "" }
  if self.kind == "json" then return self:write_json(cols, values, stdout, stderr) end
  return self:write_row(cols, values, stdout, stderr)
end

function M:close()
  if self.f then self.f:close() end
  self.f = nil
end

return M
