-- TEMPORARY: loop:timer / loop:cancel_timer in Lua until the engine has
-- them (src/core_loop.c). Removed when that lands.
local core = require "luaconcurrent.core"
local async = require "luaconcurrent.async"
if core.HOOK_COUNT == nil then core.HOOK_COUNT = 1000 end
local probe = core.new_loop()
local methods = getmetatable(probe).__index
probe:close()
if not methods.timer then
  local heaps = setmetatable({}, { __mode = "k" })
  local next_id = 0
  local function heap_of(loop)
    local h = heaps[loop]
    if not h then h = { heap = async.heap(), armed = {} }; heaps[loop] = h end
    return h
  end
  function methods.timer(loop, when)
    next_id = next_id - 1
    local h = heap_of(loop)
    h.heap:push({ when, next_id })
    h.armed[next_id] = true
    return next_id
  end
  function methods.cancel_timer(loop, id)
    local h = heap_of(loop)
    local was = h.armed[id]
    h.armed[id] = nil
    return was == true
  end
  local poll = methods.poll
  function methods.poll(loop, wait)
    local h = heap_of(loop)
    local top = h.heap:peek()
    while top and not h.armed[top[2]] do h.heap:pop(); top = h.heap:peek() end
    if top then
      local w = math.max(0, top[1] - core.now())
      if wait == nil or w < wait then wait = w end
    end
    local recs = poll(loop, wait)
    local t = core.now()
    top = h.heap:peek()
    while top and top[1] <= t do
      h.heap:pop()
      if h.armed[top[2]] then
        h.armed[top[2]] = nil
        recs[#recs + 1] = { id = top[2], timer = true }
      end
      top = h.heap:peek()
    end
    return recs
  end
end
return true
