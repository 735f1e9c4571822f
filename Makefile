# luaconcurrent — build, test, demo, bench, install.
# `make demo` and `make test` install what is missing (Debian packages) first.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LUADIR     ?= $(PREFIX)/share/lua/5.4
LIBDIR     ?= $(PREFIX)/lib/lua/5.4
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# The Lua to build with. LuaRocks passes its own (LUA, LUA_INCDIR,
# LUA_LIBDIR: a hererocks or source-built Lua as well as Debian's); without
# them, Debian's lua5.4 and pkg-config. LUA_INCDIR is used when it holds
# lua.h (LuaRocks may pass an empty one), else pkg-config's.
LUA        ?= lua5.4
LUA_PC     ?= lua5.4
LUA_CFLAGS := $(if $(wildcard $(LUA_INCDIR)/lua.h),-I$(LUA_INCDIR),$(shell pkg-config --cflags $(LUA_PC) 2>/dev/null))
# The executable links liblua: the one in LUA_LIBDIR when LuaRocks names a
# directory that holds one (Debian's liblua5.4, a source build's liblua,
# hererocks' liblua54), else pkg-config's.
LUA_LIBNAME := $(firstword $(foreach n,lua5.4 lua54 lua,$(if $(wildcard $(LUA_LIBDIR)/lib$(n).so $(LUA_LIBDIR)/lib$(n).a),$(n))))
LUA_LIBS   := $(if $(and $(LUA_LIBDIR),$(LUA_LIBNAME)),-L$(LUA_LIBDIR) -l$(LUA_LIBNAME) -lm -ldl,$(shell pkg-config --libs $(LUA_PC) 2>/dev/null))

CC       ?= gcc
OPT      ?= -O2 -g
WERROR   ?=
# Sanitizer flags, for compiling and linking (set by `make check`'s builds).
SANFLAGS ?=
CFLAGS   ?= $(OPT)
# Kept apart from CFLAGS, which a caller (LuaRocks) may set on the command
# line and which would then replace anything appended to it here.
LC_CFLAGS := -std=gnu11 -Wall -Wextra $(WERROR) -fPIC -D_GNU_SOURCE $(LUA_CFLAGS) $(SANFLAGS)
LDFLAGS  ?=

B        := build
ENGINE   := src/loop.c src/proc.c src/hugemem.c src/signals.c src/marshal.c src/pool.c \
            src/reap.c src/host.c src/core.c src/core_loop.c src/core_pool.c src/core_marshal.c src/core_misc.c src/core_file.c src/workerproc.c
LUAMODS  := $(wildcard lua/luaconcurrent/*.lua)
# Modules in subfolders: executors, run control, remote hosts.
SUBDIRS  := exec control remote parallel
SUBMODS  := $(foreach d,$(SUBDIRS),$(wildcard lua/luaconcurrent/$(d)/*.lua))
EXE      := $(B)/luaconcurrent
SO       := $(B)/lib/luaconcurrent/core.so

ENGINE_OBJ := $(ENGINE:src/%.c=$(B)/obj/%.o)

.PHONY: all deps demo test test-core bench install uninstall clean man \
        check check-deps check-cppcheck check-asan check-tsan check-valgrind check-fuzz

all: $(EXE) $(SO) $(B)/deny_pidfd

# Test helper: runs a command with pidfds refused (spec/orphans_spec.lua).
$(B)/deny_pidfd: scripts/check/deny_pidfd.c | $(B)/obj
	$(CC) $(CFLAGS) -std=gnu11 -Wall -Wextra $(WERROR) -o $@ $<

deps:
	@sh scripts/ensure-deps.sh

$(B)/obj/%.o: src/%.c $(wildcard src/*.h) | $(B)/obj
	$(CC) $(CFLAGS) $(LC_CFLAGS) -c -o $@ $<

$(B)/obj $(B)/lib/luaconcurrent:
	mkdir -p $@

$(B)/embedded.c: scripts/embed.lua $(LUAMODS) $(SUBMODS) | $(B)/obj
	$(LUA) scripts/embed.lua $@ $(LUAMODS) $(SUBMODS)

$(B)/obj/embedded.o: $(B)/embedded.c
	$(CC) $(CFLAGS) $(LC_CFLAGS) -c -o $@ $<

# The executable links the system's shared liblua, so C modules it loads
# (cjson) and the engine share one Lua; -E exports the API to them.
# Both are linked beside their target and renamed onto it: a running
# process keeps the old file instead of seeing it rewritten under it.
$(EXE): $(B)/obj/main.o $(B)/obj/embedded.o $(ENGINE_OBJ)
	$(CC) $(CFLAGS) $(LC_CFLAGS) $(LDFLAGS) -Wl,-E -o $@.tmp $^ $(LUA_LIBS) -lpthread && mv -f $@.tmp $@

# The module links no liblua: the host interpreter provides the API.
$(SO): $(ENGINE_OBJ) | $(B)/lib/luaconcurrent
	$(CC) $(CFLAGS) $(LC_CFLAGS) $(LDFLAGS) -shared -o $@.tmp $^ -lpthread && mv -f $@.tmp $@

# Test build whose Lua allocator fails on demand (LC_FAIL_ALLOC_AT=n):
# spec/oom_spec.lua runs it to show that running out of memory anywhere is
# a clean error that leaves no task behind.
OOM_EXE := $(B)/oom/luaconcurrent
$(OOM_EXE): FORCE
	@$(MAKE) --no-print-directory B=$(B)/oom SANFLAGS=-DLC_ALLOC_FAILURES $@

demo: deps
	@$(MAKE) --no-print-directory all
	$(EXE) scripts/demo.lua

# busted's script starts with `#!/usr/bin/env lua`, and `lua` may be another
# version (installing luarocks makes it lua5.1): run it with lua5.4.
BUSTED := lua5.4 /usr/bin/busted
# A bound on the whole run (seconds), so that a hang (a broken timeout, a
# lost wake-up) fails the run loudly, naming the test that was running,
# instead of stalling it and CI. The suite takes about six minutes on two
# cores; the sanitizer builds run several times slower.
TEST_TIMEOUT  ?= 900
CHECK_TIMEOUT ?= 3600
BOUNDED = sh scripts/bounded.sh

# Tools the specs use: xmllint and rsvg-convert (timeline SVG), script (a
# real terminal), sshd and ssh (remote hosts, on private servers on
# loopback), Slurm and munge (a private single-node Slurm; about 3 MB, 7 s
# to install here), luarocks (the rock, built into a temporary tree; it
# brings lua5.1 for the version guard's spec), man and groff (the man
# pages render without warnings), GNU parallel (the oracle of lcparallel's
# compatibility spec), strace (engine_defects_spec watches spawns with it).
TEST_PKGS := parallel libxml2-utils librsvg2-bin bsdutils openssh-server openssh-client \
             slurmctld slurmd slurm-client munge luarocks man-db groff-base strace

test: deps
	@sh scripts/ensure-deps.sh $(TEST_PKGS)
	@$(MAKE) --no-print-directory all $(OOM_EXE)
	$(BOUNDED) $(TEST_TIMEOUT) $(BUSTED)

# The suite without the specs that start daemons (tagged remote, slurm).
test-core: deps
	@$(MAKE) --no-print-directory all $(OOM_EXE)
	$(BOUNDED) $(TEST_TIMEOUT) $(BUSTED) --exclude-tags=remote,slurm

bench: deps
	@sh scripts/ensure-deps.sh parallel time openssh-server openssh-client
	@$(MAKE) --no-print-directory all
	sh scripts/bench.sh

# ---- make check: sanitizers, valgrind, cppcheck --------------------------
# Each sanitizer build is the executable (engine + Lua layer linked in) in
# a directory of its own; busted runs under it (--lua), so the specs'
# `require "luaconcurrent"` gets the sanitized engine from package.preload
# (scripts/check/host.lua asserts that). Reports go to $(CHECK_LOG)/<tool>.<pid>,
# children's too; any file there fails the target.
SAN_OPT    := -O1 -g -fno-omit-frame-pointer
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
TSAN_FLAGS := -fsanitize=thread
ASAN_EXE   := $(B)/asan/luaconcurrent
TSAN_EXE   := $(B)/tsan/luaconcurrent
CHECK_LOG  := $(B)/check-logs
# Thread-worker specs: function tasks and marshal round trips under ProcRunMp,
# and the records of thread jobs and loop timers driven directly.
TSAN_SPECS := spec/function_spec.lua spec/marshal_spec.lua spec/core_spec.lua
CHECK_HOST := --helper=scripts/check/host.lua
# A spawned sanitized child may report into the same log directory; the
# run fails on any report whatever the exit status says. (UBSan, built
# with -fno-sanitize-recover, ignores log_path in gcc 12: it prints to the
# process's stderr and exits 87, which fails busted or the spec whose task
# it was.)
# handle_segv=0: fault_spec crashes a process worker (this executable) on
# purpose with crafted bytecode and expects it killed by SIGSEGV; with the
# sanitizer's handler it would report and exit instead. A real SIGSEGV
# still ends the process (and fails the spec that saw it), without a
# sanitizer stack; invalid accesses in our code are caught before any
# SIGSEGV by the instrumentation.
ASAN_ENV := ASAN_OPTIONS=handle_segv=0:halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$(abspath $(CHECK_LOG))/asan \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87
TSAN_ENV := TSAN_OPTIONS=handle_segv=0:halt_on_error=1:exitcode=88:second_deadlock_stack=1:log_path=$(abspath $(CHECK_LOG))/tsan
# gcc 12's TSan maps its shadow memory at fixed places and fails with
# "unexpected memory mapping" under kernels that randomise more address
# bits (vm.mmap_rnd_bits > 28): run it with randomisation off, where the
# container allows that (Docker's seccomp profile may refuse it).
NO_ASLR  := $(shell setarch $$(uname -m) -R true >/dev/null 2>&1 && echo setarch $$(uname -m) -R)
VALGRIND := valgrind --quiet --error-exitcode=1 --leak-check=full \
            --errors-for-leak-kinds=definite --show-leak-kinds=definite \
            --track-fds=no --trace-children=no
CHECK_PKGS := valgrind cppcheck libasan8 libubsan1 libtsan2 lua-check

# (No-op when built: the sub-make's rules decide.)
$(ASAN_EXE): FORCE
	@$(MAKE) --no-print-directory B=$(B)/asan OPT="$(SAN_OPT)" SANFLAGS="$(ASAN_FLAGS)" $@
$(TSAN_EXE): FORCE
	@$(MAKE) --no-print-directory B=$(B)/tsan OPT="$(SAN_OPT)" SANFLAGS="$(TSAN_FLAGS)" $@
FORCE:

check-deps: deps
	@sh scripts/ensure-deps.sh $(CHECK_PKGS)

check: check-deps
	@$(MAKE) --no-print-directory check-luacheck
	@$(MAKE) --no-print-directory check-cppcheck
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory check-tsan
	@$(MAKE) --no-print-directory check-valgrind
	@echo "make check: luacheck, cppcheck, ASan+UBSan, TSan and valgrind all clean"

# The Lua layer, scripts and specs (settings in .luacheckrc).
check-luacheck:
	luacheck --quiet lua scripts spec

# Findings are fixed or suppressed in place (cppcheck-suppress <id>, with
# the reason beside it). Lua's headers are read so its macros are known;
# cppcheck does not read the C library's, so luaconf.h's LLONG_MAX test
# needs the value given.
check-cppcheck:
	cppcheck --quiet --error-exitcode=1 --inline-suppr \
	  --enable=warning,performance,portability --std=c11 --library=posix \
	  -D_GNU_SOURCE -D__linux__ -D__GNUC__ \
	  -DLLONG_MAX=9223372036854775807LL -DLLONG_MIN='(-LLONG_MAX-1)' \
	  $(LUA_CFLAGS) --suppress=missingIncludeSystem -Isrc src/*.c

# busted's script runs under the sanitized executable itself (its shebang
# would pick whatever `lua` is); the reports are shown whether or not
# busted failed.
# The specs also run the normal build (build/luaconcurrent, build/lib's
# core.so for child lua5.4 processes): build it first, as on a fresh clone.
check-asan: all $(ASAN_EXE) $(OOM_EXE)
	@rm -rf $(CHECK_LOG)/asan*; mkdir -p $(CHECK_LOG)
	$(ASAN_ENV) $(BOUNDED) $(CHECK_TIMEOUT) $(ASAN_EXE) /usr/bin/busted $(CHECK_HOST) -o utfTerminal; \
	  rc=$$?; sh scripts/check/logs.sh $(CHECK_LOG) asan || rc=1; exit $$rc

# Run directly rather than through --lua, to put setarch in front.
check-tsan: all $(TSAN_EXE)
	@rm -rf $(CHECK_LOG)/tsan*; mkdir -p $(CHECK_LOG)
	$(TSAN_ENV) $(BOUNDED) $(CHECK_TIMEOUT) $(NO_ASLR) $(TSAN_EXE) /usr/bin/busted $(CHECK_HOST) -o utfTerminal $(TSAN_SPECS); \
	  rc=$$?; sh scripts/check/logs.sh $(CHECK_LOG) tsan || rc=1; exit $$rc

# Marshal fuzz (issue 8 item 2): spec/marshal_fuzz_spec.lua with FUZZ_N
# changed frames under ASan+UBSan (the spec's default, in make test, is
# 20000). Any crash or sanitizer report fails it.
FUZZ_N ?= 100000
check-fuzz: $(ASAN_EXE)
	@rm -rf $(CHECK_LOG)/asan*; mkdir -p $(CHECK_LOG)
	LC_FUZZ_N=$(FUZZ_N) $(ASAN_ENV) $(ASAN_EXE) /usr/bin/busted $(CHECK_HOST) -o utfTerminal spec/marshal_fuzz_spec.lua; \
	  rc=$$?; sh scripts/check/logs.sh $(CHECK_LOG) asan || rc=1; exit $$rc

check-valgrind: all
	$(VALGRIND) $(EXE) scripts/check/memcheck.lua

# Soak (scripts/soak.lua, families in scripts/soak/): 100 000 mixed tasks
# (SOAK_N=...) with keep_results = false; invalid UTF-8 through to_json;
# worker processes that crash; a runner stopped by SIGINT / two SIGTERMs
# mid-run; two iterator runs of a million tasks (RSS flat within 10 %).
# Checks RSS, fds, children, nothing left running, one result per task.
# SOAK_ONLY="mixed utf8 crash signals million" picks families.
.PHONY: soak
soak: deps
	@$(MAKE) --no-print-directory all
	$(EXE) scripts/soak.lua

# LuaRocks (`luarocks make`, see the rockspec): a build directory of its
# own (B=build/luarocks), emptied first, so every object is compiled with
# the flags LuaRocks passes and none is reused from an earlier `make`.
.PHONY: rock
rock:
	rm -rf $(B)
	@$(MAKE) --no-print-directory $(EXE) $(SO)

# Man pages, made from doc/ by scripts/man.lua (no pandoc) and committed;
# spec/docs_spec.lua fails when they differ from what this makes.
MANPAGES := man/luaconcurrent.1 man/lcparallel.1 man/luaconcurrent.3
man:
	$(LUA) scripts/man.lua man/luaconcurrent.1 doc/executable.md
	$(LUA) scripts/man.lua man/lcparallel.1 doc/lcparallel.md
	$(LUA) scripts/man.lua man/luaconcurrent.3 doc/reference.md doc/run-control.md

install: $(EXE) $(SO)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/luaconcurrent \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(BASHCOMPDIR) \
	  $(foreach d,$(SUBDIRS),$(DESTDIR)$(LUADIR)/luaconcurrent/$(d))
	install -m 755 $(EXE) $(DESTDIR)$(BINDIR)/luaconcurrent
	ln -sf luaconcurrent $(DESTDIR)$(BINDIR)/lcparallel
	install -m 644 $(LUAMODS) $(DESTDIR)$(LUADIR)/luaconcurrent/
	for d in $(SUBDIRS); do install -m 644 lua/luaconcurrent/$$d/*.lua $(DESTDIR)$(LUADIR)/luaconcurrent/$$d/; done
	install -m 755 $(SO) $(DESTDIR)$(LIBDIR)/luaconcurrent/core.so
	install -m 644 man/luaconcurrent.1 man/lcparallel.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/luaconcurrent.3 $(DESTDIR)$(MANDIR)/man3/
	install -m 644 scripts/completion/lcparallel.bash $(DESTDIR)$(BASHCOMPDIR)/lcparallel

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/luaconcurrent $(DESTDIR)$(BINDIR)/lcparallel
	rm -f $(DESTDIR)$(MANDIR)/man1/luaconcurrent.1 $(DESTDIR)$(MANDIR)/man1/lcparallel.1 \
	  $(DESTDIR)$(MANDIR)/man3/luaconcurrent.3 $(DESTDIR)$(BASHCOMPDIR)/lcparallel
	rm -rf $(DESTDIR)$(LUADIR)/luaconcurrent $(DESTDIR)$(LIBDIR)/luaconcurrent

clean:
	rm -rf $(B)
