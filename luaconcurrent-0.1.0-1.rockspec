-- luarocks --lua-version=5.4 make    (from a checkout; see README, "Install")
-- luarocks --lua-version=5.4 test    (the core busted suite: scripts/rock_test.lua)
rockspec_format = "3.0"
package = "luaconcurrent"
version = "0.1.0-1"
source = {
  -- `luarocks make` in a checkout builds the checkout and fetches nothing.
  -- A source rock (`luarocks pack` of this file) clones the main branch:
  -- there is no release tag yet.
  url = "git+https://github.com/luaconcurrent/luaconcurrent",
  branch = "main",
}
description = {
  summary = "Run many tasks concurrently (subprocesses or Lua functions), one result per task",
  detailed = [[
A C engine (epoll, posix_spawn, pidfd, process-group timeouts) under a Lua
layer re-creating pyconcurrent's ProcRunAsyncio, ProcRunMp, ProcResult and
run_prog, with lc.map and lc.run beside them. Installs the luaconcurrent
module, its C core, the standalone luaconcurrent executable, lcparallel
(GNU parallel's command line) and the man pages. Linux only.
]],
  homepage = "https://github.com/luaconcurrent/luaconcurrent",
  license = "MIT",
  labels = { "concurrency", "subprocess", "parallel" },
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4, < 5.5",
}
test_dependencies = {
  "busted",
}
test = {
  type = "command",
  script = "scripts/rock_test.lua",
}
build = {
  type = "make",
  -- A build directory of its own, compiled afresh with LuaRocks' flags and
  -- its Lua (a hererocks or source-built one as well as Debian's).
  build_target = "rock",
  build_variables = {
    B = "build/luarocks",
    CFLAGS = "$(CFLAGS)",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LUA_LIBDIR)",
    LUA_BINDIR = "$(LUA_BINDIR)",
  },
  install_variables = {
    B = "build/luarocks",
    LUA = "$(LUA)",
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
