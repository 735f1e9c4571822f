--- Length-prefixed frames (string.pack "<s4") read back from a stream cut
-- anywhere: what worker processes and remote hosts send the runner.

local M = {}

--- reader(cap)(data, out) takes the next bytes of a stream of frames
-- and appends each frame they complete to out; it returns why, when a
-- frame's header says more than cap bytes (nil: no cap), else nil.
-- Linear in the bytes read: a large answer's chunks are kept apart
-- and joined once, when the frame is whole, by one concat of exactly its
-- bytes.
function M.reader(cap)
  local parts, nparts = {}, 0
  local pos = 1        -- where the unread bytes start in parts[1]
  local have = 0       -- unread bytes in all parts
  local size           -- the current frame's length, once its header is in
  local concat, unpack, remove = table.concat, string.unpack, table.remove

  -- parts[1] from pos on, and what follows it, until it holds n bytes
  -- (n is small: a header).
  local function gather(n)
    local s = parts[1]:sub(pos)
    while #s < n do
      s = s .. parts[2]
      remove(parts, 2)
      nparts = nparts - 1
    end
    parts[1], pos = s, 1
  end

  return function(data, out)
    nparts = nparts + 1
    parts[nparts] = data
    have = have + #data
    while true do
      if not size then
        if have < 4 then return nil end
        if #parts[1] - pos + 1 < 4 then gather(4) end
        size = unpack("<I4", parts[1], pos)
        if cap and size > cap then return string.format("a frame of %d bytes (the cap is %d)", size, cap) end
      end
      if have < 4 + size then return nil end
      local first = parts[1]
      if #first - pos + 1 >= 4 + size then
        out[#out + 1] = first:sub(pos + 4, pos + 3 + size)
        pos = pos + 4 + size
        if pos > #first then
          remove(parts, 1)
          nparts = nparts - 1
          pos = 1
        end
      else
        -- The frame spans parts: its pieces, then one concat.
        local pieces = { first:sub(pos + 4) }
        local need = size - #pieces[1]
        local j = 2
        while #parts[j] <= need do
          pieces[#pieces + 1] = parts[j]
          need = need - #parts[j]
          j = j + 1
          if need == 0 then break end
        end
        if need > 0 then pieces[#pieces + 1] = parts[j]:sub(1, need) end
        out[#out + 1] = concat(pieces)
        -- Drop the parts used up; the last one may hold more.
        local rest = {}
        if need > 0 then
          rest[1] = parts[j]
          pos = need + 1
          j = j + 1
        else
          pos = 1
        end
        for k = j, nparts do rest[#rest + 1] = parts[k] end
        parts, nparts = rest, #rest
        if nparts > 0 and pos > #parts[1] then
          remove(parts, 1)
          nparts = nparts - 1
          pos = 1
        end
      end
      have = have - 4 - size
      size = nil
      if nparts == 0 then parts, pos = {}, 1 end
    end
  end
end

return M
