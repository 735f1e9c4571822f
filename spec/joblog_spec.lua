-- The joblog (control/joblog.lua): GNU parallel's columns, checked one by
-- one and against GNU parallel itself; the "parallel" format and its
-- resume by Seq; whole lines on a full disk; a cut last line; resume of a
-- task killed by a signal.

local lc = require "luaconcurrent"
local joblog = require "luaconcurrent.control.joblog"
local helpers = require "helpers"

local tmp = helpers.tmp_path

local lines = helpers.file_lines

local function columns(line, n)
  local cols = {}
  for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
  if n and #cols > n then
    cols[n] = table.concat(cols, "\t", n)
    for i = #cols, n + 1, -1 do cols[i] = nil end
  end
  return cols
end

-- The joblog's data lines as column lists, by their last column (the key,
-- or with n = 9 the Command).
local function by_last(path, n)
  local t = {}
  for i, l in ipairs(lines(path)) do
    if i > 1 then
      local c = columns(l, n)
      t[c[#c]] = c
    end
  end
  return t
end

local function have(cmd) return helpers.sh("command -v " .. cmd) ~= "" end

describe("joblog", function()
  helpers.leak_check(before_each, after_each)

  it("writes whole lines from string pieces only: a number piece is refused, not converted", function()
    -- a converted number would be a string only the stack holds, its
    -- pointer kept past its life (core_file.c)
    local core = require "luaconcurrent.core"
    local path = tmp()
    local f = assert(core.file_open(path, "w"))
    local ok, err = pcall(f.write, f, { "a", 12, "b\n" })
    assert.is_false(ok)
    assert.matches("piece 2 is not a string", err)
    assert.is_true(f:write({ "x", "y\n" }))
    f:close()
    assert.are.equal("xy\n", helpers.read_file(path))
    os.remove(path)
  end)

  describe("columns", function()
    it("Host is the host that ran the task (':' here)", function()
      -- A stand-in ssh on PATH runs the remote side here: the remote
      -- executor's path, without an sshd.
      local dir = tmp()
      assert(os.execute("mkdir " .. helpers.q(dir)))
      local f = assert(io.open(dir .. "/ssh", "w"))
      f:write('#!/bin/sh\nwhile [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done\nshift; shift\nexec sh -c "$1"\n')
      f:close()
      os.execute("chmod +x " .. helpers.q(dir .. "/ssh"))
      local log, here = dir .. "/remote.log", dir .. "/here.log"
      local out, err = helpers.run_lua(string.format([[
        local lc = require "luaconcurrent"
        -- each task waits for the other to start: with one slot a host,
        -- they run at once, one on each host (a run starts on the first
        -- host up, so without the wait both could go to one host)
        local gate = %q
        local function task(me, other)
          return "touch " .. gate .. me .. "; while [ ! -e " .. gate .. other .. " ]; do sleep 0.01; done; echo " .. me
        end
        lc.ProcRunAsyncio({"sh", "-c"}, {{1, task("a", "b")}, {2, task("b", "a")}},
          {hosts = {"1/fakehost.example", "1/user@otherhost:2222"}, joblog = %q, timeout = 60}):run_all()
        lc.ProcRunAsyncio({"sh", "-c"}, {{1, "echo a"}}, {joblog = %q}):run_all()
      ]], dir .. "/started.", log, here), "PATH=" .. helpers.q(dir) .. ":\"$PATH\"")
      local hosts = {}
      for _, c in pairs(by_last(log)) do hosts[#hosts + 1] = c[2] end
      table.sort(hosts)
      assert.are.same({ "fakehost.example", "user@otherhost:2222" }, hosts, out .. err)
      assert.are.equal(":", by_last(here)["1"][2])
      os.execute("rm -rf " .. helpers.q(dir))
    end)

    it("Starttime, JobRuntime in parallel's formats; Send is stdin's bytes, Receive stdout's", function()
      local log = tmp()
      local before = os.time()
      lc.ProcRunAsyncio({ "sh", "-c" }, {
        { "slow", "sleep 0.3" },
        { "out", "cat >/dev/null; printf 12345; printf '%0100d' 0 >&2" },
      }, { joblog = log, input = "hello\n", num_workers = 2 }):run_all()
      local t = by_last(log)
      local slow, out = t['"slow"'], t['"out"']
      assert.matches("^%d+%.%d%d%d$", slow[3])
      assert.is_true(tonumber(slow[3]) >= before - 1 and tonumber(slow[3]) <= os.time() + 1)
      assert.matches("^ *%d+%.%d%d%d$", slow[4])
      assert.are.equal(10, #slow[4])                     -- "%10.3f"
      assert.is_true(tonumber(slow[4]) >= 0.3 and tonumber(slow[4]) < 30, slow[4])
      assert.are.equal("6", out[5])                      -- "hello\n" went to its stdin
      -- a caller that knows better (lcparallel --pipe: each task's block)
      lc.ProcRunAsyncio({ "true" }, { { "s", "x" } }, { joblog = { path = log,
        send = function(key, arg, res) return #key + #arg + (res.success and 40 or 0) end } }):run_all()
      assert.are.equal("42", by_last(log)['"s"'][5])
      assert.are.equal("5", out[6])                      -- stdout only; 100 bytes of stderr
      assert.are.equal("0", slow[6])
      os.remove(log)
    end)

    it("Exitval -1 for a timed-out task, 0 with the signal for a killed one", function()
      local log = tmp()
      lc.ProcRunAsyncio({ "sh", "-c" }, { { "t", "sleep 30" }, { "k", "kill -TERM $$" }, { "e", "exit 3" } },
        { joblog = log, timeout = 0.5, num_workers = 3 }):run_all()
      local t = by_last(log)
      assert.are.same({ "-1", "15" }, { t['"t"'][7], t['"t"'][8] })
      assert.are.same({ "0", "15" }, { t['"k"'][7], t['"k"'][8] })
      assert.are.same({ "3", "0" }, { t['"e"'][7], t['"e"'][8] })
      os.remove(log)
    end)

    it("format = \"parallel\": the same columns and numbers as GNU parallel's own joblog", function()
      if not have("parallel") then
        pending("GNU parallel is not installed")
        return
      end
      local cmds = { "echo x; exit 0", "exit 3", "kill -TERM $$", "echo abc >&2; printf 'a\tb\\n'", "sleep 30" }
      local mine, theirs = tmp(), tmp()
      local tasks = {}
      for i, c in ipairs(cmds) do tasks[i] = { i, c } end
      lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { num_workers = 5, timeout = 1,
        joblog = { path = mine, format = "parallel", command = function(_, arg) return arg end } }):run_all()
      local list = {}
      for _, c in ipairs(cmds) do list[#list + 1] = helpers.q(c) end
      helpers.sh("parallel --will-cite -j5 --timeout 1 --joblog " .. helpers.q(theirs) .. " {} ::: "
        .. table.concat(list, " "))
      local a, b = lines(mine), lines(theirs)
      assert.are.equal(b[1], a[1])                       -- the header
      assert.are.equal(#b, #a)
      local ma, mb = by_last(mine, 9), by_last(theirs, 9)
      for _, c in ipairs(cmds) do
        local x, y = ma[c], mb[c]
        assert.is_table(x, c)
        assert.is_table(y, c)
        -- Seq, Host, Send, Receive, Exitval, Signal and Command equal;
        -- times in the same formats
        for _, col in ipairs({ 1, 2, 5, 6, 7, 8, 9 }) do
          assert.are.equal(y[col], x[col], "column " .. col .. " of " .. c)
        end
        assert.are.equal(#y[4], #x[4])
        assert.matches("^%d+%.%d%d%d$", x[3])
      end
      os.remove(mine); os.remove(theirs)
    end)

    it("the Key column is JSON as lua-cjson writes it, without needing cjson", function()
      local cjson = require "cjson"
      for i = 0, 255 do
        local s = "k" .. string.char(i) .. "/"
        assert.are.equal(cjson.encode(s), joblog.key_text(s), "byte " .. i)
      end
      for _, v in ipairs({ 1, -7, 1.5, 0.1, 1e300, 1 / 3, 2 ^ 53 }) do
        assert.are.equal(cjson.encode(v), joblog.key_text(v))
      end
    end)
  end)

  describe("format = \"parallel\"", function()
    it("is read by GNU parallel's --resume-failed, and lcparallel's options map onto it", function()
      if not have("parallel") then
        pending("GNU parallel is not installed")
        return
      end
      local log = tmp()
      lc.ProcRunAsyncio({ "sh", "-c" }, { { "a", "exit 0" }, { "b", "exit 1" }, { "c", "kill -TERM $$" } },
        { joblog = { path = log, format = "parallel" } }):run_all()
      assert.are.equal(joblog.HEADER_PARALLEL, lines(log)[1] .. "\n")
      local out = helpers.sh("parallel --will-cite -k --resume-failed --joblog " .. helpers.q(log)
        .. " echo ::: 1 2 3")
      assert.are.equal("2\n3\n", out)       -- Seq 1 succeeded; 2 failed; 3 was killed
      assert.are.same({ path = "x", append = true }, joblog.cli("+x"))
      assert.are.same({ path = "x", append = false }, joblog.cli("x"))
      os.remove(log)
    end)

    it("resumes from a joblog GNU parallel wrote, by Seq; read_parallel gives its commands", function()
      if not have("parallel") then
        pending("GNU parallel is not installed")
        return
      end
      local log = tmp()
      helpers.sh("parallel --will-cite -j1 --joblog " .. helpers.q(log) .. " 'exit {}' ::: 0 1 0 3")
      local jobs, last = joblog.read_parallel(log)
      assert.are.equal(4, last)
      assert.is_true(jobs[1].ok); assert.is_false(jobs[2].ok)
      assert.are.equal("exit 3", jobs[4].command)
      assert.are.equal(3, jobs[4].exitval)
      local ran = {}
      local run = lc.ProcRunAsyncio({ function(key) ran[#ran + 1] = key; return true end },
        { { "w" }, { "x" }, { "y" }, { "z" } },
        { joblog = { path = log, format = "parallel" }, resume = "failed", num_workers = 1 })
      local r = run:run_all()
      assert.are.same({ "x", "z" }, ran)
      assert.is_true(r[1].skipped); assert.is_true(r[3].skipped)
      -- appended (resume), no second header; parallel reads it back
      local l = lines(log)
      assert.are.equal(7, #l)
      assert.is_true(joblog.read_parallel(log)[2].ok)
      os.remove(log)
    end)

    it("--retry-failed as documented: read_parallel's commands, resume = \"failed\", same Seq as parallel", function()
      if not have("parallel") then
        pending("GNU parallel is not installed")
        return
      end
      local base = tmp()
      local cmds = {}
      for i, code in ipairs({ 0, 1, 0, 2 }) do
        -- fails the first time when code ~= 0, succeeds after
        cmds[i] = string.format("if [ -e %s.%d ]; then echo again%d; else touch %s.%d; exit %d; fi",
          base, i, i, base, i, code)
      end
      local list = {}
      for _, c in ipairs(cmds) do list[#list + 1] = helpers.q(c) end
      local theirs, mine = tmp(), tmp()
      -- one joblog by parallel (tasks 2 and 4 failed), a copy of it each
      helpers.sh("parallel --will-cite -j1 --joblog " .. helpers.q(theirs) .. " {} ::: " .. table.concat(list, " "))
      helpers.sh("cp " .. helpers.q(theirs) .. " " .. helpers.q(mine))
      -- theirs again with --retry-failed; mine through the recipe
      helpers.sh("parallel --will-cite -j1 --retry-failed --joblog " .. helpers.q(theirs))
      local jobs, last = joblog.read_parallel(mine)
      local tasks = {}
      for seq = 1, last do tasks[seq] = { seq, jobs[seq].command } end
      local r = lc.ProcRunAsyncio({ "sh", "-c" }, tasks, { num_workers = 1, resume = "failed",
        joblog = { path = mine, format = "parallel", command = function(_, arg) return arg end } }):run_all()
      assert.is_true(r[1].skipped and r[3].skipped)
      assert.are.equal("again2\n", r[2].stdout)
      local a, b = lines(mine), lines(theirs)
      assert.are.equal(#b, #a)
      for i = 1, #b do
        local x, y = columns(a[i], 9), columns(b[i], 9)
        for _, col in ipairs({ 1, 2, 5, 6, 7, 8, 9 }) do assert.are.equal(y[col], x[col], "line " .. i) end
      end
      for i = 1, 4 do os.remove(base .. "." .. i) end
      os.remove(mine); os.remove(theirs)
    end)

    it("truncates unless resuming; append = true (--joblog +file) appends without a header", function()
      local log = tmp()
      local function run(opts, n)
        local tasks = {}
        for i = 1, n do tasks[i] = { i } end
        lc.ProcRunAsyncio({ function() return true end }, tasks, { joblog = opts }):run_all()
      end
      run({ path = log, format = "parallel" }, 3)
      run({ path = log, format = "parallel" }, 2)
      assert.are.equal(3, #lines(log))                   -- truncated: header + 2
      run({ path = log, format = "parallel", append = true }, 2)
      assert.are.equal(5, #lines(log))
      os.remove(log)
      run({ path = log, format = "parallel", append = true }, 1)
      assert.matches("^1\t:\t", lines(log)[1])            -- parallel writes no header then
      os.remove(log)
    end)

    it("names what is wrong with the option and with a joblog it cannot read", function()
      assert.has_error(function() helpers.unwrap(lc.ProcRunAsyncio, { "true" }, {}, { joblog = { path = "x", format = "csv" } }) end,
        'luaconcurrent: joblog.format must be "luaconcurrent" or "parallel", got "csv"')
      assert.has_error(function() helpers.unwrap(lc.ProcRunAsyncio, { "true" }, {}, { joblog = { format = "parallel" } }) end,
        "luaconcurrent: joblog.path must be a file path (string), got nil")
      assert.has_error(function() helpers.unwrap(lc.ProcRunAsyncio, { "true" }, {}, { joblog = { path = "x", commands = print } }) end,
        'luaconcurrent: joblog has an unknown field "commands" (path, format, command, send, append)')
      assert.has_error(function() helpers.unwrap(lc.ProcRunAsyncio, { "true" }, {}, { joblog = { path = "x", send = 3 } }) end,
        "luaconcurrent: joblog.send must be a function(key, arg, res) returning a number of bytes, got number")
      local log = tmp()
      local f = assert(io.open(log, "w"))
      f:write(joblog.HEADER_PARALLEL, "1\t:\t1.000\t0.1\t0\t0\t0\t0\ttrue\n", "garbage\n")
      f:close()
      assert.has_error(function() joblog.read_parallel(log) end,
        "luaconcurrent: joblog " .. log .. ', line 3: not a GNU parallel joblog line: "garbage"')
      -- luaconcurrent's format refuses parallel's file instead of re-running everything
      local run = lc.ProcRunAsyncio({ "true" }, { { 1 } }, { joblog = log, resume = true })
      local ok, err = pcall(run.run_all, run)
      assert.is_false(ok)
      assert.matches("has no Key column", err)
      os.remove(log)
    end)
  end)

  describe("resume", function()
    for _, fmt in ipairs({ "luaconcurrent", "parallel" }) do
      it("runs again a task killed by a signal (Exitval 0, Signal 15): " .. fmt .. " format", function()
        local log, base = tmp(), tmp()
        -- first try: killed by SIGTERM; later tries: succeed
        local task = string.format([[n=$(cat %s 2>/dev/null || echo 0); echo $((n+1)) > %s; [ $n -gt 0 ] || kill -TERM $$]],
          helpers.q(base), helpers.q(base))
        local function run(resume)
          return lc.ProcRunAsyncio({ "sh", "-c" }, { { "ok", "true" }, { "sig", task } },
            { joblog = { path = log, format = fmt }, resume = resume }):run_all()
        end
        local r = run(false)
        assert.are.equal(15, r[2].signal)
        -- the two tasks end in either order: find the killed one's line
        local killed
        for _, line in ipairs(lines(log)) do
          if line:find("kill -TERM", 1, true) then killed = line end
        end
        assert.is_string(killed, "the killed task is in the joblog")
        local c = columns(killed)
        assert.are.same({ "0", "15" }, { c[7], c[8] })
        r = run("failed")
        assert.is_true(r[1].skipped)
        assert.is_nil(r[2].skipped)
        assert.is_true(r[2].success)
        assert.are.equal("2\n", helpers.read_file(base))
        -- resume = true: both are logged now, nothing runs
        r = run(true)
        assert.is_true(r[1].skipped and r[2].skipped)
        assert.are.equal("2\n", helpers.read_file(base))
        os.remove(log); os.remove(base)
      end)
    end

    for _, fmt in ipairs({ "luaconcurrent", "parallel" }) do
      it("ignores a cut last line and goes on on a line of its own: " .. fmt .. " format", function()
        local log = tmp()
        local tasks = {}
        for i = 1, 4 do tasks[i] = { i, "true" } end
        local opts = { joblog = { path = log, format = fmt } }
        lc.ProcRunAsyncio({ "sh", "-c" }, { tasks[1], tasks[2] }, opts):run_all()
        -- a crash (or a full disk) cut the line of task 3 short
        local f = assert(io.open(log, "ab"))
        f:write("3\t:\t1796000000.1")
        f:close()
        local _, err = helpers.run_lua(string.format([[
          local lc = require "luaconcurrent"
          local tasks = {}
          for i = 1, 4 do tasks[i] = {i, "true"} end
          local r = lc.ProcRunAsyncio({"sh", "-c"}, tasks, {joblog = {path = %q, format = %q}, resume = true}):run_all()
          for i = 1, 4 do io.write(tostring(r[i].skipped), " ") end
        ]], log, fmt))
        assert.matches("last line was cut short", err)
        local l = lines(log)
        assert.are.equal(5, #l, table.concat(l, "\n"))    -- header + 4, every one whole
        local seqs = {}
        for i = 2, 5 do
          local c = columns(l[i], fmt == "parallel" and 9 or nil)
          assert.are.equal(fmt == "parallel" and 9 or 10, #c, l[i])
          assert.matches("^ *%d+%.%d%d%d$", c[4])
          seqs[#seqs + 1] = tonumber(c[1])
        end
        table.sort(seqs)
        assert.are.same({ 1, 2, 3, 4 }, seqs)
        assert.are.equal("\n", helpers.read_file(log):sub(-1))
        os.remove(log)
      end)
    end
  end)

  describe("write errors", function()
    -- A run whose joblog is path: its result as "ok|error|lines" and stderr.
    local function run_to(path, n)
      return helpers.run_lua(string.format([[
        local lc = require "luaconcurrent"
        local tasks = {}
        for i = 1, %d do tasks[i] = {i, "true"} end
        local run = lc.ProcRunAsyncio({"sh", "-c"}, tasks, {joblog = %q, num_workers = 8})
        local r = run:run_all()
        local ok = 0
        for _, res in ipairs(r) do if res.success then ok = ok + 1 end end
        io.write(tostring(run.ok), "|", tostring(run.joblog_error), "|", ok)
      ]], n, path))
    end

    it("a full device: reported on stderr, run.ok false, run.joblog_error says why", function()
      local out, err = run_to("/dev/full", 5)
      local ok, why, nok = out:match("^(%a+)|(.*)|(%d+)$")
      assert.are.equal("false", ok, out .. err)
      assert.are.equal("5", nok)                           -- every task ran and succeeded
      assert.matches("No space left on device", why)
      assert.matches("6 line%(s%) not written", why)       -- the header and 5 tasks
      assert.matches("luaconcurrent: cannot write to the joblog /dev/full: No space left on device", err)
    end)

    it("the results file on a full device: said the same way (run.results_error)", function()
      local out, err = helpers.run_lua([[
        local lc = require "luaconcurrent"
        local run = lc.ProcRunAsyncio({"sh", "-c"}, {{1, "true"}, {2, "true"}}, {results = "/dev/full"})
        run:run_all()
        io.write(tostring(run.ok), "|", tostring(run.results_error), "|", tostring(run.result[2].success))
      ]])
      assert.matches("^false|cannot write to the results file /dev/full: No space left on device "
        .. "%(2 line%(s%) not written%)|true$", out, err)
      assert.matches("luaconcurrent: cannot write to the results file /dev/full", err)
    end)

    it("a filesystem that fills up part way: every line in the file is whole, the rest reported", function()
      local dir = tmp()
      assert(os.execute("mkdir " .. helpers.q(dir)))
      local _, merr, code = helpers.sh("mount -t tmpfs -o size=8k tmpfs " .. helpers.q(dir))
      if code ~= 0 then
        os.execute("rmdir " .. helpers.q(dir))
        pending("cannot mount a small tmpfs here: " .. merr)
        return
      end
      local log = dir .. "/log"
      local out, err = run_to(log, 400)
      local l = lines(log)
      helpers.sh("umount " .. helpers.q(dir))
      os.execute("rmdir " .. helpers.q(dir))
      local ok, why, nok = out:match("^(%a+)|(.*)|(%d+)$")
      assert.are.equal("400", nok, out .. err)
      assert.are.equal("false", ok)
      assert.is_true(#l > 10 and #l < 401, #l .. " lines")
      assert.are.equal(joblog.HEADER, l[1] .. "\n")
      for i = 2, #l do
        local c = columns(l[i])
        assert.are.equal(10, #c, "line " .. i .. ": " .. l[i])
        assert.matches("^%d+$", c[1])
        assert.are.equal(c[1], c[10])
      end
      local lost = 401 - #l
      assert.matches(lost .. " line%(s%) not written", why)
      assert.matches("No space left on device", err)
    end)
  end)
end)
