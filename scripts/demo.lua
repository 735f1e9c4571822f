-- The demo task script (`make demo`): pyconcurrent's example, /usr/bin/sleep
-- over tasks {1,1},{2,7},{3,2},{4,2},{5,1} on 4 workers, with the sleeps
-- scaled by 1/7 so the longest takes a second and the run about a second.
local lc = require "luaconcurrent"

local scale = 1 / 7
local tasks = {}
for i, secs in ipairs({1, 7, 2, 2, 1}) do
  tasks[i] = { i, string.format("%.3f", secs * scale) }
end

local run = lc.ProcRunAsyncio({"/usr/bin/sleep"}, tasks, {num_workers = 4, timeout = 10})
run:run_all()
run:print_results()
print(string.format("\n%d tasks in %.2f s, all succeeded: %s",
  #run.result, run.time_run, tostring(run.ok)))
