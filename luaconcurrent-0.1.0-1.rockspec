-- luarocks --lua-version=5.4 make   (from a checkout; see README, "The module")
package = "luaconcurrent"
version = "0.1.0-1"
source = {
  -- Where the project is published; `luarocks make` in a checkout builds the
  -- checkout itself and does not fetch this.
  url = "git+https://github.com/luaconcurrent/luaconcurrent",
  tag = "v0.1.0",
}
description = {
  summary = "Run many tasks concurrently (subprocesses or Lua functions), one result per task",
  detailed = [[
A C engine (epoll, posix_spawn, pidfd, process-group timeouts) under a Lua
layer re-creating pyconcurrent's ProcRunAsyncio, ProcRunMp, ProcResult and
run_prog. Installs the luaconcurrent module, its C core and the standalone
luaconcurrent executable. Linux only. JSON output (res:to_json(), --json)
needs lua-cjson, from LuaRocks or from the system (Debian: lua-cjson); it is
not a dependency, so a system-installed one serves.
]],
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "make",
  -- A build directory of its own, compiled afresh with LuaRocks' flags.
  build_target = "rock",
  build_variables = {
    B = "build/luarocks",
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_variables = {
    B = "build/luarocks",
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
