--- The task source and the results of tasks that never ran: what the
-- scheduler (runner.lua) reads tasks from and fills in when a run ends early.

local ProcResult = require "luaconcurrent.result"
local validate = require "luaconcurrent.validate"

local M = {}

--- An iterator over (index, key, arg), validating tasks from a function.
-- With keep_results = false, keys are checked against the tasks not yet
-- finished only (seen shrinks as they finish), so memory stays bounded.
function M.source(tasks, check_arg, seen)
  if type(tasks) == "table" then
    -- source(at): the caller took tasks up to at from the list itself
    -- (the runner's direct loop); the next call goes on from there.
    local i = 0
    return function(at)
      if at then i = at; return end
      i = i + 1
      local task = tasks[i]
      if task == nil then return nil end
      return i, task[1], task[2]
    end, tasks
  end
  local i = 0
  return function()
    local task = tasks()
    if task == nil then return nil end
    i = i + 1
    local key, arg = validate.task(task, i, seen, check_arg)
    return i, key, arg
  end
end

--- Every task from index `from` on gets a result saying why it never ran.
function M.fill_not_started(self, from, why)
  if not self.keep_results or type(self.tasks) ~= "table" then return end
  for i = from, self.ntasks do
    if self.result[i] == nil then
      local task = self.tasks[i]
      self.result[i] = ProcResult.not_started(task[1], task[2], why)
    end
  end
end

return M
