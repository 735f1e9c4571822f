-- Soak family "utf8": task output and answers that are not valid UTF-8.
-- Every result's res:to_json() must be valid UTF-8, decode with cjson, and
-- give back each string field's exact bytes: through `<name>_b64` when the
-- bytes are not valid UTF-8 (the field itself then being text with U+FFFD
-- in place of the bad bytes), as the field itself when they are.
--
--   build/luaconcurrent scripts/soak/utf8.lua
--   SOAK_UTF8_N=5000     tasks, split between five runs:
--     exec        ProcRunAsyncio, `sh -c 'printf "$1"; printf "$2" >&2'`: stdout and stderr
--     capture     the same under ProcRunMp with max_capture = 16: `stdout` keeps the
--                 first 16 bytes (often cutting a character), `stdout_file` all of them
--     process     ProcRunMp isolation = "process": io.write (captured stdout) and the answer
--     coroutine   ProcRunAsyncio function tasks: the answer, or the error of `return false, s`
--     thread      ProcRunMp thread workers: the same
--
-- Each task's bytes come from its number: '\377\376ok\300' itself, random
-- bytes (NUL included), valid UTF-8 (no _b64 expected), truncated, overlong,
-- surrogate and past-U+10FFFF sequences, or nothing.

local lc = require "luaconcurrent"
local cjson = require "cjson"
local here = (arg and arg[0] or ""):match("^(.*)/") or "."
local C = dofile(here .. "/common.lua")

local N = C.env_number("SOAK_UTF8_N", 5000)
local R = C.report("utf8")

---------------------------------------------------------------- the bytes
local FIXED = {
  "\255\254ok\192",                          -- the issue's example
  "h\u{E9}llo \u{2713} \u{1D11E}",            -- valid UTF-8
  "caf\195",                                 -- truncated 2-byte sequence
  "\226\156",                                -- truncated 3-byte sequence
  "\192\175 overlong",                       -- overlong '/'
  "\237\160\128 surrogate",                  -- U+D800 encoded
  "\244\144\128\128 past max",               -- U+110000
  "",                                        -- nothing
  "plain ascii\n",
}

local function bytes_of(i, salt)
  local r = (i * 7 + salt) % 20
  if r < #FIXED then return FIXED[r + 1] end
  -- random bytes from a small LCG seeded by the task number
  local x = (i * 2654435761 + salt * 40503) & 0x7fffffff
  local len = x % 41
  local t = {}
  for k = 1, len do
    x = (x * 1103515245 + 12345) & 0x7fffffff
    t[k] = string.char(x >> 16 & 255)
  end
  return table.concat(t)
end

-- printf format giving exactly s: every byte as an octal escape.
local function printf_format(s)
  return (s:gsub(".", function(c) return string.format("\\%03o", c:byte()) end))
end

---------------------------------------------------------------- checks
local counts = { fields = 0, b64 = 0, valid = 0, results = 0 }
local seen, bad, bad_examples = {}, 0, {}

local function fail(key, fmt, ...)
  bad = bad + 1
  if #bad_examples < 8 then
    bad_examples[#bad_examples + 1] = string.format("key %s: " .. fmt, tostring(key), ...)
  end
  return false
end

local function show(s)
  return s == nil and "nil" or string.format("%q", s):gsub("\n", "n")
end

-- res must carry `want` (field -> exact bytes) and its JSON must round-trip them.
local function check(res, want)
  local key = res.key
  for field, bytes in pairs(want) do
    if res[field] ~= bytes then
      return fail(key, "%s is %s, want %s", field, show(res[field]), show(bytes))
    end
  end
  local ok, json = pcall(res.to_json, res)
  if not ok then return fail(key, "to_json raised %s", tostring(json)) end
  if not utf8.len(json) then return fail(key, "to_json is not valid UTF-8: %s", show(json)) end
  local dok, d = pcall(cjson.decode, json)
  if not dok then return fail(key, "cjson.decode failed (%s) on %s", tostring(d), show(json)) end
  if d.key ~= key then return fail(key, "JSON key %s", tostring(d.key)) end
  if d.unencoded ~= nil then return fail(key, "JSON has unencoded: %s", cjson.encode(d.unencoded)) end
  for field, bytes in pairs(want) do
    counts.fields = counts.fields + 1
    local text, b64 = d[field], d[field .. "_b64"]
    if utf8.len(bytes) then
      counts.valid = counts.valid + 1
      if text ~= bytes then return fail(key, "JSON %s is %s, want %s", field, show(text), show(bytes)) end
      if b64 ~= nil then return fail(key, "JSON has %s_b64 for valid UTF-8", field) end
    else
      counts.b64 = counts.b64 + 1
      if type(b64) ~= "string" then return fail(key, "JSON lacks %s_b64 for %s", field, show(bytes)) end
      local back = C.unbase64(b64)
      if back ~= bytes then
        return fail(key, "%s_b64 %s decodes to %s, want %s", field, b64, show(back), show(bytes))
      end
      if type(text) ~= "string" or not utf8.len(text) or not text:find("\u{FFFD}", 1, true) then
        return fail(key, "JSON %s is %s: want text with U+FFFD", field, show(text))
      end
    end
  end
  return true
end

local want_of = {}      -- key -> fields it must carry, set when the task is made

local rss = C.sampler(N, math.max(1, N // 100), 0.05)
local function on_result(res)
  counts.results = counts.results + 1
  local key = res.key
  seen[key] = (seen[key] or 0) + 1
  local want = want_of[key]
  want_of[key] = nil
  if not want then
    fail(key, "a result for no task (or a second one)")
  else
    if want.capture then
      -- max_capture: stdout keeps the first bytes, stdout_file has them all.
      local all = want.capture
      want.capture = nil
      local whole = ""
      if res.stdout_file then
        res.stdout_file:seek("set", 0)
        whole = res.stdout_file:read("a")
        res.stdout_file:close()
      end
      if whole ~= all and not (#all <= 16 and res.stdout_file == nil) then
        fail(key, "stdout_file holds %s, want %s", show(whole), show(all))
      end
    end
    if want.success ~= nil and res.success ~= want.success then
      fail(key, "success %s (%s %s)", tostring(res.success), tostring(res.exception), tostring(res.error))
    end
    want.success = nil
    check(res, want)
  end
  rss:tick()
end

---------------------------------------------------------------- the runs
local function tasks(first, last, make) return C.tasks(first, last, make, want_of) end

local function exec_task(i)
  local out, err = bytes_of(i, 1), bytes_of(i, 2)
  return { stdout = out, stderr = err, success = true }, { printf_format(out), printf_format(err) }
end

local CAP = 16
local function capture_task(i)
  local out = bytes_of(i, 3) .. bytes_of(i, 4) .. bytes_of(i, 5)
  return { stdout = out:sub(1, CAP), capture = out, success = true }, { printf_format(out), "" }
end

-- Function tasks: args[#args] is the task number; the bytes are made in the
-- task by the same rule (bytes_of is an upvalue: it crosses to workers).
-- With "print" in pargs (worker processes, where it is captured) a task also
-- writes bytes to its stdout.
local function fn_task(key, args)
  local i = args[#args]
  local s = bytes_of(i, 6)
  if i % 3 == 0 then return false, s end
  if i % 3 == 1 and args[1] == "print" then io.write(bytes_of(i, 7)) end
  return true, s
end

local function fn_want(printed)
  return function(i)
    local s = bytes_of(i, 6)
    if i % 3 == 0 then return { error = s, success = false }, i end
    local want = { answer = s, success = true }
    if printed and i % 3 == 1 then want.stdout = bytes_of(i, 7) end
    return want, i
  end
end

local SH = { "sh", "-c", 'printf "$1"; printf "$2" >&2', "sh" }
local part = math.max(1, N // 5)
local bounds = {}
for k = 1, 5 do bounds[k] = { (k - 1) * part + 1, k == 5 and N or k * part } end

collectgarbage()
collectgarbage()
local start = C.resources()
rss:start()
local runs = {
  { "exec (ProcRunAsyncio)", lc.ProcRunAsyncio, SH, exec_task, {} },
  { "capture (ProcRunMp, max_capture)", lc.ProcRunMp, SH, capture_task, { max_capture = CAP } },
  { "process (ProcRunMp isolation)", lc.ProcRunMp, { fn_task, "print" }, fn_want(true), { isolation = "process", num_workers = 2 } },
  { "coroutine (ProcRunAsyncio)", lc.ProcRunAsyncio, { fn_task }, fn_want(false), { num_workers = 64 } },
  { "thread (ProcRunMp)", lc.ProcRunMp, { fn_task }, fn_want(false), { num_workers = 2 } },
}
for k, spec in ipairs(runs) do
  local name, class, pargs, make, opts = table.unpack(spec)
  opts.num_workers = opts.num_workers or 16
  opts.timeout, opts.keep_results, opts.on_result = 10, false, on_result
  local before, t0 = counts.results, require("luaconcurrent.core").now()
  local ok, err = pcall(function() class(pargs, tasks(bounds[k][1], bounds[k][2], make), opts):run_all() end)
  R:check(ok, "%s: %s", name, tostring(err))
  R:line("%-34s %5d results in %.1f s, RSS after %d KiB", name, counts.results - before,
    require("luaconcurrent.core").now() - t0, C.rss_kb())
end
rss:finish()

local missing, dup = 0, 0
for i = 1, N do
  if not seen[i] then missing = missing + 1 elseif seen[i] > 1 then dup = dup + 1 end
end
R:line("tasks %d, results %d; string fields checked %d (%d through _b64, %d valid UTF-8)",
  N, counts.results, counts.fields, counts.b64, counts.valid)
R:line("missing %d, duplicated %d, bad %d", missing, dup, bad)
for _, e in ipairs(bad_examples) do R:line("  %s", e) end
R:line("RSS (KiB) %s", rss:figures())
R:check(counts.results == N and missing == 0 and dup == 0,
  "%d results for %d tasks (%d missing, %d duplicated)", counts.results, N, missing, dup)
R:check(bad == 0, "%d results whose bytes or JSON were wrong", bad)
R:check(counts.b64 > 0 and counts.valid > 0, "the mix did not cover both kinds of field")
R:compare_resources(start)
R:sum("tasks", N)
R:sum("results", counts.results)
R:sum("b64_fields", counts.b64)
R:sum("rss", string.format("%d/%d/%d/%d", rss.start_kb, rss.end_kb, rss.min, rss.max))
R:finish()
