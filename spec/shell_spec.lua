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

  it("passes values with spaces, quotes and newlines intact, without a shell", function()
    local out = par("-k printf '[%s]' ::: " .. q("a b") .. " " .. q([[it's "q"]]) .. " " .. q("x\ny"))
    assert.are.equal('[a b][it\'s "q"][x\ny]', out)
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
    assert.matches("\t15\tsleep 5\t2$", table.concat(lines, "\n"))
    os.remove(log)
    local out = par("--halt now,fail=1 -j1 -k 'echo {}; exit {}' ::: 0 1 0 0")
    assert.are.equal("0\n1\n", out)
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
