# luaconcurrent — build, test, demo, bench, install.
# `make demo` and `make test` install what is missing (Debian packages) first.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LUADIR     ?= $(PREFIX)/share/lua/5.4
LIBDIR     ?= $(PREFIX)/lib/lua/5.4
LUA_PC     ?= lua5.4
# LuaRocks passes LUA_INCDIR; otherwise pkg-config finds Debian's headers.
ifdef LUA_INCDIR
LUA_CFLAGS := -I$(LUA_INCDIR)
else
LUA_CFLAGS := $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)
endif
LUA_LIBS   := $(shell pkg-config --libs $(LUA_PC) 2>/dev/null)

CC       ?= gcc
OPT      ?= -O2 -g
WERROR   ?=
CFLAGS   ?= $(OPT)
CFLAGS   += -std=gnu11 -Wall -Wextra $(WERROR) -fPIC -D_GNU_SOURCE $(LUA_CFLAGS)
LDFLAGS  ?=

B        := build
ENGINE   := src/loop.c src/proc.c src/hugemem.c src/signals.c src/marshal.c src/pool.c src/core.c
LUAMODS  := $(wildcard lua/luaconcurrent/*.lua)
EXE      := $(B)/luaconcurrent
SO       := $(B)/lib/luaconcurrent/core.so

ENGINE_OBJ := $(ENGINE:src/%.c=$(B)/obj/%.o)

.PHONY: all deps demo test bench install uninstall clean

all: $(EXE) $(SO)

deps:
	@sh scripts/ensure-deps.sh

$(B)/obj/%.o: src/%.c $(wildcard src/*.h) | $(B)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/obj $(B)/lib/luaconcurrent:
	mkdir -p $@

$(B)/embedded.c: scripts/embed.lua $(LUAMODS) | $(B)/obj
	lua5.4 scripts/embed.lua $@ $(LUAMODS)

$(B)/obj/embedded.o: $(B)/embedded.c
	$(CC) $(CFLAGS) -c -o $@ $<

# The executable links the system's shared liblua, so C modules it loads
# (cjson) and the engine share one Lua; -E exports the API to them.
$(EXE): $(B)/obj/main.o $(B)/obj/embedded.o $(ENGINE_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -Wl,-E -o $@ $^ $(LUA_LIBS) -lpthread

# The module links no liblua: the host interpreter provides the API.
$(SO): $(ENGINE_OBJ) | $(B)/lib/luaconcurrent
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -o $@ $^ -lpthread

demo: deps
	@$(MAKE) --no-print-directory all
	$(EXE) scripts/demo.lua

test: deps
	@$(MAKE) --no-print-directory all
	busted

bench: deps
	@sh scripts/ensure-deps.sh parallel time
	@$(MAKE) --no-print-directory all
	sh scripts/bench.sh

# Soak: 100 000 mixed tasks (SOAK_N=...) with keep_results = false; checks
# RSS, fds, children and that every task gives exactly one result.
.PHONY: soak
soak: deps
	@$(MAKE) --no-print-directory all
	$(EXE) scripts/soak.lua

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUADIR)/luaconcurrent $(DESTDIR)$(LIBDIR)/luaconcurrent
	install -m 755 $(EXE) $(DESTDIR)$(BINDIR)/luaconcurrent
	install -m 644 $(LUAMODS) $(DESTDIR)$(LUADIR)/luaconcurrent/
	install -m 755 $(SO) $(DESTDIR)$(LIBDIR)/luaconcurrent/core.so

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/luaconcurrent
	rm -rf $(DESTDIR)$(LUADIR)/luaconcurrent $(DESTDIR)$(LIBDIR)/luaconcurrent

clean:
	rm -rf $(B)
