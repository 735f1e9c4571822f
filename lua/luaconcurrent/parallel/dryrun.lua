--- --dry-run / --dryrun: each job's command printed as it would run
-- (tagged with --tag/--tagstring), nothing run.

local command = require "luaconcurrent.parallel.command"
local jobs = require "luaconcurrent.parallel.jobs"
local output = require "luaconcurrent.parallel.output"

local M = {}

--- --pipe: one command a block.
function M.blocks(c, blocks, slots)
  local seq = 0
  while blocks() do
    seq = seq + 1
    io.stdout:write(command.expand(c.tpl, {}, seq, (seq - 1) % slots + 1, {}), "\n")
  end
  return 0
end

function M.jobs(c, next_job, names, slots)
  local o = c.o
  for seq, records in next_job do
    local slot = (seq - 1) % slots + 1
    local line = jobs.text_of(c, records, seq, slot)
    if o.tag or o.tagstring then line = output.tag_of(o, names, records, seq, slot) .. "\t" .. line end
    io.stdout:write(line, "\n")
  end
  return 0
end

return M
