-- Big captured outputs (issue 17 item 14): in the executable, a task's
-- stdout of 4 MiB or more becomes its result string without a second copy
-- (src/hugemem.c hands the capture buffer's pages to the Lua string). The
-- bytes must be exactly the task's, at every size around the boundaries
-- (the 4 MiB threshold, a buffer filled to its last byte, one byte more),
-- and the strings must behave as any other (compare, concatenate, be
-- collected and freed) over many runs.
local helpers = require "helpers"

local q = helpers.q
local EXE = helpers.ROOT .. "/build/luaconcurrent"
local MiB = 1 << 20

-- Sizes: under, at and over the threshold; capture buffers double from
-- 64 KiB, so 8 and 16 MiB fill one to its last byte.
local SIZES = { 4 * MiB - 26, 4 * MiB - 25, 4 * MiB, 4 * MiB + 1, 8 * MiB - 1, 8 * MiB,
                8 * MiB + 1, 16 * MiB, 20 * MiB + 12345 }

local SCRIPT = [[
local lc = require "luaconcurrent"
local sizes = {}
for n in arg[1]:gmatch("%d+") do sizes[#sizes + 1] = math.tointeger(n) end
local unit = "0123456789abcdef\n"
local tasks = {}
for i, n in ipairs(sizes) do tasks[i] = { i, tostring(n) } end
for round = 1, 3 do
  local run = lc.ProcRunAsyncio({ "/bin/sh", "-c", "yes 0123456789abcdef | head -c $0" }, tasks,
    { num_workers = 3 })
  for i, r in ipairs(run:run_all()) do
    local n = sizes[i]
    local want = unit:rep(n // #unit + 1):sub(1, n)
    assert(r.success, r.error)
    assert(#r.stdout == n, ("size %d: got %d bytes"):format(n, #r.stdout))
    assert(r.stdout == want, ("size %d: bytes differ"):format(n))
    assert(r.stderr == "")
    -- a string like any other: hashed as a table key, concatenated
    local t = { [r.stdout] = i }
    assert(t[want] == i)
    assert(#(r.stdout .. "x") == n + 1)
  end
  run = nil
  collectgarbage()
end
print("ok")
]]

describe("big captured output (the executable)", function()
  it("is the task's exact bytes at every size around the boundaries, run after run", function()
    local sizes = {}
    for i, n in ipairs(SIZES) do sizes[i] = tostring(math.tointeger(n)) end
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(SCRIPT)
    f:close()
    local out, err = helpers.sh(q(EXE) .. " " .. q(script) .. " " .. q(table.concat(sizes, " ")))
    os.remove(script)
    assert.are.equal("ok\n", out, err)
  end)
end)
