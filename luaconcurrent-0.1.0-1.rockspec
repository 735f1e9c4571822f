package = "luaconcurrent"
version = "0.1.0-1"
source = {
  url = "git+file:///work/main",
  tag = "v0.1.0",
}
description = {
  summary = "Run many tasks concurrently (subprocesses or Lua functions), one result per task",
  detailed = [[
A C engine (epoll, posix_spawn, pidfd, process-group timeouts) under a Lua
layer re-creating pyconcurrent's ProcRunAsyncio, ProcRunMp, ProcResult and
run_prog. Installs the luaconcurrent module, its C core and the standalone
luaconcurrent executable. Linux only.
]],
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson",
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
