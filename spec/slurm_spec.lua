-- Slurm hosts (hosts = {{ slurm = true, ... }}, --slurm N) against a real
-- single-node Slurm started here (spec/fixtures/slurm_start.sh: munged,
-- slurmctld and slurmd under a temp dir, killed by pid at the end).
-- Skipped, saying why, when it cannot start (not root, the packages not
-- installed and not installable). Most tests run inside an allocation of
-- 2 CPUs made with `salloc --no-shell`, with the plain-Lua worker and in
-- engine mode. busted's environment has no SLURM_CONF, and Lua cannot set
-- one: srun is reached through a wrapper script that sets it (srun =).

local lc = require "luaconcurrent"
local helpers = require "helpers"

local dir = os.tmpname()
os.remove(dir)
local port = 17000 + helpers.self_pid() % 2000 * 2
local out, err, code = helpers.sh("LC_SLURM_OWNER=" .. helpers.self_pid() .. " sh "
  .. helpers.q(helpers.FIXTURES .. "/slurm_start.sh") .. " " .. helpers.q(dir) .. " " .. port)
local started = code == 0 and out:match("%d+ %d+ %d+")
local why_skipped = not started and ("slurm could not start: " .. err:gsub("%s+$", "")) or nil

local EXE = helpers.ROOT .. "/build/luaconcurrent"
local ENV = "SLURM_CONF=" .. helpers.q(dir .. "/slurm.conf") .. " "
local SRUN = dir .. "/srun"
local MODE = "lua"     -- the worker slurm_host() asks for: "lua" or "engine"
local job              -- the allocation the tests run in

local function slurm(cmd)
  local o, e, c = helpers.sh(ENV .. cmd)
  return o, e, c
end

-- srun by its full path: the tests put the wrapper's directory first on PATH.
local function write_wrapper()
  local f = assert(io.open(SRUN, "w"))
  f:write("#!/bin/sh\n", ENV, "exec ", helpers.q(require("luaconcurrent.remote.slurm").find_srun("srun")), ' "$@"\n')
  f:close()
  os.execute("chmod +x " .. helpers.q(SRUN))
end

-- salloc --no-shell: the allocation outlives salloc, until scancel.
local function allocate()
  local _, e = slurm("salloc --no-shell -N1 -n2 -J lcspec")
  return tonumber(e:match("Granted job allocation (%d+)")), e
end

local function slurm_host(slots, extra)
  local h = { slurm = true, slots = slots, srun = SRUN, srun_options = { "--jobid=" .. job },
    luaconcurrent = MODE == "engine" and EXE or false }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- The id the allocation's next step gets: steps are numbered in order, so
-- two probes tell how many steps started between them.
local function next_step()
  local o = slurm("srun --jobid=" .. job .. " --exact -n1 printenv SLURM_STEP_ID")
  return tonumber(o:match("%d+"))
end

local function run(pargs, tasks, opts)
  return lc.ProcRunAsyncio(pargs, tasks, opts):run_all()
end

-- A shell in the background that does `action` once `count` processes run
-- `cmdline` exactly (bounded: 20 s), so that it acts mid-run.
local function when_running(cmdline, count, action)
  os.execute("(i=0; until [ $(pgrep -xf " .. helpers.q(cmdline) .. " | wc -l) -ge " .. count
    .. " ] || [ $i -gt 400 ]; do i=$((i+1)); sleep 0.05; done; " .. ENV .. action .. ") >/dev/null 2>&1 &")
end

describe("slurm hosts #slurm", function()
  if not why_skipped then
    write_wrapper()
    local e
    job, e = allocate()
    if not job then why_skipped = "salloc failed: " .. e:gsub("%s+$", "") end
  end
  if why_skipped then
    it("are skipped: " .. why_skipped, function() print("SKIPPED slurm_spec: " .. why_skipped) end)
    if started then os.execute("sh " .. helpers.q(helpers.FIXTURES .. "/slurm_start.sh") .. " --stop " .. helpers.q(dir)) end
    return
  end

  teardown(function()
    slurm("scancel " .. job)
    os.execute("sh " .. helpers.q(helpers.FIXTURES .. "/slurm_start.sh") .. " --stop " .. helpers.q(dir))
    os.execute("rm -rf " .. helpers.q(dir))
  end)

  for _, mode in ipairs({ "lua", "engine" }) do
  describe("(" .. mode .. " worker)", function()
    before_each(function() MODE = mode end)
    after_each(function() MODE = "lua" end)

    it("run tasks as job steps of the allocation; results are right and name the node", function()
      local tasks = {}
      for i = 1, 8 do tasks[i] = { i, { "out" .. i, tostring(i % 3) } } end
      local r = run({ "sh", "-c", 'echo "$0 $SLURM_JOB_ID"; echo err >&2; exit "$1"' }, tasks,
        { hosts = { slurm_host(2) } })
      for i, res in ipairs(r) do
        assert.are.equal("out" .. i .. " " .. job .. "\n", res.stdout)
        assert.are.equal("err\n", res.stderr)
        assert.are.equal(i % 3, res.returncode)
        assert.are.equal("localhost", res.host)
        assert.are.equal(mode, res.remote_mode)
      end
    end)

    it("start exactly one step per slot, however many tasks", function()
      local before = next_step()
      local tasks = {}
      for i = 1, 40 do tasks[i] = { i } end
      local r = run({ "printenv", "SLURM_STEP_ID" }, tasks, { hosts = { slurm_host(2) } })
      local steps = {}
      for _, res in ipairs(r) do steps[res.stdout] = true end
      assert.are.equal(2, helpers.count(steps))
      assert.are.equal(before + 3, next_step())     -- our 2, then this probe
    end)

    it("time out a task: its whole process group on the node is killed", function()
      local m = helpers.marker()
      local r = run({ "sh", "-c", "sleep " .. m .. " & sleep " .. m .. "; wait" }, { { 1 } },
        { hosts = { slurm_host(1) }, timeout = 0.5 })
      assert.is_true(r[1].timeout)
      assert.is_false(r[1].success)
      assert.are.same({}, helpers.wait_marker_gone(m, 5))
    end)

    -- Two slots; once both run a task, one step is ended by `kill`. Its
    -- tasks go to the other slot (or to the step started again): each task
    -- gets one result, all succeed, nothing of theirs is left.
    local function requeue_after(kill)
      local m = "1." .. helpers.marker():sub(4)
      local tasks = {}
      for i = 1, 4 do tasks[i] = { i, { m } } end
      when_running("sleep " .. m, 2, kill)
      local results = 0
      local r = run({ "sh", "-c", 'exec sleep "$0"' }, tasks,
        { hosts = { slurm_host(2, { heartbeat = 0.5 }) }, on_result = function() results = results + 1 end })
      assert.are.equal(4, results)
      assert.are.equal(4, helpers.count_success(r))
      assert.are.same({}, helpers.wait_marker_gone(m, 10))
      assert.is_true(helpers.wait_until(function() return slurm("squeue -h -s -j " .. job) == "" end, 10),
        "steps left: " .. slurm("squeue -h -s -j " .. job))
    end

    it("requeue the tasks of a step cancelled mid-run (scancel)", function()
      requeue_after("scancel $(squeue -h -s -j " .. job .. " -o %i | head -n1)")
    end)

    it("requeue the tasks of a step whose srun is killed mid-run", function()
      -- [-]: the pattern does not match the shell that carries it.
      requeue_after("kill -KILL $(pgrep -of -- '[-]-job-name=luaconcurrent --mem=0 --jobid=" .. job .. "')")
    end)
  end)
  end

  it("run function tasks in engine mode, on the step's node", function()
    MODE = "engine"
    finally(function() MODE = "lua" end)
    local r = run({ function(key, args) return true, { twice = key * 2, node = os.getenv("SLURMD_NODENAME"), a = args[1] } end },
      { { 1, "x" }, { 2, "y" }, { 3, "z" } }, { hosts = { slurm_host(2) } })
    for i, res in ipairs(r) do
      assert.is_true(res.success, res.error)
      assert.are.same({ twice = i * 2, node = "localhost", a = ({ "x", "y", "z" })[i] }, res.answer)
      assert.are.equal("localhost", res.host)
    end
  end)

  it("run steps as jobs of their own outside an allocation", function()
    local r = run({ "printenv", "SLURM_JOB_ID" }, { { 1 }, { 2 } },
      { hosts = { { slurm = true, slots = 1, srun = SRUN, luaconcurrent = false } } })
    assert.is_true(r[1].success, r[1].error)
    assert.are_not.equal(tostring(job) .. "\n", r[1].stdout)
    assert.are.equal(r[1].stdout, r[2].stdout)
  end)

  it("give up on steps that cannot start, with srun's reason in each task's error", function()
    local r = run({ "true" }, { { 1 } },
      { hosts = { { slurm = true, slots = 1, srun = SRUN, srun_options = { "--partition=nosuch" } } } })
    assert.is_false(r[1].success)
    assert.are.equal("ConnectionError", r[1].exception)
    assert.matches("partition", r[1].error)
  end)

  it("say what is missing: srun, or the number of slots", function()
    assert.has_error(function()
      lc.ProcRunAsyncio({ "true" }, { { 1 } }, { hosts = { { slurm = true, slots = 1, srun = "/no/such/srun" } } })
    end, "bad argument #3 to 'ProcRunAsyncio' (luaconcurrent: hosts[1] (slurm): /no/such/srun not found (install Slurm's client, e.g. Debian's "
      .. "slurm-client, or set the host's srun = path))")
    local _, e, c = helpers.sh("env -u SLURM_NTASKS PATH=" .. helpers.q(dir .. ":" .. os.getenv("PATH")) .. " "
      .. helpers.q(EXE) .. " --parallel --slurm 0 true ::: 1")
    assert.are.equal(255, c)
    assert.matches("needs slots = N, or must run inside a Slurm allocation", e, 1, true)
  end)

  it("--slurm N on the command line; --slurm 0 takes the allocation's SLURM_NTASKS", function()
    local o, e, c = helpers.sh("SLURM_JOB_ID=" .. job .. " SLURM_NTASKS=2 PATH=" .. helpers.q(dir .. ":" .. os.getenv("PATH"))
      .. " " .. helpers.q(EXE) .. " --parallel --slurm 0 env V={} printenv SLURM_JOB_ID SLURM_STEP_ID ::: 1 2 3 4 5 6")
    assert.are.equal(0, c, e)
    local steps = {}
    for jobid, step in o:gmatch("(%d+)\n(%d+)\n") do
      assert.are.equal(tostring(job), jobid)
      steps[step] = true
    end
    assert.are.equal(2, helpers.count(steps))
    o, e, c = helpers.sh("PATH=" .. helpers.q(dir .. ":" .. os.getenv("PATH")) .. " " .. helpers.q(EXE)
      .. " --parallel --slurm 2 -k echo ::: a b c")
    assert.are.equal(0, c, e)
    assert.are.equal("a\nb\nc\n", o)
  end)

  it("run tasks on the steps that are up when more slots are asked than the allocation has CPUs", function()
    local t0 = helpers.mono()
    local tasks = {}
    for i = 1, 8 do tasks[i] = { i } end
    local r = run({ "true" }, tasks, { hosts = { slurm_host(4) } })
    assert.are.equal(8, helpers.count_success(r))
    assert.is_true(helpers.mono() - t0 < 20, "took " .. (helpers.mono() - t0) .. " s")
    assert.is_true(helpers.wait_until(function() return slurm("squeue -h -s -j " .. job) == "" end, 10),
      "steps left: " .. slurm("squeue -h -s -j " .. job))
  end)

  it("give up at once on a mistyped srun option, naming it", function()
    local t0 = helpers.mono()
    local r = run({ "true" }, { { 1 }, { 2 } },
      { hosts = { slurm_host(2, { srun_options = { "--jobid=" .. job, "--no-such-option" } }) } })
    for _, res in ipairs(r) do
      assert.are.equal("ConnectionError", res.exception)
      assert.matches("no-such-option", res.error, 1, true)
    end
    assert.is_true(helpers.mono() - t0 < 10, "took " .. (helpers.mono() - t0) .. " s")
  end)

  it("end soon when the job is cancelled under the run, with srun's message", function()
    local job2 = allocate()
    assert.is_not_nil(job2)
    local m = "3." .. helpers.marker():sub(4)
    when_running("sleep " .. m, 2, "scancel " .. job2)
    local t0 = helpers.mono()
    local tasks = {}
    for i = 1, 6 do tasks[i] = { i, { m } } end
    local r = run({ "sh", "-c", 'exec sleep "$0"' }, tasks, { hosts = { slurm_host(2,
      { srun_options = { "--jobid=" .. job2 }, heartbeat = 0.5 }) } })
    assert.is_true(helpers.mono() - t0 < 30, "took " .. (helpers.mono() - t0) .. " s")
    assert.are.equal(6, #r)
    for _, res in ipairs(r) do assert.is_false(res.success) end
    assert.are.same({}, helpers.wait_marker_gone(m, 10))
  end)

  it("--srun-options on the command line reach each step's srun", function()
    local o, e, c = helpers.sh("PATH=" .. helpers.q(dir .. ":" .. os.getenv("PATH")) .. " " .. helpers.q(EXE)
      .. " --parallel --slurm 1 --srun-options '--jobid=" .. job .. "' env V={} printenv SLURM_JOB_ID ::: 1")
    assert.are.equal(0, c, e .. o)
    assert.are.equal(tostring(job) .. "\n", o)
  end)
end)
