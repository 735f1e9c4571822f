-- Man pages from the markdown in doc/, so the two cannot drift:
--
--   lua5.4 scripts/man.lua OUT.1 doc/page.md [doc/more.md ...]
--
-- The first file's first line names the page: `# name(section) -- what it is`.
-- Further files are appended as more sections (their `#` title becomes a
-- section). The markdown is the subset doc/ uses: headings, paragraphs,
-- fenced blocks, `-` lists, tables, `code`, **bold**, *italic*, [links](x)
-- and `<!-- -->` lines (dropped). Tables become tagged paragraphs (one per
-- row), so no tbl is needed and nothing is too wide for a terminal.
-- No pandoc: this script is the whole toolchain.

local VERSION = "0.1.0"

local function die(msg)
  io.stderr:write("man.lua: ", msg, "\n")
  os.exit(1)
end

-- Escapes for text that roff must show as written.
local function esc(s)
  return (s:gsub("\\", "\\e"))
end

-- A code span: shown bold, its dashes as real minus signs (copy-paste safe).
local function code(s)
  return "\\fB" .. esc(s):gsub("%-", "\\-") .. "\\fR"
end

-- Inline markdown of one paragraph (already joined into one line) to roff.
local function inline(s)
  local out = {}
  local pos = 1
  while true do
    local a, b = s:find("`[^`]*`", pos)
    local plain = s:sub(pos, (a or 0) - 1)
    if not a then plain = s:sub(pos) end
    plain = esc(plain)
      :gsub("%[([^%]]+)%]%(([^)]+)%)", function(text, url)
        if url:find("^https?:") then return text .. " <" .. url .. ">" end
        return text
      end)
      :gsub("%*%*(.-)%*%*", "\\fB%1\\fR")
      :gsub("%f[%w%*]%*([^%s*][^*]-)%*", "\\fI%1\\fR")
    out[#out + 1] = plain
    if not a then break end
    out[#out + 1] = code(s:sub(a + 1, b - 1))
    pos = b + 1
  end
  local line = table.concat(out)
  -- A line starting with . or ' would be a roff request.
  if line:find("^[.']") then line = "\\&" .. line end
  return line
end

local function cells(line)
  local t = {}
  -- `\|` inside a cell is a literal bar.
  line = line:gsub("\\|", "\1")
  for c in line:gmatch("|([^|]*)") do t[#t + 1] = (c:gsub("^%s+", ""):gsub("%s+$", ""):gsub("\1", "|")) end
  if line:sub(-1) == "|" then t[#t] = nil end
  return t
end

local function convert(files)
  local out = {}
  local function emit(s) out[#out + 1] = s end
  local first = true
  for _, path in ipairs(files) do
    local f = io.open(path, "r") or die("cannot open " .. path)
    local lines = {}
    for l in f:lines() do lines[#lines + 1] = l end
    f:close()
    local i = 1
    local para = {}
    local function flush()
      if #para > 0 then
        emit(".PP")
        emit(inline(table.concat(para, " ")))
        para = {}
      end
    end
    while i <= #lines do
      local l = lines[i]
      if first then
        local name, sec, what = l:match("^# (%S+)%((%d)%) %-%- (.*)$")
        if not name then die(path .. ":1: the first line must be `# name(section) -- what it is`") end
        emit(string.format('.TH %s %s "" "luaconcurrent %s" "luaconcurrent"', name:upper(), sec, VERSION))
        emit(".SH NAME")
        emit(esc(name) .. " \\- " .. esc(what))
        first = false
        i = i + 1
      elseif l:find("^<!%-%-") then
        flush(); i = i + 1
      elseif l:find("^```") then
        flush()
        emit(".PP"); emit(".RS 4"); emit(".nf")
        i = i + 1
        while i <= #lines and not lines[i]:find("^```") do
          local c = esc(lines[i])
          if c:find("^[.']") then c = "\\&" .. c end
          emit(c)
          i = i + 1
        end
        emit(".fi"); emit(".RE")
        i = i + 1
      elseif l:find("^#+ ") then
        flush()
        local hashes, title = l:match("^(#+) (.*)$")
        title = title:gsub("%s*%-%-.*$", "")
        if #hashes <= 2 then
          -- Plain titles in capitals, as man pages have them; a title
          -- naming a function keeps its case.
          if not title:find("[`(]") then title = title:upper() end
          emit(".SH " .. inline(title))
        else
          emit(".SS " .. inline(title))
        end
        i = i + 1
      elseif l:find("^|") then
        flush()
        local head = cells(l)
        i = i + 2                                   -- the header and its --- line
        while i <= #lines and lines[i]:find("^|") do
          local row = cells(lines[i])
          emit(".TP")
          emit(inline(row[1] ~= "" and row[1] or head[1]))
          local parts = {}
          for c = 2, #row do
            if row[c] ~= "" then
              parts[#parts + 1] = (head[c] ~= "" and (head[c] .. ": ") or "") .. row[c]
            end
          end
          emit(inline(#parts > 0 and table.concat(parts, "; ") or "\\&"))
          i = i + 1
        end
      elseif l:find("^%- ") then
        flush()
        local item = { (l:gsub("^%- ", "")) }
        i = i + 1
        while i <= #lines and lines[i]:find("^  %S") do
          item[#item + 1] = lines[i]:gsub("^%s+", "")
          i = i + 1
        end
        emit(".IP \\(bu 2")
        emit(inline(table.concat(item, " ")))
      elseif l:find("^%s*$") then
        flush(); i = i + 1
      else
        para[#para + 1] = l:gsub("^%s+", "")
        i = i + 1
      end
    end
    flush()
  end
  return table.concat(out, "\n") .. "\n"
end

local outpath = arg[1]
if not outpath or not arg[2] then die("usage: lua5.4 scripts/man.lua OUT doc/page.md [more.md ...]") end
local files = {}
for k = 2, #arg do files[#files + 1] = arg[k] end
local text = convert(files)
if outpath == "-" then
  io.stdout:write(text)
else
  local f = io.open(outpath, "w") or die("cannot write " .. outpath)
  f:write(text)
  f:close()
end
