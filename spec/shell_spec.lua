-- The command line for shell users (luaconcurrent --parallel, lcparallel):
-- GNU parallel's forms on the Lua API.

local helpers = require "helpers"

local EXE = helpers.ROOT .. "/build/luaconcurrent"
local q = helpers.q

local function par(args, stdin)
  local cmd = q(EXE) .. " --parallel " .. args
  if stdin then cmd = "printf %s " .. q(stdin) .. " | " .. cmd end
  return helpers.sh(cmd)
end

local function sorted_lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t)
  return table.concat(t, "\n")
end

describe("luaconcurrent --parallel", function()
  it("runs the command once per value, with the replacement strings", function()
    local out, _, code = par("-k echo {} {.} {/} {//} {/.} {#} ::: a/b.txt c.tar.gz /x")
    assert.are.equal(0, code)
    assert.are.equal("a/b.txt a/b b.txt a b 1\nc.tar.gz c.tar c.tar.gz . c.tar 2\n/x /x x / x 3\n", out)
  end)

  it("appends the value when the command has no replacement string", function()
    local out = par("-k echo pre ::: 1 2")
    assert.are.equal("pre 1\npre 2\n", out)
  end)

  it("combines several sources, and {1} {2} pick from each", function()
    local out = par("-k echo {2}-{1} ::: a b ::: x y")
    assert.are.equal("x-a\ny-a\nx-b\ny-b\n", out)
  end)

  it("reads values from :::: files and from stdin lines", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write("one\ntwo\n"); f:close()
    assert.are.equal("one\ntwo\n", (par("-k echo :::: " .. q(path))))
    assert.are.equal("l1\nl2\n", (par("-k echo", "l1\nl2\n")))
    os.remove(path)
  end)

  it("passes values with spaces and quotes intact; a ::: value with a newline is two values", function()
    local out = par("-k printf '[%s]' ::: " .. q("a b") .. " " .. q([[it's "q"]]) .. " " .. q("x\ny"))
    assert.are.equal('[a b][it\'s "q"][x][y]', out)
    -- from a file a value keeps its newline only with -0
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write("x\ny\0z\0"); f:close()
    assert.are.equal("[x\ny][z]", (par("-0 -k printf '[%s]' :::: " .. q(path))))
    os.remove(path)
  end)

  it("runs a command with shell syntax through sh, every value quoted", function()
    local dir = os.tmpname(); os.remove(dir)
    os.execute("mkdir " .. q(dir))
    local _, _, code = par(q("echo {} > " .. dir .. "/{}.out") .. " ::: " .. q("a b") .. " c")
    assert.are.equal(0, code)
    assert.are.equal("a b\n", helpers.read_file(dir .. "/a b.out"))
    assert.are.equal("c\n", helpers.read_file(dir .. "/c.out"))
    os.execute("rm -rf " .. q(dir))
  end)

  it("exits with the number of failed tasks, at most 101", function()
    local _, _, code = par("'exit {}' ::: 0 1 2 0 3")
    assert.are.equal(3, code)
    local many = {}
    for i = 1, 105 do many[i] = "1" end
    _, _, code = par("-j 8 false ::: " .. table.concat(many, " "))
    assert.are.equal(101, code)
  end)

  it("takes -j as N, N% and +N", function()
    for _, j in ipairs({ "-j1", "-j 2", "-j50%", "-j+1", "--jobs=3", "-j0" }) do
      local out, err, code = par(j .. " -k echo ::: 1 2 3")
      assert.are.equal(0, code, j .. ": " .. err)
      assert.are.equal("1\n2\n3\n", out)
    end
  end)

  it("--timeout, --retries, --halt and --joblog reach the run", function()
    local log = os.tmpname()
    local _, _, code = par("--timeout 0.2 --joblog " .. q(log) .. " sleep ::: 0 5")
    assert.are.equal(1, code)
    local lines = {}
    for l in io.lines(log) do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    -- GNU parallel's 9 columns: a timed-out job's Exitval is -1
    assert.are.equal("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand", lines[1])
    assert.matches("\t%-1\t15\tsleep 5$", lines[3])
    os.remove(log)
    local out = par("--halt now,fail=1 -j1 -k 'echo {}; exit {}' ::: 0 1 0 0")
    assert.are.equal("0\n1\n", out)
  end)

  it("runs commands through the user's shell: builtins and exported functions work", function()
    local out, _, code = par("-k -j1 --joblog /dev/null exit ::: 1 2 0")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    out, _, code = helpers.sh("bash -c " .. q("doit() { echo \"doit $1\"; }; export -f doit; PARALLEL_SHELL=bash "
      .. q(EXE) .. " --parallel -k doit ::: 1 2"))
    assert.are.equal(0, code)
    assert.are.equal("doit 1\ndoit 2\n", out)
    -- a program that cannot start: the shell's message, status 127
    local err
    err, code = select(2, par("no_such_program_lc ::: 1"))
    assert.are.equal(1, code)
    assert.matches("no_such_program_lc: .*not found", err)
    -- PARALLEL_SHELL picks the shell
    out = helpers.sh("PARALLEL_SHELL=bash " .. q(EXE) .. " --parallel 'echo $0' ::: x")
    assert.matches("bash x\n$", out)
  end)

  it("quotes only what needs it, as parallel does, and --dry-run prints what runs", function()
    local out = par("-k 'echo \"x{}y\" $(( {} + 1 ))' ::: 3")
    assert.are.equal("x3y 4\n", out)
    out = par("--dry-run -k echo ::: a " .. q("b c") .. " " .. q("it's") .. " ''")
    assert.are.equal("echo a\necho 'b c'\necho 'it'\"'\"'s'\necho ''\n", out)
    out = par("--dry-run -q echo " .. q("x{}y") .. " ::: " .. q("a b"))
    assert.are.equal("echo 'xa by'\n", out)
  end)

  it("takes several :::: files as several sources, :::+ links, {foo} stays", function()
    local a, b = os.tmpname(), os.tmpname()
    local f = assert(io.open(a, "w")); f:write("1\n2\n"); f:close()
    f = assert(io.open(b, "w")); f:write("x\ny\n"); f:close()
    assert.are.equal("1 x\n1 y\n2 x\n2 y\n", (par("-k echo {1} {2} :::: " .. q(a) .. " " .. q(b))))
    assert.are.equal("a 1\nb 2\n", (par("-k echo ::: a b c :::+ 1 2")))
    assert.are.equal("{foo} a\n", (par("-k echo {foo} ::: a")))
    assert.are.equal("b.c a/b 1 1\n", (par("-j1 -k echo {1/} {1.} {#} {%} ::: a/b.c")))
    os.remove(a); os.remove(b)
  end)

  it("-X fills a job only as far as one command line holds (no E2BIG), every value once", function()
    local out, err, code = helpers.sh("seq 100000 | " .. q(EXE) .. " --parallel -j1 -X echo x{}y")
    assert.are.equal(0, code, err)
    local n, lines = 0, 0
    for line in out:gmatch("[^\n]+") do
      lines = lines + 1
      assert.is_true(#line < 131072)
      for _ in line:gmatch("%S+") do n = n + 1 end
    end
    assert.are.equal(100000, n)
    assert.is_true(lines > 1)
  end)

  it("exits as parallel does under --halt, and --retries N is N tries in all", function()
    local _, _, code = par("-j1 --halt now,fail=1 'exit {}' ::: 0 7 0")
    assert.are.equal(7, code)
    _, _, code = par("-j1 --halt now,success=1 'exit {}' ::: 3 0 3")
    assert.are.equal(0, code)
    _, _, code = par("-j1 --halt soon,fail=50% 'exit {}' ::: 1 1 0 0")
    assert.are.equal(50, code)
    local dir = os.tmpname(); os.remove(dir); os.execute("mkdir " .. q(dir))
    par("--retries 3 'echo x >> " .. dir .. "/tries; exit 1' ::: a")
    assert.are.equal("x\nx\nx\n", helpers.read_file(dir .. "/tries"))
    os.execute("rm -rf " .. q(dir))
  end)

  it("says every usage error on stderr and exits 255", function()
    local function refused(args, pattern)
      local out, err, code = par(args)
      assert.are.equal(255, code, args)
      assert.are.equal("", out, args)
      assert.matches("^lcparallel: .*" .. pattern, err, 1)
    end
    refused("-j abc echo ::: 1", "%-j needs")
    refused("--joblog /nonexistent/dir/log echo ::: 1", "cannot write the joblog")
    refused("--results /dev/null/x.csv echo ::: 1", "cannot write the results")
    refused("--timeline /nonexistent/t.svg echo ::: 1", "cannot write the timeline")
    refused("--timeout 200% --pipe cat", "percentage")
    refused("--timeout 2x echo ::: 1", "%-%-timeout needs")
    refused("--timeout 1m2x echo ::: 1", "duration such as 1h30m")
    refused("echo {= $_ .= 1 =} ::: 1", "needs perl")
    refused("--load 80% echo ::: 1", "option %-%-load is not supported")
    refused("--tmux echo ::: 1", "option %-%-tmux is not supported")
  end)

  it("starts a job as soon as its line arrives on stdin (tail -f)", function()
    local dir = os.tmpname(); os.remove(dir); os.execute("mkdir " .. q(dir))
    local queue = dir .. "/queue"
    helpers.read_file(queue)
    local f = assert(io.open(queue, "w"))
    local pidfile = dir .. "/pid"
    -- tail's pid is kept: killing it ends the input, and lcparallel with it
    os.execute("((tail -f " .. q(queue) .. " & echo $! > " .. q(pidfile) .. "; wait) | " .. q(EXE)
      .. " --parallel -j2 touch " .. q(dir) .. "/started.{} &) >/dev/null 2>&1")
    local worst, missed = 0, nil
    for i = 1, 5 do
      f:write(i, "\n"); f:flush()
      local t0 = helpers.mono()
      if not helpers.wait_until(function() return helpers.read_file(dir .. "/started." .. i) ~= nil end, 10) then
        missed = i
        break
      end
      worst = math.max(worst, helpers.mono() - t0)
    end
    f:close()
    helpers.wait_until(function() return helpers.read_file(pidfile) ~= nil end, 5)
    os.execute("kill $(cat " .. q(pidfile) .. ")")
    os.execute("rm -rf " .. q(dir))
    assert.is_nil(missed, "a job never started")
    io.stderr:write(string.format("\n  tail -f: worst start latency %.1f ms\n", worst * 1000))
  end)

  it("--tag prefixes the value, --dry-run runs nothing", function()
    assert.are.equal("a b\tx a b\n", (par("--tag echo x ::: 'a b'")))
    local out, _, code = par("--dry-run touch /nonexistent/{} ::: 1")
    assert.are.equal(0, code)
    assert.are.equal("touch /nonexistent/1\n", out)
  end)

  it("names a bad option and exits 255; --help lists the options", function()
    local _, err, code = par("--jbos 2 echo ::: 1")
    assert.are.equal(255, code)
    assert.matches("unknown option %-%-jbos", err)
    local out = par("--help")
    for _, o in ipairs({ "--timeout", "--retries", "--halt", "--joblog", "--resume",
                         "--resume-failed", "--bar", "-k", "--line-buffer", "--tag",
                         "--results", "--dry-run", ":::", "::::", "{/.}" }) do
      assert.is_truthy(out:find(o, 1, true), o)
    end
  end)

  it("reads hosts from a host file (--slf, lc.hosts_file), # comments skipped", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("# this machine, two slots\n  2/:   # inline comment\n\n")
    f:close()
    assert.are.same({ "2/:" }, require("luaconcurrent").hosts_file(path))
    local out, err, code = par("--slf " .. q(path) .. " -k echo ::: a b")
    assert.are.equal(0, code, err)
    assert.are.equal("a\nb\n", out)
    os.remove(path)
  end)

  it("takes -j N with -S as the slots of each host that names none", function()
    -- A run starts on the first host up: the task waits (for a file made
    -- once the trace shows every host up) so that each host says hello.
    local function slots_of(args)
      local nhosts = select(2, args:gsub("%-S", ""))
      local gate, errf, script = os.tmpname(), os.tmpname(), os.tmpname()
      os.remove(gate)
      local f = io.open(script, "w")
      f:write('while [ ! -e "$G" ]; do sleep 0.02; done; echo "$1"\n')
      f:close()
      local p = io.popen("LC_REMOTE_TRACE=1 G=" .. q(gate) .. " " .. q(EXE) .. " --parallel " .. args
        .. " sh " .. q(script) .. " ::: a 2>" .. q(errf), "r")
      helpers.wait_until(function()
        return select(2, (helpers.read_file(errf) or ""):gsub("up: mode", "")) >= nhosts
      end, 30)
      io.open(gate, "w"):close()
      local out = p:read("a")
      local code = select(3, p:close())
      local err = helpers.read_file(errf) or ""
      os.remove(gate)
      os.remove(errf)
      os.remove(script)
      assert.are.equal(0, code, err)
      assert.are.equal("a\n", out)
      local t = {}
      for n in err:gmatch("up: mode %S+[^\n]-, (%d+) slots") do t[#t + 1] = tonumber(n) end
      table.sort(t)   -- hosts come up in any order
      return t
    end
    assert.are.same({ 3 }, slots_of("-j 3 -S :"))
    assert.are.same({ 1, 3 }, slots_of("-j 3 -S : -S 1/:"))
    local cpus = require("luaconcurrent.core").cpu_count()
    assert.are.same({ cpus }, slots_of("-S :"))
    -- N%, +N and -N count each host's own CPUs, at its handshake
    assert.are.same({ math.max(1, cpus // 2) }, slots_of("-j 50% -S :"))
    assert.are.same({ 2, cpus + 1 }, slots_of("-j +1 -S : -S 2/:"))
  end)

  it("is the same run under the name lcparallel", function()
    local link = os.tmpname()
    os.remove(link)
    os.execute("ln -s " .. q(EXE) .. " " .. q(link))
    local dir = link:match("^(.*)/")
    os.execute("ln -sf " .. q(EXE) .. " " .. q(dir .. "/lcparallel"))
    local out = helpers.sh(q(dir .. "/lcparallel") .. " -k echo ::: a b")
    assert.are.equal("a\nb\n", out)
    os.remove(link)
    os.remove(dir .. "/lcparallel")
  end)

  it("leaves the Lua interpreter's own arguments alone", function()
    local out = helpers.sh(q(EXE) .. " -e 'print(1+1)'")
    assert.are.equal("2\n", out)
    assert.are.equal("a\nb\nc\n", sorted_lines((par("echo ::: c a b"))) .. "\n")
  end)
end)
