-- busted --helper for `make check`: fails the run unless the Lua host is a
-- sanitized luaconcurrent executable whose own engine serves the specs.
--
-- The specs `require "luaconcurrent"`. In the executable, package.preload
-- holds luaconcurrent.core (linked in) and the embedded Lua layer, and the
-- preload searcher comes before package.path/cpath, so build/lib/core.so
-- (unsanitized) must never be mapped into this process.
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function fail(msg)
  io.stderr:write("make check: ", msg, "\n")
  os.exit(2)
end

local maps = read("/proc/self/maps")
if not (maps:find("libasan", 1, true) or maps:find("libtsan", 1, true)) then
  fail("the Lua host is not a sanitized build (no libasan/libtsan mapped)")
end
if type(package.preload["luaconcurrent.core"]) ~= "function" then
  fail("the Lua host has no luaconcurrent.core in package.preload")
end
if package.loaded["luaconcurrent.core"] == nil then
  local _, origin = require("luaconcurrent.core")
  if origin ~= ":preload:" then
    fail("luaconcurrent.core came from " .. tostring(origin))
  end
end
if maps:find("/core.so", 1, true) then
  fail("a core.so is mapped into the sanitized host")
end
-- cjson's one-time set-up (fpconv_init) is not thread-safe and must not
-- run in two thread workers at once: load it here first; the runner does
-- this too.
require "cjson"
-- TSan starts a thread of its own at the first pthread_create; start it
-- now, with one thread-worker task, so the specs that count this process's
-- threads before and after a run see no newcomer.
if maps:find("libtsan", 1, true) then
  local lc = require "luaconcurrent"
  local run = lc.ProcRunMp({ function() return true end }, { { 1 } }, { num_workers = 1 })
  run:run_all()
  assert(run.ok, "make check: the warm-up task failed")
end
-- (this helper replaces .busted's: load that one too, for scripts/bounded.sh)
dofile("spec/current_test.lua")
io.stderr:write("make check: host ", read("/proc/self/cmdline"):match("^[^%z]*"),
  " serves luaconcurrent.core from package.preload\n")
