-- W3: big outputs. usage: w3.lua [NTASKS=4] [BYTES=200000000] [CONCURRENCY=NTASKS]
-- 4 tasks each writing 200 MB of zeros to stdout (head -c), all captured;
-- every result must hold exactly BYTES bytes of stdout.
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local B = dofile(here .. "/common.lua")
local lc = require "luaconcurrent"

local n = tonumber(B.args[1]) or 4
local bytes = math.tointeger(tonumber(B.args[2]) or 200000000)
local conc = tonumber(B.args[3]) or n

local tasks = {}
for i = 1, n do tasks[i] = { i, nil } end

local run = lc.ProcRunAsyncio({ "/usr/bin/head", "-c", tostring(bytes), "/dev/zero" },
                              tasks, { num_workers = conc })
local res = run:run_all()
B.verify(run, res, n, function(r)
  if r.success ~= true then return false, "not successful" end
  if type(r.stdout) ~= "string" or #r.stdout ~= bytes then
    return false, "stdout is not " .. bytes .. " bytes"
  end
  if r.stderr ~= "" then return false, "unexpected stderr" end
  return true
end)
