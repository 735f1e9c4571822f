-- Run control (control.lua, control/*): retries, halt, joblog and resume,
-- output modes, results files — for every kind of task.

local lc = require "luaconcurrent"
local helpers = require "helpers"
local cjson = require "cjson"

local tmp = helpers.tmp_path

local lines = helpers.file_lines

local function columns(line)
  local cols = {}
  for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
  return cols
end

-- Fails until it has been run `n` times for its key (counted in a file).
local FLAKY = [==[n=$(cat "$0.$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.$1"; [ $n -ge "$1" ]]==]

describe("run control", function()
  helpers.leak_check(before_each, after_each)

  describe("retries", function()
    it("runs a failed task again and counts the attempts", function()
      local base = tmp()
      local run = lc.ProcRunAsyncio({ "sh", "-c", FLAKY, base }, { { 1, 1 }, { 2, 2 }, { 3, 3 }, { 4, 4 } },
        { retries = 2 })
      local r = run:run_all()
      assert.is_true(r[1].success); assert.are.equal(1, r[1].attempts)
      assert.is_true(r[2].success); assert.are.equal(2, r[2].attempts)
      assert.is_true(r[3].success); assert.are.equal(3, r[3].attempts)
      assert.is_false(r[4].success); assert.are.equal(3, r[4].attempts)
      assert.are.equal("3\n", helpers.read_file(base .. ".4"))
      for i = 1, 4 do os.remove(base .. "." .. i) end
    end)

    it("retries timed-out function tasks on thread workers, after retry_delay", function()
      local base = tmp()
      local fn = dofile(helpers.FIXTURES .. "/control_tasks.lua").flaky
      local run = lc.ProcRunMp({ fn, base }, { { 1, 2 }, { 2, 1 } },
        { retries = 1, retry_delay = 0.05, num_workers = 2, timeout = 5 })
      local r = run:run_all()
      assert.is_true(r[1].success, r[1].error); assert.are.equal(2, r[1].attempts)
      assert.is_true(r[2].success); assert.are.equal(1, r[2].attempts)
      os.remove(base .. ".1"); os.remove(base .. ".2")
    end)

    it("does not retry a task whose run was stopped", function()
      local n = 0
      local run = lc.ProcRunAsyncio({ "false" }, { { 1 } }, { retries = 3,
        on_result = function() n = n + 1; error("stop here") end })
      assert.has_error(function() run:run_all() end)
      assert.are.equal(1, n)
      assert.are.equal(4, run.result[1].attempts)
    end)
  end)

  describe("halt", function()
    local tasks = { { 1, "exit 1" }, { 2, "sleep 0.5" }, { 3, "sleep 0.5" }, { 4, "true" }, { 5, "true" } }

    it("now: kills the running tasks at the first failure; the rest never start", function()
      local run = lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { num_workers = 3, halt = "now,fail=1" })
      local r = run:run_all()
      assert.is_false(run.ok)
      assert.are.equal("now,fail=1", run.halted)
      assert.are.equal(1, r[1].returncode)
      for _, i in ipairs({ 2, 3 }) do
        assert.are.equal("Interrupted", r[i].exception)
        assert.matches("halted", r[i].error)
      end
      for _, i in ipairs({ 4, 5 }) do
        assert.are.equal("Interrupted", r[i].exception)
        assert.matches("not started: the run halted", r[i].error)
      end
    end)

    it("soon: lets the running tasks finish and starts no new one", function()
      local run = lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { num_workers = 3, halt = "soon,fail=1" })
      local r = run:run_all()
      assert.are.equal("soon,fail=1", run.halted)
      assert.is_true(r[2].success)
      assert.is_true(r[3].success)
      assert.matches("not started", r[4].error)
      assert.matches("not started", r[5].error)
    end)

    it("success=N and percentages, for coroutine tasks", function()
      local ok = function(key) return key % 2 == 0 end
      local list = {}
      for i = 1, 10 do list[i] = { i } end
      local run = lc.ProcRunAsyncio({ ok }, list, { num_workers = 1, halt = "soon,success=2" })
      local r = run:run_all()
      assert.are.equal(4, helpers.count_success(r) + 2)   -- 2 succeeded, 1 and 3 failed
      assert.matches("not started", r[5].error)
      run = lc.ProcRunAsyncio({ ok }, list, { num_workers = 1, halt = "soon,fail=30%" })
      r = run:run_all()
      assert.matches("not started", r[6].error)   -- 3 of 10 failed after task 5
      assert.is_nil(r[5].exception)
    end)

    for _, mode in ipairs({ { "thread workers", {} }, { "worker processes", { isolation = "process" } } }) do
      for _, when in ipairs({ "soon", "now" }) do
        it(when .. ": tasks handed to " .. mode[1] .. " ahead of their start do not start", function()
          local fn = dofile(helpers.FIXTURES .. "/control_tasks.lua").fail_third
          local list = {}
          for i = 1, 200 do list[i] = { i } end
          local opts = { num_workers = 2, halt = when .. ",fail=1" }
          for k, v in pairs(mode[2]) do opts[k] = v end
          local run = lc.ProcRunMp({ fn }, list, opts)
          local r = run:run_all()
          assert.are.equal(200, #r)
          local ok, halted = 0, 0
          for _, res in ipairs(r) do
            if res.success then ok = ok + 1 end
            if (res.error or ""):find("the run halted", 1, true) then halted = halted + 1 end
          end
          -- Before, every task already handed over ran (about 130 of 200).
          assert.is_true(ok < 40, ok .. " tasks ran after the halt")
          assert.is_true(halted > 150, halted .. " results say the run halted")
          assert.are.equal(when .. ",fail=1", run.halted)
        end)
      end
    end

    it("soon: a task waiting out its retry_delay is not run again; its last try is its result", function()
      local base = tmp()
      -- task 1 fails at once and would run again after 1 s; task 2
      -- succeeds meanwhile, which halts the run (success=1)
      local count = [[n=$(cat "$0.$1" 2>/dev/null || echo 0); echo $((n+1)) > "$0.$1"; ]]
      local run = lc.ProcRunAsyncio({ "sh", "-c", count .. [[[ "$1" = 2 ] && sleep 0.2 || exit 1]], base },
        { { 1, 1 }, { 2, 2 } }, { num_workers = 2, retries = 3, retry_delay = 1, halt = "soon,success=1" })
      local r = run:run_all()
      assert.are.equal("soon,success=1", run.halted)
      assert.is_true(r[2].success)
      assert.are.equal("1\n", helpers.read_file(base .. ".1"))    -- ran once
      assert.is_false(r[1].success)
      assert.are.equal(1, r[1].returncode)
      assert.are.equal(1, r[1].attempts)
      assert.matches("not run again: the run halted %(halt = soon,success=1%)", r[1].error)
      os.remove(base .. ".1"); os.remove(base .. ".2")
    end)

    it("rejects a policy it cannot read, naming it", function()
      assert.has_error(function() lc.ProcRunAsyncio({ "true" }, {}, { halt = "later,fail=1" }) end,
        "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: halt must be \"never\" or \"now|soon,fail|success|done=N[%]\", got \"later,fail=1\")")
    end)
  end)

  describe("joblog", function()
    it("writes one line per task in GNU parallel's columns plus the key", function()
      local log = tmp()
      lc.ProcRunAsyncio({ "sh", "-c" }, { { "a", "exit 0" }, { "b", "exit 3" }, { "c", "kill -TERM $$" } },
        { joblog = log }):run_all()
      local l = lines(log)
      assert.are.equal("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tKey", l[1])
      assert.are.equal(4, #l)
      local by_key = {}
      for i = 2, 4 do local c = columns(l[i]); by_key[c[10]] = c end
      assert.are.equal("0", by_key['"a"'][7])
      assert.are.equal("3", by_key['"b"'][7])
      assert.are.equal("15", by_key['"c"'][8])
      assert.are.equal("sh -c exit 3", by_key['"b"'][9])
      assert.is_true(tonumber(by_key['"a"'][3]) > 1e9)
      os.remove(log)
    end)

    it("resume = true after a SIGKILL runs every task exactly once successfully", function()
      local log = tmp()
      local cmd = helpers.lua_env() .. " exec lua5.4 " .. helpers.q(helpers.FIXTURES .. "/joblog_run.lua")
        .. " " .. helpers.q(log)
      local p = io.popen(cmd .. " false 40 >/dev/null 2>&1 & echo $!")
      local pid = tonumber(p:read("l")); p:close()
      assert.is_true(helpers.wait_until(function() return #lines(log) >= 6 end, 30))
      os.execute("kill -KILL " .. pid)
      helpers.wait_until(function() return helpers.read_file("/proc/" .. pid .. "/stat") == nil end, 5)
      local logged_before = #lines(log) - 1
      assert.is_true(logged_before < 40)
      local _, _, code = helpers.sh(cmd .. " true 40")
      assert.are.equal(0, code)
      local count = {}
      local l = lines(log)
      for i = 2, #l do
        local c = columns(l[i])
        if c[1] ~= "Seq" then
          assert.are.equal("0", c[7])
          count[c[10]] = (count[c[10]] or 0) + 1
        end
      end
      for i = 1, 40 do assert.are.equal(1, count[tostring(i)], "task " .. i) end
      os.remove(log); os.remove(log .. ".ran")
    end)

    it('resume = "failed" runs again only the tasks that failed', function()
      local log = tmp()
      local base = tmp()
      local run = function(resume)
        return lc.ProcRunAsyncio({ "sh", "-c", FLAKY, base }, { { 1, 1 }, { 2, 2 } },
          { joblog = log, resume = resume }):run_all()
      end
      local r = run(false)
      assert.is_true(r[1].success); assert.is_false(r[2].success)
      r = run("failed")
      assert.is_true(r[1].skipped); assert.is_true(r[2].success)
      assert.is_nil(r[2].skipped)
      assert.are.equal("1\n", helpers.read_file(base .. ".1"))
      os.remove(log); os.remove(base .. ".1"); os.remove(base .. ".2")
    end)
  end)

  describe("output", function()
    local function run_child(opts)
      return helpers.run_lua(string.format([[
        local lc = require "luaconcurrent"
        local tasks = {}
        for i = 1, 5 do tasks[i] = {i, string.format("sleep 0.%%d; echo out%%d; echo err%%d >&2", 5 - i, i, i)} end
        lc.ProcRunAsyncio({"sh", "-c"}, tasks, %s):run_all()
      ]], opts))
    end

    it('"ordered" writes each task\'s output in task order while they finish out of order', function()
      local out = run_child('{num_workers = 5, output = "ordered"}')
      assert.are.equal("out1\nout2\nout3\nout4\nout5\n", out)
    end)

    it('"stream" writes each output as its task finishes, stderr to stderr', function()
      local out, err = run_child('{num_workers = 5, output = "stream"}')
      assert.are.equal("out5\nout4\nout3\nout2\nout1\n", out)
      assert.matches("err5\nerr4", err)
    end)

    it("tag prefixes every line with the key", function()
      local out = run_child('{num_workers = 5, output = "ordered", tag = true}')
      assert.are.equal("1\tout1\n2\tout2\n3\tout3\n4\tout4\n5\tout5\n", out)
    end)

    it('"lines" shows each line while its task still runs', function()
      local dir = tmp()
      os.execute("mkdir " .. helpers.q(dir))
      local out = dir .. "/out"
      -- The task prints a line, then waits until the spec has seen that
      -- line in the runner's output (it creates go), then ends.
      local task = string.format("printf 'first\\npart'; while [ ! -e %s/go ]; do sleep 0.01; done; echo ial",
        helpers.q(dir))
      local cmd = helpers.lua_env() .. " lua5.4 -e " .. helpers.q(string.format([[
        local lc = require "luaconcurrent"
        lc.ProcRunAsyncio({"sh", "-c"}, {{"k", %q}}, {output = "lines", tag = true, timeout = 20}):run_all()
      ]], task)) .. " > " .. helpers.q(out) .. " &"
      os.execute(cmd)
      local seen = helpers.wait_until(function() return (helpers.read_file(out) or ""):find("k\tfirst\n") end, 15)
      local before = helpers.read_file(out)
      assert(io.open(dir .. "/go", "w")):close()
      assert.is_truthy(seen, "the first line did not show while the task ran")
      assert.are.equal("k\tfirst\n", before)      -- the partial line waits
      assert.is_true(helpers.wait_until(function() return helpers.read_file(out) == "k\tfirst\nk\tpartial\n" end, 15))
      os.execute("rm -rf " .. helpers.q(dir))
    end)

    it('"collect" writes nothing', function()
      local out = run_child('{num_workers = 5}')
      assert.are.equal("", out)
    end)
  end)

  describe("progress", function()
    local cmd = helpers.q(helpers.ROOT .. "/build/luaconcurrent")
      .. " --parallel --bar -j2 sleep ::: 0.2 0.2 0.2 0.2"

    it("draws a bar in a real terminal and erases it at the end", function()
      if helpers.sh("command -v script") == "" then
        pending("script(1) is not installed")
        return
      end
      local out, _, code = helpers.sh("script -qec " .. helpers.q(cmd) .. " /dev/null")
      assert.are.equal(0, code)
      assert.matches("\r%[=+>? *%] 4/4  0 running  0 failed  [%d.]+/s  ETA 0:00\27%[K", out)
      assert.matches("1/4", out)
      assert.are.equal("\r\27[K", out:sub(-4))   -- erased: nothing left on the line
    end)

    it("writes nothing when stderr is not a terminal", function()
      local out, err, code = helpers.sh(cmd)
      assert.are.equal(0, code)
      assert.are.equal("", out)
      assert.are.equal("", err)
    end)
  end)

  it("timeline draws one bar per task on at most num_workers rows, as valid SVG", function()
    local svg, log = tmp() .. ".svg", tmp()
    local tasks = {}
    for i = 1, 9 do tasks[i] = { "k<" .. i .. ">&", i % 3 == 0 and "exit 2" or "sleep 0.0" .. i } end
    lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { num_workers = 3, timeline = svg, joblog = log }):run_all()
    local _, err, code = helpers.sh("xmllint --noout " .. helpers.q(svg))
    assert.are.equal(0, code, err)
    local doc = helpers.read_file(svg)
    local _, bars = doc:gsub("<rect ", "")
    assert.are.equal(9, bars)
    assert.is_nil(doc:find("slot 4", 1, true))
    assert.is_truthy(doc:find("k&lt;3&gt;&amp;: ", 1, true))
    assert.is_truthy(doc:find("exit 2, failed", 1, true))
    -- The same picture from the joblog.
    local svg2 = tmp() .. ".svg"
    lc.timeline(log, svg2)
    _, err, code = helpers.sh("xmllint --noout " .. helpers.q(svg2))
    assert.are.equal(0, code, err)
    local _, bars2 = helpers.read_file(svg2):gsub("<rect ", "")
    assert.are.equal(9, bars2)
    os.remove(svg); os.remove(svg2); os.remove(log)
  end)

  describe("max_capture", function()
    it("keeps the first bytes in memory and all of the output in a file", function()
      local r = lc.ProcRunAsyncio({ "sh", "-c" }, { { 1, "seq 100000" }, { 2, "echo small" } },
        { max_capture = 100 }):run_all()
      local whole = helpers.sh("seq 100000")
      assert.are.equal(whole:sub(1, 100), r[1].stdout)
      assert.are.equal(#whole, r[1].stdout_size)
      assert.are.equal(whole, r[1].stdout_file:read("a"))
      r[1].stdout_file:close()
      assert.are.equal("small\n", r[2].stdout)
      assert.is_nil(r[2].stdout_file)
    end)

    it("lets run_prog do the same, and streams the whole output", function()
      local _, out, _, res = lc.run_prog({ "seq", "1000" }, { max_capture = 10 })
      assert.are.equal("1\n2\n3\n4\n5\n", out)
      assert.are.equal(3893, res.stdout_size)
      res.stdout_file:close()
      local streamed = helpers.run_lua([[
        local lc = require "luaconcurrent"
        lc.ProcRunAsyncio({"seq"}, {{1, 3000}}, {max_capture = 16, output = "stream"}):run_all()
      ]])
      assert.are.equal(helpers.sh("seq 3000"), streamed)
    end)

    it("rejects a size that is not a positive whole number", function()
      assert.has_error(function() lc.ProcRunAsyncio({ "true" }, {}, { max_capture = 0 }) end,
        "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: max_capture must be a positive whole number of bytes, got 0)")
    end)
  end)

  it("results writes each result as one JSON line", function()
    local path = tmp()
    lc.ProcRunMp({ function(k) return k ~= 2, k end }, { { 1 }, { 2 }, { 3 } },
      { results = path, num_workers = 2 }):run_all()
    local seen = {}
    for _, l in ipairs(lines(path)) do
      local doc = cjson.decode(l)
      seen[doc.key] = doc.success
    end
    assert.are.same({ true, false, true }, seen)
    os.remove(path)
  end)

  it("checks the joblog, results and timeline paths at construction, naming the file", function()
    local file = tmp()
    assert(io.open(file, "w")):close()
    for _, name in ipairs({ "joblog", "results", "timeline" }) do
      local what = name == "joblog" and "the joblog" or "the " .. name .. " file"
      assert.has_error(function()
        helpers.unwrap(lc.ProcRunAsyncio, { "true" }, { { 1 } }, { [name] = "/nonexistent-dir/x" })
      end, "luaconcurrent: cannot write " .. what .. ": /nonexistent-dir/x: No such file or directory")
      -- a path through a regular file
      assert.has_error(function()
        helpers.unwrap(lc.ProcRunAsyncio, { "true" }, { { 1 } }, { [name] = file .. "/x" })
      end, "luaconcurrent: cannot write " .. what .. ": " .. file .. "/x: Not a directory")
      assert.has_error(function()
        helpers.unwrap(lc.ProcRunAsyncio, { "true" }, { { 1 } }, { [name] = "/tmp" })
      end, "luaconcurrent: cannot write " .. what .. ": /tmp: Is a directory")
    end
    assert.has_error(function() helpers.unwrap(lc.ProcRunAsyncio, { "true" }, {}, { results = 3 }) end,
      "luaconcurrent: results must be a file path (string), got 3")
    os.remove(file)
  end)

  it("names bad run-control options", function()
    assert.has_error(function() lc.ProcRunAsyncio({ "true" }, {}, { retries = -1 }) end,
      "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: retries must be a non-negative integer, got -1)")
    assert.has_error(function() lc.ProcRunAsyncio({ "true" }, {}, { resume = true }) end,
      "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: resume needs a joblog to read)")
    assert.has_error(function() lc.ProcRunAsyncio({ "true" }, {}, { output = "loud" }) end,
      "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: output must be \"collect\", \"stream\", \"ordered\" or \"lines\", got \"loud\")")
  end)
end)
