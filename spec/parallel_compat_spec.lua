-- lcparallel against GNU parallel, the oracle: each case runs the same
-- command line through both, in the same fresh directory, and compares
-- stdout (sorted where parallel promises no order), the exit status, the
-- files made, and the joblog's columns. Needs GNU parallel (make test's
-- dependency step installs it); without it the spec says so and fails.

local helpers = require "helpers"

local q = helpers.q
local LC = helpers.ROOT .. "/build/luaconcurrent --parallel"
local GNU = "parallel --will-cite"

local function have_parallel()
  local _, _, code = helpers.sh("parallel --version >/dev/null 2>&1")
  return code == 0
end

-- Input files from parallel_tutorial, made in each case's directory.
local SETUP = table.concat({
  "printf 'A\\nB\\nC\\n' > abc-file",
  "printf 'D\\nE\\nF\\n' > def-file",
  "printf 'A\\0B\\0C\\0' > abc0-file",
  "printf 'A_B_C_' > abc_-file",
  "printf 'f1\\tf2\\nA\\tB\\nC\\tD\\n' > tsv-file",
  "printf 'a,b\\n1,2\\n3,4\\n' > csv-file",
  "printf '1\\n2\\n3\\n' > num-file",
  "mkdir -p dir/sub && touch 'dir/x.c' 'dir/y z.c' dir/sub/w.txt",
}, "; ")

-- Each case: cmd (a shell line, $P is the tool), sort (no order
-- promised), files (compare the files made), joblog (a file name whose
-- Seq, Exitval, Signal and Command columns are compared), bash (run
-- under bash: exported functions, bash syntax), usage (a usage error:
-- the exit status, and lcparallel's message on stderr).
local CASES = {
  -- parallel_tutorial: input sources
  { cmd = "$P echo ::: A B C", sort = true },
  { cmd = "$P -a abc-file echo", sort = true },
  { cmd = "cat abc-file | $P echo", sort = true },
  { cmd = "$P echo ::: A B C ::: D E F", sort = true },
  { cmd = "$P -k echo ::: A B C ::: D E F" },
  { cmd = "$P -a abc-file -a def-file -k echo" },
  { cmd = "cat abc-file | $P -a - -a def-file -k echo" },
  { cmd = "cat abc-file | $P -k echo :::: - def-file" },
  { cmd = "$P -k echo ::: A B C :::: def-file" },
  { cmd = "$P -k echo :::: abc-file def-file" },
  { cmd = "$P --link -k echo ::: A B C ::: D E F" },
  { cmd = "$P --link -k echo ::: A B C D E ::: F G" },
  { cmd = "$P -k echo ::: A B C :::+ D E F" },
  { cmd = "$P -k echo ::: a b c :::+ 1 2 3 ::: X Y :::+ 11 22" },
  { cmd = "$P --arg-sep ,, -k echo ,, A B C :::: def-file" },
  { cmd = "$P --arg-file-sep // -k echo ::: A B C // def-file" },
  { cmd = "$P -d _ -k echo :::: abc_-file" },
  { cmd = "$P -d '\\0' -k echo :::: abc0-file" },
  { cmd = "$P -0 -k echo :::: abc0-file" },
  { cmd = "printf 'a\\n\\nb\\n' | $P -k echo x" },
  { cmd = "printf 'a\\n\\nb\\n' | $P -r -k echo x" },
  { cmd = "$P -k ::: 'echo foo' 'echo bar'" },
  { cmd = "$P -k echo ::: \"My brother's 12\\\" records are worth <\\$\\$\\$>\"'!' Foo Bar" },
  -- replacement strings
  { cmd = "$P -k echo {} ::: A/B.C" },
  { cmd = "$P -k echo {.} ::: A/B.C" },
  { cmd = "$P -k -I ,, echo ,, {} ::: A/B.C" },
  { cmd = "$P -k echo {/} {//} {/.} ::: A/B.C /x/y.tar.gz noext" },
  { cmd = "$P -k echo {#} ::: A B C" },
  { cmd = "$P -j1 -k echo {%} ::: A B C" },
  { cmd = "$P -k echo {1} and {2} ::: A B ::: C D" },
  { cmd = "$P -k echo /={1/} //={1//} /.={1/.} .={1.} ::: A/B.C D/E.F" },
  { cmd = "$P -k echo {-1} {-2} ::: a ::: b" },
  { cmd = "$P -k echo {3} ::: a" },
  { cmd = "$P -k echo {foo} ::: a" },
  { cmd = "$P -k echo {} ::: a ::: b" },
  { cmd = "$P --colsep '\\t' -k echo 1={1} 2={2} :::: tsv-file" },
  { cmd = "$P --colsep , -k echo {2}-{1} :::: csv-file" },
  { cmd = "$P --header : -k echo f1={f1} f2={f2} ::: f1 A B ::: f2 C D" },
  { cmd = "$P --header : --colsep '\\t' -k echo f1={f1} f2={f2} :::: tsv-file" },
  { cmd = "$P --header : --colsep , -k echo {b} {a/} :::: csv-file" },
  -- several arguments a job
  { cmd = "$P -n2 -k echo ::: A B C D E" },
  { cmd = "$P -N2 -k echo 1={1} 2={2} ::: A B C D E" },
  { cmd = "$P -N0 -k echo foo ::: 1 2 3" },
  { cmd = "$P -n2 -k echo x{}y ::: a b c" },
  { cmd = "$P -j1 -X echo ::: A B C" },
  { cmd = "$P -j1 -X echo pre-{}-post ::: A B C" },
  { cmd = "$P -j1 -m echo pre-{}-post ::: A B C" },
  { cmd = "$P -j2 -k -X echo x{}y ::: 1 2 3 4 5" },
  { cmd = "seq 20 | $P -j3 -k -m echo" },
  -- quoting and the shell
  { cmd = "$P -k 'echo \"x{}y\" $(( {} + 1 ))' ::: 3 4" },
  { cmd = "$P -q -k echo 'x{}y' ::: 'a b'" },
  { cmd = "$P -q -k printf '[%s]\\n' ::: 'a b' \"it's\"" },
  { cmd = "$P -k echo ::: '' \"a'b\" 'a\"b' '$x' 'a*' '~' 'a=b' 'a;b'" },
  { cmd = "$P -k printf '[%s]' ::: 'a b' \"it's\" 'x\ny'" },
  { cmd = "$P -k 'echo {} | tr a-z A-Z' ::: ab cd" },
  { cmd = "$P -k echo '$HOME' ::: x" },
  { cmd = "$P -k 'echo {} > {}.out' ::: a 'b c'", files = true },
  { cmd = "$P -k 'cd dir; ls' ::: 1" },
  { cmd = "$P -k exit ::: 0 1 2 0" },
  { cmd = "$P -k no_such_command_lc ::: 1 2" },
  { cmd = "$P -k true ::: --help" },
  { cmd = "$P -k echo ::: --help --version" },
  { cmd = "doit() { echo \"doit $1\"; }; export -f doit; $P -k doit ::: 1 2", bash = true },
  { cmd = "$P -k 'a=1; echo $a{}' ::: x" },
  { cmd = "$P -k --nice 5 echo ::: a b" },
  { cmd = "printf 'echo hi\\n' > noexec; $P ./noexec ::: 1" },
  { cmd = "$P 'kill -9 $$' ::: 1" },
  { cmd = "$P -k wc -l ::: abc-file def-file" },
  { cmd = "ls dir | $P -k echo {.}" },
  { cmd = "find dir -type f | sort | $P -j1 -X echo" },
  { cmd = "$P -k 'mkdir -p out/{//}; cp {} out/{}' ::: dir/x.c 'dir/y z.c'", files = true },
  { cmd = "$P mv {} {.}.bak ::: dir/x.c 'dir/y z.c'", files = true },
  { cmd = "seq 3 | $P -k -I X echo X X" },
  { cmd = "$P -k echo {1} {2} {1} :::: abc-file ::: 1 2" },
  { cmd = "$P --colsep ' ' -k echo {2} ::: 'a b' 'c d'" },
  { cmd = "$P -a tsv-file --colsep '\t' --header : -k echo {f2}" },
  { cmd = "$P --termseq TERM,200,KILL,25 -k echo ::: a" },
  { cmd = "seq 10 | $P -k -N2 echo seq:\\$PARALLEL_SEQ arg1:{1} arg2:{2}" },
  { cmd = "seq 3 | $P -j1 -k 'echo $PARALLEL_JOBSLOT'" },
  { cmd = "seq 3 | PARALLEL='-kvj1' $P echo" },
  { cmd = "echo test | $P echo {} \\$HOME | sed \"s|$HOME|H|\"" },
  { cmd = "echo test | $P VAR=this_is_set_after_starting \\; echo {} \\$VAR" },
  { cmd = "echo test | $P -q echo {} \\$VAR" },
  { cmd = "seq 3 | $P -j1 -k -v ls -d dir" },
  -- output
  { cmd = "$P -k 'sleep 0.{}; echo {}' ::: 3 1 2" },
  { cmd = "$P -j3 'sleep 0.{}; echo {}' ::: 3 1 2", sort = true },
  { cmd = "$P -k --tag echo foo-{} ::: A B C" },
  { cmd = "$P -k --tag echo ::: A B ::: C" },
  { cmd = "$P -k --tagstring {}-bar echo foo-{} ::: A B C" },
  { cmd = "$P -k -v echo ::: a 'b c'" },
  { cmd = "$P -k --dry-run echo {} ::: 'a b' c" },
  { cmd = "$P --dryrun -k 'echo {} > {}.x' ::: 'a b' c" },
  { cmd = "$P -u echo ::: a b", sort = true },
  { cmd = "$P --line-buffer echo ::: a b", sort = true },
  { cmd = "$P --shuf echo ::: a b c d", sort = true },
  { cmd = "$P --delay 0.05 echo ::: a b c", sort = true },
  { cmd = "$P --group echo ::: a b", sort = true },
  { cmd = "$P -k --results res echo ::: a 'b c' ::: x", files = true },
  { cmd = "$P -k --results res --header : echo ::: n a b", files = true },
  { cmd = "seq 3 | $P --bar -k echo" },
  { cmd = "$P --files echo ::: a b | wc -l" },
  { cmd = "$P -k --files echo ::: a b | xargs cat" },
  { cmd = "$P -j0 -k echo ::: a b c" },
  { cmd = "$P -j1 --bar -k echo {%} {#} ::: a b" },
  { cmd = "$P -k --tag --line-buffer echo ::: a b" },
  { cmd = "$P -k --results out.csv echo ::: a 'b,c' ; cut -d, -f1,2,5-8,10- out.csv", files = false },
  { cmd = "$P -k --results out.tsv echo ::: a ; cut -f1,2,5-8,10- out.tsv" },
  { cmd = "seq 3 | $P --eta -k echo" },
  -- exit status and halt
  { cmd = "$P -k 'exit {}' ::: 0 1 2 0 3" },
  { cmd = "$P -j1 --halt now,fail=1 -k 'echo {}; exit {}' ::: 0 0 3 0 0" },
  { cmd = "$P -j1 --halt soon,fail=1 -k 'echo {}; exit {}' ::: 0 4 0 0" },
  { cmd = "$P -j1 --halt 2 -k 'echo {}; exit {}' ::: 0 5 0" },
  { cmd = "$P -j1 --halt 1 -k 'echo {}; exit {}' ::: 0 5 0" },
  { cmd = "$P -j1 --halt soon,fail=2 -k 'echo {}; exit {}' ::: 1 0 1 0 1" },
  { cmd = "$P -j1 --halt now,success=1 -k 'echo {}; exit {}' ::: 1 0 1" },
  { cmd = "$P -j1 --halt now,done=1 -k 'echo {}; exit {}' ::: 3 0 1" },
  { cmd = "$P -j1 --halt soon,fail=50% -k 'echo {}; exit {}' ::: 1 1 0 0" },
  { cmd = "$P -j1 --halt never -k 'exit {}' ::: 1 1 0" },
  { cmd = "$P --retries 3 'echo x >> tries; exit 1' ::: a", files = true },
  { cmd = "$P --retries 1 'echo x >> tries; exit 1' ::: a", files = true },
  { cmd = "$P --retries 3 --joblog log 'exit 1' ::: a", joblog = "log" },
  { cmd = "$P --timeout 0.5 -k 'sleep {}; echo {}' ::: 0.1 3" },
  -- joblog and resume
  { cmd = "$P -j1 --joblog log exit ::: 1 2 3 0", joblog = "log" },
  { cmd = "$P -j1 --joblog log exit ::: 1 0; $P -j1 --resume --joblog log exit ::: 1 0 2 0",
    joblog = "log" },
  { cmd = "$P -j1 --joblog log exit ::: 1 0; $P -j1 --resume-failed --joblog log 'exit {}' ::: 1 0 2",
    joblog = "log" },
  { cmd = "$P -j1 --joblog log echo ::: a; $P -j1 --joblog +log echo ::: b", joblog = "log" },
  { cmd = "$P -j1 --joblog log echo ::: a; $P -j1 --joblog log echo ::: b", joblog = "log" },
  { cmd = "$P -j1 --joblog log 'exit {}' ::: 1 0 2; $P -j1 --retry-failed --joblog log", joblog = "log" },
  { cmd = "$P -j1 --timeout 0.3 --joblog log sleep ::: 0 2", joblog = "log" },
  -- --timeout N%: no limit until a job succeeded; then N% of the median
  -- success, for the jobs already running too (the 30 s job started
  -- before any ended); "quick" only if it was killed well before its end
  { cmd = "t0=$(date +%s); $P -j2 --timeout 300% --joblog log -k 'sleep {}; echo {}' ::: 0.1 30 "
      .. string.rep("0.1 ", 9) .. "; echo \"exit $?\"; sort -n log > slog;"
      .. " [ $(( $(date +%s) - t0 )) -lt 20 ] && echo quick", joblog = "slog" },
  { cmd = "$P -j1 --timeout 200% --joblog log 'sleep {}; exit 1' ::: 0.2 0.1 0.6", joblog = "log" },
  { cmd = "$P -k --timeout 1m --delay 0.1s 'echo {}' ::: a b" },
  { cmd = "$P --timeout 0.01m --joblog log 'sleep {}' ::: 2", joblog = "log" },
  -- --pipe and --pipepart
  { cmd = "seq 100000 > big; cat big | $P --pipe --block 100k -k wc -l" },
  { cmd = "seq 100000 > big; $P --pipepart -a big --block 100k -k wc -l" },
  { cmd = "seq 100000 > big; $P --pipepart --block 50k -k wc -l :::: big" },
  { cmd = "seq 100000 | $P --pipe --block 100k wc -l", sort = true },
  { cmd = "seq 10 | $P --pipe -N3 -k 'echo {#}; cat'" },
  { cmd = "printf 'h\n1\n2\n3\n4\n' | $P --pipe --block 4 --header : -k 'cat; echo'" },
  { cmd = "printf 'h\n1\n2\n3\n' > f; $P --pipepart -a f --header : --block 3 -k 'cat; echo'" },
  { cmd = "printf 'a1b2a3b4' | $P --pipe --recstart a --recend b -N1 -k 'cat; echo'" },
  { cmd = "printf '>s1\nAC\n>s2\nGT\n>s3\nTT\n' | $P --pipe --recstart '>' -N1 -k 'cat; echo x'" },
  { cmd = "printf 'a;b;c;' | $P --pipe --recend ';' -N2 -k 'cat; echo'" },
  { cmd = "seq 5 | $P --pipe -N2 -j1 --joblog log -k 'cat >/dev/null; exit 1'", joblog = "log" },
  { cmd = "seq 5 | $P --pipe -N1 -j1 --halt now,fail=1 -k 'exit $(cat)'" },
  -- usage errors
  { cmd = "$P -j abc echo ::: 1", usage = true },
  { cmd = "$P --joblog /nonexistent/dir/log echo ::: 1", usage = true },
  { cmd = "$P --no-such-option echo ::: 1", usage = true },
  { cmd = "$P -j2 --jobs=1 -k echo ::: a b" },
  { cmd = "echo 2 > jobsfile; $P -j jobsfile -k echo ::: a b" },
  { cmd = "$P -k --will-cite echo ::: a" },
}

local function run_in(dir, tool, case)
  local line = "cd " .. q(dir) .. " && " .. SETUP .. "; P=" .. q(tool) .. "; " .. case.cmd
  local shell = case.bash and "bash -c " or "sh -c "
  return helpers.sh(shell .. q(line))
end

local function listing(dir, skip)
  local out = helpers.sh("cd " .. q(dir) .. " && find . -type f | LC_ALL=C sort | while IFS= read -r f; do "
    .. "printf '%s\\n' \"$f\"; case \"$f\" in " .. skip .. ") ;; *) cat \"$f\";; esac; done")
  return out
end

local function joblog_cols(dir, name)
  local t = {}
  local f = io.open(dir .. "/" .. name)
  if not f then return "(no joblog)" end
  for line in f:lines() do
    local c = {}
    for col in (line .. "\t"):gmatch("([^\t]*)\t") do c[#c + 1] = col end
    t[#t + 1] = table.concat({ c[1], c[7], c[8], c[9] }, "|")
  end
  f:close()
  return table.concat(t, "\n")
end

local function sorted(s)
  local t = {}
  for l in s:gmatch("[^\n]*\n?") do if l ~= "" then t[#t + 1] = l end end
  table.sort(t)
  return table.concat(t)
end

local function outcome(tool, case)
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir " .. q(dir))
  local out, err, code = run_in(dir, tool, case)
  if case.sort then out = sorted(out) end
  -- a usage error: parallel prints its usage on stdout, lcparallel names
  -- the error on stderr; both exit 255
  local r = { stdout = not case.usage and out or nil, code = code }
  if case.usage and tool == LC then r.said = err:match("^lcparallel: ") ~= nil end
  if case.usage and tool == GNU then r.said = true end
  if case.files then r.files = listing(dir, "./log|./res/*/seq") end
  if case.joblog then r.joblog = joblog_cols(dir, case.joblog) end
  os.execute("rm -rf " .. q(dir))
  return r, err
end

local same, total, differ = 0, 0, {}

describe("lcparallel against GNU parallel 20221122", function()
  it("has GNU parallel to compare with", function()
    assert.is_true(have_parallel(), "GNU parallel is not installed (sh scripts/ensure-deps.sh parallel)")
  end)

  for _, case in ipairs(CASES) do
    it(case.cmd, function()
      if not have_parallel() then return end
      local want = outcome(GNU, case)
      local got, err = outcome(LC, case)
      total = total + 1
      if case.differs then
        -- a known difference: lcparallel must refuse it by name, never run it wrongly
        differ[#differ + 1] = case.cmd .. "  (" .. case.differs .. ")"
        assert.are.equal(255, got.code)
        assert.matches("^lcparallel: ", err)
        return
      end
      local ok = want.stdout == got.stdout and want.code == got.code and want.files == got.files
        and want.joblog == got.joblog and want.said == got.said
      if ok then same = same + 1 else differ[#differ + 1] = case.cmd end
      assert.are.same(want, got, "stderr of lcparallel: " .. err)
    end)
  end

  teardown(function()
    io.stderr:write(string.format("\nparallel_compat: %d of %d cases the same as GNU parallel\n", same, total))
    for _, c in ipairs(differ) do io.stderr:write("  differs: ", c, "\n") end
  end)
end)
