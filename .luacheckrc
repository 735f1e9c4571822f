-- luacheck (Debian: lua-check), run by `make check` (check-luacheck):
-- `luacheck lua scripts spec` from the top of the checkout.
std = "lua54"
codes = true
max_line_length = 120
-- An executor's or a class's method may not need its self.
self = false
ignore = {
  "212/key",    -- a task function's signature is fn(key, args), key used or not
  "211/guard",  -- `local guard <close> = ...`: used by being closed
  "431/lc",     -- a task function requires its own lc: it runs in another Lua state
}
exclude_files = { "build/**" }

-- busted's globals (describe, it, assert.are.equal, ...) in specs and the
-- helper busted loads; spec tables of expected messages have long lines.
files["spec/**"] = { std = "+busted", max_line_length = false }
-- Benchmarks and soak runs print wide tables.
files["scripts/bench/**"] = { max_line_length = false }
files["scripts/soak.lua"] = { max_line_length = false }
files["scripts/soak/**"] = { max_line_length = false }
-- Task functions that thread or process workers find as their globals.
files["scripts/soak/crash.lua"] = { globals = { "crash_task" }, max_line_length = false }
files["scripts/soak/mixed.lua"] = { globals = { "soak_task" }, max_line_length = false }
-- The plain-Lua remote worker is run with its settings as a global.
files["lua/luaconcurrent/remote/worker.lua"] = { read_globals = { "CFG" } }
-- A fixture that prints a global some runs set with -e.
files["spec/fixtures/cli_args.lua"] = { read_globals = { "x" } }
-- The reference loop stores results as the runner does, to count the cost.
files["scripts/bench/w5ir.lua"] = { ignore = { "241/result" }, max_line_length = false }
