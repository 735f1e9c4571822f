-- `make check-valgrind`: one pass over the engine's main paths, run by the
-- plain executable under valgrind memcheck (invalid accesses and definite
-- leaks fail it). Each step asserts its outcome, so a run that went wrong
-- without a memory error fails too.
--
--   executables: output, stdin, a spawn failure, a timeout that kills a
--     process group, an exit by signal, output past the huge-page size;
--   run_prog at top level;
--   ProcRunAsyncio coroutine tasks: lc.sleep, run_prog, errors, timeouts;
--   ProcRunMp thread workers: answers that cross states (shared tables,
--     cycles, functions with upvalues), errors, a sleeping and a CPU-bound
--     timeout, tasks from an iterator, results not kept;
--   ProcRunMp with isolation = "process";
--   core.marshal/unmarshal round trips and their errors.
--
-- Valgrind before 3.20 (Debian 12 has 3.19) does not know pidfd_open and
-- fails it with ENOSYS; the engine then watches each child by polling its
-- pid (proc.c), so the successful spawn paths are checked here too. (The
-- CAN_SPAWN branches stay for an engine built without that fallback.)
local lc = require "luaconcurrent"
local core = require "luaconcurrent.core"
-- cjson's one-time set-up (fpconv_init) is not thread-safe: load it here,
-- before any thread worker can load it concurrently.
require "cjson"

local CAN_SPAWN
do
  local retc, _, err = lc.run_prog({ "/bin/true" })
  CAN_SPAWN = retc == 0
  if not CAN_SPAWN then
    assert(err:find("cannot watch", 1, true) and err:find("ENOSYS", 1, true), err)
    io.stderr:write("memcheck: no pidfd_open here (valgrind < 3.20): ",
      "spawns are checked on their failure path\n")
  end
end

--- A result of a spawn that pidfd_open failed.
local function unwatched(r)
  return not r.success and r.exception == "OSError"
     and r.error:find("ENOSYS", 1, true) ~= nil
end

local function step(name, fn)
  local t0 = core.now()
  fn()
  io.stderr:write(string.format("memcheck: %-34s %.2f s\n", name, core.now() - t0))
end

local function by_key(results)
  local t = {}
  for _, r in ipairs(results) do t[r.key] = r end
  return t
end

step("executables", function()
  local run = lc.ProcRunAsyncio({ "/bin/sh", "-c" }, {
    { "echo", "echo out; echo err >&2" },
    { "cat", "cat" },
    { "sleep", "sleep 30 & sleep 30" },
    { "signal", "kill -TERM $$" },
    { "big", "head -c 6000000 /dev/zero" },  -- > LC_HUGE_MIN (4 MiB)
  }, { num_workers = 0, timeout = 3, input = "to stdin\n" })
  local r = by_key(run:run_all())
  if CAN_SPAWN then
    assert(r.echo.success and r.echo.stdout == "out\n" and r.echo.stderr == "err\n")
    assert(r.cat.stdout == "to stdin\n")
    assert(r.sleep.timeout and r.sleep.exception == "TimeoutError")
    assert(r.signal.returncode == -15 and not r.signal.success)
    assert(#r.big.stdout == 6000000)
  else
    for _, res in pairs(r) do assert(unwatched(res), res.error) end
  end
  local missing = lc.ProcRunAsyncio({ "/nonexistent/program" }, { { 1 } }):run_all()
  -- (Under valgrind, posix_spawn's vfork-style clone becomes a fork, so the
  -- exec error never reaches the parent: the child exits 127 instead.)
  assert(missing[1].exception == "FileNotFoundError" or missing[1].returncode == 127
         or (not CAN_SPAWN and unwatched(missing[1])))
end)

step("run_prog", function()
  local retc, out = lc.run_prog({ "/usr/bin/sort" }, { input = "b\na\n" })
  assert(not CAN_SPAWN or (retc == 0 and out == "a\nb\n"))
end)

step("big strings (huge-page blocks)", function()
  local parts = {}
  for i = 1, 4 do parts[i] = string.rep(string.char(64 + i), 3000000) end
  local s = table.concat(parts)           -- 12 MB: mapped, not malloc'd
  assert(#s == 12000000 and s:sub(-1) == "D")
  local t = core.unmarshal(core.marshal(s))
  assert(t == s)
end)

step("ProcRunAsyncio functions", function()
  local function task(key, args)
    local how = args[#args]
    if how == "sleep" then lc.sleep(0.05); return true, key end
    if how == "prog" then
      local retc, out = lc.run_prog({ "/bin/echo", key })
      return retc == 0, out
    end
    if how == "error" then error("failed on purpose") end
    if how == "timeout" then lc.sleep(30) end
    return false
  end
  local run = lc.ProcRunAsyncio({ task }, {
    { "a", "sleep" }, { "b", "prog" }, { "c", "error" }, { "d", "timeout" },
  }, { num_workers = 4, timeout = 1 })
  local r = by_key(run:run_all())
  assert(r.a.success and r.a.answer == "a")
  assert(not CAN_SPAWN or (r.b.success and r.b.answer == "b\n"))
  assert(r.c.exception == "RuntimeError" and r.c.error:find("failed on purpose", 1, true))
  assert(r.d.timeout)
end)

local shared = { name = "shared" }
local cyclic = { n = 1 }
cyclic.self = cyclic
local function scale(x) return x * shared.factor end
shared.factor = 3

local function mp_task(key, args)
  local how = args[#args]
  if how == "data" then
    return true, { a = shared, b = shared, c = cyclic, key = key,
                   f = scale, s = string.rep("x", 100000) }
  elseif how == "error" then
    error({ code = 7 })
  elseif how == "sleep" then
    lc.sleep(30)
  elseif how == "busy" then
    while true do end
  end
  return true, scale(key)
end

step("ProcRunMp thread workers", function()
  local run = lc.ProcRunMp({ mp_task }, {
    { 1, "data" }, { 2, "error" }, { 3, "sleep" }, { 4, "busy" }, { 5, "x" },
  }, { num_workers = 3, timeout = 2 })
  local r = by_key(run:run_all())
  local ans = r[1].answer
  assert(ans.a == ans.b and ans.a.name == "shared" and ans.c.self == ans.c)
  assert(ans.f(2) == 6 and #ans.s == 100000)
  assert(r[2].exception == "RuntimeError")
  assert(r[3].timeout and r[4].timeout)
  assert(r[5].answer == 15)

  local i, seen = 0, 0
  local iter = function()
    i = i + 1
    if i <= 200 then return { i, "x" } end
  end
  lc.ProcRunMp({ mp_task }, iter, {
    num_workers = 2, keep_results = false,
    on_result = function(res) if res.success then seen = seen + 1 end end,
  }):run_all()
  assert(seen == 200)
end)

step("ProcRunMp isolation = process", function()
  local run = lc.ProcRunMp({ mp_task }, { { 1, "x" }, { 2, "error" } },
                           { num_workers = 2, isolation = "process", timeout = 30 })
  local r = by_key(run:run_all())
  if CAN_SPAWN then
    assert(r[1].success and r[1].answer == 3)
    assert(r[2].exception == "RuntimeError")
  else
    assert(unwatched(r[1]) and unwatched(r[2]))
  end
end)

step("marshal", function()
  local t = { 1, "two", { 3 }, [true] = false, fn = scale }
  t.me = t
  local back = core.unmarshal(core.marshal(t, nil, 4.5))
  assert(back.me == back and back[3][1] == 3 and back.fn(1) == 3)
  assert(not pcall(core.marshal, io.stdout))
  assert(not pcall(core.marshal, coroutine.create(print)))
end)

collectgarbage()
print("memcheck: all steps passed")
