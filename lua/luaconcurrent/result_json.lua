--- ProcResult's JSON form: output bytes that are not UTF-8 kept exactly
-- (as `<name>_b64`), big outputs encoded in bounded pieces. result.lua's
-- json_parts / to_json use it; lua-cjson does the encoding of each value.

local M = {}

-- JSON text must be UTF-8, and task output is bytes. to_json writes a
-- string field that is not valid UTF-8 twice: under its own name as text
-- (each byte that is not part of a valid UTF-8 sequence replaced by U+FFFD),
-- and as `<name>_b64`, the exact bytes in base64 (RFC 4648, with padding).
-- A reader that wants the bytes takes `<name>_b64` when it is present. A
-- field that cannot be written at all (a function, a table with a string
-- that is not UTF-8 or a NaN inside, a sparse array) is written as null and
-- named, with the reason, in the object `unencoded` ({"answer": "..."}).

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local D = {}                 -- sextet -> the byte of its digit
for i = 0, 63 do D[i] = B64:byte(i + 1) end

-- 12 bytes in, 16 digits out per string.char: few and short-lived strings
-- (a 50 MB output makes 4 M of them, not 17 M pairs and joins).
local function base64(s)
  local out, n, byte, char = {}, 0, string.byte, string.char
  local len = #s
  local full12 = len - len % 12
  for i = 1, full12, 12 do
    local a1, b1, c1, a2, b2, c2, a3, b3, c3, a4, b4, c4 = byte(s, i, i + 11)
    n = n + 1
    out[n] = char(
      D[a1 >> 2], D[(a1 & 3) << 4 | b1 >> 4], D[(b1 & 15) << 2 | c1 >> 6], D[c1 & 63],
      D[a2 >> 2], D[(a2 & 3) << 4 | b2 >> 4], D[(b2 & 15) << 2 | c2 >> 6], D[c2 & 63],
      D[a3 >> 2], D[(a3 & 3) << 4 | b3 >> 4], D[(b3 & 15) << 2 | c3 >> 6], D[c3 & 63],
      D[a4 >> 2], D[(a4 & 3) << 4 | b4 >> 4], D[(b4 & 15) << 2 | c4 >> 6], D[c4 & 63])
  end
  local i = full12 + 1
  while i + 2 <= len do
    local a, b, c = byte(s, i, i + 2)
    n = n + 1
    out[n] = char(D[a >> 2], D[(a & 3) << 4 | b >> 4], D[(b & 15) << 2 | c >> 6], D[c & 63])
    i = i + 3
  end
  local rest = len - i + 1
  if rest == 1 then
    local a = byte(s, i)
    n = n + 1
    out[n] = char(D[a >> 2], D[(a & 3) << 4]) .. "=="
  elseif rest == 2 then
    local a, b = byte(s, i, i + 1)
    n = n + 1
    out[n] = char(D[a >> 2], D[(a & 3) << 4 | b >> 4], D[(b & 15) << 2]) .. "="
  end
  return table.concat(out)
end
M.base64 = base64

-- s with every byte that is not part of a valid UTF-8 sequence replaced by
-- U+FFFD; nil when s is valid UTF-8 already.
local function utf8_text(s)
  if utf8.len(s) then return nil end
  local out, i = {}, 1
  while true do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
    if i > #s then break end
  end
  return table.concat(out)
end

-- Why `v` (a table) cannot be JSON because of a string that is not UTF-8
-- inside it, or nil. (cjson itself rejects functions, NaN, sparse arrays.)
local function invalid_utf8_in(v, seen)
  seen = seen or {}
  if seen[v] then return nil end
  seen[v] = true
  for k, x in pairs(v) do
    if type(k) == "string" and not utf8.len(k) then return "a key that is not valid UTF-8" end
    if type(x) == "string" and not utf8.len(x) then return "a string that is not valid UTF-8" end
    if type(x) == "table" then
      local why = invalid_utf8_in(x, seen)
      if why then return why end
    end
  end
  return nil
end

-- Big strings (a task's output) are encoded a chunk at a time, and their
-- JSON is kept as pieces of about PIECE bytes until the one final join (or
-- the one writev of a results line): the memory for a result stays a small
-- multiple of its output, not a table entry per replaced byte.
local CHUNK = 1 << 16            -- bytes of input encoded at a time
local PIECE = 1 << 20            -- pieces are joined up to this size

-- Appends to parts (n entries so far) the JSON string of s, its text fixed
-- to UTF-8 when it is not (or, b64 = true, its base64); returns the new n.
local function put_string(parts, n, s, enc, b64)
  local len = #s
  if len <= CHUNK then
    n = n + 1
    parts[n] = enc(b64 and base64(s) or utf8_text(s) or s)
    return n
  end
  local buf, nbuf, size = {}, 1, 1
  buf[1] = '"'
  local byte, i = string.byte, 1
  while i <= len do
    local j = math.min(i + CHUNK - 1, len)
    if b64 then
      j = i + (j - i + 1) // 3 * 3 - 1                       -- whole 3-byte groups
      if j < i then j = len end
    else
      -- end the chunk before a continuation byte, so no valid sequence
      -- is split (at most 3 steps back)
      local k = j
      while k > i and k < len and k > j - 3 and (byte(s, k + 1) & 0xC0) == 0x80 do k = k - 1 end
      if k > i and (k >= len or (byte(s, k + 1) & 0xC0) ~= 0x80) then j = k end
    end
    local piece = s:sub(i, j)
    local text = enc(b64 and base64(piece) or utf8_text(piece) or piece)
    text = text:sub(2, -2)                                  -- without its quotes
    nbuf = nbuf + 1
    buf[nbuf], size = text, size + #text
    if size >= PIECE then
      n = n + 1
      parts[n] = table.concat(buf, "", 1, nbuf)
      buf, nbuf, size = {}, 0, 0
    end
    i = j + 1
  end
  nbuf = nbuf + 1
  buf[nbuf] = '"'
  n = n + 1
  parts[n] = table.concat(buf, "", 1, nbuf)
  return n
end

--- A result's JSON object (its fields in that order) as a list of pieces
-- (joined, they are to_json's text), and the unencoded table or nil.
function M.parts(self, fields, cjson)
  local enc = cjson.encode
  local parts, n, unencoded = { "{" }, 1, nil
  for f, name in ipairs(fields) do
    local v = self[name]
    n = n + 1
    parts[n] = (f > 1 and "," or "") .. enc(name) .. ":"
    if type(v) == "string" then
      local valid = utf8.len(v) ~= nil
      n = put_string(parts, n, v, enc, false)
      if not valid then
        n = n + 1
        parts[n] = "," .. enc(name .. "_b64") .. ":"
        n = put_string(parts, n, v, enc, true)
      end
    else
      local text, why
      if type(v) == "table" then why = invalid_utf8_in(v) end
      if not why then
        local ok, e = pcall(enc, v == nil and cjson.null or v)
        if ok then text = e else why = tostring(e) end
      end
      if why then
        text = "null"
        unencoded = unencoded or {}
        unencoded[name] = "cannot encode " .. type(v) .. " as JSON: " .. why
      end
      n = n + 1
      parts[n] = text
    end
  end
  if unencoded then
    local names = {}
    for name in pairs(unencoded) do names[#names + 1] = name end
    table.sort(names)
    local kv = {}
    for i, name in ipairs(names) do
      kv[i] = enc(name) .. ":" .. enc(utf8_text(unencoded[name]) or unencoded[name])
    end
    n = n + 1
    parts[n] = ',"unencoded":{' .. table.concat(kv, ",") .. "}"
  end
  parts[n + 1] = "}"
  return parts, unencoded
end

return M
