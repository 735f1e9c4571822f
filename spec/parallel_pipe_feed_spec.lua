-- The engine's feeds (src/feed.c): loop:spawn's input given as a file's
-- byte range ({ path, offset, length, prefix }: spliced from the page
-- cache, pread + write where splice is refused) or as a stream's next
-- block ({ ..., cut, block }: spliced pipe to pipe, the block's end found
-- by reading its tail, the rest handed back). lcparallel's --pipepart and
-- --pipe run on them (parallel/pipe.lua).

local core = require "luaconcurrent.core"
local helpers = require "helpers"

local function collect(loop, id)
  local deadline = helpers.mono() + 30
  while true do
    assert(helpers.mono() < deadline, "the record did not arrive in time")
    for _, rec in ipairs(loop:poll(1)) do
      if rec.id == id and rec.returncode then return rec end
    end
  end
end

local function run(loop, argv, input)
  local id, msg = loop:spawn(argv, nil, nil, input, 0, 0.1)
  assert(id, msg)
  return collect(loop, id)
end

local write_file = helpers.write_file

-- GNU parallel's --pipe blocks of s: block-sized reads, each cut after
-- its last newline, what follows carried into the next.
local function reference_blocks(s, block)
  local out, rem, pos = {}, "", 1
  while true do
    local want = block - #rem % block
    local data = s:sub(pos, pos + want - 1)
    pos = pos + #data
    if data == "" then
      if rem ~= "" then out[#out + 1] = rem end
      return out
    end
    local i = data:match(".*()\n")
    if i then
      out[#out + 1] = rem .. data:sub(1, i)
      rem = data:sub(i + 1)
    else
      rem = rem .. data
    end
  end
end

-- The fixture's report: { {size, input_error, stdout}, ... }, blocks.
local function parse_cut(out)
  local jobs, at = {}, 1
  while true do
    local size, ierr, len, nxt = out:match("^(%d+) (%S+) (%d+)\n()", at)
    if not size then break end
    jobs[#jobs + 1] = { size = tonumber(size), input_error = ierr,
                        stdout = out:sub(nxt, nxt + tonumber(len) - 1) }
    at = nxt + tonumber(len)
  end
  return jobs, tonumber(out:match("^blocks (%d+)\n$", at))
end

describe("engine feeds (loop:spawn input as a file range or a stream's block)", function()
  local loop, snap, dir
  before_each(function()
    snap = helpers.snapshot()
    loop = core.new_loop()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. helpers.q(dir)))
  end)
  after_each(function()
    loop:close()
    os.execute("rm -rf " .. helpers.q(dir))
    helpers.assert_no_leaks(snap)
  end)

  it("feeds a byte range of a file after the prefix, more than a pipe holds", function()
    local data = {}
    for i = 1, 200000 do data[i] = tostring(i) end
    data = table.concat(data, "\n") .. "\n"
    local path = dir .. "/f"
    write_file(path, data)
    local rec = run(loop, { "cat" }, { path = path, offset = 7, length = 1200000, prefix = "hdr\n" })
    assert.are.equal(0, rec.returncode)
    assert.is_nil(rec.input_error)
    assert.are.equal(4 + 1200000, #rec.stdout)
    assert.is_true(rec.stdout == "hdr\n" .. data:sub(8, 7 + 1200000))
  end)

  it("a job that closes its stdin early gets EPIPE in its record, and the host lives", function()
    local path = dir .. "/f"
    write_file(path, string.rep("x", 4 << 20))
    local rec = run(loop, { "head", "-c", "5" }, { path = path, offset = 0, length = 4 << 20 })
    assert.are.equal(0, rec.returncode)
    assert.are.equal("xxxxx", rec.stdout)
    assert.are.equal("EPIPE", rec.input_error)
    assert.are.equal(4 << 20, rec.input_size)
    assert.is_true(rec.input_written < rec.input_size)
  end)

  it("a file shorter than the range: what it has, then ENODATA", function()
    local path = dir .. "/f"
    write_file(path, "0123456789")
    local rec = run(loop, { "cat" }, { path = path, offset = 4, length = 100 })
    assert.are.equal(0, rec.returncode)
    assert.are.equal("456789", rec.stdout)
    assert.are.equal("ENODATA", rec.input_error)
    assert.are.equal(6, rec.input_written)
  end)

  it("a file that refuses splice (/proc/self/environ) is read and written instead", function()
    local f = assert(io.open("/proc/self/environ", "rb"))
    local env = f:read("a")
    f:close()
    assert.is_true(#env > 10, "no environment to read")
    local rec = run(loop, { "cat" }, { path = "/proc/self/environ", offset = 3, length = #env - 3 })
    assert.is_nil(rec.input_error)
    assert.are.equal(env:sub(4), rec.stdout)
  end)

  it("refuses a bad range and names what is wrong", function()
    assert.has_error(function() loop:spawn({ "cat" }, nil, nil, { path = dir .. "/f", offset = -1, length = 1 }) end,
      "luaconcurrent: input.offset and input.length must be integers >= 0")
    local id, msg, errname = loop:spawn({ "cat" }, nil, nil, { path = dir .. "/none", offset = 0, length = 1 })
    assert.is_nil(id)
    assert.are.equal("ENOENT", errname)
    assert.truthy(msg:find("cannot open the input file of 'cat'", 1, true), msg)
  end)

  -- Blocks larger than the tail the engine reads (256 KiB) are spliced,
  -- smaller ones read whole: both must cut where GNU parallel cuts.
  for _, case in ipairs({ { n = 400000, block = 700000 }, { n = 30000, block = 10000 } }) do
    it(string.format("cuts a stream into parallel's --pipe blocks (%d lines, block %d)", case.n, case.block), function()
      local out, err, code = helpers.sh(string.format("seq %d | %s exec lua5.4 %s %d cat", case.n,
        helpers.lua_env(), helpers.q(helpers.FIXTURES .. "/pipe_cut.lua"), case.block))
      assert.are.equal(0, code, err)
      local jobs, nblocks = parse_cut(out)
      local input = helpers.sh("seq " .. case.n)
      local want = reference_blocks(input, case.block)
      assert.are.equal(#want, nblocks)
      assert.are.equal(#want, #jobs)
      for i, b in ipairs(want) do
        assert.are.equal(#b, jobs[i].size)
        assert.is_true(b == jobs[i].stdout, "block " .. i .. " differs")
      end
    end)
  end

  it("takes a block whole from the stream even when its job closes stdin early", function()
    local out, err, code = helpers.sh(string.format("seq 400000 | %s exec lua5.4 %s %d 'head -c 7'",
      helpers.lua_env(), helpers.q(helpers.FIXTURES .. "/pipe_cut.lua"), 700000))
    assert.are.equal(0, code, err)
    local jobs = parse_cut(out)
    local want = reference_blocks(helpers.sh("seq 400000"), 700000)
    assert.are.equal(#want, #jobs)
    for i, b in ipairs(want) do
      assert.are.equal(b:sub(1, 7), jobs[i].stdout)    -- each job saw its own block's start
      assert.are.equal(#b, jobs[i].size)
      assert.are.equal("EPIPE", jobs[i].input_error)
    end
  end)
end)

-- lcparallel --pipe on the engine's cut feeds (blocks over the 256 KiB
-- tail, so spliced) and --pipepart on range feeds, against GNU parallel.
describe("lcparallel --pipe/--pipepart on the engine's feeds, against GNU parallel", function()
  local LC = helpers.ROOT .. "/build/luaconcurrent --parallel"
  local have_parallel = os.execute("parallel --version >/dev/null 2>&1")
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. helpers.q(dir) .. " && seq 400000 > " .. helpers.q(dir .. "/big")))
  end)
  after_each(function() os.execute("rm -rf " .. helpers.q(dir)) end)

  local cases = {
    "cat big | %s -j2 --pipe --block 700k -k wc -l",
    "cat big | %s -j2 --pipe --block 700k -k 'head -1'",
    "cat big | %s -j2 --pipe --block 300k --header : -k 'head -2 | tail -1'",
    "%s -j2 --pipe --block 700k -k wc -l < big",
    "%s -j2 --pipepart -a big --block 700k -k 'head -1; wc -l'",
    "%s -j2 --pipepart -a big --block 700k -k 'head -1'",
  }
  for _, case in ipairs(cases) do
    it(case:format("lcparallel"), function()
      if not have_parallel then pending("GNU parallel is not installed") return end
      local cd = "cd " .. helpers.q(dir) .. " && "
      local want, _, wcode = helpers.sh(cd .. case:format("parallel --will-cite"))
      local got, err, code = helpers.sh(cd .. case:format(LC))
      assert.are.equal(wcode, code, err)
      assert.are.equal(want, got)
      assert.is_true(#got > 0)
    end)
  end

  it("a --pipe job that exits without reading fails alone; the next blocks start where they should", function()
    local cmd = "cd " .. helpers.q(dir) .. " && cat big | " .. LC .. " -j1 --pipe --block 700k -k "
      .. "'if [ $PARALLEL_SEQ = 2 ]; then exec /nonexistent/prog; fi; head -1; cat >/dev/null'"
    local out, _, code = helpers.sh(cmd)
    assert.are.equal(1, code)
    local want = {}
    for i, b in ipairs(reference_blocks(helpers.sh("seq 400000"), 700000)) do
      if i ~= 2 then want[#want + 1] = b:match("^[^\n]*\n") end
    end
    assert.are.equal(table.concat(want), out)
  end)
end)

describe("parallel/pipe.lua run over stream blocks", function()
  it("a job that cannot be spawned fails alone; its block is drained, the next starts where it should", function()
    local script = [[
      local pipe = require "luaconcurrent.parallel.pipe"
      local src = assert(require("luaconcurrent.parallel.blocks").stream_blocks({ block = "700k" }), "stdin is not a pipe")
      local out = {}
      pipe.run({ jobs = 2, blocks = src, kill_grace = 0.1, halted = function() end,
        argv_of = function(seq) return seq == 2 and { "/nonexistent/prog" } or { "head", "-c", "7" } end,
        on_result = function(res) out[res.key] = (res.stdout or "") ~= "" and res.stdout or "failed" end })
      for i = 1, #out do io.write(i, ":", out[i], "|") end
    ]]
    local out, err, code = helpers.sh("seq 400000 | " .. helpers.lua_env() .. " exec lua5.4 -e " .. helpers.q(script))
    assert.are.equal(0, code, err)
    local want = {}
    for i, b in ipairs(reference_blocks(helpers.sh("seq 400000"), 700000)) do
      want[#want + 1] = i .. ":" .. (i == 2 and "failed" or b:sub(1, 7)) .. "|"
    end
    assert.are.equal(table.concat(want), out)
  end)
end)
