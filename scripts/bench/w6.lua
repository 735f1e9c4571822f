-- W6: CPU-bound function tasks on thread workers.
-- usage: w6.lua calibrate [SECONDS=0.25]   -> prints loops=COUNT (one task ~ SECONDS
--                                              in this plain Lua state) and secs=
--        w6.lua WORKERS LOOPS [NTASKS=16]   -> ProcRunMp, num_workers = WORKERS
-- Each task runs a pure-Lua loop of LOOPS iterations. Only run_all is timed
-- (core monotonic clock); prints elapsed=SECONDS and time_run=.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local now = require("luaconcurrent.core").now

local function burn(key, args)
  local loops = args[#args]
  local x = 0
  for i = 1, loops do x = x + i % 7 end
  return true, x
end

local function expected(loops)  -- sum of i % 7 for i = 1..loops
  local full, rest = loops // 7, loops % 7
  return full * 21 + rest * (rest + 1) // 2
end

if B.args[1] == "calibrate" then
  local want = tonumber(B.args[2]) or 0.25
  local loops = 1000000
  for _ = 1, 4 do          -- grow until one pass takes long enough to time
    local t0 = now()
    burn(0, { loops })
    local dt = now() - t0
    if dt >= 0.1 then
      loops = math.floor(loops * want / dt)
      break
    end
    loops = loops * 4
  end
  -- one check pass at the chosen count and a proportional correction, then
  -- a last pass at the final count to report what one task takes here
  local t0 = now()
  burn(0, { loops })
  loops = math.floor(loops * want / (now() - t0))
  t0 = now()
  burn(0, { loops })
  io.write(string.format("loops=%d\nsecs=%.4f\n", loops, now() - t0))
  os.exit(0)
end

local workers = math.tointeger(tonumber(B.args[1]))
local loops = math.tointeger(tonumber(B.args[2]))
local n = math.tointeger(tonumber(B.args[3]) or 16)
if not workers or not loops then B.fail("usage: w6.lua WORKERS LOOPS [NTASKS]") end

local lc = require "luaconcurrent"
local tasks = {}
for i = 1, n do tasks[i] = { i, loops } end
local run = lc.ProcRunMp({ burn }, tasks, { num_workers = workers })
local t0 = now()
local res = run:run_all()
local elapsed = now() - t0
if run.ok ~= true then B.fail("run.ok is %s", tostring(run.ok)) end
local want = expected(loops)
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if r.answer ~= want then return false, "answer is not " .. want end
  return true
end)
io.write(string.format("elapsed=%.6f\n", elapsed))
