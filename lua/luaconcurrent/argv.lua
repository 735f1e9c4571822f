--- A task's argv, the one builder of the Lua layer (the subprocess and
-- remote executors, run_prog): the program's words, then the task's arg,
-- each as a string. An arg that is a table gives its items (1..#arg), nil
-- gives nothing, any other value one word.

local M = {}

--- pargs (any values) as strings: a run's program words.
function M.words(pargs)
  local t = {}
  for i, v in ipairs(pargs) do t[i] = tostring(v) end
  return t
end

--- prefix (strings, from M.words) followed by arg's words: a new table.
function M.of(prefix, arg)
  local n = #prefix
  local argv = table.move(prefix, 1, n, 1, {})
  if type(arg) == "table" then
    for i = 1, #arg do argv[n + i] = tostring(arg[i]) end
  elseif arg ~= nil then
    argv[n + 1] = tostring(arg)
  end
  return argv
end

return M
