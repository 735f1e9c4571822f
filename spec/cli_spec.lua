-- End-to-end specs for the standalone executable build/luaconcurrent
-- (src/main.c, lua/luaconcurrent/cli.lua). Each runs the executable in a
-- subprocess, with output redirected to temporary files.

local cjson = require "cjson"

local function shell_out(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

local CWD = shell_out("pwd"):gsub("\n$", "")
local EXE = CWD .. "/build/luaconcurrent"
local FIX = CWD .. "/spec/fixtures/"

local helpers = require "helpers"
local q, readfile = helpers.q, helpers.read_file

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

-- Runs `cmd` (a shell command line) with optional stdin text;
-- returns exit status, stdout, stderr.
local function run(cmd, input)
  local fin, fout, ferr = os.tmpname(), os.tmpname(), os.tmpname()
  writefile(fin, input or "")
  local ok, how, code = os.execute(("%s <%s >%s 2>%s"):format(cmd, q(fin), q(fout), q(ferr)))
  local out, err = readfile(fout), readfile(ferr)
  os.remove(fin); os.remove(fout); os.remove(ferr)
  assert(how == "exit", "command killed by signal " .. tostring(code) .. ": " .. cmd)
  return code, out, err, ok
end

local function lcx(args, input)  -- run the executable with an argument string
  return run(q(EXE) .. " " .. args, input)
end

local function sleep(s) os.execute("sleep " .. s) end

-- Polls `pred` every 50 ms for at most `seconds`; returns its last value.
local function wait_until(pred, seconds)
  for _ = 1, math.ceil(seconds / 0.05) do
    local v = pred()
    if v then return v end
    sleep(0.05)
  end
  return pred()
end

-- pids of live processes whose command line contains `mark`
local function procs_with(mark)
  local found = {}
  local p = assert(io.popen("ls /proc"))
  for name in p:lines() do
    if name:match("^%d+$") then
      local s = readfile("/proc/" .. name .. "/cmdline")
      if s and s:find(mark, 1, true) then found[#found + 1] = tonumber(name) end
    end
  end
  p:close()
  return found
end

local function mktempdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -m 700 " .. q(d)))
  return d
end

describe("luaconcurrent executable", function()
  setup(function()
    assert(io.open(EXE), "missing " .. EXE .. ": run `make` first"):close()
  end)

  describe("arguments", function()
    -- The same fixture under lua5.4 and under luaconcurrent must see the
    -- same `arg` table and `...`, the interpreter's own name aside.
    local function compare(opts, script_args)
      local fixture = FIX .. "cli_args.lua"
      local rc1, out1, err1 = lcx(opts .. " " .. q(fixture) .. " " .. script_args)
      local rc2, out2, err2 = run("lua5.4 " .. opts .. " " .. q(fixture) .. " " .. script_args)
      assert.are.equal("", err1)
      assert.are.equal("", err2)
      assert.are.equal(0, rc1)
      assert.are.equal(0, rc2)
      -- the lowest index holds the interpreter as it was invoked
      local lo = tonumber(out1:match("lo\t(%-?%d+)"))
      assert.is_truthy(out1:find(("arg[%d]=[%s]"):format(lo, EXE), 1, true))
      assert.is_truthy(out2:find(("arg[%d]=[lua5.4]"):format(lo), 1, true))
      out1 = out1:gsub("%[" .. EXE:gsub("%p", "%%%0") .. "%]", "[<interp>]")
      out2 = out2:gsub("%[lua5%.4%]", "[<interp>]")
      assert.are.equal(out2, out1)
      return out1
    end

    it("passes script arguments as arg[1..n] and as ...", function()
      local out = compare("", "a 'b c' '' -x --")
      assert.is_truthy(out:find("arg[0]=[" .. FIX .. "cli_args.lua]", 1, true))
      assert.is_truthy(out:find("select#\t5", 1, true))
      assert.is_truthy(out:find("...[2]=[b c]", 1, true))
      assert.is_truthy(out:find("...[3]=[]", 1, true))
    end)

    it("puts interpreter options at negative indices", function()
      local out = compare("-e 'x=42' -W", "one")
      assert.is_truthy(out:find("arg[-3]=[-e]", 1, true))
      assert.is_truthy(out:find("arg[-2]=[x=42]", 1, true))
      assert.is_truthy(out:find("arg[-1]=[-W]", 1, true))
      assert.is_truthy(out:find("x\t42", 1, true))
    end)

    it("stops handling options at --", function()
      local out = compare("-ex=1 --", "-e -v")
      assert.is_truthy(out:find("arg[-1]=[--]", 1, true))
      assert.is_truthy(out:find("...[1]=[-e]", 1, true))
    end)
  end)

  describe("options", function()
    it("-e runs a statement", function()
      local rc, out, err = lcx("-e 'print(1 + 1)' -e 'print(x)' ")
      assert.are.equal(0, rc)
      assert.are.equal("2\nnil\n", out)
      assert.are.equal("", err)
    end)

    it("-v prints the version", function()
      local rc, out = lcx("-v")
      assert.are.equal(0, rc)
      assert.is_truthy(out:match("^luaconcurrent 0%.1%.0 %(Lua 5%.4%.%d+%)\n$"), out)
      -- the C side's version string agrees with the Lua layer's
      rc, out = lcx("-v -e 'print(require(\"luaconcurrent\").VERSION)'")
      assert.are.equal(0, rc)
      local cv, lv = out:match("^luaconcurrent (%S+) %b()\n(%S+)\n$")
      assert.is_truthy(cv, out)
      assert.are.equal(lv, cv)
    end)

    it("-h and --help print the usage on stdout", function()
      for _, o in ipairs({"-h", "--help"}) do
        local rc, out = lcx(o)
        assert.are.equal(0, rc)
        assert.is_truthy(out:find("usage: luaconcurrent", 1, true))
        assert.is_truthy(out:find("--json", 1, true))
      end
    end)

    it("rejects an unknown option with exit status 1", function()
      local rc, out, err = lcx("--bogus")
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.is_truthy(err:find("luaconcurrent: unrecognized option '--bogus'", 1, true))
      local rc2, _, err2 = lcx("-e")
      assert.are.equal(1, rc2)
      assert.is_truthy(err2:find("'-e' needs argument", 1, true))
    end)

    it("-l mod and -l g=mod require modules, embedded ones included", function()
      local rc, out, err = lcx("-l lc=luaconcurrent -l string -e 'print(lc.VERSION, type(string.format))'")
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      assert.are.equal("0.1.0\tfunction\n", out)
    end)

    it("- runs the script from stdin with arguments", function()
      local rc, out, err = lcx("- p q", "print('from stdin', ...)\n")
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      assert.are.equal("from stdin\tp\tq\n", out)
    end)

    it("runs LUA_INIT unless -E is given", function()
      local rc, out = run("LUA_INIT='print(\"init\")' " .. q(EXE) .. " -e 'print(2)'")
      assert.are.equal(0, rc)
      assert.are.equal("init\n2\n", out)
      rc, out = run("LUA_INIT='print(\"init\")' " .. q(EXE) .. " -E -e 'print(2)'")
      assert.are.equal(0, rc)
      assert.are.equal("2\n", out)
    end)
  end)

  describe("errors", function()
    it("exit 1 with 'luaconcurrent: ' and a traceback on stderr", function()
      local rc, out, err = lcx(q(FIX .. "cli_error.lua"))
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.is_truthy(err:match("^luaconcurrent: [^\n]*cli_error%.lua:3: cli_error fixture failed with boom\n"), err)
      assert.is_truthy(err:find("stack traceback:", 1, true))
      assert.is_truthy(err:find("in local 'inner'", 1, true) or err:find("in upvalue 'inner'", 1, true), err)
      assert.is_truthy(err:find("in local 'outer'", 1, true), err)
    end)

    it("copes with non-string error objects", function()
      local rc, _, err = lcx("-e 'error({})'")
      assert.are.equal(1, rc)
      assert.is_truthy(err:find("luaconcurrent: (error object is a table value)", 1, true))
      rc, _, err = lcx("-e 'error(setmetatable({}, {__tostring = function() return \"custom\" end}))'")
      assert.are.equal(1, rc)
      assert.is_truthy(err:match("^luaconcurrent: custom\nstack traceback:"), err)
    end)

    it("reports a missing script", function()
      local rc, _, err = lcx("/nonexistent/script.lua")
      assert.are.equal(1, rc)
      assert.is_truthy(err:find("luaconcurrent: cannot open /nonexistent/script.lua", 1, true))
    end)
  end)

  describe("declarative task files", function()
    it("--json prints one JSON document, one result per task in order", function()
      local rc, out, err = lcx("--json " .. q(FIX .. "cli_tasks.lua"))
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      local doc = cjson.decode(out)
      assert.is_true(doc.ok)
      assert.are.equal("number", type(doc.time_start))
      assert.are.equal("number", type(doc.time_end))
      assert.are.equal("number", type(doc.time_run))
      assert.is_true(doc.time_end >= doc.time_start)
      assert.are.equal(3, #doc.results)
      local words = {"alpha", "beta", "gamma"}
      for i, res in ipairs(doc.results) do
        assert.are.equal(i, res.key)
        assert.are.equal(words[i], res.arg)
        assert.is_true(res.success)
        assert.are.equal(0, res.returncode)
        assert.are.equal(words[i] .. "\n", res.stdout)
      end
    end)

    it("without --json prints the results as text", function()
      local rc, out, err = lcx(q(FIX .. "cli_tasks.lua"))
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      for _, w in ipairs({"alpha", "beta", "gamma"}) do
        assert.is_truthy(out:find(w, 1, true), out)
      end
    end)

    it("exits 1 when a task fails (mode = \"mp\")", function()
      local rc, out = lcx("--json " .. q(FIX .. "cli_tasks_fail.lua"))
      assert.are.equal(1, rc)
      local doc = cjson.decode(out)
      assert.is_false(doc.ok)
      assert.are.equal(2, #doc.results)
      assert.are.equal("zero", doc.results[1].key)
      assert.is_true(doc.results[1].success)
      assert.are.equal("three", doc.results[2].key)
      assert.is_false(doc.results[2].success)
      assert.are.equal(3, doc.results[2].returncode)
    end)

    it("rejects an unknown mode, naming the file", function()
      local rc, out, err = lcx(q(FIX .. "cli_tasks_badmode.lua"))
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.is_truthy(err:find('luaconcurrent: ' .. FIX .. 'cli_tasks_badmode.lua:2: mode must be "coroutine", "thread" or "process", got "threads"\n', 1, true), err)
    end)

    it("names the file in the runner's errors about it", function()
      local rc, out, err = lcx("-", 'return {pargs = {"/bin/echo"}, tasks = {{1}}, timout = 3}')
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.is_truthy(err:find("^luaconcurrent: stdin: unknown option 'timout'\n"), err)
    end)

    it("--json writes task output that is not UTF-8 as valid JSON, bytes in base64", function()
      local rc, out, err = lcx("--json -",
        [[return {pargs = {"/bin/sh", "-c", "printf '\\377\\376ok\\300'"}, tasks = {{1}}}]])
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      assert.is_not_nil(utf8.len(out), "not UTF-8: " .. out)
      local r = cjson.decode(out).results[1]
      assert.are.equal("\u{FFFD}\u{FFFD}ok\u{FFFD}", r.stdout)
      assert.are.equal("//5va8A=", r.stdout_b64)
    end)

    it("--json with an answer it cannot encode writes everything else and says what", function()
      local rc, out, err = lcx("--json -", [[return {
        pargs = {function(k) if k == 2 then return true, print end return true, k * 10 end},
        tasks = {{1}, {2}, {3}}, mode = "mp"}]])
      assert.are.equal(0, rc, err)
      local doc = cjson.decode(out)
      assert.is_true(doc.ok)
      assert.are.same({ 10, cjson.null, 30 }, { doc.results[1].answer, doc.results[2].answer, doc.results[3].answer })
      assert.is_true(doc.results[2].success)
      assert.matches("^cannot encode function as JSON", doc.results[2].unencoded.answer)
      assert.is_nil(doc.results[1].unencoded)
      -- one line on stderr for the result, one prefix
      assert.is_truthy(err:find("^luaconcurrent: %-%-json: result 2 %(key 2%): answer written as null: cannot encode function"), err)
      assert.is_nil(err:find("luaconcurrent:.*luaconcurrent:"), err)
    end)
  end)

  describe("run from another directory", function()
    it("works with an absolute path and uses the embedded Lua layer", function()
      local rc, out, err = run("cd / && " .. q(EXE) .. " --json " .. q(FIX .. "cli_tasks.lua"))
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      assert.are.equal(3, #cjson.decode(out).results)
      -- the modules come from the executable, not from a source tree
      rc, out, err = run("cd /tmp && LUA_PATH_5_4=';;' " .. q(EXE) .. " -e " .. q(
        "local lc = require 'luaconcurrent' " ..
        "print(package.searchpath('luaconcurrent', package.path) == nil) " ..
        "print(debug.getinfo(require('luaconcurrent.cli').run_task_file, 'S').source)"))
      assert.are.equal("", err)
      assert.are.equal(0, rc)
      assert.are.equal("true\n@luaconcurrent/cli.lua\n", out)
    end)
  end)

  describe("signals", function()
    -- Starts cli_sleep.lua in the background, waits until its tasks (sh
    -- and their sleep grandchildren) run, sends `sig`; returns the exit
    -- status, stderr and the pids still carrying the marker afterwards.
    local function interrupt(sig, ntasks)
      local dir = mktempdir()
      local mark = ("%d%06d"):format(os.time() % 100000, math.random(0, 999999))
      writefile(dir .. "/mark", mark .. "\n")
      local pid
      finally(function()
        if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
        for _, p in ipairs(procs_with(mark)) do os.execute("kill -KILL " .. p .. " 2>/dev/null") end
        os.execute("rm -rf " .. q(dir))
      end)
      -- the marker is only in the file, never on a command line of ours
      -- (the status is written to rc.tmp, then renamed: never read half-written)
      os.execute(("(LC_TEST_DIR=%s LC_TEST_NTASKS=%d %s %s >%s 2>%s </dev/null & " ..
                  "echo $! >%s; wait $!; echo $? >%s; mv %s %s) >/dev/null 2>&1 </dev/null &"):format(
        q(dir), ntasks, q(EXE), q(FIX .. "cli_sleep.lua"), q(dir .. "/out"), q(dir .. "/err"),
        q(dir .. "/pid"), q(dir .. "/rc.tmp"), q(dir .. "/rc.tmp"), q(dir .. "/rc")))
      pid = wait_until(function()
        local s = readfile(dir .. "/pid")
        return s and s:match("^(%d+)\n")
      end, 20)
      assert.is_truthy(pid, "the executable did not start")
      local started = wait_until(function()
        for i = 1, ntasks do
          if not readfile(dir .. "/started." .. i) then return false end
        end
        return true
      end, 30)
      assert.is_true(started, "tasks did not start: " .. (readfile(dir .. "/err") or ""))
      -- every sh and its sleep child carry the marker
      local running = wait_until(function() return #procs_with(mark) >= 2 * ntasks end, 30)
      assert.is_truthy(running, "task processes not found")
      assert.is_true(os.execute("kill -" .. sig .. " " .. pid))
      local rc = wait_until(function()
        local s = readfile(dir .. "/rc")
        return s and tonumber(s:match("^(%d+)"))
      end, 30)
      local err = readfile(dir .. "/err") or ""
      local out = readfile(dir .. "/out") or ""
      -- a process killed a moment ago may take a few ms to disappear
      local left = wait_until(function()
        local l = procs_with(mark)
        return #l == 0 and l
      end, 2) or procs_with(mark)
      return rc, err, left, out
    end

    it("SIGINT: kills every task and exits 130", function()
      local rc, err, left, out = interrupt("INT", 3)
      assert.are.equal(130, rc, err)
      assert.is_truthy(err:match("^luaconcurrent: [^\n]*interrupted by SIGINT"), err)
      assert.are.same({}, left)
      assert.is_falsy(out:find("run_all returned", 1, true))
    end)

    it("SIGTERM: kills every task and exits 143", function()
      local rc, err, left = interrupt("TERM", 4)
      assert.are.equal(143, rc, err)
      assert.is_truthy(err:match("^luaconcurrent: [^\n]*interrupted by SIGTERM"), err)
      assert.are.same({}, left)
    end)
  end)
end)
