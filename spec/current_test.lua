-- busted helper (.busted `helper`): when LC_TEST_CURRENT names a file,
-- writes there the file, line and name of each test as it starts, so that
-- scripts/bounded.sh can say which test was running when a run overstayed
-- its time limit (a hang). Without LC_TEST_CURRENT it does nothing.
local path = os.getenv("LC_TEST_CURRENT")
if path and path ~= "" then
  local busted = require "busted"
  busted.subscribe({ "test", "start" }, function(element)
    local t = element.trace or {}
    local f = io.open(path, "w")
    if f then
      f:write(string.format("%s:%s: %s\n", tostring(t.short_src), tostring(t.currentline),
        tostring(element.name)))
      f:close()
    end
    return nil, true
  end)
end
